//! Score sets in buckets: `s3://` (and S3-compatible stores), `gs://` and
//! `az://` URLs through the Arrow project's `object_store` crate.
//! Credentials and endpoints come from the usual environment variables
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`; `AWS_ENDPOINT_URL` points at an
//! S3-compatible server, and an `http://` endpoint is allowed without TLS
//! because the user named it); none is written into a manifest, a log or a
//! message ([`redact`]). Requests are retried with exponential backoff
//! (`RHO1_STORE_RETRIES`, default 5, within `RHO1_STORE_RETRY_SECS`,
//! default 60) and then fail naming the object.

pub mod cache;
mod redact;
pub mod runtime;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use crate::error::{Error, Result};
pub use redact::redact;
use runtime::block_on;

/// The URL schemes this build reads and writes.
pub const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Uploads above this size go in parts of this size (S3's minimum part is
/// 5 MiB): 16 MiB, or `RHO1_STORE_PART_BYTES` (the tests' small parts).
fn part_bytes() -> usize {
    env_num("RHO1_STORE_PART_BYTES", 16 << 20).max(1) as usize
}

/// Whether `s` is a URL this build can open as a store.
pub fn is_store_url(s: &str) -> bool {
    s.split_once("://")
        .is_some_and(|(sc, _)| SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(sc)))
}

/// What went wrong, in words, from the store's error: the common causes
/// named, anything else as the client reports it (redacted, without the
/// server's XML).
fn reason(e: &object_store::Error) -> String {
    let text = e.to_string();
    let has = |k: &str| text.contains(k);
    if has("NoSuchBucket") {
        return "the bucket does not exist".into();
    }
    if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AccessDenied")
        || has("403 Forbidden")
        || has("401 Unauthorized")
    {
        return "access denied: the credentials from the environment (AWS_*, GOOGLE_*, AZURE_*) were refused".into();
    }
    match e {
        object_store::Error::NotFound { .. } => return "not found".into(),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            return "already exists".into()
        }
        _ => {}
    }
    let short = text
        .split("<?xml")
        .next()
        .unwrap_or(&text)
        .trim_end_matches([':', ' ']);
    redact(short)
}

/// A prefix ("directory") in a bucket.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The URL as given, without a trailing slash (it holds no credentials:
    /// those come from the environment).
    url: String,
    prefix: ObjectPath,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: env_num("RHO1_STORE_RETRIES", 5) as usize,
        retry_timeout: Duration::from_secs(env_num("RHO1_STORE_RETRY_SECS", 60)),
    }
}

fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(120))
}

