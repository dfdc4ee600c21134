//! `scorer align`: a reference with another tokenizer. A score set made with
//! tokenizer A becomes a set over tokenizer B's windows of the same corpus.
//!
//! The rule, per document: each reference token's loss goes to the target
//! token whose byte span contains the reference token's last byte; a target
//! token is the sum of the losses it received, and 0 when no reference token
//! ends inside it (its bytes are paid for by the target token where the
//! covering reference token ends). The end-of-text tokens map onto each other.
//! So a document's total reference loss, in nats, is preserved exactly, save
//! for what the contract cannot hold: reference tokens at position 0 of a
//! reference window have no loss (they add nothing; counted in the manifest),
//! and target tokens at position 0 of a target window carry none (NaN).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shared::scores::manifest::InputFile;
use shared::scores::scoreset::ScoreSet;
use shared::text::tokenizer::Tokenizer;

/// Where a rule's losses went, over the whole set.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AlignStats {
    pub documents: u64,
    /// Reference tokens without a loss (position 0 of their window).
    pub unscored_reference_tokens: u64,
    /// Target tokens in which no reference token ends (ref_loss 0).
    pub target_tokens_without_reference: u64,
}

/// One document's tokens in set order, with their losses (NaN = none).
struct Doc {
    id: u64,
    tokens: Vec<u32>,
    losses: Vec<f32>,
}

/// The documents of a set, in order, one at a time (whole or, for the last,
/// as far as the set holds it).
fn documents(set: &ScoreSet, mut each: impl FnMut(Doc) -> Result<()>) -> Result<()> {
    let t = set.seq_len();
    let mut cur: Option<Doc> = None;
    for group in set.row_groups() {
        let (_, w) = group?;
        let nan = vec![f32::NAN; w.tokens.len()];
        let losses = w.ref_loss.as_deref().unwrap_or(&nan);
        for (i, (&d, &tok)) in w.doc_ids.iter().zip(&w.tokens).enumerate() {
            if cur.as_ref().is_some_and(|c| c.id != d) {
                each(cur.take().unwrap())?;
            }
            let c = cur.get_or_insert_with(|| Doc {
                id: d,
                tokens: Vec::new(),
                losses: Vec::new(),
            });
            c.tokens.push(tok);
            c.losses.push(if i % t == 0 { f32::NAN } else { losses[i] });
        }
    }
    if let Some(c) = cur {
        each(c)?;
    }
    Ok(())
}

/// The document of a set's last token.
fn last_doc(set: &ScoreSet) -> Result<Option<u64>> {
    let Some((s, shard)) = set.shards().iter().enumerate().last() else {
        return Ok(None);
    };
    match shard.num_row_groups() {
        0 => Ok(None),
        g => Ok(set.read_row_group(s, g - 1)?.doc_ids.last().copied()),
    }
}

/// Byte lengths of every id, the end-of-text token as 0 bytes.
fn byte_table(tok: &Tokenizer) -> Vec<Vec<u8>> {
    (0..tok.vocab_size() as u32)
        .map(|id| {
            if id == tok.eos_id() {
                Vec::new()
            } else {
                tok.token_bytes(id)
            }
        })
        .collect()
}

/// How a reference token's loss is shared among target tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// All of it to the target token holding its last byte (a target token
    /// that no reference token ends in gets 0).
    End,
    /// Over the target tokens it overlaps, in proportion to the bytes shared.
    Bytes,
}

