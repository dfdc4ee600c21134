//! The `scorer` binary end to end: scores equal the model's, split jobs equal
//! single ones, killed jobs resume identically, bad input fails cleanly.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use common::*;
use shared::model::checkpoint::Checkpoint;
use shared::model::loss::{inputs_and_targets, per_token_loss};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::ShardReader;

const SCORER: &str = env!("CARGO_BIN_EXE_scorer");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A byte-level BPE tokenizer of at most 1024 ids (the golden models' vocabulary).
fn tokenizer(dir: &Path) -> PathBuf {
    let out = dir.join("tokenizer.json");
    let corpus = data("clean_heldout.jsonl.zst");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            s(&corpus),
            "--vocab-size",
            "1024",
            "--out",
            s(&out),
        ],
    );
    out
}

fn score_args<'a>(model: &'a Path, tok: &'a Path, corpus: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "score",
        "--model",
        s(model),
        "--tokenizer",
        s(tok),
        "--corpus",
        s(corpus),
        "--out",
        s(out),
        "--seq-len",
        "64",
        "--shard-tokens",
        "4096",
        "--row-group-tokens",
        "1024",
    ]
}

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

trait SpawnQuiet {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnQuiet for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Every file with a final shard name must be a complete shard.
fn assert_no_partial_shards(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("part-") && name.ends_with(".parquet") {
            if let Err(err) = ShardReader::open(&p) {
                // A file can vanish between listing and opening only if renamed over; never partial.
                panic!("{name} has a final name but is not a complete shard: {err}");
            }
        }
    }
}

#[test]
fn killed_job_resumes_to_identical_shards() {
    let dir = scratch("sigkill");
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_train.jsonl.zst");
    let reference = dir.join("uninterrupted");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &reference));
    let total = dir_files(&reference)
        .iter()
        .filter(|f| f.0.starts_with("part-"))
        .count();

    let out = dir.join("killed");
    let mut child = Command::new(SCORER)
        .args(score_args(&model, &tok, &corpus, &out))
        .output_async();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut shards_at_kill;
    loop {
        assert_no_partial_shards(&out);
        shards_at_kill = std::fs::read_dir(&out)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("part-")
                })
                .count()
            })
            .unwrap_or(0);
        if shards_at_kill >= 2 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        shards_at_kill >= 2 && shards_at_kill < total,
        "killed with {shards_at_kill} of {total} shards"
    );
    assert!(!out.join("manifest.json").exists());
    assert_no_partial_shards(&out);

    let rerun = run_ok(SCORER, &score_args(&model, &tok, &corpus, &out));
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(log.contains(" done, "), "{log}");
    assert_same_files(&reference, &out);
}

#[test]
fn a_different_job_on_the_same_directory_is_refused() {
    let dir = scratch("refuse");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let out = dir.join("set");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok, &corpus, &out),
    );
    let before = dir_files(&out);
    let res = run(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &out),
    );
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("reference model") && err.contains("llama-gqa"),
        "{err}"
    );
    assert_eq!(
        before,
        dir_files(&out),
        "a refused job must not touch the set"
    );
}

