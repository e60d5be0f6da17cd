//! The record framing of a WAL segment and the payload codec of each record type.
//!
//! A record is `[len: u32 LE][crc32: u32 LE][type: u8][payload: len bytes]`; the CRC
//! (crc32fast, IEEE) covers `type ++ payload`. Type 0 is never written, so an all-zero header
//! is unambiguous: it marks the end of the written part of a preallocated segment.
//!
//! This file knows nothing of files or recovery; `segment.rs` decides what a bad record means.

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};

/// Bytes of `[len][crc][type]` before each payload.
pub const RECORD_HEADER_BYTES: usize = 4 + 4 + 1;
/// Largest payload a record may carry. Raft entries are bounded far below this by the store's
/// request limit (1.5 MiB, as etcd); the bound lets recovery reject a garbage length at once.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 * 1024 * 1024;
/// An `Entries` record is closed once its payload passes this size; smaller records keep the
/// unit a torn write can lose small and let big batches spread over segments.
pub const ENTRIES_RECORD_BYTES_TARGET: usize = 1024 * 1024;

/// Identifies the file format: the first 8 bytes of every segment header payload.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SKIFFWAL";
/// Bumped on any incompatible change of the record or payload layout.
pub const FORMAT_VERSION: u32 = 1;
const SEGMENT_HEADER_PAYLOAD_BYTES: usize = 8 + 4 + 8 + 8 + 8;

/// The kinds of records. New durable record kinds are added here (never renumber one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// First record of every segment: magic, version, and the segment's identity.
    SegmentHeader = 1,
    /// A batch of raft entries with contiguous indexes.
    Entries = 2,
    /// The latest raft hard state (term, vote, commit).
    HardState = 3,
    /// Snapshot marker: the state machine holds everything up to the metadata's index.
    Snapshot = 4,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::SegmentHeader,
            2 => RecordType::Entries,
            3 => RecordType::HardState,
            4 => RecordType::Snapshot,
            _ => return None,
        })
    }
}

/// Identity of a segment, written as its first record and checked against the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    /// Raft index of the first entry this segment may hold (last index + 1 when it was cut).
    pub first_index: u64,
    /// The size the file was preallocated to. The writer never writes a record past it, so a
    /// record claiming to end beyond it has a garbage length, not a torn tail.
    pub preallocated_bytes: u64,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    SegmentHeader(SegmentHeader),
    Entries(Vec<Entry>),
    HardState(HardState),
    Snapshot(SnapshotMetadata),
}

