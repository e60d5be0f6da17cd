//! skiff-jepsen: consistency and fault-injection testing, for Skiff and for any etcd.
//!
//! # What exists now
//!
//! - [`history`], [`model`], [`linearizable`]: histories (`history.jsonl`), sequential
//!   models, and a Wing–Gong / Lowe linearizability search, per key, bounded, with evidence.
//! - [`elle`]: the list-append anomaly checker (G0, G1a/b/c, G-single, G2-item, real time).
//! - [`watch`]: etcd's watch guarantees (Ordered, Unique, Atomic, Reliable, Resumable,
//!   Bookmarkable, PrevKV, Filter, IsCreate) and a cross-watcher comparison.
//! - [`sim`]: deterministic simulation of the raft core from a seed.
//! - [`runner`]: `skiff jepsen run|check` against `skiff store` or etcd members, workloads
//!   register, set, append, watch, lease-lock and kube, each with its checker; faults kill,
//!   pause, partitions (two-way and one-way), drop, delay, clock (libfaketime),
//!   membership, WAL disk faults, move-leader and compaction; results directories with
//!   plots. A real run proves the checkers catch a cheating store
//!   (`--unsafe-no-read-index`).
//! - [`process`]: member processes of `skiff store` or etcd (ports, flags, spawn, signals,
//!   stop), shared by the runner's cluster and by `skiff-benches`.
//!
//! # What issue 4 still needs
//!
//! - [`lazyfs`] (lost unsynced writes) and [`netns`] (kernel-level partitions and loss)
//!   exist as libraries with their own tests; they are not yet faults of the runner's
//!   nemesis;
//! - snapshot-file faults (only WAL segments are corrupted today); grow and shrink beyond
//!   remove-then-re-add; defragmentation as an admin fault.

//! # Rules
//!
//! Talks to clusters only through wire protocols, so everything here works against real
//! etcd too; never depends on `skiff-store` or `skiff-raft` internals (the simulation will
//! drive `NodeCore` through its public API). Checkers are pure functions of a history.
//! New models go in `model.rs` (or `model/` once it grows), new checkers in their own
//! module beside `linearizable`.

pub mod elle;
pub mod history;
pub mod lazyfs;
pub mod linearizable;
pub mod model;
pub mod netns;
pub mod process;
pub mod runner;
pub mod sim;
pub mod watch;
