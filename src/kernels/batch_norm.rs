//! Batch normalization in training mode (batch statistics) as one candle custom op on the CPU:
//! the forward pass computes each channel's mean and variance and writes the normalized,
//! scaled and shifted output; the backward pass gives the input, scale and shift gradients
//! in one pass over the data. candle's own batch norm is a dozen tensor operations, each with
//! its own backward, and trained a small CNN about five times slower.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, f32_slice, lane_sum, lane_sum_zip};

/// The batch statistics of one forward pass, per channel.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Mean over the batch (and the spatial positions, after a convolution).
    pub mean: Vec<f32>,
    /// Biased variance (divided by the count), as used to normalize.
    pub var: Vec<f32>,
    /// Values per channel: batch × height × width.
    pub count: usize,
}

impl BatchStats {
    /// `1 / sqrt(var + eps)` per channel.
    pub(super) fn inv_std(&self, eps: f32) -> Vec<f32> {
        self.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect()
    }
}

/// Batch norm of `x` (`[N, C]` or `[N, C, H, W]`) with the statistics of this batch:
/// `(x - mean) / sqrt(var + eps) * gamma + beta`, per channel. Returns the output and the
/// statistics (to update the moving averages). f32 on the CPU only; the caller falls back to
/// candle's batch norm elsewhere.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Arc<OnceLock<BatchStats>>)> {
    if !cpu_f32(&[x]) {
        bail!("fast batch norm: f32 on the CPU only");
    }
    if x.rank() != 2 && x.rank() != 4 {
        bail!("fast batch norm: expected a 2-d or 4-d input, got {:?}", x.dims());
    }
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormTrain { eps: eps as f32, stats: Arc::clone(&stats) };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, stats))
}

/// Batch norm of `x` with fixed statistics (inference, or a frozen layer in training):
/// `x · scale + shift` per channel with `scale = gamma / sqrt(var + eps)` and
/// `shift = beta - mean · scale`, all from the given values (no gradient reaches them; the
/// input's gradient is `dy · scale`). f32 on the CPU only.
pub fn batch_norm_fixed(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> Result<Tensor> {
    if !cpu_f32(&[x]) {
        bail!("fast batch norm: f32 on the CPU only");
    }
    let c = gamma.len();
    if [beta.len(), mean.len(), var.len()] != [c, c, c] {
        bail!("fast batch norm: {c} scales but {} shifts, {} means, {} variances", beta.len(), mean.len(), var.len());
    }
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps as f32).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    x.contiguous()?.apply_op1(ChannelAffine { scale: Arc::new(scale), shift: Some(Arc::new(shift)) })
}

/// `x · scale + shift` per channel (no shift: the backward pass, `dy · scale`).
#[derive(Clone)]
struct ChannelAffine {
    scale: Arc<Vec<f32>>,
    shift: Option<Arc<Vec<f32>>>,
}

