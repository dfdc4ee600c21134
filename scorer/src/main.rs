//! `scorer`: tokenizes and packs a corpus, and scores every token with a
//! frozen reference model, writing Parquet score shards (see README).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

// mimalloc, told by shared::process never to purge, reuses freed pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bpe; // `scorer tokenizer`: train a byte-level BPE tokenizer
mod derive; // sets made from sets: `scorer combine`, `align`, `synth`
mod inspect; // tools over finished sets: `verify`, `info`, `view`, `export`, `dynamics`
mod job; // `scorer pack` and `scorer score`: plan, score shard by shard, finalize
mod parity; // `scorer parity`: a model's losses on fixed ids against reference losses
mod part; // one part of a split job: its lock and stale temporary files
mod sync; // `scorer sync`: a set between a directory and a bucket

use inspect::{dynamics, export, info, verify, view};

#[derive(Parser)]
#[command(
    name = "scorer",
    version,
    about = "Score a corpus with a frozen reference model into Parquet shards (RHO-1 SLM step 2)"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, display_order = 10_000)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// Each subcommand's arguments live in the module that runs it.
#[derive(Subcommand)]
enum Command {
    /// Train a byte-level BPE tokenizer on corpus files and write tokenizer.json.
    Tokenizer(bpe::TokenizerArgs),
    /// Tokenize and pack a corpus into shards without a model (CLM training data).
    Pack(job::args::PackArgs),
    /// Score every token of a corpus with a reference model (ref_loss shards).
    Score(job::args::ScoreArgs),
    /// Check every shard of a score set against its manifest (size, footer, SHA-256).
    Verify(verify::VerifyArgs),
    /// Write a selection as a loss mask: the set's rows plus a boolean `keep` column.
    Export(export::ExportArgs),
    /// Token loss dynamics across checkpoints (H->L, L->H, L->L, H->H), as in the RHO-1 paper.
    Dynamics(dynamics::DynamicsArgs),
    /// A score set over another tokenizer's windows of the same corpus: each
    /// target token gets the losses of the reference tokens that end inside it
    /// (per document, the total reference loss is preserved).
    Align(derive::align::AlignArgs),
    /// A self-contained HTML page showing documents token by token, coloured by score.
    View(view::ViewArgs),
    /// A model's per-token losses on fixed token ids against reference losses
    /// (e.g. transformers'), on a device and dtype: JSON, exit 1 past --tolerance.
    Parity(parity::ParityArgs),
    /// Several references at once: score sets of the same windows combined
    /// token by token (min, weighted mean or max of their ref_loss) into one set.
    Combine(derive::combine::CombineArgs),
    /// A synthetic score set of any size for benchmarks: a set's windows
    /// repeated, ref_loss from a fixed random stream (bench/reader.py).
    Synth(derive::synth::SynthArgs),
    /// Print a score set's manifest summary.
    Info(info::InfoArgs),
    /// Copy a score set between a directory and a bucket (s3://, gs://,
    /// az://), either way: resumable, checked against the manifest's hashes.
    Sync(sync::SyncArgs),
}

fn run(cli: Cli) -> Result<()> {
    shared::kernels::blas::init_and_report()?;
    shared::kernels::threads::set_threads(cli.threads);
    match cli.command {
        Command::Tokenizer(a) => a.run(),
        Command::Pack(a) => a.run(),
        Command::Score(a) => a.run(),
        Command::Verify(a) => a.run(),
        Command::Export(a) => a.run(),
        Command::Dynamics(a) => a.run(),
        Command::Align(a) => derive::align::run(&a),
        Command::View(a) => view::run(&a),
        Command::Parity(a) => parity::run(&a),
        Command::Combine(a) => a.run(),
        Command::Synth(a) => derive::synth::run(&a),
        Command::Info(a) => a.run(),
        Command::Sync(a) => a.run(),
    }
}

fn main() -> ExitCode {
    shared::process::main(|| {
        // Bucket URLs kept, other URLs refused by scheme, file:// made a path.
        let args = shared::util::location::local_args(std::env::args_os())?;
        run(Cli::parse_from(args))
    })
}
