//! `trainer train` settings, in sections: `data`, `model`, `select`, `optim`,
//! `schedule` and `run`. Command-line flags lie over an optional TOML file
//! (`--config run.toml`, one `[section]` per table, keys as the fields
//! below), which lies over [`Settings::default`], the one place a default is
//! written; the result is validated before any work starts.
//!
//! Every section but `run` defines what a run computes: a resumed run must
//! keep them. `run` says where it writes, where it stops, how often it
//! evaluates and saves, and on which device: those may change on a resume.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use shared::model::config::ModelSize;
use shared::select::Method;
use shared::util::device::{DeviceSpec, Dtype};

/// A value as the command line spells it (`clm`, `topk-batch`), for lines
/// that echo a command a user can copy.
pub fn cli_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Causal LM: every predicted token.
    #[default]
    Clm,
    /// Selective LM: tokens chosen by excess loss against the set's ref_loss.
    Slm,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RatioSchedule {
    #[default]
    Constant,
    Linear,
}

/// The validated settings of a run, every default applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data: DataSettings,
    pub model: ModelSettings,
    pub select: SelectSettings,
    pub optim: OptimSettings,
    pub schedule: ScheduleSettings,
    pub run: RunSettings,
}

/// What is read, in what order, in what batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Training score sets.
    pub sets: Vec<PathBuf>,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step; selection spans all of them.
    pub grad_accum: usize,
    /// Seed of the data order, the initial weights and random selection.
    pub seed: u64,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            sets: Vec::new(),
            batch_size: 16,
            grad_accum: 1,
            seed: 0,
        }
    }
}

/// The model trained: from scratch (a size or a config.json) or from a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub size: ModelSize,
    /// A Hugging Face config.json (overrides `size`).
    pub config_file: Option<PathBuf>,
    /// A checkpoint directory or GGUF file to start from.
    pub init: Option<PathBuf>,
    /// Compute dtype of forward and backward.
    pub dtype: Dtype,
}

/// How the model is created.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Size(ModelSize),
    Config(PathBuf),
    Init(PathBuf),
}

impl ModelSettings {
    pub fn source(&self) -> ModelSource {
        match (&self.init, &self.config_file) {
            (Some(d), _) => ModelSource::Init(d.clone()),
            (None, Some(c)) => ModelSource::Config(c.clone()),
            (None, None) => ModelSource::Size(self.size),
        }
    }
}

/// Which tokens a step trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectSettings {
    pub objective: Objective,
    pub method: Method,
    /// Fraction k of predicted tokens kept, in (0, 1].
    pub ratio: f64,
    pub ratio_schedule: RatioSchedule,
    /// Final ratio of the linear schedule (required by it).
    pub ratio_end: Option<f64>,
    pub threshold: f32,
    pub temperature: f32,
    pub noise_quantile: Option<f64>,
    pub noise_span: usize,
}

impl Default for SelectSettings {
    fn default() -> Self {
        SelectSettings {
            objective: Objective::Clm,
            method: Method::TopkBatch,
            ratio: shared::select::DEFAULT_RATIO,
            ratio_schedule: RatioSchedule::Constant,
            ratio_end: None,
            threshold: 0.0,
            temperature: 1.0,
            noise_quantile: None,
            noise_span: shared::select::noise::DEFAULT_SPAN,
        }
    }
}

impl SelectSettings {
    /// The ratio the schedule ends at.
    pub fn end_ratio(&self) -> f64 {
        match self.ratio_schedule {
            RatioSchedule::Constant => self.ratio,
            RatioSchedule::Linear => self.ratio_end.unwrap_or(self.ratio),
        }
    }
}

/// AdamW and gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSettings {
    /// Peak learning rate.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
}

impl Default for OptimSettings {
    fn default() -> Self {
        let adamw = crate::optim::AdamWConfig::default();
        OptimSettings {
            lr: 1e-3,
            beta1: adamw.beta1,
            beta2: adamw.beta2,
            weight_decay: adamw.weight_decay,
            grad_clip: 1.0,
        }
    }
}

