//! The watch gauges, under etcd's names so existing dashboards and alerts work.

use prometheus::{IntGauge, Registry};

#[derive(Debug, Clone)]
pub(crate) struct WatchMetrics {
    /// `etcd_debugging_mvcc_watcher_total`: watchers alive, synced or not.
    pub(crate) watchers: IntGauge,
    /// `etcd_debugging_mvcc_slow_watcher_total`: unsynced watchers (catching up or victims).
    pub(crate) slow_watchers: IntGauge,
    /// `etcd_debugging_mvcc_pending_events_total`: events queued to streams, not yet sent.
    pub(crate) pending_events: IntGauge,
    /// `etcd_debugging_mvcc_watch_stream_total`: open watch streams.
    pub(crate) streams: IntGauge,
}

impl WatchMetrics {
    /// Creates the gauges and registers them in `registry`.
    pub(crate) fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        for gauge in [&metrics.watchers, &metrics.slow_watchers, &metrics.pending_events, &metrics.streams] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(metrics)
    }

    fn unregistered() -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric name and help");
        Self {
            watchers: gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            slow_watchers: gauge(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            pending_events: gauge(
                "etcd_debugging_mvcc_pending_events_total",
                "Total number of pending events to be sent.",
            ),
            streams: gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
        }
    }
}
