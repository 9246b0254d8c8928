//! A convolution with bias and ReLU followed by a training-mode batch norm (and optionally a
//! max-pool), as one candle custom op on the CPU. Run apart, the batch norm's backward pass writes its input gradient into a new
//! tensor that candle adds into a zeroed one of its own before the convolution reads it back;
//! fused, that gradient is a buffer of one backward pass, written once and read once, and the
//! convolution's output is kept inside the op rather than as a tensor of the graph.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::batch_norm::{input_gradient, normalize, BatchStats};
use super::batch_norm_pool::{normalize_and_pool, pooled_input_gradient, Pooled};
use super::conv::{Geom, GradSrc};
use super::max_pool::check_window;
use super::{cpu_f32, f32_slice, with_f32, Precision};

/// Batch norm (scales `gamma`, shifts `beta`) with this batch's statistics of `relu(conv(x, w) + b)`
/// (stride 1, `padding` zeros on every side): the same values and gradients as
/// [`conv2d`](super::conv2d) with ReLU followed by [`batch_norm_train`](super::batch_norm_train),
/// in one op; with `pool` = Some(k), then max-pooled over `k` × `k` windows as by
/// [`batch_norm_pool_train`](super::batch_norm_pool_train). Returns the output and the batch
/// statistics (to update the moving averages). f32 on the CPU only.
pub fn conv2d_relu_batch_norm_train(
    x: &Tensor,
    (w, b): (&Tensor, &Tensor),
    (gamma, beta): (&Tensor, &Tensor),
    padding: usize,
    eps: f64,
    pool: Option<usize>,
    precision: Precision,
) -> Result<(Tensor, Arc<OnceLock<BatchStats>>)> {
    let name = "fast conv2d and batch norm";
    let g = Geom::new(x.dims(), w.dims(), padding, 1)?;
    let (_, o, oh, ow) = g.output_dims();
    if let Some(k) = pool {
        check_window(name, (oh, ow), k)?;
    }
    for (what, t) in [("bias", b), ("scale", gamma), ("shift", beta)] {
        if t.dims() != [o] {
            bail!("{name}: the {what} has shape {:?}, expected [{o}] (one per output channel)", t.dims());
        }
    }
    if !cpu_f32(&[x, w, b, gamma, beta]) {
        bail!("{name}: f32 on the CPU only");
    }
    // The three per-channel parameters travel as one tensor; candle's `cat` hands each its part
    // of the gradient.
    let params = Tensor::cat(&[b, gamma, beta], 0)?;
    let stats = Arc::new(OnceLock::new());
    let op = ConvBatchNorm {
        padding,
        eps: eps as f32,
        pool,
        precision,
        stats: Arc::clone(&stats),
        pre: OnceLock::new(),
        argmax: OnceLock::new(),
    };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &params, op)?;
    Ok((y, stats))
}

/// The op on (x, w, [bias, scale, shift]); `stats`, `pre` (the convolution's ReLU output, the
/// batch norm's input) and, when pooled, `argmax` (each maximum's offset in its plane) are kept
/// for the backward pass.
struct ConvBatchNorm {
    padding: usize,
    eps: f32,
    pool: Option<usize>,
    /// What the convolution's products compute in.
    precision: Precision,
    stats: Arc<OnceLock<BatchStats>>,
    pre: OnceLock<Vec<f32>>,
    argmax: OnceLock<Vec<u32>>,
}