/// The learning-rate schedule: linear warmup, then cosine to a floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    pub warmup_steps: u64,
    /// The floor, as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            warmup_steps: 30,
            min_lr_ratio: 0.1,
        }
    }
}

/// Where the run writes, where it stops, what it reports, where it runs:
/// what a resumed run may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    pub out: PathBuf,
    pub max_steps: Option<u64>,
    pub max_tokens: Option<u64>,
    pub epochs: u64,
    pub eval_data: Option<PathBuf>,
    pub eval_every: u64,
    pub eval_windows: Option<usize>,
    pub checkpoint_every: u64,
    pub resume: bool,
    pub device: DeviceSpec,
    pub cache: Option<PathBuf>,
    pub cache_gb: f64,
    pub shard_optimizer: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            out: PathBuf::new(),
            max_steps: None,
            max_tokens: None,
            epochs: 1,
            eval_data: None,
            eval_every: 50,
            eval_windows: None,
            checkpoint_every: 1000,
            resume: false,
            device: DeviceSpec::Cpu,
            cache: None,
            cache_gb: 50.0,
            shard_optimizer: false,
        }
    }
}

/// `trainer train`'s flags, one struct per section. Every flag is optional
/// so that the TOML file can supply it; the serde names are the TOML keys
/// and equal the [`Settings`] field names, so the three layers merge by name.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainArgs {
    /// TOML file with any of these settings, by section: [data], [model],
    /// [select], [optim], [schedule], [run] (flags given here win).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default)]
    pub data: DataArgs,
    #[command(flatten)]
    #[serde(default)]
    pub model: ModelArgs,
    #[command(flatten)]
    #[serde(default)]
    pub select: SelectArgs,
    #[command(flatten)]
    #[serde(default)]
    pub optim: OptimArgs,
    #[command(flatten)]
    #[serde(default)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    #[serde(default)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Data [data]")]
