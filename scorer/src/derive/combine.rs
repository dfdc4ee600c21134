//! `scorer combine`: several references at once. Score sets of the same
//! windows (same corpus, tokenizer, seq_len and shard layout) become one set
//! whose ref_loss is, per token, the min, the (weighted) mean or the max of
//! theirs. The trainer uses it like any other set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use shared::scores::manifest::ModelInfo;
use shared::scores::scoreset::ScoreSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The lowest reference loss: a token is easy if any reference finds it easy.
    Min,
    /// The (weighted) mean.
    Mean,
    /// The highest reference loss.
    Max,
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Min => "min",
        Op::Mean => "mean",
        Op::Max => "max",
    }
}

/// The per-token combination; NaN (position 0) stays NaN.
fn combine(op: Op, weights: &[f64], values: &[f32]) -> f32 {
    if values[0].is_nan() {
        return f32::NAN;
    }
    match op {
        Op::Min => values.iter().copied().fold(f32::INFINITY, f32::min),
        Op::Max => values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        Op::Mean => values
            .iter()
            .zip(weights)
            .map(|(&v, &w)| v as f64 * w)
            .sum::<f64>() as f32,
    }
}

/// `scorer combine`: several references at once: score sets of the same
/// windows combined token by token (min, weighted mean or max of their
/// ref_loss) into one set.
#[derive(clap::Args)]
pub struct CombineArgs {
    /// Scored sets of the same corpus, tokenizer, seq_len and layout.
    #[arg(long, required = true, num_args = 2..)]
    pub sets: Vec<PathBuf>,
    /// How the reference losses of a token are combined.
    #[arg(long, value_enum)]
    pub op: Op,
    /// With --op mean: one weight per set (normalised to sum 1).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

impl CombineArgs {
    pub fn run(&self) -> Result<()> {
        run(&self.sets, self.op, self.weights.as_deref(), &self.out)
    }
}

pub fn run(dirs: &[PathBuf], op: Op, weights: Option<&[f64]>, out: &Path) -> Result<()> {
    if dirs.len() < 2 {
        bail!("--sets needs at least two score sets");
    }
    let sets = dirs
        .iter()
        .map(|d| ScoreSet::open(d))
        .collect::<shared::Result<Vec<_>>>()?;
    for s in &sets {
        if !s.scored() {
            bail!(
                "{}: a pack-only set has no reference losses to combine",
                s.dir().display()
            );
        }
    }
    // The same windows; one set may hold fewer of them (an aligned set stops
    // where its reference's coverage does): the result covers those all hold.
    for s in &sets[1..] {
        let d: Vec<String> = sets[0]
            .window_differences(s)
            .into_iter()
            .filter(|d| !d.starts_with("windows:"))
            .collect();
        if !d.is_empty() {
            bail!(
                "{} and {} are not the same windows: {}",
                sets[0].dir().display(),
                s.dir().display(),
                d.join("; ")
            );
        }
    }
    let common = sets.iter().map(|s| s.num_windows()).min().unwrap_or(0);
    if sets.iter().any(|s| s.num_windows() != common) {
        shared::say!("the sets hold different numbers of windows: combining the first {common}, which all hold");
    }
    let weights: Vec<f64> = match (op, weights) {
        (Op::Mean, Some(w)) => {
            if w.len() != sets.len() || w.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                bail!(
                    "--weights needs {} positive numbers, one per set (got {w:?})",
                    sets.len()
                );
            }
            let total: f64 = w.iter().sum();
            w.iter().map(|x| x / total).collect()
        }
        (_, Some(_)) => bail!("--weights applies to --op mean only"),
        (_, None) => vec![1.0 / sets.len() as f64; sets.len()],
    };
    let refs: Vec<&ModelInfo> = sets
        .iter()
        .map(|s| s.manifest().job.reference_model.as_ref())
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("a scored set without a reference model"))?;
    let identity = serde_json::json!({
        "op": op, "weights": weights,
        "references": refs.iter().map(|r| &r.fingerprint).collect::<Vec<_>>(),
    });
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let first = refs[0];
    let reference = ModelInfo {
        fingerprint: shared::util::hash::hash_bytes(identity.to_string().as_bytes()),
        path: format!("combine {} of {}", op_name(op), names.join(", ")),
        vocab_size: first.vocab_size,
        num_params: refs.iter().map(|r| r.num_params).sum(),
        dtype: first.dtype.clone(),
        device: first.device.clone(),
    };
    let derived = serde_json::json!({
        "op": op,
        "weights": weights,
        "sources": sets.iter().zip(&names).map(|(s, n)| serde_json::json!({
            "dir": n,
            "job_fingerprint": s.manifest().job_fingerprint,
            "reference_model": s.manifest().job.reference_model,
        })).collect::<Vec<_>>(),
    });
    let m = super::write_derived(&sets[0], out, reference, derived, common, |s, g, w| {
        if w.seq_ids.first().is_some_and(|&q| q >= common) {
            return Ok(vec![f32::NAN; w.tokens.len()]); // past the common windows: not written
        }
        let n = (common - w.seq_ids[0]).min(w.len() as u64) as usize * w.seq_len;
        let others = sets[1..]
            .iter()
            .map(|o| o.read_row_group(s, g))
            .collect::<shared::Result<Vec<_>>>()?;
        let mut all = vec![w.ref_loss.as_deref().unwrap_or(&[])];
        for o in &others {
            if o.tokens[..n.min(o.tokens.len())] != w.tokens[..n] {
                bail!("shard {s} row group {g}: the token ids of the sets differ");
            }
            all.push(o.ref_loss.as_deref().unwrap_or(&[]));
        }
        let mut row = vec![0f32; all.len()];
        Ok((0..w.tokens.len())
            .map(|i| {
                if i >= n {
                    return f32::NAN; // past the common windows: not written
                }
                for (r, set) in row.iter_mut().zip(&all) {
                    *r = set[i];
                }
                combine(op, &weights, &row)
            })
            .collect())
    })?;
    let r = m.ref_loss.as_ref();
    shared::say!(
        "wrote {} ({} of {} sets, {} windows): ref_loss mean {:.4} over {} tokens",
        out.display(),
        op_name(op),
        sets.len(),
        m.num_windows,
        r.map_or(f64::NAN, |r| r.mean),
        r.map_or(0, |r| r.count)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_op_per_token() {
        let w = [0.25, 0.75];
        assert_eq!(combine(Op::Min, &w, &[2.0, 1.0]), 1.0);
        assert_eq!(combine(Op::Max, &w, &[2.0, 1.0]), 2.0);
        assert_eq!(combine(Op::Mean, &w, &[2.0, 1.0]), 1.25);
        assert!(combine(Op::Mean, &w, &[f32::NAN, f32::NAN]).is_nan());
    }
}
