//! Per-token cross-entropy: the one definition of "loss of a token" that the
//! scorer writes as `ref_loss` and the trainer recomputes live. Excess loss
//! only means something because both sides use this function.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor, D};
use rayon::prelude::*;

use crate::error::Result;
use crate::model::exp::{exp, scaled_exp_in_place, sum_exp};
use crate::model::fused::{contiguous, overwritten};
use crate::model::gemm::sgemm as gemm;

/// logits (B, T, V), targets (B, T) u32 -> loss (B, T) f32, natural log.
///
/// loss = logsumexp(x) - x[target], with the row max subtracted first, in f32
/// whatever the model's dtype. On the CPU this is one fused kernel with its
/// own backward (softmax - onehot), which never materialises the (B, T, V)
/// log-softmax; elsewhere it is composed of candle ops.
pub fn per_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.to_dtype(DType::F32)?;
    if crate::util::device::use_fused(logits.device(), DType::F32) {
        let flat = logits.reshape((b * t, v))?.contiguous()?; // (N, V)
        let tgt = targets.reshape(b * t)?.contiguous()?; // (N,)
        return Ok(flat.apply_op2(&tgt, FusedCrossEntropy)?.reshape((b, t))?);
    }
    composed_per_token_loss(&logits, targets)
}

/// The same loss from candle ops (any device). The max is detached: its
/// gradient cancels exactly.
pub fn composed_per_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach(); // (B, T, 1)
    let shifted = logits.broadcast_sub(&max)?; // (B, T, V)
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?; // (B, T, 1)
    let picked = shifted.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?; // (B, T, 1)
    Ok((lse - picked)?.squeeze(D::Minus1)?)
}

/// (max, log-sum-exp) of one row of logits.
///
/// The sum of exponentials is accumulated in f64. In f32, summed one term
/// after another, every term below half an ulp of the running sum is lost,
/// and a large vocabulary has tens of thousands of such terms: with
/// SmolLM2's 49,152 ids the log-sum-exp came out ~1.4e-4 nats low on
/// average (issue 13), always in the same direction.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = crate::model::lanes::max(row);
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
/// LM head and [`per_token_loss`] in one CPU kernel, equal to
/// `per_token_loss(hidden @ weight^T, targets)`.
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

/// Splits windows (B, T) into model inputs (B, T-1) and next-token targets
/// (B, T-1): loss[:, j] is the loss of token j+1, i.e. `ref_loss` at pos j+1.
pub fn inputs_and_targets(windows: &Tensor) -> Result<(Tensor, Tensor)> {
    let t = windows.dim(1)?;
    Ok((
        windows.narrow(1, 0, t - 1)?,
        windows.narrow(1, 1, t - 1)?.contiguous()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Issue 13: a 49,152-id row (SmolLM2's vocabulary) whose logits spread
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

    #[test]
    fn matches_a_direct_computation_and_is_stable() {
        let dev = Device::Cpu;
        let raw = [1.0f32, 2.0, 3.0, 1000.0, 0.0, -1000.0];
        let logits = Tensor::from_slice(&raw, (1, 2, 3), &dev).unwrap();
        let targets = Tensor::from_slice(&[2u32, 0], (1, 2), &dev).unwrap();
        let got = per_token_loss(&logits, &targets)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((got[0][0] as f64 - (lse0 - 3.0)).abs() < 1e-6);
        // huge logits: a naive exp would overflow to inf
        assert!(got[0][1].abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn fused_kernel_matches_the_composed_loss_and_gradient() {
        let dev = Device::Cpu;
        let (b, t, v) = (2, 3, 11);
        let mut rng = crate::util::rng::Rng::new(5);
        let x: Vec<f32> = (0..b * t * v)
            .map(|_| (rng.normal() * 3.0) as f32)
            .collect();
        let tg: Vec<u32> = (0..b * t).map(|i| (i * 7 % v) as u32).collect();
        let targets = Tensor::from_vec(tg, (b, t), &dev).unwrap();
        let w = Tensor::from_vec(
            (0..b * t).map(|i| i as f32 * 0.5).collect::<Vec<_>>(),
            (b, t),
            &dev,
        )
        .unwrap();
        let run = |fused: bool| {
            let var = candle_core::Var::from_vec(x.clone(), (b, t, v), &dev).unwrap();
            let loss = if fused {
                per_token_loss(var.as_tensor(), &targets).unwrap()
            } else {
                composed_per_token_loss(var.as_tensor(), &targets).unwrap()
            };
            let grads = (&loss * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (loss.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        };
        let ((l1, g1), (l2, g2)) = (run(true), run(false));
        for (a, b) in l1.iter().zip(&l2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    fn randn(n: usize, seed: u64, scale: f64) -> Vec<f32> {
        let mut rng = crate::util::rng::Rng::new(seed);
        (0..n).map(|_| (rng.normal() * scale) as f32).collect()
    }

    #[test]
    fn fused_lm_head_matches_matmul_plus_loss_with_dropped_rows() {
        let dev = Device::Cpu;
        let (n, c, v) = (13, 6, 37);
        let tg: Vec<u32> = (0..n).map(|i| (i * 11 % v) as u32).collect();
        let targets = Tensor::from_vec(tg, n, &dev).unwrap();
        // weights with zeros: those rows must give exactly zero gradient.
        let wt: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 1 { 0.0 } else { 0.1 * i as f32 })
            .collect();
        let wt = Tensor::from_vec(wt, n, &dev).unwrap();
        let run = |fused: bool| {
            let h = candle_core::Var::from_vec(randn(n * c, 1, 1.0), (n, c), &dev).unwrap();
            let w = candle_core::Var::from_vec(randn(v * c, 2, 0.5), (v, c), &dev).unwrap();
            let loss = if fused {
                linear_cross_entropy(h.as_tensor(), w.as_tensor(), &targets).unwrap()
            } else {
                let logits = h.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
                composed_per_token_loss(
                    &logits.unsqueeze(0).unwrap(),
                    &targets.unsqueeze(0).unwrap(),
                )
                .unwrap()
                .squeeze(0)
                .unwrap()
            };
            let grads = (&loss * &wt)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (
                flat(&loss),
                flat(grads.get(h.as_tensor()).unwrap()),
                flat(grads.get(w.as_tensor()).unwrap()),
            )
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in
            a.0.iter()
                .zip(&b.0)
                .chain(a.1.iter().zip(&b.1))
                .chain(a.2.iter().zip(&b.2))
        {
            assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
        assert!(
            a.1[c..2 * c].iter().all(|&g| g == 0.0),
            "a dropped row got gradient"
        );
        assert!(a.2.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn fused_lm_head_without_gradient_goes_in_chunks_and_agrees() {
        let dev = Device::Cpu;
        let (n, c, v) = (600, 8, 32768); // 256 rows per chunk: three chunks
        let h = Tensor::from_vec(randn(n * c, 3, 1.0), (n, c), &dev).unwrap();
        let w = Tensor::from_vec(randn(v * c, 4, 0.5), (v, c), &dev).unwrap();
        let tg: Vec<u32> = (0..n).map(|i| (i * 31 % v) as u32).collect();
        let targets = Tensor::from_vec(tg, n, &dev).unwrap();
        let fused = linear_cross_entropy(&h, &w, &targets)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let logits = h.matmul(&w.t().unwrap()).unwrap().unsqueeze(0).unwrap();
        let want = per_token_loss(&logits, &targets.unsqueeze(0).unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, y) in fused.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
