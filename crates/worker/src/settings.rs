//! [`WorkerSettings`]: what `longcat serve` (for its in-process workers) and `longcat worker`
//! share, declared once and resolved the same way in both: a flag, then its `LONGCAT_*`
//! environment variable, then the TOML `--config` file, then the default here. Booleans
//! follow the same order: `--allow-private-webhook-urls=false` (or the variable set to
//! `false`) turns off a `true` in the file.

use std::path::PathBuf;
use std::time::Duration;

use longcat_core::TextEncoderPolicy;
use longcat_core::VaeTiling;
use longcat_media::input::{AddressPolicy, IpRange};
use serde::Deserialize;

use crate::config::{WorkerConfig, PRIVATE_RANGES};
use crate::prompt_expansion::{ExpansionConfig, OnFailure};
use crate::safety::{SafetyLayer, SafetySettings, SafetyState};

/// Default job store.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/longcat.db";
/// Default output and upload storage.
pub const DEFAULT_STORAGE: &str = "./data/files";
/// Default Ed25519 webhook signing key file: the server publishes its public key, so every
/// process of a deployment must sign with this same file.
pub const DEFAULT_WEBHOOK_KEY_FILE: &str = "./data/webhook-ed25519.key";
/// Default public base URL of `longcat worker` (the server's default address); `longcat
/// serve` uses its own address instead.
pub const DEFAULT_WORKER_PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// Default model device.
pub const DEFAULT_DEVICE: &str = "auto";
/// Default job slots per engine.
pub const DEFAULT_WORKERS: usize = 1;
/// Default ffmpeg program.
pub const DEFAULT_FFMPEG: &str = "ffmpeg";

/// One layer of worker settings, every field optional: `clap` fills one from flags and
/// environment variables, serde one from the TOML file (keys named like the flags, with `_`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WorkerLayer {
    /// Job store: `sqlite://path` or `postgres://…` (shared by the server and every worker)
    /// [default: sqlite://./data/longcat.db].
    #[arg(long, env = "LONGCAT_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Output/upload storage: a directory or `s3://bucket/prefix` (AWS_* variables configure
    /// S3) [default: ./data/files].
    #[arg(long, env = "LONGCAT_STORAGE", value_name = "DIR|s3://…")]
    pub storage: Option<String>,
    /// Externally visible base URL of the server, used in returned URLs [default: serve: its
    /// own address; worker: http://127.0.0.1:8080].
    #[arg(long, env = "LONGCAT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// LongCat-Video checkpoint directory [default: the built-in tiny random model, output
    /// is noise].
    #[arg(long, env = "LONGCAT_WEIGHTS", value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Where the model runs: auto, cpu, cuda, cuda:N [default: auto].
    #[arg(long, env = "LONGCAT_DEVICE", value_name = "DEVICE")]
    pub device: Option<String>,
    /// Where the text encoder stays between jobs: resident, offload or reload [default: offload].
    #[arg(long, env = "LONGCAT_TEXT_ENCODER", value_name = "POLICY")]
    pub text_encoder: Option<String>,
    /// Spatial tiling of the VAE, `TILE[,OVERLAP]` in latent pixels (8 video pixels each;
    /// OVERLAP defaults to TILE/4), e.g. `32,8`; bounds the VAE's memory by the tile, and
    /// changes the output slightly near tile borders (docs/vae.md) [default: off].
    #[arg(long, env = "LONGCAT_VAE_TILING", value_name = "TILE[,OVERLAP]")]
    pub vae_tiling: Option<String>,
    /// Job slots per engine: one job runs on the engine while the others finish (upload,
    /// completion, webhook); a job is claimed only when the engine can start it. `serve`:
    /// 0 = no in-process engine (jobs run in `longcat worker` processes) [default: 1].
    #[arg(long, env = "LONGCAT_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Ed25519 webhook signing key file, created if missing; the server publishes its public
    /// key at /.well-known/jwks.json, so all processes must use the same file
    /// [default: ./data/webhook-ed25519.key].
    #[arg(long, env = "LONGCAT_WEBHOOK_KEY_FILE", value_name = "FILE")]
    pub webhook_key_file: Option<PathBuf>,
    /// Shared secret for the optional `X-Longcat-Signature` (HMAC) webhook header.
    #[arg(long, env = "LONGCAT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Let image_url reach loopback and private networks (tests, trusted networks only);
    /// `=false` turns off a `true` from the config file [default: false].
    #[arg(long, env = "LONGCAT_ALLOW_PRIVATE_IMAGE_URLS", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_image_urls: Option<bool>,
    /// Let fal_webhook targets be loopback/private addresses (tests, trusted networks only);
    /// `=false` turns off a `true` from the config file [default: false].
    #[arg(long, env = "LONGCAT_ALLOW_PRIVATE_WEBHOOK_URLS", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_webhook_urls: Option<bool>,
    /// Lease on a claimed job in seconds: a job whose worker stops heartbeating (every
    /// lease/4) is requeued after it [default: 60].
    #[arg(long, env = "LONGCAT_LEASE_SECONDS", value_name = "SECONDS")]
    pub lease_seconds: Option<f64>,
    /// Seconds a running job may take to finish at shutdown before it is stopped and
    /// requeued [default: 600].
    #[arg(long, env = "LONGCAT_SHUTDOWN_GRACE_SECS", value_name = "SECONDS")]
    pub shutdown_grace_secs: Option<u64>,
    /// The ffmpeg program [default: ffmpeg].
    #[arg(long, env = "LONGCAT_FFMPEG", value_name = "PROGRAM")]
    pub ffmpeg: Option<PathBuf>,
    /// Scratch directory for videos being encoded [default: the system temp directory].
    #[arg(long, env = "LONGCAT_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Prompt expansion (`enable_prompt_expansion`).
    #[command(flatten)]
    #[serde(flatten)]
    pub prompt_expansion: PromptExpansionLayer,
    /// The safety checker (`enable_safety_checker`).
    #[command(flatten)]
    #[serde(flatten)]
    pub safety: SafetyLayer,
}