#[test]
fn duckdb_reads_the_set_as_written() {
    let dir = scratch("duckdb");
    let tok = tokenizer(&dir);
    let out = dir.join("set");
    run_ok(
        SCORER,
        &score_args(
            &fixture("llama-gqa"),
            &tok,
            &data("clean_heldout.jsonl.zst"),
            &out,
        ),
    );
    let python = match std::env::var("RHO1_PYTHON") {
        Ok(p) => p,
        Err(_) => {
            let probe = Command::new("python3")
                .args(["-c", "import duckdb"])
                .output();
            if !probe.map(|o| o.status.success()).unwrap_or(false) {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI must provide DuckDB: set RHO1_PYTHON"
                );
                eprintln!("SKIPPED: no python3 with duckdb (set RHO1_PYTHON; .ci/run does)");
                return;
            }
            "python3".into()
        }
    };
    let script = repo().join("tests/duckdb_check.py");
    let res = Command::new(python).arg(script).arg(&out).output().unwrap();
    assert!(
        res.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn a_second_process_on_the_same_part_is_refused_other_parts_are_not() {
    let dir = scratch("lock");
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_train.jsonl.zst");
    let out = dir.join("set");
    let mut first = Command::new(SCORER)
        .args(score_args(&model, &tok, &corpus, &out))
        .output_async();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("job.json").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = run(SCORER, &score_args(&model, &tok, &corpus, &out));
    let running = first.try_wait().unwrap().is_none();
    let err = String::from_utf8_lossy(&second.stderr);
    if running {
        assert_eq!(second.status.code(), Some(1), "{err}");
        assert!(err.contains("already writing part 0 of 1"), "{err}");
    }
    // Another part of a split job takes its own lock.
    let mut other = score_args(&model, &tok, &corpus, &out);
    other.extend(["--num-shards", "2", "--shard-index", "1"]);
    let third = run(SCORER, &other);
    assert!(!String::from_utf8_lossy(&third.stderr).contains("already writing"));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        running,
        "the first scorer finished before the second started: the test proves nothing"
    );
    // The kernel released the killed holder's lock: a rerun completes the set.
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &out));
    run_ok(SCORER, &["verify", s(&out)]);
}

#[test]
fn verify_names_a_replaced_shard() {
    let dir = scratch("verify");
    let tok = tokenizer(&dir);
    let out = dir.join("set");
    run_ok(
        SCORER,
        &score_args(
            &fixture("llama-gqa"),
            &tok,
            &data("clean_heldout.jsonl.zst"),
            &out,
        ),
    );
    run_ok(SCORER, &["verify", s(&out)]);
    let shard = out.join("part-00001.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff; // same size, different content
    std::fs::write(&shard, bytes).unwrap();
    let res = run(SCORER, &["verify", s(&out)]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("part-00001.parquet") && err.contains("content hash"),
        "{err}"
    );
}

/// SIGKILL at five points of a scoring job (fault injection, see
/// shared::util::fault), then a plain rerun: always the uninterrupted set's bytes,
/// and never a partial file under a final name.
#[test]
fn killed_at_five_points_reruns_to_the_same_set() {
    let dir = scratch("kill_points");
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_heldout.jsonl.zst");
    let reference = dir.join("uninterrupted");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &reference));
    for point in [
        "forward#9",
        "atomic:part-00002.parquet",
        "between-shards#3",
        "atomic:vocab.parquet",
        "atomic:manifest.json",
    ] {
        let out = dir.join(format!("killed-{}", point.replace([':', '#'], "_")));
        let res = Command::new(SCORER)
            .args(score_args(&model, &tok, &corpus, &out))
            .env("RHO1_KILL_AT", point)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            res.status.signal(),
            Some(9),
            "{point}: not killed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(
            !out.join("manifest.json").exists(),
            "{point}: manifest written before the kill"
        );
        assert_no_partial_shards(&out);
        run_ok(SCORER, &score_args(&model, &tok, &corpus, &out));
        assert_same_files(&reference, &out);
        let leftovers: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{point}: temporary files left: {leftovers:?}"
        );
    }
}

/// A full disk (here: a file-size limit, `ulimit -f`, with SIGXFSZ ignored so
/// that writes fail with EFBIG as on a full disk): a clear error naming the
/// file, no partial file under a final name, and a rerun with space completes.
#[test]
fn disk_full_is_a_clear_error_and_a_rerun_completes() {
    let dir = scratch("disk_full");
    let tok = tokenizer(&dir);
    let model = fixture("llama-gqa");
    let corpus = data("clean_heldout.jsonl.zst");
    let out = dir.join("set");
    let mut args = score_args(&model, &tok, &corpus, &out);
    let at = args.iter().position(|a| *a == "--shard-tokens").unwrap();
    args[at + 1] = "16384"; // shards larger than the limit
    let cmd = format!(
        "trap '' XFSZ; ulimit -f 24; exec {SCORER} {}",
        args.join(" ")
    );
    let res = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("File too large") && err.contains("part-0000"),
        "{err}"
    );
    assert_no_partial_shards(&out);
    assert!(!out.join("manifest.json").exists());
    run_ok(SCORER, &args);
    run_ok(SCORER, &["verify", s(&out)]);
}

