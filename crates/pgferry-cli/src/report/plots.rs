//! The report's plots, drawn by `plotters` into SVG text for inlining in the
//! HTML page. Two shapes cover every plot: a line over time and a timeline of
//! bars (a Gantt chart). Lines are over minutes since the migration's first record.

use plotters::prelude::*;

const WIDTH: u32 = 900;
const LINE_HEIGHT: u32 = 280;
const BAR_ROW: u32 = 26;
const BLUE: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const GREY: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);

/// A line of `points` (minutes, value); `None` when there is nothing to draw.
pub(super) fn line(title: &str, y_desc: &str, points: &[(f64, f64)]) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let (x0, x1) = bounds(points.iter().map(|p| p.0));
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, LINE_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .ok()?;
        chart
            .configure_mesh()
            .light_line_style(GREY.mix(0.5))
            .x_desc(super::html::SINCE_START)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| short_number(*y))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .ok()?;
        chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2))).ok()?;
        chart.draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 2, BLUE.filled()))).ok()?;
        root.present().ok()?;
    }
    Some(inline(svg))
}

/// One bar per row: (label, start, end), in the unit `x_desc` names.
pub(super) fn timeline(title: &str, x_desc: &str, bars: &[(String, f64, f64)]) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let (x0, x1) = bounds(bars.iter().flat_map(|b| [b.1, b.2]));
    let rows = bars.len();
    let height = 80 + BAR_ROW * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(8)
            .build_cartesian_2d(x0..x1, 0.0..rows as f64)
            .ok()?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(GREY.mix(0.5))
            .x_desc(x_desc)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_labels(0)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .ok()?;
        let span = (x1 - x0).max(1e-9);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                // A zero-length step still shows as a sliver.
                let end = b.2.max(b.1 + span / 400.0);
                Rectangle::new([(b.1, row_bottom(rows, i) + 0.1), (end, row_bottom(rows, i) + 0.5)], BLUE.filled())
            }))
            .ok()?;
        // Each bar's label above it, from the plot's left edge.
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .map(|(i, b)| Text::new(b.0.clone(), (x0, row_bottom(rows, i) + 0.95), ("sans-serif", 13))),
            )
            .ok()?;
        root.present().ok()?;
    }
    Some(inline(svg))
}

/// Where row `i` of `rows` begins on the y axis: the first row on top.
fn row_bottom(rows: usize, i: usize) -> f64 {
    (rows - 1 - i) as f64
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if high > low {
        (low, high)
    } else {
        (low, low + 1.0)
    }
}

fn short_number(y: f64) -> String {
    match y.abs() {
        a if a >= 1e9 => format!("{:.1}G", y / 1e9),
        a if a >= 1e6 => format!("{:.1}M", y / 1e6),
        a if a >= 1e3 => format!("{:.1}k", y / 1e3),
        a if a >= 10.0 || a == 0.0 => format!("{y:.0}"),
        _ => format!("{y:.2}"),
    }
}

/// Inline SVG in HTML needs no namespace declaration (the HTML parser gives it
/// one): dropping it keeps the page free of any URL.
fn inline(svg: String) -> String {
    svg.replace(r#" xmlns="http://www.w3.org/2000/svg""#, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_an_svg_without_a_url() {
        let svg = line("lag", "seconds", &[(0.0, 1.0), (1.0, 3.0), (2.0, 0.5)]).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        assert!(!svg.contains("http"), "{svg}");
        assert!(line("empty", "x", &[]).is_none());
    }

    #[test]
    fn timeline_rows_are_labelled_top_down() {
        assert_eq!((row_bottom(2, 0), row_bottom(2, 1)), (1.0, 0.0));
        let svg = timeline("steps", "seconds", &[("a".into(), 0.0, 1.0), ("b".into(), 1.0, 1.0)]).unwrap();
        assert!(svg.matches("<rect").count() >= 3, "{svg}");
        assert!(svg.contains("\na\n") && svg.contains("\nb\n"), "{svg}");
        assert!(!svg.contains("font-size=\"4."), "labels are readable: {svg}");
    }
}