/// Aligns one document: `ref_len[i]`/`ref_loss[i]` are the reference tokens'
/// byte lengths and losses (NaN: none), `tgt_len[j]` the target tokens'.
/// Returns the target tokens' losses (f64 sums) and how many had none.
/// A final end-of-text token (0 bytes) in both maps onto the other's.
pub fn align_document(
    split: Split,
    ref_len: &[usize],
    ref_loss: &[f32],
    tgt_len: &[usize],
) -> (Vec<f32>, u64) {
    if split == Split::Bytes {
        return split_by_bytes(ref_len, ref_loss, tgt_len);
    }
    let mut out = vec![0f64; tgt_len.len()];
    let mut hit = vec![false; tgt_len.len()];
    let (mut j, mut tgt_end) = (0usize, tgt_len.first().copied().unwrap_or(0));
    let tgt_total: usize = tgt_len.iter().sum();
    let mut ref_end = 0usize;
    for (i, (&len, &loss)) in ref_len.iter().zip(ref_loss).enumerate() {
        ref_end += len;
        let last_eos = len == 0 && i + 1 == ref_len.len();
        if last_eos && tgt_len.last() == Some(&0) {
            j = tgt_len.len() - 1;
        } else if ref_end > tgt_total {
            continue; // past the end of a target document cut short
        } else {
            // the first target token ending at or after the reference token's end
            while j + 1 < tgt_len.len() && tgt_end < ref_end {
                j += 1;
                tgt_end += tgt_len[j];
            }
        }
        if j < out.len() {
            hit[j] = true;
            if !loss.is_nan() {
                out[j] += loss as f64;
            }
        }
    }
    let missing = hit.iter().filter(|&&h| !h).count() as u64;
    (out.into_iter().map(|x| x as f32).collect(), missing)
}

fn split_by_bytes(ref_len: &[usize], ref_loss: &[f32], tgt_len: &[usize]) -> (Vec<f32>, u64) {
    let mut out = vec![0f64; tgt_len.len()];
    let mut hit = vec![false; tgt_len.len()];
    let ends: Vec<usize> = tgt_len
        .iter()
        .scan(0, |e, &n| {
            *e += n;
            Some(*e)
        })
        .collect();
    let total = ends.last().copied().unwrap_or(0);
    let mut start = 0usize;
    for (i, (&len, &loss)) in ref_len.iter().zip(ref_loss).enumerate() {
        let end = start + len;
        if len == 0 {
            // end-of-text (or another 0-byte token): onto the target's, or
            // the token holding the byte before it
            let j = if i + 1 == ref_len.len() && tgt_len.last() == Some(&0) {
                tgt_len.len() - 1
            } else {
                ends.partition_point(|&e| e < end.max(1))
                    .min(tgt_len.len() - 1)
            };
            hit[j] = true;
            if !loss.is_nan() {
                out[j] += loss as f64;
            }
        } else if end <= total {
            let mut j = ends.partition_point(|&e| e <= start); // first ending past `start`
            while j < tgt_len.len() && ends[j] - tgt_len[j] < end {
                let lo = start.max(ends[j] - tgt_len[j]);
                let shared = ends[j].min(end) - lo;
                if shared > 0 {
                    hit[j] = true;
                    if !loss.is_nan() {
                        out[j] += loss as f64 * shared as f64 / len as f64;
                    }
                }
                j += 1;
            }
        }
        start = end;
    }
    let missing = hit.iter().filter(|&&h| !h).count() as u64;
    (out.into_iter().map(|x| x as f32).collect(), missing)
}

