//! Encoding and decoding of IKEv2 messages and payloads (RFC 7296 §3).
//!
//! Decoding is strict and total: every length, count and "last substructure"
//! marker is checked, every malformed input yields a [`DecodeError`], and no
//! input can make it panic (all reads go through bounds-checked helpers, all
//! arithmetic is on lengths already known to fit).
//!
//! Reserved fields are sent as zero and ignored on receipt, as is the critical
//! bit of payload types we understand (§2.5); the reserved top bit of a
//! configuration attribute type is likewise ignored. Decoding therefore
//! normalises these bits, and `decode(encode(decode(x))) == decode(x)` holds
//! for every `x` that decodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::types::*;

/// Length of the fixed IKE header (§3.1).
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header (§3.2).
pub const PAYLOAD_HEADER_LEN: usize = 4;

const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;
const ATTR_FORMAT_TV: u16 = 0x8000;
const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const CRITICAL: u8 = 0x80;
const TS_IPV4_LEN: usize = 16;
const TS_IPV6_LEN: usize = 40;

/// Why a datagram or payload chain could not be decoded. `what` names the
/// structure in which the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes were available than `what` requires.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field (or a fixed-size datum) of `what` has an invalid value.
    #[error("invalid length {len} of {what}")]
    BadLength { what: &'static str, len: usize },
    /// The IKE header's length field disagrees with the datagram size.
    #[error("IKE header length field is {field} but the datagram has {actual} bytes")]
    HeaderLength { field: u32, actual: usize },
    /// The major version in the IKE header is not 2.
    #[error("unsupported IKE major version {0}")]
    UnsupportedVersion(u8),
    /// A traffic selector type other than TS_IPV4_ADDR_RANGE / TS_IPV6_ADDR_RANGE.
    #[error("unknown traffic selector type {0}")]
    UnknownTsType(u8),
    /// Bytes left over after `what` was complete.
    #[error("{extra} bytes of trailing data after {what}")]
    TrailingData { what: &'static str, extra: usize },
    /// An SK (or SKF) payload is followed by more data.
    #[error("SK payload is not the last payload ({extra} bytes follow it)")]
    EncryptedNotLast { extra: usize },
    /// An SK / SKF payload inside a decrypted payload chain.
    #[error("{0} payload inside an encrypted payload")]
    NestedEncrypted(PayloadType),
    /// A "last substructure" field with a value other than 0 / 2 (proposals)
    /// or 0 / 3 (transforms).
    #[error("invalid last-substructure value {value} in {what}")]
    BadLastMarker { what: &'static str, value: u8 },
    /// The "last substructure" field of substructure number `index` (from 0)
    /// disagrees with whether more data follows it.
    #[error(
        "{what} #{index}: last-substructure marker (last = {marked_last}) disagrees with the data"
    )]
    LastMarkerMismatch {
        what: &'static str,
        index: usize,
        marked_last: bool,
    },
    /// A count field disagrees with the number of items present.
    #[error("{what}: count field says {declared}, found {found}")]
    CountMismatch {
        what: &'static str,
        declared: usize,
        found: usize,
    },
    /// A structure that must contain at least one item contains none.
    #[error("{what} is empty")]
    Empty { what: &'static str },
}

/// Why [`Message::try_encode`] / [`try_encode_payloads`] refused a value.
/// ([`Message::encode`] never fails; given such a value it produces bytes
/// that will not decode back to it.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `what` is longer (or has more items) than its wire field can express.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A traffic selector whose start and end addresses are of different families.
    #[error("traffic selector mixes IPv4 and IPv6 addresses")]
    MixedTsFamilies,
    /// A Delete payload SPI whose length differs from `spi_size`, or a
    /// non-empty SPI list with `spi_size` 0.
    #[error("Delete payload: SPI of {len} bytes with spi_size {spi_size}")]
    DeleteSpiSize { spi_size: u8, len: usize },
    /// An SK (or SKF) payload that is not the last one.
    #[error("SK payload is not the last payload")]
    EncryptedNotLast,
    /// A [`Payload::Unknown`] whose type is NONE, SK or one that decodes to
    /// its own variant: it would not decode back to `Unknown`.
    #[error("payload type {0} cannot be encoded as an unknown payload")]
    UnknownWithKnownType(PayloadType),
    /// A 15-bit attribute type (transform or configuration attribute) with
    /// the top bit set; it is masked off on the wire.
    #[error("{what} type {attr_type:#06x} does not fit in 15 bits")]
    AttributeType { what: &'static str, attr_type: u16 },
}

/// A whole IKE message: header and payload chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

// ---------------------------------------------------------------------------
// Bounds-checked reading

/// A cursor over a byte slice; every read checks the remaining length.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(tail)) => {
                self.buf = tail;
                Ok(head)
            }
            _ => Err(DecodeError::Truncated {
                what,
                need: n,
                have: self.buf.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails with `TrailingData` unless everything was consumed.
    fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingData {
                what,
                extra: self.buf.len(),
            })
        }
    }
}

