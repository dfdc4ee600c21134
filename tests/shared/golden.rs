//! The model reads Hugging Face Llama checkpoints exactly: per-token losses on
//! fixed token ids match transformers'.
//!
//! Expected values: `tests/fixtures/llama-*/losses_f64.json`, computed by
//! transformers 5.24.0 / torch 2.15.0 in float64 (see the fixtures' README).
//! `losses[b][j]` is the loss of `input_ids[b][j+1]`. Tolerance: 1e-4 max abs
//! (our forward runs in f32).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use shared::model::checkpoint::Checkpoint;
use shared::model::loss::{inputs_and_targets, per_token_loss};
use shared::model::{Llama, Mode};

use crate::util::*;

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn check(name: &str, mode: Mode) {
    let dir = fixture(name);
    check_at(name, &dir, &dir, mode);
}

/// The model at `model` (a checkpoint directory or a GGUF file) against
/// `input_ids.json` and `losses_f64.json` in `data`.
fn check_at(name: &str, model: &Path, data: &Path, mode: Mode) {
    let ids: Vec<Vec<u32>> = read_json(&data.join("input_ids.json"));
    let expected: Vec<Vec<f64>> = read_json(&data.join("losses_f64.json"));
    let dev = Device::Cpu;
    let ckpt = Checkpoint::load(model, DType::F32, &dev).unwrap();
    let model = match mode {
        Mode::Infer => ckpt.infer_model(&dev).unwrap(),
        Mode::Train => {
            let cfg = ckpt.config.clone();
            let vm = ckpt.into_varmap().unwrap();
            Llama::load(
                candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &dev),
                &cfg,
                Mode::Train,
            )
            .unwrap()
        }
    };
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<u32> = ids.concat();
    let windows = Tensor::from_vec(flat, (b, t), &dev).unwrap();
    let (inp, tgt) = inputs_and_targets(&windows).unwrap();
    let logits = model.forward(&inp).unwrap();
    let got = per_token_loss(&logits, &tgt)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut max_diff = 0f64;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.len(), e.len());
        for (x, y) in g.iter().zip(e) {
            max_diff = max_diff.max((*x as f64 - y).abs());
        }
    }
    assert!(
        max_diff < 1e-4,
        "{name} ({mode:?}): max |ours - transformers| = {max_diff:e}"
    );
    eprintln!("{name} ({mode:?}): max abs diff {max_diff:e}");
}

#[test]
fn gqa_tied_transformers4_config_matches_transformers() {
    check("llama-gqa", Mode::Infer);
    check("llama-gqa", Mode::Train);
}

#[test]
fn mha_untied_transformers5_config_matches_transformers() {
    check("llama-mha", Mode::Infer);
    check("llama-mha", Mode::Train);
}

/// One tiny random checkpoint per family, made by transformers
/// (`scripts/make_family_fixtures.py`), in `tests/fixtures/families/`.
fn check_family(name: &str) {
    for mode in [Mode::Infer, Mode::Train] {
        check(&format!("families/{name}"), mode);
    }
}

#[test]
fn llama3_rope_scaling_biases_and_wide_heads_match_transformers() {
    check_family("llama3");
}

#[test]
fn llama_linear_rope_scaling_matches_transformers() {
    check_family("llama-linear");
}

#[test]
fn mistral_within_its_sliding_window_matches_transformers() {
    check_family("mistral");
}

#[test]
fn qwen2_qkv_biases_match_transformers() {
    check_family("qwen2");
}

#[test]
fn qwen3_qk_norms_match_transformers() {
    check_family("qwen3");
}

/// A real pretrained model nobody here trained, read from its GGUF
/// file (tokenizer from the metadata, tensors dequantized, llama.cpp's q/k
/// permutation undone), against transformers reading the same file
/// (`scripts/make_smollm2_fixture.py`, float64). The scorer's path: fused LM
/// head + loss over a 49,152-id vocabulary, where an f32 running sum of the
/// exponentials used to bias every loss low.
#[test]
fn smollm2_gguf_scores_as_transformers_does() {
    let Some(gguf) = crate::util::smollm2_gguf() else {
        return;
    };
    let dir = fixture("smollm2");
    let text = std::fs::read_to_string(dir.join("text.txt")).unwrap();
    let tok = shared::text::tokenizer::Tokenizer::load(&gguf, None).unwrap();
    let want_ids: Vec<u32> = read_json(&dir.join("text_ids.json"));
    assert_eq!(
        tok.encode_batch(&[&text]).unwrap()[0],
        want_ids,
        "token ids differ from transformers'"
    );

    let ids: Vec<Vec<u32>> = read_json(&dir.join("input_ids.json"));
    let expected: Vec<Vec<f64>> = read_json(&dir.join("losses_f64.json"));
    let dev = Device::Cpu;
    let ckpt = Checkpoint::load(&gguf, DType::F32, &dev).unwrap();
    assert_eq!(ckpt.config.vocab_size, 49_152);
    let model = ckpt.infer_model(&dev).unwrap();
    let (b, t) = (ids.len(), ids[0].len());
    let windows = Tensor::from_vec(ids.concat(), (b, t), &dev).unwrap();
    let got = model
        .token_losses(&windows)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let (mut max, mut signed, mut n) = (0f64, 0f64, 0usize);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.len(), e.len());
        for (x, y) in g.iter().zip(e) {
            let d = *x as f64 - y;
            max = max.max(d.abs());
            signed += d;
            n += 1;
        }
    }
    let mean_signed = signed / n as f64;
    eprintln!("smollm2: max |ours - transformers| {max:.3e}, mean signed {mean_signed:.3e} over {n} tokens");
    assert!(max < 2e-4, "max |diff| {max:e}");
    assert!(
        mean_signed.abs() <= 2e-5,
        "mean signed diff {mean_signed:e}"
    );
}

/// Every tensor type a GGUF loader must read (F32, F16, BF16,
/// Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K, one tensor each), llama.cpp's q/k
/// permutation, an untied head; against transformers + gguf-py reading the
/// same file (`scripts/make_gguf_fixture.py`).
#[test]
fn gguf_of_every_tensor_type_matches_transformers() {
    let dir = fixture("gguf");
    let file = dir.join("llama-mixed.gguf");
    check_at("gguf/llama-mixed", &file, &dir, Mode::Infer);
    check_at("gguf/llama-mixed", &file, &dir, Mode::Train);
    // The tokenizer comes from the same file.
    let tok = shared::text::tokenizer::Tokenizer::load(&file, None).unwrap();
    assert_eq!((tok.vocab_size(), tok.eos_id()), (512, 256));
    let ids = &tok.encode_batch(&["hi there"]).unwrap()[0];
    assert_eq!(tok.decode(ids), "hi there");
}

/// Bf16 and f16 safetensors (what most Hugging Face checkpoints
/// hold) load and score in f32.
#[test]
fn half_precision_safetensors_score_in_f32() {
    check_family("llama-bf16");
    check_family("qwen2-f16");
}
