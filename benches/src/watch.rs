//! `watch` and `watch-latency`: watchers on watch streams, writers putting to the watched
//! keys, and the time from a put to its event at each watcher.
//!
//! Every value written here starts with the put's start time (nanoseconds since the run's
//! epoch, little-endian), so a watcher computes the put-to-event latency from the event alone,
//! with any number of concurrent writers. `watch-latency` also waits for each put's events
//! before the next put (as etcd's tool does), which gives the latency after the put's ack too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use tokio::sync::{mpsc, watch as signal};

use crate::cli::{Limit, WatchArgs, WatchLatencyArgs};
use crate::load::{self, Pacer, REQUEST_TIMEOUT};
use crate::report::{Report, RunResult, Section};
use crate::workload::{error_message, Op};

/// After the last put, how long the watchers may go without a new event before the run
/// ends and the missing events are counted.
const EVENT_QUIET_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the whole drain after the last put.
const EVENT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of the drain.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Reports the watchers record event latencies into (as load.rs's shards).
const EVENT_REPORT_SHARDS: usize = 16;
/// Bytes of a value that carry the put's start time.
pub const STAMP_BYTES: usize = 8;

/// Key `i` of `total` watched keys: `/bench/watch/000042`, zero padded to `key_size`.
pub fn watch_key(index: u64, key_size: usize) -> Vec<u8> {
    const PREFIX: &str = "/bench/watch/";
    let width = key_size.saturating_sub(PREFIX.len());
    format!("{PREFIX}{index:0width$}").into_bytes()
}

/// A value of `size` bytes (at least [`STAMP_BYTES`]) stamped with `now - epoch`.
pub fn stamped_value(epoch: Instant, size: usize) -> Vec<u8> {
    let nanos = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut value = vec![b'v'; size.max(STAMP_BYTES)];
    value[..STAMP_BYTES].copy_from_slice(&nanos.to_le_bytes());
    value
}

/// The time since the stamp in `value` was taken, if `value` carries one.
pub fn since_stamp(epoch: Instant, value: &[u8]) -> Option<Duration> {
    let stamp: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    let put_at = Duration::from_nanos(u64::from_le_bytes(stamp));
    epoch.elapsed().checked_sub(put_at)
}

/// Opens `watchers` watchers spread round-robin over `streams` watch streams (stream `s` on
/// connection `s % conns`); watcher `w` watches `key_of(w)`. Returns the streams and the
/// creation latency of each watcher (send to `created` response).
pub async fn open_watchers(
    conns: &[Client],
    streams: u32,
    watchers: u32,
    key_of: impl Fn(u32) -> Vec<u8>,
    options: WatchOptions,
) -> anyhow::Result<(Vec<WatchStream>, Report)> {
    let streams = streams.min(watchers).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..streams {
        let keys: Vec<Vec<u8>> = (s..watchers)
            .step_by(streams as usize)
            .map(&key_of)
            .collect();
        let mut client = conns[s as usize % conns.len()].watch_client();
        let options = options.clone();
        tasks.spawn(async move {
            let mut creation = Report::new();
            let mut stream: Option<WatchStream> = None;
            for key in keys {
                let started = Instant::now();
                match stream.as_mut() {
                    None => {
                        stream = Some(
                            client
                                .watch(key, Some(options.clone()))
                                .await
                                .map_err(|e| anyhow::anyhow!(error_message(e)))?,
                        );
                    }
                    Some(stream) => stream
                        .watch(key, Some(options.clone()))
                        .await
                        .map_err(|e| anyhow::anyhow!(error_message(e)))?,
                }
                let stream = stream.as_mut().expect("opened above");
                loop {
                    let message = tokio::time::timeout(REQUEST_TIMEOUT, stream.message())
                        .await
                        .context("watch creation timed out")?
                        .map_err(|e| anyhow::anyhow!(error_message(e)))?
                        .context("watch stream closed during creation")?;
                    if message.canceled() {
                        bail!("watch refused: {}", message.cancel_reason());
                    }
                    if message.created() {
                        break;
                    }
                }
                creation.record(started.elapsed());
            }
            anyhow::Ok((stream, creation))
        });
    }
    let mut out = Vec::new();
    let mut creation = Report::new();
    while let Some(joined) = tasks.join_next().await {
        let (stream, report) = joined.context("a watch opener panicked")??;
        creation.merge(&report);
        out.extend(stream);
    }
    Ok((out, creation))
}

/// What the stream readers of `watch` share.
struct EventSink {
    epoch: Instant,
    events: AtomicU64,
    reports: Vec<Mutex<Report>>,
    /// Nanoseconds since the epoch of the last event seen.
    last_event_ns: AtomicU64,
}

impl EventSink {
    fn merged(&self) -> Report {
        let mut report = Report::new();
        for shard in &self.reports {
            report.merge(&shard.lock().expect("report lock poisoned"));
        }
        report
    }
}

/// Reads one watch stream until `stop`, recording each stamped event's latency.
async fn read_events(
    mut stream: WatchStream,
    sink: Arc<EventSink>,
    shard: usize,
    mut stop: signal::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            _ = stop.changed() => return Ok(()),
        };
        let Some(message) = message.map_err(error_message)? else {
            return Err("watch stream closed".to_string());
        };
        if message.canceled() {
            return Err(format!("watch canceled: {}", message.cancel_reason()));
        }
        let mut report = sink.reports[shard].lock().expect("report lock poisoned");
        for event in message.events() {
            sink.events.fetch_add(1, Ordering::Relaxed);
            if let Some(latency) = event
                .kv()
                .and_then(|kv| since_stamp(sink.epoch, kv.value()))
            {
                report.record(latency);
            }
        }
        let now_ns = u64::try_from(sink.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sink.last_event_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

/// `skiff bench watch`.
pub async fn run_watch(
    conns: &[Client],
    slow_conns: &[Client],
    clients: u32,
    args: &WatchArgs,
) -> anyhow::Result<RunResult> {
    let epoch = Instant::now();
    let watchers = args
        .streams
        .checked_mul(args.watch_per_stream)
        .filter(|&w| w <= crate::cli::WATCHERS_MAX)
        .with_context(|| format!("more than {} watchers", crate::cli::WATCHERS_MAX))?;
    let key_total = args.watched_key_total;
    let key_size = args.key_size as usize;
    // Watcher w watches key w % key_total, on stream w % streams.
    let (streams, creation) = open_watchers(
        conns,
        args.streams,
        watchers,
        |w| watch_key(u64::from(w) % key_total, key_size),
        WatchOptions::new(),
    )
    .await?;
    let watchers_of = |key: u64| -> u64 {
        let w = u64::from(watchers);
        w / key_total + u64::from(key < w % key_total)
    };

    let sink = Arc::new(EventSink {
        epoch,
        events: AtomicU64::new(0),
        reports: (0..EVENT_REPORT_SHARDS)
            .map(|_| Mutex::new(Report::new()))
            .collect(),
        last_event_ns: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        readers.spawn(read_events(
            stream,
            Arc::clone(&sink),
            i % EVENT_REPORT_SHARDS,
            stop_rx.clone(),
        ));
    }

    // Never read until the run ends; dropped (closed) after the drain.
    let slow_streams = if args.slow_watchers > 0 {
        anyhow::ensure!(!slow_conns.is_empty(), "slow watchers need a connection");
        let (streams, _) = open_watchers(
            slow_conns,
            args.slow_watchers,
            args.slow_watchers,
            |w| watch_key(u64::from(w) % key_total, key_size),
            WatchOptions::new(),
        )
        .await?;
        streams
    } else {
        Vec::new()
    };

    let puts_started = Instant::now();
    let op = Op::StampedPut {
        epoch,
        key_total,
        key_size,
        val_size: args.val_size as usize,
        acked_per_key: Arc::new((0..key_total).map(|_| AtomicU64::new(0)).collect()),
    };
    let Op::StampedPut { acked_per_key, .. } = &op else {
        unreachable!("constructed above")
    };
    let acked_per_key = Arc::clone(acked_per_key);
    let (put_report, put_elapsed) = load::run_op(conns, clients, op, &args.limit).await?;
    let expected: u64 = acked_per_key
        .iter()
        .enumerate()
        .map(|(key, acked)| acked.load(Ordering::Relaxed) * watchers_of(key as u64))
        .sum();
    drain(&sink.events, expected).await;
    let _ = stop_tx.send(true);
    drop(slow_streams);
    let mut reader_errors = Vec::new();
    while let Some(joined) = readers.join_next().await {
        if let Err(message) = joined.context("a watch reader panicked")? {
            reader_errors.push(message);
        }
    }
    let received = sink.events.load(Ordering::Relaxed);
    let events_elapsed = Duration::from_nanos(sink.last_event_ns.load(Ordering::Relaxed))
        .saturating_sub(puts_started.duration_since(epoch));
    let mut event_report = sink.merged();
    for message in &reader_errors {
        event_report.record_error(message);
    }
    let mut result = RunResult {
        operation: "watch".to_string(),
        sections: vec![
            Section {
                name: "watch creation".to_string(),
                report: creation,
                elapsed: puts_started.duration_since(epoch),
            },
            Section {
                name: "put".to_string(),
                report: put_report,
                elapsed: put_elapsed,
            },
            Section {
                name: "event (put start to event)".to_string(),
                report: event_report,
                elapsed: events_elapsed,
            },
        ],
        figures: Default::default(),
    };
    let secs = events_elapsed.as_secs_f64();
    for (name, value) in [
        ("watchers", f64::from(watchers)),
        ("slow_watchers", f64::from(args.slow_watchers)),
        ("events_expected", expected as f64),
        ("events_received", received as f64),
        ("events_missing", expected.saturating_sub(received) as f64),
        (
            "events_per_sec",
            if secs > 0.0 {
                received as f64 / secs
            } else {
                0.0
            },
        ),
    ] {
        result.figures.insert(name.to_string(), value);
    }
    Ok(result)
}

/// Waits until `events` reaches `expected`, or stops growing for [`EVENT_QUIET_TIMEOUT`],
/// or [`EVENT_DRAIN_TIMEOUT`] passes.
async fn drain(events: &AtomicU64, expected: u64) {
    let deadline = Instant::now() + EVENT_DRAIN_TIMEOUT;
    let mut last = events.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last < expected && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL_INTERVAL).await;
        let now = events.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= EVENT_QUIET_TIMEOUT {
            break;
        }
    }
}

/// One watcher's sighting of one put's event.
struct Arrival {
    revision: i64,
    at: Instant,
}

/// Reads one `watch-latency` stream: forwards every put event's arrival to the writer.
async fn forward_arrivals(
    mut stream: WatchStream,
    arrivals: mpsc::Sender<Arrival>,
    mut stop: signal::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            _ = stop.changed() => return Ok(()),
        };
        let at = Instant::now();
        let Some(message) = message.map_err(error_message)? else {
            return Err("watch stream closed".to_string());
        };
        for event in message.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            let revision = event.kv().map_or(0, |kv| kv.mod_revision());
            if arrivals.send(Arrival { revision, at }).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// `skiff bench watch-latency`.
pub async fn run_watch_latency(
    conns: &[Client],
    args: &WatchLatencyArgs,
) -> anyhow::Result<RunResult> {
    let key = watch_key(0, args.key_size as usize);
    let (streams, creation) = open_watchers(
        conns,
        args.streams,
        args.watchers,
        |_| key.clone(),
        WatchOptions::new(),
    )
    .await?;
    // Each put waits for exactly one arrival per watcher before the next put, so this
    // many arrivals are ever queued at once.
    let (arrivals_tx, mut arrivals_rx) = mpsc::channel::<Arrival>(args.watchers as usize);
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for stream in streams {
        readers.spawn(forward_arrivals(
            stream,
            arrivals_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(arrivals_tx);

    let mut kv = conns[0].kv_client();
    let value = vec![b'v'; args.val_size as usize];
    let pacer = Pacer::new(&Limit {
        total: None,
        duration: None,
        rate: args.put_rate,
    })
    .expect("--put-rate is at least 1");
    let progress = load::progress_bar(crate::cli::Stop::AfterRequests(args.put_total));
    let mut put_report = Report::new();
    let mut from_start = Report::new();
    let mut from_ack = Report::new();
    let mut before_ack = 0u64;
    let started = Instant::now();
    for _ in 0..args.put_total {
        pacer.wait().await;
        let put_started = Instant::now();
        let put =
            tokio::time::timeout(REQUEST_TIMEOUT, kv.put(key.clone(), value.clone(), None)).await;
        let acked = Instant::now();
        let revision = match put {
            Ok(Ok(response)) => {
                put_report.record(acked - put_started);
                response.header().map_or(0, |h| h.revision())
            }
            Ok(Err(e)) => {
                put_report.record_error(&error_message(e));
                continue;
            }
            Err(_) => {
                put_report.record_error("skiff bench: request timed out");
                continue;
            }
        };
        let mut seen = 0;
        while seen < args.watchers {
            match tokio::time::timeout(REQUEST_TIMEOUT, arrivals_rx.recv()).await {
                Ok(Some(arrival)) if arrival.revision == revision => {
                    seen += 1;
                    from_start.record(arrival.at.saturating_duration_since(put_started));
                    if arrival.at < acked {
                        before_ack += 1;
                    }
                    from_ack.record(arrival.at.saturating_duration_since(acked));
                }
                // An event of an earlier put whose wait timed out.
                Ok(Some(_)) => {}
                Ok(None) => bail!("every watch stream closed"),
                Err(_) => {
                    from_start.record_error("skiff bench: event not delivered in time");
                    break;
                }
            }
        }
        progress.inc(1);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let _ = stop_tx.send(true);
    drop(arrivals_rx);
    while let Some(joined) = readers.join_next().await {
        if let Err(message) = joined.context("a watch reader panicked")? {
            from_start.record_error(&message);
        }
    }
    let mut result = RunResult {
        operation: "watch-latency".to_string(),
        sections: [
            ("watch creation", creation),
            ("put", put_report),
            ("watch (put start to event)", from_start),
            ("watch (put ack to event)", from_ack),
        ]
        .into_iter()
        .map(|(name, report)| Section {
            name: name.to_string(),
            report,
            elapsed,
        })
        .collect(),
        figures: Default::default(),
    };
    result
        .figures
        .insert("watchers".to_string(), f64::from(args.watchers));
    result
        .figures
        .insert("events_before_put_ack".to_string(), before_ack as f64);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let epoch = Instant::now() - Duration::from_secs(5);
        let value = stamped_value(epoch, 32);
        assert_eq!(value.len(), 32);
        let since = since_stamp(epoch, &value).unwrap();
        assert!(since < Duration::from_secs(5), "{since:?}");
        assert_eq!(stamped_value(epoch, 2).len(), STAMP_BYTES);
        assert_eq!(since_stamp(epoch, b"short"), None);
    }

    #[test]
    fn watch_keys_are_padded() {
        assert_eq!(watch_key(42, 20), b"/bench/watch/0000042".to_vec());
        assert_eq!(watch_key(42, 1), b"/bench/watch/42".to_vec());
    }
}
