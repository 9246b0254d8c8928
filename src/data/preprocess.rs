//! MNIST-style preprocessing of an arbitrary picture of a digit, for `predict` and for
//! `load folder`.
//!
//! The steps follow how MNIST itself was made: grayscale; light ink on a dark background
//! (inverted when the background is light); cropped to the ink's bounding box; scaled to fit a
//! 20×20 box keeping the aspect ratio; placed in a 28×28 field so that the centre of mass of
//! the ink is at the field's centre. A picture that is already MNIST-shaped (28×28, grey,
//! light ink on a dark border) is taken as it is, so that a test image saved as PNG gives
//! the model the very bytes it had in the split.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage};

use super::error::{DataError, Result};

/// Side of the output field.
pub const FIELD: usize = 28;
/// Side of the box the digit is scaled to fit.
pub const BOX: u32 = 20;
/// Pixels below this (after contrast stretching) count as background.
const INK_THRESHOLD: u8 = 25;
/// A 28×28 grey picture whose border averages below this is taken as already preprocessed.
const DARK_BORDER: u32 = 25;

/// The largest picture side that is decoded.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels that are decoded (64 megapixels, 8000×8000). Preprocessing holds about 16
/// bytes a pixel at once (the decoded picture, an RGBA copy, three grayscale planes), so without
/// this a file of a few hundred bytes whose header claims 16384×16384 would allocate gigabytes.
pub const MAX_PIXELS: u64 = 64_000_000;

/// Bytes a pixel that preprocessing holds at once (see [`MAX_PIXELS`]).
const BYTES_PER_PIXEL: u64 = 16;

/// A picture made into model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// 28×28 = 784 bytes, light ink on black.
    pub pixels: Vec<u8>,
    /// True when the picture was already MNIST-shaped and taken as it is.
    pub as_is: bool,
    /// The picture's width and height as decoded.
    pub size: (u32, u32),
}

/// Reads a PNG or JPEG file (a regular file within the memory budget) and preprocesses it into
/// 28×28 = 784 bytes.
pub fn preprocess_file(path: &Path) -> Result<Vec<u8>> {
    prepare_file(path).map(|p| p.pixels)
}

/// Reads a PNG or JPEG file (a regular file within the memory budget) and prepares it, saying
/// whether it was taken as it is.
pub fn prepare_file(path: &Path) -> Result<Prepared> {
    prepare_bytes(path, &crate::budget::read_file(path)?)
}

/// Decodes a PNG or JPEG held in memory (`path` names it in errors) and preprocesses it. The
/// decoder may allocate at most the memory budget, pictures of at most [`MAX_SIDE`] a side and
/// [`MAX_PIXELS`] in all.
pub fn preprocess_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    prepare_bytes(path, bytes).map(|p| p.pixels)
}

/// [`preprocess_bytes`], saying whether the picture was taken as it is.
pub fn prepare_bytes(path: &Path, bytes: &[u8]) -> Result<Prepared> {
    let decode = |e: image::ImageError| DataError::codec(path, "cannot decode the picture", e);
    let reader = || {
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| DataError::io(path, e))
    };
    let (w, h) = reader()?.into_dimensions().map_err(decode)?;
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(DataError::format(
            path,
            format!(
                "the picture is {w}×{h} pixels ({:.0} megapixels); mnistlab reads pictures of at most {} megapixels: \
                 scale it down first",
                w as f64 * h as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    crate::budget::check(
        || format!("{}: decoding a {w}×{h} picture", path.display()),
        crate::budget::product(&[w as u64, h as u64, BYTES_PER_PIXEL]),
    )?;
    let mut reader = reader()?;
    let mut limits = image::io::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(crate::budget::limit());
    reader.limits(limits);
    let img = reader.decode().map_err(decode)?;
    prepare_image(&img).map_err(|e| DataError::format(path, e))
}

/// Preprocesses a decoded picture; transparent pixels count as white paper.
pub fn preprocess_image(img: &DynamicImage) -> std::result::Result<Vec<u8>, String> {
    prepare_image(img).map(|p| p.pixels)
}

/// [`preprocess_image`], saying whether the picture was taken as it is: a 28×28 picture whose
/// pixels are all opaque grey (red = green = blue) and whose border is dark.
pub fn prepare_image(img: &DynamicImage) -> std::result::Result<Prepared, String> {
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let grey = rgba.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[3] == 255);
    if grey && (w as usize, h as usize) == (FIELD, FIELD) {
        let pixels: Vec<u8> = rgba.pixels().map(|p| p.0[0]).collect();
        if is_mnist_shaped(&pixels) {
            return Ok(Prepared { pixels, as_is: true, size: (w, h) });
        }
    }
    let gray: Vec<u8> = rgba
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0;
            let lum = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
            let a = a as f32 / 255.0;
            (lum * a + 255.0 * (1.0 - a)).round() as u8
        })
        .collect();
    Ok(Prepared { pixels: preprocess_gray(&gray, w as usize, h as usize)?, as_is: false, size: (w, h) })
}

