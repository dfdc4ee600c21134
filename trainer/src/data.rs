//! Training windows from one or more score sets, in a deterministic shuffled
//! order ([`crate::order`]: row groups permuted per epoch, then windows within
//! buffers of [`BUFFER_ROW_GROUPS`] row groups), decoded ahead of the step by
//! a background thread ([`crate::prefetch`]): each row group once per epoch,
//! memory two buffers whatever the set's size. The cursor (windows consumed)
//! is all the state a resumed run needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use shared::scores::loss_range::LossRange;
use shared::scores::scoreset::ScoreSet;
use shared::select::noise::{predicted, span_means, Histogram};
use shared::store::cache::Cache;
use shared::util::progress::Progress;

use crate::order::{EpochOrder, Group};
use crate::prefetch::Prefetcher;

/// Row groups whose windows are shuffled together (the scorer's default
/// 65,536-token row groups: 256 windows of 256 each, 2,048 windows per buffer).
pub const BUFFER_ROW_GROUPS: usize = 8;

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
    sets: Arc<Vec<ScoreSet>>,
    order: EpochOrder,
    prefetch: Prefetcher,
    /// Time spent waiting for the prefetcher since the last [`Self::take_wait`].
    waited: Duration,
    rows_used: u64,
}

impl TrainData {
    /// Opens the sets and checks that they agree (seq_len, tokenizer); one
    /// thread decodes ahead.
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
            bail!("no training data: give --data DIR (a score set written by `scorer pack` or `scorer score`)");
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
        let sets = Arc::new(sets);
        Ok(TrainData {
            prefetch: Prefetcher::start(sets.clone(), groups.clone(), read_threads),
            order: EpochOrder::new(groups, BUFFER_ROW_GROUPS, seed),
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

    /// Decodes every row group once and checks what a step relies on: finite
    /// reference losses (when `need_ref`) and token ids below `vocab`.
    /// Errors name the shard and the row. Memory: one row group at a time.
    /// [`check_sets`] over the training sets.
    pub fn validate(
        &self,
        vocab: usize,
        need_ref: bool,
        noise_span: Option<usize>,
    ) -> Result<Option<Histogram>> {
        check_sets(&self.sets, vocab, need_ref, noise_span)
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
        let mut tokens = Vec::with_capacity(rows * t);
        let mut doc_ids = Vec::with_capacity(rows * t);
        let mut ref_loss = scored.then(|| Vec::with_capacity(rows * t));
        for i in 0..rows as u64 {
            let at = self.order.slot(cursor + i);
            self.prefetch.move_to(&mut self.order, at.epoch, at.buffer);
            let (group, waited) = self.prefetch.get(at.epoch, at.buffer, at.group);
            self.waited += waited;
            let group = group.map_err(|e| anyhow!(e))?;
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
            tokens,
            doc_ids,
            ref_loss,
        })
    }
}

/// Reads every byte and every row group of `sets` once, before the first
/// step: each shard's SHA-256 against its manifest, then the reader's own
/// checks (positions, finite ref_loss), every token id below `vocab` and
/// every reference loss in range (`shared::scores::loss_range`), with messages that name the
/// file and row; the same for training and held-out sets. With `noise_span`,
/// the same pass also gathers the noise scores the filter's quantile is taken
/// from (`crate::noise::fit`).
pub fn check_sets(
    sets: &[ScoreSet],
    vocab: usize,
    need_ref: bool,
    noise_span: Option<usize>,
) -> Result<Option<Histogram>> {
    let started = std::time::Instant::now();
    // A set in a bucket is read by ranges and not hashed whole (ScoreSet::check_hashes).
    let bytes: u64 = sets
        .iter()
        .filter(|s| !s.is_remote())
        .flat_map(|s| &s.manifest().shards)
        .map(|e| e.bytes)
        .sum();
    let remote = sets.iter().filter(|s| s.is_remote()).count();
    let progress = std::sync::Mutex::new(Progress::new("checking hashes", "B", bytes));
    for set in sets {
        set.check_hashes(|b| progress.lock().unwrap_or_else(|p| p.into_inner()).inc(b))?;
    }
    progress
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .finish();
    let hashed_in = started.elapsed();

    let mut noise = noise_span.map(|span| (span, Histogram::default()));
    let rows: u64 = sets
        .iter()
        .map(|s| s.num_windows() * s.seq_len() as u64)
        .sum();
    let mut progress = Progress::new("checking shards", "tok", rows);
    for set in sets {
        if need_ref && !set.scored() {
            bail!("{}: a pack-only set has no ref_loss", set.dir().display());
        }
        let mut range = LossRange::new(set.manifest().job.tokenizer.vocab_size);
        for group in set.row_groups() {
            let (g, w) = group?; // the reader checks positions and ref_loss finiteness
            let file = || set.shards()[g.shard].path().display().to_string();
            if let Some(i) = w.tokens.iter().position(|&t| t as usize >= vocab) {
                bail!(
                    "{}: row {}: token_id {} is outside the model's vocabulary ({vocab})",
                    file(),
                    g.row(set.seq_len(), i),
                    w.tokens[i]
                );
            }
            if let Some(rl) = &w.ref_loss {
                range.add(rl, file, |i| g.row(set.seq_len(), i));
                if let Some(h) = noise.as_mut() {
                    let (refs, docs) = predicted(rl, &w.doc_ids, w.seq_len);
                    for m in span_means(&refs, &docs, w.seq_len - 1, h.0) {
                        h.1.add(m);
                    }
                }
            }
            progress.inc(w.tokens.len() as u64);
        }
        range.check(set.dir())?;
    }
    progress.finish();
    shared::say!(
        "checked {} MB of shards: SHA-256 in {:.1} s, every row group in {:.1} s{}",
        bytes / 1_000_000,
        hashed_in.as_secs_f64(),
        (started.elapsed() - hashed_in).as_secs_f64(),
        if remote > 0 {
            format!("; {remote} set(s) in a bucket: sizes and footers checked, not hashed (read by range requests)")
        } else {
            String::new()
        }
    );
    Ok(noise.map(|(_, h)| h))
}

/// Refuses a model whose own tokenizer is not the one that made `set`
/// (naming both fingerprints); a different file with the same vocabulary is
/// said and accepted.
pub fn check_model_tokenizer(model: &std::path::Path, set: &ScoreSet) -> Result<()> {
    let info = &set.manifest().job.tokenizer;
    let copy = match tokenizer_of(set)? {
        Some(p) => Some(shared::text::tokenizer::Tokenizer::load(
            &p,
            Some(&info.eos_token),
        )?),
        None => None,
    };
    let data = shared::scores::compat::DataTokenizer {
        label: format!("the data {}", set.dir().display()),
        info,
        tokenizer: copy.as_ref(),
    };
    if let shared::scores::compat::TokenizerCheck::SameVocabulary(note) =
        shared::scores::compat::check_tokenizer(model, &data)?
    {
        shared::say!("{note}");
    }
    Ok(())
}

/// The tokenizer.json a score set carries (written by `scorer`).
/// A set in a bucket: the file fetched to a local temporary copy.
pub fn tokenizer_of(set: &ScoreSet) -> Result<Option<PathBuf>> {
    let p = set.side_file(shared::model::checkpoint::TOKENIZER_FILE)?;
    Ok(p.is_file().then_some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/scoreset-v1")
    }

    #[test]
    fn an_epoch_hands_out_every_window_once_and_a_fresh_reader_resumes_it() {
        let all = ScoreSet::open(&fixture()).unwrap().read_all().unwrap();
        let (t, n) = (all.seq_len, all.len() as u64);
        let mut data = TrainData::open(&[fixture()], 5).unwrap();
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
        let mut fresh = TrainData::open(&[fixture()], 5).unwrap();
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
