//! The latency timeline: x = when each file was due, y = its latency (linear or log), one point per
//! file, the p50 and p99 of each time bucket as lines that break where no file was due, and a
//! labelled vertical marker for every fault event. SVG or PNG, chosen by the file name.

use std::path::Path;
use std::sync::Once;

use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use redcount_protocol::JobEvent;

use crate::{Band, LatencyRow};

/// What to draw.
pub struct Timeline<'a> {
    /// The plot's title.
    pub title: &'a str,
    /// One point per file.
    pub rows: &'a [LatencyRow],
    /// p50/p99 per bucket, as from [`crate::bands`].
    pub bands: &'a [Band],
    /// The buckets' width (ms).
    pub bucket_ms: u64,
    /// Events, drawn as labelled markers.
    pub events: &'a [JobEvent],
    /// Time zero of the x axis (ms), usually the first due time.
    pub start_ms: u64,
    /// A log latency axis (most points sit near the bottom of a linear one).
    pub log_y: bool,
}

/// Draws the timeline into `path` (`.svg` or `.png`).
pub fn plot(path: &Path, timeline: &Timeline) -> anyhow::Result<()> {
    register_font()?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let size = (1200, 600);
    match ext.as_str() {
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), timeline),
        "png" => draw(BitMapBackend::new(path, size).into_drawing_area(), timeline),
        _ => bail!("{}: the plot file must end in .svg or .png", path.display()),
    }
    .with_context(|| format!("cannot draw {}", path.display()))
}

/// plotters draws text with a font it is given: DejaVu Sans ships inside the binary, so plots need no
/// fonts installed on the machine.
fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut failed = false;
    ONCE.call_once(|| {
        failed = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_err();
    });
    if failed {
        bail!("the embedded DejaVu Sans font could not be loaded");
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, t: &Timeline) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let x_max = t
        .rows
        .iter()
        .map(|r| seconds(t, r.due_at_ms))
        .chain(t.events.iter().map(|e| seconds(t, e.at_ms)))
        .fold(1.0, f64::max)
        * 1.02;
    let y_max = t
        .rows
        .iter()
        .map(|r| r.latency_ms as f64)
        .fold(10.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&area);
    chart
        .caption(t.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if t.log_y {
        // Latencies of 0 ms sit on the axis floor of 1 ms.
        let mut chart = chart
            .build_cartesian_2d(0.0..x_max, (1.0..y_max).log_scale())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        series(&mut chart, t, 1.0, y_max)?;
    } else {
        let mut chart = chart
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        series(&mut chart, t, 0.0, y_max)?;
    }
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn seconds(t: &Timeline, ms: u64) -> f64 {
    ms.saturating_sub(t.start_ms) as f64 / 1000.0
}

/// Points, band lines, event markers and the legend, on either y axis.
fn series<'b, DB, Y>(
    chart: &mut ChartContext<'b, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    t: &Timeline,
    y_min: f64,
    y_max: f64,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'b,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e}");
    chart
        .configure_mesh()
        .x_desc("when the file was due (s)")
        .y_desc("latency from due to committed (ms)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(t.rows.iter().map(|r| {
            Circle::new(
                (seconds(t, r.due_at_ms), (r.latency_ms as f64).max(y_min)),
                2,
                BLUE.mix(0.35).filled(),
            )
        }))
        .map_err(err)?
        .label("file")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    // One line per run of consecutive buckets: a gap with no file due is not bridged.
    let runs = |pick: fn(&Band) -> u64| -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last: Option<u64> = None;
        for b in t.bands {
            let point = (
                seconds(t, b.start_ms + t.bucket_ms / 2),
                (pick(b) as f64).max(y_min),
            );
            match (last, out.last_mut()) {
                (Some(prev), Some(run)) if b.start_ms == prev + t.bucket_ms => run.push(point),
                _ => out.push(vec![point]),
            }
            last = Some(b.start_ms);
        }
        out
    };
    for (name, color, pick) in [
        (
            "p50 per bucket",
            GREEN.mix(0.9),
            (|b: &Band| b.p50) as fn(&Band) -> u64,
        ),
        ("p99 per bucket", RED.mix(0.9), |b: &Band| b.p99),
    ] {
        let mut first = true;
        for run in runs(pick) {
            let drawn = chart
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(err)?;
            if std::mem::take(&mut first) {
                drawn.label(name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
    }
    for (i, e) in t.events.iter().enumerate() {
        let x = seconds(t, e.at_ms);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y_min), (x, y_max)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?;
        // Stagger labels so events close together stay readable.
        let y = y_min + (y_max - y_min) * (0.97 - 0.05 * (i % 4) as f64);
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {}", e.kind),
                (x, y),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<LatencyRow> {
        (0..n)
            .map(|i| LatencyRow {
                path: format!("f{i}"),
                due_at_ms: 1000 + i * 10,
                injected_at_ms: 1000 + i * 10,
                claimed_at_ms: 1000 + i * 10,
                committed_at_ms: 1020 + i * 10 + (i % 7),
                latency_ms: 20 + (i % 7),
                worker: "w".into(),
                attempts: 1,
            })
            .collect()
    }

    #[test]
    fn svg_has_one_circle_per_file_and_the_event_labels() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.svg");
        let rows = rows(37);
        let bands = crate::bands(&rows, 100);
        let events = vec![JobEvent {
            at_ms: 1200,
            kind: "kill-worker".into(),
            detail: String::new(),
        }];
        plot(
            &path,
            &Timeline {
                title: "test",
                rows: &rows,
                bands: &bands,
                bucket_ms: 100,
                events: &events,
                start_ms: 1000,
                log_y: false,
            },
        )
        .expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..50.min(svg.len())]);
        // 37 points plus one circle in the legend.
        assert_eq!(svg.matches("<circle").count(), 38);
        assert!(svg.contains("kill-worker"));
    }

    #[test]
    fn png_is_a_png() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.png");
        let rows = rows(10);
        plot(
            &path,
            &Timeline {
                title: "t",
                rows: &rows,
                bands: &[],
                bucket_ms: 100,
                events: &[],
                start_ms: 1000,
                log_y: true,
            },
        )
        .expect("plot");
        let bytes = std::fs::read(&path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
