//! Average pooling (NCHW, f32, CPU): k × k windows with stride k, and the global average over
//! each plane. Forward and backward are one pass each over the planes, split over the threads.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_f32, f32_slice};

/// Planes (one channel of one image) per parallel task.
const PLANES_PER_TASK: usize = 64;

/// The mean of each `k` × `k` window of `x` (N, C, H, W), stride `k`; rows and columns that do
/// not fill a whole window are dropped (Keras `'valid'`), and get no gradient. f32 on the CPU
/// uses the fast kernel; any other device or dtype uses candle's `avg_pool2d`.
pub fn avg_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if k == 0 || k > h || k > w {
        bail!("avg_pool2d: window {k}x{k} does not fit the {h}x{w} input");
    }
    if !cpu_f32(&[x]) {
        // Cut to whole windows first: candle's gradient upsamples the pooled map back to the
        // input size, which misplaces values when the size is not a multiple of `k`.
        let x = x.narrow(2, 0, h / k * k)?.narrow(3, 0, w / k * k)?;
        return x.avg_pool2d(k);
    }
    x.contiguous()?.apply_op1(AvgPool { k: Some(k) })
}

/// The mean of each plane of `x` (N, C, H, W): shape (N, C). f32 on the CPU uses the fast
/// kernel; any other device or dtype uses candle's `mean`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.dims4()?;
    if !cpu_f32(&[x]) {
        return x.mean(D::Minus1)?.mean(D::Minus1);
    }
    x.contiguous()?.apply_op1(AvgPool { k: None })
}

/// The forward op: `k` × `k` windows, or the whole plane when `k` is `None`.
struct AvgPool {
    k: Option<usize>,
}

impl AvgPool {
    /// Output height and width for an `h` × `w` plane.
    fn out_dims(&self, h: usize, w: usize) -> (usize, usize) {
        match self.k {
            Some(k) => (h / k, w / k),
            None => (1, 1),
        }
    }
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "fast-avg-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = super::dims4(self.name(), layout)?;
        let x = f32_slice(self.name(), storage, layout)?;
        let (oh, ow) = self.out_dims(h, w);
        let mut y = vec![0f32; n * c * oh * ow];
        let task = PLANES_PER_TASK;
        x.par_chunks(task * h * w).zip(y.par_chunks_mut(task * oh * ow)).for_each(|(xs, ys)| {
            for (plane, yp) in xs.chunks_exact(h * w).zip(ys.chunks_exact_mut(oh * ow)) {
                match self.k {
                    Some(k) => pool_plane(plane, w, k, yp),
                    None => yp[0] = plane.iter().sum::<f32>() / (h * w) as f32,
                }
            }
        });
        let shape = match self.k {
            Some(_) => Shape::from((n, c, oh, ow)),
            None => Shape::from((n, c)),
        };
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&AvgPoolGrad { k: self.k, h, w })?))
    }
}

/// Averages one plane of width `w` over `k` × `k` windows into `y` (OH × OW).
fn pool_plane(plane: &[f32], w: usize, k: usize, y: &mut [f32]) {
    let ow = w / k;
    let scale = 1.0 / (k * k) as f32;
    for (oy, row) in y.chunks_exact_mut(ow).enumerate() {
        row.fill(0.0);
        for dy in 0..k {
            let src = &plane[(oy * k + dy) * w..][..ow * k];
            for (v, window) in row.iter_mut().zip(src.chunks_exact(k)) {
                *v += window.iter().sum::<f32>();
            }
        }
        row.iter_mut().for_each(|v| *v *= scale);
    }
}

/// Spreads each output gradient evenly over its window (or plane).
struct AvgPoolGrad {
    k: Option<usize>,
    h: usize,
    w: usize,
}

impl CustomOp1 for AvgPoolGrad {
    fn name(&self) -> &'static str {
        "fast-avg-pool-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(self.name(), storage, layout)?;
        let (h, w) = (self.h, self.w);
        let (n, c) = (layout.dims()[0], layout.dims()[1]);
        let (oh, ow) = AvgPool { k: self.k }.out_dims(h, w);
        if g.len() != n * c * oh * ow {
            bail!("{}: gradient {:?} does not fit the pooled {h}x{w} planes", self.name(), layout.dims());
        }
        let mut dx = vec![0f32; n * c * h * w];
        let task = PLANES_PER_TASK;
        dx.par_chunks_mut(task * h * w).zip(g.par_chunks(task * oh * ow)).for_each(|(dxs, gs)| {
            for (plane, gp) in dxs.chunks_exact_mut(h * w).zip(gs.chunks_exact(oh * ow)) {
                match self.k {
                    Some(k) => {
                        let scale = 1.0 / (k * k) as f32;
                        for (oy, grow) in gp.chunks_exact(ow).enumerate() {
                            for dy in 0..k {
                                let dst = &mut plane[(oy * k + dy) * w..][..ow * k];
                                for (window, &g) in dst.chunks_exact_mut(k).zip(grow) {
                                    window.fill(g * scale);
                                }
                            }
                        }
                    }
                    None => plane.fill(gp[0] / (h * w) as f32),
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::{avg_pool2d, global_avg_pool};
    use crate::kernels::test_util::{random, rel_err};
    use candle_core::{Result, Tensor, Var, D};

    const TOL: f32 = 1e-4;

    /// Values and input gradients of `ours` against `reference` under a random upstream gradient.
    fn check(
        shape: &[usize],
        ours: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let x = Var::from_tensor(&random(shape, 7)?)?;
        let (a, b) = (ours(&x)?, reference(&x)?);
        assert!(rel_err(&a, &b)? <= TOL, "forward {shape:?}");
        let up = random(a.dims(), 8)?;
        let ga = (&a * &up)?.sum_all()?.backward()?;
        let gb = (&b * &up)?.sum_all()?.backward()?;
        let (ga, gb) = (ga.get(&x).expect("ours has a gradient"), gb.get(&x).expect("candle has one"));
        assert!(rel_err(ga, gb)? <= TOL, "gradient {shape:?}");
        Ok(())
    }

    #[test]
    fn window_pooling_matches_candle() -> Result<()> {
        for shape in [[1, 1, 2, 2], [3, 6, 28, 28], [129, 16, 10, 10], [2, 128, 7, 9], [2, 3, 5, 4]] {
            check(
                &shape,
                |x| avg_pool2d(x, 2),
                |x| {
                    let (_, _, h, w) = x.dims4()?;
                    x.narrow(2, 0, h / 2 * 2)?.narrow(3, 0, w / 2 * 2)?.avg_pool2d(2)
                },
            )?;
        }
        check(&[2, 4, 9, 9], |x| avg_pool2d(x, 3), |x| x.avg_pool2d(3))
    }

    #[test]
    fn global_pooling_matches_candle() -> Result<()> {
        for shape in [[1, 1, 1, 1], [1, 128, 10, 10], [129, 3, 5, 7]] {
            check(&shape, global_avg_pool, |x| x.mean(D::Minus1)?.mean(D::Minus1))?;
        }
        Ok(())
    }

    #[test]
    fn a_window_larger_than_the_input_is_refused() -> Result<()> {
        let e = avg_pool2d(&random(&[1, 1, 3, 3], 1)?, 4).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        Ok(())
    }
}
