//! One part of a (possibly split) job in its output directory: the lock that
//! keeps a second process off the same part, and the clean-up of temporary
//! files that killed processes left behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use shared::util::lock::DirLock;

/// An advisory lock on this part of the job (`shared::util::lock`): a
/// second process on the same part is refused naming the holder, other parts
/// run freely, and the kernel releases the lock when the holder dies, so a
/// killed job never leaves it stuck. The file is removed when the part is
/// done, so a finished set holds none.
pub struct PartLock {
    path: PathBuf,
    _lock: DirLock,
}

impl PartLock {
    pub fn acquire(dir: &Path, part: usize, parts: usize) -> Result<Self> {
        let name = format!(".lock-part-{part}-of-{parts}");
        let what = format!("another scorer is already writing part {part} of {parts}");
        Ok(PartLock {
            path: dir.join(&name),
            _lock: DirLock::acquire(dir, &name, &what)?,
        })
    }
}

impl Drop for PartLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes temporary files left by killed processes (their PID is gone).
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !shared::util::atomic::is_temp_name(&name) {
            continue;
        }
        let pid = name
            .rsplit("tmp-")
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    Ok(())
}
