//! Data-parallel training on MPI (`--features trainer/mpi`, Open MPI's
//! mpirun): 2 ranks against 1 process with the same global batch, a killed
//! rank, mismatched ranks. The MPI build is found at RHO1_MPI_TRAINER
//! (.ci/run builds it); without it the tests skip, saying so, except under CI.

use std::process::Output;

use super::*;

/// The trainer built with the `mpi` feature, and mpirun; None (said) outside CI.
fn mpi_trainer() -> Option<String> {
    let bin = std::env::var("RHO1_MPI_TRAINER").ok();
    let mpirun = Command::new("mpirun").arg("--version").output();
    match (bin, mpirun) {
        (Some(b), Ok(o)) if o.status.success() && Path::new(&b).is_file() => Some(b),
        (b, _) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must provide mpirun and RHO1_MPI_TRAINER (got {b:?}; .ci/run installs Open MPI and builds it)"
            );
            eprintln!(
                "SKIPPED: no mpirun or RHO1_MPI_TRAINER (cargo build --features trainer/mpi)"
            );
            None
        }
    }
}

/// `bin args` as `ranks` ranks under mpirun (one thread each), `rank1_env`
/// set for rank 1 only.
fn mpirun(ranks: usize, bin: &str, args: &[String], rank1_env: &str) -> Output {
    let script = format!(
        r#"if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then export {rank1_env}; fi; exec "$0" "$@""#
    );
    mpirun_script(ranks, bin, args, &script)
}

/// `sh -c script bin args` as `ranks` ranks under mpirun, bounded by a timeout.
fn mpirun_script(ranks: usize, bin: &str, args: &[String], script: &str) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "mpirun",
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
    ])
    .arg(ranks.to_string())
    .args(["-x", "RAYON_NUM_THREADS=1", "sh", "-c", script, bin])
    .args(args)
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    cmd.output().expect("run mpirun")
}

/// `trainer train` on the checked-in set, global batch 5 x 2 micro-batches.
fn train_args(out: &Path, objective: &str, steps: u32) -> Vec<String> {
    let set = fixture("scoreset-v1");
    [
        "train",
        "--data",
        s(&set),
        "--out",
        s(out),
        "--model-size",
        "tiny",
        "--objective",
        objective,
        "--batch-size",
        "5",
        "--grad-accum",
        "2",
        "--max-steps",
        &steps.to_string(),
        "--warmup-steps",
        "5",
        "--seed",
        "3",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "5",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn largest_gap(a: &[StepRecord], b: &[StepRecord]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x.step, y.step);
            (x.loss_all - y.loss_all)
                .abs()
                .max((x.loss_selected - y.loss_selected).abs())
        })
        .fold(0.0, f64::max)
}

fn trace(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// 2 ranks and 1 process: the same windows, the same kept tokens, the same
/// curve (within 1e-4; the measured gap is printed).
fn two_ranks_equal_one_process(objective: &str) {
    let Some(bin) = mpi_trainer() else { return };
    let dir = scratch(&format!("mpi_{objective}"));
    let (one, two) = (dir.join("one"), dir.join("two"));
    let (t1, t2) = (dir.join("one.trace"), dir.join("two.trace"));
    let out = Command::new(&bin)
        .args(train_args(&one, objective, 20))
        .env("RHO1_TRACE_STEPS", &t1)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the trace named for rank 0 only: every rank gathers, rank 0 writes
    let script = format!(
        r#"if [ "$OMPI_COMM_WORLD_RANK" = 0 ]; then export RHO1_TRACE_STEPS={}; fi; exec "$0" "$@""#,
        t2.display()
    );
    let out = mpirun_script(2, &bin, &train_args(&two, objective, 20), &script);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 ranks (MPI)"), "{err}");
    // rank 0 alone writes: one trace line and one metrics line a step
    let (a, b) = (steps(&one), steps(&two));
    assert_eq!(b.len(), 20);
    let gap = largest_gap(&a, &b);
    eprintln!("{objective}: 20 steps on 2 ranks vs 1 process: largest loss gap {gap:.3e}");
    assert!(gap < 1e-4, "{gap}");
    let (ta, tb) = (trace(&t1), trace(&t2));
    assert_eq!(tb.len(), 20, "the trace is written once, by rank 0");
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x["windows"], y["windows"], "step {}", x["step"]);
        assert_eq!(x["tokens"], y["tokens"]);
    }
    let differ = |k: &str, i: usize| {
        let (p, q) = (ta[i][k].as_array().unwrap(), tb[i][k].as_array().unwrap());
        p.iter().zip(q).filter(|(u, v)| u != v).count()
    };
    // step 1: the same model on both, the same CE bits, the same mask
    assert_eq!(differ("ce_bits", 0), 0);
    assert_eq!(
        differ("weight_bits", 0),
        0,
        "the first step's kept tokens differ"
    );
    let later: Vec<usize> = (0..20).map(|i| differ("weight_bits", i)).collect();
    eprintln!("{objective}: tokens kept differently per step (float-level ties): {later:?}");
}

