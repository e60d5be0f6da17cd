//! Watch fan-out: one put applied and handed to the watch hub, delivered to `n` watchers
//! of its key (one watch stream each, through `WatchService` as the gRPC service uses it,
//! without the network). Measured: commit + notify until every stream has the response.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt as _;
use skiff_store::proto::etcdserverpb::watch_request::RequestUnion;
use skiff_store::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest};
use skiff_store::watch::{WatchHub, WatchResponseStream, WatchService, WatchServiceConfig};

#[path = "common.rs"]
mod common;

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("watch/fan-out");
    group.sample_size(10);
    for watchers in [1usize, 100, 1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(common::open_store(dir.path()));
        let registry = prometheus::Registry::new();
        let hub = WatchHub::new(Arc::clone(&store), &registry, runtime.handle()).unwrap();
        let header = Arc::new(|revision| ResponseHeader {
            revision,
            ..Default::default()
        });
        let service = WatchService::new(Arc::clone(&hub), header, WatchServiceConfig::default());
        let key = common::key(0);
        let mut streams: Vec<WatchResponseStream> = runtime.block_on(async {
            let mut streams = Vec::with_capacity(watchers);
            for _ in 0..watchers {
                let create = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: key.clone(),
                        ..Default::default()
                    })),
                };
                // One create request, then a request side that stays open.
                let inbound = futures::stream::iter([Ok(create)]).chain(futures::stream::pending());
                let mut stream = service.open_stream(inbound);
                let created = stream.next().await.unwrap().unwrap();
                assert!(created.created);
                streams.push(stream);
            }
            streams
        });
        let value = vec![b'v'; 256];
        let mut index = 1u64;
        group.throughput(Throughput::Elements(watchers as u64));
        group.bench_function(BenchmarkId::from_parameter(watchers), |b| {
            b.iter(|| {
                let mut txn = store.write();
                txn.put(&key, &value, 0).unwrap();
                let rev = txn.rev();
                let events = txn.commit(index).unwrap();
                index += 1;
                hub.notify(rev, &events);
                runtime.block_on(async {
                    for stream in &mut streams {
                        let response = stream.next().await.unwrap().unwrap();
                        assert_eq!(response.events.len(), 1);
                    }
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
