//! DNS resolution with the SSRF check applied to every resolved address, before connecting.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use super::address::{AddressPolicy, BlockReason};

/// A boxed, sendable future (what resolvers return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Turns a host name into IP addresses. The server uses [`SystemResolver`]; tests map names.
pub trait HostResolver: Send + Sync {
    /// All addresses of `host`.
    fn lookup(&self, host: &str) -> BoxFuture<io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(&self, host: &str) -> BoxFuture<io::Result<Vec<IpAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed name → addresses table; unknown names fail to resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    table: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `host` → `addrs`.
    pub fn with(mut self, host: &str, addrs: &[IpAddr]) -> Self {
        self.table.insert(host.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

impl HostResolver for StaticResolver {
    fn lookup(&self, host: &str) -> BoxFuture<io::Result<Vec<IpAddr>>> {
        let found = self.table.get(&host.to_ascii_lowercase()).cloned();
        let host = host.to_string();
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("unknown host {host}"))
            })
        })
    }
}

/// The resolver refused a host because one of its addresses is not allowed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {ip} ({reason}), which is not allowed")]
pub struct BlockedAddress {
    /// The host name.
    pub host: String,
    /// The refused address.
    pub ip: IpAddr,
    /// Its class.
    pub reason: BlockReason,
}

/// A resolution failure that is not a policy refusal.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host}: {reason}")]
pub struct ResolveFailed {
    /// The host name.
    pub host: String,
    /// What went wrong.
    pub reason: String,
}

/// reqwest resolver that resolves with an inner [`HostResolver`] and refuses the host if any
/// resolved address is blocked by the [`AddressPolicy`] — so no connection is ever attempted to it.
pub(crate) struct GuardedResolver {
    pub(crate) inner: Arc<dyn HostResolver>,
    pub(crate) policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// Resolves and checks `host`; addresses come back in resolver order.
    pub(crate) async fn resolve_checked(
        inner: Arc<dyn HostResolver>,
        policy: Arc<AddressPolicy>,
        host: String,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let ips = inner.lookup(&host).await.map_err(|e| ResolveFailed {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        if ips.is_empty() {
            return Err(Box::new(ResolveFailed {
                host,
                reason: "no addresses".into(),
            }));
        }
        for &ip in &ips {
            if let Err(reason) = policy.check(ip) {
                return Err(Box::new(BlockedAddress { host, ip, reason }));
            }
        }
        Ok(ips)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = Arc::clone(&self.inner);
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = Self::resolve_checked(inner, policy, host).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
