//! The decoder's ops, each choosing its own implementation: the fused CPU
//! kernels of [`crate::kernels`] (each with its backward) for f32 on the CPU,
//! candle's composed ops on every other device and dtype
//! ([`crate::util::device::use_fused`]). The decoder calls these and never
//! asks which path runs.
//!
//! On the composed path `Mode` matters: candle's fast ops (`rms_norm`,
//! `rope`, `softmax_last_dim`) have no backward and would silently cut the
//! graph, so `Mode::Train` takes their differentiable forms.
//!
//! Shape legend: B batch, T tokens, C hidden, H query heads, K key/value
//! heads, D head dim.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::RmsNorm;

use crate::error::Result;
use crate::kernels;
use crate::model::Mode;
use crate::util::device::use_fused;

/// RMSNorm over the last dimension.
pub fn rms_norm(x: &Tensor, norm: &RmsNorm, mode: Mode) -> Result<Tensor> {
    if use_fused(x.device(), x.dtype()) {
        return kernels::fused::rms_norm(x, norm.weight(), norm.eps() as f32);
    }
    Ok(match mode {
        Mode::Train => norm.forward_diff(x)?,
        Mode::Infer => norm.forward(x)?,
    })
}

/// x: (B, T, heads, D), tables (T, D/2) each -> scale * rope(x) as
/// (B, heads, T, D), halves rotated (the Hugging Face convention).
pub fn rope_to_heads(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    scale: f64,
    mode: Mode,
) -> Result<Tensor> {
    if use_fused(x.device(), x.dtype()) {
        // One pass: transpose, rotate and scale.
        return kernels::fused::rope_to_heads(x, cos, sin, scale as f32);
    }
    let x = x.transpose(1, 2)?.contiguous()?;
    let y = match mode {
        Mode::Train => candle_nn::rotary_emb::rope_slow(&x, cos, sin)?,
        Mode::Infer => candle_nn::rotary_emb::rope(&x, cos, sin)?,
    };
    Ok(if scale == 1.0 { y } else { (y * scale)? })
}

/// Causal self-attention of already scaled and rotated heads: q (B, H, T, D),
/// k (B, K, T, D), v (B, T, K, D) -> (B, T, H*D), each query group sharing
/// its key/value head.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, mode: Mode) -> Result<Tensor> {
    if use_fused(q.device(), q.dtype()) {
        // Scores, causal softmax and mix per head in one op.
        return kernels::attention::causal_attention(q, k, v);
    }
    let (b, h, t, d) = q.dims4()?;
    let groups = h / k.dim(1)?;
    let v = v.transpose(1, 2)?.contiguous()?; // (B, K, T, D)
    let k = candle_transformers::utils::repeat_kv(k.clone(), groups)?.contiguous()?; // (B, H, T, D)
    let v = candle_transformers::utils::repeat_kv(v, groups)?.contiguous()?; // (B, H, T, D)
    let scores = q.matmul(&k.t()?)?; // (B, H, T, T)
    let scores = scores.broadcast_add(&causal_mask(t, q.dtype(), q.device())?)?;
    let probs = match mode {
        Mode::Train => candle_nn::ops::softmax(&scores, D::Minus1)?,
        Mode::Infer => candle_nn::ops::softmax_last_dim(&scores)?,
    };
    let y = probs.matmul(&v)?; // (B, H, T, D)
    Ok(y.transpose(1, 2)?.reshape((b, t, h * d))?)
}

/// silu(gate) * up, elementwise.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if use_fused(gate.device(), gate.dtype()) {
        return kernels::fused::swiglu(gate, up);
    }
    Ok((gate.silu()? * up)?)
}

/// (T, T): 0 on and below the diagonal, -inf above; built on `dev`.
fn causal_mask(t: usize, dtype: DType, dev: &Device) -> Result<Tensor> {
    let keep = Tensor::tril2(t, DType::U8, dev)?; // 1 on and below the diagonal
    let zero = Tensor::zeros((t, t), dtype, dev)?;
    let blocked = Tensor::full(f32::NEG_INFINITY, (t, t), dev)?.to_dtype(dtype)?;
    Ok(keep.where_cond(&zero, &blocked)?)
}