/// Splits a substructure whose total length (header included) is `len`
/// (read from its header) off the reader. `header_len` bytes of it have
/// already been consumed; returns the remaining body.
fn substructure<'a>(
    r: &mut Reader<'a>,
    len: u16,
    header_len: usize,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let len = usize::from(len);
    let body_len = len
        .checked_sub(header_len)
        .ok_or(DecodeError::BadLength { what, len })?;
    if body_len > r.remaining() {
        return Err(DecodeError::Truncated {
            what,
            need: len,
            have: r.remaining().saturating_add(header_len),
        });
    }
    r.take(body_len, what)
}

// ---------------------------------------------------------------------------
// Header

impl Header {
    /// Decodes the fixed 28-byte header at the start of `buf` (which may be
    /// longer). Checks the major version; does not check the length field.
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(buf);
        let bytes = r.take(HEADER_LEN, "IKE header")?;
        let mut r = Reader::new(bytes);
        let spi_i = r.u64("IKE header")?;
        let spi_r = r.u64("IKE header")?;
        let next_payload = PayloadType(r.u8("IKE header")?);
        let version = r.u8("IKE header")?;
        let exchange = ExchangeType(r.u8("IKE header")?);
        let flags = r.u8("IKE header")?;
        let message_id = r.u32("IKE header")?;
        let length = r.u32("IKE header")?;
        if version >> 4 != 2 {
            return Err(DecodeError::UnsupportedVersion(version >> 4));
        }
        Ok(Header {
            spi_i,
            spi_r,
            next_payload,
            version,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    /// Encodes the header with every field as stored.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.spi_i.to_be_bytes());
        out[8..16].copy_from_slice(&self.spi_r.to_be_bytes());
        out[16] = self.next_payload.0;
        out[17] = self.version;
        out[18] = self.exchange.0;
        out[19] = self.flags;
        out[20..24].copy_from_slice(&self.message_id.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// The Response flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// The Initiator flag is set (the sender is the original initiator).
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

// ---------------------------------------------------------------------------
// Message and payload chains

impl Message {
    /// Decodes a whole datagram. The header's length field must equal
    /// `buf.len()`; the payload chain must consume the datagram exactly, and
    /// an SK payload must be the last one (its `next_payload` is the first
    /// inner payload type and ends the chain).
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let header = Header::decode(buf)?;
        if usize::try_from(header.length).ok() != Some(buf.len()) {
            return Err(DecodeError::HeaderLength {
                field: header.length,
                actual: buf.len(),
            });
        }
        let body = buf.get(HEADER_LEN..).unwrap_or_default();
        let payloads = decode_chain(header.next_payload, body, false)?;
        Ok(Message { header, payloads })
    }

    /// Encodes the message, computing the header's next payload and length
    /// fields and the whole payload chain (the stored `next_payload` and
    /// `length` are ignored). Values that cannot be represented on the wire
    /// (see [`EncodeError`]) are encoded as best as possible; use
    /// [`Message::try_encode`] to reject them instead.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_inner().0
    }

    /// Like [`Message::encode`], but fails if some field cannot be represented.
    pub fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self.encode_inner() {
            (out, None) => Ok(out),
            (_, Some(e)) => Err(e),
        }
    }

    fn encode_inner(&self) -> (Vec<u8>, Option<EncodeError>) {
        let mut w = Writer {
            out: Vec::with_capacity(256),
            err: None,
        };
        w.out.extend_from_slice(&[0u8; HEADER_LEN]);
        let first = encode_chain(&self.payloads, &mut w);
        let total = w.out.len();
        let length = u32::try_from(total).unwrap_or_else(|_| {
            w.fail(EncodeError::TooLong {
                what: "IKE message",
                len: total,
                max: u32::MAX as usize,
            });
            u32::MAX
        });
        let header = Header {
            next_payload: first,
            length,
            ..self.header.clone()
        };
        if let Some(h) = w.out.get_mut(..HEADER_LEN) {
            h.copy_from_slice(&header.encode());
        }
        (w.out, w.err)
    }

    /// The type of the first payload we do not understand whose critical bit
    /// is set, if any (the peer must then get UNSUPPORTED_CRITICAL_PAYLOAD).
    pub fn unsupported_critical(&self) -> Option<PayloadType> {
        first_unsupported_critical(&self.payloads)
    }
}

/// The type of the first [`Payload::Unknown`] in `payloads` with the critical
/// bit set. Use it on decrypted SK contents as well as on the message.
pub fn first_unsupported_critical(payloads: &[Payload]) -> Option<PayloadType> {
    payloads.iter().find_map(|p| match p {
        Payload::Unknown {
            payload_type,
            critical: true,
            ..
        } => Some(*payload_type),
        _ => None,
    })
}

/// Decodes a payload chain starting with a payload of type `first` (the
/// decrypted contents of an SK payload). The chain must consume `buf`
/// exactly; an SK or SKF payload inside it is an error.
pub fn decode_payloads(first: PayloadType, buf: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    decode_chain(first, buf, true)
}

/// Encodes a payload chain; returns the type of the first payload
/// ([`PayloadType::NONE`] if `payloads` is empty) and the bytes.
pub fn encode_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut w = Writer {
        out: Vec::new(),
        err: None,
    };
    let first = encode_chain(payloads, &mut w);
    (first, w.out)
}

