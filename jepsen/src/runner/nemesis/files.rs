//! File faults on a killed member: its newest WAL segment (`disk`), its state-machine
//! file (`disk-state`), its snapshot files at rest and the next snapshot streamed to it
//! (`snapshot`). Each restarts the member and records what it did.

use std::path::PathBuf;
use std::time::Duration;

use rand::seq::IndexedRandom as _;
use rand::Rng as _;
use tokio::sync::watch;

use super::{Active, FaultWindow, Nemesis};
use crate::runner::cli::FaultKind;
use crate::runner::disk_fault;

/// How long after a restart on a corrupted WAL the nemesis looks whether the member stayed up.
const DISK_RESTART_GRACE: Duration = Duration::from_secs(2);
/// How long the snapshot fault watches a restarted member for what it did with its
/// corrupted snapshot (refused the stream, installed the next one, refused to start).
const SNAPSHOT_WATCH_TIMEOUT: Duration = Duration::from_secs(8);
/// Lines of a member's log the disk and snapshot faults read.
const LOG_TAIL_LINES: usize = 300;

impl Nemesis {
    /// Kills a member, truncates or bit-flips the tail of its newest WAL segment (a copy is
    /// kept) and restarts it; if it does not stay up, records why and restarts it on the
    /// original segment.
    /// With `state`, a bit anywhere in the state-machine file instead (see
    /// [`disk_fault::state_file`]).
    pub(super) async fn start_disk(&mut self, stop: &mut watch::Receiver<bool>, state: bool) -> (Active, FaultWindow) {
        let kind = if state { FaultKind::DiskState } else { FaultKind::Disk };
        let anywhere: u64 = self.rng.random();
        let (member, how) = self.one_target().await;
        let back = self.rng.random_range(1..=disk_fault::TAIL_BYTES_MAX);
        let truncate = self.rng.random_bool(0.5);
        let bit: u8 = self.rng.random_range(0..8);
        let start = self.window(kind, Vec::new(), String::new());
        let (name, segment, backup, corrupted) = {
            let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
            let name = cluster.name(member).to_owned();
            let killed = cluster.kill(member);
            let dir = cluster.members()[member].dir.clone();
            let data = cluster.members()[member].data_dir();
            let corrupt = || -> anyhow::Result<(PathBuf, PathBuf, disk_fault::Corruption)> {
                killed?;
                let segment = if state {
                    disk_fault::state_file(&data)?.ok_or_else(|| anyhow::anyhow!("no state-machine file"))?
                } else {
                    disk_fault::newest_segment(&disk_fault::wal_dir(&data))?
                        .ok_or_else(|| anyhow::anyhow!("no WAL segment"))?
                };
                let backup = dir.join("file-before-disk-fault");
                std::fs::copy(&segment, &backup)?;
                let done = if state {
                    // Anywhere in the written data, not only near its end.
                    let len = disk_fault::data_end(&std::fs::read(&segment)?).max(1);
                    disk_fault::flip_bit(&segment, (anywhere % len as u64) as usize, bit)?
                } else if truncate {
                    disk_fault::truncate_tail(&segment, back)?
                } else {
                    disk_fault::flip_bit(&segment, back, bit)?
                };
                Ok((segment, backup, done))
            };
            let result = corrupt();
            let spawned = cluster.spawn(member);
            match (result, spawned) {
                (Ok((segment, backup, done)), Ok(())) => (name, segment, backup, Ok(done)),
                (Err(e), _) | (_, Err(e)) => (name, PathBuf::new(), PathBuf::new(), Err(e)),
            }
        };
        let done = match corrupted {
            Ok(done) => done,
            Err(e) => {
                let detail = format!("{how}: no disk fault: {e:#}");
                return (
                    Active::Nothing,
                    FaultWindow {
                        targets: vec![name],
                        detail,
                        ..start
                    },
                );
            }
        };
        let file = segment
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(DISK_RESTART_GRACE) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
        let log = cluster.log_tail(member, LOG_TAIL_LINES);
        let mentions: Vec<&str> = log
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                l.contains("corrupt")
                    || l.contains("torn")
                    || l.contains("crc")
                    || l.contains("checksum")
                    || l.contains("unexpected eof")
            })
            .collect();
        let said = mentions
            .last()
            .map(|l| l.chars().take(300).collect::<String>())
            .unwrap_or_else(|| "nothing about corruption in its log".into());
        let outcome = if cluster.is_running(member) {
            format!("started and stayed up; its log: {said}")
        } else {
            let restored = std::fs::copy(&backup, &segment)
                .map_err(anyhow::Error::from)
                .and_then(|_| cluster.spawn(member));
            format!(
                "REFUSED to start; its log: {said}; {}",
                match restored {
                    Ok(()) => "restarted on the original file".to_owned(),
                    Err(e) => format!("could not restore: {e:#}"),
                }
            )
        };
        drop(cluster);
        let detail = format!("{how}: {file}: {done}; {outcome}");
        (
            Active::Nothing,
            FaultWindow {
                targets: vec![name],
                detail,
                ..start
            },
        )
    }

    /// Kills a follower so that the leader's log compaction leaves it behind; when the fault
    /// heals, [`Nemesis::corrupt_snapshots_and_restart`] brings it back.
    pub(super) async fn start_snapshot(&mut self) -> (Active, FaultWindow) {
        let leader = self.admin.leader().await;
        let followers: Vec<usize> = self.present().into_iter().filter(|&m| Some(m) != leader).collect();
        let member = *followers.choose(&mut self.rng).expect("a cluster has followers");
        let name = self.name(member);
        let killed = self.cluster.lock().expect("cluster lock poisoned").kill(member);
        let mut detail = format!("{name} (a follower) killed, to fall behind the leader's compacted log");
        if let Err(e) = killed {
            detail += &format!("; kill error: {e:#}");
        }
        (
            Active::Behind(member),
            self.window(FaultKind::Snapshot, vec![name], detail),
        )
    }

    /// Corrupts member `member`'s newest snapshot file (bit flip or truncation; a copy is
    /// kept), arms the corruption of the next snapshot streamed to it (proxy only),
    /// restarts it and watches its log: whether it refused the corrupted stream and
    /// installed the snapshot sent again, or refused to start (then it is restarted on
    /// the original file). Returns what happened, for the window's detail.
    pub(super) async fn corrupt_snapshots_and_restart(&mut self, member: usize) -> String {
        let truncate = self.rng.random_bool(0.5);
        let anywhere: u64 = self.rng.random();
        let bit: u8 = self.rng.random_range(0..8);
        let mut notes = Vec::new();
        let (restore, log_from, armed) = {
            let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
            let data = cluster.members()[member].data_dir();
            let backup = cluster.members()[member].dir.join("snapshot-before-fault");
            let mut restore = None;
            match disk_fault::snapshot_files(&data).pop() {
                None => notes.push("no snapshot file at rest to corrupt".to_owned()),
                Some(file) => {
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let corrupted = std::fs::copy(&file, &backup).map_err(anyhow::Error::from).and_then(|_| {
                        let len = disk_fault::data_end(&std::fs::read(&file)?).max(1);
                        let back = (anywhere % len as u64) as usize;
                        if truncate {
                            disk_fault::truncate_tail(&file, back.max(1))
                        } else {
                            disk_fault::flip_bit(&file, back, bit)
                        }
                    });
                    match corrupted {
                        Ok(done) => {
                            notes.push(format!("at rest: {name}: {done}"));
                            restore = Some((backup, file));
                        }
                        Err(e) => notes.push(format!("at rest: {name}: not corrupted: {e:#}")),
                    }
                }
            }
            let armed = cluster.arm_snapshot_corruption(member, true);
            if !armed {
                notes.push("in flight: not in --net netns (nftables cannot rewrite payloads)".to_owned());
            }
            let log_from = cluster.log_len(member);
            if let Err(e) = cluster.spawn(member) {
                notes.push(format!("restart error: {e:#}"));
            }
            (restore, log_from, armed)
        };
        // Watch: the stream refused (and sent again) or the member refusing to start.
        let deadline = std::time::Instant::now() + SNAPSHOT_WATCH_TIMEOUT;
        let (log, running, pending) = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
            let log = cluster.log_since(member, log_from);
            let running = cluster.is_running(member);
            let pending = armed && cluster.snapshot_corruption_pending(member);
            let installed = log.lines().any(is_install_line);
            let settled = !running || (!pending && installed) || (!armed && installed);
            if settled || std::time::Instant::now() > deadline {
                if pending {
                    cluster.arm_snapshot_corruption(member, false);
                }
                break (log, running, pending);
            }
        };
        let refused: Vec<&str> = log.lines().filter(|l| is_refusal_line(l)).collect();
        if armed {
            notes.push(if pending {
                "in flight: no snapshot was streamed to it (it caught up from the log)".to_owned()
            } else if let Some(line) = refused.first() {
                format!(
                    "in flight: one bit of the snapshot streamed to it flipped; it refused the stream: {}",
                    clip(line)
                )
            } else {
                "in flight: one bit of a snapshot streamed to it flipped; NOTHING in its log says it refused it".to_owned()
            });
        }
        if !running {
            let said = log
                .lines()
                .rev()
                .find(|l| mentions_corruption(l))
                .map(clip)
                .unwrap_or_else(|| "nothing about corruption in its log".into());
            let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
            let restored = match &restore {
                Some((backup, file)) => std::fs::copy(backup, file).map(drop).map_err(anyhow::Error::from),
                None => Ok(()),
            }
            .and_then(|()| cluster.spawn(member));
            notes.push(format!(
                "REFUSED to start; its log: {said}; {}",
                match restored {
                    Ok(()) => "restarted on the original file".to_owned(),
                    Err(e) => format!("could not restart: {e:#}"),
                }
            ));
        } else if let Some(line) = log.lines().rev().find(|l| is_install_line(l)) {
            notes.push(format!("recovered: {}", clip(line)));
        } else {
            notes.push("started and stayed up".to_owned());
        }
        if running {
            // What it said about the corrupted file, if anything (etcd: "corrupted snapshot
            // file … crc mismatch", then it falls back to an older snapshot).
            if let Some(line) = log.lines().find(|l| mentions_corruption(l) && !is_refusal_line(l)) {
                notes.push(format!("its log: {}", clip(line)));
            }
        }
        notes.join("; ")
    }
}

