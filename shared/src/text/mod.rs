//! Text to windows: corpus files are read as documents, tokenized, and
//! packed into fixed-length windows of token ids.

pub mod corpus; // JSON Lines (zstd), Parquet and plain-text readers
pub mod pack; // documents joined by end-of-text and cut into windows
pub mod tokenizer; // Hugging Face tokenizer.json: load, fingerprint, train
