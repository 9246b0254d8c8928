//! Inverted dropout as a candle custom op on the CPU whose mask is never stored: element `i`
//! is dropped when a counter-based hash of `(key, i)` falls below the rate, so the forward
//! pass and the backward pass draw the same mask from the key alone, in parallel, in one pass
//! each. The key comes from the network's seed and a per-call counter (see [`Network`]), so
//! masks are reproducible and independent of the thread count.
//!
//! [`Network`]: crate::model::Network

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, f32_slice};

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `z`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// MurmurHash3's 32-bit finalizer: a bijection of `x` with full avalanche.
#[inline]
fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^ (x >> 16)
}

/// Whether element `i` is kept under `key`, for a drop threshold out of 2^32: a 32-bit hash of
/// the counter, with the key's low half mixed in before one finalizer round and its high half
/// before another. 32-bit arithmetic, so the loops over a tensor vectorize.
#[inline]
fn kept(key: u64, i: u32, threshold: u32) -> bool {
    let x = fmix32(i.wrapping_mul(0x9E37_79B9) ^ key as u32) ^ (key >> 32) as u32;
    fmix32(x) >= threshold
}

/// The drop threshold out of 2^32 for `rate` in [0, 1): below 2^32 for every f32 rate below 1.
fn threshold(rate: f32) -> u32 {
    (rate as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// Inverted dropout of `x` with `rate` in [0, 1): kept values are scaled by 1 / (1 - rate).
/// f32 on the CPU runs the fused op; another dtype on the CPU builds the same mask as a
/// tensor. On a GPU the mask is drawn there (its generator seeded with `key`, so a run repeats
/// on the same device), and no values cross to the host.
pub fn dropout(x: &Tensor, rate: f32, key: u64) -> Result<Tensor> {
    let op = Dropout::new(rate, key, x.elem_count())?;
    if cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(op);
    }
    if !x.device().is_cpu() {
        x.device().set_seed(key)?;
        let kept = Tensor::rand(0f32, 1f32, x.shape(), x.device())?.ge(rate as f64)?;
        return x.mul(&(kept.to_dtype(x.dtype())? * op.scale as f64)?);
    }
    let mask: Vec<f32> =
        (0..x.elem_count() as u32).map(|i| if kept(key, i, op.threshold) { op.scale } else { 0.0 }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
}

/// The op, forward and backward alike: `y_i = x_i · scale` where kept, else 0.
#[derive(Clone, Copy)]
pub(super) struct Dropout {
    threshold: u32,
    scale: f32,
    key: u64,
}

impl Dropout {
    /// The mask of `len` values at `rate` under `key`, or an error for a rate outside [0, 1)
    /// or more values than the 32-bit counter covers.
    pub(super) fn new(rate: f32, key: u64, len: usize) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            bail!("dropout: rate {rate} is outside [0, 1)");
        }
        if u32::try_from(len).is_err() {
            bail!("dropout: a tensor of {len} values is more than the mask's 32-bit counter covers");
        }
        Ok(Dropout { threshold: threshold(rate), scale: 1.0 / (1.0 - rate), key })
    }
}

/// `ys[j] = xs[j] · scale` where element `base + j` is kept, else 0; with AVX2 where the CPU
/// has it (the hash's 32-bit multiplies vectorize there, not in baseline x86-64).
pub(super) fn apply_mask(ys: &mut [f32], xs: &[f32], base: u32, op: Dropout) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { apply_mask_avx2(ys, xs, base, op) };
    }
    mask_loop(ys, xs, base, op);
}

/// [`mask_loop`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_mask_avx2(ys: &mut [f32], xs: &[f32], base: u32, op: Dropout) {
    mask_loop(ys, xs, base, op);
}

/// The loop of [`apply_mask`], inlined into each of its instruction-set versions.
#[inline(always)]
fn mask_loop(ys: &mut [f32], xs: &[f32], base: u32, op: Dropout) {
    let Dropout { threshold, scale, key } = op;
    for (j, (o, &v)) in ys.iter_mut().zip(xs).enumerate() {
        *o = if kept(key, base.wrapping_add(j as u32), threshold) { v * scale } else { 0.0 };
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "fast-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = super::par_zeros(x.len());
        let op = *self;
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(chunk, (ys, xs))| {
            // dropout() refuses tensors whose indices do not fit the u32 counter.
            apply_mask(ys, xs, (chunk * CHUNK) as u32, op);
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
    use crate::kernels::test_util::random;
    use candle_core::Var;
    use candle_core::{DType, Device};

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

    /// Kept marks of `n` elements under `key` at rate 0.5, through the op.
    fn marks(n: usize, key: u64) -> Vec<bool> {
        let x = Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = dropout(&x, 0.5, key).unwrap().to_vec1().unwrap();
        y.iter().map(|&v| v != 0.0).collect()
    }

    #[test]
    fn masks_of_neighbouring_elements_and_keys_are_independent() {
        let n = 1 << 18;
        let a = marks(n, 1);
        let share = |hits: usize, of: usize| hits as f64 / of as f64;
        // Neighbours both kept a quarter of the time, as for independent draws.
        let both = a.windows(2).filter(|w| w[0] && w[1]).count();
        assert!((share(both, n - 1) - 0.25).abs() < 0.005, "{}", share(both, n - 1));
        // Keys that differ in one bit, low or high half, agree on half the elements.
        for key in [0u64, 3, 1 << 32, 1 << 63] {
            let b = marks(n, key);
            let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            assert!((share(agree, n) - 0.5).abs() < 0.005, "key {key}: {}", share(agree, n));
        }
    }

    #[test]
    fn every_instruction_set_version_draws_the_same_mask() {
        let xs: Vec<f32> = (0..1000).map(|i| i as f32 - 500.0).collect();
        let op = Dropout { threshold: threshold(0.3), scale: 1.0 / 0.7, key: 99 };
        let (mut fast, mut plain) = (vec![0f32; 1000], vec![0f32; 1000]);
        apply_mask(&mut fast, &xs, 77, op);
        mask_loop(&mut plain, &xs, 77, op);
        assert_eq!(fast, plain);
    }

    #[test]
    fn refuses_a_rate_of_one() {
        let x = random(&[2, 2], 1).unwrap();
        assert!(dropout(&x, 1.0, 0).is_err());
    }
}
