//! Writes `tests/fixtures/gguf/llama-mixed.gguf`: a tiny random Llama in
//! llama.cpp's layout (GGUF names, q/k rows permuted as convert_hf_to_gguf.py
//! does) with each tensor in another of the types a loader must read: F32,
//! F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K. Quantized by candle; the
//! reference losses come from transformers reading this file with gguf-py's
//! own dequantization (`scripts/make_gguf_fixture.py`).
//!
//!     cargo run --release -p shared --example make_gguf_fixture

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use shared::util::rng::Rng;

const VOCAB: usize = 512;
const HIDDEN: usize = 256;
const INTER: usize = 512;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;

/// convert_hf_to_gguf.py's `permute`: each head's rows as interleaved
/// (first half, second half) pairs.
fn permute(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let d = w.len() / cols / heads;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for half in 0..2 {
                let src = h * d + half * (d / 2) + i;
                let dst = h * d + 2 * i + half;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(4242);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add =
        |name: &str, shape: &[usize], dtype: GgmlDType, values: Option<Vec<f32>>, rng: &mut Rng| {
            let n: usize = shape.iter().product();
            let v = values.unwrap_or_else(|| (0..n).map(|_| (rng.normal() * 0.1) as f32).collect());
            let t = Tensor::from_vec(v, shape, &dev)?;
            tensors.push((name.to_string(), QTensor::quantize(&t, dtype)?));
            Ok::<(), candle_core::Error>(())
        };
    let norm = |rng: &mut Rng| {
        Some(
            (0..HIDDEN)
                .map(|_| (1.0 + 0.1 * rng.normal()) as f32)
                .collect(),
        )
    };
    add(
        "token_embd.weight",
        &[VOCAB, HIDDEN],
        GgmlDType::Q8_0,
        None,
        &mut rng,
    )?;
    let q: Vec<f32> = (0..HIDDEN * HIDDEN)
        .map(|_| (rng.normal() * 0.1) as f32)
        .collect();
    let k: Vec<f32> = (0..KV_HEADS * HEAD_DIM * HIDDEN)
        .map(|_| (rng.normal() * 0.1) as f32)
        .collect();
    let n = norm(&mut rng);
    add(
        "blk.0.attn_norm.weight",
        &[HIDDEN],
        GgmlDType::F32,
        n,
        &mut rng,
    )?;
    add(
        "blk.0.attn_q.weight",
        &[HIDDEN, HIDDEN],
        GgmlDType::F16,
        Some(permute(&q, HEADS, HIDDEN)),
        &mut rng,
    )?;
    add(
        "blk.0.attn_k.weight",
        &[KV_HEADS * HEAD_DIM, HIDDEN],
        GgmlDType::BF16,
        Some(permute(&k, KV_HEADS, HIDDEN)),
        &mut rng,
    )?;
    add(
        "blk.0.attn_v.weight",
        &[KV_HEADS * HEAD_DIM, HIDDEN],
        GgmlDType::Q4_0,
        None,
        &mut rng,
    )?;
    add(
        "blk.0.attn_output.weight",
        &[HIDDEN, HIDDEN],
        GgmlDType::Q4_1,
        None,
        &mut rng,
    )?;
    let n = norm(&mut rng);
    add(
        "blk.0.ffn_norm.weight",
        &[HIDDEN],
        GgmlDType::F32,
        n,
        &mut rng,
    )?;
    add(
        "blk.0.ffn_gate.weight",
        &[INTER, HIDDEN],
        GgmlDType::Q5_0,
        None,
        &mut rng,
    )?;
    add(
        "blk.0.ffn_up.weight",
        &[INTER, HIDDEN],
        GgmlDType::Q6K,
        None,
        &mut rng,
    )?;
    add(
        "blk.0.ffn_down.weight",
        &[HIDDEN, INTER],
        GgmlDType::Q4K,
        None,
        &mut rng,
    )?;
    let n = norm(&mut rng);
    add("output_norm.weight", &[HIDDEN], GgmlDType::F32, n, &mut rng)?;
    add(
        "output.weight",
        &[VOCAB, HIDDEN],
        GgmlDType::Q6K,
        None,
        &mut rng,
    )?;

    // A byte-level vocabulary: the 256 byte characters, end-of-text, one merge, fillers.
    let mut tokens: Vec<String> = (0u32..256)
        .map(|b| {
            let printable = |b: u32| {
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b)
            };
            if printable(b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                let n = (0..b).filter(|&x| !printable(x)).count() as u32;
                char::from_u32(256 + n).unwrap().to_string()
            }
        })
        .collect();
    tokens.push("<|endoftext|>".into());
    tokens.push("\u{120}t".into()); // the one merge: "Ġ" + "t"
    while tokens.len() < VOCAB {
        tokens.push(format!("<extra_{}>", tokens.len()));
    }
    let types: Vec<Value> = (0..VOCAB)
        .map(|i| Value::I32(if i == 256 { 3 } else { 1 }))
        .collect();
    let s = |x: &str| Value::String(x.to_string());
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("rho1 gguf fixture")),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(512)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length", Value::U32(INTER as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.rope.dimension_count", Value::U32(HEAD_DIM as u32)),
        ("llama.vocab_size", Value::U32(VOCAB as u32)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("gpt2")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(vec![s("Ġ t")])),
        ("tokenizer.ggml.bos_token_id", Value::U32(256)),
        ("tokenizer.ggml.eos_token_id", Value::U32(256)),
    ];
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf/llama-mixed.gguf");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let mut f = std::fs::File::create(&out)?;
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    candle_core::quantized::gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
