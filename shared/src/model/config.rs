//! The Llama-family model configuration, read from and written to a Hugging
//! Face `config.json`. Both styles are read: transformers 4 writes a top-level
//! `rope_theta` and `rope_scaling`, transformers 5 writes `rope_parameters`.
//!
//! The families are options on the same decoder blocks, not copies of it:
//!
//! | family | `model_type` | differs from Llama by |
//! |---|---|---|
//! | Llama (2, 3.x, SmolLM, TinyLlama) | `llama` | optional q/k/v/o biases (`attention_bias`), rotary scaling `llama3` or `linear` |
//! | Mistral | `mistral` | a sliding attention window (exact while a window of tokens fits in it) |
//! | Qwen2, Qwen2.5 | `qwen2` | q/k/v biases |
//! | Qwen3 | `qwen3` | per-head RMSNorm of q and k before the rotation |
//!
//! A new family goes here (its `model_type`, what it switches on) and, if it
//! needs a new kind of block, in `decoder.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The names [`LlamaConfig::preset`] knows, smallest first.
pub const MODEL_SIZES: [&str; 4] = ["debug", "tiny", "small", "medium"];

/// A named model size for runs from scratch ([`LlamaConfig::preset`]; the
/// comments give hidden size and layers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelSize {
    // hidden 64, 2 layers: tests.
    Debug,
    // hidden 128, 4 layers: the demo.
    #[default]
    Tiny,
    // hidden 256, 4 layers.
    Small,
    // hidden 512, 8 layers.
    Medium,
}

impl ModelSize {
    pub fn name(self) -> &'static str {
        MODEL_SIZES[self as usize]
    }

    /// The config of this size over a vocabulary of `vocab_size` ids.
    pub fn config(self, vocab_size: usize) -> Result<LlamaConfig> {
        LlamaConfig::preset(self.name(), vocab_size)
    }
}

/// The architecture family, as `model_type` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    fn from_model_type(t: &str) -> Option<Self> {
        [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3]
            .into_iter()
            .find(|f| f.model_type() == t)
    }

    fn from_architecture(a: &str) -> Option<Self> {
        [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3]
            .into_iter()
            .find(|f| f.architecture() == a)
    }
}

/// Rotary position scaling (Hugging Face `rope_type`), applied to the
/// inverse frequencies once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept, a
    /// smooth ramp between (wavelengths measured against the original context).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads of K and V (== num_attention_heads for MHA).
    pub num_key_value_heads: usize,
    /// Width of one head; need not be hidden_size / num_attention_heads (Qwen3).
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    /// The output head shares the input embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (and o, but for Qwen2) projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Attention sees only the last `sliding_window` positions (Mistral;
    /// Qwen with `use_sliding_window`). Windows longer than this are refused.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// The raw JSON as Hugging Face writes it: many fields optional.
#[derive(Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

fn first_id(v: &Option<serde_json::Value>) -> Option<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|n| n.as_u64()).map(|x| x as u32),
        _ => None,
    }
}

