//! Setup the worker's integration tests share: a scratch directory holding a SQLite job store
//! and a local file storage, removed when dropped.

use std::path::PathBuf;

use longcat_storage::Storage;
use longcat_store::JobStore;

/// A scratch directory with a job store (`jobs.db`) and file storage (`files/`).
pub struct Scratch {
    pub dir: PathBuf,
    pub store: JobStore,
    pub storage: Storage,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh scratch directory named after `tag`, its storage serving files under
/// `public_base_url`.
pub async fn scratch(tag: &str, public_base_url: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "longcat-worker-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = JobStore::connect(&format!("sqlite://{}", dir.join("jobs.db").display()))
        .await
        .unwrap();
    let storage =
        Storage::from_config(dir.join("files").to_str().unwrap(), public_base_url).unwrap();
    Scratch {
        dir,
        store,
        storage,
    }
}
