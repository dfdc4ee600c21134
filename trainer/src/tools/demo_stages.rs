//! What made each stage of a `trainer demo` work directory. A rerun reuses a
//! stage only when the settings that define it are the ones recorded; when
//! they differ it is refused, naming each setting, so that a report never
//! states new settings over an old run's figures. The record is
//! `stages.json` in the work directory: stage directory -> settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub const STAGES_FILE: &str = "stages.json";

/// The settings that define a stage, by name (flat: a stage's map holds
/// those of the stages it is made from too).
pub type Made = BTreeMap<String, Value>;

pub struct Stages {
    file: PathBuf,
    work: PathBuf,
    recorded: BTreeMap<String, Made>,
}

impl Stages {
    pub fn open(work: &Path) -> Result<Self> {
        let file = work.join(STAGES_FILE);
        let recorded = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: not a stage record", file.display()))?,
            Err(_) => BTreeMap::new(),
        };
        Ok(Stages {
            file,
            work: work.to_path_buf(),
            recorded,
        })
    }

    /// Before a stage writes `out`: refuses an existing `out` made by other
    /// settings (or by a version that did not record them), then records
    /// `made` for it.
    pub fn claim(&mut self, out: &Path, made: &Made) -> Result<()> {
        let key = out
            .strip_prefix(&self.work)
            .unwrap_or(out)
            .to_string_lossy()
            .into_owned();
        match self.recorded.get(&key) {
            Some(old) if old == made => return Ok(()),
            Some(old) => {
                let diffs: Vec<String> = old
                    .keys()
                    .chain(made.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| old.get(*k) != made.get(*k))
                    .map(|k| format!("{k}: {} -> {}", show(old.get(k)), show(made.get(k))))
                    .collect();
                bail!(
                    "{} was made with other settings than this run's:\n  {}\nUse another --work directory, or delete {} to make it anew.",
                    out.display(),
                    diffs.join("\n  "),
                    out.display()
                );
            }
            None if out.exists() => bail!(
                "{} exists but {} does not say what made it (an older demo?): use another --work directory, or delete {}",
                out.display(),
                self.file.display(),
                out.display()
            ),
            None => {}
        }
        self.recorded.insert(key, made.clone());
        let json = serde_json::to_string_pretty(&self.recorded)?;
        shared::util::atomic::write_file(&self.file, json.as_bytes())?;
        Ok(())
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or("(unset)".into(), |v| v.to_string())
}

/// `made` plus the given settings.
pub fn with(made: &Made, more: &[(&str, Value)]) -> Made {
    let mut m = made.clone();
    for (k, v) in more {
        m.insert(k.to_string(), v.clone());
    }
    m
}
