//! Per-token cross-entropy: the one definition of "loss of a token" that the
//! scorer writes as `ref_loss` and the trainer recomputes live. Excess loss
//! only means something because both sides use this function.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::error::Result;

/// logits (B, T, V), targets (B, T) u32 -> loss (B, T) f32, natural log.
///
/// loss = logsumexp(x) - x[target], with the row max subtracted first, in f32
/// whatever the model's dtype. On the CPU this is one fused kernel with its
/// own backward (softmax - onehot), which never materialises the (B, T, V)
/// log-softmax; elsewhere it is composed of candle ops.
pub fn per_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.to_dtype(DType::F32)?;
    if logits.device().is_cpu() {
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

fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("fused cross-entropy: {what} must be contiguous"),
    }
}

/// (max, log-sum-exp) of one row of logits.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
    (max, max + sum.ln())
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
                        *oj = gi * (xj - lse).exp();
                    }
                    o[t] -= gi;
                }
                Ok::<(), candle_core::Error>(())
            })?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
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
        let mut rng = crate::rng::Rng::new(5);
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
}
