//! `trainer train`: setup (data and model checks, resume), the loop
//! (step, evaluation, checkpoints, metrics) and finishing (final checkpoint,
//! summary). The step itself is in `step.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use shared::metrics::{EvalRecord, Record, StepRecord};
use shared::model::checkpoint::{init_varmap, model_over, Checkpoint};
use shared::model::config::LlamaConfig;
use shared::model::{Llama, Mode};
use shared::scores::compat::window_beyond_positions;
use shared::scores::scoreset::ScoreSet;
use shared::util::lock::DirLock;
use shared::util::progress::Progress;

use crate::args::{ModelSource, Objective, Settings};
use crate::data::{check_model_tokenizer, check_sets, tokenizer_of, Batch, TrainData};
use crate::dist::layout::Split;
use crate::dist::zero::Zero;
use crate::dist::Comm;
use crate::eval::{evaluate, EvalResult};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::{lr_at, ratio_at};
use crate::state::{self, TrainerState};
use crate::step::{train_step, StepInput};
use shared::select::Params;

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SETTINGS_FILE: &str = "settings.json";
/// Held by the trainer running in a run directory (`shared::util::lock`).
pub const LOCK_FILE: &str = ".trainer.lock";

/// A run directory this process made: removed again unless [`Self::keep`]
/// is called (a run that fails to start leaves nothing behind).
struct NewDir(Option<PathBuf>);

impl NewDir {
    fn make(dir: &Path) -> Result<Self> {
        let new = !dir.exists();
        shared::util::location::local_output(dir)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(NewDir(new.then(|| dir.to_path_buf())))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Refuses a run whose first checkpoint (weights and two AdamW moments, f32)
/// would not fit in the space left where it is written.
fn check_room(out: &Path, cfg: &LlamaConfig) -> Result<()> {
    let need = cfg.num_params() as u64 * 4 * 3;
    match shared::util::outdir::free_bytes(out) {
        Some(free) if free < need => bail!(
            "--out {}: {} MB free on its file system, one checkpoint of this model takes {} MB",
            out.display(),
            free / 1_000_000,
            need.div_ceil(1_000_000)
        ),
        _ => Ok(()),
    }
}

/// Claims a run directory for this process, or names the trainer in it.
fn lock_run(out: &Path) -> Result<DirLock> {
    Ok(DirLock::acquire(
        out,
        LOCK_FILE,
        "a trainer is already running",
    )?)
}

/// Builds the model config and weights the settings ask for.
fn make_model(s: &Settings, vocab: usize, dev: &Device) -> Result<(LlamaConfig, VarMap)> {
    Ok(match s.model.source() {
        ModelSource::Init(dir) => {
            let ckpt = Checkpoint::load(&dir, DType::F32, dev)?;
            (ckpt.config.clone(), ckpt.into_varmap()?)
        }
        ModelSource::Config(path) => {
            let cfg = LlamaConfig::load(&path)?;
            let vm = init_varmap(&cfg, s.data.seed, 0.02, dev)?;
            (cfg, vm)
        }
        ModelSource::Size(size) => {
            let cfg = size.config(vocab)?;
            let vm = init_varmap(&cfg, s.data.seed, 0.02, dev)?;
            (cfg, vm)
        }
    })
}

/// `section.name: old -> new` for each setting that differs between two
/// identities ([`Settings::identity`]).
fn identity_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn flat(v: &serde_json::Value) -> BTreeMap<String, &serde_json::Value> {
        let mut out = BTreeMap::new();
        for (section, fields) in v.as_object().into_iter().flatten() {
            match fields.as_object() {
                Some(f) => out.extend(f.iter().map(|(k, v)| (format!("{section}.{k}"), v))),
                None => {
                    out.insert(section.clone(), fields);
                }
            }
        }
        out
    }
    let (o, n) = (flat(old), flat(new));
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&&serde_json::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(o.get(k)), show(n.get(k))))
        .collect()
}

/// metrics.jsonl, open for appending.
struct MetricsLog(std::fs::File);

