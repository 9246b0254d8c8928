//! Figures as PNG bytes (or SVG text): training history, confusion matrix, image grids, the
//! learning-rate range test, the hyperparameter search.
//!
//! Drawn with plotters into memory using the embedded DejaVu Sans font, so no system font is
//! looked up. Takes plain data only: it knows nothing of models or datasets.

mod lr;
mod tune;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

pub use lr::{lr_curve_png, LR_CURVE_SIZE};
pub use tune::{tune_png, tune_size, SettingColumn, SettingValue, TuneFigure, TUNE_PANEL};

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

/// The metrics of a training run, one value per epoch (validation columns may be empty).
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
}

/// Width and height of the history figure.
pub const HISTORY_SIZE: (u32, u32) = (1000, 400);
/// Tile magnification in image grids.
pub const GRID_SCALE: usize = 3;
/// Height of the caption band above each grid tile.
pub const GRID_CAPTION: usize = 18;
/// Space around grid tiles.
pub const GRID_PAD: usize = 6;

const FONT: &str = "sans-serif";
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);

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

/// One panel: `train` and `val` against the epochs.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    metric: &str,
    epochs: &[usize],
    train: &[f32],
    val: &[f32],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let last = *epochs.last().expect("checked non-empty") as f32;
    let first = epochs[0] as f32;
    let x_range = (first - 0.2)..(last.max(first + 1.0) + 0.2);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range, padded_range(train.iter().chain(val).copied()))
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_labels((epochs.len() + 1).min(12))
        .label_style((FONT, 13))
        .draw()
        .map_err(drawing)?;
    let points = |v: &[f32]| epochs.iter().zip(v).map(|(&e, &y)| (e as f32, y)).collect::<Vec<_>>();
    for (values, color, label) in [(train, TRAIN_COLOR, "train"), (val, VAL_COLOR, "validation")] {
        if values.is_empty() {
            continue;
        }
        let pts = points(values);
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(drawing)?;
    }
    chart
        .configure_series_labels()
        .position(if metric == "loss" { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight })
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

fn draw_history<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, h: &HistorySeries) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(drawing)?;
    let panels = root.split_evenly((1, 2));
    draw_panel(&panels[0], "model accuracy", "accuracy", &h.epochs, &h.accuracy, &h.val_accuracy)?;
    draw_panel(&panels[1], "model loss", "loss", &h.epochs, &h.loss, &h.val_loss)?;
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

/// Layout of a confusion-matrix figure for `n` classes with labels up to `label_chars` long.
struct ConfusionLayout {
    cell: i32,
    left: i32,
    top: i32,
    size: (u32, u32),
}

impl ConfusionLayout {
    fn new(n: usize, label_chars: usize) -> ConfusionLayout {
        let cell = if n <= 12 { 48 } else { (576 / n as i32).max(14) };
        let label = 10 + 7 * label_chars as i32;
        let left = 28 + label;
        let top = 44;
        let grid = cell * n as i32;
        ConfusionLayout { cell, left, top, size: ((left + grid + 20) as u32, (top + grid + label + 28) as u32) }
    }
}

/// The pixel size [`confusion_png`] gives for these class names.
pub fn confusion_size(class_names: &[String]) -> (u32, u32) {
    let chars = class_names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    ConfusionLayout::new(class_names.len(), chars).size
}

/// A confusion matrix (`matrix[true][predicted]` counts) as a PNG: cells shaded by the share
/// of their row, counts written in, true classes down the left, predictions along the bottom.
pub fn confusion_png(matrix: &[Vec<usize>], class_names: &[String]) -> Result<Vec<u8>> {
    let n = class_names.len();
    if n == 0 || matrix.len() != n || matrix.iter().any(|row| row.len() != n) {
        return Err(PlotError::ConfusionShape { classes: n });
    }
    let chars = class_names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    let lay = ConfusionLayout::new(n, chars);
    png_with(lay.size, |root| {
        root.fill(&WHITE).map_err(drawing)?;
        let (cell, left, top) = (lay.cell, lay.left, lay.top);
        let grid = cell * n as i32;
        let title = TextStyle::from((FONT, 16).into_font()).color(&BLACK);
        root.draw(&Text::new("confusion matrix (rows: true class, columns: predicted)", (10, 12), title.clone()))
            .map_err(drawing)?;
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

/// The pixel size [`image_grid_png`] gives for `count` images of `rows × cols` in `columns` columns.
pub fn image_grid_size(count: usize, rows: usize, cols: usize, columns: usize) -> (u32, u32) {
    let columns = columns.clamp(1, count.max(1));
    let grid_rows = count.div_ceil(columns);
    let tile_w = cols * GRID_SCALE + GRID_PAD;
    let tile_h = rows * GRID_SCALE + GRID_CAPTION + GRID_PAD;
    let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (side(columns.saturating_mul(tile_w) + GRID_PAD), side(grid_rows.saturating_mul(tile_h) + GRID_PAD))
}

/// Grayscale images (`rows × cols` bytes each) magnified [`GRID_SCALE`] times in a grid of
/// `columns` columns, each with its caption above it, as a PNG.
pub fn image_grid_png(
    images: &[&[u8]],
    rows: usize,
    cols: usize,
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
    let columns = columns.clamp(1, images.len());
    let size = image_grid_size(images.len(), rows, cols, columns);
    let need = crate::budget::product(&[size.0 as u64, size.1 as u64, 3]);
    crate::budget::check(|| format!("a grid of {} images of {rows}×{cols} pixels", images.len()), need)?;
    let width = size.0 as usize;
    let tile_w = cols * GRID_SCALE + GRID_PAD;
    let tile_h = rows * GRID_SCALE + GRID_CAPTION + GRID_PAD;
    let origin = |i: usize| (GRID_PAD + (i % columns) * tile_w, GRID_PAD + (i / columns) * tile_h + GRID_CAPTION);
    register_font();
    let mut rgb = vec![255u8; width * size.1 as usize * 3];
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = origin(i);
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
        let style = TextStyle::from((FONT, 12).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (i, caption) in captions.iter().enumerate() {
            let (x0, y0) = origin(i);
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
        let (w, h, _) = decode(&confusion_png(&m, &names).unwrap());
        assert_eq!((w, h), confusion_size(&names));
        assert!(w > 480 && h > 480);
        let e = confusion_png(&m[..9], &names).unwrap_err();
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
        let e = image_grid_png(&[], 28, 28, &[], 2).unwrap_err();
        assert!(matches!(e, PlotError::NoImages), "{e:?}");
        assert_eq!(e.to_string(), "cannot draw the figure: no image to show");
    }
}
