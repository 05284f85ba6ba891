//! The server's view of its in-process workers: something it wakes after each submit and
//! stops at shutdown. `longcat serve` plugs `longcat_worker::WorkerPool` in here; tests can
//! plug a test double.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use longcat_storage::Storage;
use longcat_store::JobStore;
use longcat_worker::WorkerConfig;

/// Running in-process workers.
pub trait Workers: Send + Sync {
    /// Wakes idle workers (a job was just submitted).
    fn notify(&self);
    /// Why the model engine can run no more jobs (a panic it could not recover from);
    /// `None` while it works. `/health` reports it.
    fn engine_error(&self) -> Option<String> {
        None
    }
    /// Stops the workers (running jobs finish or are left for requeueing).
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What workers are started with: the server's store and storage and a worker configuration
/// filled from the server's (public URL, lease, SSRF policy, webhook signing key).
pub struct WorkerContext {
    /// The job store.
    pub store: JobStore,
    /// Output storage.
    pub storage: Storage,
    /// Worker settings.
    pub config: WorkerConfig,
}

/// Starts the in-process workers once the server knows its address.
pub type SpawnWorkers = Arc<dyn Fn(WorkerContext) -> Box<dyn Workers> + Send + Sync>;