impl MetricsLog {
    /// Opens metrics.jsonl for appending; on resume, drops the lines of
    /// steps after `keep_through` (they will be recomputed).
    fn open(run: &Path, keep_through: Option<u64>) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        if let Some(step) = keep_through {
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            let kept: String = old
                .lines()
                .filter(|l| serde_json::from_str::<Record>(l).is_ok_and(|r| r.step() <= step))
                .map(|l| format!("{l}\n"))
                .collect();
            shared::util::atomic::write_file(&path, kept.as_bytes())?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsLog(f))
    }

    fn write(&mut self, r: &Record) -> Result<()> {
        writeln!(self.0, "{}", serde_json::to_string(r)?)?;
        self.0.flush()?;
        Ok(())
    }
}

/// Trains as `s` says; returns the final checkpoint directory.
pub fn run(s: &Settings) -> Result<PathBuf> {
    let mut run = Run::setup(s)?;
    if run.st.step == 0 && s.run.eval_every > 0 {
        run.evaluate()?;
    }
    let label = if s.select.objective == Objective::Slm {
        "slm"
    } else {
        "clm"
    };
    let remaining = run.total_steps - run.st.step.min(run.total_steps);
    let mut progress = Progress::new(label, "steps", remaining);
    shared::util::interrupt::watch().context("catching SIGTERM and SIGINT")?;
    while run.st.step < run.total_steps {
        let loss = run.step()?; // batch, select, backward, update, metrics line
        progress.note(format!("loss {loss:.4}"));
        progress.inc(1);
        let at_end = run.st.step == run.total_steps;
        if let (Some(signal), false) = (run.stop_requested()?, at_end) {
            return run.stop(signal);
        }
        if s.run.eval_every > 0 && run.st.step.is_multiple_of(s.run.eval_every) || at_end {
            run.evaluate()?;
        }
        if s.run.checkpoint_every > 0
            && run.st.step.is_multiple_of(s.run.checkpoint_every)
            && !at_end
        {
            let name = format!("step-{:06}", run.st.step);
            run.save(&s.run.out.join("checkpoints").join(name))?;
        }
    }
    progress.finish();
    run.finish()
}

/// Everything a run holds between steps.
struct Run<'a> {
    s: &'a Settings,
    dev: Device,
    data: TrainData,
    eval_set: Option<ScoreSet>,
    tokenizer_json: Option<PathBuf>,
    cfg: LlamaConfig,
    varmap: VarMap,
    model: Llama,
    opt: AdamW,
    st: TrainerState,
    /// None on ranks other than 0: rank 0 writes for all.
    metrics: Option<MetricsLog>,
    total_steps: u64,
    last_eval: Option<EvalResult>,
    /// Compute dtype; the weights in `varmap` stay f32.
    dtype: DType,
    /// `--noise-quantile`, fitted to the training data.
    noise: Option<shared::select::noise::NoiseFilter>,
    /// RHO1_TRACE_STEPS: each step's windows, losses and weights.
    trace: Option<crate::trace::Trace>,
    /// RHO1_TRACE_STEPS on any rank: every rank gathers the trace's values.
    trace_steps: bool,
    /// The step this process started at (0, or the resumed one).
    first_step: u64,
    /// With --shard-optimizer: the variables each rank updates.
    zero: Option<Zero>,
    /// The ranks' collectives, and this rank's rows of each global batch.
    comm: Box<dyn Comm>,
    split: Split,
    /// This process's claim on the run directory (rank 0's).
    _lock: Option<DirLock>,
}

/// The inputs of a run, checked against each other before anything is written.
struct Checked {
    data: TrainData,
    /// Noise scores of the training data, with `--noise-quantile`.
    noise_scores: Option<shared::select::noise::Histogram>,
    eval_set: Option<ScoreSet>,
    tokenizer_json: Option<PathBuf>,
    cfg: LlamaConfig,
    varmap: VarMap,
}

