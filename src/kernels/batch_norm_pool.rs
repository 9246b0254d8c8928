//! Batch norm in training mode followed by max-pooling, as one candle custom op on the CPU.
//! Run apart, the batch norm writes a full-resolution output that the pool reads back, and in
//! the backward pass the pool scatters its gradient into a full-resolution tensor that the batch
//! norm reads again, with candle adding each of those gradients into a zeroed tensor of its own.
//! Fused, the normalized values live only in a plane-sized scratch buffer and the backward pass
//! reads the pooled gradient straight at the remembered maxima.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::batch_norm::{batch_stats, packed_gradients, per_channel, scale_shift, unpack_gradients, BatchStats};
use super::max_pool::{check_window, pool_planes, PLANES_PER_TASK};
use super::{cpu_f32, f32_slice, lane_sum};

/// Batch norm of `x` (`[N, C, H, W]`) with this batch's statistics, then max-pooling over
/// `k` × `k` windows with stride `k`: the same values and gradients as
/// [`batch_norm_train`](super::batch_norm_train) followed by [`max_pool2d`](super::max_pool2d),
/// in one op. Returns the pooled output and the batch statistics (to update the moving
/// averages). f32 on the CPU only.
pub fn batch_norm_pool_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    k: usize,
) -> Result<(Tensor, Arc<OnceLock<BatchStats>>)> {
    if !cpu_f32(&[x]) {
        bail!("fast batch norm and pool: f32 on the CPU only");
    }
    let (_, _, h, w) = x.dims4()?;
    check_window("fast batch norm and pool", (h, w), k)?;
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormPool { eps: eps as f32, k, stats: Arc::clone(&stats), argmax: OnceLock::new() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, stats))
}

/// This batch's statistics of `x` (`(n, c, h, w)`), and `x` normalized with them, scaled and
/// shifted by `(gamma, beta)` and max-pooled over `k` × `k` windows: the pooled values, the
/// offset of each maximum in its plane, and the statistics. `op` names the caller in errors.
pub(super) fn normalize_and_pool(
    op: &str,
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (gamma, beta): (&[f32], &[f32]),
    eps: f32,
    k: usize,
) -> Result<(Vec<f32>, Vec<u32>, BatchStats)> {
    let stats = batch_stats(op, x, (n, c, h * w))?;
    let (scale, shift) = scale_shift(gamma, beta, &stats, eps);
    let normalize = |p: usize, plane: &[f32], out: &mut [f32]| {
        let (a, b) = (scale[p % c], shift[p % c]);
        for (o, &v) in out.iter_mut().zip(plane) {
            *o = v * a + b;
        }
    };
    let (y, idx) = pool_planes(x, (h, w), k, Some(&normalize));
    Ok((y, idx, stats))
}

/// The gradient of a `k` × `k` max-pooled output: `dy` and the offsets `argmax` of the maxima
/// in their planes, as [`normalize_and_pool`] gives them.
#[derive(Clone, Copy)]
pub(super) struct Pooled<'a> {
    /// The window's side (and stride).
    pub k: usize,
    /// The pooled output's gradient.
    pub dy: &'a [f32],
    /// Each pooled value's offset in its input plane.
    pub argmax: &'a [u32],
}

