//! Per-token cross-entropy: the one definition of "loss of a token" that the
//! scorer writes as `ref_loss` and the trainer recomputes live. Excess loss
//! only means something because both sides use this function.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, DType, Layout, MetalStorage, Shape, Tensor, D,
};

use crate::error::Result;
pub use crate::kernels::cross_entropy::linear_cross_entropy;
use crate::util::device::use_fused;

/// logits (B, T, V), targets (B, T) u32 -> loss (B, T) f32, natural log.
///
/// loss = logsumexp(x) - x[target], with the row max subtracted first, in f32
/// whatever the model's dtype. On the CPU this is one fused kernel with its
/// own backward (softmax - onehot), which never materialises the (B, T, V)
/// log-softmax; elsewhere it is composed of candle ops.
pub fn per_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.to_dtype(DType::F32)?;
    if use_fused(logits.device(), DType::F32) {
        let flat = logits.reshape((b * t, v))?.contiguous()?; // (N, V)
        let tgt = targets.reshape(b * t)?.contiguous()?; // (N,)
        return Ok(crate::kernels::cross_entropy::cross_entropy(&flat, &tgt)?.reshape((b, t))?);
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

/// The LM head and the loss: hidden (B, T, C), weight (V, C), targets (B, T)
/// u32 -> loss (B, T) f32, equal to `per_token_loss(hidden @ weight^T,
/// targets)`. The (B, T, V) logits are never graph nodes: on the CPU one
/// fused kernel ([`linear_cross_entropy`]); elsewhere candle's ops over row
/// chunks of at most [`CHUNK_BYTES`] of logits, forward and backward, so a
/// 152k vocabulary at 16 x 1024 tokens holds ~128 MB of logits at a time
/// instead of 10 GB.
pub fn lm_head_losses(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, c) = hidden.dims3()?;
    let flat = hidden.reshape((b * t, c))?;
    let targets = targets.flatten_all()?;
    let loss = if use_fused(hidden.device(), hidden.dtype()) {
        linear_cross_entropy(&flat, weight, &targets)?
    } else {
        let rows = (CHUNK_BYTES / (4 * weight.dim(0)?)).max(1);
        chunked_lm_head_losses(&flat, weight, &targets, rows)?
    };
    Ok(loss.reshape((b, t))?)
}

/// The most f32 logits the composed LM head holds at once, in bytes.
pub const CHUNK_BYTES: usize = 128 << 20;

/// hidden (N, C), weight (V, C), targets (N,) -> loss (N,), `rows` rows of
/// logits at a time, from candle ops on any device. The loss is computed
/// without a graph, then attached to `hidden` and `weight` by an op whose
/// backward recomputes each chunk's logits: softmax - onehot, scaled by the
/// incoming gradient, through two matmuls per chunk.
pub fn chunked_lm_head_losses(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    rows: usize,
) -> Result<Tensor> {
    let (h, w) = (hidden.detach(), weight.detach());
    let n = h.dim(0)?;
    let mut parts = Vec::with_capacity(n.div_ceil(rows));
    for start in (0..n).step_by(rows) {
        let len = rows.min(n - start);
        let logits = h.narrow(0, start, len)?.matmul(&w.t()?)?; // (len, V)
        let tg = targets.narrow(0, start, len)?;
        parts.push(per_token_loss(&logits.unsqueeze(0)?, &tg.unsqueeze(0)?)?.squeeze(0)?);
    }
    // A fresh buffer of N values: the op's forward hands it on as it is.
    let loss = Tensor::cat(&parts, 0)?.contiguous()?.copy()?;
    let op = ChunkedLmHeadGrad {
        targets: targets.clone(),
        rows,
    };
    Ok(hidden.apply_op3(weight, &loss, op)?)
}

/// Forward: the third input (the loss, computed without a graph). Backward:
/// the LM head's gradients for `hidden` and `weight`, chunk by chunk.
struct ChunkedLmHeadGrad {
    targets: Tensor,
    rows: usize,
}

/// The loss tensor handed on by the forward must be a whole, contiguous buffer.
fn whole(l: &Layout) -> candle_core::Result<()> {
    if l.is_contiguous() && l.start_offset() == 0 {
        Ok(())
    } else {
        candle_core::bail!("chunked LM head: the loss is not a whole contiguous buffer")
    }
}