/// Opens the data and the model and checks that they belong together.
fn check_inputs(s: &Settings, dev: &Device) -> Result<Checked> {
    let cache = match &s.run.cache {
        Some(dir) => Some(std::sync::Arc::new(shared::store::cache::Cache::open(
            dir,
            (s.run.cache_gb * 1e9) as u64,
        )?)),
        None => None,
    };
    let data = TrainData::open_with(&s.data.sets, s.data.seed, 1, cache.clone())?;
    let first = &data.sets()[0];
    let tokenizer_json = tokenizer_of(first)?;
    let tok_info = first.manifest().job.tokenizer.clone();
    let eval_set = match &s.run.eval_data {
        Some(d) => {
            let e = ScoreSet::open_cached(d, cache.clone())?;
            first.check_mixable(&e)?;
            Some(e)
        }
        None => None,
    };
    let (cfg, varmap) = make_model(s, tok_info.vocab_size, dev)?;
    check_room(&s.run.out, &cfg)?;
    if tok_info.vocab_size > cfg.vocab_size {
        bail!(
            "the data's tokenizer has {} ids but the model's vocabulary is {}: they do not belong together",
            tok_info.vocab_size,
            cfg.vocab_size
        );
    }
    if let ModelSource::Init(dir) = s.model.source() {
        check_model_tokenizer(&dir, first)?;
        if let Some(why) = window_beyond_positions(&cfg, &dir, data.seq_len()) {
            // Training past the positions a model has seen is how a context
            // is extended: said, not refused (see fit_positions).
            shared::say!("warning: {why}; training at this length");
        }
    }
    let need_ref = s.select.objective == Objective::Slm;
    if let Some(set) = data.sets().iter().find(|set| need_ref && !set.scored()) {
        bail!(
            "{}: a pack-only set (written by `scorer pack`) has no ref_loss; --objective slm needs a set written by `scorer score`",
            set.dir().display()
        );
    }
    let noise_span = s.select.noise_quantile.map(|_| s.select.noise_span);
    let noise_scores = check_sets(data.sets(), cfg.vocab_size, need_ref, noise_span)?;
    if let Some(e) = &eval_set {
        check_sets(std::slice::from_ref(e), cfg.vocab_size, false, None)?;
    }
    cfg.check_window(data.seq_len() - 1)?; // a window predicts from seq_len - 1 tokens
    let cfg = fit_positions(cfg, data.seq_len());
    Ok(Checked {
        data,
        noise_scores,
        eval_set,
        tokenizer_json,
        cfg,
        varmap,
    })
}

/// The config the run's checkpoints record: a model trained on windows longer
/// than its `max_position_embeddings` has been trained at that length, so
/// later scoring and evaluation at it are not refused.
fn fit_positions(mut cfg: LlamaConfig, seq_len: usize) -> LlamaConfig {
    cfg.max_position_embeddings = cfg.max_position_embeddings.max(seq_len - 1);
    cfg
}

/// With several ranks: the run's settings and data the same on every rank
/// (refused otherwise), and a batch every rank has rows of. Returns this
/// rank's share of each global batch.
fn check_ranks(s: &Settings, comm: &dyn Comm, data: &TrainData) -> Result<Split> {
    let split = Split {
        batch: s.data.batch_size,
        micro: s.data.grad_accum,
        rank: comm.rank(),
        world: comm.world(),
    };
    if split.world == 1 {
        return Ok(split);
    }
    if s.data.batch_size < split.world {
        bail!(
            "--batch-size {} is the global batch of {} ranks: each rank needs at least one window (give --batch-size >= {})",
            s.data.batch_size,
            split.world,
            split.world
        );
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&serde_json::to_string(&s.identity())?, &mut h);
    for set in data.sets() {
        std::hash::Hash::hash(&set.manifest().job_fingerprint, &mut h);
    }
    crate::dist::check_same_run(comm, std::hash::Hasher::finish(&h))?;
    shared::say!(
        "{} ranks ({}): each reads {}-{} windows of every micro-batch of {}; selection over the global batch",
        split.world,
        comm.name(),
        split.rows_of(split.world - 1),
        split.rows_of(0),
        split.batch
    );
    Ok(split)
}

