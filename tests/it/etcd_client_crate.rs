//! The `etcd-client` crate, the etcd client most Rust projects use, against skiff and, with
//! the very same function, against the reference etcd: txn (compares on value, version and
//! mod revision), a prefix watch with prev_kv, lease grant / keep-alive / revoke, counted and
//! limited reads, and error statuses compared as strings.
//!
//! The crate's build script runs protoc; `scripts/cargo` points it at the protoc shipped in
//! the `protoc-bin-vendored` package, so no system protoc is needed.
//!
//! The crate opens its watch and keep-alive streams with the first request already queued
//! (and reads the first keep-alive answer itself), so a server that waits for a request
//! before sending response headers does not hang it.

use std::future::Future;
use std::time::Duration;

use ::etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, Error, EventType, GetOptions, KeyValue,
    LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
    WatchStream,
};
use anyhow::{bail, ensure, Context};

use crate::harness::Server;

/// Bound on any single RPC or stream message in this test.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// TTL asked for in lease grants; long enough that nothing expires during the test.
const LEASE_TTL_SECS: i64 = 5;
/// A lease ID no server has granted.
const MISSING_LEASE_ID: i64 = 0x7eed_0000_0001;
/// Keys written under the range-test prefix.
const RANGE_KEYS: [&str; 5] = ["r/a", "r/b", "r/c", "r/d", "r/e"];

async fn within<T>(what: &str, f: impl Future<Output = Result<T, Error>>) -> anyhow::Result<T> {
    tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .with_context(|| format!("{what}: no answer within {RPC_TIMEOUT:?}"))?
        .with_context(|| format!("{what} failed"))
}

/// The gRPC status of a call that must fail, as "Code: message".
async fn status_of<T: std::fmt::Debug>(
    what: &str,
    f: impl Future<Output = Result<T, Error>>,
) -> anyhow::Result<String> {
    match tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .with_context(|| format!("{what}: no answer within {RPC_TIMEOUT:?}"))?
    {
        Ok(v) => bail!("{what} should fail, got {v:?}"),
        Err(Error::GRpcStatus(status)) => Ok(format!("{:?}: {}", status.code(), status.message())),
        Err(other) => bail!("{what} should fail with a gRPC status, got {other:?}"),
    }
}

fn header_revision(
    what: &str,
    header: Option<&::etcd_client::ResponseHeader>,
) -> anyhow::Result<i64> {
    Ok(header
        .with_context(|| format!("{what}: no header"))?
        .revision())
}

/// (key, value, create revision, mod revision, version, lease) for exact comparisons.
type KvShape = (String, String, i64, i64, i64, i64);