/// Like [`encode_payloads`], but fails if some field cannot be represented.
pub fn try_encode_payloads(payloads: &[Payload]) -> Result<(PayloadType, Vec<u8>), EncodeError> {
    let mut w = Writer {
        out: Vec::new(),
        err: None,
    };
    let first = encode_chain(payloads, &mut w);
    match w.err {
        None => Ok((first, w.out)),
        Some(e) => Err(e),
    }
}

impl Payload {
    /// The payload type as written in the previous next-payload field.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::Unknown { payload_type, .. } => *payload_type,
        }
    }
}

fn decode_chain(
    first: PayloadType,
    buf: &[u8],
    inside_sk: bool,
) -> Result<Vec<Payload>, DecodeError> {
    let mut r = Reader::new(buf);
    let mut ty = first;
    let mut out = Vec::new();
    loop {
        if ty == PayloadType::NONE {
            r.finish("last payload")?;
            return Ok(out);
        }
        let encrypted = ty == PayloadType::SK || ty == PayloadType::SKF;
        if encrypted && inside_sk {
            return Err(DecodeError::NestedEncrypted(ty));
        }
        let next = PayloadType(r.u8("generic payload header")?);
        let critical = r.u8("generic payload header")? & CRITICAL != 0;
        let len = r.u16("generic payload header")?;
        let body = substructure(&mut r, len, PAYLOAD_HEADER_LEN, payload_name(ty))?;
        if encrypted {
            // The next-payload field of SK / SKF is the type of the first
            // inner payload: the outer chain ends here.
            if !r.is_empty() {
                return Err(DecodeError::EncryptedNotLast {
                    extra: r.remaining(),
                });
            }
            out.push(if ty == PayloadType::SK {
                Payload::Encrypted(Encrypted {
                    next_payload: next,
                    body: body.to_vec(),
                })
            } else {
                Payload::Unknown {
                    payload_type: ty,
                    critical,
                    body: body.to_vec(),
                }
            });
            return Ok(out);
        }
        out.push(decode_body(ty, critical, body)?);
        ty = next;
    }
}

