//! End-to-end checks of store features that the differential scripts cannot compare
//! byte for byte (sizes, timing, restarts): `/metrics`, the NOSPACE quota alarm, snapshot
//! save + restore, lease expiry. Real `skiff store` processes, real `etcdctl`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Output, RunningServer, Server};

fn ok(out: Output) -> String {
    assert_eq!(out.code, Some(0), "etcdctl failed: stdout={} stderr={}", out.stdout, out.stderr);
    out.stdout
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read response");
    body
}

#[test]
fn metrics_health_and_version_endpoints() {
    let server = Server::Skiff.start().unwrap();
    ok(server.etcdctl(&["put", "m", "v"], None).unwrap());
    let metrics = http_get(server.client_port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_proposals_applied_total",
        "etcd_debugging_mvcc_watcher_total",
        "etcd_mvcc_put_total 1",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let health = http_get(server.client_port, "/health");
    assert!(health.contains(r#""health":"true""#), "{health}");
    let version = http_get(server.client_port, "/version");
    assert!(version.contains(r#""etcdserver":"3.5."#), "{version}");
}

/// Over quota, puts fail with etcd's NOSPACE error and the alarm stays raised until the
/// space is reclaimed (delete, compact, defrag) and the alarm disarmed, as with etcd.
#[test]
fn quota_exceeded_raises_nospace_until_disarmed() {
    let mut server = Server::Skiff.start_with(&["--quota-backend-bytes", "1048576"]).unwrap();
    let value = "x".repeat(64 * 1024);
    let mut failed = None;
    for i in 0..200 {
        let out = server.etcdctl(&["put", &format!("big/{i:04}"), &value], None).unwrap();
        if out.code != Some(0) {
            failed = Some(out);
            break;
        }
    }
    let failed = failed.expect("200 puts of 64 KiB never exceeded a 1 MiB quota");
    assert!(failed.stderr.contains("etcdserver: mvcc: database space exceeded"), "{}", failed.stderr);
    let alarms = ok(server.etcdctl(&["alarm", "list"], None).unwrap());
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    // The alarm is replicated state: it survives a crash and restart.
    server.kill9().unwrap();
    server.restart().unwrap();
    let alarms = ok(server.etcdctl(&["alarm", "list"], None).unwrap());
    assert!(alarms.contains("alarm:NOSPACE"), "alarm lost on restart: {alarms}");
    // Deletes are still allowed; puts are not, even small ones, while the alarm is raised.
    ok(server.etcdctl(&["del", "big/", "--prefix"], None).unwrap());
    let small = server.etcdctl(&["put", "small", "1"], None).unwrap();
    assert!(small.stderr.contains("database space exceeded"), "{}", small.stderr);
    let rev = current_revision(&server);
    ok(server.etcdctl(&["compact", &rev.to_string(), "--physical"], None).unwrap());
    ok(server.etcdctl(&["defrag"], None).unwrap());
    ok(server.etcdctl(&["alarm", "disarm"], None).unwrap());
    ok(server.etcdctl(&["put", "small", "1"], None).unwrap());
    assert_eq!(ok(server.etcdctl(&["alarm", "list"], None).unwrap()).trim(), "");
}

fn current_revision(server: &RunningServer) -> i64 {
    let out = ok(server.etcdctl(&["get", "none", "-w", "json"], None).unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

/// `etcdctl snapshot save` against skiff, `skiff snapshot restore` into an empty data dir,
/// and the restored member serves the same keys and revisions.
#[test]
fn snapshot_save_and_restore() {
    let mut server = Server::Skiff.start().unwrap();
    for i in 0..50 {
        ok(server.etcdctl(&["put", &format!("snap/{i:02}"), &format!("v{i}")], None).unwrap());
    }
    let before = ok(server.etcdctl(&["get", "snap/", "--prefix", "-w", "json"], None).unwrap());
    let file = server.scratch_dir().join("backup.snap");
    let saved = ok(server.etcdctl(&["snapshot", "save", file.to_str().unwrap()], None).unwrap());
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    server.kill9().unwrap();
    std::fs::remove_dir_all(server.data_dir()).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(server.data_dir())
        .status()
        .unwrap();
    assert!(status.success(), "skiff snapshot restore failed");
    server.restart().unwrap();
    let after = ok(server.etcdctl(&["get", "snap/", "--prefix", "-w", "json"], None).unwrap());
    let kvs = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["kvs"].clone();
    assert_eq!(kvs(&before), kvs(&after), "restored keys differ");
    let rev = current_revision(&server);
    ok(server.etcdctl(&["put", "after", "restore"], None).unwrap());
    assert_eq!(current_revision(&server), rev + 1);

    // A damaged snapshot is refused before anything is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = server.scratch_dir().join("bad.snap");
    std::fs::write(&bad, bytes).unwrap();
    let target = server.scratch_dir().join("never");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["snapshot", "restore"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!target.join("member").join("kv").exists(), "a corrupt snapshot was restored");
}

/// A lease that is not kept alive expires: its keys are deleted in one revision.
#[test]
fn lease_expiry_deletes_attached_keys() {
    let server = Server::Skiff.start().unwrap();
    let granted = ok(server.etcdctl(&["lease", "grant", "2"], None).unwrap());
    let id = granted.split_whitespace().nth(1).expect("lease id").to_string();
    ok(server.etcdctl(&["put", "--lease", &id, "l/a", "1"], None).unwrap());
    ok(server.etcdctl(&["put", "--lease", &id, "l/b", "2"], None).unwrap());
    let rev = current_revision(&server);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let count = ok(server.etcdctl(&["get", "l/", "--prefix", "-w", "json"], None).unwrap());
        let v: serde_json::Value = serde_json::from_str(&count).unwrap();
        if v["count"].as_i64().unwrap_or(0) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lease {id} never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both keys went in one revision (the revoke), right after the puts.
    assert_eq!(current_revision(&server), rev + 1);
    let ttl = ok(server.etcdctl(&["lease", "timetolive", &id], None).unwrap());
    assert!(ttl.contains("already expired"), "{ttl}");
}

/// Oversized requests fail the same way on both above `--max-request-bytes` (1.5 MiB):
/// etcd's "request is too large". Above the gRPC frame limit (+512 KiB) both refuse the
/// message in the gRPC layer; the status text there is the gRPC library's own (grpc-go's
/// `ResourceExhausted` vs tonic's `OutOfRange`), a known difference checked as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_like_etcd() {
    use skiff_store::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    let mut outcomes = Vec::new();
    for kind in [Server::Etcd, Server::Skiff] {
        let server = tokio::task::block_in_place(|| kind.start()).unwrap();
        let mut kv = KvClient::connect(server.client_url()).await.unwrap();
        let mut got = Vec::new();
        for size in [1024 * 1024, 1536 * 1024 + 1, 1800 * 1024, 3 * 1024 * 1024] {
            let put = PutRequest { key: b"big".to_vec(), value: vec![b'v'; size], ..Default::default() };
            got.push(match kv.put(put).await {
                Ok(_) => "ok".to_string(),
                Err(status) => {
                    // gRPC's own size message names the limit in bytes; keep code and kind.
                    let msg = status.message();
                    let msg = if msg.starts_with("grpc: received message larger than max") { "grpc: received message larger than max" } else { msg };
                    format!("{:?}: {msg}", status.code())
                }
            });
        }
        outcomes.push(got);
    }
    let (etcd, skiff) = (&outcomes[0], &outcomes[1]);
    assert_eq!(etcd[0], "ok");
    assert_eq!(etcd[1], "InvalidArgument: etcdserver: request is too large");
    assert_eq!(skiff[..3], etcd[..3], "skiff differs from etcd up to the gRPC frame limit");
    assert_eq!(etcd[3], "ResourceExhausted: grpc: received message larger than max");
    assert!(skiff[3].starts_with("OutOfRange: Error, decoded message length too large"), "{}", skiff[3]);
}

/// `--auto-compaction-mode periodic` compacts, by itself, to the revision that was current
/// one retention period ago.
#[test]
fn periodic_auto_compaction_compacts_old_revisions() {
    let server = Server::Skiff
        .start_with(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"])
        .unwrap();
    ok(server.etcdctl(&["put", "ac", "1"], None).unwrap());
    ok(server.etcdctl(&["put", "ac", "2"], None).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.etcdctl(&["get", "ac", "--rev=2"], None).unwrap();
        if out.stderr.contains("required revision has been compacted") {
            break;
        }
        assert!(Instant::now() < deadline, "revision 2 was never compacted: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The newest revision is still readable.
    assert!(ok(server.etcdctl(&["get", "ac", "--rev=3"], None).unwrap()).contains('2'));
}

/// With a small `--snapshot-count`, the state machine is flushed and the raft log before it
/// compacted while writes go on; a kill -9 afterwards must still lose nothing (replay starts
/// from the flushed consistent index, which the log never drops below).
#[test]
fn log_compaction_then_kill9_keeps_every_write() {
    let mut server =
        Server::Skiff.start_with(&["--snapshot-count", "20", "--experimental-snapshot-catchup-entries", "0"]).unwrap();
    let write = |from: usize, to: usize| {
        // One txn-free put per key through etcdctl would be slow; a txn of puts is one entry.
        for chunk_start in (from..to).step_by(10) {
            let mut script = String::from("\n");
            for i in chunk_start..(chunk_start + 10).min(to) {
                script.push_str(&format!("put k/{i:04} v{i}\n"));
            }
            script.push('\n');
            script.push('\n');
            ok(server.etcdctl(&["txn"], Some(&script)).unwrap());
        }
    };
    write(0, 300);
    // The flush-and-compact loop runs every second; give it two rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_tail().contains("raft log compacted") {
        assert!(Instant::now() < deadline, "the raft log was never compacted:\n{}", server.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    write(300, 400);
    server.kill9().unwrap();
    server.restart().unwrap();
    let out = ok(server.etcdctl(&["get", "k/", "--prefix", "-w", "json"], None).unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"].as_i64(), Some(400), "writes lost after log compaction + kill -9");
    // 40 txns, one revision each, after the initial revision 1.
    assert_eq!(v["header"]["revision"].as_i64(), Some(41));
}

/// Hostile and boundary inputs get the same gRPC code and message from skiff as from etcd,
/// and never take the server down (invalid sort options: etcd 3.5's answer, since etcd 3.4
/// crashes on one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_inputs_get_etcds_answers() {
    use skiff_store::proto::etcdserverpb as pb;
    use skiff_store::proto::etcdserverpb::{kv_client::KvClient, lease_client::LeaseClient};
    fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        }
    }
    let mut results = Vec::new();
    for kind in [Server::Etcd, Server::Skiff] {
        let server = tokio::task::block_in_place(|| kind.start()).unwrap();
        let mut kv = KvClient::connect(server.client_url()).await.unwrap();
        let mut lease = LeaseClient::connect(server.client_url()).await.unwrap();
        let put = |k: &str| pb::PutRequest { key: k.into(), value: b"v".to_vec(), ..Default::default() };
        let mut got = Vec::new();
        got.push(outcome(kv.put(put("a")).await));
        let range = |f: &dyn Fn(&mut pb::RangeRequest)| {
            let mut r = pb::RangeRequest { key: b"a".to_vec(), range_end: vec![0], ..Default::default() };
            f(&mut r);
            r
        };
        got.push(outcome(kv.range(range(&|r| r.limit = i64::MAX)).await));
        got.push(outcome(kv.range(range(&|r| r.limit = i64::MIN)).await));
        got.push(outcome(kv.range(range(&|r| r.revision = i64::MAX)).await));
        got.push(outcome(kv.range(range(&|r| r.revision = -5)).await));
        if kind == Server::Skiff {
            // etcd 3.4 serves an unknown sort order and dies (nil dereference) on an unknown
            // sort target; etcd 3.5 refuses both with this error, and so does skiff.
            for r in [range(&|r| r.sort_order = 99), range(&|r| r.sort_target = -1)] {
                assert_eq!(outcome(kv.range(r).await), "InvalidArgument: etcdserver: invalid sort option");
            }
        }
        got.push(outcome(kv.range(range(&|r| r.min_mod_revision = i64::MAX)).await));
        got.push(outcome(kv.range(pb::RangeRequest { key: vec![], ..Default::default() }).await));
        got.push(outcome(kv.compact(pb::CompactionRequest { revision: -5, physical: true }).await));
        got.push(outcome(kv.compact(pb::CompactionRequest { revision: i64::MAX, physical: true }).await));
        got.push(outcome(kv.delete_range(pb::DeleteRangeRequest { key: vec![0xff; 3], range_end: vec![0x00, 0x01], ..Default::default() }).await));
        got.push(outcome(
            kv.put(pb::PutRequest { key: b"a".to_vec(), ignore_value: true, value: b"x".to_vec(), ..Default::default() })
                .await,
        ));
        got.push(outcome(kv.put(pb::PutRequest { key: b"zz".to_vec(), ignore_lease: true, ..Default::default() }).await));
        got.push(outcome(lease.lease_grant(pb::LeaseGrantRequest { ttl: i64::MAX, id: 0 }).await));
        got.push(outcome(lease.lease_revoke(pb::LeaseRevokeRequest { id: -1 }).await));
        // The server is still there and consistent.
        let after = match kv.range(range(&|_| {})).await {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("{} went away after {got:?}: {e}\n{}", kind.name(), server.log_tail()),
        };
        got.push(format!("kvs={} rev={}", after.kvs.len(), after.header.unwrap().revision));
        results.push(got);
    }
    assert_eq!(results[1], results[0], "skiff (left) differs from etcd (right)");
}
