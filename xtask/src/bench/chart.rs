//! The scaling chart: time against accounts and against messages, both axes logarithmic,
//! with a dashed line of slope 1 through the smallest size for reference; and the growth
//! chart: the Threads tables' size over the simulated month.

use super::growth::{Growth, TABLES};
use super::report::{feed_points, threads_points, Results};
use crate::process::Result;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// plotters draws text with the font registered under this family name.
fn register_font() -> Result<()> {
    let font: &'static [u8] = Box::leak(std::fs::read(FONT)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{FONT} is not a usable font").into())
}

pub fn draw(results: &Results, path: &Path) -> Result<()> {
    register_font()?;

    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);

    let threads = threads_points(results);
    panel(
        &left,
        "Threads: first sync (50 ms API latency)",
        "accounts (100 posts each)",
        &[("pg_pullsync", BLUE, threads.clone())],
    )?;
    let feed = feed_points(results);
    panel(
        &right,
        "Feed: provider → HTTP → consumer",
        "messages",
        &[
            ("feed pull", BLUE, feed.iter().map(|p| (p.0, p.1)).collect()),
            (
                "COPY (ceiling)",
                GREEN,
                feed.iter().map(|p| (p.0, p.2)).collect(),
            ),
        ],
    )?;
    root.present()?;
    Ok(())
}

/// MiB per table and in all at each day's end, linear axes.
pub fn draw_growth(growth: &Growth, path: &Path) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mib = |bytes: i64| bytes as f64 / 1048576.0;
    let days = growth.days.len().max(2) as f64 - 1.0;
    let top = growth
        .days
        .iter()
        .map(|d| mib(d.total_bytes()))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Threads tables over a simulated month: {} accounts, a cycle every {} h",
                growth.month.accounts, growth.month.step_hours
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..days, 0.0..top * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("simulated day")
        .y_desc("MiB (with indexes)")
        .draw()
        .map_err(|e| e.to_string())?;
    let mut lines: Vec<Line> = vec![(
        "all Threads tables".into(),
        BLACK,
        growth
            .days
            .iter()
            .enumerate()
            .map(|(i, d)| (i as f64, mib(d.total_bytes())))
            .collect(),
    )];
    for (t, color) in [(2, BLUE), (3, GREEN), (1, RED)] {
        lines.push((
            TABLES[t].trim_start_matches("workspace_threads_").into(),
            color,
            growth
                .days
                .iter()
                .enumerate()
                .map(|(i, d)| (i as f64, mib(d.bytes[t])))
                .collect(),
        ));
    }
    for (name, color, points) in lines {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);
type Line = (String, RGBColor, Vec<(f64, f64)>);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
    let (y_min, y_max) = bounds(all.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x_min / 2.0..x_max * 2.0).log_scale(),
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("seconds (median)")
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    if let Some(&(x0, y0)) = series.first().and_then(|s| s.2.first()) {
        // y = y0 · x / x0: what proportional growth looks like.
        let reference: Vec<(f64, f64)> = [x0, x_max].iter().map(|&x| (x, y0 * x / x0)).collect();
        chart
            .draw_series(DashedLineSeries::new(
                reference,
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("slope 1")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    legend(&mut chart)?;
    Ok(())
}

/// The series' names in a box at the upper left.
fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// 1000 → "1k", 0.25 → "0.25": short labels for log axes.
fn tick(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v if v >= 1.0 => format!("{v:.0}"),
        v => format!("{}", (v * 100.0).round() / 100.0),
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
