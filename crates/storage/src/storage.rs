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
    use crate::keys::output_key;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "longcat-storage-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn put_files_concatenates_parts_in_order() {
        let dir = temp_dir("parts");
        let storage =
            Storage::from_config(dir.join("files").to_str().unwrap(), "http://h:1").unwrap();
        // Parts straddling the buffer size, one of them empty.
        let data = pattern(PART_SIZE * 2 + 777);
        let cuts = [0, PART_SIZE - 5, PART_SIZE - 5, PART_SIZE + 3, data.len()];
        let mut paths = Vec::new();
        for (i, w) in cuts.windows(2).enumerate() {
            let p = dir.join(format!("part{i}"));
            std::fs::write(&p, &data[w[0]..w[1]]).unwrap();
            paths.push(p);
        }
        let refs: Vec<&FsPath> = paths.iter().map(PathBuf::as_path).collect();
        let key = "uploads/u1/big.bin";
        let stored = storage.put_files(key, &refs, "").await.unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(std::fs::read(dir.join("files").join(key)).unwrap(), data);
        // A missing part fails before anything is stored.
        let missing = dir.join("nope");
        let err = storage
            .put_files("uploads/u2/x.bin", &[refs[0], &missing], "")
            .await;
        assert!(err.is_err());
        assert!(!dir.join("files/uploads/u2/x.bin").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn local_put_file_streams_and_reads_back_with_ranges() {
        let dir = temp_dir("put");
        let storage =
            Storage::from_config(dir.join("files").to_str().unwrap(), "http://h:1/").unwrap();
        assert_eq!(storage.public_base_url(), "http://h:1");
        // Larger than one part: exercises the multipart path.
        let data = pattern(PART_SIZE * 2 + 12345);
        let src = dir.join("video.mp4");
        std::fs::write(&src, &data).unwrap();
        let key = output_key("req-1", "output.mp4").unwrap();
        let stored = storage.put_file(&key, &src, "video/mp4").await.unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(stored.url, "http://h:1/files/outputs/req-1/output.mp4");
        assert_eq!(
            std::fs::read(dir.join("files/outputs/req-1/output.mp4")).unwrap(),
            data
        );

        let all = storage.get_range(&key, None).await.unwrap();
        assert_eq!(all.meta.size, data.len() as u64);
        assert_eq!(all.meta.content_type, "video/mp4");
        assert_eq!(all.range, 0..data.len() as u64);
        assert_eq!(all.into_bytes().await.unwrap(), data);

        let part = storage.get_range(&key, Some(100..200)).await.unwrap();
        assert_eq!(part.range, 100..200);
        assert_eq!(part.meta.size, data.len() as u64);
        assert_eq!(part.into_bytes().await.unwrap(), &data[100..200]);

        let n = data.len() as u64;
        let tail = storage.get_range(&key, Some(n - 10..n + 50)).await.unwrap();
        assert_eq!(tail.range, n - 10..n);
        assert_eq!(tail.into_bytes().await.unwrap(), &data[data.len() - 10..]);

        assert!(matches!(
            storage.get_range(&key, Some(n..n + 1)).await,
            Err(StorageError::InvalidRange { .. })
        ));
        assert!(matches!(
            storage.get_range(&key, Some(5..5)).await,
            Err(StorageError::InvalidRange { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn put_bytes_head_delete_and_missing_files() {
        let dir = temp_dir("bytes");
        let storage = Storage::from_config(dir.to_str().unwrap(), "https://x.test").unwrap();
        let key = crate::keys::upload_key("cat.png");
        let stored = storage
            .put_bytes(&key, Bytes::from_static(b"\x89PNG...."), "image/png")
            .await
            .unwrap();
        assert_eq!(stored.size, 8);
        let meta = storage.head(&key).await.unwrap();
        assert_eq!(meta.size, 8);
        assert_eq!(meta.content_type, "image/png");
        assert_eq!(storage.read_all(&key, 8).await.unwrap(), b"\x89PNG....");
        assert!(storage.read_all(&key, 7).await.is_err());
        storage.delete(&key).await.unwrap();
        storage.delete(&key).await.unwrap();
        assert!(matches!(
            storage.head(&key).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            storage.get_range("outputs/none/x.mp4", None).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            storage.get_range("../etc/passwd", None).await,
            Err(StorageError::InvalidKey { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn delete_under_removes_a_folder_or_its_older_files() {
        let dir = temp_dir("under");
        let storage = Storage::from_config(dir.to_str().unwrap(), "https://x.test").unwrap();
        let put = |key: &'static str| {
            let storage = storage.clone();
            async move {
                storage
                    .put_bytes(key, Bytes::from_static(b"data"), "video/mp4")
                    .await
                    .unwrap();
            }
        };
        put("outputs/a/output.mp4").await;
        put("outputs/a/extra.gif").await;
        put("outputs/ab/output.mp4").await;
        assert_eq!(storage.delete_under("outputs/a", None).await.unwrap(), 2);
        assert!(storage.head("outputs/a/output.mp4").await.is_err());
        // A sibling whose name merely starts the same is kept; the emptied folder is gone.
        assert!(storage.head("outputs/ab/output.mp4").await.is_ok());
        assert!(!dir.join("outputs/a").exists());
        assert_eq!(
            storage.delete_under("outputs/missing", None).await.unwrap(),
            0
        );

        // With a cut-off, only files modified before it go.
        let cutoff = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(
            storage.delete_under("outputs", Some(cutoff)).await.unwrap(),
            0
        );
        let future = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(
            storage.delete_under("outputs", Some(future)).await.unwrap(),
            1
        );
        assert!(storage.delete_under("../x", None).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
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
