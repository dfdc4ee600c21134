//! `job.json` and `manifest.json` of a score set.
//!
//! `job.json` is written when a job starts: everything that determines the
//! set's content (format, seq_len, tokenizer, reference model, inputs, layout).
//! A rerun on the same directory must present the same spec, or is refused
//! with the fields that differ. `manifest.json` is written when the last shard
//! is complete: the spec plus counts, per-shard sizes and hashes, statistics.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scores::format::{FORMAT_NAME, JOB_FILE, MANIFEST_FILE};
use crate::scores::shards::{
    check_version, LossDtype, LossStats, Rounding, ShardInfo, ShardLayout,
};
use crate::util::hash::{hash_bytes, hash_file};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub fingerprint: String,
    pub vocab_size: usize,
    pub eos_token: String,
    pub eos_token_id: u32,
}

impl TokenizerInfo {
    pub fn of(t: &crate::text::tokenizer::Tokenizer) -> Self {
        TokenizerInfo {
            fingerprint: t.fingerprint().to_string(),
            vocab_size: t.vocab_size(),
            eos_token: t.eos_token().to_string(),
            eos_token_id: t.eos_id(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// SHA-256 over config.json and the weight files.
    pub fingerprint: String,
    /// Where it was read from (informational, not compared).
    pub path: String,
    pub vocab_size: usize,
    pub num_params: usize,
    /// The compute dtype of the forward pass (`--dtype`); losses are f32.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// `cpu` or `cuda`: every part of a job runs on the same kind.
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_dtype() -> String {
    "f32".into()
}

fn default_device() -> String {
    "cpu".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    /// As given (informational, not compared: a moved corpus is the same corpus).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl InputFile {
    pub fn describe(path: &Path) -> Result<Self> {
        let bytes = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        Ok(InputFile {
            path: path.display().to_string(),
            bytes,
            sha256: crate::util::hash::hash_file(path)?,
        })
    }
}

/// Everything that determines a score set's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub format_version: u32,
    /// Rows carry reference losses.
    pub scored: bool,
    pub seq_len: usize,
    /// Windows per shard file (the last shard may hold fewer).
    pub shard_windows: usize,
    /// Windows per Parquet row group.
    pub row_group_windows: usize,
    /// The `ref_loss` column's type (`scorer score --loss-dtype`).
    #[serde(default)]
    pub loss_dtype: LossDtype,
    pub text_field: String,
    pub tokenizer: TokenizerInfo,
    pub reference_model: Option<ModelInfo>,
    pub inputs: Vec<InputFile>,
}

/// What a job's fingerprint covers: a [`JobSpec`] without the paths its
/// model and inputs were read from (a moved corpus is the same corpus).
#[derive(Serialize)]
pub struct JobContent<'a> {
    format_version: u32,
    scored: bool,
    seq_len: usize,
    shard_windows: usize,
    row_group_windows: usize,
    loss_dtype: LossDtype,
    text_field: &'a str,
    tokenizer: &'a TokenizerInfo,
    reference_model: Option<ModelContent<'a>>,
    inputs: Vec<FileContent<'a>>,
}

/// A [`ModelInfo`] without its path.
#[derive(Serialize)]
struct ModelContent<'a> {
    fingerprint: &'a str,
    vocab_size: usize,
    num_params: usize,
    dtype: &'a str,
    device: &'a str,
}

/// An [`InputFile`] without its path.
#[derive(Serialize)]
struct FileContent<'a> {
    bytes: u64,
    sha256: &'a str,
}

impl JobSpec {
    /// A fingerprint of what determines the set's content: [`JobContent`],
    /// as JSON with sorted keys.
    pub fn fingerprint(&self) -> String {
        let v = serde_json::to_value(self.content()).unwrap_or_default();
        hash_bytes(v.to_string().as_bytes())[..16].to_string()
    }

