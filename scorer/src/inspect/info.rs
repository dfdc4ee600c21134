//! `scorer info`: a score set's manifest summary, as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shared::scores::manifest::Manifest;

/// `scorer info`: print a score set's manifest summary.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Score set directory.
    pub dir: PathBuf,
}

impl InfoArgs {
    pub fn run(&self) -> Result<()> {
        let m = Manifest::load(&self.dir)
            .with_context(|| format!("reading score set {}", self.dir.display()))?;
        shared::out!(
            "{}",
            serde_json::to_string_pretty(&crate::job::summary(&m))?
        );
        Ok(())
    }
}
