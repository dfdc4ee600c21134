//! The token-row Parquet file of a score set: one row per token, zstd, row
//! groups of whole windows, and the shard's own description in the file's
//! key/value metadata (key [`SHARD_META_KEY`]).
//!
//! Columns (the public contract, queried from DuckDB):
//! `seq_id` UInt64, `pos` UInt32, `doc_id` UInt64, `token_id` UInt32,
//! `ref_loss` Float32, null where nothing is predicted (pos 0, and every row
//! of a pack-only set). `ref_loss[t] = -ln p(token[t] | tokens[<t] of the window)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::pack::Window;

/// Version of the shard and manifest layout. Readers refuse any other.
pub const FORMAT_VERSION: u32 = 1;
pub const SHARD_META_KEY: &str = "rho1.shard";

pub fn token_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq_id", DataType::UInt64, false),
        Field::new("pos", DataType::UInt32, false),
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("ref_loss", DataType::Float32, true),
    ]))
}

/// Running statistics of reference losses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: f64,
    pub max: f64,
    /// NaN or infinite values seen (not in the other fields). Always 0 in
    /// shards written by `scorer`; readers reject such rows by position.
    #[serde(default)]
    pub nonfinite: u64,
}

impl LossStats {
    pub fn add(&mut self, x: f32) {
        if !x.is_finite() {
            self.nonfinite += 1;
            return;
        }
        let x = x as f64;
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn merge(&mut self, o: &LossStats) {
        self.nonfinite += o.nonfinite;
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            let nonfinite = self.nonfinite;
            *self = *o;
            self.nonfinite = nonfinite;
            return;
        }
        self.count += o.count;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn std(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let m = self.mean();
        (self.sum_sq / self.count as f64 - m * m).max(0.0).sqrt()
    }
}

/// What a shard says about itself (Parquet key/value metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub format_version: u32,
    /// Fingerprint of the job that wrote it (see `manifest::JobSpec`).
    pub job: String,
    pub shard: usize,
    pub seq_len: usize,
    pub first_seq_id: u64,
    pub windows: usize,
    pub rows: u64,
    pub row_group_windows: usize,
    pub scored: bool,
    pub ref_loss: LossStats,
}

/// Writes one shard file atomically. `losses[w]` holds the `seq_len - 1`
/// losses of window `w` (positions 1..seq_len); `None` writes a pack-only shard.
pub fn write_shard(
    path: &Path,
    job: &str,
    shard: usize,
    seq_len: usize,
    row_group_windows: usize,
    windows: &[Window],
    losses: Option<&[Vec<f32>]>,
) -> Result<ShardInfo> {
    let mut stats = LossStats::default();
    if let Some(l) = losses {
        for w in l {
            for &x in w {
                stats.add(x);
            }
        }
    }
    let info = ShardInfo {
        format_version: FORMAT_VERSION,
        job: job.to_string(),
        shard,
        seq_len,
        first_seq_id: windows.first().map(|w| w.seq_id).unwrap_or(0),
        windows: windows.len(),
        rows: (windows.len() * seq_len) as u64,
        row_group_windows,
        scored: losses.is_some(),
        ref_loss: stats,
    };
    let meta = serde_json::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| Error::Invalid(e.to_string()))?,
        ))
        .set_max_row_group_row_count(None)
        .set_key_value_metadata(Some(vec![KeyValue::new(SHARD_META_KEY.to_string(), meta)]))
        .build();
    let schema = token_schema();
    crate::util::atomic::write_with(path, |file| {
        let perr =
            |e: parquet::errors::ParquetError| Error::shard(path, format!("write failed: {e}"));
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(perr)?;
        for (g, group) in windows.chunks(row_group_windows.max(1)).enumerate() {
            let first = g * row_group_windows.max(1);
            let group_losses = losses.map(|l| &l[first..first + group.len()]);
            let batch = window_batch(&schema, seq_len, group, group_losses)?;
            writer.write(&batch).map_err(perr)?;
            writer.flush().map_err(perr)?; // one row group per chunk of whole windows
        }
        writer.close().map_err(perr)?;
        Ok(())
    })?;
    Ok(info)
}

