//! 3 × 3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015): every 2 × 2 output tile comes
//! from a 4 × 4 input tile with 16 multiplications per channel pair where the direct form needs
//! 36. The input tiles and the kernels are transformed into 16 matrices each, multiplied as 16
//! `gemm` products over the channels, and transformed back. [`super::conv`] uses it for the
//! forward pass and both gradients of padded 3 × 3 stride-1 convolutions: the input gradient
//! of such a convolution is itself one, of the output gradient with the kernels turned half a
//! turn and their channels swapped, padded by 2 - pad; the weight gradient is the gradient of
//! the transformed form, 16 `gemm` products over the tiles.

use std::cell::RefCell;

use super::{matmul, matmul_add, with_scratch, Precision};

/// The 16 transformed values of one tile or kernel, in row-major 4 × 4 order.
const T: usize = 16;

/// The sizes of one 3 × 3 stride-1 convolution in Winograd form: `ci` input planes of `h` × `w`
/// with `pad` zeros on every side, `co` output planes of `oh` × `ow`, covered by `th` × `tw`
/// tiles of 2 × 2 outputs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Winograd {
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    th: usize,
    tw: usize,
}

/// Planes of a batch in one slice: plane (image `i`, channel `c`) starts at
/// `i * image + c * channel`, its rows contiguous.
#[derive(Clone, Copy)]
pub(super) struct Planes {
    pub image: usize,
    pub channel: usize,
}

impl Winograd {
    /// The convolution of `ci` planes of `h` × `w` into `co` planes with `pad` zeros on every
    /// side, or None when the kernel does not fit or the padding reaches past it (`pad` > 2).
    pub(super) fn new(ci: usize, co: usize, h: usize, w: usize, pad: usize) -> Option<Self> {
        let (oh, ow) = ((h + 2 * pad).checked_sub(2)?, (w + 2 * pad).checked_sub(2)?);
        (pad <= 2 && oh >= 1 && ow >= 1 && ci > 0 && co > 0).then_some(Self {
            ci,
            co,
            h,
            w,
            pad,
            oh,
            ow,
            th: oh.div_ceil(2),
            tw: ow.div_ceil(2),
        })
    }

    /// The transformed kernels `G g Gᵀ`, 16 matrices of `co` × `ci` (row stride `ci`), from
    /// `kernel(o, c)`, the 3 × 3 kernel from input plane `c` to output plane `o`.
    pub(super) fn kernels(&self, kernel: impl Fn(usize, usize) -> [f32; 9]) -> Vec<f32> {
        let mut u = vec![0f32; T * self.co * self.ci];
        for o in 0..self.co {
            for c in 0..self.ci {
                let g = kernel(o, c);
                // Gg: 4 × 3, G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
                let mut gg = [[0f32; 3]; 4];
                for j in 0..3 {
                    let (a, b, d) = (g[j], g[3 + j], g[6 + j]);
                    gg[0][j] = a;
                    gg[1][j] = 0.5 * (a + b + d);
                    gg[2][j] = 0.5 * (a - b + d);
                    gg[3][j] = d;
                }
                for (i, row) in gg.iter().enumerate() {
                    let [a, b, d] = *row;
                    let v = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                    for (j, &v) in v.iter().enumerate() {
                        u[((4 * i + j) * self.co + o) * self.ci + c] = v;
                    }
                }
            }
        }
        u
    }

    /// The kernels of a convolution `w` (`O` × `C` × 3 × 3, row-major) in this form.
    pub(super) fn forward_kernels(&self, w: &[f32]) -> Vec<f32> {
        self.kernels(|o, c| std::array::from_fn(|k| w[(o * self.ci + c) * 9 + k]))
    }

    /// The kernels of the input gradient of a convolution `w` (`O` × `C` × 3 × 3): from
    /// output-gradient plane `o` (here an input) to input plane `c` (here an output), the
    /// kernel `w[o][c]` turned half a turn.
    pub(super) fn gradient_kernels(&self, w: &[f32]) -> Vec<f32> {
        // Here `ci` is the convolution's O and `co` its C.
        self.kernels(|c, o| std::array::from_fn(|k| w[(o * self.co + c) * 9 + 8 - k]))
    }

