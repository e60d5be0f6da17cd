//! skiff-store: an etcd v3 compatible key-value store.
//!
//! Owns: the MVCC state machine on RocksDB (`mvcc`), the watch hub (`watch`), the lessor
//! (`lease`), the applier that executes committed raft entries (`apply`), etcd's gRPC
//! services and HTTP endpoints (`server`), etcd's wire types (`proto`) and error strings
//! (`error`), and snapshots (`snapshot`).
//!
//! Must never: reach into raft beyond `skiff_raft::node`'s handle and committed stream;
//! block a tokio worker on RocksDB writes (the applier runs on its own thread); return an
//! error string that differs from etcd's for the same condition.
//!
//! Where new code goes: a new etcd RPC in `server/<service>.rs`; a new replicated request
//! in `proto/skiff/raftpb.proto` + `apply/`; a new wire error in `error.rs`.

pub mod apply;
pub mod compactor;
pub mod config;
pub mod error;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod server;
pub mod snapshot;
pub mod watch;
