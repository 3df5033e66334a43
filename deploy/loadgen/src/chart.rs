//! The chart: two stacked line panels (sagas per second; p99 end-to-end latency per second),
//! written as plain SVG text. A plotting crate would bring fonts and image codecs for what is a
//! few polylines and labels.

use std::fmt::Write;

use crate::stats::Second;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

struct Line<'a> {
    label: &'a str,
    colour: &'a str,
    values: Vec<f64>,
}

/// Renders the series as a standalone SVG document.
pub fn render(title: &str, series: &[Second]) -> String {
    let mut svg = String::new();
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let rates = [
        Line {
            label: "completed/s",
            colour: "#2a9d3c",
            values: series.iter().map(|s| s.completed as f64).collect(),
        },
        Line {
            label: "accepted/s",
            colour: "#3b6fd1",
            values: series.iter().map(|s| s.accepted as f64).collect(),
        },
        Line {
            label: "failed/s",
            colour: "#999999",
            values: series.iter().map(|s| s.failed as f64).collect(),
        },
    ];
    panel(&mut svg, TOP, "sagas per second", &rates);
    let latency = [Line {
        label: "p99 end-to-end (ms)",
        colour: "#d1453b",
        values: series.iter().map(|s| s.p99_e2e_ms).collect(),
    }];
    panel(
        &mut svg,
        TOP + PANEL + GAP,
        "p99 end-to-end latency (ms), sagas ending in that second",
        &latency,
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since the load started</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 12.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, top: f64, heading: &str, lines: &[Line<'_>]) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let n = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let max = nice_ceiling(
        lines
            .iter()
            .flat_map(|l| l.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let x = |i: usize| {
        LEFT + if n > 1 {
            plot_w * i as f64 / (n - 1) as f64
        } else {
            0.0
        }
    };
    let y = |v: f64| top + PANEL - PANEL * (v / max).clamp(0.0, 1.0);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(heading)
    );
    // Grid and y labels at quarters of the scale.
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y0:.1}" x2="{x1}" y2="{y0:.1}" stroke="#e4e4e4"/><text x="{lx}" y="{ly:.1}" text-anchor="end">{v}</text>"##,
            y0 = y(v),
            x1 = LEFT + plot_w,
            lx = LEFT - 6.0,
            ly = y(v) + 4.0,
            v = trim(v),
        );
    }
    // x labels: about ten ticks.
    let step = (n / 10).max(1);
    for i in (0..n).step_by(step) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{i}</text>"#,
            x(i),
            top + PANEL + 16.0
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888888"/>"##
    );
    for (k, line) in lines.iter().enumerate() {
        if line.values.is_empty() {
            continue;
        }
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            line.colour,
            points.join(" ")
        );
        let lx = LEFT + 10.0 + 170.0 * k as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            top + 12.0,
            line.colour,
            lx + 16.0,
            top + 17.0,
            escape(line.label)
        );
    }
}

/// A round upper bound for the axis (1, 2 or 5 times a power of ten), at least 1.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 1.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: every tag is closed in order, attributes are quoted.
    /// (An XML parser dependency for one test would be out of proportion.)
    fn well_formed(doc: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return Err("unclosed <".into());
            };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                let name = tag
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                stack.push(name);
            }
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    #[test]
    fn the_chart_is_a_well_formed_svg_document() {
        let series: Vec<Second> = (0..30)
            .map(|t| Second {
                t,
                accepted: 100,
                completed: 90 + t,
                failed: 10,
                p99_e2e_ms: 12.5 * t as f64,
            })
            .collect();
        let svg = render("closed <64> & more", &series);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("closed &lt;64&gt; &amp; more"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        well_formed(&svg).unwrap();
    }

    #[test]
    fn an_empty_run_still_renders() {
        well_formed(&render("empty", &[])).unwrap();
    }

    #[test]
    fn axis_ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(41.0), 50.0);
    }
}
