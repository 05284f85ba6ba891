//! Worker settings.

use std::path::PathBuf;
use std::time::Duration;

use longcat_media::input::{AddressPolicy, IpRange};
use longcat_media::{EncoderConfig, ImageInputConfig};

use crate::prompt_expansion::ExpansionConfig;
use crate::safety::SafetyState;
use crate::webhook::WebhookConfig;

/// Settings shared by every worker of a [`crate::WorkerPool`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Worker ids are `{prefix}-{host}-{pid}-{n}`.
    pub worker_id_prefix: String,
    /// Lease taken on a claimed job; renewed by heartbeats.
    pub lease: Duration,
    /// Time between heartbeats (keep well under `lease`).
    pub heartbeat_interval: Duration,
    /// How often an idle worker looks for work (besides [`crate::WorkerPool::notify`]).
    pub poll_interval: Duration,
    /// How often a running job's cancel flag is read from the store.
    pub cancel_poll_interval: Duration,
    /// How often the pool requeues jobs whose lease expired (`None`: never; another process does).
    pub recover_interval: Option<Duration>,
    /// Least time between two progress log lines of one job (stage changes always log).
    pub progress_log_interval: Duration,
    /// Let `image_url` reach loopback and private addresses (tests, trusted networks).
    pub allow_private_image_urls: bool,
    /// Public base URL of the server (output URLs, and recognising our own `/files/` URLs).
    pub public_base_url: String,
    /// Image fetching limits and SSRF policy.
    pub image_input: ImageInputConfig,
    /// FFmpeg program and scratch directory.
    pub encoder: EncoderConfig,
    /// Webhook signing and retries.
    pub webhook: WebhookConfig,
    /// Largest video returned inline as a data URI for `sync_mode` (beyond: a 422 on `sync_mode`).
    pub sync_mode_max_bytes: u64,
    /// At shutdown, how long a running job may take to finish before it is stopped and left
    /// for requeueing (its lease expires and recovery puts it back in the queue).
    pub shutdown_grace: Duration,
    /// Where `enable_prompt_expansion` sends prompts (`None`: not configured; the prompt is
    /// kept and the job log says why).
    pub prompt_expansion: Option<ExpansionConfig>,
    /// The safety checker (`enable_safety_checker`); [`SafetyState::Off`] by default here,
    /// loaded from [`crate::WorkerSettings`] by the commands (on by default there).
    pub safety: SafetyState,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id_prefix: "worker".into(),
            lease: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            cancel_poll_interval: Duration::from_secs(1),
            recover_interval: Some(Duration::from_secs(5)),
            progress_log_interval: Duration::from_secs(2),
            allow_private_image_urls: false,
            public_base_url: "http://127.0.0.1:8080".into(),
            image_input: ImageInputConfig::default(),
            encoder: EncoderConfig::default(),
            webhook: WebhookConfig::default(),
            sync_mode_max_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(600),
            prompt_expansion: None,
            safety: SafetyState::Off,
        }
    }
}

/// Non-public ranges `allow_private_image_urls` opens: loopback, RFC 1918, CGNAT and IPv6
/// unique-local. Link-local and cloud metadata addresses stay blocked.
pub const PRIVATE_RANGES: [&str; 7] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

impl WorkerConfig {
    /// The image input settings with `allow_private_image_urls` applied.
    pub fn effective_image_input(&self) -> ImageInputConfig {
        let mut cfg = self.image_input.clone();
        if self.allow_private_image_urls {
            cfg.policy = with_private(&cfg.policy);
        }
        cfg
    }

    /// Scratch directory for encoded videos.
    pub fn work_dir(&self) -> PathBuf {
        self.encoder.work_dir.clone()
    }
}

fn with_private(policy: &AddressPolicy) -> AddressPolicy {
    let mut allow = policy.allow.clone();
    for r in PRIVATE_RANGES {
        if let Ok(range) = r.parse::<IpRange>() {
            if !allow.contains(&range) {
                allow.push(range);
            }
        }
    }
    AddressPolicy { allow }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_switch_opens_loopback_but_not_metadata() {
        let mut cfg = WorkerConfig::default();
        let strict = cfg.effective_image_input().policy;
        assert!(strict.check("127.0.0.1".parse().unwrap()).is_err());
        cfg.allow_private_image_urls = true;
        let open = cfg.effective_image_input().policy;
        assert!(open.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(open.check("192.168.1.2".parse().unwrap()).is_ok());
        assert!(open.check("169.254.169.254".parse().unwrap()).is_err());
        assert_eq!(PRIVATE_RANGES.len(), open.allow.len());
    }
}
