//! Data augmentation: seeded random transforms of `u8` images, online (per batch) or offline.
//!
//! A [`Pipeline`] is a list of [`Op`]s. The geometric ops (rotate, shift, scale, shear, flip,
//! crop) compose, in list order, into one affine map per image about the image centre, applied
//! with one resample (bilinear by default, see [`Interpolation`]). Elastic displacements are
//! sampled through that same resample (the displaced output point is mapped back through the
//! inverse affine), so an image is interpolated once however many ops there are. Noise and
//! erasing then act on the resampled bytes, in list order. Pixels that come from outside the
//! image are background 0. Labels are never changed.
//!
//! Every random choice for an image is drawn from a ChaCha8 generator keyed by
//! `(seed, epoch, image index)` alone, so the output does not depend on the thread count, the
//! batch size or which other images share the batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::dataset::{Images, PixelScaling, Split};
use super::error::{DataError, Result};

/// How a shift amount is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftUnit {
    /// A fraction of the image side (columns for x, rows for y).
    Fraction,
    /// Pixels.
    Pixels,
}

/// The axis a flip mirrors, written `h` or `v` after `flip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipAxis {
    /// Left-right mirror (`h`).
    Horizontal,
    /// Top-bottom mirror (`v`).
    Vertical,
}

impl FlipAxis {
    /// Both axes, horizontal first.
    pub const ALL: [FlipAxis; 2] = [FlipAxis::Horizontal, FlipAxis::Vertical];

    /// The letter written after `flip`: `h` or `v`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlipAxis::Horizontal => "h",
            FlipAxis::Vertical => "v",
        }
    }

    /// The axis of a letter written after `flip` (`h` or `v`); `None` for anything else.
    pub fn from_name(name: &str) -> Option<FlipAxis> {
        FlipAxis::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for FlipAxis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an erased rectangle is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraseFill {
    /// Background 0.
    Zero,
    /// Uniformly random bytes (the choice of Zhong et al. 2017).
    Random,
}

/// How the resample reads between source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// Weighted mean of the four nearest pixels.
    #[default]
    Bilinear,
    /// The nearest pixel.
    Nearest,
}

/// The random key of one pass over the images: with an image's index it fixes every draw for
/// that image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Key {
    /// The seed in force.
    pub seed: u64,
    /// The training epoch (online augmentation) or the copy number (offline expansion).
    pub epoch: u64,
}

impl Key {
    /// The key of `epoch` under `seed`.
    pub fn new(seed: u64, epoch: u64) -> Key {
        Key { seed, epoch }
    }

    /// The generator key of image `index` in `stream`: `(seed, epoch, index, stream)`.
    fn image(self, index: usize, stream: Stream) -> [u64; 4] {
        [self.seed, self.epoch, index as u64, stream as u64]
    }
}

/// One augmentation step. Ranges are inclusive; `min == max` gives a fixed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Rotation about the centre by an angle uniform in `[min_deg, max_deg]`; positive is
    /// counter-clockwise as displayed.
    Rotate {
        /// Smallest angle, degrees.
        min_deg: f32,
        /// Largest angle, degrees.
        max_deg: f32,
    },
    /// Translation, each axis independently uniform in `[min, max]`.
    Shift {
        /// Smallest shift.
        min: f32,
        /// Largest shift.
        max: f32,
        /// Whether the amounts are fractions of the side or pixels.
        unit: ShiftUnit,
    },
    /// Zoom about the centre by a factor uniform in `[min, max]`; above 1 enlarges.
    Scale {
        /// Smallest factor.
        min: f32,
        /// Largest factor.
        max: f32,
    },
    /// Horizontal shear (x moves by `tan(angle) * y`), angle uniform in `[min_deg, max_deg]`.
    Shear {
        /// Smallest angle, degrees.
        min_deg: f32,
        /// Largest angle, degrees.
        max_deg: f32,
    },
    /// Pad by `pad` pixels of background, then crop a random `rows × cols` window: an integer
    /// translation uniform in `[-pad, pad]` on each axis.
    Crop {
        /// Padding on each side, pixels.
        pad: usize,
    },
    /// Mirror with probability 0.5.
    Flip {
        /// The mirror axis.
        axis: FlipAxis,
    },
    /// Elastic distortion (Simard et al. 2003): displacement fields uniform in `[-1, 1]`,
    /// smoothed by a Gaussian of standard deviation `sigma` pixels, scaled by `alpha`.
    Elastic {
        /// Displacement scale, pixels.
        alpha: f32,
        /// Smoothing standard deviation, pixels.
        sigma: f32,
    },
    /// Additive Gaussian noise of standard deviation `std` in the 0..1 pixel scale, clamped.
    Noise {
        /// Standard deviation, 0..1 scale.
        std: f32,
    },
    /// Random erasing (Zhong et al. 2017): with probability `p`, a rectangle of 2–40% of the
    /// area with aspect ratio 0.3–3.3 (log-uniform) is filled.
    Erase {
        /// Probability of erasing an image.
        p: f32,
        /// The fill.
        fill: EraseFill,
    },
}

impl Op {
    /// `rotate DEG`: an angle uniform in `[-deg, deg]`.
    pub fn rotate(deg: f32) -> Op {
        Op::Rotate { min_deg: -deg.abs(), max_deg: deg.abs() }
    }

    /// `shift FRAC`: each axis uniform in `[-frac, frac]` of the side.
    pub fn shift(frac: f32) -> Op {
        Op::Shift { min: -frac.abs(), max: frac.abs(), unit: ShiftUnit::Fraction }
    }

    /// `shift N px`: each axis uniform in `[-px, px]` pixels.
    pub fn shift_pixels(px: f32) -> Op {
        Op::Shift { min: -px.abs(), max: px.abs(), unit: ShiftUnit::Pixels }
    }

    /// `scale A..B`: a zoom factor uniform in `[a, b]`.
    pub fn scale(a: f32, b: f32) -> Op {
        Op::Scale { min: a.min(b), max: a.max(b) }
    }

    /// `shear DEG`: a shear angle uniform in `[-deg, deg]`.
    pub fn shear(deg: f32) -> Op {
        Op::Shear { min_deg: -deg.abs(), max_deg: deg.abs() }
    }

    /// `crop PAD`: pad by `pad`, random crop back.
    pub fn crop(pad: usize) -> Op {
        Op::Crop { pad }
    }

    /// `flip h|v`: mirror with probability 0.5.
    pub fn flip(axis: FlipAxis) -> Op {
        Op::Flip { axis }
    }

    /// `elastic ALPHA SIGMA`.
    pub fn elastic(alpha: f32, sigma: f32) -> Op {
        Op::Elastic { alpha, sigma }
    }

    /// `noise STD`.
    pub fn noise(std: f32) -> Op {
        Op::Noise { std }
    }

    /// `erase P`, filled with random bytes as in the paper.
    pub fn erase(p: f32) -> Op {
        Op::Erase { p, fill: EraseFill::Random }
    }

    /// True for the ops folded into the per-image affine map.
    fn is_geometric(&self) -> bool {
        matches!(
            self,
            Op::Rotate { .. }
                | Op::Shift { .. }
                | Op::Scale { .. }
                | Op::Shear { .. }
                | Op::Crop { .. }
                | Op::Flip { .. }
        )
    }

