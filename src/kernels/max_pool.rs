//! Max-pooling (NCHW, f32, CPU) that remembers where each maximum came from, so that the
//! backward pass is a single scatter.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, f32_slice};

/// Planes (one channel of one image) per parallel task.
pub(super) const PLANES_PER_TASK: usize = 64;

/// Max-pooling of `x` (N, C, H, W) over `k` × `k` windows with stride `k`; rows and columns that
/// do not fill a whole window are dropped (7 × 7 pools to 3 × 3 with `k` = 2). The gradient goes
/// to the first maximum of each window. f32 on the CPU uses the fast kernel; any other device or
/// dtype uses candle's max reductions over the windows.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    check_window("max_pool2d", (h, w), k)?;
    if !cpu_f32(&[x]) {
        // Not candle's `max_pool2d`, whose gradient is scaled by the share of maxima in each
        // window (a quarter of the true one for 2 × 2) and misplaced when the size is not a
        // multiple of `k`: the whole windows, split into blocks and reduced, whose gradients
        // are exact.
        let (n, c) = (x.dim(0)?, x.dim(1)?);
        let (oh, ow) = (h / k, w / k);
        let blocks = x.narrow(2, 0, oh * k)?.narrow(3, 0, ow * k)?.contiguous()?.reshape((n, c, oh, k, ow, k))?;
        return blocks.max(5)?.max(3);
    }
    x.contiguous()?.apply_op1(MaxPool { k, argmax: OnceLock::new() })
}

/// Refuses, naming `op`, a `k` × `k` window that does not fit planes of `h` × `w`, or planes
/// too large for [`pool_plane`]'s 32-bit offsets.
pub(super) fn check_window(op: &str, (h, w): (usize, usize), k: usize) -> Result<()> {
    if k == 0 || k > h || k > w {
        bail!("{op}: pooling window {k}x{k} does not fit the {h}x{w} planes it pools");
    }
    if u32::try_from(h * w).is_err() {
        bail!("{op}: a {h}x{w} plane is too large to pool");
    }
    Ok(())
}

/// The forward op; `argmax` holds, for every output value, the offset of its maximum inside its
/// input plane.
struct MaxPool {
    k: usize,
    argmax: OnceLock<Vec<u32>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fast-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = super::dims4(self.name(), layout)?;
        let x = f32_slice(self.name(), storage, layout)?;
        let k = self.k;
        let (oh, ow) = (h / k, w / k);
        let (y, idx) = pool_planes(x, (h, w), k, None);
        // The op is built fresh for every call, so this is its only forward pass.
        let _ = self.argmax.set(idx);
        Ok((CpuStorage::F32(y), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let Some(argmax) = self.argmax.get() else {
            bail!("{}: backward before forward", self.name());
        };
        let (_, _, h, w) = arg.dims4()?;
        let op = MaxPoolGrad { argmax, h, w };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// What [`pool_planes`] turns each plane into before pooling it: `(plane index, plane, scratch)`.
pub(super) type PlaneMap<'a> = &'a (dyn Fn(usize, &[f32], &mut [f32]) + Sync);

/// Max-pools every `h` × `w` plane of `x` into new outputs and argmax offsets (see
/// [`pool_plane`]), in parallel tasks of [`PLANES_PER_TASK`] planes. With `map`, each plane is
/// first turned into the values to pool by `map(plane index, plane, scratch)`, which fills the
/// plane-sized `scratch` (the fused batch norm normalizes there).
pub(super) fn pool_planes(
    x: &[f32],
    (h, w): (usize, usize),
    k: usize,
    map: Option<PlaneMap<'_>>,
) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow) = (h / k, w / k);
    let mut y = super::par_zeros(x.len() / (h * w) * oh * ow);
    let mut idx = super::par_zeros(y.len());
    let task = PLANES_PER_TASK;
    x.par_chunks(task * h * w)
        .zip(y.par_chunks_mut(task * oh * ow))
        .zip(idx.par_chunks_mut(task * oh * ow))
        .enumerate()
        .for_each(|(t, ((xs, ys), is))| {
            let mut scratch = if map.is_some() { vec![0f32; h * w] } else { Vec::new() };
            let planes = xs.chunks_exact(h * w).zip(ys.chunks_exact_mut(oh * ow)).zip(is.chunks_exact_mut(oh * ow));
            for (j, ((plane, yp), ip)) in planes.enumerate() {
                let values = match map {
                    Some(f) => {
                        f(t * task + j, plane, &mut scratch);
                        &scratch[..]
                    }
                    None => plane,
                };
                pool_plane(values, w, k, yp, ip);
            }
        });
    (y, idx)
}

/// Max-pools one plane of width `w` into `y` (OH × OW) and records in `idx` the offset of each
/// maximum. Written without data-dependent branches and with the running maximum in registers:
/// the comparisons are unpredictable on real activations.
pub(super) fn pool_plane(plane: &[f32], w: usize, k: usize, y: &mut [f32], idx: &mut [u32]) {
    if k == 2 {
        return pool_plane_2x2(plane, w, y, idx);
    }
    let ow = w / k;
    let rows = y.chunks_exact_mut(ow).zip(idx.chunks_exact_mut(ow));
    for (oy, (yr, ir)) in rows.enumerate() {
        let window = &plane[oy * k * w..][..(k - 1) * w + ow * k];
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
            let (mut best, mut at) = (window[ox * k], ox * k);
            for dy in 0..k {
                for dx in 0..k {
                    let i = dy * w + ox * k + dx;
                    let v = window[i];
                    let take = v > best;
                    best = if take { v } else { best };
                    at = if take { i } else { at };
                }
            }
            *yv = best;
            *iv = (oy * k * w + at) as u32;
        }
    }
}

