//! Service-level tests: requests and responses as a gRPC client sees them (through
//! `WatchService::open_stream`, and once over a real tonic connection).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::service::split_fragments;
use super::test_support::{header_fn, Fixture, TEST_DEADLINE};
use super::{WatchResponseStream, WatchService, WatchServiceConfig, INVALID_WATCH_ID, PROGRESS_NOTIFY_INTERVAL_MIN};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    ResponseHeader, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb;

/// Capacity of a test client's request channel.
const CLIENT_REQUESTS_MAX: usize = 16;

struct Client {
    requests: Option<mpsc::Sender<Result<WatchRequest, Status>>>,
    responses: WatchResponseStream,
}

impl Client {
    fn connect(service: &WatchService) -> Self {
        let (tx, rx) = mpsc::channel(CLIENT_REQUESTS_MAX);
        Self { requests: Some(tx), responses: service.open_stream(ReceiverStream::new(rx)) }
    }

    async fn send(&self, req: RequestUnion) {
        let tx = self.requests.as_ref().expect("request side open");
        tx.send(Ok(WatchRequest { request_union: Some(req) })).await.expect("stream alive");
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(TEST_DEADLINE, self.responses.next()).await {
            Ok(Some(Ok(resp))) => resp,
            Ok(other) => panic!("watch stream ended: {other:?}"),
            Err(_) => panic!("no watch response within {TEST_DEADLINE:?}"),
        }
    }

    /// Creates a watch and returns its id, checking the created response.
    async fn watch(&mut self, req: WatchCreateRequest) -> i64 {
        self.send(RequestUnion::CreateRequest(req)).await;
        let resp = self.next().await;
        assert!(resp.created && !resp.canceled, "not created: {resp:?}");
        resp.watch_id
    }

    /// Event revisions of `watch_id` until one at `upto` or later, in arrival order.
    async fn revisions_until(&mut self, watch_id: i64, upto: i64) -> Vec<i64> {
        let mut got = Vec::new();
        while got.last().is_none_or(|r| *r < upto) {
            let resp = self.next().await;
            assert_eq!(resp.watch_id, watch_id, "unexpected response {resp:?}");
            assert!(!resp.events.is_empty(), "unexpected response {resp:?}");
            got.extend(resp.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        }
        got
    }
}

fn service(f: &Fixture) -> WatchService {
    service_with(f, WatchServiceConfig::default())
}

fn service_with(f: &Fixture, config: WatchServiceConfig) -> WatchService {
    WatchService::new(f.hub.clone(), header_fn(), config)
}

fn create(key: &str) -> WatchCreateRequest {
    WatchCreateRequest { key: key.as_bytes().to_vec(), ..Default::default() }
}

fn prefix(p: &str) -> WatchCreateRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreateRequest { range_end: end, ..create(p) }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(header_fn()(revision))
}

#[tokio::test]
async fn created_then_events_carry_the_header_and_one_txn_per_response() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    let rev0 = f.hub.current_revision();
    c.send(RequestUnion::CreateRequest(prefix("k"))).await;
    let created = c.next().await;
    assert_eq!(created, WatchResponse { header: header(rev0), watch_id: 0, created: true, ..Default::default() });
    let r = f.put_all(&[("k1", "a"), ("k2", "b")]);
    let resp = c.next().await;
    assert_eq!((resp.header, resp.watch_id, resp.fragment), (header(r), 0, false));
    let kvs: Vec<_> = resp.events.iter().map(|e| (e.r#type, e.kv.clone().unwrap())).collect();
    assert_eq!(kvs.len(), 2);
    assert_eq!(kvs[0].0, mvccpb::event::EventType::Put as i32);
    assert_eq!((kvs[0].1.key.as_slice(), kvs[0].1.value.as_slice()), (&b"k1"[..], &b"a"[..]));
    assert_eq!((kvs[0].1.create_revision, kvs[0].1.mod_revision, kvs[0].1.version), (r, r, 1));
    let d = f.delete("k1");
    let resp = c.next().await;
    assert_eq!(resp.events[0].r#type, mvccpb::event::EventType::Delete as i32);
    assert_eq!(resp.events[0].kv.as_ref().unwrap().mod_revision, d);
}

#[tokio::test]
async fn filters_and_prev_kv_from_the_request() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    let req = WatchCreateRequest { filters: vec![FilterType::Noput as i32], prev_kv: true, ..create("k") };
    let id = c.watch(req).await;
    f.put("k", "v1");
    let d = f.delete("k");
    let resp = c.next().await;
    assert_eq!((resp.watch_id, resp.events.len()), (id, 1));
    let ev = &resp.events[0];
    assert_eq!((ev.r#type, ev.kv.as_ref().unwrap().mod_revision), (mvccpb::event::EventType::Delete as i32, d));
    assert_eq!(ev.prev_kv.as_ref().unwrap().value, b"v1");
}

#[tokio::test]
async fn cancel_answers_canceled_and_stops_events() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    let id = c.watch(create("k")).await;
    c.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: id })).await;
    let resp = c.next().await;
    let rev = f.hub.current_revision();
    assert_eq!(resp, WatchResponse { header: header(rev), watch_id: id, canceled: true, ..Default::default() });
    f.put("k", "after cancel");
    // Anything queued for the canceled watcher would arrive before this answer.
    let other = c.watch(create("other")).await;
    assert_eq!(other, id + 1, "auto ids move on, as etcd's nextID does");
}

