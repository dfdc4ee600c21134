//! A Llama-family decoder with Hugging Face weight names, returning logits for
//! every position. The families of `config.rs` (Llama, Mistral, Qwen2, Qwen3)
//! are options on these blocks: projection biases, per-head q/k norms and
//! rotary scaling.
//!
//! Shape legend: B batch, T tokens, C hidden, H query heads, K key/value heads,
//! D head dim, I SwiGLU width, V vocabulary.
//!
//! Two modes share one code path: `Mode::Train` carries gradients,
//! `Mode::Infer` may use ops without a backward. Each op (`ops.rs`, and the LM
//! head's loss in `loss.rs`) picks the fused CPU kernel or candle's composed
//! ops itself; nothing here asks which runs.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use crate::error::Result;
use crate::model::config::{LlamaConfig, RopeScaling};
use crate::model::loss::{inputs_and_targets, lm_head_losses};
use crate::model::ops;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Differentiable ops: use for training.
    Train,
    /// Fused, gradient-free ops: use for scoring and evaluation.
    Infer,
}

/// Every tensor a checkpoint of `cfg` holds, with its shape, in HF names.
pub fn expected_tensors(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, c])];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.extend([
            (format!("{p}.input_layernorm.weight"), vec![c]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, c]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, c]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, c]),
            (format!("{p}.self_attn.o_proj.weight"), vec![c, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![c]),
            (format!("{p}.mlp.gate_proj.weight"), vec![i, c]),
            (format!("{p}.mlp.up_proj.weight"), vec![i, c]),
            (format!("{p}.mlp.down_proj.weight"), vec![c, i]),
        ]);
        if cfg.has_qkv_bias() {
            out.extend([
                (format!("{p}.self_attn.q_proj.bias"), vec![q]),
                (format!("{p}.self_attn.k_proj.bias"), vec![kv]),
                (format!("{p}.self_attn.v_proj.bias"), vec![kv]),
            ]);
        }
        if cfg.has_o_bias() {
            out.push((format!("{p}.self_attn.o_proj.bias"), vec![c]));
        }
        if cfg.has_qk_norm() {
            out.extend([
                (format!("{p}.self_attn.q_norm.weight"), vec![cfg.head_dim]),
                (format!("{p}.self_attn.k_norm.weight"), vec![cfg.head_dim]),
            ]);
        }
    }
    out.push(("model.norm.weight".to_string(), vec![c]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, c]));
    }
    out
}

struct Norm {
    inner: RmsNorm,
}

impl Norm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Norm {
            inner: RmsNorm::new(vb.get(size, "weight")?, eps),
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        ops::rms_norm(x, &self.inner, mode)
    }
}

fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear::new(vb.get((out_dim, in_dim), "weight")?, None))
}

fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let b = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(vb.get((out_dim, in_dim), "weight")?, b))
}

/// Inverse rotary frequencies, scaled as `rope_scaling` says (transformers'
/// `_compute_linear_scaling_rope_parameters` / `_compute_llama3_parameters`).
fn inv_freqs(cfg: &LlamaConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    let scaled = |f: f64| -> f64 {
        match &cfg.rope_scaling {
            None => f,
            Some(RopeScaling::Linear { factor }) => f / factor,
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            }) => {
                let old = *old as f64;
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < old / high_freq_factor {
                    f // high frequencies: kept
                } else if wavelen > old / low_freq_factor {
                    f / factor // low frequencies: scaled
                } else {
                    let smooth =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            }
        }
    };
    // transformers computes the base frequencies in f32, then scales them.
    base.into_iter()
        .map(|f| scaled(f as f32 as f64) as f32)
        .collect()
}

/// Rotary tables in the Hugging Face convention (halves rotated, not interleaved).
struct Rotary {
    cos: Tensor, // (T_max, D/2)
    sin: Tensor, // (T_max, D/2)
}

