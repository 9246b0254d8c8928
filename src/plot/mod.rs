//! Figures as PNG bytes (or SVG text): training history, confusion matrix, image grids, the
//! learning-rate range test, the hyperparameter search.
//!
//! Drawn with plotters into memory using the embedded DejaVu Sans font, so no system font is
//! looked up. Takes plain data only: it knows nothing of models or datasets.

mod lr;
mod ticks;
mod tune;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

pub use lr::{lr_axis, lr_curve_png, lr_curve_svg, LR_CURVE_SIZE};
pub use ticks::{epoch_ticks, linear_ticks, log_ticks, number_label, place_legend, Corner, LegendPlace, Tick};
pub use tune::{setting_axis, tune_png, tune_size, tune_svg, SettingColumn, SettingValue, TuneFigure, TUNE_PANEL};

/// An error while drawing or encoding a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The drawing backend failed (plotters' error, boxed: each backend has its own type).
    #[error("cannot draw the figure: {0}")]
    Drawing(Box<dyn std::error::Error + Send + Sync>),
    /// The finished bitmap could not be encoded as PNG.
    #[error("cannot draw the figure: {0}")]
    Encoding(#[from] png::EncodingError),
    /// The figure would not fit in the memory budget.
    #[error("cannot draw the figure: {0}")]
    Budget(#[from] crate::budget::BudgetError),
    /// Nothing to plot: a history without epochs.
    #[error("cannot draw the figure: the history has no epoch to plot")]
    NoEpochs,
    /// Nothing to plot: a learning-rate curve with fewer than two points, or not one loss per rate.
    #[error(
        "cannot draw the figure: {rates} rates and {losses} losses (two or more of each, as many of one as the other)"
    )]
    LrCurve {
        /// Rates given.
        rates: usize,
        /// Losses given.
        losses: usize,
    },
    /// Nothing to plot: a search without a finished epoch, or settings not one value per trial.
    #[error("cannot draw the figure: {trials} trials and {settings} settings (a value of each setting per trial, and an epoch finished)")]
    TuneTrials {
        /// Trials given.
        trials: usize,
        /// Settings given.
        settings: usize,
    },
    /// Nothing to plot: an image grid without images.
    #[error("cannot draw the figure: no image to show")]
    NoImages,
    /// A history column whose length is not the number of epochs.
    #[error("cannot draw the figure: the history's columns do not all have {epochs} values")]
    HistoryColumns {
        /// The number of epochs.
        epochs: usize,
    },
    /// A confusion matrix that is not square over the class names.
    #[error("cannot draw the figure: the confusion matrix is not {classes}×{classes} like the class names")]
    ConfusionShape {
        /// The number of class names.
        classes: usize,
    },
    /// Not one caption per image.
    #[error("cannot draw the figure: {captions} captions for {images} images")]
    Captions {
        /// Captions given.
        captions: usize,
        /// Images given.
        images: usize,
    },
    /// An image of the wrong size.
    #[error("cannot draw the figure: image {index} has {pixels} pixels, expected {rows}×{cols}")]
    ImageSize {
        /// The image's position in the list.
        index: usize,
        /// Its number of pixels.
        pixels: usize,
        /// The expected height.
        rows: usize,
        /// The expected width.
        cols: usize,
    },
}

/// Result of plotting.
pub type Result<T> = std::result::Result<T, PlotError>;

/// An f64 axis (linear, or log when `log`) from `lo` to `hi` with the given ticks and their
/// labels: plotters draws a tick exactly at each and writes its label, nothing else.
#[derive(Debug, Clone)]
struct TickedAxis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<ticks::Tick>,
}

impl TickedAxis {
    /// A linear axis.
    fn linear(range: std::ops::Range<f64>, ticks: Vec<ticks::Tick>) -> TickedAxis {
        TickedAxis { lo: range.start, hi: range.end, log: false, ticks }
    }

    /// The label of the tick at `x` (empty off the ticks).
    fn label(&self, x: &f64) -> String {
        self.ticks.iter().find(|t| t.0 == *x).map_or_else(String::new, |t| t.1.clone())
    }

    /// Where `v` lies from `lo` (0) to `hi` (1).
    fn fraction(&self, v: f64) -> f64 {
        let f = |x: f64| if self.log { x.max(f64::MIN_POSITIVE).ln() } else { x };
        let (a, b) = (f(self.lo), f(self.hi));
        if b == a {
            0.5
        } else {
            (f(v) - a) / (b - a)
        }
    }
}

