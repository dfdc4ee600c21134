//! Every input cargo-fuzz saved (`fuzz/corpus/<target>/`) through the same
//! function its target runs (`fuzz/targets.rs`), on the stable toolchain:
//! a crash that was found and fixed stays fixed, and CI needs no nightly.

use super::util::repo;

#[path = "../../fuzz/targets.rs"]
mod targets;

#[test]
fn every_saved_fuzz_input_is_handled_without_a_panic() {
    shared::util::guard::install_panic_hook();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for (name, target) in targets::TARGETS {
        let dir = repo().join("fuzz/corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(f.display().to_string());
            }
        }
        counts.push(format!("{name} {}", files.len()));
    }
    eprintln!("replayed: {}", counts.join(", "));
    assert!(failures.is_empty(), "panicked on: {failures:?}");
}

/// The model-file corpora hold valid files too, so the fuzzer starts from
/// inputs that reach every stage of the readers (not only their errors).
#[test]
fn the_model_file_corpora_hold_files_that_load() {
    let dir = super::util::scratch("fuzz_valid");
    std::fs::write(dir.join("config.json"), targets::TINY_CONFIG).unwrap();
    let corpus = |t: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(repo().join("fuzz/corpus").join(t))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let loads = corpus("safetensors")
        .iter()
        .filter(|p| {
            std::fs::copy(p, dir.join("model.safetensors")).unwrap();
            shared::model::checkpoint::Checkpoint::load(
                &dir,
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .is_ok()
        })
        .count();
    assert!(loads > 0, "no safetensors input loads");
    let parses = corpus("config")
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            shared::model::config::LlamaConfig::from_json(&text, p).is_ok()
        })
        .count();
    assert!(parses > 0, "no config input parses");
    let gguf = repo().join("tests/fixtures/gguf/llama-mixed.gguf");
    shared::model::gguf::load(&gguf, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
}
