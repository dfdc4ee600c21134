//! `scorer tokenizer`: a byte-level BPE tokenizer trained on a corpus.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use shared::text::corpus::{expand_inputs, Corpus};
use shared::text::tokenizer::Tokenizer;

/// `scorer tokenizer`: train a byte-level BPE tokenizer on corpus files and
/// write tokenizer.json.
#[derive(clap::Args)]
pub struct TokenizerArgs {
    /// Corpus files, directories or globs: .jsonl, .json, .ndjson (each
    /// optionally .zst), .parquet, .txt, .md; directories are searched
    /// recursively, and their hidden files and other formats are skipped and counted.
    #[arg(long, required = true, num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Number of ids in the vocabulary (256 byte tokens + end-of-text + merges).
    #[arg(long, default_value_t = 8192)]
    pub vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    pub out: PathBuf,
    /// JSON field / Parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

impl TokenizerArgs {
    pub fn run(&self) -> Result<()> {
        train_tokenizer(&self.corpus, self.vocab_size, &self.out, &self.text_field)
    }
}

pub fn train_tokenizer(
    corpus: &[PathBuf],
    vocab_size: usize,
    out: &Path,
    text_field: &str,
) -> Result<()> {
    let inputs = expand_inputs(corpus)?;
    shared::say!("{}", inputs.describe());
    let files = inputs.files;
    let failure = Mutex::new(None);
    let texts = Corpus::new(files, text_field).map_while(|doc| match doc {
        Ok(d) => Some(d.text),
        Err(e) => {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            None
        }
    });
    let started = Instant::now();
    shared::text::tokenizer::train_bpe(texts, vocab_size, out)?;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let _ = std::fs::remove_file(out);
        return Err(e.into());
    }
    let tok = Tokenizer::load(out, None)?;
    if tok.vocab_size() < vocab_size {
        // A small corpus has fewer pairs seen twice than merges asked for:
        // the tokenizer is usable, only smaller, so this is said, not refused.
        shared::say!(
            "note: --vocab-size {vocab_size} asked, but this corpus yields {} ids: it has no more pairs seen at least twice to merge",
            tok.vocab_size()
        );
    }
    shared::say!(
        "wrote {} ({} ids, end-of-text {:?} = {}) in {:.1}s",
        out.display(),
        tok.vocab_size(),
        tok.eos_token(),
        tok.eos_id(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