/// The input gradient of [`normalize_and_pool`] for the input `x` with scales `gamma`, from the
/// pooled output's gradient, written to `dx`; returns each channel's (Σdy, Σdy·x̂), the
/// shift's and the scale's gradients. The batch norm's output gradient is the pooled gradient
/// at each window's maximum and zero elsewhere.
pub(super) fn pooled_input_gradient(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    gamma: &[f32],
    pooled: Pooled<'_>,
    stats: &BatchStats,
    eps: f32,
    dx: &mut [f32],
) -> Vec<(f32, f32)> {
    let Pooled { k, dy: g, argmax } = pooled;
    let (hw, ohw) = (h * w, (h / k) * (w / k));
    let BatchStats { mean, count, .. } = stats;
    let inv_std = stats.inv_std(eps);
    // Per channel: Σ dy and Σ dy·x̂, where dy is nonzero only at the maxima.
    let sums = per_channel(g, (n, c, ohw), |ch, visit| {
        let (m, s) = (mean[ch], inv_std[ch]);
        let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
        visit(&mut |start, gp| {
            let plane = &x[start / ohw * hw..][..hw];
            let at = &argmax[start..start + gp.len()];
            sum_dy += lane_sum(gp) as f64;
            let dot: f32 = gp.iter().zip(at).map(|(&d, &i)| d * (plane[i as usize] - m)).sum();
            sum_dy_xhat += (dot * s) as f64;
        });
        (sum_dy as f32, sum_dy_xhat as f32)
    });
    let total = *count as f32;
    // dx = gamma·inv_std·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)
    let task = PLANES_PER_TASK;
    dx.par_chunks_mut(task * hw)
        .zip(x.par_chunks(task * hw))
        .zip(g.par_chunks(task * ohw).zip(argmax.par_chunks(task * ohw)))
        .enumerate()
        .for_each(|(t, ((dxs, xs), (gs, is)))| {
            let planes = dxs.chunks_exact_mut(hw).zip(xs.chunks_exact(hw));
            let pooled = gs.chunks_exact(ohw).zip(is.chunks_exact(ohw));
            for (j, ((dxp, xp), (gp, ip))) in planes.zip(pooled).enumerate() {
                let ch = (t * task + j) % c;
                let (sd, sdx) = sums[ch];
                let (mu, s) = (mean[ch], inv_std[ch]);
                let scale = gamma[ch] * s;
                let (mean_dy, mean_dy_xhat) = (sd / total, sdx / total);
                for (o, &xv) in dxp.iter_mut().zip(xp) {
                    *o = -scale * (mean_dy + (xv - mu) * s * mean_dy_xhat);
                }
                for (&d, &at) in gp.iter().zip(ip) {
                    dxp[at as usize] += scale * d;
                }
            }
        });
    sums
}

/// The forward op; `stats` and `argmax` (each pooled value's offset in its input plane) are
/// kept for the backward pass.
struct BatchNormPool {
    eps: f32,
    k: usize,
    stats: Arc<OnceLock<BatchStats>>,
    argmax: OnceLock<Vec<u32>>,
}

