//! Hugging Face checkpoint directories: `config.json` + `model.safetensors`
//! (or shards listed by `model.safetensors.index.json`) + `tokenizer.json`.
//! Pickle checkpoints (`*.bin`, `*.pt`) are refused: loading them runs code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::model::config::LlamaConfig;
use crate::model::{expected_tensors, Llama, Mode};
use crate::util::atomic;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Says what is wrong with a `--model` / `--init` path that is neither a
/// GGUF file nor a checkpoint directory: no such path, a file inside a
/// checkpoint, a training run's directory (whose model is in `final/`), a
/// directory without `config.json`.
pub fn check_model_path(path: &Path) -> Result<()> {
    if crate::util::gguf::is_gguf(path) {
        return Ok(());
    }
    let what = "expected a checkpoint directory (config.json + model.safetensors) or a GGUF file";
    if !path.exists() {
        return Err(Error::checkpoint(
            path,
            format!("no such file or directory; {what}"),
        ));
    }
    if path.is_file() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let inside = [CONFIG_FILE, WEIGHTS_FILE, INDEX_FILE, TOKENIZER_FILE]
            .contains(&name.as_ref())
            || name.ends_with(".safetensors");
        let parent = path.parent().unwrap_or(Path::new("."));
        return Err(Error::checkpoint(
            path,
            if inside {
                format!(
                    "a file inside a checkpoint: pass its directory, {}",
                    parent.display()
                )
            } else {
                format!("not a GGUF file; {what}")
            },
        ));
    }
    if path.join(CONFIG_FILE).is_file() {
        return Ok(());
    }
    let final_dir = path.join("final");
    Err(Error::checkpoint(
        path,
        if final_dir.join(CONFIG_FILE).is_file() {
            format!(
                "a training run's directory, not a checkpoint: did you mean {}?",
                final_dir.display()
            )
        } else if path.join("checkpoints").is_dir() {
            format!(
                "a training run's directory without final/ yet: pass one of {}/step-*",
                path.join("checkpoints").display()
            )
        } else {
            format!("no {CONFIG_FILE}; {what}")
        },
    ))
}

/// The tokenizer a model carries: a GGUF file's own, or a checkpoint
/// directory's `tokenizer.json` (None where it has none).
pub fn own_tokenizer(model: &Path) -> Option<PathBuf> {
    if model.is_file() {
        return crate::util::gguf::is_gguf(model).then(|| model.to_path_buf());
    }
    let p = model.join(TOKENIZER_FILE);
    p.is_file().then_some(p)
}

/// A loaded checkpoint: its config and its weights, checked against the config.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: LlamaConfig,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint directory (or a GGUF file); weights are
    /// converted to `dtype`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if crate::util::gguf::is_gguf(dir) {
            let (config, tensors) = crate::model::gguf::load(dir, dtype, device)?;
            return Ok(Checkpoint {
                dir: dir.to_path_buf(),
                config,
                tensors,
            });
        }
        check_model_path(dir)?;
        let config = LlamaConfig::load(&dir.join(CONFIG_FILE)).map_err(|e| match e {
            Error::Io { cause, .. } => {
                Error::checkpoint(dir, format!("cannot read {CONFIG_FILE}: {cause}"))
            }
            other => other,
        })?;
        let files = weight_files(dir)?;
        let mut raw = HashMap::new();
        for file in &files {
            let loaded = candle_core::safetensors::load(file, device).map_err(|e| {
                Error::checkpoint(file, format!("not a readable safetensors file: {e}"))
            })?;
            raw.extend(loaded);
        }
        let tensors = check_tensors(dir, &config, raw, dtype)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            tensors,
        })
    }

    /// A gradient-free model for scoring and evaluation.
    pub fn infer_model(&self, device: &Device) -> Result<Llama> {
        let dtype = self
            .tensors
            .values()
            .next()
            .map(|t| t.dtype())
            .unwrap_or(DType::F32);
        let vb = VarBuilder::from_tensors(self.tensors.clone(), dtype, device);
        Llama::load(vb, &self.config, Mode::Infer)
    }

    /// The weights as trainable variables.
    pub fn into_varmap(self) -> Result<VarMap> {
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Invalid("poisoned VarMap lock".into()))?;
            for (name, t) in self.tensors {
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Ok(varmap)
    }

    /// A short fingerprint of the weights and config (hash of the files' bytes).
    pub fn fingerprint(dir: &Path) -> Result<String> {
        let mut paths = vec![dir.join(CONFIG_FILE)];
        if dir.is_file() {
            paths = vec![dir.to_path_buf()]; // a GGUF file holds everything
        } else {
            paths.extend(weight_files(dir)?);
        }
        let mut h = crate::util::hash::Hasher::new();
        for p in paths {
            h.update_file(&p)?;
        }
        Ok(h.finish())
    }
}