fn shape(kv: &KeyValue) -> KvShape {
    (
        String::from_utf8_lossy(kv.key()).into_owned(),
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    )
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> KvShape {
    (key.into(), value.into(), create, modified, version, lease)
}

fn txn_revision(resp: &TxnResponse) -> anyhow::Result<i64> {
    header_revision("txn", resp.header())
}

async fn must_txn(client: &mut Client) -> anyhow::Result<()> {
    let put = within("put txn/a", client.put("txn/a", "1", None)).await?;
    let r1 = header_revision("put", put.header())?;

    // Every compare holds: the success branch runs and takes exactly one revision.
    let txn = Txn::new()
        .when([
            Compare::value("txn/a", CompareOp::Equal, "1"),
            Compare::version("txn/a", CompareOp::Equal, 1),
            Compare::mod_revision("txn/a", CompareOp::Equal, r1),
            Compare::create_revision("txn/a", CompareOp::Less, r1 + 1),
        ])
        .and_then([
            TxnOp::put("txn/a", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("txn/a", None),
        ])
        .or_else([TxnOp::get("txn/a", None)]);
    let resp = within("txn (all compares hold)", client.txn(txn)).await?;
    ensure!(
        resp.succeeded(),
        "every compare holds, yet failure ran: {resp:?}"
    );
    ensure!(
        txn_revision(&resp)? == r1 + 1,
        "txn should take one revision after {r1}: {resp:?}"
    );
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Put(p), TxnOpResponse::Get(g)] => {
            let prev = p.prev_key().context("put in txn asked for prev_kv")?;
            ensure!(
                shape(prev) == kv("txn/a", "1", r1, r1, 1, 0),
                "prev_kv: {prev:?}"
            );
            let got: Vec<KvShape> = g.kvs().iter().map(shape).collect();
            ensure!(
                got == [kv("txn/a", "2", r1, r1 + 1, 2, 0)],
                "get in txn: {got:?}"
            );
            ensure!(g.count() == 1 && !g.more(), "get in txn: count/more {g:?}");
        }
        other => bail!("success branch should answer [put, get], got {other:?}"),
    }

    // A stale mod revision: the failure branch runs, a read only, so no new revision.
    let txn = Txn::new()
        .when([Compare::mod_revision("txn/a", CompareOp::Equal, r1)])
        .and_then([TxnOp::put("txn/a", "wrong", None)])
        .or_else([TxnOp::get("txn/a", None)]);
    let resp = within("txn (stale mod revision)", client.txn(txn)).await?;
    ensure!(
        !resp.succeeded(),
        "mod_revision {r1} is stale, yet success ran: {resp:?}"
    );
    ensure!(
        txn_revision(&resp)? == r1 + 1,
        "a read-only txn took a revision: {resp:?}"
    );
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => {
            let got: Vec<KvShape> = g.kvs().iter().map(shape).collect();
            ensure!(
                got == [kv("txn/a", "2", r1, r1 + 1, 2, 0)],
                "get in failure: {got:?}"
            );
        }
        other => bail!("failure branch should answer [get], got {other:?}"),
    }

    // Create-if-absent (version 0 means no such key), twice: only the first one creates.
    let create = || {
        Txn::new()
            .when([Compare::version("txn/new", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("txn/new", "created", None)])
            .or_else([TxnOp::get("txn/new", None)])
    };
    let first = within("txn create-if-absent", client.txn(create())).await?;
    ensure!(
        first.succeeded(),
        "txn/new is absent, yet failure ran: {first:?}"
    );
    ensure!(
        txn_revision(&first)? == r1 + 2,
        "create should take revision {}: {first:?}",
        r1 + 2
    );
    match first.op_responses().as_slice() {
        [TxnOpResponse::Put(p)] => {
            ensure!(
                header_revision("put in txn", p.header())? == r1 + 2,
                "put header: {p:?}"
            )
        }
        other => bail!("create should answer [put], got {other:?}"),
    }
    let second = within("txn create-if-absent again", client.txn(create())).await?;
    ensure!(
        !second.succeeded(),
        "txn/new exists now, yet success ran: {second:?}"
    );
    ensure!(
        txn_revision(&second)? == r1 + 2,
        "failed create took a revision: {second:?}"
    );
    match second.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => {
            let got: Vec<KvShape> = g.kvs().iter().map(shape).collect();
            ensure!(
                got == [kv("txn/new", "created", r1 + 2, r1 + 2, 1, 0)],
                "get: {got:?}"
            );
        }
        other => bail!("failed create should answer [get], got {other:?}"),
    }

    // A compare on a greater value fails and an empty else branch answers nothing.
    let txn = Txn::new()
        .when([Compare::value("txn/a", CompareOp::Greater, "9")])
        .and_then([TxnOp::delete("txn/a", None)]);
    let resp = within("txn (value greater)", client.txn(txn)).await?;
    ensure!(
        !resp.succeeded() && resp.op_responses().is_empty(),
        "value > 9: {resp:?}"
    );
    ensure!(
        txn_revision(&resp)? == r1 + 2,
        "empty failure took a revision: {resp:?}"
    );
    Ok(())
}

/// One event as (kind, key, value, mod revision, prev value and mod revision).
type EventShape = (EventType, String, String, i64, Option<(String, i64)>);

async fn next_events(stream: &mut WatchStream, want: usize) -> anyhow::Result<Vec<EventShape>> {
    let mut events = Vec::new();
    while events.len() < want {
        let resp = within("watch message", stream.message())
            .await?
            .context("watch stream ended")?;
        ensure!(!resp.canceled(), "watch canceled: {resp:?}");
        let header_rev = header_revision("watch response", resp.header())?;
        for e in resp.events() {
            let kv = e.kv().context("event without kv")?;
            ensure!(
                kv.mod_revision() <= header_rev,
                "event after its header revision: {resp:?}"
            );
            events.push((
                e.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
                e.prev_kv().map(|p| {
                    (
                        String::from_utf8_lossy(p.value()).into_owned(),
                        p.mod_revision(),
                    )
                }),
            ));
        }
    }
    Ok(events)
}

