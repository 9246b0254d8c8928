//! Products in bf16 with f32 sums, as Keras' `mixed_bfloat16` policy and PyTorch's CPU
//! autocast define mixed precision: both operands are rounded to bf16 (to nearest, ties to
//! even) as they are packed, the products are summed in f32, and the result is f32. Nothing
//! else changes precision: the callers' tensors, weights, gradients and every other operation
//! stay f32.
//!
//! Two kinds of units run them, chosen once at run time ([`units`]): Intel AMX's tile
//! product, or AVX512-BF16's vector dot products (off Intel). A CPU with neither has no bf16
//! products, and `precision bf16` is refused there rather than emulated (emulated, it would be
//! slower than f32).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod pack;

use std::sync::OnceLock;

use pack::{Side, View, K_STEP, SIDE, TILE};

/// The units that run bf16 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Units {
    /// Intel AMX tiles (`TDPBF16PS`).
    Amx,
    /// AVX512-BF16 vectors (`VDPBF16PS`).
    Avx512Bf16,
}

impl std::fmt::Display for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Units::Amx => "AMX tiles",
            Units::Avx512Bf16 => "AVX512-BF16",
        })
    }
}

/// The environment variable that names the units to use instead of the best the CPU has:
/// `avx512` runs the AVX512-BF16 kernels on a CPU with AMX (to measure them), `none` acts as
/// a CPU without bf16 units.
pub const UNITS_VAR: &str = "MNISTLAB_BF16_UNITS";

/// The bf16 units `precision bf16` runs on, or `None`: AMX where the CPU has it; else
/// AVX512-BF16, except on Intel CPUs; detected once, when the AMX tiles are also requested
/// from Linux. [`UNITS_VAR`] can change the choice among the units the CPU has.
///
/// On this project's Intel Xeon the AVX512-BF16 product ran at 69-85 GFLOP/s where `gemm`'s
/// f32 ran at 67-128 on the same four shapes (and AMX at 180-375, one thread): bf16 there would lose
/// precision and time, so an Intel CPU without AMX counts as having no bf16 units. The vector
/// kernels are for AMD's Zen 4 and later; no such CPU was at hand to measure them.
pub fn units() -> Option<Units> {
    static UNITS: OnceLock<Option<Units>> = OnceLock::new();
    *UNITS.get_or_init(|| match std::env::var(UNITS_VAR).as_deref() {
        Ok("none") => None,
        Ok("avx512") => has_vectors().then_some(Units::Avx512Bf16),
        _ => detect(),
    })
}