/// The prompt-expansion settings, one layer (flattened into [`WorkerLayer`]; `longcat
/// generate` takes the same flags).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PromptExpansionLayer {
    /// OpenAI-compatible API for `enable_prompt_expansion`, e.g. `http://127.0.0.1:8000/v1`
    /// (`/chat/completions` is appended); its key comes from LONGCAT_PROMPT_EXPANSION_KEY
    /// [default: none: requests asking for expansion keep their prompt, with a log line].
    #[arg(long, env = "LONGCAT_PROMPT_EXPANSION_URL", value_name = "URL")]
    pub prompt_expansion_url: Option<String>,
    /// The `model` sent to the prompt-expansion API (required with its URL).
    #[arg(long, env = "LONGCAT_PROMPT_EXPANSION_MODEL", value_name = "NAME")]
    pub prompt_expansion_model: Option<String>,
    /// Seconds each prompt-expansion attempt may take (3 attempts) [default: 30].
    #[arg(
        long,
        env = "LONGCAT_PROMPT_EXPANSION_TIMEOUT_SECS",
        value_name = "SECONDS"
    )]
    pub prompt_expansion_timeout_secs: Option<f64>,
    /// When prompt expansion fails: `original` (go on with the user's prompt, logged) or
    /// `fail` (the job fails) [default: original].
    #[arg(
        long,
        env = "LONGCAT_PROMPT_EXPANSION_ON_FAILURE",
        value_name = "original|fail"
    )]
    pub prompt_expansion_on_failure: Option<String>,
}

/// Environment variable holding the prompt-expansion API key (never a flag or file key, so
/// it does not show in process lists or config files).
pub const PROMPT_EXPANSION_KEY_ENV: &str = "LONGCAT_PROMPT_EXPANSION_KEY";
/// Default limit on each prompt-expansion attempt.
pub const DEFAULT_PROMPT_EXPANSION_TIMEOUT_SECS: f64 = 30.0;
/// Prompt-expansion attempts per job.
pub const PROMPT_EXPANSION_ATTEMPTS: u32 = 3;

