//! Byte layouts of the keys in the `kv` and `log` column families.
//!
//! `kv` keys are `memcomparable(user_key) ⧺ !main ⧺ !sub` (big-endian, bitwise inverted
//! as `u64::MAX - x`). Two properties make range reads a plain forward scan:
//!
//! * The memcomparable encoding (TiKV's byte groups) preserves byte order *and* is
//!   prefix-free, so all versions of `a` sort before all versions of `a\0`, which sort
//!   before `ab`; a raw `user_key ⧺ revision` would interleave them.
//! * Inverting the revision sorts the versions of one key newest first, so "the newest
//!   version at or below R" is the first entry at or after `enc(key) ⧺ !R ⧺ !MAX_SUB`.
//!
//! Example history of key `a`: put@2, put@5, delete@7 is stored as
//! `enc(a)!7!0 (tombstone)`, `enc(a)!5!0`, `enc(a)!2!0`. A read at 6 seeks to `enc(a)!6`
//! and lands on `enc(a)!5!0`.
//!
//! `log` keys are `main ⧺ sub` big-endian, not inverted: watchers read forward in time.

use super::{Error, Result, Revision};

/// Bytes of user key carried by one encoded group.
pub const ENC_GROUP_SIZE: usize = 8;
/// A group followed by its marker byte.
const ENC_GROUP_WITH_MARKER: usize = ENC_GROUP_SIZE + 1;
/// Marker of a full group that is followed by more groups.
const ENC_MARKER: u8 = 0xff;
/// Padding byte of the last, partial group.
const ENC_PAD: u8 = 0;
/// Length of the inverted `main ⧺ sub` suffix of a `kv` key.
pub const REV_SUFFIX_LEN: usize = 16;
/// Length of a `log` key.
pub const LOG_KEY_LEN: usize = 16;
/// Sorts after every revision suffix of one key (it would be main 0, sub 0, which is never
/// written: revisions start at 1), so seeking to `enc(key) ⧺ this` skips to the next key.
pub const NEXT_KEY_SUFFIX: [u8; REV_SUFFIX_LEN] = [0xff; REV_SUFFIX_LEN];

/// Appends the memcomparable encoding of `key` to `out`: every 8 bytes become a group
/// followed by the marker `0xff`; the last group is zero-padded and its marker is
/// `0xff - padding` (so a key whose length is a multiple of 8 ends with an all-padding
/// group marked `0xf7`). Comparing encodings bytewise compares the keys.
pub fn encode_key_into(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(key.len()));
    let mut chunks = key.chunks_exact(ENC_GROUP_SIZE);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(ENC_MARKER);
    }
    let rest = chunks.remainder();
    let pad = ENC_GROUP_SIZE - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(ENC_PAD, pad));
    out.push(ENC_MARKER - pad as u8);
}

pub fn encode_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(key.len()));
    encode_key_into(key, &mut out);
    out
}

/// Length of the encoding of a key of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    (len / ENC_GROUP_SIZE + 1) * ENC_GROUP_WITH_MARKER
}

/// Decodes a complete memcomparable encoding (nothing may follow it).
pub fn decode_key(enc: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |why: &str| Error::Corrupt(format!("memcomparable key {enc:02x?}: {why}"));
    if enc.is_empty() || !enc.len().is_multiple_of(ENC_GROUP_WITH_MARKER) {
        return Err(corrupt("length is not a whole number of groups"));
    }
    let mut key = Vec::with_capacity(enc.len() / ENC_GROUP_WITH_MARKER * ENC_GROUP_SIZE);
    let groups = enc.len() / ENC_GROUP_WITH_MARKER;
    for (i, group) in enc.chunks_exact(ENC_GROUP_WITH_MARKER).enumerate() {
        let marker = group[ENC_GROUP_SIZE];
        let last = i + 1 == groups;
        if marker == ENC_MARKER {
            if last {
                return Err(corrupt("last group is marked as continued"));
            }
            key.extend_from_slice(&group[..ENC_GROUP_SIZE]);
            continue;
        }
        let pad = usize::from(ENC_MARKER - marker);
        if !last || pad > ENC_GROUP_SIZE {
            return Err(corrupt("bad group marker"));
        }
        let (data, padding) = group[..ENC_GROUP_SIZE].split_at(ENC_GROUP_SIZE - pad);
        if padding.iter().any(|&b| b != ENC_PAD) {
            return Err(corrupt("non-zero padding"));
        }
        key.extend_from_slice(data);
    }
    Ok(key)
}

fn invert(x: i64) -> [u8; 8] {
    assert!(x >= 0, "revisions are never negative: {x}");
    (u64::MAX - x as u64).to_be_bytes()
}

fn uninvert(b: &[u8]) -> i64 {
    let raw = u64::from_be_bytes(b.try_into().expect("8 bytes"));
    (u64::MAX - raw) as i64
}

/// The suffix of the `kv` key of version `rev`.
pub fn rev_suffix(rev: Revision) -> [u8; REV_SUFFIX_LEN] {
    let mut out = [0u8; REV_SUFFIX_LEN];
    out[..8].copy_from_slice(&invert(rev.main));
    out[8..].copy_from_slice(&invert(rev.sub));
    out
}

