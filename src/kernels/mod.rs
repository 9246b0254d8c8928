//! The fast CPU kernels, beside the model layer that calls them (they import nothing of it):
//! 2-D convolution, max- and average pooling, batch normalization, dropout and the dense layer
//! as candle custom ops with their own backward passes, their fused combinations (which
//! `model::architecture::plan` decides), and Adam's update in one pass.
//!
//! candle's CPU convolution backward is slow (its `conv_transpose2d` is a direct loop and the
//! weight gradient is a convolution with an output-sized kernel). These ops use im2col and
//! `gemm` instead (Winograd's F(2×2, 3×3) for the forward pass and gradients of padded
//! 3 × 3 stride-1 convolutions), run over the batch in parallel with rayon, fuse bias and ReLU into the
//! forward pass, and skip the input gradient when the input needs none. On other devices or
//! dtypes they fall back to candle's own operations.
//!
//! Names: a kernel is named by the layers it runs, in order, joined by `_`, with `_train` for a
//! batch norm on batch statistics (`conv2d_pool`, its ReLU a setting, which the plan shows as
//! `conv2d_relu_pool`; `conv2d_relu_batch_norm_train`, `batch_norm_pool_train`,
//! `dropout_linear`). A combined op that is a kernel of its own has a
//! file of that name (without `_train`); one that is an option of a single kernel (conv2d's
//! pooling, linear's dropout) lives in that kernel's file.

mod activation;
mod adam;
mod avg_pool;
mod batch_norm;
mod batch_norm_pool;
pub mod bf16;
mod conv;
mod conv2d_relu_batch_norm;
mod dense;
mod dropout;
mod max_pool;
mod winograd;

pub use activation::{activation, Function};
#[cfg(test)]
pub(crate) use adam::ADAM_PIECE;
pub use adam::{adam_update, AdamStep};
pub use avg_pool::{avg_pool2d, global_avg_pool};
pub use batch_norm::{batch_norm_fixed, batch_norm_train, BatchStats};
pub use batch_norm_pool::batch_norm_pool_train;
pub use conv::{conv2d, conv2d_pool};
pub use conv2d_relu_batch_norm::conv2d_relu_batch_norm_train;
pub use dense::{dropout_linear, linear};
pub use dropout::{dropout, mix64};
pub use max_pool::max_pool2d;

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// What the products (convolutions, dense layers) of the fused kernels compute in: f32, or
/// bf16 operands with f32 sums on the CPU's bf16 units ([`bf16::units`]). Everything else
/// stays f32. On a CPU without bf16 units, `Bf16` products run in f32 (callers that promise
/// bf16 check [`bf16::units`] first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// Products with bf16 operands and f32 sums.
    Bf16,
}

impl Precision {
    /// Every precision, in the order `precision` lists them.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The word `precision` takes for it: `fp32` or `bf16`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `product(x, w)` through candle's own operations in `precision`, for the devices and dtypes
/// the fused kernels leave to candle (CUDA above all): in bf16, f32 operands are cast to
/// candle's bf16 tensors and the result back to f32, as PyTorch's autocast does; the result
/// otherwise has `x`'s dtype.
fn autocast(
    precision: Precision,
    x: &Tensor,
    w: &Tensor,
    product: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    use candle_core::DType;
    if precision == Precision::Bf16 && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        product(&x.to_dtype(DType::BF16)?, &w.to_dtype(DType::BF16)?)?.to_dtype(DType::F32)
    } else {
        product(x, w)
    }
}

/// Whether the fused CPU kernels apply to every one of `tensors`: f32 on the CPU (otherwise
/// the kernels fall back to candle's own operations).
pub fn cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}