/// Whether the CPU has AVX512F, AVX512BW and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
fn has_vectors() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_vectors() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Option<Units> {
    if !has_vectors() {
        return None;
    }
    if amx::available() {
        return Some(Units::Amx);
    }
    // SAFETY: CPUID leaf 0 (the vendor) exists on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let vendor = unsafe { std::arch::x86_64::__cpuid(0) };
    let intel = (vendor.ebx, vendor.edx, vendor.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e); // "GenuineIntel"
    (!intel).then_some(Units::Avx512Bf16)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Option<Units> {
    None
}

/// Whether an m × k · k × n product runs faster in bf16 than in f32: both sides at least 16
/// (a tile's rows; a side of 6 pads to 16, and the tile product computes the padding) and a
/// sum of at least 48 terms (below that, packing both operands costs more than the product
/// saves). Measured on the 2-core Intel Xeon with AMX (n = 2048, one thread, GFLOP/s of bf16
/// on AMX / f32 by `gemm`): m 64 at k 9, 25, 32, 54, 150: 44/112, 103/113, 134/130, 201/140,
/// 300/135; m 16 at k 54 and 150: 126/132, 156/120; m 6 at k 150: 46/92. A product that does not pay runs in f32, which
/// is also more exact; the choice depends on the shape alone, so runs stay repeatable.
pub(super) fn pays((m, n, k): (usize, usize, usize)) -> bool {
    m.min(n) >= SIDE && k >= 48
}

/// Right-operand columns packed at a time: 256 columns of a K of 576 make 288 KiB of tiles,
/// which stay in L2 while every row block of the left operand passes over them.
const PANEL: usize = 256;

/// Sums of one block: 32 × 32 f32.
type Block = [f32; 4 * TILE];

thread_local! {
    /// The packed operands of the calling thread's last product, kept for the next.
    static PACKED: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `add`, for an m × k `lhs` and a k × n `rhs`,
/// with each operand rounded to bf16 and the products summed in f32, on `units`. Operands and
/// `dst` are (slice, row stride, column stride), as in `kernels::matmul`; the caller has
/// checked that each fits its slice.
pub(super) fn product(
    units: Units,
    (m, n, k): (usize, usize, usize),
    dst: (&mut [f32], usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    add: bool,
) {
    // An empty side makes no blocks; an empty sum makes blocks of zeros.
    // The left operand packs straight into tiles when its rows run along K, the right when
    // its rows run along N; otherwise a tile is transposed on the way. The product is the
    // same turned over (dstᵀ = rhsᵀ · lhsᵀ), so take the way with fewer values to transpose.
    let left = View { data: lhs.0, p: m, k, p_stride: lhs.1, k_stride: lhs.2 };
    let right = View { data: rhs.0, p: n, k, p_stride: rhs.2, k_stride: rhs.1 };
    let transposed = |v: View<'_>, side: Side| {
        let straight = match side {
            Side::Left => v.k_stride == 1,
            Side::Right => v.p_stride == 1,
        };
        if straight {
            0
        } else {
            v.p * v.k
        }
    };
    let as_is = transposed(left, Side::Left) + transposed(right, Side::Right);
    let turned = transposed(right, Side::Left) + transposed(left, Side::Right);
    let (dst, rows, cols) = (dst.0, dst.1, dst.2);
    if turned < as_is {
        blocks(units, right, left, (dst, cols, rows), add);
    } else {
        blocks(units, left, right, (dst, rows, cols), add);
    }
}

/// The product of `left` (M × K) and `right` (seen as N × K) into `dst` (M × N, with its row
/// and column strides), block by block.
fn blocks(units: Units, left: View<'_>, right: View<'_>, dst: (&mut [f32], usize, usize), add: bool) {
    // Either kind of units means the CPU has AVX512-BF16, which the vector packing needs.
    let fast = cfg!(target_arch = "x86_64");
    let (out, strides) = (dst.0, (dst.1, dst.2));
    let k_blocks = left.k.div_ceil(K_STEP);
    // Row blocks and column blocks are taken in pairs; an odd last column block pairs with
    // zeros, an odd last row block runs alone.
    let row_blocks = left.p.div_ceil(SIDE);
    PACKED.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (a, b) = &mut *guard;
        grow(a, row_blocks * k_blocks * TILE);
        pack::pack(left, 0..row_blocks, Side::Left, fast, a);
        #[cfg(target_arch = "x86_64")]
        let tiles = (units == Units::Amx).then(|| {
            // SAFETY: `units` is Amx only where `amx::available` returned true.
            unsafe { amx::Tiles::configure() }
        });
        let mut sums: Block = [0.0; 4 * TILE];
        for n0 in (0..right.p).step_by(PANEL) {
            let col_blocks = (right.p - n0).min(PANEL).div_ceil(SIDE).next_multiple_of(2);
            let first = n0 / SIDE;
            grow(b, col_blocks * k_blocks * TILE);
            pack::pack(right, first..first + col_blocks, Side::Right, fast, b);
            // Each pair of right blocks stays in L1 while every left block passes over it (the
            // left operand, M × K with M at most a few hundred, stays in L2).
            for cb in (0..col_blocks).step_by(2) {
                let b_pair = [&b[cb * k_blocks * TILE..], &b[(cb + 1) * k_blocks * TILE..]];
                for rb in (0..row_blocks).step_by(2) {
                    let tiles_of = |r: usize| &a[r * k_blocks * TILE..(r + 1) * k_blocks * TILE];
                    let a_pair: &[&[u32]] =
                        if rb + 1 < row_blocks { &[tiles_of(rb), tiles_of(rb + 1)] } else { &[tiles_of(rb)] };
                    #[cfg(target_arch = "x86_64")]
                    match &tiles {
                        Some(tiles) => tiles.block(a_pair, b_pair, k_blocks, &mut sums),
                        // SAFETY: `units` is Avx512Bf16 only where `has_vectors` found AVX512F,
                        // AVX512BW and AVX512-BF16.
                        None => unsafe { avx512::block(a_pair, b_pair, k_blocks, &mut sums) },
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    let _ = (units, a_pair, b_pair);
                    let (i0, j0) = (rb * SIDE, n0 + cb * SIDE);
                    let size = ((left.p - i0).min(2 * SIDE), (right.p - j0).min(2 * SIDE));
                    write(&sums, size, (i0, j0), (&mut *out, strides), add);
                }
            }
        }
    });
}

/// Grows `buf` to at least `len` words (its contents are overwritten by packing).
fn grow(buf: &mut Vec<u32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Writes (or, when `add`, adds) the top-left `rows` × `cols` of a block's sums at (`i0`,
/// `j0`) of `out`, whose (row, column) strides are `strides`.
fn write(
    sums: &Block,
    (rows, cols): (usize, usize),
    (i0, j0): (usize, usize),
    (out, (rs, cs)): (&mut [f32], (usize, usize)),
    add: bool,
) {
    for (i, row) in sums.chunks_exact(2 * SIDE).take(rows).enumerate() {
        let base = (i0 + i) * rs + j0 * cs;
        if cs == 1 {
            let d = &mut out[base..base + cols];
            if add {
                d.iter_mut().zip(row).for_each(|(d, s)| *d += s);
            } else {
                d.copy_from_slice(&row[..cols]);
            }
        } else {
            for (j, &s) in row[..cols].iter().enumerate() {
                let d = &mut out[base + j * cs];
                *d = if add { *d + s } else { s };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The units this CPU can run (whether or not `units` would choose them).
    fn every_unit() -> Vec<Units> {
        match (detect(), has_vectors()) {
            (Some(Units::Amx), _) => vec![Units::Amx, Units::Avx512Bf16],
            (_, true) => vec![Units::Avx512Bf16],
            _ => Vec::new(),
        }
    }

    #[test]
    fn detection_follows_the_cpu_flags() {
        // Every unit detected is one the CPU has; AMX is chosen wherever it is granted.
        assert!(detect().is_none_or(|_| has_vectors()));
        #[cfg(target_arch = "x86_64")]
        if has_vectors() && amx::available() {
            assert_eq!(detect(), Some(Units::Amx));
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(detect(), None);
    }

    /// `x` rounded to bf16, as f64.
    fn rounded(x: f32) -> f64 {
        f64::from(half::bf16::from_f32(x).to_f32())
    }

    #[test]
    fn products_equal_the_f64_sums_of_the_rounded_operands_in_every_layout_on_every_unit() {
        let units = every_unit();
        assert_eq!(units.is_empty(), !has_vectors());
        let value = |seed: usize| ((seed * 2654435761) % 1999) as f32 / 997.0 - 1.0;
        for unit in units {
            for (m, n, k) in [
                (1, 1, 1),
                (4, 5, 0),
                (0, 5, 3),
                (4, 0, 3),
                (16, 16, 32),
                (10, 300, 9),
                (64, 17, 600),
                (33, 65, 70),
                (27, 196, 32),
                (27, 196, 64),
            ] {
                // Both operands in both layouts: row-major and column-major.
                for (lt, rt) in [(false, false), (true, false), (false, true), (true, true)] {
                    let a: Vec<f32> = (0..m * k).map(|i| value(i + 7)).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| value(3 * i + 1)).collect();
                    let lhs = if lt { (&a[..], 1, m) } else { (&a[..], k, 1) };
                    let rhs = if rt { (&b[..], 1, k) } else { (&b[..], n, 1) };
                    for add in [false, true] {
                        let mut c = vec![0.5f32; m * n];
                        product(unit, (m, n, k), (&mut c, n, 1), lhs, rhs, add);
                        for i in 0..m {
                            for j in 0..n {
                                let want: f64 = (0..k)
                                    .map(|l| {
                                        rounded(lhs.0[i * lhs.1 + l * lhs.2]) * rounded(rhs.0[l * rhs.1 + j * rhs.2])
                                    })
                                    .sum::<f64>()
                                    + if add { 0.5 } else { 0.0 };
                                let got = f64::from(c[i * n + j]);
                                // f32 sums of k terms each below 1: an error of k ulps at most.
                                assert!(
                                    (got - want).abs() <= 1e-6 * k as f64 + 1e-6,
                                    "{unit} {m}x{n}x{k} layouts {lt}/{rt} add {add}: ({i}, {j}) {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
