//! etcd's Lock service (v3lock) through the `etcd-client` crate, the same function against
//! skiff and against Debian's etcd 3.4, their transcripts compared: the holder's key,
//! a second locker blocked until the first unlocks, a lock freed by its holder's lease
//! expiring, a waiter that gives up not blocking the next one, and the error for a lease
//! that does not exist.

use std::time::Duration;

use ::etcd_client::{Client, LockOptions};
use anyhow::{ensure, Context};

use crate::harness::Server;

/// Bound on an RPC expected to answer at once.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a blocked locker is watched to stay blocked.
const BLOCKED_FOR: Duration = Duration::from_millis(700);
const MISSING_LEASE_ID: i64 = 0x7eed_0000_0002;

async fn lock_transcript(server: Server) -> anyhow::Result<Vec<String>> {
    let running = tokio::task::spawn_blocking(move || server.start()).await??;
    let url = running.client_url();
    let result = async {
        let mut out = Vec::new();
        let mut c = Client::connect([url.clone()], None).await?;
        let a = c.lease_grant(30, None).await?.id();
        let b = c.lease_grant(30, None).await?.id();

        // A holds the lock; its key is name/<lease hex>.
        let held = tokio::time::timeout(RPC_TIMEOUT, c.lock("mutex", Some(LockOptions::new().with_lease(a)))).await??;
        let key_a = held.key().to_vec();
        ensure!(key_a == format!("mutex/{a:x}").into_bytes(), "key {:?}", String::from_utf8_lossy(&key_a));
        out.push("a holds mutex/<lease a>".to_string());
        let kv = c.get(key_a.clone(), None).await?;
        ensure!(kv.kvs().len() == 1 && kv.kvs()[0].lease() == a, "the key is under the lease: {kv:?}");

        // B waits while A holds it.
        let mut cb = Client::connect([url.clone()], None).await?;
        let waiter = tokio::spawn(async move { cb.lock("mutex", Some(LockOptions::new().with_lease(b))).await });
        tokio::time::sleep(BLOCKED_FOR).await;
        out.push(format!("b blocked while a holds it: {}", !waiter.is_finished()));
        c.unlock(key_a.clone()).await?;
        let got = tokio::time::timeout(RPC_TIMEOUT, waiter).await??.context("b's lock")?;
        ensure!(got.key() == format!("mutex/{b:x}").as_bytes(), "b's key");
        out.push("b holds it after a unlocks".to_string());

        // A waiter that gives up (its call dropped) blocks nobody afterwards.
        let d = c.lease_grant(30, None).await?.id();
        let e = c.lease_grant(30, None).await?.id();
        let mut cd = Client::connect([url.clone()], None).await?;
        let gave_up = tokio::time::timeout(BLOCKED_FOR, cd.lock("mutex", Some(LockOptions::new().with_lease(d)))).await;
        out.push(format!("d gave up waiting: {}", gave_up.is_err()));
        drop(cd);
        c.unlock(got.key().to_vec()).await?;
        let e_got = tokio::time::timeout(RPC_TIMEOUT, c.lock("mutex", Some(LockOptions::new().with_lease(e))))
            .await
            .context("e blocked behind a waiter that gave up")??;
        out.push(format!("e holds it: {}", e_got.key() == format!("mutex/{e:x}").as_bytes()));
        c.unlock(e_got.key().to_vec()).await?;

        // A holder whose lease expires loses the lock to the next waiter.
        let short = c.lease_grant(2, None).await?.id();
        let f = c.lease_grant(30, None).await?.id();
        c.lock("expiring", Some(LockOptions::new().with_lease(short))).await?;
        let t0 = std::time::Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(15), c.lock("expiring", Some(LockOptions::new().with_lease(f))))
            .await
            .context("the lock of an expired lease was never released")??;
        out.push(format!(
            "f holds it after the holder's lease expired: {} (waited ≥ 1 s: {})",
            next.key() == format!("expiring/{f:x}").as_bytes(),
            t0.elapsed() >= Duration::from_secs(1)
        ));

        // A lease that does not exist.
        let err = c.lock("mutex", Some(LockOptions::new().with_lease(MISSING_LEASE_ID))).await.unwrap_err();
        out.push(format!("missing lease: {err}"));
        // Unlocking a key nobody holds is not an error.
        c.unlock("mutex/none").await?;
        out.push("unlock of a free key: ok".to_string());
        anyhow::Ok(out)
    }
    .await;
    result.with_context(|| format!("lock API against {}; log tail:\n{}", server.name(), running.log_tail()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_api_behaves_as_etcds() {
    let (skiff, etcd) = tokio::join!(lock_transcript(Server::Skiff), lock_transcript(Server::Etcd));
    let etcd = etcd.expect("etcd");
    let skiff = skiff.expect("skiff");
    assert_eq!(skiff, etcd, "skiff's lock transcript differs from etcd's");
    assert!(etcd.iter().any(|l| l == "b blocked while a holds it: true"), "{etcd:?}");
}

/// etcd's Election service: campaign, a second campaigner blocked, proclaim, leader,
/// observe, resign and the errors, as a transcript compared between skiff and etcd.
async fn election_transcript(server: Server) -> anyhow::Result<Vec<String>> {
    use ::etcd_client::{LeaderKey, ProclaimOptions, ResignOptions};
    let running = tokio::task::spawn_blocking(move || server.start()).await??;
    let url = running.client_url();
    let result = async {
        let mut out = Vec::new();
        let mut c = Client::connect([url.clone()], None).await?;
        let err = tokio::time::timeout(RPC_TIMEOUT, c.leader("el")).await?.unwrap_err();
        out.push(format!("leader of an empty election: {err}"));
        let a = c.lease_grant(30, None).await?.id();
        let b = c.lease_grant(30, None).await?.id();

        let won = tokio::time::timeout(RPC_TIMEOUT, c.campaign("el", "alpha", a)).await??;
        // Opened once there is a leader: etcd answers an Observe's headers only with its
        // first message, and the crate waits for them.
        let mut observer = tokio::time::timeout(RPC_TIMEOUT, Client::connect([url.clone()], None).await?.observe("el"))
            .await
            .context("observe")??;
        let leader_a = won.leader().context("leader key")?.clone();
        ensure!(leader_a.key() == format!("el/{a:x}").as_bytes() && leader_a.lease() == a, "{leader_a:?}");
        out.push(format!("a won: name {:?}", String::from_utf8_lossy(leader_a.name())));
        let seen = tokio::time::timeout(RPC_TIMEOUT, observer.message()).await??.context("observe")?;
        out.push(format!("observed {:?}", seen.kv().map(|k| String::from_utf8_lossy(k.value()).into_owned())));

        let mut cb = Client::connect([url.clone()], None).await?;
        let waiting = tokio::spawn(async move { cb.campaign("el", "beta", b).await });
        tokio::time::sleep(BLOCKED_FOR).await;
        out.push(format!("b blocked while a leads: {}", !waiting.is_finished()));

        c.proclaim("alpha-2", Some(ProclaimOptions::new().with_leader(leader_a.clone()))).await?;
        let seen = tokio::time::timeout(RPC_TIMEOUT, observer.message()).await??.context("observe")?;
        out.push(format!("observed {:?}", seen.kv().map(|k| String::from_utf8_lossy(k.value()).into_owned())));
        let l = c.leader("el").await?;
        out.push(format!("leader value {:?}", l.kv().map(|k| String::from_utf8_lossy(k.value()).into_owned())));

        // Proclaiming with a key that is not the leader's: refused.
        let fake = LeaderKey::new().with_name("el").with_key(format!("el/{b:x}")).with_rev(1).with_lease(b);
        let err = c.proclaim("x", Some(ProclaimOptions::new().with_leader(fake))).await.unwrap_err();
        out.push(format!("proclaim as a non-leader: {err}"));

        c.resign(Some(ResignOptions::new().with_leader(leader_a))).await?;
        let got = tokio::time::timeout(RPC_TIMEOUT, waiting).await??.context("b's campaign")?;
        out.push(format!("b won after a resigned: {}", got.leader().is_some_and(|l| l.key() == format!("el/{b:x}").as_bytes())));
        let seen = tokio::time::timeout(RPC_TIMEOUT, observer.message()).await??.context("observe")?;
        out.push(format!("observed {:?}", seen.kv().map(|k| String::from_utf8_lossy(k.value()).into_owned())));
        anyhow::Ok(out)
    }
    .await;
    result.with_context(|| format!("election API against {}; log tail:\n{}", server.name(), running.log_tail()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_api_behaves_as_etcds() {
    let (skiff, etcd) = tokio::join!(election_transcript(Server::Skiff), election_transcript(Server::Etcd));
    let etcd = etcd.expect("etcd");
    let skiff = skiff.expect("skiff");
    assert_eq!(skiff, etcd, "skiff's election transcript differs from etcd's");
    assert!(etcd.iter().any(|l| l == "b blocked while a leads: true"), "{etcd:?}");
}
