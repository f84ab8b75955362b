//! strongSwan proposal syntax (`aes256gcm16-prfsha256-x25519`) and SA
//! negotiation (RFC 7296 §2.7, §3.3).
//!
//! A [`ProposalSpec`] is one proposal as configured: for each transform type
//! the algorithms we accept, in our order of preference. [`select`] is the
//! responder's choice among a peer's proposals; [`accept_response`] is the
//! initiator's check of the responder's answer. Only AEAD ciphers are
//! supported, so no integrity transform is ever proposed or accepted.
//!
//! Numbering convention: when we offer several specs, proposal number *n*
//! on the wire is `specs[n - 1]` (see [`to_wire_all`]); [`accept_response`]
//! relies on it.

use crate::crypto::{AeadAlg, DhGroup, PrfAlg};
use crate::wire::{Attribute, Proposal, ProtocolId, Transform, TransformType, ATTR_KEY_LENGTH};

/// A proposal string that cannot be used. Messages name the offending token
/// and the whole proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("empty proposal")]
    Empty,
    #[error("empty algorithm name in proposal '{proposal}'")]
    EmptyToken { proposal: String },
    #[error("unknown algorithm '{token}' in proposal '{proposal}'")]
    UnknownAlgorithm { token: String, proposal: String },
    /// A valid strongSwan keyword for an algorithm we do not implement
    /// (non-AEAD ciphers, MODP groups, SHA-1 PRF, ...).
    #[error("unsupported algorithm '{token}' in proposal '{proposal}'")]
    UnsupportedAlgorithm { token: String, proposal: String },
    /// An integrity algorithm: only AEAD ciphers are supported, and they
    /// need none.
    #[error(
        "integrity algorithm '{token}' in proposal '{proposal}' is not needed with AEAD \
         ciphers and unsupported (use an AEAD cipher and a 'prf...' keyword)"
    )]
    IntegrityAlgorithm { token: String, proposal: String },
    /// A keyword of a kind that this protocol does not have (a PRF in an ESP
    /// proposal, ESN in an IKE proposal).
    #[error("'{token}' is not allowed in an {protocol} proposal: '{proposal}'")]
    NotAllowed {
        token: String,
        protocol: &'static str,
        proposal: String,
    },
    #[error("no encryption algorithm in proposal '{proposal}'")]
    NoEncryption { proposal: String },
    #[error("IKE proposal needs a PRF: '{proposal}'")]
    NoPrf { proposal: String },
    #[error("IKE proposal needs a DH group: '{proposal}'")]
    NoDh { proposal: String },
    #[error("'default' cannot be combined with other algorithms: '{proposal}'")]
    DefaultCombined { proposal: String },
}

/// One configured proposal: the acceptable algorithms of each transform
/// type, most preferred first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalSpec {
    /// `ProtocolId::IKE` or `ProtocolId::ESP`.
    pub protocol: ProtocolId,
    pub encr: Vec<AeadAlg>,
    /// IKE only; empty for ESP.
    pub prf: Vec<PrfAlg>,
    /// Required for IKE; for ESP the PFS groups of CREATE_CHILD_SA (may be
    /// empty).
    pub dh: Vec<DhGroup>,
    /// ESP only: `false` = no extended sequence numbers. Empty is taken as
    /// `[false]`. Empty for IKE.
    pub esn: Vec<bool>,
}

impl ProposalSpec {
    /// Would this spec have chosen `c`: same protocol, and each algorithm
    /// `c` names is one this spec lists.
    pub fn allows(&self, c: &Chosen) -> bool {
        self.protocol == c.protocol
            && self.encr.contains(&c.encr)
            && c.prf.is_none_or(|p| self.prf.contains(&p))
            && c.dh.is_none_or(|g| self.dh.contains(&g))
    }
}

/// The default IKE proposal ("default" keyword).
const DEFAULT_IKE: &str =
    "aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384";
/// The default ESP proposal ("default" keyword): no PFS, no ESN.
const DEFAULT_ESP: &str = "aes256gcm16-aes128gcm16-chacha20poly1305";

