//! Training lowers held-out loss (CLM and SLM, gradient accumulation, bf16,
//! the noise filter, every family as `--init`), and a checkpoint scores in
//! `scorer` as `trainer eval` says.

use super::*;

#[test]
fn clm_reference_training_lowers_held_out_loss() {
    let f = fixture_sets();
    // The fixture's reference run evaluated only at the end; compare with the
    // untrained model's held-out loss from a zero-step evaluation.
    let out = f.dir.join("untrained");
    let _ = std::fs::remove_dir_all(&out);
    run_ok(
        TRAINER,
        &[
            "train",
            "--data",
            s(&f.clean),
            "--eval-data",
            s(&f.heldout),
            "--out",
            s(&out),
            "--model-size",
            "debug",
            "--batch-size",
            "8",
            "--max-steps",
            "1",
            "--lr",
            "1e-9",
            "--warmup-steps",
            "1",
        ],
    );
    let before = eval_losses(&out)[0];
    let after = *eval_losses(&f.reference).last().unwrap();
    assert!(
        after < before - 1.0,
        "clm: held-out loss {before} -> {after}"
    );
}

#[test]
fn slm_training_lowers_held_out_loss() {
    let f = fixture_sets();
    let out = f.dir.join("slm");
    let _ = std::fs::remove_dir_all(&out);
    run_ok(
        TRAINER,
        &[
            "train",
            "--data",
            s(&f.noisy_scored),
            "--eval-data",
            s(&f.heldout),
            "--out",
            s(&out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--batch-size",
            "8",
            "--max-steps",
            "120",
            "--warmup-steps",
            "10",
            "--lr",
            "3e-3",
            "--eval-every",
            "60",
        ],
    );
    let losses = eval_losses(&out);
    assert_eq!(losses.len(), 3, "evaluations at steps 0, 60, 120");
    assert!(losses[2] < losses[0] - 1.0, "slm: held-out loss {losses:?}");
    for m in &steps(&out) {
        let frac = m.selected_frac;
        assert!((frac - 0.6).abs() < 0.01, "selected fraction {frac}");
        assert!(m.excess_kept.unwrap() > m.excess_dropped.unwrap());
    }
}

#[test]
fn trained_checkpoint_scores_in_scorer_as_trainer_eval_says() {
    let f = fixture_sets();
    let model = f.reference.join("final");
    let out = f.dir.join("rescored-heldout");
    let _ = std::fs::remove_dir_all(&out);
    run_ok(
        &bin("scorer"),
        &[
            "score",
            "--model",
            s(&model),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(&out),
            "--seq-len",
            "64",
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let scorer_mean = manifest["ref_loss"]["mean"].as_f64().unwrap();
    let res = run_ok(
        TRAINER,
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&f.heldout),
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let eval_loss = v[0]["loss"].as_f64().unwrap();
    assert_eq!(
        v[0]["tokens"].as_u64().unwrap(),
        manifest["ref_loss"]["count"].as_u64().unwrap()
    );
    assert!(
        (scorer_mean - eval_loss).abs() < 1e-4,
        "scorer {scorer_mean} vs trainer eval {eval_loss}"
    );
}

/// Gradient accumulation selects over the global batch: 2 micro-batches of 4
/// give the first step's losses of one batch of 8 (same windows).
#[test]
fn grad_accumulation_selects_over_the_global_batch() {
    let f = fixture_sets();
    let first_step = |extra: &[&str], name: &str| -> StepRecord {
        let out = f.dir.join(name);
        let _ = std::fs::remove_dir_all(&out);
        let mut args = vec![
            "train",
            "--data",
            s(&f.noisy_scored),
            "--out",
            s(&out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--max-steps",
            "1",
            "--eval-every",
            "0",
        ];
        args.extend(extra);
        run_ok(TRAINER, &args);
        steps(&out).remove(0)
    };
    let one = first_step(&["--batch-size", "8"], "accum-1x8");
    let two = first_step(&["--batch-size", "4", "--grad-accum", "2"], "accum-2x4");
    for (key, a, b) in [
        ("loss_selected", one.loss_selected, two.loss_selected),
        ("loss_all", one.loss_all, two.loss_all),
        ("selected_frac", one.selected_frac, two.selected_frac),
        (
            "excess_kept",
            one.excess_kept.unwrap(),
            two.excess_kept.unwrap(),
        ),
        ("grad_norm", one.grad_norm, two.grad_norm),
    ] {
        assert!((a - b).abs() < 1e-4, "{key}: {a} vs {b}");
    }
}

/// `--init` from a checkpoint of every family, and from a GGUF
/// file, trains and writes checkpoints of the same family (model_type,
/// architecture, and every option of its config).
#[test]
fn init_from_every_family_and_gguf_keeps_the_family() {
    use shared::model::checkpoint::Checkpoint;
    let f = fixture_sets();
    let dev = candle_core::Device::Cpu;
    let train = |init: &Path, data: &Path, out: &Path| {
        let _ = std::fs::remove_dir_all(out);
        run_ok(
            TRAINER,
            &[
                "train",
                "--init",
                s(init),
                "--data",
                s(data),
                "--out",
                s(out),
                "--batch-size",
                "4",
                "--max-steps",
                "2",
                "--eval-every",
                "0",
            ],
        );
    };
    for (name, model_type) in [
        ("llama3", "llama"),
        ("llama-linear", "llama"),
        ("mistral", "mistral"),
        ("qwen2", "qwen2"),
        ("qwen3", "qwen3"),
    ] {
        let init = fixture(&format!("families/{name}"));
        let out = f.dir.join(format!("init-{name}"));
        train(&init, &f.clean, &out);
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("final/config.json")).unwrap())
                .unwrap();
        assert_eq!(written["model_type"], model_type, "{name}");
        let (a, b) = (
            Checkpoint::load(&init, candle_core::DType::F32, &dev).unwrap(),
            Checkpoint::load(&out.join("final"), candle_core::DType::F32, &dev).unwrap(),
        );
        assert_eq!(a.config, b.config, "{name}: the written config differs");
        let mut names: Vec<_> = a.tensors.keys().collect();
        let mut written_names: Vec<_> = b.tensors.keys().collect();
        names.sort();
        written_names.sort();
        assert_eq!(names, written_names, "{name}");
    }
    // A GGUF model with its own tokenizer: data packed with the same file.
    let gguf = fixture("gguf/llama-mixed.gguf");
    let packed = f.dir.join("gguf-packed");
    let _ = std::fs::remove_dir_all(&packed);
    run_ok(
        &bin("scorer"),
        &[
            "pack",
            "--tokenizer",
            s(&gguf),
            "--corpus",
            s(&data("clean_heldout.jsonl.zst")),
            "--out",
            s(&packed),
            "--seq-len",
            "64",
        ],
    );
    let out = f.dir.join("init-gguf");
    train(&gguf, &packed, &out);
    let b = Checkpoint::load(&out.join("final"), candle_core::DType::F32, &dev).unwrap();
    assert_eq!((b.config.vocab_size, b.config.hidden_size), (512, 256));
    assert!(!b.config.tie_word_embeddings);
}

/// `--dtype bf16` trains with bfloat16 compute over f32 weights:
/// per-step losses follow the f32 run's closely and the checkpoint holds f32.
#[test]
fn bf16_compute_tracks_f32_training() {
    let f = fixture_sets();
    let run_with = |dtype: &str| {
        let out = f.dir.join(format!("dtype-{dtype}"));
        let _ = std::fs::remove_dir_all(&out);
        run_ok(
            TRAINER,
            &[
                "train",
                "--data",
                s(&f.clean),
                "--out",
                s(&out),
                "--model-size",
                "debug",
                "--batch-size",
                "8",
                "--max-steps",
                "5",
                "--eval-every",
                "0",
                "--dtype",
                dtype,
            ],
        );
        let losses: Vec<f64> = steps(&out).iter().map(|m| m.loss_all).collect();
        (out, losses)
    };
    let (_, full) = run_with("f32");
    let (out, half) = run_with("bf16");
    assert_eq!(full.len(), 5);
    for (a, b) in full.iter().zip(&half) {
        assert!((a - b).abs() < 0.03, "f32 {full:?} vs bf16 {half:?}");
    }
    let w = candle_core::safetensors::load(
        out.join("final/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(w.values().all(|t| t.dtype() == candle_core::DType::F32));
}

/// `--noise-quantile`: over a run, about (1 - q) of the tokens are taken out
/// before selection (the quantile is of the whole set, so per batch it
/// varies), k of all tokens are still kept, and the filter is refused
/// without slm.
#[test]
fn noise_filter_drops_the_reference_s_worst_spans_before_selection() {
    let f = fixture_sets();
    let out = f.dir.join("noise-filter");
    let _ = std::fs::remove_dir_all(&out);
    let res = run_ok(
        TRAINER,
        &[
            "train",
            "--data",
            s(&f.noisy_scored),
            "--out",
            s(&out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--max-steps",
            "6",
            "--batch-size",
            "8",
            "--eval-every",
            "0",
            "--noise-quantile",
            "0.7",
            "--noise-span",
            "16",
            "--select-ratio",
            "0.5",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("noise filter: tokens whose mean reference loss over 16 tokens is above"),
        "{err}"
    );
    let steps = steps(&out);
    assert_eq!(steps.len(), 6);
    let (mut dropped, mut tokens) = (0.0, 0.0);
    for m in &steps {
        let n = 8.0 * 63.0; // windows of 64 predict 63 tokens
        let d = m.noise_dropped.unwrap() as f64;
        assert!(d > 0.0 && d < n, "{m:?}");
        if d <= n * 0.5 {
            let kept = m.selected_frac * n;
            assert_eq!(
                kept,
                (0.5 * n).ceil(),
                "k of all tokens while enough are eligible"
            );
        }
        dropped += d;
        tokens += n;
    }
    let frac = dropped / tokens;
    assert!(
        (0.1..0.5).contains(&frac),
        "dropped {frac:.3} of tokens at q = 0.7"
    );

    let res = run(
        TRAINER,
        &[
            "train",
            "--data",
            s(&f.noisy_scored),
            "--out",
            s(&f.dir.join("noise-clm")),
            "--objective",
            "clm",
            "--noise-quantile",
            "0.7",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && err.contains("needs --objective slm"),
        "{err}"
    );
}

/// A set written by format version 1 (tests/fixtures/scoreset-v1) trains:
/// slm reads its f32 losses through the same reader as a current set's.
#[test]
fn slm_trains_on_a_version_1_set() {
    let dir = scratch("train_v1_set");
    let out = dir.join("run");
    let set = fixture("scoreset-v1");
    run_ok(
        TRAINER,
        &[
            "train",
            "--data",
            s(&set),
            "--eval-data",
            s(&set),
            "--out",
            s(&out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "3",
            "--warmup-steps",
            "1",
            "--eval-every",
            "0",
        ],
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps = metrics.lines().filter(|l| l.contains("\"step\"")).count();
    assert!(steps >= 3, "{metrics}");
    assert!(out.join("final").join("model.safetensors").is_file());
}

/// `trainer train ... 2>&1 | head -2`: progress and log lines into a closed
/// pipe are dropped; the run goes on to its end.
#[test]
fn a_closed_output_pipe_does_not_end_the_run() {
    let f = fixture_sets();
    let out = f.dir.join("closed-pipe");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(TRAINER)
        .args([
            "train",
            "--data",
            s(&f.clean),
            "--eval-data",
            s(&f.heldout),
            "--out",
            s(&out),
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "20",
            "--eval-every",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What `head -2` does: read a little, then close the pipe.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    assert!(out.join("final/model.safetensors").is_file());
}

/// Progress lines carry the training loss; a model evaluated past the
/// positions it was trained on is warned about, naming both sides.
#[test]
fn progress_shows_the_loss_and_eval_past_the_models_positions_warns() {
    let f = fixture_sets();
    let out = f.dir.join("progress-loss");
    let _ = std::fs::remove_dir_all(&out);
    let res = run_ok(
        TRAINER,
        &[
            "train",
            "--data",
            s(&f.clean),
            "--out",
            s(&out),
            "--model-size",
            "debug",
            "--max-steps",
            "3",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("clm: 3/3 steps") && l.contains(", loss ")),
        "{err}"
    );
    // The same checkpoint with max_position_embeddings 16, on windows of 64.
    let short = f.dir.join("short-context");
    let _ = std::fs::remove_dir_all(&short);
    std::fs::create_dir_all(&short).unwrap();
    for e in std::fs::read_dir(out.join("final")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, short.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = short.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = 16.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let res = run_ok(
        TRAINER,
        &[
            "eval",
            "--model",
            s(&short),
            "--data",
            s(&f.heldout),
            "--max-windows",
            "4",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("warning: --seq-len 64 feeds 63 positions") && err.contains("at most 16"),
        "{err}"
    );
}