/// Appends one framed record to `buf`; `write_payload` writes the payload after the header.
pub fn encode_record(buf: &mut Vec<u8>, ty: RecordType, write_payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.push(ty as u8);
    write_payload(buf);
    let payload_bytes = buf.len() - start - RECORD_HEADER_BYTES;
    assert!(
        payload_bytes <= RECORD_PAYLOAD_BYTES_MAX,
        "record payload of {payload_bytes} bytes"
    );
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&(payload_bytes as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn encode_segment_header(buf: &mut Vec<u8>, h: &SegmentHeader) {
    encode_record(buf, RecordType::SegmentHeader, |b| {
        b.extend_from_slice(&SEGMENT_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&h.seq.to_le_bytes());
        b.extend_from_slice(&h.first_index.to_le_bytes());
        b.extend_from_slice(&h.preallocated_bytes.to_le_bytes());
    });
}

/// Encodes `entries` (contiguous, non-empty) as one record: `[count: u32]` then each entry as
/// `[len: u32][protobuf]`.
pub fn encode_entries(buf: &mut Vec<u8>, entries: &[Entry]) {
    encode_record(buf, RecordType::Entries, |b| {
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            let at = b.len();
            b.extend_from_slice(&[0u8; 4]);
            e.write_to_vec(b)
                .expect("encoding a raft entry cannot fail");
            let n = (b.len() - at - 4) as u32;
            b[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
    });
}

pub fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    encode_record(buf, RecordType::HardState, |b| {
        hs.write_to_vec(b)
            .expect("encoding a hard state cannot fail")
    });
}

pub fn encode_snapshot(buf: &mut Vec<u8>, meta: &SnapshotMetadata) {
    encode_record(buf, RecordType::Snapshot, |b| {
        meta.write_to_vec(b)
            .expect("encoding snapshot metadata cannot fail")
    });
}

/// Bytes `entry` takes inside an `Entries` payload.
pub fn entry_encoded_bytes(entry: &Entry) -> usize {
    4 + entry.compute_size() as usize
}

/// Result of looking at the bytes at one offset of a segment.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// An all-zero header (or fewer than a header's bytes, all zero): nothing written here.
    End,
    /// A header and payload whose CRC matches. `bytes` is the whole record length.
    Valid {
        ty: u8,
        payload: &'a [u8],
        bytes: usize,
    },
    /// Not a valid record. `claimed_end` is where the record would end per its length field
    /// (relative to the frame start), when a length could be read.
    Bad {
        reason: String,
        claimed_end: Option<usize>,
    },
}

/// Parses the frame at the start of `buf` without interpreting the payload.
pub fn parse_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < RECORD_HEADER_BYTES {
        if buf.iter().all(|&b| b == 0) {
            return Frame::End;
        }
        return Frame::Bad {
            reason: "incomplete record header".into(),
            claimed_end: None,
        };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let ty = buf[8];
    if len == 0 && crc == 0 && ty == 0 {
        return Frame::End;
    }
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Frame::Bad {
            reason: format!("record length {len} over the limit"),
            claimed_end: None,
        };
    }
    let end = RECORD_HEADER_BYTES + len;
    if end > buf.len() {
        return Frame::Bad {
            reason: format!("incomplete record: {len} payload bytes, file ends"),
            claimed_end: Some(end),
        };
    }
    if crc32fast::hash(&buf[8..end]) != crc {
        return Frame::Bad {
            reason: "crc mismatch".into(),
            claimed_end: Some(end),
        };
    }
    Frame::Valid {
        ty,
        payload: &buf[RECORD_HEADER_BYTES..end],
        bytes: end,
    }
}

/// Decodes the payload of a record whose CRC matched. An error here is corruption (or a
/// writer bug), never a torn write: the CRC proved the bytes are the ones written.
pub fn decode_payload(ty: u8, payload: &[u8]) -> Result<Record, String> {
    let ty = RecordType::from_u8(ty).ok_or_else(|| format!("unknown record type {ty}"))?;
    Ok(match ty {
        RecordType::SegmentHeader => Record::SegmentHeader(decode_segment_header(payload)?),
        RecordType::Entries => Record::Entries(decode_entries(payload)?),
        RecordType::HardState => Record::HardState(
            HardState::parse_from_bytes(payload).map_err(|e| format!("bad hard state: {e}"))?,
        ),
        RecordType::Snapshot => Record::Snapshot(
            SnapshotMetadata::parse_from_bytes(payload)
                .map_err(|e| format!("bad snapshot marker: {e}"))?,
        ),
    })
}

