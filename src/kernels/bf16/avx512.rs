//! AVX512-BF16: the same 32 × 32 blocks as the tile product, by `VDPBF16PS` (16 f32 sums +=
//! 16 pairs of bf16 products in one instruction), for CPUs that have it without AMX (AMD
//! Zen 4 and later, Intel Cooper Lake).

use std::arch::x86_64::*;

use super::pack::{SIDE, TILE};

/// Rows of sums one pass keeps in registers: 8 rows × 2 vectors of 16 columns, 16 of the 32
/// vector registers, beside the two right-operand vectors and the broadcast left value.
const ROWS: usize = 8;

/// The 32 × 32 sums (row-major, 32 per row) of one or two left row blocks (`a`) by two right
/// column blocks (`b`), over `k_blocks` tiles of each, written to `c` (with one left block, its
/// first 16 rows): what [`super::amx::Tiles::block`] computes.
///
/// # Safety
/// The CPU must have AVX512F and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn block(a: &[&[u32]], b: [&[u32]; 2], k_blocks: usize, c: &mut [f32; 4 * TILE]) {
    assert!(matches!(a.len(), 1 | 2), "avx512-bf16: one or two left blocks");
    for t in a.iter().chain(&b) {
        assert!(t.len() >= k_blocks * TILE, "avx512-bf16: an operand holds fewer than {k_blocks} tiles");
    }
    for pass in 0..2 * a.len() {
        let (tile, first) = (a[pass / 2], (pass % 2) * ROWS);
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        for kb in 0..k_blocks {
            let at = kb * TILE;
            for w in 0..SIDE {
                // SAFETY: the assertion above keeps tile `kb` of each operand in its slice;
                // row `w` of a right tile is 16 words, row `first + r` of a left tile holds
                // word `w`.
                unsafe {
                    let right = [
                        _mm512_loadu_si512(b[0].as_ptr().add(at + w * SIDE).cast()),
                        _mm512_loadu_si512(b[1].as_ptr().add(at + w * SIDE).cast()),
                    ];
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let left = _mm512_set1_epi32(*tile.get_unchecked(at + (first + r) * SIDE + w) as i32);
                        for (sum, &rv) in sums.iter_mut().zip(&right) {
                            *sum = _mm512_dpbf16_ps(*sum, bh(left), bh(rv));
                        }
                    }
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            let row = (pass * ROWS + r) * 2 * SIDE;
            // SAFETY: row `pass * 8 + r` < 32 of the 32 × 32 block.
            unsafe {
                _mm512_storeu_ps(c.as_mut_ptr().add(row), sums[0]);
                _mm512_storeu_ps(c.as_mut_ptr().add(row + SIDE), sums[1]);
            }
        }
    }
}

/// 16 words as 32 bf16 values.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 64 bytes of plain bits.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}
