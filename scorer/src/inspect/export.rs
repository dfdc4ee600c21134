//! `scorer export`: a selection as a loss mask any trainer can use. For a
//! ratio k, the kept tokens are the ceil(k * n) predicted tokens with the
//! lowest reference loss, or, with `--against SET` (the same windows scored
//! by the model being trained), the highest excess loss, against - ref. The
//! output holds the same rows plus a boolean `keep` column (false at pos 0),
//! and `export.json` with what was kept per source file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{BooleanArray, Float32Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use shared::scores::format::{shard_file_name, DOCUMENTS_FILE, VOCAB_FILE};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::Windows;
use shared::select::{kept, StreamCut};

pub const EXPORT_FILE: &str = "export.json";

/// Visits every row group of `set` (and the same one of `against`).
fn for_each_group(
    set: &ScoreSet,
    against: Option<&ScoreSet>,
    mut f: impl FnMut(usize, &Windows, Option<&Windows>) -> Result<()>,
) -> Result<()> {
    for group in set.row_groups() {
        let (g, w) = group?;
        let o = against
            .map(|a| a.read_row_group(g.shard, g.row_group))
            .transpose()?;
        if let Some(o) = &o {
            if o.tokens != w.tokens {
                bail!(
                    "shard {} row group {}: the token ids of the two sets differ",
                    g.shard,
                    g.row_group
                );
            }
        }
        f(g.shard, &w, o.as_ref())?;
    }
    Ok(())
}

/// Higher is kept: the excess loss (against - ref), or minus the reference
/// loss (the lowest reference loss kept).
fn scores(w: &Windows, o: Option<&Windows>) -> Vec<f32> {
    let r = w.ref_loss.as_deref().unwrap_or(&[]);
    match o.and_then(|o| o.ref_loss.as_deref()) {
        Some(live) => r.iter().zip(live).map(|(r, l)| l - r).collect(),
        None => r.iter().map(|r| -r).collect(),
    }
}

/// Pass 1 over the set: every predicted token's score, made into the cut
/// that keeps the top `kept(n, ratio)` of them in set order (the trainer's
/// top-k, `shared::select`). Returns it with n and k.
fn cut(set: &ScoreSet, other: Option<&ScoreSet>, ratio: f64) -> Result<(StreamCut, usize, usize)> {
    let mut values = Vec::new();
    for_each_group(set, other, |_, w, o| {
        values.extend(
            scores(w, o)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % w.seq_len != 0)
                .map(|(_, v)| v),
        );
        Ok(())
    })?;
    let n = values.len();
    let k = kept(n, ratio);
    Ok((StreamCut::new(values, k), n, k))
}

/// The export's columns: one row per token, `keep` the loss mask.
fn export_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("seq_id", DataType::UInt64, false),
        Field::new("pos", DataType::UInt32, false),
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("ref_loss", DataType::Float32, true),
        Field::new("keep", DataType::Boolean, false),
    ]))
}

/// One row group of the set as export rows.
fn export_batch(
    schema: &Arc<Schema>,
    w: &Windows,
    ref_loss: &[f32],
    keep: Vec<bool>,
) -> Result<RecordBatch> {
    let t = w.seq_len;
    let seq: Vec<u64> = w
        .seq_ids
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, t))
        .collect();
    let pos: Vec<u32> = (0..w.tokens.len()).map(|i| (i % t) as u32).collect();
    let loss: Vec<Option<f32>> = ref_loss
        .iter()
        .enumerate()
        .map(|(i, &x)| (i % t != 0).then_some(x))
        .collect();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(seq)),
            Arc::new(UInt32Array::from(pos)),
            Arc::new(UInt64Array::from(w.doc_ids.clone())),
            Arc::new(UInt32Array::from(w.tokens.clone())),
            Arc::new(Float32Array::from(loss)),
            Arc::new(BooleanArray::from(keep)),
        ],
    )?)
}

