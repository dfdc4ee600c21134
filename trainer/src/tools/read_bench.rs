//! `trainer read-bench`: one epoch of a score set through the training
//! reader, as a step would take it (batches copied out), with nothing else
//! running: tokens/s, time waited for decoding, rows decoded per row used,
//! peak RSS. bench/reader.py runs it beside pyarrow on the same files.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::data::TrainData;

#[derive(Args)]
pub struct ReadBenchArgs {
    /// Score set to read.
    #[arg(long)]
    pub data: PathBuf,
    /// Windows per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Threads decoding row groups ahead of the reader.
    #[arg(long, default_value_t = 1)]
    pub read_threads: usize,
    /// Seed of the order (as `trainer train --seed`: the same seed reads the
    /// same order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// For a set in a bucket: keep its shards, fetched whole (SHA-256
    /// checked), in this directory for the next epoch or run.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The most the cache directory may hold, in GB (least recently used
    /// shards are removed first).
    #[arg(long, default_value_t = 50.0)]
    pub cache_gb: f64,
    /// Passes over the data (with --cache, the first fills it).
    #[arg(long, default_value_t = 1)]
    pub epochs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &ReadBenchArgs) -> Result<()> {
    let cache = match &a.cache {
        Some(dir) => Some(std::sync::Arc::new(shared::store::cache::Cache::open(
            dir,
            (a.cache_gb * 1e9) as u64,
        )?)),
        None => None,
    };
    let mut data =
        TrainData::open_with(std::slice::from_ref(&a.data), a.seed, a.read_threads, cache)?;
    let (total, t) = (data.num_windows(), data.seq_len() as u64);
    let t0 = Instant::now();
    let (mut cursor, mut checksum) = (0u64, 0u64);
    let mut epoch_seconds = Vec::new();
    for epoch in 1..=a.epochs.max(1) {
        let te = Instant::now();
        while cursor < total * epoch {
            let rows = (a.batch_size as u64).min(total * epoch - cursor) as usize;
            let b = data.batch(cursor, rows)?;
            checksum = checksum.wrapping_add(b.tokens.iter().map(|&x| x as u64).sum::<u64>());
            cursor += rows as u64;
        }
        epoch_seconds.push(te.elapsed().as_secs_f64());
    }
    let secs = t0.elapsed().as_secs_f64();
    let wait = data.take_wait().as_secs_f64();
    let tokens = total * t * a.epochs.max(1);
    let fig = serde_json::json!({
        "tokens": tokens,
        "read_threads": a.read_threads,
        "seconds": secs,
        "epoch_seconds": epoch_seconds,
        "tokens_per_s": tokens as f64 / secs,
        "wait_s": wait,
        "amplification": data.amplification(),
        "peak_rss_mb": shared::process::peak_rss_mb(),
        "token_checksum": checksum,
    });
    if a.json {
        shared::out!("{fig}");
    } else {
        shared::out!(
            "{tokens} tokens in {secs:.2} s: {:.2}M tokens/s with {} read thread(s); waited {wait:.2} s; rows decoded / used {:.3}; peak RSS {:.0} MB",
            tokens as f64 / secs / 1e6,
            a.read_threads,
            data.amplification(),
            fig["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
