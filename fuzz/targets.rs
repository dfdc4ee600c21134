//! What each fuzz target does with its input, in plain Rust over the shared
//! crate: the cargo-fuzz targets (nightly) call these, and
//! `tests/shared/fuzz_replay.rs` (stable, in CI) replays every saved input
//! of `fuzz/corpus/<target>/` through the same functions, so a crash once
//! found and fixed stays fixed. Every function must return, never panic:
//! errors are the expected outcome for most inputs.

#![allow(dead_code)]

use std::path::PathBuf;

/// A scratch directory for one input: unique per process and thread, so the
/// replay test's threads do not share files.
fn scratch(target: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    let dir = std::env::temp_dir().join(format!(
        "rho1-fuzz-{target}-{}-{:x}",
        std::process::id(),
        h.finish()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus directory.
pub const TARGETS: [(&str, Target); 7] = [
    ("shard_reader", shard_reader),
    ("corpus_reader", corpus_reader),
    ("manifest", manifest),
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("config", config),
    ("tokenizer", tokenizer),
];

/// Any bytes as a shard file: opened and every row group decoded, or refused.
pub fn shard_reader(data: &[u8]) {
    let path = scratch("shard").join("part-00000.parquet");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(r) = shared::scores::shards::ShardReader::open(&path) {
        for g in 0..r.num_row_groups().min(64) {
            let _ = r.read_row_group(g);
        }
    }
}

/// Any bytes as a corpus file (the first byte picks the format).
pub fn corpus_reader(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let ext = ["jsonl", "jsonl.zst", "parquet", "txt"][kind as usize % 4];
    let path = scratch("corpus").join(format!("input.{ext}"));
    if std::fs::write(&path, body).is_err() {
        return;
    }
    let corpus = shared::text::corpus::Corpus::new(vec![path], "text");
    for doc in corpus.take(10_000) {
        if doc.is_err() {
            break;
        }
    }
}

/// Any bytes as a score set's manifest.json.
pub fn manifest(data: &[u8]) {
    let dir = scratch("manifest");
    if std::fs::write(dir.join("manifest.json"), data).is_err() {
        return;
    }
    if let Ok(m) = shared::scores::manifest::Manifest::load(&dir) {
        let _ = m.shard_paths(&dir);
    }
    let _ = shared::scores::scoreset::ScoreSet::open(&dir);
}

/// Any bytes as a GGUF model file: its config, tensors and tokenizer read,
/// or refused.
pub fn gguf(data: &[u8]) {
    let path = scratch("gguf").join("model.gguf");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = shared::model::gguf::load(&path, candle_core::DType::F32, &candle_core::Device::Cpu);
    let _ = shared::text::tokenizer::Tokenizer::load(&path, None);
}

/// A tiny model's config.json beside any bytes as its model.safetensors.
pub const TINY_CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama",
"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
"vocab_size": 16, "max_position_embeddings": 32, "rms_norm_eps": 1e-05,
"rope_theta": 10000.0, "tie_word_embeddings": true}"#;

/// Any bytes as the weights of [`TINY_CONFIG`] (the header's offsets, dtypes
/// and shapes are what it exercises).
pub fn safetensors(data: &[u8]) {
    let dir = scratch("safetensors");
    if std::fs::write(dir.join("config.json"), TINY_CONFIG).is_err()
        || std::fs::write(dir.join("model.safetensors"), data).is_err()
    {
        return;
    }
    let _ = shared::model::checkpoint::Checkpoint::load(
        &dir,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
}

/// Any bytes as config.json: parsed and validated, or refused.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("config.json");
    if let Ok(c) = shared::model::config::LlamaConfig::from_json(text, path) {
        if c.validate().is_ok() {
            let _ = c.num_params();
        }
    }
}

/// Any bytes as tokenizer.json: loaded and used to encode a line, or refused.
pub fn tokenizer(data: &[u8]) {
    let path = scratch("tokenizer").join("tokenizer.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(t) = shared::text::tokenizer::Tokenizer::load(&path, None) {
        let _ = t.encode_batch(&["The quick brown fox, 12 µs.", ""]);
    }
}
