//! Activations as layers of their own (ReLU, tanh, SiLU) as one candle custom op on the CPU:
//! the forward pass and the gradient each one parallel pass over the values. Other devices and
//! dtypes use candle's own `relu`, `tanh` and `silu`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, f32_slice, par_zeros};

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// The function an activation applies to every value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// max(x, 0).
    Relu,
    /// The hyperbolic tangent.
    Tanh,
    /// x · sigmoid(x).
    Silu,
}

impl Function {
    /// f(x).
    fn value(self, x: f32) -> f32 {
        match self {
            Function::Relu => x.max(0.0),
            Function::Tanh => x.tanh(),
            Function::Silu => x / (1.0 + (-x).exp()),
        }
    }

    /// f'(x).
    fn slope(self, x: f32) -> f32 {
        match self {
            Function::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Function::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Function::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
        }
    }
}

/// `f` applied to every value of `x`, with its gradient. f32 on the CPU runs the op; anything
/// else candle's own function.
pub fn activation(x: &Tensor, f: Function) -> Result<Tensor> {
    if !cpu_f32(&[x]) {
        return match f {
            Function::Relu => x.relu(),
            Function::Tanh => x.tanh(),
            Function::Silu => x.silu(),
        };
    }
    x.contiguous()?.apply_op1(Forward(f))
}

/// The forward op.
struct Forward(Function);

impl CustomOp1 for Forward {
    fn name(&self) -> &'static str {
        "fast-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = par_zeros(x.len());
        let f = self.0;
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(ys, xs)| {
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = f.value(v);
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &Gradient(self.0))?))
    }
}

/// The gradient op: `grad · f'(x)` from the input `x` and the output's gradient.
struct Gradient(Function);

impl CustomOp2 for Gradient {
    fn name(&self) -> &'static str {
        "fast-activation-gradient"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32_slice(self.name(), s1, l1)?, f32_slice(self.name(), s2, l2)?);
        let mut dx = par_zeros(x.len());
        let f = self.0;
        dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(out, (xs, dys))| {
            for ((o, &v), &d) in out.iter_mut().zip(xs).zip(dys) {
                *o = d * f.slope(v);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{random, rel_err};
    use candle_core::Var;

    #[test]
    fn each_function_and_its_gradient_match_candle() -> Result<()> {
        for f in [Function::Relu, Function::Tanh, Function::Silu] {
            let x = Var::from_tensor(&(random(&[3, 5, 7, 9], 31)? * 4.0)?)?;
            let w = random(&[3, 5, 7, 9], 32)?;
            let fast = activation(&x, f)?;
            let slow = match f {
                Function::Relu => x.relu()?,
                Function::Tanh => x.tanh()?,
                Function::Silu => x.silu()?,
            };
            assert!(rel_err(&fast, &slow)? < 1e-6, "{f:?}: forward");
            let gf = (&fast * &w)?.sum_all()?.backward()?;
            let gs = (&slow * &w)?.sum_all()?.backward()?;
            assert!(rel_err(gf.get(&x).expect("fast"), gs.get(&x).expect("candle"))? < 1e-5, "{f:?}: gradient");
        }
        Ok(())
    }
}