/// AdamW as the settings say; with --shard-optimizer, over this rank's
/// share of the variables (ZeRO-1), with which rank owns which.
fn make_optimizer(s: &Settings, comm: &dyn Comm, varmap: &VarMap) -> Result<(Option<Zero>, AdamW)> {
    let adamw = AdamWConfig {
        beta1: s.optim.beta1,
        beta2: s.optim.beta2,
        weight_decay: s.optim.weight_decay,
        ..AdamWConfig::default()
    };
    Ok(if s.run.shard_optimizer {
        let (z, opt) = Zero::optimizer(comm, varmap, adamw)?;
        (Some(z), opt)
    } else {
        (None, AdamW::new(varmap, adamw)?)
    })
}

/// Whether `here` holds on any rank (every rank calls it).
fn any_rank(comm: &dyn Comm, here: bool) -> Result<bool> {
    let mut n = [f64::from(u8::from(here))];
    comm.sum_f64(&mut n)?;
    Ok(n[0] > 0.0)
}

/// The windows (indices, tokens) of the global batch, for the step trace.
fn global_windows(
    comm: &dyn Comm,
    split: &Split,
    batches: &[Batch],
) -> Result<(Vec<u64>, Vec<u32>)> {
    let windows: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.windows.iter().copied())
        .collect();
    let tokens: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.tokens.iter().map(|&t| t as u64))
        .collect();
    if comm.world() == 1 {
        return Ok((windows, tokens.into_iter().map(|t| t as u32).collect()));
    }
    let t = batches[0].seq_len;
    Ok((
        split.in_global_order(&comm.gather_u64(&windows)?, 1),
        split
            .in_global_order(&comm.gather_u64(&tokens)?, t)
            .into_iter()
            .map(|t| t as u32)
            .collect(),
    ))
}

/// Steps the run takes: the smallest of --max-steps, --max-tokens and --epochs.
fn total_steps(s: &Settings, data: &TrainData) -> u64 {
    let windows_per_step = (s.data.batch_size * s.data.grad_accum) as u64;
    let tokens_per_step = windows_per_step * data.seq_len() as u64;
    match (s.run.max_steps, s.run.max_tokens) {
        (Some(m), Some(t)) => m.min(t.div_ceil(tokens_per_step)),
        (Some(m), None) => m,
        (None, Some(t)) => t.div_ceil(tokens_per_step),
        (None, None) => {
            shared::reader::steps_for_epochs(s.run.epochs, data.num_windows(), windows_per_step)
        }
    }
}

/// With --resume, loads the newest checkpoint's weights and optimizer state
/// into `varmap` and `opt` and returns its state; without, refuses a run
/// directory that already holds a run and records the settings.
fn resume_or_start(
    s: &Settings,
    varmap: &VarMap,
    opt: &mut AdamW,
    dev: &Device,
    writer: bool,
) -> Result<Option<TrainerState>> {
    let settings_path = s.run.out.join(SETTINGS_FILE);
    if !s.run.resume {
        if !writer {
            return Ok(None); // rank 0 checks and records the run
        }
        if s.run.out.join(METRICS_FILE).exists() {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --out",
                s.run.out.display()
            );
        }
        let json = serde_json::to_string_pretty(&s.identity())?;
        shared::util::atomic::write_file(&settings_path, json.as_bytes())?;
        return Ok(None);
    }
    let old: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&settings_path)
            .with_context(|| format!("--resume: reading {}", settings_path.display()))?,
    )?;
    let changes = identity_changes(&old, &s.identity());
    if !changes.is_empty() {
        bail!(
            "--resume: these settings differ from {}, and a resumed run must keep them:\n  {}\n(a resume may change only {})",
            settings_path.display(),
            changes.join("\n  "),
            Settings::resumable_flags().join(", ")
        );
    }
    let Some((dir, saved)) = state::latest(&s.run.out)? else {
        shared::say!(
            "--resume: no checkpoint in {} yet, starting from step 0",
            s.run.out.display()
        );
        return Ok(Some(TrainerState {
            seed: s.data.seed,
            ..Default::default()
        }));
    };
    let ckpt = Checkpoint::load(&dir, DType::F32, dev)?;
    let data_map = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned VarMap lock"))?;
    for (name, t) in &ckpt.tensors {
        if let Some(var) = data_map.get(name) {
            var.set(t)?;
        }
    }
    drop(data_map);
    opt.load(&dir.join(state::OPTIMIZER_FILE), saved.adam_t)?;
    shared::say!("resuming from {} (step {})", dir.display(), saved.step);
    Ok(Some(saved))
}

