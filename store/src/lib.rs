//! skiff-store: an etcd v3 compatible key-value store.
//!
//! Owns: the MVCC state machine on RocksDB (`mvcc`), the etcd wire types (`proto`).
//!
//! Must never: reach raft internals beyond `skiff_raft::node`'s handle, or block a tokio
//! worker on RocksDB writes (the applier runs on its own thread).

pub mod mvcc;
pub mod proto;