/// The source set's vocabulary, documents and tokenizer, beside the export.
fn copy_side_tables(set: &ScoreSet, tmp: &Path) -> shared::Result<()> {
    for f in [
        VOCAB_FILE,
        DOCUMENTS_FILE,
        shared::model::checkpoint::TOKENIZER_FILE,
    ] {
        let src = set.side_file(f)?;
        if src.is_file() {
            std::fs::copy(&src, tmp.join(f)).map_err(|e| shared::Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// `scorer export`: write a selection as a loss mask: the set's rows plus a
/// boolean `keep` column.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Scored set (reference losses).
    #[arg(long)]
    pub set: PathBuf,
    /// The same windows scored by the model being trained: rank by excess
    /// loss (this - reference), highest kept. Without it: lowest reference loss kept.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Fraction of predicted tokens kept, in (0, 1].
    #[arg(long, default_value_t = shared::select::DEFAULT_RATIO)]
    pub ratio: f64,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

impl ExportArgs {
    pub fn run(&self) -> Result<()> {
        run(&self.set, self.against.as_deref(), self.ratio, &self.out)
    }
}

pub fn run(set_dir: &Path, against: Option<&Path>, ratio: f64, out: &Path) -> Result<()> {
    shared::util::ratio::check_ratio("--ratio", ratio).map_err(anyhow::Error::msg)?;
    if out.exists() {
        bail!("{} exists: choose a new --out directory", out.display());
    }
    let set = ScoreSet::open(set_dir)?;
    if !set.scored() {
        bail!(
            "{}: a pack-only set has no ref_loss to rank by",
            set_dir.display()
        );
    }
    let other = against.map(ScoreSet::open).transpose()?;
    if let Some(o) = &other {
        set.check_same_windows(o)?;
    }
    let (mut cut, n, k) = cut(&set, other.as_ref(), ratio)?;

    let docs: HashMap<u64, String> =
        shared::scores::tables::read_documents(&set.side_file(DOCUMENTS_FILE)?)?
            .into_iter()
            .map(|(id, src, _)| (id, src))
            .collect();
    let mut per_source: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let schema = export_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    shared::util::atomic::write_dir(out, |tmp| {
        let mut writers: Vec<Option<ArrowWriter<std::fs::File>>> =
            (0..set.shards().len()).map(|_| None).collect();
        let res = for_each_group(&set, other.as_ref(), |s, w, o| {
            let t = w.seq_len;
            let vals = scores(w, o);
            let ref_loss = w.ref_loss.as_deref().unwrap_or(&[]);
            let mut keep = Vec::with_capacity(w.tokens.len());
            for (i, &v) in vals.iter().enumerate() {
                let kept = i % t != 0 && cut.keeps(v); // in set order, as pass 1 saw them
                if i % t != 0 {
                    let e = per_source
                        .entry(docs.get(&w.doc_ids[i]).cloned().unwrap_or_default())
                        .or_default();
                    e.0 += 1;
                    e.1 += kept as u64;
                }
                keep.push(kept);
            }
            let batch = export_batch(&schema, w, ref_loss, keep)?;
            if writers[s].is_none() {
                let path = tmp.join(shard_file_name(s));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                writers[s] = Some(ArrowWriter::try_new(
                    file,
                    schema.clone(),
                    Some(props.clone()),
                )?);
            }
            if let Some(wr) = writers[s].as_mut() {
                wr.write(&batch)?;
                wr.flush()?;
            }
            Ok(())
        });
        res.map_err(|e| shared::Error::Invalid(format!("{e:#}")))?;
        for wr in writers.into_iter().flatten() {
            wr.close()
                .map_err(|e| shared::Error::Invalid(e.to_string()))?;
        }
        copy_side_tables(&set, tmp)?;
        let summary = serde_json::json!({
            "source_set": set.dir().display().to_string(),
            "against": other.as_ref().map(|o| o.dir().display().to_string()),
            "rule": if other.is_some() { "top excess loss (against - ref)" } else { "lowest reference loss" },
            "ratio": ratio,
            "predicted_tokens": n,
            "kept": k,
            "per_source": per_source.iter().map(|(src, (tok, kept))| serde_json::json!({
                "source_file": src, "tokens": tok, "kept": kept, "kept_share": *kept as f64 / *tok as f64
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&summary)
            .map_err(|e| shared::Error::Invalid(e.to_string()))?;
        shared::util::atomic::write_plain(&tmp.join(EXPORT_FILE), text.as_bytes())
    })?;
    shared::say!(
        "kept {k} of {n} predicted tokens ({:.1}%) -> {}",
        100.0 * k as f64 / n as f64,
        out.display()
    );
    for (src, (tok, kept)) in &per_source {
        shared::say!(
            "  {src}: {:.1}% of {tok}",
            100.0 * *kept as f64 / *tok as f64
        );
    }
    Ok(())
}
