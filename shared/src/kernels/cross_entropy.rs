//! The CPU kernels of the per-token cross-entropy (`model::loss` decides when
//! they run): the loss of each row of logits with its own backward, and the
//! LM head and the loss in one op that never keeps the logits as a graph node.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::exp::{exp, scaled_exp_in_place, sum_exp};
use crate::kernels::fused::{contiguous, overwritten};
use crate::kernels::gemm::sgemm as gemm;

/// logits (N, V) f32 contiguous, targets (N,) u32 -> loss (N,) = logsumexp(x)
/// - x[target], with its backward (softmax - onehot).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(logits.apply_op2(targets, FusedCrossEntropy)?)
}

/// (max, log-sum-exp) of one row of logits.
///
/// The sum of exponentials is accumulated in f64. In f32, summed one term
/// after another, every term below half an ulp of the running sum is lost,
/// and a large vocabulary has tens of thousands of such terms: with
/// SmolLM2's 49,152 ids the log-sum-exp came out ~1.4e-4 nats low on
/// average, always in the same direction.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = crate::kernels::lanes::max(row);
    let sum = sum_exp(row, max);
    (max, (max as f64 + sum.ln()) as f32)
}

fn check_target(t: u32, v: usize) -> candle_core::Result<usize> {
    if (t as usize) < v {
        Ok(t as usize)
    } else {
        candle_core::bail!("target id {t} is outside the vocabulary ({v})")
    }
}

/// logits (N, V) f32, targets (N,) u32 -> loss (N,).
struct FusedCrossEntropy;

impl CustomOp2 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let x = contiguous::<f32>(s1, l1, "logits")?;
        let tg = contiguous::<u32>(s2, l2, "targets")?;
        let out = x
            .par_chunks(v)
            .zip(tg.par_iter())
            .map(|(row, &t)| Ok(row_lse(row).1 - row[check_target(t, v)?]))
            .collect::<candle_core::Result<Vec<f32>>>()?;
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // lse = loss + x[target]: the backward needs one exp per logit, not two.
        let picked = logits.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?; // (N,)
        let lse_and_grad = Tensor::stack(&[(res + picked)?, grad.clone()], 1)?.contiguous()?; // (N, 2)
        let g = logits.apply_op3_no_bwd(targets, &lse_and_grad, &FusedCrossEntropyGrad)?;
        Ok((Some(g), None))
    }
}

/// d loss_i / d x_ij = g_i * (softmax(x_i)_j - [j == t_i]); inputs: logits
/// (N, V), targets (N,), and (N, 2) holding each row's log-sum-exp and g_i.
struct FusedCrossEntropyGrad;

impl CustomOp3 for FusedCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, v) = l1.shape().dims2()?;
        let x = contiguous::<f32>(s1, l1, "logits")?;
        let tg = contiguous::<u32>(s2, l2, "targets")?;
        let lse_g = contiguous::<f32>(s3, l3, "lse and gradient")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .zip(tg.par_iter().zip(lse_g.par_chunks(2)))
            .try_for_each(|((o, row), (&t, lg))| {
                let t = check_target(t, v)?;
                let (lse, gi) = (lg[0], lg[1]);
                if gi != 0.0 {
                    for (oj, xj) in o.iter_mut().zip(row) {
                        *oj = gi * exp(xj - lse);
                    }
                    o[t] -= gi;
                }
                Ok::<(), candle_core::Error>(())
            })?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// hidden (N, C) f32, weight (V, C) f32, targets (N,) u32 -> loss (N,): the
/// LM head and the per-token loss in one CPU kernel, equal to
/// `model::loss::per_token_loss(hidden @ weight^T, targets)`.
///
/// Why: the (N, V) logits are the largest tensor of a step (67 MB for 2048
/// tokens and V = 8192). As graph nodes they cost a fresh buffer for the
/// logits, for their gradient, for candle's zero-initialised gradient
/// accumulator and for the sum. Here they are one buffer, written by the
/// forward GEMM and turned into their own gradient in place. The backward
/// also drops the rows whose loss weight is 0 (tokens SLM did not select)
/// before its two GEMMs, so an SLM step is cheaper than a CLM step there.
/// Without a gradient to keep (scoring), rows go through in chunks of ~16 MB
/// of logits instead, and at least 256 rows: each chunk's GEMM packs all of
/// the weight again, so small chunks cost (4 MB chunks, 128 rows at vocab
/// 8192, were measured slower in `trainer bench`'s scoring figure).
pub fn linear_cross_entropy(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let op = LinearCrossEntropy {
        keep: hidden.track_op() || weight.track_op(),
        saved: Mutex::new(None),
    };
    Ok(hidden
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &targets.contiguous()?, op)?)
}

struct LinearCrossEntropy {
    /// Keep the logits and log-sum-exps for the backward.
    keep: bool,
    saved: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

pub(crate) fn cpu_f32<'a>(
    s: &'a Storage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => contiguous::<f32>(c, l, what),
        _ => candle_core::bail!("fused LM head: {what} must be on the CPU"),
    }
}

