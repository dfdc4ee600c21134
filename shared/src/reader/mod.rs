//! The training reader: windows from one or more score sets, in a
//! deterministic shuffled order ([`order`]: row groups permuted per epoch,
//! then windows within buffers of [`BUFFER_ROW_GROUPS`] row groups), decoded
//! ahead of the step by background threads ([`prefetch`]): each row group
//! once per epoch, memory two buffers whatever the set's size. The cursor
//! (windows consumed) is all the state a resumed run needs. The trainer and
//! any other reader of the same sets (the Python package) read through it,
//! so they read the same windows in the same order.

pub mod order; // which window a cursor reads: a pure function of seed, epoch and cursor
pub mod prefetch; // background threads decoding the buffer being read and the next

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::scores::scoreset::ScoreSet;
use crate::store::cache::Cache;
use crate::util::rng::Rng;
use order::{EpochOrder, Group};
use prefetch::Prefetcher;

/// Row groups whose windows are shuffled together (the scorer's default
/// 65,536-token row groups: 256 windows of 256 each, 2,048 windows per buffer).
pub const BUFFER_ROW_GROUPS: usize = 8;

/// `rows` windows of `seq_len` tokens.
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    /// (rows) each window's index in the sets read, concatenated in the
    /// order given (within a set: shard by shard, row by row).
    pub windows: Vec<u64>,
    /// (rows * seq_len) token ids.
    pub tokens: Vec<u32>,
    /// (rows * seq_len) document ids.
    pub doc_ids: Vec<u64>,
    /// (rows * seq_len) reference losses, NaN at position 0; None for pack-only sets.
    pub ref_loss: Option<Vec<f32>>,
}

pub struct Reader {
    sets: Arc<Vec<ScoreSet>>,
    order: EpochOrder,
    /// Index of each row group's first window ([`Batch::windows`]).
    group_start: Vec<u64>,
    prefetch: Prefetcher,
    /// Time spent waiting for the prefetcher since the last [`Self::take_wait`].
    waited: Duration,
    rows_used: u64,
}

impl Reader {
    /// Opens the sets and checks that they agree (seq_len, tokenizer); one
    /// thread decodes ahead. `seed` is the run's (`trainer train --seed`):
    /// the order's own stream is derived from it, so every reader given the
    /// same seed reads the same order.
    pub fn open(dirs: &[PathBuf], seed: u64) -> Result<Self> {
        Self::open_with(dirs, seed, 1, None)
    }

    /// [`Self::open`] with `read_threads` decoding threads (for a set in a
    /// bucket: range requests in flight), and shards of sets in a bucket
    /// fetched whole into `cache` when one is given.
    pub fn open_with(
        dirs: &[PathBuf],
        seed: u64,
        read_threads: usize,
        cache: Option<Arc<Cache>>,
    ) -> Result<Self> {
        if dirs.is_empty() {
            return Err(Error::Invalid("no training data: give --data DIR (a score set written by `scorer pack` or `scorer score`)".into()));
        }
        let mut sets: Vec<ScoreSet> = Vec::new();
        for d in dirs {
            let set = ScoreSet::open_cached(d, cache.clone())?;
            if let Some(first) = sets.first() {
                first.check_mixable(&set)?;
            }
            sets.push(set);
        }
        let mut groups = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            groups.extend(set.groups().map(|g| Group {
                set: i,
                shard: g.shard,
                row_group: g.row_group,
                windows: g.windows,
            }));
        }
        let group_start = groups
            .iter()
            .scan(0u64, |at, g| {
                let start = *at;
                *at += g.windows as u64;
                Some(start)
            })
            .collect();
        let sets = Arc::new(sets);
        let order_seed = Rng::derive(seed, "data").next_u64();
        Ok(Reader {
            prefetch: Prefetcher::start(sets.clone(), groups.clone(), read_threads),
            order: EpochOrder::new(groups, BUFFER_ROW_GROUPS, order_seed),
            group_start,
            sets,
            waited: Duration::ZERO,
            rows_used: 0,
        })
    }

    pub fn sets(&self) -> &[ScoreSet] {
        &self.sets
    }

    pub fn num_windows(&self) -> u64 {
        self.order.total()
    }

    pub fn seq_len(&self) -> usize {
        self.sets[0].seq_len()
    }

    pub fn scored(&self) -> bool {
        self.sets.iter().all(|s| s.scored())
    }

    /// Time the reads since the last call waited for decoding (~0 once the
    /// prefetcher is ahead), and resets it.
    pub fn take_wait(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    /// Rows decoded by the prefetcher per row handed out: 1.0 when every row
    /// group is decoded once and used whole.
    pub fn amplification(&self) -> f64 {
        self.prefetch.rows_decoded() as f64 / self.rows_used.max(1) as f64
    }

    /// `rows` windows starting at `cursor`.
    pub fn batch(&mut self, cursor: u64, rows: usize) -> Result<Batch> {
        let t = self.seq_len();
        let scored = self.scored();
        let mut windows = Vec::with_capacity(rows);
        let mut tokens = Vec::with_capacity(rows * t);
        let mut doc_ids = Vec::with_capacity(rows * t);
        let mut ref_loss = scored.then(|| Vec::with_capacity(rows * t));
        for i in 0..rows as u64 {
            let at = self.order.slot(cursor + i);
            self.prefetch.move_to(&mut self.order, at.epoch, at.buffer);
            let (group, waited) = self.prefetch.get(at.epoch, at.buffer, at.group);
            self.waited += waited;
            let group = group.map_err(Error::Invalid)?;
            windows.push(self.group_start[at.group] + at.offset as u64);
            let span = at.offset * t..(at.offset + 1) * t;
            tokens.extend_from_slice(&group.tokens[span.clone()]);
            doc_ids.extend_from_slice(&group.doc_ids[span.clone()]);
            if let (Some(out), Some(src)) = (ref_loss.as_mut(), group.ref_loss.as_ref()) {
                out.extend_from_slice(&src[span]);
            }
        }
        self.rows_used += (rows * t) as u64;
        Ok(Batch {
            rows,
            seq_len: t,
            windows,
            tokens,
            doc_ids,
            ref_loss,
        })
    }
}

