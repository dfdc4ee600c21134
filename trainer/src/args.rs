//! `trainer train` settings: command-line flags over an optional TOML file
//! (`--config run.toml`, same names with underscores), validated into
//! [`Settings`] before any work starts.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use shared::select::Method;

/// A value as the command line spells it (`clm`, `topk-batch`), for lines
/// that echo a command a user can copy.
pub fn cli_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Causal LM: every predicted token.
    Clm,
    /// Selective LM: tokens chosen by excess loss against the set's ref_loss.
    Slm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RatioSchedule {
    Constant,
    Linear,
}

/// Every flag is optional here so that a TOML file can supply it; defaults
/// are applied in [`TrainArgs::resolve`] and shown in `--help`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainArgs {
    /// TOML file with any of these settings (flags given here win).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Training score set directory (repeatable) [required, here or in --config].
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<PathBuf>,
    /// Held-out score set for evaluation.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_data: Option<PathBuf>,
    /// Run directory: metrics.jsonl, checkpoints/, final/ [required, here or in --config].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// clm or slm [default: clm].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// Token selection rule for slm [default: topk-batch].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select: Option<Method>,
    /// Fraction k of predicted tokens kept, in (0, 1] [default: 0.6].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_ratio: Option<f64>,
    /// constant, or linear from --select-ratio to --select-ratio-end [default: constant].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_schedule: Option<RatioSchedule>,
    /// Final ratio of the linear schedule.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_ratio_end: Option<f64>,
    /// Excess-loss threshold of --select threshold [default: 0.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_threshold: Option<f32>,
    /// Softmax temperature of --select weighted [default: 1.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_temperature: Option<f32>,
    /// Noise filter for slm: before the rule ranks, drop every token whose
    /// mean reference loss over --noise-span tokens of its document is above
    /// this quantile of the training data (e.g. 0.8) [default: off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_quantile: Option<f64>,
    /// Span, in tokens, of the noise filter's mean [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_span: Option<usize>,
    /// Model from scratch, by size [default: tiny].
    #[arg(long, value_parser = shared::model::config::MODEL_SIZES)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_size: Option<String>,
    /// Model from scratch: a Hugging Face config.json (overrides --model-size).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_config: Option<PathBuf>,
    /// Start from this Hugging Face checkpoint directory (Llama, Mistral,
    /// Qwen2, Qwen3) or GGUF file (continued pretraining); checkpoints keep
    /// its model_type.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Windows per micro-batch [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step; selection spans all of them [default: 1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_accum: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Stop after this many tokens were read (windows * seq_len).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Passes over the data when neither --max-steps nor --max-tokens is given [default: 1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Peak learning rate [default: 1e-3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Final learning rate as a fraction of the peak (cosine floor) [default: 0.1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr_ratio: Option<f64>,
    /// Linear warmup steps [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// AdamW beta1 [default: 0.9].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    /// AdamW beta2 [default: 0.95].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    /// AdamW weight decay, on matrices only [default: 0.1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this (0: off) [default: 1.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// Seed of initial weights, data order and random selection [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Evaluate every N steps (0: only at the end) [default: 50].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Evaluate on at most this many held-out windows [default: all].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_windows: Option<usize>,
    /// Write a checkpoint every N steps (0: only at the end; SIGTERM and
    /// Ctrl-C also write one before the run exits) [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Continue from the newest checkpoint in --out, with the same settings;
    /// a resume may change only where the run stops (--max-steps,
    /// --max-tokens, --epochs: the schedules keep the length the run started
    /// with, so a finished run is extended at the learning-rate floor),
    /// evaluation, checkpoint cadence, threads and device.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub resume: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// cpu, or cuda:N (needs a build with --features cuda) [default: cpu].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Compute dtype of forward and backward: f32, bf16 or f16 (where the
    /// device supports it). Weights and AdamW moments stay f32; the
    /// per-token loss is computed in f32 [default: f32].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
}

/// How the model is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ModelSource {
    Size(String),
    Config(PathBuf),
    Init(PathBuf),
}

/// Validated settings, every default applied.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub data: Vec<PathBuf>,
    pub eval_data: Option<PathBuf>,
    pub out: PathBuf,
    pub objective: Objective,
    pub select: Method,
    pub select_ratio: f64,
    pub select_ratio_end: f64,
    pub select_threshold: f32,
    pub select_temperature: f32,
    pub noise_quantile: Option<f64>,
    pub noise_span: usize,
    pub model: ModelSource,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_steps: Option<u64>,
    pub max_tokens: Option<u64>,
    pub epochs: u64,
    pub lr: f64,
    pub min_lr_ratio: f64,
    pub warmup_steps: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    pub eval_every: u64,
    pub eval_windows: Option<usize>,
    pub checkpoint_every: u64,
    pub resume: bool,
    pub threads: Option<usize>,
    pub device: String,
    pub dtype: String,
}

