//! Raft snapshots: the state machine as one file (the stream format of `mod.rs` plus a
//! [`RAFT_META_FILE`] record), created on the leader, read and installed on a follower.

use std::fs::{self, File};
use std::io::{self, BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{files_of, for_each_record, stream_files, unique_tag, unpack, verify, Durability, Error};
use crate::mvcc::{MvccStore, RaftMeta, SnapshotSource};

/// The file record of a raft snapshot that holds its index, term and membership.
pub const RAFT_META_FILE: &str = "SKIFF_RAFT_META";
const RAFT_META_MAGIC: &[u8; 8] = b"SKIFFRSM";
/// Largest raft meta record accepted (the membership is a few KiB; bounds a bad header).
const RAFT_META_BYTES_MAX: u64 = 16 << 20;
/// Extension of raft snapshot files.
pub const RAFT_SNAPSHOT_EXTENSION: &str = "snap";
/// Ends the name of every temporary file and directory made here.
pub const TMP_SUFFIX: &str = ".tmp";

/// A raft snapshot written by [`create_raft_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSnapshotFile {
    /// `<dir>/<index:016x>-<term:016x>.snap`.
    pub path: PathBuf,
    /// The consistent index of the state it holds: the raft index of its last entry.
    pub index: u64,
    /// The raft term of that entry.
    pub term: u64,
    /// The membership bytes stored with that state (`WriteTxn::set_membership`).
    pub membership: Option<Vec<u8>>,
    /// File size in bytes.
    pub size: u64,
}

/// Where the raft snapshot of `(index, term)` lives in `dir`. Zero-padded hex, so names
/// sort by index.
pub fn raft_snapshot_path(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("{index:016x}-{term:016x}.{RAFT_SNAPSHOT_EXTENSION}"))
}

/// Writes a raft snapshot of `mvcc` into `dir` (created if missing) and returns it.
///
/// The index, term and membership are read from the checkpoint itself (opened read-only),
/// never from the live store, which keeps applying meanwhile: they describe exactly the
/// state in the file. The file appears under its final name only when complete and
/// durable (temporary file, fsync, rename, fsync of `dir`); an existing file of the same
/// `(index, term)` is replaced. Memory use does not depend on the store's size. May run
/// on any thread, concurrently with the applier; it waits for a snapshot install.
pub fn create_raft_snapshot(mvcc: &MvccStore, dir: &Path) -> Result<RaftSnapshotFile, Error> {
    fs::create_dir_all(dir)?;
    let tag = unique_tag();
    let checkpoint = dir.join(format!("checkpoint-{tag}{TMP_SUFFIX}"));
    let result = mvcc.checkpoint(&checkpoint).map_err(Error::from).and_then(|()| write_raft_snapshot(&checkpoint, dir, &tag));
    if let Err(e) = fs::remove_dir_all(&checkpoint) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(error = %e, dir = %checkpoint.display(), "removing a snapshot checkpoint failed");
        }
    }
    let file = result?;
    info!(index = file.index, term = file.term, bytes = file.size, path = %file.path.display(), "raft snapshot created");
    Ok(file)
}

