//! [`Storage`]: one object store (local directory or S3-compatible bucket) plus the public
//! base URL its files are served under.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, PutOptions, PutPayload,
};
use tokio::io::AsyncWriteExt;

use crate::keys::validate_key;
use crate::StorageError;

/// Default local storage directory.
pub const DEFAULT_LOCAL_DIR: &str = "./data/files";

/// Buffer (and multipart part) size for streaming uploads.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A local directory.
    Local {
        /// The directory (created if missing).
        root: PathBuf,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (no leading/trailing `/`; may be empty).
        prefix: String,
    },
}

/// A file that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its key.
    pub key: String,
    /// Its public URL.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What is known about a stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type (stored attribute, else guessed from the extension).
    pub content_type: String,
    /// Last modification time.
    pub last_modified: DateTime<Utc>,
    /// Entity tag, when the backend has one.
    pub e_tag: Option<String>,
}

/// (Part of) a stored file, as a stream of bytes.
pub struct FileContent {
    /// The whole file's metadata.
    pub meta: FileMeta,
    /// The byte range the body covers (the whole file when no range was asked for).
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub body: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl std::fmt::Debug for FileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContent")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl FileContent {
    /// Collects the body into memory (tests, small files).
    pub async fn into_bytes(self) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity((self.range.end - self.range.start) as usize);
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// Output and upload files. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    public_base_url: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

impl Storage {
    /// Opens the storage `target`: a local directory path (`file://` prefix optional; created if
    /// missing) or `s3://bucket[/prefix]` (region, endpoint and credentials from the `AWS_*`
    /// environment variables, e.g. `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`).
    /// Public URLs are `{public_base_url}/files/{key}`.
    pub fn from_config(target: &str, public_base_url: &str) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::InvalidTarget {
            target: target.to_string(),
            reason,
        };
        let target_trimmed = target.trim();
        if let Some(rest) = target_trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("the bucket name is missing".into()));
            }
            let prefix = prefix.trim_matches('/').to_string();
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, Path::from(prefix.as_str())))
            };
            let backend = Backend::S3 {
                bucket: bucket.to_string(),
                prefix,
            };
            return Ok(Self::from_parts(store, backend, public_base_url));
        }
        let dir = target_trimmed
            .strip_prefix("file://")
            .unwrap_or(target_trimmed);
        if dir.is_empty() {
            return Err(invalid("the directory is empty".into()));
        }
        if dir.contains("://") {
            return Err(invalid(
                "expected a directory path or s3://bucket/prefix".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
        let root = std::fs::canonicalize(dir).map_err(|e| invalid(e.to_string()))?;
        let local = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| invalid(e.to_string()))?
            // Deleting a file also removes the directories it leaves empty.
            .with_automatic_cleanup(true);
        Ok(Self::from_parts(
            Arc::new(local),
            Backend::Local { root },
            public_base_url,
        ))
    }

    /// Wraps any object store (e.g. `object_store::memory::InMemory` in tests).
    pub fn from_parts(
        store: Arc<dyn ObjectStore>,
        backend: Backend,
        public_base_url: &str,
    ) -> Self {
        Self {
            store,
            backend,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The same storage with another public base URL (e.g. the server's externally visible one).
    pub fn with_public_base_url(&self, public_base_url: &str) -> Self {
        Self::from_parts(self.store.clone(), self.backend.clone(), public_base_url)
    }

    /// Where files live.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The base URL public file URLs start with (no trailing `/`).
    pub fn public_base_url(&self) -> &str {
        &self.public_base_url
    }

    /// `{public_base_url}/files/{key}` (keys need no escaping, see [`crate::keys`]).
    pub fn public_url(&self, key: &str) -> String {
        format!("{}/files/{key}", self.public_base_url)
    }

    /// The key of one of our public file URLs (query and fragment ignored), or `None`.
    pub fn key_from_url(&self, url: &str) -> Option<String> {
        let prefix = format!("{}/files/", self.public_base_url);
        let rest = url.strip_prefix(&prefix)?;
        let key = rest.split(['?', '#']).next().unwrap_or("");
        validate_key(key).ok()?;
        Some(key.to_string())
    }

    /// Streams the local file at `local_path` into `key` (multipart for large files; never
    /// holds the whole file in memory).
    pub async fn put_file(
        &self,
        key: &str,
        local_path: &FsPath,
        content_type: &str,
    ) -> Result<StoredFile, StorageError> {
        self.put_files(key, &[local_path], content_type).await
    }

    /// Streams the concatenation of the local files `parts`, in order, into `key` (an
    /// assembled multipart upload): no joined copy is written and at most one buffer of
    /// [`PART_SIZE`] bytes is held. All parts are opened first, so a missing one fails
    /// before anything is written.
    pub async fn put_files(
        &self,
        key: &str,
        parts: &[&FsPath],
        content_type: &str,
    ) -> Result<StoredFile, StorageError> {
        let path = object_path(key)?;
        let mut sources = Vec::with_capacity(parts.len());
        let mut size = 0u64;
        for part in parts {
            let file = tokio::fs::File::open(part).await?;
            size += file.metadata().await?.len();
            sources.push(file);
        }
        let mut writer = BufWriter::with_capacity(self.store.clone(), path, PART_SIZE)
            .with_attributes(self.attributes(content_type));
        let mut copied = Ok(0);
        for source in &mut sources {
            copied = tokio::io::copy(source, &mut writer).await;
            if copied.is_err() {
                break;
            }
        }
        let result = match copied {
            Ok(_) => writer.shutdown().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key, error = %abort, "aborting a failed upload failed");
            }
            return Err(StorageError::Io(e));
        }
        Ok(self.stored(key, size))
    }

    /// Streams the concatenation of the stored files `sources`, in order, into `key` (a
    /// multipart upload whose parts were stored by any server sharing this storage): at most
    /// one buffer of [`PART_SIZE`] bytes is held. Every source is looked up first, so a
    /// missing one ([`StorageError::NotFound`]) fails before anything is written. The
    /// sources are left in place.
    pub async fn put_objects(
        &self,
        key: &str,
        sources: &[&str],
        content_type: &str,
    ) -> Result<StoredFile, StorageError> {
        let path = object_path(key)?;
        for source in sources {
            self.head(source).await?;
        }
        let mut writer = BufWriter::with_capacity(self.store.clone(), path, PART_SIZE)
            .with_attributes(self.attributes(content_type));
        let mut size = 0u64;
        let mut copied: Result<(), StorageError> = Ok(());
        'sources: for source in sources {
            let mut body = match self.get_range(source, None).await {
                Ok(content) => content.body,
                Err(e) => {
                    copied = Err(e);
                    break;
                }
            };
            while let Some(chunk) = body.next().await {
                let written = match chunk {
                    Ok(bytes) => {
                        size += bytes.len() as u64;
                        writer.write_all(&bytes).await.map_err(StorageError::Io)
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    copied = Err(e);
                    break 'sources;
                }
            }
        }
        let result = match copied {
            Ok(()) => writer.shutdown().await.map_err(StorageError::Io),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key, error = %abort, "aborting a failed upload failed");
            }
            return Err(e);
        }
        Ok(self.stored(key, size))
    }

    /// Stores `bytes` under `key`.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<StoredFile, StorageError> {
        let path = object_path(key)?;
        let size = bytes.len() as u64;
        let opts = PutOptions {
            attributes: self.attributes(content_type),
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from_bytes(bytes), opts)
            .await?;
        Ok(self.stored(key, size))
    }

    /// Metadata of `key` (`NotFound` if absent).
    pub async fn head(&self, key: &str) -> Result<FileMeta, StorageError> {
        let path = object_path(key)?;
        // A zero-length read returns the attributes too, which `head` does not.
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        let res = self.store.get_opts(&path, opts).await?;
        Ok(file_meta(key, &res.meta, &res.attributes))
    }

    /// Reads `key`, or the bytes `range` of it (clamped to the file's end; a start at or past
    /// the end is [`StorageError::InvalidRange`]).
    pub async fn get_range(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<FileContent, StorageError> {
        let path = object_path(key)?;
        if let Some(r) = &range {
            if r.start >= r.end {
                let size = self.head(key).await?.size;
                return Err(StorageError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
        }
        let opts = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let res = match self.store.get_opts(&path, opts).await {
            Ok(res) => res,
            Err(object_store::Error::NotFound { path, .. }) => {
                return Err(StorageError::NotFound(path))
            }
            Err(e) => {
                // Most backends report an unsatisfiable range as a generic error: say which.
                if let Some(r) = &range {
                    if let Ok(meta) = self.head(key).await {
                        if r.start >= meta.size {
                            return Err(StorageError::InvalidRange {
                                start: r.start,
                                end: r.end,
                                size: meta.size,
                            });
                        }
                    }
                }
                return Err(e.into());
            }
        };
        let meta = file_meta(key, &res.meta, &res.attributes);
        let range = res.range.clone();
        let body = res.into_stream().map_err(StorageError::from).boxed();
        Ok(FileContent { meta, range, body })
    }

    /// Reads the whole file into memory, refusing files larger than `max_bytes`.
    pub async fn read_all(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        let content = self.get_range(key, None).await?;
        if content.meta.size > max_bytes {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "file is larger than the {max_bytes} byte limit"
            ))));
        }
        content.into_bytes().await
    }

    /// Deletes `key` (absent keys are not an error).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = object_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every file whose key starts with the folder `prefix` (e.g. `outputs/<id>`),
    /// only those last modified before `before` when given. Returns how many were deleted.
    pub async fn delete_under(
        &self,
        prefix: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<u64, StorageError> {
        let prefix = object_path(prefix.trim_end_matches('/'))?;
        let mut listing = self.store.list(Some(&prefix));
        let mut deleted = 0;
        while let Some(meta) = listing.try_next().await? {
            if before.is_some_and(|b| meta.last_modified >= b) {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    fn stored(&self, key: &str, size: u64) -> StoredFile {
        StoredFile {
            key: key.to_string(),
            url: self.public_url(key),
            size,
        }
    }

    /// The content type as an object attribute, where the backend keeps attributes
    /// (the local file system does not: there it is derived from the extension).
    fn attributes(&self, content_type: &str) -> Attributes {
        let mut attrs = Attributes::new();
        if matches!(self.backend, Backend::S3 { .. }) && !content_type.is_empty() {
            attrs.insert(Attribute::ContentType, content_type.to_string().into());
        }
        attrs
    }
}

fn object_path(key: &str) -> Result<Path, StorageError> {
    validate_key(key)?;
    Path::parse(key).map_err(|_| StorageError::InvalidKey {
        key: key.to_string(),
        reason: "not a valid object path",
    })
}

fn file_meta(key: &str, meta: &object_store::ObjectMeta, attrs: &Attributes) -> FileMeta {
    let content_type = attrs
        .get(&Attribute::ContentType)
        .map(|v| v.to_string())
        .unwrap_or_else(|| guess_content_type(key));
    FileMeta {
        key: key.to_string(),
        size: meta.size,
        content_type,
        last_modified: meta.last_modified,
        e_tag: meta.e_tag.clone(),
    }
}

/// MIME type from a key's extension (`application/octet-stream` when unknown).
pub(crate) fn guess_content_type(key: &str) -> String {
    mime_guess::from_path(key)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "longcat-storage-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn urls_map_back_to_keys() {
        let dir = temp_dir("urls");
        let storage = Storage::from_config(dir.to_str().unwrap(), "http://127.0.0.1:8080").unwrap();
        assert_eq!(
            storage.key_from_url("http://127.0.0.1:8080/files/uploads/u/a.png?x=1"),
            Some("uploads/u/a.png".into())
        );
        assert_eq!(
            storage.key_from_url("http://127.0.0.1:8080/files/../secret"),
            None
        );
        assert_eq!(
            storage.key_from_url("http://other/files/uploads/u/a.png"),
            None
        );
        assert_eq!(storage.key_from_url("http://127.0.0.1:8080/file/a"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn targets_are_parsed() {
        let err = Storage::from_config("s3://", "http://x").unwrap_err();
        assert!(matches!(err, StorageError::InvalidTarget { .. }));
        assert!(Storage::from_config("gs://bucket", "http://x").is_err());
        assert!(Storage::from_config("", "http://x").is_err());
        // S3 clients are built lazily: no network at construction.
        let s3 = Storage::from_config("s3://bucket/some/prefix/", "http://x").unwrap();
        assert_eq!(
            s3.backend(),
            &Backend::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
    }
}
