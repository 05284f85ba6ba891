//! A uniquely named scratch file that is deleted when dropped.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Owns a file path; the file is removed on drop unless [`TempFile::keep`] was called.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Creates a new empty file `longcat-<unique>.<ext>` in `dir` (never reusing a name).
    pub fn create(dir: &Path, ext: &str) -> io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("longcat-{}-{nanos:x}-{n}.{ext}", std::process::id());
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(Self { path, keep: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `dest` (rename, or copy when across file systems); from then on it
    /// lives at `dest` and is no longer deleted on drop. On error the scratch file stays owned.
    pub fn persist(&mut self, dest: &Path) -> io::Result<()> {
        if std::fs::rename(&self.path, dest).is_err() {
            std::fs::copy(&self.path, dest)?;
            let _ = std::fs::remove_file(&self.path);
        }
        self.path = dest.to_path_buf();
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
