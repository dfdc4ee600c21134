//! Vector width for the kernels' loops. `multiversioned!` compiles a loop
//! for AVX-512 and for AVX2 + FMA besides the baseline and picks at run
//! time; the row reductions here use it: the maximum a softmax subtracts
//! first, dot products, sums of squares. Their plain forms
//! (`fold(f32::max)`, `map().sum()`) compile to one scalar chain per row:
//! `f32::max` keeps NaN semantics and float sums keep their order, so LLVM
//! vectorizes neither.

/// Defines `fn name(args) -> ret { body }` compiled three times (for
/// AVX-512, for AVX2 + FMA and for the baseline) with the CPU choosing at run
/// time: how the element loops of the kernels get vector width in a default
/// build, which targets plain x86-64 (SSE2). The body must be a plain
/// function of its arguments (no `self`).
macro_rules! multiversioned {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn any($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    any($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    any($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            any($($arg),*)
        }
    };
}
pub(crate) use multiversioned;

const LANES: usize = 16;

multiversioned! {
    /// The largest of xs, ignoring NaNs; -inf for an empty slice (as a fold
    /// with `f32::max` from -inf). `x > m ? x : m` is what `maxps` computes,
    /// so the loop vectorizes; a NaN x loses every comparison and is skipped.
    pub fn max(xs: &[f32]) -> f32 {
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
}

multiversioned! {
    /// The sum of a[i] * b[i] over the shorter of the two, in f32, in sixteen
    /// partial sums (so not in the order of a plain loop).
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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
}

multiversioned! {
    /// The sum of x^2 over xs, in f64, in eight partial sums.
    pub fn sum_sq(xs: &[f32]) -> f64 {
        let mut acc = [0f64; 8];
        let chunks = xs.chunks_exact(8);
        let rest: f64 = chunks.remainder().iter().map(|&x| x as f64 * x as f64).sum();
        for c in chunks {
            for (s, &x) in acc.iter_mut().zip(c) {
                *s += x as f64 * x as f64;
            }
        }
        acc.iter().sum::<f64>() + rest
    }
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
    fn sum_of_squares_matches_a_plain_sum() {
        for n in [0usize, 1, 7, 8, 9, 512] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let want: f64 = xs.iter().map(|&x| x as f64 * x as f64).sum();
            assert!((sum_sq(&xs) - want).abs() < 1e-12 * (1.0 + want), "n = {n}");
        }
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
