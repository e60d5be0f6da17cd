//! Storage over the etcd v3 API (the `etcd-client` crate), the only module that talks to
//! etcd. It knows keys, bytes and revisions; it does not know Kubernetes objects.
//!
//! Optimistic concurrency as kube-apiserver's etcd3 store: a create is a txn that puts only
//! if the key's `mod_revision == 0` (absent); an update or delete is a txn that writes only
//! if `mod_revision` still equals the revision the caller read. The txn's else-branch reads
//! the key, so a failed compare returns the current value without a second round trip.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream};

/// How long one etcd request may take before the API request fails with 503/504.
pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to etcd may take at start-up.
pub const ETCD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest gRPC message accepted from etcd (a list page of large objects).
pub const ETCD_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
}

impl Kv {
    pub fn from_etcd(kv: &etcd_client::KeyValue) -> Kv {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested revision was compacted away (`compacted` is etcd's compact revision when known).
    #[error("required revision {requested} has been compacted")]
    Compacted { requested: i64 },
    /// The requested revision is newer than the store's.
    #[error("required revision {requested} is a future revision")]
    FutureRevision { requested: i64 },
    #[error("etcd request timed out after {0:?}")]
    Timeout(Duration),
    #[error("etcd: {0}")]
    Etcd(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// The revision the read was served at.
    pub revision: i64,
    /// More keys remain in the range past the last one returned.
    pub more: bool,
    /// Keys in the range not returned (etcd's `count - len(kvs)`).
    pub remaining: i64,
}

/// Outcome of a compare-and-write.
#[derive(Debug)]
pub enum TxnOutcome {
    /// Written at this revision.
    Done(i64),
    /// The compare failed; the key's current value (None: absent).
    Mismatch(Option<Kv>),
}

#[derive(Clone)]
pub struct Storage {
    client: Client,
}

fn map_err(requested: i64, e: etcd_client::Error) -> StorageError {
    let text = e.to_string();
    if text.contains("required revision has been compacted") {
        StorageError::Compacted { requested }
    } else if text.contains("required revision is a future revision") {
        StorageError::FutureRevision { requested }
    } else {
        StorageError::Etcd(text)
    }
}

async fn timed<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(ETCD_REQUEST_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(StorageError::Timeout(ETCD_REQUEST_TIMEOUT)),
    }
}

/// End of the key range of everything starting with `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Storage {
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<Storage> {
        // No client-wide request timeout: it would also end long-running watches. Unary
        // calls are bounded by `timed` instead.
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(ETCD_CONNECT_TIMEOUT);
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Storage { client })
    }

