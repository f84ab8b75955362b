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

use super::decode::*;
use super::encode::*;
use super::types::*;

/// Length of the fixed IKE header (§3.1).
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header (§3.2).
pub const PAYLOAD_HEADER_LEN: usize = 4;

pub(super) const PROPOSAL_HEADER_LEN: usize = 8;
pub(super) const TRANSFORM_HEADER_LEN: usize = 8;
pub(super) const ATTR_FORMAT_TV: u16 = 0x8000;
pub(super) const LAST: u8 = 0;
pub(super) const MORE_PROPOSALS: u8 = 2;
pub(super) const MORE_TRANSFORMS: u8 = 3;
pub(super) const CRITICAL: u8 = 0x80;
pub(super) const TS_IPV4_LEN: usize = 16;
pub(super) const TS_IPV6_LEN: usize = 40;

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
    /// An SKF payload whose Fragment Number is 0 or above Total Fragments
    /// (RFC 7383 §2.5).
    #[error("SKF payload: fragment number {number} of {total}")]
    BadFragmentNumber { number: u16, total: u16 },
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
    /// An SKF payload whose Fragment Number is 0 or above Total Fragments.
    #[error("SKF payload: fragment number {number} of {total}")]
    BadFragmentNumber { number: u16, total: u16 },
    /// A [`Payload::Unknown`] whose type is NONE, SK, SKF or one that
    /// decodes to its own variant: it would not decode back to `Unknown`.
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
            Payload::EncryptedFragment(_) => PayloadType::SKF,
            Payload::Unknown { payload_type, .. } => *payload_type,
        }
    }
}
