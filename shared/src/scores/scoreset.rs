//! Reading a complete score set: the manifest, checked against its shards,
//! and windows by global index, decoded one row group at a time.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::scores::manifest::{Differences, Manifest};
use crate::scores::shards::{ShardReader, Windows};

pub struct ScoreSet {
    dir: PathBuf,
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

impl ScoreSet {
    /// Opens every shard (maps it, parses and checks its footer against the
    /// manifest: size, window count, job).
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let job = manifest.job_fingerprint.clone();
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut shard_start = Vec::with_capacity(manifest.shards.len());
        let mut start = 0u64;
        for entry in &manifest.shards {
            let path = dir.join(&entry.file);
            let len = std::fs::metadata(&path)
                .map_err(|_| Error::shard(&path, "listed in manifest.json but missing"))?
                .len();
            if len != entry.bytes {
                return Err(Error::shard(
                    &path,
                    format!(
                        "{len} bytes, the manifest says {}: truncated or replaced",
                        entry.bytes
                    ),
                ));
            }
            let reader = ShardReader::open(&path)?;
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
                dir.join(crate::scores::format::MANIFEST_FILE),
                format!(
                    "shards hold {start} windows, the manifest says {}",
                    manifest.num_windows
                ),
            ));
        }
        Ok(ScoreSet {
            dir: dir.to_path_buf(),
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

    pub fn dir(&self) -> &Path {
        &self.dir
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
    pub fn check_hashes(&self, hashed: impl Fn(u64) + Sync) -> Result<()> {
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