/// The safetensors files of a checkpoint directory.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::checkpoint(&index, "no \"weight_map\" object"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        return files
            .into_iter()
            .map(|f| {
                if f.contains('/') || f.contains("..") {
                    return Err(Error::checkpoint(
                        &index,
                        format!("weight file {f:?} is outside the checkpoint"),
                    ));
                }
                let p = dir.join(&f);
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(Error::checkpoint(
                        &index,
                        format!("lists {f}, which does not exist"),
                    ))
                }
            })
            .collect();
    }
    let pickles: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".bin") || n.ends_with(".pt") || n.ends_with(".pth") || n.ends_with(".ckpt")
        })
        .collect();
    if !pickles.is_empty() {
        return Err(Error::checkpoint(
            dir,
            format!(
                "only pickle weights found ({}): refused, since loading a pickle runs code; convert it to {WEIGHTS_FILE}",
                pickles.join(", ")
            ),
        ));
    }
    Err(Error::checkpoint(
        dir,
        format!("no {WEIGHTS_FILE} or {INDEX_FILE}"),
    ))
}

/// Checks names, shapes and values against the config; converts to `dtype`.
fn check_tensors(
    dir: &Path,
    cfg: &LlamaConfig,
    mut raw: HashMap<String, Tensor>,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let t = raw.remove(&name).ok_or_else(|| {
            Error::checkpoint(
                dir,
                format!("missing tensor {name} (expected shape {shape:?})"),
            )
        })?;
        if t.dims() != shape.as_slice() {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "tensor {name} has shape {:?}, the config expects {shape:?}",
                    t.dims()
                ),
            ));
        }
        let t = t.to_dtype(dtype)?;
        // x * 0 is NaN exactly where x is NaN or infinite.
        let probe = (t.to_dtype(DType::F32)? * 0.0)?
            .sum_all()?
            .to_scalar::<f32>()?;
        if !probe.is_finite() {
            return Err(Error::checkpoint(
                dir,
                format!("tensor {name} holds NaN or infinite values"),
            ));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// Writes a checkpoint directory atomically: files go to a temporary sibling
/// directory, which is renamed onto `dir` only when complete.
pub fn save(
    dir: &Path,
    cfg: &LlamaConfig,
    varmap: &VarMap,
    tokenizer_json: Option<&Path>,
) -> Result<()> {
    atomic::write_dir(dir, |tmp| write_files(tmp, cfg, varmap, tokenizer_json))
}

/// Writes `config.json`, `model.safetensors` (f32, Hugging Face names, no
/// `lm_head.weight` when tied) and a copy of `tokenizer.json` into `dir`.
pub fn write_files(
    dir: &Path,
    cfg: &LlamaConfig,
    varmap: &VarMap,
    tokenizer_json: Option<&Path>,
) -> Result<()> {
    let mut tensors = HashMap::new();
    {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Invalid("poisoned VarMap lock".into()))?;
        for (name, _) in expected_tensors(cfg) {
            let var = data
                .get(&name)
                .ok_or_else(|| Error::checkpoint(dir, format!("the model has no tensor {name}")))?;
            tensors.insert(name, var.as_tensor().to_dtype(DType::F32)?);
        }
    }
    let weights = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights)
        .map_err(|e| Error::checkpoint(&weights, e.to_string()))?;
    let json = serde_json::to_string_pretty(&cfg.to_hf_json())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    atomic::write_plain(&dir.join(CONFIG_FILE), json.as_bytes())?;
    if let Some(tok) = tokenizer_json {
        let bytes = std::fs::read(tok).map_err(|e| Error::io(tok, e))?;
        atomic::write_plain(&dir.join(TOKENIZER_FILE), &bytes)?;
    }
    Ok(())
}

/// Fresh weights for `cfg`, drawn from a seeded generator: matrices N(0, std),
/// norm gains 1, biases 0. Deterministic for a given seed on every platform.
pub fn init_varmap(cfg: &LlamaConfig, seed: u64, std: f64, device: &Device) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Invalid("poisoned VarMap lock".into()))?;
        for (name, shape) in expected_tensors(cfg) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if shape.len() == 1 {
                vec![1.0; n]
            } else {
                let mut rng = crate::util::rng::Rng::derive(seed, &name);
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            };
            let t = Tensor::from_vec(values, shape, device)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// The model over the f32 weights of `varmap`, computing in `dtype`. In
/// `Mode::Train` it is differentiable, so gradients reach the f32 weights: in
/// f32 it reads the variables themselves, in a half dtype copies taken now (a
/// step takes new ones). In `Mode::Infer` it is gradient-free, over detached
/// views (f32, nothing copied) or half copies.
pub fn model_over(
    varmap: &VarMap,
    cfg: &LlamaConfig,
    dtype: DType,
    device: &Device,
    mode: Mode,
) -> Result<Llama> {
    if dtype == DType::F32 && mode == Mode::Train {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        return Llama::load(vb, cfg, mode);
    }
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned VarMap lock".into()))?;
    let mut tensors = HashMap::with_capacity(data.len());
    for (name, var) in data.iter() {
        let t = match mode {
            Mode::Train => var.as_tensor().clone(),
            Mode::Infer => var.as_tensor().detach(),
        };
        let t = if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        };
        tensors.insert(name.clone(), t);
    }
    drop(data);
    Llama::load(VarBuilder::from_tensors(tensors, dtype, device), cfg, mode)
}
