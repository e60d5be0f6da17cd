//! The write-ahead log that holds the raft log: entries, hard states and snapshot markers in
//! a directory of segment files, and the writer thread that group-commits them.
//!
//! Owns: the on-disk format (`record`), segment files and the torn-tail/corruption rules
//! (`segment`), the raft log rules shared with the in-memory storage (`log_state`), and the
//! group-commit writer thread (`writer`). Must never: decode an entry's payload, skip a
//! corrupt record, or report data durable before its fsync returned.
//!
//! On disk: `{seq:016x}-{first_index:016x}.wal` files, each preallocated to
//! `WalConfig::segment_bytes` and starting with a prologue: a `SegmentHeader` record, then a
//! copy of the latest snapshot marker and hard state, so the segments before any one of them
//! can be deleted. Records are `[len u32][crc32 u32][type u8][payload]` (see `record`).
//!
//! Where new code goes: a new durable record kind is a `record::RecordType` variant plus a
//! case in `Wal::open`'s replay; raft log semantics go in `log_state`.

mod log_state;
mod record;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fail::fail_point;
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
use tracing::{debug, warn};

pub(crate) use log_state::LogState;
use log_state::{IndexTerm, LogError};
use record::{Record, SegmentHeader};
use segment::{io_err, SegmentFile};
pub use writer::{
    LogWriter, PersistTask, WalMetrics, WriterStats, GROUP_COMMIT_TASKS_MAX, WRITE_QUEUE_TASKS_MAX,
};