async fn must_watch(client: &mut Client) -> anyhow::Result<()> {
    let put = within("put w/k", client.put("w/k", "v0", None)).await?;
    let w0 = header_revision("put", put.header())?;

    let options = WatchOptions::new().with_prefix().with_prev_key();
    let mut stream = within("watch w/", client.watch("w/", Some(options))).await?;
    let created = within("watch created", stream.message())
        .await?
        .context("watch stream ended before the created response")?;
    ensure!(
        created.created() && created.events().is_empty(),
        "created: {created:?}"
    );
    ensure!(
        header_revision("created", created.header())? == w0,
        "created header should carry the current revision {w0}: {created:?}"
    );
    let watch_id = created.watch_id();

    let w1 = header_revision(
        "put",
        within("put", client.put("w/k", "v1", None)).await?.header(),
    )?;
    let w2 = header_revision(
        "put",
        within("put", client.put("w/other", "x", None))
            .await?
            .header(),
    )?;
    let del = within("delete w/k", client.delete("w/k", None)).await?;
    ensure!(del.deleted() == 1, "delete w/k: {del:?}");
    let w3 = header_revision("delete", del.header())?;
    // Outside the prefix: must not show up between the others.
    within("put outside", client.put("x/outside", "y", None)).await?;
    let w5 = header_revision(
        "put",
        within("put", client.put("w/last", "z", None))
            .await?
            .header(),
    )?;
    ensure!(
        (w1, w2, w3, w5) == (w0 + 1, w0 + 2, w0 + 3, w0 + 5),
        "each write should take one revision after {w0}: {:?}",
        (w1, w2, w3, w5)
    );

    let events = next_events(&mut stream, 4).await?;
    let expected: Vec<EventShape> = vec![
        (
            EventType::Put,
            "w/k".into(),
            "v1".into(),
            w1,
            Some(("v0".into(), w0)),
        ),
        (EventType::Put, "w/other".into(), "x".into(), w2, None),
        (
            EventType::Delete,
            "w/k".into(),
            "".into(),
            w3,
            Some(("v1".into(), w1)),
        ),
        (EventType::Put, "w/last".into(), "z".into(), w5, None),
    ];
    ensure!(
        events == expected,
        "watch events:\n got {events:?}\nwant {expected:?}"
    );

    within("watch cancel", stream.cancel(watch_id)).await?;
    let canceled = within("watch cancel response", stream.message())
        .await?
        .context("watch stream ended before the cancel response")?;
    ensure!(
        canceled.canceled() && canceled.watch_id() == watch_id && canceled.events().is_empty(),
        "cancel response: {canceled:?}"
    );
    Ok(())
}