fn window_batch(
    schema: &SchemaRef,
    seq_len: usize,
    windows: &[Window],
    losses: Option<&[Vec<f32>]>,
) -> Result<RecordBatch> {
    let n = windows.len() * seq_len;
    let mut seq = Vec::with_capacity(n);
    let mut pos = Vec::with_capacity(n);
    let mut doc = Vec::with_capacity(n);
    let mut tok = Vec::with_capacity(n);
    let mut loss: Vec<Option<f32>> = Vec::with_capacity(n);
    for (w, win) in windows.iter().enumerate() {
        for p in 0..seq_len {
            seq.push(win.seq_id);
            pos.push(p as u32);
            doc.push(win.doc_ids[p]);
            tok.push(win.tokens[p]);
            loss.push(match losses {
                Some(l) if p > 0 => Some(l[w][p - 1]),
                _ => None,
            });
        }
    }
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(seq)),
            Arc::new(UInt32Array::from(pos)),
            Arc::new(UInt64Array::from(doc)),
            Arc::new(UInt32Array::from(tok)),
            Arc::new(Float32Array::from(loss)),
        ],
    )
    .map_err(|e| Error::Invalid(format!("building a record batch: {e}")))
}

/// Decoded windows of one row group.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub seq_len: usize,
    pub seq_ids: Vec<u64>,
    /// (windows * seq_len) token ids, window-major.
    pub tokens: Vec<u32>,
    /// (windows * seq_len) document ids.
    pub doc_ids: Vec<u64>,
    /// (windows * seq_len) reference losses; NaN at pos 0. None for pack-only.
    pub ref_loss: Option<Vec<f32>>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.seq_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq_ids.is_empty()
    }
}

/// A memory-mapped shard: the footer is parsed once, row groups are decoded
/// on demand.
pub struct ShardReader {
    path: PathBuf,
    bytes: bytes::Bytes,
    meta: ArrowReaderMetadata,
    info: ShardInfo,
}

/// Maps `path` read-only.
///
/// # Safety
/// The map is only sound while no one truncates or rewrites the file. Score
/// shards are immutable by contract: they are written under a temporary name
/// and renamed, never modified in place; a replaced shard keeps the old inode
/// alive for this map.
fn map_file(path: &Path) -> Result<bytes::Bytes> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::shard(path, "empty file (truncated shard?)"));
    }
    // SAFETY: see the function's documentation.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(bytes::Bytes::from_owner(map))
}

