//! ESP with AEAD ciphers (RFC 4303; RFC 4106 AES-GCM, RFC 7634
//! ChaCha20-Poly1305) for the userspace dataplane, as carried in ESP-in-UDP
//! (RFC 3948): the bytes here are exactly a UDP/4500 payload.
//!
//! Packet layout (RFC 4303 §2, RFC 4106 §3):
//!
//! ```text
//! 0        4        8                16                       len-16   len
//! | SPI    | Seq lo | IV (= 64-bit seq)| ciphertext              | ICV(16) |
//!                                      payload ‖ padding 1,2,..n ‖ n ‖ NH
//! ```
//!
//! - AAD = SPI ‖ seq lo, or SPI ‖ seq hi ‖ seq lo with ESN (RFC 4106 §5,
//!   RFC 7634 §2.1); nonce = salt(4) ‖ IV(8), built by [`AeadKey`].
//! - The IV is the 64-bit sequence number: unique for the key's lifetime
//!   because sequence numbers never wrap (§3.3.3); reaching the last one is
//!   [`EspError::SequenceOverflow`] and the SA must be rekeyed.
//! - Payload ‖ padding ‖ 2 is padded to a multiple of 4 (§2.4); padding bytes
//!   are 1, 2, 3, ... and checked on receipt.
//! - Inbound order (§3.4): SPI and sequence number are parsed, the replay
//!   window is checked *before* decryption, the ICV verified in place, and
//!   only then the window updated; padding and next header are validated
//!   last. With ESN the high 32 bits are inferred as in RFC 4303 Appendix A.
//! - Next header 59 (§2.6, a TFC dummy packet) decapsulates to an empty
//!   payload the caller must drop.
//!
//! Nothing here allocates per packet once the caller's output `Vec` has
//! grown to the path MTU (packets are built and sealed in it, no copy);
//! no input panics.

use std::net::IpAddr;

use tun_rs::{checksum, checksum_no_fold};

use ike::config::Mode;
use ike::crypto::{AeadAlg, AeadKey};

use super::ip::{self, IpVersion, IpView};
use super::replay::{ReplayError, ReplayWindow};
use crate::SaInstall;

/// SPI ‖ sequence number.
pub const HEADER_LEN: usize = 8;
/// Explicit IV of every supported AEAD.
pub const IV_LEN: usize = AeadAlg::IV_LEN;
/// Integrity check value length.
pub const ICV_LEN: usize = AeadAlg::ICV_LEN;
/// Bytes before the ciphertext: SPI ‖ seq ‖ IV.
pub const PREFIX_LEN: usize = HEADER_LEN + IV_LEN;
/// The shortest packet that can be valid: header, IV, pad length, next
/// header and ICV.
pub const MIN_PACKET_LEN: usize = PREFIX_LEN + 2 + ICV_LEN;
/// Ciphertext alignment required for AEAD ESP (RFC 4106 §3.2).
const ALIGN: usize = 4;

/// Next header: IPv4 (tunnel mode).
pub const NH_IPV4: u8 = 4;
/// Next header: IPv6 (tunnel mode).
pub const NH_IPV6: u8 = 41;
/// Next header: no next header, a dummy packet (RFC 4303 §2.6).
pub const NH_NONE: u8 = 59;

/// Why a packet could not be encapsulated or decapsulated. No variant
/// carries key material; all are cheap to copy and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// Shorter than [`MIN_PACKET_LEN`], or a plaintext too short to hold the
    /// trailer.
    #[error("ESP packet truncated ({0} bytes)")]
    Truncated(usize),
    /// The SPI is not this SA's.
    #[error("SPI {0:08x} does not belong to this SA")]
    WrongSpi(u32),
    /// The sequence number was already received.
    #[error("replayed sequence number {0}")]
    Replayed(u64),
    /// The sequence number is 0 or left of the replay window.
    #[error("sequence number {0} is outside the replay window")]
    TooOld(u64),
    /// The ICV did not verify (tampering, wrong key, wrong ESN guess).
    #[error("ESP integrity check failed")]
    Integrity,
    /// Pad length longer than the plaintext, or pad bytes not 1, 2, 3, ...
    #[error("bad ESP padding")]
    BadPadding,
    /// A next header this SA does not carry (tunnel mode: not 4, 41 or 59).
    #[error("unexpected next header {0}")]
    UnknownNextHeader(u8),
    /// All sequence numbers of the SA are used up (2^32 - 1 without ESN,
    /// 2^64 - 1 with); it must be rekeyed. Inbound: the inferred ESN would
    /// exceed 2^64 - 1.
    #[error("ESP sequence number space exhausted; the SA must be rekeyed")]
    SequenceOverflow,
    /// The packet to encapsulate is not an IP packet this mode can carry.
    #[error("not an IPv4/IPv6 packet this SA can carry")]
    BadInnerPacket,
    /// Transport mode cannot carry a fragment (RFC 4301 §4.1): the peer
    /// would rebuild a header without the fragment's offset.
    #[error("transport mode cannot carry an IP fragment")]
    TransportFragment,
    /// Key material of the wrong length for the cipher.
    #[error("bad ESP key material")]
    BadKey,
}

