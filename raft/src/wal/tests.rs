//! Unit tests of the `Wal`: rolling, recovery, truncation semantics, torn tails, corruption
//! and compaction. The writer and the storage are tested in `tests/it`.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use raft::eraftpb::{Entry, HardState, SnapshotMetadata};

use super::*;

fn entry(index: u64, term: u64, data_bytes: usize) -> Entry {
    Entry {
        index,
        term,
        data: vec![(index % 251) as u8; data_bytes].into(),
        ..Default::default()
    }
}

fn entries(first: u64, last: u64, term: u64, data_bytes: usize) -> Vec<Entry> {
    (first..=last).map(|i| entry(i, term, data_bytes)).collect()
}

fn small_config(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES_MIN,
        ..WalConfig::new(dir)
    }
}

fn must_open(config: &WalConfig) -> (Wal, Recovered) {
    Wal::open(config).unwrap_or_else(|e| panic!("open failed: {e}"))
}

fn must_append(wal: &mut Wal, ents: &[Entry]) {
    wal.append(&LogBatch {
        entries: ents,
        ..Default::default()
    })
    .unwrap();
}

fn indexes_terms(ents: &[Entry]) -> Vec<(u64, u64)> {
    ents.iter().map(|e| (e.index, e.term)).collect()
}

fn marker(index: u64, term: u64) -> SnapshotMetadata {
    let mut m = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    m.mut_conf_state().voters = vec![1];
    m
}

fn read_at(path: &Path, offset: u64, n: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; n];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn fresh_wal_recovers_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rec) = must_open(&WalConfig::new(dir.path()));
    assert_eq!(rec, Recovered::default());
    assert_eq!(wal.segment_paths().len(), 1);
    let name = wal.segment_paths()[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(name, "0000000000000000-0000000000000001.wal");
    assert_eq!(
        std::fs::metadata(&wal.segment_paths()[0]).unwrap().len(),
        SEGMENT_BYTES_MAX
    );
}

#[test]
fn entries_hard_state_and_marker_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 7,
        ..Default::default()
    };
    {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 5, 1, 10));
        wal.append(&LogBatch {
            entries: &entries(6, 9, 2, 10),
            hard_state: Some(&hs),
            ..Default::default()
        })
        .unwrap();
        wal.append(&LogBatch {
            snapshot: Some(&marker(4, 1)),
            ..Default::default()
        })
        .unwrap();
        wal.sync().unwrap();
    }
    let (wal, rec) = must_open(&config);
    assert_eq!(rec.hard_state, hs);
    assert_eq!(rec.snapshot, Some(marker(4, 1)));
    assert_eq!(
        rec.entries,
        [entries(5, 5, 1, 10), entries(6, 9, 2, 10)].concat()
    );
    assert_eq!(wal.last_index(), 9);
}

#[test]
fn later_entries_overwrite_the_conflicting_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 10, 1, 4));
        must_append(&mut wal, &entries(6, 7, 2, 4));
        must_append(&mut wal, &entries(8, 8, 3, 4));
        must_append(&mut wal, &entries(3, 3, 4, 4));
        wal.sync().unwrap();
    }
    let (_, rec) = must_open(&config);
    assert_eq!(indexes_terms(&rec.entries), vec![(1, 1), (2, 1), (3, 4)]);
}

#[test]
fn a_gap_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = must_open(&WalConfig::new(dir.path()));
    must_append(&mut wal, &entries(1, 2, 1, 4));
    let written = wal.written_position().1;
    let err = wal
        .append(&LogBatch {
            entries: &entries(4, 4, 1, 4),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidAppend(_)), "{err}");
    assert_eq!(wal.written_position().1, written);
    assert!(!wal.is_poisoned());
}

