//! Training windows from one or more score sets, in a deterministic shuffled
//! order, read through the memory-mapped shards one row group at a time.
//!
//! The order is a seeded pseudo-random permutation per epoch that needs no
//! index array, so resident memory does not grow with the set; a cursor (the
//! number of windows consumed) is all the state a resumed run needs.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use shared::scores::scoreset::ScoreSet;
use shared::scores::shards::Windows;
use shared::util::progress::Progress;
use shared::util::rng::{Permutation, Rng};

/// `rows` windows of `seq_len` tokens.
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    /// (rows * seq_len) token ids.
    pub tokens: Vec<u32>,
    /// (rows * seq_len) document ids.
    pub doc_ids: Vec<u64>,
    /// (rows * seq_len) reference losses, NaN at position 0; None for pack-only sets.
    pub ref_loss: Option<Vec<f32>>,
}

pub struct TrainData {
    sets: Vec<ScoreSet>,
    /// Global index of each set's first window.
    starts: Vec<u64>,
    total: u64,
    seed: u64,
    epoch_perm: Option<(u64, Permutation)>,
    /// Recently decoded row groups: (set, shard, row group).
    cache: VecDeque<((usize, usize, usize), Arc<Windows>)>,
}

const CACHE_ROW_GROUPS: usize = 8;

impl TrainData {
    /// Opens the sets and checks that they agree (seq_len, tokenizer).
    pub fn open(dirs: &[PathBuf], seed: u64) -> Result<Self> {
        if dirs.is_empty() {
            bail!("no training data: give --data DIR (a score set written by `scorer pack` or `scorer score`)");
        }
        let mut sets: Vec<ScoreSet> = Vec::new();
        let mut starts = Vec::new();
        let mut total = 0;
        for d in dirs {
            let set = ScoreSet::open(d)?;
            if let Some(first) = sets.first() {
                first.check_mixable(&set)?;
            }
            starts.push(total);
            total += set.num_windows();
            sets.push(set);
        }
        Ok(TrainData {
            sets,
            starts,
            total,
            seed,
            epoch_perm: None,
            cache: VecDeque::new(),
        })
    }

    pub fn sets(&self) -> &[ScoreSet] {
        &self.sets
    }

    pub fn num_windows(&self) -> u64 {
        self.total
    }

    pub fn seq_len(&self) -> usize {
        self.sets[0].seq_len()
    }

    pub fn scored(&self) -> bool {
        self.sets.iter().all(|s| s.scored())
    }

    /// Decodes every row group once and checks what a step relies on: finite
    /// reference losses (when `need_ref`) and token ids below `vocab`.
    /// Errors name the shard and the row. Memory: one row group at a time.
    pub fn validate(&self, vocab: usize, need_ref: bool) -> Result<()> {
        let rows: u64 = self
            .sets
            .iter()
            .map(|s| s.num_windows() * s.seq_len() as u64)
            .sum();
        let mut progress = Progress::new("checking shards", "tok", rows);
        for set in &self.sets {
            if need_ref && !set.scored() {
                bail!("{}: a pack-only set has no ref_loss", set.dir().display());
            }
            for (s, shard) in set.shards().iter().enumerate() {
                let rgw = set.manifest().job.row_group_windows;
                for g in 0..shard.num_row_groups() {
                    let w = set.read_row_group(s, g)?; // checks ref_loss finiteness
                    if let Some(i) = w.tokens.iter().position(|&t| t as usize >= vocab) {
                        bail!(
                            "{}: row {}: token_id {} is outside the model's vocabulary ({vocab})",
                            shard.path().display(),
                            g * rgw * set.seq_len() + i,
                            w.tokens[i]
                        );
                    }
                    progress.inc(w.tokens.len() as u64);
                }
            }
        }
        progress.finish();
        Ok(())
    }

    /// (set, window) at global position `cursor` of the endless epoch sequence.
    fn window_at(&mut self, cursor: u64) -> (usize, u64) {
        let epoch = cursor / self.total;
        if self.epoch_perm.as_ref().map(|p| p.0) != Some(epoch) {
            let seed = Rng::derive(self.seed, &format!("epoch-{epoch}")).next_u64();
            self.epoch_perm = Some((epoch, Permutation::new(self.total, seed)));
        }
        let g = self
            .epoch_perm
            .as_ref()
            .map(|p| p.1.get(cursor % self.total))
            .unwrap_or(0);
        let set = self.starts.partition_point(|&s| s <= g) - 1;
        (set, g - self.starts[set])
    }

    fn row_group(&mut self, key: (usize, usize, usize)) -> Result<Arc<Windows>> {
        if let Some((_, w)) = self.cache.iter().find(|(k, _)| *k == key) {
            return Ok(w.clone());
        }
        let w = Arc::new(self.sets[key.0].read_row_group(key.1, key.2)?);
        if self.cache.len() == CACHE_ROW_GROUPS {
            self.cache.pop_front();
        }
        self.cache.push_back((key, w.clone()));
        Ok(w)
    }

    /// `rows` windows starting at `cursor`.
    pub fn batch(&mut self, cursor: u64, rows: usize) -> Result<Batch> {
        let t = self.seq_len();
        let scored = self.scored();
        let mut tokens = Vec::with_capacity(rows * t);
        let mut doc_ids = Vec::with_capacity(rows * t);
        let mut ref_loss = scored.then(|| Vec::with_capacity(rows * t));
        for i in 0..rows as u64 {
            let (set, window) = self.window_at(cursor + i);
            let loc = self.sets[set].locate(window)?;
            let group = self.row_group((set, loc.shard, loc.row_group))?;
            let span = loc.offset * t..(loc.offset + 1) * t;
            tokens.extend_from_slice(&group.tokens[span.clone()]);
            doc_ids.extend_from_slice(&group.doc_ids[span.clone()]);
            if let (Some(out), Some(src)) = (ref_loss.as_mut(), group.ref_loss.as_ref()) {
                out.extend_from_slice(&src[span]);
            }
        }
        Ok(Batch {
            rows,
            seq_len: t,
            tokens,
            doc_ids,
            ref_loss,
        })
    }
}

/// The tokenizer.json a score set carries (written by `scorer`).
pub fn tokenizer_of(set: &ScoreSet) -> Option<PathBuf> {
    let p = set.dir().join(shared::model::checkpoint::TOKENIZER_FILE);
    p.is_file().then_some(p)
}