impl From<ReplayError> for EspError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed(s) => EspError::Replayed(s),
            ReplayError::TooOld(s) => EspError::TooOld(s),
        }
    }
}

/// The SPI of an ESP packet, for demultiplexing to its [`InboundSa`].
pub fn peek_spi(packet: &[u8]) -> Option<u32> {
    packet
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// What a UDP/4500 payload is (RFC 3948 §2.2, §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500 {
    /// A single 0xFF byte: NAT keepalive, to be dropped.
    Keepalive,
    /// Starts with the 4-byte non-ESP marker (zero): an IKE message follows
    /// the marker.
    Ike,
    /// An ESP packet with this SPI.
    Esp(u32),
    /// Anything else (too short, SPI 1..=255 reserved): drop.
    Invalid,
}

/// Classifies a UDP/4500 payload (RFC 3948 §2).
pub fn classify_udp4500(payload: &[u8]) -> Udp4500 {
    if payload == [0xff] {
        return Udp4500::Keepalive;
    }
    match peek_spi(payload) {
        Some(0) => Udp4500::Ike,
        Some(spi) if spi > 255 && payload.len() >= MIN_PACKET_LEN => Udp4500::Esp(spi),
        _ => Udp4500::Invalid,
    }
}

/// Builds the AAD into `buf` and returns its used prefix.
fn aad(buf: &mut [u8; 12], spi: u32, seq: u64, esn: bool) -> &[u8] {
    buf[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        buf[4..].copy_from_slice(&seq.to_be_bytes());
        &buf[..]
    } else {
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        &buf[..8]
    }
}

/// The sending half of a CHILD SA.
pub struct OutboundSa {
    spi: u32,
    /// Last sequence number sent (0: none yet).
    seq: u64,
    esn: bool,
    key: AeadKey,
    mode: Mode,
    packets: u64,
    bytes: u64,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("seq", &self.seq)
            .field("esn", &self.esn)
            .field("alg", &self.key.alg())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    pub fn new(spi: u32, key: AeadKey, esn: bool, mode: Mode) -> Self {
        OutboundSa {
            spi,
            seq: 0,
            esn,
            key,
            mode,
            packets: 0,
            bytes: 0,
        }
    }

    /// Keyed from `material` = key ‖ salt as in [`ike::keys::ChildKeys`].
    pub fn from_material(
        spi: u32,
        alg: AeadAlg,
        material: &[u8],
        esn: bool,
        mode: Mode,
    ) -> Result<Self, EspError> {
        let key = AeadKey::new(alg, material).map_err(|_| EspError::BadKey)?;
        Ok(Self::new(spi, key, esn, mode))
    }

