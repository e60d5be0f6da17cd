//! skiff-raft: replication for Skiff's store.
//!
//! Owns: the raft-rs `RawNode` driver (`node`), the write-ahead log that holds the raft log
//! (`wal`), the durable `raft::Storage` built on it (`storage`), and the gRPC peer transport
//! that carries messages and state-machine snapshots between members (`transport`).
//!
//! Must never: decode an entry's payload (it knows nothing of keys, revisions or
//! Kubernetes), or block a tokio worker on disk IO or fsync (the WAL writer is its own thread).
//!
//! Where new code goes: a new input to the driver is a variant of `node::Input`; a new
//! durable record kind is a `wal::RecordType`.

pub mod core;
mod logger;
pub mod node;
pub mod storage;
pub mod transport;
pub mod wal;

/// raft-rs, re-exported so the store names the same types (`eraftpb`).
pub use raft;
