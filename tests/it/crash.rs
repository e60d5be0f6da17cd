//! Crash safety of a real `skiff store` process: under concurrent writes it is killed with
//! SIGKILL at a random moment, repeatedly; after each restart every write that was
//! acknowledged must be there, with revisions that are consistent (each acknowledged put's
//! `mod_revision` is the one its response reported, and one writer's sequential puts have
//! increasing revisions).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use skiff_store::proto::etcdserverpb::kv_client::KvClient;
use skiff_store::proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

use crate::harness::{RunningServer, Server};

/// Kill/restart rounds; each round runs writers for a random 200–900 ms before the kill.
const ROUNDS: usize = 6;
const WRITERS: usize = 8;

async fn connect_ready(server: &RunningServer) -> KvClient<Channel> {
    let url = server.client_url();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = KvClient::connect(url.clone()).await {
            let probe = RangeRequest { key: b"probe".to_vec(), ..Default::default() };
            if c.range(probe).await.is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "skiff store at {url} did not serve; log tail:\n{}", server.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// key → (value, mod_revision reported in the put's response header)
type Acked = Arc<Mutex<BTreeMap<Vec<u8>, (Vec<u8>, i64)>>>;

async fn writer(mut client: KvClient<Channel>, id: usize, round: usize, acked: Acked) {
    let mut last_rev = 0;
    for seq in 0u64.. {
        let key = format!("w{id}/r{round}/{seq:08}").into_bytes();
        let value = format!("v{seq}").into_bytes();
        let put = PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
        match client.put(put).await {
            Ok(resp) => {
                let rev = resp.into_inner().header.expect("header").revision;
                assert!(rev > last_rev, "writer {id}: revision {rev} after {last_rev}");
                last_rev = rev;
                acked.lock().insert(key, (value, rev));
            }
            Err(_) => return,
        }
    }
}

async fn check_all_present(client: &mut KvClient<Channel>, acked: &Acked) {
    let expected = acked.lock().clone();
    let resp = client
        .range(RangeRequest { key: b"w".to_vec(), range_end: b"x".to_vec(), ..Default::default() })
        .await
        .expect("range after restart")
        .into_inner();
    let got: BTreeMap<Vec<u8>, (Vec<u8>, i64)> =
        resp.kvs.into_iter().map(|kv| (kv.key, (kv.value, kv.mod_revision))).collect();
    for (key, (value, rev)) in &expected {
        match got.get(key) {
            None => panic!("acknowledged write {} lost", String::from_utf8_lossy(key)),
            Some((v, r)) => {
                assert_eq!(v, value, "value of {}", String::from_utf8_lossy(key));
                assert_eq!(r, rev, "mod_revision of {}", String::from_utf8_lossy(key));
            }
        }
    }
    // Revisions are unique per write: no two keys share a mod_revision (each put is its own txn).
    let mut revs: Vec<i64> = got.values().map(|(_, r)| *r).collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), got.len(), "two keys share a mod_revision");
    let current = resp.header.expect("header").revision;
    assert!(current >= revs.last().copied().unwrap_or(0), "current revision behind a key's revision");
}

/// Runs `WRITERS` writers against `server` for `run_ms`, then kill -9s it and waits for
/// the writers to see it go. Their acknowledged puts are in `acked`.
async fn write_then_kill9(server: &mut RunningServer, round: usize, acked: &Acked, run_ms: u64) {
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let c = KvClient::connect(server.client_url()).await.expect("connect");
        tasks.push(tokio::spawn(writer(c, id, round, acked.clone())));
    }
    tokio::time::sleep(Duration::from_millis(run_ms)).await;
    server.kill9().expect("kill -9");
    for t in tasks {
        t.await.expect("writer task");
    }
}

