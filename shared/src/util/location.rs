//! Where a command reads and writes: local paths. A URL on the command line
//! (`s3://bucket/set`, `gs://...`, `az://...`, `https://...`) is refused by
//! its scheme before anything runs, never taken for a relative path (which
//! would make a local directory named `s3:`); `file://` URLs are local paths
//! and are rewritten to them.

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
            "{s}: {sc}:// URLs are not supported by this build, which reads and writes local paths only; copy the set to a local directory (or mount the bucket) and pass its path"
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

/// The command line with every `file://` URL made a local path and any
/// other URL refused, values of `--flag=value` included.
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
            let path = local(value)?.into_os_string();
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
        for url in [
            "s3://bucket/set",
            "gs://b/x",
            "az://c/x",
            "https://host/x",
            "--data=s3://b/x",
        ] {
            let err = local_args(args(&["train", url])).unwrap_err().to_string();
            assert!(
                err.contains("URLs are not supported by this build"),
                "{err}"
            );
            assert!(err.contains(url.trim_start_matches("--data=")), "{err}");
        }
        assert!(local("file://relative/x").is_err());
    }
}
