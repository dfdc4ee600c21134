//! Minimal SVG line charts for reports (no dependencies, no network): one
//! chart is a set of named (x, y) series on linear axes with a legend.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    let (w, h) = (520.0, 360.0);
    let (ml, mr, mt, mb) = (64.0, 16.0, 36.0, 48.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="12">"#,
        w * charts.len() as f64
    );
    for (c, chart) in charts.iter().enumerate() {
        let ox = c as f64 * w;
        let pts: Vec<(f64, f64)> = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if pts.is_empty() {
            continue;
        }
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
        let (mut y0, mut y1) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-6);
        y0 -= pad;
        y1 += pad;
        x0 = x0.min(0.0);
        let px = |x: f64| ox + ml + (x - x0) / (x1 - x0) * (w - ml - mr);
        let py = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0)) * (h - mt - mb);
        let _ = write!(
            s,
            r#"<rect x="{ox}" y="0" width="{w}" height="{h}" fill="white"/>"#
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
            ox + w / 2.0,
            esc(&chart.title)
        );
        for t in nice_ticks(x0, x1, 6) {
            let x = px(t);
            let _ = write!(
                s,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                mt,
                h - mb,
                h - mb + 16.0,
                fmt_tick(t)
            );
        }
        for t in nice_ticks(y0, y1, 6) {
            let y = py(t);
            let _ = write!(
                s,
                r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                ox + ml,
                ox + w - mr,
                ox + ml - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{}" y="{mt}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            ox + ml,
            w - ml - mr,
            h - mt - mb
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            ox + ml + (w - ml - mr) / 2.0,
            h - 10.0,
            esc(&chart.x_label)
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
            ox + 14.0,
            mt + (h - mt - mb) / 2.0,
            ox + 14.0,
            mt + (h - mt - mb) / 2.0,
            esc(&chart.y_label)
        );
        for (i, ser) in chart.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = ser
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let ly = mt + 14.0 + 16.0 * i as f64;
            let lx = ox + w - mr - 150.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2"/><text x="{}" y="{ly}">{}</text>"#,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0,
                lx + 24.0,
                esc(&ser.name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_a_legend() {
        let chart = Chart {
            title: "held-out".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "clm".into(),
                    points: vec![(0.0, 8.0), (100.0, 6.0)],
                },
                Series {
                    name: "slm <k=0.6>".into(),
                    points: vec![(0.0, 8.0), (100.0, 5.5)],
                },
            ],
        };
        let out = svg(&[chart]);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("slm &lt;k=0.6&gt;"));
    }
}