#[test]
fn segments_roll_and_recover_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 3,
        ..Default::default()
    };
    {
        let (mut wal, _) = must_open(&config);
        wal.append(&LogBatch {
            snapshot: Some(&marker(0, 0)),
            hard_state: Some(&hs),
            ..Default::default()
        })
        .unwrap();
        for i in 1..=60 {
            must_append(&mut wal, &[entry(i, 1, 200)]);
        }
        // One batch bigger than a segment spreads over several.
        must_append(&mut wal, &entries(61, 100, 1, 200));
        // An entry bigger than a whole segment gets a segment of its own.
        must_append(&mut wal, &[entry(101, 1, 3 * SEGMENT_BYTES_MIN as usize)]);
        wal.sync().unwrap();
        assert!(
            wal.segment_paths().len() > 5,
            "{} segments",
            wal.segment_paths().len()
        );
    }
    let (wal, rec) = must_open(&config);
    assert_eq!(rec.entries.len(), 101);
    assert_eq!(
        rec.entries,
        [
            entries(1, 100, 1, 200),
            vec![entry(101, 1, 3 * SEGMENT_BYTES_MIN as usize)]
        ]
        .concat()
    );
    assert_eq!(rec.hard_state, hs);
    assert_eq!(rec.snapshot, Some(marker(0, 0)));
    // Names carry consecutive sequence numbers and the first index each may hold.
    let names: Vec<String> = wal
        .segment_paths()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for (seq, name) in names.iter().enumerate() {
        assert!(name.starts_with(&format!("{seq:016x}-")), "{name}");
    }
    let firsts: Vec<u64> = names
        .iter()
        .map(|n| u64::from_str_radix(&n[17..33], 16).unwrap())
        .collect();
    assert_eq!(firsts[0], 1);
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    assert_eq!(
        *firsts.last().unwrap(),
        101,
        "the big entry starts its own segment"
    );
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    for garbage in [
        &b"\x30\x00\x00\x00\xde\xad"[..],
        &[7u8; 3][..],
        &[0x55; 40][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig::new(dir.path());
        let (path, good_end) = {
            let (mut wal, _) = must_open(&config);
            must_append(&mut wal, &entries(1, 3, 1, 8));
            wal.sync().unwrap();
            let (path, end) = wal.written_position();
            (path.to_path_buf(), end)
        };
        // A record the crash interrupted: garbage, then the preallocated zeros.
        write_at(&path, good_end, garbage);
        let (mut wal, rec) = must_open(&config);
        assert_eq!(indexes_terms(&rec.entries), vec![(1, 1), (2, 1), (3, 1)]);
        assert_eq!(wal.written_position().1, good_end);
        assert_eq!(
            read_at(&path, good_end, garbage.len()),
            vec![0; garbage.len()],
            "tail zeroed"
        );
        must_append(&mut wal, &entries(4, 4, 1, 8));
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = must_open(&config);
        assert_eq!(rec.entries.len(), 4);
    }
}

#[test]
fn torn_tail_of_a_short_file_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, keep, end) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 2, 1, 8));
        let keep = wal.written_position().1;
        must_append(&mut wal, &entries(3, 3, 1, 100));
        wal.sync().unwrap();
        let (path, end) = wal.written_position();
        (path.to_path_buf(), keep, end)
    };
    // The file lost its size and the second half of the last record.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len((keep + end) / 2)
        .unwrap();
    let (wal, rec) = must_open(&config);
    assert_eq!(rec.entries.len(), 2);
    assert_eq!(wal.written_position().1, keep);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        SEGMENT_BYTES_MAX,
        "preallocated again"
    );
}

#[test]
fn bad_crc_in_the_middle_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, second) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 1, 1, 8));
        let second = wal.written_position().1;
        must_append(&mut wal, &entries(2, 2, 1, 8));
        must_append(&mut wal, &entries(3, 3, 1, 8));
        wal.sync().unwrap();
        (wal.written_position().0.to_path_buf(), second)
    };
    let byte = read_at(&path, second + 12, 1)[0];
    write_at(&path, second + 12, &[byte ^ 0x01]);
    match Wal::open(&config) {
        Err(Error::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (path.clone(), second));
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Nothing was cut: the error stays until someone repairs the file.
    assert!(matches!(Wal::open(&config), Err(Error::Corrupt { .. })));
}