impl candle_core::CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        "fast-channel-affine"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, inner) = dims(layout)?;
        if self.scale.len() != c {
            bail!("{}: {c} channels but {} scales", self.name(), self.scale.len());
        }
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = super::par_zeros(x.len());
        y.par_chunks_mut(c * inner).zip(x.par_chunks(c * inner)).for_each(|(yi, xi)| {
            for ch in 0..c {
                let (a, b) = (self.scale[ch], self.shift.as_ref().map_or(0.0, |s| s[ch]));
                let range = ch * inner..(ch + 1) * inner;
                for (o, &v) in yi[range.clone()].iter_mut().zip(&xi[range]) {
                    *o = v * a + b;
                }
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let op = ChannelAffine { scale: Arc::clone(&self.scale), shift: None };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// The training-mode forward op; `stats` keeps the batch statistics for the backward pass.
struct BatchNormTrain {
    eps: f32,
    stats: Arc<OnceLock<BatchStats>>,
}

/// The mean and biased variance of each channel of `x` (shaped `(n, c, inner)`), or an error
/// naming `op` for an empty batch. Two passes per channel: the mean, then the squared
/// deviations; each image's share summed in f32 over vector lanes, the shares in f64.
pub(super) fn batch_stats(op: &str, x: &[f32], (n, c, inner): (usize, usize, usize)) -> Result<BatchStats> {
    let count = n * inner;
    if count == 0 {
        bail!("{op}: an empty batch has no statistics");
    }
    let moments = per_channel(x, (n, c, inner), |_, visit| {
        let mut sum = 0f64;
        visit(&mut |_, v| sum += lane_sum(v) as f64);
        let mean = (sum / count as f64) as f32;
        let mut sq = 0f64;
        visit(&mut |_, v| sq += lane_sum_zip(v, v, |a, _| (a - mean) * (a - mean)) as f64);
        (mean, (sq / count as f64) as f32)
    });
    let (mean, var) = moments.into_iter().unzip();
    Ok(BatchStats { mean, var, count })
}

/// Per channel, `scale = gamma / sqrt(var + eps)` and `shift = beta - mean · scale`, so that
/// the normalized output is `x · scale + shift`.
pub(super) fn scale_shift(gamma: &[f32], beta: &[f32], stats: &BatchStats, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(&stats.var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let shift = beta.iter().zip(&stats.mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    (scale, shift)
}

/// This batch's statistics of `x` (`(n, c, inner)`), and `x` normalized with them, scaled by
/// `gamma` and shifted by `beta`: the output and the statistics. `op` names the caller in errors.
pub(super) fn normalize(
    op: &str,
    x: &[f32],
    (n, c, inner): (usize, usize, usize),
    (gamma, beta): (&[f32], &[f32]),
    eps: f32,
) -> Result<(Vec<f32>, BatchStats)> {
    let stats = batch_stats(op, x, (n, c, inner))?;
    let (scale, shift) = scale_shift(gamma, beta, &stats, eps);
    Ok((normalized(x, (c, inner), &scale, &shift), stats))
}

/// `x · scale + shift` per channel of `x` (images of `c` channels of `inner` values).
fn normalized(x: &[f32], (c, inner): (usize, usize), scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = super::par_zeros(x.len());
    y.par_chunks_mut(c * inner).zip(x.par_chunks(c * inner)).for_each(|(yi, xi)| {
        for ch in 0..c {
            let (a, b) = (scale[ch], shift[ch]);
            let range = ch * inner..(ch + 1) * inner;
            for (o, &v) in yi[range.clone()].iter_mut().zip(&xi[range]) {
                *o = v * a + b;
            }
        }
    });
    y
}

/// The input gradient of a training-mode batch norm of `x` (`(n, c, inner)`) with scales
/// `gamma`, from the output gradient `dy`, written to `dx`; returns each channel's
/// (Σdy, Σdy·x̂), the shift's and the scale's gradients.
pub(super) fn input_gradient(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    (n, c, inner): (usize, usize, usize),
    stats: &BatchStats,
    eps: f32,
    dx: &mut [f32],
) -> Vec<(f32, f32)> {
    let BatchStats { mean, count, .. } = stats;
    let inv_std = stats.inv_std(eps);
    // Per channel: Σ dy and Σ dy·x̂.
    let sums = per_channel(x, (n, c, inner), |ch, visit| {
        let (m, s) = (mean[ch], inv_std[ch]);
        let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
        visit(&mut |start, xv| {
            let dv = &dy[start..start + xv.len()];
            sum_dy += lane_sum(dv) as f64;
            sum_dy_xhat += (lane_sum_zip(xv, dv, |xi, di| di * (xi - m)) * s) as f64;
        });
        (sum_dy as f32, sum_dy_xhat as f32)
    });
    let m = *count as f32;
    // dx = gamma·inv_std·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)
    dx.par_chunks_mut(c * inner).zip(x.par_chunks(c * inner)).zip(dy.par_chunks(c * inner)).for_each(
        |((dxi, xi), dyi)| {
            for ch in 0..c {
                let (sd, sdx) = sums[ch];
                let (mu, s) = (mean[ch], inv_std[ch]);
                let k = gamma[ch] * s;
                let (mean_dy, mean_dy_xhat) = (sd / m, sdx / m);
                let range = ch * inner..(ch + 1) * inner;
                for ((o, &xv), &dv) in dxi[range.clone()].iter_mut().zip(&xi[range.clone()]).zip(&dyi[range]) {
                    let xhat = (xv - mu) * s;
                    *o = k * (dv - mean_dy - xhat * mean_dy_xhat);
                }
            }
        },
    );
    sums
}

/// The result of a backward op, packed as `[dx…, dgamma…, dbeta…]`: `out` holds the input
/// gradient in its first `x_len` values and gets the per-channel sums (Σdy, Σdy·x̂) after it,
/// Σdy·x̂ being the scale's gradient and Σdy the shift's.
pub(super) fn packed_gradients(mut out: Vec<f32>, x_len: usize, sums: &[(f32, f32)]) -> (CpuStorage, Shape) {
    let c = sums.len();
    let rest = &mut out[x_len..];
    for (ch, &(sd, sdx)) in sums.iter().enumerate() {
        rest[ch] = sdx;
        rest[c + ch] = sd;
    }
    (CpuStorage::F32(out), Shape::from(x_len + 2 * c))
}

/// The gradients of `x`, `gamma` and `beta` from a [`packed_gradients`] result, each only where
/// its tensor is tracked.
pub(super) fn unpack_gradients(
    packed: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (total, c) = (x.elem_count(), gamma.elem_count());
    let dx = packed.narrow(0, 0, total)?.reshape(x.shape())?;
    let dgamma = packed.narrow(0, total, c)?;
    let dbeta = packed.narrow(0, total + c, c)?;
    let some = |t: &Tensor, g: Tensor| t.track_op().then_some(g);
    Ok((some(x, dx), some(gamma, dgamma), some(beta, dbeta)))
}

/// `(n, c, inner)`: images, channels and values per channel of one image.
pub(super) fn dims(layout: &Layout) -> Result<(usize, usize, usize)> {
    match *layout.dims() {
        [n, c] => Ok((n, c, 1)),
        [n, c, h, w] => Ok((n, c, h * w)),
        ref d => bail!("fast batch norm: expected a 2-d or 4-d input, got {d:?}"),
    }
}

/// Per channel, `f(channel index, iterator over that channel's values in every image)`.
pub(super) fn per_channel<R: Send>(
    x: &[f32],
    (n, c, inner): (usize, usize, usize),
    f: impl Fn(usize, &mut dyn FnMut(&mut dyn FnMut(usize, &[f32]))) -> R + Sync,
) -> Vec<R> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut visit = |g: &mut dyn FnMut(usize, &[f32])| {
                for img in 0..n {
                    let start = (img * c + ch) * inner;
                    g(start, &x[start..start + inner]);
                }
            };
            f(ch, &mut visit)
        })
        .collect()
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "fast-batch-norm"
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
        let (n, c, inner) = dims(xl)?;
        let (x, gamma, beta) =
            (f32_slice(self.name(), xs, xl)?, f32_slice(self.name(), gs, gl)?, f32_slice(self.name(), bs, bl)?);
        if gamma.len() != c || beta.len() != c {
            bail!("{}: {c} channels but {} scales and {} shifts", self.name(), gamma.len(), beta.len());
        }
        let (y, stats) = normalize(self.name(), x, (n, c, inner), (gamma, beta), self.eps)?;
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else {
            bail!("{}: backward before forward", self.name());
        };
        let op = BatchNormGrad { eps: self.eps, stats: stats.clone() };
        unpack_gradients(&x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?, x, gamma, beta)
    }
}

/// The backward op: `(x, gamma, dy)` to `[dx…, dgamma…, dbeta…]`.
struct BatchNormGrad {
    eps: f32,
    stats: BatchStats,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "fast-batch-norm-grad"
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
        let (n, c, inner) = dims(xl)?;
        let (x, gamma, dy) =
            (f32_slice(self.name(), xs, xl)?, f32_slice(self.name(), gs, gl)?, f32_slice(self.name(), ds, dl)?);
        if dy.len() != x.len() {
            bail!("{}: gradient of {} values for an input of {}", self.name(), dy.len(), x.len());
        }
        let mut out = super::par_zeros(x.len() + 2 * c);
        let sums = input_gradient(x, gamma, dy, (n, c, inner), &self.stats, self.eps, &mut out[..x.len()]);
        Ok(packed_gradients(out, x.len(), &sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_grads_close, candle_batch_norm, random, rel_err};
    use candle_core::Var;
    use candle_core::{DType, Device};
    use candle_nn::{BatchNormConfig, ModuleT, VarBuilder, VarMap};

    /// Our op against candle's batch norm: outputs, statistics and all three gradients.
    fn check(shape: &[usize], seed: u64) {
        let x = Var::from_tensor(&random(shape, seed).unwrap().affine(3.0, 0.5).unwrap()).unwrap();
        let c = shape[1];
        let gamma = Var::from_tensor(&random(&[c], seed + 1).unwrap().affine(1.0, 1.5).unwrap()).unwrap();
        let beta = Var::from_tensor(&random(&[c], seed + 2).unwrap()).unwrap();
        // A fixed upstream gradient: the loss is Σ y·w.
        let w = random(shape, seed + 3).unwrap();

        let (y, stats) = batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-3).unwrap();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();

        let (varmap, bn) = candle_batch_norm(gamma.as_tensor(), beta.as_tensor());
        let reference = bn.forward_t(x.as_tensor(), true).unwrap();
        let ref_grads = (&reference * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(rel_err(&y, &reference).unwrap() < 1e-4, "{shape:?} output");
        let data = varmap.data().lock().unwrap();
        let (rg, rb) = (data["bn.weight"].as_tensor(), data["bn.bias"].as_tensor());
        let pairs =
            [(x.as_tensor(), x.as_tensor(), "dx"), (gamma.as_tensor(), rg, "dgamma"), (beta.as_tensor(), rb, "dbeta")];
        assert_grads_close(&grads, &ref_grads, &pairs, 1e-4, &format!("{shape:?}"));
        // candle's running mean after one step from 0 is momentum × the batch mean.
        let stats = stats.get().unwrap();
        let running: Vec<f32> = bn.running_mean().to_vec1().unwrap();
        for (r, m) in running.iter().zip(&stats.mean) {
            assert!((r - 0.1 * m).abs() < 1e-5, "{r} vs {m}");
        }
    }

    #[test]
    fn matches_candle_after_a_convolution() {
        check(&[8, 32, 13, 13], 1);
        check(&[1, 3, 5, 7], 2);
        check(&[129, 4, 3, 3], 3);
        check(&[2, 128, 2, 2], 4);
    }

    #[test]
    fn matches_candle_after_a_dense_layer() {
        check(&[32, 128], 5);
        check(&[129, 7], 6);
        check(&[2, 1], 7);
    }

    #[test]
    fn fixed_statistics_match_candles_inference_and_pass_the_gradient() {
        let device = Device::Cpu;
        for shape in [[4usize, 8, 5, 5].as_slice(), &[33, 16]] {
            let c = shape[1];
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
            let cfg = BatchNormConfig { eps: 1e-3, remove_mean: true, affine: true, momentum: 0.1 };
            let bn = candle_nn::batch_norm(c, cfg, vb.pp("bn")).unwrap();
            let vec = |seed, a, b| random(&[c], seed).unwrap().affine(a, b).unwrap();
            let (gamma, beta, mean, var) = (vec(1, 0.5, 1.0), vec(2, 1.0, 0.0), vec(3, 1.0, 0.0), vec(4, 0.4, 0.6));
            {
                let data = varmap.data().lock().unwrap();
                for (name, t) in [("weight", &gamma), ("bias", &beta), ("running_mean", &mean), ("running_var", &var)] {
                    data[&format!("bn.{name}")].set(t).unwrap();
                }
            }
            let x = Var::from_tensor(&random(shape, 5).unwrap()).unwrap();
            let v = |t: &Tensor| t.to_vec1::<f32>().unwrap();
            let y = batch_norm_fixed(x.as_tensor(), &v(&gamma), &v(&beta), &v(&mean), &v(&var), 1e-3).unwrap();
            let reference = bn.forward_t(x.as_tensor(), false).unwrap();
            assert!(rel_err(&y, &reference).unwrap() < 1e-5, "{shape:?}");
            let dx = y.sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap().clone();
            let scale: Vec<f32> = (0..c).map(|i| v(&gamma)[i] / (v(&var)[i] + 1e-3).sqrt()).collect();
            let expected = Tensor::from_vec(scale, c, &device).unwrap();
            let per_channel = if shape.len() == 4 {
                dx.mean(0).unwrap().mean(1).unwrap().mean(1).unwrap()
            } else {
                dx.mean(0).unwrap()
            };
            assert!(rel_err(&per_channel, &expected).unwrap() < 1e-5, "{shape:?} gradient");
        }
    }

    #[test]
    fn refuses_other_ranks_and_empty_batches() {
        let x = random(&[2, 3, 4], 1).unwrap();
        let g = random(&[3], 2).unwrap();
        assert!(batch_norm_train(&x, &g, &g, 1e-3).is_err());
        let empty = Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(batch_norm_train(&empty, &g, &g, 1e-3).is_err());
    }
}
