//! ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward
//! Training Trillion Parameter Models", SC 2020): the optimizer state is
//! sharded over the ranks. Each variable is owned by one rank, which alone
//! keeps its AdamW moments and updates it; after the update every rank
//! receives the new weights of the variables it does not own. Moments take
//! 1/N of the memory they take without sharding (by whole variables, as
//! PyTorch's ZeroRedundancyOptimizer partitions; balanced by size). The
//! gradients are still summed on every rank (the clipping norm needs them
//! all), so the update is exactly the unsharded one.
//!
//! A checkpoint gathers the moments to rank 0, which writes the same files
//! as an unsharded run: a sharded run resumes on any number of ranks, with
//! or without sharding.

use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarMap;

use super::Comm;
use crate::optim::{AdamW, AdamWConfig};

/// Which rank owns each variable of a model.
pub struct Zero {
    /// Owner of each variable, in the order of their names.
    owner: Vec<usize>,
    rank: usize,
}

/// The owner of each of `sizes` (elements, in name order) among `world`
/// ranks: the largest first, each to the rank that owns the fewest elements
/// so far (the lowest rank on a tie).
pub fn owners(sizes: &[usize], world: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut load = vec![0usize; world.max(1)];
    let mut owner = vec![0usize; sizes.len()];
    for i in order {
        let r = (0..load.len()).min_by_key(|&r| (load[r], r)).unwrap_or(0);
        owner[i] = r;
        load[r] += sizes[i];
    }
    owner
}

impl Zero {
    /// This rank's share of `varmap`, and the optimizer over it.
    pub fn optimizer(comm: &dyn Comm, varmap: &VarMap, cfg: AdamWConfig) -> Result<(Zero, AdamW)> {
        let sizes: Vec<usize> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned VarMap lock"))?;
            let mut named: Vec<(&String, usize)> =
                data.iter().map(|(k, v)| (k, v.elem_count())).collect();
            named.sort();
            named.into_iter().map(|(_, n)| n).collect()
        };
        let zero = Zero {
            owner: owners(&sizes, comm.world()),
            rank: comm.rank(),
        };
        let opt = AdamW::new_owning(varmap, cfg, |i, _| zero.owner[i] == zero.rank)?;
        Ok((zero, opt))
    }

    /// After each rank updated its own variables: the new weights of every
    /// variable from its owner, on every rank (one broadcast a variable, so
    /// no rank ever holds a second copy of the model).
    pub fn share_weights(&self, comm: &dyn Comm, opt: &AdamW) -> Result<()> {
        for (i, (var, owned)) in opt.owned_vars().enumerate() {
            let t = var.as_tensor();
            let mut buf = if owned {
                t.flatten_all()?.to_vec1::<f32>()?
            } else {
                vec![0f32; t.elem_count()]
            };
            comm.broadcast_f32(&mut buf, self.owner[i])?;
            if !owned {
                var.set(&Tensor::from_vec(buf, t.shape(), t.device())?)?;
            }
        }
        Ok(())
    }

    /// Every variable's (m, v) on rank 0, gathered from their owners for a
    /// checkpoint, one variable at a time (no rank copies all its moments
    /// at once); None on the other ranks.
    pub fn gather_moments(
        &self,
        comm: &dyn Comm,
        opt: &AdamW,
    ) -> Result<Option<Vec<(Tensor, Tensor)>>> {
        let mut out = Vec::with_capacity(self.owner.len());
        for (i, (var, owned)) in opt.owned_vars().enumerate() {
            let mine = if owned {
                opt.moments_of(i)?
            } else {
                Vec::new()
            };
            let Some(mut parts) = comm.gather_f32_at_root(&mine)? else {
                continue; // not rank 0
            };
            let mut mv = std::mem::take(&mut parts[self.owner[i]]);
            let t = var.as_tensor();
            let v = mv.split_off(t.elem_count());
            out.push((
                Tensor::from_vec(mv, t.shape(), t.device())?,
                Tensor::from_vec(v, t.shape(), t.device())?,
            ));
        }
        Ok((comm.rank() == 0).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_balance_the_elements_and_cover_every_variable() {
        let sizes = [100, 5, 60, 60, 7, 1, 40];
        let owner = owners(&sizes, 3);
        let mut load = [0usize; 3];
        for (i, &r) in owner.iter().enumerate() {
            load[r] += sizes[i];
        }
        assert_eq!(load.iter().sum::<usize>(), sizes.iter().sum::<usize>());
        assert!(
            load.iter().max().unwrap() - load.iter().min().unwrap() <= 100,
            "{load:?}"
        );
        assert_eq!(owner[0], 0, "the largest goes first, to rank 0");
        assert_eq!(owners(&sizes, 1), vec![0; sizes.len()]);
    }
}
