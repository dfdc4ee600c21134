//! Bad input to `scorer`: each case must fail with a message naming the file
//! and the record (line, row, tensor), exit code 1, no panic, and no output
//! written. One test per case; the tokenizer and the scored set they break
//! are made once per run.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use crate::util::*;

use crate::SCORER;

fn write(p: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(p, bytes).unwrap();
    p.to_path_buf()
}

fn zstd_bytes(raw: &[u8]) -> Vec<u8> {
    let mut enc = Vec::new();
    let mut w = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the zstd command-line tool");
    w.stdin.take().unwrap().write_all(raw).unwrap();
    enc.extend(w.wait_with_output().unwrap().stdout);
    enc
}

/// A copy of the MHA golden checkpoint with its tensors changed by `edit`.
fn edited_checkpoint(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let src = fixture("llama-mha");
    std::fs::copy(src.join("config.json"), out.join("config.json")).unwrap();
    let mut t =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, out.join("model.safetensors")).unwrap();
    out
}

/// A copy of the GGUF fixture with its metadata and tensors changed by `edit`.
fn edited_gguf(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(String, QTensor)>),
) -> PathBuf {
    let src = fixture("gguf/llama-mixed.gguf");
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|n| {
            let t = content.tensor(&mut f, &n, &Device::Cpu).unwrap();
            (n, t)
        })
        .collect();
    edit(&mut meta, &mut tensors);
    let out = dir.join(name);
    let mut w = std::fs::File::create(&out).unwrap();
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &m, &t).unwrap();
    out
}

fn set_meta(meta: &mut [(String, Value)], key: &str, value: &str) {
    let slot = meta.iter_mut().find(|(k, _)| k == key).unwrap();
    slot.1 = Value::String(value.to_string());
}

struct Case {
    name: &'static str,
    /// the binary to run (default: scorer)
    bin: Option<String>,
    /// the command writes to --out (else: it only reads)
    writes: bool,
    /// scorer arguments before --out
    args: Vec<String>,
    /// every one must appear in stderr
    expect: Vec<String>,
}

fn corpus_case(name: &'static str, file: PathBuf, tok: &Path, expect: &[&str]) -> Case {
    let mut e: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    e.push(file.file_name().unwrap().to_string_lossy().into_owned());
    Case {
        name,
        bin: None,
        writes: true,
        args: [
            "pack",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--corpus",
            file.to_str().unwrap(),
            "--seq-len",
            "16",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        expect: e,
    }
}

fn model_case(name: &'static str, model: PathBuf, tok: &Path, expect: &[&str]) -> Case {
    let mut e: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    e.push(model.file_name().unwrap().to_string_lossy().into_owned());
    let corpus = data("clean_heldout.jsonl.zst");
    Case {
        name,
        bin: None,
        writes: true,
        args: [
            "score",
            "--model",
            model.to_str().unwrap(),
            "--tokenizer",
            tok.to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--seq-len",
            "16",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        expect: e,
    }
}

/// The directory every case's inputs go under, with the tokenizer they share.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = scratch("bad_input");
        run_ok(
            SCORER,
            &[
                "tokenizer",
                "--corpus",
                s(&data("clean_heldout.jsonl.zst")),
                "--vocab-size",
                "1024",
                "--out",
                s(&dir.join("tokenizer.json")),
            ],
        );
        dir
    })
}

fn tok() -> PathBuf {
    base().join("tokenizer.json")
}

