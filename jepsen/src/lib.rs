//! skiff-jepsen: consistency and fault-injection testing, for Skiff and for any etcd.
//!
//! # What exists now (first slice of issue 4)
//!
//! A library, with no IO beyond reading and writing histories:
//! - [`history`]: the history of a run — invocations and `ok` / `fail` / `info` completions
//!   per process, with monotonic times — and its `history.jsonl` format (one op per line),
//!   plus pairing of invocations with completions.
//! - [`model`]: the [`Model`](model::Model) trait (a sequential specification: initial
//!   state, `step`) and two models, [`Register`](model::Register) (read / write / cas on
//!   one value) and [`KvRegister`](model::KvRegister) (one register per key, partitioned
//!   by key).
//! - [`linearizable`]: a Wing–Gong search with Lowe's improvements (memoized
//!   configurations, just-in-time linearization), `info` operations as possibly applied,
//!   per-key partitioning, a bounded search that answers `Unknown` rather than guess, and
//!   human-readable evidence for violations.
//!
//! # What issue 4 still needs
//!
//! - cluster runners (`skiff store` members or real etcd members) and the `skiff jepsen`
//!   command, with a results directory (`history.jsonl`, `results.json`, `summary.txt`,
//!   latency plots with fault windows) and a progress bar;
//! - workloads: register over the etcd wire API, set, append (Elle-style transactions),
//!   watch, lease/lock, kubernetes-like List/Watch/optimistic-concurrency;
//! - the nemesis: kills and pauses, partitions (userspace proxy, namespaces + nftables),
//!   clock skew, membership changes, admin operations, disk faults (lazyfs-like FUSE);
//! - the transaction-anomaly checker for append (G0, G1a/b/c, G-single, G2, real-time);
//! - the watch checkers (Ordered, Unique, Atomic, Reliable, Resumable, Bookmarkable, PrevKV,
//!   Filter, IsCreate);
//! - deterministic simulation of the raft + store core from a seed, with regression seeds;
//! - proof on real runs that each checker can fail (a deliberately unsafe store setting).
//!
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
pub mod runner;
pub mod sim;
pub mod watch;
