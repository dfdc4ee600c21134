//! The `scorer` binary end to end, one module per feature: scoring, resuming
//! killed jobs, reading sets back, deriving sets, and bad input.

#[path = "../util/mod.rs"]
mod util;

mod bad_input;
mod bucket;
mod derive;
mod formats;
mod inspection;
mod resume;
mod scoring;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use shared::model::checkpoint::Checkpoint;
use shared::model::loss::{inputs_and_targets, per_token_loss};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::ShardReader;
use util::*;

const SCORER: &str = env!("CARGO_BIN_EXE_scorer");

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