/// Keeps candle's own CPU thread pool to one thread, unless `CANDLE_NUM_THREADS` is set.
///
/// candle runs large element-wise operations on a pool of its own, beside rayon's, whose idle
/// workers spin for a while after every operation. The heavy work of training here runs on
/// rayon (these kernels), so on a small machine those spinning workers only take time from it:
/// one candle thread trained the article's CNN at batch 128 about 10% faster on two cores.
/// Call it at the start of `main`, before any other thread starts (it sets an environment
/// variable, which candle reads once).
pub fn keep_candle_pool_single_threaded() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keeps freed buffers in the process instead of handing them back to the system (glibc only;
/// elsewhere it does nothing), and returns whether the settings took.
///
/// A training step allocates its large outputs, gradients and im2col matrices afresh. With
/// glibc's defaults each buffer above its mmap threshold is mapped for the step and unmapped
/// after it, and every page of it faults in again on the next step: `perf` put a third of a
/// batch-norm model's step at batch 128 in the kernel's page-fault path. With the mmap
/// threshold at its largest (32 MiB) and trimming only above 1 GiB, the buffers are reused;
/// in four interleaved pairs on a loaded machine, a batch-norm CNN trained 1.8–2.1× faster and
/// the article's CNN at batch 128 1.27× faster, with identical losses. The cost is
/// that the process keeps up to about one step's worth of freed memory. Call it at the start
/// of `main`.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; both values are in glibc's range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Values zeroed per parallel task by [`par_zeros`].
const ZERO_PIECE: usize = 1 << 16;

/// A vector of `len` zeros, zeroed by all threads. The outputs and gradients of these ops are
/// megabytes each; zeroed by the calling thread alone, they kept the other threads waiting.
fn par_zeros<T: Copy + Default + Send>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut().par_chunks_mut(ZERO_PIECE).for_each(|piece| {
        for x in piece {
            x.write(T::default());
        }
    });
    // SAFETY: the loop above wrote every one of the first `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// `buf` cut into mutable parts of `size` values, or `count` empty parts when `buf` is empty
/// (an output the op does not compute this time), to zip with the op's other per-task slices.
fn parts_or_empty<T>(buf: &mut [T], size: usize, count: usize) -> Vec<&mut [T]> {
    if buf.is_empty() {
        (0..count).map(|_| <&mut [T]>::default()).collect()
    } else {
        buf.chunks_mut(size).collect()
    }
}

/// `(n, c, h, w)` of a 4-d input's layout, or an error naming `op`.
fn dims4(op: &str, layout: &Layout) -> Result<(usize, usize, usize, usize)> {
    match *layout.dims() {
        [n, c, h, w] => Ok((n, c, h, w)),
        ref d => bail!("{op}: expected a 4-d input, got {d:?}"),
    }
}

/// The contiguous f32 data of a CPU storage, or an error naming `op` and what is wrong.
fn f32_slice<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        other => bail!("{op}: expected f32 data, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expected a contiguous tensor"),
    }
}

/// A matrix operand of [`matmul`]: (slice, row stride, column stride).
pub type Operand<'a> = (&'a [f32], usize, usize);

/// The destination of [`matmul`]: (slice, row stride, column stride).
pub type Destination<'a> = (&'a mut [f32], usize, usize);

/// `dst = lhs · rhs` in `precision` on the calling thread (by `gemm` in f32), for an m × k
/// `lhs`, a k × n `rhs` and an m × n `dst`, each given as (slice, row stride, column stride):
/// element (i, j) sits at `i * row_stride + j * col_stride`. Panics if a matrix would reach
/// past its slice. The kernels' one product; public for the benches, which measure its rate.
pub fn matmul(
    precision: Precision,
    (m, n, k): (usize, usize, usize),
    dst: Destination<'_>,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
) {
    product(precision, (m, n, k), dst, lhs, rhs, false);
}

/// [`matmul`] that adds the product to `dst` instead of overwriting it: `dst += lhs · rhs`.
pub(super) fn matmul_add(
    precision: Precision,
    (m, n, k): (usize, usize, usize),
    dst: Destination<'_>,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
) {
    product(precision, (m, n, k), dst, lhs, rhs, true);
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `add`, for [`matmul`] and [`matmul_add`]; the
/// product is m × k · k × n.
fn product(
    precision: Precision,
    (m, n, k): (usize, usize, usize),
    dst: Destination<'_>,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    add: bool,
) {
    let fits = |len: usize, rows: usize, cols: usize, rs: usize, cs: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
    };
    assert!(
        fits(dst.0.len(), m, n, dst.1, dst.2)
            && fits(lhs.0.len(), m, k, lhs.1, lhs.2)
            && fits(rhs.0.len(), k, n, rhs.1, rhs.2),
        "matmul: a {m}x{k} · {k}x{n} product reaches past one of its buffers"
    );
    if let (Precision::Bf16, Some(units)) = (precision, bf16::units()) {
        if bf16::pays((m, n, k)) {
            return bf16::product(units, (m, n, k), dst, lhs, rhs, add);
        }
    }
    // SAFETY: the assertion keeps every element gemm reads or writes inside its slice, and
    // `dst`, borrowed mutably, aliases neither input.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0.as_mut_ptr(),
            dst.2 as isize,
            dst.1 as isize,
            add,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Two scratch buffers kept per thread between calls, for [`with_scratch`].
type Scratch = std::thread::LocalKey<std::cell::RefCell<[Vec<f32>; 2]>>;

/// Runs `f` on the two buffers of the thread-local `scratch`, grown to lengths `a` and `b`.
/// Their contents are stale: `f` must write every element before reading it. Each op keeps
/// its own, so that one op's scratch stays free while another's is in use.
fn with_scratch<R>(scratch: &'static Scratch, a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    scratch.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [x, y] = &mut *bufs;
            for (buf, len) in [(&mut *x, a), (&mut *y, b)] {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
            }
            f(&mut x[..a], &mut y[..b])
        }
        // Only reachable if `f` itself ends up here again on this thread.
        Err(_) => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
pub(super) fn with_f32<R>(op: &str, t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(f32_slice(op, cpu, layout)?),
        _ => bail!("{op}: expected a CPU tensor"),
    }
}

