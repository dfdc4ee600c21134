//! Where a command reads and writes: local paths, and score sets in buckets.
//! A bucket URL (`s3://`, `gs://`, `az://`: [`crate::store::SCHEMES`], the
//! one list) passes through to the commands, which read score sets from it
//! and refuse it anywhere they would write a local file ([`local_output`]);
//! a URL of any other scheme (`https://...`) is refused by its scheme
//! before anything runs, never taken for a relative path (which would make a
//! local directory named `https:`); `file://` URLs are local paths and are
//! rewritten to them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The scheme of `s` when it is a URL (`scheme://...`, RFC 3986 scheme).
fn scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Whether `s` is a URL (of any scheme).
pub fn is_url(s: &str) -> bool {
    scheme(s).is_some()
}

/// Refuses a bucket URL where a command writes local files (the run
/// directory, an export, a derived set).
pub fn local_output(p: &Path) -> Result<()> {
    match p.to_str() {
        Some(s) if is_url(s) => Err(Error::Invalid(format!(
            "{s}: this command writes to local directories only; write it locally, then copy it with `scorer sync DIR URL`"
        ))),
        _ => Ok(()),
    }
}

/// `s` as a place to read: a bucket URL as it is, a `file://` URL as its
/// path, a path as itself; a URL of another scheme is an error naming it.
pub fn readable(s: &str) -> Result<PathBuf> {
    if crate::store::is_store_url(s) {
        return Ok(PathBuf::from(s));
    }
    local(s)
}

/// `s` as a local path: itself, or the path of a `file://` URL; a URL of
/// any other scheme is an error naming it.
pub fn local(s: &str) -> Result<PathBuf> {
    match scheme(s) {
        None => Ok(PathBuf::from(s)),
        Some(sc) if sc.eq_ignore_ascii_case("file") => {
            let rest = &s[sc.len() + 3..];
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "{s}: a file URL names an absolute path (file:///dir/set)"
                )));
            }
            Ok(PathBuf::from(path))
        }
        Some(sc) => Err(Error::Invalid(format!(
            "{s}: {sc}:// URLs are not supported here: give a local path (score sets may also be read from {})",
            crate::store::SCHEMES.iter().map(|k| format!("{k}://")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A path from a config file: [`local`] on its text.
pub fn check_local(p: &Path) -> Result<PathBuf> {
    match p.to_str() {
        Some(s) => local(s),
        None => Ok(p.to_path_buf()),
    }
}

/// A score set's place from a config file: [`readable`] on its text.
pub fn check_readable(p: &Path) -> Result<PathBuf> {
    match p.to_str() {
        Some(s) => readable(s),
        None => Ok(p.to_path_buf()),
    }
}

/// The command line with every `file://` URL made a local path, bucket
/// URLs kept, and any other URL refused, values of `--flag=value` included.
pub fn local_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else {
                return Ok(a); // not UTF-8: not a URL
            };
            let (flag, value) = match s.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (Some(f), v),
                _ => (None, s),
            };
            if scheme(value).is_none() {
                return Ok(a);
            }
            let path = readable(value)?.into_os_string();
            Ok(match flag {
                Some(f) => {
                    let mut o = OsString::from(format!("{f}="));
                    o.push(path);
                    o
                }
                None => path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn urls_are_refused_by_scheme_and_file_urls_become_paths() {
        let ok = local_args(args(&[
            "score",
            "--out",
            "file:///tmp/set",
            "--corpus=file://localhost/data/a.jsonl",
            "plain/dir",
            "weird:name",
        ]))
        .unwrap();
        assert_eq!(
            ok,
            args(&[
                "score",
                "--out",
                "/tmp/set",
                "--corpus=/data/a.jsonl",
                "plain/dir",
                "weird:name"
            ])
        );
        for url in ["https://host/x", "--data=http://b/x", "ftp://h/x"] {
            let err = local_args(args(&["train", url])).unwrap_err().to_string();
            assert!(err.contains("URLs are not supported here"), "{err}");
            assert!(err.contains(url.trim_start_matches("--data=")), "{err}");
        }
        let kept = args(&["train", "s3://bucket/set", "--data=gs://b/x", "az://c/x"]);
        assert_eq!(local_args(kept.clone()).unwrap(), kept);
        assert!(local("file://relative/x").is_err());
        assert!(local("s3://b/x").is_err());
        let err = local_output(Path::new("s3://b/run"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("writes to local directories only"), "{err}");
        assert!(local_output(Path::new("runs/x")).is_ok());
    }
}
