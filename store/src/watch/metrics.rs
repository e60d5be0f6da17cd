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
    /// Creates the gauges, not registered anywhere yet (see [`Self::register`]).
    pub(crate) fn new() -> Self {
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

    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for gauge in [&self.watchers, &self.slow_watchers, &self.pending_events, &self.streams] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(())
    }
}