fn duckdb_python() -> Option<String> {
    if let Ok(p) = std::env::var("RHO1_PYTHON") {
        return Some(p);
    }
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    if probe.map(|o| o.status.success()).unwrap_or(false) {
        return Some("python3".into());
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must provide DuckDB: set RHO1_PYTHON"
    );
    eprintln!("SKIPPED: no python3 with duckdb (set RHO1_PYTHON; .ci/run does)");
    None
}

#[test]
fn readme_duckdb_cookbook_answers_are_right() {
    let dir = scratch("cookbook");
    let tok = tokenizer(&dir);
    let out = dir.join("set");
    let (a, b) = (
        data("clean_heldout.jsonl.zst"),
        data("clean_train.jsonl.zst"),
    );
    run_ok(
        SCORER,
        &[
            "score",
            "--model",
            s(&fixture("llama-gqa")),
            "--tokenizer",
            s(&tok),
            "--corpus",
            s(&a),
            s(&b),
            "--out",
            s(&out),
            "--seq-len",
            "64",
        ],
    );
    // Values the queries must reproduce, computed here from the shards.
    let all = ScoreSet::open(&out).unwrap().read_all().unwrap();
    let rl = all.ref_loss.as_ref().unwrap();
    let mut per_doc: std::collections::BTreeMap<u64, (f64, u64)> = Default::default();
    for (d, x) in all.doc_ids.iter().zip(rl) {
        if !x.is_nan() {
            let e = per_doc.entry(*d).or_default();
            e.0 += *x as f64;
            e.1 += 1;
        }
    }
    let (worst_id, worst_mean) = per_doc
        .iter()
        .map(|(d, (sum, n))| (*d, sum / *n as f64))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best });
    let docs_per_window: Vec<usize> = all
        .doc_ids
        .chunks(all.seq_len)
        .map(|w| w.iter().collect::<std::collections::BTreeSet<_>>().len())
        .collect();
    let expected = dir.join("expected.json");
    let json = serde_json::json!({"worst_doc_id": worst_id, "worst_doc_mean": worst_mean, "docs_per_window": docs_per_window});
    std::fs::write(&expected, json.to_string()).unwrap();
    let Some(python) = duckdb_python() else {
        return;
    };
    let res = Command::new(python)
        .arg(repo().join("tests/duckdb_cookbook.py"))
        .arg(repo().join("README.md"))
        .arg(&out)
        .arg(&expected)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// (pos, ref_loss, keep) of every row of an export's shards.
fn export_rows(dir: &Path) -> Vec<(u32, f32, bool)> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float32Type, UInt32Type};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in r {
            let b = b.unwrap();
            let pos = b
                .column_by_name("pos")
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            let loss = b
                .column_by_name("ref_loss")
                .unwrap()
                .as_primitive::<Float32Type>()
                .clone();
            let keep = b.column_by_name("keep").unwrap().as_boolean().clone();
            for i in 0..b.num_rows() {
                rows.push((
                    pos.value(i),
                    if loss.is_null(i) {
                        f32::NAN
                    } else {
                        loss.value(i)
                    },
                    keep.value(i),
                ));
            }
        }
    }
    rows
}

