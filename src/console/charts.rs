//! Trend charts as inline SVG, drawn by plotters' SVG backend. The labels
//! are quarter names and numbers, never CRM or PRM text.

use plotters::prelude::*;

/// One line of a chart: its name, colour and a value per quarter (`None`
/// where the metric is not computable: the line breaks there).
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub values: Vec<Option<f64>>,
}

pub(crate) const BLUE_LINE: RGBColor = RGBColor(37, 99, 235);
pub(crate) const GREEN_LINE: RGBColor = RGBColor(22, 163, 74);

/// A line chart of `series` over `labels` (oldest first), `format`
/// labelling the value axis. An SVG document as a string (empty when
/// drawing fails, which only a bug can cause).
pub(crate) fn trend(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    format: fn(f64) -> String,
) -> String {
    let mut svg = String::new();
    if labels.is_empty() {
        return svg;
    }
    let drawn = draw(&mut svg, title, labels, series, format).map_err(|e| e.to_string());
    if let Err(e) = drawn {
        tracing::warn!(error = %e, chart = title, "Chart not drawn.");
        return String::new();
    }
    // Sized by the page's CSS, not by fixed pixels.
    svg.replacen("<svg ", "<svg class=\"chart\" role=\"img\" ", 1)
}

fn draw<'a>(
    svg: &'a mut String,
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    format: fn(f64) -> String,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let n = labels.len() as i32;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let min = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.min(*v));
    let top = if max <= min { min + 1.0 } else { max * 1.1 };
    let root = SVGBackend::with_string(svg, (420, 220)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3_f64..(f64::from(n) - 0.7), min..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        })
        .y_labels(5)
        .y_label_formatter(&|v| format(*v))
        .max_light_lines(2)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for s in series {
        // A gap (None) splits the line into runs.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let mut runs = Vec::new();
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => run.push((i as f64, *v)),
                None => runs.push(std::mem::take(&mut run)),
            }
        }
        runs.push(run);
        for (k, r) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
            let drawn = chart.draw_series(LineSeries::new(r.clone(), s.color.stroke_width(2)))?;
            if k == 0 {
                let color = s.color;
                drawn
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color));
            }
            chart.draw_series(r.into_iter().map(|p| Circle::new(p, 3, s.color.filled())))?;
        }
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_is_one_svg_with_its_labels_and_a_line_per_run() {
        let labels = vec!["2026-Q1".to_string(), "2026-Q2".into(), "2026-Q3".into()];
        let svg = trend(
            "Pipeline",
            &labels,
            &[Series {
                name: "pipeline",
                color: BLUE_LINE,
                values: vec![Some(10.0), None, Some(30.0)],
            }],
            |v| format!("{v:.0}"),
        );
        assert!(svg.starts_with("<svg class=\"chart\""), "{svg}");
        assert!(svg.contains("2026-Q1") && svg.contains("2026-Q3"), "{svg}");
        assert!(!svg.contains("<script"), "{svg}");
        // Two runs of one point each: no line of the series joins across
        // the gap (a joined line would have two points).
        let lines: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains("#2563EB"))
            .collect();
        assert_eq!(lines.len(), 2, "{svg}");
        assert!(
            lines.iter().all(|l| l.matches(',').count() == 1),
            "a gap breaks the line: {lines:?}"
        );
        assert_eq!(svg.matches("<circle").count(), 2, "a point per known value");
    }
}
