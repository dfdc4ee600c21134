//! `trainer train`: data and model checks, the loop, evaluation, metrics and
//! checkpoints. The step itself is in `step.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;
use shared::checkpoint::{infer_model_from_varmap, init_varmap, Checkpoint};
use shared::config::LlamaConfig;
use shared::model::{Llama, Mode};
use shared::progress::Progress;
use shared::rng::Rng;
use shared::scoreset::ScoreSet;
use shared::tokenizer::Tokenizer;

use crate::args::{ModelSource, Objective, Settings};
use crate::data::{check_compatible, tokenizer_of, TrainData};
use crate::eval::{evaluate, EvalResult};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::{lr_at, ratio_at};
use crate::select::Params;
use crate::state::{self, TrainerState};
use crate::step::{train_step, StepInput};

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SETTINGS_FILE: &str = "settings.json";

/// Builds the model config and weights the settings ask for.
fn make_model(s: &Settings, vocab: usize, dev: &Device) -> Result<(LlamaConfig, VarMap)> {
    Ok(match &s.model {
        ModelSource::Init(dir) => {
            let ckpt = Checkpoint::load(dir, DType::F32, dev)?;
            (ckpt.config.clone(), ckpt.into_varmap()?)
        }
        ModelSource::Config(path) => {
            let cfg = LlamaConfig::load(path)?;
            let vm = init_varmap(&cfg, s.seed, 0.02, dev)?;
            (cfg, vm)
        }
        ModelSource::Size(name) => {
            let cfg = LlamaConfig::preset(name, vocab)?;
            let vm = init_varmap(&cfg, s.seed, 0.02, dev)?;
            (cfg, vm)
        }
    })
}

/// The settings that define a run's results (a resumed run must match them).
fn identity(s: &Settings) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in [
            "resume",
            "threads",
            "device",
            "eval_every",
            "checkpoint_every",
            "eval_windows",
            "eval_data",
        ] {
            o.remove(k);
        }
    }
    v
}

struct Metrics(std::fs::File);

impl Metrics {
    /// Opens metrics.jsonl for appending; on resume, drops the lines of
    /// steps after `keep_through` (they will be recomputed).
    fn open(run: &Path, keep_through: Option<u64>) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        if let Some(step) = keep_through {
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            let kept: String = old
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            shared::atomic::write_file(&path, kept.as_bytes())?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Metrics(f))
    }

    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.0, "{v}")?;
        self.0.flush()?;
        Ok(())
    }
}

