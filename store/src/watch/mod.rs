//! etcd's watch: the hub that feeds watchers from the apply path, the catch-up of watchers
//! that fell behind, and the gRPC `Watch` service.
//!
//! Owns: every watcher of every watch stream, their state (synced / unsynced, in etcd's
//! words), the per-stream outbound queues, progress notifications and the watch metrics.
//!
//! Must never: block or do disk IO in [`WatchHub::notify`] (it runs on the applier thread,
//! between two write transactions), or let one slow client stall writes or other watchers.
//! Every buffer here is bounded by a named constant below.
//!
//! How an event reaches a client:
//!
//! ```text
//! applier ──notify(rev, events)──▶ WatchHub ──try_send──▶ stream queue ──▶ WatchResponseStream ──▶ gRPC
//!                                    │ queue full: the watcher becomes unsynced ("victim")
//!                                    ▼
//!                          catch-up task ──events(from, to) pages──▶ MvccStore change log
//! ```
//!
//! Guarantees kept (etcd's): ordered, unique, atomic (one write transaction's events for a
//! watcher travel in one response, split only by `fragment`), reliable (no gap between the
//! change log replay and live delivery), resumable (`start_revision`), bookmarkable
//! (progress notifications and `RequestProgress`), `prev_kv`, filters, and
//! `compact_revision` on a start revision that was compacted away.
//!
//! Where new code goes: matching and per-watcher options in `watcher.rs`; hub state and
//! the apply-path entry points in `hub.rs`; anything that reads the change log in
//! `catchup.rs`; the gRPC surface (request parsing, response building, fragmentation) in
//! `service.rs`.

mod catchup;
mod errors;
mod hub;
mod metrics;
mod service;
mod watcher;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod hub_tests;
#[cfg(test)]
mod service_tests;

use std::time::Duration;

pub use hub::WatchHub;
pub use service::{HeaderFn, WatchResponseStream, WatchService, WatchServiceConfig};

/// Responses buffered per watch stream between the hub and gRPC. etcd's `chanBufLen`:
/// large enough to absorb a burst of writes, small enough that a client that stops
/// reading costs at most this many responses of memory before its watchers become
/// unsynced and are served from the change log instead.
pub const STREAM_SEND_QUEUE_RESPONSES_MAX: usize = 128;

/// Events read from the change log per catch-up page of one watcher (etcd's
/// `watchBatchMaxRevs` bounds the same thing in revisions). A page never splits a
/// revision: the page that reaches this bound is completed to the end of its last
/// revision (a transaction's events are delivered together).
pub const CATCHUP_EVENTS_PER_PAGE_MAX: usize = 1000;

/// Unsynced watchers served (one page each) per round of the catch-up task before it
/// yields; etcd's `maxWatchersPerSync`.
pub const CATCHUP_WATCHERS_PER_ROUND_MAX: usize = 512;

/// How long the catch-up task waits before retrying when no unsynced watcher could make
/// progress (their stream queues are full). etcd retries victims every 10 ms.
pub const CATCHUP_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 3 * 512 * 1024;

/// etcd's `grpcOverheadBytes`: slack added to the request limit for gRPC framing; a watch
/// response larger than limit + overhead is split when the watcher asked for `fragment`.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's default `--experimental-watch-progress-notify-interval`.
pub const PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(10 * 60);

/// etcd raises a shorter progress interval to this (`minWatchProgressInterval`).
pub const PROGRESS_NOTIFY_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// `clientv3.InvalidWatchID`: the watch id of responses that concern no single watcher
/// (a stream-wide progress notification, a create request that failed).
pub const INVALID_WATCH_ID: i64 = -1;

/// `clientv3.AutoWatchID`: a create request with this id gets one assigned by the server.
pub const AUTO_WATCH_ID: i64 = 0;
