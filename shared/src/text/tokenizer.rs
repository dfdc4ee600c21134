//! Hugging Face `tokenizer.json` files: loading (the `tokenizers` crate, no
//! network features), byte-level BPE training, the end-of-text token packing
//! needs, and a fingerprint that score sets record. A GGUF model file's
//! `tokenizer.ggml.*` metadata is read as a tokenizer too (GPT-2-style
//! byte-level BPE, with the pre-tokenizer its `tokenizer.ggml.pre` names).

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
    /// GPT-2-style byte-level vocabulary: each character of a token string
    /// stands for one byte.
    byte_level: bool,
}

/// GPT-2's byte -> character table, inverted: the byte a character of a
/// byte-level BPE vocabulary stands for.
fn byte_level_char(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let c = c as u32;
    if c < 256 {
        return printable(c).then_some(c as u8);
    }
    // The other 68 bytes, in order, stand as 256, 257, ...
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth((c - 256) as usize)
        .map(|b| b as u8)
}

impl Tokenizer {
    /// Loads `tokenizer.json`; `eos` names the end-of-text token when it is
    /// not one of [`EOS_CANDIDATES`].
    pub fn load(path: &Path, eos: Option<&str>) -> Result<Self> {
        let err = |reason: String| Error::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let inner = if crate::util::gguf::is_gguf(path) {
            from_gguf(path)?
        } else {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            // Editors on Windows may save a UTF-8 byte-order mark; JSON has none.
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
            crate::util::guard::catch_panic("the tokenizers library", || {
                tokenizers::Tokenizer::from_bytes(bytes)
            })
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?
        };
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
        let byte_level =
            serde_json::to_string(&inner.get_decoder()).is_ok_and(|d| d.contains("\"ByteLevel\""));
        Ok(Tokenizer {
            byte_level,
            fingerprint: hash_bytes(canonical.as_bytes()),
            inner,
            path: path.to_path_buf(),
            eos_id,
            eos_token,
        })
    }

    /// The tokenizer as `tokenizer.json` text (canonical: the fingerprint's input).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
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
    /// Whether every token string has the same id in both (added tokens
    /// included): the ids of one mean the same to a model of the other.
    pub fn same_vocabulary(&self, other: &Tokenizer) -> bool {
        self.inner.get_vocab(true) == other.inner.get_vocab(true)
    }

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

    /// The bytes one token stands for in the text: a byte-level vocabulary
    /// string mapped back to its bytes, a `<0xHH>` byte-fallback token as that
    /// byte, anything else (added tokens, other vocabularies) as its decoded
    /// text. A character the tokenizer split over several tokens has some of
    /// its bytes in each, so a token's bytes need not be valid UTF-8.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let raw = self.inner.id_to_token(id).unwrap_or_default();
        let is_added = self.inner.get_added_tokens_decoder().contains_key(&id);
        if self.byte_level && !is_added {
            if let Some(bytes) = raw
                .chars()
                .map(byte_level_char)
                .collect::<Option<Vec<u8>>>()
            {
                return bytes;
            }
        }
        if let Some(hex) = raw.strip_prefix("<0x").and_then(|r| r.strip_suffix('>')) {
            if let (2, Ok(b)) = (hex.len(), u8::from_str_radix(hex, 16)) {
                return vec![b];
            }
        }
        self.piece(id).1.into_bytes()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }
}

