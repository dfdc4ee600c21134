//! `scorer verify`: every shard of a finished set against its manifest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use shared::scores::manifest::Manifest;
use shared::scores::shards::ShardReader;

/// `scorer verify`: check every shard of a score set against its manifest
/// (size, footer, SHA-256).
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Score set directory.
    pub dir: PathBuf,
}

impl VerifyArgs {
    pub fn run(&self) -> Result<()> {
        verify(&self.dir)
    }
}

/// Re-reads every shard of a finished set: size, footer, content hash.
pub fn verify(dir: &Path) -> Result<()> {
    let m = Manifest::load(dir)?;
    let mut bad = Vec::new();
    for e in &m.shards {
        let path = dir.join(&e.file);
        let problem = match std::fs::metadata(&path) {
            Err(_) => Some("missing".to_string()),
            Ok(md) if md.len() != e.bytes => {
                Some(format!("{} bytes, the manifest says {}", md.len(), e.bytes))
            }
            Ok(_) => match shared::util::hash::hash_file(&path) {
                Ok(h) if h != e.sha256 => {
                    Some(format!("content hash {h}, the manifest says {}", e.sha256))
                }
                Ok(_) => decode_all(&path).err().map(|err| err.to_string()),
                Err(err) => Some(err.to_string()),
            },
        };
        match problem {
            Some(p) => {
                shared::say!("BAD  {}: {p}", path.display());
                bad.push(e.file.clone());
            }
            None => shared::say!("ok   {} ({} windows)", path.display(), e.windows),
        }
    }
    if !bad.is_empty() {
        bail!(
            "{}: {} of {} shard(s) failed verification: {}",
            dir.display(),
            bad.len(),
            m.shards.len(),
            bad.join(", ")
        );
    }
    shared::say!(
        "{}: all {} shard(s) verified",
        dir.display(),
        m.shards.len()
    );
    Ok(())
}

/// Opens a shard and decodes every row group (positions, windows, finite ref_loss).
fn decode_all(path: &Path) -> shared::Result<()> {
    let r = ShardReader::open(path)?;
    for g in 0..r.num_row_groups() {
        r.read_row_group(g)?;
    }
    Ok(())
}