fn payload_name(ty: PayloadType) -> &'static str {
    match ty {
        PayloadType::SA => "SA payload",
        PayloadType::KE => "KE payload",
        PayloadType::IDI => "IDi payload",
        PayloadType::IDR => "IDr payload",
        PayloadType::CERT => "CERT payload",
        PayloadType::CERTREQ => "CERTREQ payload",
        PayloadType::AUTH => "AUTH payload",
        PayloadType::NONCE => "Nonce payload",
        PayloadType::NOTIFY => "Notify payload",
        PayloadType::DELETE => "Delete payload",
        PayloadType::VENDOR_ID => "Vendor ID payload",
        PayloadType::TSI => "TSi payload",
        PayloadType::TSR => "TSr payload",
        PayloadType::SK => "SK payload",
        PayloadType::CP => "CP payload",
        PayloadType::SKF => "SKF payload",
        _ => "unknown payload",
    }
}

fn decode_body(ty: PayloadType, critical: bool, body: &[u8]) -> Result<Payload, DecodeError> {
    let mut r = Reader::new(body);
    let p = match ty {
        PayloadType::SA => Payload::Sa(decode_sa(&mut r)?),
        PayloadType::KE => {
            let group = r.u16("KE payload")?;
            r.take(2, "KE payload")?;
            Payload::Ke(KeyExchange {
                group,
                data: r.rest().to_vec(),
            })
        }
        PayloadType::NONCE => Payload::Nonce(r.rest().to_vec()),
        PayloadType::NOTIFY => {
            let protocol = ProtocolId(r.u8("Notify payload")?);
            let spi_size = r.u8("Notify payload")?;
            let notify_type = NotifyType(r.u16("Notify payload")?);
            let spi = r.take(usize::from(spi_size), "Notify SPI")?.to_vec();
            Payload::Notify(Notify {
                protocol,
                spi,
                notify_type,
                data: r.rest().to_vec(),
            })
        }
        PayloadType::DELETE => Payload::Delete(decode_delete(&mut r)?),
        PayloadType::VENDOR_ID => Payload::VendorId(r.rest().to_vec()),
        PayloadType::IDI => Payload::IdI(decode_id(&mut r)?),
        PayloadType::IDR => Payload::IdR(decode_id(&mut r)?),
        PayloadType::AUTH => {
            let method = AuthMethod(r.u8("AUTH payload")?);
            r.take(3, "AUTH payload")?;
            Payload::Auth(Authentication {
                method,
                data: r.rest().to_vec(),
            })
        }
        PayloadType::TSI => Payload::TsI(decode_ts(&mut r)?),
        PayloadType::TSR => Payload::TsR(decode_ts(&mut r)?),
        PayloadType::CERT => Payload::Cert(decode_cert(&mut r, "CERT payload")?),
        PayloadType::CERTREQ => Payload::CertReq(decode_cert(&mut r, "CERTREQ payload")?),
        PayloadType::CP => Payload::Cp(decode_cp(&mut r)?),
        _ => Payload::Unknown {
            payload_type: ty,
            critical,
            body: r.rest().to_vec(),
        },
    };
    r.finish(payload_name(ty))?;
    Ok(p)
}

/// Checks a "last substructure" marker against whether data follows.
fn check_last(
    value: u8,
    more: u8,
    has_more: bool,
    index: usize,
    what: &'static str,
) -> Result<(), DecodeError> {
    let marked_last = match value {
        LAST => true,
        v if v == more => false,
        value => return Err(DecodeError::BadLastMarker { what, value }),
    };
    if marked_last == has_more {
        return Err(DecodeError::LastMarkerMismatch {
            what,
            index,
            marked_last,
        });
    }
    Ok(())
}

