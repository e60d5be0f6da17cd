//! Disk faults on a killed member's WAL: cut the tail of its newest segment, or flip one
//! bit near the end of what it wrote.
//!
//! Both skiff and etcd keep WAL segments in `<data-dir>/member/wal/*.wal`, named so that the
//! newest sorts last. etcd preallocates a segment (64 MiB of zeros), so "the tail" is the
//! end of the *written* part: the last non-zero byte, not the end of the file.
//!
//! The expected outcomes, which the nemesis records: the member refuses to start with a
//! corruption error naming the file, or it finds a torn last record and cuts it; either
//! way no acknowledged write may be lost (the other members hold every committed entry,
//! and the workload's checker judges that).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};

/// How far back from the end of the written data a fault reaches.
pub const TAIL_BYTES_MAX: usize = 512;

/// The WAL directory of a member's data dir.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("wal")
}

/// The newest `*.wal` segment, if any.
pub fn newest_segment(wal_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .with_context(|| format!("listing {}", wal_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    Ok(segments.pop())
}

/// The state-machine file a `disk-state` fault corrupts: etcd's bbolt `member/snap/db`,
/// else skiff's newest RocksDB table (`member/kv/*.sst`), else its newest MANIFEST.
pub fn state_file(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let bolt = data_dir.join("member").join("snap").join("db");
    if bolt.is_file() {
        return Ok(Some(bolt));
    }
    let kv = data_dir.join("member").join("kv");
    let Ok(entries) = std::fs::read_dir(&kv) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let newest = |pred: &dyn Fn(&str) -> bool| {
        files
            .iter()
            .rev()
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(pred))
            .cloned()
    };
    Ok(newest(&|n| n.ends_with(".sst")).or_else(|| newest(&|n| n.starts_with("MANIFEST-"))))
}

/// The raft snapshot files of a member, oldest first: `member/snap/*.snap` for skiff (a
/// snapshot received from the leader, kept until the next is installed) and for etcd (its
/// periodic raft snapshots), and etcd's received databases `member/snap/*.snap.db`.
pub fn snapshot_files(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("member").join("snap");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".snap") || n.ends_with(".snap.db"))
        })
        .collect();
    files.sort();
    files
}

/// One past the last non-zero byte: where the written data ends.
pub fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// What was done to a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The file now ends `cut_bytes` before where its data ended.
    Truncated { cut_bytes: usize, new_len: usize },
    /// Bit `bit` of the byte at `offset` was flipped.
    BitFlip { offset: usize, bit: u8 },
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Truncated { cut_bytes, new_len } => {
                write!(
                    f,
                    "cut the last {cut_bytes} written bytes (file now {new_len} bytes)"
                )
            }
            Corruption::BitFlip { offset, bit } => {
                write!(f, "flipped bit {bit} of the byte at offset {offset}")
            }
        }
    }
}

/// Cuts the segment `back` bytes before the end of its data (at least one byte stays).
pub fn truncate_tail(path: &Path, back: usize) -> anyhow::Result<Corruption> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let end = data_end(&bytes);
    ensure!(end > 1, "{} holds no data", path.display());
    let cut_bytes = back.clamp(1, end - 1);
    let new_len = end - cut_bytes;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.set_len(new_len as u64)?;
    file.sync_all()?;
    Ok(Corruption::Truncated { cut_bytes, new_len })
}

/// Flips bit `bit` of the byte `back` bytes before the end of the segment's data.
pub fn flip_bit(path: &Path, back: usize, bit: u8) -> anyhow::Result<Corruption> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let end = data_end(&bytes);
    ensure!(end > 0, "{} holds no data", path.display());
    let offset = end - 1 - back.min(end - 1);
    let bit = bit % 8;
    bytes[offset] ^= 1 << bit;
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(Corruption::BitFlip { offset, bit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_segment_sorts_last_and_data_ends_before_preallocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "0000000000000000-0000000000000000.wal",
            "0000000000000001-0000000000000010.wal",
            "0.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let newest = newest_segment(dir.path()).unwrap().unwrap();
        assert!(newest.ends_with("0000000000000001-0000000000000010.wal"));
        assert_eq!(data_end(&[1, 2, 3, 0, 0, 0]), 3);
        assert_eq!(data_end(&[0, 0]), 0);
    }

    #[test]
    fn snapshot_files_are_the_snap_and_snap_db_files_oldest_first() {
        let data = tempfile::tempdir().unwrap();
        let snap = data.path().join("member").join("snap");
        std::fs::create_dir_all(snap.join("outgoing")).unwrap();
        for name in ["0000000000000002-0000000000000001.snap", "0000000000000001-0000000000000001.snap", "000000000000000a.snap.db", "db", "x.snap.tmp"] {
            std::fs::write(snap.join(name), b"x").unwrap();
        }
        let names: Vec<String> = snapshot_files(data.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "0000000000000001-0000000000000001.snap",
                "0000000000000002-0000000000000001.snap",
                "000000000000000a.snap.db"
            ]
        );
        assert!(snapshot_files(&data.path().join("none")).is_empty());
    }

    #[test]
    fn truncation_cuts_written_data_and_bit_flips_change_one_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.wal");
        let mut content = vec![7u8; 100];
        content.extend(vec![0u8; 1000]);
        std::fs::write(&path, &content).unwrap();
        assert_eq!(
            truncate_tail(&path, 10).unwrap(),
            Corruption::Truncated {
                cut_bytes: 10,
                new_len: 90
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 90]);
        assert_eq!(
            flip_bit(&path, 0, 1).unwrap(),
            Corruption::BitFlip { offset: 89, bit: 1 }
        );
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after[89], 7 ^ 2);
        assert_eq!(&after[..89], &vec![7u8; 89][..]);
        std::fs::write(&path, vec![0u8; 10]).unwrap();
        assert!(
            truncate_tail(&path, 3).is_err(),
            "an empty segment is refused"
        );
    }
}
