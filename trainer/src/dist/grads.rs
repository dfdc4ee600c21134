//! The gradients of a step summed over the ranks: every variable's gradient
//! flattened into one buffer (variables in the optimizer's order, sorted by
//! name: the same on every rank), one all-reduce, written back.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::Comm;

/// Sums `grads` over the ranks in place; with one rank, leaves them as they are.
pub fn sum_over_ranks<'a>(
    comm: &dyn Comm,
    vars: impl Iterator<Item = &'a Var>,
    grads: &mut GradStore,
) -> Result<()> {
    if comm.world() == 1 {
        return Ok(());
    }
    let mut have = Vec::new();
    let mut flat: Vec<f32> = Vec::new();
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            flat.extend(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
            have.push((var.clone(), g.dtype(), g.elem_count()));
        }
    }
    comm.sum_f32(&mut flat)?;
    let mut at = 0;
    for (var, dtype, n) in have {
        let t = var.as_tensor();
        let sum = Tensor::from_slice(&flat[at..at + n], t.shape(), t.device())?.to_dtype(dtype)?;
        grads.insert(t, sum);
        at += n;
    }
    Ok(())
}
