//! Public types of the MVCC store, in etcd's words (`Revision { main, sub }`, `KeyValue`,
//! `Event`). The gRPC layer converts these to and from `mvccpb` messages; nothing here
//! depends on protobuf.

/// A revision: `main` is the store revision of one write transaction, `sub` orders the
/// changes inside it (0, 1, 2, … for each key touched by the transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }
}

/// One version of a key, exactly the fields of etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Main revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// Main revision of the last change to the key.
    pub mod_revision: i64,
    /// Number of puts to the key in this generation (1 after creation, reset by delete).
    pub version: i64,
    pub value: Vec<u8>,
    /// Lease attached to the key, 0 when none.
    pub lease: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change, as delivered to watchers. For a delete, `kv` holds the key and the
/// tombstone's `mod_revision` (other fields zero), as etcd sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The previous version of the key, filled only when asked for (`prev_kv`).
    pub prev_kv: Option<KeyValue>,
}

/// Options of a range read at the MVCC level, as etcd's `mvcc.RangeOptions`. Sorting,
/// revision filters, `keys_only` and `more` are applied above, in the request applier,
/// exactly where etcd applies them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Revision to read at; 0 or negative means the current revision.
    pub rev: i64,
    /// Maximum number of keys returned (in key order); 0 means no limit.
    pub limit: i64,
    /// Only count; `kvs` is left empty.
    pub count_only: bool,
}

/// Result of a range read, as etcd's `mvcc.RangeResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Number of live keys in the range at `rev`, ignoring the limit.
    pub count: i64,
    /// The current revision when the read was served (etcd's `curRev`, which becomes the
    /// response header's revision) — not the revision read, which may be older. Inside a
    /// write txn that has changes, the txn's revision.
    pub rev: i64,
}
