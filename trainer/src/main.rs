//! `trainer`: trains the shared Llama model on score shards, as plain causal
//! LM (clm) or RHO-1 selective LM (slm, one forward pass per step), and
//! evaluates checkpoints on held-out score sets.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc, told by shared::process never to purge, reuses freed pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The training core, in the order a step uses it.

mod args; // flags and TOML, validated into typed settings
mod data; // the checks a run makes of its data (the reader: shared::reader)
mod dist; // data-parallel training: collectives (one process, MPI), each rank's rows
mod eval; // held-out loss and perplexity
mod noise; // the noise filter fitted to the training data (the filter itself: shared::select)
mod optim; // AdamW with in-place CPU kernels
mod schedule; // learning-rate and selection-ratio schedules
mod state; // checkpoints with optimizer moments and trainer state
mod step; // one training step: forward, per-token loss, select, backward, update
mod trace; // RHO1_TRACE_STEPS: each step's windows, losses and weights, for tests
mod train; // `trainer train`: setup, the loop, finishing

// Tools around the core.
mod tools;

use tools::{bench, demo, read_bench, report, selection};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train a Llama-family model with CLM or RHO-1 selective language modeling"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, display_order = 10_000)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train (clm or slm) on score sets written by `scorer`. Exit status 75:
    /// stopped by SIGTERM or Ctrl-C with a checkpoint (rerun with --resume).
    #[command(
        override_usage = "trainer train --data DIR --out DIR [OPTIONS]\n       trainer train --config run.toml [OPTIONS]"
    )]
    Train(Box<args::TrainArgs>),
    /// The whole RHO-1 pipeline on the embedded corpus, with a CLM-vs-SLM report.
    Demo(demo::DemoArgs),
    /// What a selection rule keeps, by document label (e.g. injected noise), offline.
    Selection(selection::SelectionArgs),
    /// Table (mean and spread over seeds) and SVG plots of runs' metrics.
    Report(report::ReportArgs),
    /// Step times of CLM and SLM interleaved, SLM/CLM ratio, data-read share, GFLOP/s.
    Bench(bench::BenchArgs),
    /// One epoch of a score set through the training reader: tokens/s, wait, amplification, RSS.
    ReadBench(read_bench::ReadBenchArgs),
    /// Held-out loss and perplexity of checkpoints on a score set.
    Eval {
        /// Hugging Face checkpoint directories.
        #[arg(long, required = true, num_args = 1..)]
        model: Vec<PathBuf>,
        /// Score set to evaluate on.
        #[arg(long)]
        data: PathBuf,
        /// Windows per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Evaluate the first N windows only.
        #[arg(long)]
        max_windows: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn eval_cmd(
    models: &[PathBuf],
    data: &std::path::Path,
    batch: usize,
    max: Option<usize>,
    json: bool,
    device: &str,
) -> Result<()> {
    let dev = shared::util::device::parse_device(device)?;
    let set = shared::scores::scoreset::ScoreSet::open(data)?;
    let mut checked_vocab: Option<usize> = None;
    let mut rows = Vec::new();
    for m in models {
        crate::data::check_model_tokenizer(m, &set)?;
        let ckpt = shared::model::checkpoint::Checkpoint::load(
            m,
            shared::util::device::default_dtype(&dev),
            &dev,
        )?;
        let tok = &set.manifest().job.tokenizer;
        if tok.vocab_size > ckpt.config.vocab_size {
            anyhow::bail!(
                "{}: vocabulary {} is smaller than the data's tokenizer ({} ids)",
                m.display(),
                ckpt.config.vocab_size,
                tok.vocab_size
            );
        }
        // The set's ids are checked once, against the smallest vocabulary seen.
        if checked_vocab.is_none_or(|v| ckpt.config.vocab_size < v) {
            crate::data::check_sets(
                std::slice::from_ref(&set),
                ckpt.config.vocab_size,
                false,
                None,
            )?;
            checked_vocab = Some(ckpt.config.vocab_size);
        }
        ckpt.config.check_window(set.seq_len() - 1)?;
        let window =
            shared::scores::compat::window_beyond_positions(&ckpt.config, m, set.seq_len());
        if let Some(why) = window {
            // A user may mean it (a study of length extrapolation): said, not refused.
            shared::say!("warning: {why}; the loss past them measures extrapolation");
        }
        let model = ckpt.infer_model(&dev)?;
        let r = eval::evaluate(&model, &set, batch, max, &dev)
            .with_context(|| format!("evaluating {}", m.display()))?;
        rows.push((m.display().to_string(), r));
    }
    if json {
        let v: Vec<_> = rows.iter().map(|(m, r)| serde_json::json!({"model": m, "windows": r.windows, "tokens": r.tokens, "loss": r.loss, "ppl": r.ppl})).collect();
        shared::out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
        shared::out!(
            "{:<w$}  {:>8}  {:>10}  {:>8}  {:>10}",
            "model",
            "windows",
            "tokens",
            "loss",
            "ppl"
        );
        for (m, r) in &rows {
            shared::out!(
                "{m:<w$}  {:>8}  {:>10}  {:>8.4}  {:>10.3}",
                r.windows,
                r.tokens,
                r.loss,
                r.ppl
            );
        }
    }
    Ok(())
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Train(_) => "train",
            Command::Demo(_) => "demo",
            Command::Selection(_) => "selection",
            Command::Report(_) => "report",
            Command::Bench(_) => "bench",
            Command::ReadBench(_) => "read-bench",
            Command::Eval { .. } => "eval",
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    shared::kernels::blas::init_and_report()?;
    shared::kernels::threads::set_threads(cli.threads);
    if !matches!(cli.command, Command::Train(_)) {
        dist::refuse_ranks(cli.command.name())?;
    }
    match cli.command {
        Command::Train(a) => {
            let settings = (*a).resolve()?;
            train::run(&settings)?;
            Ok(())
        }
        Command::Demo(a) => demo::run(&a, cli.threads),
        Command::Selection(a) => selection::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::ReadBench(a) => read_bench::run(&a),
        Command::Eval {
            model,
            data,
            batch_size,
            max_windows,
            json,
            device,
        } => eval_cmd(&model, &data, batch_size, max_windows, json, &device),
    }
}

/// The command line, with `train`'s defaults shown from `args::Settings`.
/// Local paths only: a URL is refused by its scheme, file:// made a path.
fn parse() -> Result<Cli> {
    let args = shared::util::location::local_args(std::env::args_os())?;
    let cmd = Cli::command().mut_subcommand("train", args::with_defaults);
    Ok(Cli::from_arg_matches(&cmd.get_matches_from(args)).unwrap_or_else(|e| e.exit()))
}

fn main() -> ExitCode {
    shared::process::main(|| run(parse()?))
}