enum Token {
    Encr(AeadAlg),
    Prf(PrfAlg),
    Dh(DhGroup),
    Esn(bool),
}

enum BadToken {
    Unknown,
    Unsupported,
    Integrity,
}

/// Classifies one lower-case strongSwan keyword.
fn classify(tok: &str) -> Result<Token, BadToken> {
    match tok {
        "aes128gcm16" | "aes128gcm128" | "aes128gcm" => {
            return Ok(Token::Encr(AeadAlg::AesGcm16_128))
        }
        "aes256gcm16" | "aes256gcm128" | "aes256gcm" => {
            return Ok(Token::Encr(AeadAlg::AesGcm16_256))
        }
        "chacha20poly1305" => return Ok(Token::Encr(AeadAlg::ChaCha20Poly1305)),
        "prfsha256" => return Ok(Token::Prf(PrfAlg::HmacSha256)),
        "prfsha384" => return Ok(Token::Prf(PrfAlg::HmacSha384)),
        "prfsha512" => return Ok(Token::Prf(PrfAlg::HmacSha512)),
        "x25519" | "curve25519" => return Ok(Token::Dh(DhGroup::Curve25519)),
        "ecp256" => return Ok(Token::Dh(DhGroup::Ecp256)),
        "ecp384" => return Ok(Token::Dh(DhGroup::Ecp384)),
        "esn" => return Ok(Token::Esn(true)),
        "noesn" => return Ok(Token::Esn(false)),
        _ => {}
    }
    if is_known_unsupported_encr(tok) {
        return Err(BadToken::Unsupported);
    }
    const INTEG: &[&str] = &[
        "md5",
        "md5_128",
        "sha",
        "sha1",
        "sha1_160",
        "sha256",
        "sha2_256",
        "sha256_96",
        "sha2_256_96",
        "sha384",
        "sha2_384",
        "sha512",
        "sha2_512",
        "aesxcbc",
        "aescmac",
        "camelliaxcbc",
    ];
    if INTEG.contains(&tok) {
        return Err(BadToken::Integrity);
    }
    const OTHER: &[&str] = &[
        // PRFs
        "prfmd5",
        "prfsha1",
        "prfaesxcbc",
        "prfaescmac",
        "prfcamelliaxcbc",
        // key exchange methods
        "modp768",
        "modp1024",
        "modp1536",
        "modp2048",
        "modp3072",
        "modp4096",
        "modp6144",
        "modp8192",
        "modp1024s160",
        "modp2048s224",
        "modp2048s256",
        "ecp192",
        "ecp224",
        "ecp521",
        "ecp224bp",
        "ecp256bp",
        "ecp384bp",
        "ecp512bp",
        "x448",
        "curve448",
        "mlkem512",
        "mlkem768",
        "mlkem1024",
    ];
    if OTHER.contains(&tok) {
        return Err(BadToken::Unsupported);
    }
    // Additional key exchanges (RFC 9370), e.g. "ke1_mlkem768".
    if let Some(rest) = tok.strip_prefix("ke") {
        if let Some((n, _)) = rest.split_once('_') {
            if matches!(n, "1" | "2" | "3" | "4" | "5" | "6" | "7") {
                return Err(BadToken::Unsupported);
            }
        }
    }
    Err(BadToken::Unknown)
}

