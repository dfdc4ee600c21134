//! Training straight from a bucket (a real S3-protocol server, moto): the
//! same steps, losses and held-out losses as from the directory the set
//! was copied from; a run directory in a bucket is refused.

use super::*;
use util::s3::S3Server;

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--eval-data",
        data,
        "--out",
        out,
        "--objective",
        "slm",
        "--model-size",
        "debug",
        "--batch-size",
        "4",
        "--max-steps",
        "6",
        "--warmup-steps",
        "1",
        "--eval-every",
        "3",
    ]
}

#[test]
fn training_from_a_bucket_equals_training_from_the_directory() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-train");
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-train/sets/v1";
    s3.run_ok(bin("scorer").as_str(), &["sync", s(&set), url]);
    let dir = scratch("bucket_training");
    let (local, remote) = (dir.join("local"), dir.join("remote"));
    s3.run_ok(TRAINER, &train_args(s(&set), s(&local)));
    let out = s3.run_ok(TRAINER, &train_args(url, s(&remote)));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("1 set(s) in a bucket"), "{said}");
    let (a, b) = (steps(&local), steps(&remote));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.step, x.loss_all, x.loss_selected),
            (y.step, y.loss_all, y.loss_selected)
        );
    }
    assert_eq!(eval_losses(&local), eval_losses(&remote));
    assert!(!eval_losses(&local).is_empty());

    let refused = s3.run(TRAINER, &train_args(s(&set), "s3://rho1-train/run"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("s3://rho1-train/run"), "{err}");
}

/// The store stops answering mid-run: the reads are retried, then the run
/// stops naming the object; with the set served again (a new server, the
/// same URL) `--resume` ends on the curve of an uninterrupted run.
#[test]
fn a_store_that_stops_mid_run_is_named_and_the_run_resumes_on_the_same_curve() {
    let Some(mut s3) = S3Server::start() else {
        return;
    };
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-stop/set";
    let serve = |s3: &S3Server| {
        s3.create_bucket("rho1-stop");
        s3.run_ok(bin("scorer").as_str(), &["sync", s(&set), url]);
    };
    serve(&s3);
    let dir = scratch("bucket_stop");
    let args = |data: &str, out: &Path, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--data",
            data,
            "--out",
            s(out),
            "--objective",
            "slm",
            "--model-size",
            "debug",
            "--batch-size",
            "4",
            "--max-steps",
            "150",
            "--warmup-steps",
            "5",
            "--checkpoint-every",
            "10",
            "--eval-every",
            "0",
        ]
        .map(String::from)
        .to_vec();
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let strs = |v: &[String]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let full = dir.join("full");
    run_ok(
        TRAINER,
        &strs(&args(s(&set), &full, false))
            .iter()
            .map(|x| x.as_str())
            .collect::<Vec<_>>(),
    );

    // 273 windows of 4 a step: an epoch is 69 steps; the prefetcher holds
    // this epoch and the next, so the reads of epoch 3 (step 137) fail.
    let cut = dir.join("cut");
    let child = Command::new(TRAINER)
        .args(args(url, &cut, false))
        .envs(s3.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cut
        .join("checkpoints/step-000010/trainer_state.json")
        .exists()
    {
        assert!(Instant::now() < deadline, "no checkpoint in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.stop();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("the stopped store, as the trainer says it:\n{err}");
    assert!(!out.status.success(), "the run did not notice: {err}");
    assert!(!cut.join("final").exists());
    assert!(err.contains("s3://rho1-stop/set/part-0000"), "{err}");
    assert!(err.contains("retries"), "{err}");
    assert!(!err.contains("rho1-test-secret-value"), "{err}");

    let s3 = S3Server::start().unwrap();
    serve(&s3);
    let res = s3.run_ok(
        TRAINER,
        &strs(&args(url, &cut, true))
            .iter()
            .map(|x| x.as_str())
            .collect::<Vec<_>>(),
    );
    assert!(String::from_utf8_lossy(&res.stderr).contains("resuming from"));
    let losses = |run: &Path| -> Vec<(u64, f64)> {
        steps(run)
            .iter()
            .map(|m| (m.step, m.loss_selected))
            .collect()
    };
    assert_eq!(losses(&full).len(), 150);
    assert_eq!(losses(&full), losses(&cut));
}

/// `--cache DIR`: the shards are fetched whole into DIR, named by their
/// SHA-256, and the run trains the same steps; a damaged cached copy is
/// fetched again, and a cache too small for a shard is named.
#[test]
fn a_cache_keeps_verified_shards_and_trains_the_same_steps() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-cache");
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-cache/set";
    s3.run_ok(bin("scorer").as_str(), &["sync", s(&set), url]);
    let dir = scratch("bucket_cache");
    let cache = dir.join("cache");
    let (local, cached) = (dir.join("local"), dir.join("cached"));
    s3.run_ok(TRAINER, &train_args(s(&set), s(&local)));
    let mut args = train_args(url, s(&cached));
    args.extend(["--cache", s(&cache)]);
    s3.run_ok(TRAINER, &args);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set.join("manifest.json")).unwrap()).unwrap();
    let mut want: Vec<String> = manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}.parquet", e["sha256"].as_str().unwrap()))
        .collect();
    want.sort();
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&cache), want);
    let losses = |run: &Path| -> Vec<(u64, f64)> {
        steps(run).iter().map(|m| (m.step, m.loss_all)).collect()
    };
    assert_eq!(losses(&local), losses(&cached));

    // A damaged copy is noticed and replaced.
    flip_a_byte(&cache.join(&want[0]));
    let again = dir.join("again");
    let mut args = train_args(url, s(&again));
    args.extend(["--cache", s(&cache)]);
    let out = s3.run_ok(TRAINER, &args);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("damaged in the cache, fetching it again"),
        "{said}"
    );
    assert_eq!(losses(&local), losses(&again));

    let tiny = dir.join("tiny");
    let tiny_run = dir.join("tiny-run");
    let mut args = train_args(url, s(&tiny_run));
    args.extend(["--cache", s(&tiny), "--cache-gb", "0.000001"]);
    let out = s3.run(TRAINER, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("more than the cache"), "{err}");
}
