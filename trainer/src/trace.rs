//! The step trace, a debugging hook: with RHO1_TRACE_STEPS=FILE, `trainer
//! train` appends one JSON line per step holding the windows it read (their
//! indices and tokens) and, per predicted token, the live cross-entropy, the
//! reference loss, the document id and the selection weight (floats as their
//! IEEE-754 bits, so a reader gets them exactly). The Python package's tests compare its
//! batches and `rho1.select` against it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::step::StepTrace;

/// The environment variable naming the trace file.
pub const ENV: &str = "RHO1_TRACE_STEPS";

pub struct Trace {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Whether RHO1_TRACE_STEPS is set here (with several ranks: on any of
/// them, every rank gathers the trace's values and rank 0 writes them).
pub fn wanted() -> bool {
    std::env::var_os(ENV).is_some()
}

impl Trace {
    /// The trace RHO1_TRACE_STEPS names (appended to), if it names one.
    pub fn from_env() -> Result<Option<Trace>> {
        let Some(path) = std::env::var_os(ENV).map(PathBuf::from) else {
            return Ok(None);
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open the step trace ({ENV})", path.display()))?;
        Ok(Some(Trace {
            path,
            out: BufWriter::new(file),
        }))
    }

    /// The line of step `step` (1-based, as in metrics.jsonl): the global
    /// batch's windows (indices, their `seq_len` tokens each) and `t`.
    pub fn write(
        &mut self,
        step: u64,
        windows: &[u64],
        tokens: &[u32],
        seq_len: usize,
        t: &StepTrace,
    ) -> Result<()> {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let line = serde_json::json!({
            "step": step,
            "windows": windows,
            "tokens": tokens,
            "cols": seq_len - 1,
            "ce_bits": bits(&t.ce),
            "ref_loss_bits": bits(&t.ref_loss),
            "doc_ids": t.doc_ids,
            "weight_bits": bits(&t.weights),
        });
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("{}: cannot write the step trace", self.path.display()))
    }
}