impl plotters::coord::ranged1d::Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = self.fraction(*value).clamp(-10.0, 10.0);
        limit.0 + ((limit.1 - limit.0) as f64 * t + 1e-3).floor() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.iter().map(|t| t.0).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The metrics of a training run, one value per epoch (validation columns may be empty), and
/// what the figure says about them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistorySeries {
    /// Epoch numbers (1-based).
    pub epochs: Vec<usize>,
    /// Training accuracy.
    pub accuracy: Vec<f32>,
    /// Validation accuracy (empty when not validated).
    pub val_accuracy: Vec<f32>,
    /// Training loss.
    pub loss: Vec<f32>,
    /// Validation loss (empty when not validated).
    pub val_loss: Vec<f32>,
    /// The epoch whose weights the model kept, marked on both panels (none when it keeps
    /// weights of no finished epoch).
    pub kept: Option<usize>,
    /// The figure's title, one line per `\n`: which model or run, and its accuracies.
    pub title: String,
}

/// Width and height of the history figure.
pub const HISTORY_SIZE: (u32, u32) = (1000, 460);
/// Height of a line of a figure's title.
const TITLE_LINE: u32 = 22;
/// Tile magnification in image grids.
pub const GRID_SCALE: usize = 3;
/// Height of the caption band above each grid tile.
pub const GRID_CAPTION: usize = 18;
/// Space around grid tiles.
pub const GRID_PAD: usize = 6;

const FONT: &str = "sans-serif";
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
const KEPT_COLOR: RGBColor = RGBColor(44, 160, 44);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; a failure here would be a build error.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}

/// A drawing backend's failure.
fn drawing<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Drawing(Box::new(e))
}

/// Encodes an RGB buffer as PNG.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Draws with `draw` on a white `size` bitmap and returns it as PNG.
fn png_with<F>(size: (u32, u32), draw: F) -> Result<Vec<u8>>
where
    F: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    register_font();
    let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(root)?;
    }
    encode_png(&rgb, size)
}

/// Draws with `draw` on a `size` SVG and returns its text.
fn svg_with<F>(size: (u32, u32), draw: F) -> Result<String>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
{
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(root)?;
    }
    Ok(svg)
}

/// Range of `values` with a 5% margin (and a minimal span).
fn padded_range(values: impl Iterator<Item = f32>) -> std::ops::Range<f32> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = (hi - lo).max(1e-3);
    (lo - 0.05 * span)..(hi + 0.05 * span)
}

fn check_history(h: &HistorySeries) -> Result<()> {
    let n = h.epochs.len();
    if n == 0 {
        return Err(PlotError::NoEpochs);
    }
    let ok = |v: &[f32], optional: bool| v.len() == n || (optional && v.is_empty());
    if !ok(&h.accuracy, false) || !ok(&h.loss, false) || !ok(&h.val_accuracy, true) || !ok(&h.val_loss, true) {
        return Err(PlotError::HistoryColumns { epochs: n });
    }
    Ok(())
}

/// Draws `title` (lines split at `\n`) centred at the top of `area` and returns the area below.
fn draw_title<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, title: &str) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let lines: Vec<&str> = title.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Ok(area);
    }
    let (width, _) = area.dim_in_pixel();
    let band = 8 + TITLE_LINE * lines.len() as u32;
    let (top, rest) = area.split_vertically(band);
    for (i, line) in lines.iter().enumerate() {
        let size = if i == 0 { 18 } else { 15 };
        let style = TextStyle::from((FONT, size).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
        let fitted = fit_chars(line, (width as usize).saturating_sub(20) * 10 / (size as usize * 6));
        top.draw(&Text::new(fitted, ((width / 2) as i32, 6 + (TITLE_LINE * i as u32) as i32), style))
            .map_err(drawing)?;
    }
    Ok(rest)
}

/// `text` cut to `max` characters, ending in `…` when cut.
fn fit_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max.max(2) {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.max(2) - 1).collect();
    s.push('…');
    s
}

/// The pixel size of a legend of `labels` in a 13-pixel font: plotters' box (a 30-pixel glyph
/// column and 10-pixel margins around text about 7.5 pixels a character, 17 a line).
fn legend_pixels(labels: &[String]) -> (f64, f64) {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    (chars as f64 * 7.5 + 52.0, labels.len() as f64 * 17.0 + 22.0)
}

