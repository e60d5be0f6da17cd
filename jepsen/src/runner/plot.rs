//! `latency.svg`: every completed operation as a point (x: when it was invoked, y: how long
//! it took, log scale), coloured by outcome and shaped by function, over the fault windows
//! shaded by kind, like Jepsen's latency-raw plot.
//!
//! Written by hand rather than with a plotting crate: the figure is a few hundred
//! rectangles, circles and lines, and plain SVG text needs no font files at run time, no
//! rasterizer and no extra dependency tree; any browser renders it.

use std::fmt::Write as _;

use super::cli::{FaultKind, WorkloadKind};
use super::nemesis::FaultWindow;
use super::report::function_name;
use crate::history::{Function, History, OpKind};

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 50.0;
const RIGHT: f64 = WIDTH - 230.0;
const BOTTOM: f64 = HEIGHT - 60.0;
/// Shortest latency the y axis shows, in ms; faster operations sit on the axis.
const LATENCY_FLOOR_MS: f64 = 0.01;
/// Most x-axis ticks.
const X_TICKS_MAX: f64 = 12.0;

fn outcome_colour(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Ok => "#1f77b4",
        OpKind::Fail => "#e377c2",
        OpKind::Info | OpKind::Invoke => "#ff7f0e",
    }
}

fn fault_colour(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Kill => "#d62728",
        FaultKind::Pause => "#9467bd",
        FaultKind::Partition => "#8c564b",
        FaultKind::PartitionOneWay => "#c49c94",
        FaultKind::Drop => "#bcbd22",
        FaultKind::Delay => "#dbdb8d",
        FaultKind::Clock => "#2ca02c",
        FaultKind::Membership => "#1f77b4",
        FaultKind::Disk => "#e7969c",
        FaultKind::DiskState => "#d6616b",
        FaultKind::PowerLoss => "#ad494a",
        FaultKind::MoveLeader => "#17becf",
        FaultKind::Compact => "#7f7f7f",
        FaultKind::Defrag => "#c7c7c7",
        FaultKind::GrowShrink => "#aec7e8",
        FaultKind::Snapshot => "#ff9896",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One marker of `f`'s shape at (x, y).
fn marker(out: &mut String, f: Function, x: f64, y: f64, colour: &str) {
    let _ = match f {
        Function::Read => writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.2" fill="{colour}"/>"#
        ),
        Function::Write => writeln!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="4" height="4" fill="{colour}"/>"#,
            x - 2.0,
            y - 2.0
        ),
        Function::Cas => writeln!(
            out,
            r#"<path d="M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z" fill="{colour}"/>"#,
            x,
            y - 2.8,
            x + 2.6,
            y + 2.0,
            x - 2.6,
            y + 2.0
        ),
    };
}

