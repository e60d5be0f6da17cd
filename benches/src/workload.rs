//! The requests each workload sends. One `Op::execute` is one measured request (for
//! `txn-put`, one whole optimistic update: read, then txn, retried on conflict).

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, LeaseKeepAliveStream, LeaseKeeper, Txn,
    TxnOp, TxnOpResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use crate::cli::{Consistency, KeyArgs, RangeArgs, TxnPutArgs};

/// Attempts of one `txn-put` update when other clients keep changing the object; past this
/// the update counts as an error (the apiserver also gives up eventually).
const TXN_CONFLICT_ATTEMPTS_MAX: u32 = 16;
/// Prefix of `txn-put` keys, the shape of the apiserver's keys.
const TXN_KEY_PREFIX: &str = "/registry/bench/";
/// TTL of each `lease-keepalive` client's lease (etcd's tool grants 100 s too).
const KEEPALIVE_LEASE_TTL_SECS: i64 = 100;

/// One client loop's connection state: its KV stub and, for `lease-keepalive`, its lease's
/// keep-alive stream.
pub struct Session {
    kv: KvClient,
    keepalive: Option<KeepAlive>,
}

/// A `lease-keepalive` loop's lease and its keep-alive stream. A stream that failed (its
/// member lost the leader, or the connection dropped) is opened again by the next request,
/// as etcd's clientv3 does: the failed request counts as one error, and the loop does not
/// spin on a dead stream.
pub struct KeepAlive {
    client: Client,
    lease_id: i64,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

impl KeepAlive {
    async fn stream(&mut self) -> Result<&mut (LeaseKeeper, LeaseKeepAliveStream), String> {
        if self.stream.is_none() {
            let opened = self
                .client
                .lease_keep_alive(self.lease_id)
                .await
                .map_err(error_message)?;
            self.stream = Some(opened);
        }
        Ok(self.stream.as_mut().expect("opened above"))
    }

    async fn once(&mut self) -> Result<(), String> {
        let (keeper, stream) = self.stream().await?;
        keeper.keep_alive().await.map_err(error_message)?;
        match stream.message().await.map_err(error_message)? {
            Some(response) if response.ttl() > 0 => Ok(()),
            Some(_) => Err("lease-keepalive: lease expired".to_string()),
            None => Err("lease-keepalive: stream closed".to_string()),
        }
    }
}

/// Which key a request touches.
#[derive(Clone, Debug)]
pub struct KeyChooser {
    key_space_size: u64,
    sequential: bool,
}

impl KeyChooser {
    /// The index of the key for the `seq`-th request of the run.
    pub fn index(&self, seq: u64, rng: &mut impl Rng) -> u64 {
        if self.sequential {
            seq % self.key_space_size
        } else {
            rng.random_range(0..self.key_space_size)
        }
    }
}

/// `key_size` bytes holding `index` in little-endian order, zero padded (as etcd's tool, a
/// binary key; with fewer than 8 bytes, indexes past 256^key_size share keys).
pub fn binary_key(index: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size];
    let bytes = index.to_le_bytes();
    let n = key_size.min(bytes.len());
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// `/registry/bench/00000042`, zero padded to `key_size` bytes (longer if the index needs it).
pub fn registry_key(index: u64, key_size: usize) -> Vec<u8> {
    let width = key_size.saturating_sub(TXN_KEY_PREFIX.len());
    format!("{TXN_KEY_PREFIX}{index:0width$}").into_bytes()
}

/// One workload's request, ready to be sent many times.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        keys: KeyChooser,
        key_size: usize,
        value: Vec<u8>,
    },
    Range {
        key: Vec<u8>,
        end: Option<Vec<u8>>,
        serializable: bool,
    },
    TxnPut {
        keys: KeyChooser,
        key_size: usize,
        value: Vec<u8>,
    },
    /// One keep-alive request and its response on the client's own lease stream.
    LeaseKeepalive,
    /// `watch`'s writers: watched keys in turn, values stamped with the put's start time;
    /// acknowledged puts are counted per key (to know how many events are due).
    StampedPut {
        epoch: Instant,
        key_total: u64,
        key_size: usize,
        val_size: usize,
        acked_per_key: Arc<Vec<AtomicU64>>,
    },
}

impl Op {
    pub fn put(args: &KeyArgs) -> Op {
        Op::Put {
            keys: KeyChooser {
                key_space_size: args.key_space_size,
                sequential: args.sequential_keys,
            },
            key_size: args.key_size as usize,
            value: vec![b'v'; args.val_size as usize],
        }
    }

    pub fn range(args: &RangeArgs) -> Op {
        Op::Range {
            key: args.key.clone().into_bytes(),
            end: args.end.clone().map(String::into_bytes),
            serializable: args.consistency == Consistency::S,
        }
    }

    pub fn txn_put(args: &TxnPutArgs) -> Op {
        Op::TxnPut {
            keys: KeyChooser {
                key_space_size: args.key_space_size,
                sequential: args.sequential_keys,
            },
            key_size: args.key_size as usize,
            value: vec![b'v'; args.val_size as usize],
        }
    }

