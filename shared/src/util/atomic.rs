//! Files and directories that appear complete or not at all: everything is
//! written under a temporary name in the same directory, flushed to disk, then
//! renamed (an atomic operation on POSIX file systems).
//!
//! Every file gets the permissions the user's umask gives a newly created
//! file, however it was written: some writers (safetensors' own temporary
//! file, for one) create files readable by their owner only, which would keep
//! a checkpoint or score set from the people it is handed to.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name for `path`: hidden, unique to this process, and
/// recognisable (`*.tmp-PID`) so that leftovers of a killed process can be
/// removed by the next run.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// True for a name made by [`temp_path`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Creates `path` atomically with whatever `write` puts into the file.
pub fn write_with<T>(path: &Path, write: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    crate::util::location::local_output(path)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let out = write(&mut f)?;
        f.flush().map_err(|e| Error::io(&tmp, e))?;
        set_default_mode(&tmp, umask_mode(tmp.parent())?)?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        crate::util::fault::point(&format!("atomic:{}", file_name(path)));
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_parent(path);
        Ok(out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` atomically with `bytes`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Writes a file inside a directory that is itself being made atomically.
pub fn write_plain(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Creates directory `dir` atomically: `fill` writes into a temporary
/// directory that replaces `dir` only when complete.
pub fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    crate::util::location::local_output(dir)?;
    let tmp = temp_path(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        fill(&tmp)?;
        let mode = umask_mode(Some(&tmp))?;
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let p = entry.map_err(|e| Error::io(&tmp, e))?.path();
            set_default_mode(&p, mode)?;
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&p, e))?;
        }
        crate::util::fault::point(&format!("atomic:{}", file_name(dir)));
        if dir.exists() {
            // rename(2) cannot replace a non-empty directory: move the old one
            // aside first; a crash in between leaves the old one under `.old`.
            let old = dir.with_file_name(format!(
                ".{}.old-{}",
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        }
        sync_parent(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The mode (permission bits) a file created now in `dir` gets: 0o666 less
/// the process's umask, read off a probe file since std cannot read the umask.
#[cfg(unix)]
fn umask_mode(dir: Option<&Path>) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".mode-probe.tmp-{}", std::process::id()));
    let mode = File::create(&probe)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| Error::io(&probe, e));
    let _ = std::fs::remove_file(&probe);
    mode
}

#[cfg(not(unix))]
fn umask_mode(_dir: Option<&Path>) -> Result<u32> {
    Ok(0)
}

/// Gives a regular file the mode a newly created file gets (see [`umask_mode`]).
#[cfg(unix)]
fn set_default_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() && meta.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_default_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