/// [`pool_plane`] for 2 × 2 windows, unrolled: the same first-maximum rule (row by row, left
/// to right, a later value wins only when strictly greater).
fn pool_plane_2x2(plane: &[f32], w: usize, y: &mut [f32], idx: &mut [u32]) {
    let ow = w / 2;
    let rows = y.chunks_exact_mut(ow).zip(idx.chunks_exact_mut(ow));
    for (oy, (yr, ir)) in rows.enumerate() {
        let top = &plane[2 * oy * w..][..2 * ow];
        let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
        let base = (2 * oy * w) as u32;
        for (ox, ((yv, iv), (t, b))) in
            yr.iter_mut().zip(ir.iter_mut()).zip(top.chunks_exact(2).zip(bottom.chunks_exact(2))).enumerate()
        {
            let at = base + 2 * ox as u32;
            let (mut best, mut arg) = (t[0], at);
            for (v, a) in [(t[1], at + 1), (b[0], at + w as u32), (b[1], at + w as u32 + 1)] {
                let take = v > best;
                best = if take { v } else { best };
                arg = if take { a } else { arg };
            }
            *yv = best;
            *iv = arg;
        }
    }
}

/// Scatters the output gradient back to the positions of the maxima.
struct MaxPoolGrad<'a> {
    argmax: &'a [u32],
    h: usize,
    w: usize,
}

