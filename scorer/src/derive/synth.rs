//! `scorer synth`: a score set of any size for benchmarks, written through
//! the real writer. The windows are the source set's, repeated with fresh
//! sequence and document ids until `tokens` are reached; ref_loss is a fixed
//! pseudo-random stream (a loss-like distribution, not a model's). The
//! manifest says so (`reference_model.path = "synthetic"`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use shared::scores::format::FORMAT_VERSION;
use shared::scores::format::{
    shard_file_name, DOCUMENTS_FILE, JOB_FILE, MANIFEST_FILE, VOCAB_FILE,
};
use shared::scores::manifest::{LossSummary, Manifest, ModelInfo, ShardEntry};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::{write_shard, LossDtype, LossStats, Rounding};
use shared::text::pack::Window;
use shared::util::progress::Progress;
use shared::util::rng::Rng;

#[derive(clap::Args)]
pub struct SynthArgs {
    /// The score set whose windows are repeated.
    #[arg(long = "set")]
    pub src: PathBuf,
    /// Tokens to write (rounded down to whole windows).
    #[arg(long)]
    pub tokens: u64,
    /// How ref_loss is stored: f32 or f16.
    #[arg(long, default_value = "f32")]
    pub loss_dtype: LossDtype,
    /// Seed of the ref_loss stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &SynthArgs) -> Result<()> {
    if a.out.exists() {
        bail!("{} exists: choose a new --out directory", a.out.display());
    }
    let src = ScoreSet::open(&a.src)?;
    let all = src.read_all()?;
    let t = all.seq_len;
    let n_src = all.len() as u64;
    let windows = a.tokens / t as u64;
    if n_src == 0 || windows == 0 {
        bail!("{} tokens is less than one window of {t}", a.tokens);
    }
    let mut spec = src.manifest().job.clone();
    spec.format_version = FORMAT_VERSION;
    spec.scored = true;
    spec.loss_dtype = a.loss_dtype;
    spec.reference_model = Some(ModelInfo {
        fingerprint: format!("synthetic-seed-{}", a.seed),
        path: "synthetic".into(),
        vocab_size: spec.tokenizer.vocab_size,
        num_params: 0,
        dtype: "f32".into(),
        device: "cpu".into(),
    });
    let job_id = spec.fingerprint();
    let doc_span = all.doc_ids.iter().max().map_or(1, |d| d + 1);
    let mut rng = Rng::new(a.seed);
    let mut progress = Progress::new("writing", "tok", windows * t as u64);
    let (mut shards, mut stats, mut rounding) =
        (Vec::new(), LossStats::default(), Rounding::default());
    shared::util::atomic::write_dir(&a.out, |tmp| {
        let per_shard = spec.shard_windows as u64;
        for (s, first) in (0..windows).step_by(per_shard as usize).enumerate() {
            let count = per_shard.min(windows - first);
            let mut ws = Vec::with_capacity(count as usize);
            let mut losses = Vec::with_capacity(count as usize);
            for seq_id in first..first + count {
                let (cycle, w) = (seq_id / n_src, (seq_id % n_src) as usize);
                ws.push(Window {
                    seq_id,
                    tokens: all.tokens[w * t..(w + 1) * t].to_vec(),
                    doc_ids: all.doc_ids[w * t..(w + 1) * t].iter().map(|d| d + cycle * doc_span).collect(),
                });
                // -ln(u) scaled: mean 3 nats, a long tail, like a model's losses.
                losses.push((1..t).map(|_| (-(1.0 - rng.next_f64()).ln() * 3.0) as f32).collect());
            }
            let path = tmp.join(shard_file_name(s));
            let info = write_shard(&path, &job_id, s, &spec.shard_layout(), &ws, Some(&losses))?;
            stats.merge(&info.ref_loss);
            if let Some(r) = &info.rounding {
                rounding.merge(r);
            }
            shards.push(ShardEntry::describe(&path, &info)?);
            progress.inc(count * t as u64);
        }
        for f in [VOCAB_FILE, DOCUMENTS_FILE, shared::model::checkpoint::TOKENIZER_FILE] {
            let from = src.side_file(f)?;
            std::fs::copy(&from, tmp.join(f)).map_err(|e| shared::Error::io(&from, e))?;
        }
        let m = Manifest {
            job: spec.clone(),
            job_fingerprint: job_id.clone(),
            num_windows: windows,
            num_tokens: windows * t as u64,
            shards: std::mem::take(&mut shards),
            ref_loss: Some(LossSummary::from(&stats)),
            ref_loss_rounding: (a.loss_dtype == LossDtype::F16).then_some(rounding),
            derived_from: Some(serde_json::json!({"synthetic": {"source": a.src.display().to_string(), "seed": a.seed}})),
            created_by: format!("scorer {}", env!("CARGO_PKG_VERSION")),
            ..src.manifest().clone()
        };
        shared::util::atomic::write_plain(&tmp.join(JOB_FILE), super::to_json(&spec)?.as_bytes())?;
        shared::util::atomic::write_plain(&tmp.join(MANIFEST_FILE), super::to_json(&m)?.as_bytes())?;
        Ok(())
    })
    .with_context(|| format!("writing {}", a.out.display()))?;
    progress.finish();
    shared::say!(
        "wrote {} ({windows} windows, {} tokens)",
        a.out.display(),
        windows * t as u64
    );
    Ok(())
}
