//! skiff-jepsen (not built yet): consistency and fault-injection testing.
//!
//! Will own: cluster runners (skiff or real etcd), workloads, a nemesis (kills, pauses,
//! partitions, clock and disk faults), history recording, linearizability / transaction /
//! watch checkers, and deterministic simulation of the raft + store core. Uses only wire
//! protocols against real processes, so it tests any etcd.
