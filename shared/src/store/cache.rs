//! A size-bounded local cache of shards fetched whole from a bucket, for
//! the next epoch or run: each file is named by its SHA-256
//! (`<dir>/<sha256>.parquet`), checked when it is downloaded and written
//! atomically, and hashed again when a process first uses it, so what is
//! read is a verified copy; the directory may be shared by every set and
//! run. When a download would pass the
//! bound, the least recently used files are removed first (a file still
//! mapped by a reader stays readable: its inode lives until unmapped).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::store::Store;

pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    /// One download at a time: two readers wanting one shard fetch it once.
    fill: Mutex<()>,
}

impl Cache {
    /// The cache in `dir` (created if missing), holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        crate::util::location::local_output(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_bytes,
            fill: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A local, verified copy of object `name` of `store` (`len` bytes,
    /// SHA-256 `sha256`): from the cache, or downloaded into it.
    pub fn get(&self, store: &Store, name: &str, len: u64, sha256: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{sha256}.parquet"));
        let _one = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == len);
        // A copy is hashed again once per process (a local read, ~1 GB/s):
        // a cache damaged on disk is fetched again, never read.
        if present && crate::util::hash::hash_file(&path)? != sha256 {
            crate::say!(
                "{}: damaged in the cache, fetching it again",
                path.display()
            );
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        } else if present {
            // Touch it: the eviction order is by modification time.
            let _ = std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(path);
        }
        if len > self.max_bytes {
            return Err(Error::Invalid(format!(
                "{}: {len} bytes, more than the cache {} may hold ({} bytes): raise --cache-gb",
                store.url_of(name),
                self.dir.display(),
                self.max_bytes
            )));
        }
        self.make_room(len)?;
        let got = store.download(name, &path, |_| {})?;
        if got != sha256 {
            let _ = std::fs::remove_file(&path);
            return Err(Error::Store {
                url: store.url_of(name),
                reason: format!(
                    "its SHA-256 is {}..., manifest.json records {}...: the object changed after it was written",
                    &got[..12],
                    &sha256[..12.min(sha256.len())]
                ),
            });
        }
        Ok(path)
    }

    /// Removes the least recently used files until `need` more bytes fit.
    fn make_room(&self, need: u64) -> Result<()> {
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let e = e.map_err(|e| Error::io(&self.dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".parquet") || name.starts_with('.') {
                continue;
            }
            if let Ok(m) = e.metadata() {
                files.push((
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    e.path(),
                ));
            }
        }
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        for (_, len, path) in files {
            if total + need <= self.max_bytes {
                break;
            }
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            total -= len;
        }
        Ok(())
    }
}
