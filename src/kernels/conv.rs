//! 2-D convolution (NCHW, f32, CPU) on im2col + `gemm`, with bias and ReLU fused into the
//! forward pass and a backward pass that skips the input gradient when it is not needed.

use std::cell::RefCell;
use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::winograd::{Planes, Winograd};
use super::{cpu_f32, f32_slice, lane_sum, matmul, matmul_add, with_f32, with_scratch, Precision};

/// Input channels (output channels, for the input gradient) from which a padded 3 × 3
/// stride-1 convolution runs in Winograd form.
const WINOGRAD_CHANNELS: usize = 8;

/// Output rows narrower than this go through [`Geom::short_offsets`] in im2col and col2im.
const SHORT_ROW: usize = 8;

/// Bytes of scratch buffers one parallel task aims for: big enough to amortise a gemm call,
/// small enough to stay in a core's L2 cache.
const SCRATCH_BUDGET_BYTES: usize = 1 << 20;

/// 2-D convolution of `x` (N, C, H, W) with `w` (O, C, KH, KW), plus an optional bias `b` (O),
/// with `padding` zeros on every side and the same `stride` in both directions; `relu` applies a
/// ReLU to the result. Gradients flow to `x`, `w` and `b`; the gradient of `x` is only computed
/// when `x` is tracked (a variable or the result of tracked operations), so the data input of a
/// network costs nothing in the backward pass. The products run in `precision`. f32 on the CPU
/// uses the fast kernels; any other device or dtype uses candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    (padding, stride, relu): (usize, usize, bool),
    precision: Precision,
) -> Result<Tensor> {
    conv(x, w, b, ConvSettings { padding, stride, relu, pool: None, precision })
}

/// [`conv2d`] with `padding`, `stride` and (when `relu`) ReLU, then `k` × `k` max-pooling with
/// stride `k` (rows and columns that do not fill a window are dropped), as one operation: the
/// unpooled activations never become a tensor, and the backward pass scatters the pooled
/// gradient straight into the convolution's. Equals
/// `max_pool2d(&conv2d(x, w, b, (padding, stride, relu), precision)?, k)`; the plan calls it
/// `conv2d_relu_pool` with ReLU, `conv2d_pool` without.
pub fn conv2d_pool(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    (padding, stride, relu): (usize, usize, bool),
    k: usize,
    precision: Precision,
) -> Result<Tensor> {
    conv(x, w, b, ConvSettings { padding, stride, relu, pool: Some(k), precision })
}

/// How a convolution runs, as candle's `Conv2dConfig` says it: zero padding on every side, the
/// stride in both directions, a ReLU after the bias, and a `pool` × `pool` max-pool after that;
/// and what its products compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConvSettings {
    padding: usize,
    stride: usize,
    relu: bool,
    pool: Option<usize>,
    precision: Precision,
}

fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, settings: ConvSettings) -> Result<Tensor> {
    let ConvSettings { padding, stride, relu, pool, precision } = settings;
    let g = Geom::new(x.dims(), w.dims(), padding, stride)?;
    if let Some(b) = b {
        if b.dims() != [g.o] {
            bail!("conv2d: bias has shape {:?}, expected [{}] (one per output channel)", b.dims(), g.o);
        }
    }
    if let Some(k) = pool {
        super::max_pool::check_window("conv2d", (g.oh, g.ow), k)?;
    }
    let fast = cpu_f32(&[x, w]) && b.is_none_or(|b| cpu_f32(&[b]));
    if !fast {
        let mut y = super::autocast(precision, x, w, |x, w| x.conv2d(w, padding, stride, 1, 1))?;
        if let Some(b) = b {
            y = y.broadcast_add(&b.reshape((1, g.o, 1, 1))?)?;
        }
        if relu {
            y = y.relu()?;
        }
        return match pool {
            Some(k) => super::max_pool2d(&y, k),
            None => Ok(y),
        };
    }
    let op = Conv { padding, stride, relu, pool, precision, argmax: OnceLock::new() };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// What a forward pass applies to each image: the kernel `w` (O × CKK), the optional bias `b`
/// (O), then a ReLU when `relu` and a `pool` × `pool` max-pooling when given.
#[derive(Clone, Copy)]
struct Filter<'a> {
    w: &'a [f32],
    b: Option<&'a [f32]>,
    relu: bool,
    pool: Option<usize>,
    /// The Winograd form of the convolution and its transformed kernels, where it has one.
    wino: Option<(&'a Winograd, &'a [f32])>,
}

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    /// What the products compute in: f32 unless [`Geom::in_precision`] says otherwise.
    precision: Precision,
}

