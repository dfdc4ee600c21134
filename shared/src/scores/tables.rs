//! The side tables of a score set, for people reading it in DuckDB:
//! `vocab.parquet` (token_id, token, piece) and `documents.parquet`
//! (doc_id, source_file, record_index, original_id, token_count).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::text::pack::DocInfo;
use crate::text::tokenizer::Tokenizer;

fn write_batch(path: &Path, batch: RecordBatch) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| Error::Invalid(e.to_string()))?,
        ))
        .build();
    crate::util::atomic::write_with(path, |file| {
        let perr =
            |e: parquet::errors::ParquetError| Error::shard(path, format!("write failed: {e}"));
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(perr)?;
        w.write(&batch).map_err(perr)?;
        w.close().map_err(perr)?;
        Ok(())
    })
}

fn batch(fields: Vec<Field>, columns: Vec<arrow::array::ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// token_id, token (the vocabulary string), piece (the token decoded as text).
pub fn write_vocab(path: &Path, tok: &Tokenizer) -> Result<()> {
    let n = tok.vocab_size() as u32;
    let (raw, text): (Vec<String>, Vec<String>) = (0..n).map(|i| tok.piece(i)).unzip();
    write_batch(
        path,
        batch(
            vec![
                Field::new("token_id", DataType::UInt32, false),
                Field::new("token", DataType::Utf8, false),
                Field::new("piece", DataType::Utf8, false),
            ],
            vec![
                Arc::new(UInt32Array::from((0..n).collect::<Vec<_>>())),
                Arc::new(StringArray::from(raw)),
                Arc::new(StringArray::from(text)),
            ],
        )?,
    )
}

/// doc_id, source_file, record_index (0-based line or row), original_id, token_count.
pub fn write_documents(path: &Path, docs: &[DocInfo], files: &[PathBuf]) -> Result<()> {
    write_batch(
        path,
        batch(
            vec![
                Field::new("doc_id", DataType::UInt64, false),
                Field::new("source_file", DataType::Utf8, false),
                Field::new("record_index", DataType::UInt64, false),
                Field::new("original_id", DataType::Utf8, true),
                Field::new("token_count", DataType::UInt64, false),
            ],
            vec![
                Arc::new(UInt64Array::from(
                    docs.iter().map(|d| d.doc_id).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    docs.iter()
                        .map(|d| files[d.file_index].display().to_string())
                        .collect::<Vec<_>>(),
                )),
                Arc::new(UInt64Array::from(
                    docs.iter().map(|d| d.record).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    docs.iter()
                        .map(|d| d.original_id.clone())
                        .collect::<Vec<_>>(),
                )),
                Arc::new(UInt64Array::from(
                    docs.iter().map(|d| d.tokens).collect::<Vec<_>>(),
                )),
            ],
        )?,
    )
}

/// (doc_id, original_id) of every row of a `documents.parquet`.
pub fn read_document_ids(path: &Path) -> Result<Vec<(u64, Option<String>)>> {
    Ok(read_documents(path)?
        .into_iter()
        .map(|(id, _, orig)| (id, orig))
        .collect())
}

/// (doc_id, source_file, original_id) of every row of a `documents.parquet`.
pub fn read_documents(path: &Path) -> Result<Vec<(u64, String, Option<String>)>> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::shard(path, format!("not a readable documents table: {e}")))?;
    crate::util::parquet::check_chunk_ranges(builder.metadata(), file_len)
        .map_err(|e| Error::shard(path, format!("corrupt documents table: {e}")))?;
    let reader = builder
        .build()
        .map_err(|e| Error::shard(path, format!("not a readable documents table: {e}")))?;
    let mut out = Vec::new();
    let mut reader = reader;
    while let Some(batch) = crate::util::parquet::next_batch(&mut reader)
        .map_err(|e| Error::shard(path, format!("corrupt documents table: {e}")))?
    {
        let (Some(ids), Some(src), Some(orig)) = (
            batch.column_by_name("doc_id"),
            batch.column_by_name("source_file"),
            batch.column_by_name("original_id"),
        ) else {
            return Err(Error::shard(
                path,
                "no doc_id / source_file / original_id columns",
            ));
        };
        let src = src
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::shard(path, "source_file is not a string"))?;
        let ids = ids
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| Error::shard(path, "doc_id is not UInt64"))?;
        let orig = orig
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::shard(path, "original_id is not a string"))?;
        for i in 0..batch.num_rows() {
            out.push((
                ids.value(i),
                src.value(i).to_string(),
                (!orig.is_null(i)).then(|| orig.value(i).to_string()),
            ));
        }
    }
    Ok(out)
}
