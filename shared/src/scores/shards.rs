//! The token-row Parquet file of a score set: one row per token, zstd, row
//! groups of whole windows, and the shard's own description in the file's
//! key/value metadata (key [`SHARD_META_KEY`]).
//!
//! Columns (the public contract, queried from DuckDB):
//! `seq_id` UInt64, `pos` UInt32, `doc_id` UInt64, `token_id` UInt32,
//! `ref_loss` Float32 (or Float16 in a set scored with `--loss-dtype f16`),
//! null where nothing is predicted (pos 0, and every row of a pack-only set).
//! `ref_loss[t] = -ln p(token[t] | tokens[<t] of the window)`.
//!
//! Encodings (format version 2; version 1 used dictionary + PLAIN for all):
//! the sorted integer columns DELTA_BINARY_PACKED, token_id PLAIN, an f32
//! ref_loss BYTE_STREAM_SPLIT, an f16 one PLAIN (DuckDB refuses f16 with
//! BYTE_STREAM_SPLIT); no dictionaries. `bench/reader` measures them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float16Array, Float32Array, RecordBatch, UInt32Array, UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Float16Type, Float32Type, Schema, SchemaRef, UInt32Type, UInt64Type,
};
use half::f16;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scores::format::{FORMAT_VERSION, READABLE_VERSIONS, SHARD_META_KEY};
use crate::scores::source::Source;
use crate::store::cache::Cache;
use crate::store::Store;
use crate::text::pack::Window;

/// Refuses a format version this build cannot read (`what` names the file).
pub fn check_version(what: &Path, version: Option<u64>) -> Result<()> {
    match version {
        Some(v) if READABLE_VERSIONS.iter().any(|&r| r as u64 == v) => Ok(()),
        _ => Err(Error::shard(
            what,
            format!("unsupported format version {version:?}; this build reads versions {READABLE_VERSIONS:?}"),
        )),
    }
}

/// How `ref_loss` is stored. f32 keeps the scorer's value exactly; f16 halves
/// the column (its largest rounding error is recorded in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossDtype {
    #[default]
    F32,
    F16,
}

impl LossDtype {
    pub fn name(self) -> &'static str {
        match self {
            LossDtype::F32 => "f32",
            LossDtype::F16 => "f16",
        }
    }

    fn arrow(self) -> DataType {
        match self {
            LossDtype::F32 => DataType::Float32,
            LossDtype::F16 => DataType::Float16,
        }
    }

    /// The value a reader gets back for `x`.
    pub fn round(self, x: f32) -> f32 {
        match self {
            LossDtype::F32 => x,
            LossDtype::F16 => f16::from_f32(x).to_f32(),
        }
    }
}

impl std::str::FromStr for LossDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(LossDtype::F32),
            "f16" => Ok(LossDtype::F16),
            _ => Err(Error::Invalid(format!(
                "unknown ref_loss dtype {s:?}: use f32 or f16"
            ))),
        }
    }
}

impl std::fmt::Display for LossDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub fn token_schema(loss: LossDtype) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq_id", DataType::UInt64, false),
        Field::new("pos", DataType::UInt32, false),
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("ref_loss", loss.arrow(), true),
    ]))
}

/// How a shard's rows are laid out: window length, windows per row group,
/// the ref_loss type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLayout {
    pub seq_len: usize,
    pub row_group_windows: usize,
    pub loss_dtype: LossDtype,
}

/// The largest error that storing losses as f16 made, against the f32 values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rounding {
    pub max_abs_error: f64,
    pub max_rel_error: f64,
}

impl Rounding {
    fn add(&mut self, exact: f32, stored: f32) {
        let e = (stored as f64 - exact as f64).abs();
        self.max_abs_error = self.max_abs_error.max(e);
        if exact != 0.0 {
            self.max_rel_error = self.max_rel_error.max(e / (exact as f64).abs());
        }
    }

