//! Token selection, in one place: which of a batch's predicted tokens a
//! step trains on. Every tool that selects (the trainer's step, `trainer
//! selection`, `scorer export`, `scorer view`) calls these functions.
//!
//! RHO-1 (Lin et al., "Not All Tokens Are What You Need", NeurIPS 2024,
//! section 2.2): the excess loss of token i is L_theta(x_i) - L_ref(x_i);
//! over all predicted tokens of the batch, the top k% by excess loss are
//! kept, and the loss is the mean cross-entropy over the kept tokens. Here:
//!
//! - [`kept`]: k% of n is ceil(k * n) tokens (at least one when n > 0);
//! - [`top_k`]: the exact top-k, ties broken by the lower index (row order),
//!   so the count is exact and the result deterministic;
//! - [`noise`]: the optional noise filter decides which tokens are eligible
//!   before any rule ranks; k stays a fraction of all n tokens;
//! - [`select`]: the rules ([`Method`]) as weights, 0/1 for the hard ones;
//! - [`masked_mean`]: the loss, sum(w * ce) / sum(w).

pub mod noise;

use candle_core::Tensor;

use crate::util::rng::Rng;
use noise::NoiseFilter;

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

/// The fraction k kept when a user gives none: the ratio RHO-1 trained its
/// 1B model with.
pub const DEFAULT_RATIO: f64 = 0.6;

pub struct Params {
    pub method: Method,
    /// Fraction kept, in (0, 1].
    pub ratio: f64,
    pub threshold: f32,
    pub temperature: f32,
    /// Tokens taken out of the running before the rule ranks ([`noise`]).
    pub noise: Option<NoiseFilter>,
}

/// The predicted tokens of a batch: `rows` windows of `cols` each,
/// row-major, host copies of detached values.
pub struct Tokens<'a> {
    /// The live model's per-token cross-entropy.
    pub ce: &'a [f32],
    /// The reference loss of each token (unused by `Random`).
    pub ref_loss: &'a [f32],
    /// The document of each token; the noise filter needs it.
    pub doc_ids: Option<&'a [u64]>,
    pub rows: usize,
    pub cols: usize,
}

/// What a rule chose: one weight per token, and how many tokens the noise
/// filter took out first (None without a filter).
pub struct Selection {
    pub weights: Vec<f32>,
    pub noise_dropped: Option<usize>,
}

/// The random stream of step `step` (0-based) of a run with seed `seed`:
/// what [`Method::Random`] draws from, so a step's choice depends on
/// nothing but the seed and the step (a resumed run draws the same).
pub fn step_rng(seed: u64, step: u64) -> Rng {
    Rng::derive(seed, &format!("select-{step}"))
}

/// Number of tokens kept out of `n` at ratio `k` in (0, 1]: ceil(k * n).
pub fn kept(n: usize, k: f64) -> usize {
    ((k * n as f64).ceil() as usize).min(n)
}