impl ShardReader {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = map_file(path)?;
        let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(|e| {
            Error::shard(
                path,
                format!("not a readable Parquet shard (truncated or corrupt?): {e}"),
            )
        })?;
        crate::util::parquet::check_chunk_ranges(meta.metadata(), bytes.len() as u64)
            .map_err(|e| Error::shard(path, format!("corrupt footer: {e}")))?;
        let expected = token_schema();
        if meta.schema().fields() != expected.fields() {
            return Err(Error::shard(
                path,
                format!(
                    "wrong schema: found {:?}, expected {:?}",
                    field_list(meta.schema()),
                    field_list(&expected)
                ),
            ));
        }
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == SHARD_META_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| {
                Error::shard(
                    path,
                    format!("no {SHARD_META_KEY} metadata: not written by scorer"),
                )
            })?;
        let version: serde_json::Value = serde_json::from_str(&kv)
            .map_err(|e| Error::shard(path, format!("bad {SHARD_META_KEY} metadata: {e}")))?;
        let v = version.get("format_version").and_then(|v| v.as_u64());
        if v != Some(FORMAT_VERSION as u64) {
            return Err(Error::shard(
                path,
                format!(
                    "unsupported format version {v:?}; this build reads version {FORMAT_VERSION}"
                ),
            ));
        }
        let info: ShardInfo = serde_json::from_value(version)
            .map_err(|e| Error::shard(path, format!("bad {SHARD_META_KEY} metadata: {e}")))?;
        let rows = meta.metadata().file_metadata().num_rows();
        if info.seq_len == 0
            || rows as u64 != info.rows
            || info.rows != (info.windows * info.seq_len) as u64
        {
            return Err(Error::shard(
                path,
                format!(
                    "{rows} rows, but the metadata says {} windows of {} ({} rows)",
                    info.windows, info.seq_len, info.rows
                ),
            ));
        }
        for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
            let expect = (info.windows - (g * info.row_group_windows).min(info.windows))
                .min(info.row_group_windows)
                * info.seq_len;
            if rg.num_rows() as usize != expect {
                return Err(Error::shard(
                    path,
                    format!(
                        "row group {g} has {} rows, expected {expect}",
                        rg.num_rows()
                    ),
                ));
            }
        }
        Ok(ShardReader {
            path: path.to_path_buf(),
            bytes,
            meta,
            info,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> &ShardInfo {
        &self.info
    }

    pub fn num_row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// Decodes row group `g` and checks it: positions in order, whole
    /// windows, finite reference losses where a prediction exists.
    pub fn read_row_group(&self, g: usize) -> Result<Windows> {
        let err =
            |row: usize, reason: String| Error::shard(&self.path, format!("row {row}: {reason}"));
        let first_row = g * self.info.row_group_windows * self.info.seq_len;
        if g >= self.num_row_groups() {
            return Err(Error::shard(&self.path, format!("no row group {g}")));
        }
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.bytes.clone(),
            self.meta.clone(),
        )
        .with_row_groups(vec![g])
        .with_batch_size(1 << 20)
        .build()
        .map_err(|e| Error::shard(&self.path, format!("row group {g}: {e}")))?;
        let seq_len = self.info.seq_len;
        let mut out = Windows {
            seq_len,
            seq_ids: Vec::new(),
            tokens: Vec::new(),
            doc_ids: Vec::new(),
            ref_loss: self.info.scored.then(Vec::new),
        };
        let mut row = first_row;
        let mut reader = reader;
        loop {
            let next = crate::util::parquet::next_batch(&mut reader).map_err(|e| {
                Error::shard(&self.path, format!("row group {g}: corrupt data: {e}"))
            })?;
            let Some(batch) = next else { break };
            let seq = batch.column(0).as_primitive::<UInt64Type>();
            let pos = batch.column(1).as_primitive::<UInt32Type>();
            let doc = batch.column(2).as_primitive::<UInt64Type>();
            let tok = batch.column(3).as_primitive::<UInt32Type>();
            let loss = batch.column(4).as_primitive::<Float32Type>();
            for i in 0..batch.num_rows() {
                let p = pos.value(i) as usize;
                if p != (row - first_row) % seq_len {
                    return Err(err(row, format!("pos {p} out of order")));
                }
                if p == 0 {
                    out.seq_ids.push(seq.value(i));
                } else if Some(&seq.value(i)) != out.seq_ids.last() {
                    return Err(err(row, "a window is split".into()));
                }
                out.tokens.push(tok.value(i));
                out.doc_ids.push(doc.value(i));
                if let Some(ref_loss) = out.ref_loss.as_mut() {
                    if p == 0 {
                        ref_loss.push(f32::NAN);
                    } else if loss.is_null(i) {
                        return Err(err(row, "ref_loss is null in a scored shard".into()));
                    } else {
                        let x = loss.value(i);
                        if !x.is_finite() {
                            return Err(err(row, format!("ref_loss is {x}")));
                        }
                        ref_loss.push(x);
                    }
                }
                row += 1;
            }
        }
        if !out.tokens.len().is_multiple_of(seq_len) {
            return Err(Error::shard(
                &self.path,
                format!("row group {g} ends inside a window"),
            ));
        }
        Ok(out)
    }
}

fn field_list(schema: &Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz findings (inputs under tests/fixtures/fuzz): each is refused with
    /// an error naming the file; none may panic.
    #[test]
    fn fuzz_findings_are_errors_not_panics() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fuzz");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().contains("shard_reader-") {
                continue;
            }
            seen += 1;
            // Like the fuzz target: every row group is read, errors or not.
            let outcome = std::panic::catch_unwind(|| match ShardReader::open(&path) {
                Err(e) => vec![e],
                Ok(r) => (0..r.num_row_groups())
                    .filter_map(|g| r.read_row_group(g).err())
                    .collect(),
            });
            let Ok(errors) = outcome else {
                panic!("{} made the reader panic", path.display())
            };
            assert!(!errors.is_empty(), "{} was accepted", path.display());
            for e in errors {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
            }
        }
        assert!(seen > 0, "no fuzz findings under {}", dir.display());
    }
}
