//! Range reads exactly as etcd's `applierV3.Range`: the MVCC layer returns keys in key
//! order with a count; revision filters, sorting, `limit`/`more` and `keys_only` are applied
//! here, in etcd's order.

use std::cmp::Ordering;

use crate::error::Error;
use crate::mvcc::{self, KeyValue, MvccStore, RangeOptions, RangeResult, WriteTxn};
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use pb::range_request::{SortOrder, SortTarget};

/// Anything a range can be read from: the store (read-only requests) or a write txn
/// (ranges inside a txn see the txn's own earlier writes).
pub trait ReadView {
    fn read_range(&self, key: &[u8], end: &[u8], opts: RangeOptions) -> mvcc::Result<RangeResult>;
}

impl ReadView for MvccStore {
    fn read_range(&self, key: &[u8], end: &[u8], opts: RangeOptions) -> mvcc::Result<RangeResult> {
        self.range(key, end, opts)
    }
}

impl ReadView for WriteTxn<'_> {
    fn read_range(&self, key: &[u8], end: &[u8], opts: RangeOptions) -> mvcc::Result<RangeResult> {
        self.range(key, end, opts)
    }
}

/// Request checks done before a range is served (etcd's `checkRangeRequest`).
pub fn check_range(r: &pb::RangeRequest) -> Result<(), Error> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

pub fn to_pb_kv(kv: KeyValue) -> mvccpb::KeyValue {
    kv.into()
}

pub fn apply_range(view: &impl ReadView, r: &pb::RangeRequest) -> Result<pb::RangeResponse, Error> {
    let sort_order = SortOrder::try_from(r.sort_order).map_err(|_| Error::InvalidSortOption)?;
    let sort_target = SortTarget::try_from(r.sort_target).map_err(|_| Error::InvalidSortOption)?;
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // Sorting or filtering needs every key; otherwise fetch one extra to learn `more`.
    let mut limit = r.limit;
    if sort_order != SortOrder::None || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit = limit.saturating_add(1);
    }
    let opts = RangeOptions { rev: r.revision, limit, count_only: r.count_only };
    let rr = view.read_range(&r.key, &r.range_end, opts)?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let mut order = sort_order;
    if sort_target != SortTarget::Key && order == SortOrder::None {
        // Results come in ascending key order; a non-key target defaults to ascending.
        order = SortOrder::Ascend;
    } else if sort_target == SortTarget::Key && order == SortOrder::Ascend {
        // Already sorted by key.
        order = SortOrder::None;
    }
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable, so ties keep key order as etcd's small-slice insertion sort does.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() as i64 > r.limit {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(pb::RangeResponse {
        header: super::header(rr.rev),
        kvs: kvs.into_iter().map(to_pb_kv).collect(),
        more,
        count: rr.count,
    })
}