/// True for 28×28 grey bytes whose border averages below [`DARK_BORDER`]: light ink on a dark
/// background, the way MNIST's images are.
pub fn is_mnist_shaped(pixels: &[u8]) -> bool {
    if pixels.len() != FIELD * FIELD {
        return false;
    }
    let border: Vec<u32> = (0..FIELD)
        .flat_map(|i| [pixels[i], pixels[(FIELD - 1) * FIELD + i], pixels[i * FIELD], pixels[i * FIELD + FIELD - 1]])
        .map(u32::from)
        .collect();
    border.iter().sum::<u32>() < DARK_BORDER * border.len() as u32
}

/// Preprocesses a `width × height` grayscale picture (row-major bytes) into 784 bytes.
pub fn preprocess_gray(pixels: &[u8], width: usize, height: usize) -> std::result::Result<Vec<u8>, String> {
    if width == 0 || height == 0 || pixels.len() != width * height {
        return Err(format!("{} bytes do not make a {width}×{height} picture", pixels.len()));
    }
    // The border tells the background: a light border means dark ink on light paper.
    let mut border: Vec<u8> = (0..width)
        .flat_map(|x| [pixels[x], pixels[(height - 1) * width + x]])
        .chain((0..height).flat_map(|y| [pixels[y * width], pixels[y * width + width - 1]]))
        .collect();
    let invert = border.iter().map(|&v| v as u32).sum::<u32>() > 127 * border.len() as u32;
    let ink: Vec<u8> = if invert { pixels.iter().map(|&v| 255 - v).collect() } else { pixels.to_vec() };
    if invert {
        border.iter_mut().for_each(|v| *v = 255 - *v);
    }
    border.sort_unstable();
    let background = border[border.len() / 2];
    let peak = *ink.iter().max().expect("the picture is not empty");
    if peak < background.saturating_add(32) {
        return Err("no digit found: the picture has no visible ink".into());
    }
    // Stretch so the background becomes 0 and the darkest ink 255.
    let span = (peak - background) as f32;
    let stretched: Vec<u8> = ink
        .iter()
        .map(|&v| {
            let s = ((v.saturating_sub(background)) as f32 / span * 255.0).round() as u8;
            if s < INK_THRESHOLD {
                0
            } else {
                s
            }
        })
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (width, height, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if stretched[y * width + x] > 0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = GrayImage::from_fn(bw as u32, bh as u32, |x, y| {
        image::Luma([stretched[(y0 + y as usize) * width + x0 + x as usize]])
    });
    let scale = BOX as f32 / bw.max(bh) as f32;
    let nw = ((bw as f32 * scale).round() as u32).clamp(1, BOX);
    let nh = ((bh as f32 * scale).round() as u32).clamp(1, BOX);
    let digit = image::imageops::resize(&crop, nw, nh, FilterType::Triangle);
    // Centre of mass, in pixel-centre coordinates.
    let (mut mass, mut mx, mut my) = (0f64, 0f64, 0f64);
    for (x, y, p) in digit.enumerate_pixels() {
        let v = p.0[0] as f64;
        mass += v;
        mx += v * (x as f64 + 0.5);
        my += v * (y as f64 + 0.5);
    }
    if mass == 0.0 {
        return Err("no digit found: the ink vanished when scaled down".into());
    }
    let half = FIELD as f64 / 2.0;
    let place = |com: f64, size: u32| ((half - com).round() as i64).clamp(0, (FIELD as u32 - size) as i64) as usize;
    let (ox, oy) = (place(mx / mass, nw), place(my / mass, nh));
    let mut out = vec![0u8; FIELD * FIELD];
    for (x, y, p) in digit.enumerate_pixels() {
        out[(oy + y as usize) * FIELD + ox + x as usize] = p.0[0];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Centre of mass (pixel-centre coordinates) and bounding box of a 28×28 image.
    fn stats(img: &[u8]) -> ((f64, f64), (usize, usize, usize, usize)) {
        let (mut m, mut sx, mut sy) = (0f64, 0f64, 0f64);
        let (mut x0, mut y0, mut x1, mut y1) = (FIELD, FIELD, 0, 0);
        for y in 0..FIELD {
            for x in 0..FIELD {
                let v = img[y * FIELD + x] as f64;
                if v > 0.0 {
                    m += v;
                    sx += v * (x as f64 + 0.5);
                    sy += v * (y as f64 + 0.5);
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
            }
        }
        ((sx / m, sy / m), (x0, y0, x1, y1))
    }

    #[test]
    fn centres_an_off_centre_blob_on_light_paper() {
        // A dark ellipse (12 wide, 30 tall) near the top-right corner of light gray paper.
        let (w, h) = (100, 80);
        let mut px = vec![230u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = ((x as f64 - 80.0) / 6.0, (y as f64 - 20.0) / 15.0);
                if dx * dx + dy * dy <= 1.0 {
                    px[y * w + x] = 20;
                }
            }
        }
        let out = preprocess_gray(&px, w, h).unwrap();
        assert_eq!(out.len(), 784);
        let ((cx, cy), (x0, y0, x1, y1)) = stats(&out);
        assert!((cx - 14.0).abs() <= 0.75 && (cy - 14.0).abs() <= 0.75, "centre of mass ({cx}, {cy})");
        // The tall side fills the 20-pixel box; the aspect ratio (about 2.5) is kept.
        assert_eq!(y1 - y0 + 1, 20);
        let width = x1 - x0 + 1;
        assert!((7..=10).contains(&width), "width {width}");
        // Ink is bright on a black background (inverted), the corners are empty.
        assert_eq!(out[0], 0);
        assert_eq!(out[783], 0);
        assert!(out.contains(&255));
    }

    #[test]
    fn dark_paper_is_not_inverted_and_alpha_means_paper() {
        // A light square on black, off centre.
        let mut px = vec![0u8; 40 * 40];
        for y in 2..12 {
            for x in 25..35 {
                px[y * 40 + x] = 200;
            }
        }
        let out = preprocess_gray(&px, 40, 40).unwrap();
        let ((cx, cy), (x0, y0, x1, y1)) = stats(&out);
        assert_eq!((x1 - x0 + 1, y1 - y0 + 1), (20, 20));
        assert!((cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5);
        // Black strokes on a transparent canvas: transparent counts as white paper.
        let mut rgba = image::RgbaImage::new(30, 30);
        for y in 5..25 {
            for x in 12..16 {
                rgba.put_pixel(x, y, image::Rgba([0, 0, 0, 255]));
            }
        }
        let out = preprocess_image(&DynamicImage::ImageRgba8(rgba)).unwrap();
        assert_eq!(stats(&out).1 .3 - stats(&out).1 .1 + 1, 20);
    }

    #[test]
    fn mnist_shaped_pictures_are_taken_as_they_are() {
        // A real MNIST test image, saved as grey PNG and as grey-valued RGB PNG: the same bytes back.
        let dir = crate::testdata::mnist_dir();
        let test =
            crate::data::load::read_idx_split(&dir.join("t10k-images-idx3-ubyte"), &dir.join("t10k-labels-idx1-ubyte"))
                .unwrap()
                .split;
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            let img = test.image(i, 784);
            let grey = image::GrayImage::from_raw(28, 28, img.to_vec()).unwrap();
            let path = dir.path().join(format!("{i}.png"));
            grey.save(&path).unwrap();
            let p = prepare_file(&path).unwrap();
            assert!(p.as_is, "image {i}");
            assert_eq!(p.pixels, img);
            let rgb = DynamicImage::ImageLuma8(grey).to_rgb8();
            let path = dir.path().join(format!("{i}-rgb.png"));
            rgb.save(&path).unwrap();
            assert_eq!(prepare_file(&path).unwrap(), p);
            // Inverted (dark ink on white), it is preprocessed: same size, not the same bytes.
            let inverted: Vec<u8> = img.iter().map(|v| 255 - v).collect();
            let back = prepare_image(&DynamicImage::ImageLuma8(image::GrayImage::from_raw(28, 28, inverted).unwrap()));
            let back = back.unwrap();
            assert!(!back.as_is && back.pixels.len() == 784);
            // Coloured ink is not grey: preprocessed too.
            let mut tinted =
                DynamicImage::ImageLuma8(image::GrayImage::from_raw(28, 28, img.to_vec()).unwrap()).to_rgb8();
            tinted.pixels_mut().for_each(|px| px.0[2] = px.0[2].saturating_add(1));
            assert!(!prepare_image(&DynamicImage::ImageRgb8(tinted)).unwrap().as_is);
        }
    }

    #[test]
    fn blank_pictures_are_rejected() {
        let e = preprocess_gray(&[255; 100], 10, 10).unwrap_err();
        assert!(e.contains("no digit found"), "{e}");
        assert!(preprocess_gray(&[0; 10], 10, 10).is_err());
        let e = preprocess_file(Path::new("/nonexistent/digit.png")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/digit.png"), "{e}");
    }
}
