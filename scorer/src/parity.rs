//! `scorer parity`: a model's per-token losses on fixed token ids against
//! reference losses (transformers' in the fixtures), on any device and
//! dtype. What a new machine, GPU or build runs first: if this does not
//! match, no score set it writes should be trusted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use shared::model::checkpoint::Checkpoint;

/// `scorer parity`: a model's per-token losses on fixed token ids against
/// reference losses (e.g. transformers'), on a device and dtype: JSON, exit 1
/// past --tolerance.
#[derive(clap::Args)]
pub struct ParityArgs {
    /// Checkpoint directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON (B, T) token ids (tests/fixtures/*/input_ids.json).
    #[arg(long)]
    pub ids: PathBuf,
    /// JSON (B, T-1) reference losses; [b][j] is the loss of ids[b][j+1].
    #[arg(long)]
    pub losses: PathBuf,
    /// cpu, or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Largest |ours - reference| accepted.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the expected JSON", p.display()))
}

pub fn run(a: &ParityArgs) -> Result<()> {
    let dev = shared::util::device::parse_device(&a.device)?;
    let dtype = shared::util::device::parse_dtype(&a.dtype)?;
    shared::util::device::check_dtype(&dev, dtype)?;
    let ids: Vec<Vec<u32>> = read_json(&a.ids)?;
    let expected: Vec<Vec<f64>> = read_json(&a.losses)?;
    let (b, t) = (ids.len(), ids.first().map_or(0, |r| r.len()));
    if b == 0 || t < 2 || ids.iter().any(|r| r.len() != t) {
        bail!("{}: expected equal rows of at least 2 ids", a.ids.display());
    }
    if expected.len() != b || expected.iter().any(|r| r.len() != t - 1) {
        bail!(
            "{}: expected {b} rows of {} losses",
            a.losses.display(),
            t - 1
        );
    }
    let model = Checkpoint::load(&a.model, dtype, &dev)?.infer_model(&dev)?;
    let windows = Tensor::from_vec(ids.concat(), (b, t), &dev)?;
    let got = model.token_losses(&windows)?.to_vec2::<f32>()?; // (B, T-1), f32
    let (mut max, mut abs, mut signed) = (0f64, 0f64, 0f64);
    for (g, e) in got.iter().zip(&expected) {
        for (x, y) in g.iter().zip(e) {
            let d = *x as f64 - y;
            max = max.max(d.abs());
            abs += d.abs();
            signed += d;
        }
    }
    let n = (b * (t - 1)) as f64;
    let ok = max <= a.tolerance;
    let report = serde_json::json!({
        "model": a.model.display().to_string(), "device": a.device, "dtype": a.dtype,
        "tokens": n, "max_abs_diff": max, "mean_abs_diff": abs / n,
        "mean_signed_diff": signed / n, "tolerance": a.tolerance, "ok": ok,
    });
    shared::out!("{report}");
    if !ok {
        bail!(
            "{}: max |ours - reference| = {max:.3e} on {} in {}, above the tolerance {:e}",
            a.model.display(),
            a.device,
            a.dtype,
            a.tolerance
        );
    }
    Ok(())
}
