//! Segment files: naming, listing, creating (preallocated, durable), and scanning one
//! segment's records while telling a torn tail from corruption.
//!
//! The rule for a bad record (bad CRC, unknown type, or running past the end of the file):
//! - in the last segment it is a torn tail — the last write did not fully reach the disk
//!   before a crash — and is cut, only if it shows the marks of an unfinished write and
//!   nothing written follows it: it runs past the end of a file shorter than its
//!   preallocated size; or nothing but zeros follows the bytes it claims and some of its own
//!   bytes were never written (a whole sector of it, or its last `TORN_ZERO_SUFFIX_BYTES`,
//!   still zero, as etcd's WAL decides); or its length is garbage, all non-zero bytes after it
//!   fit in one page, and no valid record can be found among them.
//! - anything else is corruption, reported with the file and offset: a bit flipped in a
//!   record that was fully written (and fsynced, so perhaps acknowledged) must never be taken
//!   for a torn write and silently cut. Never skipped either: records after it would be
//!   replayed with a hole before them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Frame, Record, SegmentHeader};
use super::{Error, Result};

/// Garbage of unknown length at the end of the last segment is taken for a torn write only
/// if it fits in one page, the unit the kernel writes back.
const TORN_GARBAGE_BYTES_MAX: usize = 4096;
/// The unit a disk writes atomically: a crash leaves whole sectors of a write unwritten
/// (zero, in a preallocated segment).
const SECTOR_BYTES: usize = 512;
/// A record whose last bytes are this many zeros was cut short by a crash (for disks that do
/// not write sectors atomically); a fully written record ending so is vanishingly rare.
const TORN_ZERO_SUFFIX_BYTES: usize = 16;
/// `{seq:016x}-{first_index:016x}.wal`
const SEGMENT_SUFFIX: &str = ".wal";
/// Extension of a segment being created; any left at open are remains of a crash.
const TMP_SUFFIX: &str = "tmp";
const SEGMENT_NAME_BYTES: usize = 16 + 1 + 16 + SEGMENT_SUFFIX.len();

/// A segment file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
}

pub fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    if name.len() != SEGMENT_NAME_BYTES
        || !name.ends_with(SEGMENT_SUFFIX)
        || name.as_bytes()[16] != b'-'
    {
        return None;
    }
    let seq = u64::from_str_radix(&name[..16], 16).ok()?;
    let first_index = u64::from_str_radix(&name[17..33], 16).ok()?;
    Some((seq, first_index))
}

pub fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        file: path.to_path_buf(),
        source: source.into(),
    }
}

/// Lists the segments of `dir` in sequence order. Sequence numbers must be consecutive: a
/// missing one means records were lost.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for dirent in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let dirent = dirent.map_err(|e| io_err(dir, e))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        let Some((seq, first_index)) = parse_name(name) else {
            return Err(Error::Corrupt {
                file: dirent.path(),
                offset: 0,
                reason: "unparsable segment file name".into(),
            });
        };
        segments.push(SegmentFile {
            seq,
            first_index,
            path: dirent.path(),
        });
    }
    segments.sort_by_key(|s| s.seq);
    for w in segments.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(Error::Corrupt {
                file: w[1].path.clone(),
                offset: 0,
                reason: format!(
                    "segment sequence jumps from {} to {}: a segment is missing",
                    w[0].seq, w[1].seq
                ),
            });
        }
    }
    Ok(segments)
}

