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
//! Cuts are directed: `a -> b` blocked means bytes from `a` to `b` are not delivered, on
//! every connection between them whichever side dialed it (etcd's streams carry messages
//! against the direction they were dialed in: a member dials its peer to *receive*, so
//! the proxy works per byte direction, not per connection). A partition blocks both
//! directions; a one-way cut one. While a direction is blocked, whatever arrives in it is
//! read and dropped (a sender sees silence, not a reset or back-pressure); when it heals,
//! the connection is closed and the members dial again, as after a long outage (a TCP
//! stream cannot skip the bytes that were dropped). A connection accepted while its link
//! is cut both ways is stalled the same way. A connection whose dialer cannot be
//! identified (counted in [`ProxyStats::unidentified`]; in practice a member killed while
//! dialing) is forwarded while no cut touches its destination, and closed at once
//! otherwise.
//!
//! # Drop and delay
//!
//! Loss and latency apply to every link while set. A *delay* holds each chunk read from one
//! side for `delay_ms` plus up to `jitter_ms`, in order (a bounded queue per direction,
//! [`DELAY_QUEUE_CHUNKS_MAX`]). A *drop* loses a chunk with the given probability; since a
//! TCP stream cannot lose bytes in the middle and go on, losing a chunk also closes its
//! connection: the receiver misses the messages in it and the sender redials — what a raft
//! transport sees of a lossy link (its own retransmission stands in for TCP's).
//!
//! # Snapshot corruption in flight
//!
//! [`PeerProxies::arm_snapshot_corruption`] makes the proxy in front of a member flip one
//! bit of the next snapshot streamed *to* it, a little after the stream's start marker
//! ([`SNAPSHOT_MARKERS`]: skiff's snapshot magic, etcd's `POST /raft/snapshot`); then it
//! disarms. The receiver must refuse those bytes, not install them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// Read buffer of a forwarded direction: one chunk.
const FORWARD_BUFFER_BYTES: usize = 16 * 1024;
/// Chunks a delayed direction holds at most (16 MiB at most with full chunks); a full
/// queue stops reading, so a sender feels back-pressure instead of the proxy growing.
pub const DELAY_QUEUE_CHUNKS_MAX: usize = 1024;
/// Byte strings that start a snapshot stream: skiff's snapshot file magic (the first
/// bytes of its first chunk's data) and etcd's rafthttp snapshot request line.
pub const SNAPSHOT_MARKERS: [&[u8]; 2] = [b"SKIFFSNP", b"POST /raft/snapshot"];
/// The flipped bit is this far after the end of a marker, at most (and at least 16 bytes):
/// inside skiff's snapshot header and first file; inside etcd's request head or message.
const CORRUPT_OFFSET_BYTES_MAX: usize = 4096;

/// What the network does: directed cuts `(from, to)`, loss and latency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    cut: BTreeSet<(usize, usize)>,
    /// Chance, in millionths, that a forwarded chunk is lost (and its connection closed).
    pub drop_per_million: u32,
    pub delay_ms: u64,
    pub jitter_ms: u64,
}

impl LinkState {
    /// Bytes from `from` to `to` are dropped.
    pub fn blocks(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    /// The link is cut both ways.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.blocks(a, b) && self.blocks(b, a)
    }

    /// Whether any cut, in either direction, ends at `member`.
    pub fn touches(&self, member: usize) -> bool {
        self.cut.iter().any(|&(a, b)| a == member || b == member)
    }

    /// Cuts every link between members of different groups, both ways; a member in no
    /// group is alone.
    pub fn partitioned(members: usize, groups: &[Vec<usize>]) -> LinkState {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        let mut cut = BTreeSet::new();
        for a in 0..members {
            for b in 0..members {
                let (ga, gb) = (group_of(a), group_of(b));
                if a != b && (ga.is_none() || ga != gb) {
                    cut.insert((a, b));
                }
            }
        }
        LinkState {
            cut,
            ..LinkState::default()
        }
    }