/// A lazyfs mount (jepsen's FUSE file system) at `<dir>/data` over `<dir>/backing`.
fn lazy_data_dir(dir: &std::path::Path) -> (skiff_jepsen::lazyfs::LazyFs, std::path::PathBuf) {
    let backing = dir.join("backing");
    let mount = dir.join("data");
    std::fs::create_dir_all(&backing).expect("mkdir");
    std::fs::create_dir_all(&mount).expect("mkdir");
    let lazy = skiff_jepsen::lazyfs::LazyFs::mount(&backing, &mount).expect("mount lazyfs (needs root and /dev/fuse)");
    (lazy, mount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_acknowledged_write() {
    let mut server = Server::Skiff.start().expect("start skiff store");
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut total_acked_before = 0;
    for round in 0..ROUNDS {
        let mut client = connect_ready(&server).await;
        check_all_present(&mut client, &acked).await;
        write_then_kill9(&mut server, round, &acked, 200 + rand::random::<u64>() % 700).await;
        let n = acked.lock().len();
        assert!(n > total_acked_before, "round {round}: no write was acknowledged under load");
        total_acked_before = n;
        tokio::task::block_in_place(|| server.restart()).expect("restart after kill -9");
    }
    let mut client = connect_ready(&server).await;
    check_all_present(&mut client, &acked).await;
}

/// Power loss rather than a process crash: the data directory is a lazyfs mount (jepsen's
/// FUSE file system), and after each kill -9 every write that no fsync covered is
/// forgotten before the restart. What an acknowledged put needs on disk must have been
/// fsynced, or this loses it.
async fn power_loss_under_load(kind: Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lazy, mount) = lazy_data_dir(dir.path());
    let mut server = kind.start_on(&[], mount).expect("start on lazyfs");
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut rolled_back = 0;
    for round in 0..POWER_LOSS_ROUNDS {
        let mut client = connect_ready(&server).await;
        check_all_present(&mut client, &acked).await;
        write_then_kill9(&mut server, round, &acked, 300 + rand::random::<u64>() % 700).await;
        rolled_back += lazy.lose_unsynced().expect("lose unsynced writes");
        tokio::task::block_in_place(|| server.restart()).expect("restart after a power loss");
    }
    let mut client = connect_ready(&server).await;
    check_all_present(&mut client, &acked).await;
    // The fault must have bitten: writes in flight at each kill were never synced.
    assert!(rolled_back > 0, "no file had unsynced data at any kill: the fault was never exercised");
    drop(client);
    drop(server);
    drop(lazy);
}

const POWER_LOSS_ROUNDS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_under_load_loses_no_acknowledged_write_skiff() {
    power_loss_under_load(Server::Skiff).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_under_load_loses_no_acknowledged_write_etcd() {
    power_loss_under_load(Server::Etcd).await;
}

/// The same fault against a store that cheats (`--unsafe-no-fsync`, etcd 3.5's flag): the
/// power loss must cost acknowledged writes, or keep the member from starting — proof that
/// the fault and the check above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_catches_a_store_that_does_not_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lazy, mount) = lazy_data_dir(dir.path());
    let mut server = Server::Skiff
        .start_on(&["--unsafe-no-fsync", "true"], mount)
        .expect("start on lazyfs");
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut verdict = None;
    for round in 0..POWER_LOSS_ROUNDS {
        connect_ready(&server).await;
        write_then_kill9(&mut server, round, &acked, 500).await;
        lazy.lose_unsynced().expect("lose unsynced writes");
        if let Err(e) = tokio::task::block_in_place(|| server.restart()) {
            verdict = Some(format!("the member could not start: {e:#}"));
            break;
        }
        let mut client = connect_ready(&server).await;
        let expected = acked.lock().clone();
        let resp = client
            .range(RangeRequest { key: b"w".to_vec(), range_end: b"x".to_vec(), ..Default::default() })
            .await
            .expect("range")
            .into_inner();
        let lost = expected.len().saturating_sub(
            resp.kvs.iter().filter(|kv| expected.contains_key(&kv.key)).count(),
        );
        if lost > 0 {
            verdict = Some(format!("{lost} of {} acknowledged writes lost", expected.len()));
            break;
        }
    }
    let verdict = verdict.expect("a store that never fsyncs survived every power loss: the fault does not bite");
    eprintln!("caught: {verdict}");
    drop(server);
    drop(lazy);
}