/// Default size segments are preallocated to and rolled at (etcd's `SegmentSizeBytes`).
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Smallest configurable segment: room for a prologue and a few records (tests use it to
/// roll often).
pub const SEGMENT_BYTES_MIN: u64 = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("wal io error on {}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("wal corrupt: {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier write or fsync failed. What reached the disk is unknown (after a failed
    /// fsync the kernel may have dropped the dirty pages), so nothing more is written; the
    /// process must restart and recover from disk, as etcd does by panicking.
    #[error("wal poisoned by an earlier write or fsync failure; restart to recover from disk")]
    Poisoned,
    /// The batch would break the raft log (a caller bug); nothing was written.
    #[error("invalid append: {0}")]
    InvalidAppend(#[from] LogError),
    #[error("entry {index} is {bytes} bytes, more than a WAL record holds ({max_bytes})")]
    EntryTooLarge {
        index: u64,
        bytes: usize,
        max_bytes: usize,
    },
    #[error("wal write queue is full ({tasks_max} tasks)")]
    QueueFull { tasks_max: usize },
    #[error("wal writer thread stopped")]
    WriterStopped,
    #[error("invalid wal config: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Segments are preallocated to this size and a new one is started when a record would
    /// not fit. A record bigger than a whole segment gets a segment of its own, sized to fit.
    pub segment_bytes: u64,
    /// The writer's metrics (`WalMetrics::register`); `None` means the process-wide ones in
    /// the default registry.
    pub metrics: Option<WalMetrics>,
    /// UNSAFE (etcd's `--unsafe-no-fsync`): never fsync, so an acknowledged write can be
    /// lost by a power loss. For tests that must show a durability checker catches it.
    pub unsafe_no_fsync: bool,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_MAX,
            metrics: None,
            unsafe_no_fsync: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(Error::Config(format!(
                "segment size {} bytes is below the minimum of {SEGMENT_BYTES_MIN}",
                self.segment_bytes
            )));
        }
        if self.segment_bytes > record::RECORD_PAYLOAD_BYTES_MAX as u64 {
            return Err(Error::Config(format!(
                "segment size {} bytes is too large",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// One append: written as records in this order (snapshot marker, entries, hard state), the
/// order raft-rs's `Ready` must be persisted in.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogBatch<'a> {
    pub snapshot: Option<&'a SnapshotMetadata>,
    /// Contiguous; may start at or before the last index (overwrites the suffix from there).
    pub entries: &'a [Entry],
    pub hard_state: Option<&'a HardState>,
}

/// What `Wal::open` read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The latest snapshot marker, if one was ever written.
    pub snapshot: Option<SnapshotMetadata>,
    /// The log after the snapshot marker's index (from index 1 without one).
    pub entries: Vec<Entry>,
}

/// The segment files of one raft log. Single-threaded: `LogWriter` owns it on its thread.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    metrics: Option<WalMetrics>,
    /// Live segments in order; the last one is written to.
    segments: Vec<SegmentFile>,
    file: File,
    /// End of the written part of the current segment.
    written_offset: u64,
    /// Everything before it in the current segment (and all earlier segments) is durable.
    synced_offset: u64,
    preallocated_bytes: u64,
    /// Positions, hard state and snapshot marker of the log as written so far.
    log: LogState<IndexTerm>,
    /// Index of the latest snapshot marker known to be durable; compaction stops there.
    synced_snapshot_index: u64,
    unsafe_no_fsync: bool,
    /// Something appended since the last sync must be durable before its append is
    /// acknowledged: entries, a snapshot marker, or a hard state with a new term or vote.
    /// A hard state that only moves the commit index need not be (as etcd's WAL): a lost
    /// commit index is learned again from the leader, and at start the node raises it to
    /// the state machine's applied index.
    must_sync: bool,
    /// Records encoded but not yet written to the file.
    pending: Vec<u8>,
    /// Bytes written since open, prologues included (for the write-bytes metric).
    bytes_written: u64,
    poisoned: bool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("written_offset", &self.written_offset)
            .field("synced_offset", &self.synced_offset)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the WAL in `config.dir` and replays it. A torn tail of the last
    /// segment is cut; corruption anywhere else is an error.
    pub fn open(config: &WalConfig) -> Result<(Wal, Recovered)> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        segment::remove_tmp_files(&dir)?;
        let segments = segment::list_segments(&dir)?;
        if segments.is_empty() {
            return Self::create(config);
        }

        let first_index = segments[0].first_index;
        // Index 0 is the empty entry before the log, term 0; a later starting point has its
        // term in the snapshot marker that allowed deleting the segments before it.
        let prev_term = (first_index == 1).then_some(0);
        let mut log: LogState<Entry> =
            LogState::starting_after(first_index.saturating_sub(1), prev_term);
        let mut last_scan = None;
        for (i, seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let scan = segment::scan_segment(seg, is_last)?;
            if scan.header.first_index != log.last_index() + 1 {
                return Err(Error::Corrupt {
                    file: seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "segment starts at index {} but the log before it ends at {}",
                        scan.header.first_index,
                        log.last_index()
                    ),
                });
            }
            for (offset, rec) in &scan.records {
                replay(&mut log, rec).map_err(|reason| Error::Corrupt {
                    file: seg.path.clone(),
                    offset: *offset,
                    reason,
                })?;
            }
            if is_last {
                last_scan = Some(scan);
            }
        }
        if log.prev().0 > log.snapshot.index {
            return Err(Error::Corrupt {
                file: segments[0].path.clone(),
                offset: 0,
                reason: format!(
                    "the log starts after index {} but the latest snapshot marker is at {}: segments are missing",
                    log.prev().0,
                    log.snapshot.index
                ),
            });
        }

        let scan = last_scan.expect("at least one segment");
        let current = segments.last().expect("at least one segment");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&current.path)
            .map_err(|e| io_err(&current.path, e))?;
        if let Some(reason) = &scan.torn {
            warn!(file = %current.path.display(), offset = scan.end_offset, %reason, "cutting the torn tail of the WAL");
            // Shrinking then growing zeroes everything after the last good record.
            file.set_len(scan.end_offset)
                .map_err(|e| io_err(&current.path, e))?;
        }
        if scan.torn.is_some() || scan.file_bytes < scan.header.preallocated_bytes {
            file.set_len(scan.header.preallocated_bytes)
                .map_err(|e| io_err(&current.path, e))?;
            file.sync_all().map_err(|e| io_err(&current.path, e))?;
        }
        file.seek(SeekFrom::Start(scan.end_offset))
            .map_err(|e| io_err(&current.path, e))?;

        let recovered = Recovered {
            hard_state: log.hard_state.clone(),
            snapshot: (log.snapshot != SnapshotMetadata::default()).then(|| log.snapshot.clone()),
            entries: log.entries().iter().cloned().collect(),
        };
        debug!(dir = %dir.display(), segments = segments.len(), entries = recovered.entries.len(), "wal recovered");
        let wal = Wal {
            dir,
            segment_bytes: config.segment_bytes,
            metrics: config.metrics.clone(),
            written_offset: scan.end_offset,
            synced_offset: scan.end_offset,
            preallocated_bytes: scan.header.preallocated_bytes,
            synced_snapshot_index: log.snapshot.index,
            unsafe_no_fsync: config.unsafe_no_fsync,
            must_sync: false,
            log: log.map(|e| IndexTerm::from(e)),
            segments,
            file,
            pending: Vec::new(),
            bytes_written: 0,
            poisoned: false,
        };
        Ok((wal, recovered))
    }

    fn create(config: &WalConfig) -> Result<(Wal, Recovered)> {
        let header = SegmentHeader {
            seq: 0,
            first_index: 1,
            preallocated_bytes: config.segment_bytes,
        };
        let mut prologue = Vec::new();
        record::encode_segment_header(&mut prologue, &header);
        let (seg, file) = segment::create_segment(&config.dir, &header, &prologue)?;
        let wal = Wal {
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            metrics: config.metrics.clone(),
            segments: vec![seg],
            file,
            written_offset: prologue.len() as u64,
            synced_offset: prologue.len() as u64,
            preallocated_bytes: header.preallocated_bytes,
            log: LogState::default(),
            synced_snapshot_index: 0,
            unsafe_no_fsync: config.unsafe_no_fsync,
            must_sync: false,
            pending: Vec::new(),
            bytes_written: 0,
            poisoned: false,
        };
        Ok((wal, Recovered::default()))
    }

    /// Writes `batch` (to the page cache; `sync` makes it durable). Returns the bytes written.
    pub fn append(&mut self, batch: &LogBatch<'_>) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        fail_point!("wal::before_append", |_| Err(
            self.injected("wal::before_append")
        ));
        self.log.check_batch(batch.snapshot, batch.entries)?;
        let entry_bytes_max = record::RECORD_PAYLOAD_BYTES_MAX - 4;
        if let Some(e) = batch
            .entries
            .iter()
            .find(|e| record::entry_encoded_bytes(e) > entry_bytes_max)
        {
            return Err(Error::EntryTooLarge {
                index: e.index,
                bytes: record::entry_encoded_bytes(e),
                max_bytes: entry_bytes_max,
            });
        }

        let before = self.bytes_written;
        let result = self.append_records(batch);
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        fail_point!("wal::after_append", |_| Err(
            self.injected("wal::after_append")
        ));
        Ok(self.bytes_written - before)
    }

    fn append_records(&mut self, batch: &LogBatch<'_>) -> Result<()> {
        if batch.snapshot.is_some() || !batch.entries.is_empty() {
            self.must_sync = true;
        }
        if let Some(meta) = batch.snapshot {
            let start = self.pending.len();
            record::encode_snapshot(&mut self.pending, meta);
            self.place_last_record(start)?;
            self.log.apply_snapshot(meta);
        }
        // Small segments (tests) get small records so a batch can spread over several.
        let target = record::ENTRIES_RECORD_BYTES_TARGET.min(self.segment_bytes as usize / 4);
        let mut rest = batch.entries;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 4;
            while n < rest.len()
                && (n == 0 || bytes + record::entry_encoded_bytes(&rest[n]) <= target)
            {
                bytes += record::entry_encoded_bytes(&rest[n]);
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            let start = self.pending.len();
            record::encode_entries(&mut self.pending, chunk);
            self.place_last_record(start)?;
            self.log
                .append(chunk.iter().map(IndexTerm::from), chunk[0].index)?;
            rest = tail;
        }
        if let Some(hs) = batch.hard_state {
            let old = &self.log.hard_state;
            if hs.term != old.term || hs.vote != old.vote {
                self.must_sync = true;
            }
            let start = self.pending.len();
            record::encode_hard_state(&mut self.pending, hs);
            self.place_last_record(start)?;
            self.log.set_hard_state(hs.clone());
        }
        self.flush()
    }

    /// Makes sure the record just encoded at `pending[start..]` fits in the current segment,
    /// rolling to a new one first if not. `self.log` must not include the record yet: the
    /// new segment's first index is the one after the log before it.
    fn place_last_record(&mut self, start: usize) -> Result<()> {
        let end = self.written_offset + self.pending.len() as u64;
        if end <= self.preallocated_bytes {
            return Ok(());
        }
        let rec = self.pending.split_off(start);
        self.flush()?;
        self.roll(rec.len() as u64)?;
        self.pending = rec;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = &self.segments.last().expect("a current segment").path;
        self.file
            .write_all(&self.pending)
            .map_err(|e| io_err(path, e))?;
        self.written_offset += self.pending.len() as u64;
        self.bytes_written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Starts the next segment. The current one is synced first, so after a roll unsynced
    /// data can only be in the last segment, the one recovery may cut.
    fn roll(&mut self, record_bytes: u64) -> Result<()> {
        self.sync_current()?;
        let current = self.segments.last().expect("a current segment");
        let mut prologue = Vec::new();
        let mut header = SegmentHeader {
            seq: current.seq + 1,
            first_index: self.log.last_index() + 1,
            preallocated_bytes: 0,
        };
        // Header first with a placeholder size: its encoded length does not depend on it.
        record::encode_segment_header(&mut prologue, &header);
        let header_bytes = prologue.len();
        if self.log.snapshot != SnapshotMetadata::default() {
            record::encode_snapshot(&mut prologue, &self.log.snapshot);
        }
        if self.log.hard_state != HardState::default() {
            record::encode_hard_state(&mut prologue, &self.log.hard_state);
        }
        header.preallocated_bytes = self.segment_bytes.max(prologue.len() as u64 + record_bytes);
        let mut encoded_header = Vec::with_capacity(header_bytes);
        record::encode_segment_header(&mut encoded_header, &header);
        prologue[..header_bytes].copy_from_slice(&encoded_header);

        let (seg, file) = segment::create_segment(&self.dir, &header, &prologue)?;
        debug!(file = %seg.path.display(), first_index = header.first_index, "wal rolled to a new segment");
        self.segments.push(seg);
        self.file = file;
        self.written_offset = prologue.len() as u64;
        self.synced_offset = self.written_offset;
        self.bytes_written += prologue.len() as u64;
        self.preallocated_bytes = header.preallocated_bytes;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync of the current segment; earlier
    /// segments were synced when rolled).
    pub fn sync(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let result = self.sync_current();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn sync_current(&mut self) -> Result<()> {
        fail_point!("wal::before_fsync", |_| Err(
            self.injected("wal::before_fsync")
        ));
        if self.has_unsynced() {
            if !self.unsafe_no_fsync {
                let path = &self.segments.last().expect("a current segment").path;
                self.file.sync_data().map_err(|e| io_err(path, e))?;
            }
            self.synced_offset = self.written_offset;
        }
        self.must_sync = false;
        self.synced_snapshot_index = self.log.snapshot.index;
        fail_point!("wal::after_fsync", |_| Err(
            self.injected("wal::after_fsync")
        ));
        Ok(())
    }

    /// Deletes whole segments whose entries are all at or before `index` and before the
    /// latest durable snapshot marker (syncing first, so the marker is durable). The current
    /// segment is never deleted. Returns how many segments were deleted.
    pub fn compact(&mut self, index: u64) -> Result<usize> {
        self.sync()?;
        let limit = index.min(self.synced_snapshot_index);
        // Every entry still in the log when segment k was started is below its first index,
        // and k's prologue (or a later record) has a marker covering them; so recovery can
        // start at k.
        let Some(k) = self
            .segments
            .iter()
            .rposition(|s| s.first_index - 1 <= limit)
        else {
            return Ok(0);
        };
        for _ in 0..k {
            // Oldest first: a crash part way leaves a suffix of segments, still readable.
            let path = self.segments[0].path.clone();
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(file = %path.display(), "wal segment deleted by compaction"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
            self.segments.remove(0);
        }
        if k > 0 {
            segment::sync_dir(&self.dir)?;
        }
        Ok(k)
    }

    /// The current segment and the offset up to which it is durable. For fault-injection
    /// tests (what a crash may lose) and diagnostics.
    pub fn synced_position(&self) -> (&Path, u64) {
        (
            &self.segments.last().expect("a current segment").path,
            self.synced_offset,
        )
    }

    /// The current segment and the end of its written part.
    pub fn written_position(&self) -> (&Path, u64) {
        (
            &self.segments.last().expect("a current segment").path,
            self.written_offset,
        )
    }

    /// Paths of the live segments, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// Whether something appended since the last sync must be synced before it is
    /// acknowledged (see `must_sync`); `has_unsynced` may be true while this is false.
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }

    /// Whether anything was appended since the last sync.
    pub fn has_unsynced(&self) -> bool {
        self.synced_offset != self.written_offset
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn metrics(&self) -> Option<&WalMetrics> {
        self.metrics.as_ref()
    }

    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    fn injected(&mut self, failpoint: &str) -> Error {
        self.poisoned = true;
        io_err(
            &self.dir,
            std::io::Error::other(format!("injected by failpoint {failpoint}")),
        )
    }
}

/// Applies one recovered record to the log being rebuilt.
fn replay(log: &mut LogState<Entry>, rec: &Record) -> Result<(), String> {
    match rec {
        Record::SegmentHeader(_) => unreachable!("scan_segment returns headers separately"),
        Record::Entries(entries) => log
            .append(entries.iter().cloned(), entries[0].index)
            .map_err(|e| e.to_string()),
        Record::HardState(hs) => {
            log.set_hard_state(hs.clone());
            Ok(())
        }
        Record::Snapshot(meta) => {
            log.apply_snapshot(meta);
            Ok(())
        }
    }
}
