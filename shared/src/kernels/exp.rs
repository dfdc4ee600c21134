//! e^x in f32 for the hot loops of the fused kernels (softmax, cross-entropy,
//! SwiGLU). libm's `expf` is a scalar call per element (5-7% of a scoring
//! pass in `perf`); this one is branch-free arithmetic that LLVM vectorizes
//! when it is mapped over a slice. Cephes' `expf` polynomial: x = n ln2 + r,
//! |r| <= ln2 / 2, e^r by a degree-7 polynomial, 2^n from the exponent bits.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n * LN2_HI is exact for the n that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5 * 2^23: adding it rounds to the nearest integer, in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// Below this e^x is under f32's smallest normal: returned as 0.
const MIN_X: f32 = -87.336_55;
/// Above this e^x overflows f32: returned as +inf.
const MAX_X: f32 = 88.722_83;

/// e^x, within 2 ulp of the correctly rounded value for x in [-87.3, 88.7];
/// 0 below (and for -inf), +inf above (and for +inf), NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_X, MAX_X);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND; // nearest integer to x log2(e)
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let er = p * r * r + r + 1.0;
    // 2^n: n + 127 in the exponent field (n is in [-126, 128] here; n = 128
    // only at the top of the range, where er < 1 keeps the product finite
    // after the split below).
    let ni = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let half = ni >> 1;
    let a = f32::from_bits(((half + 127) << 23) as u32);
    let b = f32::from_bits(((ni - half + 127) << 23) as u32);
    let y = er * a * b;
    let y = if x < MIN_X { 0.0 } else { y };
    let y = if x > MAX_X { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

use crate::kernels::lanes::multiversioned;

const LANES: usize = 8;

multiversioned! {
    /// The sum of e^(x - shift) over xs, in f64: eight partial sums, so that
    /// the loop vectorizes (one running sum is a chain of dependent f64 adds).
    pub fn sum_exp(xs: &[f32], shift: f32) -> f64 {
        let mut acc = [0f64; LANES];
        let chunks = xs.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += exp(x - shift) as f64;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|&x| exp(x - shift) as f64).sum::<f64>()
    }
}

multiversioned! {
    /// xs[i] = e^(xs[i] - shift), and the sum of the results (as [`sum_exp`]).
    pub fn exp_in_place(xs: &mut [f32], shift: f32) -> f64 {
        xs.iter_mut().for_each(|x| *x = exp(*x - shift));
        let mut acc = [0f64; LANES];
        let chunks = xs.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += x as f64;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|&x| x as f64).sum::<f64>()
    }
}

multiversioned! {
    /// xs[i] = scale * e^(xs[i] - shift): a softmax row times a gradient.
    pub fn scaled_exp_in_place(xs: &mut [f32], shift: f32, scale: f32) {
        xs.iter_mut().for_each(|x| *x = scale * exp(*x - shift));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64_exp_and_handles_the_edges() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() * f32::EPSILON; // one ulp at that magnitude
            worst = worst.max((got - want).abs() / ulp as f64);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(88.7).is_finite() && exp(88.7) > 3.0e38);
    }

    #[test]
    fn sums_of_exponentials_match_a_plain_f64_sum() {
        let xs: Vec<f32> = (0..1003)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 9.0)
            .collect();
        let want: f64 = xs.iter().map(|&x| ((x - 2.5) as f64).exp()).sum();
        assert!((sum_exp(&xs, 2.5) - want).abs() < 1e-6 * want);
        let mut ys = xs.clone();
        assert!((exp_in_place(&mut ys, 2.5) - want).abs() < 1e-6 * want);
        assert!((ys[10] as f64 - ((xs[10] - 2.5) as f64).exp()).abs() < 1e-6);
        let mut zs = xs.clone();
        scaled_exp_in_place(&mut zs, 2.5, -3.0);
        for (z, y) in zs.iter().zip(&ys) {
            assert!((z + 3.0 * y).abs() <= 1e-6 * y.abs());
        }
    }
}
