//! `scorer`: tokenizes and packs a corpus, and scores every token with a
//! frozen reference model, writing Parquet score shards (see README).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

// mimalloc, told by shared::process never to purge, reuses freed pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bpe; // `scorer tokenizer`: train a byte-level BPE tokenizer
mod derive; // sets made from sets: `scorer combine`
mod job; // `scorer pack` and `scorer score`: plan, score shard by shard, finalize
mod parity; // `scorer parity`: a model's losses on fixed ids against reference losses
mod part; // one part of a split job: its lock and stale temporary files
          // Tools over finished sets.
mod inspect;

use inspect::{dynamics, export, view};

#[derive(Parser)]
#[command(
    name = "scorer",
    version,
    about = "Score a corpus with a frozen reference model into Parquet shards (RHO-1 SLM step 2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a byte-level BPE tokenizer on corpus files and write tokenizer.json.
    Tokenizer {
        /// Corpus files, directories or globs: .jsonl, .json, .ndjson (each
        /// optionally .zst), .parquet, .txt, .md; directories are searched
        /// recursively, and their hidden files and other formats are skipped and counted.
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        /// Number of ids in the vocabulary (256 byte tokens + end-of-text + merges).
        #[arg(long, default_value_t = 8192)]
        vocab_size: usize,
        /// Where to write tokenizer.json.
        #[arg(long)]
        out: PathBuf,
        /// JSON field / Parquet column holding the text.
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Tokenize and pack a corpus into shards without a model (CLM training data).
    Pack {
        /// tokenizer.json to use.
        #[arg(long)]
        tokenizer: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Score every token of a corpus with a reference model (ref_loss shards).
    Score {
        /// Hugging Face checkpoint directory (config.json + model.safetensors;
        /// Llama, Mistral, Qwen2, Qwen3) or a GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// tokenizer.json to use (default: the model directory's, or the GGUF
        /// file's own tokenizer).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Compute dtype of the forward pass: f32, bf16 or f16 (where the
        /// device supports it). The per-token loss is computed in f32.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// How ref_loss is stored: f32 (exact) or f16 (half the bytes; the
        /// largest rounding error is written to the manifest).
        #[arg(long, default_value = "f32")]
        loss_dtype: shared::scores::shards::LossDtype,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Check every shard of a score set against its manifest (size, footer, SHA-256).
    Verify {
        /// Score set directory.
        dir: PathBuf,
    },
    /// Write a selection as a loss mask: the set's rows plus a boolean `keep` column.
    Export {
        /// Scored set (reference losses).
        #[arg(long)]
        set: PathBuf,
        /// The same windows scored by the model being trained: rank by excess
        /// loss (this - reference), highest kept. Without it: lowest reference loss kept.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Fraction of predicted tokens kept, in (0, 1].
        #[arg(long, default_value_t = 0.6)]
        ratio: f64,
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Token loss dynamics across checkpoints (H->L, L->H, L->L, H->H), as in the RHO-1 paper.
    Dynamics {
        /// Score sets of the same windows, one per checkpoint, in training order.
        #[arg(long, required = true, num_args = 2..)]
        sets: Vec<PathBuf>,
        /// Parquet file with one row per predicted token.
        #[arg(long)]
        out: PathBuf,
        /// |dL| above this is a transition (H->L or L->H).
        #[arg(long, default_value_t = 0.2)]
        threshold: f64,
    },
    /// A score set over another tokenizer's windows of the same corpus: each
    /// target token gets the losses of the reference tokens that end inside it
    /// (per document, the total reference loss is preserved).
    Align {
        /// Scored set made with the reference's tokenizer.
        #[arg(long)]
        scores: PathBuf,
        /// The target's tokenizer (tokenizer.json, or a GGUF file's own).
        #[arg(long)]
        tokenizer: PathBuf,
        /// The corpus the set was scored on (checked against its SHA-256s).
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        /// End-of-text token of the target (default: the tokenizer's).
        #[arg(long)]
        eos_token: Option<String>,
        /// end: a reference token's loss goes to the target token holding its
        /// last byte; bytes: it is shared by overlapping bytes.
        #[arg(long, value_enum, default_value = "end")]
        split: derive::align::Split,
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// A self-contained HTML page showing documents token by token, coloured by score.
    View {
        /// Scored set.
        #[arg(long)]
        set: PathBuf,
        /// The same windows scored by another model (for excess loss).
        #[arg(long)]
        against: Option<PathBuf>,
        /// What the colour shows.
        #[arg(long, value_enum, default_value = "loss")]
        color: view::ColorBy,
        /// Ratio for kept/dropped.
        #[arg(long, default_value_t = 0.6)]
        ratio: f64,
        /// Document ids to show (default: the first --limit documents).
        #[arg(long, num_args = 1..)]
        docs: Vec<u64>,
        /// Documents shown when --docs is not given.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// A model's per-token losses on fixed token ids against reference losses
    /// (e.g. transformers'), on a device and dtype: JSON, exit 1 past --tolerance.
    Parity {
        /// Checkpoint directory or GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// JSON (B, T) token ids (tests/fixtures/*/input_ids.json).
        #[arg(long)]
        ids: PathBuf,
        /// JSON (B, T-1) reference losses; [b][j] is the loss of ids[b][j+1].
        #[arg(long)]
        losses: PathBuf,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Largest |ours - reference| accepted.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
    },
    /// Several references at once: score sets of the same windows combined
    /// token by token (min, weighted mean or max of their ref_loss) into one set.
    Combine {
        /// Scored sets of the same corpus, tokenizer, seq_len and layout.
        #[arg(long, required = true, num_args = 2..)]
        sets: Vec<PathBuf>,
        /// How the reference losses of a token are combined.
        #[arg(long, value_enum)]
        op: derive::combine::Op,
        /// With --op mean: one weight per set (normalised to sum 1).
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        weights: Option<Vec<f64>>,
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// A synthetic score set of any size for benchmarks: a set's windows
    /// repeated, ref_loss from a fixed random stream (bench/reader.py).
    Synth(derive::synth::SynthArgs),
    /// Print a score set's manifest summary.
    Info {
        /// Score set directory.
        dir: PathBuf,
    },
}

/// How `scorer score` runs the model.
#[derive(Args, Clone)]
struct RunArgs {
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// cpu, or cuda:N (needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Corpus files, directories or globs: .jsonl, .json, .ndjson (each
    /// optionally .zst), .parquet, .txt, .md; directories are searched
    /// recursively, and their hidden files and other formats are skipped and counted.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Tokens per window.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Output directory of the score set.
    #[arg(long)]
    out: PathBuf,
    /// Token rows per shard file (rounded down to whole windows).
    #[arg(long, default_value_t = 1 << 20)]
    shard_tokens: usize,
    /// Token rows per Parquet row group (rounded down to whole windows): the
    /// unit the trainer decodes, whole, once per epoch (larger groups decode
    /// faster; 65,536 rows read ~1.5x faster than 16,384, bench/reader.py).
    #[arg(long, default_value_t = 65536)]
    row_group_tokens: usize,
    /// This process's part of the job, 0-based (with --num-shards).
    #[arg(long, default_value_t = 0)]
    shard_index: usize,
    /// Number of parts the job is split into; part i writes shards s with s % n == i.
    #[arg(long, default_value_t = 1)]
    num_shards: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// JSON field / Parquet column holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// End-of-text token joining documents (default: the tokenizer's, e.g. <|endoftext|> or </s>).
    #[arg(long)]
    eos_token: Option<String>,
}

impl CommonArgs {
    fn validate(&self) -> Result<()> {
        if self.seq_len < 2 {
            bail!("--seq-len must be at least 2 (got {})", self.seq_len);
        }
        if self.num_shards == 0 || self.shard_index >= self.num_shards {
            bail!(
                "--shard-index {} must be below --num-shards {}",
                self.shard_index,
                self.num_shards
            );
        }
        if self.shard_tokens < self.seq_len {
            bail!(
                "--shard-tokens {} is smaller than one window (--seq-len {})",
                self.shard_tokens,
                self.seq_len
            );
        }
        Ok(())
    }

    /// The job's settings; `run` is the model pass of `scorer score` (None for pack).
    fn settings(
        &self,
        tokenizer: PathBuf,
        run: Option<(PathBuf, &RunArgs)>,
    ) -> Result<job::Settings> {
        self.validate()?;
        let (model, batch_size, device) = match run {
            Some((model, r)) => {
                if r.batch_size == 0 {
                    bail!("--batch-size must be positive");
                }
                (
                    Some(model),
                    r.batch_size,
                    shared::util::device::parse_device(&r.device)?,
                )
            }
            None => (None, 1, candle_core::Device::Cpu),
        };
        Ok(job::Settings {
            corpus: self.corpus.clone(),
            tokenizer,
            eos_token: self.eos_token.clone(),
            model,
            out: self.out.clone(),
            seq_len: self.seq_len,
            batch_size,
            shard_windows: (self.shard_tokens / self.seq_len).max(1),
            row_group_windows: (self.row_group_tokens / self.seq_len).max(1),
            part: self.shard_index,
            parts: self.num_shards,
            text_field: self.text_field.clone(),
            device,
            dtype: candle_core::DType::F32,
            loss_dtype: Default::default(),
        })
    }
}

/// `--tokenizer`, or the model's own: a GGUF file carries its tokenizer, a
/// directory has tokenizer.json. The model path is checked first, so that a
/// wrong `--model` is named as such.
fn model_tokenizer(model: &Path, tokenizer: Option<PathBuf>) -> Result<PathBuf> {
    shared::model::checkpoint::check_model_path(model)?;
    if let Some(t) = tokenizer {
        if !t.is_file() {
            bail!("--tokenizer {}: no such file", t.display());
        }
        return Ok(t);
    }
    shared::model::checkpoint::own_tokenizer(model).with_context(|| {
        format!(
            "the model {} has no {}: pass --tokenizer FILE",
            model.display(),
            shared::model::checkpoint::TOKENIZER_FILE
        )
    })
}

fn run(cli: Cli) -> Result<()> {
    shared::kernels::blas::init_and_report()?;
    match cli.command {
        Command::Tokenizer {
            corpus,
            vocab_size,
            out,
            text_field,
            threads,
        } => {
            shared::kernels::threads::set_threads(threads);
            bpe::train_tokenizer(&corpus, vocab_size, &out, &text_field)
        }
        Command::Pack { tokenizer, common } => {
            shared::kernels::threads::set_threads(common.threads);
            job::run(&common.settings(tokenizer, None)?)
        }
        Command::Score {
            model,
            tokenizer,
            dtype,
            loss_dtype,
            run,
            common,
        } => {
            shared::kernels::threads::set_threads(common.threads);
            let tokenizer = model_tokenizer(&model, tokenizer)?;
            let mut settings = common.settings(tokenizer, Some((model, &run)))?;
            settings.dtype = shared::util::device::parse_dtype(&dtype)?;
            settings.loss_dtype = loss_dtype;
            job::run(&settings)
        }
        Command::Verify { dir } => inspect::verify::verify(&dir),
        Command::View {
            set,
            against,
            color,
            ratio,
            docs,
            limit,
            out,
        } => view::run(&view::ViewArgs {
            set: &set,
            against: against.as_deref(),
            color,
            ratio,
            docs: &docs,
            limit,
            out: &out,
        }),
        Command::Dynamics {
            sets,
            out,
            threshold,
        } => dynamics::run(&sets, &out, threshold),
        Command::Export {
            set,
            against,
            ratio,
            out,
        } => export::run(&set, against.as_deref(), ratio, &out),
        Command::Parity {
            model,
            ids,
            losses,
            device,
            dtype,
            tolerance,
        } => parity::run(&parity::ParityArgs {
            model: &model,
            ids: &ids,
            losses: &losses,
            device: &device,
            dtype: &dtype,
            tolerance,
        }),
        Command::Combine {
            sets,
            op,
            weights,
            out,
        } => derive::combine::run(&sets, op, weights.as_deref(), &out),
        Command::Synth(a) => derive::synth::run(&a),
        Command::Align {
            scores,
            tokenizer,
            corpus,
            eos_token,
            split,
            out,
            threads,
        } => {
            shared::kernels::threads::set_threads(threads);
            derive::align::run(&derive::align::AlignArgs {
                scores: &scores,
                tokenizer: &tokenizer,
                corpus: &corpus,
                eos_token,
                split,
                out: &out,
            })
        }
        Command::Info { dir } => {
            let m = shared::scores::manifest::Manifest::load(&dir)
                .with_context(|| format!("reading score set {}", dir.display()))?;
            shared::out!("{}", serde_json::to_string_pretty(&job::summary(&m))?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    shared::process::main(|| run(Cli::parse()))
}