impl Geom {
    /// The convolution of an input shaped `x` (N, C, H, W) with kernels shaped `w` (O, C, KH,
    /// KW), or an error naming what does not fit.
    pub(super) fn new(x: &[usize], w: &[usize], pad: usize, stride: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x, w) else {
            bail!("conv2d: expected a 4-d input (N, C, H, W) and a 4-d kernel (O, C, KH, KW), got {x:?} and {w:?}");
        };
        if wc != c {
            bail!("conv2d: the input has {c} channels but the kernel expects {wc} (input {x:?}, kernel {w:?})");
        }
        if stride == 0 {
            bail!("conv2d: stride must be at least 1");
        }
        if c == 0 || o == 0 {
            bail!("conv2d: input and output channels must be at least 1, got {c} and {o}");
        }
        if kh == 0 || kw == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            bail!("conv2d: kernel {kh}x{kw} does not fit the {h}x{wd} input with padding {pad}");
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            pad,
            stride,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (wd + 2 * pad - kw) / stride + 1,
            precision: Precision::F32,
        })
    }

    /// The same convolution with its products in `precision`.
    pub(super) fn in_precision(self, precision: Precision) -> Self {
        Geom { precision, ..self }
    }

    /// The output's shape (N, O, OH, OW), before any pooling.
    pub(super) fn output_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.o, self.oh, self.ow)
    }

    /// The kernel gradient (O × CKK, the kernel's layout) from the transposed CKK × O values
    /// at the start of [`Geom::backward`]'s first result.
    pub(super) fn kernel_gradient(&self, acc: &[f32]) -> Vec<f32> {
        let ckk = self.ckk();
        (0..self.o * ckk).map(|i| acc[(i % ckk) * self.o + i / ckk]).collect()
    }

    /// Whether this convolution and its gradients run in Winograd form: 3 × 3 kernels at
    /// stride 1 with padding 1 or 2. Measured in the zoo bench, that form trained the
    /// same-padded model 1.3–1.7× faster, and unpadded convolutions (whose im2col and col2im
    /// copy whole rows) no faster, so these keep im2col.
    fn winograd_shape(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.stride == 1 && (1..=2).contains(&self.pad)
    }

    /// The Winograd form of the forward pass and the weight gradient, from
    /// [`WINOGRAD_CHANNELS`] input channels (below that the im2col matrix is small and the
    /// transforms cost more than they save).
    fn winograd(&self) -> Option<Winograd> {
        let fits = self.winograd_shape() && self.c >= WINOGRAD_CHANNELS;
        fits.then(|| Winograd::new(self.c, self.o, self.h, self.w, self.pad)).flatten()
    }

    /// The Winograd form of the input gradient: the output gradient's O planes into the
    /// input's C with 2 - pad zeros of padding, from [`WINOGRAD_CHANNELS`] output channels.
    fn winograd_gradient(&self) -> Option<Winograd> {
        let fits = self.winograd_shape() && self.o >= WINOGRAD_CHANNELS;
        fits.then(|| Winograd::new(self.o, self.c, self.oh, self.ow, 2 - self.pad)).flatten()
    }

    /// Where the planes of the input (or of its gradient) lie in a batch's slice.
    fn x_planes(&self) -> Planes {
        Planes { image: self.x_len(), channel: self.h * self.w }
    }

    /// Rows of the im2col matrix: C·KH·KW.
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel: OH·OW.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Input values per image.
    fn x_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Output values per image.
    fn y_len(&self) -> usize {
        self.o * self.p()
    }

    /// Images per chunk (a parallel task of the forward pass; the backward pass deals chunks out
    /// in runs, one per thread): the two scratch matrices of a chunk (im2col, CKK × P per image,
    /// and output or output gradient, O × P per image) fill at most [`SCRATCH_BUDGET_BYTES`],
    /// with a number of chunks that is a multiple of the thread count and, where one exists
    /// within a factor of two, divides the batch, so that every thread gets the same share of
    /// work.
    fn chunk(&self) -> usize {
        let per_image = (self.ckk() + self.o) * self.p() * std::mem::size_of::<f32>();
        let by_cache = (SCRATCH_BUDGET_BYTES / per_image.max(1)).max(1);
        let threads = rayon::current_num_threads().max(1);
        let fewest = self.n.div_ceil(by_cache).next_multiple_of(threads).clamp(1, self.n.max(1));
        let tasks =
            (fewest..=(2 * fewest).min(self.n)).step_by(threads).find(|t| self.n.is_multiple_of(*t)).unwrap_or(fewest);
        self.n.div_ceil(tasks).max(1)
    }

    /// Copies one image into columns `off..off + P` of the im2col matrix `col` (row stride `ld`):
    /// through the table of [`Geom::short_offsets`] when given, by whole output rows when the
    /// convolution has neither padding nor stride, value by value otherwise.
    fn im2col(&self, x: &[f32], col: &mut [f32], ld: usize, off: usize, short: Option<&[usize]>) {
        let p = self.p();
        if let Some(offsets) = short {
            for (row, first) in self.first_inputs().enumerate() {
                let dst = &mut col[row * ld + off..][..p];
                for (d, &o) in dst.iter_mut().zip(offsets) {
                    *d = x[first + o];
                }
            }
            return;
        }
        if self.stride == 1 && self.pad == 0 {
            for (row, first) in self.first_inputs().enumerate() {
                let dst = &mut col[row * ld + off..][..p];
                for (oy, d) in dst.chunks_exact_mut(self.ow).enumerate() {
                    copy_run(d, &x[first + oy * self.w..][..self.ow]);
                }
            }
            return;
        }
        for ci in 0..self.c {
            let plane = &x[ci * self.h * self.w..][..self.h * self.w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = (ci * self.kh + ky) * self.kw + kx;
                    let dst = &mut col[row * ld + off..][..p];
                    // Each output row reads every `stride`-th value of a run of an input row
                    // (one contiguous run at stride 1), with zeros on either side.
                    let (lo, hi) = self.valid_cols(kx);
                    for (oy, d) in dst.chunks_exact_mut(self.ow).enumerate() {
                        match self.src_row(oy, ky) {
                            Some(iy) if lo < hi => {
                                d[..lo].fill(0.0);
                                let first = iy * self.w + lo * self.stride + kx - self.pad;
                                if self.stride == 1 {
                                    copy_run(&mut d[lo..hi], &plane[first..][..hi - lo]);
                                } else {
                                    let src = plane[first..].iter().step_by(self.stride);
                                    d[lo..hi].iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                                }
                                d[hi..].fill(0.0);
                            }
                            _ => d.fill(0.0),
                        }
                    }
                }
            }
        }
    }

    /// Adds columns `off..off + P` of the im2col-shaped gradient `col` back onto one image, in
    /// the same three ways as [`Geom::im2col`].
    fn col2im(&self, col: &[f32], ld: usize, off: usize, x: &mut [f32], short: Option<&[usize]>) {
        let p = self.p();
        if let Some(offsets) = short {
            for (row, first) in self.first_inputs().enumerate() {
                let src = &col[row * ld + off..][..p];
                for (&v, &o) in src.iter().zip(offsets) {
                    x[first + o] += v;
                }
            }
            return;
        }
        if self.stride == 1 && self.pad == 0 {
            for (row, first) in self.first_inputs().enumerate() {
                let src = &col[row * ld + off..][..p];
                for (oy, s) in src.chunks_exact(self.ow).enumerate() {
                    let d = &mut x[first + oy * self.w..][..self.ow];
                    for (d, v) in d.iter_mut().zip(s) {
                        *d += v;
                    }
                }
            }
            return;
        }
        for ci in 0..self.c {
            let plane = &mut x[ci * self.h * self.w..][..self.h * self.w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = (ci * self.kh + ky) * self.kw + kx;
                    let src = &col[row * ld + off..][..p];
                    let (lo, hi) = self.valid_cols(kx);
                    for (oy, s) in src.chunks_exact(self.ow).enumerate() {
                        if let (Some(iy), true) = (self.src_row(oy, ky), lo < hi) {
                            let first = iy * self.w + lo * self.stride + kx - self.pad;
                            let d = plane[first..].iter_mut().step_by(self.stride);
                            d.zip(&s[lo..hi]).for_each(|(d, v)| *d += v);
                        }
                    }
                }
            }
        }
    }

    /// For an unpadded convolution with output rows shorter than [`SHORT_ROW`]: for each
    /// output pixel, the offset of the input value it reads from the one that pixel (0, 0)
    /// reads. Such rows are copied value by value through this table; a `memcpy` per row costs
    /// more than the row.
    fn short_offsets(&self) -> Option<Vec<usize>> {
        (self.pad == 0 && self.ow < SHORT_ROW)
            .then(|| (0..self.p()).map(|j| (j / self.ow * self.w + j % self.ow) * self.stride).collect())
    }

    /// For each im2col row in order, the input value (offset in one image) that output pixel
    /// (0, 0) reads there, for an unpadded convolution (counted, not divided out of the row
    /// number: two divisions per row cost as much as copying a short one).
    fn first_inputs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.c).flat_map(move |ci| {
            (0..self.kh).flat_map(move |ky| (0..self.kw).map(move |kx| (ci * self.h + ky) * self.w + kx))
        })
    }

    /// The input row read by output row `oy` at kernel row `ky`, if not in the padding.
    fn src_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky).checked_sub(self.pad).filter(|&iy| iy < self.h)
    }

    /// The output columns `lo..hi` whose input column at kernel column `kx` lies inside the
    /// image (column `ox` reads input column `ox · stride + kx - pad`).
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self.pad.saturating_sub(kx).div_ceil(s).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(kx).div_ceil(s).min(self.ow);
        (lo, hi.max(lo))
    }

    /// Writes the im2col matrix (CKK × nb·P, row stride nb·P) of a chunk of `nb` images.
    fn im2col_chunk(&self, x: &[f32], col: &mut [f32]) {
        let ld = x.len() / self.x_len() * self.p();
        let short = self.short_offsets();
        for (i, img) in x.chunks_exact(self.x_len()).enumerate() {
            self.im2col(img, col, ld, i * self.p(), short.as_deref());
        }
    }

    /// Writes the output gradient of images `first..first + nb` as an O × nb·P matrix: the
    /// gradient itself, masked by the ReLU, or scattered back from a pooled output.
    fn pack_grad(&self, src: &GradSrc, first: usize, nb: usize, out: &mut [f32]) {
        let (o, p) = (self.o, self.p());
        let ld = nb * p;
        match *src {
            GradSrc::Dense { dy, res } => {
                for i in 0..nb {
                    let img = (first + i) * self.y_len();
                    for oc in 0..o {
                        let s = &dy[img + oc * p..][..p];
                        let d = &mut out[oc * ld + i * p..][..p];
                        match res {
                            Some(res) => {
                                let r = &res[img + oc * p..][..p];
                                for ((d, &g), &r) in d.iter_mut().zip(s).zip(r) {
                                    *d = if r > 0.0 { g } else { 0.0 };
                                }
                            }
                            None => d.copy_from_slice(s),
                        }
                    }
                }
            }
            GradSrc::Pooled { dy, y, argmax, plane } => {
                for i in 0..nb {
                    for oc in 0..o {
                        let at = ((first + i) * o + oc) * plane;
                        let d = &mut out[oc * ld + i * p..][..p];
                        // Zeroed plane by plane, so that the scatter below finds it in cache.
                        d.fill(0.0);
                        let (g, v, a) = (&dy[at..at + plane], &y[at..at + plane], &argmax[at..at + plane]);
                        for ((&g, &v), &a) in g.iter().zip(v).zip(a) {
                            // The pooled value is the ReLU output at the maximum: positive
                            // exactly where the gradient passes the ReLU. Storing the zero too
                            // keeps the loop free of unpredictable branches.
                            d[a as usize] = if v > 0.0 { g } else { 0.0 };
                        }
                    }
                }
            }
        }
    }

    /// The forward pass of the batch `xs` with kernels `ws` and bias `bs`: `relu?(w * x + b)`,
    /// max-pooled over `pool` × `pool` windows when given; returns the output and, when
    /// pooled, the offset of every maximum in its OH × OW plane (else nothing).
    pub(super) fn forward(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        relu: bool,
        pool: Option<usize>,
    ) -> (Vec<f32>, Vec<u32>) {
        let wino = self.winograd();
        let u = wino.map(|wg| wg.forward_kernels(ws));
        let filter = Filter { w: ws, b: bs, relu, pool, wino: wino.as_ref().zip(u.as_deref()) };
        let len = match pool {
            Some(k) => self.o * (self.oh / k) * (self.ow / k),
            None => self.o * self.p(),
        };
        let mut y = super::par_zeros(self.n * len);
        let nb = self.chunk();
        let mut idx = super::par_zeros(if pool.is_some() { y.len() } else { 0 });
        let idx_parts = super::parts_or_empty(&mut idx, nb * len, self.n.div_ceil(nb));
        xs.par_chunks(nb * self.x_len())
            .zip(y.par_chunks_mut(nb * len))
            .zip(idx_parts.into_par_iter())
            .for_each(|((xc, yc), ic)| self.forward_chunk(xc, filter, yc, ic));
        (y, idx)
    }

    /// Forward pass of a chunk of images: `y = relu?(w * x + b)`, then k × k max-pooling when
    /// `f.pool` is given, recording the offset of each maximum in its OH × OW plane in `idx`.
    fn forward_chunk(&self, x: &[f32], f: Filter<'_>, y: &mut [f32], idx: &mut [u32]) {
        let Filter { w, b, relu, pool, wino } = f;
        let (o, p, ckk) = (self.o, self.p(), self.ckk());
        let nb = x.len() / self.x_len();
        let ld = nb * p;
        with_scratch(&SCRATCH, if wino.is_some() { 0 } else { ckk * ld }, o * ld, |col, out| {
            match wino {
                Some((wg, u)) => {
                    wg.run(self.precision, nb, u, (x, self.x_planes()), (out, Planes { image: p, channel: ld }))
                }
                None => {
                    self.im2col_chunk(x, col);
                    // out (o × ld) = w (o × ckk) · col (ckk × ld), all row-major.
                    matmul(self.precision, (o, ld, ckk), (out, ld, 1), (w, ckk, 1), (col, ld, 1));
                }
            }
            let finish = |v: f32, bias: f32| if relu { (v + bias).max(0.0) } else { v + bias };
            let plane = match pool {
                Some(k) => (self.oh / k) * (self.ow / k),
                None => p,
            };
            for i in 0..nb {
                for oc in 0..o {
                    let bias = b.map_or(0.0, |b| b[oc]);
                    let src = &out[oc * ld + i * p..][..p];
                    let at = (i * o + oc) * plane;
                    let dst = &mut y[at..at + plane];
                    match pool {
                        // Bias and ReLU are monotonic, so they commute with the maximum.
                        Some(k) => {
                            super::max_pool::pool_plane(src, self.ow, k, dst, &mut idx[at..at + plane]);
                            dst.iter_mut().for_each(|d| *d = finish(*d, bias));
                        }
                        None => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = finish(s, bias)),
                    }
                }
            }
        });
    }

    /// The weight and bias gradients (the O·CKK weight values transposed, CKK × O, then the O
    /// bias values; empty unless `want_w`) and the input gradient (empty unless `want_x`) of the
    /// whole batch. The batch's chunks ([`Geom::chunk`]) are dealt out in runs of consecutive
    /// chunks, one run per thread; each run adds its chunks' weight gradients into one sum, and
    /// the runs' sums are added in run order, so results do not depend on scheduling.
    pub(super) fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        src: &GradSrc,
        want_w: bool,
        want_x: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let (o, p, ckk) = (self.o, self.p(), self.ckk());
        let nb = self.chunk();
        let chunks = self.n.div_ceil(nb);
        let run = chunks.div_ceil(rayon::current_num_threads().max(1));
        let mut dx = if want_x { super::par_zeros(self.n * self.x_len()) } else { Vec::new() };
        let short = self.short_offsets();
        // The Winograd forms in use, each only where its gradient is wanted.
        let wino = want_x.then(|| self.winograd_gradient()).flatten().map(|wg| (wg, wg.gradient_kernels(w)));
        let wino_w = want_w.then(|| self.winograd()).flatten();
        // The weight gradient (transposed, or in Winograd form), then the bias's.
        let weights = wino_w.map_or(o * ckk, |wf| wf.products_len());
        let im2col = (want_w && wino_w.is_none()) || (want_x && wino.is_none());
        let parts = super::parts_or_empty(&mut dx, run * nb * self.x_len(), chunks.div_ceil(run));
        let partial: Vec<Vec<f32>> = parts
            .into_par_iter()
            .enumerate()
            .map(|(ri, dxr)| {
                let mut acc = if want_w { vec![0f32; weights + o] } else { Vec::new() };
                let start = ri * run * nb;
                for first in (start..self.n.min(start + run * nb)).step_by(nb) {
                    let m = nb.min(self.n - first);
                    let ld = m * p;
                    let at = (first - start) * self.x_len();
                    let dxc = if want_x { &mut dxr[at..at + m * self.x_len()] } else { &mut [][..] };
                    let col_len = if im2col { ckk * ld } else { 0 };
                    // The chunk's output gradient, packed as O planes of the chunk's images.
                    let dy_at = Planes { image: p, channel: ld };
                    with_scratch(&SCRATCH, o * ld, col_len, |dyc, col| {
                        self.pack_grad(src, first, m, dyc);
                        let xc = &x[first * self.x_len()..][..m * self.x_len()];
                        if want_w {
                            let (dw, db) = acc.split_at_mut(weights);
                            match &wino_w {
                                Some(wf) => {
                                    wf.weight_products(self.precision, m, (xc, self.x_planes()), (dyc, dy_at), dw)
                                }
                                None => {
                                    self.im2col_chunk(xc, col);
                                    // dw += dyc (o × ld) · colᵀ (ld × ckk, read from col with
                                    // swapped strides), written transposed (column stride o): gemm
                                    // then packs the O × ld output gradient instead of the CKK × ld
                                    // im2col matrix, several times larger.
                                    matmul_add(self.precision, (o, ckk, ld), (dw, 1, o), (dyc, ld, 1), (col, 1, ld));
                                }
                            }
                            for (d, row) in db.iter_mut().zip(dyc.chunks_exact(ld)) {
                                *d += lane_sum(row);
                            }
                        }
                        if let Some((wg, u)) = &wino {
                            // Every value of the chunk's input gradient, written by the transposed
                            // convolution in Winograd form.
                            wg.run(self.precision, m, u, (dyc, dy_at), (dxc, self.x_planes()));
                        } else if want_x {
                            // col (ckk × ld) = wᵀ (ckk × o, read from w with swapped strides) · dyc.
                            matmul(self.precision, (ckk, ld, o), (col, ld, 1), (w, 1, ckk), (dyc, ld, 1));
                            for (i, img) in dxc.chunks_exact_mut(self.x_len()).enumerate() {
                                self.col2im(col, ld, i * p, img, short.as_deref());
                            }
                        }
                    });
                }
                acc
            })
            .collect();
        (weight_and_bias_gradient(partial, wino_w.as_ref()), dx)
    }
}

