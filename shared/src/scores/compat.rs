//! Whether a model and token data belong together, one rule for `scorer
//! score`, `trainer train` and `trainer eval`: the same tokenizer (compared
//! by fingerprint, then by vocabulary), and windows no longer than the
//! positions the model was trained on.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::checkpoint::own_tokenizer;
use crate::model::config::LlamaConfig;
use crate::scores::manifest::TokenizerInfo;
use crate::text::tokenizer::Tokenizer;

/// The data's tokenizer as far as it is known: the manifest's record, and
/// the tokenizer itself where it is at hand (a set's copy, `--tokenizer`).
pub struct DataTokenizer<'a> {
    /// What to call the data in a message ("--tokenizer tok.json", "sets/web").
    pub label: String,
    pub info: &'a TokenizerInfo,
    pub tokenizer: Option<&'a Tokenizer>,
}

/// What a caller does with a tokenizer that is not the model's own.
#[derive(Debug, PartialEq)]
pub enum TokenizerCheck {
    /// The model's own tokenizer, or a model with none to compare.
    Same,
    /// Another file, but every token string maps to the same id: the ids
    /// mean the same to the model (e.g. a GGUF's tokenizer beside the
    /// checkpoint's tokenizer.json). Carries a line to print.
    SameVocabulary(String),
}

/// Compares the data's tokenizer with the one `model` carries; refuses a
/// different one, naming both fingerprints and sizes.
pub fn check_tokenizer(model: &Path, data: &DataTokenizer) -> Result<TokenizerCheck> {
    let Some(own_path) = own_tokenizer(model) else {
        return Ok(TokenizerCheck::Same);
    };
    let own = Tokenizer::load(&own_path, Some(&data.info.eos_token))
        .or_else(|_| Tokenizer::load(&own_path, None))?;
    if own.fingerprint() == data.info.fingerprint {
        return Ok(TokenizerCheck::Same);
    }
    let sides = format!(
        "the model {} has tokenizer {} ({} ids), {} has {} ({} ids)",
        model.display(),
        short(own.fingerprint()),
        own.vocab_size(),
        data.label,
        short(&data.info.fingerprint),
        data.info.vocab_size
    );
    if data.tokenizer.is_some_and(|t| t.same_vocabulary(&own)) {
        return Ok(TokenizerCheck::SameVocabulary(format!(
            "note: {sides}; their vocabularies are identical, so the ids mean the same"
        )));
    }
    Err(Error::Invalid(format!(
        "tokenizers differ: {sides}. Token ids of one tokenizer are other tokens to a model of the other."
    )))
}

/// The first 12 hex digits of a fingerprint, as messages show them.
fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}

/// A window of `seq_len` tokens feeds the model `seq_len - 1` positions.
/// Returns the line that says they go past `max_position_embeddings`, or None.
pub fn window_beyond_positions(cfg: &LlamaConfig, model: &Path, seq_len: usize) -> Option<String> {
    let positions = seq_len.saturating_sub(1);
    (positions > cfg.max_position_embeddings).then(|| {
        format!(
            "--seq-len {seq_len} feeds {positions} positions, but {} was trained on at most {} (max_position_embeddings)",
            model.display(),
            cfg.max_position_embeddings
        )
    })
}