    /// Continue after `last_sent` (the next packet carries `last_sent + 1`);
    /// for tests and for resuming state. Never use it to go back.
    pub fn with_last_seq(mut self, last_sent: u64) -> Self {
        self.seq = last_sent;
        self
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// Last sequence number sent (0 if none).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn esn(&self) -> bool {
        self.esn
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn alg(&self) -> AeadAlg {
        self.key.alg()
    }
    /// Packets and inner bytes sent.
    pub fn counters(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }

    /// Upper bound of the bytes [`encapsulate`](Self::encapsulate) appends
    /// for an inner packet of `inner_len` bytes.
    pub fn max_output_len(inner_len: usize) -> usize {
        PREFIX_LEN + inner_len + (ALIGN - 1) + 2 + ICV_LEN
    }

    /// Takes the next sequence number, refusing to wrap (RFC 4303 §3.3.3).
    fn next_seq(&mut self) -> Result<u64, EspError> {
        let limit = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.seq >= limit {
            return Err(EspError::SequenceOverflow);
        }
        self.seq += 1;
        Ok(self.seq)
    }

    /// Encrypts the IP packet `inner` and *appends* the ESP packet to `out`
    /// (so a caller may keep headers in front); returns the bytes appended.
    ///
    /// Tunnel mode carries the whole packet (next header 4 or 41); transport
    /// mode carries what follows the IPv4 header or the fixed IPv6 header,
    /// with that header's protocol as next header; the caller sends it with
    /// its own outer header (and, behind NAT, fixes checksums per RFC 3948
    /// §3.1.2). On error nothing is appended and, except for
    /// [`EspError::SequenceOverflow`], no sequence number is used.
    pub fn encapsulate(&mut self, inner: &[u8], out: &mut Vec<u8>) -> Result<usize, EspError> {
        let (payload, next_header) = match self.mode {
            Mode::Tunnel => match IpVersion::of(inner) {
                Some(v) if inner.len() >= v.min_header_len() => (inner, tunnel_next_header(v)),
                _ => return Err(EspError::BadInnerPacket),
            },
            Mode::Transport => transport_payload(inner)?,
        };
        let seq = self.next_seq()?;
        let pad_len = (ALIGN - (payload.len() + 2) % ALIGN) % ALIGN;
        let iv = seq.to_be_bytes();

        // Built in place in `out`: header, then the plaintext (payload,
        // default padding 1, 2, 3 (RFC 4303 §2.4), pad length, next
        // header) sealed where it lies, then the ICV.
        let start = out.len();
        out.reserve(PREFIX_LEN + payload.len() + pad_len + 2 + ICV_LEN);
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&(seq as u32).to_be_bytes());
        out.extend_from_slice(&iv);
        out.extend_from_slice(payload);
        out.extend(1..=pad_len as u8);
        out.push(pad_len as u8);
        out.push(next_header);
        let mut aad_buf = [0u8; 12];
        let aad = aad(&mut aad_buf, self.spi, seq, self.esn);
        let icv = self
            .key
            .seal_in_place_separate_tag(&iv, aad, &mut out[start + PREFIX_LEN..]);
        out.extend_from_slice(&icv);
        self.packets += 1;
        self.bytes += inner.len() as u64;
        Ok(out.len() - start)
    }
}

/// Transport mode, receiving: appends to `out` the IP packet that carried
/// `payload` (protocol `proto`) from `src` to `dst`: a fresh IPv4 header
/// (TTL 64) or IPv6 header (hop limit 64), then the payload.
///
/// The TCP, UDP and ICMPv6 checksums are recomputed: they cover addresses
/// the sender's packet may have had before a NAT (RFC 3948 §3.1.2 lets the
/// receiver recompute them; the payload's integrity is already proven by
/// the ESP ICV). A UDP-over-IPv4 checksum of zero (none) stays zero.
/// Returns `false`, appending nothing, when `src` and `dst` differ in
/// family or the payload does not fit an IP packet.
pub fn transport_rebuild(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &[u8],
) -> bool {
    if !ip::push_header(out, src, dst, proto, payload.len()) {
        return false;
    }
    let body = out.len();
    out.extend_from_slice(payload);
    let csum_at = match proto {
        ip::PROTO_TCP if payload.len() >= 20 => Some(16),
        ip::PROTO_UDP if payload.len() >= 8 => {
            let none = src.is_ipv4() && payload[6] == 0 && payload[7] == 0;
            (!none).then_some(6)
        }
        ip::PROTO_ICMPV6 if src.is_ipv6() && payload.len() >= 4 => Some(2),
        _ => None,
    };
    if let Some(at) = csum_at {
        let seg = &mut out[body..];
        seg[at] = 0;
        seg[at + 1] = 0;
        let mut c = !checksum(seg, pseudo_header_sum(src, dst, proto, seg.len()));
        // UDP sends a computed zero as all ones (RFC 768).
        if proto == ip::PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// Ones' complement sum, unfolded, of the TCP/UDP/ICMPv6 pseudo-header.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let octets = |a: IpAddr| match a {
        IpAddr::V4(a) => checksum_no_fold(&a.octets(), 0),
        IpAddr::V6(a) => checksum_no_fold(&a.octets(), 0),
    };
    octets(src) + octets(dst) + u64::from(proto) + len as u64
}