fn decode_sa(r: &mut Reader<'_>) -> Result<Vec<Proposal>, DecodeError> {
    const WHAT: &str = "SA proposal";
    let mut proposals = Vec::new();
    if r.is_empty() {
        return Err(DecodeError::Empty { what: "SA payload" });
    }
    while !r.is_empty() {
        let last = r.u8(WHAT)?;
        r.take(1, WHAT)?;
        let len = r.u16(WHAT)?;
        let number = r.u8(WHAT)?;
        let protocol = ProtocolId(r.u8(WHAT)?);
        let spi_size = r.u8(WHAT)?;
        let num_transforms = r.u8(WHAT)?;
        let body = substructure(r, len, PROPOSAL_HEADER_LEN, WHAT)?;
        check_last(last, MORE_PROPOSALS, !r.is_empty(), proposals.len(), WHAT)?;
        let mut pr = Reader::new(body);
        let spi = pr.take(usize::from(spi_size), "SA proposal SPI")?.to_vec();
        let mut transforms = Vec::new();
        while !pr.is_empty() {
            transforms.push(decode_transform(&mut pr, transforms.len())?);
        }
        if transforms.len() != usize::from(num_transforms) {
            return Err(DecodeError::CountMismatch {
                what: "SA proposal transforms",
                declared: usize::from(num_transforms),
                found: transforms.len(),
            });
        }
        proposals.push(Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
    }
    Ok(proposals)
}

fn decode_transform(r: &mut Reader<'_>, index: usize) -> Result<Transform, DecodeError> {
    const WHAT: &str = "SA transform";
    let last = r.u8(WHAT)?;
    r.take(1, WHAT)?;
    let len = r.u16(WHAT)?;
    let transform_type = TransformType(r.u8(WHAT)?);
    r.take(1, WHAT)?;
    let id = r.u16(WHAT)?;
    let body = substructure(r, len, TRANSFORM_HEADER_LEN, WHAT)?;
    check_last(last, MORE_TRANSFORMS, !r.is_empty(), index, WHAT)?;
    let mut ar = Reader::new(body);
    let mut attributes = Vec::new();
    while !ar.is_empty() {
        const AWHAT: &str = "transform attribute";
        let t = ar.u16(AWHAT)?;
        let attr_type = t & !ATTR_FORMAT_TV;
        if t & ATTR_FORMAT_TV != 0 {
            let value = ar.u16(AWHAT)?;
            attributes.push(Attribute::Tv { attr_type, value });
        } else {
            let len = ar.u16(AWHAT)?;
            let value = ar.take(usize::from(len), AWHAT)?.to_vec();
            attributes.push(Attribute::Tlv { attr_type, value });
        }
    }
    Ok(Transform {
        transform_type,
        id,
        attributes,
    })
}

fn decode_delete(r: &mut Reader<'_>) -> Result<Delete, DecodeError> {
    const WHAT: &str = "Delete payload";
    let protocol = ProtocolId(r.u8(WHAT)?);
    let spi_size = r.u8(WHAT)?;
    let num = usize::from(r.u16(WHAT)?);
    if spi_size == 0 {
        if num != 0 {
            return Err(DecodeError::CountMismatch {
                what: "Delete SPIs with SPI size 0",
                declared: num,
                found: 0,
            });
        }
        return Ok(Delete {
            protocol,
            spi_size,
            spis: Vec::new(),
        });
    }
    let size = usize::from(spi_size);
    // At most 255 * 65535: cannot overflow.
    let all = r.take(size.saturating_mul(num), "Delete SPIs")?;
    Ok(Delete {
        protocol,
        spi_size,
        spis: all.chunks_exact(size).map(<[u8]>::to_vec).collect(),
    })
}

fn decode_id(r: &mut Reader<'_>) -> Result<Identification, DecodeError> {
    const WHAT: &str = "ID payload";
    let id_type = IdType(r.u8(WHAT)?);
    r.take(3, WHAT)?;
    let data = r.rest().to_vec();
    let expect = match id_type {
        IdType::ID_IPV4_ADDR => Some((4, "ID_IPV4_ADDR identification data")),
        IdType::ID_IPV6_ADDR => Some((16, "ID_IPV6_ADDR identification data")),
        _ => None,
    };
    if let Some((n, what)) = expect {
        if data.len() != n {
            return Err(DecodeError::BadLength {
                what,
                len: data.len(),
            });
        }
    }
    Ok(Identification { id_type, data })
}

fn decode_ts(r: &mut Reader<'_>) -> Result<Vec<TrafficSelector>, DecodeError> {
    const WHAT: &str = "TS payload";
    let count = usize::from(r.u8(WHAT)?);
    r.take(3, WHAT)?;
    let mut selectors = Vec::with_capacity(count);
    while !r.is_empty() {
        const SWHAT: &str = "traffic selector";
        let ts_type = TsType(r.u8(SWHAT)?);
        let ip_proto = r.u8(SWHAT)?;
        let len = r.u16(SWHAT)?;
        let (expect, what) = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => (TS_IPV4_LEN, "TS_IPV4_ADDR_RANGE selector"),
            TsType::TS_IPV6_ADDR_RANGE => (TS_IPV6_LEN, "TS_IPV6_ADDR_RANGE selector"),
            other => return Err(DecodeError::UnknownTsType(other.0)),
        };
        if usize::from(len) != expect {
            return Err(DecodeError::BadLength {
                what,
                len: usize::from(len),
            });
        }
        let mut sr = Reader::new(substructure(r, len, 4, what)?);
        let start_port = sr.u16(what)?;
        let end_port = sr.u16(what)?;
        let (start_addr, end_addr) = if ts_type == TsType::TS_IPV4_ADDR_RANGE {
            (
                IpAddr::V4(Ipv4Addr::from(sr.array::<4>(what)?)),
                IpAddr::V4(Ipv4Addr::from(sr.array::<4>(what)?)),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(sr.array::<16>(what)?)),
                IpAddr::V6(Ipv6Addr::from(sr.array::<16>(what)?)),
            )
        };
        sr.finish(what)?;
        selectors.push(TrafficSelector {
            ip_proto,
            start_port,
            end_port,
            start_addr,
            end_addr,
        });
    }
    if selectors.len() != count {
        return Err(DecodeError::CountMismatch {
            what: "TS payload selectors",
            declared: count,
            found: selectors.len(),
        });
    }
    Ok(selectors)
}

