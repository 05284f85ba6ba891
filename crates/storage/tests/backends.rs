//! The storage scenarios, each run against a local directory and against an S3-compatible
//! server. The S3 runs need `LONGCAT_TEST_S3_STORAGE=s3://bucket` and the `AWS_*` settings,
//! which `scripts/with-s3.sh` starts a local server for and exports:
//!
//! ```sh
//! scripts/with-s3.sh cargo test -p longcat-storage --test backends
//! ```
//!
//! Without them the S3 runs skip (and say so on stderr).

use std::path::PathBuf;

use bytes::Bytes;
use chrono::Utc;
use longcat_media::LocalFiles;
use longcat_storage::{output_key, upload_key, Backend, Storage, StorageError, StoredImageFiles};

/// Larger than the storage's 8 MiB part: streaming writes take the multipart path.
const BIG: usize = 2 * 8 * 1024 * 1024 + 12345;
const PUBLIC: &str = "http://127.0.0.1:9";

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("longcat-storage-it-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh local storage and the directory to delete afterwards.
fn local() -> (Storage, PathBuf) {
    let dir = temp_dir("local");
    let storage = Storage::from_config(dir.join("files").to_str().unwrap(), PUBLIC).unwrap();
    (storage, dir)
}

/// A fresh prefix in the test bucket, or `None` (with a note) when no S3 server is configured.
fn s3() -> Option<Storage> {
    let Ok(base) = std::env::var("LONGCAT_TEST_S3_STORAGE") else {
        eprintln!(
            "SKIPPED: LONGCAT_TEST_S3_STORAGE is not set; run under scripts/with-s3.sh for the S3 backend"
        );
        return None;
    };
    let target = format!("{}/t-{}", base.trim_end_matches('/'), uuid::Uuid::new_v4());
    Some(Storage::from_config(&target, PUBLIC).unwrap())
}

/// Runs scenario `$name` once per backend: `$name::local` and `$name::s3`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn local() {
                let (storage, dir) = super::local();
                super::$name(&storage).await;
                std::fs::remove_dir_all(&dir).unwrap();
            }

            #[tokio::test]
            async fn s3() {
                if let Some(storage) = super::s3() {
                    assert!(matches!(storage.backend(), super::Backend::S3 { .. }));
                    super::$name(&storage).await;
                }
            }
        }
    )*};
}

on_both_backends!(
    streams_and_reads_ranges,
    bytes_head_overwrite_delete,
    concatenates_local_parts,
    concatenates_stored_parts,
    deletes_folders_and_older_files,
    our_urls_read_back,
);

