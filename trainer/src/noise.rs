//! Fitting the noise filter (`--noise-quantile Q`, defined in
//! `shared::select::noise`) to the training data.
//! The cap is the Q-quantile of every predicted token's noise score over
//! the whole training data, computed once at start-up in one pass over the
//! memory-mapped shards.

use anyhow::Result;
use shared::select::noise::{predicted, span_means, Histogram, NoiseFilter};
use shared::util::progress::Progress;

use crate::data::TrainData;

/// The filter for `data`: the `quantile` of every predicted token's noise
/// score. Reads each row group once.
pub fn fit(data: &TrainData, span: usize, quantile: f64) -> Result<NoiseFilter> {
    let rows: u64 = data
        .sets()
        .iter()
        .map(|s| s.num_windows() * s.seq_len() as u64)
        .sum();
    let mut progress = Progress::new("noise filter", "tok", rows);
    let mut hist = Histogram::default();
    for set in data.sets() {
        let t = set.seq_len();
        for (s, shard) in set.shards().iter().enumerate() {
            for g in 0..shard.num_row_groups() {
                let w = set.read_row_group(s, g)?;
                let Some(rl) = &w.ref_loss else {
                    anyhow::bail!("{}: a pack-only set has no ref_loss", set.dir().display());
                };
                let (refs, docs) = predicted(rl, &w.doc_ids, t);
                for m in span_means(&refs, &docs, t - 1, span) {
                    hist.add(m);
                }
                progress.inc(w.tokens.len() as u64);
            }
        }
    }
    progress.finish();
    Ok(NoiseFilter {
        span,
        cap: hist.quantile(quantile),
    })
}
