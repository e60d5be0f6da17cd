//! Userspace TCP proxies between members: the network the nemesis partitions.
//!
//! # Why one listener per member
//!
//! Every member must find the same peer URL for member `b` in its `--initial-cluster`
//! (etcd derives member and cluster IDs from those URLs, and so does skiff), so a proxy
//! cannot be told which link it serves by the port it is dialed on. Instead member `b`
//! advertises the address of *its* proxy, which forwards to `b`'s real peer port, and the
//! proxy finds out per connection who dialed ([`procnet::dialing_process`]: the source
//! port's socket, looked up in the members' fd tables). With the source known, each
//! connection belongs to one unordered link `{a, b}`.
//!
//! # What a cut does
//!
//! Links are cut in both directions at once: etcd's streams carry messages against the
//! direction they were dialed in (a member dials its peer to *receive*), so the direction
//! of a connection says nothing about the direction of the messages and a one-way cut
//! cannot be made at this level. While `{a, b}` is cut, its open connections stall (the
//! proxy stops forwarding, reads and drops whatever arrives, so a sender sees silence, not
//! a reset) and new ones are accepted and stalled the same way; when the link heals, the
//! stalled connections are closed and the members dial again, as after a long outage.
//! A connection whose dialer cannot be identified (counted in [`ProxyStats::unidentified`];
//! in practice a member killed while dialing) is forwarded while no cut touches its
//! destination, and closed at once otherwise.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::procnet;

/// Open connections per proxy (forwarded and stalled together). Each member pair uses a
/// handful (etcd: two streams and a pipeline pool per direction; skiff: one gRPC
/// connection), and members redial stalled links about every 100 ms, so this bounds what
/// a long partition can pile up; past it, new connections are closed at once.
pub const CONNECTIONS_PER_PROXY_MAX: usize = 512;
/// Bound on dialing the member's real peer port.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Lookups of a connection's dialer before it counts as unidentified.
const IDENTIFY_ATTEMPTS: usize = 3;
const IDENTIFY_RETRY_INTERVAL: Duration = Duration::from_millis(5);
/// Read buffer of a stalled connection (whatever arrives is dropped).
const DISCARD_BUFFER_BYTES: usize = 16 * 1024;

/// Which member pairs are cut; pairs are stored as `(low, high)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    cut: BTreeSet<(usize, usize)>,
}

impl LinkState {
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Whether any cut link ends at `member`.
    pub fn touches(&self, member: usize) -> bool {
        self.cut.iter().any(|&(a, b)| a == member || b == member)
    }

    /// Cuts every link between members of different groups; a member in no group is
    /// alone.
    pub fn partitioned(members: usize, groups: &[Vec<usize>]) -> LinkState {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        let mut cut = BTreeSet::new();
        for a in 0..members {
            for b in a + 1..members {
                let (ga, gb) = (group_of(a), group_of(b));
                if ga.is_none() || ga != gb {
                    cut.insert((a, b));
                }
            }
        }
        LinkState { cut }
    }

    /// Cuts every link except between neighbours on a ring 0-1-…-(n-1)-0: with 5 members,
    /// each sees a majority (itself and two neighbours) but no two see the same one.
    pub fn ring(members: usize) -> LinkState {
        let mut cut = BTreeSet::new();
        for a in 0..members {
            for b in a + 1..members {
                let neighbours = b - a == 1 || (a == 0 && b == members - 1);
                if !neighbours {
                    cut.insert((a, b));
                }
            }
        }
        LinkState { cut }
    }

    #[cfg(test)]
    pub fn cut_links(&self) -> usize {
        self.cut.len()
    }
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections whose dialer was not a known member (forwarded unless a cut touches
    /// the destination, then closed).
    pub unidentified: AtomicU64,
    /// Forwarded connections stalled by a cut.
    pub stalled: AtomicU64,
    /// Connections accepted while their link was cut.
    pub refused_by_cut: AtomicU64,
    /// Connections closed at once because [`CONNECTIONS_PER_PROXY_MAX`] were open.
    pub over_limit: AtomicU64,
}

/// What [`ProxyStats`] counted, for `results.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    pub connections: u64,
    pub unidentified: u64,
    pub stalled: u64,
    pub refused_by_cut: u64,
    pub over_limit: u64,
}

/// Member index → PID of its running process (`None` while it is down).
type Pids = Arc<Mutex<Vec<Option<u32>>>>;