/// The runs' weight and bias gradient sums of [`Geom::backward`] added in run order, and the
/// weight part turned from Winograd's form (`wino_w`) into the plain one where it was used.
fn weight_and_bias_gradient(partial: Vec<Vec<f32>>, wino_w: Option<&Winograd>) -> Vec<f32> {
    let acc = partial
        .into_iter()
        .reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
        .unwrap_or_default();
    match wino_w {
        Some(wf) => {
            let (du, db) = acc.split_at(wf.products_len());
            let mut dw = wf.weight_gradient(du);
            dw.extend_from_slice(db);
            dw
        }
        None => acc,
    }
}

/// Copies `src` into `dst` (of the same length). A run of 8 to 64 values is copied as two
/// overlapping blocks of a fixed size (8, 16 or 32 values), which compile to a few vector moves:
/// the `memcpy` that `copy_from_slice` (or any copy loop) calls costs more than such a run
/// (im2col's output rows).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    match dst.len() {
        len @ 8..=16 => copy_ends::<8>(dst, src, len),
        len @ 17..=32 => copy_ends::<16>(dst, src, len),
        len @ 33..=64 => copy_ends::<32>(dst, src, len),
        _ => dst.copy_from_slice(src),
    }
}

/// The first and the last `N` of `len` values (`N <= len <= 2N`) of `src` into `dst`.
#[inline(always)]
fn copy_ends<const N: usize>(dst: &mut [f32], src: &[f32], len: usize) {
    dst[..N].copy_from_slice(&src[..N]);
    if len > N {
        dst[len - N..len].copy_from_slice(&src[len - N..len]);
    }
}

