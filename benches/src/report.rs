//! The result of one run: an HDR histogram of successful request latencies, errors counted
//! by message, and the wall time. Printed in etcd `benchmark`'s summary format (etcd's
//! `pkg/report`), so figures from the two tools read the same, or as JSON (`--json`).
//!
//! Percentiles are HDR's: the p-th percentile is the smallest recorded value such that at
//! least p% of the samples are at or below it. (etcd's own report picks the sample at index
//! `ceil(p * n / 100)` of the sorted list, one sample higher when `p * n / 100` is whole;
//! the difference is one sample.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest latency the histogram tells apart, in microseconds.
const LATENCY_US_MIN: u64 = 1;
/// Largest latency recorded exactly; slower requests are clamped to it (see [`Report::record`]).
/// One hour is far beyond the per-request timeout.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits kept per value (0.1% relative error).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// etcd's percentiles in the "Latency distribution" section.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Buckets of the "Response time histogram" (etcd: 10 steps plus the slowest).
const HISTOGRAM_STEPS: usize = 10;
/// Width of the longest bar in the histogram, as in etcd.
const HISTOGRAM_BAR_WIDTH_MAX: u64 = 40;
const HISTOGRAM_BAR: char = '∎';
/// Distinct error messages kept; past this, further distinct messages share one line, so a
/// server that puts ids in its messages cannot grow the map without bound.
pub const ERROR_MESSAGES_MAX: usize = 64;
const ERROR_MESSAGES_OTHER: &str = "(other errors)";

/// Latencies and errors of one worker, merged into the run's report at the end.
#[derive(Clone, Debug)]
pub struct Report {
    latency_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    pub fn new() -> Report {
        let latency_us =
            Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid");
        Report {
            latency_us,
            errors: BTreeMap::new(),
        }
    }

    /// Records one successful request.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(LATENCY_US_MIN, LATENCY_US_MAX);
        self.latency_us
            .record(us)
            .expect("value is clamped into the histogram's range");
    }

    /// Counts one failed request by its message.
    pub fn record_error(&mut self, message: &str) {
        self.add_errors(message, 1);
    }

    /// Counts `count` failures with one message (e.g. events a watcher never saw).
    pub fn add_errors(&mut self, message: &str, count: u64) {
        let key = if self.errors.contains_key(message) || self.errors.len() < ERROR_MESSAGES_MAX - 1
        {
            message
        } else {
            ERROR_MESSAGES_OTHER
        };
        *self.errors.entry(key.to_string()).or_default() += count;
    }

    pub fn merge(&mut self, other: &Report) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        for (message, count) in &other.errors {
            self.add_errors(message, *count);
        }
    }

    /// Successful requests.
    pub fn requests(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The summary in etcd `benchmark`'s text format (nothing when no request succeeded
    /// and none failed).
    pub fn to_text(&self, elapsed: Duration) -> String {
        let mut out = String::new();
        let h = &self.latency_us;
        if !h.is_empty() {
            let secs = |us: f64| format!("{:4.4} secs", us / 1e6);
            let _ = writeln!(out, "\nSummary:");
            let _ = writeln!(out, "  Total:\t{}.", secs(elapsed.as_secs_f64() * 1e6));
            let _ = writeln!(out, "  Slowest:\t{}.", secs(h.max() as f64));
            let _ = writeln!(out, "  Fastest:\t{}.", secs(h.min() as f64));
            let _ = writeln!(out, "  Average:\t{}.", secs(h.mean()));
            let _ = writeln!(out, "  Stddev:\t{}.", secs(h.stdev()));
            let _ = writeln!(
                out,
                "  Requests/sec:\t{:4.4}",
                self.requests_per_sec(elapsed)
            );
            out.push_str(&self.histogram_text());
            let _ = writeln!(out, "\nLatency distribution:");
            for p in PERCENTILES {
                let _ = writeln!(out, "  {p}% in {}.", secs(h.value_at_percentile(p) as f64));
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (message, count) in &self.errors {
                let _ = writeln!(out, "  [{count}]\t{message}");
            }
        }
        out
    }

    /// etcd's "Response time histogram": 11 upper bounds evenly spaced from the fastest to
    /// the slowest request; each request counts in the first bucket whose bound it does not
    /// exceed.
    fn histogram_text(&self) -> String {
        let h = &self.latency_us;
        let (fastest_us, slowest_us) = (h.min(), h.max());
        let step_us = (slowest_us - fastest_us) as f64 / HISTOGRAM_STEPS as f64;
        let mut bounds_us: Vec<f64> = (0..HISTOGRAM_STEPS)
            .map(|i| fastest_us as f64 + step_us * i as f64)
            .collect();
        bounds_us.push(slowest_us as f64);
        let mut counts = vec![0u64; bounds_us.len()];
        let mut bucket = 0;
        for value in h.iter_recorded() {
            // `min()` is a lowest equivalent value: compare like with like, so the fastest
            // request always lands in the first bucket.
            let us = h.lowest_equivalent(value.value_iterated_to()) as f64;
            while us > bounds_us[bucket] && bucket < bounds_us.len() - 1 {
                bucket += 1;
            }
            counts[bucket] += value.count_at_value();
        }
        let count_max = counts.iter().copied().max().unwrap_or(0);
        let mut out = String::from("\nResponse time histogram:\n");
        for (bound_us, count) in bounds_us.iter().zip(&counts) {
            let bar_len = (count * HISTOGRAM_BAR_WIDTH_MAX)
                .checked_div(count_max)
                .unwrap_or(0);
            let bar: String = std::iter::repeat_n(HISTOGRAM_BAR, bar_len as usize).collect();
            let _ = writeln!(out, "  {:4.4} [{count}]\t|{bar}", bound_us / 1e6);
        }
        out
    }

    fn requests_per_sec(&self, elapsed: Duration) -> f64 {
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests() as f64 / secs
        } else {
            0.0
        }
    }

    /// The machine-readable result (`--json`).
    pub fn to_summary(&self, operation: &str, elapsed: Duration) -> Summary {
        let h = &self.latency_us;
        let quantile = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_percentile(p)
            }
        };
        Summary {
            operation: operation.to_string(),
            requests: self.requests(),
            errors_total: self.errors_total(),
            elapsed_secs: elapsed.as_secs_f64(),
            throughput_rps: self.requests_per_sec(elapsed),
            latency_us: LatencySummary {
                min: if h.is_empty() { 0 } else { h.min() },
                mean: if h.is_empty() { 0.0 } else { h.mean() },
                stddev: if h.is_empty() { 0.0 } else { h.stdev() },
                p50: quantile(50.0),
                p90: quantile(90.0),
                p99: quantile(99.0),
                p99_9: quantile(99.9),
                max: if h.is_empty() { 0 } else { h.max() },
            },
            errors: self.errors.clone(),
        }
    }
}

