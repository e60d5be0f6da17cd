//! The gRPC `Watch` service: one bidirectional stream per call, many watchers per stream.
//!
//! Per stream there is one bounded outbound queue ([`STREAM_SEND_QUEUE_RESPONSES_MAX`])
//! shared by the hub (events, progress) and the request loop (create and cancel answers),
//! so everything a client sees on a stream is in the order it was queued. The request loop
//! runs as a task that also drives the stream's progress-notify ticker. The response side
//! is [`WatchResponseStream`], which turns queued messages into `WatchResponse`s (adding
//! the header, splitting fragments) as gRPC pulls them; dropping it, which tonic does when
//! the client goes away, removes every watcher of the stream.
//!
//! As in etcd, a client that half-closes its side keeps its watchers until it cancels the
//! call, and an inbound transport error ends the stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::hub::{Outbound, WatchCreate, WatchHub};
use super::watcher::{Filters, StreamId};
use super::{
    GRPC_OVERHEAD_BYTES, PROGRESS_NOTIFY_INTERVAL_DEFAULT, PROGRESS_NOTIFY_INTERVAL_MIN, REQUEST_BYTES_MAX_DEFAULT,
    STREAM_SEND_QUEUE_RESPONSES_MAX,
};
use crate::mvcc::{self, EventKind};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb;

/// Builds the `ResponseHeader` (cluster id, member id, raft term) for a response at a
/// revision; supplied by the server, which knows the cluster.
pub type HeaderFn = Arc<dyn Fn(i64) -> ResponseHeader + Send + Sync>;

/// Field number of `WatchResponse.events`, for sizing fragments without re-encoding.
const WATCH_RESPONSE_EVENTS_FIELD: u32 = 11;

/// Divides the progress interval to get the largest random jitter added to it per stream
/// (etcd adds up to a tenth), so streams opened together do not tick together.
const PROGRESS_NOTIFY_JITTER_DIVISOR: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchServiceConfig {
    /// Period of progress notifications to watchers that asked for `progress_notify`
    /// (etcd's `--experimental-watch-progress-notify-interval`); raised to
    /// [`PROGRESS_NOTIFY_INTERVAL_MIN`] like etcd does.
    pub progress_notify_interval: Duration,
    /// A response larger than this is split, when the watcher asked for `fragment`
    /// (etcd: `--max-request-bytes` plus [`GRPC_OVERHEAD_BYTES`]).
    pub response_bytes_max: usize,
}

impl Default for WatchServiceConfig {
    fn default() -> Self {
        Self {
            progress_notify_interval: PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            response_bytes_max: REQUEST_BYTES_MAX_DEFAULT + GRPC_OVERHEAD_BYTES,
        }
    }
}

impl WatchServiceConfig {
    /// The fragment limit etcd derives from `--max-request-bytes`.
    pub fn with_request_bytes_max(mut self, request_bytes_max: usize) -> Self {
        self.response_bytes_max = request_bytes_max + GRPC_OVERHEAD_BYTES;
        self
    }
}

/// The etcd `Watch` gRPC service over a [`WatchHub`].
#[derive(Clone)]
pub struct WatchService {
    hub: Arc<WatchHub>,
    header: HeaderFn,
    config: WatchServiceConfig,
}

impl WatchService {
    pub fn new(hub: Arc<WatchHub>, header: HeaderFn, mut config: WatchServiceConfig) -> Self {
        if config.progress_notify_interval < PROGRESS_NOTIFY_INTERVAL_MIN {
            tracing::warn!(
                requested = ?config.progress_notify_interval,
                min = ?PROGRESS_NOTIFY_INTERVAL_MIN,
                "adjusting watch progress notify interval to minimum period"
            );
            config.progress_notify_interval = PROGRESS_NOTIFY_INTERVAL_MIN;
        }
        assert!(config.response_bytes_max > 0, "watch response size limit must be positive");
        Self { hub, header, config }
    }

    /// Serves one watch stream: requests from `inbound`, responses from the returned stream.
    /// Must be called within a tokio runtime (it spawns the stream's request loop).
    pub fn open_stream<S>(&self, inbound: S) -> WatchResponseStream
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(STREAM_SEND_QUEUE_RESPONSES_MAX);
        let stream = self.hub.open_stream(tx.clone());
        let interval = self.config.progress_notify_interval;
        let jitter_max = interval / PROGRESS_NOTIFY_JITTER_DIVISOR;
        let jitter = jitter_max.mul_f64(rand::rng().random_range(0.0..1.0));
        let recv_task = tokio::spawn(request_loop(self.hub.clone(), stream, tx, Box::pin(inbound), interval + jitter));
        WatchResponseStream {
            rx,
            ready: VecDeque::new(),
            header: self.header.clone(),
            response_bytes_max: self.config.response_bytes_max,
            hub: self.hub.clone(),
            stream,
            recv_task,
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.open_stream(request.into_inner())))
    }
}

type Inbound = Pin<Box<dyn Stream<Item = Result<WatchRequest, Status>> + Send>>;

/// Reads the client's requests and ticks progress notifications until the client goes away.
async fn request_loop(
    hub: Arc<WatchHub>,
    stream: StreamId,
    tx: mpsc::Sender<Outbound>,
    mut inbound: Inbound,
    progress_interval: Duration,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + progress_interval, progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inbound_open = true;
    loop {
        tokio::select! {
            req = inbound.next(), if inbound_open => match req {
                Some(Ok(req)) => {
                    if !on_request(&hub, stream, &tx, req).await {
                        break;
                    }
                }
                Some(Err(status)) => {
                    tracing::debug!(%status, "watch stream: receive failed");
                    break;
                }
                // Half-closed by the client: its watchers stay until it cancels the call.
                None => inbound_open = false,
            },
            _ = ticker.tick() => hub.progress_tick(stream),
        }
    }
    // Dropping `tx` after this ends the response stream once it has drained.
    hub.close_stream(stream);
}

