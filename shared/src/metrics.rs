//! The lines of a training run's `metrics.jsonl`: a [`StepRecord`] per
//! optimizer step and an [`EvalRecord`] per evaluation, written by the
//! trainer and read back with the same types by its reports, its demo, the
//! tests and any user's script (one JSON object per line).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One optimizer step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Steps done, this one included (1-based).
    pub step: u64,
    pub lr: f64,
    /// The selection ratio k of this step.
    pub ratio: f64,
    /// The loss backpropagated: mean CE over the kept tokens.
    pub loss_selected: f64,
    /// Mean CE over every predicted token.
    pub loss_all: f64,
    /// Kept tokens (sum of weights) over predicted tokens.
    pub selected_frac: f64,
    /// Mean excess loss of the kept and of the dropped tokens (slm only).
    pub excess_kept: Option<f64>,
    pub excess_dropped: Option<f64>,
    pub grad_norm: f64,
    /// Nothing was kept (threshold rule): no update was made.
    pub skipped: bool,
    /// Tokens the noise filter took out before selection (`--noise-quantile`).
    pub noise_dropped: Option<usize>,
    pub tokens_per_s: f64,
    /// Time to get the step's batches, and the part of it spent waiting for
    /// the prefetching reader.
    pub data_ms: f64,
    pub data_wait_ms: f64,
    pub step_ms: f64,
    /// Predicted tokens seen by forward passes so far.
    pub tokens_seen: u64,
    /// Tokens that carried gradient so far (the kept ones; all for clm).
    pub tokens_trained: f64,
}

/// One evaluation on the held-out set, after `step` steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    pub eval_loss: f64,
    pub eval_ppl: f64,
    pub eval_tokens: u64,
    pub tokens_seen: u64,
    pub tokens_trained: f64,
}

/// A line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Step(StepRecord),
    Eval(EvalRecord),
}

impl Record {
    pub fn step(&self) -> u64 {
        match self {
            Record::Step(r) => r.step,
            Record::Eval(r) => r.step,
        }
    }
}

/// A run's records, in order.
pub struct Metrics(pub Vec<Record>);

impl Metrics {
    /// Reads `metrics.jsonl`; a line that is neither record is an error
    /// naming the file and the line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::corpus(
                        path,
                        format!("line {}", i + 1),
                        format!("not a metrics record: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Metrics)
    }

    pub fn steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.0.iter().filter_map(|r| match r {
            Record::Step(s) => Some(s),
            Record::Eval(_) => None,
        })
    }

    pub fn evals(&self) -> impl Iterator<Item = &EvalRecord> {
        self.0.iter().filter_map(|r| match r {
            Record::Eval(e) => Some(e),
            Record::Step(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_eval_lines_read_back_as_written() {
        let step = StepRecord {
            step: 3,
            lr: 1e-3,
            loss_selected: 2.5,
            excess_kept: Some(0.5),
            noise_dropped: None,
            ..Default::default()
        };
        let eval = EvalRecord {
            step: 3,
            eval_loss: 4.25,
            ..Default::default()
        };
        let lines = [Record::Step(step.clone()), Record::Eval(eval.clone())];
        for r in &lines {
            let back: Record = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
            assert_eq!(&back, r);
        }
    }
}