/// Resolved worker settings (see the module docs for the order).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Job store URL.
    pub database_url: String,
    /// Storage target.
    pub storage: String,
    /// Public base URL, when given.
    pub public_url: Option<String>,
    /// Checkpoint directory (`None`: the tiny model).
    pub weights: Option<PathBuf>,
    /// Device spec (`auto`, `cpu`, `cuda[:N]`).
    pub device: String,
    /// Text encoder policy.
    pub text_encoder: TextEncoderPolicy,
    /// VAE spatial tiling (`None`: whole frames).
    pub vae_tiling: Option<VaeTiling>,
    /// Job slots per engine.
    pub workers: usize,
    /// Ed25519 signing key file.
    pub webhook_key_file: PathBuf,
    /// HMAC secret.
    pub webhook_secret: Option<String>,
    /// Private image URLs allowed.
    pub allow_private_image_urls: bool,
    /// Private webhook URLs allowed.
    pub allow_private_webhook_urls: bool,
    /// Job lease.
    pub lease: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// ffmpeg program.
    pub ffmpeg: PathBuf,
    /// Scratch directory (`None`: the system temp directory).
    pub work_dir: Option<PathBuf>,
    /// Prompt expansion endpoint (`None`: not configured). The key is filled from
    /// [`PROMPT_EXPANSION_KEY_ENV`] by [`WorkerSettings::with_env_secrets`].
    pub prompt_expansion: Option<ExpansionConfig>,
    /// The safety checker; loaded (file I/O) by [`WorkerSettings::load_safety`].
    pub safety: SafetySettings,
}

/// A setting with a value it cannot take.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingsError {
    /// The setting (flag name).
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self::resolve(&WorkerLayer::default(), &WorkerLayer::default())
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