/// One proxy per member in front of its peer port.
pub struct PeerProxies {
    ports: Vec<u16>,
    links: watch::Sender<LinkState>,
    pids: Pids,
    stats: Arc<ProxyStats>,
    accept_loops: Vec<JoinHandle<()>>,
}

impl PeerProxies {
    /// Binds one proxy per member on a free loopback port, forwarding to
    /// `upstream_ports[member]` (the member's real `--listen-peer-urls` port).
    pub async fn start(upstream_ports: &[u16]) -> std::io::Result<PeerProxies> {
        let (links, _) = watch::channel(LinkState::default());
        let pids: Pids = Arc::new(Mutex::new(vec![None; upstream_ports.len()]));
        let stats = Arc::new(ProxyStats::default());
        let mut ports = Vec::new();
        let mut accept_loops = Vec::new();
        for (member, &upstream_port) in upstream_ports.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            ports.push(port);
            let proxy = Proxy {
                member,
                port,
                upstream_port,
                links: links.subscribe(),
                pids: Arc::clone(&pids),
                stats: Arc::clone(&stats),
                open: Arc::new(Semaphore::new(CONNECTIONS_PER_PROXY_MAX)),
            };
            accept_loops.push(tokio::spawn(proxy.accept_loop(listener)));
        }
        Ok(PeerProxies {
            ports,
            links,
            pids,
            stats,
            accept_loops,
        })
    }

    /// The port member `member` advertises to its peers.
    pub fn port(&self, member: usize) -> u16 {
        self.ports[member]
    }

    /// Tells the proxies which process is member `member` now (after every (re)start).
    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.pids.lock().expect("pid table lock poisoned")[member] = pid;
    }

    pub fn set_links(&self, state: LinkState) {
        self.links.send_replace(state);
    }

    pub fn heal(&self) {
        self.set_links(LinkState::default());
    }

    pub fn counts(&self) -> ProxyCounts {
        let s = &self.stats;
        ProxyCounts {
            connections: s.connections.load(Ordering::Relaxed),
            unidentified: s.unidentified.load(Ordering::Relaxed),
            stalled: s.stalled.load(Ordering::Relaxed),
            refused_by_cut: s.refused_by_cut.load(Ordering::Relaxed),
            over_limit: s.over_limit.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        // Heal first so that stalled connections close instead of waiting forever.
        self.heal();
        for task in &self.accept_loops {
            task.abort();
        }
    }
}

/// The proxy in front of one member.
#[derive(Clone)]
struct Proxy {
    member: usize,
    port: u16,
    upstream_port: u16,
    links: watch::Receiver<LinkState>,
    pids: Pids,
    stats: Arc<ProxyStats>,
    open: Arc<Semaphore>,
}

impl Proxy {
    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // EMFILE and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() else {
                self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let proxy = self.clone();
            tokio::spawn(async move {
                proxy.serve(stream, from.port()).await;
                drop(permit);
            });
        }
    }

    async fn serve(mut self, client: TcpStream, source_port: u16) {
        let Some(source) = self.identify(source_port).await else {
            self.stats.unidentified.fetch_add(1, Ordering::Relaxed);
            // Unknown dialer (usually a member that was just killed): forward it unless a
            // cut touches this member, where it might be a cut peer; then close it and let
            // a live dialer try again, to be identified.
            let touches_cut = self.links.borrow().touches(self.member);
            if !touches_cut {
                if let Some(mut upstream) = self.dial_upstream().await {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            }
            return;
        };
        let dest = self.member;
        if self.links.borrow().is_cut(source, dest) {
            self.stats.refused_by_cut.fetch_add(1, Ordering::Relaxed);
            stall_until_healed(&mut self.links, source, dest, client, None).await;
            return;
        }
        let Some(mut upstream) = self.dial_upstream().await else {
            return;
        };
        let mut client = client;
        let cut = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => false,
            changed = self.links.wait_for(|s| s.is_cut(source, dest)) => changed.is_ok(),
        };
        if cut {
            self.stats.stalled.fetch_add(1, Ordering::Relaxed);
            stall_until_healed(&mut self.links, source, dest, client, Some(upstream)).await;
        }
    }

    /// The member that dialed from `source_port`, trying a few times: the lookup reads
    /// `/proc`, which races with a dialer that is still setting up.
    async fn identify(&self, source_port: u16) -> Option<usize> {
        for attempt in 0..IDENTIFY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(IDENTIFY_RETRY_INTERVAL).await;
            }
            let candidates: Vec<(usize, u32)> = self
                .pids
                .lock()
                .expect("pid table lock poisoned")
                .iter()
                .enumerate()
                .filter_map(|(i, pid)| pid.map(|p| (i, p)))
                .collect();
            let port = self.port;
            let found = tokio::task::spawn_blocking(move || {
                procnet::dialing_process(source_port, port, &candidates)
            })
            .await
            .ok()
            .flatten();
            if found.is_some() {
                return found;
            }
        }
        None
    }

    async fn dial_upstream(&self) -> Option<TcpStream> {
        let dial = TcpStream::connect(("127.0.0.1", self.upstream_port));
        let stream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, dial)
            .await
            .ok()?
            .ok()?;
        let _ = stream.set_nodelay(true);
        Some(stream)
    }
}

