//! Bad input to `trainer`: refused before anything is written.

use super::*;

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let f = fixture_sets();
    let scorer = bin("scorer");
    // A second tokenizer and a set with another seq_len.
    let other_tok = f.dir.join("other-tokenizer.json");
    run_ok(
        &scorer,
        &[
            "tokenizer",
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--vocab-size",
            "600",
            "--out",
            s(&other_tok),
        ],
    );
    let other_tok_set = f.dir.join("heldout-other-tok");
    let seq32 = f.dir.join("heldout-seq32");
    for (tok, out, len) in [(&other_tok, &other_tok_set, "64"), (&f.tok, &seq32, "32")] {
        let _ = std::fs::remove_dir_all(out);
        run_ok(
            &scorer,
            &[
                "pack",
                "--tokenizer",
                s(tok),
                "--corpus",
                s(&data("clean_heldout.jsonl.zst")),
                "--out",
                s(out),
                "--seq-len",
                len,
            ],
        );
    }
    // A scored set whose first shard holds a NaN reference loss.
    let nan_set = f.dir.join("nan-set");
    let truncated = f.dir.join("truncated-set");
    for d in [&nan_set, &truncated] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
        for e in std::fs::read_dir(&f.noisy_scored).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    let shard = nan_set.join("part-00000.parquet");
    let reader = shared::scores::shards::ShardReader::open(&shard).unwrap();
    let info = reader.info().clone();
    let mut windows = Vec::new();
    let mut losses = Vec::new();
    for g in 0..reader.num_row_groups() {
        let w = reader.read_row_group(g).unwrap();
        for (i, seq) in w.seq_ids.iter().enumerate() {
            let t = w.seq_len;
            windows.push(shared::text::pack::Window {
                seq_id: *seq,
                tokens: w.tokens[i * t..(i + 1) * t].to_vec(),
                doc_ids: vec![0; t],
            });
            losses.push(w.ref_loss.as_ref().unwrap()[i * t + 1..(i + 1) * t].to_vec());
        }
    }
    losses[3][9] = f32::NAN; // window 3, pos 10 -> row 3 * 64 + 10 = 202
    drop(reader);
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
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(nan_set.join("manifest.json")).unwrap())
            .unwrap();
    manifest["shards"][0]["bytes"] = std::fs::metadata(&shard).unwrap().len().into();
    std::fs::write(nan_set.join("manifest.json"), manifest.to_string()).unwrap();
    // A truncated shard.
    let t_shard = truncated.join("part-00000.parquet");
    let bytes = std::fs::read(&t_shard).unwrap();
    std::fs::write(&t_shard, &bytes[..bytes.len() / 2]).unwrap();
    // A model config whose vocabulary is smaller than the tokenizer's.
    let small_vocab = f.dir.join("small-vocab.json");
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.reference.join("final/config.json")).unwrap(),
    )
    .unwrap();
    cfg["vocab_size"] = 512.into();
    std::fs::write(&small_vocab, cfg.to_string()).unwrap();

    let d = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "slm on a pack-only set",
            vec![
                "--data".into(),
                d(&f.noisy_packed),
                "--objective".into(),
                "slm".into(),
            ],
            vec!["pack-only", "noisy-packed"],
        ),
        (
            "NaN ref_loss",
            vec![
                "--data".into(),
                d(&nan_set),
                "--objective".into(),
                "slm".into(),
            ],
            vec!["part-00000.parquet", "row 202", "NaN"],
        ),
        (
            "truncated shard",
            vec!["--data".into(), d(&truncated)],
            vec!["part-00000.parquet", "truncated"],
        ),
        (
            "token ids beyond the model's vocabulary",
            vec![
                "--data".into(),
                d(&f.clean),
                "--model-config".into(),
                d(&small_vocab),
            ],
            vec!["1024", "512"],
        ),
        (
            "mismatched seq_len",
            vec![
                "--data".into(),
                d(&f.clean),
                "--eval-data".into(),
                d(&seq32),
            ],
            vec!["seq_len", "64", "32", "heldout-seq32"],
        ),
        (
            "mismatched tokenizer",
            vec![
                "--data".into(),
                d(&f.clean),
                "--eval-data".into(),
                d(&other_tok_set),
            ],
            vec!["tokenizer differs", "heldout-other-tok"],
        ),
        (
            "select ratio out of range",
            vec![
                "--data".into(),
                d(&f.clean),
                "--select-ratio".into(),
                "1.5".into(),
            ],
            vec!["--select-ratio", "1.5"],
        ),
        (
            "negative learning rate",
            vec!["--data".into(), d(&f.clean), "--lr=-1".into()],
            vec!["--lr"],
        ),
        (
            "missing data directory",
            vec!["--data".into(), d(&f.dir.join("nope"))],
            vec!["nope"],
        ),
    ];
    for (name, extra, expect) in cases {
        let out = f.dir.join(format!("bad-{}", name.replace(' ', "-")));
        let _ = std::fs::remove_dir_all(&out);
        let mut args = vec![
            "train".to_string(),
            "--out".into(),
            d(&out),
            "--model-size".into(),
            "debug".into(),
            "--max-steps".into(),
            "2".into(),
        ];
        args.extend(extra);
        let res = run(
            TRAINER,
            &args.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        );
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        for e in expect {
            assert!(err.contains(e), "{name}: message lacks {e:?}: {err}");
        }
        assert!(!out.exists(), "{name}: wrote {}", out.display());
    }
}