impl Report {
    /// Points of the latency CDF for plots: `(latency_us, fraction of requests at or below)`,
    /// at most [`CDF_POINTS_MAX`] of them, from the fastest to the slowest request.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let h = &self.latency_us;
        if h.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::new();
        let total = h.len() as f64;
        let mut seen = 0u64;
        for value in h.iter_recorded() {
            seen += value.count_at_value();
            points.push((
                h.highest_equivalent(value.value_iterated_to()),
                seen as f64 / total,
            ));
        }
        // Keep the shape with a bounded number of points: every k-th point, and the last.
        if points.len() > CDF_POINTS_MAX {
            let step = points.len().div_ceil(CDF_POINTS_MAX);
            let last = *points.last().expect("not empty");
            points = points.into_iter().step_by(step).collect();
            if points.last() != Some(&last) {
                points.push(last);
            }
        }
        points
    }

    /// The latency at percentile `p` in microseconds (0 when nothing was recorded).
    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_percentile(p)
        }
    }

    /// The slowest recorded latency in microseconds (0 when nothing was recorded).
    pub fn max_us(&self) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.max()
        }
    }
}

/// Bound on the points of one CDF curve in a plot.
pub const CDF_POINTS_MAX: usize = 400;

/// One named part of a run's result, e.g. the puts and the events of `watch`.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub report: Report,
    pub elapsed: Duration,
}

/// The whole result of one run: one section for the request-loop workloads, several for
/// `watch`, `watch-latency` and `kube`, plus figures that are not latencies (counts, rates).
#[derive(Clone, Debug)]
pub struct RunResult {
    pub operation: String,
    pub sections: Vec<Section>,
    pub figures: BTreeMap<String, f64>,
}

/// `--json` of a workload with several sections.
#[derive(Clone, Debug, Serialize)]
pub struct MultiSummary {
    pub operation: String,
    pub sections: Vec<Summary>,
    pub figures: BTreeMap<String, f64>,
}

