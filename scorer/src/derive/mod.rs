//! Score sets made from other score sets, without a model: windows (the
//! source's, or the corpus re-packed by another tokenizer) with reference
//! losses computed from the source's.

pub mod align; // `scorer align`: a reference's losses onto another tokenizer's windows
pub mod combine; // `scorer combine`: min / mean / max of several references
pub mod synth; // `scorer synth`: a set of any size for benchmarks

use std::path::Path;

use anyhow::{bail, Context, Result};
use shared::scores::format::FORMAT_VERSION;
use shared::scores::format::{
    shard_file_name, DOCUMENTS_FILE, JOB_FILE, MANIFEST_FILE, VOCAB_FILE,
};
use shared::scores::manifest::{LossSummary, Manifest, ModelInfo, ShardEntry};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::{write_shard, LossStats, Rounding, Windows};
use shared::text::pack::Window;

/// Writes `out` (which must not exist) as a copy of `src`'s windows with the
/// losses `losses(shard, row_group, windows)` returns for each row group
/// (one per row, NaN at position 0), recorded as coming from `reference`.
/// `derived` goes into the manifest as it is (what the set was made from).
/// Only the first `max_windows` windows are kept (the others count as the
/// dropped tail). The directory appears whole or not at all.
pub fn write_derived(
    src: &ScoreSet,
    out: &Path,
    reference: ModelInfo,
    derived: serde_json::Value,
    max_windows: u64,
    mut losses: impl FnMut(usize, usize, &Windows) -> Result<Vec<f32>>,
) -> Result<Manifest> {
    if out.exists() {
        bail!("{} exists: choose a new --out directory", out.display());
    }
    let mut spec = src.manifest().job.clone();
    spec.scored = true;
    spec.reference_model = Some(reference);
    spec.format_version = FORMAT_VERSION; // a version-1 source gives a current set
    let job_id = spec.fingerprint();
    let t = spec.seq_len;
    let mut manifest = None;
    shared::util::atomic::write_dir(out, |tmp| {
        let mut shards = Vec::new();
        let mut stats = LossStats::default();
        let mut rounding: Option<Rounding> = None;
        let (mut windows, mut rows) = (Vec::new(), Vec::new());
        let mut groups = src.groups().peekable();
        while let Some(g) = groups.next() {
            let w = src.read_row_group(g.shard, g.row_group)?;
            let l = losses(g.shard, g.row_group, &w)
                .map_err(|e| shared::Error::Invalid(format!("{e:#}")))?;
            for (i, &seq_id) in w.seq_ids.iter().enumerate() {
                if seq_id >= max_windows {
                    break;
                }
                windows.push(Window {
                    seq_id,
                    tokens: w.tokens[i * t..(i + 1) * t].to_vec(),
                    doc_ids: w.doc_ids[i * t..(i + 1) * t].to_vec(),
                });
                rows.push(l[i * t + 1..(i + 1) * t].to_vec());
            }
            if groups.peek().is_some_and(|next| next.shard == g.shard) {
                continue; // the shard is written after its last row group
            }
            if windows.is_empty() {
                break; // every later window is past max_windows too
            }
            let s = g.shard;
            let file = shard_file_name(s);
            let path = tmp.join(&file);
            let info = write_shard(
                &path,
                &job_id,
                s,
                &spec.shard_layout(),
                &windows,
                Some(&rows),
            )?;
            stats.merge(&info.ref_loss);
            if let Some(r) = &info.rounding {
                rounding.get_or_insert_with(Rounding::default).merge(r);
            }
            shards.push(ShardEntry::describe(&path, &info)?);
            windows.clear();
            rows.clear();
        }
        for f in [
            VOCAB_FILE,
            DOCUMENTS_FILE,
            shared::model::checkpoint::TOKENIZER_FILE,
        ] {
            let from = src.side_file(f)?;
            std::fs::copy(&from, tmp.join(f)).map_err(|e| shared::Error::io(&from, e))?;
        }
        let num_windows: u64 = shards.iter().map(|e| e.windows as u64).sum();
        let cut = (src.num_windows() - num_windows) * t as u64;
        let m = Manifest {
            job: spec.clone(),
            job_fingerprint: job_id.clone(),
            num_windows,
            num_tokens: num_windows * t as u64,
            dropped_tail_tokens: src.manifest().dropped_tail_tokens + cut,
            shards,
            ref_loss: Some(LossSummary::from(&stats)),
            ref_loss_rounding: rounding,
            derived_from: Some(derived.clone()),
            created_by: format!("scorer {}", env!("CARGO_PKG_VERSION")),
            ..src.manifest().clone()
        };
        shared::util::atomic::write_plain(&tmp.join(JOB_FILE), to_json(&spec)?.as_bytes())?;
        shared::util::atomic::write_plain(&tmp.join(MANIFEST_FILE), to_json(&m)?.as_bytes())?;
        manifest = Some(m);
        Ok(())
    })
    .with_context(|| format!("writing {}", out.display()))?;
    manifest.context("no manifest written")
}

fn to_json(v: &impl serde::Serialize) -> shared::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| shared::Error::Invalid(e.to_string()))
}
