//! `DurableStorage` + `LogWriter` under a real raft-rs `RawNode` (single voter) driven through
//! the async-ready path, then restarted from disk.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use raft::{RawNode, StateRole, Storage};
use skiff_raft::storage::{DurableStorage, LogWriter, PersistTask};

use crate::config;

const DEADLINE: Duration = Duration::from_secs(20);
const PROPOSALS: usize = 20;

fn raft_config(applied: u64) -> raft::Config {
    raft::Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 1,
        applied,
        ..Default::default()
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Drives `node` until `done` says so, persisting every `Ready` through `writer` (one task
/// per ready, completed asynchronously) and collecting committed entries.
struct Driver {
    node: RawNode<DurableStorage>,
    writer: LogWriter,
    persisted_tx: mpsc::Sender<u64>,
    persisted_rx: mpsc::Receiver<u64>,
    committed: Vec<raft::eraftpb::Entry>,
}

impl Driver {
    fn new(storage: DurableStorage, writer: LogWriter, applied: u64) -> Driver {
        let node = RawNode::new(&raft_config(applied), storage, &logger()).unwrap();
        let (persisted_tx, persisted_rx) = mpsc::channel();
        Driver {
            node,
            writer,
            persisted_tx,
            persisted_rx,
            committed: Vec::new(),
        }
    }

    fn on_ready(&mut self) {
        if !self.node.has_ready() {
            return;
        }
        let mut rd = self.node.ready();
        assert!(rd.snapshot().is_empty());
        self.committed.extend(rd.take_committed_entries());
        let tx = self.persisted_tx.clone();
        let number = rd.number();
        // Every ready goes through the writer (an empty task costs no fsync) so that
        // on_persist_ready sees numbers in order.
        let task = PersistTask {
            entries: rd.take_entries(),
            hard_state: rd.hs().cloned(),
            snapshot: None,
            on_done: Box::new(move |r| {
                r.unwrap();
                let _ = tx.send(number);
            }),
        };
        self.writer.submit_blocking(task).unwrap();
        self.node.advance_append_async(rd);
        if let Some(last) = self.committed.last() {
            self.node.advance_apply_to(last.index);
        }
    }

    fn run_until(&mut self, mut done: impl FnMut(&mut Driver) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; committed {:?}",
                self.committed.len()
            );
            self.on_ready();
            if let Ok(n) = self.persisted_rx.recv_timeout(Duration::from_millis(10)) {
                self.node.on_persist_ready(n);
            }
            while let Ok(n) = self.persisted_rx.try_recv() {
                self.node.on_persist_ready(n);
            }
        }
    }

    fn committed_payloads(&self) -> Vec<Vec<u8>> {
        self.committed
            .iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| e.data.to_vec())
            .collect()
    }
}

fn proposal(i: usize) -> Vec<u8> {
    format!("proposal-{i}").into_bytes()
}

#[test]
fn single_voter_commits_through_the_wal_and_restarts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (storage, writer) = DurableStorage::open_bootstrap(config.clone(), &[1]).unwrap();
    assert_eq!(storage.initial_state().unwrap().conf_state.voters, vec![1]);
    let mut driver = Driver::new(storage.clone(), writer, 0);
    driver.node.campaign().unwrap();
    driver.run_until(|d| d.node.raft.state == StateRole::Leader);
    for i in 0..PROPOSALS {
        driver.node.propose(vec![], proposal(i)).unwrap();
    }
    let want: Vec<Vec<u8>> = (0..PROPOSALS).map(proposal).collect();
    driver.run_until(|d| d.committed_payloads() == want);
    let last_index = driver.committed.last().unwrap().index;
    let term = driver.node.raft.term;
    assert!(driver.writer.stats().fsyncs > 0);
    let Driver { writer, .. } = driver;
    writer.shutdown();

    // Restart: the log, the hard state and the membership come back from disk.
    let (storage, writer) = DurableStorage::open(config.clone()).unwrap();
    let state = storage.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1]);
    assert_eq!(state.hard_state.term, term);
    assert!(
        state.hard_state.commit >= last_index,
        "commit {} < {last_index}",
        state.hard_state.commit
    );
    // The log proper starts after the bootstrap marker at index 1.
    let entries = storage
        .entries(
            storage.first_index().unwrap(),
            last_index + 1,
            None,
            raft::GetEntriesContext::empty(false),
        )
        .unwrap();
    let payloads: Vec<Vec<u8>> = entries
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data.to_vec())
        .collect();
    assert_eq!(payloads, want);

    // The restarted member is elected again and keeps committing.
    let mut driver = Driver::new(storage, writer, last_index);
    driver.node.campaign().unwrap();
    driver.run_until(|d| d.node.raft.state == StateRole::Leader);
    driver
        .node
        .propose(vec![], b"after restart".to_vec())
        .unwrap();
    driver.run_until(|d| {
        d.committed_payloads()
            .last()
            .is_some_and(|p| p == b"after restart")
    });
    assert!(driver.node.raft.term > term);
    let Driver { writer, .. } = driver;
    writer.shutdown();
}