/// The next header of a tunnel-mode ESP packet carrying this version.
fn tunnel_next_header(v: IpVersion) -> u8 {
    match v {
        IpVersion::V4 => NH_IPV4,
        IpVersion::V6 => NH_IPV6,
    }
}

/// Transport mode: the upper-layer part of `inner` and its protocol (what
/// follows the IPv4 header or the fixed IPv6 header).
fn transport_payload(inner: &[u8]) -> Result<(&[u8], u8), EspError> {
    match IpView::parse(inner).map_err(|_| EspError::BadInnerPacket)? {
        IpView::V4(h) if h.is_fragment() => Err(EspError::TransportFragment),
        IpView::V4(h) => Ok((h.payload(), h.protocol())),
        IpView::V6(h) if h.next_header() == ip::EXT_FRAGMENT => Err(EspError::TransportFragment),
        IpView::V6(h) => Ok((h.payload(), h.next_header())),
    }
}

/// A decapsulated packet; borrows the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Decap<'a> {
    /// The full (ESN-inferred) sequence number.
    pub seq: u64,
    /// 4 (IPv4) or 41 (IPv6) in tunnel mode, the upper-layer protocol in
    /// transport mode, 59 for a dummy packet.
    pub next_header: u8,
    /// The inner packet (tunnel) or upper-layer payload (transport); empty
    /// for a dummy packet.
    pub payload: &'a mut [u8],
}

impl Decap<'_> {
    /// A TFC dummy packet (next header 59): verified, counted, to be dropped.
    pub fn is_dummy(&self) -> bool {
        self.next_header == NH_NONE
    }
}

/// Per-SA receive counters; failures are counted by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundStats {
    pub packets: u64,
    /// Bytes of inner payload delivered.
    pub bytes: u64,
    pub truncated: u64,
    pub wrong_spi: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub integrity: u64,
    pub bad_padding: u64,
    pub bad_next_header: u64,
}

/// The receiving half of a CHILD SA.
pub struct InboundSa {
    spi: u32,
    esn: bool,
    key: AeadKey,
    mode: Mode,
    replay: ReplayWindow,
    stats: InboundStats,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("esn", &self.esn)
            .field("alg", &self.key.alg())
            .field("mode", &self.mode)
            .field("replay_top", &self.replay.top())
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    pub fn new(spi: u32, key: AeadKey, esn: bool, mode: Mode, replay: ReplayWindow) -> Self {
        InboundSa {
            spi,
            esn,
            key,
            mode,
            replay,
            stats: InboundStats::default(),
        }
    }

    /// Keyed from `material` = key ‖ salt, with the default window.
    pub fn from_material(
        spi: u32,
        alg: AeadAlg,
        material: &[u8],
        esn: bool,
        mode: Mode,
    ) -> Result<Self, EspError> {
        let key = AeadKey::new(alg, material).map_err(|_| EspError::BadKey)?;
        Ok(Self::new(spi, key, esn, mode, ReplayWindow::default()))
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }
    pub fn esn(&self) -> bool {
        self.esn
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }
    pub fn stats(&self) -> InboundStats {
        self.stats
    }

    /// The full sequence number for the received low 32 bits (RFC 4303
    /// Appendix A2.2, window size W = the replay window's).
    fn infer_seq(&self, seq_lo: u32) -> Result<u64, EspError> {
        if !self.esn {
            return Ok(u64::from(seq_lo));
        }
        let top = self.replay.top();
        let tl = top as u32;
        let th = (top >> 32) as u32;
        // The window is at most 2^20, so this fits.
        let w1 = (self.replay.size() - 1) as u32;
        let bottom = tl.wrapping_sub(w1);
        let hi = if tl >= w1 {
            // Case A: the window lies within one subspace.
            if seq_lo >= bottom {
                th
            } else {
                th.checked_add(1).ok_or(EspError::SequenceOverflow)?
            }
        } else if seq_lo >= bottom {
            // Case B, the part of the window in the previous subspace.
            th.checked_sub(1)
                .ok_or(EspError::TooOld(u64::from(seq_lo)))?
        } else {
            th
        };
        Ok(u64::from(hi) << 32 | u64::from(seq_lo))
    }