/// Holds a cut connection: drops whatever either side sends, until the link heals or
/// both sides have hung up; then closes both.
async fn stall_until_healed(
    links: &mut watch::Receiver<LinkState>,
    a: usize,
    b: usize,
    mut client: TcpStream,
    mut upstream: Option<TcpStream>,
) {
    let mut client_buf = vec![0u8; DISCARD_BUFFER_BYTES];
    let mut upstream_buf = vec![0u8; DISCARD_BUFFER_BYTES];
    let mut client_open = true;
    let mut upstream_open = upstream.is_some();
    let healed = links.wait_for(|s| !s.is_cut(a, b));
    tokio::pin!(healed);
    while client_open || upstream_open {
        tokio::select! {
            _ = &mut healed => break,
            n = client.read(&mut client_buf), if client_open => {
                client_open = matches!(n, Ok(n) if n > 0);
            }
            n = async {
                match upstream.as_mut() {
                    Some(u) => u.read(&mut upstream_buf).await,
                    None => Ok(0),
                }
            }, if upstream_open => {
                upstream_open = matches!(n, Ok(n) if n > 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn partitions_and_rings_cut_the_right_links() {
        let halves = LinkState::partitioned(5, &[vec![0, 1], vec![2, 3, 4]]);
        assert!(!halves.is_cut(0, 1) && !halves.is_cut(4, 2));
        assert!(halves.is_cut(1, 2) && halves.is_cut(4, 0));
        assert_eq!(halves.cut_links(), 6);
        let isolated = LinkState::partitioned(3, &[vec![1, 2]]);
        assert!(isolated.is_cut(0, 1) && isolated.is_cut(2, 0) && !isolated.is_cut(1, 2));
        assert!(isolated.touches(1) && !LinkState::default().touches(1));
        let ring = LinkState::ring(5);
        assert!(!ring.is_cut(0, 1) && !ring.is_cut(4, 0) && !ring.is_cut(3, 4));
        assert!(ring.is_cut(0, 2) && ring.is_cut(1, 3) && ring.is_cut(4, 1));
        assert_eq!(ring.cut_links(), 5);
    }

    /// An echo server standing in for member 1's peer port.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        port
    }

    /// Some(true) if the echo came back, Some(false) on silence, None if the proxy closed.
    async fn echoes(stream: &mut TcpStream) -> Option<bool> {
        if stream.write_all(b"ping").await.is_err() {
            return None;
        }
        let mut buf = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf)).await {
            Err(_) => Some(false),
            Ok(Ok(_)) => Some(&buf == b"ping"),
            Ok(Err(_)) => None,
        }
    }

    #[tokio::test]
    async fn a_cut_stalls_open_and_new_connections_and_healing_closes_them() {
        let upstream = echo_server().await;
        // Member 0 is this test process; member 1 is the echo server behind proxy 1.
        let proxies = PeerProxies::start(&[upstream, upstream]).await.unwrap();
        proxies.set_pid(0, Some(std::process::id()));
        let addr = ("127.0.0.1", proxies.port(1));
        let mut open = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echoes(&mut open).await, Some(true));

        proxies.set_links(LinkState::partitioned(2, &[vec![0], vec![1]]));
        assert_eq!(
            echoes(&mut open).await,
            Some(false),
            "open connection stalls"
        );
        let mut during = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            echoes(&mut during).await,
            Some(false),
            "new connection stalls"
        );

        proxies.heal();
        for stream in [&mut open, &mut during] {
            let mut buf = [0u8; 16];
            let closed = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            assert!(
                matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
                "stalled connection closed on heal: {closed:?}"
            );
        }
        let mut after = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echoes(&mut after).await, Some(true));
        let counts = proxies.counts();
        assert_eq!(
            (counts.stalled, counts.refused_by_cut, counts.unidentified),
            (1, 1, 0)
        );
    }
}
