//! `/metrics`: kube-apiserver's request metrics under their usual names, so existing
//! dashboards work: `apiserver_request_total` and `apiserver_request_duration_seconds`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// kube-apiserver's request-duration buckets (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Watches served from the shared watch cache vs. from their own etcd watch.
    pub watch_sources: IntCounterVec,
    /// Lists served from the watch cache (kube's cacher metrics, same names and labels).
    pub cache_list: IntCounterVec,
    pub cache_list_fetched: IntCounterVec,
    pub cache_list_returned: IntCounterVec,
}

/// The labels of one request.
pub struct RequestLabels<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub scope: &'a str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("apiserver_request_total", "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code."),
            &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"],
        )
        .expect("valid metric");
        let watch_sources = IntCounterVec::new(
            Opts::new("skiff_apiserver_watch_source_total", "Watch requests by where their events came from: the shared watch cache or an etcd watch of their own."),
            &["source"],
        )
        .expect("valid metric");
        registry.register(Box::new(watch_sources.clone())).expect("registered once");
        let cache_list = IntCounterVec::new(
            Opts::new("apiserver_cache_list_total", "Number of LIST requests served from watch cache"),
            &["resource_prefix", "index"],
        )
        .expect("valid metric");
        let cache_list_fetched = IntCounterVec::new(
            Opts::new("apiserver_cache_list_fetched_objects_total", "Number of objects read from watch cache in the course of serving a LIST request"),
            &["resource_prefix", "index"],
        )
        .expect("valid metric");
        let cache_list_returned = IntCounterVec::new(
            Opts::new("apiserver_cache_list_returned_objects_total", "Number of objects returned for a LIST request from watch cache"),
            &["resource_prefix"],
        )
        .expect("valid metric");
        for c in [&cache_list, &cache_list_fetched, &cache_list_returned] {
            registry.register(Box::new(c.clone())).expect("registered once");
        }
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(duration.clone())).expect("registered once");
        Metrics { registry, requests, duration, watch_sources, cache_list, cache_list_fetched, cache_list_returned }
    }

    pub fn observe(&self, l: &RequestLabels<'_>, dry_run: bool, code: u16, seconds: f64) {
        let dry = if dry_run { "All" } else { "" };
        let code = code.to_string();
        self.requests
            .with_label_values(&[l.verb, dry, l.group, l.version, l.resource, l.subresource, l.scope, "apiserver", &code])
            .inc();
        // Watches are long-lived by design; kube excludes them from the latency histogram.
        if l.verb != "WATCH" {
            self.duration
                .with_label_values(&[l.verb, dry, l.group, l.version, l.resource, l.subresource, l.scope, "apiserver"])
                .observe(seconds);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
