//! Address classification for the SSRF guard, and the operator's allow-list.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address may not be contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, carrier-grade NAT, IPv6 unique/site-local.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Multicast and broadcast.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// Cloud instance-metadata endpoints.
    Metadata,
    /// Reserved, documentation and benchmarking ranges.
    Reserved,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::Loopback => "loopback",
            BlockReason::Private => "private",
            BlockReason::LinkLocal => "link-local",
            BlockReason::Multicast => "multicast",
            BlockReason::Unspecified => "unspecified",
            BlockReason::Metadata => "cloud metadata",
            BlockReason::Reserved => "reserved",
        })
    }
}

/// Well-known instance-metadata addresses (AWS/GCP/Azure/OpenStack, ECS, Alibaba, Azure wire server).
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The class of a non-public address, or `None` for an ordinary public one.
pub fn classify(ip: IpAddr) -> Option<BlockReason> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<BlockReason> {
    let o = ip.octets();
    if METADATA_V4.contains(&ip) {
        Some(BlockReason::Metadata)
    } else if o[0] == 0 {
        Some(BlockReason::Unspecified)
    } else if ip.is_loopback() {
        Some(BlockReason::Loopback)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        // RFC 1918 and 100.64.0.0/10 (carrier-grade NAT).
        Some(BlockReason::Private)
    } else if ip.is_link_local() {
        Some(BlockReason::LinkLocal)
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some(BlockReason::Multicast)
    } else if o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        // 240/4, 192.0.0.0/24 (protocol assignments), 192.88.99.0/24 (the deprecated 6to4
        // relay anycast, RFC 7526: it forwards into tunnels), TEST-NETs, 198.18.0.0/15.
        Some(BlockReason::Reserved)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<BlockReason> {
    let s = ip.segments();
    if ip == METADATA_V6 {
        return Some(BlockReason::Metadata);
    }
    if ip.is_unspecified() {
        return Some(BlockReason::Unspecified);
    }
    if ip.is_loopback() {
        return Some(BlockReason::Loopback);
    }
    // Forms that embed an IPv4 address: judge the embedded one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // Deprecated IPv4-compatible ::a.b.c.d.
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 6145).
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // Well-known NAT64 prefix 64:ff9b::/96 (RFC 6052): judge the IPv4 it reaches.
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): it translates into the operator's own
        // networks, and where the IPv4 sits depends on a prefix length we cannot know.
        return Some(BlockReason::Private);
    }
    if s[0] == 0x2002 {
        // 6to4 2002:a.b.c.d::/48.
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        // Teredo 2001::/32 (RFC 4380): a tunnel to the client IPv4 stored inverted in the low
        // 32 bits. Refused in every case: the far end is not an address we can vet.
        return classify_v4(embedded_v4(!s[6], !s[7])).or(Some(BlockReason::Reserved));
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        // Unique local fc00::/7 and deprecated site-local fec0::/10.
        return Some(BlockReason::Private);
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Some(BlockReason::LinkLocal);
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Some(BlockReason::Multicast);
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some(BlockReason::Reserved);
    }
    None
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// The range `base/prefix`; `None` if the prefix is too long for the family.
    pub fn new(base: IpAddr, prefix: u8) -> Option<Self> {
        let max = if base.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { base, prefix })
    }

    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                prefix_eq(u32::from(b) as u128, u32::from(a) as u128, self.prefix, 32)
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => {
                prefix_eq(u128::from(b), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

/// A malformed [`IpRange`] string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP range '{0}' (expected e.g. 10.0.0.0/8 or ::1)")]
pub struct IpRangeParseError(pub String);

impl FromStr for IpRange {
    type Err = IpRangeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpRangeParseError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        IpRange::new(base, prefix).ok_or_else(err)
    }
}

impl TryFrom<String> for IpRange {
    type Error = IpRangeParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IpRange> for String {
    fn from(r: IpRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Which addresses the image fetcher may contact: every public address, plus non-public ones
/// only when the operator listed them in `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPolicy {
    /// Non-public ranges explicitly allowed (e.g. `127.0.0.1/32` for tests).
    #[serde(default)]
    pub allow: Vec<IpRange>,
}

impl AddressPolicy {
    /// A policy allowing `ranges` on top of the public internet.
    pub fn allowing(ranges: impl IntoIterator<Item = IpRange>) -> Self {
        Self {
            allow: ranges.into_iter().collect(),
        }
    }

    /// `Err(reason)` when `ip` may not be contacted.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockReason> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|r| r.contains(ip)) => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<BlockReason> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4() {
        assert_eq!(c("127.0.0.1"), Some(BlockReason::Loopback));
        assert_eq!(c("127.8.9.10"), Some(BlockReason::Loopback));
        assert_eq!(c("10.0.0.1"), Some(BlockReason::Private));
        assert_eq!(c("172.16.5.4"), Some(BlockReason::Private));
        assert_eq!(c("172.32.0.1"), None);
        assert_eq!(c("192.168.1.1"), Some(BlockReason::Private));
        assert_eq!(c("100.64.0.1"), Some(BlockReason::Private));
        assert_eq!(c("169.254.169.254"), Some(BlockReason::Metadata));
        assert_eq!(c("169.254.1.1"), Some(BlockReason::LinkLocal));
        assert_eq!(c("224.0.0.1"), Some(BlockReason::Multicast));
        assert_eq!(c("255.255.255.255"), Some(BlockReason::Multicast));
        assert_eq!(c("0.0.0.0"), Some(BlockReason::Unspecified));
        assert_eq!(c("240.1.2.3"), Some(BlockReason::Reserved));
        assert_eq!(c("192.0.2.7"), Some(BlockReason::Reserved));
        assert_eq!(c("8.8.8.8"), None);
        assert_eq!(c("1.1.1.1"), None);
    }

    #[test]
    fn classifies_ipv6_including_embedded_ipv4() {
        assert_eq!(c("::1"), Some(BlockReason::Loopback));
        assert_eq!(c("::"), Some(BlockReason::Unspecified));
        assert_eq!(c("fe80::1"), Some(BlockReason::LinkLocal));
        assert_eq!(c("fd12:3456::1"), Some(BlockReason::Private));
        assert_eq!(c("ff02::1"), Some(BlockReason::Multicast));
        assert_eq!(c("fd00:ec2::254"), Some(BlockReason::Metadata));
        assert_eq!(c("::ffff:127.0.0.1"), Some(BlockReason::Loopback));
        assert_eq!(c("::ffff:10.1.2.3"), Some(BlockReason::Private));
        assert_eq!(c("::ffff:169.254.169.254"), Some(BlockReason::Metadata));
        assert_eq!(c("64:ff9b::a00:1"), Some(BlockReason::Private));
        assert_eq!(c("2002:a9fe:a9fe::1"), Some(BlockReason::Metadata));
        assert_eq!(c("2606:4700:4700::1111"), None);
    }

    #[test]
    fn classifies_translation_and_tunnel_prefixes() {
        // IPv4-translated ::ffff:0:a.b.c.d.
        assert_eq!(c("::ffff:0:127.0.0.1"), Some(BlockReason::Loopback));
        assert_eq!(c("::ffff:0:10.0.0.1"), Some(BlockReason::Private));
        assert_eq!(c("::ffff:0:169.254.169.254"), Some(BlockReason::Metadata));
        assert_eq!(c("::ffff:0:8.8.8.8"), None);
        // Well-known NAT64 prefix: judged by the embedded IPv4.
        assert_eq!(c("64:ff9b::127.0.0.1"), Some(BlockReason::Loopback));
        assert_eq!(c("64:ff9b::192.168.0.1"), Some(BlockReason::Private));
        assert_eq!(c("64:ff9b::169.254.169.254"), Some(BlockReason::Metadata));
        assert_eq!(c("64:ff9b::8.8.8.8"), None);
        // Local-use NAT64: never public, whatever it embeds.
        assert_eq!(c("64:ff9b:1::8.8.8.8"), Some(BlockReason::Private));
        assert_eq!(c("64:ff9b:1:ffff::a00:1"), Some(BlockReason::Private));
        assert_eq!(c("64:ff9b:2::8.8.8.8"), None);
        // Teredo: always refused; an inverted private client address names its class.
        assert_eq!(
            c("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            Some(BlockReason::Reserved)
        );
        // client 127.0.0.1 inverted = 80ff:fffe.
        assert_eq!(
            c("2001:0:4136:e378::80ff:fffe"),
            Some(BlockReason::Loopback)
        );
        assert_eq!(c("2001:4860::8888"), None);
        // 6to4 embedding a private IPv4; the 6to4 relay anycast range itself.
        assert_eq!(c("2002:0a00:0001::1"), Some(BlockReason::Private));
        assert_eq!(c("2002:7f00:0001::"), Some(BlockReason::Loopback));
        assert_eq!(c("2002:c0a8:0101:5::1"), Some(BlockReason::Private));
        assert_eq!(c("2002:0808:0808::1"), None);
        assert_eq!(c("192.88.99.1"), Some(BlockReason::Reserved));
        assert_eq!(c("::ffff:192.88.99.1"), Some(BlockReason::Reserved));
        assert_eq!(c("192.88.98.1"), None);
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains("10.200.1.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.9".parse().unwrap()));
        let one: IpRange = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nonsense".parse::<IpRange>().is_err());
        let all: IpRange = "::/0".parse().unwrap();
        assert!(all.contains("fe80::1".parse().unwrap()));
    }

    #[test]
    fn policy_allows_only_listed_ranges() {
        let strict = AddressPolicy::default();
        assert_eq!(
            strict.check("127.0.0.1".parse().unwrap()),
            Err(BlockReason::Loopback)
        );
        assert_eq!(strict.check("93.184.216.34".parse().unwrap()), Ok(()));
        let loopback = AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(loopback.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(
            loopback.check("10.0.0.1".parse().unwrap()),
            Err(BlockReason::Private)
        );
        let json = serde_json::to_string(&loopback).unwrap();
        assert_eq!(json, r#"{"allow":["127.0.0.1/32"]}"#);
        let back: AddressPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, loopback);
    }
}