/// Where a legend of `labels` goes in a plot area of about `plot` pixels, clear of `lines`
/// (polylines in fractions of the area, x from the left, y from the bottom), and its size in
/// fractions of the area.
fn legend_place(lines: &[Vec<(f64, f64)>], labels: &[String], plot: (f64, f64)) -> (ticks::LegendPlace, (f64, f64)) {
    let px = legend_pixels(labels);
    let size = (px.0 / plot.0, px.1 / plot.1);
    (ticks::place_legend(lines, size), size)
}

/// Plotters' position of a legend placed by [`legend_place`] in a drawn plot area of `dim` pixels.
fn legend_position(place: ticks::LegendPlace, size: (f64, f64), dim: (u32, u32)) -> SeriesLabelPosition {
    let (x0, _, _, y1) = place.corner.rect(size, ticks::LEGEND_GAP);
    SeriesLabelPosition::Coordinate((x0 * dim.0 as f64).round() as i32, ((1.0 - y1) * dim.1 as f64).round() as i32)
}

/// The legend of `chart`'s labelled series, placed by [`legend_place`] (`place`, `size`).
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    place: ticks::LegendPlace,
    size: (f64, f64),
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    let at = legend_position(place, size, chart.plotting_area().dim_in_pixel());
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// The kept epoch `k` of a history panel: a dashed line across `y_range` with its legend entry,
/// and a ring round its point at `y` on the curve when given.
fn draw_kept<'a, DB>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<TickedAxis, plotters::coord::types::RangedCoordf32>>,
    k: usize,
    y_range: std::ops::Range<f32>,
    y: Option<f32>,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
{
    let line = vec![(k as f64, y_range.start), (k as f64, y_range.end)];
    let style = KEPT_COLOR.stroke_width(2);
    chart
        .draw_series(std::iter::once(DashedPathElement::new(line, 6, 4, style)))
        .map_err(drawing)?
        .label(format!("kept: epoch {k}"))
        .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, style));
    if let Some(y) = y {
        chart
            .draw_series(std::iter::once(Circle::new((k as f64, y), 7, KEPT_COLOR.stroke_width(2))))
            .map_err(drawing)?;
    }
    Ok(())
}

/// One panel: `train` and `val` against the epochs, the kept epoch marked, the legend in a
/// corner clear of the lines.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    metric: &str,
    epochs: &[usize],
    (train, val): (&[f32], &[f32]),
    kept: Option<usize>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (first, last) = (epochs[0], *epochs.last().expect("checked non-empty"));
    let x_range = (first as f64 - 0.5)..(last as f64 + 0.5);
    let y_data = padded_range(train.iter().chain(val).copied());
    let kept = kept.filter(|k| (first..=last).contains(k));
    let series: Vec<(&[f32], RGBColor, &str)> = [(train, TRAIN_COLOR, "train"), (val, VAL_COLOR, "validation")]
        .into_iter()
        .filter(|s| !s.0.is_empty())
        .collect();
    let mut labels: Vec<String> = series.iter().map(|s| s.2.to_string()).collect();
    if let Some(k) = kept {
        labels.push(format!("kept: epoch {k}"));
    }
    // The plot area: the panel less the margins (12), the caption (about 30), the label areas.
    let (w, h) = area.dim_in_pixel();
    let plot = ((w as f64 - 24.0 - 56.0).max(50.0), (h as f64 - 24.0 - 30.0 - 36.0).max(50.0));
    let unit = |x: f64, y: f32| {
        ((x - x_range.start) / (x_range.end - x_range.start), ((y - y_data.start) / (y_data.end - y_data.start)) as f64)
    };
    let mut lines: Vec<Vec<(f64, f64)>> =
        series.iter().map(|s| epochs.iter().zip(s.0).map(|(&e, &y)| unit(e as f64, y)).collect()).collect();
    if let Some(k) = kept {
        lines.push(vec![unit(k as f64, y_data.start), unit(k as f64, y_data.end)]);
    }
    let (place, legend) = legend_place(&lines, &labels, plot);
    let span = y_data.end - y_data.start;
    let y_range = y_data.start..(y_data.start + span / place.data_height as f32);
    let x_axis = TickedAxis::linear(x_range, ticks::epoch_ticks(first, last));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_axis.clone(), y_range.clone())
        .map_err(drawing)?;
    let label_of = |x: &f64| x_axis.label(x);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric)
        .x_label_formatter(&label_of)
        .label_style((FONT, 13))
        .draw()
        .map_err(drawing)?;
    let dots = epochs.len() <= 60;
    for (values, color, label) in &series {
        let color = *color;
        let pts: Vec<(f64, f32)> = epochs.iter().zip(*values).map(|(&e, &y)| (e as f64, y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if dots {
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(drawing)?;
        }
    }
    if let Some(k) = kept {
        // The ring goes on the monitored (validation) curve, else the training curve.
        let on = series.last().and_then(|s| epochs.iter().position(|&e| e == k).and_then(|i| s.0.get(i)));
        draw_kept(&mut chart, k, y_range, on.copied())?;
    }
    draw_legend(&mut chart, place, legend)
}

fn draw_history<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, h: &HistorySeries) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(drawing)?;
    let body = draw_title(root.clone(), &h.title)?;
    let panels = body.split_evenly((1, 2));
    let acc = (h.accuracy.as_slice(), h.val_accuracy.as_slice());
    draw_panel(&panels[0], "model accuracy", "accuracy", &h.epochs, acc, h.kept)?;
    draw_panel(&panels[1], "model loss", "loss", &h.epochs, (&h.loss, &h.val_loss), h.kept)?;
    root.present().map_err(drawing)
}

