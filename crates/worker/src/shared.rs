//! [`Shared`]: the state every job slot, the recovery loop and the webhook outbox of one pool
//! hold together (store, storage, image loader, webhook sender, settings, wake-ups, engine).

use longcat_media::ImageLoader;
use longcat_storage::Storage;
use longcat_store::JobStore;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;
use crate::model_thread::ModelThread;
use crate::prompt_expansion::PromptExpander;
use crate::webhook::WebhookSender;

/// What every worker of a pool shares.
pub(crate) struct Shared {
    pub store: JobStore,
    pub storage: Storage,
    pub loader: ImageLoader,
    pub webhooks: WebhookSender,
    /// The client of `config.prompt_expansion`, built once.
    pub prompt_expander: Option<PromptExpander>,
    pub config: WorkerConfig,
    pub notify: Notify,
    /// Wakes the webhook loop (a job finished, or a delivery slot freed).
    pub webhook_wake: Notify,
    /// Webhook attempts in flight.
    pub deliveries: TaskTracker,
    /// The engine every slot hands its jobs to.
    pub engine: ModelThread,
}