#[tokio::test]
async fn duplicate_watch_id_is_rejected_as_etcd_does() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    assert_eq!(c.watch(WatchCreateRequest { watch_id: 5, ..create("a") }).await, 5);
    c.send(RequestUnion::CreateRequest(WatchCreateRequest { watch_id: 5, ..create("b") })).await;
    let resp = c.next().await;
    let rev = f.hub.current_revision();
    let want = WatchResponse {
        header: header(rev),
        watch_id: INVALID_WATCH_ID,
        created: true,
        canceled: true,
        cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
        ..Default::default()
    };
    assert_eq!(resp, want);
}

#[tokio::test]
async fn compacted_start_revision_gets_compact_revision_and_canceled() {
    let f = Fixture::new();
    let r1 = f.put("k", "1");
    f.put("k", "2");
    let r3 = f.put("k", "3");
    f.compact(r3);
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    let id = c.watch(WatchCreateRequest { start_revision: r1, ..create("k") }).await;
    let resp = c.next().await;
    assert_eq!(
        resp,
        WatchResponse { header: header(0), watch_id: id, canceled: true, compact_revision: r3, ..Default::default() }
    );
}

#[tokio::test]
async fn request_progress_answers_with_invalid_watch_id_and_current_revision() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    c.watch(create("k")).await;
    let r = f.put("other", "v");
    c.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
    let resp = c.next().await;
    assert_eq!(resp, WatchResponse { header: header(r), watch_id: INVALID_WATCH_ID, ..Default::default() });
}

/// Real time (the workspace's tokio has no `test-util`, so no paused clock): only bounds
/// that cannot flake are asserted here; the elision rule is checked tick by tick in
/// `hub_tests::progress_tick_skips_watchers_that_just_got_events`.
#[tokio::test]
async fn progress_notify_arrives_every_interval_for_watchers_that_asked() {
    let interval = PROGRESS_NOTIFY_INTERVAL_MIN;
    let f = Fixture::new();
    let svc = service_with(&f, WatchServiceConfig { progress_notify_interval: interval, ..Default::default() });
    let mut c = Client::connect(&svc);
    let opened = Instant::now();
    let _plain = c.watch(create("k")).await;
    let id = c.watch(WatchCreateRequest { progress_notify: true, ..create("k") }).await;
    let r = f.put("other", "v");
    for _ in 0..2 {
        let progress = c.next().await;
        assert_eq!(progress, WatchResponse { header: header(r), watch_id: id, ..Default::default() });
    }
    assert!(opened.elapsed() >= interval * 2, "two ticks take two intervals");
}