fn write_raft_snapshot(checkpoint: &Path, dir: &Path, tag: &str) -> Result<RaftSnapshotFile, Error> {
    // Listed before the checkpoint is opened: nothing opening it may create gets in.
    let mut files = files_of(checkpoint)?;
    let meta = SnapshotSource::open(checkpoint)?.raft_meta()?;
    let record = encode_raft_meta_record(&meta);
    let record_path = checkpoint.join(RAFT_META_FILE);
    fs::write(&record_path, &record)?;
    files.retain(|(name, _, _)| name != RAFT_META_FILE);
    files.push((RAFT_META_FILE.to_string(), record_path, record.len() as u64));
    files.sort();

    let path = raft_snapshot_path(dir, meta.index, meta.term);
    let file_name = path.file_name().expect("a snapshot path has a file name").to_string_lossy();
    let tmp = dir.join(format!("{file_name}.{tag}{TMP_SUFFIX}"));
    let size = match write_stream_file(&files, &tmp) {
        Ok(size) => size,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(RaftSnapshotFile { path, index: meta.index, term: meta.term, membership: meta.membership, size })
}

/// Streams `files` into a new file at `path`, fsynced; returns its size.
fn write_stream_file(files: &[(String, PathBuf, u64)], path: &Path) -> Result<u64, Error> {
    let mut out = File::create(path)?;
    let mut size = 0u64;
    let mut write_error = None;
    let streamed = stream_files(files, &mut |chunk: Vec<u8>, _remaining| match out.write_all(&chunk) {
        Ok(()) => {
            size += chunk.len() as u64;
            true
        }
        Err(e) => {
            write_error = Some(e);
            false
        }
    });
    if let Some(e) = write_error {
        return Err(e.into());
    }
    streamed?;
    out.sync_all()?;
    Ok(size)
}

/// `magic | index:u64le | term:u64le | has_membership:u8 | len:u32le | membership`.
pub(super) fn encode_raft_meta_record(meta: &RaftMeta) -> Vec<u8> {
    let membership = meta.membership.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(RAFT_META_MAGIC.len() + 8 + 8 + 1 + 4 + membership.len());
    out.extend_from_slice(RAFT_META_MAGIC);
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.push(u8::from(meta.membership.is_some()));
    let len = u32::try_from(membership.len()).expect("membership bytes fit in u32");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(membership);
    out
}

pub(super) fn read_raft_meta_record(r: &mut impl Read, size: u64) -> Result<RaftMeta, Error> {
    if size > RAFT_META_BYTES_MAX {
        return Err(Error::Invalid(format!("raft meta record of {size} bytes")));
    }
    let mut raw = vec![0u8; size as usize];
    r.read_exact(&mut raw)?;
    decode_raft_meta_record(&raw)
}

pub(super) fn decode_raft_meta_record(raw: &[u8]) -> Result<RaftMeta, Error> {
    const HEADER: usize = 8 + 8 + 8 + 1 + 4;
    let bad = || Error::Invalid(format!("bad raft meta record ({} bytes)", raw.len()));
    if raw.len() < HEADER || &raw[..8] != RAFT_META_MAGIC {
        return Err(bad());
    }
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(raw[25..29].try_into().expect("4 bytes")) as usize;
    if raw.len() != HEADER + len {
        return Err(bad());
    }
    let membership = match raw[24] {
        0 if len == 0 => None,
        1 => Some(raw[HEADER..].to_vec()),
        _ => return Err(bad()),
    };
    Ok(RaftMeta { index: u64_at(8), term: u64_at(16), membership })
}

/// The `(index, term, membership)` of a raft snapshot file, after checking its digest
/// (which reads the whole file once; nothing else of it is held in memory).
pub fn read_raft_snapshot_meta(file: &Path) -> Result<(u64, u64, Option<Vec<u8>>), Error> {
    let body_len = verify(file)?;
    let mut found = None;
    for_each_record(file, body_len, |name, size, r| {
        if name == RAFT_META_FILE {
            found = Some(read_raft_meta_record(r, size)?);
        } else {
            skip(r, size)?;
        }
        Ok(())
    })?;
    let meta = found.ok_or_else(|| Error::Invalid(format!("{} is not a raft snapshot (no {RAFT_META_FILE})", file.display())))?;
    Ok((meta.index, meta.term, meta.membership))
}

/// Moves `r` forward by `n` bytes without reading them.
fn skip(r: &mut io::BufReader<File>, n: u64) -> Result<(), Error> {
    let buffered = r.buffer().len() as u64;
    if n <= buffered {
        r.consume(n as usize);
    } else {
        // Seeking a `BufReader` drops its buffer; seek relative to what it has consumed.
        r.seek(io::SeekFrom::Current(i64::try_from(n).map_err(|_| Error::Invalid(format!("record of {n} bytes")))?))?;
    }
    Ok(())
}

/// Removes every raft snapshot (`*.snap`) in `dir` except `keep` (compared by file name):
/// once a snapshot is installed, older ones are garbage. Failures are logged, not
/// returned: a file left behind costs disk space only.
pub fn remove_raft_snapshots_except(dir: &Path, keep: &Path) {
    remove_entries(dir, |name, path| {
        path.extension().is_some_and(|e| e == RAFT_SNAPSHOT_EXTENSION) && Some(name) != keep.file_name()
    });
}

/// Removes the temporary files and directories (`*.tmp`) that snapshot work left in `dir`
/// (a crash in the middle of [`create_raft_snapshot`] or
/// [`MvccStore::restore_from_snapshot`]). Call only while no snapshot work on `dir` runs,
/// e.g. at startup. Failures are logged.
pub fn remove_raft_snapshot_leftovers(dir: &Path) {
    remove_entries(dir, |name, _| name.to_string_lossy().ends_with(TMP_SUFFIX));
}

fn remove_entries(dir: &Path, mut select: impl FnMut(&std::ffi::OsStr, &Path) -> bool) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(error = %e, dir = %dir.display(), "listing snapshots failed");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !select(&entry.file_name(), &path) {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match removed {
            Ok(()) => info!(path = %path.display(), "removed old snapshot file"),
            Err(e) => warn!(error = %e, path = %path.display(), "removing an old snapshot file failed"),
        }
    }
}

impl MvccStore {
    /// Installs the raft snapshot `file` (from [`create_raft_snapshot`]) in place: the
    /// store's whole contents become the snapshot's, and every cached value (revisions,
    /// consistent index, applied term) with them.
    ///
    /// Nothing is touched before the file's digest is verified and its database opened:
    /// a corrupt or truncated file is refused with the store unchanged. The file is
    /// unpacked into a temporary directory under `tmp_root` (the same filesystem as the
    /// data is best), removed afterwards. Call from the applier thread (the single
    /// writer) while it holds no `WriteTxn`; readers may go on and see a mix of the two
    /// states meanwhile. Afterwards the caller resets what is derived from the contents
    /// (the lessor, the watch hub's `on_restore`). On a crash in the middle, the store
    /// reopens with [`MvccStore::interrupted_restore`] set and its old consistent index:
    /// call this again with the same file.
    pub fn restore_from_snapshot(&self, file: &Path, tmp_root: &Path) -> Result<(), Error> {
        let body_len = verify(file)?;
        fs::create_dir_all(tmp_root)?;
        let dir = tmp_root.join(format!("install-{}{TMP_SUFFIX}", unique_tag()));
        fs::create_dir(&dir)?;
        let result = install_unpacked(self, file, body_len, &dir);
        if let Err(e) = fs::remove_dir_all(&dir) {
            warn!(error = %e, dir = %dir.display(), "removing an unpacked snapshot failed");
        }
        result
    }
}

fn install_unpacked(mvcc: &MvccStore, file: &Path, body_len: u64, dir: &Path) -> Result<(), Error> {
    let record = unpack(file, body_len, dir, Durability::Scratch)?;
    let source = SnapshotSource::open(dir)?;
    if let Some(record) = record {
        let stored = source.raft_meta()?;
        if record != stored {
            return Err(Error::Invalid(format!(
                "raft meta record (index {}, term {}) disagrees with the data (index {}, term {})",
                record.index, record.term, stored.index, stored.term
            )));
        }
    }
    mvcc.replace_contents(&source)?;
    Ok(())
}
