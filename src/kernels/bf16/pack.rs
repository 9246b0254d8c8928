//! Packing f32 operands into bf16 tiles: the rounding to bf16 happens here, once per value,
//! so the products read nothing but bf16 and no tensor is ever converted.
//!
//! A tile is 16 rows of 16 words (1 KiB); a word holds two bf16 values, the lower-indexed `k`
//! in its low half, as `TDPBF16PS` and `VDPBF16PS` read them. An operand is seen as P × K
//! (P: the rows of the left operand, the columns of the right one). Left-operand tiles are
//! P rows × K/2 words; right-operand tiles are the transpose, K/2 rows × P words.

use half::bf16;

/// Words (bf16 pairs) in a tile row, and rows in a tile.
pub(super) const SIDE: usize = 16;

/// Words in a tile.
pub(super) const TILE: usize = SIDE * SIDE;

/// `k` values one tile spans.
pub(super) const K_STEP: usize = 2 * SIDE;

/// An f32 operand seen as `p` × `k`: element (i, j) at `i * p_stride + j * k_stride`.
#[derive(Clone, Copy, Debug)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub p: usize,
    pub k: usize,
    pub p_stride: usize,
    pub k_stride: usize,
}

/// Which operand a packed buffer is for: the left one's tiles keep P as rows, the right one's
/// are transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Left,
    Right,
}

/// Packs the tiles of `view` for P blocks `blocks` (16 rows of P each) and every K block into
/// `out`: tile (b, kb) at `((b - blocks.start) * k_blocks + kb) * TILE`. Values past the
/// operand's edge are zeros. `fast` says the CPU has AVX512-BF16 (with AVX512F and BW).
pub(super) fn pack(view: View<'_>, blocks: std::ops::Range<usize>, side: Side, fast: bool, out: &mut [u32]) {
    let k_blocks = view.k.div_ceil(K_STEP);
    for (slot, b) in blocks.enumerate() {
        for kb in 0..k_blocks {
            let tile = &mut out[(slot * k_blocks + kb) * TILE..][..TILE];
            let (p0, k0) = (b * SIDE, kb * K_STEP);
            #[cfg(target_arch = "x86_64")]
            if fast && p0 < view.p && (view.k_stride == 1 || view.p_stride == 1) {
                // SAFETY: `fast` says the CPU has the features, and (p0, k0) is inside the view.
                unsafe { vector::tile(view, p0, k0, side, tile) };
                continue;
            }
            let _ = fast;
            scalar_tile(view, p0, k0, side, tile);
        }
    }
}

/// The bits of `x` rounded to the nearest bf16 (ties to even).
fn bits(x: f32) -> u32 {
    u32::from(bf16::from_f32(x).to_bits())
}

