//! `scorer verify`: every shard of a finished set against its manifest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use shared::scores::loss_range::LossRange;
use shared::scores::manifest::Manifest;
use shared::scores::shards::ShardReader;

/// `scorer verify`: check every shard of a score set against its manifest
/// (size, footer, SHA-256).
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Score set directory or bucket URL (s3://, gs://, az://).
    pub dir: PathBuf,
}

impl VerifyArgs {
    pub fn run(&self) -> Result<()> {
        verify(&self.dir)
    }
}

/// Re-reads every shard of a finished set: size, footer, content hash.
pub fn verify(dir: &Path) -> Result<()> {
    if let Some(url) = dir.to_str().filter(|s| shared::store::is_store_url(s)) {
        return verify_bucket(url);
    }
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
                Ok(_) => decode_all(&path, m.job.tokenizer.vocab_size)
                    .err()
                    .map(|err| err.to_string()),
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

/// Opens a shard and decodes every row group (positions, windows, finite
/// ref_loss, ref_loss a loss in nats for a vocabulary of `vocab`).
fn decode_all(path: &Path, vocab: usize) -> shared::Result<()> {
    check_rows(&ShardReader::open(path)?, vocab)
}

fn check_rows(r: &ShardReader, vocab: usize) -> shared::Result<()> {
    let mut range = LossRange::new(vocab);
    let rows_per_group = r.info().row_group_windows * r.info().seq_len;
    for g in 0..r.num_row_groups() {
        let w = r.read_row_group(g)?;
        if let Some(rl) = &w.ref_loss {
            range.add(
                rl,
                || r.path().display().to_string(),
                |i| g * rows_per_group + i,
            );
        }
    }
    range.check(r.path())
}

/// [`verify`] of a set in a bucket: the set opened (sizes, footers), then
/// each shard hashed as it streams and every row group decoded by range
/// requests (each shard is read twice).
fn verify_bucket(url: &str) -> Result<()> {
    let store = shared::store::Store::open(url)?;
    let set = shared::scores::scoreset::ScoreSet::open(Path::new(url))?;
    let m = set.manifest();
    let mut bad = Vec::new();
    for (i, e) in m.shards.iter().enumerate() {
        let problem = match store.sha256(&e.file) {
            Ok(h) if h != e.sha256 => {
                Some(format!("content hash {h}, the manifest says {}", e.sha256))
            }
            Ok(_) => check_rows(&set.shards()[i], m.job.tokenizer.vocab_size)
                .err()
                .map(|err| err.to_string()),
            Err(err) => Some(err.to_string()),
        };
        match problem {
            Some(p) => {
                shared::say!("BAD  {}: {p}", store.url_of(&e.file));
                bad.push(e.file.clone());
            }
            None => shared::say!("ok   {} ({} windows)", store.url_of(&e.file), e.windows),
        }
    }
    if !bad.is_empty() {
        bail!(
            "{url}: {} of {} shard(s) failed verification: {}",
            bad.len(),
            m.shards.len(),
            bad.join(", ")
        );
    }
    shared::say!("{url}: all {} shard(s) verified", m.shards.len());
    Ok(())
}