impl CustomOp3 for ChunkedLmHeadGrad {
    fn name(&self) -> &'static str {
        "chunked-lm-head-loss"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        loss: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        whole(l)?;
        Ok((loss.try_clone(l)?, l.shape().clone()))
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        loss: &CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        whole(l)?;
        Ok((loss.try_clone(l)?, l.shape().clone()))
    }

    fn metal_fwd(
        &self,
        _: &MetalStorage,
        _: &Layout,
        _: &MetalStorage,
        _: &Layout,
        loss: &MetalStorage,
        l: &Layout,
    ) -> candle_core::Result<(MetalStorage, Shape)> {
        whole(l)?;
        Ok((loss.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        _loss: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (h, w) = (hidden.detach(), weight.detach());
        let n = h.dim(0)?;
        let mut dh = Vec::with_capacity(n.div_ceil(self.rows));
        let mut dw = w.zeros_like()?.to_dtype(DType::F32)?;
        for start in (0..n).step_by(self.rows) {
            let len = self.rows.min(n - start);
            let hc = h.narrow(0, start, len)?; // (len, C)
            let logits = hc.matmul(&w.t()?)?.to_dtype(DType::F32)?; // (len, V)
            let max = logits.max_keepdim(D::Minus1)?;
            let e = logits.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?; // softmax
            let g = grad.narrow(0, start, len)?.unsqueeze(1)?; // (len, 1)
            let tg = self
                .targets
                .narrow(0, start, len)?
                .unsqueeze(1)?
                .contiguous()?;
            // g * (softmax - onehot): subtract g at each row's target.
            let d = p.broadcast_mul(&g)?.scatter_add(&tg, &g.neg()?, 1)?; // (len, V)
            let d = d.to_dtype(h.dtype())?;
            dh.push(d.matmul(&w)?); // (len, C)
            dw = (dw + d.t()?.matmul(&hc)?.to_dtype(DType::F32)?)?; // (V, C)
        }
        let dh = Tensor::cat(&dh, 0)?;
        Ok((Some(dh), Some(dw.to_dtype(w.dtype())?), None))
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

    /// The composed LM head (every non-CPU device) in chunks of 4 rows, one
    /// of them short, against the fused kernel: losses and both gradients,
    /// with rows of weight 0.
    #[test]
    fn chunked_composed_lm_head_matches_the_fused_kernel() {
        let dev = Device::Cpu;
        let (b, t, c, v) = (2, 7, 6, 41);
        let tg: Vec<u32> = (0..b * t).map(|i| (i * 13 % v) as u32).collect();
        let targets = Tensor::from_vec(tg, (b, t), &dev).unwrap();
        let wt: Vec<f32> = (0..b * t)
            .map(|i| {
                if i % 4 == 2 {
                    0.0
                } else {
                    0.3 + 0.1 * i as f32
                }
            })
            .collect();
        let wt = Tensor::from_vec(wt, (b, t), &dev).unwrap();
        let run = |chunked: bool| {
            let h = candle_core::Var::from_vec(randn(b * t * c, 7, 1.0), (b, t, c), &dev).unwrap();
            let w = candle_core::Var::from_vec(randn(v * c, 8, 0.5), (v, c), &dev).unwrap();
            let loss = if chunked {
                let flat = h.as_tensor().reshape((b * t, c)).unwrap();
                chunked_lm_head_losses(&flat, w.as_tensor(), &targets.flatten_all().unwrap(), 4)
                    .unwrap()
                    .reshape((b, t))
                    .unwrap()
            } else {
                lm_head_losses(h.as_tensor(), w.as_tensor(), &targets).unwrap()
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
        let (a, f) = (run(true), run(false));
        for (name, x, y) in [
            ("loss", &a.0, &f.0),
            ("d hidden", &a.1, &f.1),
            ("d weight", &a.2, &f.2),
        ] {
            assert_eq!(x.len(), y.len());
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() < 1e-5 * (1.0 + q.abs()), "{name}: {p} vs {q}");
            }
        }
        assert!(
            a.1[2 * c..3 * c].iter().all(|&g| g == 0.0),
            "a dropped row got gradient"
        );
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