#[test]
fn export_writes_a_loss_mask_of_exactly_k_tokens() {
    let dir = scratch("export");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let (reference, live) = (dir.join("ref"), dir.join("live"));
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &reference),
    );
    // Issue 17: characters the byte-level BPE splits over several tokens.
    let written = "What\u{2019}s Next: caf\u{e9} cr\u{e8}me, na\u{ef}ve \u{6570}\u{5b66} \u{1f642}";
    let doc = format!("{written}. The sum of the first n odd numbers is n squared, and so on.");
    let unicode = dir.join("unicode.jsonl");
    let line = serde_json::json!({ "text": doc.repeat(4) }).to_string();
    std::fs::write(&unicode, format!("{line}\n")).unwrap();
    let unicode_set = dir.join("unicode-set");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &unicode, &unicode_set),
    );
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok, &corpus, &live),
    );

    let by_ref = dir.join("mask-ref");
    run_ok(
        SCORER,
        &[
            "export",
            "--set",
            s(&reference),
            "--ratio",
            "0.6",
            "--out",
            s(&by_ref),
        ],
    );
    let rows = export_rows(&by_ref);
    let predicted: Vec<&(u32, f32, bool)> = rows.iter().filter(|r| r.0 != 0).collect();
    let k = (0.6 * predicted.len() as f64).ceil() as usize;
    assert_eq!(predicted.iter().filter(|r| r.2).count(), k);
    assert!(
        rows.iter().filter(|r| r.0 == 0).all(|r| !r.2),
        "position 0 is never kept"
    );
    let max_kept = predicted
        .iter()
        .filter(|r| r.2)
        .map(|r| r.1)
        .fold(f32::MIN, f32::max);
    let min_dropped = predicted
        .iter()
        .filter(|r| !r.2)
        .map(|r| r.1)
        .fold(f32::MAX, f32::min);
    assert!(
        max_kept <= min_dropped,
        "kept up to {max_kept}, dropped from {min_dropped}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(by_ref.join("export.json")).unwrap())
            .unwrap();
    let kept_sum: u64 = summary["per_source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kept"].as_u64().unwrap())
        .sum();
    assert_eq!(kept_sum as usize, k);

    // Ranked by excess against the "live" model's scores of the same windows.
    let by_excess = dir.join("mask-excess");
    run_ok(
        SCORER,
        &[
            "export",
            "--set",
            s(&reference),
            "--against",
            s(&live),
            "--ratio",
            "0.3",
            "--out",
            s(&by_excess),
        ],
    );
    let rows = export_rows(&by_excess);
    let live_rows = ScoreSet::open(&live)
        .unwrap()
        .read_all()
        .unwrap()
        .ref_loss
        .unwrap();
    let excess: Vec<(f32, bool)> = rows
        .iter()
        .zip(&live_rows)
        .filter(|(r, _)| r.0 != 0)
        .map(|(r, l)| (l - r.1, r.2))
        .collect();
    let k = (0.3 * excess.len() as f64).ceil() as usize;
    assert_eq!(excess.iter().filter(|e| e.1).count(), k);
    let min_kept = excess
        .iter()
        .filter(|e| e.1)
        .map(|e| e.0)
        .fold(f32::MAX, f32::min);
    let max_dropped = excess
        .iter()
        .filter(|e| !e.1)
        .map(|e| e.0)
        .fold(f32::MIN, f32::max);
    assert!(
        min_kept >= max_dropped,
        "kept excess from {min_kept}, dropped up to {max_dropped}"
    );
}

#[test]
fn dynamics_classifies_every_token_by_its_fitted_loss_change() {
    use arrow::array::AsArray;
    use arrow::datatypes::Float32Type;
    let dir = scratch("dynamics");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let sets: Vec<PathBuf> = ["llama-mha", "llama-gqa", "llama-gqa"]
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let out = dir.join(format!("ckpt{i}"));
            if i == 2 {
                // the same scores twice: a copy stands for a third checkpoint
                std::fs::create_dir_all(&out).unwrap();
                for e in std::fs::read_dir(dir.join("ckpt1")).unwrap() {
                    let p = e.unwrap().path();
                    std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
                }
            } else {
                run_ok(SCORER, &score_args(&fixture(m), &tok, &corpus, &out));
            }
            out
        })
        .collect();
    let out = dir.join("dynamics.parquet");
    let mut args = vec!["dynamics", "--out", s(&out), "--sets"];
    args.extend(sets.iter().map(|p| s(p)));
    let res = run_ok(SCORER, &args);
    let table = String::from_utf8_lossy(&res.stdout);
    assert!(table.contains("H->L") && table.contains("L->H"), "{table}");

    let losses: Vec<Vec<f32>> = sets
        .iter()
        .map(|d| {
            ScoreSet::open(d)
                .unwrap()
                .read_all()
                .unwrap()
                .ref_loss
                .unwrap()
        })
        .collect();
    let mean_final = ScoreSet::open(&sets[2])
        .unwrap()
        .manifest()
        .ref_loss
        .as_ref()
        .unwrap()
        .mean;
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = 0;
    let t = 64;
    for b in r {
        let b = b.unwrap();
        let seq = b
            .column_by_name("seq_id")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .clone();
        let pos = b
            .column_by_name("pos")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt32Type>()
            .clone();
        let l0 = b
            .column_by_name("loss_0")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        let cat = b
            .column_by_name("category")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            let idx = seq.value(i) as usize * t + pos.value(i) as usize;
            assert_eq!(l0.value(i), losses[0][idx]);
            let ys = [losses[0][idx], losses[1][idx], losses[2][idx]];
            // least-squares slope over x = 0, 1, 2 is (y2 - y0) / 2; dL = 2 * slope
            let dl = (ys[2] - ys[0]) as f64;
            let want = if dl < -0.2 {
                "H->L"
            } else if dl > 0.2 {
                "L->H"
            } else if ys[2] as f64 <= mean_final {
                "L->L"
            } else {
                "H->H"
            };
            assert_eq!(cat.value(i), want, "row {idx}: losses {ys:?}");
            rows += 1;
        }
    }
    assert_eq!(rows, losses[0].iter().filter(|x| !x.is_nan()).count());
}

