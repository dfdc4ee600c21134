//! Bad input to `scorer`: each case must fail with a message naming the file
//! and the record (line, row, tensor), a non-zero exit, and no output written.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::*;

const SCORER: &str = env!("CARGO_BIN_EXE_scorer");

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

struct Case {
    name: &'static str,
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

#[test]
fn bad_input_fails_cleanly_naming_file_and_record() {
    let dir = scratch("bad_input");
    let tok = dir.join("tokenizer.json");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            data("clean_heldout.jsonl.zst").to_str().unwrap(),
            "--vocab-size",
            "1024",
            "--out",
            tok.to_str().unwrap(),
        ],
    );

    let good_line = br#"{"text": "a perfectly fine document about integrals"}"#;
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.extend_from_slice(good_line);
        lines.push(b'\n');
    }
    let mut truncated = zstd_bytes(&lines.repeat(200));
    truncated.truncate(truncated.len() * 2 / 3);

    let mut cases = vec![
        corpus_case(
            "invalid JSON",
            write(
                &dir.join("bad_json.jsonl"),
                b"{\"text\": \"ok\"}\n{\"text\": \n",
            ),
            &tok,
            &["line 2", "invalid JSON"],
        ),
        corpus_case(
            "missing field",
            write(
                &dir.join("no_field.jsonl"),
                b"{\"text\": \"ok\"}\n{\"body\": \"x\"}\n",
            ),
            &tok,
            &["line 2", "no field \"text\""],
        ),
        corpus_case(
            "non-string field",
            write(&dir.join("number.jsonl"), b"{\"text\": 5}\n"),
            &tok,
            &["line 1", "a number"],
        ),
        corpus_case(
            "not an object",
            write(&dir.join("array.jsonl"), b"[1, 2]\n"),
            &tok,
            &["line 1", "JSON object"],
        ),
        corpus_case(
            "invalid UTF-8",
            write(
                &dir.join("latin1.jsonl"),
                b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n",
            ),
            &tok,
            &["line 2", "invalid UTF-8"],
        ),
        corpus_case(
            "truncated zstd",
            write(&dir.join("cut.jsonl.zst"), &truncated),
            &tok,
            &["line ", "truncated or corrupt"],
        ),
        corpus_case(
            "not zstd at all",
            write(
                &dir.join("plain.jsonl.zst"),
                b"{\"text\": \"not compressed\"}\n",
            ),
            &tok,
            &["line 1"],
        ),
        corpus_case(
            "unreadable Parquet",
            write(&dir.join("junk.parquet"), b"PAR1 this is not parquet"),
            &tok,
            &["not a readable Parquet file"],
        ),
        corpus_case(
            "invalid UTF-8 text file",
            write(&dir.join("bad.txt"), b"ok \xff\xfe"),
            &tok,
            &["byte 3", "invalid UTF-8"],
        ),
        corpus_case(
            "unknown extension",
            write(&dir.join("corpus.csv"), b"a,b\n"),
            &tok,
            &["unknown corpus format"],
        ),
    ];

    let unsupported = dir.join("gpt2");
    std::fs::create_dir_all(&unsupported).unwrap();
    write(&unsupported.join("config.json"), br#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4}"#);
    let pickle = dir.join("pickle");
    std::fs::create_dir_all(&pickle).unwrap();
    std::fs::copy(fixture("llama-mha/config.json"), pickle.join("config.json")).unwrap();
    write(&pickle.join("pytorch_model.bin"), b"\x80\x02}q\x00.");
    let not_json = dir.join("not_json");
    std::fs::create_dir_all(&not_json).unwrap();
    write(&not_json.join("config.json"), b"vocab_size = 1024");
    std::fs::copy(
        fixture("llama-mha/model.safetensors"),
        not_json.join("model.safetensors"),
    )
    .unwrap();

    cases.extend([
        model_case(
            "missing tensor",
            edited_checkpoint(&dir, "missing", |t| {
                t.remove("model.layers.1.mlp.up_proj.weight");
            }),
            &tok,
            &["missing tensor model.layers.1.mlp.up_proj.weight"],
        ),
        model_case(
            "misshaped tensor",
            edited_checkpoint(&dir, "misshaped", |t| {
                t.insert(
                    "model.layers.0.self_attn.k_proj.weight".into(),
                    Tensor::zeros((32, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
                );
            }),
            &tok,
            &[
                "model.layers.0.self_attn.k_proj.weight",
                "[32, 64]",
                "[64, 64]",
            ],
        ),
        model_case(
            "NaN weights",
            edited_checkpoint(&dir, "nan", |t| {
                let w = t["model.norm.weight"].clone();
                let nan = Tensor::full(f32::NAN, w.shape(), &Device::Cpu).unwrap();
                t.insert("model.norm.weight".into(), nan);
            }),
            &tok,
            &["model.norm.weight", "NaN"],
        ),
        model_case(
            "unsupported architecture",
            unsupported,
            &tok,
            &["GPT2LMHeadModel", "unsupported"],
        ),
        model_case(
            "pickle checkpoint",
            pickle,
            &tok,
            &["pytorch_model.bin", "pickle"],
        ),
        model_case("config.json not JSON", not_json, &tok, &["config.json"]),
    ]);

    for case in cases {
        let out = dir.join(format!("out-{}", case.name.replace(' ', "_")));
        let mut args: Vec<&str> = case.args.iter().map(|s| s.as_str()).collect();
        args.extend(["--out", out.to_str().unwrap()]);
        let res = run(SCORER, &args);
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
}
