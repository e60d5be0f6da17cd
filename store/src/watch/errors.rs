//! `cancel_reason` strings of a failed watch create request. They mirror etcd's
//! `server/storage/mvcc/watcher.go` errors byte for byte (clients show them to users and
//! tests compare them); they travel inside a `WatchResponse`, not as a gRPC status, which
//! is why they live here and not in `crate::error`.

/// etcd's `mvcc.ErrWatcherDuplicateID`: a create request reused a watch id that is live on
/// the same stream.
pub(crate) const WATCHER_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// etcd's `mvcc.ErrEmptyWatcherRange`: `range_end` is set and not greater than `key`.
pub(crate) const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";

/// etcd's `rpctypes.ErrCompacted`, the reason given for a negative start revision.
pub(crate) fn compacted() -> String {
    crate::error::Error::Compacted.to_string()
}
