//! Security Policy Database for the userspace dataplane (RFC 4301 §4.4.1).
//!
//! A [`Policy`] pairs a local and a remote [`TrafficSelector`] with an
//! [`Action`]. Lookup is "most specific first": policies are kept ordered by
//! a specificity key (narrower address ranges, then a specific protocol,
//! then narrower port ranges), ties going to the policy inserted first, and
//! the first policy that matches wins. This is decorrelation-free ordering,
//! not a full RFC 4301 §4.4.1.2 decorrelation; it is what strongSwan's and
//! Linux's priority schemes approximate too.
//!
//! Selectors follow RFC 7296 §3.13.1: protocol 0 is any; for ICMP/ICMPv6 the
//! "port" is type << 8 | code; a selector with start port 65535 and end
//! port 0 is OPAQUE and matches only packets whose ports are unavailable
//! (non-initial fragments, RFC 4301 §7). A full port range matches those too.
//!
//! Lookup is a linear scan over one address family; fine for the handful of
//! policies a gateway has, to be replaced by a trie if that changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike::wire::TrafficSelector;

/// What to do with a packet that matches a policy (outbound direction).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Protect with the current outbound SA of this `reqid` (stable across
    /// rekeys, so a rekey swaps SAs without touching policies).
    Protect { reqid: u32 },
    /// No SA yet: raise an acquire for `owner`'s `child`, drop (or queue) the
    /// packet.
    Trap { owner: String, child: String },
    /// Drop.
    Discard,
    /// Send in clear (e.g. IKE traffic itself).
    Bypass,
}

/// One SPD entry, written from our side: `local` covers the packet's source
/// on the way out, `remote` its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub local: TrafficSelector,
    pub remote: TrafficSelector,
    pub action: Action,
}

/// Handle of an inserted policy, for [`Spd::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(u64);

/// The 5-tuple of a packet, as policy lookup needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiveTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// (source, destination) ports for TCP, UDP, UDP-Lite, SCTP and DCCP;
    /// (type << 8 | code) twice for ICMP/ICMPv6; `None` when unavailable
    /// (non-initial fragment, truncated header, portless protocol).
    pub ports: Option<(u16, u16)>,
    /// The packet is a fragment (initial or not).
    pub fragment: bool,
}

/// Why [`parse_five_tuple`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TupleError {
    #[error("packet too short for its IP header")]
    Truncated,
    #[error("not an IPv4 or IPv6 packet")]
    BadVersion,
    #[error("malformed IP header")]
    BadHeader,
}

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_DCCP: u8 = 33;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;

/// IPv6 extension headers we walk over (RFC 8200 §4): hop-by-hop, routing,
/// fragment (handled apart), destination options, AH.
const EXT_HOP_BY_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_AH: u8 = 51;
const EXT_DEST_OPTS: u8 = 60;
/// Bound on the extension headers walked (each is at least 8 bytes anyway).
const MAX_EXT_HEADERS: usize = 16;

fn ports_of(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_DCCP | PROTO_UDPLITE => {
            let b = l4.get(..4)?;
            Some((
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            ))
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let b = l4.get(..2)?;
            let tc = u16::from_be_bytes([b[0], b[1]]);
            Some((tc, tc))
        }
        _ => None,
    }
}

/// The 5-tuple of an IPv4 or IPv6 packet. Initial fragments yield ports when
/// the transport header is in them; non-initial ones never do.
pub fn parse_five_tuple(packet: &[u8]) -> Result<FiveTuple, TupleError> {
    match packet.first().map(|b| b >> 4) {
        None => Err(TupleError::Truncated),
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        Some(_) => Err(TupleError::BadVersion),
    }
}

fn parse_v4(p: &[u8]) -> Result<FiveTuple, TupleError> {
    if p.len() < 20 {
        return Err(TupleError::Truncated);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(TupleError::BadHeader);
    }
    if p.len() < ihl {
        return Err(TupleError::Truncated);
    }
    let flags_frag = u16::from_be_bytes([p[6], p[7]]);
    let more_fragments = flags_frag & 0x2000 != 0;
    let offset = flags_frag & 0x1fff;
    let proto = p[9];
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let ports = if offset == 0 {
        ports_of(proto, &p[ihl..])
    } else {
        None
    };
    Ok(FiveTuple {
        src: src.into(),
        dst: dst.into(),
        proto,
        ports,
        fragment: more_fragments || offset != 0,
    })
}

fn parse_v6(p: &[u8]) -> Result<FiveTuple, TupleError> {
    if p.len() < 40 {
        return Err(TupleError::Truncated);
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&p[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&p[24..40]);
    let dst = Ipv6Addr::from(a);

    let mut next = p[6];
    let mut off = 40usize;
    let mut fragment = false;
    let mut non_initial = false;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS | EXT_AH => {
                let h = p.get(off..off + 2).ok_or(TupleError::Truncated)?;
                let len = if next == EXT_AH {
                    (usize::from(h[1]) + 2) * 4
                } else {
                    (usize::from(h[1]) + 1) * 8
                };
                next = h[0];
                off += len;
                if off > p.len() {
                    return Err(TupleError::Truncated);
                }
            }
            EXT_FRAGMENT => {
                let h = p.get(off..off + 8).ok_or(TupleError::Truncated)?;
                let fo = u16::from_be_bytes([h[2], h[3]]);
                fragment = true;
                non_initial = fo >> 3 != 0;
                next = h[0];
                off += 8;
            }
            _ => break,
        }
    }
    if matches!(
        next,
        EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS | EXT_AH | EXT_FRAGMENT
    ) {
        return Err(TupleError::BadHeader);
    }
    let ports = if non_initial {
        None
    } else {
        ports_of(next, p.get(off..).unwrap_or(&[]))
    };
    Ok(FiveTuple {
        src: src.into(),
        dst: dst.into(),
        proto: next,
        ports,
        fragment,
    })
}

