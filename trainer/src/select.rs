//! Token selection: which of a batch's predicted tokens are trained on, from
//! detached per-token values on the host. Returns one weight per token (0/1
//! for the hard rules); the loss is sum(w * ce) / sum(w).
//!
//! The paper's rule (`TopkBatch`): over all predicted tokens of the global
//! batch, keep the ceil(k * n) with the largest excess loss, ce - ref_loss.

use shared::util::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Top ceil(k*n) by excess loss over the whole batch (RHO-1's rule).
    TopkBatch,
    /// Top ceil(k*len) by excess loss within each window.
    TopkSeq,
    /// Every token whose excess loss is above --select-threshold.
    Threshold,
    /// The ceil(k*n) tokens with the lowest reference loss ("clean tokens").
    RefOnly,
    /// ceil(k*n) tokens uniformly at random (the ablation).
    Random,
    /// No cut: weights softmax(excess / temperature) over the batch, mean 1.
    Weighted,
}

pub struct Params {
    pub method: Method,
    /// Fraction kept, in (0, 1].
    pub ratio: f64,
    pub threshold: f32,
    pub temperature: f32,
    /// Tokens taken out of the running before the rule ranks (`noise.rs`).
    pub noise: Option<crate::noise::NoiseFilter>,
}

/// Number of tokens kept out of `n` at ratio `k`.
pub fn kept(n: usize, k: f64) -> usize {
    ((k * n as f64).ceil() as usize).min(n)
}

/// Indices of the `k` largest `score`s; ties broken by lower index, so the
/// count is exact and the result deterministic. Linear time.
fn top_k(score: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        let order = |a: &usize, b: &usize| score[*b].total_cmp(&score[*a]).then(a.cmp(b));
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx
}

