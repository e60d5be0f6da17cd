//! skiff-benches (not built yet): storage and failover benchmarks.
//!
//! Will own: criterion micro-benchmarks of the store and the WAL, `skiff bench` (an
//! etcd-`benchmark`-style load generator against any endpoints), side-by-side runs with real
//! etcd and quorum-failure benchmarks. Uses only wire protocols, so it measures any etcd.