#[test]
fn view_page_renders_in_a_real_browser_without_console_errors() {
    let dir = scratch("view");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let (reference, live) = (dir.join("ref"), dir.join("live"));
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &reference),
    );
    // Issue 17: characters the byte-level BPE splits over several tokens.
    let written = "What\u{2019}s Next: caf\u{e9} cr\u{e8}me, na\u{ef}ve \u{6570}\u{5b66} \u{1f642}";
    let doc = format!("{written}. The sum of the first n odd numbers is n squared, and so on.");
    let unicode = dir.join("unicode.jsonl");
    let line = serde_json::json!({ "text": doc.repeat(4) }).to_string();
    std::fs::write(&unicode, format!("{line}\n")).unwrap();
    let unicode_set = dir.join("unicode-set");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &unicode, &unicode_set),
    );
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok, &corpus, &live),
    );
    let pages = [
        (
            "loss",
            vec!["view", "--set", s(&reference), "--docs", "0", "3"],
        ),
        (
            "excess",
            vec![
                "view",
                "--set",
                s(&reference),
                "--against",
                s(&live),
                "--color",
                "excess",
                "--limit",
                "2",
            ],
        ),
        (
            "kept",
            vec![
                "view",
                "--set",
                s(&reference),
                "--color",
                "kept",
                "--ratio",
                "0.5",
            ],
        ),
        ("unicode", vec!["view", "--set", s(&unicode_set)]),
    ];
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    for (name, mut args) in pages {
        let html = dir.join(format!("{name}.html"));
        args.extend(["--out", s(&html)]);
        run_ok(SCORER, &args);
        let text = std::fs::read_to_string(&html).unwrap();
        assert!(
            text.contains("<span class=\"t\"") && !text.contains("http"),
            "{name}: no tokens, or a network reference"
        );
        let Some(browser) = chromium else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide chromium (.ci/run installs it)"
            );
            eprintln!("SKIPPED browser check: no chromium");
            continue;
        };
        let shot = dir.join(format!("{name}.png"));
        let res = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&res.stderr);
        let console: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
            .collect();
        assert!(console.is_empty(), "{name}: console messages: {console:?}");
        let png = std::fs::read(&shot).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: no screenshot ({} bytes)\n{log}",
            png.len()
        );
        if name == "unicode" {
            // The text as the browser holds it: the DOM, tags stripped.
            let dom = Command::new(browser)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
                .arg(format!("file://{}", html.display()))
                .output()
                .unwrap();
            let dom = String::from_utf8(dom.stdout).unwrap();
            let mut rendered = String::new();
            let mut in_tag = false;
            for c in dom.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => rendered.push(c),
                    _ => {}
                }
            }
            assert!(
                rendered.contains(written),
                "not rendered as written:\n{rendered}"
            );
            assert!(
                !rendered.contains('\u{fffd}'),
                "replacement characters:\n{rendered}"
            );
        }
    }
    // The page itself: the split characters stand whole inside one span each.
    let page = std::fs::read_to_string(dir.join("unicode.html")).unwrap();
    for c in ["\u{2019}", "\u{e9}", "\u{6570}", "\u{1f642}"] {
        assert!(page.contains(c), "{c} missing from the page");
    }
    assert!(!page.contains('\u{fffd}'));
    assert!(page.contains(" tokens: id "), "no grouped span");
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