async fn must_lease(client: &mut Client) -> anyhow::Result<()> {
    let grant = within("lease grant", client.lease_grant(LEASE_TTL_SECS, None)).await?;
    let id = grant.id();
    ensure!(id > 0 && grant.ttl() == LEASE_TTL_SECS, "grant: {grant:?}");
    ensure!(grant.error().is_empty(), "grant error: {grant:?}");

    // The crate sends the first keep-alive itself and checks its answer has TTL > 0.
    let (mut keeper, mut responses) =
        within("lease keep-alive", client.lease_keep_alive(id)).await?;
    ensure!(
        keeper.id() == id,
        "keeper for lease {} instead of {id}",
        keeper.id()
    );
    within("keep-alive send", keeper.keep_alive()).await?;
    let renewed = within("keep-alive response", responses.message())
        .await?
        .context("keep-alive stream ended")?;
    ensure!(
        renewed.id() == id && renewed.ttl() == LEASE_TTL_SECS,
        "keep-alive should renew lease {id} to its full TTL {LEASE_TTL_SECS}: {renewed:?}"
    );

    let put = within(
        "put with lease",
        client.put("lease/k", "v", Some(PutOptions::new().with_lease(id))),
    )
    .await?;
    let put_rev = header_revision("put", put.header())?;
    let got = within("get lease/k", client.get("lease/k", None)).await?;
    let got: Vec<KvShape> = got.kvs().iter().map(shape).collect();
    ensure!(
        got == [kv("lease/k", "v", put_rev, put_rev, 1, id)],
        "get lease/k: {got:?}"
    );

    let ttl = within(
        "lease time-to-live",
        client.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())),
    )
    .await?;
    ensure!(
        ttl.id() == id
            && ttl.granted_ttl() == LEASE_TTL_SECS
            && (1..=LEASE_TTL_SECS).contains(&ttl.ttl())
            && ttl.keys() == [b"lease/k".to_vec()],
        "time-to-live: {ttl:?}"
    );

    let revoke = within("lease revoke", client.lease_revoke(id)).await?;
    ensure!(
        header_revision("revoke", revoke.header())? == put_rev + 1,
        "revoking deletes lease/k in one revision after {put_rev}: {revoke:?}"
    );
    let gone = within("get lease/k after revoke", client.get("lease/k", None)).await?;
    ensure!(
        gone.kvs().is_empty() && gone.count() == 0,
        "lease/k survived revoke: {gone:?}"
    );
    ensure!(
        header_revision("get", gone.header())? == put_rev + 1,
        "get after revoke: {gone:?}"
    );

    // The open keep-alive stream answers for a revoked lease with TTL 0, not an error.
    within("keep-alive send after revoke", keeper.keep_alive()).await?;
    let dead = within("keep-alive response after revoke", responses.message())
        .await?
        .context("keep-alive stream ended")?;
    ensure!(
        dead.id() == id && dead.ttl() == 0,
        "keep-alive of revoked lease: {dead:?}"
    );
    let ttl = within(
        "time-to-live after revoke",
        client.lease_time_to_live(id, None),
    )
    .await?;
    ensure!(
        ttl.id() == id && ttl.ttl() == -1,
        "time-to-live of revoked lease: {ttl:?}"
    );
    // A new keep-alive stream: the crate turns the TTL-0 first answer into its own error.
    match tokio::time::timeout(RPC_TIMEOUT, client.lease_keep_alive(id)).await {
        Err(_) => bail!("keep-alive of revoked lease: no answer within {RPC_TIMEOUT:?}"),
        Ok(Err(Error::LeaseKeepAliveError(msg))) => {
            ensure!(
                msg == "lease not found",
                "keep-alive of revoked lease: {msg}"
            )
        }
        Ok(other) => bail!("keep-alive of revoked lease should fail: {other:?}"),
    }
    Ok(())
}

async fn must_ranges(client: &mut Client) -> anyhow::Result<()> {
    let mut revs = Vec::new();
    for key in RANGE_KEYS {
        let put = within("put", client.put(key, format!("value of {key}"), None)).await?;
        revs.push(header_revision("put", put.header())?);
    }
    let last = *revs.last().context("no puts")?;

    let counted = within(
        "count_only",
        client.get(
            "r/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        ),
    )
    .await?;
    ensure!(
        counted.count() == 5 && counted.kvs().is_empty() && !counted.more(),
        "count_only: {counted:?}"
    );
    ensure!(
        header_revision("get", counted.header())? == last,
        "count_only header: {counted:?}"
    );

    let limited = within(
        "limit 2",
        client.get("r/", Some(GetOptions::new().with_prefix().with_limit(2))),
    )
    .await?;
    let got: Vec<KvShape> = limited.kvs().iter().map(shape).collect();
    let want = vec![
        kv("r/a", "value of r/a", revs[0], revs[0], 1, 0),
        kv("r/b", "value of r/b", revs[1], revs[1], 1, 0),
    ];
    ensure!(got == want, "limit 2: {got:?}");
    ensure!(
        limited.count() == 5 && limited.more(),
        "limit 2 count/more: {limited:?}"
    );

    let all = within(
        "limit 10",
        client.get(
            "r/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_limit(10)
                    .with_keys_only(),
            ),
        ),
    )
    .await?;
    let keys: Vec<KvShape> = all.kvs().iter().map(shape).collect();
    let want: Vec<KvShape> = RANGE_KEYS
        .iter()
        .zip(&revs)
        .map(|(k, &r)| kv(k, "", r, r, 1, 0))
        .collect();
    ensure!(
        keys == want && !all.more(),
        "keys_only, limit 10: {keys:?} more={}",
        all.more()
    );

    // A read at an older revision sees only what existed then.
    let old = within(
        "get at revision",
        client.get(
            "r/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_revision(revs[2])
                    .with_count_only(),
            ),
        ),
    )
    .await?;
    ensure!(
        old.count() == 3,
        "prefix r/ at revision {} should count 3: {old:?}",
        revs[2]
    );

    let deleted = within(
        "delete range",
        client.delete(
            "r/b",
            Some(DeleteOptions::new().with_range("r/d").with_prev_key()),
        ),
    )
    .await?;
    let prev: Vec<String> = deleted
        .prev_kvs()
        .iter()
        .map(|p| String::from_utf8_lossy(p.key()).into_owned())
        .collect();
    ensure!(
        deleted.deleted() == 2 && prev == ["r/b", "r/c"],
        "delete [r/b, r/d): {deleted:?}"
    );
    ensure!(
        header_revision("delete", deleted.header())? == last + 1,
        "delete: {deleted:?}"
    );
    Ok(())
}