/// The pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` kinds
/// (llama-vocab.cpp), as the models' own tokenizer.json files have them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer from a GGUF file's `tokenizer.ggml.*` metadata. Only
/// GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`) is built, with
/// the pre-tokenizer of a known `tokenizer.ggml.pre`; anything else is
/// refused by name rather than tokenized differently from the model's own
/// tokenizer.
fn from_gguf(path: &Path) -> Result<tokenizers::Tokenizer> {
    use tokenizers::normalizers::unicode::NFC;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

    let err = |reason: String| Error::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let g = crate::util::gguf::Gguf::open(path)?;
    let model = g.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model = {model:?} is not supported: only \"gpt2\" (byte-level BPE) is; pass --tokenizer tokenizer.json"
        )));
    }
    let pre = if g.has("tokenizer.ggml.pre") {
        g.string("tokenizer.ggml.pre")?
    } else {
        "default".to_string()
    };
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        let s = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(s.into())
    };
    let (normalize, pre_tokenizer) = match pre.as_str() {
        "default" | "gpt2" => (false, byte_level(true)),
        "smollm" => (
            false,
            Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
        ),
        "llama-bpe" | "llama3" | "smaug-bpe" => (
            false,
            Sequence::new(vec![split(LLAMA3_SPLIT)?, byte_level(false)]).into(),
        ),
        "qwen2" => (
            true,
            Sequence::new(vec![split(QWEN2_SPLIT)?, byte_level(false)]).into(),
        ),
        other => {
            return Err(err(format!(
                "tokenizer.ggml.pre = {other:?} is not supported (supported: gpt2, smollm, llama-bpe, qwen2); pass --tokenizer tokenizer.json"
            )))
        }
    };
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = g
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    err(format!(
                        "tokenizer.ggml.merges[{i}] = {m:?} is not two tokens"
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| err(format!("tokenizer.ggml.tokens / merges: {e}")))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    if normalize {
        tok.with_normalizer(Some(NFC));
    }
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    // Control and user-defined tokens (llama.cpp token types 3 and 4) are
    // special, as in the model's own tokenizer.json.
    let types = if g.has("tokenizer.ggml.token_type") {
        g.uints("tokenizer.ggml.token_type")?
    } else {
        Vec::new()
    };
    let special: Vec<AddedToken> = types
        .iter()
        .zip(&tokens)
        .filter(|(t, _)| matches!(t, 3 | 4))
        .map(|(_, s)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(&special);
    Ok(tok)
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
    let docs = std::sync::atomic::AtomicU64::new(0);
    let counted = texts.inspect(|_| {
        docs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    tok.train(&mut trainer, counted)
        .map_err(|e| err(format!("training failed: {e}")))?;
    if docs.into_inner() == 0 {
        return Err(err(
            "the corpus holds no documents (every one empty, or none read): nothing to learn merges from".into(),
        ));
    }
    let tok: tokenizers::Tokenizer = tok.into();
    let json = tok.to_string(true).map_err(|e| err(e.to_string()))?;
    crate::util::atomic::write_file(out, json.as_bytes())
}

#[cfg(test)]
mod tests {
    /// A tokenizer.json the fuzzer found (tests/fixtures/fuzz/): the
    /// tokenizers crate panics inside its decoder deserializer on it; here
    /// it is an error naming the file.
    #[test]
    fn a_tokenizer_json_that_panics_the_parser_is_an_error() {
        crate::util::guard::install_panic_hook();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/fuzz/tokenizer-decoder-expect.json");
        let err = Tokenizer::load(&path, None).err().expect("refused");
        let msg = err.to_string();
        assert!(msg.contains("tokenizer-decoder-expect.json"), "{msg}");
        assert!(msg.contains("failed on malformed data"), "{msg}");
    }

    use super::*;

    #[test]
    fn a_tokenizer_json_saved_with_a_byte_order_mark_loads_as_the_same_tokenizer() {
        let dir = std::env::temp_dir().join(format!("rho1-tok-bom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("tokenizer.json");
        train_bpe((0..20).map(|i| format!("text number {i}")), 270, &plain).unwrap();
        let bom = dir.join("bom.json");
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(std::fs::read(&plain).unwrap());
        std::fs::write(&bom, bytes).unwrap();
        let (a, b) = (
            Tokenizer::load(&plain, None).unwrap(),
            Tokenizer::load(&bom, None).unwrap(),
        );
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.same_vocabulary(&b));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corpus_without_documents_trains_no_tokenizer() {
        let dir = std::env::temp_dir().join(format!("rho1-tok-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("tokenizer.json");
        let e = train_bpe(std::iter::empty(), 300, &out).unwrap_err();
        assert!(e.to_string().contains("no documents"), "{e}");
        assert!(!out.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn token_bytes_rebuild_the_text_even_inside_a_character() {
        let dir = std::env::temp_dir().join(format!("rho1-tok-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        let texts = (0..50).map(|i| format!("the cafe {i} costs 3 dollars, plain ascii text"));
        train_bpe(texts, 300, &path).unwrap();
        let tok = Tokenizer::load(&path, None).unwrap();
        assert!(tok.byte_level);
        let text = "Caf\u{e9} \u{2019}s na\u{ef}ve: \u{6570}\u{5b66} \u{1f642}!";
        let ids = &tok.encode_batch(&[text]).unwrap()[0];
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| tok.token_bytes(id)).collect();
        assert_eq!(bytes, text.as_bytes());
        // Some token holds part of a character: its bytes alone are not UTF-8.
        assert!(ids
            .iter()
            .any(|&id| std::str::from_utf8(&tok.token_bytes(id)).is_err()));
        assert_eq!(tok.token_bytes(tok.eos_id()), DEFAULT_EOS.as_bytes());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