/// Issue 13: `--model FILE.gguf` with no --tokenizer scores with the file's
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

/// Issue 15: `--dtype bf16` scores in bfloat16 (losses still f32, close to
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

/// Issue 16: `scorer combine` over sets of the same windows: itself is the
/// identity, each op checked row by row, a set of other windows refused
/// naming what differs, and the result opens as a score set.
#[test]
fn combine_takes_min_mean_max_of_references_row_by_row() {
    let dir = scratch("combine");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let (a, b) = (dir.join("a"), dir.join("b"));
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &a),
    );
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok, &corpus, &b),
    );
    let losses = |d: &Path| ScoreSet::open(d).unwrap().read_all().unwrap();
    let (la, lb) = (losses(&a), losses(&b));
    let (ra, rb) = (la.ref_loss.clone().unwrap(), lb.ref_loss.clone().unwrap());

    let combine = |name: &str, sets: &[&Path], extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["combine", "--sets"];
        args.extend(sets.iter().map(|p| s(p)));
        args.extend(extra);
        args.extend(["--out", s(&out)]);
        run_ok(SCORER, &args);
        out
    };
    let same = combine("self", &[&a, &a], &["--op", "mean"]);
    let ls = losses(&same);
    assert_eq!(ls.tokens, la.tokens);
    assert_eq!(ls.doc_ids, la.doc_ids);
    let rs = ls.ref_loss.unwrap();
    assert!(rs
        .iter()
        .zip(&ra)
        .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));

    for (name, op, want) in [
        (
            "min",
            "min",
            (|x: f32, y: f32| x.min(y)) as fn(f32, f32) -> f32,
        ),
        ("max", "max", |x: f32, y: f32| x.max(y)),
        ("mean", "mean", |x: f32, y: f32| {
            ((x as f64 + y as f64) / 2.0) as f32
        }),
    ] {
        let out = combine(name, &[&a, &b], &["--op", op]);
        let got = losses(&out).ref_loss.unwrap();
        for (i, g) in got.iter().enumerate() {
            if ra[i].is_nan() {
                assert!(g.is_nan());
            } else {
                assert!((g - want(ra[i], rb[i])).abs() < 1e-6, "{op} row {i}");
            }
        }
    }
    let weighted = combine("weighted", &[&a, &b], &["--op", "mean", "--weights", "3,1"]);
    let got = losses(&weighted).ref_loss.unwrap();
    let i = 5;
    assert!((got[i] - (0.75 * ra[i] + 0.25 * rb[i])).abs() < 1e-6);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weighted.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["derived_from"]["op"], "mean");
    assert_eq!(m["derived_from"]["sources"].as_array().unwrap().len(), 2);

    // Other windows: refused, naming the field; nothing written.
    let other = dir.join("seq32");
    let gqa = fixture("llama-gqa");
    let mut args = score_args(&gqa, &tok, &corpus, &other);
    let at = args.iter().position(|x| *x == "64").unwrap();
    args[at] = "32";
    run_ok(SCORER, &args);
    let bad = dir.join("bad");
    let res = run(
        SCORER,
        &[
            "combine",
            "--sets",
            s(&a),
            s(&other),
            "--op",
            "min",
            "--out",
            s(&bad),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && err.contains("seq_len: 64 vs 32"),
        "{err}"
    );
    assert!(!bad.exists());
}

/// Per document: (sum of the finite ref_loss values, whether any of its
/// tokens sits at position 0 of a window).
fn doc_sums(set: &Path) -> std::collections::HashMap<u64, (f64, bool)> {
    let w = ScoreSet::open(set).unwrap().read_all().unwrap();
    let r = w.ref_loss.unwrap();
    let mut m = std::collections::HashMap::new();
    for (i, (d, x)) in w.doc_ids.iter().zip(&r).enumerate() {
        let e = m.entry(*d).or_insert((0f64, false));
        if i % w.seq_len == 0 {
            e.1 = true;
        } else {
            e.0 += *x as f64;
        }
    }
    m
}

