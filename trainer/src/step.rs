//! One optimizer step of CLM or SLM. Shape legend: B windows, T window
//! length, V vocabulary, n = B * (T - 1) predicted tokens of the global batch.

use anyhow::Result;
use candle_core::{Device, Tensor};

use shared::model::Llama;
use shared::select::noise::predicted;
use shared::util::rng::Rng;

use crate::args::Objective;
use crate::data::Batch;
use crate::dist::layout::Split;
use crate::dist::zero::Zero;
use crate::dist::Comm;
use crate::optim::AdamW;
use shared::select::{masked_mean_over, select, Params, Tokens};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepStats {
    /// The loss that was backpropagated: mean CE over the kept tokens.
    pub loss_selected: f64,
    /// Mean CE over every predicted token (what CLM would have optimised).
    pub loss_all: f64,
    pub tokens: usize,
    /// Sum of weights (number of kept tokens for the hard rules).
    pub kept: f64,
    pub excess_kept: Option<f64>,
    pub excess_dropped: Option<f64>,
    pub grad_norm: f64,
    /// No token was kept (threshold rule): no update was made.
    pub skipped: bool,
    /// Tokens the noise filter took out before selection (`--noise-quantile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_dropped: Option<usize>,
    /// The selection's inputs and weights, when [`StepInput::trace`] asks.
    #[serde(skip)]
    pub trace: Option<StepTrace>,
}

/// What the selection saw and chose, per predicted token of the global
/// batch (window positions 1..T, row-major): written by `crate::trace`.
#[derive(Debug, Clone, Default)]
pub struct StepTrace {
    pub ce: Vec<f32>,
    pub ref_loss: Vec<f32>,
    pub doc_ids: Vec<u64>,
    pub weights: Vec<f32>,
}

pub struct StepInput<'a> {
    pub objective: Objective,
    pub select: &'a Params,
    pub lr: f64,
    pub grad_clip: f64,
    /// Keep the selection's inputs and weights in [`StepStats::trace`].
    pub trace: bool,
    /// This rank's rows of the global batch, and the ranks' collectives.
    pub split: Split,
    pub comm: &'a dyn Comm,
    /// With --shard-optimizer: which rank updates which variable.
    pub zero: Option<&'a Zero>,
}