/// strongSwan encryption keywords we do not implement: non-AEAD and short-
/// ICV AES and Camellia modes, AES-192, and the legacy ciphers.
fn is_known_unsupported_encr(tok: &str) -> bool {
    const LEGACY: &[&str] = &[
        "null",
        "des",
        "3des",
        "cast128",
        "blowfish",
        "blowfish128",
        "blowfish192",
        "blowfish256",
        "twofish",
        "twofish128",
        "twofish192",
        "twofish256",
        "serpent",
        "serpent128",
        "serpent192",
        "serpent256",
        "aes128gmac",
        "aes192gmac",
        "aes256gmac",
    ];
    if LEGACY.contains(&tok) {
        return true;
    }
    const MODES: &[&str] = &[
        "", "ctr", "ccm8", "ccm64", "ccm12", "ccm96", "ccm16", "ccm128", "ccm", "gcm8", "gcm64",
        "gcm12", "gcm96", "gcm16", "gcm128", "gcm",
    ];
    for cipher in ["aes", "camellia"] {
        if let Some(rest) = tok.strip_prefix(cipher) {
            let rest = ["128", "192", "256"]
                .iter()
                .find_map(|k| rest.strip_prefix(k))
                .unwrap_or(rest);
            if MODES.contains(&rest) {
                return true;
            }
        }
    }
    false
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn protocol_name(p: ProtocolId) -> &'static str {
    match p {
        ProtocolId::IKE => "IKE",
        ProtocolId::ESP => "ESP",
        _ => "AH",
    }
}

impl ProposalSpec {
    /// Parses an IKE proposal: '-'-separated keywords of encryption
    /// (`aes128gcm16`, `aes256gcm16`, with `aes128gcm`/`aes256gcm` and
    /// `aes128gcm128`/`aes256gcm128` as aliases, `chacha20poly1305`), PRF
    /// (`prfsha256`, `prfsha384`, `prfsha512`) and DH group (`x25519` or
    /// `curve25519`, `ecp256`, `ecp384`), in any order; several of each kind
    /// make one proposal with several transforms of that type, preferred in
    /// the order given. Duplicates are dropped; keywords are case-insensitive.
    /// At least one of each kind is required. `default` alone stands for
    /// `aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384`.
    pub fn parse_ike(s: &str) -> Result<ProposalSpec, ProposalError> {
        ProposalSpec::parse(s, ProtocolId::IKE)
    }

    /// Parses an ESP proposal: encryption keywords as for IKE, optional DH
    /// groups (PFS in CREATE_CHILD_SA), and `esn` / `noesn` (neither means
    /// `noesn`; both means both, in the order given). No PRF. `default`
    /// alone stands for `aes256gcm16-aes128gcm16-chacha20poly1305`.
    pub fn parse_esp(s: &str) -> Result<ProposalSpec, ProposalError> {
        ProposalSpec::parse(s, ProtocolId::ESP)
    }

    /// Parses a strongSwan proposal list for IKE: comma-separated proposals,
    /// optionally ending in '!' (strongSwan's "strict" marker, which is
    /// accepted and ignored: we never add proposals of our own).
    pub fn parse_ike_list(s: &str) -> Result<Vec<ProposalSpec>, ProposalError> {
        ProposalSpec::parse_list(s, ProtocolId::IKE)
    }

    /// [`ProposalSpec::parse_ike_list`] for ESP proposals.
    pub fn parse_esp_list(s: &str) -> Result<Vec<ProposalSpec>, ProposalError> {
        ProposalSpec::parse_list(s, ProtocolId::ESP)
    }

    fn parse_list(s: &str, protocol: ProtocolId) -> Result<Vec<ProposalSpec>, ProposalError> {
        let s = s.trim();
        let s = s.strip_suffix('!').unwrap_or(s);
        if s.trim().is_empty() {
            return Err(ProposalError::Empty);
        }
        s.split(',')
            .map(|p| ProposalSpec::parse(p, protocol))
            .collect()
    }

