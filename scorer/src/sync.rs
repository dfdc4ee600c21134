//! `scorer sync SRC DST`: a score set copied between a directory and a
//! bucket prefix, either way. Resumable: files already at the destination
//! with the right size (and, for shards fetched to a directory, the
//! manifest's SHA-256) are kept; `manifest.json` is written last, so the
//! destination is a set only once it is complete. Verified by the
//! manifest's hashes: shards are hashed before an upload and as they are
//! downloaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shared::scores::format::MANIFEST_FILE;
use shared::scores::manifest::Manifest;
use shared::store::{is_store_url, Store};
use shared::util::progress::Progress;

/// `scorer sync`: copy a score set between a directory and a bucket.
#[derive(clap::Args)]
pub struct SyncArgs {
    /// The set to copy: a directory or a bucket URL (s3://, gs://, az://).
    pub src: PathBuf,
    /// Where it goes: a bucket URL when SRC is a directory, a directory when SRC is a URL.
    pub dst: PathBuf,
}

impl SyncArgs {
    pub fn run(&self) -> Result<()> {
        let url = |p: &Path| p.to_str().filter(|s| is_store_url(s)).map(str::to_string);
        match (url(&self.src), url(&self.dst)) {
            (None, Some(dst)) => upload(&self.src, &Store::open(&dst)?),
            (Some(src), None) => download(&Store::open(&src)?, &self.dst),
            (Some(_), Some(_)) => bail!("sync copies between a directory and a bucket: one of SRC and DST must be a local directory"),
            (None, None) => bail!("sync copies between a directory and a bucket: one of SRC and DST must be a bucket URL (s3://, gs://, az://)"),
        }
    }
}

/// Files of a set directory, manifest.json left out (it goes last).
fn set_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata()?;
        if md.is_file() && name != MANIFEST_FILE && !name.starts_with('.') {
            out.push((name, md.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses a destination that already holds another set.
fn check_same(existing: Option<Manifest>, ours: &Manifest, where_: &str) -> Result<bool> {
    match existing {
        None => Ok(false),
        Some(m) if m == *ours => Ok(true),
        Some(_) => bail!("{where_} already holds another score set (its manifest.json differs); choose another destination or delete it first"),
    }
}

fn upload(dir: &Path, store: &Store) -> Result<()> {
    let manifest = Manifest::load(dir)?;
    let remote: HashMap<String, u64> = store.list()?.into_iter().collect();
    let remote_manifest = match remote.contains_key(MANIFEST_FILE) {
        true => {
            let url = PathBuf::from(store.url_of(MANIFEST_FILE));
            Some(Manifest::parse(
                std::str::from_utf8(&store.get(MANIFEST_FILE)?)?,
                &url,
            )?)
        }
        false => None,
    };
    if check_same(remote_manifest, &manifest, store.url())? {
        shared::say!("{}: already holds this set, nothing to copy", store.url());
        return Ok(());
    }
    let hashes: HashMap<&str, &str> = manifest
        .shards
        .iter()
        .map(|s| (s.file.as_str(), s.sha256.as_str()))
        .collect();
    let files = set_files(dir)?;
    let todo: Vec<_> = files
        .iter()
        .filter(|(name, len)| remote.get(name) != Some(len))
        .collect();
    let bytes: u64 = todo.iter().map(|(_, l)| l).sum();
    shared::say!(
        "{} -> {}: {} file(s) of {} to upload ({:.1} MB), {} already there",
        dir.display(),
        store.url(),
        todo.len(),
        files.len(),
        bytes as f64 / 1e6,
        files.len() - todo.len()
    );
    let mut progress = Progress::new("uploading", "B", bytes);
    for (name, len) in todo {
        let path = dir.join(name);
        if let Some(want) = hashes.get(name.as_str()) {
            let got = shared::util::hash::hash_file(&path)?;
            if got != *want {
                bail!("{}: its SHA-256 is not the one manifest.json records: the local set is damaged; not uploading it", path.display());
            }
        }
        store.put_file(name, &path)?;
        progress.inc(*len);
    }
    progress.finish();
    // Every file in place with its size before the manifest makes it a set.
    let remote: HashMap<String, u64> = store.list()?.into_iter().collect();
    for (name, len) in &files {
        if remote.get(name) != Some(len) {
            bail!(
                "{}: not in the bucket with {len} bytes after the upload",
                store.url_of(name)
            );
        }
    }
    store.put_file(MANIFEST_FILE, &dir.join(MANIFEST_FILE))?;
    shared::say!(
        "{}: complete ({} shard(s))",
        store.url(),
        manifest.shards.len()
    );
    Ok(())
}

fn download(store: &Store, dir: &Path) -> Result<()> {
    let murl = PathBuf::from(store.url_of(MANIFEST_FILE));
    let remote: Vec<(String, u64)> = store.list()?;
    if !remote.iter().any(|(n, _)| n == MANIFEST_FILE) {
        bail!(
            "{}: missing: not a complete score set (nothing to sync)",
            murl.display()
        );
    }
    let text = store.get(MANIFEST_FILE)?;
    let manifest = Manifest::parse(std::str::from_utf8(&text)?, &murl)?;
    shared::util::location::local_output(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let local_manifest = dir.join(MANIFEST_FILE);
    let existing = match local_manifest.is_file() {
        true => Some(Manifest::load(dir)?),
        false => None,
    };
    check_same(existing, &manifest, &dir.display().to_string())?;
    let hashes: HashMap<&str, &str> = manifest
        .shards
        .iter()
        .map(|s| (s.file.as_str(), s.sha256.as_str()))
        .collect();
    let files: Vec<_> = remote
        .iter()
        .filter(|(n, _)| n != MANIFEST_FILE && !n.contains('/') && !n.starts_with('.'))
        .collect();
    let mut todo = Vec::new();
    for (name, len) in &files {
        let path = dir.join(name);
        let same_size = std::fs::metadata(&path).is_ok_and(|m| m.len() == *len);
        let intact = same_size
            && match hashes.get(name.as_str()) {
                Some(want) => shared::util::hash::hash_file(&path)? == *want,
                None => true,
            };
        if !intact {
            todo.push((name, *len));
        }
    }
    let bytes: u64 = todo.iter().map(|(_, l)| l).sum();
    shared::say!(
        "{} -> {}: {} file(s) of {} to download ({:.1} MB), {} already there",
        store.url(),
        dir.display(),
        todo.len(),
        files.len(),
        bytes as f64 / 1e6,
        files.len() - todo.len()
    );
    let mut progress = Progress::new("downloading", "B", bytes);
    for (name, _) in todo {
        let path = dir.join(name);
        let got = store.download(name, &path, |n| progress.inc(n))?;
        if let Some(want) = hashes.get(name.as_str()) {
            if got != *want {
                let _ = std::fs::remove_file(&path);
                bail!("{}: its SHA-256 is {}..., manifest.json records {}...: the object changed after it was written; not keeping it", store.url_of(name), &got[..12], &want[..12.min(want.len())]);
            }
        }
    }
    progress.finish();
    for s in &manifest.shards {
        if !dir.join(&s.file).is_file() {
            bail!(
                "{}: listed in manifest.json but not in the bucket",
                store.url_of(&s.file)
            );
        }
    }
    shared::util::atomic::write_file(&local_manifest, &text)?;
    shared::say!(
        "{}: complete ({} shard(s))",
        dir.display(),
        manifest.shards.len()
    );
    Ok(())
}