async fn streams_and_reads_ranges(storage: &Storage) {
    let dir = temp_dir("src");
    let data = pattern(BIG);
    let src = dir.join("video.mp4");
    std::fs::write(&src, &data).unwrap();
    let key = output_key("req-1", "output.mp4").unwrap();
    let stored = storage.put_file(&key, &src, "video/mp4").await.unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(
        stored.url,
        format!("{PUBLIC}/files/outputs/req-1/output.mp4")
    );

    let all = storage.get_range(&key, None).await.unwrap();
    assert_eq!(all.meta.size, data.len() as u64);
    assert_eq!(all.meta.content_type, "video/mp4");
    assert_eq!(all.range, 0..data.len() as u64);
    assert!(all.into_bytes().await.unwrap() == data);

    let part = storage.get_range(&key, Some(100..200)).await.unwrap();
    assert_eq!(part.range, 100..200);
    assert_eq!(part.meta.size, data.len() as u64);
    assert_eq!(part.into_bytes().await.unwrap(), &data[100..200]);

    // Across the 8 MiB part boundary of the multipart write.
    let cut = 8 * 1024 * 1024u64;
    let across = storage
        .get_range(&key, Some(cut - 7..cut + 9))
        .await
        .unwrap();
    assert_eq!(
        across.into_bytes().await.unwrap(),
        &data[cut as usize - 7..cut as usize + 9]
    );

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

async fn bytes_head_overwrite_delete(storage: &Storage) {
    let key = upload_key("cat.png");
    let stored = storage
        .put_bytes(&key, Bytes::from_static(b"\x89PNG...."), "image/png")
        .await
        .unwrap();
    assert_eq!(stored.size, 8);
    let meta = storage.head(&key).await.unwrap();
    assert_eq!(meta.size, 8);
    assert_eq!(meta.content_type, "image/png");
    assert!(meta.e_tag.is_some());
    assert_eq!(storage.read_all(&key, 8).await.unwrap(), b"\x89PNG....");
    assert!(storage.read_all(&key, 7).await.is_err());

    // The stored content type wins over the extension where the backend keeps it (S3);
    // the local file system derives it from the extension.
    let blob = upload_key("blob.bin");
    storage
        .put_bytes(&blob, Bytes::from_static(b"x"), "image/webp")
        .await
        .unwrap();
    let expected = match storage.backend() {
        Backend::S3 { .. } => "image/webp",
        Backend::Local { .. } => "application/octet-stream",
    };
    assert_eq!(storage.head(&blob).await.unwrap().content_type, expected);

    // Overwriting replaces the bytes.
    storage
        .put_bytes(&key, Bytes::from_static(b"second"), "image/png")
        .await
        .unwrap();
    assert_eq!(storage.read_all(&key, 100).await.unwrap(), b"second");

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
}

async fn concatenates_local_parts(storage: &Storage) {
    let dir = temp_dir("parts");
    let data = pattern(BIG);
    let part = 8 * 1024 * 1024;
    let cuts = [0, part - 5, part - 5, part + 3, data.len()];
    let mut paths = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let p = dir.join(format!("part{i}"));
        std::fs::write(&p, &data[w[0]..w[1]]).unwrap();
        paths.push(p);
    }
    let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    let key = "uploads/u1/big.bin";
    let stored = storage
        .put_files(key, &refs, "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert!(storage.read_all(key, u64::MAX).await.unwrap() == data);
    let missing = dir.join("nope");
    assert!(storage
        .put_files("uploads/u2/x.bin", &[refs[0], &missing], "")
        .await
        .is_err());
    assert!(matches!(
        storage.head("uploads/u2/x.bin").await,
        Err(StorageError::NotFound(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn concatenates_stored_parts(storage: &Storage) {
    let data = pattern(BIG);
    let part = 8 * 1024 * 1024;
    // Small and empty parts as clients send them, and one larger than a buffer.
    let cuts = [0, 10, 10, 5000, part + 4000, data.len()];
    let mut keys = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let key = format!("upload-parts/p1/{}", i + 1);
        storage
            .put_bytes(&key, Bytes::copy_from_slice(&data[w[0]..w[1]]), "")
            .await
            .unwrap();
        keys.push(key);
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let key = "uploads/u3/joined.mp4";
    let stored = storage.put_objects(key, &refs, "video/mp4").await.unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert!(storage.read_all(key, u64::MAX).await.unwrap() == data);
    assert_eq!(storage.head(key).await.unwrap().content_type, "video/mp4");
    // The parts are left for the caller to delete.
    assert_eq!(
        storage.delete_under("upload-parts/p1", None).await.unwrap(),
        keys.len() as u64
    );
    // A missing part fails before anything is written.
    storage
        .put_bytes("upload-parts/p2/1", Bytes::from_static(b"a"), "")
        .await
        .unwrap();
    let err = storage
        .put_objects(
            "uploads/u4/x.bin",
            &["upload-parts/p2/1", "upload-parts/p2/2"],
            "",
        )
        .await;
    assert!(matches!(err, Err(StorageError::NotFound(_))), "{err:?}");
    assert!(matches!(
        storage.head("uploads/u4/x.bin").await,
        Err(StorageError::NotFound(_))
    ));
}

async fn deletes_folders_and_older_files(storage: &Storage) {
    for key in [
        "outputs/a/output.mp4",
        "outputs/a/extra.gif",
        "outputs/ab/output.mp4",
    ] {
        storage
            .put_bytes(key, Bytes::from_static(b"data"), "video/mp4")
            .await
            .unwrap();
    }
    assert_eq!(storage.delete_under("outputs/a", None).await.unwrap(), 2);
    assert!(storage.head("outputs/a/output.mp4").await.is_err());
    // A sibling whose name merely starts the same is kept.
    assert!(storage.head("outputs/ab/output.mp4").await.is_ok());
    assert_eq!(
        storage.delete_under("outputs/missing", None).await.unwrap(),
        0
    );
    // With a cut-off, only files modified before it go.
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        storage.delete_under("outputs", Some(past)).await.unwrap(),
        0
    );
    let future = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        storage.delete_under("outputs", Some(future)).await.unwrap(),
        1
    );
    assert!(storage.head("outputs/ab/output.mp4").await.is_err());
    assert!(storage.delete_under("../x", None).await.is_err());
}

async fn our_urls_read_back(storage: &Storage) {
    let stored = storage
        .put_bytes("uploads/u/a.png", Bytes::from_static(b"abc"), "image/png")
        .await
        .unwrap();
    assert_eq!(
        storage.key_from_url(&format!("{}?x=1", stored.url)),
        Some("uploads/u/a.png".into())
    );
    let files = StoredImageFiles::new(storage.clone(), 1024);
    let ours = url::Url::parse(&stored.url).unwrap();
    assert_eq!(files.open(&ours).unwrap().await.unwrap(), b"abc");
    let missing = url::Url::parse(&format!("{PUBLIC}/files/uploads/u/b.png")).unwrap();
    let err = files.open(&missing).unwrap().await.unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    let small = StoredImageFiles::new(storage.clone(), 2);
    assert!(small.open(&ours).unwrap().await.is_err());
}
