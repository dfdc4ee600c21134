//! The trainer's side of its data: the reader is shared's
//! ([`shared::reader`]); here, the checks a run makes before its first step
//! (every byte and row group, token ids against the model's vocabulary, the
//! noise filter's scores) and the model's tokenizer against the data's.

use std::path::PathBuf;

use anyhow::{bail, Result};
use shared::scores::loss_range::LossRange;
use shared::scores::scoreset::ScoreSet;
use shared::select::noise::{predicted, span_means, Histogram};
use shared::util::progress::Progress;

pub use shared::reader::{Batch, Reader as TrainData};

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