fn decode_segment_header(p: &[u8]) -> Result<SegmentHeader, String> {
    if p.len() != SEGMENT_HEADER_PAYLOAD_BYTES {
        return Err(format!("segment header of {} bytes", p.len()));
    }
    if p[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    let version = u32::from_le_bytes(p[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(format!("unsupported WAL format version {version}"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().unwrap());
    Ok(SegmentHeader {
        seq: u64_at(12),
        first_index: u64_at(20),
        preallocated_bytes: u64_at(28),
    })
}

fn decode_entries(p: &[u8]) -> Result<Vec<Entry>, String> {
    let take_u32 = |p: &[u8], at: usize| -> Result<usize, String> {
        p.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or_else(|| format!("entries payload ends at {at}"))
    };
    let count = take_u32(p, 0)?;
    // Every entry takes at least its 4-byte length, so a larger count is garbage; checking
    // first keeps a bad count from reserving a huge vector.
    if count == 0 || count > p.len() / 4 {
        return Err(format!("bad entry count {count}"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        let n = take_u32(p, at)?;
        at += 4;
        let bytes = p
            .get(at..at + n)
            .ok_or_else(|| format!("entry of {n} bytes overruns the record"))?;
        entries.push(Entry::parse_from_bytes(bytes).map_err(|e| format!("bad entry: {e}"))?);
        at += n;
    }
    if at != p.len() {
        return Err(format!("{} trailing bytes after entries", p.len() - at));
    }
    for w in entries.windows(2) {
        if w[1].index != w[0].index + 1 {
            return Err(format!(
                "entries not contiguous: {} then {}",
                w[0].index, w[1].index
            ));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn must_decode(buf: &[u8]) -> (Record, usize) {
        match parse_frame(buf) {
            Frame::Valid { ty, payload, bytes } => (decode_payload(ty, payload).unwrap(), bytes),
            other => panic!("not a valid frame: {other:?}"),
        }
    }

    #[test]
    fn every_record_type_round_trips() {
        let header = SegmentHeader {
            seq: 7,
            first_index: 42,
            preallocated_bytes: 4096,
        };
        let entries = vec![
            entry(5, 2, b"a"),
            entry(6, 2, b""),
            entry(7, 3, &[0xff; 300]),
        ];
        let hs = HardState {
            term: 3,
            vote: 1,
            commit: 6,
            ..Default::default()
        };
        let mut meta = SnapshotMetadata {
            index: 4,
            term: 2,
            ..Default::default()
        };
        meta.mut_conf_state().voters = vec![1, 2, 3];

        let mut buf = Vec::new();
        encode_segment_header(&mut buf, &header);
        encode_entries(&mut buf, &entries);
        encode_hard_state(&mut buf, &hs);
        encode_snapshot(&mut buf, &meta);
        buf.extend_from_slice(&[0u8; 32]);

        let mut at = 0;
        let mut got = Vec::new();
        while let Frame::Valid { .. } = parse_frame(&buf[at..]) {
            let (r, n) = must_decode(&buf[at..]);
            got.push(r);
            at += n;
        }
        assert_eq!(parse_frame(&buf[at..]), Frame::End);
        assert_eq!(
            got,
            vec![
                Record::SegmentHeader(header),
                Record::Entries(entries),
                Record::HardState(hs),
                Record::Snapshot(meta)
            ]
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let mut buf = Vec::new();
        encode_entries(&mut buf, &[entry(1, 1, b"hello")]);
        for i in 0..buf.len() {
            let mut copy = buf.clone();
            copy[i] ^= 0x10;
            assert!(
                !matches!(parse_frame(&copy), Frame::Valid { .. }),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn truncated_record_reports_its_claimed_end() {
        let mut buf = Vec::new();
        encode_hard_state(
            &mut buf,
            &HardState {
                term: 9,
                ..Default::default()
            },
        );
        let full = buf.len();
        match parse_frame(&buf[..full - 1]) {
            Frame::Bad { claimed_end, .. } => assert_eq!(claimed_end, Some(full)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_frame(&buf[..3]),
            Frame::Bad {
                claimed_end: None,
                ..
            }
        ));
        assert_eq!(parse_frame(&[0u8; 3]), Frame::End);
    }

    #[test]
    fn non_contiguous_entries_are_rejected_even_with_a_good_crc() {
        let mut buf = Vec::new();
        encode_entries(&mut buf, &[entry(1, 1, b""), entry(3, 1, b"")]);
        let Frame::Valid { ty, payload, .. } = parse_frame(&buf) else {
            panic!()
        };
        assert!(decode_payload(ty, payload)
            .unwrap_err()
            .contains("not contiguous"));
    }
}
