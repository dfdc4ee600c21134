//! Bad input to `trainer`: each case refused with a message naming what is
//! wrong, exit code 1, no panic, and nothing written. One test per case; the
//! broken sets are made once per run.

use super::*;

/// The sets and configs the cases break, beside the shared fixture sets.
struct Inputs {
    other_tok_set: PathBuf,
    seq32: PathBuf,
    nan_set: PathBuf,
    truncated: PathBuf,
    small_vocab: PathBuf,
    /// The held-out set with token 5000 (beyond the 1024-id vocabulary) in window 2.
    big_id_heldout: PathBuf,
}

fn inputs() -> &'static Inputs {
    static I: OnceLock<Inputs> = OnceLock::new();
    I.get_or_init(make_inputs)
}

fn make_inputs() -> Inputs {
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
    nan_in_shard0(&nan_set, 3, 9); // window 3, pos 10 -> row 3 * 64 + 10 = 202
    rehash_shard0(&nan_set); // as a tool that rewrote the set would
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

    // A held-out set with one token id beyond the vocabulary.
    let big_id_heldout = f.dir.join("heldout-big-id");
    let _ = std::fs::remove_dir_all(&big_id_heldout);
    std::fs::create_dir_all(&big_id_heldout).unwrap();
    for e in std::fs::read_dir(&f.heldout).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, big_id_heldout.join(p.file_name().unwrap())).unwrap();
    }
    token_in_shard0(&big_id_heldout, 2, 7, 5000); // row 2 * 64 + 7 = 135
    rehash_shard0(&big_id_heldout);

    Inputs {
        other_tok_set,
        seq32,
        nan_set,
        truncated,
        small_vocab,
        big_id_heldout,
    }
}

/// `trainer train --out DIR ...extra` must fail cleanly and leave no DIR.
fn refused(name: &str, extra: &[&Path], flags: &[&str], expect: &[&str]) {
    let f = fixture_sets();
    let out = f.dir.join(format!("bad-{}", name.replace(' ', "-")));
    let _ = std::fs::remove_dir_all(&out);
    let mut args = vec![
        "train",
        "--out",
        s(&out),
        "--model-size",
        "debug",
        "--max-steps",
        "2",
    ];
    // Each path in `extra` follows the flag at the same index of `flags`;
    // flags past the paths stand alone.
    for (i, flag) in flags.iter().enumerate() {
        args.push(flag);
        if let Some(p) = extra.get(i) {
            args.push(s(p));
        }
    }
    let res = run(TRAINER, &args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: message lacks {e:?}: {err}");
    }
    assert!(!out.exists(), "{name}: wrote {}", out.display());
}

#[test]
fn slm_on_a_pack_only_set_is_refused() {
    let f = fixture_sets();
    refused(
        "slm on a pack-only set",
        &[&f.noisy_packed],
        &["--data", "--objective=slm"],
        &["pack-only", "noisy-packed"],
    );
}

#[test]
fn nan_ref_loss_names_the_shard_and_row() {
    refused(
        "NaN ref_loss",
        &[&inputs().nan_set],
        &["--data", "--objective=slm"],
        &["part-00000.parquet", "row 202", "NaN"],
    );
}

#[test]
fn truncated_shard_is_named() {
    refused(
        "truncated shard",
        &[&inputs().truncated],
        &["--data"],
        &["part-00000.parquet", "truncated"],
    );
}

#[test]
fn token_ids_beyond_the_model_vocabulary_are_refused() {
    let f = fixture_sets();
    refused(
        "token ids beyond the model's vocabulary",
        &[&f.clean, &inputs().small_vocab],
        &["--data", "--model-config"],
        &["1024", "512"],
    );
}

#[test]
fn eval_set_of_another_seq_len_is_refused() {
    let f = fixture_sets();
    refused(
        "mismatched seq_len",
        &[&f.clean, &inputs().seq32],
        &["--data", "--eval-data"],
        &["seq_len", "64", "32", "heldout-seq32"],
    );
}

#[test]
fn eval_set_of_another_tokenizer_is_refused() {
    let f = fixture_sets();
    refused(
        "mismatched tokenizer",
        &[&f.clean, &inputs().other_tok_set],
        &["--data", "--eval-data"],
        &[
            "cannot be mixed: tokenizer: the first has",
            "heldout-other-tok",
        ],
    );
}

#[test]
fn select_ratio_out_of_range_is_refused() {
    let f = fixture_sets();
    refused(
        "select ratio out of range",
        &[&f.clean],
        &["--data", "--select-ratio=1.5"],
        &["--select-ratio", "1.5"],
    );
}