    /// Scratch values one plane's transforms use: the four quarter planes of
    /// [`Winograd::input_plane`] and its eight rows of row transforms.
    fn work_len(&self) -> usize {
        4 * (self.th + 2) * (self.tw + 1) + 8 * (self.th + 1) * (self.tw + 1)
    }

    /// Tile positions per image in the transformed matrices: `th` rows of `tw + 1`, the last
    /// of each row a spare that keeps every transform a contiguous vector loop (its products
    /// are computed and never read).
    fn slots(&self) -> usize {
        self.th * (self.tw + 1)
    }

    /// Tile columns of the transformed matrices of `nb` images: their slots, rounded up so
    /// that gemm's vector rows need no packing.
    fn ld(&self, nb: usize) -> usize {
        (nb * self.slots()).next_multiple_of(16)
    }

    /// Output planes (`oh` × `ow`) of `nb` images into `out` (laid out as `out_at`, every value
    /// overwritten) from the input planes (`h` × `w`) in `inp` (laid out as `in_at`), with the
    /// kernels `u` of [`Winograd::kernels`], its products in `precision`.
    pub(super) fn run(
        &self,
        precision: Precision,
        nb: usize,
        u: &[f32],
        (inp, in_at): (&[f32], Planes),
        (out, out_at): (&mut [f32], Planes),
    ) {
        let ld = self.ld(nb);
        let work = self.work_len();
        with_scratch(&SCRATCH, T * self.ci * ld, T * self.co * ld + work, |v, rest| {
            let (m, work) = rest.split_at_mut(T * self.co * ld);
            self.transform(nb, Pass::Inputs { planes: inp, at: in_at, v }, work);
            for xi in 0..T {
                // M_ξ (tiles × co, column-major) = V_ξ (tiles × ci) · U_ξᵀ (ci × co).
                matmul(
                    precision,
                    (ld, self.co, self.ci),
                    (&mut m[xi * self.co * ld..][..self.co * ld], 1, ld),
                    (&v[xi * self.ci * ld..][..self.ci * ld], 1, ld),
                    (&u[xi * self.co * self.ci..][..self.co * self.ci], 1, self.ci),
                );
            }
            self.transform(nb, Pass::Outputs { m, planes: out, at: out_at }, work);
        });
    }

    /// Values of [`Winograd::weight_products`]' sums: 16 matrices of `co` × `ci`.
    pub(super) fn products_len(&self) -> usize {
        T * self.co * self.ci
    }

    /// The transformed weight gradient of `nb` images, added to `du` (16 matrices of `co` ×
    /// `ci`, column-major, [`Winograd::products_len`] values), from the input planes in `inp`
    /// (`h` × `w`, laid out as `in_at`) and the output gradient planes in `dy` (`oh` × `ow`,
    /// laid out as `dy_at`), its products in `precision`; [`Winograd::weight_gradient`] turns
    /// the sum into the gradient.
    ///
    /// The forward pass is `y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` tile by tile, so the gradient of the
    /// kernel `g` is `Gᵀ [Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ d B)] G`: the sum over tiles is 16 `gemm`
    /// products over the tiles, of the transformed output gradient and the transformed input.
    pub(super) fn weight_products(
        &self,
        precision: Precision,
        nb: usize,
        (inp, in_at): (&[f32], Planes),
        (dy, dy_at): (&[f32], Planes),
        du: &mut [f32],
    ) {
        let (slots, ld) = (self.slots(), self.ld(nb));
        let work = self.work_len();
        with_scratch(&SCRATCH, T * self.ci * ld, T * self.co * ld + work, |v, rest| {
            let (g, work) = rest.split_at_mut(T * self.co * ld);
            // The slots past the last image (the rounding of ld) must add nothing.
            for buf in [&mut *g, &mut *v] {
                buf.chunks_exact_mut(ld).for_each(|row| row[nb * slots..].fill(0.0));
            }
            self.transform(nb, Pass::Inputs { planes: inp, at: in_at, v: &mut *v }, work);
            self.transform(nb, Pass::Gradients { planes: dy, at: dy_at, g: &mut *g }, work);
            for xi in 0..T {
                // dU_ξ (co × ci, column-major) += DY_ξ (co × tiles) · V_ξᵀ (tiles × ci).
                matmul_add(
                    precision,
                    (self.co, self.ci, ld),
                    (&mut du[xi * self.co * self.ci..][..self.co * self.ci], 1, self.co),
                    (&g[xi * self.co * ld..][..self.co * ld], ld, 1),
                    (&v[xi * self.ci * ld..][..self.ci * ld], 1, ld),
                );
            }
        });
    }

