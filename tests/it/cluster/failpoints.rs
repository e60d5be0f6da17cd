//! A crash at each durability step, on a real 3-member cluster under writes: the member is
//! started from a `failpoints` build with one failpoint armed to `panic`, which (with that
//! build) aborts the process at exactly that step — before or after the WAL append, before
//! or after its fsync, before or after the state-machine commit, and, for a member catching
//! up from a leader's snapshot, before or after saving the received file, before or after
//! persisting its raft marker, before or after installing it. After a plain restart no
//! acknowledged write may be missing on any member and every member hashes the same.
//!
//! Only compiled with `--features failpoints` (`make test` runs it that way).

use super::*;

/// Evaluations let through before the write-path failpoint fires: enough that the member
/// has started and leads, few enough that writers reach it within seconds.
const WRITE_PATH_PASSES: u32 = 200;
/// How long the armed member may take to reach its failpoint.
const CRASH_TIMEOUT: Duration = Duration::from_secs(30);

fn armed(failpoint: &str, passes: u32) -> String {
    if passes == 0 {
        format!("{failpoint}=panic")
    } else {
        format!("{failpoint}={passes}*off->panic")
    }
}

/// The leader crashes at `failpoint` while 4 writers go through every member.
fn crash_leader_on_the_write_path(failpoint: &str) -> anyhow::Result<()> {
    let mut c = Cluster::start(Server::Skiff, 3)?;
    let victim = leader_index(&mut c)?;
    c.member(victim).kill9()?;
    c.member(victim).restart_with_env(&[("FAILPOINTS", armed(failpoint, WRITE_PATH_PASSES).as_str())])?;
    c.member(victim).wait_ready()?;
    // Make the armed member the leader again: its WAL append and fsync then race the
    // followers' (the leader sends before its own fsync), the sharpest case.
    let id = c.members()[victim].id.expect("ID");
    let _ = c.etcdctl(&["move-leader", &format!("{id:x}")]);

    let writers = Writers::start(c.running_endpoints(), "fp/", WRITERS);
    ensure!(
        c.member(victim).wait_exit(CRASH_TIMEOUT),
        "{failpoint} never fired on {}:\n{}",
        c.members()[victim].name,
        c.members()[victim].log_tail()
    );
    writers.wait_progress(&format!("after the crash at {failpoint}"), &c)?;
    c.member(victim).restart()?;
    writers.wait_progress(&format!("after restarting from {failpoint}"), &c)?;
    let acked = writers.stop();
    ensure!(!acked.is_empty(), "no write was acknowledged");
    must_all_members_hold(&mut c, "fp/", &acked, false)?;
    must_hashkv_agree(&mut c)
}

/// A follower that fell behind the leader's compacted log crashes at `failpoint` while
/// receiving or installing the leader's snapshot; restarted, it finishes the catch-up.
fn crash_follower_installing_a_snapshot(failpoint: &str) -> anyhow::Result<()> {
    let mut c = Cluster::start_with(
        Server::Skiff,
        3,
        &["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "5"],
    )?;
    let leader = leader_index(&mut c)?;
    let victim = (leader + 1) % 3;
    let mut expected = put_many(&c.running_endpoints(), "fp/before/", 20)?;
    c.member(victim).kill9()?;
    expected.extend(put_many(&c.running_endpoints(), "fp/while-down/", 300)?);
    // The flush-and-compact loop runs every second: let it compact past the victim.
    std::thread::sleep(Duration::from_millis(2500));
    c.member(victim).restart_with_env(&[("FAILPOINTS", armed(failpoint, 0).as_str())])?;
    ensure!(
        c.member(victim).wait_exit(CRASH_TIMEOUT),
        "{failpoint} never fired on {} (no snapshot sent?):\n{}",
        c.members()[victim].name,
        c.members()[victim].log_tail()
    );
    expected.extend(put_many(&c.running_endpoints(), "fp/after-crash/", 20)?);
    c.member(victim).restart()?;
    must_member_holds(&c, victim, "fp/", &expected, true)?;
    must_all_members_hold(&mut c, "fp/", &expected, true)?;
    must_hashkv_agree(&mut c)
}

macro_rules! write_path {
    ($($test:ident => $fp:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            must(crash_leader_on_the_write_path($fp));
        }
    )*};
}

macro_rules! snapshot_path {
    ($($test:ident => $fp:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            must(crash_follower_installing_a_snapshot($fp));
        }
    )*};
}

write_path! {
    crash_before_wal_append => "wal::before_append",
    crash_after_wal_append => "wal::after_append",
    crash_before_wal_fsync => "wal::before_fsync",
    crash_after_wal_fsync => "wal::after_fsync",
    crash_before_apply => "apply::before_commit",
    crash_after_apply => "apply::after_commit",
}

snapshot_path! {
    crash_before_snapshot_file_save => "transport::before_snapshot_save",
    crash_after_snapshot_file_save => "transport::after_snapshot_save",
    crash_before_snapshot_marker_persist => "node::before_snapshot_persist",
    crash_after_snapshot_marker_persist => "node::after_snapshot_persist",
    crash_before_snapshot_install => "apply::before_snapshot_install",
    crash_after_snapshot_install => "apply::after_snapshot_install",
}