/// Deletes segment files left half-created by a crash (see `create_segment`).
pub fn remove_tmp_files(dir: &Path) -> Result<()> {
    for dirent in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = dirent.map_err(|e| io_err(dir, e))?.path();
        if path.extension().is_some_and(|e| e == TMP_SUFFIX) {
            tracing::warn!(file = %path.display(), "removing a segment left half-created by a crash");
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(())
}

/// Makes a file creation, rename or deletion in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Creates a segment preallocated to `preallocated_bytes`, writes `prologue` (the header
/// record first) and makes file, size and directory entry durable before anyone appends.
///
/// The file is prepared under a temporary name and renamed into place, so a segment under
/// its real name always has a complete header: a crash mid-creation leaves only a `.tmp`.
pub fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    prologue: &[u8],
) -> Result<(SegmentFile, File)> {
    let path = dir.join(segment_name(header.seq, header.first_index));
    let tmp = path.with_extension(TMP_SUFFIX);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    // set_len gives a sparse file, not reserved blocks (that needs fallocate, which std does
    // not offer); it still fixes the size up front, so fdatasync rarely has size metadata to
    // flush, and recovery can tell a short (torn) file from a garbage length.
    file.set_len(header.preallocated_bytes)
        .map_err(|e| io_err(&path, e))?;
    file.write_all(prologue).map_err(|e| io_err(&path, e))?;
    file.sync_all().map_err(|e| io_err(&path, e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    Ok((
        SegmentFile {
            seq: header.seq,
            first_index: header.first_index,
            path,
        },
        file,
    ))
}

/// What a scan of one segment found.
#[derive(Debug)]
pub struct Scan {
    pub header: SegmentHeader,
    /// Records after the header, each with its offset.
    pub records: Vec<(u64, Record)>,
    /// End of the last good record: where the next append goes.
    pub end_offset: u64,
    /// Set when a torn tail was found at `end_offset` (and must be cut).
    pub torn: Option<String>,
    pub file_bytes: u64,
}

/// Reads and checks every record of `segment`. `is_last` allows a torn tail.
pub fn scan_segment(segment: &SegmentFile, is_last: bool) -> Result<Scan> {
    let path = &segment.path;
    let buf = read_segment(path).map_err(|e| io_err(path, e))?;
    let corrupt = |offset: usize, reason: String| Error::Corrupt {
        file: path.clone(),
        offset: offset as u64,
        reason,
    };

    let header = match record::parse_frame(&buf) {
        Frame::Valid { ty, payload, bytes } => match record::decode_payload(ty, payload) {
            Ok(Record::SegmentHeader(h)) => (h, bytes),
            Ok(_) => return Err(corrupt(0, "segment does not start with a header".into())),
            Err(reason) => return Err(corrupt(0, reason)),
        },
        other => return Err(corrupt(0, format!("bad segment header: {other:?}"))),
    };
    let (header, mut offset) = header;
    if (header.seq, header.first_index) != (segment.seq, segment.first_index) {
        return Err(corrupt(
            0,
            format!("header {header:?} does not match the file name"),
        ));
    }
    let preallocated = header.preallocated_bytes as usize;

    let mut records = Vec::new();
    let mut torn = None;
    loop {
        match record::parse_frame(&buf[offset..]) {
            Frame::Valid { ty, payload, bytes } => {
                let rec = record::decode_payload(ty, payload).map_err(|r| corrupt(offset, r))?;
                if matches!(rec, Record::SegmentHeader(_)) {
                    return Err(corrupt(offset, "second segment header".into()));
                }
                records.push((offset as u64, rec));
                offset += bytes;
            }
            Frame::End => {
                if let Some(at) = first_non_zero(&buf[offset..]) {
                    // Data after the end marker: a hole in the middle of the log.
                    return Err(corrupt(
                        offset,
                        format!("zeroed record header, then data at offset {}", offset + at),
                    ));
                }
                break;
            }
            Frame::Bad {
                reason,
                claimed_end,
            } => {
                let last_non_zero = buf.iter().rposition(|&b| b != 0).unwrap_or(0);
                let torn_write = match claimed_end {
                    // The record runs past the end of the file. A crash can leave a file
                    // shorter than written only before its size reached the preallocated one.
                    Some(end) if offset + end > buf.len() && offset + end <= preallocated => true,
                    Some(end) if offset + end <= buf.len() => {
                        first_non_zero(&buf[offset + end..]).is_none()
                            && partly_unwritten(&buf[..offset + end], offset)
                    }
                    // The length is garbage (over the limit, or past the preallocated size,
                    // which the writer never writes beyond), so where the record ends is
                    // unknown. Garbage confined to one page at the very end is the page a crash
                    // interrupted — unless a valid record hides in it: then the length was
                    // flipped in a record that had been written, and cutting would drop the
                    // good records after it.
                    _ => last_non_zero < offset + TORN_GARBAGE_BYTES_MAX && !valid_record_within(&buf[..=last_non_zero], offset + 1),
                };
                if is_last && torn_write {
                    torn = Some(reason);
                    break;
                }
                return Err(corrupt(offset, reason));
            }
        }
    }
    Ok(Scan {
        header,
        records,
        end_offset: offset as u64,
        torn,
        file_bytes: buf.len() as u64,
    })
}

/// Whether the record at `buf[start..]` (ending at `buf.len()`) has bytes a write never
/// reached: a whole sector-aligned piece of it still zero, or a zero tail.
fn partly_unwritten(buf: &[u8], start: usize) -> bool {
    let end = buf.len();
    if end - start >= TORN_ZERO_SUFFIX_BYTES && buf[end - TORN_ZERO_SUFFIX_BYTES..].iter().all(|&b| b == 0) {
        return true;
    }
    let mut piece = start;
    while piece < end {
        let next = ((piece / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let piece_end = next.min(end);
        if buf[piece..piece_end].iter().all(|&b| b == 0) {
            return true;
        }
        piece = piece_end;
    }
    false
}

/// Whether a record with a matching CRC starts anywhere in `buf[from..]`.
fn valid_record_within(buf: &[u8], from: usize) -> bool {
    (from..buf.len()).any(|at| matches!(record::parse_frame(&buf[at..]), Frame::Valid { .. }))
}

/// Bytes [`first_non_zero`] checks at once (an OR over a block vectorizes; a byte-wise
/// search does not, and the preallocated tail of a segment is 64 MiB of zeros).
const ZERO_CHECK_BLOCK_BYTES: usize = 4096;

fn first_non_zero(bytes: &[u8]) -> Option<usize> {
    let mut base = 0;
    for block in bytes.chunks(ZERO_CHECK_BLOCK_BYTES) {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return block.iter().position(|&b| b != 0).map(|at| base + at);
        }
        base += block.len();
    }
    None
}

/// The whole file, with the parts the file system reports as holes (never written: the
/// preallocated tail of a sparse segment) left as the zeros of a fresh buffer instead of
/// being read. A new segment is one small read instead of 64 MiB copied at every start.
/// Where the file system cannot tell holes (`SEEK_DATA` unsupported) everything is read.
fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| std::io::Error::other("segment larger than memory"))?;
    match data_regions(&file, len)? {
        Some(regions) => {
            // Zeroed allocations of this size come straight from the OS: untouched pages
            // cost nothing until read.
            let mut buf = vec![0u8; len];
            for (start, end) in regions {
                file.read_exact_at(&mut buf[start..end], start as u64)?;
            }
            Ok(buf)
        }
        None => {
            let mut buf = Vec::with_capacity(len);
            file.read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

/// The `[start, end)` ranges of `file` (of `len` bytes) that hold data, by
/// `lseek(SEEK_DATA/SEEK_HOLE)`; `None` when the file system does not support them.
fn data_regions(file: &File, len: usize) -> std::io::Result<Option<Vec<(usize, usize)>>> {
    use nix::errno::Errno;
    use nix::unistd::{lseek, Whence};
    enum Seek {
        At(usize),
        /// No data at or after the offset (`ENXIO`).
        Past,
        Unsupported,
    }
    let seek = |offset: usize, whence: Whence| -> std::io::Result<Seek> {
        match lseek(file, offset as nix::libc::off_t, whence) {
            Ok(at) => Ok(Seek::At((at.max(0) as usize).min(len))),
            Err(Errno::ENXIO) => Ok(Seek::Past),
            Err(Errno::EINVAL) => Ok(Seek::Unsupported),
            Err(e) => Err(std::io::Error::from(e)),
        }
    };
    let mut regions = Vec::new();
    let mut at = 0;
    while at < len {
        let start = match seek(at, Whence::SeekData)? {
            Seek::At(start) => start,
            Seek::Past => break,
            Seek::Unsupported => return Ok(None),
        };
        if start >= len {
            break;
        }
        let end = match seek(start, Whence::SeekHole)? {
            Seek::At(end) => end,
            Seek::Past => len,
            Seek::Unsupported => return Ok(None),
        };
        if end <= start {
            // Not an answer we understand: read it all.
            return Ok(None);
        }
        regions.push((start, end));
        at = end;
    }
    Ok(Some(regions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    #[test]
    fn a_sparse_file_reads_as_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(8 << 20).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        // Data in the middle of the hole, across a block boundary, and at the very end.
        file.write_all_at(&[7u8; 10], (1 << 20) + 4090).unwrap();
        file.write_all_at(b"tail", (8 << 20) - 4).unwrap();
        drop(file);
        let mut whole = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut whole).unwrap();
        let read = read_segment(&path).unwrap();
        assert_eq!(read.len(), whole.len());
        assert!(read == whole, "the sparse read differs from a plain read");
        let regions = data_regions(&File::open(&path).unwrap(), whole.len()).unwrap();
        if let Some(regions) = regions {
            let covered: usize = regions.iter().map(|(s, e)| e - s).sum();
            assert!(covered < whole.len() / 4, "holes were read: {regions:?}");
        }
    }

    #[test]
    fn first_non_zero_finds_the_first_set_byte_in_any_block() {
        let mut bytes = vec![0u8; 3 * ZERO_CHECK_BLOCK_BYTES + 5];
        assert_eq!(first_non_zero(&bytes), None);
        for at in [0, 1, ZERO_CHECK_BLOCK_BYTES - 1, ZERO_CHECK_BLOCK_BYTES, 3 * ZERO_CHECK_BLOCK_BYTES + 4] {
            bytes[at] = 1;
            assert_eq!(first_non_zero(&bytes), Some(at));
            bytes[at] = 0;
        }
        bytes[10] = 1;
        bytes[5000] = 2;
        assert_eq!(first_non_zero(&bytes), Some(10));
    }
}