impl Rotary {
    fn new(cfg: &LlamaConfig, len: usize, dtype: DType, dev: &Device) -> Result<Self> {
        let d = cfg.head_dim;
        let inv_freq = inv_freqs(cfg);
        // transformers multiplies in f32: do the same so the angles match bit for bit.
        let mut cos = Vec::with_capacity(len * d / 2);
        let mut sin = Vec::with_capacity(len * d / 2);
        for t in 0..len {
            for f in &inv_freq {
                let a = t as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (len, d / 2), dev)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (len, d / 2), dev)?.to_dtype(dtype)?,
        })
    }

    /// The tables for the first t positions: (t, D/2) each.
    fn tables(&self, t: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?))
    }

    /// x: (B, T, heads, D) -> scale * rope(x) as (B, heads, T, D).
    fn to_heads(&self, x: &Tensor, scale: f64, mode: Mode) -> Result<Tensor> {
        let (cos, sin) = self.tables(x.dim(1)?)?;
        ops::rope_to_heads(x, &cos, &sin, scale, mode)
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3: RMSNorm over each head's D values of q and k, before the rotation.
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (c, d) = (cfg.hidden_size, cfg.head_dim);
        let (h, k) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let (qkv_bias, o_bias) = (cfg.has_qkv_bias(), cfg.has_o_bias());
        let qk_norm = |name: &str| -> Result<Option<Norm>> {
            cfg.has_qk_norm()
                .then(|| Norm::load(d, cfg.rms_norm_eps, vb.pp(name)))
                .transpose()
        };
        Ok(Attention {
            q_proj: linear_b(c, h * d, qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear_b(c, k * d, qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear_b(c, k * d, qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear_b(h * d, c, o_bias, vb.pp("o_proj"))?,
            q_norm: qk_norm("q_norm")?,
            k_norm: qk_norm("k_norm")?,
            heads: h,
            kv_heads: k,
            head_dim: d,
        })
    }

    fn forward(&self, x: &Tensor, rot: &Rotary, mode: Mode) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, k, d) = (self.heads, self.kv_heads, self.head_dim);
        let norm = |n: &Option<Norm>, x: Tensor| match n {
            Some(n) => n.forward(&x, mode),
            None => Ok(x),
        };
        let q = norm(&self.q_norm, self.q_proj.forward(x)?.reshape((b, t, h, d))?)?; // (B, T, H, D)
        let key = norm(&self.k_norm, self.k_proj.forward(x)?.reshape((b, t, k, d))?)?; // (B, T, K, D)

        // Scale q before the product: (B,H,T,D) is smaller than the (B,H,T,T) scores.
        let q = rot.to_heads(&q, 1.0 / (d as f64).sqrt(), mode)?; // (B, H, T, D)
        let key = rot.to_heads(&key, 1.0, mode)?; // (B, K, T, D)
        let val = self.v_proj.forward(x)?.reshape((b, t, k, d))?; // (B, T, K, D)
        let y = ops::causal_attention(&q, &key, &val, mode)?; // (B, T, H*D)
        Ok(self.o_proj.forward(&y)?)
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (c, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_proj: linear(c, i, vb.pp("gate_proj"))?,
            up_proj: linear(c, i, vb.pp("up_proj"))?,
            down_proj: linear(i, c, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?); // (B, T, I)
        Ok(self.down_proj.forward(&ops::swiglu(&gate, &up)?)?)
    }
}

struct Block {
    input_layernorm: Norm,
    self_attn: Attention,
    post_attention_layernorm: Norm,
    mlp: Mlp,
}

impl Block {
    fn load(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (c, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Block {
            input_layernorm: Norm::load(c, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::load(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: Norm::load(c, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor, rot: &Rotary, mode: Mode) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x, mode)?;
        let x = (x + self.self_attn.forward(&h, rot, mode)?)?;
        let h = self.post_attention_layernorm.forward(&x, mode)?;
        Ok((&x + self.mlp.forward(&h)?)?)
    }
}

pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Norm,
    lm_head: Linear,
    rotary: Rotary,
    cfg: LlamaConfig,
    mode: Mode,
}

impl Llama {
    /// Builds the model from `vb` (rooted at the checkpoint's top level).
    /// With a VarMap-backed `vb` every weight is a trainable variable.
    pub fn load(vb: VarBuilder, cfg: &LlamaConfig, mode: Mode) -> Result<Self> {
        cfg.validate()?;
        crate::kernels::blas::init()?; // the GEMM, chosen once per process
        let (v, c) = (cfg.vocab_size, cfg.hidden_size);
        let embed = vb.pp("model.embed_tokens").get((v, c), "weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed.clone(), None)
        } else {
            linear(c, v, vb.pp("lm_head"))?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| Block::load(cfg, vb.pp(format!("model.layers.{l}"))))
            .collect::<Result<Vec<_>>>()?;
        let table_len = cfg.max_position_embeddings.max(1);
        Ok(Llama {
            embed_tokens: Embedding::new(embed, c),
            layers,
            norm: Norm::load(c, cfg.rms_norm_eps, vb.pp("model.norm"))?,
            lm_head,
            rotary: Rotary::new(cfg, table_len, vb.dtype(), vb.device())?,
            cfg: cfg.clone(),
            mode,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// ids: (B, T) u32 -> logits (B, T, V) for every position.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(&self.hidden(ids)?)?) // (B, T, V)
    }

    /// windows (B, T) u32 -> per-token loss (B, T-1) of tokens 1..T, each
    /// predicted from the tokens before it: what the scorer writes as
    /// `ref_loss` and what the trainer selects on. The (B, T-1, V) logits are
    /// never graph nodes (`loss::lm_head_losses`).
    pub fn token_losses(&self, windows: &Tensor) -> Result<Tensor> {
        let (inputs, targets) = inputs_and_targets(windows)?; // (B, T-1) each
        lm_head_losses(&self.hidden(&inputs)?, self.lm_head.weight(), &targets)
    }

    /// ids (B, T) -> final hidden states (B, T, C), after the last norm.
    fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        self.cfg.check_window(t)?;
        let longer;
        let rot = if t > self.rotary.cos.dim(0)? {
            longer = Rotary::new(&self.cfg, t, self.rotary.cos.dtype(), ids.device())?;
            &longer
        } else {
            &self.rotary
        };
        let mut x = self.embed_tokens.forward(ids)?; // (B, T, C)
        for block in &self.layers {
            x = block.forward(&x, rot, self.mode)?;
        }
        self.norm.forward(&x, self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::init_varmap;

    /// candle's fused ops can silently cut the graph; ours must not: after one
    /// backward every trainable tensor has a finite, non-zero gradient.
    #[test]
    fn every_weight_gets_a_gradient_in_train_mode() {
        let dev = Device::Cpu;
        let cfg = LlamaConfig::preset("debug", 50).unwrap();
        let vm = init_varmap(&cfg, 3, 0.02, &dev).unwrap();
        let model = Llama::load(
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
            &cfg,
            Mode::Train,
        )
        .unwrap();
        let ids: Vec<u32> = (0..2 * 9).map(|i| (i * 7 % 50) as u32).collect();
        let ids = Tensor::from_vec(ids, (2, 9), &dev).unwrap();
        let loss = model.token_losses(&ids).unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let data = vm.data().lock().unwrap();
        assert_eq!(data.len(), expected_tensors(&cfg).len());
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} has no gradient"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm.is_finite() && norm > 0.0, "{name}: |grad|^2 = {norm}");
        }
    }

    /// The composed ops (the path every non-CPU device takes) run
    /// here on the CPU against the fused kernels: per-token losses in both
    /// modes and every weight's gradient, for configs that switch every
    /// family option on.
    #[test]
    fn composed_path_matches_the_fused_kernels() {
        use crate::model::config::Family;
        use crate::util::device::force_composed;
        let dev = Device::Cpu;
        let mut qwen3 = LlamaConfig::preset("debug", 64).unwrap();
        qwen3.family = Family::Qwen3;
        qwen3.attention_bias = true;
        qwen3.head_dim = 24;
        qwen3.tie_word_embeddings = true;
        let mut llama3 = LlamaConfig::preset("debug", 64).unwrap();
        llama3.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8,
        });
        let mut qwen2 = LlamaConfig::preset("debug", 64).unwrap();
        qwen2.family = Family::Qwen2;
        qwen2.attention_bias = true;
        for cfg in [qwen3, llama3, qwen2] {
            let vm = init_varmap(&cfg, 5, 0.1, &dev).unwrap();
            let ids: Vec<u32> = (0..3 * 17).map(|i| (i * 11 % 64) as u32).collect();
            let ids = Tensor::from_vec(ids, (3, 17), &dev).unwrap();
            let run = |composed: bool, mode: Mode| {
                force_composed(composed);
                let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
                let model = Llama::load(vb, &cfg, mode).unwrap();
                let loss = model.token_losses(&ids).unwrap();
                let values = loss.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let grads = (mode == Mode::Train).then(|| {
                    let g = loss.mean_all().unwrap().backward().unwrap();
                    let data = vm.data().lock().unwrap();
                    let mut out: Vec<(String, Vec<f32>)> = data
                        .iter()
                        .map(|(n, v)| {
                            let t = g
                                .get(v.as_tensor())
                                .unwrap_or_else(|| panic!("{n}: no gradient"));
                            (
                                n.clone(),
                                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                            )
                        })
                        .collect();
                    out.sort_by(|a, b| a.0.cmp(&b.0));
                    out
                });
                force_composed(false);
                (values, grads)
            };
            for mode in [Mode::Infer, Mode::Train] {
                let (fv, fg) = run(false, mode);
                let (cv, cg) = run(true, mode);
                let max = fv
                    .iter()
                    .zip(&cv)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    max < 1e-5,
                    "{:?} {mode:?}: losses differ by {max}",
                    cfg.family
                );
                for ((name, f), (_, c)) in fg.iter().flatten().zip(cg.iter().flatten()) {
                    let scale = f.iter().map(|x| x.abs()).fold(1e-6f32, f32::max);
                    let max = f
                        .iter()
                        .zip(c)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        max / scale < 1e-4,
                        "{:?}: gradient of {name} differs by {max} (scale {scale})",
                        cfg.family
                    );
                }
            }
        }
    }
}