#[test]
fn negative_learning_rate_is_refused() {
    let f = fixture_sets();
    refused(
        "negative learning rate",
        &[&f.clean],
        &["--data", "--lr=-1"],
        &["--lr"],
    );
}

#[test]
fn missing_data_directory_is_named() {
    let f = fixture_sets();
    refused(
        "missing data directory",
        &[&f.dir.join("nope")],
        &["--data"],
        &["nope"],
    );
}

#[test]
fn eval_data_with_ids_beyond_the_vocabulary_is_refused_before_the_first_step() {
    let f = fixture_sets();
    refused(
        "eval ids beyond the vocabulary",
        &[&f.clean, &inputs().big_id_heldout],
        &["--data", "--eval-data"],
        &[
            "heldout-big-id",
            "part-00000.parquet",
            "row 135",
            "token_id 5000",
            "vocabulary",
        ],
    );
}

/// `trainer eval`: the same checks as `--eval-data`, and a model whose own
/// tokenizer is not the set's is refused naming both.
fn eval_refused(name: &str, data: &Path, expect: &[&str]) {
    let f = fixture_sets();
    let model = f.reference.join("final");
    let res = run(TRAINER, &["eval", "--model", s(&model), "--data", s(data)]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{name}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("index-select"),
        "{name}: {err}"
    );
    for e in expect {
        assert!(err.contains(e), "{name}: message lacks {e:?}: {err}");
    }
}

#[test]
fn eval_command_with_ids_beyond_the_vocabulary_names_the_row() {
    eval_refused(
        "trainer eval, ids beyond the vocabulary",
        &inputs().big_id_heldout,
        &["part-00000.parquet", "row 135", "token_id 5000"],
    );
}

#[test]
fn eval_command_on_a_set_of_another_tokenizer_is_refused() {
    eval_refused(
        "trainer eval, another tokenizer",
        &inputs().other_tok_set,
        &["tokenizers differ", "heldout-other-tok", "ids)"],
    );
}

#[test]
fn out_a_users_folder_is_refused_and_left_alone() {
    let f = fixture_sets();
    let out = f.dir.join("users-folder");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "mine").unwrap();
    let res = run(
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
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a training run") && err.contains("thesis.tex"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "wrote into {}",
        out.display()
    );
}