    /// The weight gradient from the sums `du` of [`Winograd::weight_products`]: `Gᵀ dU G`
    /// for every kernel, transposed (`(c · 9 + k) · co + o`).
    pub(super) fn weight_gradient(&self, du: &[f32]) -> Vec<f32> {
        // Gᵀ = [1 ½ ½ 0; 0 ½ -½ 0; 0 ½ ½ 1].
        let gt = |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
        let mut dw = vec![0f32; 9 * self.ci * self.co];
        for c in 0..self.ci {
            for o in 0..self.co {
                let u = |xi: usize| du[(xi * self.ci + c) * self.co + o];
                // Gᵀ dU: 3 × 4, column by column; then each of its rows times G.
                let cols: [[f32; 3]; 4] = std::array::from_fn(|j| gt(u(j), u(4 + j), u(8 + j), u(12 + j)));
                for r in 0..3 {
                    let k = gt(cols[0][r], cols[1][r], cols[2][r], cols[3][r]);
                    for (kx, &val) in k.iter().enumerate() {
                        dw[(c * 9 + 3 * r + kx) * self.co + o] = val;
                    }
                }
            }
        }
        dw
    }

    /// Runs one pass of transforms over the planes of a chunk of `nb` images, compiled for AVX2 where the CPU has
    /// it (the loops are plain slice arithmetic that the compiler vectorizes, four lanes wide
    /// in baseline x86-64, eight with AVX2); `work` is scratch of [`Winograd::work_len`].
    fn transform(&self, nb: usize, pass: Pass<'_>, work: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.transform_avx2(nb, pass, work) };
        }
        self.transform_loops(nb, pass, work);
    }

    /// [`Winograd::transform_loops`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn transform_avx2(&self, nb: usize, pass: Pass<'_>, work: &mut [f32]) {
        self.transform_loops(nb, pass, work);
    }

    /// The loops of [`Winograd::transform`], inlined into each of its instruction-set versions.
    #[inline(always)]
    fn transform_loops(&self, nb: usize, pass: Pass<'_>, work: &mut [f32]) {
        let (slots, ld) = (self.slots(), self.ld(nb));
        match pass {
            Pass::Inputs { planes, at, v } => {
                for i in 0..nb {
                    for c in 0..self.ci {
                        let plane = &planes[i * at.image + c * at.channel..][..self.h * self.w];
                        self.input_plane(plane, work, v, c * ld + i * slots, self.ci * ld);
                    }
                }
            }
            Pass::Gradients { planes, at, g } => {
                for i in 0..nb {
                    for o in 0..self.co {
                        let plane = &planes[i * at.image + o * at.channel..][..self.oh * self.ow];
                        self.gradient_plane(plane, work, g, o * ld + i * slots, self.co * ld);
                    }
                }
            }
            Pass::Outputs { m, planes, at } => {
                for i in 0..nb {
                    for o in 0..self.co {
                        let plane = &mut planes[i * at.image + o * at.channel..][..self.oh * self.ow];
                        let vals = std::array::from_fn(|xi| &m[(xi * self.co + o) * ld + i * slots..][..slots]);
                        self.output_plane(vals, plane, work);
                    }
                }
            }
        }
    }

    /// Writes the 16 transformed values `A dy Aᵀ` of every 2 × 2 tile of one output-gradient
    /// plane (zero past the plane's edge and in the spare slots), value ξ of the tiles to
    /// `g[at + ξ · stride..][..slots]`; `work` is scratch.
    #[inline(always)]
    fn gradient_plane(&self, plane: &[f32], work: &mut [f32], g: &mut [f32], at: usize, stride: usize) {
        let (wq, slots) = (self.tw + 1, self.slots());
        let (corners, _) = work[..4 * slots].split_at_mut(4 * slots);
        corners.fill(0.0);
        // The tile's four values, a b / c d, each over all slots.
        for (oy, row) in plane.chunks_exact(self.ow).enumerate() {
            let at = 2 * (oy % 2) * slots + (oy / 2) * wq;
            let (left, right) = corners[at..].split_at_mut(slots);
            split_parity(row, 0, &mut left[..wq], &mut right[..wq]);
        }
        let corners = &*corners;
        let (a, b, c, d) =
            (&corners[..slots], &corners[slots..2 * slots], &corners[2 * slots..3 * slots], &corners[3 * slots..]);
        // A = [1 0; 1 1; 1 -1; 0 -1]: the rows of A dy are [a b], [a+c b+d], [a-c b-d], [-c -d],
        // and each row [p q] times Aᵀ gives [p, p+q, p-q, -q].
        for i in 0..4 {
            let (sa, sc) = match i {
                0 => (1.0, 0.0),
                1 => (1.0, 1.0),
                2 => (1.0, -1.0),
                _ => (0.0, -1.0),
            };
            let dst = |j: usize| at + (4 * i + j) * stride..at + (4 * i + j) * stride + slots;
            g[dst(0)].iter_mut().zip(a).zip(c).for_each(|((v, &a), &c)| *v = sa * a + sc * c);
            g[dst(3)].iter_mut().zip(b).zip(d).for_each(|((v, &b), &d)| *v = -(sa * b + sc * d));
            g[dst(1)]
                .iter_mut()
                .zip(a)
                .zip(b)
                .zip(c.iter().zip(d))
                .for_each(|(((v, &a), &b), (&c, &d))| *v = sa * (a + b) + sc * (c + d));
            g[dst(2)]
                .iter_mut()
                .zip(a)
                .zip(b)
                .zip(c.iter().zip(d))
                .for_each(|(((v, &a), &b), (&c, &d))| *v = sa * (a - b) + sc * (c - d));
        }
    }

    /// Writes the 16 transformed values `Bᵀ d B` of every tile of one input plane, value ξ of
    /// the tiles to `v[at + ξ · stride..][..slots]`; `work` is scratch.
    ///
    /// The padded plane is first split by the parity of its rows and columns into four
    /// quarter planes q[a][b] of (th + 2) × (tw + 1): value (r, s) of the tile at slot t then
    /// sits at q[r % 2][s % 2][t + (r / 2)(tw + 1) + s / 2], so each step of the transform is
    /// one loop over all slots of contiguous, shifted views.
    #[inline(always)]
    fn input_plane(&self, plane: &[f32], work: &mut [f32], v: &mut [f32], at: usize, stride: usize) {
        let (wq, slots) = (self.tw + 1, self.slots());
        let quarter = (self.th + 2) * wq;
        let (q, rest) = work.split_at_mut(4 * quarter);
        q.fill(0.0);
        for (iy, row) in plane.chunks_exact(self.w).enumerate() {
            let y = iy + self.pad;
            let base = (y % 2) * 2 * quarter + (y / 2) * wq;
            let (even, odd) = q[base..].split_at_mut(quarter);
            split_parity(row, self.pad, &mut even[..wq], &mut odd[..wq]);
        }
        let q = &*q;
        let view = |a: usize, b: usize, shift: usize, len: usize| &q[(2 * a + b) * quarter + shift..][..len];
        // d B along the rows of the tiles, for tile rows r = 0 and 1 (rows 2 and 3 are these
        // shifted by one tile row): B's columns are [d0 - d2, d1 + d2, d2 - d1, d1 - d3].
        let long = (self.th + 1) * wq;
        let (t, _) = rest.split_at_mut(8 * long);
        for r in 0..2 {
            let (d0, d1, d2, d3) = (view(r, 0, 0, long), view(r, 1, 0, long), view(r, 0, 1, long), view(r, 1, 1, long));
            let out = &mut t[4 * r * long..][..4 * long];
            let (t0, out) = out.split_at_mut(long);
            let (t1, out) = out.split_at_mut(long);
            let (t2, t3) = out.split_at_mut(long);
            for k in 0..long {
                t0[k] = d0[k] - d2[k];
                t1[k] = d1[k] + d2[k];
                t2[k] = d2[k] - d1[k];
                t3[k] = d1[k] - d3[k];
            }
        }
        // Bᵀ down the rows: row r of the tile is t[r % 2] shifted by (r / 2) tile rows.
        let t = &*t;
        for j in 0..4 {
            let (r0, r1) = (&t[j * long..][..long], &t[(4 + j) * long..][..long]);
            let (a0, a1, a2, a3) = (&r0[..slots], &r1[..slots], &r0[wq..][..slots], &r1[wq..][..slots]);
            let dst = |xi: usize| at + xi * stride..at + xi * stride + slots;
            v[dst(j)].iter_mut().zip(a0).zip(a2).for_each(|((v, a0), a2)| *v = a0 - a2);
            v[dst(4 + j)].iter_mut().zip(a1).zip(a2).for_each(|((v, a1), a2)| *v = a1 + a2);
            v[dst(8 + j)].iter_mut().zip(a1).zip(a2).for_each(|((v, a1), a2)| *v = a2 - a1);
            v[dst(12 + j)].iter_mut().zip(a1).zip(a3).for_each(|((v, a1), a3)| *v = a1 - a3);
        }
    }

    /// Writes the 2 × 2 outputs `Aᵀ m A` of every tile into one output plane, from `m`, the 16
    /// product values over the plane's tile slots; `work` is scratch.
    #[inline(always)]
    fn output_plane(&self, m: [&[f32]; T], plane: &mut [f32], work: &mut [f32]) {
        let (wq, slots) = (self.tw + 1, self.slots());
        // Aᵀ = [1 1 1 0; 0 1 -1 -1]: down the rows first (s0 = m0 + m1 + m2, s1 = m1 - m2 - m3
        // for each column j), then along them.
        let (s, y) = work[..12 * slots].split_at_mut(8 * slots);
        for j in 0..4 {
            let (s0, s1) = s[2 * j * slots..][..2 * slots].split_at_mut(slots);
            let (m0, m1, m2, m3) = (m[j], m[4 + j], m[8 + j], m[12 + j]);
            for k in 0..slots {
                s0[k] = m0[k] + m1[k] + m2[k];
                s1[k] = m1[k] - m2[k] - m3[k];
            }
        }
        let s = &*s;
        for half in 0..2 {
            let col = |j: usize| &s[(2 * j + half) * slots..][..slots];
            let (a0, a1, a2, a3) = (col(0), col(1), col(2), col(3));
            let (left, right) = y[..4 * slots].split_at_mut(slots);
            let right = &mut right[..slots];
            for k in 0..slots {
                left[k] = a0[k] + a1[k] + a2[k];
                right[k] = a1[k] - a2[k] - a3[k];
            }
            for ty in 0..self.th {
                let oy = 2 * ty + half;
                if oy >= self.oh {
                    break;
                }
                let out = &mut plane[oy * self.ow..][..self.ow];
                let (l, r) = (&left[ty * wq..][..self.tw], &right[ty * wq..][..self.tw]);
                merge_parity(l, r, out);
            }
        }
    }
}

