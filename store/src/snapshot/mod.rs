//! Point-in-time snapshots of the state machine for `Maintenance.Snapshot`,
//! `skiff snapshot restore`, and raft snapshots (a follower that fell behind the leader's
//! compacted log gets the leader's whole state machine as a file).
//!
//! A snapshot is a RocksDB checkpoint (hard links, so taking it is cheap) packed into one
//! stream:
//!
//! ```text
//! "SKIFFSNP" version:u32le
//! { name_len:u32le name size:u64le bytes }*        one record per checkpoint file
//! "SKIFFEND"
//! zero padding to a multiple of 512 bytes
//! sha256 of everything before it (32 bytes)
//! ```
//!
//! The padding and the trailing SHA-256 follow etcd's snapshot convention: `etcdctl snapshot
//! save` accepts a stream only if its size is 32 more than a multiple of 512 (the digest
//! etcd appends), so the same client saves Skiff's snapshots unchanged.
//!
//! It is streamed in `CHUNK_BYTES` pieces, so memory does not grow with the database size.
//! Restore checks the digest before it writes anything (a truncated or corrupted download
//! is refused, never half-restored).
//!
//! # Raft snapshots
//! [`create_raft_snapshot`] writes the same stream to `<index:016x>-<term:016x>.snap`,
//! where index and term are the checkpoint's own consistent index and applied term. The
//! stream has one more file record, [`RAFT_META_FILE`]: the index, term and membership
//! bytes, so [`read_raft_snapshot_meta`] finds them without unpacking the database
//! (unpacking skips that record). [`MvccStore::restore_from_snapshot`] installs such a file
//! into a live store (`mvcc/restore.rs` explains the order of the replacement). That code
//! is in `raft.rs`; this file is the stream format.
//!
//! Every temporary file or directory made here ends in [`TMP_SUFFIX`]; a crash can leave
//! them behind, and [`remove_raft_snapshot_leftovers`] clears them.

mod raft;
#[cfg(test)]
mod raft_tests;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::mvcc::{MvccStore, RaftMeta};
use raft::read_raft_meta_record;
pub use raft::{
    create_raft_snapshot, raft_snapshot_path, read_raft_snapshot_meta, remove_raft_snapshot_leftovers,
    remove_raft_snapshots_except, RaftSnapshotFile, RAFT_META_FILE, RAFT_SNAPSHOT_EXTENSION, TMP_SUFFIX,
};

/// Bytes per snapshot message (etcd streams 32 KiB chunks).
pub const CHUNK_BYTES: usize = 32 * 1024;
const MAGIC: &[u8; 8] = b"SKIFFSNP";
const END: &[u8; 8] = b"SKIFFEND";
const FORMAT_VERSION: u32 = 1;
const ALIGN_BYTES: u64 = 512;
const DIGEST_BYTES: u64 = 32;
/// Longest file name accepted in a snapshot (RocksDB's are short; bounds a corrupt header).
const NAME_BYTES_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot io: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot: {0}")]
    Mvcc(#[from] crate::mvcc::Error),
    #[error("snapshot file is invalid: {0}")]
    Invalid(String),
}

