//! The hyperparameter search's figure: validation accuracy against each searched setting (a
//! point per trial; log axes for log-uniform settings, one column per choice for choices), and
//! every trial's validation curve.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{drawing, padded_range, png_with, PlotError, Result, FONT, TRAIN_COLOR, VAL_COLOR};

/// One searched setting's value in a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    /// A number (a rate, a smoothing, a batch size).
    Number(f64),
    /// A choice by name (an optimizer, an architecture).
    Choice(String),
}

/// One searched setting: its name, its value in each trial, and whether its axis is log.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingColumn {
    /// The setting's name (`lr`, `batch`).
    pub name: String,
    /// Its value in each trial, in trial order.
    pub values: Vec<SettingValue>,
    /// Whether to draw it on a log axis (numbers above 0 only).
    pub log: bool,
}

/// What the search's figure shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneFigure {
    /// Each searched setting.
    pub settings: Vec<SettingColumn>,
    /// Each trial's validation accuracy after every epoch it ran.
    pub curves: Vec<Vec<f32>>,
    /// Whether each trial was pruned.
    pub pruned: Vec<bool>,
    /// The best trial, drawn in its own colour.
    pub best: Option<usize>,
}

/// Width and height of one panel.
pub const TUNE_PANEL: (u32, u32) = (380, 300);

/// Panels a row.
const COLUMNS: usize = 3;

/// The figure's size for `settings` searched settings (one panel each, and the curves').
pub fn tune_size(settings: usize) -> (u32, u32) {
    let panels = settings + 1;
    let (cols, rows) = (panels.min(COLUMNS), panels.div_ceil(COLUMNS));
    (TUNE_PANEL.0 * cols as u32, TUNE_PANEL.1 * rows as u32)
}

/// The best validation accuracy of each curve.
fn scores(figure: &TuneFigure) -> Vec<f32> {
    figure.curves.iter().map(|c| c.iter().copied().filter(|x| x.is_finite()).fold(f32::NAN, f32::max)).collect()
}

/// The figure as a PNG of [`tune_size`].
pub fn tune_png(figure: &TuneFigure) -> Result<Vec<u8>> {
    let trials = figure.curves.len();
    let fits = figure.settings.iter().all(|s| s.values.len() == trials) && figure.pruned.len() == trials;
    if trials == 0 || !fits || figure.curves.iter().all(|c| c.is_empty()) {
        return Err(PlotError::TuneTrials { trials, settings: figure.settings.len() });
    }
    let size = tune_size(figure.settings.len());
    let panels = figure.settings.len() + 1;
    png_with(size, |root| {
        root.fill(&WHITE).map_err(drawing)?;
        let areas = root.split_evenly((panels.div_ceil(COLUMNS), panels.min(COLUMNS)));
        let scores = scores(figure);
        for (setting, area) in figure.settings.iter().zip(&areas) {
            setting_panel(area, setting, &scores, figure)?;
        }
        curves_panel(&areas[figure.settings.len()], figure)?;
        root.present().map_err(drawing)
    })
}

/// The colour of trial `i`: the best, the pruned, the others.
fn trial_color(figure: &TuneFigure, i: usize) -> RGBAColor {
    if figure.best == Some(i) {
        VAL_COLOR.to_rgba()
    } else if figure.pruned[i] {
        BLACK.mix(0.3)
    } else {
        TRAIN_COLOR.mix(0.8)
    }
}

