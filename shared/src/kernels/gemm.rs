//! The f32 GEMM our own CPU kernels call (the fused LM head + loss): the
//! same routine candle's matmul uses in this process. By default that is the
//! pure-Rust `gemm` crate (AVX-512 kernels where the CPU has them); MKL's
//! `sgemm` where [`crate::kernels::blas`] loaded it at run time or the `mkl`
//! cargo feature linked it in, as candle's matmul then is too.

/// The library behind [`sgemm`] and candle's matmul in this process.
pub fn backend() -> String {
    crate::kernels::blas::describe()
}

/// dst (m, n) = a (m, k) @ b (k, n) [+ dst], each operand given as (slice,
/// row stride, column stride); dst is row-major and dense. Every thread
/// candle computes with.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    let ((a, a_rs, a_cs), (b, b_rs, b_cs)) = (a, b);
    assert!(dst.len() >= m * n && (m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs));
    assert!(n == 0 || k == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    if m == 0 || n == 0 {
        return;
    }
    if let Some(f) = mkl_sgemm() {
        // SAFETY: the asserts above keep every index the strides reach in bounds.
        let done = unsafe {
            crate::kernels::blas::call(
                f,
                (m, n, k),
                (dst.as_mut_ptr(), n),
                accumulate,
                (a.as_ptr(), a_rs, a_cs),
                (b.as_ptr(), b_rs, b_cs),
            )
        };
        if done {
            return;
        }
    }
    let threads = candle_core::utils::get_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm_crate(
        (m, n, k),
        (dst, n),
        accumulate,
        (a, a_rs, a_cs),
        (b, b_rs, b_cs),
        par,
    )
}

/// [`sgemm`] on the calling thread only, always with the `gemm` crate (never
/// MKL, whose OpenMP threads would nest inside ours): for callers that are
/// themselves one task among many (attention's heads). dst is row-major with
/// rows `dst.1` apart (at least n), so a block of a larger matrix can be the
/// destination.
pub fn sgemm_serial(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
) {
    assert!(m == 0 || (dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n));
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(n == 0 || k == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    if m == 0 || n == 0 {
        return;
    }
    let par = gemm::Parallelism::None;
    gemm_crate(
        (m, n, k),
        (dst, dst_rs),
        accumulate,
        (a, a_rs, a_cs),
        (b, b_rs, b_cs),
        par,
    )
}

/// The `gemm` crate's call; the callers have checked the bounds.
fn gemm_crate(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    par: gemm::Parallelism,
) {
    // SAFETY: the callers' asserts keep every index the strides reach in bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// MKL's `sgemm_`: linked in with the `mkl` feature, else loaded at run
/// time if [`crate::kernels::blas`] chose it.
fn mkl_sgemm() -> Option<crate::kernels::blas::Sgemm> {
    #[cfg(feature = "mkl")]
    {
        extern "C" {
            // Fortran BLAS, column-major; linked by candle's `mkl` feature.
            fn sgemm_(
                transa: *const std::ffi::c_char,
                transb: *const std::ffi::c_char,
                m: *const std::ffi::c_int,
                n: *const std::ffi::c_int,
                k: *const std::ffi::c_int,
                alpha: *const f32,
                a: *const f32,
                lda: *const std::ffi::c_int,
                b: *const f32,
                ldb: *const std::ffi::c_int,
                beta: *const f32,
                c: *mut f32,
                ldc: *const std::ffi::c_int,
            );
        }
        Some(sgemm_)
    }
    #[cfg(not(feature = "mkl"))]
    crate::kernels::blas::loaded_sgemm()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: (&[f32], usize, usize),
        b: (&[f32], usize, usize),
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| a.0[i * a.1 + p * a.2] * b.0[p * b.1 + j * b.2])
                    .sum();
            }
        }
        out
    }

    /// Every stride layout the kernels use, plain and accumulating, against
    /// a naive product (the same test covers the MKL path where it is chosen).
    #[test]
    fn sgemm_matches_a_naive_product_for_every_layout() {
        crate::kernels::blas::init().unwrap(); // MKL where installed (see blas.rs)
        let (m, n, k) = (37, 29, 53);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 97) as f32 / 48.0 - 1.0)
            .collect();
        for (a_rs, a_cs) in [(k, 1), (1, m)] {
            for (b_rs, b_cs) in [(n, 1), (1, k)] {
                let want = naive(m, n, k, (&a, a_rs, a_cs), (&b, b_rs, b_cs));
                let mut got = vec![0f32; m * n];
                sgemm(
                    (m, n, k),
                    &mut got,
                    false,
                    (&a, a_rs, a_cs),
                    (&b, b_rs, b_cs),
                );
                let mut twice = got.clone();
                sgemm(
                    (m, n, k),
                    &mut twice,
                    true,
                    (&a, a_rs, a_cs),
                    (&b, b_rs, b_cs),
                );
                for ((g, t), w) in got.iter().zip(&twice).zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4,
                        "{a_rs},{a_cs} x {b_rs},{b_cs}: {g} vs {w}"
                    );
                    assert!((t - 2.0 * w).abs() < 2e-4, "accumulate: {t} vs {}", 2.0 * w);
                }
            }
        }
    }
}