/// Forward once per micro-batch, select over the whole global batch (every
/// rank's tokens), then one backward pass through all of them, the
/// gradients summed over the ranks, and one AdamW update.
pub fn train_step(
    model: &Llama,
    opt: &mut AdamW,
    batches: &[Batch],
    p: &StepInput,
    rng: &mut Rng,
    dev: &Device,
) -> Result<StepStats> {
    // 1. One forward pass per micro-batch: per-token CE (B, T-1). The graphs
    //    stay alive: the selection needs every CE value before any backward.
    let (mut ces, mut ce_host) = (Vec::new(), Vec::new());
    let (mut ref_host, mut doc_host) = (Vec::new(), Vec::new());
    for b in batches {
        let ids = Tensor::from_slice(&b.tokens, (b.rows, b.seq_len), dev)?; // (B, T)
        let ce = model.token_losses(&ids)?; // (B, T-1)
        ce_host.extend(ce.detach().flatten_all()?.to_vec1::<f32>()?);
        if let Some(r) = &b.ref_loss {
            let (r, d) = predicted(r, &b.doc_ids, b.seq_len); // pos 1..T
            ref_host.extend(r);
            doc_host.extend(d);
        }
        ces.push(ce);
    }
    let cols = batches[0].seq_len - 1;

    // 2. Selection on detached values, over the global batch: every rank's
    //    values in one process's order (the same tokens, the same ties).
    let (comm, split) = (p.comm, &p.split);
    let ce_all = global(comm, split, ce_host, cols, |v| comm.gather_f32(v))?;
    let ref_all = global(comm, split, ref_host, cols, |v| comm.gather_f32(v))?;
    let doc_all = global(comm, split, doc_host, cols, |v| comm.gather_u64(v))?;
    let n = ce_all.len();
    let selection = match p.objective {
        Objective::Clm => None,
        Objective::Slm => Some(select(
            p.select,
            &Tokens {
                ce: &ce_all,
                ref_loss: &ref_all,
                doc_ids: Some(&doc_all),
                rows: n / cols,
                cols,
            },
            rng,
        )),
    };
    let w = match &selection {
        Some(s) => &s.weights,
        None => &vec![1f32; n],
    };
    let kept: f64 = w.iter().map(|&x| x as f64).sum();
    let mut stats = StepStats {
        loss_all: ce_all.iter().map(|&x| x as f64).sum::<f64>() / n as f64,
        tokens: n,
        kept,
        noise_dropped: selection.as_ref().and_then(|s| s.noise_dropped),
        ..Default::default()
    };
    if p.objective == Objective::Slm {
        let excess = |keep: bool| {
            let v: Vec<f64> = (0..n)
                .filter(|&i| (w[i] > 0.0) == keep)
                .map(|i| (ce_all[i] - ref_all[i]) as f64)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        (stats.excess_kept, stats.excess_dropped) = (excess(true), excess(false));
    }
    if p.trace {
        stats.trace = Some(StepTrace {
            ce: ce_all.clone(),
            ref_loss: ref_all.clone(),
            doc_ids: doc_all.clone(),
            weights: w.clone(),
        });
    }

    // 3. The loss: this rank's sum(w * CE) divided by the GLOBAL kept count,
    //    so the ranks' losses (and gradients) add up to one process's.
    let w_mine = if comm.world() == 1 {
        w.clone()
    } else {
        split.local(w, cols)
    };
    let Some(loss) = masked_mean_over(&ces, &w_mine, kept)? else {
        stats.skipped = true; // nothing kept (threshold rule): no update
        return Ok(stats);
    };
    let mut loss_sum = [loss.to_scalar::<f32>()? as f64];
    comm.sum_f64(&mut loss_sum)?;
    stats.loss_selected = loss_sum[0];

    // 4. Backward, gradients summed over the ranks, clip by global norm, AdamW.
    let mut grads = loss.backward()?;
    crate::dist::grads::sum_over_ranks(comm, opt.vars(), &mut grads)?;
    stats.grad_norm = opt.grad_norm(&grads)?;
    let scale = if p.grad_clip > 0.0 && stats.grad_norm > p.grad_clip {
        p.grad_clip / stats.grad_norm
    } else {
        1.0
    };
    opt.step(&grads, p.lr, scale)?;
    if let Some(z) = p.zero {
        z.share_weights(comm, opt)?; // each rank updated only its own variables
    }
    Ok(stats)
}

/// Every rank's `local` values (its rows of each micro-batch, `cols` a row)
/// in the global batch's order; with one rank, `local` itself.
fn global<T: Copy>(
    comm: &dyn Comm,
    split: &Split,
    local: Vec<T>,
    cols: usize,
    gather: impl Fn(&[T]) -> Result<Vec<Vec<T>>>,
) -> Result<Vec<T>> {
    if comm.world() == 1 {
        return Ok(local);
    }
    Ok(split.in_global_order(&gather(&local)?, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};
    use shared::model::loss::per_token_loss;
    use shared::select::{masked_mean, Method};

    /// The masked mean gives zero gradient to every dropped token's logits and
    /// equals the mean CE of the kept tokens.
    #[test]
    fn dropped_tokens_get_no_gradient() {
        let dev = Device::Cpu;
        let (b, t, v) = (2, 5, 7);
        let mut rng = Rng::new(3);
        let init: Vec<f32> = (0..b * t * v).map(|_| rng.normal() as f32).collect();
        let logits = Var::from_vec(init, (b, t, v), &dev).unwrap();
        let targets = Tensor::from_vec(
            (0..(b * t) as u32)
                .map(|i| i % v as u32)
                .collect::<Vec<_>>(),
            (b, t),
            &dev,
        )
        .unwrap();
        let ce = per_token_loss(logits.as_tensor(), &targets).unwrap();
        let ce_host = ce.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ref_loss = vec![1.0f32; b * t];
        let p = Params {
            method: Method::TopkBatch,
            ratio: 0.4,
            threshold: 0.0,
            temperature: 1.0,
            noise: None,
        };
        let tokens = Tokens {
            ce: &ce_host,
            ref_loss: &ref_loss,
            doc_ids: None,
            rows: b,
            cols: t,
        };
        let w = select(&p, &tokens, &mut Rng::new(0)).weights;
        let kept = w.iter().sum::<f32>();
        assert_eq!(kept, 4.0);
        // Two micro-batches, as the step splits them: one loss over both.
        let halves = [ce.narrow(0, 0, 1).unwrap(), ce.narrow(0, 1, 1).unwrap()];
        let loss = masked_mean(&halves, &w).unwrap().unwrap();
        let expect: f32 = (0..b * t)
            .filter(|&i| w[i] > 0.0)
            .map(|i| ce_host[i])
            .sum::<f32>()
            / kept;
        assert!((loss.to_scalar::<f32>().unwrap() - expect).abs() < 1e-6);
        let grads = loss.backward().unwrap();
        let g = grads
            .get(logits.as_tensor())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let g = g.reshape((b * t, v)).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in g.iter().enumerate() {
            let norm: f32 = row.iter().map(|x| x.abs()).sum();
            if w[i] > 0.0 {
                assert!(norm > 1e-6, "kept token {i} has no gradient");
            } else {
                assert_eq!(norm, 0.0, "dropped token {i} has gradient {row:?}");
            }
        }
    }
}
