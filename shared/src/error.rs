//! The library's typed errors. Every variant that comes from a file names the
//! file, and where a record is at fault, the record (line, row, tensor).

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS error is part of the message and not a `source()`, so that a
    /// report of the whole chain (`{:#}`) says it once.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A corpus record that cannot be read as a document.
    #[error("{}: {record}: {reason}", file.display())]
    Corpus {
        file: PathBuf,
        /// "line 12", "row 40", "byte 1024".
        record: String,
        reason: String,
    },

    /// A checkpoint directory that cannot be loaded or saved.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },

    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },

    /// A score shard, manifest or score-set directory that breaks the contract.
    #[error("{}: {reason}", path.display())]
    Shard { path: PathBuf, reason: String },

    /// An object or prefix in a bucket (the URL holds no credentials).
    #[error("{url}: {reason}")]
    Store { url: String, reason: String },

    /// A setting that is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    pub fn shard(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Shard {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn corpus(
        file: impl Into<PathBuf>,
        record: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corpus {
            file: file.into(),
            record: record.into(),
            reason: reason.into(),
        }
    }
}
