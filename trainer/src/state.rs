//! Trainer checkpoints: a Hugging Face directory (config.json,
//! model.safetensors, tokenizer.json) plus `optimizer.safetensors` (AdamW
//! moments) and `trainer_state.json` (step, data cursor, counters), written
//! atomically together.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use shared::model::config::LlamaConfig;

use crate::optim::AdamW;

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u64,
    /// Windows consumed from the shuffled stream.
    pub cursor: u64,
    /// Predicted tokens seen by forward passes.
    pub tokens_seen: u64,
    /// Tokens that carried gradient (the selected ones; all of them for clm).
    pub tokens_trained: f64,
    pub seed: u64,
    /// AdamW's update count.
    pub adam_t: u64,
    /// Steps the learning-rate and ratio schedules span: the run's length
    /// when it started, kept when a resume changes where it stops (0 in
    /// states written before it was recorded: the current length is used).
    #[serde(default)]
    pub schedule_steps: u64,
}

pub fn save(
    dir: &Path,
    cfg: &LlamaConfig,
    varmap: &VarMap,
    tokenizer: Option<&Path>,
    opt: &AdamW,
    moments: Option<&[(candle_core::Tensor, candle_core::Tensor)]>,
    state: &TrainerState,
) -> Result<()> {
    shared::util::atomic::write_dir(dir, |tmp| {
        shared::model::checkpoint::write_files(tmp, cfg, varmap, tokenizer)?;
        opt.save(&tmp.join(OPTIMIZER_FILE), moments)
            .map_err(|e| shared::Error::checkpoint(tmp, e.to_string()))?;
        let json = serde_json::to_string_pretty(state)
            .map_err(|e| shared::Error::Invalid(e.to_string()))?;
        shared::util::atomic::write_plain(&tmp.join(STATE_FILE), json.as_bytes())
    })?;
    Ok(())
}

pub fn load_state(dir: &Path) -> Result<TrainerState> {
    let p = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed trainer state", p.display()))
}

/// The newest complete checkpoint of a run directory (final/ or checkpoints/step-*).
pub fn latest(run: &Path) -> Result<Option<(PathBuf, TrainerState)>> {
    let mut candidates = vec![run.join("final")];
    if let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") {
                candidates.push(e.path());
            }
        }
    }
    let mut best: Option<(PathBuf, TrainerState)> = None;
    for c in candidates {
        if !c.exists() {
            continue;
        }
        // Checkpoints appear whole (written aside, then renamed): one without
        // its state was damaged since, and resuming past it would silently
        // start from an older step or from nothing.
        if !c.join(STATE_FILE).is_file() {
            anyhow::bail!(
                "{}: a checkpoint without {STATE_FILE} (damaged after it was written): restore it, or move it away to resume from an older checkpoint",
                c.display()
            );
        }
        let st = load_state(&c)?;
        if best.as_ref().map(|b| st.step > b.1.step).unwrap_or(true) {
            best = Some((c, st));
        }
    }
    Ok(best)
}