/// `scorer align`: onto its own tokenizer it gives the set back exactly;
/// onto another it keeps each document's total reference loss and follows
/// the contract (the target's own windows, NaN only at position 0); a
/// corpus other than the scored one is refused, naming the file.
#[test]
fn align_moves_reference_losses_onto_another_tokenizer() {
    let dir = scratch("align");
    let tok = tokenizer(&dir);
    // Short documents, so that many lie inside one window: one per
    // non-empty line of the SmolLM2 fixture's text.
    let lines = std::fs::read_to_string(fixture("smollm2/text.txt")).unwrap();
    let corpus = dir.join("lines.jsonl");
    let jsonl: String = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({ "text": l }).to_string() + "\n")
        .collect();
    std::fs::write(&corpus, jsonl).unwrap();
    let src = dir.join("src");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &src),
    );
    let align = |scores: &Path, tokenizer: &Path, corpus: &Path, out: &Path| {
        run(
            SCORER,
            &[
                "align",
                "--scores",
                s(scores),
                "--tokenizer",
                s(tokenizer),
                "--corpus",
                s(corpus),
                "--out",
                s(out),
            ],
        )
    };

    let same = dir.join("same");
    assert!(align(&src, &tok, &corpus, &same).status.success());
    let (a, b) = (
        ScoreSet::open(&src).unwrap().read_all().unwrap(),
        ScoreSet::open(&same).unwrap().read_all().unwrap(),
    );
    assert_eq!(
        (&a.tokens, &a.doc_ids, &a.seq_ids),
        (&b.tokens, &b.doc_ids, &b.seq_ids)
    );
    let (ra, rb) = (a.ref_loss.unwrap(), b.ref_loss.unwrap());
    assert!(
        ra.iter().zip(&rb).all(|(x, y)| x.to_bits() == y.to_bits()),
        "not the identity"
    );

    // Another tokenizer: 300 ids, trained on other text.
    let tok2 = dir.join("tok300.json");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            s(&data("noisy_web.jsonl.zst")),
            "--vocab-size",
            "300",
            "--out",
            s(&tok2),
        ],
    );
    let other = dir.join("other");
    let res = align(&src, &tok2, &corpus, &other);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let packed = dir.join("packed");
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok2),
            "--corpus",
            s(&corpus),
            "--out",
            s(&packed),
            "--seq-len",
            "64",
            "--shard-tokens",
            "4096",
            "--row-group-tokens",
            "1024",
        ],
    );
    let (o, p) = (
        ScoreSet::open(&other).unwrap().read_all().unwrap(),
        ScoreSet::open(&packed).unwrap().read_all().unwrap(),
    );
    assert!(
        o.tokens.len() > ra.len(),
        "300 ids make more tokens than 1024"
    );
    assert_eq!(
        o.tokens[..],
        p.tokens[..o.tokens.len()],
        "the target's own windows"
    );
    assert_eq!(o.doc_ids[..], p.doc_ids[..o.doc_ids.len()]);
    for (i, x) in o.ref_loss.as_ref().unwrap().iter().enumerate() {
        assert_eq!(x.is_nan(), i % 64 == 0, "token {i}: {x}");
    }
    // Per document: the totals agree wherever neither set lost a value at a
    // window's first position, and the document is whole in both.
    let (sa, so) = (doc_sums(&src), doc_sums(&other));
    let last = |m: &std::collections::HashMap<u64, (f64, bool)>| *m.keys().max().unwrap();
    let (mut compared, mut zero) = (0, 0);
    for (d, (x, cut_a)) in &sa {
        let Some((y, cut_o)) = so.get(d) else {
            continue;
        };
        if *cut_a || *cut_o || *d == last(&sa) || *d == last(&so) || *d == 0 {
            continue;
        }
        assert!((x - y).abs() < 1e-3, "document {d}: {x} vs {y}");
        compared += 1;
    }
    for x in o.ref_loss.unwrap().iter() {
        zero += (*x == 0.0) as usize;
    }
    eprintln!(
        "align: {compared} documents compared, {zero} target tokens without a reference token"
    );
    assert!(compared >= 3, "only {compared} documents compared");
    // --split bytes: the same totals, and every target token has a share.
    let bytes = dir.join("bytes");
    let res = run(
        SCORER,
        &[
            "align",
            "--scores",
            s(&src),
            "--tokenizer",
            s(&tok2),
            "--corpus",
            s(&corpus),
            "--split",
            "bytes",
            "--out",
            s(&bytes),
        ],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let sb = doc_sums(&bytes);
    for (d, (x, _)) in &so {
        if sa.get(d).is_some_and(|(_, cut)| !cut)
            && !so[d].1
            && *d != last(&sa)
            && *d != last(&so)
            && *d != 0
        {
            assert!((x - sb[d].0).abs() < 1e-3, "bytes, document {d}");
        }
    }
    let rb = ScoreSet::open(&bytes)
        .unwrap()
        .read_all()
        .unwrap()
        .ref_loss
        .unwrap();
    // zeros only where the share came from a reference token without a loss
    // (position 0 of a reference window), at most two target tokens each
    let zeros = rb.iter().filter(|&&x| x == 0.0).count();
    assert!(
        zeros <= 2 * ra.len() / 64,
        "{zeros} target tokens without a share"
    );
    assert!(zero > 0, "some target tokens end no reference token");
    assert!(zeros < zero, "bytes {zeros} vs end {zero} tokens at 0");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["derived_from"]["op"], "align");
    assert_eq!(m["tokenizer"]["vocab_size"], 300);
    assert_eq!(m["derived_from"]["source"]["tokenizer"]["vocab_size"], 1024);

    // The aligned set combines with one scored directly on the target's
    // windows, over the windows both hold.
    let direct = dir.join("direct");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok2, &corpus, &direct),
    );
    let both = dir.join("both");
    run_ok(
        SCORER,
        &[
            "combine",
            "--sets",
            s(&direct),
            s(&other),
            "--op",
            "min",
            "--out",
            s(&both),
        ],
    );
    let (dw, bw) = (
        ScoreSet::open(&direct).unwrap().read_all().unwrap(),
        ScoreSet::open(&both).unwrap().read_all().unwrap(),
    );
    let n = dw.tokens.len().min(o.tokens.len());
    assert_eq!(bw.tokens.len(), n, "the windows both hold");
    let (rd, ro, rbo) = (
        dw.ref_loss.unwrap(),
        ScoreSet::open(&other)
            .unwrap()
            .read_all()
            .unwrap()
            .ref_loss
            .unwrap(),
        bw.ref_loss.unwrap(),
    );
    for i in (1..n).filter(|i| i % 64 != 0) {
        assert_eq!(rbo[i], rd[i].min(ro[i]), "token {i}");
    }

    // A real 49k-id tokenizer (SmolLM2's GGUF) as the reference's.
    if let Some(gguf) = smollm2_gguf() {
        let text = &corpus;
        let smol = dir.join("smol");
        run_ok(
            SCORER,
            &[
                "score",
                "--model",
                s(&gguf),
                "--corpus",
                s(text),
                "--out",
                s(&smol),
                "--seq-len",
                "64",
            ],
        );
        let onto = dir.join("smol-onto-1024");
        let res = align(&smol, &tok, text, &onto);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (x, y) = (doc_sums(&smol), doc_sums(&onto));
        let mut compared = 0;
        for (d, (a, cut_a)) in &x {
            let Some((b, cut_b)) = y.get(d) else { continue };
            if *cut_a || *cut_b || *d == last(&x) || *d == last(&y) || *d == 0 {
                continue;
            }
            assert!((a - b).abs() < 1e-3, "SmolLM2 document {d}: {a} vs {b}");
            compared += 1;
        }
        assert!(compared >= 3, "only {compared} SmolLM2 documents compared");
    }

    // Not the scored corpus: refused, nothing written.
    let bad = dir.join("bad");
    let res = align(&src, &tok2, &data("noisy_web.jsonl.zst"), &bad);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success()
            && err.contains("noisy_web.jsonl.zst")
            && err.contains("not the corpus"),
        "{err}"
    );
    assert!(!bad.exists());
}
