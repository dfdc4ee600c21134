//! The gradients of a step summed over the ranks: the variables' gradients
//! (in the optimizer's order, sorted by name: the same on every rank)
//! flattened into buckets of about [`BUCKET`] values, one all-reduce a
//! bucket, written back. Buckets bound the extra memory to a few of them.

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
    let mut bucket: Vec<(Var, DType, usize)> = Vec::new();
    let mut flat: Vec<f32> = Vec::new();
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            flat.extend(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
            bucket.push((var.clone(), g.dtype(), g.elem_count()));
        }
        if flat.len() >= BUCKET {
            reduce_bucket(comm, &mut bucket, &mut flat, grads)?;
        }
    }
    reduce_bucket(comm, &mut bucket, &mut flat, grads)
}

/// Values a bucket collects before its all-reduce (16 MB of f32).
pub const BUCKET: usize = 1 << 22;

fn reduce_bucket(
    comm: &dyn Comm,
    bucket: &mut Vec<(Var, DType, usize)>,
    flat: &mut Vec<f32>,
    grads: &mut GradStore,
) -> Result<()> {
    comm.sum_f32(flat)?;
    let mut at = 0;
    for (var, dtype, n) in bucket.drain(..) {
        let t = var.as_tensor();
        let sum = Tensor::from_slice(&flat[at..at + n], t.shape(), t.device())?.to_dtype(dtype)?;
        grads.insert(t, sum);
        at += n;
    }
    flat.clear();
    Ok(())
}