    fn parse(s: &str, protocol: ProtocolId) -> Result<ProposalSpec, ProposalError> {
        let proposal = s.trim();
        if proposal.is_empty() {
            return Err(ProposalError::Empty);
        }
        let ike = protocol == ProtocolId::IKE;
        if proposal.eq_ignore_ascii_case("default") {
            return ProposalSpec::parse(if ike { DEFAULT_IKE } else { DEFAULT_ESP }, protocol);
        }
        let owned = || proposal.to_string();
        let mut spec = ProposalSpec {
            protocol,
            encr: Vec::new(),
            prf: Vec::new(),
            dh: Vec::new(),
            esn: Vec::new(),
        };
        for token in proposal.split('-') {
            if token.is_empty() {
                return Err(ProposalError::EmptyToken { proposal: owned() });
            }
            let lower = token.to_ascii_lowercase();
            if lower == "default" {
                return Err(ProposalError::DefaultCombined { proposal: owned() });
            }
            let not_allowed = || ProposalError::NotAllowed {
                token: token.to_string(),
                protocol: protocol_name(protocol),
                proposal: owned(),
            };
            match classify(&lower) {
                Ok(Token::Encr(a)) => push_unique(&mut spec.encr, a),
                Ok(Token::Prf(p)) if ike => push_unique(&mut spec.prf, p),
                Ok(Token::Dh(g)) => push_unique(&mut spec.dh, g),
                Ok(Token::Esn(e)) if !ike => push_unique(&mut spec.esn, e),
                Ok(Token::Prf(_)) | Ok(Token::Esn(_)) => return Err(not_allowed()),
                Err(BadToken::Unknown) => {
                    return Err(ProposalError::UnknownAlgorithm {
                        token: token.to_string(),
                        proposal: owned(),
                    })
                }
                Err(BadToken::Unsupported) => {
                    return Err(ProposalError::UnsupportedAlgorithm {
                        token: token.to_string(),
                        proposal: owned(),
                    })
                }
                Err(BadToken::Integrity) => {
                    return Err(ProposalError::IntegrityAlgorithm {
                        token: token.to_string(),
                        proposal: owned(),
                    })
                }
            }
        }
        if spec.encr.is_empty() {
            return Err(ProposalError::NoEncryption { proposal: owned() });
        }
        if ike {
            if spec.prf.is_empty() {
                return Err(ProposalError::NoPrf { proposal: owned() });
            }
            if spec.dh.is_empty() {
                return Err(ProposalError::NoDh { proposal: owned() });
            }
        } else if spec.esn.is_empty() {
            spec.esn.push(false);
        }
        Ok(spec)
    }

    /// ESN choices, with empty meaning "no ESN".
    fn esn_choices(&self) -> &[bool] {
        if self.esn.is_empty() {
            &[false]
        } else {
            &self.esn
        }
    }

    /// The proposal substructure to send. IKE: ENCR (with a Key Length
    /// attribute for AES-GCM), PRF, DH transforms. ESP: ENCR, then DH only if
    /// `include_dh` and the spec has groups (CREATE_CHILD_SA with PFS; never
    /// in IKE_AUTH), then ESN (0 = no, 1 = yes). `include_dh` is ignored for
    /// IKE, which always carries its DH groups.
    pub fn to_wire(&self, number: u8, spi: &[u8], include_dh: bool) -> Proposal {
        let mut transforms: Vec<Transform> = self.encr.iter().map(|&a| encr_transform(a)).collect();
        if self.protocol == ProtocolId::IKE {
            transforms.extend(self.prf.iter().map(|&p| prf_transform(p)));
            transforms.extend(self.dh.iter().map(|&g| dh_transform(g)));
        } else {
            if include_dh {
                transforms.extend(self.dh.iter().map(|&g| dh_transform(g)));
            }
            if self.protocol == ProtocolId::ESP {
                transforms.extend(self.esn_choices().iter().map(|&e| esn_transform(e)));
            }
        }
        Proposal {
            number,
            protocol: self.protocol,
            spi: spi.to_vec(),
            transforms,
        }
    }

    /// The strongSwan form, e.g. `aes256gcm16-prfsha256-x25519` or
    /// `aes128gcm16-esn`. `noesn` is written only when it is not the lone
    /// default, so parsing the result gives back this spec.
    pub fn to_string_strongswan(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        parts.extend(self.encr.iter().map(|a| a.name()));
        parts.extend(self.prf.iter().map(|p| p.name()));
        parts.extend(self.dh.iter().map(|g| g.name()));
        if self.protocol != ProtocolId::IKE && self.esn_choices() != [false] {
            parts.extend(self.esn.iter().map(|&e| if e { "esn" } else { "noesn" }));
        }
        parts.join("-")
    }
}

impl std::fmt::Display for ProposalSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_strongswan())
    }
}

