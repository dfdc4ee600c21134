//! Reading a complete score set: the manifest, checked against its shards,
//! and windows by global index, decoded one row group at a time.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use std::sync::Arc;

use crate::scores::format::MANIFEST_FILE;
use crate::scores::manifest::{Differences, Manifest};
use crate::scores::shards::{ShardReader, Windows};
use crate::store::cache::Cache;

pub struct ScoreSet {
    /// The directory, or the bucket URL as a path (for messages).
    dir: PathBuf,
    /// Where the set lives when it is in a bucket, and its side files
    /// fetched so far.
    bucket: Option<Bucket>,
    manifest: Manifest,
    shards: Vec<ShardReader>,
    /// Global index of each shard's first window.
    shard_start: Vec<u64>,
}

/// A row group's place in a set and the windows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub shard: usize,
    pub row_group: usize,
    /// Windows in this row group (the last of a shard may hold fewer).
    pub windows: usize,
    /// Index, within its shard, of the row group's first window.
    pub first_window: usize,
}

impl Group {
    /// Row (token) index within the shard file of the group's token `i`.
    pub fn row(&self, seq_len: usize, i: usize) -> usize {
        self.first_window * seq_len + i
    }
}

/// Where a window lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub shard: usize,
    pub row_group: usize,
    pub offset: usize,
}

/// Refuses a shard whose size is not the manifest's.
fn check_size(path: &Path, len: u64, expected: u64) -> Result<()> {
    if len == expected {
        return Ok(());
    }
    Err(Error::shard(
        path,
        format!("{len} bytes, the manifest says {expected}: truncated or replaced"),
    ))
}

fn self_dir_manifest(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}/{MANIFEST_FILE}", dir.display()))
}

/// A set's bucket prefix and the temporary directory its side files are
/// fetched into (removed with the set).
struct Bucket {
    store: crate::store::Store,
    temp: PathBuf,
    fetched: std::sync::Mutex<()>,
}

impl Bucket {
    fn new(store: crate::store::Store) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = std::env::temp_dir().join(format!("rho1-set-{}-{n}", std::process::id()));
        Bucket {
            store,
            temp,
            fetched: std::sync::Mutex::new(()),
        }
    }

    fn fetch(&self, name: &str) -> Result<PathBuf> {
        let _one_at_a_time = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.temp.join(name);
        if path.is_file() {
            return Ok(path);
        }
        if self.store.size(name)?.is_none() {
            // As for a directory: the caller sees a path that does not exist.
            return Ok(path);
        }
        let bytes = self.store.get(name)?;
        std::fs::create_dir_all(&self.temp).map_err(|e| Error::io(&self.temp, e))?;
        crate::util::atomic::write_file(&path, &bytes)?;
        Ok(path)
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}

