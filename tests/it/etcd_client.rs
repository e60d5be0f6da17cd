//! A Rust gRPC client exercising txn, watch and lease (grant, keep-alive, time-to-live,
//! revoke) against skiff and, with the very same function, against the reference etcd.
//!
//! It uses the clients generated from our own protos (`skiff_store::proto`): running them
//! against real etcd checks that our .proto files match etcd's wire format. The same
//! scenarios through the `etcd-client` crate are in `etcd_client_crate.rs`.

use std::time::Duration;

use anyhow::{ensure, Context};
use skiff_store::proto::etcdserverpb::{
    compare, kv_client::KvClient, lease_client::LeaseClient, request_op, response_op,
    watch_client::WatchClient, watch_request, Compare, DeleteRangeRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    RequestOp, ResponseOp, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use skiff_store::proto::mvccpb::{self, event::EventType};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::harness::Server;

/// Bound on any single RPC or stream message in this test.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests queued on a client stream before `send` waits; the test sends a handful.
const STREAM_REQUESTS_MAX: usize = 8;

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .with_context(|| format!("{what}: no answer within {RPC_TIMEOUT:?}"))
}

async fn must_txn(channel: &Channel) -> anyhow::Result<()> {
    let mut kv = KvClient::new(channel.clone());
    let first = within("put", kv.put(put("foo", "bar")))
        .await??
        .into_inner();
    let rev = first.header.context("put header")?.revision;

    // Compare on value succeeds: success branch runs, one new revision.
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: "foo".into(),
            target_union: Some(compare::TargetUnion::Value("bar".into())),
            ..Default::default()
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    prev_kv: true,
                    ..put("foo", "baz")
                })),
            },
            RequestOp {
                request: Some(request_op::Request::RequestRange(get("foo"))),
            },
        ],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put("foo", "wrong"))),
        }],
    };
    let resp = within("txn", kv.txn(txn)).await??.into_inner();
    ensure!(resp.succeeded, "value(foo) = bar should hold: {resp:?}");
    ensure!(
        resp.header.as_ref().map(|h| h.revision) == Some(rev + 1),
        "txn should take one revision: {resp:?}"
    );
    match resp.responses.as_slice() {
        [ResponseOp {
            response: Some(response_op::Response::ResponsePut(p)),
        }, ResponseOp {
            response: Some(response_op::Response::ResponseRange(r)),
        }] => {
            ensure!(
                p.prev_kv.as_ref().map(|kv| kv.value.as_slice()) == Some(b"bar".as_slice()),
                "prev_kv: {p:?}"
            );
            ensure!(
                r.kvs.len() == 1 && r.kvs[0].value == b"baz" && r.kvs[0].version == 2,
                "range in txn: {r:?}"
            );
            ensure!(
                r.kvs[0].mod_revision == rev + 1 && r.kvs[0].create_revision == rev,
                "revisions: {r:?}"
            );
        }
        other => anyhow::bail!("unexpected txn responses {other:?}"),
    }

    // Compare on version fails: failure branch runs (a read only: no new revision).
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            key: "foo".into(),
            target_union: Some(compare::TargetUnion::Version(1)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put("foo", "wrong"))),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(get("foo"))),
        }],
    };
    let resp = within("txn", kv.txn(txn)).await??.into_inner();
    ensure!(!resp.succeeded, "version(foo) is 2, not 1: {resp:?}");
    ensure!(
        resp.header.as_ref().map(|h| h.revision) == Some(rev + 1),
        "read-only txn took a revision: {resp:?}"
    );

    // Compare on mod revision and create revision, both true.
    let txn = TxnRequest {
        compare: vec![
            Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: "foo".into(),
                target_union: Some(compare::TargetUnion::ModRevision(rev + 1)),
                ..Default::default()
            },
            Compare {
                result: compare::CompareResult::Less as i32,
                target: compare::CompareTarget::Create as i32,
                key: "foo".into(),
                target_union: Some(compare::TargetUnion::CreateRevision(rev + 1)),
                ..Default::default()
            },
        ],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: "foo".into(),
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        }],
        failure: vec![],
    };
    let resp = within("txn", kv.txn(txn)).await??.into_inner();
    ensure!(resp.succeeded, "mod/create compares should hold: {resp:?}");
    match resp.responses.as_slice() {
        [ResponseOp {
            response: Some(response_op::Response::ResponseDeleteRange(d)),
        }] => {
            ensure!(
                d.deleted == 1 && d.prev_kvs.len() == 1 && d.prev_kvs[0].value == b"baz",
                "delete in txn: {d:?}"
            );
        }
        other => anyhow::bail!("unexpected txn responses {other:?}"),
    }

    // count_only and limit (etcdctl 3.4 cannot send count_only, so it is checked here).
    for key in ["c/1", "c/2", "c/3"] {
        within("put", kv.put(put(key, "v"))).await??;
    }
    let prefix = RangeRequest {
        key: "c/".into(),
        range_end: "c0".into(),
        ..Default::default()
    };
    let counted = within(
        "range",
        kv.range(RangeRequest {
            count_only: true,
            ..prefix.clone()
        }),
    )
    .await??
    .into_inner();
    ensure!(
        counted.count == 3 && counted.kvs.is_empty() && !counted.more,
        "count_only: {counted:?}"
    );
    let limited = within("range", kv.range(RangeRequest { limit: 1, ..prefix }))
        .await??
        .into_inner();
    ensure!(
        limited.count == 3 && limited.kvs.len() == 1 && limited.more,
        "limit: {limited:?}"
    );
    Ok(())
}

