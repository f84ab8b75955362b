//! IPv4 and IPv6 headers, read (and, for transport mode, written) in one
//! place.
//!
//! [`IpView::parse`] checks a packet's header once (version, lengths) and
//! then answers source, destination, protocol, fragment state and payload
//! without further bounds checks; [`parse_five_tuple`] builds on it for the
//! SPD lookup and the inbound selector check. Nothing here allocates or
//! panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tun_rs::checksum;

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_DCCP: u8 = 33;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

/// IPv6 extension headers walked over (RFC 8200 §4): hop-by-hop, routing,
/// fragment (handled apart), destination options, AH.
pub const EXT_HOP_BY_HOP: u8 = 0;
pub const EXT_ROUTING: u8 = 43;
pub const EXT_FRAGMENT: u8 = 44;
pub const EXT_AH: u8 = 51;
pub const EXT_DEST_OPTS: u8 = 60;
/// Bound on the extension headers walked (each is at least 8 bytes anyway).
const MAX_EXT_HEADERS: usize = 16;

/// Why a packet's IP header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("packet too short for its IP header")]
    Truncated,
    #[error("not an IPv4 or IPv6 packet")]
    BadVersion,
    #[error("malformed IP header")]
    BadHeader,
}

/// The IP version a packet's first nibble announces (nothing else checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of(packet: &[u8]) -> Option<IpVersion> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Some(IpVersion::V4),
            Some(6) => Some(IpVersion::V6),
            _ => None,
        }
    }

    /// The shortest header of this version.
    pub fn min_header_len(self) -> usize {
        match self {
            IpVersion::V4 => IPV4_HEADER_LEN,
            IpVersion::V6 => IPV6_HEADER_LEN,
        }
    }
}

/// An IPv4 header whose length fields were checked against the packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4View<'a> {
    p: &'a [u8],
    ihl: usize,
}

impl<'a> Ipv4View<'a> {
    /// Checks the header length (IHL at least 5 words, within the packet);
    /// the version nibble is the caller's.
    pub fn new(p: &'a [u8]) -> Result<Self, IpError> {
        if p.len() < IPV4_HEADER_LEN {
            return Err(IpError::Truncated);
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < IPV4_HEADER_LEN {
            return Err(IpError::BadHeader);
        }
        if p.len() < ihl {
            return Err(IpError::Truncated);
        }
        Ok(Ipv4View { p, ihl })
    }

    pub fn header_len(&self) -> usize {
        self.ihl
    }
    pub fn protocol(&self) -> u8 {
        self.p[9]
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.p[12], self.p[13], self.p[14], self.p[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.p[16], self.p[17], self.p[18], self.p[19])
    }
    fn flags_fragment(&self) -> u16 {
        u16::from_be_bytes([self.p[6], self.p[7]])
    }
    pub fn more_fragments(&self) -> bool {
        self.flags_fragment() & 0x2000 != 0
    }
    /// Fragment offset in 8-octet units.
    pub fn fragment_offset(&self) -> u16 {
        self.flags_fragment() & 0x1fff
    }
    /// A fragment, initial or not.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }
    /// What follows the header (options included in it).
    pub fn payload(&self) -> &'a [u8] {
        &self.p[self.ihl..]
    }

    pub fn five_tuple(&self) -> FiveTuple {
        let ports = if self.fragment_offset() == 0 {
            ports_of(self.protocol(), self.payload())
        } else {
            None
        };
        FiveTuple {
            src: self.src().into(),
            dst: self.dst().into(),
            proto: self.protocol(),
            ports,
            fragment: self.is_fragment(),
        }
    }
}

/// An IPv6 packet at least as long as its fixed header.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6View<'a> {
    p: &'a [u8],
}

/// The upper-layer header of an IPv6 packet, past its extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    pub protocol: u8,
    /// From the upper-layer header on (empty when the packet ends before).
    pub header: &'a [u8],
    /// A fragment header was seen.
    pub fragment: bool,
    /// ... with a non-zero offset: the upper-layer header is elsewhere.
    pub non_initial: bool,
}

