//! A dense layer (f32, CPU) as one op: `x · wᵀ + b`, optionally through a ReLU, on `gemm` split
//! over the threads, with a backward pass that writes each gradient contiguous in its
//! parameter's own layout. It flattens its input itself and can apply a dropout to it first
//! ([`dropout_linear`]), so neither the flattened view nor the dropped-out input is a tensor
//! whose gradient candle zeroes and adds.
//!
//! candle's `Linear` multiplies by the transposed weight view, so its weight gradient comes
//! back transposed; candle's gradient store then adds it to zeros element by element through
//! the strided path, and its matmul runs on candle's pool (one thread here). For a 512-unit
//! MLP at batch 32 that add alone was 15% of a training step.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dropout::{apply_mask, Dropout};
use super::{cpu_f32, f32_slice, matmul, with_f32, Precision};

/// `x · wᵀ + b` for `x` (N, IN, or N × … flattened from its second dimension), `w` (OUT, IN)
/// and `b` (OUT), then a ReLU if `relu`. Gradients flow to all three; that of `x` (in `x`'s
/// shape) only when `x` is tracked. f32 on the CPU uses the fused op; any other device or dtype
/// uses candle's ops.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, relu: bool, precision: Precision) -> Result<Tensor> {
    dense(x, w, b, (relu, precision), None)
}

/// [`linear`] of `x` after inverted dropout at `rate`: the values and gradients of
/// [`dropout`](super::dropout)`(x, rate, key)` followed by [`linear`], in one op on the CPU,
/// with no tensor (and no gradient) for the dropped-out input.
pub fn dropout_linear(
    x: &Tensor,
    (rate, key): (f32, u64),
    w: &Tensor,
    b: Option<&Tensor>,
    relu: bool,
    precision: Precision,
) -> Result<Tensor> {
    dense(x, w, b, (relu, precision), Some((rate, key)))
}

/// [`linear`], after dropout `(rate, key)` where given.
fn dense(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    (relu, precision): (bool, Precision),
    drop: Option<(f32, u64)>,
) -> Result<Tensor> {
    let (inputs, rank_ok) = (x.dims().iter().skip(1).product::<usize>(), x.rank() >= 2);
    let (outputs, w_in) = w.dims2()?;
    // Without a bias, a bias of zeros: adding it changes no value, and no gradient reaches it.
    let zeros;
    let b = match b {
        Some(b) => b,
        None => {
            zeros = Tensor::zeros(outputs, w.dtype(), w.device())?;
            &zeros
        }
    };
    if !rank_ok || inputs == 0 || outputs == 0 || w_in != inputs || b.dims() != [outputs] {
        bail!("linear: input {:?}, weight {:?} and bias {:?} do not fit", x.dims(), w.dims(), b.dims());
    }
    if !cpu_f32(&[x, w, b]) {
        let x = match drop {
            Some((rate, key)) => super::dropout(x, rate, key)?,
            None => x.clone(),
        };
        let y = super::autocast(precision, &x.flatten_from(1)?, w, |x, w| x.matmul(&w.t()?))?.broadcast_add(b)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    let drop = drop.map(|(rate, key)| Dropout::new(rate, key, x.elem_count())).transpose()?;
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        Dense { relu, precision, drop, masked: OnceLock::new() },
    )
}

/// The fused dense op; with `drop`, the input is masked first and the masked input kept in
/// `masked` for the weight gradient.
struct Dense {
    relu: bool,
    /// What the products compute in.
    precision: Precision,
    drop: Option<Dropout>,
    masked: OnceLock<Vec<f32>>,
}

/// Rows per parallel task, at least, when the product's columns are turned into rows.
const FINISH_ROWS: usize = 8;

/// gemm's tallest micro-kernel tile: a thread's block of fewer rows than this runs on
/// narrower, slower kernels.
const KERNEL_ROWS: usize = 64;

