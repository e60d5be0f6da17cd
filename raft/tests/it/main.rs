//! skiff-raft's integration tests: one binary (failpoints, being process-global, have their
//! own in `tests/failpoints.rs`).

mod cluster;
mod group_commit;
mod raw_node;
mod wal_model;

use raft::eraftpb::Entry;
use skiff_raft::wal::{WalConfig, WalMetrics};

pub fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

/// A config with metrics in a registry of its own, so tests do not share metrics.
pub fn config(dir: &std::path::Path) -> WalConfig {
    config_with_registry(dir).0
}

pub fn config_with_registry(dir: &std::path::Path) -> (WalConfig, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = WalMetrics::register(&registry).unwrap();
    (
        WalConfig {
            metrics: Some(metrics),
            ..WalConfig::new(dir)
        },
        registry,
    )
}