/// Optimizer steps that `epochs` passes over `windows` windows take at
/// `per_step` windows a step: the last step takes its remainder from the
/// next epoch's order, so every step is a full batch.
pub fn steps_for_epochs(epochs: u64, windows: u64, per_step: u64) -> u64 {
    (epochs * windows).div_ceil(per_step.max(1))
}

/// The rows of a global batch of `batch` windows that rank `rank` of
/// `world` reads: contiguous, in rank order, sizes differing by at most one
/// (the first `batch % world` ranks take one more). Their union over the
/// ranks is the global batch, window for window, so N processes together
/// read what one process with the same global batch reads. The one
/// definition of the split: multi-process training and the Python package
/// use it.
pub fn rank_rows(batch: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    let (base, extra) = (batch / world, batch % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start.min(batch)..(start + len).min(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_split_a_batch_into_contiguous_balanced_disjoint_parts() {
        for batch in [0, 1, 5, 8, 13] {
            for world in 1..=6 {
                let parts: Vec<_> = (0..world).map(|r| rank_rows(batch, r, world)).collect();
                let all: Vec<usize> = parts.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(all, (0..batch).collect::<Vec<_>>(), "{batch} over {world}");
                let (lo, hi) = (
                    parts.iter().map(|r| r.len()).min().unwrap(),
                    parts.iter().map(|r| r.len()).max().unwrap(),
                );
                assert!(hi - lo <= 1, "{parts:?}");
            }
        }
        assert_eq!(rank_rows(10, 1, 3), 4..7);
    }
    use std::path::Path;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/scoreset-v1")
    }

    #[test]
    fn an_epoch_hands_out_every_window_once_and_a_fresh_reader_resumes_it() {
        let all = ScoreSet::open(&fixture()).unwrap().read_all().unwrap();
        let (t, n) = (all.seq_len, all.len() as u64);
        let mut data = Reader::open(&[fixture()], 5).unwrap();
        let mut got = Vec::new();
        for c in (0..n).step_by(7) {
            let b = data.batch(c, 7.min(n - c) as usize).unwrap();
            got.extend(b.tokens.chunks(t).map(<[u32]>::to_vec));
        }
        let mut want: Vec<Vec<u32>> = all.tokens.chunks(t).map(<[u32]>::to_vec).collect();
        assert_ne!(got, want, "not shuffled");
        got.sort();
        want.sort();
        assert_eq!(got, want, "an epoch is not every window once");
        assert!((data.amplification() - 1.0).abs() < 0.5);
        // A reader opened at a cursor inside epoch 1 (a resumed run) reads
        // what the one that went through epoch 0 reads there.
        let mut fresh = Reader::open(&[fixture()], 5).unwrap();
        let (a, b) = (
            data.batch(n + 100, 9).unwrap(),
            fresh.batch(n + 100, 9).unwrap(),
        );
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.doc_ids, b.doc_ids);
        let bits = |x: &Batch| {
            x.ref_loss
                .as_ref()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&a), bits(&b));
    }
}
