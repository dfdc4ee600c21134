//! Score sets in a bucket (a real S3-protocol server, moto, on 127.0.0.1):
//! `scorer sync` both ways, `info` and `verify` on a URL, and the errors
//! for a missing bucket, a missing prefix, a damaged object and an
//! unsupported scheme.

use super::*;
use util::s3::S3Server;

/// Directory -> bucket -> directory gives the same files; a second sync
/// copies nothing; `verify` and `info` read the bucket.
#[test]
fn sync_round_trip_is_byte_identical_and_resumable() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-sets");
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-sets/runs/v1";
    let up = s3.run_ok(SCORER, &["sync", s(&set), url]);
    let said = String::from_utf8_lossy(&up.stderr);
    assert!(said.contains("9 file(s) of 9 to upload"), "{said}");
    let again = s3.run_ok(SCORER, &["sync", s(&set), url]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already holds this set"), "{said}");

    let verified = s3.run_ok(SCORER, &["verify", url]);
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(said.contains("all 5 shard(s) verified"), "{said}");
    let info = s3.run_ok(SCORER, &["info", url]);
    let m: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(m["windows"], 273, "{m}");

    let dir = scratch("bucket_round_trip");
    let back = dir.join("v1");
    s3.run_ok(SCORER, &["sync", url, s(&back)]);
    assert_same_files(&set, &back);
    // Resumable: a shard lost locally is fetched again, the rest kept.
    std::fs::remove_file(back.join("part-00002.parquet")).unwrap();
    std::fs::remove_file(back.join("manifest.json")).unwrap();
    let resumed = s3.run_ok(SCORER, &["sync", url, s(&back)]);
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(said.contains("1 file(s) of 9 to download"), "{said}");
    assert_same_files(&set, &back);
}

/// A missing bucket, a missing prefix and another scheme are each named.
#[test]
fn missing_bucket_prefix_and_unsupported_scheme_are_named() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-there");
    let cases = [
        (
            "s3://rho1-absent/set",
            "s3://rho1-absent/set: the bucket does not exist",
        ),
        (
            "s3://rho1-there/nothing",
            "s3://rho1-there/nothing/manifest.json: missing: nothing under this prefix",
        ),
        (
            "https://example.org/set",
            "https:// URLs are not supported here",
        ),
    ];
    for (url, want) in cases {
        for args in [vec!["info", url], vec!["verify", url]] {
            let out = s3.run(SCORER, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} succeeded");
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.contains("rho1-test-secret-value"), "{err}");
        }
    }
    // Writing into a missing bucket is refused before any work.
    let out = s3.run(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&fixture("scoreset-v1/tokenizer.json")),
            "--corpus",
            s(&fixture("scoreset-v1-corpus.jsonl")),
            "--out",
            "s3://rho1-absent/set",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("s3://rho1-absent/set: the bucket does not exist"),
        "{err}"
    );
    assert!(!err.contains("tokenizing"), "{err}");
}

