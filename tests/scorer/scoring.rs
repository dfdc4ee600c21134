//! `scorer score` and `pack`: the losses written are the model's, split jobs
//! equal single ones, every corpus format and model file is read.

use super::*;

#[test]
fn score_writes_exactly_the_losses_the_model_gives() {
    let dir = scratch("score_e2e");
    let tok = tokenizer(&dir);
    let model_dir = fixture("llama-gqa");
    let corpus = data("clean_heldout.jsonl.zst");
    let out = dir.join("set");
    run_ok(SCORER, &score_args(&model_dir, &tok, &corpus, &out));

    let set = ScoreSet::open(&out).unwrap();
    assert!(set.scored());
    assert!(set.manifest().shards.len() > 1, "test wants several shards");
    let all = set.read_all().unwrap();
    let (n, t) = (all.len(), all.seq_len);
    assert_eq!(n as u64, set.num_windows());
    assert_eq!(all.seq_ids, (0..n as u64).collect::<Vec<_>>());
    let ref_loss = all.ref_loss.unwrap();

    // Run the windows read back from the shards through the model again, in
    // batches of a different size than the scorer used.
    let dev = Device::Cpu;
    let model = Checkpoint::load(&model_dir, DType::F32, &dev)
        .unwrap()
        .infer_model(&dev)
        .unwrap();
    let mut max_diff = 0f32;
    for start in (0..n).step_by(5) {
        let b = 5.min(n - start);
        let ids =
            Tensor::from_slice(&all.tokens[start * t..(start + b) * t], (b, t), &dev).unwrap();
        let (inp, tgt) = inputs_and_targets(&ids).unwrap();
        let losses = per_token_loss(&model.forward(&inp).unwrap(), &tgt)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (w, row) in losses.iter().enumerate() {
            let stored = &ref_loss[(start + w) * t..(start + w + 1) * t];
            assert!(stored[0].is_nan(), "position 0 must be null");
            for (p, x) in row.iter().enumerate() {
                max_diff = max_diff.max((x - stored[p + 1]).abs());
            }
        }
    }
    assert!(
        max_diff < 1e-5,
        "stored ref_loss differs from the model's by {max_diff}"
    );
    let m = set.manifest();
    let summary = m.ref_loss.as_ref().unwrap();
    assert_eq!(summary.count, (n * (t - 1)) as u64);
    let mean = ref_loss
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| x as f64)
        .sum::<f64>()
        / summary.count as f64;
    assert!((mean - summary.mean).abs() < 1e-6);
}

#[test]
fn parts_of_a_split_job_equal_the_single_process_result() {
    let dir = scratch("split");
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_heldout.jsonl.zst");
    let single = dir.join("single");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &single));

    let split = dir.join("split");
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut args = score_args(&model, &tok, &corpus, &split);
            let idx = i.to_string();
            args.extend(["--num-shards", "3", "--shard-index"]);
            Command::new(SCORER).args(&args).arg(&idx).output_async()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_same_files(&single, &split);
}

#[test]
fn parquet_and_text_corpora_are_read() {
    let dir = scratch("formats");
    let tok = tokenizer(&dir);
    // A Parquet file with a string column: documents.parquet of a packed set.
    let src = dir.join("src");
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(&src),
            "--seq-len",
            "16",
        ],
    );
    let pq = dir.join("docs.parquet");
    std::fs::copy(src.join("documents.parquet"), &pq).unwrap();
    let out = dir.join("from-parquet");
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&pq),
            "--text-field",
            "source_file",
            "--out",
            s(&out),
            "--seq-len",
            "16",
        ],
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["num_documents"], 22, "one document per Parquet row");
    // Plain text: one document per file, found by a directory walk.
    let txt = dir.join("texts");
    std::fs::create_dir_all(txt.join("sub")).unwrap();
    std::fs::write(
        txt.join("a.txt"),
        "The Bessel function of the first kind.\n\nSecond paragraph.",
    )
    .unwrap();
    std::fs::write(
        txt.join("sub/b.txt"),
        "Gamma function, $\\Gamma(n) = (n-1)!$.",
    )
    .unwrap();
    std::fs::write(txt.join("empty.txt"), "").unwrap();
    let out = dir.join("from-text");
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&txt),
            "--out",
            s(&out),
            "--seq-len",
            "8",
        ],
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["num_documents"], 2);
    assert_eq!(m["skipped_empty_documents"], 1);
}

