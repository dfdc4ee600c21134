//! `scorer pack` and `scorer score`: their command lines, checked and turned
//! into a job's [`Settings`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::Settings;

/// `scorer pack`: tokenize and pack a corpus into shards without a model
/// (CLM training data).
#[derive(Args)]
pub struct PackArgs {
    /// tokenizer.json to use.
    #[arg(long)]
    pub tokenizer: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl PackArgs {
    pub fn run(&self) -> Result<()> {
        super::run(&self.common.settings(self.tokenizer.clone(), None)?)
    }
}

/// `scorer score`: score every token of a corpus with a reference model
/// (ref_loss shards).
#[derive(Args)]
pub struct ScoreArgs {
    /// Hugging Face checkpoint directory (config.json + model.safetensors;
    /// Llama, Mistral, Qwen2, Qwen3) or a GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// tokenizer.json to use (default: the model directory's, or the GGUF
    /// file's own tokenizer).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Compute dtype of the forward pass: f32, bf16 or f16 (where the
    /// device supports it). The per-token loss is computed in f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// How ref_loss is stored: f32 (exact) or f16 (half the bytes; the
    /// largest rounding error is written to the manifest).
    #[arg(long, default_value = "f32")]
    pub loss_dtype: shared::scores::shards::LossDtype,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ScoreArgs {
    pub fn run(&self) -> Result<()> {
        let tokenizer = model_tokenizer(&self.model, self.tokenizer.clone())?;
        let mut settings = self
            .common
            .settings(tokenizer, Some((self.model.clone(), &self.run)))?;
        settings.dtype = shared::util::device::parse_dtype(&self.dtype)?;
        settings.loss_dtype = self.loss_dtype;
        super::run(&settings)
    }
}

/// How `scorer score` runs the model.
#[derive(Args, Clone)]
pub struct RunArgs {
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// cpu, or cuda:N (needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// What `pack` and `score` share: the corpus, the windows and the job's parts.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Corpus files, directories or globs: .jsonl, .json, .ndjson (each
    /// optionally .zst), .parquet, .txt, .md; directories are searched
    /// recursively, and their hidden files and other formats are skipped and counted.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Tokens per window.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Output directory of the score set, or a bucket URL (s3://, gs://,
    /// az://): shards are uploaded one by one as they are written.
    #[arg(long)]
    out: PathBuf,
    /// With --out in a bucket: the local directory shards are written in
    /// before their upload [default: one under the system's temporary
    /// directory, named by the URL].
    #[arg(long)]
    stage: Option<PathBuf>,
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

    /// This process's part of the job: --shard-index of --num-shards, or,
    /// started by mpirun or srun as rank r of N, part r of N (one command
    /// for a multi-node job; docs/distributed.md).
    fn part(&self) -> Result<(usize, usize)> {
        match shared::util::launcher::ranks() {
            Some(r) if r.world > 1 => {
                if self.num_shards != 1 || self.shard_index != 0 {
                    bail!(
                        "started as rank {} of {} (by mpirun or srun), and the ranks are the job's parts: leave out --shard-index and --num-shards",
                        r.rank,
                        r.world
                    );
                }
                shared::say!(
                    "rank {} of {}: part {} of the job's {} parts",
                    r.rank,
                    r.world,
                    r.rank,
                    r.world
                );
                Ok((r.rank, r.world))
            }
            _ => Ok((self.shard_index, self.num_shards)),
        }
    }

    /// The job's settings; `run` is the model pass of `scorer score` (None for pack).
    fn settings(&self, tokenizer: PathBuf, run: Option<(PathBuf, &RunArgs)>) -> Result<Settings> {
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
        let (part, parts) = self.part()?;
        Ok(Settings {
            corpus: self.corpus.clone(),
            tokenizer,
            eos_token: self.eos_token.clone(),
            model,
            out: self.out.clone(),
            seq_len: self.seq_len,
            batch_size,
            shard_windows: (self.shard_tokens / self.seq_len).max(1),
            row_group_windows: (self.row_group_tokens / self.seq_len).max(1),
            part,
            parts,
            text_field: self.text_field.clone(),
            device,
            dtype: candle_core::DType::F32,
            loss_dtype: Default::default(),
            stage: self.stage.clone(),
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