async fn must_watch(channel: &Channel) -> anyhow::Result<()> {
    // The create request is queued before the stream opens (see `must_lease` for why).
    let (requests, rx) = tokio::sync::mpsc::channel(STREAM_REQUESTS_MAX);
    requests
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: "w/".into(),
                    range_end: "w0".into(), // prefix "w/": '/' + 1 == '0'
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        })
        .await?;
    let mut watch = within(
        "watch",
        WatchClient::new(channel.clone()).watch(ReceiverStream::new(rx)),
    )
    .await??
    .into_inner();
    let created: WatchResponse = within("watch created", watch.message())
        .await??
        .context("watch stream ended")?;
    ensure!(
        created.created && created.events.is_empty(),
        "first response must be the creation: {created:?}"
    );

    let mut kv = KvClient::new(channel.clone());
    let r1 = within("put", kv.put(put("w/a", "1")))
        .await??
        .into_inner()
        .header
        .context("header")?
        .revision;
    within("put", kv.put(put("w/a", "2"))).await??;
    within("put", kv.put(put("other", "x"))).await??; // outside the watched range
    within(
        "delete",
        kv.delete_range(DeleteRangeRequest {
            key: "w/a".into(),
            ..Default::default()
        }),
    )
    .await??;

    let mut events: Vec<mvccpb::Event> = Vec::new();
    while events.len() < 3 {
        let resp = within("watch events", watch.message())
            .await??
            .context("watch stream ended early")?;
        ensure!(
            resp.watch_id == created.watch_id && !resp.canceled,
            "unexpected watch response {resp:?}"
        );
        events.extend(resp.events);
    }
    ensure!(
        events.len() == 3,
        "exactly the 3 events in range expected: {events:?}"
    );
    let kinds: Vec<i32> = events.iter().map(|e| e.r#type).collect();
    ensure!(
        kinds
            == [
                EventType::Put as i32,
                EventType::Put as i32,
                EventType::Delete as i32
            ],
        "event types: {events:?}"
    );
    let kvs: Vec<&mvccpb::KeyValue> = events
        .iter()
        .map(|e| e.kv.as_ref().expect("event kv"))
        .collect();
    ensure!(kvs.iter().all(|kv| kv.key == b"w/a"), "keys: {events:?}");
    ensure!(
        kvs[0].value == b"1" && kvs[0].mod_revision == r1 && kvs[0].version == 1,
        "first put: {:?}",
        kvs[0]
    );
    ensure!(
        kvs[1].value == b"2" && kvs[1].mod_revision == r1 + 1 && kvs[1].version == 2,
        "second put: {:?}",
        kvs[1]
    );
    ensure!(
        kvs[2].mod_revision == r1 + 3 && kvs[2].version == 0,
        "delete: {:?}",
        kvs[2]
    );
    ensure!(
        events[0].prev_kv.is_none(),
        "a create has no prev_kv: {:?}",
        events[0]
    );
    ensure!(
        events[1].prev_kv.as_ref().map(|kv| kv.value.as_slice()) == Some(b"1".as_slice()),
        "prev_kv: {:?}",
        events[1]
    );
    ensure!(
        events[2].prev_kv.as_ref().map(|kv| kv.value.as_slice()) == Some(b"2".as_slice()),
        "prev_kv: {:?}",
        events[2]
    );
    Ok(())
}

