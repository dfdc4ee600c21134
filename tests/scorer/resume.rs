//! Jobs that are killed, run twice or run out of disk: a rerun completes to
//! the same set, and nothing half-written is ever left under a final name.

use super::*;

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

/// A scratch directory, its tokenizer, model and corpus, and the set one
/// uninterrupted `scorer score` makes of them, with its shard count.
fn uninterrupted(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf, usize) {
    let dir = scratch(name);
    let tok = tokenizer(&dir);
    let model = fixture("llama-mha");
    let corpus = data("clean_train.jsonl.zst");
    let reference = dir.join("uninterrupted");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &reference));
    let total = dir_files(&reference)
        .iter()
        .filter(|f| f.0.starts_with("part-"))
        .count();
    (dir, tok, model, corpus, reference, total)
}

#[test]
fn killed_job_resumes_to_identical_shards() {
    let (dir, tok, model, corpus, reference, total) = uninterrupted("sigkill");

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

/// SIGTERM (what Slurm and Kubernetes send before a kill) stops a scoring
/// job after the shard it is writing: exit status 75, whole shards only, no
/// manifest; the same command then finishes the set, identical to one run
/// without a stop.
#[test]
fn sigterm_stops_after_a_whole_shard_and_a_rerun_finishes_the_set() {
    let (dir, tok, model, corpus, reference, total) = uninterrupted("sigterm");

    let out = dir.join("stopped");
    let child = Command::new(SCORER)
        .args(score_args(&model, &tok, &corpus, &out))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.join("part-00000.parquet").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let res = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(75), "{err}");
    assert!(err.contains("SIGTERM: stopped after part-"), "{err}");
    assert!(!out.join("manifest.json").exists());
    assert_no_partial_shards(&out);
    let written = dir_files(&out)
        .iter()
        .filter(|f| f.0.starts_with("part-"))
        .count();
    assert!(written >= 1 && written < total, "{written} of {total}");

    run_ok(SCORER, &score_args(&model, &tok, &corpus, &out));
    assert_same_files(&reference, &out);
}