/// The sum of `xs` over 16 independent lanes, which the compiler turns into vector adds (a
/// plain `sum` is one serial chain of scalar adds); the order is fixed, so results are too.
pub(super) fn lane_sum(xs: &[f32]) -> f32 {
    lane_sum_zip(xs, xs, |x, _| x)
}

/// Σ `f(a[i], b[i])` over 16 independent lanes, as [`lane_sum`] does (`a` and `b` of one length).
#[inline]
pub(super) fn lane_sum_zip(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (xa, xb) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *l += f(x, y);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_allocator_settings() {
        assert!(super::keep_freed_memory());
    }

    /// The casts of the path CUDA takes in bf16: f32 in, the operation on bf16 tensors, f32
    /// out, within bf16's rounding of the f32 result; in fp32 the operation unchanged. (candle
    /// multiplies bf16 matrices on CUDA only, so an element-wise product stands in for them.)
    #[test]
    fn autocast_runs_f32_operands_in_bf16_and_returns_f32() -> candle_core::Result<()> {
        use super::test_util::{random, rel_err};
        use super::Precision;
        let (x, w) = (random(&[4, 3, 8, 8], 1)?, random(&[4, 3, 8, 8], 2)?);
        let product = |x: &candle_core::Tensor, w: &candle_core::Tensor| x.mul(w);
        let exact = product(&x, &w)?;
        let mixed = super::autocast(Precision::Bf16, &x, &w, product)?;
        assert_eq!(mixed.dtype(), candle_core::DType::F32);
        let e = rel_err(&mixed, &exact)?;
        assert!(e > 0.0 && e < 1e-2, "bf16 differs by {e}");
        assert_eq!(rel_err(&super::autocast(Precision::F32, &x, &w, product)?, &exact)?, 0.0);
        Ok(())
    }

    #[test]
    fn par_zeros_gives_len_zeros() {
        for len in [0, 1, super::ZERO_PIECE - 1, 3 * super::ZERO_PIECE + 5] {
            let v = super::par_zeros::<f32>(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
        }
        assert!(super::par_zeros::<u32>(70_000).iter().all(|&x| x == 0));
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Result, Tensor};
    use rand::{Rng, SeedableRng};

    /// A tensor of uniform values in [-1, 1) from a fixed seed.
    pub fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
    }

    /// A tensor of distinct values in [-1, 1) in a random order from a fixed seed, so that no
    /// pooling window holds a tie.
    pub fn distinct(shape: &[usize], seed: u64) -> Result<Tensor> {
        use rand::seq::SliceRandom;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let mut data: Vec<f32> = (0..n).map(|i| 2.0 * i as f32 / n as f32 - 1.0).collect();
        data.shuffle(&mut rng);
        Tensor::from_vec(data, shape, &Device::Cpu)
    }

    /// candle's batch norm (eps 1e-3, momentum 0.1) with the scales `gamma` and shifts `beta`,
    /// and the VarMap that holds its parameters as `bn.weight`, `bn.bias`, `bn.running_mean`
    /// and `bn.running_var`.
    pub fn candle_batch_norm(gamma: &Tensor, beta: &Tensor) -> (candle_nn::VarMap, candle_nn::BatchNorm) {
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        let cfg = candle_nn::BatchNormConfig { eps: 1e-3, remove_mean: true, affine: true, momentum: 0.1 };
        let bn = candle_nn::batch_norm(gamma.elem_count(), cfg, vb.pp("bn")).expect("candle builds a batch norm");
        {
            let data = varmap.data().lock().expect("a fresh VarMap's lock is not poisoned");
            data["bn.weight"].set(gamma).expect("gamma has one value per channel");
            data["bn.bias"].set(beta).expect("beta has one value per channel");
        }
        (varmap, bn)
    }

    /// Asserts, for each `(tensor in ours, tensor in theirs, name)`, that the gradient in `ours`
    /// is within relative error `tol` of the one in `theirs`; `what` names the case.
    pub fn assert_grads_close(
        ours: &candle_core::backprop::GradStore,
        theirs: &candle_core::backprop::GradStore,
        pairs: &[(&Tensor, &Tensor, &str)],
        tol: f32,
        what: &str,
    ) {
        for &(mine, reference, name) in pairs {
            let (a, b) =
                (ours.get(mine).expect("ours has the gradient"), theirs.get(reference).expect("so has theirs"));
            let e = rel_err(a, b).expect("the gradients compare");
            assert!(e < tol, "{what} {name}: relative error {e}");
        }
    }

    /// max |a - b| / max |b|: the error of `a` relative to the reference `b`.
    pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(scale > 0.0, "the reference is all zeros");
        Ok(diff / scale)
    }
}
