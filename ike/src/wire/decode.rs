//! Decoding: a bounds-checked reader and one function per payload body.
//! Every length, count and "last substructure" marker is checked; no input
//! can make it panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::*;
use super::types::*;

// ---------------------------------------------------------------------------
// Bounds-checked reading

/// A cursor over a byte slice; every read checks the remaining length.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
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

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails with `TrailingData` unless everything was consumed.
    pub(super) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
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
pub(super) fn substructure<'a>(
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

pub(super) fn decode_chain(
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
                Payload::EncryptedFragment(decode_skf(next, body)?)
            });
            return Ok(out);
        }
        out.push(decode_body(ty, critical, body)?);
        ty = next;
    }
}

/// The SKF body (RFC 7383 §2.5): Fragment Number, Total Fragments, then
/// IV ‖ ciphertext ‖ ICV. The next-payload field of a fragment other than
/// the first is ignored (read as 0), as strongSwan does.
fn decode_skf(next: PayloadType, body: &[u8]) -> Result<EncryptedFragment, DecodeError> {
    const WHAT: &str = "SKF payload";
    let mut r = Reader::new(body);
    let number = r.u16(WHAT)?;
    let total = r.u16(WHAT)?;
    if number == 0 || number > total {
        return Err(DecodeError::BadFragmentNumber { number, total });
    }
    Ok(EncryptedFragment {
        next_payload: if number == 1 { next } else { PayloadType::NONE },
        number,
        total,
        body: r.rest().to_vec(),
    })
}

pub(super) fn payload_name(ty: PayloadType) -> &'static str {
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

pub(super) fn decode_body(
    ty: PayloadType,
    critical: bool,
    body: &[u8],
) -> Result<Payload, DecodeError> {
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
pub(super) fn check_last(
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

pub(super) fn decode_sa(r: &mut Reader<'_>) -> Result<Vec<Proposal>, DecodeError> {
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

pub(super) fn decode_transform(r: &mut Reader<'_>, index: usize) -> Result<Transform, DecodeError> {
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

pub(super) fn decode_delete(r: &mut Reader<'_>) -> Result<Delete, DecodeError> {
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

pub(super) fn decode_id(r: &mut Reader<'_>) -> Result<Identification, DecodeError> {
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

pub(super) fn decode_ts(r: &mut Reader<'_>) -> Result<Vec<TrafficSelector>, DecodeError> {
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

pub(super) fn decode_cert(r: &mut Reader<'_>, what: &'static str) -> Result<Cert, DecodeError> {
    let encoding = r.u8(what)?;
    Ok(Cert {
        encoding,
        data: r.rest().to_vec(),
    })
}

pub(super) fn decode_cp(r: &mut Reader<'_>) -> Result<ConfigPayload, DecodeError> {
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
