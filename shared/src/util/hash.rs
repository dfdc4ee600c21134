//! Content fingerprints (SHA-256, hex) for inputs, tokenizers and models.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub struct Hasher(Sha256);

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Streams a file through the hash (bounded memory).
    pub fn update_file(&mut self, path: &Path) -> Result<()> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                return Ok(());
            }
            self.0.update(&buf[..n]);
        }
    }

    /// Lower-case hex of the digest.
    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finish()
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut h = Hasher::new();
    h.update_file(path)?;
    Ok(h.finish())
}