#[test]
fn bad_last_record_of_a_non_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let (first_segment, last_record) = {
        let (mut wal, _) = must_open(&config);
        let mut last_record = 0;
        let mut i = 1;
        while wal.segment_paths().len() == 1 {
            last_record = wal.written_position().1;
            must_append(&mut wal, &[entry(i, 1, 300)]);
            i += 1;
        }
        wal.sync().unwrap();
        (wal.segment_paths()[0].clone(), last_record)
    };
    // The record before the roll (the roll happened during the append that rolled, so the
    // previous one is the last record of segment 0).
    let byte = read_at(&first_segment, last_record - 5, 1)[0];
    write_at(&first_segment, last_record - 5, &[byte ^ 0x80]);
    match Wal::open(&config) {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, first_segment),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn garbage_length_with_records_after_it_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, second) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 1, 1, 8));
        let second = wal.written_position().1;
        must_append(&mut wal, &entries(2, 20, 1, 500));
        wal.sync().unwrap();
        (wal.written_position().0.to_path_buf(), second)
    };
    // The length's top byte flips: the record now claims more than the segment holds.
    write_at(&path, second + 3, &[0x7f]);
    assert!(matches!(Wal::open(&config), Err(Error::Corrupt { offset, .. }) if offset == second));
}

#[test]
fn zeroed_record_followed_by_data_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, second) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 1, 1, 8));
        let second = wal.written_position().1;
        must_append(&mut wal, &entries(2, 2, 1, 8));
        must_append(&mut wal, &entries(3, 3, 1, 8));
        wal.sync().unwrap();
        (wal.written_position().0.to_path_buf(), second)
    };
    write_at(&path, second, &[0; 9]);
    assert!(matches!(Wal::open(&config), Err(Error::Corrupt { offset, .. }) if offset == second));
}

#[test]
fn a_missing_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let paths = {
        let (mut wal, _) = must_open(&config);
        for i in 1..=40 {
            must_append(&mut wal, &[entry(i, 1, 300)]);
        }
        wal.sync().unwrap();
        wal.segment_paths()
    };
    assert!(paths.len() >= 3);
    std::fs::remove_file(&paths[1]).unwrap();
    assert!(matches!(Wal::open(&config), Err(Error::Corrupt { .. })));
}

#[test]
fn compaction_deletes_old_segments_and_recovery_starts_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 80,
        ..Default::default()
    };
    {
        let (mut wal, _) = must_open(&config);
        for i in 1..=80 {
            must_append(&mut wal, &[entry(i, 1, 300)]);
        }
        wal.append(&LogBatch {
            hard_state: Some(&hs),
            ..Default::default()
        })
        .unwrap();
        let before = wal.segment_paths().len();
        // Without a snapshot marker nothing may go: the entries are the only copy.
        assert_eq!(wal.compact(80).unwrap(), 0);
        wal.append(&LogBatch {
            snapshot: Some(&marker(50, 1)),
            ..Default::default()
        })
        .unwrap();
        let deleted = wal.compact(50).unwrap();
        assert!(deleted > 0 && deleted < before, "{deleted} of {before}");
        assert_eq!(wal.segment_paths().len(), before - deleted);
        // A later, higher compaction point deletes no segment that holds entries after 50.
        for p in wal.segment_paths().iter().skip(1) {
            let first =
                u64::from_str_radix(&p.file_name().unwrap().to_str().unwrap()[17..33], 16).unwrap();
            assert!(first > 50 || p == wal.segment_paths().last().unwrap());
        }
    }
    let (_, rec) = must_open(&config);
    assert_eq!(rec.snapshot, Some(marker(50, 1)));
    assert_eq!(rec.hard_state, hs);
    assert_eq!(
        indexes_terms(&rec.entries),
        (51..=80).map(|i| (i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn diverging_snapshot_marker_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 5, 1, 4));
        // A leader's snapshot at 8 (term 3): this member's log is replaced, then continues.
        wal.append(&LogBatch {
            snapshot: Some(&marker(8, 3)),
            entries: &entries(9, 10, 3, 4),
            ..Default::default()
        })
        .unwrap();
        wal.sync().unwrap();
    }
    let (_, rec) = must_open(&config);
    assert_eq!(indexes_terms(&rec.entries), vec![(9, 3), (10, 3)]);
    assert_eq!(rec.hard_state.commit, 8);
}