/// Takes a checkpoint under `tmp_root` and streams it through `send(chunk, remaining)`;
/// `send` returns false when the receiver went away. The checkpoint is removed afterwards.
pub fn stream(mvcc: &MvccStore, tmp_root: &Path, mut send: impl FnMut(Vec<u8>, u64) -> bool) -> Result<(), Error> {
    fs::create_dir_all(tmp_root)?;
    let dir = tmp_root.join(format!("snapshot-{}", unique_tag()));
    mvcc.checkpoint(&dir)?;
    let result = stream_dir(&dir, &mut send);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Unique among the temporary names of this process and, very likely, of others.
fn unique_tag() -> String {
    format!("{}-{:08x}", std::process::id(), rand::random::<u32>())
}

fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>, Error> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, entry.path(), entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

fn padding_for(body_len: u64) -> u64 {
    (ALIGN_BYTES - body_len % ALIGN_BYTES) % ALIGN_BYTES
}

fn stream_dir(dir: &Path, send: &mut impl FnMut(Vec<u8>, u64) -> bool) -> Result<(), Error> {
    stream_files(&files_of(dir)?, send)
}

/// Streams `(name, path, size)` records in the given order.
fn stream_files(files: &[(String, PathBuf, u64)], send: &mut impl FnMut(Vec<u8>, u64) -> bool) -> Result<(), Error> {
    let mut body: u64 = (MAGIC.len() + 4 + END.len()) as u64;
    for (name, _, size) in files {
        body += 4 + name.len() as u64 + 8 + size;
    }
    let padding = padding_for(body);
    let total = body + padding + DIGEST_BYTES;
    let mut out = ChunkWriter { buf: Vec::with_capacity(CHUNK_BYTES), remaining: total, sha: Sha256::new(), send };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    for (name, path, size) in files {
        out.write_all(&(name.len() as u32).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&size.to_le_bytes())?;
        let copied = io::copy(&mut File::open(path)?.take(*size), &mut out)?;
        if copied != *size {
            return Err(Error::Invalid(format!("{name} changed size while streaming")));
        }
    }
    out.write_all(END)?;
    out.write_all(&vec![0u8; padding as usize])?;
    let digest = out.sha.clone().finalize();
    out.buf.extend_from_slice(&digest);
    out.remaining -= DIGEST_BYTES;
    out.flush_chunk()?;
    Ok(())
}

struct ChunkWriter<'a, F: FnMut(Vec<u8>, u64) -> bool> {
    buf: Vec<u8>,
    remaining: u64,
    sha: Sha256,
    send: &'a mut F,
}

impl<F: FnMut(Vec<u8>, u64) -> bool> ChunkWriter<'_, F> {
    fn flush_chunk(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        if !(self.send)(chunk, self.remaining) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "snapshot receiver went away"));
        }
        Ok(())
    }
}

impl<F: FnMut(Vec<u8>, u64) -> bool> Write for ChunkWriter<'_, F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.sha.update(&data[..n]);
        self.remaining -= n as u64;
        if self.buf.len() == CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Verifies a snapshot file and unpacks it into `target` (which must not exist).
pub fn restore(file: &Path, target: &Path) -> Result<(), Error> {
    let body_len = verify(file)?;
    if target.exists() {
        return Err(Error::Invalid(format!("{} already exists", target.display())));
    }
    let tmp = target.with_extension("restoring");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    unpack(file, body_len, &tmp, Durability::Fsync)?;
    fs::rename(&tmp, target)?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Every unpacked file is fsynced (it becomes a data directory).
    Fsync,
    /// The unpacked files are read once and deleted; a crash makes them garbage anyway.
    Scratch,
}

/// Walks the file records of a verified snapshot (`body_len` from [`verify`]), calling
/// `visit(name, size, reader)` for each; `visit` must consume exactly `size` bytes.
fn for_each_record(
    file: &Path,
    body_len: u64,
    mut visit: impl FnMut(&str, u64, &mut io::BufReader<File>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut r = io::BufReader::with_capacity(CHUNK_BYTES, File::open(file)?);
    let mut head = [0u8; 12];
    r.read_exact(&mut head)?;
    let files_end = body_len - END.len() as u64;
    let mut pos = head.len() as u64;
    while pos < files_end {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let name_len = u32::from_le_bytes(len) as usize;
        if name_len == 0 || name_len > NAME_BYTES_MAX {
            return Err(Error::Invalid(format!("bad file name length {name_len} at offset {pos}")));
        }
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| Error::Invalid(format!("bad file name at offset {pos}")))?;
        if name.contains('/') || name == ".." || name == "." {
            return Err(Error::Invalid(format!("unsafe file name {name:?}")));
        }
        let mut size = [0u8; 8];
        r.read_exact(&mut size)?;
        let size = u64::from_le_bytes(size);
        let record_end = pos + 4 + name_len as u64 + 8 + size;
        if record_end > files_end {
            return Err(Error::Invalid(format!("{name} runs past the end of the file records")));
        }
        visit(&name, size, &mut r)?;
        pos = record_end;
    }
    if pos != files_end {
        return Err(Error::Invalid(format!("file records end at {pos}, expected {files_end}")));
    }
    Ok(())
}

