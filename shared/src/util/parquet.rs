//! Parquet hygiene shared by every reader of untrusted Parquet files (corpus
//! inputs, shards, side tables): the footer's chunk offsets are checked before
//! anything is decoded, and decoding runs under [`crate::util::guard`].

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;

/// Every column chunk of every row group lies inside the file. The parquet
/// crate trusts these footer offsets and panics on negative ones (found by
/// `fuzz/` shard_reader), so readers check them before decoding anything.
pub fn check_chunk_ranges(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
) -> std::result::Result<(), String> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset());
            let (data, len) = (col.data_page_offset(), col.compressed_size());
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(s, l)| s.checked_add(l));
            if data < 0 || !matches!(end, Some(e) if e <= file_len) {
                return Err(format!(
                    "row group {g} column {c}: chunk at offset {start} of {len} bytes is outside the file ({file_len} bytes)"
                ));
            }
        }
    }
    Ok(())
}

/// The reader's next record batch. A decoder panic or a decode error comes
/// back as one message, for the caller to put the file and record around.
pub fn next_batch(
    reader: &mut ParquetRecordBatchReader,
) -> std::result::Result<Option<RecordBatch>, String> {
    match crate::util::guard::catch_decoder_panic(|| reader.next())? {
        None => Ok(None),
        Some(batch) => batch
            .map(Some)
            .map_err(|e| format!("unreadable Parquet data: {e}")),
    }
}
