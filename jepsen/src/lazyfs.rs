//! A FUSE file system that can forget what was never fsynced — the disk fault of a power
//! loss, like Jepsen's lazyfs. A member's data directory is mounted through it; the
//! nemesis kills the member and calls [`LazyFs::lose_unsynced`], and the member restarts on
//! exactly what an `fsync`/`fdatasync` made durable.
//!
//! It passes every operation through to a backing directory at once (so reads, `mmap`
//! and file locks behave as on the real file system) and keeps, per file, an undo log of
//! the bytes each write or truncate replaced since the file's last sync, with the size it
//! had then. Losing unsynced data replays every undo log backwards and cuts each file back
//! to its synced size. A sync of a file drops its log. Metadata (create, rename, unlink,
//! mkdir) is durable at once: this models lost data, not lost directory entries (a file
//! created and never synced comes back empty, as ext4 may leave it).
//!
//! Memory is bounded: when the undo logs hold more than `UNDO_BYTES_MAX`, the largest is
//! dropped — as if the kernel had written that file back on its own, which a real disk may
//! also do — and counted in [`LazyStats::written_back`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

/// Bytes of replaced data remembered across all files before the largest log is dropped.
pub const UNDO_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Open file handles at once (a member holds a few hundred at most).
pub const OPEN_FILES_MAX: usize = 8192;
/// The kernel may cache names this long; attributes are never cached (a rollback changes
/// sizes behind the kernel's back).
const ENTRY_TTL: Duration = Duration::from_millis(100);
const ATTR_TTL: Duration = Duration::ZERO;
/// FUSE worker threads.
const FUSE_THREADS: usize = 2;

/// What happened since the mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LazyStats {
    /// Files whose unsynced data was forgotten, over every `lose_unsynced`.
    pub files_rolled_back: u64,
    /// Bytes of file length cut or restored by rollbacks.
    pub bytes_lost: u64,
    /// Undo logs dropped to keep memory bounded (their data survives a rollback).
    pub written_back: u64,
    pub syncs: u64,
}

struct Undo {
    /// Size of the file at its last sync (or creation).
    synced_size: u64,
    /// (offset, bytes there before) for each change since, oldest first.
    changes: Vec<(u64, Vec<u8>)>,
    bytes: u64,
}

struct Handle {
    file: File,
    ino: u64,
}

struct State {
    backing: PathBuf,
    /// Inode → path relative to the backing root ("" for the root).
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    undo: HashMap<u64, Undo>,
    undo_bytes: u64,
    stats: LazyStats,
}

impl State {
    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.inodes.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, rel.to_path_buf());
        self.inodes.insert(rel.to_path_buf(), ino);
        ino
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.inodes.remove(rel) {
            self.paths.remove(&ino);
            if let Some(u) = self.undo.remove(&ino) {
                self.undo_bytes -= u.bytes;
            }
        }
    }

    fn attr(&mut self, rel: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.full(rel)).map_err(Errno::from)?;
        let ino = self.ino_for(rel);
        Ok(to_attr(ino, &meta))
    }

    /// Remembers what `[offset, offset+len)` of `ino` holds before it is overwritten.
    fn remember(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> Result<(), Errno> {
        let size = file.metadata().map_err(Errno::from)?.len();
        let undo = self.undo.entry(ino).or_insert_with(|| Undo { synced_size: size, changes: Vec::new(), bytes: 0 });
        let end = (offset + len).min(size);
        let mut old = Vec::new();
        if offset < end {
            old = vec![0; (end - offset) as usize];
            file.read_exact_at(&mut old, offset).map_err(Errno::from)?;
        }
        undo.bytes += old.len() as u64;
        self.undo_bytes += old.len() as u64;
        undo.changes.push((offset, old));
        while self.undo_bytes > UNDO_BYTES_MAX {
            let Some((&big, _)) = self.undo.iter().max_by_key(|(_, u)| u.bytes) else { break };
            if let Some(u) = self.undo.remove(&big) {
                self.undo_bytes -= u.bytes;
                self.stats.written_back += 1;
            }
        }
        Ok(())
    }

    fn synced(&mut self, ino: u64) {
        if let Some(u) = self.undo.remove(&ino) {
            self.undo_bytes -= u.bytes;
        }
        self.stats.syncs += 1;
    }
}

