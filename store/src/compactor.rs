//! Automatic compaction (etcd's `--auto-compaction-mode` / `--auto-compaction-retention`).
//!
//! periodic: every `retention` (hourly for retentions over an hour, as etcd does since
//! 3.3), compact to the revision that was current `retention` ago;
//! revision: every 5 minutes, compact to `current - retention` when positive.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::AutoCompaction;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::internal_request::Request;
use crate::server::EtcdServer;

/// How often the revision compactor looks (etcd: 5 minutes).
const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// Samples of (time, revision) the periodic compactor keeps; it samples `retention / 10`
/// apart, so eleven cover one retention window.
const PERIODIC_SAMPLES_MAX: usize = 11;

pub async fn run(server: Arc<EtcdServer>) {
    match server.config.auto_compaction {
        AutoCompaction::Disabled => {}
        AutoCompaction::Revision { revisions } => loop {
            tokio::time::sleep(REVISION_CHECK_INTERVAL).await;
            let target = server.mvcc.current_revision() - revisions;
            if target > server.mvcc.compact_revision() {
                compact(&server, target).await;
            }
        },
        AutoCompaction::Periodic { retention } => {
            let hour = Duration::from_secs(3600);
            let interval = if retention > hour { hour } else { retention } / 10;
            let interval = interval.max(Duration::from_millis(100));
            let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
            loop {
                samples.push_back((Instant::now(), server.mvcc.current_revision()));
                if samples.len() > PERIODIC_SAMPLES_MAX {
                    samples.pop_front();
                }
                if let Some(&(at, rev)) = samples.front() {
                    if at.elapsed() >= retention && rev > server.mvcc.compact_revision() {
                        compact(&server, rev).await;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}

async fn compact(server: &EtcdServer, revision: i64) {
    if !server.node.status().is_leader {
        return;
    }
    match server.propose(Request::Compaction(pb::CompactionRequest { revision, physical: false })).await {
        Ok(_) => info!(revision, "auto compaction finished"),
        Err(Error::Compacted) => {}
        Err(e) => warn!(revision, error = %e, "auto compaction failed"),
    }
}
