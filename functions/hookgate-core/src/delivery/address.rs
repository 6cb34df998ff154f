//! Which network addresses a forwarding destination may reach.
//!
//! A destination URL comes from configuration, but its host name resolves at delivery time, and
//! DNS can point anywhere: at `127.0.0.1`, at a VPC-internal service, at the EC2 instance
//! metadata endpoint `169.254.169.254` (which hands out credentials). Unless a destination says
//! `allow_private_networks = true`, every address its name resolves to must be public; one that
//! is not refuses the whole delivery. The check runs inside the HTTP client's resolver, on the
//! very addresses it then connects to, so a name cannot pass the check and then re-resolve
//! elsewhere (DNS rebinding).
//!
//! Refused: IPv4 unspecified, loopback, private, link-local, shared (CGN), IETF protocol,
//! benchmarking, documentation, multicast, broadcast and reserved; IPv6 unspecified, loopback,
//! unique-local, link-local, site-local (`fec0::/10`), multicast, documentation, discard-only
//! (`100::/64`), benchmarking (`2001:2::/48`), IPv4-compatible, and Teredo (`2001::/32`)
//! outright. The IPv6 forms that carry an IPv4 address — mapped (`::ffff:0:0/96`), translated
//! (`::ffff:0:0:0/96`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) and 6to4 (`2002::/16`) — are
//! judged by that IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not public, or `None` if it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (the cloud metadata range)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("an IETF protocol address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48): the last 32 bits are IPv4.
        return v4_reason(Ipv4Addr::new(a, b, c, d));
    }
    if seg[..5] == [0, 0, 0, 0, 0xffff] && seg[5] == 0 {
        // IPv4-translated (::ffff:0:0/96, RFC 2765): the last 32 bits are IPv4.
        return v4_reason(Ipv4Addr::new(a, b, c, d));
    }
    if seg[0] == 0x2002 {
        // 6to4 (2002::/16): the next 32 bits are the IPv4 address of the tunnel's end, which a
        // 6to4 relay reaches; 2002:7f00:1:: is 127.0.0.1.
        let [_, _, a, b, c, d, ..] = ip.octets();
        return v4_reason(Ipv4Addr::new(a, b, c, d)).map(|_| "a 6to4 address of a non-public IPv4");
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo (2001::/32) embeds a server address and an obfuscated client address and port;
        // nothing a webhook destination needs, so it is refused outright.
        return Some("a Teredo tunnel address");
    }
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if seg[0] & 0xffc0 == 0xfec0 {
        Some("a site-local (deprecated private) address")
    } else if seg[..4] == [0x100, 0, 0, 0] {
        Some("a discard-only address")
    } else if seg[0] == 0x2001 && seg[1] == 0x2 && seg[2] == 0 {
        Some("a benchmarking address")
    } else if seg[0] & 0xff00 == 0xff00 {
        Some("a multicast address")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        Some("a documentation address")
    } else if seg[..6] == [0, 0, 0, 0, 0, 0] {
        Some("an IPv4-compatible (deprecated) address")
    } else {
        None
    }
}

/// The error a refused address produces; found again in the client's error chain to tell a
/// refusal (permanent) from a failed lookup (retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination refused: {host} resolves to {ip}, {reason}; set allow_private_networks = true to allow it")]
pub struct RefusedAddress {
    /// The host name or address of the destination.
    pub host: String,
    /// The address that is not public.
    pub ip: IpAddr,
    /// What kind of address it is.
    pub reason: &'static str,
}

/// Checks an address against the policy.
pub fn check(host: &str, ip: IpAddr, allow_private: bool) -> Result<(), RefusedAddress> {
    match non_public_reason(ip) {
        Some(reason) if !allow_private => Err(RefusedAddress {
            host: host.to_owned(),
            ip,
            reason,
        }),
        _ => Ok(()),
    }
}

/// The HTTP client's DNS resolver: the system resolver, then the policy on every address.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// `allow_private_networks`.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                check(&host, addr.ip(), allow_private)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    /// The resolver as the client builder takes it.
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        non_public_reason(s.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_named() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(reason(ip).is_some(), "{ip} should not be public");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_or_reach_a_non_public_ipv4_are_refused() {
        for (ip, want) in [
            // IPv4-translated, ::ffff:0:0/96.
            ("::ffff:0:127.0.0.1", "a loopback address"),
            (
                "::ffff:0:a9fe:a9fe",
                "a link-local address (the cloud metadata range)",
            ),
            ("::ffff:0:10.1.2.3", "a private address"),
            // Site-local, fec0::/10.
            ("fec0::1", "a site-local (deprecated private) address"),
            ("feff:ffff::1", "a site-local (deprecated private) address"),
            // 6to4, 2002::/16, with the IPv4 address in bits 16-47.
            ("2002:7f00:1::", "a 6to4 address of a non-public IPv4"),
            ("2002:a9fe:a9fe::1", "a 6to4 address of a non-public IPv4"),
            ("2002:c0a8:101:1::1", "a 6to4 address of a non-public IPv4"),
            ("2002:0a00:0001::", "a 6to4 address of a non-public IPv4"),
            // Teredo, 2001::/32, refused whatever it embeds: here the obfuscated client
            // 127.0.0.1 (0x7f000001 ^ 0xffffffff = 0x80fffffe) and a public server.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                "a Teredo tunnel address",
            ),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "a Teredo tunnel address",
            ),
            ("100::1", "a discard-only address"),
            ("2001:2::1", "a benchmarking address"),
        ] {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "52.95.110.1",
            "2606:4700:4700::1111",
            "2a05:d018::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            // The same forms around a public IPv4 address, and addresses next to the ranges.
            "::ffff:0:8.8.8.8",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2003::1",
        ] {
            assert_eq!(reason(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn the_policy_can_allow_private_networks() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let refused = check("localhost", ip, false).unwrap_err();
        assert_eq!(refused.reason, "a loopback address");
        assert!(refused.to_string().contains("allow_private_networks"));
        assert!(check("localhost", ip, true).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses() {
        let name = || -> Name { "localhost".parse().unwrap() };
        let refusing = GuardedResolver {
            allow_private: false,
        };
        let err = match refusing.resolve(name()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<RefusedAddress>().is_some(), "{err}");
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(name())
        .await
        .map_err(|e| e.to_string())
        .unwrap();
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}
