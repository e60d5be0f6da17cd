//! A small SVG writer for the benchmark plots: grouped bar charts (ratios skiff/etcd) and
//! latency CDFs (log-scale x axis). Plain strings, no plotting tools.

use std::fmt::Write as _;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 420.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 170.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 110.0;
/// Colours of the series, in order (skiff first, then etcd, then others).
const PALETTE: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
}

fn legend(out: &mut String, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let y = MARGIN_TOP + 10.0 + 18.0 * i as f64;
        let x = WIDTH - MARGIN_RIGHT + 15.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y - 10.0,
            PALETTE[i % PALETTE.len()],
            x + 18.0,
            y,
            escape(name)
        );
    }
}

/// A bar chart: one group per category, one bar per series; a dashed line at `reference`
/// (e.g. 1.0 for "same as etcd") when given.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    reference: Option<f64>,
) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let finite = |v: &f64| v.is_finite();
    let y_max = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied().filter(finite))
        .chain(reference)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let y_of = |v: f64| MARGIN_TOP + plot_h - (v / y_max) * plot_h;
    // Axes and ticks.
    let _ = writeln!(
        out,
        r#"<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{}" stroke="black"/><line x1="{MARGIN_LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
        MARGIN_TOP + plot_h,
        MARGIN_LEFT + plot_w
    );
    for t in 0..=5 {
        let v = y_max * f64::from(t) / 5.0;
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v:.2}</text>"##,
            MARGIN_LEFT,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 5.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {0})" text-anchor="middle">{}</text>"#,
        MARGIN_TOP + plot_h / 2.0,
        escape(y_label)
    );
    let groups = categories.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let gx = MARGIN_LEFT + group_w * c as f64 + group_w * 0.1;
        for (s, (_, values)) in series.iter().enumerate() {
            let v = values.get(c).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let y = y_of(v);
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{bar_w:.1}" height="{:.1}" fill="{}"><title>{}: {v:.3}</title></rect>"#,
                gx + bar_w * s as f64,
                MARGIN_TOP + plot_h - y,
                PALETTE[s % PALETTE.len()],
                escape(category)
            );
        }
        let lx = gx + group_w * 0.4;
        let ly = MARGIN_TOP + plot_h + 12.0;
        let _ = writeln!(
            out,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{}</text>"#,
            escape(category)
        );
    }
    if let Some(r) = reference {
        let y = y_of(r);
        let _ = writeln!(
            out,
            r#"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black" stroke-dasharray="5,4"/>"#,
            MARGIN_LEFT + plot_w
        );
    }
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

/// Latency CDFs: one curve per series of `(latency_us, fraction)` points; x is log-scale.
pub fn cdf_chart(title: &str, series: &[(String, Vec<(u64, f64)>)]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let all = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(us, _)| us.max(1)));
    let (min_us, max_us) = all.fold((u64::MAX, 1u64), |(lo, hi), us| (lo.min(us), hi.max(us)));
    let lo = (min_us.min(max_us) as f64).log10().floor();
    let hi = (max_us as f64).log10().ceil().max(lo + 1.0);
    let x_of = |us: u64| MARGIN_LEFT + ((us.max(1) as f64).log10() - lo) / (hi - lo) * plot_w;
    let y_of = |f: f64| MARGIN_TOP + plot_h - f * plot_h;
    let _ = writeln!(
        out,
        r#"<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{}" stroke="black"/><line x1="{MARGIN_LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
        MARGIN_TOP + plot_h,
        MARGIN_LEFT + plot_w
    );
    for t in 0..=4 {
        let f = f64::from(t) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN_LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{f:.2}</text>"##,
            y_of(f),
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 5.0,
            y_of(f) + 4.0
        );
    }
    let mut decade = lo;
    while decade <= hi {
        let us = 10f64.powf(decade);
        let x = MARGIN_LEFT + (decade - lo) / (hi - lo) * plot_w;
        let label = if us >= 1e6 {
            format!("{}s", us / 1e6)
        } else if us >= 1e3 {
            format!("{}ms", us / 1e3)
        } else {
            format!("{us}µs")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            MARGIN_TOP + plot_h,
            MARGIN_TOP + plot_h + 16.0
        );
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (log scale)</text><text x="16" y="{}" transform="rotate(-90 16 {2})" text-anchor="middle">fraction of requests</text>"#,
        MARGIN_LEFT + plot_w / 2.0,
        MARGIN_TOP + plot_h + 36.0,
        MARGIN_TOP + plot_h / 2.0
    );
    for (s, (_, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|&(us, f)| format!("{:.1},{:.1}", x_of(us), y_of(f)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            PALETTE[s % PALETTE.len()],
            path.join(" ")
        );
    }
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_has_a_bar_per_finite_value_and_escapes_text() {
        let svg = bar_chart(
            "ratio <skiff/etcd>",
            "ratio",
            &["put".into(), "range".into()],
            &[
                ("1 member".into(), vec![2.0, f64::NAN]),
                ("3 members".into(), vec![0.5, 1.5]),
            ],
            Some(1.0),
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3, "{svg}");
        assert!(svg.contains("ratio &lt;skiff/etcd&gt;"));
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn cdf_chart_draws_one_polyline_per_series() {
        let svg = cdf_chart(
            "put latency",
            &[
                ("skiff".into(), vec![(100, 0.5), (1_000, 1.0)]),
                ("etcd".into(), vec![(200, 0.5), (20_000, 1.0)]),
                ("empty".into(), vec![]),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("1ms") && svg.contains("100µs"), "{svg}");
    }
}