fn decode_cert(r: &mut Reader<'_>, what: &'static str) -> Result<Cert, DecodeError> {
    let encoding = r.u8(what)?;
    Ok(Cert {
        encoding,
        data: r.rest().to_vec(),
    })
}

fn decode_cp(r: &mut Reader<'_>) -> Result<ConfigPayload, DecodeError> {
    const WHAT: &str = "CP payload";
    let cfg_type = r.u8(WHAT)?;
    r.take(3, WHAT)?;
    let mut attributes = Vec::new();
    while !r.is_empty() {
        const AWHAT: &str = "configuration attribute";
        // The top bit is reserved: ignored on receipt (§3.15.1).
        let attr_type = r.u16(AWHAT)? & 0x7fff;
        let len = r.u16(AWHAT)?;
        let value = r.take(usize::from(len), AWHAT)?.to_vec();
        attributes.push(ConfigAttribute { attr_type, value });
    }
    Ok(ConfigPayload {
        cfg_type,
        attributes,
    })
}

// ---------------------------------------------------------------------------
// Encoding

struct Writer {
    out: Vec<u8>,
    /// The first field that could not be represented.
    err: Option<EncodeError>,
}

impl Writer {
    fn fail(&mut self, e: EncodeError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn zeros(&mut self, n: usize) {
        self.out.resize(self.out.len().saturating_add(n), 0);
    }

    /// `n` as a u8 count/size field, saturating (and recording) on overflow.
    fn count8(&mut self, n: usize, what: &'static str) -> u8 {
        u8::try_from(n).unwrap_or_else(|_| {
            self.fail(EncodeError::TooLong {
                what,
                len: n,
                max: u8::MAX.into(),
            });
            u8::MAX
        })
    }

    /// `n` as a u16 count/length field, saturating (and recording) on overflow.
    fn count16(&mut self, n: usize, what: &'static str) -> u16 {
        u16::try_from(n).unwrap_or_else(|_| {
            self.fail(EncodeError::TooLong {
                what,
                len: n,
                max: u16::MAX.into(),
            });
            u16::MAX
        })
    }

    /// Records an attribute type that does not fit in 15 bits.
    fn attr_type(&mut self, attr_type: u16, what: &'static str) {
        if attr_type & 0x8000 != 0 {
            self.fail(EncodeError::AttributeType { what, attr_type });
        }
    }

    /// Writes the 2-byte length field at `at + 2` of a substructure that
    /// starts at `at` and ends at the current end of the output.
    fn patch_len16(&mut self, at: usize, what: &'static str) {
        let len = self.out.len().saturating_sub(at);
        let v = self.count16(len, what);
        if let Some(field) = self.out.get_mut(at.saturating_add(2)..at.saturating_add(4)) {
            field.copy_from_slice(&v.to_be_bytes());
        }
    }
}

fn encode_chain(payloads: &[Payload], w: &mut Writer) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Encrypted(e) => {
                if i + 1 != payloads.len() {
                    w.fail(EncodeError::EncryptedNotLast);
                }
                e.next_payload
            }
            _ => payloads
                .get(i + 1)
                .map_or(PayloadType::NONE, Payload::payload_type),
        };
        let critical = match p {
            Payload::Unknown {
                payload_type,
                critical,
                ..
            } => {
                check_unknown_type(*payload_type, i + 1 == payloads.len(), w);
                if *critical {
                    CRITICAL
                } else {
                    0
                }
            }
            _ => 0,
        };
        let start = w.out.len();
        w.u8(next.0);
        w.u8(critical);
        w.u16(0);
        encode_body(p, w);
        w.patch_len16(start, payload_name(p.payload_type()));
    }
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

