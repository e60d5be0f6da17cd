//! Prometheus metrics, named as etcd names them where the meaning is the same, so etcd
//! dashboards and alerts work against Skiff unchanged.

use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder};

use crate::config::StoreConfig;
use crate::server::EtcdServer;

pub struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub db_total_size: IntGauge,
    pub db_in_use_size: IntGauge,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    pub quota_backend_bytes: Gauge,
    pub lease_count: IntGauge,
    pub range_total: IntCounter,
    pub put_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    pub request_duration: Histogram,
    pub raft_term: IntGauge,
    pub applied_index: IntGauge,
    pub leader_changes: IntCounter,
    last_leader_change: parking_lot::Mutex<Option<std::time::Instant>>,
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new(config: &StoreConfig) -> prometheus::Result<Self> {
        let r = Registry::new();
        let quota = Gauge::with_opts(Opts::new("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."))?;
        r.register(Box::new(quota.clone()))?;
        quota.set(config.quota_backend_bytes as f64);
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_server_proposal_duration_seconds",
                "Time from proposing a request to receiving its applied result.",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18)?),
        )?;
        r.register(Box::new(request_duration.clone()))?;
        Ok(Self {
            has_leader: gauge(&r, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
            is_leader: gauge(&r, "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
            leader_changes: counter(&r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?,
            last_leader_change: parking_lot::Mutex::new(None),
            proposals_committed: gauge(&r, "etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")?,
            proposals_applied: counter(&r, "etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")?,
            proposals_pending: gauge(&r, "etcd_server_proposals_pending", "The current number of pending proposals to commit.")?,
            proposals_failed: counter(&r, "etcd_server_proposals_failed_total", "The total number of failed proposals seen.")?,
            db_total_size: gauge(&r, "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")?,
            db_in_use_size: gauge(&r, "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")?,
            current_revision: gauge(&r, "etcd_debugging_mvcc_current_revision", "The current revision of store.")?,
            compact_revision: gauge(&r, "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")?,
            lease_count: gauge(&r, "etcd_debugging_lease_total", "The number of leases.")?,
            range_total: counter(&r, "etcd_mvcc_range_total", "Total number of ranges seen by this member.")?,
            put_total: counter(&r, "etcd_mvcc_put_total", "Total number of puts seen by this member.")?,
            delete_total: counter(&r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member.")?,
            txn_total: counter(&r, "etcd_mvcc_txn_total", "Total number of txns seen by this member.")?,
            raft_term: gauge(&r, "etcd_server_term", "The current term of this member.")?,
            applied_index: gauge(&r, "etcd_server_applied_index", "The current applied index of this member.")?,
            quota_backend_bytes: quota,
            request_duration,
            registry: r,
        })
    }

    /// The registry the server's components (watch hub) register their metrics in.
    /// Records that this member saw the leader change.
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
        *self.last_leader_change.lock() = Some(std::time::Instant::now());
    }

    pub fn last_leader_change(&self) -> Option<std::time::Instant> {
        *self.last_leader_change.lock()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Samples the gauges that mirror server state.
    pub fn refresh(&self, s: &EtcdServer) {
        let st = s.node.status();
        self.has_leader.set(i64::from(st.leader_id != 0));
        self.is_leader.set(i64::from(st.is_leader));
        self.proposals_committed.set(st.commit_index as i64);
        self.applied_index.set(st.applied_index as i64);
        self.raft_term.set(st.term as i64);
        self.db_total_size.set(s.mvcc.db_size_bytes() as i64);
        self.db_in_use_size.set(s.mvcc.db_size_in_use_bytes() as i64);
        self.current_revision.set(s.mvcc.current_revision());
        self.compact_revision.set(s.mvcc.compact_revision());
        self.lease_count.set(s.lessor.len() as i64);
    }

    /// The text exposition of this server's metrics plus the process-wide ones (the WAL's
    /// `etcd_disk_wal_fsync_duration_seconds` lives in the default registry).
    pub fn render(&self) -> Result<String, String> {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf).map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| e.to_string())
    }
}