#[test]
fn two_ranks_train_slm_as_one_process_with_the_global_batch() {
    two_ranks_equal_one_process("slm");
}

#[test]
fn two_ranks_train_clm_as_one_process_with_the_global_batch() {
    two_ranks_equal_one_process("clm");
}

#[test]
fn a_killed_rank_ends_the_run_and_one_process_resumes_it_on_the_same_curve() {
    let Some(bin) = mpi_trainer() else { return };
    let dir = scratch("mpi_kill");
    let (full, cut) = (dir.join("full"), dir.join("cut"));
    assert!(mpirun(2, &bin, &train_args(&full, "slm", 15), "X=1")
        .status
        .success());
    let t0 = Instant::now();
    let out = mpirun(2, &bin, &train_args(&cut, "slm", 15), "RHO1_KILL_AT=step#8");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "the other rank did not end"
    );
    assert!(!cut.join("final").exists());
    // the checkpoint of 2 ranks resumes on 1 process (the same global batch)
    let mut a = train_args(&cut, "slm", 15);
    a.push("--resume".into());
    let out = Command::new(&bin).args(&a).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gap = largest_gap(&steps(&full), &steps(&cut));
    eprintln!(
        "killed at step 8 of 15 on 2 ranks, resumed on 1 process: largest loss gap {gap:.3e}"
    );
    assert!(gap < 1e-4, "{gap}");
}

#[test]
fn ranks_started_with_different_settings_are_refused() {
    let Some(bin) = mpi_trainer() else { return };
    let dir = scratch("mpi_mismatch");
    let a = train_args(&dir.join("run"), "slm", 5);
    // rank 1 trains with another learning rate
    let script = r#"LR=0.001; if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then LR=0.002; fi; exec "$0" "$@" --lr $LR"#;
    let out = Command::new("timeout")
        .args([
            "120",
            "mpirun",
            "--oversubscribe",
            "-np",
            "2",
            "sh",
            "-c",
            script,
            &bin,
        ])
        .args(&a)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different settings or data: rank(s) [1]"),
        "{err}"
    );
    assert!(!dir.join("run/metrics.jsonl").exists() || steps(&dir.join("run")).is_empty());
}

#[test]
fn a_trainer_without_mpi_refuses_to_run_as_ranks() {
    let dir = scratch("mpi_missing");
    let out = Command::new(TRAINER)
        .args(train_args(&dir.join("run"), "slm", 5))
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("one of 2 ranks") && err.contains("--features trainer/mpi"),
        "{err}"
    );
    assert!(!dir.join("run").exists(), "nothing written");
    let out = Command::new(TRAINER)
        .args(["read-bench", "--data", s(&fixture("scoreset-v1"))])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only `trainer train` runs as several ranks")
    );
}

#[test]
fn a_hung_rank_ends_the_run_within_the_bound() {
    let Some(bin) = mpi_trainer() else { return };
    let dir = scratch("mpi_hang");
    // rank 1 stops for good after its 5th update; rank 0 waits 3 s at most
    let script = r#"export RHO1_DIST_TIMEOUT=3; if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then export RHO1_STALL_AT=step#5; fi; exec "$0" "$@""#;
    let t0 = Instant::now();
    let out = mpirun_script(2, &bin, &train_args(&dir.join("run"), "slm", 15), script);
    let waited = t0.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rank 0: the other ranks did not answer for 3 s"),
        "{err}"
    );
    assert!(waited < Duration::from_secs(60), "{waited:?}");
    eprintln!("a hung rank: the run ended after {waited:.1?}");
}

/// --shard-optimizer (ZeRO-1): 2 ranks, each keeping half the moments,
/// train as one unsharded process; its checkpoint (moments gathered to
/// rank 0) resumes on one unsharded process on the same curve.
#[test]
fn a_sharded_optimizer_trains_and_resumes_as_one_process() {
    let Some(bin) = mpi_trainer() else { return };
    let dir = scratch("mpi_zero");
    let (one, cut) = (dir.join("one"), dir.join("cut"));
    let out = Command::new(&bin)
        .args(train_args(&one, "slm", 15))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sharded = train_args(&cut, "slm", 15);
    sharded.push("--shard-optimizer".into());
    let out = mpirun(2, &bin, &sharded, "RHO1_KILL_AT=step#8");
    assert!(!out.status.success(), "rank 1 was to be killed at step 8");
    assert!(cut.join("checkpoints/step-000005").is_dir());
    let before = steps(&cut);
    let gap = largest_gap(&steps(&one)[..before.len()], &before);
    eprintln!(
        "sharded optimizer, 2 ranks vs 1 process: largest loss gap {gap:.3e} over {} steps",
        before.len()
    );
    assert!(gap < 1e-4, "{gap}");
    // the sharded run's checkpoint on one process, unsharded
    let mut a = train_args(&cut, "slm", 15);
    a.push("--resume".into());
    let out = Command::new(&bin).args(&a).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gap = largest_gap(&steps(&one), &steps(&cut));
    eprintln!("sharded checkpoint resumed on 1 process: largest loss gap {gap:.3e}");
    assert!(gap < 1e-4, "{gap}");
}
