//! `scorer dynamics`: how each token's loss moves across checkpoints, as in
//! the RHO-1 paper's analysis. Input: score sets of the same windows, each
//! scored by one checkpoint, in training order. Per predicted token, a
//! least-squares line over the checkpoints' losses; dL = fitted end - fitted
//! start. dL < -t is H->L, dL > t is L->H, otherwise L->L when the final loss
//! is at most the mean final loss, else H->H.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use shared::scores::scoreset::ScoreSet;

pub const CATEGORIES: [&str; 4] = ["H->L", "L->H", "L->L", "H->H"];

/// Slope of the least-squares line through (0, y0), (1, y1), ...
pub fn slope(ys: &[f32]) -> f64 {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().map(|&y| y as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, &y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y as f64 - my);
        sxx += dx * dx;
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

pub fn category(dl: f64, final_loss: f32, mean_final: f64, t: f64) -> usize {
    if dl < -t {
        0
    } else if dl > t {
        1
    } else if final_loss as f64 <= mean_final {
        2
    } else {
        3
    }
}

/// `scorer dynamics`: token loss dynamics across checkpoints (H->L, L->H,
/// L->L, H->H), as in the RHO-1 paper.
#[derive(clap::Args)]
pub struct DynamicsArgs {
    /// Score sets of the same windows, one per checkpoint, in training order.
    #[arg(long, required = true, num_args = 2..)]
    pub sets: Vec<PathBuf>,
    /// Parquet file with one row per predicted token.
    #[arg(long)]
    pub out: PathBuf,
    /// |dL| above this is a transition (H->L or L->H).
    #[arg(long, default_value_t = 0.2)]
    pub threshold: f64,
}

impl DynamicsArgs {
    pub fn run(&self) -> Result<()> {
        run(&self.sets, &self.out, self.threshold)
    }
}

pub fn run(sets: &[PathBuf], out: &Path, threshold: f64) -> Result<()> {
    if sets.len() < 2 {
        bail!("give at least two score sets (one per checkpoint, in order)");
    }
    let opened = sets
        .iter()
        .map(|d| ScoreSet::open(d).with_context(|| format!("opening {}", d.display())))
        .collect::<Result<Vec<_>>>()?;
    let first = &opened[0];
    for o in &opened {
        if !o.scored() {
            bail!("{}: a pack-only set has no losses", o.dir().display());
        }
        first.check_same_windows(o)?;
    }
    let m = opened.len();
    let last = opened.last().map(|s| s.manifest()).context("no sets")?;
    let mean_final = last
        .ref_loss
        .as_ref()
        .map(|r| r.mean)
        .context("no loss statistics in the last set")?;
    let span = (m - 1) as f64;

    let mut fields = vec![
        Field::new("seq_id", DataType::UInt64, false),
        Field::new("pos", DataType::UInt32, false),
        Field::new("token_id", DataType::UInt32, false),
    ];
    fields.extend((0..m).map(|i| Field::new(format!("loss_{i}"), DataType::Float32, false)));
    fields.push(Field::new("slope", DataType::Float32, false));
    fields.push(Field::new("category", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut counts = [0u64; 4];
    shared::util::atomic::write_with(out, |file| {
        let inner = || -> Result<()> {
            let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
            for group in first.groups() {
                let (s, g) = (group.shard, group.row_group);
                let groups = opened
                    .iter()
                    .map(|o| o.read_row_group(s, g))
                    .collect::<shared::Result<Vec<_>>>()?;
                let base = &groups[0];
                if groups.iter().any(|x| x.tokens != base.tokens) {
                    bail!("shard {s} row group {g}: the sets' token ids differ");
                }
                let t = base.seq_len;
                let rows: Vec<usize> = (0..base.tokens.len()).filter(|i| i % t != 0).collect();
                let mut cols: Vec<ArrayRef> = vec![
                    Arc::new(UInt64Array::from(
                        rows.iter()
                            .map(|&i| base.seq_ids[i / t])
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(UInt32Array::from(
                        rows.iter().map(|&i| (i % t) as u32).collect::<Vec<_>>(),
                    )),
                    Arc::new(UInt32Array::from(
                        rows.iter().map(|&i| base.tokens[i]).collect::<Vec<_>>(),
                    )),
                ];
                let losses: Vec<&Vec<f32>> = groups
                    .iter()
                    .map(|x| x.ref_loss.as_ref().context("no losses"))
                    .collect::<Result<_>>()?;
                for l in &losses {
                    cols.push(Arc::new(Float32Array::from(
                        rows.iter().map(|&i| l[i]).collect::<Vec<_>>(),
                    )));
                }
                let mut slopes = Vec::with_capacity(rows.len());
                let mut cats = Vec::with_capacity(rows.len());
                for &i in &rows {
                    let ys: Vec<f32> = losses.iter().map(|l| l[i]).collect();
                    let b = slope(&ys);
                    let c = category(b * span, ys[m - 1], mean_final, threshold);
                    counts[c] += 1;
                    slopes.push(b as f32);
                    cats.push(CATEGORIES[c]);
                }
                cols.push(Arc::new(Float32Array::from(slopes)));
                cols.push(Arc::new(StringArray::from(cats)));
                w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
            }
            w.close()?;
            Ok(())
        };
        inner().map_err(|e| shared::Error::Invalid(format!("{e:#}")))
    })?;
    let total: u64 = counts.iter().sum();
    shared::out!("{:<6} {:>10} {:>8}", "type", "tokens", "share");
    for (c, n) in CATEGORIES.iter().zip(counts) {
        shared::out!(
            "{c:<6} {n:>10} {:>7.1}%",
            100.0 * n as f64 / total.max(1) as f64
        );
    }
    shared::say!(
        "wrote {} ({total} tokens, {m} checkpoints, threshold {threshold})",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_and_categories() {
        assert!((slope(&[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(slope(&[1.0, 1.0]).abs() < 1e-12);
        assert_eq!(category(-0.5, 1.0, 2.0, 0.2), 0);
        assert_eq!(category(0.5, 1.0, 2.0, 0.2), 1);
        assert_eq!(category(0.1, 1.0, 2.0, 0.2), 2);
        assert_eq!(category(0.1, 3.0, 2.0, 0.2), 3);
    }
}
