//! Adam(W)'s update as one fused CPU pass per variable: the moments and the weights of each
//! value updated together, in parallel pieces.

use std::cell::RefCell;

use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// The scalars of one Adam(W) step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdamStep {
    /// The first moment's decay.
    pub beta1: f32,
    /// The second moment's decay.
    pub beta2: f32,
    /// The first moment's bias correction, `1 / (1 - beta1^t)`.
    pub scale_m: f32,
    /// The second moment's bias correction, `1 / (1 - beta2^t)`.
    pub scale_v: f32,
    /// The weights' factor before the step, `1 - lr * weight_decay` (1 for Adam).
    pub decay: f32,
    /// The learning rate.
    pub lr: f32,
    /// Added to the second moment's root.
    pub eps: f32,
}

/// One Adam(W) step of the f32 CPU variable `var`, updated in place from its contiguous
/// gradient `grad`, with its first and second moments `(m, v)` (as long as `var`), in one pass
/// over the values, in parallel pieces of [`ADAM_PIECE`].
pub fn adam_update(var: &Tensor, grad: &Tensor, (m, v): (&mut Vec<f32>, &mut Vec<f32>), step: AdamStep) -> Result<()> {
    var.inplace_op2(grad, &AdamUpdate { coef: step, moments: RefCell::new((m, v)) })
}

/// One Adam step of one variable (updated in place) from its gradient.
struct AdamUpdate<'a> {
    coef: AdamStep,
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
}

impl InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "fused-adam"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        use candle_core::CpuStorage::F32;
        let (F32(theta), F32(grad)) = (s1, s2) else {
            bail!("fused-adam: expected f32 variables and gradients");
        };
        let (Some((t0, t1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            bail!("fused-adam: expected contiguous variables and gradients");
        };
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        let (theta, grad) = (&mut theta[t0..t1], &grad[g0..g1]);
        if theta.len() != grad.len() || theta.len() != m.len() {
            bail!("fused-adam: variable, gradient and moments differ in size");
        }
        let c = self.coef;
        // Each value's update depends on that value alone, so pieces run on any thread.
        theta
            .par_chunks_mut(ADAM_PIECE)
            .zip(grad.par_chunks(ADAM_PIECE))
            .zip(m.par_chunks_mut(ADAM_PIECE).zip(v.par_chunks_mut(ADAM_PIECE)))
            .for_each(|((theta, grad), (m, v))| c.update(theta, grad, m, v));
        Ok(())
    }
}

/// Values per parallel piece of an Adam update: small variables stay on one thread.
pub(crate) const ADAM_PIECE: usize = 1 << 15;

impl AdamStep {
    /// One Adam step of the values `theta`, in place, with their gradients and moments.
    fn update(self, theta: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((t, &g), m), v) in theta.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = *m * self.beta1 + g * (1.0 - self.beta1);
            *v = *v * self.beta2 + g * g * (1.0 - self.beta2);
            let step = (*m * self.scale_m) / ((*v * self.scale_v).sqrt() + self.eps);
            *t = *t * self.decay - step * self.lr;
        }
    }
}