/// Weights for `rows` windows of `cols` predicted tokens each. `ce` and
/// `ref_loss` are (rows * cols), row-major; `ref_loss` is unused by `Random`.
/// Where `eligible` is given, only those tokens can be kept: the rules rank
/// them alone, and k stays a fraction of all n tokens (fewer are kept when
/// fewer than ceil(k * n) are eligible).
pub fn select(
    p: &Params,
    ce: &[f32],
    ref_loss: &[f32],
    rows: usize,
    cols: usize,
    eligible: Option<&[bool]>,
    rng: &mut Rng,
) -> Vec<f32> {
    let n = rows * cols;
    debug_assert_eq!(ce.len(), n);
    let out = |i: usize| eligible.is_some_and(|e| !e[i]);
    let excess = || {
        (0..n)
            .map(|i| {
                if out(i) {
                    f32::NEG_INFINITY
                } else {
                    ce[i] - ref_loss[i]
                }
            })
            .collect::<Vec<f32>>()
    };
    let mut w = vec![0f32; n];
    let mut keep = |idx: &[usize], offset: usize| {
        for &i in idx {
            w[offset + i] = 1.0;
        }
    };
    match p.method {
        Method::TopkBatch => keep(&top_k(&excess(), kept(n, p.ratio)), 0),
        Method::TopkSeq => {
            let ex = excess();
            for r in 0..rows {
                keep(
                    &top_k(&ex[r * cols..(r + 1) * cols], kept(cols, p.ratio)),
                    r * cols,
                );
            }
        }
        Method::Threshold => {
            let ex = excess();
            keep(
                &(0..n).filter(|&i| ex[i] > p.threshold).collect::<Vec<_>>(),
                0,
            );
        }
        Method::RefOnly => {
            let neg: Vec<f32> = (0..n)
                .map(|i| {
                    if out(i) {
                        f32::NEG_INFINITY
                    } else {
                        -ref_loss[i]
                    }
                })
                .collect();
            keep(&top_k(&neg, kept(n, p.ratio)), 0);
        }
        Method::Random => {
            // Partial Fisher-Yates: the first k of a random permutation.
            let mut idx: Vec<usize> = (0..n).filter(|&i| !out(i)).collect();
            let k = kept(n, p.ratio).min(idx.len());
            let m = idx.len();
            for i in 0..k {
                let j = i + rng.below(m - i);
                idx.swap(i, j);
            }
            keep(&idx[..k], 0);
        }
        Method::Weighted => {
            let ex = excess();
            let t = p.temperature.max(1e-6);
            let max = ex.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = ex.iter().map(|x| (((x - max) / t) as f64).exp()).collect();
            let sum: f64 = e.iter().sum();
            if sum > 0.0 {
                for (wi, ei) in w.iter_mut().zip(e) {
                    *wi = (ei / sum * n as f64) as f32;
                }
            }
        }
    }
    // Ineligible tokens that a top-k filled its count with (-inf scores).
    for (i, wi) in w.iter_mut().enumerate() {
        if out(i) {
            *wi = 0.0;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(method: Method, ratio: f64) -> Params {
        Params {
            method,
            ratio,
            threshold: 0.0,
            temperature: 1.0,
            noise: None,
        }
    }

    #[test]
    fn topk_batch_keeps_exactly_ceil_kn_with_ties() {
        let ce = vec![1.0f32; 10]; // all tied
        let r = vec![0.0f32; 10];
        let w = select(
            &params(Method::TopkBatch, 0.25),
            &ce,
            &r,
            2,
            5,
            None,
            &mut Rng::new(0),
        );
        assert_eq!(w.iter().sum::<f32>(), 3.0); // ceil(2.5)
        assert_eq!(&w[..3], &[1.0, 1.0, 1.0], "ties go to the lower index");
    }

    #[test]
    fn topk_batch_keeps_the_largest_excess() {
        let ce = vec![5.0f32, 1.0, 3.0, 4.0, 2.0, 6.0];
        let r = vec![0.0f32, 0.0, 0.0, 3.9, 0.0, 0.0]; // excess 5 1 3 0.1 2 6
        let w = select(
            &params(Method::TopkBatch, 0.5),
            &ce,
            &r,
            2,
            3,
            None,
            &mut Rng::new(0),
        );
        assert_eq!(w, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn topk_seq_keeps_ceil_k_per_window() {
        let ce: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let r = vec![0.0f32; 12];
        let w = select(
            &params(Method::TopkSeq, 0.3),
            &ce,
            &r,
            3,
            4,
            None,
            &mut Rng::new(0),
        );
        for row in w.chunks(4) {
            assert_eq!(row, &[0.0, 0.0, 1.0, 1.0]); // ceil(1.2) = 2 per window
        }
    }

    #[test]
    fn threshold_ref_only_random_and_weighted() {
        let ce = vec![3.0f32, 1.0, 2.0, 0.5];
        let r = vec![1.0f32, 0.0, 2.5, 0.1]; // excess 2 1 -0.5 0.4
        let mut p = params(Method::Threshold, 1.0);
        p.threshold = 0.5;
        assert_eq!(
            select(&p, &ce, &r, 1, 4, None, &mut Rng::new(0)),
            vec![1.0, 1.0, 0.0, 0.0]
        );
        let w = select(
            &params(Method::RefOnly, 0.5),
            &ce,
            &r,
            1,
            4,
            None,
            &mut Rng::new(0),
        );
        assert_eq!(w, vec![0.0, 1.0, 0.0, 1.0]);
        let n = 1000;
        let ce = vec![1.0f32; n];
        let r = vec![0.0f32; n];
        let a = select(
            &params(Method::Random, 0.6),
            &ce,
            &r,
            10,
            100,
            None,
            &mut Rng::new(1),
        );
        let b = select(
            &params(Method::Random, 0.6),
            &ce,
            &r,
            10,
            100,
            None,
            &mut Rng::new(2),
        );
        assert_eq!(a.iter().sum::<f32>(), 600.0);
        assert_eq!(b.iter().sum::<f32>(), 600.0);
        assert_ne!(a, b);
        let ce = vec![1.0f32, 2.0, 3.0];
        let w = select(
            &params(Method::Weighted, 1.0),
            &ce,
            &[0.0; 3],
            1,
            3,
            None,
            &mut Rng::new(0),
        );
        assert!(
            (w.iter().sum::<f32>() - 3.0).abs() < 1e-5 && w[2] > w[1] && w[1] > w[0] && w[0] > 0.0
        );
    }

    #[test]
    fn ineligible_tokens_are_never_kept() {
        let ce = vec![9.0f32, 1.0, 8.0, 2.0, 7.0, 3.0];
        let r = vec![0.0f32; 6];
        let e = [false, true, false, true, true, true];
        for m in [
            Method::TopkBatch,
            Method::TopkSeq,
            Method::Threshold,
            Method::RefOnly,
            Method::Random,
            Method::Weighted,
        ] {
            let w = select(&params(m, 0.5), &ce, &r, 2, 3, Some(&e), &mut Rng::new(0));
            assert_eq!((w[0], w[2]), (0.0, 0.0), "{m:?} kept an ineligible token");
            assert!(w.iter().sum::<f32>() > 0.0, "{m:?} kept nothing");
        }
        // top-k ranks the eligible alone: k * n = 3 of the 4 eligible
        let w = select(
            &params(Method::TopkBatch, 0.5),
            &ce,
            &r,
            2,
            3,
            Some(&e),
            &mut Rng::new(0),
        );
        assert_eq!(w, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        // fewer eligible than k * n: all of them, no more
        let few = [false, false, false, false, true, false];
        let w = select(
            &params(Method::Random, 0.5),
            &ce,
            &r,
            2,
            3,
            Some(&few),
            &mut Rng::new(0),
        );
        assert_eq!(w, vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