    pub fn merge(&mut self, o: &Rounding) {
        self.max_abs_error = self.max_abs_error.max(o.max_abs_error);
        self.max_rel_error = self.max_rel_error.max(o.max_rel_error);
    }
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
    /// Statistics of the values as stored (after f16 rounding).
    pub ref_loss: LossStats,
    /// The `ref_loss` column's type (version 1: always f32).
    #[serde(default)]
    pub loss_dtype: LossDtype,
    /// f16 only: the largest rounding error in this shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<Rounding>,
}

/// Writes one shard file atomically. `losses[w]` holds the `seq_len - 1`
/// losses of window `w` (positions 1..seq_len); `None` writes a pack-only shard.
pub fn write_shard(
    path: &Path,
    job: &str,
    shard: usize,
    layout: &ShardLayout,
    windows: &[Window],
    losses: Option<&[Vec<f32>]>,
) -> Result<ShardInfo> {
    let (seq_len, row_group_windows) = (layout.seq_len, layout.row_group_windows);
    let dtype = layout.loss_dtype;
    let mut stats = LossStats::default();
    let mut rounding = Rounding::default();
    if let Some(l) = losses {
        for w in l {
            for &x in w {
                let stored = dtype.round(x);
                stats.add(stored);
                rounding.add(x, stored);
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
        loss_dtype: dtype,
        rounding: (dtype == LossDtype::F16 && losses.is_some()).then_some(rounding),
    };
    let meta = serde_json::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    let props = writer_properties(dtype, meta)?;
    let schema = token_schema(dtype);
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

/// zstd 3, one row group per `flush`, and the per-column encodings of the
/// module header.
fn writer_properties(dtype: LossDtype, meta: String) -> Result<WriterProperties> {
    let col = |name: &str| ColumnPath::from(name);
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| Error::Invalid(e.to_string()))?,
        ))
        .set_max_row_group_row_count(None)
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(vec![KeyValue::new(SHARD_META_KEY.to_string(), meta)]));
    for name in ["seq_id", "pos", "doc_id"] {
        b = b.set_column_encoding(col(name), Encoding::DELTA_BINARY_PACKED);
    }
    b = b.set_column_encoding(col("token_id"), Encoding::PLAIN);
    let loss_encoding = match dtype {
        LossDtype::F32 => Encoding::BYTE_STREAM_SPLIT,
        LossDtype::F16 => Encoding::PLAIN,
    };
    Ok(b.set_column_encoding(col("ref_loss"), loss_encoding)
        .build())
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
    let loss: ArrayRef = match schema.field(4).data_type() {
        DataType::Float16 => Arc::new(Float16Array::from_iter(
            loss.into_iter().map(|x| x.map(f16::from_f32)),
        )),
        _ => Arc::new(Float32Array::from(loss)),
    };
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(seq)),
            Arc::new(UInt32Array::from(pos)),
            Arc::new(UInt64Array::from(doc)),
            Arc::new(UInt32Array::from(tok)),
            loss,
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

/// A shard, memory-mapped or in a bucket: the footer is parsed once, row
/// groups are decoded on demand (a remote one fetched by one range request).
pub struct ShardReader {
    path: PathBuf,
    source: Source,
    meta: ArrowReaderMetadata,
    info: ShardInfo,
}