pub struct DataArgs {
    /// Training score set directory (repeatable) [required, here or in --config].
    #[arg(long = "data", value_name = "DATA")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<PathBuf>,
    /// Windows per micro-batch.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step; selection spans all of them.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_accum: Option<usize>,
    /// Seed of initial weights, data order and random selection.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Model [model]")]
pub struct ModelArgs {
    /// Model from scratch, by size.
    #[arg(long = "model-size", value_enum, value_name = "MODEL_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<ModelSize>,
    /// Model from scratch: a Hugging Face config.json (overrides --model-size).
    #[arg(long = "model-config", value_name = "MODEL_CONFIG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// Start from this Hugging Face checkpoint directory (Llama, Mistral,
    /// Qwen2, Qwen3) or GGUF file (continued pretraining); checkpoints keep
    /// its model_type.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Compute dtype of forward and backward (where the device supports it).
    /// Weights and AdamW moments stay f32; the per-token loss is computed in f32.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Selection [select]")]
pub struct SelectArgs {
    /// clm or slm.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// Token selection rule for slm.
    #[arg(long = "select", value_enum, value_name = "SELECT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Fraction k of predicted tokens kept, in (0, 1].
    #[arg(long = "select-ratio", value_name = "SELECT_RATIO")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// constant, or linear from --select-ratio to --select-ratio-end.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_schedule: Option<RatioSchedule>,
    /// Final ratio of the linear schedule.
    #[arg(long = "select-ratio-end", value_name = "SELECT_RATIO_END")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_end: Option<f64>,
    /// Excess-loss threshold of --select threshold.
    #[arg(long = "select-threshold", value_name = "SELECT_THRESHOLD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Softmax temperature of --select weighted.
    #[arg(long = "select-temperature", value_name = "SELECT_TEMPERATURE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Noise filter for slm: before the rule ranks, drop every token whose
    /// mean reference loss over --noise-span tokens of its document is above
    /// this quantile of the training data (e.g. 0.8) [default: off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_quantile: Option<f64>,
    /// Span, in tokens, of the noise filter's mean.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_span: Option<usize>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Optimizer [optim]")]
pub struct OptimArgs {
    /// Peak learning rate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// AdamW beta1.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    /// AdamW beta2.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    /// AdamW weight decay, on matrices only.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this (0: off).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Schedule [schedule]")]
pub struct ScheduleArgs {
    /// Linear warmup steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// Final learning rate as a fraction of the peak (cosine floor).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Run [run] (may change on --resume)")]
pub struct RunArgs {
    /// Run directory: metrics.jsonl, checkpoints/, final/ [required, here or in --config].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Stop after this many tokens were read (windows * seq_len).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Passes over the data when neither --max-steps nor --max-tokens is given.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Held-out score set for evaluation.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_data: Option<PathBuf>,
    /// For score sets in a bucket: keep their shards, fetched whole
    /// (SHA-256 checked), in this directory for the next epoch or run.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
    /// The most --cache may hold, in GB (least recently used shards go first).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_gb: Option<f64>,
    /// Evaluate every N steps (0: only at the end).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Evaluate on at most this many held-out windows [default: all].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_windows: Option<usize>,
    /// Write a checkpoint every N steps (0: only at the end; SIGTERM and
    /// Ctrl-C also write one before the run exits).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Continue from the newest checkpoint in --out, with the same settings;
    /// a resume may change only the run section: where the run stops
    /// (--max-steps, --max-tokens, --epochs: the schedules keep the length
    /// the run started with, so a finished run is extended at the
    /// learning-rate floor), evaluation, checkpoint cadence and device.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub resume: bool,
    /// cpu, or cuda:N (needs a build with --features cuda).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// With several ranks (mpirun): ZeRO stage 1, each rank keeps the AdamW
    /// moments of its share of the variables only (1/N of the optimizer's
    /// memory); the same updates, checkpoints and curve as without.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub shard_optimizer: bool,
}

/// `over`'s keys replace `base`'s, one level into each section.
fn lay_over(base: &mut Value, over: Value) {
    let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) else {
        return;
    };
    for (k, v) in o {
        match (b.get_mut(&k), v) {
            (Some(Value::Object(bs)), Value::Object(os)) => bs.extend(os),
            (_, v) => {
                b.insert(k, v);
            }
        }
    }
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
        lay_over(&mut base, serde_json::to_value(self)?);
        Ok(serde_json::from_value(base)?)
    }

    /// The settings: [`Settings::default`] under the TOML file under the flags.
    pub fn resolve(self) -> Result<Settings> {
        let a = self.merged()?;
        if a.model.init.is_some() && (a.model.size.is_some() || a.model.config_file.is_some()) {
            bail!("--init starts from a checkpoint: it cannot be combined with --model-size or --model-config");
        }
        let mut v = serde_json::to_value(Settings::default())?;
        lay_over(&mut v, serde_json::to_value(a)?);
        let s: Settings = serde_json::from_value(v).context("the run's settings")?;
        s.validate()?;
        Ok(s)
    }
}

/// `--help` with each flag's default, read from [`Settings::default`]: for
/// every setting whose flag has the field's name as its id.
pub fn with_defaults(mut cmd: clap::Command) -> clap::Command {
    let order: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let defaults = serde_json::to_value(Settings::default()).unwrap_or_default();
    let sections = defaults.as_object().cloned().unwrap_or_default();
    for (_, fields) in sections {
        for (id, value) in fields.as_object().cloned().unwrap_or_default() {
            let shown = match &value {
                Value::Null | Value::Bool(false) => continue,
                Value::String(s) if s.is_empty() => continue,
                Value::Array(a) if a.is_empty() => continue,
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            if cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
                cmd = cmd.mut_arg(id, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    let a = a.help(format!("{help} [default: {shown}]"));
                    match a.get_long_help().map(|h| h.to_string()) {
                        Some(long) => a.long_help(format!("{long} [default: {shown}]")),
                        None => a,
                    }
                });
            }
        }
    }
    // Changing an argument moves it last: put them back in their order.
    for (i, id) in order.into_iter().enumerate() {
        cmd = cmd.mut_arg(id, |a| a.display_order(i));
    }
    cmd
}

impl Settings {
    /// What a run computes: every section but `run`. A resumed run must
    /// present the same identity.
    pub fn identity(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("run");
        }
        v
    }

