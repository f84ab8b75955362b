//! IANA number spaces of IKEv2 (RFC 7296 §3, IANA "IKEv2 Parameters") and the
//! decoded payload structures.
//!
//! Every number space is a newtype over the wire integer, so values we do not
//! know survive a decode → encode round trip unchanged and print as numbers
//! (`Display` gives the IANA name when known, else the decimal value).

use std::net::IpAddr;

macro_rules! iana {
    ($(#[$m:meta])* $name:ident($ty:ty) { $($(#[$cm:meta])* $konst:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);
        impl $name {
            $($(#[$cm])* pub const $konst: $name = $name($val);)*
            /// The IANA name, if this value is one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($val => Some(stringify!($konst)),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() { Some(n) => f.write_str(n), None => write!(f, "{}", self.0) }
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }
    };
}

iana!(
    /// Exchange type (§3.1).
    ExchangeType(u8) {
        IKE_SA_INIT = 34,
        IKE_AUTH = 35,
        CREATE_CHILD_SA = 36,
        INFORMATIONAL = 37,
    }
);

iana!(
    /// Next-payload / payload type (§3.2).
    PayloadType(u8) {
        NONE = 0,
        SA = 33,
        KE = 34,
        IDI = 35,
        IDR = 36,
        CERT = 37,
        CERTREQ = 38,
        AUTH = 39,
        NONCE = 40,
        NOTIFY = 41,
        DELETE = 42,
        VENDOR_ID = 43,
        TSI = 44,
        TSR = 45,
        SK = 46,
        CP = 47,
        EAP = 48,
        SKF = 53,
    }
);

iana!(
    /// Notify message type (§3.10.1). Values below 16384 are errors.
    NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        INVALID_IKE_SPI = 4,
        INVALID_MAJOR_VERSION = 5,
        INVALID_SYNTAX = 7,
        INVALID_MESSAGE_ID = 9,
        INVALID_SPI = 11,
        NO_PROPOSAL_CHOSEN = 14,
        INVALID_KE_PAYLOAD = 17,
        AUTHENTICATION_FAILED = 24,
        SINGLE_PAIR_REQUIRED = 34,
        NO_ADDITIONAL_SAS = 35,
        INTERNAL_ADDRESS_FAILURE = 36,
        FAILED_CP_REQUIRED = 37,
        TS_UNACCEPTABLE = 38,
        INVALID_SELECTORS = 39,
        TEMPORARY_FAILURE = 43,
        CHILD_SA_NOT_FOUND = 44,
        INITIAL_CONTACT = 16384,
        SET_WINDOW_SIZE = 16385,
        ADDITIONAL_TS_POSSIBLE = 16386,
        IPCOMP_SUPPORTED = 16387,
        NAT_DETECTION_SOURCE_IP = 16388,
        NAT_DETECTION_DESTINATION_IP = 16389,
        COOKIE = 16390,
        USE_TRANSPORT_MODE = 16391,
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        REKEY_SA = 16393,
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        MOBIKE_SUPPORTED = 16396,
        MULTIPLE_AUTH_SUPPORTED = 16404,
        EAP_ONLY_AUTHENTICATION = 16417,
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        SIGNATURE_HASH_ALGORITHMS = 16431,
    }
);

impl NotifyType {
    /// Error types are 1..=16383 (§3.10.1).
    pub fn is_error(self) -> bool {
        (1..16384).contains(&self.0)
    }
}

iana!(
    /// Security protocol identifier (§3.3.1).
    ProtocolId(u8) {
        IKE = 1,
        AH = 2,
        ESP = 3,
    }
);

iana!(
    /// Transform type (§3.3.2).
    TransformType(u8) {
        ENCR = 1,
        PRF = 2,
        INTEG = 3,
        DH = 4,
        ESN = 5,
    }
);

iana!(
    /// Identification type (§3.5).
    IdType(u8) {
        ID_IPV4_ADDR = 1,
        ID_FQDN = 2,
        ID_RFC822_ADDR = 3,
        ID_IPV6_ADDR = 5,
        ID_DER_ASN1_DN = 9,
        ID_DER_ASN1_GN = 10,
        ID_KEY_ID = 11,
    }
);

iana!(
    /// Authentication method (§3.8, RFC 7427).
    AuthMethod(u8) {
        RSA_SIG = 1,
        SHARED_KEY_MIC = 2,
        DSS_SIG = 3,
        ECDSA_SHA256_P256 = 9,
        ECDSA_SHA384_P384 = 10,
        ECDSA_SHA512_P521 = 11,
        DIGITAL_SIGNATURE = 14,
    }
);

iana!(
    /// Traffic selector type (§3.13.1).
    TsType(u8) {
        TS_IPV4_ADDR_RANGE = 7,
        TS_IPV6_ADDR_RANGE = 8,
    }
);

/// Header flags (§3.1).
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// The fixed 28-byte IKE header (§3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    /// Type of the first payload. [`super::Message::encode`] overwrites it.
    pub next_payload: PayloadType,
    /// Major version in the high nibble (2), minor in the low (0): 0x20.
    pub version: u8,
    pub exchange: ExchangeType,
    pub flags: u8,
    pub message_id: u32,
    /// Total message length. [`super::Message::encode`] overwrites it.
    pub length: u32,
}

/// A decoded payload. The generic payload header's critical bit is kept only
/// for payloads we do not understand (§2.5: ignored for known types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke(KeyExchange),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    VendorId(Vec<u8>),
    IdI(Identification),
    IdR(Identification),
    Auth(Authentication),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Cert(Cert),
    CertReq(Cert),
    Cp(ConfigPayload),
    /// The SK payload (§3.14), still encrypted: always the last payload of a
    /// message. `next_payload` is the type of the first inner payload; `body`
    /// is IV ‖ ciphertext ‖ ICV exactly as on the wire.
    Encrypted(Encrypted),
    /// The SKF payload (RFC 7383 §2.5), one fragment of an SK payload,
    /// still encrypted: always the last payload of a message.
    EncryptedFragment(EncryptedFragment),
    /// A payload type we do not implement, kept verbatim.
    Unknown {
        payload_type: PayloadType,
        critical: bool,
        body: Vec<u8>,
    },
}

