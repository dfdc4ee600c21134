//! Streaming corpus readers with bounded memory: JSON Lines (optionally zstd
//! compressed), Parquet with a text column, and plain text (one document per
//! file). Inputs are files, directories (searched recursively) and globs,
//! expanded in sorted order so that the document order is deterministic.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};

/// One document of the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub text: String,
    /// Index into the expanded input file list.
    pub file_index: usize,
    /// 0-based line (JSONL) or row (Parquet) of the record in its file.
    pub record: u64,
    /// The record's own `id` field, when it has one.
    pub original_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    JsonlZstd,
    Parquet,
    Text,
}

impl Format {
    /// How a log line names files of this format.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Jsonl => "JSON Lines",
            Format::JsonlZstd => "zstd JSON Lines",
            Format::Parquet => "Parquet",
            Format::Text => "plain text (one document each)",
        }
    }

    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".jsonl.zst")
            || name.ends_with(".json.zst")
            || name.ends_with(".ndjson.zst")
        {
            Some(Format::JsonlZstd)
        } else if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else if name.ends_with(".parquet") {
            Some(Format::Parquet)
        } else if name.ends_with(".txt") || name.ends_with(".md") || name.ends_with(".text") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

/// Why a file found in a directory or by a glob is not read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Its name starts with a dot (or a directory above it, below the input, does).
    Hidden,
    /// Its name has no corpus format's extension; carries the extension.
    NoFormat(String),
}

/// The corpus files that inputs name, and the files their directories and
/// globs held that are not read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, Skip)>,
}

impl Inputs {
    /// One line for the log: the files read, by format, and those skipped, by reason.
    pub fn describe(&self) -> String {
        let mut formats: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &self.files {
            *formats
                .entry(Format::of(f).map_or("?", Format::describe))
                .or_default() += 1;
        }
        let read: Vec<String> = formats.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut line = format!("corpus: {} file(s): {}", self.files.len(), read.join(", "));
        if !self.skipped.is_empty() {
            let mut why: std::collections::BTreeMap<String, usize> = Default::default();
            for (_, skip) in &self.skipped {
                let reason = match skip {
                    Skip::Hidden => "hidden".to_string(),
                    Skip::NoFormat(ext) => format!("{ext}: not a corpus format"),
                };
                *why.entry(reason).or_default() += 1;
            }
            let why: Vec<String> = why.iter().map(|(k, n)| format!("{n} {k}")).collect();
            line += &format!("; skipped {} ({})", self.skipped.len(), why.join(", "));
        }
        line
    }
}

/// What a found file contributes: its format, or why it is skipped. One rule
/// for directory walks, globs and named files (a named file that would be
/// skipped for its format is an error; a named hidden file is read, as asked).
fn classify(path: &Path) -> std::result::Result<Format, Skip> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with('.') {
        return Err(Skip::Hidden);
    }
    Format::of(path).ok_or_else(|| {
        let ext = name.rfind('.').map_or("no extension".to_string(), |i| {
            name[i..].to_ascii_lowercase()
        });
        Skip::NoFormat(ext)
    })
}

