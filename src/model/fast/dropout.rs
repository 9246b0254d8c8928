//! Inverted dropout as a candle custom op on the CPU whose mask is never stored: element `i`
//! is dropped when a counter-based hash of `(key, i)` falls below the rate, so the forward
//! pass and the backward pass draw the same mask from the key alone, in parallel, in one pass
//! each. The key comes from the network's seed and a per-call counter (see [`Network`]), so
//! masks are reproducible and independent of the thread count.
//!
//! [`Network`]: crate::model::Network

use candle_core::{bail, CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_slice;

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `z`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether element `i` is kept under `key`, for a drop threshold out of 2^32.
#[inline]
fn kept(key: u64, i: usize, threshold: u64) -> bool {
    (mix64(key ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 32) >= threshold
}

/// Inverted dropout of `x` with `rate` in [0, 1): kept values are scaled by 1 / (1 - rate).
/// f32 on the CPU runs the fused op; another dtype on the CPU builds the same mask as a
/// tensor. On a GPU the mask is drawn there (its generator seeded with `key`, so a run repeats
/// on the same device), and no values cross to the host.
pub fn dropout(x: &Tensor, rate: f32, key: u64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&rate) {
        bail!("dropout: rate {rate} is outside [0, 1)");
    }
    let op = Dropout { threshold: (rate as f64 * 4_294_967_296.0) as u64, scale: 1.0 / (1.0 - rate), key };
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(op);
    }
    if !x.device().is_cpu() {
        x.device().set_seed(key)?;
        let kept = Tensor::rand(0f32, 1f32, x.shape(), x.device())?.ge(rate as f64)?;
        return x.mul(&(kept.to_dtype(x.dtype())? * op.scale as f64)?);
    }
    let mask: Vec<f32> = (0..x.elem_count()).map(|i| if kept(key, i, op.threshold) { op.scale } else { 0.0 }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
}

/// The op, forward and backward alike: `y_i = x_i · scale` where kept, else 0.
#[derive(Clone, Copy)]
struct Dropout {
    threshold: u64,
    scale: f32,
    key: u64,
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "fast-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = super::par_zeros(x.len());
        let Dropout { threshold, scale, key } = *self;
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(chunk, (ys, xs))| {
            let base = chunk * CHUNK;
            for (j, (o, &v)) in ys.iter_mut().zip(xs).enumerate() {
                *o = if kept(key, base + j, threshold) { v * scale } else { 0.0 };
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        // The same mask on the gradient: the op is its own derivative's mask.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::test_util::random;
    use candle_core::Var;

    #[test]
    fn drops_about_the_rate_and_scales_the_rest() {
        let x = Tensor::ones((64, 1000), DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = dropout(&x, 0.25, 7).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.25).abs() < 0.01, "{dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // The same key gives the same mask; another key another one.
        let again: Vec<f32> = dropout(&x, 0.25, 7).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let other: Vec<f32> = dropout(&x, 0.25, 8).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(y, again);
        assert_ne!(y, other);
        let none: Vec<f32> = dropout(&x, 0.0, 7).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(none.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn the_gradient_replays_the_mask() {
        // d/dx Σ dropout(x)·w = mask·scale·w, the same mask as the forward pass.
        let x = Var::from_tensor(&random(&[129, 33], 1).unwrap()).unwrap();
        let w = random(&[129, 33], 2).unwrap();
        let y = dropout(x.as_tensor(), 0.5, 42).unwrap();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let ys: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let xs: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let ws: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..xs.len() {
            let keep = ys[i] != 0.0 || xs[i] == 0.0;
            let expected = if keep { 2.0 * ws[i] } else { 0.0 };
            assert!((dx[i] - expected).abs() < 1e-6, "{i}: {} vs {expected}", dx[i]);
        }
    }

    #[test]
    fn refuses_a_rate_of_one() {
        let x = random(&[2, 2], 1).unwrap();
        assert!(dropout(&x, 1.0, 0).is_err());
    }
}