/// The whole SVG document.
pub fn latency_svg(
    history: &History,
    faults: &[FaultWindow],
    workload: WorkloadKind,
    title: &str,
) -> String {
    // (invoke s, latency ms, function, outcome)
    let mut points: Vec<(f64, f64, Function, OpKind)> = Vec::new();
    if let Ok(operations) = history.pair() {
        for op in operations {
            if let Some(done) = op.complete_index {
                let start = history.ops()[op.invoke_index].time_ns;
                let end = history.ops()[done].time_ns;
                points.push((
                    start as f64 / 1e9,
                    (end - start) as f64 / 1e6,
                    op.f,
                    op.outcome,
                ));
            }
        }
    }
    let last_event_s = history
        .ops()
        .last()
        .map_or(0.0, |op| op.time_ns as f64 / 1e9);
    let last_fault_s = faults
        .iter()
        .map(|w| w.end_ns.unwrap_or(w.start_ns) as f64 / 1e9)
        .fold(0.0, f64::max);
    let x_max = last_event_s.max(last_fault_s).max(1.0);
    let (lat_min, lat_max) = points.iter().fold((f64::MAX, 0.0f64), |(lo, hi), p| {
        (lo.min(p.1.max(LATENCY_FLOOR_MS)), hi.max(p.1))
    });
    let decade_low = if points.is_empty() {
        -1.0
    } else {
        lat_min.log10().floor()
    };
    let mut decade_high = if points.is_empty() {
        3.0
    } else {
        lat_max.max(LATENCY_FLOOR_MS).log10().ceil()
    };
    if decade_high <= decade_low {
        decade_high = decade_low + 1.0;
    }
    let x_of = |s: f64| LEFT + (s / x_max) * (RIGHT - LEFT);
    let y_of = |ms: f64| {
        let l = ms.max(LATENCY_FLOOR_MS).log10();
        BOTTOM - (l - decade_low) / (decade_high - decade_low) * (BOTTOM - TOP)
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );

    // Fault windows under everything else.
    for w in faults {
        let start = x_of(w.start_ns as f64 / 1e9);
        let end = x_of(
            w.end_ns
                .unwrap_or(history.ops().last().map_or(w.start_ns, |o| o.time_ns))
                as f64
                / 1e9,
        );
        let colour = fault_colour(w.kind);
        let label = escape(&format!("{} {}", w.kind.name(), w.targets.join(" ")));
        if end - start < 2.0 {
            let _ = writeln!(
                out,
                r#"<line x1="{start:.1}" y1="{TOP}" x2="{start:.1}" y2="{BOTTOM}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"><title>{label}</title></line>"#
            );
        } else {
            let _ = writeln!(
                out,
                r#"<rect x="{start:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{colour}" fill-opacity="0.15"><title>{label}</title></rect>"#,
                end - start,
                BOTTOM - TOP
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{colour}">{}</text>"#,
                start + 2.0,
                TOP + 11.0,
                escape(w.kind.name())
            );
        }
    }

    // Axes, decade grid lines, time ticks.
    let _ = writeln!(
        out,
        r##"<path d="M{LEFT} {TOP}V{BOTTOM}H{RIGHT}" fill="none" stroke="#333"/>"##
    );
    let mut decade = decade_low;
    while decade <= decade_high + 1e-9 {
        let y = y_of(10f64.powf(decade));
        let label = format_ms(10f64.powf(decade));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT - 6.0,
            y + 4.0
        );
        decade += 1.0;
    }
    let step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|&s| x_max / s <= X_TICKS_MAX)
    .unwrap_or(3600.0);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let x = x_of(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{t}</text>"##,
            BOTTOM + 5.0,
            BOTTOM + 18.0
        );
        t += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since start (s), by invocation</text>"#,
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>"#,
        (TOP + BOTTOM) / 2.0
    );

    // Points: ok first, then fail, then info, so that the rare outcomes stay visible.
    for pass in [OpKind::Ok, OpKind::Fail, OpKind::Info] {
        for &(s, ms, f, outcome) in &points {
            let outcome = if outcome == OpKind::Invoke {
                OpKind::Info
            } else {
                outcome
            };
            if outcome == pass {
                marker(&mut out, f, x_of(s), y_of(ms), outcome_colour(outcome));
            }
        }
    }

    // Legend.
    let lx = RIGHT + 25.0;
    let mut ly = TOP + 10.0;
    let _ = writeln!(
        out,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">operation</text>"#
    );
    let functions: &[Function] = match workload {
        WorkloadKind::Register => &[Function::Read, Function::Write, Function::Cas],
        WorkloadKind::Set | WorkloadKind::Watch => &[Function::Write],
        WorkloadKind::Append => &[Function::Read, Function::Write],
        WorkloadKind::LeaseLock | WorkloadKind::Kube => {
            &[Function::Read, Function::Write, Function::Cas]
        }
    };
    for &f in functions {
        ly += 18.0;
        marker(&mut out, f, lx + 5.0, ly - 4.0, "#333");
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{ly}">{}</text>"#,
            lx + 16.0,
            function_name(workload, f)
        );
    }
    ly += 28.0;
    let _ = writeln!(
        out,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">outcome</text>"#
    );
    for (kind, name) in [
        (OpKind::Ok, "ok"),
        (OpKind::Fail, "fail"),
        (OpKind::Info, "info (unknown)"),
    ] {
        ly += 18.0;
        marker(
            &mut out,
            Function::Read,
            lx + 5.0,
            ly - 4.0,
            outcome_colour(kind),
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{ly}">{name}</text>"#, lx + 16.0);
    }
    let mut kinds: Vec<FaultKind> = faults.iter().map(|w| w.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    if !kinds.is_empty() {
        ly += 28.0;
        let _ = writeln!(
            out,
            r#"<text x="{lx}" y="{ly}" font-weight="bold">faults</text>"#
        );
        for kind in kinds {
            ly += 18.0;
            let _ = writeln!(
                out,
                r#"<rect x="{lx}" y="{:.1}" width="11" height="11" fill="{}" fill-opacity="{}"/><text x="{:.1}" y="{ly}">{}</text>"#,
                ly - 10.0,
                fault_colour(kind),
                if kind.is_instantaneous() {
                    "0.8"
                } else {
                    "0.3"
                },
                lx + 16.0,
                kind.name()
            );
        }
    }
    let _ = writeln!(out, "</svg>");
    out
}

fn format_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        let s = format!("{ms:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HistoryBuilder, Value};

    #[test]
    fn draws_every_completed_operation_and_every_fault() {
        let history = HistoryBuilder::new()
            .invoke(0, Function::Write, Some("k"), Value::Int(1))
            .invoke(1, Function::Read, Some("k"), Value::Nil)
            .complete(0, OpKind::Ok, Function::Write, Some("k"), Value::Int(1))
            .complete(1, OpKind::Info, Function::Read, Some("k"), Value::Nil)
            .invoke(2, Function::Cas, Some("k"), Value::Pair(1, 2))
            .build();
        let faults = vec![
            FaultWindow {
                kind: FaultKind::Kill,
                targets: vec!["m1".into()],
                detail: "leader".into(),
                start_ns: 1,
                end_ns: Some(3),
            },
            FaultWindow {
                kind: FaultKind::Compact,
                targets: vec!["m2".into()],
                detail: "x < y & z".into(),
                start_ns: 2,
                end_ns: Some(2),
            },
        ];
        let svg = latency_svg(
            &history,
            &faults,
            WorkloadKind::Register,
            "register on <skiff>",
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("register on &lt;skiff&gt;"));
        // Two completed operations: a square (write, ok) and a circle (read, info); the
        // pending cas has no point. Legend markers are drawn in #333 or outcome colours.
        assert_eq!(
            svg.matches(r##"width="4" height="4" fill="#1f77b4""##)
                .count(),
            1
        );
        assert!(svg.contains(r##"r="2.2" fill="#ff7f0e""##));
        assert!(svg.contains("<title>kill m1</title>"));
        assert!(svg.contains("<title>compact m2</title>"));
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(format_ms(0.01), "0.01");
        assert_eq!(format_ms(100.0), "100");
    }
}