/// Weight values (4 MB) beyond which each thread multiplying the whole weight streams it from
/// memory (this machine's L2 holds 2 MB per core). In the zoo bench at batch 128, a 12.8 MB
/// weight trained faster split by units; with this limit at 2 MB, the 2.8 MB weight of
/// `conv32 pool dense128` showed no difference beyond the run-to-run noise.
const CACHED_WEIGHT: usize = 1 << 20;

/// Whether a batch of `n` rows through an `inputs` → `outputs` layer splits its products by
/// the layer's units (each thread a block of the weight) rather than by rows of the batch
/// (each thread the whole weight): for a batch smaller than the layer, when a thread's rows
/// would not fill gemm's tallest tile or the weight is too big for the cache. Measured in the
/// zoo bench (with the Adam update in parallel too), at batch 32: `conv32 pool dense128` 26–31%
/// faster, `dense512 dense512` 8–9%, a 1024-unit layer after a convolution 20–26%; split by
/// units at batch 128 as well, the MLP was slower than split by rows.
fn split_by_units(n: usize, inputs: usize, outputs: usize) -> bool {
    0 < n && n < outputs && (per_thread(n) < KERNEL_ROWS || inputs * outputs > CACHED_WEIGHT)
}

/// An even share per thread of `n` rows, units or columns (at least 1): the size of each
/// parallel task's block.
fn per_thread(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads()).max(1)
}

impl Dense {
    /// `y` (N × OUT, every value overwritten) for the input `x` (N × IN) split into row blocks,
    /// one per thread, each multiplied by the whole weight: the split unless [`split_by_units`].
    /// Returns the masked input when the op has a dropout.
    fn forward_by_rows(&self, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) -> Option<Vec<f32>> {
        let (outputs, inputs) = (b.len(), w.len() / b.len());
        let n = x.len() / inputs;
        let mut masked = if self.drop.is_some() { vec![0f32; x.len()] } else { Vec::new() };
        let rows = per_thread(n);
        let masked_parts = super::parts_or_empty(&mut masked, rows * inputs, n.div_ceil(rows));
        y.par_chunks_mut(rows * outputs).zip(x.par_chunks(rows * inputs)).zip(masked_parts).enumerate().for_each(
            |(task, ((yc, xc), mc))| {
                let xc = match self.drop {
                    Some(op) => {
                        // dense() refuses inputs whose indices do not fit the mask's u32 counter.
                        apply_mask(mc, xc, (task * rows * inputs) as u32, op);
                        &*mc
                    }
                    None => xc,
                };
                let m = xc.len() / inputs;
                // y = x (m × IN) · wᵀ (IN × OUT, read from w with swapped strides), written column
                // by column (an m × OUT matrix with row stride 1): gemm then packs the m rows of
                // x, not the whole weight, which for a layer after a flattened convolution is
                // many times larger than the batch.
                let mut cols = vec![0f32; m * outputs];
                matmul(self.precision, (m, outputs, inputs), (&mut cols, 1, m), (xc, inputs, 1), (w, 1, inputs));
                self.finish(&cols, b, yc);
            },
        );
        self.drop.is_some().then_some(masked)
    }

    /// [`Dense::forward_by_rows`] split the other way, when [`split_by_units`]: each thread
    /// multiplies the whole (masked) input by a block of the weight's rows, so the weight, the
    /// bigger operand, is read once in all rather than once per thread.
    fn forward_by_units(&self, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) -> Option<Vec<f32>> {
        let (outputs, inputs) = (b.len(), w.len() / b.len());
        let n = x.len() / inputs;
        let masked = self.drop.map(|op| {
            let mut masked = vec![0f32; x.len()];
            // dense() refuses inputs whose indices do not fit the mask's u32 counter.
            apply_mask(&mut masked, x, 0, op);
            masked
        });
        let xs = masked.as_deref().unwrap_or(x);
        let units = per_thread(outputs);
        // The product column by column (N × OUT, row stride 1), a block of columns per thread.
        let mut cols = vec![0f32; n * outputs];
        cols.par_chunks_mut(units * n).enumerate().for_each(|(task, cc)| {
            let u = cc.len() / n;
            matmul(
                self.precision,
                (n, u, inputs),
                (cc, 1, n),
                (xs, inputs, 1),
                (&w[task * units * inputs..][..u * inputs], 1, inputs),
            );
        });
        self.finish(&cols, b, y);
        masked
    }

