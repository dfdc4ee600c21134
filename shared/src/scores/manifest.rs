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
use crate::scores::shards::{LossStats, FORMAT_VERSION};
use crate::util::hash::hash_bytes;

pub const JOB_FILE: &str = "job.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const VOCAB_FILE: &str = "vocab.parquet";
pub const DOCUMENTS_FILE: &str = "documents.parquet";

pub fn shard_file_name(shard: usize) -> String {
    format!("part-{shard:05}.parquet")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub fingerprint: String,
    pub vocab_size: usize,
    pub eos_token: String,
    pub eos_token_id: u32,
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
    pub text_field: String,
    pub tokenizer: TokenizerInfo,
    pub reference_model: Option<ModelInfo>,
    pub inputs: Vec<InputFile>,
}

impl JobSpec {
    /// A fingerprint of the content-determining fields (paths excluded).
    pub fn fingerprint(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.get_mut("reference_model").and_then(|m| m.as_object_mut()) {
            m.remove("path");
        }
        if let Some(inputs) = v.get_mut("inputs").and_then(|i| i.as_array_mut()) {
            for i in inputs {
                if let Some(o) = i.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        hash_bytes(v.to_string().as_bytes())[..16].to_string()
    }

    /// Human-readable differences between `self` (this run) and `old` (on disk).
    pub fn differences(&self, old: &JobSpec) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |what: &str, new: String, was: String| {
            if new != was {
                d.push(format!(
                    "{what}: this run has {new}, the directory has {was}"
                ));
            }
        };
        cmp(
            "format version",
            self.format_version.to_string(),
            old.format_version.to_string(),
        );
        cmp("scored", self.scored.to_string(), old.scored.to_string());
        cmp("seq_len", self.seq_len.to_string(), old.seq_len.to_string());
        cmp(
            "windows per shard",
            self.shard_windows.to_string(),
            old.shard_windows.to_string(),
        );
        cmp(
            "windows per row group",
            self.row_group_windows.to_string(),
            old.row_group_windows.to_string(),
        );
        cmp(
            "text field",
            self.text_field.clone(),
            old.text_field.clone(),
        );
        cmp(
            "tokenizer",
            self.tokenizer.fingerprint.clone(),
            old.tokenizer.fingerprint.clone(),
        );
        cmp(
            "end-of-text token",
            self.tokenizer.eos_token.clone(),
            old.tokenizer.eos_token.clone(),
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
            cmp(
                "reference model",
                model(&self.reference_model),
                model(&old.reference_model),
            );
        }
        if let (Some(a), Some(b)) = (&self.reference_model, &old.reference_model) {
            cmp("compute dtype", a.dtype.clone(), b.dtype.clone());
            cmp("device", a.device.clone(), b.device.clone());
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
            cmp("inputs", inputs(&self.inputs), inputs(&old.inputs));
        }
        d
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
    /// Statistics of the non-null `ref_loss` values; null for a pack-only set.
    pub ref_loss: Option<LossSummary>,
    pub created_by: String,
    /// For a set made from other sets (`scorer combine`): the sources and
    /// how their losses were combined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<serde_json::Value>,
}

pub const FORMAT_NAME: &str = "rho1-score-set";

impl Manifest {
    /// Reads `DIR/manifest.json`, refusing other formats and versions.
    pub fn load(dir: &Path) -> Result<Self> {
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
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::shard(&path, format!("invalid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::shard(&path, format!("not a {FORMAT_NAME} manifest")));
        }
        let version = v.get("format_version").and_then(|f| f.as_u64());
        if version != Some(FORMAT_VERSION as u64) {
            return Err(Error::shard(
                &path,
                format!("unsupported format version {version:?}; this build reads version {FORMAT_VERSION}"),
            ));
        }
        serde_json::from_value(v)
            .map_err(|e| Error::shard(&path, format!("malformed manifest: {e}")))
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
