//! The bucket side of a job whose `--out` is a URL. The job runs as ever in
//! a local staging directory (`--stage`, default a directory under the
//! system's temporary one named by the URL); each shard, once written there,
//! is uploaded (one put, or a multipart upload completed last and aborted
//! on error: no partial object is ever visible), then its manifest entry is
//! written as `.parts/<shard>.json` beside it, and the local copy is
//! removed. A shard counts as done only when its entry exists, so a rerun
//! after a kill (on this machine or another) scores just what is missing.
//!
//! Parts of an array job write disjoint names; `job.json` is created with
//! the store's conditional put (created once, then compared), and so is
//! `manifest.json`, written by the part that finds every entry present: two
//! parts finishing together write identical bytes, and the second is told
//! the first did. Nothing relies on a rename, which buckets do not have.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use shared::scores::format::{JOB_FILE, MANIFEST_FILE};
use shared::scores::manifest::{JobSpec, ShardEntry};
use shared::scores::shards::{ShardInfo, ShardReader};
use shared::store::Store;

const ENTRIES: &str = ".parts";

pub struct RemoteOut {
    pub store: Store,
    pub stage: PathBuf,
}

impl RemoteOut {
    /// For a bucket URL `out`: the store and the staging directory.
    pub fn of(out: &Path, stage: Option<&Path>) -> Result<Option<Self>> {
        let Some(url) = out.to_str().filter(|s| shared::store::is_store_url(s)) else {
            return Ok(None);
        };
        let store = Store::open(url)?;
        let stage = match stage {
            Some(p) => p.to_path_buf(),
            None => std::env::temp_dir().join(format!(
                "rho1-stage-{}",
                &shared::util::hash::hash_bytes(store.url().as_bytes())[..16]
            )),
        };
        Ok(Some(RemoteOut { store, stage }))
    }

    /// Records the job in the bucket's `job.json` (a conditional create),
    /// or refuses a prefix that holds another job.
    pub fn claim(&self, spec: &JobSpec) -> Result<()> {
        let json = serde_json::to_string_pretty(spec)?;
        if self.store.put_new(JOB_FILE, Bytes::from(json))? {
            return Ok(());
        }
        let theirs = self.store.get(JOB_FILE)?;
        let old: JobSpec = serde_json::from_slice(&theirs)
            .with_context(|| format!("{}: malformed job file", self.store.url_of(JOB_FILE)))?;
        let diff = spec.differences(&old);
        if !diff.is_empty() {
            bail!(
                "{} holds a different job; refusing to mix them:\n  {}\nUse another --out prefix, or delete this one.",
                self.store.url(),
                diff.join("\n  ")
            );
        }
        Ok(())
    }

    /// The shards whose upload completed: name -> manifest entry.
    pub fn done(&self) -> Result<HashMap<String, ShardEntry>> {
        let objects: HashMap<String, u64> = self.store.list()?.into_iter().collect();
        let mut out = HashMap::new();
        for name in objects.keys() {
            let Some(file) = name
                .strip_prefix(ENTRIES)
                .and_then(|n| n.strip_prefix('/'))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let bytes = self.store.get(name)?;
            let entry: ShardEntry = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: malformed entry", self.store.url_of(name)))?;
            if objects.get(file) == Some(&entry.bytes) {
                out.insert(file.to_string(), entry);
            }
        }
        Ok(out)
    }

    /// Uploads the shard at `path` (written by this job), then its entry;
    /// removes the local copy.
    pub fn upload_shard(&self, path: &Path, info: &ShardInfo) -> Result<()> {
        let entry = ShardEntry::describe(path, info)?;
        self.store.put_file(&entry.file, path)?;
        let json = serde_json::to_vec_pretty(&entry)?;
        self.store
            .put(&format!("{ENTRIES}/{}.json", entry.file), Bytes::from(json))?;
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        Ok(())
    }

    /// Side files every part writes with the same bytes: uploaded when absent.
    pub fn upload_side(&self, names: &[&str]) -> Result<()> {
        for name in names {
            if self.store.size(name)?.is_none() {
                self.store.put_file(name, &self.stage.join(name))?;
            }
        }
        Ok(())
    }

    /// Each shard's footer (its job and loss statistics), fetched in parallel.
    pub fn shard_infos(&self, entries: &[ShardEntry]) -> Result<Vec<ShardInfo>> {
        use rayon::prelude::*;
        entries
            .par_iter()
            .map(|e| {
                let r = ShardReader::open_remote(&self.store, &e.file, e.bytes, None)?;
                Ok(r.info().clone())
            })
            .collect()
    }

    /// Writes `manifest.json` unless a part finishing at the same time did
    /// (then its bytes must be ours). The entries and the stage go after.
    pub fn publish(&self, manifest_json: &str) -> Result<()> {
        if !self
            .store
            .put_new(MANIFEST_FILE, Bytes::from(manifest_json.to_string()))?
        {
            let theirs = self.store.get(MANIFEST_FILE)?;
            if theirs != manifest_json.as_bytes() {
                bail!(
                    "{}: another process wrote a different manifest",
                    self.store.url_of(MANIFEST_FILE)
                );
            }
            shared::say!(
                "{}: already written (by another part or an earlier run), the same bytes",
                self.store.url_of(MANIFEST_FILE)
            );
        }
        Ok(())
    }
}