/// Records an `Unknown` payload that would not decode back to itself.
fn check_unknown_type(ty: PayloadType, is_last: bool, w: &mut Writer) {
    if ty == PayloadType::SKF {
        if !is_last {
            w.fail(EncodeError::EncryptedNotLast);
        }
    } else if matches!(ty.0, 0 | 33..=47) {
        // NONE, SK, and the types decode_body turns into their own variants.
        w.fail(EncodeError::UnknownWithKnownType(ty));
    }
}

fn encode_body(p: &Payload, w: &mut Writer) {
    match p {
        Payload::Sa(proposals) => encode_sa(proposals, w),
        Payload::Ke(ke) => {
            w.u16(ke.group);
            w.zeros(2);
            w.bytes(&ke.data);
        }
        Payload::Nonce(data) | Payload::VendorId(data) => w.bytes(data),
        Payload::Notify(n) => {
            w.u8(n.protocol.0);
            let size = w.count8(n.spi.len(), "Notify SPI");
            w.u8(size);
            w.u16(n.notify_type.0);
            w.bytes(&n.spi);
            w.bytes(&n.data);
        }
        Payload::Delete(d) => {
            w.u8(d.protocol.0);
            w.u8(d.spi_size);
            let num = w.count16(d.spis.len(), "Delete SPI list");
            w.u16(num);
            for spi in &d.spis {
                if spi.len() != usize::from(d.spi_size) || d.spi_size == 0 {
                    w.fail(EncodeError::DeleteSpiSize {
                        spi_size: d.spi_size,
                        len: spi.len(),
                    });
                }
                w.bytes(spi);
            }
        }
        Payload::IdI(id) | Payload::IdR(id) => {
            w.u8(id.id_type.0);
            w.zeros(3);
            w.bytes(&id.data);
        }
        Payload::Auth(a) => {
            w.u8(a.method.0);
            w.zeros(3);
            w.bytes(&a.data);
        }
        Payload::TsI(ts) | Payload::TsR(ts) => {
            let n = w.count8(ts.len(), "TS payload selector list");
            w.u8(n);
            w.zeros(3);
            for t in ts {
                encode_selector(t, w);
            }
        }
        Payload::Cert(c) | Payload::CertReq(c) => {
            w.u8(c.encoding);
            w.bytes(&c.data);
        }
        Payload::Cp(cp) => {
            w.u8(cp.cfg_type);
            w.zeros(3);
            for a in &cp.attributes {
                w.attr_type(a.attr_type, "configuration attribute");
                w.u16(a.attr_type & 0x7fff);
                let len = w.count16(a.value.len(), "configuration attribute");
                w.u16(len);
                w.bytes(&a.value);
            }
        }
        Payload::Encrypted(e) => w.bytes(&e.body),
        Payload::Unknown { body, .. } => w.bytes(body),
    }
}