async fn must_lease(channel: &Channel) -> anyhow::Result<()> {
    let mut lease = LeaseClient::new(channel.clone());
    let mut kv = KvClient::new(channel.clone());
    let granted = within(
        "grant",
        lease.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }),
    )
    .await??
    .into_inner();
    ensure!(
        granted.id > 0 && granted.ttl == 30 && granted.error.is_empty(),
        "grant: {granted:?}"
    );
    let id = granted.id;
    within(
        "put",
        kv.put(PutRequest {
            lease: id,
            ..put("l/k", "v")
        }),
    )
    .await??;

    // Queue the first request before opening the stream: grpc-go servers send response
    // headers only with the first response, and tonic waits for headers to return the stream.
    let (requests, rx) = tokio::sync::mpsc::channel(STREAM_REQUESTS_MAX);
    requests.send(LeaseKeepAliveRequest { id }).await?;
    let mut responses = within("keepalive", lease.lease_keep_alive(ReceiverStream::new(rx)))
        .await??
        .into_inner();
    for round in 0..2 {
        if round > 0 {
            requests.send(LeaseKeepAliveRequest { id }).await?;
        }
        let resp = within("keepalive response", responses.message())
            .await??
            .context("keepalive stream ended")?;
        ensure!(
            resp.id == id && resp.ttl == 30,
            "keepalive refreshes to the granted TTL: {resp:?}"
        );
    }
    drop(requests);

    let ttl = within(
        "timetolive",
        lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }),
    )
    .await??
    .into_inner();
    ensure!(
        ttl.id == id && ttl.granted_ttl == 30 && (1..=30).contains(&ttl.ttl),
        "timetolive: {ttl:?}"
    );
    ensure!(ttl.keys == [b"l/k".to_vec()], "keys attached: {ttl:?}");

    within("revoke", lease.lease_revoke(LeaseRevokeRequest { id })).await??;
    let after = within("get", kv.range(get("l/k"))).await??.into_inner();
    ensure!(
        after.kvs.is_empty() && after.count == 0,
        "revoke deletes attached keys: {after:?}"
    );

    // A client-chosen ID, then the same ID again: etcd's exact error.
    let chosen = within(
        "grant",
        lease.lease_grant(LeaseGrantRequest {
            ttl: 10,
            id: 0x1234,
        }),
    )
    .await??
    .into_inner();
    ensure!(chosen.id == 0x1234, "grant with an explicit ID: {chosen:?}");
    let again = within(
        "grant",
        lease.lease_grant(LeaseGrantRequest {
            ttl: 10,
            id: 0x1234,
        }),
    )
    .await?;
    let status = again
        .err()
        .context("granting an existing lease ID must fail")?;
    ensure!(
        status.code() == tonic::Code::FailedPrecondition
            && status.message() == "etcdserver: lease already exists",
        "duplicate lease: {status:?}"
    );
    let missing = within(
        "revoke",
        lease.lease_revoke(LeaseRevokeRequest { id: 0x999 }),
    )
    .await?;
    let status = missing
        .err()
        .context("revoking a missing lease must fail")?;
    ensure!(
        status.code() == tonic::Code::NotFound
            && status.message() == "etcdserver: requested lease not found",
        "missing lease: {status:?}"
    );
    Ok(())
}

fn must_pass_client_suite(server: Server) -> anyhow::Result<()> {
    let running = server.start()?;
    let url = running.client_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url)?
            .connect_timeout(RPC_TIMEOUT)
            .connect()
            .await
            .context("connecting")?;
        must_txn(&channel).await.context("txn")?;
        must_watch(&channel).await.context("watch")?;
        must_lease(&channel).await.context("lease")?;
        anyhow::Ok(())
    });
    result.with_context(|| {
        format!(
            "against {}; server log tail:\n{}",
            server.name(),
            running.log_tail()
        )
    })
}

#[test]
fn etcd_client_against_skiff() -> anyhow::Result<()> {
    must_pass_client_suite(Server::Skiff)
}

/// The same suite against real etcd: keeps the suite's expectations honest.
#[test]
fn etcd_client_against_etcd() -> anyhow::Result<()> {
    must_pass_client_suite(Server::Etcd)
}