/// The training history as a PNG of [`HISTORY_SIZE`]: accuracy and validation accuracy on the
/// left, loss and validation loss on the right.
pub fn history_png(h: &HistorySeries) -> Result<Vec<u8>> {
    check_history(h)?;
    png_with(HISTORY_SIZE, |root| draw_history(root, h))
}

/// The training history as SVG text, same layout as [`history_png`].
pub fn history_svg(h: &HistorySeries) -> Result<String> {
    check_history(h)?;
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, HISTORY_SIZE).into_drawing_area();
        draw_history(root, h)?;
    }
    Ok(svg)
}

/// Layout of a confusion-matrix figure for `n` classes with labels up to `label_chars` long,
/// under a title of `title_lines` lines up to `title_chars` long.
struct ConfusionLayout {
    cell: i32,
    left: i32,
    top: i32,
    size: (u32, u32),
}

impl ConfusionLayout {
    fn new(n: usize, label_chars: usize, (title_lines, title_chars): (usize, usize)) -> ConfusionLayout {
        let cell = if n <= 12 { 48 } else { (576 / n as i32).max(14) };
        let label = 10 + 7 * label_chars as i32;
        let left = 28 + label;
        let top = 20 + TITLE_LINE as i32 * (title_lines as i32 + 1);
        let grid = cell * n as i32;
        // A title character of the 18-pixel font is about 10 pixels wide.
        let width = (left + grid + 20).max(20 + 10 * title_chars.min(160) as i32);
        ConfusionLayout { cell, left, top, size: (width as u32, (top + grid + label + 28) as u32) }
    }
}

/// The lines of a figure title (split at `\n`, blank ones left out) and the longest one's length.
fn title_lines(title: &str) -> (Vec<&str>, usize) {
    let lines: Vec<&str> = title.lines().filter(|l| !l.trim().is_empty()).collect();
    let chars = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    (lines, chars)
}

/// The pixel size [`confusion_png`] gives for these class names and title.
pub fn confusion_size(class_names: &[String], title: &str) -> (u32, u32) {
    let chars = class_names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    let (lines, title_chars) = title_lines(title);
    ConfusionLayout::new(class_names.len(), chars, (lines.len(), title_chars)).size
}