    /// The flags of the `run` section: what a resume may change.
    pub fn resumable_flags() -> Vec<String> {
        let run = serde_json::to_value(RunSettings::default()).unwrap_or_default();
        run.as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !matches!(k.as_str(), "out" | "resume"))
                    .map(|k| format!("--{}", k.replace('_', "-")))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn validate(&self) -> Result<()> {
        let (d, m, sel, o, sch, r) = (
            &self.data,
            &self.model,
            &self.select,
            &self.optim,
            &self.schedule,
            &self.run,
        );
        if d.sets.is_empty() {
            bail!("no training data: give --data DIR");
        }
        // Paths from a config file, checked as on the command line: score
        // sets may be in a bucket, the rest is local.
        for p in [&r.out]
            .into_iter()
            .chain(&m.init)
            .chain(&m.config_file)
            .chain(&r.cache)
        {
            shared::util::location::check_local(p)?;
        }
        for p in d.sets.iter().chain(&r.eval_data) {
            shared::util::location::check_readable(p)?;
        }
        if r.out.as_os_str().is_empty() {
            bail!("--out DIR is required (the run directory)");
        }
        let local_sets = d
            .sets
            .iter()
            .chain(&r.eval_data)
            .filter(|s| !s.to_str().is_some_and(shared::store::is_store_url));
        for set in local_sets {
            if !set.join(shared::scores::format::MANIFEST_FILE).is_file() {
                bail!(
                    "{}: not a complete score set (no manifest.json)",
                    set.display()
                );
            }
        }
        match m.source() {
            ModelSource::Init(p)
                if !shared::util::gguf::is_gguf(&p)
                    && !p.join(shared::model::checkpoint::CONFIG_FILE).is_file() =>
            {
                bail!(
                    "--init {}: neither a checkpoint directory with config.json nor a GGUF file",
                    p.display()
                )
            }
            ModelSource::Config(c) if !c.is_file() => {
                bail!("--model-config {}: no such file", c.display())
            }
            _ => {}
        }
        if sel.ratio_schedule == RatioSchedule::Linear && sel.ratio_end.is_none() {
            bail!("--ratio-schedule linear needs --select-ratio-end");
        }
        for (name, ratio) in [
            ("--select-ratio", sel.ratio),
            ("--select-ratio-end", sel.end_ratio()),
        ] {
            shared::util::ratio::check_ratio(name, ratio).map_err(anyhow::Error::msg)?;
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            bail!("--lr must be positive, got {}", o.lr);
        }
        if !(0.0..=1.0).contains(&sch.min_lr_ratio) {
            bail!("--min-lr-ratio must be in [0, 1], got {}", sch.min_lr_ratio);
        }
        for (n, b) in [("--beta1", o.beta1), ("--beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("{n} must be in [0, 1), got {b}");
            }
        }
        if o.weight_decay < 0.0 || o.grad_clip < 0.0 {
            bail!("--weight-decay and --grad-clip must not be negative");
        }
        if d.batch_size == 0 || d.grad_accum == 0 {
            bail!("--batch-size and --grad-accum must be positive");
        }
        if r.max_steps == Some(0) || r.max_tokens == Some(0) || r.epochs == 0 {
            bail!("--max-steps, --max-tokens and --epochs must be positive");
        }
        if sel.temperature <= 0.0 {
            bail!("--select-temperature must be positive");
        }
        if let Some(q) = sel.noise_quantile {
            if !(q > 0.0 && q < 1.0) {
                bail!("--noise-quantile must be in (0, 1), got {q}");
            }
            if sel.objective != Objective::Slm {
                bail!("--noise-quantile filters what slm selects: it needs --objective slm");
            }
        }
        if sel.noise_span == 0 {
            bail!("--noise-span must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> TrainArgs {
        #[derive(clap::Parser)]
        struct Train {
            #[command(flatten)]
            args: TrainArgs,
        }
        let argv = std::iter::once("train").chain(argv.iter().copied());
        <Train as clap::Parser>::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn toml_sections_under_flags_over_defaults() {
        let dir = std::env::temp_dir().join(format!("rho1-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("run.toml");
        std::fs::write(
            &cfg,
            "[select]\nobjective = \"slm\"\nratio = 0.3\n[optim]\nlr = 0.002\n[run]\nmax_steps = 7\nout = \"runs/x\"\n",
        )
        .unwrap();
        let mut flags = parse(&["--lr", "0.005", "--seed", "4"]);
        flags.config = Some(cfg.clone());
        let merged = flags.merged().unwrap();
        assert_eq!(merged.select.objective, Some(Objective::Slm));
        assert_eq!(merged.select.ratio, Some(0.3));
        assert_eq!(merged.optim.lr, Some(0.005), "the flag wins over the file");
        assert_eq!(merged.run.max_steps, Some(7));
        assert_eq!(merged.data.seed, Some(4));
        for bad in ["select_ratio = 0.3\n", "[select]\nration = 0.3\n"] {
            std::fs::write(&cfg, bad).unwrap();
            let a = TrainArgs {
                config: Some(cfg.clone()),
                ..Default::default()
            };
            let err = format!("{:#}", a.merged().unwrap_err());
            assert!(err.contains("ratio"), "{err}");
        }
    }

    /// The example of docs/training.md is a valid run config.
    #[test]
    fn the_toml_example_in_the_docs_parses() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/training.md"),
        )
        .unwrap();
        let block = doc
            .split("```toml\n")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let path = std::env::temp_dir().join(format!("rho1-doc-{}.toml", std::process::id()));
        std::fs::write(&path, block).unwrap();
        let a = TrainArgs {
            config: Some(path),
            ..Default::default()
        }
        .merged()
        .unwrap();
        assert_eq!(a.select.objective, Some(Objective::Slm));
        assert_eq!(a.model.init, Some(PathBuf::from("runs/ref/final")));
        assert_eq!(a.run.max_steps, Some(400));
        assert_eq!(a.data.sets, vec![PathBuf::from("sets/web")]);
    }

    #[test]
    fn unset_flags_take_the_one_default() {
        let dir = std::env::temp_dir().join(format!("rho1-args-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), "{}").unwrap();
        let d = dir.display().to_string();
        let s = parse(&["--data", &d, "--out", "runs/y", "--select-ratio", "0.4"])
            .resolve()
            .unwrap();
        let want = Settings {
            data: DataSettings {
                sets: vec![dir.clone()],
                ..Default::default()
            },
            select: SelectSettings {
                ratio: 0.4,
                ..Default::default()
            },
            run: RunSettings {
                out: "runs/y".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(s, want);
        // The identity leaves out the run section, whatever it holds.
        let mut other = want.clone();
        other.run.max_steps = Some(9);
        other.run.device = DeviceSpec::Cuda(1);
        assert_eq!(other.identity(), want.identity());
        other.optim.lr = 0.5;
        assert_ne!(other.identity(), want.identity());
    }

    #[test]
    fn help_shows_each_default_from_settings() {
        #[derive(clap::Parser)]
        struct Train {
            #[command(flatten)]
            args: TrainArgs,
        }
        let cmd = with_defaults(<Train as clap::CommandFactory>::command());
        let help = |id: &str| {
            let a = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            a.get_help().unwrap().to_string()
        };
        let d = Settings::default();
        assert!(help("ratio").ends_with(&format!("[default: {}]", d.select.ratio)));
        assert!(help("method").ends_with("[default: topk-batch]"));
        assert!(help("size").ends_with("[default: tiny]"));
        assert!(help("device").ends_with("[default: cpu]"));
        assert!(help("lr").ends_with("[default: 0.001]"));
        assert!(!help("max_steps").contains("[default"));
    }
}
