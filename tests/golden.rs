//! The model reads Hugging Face Llama checkpoints exactly: per-token losses on
//! fixed token ids match transformers'.
//!
//! Expected values: `tests/fixtures/llama-*/losses_f64.json`, computed by
//! transformers 5.24.0 / torch 2.15.0 in float64 (see the fixtures' README).
//! `losses[b][j]` is the loss of `input_ids[b][j+1]`. Tolerance: 1e-4 max abs
//! (our forward runs in f32).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use shared::model::checkpoint::Checkpoint;
use shared::model::loss::{inputs_and_targets, per_token_loss};
use shared::model::{Llama, Mode};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn check(name: &str, mode: Mode) {
    let dir = fixture(name);
    let ids: Vec<Vec<u32>> = read_json(&dir.join("input_ids.json"));
    let expected: Vec<Vec<f64>> = read_json(&dir.join("losses_f64.json"));
    let dev = Device::Cpu;
    let ckpt = Checkpoint::load(&dir, DType::F32, &dev).unwrap();
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
