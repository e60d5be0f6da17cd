//! skiff's integration tests: one test binary for the root crate (`cargo test -p skiff
//! --test it`). They start real processes (skiff, and Debian's etcd as the reference) on
//! loopback ports; `harness` owns that.

mod apiserver;
mod apiserver_cache;
mod apiserver_protobuf;
mod apiserver_discovery;
mod bench_smoke;
mod cluster;
mod cluster_corrupt;
mod cluster_harness;
mod cluster_lease;
mod crash;
mod etcd_client;
mod etcd_client_crate;
mod etcdctl_diff;
mod h2shim_etcdctl;
mod harness;
mod jepsen_smoke;
mod lock_api;
mod store_features;