/// One rule for what a directory contributes: files of a corpus format,
/// not hidden (nor under a hidden directory); what it skips is counted by
/// reason, and the pack's counts (empty documents, dropped tail) are printed.
#[test]
fn directory_scan_reads_corpus_formats_and_counts_what_it_skips() {
    let dir = scratch("directory_scan");
    let tok = tokenizer(&dir);
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join(".git")).unwrap();
    let line = "{\"text\": \"The Bessel function of the first kind, and the second kind.\"}\n";
    std::fs::write(
        corpus.join("a.jsonl"),
        format!("{line}{{\"text\": \"\"}}\n{line}"),
    )
    .unwrap();
    std::fs::write(corpus.join("notes.md"), "Notes about the gamma function.").unwrap();
    std::fs::write(corpus.join(".hidden.jsonl"), line).unwrap();
    std::fs::write(corpus.join(".git/HEAD.jsonl"), line).unwrap();
    std::fs::write(corpus.join("b.jsonl.gz"), b"\x1f\x8b").unwrap();
    std::fs::write(corpus.join("c.bin"), b"\0").unwrap();
    let out = dir.join("set");
    let res = run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&corpus),
            "--out",
            s(&out),
            "--seq-len",
            "8",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    for want in [
        "corpus: 2 file(s): 1 JSON Lines, 1 plain text (one document each)",
        "skipped 4 (1 .bin: not a corpus format, 1 .gz: not a corpus format, 2 hidden)",
        "packed 3 document(s)",
        "skipped 1 empty",
        "token(s), short of a window",
        "tokenizing: ", // the first pass says what it is doing
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["inputs"].as_array().map(Vec::len), Some(2));
    // A named file of no corpus format is an error, not a skip.
    let res = run(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&corpus.join("c.bin")),
            "--out",
            s(&dir.join("x")),
        ],
    );
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("unknown corpus format (.bin)"));
}

/// `scorer tokenizer --vocab-size` beyond what a small corpus yields says so.
#[test]
fn tokenizer_says_when_the_corpus_yields_fewer_ids_than_asked() {
    let dir = scratch("tokenizer_shortfall");
    let corpus = dir.join("small.jsonl");
    std::fs::write(&corpus, "{\"text\": \"a small corpus with few pairs\"}\n").unwrap();
    let out = dir.join("tokenizer.json");
    let res = run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            s(&corpus),
            "--vocab-size",
            "32000",
            "--out",
            s(&out),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("--vocab-size 32000 asked, but this corpus yields"),
        "{err}"
    );
}

/// `--model FILE.gguf` with no --tokenizer scores with the file's
/// own tokenizer, copies it into the set as tokenizer.json, and records the
/// file's fingerprint; the losses are the model's.
#[test]
fn gguf_model_scores_with_its_own_tokenizer() {
    let dir = scratch("gguf_score");
    let gguf = fixture("gguf/llama-mixed.gguf");
    let out = dir.join("set");
    run_ok(
        SCORER,
        &[
            "score",
            "--model",
            s(&gguf),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(&out),
            "--seq-len",
            "64",
        ],
    );
    let set = ScoreSet::open(&out).unwrap();
    let from_file = shared::text::tokenizer::Tokenizer::load(&gguf, None).unwrap();
    let copied =
        shared::text::tokenizer::Tokenizer::load(&out.join("tokenizer.json"), None).unwrap();
    assert_eq!(copied.fingerprint(), from_file.fingerprint());
    assert_eq!(
        set.manifest().job.tokenizer.fingerprint,
        from_file.fingerprint()
    );
    let model_info = set.manifest().job.reference_model.clone().unwrap();
    assert_eq!(
        model_info.fingerprint,
        Checkpoint::fingerprint(&gguf).unwrap()
    );
    assert_eq!(model_info.vocab_size, 512);

    let all = set.read_all().unwrap();
    let t = all.seq_len;
    let dev = Device::Cpu;
    let model = Checkpoint::load(&gguf, DType::F32, &dev)
        .unwrap()
        .infer_model(&dev)
        .unwrap();
    let ids = Tensor::from_slice(&all.tokens[..2 * t], (2, t), &dev).unwrap();
    let got = model.token_losses(&ids).unwrap().to_vec2::<f32>().unwrap();
    let stored = all.ref_loss.unwrap();
    for (w, row) in got.iter().enumerate() {
        for (p, x) in row.iter().enumerate() {
            assert!(
                (x - stored[w * t + p + 1]).abs() < 1e-5,
                "window {w} position {}",
                p + 1
            );
        }
    }
}

