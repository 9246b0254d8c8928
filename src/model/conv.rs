//! Convolution on the CPU as im2col + matrix product, with a col2im backward pass.
//!
//! candle's CPU backward pass for `conv2d` goes through `conv_transpose2d`, a direct loop that
//! is several times slower than the forward pass. Expressing the convolution as
//! `im2col(x) · Wᵀ` makes both gradients matrix products (plus a cheap col2im), which is what
//! makes a full MNIST epoch practical on a laptop CPU. Other devices use candle's `conv2d`.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of a stride-1 square convolution over `c × h × w` inputs.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn row_len(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Calls `f(col, input offset)` for every in-bounds tap of output position (`oy`, `ox`).
    #[inline]
    fn taps(&self, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
        let (k, pad) = (self.k, self.pad as isize);
        for ci in 0..self.c {
            for ky in 0..k {
                let iy = oy as isize + ky as isize - pad;
                if iy < 0 || iy >= self.h as isize {
                    continue;
                }
                for kx in 0..k {
                    let ix = ox as isize + kx as isize - pad;
                    if ix < 0 || ix >= self.w as isize {
                        continue;
                    }
                    f((ci * k + ky) * k + kx, (ci * self.h + iy as usize) * self.w + ix as usize);
                }
            }
        }
    }
}

/// `[N, C, H, W]` → `[N·OH·OW, C·k·k]` patches.
struct Im2Col(Geometry);

/// The adjoint of [`Im2Col`]: sums patches back into `[N, C, H, W]`.
struct Col2Im(Geometry);

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { bail!("{op}: only f32 tensors are supported") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: the input must be contiguous"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "mnistlab-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(storage, layout, "im2col")?;
        let image = g.c * g.h * g.w;
        let n = x.len() / image;
        let per_image = g.oh * g.ow * g.row_len();
        let mut out = vec![0f32; n * per_image];
        out.par_chunks_mut(per_image).zip(x.par_chunks(image)).for_each(|(cols, img)| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = &mut cols[(oy * g.ow + ox) * g.row_len()..][..g.row_len()];
                    g.taps(oy, ox, |col, at| row[col] = img[at]);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n * g.oh * g.ow, g.row_len()))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "mnistlab-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = contiguous_f32(storage, layout, "col2im")?;
        let per_image = g.oh * g.ow * g.row_len();
        let n = cols.len() / per_image;
        let image = g.c * g.h * g.w;
        let mut out = vec![0f32; n * image];
        out.par_chunks_mut(image).zip(cols.par_chunks(per_image)).for_each(|(img, cols)| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = &cols[(oy * g.ow + ox) * g.row_len()..][..g.row_len()];
                    g.taps(oy, ox, |col, at| img[at] += row[col]);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, g.c, g.h, g.w))))
    }
}

/// A stride-1 convolution of `x` `[N, C, H, W]` with `weight` `[F, C, k, k]`, `bias` `[F]` and
/// `pad` zeros on each side; on the CPU via im2col, elsewhere with candle's `conv2d`.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: &Tensor, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (f, wc, k, k2) = weight.dims4()?;
    if wc != c || k != k2 {
        bail!("conv2d: kernel {:?} does not fit input {:?}", weight.dims(), x.dims());
    }
    if h + 2 * pad < k || w + 2 * pad < k {
        bail!("conv2d: input {h}×{w} is smaller than the {k}×{k} kernel");
    }
    if !x.device().is_cpu() {
        let y = x.conv2d(weight, pad, 1, 1, 1)?;
        return y.broadcast_add(&bias.reshape((1, f, 1, 1))?);
    }
    let g = Geometry { c, h, w, k, pad, oh: h + 2 * pad + 1 - k, ow: w + 2 * pad + 1 - k };
    let cols = x.contiguous()?.apply_op1(Im2Col(g))?;
    let kernel = weight.reshape((f, g.row_len()))?;
    let y = cols.matmul(&kernel.t()?)?.broadcast_add(bias)?;
    y.reshape((n, g.oh, g.ow, f))?.permute((0, 3, 1, 2))?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candle_conv2d_and_its_gradients() {
        let dev = Device::Cpu;
        for (k, pad) in [(3, 0), (3, 1), (5, 2), (5, 0)] {
            let x = Var::randn(0f32, 1., (2, 3, 9, 8), &dev).unwrap();
            let wt = Var::randn(0f32, 1., (4, 3, k, k), &dev).unwrap();
            let b = Var::randn(0f32, 1., 4, &dev).unwrap();
            let ours = conv2d(&x, &wt, &b, pad).unwrap();
            let theirs = x.conv2d(&wt, pad, 1, 1, 1).unwrap().broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-4);
            // Gradients of a weighted sum agree for the input, kernel and bias.
            let probe = Tensor::randn(0f32, 1., ours.shape(), &dev).unwrap();
            let ga = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt, &b] {
                let (a, b) = (ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-3, "k {k} pad {pad}: {}", max_diff(a, b));
            }
        }
    }
}
