//! The noise filter (`--noise-quantile Q`): before a selection rule ranks
//! anything, the tokens that sit in a span the reference model itself cannot
//! predict are taken out of the running.
//!
//! A token's noise score is the mean reference loss over the (up to) `span`
//! tokens of its own document centred on it, within its window. The filter
//! drops every token whose score is above the Q-quantile of the scores of the
//! whole training data, computed once at start-up (one pass over the
//! memory-mapped shards). Excess loss alone keeps unlearnable noise late in a
//! run (FIDELITY.md): random characters are hard for the live model and the
//! reference alike, and their excess is high. Averaging over a span is what
//! separates a noisy span from a single hard token of real text.
//!
//! Here: the filter, the span means and the quantile histogram; the trainer
//! fits the filter to its data (`trainer/src/noise.rs`).

/// Span of the noise score, in tokens, when none is given.
pub const DEFAULT_SPAN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseFilter {
    pub span: usize,
    /// Tokens whose noise score is above this (nats) are dropped.
    pub cap: f32,
}

/// Mean reference loss over the span around each predicted token, for `rows`
/// windows of `cols` predicted tokens each: `ref_loss[i]` and `doc_ids[i]`
/// belong to the same predicted token (window positions 1..T). The span never
/// crosses a document boundary or the window's edge.
pub fn span_means(ref_loss: &[f32], doc_ids: &[u64], cols: usize, span: usize) -> Vec<f32> {
    debug_assert_eq!(ref_loss.len(), doc_ids.len());
    let (before, after) = (span.saturating_sub(1) / 2, span / 2);
    let mut out = vec![0f32; ref_loss.len()];
    let mut prefix = Vec::with_capacity(cols + 1);
    for ((r, d), o) in ref_loss
        .chunks(cols)
        .zip(doc_ids.chunks(cols))
        .zip(out.chunks_mut(cols))
    {
        prefix.clear();
        prefix.push(0f64);
        for &x in r {
            prefix.push(prefix.last().unwrap() + x as f64);
        }
        let mut start = 0; // first position of the current document's run
        for i in 0..r.len() {
            if d[i] != d[start] {
                start = i;
            }
            let mut end = i + 1; // one past the run's last position
            while end < r.len() && d[end] == d[i] && end <= i + after {
                end += 1;
            }
            let lo = i.saturating_sub(before).max(start);
            o[i] = ((prefix[end] - prefix[lo]) / (end - lo) as f64) as f32;
        }
    }
    out
}

/// Which tokens the filter leaves in the running.
pub fn eligible(f: &NoiseFilter, ref_loss: &[f32], doc_ids: &[u64], cols: usize) -> Vec<bool> {
    span_means(ref_loss, doc_ids, cols, f.span)
        .into_iter()
        .map(|m| m <= f.cap)
        .collect()
}

/// Counts of scores in bins of 0.001 nats (the last bin takes everything
/// above): quantiles to 0.001 nats in fixed memory, however large the set.
pub struct Histogram {
    bins: Vec<u64>,
    count: u64,
}

const BIN: f64 = 1e-3;
const MAX_NATS: f64 = 64.0;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bins: vec![0; (MAX_NATS / BIN) as usize + 1],
            count: 0,
        }
    }
}

impl Histogram {
    pub fn add(&mut self, x: f32) {
        let b = ((x.max(0.0) as f64 / BIN) as usize).min(self.bins.len() - 1);
        self.bins[b] += 1;
        self.count += 1;
    }

    /// The upper edge of the bin in which the q-quantile falls: at least a
    /// fraction q of the values are at or below it.
    pub fn quantile(&self, q: f64) -> f32 {
        let need = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= need {
                return ((b + 1) as f64 * BIN) as f32;
            }
        }
        f32::INFINITY
    }
}

/// The predicted tokens' (positions 1..T of each window) reference losses and
/// document ids, from window-major columns.
pub fn predicted(ref_loss: &[f32], doc_ids: &[u64], seq_len: usize) -> (Vec<f32>, Vec<u64>) {
    let (mut r, mut d) = (Vec::new(), Vec::new());
    for (rw, dw) in ref_loss.chunks(seq_len).zip(doc_ids.chunks(seq_len)) {
        r.extend_from_slice(&rw[1..]);
        d.extend_from_slice(&dw[1..]);
    }
    (r, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, position by position.
    fn naive(r: &[f32], d: &[u64], cols: usize, span: usize) -> Vec<f32> {
        let (before, after) = ((span - 1) / 2, span / 2);
        let mut out = Vec::new();
        for w in 0..r.len() / cols {
            let (r, d) = (&r[w * cols..(w + 1) * cols], &d[w * cols..(w + 1) * cols]);
            for i in 0..cols {
                let js: Vec<usize> = (i.saturating_sub(before)..(i + after + 1).min(cols))
                    .filter(|&j| d[j] == d[i] && (j.min(i)..=j.max(i)).all(|k| d[k] == d[i]))
                    .collect();
                out.push(js.iter().map(|&j| r[j] as f64).sum::<f64>() as f32 / js.len() as f32);
            }
        }
        out
    }

    #[test]
    fn span_means_match_the_definition() {
        let mut rng = crate::util::rng::Rng::new(5);
        let cols = 37;
        let r: Vec<f32> = (0..3 * cols)
            .map(|_| (rng.below(1000) as f32) / 100.0)
            .collect();
        // documents of varied length, one spanning a window edge
        let mut d = Vec::new();
        let (mut doc, mut left) = (0u64, 0);
        for _ in 0..3 * cols {
            if left == 0 {
                doc += 1;
                left = 1 + rng.below(20);
            }
            d.push(doc);
            left -= 1;
        }
        for span in [1, 2, 5, 8, 64] {
            let fast = span_means(&r, &d, cols, span);
            let slow = naive(&r, &d, cols, span);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!((a - b).abs() < 1e-4, "span {span} token {i}: {a} vs {b}");
            }
        }
        assert_eq!(span_means(&r, &d, cols, 1), r, "span 1 is the token itself");
    }

    #[test]
    fn a_noisy_document_is_dropped_and_a_hard_token_is_not() {
        // window of 12: doc 1 is clean text with one hard token, doc 2 noise
        let r = [2., 2., 9., 2., 2., 2., 8., 8., 8., 8., 8., 8.];
        let d = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        let f = NoiseFilter { span: 5, cap: 5.0 };
        let e = eligible(&f, &r, &d, 12);
        assert_eq!(&e[..6], &[true; 6], "the hard token in clean text stays");
        assert_eq!(&e[6..], &[false; 6], "the noisy document goes");
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for i in 0..1000 {
            h.add(i as f32 / 100.0); // 0.00 .. 9.99: the 500th is 4.99
        }
        assert!(
            (h.quantile(0.5) - 4.99).abs() <= 0.0011,
            "{}",
            h.quantile(0.5)
        );
        assert!(
            (h.quantile(0.9) - 8.99).abs() <= 0.0011,
            "{}",
            h.quantile(0.9)
        );
        assert!(h.quantile(1.0) >= 9.99);
        h.add(1e9);
        assert!((h.quantile(1.0) - 64.001).abs() < 1e-3); // the overflow bin
    }
}