#[tokio::test]
async fn fragment_splits_a_large_transaction_and_only_when_asked() {
    let f = Fixture::new();
    let bytes_max = 1024;
    let svc = service_with(&f, WatchServiceConfig { response_bytes_max: bytes_max, ..Default::default() });
    let mut c = Client::connect(&svc);
    let fragmented = c.watch(WatchCreateRequest { fragment: true, ..prefix("k") }).await;
    let mut whole = Client::connect(&svc);
    let unfragmented = whole.watch(prefix("k")).await;
    let value = "v".repeat(300);
    let names: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    let r = f.put_all(&pairs);

    let resp = whole.next().await;
    assert_eq!((resp.watch_id, resp.events.len(), resp.fragment), (unfragmented, 10, false));

    let mut keys = Vec::new();
    let mut fragments = 0;
    loop {
        let resp = c.next().await;
        fragments += 1;
        assert_eq!((resp.watch_id, resp.header), (fragmented, header(r)));
        assert!(resp.events.len() == 1 || resp.encoded_len() < bytes_max, "fragment too large");
        keys.extend(resp.events.iter().map(|e| e.kv.as_ref().unwrap().key.clone()));
        if !resp.fragment {
            break;
        }
    }
    assert!(fragments > 1, "a 3 KiB response over a 1 KiB limit is split");
    let want: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    assert_eq!(keys, want, "fragments carry every event once, in order");
}

#[test]
fn split_fragments_follows_etcd_rules() {
    let event = |n: usize| mvccpb::Event {
        kv: Some(mvccpb::KeyValue { key: vec![b'k'; 8], value: vec![b'v'; n], ..Default::default() }),
        ..Default::default()
    };
    let resp = |events: Vec<mvccpb::Event>| WatchResponse { watch_id: 3, events, fragment: true, ..Default::default() };
    // Small enough: one response, no fragment flag.
    let one = split_fragments(resp(vec![event(10), event(10)]), 1000);
    assert_eq!(one.len(), 1);
    assert!(!one[0].fragment);
    // A single event larger than the limit is never split.
    let big = split_fragments(resp(vec![event(5000)]), 1000);
    assert_eq!((big.len(), big[0].fragment), (1, false));
    // Over the limit: each fragment under it, an oversized event alone, last one unflagged.
    let parts = split_fragments(resp(vec![event(400), event(400), event(400), event(2000), event(10)]), 1000);
    let sizes: Vec<usize> = parts.iter().map(|p| p.events.len()).collect();
    assert_eq!(sizes, vec![2, 1, 1, 1]);
    let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
    assert_eq!(flags, vec![true, true, true, false]);
    assert!(parts.iter().all(|p| p.events.len() == 1 || p.encoded_len() < 1000));
    assert!(parts.iter().all(|p| p.watch_id == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_never_stalls_writes_or_a_fast_stream() {
    const WRITES: usize = 10_000;
    /// Far above any real notify; one that waited for the unread stream would never return.
    const NOTIFY_LATENCY_MAX: Duration = Duration::from_millis(500);
    const MARKER_KEY: &[u8] = b"k-end";
    let f = Arc::new(Fixture::new());
    let svc = service(&f);
    let mut slow = Client::connect(&svc);
    let slow_id = slow.watch(prefix("k")).await;
    let mut fast = Client::connect(&svc);
    let fast_id = fast.watch(prefix("k")).await;

    // The fast client reads while the writes happen, until the marker written after them.
    let fast_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let resp = fast.next().await;
            assert_eq!(resp.watch_id, fast_id);
            for e in &resp.events {
                let kv = e.kv.as_ref().unwrap();
                got.push(kv.mod_revision);
                if kv.key == MARKER_KEY {
                    return got;
                }
            }
        }
    });
    let writer = {
        let f = f.clone();
        tokio::task::spawn_blocking(move || {
            let mut revisions = Vec::with_capacity(WRITES + 1);
            let mut notify_max = Duration::ZERO;
            for i in 0..WRITES {
                let (rev, notify_took) = f.put_timed(&format!("k{}", i % 100), &i.to_string());
                revisions.push(rev);
                notify_max = notify_max.max(notify_took);
            }
            revisions.push(f.put(std::str::from_utf8(MARKER_KEY).unwrap(), "done"));
            (revisions, notify_max)
        })
    };
    let (want, notify_max) =
        tokio::time::timeout(TEST_DEADLINE, writer).await.expect("writes stalled").expect("writer panicked");
    assert!(notify_max < NOTIFY_LATENCY_MAX, "a notify took {notify_max:?}");
    let fast_got = tokio::time::timeout(TEST_DEADLINE, fast_reader).await.expect("fast stream stalled").unwrap();
    assert_eq!(fast_got, want, "the fast watcher gets every event once, in order, while the slow one waits");
    assert_eq!(f.hub.metrics.slow_watchers.get(), 1, "the unread stream's watcher is a victim");

    let last = *want.last().unwrap();
    let started = Instant::now();
    let slow_got = slow.revisions_until(slow_id, last).await;
    assert_eq!(slow_got, want, "the slow watcher gets every event exactly once, in order");
    assert!(started.elapsed() < TEST_DEADLINE);
    // The last page becomes visible to the reader a moment before the hub marks the
    // watcher synced (same lock section, but the reader does not take the lock).
    let deadline = Instant::now() + TEST_DEADLINE;
    while f.hub.metrics.slow_watchers.get() != 0 {
        assert!(Instant::now() < deadline, "the slow watcher never synced again");
        tokio::task::yield_now().await;
    }
    let next = f.put("k0", "live again");
    assert_eq!(slow.revisions_until(slow_id, next).await, vec![next]);
}

