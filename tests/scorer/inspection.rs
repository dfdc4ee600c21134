//! Reading a set back: DuckDB, `verify`, `export`, `dynamics` and the `view` page.

use super::*;

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
fn duckdb_cookbook_answers_are_right() {
    cookbook_case("cookbook", "f32");
}

/// The same queries, unchanged, on a set whose ref_loss column is FLOAT16.
#[test]
fn duckdb_cookbook_answers_are_right_on_an_f16_set() {
    cookbook_case("cookbook_f16", "f16");
}

fn cookbook_case(name: &str, loss_dtype: &str) {
    let dir = scratch(name);
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
            "--loss-dtype",
            loss_dtype,
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
        .arg(repo().join("docs/score-sets.md"))
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
    // Characters the byte-level BPE splits over several tokens.
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
    // Characters the byte-level BPE splits over several tokens.
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