/// Proposal substructures for a list of specs, numbered 1, 2, ... in order
/// (the numbering [`accept_response`] expects), all with the same `spi`.
pub fn to_wire_all(specs: &[ProposalSpec], spi: &[u8], include_dh: bool) -> Vec<Proposal> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let number = u8::try_from(i + 1).expect("at most 255 proposals");
            s.to_wire(number, spi, include_dh)
        })
        .collect()
}

fn encr_transform(a: AeadAlg) -> Transform {
    Transform {
        transform_type: TransformType::ENCR,
        id: a.transform_id(),
        attributes: a
            .key_length_attr()
            .map(|bits| Attribute::Tv {
                attr_type: ATTR_KEY_LENGTH,
                value: bits,
            })
            .into_iter()
            .collect(),
    }
}

fn prf_transform(p: PrfAlg) -> Transform {
    Transform {
        transform_type: TransformType::PRF,
        id: p.transform_id(),
        attributes: Vec::new(),
    }
}

fn dh_transform(g: DhGroup) -> Transform {
    Transform {
        transform_type: TransformType::DH,
        id: g.id(),
        attributes: Vec::new(),
    }
}

fn esn_transform(e: bool) -> Transform {
    Transform {
        transform_type: TransformType::ESN,
        id: u16::from(e),
        attributes: Vec::new(),
    }
}

/// One transform of each type, chosen from a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub protocol: ProtocolId,
    /// Number of the proposal it was chosen from.
    pub number: u8,
    /// SPI of the proposal it was chosen from (the sender's SPI).
    pub spi: Vec<u8>,
    pub encr: AeadAlg,
    /// Always `Some` for IKE, `None` for ESP.
    pub prf: Option<PrfAlg>,
    /// Always `Some` for IKE; for ESP the PFS group, if any.
    pub dh: Option<DhGroup>,
    /// Extended sequence numbers (ESP only; `false` for IKE).
    pub esn: bool,
}

impl Chosen {
    /// The single-transform proposal to echo back in a response SA payload.
    pub fn to_wire(&self, number: u8, spi: &[u8]) -> Proposal {
        let mut transforms = vec![encr_transform(self.encr)];
        transforms.extend(self.prf.map(prf_transform));
        transforms.extend(self.dh.map(dh_transform));
        if self.protocol == ProtocolId::ESP {
            transforms.push(esn_transform(self.esn));
        }
        Proposal {
            number,
            protocol: self.protocol,
            spi: spi.to_vec(),
            transforms,
        }
    }

    /// strongSwan's log form: `AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519`
    /// for IKE, `AES_GCM_16_256/NO_EXT_SEQ` or
    /// `AES_GCM_16_256/CURVE_25519/EXT_SEQ` for ESP.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.encr.iana_name()];
        parts.extend(self.prf.map(PrfAlg::iana_name));
        parts.extend(self.dh.map(DhGroup::iana_name));
        if self.protocol == ProtocolId::ESP {
            parts.push(if self.esn { "EXT_SEQ" } else { "NO_EXT_SEQ" });
        }
        parts.join("/")
    }
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// How DH transforms of a child SA (ESP) proposal are treated. IKE
/// proposals always negotiate a DH group, whatever the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhMode {
    /// IKE_AUTH: DH transforms in the peer's proposal are ignored and
    /// `Chosen::dh` is `None` (RFC 7296 §1.2).
    Ignore,
    /// CREATE_CHILD_SA: if our spec has DH groups, the peer's proposal must
    /// offer one of them (PFS); if it has none, the peer must offer no DH
    /// transform, or NONE (0) among its DH transforms.
    Negotiate,
}

const DH_NONE: u16 = 0;
const INTEG_NONE: u16 = 0;

/// Is this transform type one a proposal of `protocol` may carry
/// (RFC 7296 §3.3.3)?
fn type_allowed(protocol: ProtocolId, t: TransformType) -> bool {
    match t {
        TransformType::ENCR | TransformType::INTEG | TransformType::DH => true,
        TransformType::PRF => protocol == ProtocolId::IKE,
        TransformType::ESN => protocol == ProtocolId::ESP,
        _ => false,
    }
}