/// Validation accuracy against one setting: numbers on a linear or log10 axis, choices one
/// column each.
fn setting_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    setting: &SettingColumn,
    scores: &[f32],
    figure: &TuneFigure,
) -> Result<()> {
    let mut names: Vec<&str> = Vec::new();
    let xs: Vec<f64> = setting
        .values
        .iter()
        .map(|v| match v {
            SettingValue::Number(x) if setting.log && *x > 0.0 => x.log10(),
            SettingValue::Number(x) => *x,
            SettingValue::Choice(name) => match names.iter().position(|n| n == name) {
                Some(i) => i as f64,
                None => {
                    names.push(name);
                    (names.len() - 1) as f64
                }
            },
        })
        .collect();
    let x_range = if names.is_empty() {
        let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        let pad = ((hi - lo) * 0.08).max(if setting.log { 0.1 } else { 1e-3 * hi.abs().max(1e-3) });
        (lo - pad)..(hi + pad)
    } else {
        -0.5..(names.len() as f64 - 0.5)
    };
    let span = x_range.end - x_range.start;
    let y = padded_range(scores.iter().copied());
    let label = if setting.log { format!("{} (log scale)", setting.name) } else { setting.name.clone() };
    let format_x = |x: &f64| -> String {
        if !names.is_empty() {
            let i = x.round();
            return if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).map_or(String::new(), |n| short(n))
            } else {
                String::new()
            };
        }
        if setting.log {
            format!("{:.0e}", 10f64.powf(*x))
        } else if span >= 10.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.3}")
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("val accuracy vs {}", setting.name), (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range, y)
        .map_err(drawing)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(label)
        .y_desc("best val accuracy")
        .x_label_formatter(&format_x)
        .label_style((FONT, 11))
        .light_line_style(WHITE);
    if !names.is_empty() {
        mesh.x_labels(names.len() * 2 + 1);
    }
    mesh.draw().map_err(drawing)?;
    let points = xs.iter().zip(scores).enumerate().filter(|(_, (_, s))| s.is_finite());
    chart
        .draw_series(points.map(|(i, (&x, &s))| Circle::new((x, s), 4, trial_color(figure, i).filled())))
        .map_err(drawing)?;
    Ok(())
}

/// A choice's name cut to fit under its column.
fn short(name: &str) -> String {
    if name.chars().count() <= 18 {
        return name.to_string();
    }
    let mut s: String = name.chars().take(17).collect();
    s.push('…');
    s
}

/// Every trial's validation accuracy per epoch.
fn curves_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, figure: &TuneFigure) -> Result<()> {
    let epochs = figure.curves.iter().map(Vec::len).max().unwrap_or(1).max(2);
    let y = padded_range(figure.curves.iter().flatten().copied());
    let mut chart = ChartBuilder::on(area)
        .caption("trials' validation curves", (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1f64..epochs as f64, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("epoch (grey: pruned)")
        .y_desc("val accuracy")
        .x_labels(epochs.min(10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FONT, 11))
        .light_line_style(WHITE)
        .draw()
        .map_err(drawing)?;
    // The best last, on top.
    let mut order: Vec<usize> = (0..figure.curves.len()).collect();
    order.sort_by_key(|&i| figure.best == Some(i));
    for i in order {
        let color = trial_color(figure, i);
        let points: Vec<(f64, f32)> = figure.curves[i].iter().enumerate().map(|(e, &a)| ((e + 1) as f64, a)).collect();
        let width = if figure.best == Some(i) { 3 } else { 1 };
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(width))).map_err(drawing)?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 2, color.filled()))).map_err(drawing)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> TuneFigure {
        TuneFigure {
            settings: vec![
                SettingColumn {
                    name: "lr".into(),
                    values: [1e-4, 3e-3, 1e-2].map(SettingValue::Number).to_vec(),
                    log: true,
                },
                SettingColumn {
                    name: "optimizer".into(),
                    values: ["adam", "adamw", "adam"].map(|s| SettingValue::Choice(s.into())).to_vec(),
                    log: false,
                },
            ],
            curves: vec![vec![0.9], vec![0.93, 0.95, 0.96], vec![0.91, 0.92, 0.925]],
            pruned: vec![true, false, false],
            best: Some(1),
        }
    }

    #[test]
    fn draws_a_panel_per_setting_and_the_curves() {
        let png = tune_png(&figure()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), tune_size(2));
        assert_eq!(tune_size(2), (3 * TUNE_PANEL.0, TUNE_PANEL.1));
        assert_eq!(tune_size(3), (3 * TUNE_PANEL.0, 2 * TUNE_PANEL.1));
    }

    #[test]
    fn mismatched_or_empty_trials_are_refused() {
        let mut f = figure();
        f.pruned.pop();
        assert!(matches!(tune_png(&f), Err(PlotError::TuneTrials { trials: 3, settings: 2 })));
        let mut f = figure();
        f.curves = vec![vec![], vec![], vec![]];
        assert!(matches!(tune_png(&f), Err(PlotError::TuneTrials { .. })));
    }
}
