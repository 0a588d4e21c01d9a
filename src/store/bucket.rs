//! One bucket of an S3-compatible object store (Garage, Ceph's radosgw, AWS S3), through
//! the maintained `object_store` crate, for the engine's synchronous threads.
//!
//! Every call retries transient failures (the store unreachable, a quorum missing, a 5xx)
//! with exponential backoff until `timeout` has passed since it began, then fails: a write
//! waits out a short outage instead of failing at once, and fails cleanly after a long one.
//! Answers that a retry cannot change (a wrong key, a missing bucket) fail at once.
//!
//! Only sealed bytes are handed to it (see `object`), under names that say nothing of
//! their contents.

use super::{Error, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::future::Future;
use std::io::Read;
use std::time::{Duration, Instant};

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct BucketConfig {
    /// `http(s)://host:port` of the S3 API.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Every object name starts with this (several volumes may share a bucket).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// How long a call keeps retrying before it fails.
    pub timeout: Duration,
}

impl std::fmt::Debug for BucketConfig {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A bucket, with the runtime its client runs on.
pub struct Bucket {
    client: std::sync::Arc<AmazonS3>,
    /// Taken by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    config: BucketConfig,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Without waiting: the last handle may go on a thread of another runtime, where a
        // blocking shutdown would panic. Every call has returned by now.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An object's name (below the prefix) and size.
pub type Listed = (String, u64);

impl Bucket {
    /// A client for the bucket (no request is made).
    pub fn connect(config: BucketConfig) -> Result<Self> {
        let client = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            // Retries are ours (`retrying`), bounded by time rather than by count.
            .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(5).min(config.timeout))
                    .with_timeout(config.timeout.max(Duration::from_secs(30))),
            )
            .build()
            .map_err(|e| Error::Remote(format!("object store settings: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        Ok(Self { client: std::sync::Arc::new(client), runtime: Some(runtime), config })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{name}", self.config.prefix))
    }

    /// Runs `f` on the client's runtime from a synchronous thread (any thread: a tokio
    /// worker too, which `block_on` would refuse), retrying transient failures.
    fn retrying<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(std::sync::Arc<AmazonS3>) -> Fut + Send + 'static,
        Fut: Future<Output = object_store::Result<T>> + Send,
    {
        let client = self.client.clone();
        let timeout = self.config.timeout;
        let what = what.to_string();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.as_ref().expect("the runtime lives until drop").spawn(async move {
            let start = Instant::now();
            let mut wait = Duration::from_millis(100);
            let result = loop {
                match f(client.clone()).await {
                    Ok(v) => break Ok(v),
                    Err(e) if permanent(&e) => break Err(e),
                    Err(e) if start.elapsed() + wait > timeout => {
                        tracing::warn!(error = %e, "object store: {what}: giving up after {:?}", start.elapsed());
                        break Err(e);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "object store: {what}: retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            };
            let _ = tx.send(result);
        });
        match rx.recv() {
            Ok(r) => r.map_err(remote_error),
            Err(_) => Err(Error::Remote("the object store client stopped".into())),
        }
    }

    /// Stores `bytes` as `name`, replacing any object of that name.
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(name);
        self.retrying(&format!("put {name}"), move |c| {
            let (path, payload) = (path.clone(), PutPayload::from(bytes.clone()));
            async move { c.put(&path, payload).await.map(|_| ()) }
        })
    }

    /// Stores the file at `path` as `name`, in parts of `PART` bytes (so that its size
    /// never sits in memory); a failure starts the whole upload again.
    pub fn put_file(&self, name: &str, path: &std::path::Path) -> Result<()> {
        const PART: usize = 16 << 20;
        let (object, file) = (self.path(name), path.to_path_buf());
        self.retrying(&format!("put {name}"), move |c| {
            let (object, file) = (object.clone(), file.clone());
            async move {
                let io = |e: std::io::Error| object_store::Error::Generic { store: "file", source: Box::new(e) };
                let size = std::fs::metadata(&file).map_err(io)?.len();
                if size <= PART as u64 {
                    let bytes = std::fs::read(&file).map_err(io)?;
                    return c.put(&object, PutPayload::from(bytes)).await.map(|_| ());
                }
                let mut upload = c.put_multipart(&object).await?;
                let mut f = std::fs::File::open(&file).map_err(io)?;
                let sent: object_store::Result<()> = async {
                    loop {
                        let mut part = Vec::with_capacity(PART);
                        std::io::Read::by_ref(&mut f).take(PART as u64).read_to_end(&mut part).map_err(io)?;
                        if part.is_empty() {
                            return Ok(());
                        }
                        upload.put_part(PutPayload::from(part)).await?;
                    }
                }
                .await;
                match sent {
                    Ok(()) => upload.complete().await.map(|_| ()),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(e)
                    }
                }
            }
        })
    }

    /// The object `name`; `None` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<Bytes>> {
        let path = self.path(name);
        let got = self.retrying(&format!("get {name}"), move |c| {
            let path = path.clone();
            async move { c.get(&path).await?.bytes().await }
        });
        match got {
            Ok(b) => Ok(Some(b)),
            Err(Error::RemoteMissing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `name` (absent already is fine).
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match self.retrying(&format!("delete {name}"), move |c| {
            let path = path.clone();
            async move { c.delete(&path).await }
        }) {
            Ok(()) | Err(Error::RemoteMissing) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The objects whose names (below the prefix) start with `dir`, in name order.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let path = self.path(dir);
        let strip = self.config.prefix.clone();
        let mut listed = self.retrying(&format!("list {dir}"), move |c| {
            let (path, strip) = (path.clone(), strip.clone());
            async move {
                let mut out = Vec::new();
                let mut stream = c.list(Some(&path));
                while let Some(meta) = stream.next().await {
                    let meta = meta?;
                    let name = meta.location.as_ref();
                    out.push((name.strip_prefix(strip.as_str()).unwrap_or(name).to_string(), meta.size));
                }
                Ok(out)
            }
        })?;
        listed.sort();
        Ok(listed)
    }
}

/// Whether no retry can change the answer.
fn permanent(e: &object_store::Error) -> bool {
    if matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::InvalidPath { .. }
    ) {
        return true;
    }
    // Other requests (a listing) fail as `Generic`, with the HTTP status only in the text
    // of the error they wrap: a 4xx but a timeout (408) or a slow-down (429) is the
    // store's last word (a wrong key, no such bucket).
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.split("status code: ")
        .skip(1)
        .any(|rest| rest.starts_with('4') && !rest.starts_with("408") && !rest.starts_with("429"))
}

fn remote_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::RemoteMissing,
        e => Error::Remote(e.to_string()),
    }
}