async fn must_errors(client: &mut Client) -> anyhow::Result<()> {
    let cases = [
        (
            "put with a lease nobody granted",
            status_of(
                "put with missing lease",
                client.put(
                    "e/k",
                    "v",
                    Some(PutOptions::new().with_lease(MISSING_LEASE_ID)),
                ),
            )
            .await?,
            "NotFound: etcdserver: requested lease not found",
        ),
        (
            "revoke of a lease nobody granted",
            status_of(
                "revoke missing lease",
                client.lease_revoke(MISSING_LEASE_ID),
            )
            .await?,
            "NotFound: etcdserver: requested lease not found",
        ),
        (
            "txn putting one key twice",
            status_of(
                "txn with duplicate put",
                client.txn(Txn::new().and_then([
                    TxnOp::put("e/dup", "1", None),
                    TxnOp::put("e/dup", "2", None),
                ])),
            )
            .await?,
            "InvalidArgument: etcdserver: duplicate key given in txn request",
        ),
        (
            "get at a future revision",
            status_of(
                "get at future revision",
                client.get("e/k", Some(GetOptions::new().with_revision(1_000_000))),
            )
            .await?,
            "OutOfRange: etcdserver: mvcc: required revision is a future revision",
        ),
    ];
    for (case, got, want) in cases {
        ensure!(got == want, "{case}:\n got {got:?}\nwant {want:?}");
    }
    // None of the failures wrote anything.
    let e = within(
        "get e/",
        client.get("e/", Some(GetOptions::new().with_prefix())),
    )
    .await?;
    ensure!(e.count() == 0, "failed requests left keys behind: {e:?}");
    Ok(())
}

async fn must_pass_etcd_client_crate(server: Server) -> anyhow::Result<()> {
    let running = tokio::task::spawn_blocking(move || server.start())
        .await
        .context("server start task")??;
    let result = async {
        let mut client = within("connect", Client::connect([running.client_url()], None)).await?;
        must_txn(&mut client).await.context("txn")?;
        must_watch(&mut client).await.context("watch")?;
        must_lease(&mut client).await.context("lease")?;
        must_ranges(&mut client).await.context("ranges")?;
        must_errors(&mut client).await.context("errors")?;
        anyhow::Ok(())
    }
    .await;
    result.with_context(|| {
        format!(
            "etcd-client crate against {}; server log tail:\n{}",
            server.name(),
            running.log_tail()
        )
    })
}

#[tokio::test]
async fn etcd_client_crate_against_skiff() -> anyhow::Result<()> {
    must_pass_etcd_client_crate(Server::Skiff).await
}

/// The same function against real etcd: keeps the expectations honest.
#[tokio::test]
async fn etcd_client_crate_against_etcd() -> anyhow::Result<()> {
    must_pass_etcd_client_crate(Server::Etcd).await
}