/// One proposal substructure of an SA payload (§3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number, starting at 1.
    pub number: u8,
    pub protocol: ProtocolId,
    /// Empty for IKE_SA_INIT; 8 bytes for an IKE rekey; 4 bytes for ESP/AH.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform substructure (§3.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    pub transform_type: TransformType,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

/// Attribute type 14: Key Length in bits (§3.3.5), in TV format.
pub const ATTR_KEY_LENGTH: u16 = 14;

/// A transform attribute (§3.3.5). TV format carries a 16-bit value,
/// TLV format a variable-length one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    Tv { attr_type: u16, value: u16 },
    Tlv { attr_type: u16, value: Vec<u8> },
}

impl Transform {
    /// The Key Length attribute, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv {
                attr_type: ATTR_KEY_LENGTH,
                value,
            } => Some(*value),
            _ => None,
        })
    }
}

/// KE payload (§3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExchange {
    pub group: u16,
    pub data: Vec<u8>,
}

/// Notify payload (§3.10). `spi` is empty when the notification is not about
/// a particular SA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub notify_type: NotifyType,
    pub data: Vec<u8>,
}

/// Delete payload (§3.11). For IKE, `spi_size` is 0 and `spis` empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub protocol: ProtocolId,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// IDi / IDr payload (§3.5). `data` is the identification data as on the
/// wire (4 or 16 address bytes, an FQDN or RFC 822 string, DER, or opaque
/// key id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

/// AUTH payload (§3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authentication {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

/// One traffic selector (§3.13.1). Only the two address-range types exist;
/// a selector of another type is a decode error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// 0 means any protocol.
    pub ip_proto: u8,
    pub start_port: u16,
    pub end_port: u16,
    /// Both addresses are of the same family; IPv4 ⇒ TS_IPV4_ADDR_RANGE.
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

/// CERT and CERTREQ payloads (§3.6, §3.7), codec only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    pub encoding: u8,
    pub data: Vec<u8>,
}

/// CP payload (§3.15), codec only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPayload {
    /// CFG_REQUEST 1, CFG_REPLY 2, CFG_SET 3, CFG_ACK 4.
    pub cfg_type: u8,
    pub attributes: Vec<ConfigAttribute>,
}

/// One configuration attribute (§3.15.1). The reserved top bit of the type
/// must be zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigAttribute {
    pub attr_type: u16,
    pub value: Vec<u8>,
}

/// SK payload contents (§3.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    pub next_payload: PayloadType,
    pub body: Vec<u8>,
}

/// SKF payload contents (RFC 7383 §2.5). The decoder guarantees
/// `1 <= number <= total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedFragment {
    /// In fragment 1 the type of the first inner payload of the whole
    /// message; 0 in every other fragment (ignored there on receipt).
    pub next_payload: PayloadType,
    /// This fragment's number, from 1.
    pub number: u16,
    /// How many fragments the message was split into.
    pub total: u16,
    /// IV ‖ ciphertext ‖ ICV exactly as on the wire.
    pub body: Vec<u8>,
}