impl<'a> Ipv6View<'a> {
    /// Checks the length of the fixed header; the version nibble is the
    /// caller's.
    pub fn new(p: &'a [u8]) -> Result<Self, IpError> {
        if p.len() < IPV6_HEADER_LEN {
            return Err(IpError::Truncated);
        }
        Ok(Ipv6View { p })
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.p[8..24]))
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.p[24..40]))
    }
    /// The fixed header's next header (an extension header or the upper
    /// layer).
    pub fn next_header(&self) -> u8 {
        self.p[6]
    }
    /// What follows the fixed header.
    pub fn payload(&self) -> &'a [u8] {
        &self.p[IPV6_HEADER_LEN..]
    }

    /// Walks the extension headers (at most 16) to the upper layer.
    pub fn upper_layer(&self) -> Result<UpperLayer<'a>, IpError> {
        let p = self.p;
        let mut next = self.next_header();
        let mut off = IPV6_HEADER_LEN;
        let mut fragment = false;
        let mut non_initial = false;
        for _ in 0..MAX_EXT_HEADERS {
            match next {
                EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS | EXT_AH => {
                    let h = p.get(off..off + 2).ok_or(IpError::Truncated)?;
                    let len = if next == EXT_AH {
                        (usize::from(h[1]) + 2) * 4
                    } else {
                        (usize::from(h[1]) + 1) * 8
                    };
                    next = h[0];
                    off += len;
                    if off > p.len() {
                        return Err(IpError::Truncated);
                    }
                }
                EXT_FRAGMENT => {
                    let h = p.get(off..off + 8).ok_or(IpError::Truncated)?;
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
            return Err(IpError::BadHeader);
        }
        Ok(UpperLayer {
            protocol: next,
            header: p.get(off..).unwrap_or(&[]),
            fragment,
            non_initial,
        })
    }

    pub fn five_tuple(&self) -> Result<FiveTuple, IpError> {
        let u = self.upper_layer()?;
        let ports = if u.non_initial {
            None
        } else {
            ports_of(u.protocol, u.header)
        };
        Ok(FiveTuple {
            src: self.src().into(),
            dst: self.dst().into(),
            proto: u.protocol,
            ports,
            fragment: u.fragment,
        })
    }
}

fn addr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    a
}

/// A checked IPv4 or IPv6 header.
#[derive(Debug, Clone, Copy)]
pub enum IpView<'a> {
    V4(Ipv4View<'a>),
    V6(Ipv6View<'a>),
}

impl<'a> IpView<'a> {
    pub fn parse(packet: &'a [u8]) -> Result<Self, IpError> {
        match packet.first().map(|b| b >> 4) {
            None => Err(IpError::Truncated),
            Some(4) => Ipv4View::new(packet).map(IpView::V4),
            Some(6) => Ipv6View::new(packet).map(IpView::V6),
            Some(_) => Err(IpError::BadVersion),
        }
    }

    pub fn src(&self) -> IpAddr {
        match self {
            IpView::V4(h) => h.src().into(),
            IpView::V6(h) => h.src().into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            IpView::V4(h) => h.dst().into(),
            IpView::V6(h) => h.dst().into(),
        }
    }

    pub fn five_tuple(&self) -> Result<FiveTuple, IpError> {
        match self {
            IpView::V4(h) => Ok(h.five_tuple()),
            IpView::V6(h) => h.five_tuple(),
        }
    }
}

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

/// The 5-tuple of an IPv4 or IPv6 packet. Initial fragments yield ports when
/// the transport header is in them; non-initial ones never do.
pub fn parse_five_tuple(packet: &[u8]) -> Result<FiveTuple, IpError> {
    IpView::parse(packet)?.five_tuple()
}

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

/// Appends a fresh IPv4 header (TTL 64, checksummed) or IPv6 header (hop
/// limit 64) for `payload_len` bytes of protocol `proto` from `src` to
/// `dst`. Returns `false`, appending nothing, when the families differ or
/// the length does not fit.
pub fn push_header(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
) -> bool {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let Ok(total) = u16::try_from(IPV4_HEADER_LEN + payload_len) else {
                return false;
            };
            let mut h = [0u8; IPV4_HEADER_LEN];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = !checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let Ok(len) = u16::try_from(payload_len) else {
                return false;
            };
            let mut h = [0u8; IPV6_HEADER_LEN];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&len.to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&h);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_headers_read_back() {
        for (src, dst) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let mut p = Vec::new();
            assert!(push_header(&mut p, src, dst, PROTO_UDP, 8));
            p.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
            let v = IpView::parse(&p).unwrap();
            assert_eq!((v.src(), v.dst()), (src, dst));
            let t = v.five_tuple().unwrap();
            assert_eq!(
                (t.proto, t.ports, t.fragment),
                (PROTO_UDP, Some((1, 2)), false)
            );
        }
    }

    #[test]
    fn views_check_lengths() {
        assert_eq!(IpVersion::of(&[0x45]), Some(IpVersion::V4));
        assert_eq!(IpVersion::of(&[0x55]), None);
        assert!(matches!(
            Ipv4View::new(&[0x45; 19]),
            Err(IpError::Truncated)
        ));
        assert!(matches!(
            Ipv6View::new(&[0x60; 39]),
            Err(IpError::Truncated)
        ));
        let mut v4 = vec![0u8; 24];
        v4[0] = 0x46;
        let h = Ipv4View::new(&v4).unwrap();
        assert_eq!(
            (h.header_len(), h.payload().len(), h.is_fragment()),
            (24, 0, false)
        );
        v4[6] = 0x20;
        let h = Ipv4View::new(&v4).unwrap();
        assert!(h.more_fragments() && h.is_fragment() && h.fragment_offset() == 0);
        v4[0] = 0x44;
        assert!(matches!(Ipv4View::new(&v4), Err(IpError::BadHeader)));
        let mut mixed = Vec::new();
        assert!(!push_header(
            &mut mixed,
            "198.18.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            6,
            0
        ));
        assert!(mixed.is_empty());
    }
}
