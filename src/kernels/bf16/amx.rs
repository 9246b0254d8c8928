//! Intel AMX: the tile product `TDPBF16PS` (16 × 16 f32 sums += 16 × 32 bf16 · 32 × 16 bf16 in
//! one instruction), written in `asm!` because Rust's AMX intrinsics are not stable yet.
//!
//! Linux hands out the tile registers only to a process that asks
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`] asks once, and
//! nothing here runs unless the CPU has the instructions and the request succeeded.

use std::arch::asm;

use super::pack::{SIDE, TILE};

/// Whether the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22) and Linux
/// granted this process the tile registers.
pub(super) fn available() -> bool {
    // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports AVX-512, which the
    // caller checks first; on older ones it returns zeros.
    #[allow(unused_unsafe)]
    let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    let has = leaf.edx & (1 << 24) != 0 && leaf.edx & (1 << 22) != 0;
    has && request_tiles()
}

/// Asks Linux for the tile registers; true when granted.
#[cfg(target_os = "linux")]
fn request_tiles() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this arch_prctl request takes two integers and only changes which register
    // state the kernel saves for this process.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

/// Elsewhere the tile registers are not requested, so never used.
#[cfg(not(target_os = "linux"))]
fn request_tiles() -> bool {
    false
}

/// The 64-byte tile configuration (palette 1): every one of the eight tiles 16 rows of 64
/// bytes. Tiles 0–3 hold a 32 × 32 block of sums, 4–5 two left tiles, 6–7 two right tiles.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        for t in 0..8 {
            // Bytes per row of tile t at 16 + 2t (little-endian u16), rows at 48 + t.
            c[16 + 2 * t] = 64;
            c[48 + t] = SIDE as u8;
        }
        Config(c)
    }
}

/// Tiles configured on the calling thread for [`Tiles::block`]; released when dropped.
pub(super) struct Tiles(());

impl Tiles {
    /// Configures the tiles.
    ///
    /// # Safety
    /// [`available`] must have returned true in this process.
    pub(super) unsafe fn configure() -> Tiles {
        let config = Config::new();
        // SAFETY: the caller has the tiles granted; the configuration is 64 aligned bytes.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        Tiles(())
    }

    /// The 32 × 32 sums (row-major, 32 per row) of one or two left row blocks (`a`) by two
    /// right column blocks (`b`), over `k_blocks` tiles of each, written to `c` (with one left
    /// block, its first 16 rows).
    pub(super) fn block(&self, a: &[&[u32]], b: [&[u32]; 2], k_blocks: usize, c: &mut [f32; 4 * TILE]) {
        assert!(matches!(a.len(), 1 | 2), "amx: one or two left blocks");
        for t in a.iter().chain(&b) {
            assert!(t.len() >= k_blocks * TILE, "amx: an operand holds fewer than {k_blocks} tiles");
        }
        if a.len() == 1 {
            // SAFETY: as for two blocks below, with tiles 0, 1, 4, 6 and 7 only.
            return unsafe { self.half_block(a[0], b, k_blocks, c) };
        }
        let (row, c_row) = (4 * SIDE, 2 * SIDE * 4);
        // SAFETY: the tiles are configured (`self` exists); each load reads 16 rows of 64
        // bytes inside a tile the assertion above keeps in its slice; the stores write 16
        // rows of 64 bytes at 128-byte steps, inside the 4 KiB of `c`.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nomem, nostack));
            for kb in 0..k_blocks {
                let at = kb * TILE;
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    "tileloadd tmm6, [{b0} + {s}*1]",
                    "tileloadd tmm7, [{b1} + {s}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a[0].as_ptr().add(at),
                    a1 = in(reg) a[1].as_ptr().add(at),
                    b0 = in(reg) b[0].as_ptr().add(at),
                    b1 = in(reg) b[1].as_ptr().add(at),
                    s = in(reg) row,
                    options(nostack, readonly),
                );
            }
            let p = c.as_mut_ptr();
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) p,
                c1 = in(reg) p.add(SIDE),
                c2 = in(reg) p.add(SIDE * 2 * SIDE),
                c3 = in(reg) p.add(SIDE * 2 * SIDE + SIDE),
                s = in(reg) c_row,
                options(nostack),
            );
        }
    }
}

impl Tiles {
    /// [`Tiles::block`] with one left block: the first 16 rows of `c`.
    ///
    /// # Safety
    /// `a` and both `b` must hold at least `k_blocks` tiles.
    unsafe fn half_block(&self, a: &[u32], b: [&[u32]; 2], k_blocks: usize, c: &mut [f32; 4 * TILE]) {
        let (row, c_row) = (4 * SIDE, 2 * SIDE * 4);
        // SAFETY: the tiles are configured; the caller keeps every tile read in its slice; the
        // stores write 16 rows of 64 bytes at 128-byte steps, inside the first 2 KiB of `c`.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", options(nomem, nostack));
            for kb in 0..k_blocks {
                let at = kb * TILE;
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm6, [{b0} + {s}*1]",
                    "tileloadd tmm7, [{b1} + {s}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    a0 = in(reg) a.as_ptr().add(at),
                    b0 = in(reg) b[0].as_ptr().add(at),
                    b1 = in(reg) b[1].as_ptr().add(at),
                    s = in(reg) row,
                    options(nostack, readonly),
                );
            }
            let p = c.as_mut_ptr();
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                c0 = in(reg) p,
                c1 = in(reg) p.add(SIDE),
                s = in(reg) c_row,
                options(nostack),
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releasing configured tiles returns them to their initial state.
        unsafe { asm!("tilerelease", options(nomem, nostack)) };
    }
}