    /// A linearizable read of one key.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>> {
        let mut kv = self.client.kv_client();
        timed(async move {
            let resp = kv.get(key, None).await.map_err(|e| map_err(0, e))?;
            Ok(resp.kvs().first().map(Kv::from_etcd))
        })
        .await
    }

    /// The store's current revision (a linearizable read of nothing).
    pub async fn current_revision(&self) -> Result<i64> {
        let mut kv = self.client.kv_client();
        timed(async move {
            let resp = kv
                .get("/registry/skiff.io/revision-probe", Some(GetOptions::new().with_count_only()))
                .await
                .map_err(|e| map_err(0, e))?;
            Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
        })
        .await
    }

    /// Keys in `[start, end)` at `revision` (0: latest, linearizable), at most `limit`
    /// (0: all).
    pub async fn range(&self, start: &str, end: Vec<u8>, revision: i64, limit: i64) -> Result<Page> {
        let mut kv = self.client.kv_client().max_decoding_message_size(ETCD_MESSAGE_BYTES_MAX);
        timed(async move {
            let mut opts = GetOptions::new().with_range(end);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            if limit > 0 {
                opts = opts.with_limit(limit);
            }
            let resp = kv.get(start, Some(opts)).await.map_err(|e| map_err(revision, e))?;
            let kvs: Vec<Kv> = resp.kvs().iter().map(Kv::from_etcd).collect();
            let remaining = (resp.count() - kvs.len() as i64).max(0);
            Ok(Page { revision: resp.header().map(|h| h.revision()).unwrap_or(0), more: resp.more(), remaining, kvs })
        })
        .await
    }

    /// Keys only (values empty) under `prefix` at the latest revision.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut kv = self.client.kv_client();
        timed(async move {
            let opts = GetOptions::new().with_prefix().with_keys_only();
            let resp = kv.get(prefix, Some(opts)).await.map_err(|e| map_err(0, e))?;
            Ok(resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect())
        })
        .await
    }

    /// Puts every `(key, value)` only if none of the keys exists. `Mismatch` carries the
    /// first key's current value (None when only another key was taken).
    pub async fn create(&self, puts: Vec<(String, Vec<u8>)>) -> Result<TxnOutcome> {
        let first = puts.first().map(|(k, _)| k.clone()).unwrap_or_default();
        let compares: Vec<Compare> = puts.iter().map(|(k, _)| Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)).collect();
        let ops: Vec<TxnOp> = puts.into_iter().map(|(k, v)| TxnOp::put(k, v, None)).collect();
        self.txn(compares, ops, first).await
    }

    /// Writes `value` at `key` (and `also_put`, which must be absent; and deletes
    /// `also_delete`) only if `key`'s mod_revision is still `expect_revision`.
    pub async fn update(
        &self,
        key: &str,
        expect_revision: i64,
        value: Vec<u8>,
        also_put: Vec<(String, Vec<u8>)>,
        also_delete: Vec<String>,
    ) -> Result<TxnOutcome> {
        let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, expect_revision)];
        compares.extend(also_put.iter().map(|(k, _)| Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)));
        let mut ops = vec![TxnOp::put(key, value, None)];
        ops.extend(also_put.into_iter().map(|(k, v)| TxnOp::put(k, v, None)));
        ops.extend(also_delete.into_iter().map(|k| TxnOp::delete(k, None)));
        self.txn(compares, ops, key.to_string()).await
    }

    /// Deletes `key` (and `also_delete`) only if its mod_revision is still `expect_revision`.
    pub async fn delete(&self, key: &str, expect_revision: i64, also_delete: Vec<String>) -> Result<TxnOutcome> {
        let compares = vec![Compare::mod_revision(key, CompareOp::Equal, expect_revision)];
        let mut ops = vec![TxnOp::delete(key, None)];
        ops.extend(also_delete.into_iter().map(|k| TxnOp::delete(k, None)));
        self.txn(compares, ops, key.to_string()).await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>, read_back: String) -> Result<TxnOutcome> {
        let mut kv = self.client.kv_client();
        timed(async move {
            let txn = Txn::new().when(compares).and_then(ops).or_else(vec![TxnOp::get(read_back, None)]);
            let resp = kv.txn(txn).await.map_err(|e| map_err(0, e))?;
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            if resp.succeeded() {
                return Ok(TxnOutcome::Done(revision));
            }
            let current = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g.kvs().first().map(Kv::from_etcd)),
                _ => None,
            });
            Ok(TxnOutcome::Mismatch(current.flatten()))
        })
        .await
    }

    /// Deletes one key unconditionally (allocator reservations of a vanished object).
    pub async fn delete_key(&self, key: &str) -> Result<()> {
        let mut kv = self.client.kv_client();
        timed(async move {
            kv.delete(key, None).await.map_err(|e| map_err(0, e))?;
            Ok(())
        })
        .await
    }

    /// Deletes every key under `prefix` (a deleted CRD's custom resources).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64> {
        let mut kv = self.client.kv_client();
        timed(async move {
            let resp = kv
                .delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix()))
                .await
                .map_err(|e| map_err(0, e))?;
            Ok(resp.deleted())
        })
        .await
    }

    /// Starts a watch of everything under `prefix` (or exactly `prefix` when `exact`) from
    /// `start_revision`, with previous values and progress notifications.
    pub async fn watch(&self, prefix: &str, exact: bool, start_revision: i64) -> Result<WatchStream> {
        let mut client = self.client.watch_client();
        let mut opts = WatchOptions::new().with_prev_key().with_progress_notify().with_start_revision(start_revision);
        if !exact {
            opts = opts.with_prefix();
        }
        let key = prefix.to_string();
        timed(async move { client.watch(key, Some(opts)).await.map_err(|e| map_err(start_revision, e)) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