#[tokio::test]
async fn dropping_the_response_stream_removes_every_watcher() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    c.watch(create("a")).await;
    c.watch(WatchCreateRequest { start_revision: 1, ..create("b") }).await;
    let mut other = Client::connect(&svc);
    let kept = other.watch(create("a")).await;
    assert_eq!((f.hub.metrics.watchers.get(), f.hub.metrics.streams.get()), (3, 2));
    drop(c);
    assert_eq!(f.hub.watcher_counts(), (1, 0));
    assert_eq!(f.hub.stream_count(), 1);
    assert_eq!((f.hub.metrics.watchers.get(), f.hub.metrics.streams.get()), (1, 1));
    assert_eq!(f.hub.metrics.slow_watchers.get(), 0);
    let r = f.put("a", "v");
    assert_eq!(other.revisions_until(kept, r).await, vec![r]);
}

#[tokio::test]
async fn a_receive_error_ends_the_stream_and_its_watchers() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    c.watch(create("a")).await;
    let tx = c.requests.as_ref().unwrap();
    tx.send(Err(Status::unavailable("connection reset"))).await.unwrap();
    let end = tokio::time::timeout(TEST_DEADLINE, c.responses.next()).await.expect("stream did not end");
    assert!(end.is_none(), "unexpected {end:?}");
    assert_eq!(f.hub.watcher_counts(), (0, 0));
    assert_eq!(f.hub.stream_count(), 0);
}

#[tokio::test]
async fn a_half_closed_client_keeps_receiving_events() {
    let f = Fixture::new();
    let svc = service(&f);
    let mut c = Client::connect(&svc);
    let id = c.watch(create("a")).await;
    c.requests = None; // the client closes its sending side, as etcd clients may
    let r = f.put("a", "v");
    assert_eq!(c.revisions_until(id, r).await, vec![r]);
}

#[tokio::test]
async fn grpc_round_trip_and_client_going_away_cleans_up() {
    use crate::proto::etcdserverpb::watch_client::WatchClient;
    use crate::proto::etcdserverpb::watch_server::WatchServer;

    let f = Fixture::new();
    let svc = service(&f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) });
    let server = tokio::spawn(
        tonic::transport::Server::builder().add_service(WatchServer::new(svc)).serve_with_incoming(incoming),
    );

    let mut client = WatchClient::connect(format!("http://{addr}")).await.unwrap();
    let (tx, rx) = mpsc::channel(CLIENT_REQUESTS_MAX);
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create("a"))) }).await.unwrap();
    let mut responses = client.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let created = responses.message().await.unwrap().unwrap();
    assert!(created.created);
    let r = f.put("a", "v");
    let resp = responses.message().await.unwrap().unwrap();
    assert_eq!(resp.events[0].kv.as_ref().unwrap().mod_revision, r);
    assert_eq!(resp.header, header(r));

    drop(responses);
    drop(tx);
    drop(client);
    let deadline = Instant::now() + TEST_DEADLINE;
    while f.hub.stream_count() > 0 {
        assert!(Instant::now() < deadline, "server kept the stream of a client that went away");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.hub.watcher_counts(), (0, 0));
    server.abort();
}