/// A copy of the scored noisy set, changed by `edit`, for one case.
fn damaged(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let f = fixture_sets();
    let d = f.dir.join(format!("damaged-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(&f.noisy_scored).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    edit(&d);
    d
}

#[test]
fn a_flipped_byte_inside_a_row_group_is_caught_by_the_hash() {
    let set = damaged("flipped", |d| flip_a_byte(&d.join("part-00000.parquet")));
    refused(
        "flipped byte",
        &[&set],
        &["--data"],
        &[
            "part-00000.parquet",
            "SHA-256",
            "changed after it was written",
        ],
    );
}

#[test]
fn a_deleted_shard_is_named() {
    let set = damaged("deleted", |d| {
        std::fs::remove_file(d.join("part-00000.parquet")).unwrap()
    });
    refused(
        "deleted shard",
        &[&set],
        &["--data"],
        &["part-00000.parquet", "missing"],
    );
}

#[test]
fn a_shard_swapped_for_another_sets_is_named() {
    let f = fixture_sets();
    let set = damaged("swapped", |d| {
        std::fs::copy(
            f.heldout.join("part-00000.parquet"),
            d.join("part-00000.parquet"),
        )
        .unwrap();
        rehash_shard0(d); // even with the manifest made to match its bytes
    });
    refused(
        "swapped shard",
        &[&set],
        &["--data"],
        &["part-00000.parquet", "another job"],
    );
}

#[test]
fn negative_reference_losses_are_counted_and_the_first_named() {
    let set = damaged("negative", |d| {
        loss_in_shard0(d, 1, 3, -2.0); // row 64 + 4 = 68
        loss_in_shard0(d, 2, 0, -0.5);
        rehash_shard0(d);
    });
    refused(
        "negative ref_loss",
        &[&set],
        &["--data", "--objective=slm"],
        &[
            "2 reference losses",
            "below 0",
            "part-00000.parquet: row 68",
            "-2",
        ],
    );
}

#[test]
fn reference_losses_far_above_ln_vocab_are_refused() {
    let set = damaged("huge", |d| {
        loss_in_shard0(d, 0, 5, 1.0e4); // row 6
        rehash_shard0(d);
    });
    refused(
        "huge ref_loss",
        &[&set],
        &["--data", "--objective=slm"],
        &[
            "1 reference losses",
            "10 x ln(vocabulary)",
            "row 6",
            "10000",
        ],
    );
}

#[test]
fn a_ref_loss_column_rewritten_as_f64_is_refused_with_the_cast() {
    let set = damaged("f64", |d| {
        recast_shard0(d, "ref_loss", arrow::datatypes::DataType::Float64)
    });
    refused(
        "f64 ref_loss",
        &[&set],
        &["--data", "--objective=slm"],
        &[
            "part-00000.parquet",
            "ref_loss is Float64",
            "CAST(ref_loss AS FLOAT)",
        ],
    );
}

#[test]
fn a_token_id_column_rewritten_as_i64_is_refused_with_the_cast() {
    let set = damaged("i64", |d| {
        recast_shard0(d, "token_id", arrow::datatypes::DataType::Int64)
    });
    refused(
        "i64 token_id",
        &[&set],
        &["--data"],
        &[
            "part-00000.parquet",
            "token_id is Int64",
            "CAST(token_id AS UINTEGER)",
        ],
    );
}

#[test]
fn training_sets_of_two_tokenizers_are_refused() {
    let f = fixture_sets();
    refused(
        "mixed tokenizers",
        &[&f.noisy_packed, &inputs().other_tok_set],
        &["--data", "--data"],
        &["heldout-other-tok", "tokenizer"],
    );
}

#[test]
fn an_init_checkpoint_of_another_tokenizer_is_refused_naming_both() {
    let f = fixture_sets();
    let out = f.dir.join("bad-init-other-tokenizer");
    let _ = std::fs::remove_dir_all(&out);
    let init = f.reference.join("final");
    let args = [
        "train",
        "--data",
        s(&inputs().other_tok_set),
        "--init",
        s(&init),
        "--out",
        s(&out),
        "--max-steps",
        "1",
    ];
    let res = run(TRAINER, &args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    for e in ["tokenizers differ", "heldout-other-tok", "ref/final"] {
        assert!(err.contains(e), "message lacks {e:?}: {err}");
    }
    assert!(!out.exists());
}

/// `trainer train` with `--out out` on the fixture's noisy set: the output.
fn train_into(out: &str) -> std::process::Output {
    let f = fixture_sets();
    let args = [
        "train",
        "--data",
        s(&f.noisy_scored),
        "--out",
        out,
        "--model-size",
        "debug",
        "--max-steps",
        "1",
    ];
    run(TRAINER, &args)
}

#[test]
fn an_out_below_a_file_is_refused_before_any_work() {
    let f = fixture_sets();
    let file = f.dir.join("a-plain-file");
    std::fs::write(&file, b"x").unwrap();
    let res = train_into(s(&file.join("run")));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("a-plain-file is a file"), "{err}");
    assert!(!err.contains("checking"), "work started: {err}");
}

#[test]
fn an_out_that_cannot_be_written_is_refused_before_any_work() {
    // /sys refuses new files even to root, where permission bits would not.
    if std::fs::write("/sys/.rho1-probe", b"").is_ok() {
        eprintln!("SKIPPED: /sys is writable here");
        return;
    }
    let res = train_into("/sys/rho1-run");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write in /sys"), "{err}");
    assert!(!err.contains("checking"), "work started: {err}");
}

/// A full disk at the first write (a file-size limit of 0, `ulimit -f 0`,
/// with SIGXFSZ ignored so that writes fail as on a full disk): a clear
/// error, and the run directory it had made is gone again.
#[test]
fn a_full_disk_at_the_first_write_leaves_nothing() {
    let f = fixture_sets();
    let out = f.dir.join("bad-disk-full");
    let _ = std::fs::remove_dir_all(&out);
    let cmd = format!(
        "trap '' XFSZ; ulimit -f 0; exec {TRAINER} train --data {} --out {} --model-size debug --max-steps 1",
        s(&f.noisy_scored),
        s(&out)
    );
    let res = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(!out.exists(), "left {}", out.display());
}

#[test]
fn training_data_from_an_unsupported_url_is_refused_by_its_scheme() {
    let res = run(
        TRAINER,
        &[
            "train",
            "--data",
            "https://host/set",
            "--out",
            "/tmp/never",
            "--max-steps",
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("https://host/set") && err.contains("URLs are not supported here"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/never").exists());
}
