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
    /// Seed of the order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &ReadBenchArgs) -> Result<()> {
    let mut data = TrainData::open_with(std::slice::from_ref(&a.data), a.seed, a.read_threads)?;
    let (total, t) = (data.num_windows(), data.seq_len() as u64);
    let t0 = Instant::now();
    let (mut cursor, mut checksum) = (0u64, 0u64);
    while cursor < total {
        let rows = (a.batch_size as u64).min(total - cursor) as usize;
        let b = data.batch(cursor, rows)?;
        checksum = checksum.wrapping_add(b.tokens.iter().map(|&x| x as u64).sum::<u64>());
        cursor += rows as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let wait = data.take_wait().as_secs_f64();
    let tokens = total * t;
    let fig = serde_json::json!({
        "tokens": tokens,
        "read_threads": a.read_threads,
        "seconds": secs,
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