/// A suffix that sorts before every version with main revision `main` (largest sub
/// first), so a seek lands on the newest version whose main revision is ≤ `main`.
pub fn seek_suffix_at_or_below(main: i64) -> [u8; REV_SUFFIX_LEN] {
    let mut out = [0u8; REV_SUFFIX_LEN];
    out[..8].copy_from_slice(&invert(main));
    out
}

/// The full `kv` key of one version.
pub fn kv_key(enc_key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(enc_key.len() + REV_SUFFIX_LEN);
    out.extend_from_slice(enc_key);
    out.extend_from_slice(&rev_suffix(rev));
    out
}

/// `enc_key ⧺ suffix` for seeks.
pub fn with_suffix(enc_key: &[u8], suffix: &[u8; REV_SUFFIX_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(enc_key.len() + REV_SUFFIX_LEN);
    out.extend_from_slice(enc_key);
    out.extend_from_slice(suffix);
    out
}

/// Splits a raw `kv` key into the encoded user key and its revision.
pub fn split_kv_key(raw: &[u8]) -> Result<(&[u8], Revision)> {
    if raw.len() < ENC_GROUP_WITH_MARKER + REV_SUFFIX_LEN {
        return Err(Error::Corrupt(format!("kv key too short: {raw:02x?}")));
    }
    let (enc, suffix) = raw.split_at(raw.len() - REV_SUFFIX_LEN);
    Ok((enc, Revision::new(uninvert(&suffix[..8]), uninvert(&suffix[8..]))))
}

pub fn log_key(rev: Revision) -> [u8; LOG_KEY_LEN] {
    assert!(rev.main >= 0 && rev.sub >= 0, "revisions are never negative: {rev:?}");
    let mut out = [0u8; LOG_KEY_LEN];
    out[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(rev.sub as u64).to_be_bytes());
    out
}

pub fn decode_log_key(raw: &[u8]) -> Result<Revision> {
    if raw.len() != LOG_KEY_LEN {
        return Err(Error::Corrupt(format!("log key of {} bytes", raw.len())));
    }
    let main = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let sub = u64::from_be_bytes(raw[8..].try_into().expect("8 bytes"));
    Ok(Revision::new(main as i64, sub as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encoding_orders_prefixes_and_special_bytes() {
        let ordered: [&[u8]; 12] = [
            b"",
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0",
            b"a\0\0\0\0\0\0\0\0",
            b"a\x01",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        for pair in ordered.windows(2) {
            assert!(
                encode_key(pair[0]) < encode_key(pair[1]),
                "{:?} must sort before {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(encode_key(b"\xff") < encode_key(b"\xff\0"));
        assert_eq!(encode_key(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xf7]);
        assert_eq!(encode_key(b"a"), vec![b'a', 0, 0, 0, 0, 0, 0, 0, 0xf8]);
        assert_eq!(encode_key(b"abcdefgh").len(), 18);
    }

    #[test]
    fn versions_of_a_key_never_interleave_with_longer_keys() {
        // The oldest version of `a` must sort before the newest of `a\0`.
        let oldest_a = kv_key(&encode_key(b"a"), Revision::new(1, 0));
        let newest_a0 = kv_key(&encode_key(b"a\0"), Revision::new(i64::MAX, i64::MAX));
        assert!(oldest_a < newest_a0);
        let next = with_suffix(&encode_key(b"a"), &NEXT_KEY_SUFFIX);
        assert!(oldest_a < next && next < newest_a0);
    }

    #[test]
    fn versions_sort_newest_first_and_seek_finds_at_or_below() {
        let enc = encode_key(b"k");
        let v = |m, s| kv_key(&enc, Revision::new(m, s));
        assert!(v(5, 1) < v(5, 0));
        assert!(v(5, 0) < v(4, 9));
        let seek = with_suffix(&enc, &seek_suffix_at_or_below(5));
        assert!(seek <= v(5, 9) && seek > v(6, 0));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode_key(b"").is_err());
        assert!(decode_key(&[b'a', 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
        assert!(decode_key(&[b'a', 0, 0, 0, 0, 0, 0, 1, 0xf8]).is_err());
        assert!(decode_key(&[0, 0, 0, 0, 0, 0, 0, 0, 0xf0]).is_err());
        let mut two = encode_key(b"a");
        two.extend(encode_key(b"b"));
        assert!(decode_key(&two).is_err(), "a terminated group must be the last");
    }

    #[test]
    fn kv_and_log_keys_round_trip() {
        let enc = encode_key(b"key\xff");
        let raw = kv_key(&enc, Revision::new(42, 3));
        let (k, rev) = split_kv_key(&raw).unwrap();
        assert_eq!((k, rev), (&enc[..], Revision::new(42, 3)));
        assert_eq!(decode_key(k).unwrap(), b"key\xff");
        let lk = log_key(Revision::new(7, 2));
        assert_eq!(decode_log_key(&lk).unwrap(), Revision::new(7, 2));
        assert!(log_key(Revision::new(7, 2)) < log_key(Revision::new(8, 0)));
    }

    proptest! {
        #[test]
        fn encoding_preserves_order_and_round_trips(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..20),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..20),
        ) {
            let (ea, eb) = (encode_key(&a), encode_key(&b));
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(decode_key(&ea).unwrap(), a.clone());
            prop_assert_eq!(ea.len(), encoded_len(a.len()));
            // Prefix-free: one encoding is never a proper prefix of another.
            if a != b {
                prop_assert!(!eb.starts_with(&ea) && !ea.starts_with(&eb));
            }
        }
    }
}