impl LlamaConfig {
    /// Parses `config.json` text; `path` only names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::checkpoint(path, reason);
        // Deserialized with the path of the field that fails, so a value of
        // the wrong type is named (`hidden_size: invalid type: string ...`).
        let raw: RawConfig =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                .map_err(|e| {
                    let field = e.path().to_string();
                    bad(if field == "." {
                        format!("config.json is not a valid Llama config: {}", e.inner())
                    } else {
                        format!(
                            "config.json is not a valid Llama config: {field}: {}",
                            e.inner()
                        )
                    })
                })?;
        let arch = raw.architectures.as_ref().and_then(|a| a.first().cloned());
        let family = match (raw.model_type.as_deref(), arch.as_deref()) {
            (Some(t), _) => Family::from_model_type(t),
            (None, Some(a)) => Family::from_architecture(a),
            (None, None) => Some(Family::Llama),
        };
        let family = match family {
            Some(f) if arch.as_deref().is_none_or(|a| a == f.architecture()) => f,
            _ => {
                return Err(bad(format!(
                    "unsupported architecture {} (model_type {}): supported are LlamaForCausalLM (llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2) and Qwen3ForCausalLM (qwen3)",
                    arch.as_deref().unwrap_or("?"),
                    raw.model_type.as_deref().unwrap_or("?")
                )))
            }
        };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(bad(format!(
                    "unsupported hidden_act {act:?}: only \"silu\" is supported"
                )));
            }
        }
        if raw.mlp_bias == Some(true) {
            return Err(bad("mlp_bias = true is not supported".into()));
        }
        let attention_bias = match family {
            Family::Qwen2 => true,
            Family::Mistral if raw.attention_bias == Some(true) => {
                return Err(bad("attention_bias = true is not a Mistral option".into()))
            }
            _ => raw.attention_bias.unwrap_or(false),
        };
        // transformers 5 keeps rope_theta and the scaling in rope_parameters.
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_scaling = match rope.filter(|v| !v.is_null()) {
            Some(v) => parse_rope_scaling(v).map_err(bad)?,
            None => None,
        };
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                raw.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|t| t.as_f64())
            })
            .unwrap_or(10_000.0);
        let sliding_window = match family {
            Family::Mistral => raw.sliding_window,
            Family::Qwen2 | Family::Qwen3 if raw.use_sliding_window == Some(true) => {
                raw.sliding_window
            }
            _ => None,
        };
        let heads = raw.num_attention_heads;
        let cfg = LlamaConfig {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size.checked_div(heads).unwrap_or(0)),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias,
            sliding_window,
            bos_token_id: first_id(&raw.bos_token_id),
            eos_token_id: first_id(&raw.eos_token_id),
        };
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Invalid(m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return fail("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return fail("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return fail(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return fail(format!(
                "head_dim {} must be positive and even (rotary embeddings)",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// A named size for quick runs from scratch (one of [`MODEL_SIZES`]).
    pub fn preset(name: &str, vocab_size: usize) -> Result<Self> {
        // (hidden, intermediate, layers, heads, kv heads)
        let (h, i, l, n, kv) = match name {
            "debug" => (64, 176, 2, 4, 2),
            "tiny" => (128, 352, 4, 4, 4),
            "small" => (256, 704, 4, 4, 4),
            "medium" => (512, 1408, 8, 8, 8),
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown model size {name:?}: expected debug, tiny, small or medium, or a config.json path"
                )))
            }
        };
        Ok(LlamaConfig {
            family: Family::Llama,
            vocab_size,
            hidden_size: h,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: n,
            num_key_value_heads: kv,
            head_dim: h / n,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            attention_bias: false,
            sliding_window: None,
            bos_token_id: None,
            eos_token_id: None,
        })
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let mut layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * i;
        if self.has_qkv_bias() {
            layer += q + 2 * kv;
        }
        if self.has_o_bias() {
            layer += h;
        }
        if self.has_qk_norm() {
            layer += 2 * self.head_dim;
        }
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }

    /// q, k and v projections carry a bias.
    pub fn has_qkv_bias(&self) -> bool {
        self.attention_bias
    }

    /// The output projection carries a bias (Llama's and Qwen3's
    /// `attention_bias`; Qwen2 biases q/k/v only).
    pub fn has_o_bias(&self) -> bool {
        self.attention_bias && self.family != Family::Qwen2
    }

    /// q and k are RMS-normalised per head before the rotation (Qwen3).
    pub fn has_qk_norm(&self) -> bool {
        self.family == Family::Qwen3
    }

    /// Refuses a window of `tokens` tokens that the attention of this model
    /// would not see whole: the sliding window is not implemented, so the
    /// forward pass is exact only while every position fits in it.
    pub fn check_window(&self, tokens: usize) -> Result<()> {
        match self.sliding_window {
            Some(w) if tokens > w => Err(Error::Invalid(format!(
                "a window of {tokens} tokens is longer than this {} model's sliding attention window ({w}): sliding-window attention is not implemented, so choose --seq-len <= {w}",
                self.family.model_type()
            ))),
            _ => Ok(()),
        }
    }

    /// The `config.json` that transformers reads (transformers 4 style, which 5 reads too).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let rope_scaling = match &self.rope_scaling {
            None => serde_json::Value::Null,
            Some(r) => serde_json::to_value(r).unwrap_or_default(),
        };
        let mut v = serde_json::json!({
            "architectures": [self.family.architecture()],
            "model_type": self.family.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        });
        let o = v.as_object_mut().expect("a JSON object");
        match self.family {
            Family::Llama => {
                o.insert("attention_bias".into(), self.attention_bias.into());
                o.insert("mlp_bias".into(), false.into());
            }
            Family::Mistral => {
                o.insert("sliding_window".into(), self.sliding_window.into());
            }
            Family::Qwen2 | Family::Qwen3 => {
                if self.family == Family::Qwen3 {
                    o.insert("attention_bias".into(), self.attention_bias.into());
                }
                o.insert(
                    "use_sliding_window".into(),
                    self.sliding_window.is_some().into(),
                );
                o.insert("sliding_window".into(), self.sliding_window.into());
            }
        }
        v
    }
}

/// `rope_scaling` / `rope_parameters`: None for default rotary embeddings.
fn parse_rope_scaling(v: &serde_json::Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let num = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_f64())
            .ok_or_else(|| format!("rope type {kind:?} needs a number {k:?}"))
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => {
            return Err(format!(
            "unsupported rope type {other:?}: supported are \"default\", \"linear\" and \"llama3\""
        ))
        }
    })
}
