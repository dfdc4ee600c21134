//! The Llama-family model configuration, read from and written to a Hugging
//! Face `config.json`. Both styles are read: transformers 4 writes a top-level
//! `rope_theta`, transformers 5 writes `rope_parameters.rope_theta`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads of K and V (== num_attention_heads for MHA).
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    /// The output head shares the input embedding matrix.
    pub tie_word_embeddings: bool,
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
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| bad(format!("config.json is not a valid Llama config: {e}")))?;
        let arch = raw.architectures.as_ref().and_then(|a| a.first().cloned());
        let supported = matches!(raw.model_type.as_deref(), None | Some("llama"))
            && matches!(arch.as_deref(), None | Some("LlamaForCausalLM"));
        if !supported {
            return Err(bad(format!(
                "unsupported architecture {} (model_type {}): only LlamaForCausalLM is supported",
                arch.as_deref().unwrap_or("?"),
                raw.model_type.as_deref().unwrap_or("?")
            )));
        }
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(bad(format!(
                    "unsupported hidden_act {act:?}: only \"silu\" is supported"
                )));
            }
        }
        if raw.attention_bias == Some(true) || raw.mlp_bias == Some(true) {
            return Err(bad(
                "attention_bias / mlp_bias = true is not supported".into()
            ));
        }
        let rope_type = |v: &serde_json::Value| {
            v.get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        };
        for v in [&raw.rope_scaling, &raw.rope_parameters]
            .into_iter()
            .flatten()
        {
            if let Some(t) = rope_type(v) {
                if t != "default" {
                    return Err(bad(format!("unsupported rope type {t:?}: only \"default\" rotary embeddings are supported")));
                }
            }
        }
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                raw.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|t| t.as_f64())
            })
            .unwrap_or(10_000.0);
        let heads = raw.num_attention_heads;
        let cfg = LlamaConfig {
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
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
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

    /// A named size for quick runs from scratch.
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
            vocab_size,
            hidden_size: h,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: n,
            num_key_value_heads: kv,
            head_dim: h / n,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: None,
        })
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * i;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }

    /// The `config.json` that transformers reads (transformers 4 style, which 5 reads too).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
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
            "rope_scaling": null,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        })
    }
}