    /// Rows of `y` (row-major, OUT per row) from the product `cols` (the same rows, stored
    /// column by column): plus the bias, then the ReLU if the op has one.
    fn finish(&self, cols: &[f32], b: &[f32], y: &mut [f32]) {
        let m = cols.len() / b.len();
        y.par_chunks_mut(b.len()).enumerate().with_min_len(FINISH_ROWS).for_each(|(i, row)| {
            for ((v, &bias), col) in row.iter_mut().zip(b).zip(cols.chunks_exact(m)) {
                *v = col[i] + bias;
                if self.relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
        });
    }

    /// The input gradient (N × IN) from the output gradient `dy` (N × OUT, through the ReLU):
    /// `dy · w`, through the dropout's mask. Split like the forward pass: by columns of the
    /// weight when [`split_by_units`] (each thread then reads only its part of the weight),
    /// else by rows of the batch.
    fn input_gradient(&self, dy: &[f32], w: &[f32], (n, inputs, outputs): (usize, usize, usize)) -> Vec<f32> {
        let mut dx = vec![0f32; n * inputs];
        if !split_by_units(n, inputs, outputs) {
            let rows = per_thread(n);
            dx.par_chunks_mut(rows * inputs).zip(dy.par_chunks(rows * outputs)).enumerate().for_each(
                |(task, (dxc, dyc))| {
                    // dx = dy (m × OUT) · w (OUT × IN), through the dropout's mask.
                    let m = dyc.len() / outputs;
                    match self.drop {
                        Some(op) => {
                            let mut full = vec![0f32; dxc.len()];
                            matmul(
                                self.precision,
                                (m, inputs, outputs),
                                (&mut full, inputs, 1),
                                (dyc, outputs, 1),
                                (w, inputs, 1),
                            );
                            apply_mask(dxc, &full, (task * rows * inputs) as u32, op);
                        }
                        None => matmul(
                            self.precision,
                            (m, inputs, outputs),
                            (dxc, inputs, 1),
                            (dyc, outputs, 1),
                            (w, inputs, 1),
                        ),
                    }
                },
            );
            return dx;
        }
        // Columns [first, first + width) of dx = dy (N × OUT) · those columns of w, per thread.
        let width = per_thread(inputs);
        let parts: Vec<Vec<f32>> = (0..inputs.div_ceil(width))
            .into_par_iter()
            .map(|task| {
                let (first, cols) = (task * width, width.min(inputs - task * width));
                let mut part = vec![0f32; n * cols];
                matmul(
                    self.precision,
                    (n, cols, outputs),
                    (&mut part, cols, 1),
                    (dy, outputs, 1),
                    (&w[first..], inputs, 1),
                );
                part
            })
            .collect();
        dx.par_chunks_mut(inputs).enumerate().with_min_len(FINISH_ROWS).for_each(|(i, row)| {
            for (task, part) in parts.iter().enumerate() {
                let (first, cols) = (task * width, part.len() / n);
                let (dst, src) = (&mut row[first..first + cols], &part[i * cols..][..cols]);
                match self.drop {
                    // dense() refuses inputs whose indices do not fit the mask's u32 counter.
                    Some(op) => apply_mask(dst, src, (i * inputs + first) as u32, op),
                    None => dst.copy_from_slice(src),
                }
            }
        });
        dx
    }
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "fast-dense"
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
        let (x, w, b) =
            (f32_slice(self.name(), s1, l1)?, f32_slice(self.name(), s2, l2)?, f32_slice(self.name(), s3, l3)?);
        let n = l1.dims()[0];
        let &[outputs, inputs] = l2.dims() else {
            bail!("{}: expected a 2-d weight", self.name());
        };
        let mut y = vec![0f32; n * outputs];
        let masked = if split_by_units(n, inputs, outputs) {
            self.forward_by_units(x, w, b, &mut y)
        } else {
            self.forward_by_rows(x, w, b, &mut y)
        };
        if let Some(masked) = masked {
            // The op is built fresh for every call, so this is its only forward pass.
            let _ = self.masked.set(masked);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (want_x, want_w, want_b) = (x.track_op(), w.track_op(), b.track_op());
        if !(want_x || want_w || want_b) {
            return Ok((None, None, None));
        }
        let name = "fast-dense backward";
        let (n, inputs) = (x.dim(0)?, x.dims().iter().skip(1).product::<usize>());
        let outputs = w.dim(0)?;
        let grad = grad.contiguous()?;
        // The output gradient through the ReLU: zero where the output was clipped.
        let dy: Vec<f32> = with_f32(name, &grad, |g| {
            if !self.relu {
                return Ok(g.to_vec());
            }
            with_f32(name, res, |r| Ok(g.iter().zip(r).map(|(&g, &r)| if r > 0.0 { g } else { 0.0 }).collect()))
        })?;
        let dx = if want_x {
            let dx = with_f32(name, w, |w| Ok(self.input_gradient(&dy, w, (n, inputs, outputs))))?;
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dw = if want_w {
            let mut dw = super::par_zeros(outputs * inputs);
            let units = per_thread(outputs);
            let fill = |dw: &mut [f32], x: &[f32]| {
                dw.par_chunks_mut(units * inputs).enumerate().for_each(|(i, dwc)| {
                    // dw rows [first, first + u) = dyᵀ (u × N, read from dy with swapped strides) · x (N × IN).
                    let (first, u) = (i * units, dwc.len() / inputs);
                    matmul(
                        self.precision,
                        (u, inputs, n),
                        (dwc, inputs, 1),
                        (&dy[first..], 1, outputs),
                        (x, inputs, 1),
                    );
                });
            };
            // The weight gradient sees the input the forward pass multiplied: the masked one.
            match self.masked.get() {
                Some(masked) => fill(&mut dw, masked),
                None => with_f32(name, x, |x| {
                    fill(&mut dw, x);
                    Ok(())
                })?,
            }
            Some(Tensor::from_vec(dw, (outputs, inputs), w.device())?)
        } else {
            None
        };
        let db = if want_b {
            let mut db = vec![0f32; outputs];
            for row in dy.chunks_exact(outputs) {
                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
            Some(Tensor::from_vec(db, outputs, b.device())?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

#[cfg(test)]
mod tests {
    use super::{dropout_linear, linear};
    use crate::kernels::dropout;
    use crate::kernels::test_util::random;
    use crate::kernels::Precision;
    use candle_core::{Result, Tensor, Var};

    const TOL: f32 = 1e-4;

    /// max |a - b| / max(1, max |b|): relative to the reference, and absolute where a ReLU left
    /// the reference (nearly) all zeros.
    fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        Ok(diff / b.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0))
    }

    /// candle's ops for the same layer.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
        let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// The fused op against candle's: outputs and the gradients of x, w and b under a random
    /// upstream gradient.
    fn check(n: usize, inputs: usize, outputs: usize, relu: bool, seed: u64) -> Result<()> {
        let x = Var::from_tensor(&random(&[n, inputs], seed)?)?;
        let w = Var::from_tensor(&random(&[outputs, inputs], seed + 1)?)?;
        let b = Var::from_tensor(&random(&[outputs], seed + 2)?)?;
        let up = random(&[n, outputs], seed + 3)?;
        let ours = linear(&x, &w, Some(&b), relu, Precision::F32)?;
        let theirs = reference(&x, &w, &b, relu)?;
        let what = format!("n {n}, {inputs}→{outputs}, relu {relu}");
        assert!(rel_err(&ours, &theirs)? <= TOL, "forward, {what}");
        let g1 = (&ours * &up)?.sum_all()?.backward()?;
        let g2 = (&theirs * &up)?.sum_all()?.backward()?;
        for (t, label) in [(x.as_tensor(), "x"), (w.as_tensor(), "w"), (b.as_tensor(), "b")] {
            let (a, r) = (g1.get(t).expect("ours has a gradient"), g2.get(t).expect("candle has a gradient"));
            assert!(a.is_contiguous(), "the {label} gradient is contiguous, {what}");
            assert!(rel_err(a, r)? <= TOL, "{label} gradient, {what}");
        }
        Ok(())
    }

    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        // Products split by rows of the batch and by units of the layer (small batches; a
        // weight past the cache, 1100 × 1000), see split_by_units.
        for (i, &(n, inputs, outputs)) in [
            (1, 1, 1),
            (1, 784, 10),
            (32, 784, 512),
            (129, 300, 7),
            (3, 17, 129),
            (64, 9216, 128),
            (200, 50, 300),
            (130, 1100, 1000),
        ]
        .iter()
        .enumerate()
        {
            for relu in [false, true] {
                check(n, inputs, outputs, relu, 10 * i as u64)?;
            }
        }
        Ok(())
    }

    #[test]
    fn dropout_inside_matches_dropout_then_the_layer() -> Result<()> {
        // Unflattened inputs too: the op flattens from the second dimension and gives the input
        // gradient back in the input's shape.
        for (i, shape) in [[1usize, 7].as_slice(), &[33, 8, 5, 5], &[129, 3, 4, 4], &[2, 1, 1, 1]].iter().enumerate() {
            let inputs: usize = shape[1..].iter().product();
            let seed = 100 + 10 * i as u64;
            let x = Var::from_tensor(&random(shape, seed)?)?;
            let w = Var::from_tensor(&random(&[6, inputs], seed + 1)?)?;
            let b = Var::from_tensor(&random(&[6], seed + 2)?)?;
            let up = random(&[shape[0], 6], seed + 3)?;
            for (rate, relu) in [(0.25, true), (0.5, false)] {
                let key = seed ^ 0xD0;
                let ours = dropout_linear(&x, (rate, key), &w, Some(&b), relu, Precision::F32)?;
                let apart = linear(&dropout(&x, rate, key)?.flatten_from(1)?, &w, Some(&b), relu, Precision::F32)?;
                let what = format!("{shape:?} rate {rate}");
                assert!(rel_err(&ours, &apart)? <= 1e-6, "forward, {what}");
                let g1 = (&ours * &up)?.sum_all()?.backward()?;
                let g2 = (&apart * &up)?.sum_all()?.backward()?;
                for (t, label) in [(x.as_tensor(), "x"), (w.as_tensor(), "w"), (b.as_tensor(), "b")] {
                    let (a, r) = (g1.get(t).expect("ours has a gradient"), g2.get(t).expect("apart has one"));
                    assert_eq!(a.dims(), t.dims(), "the {label} gradient's shape, {what}");
                    assert!(rel_err(a, r)? <= 1e-6, "{label} gradient, {what}");
                }
                // Dropped inputs get no gradient: as many zeros as the mask drops.
                let dx: Vec<f32> = g1.get(x.as_tensor()).expect("a gradient").flatten_all()?.to_vec1()?;
                let kept: Vec<f32> = dropout(&x.ones_like()?, rate, key)?.flatten_all()?.to_vec1()?;
                assert!(dx.iter().zip(&kept).all(|(&d, &k)| k != 0.0 || d == 0.0), "{what}");
            }
        }
        Ok(())
    }

    #[test]
    fn an_untracked_input_gets_no_gradient() -> Result<()> {
        let x = random(&[4, 6], 1)?;
        let w = Var::from_tensor(&random(&[3, 6], 2)?)?;
        let b = Var::from_tensor(&random(&[3], 3)?)?;
        let grads = linear(&x, &w, Some(&b), true, Precision::F32)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() -> Result<()> {
        let (x, w, b) = (random(&[2, 5], 1)?, random(&[3, 4], 2)?, random(&[3], 3)?);
        let e = linear(&x, &w, Some(&b), false, Precision::F32).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        Ok(())
    }
}
