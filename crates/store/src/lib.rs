//! Durable job store for the LongCat server: the request queue, job records, leases and
//! heartbeats, status history, job logs, usage accounting, webhook delivery attempts, and the
//! upload state (upload URLs, multipart parts, bearer upload tokens) every server shares.
//!
//! [`JobStore::connect`] takes `sqlite://PATH` (the default deployment: one file, created with
//! its directory if missing) or `postgres://…` (many workers on many machines). Both backends
//! share one set of queries and guarantee that a job is claimed by one worker at a time.
//! See `docs/store.md` for the schema, the state machine and the recovery rules.

mod connect;
mod error;
mod rows;
mod store;
mod types;

pub use error::{Result, StoreError};
pub use store::{JobStore, PurgedUploads, UploadPart, UploadToken, UploadUrl, CANCELLED_MESSAGE};
pub use types::{
    CancelOutcome, DueWebhook, Job, JobError, JobStatus, JobSummary, LogLine, NewJob, Priority,
    RecoveryReport, SubmitOptions, UnknownStatus, UsageSummary, WebhookAttempt, WebhookNext,
    WebhookState,
};
