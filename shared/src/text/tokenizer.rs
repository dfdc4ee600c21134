//! Hugging Face `tokenizer.json` files: loading (the `tokenizers` crate, no
//! network features), byte-level BPE training, the end-of-text token packing
//! needs, and a fingerprint that score sets record.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::error::{Error, Result};
use crate::util::hash::hash_bytes;

/// End-of-text tokens recognised without `--eos-token`, in order of preference.
pub const EOS_CANDIDATES: &[&str] = &[
    "<|endoftext|>",
    "</s>",
    "<|end_of_text|>",
    "<eos>",
    "<|im_end|>",
];

/// The special token written by [`train_bpe`].
pub const DEFAULT_EOS: &str = "<|endoftext|>";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    eos_id: u32,
    eos_token: String,
    fingerprint: String,
}

impl Tokenizer {
    /// Loads `tokenizer.json`; `eos` names the end-of-text token when it is
    /// not one of [`EOS_CANDIDATES`].
    pub fn load(path: &Path, eos: Option<&str>) -> Result<Self> {
        let err = |reason: String| Error::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?;
        let (eos_token, eos_id) = match eos {
            Some(t) => {
                let id = inner
                    .token_to_id(t)
                    .ok_or_else(|| err(format!("the end-of-text token {t:?} given is not in the vocabulary")))?;
                (t.to_string(), id)
            }
            None => EOS_CANDIDATES
                .iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)))
                .ok_or_else(|| {
                    err(format!(
                        "no end-of-text token: none of {EOS_CANDIDATES:?} is in the vocabulary; name one with --eos-token"
                    ))
                })?,
        };
        // The crate's own serialisation is canonical (sorted vocabulary), so
        // the same tokenizer saved twice has the same fingerprint.
        let canonical = inner.to_string(false).map_err(|e| err(e.to_string()))?;
        Ok(Tokenizer {
            fingerprint: hash_bytes(canonical.as_bytes()),
            inner,
            path: path.to_path_buf(),
            eos_id,
            eos_token,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Number of ids, added tokens included (ids are 0..vocab_size).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of each text, no special tokens added; parallel over texts.
    /// Each text's `Encoding` (offsets, token strings: ~25x the ids) is
    /// dropped as soon as its ids are copied out, so memory holds ids, not
    /// encodings, for the whole batch.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| {
                self.inner
                    .encode_fast(*t, false)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::Tokenizer {
                        path: self.path.clone(),
                        reason: format!("encoding failed: {e}"),
                    })
            })
            .collect()
    }

    /// (raw vocabulary string, decoded text) of one id.
    pub fn piece(&self, id: u32) -> (String, String) {
        let raw = self.inner.id_to_token(id).unwrap_or_default();
        let text = self
            .inner
            .decode(&[id], false)
            .unwrap_or_else(|_| raw.clone());
        (raw, text)
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }
}

/// Trains a byte-level BPE tokenizer (GPT-2 style, no prefix space) with
/// `vocab_size` ids, the end-of-text token [`DEFAULT_EOS`] at id 0, and
/// writes it to `out` atomically.
pub fn train_bpe<I>(texts: I, vocab_size: usize, out: &Path) -> Result<()>
where
    I: Iterator<Item = String> + Send,
{
    let err = |reason: String| Error::Tokenizer {
        path: out.to_path_buf(),
        reason,
    };
    let alphabet = ByteLevel::alphabet();
    if vocab_size < alphabet.len() + 1 {
        return Err(err(format!(
            "vocabulary size {vocab_size} is too small: byte-level BPE needs at least {} (256 bytes + end-of-text)",
            alphabet.len() + 1
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .initial_alphabet(alphabet.into_iter().collect())
        .special_tokens(vec![AddedToken::from(DEFAULT_EOS, true)])
        .build();
    let mut tok = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::new(false, true, true)))
        .build()
        .map_err(|e| err(e.to_string()))?;
    tok.train(&mut trainer, texts)
        .map_err(|e| err(format!("training failed: {e}")))?;
    let tok: tokenizers::Tokenizer = tok.into();
    let json = tok.to_string(true).map_err(|e| err(e.to_string()))?;
    crate::util::atomic::write_file(out, json.as_bytes())
}