impl WorkerSettings {
    /// `flags` (flags and environment variables) over `file` over the defaults.
    pub fn resolve(flags: &WorkerLayer, file: &WorkerLayer) -> Result<Self, SettingsError> {
        fn layered<T>(
            a: &WorkerLayer,
            b: &WorkerLayer,
            f: impl Fn(&WorkerLayer) -> Option<T>,
        ) -> Option<T> {
            f(a).or_else(|| f(b))
        }
        let defaults = WorkerConfig::default();
        let lease = match flags.lease_seconds.or(file.lease_seconds) {
            None => defaults.lease,
            Some(s) if s.is_finite() && s >= 0.5 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(SettingsError {
                    setting: "--lease-seconds",
                    message: format!("must be at least 0.5, got {s}"),
                })
            }
        };
        let text_encoder = match layered(flags, file, |l| l.text_encoder.clone()) {
            None => TextEncoderPolicy::default(),
            Some(s) => s.parse().map_err(|e| SettingsError {
                setting: "--text-encoder",
                message: e,
            })?,
        };
        let vae_tiling = match layered(flags, file, |l| l.vae_tiling.clone()) {
            None => None,
            Some(s) => Some(s.parse::<VaeTiling>().map_err(|e| SettingsError {
                setting: "--vae-tiling",
                message: e.to_string(),
            })?),
        };
        let prompt_expansion =
            PromptExpansionLayer::resolve(&flags.prompt_expansion, &file.prompt_expansion)?;
        Ok(Self {
            database_url: layered(flags, file, |l| l.database_url.clone())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            storage: layered(flags, file, |l| l.storage.clone())
                .unwrap_or_else(|| DEFAULT_STORAGE.into()),
            public_url: layered(flags, file, |l| l.public_url.clone()),
            weights: layered(flags, file, |l| l.weights.clone()),
            device: layered(flags, file, |l| l.device.clone())
                .unwrap_or_else(|| DEFAULT_DEVICE.into()),
            text_encoder,
            vae_tiling,
            workers: layered(flags, file, |l| l.workers).unwrap_or(DEFAULT_WORKERS),
            webhook_key_file: layered(flags, file, |l| l.webhook_key_file.clone())
                .unwrap_or_else(|| DEFAULT_WEBHOOK_KEY_FILE.into()),
            webhook_secret: layered(flags, file, |l| l.webhook_secret.clone()),
            allow_private_image_urls: layered(flags, file, |l| l.allow_private_image_urls)
                .unwrap_or(false),
            allow_private_webhook_urls: layered(flags, file, |l| l.allow_private_webhook_urls)
                .unwrap_or(false),
            lease,
            shutdown_grace: layered(flags, file, |l| l.shutdown_grace_secs)
                .map(Duration::from_secs)
                .unwrap_or(defaults.shutdown_grace),
            ffmpeg: layered(flags, file, |l| l.ffmpeg.clone())
                .unwrap_or_else(|| DEFAULT_FFMPEG.into()),
            work_dir: layered(flags, file, |l| l.work_dir.clone()),
            prompt_expansion,
            safety: SafetyLayer::resolve(&flags.safety, &file.safety)?,
        })
    }

    /// Loads the safety checker's model when the checker is on (logged; a missing model is
    /// an error in the log and makes the workers refuse requests asking for the check).
    /// Load once and share the result between pools.
    pub fn load_safety(&self) -> SafetyState {
        SafetyState::load(&self.safety)
    }

    /// These settings with secrets that only come from the environment filled in (the
    /// prompt-expansion key).
    pub fn with_env_secrets(mut self) -> Self {
        if let Some(cfg) = &mut self.prompt_expansion {
            cfg.api_key = PromptExpansionLayer::key_from_env();
        }
        self
    }

    /// Writes these settings into a pool's configuration: lease and heartbeat (lease/4),
    /// SSRF switches, webhook secret, encoder, shutdown grace, and the public URL when given.
    /// The signing key is loaded by the caller (it is file I/O).
    pub fn apply(&self, cfg: &mut WorkerConfig) {
        cfg.lease = self.lease;
        cfg.heartbeat_interval = (self.lease / 4).max(Duration::from_millis(100));
        cfg.allow_private_image_urls = self.allow_private_image_urls;
        if self.allow_private_webhook_urls {
            cfg.webhook.policy = private_policy();
        }
        cfg.webhook.hmac_secret = self.webhook_secret.clone();
        cfg.encoder.ffmpeg = self.ffmpeg.clone();
        cfg.encoder.work_dir = self.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        cfg.shutdown_grace = self.shutdown_grace;
        cfg.prompt_expansion = self.prompt_expansion.clone();
        if let Some(url) = &self.public_url {
            cfg.public_base_url = url.trim_end_matches('/').to_owned();
        }
    }
}

impl PromptExpansionLayer {
    /// The endpoint from `flags` over `file`: none without a URL; a URL needs a model. The
    /// key is not read here (see [`PromptExpansionLayer::key_from_env`]).
    pub fn resolve(
        flags: &PromptExpansionLayer,
        file: &PromptExpansionLayer,
    ) -> Result<Option<ExpansionConfig>, SettingsError> {
        let pick = |f: fn(&PromptExpansionLayer) -> Option<String>| f(flags).or_else(|| f(file));
        let Some(url) = pick(|l| l.prompt_expansion_url.clone()) else {
            return Ok(None);
        };
        let endpoint = ExpansionConfig::endpoint_for(&url).map_err(|message| SettingsError {
            setting: "--prompt-expansion-url",
            message,
        })?;
        let model = pick(|l| l.prompt_expansion_model.clone())
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| SettingsError {
                setting: "--prompt-expansion-model",
                message: "required with --prompt-expansion-url".into(),
            })?;
        let timeout = match flags
            .prompt_expansion_timeout_secs
            .or(file.prompt_expansion_timeout_secs)
            .unwrap_or(DEFAULT_PROMPT_EXPANSION_TIMEOUT_SECS)
        {
            s if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            s => {
                return Err(SettingsError {
                    setting: "--prompt-expansion-timeout-secs",
                    message: format!("must be in (0, 3600], got {s}"),
                })
            }
        };
        let on_failure = match pick(|l| l.prompt_expansion_on_failure.clone()) {
            None => OnFailure::default(),
            Some(s) => s.parse().map_err(|message| SettingsError {
                setting: "--prompt-expansion-on-failure",
                message,
            })?,
        };
        Ok(Some(ExpansionConfig {
            endpoint,
            model,
            api_key: None,
            timeout,
            attempts: PROMPT_EXPANSION_ATTEMPTS,
            on_failure,
        }))
    }

    /// The API key from [`PROMPT_EXPANSION_KEY_ENV`] (unset or empty: none).
    pub fn key_from_env() -> Option<String> {
        std::env::var(PROMPT_EXPANSION_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
    }
}

