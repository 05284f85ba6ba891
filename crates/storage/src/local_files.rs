//! Lets the image loader read `image_url`s that point at our own stored files directly.

use longcat_media::input::BoxFuture;
use longcat_media::LocalFiles;
use url::Url;

use crate::{Storage, StorageError};

/// [`LocalFiles`] over a [`Storage`]: URLs under `{public_base_url}/files/` are read from
/// storage (no HTTP, no SSRF exposure), refusing files above `max_bytes`.
#[derive(Debug, Clone)]
pub struct StoredImageFiles {
    storage: Storage,
    max_bytes: u64,
}

impl StoredImageFiles {
    /// Reads through `storage`, at most `max_bytes` per file.
    pub fn new(storage: Storage, max_bytes: u64) -> Self {
        Self { storage, max_bytes }
    }
}

impl LocalFiles for StoredImageFiles {
    fn open(&self, url: &Url) -> Option<BoxFuture<Result<Vec<u8>, String>>> {
        let key = self.storage.key_from_url(url.as_str())?;
        let storage = self.storage.clone();
        let max = self.max_bytes;
        Some(Box::pin(async move {
            storage.read_all(&key, max).await.map_err(|e| match e {
                StorageError::NotFound(_) => format!("stored file '{key}' does not exist"),
                other => format!("reading stored file '{key}' failed: {other}"),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn serves_only_our_urls() {
        let dir = std::env::temp_dir().join(format!("longcat-lf-{}", uuid::Uuid::new_v4()));
        let storage = Storage::from_config(dir.to_str().unwrap(), "http://srv:9").unwrap();
        storage
            .put_bytes("uploads/u/a.png", Bytes::from_static(b"abc"), "image/png")
            .await
            .unwrap();
        let files = StoredImageFiles::new(storage, 1024);
        let ours = Url::parse("http://srv:9/files/uploads/u/a.png").unwrap();
        assert_eq!(files.open(&ours).unwrap().await.unwrap(), b"abc");
        let missing = Url::parse("http://srv:9/files/uploads/u/b.png").unwrap();
        let err = files.open(&missing).unwrap().await.unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(files
            .open(&Url::parse("https://example.com/files/uploads/u/a.png").unwrap())
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
