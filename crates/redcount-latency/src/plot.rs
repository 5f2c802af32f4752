//! The latency timeline: x = injection time, y = latency, one point per file, the rolling median as a
//! line, and a labelled vertical marker for every fault event. SVG or PNG, chosen by the file name.

use std::path::Path;
use std::sync::Once;

use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use redcount_protocol::JobEvent;

use crate::LatencyRow;

/// What to draw.
pub struct Timeline<'a> {
    /// The plot's title.
    pub title: &'a str,
    /// One point per file.
    pub rows: &'a [LatencyRow],
    /// (injected_at_ms, median ms), as from [`crate::rolling_median`].
    pub median: &'a [(u64, f64)],
    /// Events, drawn as labelled markers.
    pub events: &'a [JobEvent],
    /// Time zero of the x axis (ms), usually the first injection.
    pub start_ms: u64,
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
    let seconds = |ms: u64| ms.saturating_sub(t.start_ms) as f64 / 1000.0;
    let x_max = t
        .rows
        .iter()
        .map(|r| seconds(r.injected_at_ms))
        .chain(t.events.iter().map(|e| seconds(e.at_ms)))
        .fold(1.0, f64::max)
        * 1.02;
    let y_max = t
        .rows
        .iter()
        .map(|r| r.latency_ms as f64)
        .fold(10.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&area)
        .caption(t.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("injection time (s)")
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(t.rows.iter().map(|r| {
            Circle::new(
                (seconds(r.injected_at_ms), r.latency_ms as f64),
                2,
                BLUE.mix(0.5).filled(),
            )
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("file")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    chart
        .draw_series(LineSeries::new(
            t.median.iter().map(|(x, m)| (seconds(*x), *m)),
            RED.stroke_width(2),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("rolling median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    for (i, e) in t.events.iter().enumerate() {
        let x = seconds(e.at_ms);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, y_max)],
                BLACK.stroke_width(1),
            )))
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        // Stagger labels so events close together stay readable.
        let y = y_max * (0.97 - 0.05 * (i % 4) as f64);
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {}", e.kind),
                (x, y),
                ("sans-serif", 14),
            )))
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<LatencyRow> {
        (0..n)
            .map(|i| LatencyRow {
                path: format!("f{i}"),
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
        let median = crate::rolling_median(&rows, 5);
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
                median: &median,
                events: &events,
                start_ms: 1000,
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
                median: &[],
                events: &[],
                start_ms: 1000,
            },
        )
        .expect("plot");
        let bytes = std::fs::read(&path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
