//! An output directory a command may write into: one that does not exist
//! yet, an empty one, or one that this tool made (it holds the command's own
//! marker file, e.g. `job.json` or `settings.json`). A user's folder with
//! other files in it is refused, so nothing is written among them.

use std::path::Path;

use crate::error::{Error, Result};

/// Refuses `dir` when it exists and holds files but none whose name starts
/// with one of `markers`.
/// `what` names what the command writes there ("a score set").
pub fn check_ours(dir: &Path, markers: &[&str], what: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "--out {}: a file, not a directory",
            dir.display()
        )));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // does not exist yet
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty()
        || markers
            .iter()
            .any(|m| names.iter().any(|n| n.starts_with(m)))
    {
        return Ok(());
    }
    let mut shown: Vec<&str> = names.iter().map(String::as_str).collect();
    shown.sort();
    shown.truncate(3);
    Err(Error::Invalid(format!(
        "--out {} holds files that are not {what} ({}{}): choose a new or empty directory",
        dir.display(),
        shown.join(", "),
        if names.len() > 3 { ", ..." } else { "" }
    )))
}

/// Refuses an output directory that cannot be made or written: below a file,
/// on a read-only file system, or where this user may not create files. The
/// nearest existing directory on its path is probed with a file created and
/// removed at once, before any work starts.
pub fn check_writable(dir: &Path) -> Result<()> {
    crate::util::location::local_output(dir)?;
    let mut at = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    if !at.is_dir() {
        return Err(Error::Invalid(format!(
            "--out {}: {} is a file, so no directory can be made under it",
            dir.display(),
            at.display()
        )));
    }
    let probe = at.join(format!(".rho1-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Invalid(format!(
            "--out {}: cannot write in {} ({e})",
            dir.display(),
            at.display()
        ))),
    }
}

/// Bytes free to this user on the file system holding `dir` (or its nearest
/// existing parent); None where it cannot be asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let mut at = std::path::absolute(dir).ok()?;
    while !at.exists() {
        at = at.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory
    // of the struct statvfs fills; it is read only when the call succeeds.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it wrote the whole struct.
    let st = unsafe { st.assume_init() };
    // u64 on 64-bit Linux, narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Refuses an output directory at or below one of the `inputs` directories
/// (a score set written into its corpus directory would be read back as corpus).
pub fn check_outside(dir: &Path, inputs: &[std::path::PathBuf], what: &str) -> Result<()> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let out = abs(dir);
    for input in inputs.iter().filter(|i| i.is_dir()) {
        let input_abs = input.canonicalize().unwrap_or_else(|_| abs(input));
        let out_resolved = resolve_existing_prefix(&out);
        if out_resolved.starts_with(&input_abs) {
            return Err(Error::Invalid(format!(
                "--out {} is inside the {what} directory {}, which would then read it back: choose a directory outside it",
                dir.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// `p` with its longest existing prefix canonicalized (symlinks resolved).
fn resolve_existing_prefix(p: &Path) -> std::path::PathBuf {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_folder_is_refused_and_ours_or_empty_are_not() {
        let dir = std::env::temp_dir().join(format!("rho1-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        check_ours(&dir, &["job.json"], "a score set").unwrap(); // does not exist
        std::fs::create_dir_all(&dir).unwrap();
        check_ours(&dir, &["job.json"], "a score set").unwrap(); // empty
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = check_ours(&dir, &["job.json"], "a score set").unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
        std::fs::write(dir.join("job.json"), "{}").unwrap();
        check_ours(&dir, &["job.json"], "a score set").unwrap();
        let inside = dir.join("sub/set");
        let e = check_outside(&inside, std::slice::from_ref(&dir), "corpus").unwrap_err();
        assert!(e.to_string().contains("inside the corpus directory"), "{e}");
        check_outside(
            &std::env::temp_dir().join("elsewhere"),
            std::slice::from_ref(&dir),
            "corpus",
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
