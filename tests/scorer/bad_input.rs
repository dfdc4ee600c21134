//! Bad input to `scorer`: each case must fail with a message naming the file
//! and the record (line, row, tensor), a non-zero exit, and no output written.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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
        model_case(
            "no config.json",
            {
                let d = dir.join("no_config");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::copy(
                    fixture("llama-mha/model.safetensors"),
                    d.join("model.safetensors"),
                )
                .unwrap();
                d
            },
            &tok,
            &["cannot read config.json"],
        ),
        model_case(
            "truncated safetensors",
            {
                let d = dir.join("truncated_weights");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::copy(fixture("llama-mha/config.json"), d.join("config.json")).unwrap();
                let w = std::fs::read(fixture("llama-mha/model.safetensors")).unwrap();
                std::fs::write(d.join("model.safetensors"), &w[..w.len() / 3]).unwrap();
                d
            },
            &tok,
            &["model.safetensors", "not a readable safetensors file"],
        ),
        model_case(
            "index lists a missing file",
            {
                let d = dir.join("sharded");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::copy(fixture("llama-mha/config.json"), d.join("config.json")).unwrap();
                std::fs::write(
                    d.join("model.safetensors.index.json"),
                    br#"{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
                )
                .unwrap();
                d
            },
            &tok,
            &[
                "model.safetensors.index.json",
                "model-00001-of-00002.safetensors",
                "does not exist",
            ],
        ),
    ]);
    // Issue 13: model families and GGUF files.
    let yarn = dir.join("yarn");
    std::fs::create_dir_all(&yarn).unwrap();
    let cfg = std::fs::read_to_string(fixture("llama-mha/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    cfg["rope_parameters"] =
        serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0});
    write(&yarn.join("config.json"), cfg.to_string().as_bytes());
    std::fs::copy(
        fixture("llama-mha/model.safetensors"),
        yarn.join("model.safetensors"),
    )
    .unwrap();
    let short_window = dir.join("short-window");
    std::fs::create_dir_all(&short_window).unwrap();
    let cfg = std::fs::read_to_string(fixture("families/mistral/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    cfg["sliding_window"] = serde_json::json!(8);
    write(
        &short_window.join("config.json"),
        cfg.to_string().as_bytes(),
    );
    std::fs::copy(
        fixture("families/mistral/model.safetensors"),
        short_window.join("model.safetensors"),
    )
    .unwrap();
    let gguf_bytes = std::fs::read(fixture("gguf/llama-mixed.gguf")).unwrap();
    let cut = write(
        &dir.join("cut.gguf"),
        &gguf_bytes[..gguf_bytes.len() * 3 / 5],
    );
    // The type field of one tensor's header entry set to a type no reader knows.
    let mut odd = gguf_bytes.clone();
    let name = b"blk.0.attn_v.weight";
    let at = odd.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let dims = u32::from_le_bytes(odd[at..at + 4].try_into().unwrap()) as usize;
    odd[at + 4 + 8 * dims..at + 8 + 8 * dims].copy_from_slice(&99u32.to_le_bytes());
    let odd_type = write(&dir.join("odd-type.gguf"), &odd);
    // The GGUF file as its own tokenizer (what --model FILE.gguf uses by default).
    let gguf_tok_case = |name: &'static str, file: PathBuf, expect: &[&str]| {
        model_case(name, file.clone(), &file, expect)
    };
    cases.extend([
        model_case(
            "unsupported rope type",
            yarn,
            &tok,
            &["config.json", "unsupported rope type \"yarn\""],
        ),
        model_case(
            "windows longer than a sliding window",
            short_window,
            &tok,
            &["sliding attention window (8)", "--seq-len <= 8"],
        ),
        model_case(
            "GGUF architecture",
            edited_gguf(&dir, "falcon.gguf", |m, _| {
                set_meta(m, "general.architecture", "falcon")
            }),
            &tok,
            &["general.architecture", "falcon", "not supported"],
        ),
        model_case(
            "GGUF tensor missing",
            edited_gguf(&dir, "missing.gguf", |_, t| {
                t.retain(|(n, _)| n != "blk.0.ffn_up.weight")
            }),
            &tok,
            &["tensor blk.0.ffn_up.weight is missing"],
        ),
        model_case(
            "GGUF tensor misshapen",
            edited_gguf(&dir, "misshapen.gguf", |_, t| {
                let z = Tensor::zeros((256, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
                let slot = t
                    .iter_mut()
                    .find(|(n, _)| n == "blk.0.ffn_up.weight")
                    .unwrap();
                slot.1 = QTensor::quantize(&z, candle_core::quantized::GgmlDType::F32).unwrap();
            }),
            &tok,
            &["tensor blk.0.ffn_up.weight", "[256, 256]", "[512, 256]"],
        ),
        model_case(
            "GGUF cut short",
            cut,
            &tok,
            &["cannot be read (file cut short?)"],
        ),
        model_case(
            "GGUF unknown tensor type",
            odd_type,
            &tok,
            &["not a readable GGUF file", "99"],
        ),
        gguf_tok_case(
            "GGUF tokenizer model",
            edited_gguf(&dir, "spm.gguf", |m, _| {
                set_meta(m, "tokenizer.ggml.model", "llama")
            }),
            &["tokenizer.ggml.model", "\"llama\" is not supported"],
        ),
        gguf_tok_case(
            "GGUF pre-tokenizer",
            edited_gguf(&dir, "pre.gguf", |m, _| {
                set_meta(m, "tokenizer.ggml.pre", "falcon")
            }),
            &["tokenizer.ggml.pre", "\"falcon\" is not supported"],
        ),
    ]);
    let empty = write(&dir.join("empty.jsonl"), b"");
    cases.push(corpus_case(
        "empty file",
        empty,
        &tok,
        &["packs into no window"],
    ));
    let mut huge = vec![b'x'; 20 << 20];
    huge.push(b'\n');
    cases.push(corpus_case(
        "a 20 MB line that is not JSON",
        write(&dir.join("huge.jsonl"), &huge),
        &tok,
        &["line 1", "invalid JSON"],
    ));

    cases.extend(set_cases(&dir, &tok));
    assert!(cases.len() >= 39, "only {} cases", cases.len());
    eprintln!("{} bad-input cases", cases.len());
    for case in cases {
        let out = dir.join(format!("out-{}", case.name.replace(' ', "_")));
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
}

/// A valid scored set to break in various ways (copied per case).
fn good_set(dir: &Path, tok: &Path) -> PathBuf {
    let set = dir.join("good-set");
    if !set.join("manifest.json").exists() {
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
    }
    set
}

fn broken_copy(dir: &Path, tok: &Path, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let src = good_set(dir, tok);
    let dst = dir.join(name);
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
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

/// Make the manifest's size and hash of shard 0 match its (changed) file.
fn rehash_shard0(set: &Path) {
    let shard = set.join("part-00000.parquet");
    let bytes = std::fs::metadata(&shard).unwrap().len();
    let sha = shared::util::hash::hash_file(&shard).unwrap();
    edit_manifest(set, |m| {
        m["shards"][0]["bytes"] = bytes.into();
        m["shards"][0]["sha256"] = sha.into();
    });
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

fn set_cases(dir: &Path, tok: &Path) -> Vec<Case> {
    let trainer = bin("trainer");
    let mut cases = vec![
        verify_case(
            "truncated shard",
            broken_copy(dir, tok, "set-truncated", |d| {
                let p = d.join("part-00001.parquet");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 100]).unwrap();
            }),
            &["part-00001.parquet", "bytes, the manifest says"],
        ),
        verify_case(
            "manifest is not JSON",
            broken_copy(dir, tok, "set-manifest-text", |d| {
                std::fs::write(d.join("manifest.json"), b"shards: 3").unwrap();
            }),
            &["manifest.json", "invalid JSON"],
        ),
        verify_case(
            "unknown format version",
            broken_copy(dir, tok, "set-version", |d| {
                edit_manifest(d, |m| m["format_version"] = 99.into());
            }),
            &["manifest.json", "unsupported format version"],
        ),
        verify_case(
            "manifest lists a missing shard",
            broken_copy(dir, tok, "set-missing-shard", |d| {
                std::fs::remove_file(d.join("part-00002.parquet")).unwrap();
            }),
            &["part-00002.parquet", "missing"],
        ),
        verify_case(
            "no manifest (unfinished job)",
            broken_copy(dir, tok, "set-unfinished", |d| {
                std::fs::remove_file(d.join("manifest.json")).unwrap();
            }),
            &["manifest.json", "has not finished"],
        ),
        verify_case(
            "shard with a wrong schema",
            broken_copy(dir, tok, "set-schema", |d| {
                std::fs::copy(d.join("vocab.parquet"), d.join("part-00000.parquet")).unwrap();
                rehash_shard0(d);
            }),
            &["part-00000.parquet", "wrong schema"],
        ),
        verify_case(
            "NaN ref_loss in a shard",
            broken_copy(dir, tok, "set-nan", |d| {
                let shard = d.join("part-00000.parquet");
                let r = shared::scores::shards::ShardReader::open(&shard).unwrap();
                let info = r.info().clone();
                let (mut windows, mut losses) = (Vec::new(), Vec::new());
                for g in 0..r.num_row_groups() {
                    let w = r.read_row_group(g).unwrap();
                    let t = w.seq_len;
                    for (i, seq) in w.seq_ids.iter().enumerate() {
                        windows.push(shared::text::pack::Window {
                            seq_id: *seq,
                            tokens: w.tokens[i * t..(i + 1) * t].to_vec(),
                            doc_ids: w.doc_ids[i * t..(i + 1) * t].to_vec(),
                        });
                        losses.push(w.ref_loss.as_ref().unwrap()[i * t + 1..(i + 1) * t].to_vec());
                    }
                }
                drop(r);
                losses[2][4] = f32::NAN; // window 2, pos 5 -> row 2 * 32 + 5 = 69
                shared::scores::shards::write_shard(
                    &shard,
                    &info.job,
                    0,
                    info.seq_len,
                    info.row_group_windows,
                    &windows,
                    Some(&losses),
                )
                .unwrap();
                rehash_shard0(d);
            }),
            &["part-00000.parquet", "row 69", "NaN"],
        ),
    ];
    // Sets that do not belong together, given to the trainer.
    let good = good_set(dir, tok);
    let other_len = dir.join("set-seq16");
    if !other_len.join("manifest.json").exists() {
        run_ok(
            SCORER,
            &[
                "pack",
                "--tokenizer",
                tok.to_str().unwrap(),
                "--corpus",
                data("clean_heldout.jsonl.zst").to_str().unwrap(),
                "--out",
                other_len.to_str().unwrap(),
                "--seq-len",
                "16",
            ],
        );
    }
    let other_tok = dir.join("tokenizer-600.json");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            data("clean_heldout.jsonl.zst").to_str().unwrap(),
            "--vocab-size",
            "600",
            "--out",
            other_tok.to_str().unwrap(),
        ],
    );
    let other_tok_set = dir.join("set-other-tokenizer");
    if !other_tok_set.join("manifest.json").exists() {
        run_ok(
            SCORER,
            &[
                "pack",
                "--tokenizer",
                other_tok.to_str().unwrap(),
                "--corpus",
                data("clean_heldout.jsonl.zst").to_str().unwrap(),
                "--out",
                other_tok_set.to_str().unwrap(),
                "--seq-len",
                "32",
            ],
        );
    }
    for (name, eval, expect) in [
        (
            "mismatched seq_len",
            &other_len,
            vec!["seq_len", "32", "16", "set-seq16"],
        ),
        (
            "mismatched tokenizer",
            &other_tok_set,
            vec!["tokenizer differs", "set-other-tokenizer"],
        ),
    ] {
        cases.push(Case {
            name,
            bin: Some(trainer.clone()),
            writes: true,
            args: [
                "train",
                "--data",
                good.to_str().unwrap(),
                "--eval-data",
                eval.to_str().unwrap(),
                "--model-size",
                "debug",
                "--max-steps",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
        });
    }
    cases
}