    /// Verifies and decrypts `packet` (a whole ESP packet) in place and
    /// returns the inner packet as a slice of it. On any error the content
    /// of `packet` is unspecified and the replay window is unchanged, except
    /// that a packet whose ICV verified but whose padding or next header is
    /// bad still consumes its sequence number.
    pub fn decapsulate<'a>(&mut self, packet: &'a mut [u8]) -> Result<Decap<'a>, EspError> {
        let r = self.decapsulate_inner(packet);
        match &r {
            Ok(d) => {
                self.stats.packets += 1;
                self.stats.bytes += d.payload.len() as u64;
            }
            Err(e) => {
                let s = &mut self.stats;
                match e {
                    EspError::Truncated(_) => s.truncated += 1,
                    EspError::WrongSpi(_) => s.wrong_spi += 1,
                    EspError::Replayed(_) => s.replayed += 1,
                    EspError::TooOld(_) | EspError::SequenceOverflow => s.too_old += 1,
                    EspError::Integrity => s.integrity += 1,
                    EspError::BadPadding => s.bad_padding += 1,
                    EspError::UnknownNextHeader(_) => s.bad_next_header += 1,
                    EspError::BadInnerPacket | EspError::TransportFragment | EspError::BadKey => {}
                }
            }
        }
        r
    }

    fn decapsulate_inner<'a>(&mut self, packet: &'a mut [u8]) -> Result<Decap<'a>, EspError> {
        let len = packet.len();
        if len < MIN_PACKET_LEN {
            return Err(EspError::Truncated(len));
        }
        let (prefix, body) = packet.split_at_mut(PREFIX_LEN);
        let spi = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if spi != self.spi {
            return Err(EspError::WrongSpi(spi));
        }
        let seq_lo = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let seq = self.infer_seq(seq_lo)?;
        // Cheap check before spending cycles on decryption (§3.4.3).
        self.replay.check(seq)?;

        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&prefix[HEADER_LEN..PREFIX_LEN]);
        let mut aad_buf = [0u8; 12];
        let aad = aad(&mut aad_buf, spi, seq, self.esn);
        let pt = self
            .key
            .open_in_place(&iv, aad, body)
            .map_err(|_| EspError::Integrity)?;
        // Authentic: only now may the window move.
        self.replay.update(seq);

        let n = pt.len();
        if n < 2 {
            return Err(EspError::Truncated(len));
        }
        let pad_len = usize::from(pt[n - 2]);
        let next_header = pt[n - 1];
        if pad_len + 2 > n {
            return Err(EspError::BadPadding);
        }
        let payload_len = n - 2 - pad_len;
        let pad_ok = pt[payload_len..n - 2]
            .iter()
            .zip(1u8..)
            .all(|(&b, want)| b == want);
        if !pad_ok {
            return Err(EspError::BadPadding);
        }
        let payload = &mut pt[..payload_len];
        if next_header == NH_NONE {
            return Ok(Decap {
                seq,
                next_header,
                payload: &mut payload[..0],
            });
        }
        if self.mode == Mode::Tunnel {
            let version_ok = match next_header {
                NH_IPV4 => IpVersion::of(payload) == Some(IpVersion::V4),
                NH_IPV6 => IpVersion::of(payload) == Some(IpVersion::V6),
                _ => return Err(EspError::UnknownNextHeader(next_header)),
            };
            if !version_ok {
                return Err(EspError::UnknownNextHeader(next_header));
            }
        }
        Ok(Decap {
            seq,
            next_header,
            payload,
        })
    }
}

/// Both halves of the CHILD SA described by `sa` (inbound keyed with
/// `keys.inbound`, outbound with `keys.outbound`).
pub fn sa_pair(sa: &SaInstall) -> Result<(InboundSa, OutboundSa), EspError> {
    let inbound = InboundSa::from_material(sa.spi_in, sa.encr, &sa.keys.inbound, sa.esn, sa.mode)?;
    let outbound =
        OutboundSa::from_material(sa.spi_out, sa.encr, &sa.keys.outbound, sa.esn, sa.mode)?;
    Ok((inbound, outbound))
}