/// `--dtype bf16` scores in bfloat16 (losses still f32, close to
/// the f32 ones), the manifest and `scorer info` record dtype and device, a
/// job is not continued in another dtype, and an unknown dtype is refused.
#[test]
fn dtype_is_recorded_and_a_job_keeps_it() {
    let dir = scratch("dtype");
    let tok = tokenizer(&dir);
    let model = fixture("families/qwen3");
    let corpus = data("clean_heldout.jsonl.zst");
    let (f32_set, bf16_set) = (dir.join("f32"), dir.join("bf16"));
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &f32_set));
    let mut args = score_args(&model, &tok, &corpus, &bf16_set);
    args.extend(["--dtype", "bf16"]);
    run_ok(SCORER, &args);
    let (a, b) = (
        ScoreSet::open(&f32_set).unwrap(),
        ScoreSet::open(&bf16_set).unwrap(),
    );
    let info = b.manifest().job.reference_model.clone().unwrap();
    assert_eq!((info.dtype.as_str(), info.device.as_str()), ("bf16", "cpu"));
    assert_eq!(
        a.manifest().job.reference_model.as_ref().unwrap().dtype,
        "f32"
    );
    let (la, lb) = (
        a.read_all().unwrap().ref_loss.unwrap(),
        b.read_all().unwrap().ref_loss.unwrap(),
    );
    let diffs: Vec<f32> = la
        .iter()
        .zip(&lb)
        .filter(|(x, _)| !x.is_nan())
        .map(|(x, y)| (x - y).abs())
        .collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    assert!(mean > 0.0 && mean < 0.05, "mean |bf16 - f32| = {mean}");
    let info_out = run_ok(SCORER, &["info", s(&bf16_set)]);
    let v: serde_json::Value = serde_json::from_slice(&info_out.stdout).unwrap();
    assert_eq!(
        (v["dtype"].as_str(), v["device"].as_str()),
        (Some("bf16"), Some("cpu"))
    );

    // The same job in f32 on the bf16 directory is refused, naming the field.
    let res = run(SCORER, &score_args(&model, &tok, &corpus, &bf16_set));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success()
            && err.contains("compute dtype: this run has f32, the directory has bf16"),
        "{err}"
    );
    let bad = dir.join("bad");
    let mut args = score_args(&model, &tok, &corpus, &bad);
    args.extend(["--dtype", "f8"]);
    let res = run(SCORER, &args);
    assert!(
        !res.status.success()
            && String::from_utf8_lossy(&res.stderr).contains("unknown --dtype \"f8\"")
    );
    assert!(!dir.join("bad").exists());
}

/// `mpirun -np 2 scorer score ...`: each rank is a part of the job (rank r
/// of N = --shard-index r --num-shards N), the set equals one process's.
#[test]
fn mpirun_ranks_are_the_parts_of_a_job() {
    let has_mpirun = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_mpirun {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide mpirun (.ci/run installs Open MPI)"
        );
        eprintln!("SKIPPED: no mpirun (Open MPI)");
        return;
    }
    let dir = scratch("mpirun_parts");
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_heldout.jsonl.zst");
    let single = dir.join("single");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &single));
    let ranked = dir.join("ranked");
    let out = Command::new("timeout")
        .args([
            "300",
            "mpirun",
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            "2",
        ])
        .args(["-x", "RAYON_NUM_THREADS=1", SCORER])
        .args(score_args(&model, &tok, &corpus, &ranked))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("part 1 of the job's 2 parts"), "{err}");
    assert_same_files(&single, &ranked);

    // a rank given its own part as well is refused: the ranks are the parts
    let mut args = score_args(&model, &tok, &corpus, &ranked);
    args.extend(["--num-shards", "4", "--shard-index", "1"]);
    let out = Command::new(SCORER)
        .args(&args)
        .env("OMPI_COMM_WORLD_RANK", "1")
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("leave out --shard-index and --num-shards")
    );
}