impl CustomOp3 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "linear-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c) = l1.shape().dims2()?;
        let (v, c2) = l2.shape().dims2()?;
        if c != c2 || l3.shape().elem_count() != n {
            candle_core::bail!(
                "fused LM head: hidden {:?}, weight {:?}, targets {:?} do not match",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let h = contiguous::<f32>(s1, l1, "hidden")?;
        let w = contiguous::<f32>(s2, l2, "weight")?;
        let tg = contiguous::<u32>(s3, l3, "targets")?;
        let chunk = if self.keep {
            n.max(1)
        } else {
            ((1 << 22) / v).max(256).clamp(1, n.max(1))
        };
        let mut logits = overwritten(chunk.min(n) * v); // each chunk's GEMM writes its rows before they are read
        let (mut loss, mut lse) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            let buf = &mut logits[..rows * v];
            gemm((rows, v, c), buf, false, (&h[start * c..], c, 1), (w, 1, c));
            let part = buf
                .par_chunks(v)
                .zip(tg[start..start + rows].par_iter())
                .map(|(row, &t)| {
                    let l = row_lse(row).1;
                    Ok((l - row[check_target(t, v)?], l))
                })
                .collect::<candle_core::Result<Vec<(f32, f32)>>>()?;
            loss.extend(part.iter().map(|p| p.0));
            lse.extend(part.iter().map(|p| p.1));
        }
        if self.keep {
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some((logits, lse));
        }
        Ok((CpuStorage::F32(loss), Shape::from(n)))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((mut d, lse)) = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
            .take()
        else {
            candle_core::bail!(
                "fused LM head: backward without saved logits (run twice, or on a detached input)"
            )
        };
        let (n, c) = hidden.dims2()?;
        let v = weight.dim(0)?;
        let g = grad.to_vec1::<f32>()?;
        let tg = targets.to_vec1::<u32>()?;
        // Rows that carry gradient, compacted to the front of the logits buffer.
        let kept: Vec<usize> = (0..n).filter(|&i| g[i] != 0.0).collect();
        for (k, &i) in kept.iter().enumerate() {
            if k != i {
                d.copy_within(i * v..(i + 1) * v, k * v);
            }
        }
        let m = kept.len();
        // d loss_i / d logit_ij = g_i (softmax_ij - [j == t_i]), in place.
        d[..m * v]
            .par_chunks_mut(v)
            .zip(kept.par_iter())
            .try_for_each(|(row, &i)| {
                let (gi, l) = (g[i], lse[i]);
                scaled_exp_in_place(row, l, gi);
                row[check_target(tg[i], v)?] -= gi;
                Ok::<(), candle_core::Error>(())
            })?;
        let (hs, hl) = hidden.storage_and_layout();
        let (ws, wl) = weight.storage_and_layout();
        let h = cpu_f32(&hs, hl, "hidden")?;
        let w = cpu_f32(&ws, wl, "weight")?;
        let hk: Vec<f32> = kept
            .iter()
            .flat_map(|&i| &h[i * c..(i + 1) * c])
            .copied()
            .collect();
        // dW (V, C) = D^T (V, m) @ Hk (m, C); dHk (m, C) = D (m, V) @ W (V, C).
        let mut dw = vec![0f32; v * c];
        let mut dhk = vec![0f32; m * c];
        if m > 0 {
            gemm((v, c, m), &mut dw, false, (&d, 1, v), (&hk, c, 1));
            gemm((m, c, v), &mut dhk, false, (&d, v, 1), (w, c, 1));
        }
        let mut dh = vec![0f32; n * c];
        for (k, &i) in kept.iter().enumerate() {
            dh[i * c..(i + 1) * c].copy_from_slice(&dhk[k * c..(k + 1) * c]);
        }
        let dev = hidden.device();
        Ok((
            Some(Tensor::from_vec(dh, (n, c), dev)?),
            Some(Tensor::from_vec(dw, (v, c), dev)?),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 49,152-id row (SmolLM2's vocabulary) whose logits spread
    /// like a trained model's: the f32 running sum lost the small terms.
    #[test]
    fn log_sum_exp_of_a_large_vocabulary_is_unbiased() {
        let mut rng = crate::util::rng::Rng::new(7);
        let mut worst_naive = 0f64;
        for _ in 0..8 {
            let row: Vec<f32> = (0..49_152)
                .map(|i| {
                    if i == 3 {
                        12.0
                    } else {
                        (-10.0 + 15.0 * rng.next_f64()) as f32
                    }
                })
                .collect();
            let max = 12.0f64;
            let exact = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let (_, ours) = row_lse(&row);
            assert!(
                (ours as f64 - exact).abs() < 2e-6,
                "ours {ours} exact {exact}"
            );
            let naive: f32 = row.iter().map(|x| (x - 12.0).exp()).sum();
            worst_naive = worst_naive.max((12.0 + naive.ln() as f64 - exact).abs());
        }
        // The case is one where plain f32 summation does go wrong.
        assert!(worst_naive > 3e-5, "naive f32 error only {worst_naive}");
    }
}
