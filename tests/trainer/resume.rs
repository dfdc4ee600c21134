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
        metrics(run)
            .iter()
            .filter_map(|m| Some((m.get("step")?.as_u64()?, m.get("loss_selected")?.as_f64()?)))
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
        metrics(run)
            .iter()
            .filter_map(|m| Some((m.get("step")?.as_u64()?, m.get("loss_selected")?.as_f64()?)))
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

/// Issue 18: checkpoints (weights and optimizer state included) and score
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