    /// True when the op never changes an image.
    fn is_identity(&self) -> bool {
        match *self {
            Op::Rotate { min_deg, max_deg } | Op::Shear { min_deg, max_deg } => min_deg == 0.0 && max_deg == 0.0,
            Op::Shift { min, max, .. } => min == 0.0 && max == 0.0,
            Op::Scale { min, max } => min == 1.0 && max == 1.0,
            Op::Crop { pad } => pad == 0,
            Op::Flip { .. } => false,
            Op::Elastic { alpha, .. } => alpha == 0.0,
            Op::Noise { std } => std == 0.0,
            Op::Erase { p, .. } => p == 0.0,
        }
    }

    /// Checks the parameters; the message names the op and the bad value.
    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DataError::Invalid(msg));
        let range = |name: &str, min: f32, max: f32| -> Result<()> {
            if !min.is_finite() || !max.is_finite() {
                return bad(format!("{name}: the range {min}..{max} is not finite"));
            }
            if min > max {
                return bad(format!("{name}: the range {min}..{max} is empty (minimum above maximum)"));
            }
            Ok(())
        };
        match *self {
            Op::Rotate { min_deg, max_deg } => range("rotate", min_deg, max_deg),
            Op::Shift { min, max, .. } => range("shift", min, max),
            Op::Scale { min, max } => {
                range("scale", min, max)?;
                if min <= 0.0 {
                    return bad(format!("scale: factors must be above 0, got {min}"));
                }
                Ok(())
            }
            Op::Shear { min_deg, max_deg } => {
                range("shear", min_deg, max_deg)?;
                if min_deg <= -89.0 || max_deg >= 89.0 {
                    return bad(format!(
                        "shear: angles must lie strictly between -89 and 89 degrees, got {min_deg}..{max_deg}"
                    ));
                }
                Ok(())
            }
            Op::Crop { pad } => {
                if pad > 1 << 16 {
                    return bad(format!("crop: padding {pad} is too large"));
                }
                Ok(())
            }
            Op::Flip { .. } => Ok(()),
            Op::Elastic { alpha, sigma } => {
                if !alpha.is_finite() || alpha < 0.0 {
                    return bad(format!("elastic: alpha must be a finite number ≥ 0, got {alpha}"));
                }
                if !sigma.is_finite() || sigma <= 0.0 || sigma > 100.0 {
                    return bad(format!("elastic: sigma must lie in (0, 100] pixels, got {sigma}"));
                }
                Ok(())
            }
            Op::Noise { std } => {
                if !std.is_finite() || std < 0.0 {
                    return bad(format!("noise: the standard deviation must be a finite number ≥ 0, got {std}"));
                }
                Ok(())
            }
            Op::Erase { p, .. } => {
                if !(0.0..=1.0).contains(&p) {
                    return bad(format!("erase: the probability must lie in [0, 1], got {p}"));
                }
                Ok(())
            }
        }
    }

    /// One line for `describe`.
    fn describe(&self) -> String {
        match *self {
            Op::Rotate { min_deg, max_deg } => format!("rotate {}°", range_text(min_deg, max_deg)),
            Op::Shift { min, max, unit: ShiftUnit::Fraction } => {
                format!("shift {}% of the side", range_text(min * 100.0, max * 100.0))
            }
            Op::Shift { min, max, unit: ShiftUnit::Pixels } => format!("shift {} px", range_text(min, max)),
            Op::Scale { min, max } => format!("scale ×{}", range_text(min, max)),
            Op::Shear { min_deg, max_deg } => format!("shear {}°", range_text(min_deg, max_deg)),
            Op::Crop { pad } => format!("crop: pad {pad} px, random crop back"),
            Op::Flip { axis: FlipAxis::Horizontal } => "flip horizontally, p = 0.5".into(),
            Op::Flip { axis: FlipAxis::Vertical } => "flip vertically, p = 0.5".into(),
            Op::Elastic { alpha, sigma } => {
                format!("elastic α = {} σ = {}", num(alpha), num(sigma))
            }
            Op::Noise { std } => format!("gaussian noise σ = {}", num(std)),
            Op::Erase { p, fill } => format!(
                "erase p = {}: 2–40% of the area, aspect 0.3–3.3, {} fill",
                num(p),
                match fill {
                    EraseFill::Zero => "zero",
                    EraseFill::Random => "random",
                }
            ),
        }
    }
}

/// A number with at most four decimals and no trailing zeros.
fn num(x: f32) -> String {
    let s = format!("{:.4}", x as f64);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// `±a`, a single value, or `a..b`.
fn range_text(min: f32, max: f32) -> String {
    if min == max {
        num(min)
    } else if min == -max {
        format!("±{}", num(max))
    } else {
        format!("{}..{}", num(min), num(max))
    }
}

/// A 2-D affine map `p ↦ M p + t` with `M = [[a, b], [c, d]]`, `t = (tx, ty)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Affine {
    a: f64,
    b: f64,
    c: f64,
    d: f64,
    tx: f64,
    ty: f64,
}

impl Affine {
    const IDENTITY: Affine = Affine { a: 1.0, b: 0.0, c: 0.0, d: 1.0, tx: 0.0, ty: 0.0 };

    fn linear(a: f64, b: f64, c: f64, d: f64) -> Affine {
        Affine { a, b, c, d, tx: 0.0, ty: 0.0 }
    }

    fn translation(tx: f64, ty: f64) -> Affine {
        Affine { tx, ty, ..Affine::IDENTITY }
    }

    /// `next ∘ self`: apply `self`, then `next`.
    fn then(self, next: Affine) -> Affine {
        Affine {
            a: next.a * self.a + next.b * self.c,
            b: next.a * self.b + next.b * self.d,
            c: next.c * self.a + next.d * self.c,
            d: next.c * self.b + next.d * self.d,
            tx: next.a * self.tx + next.b * self.ty + next.tx,
            ty: next.c * self.tx + next.d * self.ty + next.ty,
        }
    }

    /// The inverse map; every op's matrix has a non-zero determinant.
    fn inverse(self) -> Affine {
        let det = self.a * self.d - self.b * self.c;
        let (a, b, c, d) = (self.d / det, -self.b / det, -self.c / det, self.a / det);
        Affine { a, b, c, d, tx: -(a * self.tx + b * self.ty), ty: -(c * self.tx + d * self.ty) }
    }
}

/// Fractional bits of the fixed-point source coordinates.
const FRAC_BITS: u32 = 16;
const ONE: f64 = (1u64 << FRAC_BITS) as f64;
/// Images handed to one rayon task.
const CHUNK: usize = 64;
/// The elastic smoothing kernel reaches this many standard deviations.
const KERNEL_REACH: f32 = 3.0;
/// Tries at placing an erase rectangle before giving up on the image.
const ERASE_TRIES: usize = 10;

/// Which random stream an image's draws come from: online training or offline expansion.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Online = 0,
    Offline = 1,
}

/// Reusable buffers of one worker; nothing is allocated per image.
#[derive(Default)]
struct Scratch {
    /// The source image with a one-pixel border of background.
    padded: Vec<u8>,
    /// Elastic displacement along x and y, one per output pixel.
    dx: Vec<f32>,
    dy: Vec<f32>,
    /// The elastic fields' buffers.
    blur: BlurScratch,
}