/// A confusion matrix (`matrix[true][predicted]` counts) as a PNG under `title` (lines split at
/// `\n`: which model, which split, its accuracy): cells shaded by the share of their row,
/// counts written in, true classes down the left, predictions along the bottom.
pub fn confusion_png(matrix: &[Vec<usize>], class_names: &[String], title: &str) -> Result<Vec<u8>> {
    let n = class_names.len();
    if n == 0 || matrix.len() != n || matrix.iter().any(|row| row.len() != n) {
        return Err(PlotError::ConfusionShape { classes: n });
    }
    let chars = class_names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    let (lines, title_chars) = title_lines(title);
    let lay = ConfusionLayout::new(n, chars, (lines.len(), title_chars));
    png_with(lay.size, |root| {
        root.fill(&WHITE).map_err(drawing)?;
        let (cell, left, top) = (lay.cell, lay.left, lay.top);
        let grid = cell * n as i32;
        let mut lines: Vec<(&str, u32)> =
            lines.iter().enumerate().map(|(i, l)| (*l, if i == 0 { 18 } else { 15 })).collect();
        lines.push(("rows: true class, columns: predicted class; shade: share of the row", 13));
        for (i, (line, size)) in lines.into_iter().enumerate() {
            let style = TextStyle::from((FONT, size).into_font()).color(&BLACK);
            root.draw(&Text::new(line.to_string(), (10, 10 + TITLE_LINE as i32 * i as i32), style)).map_err(drawing)?;
        }
        let font_px = (cell / 3).clamp(8, 14);
        let label_style = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
        for (i, row) in matrix.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let shade = |c: u8| (255.0 - share * (255.0 - c as f64)) as u8;
                let color = RGBColor(shade(8), shade(48), shade(107));
                let (x, y) = (left + j as i32 * cell, top + i as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], color.filled())).map_err(drawing)?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK.mix(0.15))).map_err(drawing)?;
                if cell >= 24 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    let style = TextStyle::from((FONT, font_px).into_font())
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), style)).map_err(drawing)?;
                }
            }
            let style = label_style.clone().pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(class_names[i].clone(), (left - 6, top + i as i32 * cell + cell / 2), style))
                .map_err(drawing)?;
        }
        for (j, name) in class_names.iter().enumerate() {
            let style =
                label_style.clone().transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(name.clone(), (left + j as i32 * cell + cell / 2, top + grid + 6), style))
                .map_err(drawing)?;
        }
        let axis = TextStyle::from((FONT, 14).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw(&Text::new("predicted", (left + grid / 2, lay.size.1 as i32 - 6), axis)).map_err(drawing)?;
        let axis = TextStyle::from((FONT, 14).into_font())
            .color(&BLACK)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new("true", (6, top + grid / 2), axis)).map_err(drawing)?;
        root.present().map_err(drawing)
    })
}

/// Width of a caption character in an image grid (12-pixel font), in pixels.
const CAPTION_CHAR: usize = 7;
/// Height of a title line in an image grid (13-pixel font), in pixels.
const GRID_TITLE_LINE: usize = 18;

/// Where an image grid puts things: tiles wide enough for the longest caption, below a
/// title band.
struct GridLayout {
    columns: usize,
    tile_w: usize,
    tile_h: usize,
    /// Where an image starts within its tile's width (images are centred under wide captions).
    inset: usize,
    /// Height of the title band.
    band: usize,
    size: (u32, u32),
}

impl GridLayout {
    fn new(count: usize, (rows, cols): (usize, usize), columns: usize, title: &str, caption_chars: usize) -> Self {
        let columns = columns.clamp(1, count.max(1));
        let grid_rows = count.div_ceil(columns);
        let image_w = cols * GRID_SCALE;
        let tile_w = image_w.max(caption_chars * CAPTION_CHAR) + GRID_PAD;
        let tile_h = rows * GRID_SCALE + GRID_CAPTION + GRID_PAD;
        let (lines, title_chars) = title_lines(title);
        let band = if lines.is_empty() { 0 } else { 4 + GRID_TITLE_LINE * lines.len() };
        let width = (columns.saturating_mul(tile_w) + GRID_PAD).max(title_chars * 7 + 2 * GRID_PAD);
        let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let size = (side(width), side(grid_rows.saturating_mul(tile_h).saturating_add(GRID_PAD + band)));
        GridLayout { columns, tile_w, tile_h, inset: (tile_w - GRID_PAD - image_w) / 2, band, size }
    }

    /// The top-left pixel of image `i`.
    fn origin(&self, i: usize) -> (usize, usize) {
        let (c, r) = (i % self.columns, i / self.columns);
        (GRID_PAD + c * self.tile_w + self.inset, self.band + GRID_PAD + r * self.tile_h + GRID_CAPTION)
    }
}

/// The pixel size [`image_grid_png`] gives for `count` images of `rows × cols` in `columns`
/// columns, with captions no wider than an image (at 28 pixels, up to 12 characters).
pub fn image_grid_size(count: usize, rows: usize, cols: usize, columns: usize) -> (u32, u32) {
    GridLayout::new(count, (rows, cols), columns, "", 0).size
}