impl<'a> Run<'a> {
    /// Checks, model, run directory and resume point; nothing in the run
    /// directory is touched before every check has passed.
    fn setup(s: &'a Settings) -> Result<Self> {
        let comm = crate::dist::connect()?;
        let writer = comm.rank() == 0; // rank 0 writes for all
        shared::util::say::set_quiet(!writer);
        let dev = s.run.device.open()?;
        let dtype = s.model.dtype.dtype();
        shared::util::device::check_dtype(&dev, dtype)?;
        let ours = [
            SETTINGS_FILE,
            METRICS_FILE,
            ".settings.json.tmp-",
            LOCK_FILE,
        ];
        shared::util::outdir::check_ours(&s.run.out, &ours, "a training run")?;
        if writer {
            shared::util::outdir::check_writable(&s.run.out)?;
        }
        // A directory that exists may have a trainer in it now: refused
        // before the start-up checks; a new one is claimed once it is made.
        let early = (writer && s.run.out.is_dir())
            .then(|| lock_run(&s.run.out))
            .transpose()?;
        let Checked {
            data,
            noise_scores,
            eval_set,
            tokenizer_json,
            cfg,
            varmap,
        } = check_inputs(s, &dev)?;
        let split = check_ranks(s, comm.as_ref(), &data)?;
        let total_steps = total_steps(s, &data);
        let noise = match (s.select.noise_quantile, &noise_scores) {
            (Some(q), Some(scores)) => {
                let f = crate::noise::from_scores(scores, s.select.noise_span, q);
                shared::say!(
                    "noise filter: tokens whose mean reference loss over {} tokens is above {:.3} nats (quantile {q} of the training data) are not selected",
                    f.span, f.cap
                );
                Some(f)
            }
            _ => None,
        };

        let made = writer.then(|| NewDir::make(&s.run.out)).transpose()?;
        let lock = match early {
            Some(l) => Some(l),
            None if writer => Some(lock_run(&s.run.out)?),
            None => None,
        };
        let (zero, mut opt) = make_optimizer(s, comm.as_ref(), &varmap)?;
        let resumed = resume_or_start(s, &varmap, &mut opt, &dev, writer)?;
        let metrics = writer
            .then(|| MetricsLog::open(&s.run.out, resumed.as_ref().map(|st| st.step)))
            .transpose()?;
        let mut st = resumed.unwrap_or(TrainerState {
            seed: s.data.seed,
            ..Default::default()
        });
        if st.schedule_steps == 0 || st.step == 0 {
            st.schedule_steps = total_steps;
        } else if st.schedule_steps != total_steps {
            shared::say!(
                "this run now stops after {total_steps} steps; the learning-rate and ratio schedules keep the {} steps it started with",
                st.schedule_steps
            );
        }
        let model = model_over(&varmap, &cfg, dtype, &dev, Mode::Train)?;
        shared::say!(
            "training {} ({:.2}M params) with {} on {} windows of {}: {total_steps} steps of {} windows",
            match s.model.source() {
                ModelSource::Size(n) => n.name().to_string(),
                ModelSource::Config(p) | ModelSource::Init(p) => p.display().to_string(),
            },
            cfg.num_params() as f64 / 1e6,
            crate::args::cli_name(&s.select.objective),
            data.num_windows(),
            data.seq_len(),
            s.data.batch_size * s.data.grad_accum,
        );
        let first_step = st.step;
        Ok(Run {
            s,
            dev,
            data,
            eval_set,
            tokenizer_json,
            cfg,
            varmap,
            model,
            opt,
            st,
            metrics,
            total_steps,
            last_eval: None,
            dtype,
            noise,
            trace: writer
                .then(crate::trace::Trace::from_env)
                .transpose()?
                .flatten(),
            trace_steps: any_rank(comm.as_ref(), crate::trace::wanted())?,
            first_step,
            zero,
            comm,
            split,
            _lock: lock,
        })
        .inspect(|_| made.map_or((), NewDir::keep))
    }