/// Expands files, directories and glob patterns into a list of corpus files.
/// Order: arguments as given; within a directory or glob, sorted by path.
/// Directories are searched recursively; hidden files and directories and
/// files of no corpus format are skipped and listed in [`Inputs::skipped`].
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Inputs> {
    let mut out = Inputs::default();
    for input in inputs {
        let s = input.to_string_lossy();
        let mut found = Vec::new();
        if input.is_dir() {
            walk(input, &mut found)?;
        } else if input.is_file() {
            if let Err(Skip::NoFormat(ext)) = classify(input) {
                return Err(Error::corpus(
                    input,
                    "file name",
                    format!("unknown corpus format ({ext}): {FORMATS}"),
                ));
            }
            out.files.push(input.clone());
            continue;
        } else if s.contains(['*', '?', '[']) {
            let paths =
                glob::glob(&s).map_err(|e| Error::Invalid(format!("bad glob {s:?}: {e}")))?;
            found.extend(paths.filter_map(|p| p.ok()).filter(|p| p.is_file()));
        } else {
            return Err(Error::io(
                input,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        found.sort();
        let before = out.files.len();
        for p in found {
            match classify(&p) {
                Ok(_) => out.files.push(p),
                Err(why) => out.skipped.push((p, why)),
            }
        }
        if out.files.len() == before {
            let what = if input.is_dir() { "directory" } else { "glob" };
            return Err(Error::Invalid(format!(
                "{what} {} holds no corpus files ({FORMATS}){}",
                input.display(),
                match out.skipped.len() {
                    0 => String::new(),
                    n => format!("; {n} other file(s) skipped"),
                }
            )));
        }
    }
    Ok(out)
}

/// The formats, as messages name them.
const FORMATS: &str = "expected .jsonl, .json, .ndjson (optionally .zst), .parquet, .txt or .md";

/// Every file below `dir`; hidden directories are not entered, their files
/// counted as hidden.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_dir() && !hidden {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

enum Source {
    Lines(Box<dyn BufRead + Send>),
    Parquet {
        reader: ParquetRecordBatchReader,
        /// The text column's name; columns are looked up by name in each batch.
        text_field: String,
        pending: std::vec::IntoIter<(String, Option<String>)>,
    },
    Text(Option<String>),
}

/// Reads the documents of many files in order. Empty documents are skipped
/// and counted in [`Corpus::skipped_empty`].
pub struct Corpus {
    files: Vec<PathBuf>,
    text_field: String,
    next_file: usize,
    current: Option<(usize, Source)>,
    record: u64,
    line: Vec<u8>,
    skipped_empty: u64,
    failed: bool,
}

impl Corpus {
    pub fn new(files: Vec<PathBuf>, text_field: &str) -> Self {
        Corpus {
            files,
            text_field: text_field.to_string(),
            next_file: 0,
            current: None,
            record: 0,
            line: Vec::new(),
            skipped_empty: 0,
            failed: false,
        }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn skipped_empty(&self) -> u64 {
        self.skipped_empty
    }

    fn open(&self, idx: usize) -> Result<Source> {
        let path = &self.files[idx];
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(match Format::of(path) {
            Some(Format::Jsonl) => Source::Lines(Box::new(BufReader::with_capacity(1 << 20, file))),
            Some(Format::JsonlZstd) => {
                let dec = zstd::stream::read::Decoder::new(file).map_err(|e| {
                    Error::corpus(path, "zstd stream", format!("cannot start decoding: {e}"))
                })?;
                Source::Lines(Box::new(BufReader::with_capacity(1 << 20, dec)))
            }
            Some(Format::Parquet) => open_parquet(path, file, &self.text_field)?,
            Some(Format::Text) => {
                let mut bytes = Vec::new();
                BufReader::new(file)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(path, e))?;
                let text = String::from_utf8(bytes).map_err(|e| {
                    Error::corpus(
                        path,
                        format!("byte {}", e.utf8_error().valid_up_to()),
                        "invalid UTF-8",
                    )
                })?;
                Source::Text(Some(text))
            }
            None => return Err(Error::corpus(path, "file name", "unknown corpus format")),
        })
    }

    /// The next document of the current file, or None at its end.
    fn next_in_file(&mut self, idx: usize) -> Result<Option<Document>> {
        let path = self.files[idx].clone();
        let text_field = self.text_field.clone();
        let Some((_, source)) = self.current.as_mut() else {
            return Ok(None);
        };
        match source {
            Source::Lines(reader) => {
                self.line.clear();
                let n = reader.read_until(b'\n', &mut self.line).map_err(|e| {
                    Error::corpus(
                        &path,
                        format!("line {}", self.record + 1),
                        format!("read failed (truncated or corrupt file?): {e}"),
                    )
                })?;
                if n == 0 {
                    return Ok(None);
                }
                let record = self.record;
                self.record += 1;
                let line = std::str::from_utf8(&self.line).map_err(|e| {
                    Error::corpus(
                        &path,
                        format!("line {}", record + 1),
                        format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                    )
                })?;
                let line = line.trim();
                if line.is_empty() {
                    return Ok(Some(Document {
                        text: String::new(),
                        file_index: idx,
                        record,
                        original_id: None,
                    }));
                }
                let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                    Error::corpus(
                        &path,
                        format!("line {}", record + 1),
                        format!("invalid JSON: {e}"),
                    )
                })?;
                let obj = value.as_object().ok_or_else(|| {
                    Error::corpus(
                        &path,
                        format!("line {}", record + 1),
                        "expected a JSON object",
                    )
                })?;
                let text = match obj.get(&text_field) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(Error::corpus(
                            &path,
                            format!("line {}", record + 1),
                            format!(
                                "field {text_field:?} is {}, expected a string",
                                json_kind(other)
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::corpus(
                            &path,
                            format!("line {}", record + 1),
                            format!("no field {text_field:?} (use --text-field to choose another)"),
                        ))
                    }
                };
                let original_id = match obj.get("id") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                Ok(Some(Document {
                    text,
                    file_index: idx,
                    record,
                    original_id,
                }))
            }
            Source::Parquet {
                reader,
                text_field,
                pending,
            } => loop {
                if let Some((text, original_id)) = pending.next() {
                    let record = self.record;
                    self.record += 1;
                    return Ok(Some(Document {
                        text,
                        file_index: idx,
                        record,
                        original_id,
                    }));
                }
                let next = crate::util::parquet::next_batch(reader)
                    .map_err(|e| Error::corpus(&path, format!("row {}", self.record), e))?;
                let Some(batch) = next else {
                    return Ok(None);
                };
                *pending = parquet_rows(&path, &batch, text_field, self.record)?.into_iter();
            },
            Source::Text(doc) => Ok(doc.take().map(|text| Document {
                text,
                file_index: idx,
                record: 0,
                original_id: None,
            })),
        }
    }

    fn next_doc(&mut self) -> Result<Option<Document>> {
        loop {
            if self.current.is_none() {
                if self.next_file >= self.files.len() {
                    return Ok(None);
                }
                let idx = self.next_file;
                self.next_file += 1;
                self.record = 0;
                self.current = Some((idx, self.open(idx)?));
            }
            let idx = self.current.as_ref().map(|c| c.0).unwrap_or(0);
            match self.next_in_file(idx)? {
                Some(doc) if doc.text.is_empty() => self.skipped_empty += 1,
                Some(doc) => return Ok(Some(doc)),
                None => self.current = None,
            }
        }
    }
}

impl Iterator for Corpus {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_doc() {
            Ok(Some(d)) => Some(Ok(d)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn open_parquet(path: &Path, file: File, text_field: &str) -> Result<Source> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::corpus(path, "footer", format!("not a readable Parquet file: {e}")))?;
    crate::util::parquet::check_chunk_ranges(builder.metadata(), file_len)
        .map_err(|e| Error::corpus(path, "footer", format!("corrupt Parquet footer: {e}")))?;
    let schema = builder.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let text_idx = schema.index_of(text_field).map_err(|_| {
        Error::corpus(
            path,
            "schema",
            format!(
                "no column {text_field:?} (columns: {}); use --text-field to choose another",
                names.join(", ")
            ),
        )
    })?;
    let text_type = schema.field(text_idx).data_type();
    if !matches!(
        text_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(Error::corpus(
            path,
            "schema",
            format!("column {text_field:?} is {text_type}, expected a string column"),
        ));
    }
    let mut roots = vec![text_idx];
    if let Ok(id_idx) = schema.index_of("id") {
        if id_idx != text_idx {
            roots.push(id_idx);
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(256)
        .build()
        .map_err(|e| Error::corpus(path, "footer", format!("not a readable Parquet file: {e}")))?;
    Ok(Source::Parquet {
        reader,
        text_field: text_field.to_string(),
        pending: Vec::new().into_iter(),
    })
}

/// The rows of one batch as (text, id). A projection returns its columns in
/// the file's order, not in the order asked, so both are found by name.
fn parquet_rows(
    path: &Path,
    batch: &arrow::record_batch::RecordBatch,
    text_field: &str,
    first_row: u64,
) -> Result<Vec<(String, Option<String>)>> {
    let text_col = batch.column_by_name(text_field).ok_or_else(|| {
        Error::corpus(
            path,
            format!("row {first_row}"),
            format!("no column {text_field:?} in the rows read"),
        )
    })?;
    let texts = string_values(text_col.as_ref());
    let id_col = (text_field != "id")
        .then(|| batch.column_by_name("id"))
        .flatten();
    let ids = id_col.map(|col| match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => string_values(col.as_ref()),
        _ => (0..col.len())
            .map(|i| {
                (!col.is_null(i)).then(|| {
                    arrow::util::display::array_value_to_string(col, i).unwrap_or_default()
                })
            })
            .collect(),
    });
    texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let text = t.ok_or_else(|| {
                Error::corpus(
                    path,
                    format!("row {}", first_row + i as u64),
                    "text is null",
                )
            })?;
            Ok((text, ids.as_ref().and_then(|ids| ids[i].clone())))
        })
        .collect()
}

fn string_values(col: &dyn Array) -> Vec<Option<String>> {
    let get = |i: usize, s: &str| (!col.is_null(i)).then(|| s.to_string());
    match col.data_type() {
        DataType::Utf8 => col
            .as_string::<i32>()
            .iter()
            .enumerate()
            .map(|(i, s)| s.and_then(|s| get(i, s)))
            .collect(),
        DataType::LargeUtf8 => col
            .as_string::<i64>()
            .iter()
            .enumerate()
            .map(|(i, s)| s.and_then(|s| get(i, s)))
            .collect(),
        DataType::Utf8View => col
            .as_string_view()
            .iter()
            .enumerate()
            .map(|(i, s)| s.and_then(|s| get(i, s)))
            .collect(),
        _ => vec![None; col.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    const TEXTS: [&str; 3] = ["first document", "second one", "the third"];

    fn strings(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    /// A Parquet file of the given columns, in the given order.
    fn write_parquet(name: &str, cols: Vec<(&str, ArrayRef)>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rho1-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.parquet"));
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    fn read(path: PathBuf, text_field: &str) -> Vec<(String, Option<String>)> {
        Corpus::new(vec![path], text_field)
            .map(|d| d.map(|d| (d.text, d.original_id)))
            .collect::<Result<_>>()
            .unwrap()
    }

    fn expect(ids: Option<[&str; 3]>) -> Vec<(String, Option<String>)> {
        (0..3)
            .map(|i| (TEXTS[i].to_string(), ids.map(|ids| ids[i].to_string())))
            .collect()
    }

    #[test]
    fn parquet_text_is_read_by_name_when_a_string_id_comes_first() {
        let p = write_parquet(
            "id_first",
            vec![("id", strings(&["a", "b", "c"])), ("text", strings(&TEXTS))],
        );
        assert_eq!(read(p, "text"), expect(Some(["a", "b", "c"])));
    }

    #[test]
    fn parquet_text_is_read_by_name_when_an_integer_id_comes_first() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![7, 8, 9]));
        let p = write_parquet("int_id_first", vec![("id", ids), ("text", strings(&TEXTS))]);
        assert_eq!(read(p, "text"), expect(Some(["7", "8", "9"])));
    }

    #[test]
    fn parquet_text_is_read_by_name_when_the_id_comes_after() {
        let p = write_parquet(
            "id_after",
            vec![("text", strings(&TEXTS)), ("id", strings(&["a", "b", "c"]))],
        );
        assert_eq!(read(p, "text"), expect(Some(["a", "b", "c"])));
    }

    #[test]
    fn parquet_text_without_an_id_column_has_no_ids() {
        let p = write_parquet("no_id", vec![("text", strings(&TEXTS))]);
        assert_eq!(read(p, "text"), expect(None));
    }

    #[test]
    fn parquet_wikipedia_layout_reads_the_text_column() {
        // The Hugging Face Wikipedia dumps: (id, url, title, text).
        let p = write_parquet(
            "wikipedia",
            vec![
                ("id", strings(&["12", "25", "39"])),
                ("url", strings(&["u1", "u2", "u3"])),
                ("title", strings(&["T1", "T2", "T3"])),
                ("text", strings(&TEXTS)),
            ],
        );
        assert_eq!(read(p, "text"), expect(Some(["12", "25", "39"])));
    }

    #[test]
    fn parquet_text_field_option_reads_the_named_column_among_others() {
        let p = write_parquet(
            "content",
            vec![
                ("title", strings(&["T1", "T2", "T3"])),
                ("id", strings(&["a", "b", "c"])),
                ("content", strings(&TEXTS)),
                ("text", strings(&["x", "y", "z"])),
            ],
        );
        assert_eq!(read(p, "content"), expect(Some(["a", "b", "c"])));
    }

    #[test]
    fn parquet_text_field_named_id_is_the_text_and_no_id() {
        let p = write_parquet(
            "text_is_id",
            vec![("n", strings(&["1", "2", "3"])), ("id", strings(&TEXTS))],
        );
        assert_eq!(read(p, "id"), expect(None));
    }
}