/// A shard changed in the bucket after it was written is refused by
/// `verify` and by a sync down, naming the object; nothing is kept.
#[test]
fn a_damaged_object_is_named_and_not_kept() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-damaged");
    let dir = scratch("bucket_damaged");
    let set = dir.join("set");
    copy_dir(&fixture("scoreset-v1"), &set);
    let url = "s3://rho1-damaged/set";
    s3.run_ok(SCORER, &["sync", s(&set), url]);
    // Replace one object with a damaged copy of the same size.
    let damaged = dir.join("damaged");
    copy_dir(&set, &damaged);
    flip_a_byte(&damaged.join("part-00001.parquet"));
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(
        damaged.join("part-00001.parquet"),
        one.join("part-00001.parquet"),
    )
    .unwrap();
    s3.put_object(
        "rho1-damaged",
        "set/part-00001.parquet",
        &one.join("part-00001.parquet"),
    );

    let out = s3.run(SCORER, &["verify", url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("BAD  s3://rho1-damaged/set/part-00001.parquet"),
        "{err}"
    );
    let back = dir.join("back");
    let out = s3.run(SCORER, &["sync", url, s(&back)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("s3://rho1-damaged/set/part-00001.parquet: its SHA-256 is"),
        "{err}"
    );
    assert!(!back.join("part-00001.parquet").exists());
    assert!(!back.join("manifest.json").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// `scorer score --out s3://...` as an array job of two parts running at
/// once (each with its own staging directory, as on two machines) gives the
/// set one process writes into a directory, byte for byte (every file, the
/// manifest and the shards' hashes included); a rerun scores nothing.
#[test]
fn scoring_into_a_bucket_equals_scoring_into_a_directory() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-scored");
    let dir = scratch("bucket_scoring");
    let tok = tokenizer(&dir);
    let (model, corpus) = (fixture("llama-mha"), data("clean_train.jsonl.zst"));
    let local = dir.join("local");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &local));
    let url = Path::new("s3://rho1-scored/sets/web");
    let parts: Vec<_> = ["0", "1"]
        .iter()
        .map(|part| {
            let stage = dir.join(format!("stage-{part}"));
            let mut args = score_args(&model, &tok, &corpus, url);
            args.extend([
                "--shard-index",
                part,
                "--num-shards",
                "2",
                "--stage",
                s(&stage),
            ]);
            Command::new(SCORER)
                .args(&args)
                .envs(s3.env())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in parts {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let again = s3.run_ok(SCORER, &score_args(&model, &tok, &corpus, url));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains(" done, 0 to score"), "{said}");
    let back = dir.join("back");
    s3.run_ok(SCORER, &["sync", "s3://rho1-scored/sets/web", s(&back)]);
    assert_same_files(&local, &back);
}

/// A scorer killed between two parts of a multipart upload leaves no
/// object for that shard (nor its entry); the rerun completes the set.
#[test]
fn a_scorer_killed_mid_upload_leaves_no_visible_part_and_the_rerun_completes() {
    // Small parts on both sides, so that a shard is a multipart upload.
    let Some(s3) = S3Server::start_with(&[("S3_UPLOAD_PART_MIN_SIZE", "1")]) else {
        return;
    };
    s3.create_bucket("rho1-killed");
    let dir = scratch("bucket_killed_upload");
    let tok = tokenizer(&dir);
    let (model, corpus) = (fixture("llama-mha"), data("clean_train.jsonl.zst"));
    let local = dir.join("local");
    run_ok(SCORER, &score_args(&model, &tok, &corpus, &local));
    let url = Path::new("s3://rho1-killed/set");
    let args = score_args(&model, &tok, &corpus, url);
    let killed = Command::new(SCORER)
        .args(&args)
        .envs(s3.env())
        .env("RHO1_STORE_PART_BYTES", "4096")
        .env("RHO1_KILL_AT", "upload-part:part-00003.parquet#2")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&killed.stderr);
    assert!(!killed.status.success(), "{said}");
    assert!(
        said.contains("fault injection: SIGKILL at upload-part:part-00003.parquet"),
        "{said}"
    );
    let keys = s3.list("rho1-killed");
    assert!(
        keys.contains(&"set/part-00002.parquet".to_string()),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("part-00003")), "{keys:?}");
    assert!(!keys.contains(&"set/manifest.json".to_string()), "{keys:?}");

    let rerun = Command::new(SCORER)
        .args(&args)
        .envs(s3.env())
        .env("RHO1_STORE_PART_BYTES", "4096")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{said}");
    // Shard 3 was whole in the staging directory: uploaded, not scored again.
    assert!(said.contains(" 4 done, "), "{said}");
    let back = dir.join("back");
    s3.run_ok(SCORER, &["sync", "s3://rho1-killed/set", s(&back)]);
    assert_same_files(&local, &back);
}

/// Credentials the store refuses: the URL is named, the keys are not (moto
/// checks every request's keys against its IAM, where ours do not exist).
#[test]
fn wrong_credentials_are_named_by_url_without_the_keys() {
    let Some(s3) = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]) else {
        return;
    };
    for args in [
        vec!["info", "s3://rho1-auth/set"],
        vec!["sync", "s3://rho1-auth/set", "/tmp/never-synced"],
    ] {
        let out = s3.run(SCORER, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("s3://rho1-auth/set"), "{err}");
        assert!(
            err.contains("access denied: the credentials from the environment"),
            "{err}"
        );
        assert!(!err.contains("rho1-test-secret-value"), "{err}");
        assert!(!err.contains("rho1-test-key"), "{err}");
    }
    assert!(!Path::new("/tmp/never-synced").exists());
}

/// `export`, `view` and `synth` read a set in a bucket as they read its
/// directory: the same exported shards, the same page, the same synthetic set.
#[test]
fn export_view_and_synth_read_a_set_in_a_bucket() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-tools");
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-tools/v1";
    s3.run_ok(SCORER, &["sync", s(&set), url]);
    let dir = scratch("bucket_tools");
    for (name, src) in [("local", s(&set)), ("remote", url)] {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        let (export, page, synth) = (out.join("export"), out.join("page.html"), out.join("synth"));
        s3.run_ok(
            SCORER,
            &[
                "export",
                "--set",
                src,
                "--ratio",
                "0.5",
                "--out",
                s(&export),
            ],
        );
        s3.run_ok(
            SCORER,
            &["view", "--set", src, "--docs", "0", "--out", s(&page)],
        );
        s3.run_ok(
            SCORER,
            &[
                "synth",
                "--set",
                src,
                "--tokens",
                "20000",
                "--out",
                s(&synth),
            ],
        );
    }
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        dir_files(d)
            .into_iter()
            .filter(|(n, _)| n.ends_with(".parquet") || n == "tokenizer.json")
            .collect()
    };
    let (l, r) = (dir.join("local"), dir.join("remote"));
    assert_eq!(files(&l.join("export")), files(&r.join("export")));
    assert!(!files(&l.join("export")).is_empty());
    assert_eq!(files(&l.join("synth")), files(&r.join("synth")));
    // The page and the synthetic set's manifest name their source.
    let text = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    for f in ["page.html", "synth/manifest.json"] {
        assert_eq!(
            text(l.join(f)).replace(s(&set), "SET"),
            text(r.join(f)).replace(url, "SET"),
            "{f} differs beyond the set's name"
        );
    }
}