impl CustomOp3 for ConvBatchNorm {
    fn name(&self) -> &'static str {
        "fast-conv2d-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.padding, 1)?.in_precision(self.precision);
        let (n, o, oh, ow) = g.output_dims();
        let (x, w, p) =
            (f32_slice(self.name(), xs, xl)?, f32_slice(self.name(), ws, wl)?, f32_slice(self.name(), ps, pl)?);
        if p.len() != 3 * o {
            bail!("{}: {} parameter values for {o} channels (expected bias, scale and shift)", self.name(), p.len());
        }
        let (b, gamma, beta) = (&p[..o], &p[o..2 * o], &p[2 * o..]);
        let (pre, _) = g.forward(x, w, Some(b), true, None);
        let (y, stats, shape) = match self.pool {
            Some(k) => {
                let (y, idx, stats) =
                    normalize_and_pool(self.name(), &pre, (n, o, oh, ow), (gamma, beta), self.eps, k)?;
                // The op is built fresh for every call, so this is its only forward pass.
                let _ = self.argmax.set(idx);
                (y, stats, Shape::from((n, o, oh / k, ow / k)))
            }
            None => {
                let (y, stats) = normalize(self.name(), &pre, (n, o, oh * ow), (gamma, beta), self.eps)?;
                (y, stats, Shape::from((n, o, oh, ow)))
            }
        };
        let _ = self.stats.set(stats);
        let _ = self.pre.set(pre);
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = "fast-conv2d-batch-norm backward";
        let (Some(stats), Some(pre)) = (self.stats.get(), self.pre.get()) else {
            bail!("{name}: backward before forward");
        };
        let (want_w, want_x) = (w.track_op() || p.track_op(), x.track_op());
        if !want_w && !want_x {
            return Ok((None, None, None));
        }
        let g = Geom::new(x.dims(), w.dims(), self.padding, 1)?.in_precision(self.precision);
        let (n, o, oh, ow) = g.output_dims();
        let grad = grad.contiguous()?;
        let (acc, dx, sums) = with_f32(name, &grad, |dy| {
            with_f32(name, p, |params| {
                with_f32(name, x, |xs| {
                    with_f32(name, w, |ws| {
                        // The batch norm's input gradient, then the convolution's backward pass
                        // from it through the ReLU (zero where the ReLU output is).
                        let gamma = &params[o..2 * o];
                        let mut dpre = super::par_zeros(pre.len());
                        let sums = match (self.pool, self.argmax.get()) {
                            (Some(k), Some(argmax)) if dy.len() == argmax.len() => {
                                let pooled = Pooled { k, dy, argmax };
                                pooled_input_gradient(pre, (n, o, oh, ow), gamma, pooled, stats, self.eps, &mut dpre)
                            }
                            (None, _) if dy.len() == pre.len() => {
                                input_gradient(pre, gamma, dy, (n, o, oh * ow), stats, self.eps, &mut dpre)
                            }
                            _ => bail!("{name}: a gradient of {} values does not fit the output", dy.len()),
                        };
                        let src = GradSrc::Dense { dy: &dpre, res: Some(pre) };
                        let (acc, dx) = g.backward(xs, ws, &src, want_w, want_x);
                        Ok((acc, dx, sums))
                    })
                })
            })
        })?;
        let dev = x.device();
        let dx = if want_x { Some(Tensor::from_vec(dx, x.shape(), dev)?) } else { None };
        let dw = w.track_op().then(|| Tensor::from_vec(g.kernel_gradient(&acc), w.shape(), dev)).transpose()?;
        let dp = if p.track_op() {
            // [bias, scale, shift]: Σdy of the convolution's output, then Σdy·x̂ and Σdy.
            let mut dp = acc[w.elem_count()..].to_vec();
            dp.extend(sums.iter().map(|s| s.1));
            dp.extend(sums.iter().map(|s| s.0));
            Some(Tensor::from_vec(dp, 3 * o, dev)?)
        } else {
            None
        };
        Ok((dx, dw, dp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_grads_close, random, rel_err};
    use candle_core::Var;

    /// The fused op against the fast convolution then the fast batch norm: output, statistics
    /// and the gradients of all five inputs.
    fn check(n: usize, c: usize, (h, w): (usize, usize), o: usize, pad: usize, pool: Option<usize>, seed: u64) {
        let what = format!("n{n} c{c} {h}x{w} o{o} pad{pad} pool{pool:?}");
        let var = |shape: &[usize], s: u64, scale: f64| {
            Var::from_tensor(&(random(shape, seed + s).unwrap() * scale).unwrap()).unwrap()
        };
        let x = var(&[n, c, h, w], 1, 1.0);
        let k = var(&[o, c, 3, 3], 2, 0.4);
        let b = var(&[o], 3, 0.2);
        let gamma = var(&[o], 4, 1.0);
        let beta = var(&[o], 5, 0.5);
        let (fused, stats) =
            conv2d_relu_batch_norm_train(&x, (&k, &b), (&gamma, &beta), pad, 1e-3, pool, Precision::F32).unwrap();
        let conv = crate::kernels::conv2d(&x, &k, Some(&b), (pad, 1, true), Precision::F32).unwrap();
        let (plain, plain_stats) = match pool {
            Some(k) => crate::kernels::batch_norm_pool_train(&conv, &gamma, &beta, 1e-3, k).unwrap(),
            None => crate::kernels::batch_norm_train(&conv, &gamma, &beta, 1e-3).unwrap(),
        };
        assert_eq!(fused.dims(), plain.dims(), "{what}");
        let e = rel_err(&fused, &plain).unwrap();
        assert!(e < 1e-5, "{what}: output, relative error {e}");
        let (s, t) = (stats.get().unwrap(), plain_stats.get().unwrap());
        assert_eq!((&s.mean, &s.var, s.count), (&t.mean, &t.var, t.count), "{what}: statistics");
        let r = random(plain.dims(), seed + 6).unwrap();
        let ours = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs = (&plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let pairs =
            [(&*x, &*x, "x"), (&*k, &*k, "w"), (&*b, &*b, "b"), (&*gamma, &*gamma, "gamma"), (&*beta, &*beta, "beta")];
        assert_grads_close(&ours, &theirs, &pairs, 1e-4, &what);
    }

    #[test]
    fn matches_the_convolution_then_the_batch_norm() {
        // im2col and Winograd forms, both paddings, batch 1 and 129, one to 64 channels, odd
        // and non-square planes.
        check(1, 1, (28, 28), 8, 0, None, 10);
        check(129, 3, (7, 9), 16, 1, None, 20);
        check(2, 16, (14, 14), 32, 1, None, 30);
        check(3, 8, (5, 6), 4, 0, None, 40);
        check(2, 64, (6, 6), 2, 2, None, 50);
    }

    #[test]
    fn matches_the_convolution_then_the_batch_norm_and_pool() {
        // Odd planes whose last row and column fill no window, a 3 × 3 window, batch 1 and 129.
        check(1, 1, (28, 28), 8, 0, Some(2), 60);
        check(129, 3, (7, 9), 16, 1, Some(2), 70);
        check(2, 16, (13, 13), 32, 1, Some(2), 80);
        check(3, 8, (11, 8), 4, 0, Some(3), 90);
    }

    #[test]
    fn checks_its_parameters() {
        let x = random(&[2, 3, 8, 8], 1).unwrap();
        let w = random(&[4, 3, 3, 3], 2).unwrap();
        let (b4, b5) = (random(&[4], 3).unwrap(), random(&[5], 4).unwrap());
        let e = conv2d_relu_batch_norm_train(&x, (&w, &b4), (&b5, &b4), 1, 1e-3, None, Precision::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scale") && e.contains("[5]") && e.contains("[4]"), "{e}");
        let bad = random(&[4, 2, 3, 3], 5).unwrap();
        let e = conv2d_relu_batch_norm_train(&x, (&bad, &b4), (&b4, &b4), 1, 1e-3, None, Precision::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 channels") && e.contains("expects 2"), "{e}");
        let e = conv2d_relu_batch_norm_train(&x, (&w, &b4), (&b4, &b4), 0, 1e-3, Some(7), Precision::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("7x7") && e.contains("6x6"), "{e}");
    }
}