impl Store {
    /// The bucket prefix `url` names, configured from the environment.
    /// Nothing is requested yet.
    pub fn open(url: &str) -> Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        let bad = |why: String| Error::Store {
            url: url.clone(),
            reason: why,
        };
        let parsed = url::Url::parse(&url).map_err(|e| bad(format!("not a valid URL: {e}")))?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        if !SCHEMES.contains(&scheme.as_str()) {
            return Err(bad(format!(
                "{scheme}:// is not supported by this build (it reads and writes {})",
                SCHEMES.join("://, ") + "://"
            )));
        }
        let made: object_store::Result<Arc<dyn ObjectStore>> = match scheme.as_str() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry())
                    .with_client_options(client_options());
                let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                    .iter()
                    .find_map(|k| std::env::var(k).ok());
                if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    b = b.with_allow_http(true);
                }
                b.build().map(|s| Arc::new(s) as _)
            }
            "gs" => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry())
                .with_client_options(client_options())
                .build()
                .map(|s| Arc::new(s) as _),
            _ => object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry())
                .with_client_options(client_options())
                .build()
                .map(|s| Arc::new(s) as _),
        };
        let inner = made.map_err(|e| bad(redact(&e.to_string())))?;
        let prefix = ObjectPath::parse(parsed.path().trim_matches('/'))
            .map_err(|e| bad(format!("not a valid object path: {e}")))?;
        Ok(Store { inner, url, prefix })
    }

    /// The URL of this prefix.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of object `name` under this prefix (`""`: the prefix).
    pub fn url_of(&self, name: &str) -> String {
        match name {
            "" => self.url.clone(),
            _ => format!("{}/{name}", self.url),
        }
    }

    /// The store for the prefix `name` below this one.
    pub fn child(&self, name: &str) -> Store {
        Store {
            inner: self.inner.clone(),
            url: self.url_of(name),
            prefix: self.path(name),
        }
    }

    fn path(&self, name: &str) -> ObjectPath {
        name.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }

    fn err(&self, name: &str, e: object_store::Error) -> Error {
        Error::Store {
            url: self.url_of(name),
            reason: reason(&e),
        }
    }

    /// The whole object `name`.
    pub fn get(&self, name: &str) -> Result<Bytes> {
        let p = self.path(name);
        block_on(async {
            let r = self.inner.get(&p).await?;
            r.bytes().await
        })
        .map_err(|e| self.err(name, e))
    }

    /// Object `name` downloaded to the local file `to` (which appears only
    /// complete), streamed; returns its SHA-256 (hex). `progress(bytes)` is
    /// called as chunks arrive.
    pub fn download(
        &self,
        name: &str,
        to: &std::path::Path,
        mut progress: impl FnMut(u64),
    ) -> Result<String> {
        use std::io::Write;
        crate::util::atomic::write_with(to, |f| {
            self.stream(name, |chunk| {
                f.write_all(chunk).map_err(|e| Error::io(to, e))?;
                progress(chunk.len() as u64);
                Ok(())
            })
        })
    }

    /// The SHA-256 (hex) of object `name`, streamed (bounded memory).
    pub fn sha256(&self, name: &str) -> Result<String> {
        self.stream(name, |_| Ok(()))
    }

    /// Object `name` chunk by chunk through `each`; its SHA-256 (hex).
    fn stream(&self, name: &str, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<String> {
        let p = self.path(name);
        block_on(async {
            let mut hasher = crate::util::hash::Hasher::new();
            let mut stream = self
                .inner
                .get(&p)
                .await
                .map_err(|e| self.err(name, e))?
                .into_stream();
            while let Some(chunk) = stream.try_next().await.map_err(|e| self.err(name, e))? {
                each(&chunk)?;
                hasher.update(&chunk);
            }
            Ok(hasher.finish())
        })
    }

    /// Bytes `range` of object `name`.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let p = self.path(name);
        let want = range.end - range.start;
        let b = block_on(self.inner.get_range(&p, range.clone())).map_err(|e| self.err(name, e))?;
        if b.len() as u64 != want {
            return Err(Error::Store {
                url: self.url_of(name),
                reason: format!(
                    "asked for bytes {}..{}, got {} bytes",
                    range.start,
                    range.end,
                    b.len()
                ),
            });
        }
        Ok(b)
    }

    /// The size of object `name`, or None when there is no such object.
    pub fn size(&self, name: &str) -> Result<Option<u64>> {
        let p = self.path(name);
        match block_on(self.inner.head(&p)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err(name, e)),
        }
    }

    /// Every object under this prefix: (name relative to it, size), sorted.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let metas: Vec<_> = block_on(self.inner.list(Some(&self.prefix)).try_collect::<Vec<_>>())
            .map_err(|e| self.err("", e))?;
        let base = self.prefix.as_ref();
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let rel = full
                    .strip_prefix(base)
                    .unwrap_or(full)
                    .trim_start_matches('/');
                (rel.to_string(), m.size)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Writes `bytes` as object `name` (replacing it).
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        let p = self.path(name);
        block_on(self.inner.put(&p, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.err(name, e))
    }

    /// Writes `bytes` as object `name` only if there is none (the store's
    /// conditional put): Ok(false) when one exists already.
    pub fn put_new(&self, name: &str, bytes: Bytes) -> Result<bool> {
        let p = self.path(name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match block_on(self.inner.put_opts(&p, PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.err(name, e)),
        }
    }

    /// Uploads the local file `from` as object `name`. The object appears
    /// only complete: a small file in one put, a large one as a multipart
    /// upload that is completed last and aborted on any error.
    pub fn put_file(&self, name: &str, from: &std::path::Path) -> Result<()> {
        use std::io::Read;
        let len = std::fs::metadata(from)
            .map_err(|e| Error::io(from, e))?
            .len();
        let part = part_bytes();
        if len <= part as u64 {
            let data = std::fs::read(from).map_err(|e| Error::io(from, e))?;
            return self.put(name, Bytes::from(data));
        }
        let p = self.path(name);
        let mut file = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
        // One future for the whole upload: the parts are tasks of the runtime.
        block_on(async {
            let upload = self
                .inner
                .put_multipart(&p)
                .await
                .map_err(|e| self.err(name, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, part);
            let mut buf = vec![0u8; part];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(Error::io(from, e));
                    }
                };
                if n == 0 {
                    return w.finish().await.map(|_| ()).map_err(|e| self.err(name, e));
                }
                if let Err(e) = w.wait_for_capacity(4).await {
                    let _ = w.abort().await;
                    return Err(self.err(name, e));
                }
                w.write(&buf[..n]);
                crate::util::fault::point(&format!("upload-part:{name}"));
            }
        })
    }

    /// Deletes object `name` (absent is not an error).
    pub fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name);
        match block_on(self.inner.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }
}
