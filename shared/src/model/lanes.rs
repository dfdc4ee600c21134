//! Row reductions of the fused kernels in sixteen lanes: the maximum a
//! softmax subtracts first and the dot product of attention's backward. Their
//! plain forms (`fold(f32::max)`, `zip().map().sum()`) compile to one scalar
//! chain per row: `f32::max` keeps NaN semantics and float sums keep their
//! order, so LLVM vectorizes neither. Like `exp`, each is compiled for
//! AVX-512 and for AVX2 + FMA besides the baseline, and the CPU picks at run
//! time.

const LANES: usize = 16;

/// The largest of xs, ignoring NaNs; -inf for an empty slice (as a fold with
/// `f32::max` from -inf).
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { x86::max_avx512(xs) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::max_avx2(xs) };
        }
    }
    max_any(xs)
}

/// The sum of a[i] * b[i] over the shorter of the two, in f32, summed in
/// sixteen partial sums (so not in the order of a plain loop).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { x86::dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { x86::dot_avx2(a, b) };
        }
    }
    dot_any(a, b)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_avx512(xs: &[f32]) -> f32 {
        super::max_any(xs)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_avx2(xs: &[f32]) -> f32 {
        super::max_any(xs)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::dot_any(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_any(a, b)
    }
}

/// `x > m ? x : m` is what `maxps` computes, so this loop vectorizes; a NaN
/// x loses every comparison and is skipped.
#[inline(always)]
fn max_any(xs: &[f32]) -> f32 {
    let pick = |m: f32, x: f32| if x > m { x } else { m };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in acc.iter_mut().zip(c) {
            *m = pick(*m, x);
        }
    }
    acc.into_iter()
        .chain(rest.iter().copied())
        .fold(f32::NEG_INFINITY, pick)
}

#[inline(always)]
fn dot_any(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s = x.mul_add(y, *s);
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_matches_a_fold_and_skips_nans() {
        for n in [0usize, 1, 15, 16, 17, 100, 8192] {
            let mut xs: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1009) as f32 - 600.0).collect();
            if n > 3 {
                xs[3] = f32::NAN;
            }
            let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), want, "n = {n}");
        }
        assert_eq!(max(&[f32::NEG_INFINITY, -1e30]), -1e30);
        assert_eq!(max(&[f32::NAN]), f32::NEG_INFINITY);
    }

    #[test]
    fn dot_matches_an_f64_sum() {
        for n in [0usize, 1, 15, 16, 17, 257] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..n + 3)
                .map(|i| ((i * 53) % 97) as f32 / 40.0 - 1.2)
                .collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(
                (dot(&a, &b) as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                "n = {n}"
            );
        }
    }
}