/// Indices of the `k` largest `score`s; ties broken by lower index, so the
/// count is exact and the result deterministic. Linear time.
pub fn top_k(score: &[f32], k: usize) -> Vec<usize> {
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

/// [`top_k`] for scores met in a stream (a whole score set, row group by row
/// group): made from every score once, then asked in the same order whether
/// each is kept. Keeps exactly what [`top_k`] keeps over the concatenation.
pub struct StreamCut {
    /// The k-th largest score.
    threshold: f32,
    /// Scores equal to the threshold still to keep (in stream order).
    ties_left: usize,
}

impl StreamCut {
    pub fn new(mut scores: Vec<f32>, k: usize) -> Self {
        if k == 0 || scores.is_empty() {
            return StreamCut {
                threshold: f32::INFINITY,
                ties_left: 0,
            };
        }
        let k = k.min(scores.len());
        let (_, kth, _) = scores.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let threshold = *kth;
        let above = scores
            .iter()
            .filter(|v| v.total_cmp(&threshold).is_gt())
            .count();
        StreamCut {
            threshold,
            ties_left: k - above,
        }
    }

    /// Whether the next score of the stream is kept.
    pub fn keeps(&mut self, score: f32) -> bool {
        match score.total_cmp(&self.threshold) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal if self.ties_left > 0 => {
                self.ties_left -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The loss of a step: sum(w * ce) / sum(w) over the micro-batches' CE
/// tensors (each (B, T-1), `w` their weights in order), so every kept token
/// counts the same whichever micro-batch holds it. None when nothing is kept.
pub fn masked_mean(ces: &[Tensor], w: &[f32]) -> candle_core::Result<Option<Tensor>> {
    masked_mean_over(ces, w, w.iter().map(|&x| x as f64).sum())
}

/// sum(w * ce) / `kept`: [`masked_mean`] with the divisor given, for one
/// rank's share of a global batch whose kept count is `kept` (the ranks'
/// losses then add up to the global one). None when `kept` is 0.
pub fn masked_mean_over(
    ces: &[Tensor],
    w: &[f32],
    kept: f64,
) -> candle_core::Result<Option<Tensor>> {
    if kept == 0.0 {
        return Ok(None);
    }
    let mut loss: Option<Tensor> = None;
    let mut offset = 0;
    for ce in ces {
        let len = ce.elem_count();
        let wt = Tensor::from_slice(&w[offset..offset + len], ce.shape(), ce.device())?;
        let part = ((ce * wt)?.sum_all()? / kept)?;
        loss = Some(match loss {
            None => part,
            Some(l) => (l + part)?,
        });
        offset += len;
    }
    Ok(loss)
}

/// The rule `p` applied to the tokens `t`: the noise filter (if any)
/// decides which are eligible, then the rule ranks the eligible alone; k
/// stays a fraction of all n tokens (fewer are kept when fewer than
/// ceil(k * n) are eligible).
pub fn select(p: &Params, t: &Tokens, rng: &mut Rng) -> Selection {
    let eligible = p.noise.as_ref().map(|f| {
        let docs = t
            .doc_ids
            .expect("the noise filter needs the tokens' documents");
        noise::eligible(f, t.ref_loss, docs, t.cols)
    });
    let weights = weights(
        p,
        t.ce,
        t.ref_loss,
        t.rows,
        t.cols,
        eligible.as_deref(),
        rng,
    );
    Selection {
        noise_dropped: eligible.map(|e| e.iter().filter(|&&x| !x).count()),
        weights,
    }
}

/// The rule's weights among the `eligible` tokens (all when None).
fn weights(
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

    #[test]
    fn stream_cut_keeps_exactly_what_top_k_keeps() {
        let mut rng = Rng::new(9);
        // few distinct values: many ties across the stream
        let scores: Vec<f32> = (0..5000).map(|_| rng.below(40) as f32 / 4.0).collect();
        for k in [0, 1, 17, 2500, 4999, 5000] {
            let mut want = vec![false; scores.len()];
            for i in top_k(&scores, k) {
                want[i] = true;
            }
            let mut cut = StreamCut::new(scores.clone(), k);
            let got: Vec<bool> = scores.iter().map(|&x| cut.keeps(x)).collect();
            assert_eq!(got, want, "k = {k}");
        }
    }

    #[test]
    fn select_applies_the_noise_filter_before_the_rule() {
        // window of 6: doc 1 clean (one hard token), doc 2 noise
        let ce = [3.0f32, 3.0, 9.0, 3.0, 12.0, 12.0]; // excess 1 1 3 1 4 4
        let ref_loss = [2.0f32, 2.0, 6.0, 2.0, 8.0, 8.0];
        let docs = [1u64, 1, 1, 1, 2, 2];
        let t = Tokens {
            ce: &ce,
            ref_loss: &ref_loss,
            doc_ids: Some(&docs),
            rows: 1,
            cols: 6,
        };
        let mut p = params(Method::TopkBatch, 0.5);
        let plain = select(&p, &t, &mut Rng::new(0));
        assert_eq!(plain.weights, vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        assert_eq!(plain.noise_dropped, None);
        p.noise = Some(NoiseFilter { span: 3, cap: 5.0 });
        let filtered = select(&p, &t, &mut Rng::new(0));
        assert_eq!(filtered.noise_dropped, Some(2), "doc 2 is noise");
        assert_eq!(filtered.weights, vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }

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
        let w = weights(
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
        let w = weights(
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
        let w = weights(
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
            weights(&p, &ce, &r, 1, 4, None, &mut Rng::new(0)),
            vec![1.0, 1.0, 0.0, 0.0]
        );
        let w = weights(
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
        let a = weights(
            &params(Method::Random, 0.6),
            &ce,
            &r,
            10,
            100,
            None,
            &mut Rng::new(1),
        );
        let b = weights(
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
        let w = weights(
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
            let w = weights(&params(m, 0.5), &ce, &r, 2, 3, Some(&e), &mut Rng::new(0));
            assert_eq!((w[0], w[2]), (0.0, 0.0), "{m:?} kept an ineligible token");
            assert!(w.iter().sum::<f32>() > 0.0, "{m:?} kept nothing");
        }
        // top-k ranks the eligible alone: k * n = 3 of the 4 eligible
        let w = weights(
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
        let w = weights(
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