/// The buffers of the elastic blur: a freshly drawn field and the blur's intermediate passes.
#[derive(Default)]
struct BlurScratch {
    /// Independent draws, `rows × cols` of them.
    field: Vec<f32>,
    /// The field blurred along x, in image order.
    tmp: Vec<f32>,
    /// The field blurred along x, transposed (`cols × rows`).
    tmp_t: Vec<f32>,
}

/// A seeded augmentation pipeline: a list of ops and the interpolation of the resample.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    ops: Vec<Op>,
    interpolation: Interpolation,
    /// Normalised Gaussian kernel of each elastic op, in op order.
    kernels: Vec<Vec<f32>>,
}

impl Pipeline {
    /// A pipeline of `ops`, applied in order; fails naming the first op with a bad parameter.
    pub fn new(ops: Vec<Op>) -> Result<Pipeline> {
        for op in &ops {
            op.validate()?;
        }
        let kernels = ops
            .iter()
            .filter_map(|op| match *op {
                Op::Elastic { sigma, .. } => Some(gaussian_kernel(sigma)),
                _ => None,
            })
            .collect();
        Ok(Pipeline { ops, interpolation: Interpolation::default(), kernels })
    }

    /// The same pipeline resampling with `interpolation`.
    pub fn with_interpolation(mut self, interpolation: Interpolation) -> Pipeline {
        self.interpolation = interpolation;
        self
    }

    /// The ops, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The interpolation of the resample.
    pub fn interpolation(&self) -> Interpolation {
        self.interpolation
    }

    /// True when the pipeline never changes an image (no op, or only no-op parameters).
    pub fn is_identity(&self) -> bool {
        self.ops.iter().all(Op::is_identity)
    }

    /// One line per op, e.g. `rotate ±10°`; `no augmentation` when there is none.
    pub fn describe(&self) -> String {
        if self.ops.is_empty() {
            return "no augmentation".into();
        }
        let mut lines: Vec<String> = self.ops.iter().map(Op::describe).collect();
        if self.interpolation == Interpolation::Nearest
            && self.ops.iter().any(|op| op.is_geometric() || matches!(op, Op::Elastic { .. }))
        {
            lines.push("resampling: nearest pixel".into());
        }
        lines.join("\n")
    }

    /// Augments the images of `src` at `indices` into `out`, one image after another, in
    /// parallel. Image `i`'s result depends only on its pixels, on `key` and on `i`.
    pub fn augment_batch(&self, src: Images<'_>, indices: &[usize], key: Key, out: &mut [u8]) -> Result<()> {
        let len = check_batch(src, indices, out.len(), "byte")?;
        out.par_chunks_mut(CHUNK * len).zip(indices.par_chunks(CHUNK)).for_each(|(out, indices)| {
            let mut scratch = Scratch::default();
            for (dst, &i) in out.chunks_exact_mut(len).zip(indices) {
                self.augment_one(src.single(i), key.image(i, Stream::Online), &mut scratch, dst);
            }
        });
        Ok(())
    }

    /// As [`Pipeline::augment_batch`], writing the floats `scaling` gives each resulting byte
    /// (`byte * scale + offset`, see [`PixelScaling::affine`]). The resample works on bytes, so
    /// background is `offset`.
    pub fn augment_batch_f32(
        &self,
        src: Images<'_>,
        indices: &[usize],
        key: Key,
        scaling: PixelScaling,
        out: &mut [f32],
    ) -> Result<()> {
        let len = check_batch(src, indices, out.len(), "float")?;
        let (scale, offset) = scaling.affine();
        out.par_chunks_mut(CHUNK * len).zip(indices.par_chunks(CHUNK)).for_each(|(out, indices)| {
            let mut scratch = Scratch::default();
            let mut bytes = vec![0u8; len];
            for (dst, &i) in out.chunks_exact_mut(len).zip(indices) {
                self.augment_one(src.single(i), key.image(i, Stream::Online), &mut scratch, &mut bytes);
                for (d, &b) in dst.iter_mut().zip(&bytes) {
                    *d = b as f32 * scale + offset;
                }
            }
        });
        Ok(())
    }

    /// Augments image `index` of `src` alone: the same bytes as that image's part of
    /// [`Pipeline::augment_batch`] with the same key.
    pub fn augment_image(&self, src: Images<'_>, index: usize, key: Key, out: &mut [u8]) -> Result<()> {
        check_batch(src, &[index], out.len(), "byte")?;
        self.augment_one(src.single(index), key.image(index, Stream::Online), &mut Scratch::default(), out);
        Ok(())
    }

    /// Offline expansion, `expand Nx`: a split `factor` times the size of `split`, the
    /// originals first, then `factor - 1` augmented copies of every image in order (copy `k`
    /// uses epoch `k`). `factor` 2 doubles the split; 1 returns a copy.
    pub fn expand(&self, split: &Split, rows: usize, cols: usize, factor: usize, seed: u64) -> Result<Split> {
        if factor == 0 {
            return Err(DataError::Invalid("expand: the factor must be at least 1".into()));
        }
        let len = rows * cols;
        if split.pixels.len() != split.labels.len() * len {
            return Err(DataError::Invalid(format!(
                "expand: the split has {} labels but {} bytes of pixels (expected {} for {rows}×{cols} images)",
                split.labels.len(),
                split.pixels.len(),
                split.labels.len() * len
            )));
        }
        let n = split.len();
        let total = n.checked_mul(factor).and_then(|t| t.checked_mul(len));
        let Some(total) = total else {
            return Err(DataError::Invalid(format!("expand: {n} images × {factor} is too large")));
        };
        let mut pixels = vec![0u8; total];
        pixels[..n * len].copy_from_slice(&split.pixels);
        let indices: Vec<usize> = (0..n).collect();
        let src = Images::new(&split.pixels, rows, cols);
        if n > 0 && len > 0 {
            for (copy, out) in pixels.chunks_exact_mut(n * len).enumerate().skip(1) {
                let key = Key::new(seed, copy as u64);
                out.par_chunks_mut(CHUNK * len).zip(indices.par_chunks(CHUNK)).for_each(|(out, indices)| {
                    let mut scratch = Scratch::default();
                    for (dst, &i) in out.chunks_exact_mut(len).zip(indices) {
                        self.augment_one(src.single(i), key.image(i, Stream::Offline), &mut scratch, dst);
                    }
                });
            }
        }
        let labels = split.labels.repeat(factor);
        Ok(Split { pixels, labels })
    }