    /// Prepares one client loop: for `lease-keepalive`, grants its lease and opens the
    /// keep-alive stream (not measured, as in etcd's tool).
    pub async fn open(&self, mut client: Client) -> Result<Session, String> {
        let keepalive = match self {
            Op::LeaseKeepalive => {
                let lease = client
                    .lease_grant(KEEPALIVE_LEASE_TTL_SECS, None)
                    .await
                    .map_err(error_message)?;
                let mut keepalive = KeepAlive {
                    client: client.clone(),
                    lease_id: lease.id(),
                    stream: None,
                };
                keepalive.stream().await?;
                Some(keepalive)
            }
            _ => None,
        };
        Ok(Session {
            kv: client.kv_client(),
            keepalive,
        })
    }

    /// Sends the `seq`-th request of the run. The error is the message counted in the report.
    pub async fn execute(
        &self,
        session: &mut Session,
        seq: u64,
        rng: &mut impl Rng,
    ) -> Result<(), String> {
        let kv = &mut session.kv;
        match self {
            Op::StampedPut {
                epoch,
                key_total,
                key_size,
                val_size,
                acked_per_key,
            } => {
                let index = seq % key_total;
                let key = crate::watch::watch_key(index, *key_size);
                let value = crate::watch::stamped_value(*epoch, *val_size);
                kv.put(key, value, None).await.map_err(error_message)?;
                acked_per_key[index as usize].fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Op::LeaseKeepalive => {
                let keepalive = session
                    .keepalive
                    .as_mut()
                    .ok_or("lease-keepalive: no keep-alive stream")?;
                let result = keepalive.once().await;
                if result.is_err() {
                    // Reopened by the next request.
                    keepalive.stream = None;
                }
                result
            }
            Op::Put {
                keys,
                key_size,
                value,
            } => {
                let key = binary_key(keys.index(seq, rng), *key_size);
                kv.put(key, value.clone(), None)
                    .await
                    .map_err(error_message)?;
                Ok(())
            }
            Op::Range {
                key,
                end,
                serializable,
            } => {
                let mut options = GetOptions::new();
                if let Some(end) = end {
                    options = options.with_range(end.clone());
                }
                if *serializable {
                    options = options.with_serializable();
                }
                kv.get(key.clone(), Some(options))
                    .await
                    .map_err(error_message)?;
                Ok(())
            }
            Op::TxnPut {
                keys,
                key_size,
                value,
            } => {
                let key = registry_key(keys.index(seq, rng), *key_size);
                optimistic_update(kv, key, value).await
            }
        }
    }
}

/// A failed request's message as etcd's `benchmark` (grpc-go) shows it, so error
/// distributions from the two tools can be compared line by line.
pub fn error_message(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            )
        }
        other => other.to_string(),
    }
}

/// What the apiserver's GuaranteedUpdate does: read the object, then write it only if its
/// mod_revision is still the one read; on conflict the txn returns the current object and
/// the update is tried again from it.
pub async fn optimistic_update(
    kv: &mut KvClient,
    key: Vec<u8>,
    value: &[u8],
) -> Result<(), String> {
    let current = kv.get(key.clone(), None).await.map_err(error_message)?;
    let mut mod_revision = current.kvs().first().map_or(0, |kv| kv.mod_revision());
    for _ in 0..TXN_CONFLICT_ATTEMPTS_MAX {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::put(key.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = kv.txn(txn).await.map_err(error_message)?;
        if response.succeeded() {
            return Ok(());
        }
        mod_revision = match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.mod_revision()),
            _ => return Err("txn-put: failed txn did not return the current object".to_string()),
        };
    }
    Err(format!(
        "txn-put: still conflicting after {TXN_CONFLICT_ATTEMPTS_MAX} attempts"
    ))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn binary_keys_have_the_requested_size() {
        assert_eq!(binary_key(0x0102, 8), vec![2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(binary_key(0x0102, 10), vec![2, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(binary_key(0x0102, 1), vec![2]);
    }

    #[test]
    fn registry_keys_are_padded_to_the_key_size() {
        assert_eq!(registry_key(42, 24), b"/registry/bench/00000042".to_vec());
        assert_eq!(
            registry_key(123_456_789, 24),
            b"/registry/bench/123456789".to_vec()
        );
    }

    #[test]
    fn key_choice_stays_in_the_key_space() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let sequential = KeyChooser {
            key_space_size: 3,
            sequential: true,
        };
        let indexes: Vec<u64> = (0..7).map(|seq| sequential.index(seq, &mut rng)).collect();
        assert_eq!(indexes, vec![0, 1, 2, 0, 1, 2, 0]);
        let random = KeyChooser {
            key_space_size: 5,
            sequential: false,
        };
        let mut seen = [false; 5];
        for seq in 0..1_000 {
            seen[random.index(seq, &mut rng) as usize] = true;
        }
        assert_eq!(seen, [true; 5]);
    }
}
