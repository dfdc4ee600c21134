//! AdamW with decoupled weight decay on matrices only (norm gains are not
//! decayed), clipping by global gradient norm, and moments that can be saved
//! and restored so a resumed run continues exactly. candle_nn's AdamW decays
//! every variable and keeps its moments private, hence this file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Storage, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The defaults of `trainer train` (and of most LLM pretraining recipes).
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    /// This rank updates the variable and keeps its moments (all, unless
    /// sharded: `crate::dist::zero`).
    owned: bool,
    /// Empty when not owned.
    m: Tensor,
    v: Tensor,
    decay: bool,
}

pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    /// Updates applied so far (bias correction uses it).
    pub t: u64,
    /// Update in place with the kernels below (CPU); otherwise candle ops.
    fused: bool,
}

impl AdamW {
    pub fn new(varmap: &VarMap, cfg: AdamWConfig) -> Result<Self> {
        Self::new_owning(varmap, cfg, |_, _| true)
    }

    /// An optimizer that updates (and keeps moments for) only the variables
    /// `owns(index, elements)` picks, in the order of their names: one
    /// rank's share under ZeRO stage 1 (`crate::dist::zero`).
    pub fn new_owning(
        varmap: &VarMap,
        cfg: AdamWConfig,
        mut owns: impl FnMut(usize, usize) -> bool,
    ) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned VarMap lock"))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let slots = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let var = data[name].clone();
                let owned = owns(i, var.elem_count());
                // Two buffers: the fused update writes the moments in place.
                let moment = || -> Result<Tensor> {
                    Ok(if owned {
                        var.as_tensor().zeros_like()?
                    } else {
                        Tensor::zeros(0, var.dtype(), var.device())?
                    })
                };
                Ok(Slot {
                    name: name.clone(),
                    decay: var.rank() >= 2,
                    owned,
                    m: moment()?,
                    v: moment()?,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let fused = slots
            .iter()
            .all(|s| shared::util::device::use_fused(s.var.device(), s.var.dtype()));
        Ok(AdamW {
            slots,
            cfg,
            t: 0,
            fused,
        })
    }

    /// The variables, in the order of their names (the same on every rank).
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.slots.iter().map(|s| &s.var)
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for s in &self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            sq += match (&*g.storage_and_layout().0, g.layout().contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) if self.fused => v[a..b]
                    .par_chunks(1 << 14)
                    .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                    .sum(),
                _ => g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
            };
        }
        Ok(sq.sqrt())
    }

    /// One update at learning rate `lr`, gradients scaled by `scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, scale: f64) -> Result<()> {
        self.t += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for s in self.slots.iter_mut().filter(|s| s.owned) {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let decay = if s.decay {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            if self.fused {
                // Three in-place passes, no allocation: m, v, then the weights.
                let g = g.contiguous()?;
                let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
                let scale = scale as f32;
                s.m.inplace_op2(
                    &g,
                    &Moment {
                        beta: b1,
                        scale,
                        square: false,
                    },
                )?;
                s.v.inplace_op2(
                    &g,
                    &Moment {
                        beta: b2,
                        scale,
                        square: true,
                    },
                )?;
                let update = Update {
                    lr: lr as f32,
                    bc1: bc1 as f32,
                    bc2: bc2 as f32,
                    eps: c.eps as f32,
                    decay: decay as f32,
                };
                s.var.as_tensor().inplace_op3(&s.m, &s.v, &update)?;
                continue;
            }
            let g = if scale != 1.0 {
                (g * scale)?
            } else {
                g.clone()
            };
            s.m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            s.v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&s.m / bc1)? / ((&s.v / bc2)?.sqrt()? + c.eps)?)?;
            let decayed = (s.var.as_tensor() * decay)?;
            s.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Writes the moments of every variable: this optimizer's own, or, for
    /// a sharded one, `moments` (each variable's (m, v), in name order).
    pub fn save(&self, path: &Path, moments: Option<&[(Tensor, Tensor)]>) -> Result<()> {
        let mut map = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            let (m, v) = match moments {
                Some(all) => all[i].clone(),
                None if s.owned => (s.m.clone(), s.v.clone()),
                None => bail!("a sharded optimizer saves the moments gathered from every rank"),
            };
            map.insert(format!("m/{}", s.name), m);
            map.insert(format!("v/{}", s.name), v);
        }
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The variables, with whether this rank owns each, in name order.
    pub fn owned_vars(&self) -> impl Iterator<Item = (&Var, bool)> {
        self.slots.iter().map(|s| (&s.var, s.owned))
    }

    /// The moments of variable `i` (name order), flat: m then v.
    pub fn moments_of(&self, i: usize) -> Result<Vec<f32>> {
        let s = &self.slots[i];
        let mut out = s.m.flatten_all()?.to_vec1::<f32>()?;
        out.extend(s.v.flatten_all()?.to_vec1::<f32>()?);
        Ok(out)
    }

    pub fn load(&mut self, path: &Path, t: u64) -> Result<()> {
        let dev = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        // Mapped, and only this rank's moments read (a sharded optimizer
        // never holds the others').
        let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .with_context(|| format!("reading {}", path.display()))?;
        for s in self.slots.iter_mut().filter(|s| s.owned) {
            for (key, slot) in [
                (format!("m/{}", s.name), &mut s.m),
                (format!("v/{}", s.name), &mut s.v),
            ] {
                let t = &file
                    .load(&key, &dev)
                    .with_context(|| format!("{}: no moment {key}", path.display()))?;
                if t.dims() != slot.dims() {
                    bail!(
                        "{}: moment {key} has shape {:?}, the model needs {:?}",
                        path.display(),
                        t.dims(),
                        slot.dims()
                    );
                }
                // A copy: the fused update writes moments in place, and the
                // loaded tensors may share storage.
                *slot = t.copy()?;
            }
        }
        self.t = t;
        Ok(())
    }
}

