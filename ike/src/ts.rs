//! Traffic selectors: parsing from strongSwan-style text, intersection, and
//! narrowing (RFC 7296 §2.9).
//!
//! A selector is an address range, a protocol (0 = any) and a port range.
//! Narrowing intersects what the peer proposed with what our policy allows;
//! the result is always a subset of both.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::TrafficSelector;

/// Error parsing a selector string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traffic selector '{input}': {why}")]
pub struct TsParseError {
    pub input: String,
    pub why: &'static str,
}

/// Parse `198.19.1.0/24`, `2001:db8::/32`, `198.19.1.5`, optionally followed
/// by `[proto/port]` as strongSwan writes it: `10.0.0.0/8[tcp/443]`,
/// `10.0.0.0/8[udp]`, `10.0.0.0/8[17/53]`, `0.0.0.0/0[icmp]`.
pub fn parse_ts(s: &str) -> Result<TrafficSelector, TsParseError> {
    let err = |why| TsParseError {
        input: s.to_string(),
        why,
    };
    let s = s.trim();
    let (net, extra) = match s.find('[') {
        Some(i) => {
            let rest = &s[i + 1..];
            let inner = rest.strip_suffix(']').ok_or_else(|| err("missing ']'"))?;
            (&s[..i], Some(inner))
        }
        None => (s, None),
    };
    let (addr, prefix) = match net.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (net, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix {
        Some(p) => p.parse().map_err(|_| err("bad prefix length"))?,
        None => max,
    };
    if prefix > max {
        return Err(err("prefix length too long"));
    }
    let (start_addr, end_addr) = prefix_range(addr, prefix);
    let (mut ip_proto, mut start_port, mut end_port) = (0u8, 0u16, 0xffffu16);
    if let Some(extra) = extra {
        let (proto, port) = match extra.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (extra, None),
        };
        ip_proto = match proto {
            "" | "any" | "%any" => 0,
            "icmp" => 1,
            "tcp" => 6,
            "udp" => 17,
            "sctp" => 132,
            "ipv6-icmp" | "icmp6" | "icmpv6" => 58,
            n => n.parse().map_err(|_| err("unknown protocol"))?,
        };
        if let Some(port) = port {
            if port != "%any" && port != "any" {
                let (a, b) = match port.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (port, port),
                };
                start_port = a.parse().map_err(|_| err("bad port"))?;
                end_port = b.parse().map_err(|_| err("bad port"))?;
                if start_port > end_port {
                    return Err(err("port range is reversed"));
                }
            }
        }
    }
    Ok(TrafficSelector {
        ip_proto,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

fn prefix_range(addr: IpAddr, prefix: u32) -> (IpAddr, IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let v = u32::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            (
                IpAddr::V4(Ipv4Addr::from(v & mask)),
                IpAddr::V4(Ipv4Addr::from(v | !mask)),
            )
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            (
                IpAddr::V6(Ipv6Addr::from(v & mask)),
                IpAddr::V6(Ipv6Addr::from(v | !mask)),
            )
        }
    }
}

/// A selector covering one host and every protocol and port.
pub fn host_ts(addr: IpAddr) -> TrafficSelector {
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 0xffff,
        start_addr: addr,
        end_addr: addr,
    }
}

/// The intersection of two selectors, if not empty.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if a.start_addr.is_ipv4() != b.start_addr.is_ipv4() {
        return None;
    }
    let ip_proto = match (a.ip_proto, b.ip_proto) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    let start_addr = a.start_addr.max(b.start_addr);
    let end_addr = a.end_addr.min(b.end_addr);
    if start_port > end_port || start_addr > end_addr {
        return None;
    }
    Some(TrafficSelector {
        ip_proto,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// True when `inner` lies entirely within `outer`.
pub fn contains(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// §2.9 narrowing: every non-empty intersection of a proposed selector with
/// one of ours, without duplicates, in the proposer's order.
pub fn narrow(proposed: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        for o in ours {
            if let Some(x) = intersect(p, o) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// True when every selector of `answer` lies within one of `offered`: what an
/// initiator checks of the responder's narrowed selectors.
pub fn all_within(answer: &[TrafficSelector], offered: &[TrafficSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|a| offered.iter().any(|o| contains(o, a)))
}

/// strongSwan-style display: `198.19.1.0/24`, `10.0.0.1..10.0.0.9`,
/// with `[proto/port]` when narrowed.
pub struct Display<'a>(pub &'a TrafficSelector);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self.0;
        match range_prefix(ts.start_addr, ts.end_addr) {
            Some(p) => write!(f, "{}/{}", ts.start_addr, p)?,
            None => write!(f, "{}..{}", ts.start_addr, ts.end_addr)?,
        }
        let any_port = ts.start_port == 0 && ts.end_port == 0xffff;
        if ts.ip_proto != 0 || !any_port {
            write!(f, "[{}", ts.ip_proto)?;
            if !any_port {
                if ts.start_port == ts.end_port {
                    write!(f, "/{}", ts.start_port)?;
                } else {
                    write!(f, "/{}-{}", ts.start_port, ts.end_port)?;
                }
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

fn range_prefix(start: IpAddr, end: IpAddr) -> Option<u32> {
    let (s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u32::from(s) as u128, u32::from(e) as u128, 32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    let span = s ^ e;
    let host_bits = 128 - span.leading_zeros();
    let host_bits = if span == 0 { 0 } else { host_bits };
    let mask = match host_bits {
        0 => 0,
        128 => u128::MAX,
        n => (1u128 << n) - 1,
    };
    (s & mask == 0 && e & mask == mask && span == mask).then_some(bits - host_bits)
}