/// The pixel size [`titled_grid_png`] gives for these title and captions.
pub fn titled_grid_size(title: &str, captions: &[String], rows: usize, cols: usize, columns: usize) -> (u32, u32) {
    let chars = captions.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    GridLayout::new(captions.len(), (rows, cols), columns, title, chars).size
}

/// Grayscale images (`rows × cols` bytes each) magnified [`GRID_SCALE`] times in a grid of
/// `columns` columns, each with its caption above it, as a PNG (no title: see
/// [`titled_grid_png`]).
pub fn image_grid_png(
    images: &[&[u8]],
    rows: usize,
    cols: usize,
    captions: &[String],
    columns: usize,
) -> Result<Vec<u8>> {
    titled_grid_png("", images, (rows, cols), captions, columns)
}

/// [`image_grid_png`] under `title` (lines split at `\n`: what the images are), with tiles
/// widened to their longest caption so that no caption runs into the next.
pub fn titled_grid_png(
    title: &str,
    images: &[&[u8]],
    (rows, cols): (usize, usize),
    captions: &[String],
    columns: usize,
) -> Result<Vec<u8>> {
    if images.is_empty() {
        return Err(PlotError::NoImages);
    }
    if captions.len() != images.len() {
        return Err(PlotError::Captions { captions: captions.len(), images: images.len() });
    }
    if let Some((i, bad)) = images.iter().enumerate().find(|(_, img)| img.len() != rows * cols) {
        return Err(PlotError::ImageSize { index: i, pixels: bad.len(), rows, cols });
    }
    let chars = captions.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let lay = GridLayout::new(images.len(), (rows, cols), columns, title, chars);
    let size = lay.size;
    let need = crate::budget::product(&[size.0 as u64, size.1 as u64, 3]);
    crate::budget::check(|| format!("a grid of {} images of {rows}×{cols} pixels", images.len()), need)?;
    let width = size.0 as usize;
    register_font();
    let mut rgb = vec![255u8; width * size.1 as usize * 3];
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = lay.origin(i);
        for (p, &v) in img.iter().enumerate() {
            let (x, y) = (x0 + (p % cols) * GRID_SCALE, y0 + (p / cols) * GRID_SCALE);
            for dy in 0..GRID_SCALE {
                let row = ((y + dy) * width + x) * 3;
                rgb[row..row + GRID_SCALE * 3].fill(v);
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        let (lines, _) = title_lines(title);
        for (i, line) in lines.iter().enumerate() {
            let style = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
            let at = (GRID_PAD as i32, (4 + GRID_TITLE_LINE * i) as i32);
            root.draw(&Text::new(line.to_string(), at, style)).map_err(drawing)?;
        }
        let style = TextStyle::from((FONT, 12).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (i, caption) in captions.iter().enumerate() {
            let (x0, y0) = lay.origin(i);
            let at = ((x0 + cols * GRID_SCALE / 2) as i32, y0 as i32 - 3);
            root.draw(&Text::new(caption.clone(), at, style.clone())).map_err(drawing)?;
        }
        root.present().map_err(drawing)?;
    }
    encode_png(&rgb, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG, returning (width, height, RGB or other pixel bytes).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn history() -> HistorySeries {
        HistorySeries {
            epochs: vec![1, 2, 3],
            accuracy: vec![0.9, 0.95, 0.97],
            val_accuracy: vec![0.93, 0.96, 0.975],
            loss: vec![0.3, 0.15, 0.1],
            val_loss: vec![0.2, 0.12, 0.09],
            kept: Some(3),
            title: "run 1: seed-cnn on mnist, 54000 train\nbest val accuracy 97.50% (epoch 3)".into(),
        }
    }

    /// The text of every `<text>` element of an SVG, in order.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
            .collect()
    }

    /// Writes `png` to `$MNISTLAB_PLOT_DIR/name.png` when that variable is set, to look at.
    fn keep(name: &str, png: &[u8]) {
        if let Some(dir) = std::env::var_os("MNISTLAB_PLOT_DIR") {
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    #[test]
    fn history_svg_says_what_it_shows() {
        // Two epochs, the first kept: the ticks are 1 and 2, once each per panel.
        let h = HistorySeries {
            epochs: vec![1, 2],
            accuracy: vec![0.91, 0.95],
            val_accuracy: vec![0.96, 0.955],
            loss: vec![0.31, 0.16],
            val_loss: vec![0.13, 0.14],
            kept: Some(1),
            title: "run 2: conv8 pool dense32 on mnist, 1800 train\nbest val accuracy 96.00% (epoch 1)".into(),
        };
        keep("history-2-epochs", &history_png(&h).unwrap());
        let texts = svg_texts(&history_svg(&h).unwrap());
        let count = |s: &str| texts.iter().filter(|t| *t == s).count();
        assert_eq!(count("run 2: conv8 pool dense32 on mnist, 1800 train"), 1, "{texts:?}");
        assert_eq!(count("best val accuracy 96.00% (epoch 1)"), 1, "{texts:?}");
        assert_eq!((count("1"), count("2")), (2, 2), "{texts:?}");
        assert_eq!(count("kept: epoch 1"), 2, "{texts:?}");
        assert_eq!((count("model accuracy"), count("model loss"), count("epoch")), (1, 1, 2), "{texts:?}");
        // Long runs: at most 10 integer ticks a panel, none repeated.
        for n in [1usize, 7, 11, 150] {
            let mut h = h.clone();
            h.epochs = (1..=n).collect();
            for v in [&mut h.accuracy, &mut h.val_accuracy, &mut h.loss, &mut h.val_loss] {
                *v = (0..n).map(|i| 0.5 + 0.4 * (i as f32 / n as f32)).collect();
            }
            h.kept = Some(n);
            if n == 150 {
                keep("history-150-epochs", &history_png(&h).unwrap());
            }
            let texts = svg_texts(&history_svg(&h).unwrap());
            let expected = epoch_ticks(1, n);
            for (_, label) in &expected {
                assert_eq!(texts.iter().filter(|t| *t == label).count(), 2, "{n} epochs: {label} in {texts:?}");
            }
            assert!(expected.len() <= 10);
        }
        keep("history-3-epochs", &history_png(&history()).unwrap());
        // Curves through every corner: the legend gets headroom above them.
        let mut noisy = h.clone();
        noisy.epochs = (1..=9).collect();
        let zig = |a: f32, b: f32| (0..9).map(|i| if i % 2 == 0 { a } else { b }).collect::<Vec<f32>>();
        (noisy.accuracy, noisy.val_accuracy) = (zig(0.5, 0.9), zig(0.9, 0.5));
        (noisy.loss, noisy.val_loss) = (zig(1.0, 0.2), zig(0.2, 1.0));
        noisy.kept = Some(5);
        keep("history-noisy", &history_png(&noisy).unwrap());
        let texts = svg_texts(&history_svg(&noisy).unwrap());
        assert_eq!(texts.iter().filter(|t| *t == "kept: epoch 5").count(), 2, "{texts:?}");
    }

    #[test]
    fn the_legend_keeps_clear_of_the_curves() {
        // The loss panel of a typical run: both curves fall to the lower right and the kept
        // epoch is the last; the legend must not go where the curves or the kept line are.
        let h = history();
        let unit = |v: &[f32], lo: f32, hi: f32| -> Vec<(f64, f64)> {
            v.iter().enumerate().map(|(i, &y)| ((i as f64 + 0.5) / 3.0, ((y - lo) / (hi - lo)) as f64)).collect()
        };
        let r = padded_range(h.loss.iter().chain(&h.val_loss).copied());
        let lines = vec![
            unit(&h.loss, r.start, r.end),
            unit(&h.val_loss, r.start, r.end),
            vec![(2.5 / 3.0, 0.0), (2.5 / 3.0, 1.0)],
        ];
        let labels = ["train", "validation", "kept: epoch 3"].map(String::from);
        let (place, size) = legend_place(&lines, &labels, (420.0, 330.0));
        let rect = place.corner.rect(size, ticks::LEGEND_GAP);
        for line in &lines {
            for w in line.windows(2) {
                for i in 0..=100 {
                    let t = i as f64 / 100.0;
                    let (x, y) = (w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1) * place.data_height);
                    assert!(
                        !(x > rect.0 && x < rect.2 && y > rect.1 && y < rect.3),
                        "{place:?} {rect:?} over ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn history_png_is_a_valid_png_with_both_colours() {
        let (w, h, px) = decode(&history_png(&history()).unwrap());
        assert_eq!((w, h), HISTORY_SIZE);
        let has = |c: RGBColor| px.chunks(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(TRAIN_COLOR) && has(VAL_COLOR));
        // Text was drawn with the embedded font: some dark pixels in the title band.
        assert!(px[..(w * 30 * 3) as usize].chunks(3).any(|p| p[0] < 80 && p[1] < 80 && p[2] < 80));
        let svg = history_svg(&history()).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("model loss"));
        let mut no_val = history();
        no_val.val_accuracy.clear();
        no_val.val_loss.clear();
        assert!(history_png(&no_val).is_ok());
        no_val.loss.pop();
        assert!(history_png(&no_val).unwrap_err().to_string().contains("3 values"));
        let e = history_svg(&no_val).unwrap_err();
        assert!(matches!(e, PlotError::HistoryColumns { epochs: 3 }), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: the history's columns do not all have 3 values");
        let e = history_png(&HistorySeries::default()).unwrap_err();
        assert!(matches!(e, PlotError::NoEpochs), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: the history has no epoch to plot");
    }

    #[test]
    fn confusion_png_has_the_computed_size() {
        let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let mut m = vec![vec![0usize; 10]; 10];
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 90;
            row[(i + 1) % 10] = 10;
        }
        let title = "run 1: seed-cnn on mnist, 54000 train\nconfusion matrix on test: accuracy 90.00% (1000 images)";
        let png = confusion_png(&m, &names, title).unwrap();
        keep("confusion", &png);
        let (w, h, _) = decode(&png);
        assert_eq!((w, h), confusion_size(&names, title));
        assert!(w > 480 && h > 480);
        // A long title widens the figure rather than running off its edge.
        let long = format!("run 1: {}\nconfusion matrix", "conv32 pool ".repeat(8));
        assert!(confusion_size(&names, &long).0 > w);
        let e = confusion_png(&m[..9], &names, title).unwrap_err();
        assert!(matches!(e, PlotError::ConfusionShape { classes: 10 }), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: the confusion matrix is not 10×10 like the class names");
    }

    #[test]
    fn image_grid_places_scaled_tiles() {
        let white = vec![255u8; 784];
        let black = vec![0u8; 784];
        let images: Vec<&[u8]> = vec![&white, &black, &white];
        let captions = vec!["7".to_string(), "2 (pred 3)".to_string(), "1".to_string()];
        let (w, h, px) = decode(&image_grid_png(&images, 28, 28, &captions, 2).unwrap());
        assert_eq!((w, h), image_grid_size(3, 28, 28, 2));
        assert_eq!(w as usize, GRID_PAD + 2 * (84 + GRID_PAD));
        assert_eq!(h as usize, GRID_PAD + 2 * (84 + GRID_CAPTION + GRID_PAD));
        let at = |x: usize, y: usize| &px[(y * w as usize + x) * 3..][..3];
        // Centre of the second tile (top row, right) is black; of the first, white.
        let y = GRID_PAD + GRID_CAPTION + 42;
        assert_eq!(at(GRID_PAD + 84 + GRID_PAD + 42, y), [0, 0, 0]);
        assert_eq!(at(GRID_PAD + 42, y), [255, 255, 255]);
        let e = image_grid_png(&images, 28, 28, &captions[..2], 2).unwrap_err();
        assert!(matches!(e, PlotError::Captions { captions: 2, images: 3 }), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: 2 captions for 3 images");
        let e = image_grid_png(&[&white[..10]], 28, 28, &captions[..1], 2).unwrap_err();
        assert!(matches!(e, PlotError::ImageSize { index: 0, pixels: 10, rows: 28, cols: 28 }), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: image 0 has 10 pixels, expected 28×28");
        // A title band above, and tiles as wide as their longest caption.
        let long = vec!["T-shirt/top→Pullover".to_string(), "7".to_string(), "1".to_string()];
        let titled = titled_grid_png("run 1: mistakes\ntrue→predicted", &images, (28, 28), &long, 2).unwrap();
        keep("grid-titled", &titled);
        let (tw, th, _) = decode(&titled);
        assert_eq!((tw, th), titled_grid_size("run 1: mistakes\ntrue→predicted", &long, 28, 28, 2));
        assert_eq!(tw as usize, GRID_PAD + 2 * (20 * CAPTION_CHAR + GRID_PAD));
        assert_eq!(th as usize, h as usize + 4 + 2 * GRID_TITLE_LINE);
        let e = image_grid_png(&[], 28, 28, &[], 2).unwrap_err();
        assert!(matches!(e, PlotError::NoImages), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: no image to show");
    }
}