/// A log line saying a snapshot was installed: skiff's "snapshot installed", etcd's
/// "applied snapshot" (etcd 3.4 logs "finished applying incoming snapshot").
fn is_install_line(line: &str) -> bool {
    line.contains("snapshot installed") || line.contains("applied snapshot") || line.contains("finished applying incoming snapshot")
}

/// A log line saying a received snapshot stream was refused as corrupted.
fn is_refusal_line(line: &str) -> bool {
    line.contains(SKIFF_REFUSED_SNAPSHOT)
}

/// What skiff logs when it refuses a snapshot stream whose checksum fails (skiff-raft's
/// `transport::SNAPSHOT_CORRUPTED_MESSAGE`; a test keeps the two equal).
const SKIFF_REFUSED_SNAPSHOT: &str = "refused a corrupted snapshot";


fn mentions_corruption(line: &str) -> bool {
    let l = line.to_lowercase();
    ["corrupt", "torn", "crc", "checksum", "digest", "unexpected eof", "invalid", "panic"]
        .iter()
        .any(|w| l.contains(w))
}

fn clip(line: &str) -> String {
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_words_are_skiffs() {
        assert_eq!(
            super::SKIFF_REFUSED_SNAPSHOT,
            skiff_raft::transport::SNAPSHOT_CORRUPTED_MESSAGE
        );
    }
}