    /// One optimizer step over `batch_size * grad_accum` windows, and its
    /// line in metrics.jsonl; returns the step's loss over every token.
    fn step(&mut self) -> Result<f64> {
        let (s, st) = (self.s, &mut self.st);
        let t0 = Instant::now();
        let windows_per_step = (s.data.batch_size * s.data.grad_accum) as u64;
        let rows = self.split.rows(); // this rank's rows of each micro-batch
        let batches = (0..s.data.grad_accum)
            .map(|i| {
                let cursor = st.cursor + (i * s.data.batch_size + rows.start) as u64;
                self.data.batch(cursor, rows.len())
            })
            .collect::<shared::Result<Vec<_>>>()?;
        let data_ms = t0.elapsed().as_secs_f64() * 1e3;
        let data_wait_ms = self.data.take_wait().as_secs_f64() * 1e3;
        let ratio = ratio_at(
            st.step,
            st.schedule_steps,
            s.select.ratio,
            s.select.end_ratio(),
        );
        let lr = lr_at(
            st.step,
            st.schedule_steps,
            s.optim.lr,
            s.schedule.warmup_steps,
            s.schedule.min_lr_ratio,
        );
        let params = Params {
            method: s.select.method,
            ratio,
            threshold: s.select.threshold,
            temperature: s.select.temperature,
            noise: self.noise,
        };
        let input = StepInput {
            objective: s.select.objective,
            select: &params,
            lr,
            grad_clip: s.optim.grad_clip,
            trace: self.trace_steps,
            split: self.split,
            comm: self.comm.as_ref(),
            zero: self.zero.as_ref(),
        };
        if self.dtype != DType::F32 {
            self.model = model_over(&self.varmap, &self.cfg, self.dtype, &self.dev, Mode::Train)?;
        }
        let mut rng = shared::select::step_rng(s.data.seed, st.step);
        let stats = train_step(
            &self.model,
            &mut self.opt,
            &batches,
            &input,
            &mut rng,
            &self.dev,
        )?;
        if !stats.loss_all.is_finite() {
            bail!(
                "training diverged at step {}: loss is {}",
                st.step + 1,
                stats.loss_all
            );
        }
        st.step += 1;
        if let Some(t) = stats.trace.as_ref() {
            let (windows, tokens) = global_windows(self.comm.as_ref(), &self.split, &batches)?;
            if let Some(trace) = self.trace.as_mut() {
                trace.write(st.step, &windows, &tokens, batches[0].seq_len, t)?;
            }
        }
        st.cursor += windows_per_step;
        st.tokens_seen += stats.tokens as u64;
        st.tokens_trained += stats.kept;
        st.adam_t = self.opt.t;
        let secs = t0.elapsed().as_secs_f64();
        shared::util::fault::point("step");
        let Some(metrics) = self.metrics.as_mut() else {
            return Ok(stats.loss_all); // rank 0 writes the step's line
        };
        metrics.write(&Record::Step(StepRecord {
            step: st.step,
            lr,
            ratio,
            loss_selected: stats.loss_selected,
            loss_all: stats.loss_all,
            selected_frac: stats.kept / stats.tokens as f64,
            excess_kept: stats.excess_kept,
            excess_dropped: stats.excess_dropped,
            grad_norm: stats.grad_norm,
            skipped: stats.skipped,
            noise_dropped: stats.noise_dropped,
            tokens_per_s: (windows_per_step as usize * self.data.seq_len()) as f64 / secs,
            data_ms,
            data_wait_ms,
            step_ms: secs * 1e3,
            tokens_seen: st.tokens_seen,
            tokens_trained: st.tokens_trained,
        }))?;
        Ok(stats.loss_all)
    }

    /// Held-out loss on --eval-data (if given), written to metrics.jsonl.
    fn evaluate(&mut self) -> Result<()> {
        let (Some(set), Some(_)) = (&self.eval_set, &self.metrics) else {
            return Ok(()); // no held-out set, or not rank 0
        };
        let m = model_over(&self.varmap, &self.cfg, DType::F32, &self.dev, Mode::Infer)?;
        let s = self.s;
        let r = evaluate(&m, set, s.data.batch_size, s.run.eval_windows, &self.dev)?;
        let st = &self.st;
        let metrics = self.metrics.as_mut().expect("rank 0 holds the metrics");
        metrics.write(&Record::Eval(EvalRecord {
            step: st.step,
            eval_loss: r.loss,
            eval_ppl: r.ppl,
            eval_tokens: r.tokens,
            tokens_seen: st.tokens_seen,
            tokens_trained: st.tokens_trained,
        }))?;
        self.last_eval = Some(r);
        Ok(())
    }

