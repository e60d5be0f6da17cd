//! lazyfs: a FUSE file system that forgets un-fsynced writes on demand. Unit-level checks
//! through the real mount (write, sync, lose), then a real etcd 3.4 member on it: kill -9
//! under writes, lose what was not fsynced, restart — every acknowledged put is there.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_jepsen::lazyfs::LazyFs;

fn mounted(dir: &Path) -> LazyFs {
    let backing = dir.join("backing");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    LazyFs::mount(&backing, &mnt).expect("mount lazyfs (needs root and /dev/fuse)")
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fs = mounted(dir.path());
    let mnt = fs.mountpoint().to_path_buf();

    // A file written and synced, then overwritten in part and extended without a sync.
    let kept = mnt.join("kept");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&kept).unwrap();
    f.write_all(b"hello durable world").unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"HELLO", 0).unwrap();
    f.write_all_at(b" and more", 19).unwrap();
    drop(f);
    assert_eq!(std::fs::read(&kept).unwrap(), b"HELLO durable world and more");

    // A new file never synced; a file truncated without a sync; a directory and a rename.
    std::fs::write(mnt.join("never-synced"), b"gone").unwrap();
    let trunc = mnt.join("truncated");
    let mut t = std::fs::File::create(&trunc).unwrap();
    t.write_all(b"0123456789").unwrap();
    t.sync_all().unwrap();
    t.set_len(3).unwrap();
    drop(t);
    std::fs::create_dir(mnt.join("sub")).unwrap();
    std::fs::rename(&trunc, mnt.join("sub/renamed")).unwrap();
    assert!(fs.unsynced_files() >= 3);

    let rolled = fs.lose_unsynced().unwrap();
    assert_eq!(rolled, 3, "kept, never-synced, truncated");
    assert_eq!(std::fs::read(&kept).unwrap(), b"hello durable world");
    assert_eq!(std::fs::read(mnt.join("never-synced")).unwrap(), b"");
    assert_eq!(std::fs::read(mnt.join("sub/renamed")).unwrap(), b"0123456789");
    assert_eq!(fs.unsynced_files(), 0);

    // Synced again: a second loss changes nothing.
    let mut f = OpenOptions::new().append(true).open(&kept).unwrap();
    f.write_all(b"!").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs.lose_unsynced().unwrap(), 0);
    assert_eq!(std::fs::read(&kept).unwrap(), b"hello durable world!");
    let stats = fs.stats();
    assert!(stats.files_rolled_back == 3 && stats.syncs >= 3, "{stats:?}");
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "1s", "--command-timeout", "3s"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn etcd_on_lazyfs_keeps_every_acknowledged_put_after_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let fs = mounted(dir.path());
    let data = fs.mountpoint().join("etcd");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let start = || {
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        Command::new("/usr/bin/etcd")
            .args(["--name", "lazy", "--data-dir", data.to_str().unwrap()])
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("lazy=http://127.0.0.1:{peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let wait_ready = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while etcdctl(&endpoint, &["endpoint", "health"]).is_err() {
            assert!(Instant::now() < deadline, "{what}: etcd on lazyfs never became healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let mut etcd = start();
    wait_ready("first start");
    let mut acked = Vec::new();
    for i in 0..40 {
        let key = format!("k{i:03}");
        etcdctl(&endpoint, &["put", &key, &format!("v{i}")]).expect("put");
        acked.push(key);
    }
    etcd.kill().unwrap();
    etcd.wait().unwrap();
    let rolled = fs.lose_unsynced().unwrap();

    let mut etcd = start();
    wait_ready("restart after the loss");
    for (i, key) in acked.iter().enumerate() {
        let got = etcdctl(&endpoint, &["get", key, "--print-value-only"]).expect("get");
        assert_eq!(got.trim(), format!("v{i}"), "{key} after losing {rolled} files' unsynced data");
    }
    etcd.kill().unwrap();
    etcd.wait().unwrap();
}