/// Splits `row` by the parity of its columns once shifted right by `pad`: value `ix` goes to
/// `even[(ix + pad) / 2]` where `ix + pad` is even, else to `odd[(ix + pad) / 2]`.
#[inline(always)]
fn split_parity(row: &[f32], pad: usize, even: &mut [f32], odd: &mut [f32]) {
    // Pairs (row[2k], row[2k + 1]) land at k + pad / 2 in the parity of 2k + pad and at
    // k + (pad + 1) / 2 in the other one.
    let (first, second) = if pad.is_multiple_of(2) { (even, odd) } else { (odd, even) };
    let pairs = row.len() / 2;
    let (a, b) = (&mut first[pad / 2..][..pairs + row.len() % 2], &mut second[pad.div_ceil(2)..][..pairs]);
    // Four pairs at a time (fixed-size blocks the compiler turns into shuffles), then the rest.
    let blocks = pairs / 4;
    for ((a, b), p) in a.chunks_exact_mut(4).zip(b.chunks_exact_mut(4)).zip(row.chunks_exact(8)) {
        a.copy_from_slice(&[p[0], p[2], p[4], p[6]]);
        b.copy_from_slice(&[p[1], p[3], p[5], p[7]]);
    }
    for k in 4 * blocks..pairs {
        a[k] = row[2 * k];
        b[k] = row[2 * k + 1];
    }
    if row.len() % 2 == 1 {
        a[pairs] = row[2 * pairs];
    }
}