/// Trains as `s` says; returns the final checkpoint directory.
pub fn run(s: &Settings) -> Result<PathBuf> {
    shared::device::set_threads(s.threads);
    let dev = shared::device::parse_device(&s.device)?;

    // Everything is checked before the run directory is touched.
    let mut data = TrainData::open(&s.data, Rng::derive(s.seed, "data").next_u64())?;
    let first = &data.sets()[0];
    let tokenizer_json = tokenizer_of(first);
    let tok_info = first.manifest().job.tokenizer.clone();
    let eval_set = match &s.eval_data {
        Some(d) => {
            let e = ScoreSet::open(d)?;
            check_compatible(first, &e)?;
            Some(e)
        }
        None => None,
    };
    let (cfg, varmap) = make_model(s, tok_info.vocab_size, &dev)?;
    if tok_info.vocab_size > cfg.vocab_size {
        bail!(
            "the data's tokenizer has {} ids but the model's vocabulary is {}: they do not belong together",
            tok_info.vocab_size,
            cfg.vocab_size
        );
    }
    if let ModelSource::Init(dir) = &s.model {
        let p = dir.join(shared::checkpoint::TOKENIZER_FILE);
        if p.is_file() {
            let t = Tokenizer::load(&p, Some(&tok_info.eos_token))
                .or_else(|_| Tokenizer::load(&p, None))?;
            if t.fingerprint() != tok_info.fingerprint {
                bail!(
                    "tokenizer differs: --init {} has {}, the data {} has {}",
                    dir.display(),
                    t.fingerprint(),
                    first.dir().display(),
                    tok_info.fingerprint
                );
            }
        }
    }
    let need_ref = s.objective == Objective::Slm;
    if let Some(set) = data.sets().iter().find(|set| need_ref && !set.scored()) {
        bail!(
            "{}: a pack-only set (written by `scorer pack`) has no ref_loss; --objective slm needs a set written by `scorer score`",
            set.dir().display()
        );
    }
    data.validate(cfg.vocab_size, need_ref)?;

    let seq_len = data.seq_len();
    let windows_per_step = (s.batch_size * s.grad_accum) as u64;
    let total_steps = match (s.max_steps, s.max_tokens) {
        (Some(m), Some(t)) => m.min(t.div_ceil(windows_per_step * seq_len as u64)),
        (Some(m), None) => m,
        (None, Some(t)) => t.div_ceil(windows_per_step * seq_len as u64),
        (None, None) => (s.epochs * data.num_windows()).div_ceil(windows_per_step),
    };

    // Run directory, and the resume point.
    std::fs::create_dir_all(&s.out).with_context(|| format!("creating {}", s.out.display()))?;
    let settings_path = s.out.join(SETTINGS_FILE);
    let mut opt = AdamW::new(
        &varmap,
        AdamWConfig {
            beta1: s.beta1,
            beta2: s.beta2,
            eps: 1e-8,
            weight_decay: s.weight_decay,
        },
    )?;
    let mut st = TrainerState {
        seed: s.seed,
        ..Default::default()
    };
    let resumed = if s.resume {
        let old: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&settings_path)
                .with_context(|| format!("--resume: reading {}", settings_path.display()))?,
        )?;
        if old != identity(s) {
            bail!(
                "--resume: the settings differ from {} (a resumed run must use the same ones)",
                settings_path.display()
            );
        }
        match state::latest(&s.out)? {
            Some((dir, saved)) => {
                let ckpt = Checkpoint::load(&dir, DType::F32, &dev)?;
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
                eprintln!("resuming from {} (step {})", dir.display(), saved.step);
                st = saved;
                Some(st.step)
            }
            None => {
                eprintln!(
                    "--resume: no checkpoint in {} yet, starting from step 0",
                    s.out.display()
                );
                Some(0)
            }
        }
    } else {
        if s.out.join(METRICS_FILE).exists() {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --out",
                s.out.display()
            );
        }
        shared::atomic::write_file(
            &settings_path,
            serde_json::to_string_pretty(&identity(s))?.as_bytes(),
        )?;
        None
    };
    let mut metrics = Metrics::open(&s.out, resumed)?;

    let model = Llama::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
        &cfg,
        Mode::Train,
    )?;
    eprintln!(
        "training {} ({:.2}M params) with {:?} on {} windows of {seq_len}: {total_steps} steps of {windows_per_step} windows",
        match &s.model { ModelSource::Size(n) => n.clone(), ModelSource::Config(p) | ModelSource::Init(p) => p.display().to_string() },
        cfg.num_params() as f64 / 1e6,
        s.objective,
        data.num_windows()
    );
    let run_eval = || -> Result<Option<EvalResult>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        let m = infer_model_from_varmap(&varmap, &cfg, &dev)?;
        Ok(Some(evaluate(&m, set, s.batch_size, s.eval_windows, &dev)?))
    };
    let eval_line = |st: &TrainerState, r: &EvalResult| {
        json!({"step": st.step, "eval_loss": r.loss, "eval_ppl": r.ppl, "eval_tokens": r.tokens,
               "tokens_seen": st.tokens_seen, "tokens_trained": st.tokens_trained})
    };
    if st.step == 0 && s.eval_every > 0 {
        if let Some(r) = run_eval()? {
            metrics.write(eval_line(&st, &r))?;
        }
    }

    let mut progress = Progress::new(
        if need_ref { "slm" } else { "clm" },
        "steps",
        total_steps - st.step.min(total_steps),
    );
    let mut last_eval = None;
    while st.step < total_steps {
        let t0 = Instant::now();
        let batches = (0..s.grad_accum)
            .map(|i| data.batch(st.cursor + (i * s.batch_size) as u64, s.batch_size))
            .collect::<Result<Vec<_>>>()?;
        let data_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ratio = ratio_at(st.step, total_steps, s.select_ratio, s.select_ratio_end);
        let lr = lr_at(st.step, total_steps, s.lr, s.warmup_steps, s.min_lr_ratio);
        let params = Params {
            method: s.select,
            ratio,
            threshold: s.select_threshold,
            temperature: s.select_temperature,
        };
        let input = StepInput {
            objective: s.objective,
            select: &params,
            lr,
            grad_clip: s.grad_clip,
        };
        let mut rng = Rng::derive(s.seed, &format!("select-{}", st.step));
        let stats = train_step(&model, &mut opt, &batches, &input, &mut rng, &dev)?;
        if !stats.loss_all.is_finite() {
            bail!(
                "training diverged at step {}: loss is {}",
                st.step + 1,
                stats.loss_all
            );
        }
        st.step += 1;
        st.cursor += windows_per_step;
        st.tokens_seen += stats.tokens as u64;
        st.tokens_trained += stats.kept;
        st.adam_t = opt.t;
        let secs = t0.elapsed().as_secs_f64();
        shared::fault::point("step");
        metrics.write(json!({
            "step": st.step, "lr": lr, "ratio": ratio,
            "loss_selected": stats.loss_selected, "loss_all": stats.loss_all,
            "selected_frac": stats.kept / stats.tokens as f64,
            "excess_kept": stats.excess_kept, "excess_dropped": stats.excess_dropped,
            "grad_norm": stats.grad_norm, "skipped": stats.skipped,
            "tokens_per_s": (windows_per_step as usize * seq_len) as f64 / secs,
            "data_ms": data_ms, "step_ms": secs * 1e3,
            "tokens_seen": st.tokens_seen, "tokens_trained": st.tokens_trained,
        }))?;
        progress.inc(1);
        let at_end = st.step == total_steps;
        if s.eval_every > 0 && st.step.is_multiple_of(s.eval_every) || at_end {
            if let Some(r) = run_eval()? {
                metrics.write(eval_line(&st, &r))?;
                last_eval = Some(r);
            }
        }
        if s.checkpoint_every > 0 && st.step.is_multiple_of(s.checkpoint_every) && !at_end {
            let dir = s
                .out
                .join("checkpoints")
                .join(format!("step-{:06}", st.step));
            state::save(&dir, &cfg, &varmap, tokenizer_json.as_deref(), &opt, &st)?;
        }
    }
    progress.finish();
    let final_dir = s.out.join("final");
    if !final_dir.join(state::STATE_FILE).is_file()
        || state::load_state(&final_dir)?.step != st.step
    {
        state::save(
            &final_dir,
            &cfg,
            &varmap,
            tokenizer_json.as_deref(),
            &opt,
            &st,
        )?;
    }
    if last_eval.is_none() {
        last_eval = run_eval()?;
    }
    if let Some(r) = &last_eval {
        eprintln!(
            "held-out loss {:.4} (ppl {:.2}) after {} steps; checkpoint {}",
            r.loss,
            r.ppl,
            st.step,
            final_dir.display()
        );
    } else {
        eprintln!(
            "done after {} steps; checkpoint {}",
            st.step,
            final_dir.display()
        );
    }
    Ok(final_dir)
}