fn to_attr(ino: u64, meta: &std::fs::Metadata) -> FileAttr {
    let time = |secs: i64, nsecs: i64| {
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
        } else {
            UNIX_EPOCH
        }
    };
    let kind = if meta.is_dir() {
        FileType::Directory
    } else if meta.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino: INodeNo(ino),
        size: meta.len(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind,
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The file system given to fuser; shares its state with the [`LazyFs`] handle.
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in one FUSE call must not wedge every later one.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    // Always readable: a write first reads the bytes it replaces, for the undo log.
    match flags & libc_consts::O_ACCMODE {
        libc_consts::O_WRONLY | libc_consts::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    // Offsets come with every write; O_APPEND, O_CREAT, O_TRUNC are handled here, not by
    // the backing open.
    o.custom_flags(flags & !(libc_consts::O_APPEND | libc_consts::O_CREAT | libc_consts::O_TRUNC | libc_consts::O_EXCL | libc_consts::O_ACCMODE));
    o
}

/// The open(2) flag values fuser hands over (Linux x86-64/aarch64 values).
mod libc_consts {
    pub const O_ACCMODE: i32 = 0o3;
    pub const O_WRONLY: i32 = 0o1;
    pub const O_RDWR: i32 = 0o2;
    pub const O_CREAT: i32 = 0o100;
    pub const O_EXCL: i32 = 0o200;
    pub const O_TRUNC: i32 = 0o1000;
    pub const O_APPEND: i32 = 0o2000;
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        match s.child(parent, name).and_then(|p| s.attr(&p)) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut s = self.state();
        match s.path(ino).and_then(|p| s.attr(&p)) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        let result = (|| {
            let rel = s.path(ino)?;
            let full = s.full(&rel);
            if let Some(mode) = mode {
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(Errno::from)?;
            }
            if let Some(size) = size {
                let file = OpenOptions::new().read(true).write(true).open(&full).map_err(Errno::from)?;
                let len = file.metadata().map_err(Errno::from)?.len();
                s.remember(ino.0, &file, size.min(len), len.saturating_sub(size))?;
                file.set_len(size).map_err(Errno::from)?;
            }
            s.attr(&rel)
        })();
        match result {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut s = self.state();
        let result = (|| {
            let rel = s.child(parent, name)?;
            let full = s.full(&rel);
            std::fs::create_dir(&full).map_err(Errno::from)?;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & !umask & 0o7777))
                .map_err(Errno::from)?;
            s.attr(&rel)
        })();
        match result {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let result = (|| {
            let rel = s.child(parent, name)?;
            std::fs::remove_file(s.full(&rel)).map_err(Errno::from)?;
            s.forget_path(&rel);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let result = (|| {
            let rel = s.child(parent, name)?;
            std::fs::remove_dir(s.full(&rel)).map_err(Errno::from)?;
            s.forget_path(&rel);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / EXCHANGE / WHITEOUT: not needed by etcd or RocksDB.
            reply.error(Errno::EINVAL);
            return;
        }
        let mut s = self.state();
        let result = (|| {
            let from = s.child(parent, name)?;
            let to = s.child(newparent, newname)?;
            std::fs::rename(s.full(&from), s.full(&to)).map_err(Errno::from)?;
            s.forget_path(&to);
            // Move the renamed entry and, for a directory, everything under it.
            let moved: Vec<(u64, PathBuf)> = s
                .paths
                .iter()
                .filter(|(_, p)| p.starts_with(&from))
                .map(|(&ino, p)| {
                    let rest = p.strip_prefix(&from).expect("prefix checked");
                    // `join("")` would add a trailing slash.
                    (ino, if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) })
                })
                .collect();
            for (ino, new) in moved {
                let old = s.paths.insert(ino, new.clone()).expect("listed above");
                s.inodes.remove(&old);
                s.inodes.insert(new, ino);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.state();
        let result = (|| {
            if s.handles.len() >= OPEN_FILES_MAX {
                return Err(Errno::EMFILE);
            }
            let rel = s.path(ino)?;
            let file = open_options(flags.0).open(s.full(&rel)).map_err(Errno::from)?;
            if flags.0 & libc_consts::O_TRUNC != 0 {
                let len = file.metadata().map_err(Errno::from)?.len();
                s.remember(ino.0, &file, 0, len)?;
                file.set_len(0).map_err(Errno::from)?;
            }
            let fh = s.next_fh;
            s.next_fh += 1;
            s.handles.insert(fh, Handle { file, ino: ino.0 });
            Ok(fh)
        })();
        match result {
            // No FOPEN_KEEP_CACHE: the kernel drops its page cache on every open, so a
            // process started after a rollback reads the rolled-back bytes.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let result = (|| {
            if s.handles.len() >= OPEN_FILES_MAX {
                return Err(Errno::EMFILE);
            }
            let rel = s.child(parent, name)?;
            let full = s.full(&rel);
            let mut o = open_options(flags);
            o.create(true).write(true).mode(mode & !umask & 0o7777);
            if flags & libc_consts::O_EXCL != 0 {
                o.create_new(true);
            }
            let file = o.open(&full).map_err(Errno::from)?;
            if flags & libc_consts::O_TRUNC != 0 {
                file.set_len(0).map_err(Errno::from)?;
            }
            let attr = s.attr(&rel)?;
            // A new file is empty as far as a rollback is concerned.
            s.undo.entry(attr.ino.0).or_insert(Undo { synced_size: 0, changes: Vec::new(), bytes: 0 });
            let fh = s.next_fh;
            s.next_fh += 1;
            s.handles.insert(fh, Handle { file, ino: attr.ino.0 });
            Ok((attr, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&ENTRY_TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.state();
        let Some(h) = s.handles.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let mut buf = vec![0; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match h.file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    reply.error(Errno::from(e));
                    return;
                }
            }
        }
        reply.data(&buf[..n]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        let result = (|| {
            let (file, ino) = {
                let h = s.handles.get(&fh.0).ok_or(Errno::EBADF)?;
                (h.file.try_clone().map_err(Errno::from)?, h.ino)
            };
            s.remember(ino, &file, offset, data.len() as u64)?;
            file.write_all_at(data, offset).map_err(Errno::from)?;
            Ok(data.len() as u32)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        let result = (|| {
            let h = s.handles.get(&fh.0).ok_or(Errno::EBADF)?;
            if datasync {
                h.file.sync_data().map_err(Errno::from)?;
            } else {
                h.file.sync_all().map_err(Errno::from)?;
            }
            s.synced(ino.0);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory entries are durable at once here (see the module doc).
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut s = self.state();
        let rel = match s.path(ino) {
            Ok(r) => r,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        match std::fs::read_dir(s.full(&rel)) {
            Ok(dir) => {
                let mut names: Vec<_> = dir.filter_map(Result::ok).collect();
                names.sort_by_key(|e| e.file_name());
                for e in names {
                    let kind = match e.file_type() {
                        Ok(t) if t.is_dir() => FileType::Directory,
                        Ok(t) if t.is_symlink() => FileType::Symlink,
                        _ => FileType::RegularFile,
                    };
                    let child = rel.join(e.file_name());
                    let child_ino = s.ino_for(&child);
                    entries.push((child_ino, kind, e.file_name()));
                }
            }
            Err(e) => {
                reply.error(Errno::from(e));
                return;
            }
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.state();
        match nix::sys::statvfs::statvfs(&s.backing) {
            Ok(v) => reply.statfs(
                v.blocks(),
                v.blocks_free(),
                v.blocks_available(),
                v.files(),
                v.files_free(),
                v.block_size() as u32,
                v.name_max() as u32,
                v.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let result = (|| {
            let file = s.handles.get(&fh.0).ok_or(Errno::EBADF)?.file.try_clone().map_err(Errno::from)?;
            // Only the size can change (new space reads as zeros): remember it.
            s.remember(ino.0, &file, offset, 0)?;
            nix::fcntl::fallocate(
                &file,
                nix::fcntl::FallocateFlags::from_bits_truncate(mode),
                offset as i64,
                length as i64,
            )
            .map_err(|e| Errno::from_i32(e as i32))
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted lazy file system. Unmounted on drop.
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl LazyFs {
    /// Mounts `backing` (an existing directory) at `mountpoint` (an existing, empty
    /// directory). Needs root (or FUSE permissions) and /dev/fuse.
    pub fn mount(backing: &Path, mountpoint: &Path) -> anyhow::Result<LazyFs> {
        let backing = backing.canonicalize().with_context(|| format!("backing dir {}", backing.display()))?;
        let mut paths = HashMap::new();
        let mut inodes = HashMap::new();
        paths.insert(INodeNo::ROOT.0, PathBuf::new());
        inodes.insert(PathBuf::new(), INodeNo::ROOT.0);
        let state = Arc::new(Mutex::new(State {
            backing,
            paths,
            inodes,
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            undo: HashMap::new(),
            undo_bytes: 0,
            stats: LazyStats::default(),
        }));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("skiff-lazyfs".into()), MountOption::DefaultPermissions];
        config.n_threads = Some(FUSE_THREADS);
        let session = fuser::spawn_mount(Fs(state.clone()), mountpoint, &config)
            .with_context(|| format!("mounting lazyfs at {} (needs /dev/fuse and root)", mountpoint.display()))?;
        Ok(LazyFs { state, session: Some(session), mountpoint: mountpoint.to_path_buf() })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Bytes written since their file's last sync, over all files.
    pub fn unsynced_files(&self) -> usize {
        self.lock().undo.len()
    }

    pub fn stats(&self) -> LazyStats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every write not covered by a sync of its file: what a power loss does.
    /// Call it only while no process uses the mount (kill the member first). Returns the
    /// number of files rolled back.
    pub fn lose_unsynced(&self) -> anyhow::Result<usize> {
        let mut s = self.lock();
        let undo = std::mem::take(&mut s.undo);
        s.undo_bytes = 0;
        let mut files = 0;
        for (ino, u) in undo {
            let Some(rel) = s.paths.get(&ino).cloned() else { continue };
            let full = s.full(&rel);
            let file = match OpenOptions::new().write(true).open(&full) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("rolling back {}", full.display())),
            };
            let before = file.metadata()?.len();
            for (offset, old) in u.changes.iter().rev() {
                file.write_all_at(old, *offset)
                    .with_context(|| format!("rolling back {}", full.display()))?;
            }
            file.set_len(u.synced_size)?;
            // The rolled-back state is what is on disk now; make it so for real.
            file.sync_all()?;
            s.stats.bytes_lost += before.abs_diff(u.synced_size) + u.bytes;
            files += 1;
        }
        s.stats.files_rolled_back += files as u64;
        Ok(files)
    }

    /// Unmounts (also done on drop).
    pub fn unmount(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(e) = session.umount_and_join() {
                tracing_free_warn(&self.mountpoint, &e);
            }
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn tracing_free_warn(mountpoint: &Path, e: &std::io::Error) {
    eprintln!("lazyfs: unmounting {} failed: {e}", mountpoint.display());
}
