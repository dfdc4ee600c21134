//! Per-token cross-entropy: the one definition of "loss of a token" that the
//! scorer writes as `ref_loss` and the trainer recomputes live. Excess loss
//! only means something because both sides use this function.

use candle_core::{DType, Tensor, D};

use crate::error::Result;

/// logits (B, T, V), targets (B, T) u32 -> loss (B, T) f32, natural log.
///
/// Computed as logsumexp(x) - x[target] with the row max subtracted first, in
/// f32 whatever the model's dtype. The max is detached: its gradient cancels
/// exactly, so tracking it would only cost a backward pass over (B, T, V).
pub fn per_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?.detach(); // (B, T, 1)
    let shifted = logits.broadcast_sub(&max)?; // (B, T, V)
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?; // (B, T, 1)
    let picked = shifted.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?; // (B, T, 1)
    Ok((lse - picked)?.squeeze(D::Minus1)?)
}

/// Splits windows (B, T) into model inputs (B, T-1) and next-token targets
/// (B, T-1): loss[:, j] is the loss of token j+1, i.e. `ref_loss` at pos j+1.
pub fn inputs_and_targets(windows: &Tensor) -> Result<(Tensor, Tensor)> {
    let t = windows.dim(1)?;
    Ok((windows.narrow(1, 0, t - 1)?, windows.narrow(1, 1, t - 1)?.contiguous()?))
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
        let got = per_token_loss(&logits, &targets).unwrap().to_vec2::<f32>().unwrap();
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((got[0][0] as f64 - (lse0 - 3.0)).abs() < 1e-6);
        // huge logits: a naive exp would overflow to inf
        assert!(got[0][1].abs() < 1e-6, "{got:?}");
    }
}
