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

use std::net::IpAddr;

use ike::wire::TrafficSelector;

/// Why [`parse_five_tuple`] gave up (the IP header's [`IpError`](super::ip::IpError)).
pub use super::ip::IpError as TupleError;
pub use super::ip::{parse_five_tuple, FiveTuple};

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