/// A fresh directory for one case's inputs and output.
fn case_dir(name: &str) -> PathBuf {
    let d = base().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the case: exit code 1, no panic, every expected piece in the message,
/// and no output.
fn check(dir: &Path, case: Case) {
    let out = dir.join("out");
    let mut args: Vec<&str> = case.args.iter().map(|s| s.as_str()).collect();
    if case.writes {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    let res = run(case.bin.as_deref().unwrap_or(SCORER), &args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}: exit {:?}\n{err}",
        case.name,
        res.status
    );
    assert!(!err.contains("panicked"), "{}: panic\n{err}", case.name);
    for e in &case.expect {
        assert!(
            err.contains(e.as_str()),
            "{}: message lacks {e:?}:\n{err}",
            case.name
        );
    }
    assert!(!out.exists(), "{}: wrote {}", case.name, out.display());
}

/// `bad_input! { name(dir, tok) => case; ... }`: one test per case, `dir` its
/// own directory, `tok` the shared tokenizer.
macro_rules! bad_input {
    ($($(#[$doc:meta])* $name:ident($d:ident, $tok:ident) => $case:expr;)*) => {
        $(
            $(#[$doc])*
            #[test]
            fn $name() {
                let $d = case_dir(stringify!($name));
                let $tok = tok();
                let case = $case;
                check(&$d, case);
            }
        )*
    };
}

fn copy_fixture(from: &str, to: &Path) {
    std::fs::copy(fixture(from), to).unwrap();
}

fn dir_with(d: &Path, name: &str) -> PathBuf {
    let p = d.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A valid scored set to break in various ways (copied per case).
fn good_set() -> &'static Path {
    static SET: OnceLock<PathBuf> = OnceLock::new();
    SET.get_or_init(|| {
        let set = base().join("good-set");
        let tok = tok();
        run_ok(
            SCORER,
            &[
                "score",
                "--model",
                fixture("llama-gqa").to_str().unwrap(),
                "--tokenizer",
                tok.to_str().unwrap(),
                "--corpus",
                data("clean_heldout.jsonl.zst").to_str().unwrap(),
                "--out",
                set.to_str().unwrap(),
                "--seq-len",
                "32",
                "--shard-tokens",
                "8192",
            ],
        );
        set
    })
}

fn broken_copy(dir: &Path, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let src = good_set();
    let dst = dir.join(name);
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    edit(&dst);
    dst
}

fn edit_manifest(set: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = set.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

fn verify_case(name: &'static str, set: PathBuf, expect: &[&str]) -> Case {
    let mut e: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    e.push(set.file_name().unwrap().to_string_lossy().into_owned());
    Case {
        name,
        bin: None,
        writes: false,
        args: vec!["verify".into(), set.to_string_lossy().into_owned()],
        expect: e,
    }
}

fn good_lines() -> Vec<u8> {
    let good_line = br#"{"text": "a perfectly fine document about integrals"}"#;
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.extend_from_slice(good_line);
        lines.push(b'\n');
    }
    lines
}

/// A copy of a fixture checkpoint directory with `config.json` edited.
fn edited_config(
    d: &Path,
    name: &str,
    from: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let out = dir_with(d, name);
    let cfg = std::fs::read_to_string(fixture(&format!("{from}/config.json"))).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    edit(&mut cfg);
    write(&out.join("config.json"), cfg.to_string().as_bytes());
    copy_fixture(
        &format!("{from}/model.safetensors"),
        &out.join("model.safetensors"),
    );
    out
}

/// The trainer given a held-out set that does not belong with its training set.
fn mismatched_eval_case(name: &'static str, eval: &Path, expect: &[&str]) -> Case {
    let good = good_set();
    Case {
        name,
        bin: Some(bin("trainer")),
        writes: true,
        args: [
            "train",
            "--data",
            s(good),
            "--eval-data",
            s(eval),
            "--model-size",
            "debug",
            "--max-steps",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

fn pack(tok: &Path, out: &Path, seq_len: &str) {
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(tok),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(out),
            "--seq-len",
            seq_len,
        ],
    );
}

// Corpus files.
bad_input! {
    corpus_invalid_json_names_the_line(d, tok) => corpus_case(
        "invalid JSON",
        write(&d.join("bad_json.jsonl"), b"{\"text\": \"ok\"}\n{\"text\": \n"),
        &tok,
        &["line 2", "invalid JSON"],
    );
    corpus_missing_text_field_names_the_line(d, tok) => corpus_case(
        "missing field",
        write(&d.join("no_field.jsonl"), b"{\"text\": \"ok\"}\n{\"body\": \"x\"}\n"),
        &tok,
        &["line 2", "no field \"text\""],
    );
    corpus_non_string_text_names_the_line(d, tok) => corpus_case(
        "non-string field",
        write(&d.join("number.jsonl"), b"{\"text\": 5}\n"),
        &tok,
        &["line 1", "a number"],
    );
    corpus_line_not_an_object_names_the_line(d, tok) => corpus_case(
        "not an object",
        write(&d.join("array.jsonl"), b"[1, 2]\n"),
        &tok,
        &["line 1", "JSON object"],
    );
    corpus_invalid_utf8_names_the_line(d, tok) => corpus_case(
        "invalid UTF-8",
        write(&d.join("latin1.jsonl"), b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n"),
        &tok,
        &["line 2", "invalid UTF-8"],
    );
    corpus_truncated_zstd_is_reported(d, tok) => {
        let mut truncated = zstd_bytes(&good_lines().repeat(200));
        truncated.truncate(truncated.len() * 2 / 3);
        corpus_case(
            "truncated zstd",
            write(&d.join("cut.jsonl.zst"), &truncated),
            &tok,
            &["line ", "truncated or corrupt"],
        )
    };
    corpus_zst_name_without_zstd_names_the_line(d, tok) => corpus_case(
        "not zstd at all",
        write(&d.join("plain.jsonl.zst"), b"{\"text\": \"not compressed\"}\n"),
        &tok,
        &["line 1"],
    );
    corpus_unreadable_parquet_is_reported(d, tok) => corpus_case(
        "unreadable Parquet",
        write(&d.join("junk.parquet"), b"PAR1 this is not parquet"),
        &tok,
        &["not a readable Parquet file"],
    );
    corpus_text_file_invalid_utf8_names_the_byte(d, tok) => corpus_case(
        "invalid UTF-8 text file",
        write(&d.join("bad.txt"), b"ok \xff\xfe"),
        &tok,
        &["byte 3", "invalid UTF-8"],
    );
    corpus_unknown_extension_is_refused(d, tok) => corpus_case(
        "unknown extension",
        write(&d.join("corpus.csv"), b"a,b\n"),
        &tok,
        &["unknown corpus format"],
    );
    corpus_empty_file_packs_into_no_window(d, tok) => corpus_case(
        "empty file",
        write(&d.join("empty.jsonl"), b""),
        &tok,
        &["packs into no window"],
    );
    corpus_empty_directory_is_refused_by_name(d, tok) => corpus_case(
        "empty corpus directory",
        dir_with(&d, "empty-corpus"),
        &tok,
        &["empty-corpus holds no corpus files"],
    );
    corpus_glob_matching_nothing_is_refused_by_name(d, tok) => corpus_case(
        "glob matching nothing",
        d.join("nowhere/*.jsonl"),
        &tok,
        &["nowhere/*.jsonl holds no corpus files"],
    );
    corpus_too_short_for_one_window_says_its_length(d, tok) => corpus_case(
        "corpus shorter than a window",
        write(&d.join("short.jsonl"), b"{\"text\": \"hi\"}\n"),
        &tok,
        &["packs into no window of 16 tokens", "it has"],
    );
    corpus_huge_line_not_json_names_the_line(d, tok) => {
        let mut huge = vec![b'x'; 20 << 20];
        huge.push(b'\n');
        corpus_case(
            "a 20 MB line that is not JSON",
            write(&d.join("huge.jsonl"), &huge),
            &tok,
            &["line 1", "invalid JSON"],
        )
    };
}

// Checkpoint directories.
bad_input! {
    checkpoint_missing_tensor_is_named(d, tok) => model_case(
        "missing tensor",
        edited_checkpoint(&d, "missing", |t| {
            t.remove("model.layers.1.mlp.up_proj.weight");
        }),
        &tok,
        &["missing tensor model.layers.1.mlp.up_proj.weight"],
    );
    checkpoint_misshaped_tensor_names_both_shapes(d, tok) => model_case(
        "misshaped tensor",
        edited_checkpoint(&d, "misshaped", |t| {
            t.insert(
                "model.layers.0.self_attn.k_proj.weight".into(),
                Tensor::zeros((32, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
        }),
        &tok,
        &["model.layers.0.self_attn.k_proj.weight", "[32, 64]", "[64, 64]"],
    );
    checkpoint_nan_weights_are_named(d, tok) => model_case(
        "NaN weights",
        edited_checkpoint(&d, "nan", |t| {
            let w = t["model.norm.weight"].clone();
            let nan = Tensor::full(f32::NAN, w.shape(), &Device::Cpu).unwrap();
            t.insert("model.norm.weight".into(), nan);
        }),
        &tok,
        &["model.norm.weight", "NaN"],
    );
    checkpoint_unsupported_architecture_is_named(d, tok) => {
        let m = dir_with(&d, "gpt2");
        write(&m.join("config.json"), br#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4}"#);
        model_case("unsupported architecture", m, &tok, &["GPT2LMHeadModel", "unsupported"])
    };
    checkpoint_pickle_is_refused(d, tok) => {
        let m = dir_with(&d, "pickle");
        copy_fixture("llama-mha/config.json", &m.join("config.json"));
        write(&m.join("pytorch_model.bin"), b"\x80\x02}q\x00.");
        model_case("pickle checkpoint", m, &tok, &["pytorch_model.bin", "pickle"])
    };
    checkpoint_config_not_json_is_named(d, tok) => {
        let m = dir_with(&d, "not_json");
        write(&m.join("config.json"), b"vocab_size = 1024");
        copy_fixture("llama-mha/model.safetensors", &m.join("model.safetensors"));
        model_case("config.json not JSON", m, &tok, &["config.json"])
    };
    checkpoint_config_field_of_the_wrong_type_is_named(d, tok) => {
        let m = edited_config(&d, "config-type", "llama-mha", |c| {
            c["hidden_size"] = "sixty-four".into();
        });
        model_case("config.json field of the wrong type", m, &tok, &["config.json", "hidden_size"])
    };
    checkpoint_safetensors_header_offsets_that_lie_are_named(d, tok) => {
        let m = dir_with(&d, "lying_offsets");
        copy_fixture("llama-mha/config.json", &m.join("config.json"));
        let w = std::fs::read(fixture("llama-mha/model.safetensors")).unwrap();
        // The header: 8 bytes of length, then JSON with each tensor's
        // data_offsets [start, end]; every digit of the first end offset
        // becomes a 9 (the header keeps its length).
        let n = u64::from_le_bytes(w[..8].try_into().unwrap()) as usize;
        let mut header = w[8..8 + n].to_vec();
        let key = b"\"data_offsets\":[";
        let at = header.windows(key.len()).position(|x| x == key).unwrap() + key.len();
        let comma = header[at..].iter().position(|&c| c == b',').unwrap() + at + 1;
        let end = header[comma..].iter().position(|&c| c == b']').unwrap() + comma;
        header[comma..end].fill(b'9');
        let mut out = w[..8].to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(&w[8 + n..]);
        write(&m.join("model.safetensors"), &out);
        model_case(
            "safetensors offsets past the file",
            m,
            &tok,
            &["model.safetensors", "not a readable safetensors file"],
        )
    };
    corrupt_tokenizer_json_is_named(d, _tok) => {
        let bad = write(&d.join("tokenizer.json"), b"{\"model\": {\"type\": \"BPE\", \"vocab\": ");
        let mut case = model_case("corrupt tokenizer.json", fixture("llama-mha"), &bad, &["tokenizer.json"]);
        case.expect.retain(|e| e != "llama-mha");
        case
    };
    checkpoint_without_config_is_named(d, tok) => {
        let m = dir_with(&d, "no_config");
        copy_fixture("llama-mha/model.safetensors", &m.join("model.safetensors"));
        model_case("no config.json", m, &tok, &["no config.json", "checkpoint directory"])
    };
    checkpoint_truncated_safetensors_is_named(d, tok) => {
        let m = dir_with(&d, "truncated_weights");
        copy_fixture("llama-mha/config.json", &m.join("config.json"));
        let w = std::fs::read(fixture("llama-mha/model.safetensors")).unwrap();
        write(&m.join("model.safetensors"), &w[..w.len() / 3]);
        model_case(
            "truncated safetensors",
            m,
            &tok,
            &["model.safetensors", "not a readable safetensors file"],
        )
    };
    checkpoint_index_listing_a_missing_file_names_it(d, tok) => {
        let m = dir_with(&d, "sharded");
        copy_fixture("llama-mha/config.json", &m.join("config.json"));
        write(
            &m.join("model.safetensors.index.json"),
            br#"{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
        );
        model_case(
            "index lists a missing file",
            m,
            &tok,
            &["model.safetensors.index.json", "model-00001-of-00002.safetensors", "does not exist"],
        )
    };
    checkpoint_unsupported_rope_type_is_named(d, tok) => model_case(
        "unsupported rope type",
        edited_config(&d, "yarn", "llama-mha", |c| {
            c["rope_parameters"] =
                serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0});
        }),
        &tok,
        &["config.json", "unsupported rope type \"yarn\""],
    );
    windows_longer_than_the_sliding_window_are_refused(d, tok) => model_case(
        "windows longer than a sliding window",
        edited_config(&d, "short-window", "families/mistral", |c| c["sliding_window"] = serde_json::json!(8)),
        &tok,
        &["sliding attention window (8)", "--seq-len <= 8"],
    );
}

// GGUF files.
bad_input! {
    gguf_unsupported_architecture_is_named(d, tok) => model_case(
        "GGUF architecture",
        edited_gguf(&d, "falcon.gguf", |m, _| set_meta(m, "general.architecture", "falcon")),
        &tok,
        &["general.architecture", "falcon", "not supported"],
    );
    gguf_metadata_of_the_wrong_type_is_named(d, tok) => model_case(
        "GGUF metadata of the wrong type",
        edited_gguf(&d, "meta-type.gguf", |m, _| set_meta(m, "llama.block_count", "two")),
        &tok,
        &["llama.block_count"],
    );
    gguf_missing_metadata_key_is_named(d, tok) => model_case(
        "GGUF metadata key missing",
        edited_gguf(&d, "meta-missing.gguf", |m, _| m.retain(|(k, _)| k != "llama.embedding_length")),
        &tok,
        &["llama.embedding_length"],
    );
    gguf_missing_tensor_is_named(d, tok) => model_case(
        "GGUF tensor missing",
        edited_gguf(&d, "missing.gguf", |_, t| t.retain(|(n, _)| n != "blk.0.ffn_up.weight")),
        &tok,
        &["tensor blk.0.ffn_up.weight is missing"],
    );
    gguf_misshapen_tensor_names_both_shapes(d, tok) => model_case(
        "GGUF tensor misshapen",
        edited_gguf(&d, "misshapen.gguf", |_, t| {
            let z = Tensor::zeros((256, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
            let slot = t.iter_mut().find(|(n, _)| n == "blk.0.ffn_up.weight").unwrap();
            slot.1 = QTensor::quantize(&z, candle_core::quantized::GgmlDType::F32).unwrap();
        }),
        &tok,
        &["tensor blk.0.ffn_up.weight", "[256, 256]", "[512, 256]"],
    );
    gguf_cut_short_is_reported(d, tok) => {
        let bytes = std::fs::read(fixture("gguf/llama-mixed.gguf")).unwrap();
        let cut = write(&d.join("cut.gguf"), &bytes[..bytes.len() * 3 / 5]);
        model_case("GGUF cut short", cut, &tok, &["cannot be read (file cut short?)"])
    };
    gguf_unknown_tensor_type_is_named(d, tok) => {
        // The type field of one tensor's header entry set to a type no reader knows.
        let mut odd = std::fs::read(fixture("gguf/llama-mixed.gguf")).unwrap();
        let name = b"blk.0.attn_v.weight";
        let at = odd.windows(name.len()).position(|w| w == name).unwrap() + name.len();
        let dims = u32::from_le_bytes(odd[at..at + 4].try_into().unwrap()) as usize;
        odd[at + 4 + 8 * dims..at + 8 + 8 * dims].copy_from_slice(&99u32.to_le_bytes());
        let odd = write(&d.join("odd-type.gguf"), &odd);
        model_case("GGUF unknown tensor type", odd, &tok, &["not a readable GGUF file", "99"])
    };
    gguf_unsupported_tokenizer_model_is_named(d, _tok) => {
        // The GGUF file as its own tokenizer (what --model FILE.gguf uses by default).
        let f = edited_gguf(&d, "spm.gguf", |m, _| set_meta(m, "tokenizer.ggml.model", "llama"));
        model_case(
            "GGUF tokenizer model",
            f.clone(),
            &f,
            &["tokenizer.ggml.model", "\"llama\" is not supported"],
        )
    };
    gguf_unsupported_pre_tokenizer_is_named(d, _tok) => {
        let f = edited_gguf(&d, "pre.gguf", |m, _| set_meta(m, "tokenizer.ggml.pre", "falcon"));
        model_case(
            "GGUF pre-tokenizer",
            f.clone(),
            &f,
            &["tokenizer.ggml.pre", "\"falcon\" is not supported"],
        )
    };
}

// Score sets, checked by `scorer verify`.
bad_input! {
    set_truncated_shard_is_named(d, _tok) => verify_case(
        "truncated shard",
        broken_copy(&d, "set-truncated", |d| {
            let p = d.join("part-00001.parquet");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        }),
        &["part-00001.parquet", "bytes, the manifest says"],
    );
    set_manifest_not_json_is_named(d, _tok) => verify_case(
        "manifest is not JSON",
        broken_copy(&d, "set-manifest-text", |d| {
            std::fs::write(d.join("manifest.json"), b"shards: 3").unwrap();
        }),
        &["manifest.json", "invalid JSON"],
    );
    set_unknown_format_version_is_refused(d, _tok) => verify_case(
        "unknown format version",
        broken_copy(&d, "set-version", |d| {
            edit_manifest(d, |m| m["format_version"] = 99.into());
        }),
        &["manifest.json", "unsupported format version"],
    );
    set_missing_shard_is_named(d, _tok) => verify_case(
        "manifest lists a missing shard",
        broken_copy(&d, "set-missing-shard", |d| {
            std::fs::remove_file(d.join("part-00002.parquet")).unwrap();
        }),
        &["part-00002.parquet", "missing"],
    );
    set_without_manifest_is_unfinished(d, _tok) => verify_case(
        "no manifest (unfinished job)",
        broken_copy(&d, "set-unfinished", |d| {
            std::fs::remove_file(d.join("manifest.json")).unwrap();
        }),
        &["manifest.json", "has not finished"],
    );
    set_shard_with_wrong_schema_is_named(d, _tok) => verify_case(
        "shard with a wrong schema",
        broken_copy(&d, "set-schema", |d| {
            std::fs::copy(d.join("vocab.parquet"), d.join("part-00000.parquet")).unwrap();
            rehash_shard0(d);
        }),
        &["part-00000.parquet", "wrong schema"],
    );
    set_nan_ref_loss_names_the_row(d, _tok) => verify_case(
        "NaN ref_loss in a shard",
        broken_copy(&d, "set-nan", |d| {
            // window 2, pos 5 -> row 2 * 32 + 5 = 69
            nan_in_shard0(d, 2, 4);
            rehash_shard0(d);
        }),
        &["part-00000.parquet", "row 69", "NaN"],
    );
    set_negative_ref_loss_is_counted_and_named(d, _tok) => verify_case(
        "negative ref_loss in a shard",
        broken_copy(&d, "set-negative", |d| {
            loss_in_shard0(d, 1, 3, -2.0); // window 1, pos 4 -> row 32 + 4 = 36
            loss_in_shard0(d, 2, 0, -0.5);
            rehash_shard0(d);
        }),
        &["part-00000.parquet", "2 reference losses", "below 0", "row 36", "-2"],
    );
}

// Sets that do not belong together, given to the trainer.
bad_input! {
    trainer_refuses_eval_set_of_another_seq_len(d, tok) => {
        let other = d.join("set-seq16");
        pack(&tok, &other, "16");
        mismatched_eval_case("mismatched seq_len", &other, &["seq_len", "32", "16", "set-seq16"])
    };
    trainer_refuses_eval_set_of_another_tokenizer(d, _tok) => {
        let other_tok = other_tokenizer(&d);
        let other = d.join("set-other-tokenizer");
        pack(&other_tok, &other, "32");
        mismatched_eval_case(
            "mismatched tokenizer",
            &other,
            &["cannot be mixed: tokenizer: the first has", "set-other-tokenizer"],
        )
    };
}

/// A copy of the GQA golden checkpoint carrying `tok` as its own tokenizer.json.
fn model_with_tokenizer(d: &Path, tok: &Path) -> PathBuf {
    let m = dir_with(d, "model");
    for f in ["config.json", "model.safetensors"] {
        copy_fixture(&format!("llama-gqa/{f}"), &m.join(f));
    }
    std::fs::copy(tok, m.join("tokenizer.json")).unwrap();
    m
}

/// A second byte-level BPE tokenizer of 600 ids: other merges, other ids.
fn other_tokenizer(d: &Path) -> PathBuf {
    let out = d.join("tokenizer-600.json");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--vocab-size",
            "600",
            "--out",
            s(&out),
        ],
    );
    out
}

fn scorer_case(name: &'static str, writes: bool, args: &[&str], expect: &[&str]) -> Case {
    Case {
        name,
        bin: None,
        writes,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

// Mistakes a new user makes: models, tokenizers and directories that do not
// belong together, and flags out of range.
bad_input! {
    score_with_a_tokenizer_other_than_the_models_own_is_refused(d, tok) => {
        let m = model_with_tokenizer(&d, &tok);
        let other = other_tokenizer(&d);
        let mut case = model_case("another tokenizer", m, &other, &["tokenizers differ", "tokenizer-600.json"]);
        case.expect.push("ids)".into());
        case
    };
    score_windows_beyond_the_models_positions_are_refused(d, tok) => {
        let m = edited_config(&d, "short-context", "llama-gqa", |c| {
            c["max_position_embeddings"] = 8.into();
        });
        copy_fixture("llama-gqa/model.safetensors", &m.join("model.safetensors"));
        model_case(
            "seq_len beyond max_position_embeddings",
            m,
            &tok,
            &["--seq-len 16", "15 positions", "at most 8", "max_position_embeddings"],
        )
    };
    score_a_model_path_that_does_not_exist_says_so(d, tok) => model_case(
        "no such model",
        d.join("nosuch"),
        &tok,
        &["no such file or directory", "checkpoint directory"],
    );
    score_a_run_directory_asks_for_its_final(d, tok) => {
        let run = dir_with(&d, "run");
        let fin = dir_with(&run, "final");
        for f in ["config.json", "model.safetensors"] {
            copy_fixture(&format!("llama-gqa/{f}"), &fin.join(f));
        }
        model_case("a run directory", run, &tok, &["a training run's directory", "did you mean", "final"])
    };
    score_a_weights_file_asks_for_its_directory(d, tok) => {
        let m = dir_with(&d, "ckpt");
        copy_fixture("llama-gqa/model.safetensors", &m.join("model.safetensors"));
        model_case(
            "a file inside a checkpoint",
            m.join("model.safetensors"),
            &tok,
            &["a file inside a checkpoint", "pass its directory"],
        )
    };
    view_ratio_out_of_range_is_refused(_d, _tok) => scorer_case(
        "view --ratio 1.5",
        true,
        &["view", "--set", s(good_set()), "--ratio", "1.5"],
        &["--ratio", "(0, 1]", "1.5"],
    );
    view_negative_ratio_is_refused(_d, _tok) => scorer_case(
        "view --ratio -3",
        true,
        &["view", "--set", s(good_set()), "--ratio=-3"],
        &["--ratio", "(0, 1]", "-3"],
    );
    tokenizer_on_a_corpus_of_empty_documents_is_refused(d, _tok) => {
        let corpus = write(&d.join("empty-docs.jsonl"), b"{\"text\": \"\"}\n{\"text\": \"\"}\n");
        scorer_case(
            "no documents",
            true,
            &["tokenizer", "--corpus", s(&corpus), "--vocab-size", "300"],
            &["holds no documents"],
        )
    };
    pack_into_the_corpus_directory_is_refused(d, tok) => {
        let corpus = dir_with(&d, "corpus");
        write(&corpus.join("a.jsonl"), &good_lines());
        let inside = corpus.join("set");
        let args = ["pack", "--tokenizer", s(&tok), "--corpus", s(&corpus), "--seq-len", "4", "--out", s(&inside)];
        scorer_case("--out inside the corpus", false, &args, &["inside the corpus directory", "set"])
    };
    pack_below_a_file_is_refused_before_reading_the_corpus(d, tok) => {
        let corpus = write(&d.join("c.jsonl"), &good_lines());
        let file = write(&d.join("plain-file"), b"x");
        let out = file.join("set");
        let args = ["pack", "--tokenizer", s(&tok), "--corpus", s(&corpus), "--seq-len", "4", "--out", s(&out)];
        scorer_case("--out below a file", false, &args, &["plain-file is a file"])
    };
}

/// `--out` a folder of the user's (not empty, not a score set) is refused and
/// left as it was.
#[test]
fn pack_into_a_users_folder_is_refused() {
    let d = case_dir("pack_into_a_users_folder");
    let out = dir_with(&d, "out");
    write(&out.join("notes.txt"), b"mine");
    let corpus = write(&d.join("c.jsonl"), &good_lines());
    let tok = tok();
    let args = [
        "pack",
        "--tokenizer",
        s(&tok),
        "--corpus",
        s(&corpus),
        "--seq-len",
        "4",
        "--out",
        s(&out),
    ];
    let res = run(SCORER, &args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    for e in ["not a score set", "notes.txt"] {
        assert!(err.contains(e), "message lacks {e:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "wrote into {}",
        out.display()
    );
}

/// An OS error is said once, not once per layer that passed it on.
#[test]
fn a_missing_corpus_directory_is_named_with_its_cause_once() {
    let d = case_dir("missing_corpus_cause_once");
    let res = run(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok()),
            "--corpus",
            s(&d.join("nosuch/")),
            "--out",
            s(&d.join("out")),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr).to_lowercase();
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("no such file or directory").count(), 1, "{err}");
    let res = run(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&d.join("tok.json")),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(&d.join("out")),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr).to_lowercase();
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("no such file or directory").count(), 1, "{err}");
}

/// A URL of a scheme that is not a bucket's is refused by its name before
/// anything runs, and never becomes a local directory named `https:`; a
/// `file://` URL is a local path (bucket URLs: tests/scorer/bucket.rs).
#[test]
fn pack_into_an_unsupported_url_is_refused_and_makes_no_local_directory() {
    let d = case_dir("pack_into_an_unsupported_url");
    let corpus = write(&d.join("c.jsonl"), &good_lines());
    let tok = tok();
    for url in ["https://host/set", "http://host/set", "ftp://host/set"] {
        let res = std::process::Command::new(SCORER)
            .args([
                "pack",
                "--tokenizer",
                s(&tok),
                "--corpus",
                s(&corpus),
                "--seq-len",
                "4",
            ])
            .args(["--out", url])
            .current_dir(&d)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{err}");
        assert!(
            err.contains(url) && err.contains("URLs are not supported here"),
            "{err}"
        );
        let scheme = url.split_once("://").unwrap().0;
        assert!(
            !d.join(format!("{scheme}:")).exists(),
            "made a local {scheme}: directory"
        );
    }
    let out = d.join("set");
    let _ = std::fs::remove_dir_all(&out);
    let url = format!("file://{}", s(&std::path::absolute(&out).unwrap()));
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&corpus),
            "--seq-len",
            "4",
            "--out",
            &url,
        ],
    );
    assert!(out.join("manifest.json").is_file());
}
