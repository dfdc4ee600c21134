//! Killed runs resume to identical losses; written files follow the umask.

use super::*;

#[test]
fn killed_run_resumes_with_identical_losses() {
    let f = fixture_sets();
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--data",
            s(&f.noisy_scored),
            "--out",
            s(out),
            "--objective",
            "slm",
            "--select",
            "random",
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "40",
            "--warmup-steps",
            "5",
            "--checkpoint-every",
            "10",
            "--eval-every",
            "0",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let full = f.dir.join("resume-full");
    let _ = std::fs::remove_dir_all(&full);
    let a: Vec<String> = args(&full);
    run_ok(TRAINER, &a.iter().map(|x| x.as_str()).collect::<Vec<_>>());

    let cut = f.dir.join("resume-cut");
    let _ = std::fs::remove_dir_all(&cut);
    let mut child = Command::new(TRAINER)
        .args(args(&cut))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cut
        .join("checkpoints/step-000010/trainer_state.json")
        .exists()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !cut.join("final").exists(),
        "the run finished before it was killed"
    );
    let mut b = args(&cut);
    b.push("--resume".into());
    let res = run_ok(TRAINER, &b.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&res.stderr).contains("resuming from"));

    let losses = |run: &Path| -> Vec<(u64, f64)> {
        steps(run)
            .iter()
            .map(|m| (m.step, m.loss_selected))
            .collect()
    };
    let (x, y) = (losses(&full), losses(&cut));
    assert_eq!(x.len(), 40);
    assert_eq!(
        x.iter().map(|p| p.0).collect::<Vec<_>>(),
        y.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    for ((step, l1), (_, l2)) in x.iter().zip(&y) {
        assert!((l1 - l2).abs() <= 1e-6, "step {step}: {l1} vs {l2}");
    }
}

/// SIGKILL during a step and during a checkpoint write, then `--resume`: the
/// run restarts from the last complete checkpoint and its losses equal an
/// uninterrupted run's.
#[test]
fn killed_in_a_step_or_a_checkpoint_write_resumes_exactly() {
    use std::os::unix::process::ExitStatusExt;
    let f = fixture_sets();
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--data",
            s(&f.noisy_scored),
            "--out",
            s(out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "24",
            "--warmup-steps",
            "5",
            "--checkpoint-every",
            "8",
            "--eval-every",
            "0",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let losses = |run: &Path| -> Vec<(u64, f64)> {
        steps(run)
            .iter()
            .map(|m| (m.step, m.loss_selected))
            .collect()
    };
    let full = f.dir.join("kill-full");
    let _ = std::fs::remove_dir_all(&full);
    run_ok(
        TRAINER,
        &args(&full).iter().map(|x| x.as_str()).collect::<Vec<_>>(),
    );
    for point in ["step#13", "atomic:step-000016"] {
        let out = f
            .dir
            .join(format!("kill-{}", point.replace([':', '#'], "_")));
        let _ = std::fs::remove_dir_all(&out);
        let res = Command::new(TRAINER)
            .args(args(&out))
            .env("RHO1_KILL_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            res.status.signal(),
            Some(9),
            "{point}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(
            !out.join("checkpoints/step-000016").exists(),
            "{point}: a partial checkpoint has a final name"
        );
        assert!(out
            .join("checkpoints/step-000008/trainer_state.json")
            .exists());
        let mut b = args(&out);
        b.push("--resume".into());
        let res = run_ok(TRAINER, &b.iter().map(|x| x.as_str()).collect::<Vec<_>>());
        assert!(
            String::from_utf8_lossy(&res.stderr).contains("step 8"),
            "{point}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (x, y) = (losses(&full), losses(&out));
        assert_eq!(
            x.iter().map(|p| p.0).collect::<Vec<_>>(),
            y.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{point}"
        );
        for ((step, l1), (_, l2)) in x.iter().zip(&y) {
            assert!(
                (l1 - l2).abs() <= 1e-6,
                "{point}: step {step}: {l1} vs {l2}"
            );
        }
    }
}

/// Every regular file under `dir` (recursively) with its permission bits.
fn file_modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(file_modes(&p));
        } else if meta.is_file() {
            out.push((p, meta.permissions().mode() & 0o777));
        }
    }
    out
}

