//! Encoding: a writer that records the first field it cannot represent,
//! and one function per payload body.

use std::net::{IpAddr, Ipv4Addr};

use super::codec::*;
use super::decode::payload_name;
use super::types::*;

// ---------------------------------------------------------------------------
// Encoding

pub(super) struct Writer {
    pub(super) out: Vec<u8>,
    /// The first field that could not be represented.
    pub(super) err: Option<EncodeError>,
}

impl Writer {
    pub(super) fn fail(&mut self, e: EncodeError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    pub(super) fn zeros(&mut self, n: usize) {
        self.out.resize(self.out.len().saturating_add(n), 0);
    }

    /// `n` as a u8 count/size field, saturating (and recording) on overflow.
    pub(super) fn count8(&mut self, n: usize, what: &'static str) -> u8 {
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
    pub(super) fn count16(&mut self, n: usize, what: &'static str) -> u16 {
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
    pub(super) fn attr_type(&mut self, attr_type: u16, what: &'static str) {
        if attr_type & 0x8000 != 0 {
            self.fail(EncodeError::AttributeType { what, attr_type });
        }
    }

    /// Writes the 2-byte length field at `at + 2` of a substructure that
    /// starts at `at` and ends at the current end of the output.
    pub(super) fn patch_len16(&mut self, at: usize, what: &'static str) {
        let len = self.out.len().saturating_sub(at);
        let v = self.count16(len, what);
        if let Some(field) = self.out.get_mut(at.saturating_add(2)..at.saturating_add(4)) {
            field.copy_from_slice(&v.to_be_bytes());
        }
    }
}

pub(super) fn encode_chain(payloads: &[Payload], w: &mut Writer) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Encrypted(e) => {
                if i + 1 != payloads.len() {
                    w.fail(EncodeError::EncryptedNotLast);
                }
                e.next_payload
            }
            Payload::EncryptedFragment(f) => {
                if i + 1 != payloads.len() {
                    w.fail(EncodeError::EncryptedNotLast);
                }
                if f.number == 0 || f.number > f.total {
                    w.fail(EncodeError::BadFragmentNumber {
                        number: f.number,
                        total: f.total,
                    });
                }
                f.next_payload
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
                check_unknown_type(*payload_type, w);
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
pub(super) fn check_unknown_type(ty: PayloadType, w: &mut Writer) {
    if matches!(ty.0, 0 | 33..=47 | 53) {
        // NONE, SK, SKF, and the types decode_body turns into their own
        // variants.
        w.fail(EncodeError::UnknownWithKnownType(ty));
    }
}

pub(super) fn encode_body(p: &Payload, w: &mut Writer) {
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
        Payload::EncryptedFragment(f) => {
            w.u16(f.number);
            w.u16(f.total);
            w.bytes(&f.body);
        }
        Payload::Unknown { body, .. } => w.bytes(body),
    }
}

pub(super) fn encode_sa(proposals: &[Proposal], w: &mut Writer) {
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

pub(super) fn encode_selector(t: &TrafficSelector, w: &mut Writer) {
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