fn addr_key(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

fn addr_in(ts: &TrafficSelector, a: IpAddr) -> bool {
    let (fam, v) = addr_key(a);
    let (fs, s) = addr_key(ts.start_addr);
    let (fe, e) = addr_key(ts.end_addr);
    fam == fs && fam == fe && s <= v && v <= e
}

fn port_in(ts: &TrafficSelector, port: Option<u16>) -> bool {
    match port {
        Some(p) => ts.start_port <= p && p <= ts.end_port,
        // Ports unknown: only selectors that do not constrain them (any, or
        // OPAQUE 65535..0).
        None => {
            (ts.start_port == 0 && ts.end_port == 0xffff)
                || (ts.start_port == 0xffff && ts.end_port == 0)
        }
    }
}

/// Whether `ts` covers one end of a packet (address, protocol, port).
pub(crate) fn ts_matches(ts: &TrafficSelector, addr: IpAddr, proto: u8, port: Option<u16>) -> bool {
    (ts.ip_proto == 0 || ts.ip_proto == proto) && addr_in(ts, addr) && port_in(ts, port)
}

/// log2-ish width of an address range: the number of host bits it spans.
fn addr_bits(ts: &TrafficSelector) -> u32 {
    let (_, s) = addr_key(ts.start_addr);
    let (_, e) = addr_key(ts.end_addr);
    128 - e.saturating_sub(s).leading_zeros()
}

fn port_span(ts: &TrafficSelector) -> u32 {
    u32::from(ts.end_port.saturating_sub(ts.start_port))
}

/// Smaller sorts first (more specific).
type SpecKey = (u32, u32, bool, u32, u64);

fn spec_key(p: &Policy, order: u64) -> SpecKey {
    let any_proto = p.local.ip_proto == 0 || p.remote.ip_proto == 0;
    (
        addr_bits(&p.remote) + addr_bits(&p.local),
        addr_bits(&p.remote),
        any_proto,
        port_span(&p.remote) + port_span(&p.local),
        order,
    )
}

/// The policy database.
#[derive(Debug, Default)]
pub struct Spd {
    /// Sorted by specificity key.
    entries: Vec<(SpecKey, PolicyId, Policy)>,
    next_id: u64,
}

impl Spd {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a policy and returns its handle.
    pub fn insert(&mut self, policy: Policy) -> PolicyId {
        let id = PolicyId(self.next_id);
        self.next_id += 1;
        let key = spec_key(&policy, id.0);
        let at = self.entries.partition_point(|(k, _, _)| *k < key);
        self.entries.insert(at, (key, id, policy));
        id
    }

    /// Removes a policy; `None` if it is not (or no longer) there.
    pub fn remove(&mut self, id: PolicyId) -> Option<Policy> {
        let at = self.entries.iter().position(|(_, i, _)| *i == id)?;
        Some(self.entries.remove(at).2)
    }

    /// Keeps only the policies `keep` returns true for (e.g. to drop an
    /// owner's traps).
    pub fn retain(&mut self, mut keep: impl FnMut(&Policy) -> bool) {
        self.entries.retain(|(_, _, p)| keep(p));
    }

    /// Policies in lookup order.
    pub fn iter(&self) -> impl Iterator<Item = (PolicyId, &Policy)> {
        self.entries.iter().map(|(_, id, p)| (*id, p))
    }

    /// The most specific policy for an outbound packet from `src` (ours) to
    /// `dst` (theirs).
    pub fn lookup(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
    ) -> Option<&Policy> {
        self.lookup_ports(src, dst, proto, Some((sport, dport)))
    }

    /// Like [`lookup`](Self::lookup) for a parsed packet; packets without
    /// ports only match selectors that leave ports open (or OPAQUE).
    pub fn lookup_tuple(&self, t: &FiveTuple) -> Option<&Policy> {
        self.lookup_ports(t.src, t.dst, t.proto, t.ports)
    }

    /// The policy an inbound (decapsulated) packet from `t.src` (theirs) to
    /// `t.dst` (ours) falls under, for the RFC 4301 §5.2 inbound check.
    pub fn lookup_inbound(&self, t: &FiveTuple) -> Option<&Policy> {
        self.lookup_ports(t.dst, t.src, t.proto, t.ports.map(|(s, d)| (d, s)))
    }

    fn lookup_ports(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        ports: Option<(u16, u16)>,
    ) -> Option<&Policy> {
        let (sport, dport) = match ports {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        };
        self.entries.iter().map(|(_, _, p)| p).find(|p| {
            ts_matches(&p.local, src, proto, sport) && ts_matches(&p.remote, dst, proto, dport)
        })
    }
}
