//! The learning-rate range test's figure: the smoothed loss against the rate on a log axis,
//! with the suggested rates marked.

use plotters::prelude::*;

use super::{drawing, padded_range, png_with, PlotError, Result, FONT, TRAIN_COLOR, VAL_COLOR};

/// Colours of the marked rates, in turn.
const MARK_COLORS: [RGBColor; 2] = [VAL_COLOR, RGBColor(44, 160, 44)];

/// Width and height of the learning-rate figure.
pub const LR_CURVE_SIZE: (u32, u32) = (700, 420);

/// `losses` against `rates` (log axis) as a PNG of [`LR_CURVE_SIZE`], each of `marks` (a rate
/// and its label) drawn as a vertical line. Non-finite losses are left out.
pub fn lr_curve_png(rates: &[f64], losses: &[f32], marks: &[(f64, String)]) -> Result<Vec<u8>> {
    if rates.len() < 2 || rates.len() != losses.len() || rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(PlotError::LrCurve { rates: rates.len(), losses: losses.len() });
    }
    let (lo, hi) = rates.iter().fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    let y = padded_range(losses.iter().copied());
    png_with(LR_CURVE_SIZE, |root| {
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("learning-rate range test", (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), y.clone())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("smoothed loss")
            .x_label_formatter(&|x| format!("{x:.0e}"))
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
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.4))
                .label_font((FONT, 13))
                .draw()
                .map_err(drawing)?;
        }
        root.present().map_err(drawing)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_its_size() {
        let rates: Vec<f64> = (0..50).map(|i| 1e-6 * 1.3f64.powi(i)).collect();
        let losses: Vec<f32> = (0..50).map(|i| 2.3 - (i as f32 / 30.0).min(1.0) + (i as f32 / 45.0).powi(8)).collect();
        let png = lr_curve_png(&rates, &losses, &[(rates[20], "steepest".into())]).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), LR_CURVE_SIZE);
    }

    #[test]
    fn too_few_points_or_mismatched_lengths_are_refused() {
        assert!(matches!(lr_curve_png(&[1e-3], &[1.0], &[]), Err(PlotError::LrCurve { rates: 1, losses: 1 })));
        assert!(matches!(lr_curve_png(&[1e-3, 1e-2], &[1.0], &[]), Err(PlotError::LrCurve { .. })));
        assert!(matches!(lr_curve_png(&[0.0, 1e-2], &[1.0, 2.0], &[]), Err(PlotError::LrCurve { .. })));
    }
}