    /// Blocks everything `from` sends to the others; it still hears them.
    #[cfg(test)]
    pub fn one_way_from(members: usize, from: usize) -> LinkState {
        let cut = (0..members)
            .filter(|&to| to != from)
            .map(|to| (from, to))
            .collect();
        LinkState {
            cut,
            ..LinkState::default()
        }
    }

    /// Keeps only the directed cuts `(from, to)` that `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, usize) -> bool) {
        self.cut.retain(|&(from, to)| keep(from, to));
    }

    /// Blocks everything `from` sends to each of `to`; it still hears them.
    pub fn one_way(from: usize, to: &[usize]) -> LinkState {
        let cut = to.iter().filter(|&&t| t != from).map(|&t| (from, t)).collect();
        LinkState {
            cut,
            ..LinkState::default()
        }
    }

    /// Cuts every link except between neighbours on a ring 0-1-…-(n-1)-0: with 5 members,
    /// each sees a majority (itself and two neighbours) but no two see the same one.
    #[cfg(test)]
    pub fn ring(members: usize) -> LinkState {
        Self::ring_of(&(0..members).collect::<Vec<_>>())
    }

    /// [`LinkState::ring`] over `members` in that order (the others are not touched).
    pub fn ring_of(members: &[usize]) -> LinkState {
        let n = members.len();
        let mut cut = BTreeSet::new();
        for (i, &a) in members.iter().enumerate() {
            for (j, &b) in members.iter().enumerate() {
                let (low, high) = (i.min(j), i.max(j));
                let neighbours = high - low == 1 || (low == 0 && high == n - 1);
                if a != b && !neighbours {
                    cut.insert((a, b));
                }
            }
        }
        LinkState {
            cut,
            ..LinkState::default()
        }
    }

    /// Every link loses chunks with probability `drop_per_million / 1e6`.
    pub fn lossy(drop_per_million: u32) -> LinkState {
        LinkState {
            drop_per_million,
            ..LinkState::default()
        }
    }

    /// Every link delays by `delay_ms` plus up to `jitter_ms`.
    pub fn slow(delay_ms: u64, jitter_ms: u64) -> LinkState {
        LinkState {
            delay_ms,
            jitter_ms,
            ..LinkState::default()
        }
    }

    /// Unordered pairs with at least one blocked direction.
    #[cfg(test)]
    pub fn cut_links(&self) -> usize {
        self.cut
            .iter()
            .map(|&(a, b)| (a.min(b), a.max(b)))
            .collect::<BTreeSet<_>>()
            .len()
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
    /// Chunks lost to a drop fault (each closed its connection).
    pub dropped: AtomicU64,
    /// Chunks held back by a delay fault.
    pub delayed: AtomicU64,
    /// Snapshot streams that had a bit flipped ([`PeerProxies::arm_snapshot_corruption`]).
    pub corrupted: AtomicU64,
}

/// What [`ProxyStats`] counted, for `results.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    pub connections: u64,
    pub unidentified: u64,
    pub stalled: u64,
    pub refused_by_cut: u64,
    pub over_limit: u64,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub delayed: u64,
    #[serde(default)]
    pub corrupted: u64,
}

/// Member index → PID of its running process (`None` while it is down).
type Pids = Arc<Mutex<Vec<Option<u32>>>>;