/// The cipher of an ENCR transform, if we support it: its only attribute
/// may be one Key Length.
fn encr_of(t: &Transform) -> Option<AeadAlg> {
    let mut key_length = None;
    for a in &t.attributes {
        match a {
            Attribute::Tv {
                attr_type: ATTR_KEY_LENGTH,
                value,
            } if key_length.is_none() => key_length = Some(*value),
            _ => return None,
        }
    }
    AeadAlg::from_transform(t.id, key_length)
}

/// The id of a transform without attributes (the other types have none
/// defined); a transform with attributes is one we do not understand.
fn plain_id(t: &Transform) -> Option<u16> {
    t.attributes.is_empty().then_some(t.id)
}

/// The transforms of one peer proposal that we understand, by type.
struct Offer {
    encr: Vec<AeadAlg>,
    prf: Vec<PrfAlg>,
    /// Raw DH ids (NONE = 0 included).
    dh: Vec<u16>,
    /// Raw ESN ids; `None` when the proposal has no ESN transform.
    esn: Option<Vec<u16>>,
}

/// Sorts a peer proposal's transforms, or `None` if the proposal is
/// unacceptable whatever our configuration: a transform type we do not
/// know or that does not belong to the protocol, or an integrity algorithm
/// (we only do AEAD).
fn offer_of(p: &Proposal) -> Option<Offer> {
    let mut offer = Offer {
        encr: Vec::new(),
        prf: Vec::new(),
        dh: Vec::new(),
        esn: None,
    };
    for t in &p.transforms {
        if !type_allowed(p.protocol, t.transform_type) {
            return None;
        }
        match t.transform_type {
            TransformType::ENCR => offer.encr.extend(encr_of(t)),
            TransformType::PRF => offer
                .prf
                .extend(plain_id(t).and_then(PrfAlg::from_transform_id)),
            TransformType::INTEG => {
                if t.id != INTEG_NONE {
                    return None;
                }
            }
            TransformType::DH => offer.dh.extend(plain_id(t)),
            TransformType::ESN => {
                let ids = offer.esn.get_or_insert_with(Vec::new);
                ids.extend(plain_id(t));
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// The first of `ours` that `offered` contains.
fn first_common<T: Copy, U>(ours: &[T], offered: &[U], eq: impl Fn(T, &U) -> bool) -> Option<T> {
    ours.iter()
        .copied()
        .find(|&o| offered.iter().any(|x| eq(o, x)))
}

fn match_proposal(spec: &ProposalSpec, p: &Proposal, dh_mode: DhMode) -> Option<Chosen> {
    if p.protocol != spec.protocol {
        return None;
    }
    let offer = offer_of(p)?;
    let encr = first_common(&spec.encr, &offer.encr, |a, b| a == *b)?;
    let mut chosen = Chosen {
        protocol: p.protocol,
        number: p.number,
        spi: p.spi.clone(),
        encr,
        prf: None,
        dh: None,
        esn: false,
    };
    if spec.protocol == ProtocolId::IKE {
        chosen.prf = Some(first_common(&spec.prf, &offer.prf, |a, b| a == *b)?);
        chosen.dh = Some(first_common(&spec.dh, &offer.dh, |g, id| g.id() == *id)?);
        return Some(chosen);
    }
    if spec.protocol != ProtocolId::ESP {
        return None;
    }
    match dh_mode {
        DhMode::Ignore => {}
        DhMode::Negotiate if spec.dh.is_empty() => {
            if !(offer.dh.is_empty() || offer.dh.contains(&DH_NONE)) {
                return None;
            }
        }
        DhMode::Negotiate => {
            chosen.dh = Some(first_common(&spec.dh, &offer.dh, |g, id| g.id() == *id)?);
        }
    }
    let peer_esn = offer.esn.unwrap_or_else(|| vec![0]);
    chosen.esn = first_common(spec.esn_choices(), &peer_esn, |e, id| u16::from(e) == *id)?;
    Some(chosen)
}

/// Responder's choice (RFC 7296 §2.7, §3.3.6). Walks our specs in our order
/// of preference and, for each, the peer's proposals of the same protocol in
/// their order; the first pair where every transform type we need has a
/// common algorithm wins, and within a type our preference decides.
///
/// Peer transforms with ids we do not support (or attributes we do not
/// understand) are skipped. A peer proposal is unacceptable if it carries a
/// transform type we do not know or that does not belong to its protocol, or
/// an integrity algorithm other than NONE. IKE needs ENCR, PRF and DH; ESP
/// needs ENCR and ESN (a proposal without ESN transform means no ESN), and
/// DH as `dh_mode` says.
pub fn select(ours: &[ProposalSpec], theirs: &[Proposal], dh_mode: DhMode) -> Option<Chosen> {
    ours.iter()
        .find_map(|spec| theirs.iter().find_map(|p| match_proposal(spec, p, dh_mode)))
}

/// Initiator's check of a responder's SA payload: exactly one proposal,
/// whose number `n` designates the spec `offered[n - 1]` we sent (see
/// [`to_wire_all`]) and whose protocol matches it, holding exactly one
/// transform of each required type, each of which that spec offered.
///
/// IKE: one ENCR, one PRF, one DH, nothing else. ESP: one ENCR and at most
/// one ESN (none means no ESN, acceptable only if we offered no-ESN); DH per
/// `dh_mode`: `Ignore` tolerates (and ignores) one DH transform;
/// `Negotiate` requires exactly one of our groups when the spec has any,
/// and otherwise no DH transform or a single NONE.
///
/// Returns `None` if the answer is not one we could have accepted.
pub fn accept_response(
    offered: &[ProposalSpec],
    response: &[Proposal],
    dh_mode: DhMode,
) -> Option<Chosen> {
    let [p] = response else {
        return None;
    };
    let spec = offered.get(usize::from(p.number).checked_sub(1)?)?;
    if p.protocol != spec.protocol {
        return None;
    }
    let ike = spec.protocol == ProtocolId::IKE;
    if !ike && spec.protocol != ProtocolId::ESP {
        return None;
    }
    let mut encr = None;
    let mut prf = None;
    let mut dh: Option<u16> = None;
    let mut esn: Option<bool> = None;
    // Each slot may be filled once.
    fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(v);
        Some(())
    }
    for t in &p.transforms {
        if !type_allowed(p.protocol, t.transform_type) {
            return None;
        }
        match t.transform_type {
            TransformType::ENCR => {
                let a = encr_of(t).filter(|a| spec.encr.contains(a))?;
                once(&mut encr, a)?;
            }
            TransformType::PRF => {
                let f = plain_id(t)
                    .and_then(PrfAlg::from_transform_id)
                    .filter(|f| spec.prf.contains(f))?;
                once(&mut prf, f)?;
            }
            TransformType::DH => once(&mut dh, plain_id(t)?)?,
            TransformType::ESN => {
                let e = match plain_id(t)? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                if !spec.esn_choices().contains(&e) {
                    return None;
                }
                once(&mut esn, e)?;
            }
            // We never offer integrity algorithms.
            _ => return None,
        }
    }
    let mut chosen = Chosen {
        protocol: p.protocol,
        number: p.number,
        spi: p.spi.clone(),
        encr: encr?,
        prf: None,
        dh: None,
        esn: false,
    };
    let offered_group = |id: u16| DhGroup::from_id(id).filter(|g| spec.dh.contains(g));
    if ike {
        chosen.prf = Some(prf?);
        chosen.dh = Some(offered_group(dh?)?);
        return Some(chosen);
    }
    match dh_mode {
        DhMode::Ignore => {}
        DhMode::Negotiate if spec.dh.is_empty() => {
            if !matches!(dh, None | Some(DH_NONE)) {
                return None;
            }
        }
        DhMode::Negotiate => chosen.dh = Some(offered_group(dh?)?),
    }
    chosen.esn = match esn {
        Some(e) => e,
        None if spec.esn_choices().contains(&false) => false,
        None => return None,
    };
    Some(chosen)
}