    /// The geometric part of an image's draws: the forward affine map in centred coordinates.
    fn draw_affine(&self, rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Affine {
        let mut map = Affine::IDENTITY;
        for op in &self.ops {
            let step = match *op {
                Op::Rotate { min_deg, max_deg } => {
                    let (s, c) = uniform(rng, min_deg, max_deg).to_radians().sin_cos();
                    Affine::linear(c, s, -s, c)
                }
                Op::Shift { min, max, unit } => {
                    let (sx, sy) = match unit {
                        ShiftUnit::Fraction => (cols as f64, rows as f64),
                        ShiftUnit::Pixels => (1.0, 1.0),
                    };
                    let tx = uniform(rng, min, max) * sx;
                    let ty = uniform(rng, min, max) * sy;
                    Affine::translation(tx, ty)
                }
                Op::Scale { min, max } => {
                    let s = uniform(rng, min, max);
                    Affine::linear(s, 0.0, 0.0, s)
                }
                Op::Shear { min_deg, max_deg } => {
                    Affine::linear(1.0, uniform(rng, min_deg, max_deg).to_radians().tan(), 0.0, 1.0)
                }
                Op::Crop { pad } => {
                    let pad = pad as i64;
                    let tx = rng.random_range(-pad..=pad) as f64;
                    let ty = rng.random_range(-pad..=pad) as f64;
                    Affine::translation(tx, ty)
                }
                Op::Flip { axis } => {
                    let flip = rng.random::<bool>();
                    match (flip, axis) {
                        (false, _) => Affine::IDENTITY,
                        (true, FlipAxis::Horizontal) => Affine::linear(-1.0, 0.0, 0.0, 1.0),
                        (true, FlipAxis::Vertical) => Affine::linear(1.0, 0.0, 0.0, -1.0),
                    }
                }
                Op::Elastic { .. } | Op::Noise { .. } | Op::Erase { .. } => continue,
            };
            map = map.then(step);
        }
        map
    }

    /// The per-image work on the one image `src`: draws, resample, then noise and erasing.
    /// `out` is `rows × cols`.
    fn augment_one(&self, src: Images<'_>, key: [u64; 4], scratch: &mut Scratch, out: &mut [u8]) {
        let (rows, cols) = (src.rows, src.cols);
        let mut rng = rng_for(key);
        let forward = self.draw_affine(&mut rng, rows, cols);
        let len = rows * cols;

        let mut elastic = false;
        for (kernel, op) in self.kernels.iter().zip(self.ops.iter().filter(|op| matches!(op, Op::Elastic { .. }))) {
            let Op::Elastic { alpha, .. } = *op else {
                continue;
            };
            if alpha == 0.0 {
                continue;
            }
            if !elastic {
                scratch.dx.clear();
                scratch.dx.resize(len, 0.0);
                scratch.dy.clear();
                scratch.dy.resize(len, 0.0);
                elastic = true;
            }
            for axis in 0..2 {
                scratch.blur.field.clear();
                scratch.blur.field.extend((0..len).map(|_| rng.random::<f32>() * 2.0 - 1.0));
                let target = if axis == 0 { &mut scratch.dx } else { &mut scratch.dy };
                scratch.blur.add_blurred(rows, cols, kernel, alpha, target);
            }
        }

        if forward == Affine::IDENTITY && !elastic {
            out.copy_from_slice(src.pixels);
        } else {
            // Output pixel p (pixel coordinates) reads source pixel F⁻¹(p - c) + c.
            let inv = forward.inverse();
            let (cx, cy) = ((cols as f64 - 1.0) / 2.0, (rows as f64 - 1.0) / 2.0);
            let to_src = Affine::translation(-cx, -cy).then(inv).then(Affine::translation(cx, cy));
            let padded = pad_into(src, &mut scratch.padded);
            if elastic {
                let field = Displacement { dx: &scratch.dx, dy: &scratch.dy };
                resample_displaced(padded, &to_src, field, self.interpolation, out);
            } else {
                resample_affine(padded, &to_src, self.interpolation, out);
            }
        }

        for op in &self.ops {
            match *op {
                Op::Noise { std } if std > 0.0 => {
                    let sd = std * 255.0;
                    for px in out.iter_mut() {
                        let n: f32 = rng.sample(StandardNormal);
                        *px = (*px as f32 + n * sd).round().clamp(0.0, 255.0) as u8;
                    }
                }
                // One draw decides whether this image is erased.
                Op::Erase { p, fill } if p > 0.0 && rng.random::<f32>() < p => {
                    erase(&mut rng, rows, cols, fill, out);
                }
                _ => {}
            }
        }
    }
}

/// Checks a batch's sizes and indices; returns the bytes per image.
fn check_batch(src: Images<'_>, indices: &[usize], out_len: usize, what: &str) -> Result<usize> {
    let Images { pixels: src, rows, cols } = src;
    let len = rows
        .checked_mul(cols)
        .filter(|&l| l > 0)
        .ok_or_else(|| DataError::Invalid(format!("augment: bad image size {rows}×{cols}")))?;
    if !src.len().is_multiple_of(len) {
        return Err(DataError::Invalid(format!(
            "augment: {} source bytes is not a whole number of {rows}×{cols} images",
            src.len()
        )));
    }
    let count = src.len() / len;
    if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
        return Err(DataError::Invalid(format!(
            "augment: image index {bad} is out of range: the source holds {count} images"
        )));
    }
    if out_len != indices.len() * len {
        return Err(DataError::Invalid(format!(
            "augment: the {what} output holds {out_len} values, expected {} ({} images of {rows}×{cols})",
            indices.len() * len,
            indices.len()
        )));
    }
    Ok(len)
}

/// The generator of one image, keyed by `(seed, epoch, index, stream)`.
fn rng_for(key: [u64; 4]) -> ChaCha8Rng {
    let mut bytes = [0u8; 32];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(key) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(bytes)
}

/// Uniform in `[min, max]`, as `f64`; exactly `min` when the range is a single value.
fn uniform(rng: &mut ChaCha8Rng, min: f32, max: f32) -> f64 {
    if min == max {
        min as f64
    } else {
        rng.random_range(min as f64..=max as f64)
    }
}

/// A normalised Gaussian kernel of standard deviation `sigma`.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (KERNEL_REACH * sigma).ceil().max(1.0) as i32;
    let weights: Vec<f32> = (-radius..=radius).map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = weights.iter().sum();
    weights.iter().map(|w| w / sum).collect()
}

impl BlurScratch {
    /// Adds `gain` times the separable Gaussian blur of the random `field` to `target`
    /// (`rows × cols`).
    ///
    /// `field` holds independent draws, so it is read as the transposed field (`cols × rows`):
    /// both passes then become sums of whole shifted rows, which vectorise, with one transpose
    /// in between. Outside the image the field is 0.
    fn add_blurred(&mut self, rows: usize, cols: usize, kernel: &[f32], gain: f32, target: &mut [f32]) {
        let BlurScratch { field, tmp, tmp_t } = self;
        // Blur along x: rows of the transposed field are columns of the image.
        tmp_t.clear();
        tmp_t.resize(rows * cols, 0.0);
        blur_rows_into(field, cols, rows, kernel, 1.0, tmp_t);
        tmp.clear();
        tmp.resize(rows * cols, 0.0);
        for (x, column) in tmp_t.chunks_exact(rows).enumerate() {
            for (y, &value) in column.iter().enumerate() {
                tmp[y * cols + x] = value;
            }
        }
        // Blur along y, scaled by the gain.
        blur_rows_into(tmp, rows, cols, kernel, gain, target);
    }
}

