//! The hyperparameter search's figure: validation accuracy against each searched setting (a
//! point per trial; log axes for log-uniform settings, one column per choice for choices), and
//! every trial's validation curve.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::svg_with;
use super::ticks::{self, Tick};
use super::{draw_title, drawing, padded_range, png_with, PlotError, Result, TickedAxis, FONT, TRAIN_COLOR, VAL_COLOR};

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
    /// The figure's title, one line per `\n`: what was searched, on which model and data, and
    /// the best trial's accuracy.
    pub title: String,
}

/// Width and height of one panel.
pub const TUNE_PANEL: (u32, u32) = (380, 300);

/// Panels a row.
const COLUMNS: usize = 3;

/// Height of the title band: two lines.
const TITLE_BAND: u32 = 8 + 2 * super::TITLE_LINE;

/// The figure's size for `settings` searched settings (one panel each, and the curves'),
/// below a title of two lines.
pub fn tune_size(settings: usize) -> (u32, u32) {
    let panels = settings + 1;
    let (cols, rows) = (panels.min(COLUMNS), panels.div_ceil(COLUMNS));
    (TUNE_PANEL.0 * cols.max(2) as u32, TUNE_PANEL.1 * rows as u32 + TITLE_BAND)
}

/// One setting's x axis: its range, its ticks, and each trial's position on it (NaN for a
/// value that cannot be placed). A log setting's axis runs over log10 of the values, its
/// ticks at log10 of round values labelled with those values ([`ticks::log_ticks`]); a
/// number's axis is linear ([`ticks::linear_ticks`]); a choice gets a column per name, in the
/// order the trials first drew them.
pub fn setting_axis(setting: &SettingColumn) -> (std::ops::Range<f64>, Vec<Tick>, Vec<f64>) {
    let mut names: Vec<&str> = Vec::new();
    let xs: Vec<f64> = setting
        .values
        .iter()
        .map(|v| match v {
            SettingValue::Number(x) if setting.log => {
                if *x > 0.0 {
                    x.log10()
                } else {
                    f64::NAN
                }
            }
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
    if !names.is_empty() {
        let ticks = names.iter().enumerate().map(|(i, n)| (i as f64, short(n))).collect();
        return (-0.5..(names.len() as f64 - 0.5), ticks, xs);
    }
    let (lo, hi) = xs.iter().filter(|x| x.is_finite()).fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    if lo > hi {
        return (0.0..1.0, Vec::new(), xs);
    }
    let pad = ((hi - lo) * 0.08).max(if setting.log { 0.1 } else { 1e-3 * hi.abs().max(1e-3) });
    let range = (lo - pad)..(hi + pad);
    let ticks = if setting.log {
        let ticks = ticks::log_ticks(10f64.powf(range.start), 10f64.powf(range.end));
        ticks.into_iter().map(|(v, label)| (v.log10(), label)).collect()
    } else {
        ticks::linear_ticks(range.start, range.end, 6)
    };
    (range, ticks, xs)
}

/// The best validation accuracy of each curve.
fn scores(figure: &TuneFigure) -> Vec<f32> {
    figure.curves.iter().map(|c| c.iter().copied().filter(|x| x.is_finite()).fold(f32::NAN, f32::max)).collect()
}

/// The figure as a PNG of [`tune_size`].
pub fn tune_png(figure: &TuneFigure) -> Result<Vec<u8>> {
    check(figure)?;
    png_with(tune_size(figure.settings.len()), |root| draw_tune(root, figure))
}

/// The figure as SVG text, same layout as [`tune_png`].
pub fn tune_svg(figure: &TuneFigure) -> Result<String> {
    check(figure)?;
    svg_with(tune_size(figure.settings.len()), |root| draw_tune(root, figure))
}

/// Refuses a figure without trials, without a finished epoch, or with settings not one value
/// per trial.
fn check(figure: &TuneFigure) -> Result<()> {
    let trials = figure.curves.len();
    let fits = figure.settings.iter().all(|s| s.values.len() == trials) && figure.pruned.len() == trials;
    if trials == 0 || !fits || figure.curves.iter().all(|c| c.is_empty()) {
        return Err(PlotError::TuneTrials { trials, settings: figure.settings.len() });
    }
    Ok(())
}

fn draw_tune<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figure: &TuneFigure) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let panels = figure.settings.len() + 1;
    root.fill(&WHITE).map_err(drawing)?;
    let (top, body) = root.split_vertically(TITLE_BAND);
    draw_title(top, &figure.title)?;
    let areas = body.split_evenly((panels.div_ceil(COLUMNS), panels.clamp(2, COLUMNS)));
    let scores = scores(figure);
    for (setting, area) in figure.settings.iter().zip(&areas) {
        setting_panel(area, setting, &scores, figure)?;
    }
    curves_panel(&areas[figure.settings.len()], figure)?;
    root.present().map_err(drawing)
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

/// Validation accuracy against one setting, on the axis of [`setting_axis`].
fn setting_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    setting: &SettingColumn,
    scores: &[f32],
    figure: &TuneFigure,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x_range, x_ticks, xs) = setting_axis(setting);
    let axis = TickedAxis::linear(x_range, x_ticks);
    let y = padded_range(scores.iter().copied());
    let label = if setting.log { format!("{} (log scale)", setting.name) } else { setting.name.clone() };
    let label_of = |x: &f64| axis.label(x);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("val accuracy vs {}", setting.name), (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(axis.clone(), y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(label)
        .y_desc("best val accuracy")
        .x_label_formatter(&label_of)
        .label_style((FONT, 11))
        .light_line_style(WHITE)
        .draw()
        .map_err(drawing)?;
    let points = xs.iter().zip(scores).enumerate().filter(|(_, (x, s))| x.is_finite() && s.is_finite());
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
fn curves_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, figure: &TuneFigure) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let epochs = figure.curves.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let axis = TickedAxis::linear(0.5..epochs as f64 + 0.5, ticks::epoch_ticks(1, epochs));
    let label_of = |x: &f64| axis.label(x);
    let y = padded_range(figure.curves.iter().flatten().copied());
    let mut chart = ChartBuilder::on(area)
        .caption("trials' validation curves", (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(axis.clone(), y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("epoch (orange: best trial, grey: pruned)")
        .y_desc("val accuracy")
        .x_label_formatter(&label_of)
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
            title: "tune: 3 trials of conv8 pool dense32\nbest: trial 2, val accuracy 96.00%".into(),
        }
    }

    #[test]
    fn draws_a_panel_per_setting_and_the_curves() {
        let png = tune_png(&figure()).unwrap();
        if let Some(dir) = std::env::var_os("MNISTLAB_PLOT_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("tune.png"), &png).unwrap();
        }
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), tune_size(2));
        assert_eq!(tune_size(2), (3 * TUNE_PANEL.0, TUNE_PANEL.1 + TITLE_BAND));
        assert_eq!(tune_size(3), (3 * TUNE_PANEL.0, 2 * TUNE_PANEL.1 + TITLE_BAND));
        assert_eq!(tune_size(0), (2 * TUNE_PANEL.0, TUNE_PANEL.1 + TITLE_BAND));
    }

    #[test]
    fn a_log_setting_is_labelled_at_true_values_and_trials_sit_at_theirs() {
        // Two trials at 1.43e-4 and 1.58e-4: no tick says 2e-4 unless it stands at 2e-4.
        let lr = SettingColumn {
            name: "lr".into(),
            values: [1.43e-4, 1.58e-4, 3e-3].map(SettingValue::Number).to_vec(),
            log: true,
        };
        let (range, ticks, xs) = setting_axis(&lr);
        assert_eq!(xs, vec![1.43e-4f64.log10(), 1.58e-4f64.log10(), 3e-3f64.log10()]);
        assert!(ticks.len() >= 3, "{ticks:?}");
        for (at, label) in &ticks {
            let value: f64 = label.parse().unwrap();
            assert!((10f64.powf(*at) / value - 1.0).abs() < 1e-12, "{label} at 10^{at}");
            assert!(range.contains(at), "{label}");
        }
        let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["2e-4", "5e-4", "0.001", "0.002"]);
        // A narrow search: ticks between the trials, still at their values.
        let narrow = SettingColumn { values: [1.43e-4, 1.58e-4].map(SettingValue::Number).to_vec(), ..lr };
        let (_, ticks, _) = setting_axis(&narrow);
        assert!(ticks.len() >= 2, "{ticks:?}");
        for (at, label) in &ticks {
            let value: f64 = label.parse().unwrap();
            assert!((10f64.powf(*at) / value - 1.0).abs() < 1e-12, "{label} at 10^{at}");
        }
        // Choices: a column each, in the order drawn.
        let (range, ticks, xs) = setting_axis(&figure().settings[1]);
        assert_eq!(range, -0.5..1.5);
        assert_eq!(ticks, vec![(0.0, "adam".to_string()), (1.0, "adamw".to_string())]);
        assert_eq!(xs, vec![0.0, 1.0, 0.0]);
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