impl CustomOp3 for BatchNormPool {
    fn name(&self) -> &'static str {
        "fast-batch-norm-pool"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = super::dims4(self.name(), xl)?;
        let (x, gamma, beta) =
            (f32_slice(self.name(), xs, xl)?, f32_slice(self.name(), gs, gl)?, f32_slice(self.name(), bs, bl)?);
        if gamma.len() != c || beta.len() != c {
            bail!("{}: {c} channels but {} scales and {} shifts", self.name(), gamma.len(), beta.len());
        }
        let (y, idx, stats) = normalize_and_pool(self.name(), x, (n, c, h, w), (gamma, beta), self.eps, self.k)?;
        let (oh, ow) = (h / self.k, w / self.k);
        let _ = self.stats.set(stats);
        // The op is built fresh for every call, so this is its only forward pass.
        let _ = self.argmax.set(idx);
        Ok((CpuStorage::F32(y), Shape::from((n, c, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (Some(stats), Some(argmax)) = (self.stats.get(), self.argmax.get()) else {
            bail!("{}: backward before forward", self.name());
        };
        let op = BatchNormPoolGrad { eps: self.eps, k: self.k, stats, argmax };
        unpack_gradients(&x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?, x, gamma, beta)
    }
}

/// The backward op: `(x, gamma, pooled gradient)` to `[dx…, dgamma…, dbeta…]`. The batch norm's
/// output gradient is the pooled gradient at each window's maximum and zero elsewhere.
struct BatchNormPoolGrad<'a> {
    eps: f32,
    k: usize,
    stats: &'a BatchStats,
    argmax: &'a [u32],
}

impl CustomOp3 for BatchNormPoolGrad<'_> {
    fn name(&self) -> &'static str {
        "fast-batch-norm-pool-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = super::dims4(self.name(), xl)?;
        let (x, gamma, g) =
            (f32_slice(self.name(), xs, xl)?, f32_slice(self.name(), gs, gl)?, f32_slice(self.name(), ds, dl)?);
        let ohw = (h / self.k) * (w / self.k);
        if g.len() != n * c * ohw || g.len() != self.argmax.len() || gamma.len() != c {
            bail!("{}: a gradient of {} values for a pooled output of {}", self.name(), g.len(), n * c * ohw);
        }
        let mut out = super::par_zeros(x.len() + 2 * c);
        let pooled = Pooled { k: self.k, dy: g, argmax: self.argmax };
        let sums = pooled_input_gradient(x, (n, c, h, w), gamma, pooled, self.stats, self.eps, &mut out[..x.len()]);
        Ok(packed_gradients(out, x.len(), &sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_grads_close, candle_batch_norm, distinct, random, rel_err};
    use crate::kernels::{batch_norm_train, max_pool2d};
    use candle_core::Var;
    use candle_core::{DType, Device};
    use candle_nn::ModuleT;

    /// The fused op against candle's batch norm followed by an exact reference pool (windows cut
    /// out and reduced with max): output, statistics and all three gradients; and against our
    /// two separate ops.
    fn check(shape: &[usize], k: usize, seed: u64) {
        // Distinct inputs and positive scales keep every window free of ties after normalizing.
        let x = Var::from_tensor(&distinct(shape, seed).unwrap().affine(3.0, 0.5).unwrap()).unwrap();
        let c = shape[1];
        let gamma = Var::from_tensor(&random(&[c], seed + 1).unwrap().affine(0.5, 1.0).unwrap()).unwrap();
        let beta = Var::from_tensor(&random(&[c], seed + 2).unwrap()).unwrap();
        let (y, stats) = batch_norm_pool_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-3, k).unwrap();
        // A fixed upstream gradient: the loss is Σ y·w.
        let w = random(y.dims(), seed + 3).unwrap();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();

        let (varmap, bn) = candle_batch_norm(gamma.as_tensor(), beta.as_tensor());
        let normalized = bn.forward_t(x.as_tensor(), true).unwrap();
        let (n, _, h, wd) = normalized.dims4().unwrap();
        let (oh, ow) = (h / k, wd / k);
        let reference = normalized
            .narrow(2, 0, oh * k)
            .and_then(|t| t.narrow(3, 0, ow * k))
            .and_then(|t| t.contiguous())
            .and_then(|t| t.reshape((n, c, oh, k, ow, k)))
            .and_then(|t| t.max(5))
            .and_then(|t| t.max(3))
            .unwrap();
        assert!(rel_err(&y, &reference).unwrap() < 1e-5, "{shape:?} output");
        let ref_grads = (&reference * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let data = varmap.data().lock().unwrap();
        let (rg, rb) = (data["bn.weight"].as_tensor(), data["bn.bias"].as_tensor());
        let pairs =
            [(x.as_tensor(), x.as_tensor(), "dx"), (gamma.as_tensor(), rg, "dgamma"), (beta.as_tensor(), rb, "dbeta")];
        assert_grads_close(&grads, &ref_grads, &pairs, 1e-4, &format!("{shape:?}"));

        // The two ops apart give the same statistics, output and input gradient.
        let (normed, apart_stats) = batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-3).unwrap();
        let apart = max_pool2d(&normed, k).unwrap();
        assert!(rel_err(&y, &apart).unwrap() < 1e-6, "{shape:?} against the ops apart");
        let apart_grads = (&apart * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let e = rel_err(grads.get(x.as_tensor()).unwrap(), apart_grads.get(x.as_tensor()).unwrap()).unwrap();
        assert!(e < 1e-5, "{shape:?} dx against the ops apart: {e}");
        let (fused, apart) = (stats.get().unwrap(), apart_stats.get().unwrap());
        assert_eq!((&fused.mean, &fused.var, fused.count), (&apart.mean, &apart.var, apart.count));
    }

    #[test]
    fn matches_candles_batch_norm_and_an_exact_pool() {
        check(&[8, 32, 13, 13], 2, 1);
        check(&[1, 3, 4, 6], 2, 2);
        check(&[129, 4, 6, 6], 2, 3);
        check(&[2, 128, 2, 2], 2, 4);
        check(&[3, 5, 9, 7], 3, 5);
        check(&[70, 1, 5, 5], 2, 6);
    }

    #[test]
    fn refuses_windows_that_do_not_fit_and_empty_batches() {
        let x = random(&[2, 3, 4, 4], 1).unwrap();
        let g = random(&[3], 2).unwrap();
        for k in [0, 5] {
            let e = batch_norm_pool_train(&x, &g, &g, 1e-3, k).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("does not fit"), "{e}");
        }
        let empty = Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(batch_norm_pool_train(&empty, &g, &g, 1e-3, 2).is_err());
        assert!(batch_norm_pool_train(&random(&[2, 3], 3).unwrap(), &g, &g, 1e-3, 2).is_err());
    }
}