/// For an `n × width` array, adds to output row `i` the sum of `gain * kernel[k] * src` row
/// `i + k - radius`, rows outside the array counting as 0.
fn blur_rows_into(src: &[f32], n: usize, width: usize, kernel: &[f32], gain: f32, dst: &mut [f32]) {
    let r = kernel.len() / 2;
    for (i, out) in dst.chunks_exact_mut(width).enumerate().take(n) {
        for j in i.saturating_sub(r)..=(i + r).min(n - 1) {
            let w = kernel[j + r - i] * gain;
            axpy(out, &src[j * width..(j + 1) * width], w);
        }
    }
}

/// `dst += w * src`, in blocks of 4 (one SSE register) so that it vectorises.
#[inline(always)]
fn axpy(dst: &mut [f32], src: &[f32], w: f32) {
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        for i in 0..4 {
            d[i] += w * s[i];
        }
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += w * s;
    }
}

/// An image with a one-pixel border of background on every side: `(rows + 2) × (cols + 2)`
/// bytes, where `rows × cols` is the size of the image inside.
#[derive(Clone, Copy)]
struct Padded<'a> {
    /// The bytes, border included.
    bytes: &'a [u8],
    /// Height of the image inside the border.
    rows: usize,
    /// Width of the image inside the border.
    cols: usize,
}

/// Elastic displacements along x and y, one of each per output pixel.
#[derive(Clone, Copy)]
struct Displacement<'a> {
    dx: &'a [f32],
    dy: &'a [f32],
}

/// Copies the one image `src` into `padded` with a one-pixel border of 0 on every side.
fn pad_into<'a>(src: Images<'_>, padded: &'a mut Vec<u8>) -> Padded<'a> {
    let Images { pixels: src, rows, cols } = src;
    let pw = cols + 2;
    padded.clear();
    padded.resize(pw * (rows + 2), 0);
    for (y, row) in src.chunks_exact(cols).enumerate() {
        padded[(y + 1) * pw + 1..(y + 1) * pw + 1 + cols].copy_from_slice(row);
    }
    Padded { bytes: padded, rows, cols }
}

/// Bilinear read at fixed-point padded coordinates `(u, v)`, which must satisfy
/// `0 <= u >> FRAC_BITS <= cols` and `0 <= v >> FRAC_BITS <= rows`.
#[inline(always)]
fn bilinear(padded: &[u8], pw: usize, u: i64, v: i64) -> u8 {
    let (ix, iy) = ((u >> FRAC_BITS) as usize, (v >> FRAC_BITS) as usize);
    let fx = ((u >> (FRAC_BITS - 8)) & 0xff) as i32;
    let fy = ((v >> (FRAC_BITS - 8)) & 0xff) as i32;
    let p = iy * pw + ix;
    let (top, bottom) = (&padded[p..p + 2], &padded[p + pw..p + pw + 2]);
    // Each lerp is exact at weight 0, so integer coordinates reproduce the source bytes.
    let t = ((top[0] as i32) << 8) + (top[1] as i32 - top[0] as i32) * fx;
    let b = ((bottom[0] as i32) << 8) + (bottom[1] as i32 - bottom[0] as i32) * fx;
    (((t << 8) + (b - t) * fy + (1 << 15)) >> 16) as u8
}

/// The byte of `src` at fixed-point padded coordinates `(u, v)`; 0 when it lies outside the image.
#[inline(always)]
fn sample(src: Padded<'_>, u: i64, v: i64, interpolation: Interpolation) -> u8 {
    let Padded { bytes: padded, rows, cols } = src;
    let pw = cols + 2;
    match interpolation {
        Interpolation::Bilinear => {
            // Negative coordinates wrap to huge values and fail the test.
            if (u >> FRAC_BITS) as u64 > cols as u64 || (v >> FRAC_BITS) as u64 > rows as u64 {
                return 0;
            }
            bilinear(padded, pw, u, v)
        }
        Interpolation::Nearest => {
            let half = 1i64 << (FRAC_BITS - 1);
            let (ix, iy) = ((u + half) >> FRAC_BITS, (v + half) >> FRAC_BITS);
            if ix as u64 > cols as u64 + 1 || iy as u64 > rows as u64 + 1 {
                return 0;
            }
            padded[iy as usize * pw + ix as usize]
        }
    }
}

/// Fixed-point value of a coordinate, rounded; far-out values saturate and read as background.
fn fixed(x: f64) -> i64 {
    (x * ONE).round().clamp(-(1i64 << 40) as f64, (1i64 << 40) as f64) as i64
}

/// The `x` in `0..n` with `0 <= u0 + x * du < hi`, as a range (possibly empty).
fn valid_span(u0: i64, du: i64, hi: i64, n: usize) -> std::ops::Range<usize> {
    let n = n as i64;
    let (lo, end) = match du.signum() {
        0 if (0..hi).contains(&u0) => (0, n),
        0 => (0, 0),
        // x >= -u0 / du and x < (hi - u0) / du, both rounded up: ceil(a / b) = -floor(-a / b).
        1 => (-(u0.div_euclid(du)), -((u0 - hi).div_euclid(du))),
        // With du < 0: x > (u0 - hi) / -du and x <= u0 / -du.
        _ => ((u0 - hi).div_euclid(-du) + 1, u0.div_euclid(-du) + 1),
    };
    let lo = lo.clamp(0, n);
    lo as usize..end.clamp(lo, n) as usize
}

/// Resamples through `to_src` (output pixel → source pixel), walking each row incrementally
/// over the span of pixels that read the image; the rest is background.
fn resample_affine(src: Padded<'_>, to_src: &Affine, interpolation: Interpolation, out: &mut [u8]) {
    let Padded { bytes: padded, rows, cols } = src;
    let pw = cols + 2;
    let (du, dv) = (fixed(to_src.a), fixed(to_src.c));
    // Bilinear reads need 0 <= floor(u) <= cols; nearest reads need 0 <= round(u) <= cols + 1.
    let (shift, extra) = match interpolation {
        Interpolation::Bilinear => (0, 1),
        Interpolation::Nearest => (1i64 << (FRAC_BITS - 1), 2),
    };
    let (hi_u, hi_v) = (((cols + extra) as i64) << FRAC_BITS, ((rows + extra) as i64) << FRAC_BITS);
    // Padded coordinates are source coordinates + 1. Every step is a whole fixed-point number,
    // so row starts are exact multiples and need no rounding per row.
    let (du_row, dv_row) = (fixed(to_src.b), fixed(to_src.d));
    let (mut u0, mut v0) = (fixed(to_src.tx + 1.0) - du_row, fixed(to_src.ty + 1.0) - dv_row);
    for row in out.chunks_exact_mut(cols) {
        u0 += du_row;
        v0 += dv_row;
        let span_u = valid_span(u0 + shift, du, hi_u, cols);
        let span_v = valid_span(v0 + shift, dv, hi_v, cols);
        let span = span_u.start.max(span_v.start)..span_u.end.min(span_v.end);
        if span.is_empty() {
            row.fill(0);
            continue;
        }
        row[..span.start].fill(0);
        row[span.end..].fill(0);
        let mut u = u0 + span.start as i64 * du;
        let mut v = v0 + span.start as i64 * dv;
        let inner = &mut row[span];
        match interpolation {
            Interpolation::Bilinear => {
                for px in inner.iter_mut() {
                    *px = bilinear(padded, pw, u, v);
                    u += du;
                    v += dv;
                }
            }
            Interpolation::Nearest => {
                for px in inner.iter_mut() {
                    let (ix, iy) = ((u + shift) >> FRAC_BITS, (v + shift) >> FRAC_BITS);
                    *px = padded[iy as usize * pw + ix as usize];
                    u += du;
                    v += dv;
                }
            }
        }
    }
}

