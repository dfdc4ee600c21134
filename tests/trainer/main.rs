//! The `trainer` binary end to end on the embedded data (tiny debug model,
//! windows of 64), one module per feature: training, resuming, reports, and
//! bad input. The sets and the reference model are built once per run.

#[path = "../util/mod.rs"]
mod util;

mod bad_input;
mod bucket;
mod demo;
mod mpi;
mod python;
mod readme;
mod reports;
mod resume;
mod training;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shared::metrics::{Metrics, StepRecord};
use util::*;

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");

/// tokenizer.json, packed clean training set, packed held-out set, a trained
/// reference model and the noisy corpus scored with it; built once.
struct Fixture {
    dir: PathBuf,
    tok: PathBuf,
    clean: PathBuf,
    heldout: PathBuf,
    reference: PathBuf,
    noisy_scored: PathBuf,
    noisy_packed: PathBuf,
}

fn fixture_sets() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = scratch("trainer_fixture");
        let scorer = bin("scorer");
        let tok = dir.join("tokenizer.json");
        let clean_src = data("clean_train.jsonl.zst");
        run_ok(
            &scorer,
            &[
                "tokenizer",
                "--corpus",
                s(&clean_src),
                "--vocab-size",
                "1024",
                "--out",
                s(&tok),
            ],
        );
        let pack = |corpus: PathBuf, out: &Path| {
            run_ok(
                &scorer,
                &[
                    "pack",
                    "--tokenizer",
                    s(&tok),
                    "--corpus",
                    s(&corpus),
                    "--out",
                    s(out),
                    "--seq-len",
                    "64",
                    "--row-group-tokens",
                    "2048",
                ],
            );
        };
        let (clean, heldout, noisy_packed) = (
            dir.join("clean"),
            dir.join("heldout"),
            dir.join("noisy-packed"),
        );
        pack(clean_src, &clean);
        pack(data("clean_heldout.jsonl.zst"), &heldout);
        pack(data("noisy_web.jsonl.zst"), &noisy_packed);
        let reference = dir.join("ref");
        run_ok(
            TRAINER,
            &[
                "train",
                "--data",
                s(&clean),
                "--eval-data",
                s(&heldout),
                "--out",
                s(&reference),
                "--model-size",
                "debug",
                "--batch-size",
                "8",
                "--max-steps",
                "150",
                "--warmup-steps",
                "10",
                "--lr",
                "3e-3",
                "--eval-every",
                "0",
            ],
        );
        let noisy_scored = dir.join("noisy-scored");
        run_ok(
            &scorer,
            &[
                "score",
                "--model",
                s(&reference.join("final")),
                "--corpus",
                s(&data("noisy_web.jsonl.zst")),
                "--out",
                s(&noisy_scored),
                "--seq-len",
                "64",
                "--row-group-tokens",
                "2048",
                "--batch-size",
                "16",
            ],
        );
        Fixture {
            dir,
            tok,
            clean,
            heldout,
            reference,
            noisy_scored,
            noisy_packed,
        }
    })
}

/// A run's step lines (the typed records the trainer writes).
fn steps(run: &Path) -> Vec<StepRecord> {
    read_metrics(run).steps().cloned().collect()
}

fn read_metrics(run: &Path) -> Metrics {
    Metrics::read(&run.join("metrics.jsonl")).unwrap()
}

fn eval_losses(run: &Path) -> Vec<f64> {
    read_metrics(run).evals().map(|e| e.eval_loss).collect()
}