impl RunResult {
    pub fn single(operation: &str, report: Report, elapsed: Duration) -> RunResult {
        RunResult {
            operation: operation.to_string(),
            sections: vec![Section {
                name: operation.to_string(),
                report,
                elapsed,
            }],
            figures: BTreeMap::new(),
        }
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// etcd's summary text; with several sections, each under its name, then the figures.
    pub fn to_text(&self) -> String {
        if let [only] = &self.sections[..] {
            if self.figures.is_empty() {
                return only.report.to_text(only.elapsed);
            }
        }
        let mut out = String::new();
        for section in &self.sections {
            let _ = writeln!(out, "\n{} ({}):", section.name, self.operation);
            let text = section.report.to_text(section.elapsed);
            out.push_str(if text.is_empty() {
                "\n  (no requests)\n"
            } else {
                &text
            });
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out, "\nFigures:");
            for (name, value) in &self.figures {
                let _ = writeln!(out, "  {name}:\t{value:.4}");
            }
        }
        out
    }

    /// `--json`: a [`Summary`] for one section, a [`MultiSummary`] otherwise.
    pub fn to_json(&self) -> serde_json::Result<String> {
        let summaries: Vec<Summary> = self
            .sections
            .iter()
            .map(|s| s.report.to_summary(&s.name, s.elapsed))
            .collect();
        if summaries.len() == 1 && self.figures.is_empty() {
            return serde_json::to_string_pretty(&summaries[0]);
        }
        serde_json::to_string_pretty(&MultiSummary {
            operation: self.operation.clone(),
            sections: summaries,
            figures: self.figures.clone(),
        })
    }
}

/// `--json` output.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Summary {
    pub operation: String,
    /// Successful requests.
    pub requests: u64,
    pub errors_total: u64,
    pub elapsed_secs: f64,
    /// Successful requests per second of wall time.
    pub throughput_rps: f64,
    pub latency_us: LatencySummary,
    /// Failed requests by error message.
    pub errors: BTreeMap<String, u64>,
}