    /// The stop signal this process or any other rank caught: every rank
    /// stops after the same step.
    fn stop_requested(&self) -> Result<Option<&'static str>> {
        let here = shared::util::interrupt::requested();
        let any = any_rank(self.comm.as_ref(), here.is_some())?;
        Ok(here.or(any.then_some("a signal to another rank")))
    }

    /// A checkpoint with optimizer moments and trainer state, written atomically.
    fn save(&self, dir: &Path) -> Result<()> {
        // A sharded optimizer's moments are gathered to rank 0 (every rank takes part).
        let moments = match &self.zero {
            Some(z) => z.gather_moments(self.comm.as_ref(), &self.opt)?,
            None => None,
        };
        if self.comm.rank() != 0 {
            return Ok(()); // rank 0 writes for all: every rank holds the same model
        }
        let tok = self.tokenizer_json.as_deref();
        let st = &self.st;
        state::save(
            dir,
            &self.cfg,
            &self.varmap,
            tok,
            &self.opt,
            moments.as_deref(),
            st,
        )
    }

    /// After a stop signal: the step just taken is saved as a periodic
    /// checkpoint, which `--resume` continues from.
    fn stop(self, signal: &str) -> Result<PathBuf> {
        let dir = self
            .s
            .run
            .out
            .join("checkpoints")
            .join(format!("step-{:06}", self.st.step));
        if !dir.join(state::STATE_FILE).is_file() {
            self.save(&dir)?;
        }
        shared::say!(
            "stopped by {signal} after step {} of {}: checkpoint {}; the same command with --resume continues the run (exit status {})",
            self.st.step,
            self.total_steps,
            dir.display(),
            shared::util::interrupt::EXIT_STOPPED
        );
        shared::util::interrupt::mark_stopped();
        Ok(dir)
    }

    /// Writes `final/` (unless a resumed run already holds it for this step)
    /// and prints the held-out loss.
    fn finish(mut self) -> Result<PathBuf> {
        if self.comm.world() > 1 {
            let steps = self.st.step - self.first_step;
            shared::say!("{}", self.comm.usage().line(steps));
            let rss = [shared::process::peak_rss_mb() as f32];
            if let Some(all) = self.comm.gather_f32_at_root(&rss)? {
                let mb: Vec<String> = all.iter().map(|r| format!("{:.0}", r[0])).collect();
                shared::say!(
                    "peak RSS per rank before the final checkpoint: {} MB",
                    mb.join(", ")
                );
            }
        }
        let final_dir = self.s.run.out.join("final");
        let done = final_dir.join(state::STATE_FILE).is_file()
            && state::load_state(&final_dir)?.step == self.st.step;
        if !done {
            self.save(&final_dir)?;
        }
        if self.last_eval.is_none() {
            self.evaluate()?;
        }
        match &self.last_eval {
            Some(r) => shared::say!(
                "held-out loss {:.4} (ppl {:.2}) after {} steps; checkpoint {}",
                r.loss,
                r.ppl,
                self.st.step,
                final_dir.display()
            ),
            None => shared::say!(
                "done after {} steps; checkpoint {}",
                self.st.step,
                final_dir.display()
            ),
        }
        Ok(final_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_larger_than_the_free_space_is_refused() {
        let dir = std::env::temp_dir();
        let small = LlamaConfig::preset("debug", 64).unwrap();
        check_room(&dir, &small).unwrap();
        let mut huge = small.clone();
        huge.vocab_size = 1 << 40; // 64 x 2^40 weights in the embedding alone
        let err = check_room(&dir, &huge).unwrap_err().to_string();
        assert!(
            err.contains("MB free") && err.contains("one checkpoint"),
            "{err}"
        );
    }
}
