//! `trainer report` and the checked-in debug loss curve.

use super::*;

/// A short, checked-in loss curve of a tiny debug run: a change that moves
/// any step's training loss by more than the tolerance fails here.
/// Regenerate deliberately with `UPDATE_LOSS_CURVE=1 cargo test -p trainer --test trainer reports::debug_loss_curve`.
#[test]
fn debug_loss_curve_matches_the_checked_in_one() {
    // f32 sums can round differently with another thread count or SIMD width;
    // 30 steps of such noise stay far below this (measured: see the fixture).
    const TOLERANCE: f64 = 2e-3;
    let f = fixture_sets();
    let out = f.dir.join("curve");
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
            "4",
            "--max-steps",
            "30",
            "--warmup-steps",
            "5",
            "--lr",
            "3e-3",
            "--eval-every",
            "0",
            "--seed",
            "0",
        ],
    );
    let got: Vec<f64> = steps(&out).iter().map(|m| m.loss_all).collect();
    assert_eq!(got.len(), 30);
    let path = repo().join("tests/fixtures/loss_curve_debug.json");
    if std::env::var("UPDATE_LOSS_CURVE").is_ok() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap()).unwrap();
        return;
    }
    let want: Vec<f64> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(want.len(), got.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < TOLERANCE,
        "the loss curve moved by {worst} (tolerance {TOLERANCE}):\n got  {got:?}\n want {want:?}"
    );
    assert!(
        got[29] < got[0] - 0.5,
        "the debug run does not learn: {got:?}"
    );
}

#[test]
fn report_groups_runs_and_plots_their_metrics() {
    let f = fixture_sets();
    let runs = f.dir.join("report-runs");
    let _ = std::fs::remove_dir_all(&runs);
    for seed in ["0", "1"] {
        let out = runs.join(format!("slm-seed{seed}"));
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
                "4",
                "--max-steps",
                "6",
                "--eval-every",
                "3",
                "--seed",
                seed,
            ],
        );
    }
    let out = runs.join("report");
    let res = run_ok(
        TRAINER,
        &[
            "report",
            "--out",
            s(&out),
            "--run",
            s(&runs.join("slm-seed0")),
            s(&runs.join("slm-seed1")),
        ],
    );
    let table = String::from_utf8_lossy(&res.stdout);
    let finals: Vec<f64> = ["0", "1"]
        .iter()
        .map(|sd| {
            *eval_losses(&runs.join(format!("slm-seed{sd}")))
                .last()
                .unwrap()
        })
        .collect();
    let mean = (finals[0] + finals[1]) / 2.0;
    assert!(
        table.contains("| slm | 2 | 6 |") && table.contains(&format!("{mean:.4}")),
        "{table}"
    );
    for i in 1..=3 {
        let svg = std::fs::read_to_string(out.join(format!("report-{i}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "report-{i}.svg"
        );
    }
    let sel = std::fs::read_to_string(out.join("report-3.svg")).unwrap();
    assert!(sel.contains("mean excess of dropped tokens"));
}

/// `--help` texts against their snapshots in tests/fixtures/help/
/// (RHO1_BLESS=1 rewrites them after a deliberate change).
#[test]
fn help_texts_match_their_snapshots() {
    let scorer = bin("scorer");
    let cases: [(&str, &str, &[&str]); 5] = [
        ("trainer-train", TRAINER, &["train", "--help"]),
        ("trainer-report", TRAINER, &["report", "--help"]),
        ("trainer-selection", TRAINER, &["selection", "--help"]),
        ("scorer-pack", &scorer, &["pack", "--help"]),
        ("scorer-score", &scorer, &["score", "--help"]),
    ];
    let mut stale = Vec::new();
    for (name, bin, args) in cases {
        let text = String::from_utf8(run_ok(bin, args).stdout).unwrap();
        let path = fixture(&format!("help/{name}.txt"));
        if std::env::var_os("RHO1_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(format!("{name}:\n{text}"));
        }
    }
    assert!(
        stale.is_empty(),
        "help differs from tests/fixtures/help/ (RHO1_BLESS=1 to accept):\n{}",
        stale.join("\n")
    );
}

/// What the snapshots must say, whatever else changes in them.
#[test]
fn help_texts_state_what_a_user_needs() {
    let scorer = bin("scorer");
    let help = |bin: &str, args: &[&str]| String::from_utf8(run_ok(bin, args).stdout).unwrap();
    let train = help(TRAINER, &["train", "--help"]);
    assert!(
        train.contains("trainer train --data DIR --out DIR"),
        "{train}"
    );
    assert!(
        train.contains("[possible values: debug, tiny, small, medium]"),
        "{train}"
    );
    assert!(
        train.contains("Exit status 75") || help(TRAINER, &["--help"]).contains("Exit status 75")
    );
    let report = help(TRAINER, &["report", "--help"]);
    assert!(
        report.contains("report-1.svg") && !report.contains("(report.svg)"),
        "{report}"
    );
    let selection = help(TRAINER, &["selection", "--help"]);
    assert!(
        selection.contains("Token selection rule") && selection.contains("Fraction k"),
        "{selection}"
    );
    let pack = help(&scorer, &["pack", "--help"]);
    assert!(
        !pack.contains("--batch-size") && !pack.contains("--device"),
        "{pack}"
    );
}