impl TrainArgs {
    /// Flags over the TOML file named by `--config`.
    pub fn merged(self) -> Result<TrainArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: TrainArgs = toml::from_str(&text)
            .with_context(|| format!("{}: invalid run config", path.display()))?;
        let mut base = serde_json::to_value(file)?;
        let over = serde_json::to_value(self)?;
        if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        Ok(serde_json::from_value(base)?)
    }

    pub fn resolve(self) -> Result<Settings> {
        let a = self.merged()?;
        let adamw = crate::optim::AdamWConfig::default();
        let ratio = a.select_ratio.unwrap_or(0.6);
        let schedule = a.ratio_schedule.unwrap_or(RatioSchedule::Constant);
        let ratio_end = match schedule {
            RatioSchedule::Constant => ratio,
            RatioSchedule::Linear => a
                .select_ratio_end
                .context("--ratio-schedule linear needs --select-ratio-end")?,
        };
        for (name, r) in [("--select-ratio", ratio), ("--select-ratio-end", ratio_end)] {
            shared::util::ratio::check_ratio(name, r).map_err(anyhow::Error::msg)?;
        }
        let model = match (a.init, a.model_config, a.model_size) {
            (Some(d), None, None) => ModelSource::Init(d),
            (None, Some(c), _) => ModelSource::Config(c),
            (None, None, s) => ModelSource::Size(s.unwrap_or_else(|| "tiny".into())),
            _ => bail!("--init starts from a checkpoint: it cannot be combined with --model-size or --model-config"),
        };
        let s = Settings {
            data: a.data,
            eval_data: a.eval_data,
            out: a.out.context("--out DIR is required (the run directory)")?,
            objective: a.objective.unwrap_or(Objective::Clm),
            select: a.select.unwrap_or(Method::TopkBatch),
            select_ratio: ratio,
            select_ratio_end: ratio_end,
            select_threshold: a.select_threshold.unwrap_or(0.0),
            select_temperature: a.select_temperature.unwrap_or(1.0),
            noise_quantile: a.noise_quantile,
            noise_span: a.noise_span.unwrap_or(shared::select::noise::DEFAULT_SPAN),
            model,
            batch_size: a.batch_size.unwrap_or(16),
            grad_accum: a.grad_accum.unwrap_or(1),
            max_steps: a.max_steps,
            max_tokens: a.max_tokens,
            epochs: a.epochs.unwrap_or(1),
            lr: a.lr.unwrap_or(1e-3),
            min_lr_ratio: a.min_lr_ratio.unwrap_or(0.1),
            warmup_steps: a.warmup_steps.unwrap_or(30),
            beta1: a.beta1.unwrap_or(adamw.beta1),
            beta2: a.beta2.unwrap_or(adamw.beta2),
            weight_decay: a.weight_decay.unwrap_or(adamw.weight_decay),
            grad_clip: a.grad_clip.unwrap_or(1.0),
            seed: a.seed.unwrap_or(0),
            eval_every: a.eval_every.unwrap_or(50),
            eval_windows: a.eval_windows,
            checkpoint_every: a.checkpoint_every.unwrap_or(1000),
            resume: a.resume,
            threads: a.threads,
            device: a.device.unwrap_or_else(|| "cpu".into()),
            dtype: a.dtype.unwrap_or_else(|| "f32".into()),
        };
        s.validate()?;
        Ok(s)
    }
}

impl Settings {
    fn validate(&self) -> Result<()> {
        if self.data.is_empty() {
            bail!("no training data: give --data DIR");
        }
        for d in self.data.iter().chain(&self.eval_data) {
            if !d.join(shared::scores::format::MANIFEST_FILE).is_file() {
                bail!(
                    "{}: not a complete score set (no manifest.json)",
                    d.display()
                );
            }
        }
        match &self.model {
            ModelSource::Init(d)
                if !shared::util::gguf::is_gguf(d)
                    && !d.join(shared::model::checkpoint::CONFIG_FILE).is_file() =>
            {
                bail!(
                    "--init {}: neither a checkpoint directory with config.json nor a GGUF file",
                    d.display()
                )
            }
            ModelSource::Config(c) if !c.is_file() => {
                bail!("--model-config {}: no such file", c.display())
            }
            _ => {}
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be positive, got {}", self.lr);
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            bail!(
                "--min-lr-ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            );
        }
        for (n, b) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("{n} must be in [0, 1), got {b}");
            }
        }
        if self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            bail!("--weight-decay and --grad-clip must not be negative");
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            bail!("--batch-size and --grad-accum must be positive");
        }
        if self.max_steps == Some(0) || self.max_tokens == Some(0) || self.epochs == 0 {
            bail!("--max-steps, --max-tokens and --epochs must be positive");
        }
        if self.select_temperature <= 0.0 {
            bail!("--select-temperature must be positive");
        }
        if let Some(q) = self.noise_quantile {
            if !(q > 0.0 && q < 1.0) {
                bail!("--noise-quantile must be in (0, 1), got {q}");
            }
            if self.objective != Objective::Slm {
                bail!("--noise-quantile filters what slm selects: it needs --objective slm");
            }
        }
        if self.noise_span == 0 {
            bail!("--noise-span must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_file_with_flag_overrides() {
        let dir = std::env::temp_dir().join(format!("rho1-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("run.toml");
        std::fs::write(&cfg, "objective = \"slm\"\nselect_ratio = 0.3\nlr = 0.002\nmax_steps = 7\nout = \"runs/x\"\n").unwrap();
        let flags = TrainArgs {
            config: Some(cfg.clone()),
            lr: Some(0.005),
            ..Default::default()
        };
        let merged = flags.merged().unwrap();
        assert_eq!(merged.objective, Some(Objective::Slm));
        assert_eq!(merged.select_ratio, Some(0.3));
        assert_eq!(merged.lr, Some(0.005), "the flag wins over the file");
        assert_eq!(merged.max_steps, Some(7));
        std::fs::write(&cfg, "select_ration = 0.3\n").unwrap();
        let err = TrainArgs {
            config: Some(cfg),
            ..Default::default()
        }
        .merged()
        .unwrap_err();
        assert!(format!("{err:#}").contains("select_ration"), "{err:#}");
    }
}