/// Latencies of successful requests, in microseconds.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub min: u64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten samples each of 200, 400, .., 2000 µs. Below 2048 µs an HDR histogram with 3
    /// significant digits is exact, so every figure below is exact too.
    fn fixed_report() -> Report {
        let mut report = Report::new();
        for step in 1..=10u64 {
            for _ in 0..10 {
                report.record(Duration::from_micros(step * 200));
            }
        }
        report
    }

    #[test]
    fn percentiles_on_fixed_latencies() {
        let report = fixed_report();
        let s = report.to_summary("put", Duration::from_secs(2));
        assert_eq!(s.requests, 100);
        assert_eq!(s.errors_total, 0);
        assert_eq!(s.latency_us.min, 200);
        assert_eq!(s.latency_us.max, 2_000);
        assert_eq!(s.latency_us.p50, 1_000);
        assert_eq!(s.latency_us.p90, 1_800);
        assert_eq!(s.latency_us.p99, 2_000);
        assert_eq!(s.latency_us.p99_9, 2_000);
        assert!(
            (s.latency_us.mean - 1_100.0).abs() < 1e-6,
            "{}",
            s.latency_us.mean
        );
        // Population standard deviation of 1..=10 is sqrt(8.25); times the 200 µs step.
        assert!(
            (s.latency_us.stddev - 8.25f64.sqrt() * 200.0).abs() < 1e-3,
            "{}",
            s.latency_us.stddev
        );
        assert!((s.throughput_rps - 50.0).abs() < 1e-9);
    }

    #[test]
    fn text_matches_etcd_format_on_fixed_latencies() {
        let mut report = fixed_report();
        report.record_error("etcdserver: request timed out");
        report.record_error("etcdserver: request timed out");
        let bar = "∎".repeat(40);
        let expected = format!(
            "
Summary:
  Total:\t2.0000 secs.
  Slowest:\t0.0020 secs.
  Fastest:\t0.0002 secs.
  Average:\t0.0011 secs.
  Stddev:\t0.0006 secs.
  Requests/sec:\t50.0000

Response time histogram:
  0.0002 [10]\t|{bar}
  0.0004 [0]\t|
  0.0006 [10]\t|{bar}
  0.0007 [10]\t|{bar}
  0.0009 [10]\t|{bar}
  0.0011 [10]\t|{bar}
  0.0013 [10]\t|{bar}
  0.0015 [10]\t|{bar}
  0.0016 [10]\t|{bar}
  0.0018 [10]\t|{bar}
  0.0020 [10]\t|{bar}

Latency distribution:
  10% in 0.0002 secs.
  25% in 0.0006 secs.
  50% in 0.0010 secs.
  75% in 0.0016 secs.
  90% in 0.0018 secs.
  95% in 0.0020 secs.
  99% in 0.0020 secs.
  99.9% in 0.0020 secs.

Error distribution:
  [2]\tetcdserver: request timed out
"
        );
        assert_eq!(report.to_text(Duration::from_secs(2)), expected);
    }

    #[test]
    fn histogram_bars_scale_to_the_largest_bucket() {
        let mut report = Report::new();
        for _ in 0..40 {
            report.record(Duration::from_micros(100));
        }
        for _ in 0..10 {
            report.record(Duration::from_micros(1_100));
        }
        let text = report.histogram_text();
        assert!(
            text.contains(&format!("  0.0001 [40]\t|{}\n", "∎".repeat(40))),
            "{text}"
        );
        assert!(
            text.contains(&format!("  0.0011 [10]\t|{}\n", "∎".repeat(10))),
            "{text}"
        );
    }

    #[test]
    fn only_errors_prints_only_error_distribution() {
        let mut report = Report::new();
        report.record_error("b");
        report.record_error("a");
        report.record_error("b");
        assert_eq!(
            report.to_text(Duration::from_secs(1)),
            "\nError distribution:\n  [1]\ta\n  [2]\tb\n"
        );
        let s = report.to_summary("range", Duration::from_secs(1));
        assert_eq!((s.requests, s.errors_total, s.latency_us.p99), (0, 3, 0));
    }

    #[test]
    fn distinct_error_messages_are_bounded() {
        let mut report = Report::new();
        for i in 0..(ERROR_MESSAGES_MAX * 2) {
            report.record_error(&format!("error {i}"));
        }
        assert_eq!(report.errors.len(), ERROR_MESSAGES_MAX);
        assert_eq!(report.errors_total(), (ERROR_MESSAGES_MAX * 2) as u64);
        assert_eq!(
            report.errors[ERROR_MESSAGES_OTHER],
            (ERROR_MESSAGES_MAX + 1) as u64
        );
    }

    #[test]
    fn fastest_and_slowest_land_in_the_first_and_last_buckets_when_values_are_rounded() {
        // Above 2048 µs values share buckets; 4099 µs is recorded as [4096, 4099].
        let mut report = Report::new();
        report.record(Duration::from_micros(4_099));
        report.record(Duration::from_micros(9_999));
        let text = report.histogram_text();
        let counts: Vec<&str> = text
            .lines()
            .skip(2)
            .map(|line| line.split('\t').next().unwrap_or(""))
            .collect();
        assert!(
            counts[0].ends_with("[1]") && counts[10].ends_with("[1]"),
            "{text}"
        );
    }

    #[test]
    fn merge_adds_latencies_and_errors() {
        let mut a = fixed_report();
        a.record_error("x");
        let mut b = Report::new();
        b.record(Duration::from_millis(20));
        b.record_error("x");
        a.merge(&b);
        assert_eq!(a.requests(), 101);
        assert_eq!(a.errors["x"], 2);
        assert_eq!(
            a.to_summary("put", Duration::from_secs(1)).latency_us.max,
            20_000 + 15
        ); // 16 µs buckets there
    }

    #[test]
    fn cdf_ends_at_one_and_is_bounded() {
        let report = fixed_report();
        let cdf = report.cdf();
        assert_eq!(cdf.first(), Some(&(200, 0.1)));
        assert_eq!(cdf.last(), Some(&(2_000, 1.0)));
        let mut many = Report::new();
        for us in 1..=100_000u64 {
            many.record(Duration::from_micros(us));
        }
        let cdf = many.cdf();
        assert!(cdf.len() <= CDF_POINTS_MAX + 1, "{}", cdf.len());
        assert_eq!(cdf.last().map(|p| p.1), Some(1.0));
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn several_sections_print_under_their_names() {
        let mut result = RunResult::single("put", fixed_report(), Duration::from_secs(2));
        assert_eq!(
            result.to_text(),
            fixed_report().to_text(Duration::from_secs(2))
        );
        result.sections.push(Section {
            name: "event".to_string(),
            report: Report::new(),
            elapsed: Duration::from_secs(1),
        });
        result.figures.insert("events_total".to_string(), 3.0);
        let text = result.to_text();
        assert!(text.contains("\nput (put):\n"), "{text}");
        assert!(
            text.contains("\nevent (put):\n\n  (no requests)\n"),
            "{text}"
        );
        assert!(
            text.contains("\nFigures:\n  events_total:\t3.0000\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&result.to_json().unwrap()).unwrap();
        assert_eq!(json["sections"][1]["operation"], "event");
        assert_eq!(json["figures"]["events_total"], 3.0);
    }

    #[test]
    fn latency_is_clamped_into_range() {
        let mut report = Report::new();
        report.record(Duration::ZERO);
        report.record(Duration::from_secs(10 * 3600));
        let s = report.to_summary("put", Duration::from_secs(1));
        assert_eq!(s.latency_us.min, LATENCY_US_MIN);
        assert!(s.latency_us.max >= LATENCY_US_MAX);
    }
}