fn encode_sa(proposals: &[Proposal], w: &mut Writer) {
    for (i, p) in proposals.iter().enumerate() {
        let start = w.out.len();
        w.u8(if i + 1 == proposals.len() {
            LAST
        } else {
            MORE_PROPOSALS
        });
        w.u8(0);
        w.u16(0);
        w.u8(p.number);
        w.u8(p.protocol.0);
        let spi_size = w.count8(p.spi.len(), "SA proposal SPI");
        w.u8(spi_size);
        let n = w.count8(p.transforms.len(), "SA proposal transform list");
        w.u8(n);
        w.bytes(&p.spi);
        for (j, t) in p.transforms.iter().enumerate() {
            let tstart = w.out.len();
            w.u8(if j + 1 == p.transforms.len() {
                LAST
            } else {
                MORE_TRANSFORMS
            });
            w.u8(0);
            w.u16(0);
            w.u8(t.transform_type.0);
            w.u8(0);
            w.u16(t.id);
            for a in &t.attributes {
                match a {
                    Attribute::Tv { attr_type, value } => {
                        w.attr_type(*attr_type, "transform attribute");
                        w.u16(ATTR_FORMAT_TV | attr_type);
                        w.u16(*value);
                    }
                    Attribute::Tlv { attr_type, value } => {
                        w.attr_type(*attr_type, "transform attribute");
                        w.u16(attr_type & !ATTR_FORMAT_TV);
                        let len = w.count16(value.len(), "transform attribute");
                        w.u16(len);
                        w.bytes(value);
                    }
                }
            }
            w.patch_len16(tstart, "SA transform");
        }
        w.patch_len16(start, "SA proposal");
    }
}

fn encode_selector(t: &TrafficSelector, w: &mut Writer) {
    // The family is that of the start address; a mismatched end address is
    // converted (IPv4-mapped) and the mismatch recorded.
    let (ts_type, len) = match t.start_addr {
        IpAddr::V4(_) => (TsType::TS_IPV4_ADDR_RANGE, TS_IPV4_LEN),
        IpAddr::V6(_) => (TsType::TS_IPV6_ADDR_RANGE, TS_IPV6_LEN),
    };
    w.u8(ts_type.0);
    w.u8(t.ip_proto);
    w.u16(len as u16);
    w.u16(t.start_port);
    w.u16(t.end_port);
    match (t.start_addr, t.end_addr) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            w.bytes(&s.octets());
            w.bytes(&e.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => {
            w.bytes(&s.octets());
            w.bytes(&e.octets());
        }
        (IpAddr::V4(s), IpAddr::V6(e)) => {
            w.fail(EncodeError::MixedTsFamilies);
            w.bytes(&s.octets());
            w.bytes(&e.to_ipv4_mapped().unwrap_or(Ipv4Addr::BROADCAST).octets());
        }
        (IpAddr::V6(s), IpAddr::V4(e)) => {
            w.fail(EncodeError::MixedTsFamilies);
            w.bytes(&s.octets());
            w.bytes(&e.to_ipv6_mapped().octets());
        }
    }
}
