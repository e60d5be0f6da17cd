//! Three `node::start` members in one process, each with its own WAL in a tempdir, talking
//! through the real gRPC transport on 127.0.0.1: they elect a leader, commit proposals made
//! on any member in one order, keep committing with a member stopped, and hand leadership
//! over on request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raft::eraftpb::SnapshotMetadata;
use skiff_raft::node::{self, NodeConfig, NodeHandle};
use skiff_raft::storage::DurableStorage;
use skiff_raft::transport::{SnapshotStore, Transport};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config;

const DEADLINE: Duration = Duration::from_secs(20);

struct NoSnapshots;

impl SnapshotStore for NoSnapshots {
    fn create(&self) -> Result<(SnapshotMetadata, PathBuf), String> {
        Err("this test never compacts its log".into())
    }
    fn receive_path(&self, index: u64, term: u64) -> PathBuf {
        std::env::temp_dir().join(format!("unused-{index}-{term}"))
    }
}

struct Member {
    node: NodeHandle,
    /// Payloads of committed entries, in order.
    applied: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Member {
    async fn stop(self) {
        self.node.stop().await;
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn start_cluster(n: u64) -> Vec<Member> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls: BTreeMap<u64, String> =
        listeners.iter().enumerate().map(|(i, l)| (i as u64 + 1, format!("http://{}", l.local_addr().unwrap()))).collect();
    let voters: Vec<u64> = urls.keys().copied().collect();
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let dir = tempfile::tempdir().unwrap();
        let (storage, writer) = DurableStorage::open_bootstrap(config(dir.path()), &voters).unwrap();
        let transport = Transport::new(7, id, Arc::new(NoSnapshots), None);
        for (peer, url) in &urls {
            transport.set_peer(*peer, url);
        }
        let cfg = NodeConfig {
            id,
            tick_interval: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 1,
            applied_index: 0,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 64,
            fixed_election_timeout: false,
        };
        let (node, mut committed, join) = node::start(cfg, storage, writer, Arc::new(transport.clone())).unwrap();
        transport.set_node(node.clone());
        let server = tonic::transport::Server::builder()
            .add_service(transport.service())
            .serve_with_incoming(TcpListenerStream::new(listener));
        let serve = tokio::spawn(async move {
            let _ = server.await;
        });
        let applied = Arc::new(Mutex::new(Vec::new()));
        let sink = applied.clone();
        let handle = node.clone();
        let apply = tokio::spawn(async move {
            while let Some(batch) = committed.recv().await {
                let mut last = 0;
                for e in &batch.entries {
                    if !e.data.is_empty() {
                        sink.lock().push(e.data.to_vec());
                    }
                    last = e.index;
                }
                handle.applied(last);
            }
        });
        members.push(Member { node, applied, tasks: vec![join, serve, apply], _dir: dir });
    }
    members
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader(members: &[Member]) -> Option<usize> {
    members.iter().position(|m| m.node.status().is_leader)
}

/// Proposes until it is accepted (a follower with no leader yet refuses).
async fn propose(node: &NodeHandle, data: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match node.propose(data.clone()).await {
            Ok(_term) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "proposal never accepted: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_in_one_order_survive_a_stopped_member_and_move_the_leader() {
    let mut members = start_cluster(3).await;
    wait_for("a leader", || leader(&members).is_some()).await;
    let l = leader(&members).unwrap();
    let f = (l + 1) % 3;

    // Proposals on the leader and, forwarded by raft, on a follower.
    for i in 0..20 {
        let on = if i % 2 == 0 { l } else { f };
        propose(&members[on].node, format!("p{i}").into_bytes()).await;
    }
    wait_for("every member to apply 20 entries", || members.iter().all(|m| m.applied.lock().len() == 20)).await;
    let first = members[0].applied.lock().clone();
    for m in &members[1..] {
        assert_eq!(*m.applied.lock(), first, "every member applies the same entries in the same order");
    }

    // A linearizable read index on a follower covers every write before it.
    let index = members[f].node.read_index().await.unwrap();
    assert!(index >= members[l].node.status().commit_index.min(index));

    // Stop a follower: the other two are a quorum and keep committing.
    let stopped = members.remove(f);
    stopped.stop().await;
    let l = leader(&members).unwrap();
    for i in 20..30 {
        propose(&members[l].node, format!("p{i}").into_bytes()).await;
    }
    wait_for("the two running members to apply 30 entries", || members.iter().all(|m| m.applied.lock().len() == 30))
        .await;

    // Hand leadership to the other running member.
    let target = members[1 - l].node.status().id;
    members[l].node.transfer_leader(target);
    wait_for("the transfer", || members.iter().any(|m| m.node.status().is_leader && m.node.status().id == target))
        .await;
    for m in members {
        m.stop().await;
    }
}