/// One proxy per member in front of its peer port.
pub struct PeerProxies {
    ports: Vec<u16>,
    links: watch::Sender<LinkState>,
    pids: Pids,
    stats: Arc<ProxyStats>,
    /// Per member: flip a bit of the next snapshot streamed to it.
    corrupt: Vec<Arc<AtomicBool>>,
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
        let mut corrupt = Vec::new();
        for (member, &upstream_port) in upstream_ports.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            ports.push(port);
            let armed = Arc::new(AtomicBool::new(false));
            corrupt.push(Arc::clone(&armed));
            let proxy = Proxy {
                member,
                port,
                upstream_port,
                links: links.subscribe(),
                pids: Arc::clone(&pids),
                stats: Arc::clone(&stats),
                open: Arc::new(Semaphore::new(CONNECTIONS_PER_PROXY_MAX)),
                corrupt: armed,
            };
            accept_loops.push(tokio::spawn(proxy.accept_loop(listener)));
        }
        Ok(PeerProxies {
            ports,
            links,
            pids,
            stats,
            corrupt,
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

    /// The cuts, loss and latency in force.
    #[cfg(test)]
    pub fn links(&self) -> LinkState {
        self.links.borrow().clone()
    }

    /// The next snapshot streamed to `member` gets one bit flipped (once).
    pub fn arm_snapshot_corruption(&self, member: usize, armed: bool) {
        self.corrupt[member].store(armed, Ordering::SeqCst);
    }

    /// Whether the armed corruption for `member` is still waiting for a snapshot.
    pub fn snapshot_corruption_pending(&self, member: usize) -> bool {
        self.corrupt[member].load(Ordering::SeqCst)
    }

    pub fn counts(&self) -> ProxyCounts {
        let s = &self.stats;
        ProxyCounts {
            connections: s.connections.load(Ordering::Relaxed),
            unidentified: s.unidentified.load(Ordering::Relaxed),
            stalled: s.stalled.load(Ordering::Relaxed),
            refused_by_cut: s.refused_by_cut.load(Ordering::Relaxed),
            over_limit: s.over_limit.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
            corrupted: s.corrupted.load(Ordering::Relaxed),
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
    /// Armed: flip a bit of the next snapshot streamed to this member.
    corrupt: Arc<AtomicBool>,
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
        let Some(upstream) = self.dial_upstream().await else {
            return;
        };
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        let stalled = AtomicBool::new(false);
        let context = Direction {
            links: self.links.clone(),
            stats: &self.stats,
            stalled: &stalled,
            corrupt: None,
        };
        let towards_member = Direction {
            corrupt: Some(SnapshotCorruptor::new(Arc::clone(&self.corrupt))),
            ..context.clone()
        };
        // Either direction ending (EOF, a healed cut, a dropped chunk) closes both.
        tokio::select! {
            _ = towards_member.pump(client_read, upstream_write, source, dest) => {}
            _ = context.pump(upstream_read, client_write, dest, source) => {}
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

/// One byte direction of a forwarded connection.
#[derive(Clone)]
struct Direction<'a> {
    links: watch::Receiver<LinkState>,
    stats: &'a ProxyStats,
    /// Set once either direction of the connection is stalled by a cut (counted once).
    stalled: &'a AtomicBool,
    /// Towards the proxied member only: the snapshot corruption fault.
    corrupt: Option<SnapshotCorruptor>,
}

/// Watches one byte direction for a snapshot's start and, while armed, flips one bit a
/// little after it.
#[derive(Clone)]
struct SnapshotCorruptor {
    armed: Arc<AtomicBool>,
    /// The last bytes of earlier chunks, so a marker split between two chunks is found.
    tail: Vec<u8>,
    /// Bytes still to pass before the bit to flip, once a marker was seen.
    countdown: Option<usize>,
}

impl SnapshotCorruptor {
    fn new(armed: Arc<AtomicBool>) -> Self {
        SnapshotCorruptor {
            armed,
            tail: Vec::new(),
            countdown: None,
        }
    }

    /// Flips a bit of `chunk` if this is where the armed fault lands; true if it did.
    fn on_chunk(&mut self, chunk: &mut [u8]) -> bool {
        if self.countdown.is_none() {
            if !self.armed.load(Ordering::Relaxed) {
                self.tail.clear();
                return false;
            }
            let mut seen = std::mem::take(&mut self.tail);
            let before = seen.len();
            seen.extend_from_slice(chunk);
            let found = SNAPSHOT_MARKERS.iter().find_map(|m| {
                seen.windows(m.len())
                    .position(|w| w == *m)
                    .map(|at| at + m.len())
            });
            match found {
                Some(end) => {
                    let offset = rand::random_range(16..CORRUPT_OFFSET_BYTES_MAX);
                    // Counted from the start of this chunk.
                    self.countdown = Some((end + offset).saturating_sub(before));
                }
                None => {
                    let keep = seen.len().saturating_sub(32);
                    self.tail = seen.split_off(keep);
                    return false;
                }
            }
        }
        let at = self.countdown.expect("set above");
        if at >= chunk.len() {
            self.countdown = Some(at - chunk.len());
            return false;
        }
        self.countdown = None;
        if !self.armed.swap(false, Ordering::SeqCst) {
            return false; // another connection got there first
        }
        chunk[at] ^= 1 << rand::random_range(0..8u32);
        true
    }
}

/// How a direction's reader ended.
enum PumpEnd {
    /// The sender closed: deliver what is queued, then close.
    Eof,
    /// A cut healed or a chunk was dropped: close at once.
    Close,
}

impl Direction<'_> {
    /// Forwards `from_member`'s bytes to `to_member`, applying cuts, loss and delay; returns
    /// when the connection should close.
    async fn pump(
        mut self,
        mut read: tokio::net::tcp::OwnedReadHalf,
        mut write: tokio::net::tcp::OwnedWriteHalf,
        from_member: usize,
        to_member: usize,
    ) {
        let (queue, mut queued) =
            tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(DELAY_QUEUE_CHUNKS_MAX);
        let stats = self.stats;
        let writer = async move {
            while let Some((at, chunk)) = queued.recv().await {
                tokio::time::sleep_until(at).await;
                if write.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        };
        let reader = async move {
            let mut buf = vec![0u8; FORWARD_BUFFER_BYTES];
            let mut last_at = tokio::time::Instant::now();
            loop {
                if self.links.borrow().blocks(from_member, to_member) {
                    if !self.stalled.swap(true, Ordering::Relaxed) {
                        stats.stalled.fetch_add(1, Ordering::Relaxed);
                    }
                    return self
                        .discard_until_healed(&mut read, from_member, to_member)
                        .await;
                }
                let n = tokio::select! {
                    n = read.read(&mut buf) => n,
                    _ = self.links.changed() => continue,
                };
                let n = match n {
                    Ok(0) | Err(_) => return PumpEnd::Eof,
                    Ok(n) => n,
                };
                let (drop_per_million, delay_ms, jitter_ms) = {
                    let state = self.links.borrow();
                    if state.blocks(from_member, to_member) {
                        continue;
                    }
                    (state.drop_per_million, state.delay_ms, state.jitter_ms)
                };
                if drop_per_million > 0 && rand::random_range(0..1_000_000u32) < drop_per_million {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return PumpEnd::Close;
                }
                if let Some(corruptor) = self.corrupt.as_mut() {
                    if corruptor.on_chunk(&mut buf[..n]) {
                        stats.corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let mut at = tokio::time::Instant::now();
                if delay_ms > 0 || jitter_ms > 0 {
                    stats.delayed.fetch_add(1, Ordering::Relaxed);
                    let jitter = if jitter_ms > 0 {
                        rand::random_range(0..=jitter_ms)
                    } else {
                        0
                    };
                    // Never before the chunk ahead of it: the stream stays in order.
                    at = (at + Duration::from_millis(delay_ms + jitter)).max(last_at);
                }
                last_at = at;
                if queue.send((at, buf[..n].to_vec())).await.is_err() {
                    return PumpEnd::Close;
                }
            }
        };
        tokio::pin!(writer);
        let end = tokio::select! {
            end = reader => end,
            _ = &mut writer => PumpEnd::Close,
        };
        if let PumpEnd::Eof = end {
            writer.await;
        }
    }

    /// Reads and drops until the direction is unblocked (then the connection closes) or the
    /// sender hangs up.
    async fn discard_until_healed(
        &mut self,
        read: &mut tokio::net::tcp::OwnedReadHalf,
        from_member: usize,
        to_member: usize,
    ) -> PumpEnd {
        let mut buf = vec![0u8; DISCARD_BUFFER_BYTES];
        loop {
            tokio::select! {
                healed = self.links.wait_for(|s| !s.blocks(from_member, to_member)) => {
                    let _ = healed;
                    return PumpEnd::Close;
                }
                n = read.read(&mut buf) => {
                    if !matches!(n, Ok(n) if n > 0) {
                        return PumpEnd::Eof;
                    }
                }
            }
        }
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
        let one_way = LinkState::one_way_from(3, 1);
        assert!(one_way.blocks(1, 0) && one_way.blocks(1, 2));
        assert!(!one_way.blocks(0, 1) && !one_way.blocks(2, 1) && !one_way.blocks(0, 2));
        assert!(!one_way.is_cut(0, 1), "a one-way cut is not a partition");
        assert_eq!(one_way.cut_links(), 2);
    }

    #[test]
    fn an_armed_corruptor_flips_one_bit_after_a_split_marker_once() {
        let armed = Arc::new(AtomicBool::new(true));
        let mut c = SnapshotCorruptor::new(Arc::clone(&armed));
        let original: Vec<u8> = [&b"xxxxSKIF"[..], b"FSNP", &[7u8; 2 * CORRUPT_OFFSET_BYTES_MAX]].concat();
        let mut stream = original.clone();
        let (a, rest) = stream.split_at_mut(8);
        let (b, rest) = rest.split_at_mut(4);
        let flipped = [c.on_chunk(a), c.on_chunk(b), c.on_chunk(rest)];
        assert_eq!(flipped, [false, false, true]);
        let diff: Vec<usize> = (0..stream.len()).filter(|&i| stream[i] != original[i]).collect();
        assert_eq!(diff.len(), 1, "one byte changed");
        assert_eq!((stream[diff[0]] ^ original[diff[0]]).count_ones(), 1, "one bit");
        assert!(diff[0] >= 12 + 16, "after the marker: {}", diff[0]);
        assert!(!armed.load(Ordering::SeqCst), "disarmed after one flip");
        let mut again = original.clone();
        assert!(!c.on_chunk(&mut again), "disarmed");
        assert_eq!(again, original);
    }

    /// Member 0 (this test process) dials member 1 (an echo server) through proxy 1.
    async fn proxied_echo() -> (PeerProxies, TcpStream) {
        let upstream = echo_server().await;
        let proxies = PeerProxies::start(&[upstream, upstream]).await.unwrap();
        proxies.set_pid(0, Some(std::process::id()));
        let stream = TcpStream::connect(("127.0.0.1", proxies.port(1)))
            .await
            .unwrap();
        (proxies, stream)
    }

    #[tokio::test]
    async fn a_one_way_cut_blocks_one_direction_only_and_closes_on_heal() {
        // 1 -> 0 blocked: the echo server hears us, we do not hear it.
        let (proxies, mut stream) = proxied_echo().await;
        assert_eq!(echoes(&mut stream).await, Some(true));
        proxies.set_links(LinkState::one_way_from(2, 1));
        assert_eq!(echoes(&mut stream).await, Some(false), "the echo is lost");
        proxies.heal();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        assert_eq!(proxies.counts().stalled, 1);

        // 0 -> 1 blocked: what we send never reaches the echo server.
        let (proxies, mut stream) = proxied_echo().await;
        proxies.set_links(LinkState::one_way_from(2, 0));
        assert_eq!(echoes(&mut stream).await, Some(false));
    }

    #[tokio::test]
    async fn delay_holds_chunks_in_order_and_drop_closes_the_connection() {
        let (proxies, mut stream) = proxied_echo().await;
        proxies.set_links(LinkState::slow(150, 0));
        let started = std::time::Instant::now();
        stream.write_all(b"ab").await.unwrap();
        stream.write_all(b"cd").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"abcd");
        // Each way is delayed: at least two delays for the round trip.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert!(proxies.counts().delayed >= 2);

        let (proxies, mut stream) = proxied_echo().await;
        proxies.set_links(LinkState::lossy(1_000_000));
        assert_eq!(
            echoes(&mut stream).await,
            None,
            "the lost chunk closes the connection"
        );
        assert_eq!(proxies.counts().dropped, 1);
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