impl CustomOp1 for MaxPoolGrad<'_> {
    fn name(&self) -> &'static str {
        "fast-max-pool2d-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, c, oh, ow] = layout.dims() else {
            bail!("{}: expected a 4-d gradient, got {:?}", self.name(), layout.dims());
        };
        let g = f32_slice(self.name(), storage, layout)?;
        if g.len() != self.argmax.len() {
            bail!("{}: gradient and forward output sizes differ", self.name());
        }
        let (h, w) = (self.h, self.w);
        let mut dx = super::par_zeros(n * c * h * w);
        let task = PLANES_PER_TASK;
        dx.par_chunks_mut(task * h * w)
            .zip(g.par_chunks(task * oh * ow))
            .zip(self.argmax.par_chunks(task * oh * ow))
            .for_each(|((dxs, gs), is)| {
                let planes = dxs.chunks_exact_mut(h * w).zip(gs.chunks_exact(oh * ow)).zip(is.chunks_exact(oh * ow));
                for ((plane, gp), ip) in planes {
                    for (&v, &at) in gp.iter().zip(ip) {
                        plane[at as usize] += v;
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::max_pool2d;
    use crate::kernels::test_util::{distinct, random, rel_err};
    use candle_core::{DType, Result, Tensor, Var};

    /// Max-pooling from candle's reshape and max reductions, whose gradients are exact: the
    /// whole windows are cut out, split into (k, k) blocks and reduced.
    fn reference(x: &Tensor, k: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = (h / k, w / k);
        x.narrow(2, 0, oh * k)?.narrow(3, 0, ow * k)?.contiguous()?.reshape((n, c, oh, k, ow, k))?.max(5)?.max(3)
    }

    fn check(shape: [usize; 4], k: usize) -> Result<()> {
        let x = Var::from_tensor(&distinct(&shape, 21)?)?;
        let fast = max_pool2d(&x, k)?;
        let slow = reference(&x, k)?;
        assert_eq!(fast.dims(), slow.dims(), "{shape:?} k{k}");
        assert_eq!(rel_err(&fast, &slow)?, 0.0, "{shape:?} k{k}: forward");
        assert_eq!(rel_err(&fast, &x.max_pool2d(k)?)?, 0.0, "{shape:?} k{k}: candle");
        let r = random(slow.dims(), 22)?;
        let gf = (&fast * &r)?.sum_all()?.backward()?;
        let gs = (&slow * &r)?.sum_all()?.backward()?;
        let (gf, gs) = (gf.get(&x).expect("fast"), gs.get(&x).expect("reference"));
        assert!(rel_err(gf, gs)? <= 1e-6, "{shape:?} k{k}: gradient");
        Ok(())
    }

    #[test]
    fn matches_candle_reductions() -> Result<()> {
        check([2, 3, 7, 7], 2)?;
        check([129, 32, 26, 26], 2)?;
        check([129, 64, 11, 11], 2)?;
        check([1, 2, 8, 9], 3)
    }

    #[test]
    fn odd_sizes_drop_the_last_row_and_column() -> Result<()> {
        let x = Tensor::arange(0f32, 49., &candle_core::Device::Cpu)?.reshape((1, 1, 7, 7))?;
        let y = max_pool2d(&x, 2)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8., 10., 12., 22., 24., 26., 36., 38., 40.]);
        Ok(())
    }

    #[test]
    fn data_input_gets_no_gradient() -> Result<()> {
        let x = random(&[1, 2, 4, 4], 23)?;
        let w = Var::from_tensor(&random(&[1, 2, 2, 2], 24)?)?;
        let grads = (max_pool2d(&x, 2)? * w.as_tensor())?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some());
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_candle() -> Result<()> {
        let x = random(&[2, 3, 6, 6], 25)?.to_dtype(DType::F64)?;
        let y = max_pool2d(&x, 2)?;
        assert_eq!(y.dtype(), DType::F64);
        assert_eq!(y.dims(), [2, 3, 3, 3]);
        // Its gradient is exact, on odd sizes too (candle's own max_pool2d gradient is a
        // quarter of it, and misplaced over the dropped row and column).
        let x = Var::from_tensor(&distinct(&[2, 3, 7, 7], 27)?.to_dtype(DType::F64)?)?;
        let r = random(&[2, 3, 3, 3], 28)?.to_dtype(DType::F64)?;
        let g = (max_pool2d(&x, 2)? * &r)?.sum_all()?.backward()?;
        let want = (reference(&x, 2)? * &r)?.sum_all()?.backward()?;
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        assert_eq!(rel_err(&f32(g.get(&x).expect("fallback"))?, &f32(want.get(&x).expect("reference"))?)?, 0.0);
        Ok(())
    }

    #[test]
    fn rejects_bad_windows() -> Result<()> {
        let x = random(&[1, 1, 4, 4], 26)?;
        for k in [0, 5] {
            let e = max_pool2d(&x, k).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("does not fit"), "{e}");
        }
        Ok(())
    }
}
