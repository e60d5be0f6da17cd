//! Point-in-time snapshots of the state machine for `Maintenance.Snapshot` and
//! `skiff snapshot restore`.
//!
//! A snapshot is a RocksDB checkpoint (hard links, so taking it is cheap) packed into one
//! stream:
//!
//! ```text
//! "SKIFFSNP" version:u32le
//! { name_len:u32le name size:u64le bytes }*        one record per checkpoint file
//! "SKIFFEND" crc32:u32le                           crc32 of every byte before it
//! ```
//!
//! It is streamed in `CHUNK_BYTES` pieces, so memory does not grow with the database size.
//! Restore checks the trailer before it writes anything (a truncated or corrupted download
//! is refused, never half-restored).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::mvcc::MvccStore;

/// Bytes per snapshot message (etcd streams 32 KiB chunks).
pub const CHUNK_BYTES: usize = 32 * 1024;
const MAGIC: &[u8; 8] = b"SKIFFSNP";
const TRAILER: &[u8; 8] = b"SKIFFEND";
const FORMAT_VERSION: u32 = 1;
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
    let dir = tmp_root.join(format!("snapshot-{}-{}", std::process::id(), rand::random::<u32>()));
    mvcc.checkpoint(&dir)?;
    let result = stream_dir(&dir, &mut send);
    let _ = fs::remove_dir_all(&dir);
    result
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

fn stream_dir(dir: &Path, send: &mut impl FnMut(Vec<u8>, u64) -> bool) -> Result<(), Error> {
    let files = files_of(dir)?;
    let mut total: u64 = (MAGIC.len() + 4 + TRAILER.len() + 4) as u64;
    for (name, _, size) in &files {
        total += 4 + name.len() as u64 + 8 + size;
    }
    let mut out = ChunkWriter { buf: Vec::with_capacity(CHUNK_BYTES), remaining: total, crc: crc32fast::Hasher::new(), send, closed: false };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    for (name, path, size) in &files {
        out.write_all(&(name.len() as u32).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&size.to_le_bytes())?;
        let copied = io::copy(&mut File::open(path)?.take(*size), &mut out)?;
        if copied != *size {
            return Err(Error::Invalid(format!("{name} changed size while streaming")));
        }
    }
    let crc = out.crc.clone().finalize();
    out.write_all(TRAILER)?;
    out.buf.extend_from_slice(&crc.to_le_bytes());
    out.remaining -= 4;
    out.flush_chunk(true)?;
    Ok(())
}

struct ChunkWriter<'a, F: FnMut(Vec<u8>, u64) -> bool> {
    buf: Vec<u8>,
    remaining: u64,
    crc: crc32fast::Hasher,
    send: &'a mut F,
    closed: bool,
}

impl<F: FnMut(Vec<u8>, u64) -> bool> ChunkWriter<'_, F> {
    fn flush_chunk(&mut self, last: bool) -> io::Result<()> {
        if self.buf.is_empty() && !last {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        if self.closed || !(self.send)(chunk, self.remaining) {
            self.closed = true;
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "snapshot receiver went away"));
        }
        Ok(())
    }
}

impl<F: FnMut(Vec<u8>, u64) -> bool> Write for ChunkWriter<'_, F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.remaining -= n as u64;
        if self.buf.len() == CHUNK_BYTES {
            self.flush_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Verifies a snapshot file and unpacks it into `target` (which must not exist).
pub fn restore(file: &Path, target: &Path) -> Result<(), Error> {
    verify(file)?;
    if target.exists() {
        return Err(Error::Invalid(format!("{} already exists", target.display())));
    }
    let tmp = target.with_extension("restoring");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut r = io::BufReader::new(File::open(file)?);
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic)?;
    let body_len = fs::metadata(file)?.len() - (TRAILER.len() + 4) as u64;
    let mut pos = magic.len() as u64;
    while pos < body_len {
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
        let mut f = File::create(tmp.join(&name))?;
        let copied = io::copy(&mut (&mut r).take(size), &mut f)?;
        if copied != size {
            return Err(Error::Invalid(format!("{name} is truncated")));
        }
        f.sync_all()?;
        pos += 4 + name_len as u64 + 8 + size;
    }
    fs::rename(&tmp, target)?;
    Ok(())
}

/// Checks magic, version and the whole-file CRC.
pub fn verify(file: &Path) -> Result<(), Error> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    let min = (MAGIC.len() + 4 + TRAILER.len() + 4) as u64;
    if len < min {
        return Err(Error::Invalid(format!("file is {len} bytes, shorter than any snapshot")));
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
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len - 12 - (TRAILER.len() + 4) as u64;
    while left > 0 {
        let n = f.read(&mut buf[..(left.min(CHUNK_BYTES as u64) as usize)])?;
        if n == 0 {
            return Err(Error::Invalid("unexpected end of file".into()));
        }
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; 12];
    f.read_exact(&mut trailer)?;
    if &trailer[..8] != TRAILER {
        return Err(Error::Invalid("missing trailer (truncated download?)".into()));
    }
    let want = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
    if crc.finalize() != want {
        return Err(Error::Invalid("checksum mismatch".into()));
    }
    Ok(())
}