/// Checkpoints (weights and optimizer state included) and score
/// sets get the mode the user's umask gives a new file, like every other file.
#[test]
fn written_files_follow_the_umask() {
    let f = fixture_sets();
    for (umask, want) in [("022", 0o644), ("077", 0o600)] {
        let dir = f.dir.join(format!("umask-{umask}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (run, set) = (dir.join("run"), dir.join("set"));
        let sh = |bin: &str, args: &[&str]| {
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!("umask {umask} && exec \"$@\""))
                .arg("sh")
                .arg(bin)
                .args(args)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{bin} {args:?} under umask {umask}");
        };
        let train = [
            "train",
            "--data",
            s(&f.clean),
            "--out",
            s(&run),
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--checkpoint-every",
            "1",
            "--eval-every",
            "0",
        ];
        sh(TRAINER, &train);
        let (model, heldout) = (run.join("final"), data("clean_heldout.jsonl.zst"));
        let score = [
            "score",
            "--model",
            s(&model),
            "--corpus",
            s(&heldout),
            "--out",
            s(&set),
            "--seq-len",
            "64",
        ];
        sh(&bin("scorer"), &score);
        let files: Vec<_> = file_modes(&run)
            .into_iter()
            .chain(file_modes(&set))
            .collect();
        for name in ["model.safetensors", "optimizer.safetensors", "config.json"] {
            assert!(
                files
                    .iter()
                    .any(|(p, _)| p.ends_with(format!("final/{name}"))),
                "{name}"
            );
        }
        assert!(files.iter().any(|(p, _)| p.ends_with("part-00000.parquet")));
        let wrong: Vec<_> = files.iter().filter(|(_, m)| *m != want).collect();
        assert!(
            wrong.is_empty(),
            "umask {umask}: want {want:o}, got {wrong:?}"
        );
    }
}

/// The flags of a short SLM run of the debug model into `out`.
fn short_run(out: &Path, steps: &str) -> Vec<String> {
    let f = fixture_sets();
    [
        "train",
        "--data",
        s(&f.noisy_scored),
        "--out",
        s(out),
        "--objective",
        "slm",
        "--model-size",
        "debug",
        "--batch-size",
        "4",
        "--max-steps",
        steps,
        "--warmup-steps",
        "2",
        "--eval-every",
        "0",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_resume_with_changed_settings_names_each_one() {
    let out = fixture_sets().dir.join("resume-changed");
    let _ = std::fs::remove_dir_all(&out);
    run_ok(TRAINER, &strs(&short_run(&out, "2")));
    let mut again = short_run(&out, "2");
    again.extend(["--resume", "--lr", "0.002", "--seed", "3"].map(String::from));
    let res = run(TRAINER, &strs(&again));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("optim.lr: 0.001 -> 0.002"), "{err}");
    assert!(err.contains("data.seed: 0 -> 3"), "{err}");
    assert!(
        err.contains("--max-steps") && err.contains("--device"),
        "the message lists what may change: {err}"
    );
    assert!(
        !err.contains("run.max_steps"),
        "the run section may change: {err}"
    );
}

#[test]
fn a_finished_run_is_extended_by_a_higher_max_steps_at_the_schedules_floor() {
    let out = fixture_sets().dir.join("resume-extend");
    let _ = std::fs::remove_dir_all(&out);
    run_ok(TRAINER, &strs(&short_run(&out, "6")));
    let first = steps(&out);
    let mut more = short_run(&out, "9");
    more.push("--resume".into());
    let res = run_ok(TRAINER, &strs(&more));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("schedules keep the 6 steps"), "{err}");
    let all = steps(&out);
    assert_eq!(all.len(), 9);
    assert_eq!(&all[..6], &first[..], "the first 6 steps changed");
    for m in &all[6..] {
        assert!(
            (m.lr - 1e-4).abs() < 1e-12,
            "step {}: lr {}, not the floor",
            m.step,
            m.lr
        );
    }
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("final/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["step"], 9);
}

/// SIGTERM (what Slurm and Kubernetes send) and SIGINT (Ctrl-C): the step in
/// flight finishes, a checkpoint is written, the exit status is 75, and
/// `--resume` continues on the curve of an uninterrupted run.
#[test]
fn a_stop_signal_saves_a_checkpoint_and_the_resume_continues_the_same_curve() {
    let f = fixture_sets();
    let full = f.dir.join("signal-full");
    let _ = std::fs::remove_dir_all(&full);
    let mut base = short_run(&full, "300");
    base.extend(["--checkpoint-every", "0"].map(String::from));
    run_ok(TRAINER, &strs(&base));
    let reference = steps(&full);
    for signal in ["TERM", "INT"] {
        let cut = f.dir.join(format!("signal-{signal}"));
        let _ = std::fs::remove_dir_all(&cut);
        let mut args = short_run(&cut, "300");
        args.extend(["--checkpoint-every", "0"].map(String::from));
        let child = Command::new(TRAINER)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline
            && std::fs::read_to_string(cut.join("metrics.jsonl"))
                .map_or(true, |m| m.lines().count() < 5)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        let res = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(75), "SIG{signal}: {err}");
        assert!(err.contains(&format!("stopped by SIG{signal}")), "{err}");
        assert!(
            !cut.join("final").exists(),
            "SIG{signal}: the run finished before the signal"
        );
        let stopped_at = steps(&cut).len();
        let ckpt = cut.join(format!(
            "checkpoints/step-{stopped_at:06}/trainer_state.json"
        ));
        assert!(
            ckpt.is_file(),
            "no checkpoint at the step it stopped after: {err}"
        );
        args.push("--resume".into());
        let res = run_ok(TRAINER, &strs(&args));
        assert!(String::from_utf8_lossy(&res.stderr).contains("resuming from"));
        let resumed = steps(&cut);
        assert_eq!(resumed.len(), reference.len());
        for (a, b) in reference.iter().zip(&resumed) {
            let (x, y) = (a.loss_selected, b.loss_selected);
            assert!(
                (x - y).abs() <= 1e-6,
                "SIG{signal}, step {}: {x} vs {y}",
                a.step
            );
        }
    }
}

/// A second trainer on a run directory in use is refused at once, naming the
/// first (its pid); the lock of a killed trainer does not block the rerun.
#[test]
fn a_second_trainer_on_a_busy_run_is_refused_and_a_killed_ones_lock_is_free() {
    let out = fixture_sets().dir.join("lock-busy");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(TRAINER)
        .args(short_run(&out, "1000000"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.join("metrics.jsonl").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut again = short_run(&out, "3");
    again.push("--resume".into());
    let started = Instant::now();
    let res = run(TRAINER, &strs(&again));
    let err = String::from_utf8_lossy(&res.stderr).into_owned();
    let first_alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL: no clean-up runs
    child.wait().unwrap();
    assert!(first_alive, "the first trainer ended before the check");
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("a trainer is already running"), "{err}");
    assert!(err.contains(&format!("pid {}", child.id())), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused at once, not after the start-up checks"
    );

    let res = run(TRAINER, &strs(&again));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{err}");
    assert!(out.join("final").is_dir());
}

/// A shard damaged after a run was stopped is caught when the run resumes:
/// nothing is trained on it and the run directory is left as it was.
#[test]
fn a_set_damaged_between_a_stop_and_the_resume_is_refused() {
    let f = fixture_sets();
    let data = f.dir.join("resume-damaged-data");
    let out = f.dir.join("resume-damaged");
    for d in [&data, &out] {
        let _ = std::fs::remove_dir_all(d);
    }
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(&f.noisy_scored).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
    }
    let with_data = |steps: &str| {
        let mut a = short_run(&out, steps);
        let at = a.iter().position(|x| x == "--data").unwrap() + 1;
        a[at] = s(&data).to_string();
        a
    };
    run_ok(TRAINER, &strs(&with_data("2")));
    flip_a_byte(&data.join("part-00000.parquet"));
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let mut again = with_data("4");
    again.push("--resume".into());
    let res = run(TRAINER, &strs(&again));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SHA-256") && err.contains("part-00000.parquet"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before);
}

/// A run of 2 steps with a checkpoint after each, then `damage` applied to
/// it: `--resume` must fail naming `expect`, leaving metrics.jsonl as it was.
fn resume_refused_after(name: &str, damage: impl FnOnce(&Path), expect: &[&str]) {
    let out = fixture_sets().dir.join(format!("resume-corrupt-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let mut first = short_run(&out, "2");
    first.extend(["--checkpoint-every", "1"].map(String::from));
    run_ok(TRAINER, &strs(&first));
    damage(&out);
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let mut again = short_run(&out, "4");
    again.extend(["--checkpoint-every", "1", "--resume"].map(String::from));
    let res = run(TRAINER, &strs(&again));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: message lacks {e:?}: {err}");
    }
    assert!(!err.contains("starting from step 0"), "{name}: {err}");
    assert_eq!(
        std::fs::read(out.join("metrics.jsonl")).unwrap(),
        before,
        "{name}"
    );
}

fn truncate(p: &Path) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..b.len() / 2]).unwrap();
}

#[test]
fn a_truncated_trainer_state_is_named_on_resume() {
    resume_refused_after(
        "state",
        |out| truncate(&out.join("final/trainer_state.json")),
        &["final/trainer_state.json", "malformed trainer state"],
    );
}

#[test]
fn a_deleted_trainer_state_is_named_not_skipped() {
    resume_refused_after(
        "state-gone",
        |out| std::fs::remove_file(out.join("final/trainer_state.json")).unwrap(),
        &["final", "without trainer_state.json"],
    );
}

#[test]
fn a_truncated_optimizer_state_is_named_on_resume() {
    resume_refused_after(
        "optimizer",
        |out| truncate(&out.join("final/optimizer.safetensors")),
        &["final/optimizer.safetensors"],
    );
}

#[test]
fn truncated_checkpoint_weights_are_named_on_resume() {
    resume_refused_after(
        "weights",
        |out| truncate(&out.join("final/model.safetensors")),
        &["final/model.safetensors"],
    );
}