/// Interleaves `even` and `odd` into `row`: `row[2k] = even[k]`, `row[2k + 1] = odd[k]`
/// (`even` has one value more where `row`'s length is odd).
#[inline(always)]
fn merge_parity(even: &[f32], odd: &[f32], row: &mut [f32]) {
    let pairs = row.len() / 2;
    let blocks = pairs / 4;
    for ((p, a), b) in row.chunks_exact_mut(8).zip(even.chunks_exact(4)).zip(odd.chunks_exact(4)) {
        p.copy_from_slice(&[a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3]]);
    }
    for k in 4 * blocks..pairs {
        row[2 * k] = even[k];
        row[2 * k + 1] = odd[k];
    }
    if row.len() % 2 == 1 {
        row[2 * pairs] = even[pairs];
    }
}

/// One pass of transforms over the planes of a chunk of images, each value ξ of a plane's tiles
/// written to (or read from) row ξ · channels + channel of matrices with row stride
/// [`Winograd::ld`].
enum Pass<'a> {
    /// `Bᵀ d B` of the input planes in `planes` (laid out as `at`) into `v`.
    Inputs { planes: &'a [f32], at: Planes, v: &'a mut [f32] },
    /// `A dy Aᵀ` of the output-gradient planes in `planes` (laid out as `at`) into `g`.
    Gradients { planes: &'a [f32], at: Planes, g: &'a mut [f32] },
    /// `Aᵀ m A` of the products `m` into the output planes in `planes` (laid out as `at`).
    Outputs { m: &'a [f32], planes: &'a mut [f32], at: Planes },
}

