//! Where a shard's bytes come from: a memory map of a local file, or range
//! requests to an object in a bucket. The Parquet reader sees either through
//! [`Span`]: the bytes of one range of the file (the whole map, the footer,
//! or one row group's column chunks), addressed by file offset.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Result};
use crate::store::cache::Cache;
use crate::store::Store;

/// Bytes `[start, start + bytes.len())` of a file of `file_len` bytes.
pub struct Span {
    start: u64,
    bytes: Bytes,
    file_len: u64,
}

impl Span {
    fn slice(&self, start: u64, len: usize) -> parquet::errors::Result<Bytes> {
        let end = start.checked_add(len as u64);
        match end {
            Some(end) if start >= self.start && end <= self.start + self.bytes.len() as u64 => {
                let s = (start - self.start) as usize;
                Ok(self.bytes.slice(s..s + len))
            }
            _ => Err(parquet::errors::ParquetError::EOF(format!(
                "bytes {start}+{len} are outside the range read ({}..{})",
                self.start,
                self.start + self.bytes.len() as u64
            ))),
        }
    }
}

impl Length for Span {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Span {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let rest = (self.start + self.bytes.len() as u64).saturating_sub(start) as usize;
        Ok(self.slice(start, rest)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// The map as the bytes the Parquet reader takes.
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub enum Source {
    Mapped {
        map: Arc<memmap2::Mmap>,
        bytes: Bytes,
    },
    Remote {
        store: Store,
        name: String,
        len: u64,
        /// With a cache: the object is fetched whole (SHA-256 checked) on
        /// the first read of its data and mapped from the cache after.
        cache: Option<(Arc<Cache>, String)>,
        local: OnceLock<Box<Source>>,
    },
}

impl Source {
    /// Maps `path` read-only.
    ///
    /// # Safety
    /// The map is only sound while no one truncates or rewrites the file.
    /// Score shards are immutable by contract: they are written under a
    /// temporary name and renamed, never modified in place; a replaced shard
    /// keeps the old inode alive for this map.
    pub fn map(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::shard(path, "empty file (truncated shard?)"));
        }
        // SAFETY: see the function's documentation.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
        let bytes = Bytes::from_owner(SharedMap(map.clone()));
        Ok(Source::Mapped { map, bytes })
    }

    /// Object `name` of `len` bytes in `store`, read by range requests, or
    /// with `cache` (the cache and the object's SHA-256) fetched whole into it.
    pub fn remote(
        store: &Store,
        name: &str,
        len: u64,
        cache: Option<(Arc<Cache>, String)>,
    ) -> Result<Self> {
        if len < 8 {
            return Err(Error::Store {
                url: store.url_of(name),
                reason: format!("{len} bytes: too short for a Parquet file (truncated shard?)"),
            });
        }
        Ok(Source::Remote {
            store: store.clone(),
            name: name.to_string(),
            len,
            cache,
            local: OnceLock::new(),
        })
    }

    pub fn len(&self) -> u64 {
        match self {
            Source::Mapped { bytes, .. } => bytes.len() as u64,
            Source::Remote { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's footer (Parquet metadata, its length and the magic): two
    /// requests on a remote object, the whole map locally.
    pub fn footer(&self) -> Result<Span> {
        let (store, name, len) = match self {
            Source::Mapped { .. } => return self.range(0..self.len()),
            Source::Remote {
                store, name, len, ..
            } => (store, name, *len),
        };
        let tail = store.get_range(name, len - 8..len)?;
        let meta_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
        let start = len.checked_sub(8 + meta_len).ok_or_else(|| Error::Store {
            url: store.url_of(name),
            reason: format!("its footer claims {meta_len} bytes, more than the object holds"),
        })?;
        Ok(Span {
            start,
            bytes: store.get_range(name, start..len)?,
            file_len: len,
        })
    }

    /// Bytes `r` of the file (locally: the whole map, which costs nothing).
    pub fn range(&self, r: Range<u64>) -> Result<Span> {
        match self {
            Source::Mapped { bytes, .. } => Ok(Span {
                start: 0,
                bytes: bytes.clone(),
                file_len: bytes.len() as u64,
            }),
            Source::Remote {
                cache: Some((cache, sha256)),
                local,
                store,
                name,
                len,
            } => {
                if local.get().is_none() {
                    let path = cache.get(store, name, *len, sha256)?;
                    let _ = local.set(Box::new(Source::map(&path)?));
                }
                local.get().expect("set above").range(r)
            }
            Source::Remote { len, .. } if r.is_empty() => Ok(Span {
                start: r.start,
                bytes: Bytes::new(),
                file_len: *len,
            }),
            Source::Remote {
                store, name, len, ..
            } => Ok(Span {
                start: r.start,
                bytes: store.get_range(name, r)?,
                file_len: *len,
            }),
        }
    }

    /// Lets the kernel drop the mapped pages of bytes `r` from this process
    /// (they stay in the page cache); nothing for a remote object.
    pub fn release(&self, r: Range<u64>) {
        let map = match self {
            Source::Mapped { map, .. } => map,
            Source::Remote { local, .. } => {
                if let Some(l) = local.get() {
                    l.release(r);
                }
                return;
            }
        };
        let page = 4096u64;
        // Inward to whole pages: a neighbouring row group's pages stay.
        let (start, end) = (
            r.start.div_ceil(page) * page,
            (r.end / page * page).min(map.len() as u64),
        );
        if start < end {
            // SAFETY: a read-only file mapping: dropped pages are read back
            // from the (immutable, see `map`) file on the next access.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start as usize,
                    (end - start) as usize,
                )
            };
        }
    }
}