/// Unpacks a verified snapshot into the existing directory `dir`. The raft meta record is
/// not a database file: it is returned (decoded) instead of written.
fn unpack(file: &Path, body_len: u64, dir: &Path, durability: Durability) -> Result<Option<RaftMeta>, Error> {
    let mut raft_meta = None;
    for_each_record(file, body_len, |name, size, r| {
        if name == RAFT_META_FILE {
            raft_meta = Some(read_raft_meta_record(r, size)?);
            return Ok(());
        }
        let mut f = File::create(dir.join(name))?;
        let copied = io::copy(&mut r.take(size), &mut f)?;
        if copied != size {
            return Err(Error::Invalid(format!("{name} is truncated")));
        }
        if durability == Durability::Fsync {
            f.sync_all()?;
        }
        Ok(())
    })?;
    Ok(raft_meta)
}

/// Checks magic, version, the end marker and the SHA-256 digest. Returns the length of
/// the body (up to and including the end marker).
pub fn verify(file: &Path) -> Result<u64, Error> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    if len < ALIGN_BYTES + DIGEST_BYTES || len % ALIGN_BYTES != DIGEST_BYTES {
        return Err(Error::Invalid(format!("size {len} is not a snapshot's (truncated download?)")));
    }
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(Error::Invalid("not a skiff snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::Invalid(format!("unsupported snapshot version {version}")));
    }
    let mut sha = Sha256::new();
    sha.update(head);
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len - head.len() as u64 - DIGEST_BYTES;
    // The last non-zero bytes before the padding must be the end marker.
    let mut tail: Vec<u8> = Vec::new();
    while left > 0 {
        let n = f.read(&mut buf[..(left.min(CHUNK_BYTES as u64) as usize)])?;
        if n == 0 {
            return Err(Error::Invalid("unexpected end of file".into()));
        }
        sha.update(&buf[..n]);
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * ALIGN_BYTES as usize + END.len() {
            tail.drain(..tail.len() - (2 * ALIGN_BYTES as usize + END.len()));
        }
        left -= n as u64;
    }
    let mut digest = [0u8; 32];
    f.read_exact(&mut digest)?;
    if sha.finalize().as_slice() != digest {
        return Err(Error::Invalid("sha256 digest mismatch".into()));
    }
    let unpadded = tail.iter().rposition(|b| *b != 0).map(|p| p + 1).unwrap_or(0);
    if unpadded < END.len() || &tail[unpadded - END.len()..unpadded] != END {
        return Err(Error::Invalid("missing end marker".into()));
    }
    let padding = (tail.len() - unpadded) as u64;
    Ok(len - DIGEST_BYTES - padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_verify_restore_round_trip_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.sst"), vec![7u8; 100_000]).unwrap();
        fs::write(src.join("CURRENT"), b"MANIFEST-1\n").unwrap();
        let mut out = Vec::new();
        let mut remaining_seen = Vec::new();
        stream_dir(&src, &mut |chunk: Vec<u8>, remaining| {
            out.extend_from_slice(&chunk);
            remaining_seen.push(remaining);
            true
        })
        .unwrap();
        assert_eq!(out.len() as u64 % ALIGN_BYTES, DIGEST_BYTES, "etcdctl's checksum rule");
        assert_eq!(*remaining_seen.last().unwrap(), 0);
        let file = dir.path().join("s.snap");
        fs::write(&file, &out).unwrap();
        verify(&file).unwrap();
        let target = dir.path().join("restored");
        restore(&file, &target).unwrap();
        assert_eq!(fs::read(target.join("a.sst")).unwrap(), vec![7u8; 100_000]);
        assert_eq!(fs::read(target.join("CURRENT")).unwrap(), b"MANIFEST-1\n");

        let mut bad = out.clone();
        bad[5000] ^= 1;
        fs::write(&file, &bad).unwrap();
        assert!(matches!(verify(&file), Err(Error::Invalid(_))));
        fs::write(&file, &out[..out.len() - 1]).unwrap();
        assert!(matches!(verify(&file), Err(Error::Invalid(_))));
    }
}
