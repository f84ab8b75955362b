//! Convenience constructors, accessors and `Display` impls for the wire types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::Message;
use super::types::*;

impl Identification {
    /// ID_FQDN identification.
    pub fn fqdn(name: &str) -> Self {
        Identification {
            id_type: IdType::ID_FQDN,
            data: name.as_bytes().to_vec(),
        }
    }

    /// ID_RFC822_ADDR identification (an e-mail address).
    pub fn rfc822(addr: &str) -> Self {
        Identification {
            id_type: IdType::ID_RFC822_ADDR,
            data: addr.as_bytes().to_vec(),
        }
    }

    /// ID_IPV4_ADDR or ID_IPV6_ADDR identification.
    pub fn ip(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Identification {
                id_type: IdType::ID_IPV4_ADDR,
                data: a.octets().to_vec(),
            },
            IpAddr::V6(a) => Identification {
                id_type: IdType::ID_IPV6_ADDR,
                data: a.octets().to_vec(),
            },
        }
    }

    /// ID_KEY_ID identification (opaque bytes).
    pub fn key_id(id: &[u8]) -> Self {
        Identification {
            id_type: IdType::ID_KEY_ID,
            data: id.to_vec(),
        }
    }

    /// ID_DER_ASN1_DN identification (DER-encoded distinguished name).
    pub fn der_dn(der: &[u8]) -> Self {
        Identification {
            id_type: IdType::ID_DER_ASN1_DN,
            data: der.to_vec(),
        }
    }

    /// The address of an ID_IPV4_ADDR / ID_IPV6_ADDR identification.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.id_type {
            IdType::ID_IPV4_ADDR => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            IdType::ID_IPV6_ADDR => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, data: &[u8]) -> fmt::Result {
    data.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Text identities print as text, with control characters escaped so that
/// a peer-supplied identity cannot forge log lines.
fn write_text(f: &mut fmt::Formatter<'_>, data: &[u8]) -> fmt::Result {
    for c in String::from_utf8_lossy(data).chars() {
        if c.is_control() || c == '\\' {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// FQDN and RFC 822 identities print as text, IP identities as addresses,
/// everything else (DN, GN, KEY_ID, unknown types, malformed addresses) as
/// lower-case hex.
impl fmt::Display for Identification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id_type {
            IdType::ID_FQDN | IdType::ID_RFC822_ADDR => write_text(f, &self.data),
            IdType::ID_IPV4_ADDR | IdType::ID_IPV6_ADDR => match self.as_ip() {
                Some(ip) => write!(f, "{ip}"),
                None => write_hex(f, &self.data),
            },
            _ => write_hex(f, &self.data),
        }
    }
}

impl Notify {
    /// A notification not about a particular SA (protocol 0, empty SPI).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: ProtocolId(0),
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// A notification about the SA `spi` of `protocol`.
    pub fn with_spi(
        protocol: ProtocolId,
        spi: Vec<u8>,
        notify_type: NotifyType,
        data: Vec<u8>,
    ) -> Self {
        Notify {
            protocol,
            spi,
            notify_type,
            data,
        }
    }
}

impl Delete {
    /// Deletion of the IKE SA the message is protected by (§3.11).
    pub fn ike() -> Self {
        Delete {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletion of the given ESP SAs (inbound SPIs of the sender).
    pub fn esp(spis: &[u32]) -> Self {
        Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(transform_type: TransformType, id: u16) -> Self {
        Transform {
            transform_type,
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute (bits).
    pub fn with_key_length(transform_type: TransformType, id: u16, bits: u16) -> Self {
        Transform {
            transform_type,
            id,
            attributes: vec![Attribute::Tv {
                attr_type: ATTR_KEY_LENGTH,
                value: bits,
            }],
        }
    }
}

impl TrafficSelector {
    /// Every address and port of IPv4, any protocol.
    pub fn ipv4_any() -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            end_addr: IpAddr::V4(Ipv4Addr::BROADCAST),
        }
    }

    /// Every address and port of IPv6, any protocol.
    pub fn ipv6_any() -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            end_addr: IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        }
    }

    /// A single host, all ports, any protocol.
    pub fn host(addr: IpAddr) -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: addr,
            end_addr: addr,
        }
    }

    /// The wire type implied by the start address's family.
    pub fn ts_type(&self) -> TsType {
        match self.start_addr {
            IpAddr::V4(_) => TsType::TS_IPV4_ADDR_RANGE,
            IpAddr::V6(_) => TsType::TS_IPV6_ADDR_RANGE,
        }
    }
}

/// `start-end`, followed by ` proto N` and ` port a-b` when they restrict.
impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start_addr, self.end_addr)?;
        if self.ip_proto != 0 {
            write!(f, " proto {}", self.ip_proto)?;
        }
        if (self.start_port, self.end_port) != (0, u16::MAX) {
            write!(f, " port {}-{}", self.start_port, self.end_port)?;
        }
        Ok(())
    }
}

/// The first Notify payload of type `ty` in `payloads`.
pub fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == ty => Some(n),
        _ => None,
    })
}

impl Header {
    /// The major version (high nibble of the version byte).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }
}

impl Message {
    /// The first Notify payload of type `ty`.
    pub fn find_notify(&self, ty: NotifyType) -> Option<&Notify> {
        find_notify(&self.payloads, ty)
    }

    /// All Notify payloads, in order.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The SK payload, if the message has one.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Encrypted(e) => Some(e),
            _ => None,
        })
    }
}