thread_local! {
    /// Per-thread scratch: the transformed tiles and the products (and a row buffer), kept
    /// between calls.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value (`y`, `x`) of input plane `c` of image `i` once padded by `g.pad` zeros on every side.
    fn input(planes: &[f32], g: &Winograd, i: usize, c: usize, y: usize, x: usize) -> f32 {
        let (iy, ix) = (y.checked_sub(g.pad).filter(|&v| v < g.h), x.checked_sub(g.pad).filter(|&v| v < g.w));
        iy.zip(ix).map_or(0.0, |(iy, ix)| planes[((i * g.ci + c) * g.h + iy) * g.w + ix])
    }

    /// The direct 3 × 3 convolution of `n` images, for checking.
    fn direct(x: &[f32], k: &[f32], n: usize, g: &Winograd) -> Vec<f32> {
        let Winograd { ci, co, oh, ow, .. } = *g;
        let mut y = vec![0f32; n * co * oh * ow];
        for i in 0..n {
            for o in 0..co {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0f64;
                        for c in 0..ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    s += (input(x, g, i, c, oy + ky, ox + kx) * k[((o * ci + c) * 3 + ky) * 3 + kx])
                                        as f64;
                                }
                            }
                        }
                        y[((i * co + o) * oh + oy) * ow + ox] = s as f32;
                    }
                }
            }
        }
        y
    }

    fn pseudo(len: usize, seed: u64) -> Vec<f32> {
        (0..len).map(|i| ((super::super::mix64(seed ^ i as u64) >> 40) as f32 / (1u64 << 24) as f32) - 0.5).collect()
    }

    #[test]
    fn splits_and_merges_rows_by_parity() {
        for len in 0..20 {
            let row: Vec<f32> = (0..len).map(|v| v as f32).collect();
            for pad in 0..4 {
                let (mut even, mut odd) = (vec![-1f32; 16], vec![-1f32; 16]);
                split_parity(&row, pad, &mut even, &mut odd);
                for (ix, &v) in row.iter().enumerate() {
                    let x = ix + pad;
                    let got = if x % 2 == 0 { even[x / 2] } else { odd[x / 2] };
                    assert_eq!(got, v, "length {len}, pad {pad}, column {ix}");
                }
                let written = even.iter().chain(&odd).filter(|&&v| v >= 0.0).count();
                assert_eq!(written, len, "length {len}, pad {pad}: only the row's values are written");
            }
            let (even, odd): (Vec<f32>, Vec<f32>) = (
                (0..len.div_ceil(2)).map(|k| (2 * k) as f32).collect(),
                (0..len / 2).map(|k| (2 * k + 1) as f32).collect(),
            );
            let mut merged = vec![-1f32; len];
            merge_parity(&even, &odd, &mut merged);
            assert_eq!(merged, row, "length {len}");
        }
    }

    /// Shapes with odd and even planes and every padding the form takes.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 6] = [
        (1, 1, 1, 4, 4, 0),
        (1, 2, 1, 3, 3, 0),
        (2, 3, 5, 7, 9, 1),
        (3, 8, 4, 28, 28, 1),
        (1, 16, 3, 5, 6, 0),
        (2, 4, 6, 6, 5, 2),
    ];

    /// Fills this thread's scratch with NaN, so that a value the transforms read before writing
    /// shows in their results.
    fn poison_scratch() {
        SCRATCH.with(|cell| cell.borrow_mut().iter_mut().for_each(|buf| *buf = vec![f32::NAN; 1 << 20]));
    }

    #[test]
    fn weight_gradient_matches_the_direct_sum() {
        for &(n, ci, co, h, w, pad) in &SHAPES {
            let g = Winograd::new(ci, co, h, w, pad).unwrap();
            let (x, dy) = (pseudo(n * ci * h * w, 3), pseudo(n * co * g.oh * g.ow, 4));
            poison_scratch();
            let mut du = vec![0f32; g.products_len()];
            let p = g.oh * g.ow;
            let (x_at, dy_at) = (Planes { image: ci * h * w, channel: h * w }, Planes { image: co * p, channel: p });
            g.weight_products(Precision::F32, n, (&x, x_at), (&dy, dy_at), &mut du);
            let dw = g.weight_gradient(&du);
            for o in 0..co {
                for c in 0..ci {
                    for k in 0..9 {
                        let (ky, kx) = (k / 3, k % 3);
                        let mut want = 0f64;
                        for i in 0..n {
                            for oy in 0..g.oh {
                                for ox in 0..g.ow {
                                    want += (dy[((i * co + o) * g.oh + oy) * g.ow + ox]
                                        * input(&x, &g, i, c, oy + ky, ox + kx))
                                        as f64;
                                }
                            }
                        }
                        let got = dw[(c * 9 + k) * co + o];
                        let want = want as f32;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{n} {ci} {co} {h}x{w} pad {pad}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_direct_convolution() {
        for &(n, ci, co, h, w, pad) in &SHAPES {
            let g = Winograd::new(ci, co, h, w, pad).unwrap();
            poison_scratch();
            let x = pseudo(n * ci * h * w, 1);
            let k = pseudo(co * ci * 9, 2);
            let mut y = vec![f32::NAN; n * co * g.oh * g.ow];
            let u = g.forward_kernels(&k);
            let p = g.oh * g.ow;
            let (in_at, out_at) = (Planes { image: ci * h * w, channel: h * w }, Planes { image: co * p, channel: p });
            g.run(Precision::F32, n, &u, (&x, in_at), (&mut y, out_at));
            let want = direct(&x, &k, n, &g);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{n} {ci} {co} {h}x{w} pad {pad}: {a} vs {b}");
            }
        }
    }
}