/// Where the gradient of a convolution's output comes from.
pub(super) enum GradSrc<'a> {
    /// The gradient of the (N, O, OH, OW) output; with `res`, only where the ReLU output `res`
    /// is positive.
    Dense { dy: &'a [f32], res: Option<&'a [f32]> },
    /// The gradient `dy` of the max-pooled ReLU output `y`, `plane` values per channel, whose
    /// maxima sit at the offsets `argmax` of the OH × OW planes.
    Pooled { dy: &'a [f32], y: &'a [f32], argmax: &'a [u32], plane: usize },
}

thread_local! {
    /// Per-thread scratch buffers, kept between calls so that each chunk neither allocates nor
    /// zeroes its im2col matrices.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// The forward convolution, optionally followed by max-pooling; `CustomOp2` on (x, w) or
/// `CustomOp3` on (x, w, b).
struct Conv {
    padding: usize,
    stride: usize,
    relu: bool,
    /// The pooling window, if the output is max-pooled.
    pool: Option<usize>,
    /// What the products compute in.
    precision: Precision,
    /// For a pooled output: the offset of every maximum in its OH × OW plane.
    argmax: OnceLock<Vec<u32>>,
}

impl Conv {
    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(x.1.dims(), w.1.dims(), self.padding, self.stride)?.in_precision(self.precision);
        let xs = f32_slice("conv2d", x.0, x.1)?;
        let ws = f32_slice("conv2d", w.0, w.1)?;
        let bs = b.map(|(s, l)| f32_slice("conv2d", s, l)).transpose()?;
        let (y, idx) = g.forward(xs, ws, bs, self.relu, self.pool);
        let (oh, ow) = match self.pool {
            Some(k) => (g.oh / k, g.ow / k),
            None => (g.oh, g.ow),
        };
        if self.pool.is_some() {
            // The op is built fresh for every call, so this is its only forward pass.
            let _ = self.argmax.set(idx);
        }
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, oh, ow))))
    }

    /// Gradients of (x, w, b) given the forward result `res` and its gradient `grad`.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want_w = w.track_op() || b.is_some_and(|b| b.track_op());
        let want_x = x.track_op();
        if !want_w && !want_x {
            return Ok((None, None, None));
        }
        let name = "fast-conv2d backward";
        let g = Geom::new(x.dims(), w.dims(), self.padding, self.stride)?.in_precision(self.precision);
        let grad = grad.contiguous()?;
        let (acc, dx) = with_f32(name, &grad, |dy| {
            with_f32(name, res, |r| {
                with_f32(name, x, |xs| {
                    with_f32(name, w, |ws| {
                        let src = match self.pool {
                            Some(k) => {
                                let Some(argmax) = self.argmax.get() else {
                                    bail!("{name}: backward before forward");
                                };
                                GradSrc::Pooled { dy, y: r, argmax, plane: (g.oh / k) * (g.ow / k) }
                            }
                            None => GradSrc::Dense { dy, res: self.relu.then_some(r) },
                        };
                        Ok(g.backward(xs, ws, &src, want_w, want_x))
                    })
                })
            })
        })?;
        let dev = x.device();
        let dx = if want_x { Some(Tensor::from_vec(dx, x.shape(), dev)?) } else { None };
        let (dw, db) = if want_w {
            let db = b.map(|_| Tensor::from_slice(&acc[w.elem_count()..], g.o, dev)).transpose()?;
            (Some(Tensor::from_vec(g.kernel_gradient(&acc), w.shape(), dev)?), db)
        } else {
            (None, None)
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, w, None, res, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, Some(b), res, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::{conv2d, conv2d_pool};
    use crate::kernels::test_util::{random, rel_err};
    use crate::kernels::Precision;
    use candle_core::{DType, Result, Tensor, Var};

    const TOL: f32 = 1e-4;

    #[test]
    fn copies_runs_of_every_length() {
        for len in 0..80 {
            let src: Vec<f32> = (0..len).map(|v| v as f32).collect();
            let mut dst = vec![-1f32; len + 1];
            super::copy_run(&mut dst[..len], &src);
            assert_eq!(&dst[..len], &src[..], "length {len}");
            assert_eq!(dst[len], -1.0, "length {len}: nothing written past the run");
        }
    }

    /// One convolution shape: batch, in channels, height, width, out channels, kernel, padding,
    /// stride.
    struct Case(usize, usize, usize, usize, usize, usize, usize, usize);

    /// candle's conv2d, then the bias, then an optional ReLU. candle 0.11's conv2d backward
    /// takes the width's output padding from the height, so a non-square input is first padded
    /// with zeros at the bottom or right into a square and the extra outputs are cut off.
    fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, pad: usize, stride: usize, relu: bool) -> Result<Tensor> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let side = h.max(wd);
        let square = x.pad_with_zeros(2, 0, side - h)?.pad_with_zeros(3, 0, side - wd)?;
        let mut y = square.conv2d(w, pad, stride, 1, 1)?.narrow(2, 0, (h + 2 * pad - kh) / stride + 1)?.narrow(
            3,
            0,
            (wd + 2 * pad - kw) / stride + 1,
        )?;
        if let Some(b) = b {
            y = y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
        }
        if relu {
            y = y.relu()?;
        }
        Ok(y)
    }

    /// Forward values and the gradients of x, w and b of the fast op against candle's.
    fn check(case: &Case, bias: bool, relu: bool) -> Result<()> {
        let &Case(n, c, h, wd, o, k, pad, stride) = case;
        let what = format!("n{n} c{c} {h}x{wd} o{o} k{k} pad{pad} stride{stride} bias {bias} relu {relu}");
        let x = Var::from_tensor(&random(&[n, c, h, wd], 1)?)?;
        let w = Var::from_tensor(&(random(&[o, c, k, k], 2)? * 0.3)?)?;
        let b = Var::from_tensor(&random(&[o], 3)?)?;
        let b_arg = bias.then_some(b.as_tensor());
        let fast = conv2d(&x, &w, b_arg, (pad, stride, relu), Precision::F32)?;
        let slow = reference(&x, &w, b_arg, pad, stride, relu)?;
        let err = rel_err(&fast, &slow)?;
        assert!(err <= TOL, "{what}: forward relative error {err}");
        // A random weighting of the outputs makes every gradient entry count.
        let r = random(slow.dims(), 4)?;
        let g_fast = (&fast * &r)?.sum_all()?.backward()?;
        let g_slow = (&slow * &r)?.sum_all()?.backward()?;
        let mut vars = vec![("x", &x), ("w", &w)];
        if bias {
            vars.push(("b", &b));
        }
        for (name, v) in vars {
            let gf = g_fast.get(v).expect("fast gradient");
            let gs = g_slow.get(v).expect("reference gradient");
            let err = rel_err(gf, gs)?;
            assert!(err <= TOL, "{what}: gradient of {name}, relative error {err}");
        }
        if !bias {
            assert!(g_fast.get(&b).is_none(), "{what}: unused bias got a gradient");
        }
        Ok(())
    }

    #[test]
    fn matches_candle_on_the_article_layers() -> Result<()> {
        check(&Case(1, 1, 28, 28, 32, 3, 0, 1), true, true)?;
        check(&Case(129, 1, 28, 28, 32, 3, 0, 1), true, true)?;
        check(&Case(3, 32, 13, 13, 64, 3, 0, 1), true, true)?;
        check(&Case(129, 64, 5, 5, 64, 3, 0, 1), true, true)
    }

    #[test]
    fn matches_candle_for_strides_paddings_and_kernels() -> Result<()> {
        for stride in [1, 2] {
            for pad in [0, 1, 2] {
                for k in [3, 5] {
                    check(&Case(2, 32, 9, 7, 64, k, pad, stride), true, false)?;
                    check(&Case(3, 1, 8, 11, 32, k, pad, stride), false, true)?;
                }
            }
        }
        // Images narrower than the kernel, where some kernel columns read only padding.
        check(&Case(2, 3, 2, 3, 4, 5, 2, 1), true, true)?;
        check(&Case(1, 2, 3, 1, 5, 5, 2, 1), true, true)?;
        Ok(())
    }

    #[test]
    fn matches_candle_in_winograd_form() -> Result<()> {
        // 3 × 3 at stride 1, padded: the forward pass in Winograd form from 8 input channels,
        // the input gradient from 8 output channels; each case puts one or both across that
        // line, with odd and even planes, both paddings the form takes, batch 1 and 129; the
        // last, unpadded, stays on im2col.
        check(&Case(1, 8, 28, 28, 16, 3, 1, 1), true, true)?;
        check(&Case(129, 16, 7, 9, 8, 3, 1, 1), true, true)?;
        check(&Case(2, 7, 6, 5, 9, 3, 1, 1), true, false)?;
        check(&Case(3, 9, 5, 5, 4, 3, 2, 1), false, true)?;
        check(&Case(2, 64, 14, 14, 64, 3, 1, 1), true, true)?;
        check(&Case(2, 32, 4, 3, 8, 3, 0, 1), true, true)
    }

    /// The fused convolution + ReLU + pooling against the separate fast ops, values and
    /// gradients; `distinct` inputs keep the pooling windows free of ties.
    fn check_pooled(n: usize, c: usize, side: usize, o: usize, pad: usize, k: usize) -> Result<()> {
        let what = format!("n{n} c{c} {side}x{side} o{o} pad{pad} pool{k}");
        let x = Var::from_tensor(&crate::kernels::test_util::distinct(&[n, c, side, side], 31)?)?;
        let w = Var::from_tensor(&(random(&[o, c, 3, 3], 32)? * 0.3)?)?;
        let b = Var::from_tensor(&(random(&[o], 33)? * 0.2)?)?;
        let fused = conv2d_pool(&x, &w, Some(&b), (pad, 1, true), k, Precision::F32)?;
        let plain = crate::kernels::max_pool2d(&conv2d(&x, &w, Some(&b), (pad, 1, true), Precision::F32)?, k)?;
        assert_eq!(fused.dims(), plain.dims(), "{what}");
        assert_eq!(rel_err(&fused, &plain)?, 0.0, "{what}: forward");
        let zeros = fused.eq(0f32)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        assert!(zeros > 0.0, "{what}: the ReLU clipped nothing");
        let r = random(plain.dims(), 34)?;
        let g_fused = (&fused * &r)?.sum_all()?.backward()?;
        let g_plain = (&plain * &r)?.sum_all()?.backward()?;
        for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
            let err = rel_err(g_fused.get(v).expect("fused gradient"), g_plain.get(v).expect("plain gradient"))?;
            assert!(err <= TOL, "{what}: gradient of {name}, relative error {err}");
        }
        Ok(())
    }

    #[test]
    fn fused_pooling_matches_conv_then_pool() -> Result<()> {
        check_pooled(3, 1, 28, 32, 0, 2)?;
        check_pooled(129, 32, 13, 64, 0, 2)?;
        check_pooled(4, 3, 11, 8, 1, 3)
    }

    #[test]
    fn fused_pooling_is_deterministic_and_rejects_big_windows() -> Result<()> {
        let x = random(&[33, 4, 12, 12], 35)?;
        let w = Var::from_tensor(&random(&[8, 4, 3, 3], 36)?)?;
        let run = || -> Result<Vec<f32>> {
            let g = conv2d_pool(&x, &w, None, (0, 1, true), 2, Precision::F32)?.sum_all()?.backward()?;
            g.get(&w).expect("weight gradient").flatten_all()?.to_vec1::<f32>()
        };
        assert_eq!(run()?, run()?);
        let e = conv2d_pool(&x, &w, None, (0, 1, true), 11, Precision::F32)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("does not fit"), "{e}");
        Ok(())
    }

    #[test]
    fn fused_relu_equals_conv_then_relu() -> Result<()> {
        let x = random(&[4, 3, 10, 10], 5)?;
        let w = random(&[8, 3, 3, 3], 6)?;
        let b = random(&[8], 7)?;
        let fused = conv2d(&x, &w, Some(&b), (1, 1, true), Precision::F32)?;
        let plain = conv2d(&x, &w, Some(&b), (1, 1, false), Precision::F32)?.relu()?;
        assert_eq!(fused.dims(), [4, 8, 10, 10]);
        assert_eq!(fused.flatten_all()?.to_vec1::<f32>()?, plain.flatten_all()?.to_vec1::<f32>()?);
        let zeros = fused.eq(0f32)?.to_dtype(DType::F32)?.sum_all()?;
        assert!(zeros.to_scalar::<f32>()? > 0.0, "the ReLU clipped nothing");
        Ok(())
    }

    #[test]
    fn data_input_gets_no_gradient() -> Result<()> {
        let x = random(&[2, 1, 6, 6], 8)?;
        let w = Var::from_tensor(&random(&[4, 1, 3, 3], 9)?)?;
        let b = Var::from_tensor(&random(&[4], 10)?)?;
        let grads = conv2d(&x, &w, Some(&b), (0, 1, false), Precision::F32)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_candle() -> Result<()> {
        let x = random(&[2, 3, 7, 7], 11)?.to_dtype(DType::F64)?;
        let w = random(&[5, 3, 3, 3], 12)?.to_dtype(DType::F64)?;
        let b = random(&[5], 13)?.to_dtype(DType::F64)?;
        let y = conv2d(&x, &w, Some(&b), (1, 2, true), Precision::F32)?;
        assert_eq!(y.dtype(), DType::F64);
        let r = reference(&x, &w, Some(&b), 1, 2, true)?;
        let diff = (y - r)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() -> Result<()> {
        let x = random(&[2, 3, 7, 7], 14)?;
        let msg = |r: Result<Tensor>| r.err().map(|e| e.to_string()).unwrap_or_default();
        let e = msg(conv2d(&x, &random(&[5, 4, 3, 3], 15)?, None, (0, 1, false), Precision::F32));
        assert!(e.contains("3 channels") && e.contains("expects 4"), "{e}");
        let e = msg(conv2d(&x, &random(&[5, 3, 9, 9], 15)?, None, (0, 1, false), Precision::F32));
        assert!(e.contains("does not fit"), "{e}");
        let e = msg(conv2d(&x, &random(&[5, 3, 3, 3], 15)?, Some(&random(&[4], 16)?), (0, 1, false), Precision::F32));
        assert!(e.contains("bias"), "{e}");
        let e = msg(conv2d(&x, &random(&[5, 3, 3, 3], 15)?, None, (0, 0, false), Precision::F32));
        assert!(e.contains("stride"), "{e}");
        Ok(())
    }
}