/// Resamples output pixel `p` from `to_src(p + (dx, dy))`: elastic displacement and the affine
/// map in one interpolation.
fn resample_displaced(
    src: Padded<'_>,
    to_src: &Affine,
    field: Displacement<'_>,
    interpolation: Interpolation,
    out: &mut [u8],
) {
    let (cols, Displacement { dx, dy }) = (src.cols, field);
    let m = [
        to_src.a as f32,
        to_src.b as f32,
        to_src.c as f32,
        to_src.d as f32,
        (to_src.tx + 1.0) as f32,
        (to_src.ty + 1.0) as f32,
    ];
    let one = ONE as f32;
    for (y, ((row, dxs), dys)) in
        out.chunks_exact_mut(cols).zip(dx.chunks_exact(cols)).zip(dy.chunks_exact(cols)).enumerate()
    {
        for (x, ((px, &ex), &ey)) in row.iter_mut().zip(dxs).zip(dys).enumerate() {
            let (qx, qy) = (x as f32 + ex, y as f32 + ey);
            // Truncation moves a point by under 1/65536 pixel; the cast saturates far out.
            let u = ((m[0] * qx + m[1] * qy + m[4]) * one) as i64;
            let v = ((m[2] * qx + m[3] * qy + m[5]) * one) as i64;
            *px = sample(src, u, v, interpolation);
        }
    }
}