    /// The spec without where its files were read from.
    pub fn content(&self) -> JobContent<'_> {
        JobContent {
            format_version: self.format_version,
            scored: self.scored,
            seq_len: self.seq_len,
            shard_windows: self.shard_windows,
            row_group_windows: self.row_group_windows,
            loss_dtype: self.loss_dtype,
            text_field: &self.text_field,
            tokenizer: &self.tokenizer,
            reference_model: self.reference_model.as_ref().map(|m| ModelContent {
                fingerprint: &m.fingerprint,
                vocab_size: m.vocab_size,
                num_params: m.num_params,
                dtype: &m.dtype,
                device: &m.device,
            }),
            inputs: self
                .inputs
                .iter()
                .map(|i| FileContent {
                    bytes: i.bytes,
                    sha256: &i.sha256,
                })
                .collect(),
        }
    }

    /// Human-readable differences between `self` (this run) and `old` (on disk).
    pub fn differences(&self, old: &JobSpec) -> Vec<String> {
        let mut d = Differences::default();
        d.field("format version", self.format_version, old.format_version);
        d.field("scored", self.scored, old.scored);
        d.field("ref_loss dtype", self.loss_dtype, old.loss_dtype);
        self.compare_layout(old, &mut d);
        d.field("text field", &self.text_field, &old.text_field);
        d.field(
            "end-of-text token",
            &self.tokenizer.eos_token,
            &old.tokenizer.eos_token,
        );
        let model = |m: &Option<ModelInfo>| {
            m.as_ref()
                .map(|m| {
                    format!(
                        "model {} ({})",
                        &m.fingerprint[..12.min(m.fingerprint.len())],
                        m.path
                    )
                })
                .unwrap_or_else(|| "no model".into())
        };
        if self.reference_model.as_ref().map(|m| &m.fingerprint)
            != old.reference_model.as_ref().map(|m| &m.fingerprint)
        {
            d.field(
                "reference model",
                model(&self.reference_model),
                model(&old.reference_model),
            );
        }
        if let (Some(a), Some(b)) = (&self.reference_model, &old.reference_model) {
            d.field("compute dtype", &a.dtype, &b.dtype);
            d.field("device", &a.device, &b.device);
        }
        let inputs = |i: &[InputFile]| {
            i.iter()
                .map(|f| {
                    format!(
                        "{} ({} bytes, {})",
                        f.path,
                        f.bytes,
                        &f.sha256[..12.min(f.sha256.len())]
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let content = |i: &[InputFile]| i.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>();
        if content(&self.inputs) != content(&old.inputs) {
            d.field("inputs", inputs(&self.inputs), inputs(&old.inputs));
        }
        d.lines("this run has", "the directory has")
    }

    /// What decides whether two sets' windows can share a batch: the
    /// tokenizer and seq_len.
    pub fn compare_mixable(&self, other: &JobSpec, d: &mut Differences) {
        d.field(
            "tokenizer",
            &self.tokenizer.fingerprint,
            &other.tokenizer.fingerprint,
        );
        d.field("seq_len", self.seq_len, other.seq_len);
    }

    /// The above and the shard layout: with the same corpus, the same windows
    /// in the same row groups.
    pub fn compare_layout(&self, other: &JobSpec, d: &mut Differences) {
        self.compare_mixable(other, d);
        d.field("windows per shard", self.shard_windows, other.shard_windows);
        d.field(
            "windows per row group",
            self.row_group_windows,
            other.row_group_windows,
        );
    }

    /// How this job's shards lay out their rows.
    pub fn shard_layout(&self) -> ShardLayout {
        ShardLayout {
            seq_len: self.seq_len,
            row_group_windows: self.row_group_windows,
            loss_dtype: self.loss_dtype,
        }
    }

    /// The inputs' content hashes, shortened, in order.
    pub fn corpus_hashes(&self) -> String {
        let short = |h: &String| h[..12.min(h.len())].to_string();
        let hashes: Vec<String> = self.inputs.iter().map(|i| short(&i.sha256)).collect();
        hashes.join(",")
    }
}

/// Field-by-field differences between two descriptions (job specs, score
/// sets), collected once and worded by the caller.
#[derive(Debug, Default)]
pub struct Differences(Vec<(String, String, String)>);

impl Differences {
    pub fn field(&mut self, what: &str, a: impl ToString, b: impl ToString) {
        let (a, b) = (a.to_string(), b.to_string());
        if a != b {
            self.0.push((what.to_string(), a, b));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `what: <a_says> A, <b_says> B` per field.
    pub fn lines(&self, a_says: &str, b_says: &str) -> Vec<String> {
        let line =
            |(w, a, b): &(String, String, String)| format!("{w}: {a_says} {a}, {b_says} {b}");
        self.0.iter().map(line).collect()
    }

    /// `what: A vs B` per field.
    pub fn versus(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(w, a, b)| format!("{w}: {a} vs {b}"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub first_seq_id: u64,
    pub windows: usize,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl ShardEntry {
    /// The entry of a shard file just written or checked: its name, what its
    /// metadata says, its size and SHA-256.
    pub fn describe(path: &Path, info: &ShardInfo) -> Result<Self> {
        Ok(ShardEntry {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            first_seq_id: info.first_seq_id,
            windows: info.windows,
            rows: info.rows,
            bytes: std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len(),
            sha256: hash_file(path)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSummary {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl From<&LossStats> for LossSummary {
    fn from(s: &LossStats) -> Self {
        LossSummary {
            count: s.count,
            mean: s.mean(),
            std: s.std(),
            min: s.min,
            max: s.max,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    #[serde(flatten)]
    pub job: JobSpec,
    pub job_fingerprint: String,
    pub num_windows: u64,
    /// Token rows (num_windows * seq_len).
    pub num_tokens: u64,
    pub num_documents: u64,
    pub skipped_empty_documents: u64,
    /// Tokens after the last full window, not in the set.
    pub dropped_tail_tokens: u64,
    pub shards: Vec<ShardEntry>,
    /// Statistics of the non-null `ref_loss` values as stored; null for a
    /// pack-only set.
    pub ref_loss: Option<LossSummary>,
    /// An f16 set: the largest difference between a stored value and the f32
    /// loss the scorer computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_loss_rounding: Option<Rounding>,
    pub created_by: String,
    /// For a set made from other sets (`scorer combine`): the sources and
    /// how their losses were combined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<serde_json::Value>,
}

impl Manifest {
    /// Reads `DIR/manifest.json` (DIR may be a bucket URL), refusing other
    /// formats and versions.
    pub fn load(dir: &Path) -> Result<Self> {
        if let Some(url) = dir.to_str().filter(|s| crate::store::is_store_url(s)) {
            let store = crate::store::Store::open(url)?;
            let names = store.list()?.into_iter().collect();
            return Self::from_bucket(&store, &names);
        }
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            let hint = if dir.join(JOB_FILE).is_file() {
                "the job has not finished (rerun the same scorer command to complete it)"
            } else {
                "not a score set directory"
            };
            return Err(Error::shard(&path, format!("missing: {hint}")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text, &path)
    }

    /// The manifest under a bucket prefix whose listing (name -> size) is
    /// `names`; a missing one says why (unfinished job, empty prefix).
    pub fn from_bucket(
        store: &crate::store::Store,
        names: &std::collections::HashMap<String, u64>,
    ) -> Result<Self> {
        let path = PathBuf::from(store.url_of(MANIFEST_FILE));
        if !names.contains_key(MANIFEST_FILE) {
            let hint = if names.contains_key(JOB_FILE) {
                "the job has not finished (rerun the same scorer command to complete it)"
            } else if names.is_empty() {
                "nothing under this prefix (wrong URL?)"
            } else {
                "not a score set"
            };
            return Err(Error::shard(&path, format!("missing: {hint}")));
        }
        let bytes = store.get(MANIFEST_FILE)?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| Error::shard(&path, "not UTF-8 text"))?;
        Self::parse(text, &path)
    }

    /// The manifest in `text`, read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::shard(path, format!("invalid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::shard(path, format!("not a {FORMAT_NAME} manifest")));
        }
        check_version(path, v.get("format_version").and_then(|f| f.as_u64()))?;
        serde_json::from_value(v)
            .map_err(|e| Error::shard(path, format!("malformed manifest: {e}")))
    }

    pub fn shard_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.shards.iter().map(|s| dir.join(&s.file)).collect()
    }
}

pub fn load_job(dir: &Path) -> Result<Option<JobSpec>> {
    let path = dir.join(JOB_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::shard(
            &path,
            format!("malformed job file (from another version?): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model_path: &str, input_path: &str) -> JobSpec {
        JobSpec {
            format_version: 3,
            scored: true,
            seq_len: 256,
            shard_windows: 64,
            row_group_windows: 16,
            loss_dtype: LossDtype::F32,
            text_field: "text".into(),
            tokenizer: TokenizerInfo {
                fingerprint: "abc".into(),
                vocab_size: 4096,
                eos_token: "<|endoftext|>".into(),
                eos_token_id: 0,
            },
            reference_model: Some(ModelInfo {
                fingerprint: "def".into(),
                path: model_path.into(),
                vocab_size: 4096,
                num_params: 123,
                dtype: "f32".into(),
                device: "cpu".into(),
            }),
            inputs: vec![InputFile {
                path: input_path.into(),
                bytes: 10,
                sha256: "0123".into(),
            }],
        }
    }

    /// Paths do not change a fingerprint; content does. And the typed
    /// content hashes to what the spec with its paths deleted did before it
    /// (the fingerprints of sets already written still match).
    #[test]
    fn fingerprint_covers_content_not_paths() {
        let a = spec("runs/ref/final", "data/a.jsonl");
        let b = spec("/elsewhere/ref", "/mnt/a.jsonl");
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.inputs[0].sha256 = "4567".into();
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.reference_model.as_mut().unwrap().dtype = "bf16".into();
        assert_ne!(a.fingerprint(), d.fingerprint());

        let mut v = serde_json::to_value(&a).unwrap();
        v["reference_model"].as_object_mut().unwrap().remove("path");
        v["inputs"][0].as_object_mut().unwrap().remove("path");
        assert_eq!(
            a.fingerprint(),
            hash_bytes(v.to_string().as_bytes())[..16].to_string()
        );
    }
}
