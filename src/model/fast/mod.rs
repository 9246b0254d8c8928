//! Fast CPU kernels for the small CNNs mnistlab trains: 2-D convolution and max-pooling as
//! candle custom ops with their own backward passes.
//!
//! candle's CPU convolution backward is slow (its `conv_transpose2d` is a direct loop and the
//! weight gradient is a convolution with an output-sized kernel). These ops use im2col and
//! `gemm` instead, run over the batch in parallel with rayon, fuse bias and ReLU into the
//! forward pass, and skip the input gradient when the input needs none. On other devices or
//! dtypes they fall back to candle's own operations.

mod conv;
mod pool;

pub use conv::conv2d;
pub use pool::max_pool2d;

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result};

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