/// Handles one request; `false` when the stream is gone.
async fn on_request(hub: &WatchHub, stream: StreamId, tx: &mpsc::Sender<Outbound>, req: WatchRequest) -> bool {
    match req.request_union {
        Some(RequestUnion::CreateRequest(create)) => {
            let Ok(permit) = tx.reserve().await else { return false };
            hub.create_watch(stream, parse_create(create), permit);
        }
        Some(RequestUnion::CancelRequest(cancel)) => {
            if let Some(revision) = hub.cancel_watch(stream, cancel.watch_id) {
                let msg = Outbound::Canceled { watch_id: cancel.watch_id, revision, compact_revision: 0 };
                if tx.send(msg).await.is_err() {
                    return false;
                }
            }
        }
        Some(RequestUnion::ProgressRequest(_)) => hub.request_progress_all(stream),
        // etcd ignores requests it does not understand rather than ending the stream.
        None => tracing::debug!("watch stream: empty request ignored"),
    }
    true
}

fn parse_create(req: WatchCreateRequest) -> WatchCreate {
    let mut filters = Filters::default();
    for filter in &req.filters {
        match FilterType::try_from(*filter) {
            Ok(FilterType::Noput) => filters.no_put = true,
            Ok(FilterType::Nodelete) => filters.no_delete = true,
            Err(_) => {} // unknown filters are ignored, as in etcd
        }
    }
    WatchCreate {
        watch_id: req.watch_id,
        key: req.key,
        range_end: req.range_end,
        start_revision: req.start_revision,
        filters,
        prev_kv: req.prev_kv,
        progress_notify: req.progress_notify,
        fragment: req.fragment,
    }
}

/// The response half of a watch stream. Dropping it ends the stream: its request loop is
/// stopped and all its watchers are removed from the hub.
pub struct WatchResponseStream {
    rx: mpsc::Receiver<Outbound>,
    /// Fragments of a split response still to be sent.
    ready: VecDeque<WatchResponse>,
    header: HeaderFn,
    response_bytes_max: usize,
    hub: Arc<WatchHub>,
    stream: StreamId,
    recv_task: JoinHandle<()>,
}

impl Stream for WatchResponseStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(resp) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(resp)));
        }
        let Some(msg) = std::task::ready!(this.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        this.hub.metrics.pending_events.sub(msg.event_count() as i64);
        let resp = build_response(msg, &this.header);
        if resp.fragment {
            this.ready.extend(split_fragments(resp, this.response_bytes_max));
            Poll::Ready(this.ready.pop_front().map(Ok))
        } else {
            Poll::Ready(Some(Ok(resp)))
        }
    }
}

impl Drop for WatchResponseStream {
    fn drop(&mut self) {
        self.recv_task.abort();
        self.hub.close_stream(self.stream);
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            self.hub.metrics.pending_events.sub(msg.event_count() as i64);
        }
    }
}

/// The `WatchResponse` for a queued message. An events message of a watcher that asked
/// for `fragment` comes back with `fragment: true` as a mark for [`split_fragments`].
fn build_response(msg: Outbound, header: &HeaderFn) -> WatchResponse {
    let mut resp = WatchResponse::default();
    let revision = match msg {
        Outbound::Created { watch_id, revision, cancel_reason } => {
            resp.watch_id = watch_id;
            resp.created = true;
            resp.canceled = cancel_reason.is_some();
            resp.cancel_reason = cancel_reason.unwrap_or_default();
            revision
        }
        Outbound::Events { watch_id, revision, events, fragment } => {
            resp.watch_id = watch_id;
            resp.events = events.into_iter().map(event_to_pb).collect();
            resp.fragment = fragment;
            revision
        }
        Outbound::Progress { watch_id, revision } => {
            resp.watch_id = watch_id;
            revision
        }
        Outbound::Canceled { watch_id, revision, compact_revision } => {
            resp.watch_id = watch_id;
            resp.canceled = true;
            resp.compact_revision = compact_revision;
            revision
        }
    };
    resp.header = Some(header(revision));
    resp
}

/// etcd's `sendFragments`: a response of at least `bytes_max` bytes with two or more events
/// is sent as several, each filled with events while it stays under `bytes_max` (a single
/// event larger than that travels alone); all but the last carry `fragment: true`.
pub(crate) fn split_fragments(mut resp: WatchResponse, bytes_max: usize) -> Vec<WatchResponse> {
    resp.fragment = false;
    if resp.encoded_len() < bytes_max || resp.events.len() < 2 {
        return vec![resp];
    }
    let events = std::mem::take(&mut resp.events);
    resp.fragment = true;
    let empty_len = resp.encoded_len();
    let mut fragments = Vec::new();
    let mut current = Vec::new();
    let mut current_len = empty_len;
    for event in events {
        let event_len = prost::encoding::message::encoded_len(WATCH_RESPONSE_EVENTS_FIELD, &event);
        if !current.is_empty() && current_len + event_len >= bytes_max {
            fragments.push(WatchResponse { events: std::mem::take(&mut current), ..resp.clone() });
            current_len = empty_len;
        }
        current_len += event_len;
        current.push(event);
    }
    fragments.push(WatchResponse { events: current, fragment: false, ..resp });
    fragments
}

fn event_to_pb(event: mvcc::Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv_to_pb(event.kv)), prev_kv: event.prev_kv.map(kv_to_pb) }
}

fn kv_to_pb(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    kv.into()
}
