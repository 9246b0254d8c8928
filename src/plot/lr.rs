//! The learning-rate range test's figure: the smoothed loss against the rate on a log axis,
//! with the suggested rates marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    draw_legend, draw_title, drawing, legend_place, padded_range, png_with, svg_with, ticks, PlotError, Result,
    TickedAxis, FONT, TRAIN_COLOR, VAL_COLOR,
};

/// Colours of the marked rates, in turn.
const MARK_COLORS: [RGBColor; 2] = [VAL_COLOR, RGBColor(44, 160, 44)];

/// Width and height of the learning-rate figure.
pub const LR_CURVE_SIZE: (u32, u32) = (760, 480);

/// The x axis of the learning-rate figure: from the lowest to the highest rate, and its ticks
/// (at their true values, see [`ticks::log_ticks`]).
pub fn lr_axis(rates: &[f64]) -> (std::ops::Range<f64>, Vec<ticks::Tick>) {
    let (lo, hi) = rates.iter().fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    (lo..hi, ticks::log_ticks(lo, hi))
}

/// `losses` against `rates` (log axis) as a PNG of [`LR_CURVE_SIZE`] under `title` (lines split
/// at `\n`), each of `marks` (a rate and its label) drawn as a vertical line. Non-finite losses
/// are left out.
pub fn lr_curve_png(rates: &[f64], losses: &[f32], marks: &[(f64, String)], title: &str) -> Result<Vec<u8>> {
    check(rates, losses)?;
    png_with(LR_CURVE_SIZE, |root| draw_lr(root, rates, losses, marks, title))
}

/// The same figure as [`lr_curve_png`], as SVG text.
pub fn lr_curve_svg(rates: &[f64], losses: &[f32], marks: &[(f64, String)], title: &str) -> Result<String> {
    check(rates, losses)?;
    svg_with(LR_CURVE_SIZE, |root| draw_lr(root, rates, losses, marks, title))
}

/// Refuses fewer than two rates, rates not above 0, or not one loss per rate.
fn check(rates: &[f64], losses: &[f32]) -> Result<()> {
    if rates.len() < 2 || rates.len() != losses.len() || rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(PlotError::LrCurve { rates: rates.len(), losses: losses.len() });
    }
    Ok(())
}

fn draw_lr<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rates: &[f64],
    losses: &[f32],
    marks: &[(f64, String)],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (range, x_ticks) = lr_axis(rates);
    let axis = TickedAxis { lo: range.start, hi: range.end, log: true, ticks: x_ticks };
    let y_data = padded_range(losses.iter().copied());
    {
        root.fill(&WHITE).map_err(drawing)?;
        let body = draw_title(root.clone(), title)?;
        // The legend of the marks, in a corner clear of the curve and the marks.
        let (w, h) = body.dim_in_pixel();
        let plot = ((w as f64 - 24.0 - 56.0).max(50.0), (h as f64 - 24.0 - 40.0).max(50.0));
        let unit = |r: f64, l: f32| (axis.fraction(r), ((l - y_data.start) / (y_data.end - y_data.start)) as f64);
        let mut lines: Vec<Vec<(f64, f64)>> =
            vec![rates.iter().zip(losses).filter(|(_, l)| l.is_finite()).map(|(&r, &l)| unit(r, l)).collect()];
        lines.extend(marks.iter().map(|(r, _)| vec![unit(*r, y_data.start), unit(*r, y_data.end)]));
        let labels: Vec<String> = marks.iter().map(|m| m.1.clone()).collect();
        let (place, legend) = legend_place(&lines, &labels, plot);
        let y = y_data.start..(y_data.start + (y_data.end - y_data.start) / place.data_height as f32);
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(axis.clone(), y.clone())
            .map_err(drawing)?;
        let label_of = |x: &f64| axis.label(x);
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("smoothed loss")
            .x_label_formatter(&label_of)
            .label_style((FONT, 13))
            .draw()
            .map_err(drawing)?;
        let points = rates.iter().zip(losses).filter(|(_, l)| l.is_finite()).map(|(&r, &l)| (r, l));
        chart.draw_series(LineSeries::new(points, TRAIN_COLOR.stroke_width(2))).map_err(drawing)?;
        for (i, (rate, label)) in marks.iter().enumerate() {
            let color = MARK_COLORS[i % MARK_COLORS.len()];
            let line = vec![(*rate, y.start), (*rate, y.end)];
            chart
                .draw_series(std::iter::once(PathElement::new(line, color.stroke_width(2))))
                .map_err(drawing)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        if !marks.is_empty() {
            draw_legend(&mut chart, place, legend)?;
        }
        root.present().map_err(drawing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_its_size() {
        let rates: Vec<f64> = (0..50).map(|i| 1e-6 * 1.3f64.powi(i)).collect();
        let losses: Vec<f32> = (0..50).map(|i| 2.3 - (i as f32 / 30.0).min(1.0) + (i as f32 / 45.0).powi(8)).collect();
        let marks = [(rates[20], "steepest descent: 1.90e-4".into()), (rates[30], "lowest loss ÷ 10: 2.62e-3".into())];
        let png =
            lr_curve_png(&rates, &losses, &marks, "learning-rate range test of model seed-cnn\n50 batches").unwrap();
        if let Some(dir) = std::env::var_os("MNISTLAB_PLOT_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("lr.png"), &png).unwrap();
        }
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), LR_CURVE_SIZE);
    }

    #[test]
    fn the_rate_axis_is_labelled_at_true_values() {
        // The default range test, 1e-7 to 10: a tick at each power of ten.
        let rates: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
        let (range, ticks) = lr_axis(&rates);
        assert_eq!((range.start, range.end), (1e-7, rates[99]));
        let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1e-7", "1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]);
        assert!(ticks.iter().all(|(v, l)| l.parse::<f64>().ok() == Some(*v)));
    }

    #[test]
    fn too_few_points_or_mismatched_lengths_are_refused() {
        assert!(matches!(lr_curve_png(&[1e-3], &[1.0], &[], ""), Err(PlotError::LrCurve { rates: 1, losses: 1 })));
        assert!(matches!(lr_curve_png(&[1e-3, 1e-2], &[1.0], &[], ""), Err(PlotError::LrCurve { .. })));
        assert!(matches!(lr_curve_png(&[0.0, 1e-2], &[1.0, 2.0], &[], ""), Err(PlotError::LrCurve { .. })));
    }
}