impl ScoreSet {
    /// Opens every shard (maps it, or in a bucket fetches its footer),
    /// parses and checks its footer against the manifest: size, window
    /// count, job. `dir` is a directory or a bucket URL (`s3://...`).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_cached(dir, None)
    }

    /// [`Self::open`]; a set in a bucket with a `cache` has its shards
    /// fetched whole into it (SHA-256 checked) as their rows are first read,
    /// and read from the local copy after, in this run and the next.
    pub fn open_cached(dir: &Path, cache: Option<Arc<Cache>>) -> Result<Self> {
        if let Some(url) = dir.to_str().filter(|s| crate::store::is_store_url(s)) {
            return Self::open_bucket(url, cache);
        }
        let manifest = Manifest::load(dir)?;
        let mut readers = Vec::with_capacity(manifest.shards.len());
        for entry in &manifest.shards {
            let path = dir.join(&entry.file);
            let len = std::fs::metadata(&path)
                .map_err(|_| Error::shard(&path, "listed in manifest.json but missing"))?
                .len();
            check_size(&path, len, entry.bytes)?;
            readers.push(ShardReader::open(&path)?);
        }
        Self::assemble(dir.to_path_buf(), None, manifest, readers)
    }

    /// A set under a bucket prefix: the manifest, one listing for the
    /// shards' sizes, and each shard's footer (fetched in parallel).
    fn open_bucket(url: &str, cache: Option<Arc<Cache>>) -> Result<Self> {
        use rayon::prelude::*;
        let store = crate::store::Store::open(url)?;
        let dir = PathBuf::from(store.url());
        let sizes: std::collections::HashMap<String, u64> = store.list()?.into_iter().collect();
        let manifest = Manifest::from_bucket(&store, &sizes)?;
        let readers = manifest
            .shards
            .par_iter()
            .map(|entry| {
                let url = PathBuf::from(store.url_of(&entry.file));
                let len = *sizes
                    .get(&entry.file)
                    .ok_or_else(|| Error::shard(&url, "listed in manifest.json but missing"))?;
                check_size(&url, len, entry.bytes)?;
                let cached = cache.clone().map(|c| (c, entry.sha256.clone()));
                ShardReader::open_remote(&store, &entry.file, len, cached)
            })
            .collect::<Result<Vec<_>>>()?;
        let bucket = Bucket::new(store);
        Self::assemble(dir, Some(bucket), manifest, readers)
    }

    /// The set from its manifest and opened shards, checked against each other.
    fn assemble(
        dir: PathBuf,
        bucket: Option<Bucket>,
        manifest: Manifest,
        readers: Vec<ShardReader>,
    ) -> Result<Self> {
        let job = manifest.job_fingerprint.clone();
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut shard_start = Vec::with_capacity(manifest.shards.len());
        let mut start = 0u64;
        for (entry, reader) in manifest.shards.iter().zip(readers) {
            let path = reader.path().to_path_buf();
            let info = reader.info();
            if info.job != job
                || info.windows != entry.windows
                || info.first_seq_id != entry.first_seq_id
            {
                return Err(Error::shard(
                    &path,
                    "does not match manifest.json (from another job?)",
                ));
            }
            if info.row_group_windows != manifest.job.row_group_windows
                || info.scored != manifest.job.scored
            {
                return Err(Error::shard(
                    &path,
                    "its layout (row groups, scored) does not match manifest.json",
                ));
            }
            if info.seq_len != manifest.job.seq_len {
                return Err(Error::shard(
                    &path,
                    format!(
                        "seq_len {}, the manifest says {}",
                        info.seq_len, manifest.job.seq_len
                    ),
                ));
            }
            shard_start.push(start);
            start += entry.windows as u64;
            shards.push(reader);
        }
        if start != manifest.num_windows {
            return Err(Error::shard(
                self_dir_manifest(&dir),
                format!(
                    "shards hold {start} windows, the manifest says {}",
                    manifest.num_windows
                ),
            ));
        }
        Ok(ScoreSet {
            dir,
            bucket,
            manifest,
            shards,
            shard_start,
        })
    }

    /// Refuses `other` unless it holds the same windows: corpus content,
    /// tokenizer, seq_len, shard layout and window count (e.g. the same
    /// corpus scored by another model).
    pub fn check_same_windows(&self, other: &ScoreSet) -> Result<()> {
        let d = self.window_differences(other);
        if d.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{} and {} do not hold the same windows: {}",
            self.dir.display(),
            other.dir.display(),
            d.join("; ")
        )))
    }

    /// What differs between the windows of two sets (corpus, tokenizer,
    /// seq_len, shard layout), as "field: this vs that".
    pub fn window_differences(&self, other: &ScoreSet) -> Vec<String> {
        let (x, y) = (&self.manifest.job, &other.manifest.job);
        let mut d = Differences::default();
        x.compare_layout(y, &mut d);
        d.field(
            "corpus (input SHA-256)",
            x.corpus_hashes(),
            y.corpus_hashes(),
        );
        d.field("windows", self.num_windows(), other.num_windows());
        d.versus()
    }

    /// Refuses `other` unless its windows can share a batch with this set's
    /// (same tokenizer and seq_len): several `--data` sets, or a held-out set.
    pub fn check_mixable(&self, other: &ScoreSet) -> Result<()> {
        let mut d = Differences::default();
        self.manifest
            .job
            .compare_mixable(&other.manifest.job, &mut d);
        if d.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{} and {} cannot be mixed: {}",
            self.dir.display(),
            other.dir.display(),
            d.lines("the first has", "the second has").join("; ")
        )))
    }

    /// The directory, or for a set in a bucket its URL (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the set is read from a bucket.
    pub fn is_remote(&self) -> bool {
        self.bucket.is_some()
    }

    /// A local path to the set's side file `name` (tokenizer.json,
    /// documents.parquet, ...): in its directory, or fetched once from the
    /// bucket into a temporary directory that lives as long as the set.
    pub fn side_file(&self, name: &str) -> Result<PathBuf> {
        match &self.bucket {
            None => Ok(self.dir.join(name)),
            Some(b) => b.fetch(name),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn seq_len(&self) -> usize {
        self.manifest.job.seq_len
    }

    pub fn num_windows(&self) -> u64 {
        self.manifest.num_windows
    }

    pub fn scored(&self) -> bool {
        self.manifest.job.scored
    }

    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }

    pub fn locate(&self, window: u64) -> Result<Location> {
        if window >= self.num_windows() {
            return Err(Error::Invalid(format!(
                "window {window} out of range ({} windows)",
                self.num_windows()
            )));
        }
        let shard = self.shard_start.partition_point(|&s| s <= window) - 1;
        let within = (window - self.shard_start[shard]) as usize;
        let rgw = self.manifest.job.row_group_windows;
        Ok(Location {
            shard,
            row_group: within / rgw,
            offset: within % rgw,
        })
    }

    /// Each shard's SHA-256 against the one manifest.json recorded when it
    /// was written: a flipped byte or a rewrite by another tool, which a
    /// size check and a readable footer do not show, is named. Shards are
    /// hashed in parallel; `hashed(bytes)` is called as each one is done.
    /// A set read from a bucket by range requests is not hashed here (that
    /// would download it whole): its sizes and footers were checked on open.
    pub fn check_hashes(&self, hashed: impl Fn(u64) + Sync) -> Result<()> {
        if self.is_remote() {
            return Ok(());
        }
        use rayon::prelude::*;
        let results: Vec<Result<()>> = self
            .manifest
            .shards
            .par_iter()
            .map(|entry| {
                let path = self.dir.join(&entry.file);
                let got = crate::util::hash::hash_file(&path)?;
                hashed(entry.bytes);
                if got == entry.sha256 {
                    return Ok(());
                }
                Err(Error::shard(
                    &path,
                    format!(
                        "its SHA-256 is {}..., manifest.json records {}...: the file changed after it was written (damaged, or rewritten by another tool); rescore it, or restore it from a copy",
                        &got[..12],
                        &entry.sha256[..12.min(entry.sha256.len())]
                    ),
                ))
            })
            .collect();
        results.into_iter().collect()
    }

    pub fn read_row_group(&self, shard: usize, row_group: usize) -> Result<Windows> {
        self.shards[shard].read_row_group(row_group)
    }

    /// Every row group of the set in order, with its window count: the one
    /// place that counts the windows of a row group.
    pub fn groups(&self) -> impl Iterator<Item = Group> + '_ {
        let rgw = self.manifest.job.row_group_windows;
        self.shards
            .iter()
            .enumerate()
            .flat_map(move |(shard, reader)| {
                let windows = reader.info().windows;
                (0..reader.num_row_groups()).map(move |row_group| Group {
                    shard,
                    row_group,
                    windows: (windows - row_group * rgw).min(rgw),
                    first_window: row_group * rgw,
                })
            })
    }

    /// Every row group of the set in order, decoded.
    pub fn row_groups(&self) -> impl Iterator<Item = Result<(Group, Windows)>> + '_ {
        self.groups()
            .map(|g| Ok((g, self.read_row_group(g.shard, g.row_group)?)))
    }

    /// Every window, in order (for evaluation and tests; memory grows with the set).
    pub fn read_all(&self) -> Result<Windows> {
        let mut all = Windows {
            seq_len: self.seq_len(),
            seq_ids: Vec::new(),
            tokens: Vec::new(),
            doc_ids: Vec::new(),
            ref_loss: self.scored().then(Vec::new),
        };
        for group in self.row_groups() {
            let (_, w) = group?;
            all.seq_ids.extend(w.seq_ids);
            all.tokens.extend(w.tokens);
            all.doc_ids.extend(w.doc_ids);
            if let (Some(a), Some(b)) = (all.ref_loss.as_mut(), w.ref_loss) {
                a.extend(b);
            }
        }
        Ok(all)
    }
}
