//! Held-out loss: mean cross-entropy over every predicted token of a score
//! set's windows (all windows, or the first `max_windows`), with the
//! gradient-free model.

use anyhow::Result;
use candle_core::{Device, Tensor};
use shared::model::Llama;
use shared::scores::scoreset::ScoreSet;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct EvalResult {
    pub windows: u64,
    pub tokens: u64,
    pub loss: f64,
    pub ppl: f64,
}

pub fn evaluate(
    model: &Llama,
    set: &ScoreSet,
    batch_size: usize,
    max_windows: Option<usize>,
    device: &Device,
) -> Result<EvalResult> {
    let t = set.seq_len();
    let limit = max_windows
        .map(|m| m as u64)
        .unwrap_or(u64::MAX)
        .min(set.num_windows());
    let (mut sum, mut tokens, mut windows) = (0f64, 0u64, 0u64);
    let mut pending: Vec<u32> = Vec::new();
    let mut flush = |pending: &mut Vec<u32>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let rows = pending.len() / t;
        let ids = Tensor::from_slice(pending, (rows, t), device)?; // (B, T)
        let ce = model.token_losses(&ids)?; // (B, T-1)
        sum += ce
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        tokens += (rows * (t - 1)) as u64;
        pending.clear();
        Ok(())
    };
    'outer: for group in set.row_groups() {
        let (_, w) = group?;
        for row in w.tokens.chunks(t) {
            if windows == limit {
                break 'outer;
            }
            pending.extend_from_slice(row);
            windows += 1;
            if pending.len() == batch_size * t {
                flush(&mut pending)?;
            }
        }
    }
    flush(&mut pending)?;
    let loss = sum / tokens.max(1) as f64;
    Ok(EvalResult {
        windows,
        tokens,
        loss,
        ppl: loss.exp(),
    })
}