/// One tile, value by value: for any strides and for tiles that cross the operand's edge.
fn scalar_tile(view: View<'_>, p0: usize, k0: usize, side: Side, tile: &mut [u32]) {
    let at = |i: usize, j: usize| {
        if i < view.p && j < view.k {
            bits(view.data[i * view.p_stride + j * view.k_stride])
        } else {
            0
        }
    };
    for r in 0..SIDE {
        for w in 0..SIDE {
            let word = at(p0 + r, k0 + 2 * w) | at(p0 + r, k0 + 2 * w + 1) << 16;
            match side {
                Side::Left => tile[r * SIDE + w] = word,
                Side::Right => tile[w * SIDE + r] = word,
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::*;

    use super::{Side, View, SIDE};

    /// The 32 bf16 values of `v` as 16 words.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn words_of(v: __m512bh) -> __m512i {
        // SAFETY: both are 64 bytes of plain bits.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
    }

    /// One tile of a view contiguous along K or along P, 16 words at a time: along K, 32
    /// consecutive values make the 16 words of one P row; along P, two K columns of 16 values
    /// interleave into the 16 words of one word column. Rows land as rows and columns as
    /// columns of the tile, transposed for the right operand. Past the view's edge the loads
    /// are masked (no lane outside the view is read) and the words are zeros.
    ///
    /// # Safety
    /// The CPU must have AVX512F, AVX512BW and AVX512-BF16, and (`p0`, `k0`) must lie inside
    /// the view.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile(view: View<'_>, p0: usize, k0: usize, side: Side, tile: &mut [u32]) {
        let along_k = view.k_stride == 1;
        // Along K each vector is a P row of words; along P it is a word column.
        let (row_major, spacing) = match (along_k, side) {
            (true, Side::Left) | (false, Side::Right) => (true, SIDE),
            (true, Side::Right) | (false, Side::Left) => (false, 1),
        };
        let data = view.data.as_ptr();
        // Interleaves the two halves of a 32-value vector: word i = (lo[i], hi[i]).
        let interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        // Lanes `0..n` of 16.
        let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(SIDE)) - 1) as __mmask16 };
        let (p_count, k_count) = (view.p - p0, view.k - k0);
        let mut words = [0u32; SIDE];
        for v in 0..SIDE {
            // SAFETY (reads): every lane a mask lets through is an element of the view, inside
            // `view.data`; masked-off lanes are not read.
            let packed = if along_k {
                let row = data.wrapping_add((p0 + v) * view.p_stride + k0);
                let mask = if v < p_count { lanes(k_count) } else { 0 };
                let high = if v < p_count { lanes(k_count.saturating_sub(SIDE)) } else { 0 };
                let (lo, hi) = (_mm512_maskz_loadu_ps(mask, row), _mm512_maskz_loadu_ps(high, row.wrapping_add(SIDE)));
                // cvtne2ps_pbh(a, b) puts b's values in the lower half.
                words_of(_mm512_cvtne2ps_pbh(hi, lo))
            } else {
                let col = data.wrapping_add(p0 + (k0 + 2 * v) * view.k_stride);
                let mask = if 2 * v < k_count { lanes(p_count) } else { 0 };
                let high = if 2 * v + 1 < k_count { lanes(p_count) } else { 0 };
                let (lo, hi) =
                    (_mm512_maskz_loadu_ps(mask, col), _mm512_maskz_loadu_ps(high, col.wrapping_add(view.k_stride)));
                _mm512_permutexvar_epi16(interleave, words_of(_mm512_cvtne2ps_pbh(hi, lo)))
            };
            if row_major {
                _mm512_storeu_si512(tile.as_mut_ptr().add(v * SIDE).cast(), packed);
            } else {
                _mm512_storeu_si512(words.as_mut_ptr().cast(), packed);
                for (r, &w) in words.iter().enumerate() {
                    tile[r * SIDE + v * spacing] = w;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view's values in a fixed pseudo-random pattern, some of them tied halfway between
    /// two bf16 values, in both layouts.
    fn views(p: usize, k: usize) -> Vec<(Vec<f32>, usize, usize)> {
        let value = |i: usize, j: usize| {
            let x = ((i * 131 + j * 71) % 97) as f32 / 13.0 - 3.5;
            if (i + j).is_multiple_of(5) {
                // 1 + 2^-8: exactly halfway between two bf16 values (ties go to even).
                x.signum() * (1.0 + 1.0 / 256.0)
            } else {
                x
            }
        };
        let k_major: Vec<f32> = (0..p).flat_map(|i| (0..k).map(move |j| value(i, j))).collect();
        let p_major: Vec<f32> = (0..k).flat_map(|j| (0..p).map(move |i| value(i, j))).collect();
        vec![(k_major, k, 1), (p_major, 1, p)]
    }

    #[test]
    fn vector_and_scalar_packing_agree_in_both_layouts_and_sides() {
        let fast = cfg!(target_arch = "x86_64") && super::super::has_vectors();
        for (p, k) in [(16, 32), (40, 70), (33, 96), (5, 7)] {
            for (data, p_stride, k_stride) in views(p, k) {
                let view = View { data: &data, p, k, p_stride, k_stride };
                let blocks = p.div_ceil(SIDE);
                let len = blocks * k.div_ceil(K_STEP) * TILE;
                for side in [Side::Left, Side::Right] {
                    let (mut a, mut b) = (vec![7u32; len], vec![9u32; len]);
                    pack(view, 0..blocks, side, fast, &mut a);
                    pack(view, 0..blocks, side, false, &mut b);
                    assert_eq!(a, b, "{p}x{k} strides ({p_stride}, {k_stride}) {side:?}");
                    // Every value is where the layout says, rounded to nearest even.
                    let word = |i: usize, w: usize| {
                        let (blk, kb) = (i / SIDE, (2 * w) / K_STEP);
                        let (r, c) = (i % SIDE, w % SIDE);
                        let at = (blk * k.div_ceil(K_STEP) + kb) * TILE;
                        match side {
                            Side::Left => b[at + r * SIDE + c],
                            Side::Right => b[at + c * SIDE + r],
                        }
                    };
                    for i in 0..p {
                        for j in 0..k {
                            let half = (word(i, j / 2) >> (16 * (j % 2))) & 0xffff;
                            let want = bf16::from_f32(data[i * p_stride + j * k_stride]).to_bits();
                            assert_eq!(half as u16, want, "({i}, {j})");
                        }
                    }
                }
            }
        }
    }
}
