//! AdamW with decoupled weight decay on matrices only (norm gains are not
//! decayed), clipping by global gradient norm, and moments that can be saved
//! and restored so a resumed run continues exactly. candle_nn's AdamW decays
//! every variable and keeps its moments private, hence this file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    /// Updates applied so far (bias correction uses it).
    pub t: u64,
}

impl AdamW {
    pub fn new(varmap: &VarMap, cfg: AdamWConfig) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned VarMap lock"))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let slots = names
            .into_iter()
            .map(|name| {
                let var = data[name].clone();
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    name: name.clone(),
                    decay: var.rank() >= 2,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { slots, cfg, t: 0 })
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update at learning rate `lr`, gradients scaled by `scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, scale: f64) -> Result<()> {
        self.t += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = if scale != 1.0 {
                (g * scale)?
            } else {
                g.clone()
            };
            s.m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            s.v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&s.m / bc1)? / ((&s.v / bc2)?.sqrt()? + c.eps)?)?;
            let theta = s.var.as_tensor();
            let decayed = if s.decay {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta.clone()
            };
            s.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for s in &self.slots {
            map.insert(format!("m/{}", s.name), s.m.clone());
            map.insert(format!("v/{}", s.name), s.v.clone());
        }
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path, t: u64) -> Result<()> {
        let dev = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let map = candle_core::safetensors::load(path, &dev)
            .with_context(|| format!("reading {}", path.display()))?;
        for s in &mut self.slots {
            for (key, slot) in [
                (format!("m/{}", s.name), &mut s.m),
                (format!("v/{}", s.name), &mut s.v),
            ] {
                let t = map
                    .get(&key)
                    .with_context(|| format!("{}: no moment {key}", path.display()))?;
                if t.dims() != slot.dims() {
                    bail!(
                        "{}: moment {key} has shape {:?}, the model needs {:?}",
                        path.display(),
                        t.dims(),
                        slot.dims()
                    );
                }
                *slot = t.clone();
            }
        }
        self.t = t;
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
        let mut opt = AdamW::new(
            &vm,
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
            },
        )
        .unwrap();
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
}
