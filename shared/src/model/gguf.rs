//! A model from a GGUF file: the config from `{arch}.*` metadata, every
//! tensor dequantized and renamed to its Hugging Face name, and llama.cpp's
//! q/k row permutation undone for the llama family (its converter
//! interleaves the two rotary halves of each head; qwen2/qwen3 files keep
//! the Hugging Face order).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::model::config::{Family, LlamaConfig};
use crate::model::decoder::expected_tensors;
use crate::util::gguf::Gguf;

/// The GGUF name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?; // kind: weight | bias
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// The config a GGUF file's metadata describes.
fn config(g: &Gguf) -> Result<LlamaConfig> {
    let arch = g.string("general.architecture")?;
    let family = match arch.as_str() {
        "llama" => Family::Llama,
        "mistral" => Family::Mistral,
        "qwen2" => Family::Qwen2,
        "qwen3" => Family::Qwen3,
        other => {
            return Err(Error::checkpoint(
                g.path(),
                format!("general.architecture {other:?} is not supported: supported are llama, mistral, qwen2 and qwen3"),
            ))
        }
    };
    let key = |k: &str| format!("{arch}.{k}");
    let uint = |k: &str| g.uint(&key(k)).map(|n| n as usize);
    if g.has_tensor("rope_freqs.weight") {
        return Err(Error::checkpoint(
            g.path(),
            "tensor rope_freqs.weight (llama.cpp's form of Llama 3.1 rotary scaling) is not supported: use the Hugging Face safetensors checkpoint",
        ));
    }
    if g.has(&key("rope.scaling.type")) {
        let t = g.string(&key("rope.scaling.type"))?;
        if t != "none" {
            return Err(Error::checkpoint(
                g.path(),
                format!(
                    "{} = {t:?}: scaled rotary embeddings in GGUF files are not supported",
                    key("rope.scaling.type")
                ),
            ));
        }
    }
    let hidden = uint("embedding_length")?;
    let heads = uint("attention.head_count")?;
    let kv_heads = if g.has(&key("attention.head_count_kv")) {
        uint("attention.head_count_kv")?
    } else {
        heads
    };
    let head_dim = if g.has(&key("attention.key_length")) {
        uint("attention.key_length")?
    } else {
        hidden.checked_div(heads).unwrap_or(0)
    };
    let vocab = match g.shape("token_embd.weight") {
        Some(s) if s.len() == 2 => s[0],
        _ => {
            return Err(Error::checkpoint(
                g.path(),
                "tensor token_embd.weight is missing or not a matrix",
            ))
        }
    };
    let bias = g.has_tensor("blk.0.attn_q.bias");
    let cfg = LlamaConfig {
        family,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: uint("feed_forward_length")?,
        num_hidden_layers: uint("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: g.float(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: if g.has(&key("rope.freq_base")) {
            g.float(&key("rope.freq_base"))?
        } else {
            10_000.0
        },
        rope_scaling: None,
        max_position_embeddings: uint("context_length")?,
        tie_word_embeddings: !g.has_tensor("output.weight"),
        attention_bias: family == Family::Qwen2 || bias,
        sliding_window: if g.has(&key("attention.sliding_window")) {
            Some(uint("attention.sliding_window")?)
        } else {
            None
        },
        bos_token_id: g.uint("tokenizer.ggml.bos_token_id").ok().map(|n| n as u32),
        eos_token_id: g.uint("tokenizer.ggml.eos_token_id").ok().map(|n| n as u32),
    };
    cfg.validate()
        .map_err(|e| Error::checkpoint(g.path(), format!("metadata: {e}")))?;
    Ok(cfg)
}

/// llama.cpp's converter stores each head's rows of q and k as
/// interleaved pairs (row 2i = HF row i, row 2i+1 = HF row i + D/2): this
/// puts them back. `rows` is (heads * D, ...) for a weight, (heads * D) for
/// a bias.
fn unpermute(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let d = dims[0] / heads;
    let rest: Vec<usize> = dims[1..].to_vec();
    let mut shape = vec![heads, d / 2, 2];
    shape.extend(&rest);
    Ok(t.reshape(shape)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// Config and weights (Hugging Face names, `dtype`, on `device`) of a GGUF
/// model file.
pub fn load(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    let mut g = Gguf::open(path)?;
    let cfg = config(&g)?;
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(&cfg) {
        let src = gguf_name(&name)
            .ok_or_else(|| Error::checkpoint(path, format!("no GGUF name for {name}")))?;
        if !g.has_tensor(&src) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {src} is missing (the {} model needs it as {name})",
                    cfg.family.model_type()
                ),
            ));
        }
        let mut t = g.tensor_f32(&src)?;
        if t.dims() != shape.as_slice() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {src} has shape {:?}, the metadata implies {shape:?}",
                    t.dims()
                ),
            ));
        }
        if cfg.family == Family::Llama {
            if name.contains(".self_attn.q_proj.") {
                t = unpermute(&t, cfg.num_attention_heads)?;
            } else if name.contains(".self_attn.k_proj.") {
                t = unpermute(&t, cfg.num_key_value_heads)?;
            }
        }
        out.insert(name, t.to_dtype(dtype)?.to_device(device)?);
    }
    Ok((cfg, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expected_tensor_has_a_gguf_name() {
        let mut cfg = LlamaConfig::preset("debug", 50).unwrap();
        cfg.family = Family::Qwen3;
        cfg.attention_bias = true;
        for (name, _) in expected_tensors(&cfg) {
            assert!(gguf_name(&name).is_some(), "{name}");
        }
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_norm.weight").as_deref(),
            Some("blk.3.attn_k_norm.weight")
        );
    }

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), written out, then ours undoes it.
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, d, cols) = (3, 8, 5);
        let hf: Vec<f32> = (0..heads * d * cols).map(|x| x as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for i in 0..d / 2 {
                for half in 0..2 {
                    let src = h * d + half * (d / 2) + i; // HF row
                    let dst = h * d + 2 * i + half; // interleaved row
                    gguf[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        let t = Tensor::from_vec(gguf, (heads * d, cols), &Device::Cpu).unwrap();
        let back = unpermute(&t, heads)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(back, hf);
    }
}