/// `scorer align`: a score set over another tokenizer's windows of the same
/// corpus: each target token gets the losses of the reference tokens that end
/// inside it (per document, the total reference loss is preserved).
#[derive(clap::Args)]
pub struct AlignArgs {
    /// Scored set made with the reference's tokenizer.
    #[arg(long)]
    pub scores: PathBuf,
    /// The target's tokenizer (tokenizer.json, or a GGUF file's own).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// The corpus the set was scored on (checked against its SHA-256s).
    #[arg(long, required = true, num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// End-of-text token of the target (default: the tokenizer's).
    #[arg(long)]
    pub eos_token: Option<String>,
    /// end: a reference token's loss goes to the target token holding its
    /// last byte; bytes: it is shared by overlapping bytes.
    #[arg(long, value_enum, default_value = "end")]
    pub split: Split,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &AlignArgs) -> Result<()> {
    let src = ScoreSet::open(&a.scores)?;
    let job = &src.manifest().job;
    if !src.scored() {
        bail!(
            "{}: a pack-only set has no reference losses to align",
            a.scores.display()
        );
    }
    if a.out.exists() {
        bail!("{} exists: choose a new --out directory", a.out.display());
    }
    // The corpus must be the one the set was scored on, file for file.
    let files = shared::text::corpus::expand_inputs(&a.corpus)?.files;
    let given: Vec<InputFile> = files
        .iter()
        .map(|f| InputFile::describe(f))
        .collect::<shared::Result<_>>()?;
    if given.len() != job.inputs.len()
        || given
            .iter()
            .zip(&job.inputs)
            .any(|(g, s)| g.sha256 != s.sha256)
    {
        let names = |v: &[InputFile]| {
            v.iter()
                .map(|f| format!("{} ({})", f.path, &f.sha256[..12]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "--corpus is not the corpus {} was scored on: given {}, the set has {}",
            a.scores.display(),
            names(&given),
            names(&job.inputs)
        );
    }
    let ref_tok_path = src.side_file(shared::model::checkpoint::TOKENIZER_FILE)?;
    let ref_tok = Tokenizer::load(&ref_tok_path, Some(&job.tokenizer.eos_token))
        .with_context(|| format!("the set's tokenizer {}", ref_tok_path.display()))?;

    // 1. The target's windows: the corpus packed with the target tokenizer.
    let name = a
        .out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let pack_dir = a.out.with_file_name(format!(".{name}.align-pack"));
    if pack_dir.exists() {
        std::fs::remove_dir_all(&pack_dir)
            .with_context(|| format!("removing the stale {}", pack_dir.display()))?;
    }
    crate::job::run(&crate::job::Settings {
        corpus: a.corpus.clone(),
        tokenizer: a.tokenizer.clone(),
        eos_token: a.eos_token.clone(),
        model: None,
        out: pack_dir.clone(),
        seq_len: job.seq_len,
        batch_size: 1,
        shard_windows: job.shard_windows,
        row_group_windows: job.row_group_windows,
        part: 0,
        parts: 1,
        text_field: job.text_field.clone(),
        device: candle_core::Device::Cpu,
        dtype: candle_core::DType::F32,
        loss_dtype: job.loss_dtype, // the aligned set stores ref_loss as the source does
        stage: None,
    })
    .context("packing the corpus with the target tokenizer")?;
    let result = align_onto(&src, &ref_tok, &pack_dir, a);
    let _ = std::fs::remove_dir_all(&pack_dir);
    result
}

/// A document's bytes under both tokenizers must be the same text (or one a
/// prefix of the other where `partial`: a set's last document may be cut).
fn same_text(id: u64, rb: &[u8], tb: &[u8], partial: bool) -> Result<()> {
    let same = if partial {
        rb.starts_with(tb) || tb.starts_with(rb)
    } else {
        rb == tb
    };
    if !same {
        let at = rb
            .iter()
            .zip(tb)
            .position(|(x, y)| x != y)
            .unwrap_or(rb.len().min(tb.len()));
        bail!(
            "document {}: its text differs between the tokenizers from byte {at} on (a normalizer or added prefix in one of them?); only byte-exact tokenizers can be aligned",
            id
        );
    }
    Ok(())
}

fn align_onto(src: &ScoreSet, ref_tok: &Tokenizer, pack_dir: &Path, a: &AlignArgs) -> Result<()> {
    let tgt = ScoreSet::open(pack_dir)?;
    let tgt_job = &tgt.manifest().job;
    let tgt_tok_path = pack_dir.join(shared::model::checkpoint::TOKENIZER_FILE);
    let tgt_tok = Tokenizer::load(&tgt_tok_path, Some(&tgt_job.tokenizer.eos_token))?;
    let (ref_bytes, tgt_bytes) = (byte_table(ref_tok), byte_table(&tgt_tok));

    // 2. Both sets document by document, in corpus order: the target's
    //    documents first (one loss per target token, in set order).
    let mut tgt_docs: Vec<(u64, Vec<u32>)> = Vec::new();
    documents(&tgt, |d| {
        tgt_docs.push((d.id, d.tokens));
        Ok(())
    })?;
    let mut aligned: Vec<f32> = Vec::with_capacity(tgt.num_windows() as usize * tgt.seq_len());
    let mut stats = AlignStats::default();
    let mut next = 0usize;
    let mut covered_end: Option<usize> = None; // target tokens with a reference
    let last_tgt = tgt_docs.last().map(|d| d.0);
    let last_src = last_doc(src)?;
    documents(src, |d| {
        let Some((id, toks)) = tgt_docs.get(next) else {
            return Ok(()); // past the target's last window: nothing to write
        };
        if *id != d.id {
            bail!(
                "document {} of {} has no counterpart in the target windows (target document {id}): the corpora differ",
                d.id,
                a.scores.display()
            );
        }
        let cat = |table: &[Vec<u8>], t: &[u32]| {
            t.iter()
                .flat_map(|&x| table[x as usize].clone())
                .collect::<Vec<u8>>()
        };
        let (rb, tb) = (cat(&ref_bytes, &d.tokens), cat(&tgt_bytes, toks));
        // the last document of either set may be cut short by its dropped tail
        let partial = Some(*id) == last_tgt || Some(d.id) == last_src;
        same_text(d.id, &rb, &tb, partial)?;
        let rl: Vec<usize> = d
            .tokens
            .iter()
            .map(|&x| ref_bytes[x as usize].len())
            .collect();
        let tl: Vec<usize> = toks.iter().map(|&x| tgt_bytes[x as usize].len()).collect();
        let (l, missing) = align_document(a.split, &rl, &d.losses, &tl);
        if rb.len() < tb.len() {
            // the reference stops inside this document: the target tokens
            // past its last byte have no reference and are cut off
            let mut end = 0;
            let covered = tl
                .iter()
                .take_while(|&&n| {
                    end += n;
                    end <= rb.len()
                })
                .count();
            covered_end = Some(aligned.len() + covered);
        }
        stats.documents += 1;
        stats.unscored_reference_tokens += d.losses.iter().filter(|x| x.is_nan()).count() as u64;
        stats.target_tokens_without_reference += missing;
        aligned.extend(l);
        next += 1;
        Ok(())
    })?;
    // Target windows reaching past the reference's last scored byte (its
    // dropped tail cuts the corpus earlier than the target's) are dropped:
    // a reference loss is not invented.
    let t = tgt.seq_len();
    let covered = covered_end.unwrap_or(aligned.len()).min(aligned.len());
    let max_windows = (covered / t) as u64;
    let reference = src
        .manifest()
        .job
        .reference_model
        .clone()
        .context("a scored set without a reference model")?;
    let derived = serde_json::json!({
        "op": "align",
        "split": a.split,
        "rule": match a.split {
            Split::End => "each reference token's loss goes to the target token containing its last byte; a target token no reference token ends in has ref_loss 0",
            Split::Bytes => "each reference token's loss is shared among the target tokens it overlaps, in proportion to the bytes they share",
        },
        "unscored": "reference tokens at position 0 of a reference window have no loss and add nothing; the end-of-text tokens map onto each other",
        "source": {
            "dir": a.scores.display().to_string(),
            "job_fingerprint": src.manifest().job_fingerprint,
            "tokenizer": src.manifest().job.tokenizer,
        },
        "target_tokenizer": tgt_job.tokenizer,
        "stats": stats,
        "target_windows_without_reference": tgt.num_windows() - max_windows,
    });
    let m = super::write_derived(&tgt, &a.out, reference, derived, max_windows, |_, _, w| {
        let mut l = vec![f32::NAN; w.tokens.len()];
        for (i, &seq) in w.seq_ids.iter().enumerate() {
            let start = seq as usize * t;
            if start + t <= covered {
                l[i * t..(i + 1) * t].copy_from_slice(&aligned[start..start + t]);
            }
        }
        Ok(l)
    })?;
    shared::say!(
        "aligned {} documents onto {} windows of {} ({}): {} reference tokens had no loss, {} target tokens got none (ref_loss 0); mean ref_loss {:.4} per reference token, {:.4} per target token -> {}",
        stats.documents,
        m.num_windows,
        t,
        a.tokenizer.display(),
        stats.unscored_reference_tokens,
        stats.target_tokens_without_reference,
        src.manifest().ref_loss.as_ref().map(|r| r.mean).unwrap_or(f64::NAN),
        m.ref_loss.as_ref().map(|r| r.mean).unwrap_or(f64::NAN),
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_loss_goes_where_its_reference_token_ends() {
        // text "abcdef" + eos; reference tokens "ab" "cde" "f" eos,
        // target tokens "a" "bc" "def" eos
        let (l, missing) = align_document(
            Split::End,
            &[2, 3, 1, 0],
            &[1.0, 2.0, 4.0, 8.0],
            &[1, 2, 3, 0],
        );
        // "ab" ends in "bc"; "cde" and "f" end in "def"; eos -> eos; "a" got none
        assert_eq!(l, vec![0.0, 1.0, 6.0, 8.0]);
        assert_eq!(missing, 1);
        let (l, missing) = align_document(
            Split::End,
            &[2, 3, 1, 0],
            &[1.0, 2.0, 4.0, 8.0],
            &[2, 3, 1, 0],
        );
        assert_eq!(
            (l.clone(), missing),
            (vec![1.0, 2.0, 4.0, 8.0], 0),
            "same tokens: identity"
        );
        let (l, missing) = align_document(
            Split::Bytes,
            &[2, 3, 1, 0],
            &[1.0, 2.0, 4.0, 8.0],
            &[2, 3, 1, 0],
        );
        assert_eq!(
            (l, missing),
            (vec![1.0, 2.0, 4.0, 8.0], 0),
            "same tokens: identity"
        );
    }

    #[test]
    fn bytes_split_shares_by_overlap() {
        // "abcdef" + eos; reference "abcd" (4.0) "ef" (2.0) eos (1.0);
        // target "ab" "cdef" eos
        let (l, missing) = align_document(Split::Bytes, &[4, 2, 0], &[4.0, 2.0, 1.0], &[2, 4, 0]);
        assert_eq!((l, missing), (vec![2.0, 4.0, 1.0], 0));
    }

    #[test]
    fn sums_are_preserved_and_nan_adds_nothing() {
        let mut rng = shared::util::rng::Rng::new(9);
        for _ in 0..200 {
            let bytes = 1 + rng.below(60);
            let cut = |rng: &mut shared::util::rng::Rng| {
                let mut v = Vec::new();
                let mut left = bytes;
                while left > 0 {
                    let n = 1 + rng.below(left.min(5));
                    v.push(n);
                    left -= n;
                }
                v.push(0); // eos
                v
            };
            let (r, t) = (cut(&mut rng), cut(&mut rng));
            let loss: Vec<f32> = r
                .iter()
                .map(|_| {
                    if rng.below(10) == 0 {
                        f32::NAN
                    } else {
                        rng.below(100) as f32 / 10.0
                    }
                })
                .collect();
            for split in [Split::End, Split::Bytes] {
                let (l, _) = align_document(split, &r, &loss, &t);
                let want: f64 = loss.iter().filter(|x| !x.is_nan()).map(|&x| x as f64).sum();
                let got: f64 = l.iter().map(|&x| x as f64).sum();
                assert!(
                    (want - got).abs() < 1e-4,
                    "{split:?} {r:?} {t:?}: {want} vs {got}"
                );
                let eos = loss.last().map(|x| if x.is_nan() { 0.0 } else { *x });
                assert_eq!(l.last(), eos.as_ref());
            }
        }
    }
}