fn f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("AdamW: parameters and moments must be contiguous f32"),
    }
}

fn f32_ref<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("AdamW: gradients must be contiguous f32"),
    }
}

const CHUNK: usize = 1 << 14;

/// m = beta m + (1 - beta) (scale g), or with (scale g)^2 for the second moment.
struct Moment {
    beta: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (m, g) = (f32_mut(s1, l1)?, f32_ref(s2, l2)?);
        let (b, a, sc, sq) = (self.beta, 1.0 - self.beta, self.scale, self.square);
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = g * sc;
                    *m = b * *m + a * if sq { g * g } else { g };
                }
            });
        Ok(())
    }
}

/// theta = decay theta - lr (m / bc1) / (sqrt(v / bc2) + eps).
struct Update {
    lr: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    decay: f32,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (p, m, v) = (f32_mut(s1, l1)?, f32_ref(s2, l2)?, f32_ref(s3, l3)?);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    let u = (m / self.bc1) / ((v / self.bc2).sqrt() + self.eps);
                    *p = *p * self.decay - self.lr * u;
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn one_step_matches_the_formula_and_skips_decay_on_vectors() {
        let vm = VarMap::new();
        let dev = Device::Cpu;
        let w = vm
            .get((1, 2), "w", candle_nn::Init::Const(1.0), DType::F32, &dev)
            .unwrap();
        let b = vm
            .get(2, "b", candle_nn::Init::Const(1.0), DType::F32, &dev)
            .unwrap();
        let loss = ((&w * 3.0).unwrap().sum_all().unwrap()
            + (&b * 2.0).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(&vm, AdamWConfig::default()).unwrap();
        assert!((opt.grad_norm(&grads).unwrap() - (2.0 * 9.0f64 + 2.0 * 4.0).sqrt()).abs() < 1e-5);
        opt.step(&grads, 0.01, 1.0).unwrap();
        // First Adam step moves by lr * sign(g); decay multiplies matrices by (1 - lr*wd).
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        assert!(
            (wv[0] - (1.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6,
            "{wv:?}"
        );
        assert!((bv[0] - (1.0 - 0.01)).abs() < 1e-6, "{bv:?}");
    }

    /// The in-place kernels and the candle-op formula agree over several
    /// steps, with clipping and both decay kinds.
    #[test]
    fn fused_update_matches_the_composed_one() {
        let dev = Device::Cpu;
        let run = |fused: bool| {
            let mut vm = VarMap::new();
            let w = vm
                .get(
                    (3, 5),
                    "w",
                    candle_nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                    DType::F32,
                    &dev,
                )
                .unwrap();
            let b = vm
                .get(5, "b", candle_nn::Init::Const(0.5), DType::F32, &dev)
                .unwrap();
            // Same start for both runs.
            vm.set_one(
                "w",
                Tensor::arange(0f32, 15.0, &dev)
                    .unwrap()
                    .reshape((3, 5))
                    .unwrap()
                    .sin()
                    .unwrap(),
            )
            .unwrap();
            let mut opt = AdamW::new(&vm, AdamWConfig::default()).unwrap();
            opt.fused = fused;
            for step in 0..4 {
                let x = Tensor::arange(step as f32, step as f32 + 5.0, &dev).unwrap();
                let loss = (w
                    .broadcast_mul(&x)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    + (&b * &x).unwrap().sum_all().unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                let norm = opt.grad_norm(&grads).unwrap();
                opt.step(&grads, 0.01, (1.0 / norm).min(1.0)).unwrap();
            }
            let mut out = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            out.extend(b.to_vec1::<f32>().unwrap());
            out
        };
        let (a, c) = (run(true), run(false));
        for (x, y) in a.iter().zip(&c) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }
}