/// Random erasing: one rectangle of 2–40% of the area, aspect ratio log-uniform in 0.3–3.3.
fn erase(rng: &mut ChaCha8Rng, rows: usize, cols: usize, fill: EraseFill, out: &mut [u8]) {
    let area = (rows * cols) as f64;
    for _ in 0..ERASE_TRIES {
        let target = area * rng.random_range(0.02..=0.4);
        let aspect = rng.random_range(0.3f64.ln()..=3.3f64.ln()).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if h == 0 || w == 0 || h > rows || w > cols {
            continue;
        }
        let y0 = rng.random_range(0..=rows - h);
        let x0 = rng.random_range(0..=cols - w);
        for row in out.chunks_exact_mut(cols).skip(y0).take(h) {
            let span = &mut row[x0..x0 + w];
            match fill {
                EraseFill::Zero => span.fill(0),
                EraseFill::Random => rng.fill(span),
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of bytes from a fixed generator.
    fn random_image(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows * cols).map(|_| rng.random()).collect()
    }

    /// A bright square of side `side` with its top-left corner at `(top, left)`.
    fn square_image(rows: usize, cols: usize, top: usize, left: usize, side: usize) -> Vec<u8> {
        let mut img = vec![0u8; rows * cols];
        for y in top..top + side {
            img[y * cols + left..y * cols + left + side].fill(200);
        }
        img
    }

    fn centre_of_mass(img: &[u8], cols: usize) -> (f64, f64) {
        let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
        for (i, &p) in img.iter().enumerate() {
            let p = p as f64;
            m += p;
            mx += p * (i % cols) as f64;
            my += p * (i / cols) as f64;
        }
        (mx / m, my / m)
    }

    fn run(pipeline: &Pipeline, img: &[u8], rows: usize, cols: usize, seed: u64, epoch: u64) -> Vec<u8> {
        let mut out = vec![0u8; rows * cols];
        pipeline.augment_batch(Images::new(img, rows, cols), &[0], Key::new(seed, epoch), &mut out).unwrap();
        out
    }

    #[test]
    fn zero_parameters_are_the_bit_exact_identity() {
        let ops = vec![
            Op::rotate(0.0),
            Op::shift(0.0),
            Op::shift_pixels(0.0),
            Op::scale(1.0, 1.0),
            Op::shear(0.0),
            Op::crop(0),
            Op::elastic(0.0, 4.0),
            Op::noise(0.0),
            Op::erase(0.0),
        ];
        let img = random_image(28, 28, 1);
        for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
            let pipeline = Pipeline::new(ops.clone()).unwrap().with_interpolation(interpolation);
            assert!(pipeline.is_identity());
            for epoch in 0..5 {
                assert_eq!(run(&pipeline, &img, 28, 28, 7, epoch), img, "{interpolation:?}, epoch {epoch}");
            }
        }
        assert!(!Pipeline::new(vec![Op::rotate(10.0)]).unwrap().is_identity());
        assert!(!Pipeline::new(vec![Op::flip(FlipAxis::Horizontal)]).unwrap().is_identity());
    }

    #[test]
    fn resampling_a_non_trivial_identity_map_is_bit_exact() {
        // Scale 2 then 0.5: the map is the identity but goes through the resample.
        let img = random_image(20, 17, 2);
        let pipeline = Pipeline::new(vec![Op::scale(2.0, 2.0), Op::scale(0.5, 0.5)]).unwrap();
        assert_eq!(run(&pipeline, &img, 20, 17, 0, 0), img);
    }

    #[test]
    fn a_shift_of_k_pixels_moves_the_centre_of_mass_by_k() {
        let img = square_image(28, 28, 10, 11, 6);
        let (x0, y0) = centre_of_mass(&img, 28);
        for k in [-3.0f32, 1.5, 2.0, 4.0] {
            for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
                let pipeline = Pipeline::new(vec![Op::Shift { min: k, max: k, unit: ShiftUnit::Pixels }])
                    .unwrap()
                    .with_interpolation(interpolation);
                let (x1, y1) = centre_of_mass(&run(&pipeline, &img, 28, 28, 3, 0), 28);
                assert!((x1 - x0 - k as f64).abs() <= 0.5, "shift {k}: x moved {}", x1 - x0);
                assert!((y1 - y0 - k as f64).abs() <= 0.5, "shift {k}: y moved {}", y1 - y0);
            }
        }
        // A fraction of the side: 0.1 of 28 columns is 2.8 pixels.
        let pipeline = Pipeline::new(vec![Op::Shift { min: 0.1, max: 0.1, unit: ShiftUnit::Fraction }]).unwrap();
        let (x1, _) = centre_of_mass(&run(&pipeline, &img, 28, 28, 3, 0), 28);
        assert!((x1 - x0 - 2.8).abs() <= 0.5, "x moved {}", x1 - x0);
    }

    #[test]
    fn rotating_by_90_degrees_is_transpose_and_flip() {
        for n in [28usize, 27] {
            let img = random_image(n, n, n as u64);
            for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
                let pipeline = Pipeline::new(vec![Op::Rotate { min_deg: 90.0, max_deg: 90.0 }])
                    .unwrap()
                    .with_interpolation(interpolation);
                let out = run(&pipeline, &img, n, n, 0, 0);
                for i in 0..n {
                    for j in 0..n {
                        // Counter-clockwise: output (i, j) shows input (j, n-1-i).
                        assert_eq!(
                            out[i * n + j],
                            img[j * n + n - 1 - i],
                            "n {n}, {interpolation:?}, pixel ({i}, {j})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row_spans_match_per_pixel_bounds_checks() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for case in 0..400 {
            let (rows, cols) = (rng.random_range(1..40), rng.random_range(1..40));
            let img = random_image(rows, cols, case);
            let angle: f64 = rng.random_range(-180.0..180.0f64).to_radians();
            let s: f64 = rng.random_range(0.3..3.0);
            let (sin, cos) = angle.sin_cos();
            let map = Affine {
                a: s * cos,
                b: s * sin + rng.random_range(-0.5..0.5),
                c: -s * sin,
                d: s * cos * if rng.random() { -1.0 } else { 1.0 },
                tx: rng.random_range(-40.0..40.0),
                ty: rng.random_range(-40.0..40.0),
            };
            let mut padded = Vec::new();
            let src = pad_into(Images::new(&img, rows, cols), &mut padded);
            assert_eq!((src.bytes.len(), src.rows, src.cols), ((rows + 2) * (cols + 2), rows, cols));
            for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
                let mut fast = vec![1u8; rows * cols];
                resample_affine(src, &map, interpolation, &mut fast);
                let (du, dv) = (fixed(map.a), fixed(map.c));
                for y in 0..rows {
                    let u0 = fixed(map.tx + 1.0) + y as i64 * fixed(map.b);
                    let v0 = fixed(map.ty + 1.0) + y as i64 * fixed(map.d);
                    for x in 0..cols {
                        let (u, v) = (u0 + x as i64 * du, v0 + x as i64 * dv);
                        let expected = sample(src, u, v, interpolation);
                        assert_eq!(fast[y * cols + x], expected, "case {case}, {interpolation:?}, pixel ({y}, {x})");
                    }
                }
            }
        }
    }

    #[test]
    fn valid_span_solves_the_bounds_exactly() {
        for u0 in -300i64..300 {
            for du in [-70i64, -64, -13, -1, 0, 1, 7, 64, 65] {
                let span = valid_span(u0, du, 128, 9);
                for x in 0..9 {
                    let u = u0 + x as i64 * du;
                    assert_eq!(span.contains(&x), (0..128).contains(&u), "u0 {u0}, du {du}, x {x}");
                }
            }
        }
    }

    #[test]
    fn flips_mirror_exactly() {
        let (rows, cols) = (5, 7);
        let img = random_image(rows, cols, 9);
        let pipeline = Pipeline::new(vec![Op::flip(FlipAxis::Horizontal)]).unwrap();
        let (mut flipped, mut kept) = (0, 0);
        for epoch in 0..40 {
            let out = run(&pipeline, &img, rows, cols, 1, epoch);
            if out == img {
                kept += 1;
            } else {
                let mirrored: Vec<u8> = img.chunks(cols).flat_map(|r| r.iter().rev().copied()).collect();
                assert_eq!(out, mirrored);
                flipped += 1;
            }
        }
        assert!(flipped > 5 && kept > 5, "{flipped} flipped, {kept} kept");
    }

    #[test]
    fn sampled_angles_stay_in_range_and_cover_it() {
        let pipeline = Pipeline::new(vec![Op::rotate(10.0)]).unwrap();
        let mut bins = [0usize; 10];
        for index in 0..5000u64 {
            let map = pipeline.draw_affine(&mut rng_for([42, 3, index, 0]), 28, 28);
            // The forward map is [[cos, sin], [-sin, cos]].
            let angle = map.b.atan2(map.a).to_degrees();
            assert!((-10.0..=10.0).contains(&angle), "angle {angle}");
            bins[(((angle + 10.0) / 2.0) as usize).min(9)] += 1;
        }
        for (i, &count) in bins.iter().enumerate() {
            assert!((400..=600).contains(&count), "bin {i} holds {count} of 5000 draws: {bins:?}");
        }
    }

    fn full_pipeline() -> Pipeline {
        Pipeline::new(vec![
            Op::rotate(15.0),
            Op::shift(0.1),
            Op::scale(0.9, 1.1),
            Op::shear(5.0),
            Op::crop(2),
            Op::flip(FlipAxis::Vertical),
            Op::elastic(34.0, 4.0),
            Op::noise(0.05),
            Op::erase(0.5),
        ])
        .unwrap()
    }

    #[test]
    fn results_do_not_depend_on_threads_or_batch_composition() {
        let (rows, cols, count) = (28, 28, 300);
        let src: Vec<u8> = (0..count).flat_map(|i| random_image(rows, cols, i as u64)).collect();
        let images = Images::new(&src, rows, cols);
        let pipeline = full_pipeline();
        let indices: Vec<usize> = (0..count).collect();
        let on = |threads: usize, indices: &[usize]| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0u8; indices.len() * rows * cols];
            pool.install(|| pipeline.augment_batch(images, indices, Key::new(11, 2), &mut out)).unwrap();
            out
        };
        let one = on(1, &indices);
        assert_eq!(one, on(2, &indices));
        // The same images in another order and another batch: image by image the same.
        let picked = [250usize, 3, 77, 3];
        let other = on(2, &picked);
        for (k, &i) in picked.iter().enumerate() {
            assert_eq!(other[k * 784..(k + 1) * 784], one[i * 784..(i + 1) * 784], "image {i}");
        }
        // Another epoch or seed changes the images.
        let mut again = vec![0u8; one.len()];
        pipeline.augment_batch(images, &indices, Key::new(11, 3), &mut again).unwrap();
        assert_ne!(again, one);
        pipeline.augment_batch(images, &indices, Key::new(12, 2), &mut again).unwrap();
        assert_ne!(again, one);
        // One image alone is its part of the batch.
        let mut alone = vec![0u8; rows * cols];
        for i in [0usize, 77, 299] {
            pipeline.augment_image(images, i, Key::new(11, 2), &mut alone).unwrap();
            assert_eq!(alone[..], one[i * 784..(i + 1) * 784], "image {i} alone");
        }
        assert!(pipeline.augment_image(images, count, Key::new(11, 2), &mut alone).is_err());
    }

    #[test]
    fn expand_2x_doubles_the_split() {
        let (rows, cols) = (28, 28);
        let split = Split {
            pixels: (0..10).flat_map(|i| square_image(rows, cols, 5 + i, 8, 10)).collect(),
            labels: (0..10).collect(),
        };
        let pipeline = Pipeline::new(vec![Op::rotate(10.0), Op::shift(0.1)]).unwrap();
        let doubled = pipeline.expand(&split, rows, cols, 2, 5).unwrap();
        assert_eq!(doubled.len(), 20);
        assert_eq!(doubled.pixels.len(), 20 * rows * cols);
        assert_eq!(doubled.pixels[..split.pixels.len()], split.pixels[..]);
        assert_eq!(doubled.labels[..10], split.labels[..]);
        assert_eq!(doubled.labels[10..], split.labels[..]);
        assert_ne!(doubled.pixels[split.pixels.len()..], split.pixels[..]);
        let tripled = pipeline.expand(&split, rows, cols, 3, 5).unwrap();
        assert_eq!(tripled.len(), 30);
        assert_eq!(
            tripled.pixels[..doubled.pixels.len()],
            doubled.pixels[..],
            "copy 1 is the same whatever the factor"
        );
        assert_ne!(
            tripled.pixels[split.pixels.len()..2 * split.pixels.len()],
            tripled.pixels[2 * split.pixels.len()..]
        );
        assert_eq!(pipeline.expand(&split, rows, cols, 1, 5).unwrap(), split);
        assert!(pipeline.expand(&split, rows, cols, 0, 5).is_err());
        assert!(pipeline.expand(&split, rows, 27, 2, 5).is_err());
    }

    #[test]
    fn float_output_is_the_scaled_bytes_with_offset_background() {
        let (rows, cols) = (28, 28);
        let src: Vec<u8> = (0..3).flat_map(|i| random_image(rows, cols, i)).collect();
        let pipeline =
            Pipeline::new(vec![Op::rotate(30.0), Op::Shift { min: 10.0, max: 10.0, unit: ShiftUnit::Pixels }]).unwrap();
        let scaling = PixelScaling::Symmetric;
        let (scale, offset) = scaling.affine();
        assert_eq!((scale, offset), (2.0 / 255.0, -1.0));
        let (images, key, indices) = (Images::new(&src, rows, cols), Key::new(4, 1), [2usize, 0]);
        let mut bytes = vec![0u8; 2 * rows * cols];
        let mut floats = vec![0f32; 2 * rows * cols];
        pipeline.augment_batch(images, &indices, key, &mut bytes).unwrap();
        pipeline.augment_batch_f32(images, &indices, key, scaling, &mut floats).unwrap();
        for (&b, &f) in bytes.iter().zip(&floats) {
            assert_eq!(f, b as f32 * scale + offset);
        }
        // Shifted by 10 pixels down and right: the top-left corner is background.
        assert_eq!(floats[0], offset);
        assert_eq!(floats[rows * cols], offset);
        assert!(bytes.iter().filter(|&&b| b == 0).count() > 100);
    }

    #[test]
    fn erase_fills_one_rectangle_of_the_stated_size() {
        let (rows, cols) = (28, 28);
        let img = vec![255u8; rows * cols];
        let pipeline = Pipeline::new(vec![Op::Erase { p: 1.0, fill: EraseFill::Zero }]).unwrap();
        for epoch in 0..50 {
            let out = run(&pipeline, &img, rows, cols, 0, epoch);
            let zeros: Vec<(usize, usize)> =
                (0..rows * cols).filter(|&i| out[i] == 0).map(|i| (i / cols, i % cols)).collect();
            let area = zeros.len() as f64 / (rows * cols) as f64;
            assert!((0.015..=0.42).contains(&area), "erased {area} of the image");
            let (y0, y1) = (zeros.iter().map(|p| p.0).min().unwrap(), zeros.iter().map(|p| p.0).max().unwrap());
            let (x0, x1) = (zeros.iter().map(|p| p.1).min().unwrap(), zeros.iter().map(|p| p.1).max().unwrap());
            assert_eq!((y1 - y0 + 1) * (x1 - x0 + 1), zeros.len(), "the erased pixels form a rectangle");
        }
    }

    #[test]
    fn noise_has_the_asked_spread_and_is_clamped() {
        let (rows, cols) = (64, 64);
        let img = vec![128u8; rows * cols];
        let out = run(&Pipeline::new(vec![Op::noise(0.1)]).unwrap(), &img, rows, cols, 0, 0);
        let mean = out.iter().map(|&p| p as f64).sum::<f64>() / out.len() as f64;
        let sd = (out.iter().map(|&p| (p as f64 - mean).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
        assert!((mean - 128.0).abs() < 1.5, "mean {mean}");
        assert!((sd - 25.5).abs() < 1.5, "sd {sd}");
        let dark = run(&Pipeline::new(vec![Op::noise(0.5)]).unwrap(), &vec![0u8; rows * cols], rows, cols, 0, 0);
        assert!(dark.iter().filter(|&&p| p == 0).count() > dark.len() / 3, "negative noise clamps to 0");
    }

    #[test]
    fn elastic_distortion_is_small_and_smooth() {
        let (rows, cols) = (28, 28);
        let img = square_image(rows, cols, 8, 8, 12);
        let pipeline = Pipeline::new(vec![Op::elastic(34.0, 4.0)]).unwrap();
        let out = run(&pipeline, &img, rows, cols, 1, 0);
        assert_ne!(out, img);
        let (x0, y0) = centre_of_mass(&img, cols);
        let (x1, y1) = centre_of_mass(&out, cols);
        assert!((x1 - x0).abs() < 3.0 && (y1 - y0).abs() < 3.0, "moved ({}, {})", x1 - x0, y1 - y0);
        let mass = |im: &[u8]| im.iter().map(|&p| p as f64).sum::<f64>();
        assert!((mass(&out) / mass(&img) - 1.0).abs() < 0.3, "mass ratio {}", mass(&out) / mass(&img));
    }

    #[test]
    fn bad_parameters_and_batches_are_rejected() {
        for op in [
            Op::Rotate { min_deg: 5.0, max_deg: -5.0 },
            Op::scale(0.0, 1.0),
            Op::shear(89.5),
            Op::elastic(34.0, 0.0),
            Op::noise(f32::NAN),
            Op::erase(1.5),
        ] {
            assert!(Pipeline::new(vec![op]).is_err(), "{op:?}");
        }
        let pipeline = Pipeline::new(vec![Op::rotate(5.0)]).unwrap();
        let src = vec![0u8; 2 * 16];
        let mut out = vec![0u8; 16];
        let key = Key::default();
        let err = pipeline.augment_batch(Images::new(&src, 4, 4), &[2], key, &mut out).unwrap_err().to_string();
        assert!(err.contains("index 2"), "{err}");
        assert!(pipeline.augment_batch(Images::new(&src, 4, 4), &[0, 1], key, &mut out).is_err());
        assert!(pipeline.augment_batch(Images::new(&src[..20], 4, 4), &[0], key, &mut out).is_err());
        let mut floats = vec![0f32; 16];
        assert!(pipeline
            .augment_batch_f32(Images::new(&src, 4, 4), &[0, 1], key, PixelScaling::Unit, &mut floats)
            .is_err());
        assert!(pipeline.augment_batch(Images::new(&src, 0, 4), &[], key, &mut []).is_err());
    }

    #[test]
    fn flip_axes_are_h_and_v() {
        assert_eq!(FlipAxis::ALL.map(FlipAxis::as_str), ["h", "v"]);
        for axis in FlipAxis::ALL {
            assert_eq!(FlipAxis::from_name(axis.as_str()), Some(axis));
            assert_eq!(axis.to_string(), axis.as_str());
        }
        assert_eq!(FlipAxis::from_name("x"), None);
        assert_eq!(FlipAxis::from_name("H"), None);
    }

    #[test]
    fn describe_gives_one_line_per_op() {
        let pipeline =
            Pipeline::new(vec![Op::rotate(10.0), Op::shift(0.1), Op::scale(0.9, 1.1), Op::elastic(34.0, 4.0)]).unwrap();
        let text = pipeline.describe();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["rotate ±10°", "shift ±10% of the side", "scale ×0.9..1.1", "elastic α = 34 σ = 4"]);
        assert_eq!(Pipeline::new(vec![]).unwrap().describe(), "no augmentation");
    }
}