#[test]
fn leftover_tmp_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    drop(must_open(&config));
    let tmp = dir.path().join("0000000000000001-0000000000000001.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    let (wal, _) = must_open(&config);
    assert!(!tmp.exists());
    assert_eq!(wal.segment_paths().len(), 1);
}

#[test]
fn only_entries_markers_and_new_terms_or_votes_must_be_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = must_open(&WalConfig::new(dir.path()));
    assert!(!wal.must_sync());
    must_append(&mut wal, &entries(1, 3, 1, 10));
    assert!(wal.must_sync(), "entries");
    wal.sync().unwrap();
    assert!(!wal.must_sync());

    let hs = |term, vote, commit| HardState {
        term,
        vote,
        commit,
        ..Default::default()
    };
    let append_hs = |wal: &mut Wal, h: HardState| {
        wal.append(&LogBatch {
            hard_state: Some(&h),
            ..Default::default()
        })
        .unwrap();
    };
    append_hs(&mut wal, hs(1, 1, 0));
    assert!(wal.must_sync(), "a new term and vote");
    wal.sync().unwrap();
    append_hs(&mut wal, hs(1, 1, 2));
    assert!(!wal.must_sync(), "only the commit index moved");
    assert!(wal.has_unsynced(), "but it was written");
    append_hs(&mut wal, hs(1, 1, 3));
    assert!(!wal.must_sync());
    append_hs(&mut wal, hs(2, 0, 3));
    assert!(wal.must_sync(), "a new term");
    wal.sync().unwrap();
    append_hs(&mut wal, hs(2, 2, 3));
    assert!(wal.must_sync(), "a vote in the same term");
    wal.sync().unwrap();
    wal.append(&LogBatch {
        snapshot: Some(&marker(2, 1)),
        ..Default::default()
    })
    .unwrap();
    assert!(wal.must_sync(), "a snapshot marker");
}

/// A bit flipped in the last record, fully written and fsynced, is corruption — not a torn
/// tail to cut (that would silently drop an acknowledged entry).
#[test]
fn a_bit_flip_in_the_last_written_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, last, end) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 2, 1, 40));
        let last = wal.written_position().1;
        must_append(&mut wal, &entries(3, 3, 1, 40));
        wal.sync().unwrap();
        let (path, end) = wal.written_position();
        (path.to_path_buf(), last, end)
    };
    // Flip one bit in the payload of the last record.
    let at = (last + end) / 2;
    let byte = read_at(&path, at, 1)[0];
    write_at(&path, at, &[byte ^ 0x10]);
    match Wal::open(&config) {
        Err(Error::Corrupt { file, offset, reason }) => {
            assert_eq!(file, path);
            assert_eq!(offset, last);
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
    }
}

/// A flipped length field turns a record's length into garbage; the good records after it
/// must not be cut as if they were the garbage of a torn write.
#[test]
fn a_garbage_length_followed_by_good_records_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let (path, victim) = {
        let (mut wal, _) = must_open(&config);
        must_append(&mut wal, &entries(1, 2, 1, 8));
        let victim = wal.written_position().1;
        for i in 3..=6 {
            must_append(&mut wal, &entries(i, i, 1, 8));
        }
        wal.sync().unwrap();
        (wal.written_position().0.to_path_buf(), victim)
    };
    // The top byte of the little-endian length: far over any limit.
    write_at(&path, victim + 3, &[0xff]);
    match Wal::open(&config) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, victim),
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
    }
}
