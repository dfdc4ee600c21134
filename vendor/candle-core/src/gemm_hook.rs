//! rho1 patch: an f32 GEMM chosen at run time for the CPU matmul.
//!
//! The program that uses candle may register one routine (for example a BLAS
//! library it loaded with `dlopen`); the CPU matmul then calls it for every
//! f32 product instead of the `gemm` crate, and falls back to the `gemm`
//! crate where the routine declines (returns false).

use std::sync::OnceLock;

/// `dst (m, n) = lhs (m, k) @ rhs (k, n)`, overwriting `dst`. `dst` is
/// row-major with rows `dst_rs` apart; each operand is given by a pointer
/// and its (column, row) strides in elements. Returns false, having written
/// nothing, when it cannot take these strides.
pub type F32Gemm = unsafe fn(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_cs: usize,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_cs: usize,
    rhs_rs: usize,
) -> bool;

static HOOK: OnceLock<F32Gemm> = OnceLock::new();

/// Registers the routine; false if one was registered already (the first one stays).
pub fn set_f32_gemm(f: F32Gemm) -> bool {
    HOOK.set(f).is_ok()
}

/// The registered routine, if any.
pub fn f32_gemm() -> Option<F32Gemm> {
    HOOK.get().copied()
}