/// The address policy that lets [`PRIVATE_RANGES`] through.
pub fn private_policy() -> AddressPolicy {
    AddressPolicy::allowing(
        PRIVATE_RANGES
            .iter()
            .filter_map(|r| r.parse::<IpRange>().ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        layer: WorkerLayer,
    }

    fn flags(args: &[&str]) -> WorkerLayer {
        let mut argv = vec!["test"];
        argv.extend(args);
        Cli::try_parse_from(argv).unwrap().layer
    }

    fn file(text: &str) -> WorkerLayer {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let f =
            file("lease_seconds = 45\nworkers = 3\nwebhook_key_file = \"/k\"\ndevice = \"cpu\"");
        let s = WorkerSettings::resolve(&flags(&["--lease-seconds", "7"]), &f).unwrap();
        assert_eq!(s.lease, Duration::from_secs(7));
        assert_eq!(s.workers, 3);
        assert_eq!(s.webhook_key_file, PathBuf::from("/k"));
        assert_eq!(s.device, "cpu");
        assert_eq!(s.storage, DEFAULT_STORAGE);
        let d = WorkerSettings::default();
        assert_eq!(d.lease, WorkerConfig::default().lease);
        assert_eq!(d.webhook_key_file, PathBuf::from(DEFAULT_WEBHOOK_KEY_FILE));
    }

    #[test]
    fn vae_tiling_from_the_file_or_a_flag() {
        let f = file("vae_tiling = \"32,8\"");
        let s = WorkerSettings::resolve(&flags(&[]), &f).unwrap();
        assert_eq!(s.vae_tiling, Some(VaeTiling::new(32, 8).unwrap()));
        let s = WorkerSettings::resolve(&flags(&["--vae-tiling", "16"]), &f).unwrap();
        assert_eq!(s.vae_tiling.map(|t| t.tile), Some(16));
        assert_eq!(WorkerSettings::default().vae_tiling, None);
        let bad = WorkerSettings::resolve(&flags(&["--vae-tiling", "0"]), &f).unwrap_err();
        assert_eq!(bad.setting, "--vae-tiling");
    }

    #[test]
    fn a_flag_turns_off_a_true_in_the_file() {
        let f = file("allow_private_webhook_urls = true\nallow_private_image_urls = true");
        let on = WorkerSettings::resolve(&flags(&[]), &f).unwrap();
        assert!(on.allow_private_webhook_urls && on.allow_private_image_urls);
        let off = WorkerSettings::resolve(
            &flags(&[
                "--allow-private-webhook-urls=false",
                "--allow-private-image-urls=false",
            ]),
            &f,
        )
        .unwrap();
        assert!(!off.allow_private_webhook_urls && !off.allow_private_image_urls);
        let bare = WorkerSettings::resolve(
            &flags(&["--allow-private-webhook-urls"]),
            &WorkerLayer::default(),
        )
        .unwrap();
        assert!(bare.allow_private_webhook_urls && !bare.allow_private_image_urls);
    }

    /// The only test here that touches `LONGCAT_*` variables (clap reads them).
    #[test]
    fn environment_sits_between_flags_and_file() {
        std::env::set_var("LONGCAT_ALLOW_PRIVATE_WEBHOOK_URLS", "false");
        std::env::set_var("LONGCAT_SHUTDOWN_GRACE_SECS", "9");
        let env = flags(&[]);
        let flag = flags(&[
            "--allow-private-webhook-urls=true",
            "--shutdown-grace-secs=3",
        ]);
        std::env::remove_var("LONGCAT_ALLOW_PRIVATE_WEBHOOK_URLS");
        std::env::remove_var("LONGCAT_SHUTDOWN_GRACE_SECS");
        let f = file("allow_private_webhook_urls = true\nshutdown_grace_secs = 20");
        let s = WorkerSettings::resolve(&env, &f).unwrap();
        assert!(!s.allow_private_webhook_urls, "env false beats file true");
        assert_eq!(s.shutdown_grace, Duration::from_secs(9));
        let s = WorkerSettings::resolve(&flag, &f).unwrap();
        assert!(s.allow_private_webhook_urls, "flag beats env");
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = WorkerSettings::resolve(&flags(&["--lease-seconds", "0"]), &WorkerLayer::default())
            .unwrap_err();
        assert_eq!(e.setting, "--lease-seconds");
        let e = WorkerSettings::resolve(&WorkerLayer::default(), &file("text_encoder = \"gpu\""))
            .unwrap_err();
        assert_eq!(e.setting, "--text-encoder");
    }

    #[test]
    fn prompt_expansion_needs_a_url_and_a_model() {
        assert_eq!(WorkerSettings::default().prompt_expansion, None);
        let f = file(
            "prompt_expansion_url = \"http://127.0.0.1:9/v1\"\nprompt_expansion_model = \"m\"",
        );
        let s = WorkerSettings::resolve(&flags(&[]), &f).unwrap();
        let cfg = s.prompt_expansion.unwrap();
        assert_eq!(cfg.endpoint, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(cfg.model, "m");
        assert_eq!(cfg.on_failure, OnFailure::Original);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        let s = WorkerSettings::resolve(
            &flags(&[
                "--prompt-expansion-on-failure",
                "fail",
                "--prompt-expansion-timeout-secs",
                "2.5",
            ]),
            &f,
        )
        .unwrap();
        let cfg = s.prompt_expansion.unwrap();
        assert_eq!(cfg.on_failure, OnFailure::Fail);
        assert_eq!(cfg.timeout, Duration::from_millis(2500));
        let no_model = file("prompt_expansion_url = \"http://h/v1\"");
        let e = WorkerSettings::resolve(&flags(&[]), &no_model).unwrap_err();
        assert_eq!(e.setting, "--prompt-expansion-model");
        for (args, setting) in [
            (
                vec!["--prompt-expansion-url", "ftp://h"],
                "--prompt-expansion-url",
            ),
            (
                vec!["--prompt-expansion-on-failure", "maybe"],
                "--prompt-expansion-on-failure",
            ),
            (
                vec!["--prompt-expansion-timeout-secs", "0"],
                "--prompt-expansion-timeout-secs",
            ),
        ] {
            let e = WorkerSettings::resolve(&flags(&args), &f).unwrap_err();
            assert_eq!(e.setting, setting);
        }
    }

    #[test]
    fn apply_sets_the_pool_configuration() {
        let s = WorkerSettings::resolve(
            &flags(&[
                "--allow-private-webhook-urls",
                "--lease-seconds",
                "8",
                "--public-url",
                "http://h:1/",
            ]),
            &WorkerLayer::default(),
        )
        .unwrap();
        let mut cfg = WorkerConfig::default();
        s.apply(&mut cfg);
        assert_eq!(cfg.lease, Duration::from_secs(8));
        assert_eq!(cfg.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(cfg.public_base_url, "http://h:1");
        assert!(cfg
            .webhook
            .policy
            .check("127.0.0.1".parse().unwrap())
            .is_ok());
        assert!(cfg
            .webhook
            .policy
            .check("169.254.169.254".parse().unwrap())
            .is_err());
    }
}