impl ShardReader {
    /// A local shard file, memory-mapped.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_source(path, Source::map(path)?)
    }

    /// Object `name` of `len` bytes in `store` (messages name its URL),
    /// read by ranges, or with `cache` (the cache and the object's SHA-256)
    /// fetched whole into the cache at the first read of its rows.
    pub fn open_remote(
        store: &Store,
        name: &str,
        len: u64,
        cache: Option<(Arc<Cache>, String)>,
    ) -> Result<Self> {
        let url = PathBuf::from(store.url_of(name));
        Self::from_source(&url, Source::remote(store, name, len, cache)?)
    }

    fn from_source(path: &Path, source: Source) -> Result<Self> {
        let footer = source.footer()?;
        let meta = ArrowReaderMetadata::load(&footer, ArrowReaderOptions::new()).map_err(|e| {
            Error::shard(
                path,
                format!("not a readable Parquet shard (truncated or corrupt?): {e}"),
            )
        })?;
        crate::util::parquet::check_chunk_ranges(meta.metadata(), source.len())
            .map_err(|e| Error::shard(path, format!("corrupt footer: {e}")))?;
        // The schema first: a file that is not a token shard says so.
        let dtype = [LossDtype::F32, LossDtype::F16]
            .into_iter()
            .find(|&d| meta.schema().fields() == token_schema(d).fields())
            .ok_or_else(|| {
                Error::shard(
                    path,
                    format!(
                        "wrong schema: {}; found {:?}, expected {:?} (ref_loss Float32 or Float16)",
                        schema_differences(meta.schema()),
                        field_list(meta.schema()),
                        field_list(&token_schema(LossDtype::F32))
                    ),
                )
            })?;
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
        check_version(path, version.get("format_version").and_then(|v| v.as_u64()))?;
        let info: ShardInfo = serde_json::from_value(version)
            .map_err(|e| Error::shard(path, format!("bad {SHARD_META_KEY} metadata: {e}")))?;
        if info.loss_dtype != dtype || (info.format_version == 1 && dtype != LossDtype::F32) {
            return Err(Error::shard(
                path,
                format!(
                    "ref_loss is stored as {dtype}, but the metadata (format version {}) says {}",
                    info.format_version, info.loss_dtype
                ),
            ));
        }
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
            source,
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

    /// Lets the kernel drop the mapped pages of row group `g` from this
    /// process (they stay in the page cache; a later read maps them again).
    /// Reading a set once then costs memory for the row groups being read,
    /// not for every page of the set touched so far.
    pub fn release_row_group(&self, g: usize) {
        if let Some(r) = self.row_group_bytes(g) {
            self.source.release(r);
        }
    }

    /// The byte range of row group `g`'s column chunks (they are contiguous).
    fn row_group_bytes(&self, g: usize) -> Option<std::ops::Range<u64>> {
        let rg = self.meta.metadata().row_groups().get(g)?;
        let (mut start, mut end) = (u64::MAX, 0u64);
        for col in rg.columns() {
            let s = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset())
                .max(0) as u64;
            start = start.min(s);
            end = end.max(s + col.compressed_size().max(0) as u64);
        }
        (start < end).then_some(start..end)
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
        let span = match self.row_group_bytes(g) {
            Some(r) => self.source.range(r)?,
            None => self.source.range(0..0)?,
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(span, self.meta.clone())
            .with_row_groups(vec![g])
            .with_batch_size(1 << 20)
            .build()
            .map_err(|e| Error::shard(&self.path, format!("row group {g}: {e}")))?;
        let seq_len = self.info.seq_len;
        let rows = self.meta.metadata().row_group(g).num_rows().max(0) as usize;
        let mut out = Windows {
            seq_len,
            seq_ids: Vec::with_capacity(rows / seq_len),
            tokens: Vec::with_capacity(rows),
            doc_ids: Vec::with_capacity(rows),
            ref_loss: self.info.scored.then(|| Vec::with_capacity(rows)),
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
            let loss = LossColumn::of(batch.column(4).as_ref());
            let base = row - first_row; // rows of this group before the batch
            check_windows(pos.values(), seq.values(), base, seq_len, &mut out.seq_ids)
                .map_err(|(i, why)| err(row + i, why))?;
            out.tokens.extend_from_slice(tok.values());
            out.doc_ids.extend_from_slice(doc.values());
            if let Some(ref_loss) = out.ref_loss.as_mut() {
                loss.append_checked(base, seq_len, ref_loss)
                    .map_err(|(i, why)| err(row + i, why))?;
            }
            row += batch.num_rows();
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

/// The `ref_loss` column of a decoded batch, either type, read as f32.
enum LossColumn<'a> {
    F32(&'a arrow::array::PrimitiveArray<Float32Type>),
    F16(&'a arrow::array::PrimitiveArray<Float16Type>),
}

impl<'a> LossColumn<'a> {
    /// The schema was checked on open: the column is one of the two types.
    fn of(a: &'a dyn Array) -> Self {
        match a.data_type() {
            DataType::Float16 => LossColumn::F16(a.as_primitive()),
            _ => LossColumn::F32(a.as_primitive()),
        }
    }

    /// Appends the column as f32 with NaN at position 0 (`base`: the row
    /// within the group of the column's first value), refusing a null or
    /// non-finite loss where a prediction exists: (index, reason).
    fn append_checked(
        &self,
        base: usize,
        seq_len: usize,
        out: &mut Vec<f32>,
    ) -> std::result::Result<(), (usize, String)> {
        let start = out.len();
        let nulls = match self {
            LossColumn::F32(a) => {
                out.extend_from_slice(a.values());
                a.nulls()
            }
            LossColumn::F16(a) => {
                out.extend(a.values().iter().map(|x| x.to_f32()));
                a.nulls()
            }
        };
        let mut p = base % seq_len;
        for (i, x) in out[start..].iter_mut().enumerate() {
            if p == 0 {
                *x = f32::NAN;
            } else if nulls.is_some_and(|n| n.is_null(i)) {
                return Err((i, "ref_loss is null in a scored shard".into()));
            } else if !x.is_finite() {
                return Err((i, format!("ref_loss is {x}")));
            }
            p += 1;
            if p == seq_len {
                p = 0;
            }
        }
        Ok(())
    }
}

/// Positions run 0..seq_len in every window (`base`: the row within the
/// group of the first value) and a window has one seq_id; pushes each
/// window's seq_id. Errors: (index, reason).
fn check_windows(
    pos: &[u32],
    seq: &[u64],
    base: usize,
    seq_len: usize,
    seq_ids: &mut Vec<u64>,
) -> std::result::Result<(), (usize, String)> {
    let mut p = base % seq_len;
    for (i, (&at, &id)) in pos.iter().zip(seq).enumerate() {
        if at as usize != p {
            return Err((i, format!("pos {at} out of order")));
        }
        if p == 0 {
            seq_ids.push(id);
        } else if Some(&id) != seq_ids.last() {
            return Err((i, "a window is split".into()));
        }
        p += 1;
        if p == seq_len {
            p = 0;
        }
    }
    Ok(())
}

/// What differs from a token shard's schema, column by column: the types a
/// set rewritten by another tool gets (`ref_loss` as Float64, `token_id` as
/// Int64), with the cast that restores each.
fn schema_differences(found: &Schema) -> String {
    let want = token_schema(LossDtype::F32);
    let mut out = Vec::new();
    for w in want.fields() {
        match found.field_with_name(w.name()) {
            Err(_) => out.push(format!("no column {}", w.name())),
            Ok(f)
                if w.name() == "ref_loss"
                    && matches!(f.data_type(), DataType::Float32 | DataType::Float16) => {}
            Ok(f) if f.data_type() != w.data_type() => out.push(format!(
                "{} is {}, not {} (cast it back: CAST({} AS {}))",
                w.name(),
                f.data_type(),
                w.data_type(),
                w.name(),
                sql_type(w.data_type())
            )),
            Ok(_) => {}
        }
    }
    let extra: Vec<&str> = found
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| want.field_with_name(n).is_err())
        .collect();
    if !extra.is_empty() {
        out.push(format!("extra columns {extra:?}"));
    }
    let nullable: Vec<&str> = found
        .fields()
        .iter()
        .filter(|f| {
            f.is_nullable()
                && want
                    .field_with_name(f.name())
                    .is_ok_and(|w| !w.is_nullable())
        })
        .map(|f| f.name().as_str())
        .collect();
    if !nullable.is_empty() {
        out.push(format!(
            "columns {nullable:?} are nullable (a scorer shard's never are: rewritten by another tool?)"
        ));
    }
    if out.is_empty() {
        out.push("the columns are out of order".into());
    }
    out.join(", ")
}

/// The SQL (DuckDB) name of a shard column's type.
fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::UInt64 => "UBIGINT",
        DataType::UInt32 => "UINTEGER",
        _ => "FLOAT",
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
