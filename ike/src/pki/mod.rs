//! Certificate authentication (`auth = pubkey`): our certificate chain and
//! private key, trust anchors, validation of the peer's chain (RFC 5280 via
//! `rustls-webpki`, with strongSwan's EKU policy) and the binding of the
//! peer's IKE identity to its certificate.
//!
//! The daemon reads the files; this module takes their bytes (PEM or DER).

pub mod crl;
mod dn;
pub mod info;
mod keyfile;
mod reason;
pub mod sig;

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub use crl::{parse_crls, Crl};
pub use dn::{dn_matches, dn_to_string, parse_dn};
pub use info::{cert_info, utc_string, CertInfo};
pub use keyfile::{is_encrypted_key, parse_private_key_with_passphrase};
pub use sig::{KeyFormat, SigningKey};

use crate::config::display_identity;
use crate::wire::{Authentication, Cert, IdType, Identification};

/// CERT / CERTREQ encoding "X.509 Certificate - Signature" (§3.6).
pub const CERT_X509_SIGNATURE: u8 = 4;

/// Why a credential could not be loaded or a peer was not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("no certificate found (expected PEM 'CERTIFICATE' or DER)")]
    NoCertificate,
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("invalid private key: {0}")]
    Key(String),
    #[error("private key does not match certificate '{0}'")]
    KeyMismatch(String),
    #[error("signing failed")]
    Sign,
    #[error("peer accepts none of the hashes our key signs with (it offered {0:?})")]
    NoCommonHash(Vec<u16>),
    #[error("peer sent no certificate (CERT payload)")]
    PeerSentNoCertificate,
    #[error("peer's CERT payload (encoding {encoding}) is not an X.509 certificate: {why}")]
    BadPeerCertificate { encoding: u8, why: String },
    #[error("invalid CRL: {0}")]
    BadCrl(String),
    #[error("peer's certificate '{subject}' is revoked: certificate '{revoked}' (serial {serial}) is listed in the CRL of '{issuer}'")]
    Revoked {
        subject: String,
        revoked: String,
        serial: String,
        issuer: String,
    },
    #[error("peer's certificate '{subject}' is not trusted: {why}")]
    Untrusted { subject: String, why: String },
    #[error("peer identity '{id}' is not in its certificate '{subject}' ({})", reason::alt_names(.alt_names))]
    IdentityNotInCertificate {
        id: String,
        subject: String,
        /// The certificate's subjectAltNames, as identities.
        alt_names: Vec<String>,
    },
    #[error("malformed AUTH payload")]
    BadAuthData,
    #[error("unsupported signature: {0}")]
    UnsupportedSignature(String),
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    #[error("no private key for our certificate")]
    NoLocalCredential,
}

/// When we send our certificate (strongSwan's `send_cert`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendCert {
    /// If the peer sent a CERTREQ.
    #[default]
    IfAsked,
    Always,
    Never,
}

/// The certificates of a PEM or DER file, in order.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::BadCertificate(format!("PEM: {e}")))?;
    let certs = if pem.is_empty() {
        vec![CertificateDer::from(bytes.to_vec())]
    } else {
        pem
    };
    for c in &certs {
        X509Certificate::from_der(c).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    }
    if certs.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(certs)
}

/// A private key from a PEM (PKCS#8, SEC1 "EC PRIVATE KEY", PKCS#1 "RSA
/// PRIVATE KEY") or DER file.
pub fn parse_private_key(bytes: &[u8]) -> Result<SigningKey, PkiError> {
    if is_encrypted_key(bytes) {
        return Err(PkiError::Key(
            "the key is encrypted: give its passphrase (passphrase = \"...\" in its [[key]])"
                .into(),
        ));
    }
    if bytes.starts_with(b"-----") || bytes.windows(5).any(|w| w == b"-----") {
        let key =
            PrivateKeyDer::from_pem_slice(bytes).map_err(|e| PkiError::Key(format!("PEM: {e}")))?;
        return match key {
            PrivateKeyDer::Pkcs8(k) => SigningKey::from_der(k.secret_pkcs8_der(), KeyFormat::Pkcs8),
            PrivateKeyDer::Sec1(k) => SigningKey::from_der(k.secret_sec1_der(), KeyFormat::Sec1),
            PrivateKeyDer::Pkcs1(k) => SigningKey::from_der(k.secret_pkcs1_der(), KeyFormat::Pkcs1),
            _ => Err(PkiError::Key("unknown PEM key type".into())),
        };
    }
    SigningKey::from_der(bytes, KeyFormat::Pkcs8)
        .or_else(|_| SigningKey::from_der(bytes, KeyFormat::Sec1))
        .or_else(|_| SigningKey::from_der(bytes, KeyFormat::Pkcs1))
        .map_err(|_| PkiError::Key("DER is not a PKCS#8, SEC1 or PKCS#1 key".into()))
}

/// The subject of a certificate, as strongSwan prints a DN.
pub fn subject_string(der: &[u8]) -> String {
    match X509Certificate::from_der(der) {
        Ok((_, c)) => dn_to_string(c.tbs_certificate.subject.as_raw()),
        Err(_) => "(unparsable certificate)".into(),
    }
}

/// The raw public key of a certificate (the subjectPublicKey bits), as
/// [`SigningKey::public_key`] gives it.
pub fn cert_public_key(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(c.public_key().subject_public_key.data.to_vec())
}

/// The DER subject of a certificate.
pub fn subject_der(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(c.tbs_certificate.subject.as_raw().to_vec())
}

/// Our certificate (end entity first, then intermediates) and its key.
#[derive(Debug)]
pub struct LocalCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<SigningKey>,
}

impl LocalCert {
    /// Pair a chain with its key; refuses a key that is not the
    /// certificate's (`name` names the certificate in the error).
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: Arc<SigningKey>,
        name: &str,
    ) -> Result<LocalCert, PkiError> {
        let first = chain.first().ok_or(PkiError::NoCertificate)?;
        let (_, c) = X509Certificate::from_der(first)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        if c.public_key().subject_public_key.data.as_ref() != key.public_key() {
            return Err(PkiError::KeyMismatch(name.to_string()));
        }
        Ok(LocalCert { chain, key })
    }

    /// The end-entity certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// Trust anchors: CA certificates (roots, or intermediates trusted as
/// such), and the CRLs checked for every certificate of a peer's chain.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    pub cas: Vec<CertificateDer<'static>>,
    pub crls: Vec<Crl>,
}

/// SHA-1 of a certificate's SubjectPublicKeyInfo: its CERTREQ entry (§3.7).
pub fn spki_sha1(der: &[u8]) -> Option<[u8; 20]> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    let spki = c.tbs_certificate.subject_pki.raw;
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spki);
    d.as_ref().try_into().ok()
}

/// strongSwan's EKU policy: none, ipsecIKE, serverAuth or clientAuth.
struct IkeEku;

const EKU_OK: [&[usize]; 3] = [
    &[1, 3, 6, 1, 5, 5, 7, 3, 17],
    &[1, 3, 6, 1, 5, 5, 7, 3, 1],
    &[1, 3, 6, 1, 5, 5, 7, 3, 2],
];

impl ExtendedKeyUsageValidator for IkeEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        for id in iter {
            empty = false;
            let oid = id?.to_decoded_oid();
            if EKU_OK.contains(&oid.as_slice()) {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            #[allow(deprecated)]
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// How a connection authenticates with certificates.
#[derive(Clone, Debug, Default)]
pub struct PubkeyAuth {
    /// Ours; `None`: we cannot prove our identity this way.
    pub local: Option<Arc<LocalCert>>,
    pub trust: Arc<TrustStore>,
    /// Pin: the peer's chain must end at this CA (`remote_cacert`).
    pub remote_cacert: Option<CertificateDer<'static>>,
    pub send_cert: SendCert,
    /// An RSA key signs RSASSA-PSS rather than PKCS#1 v1.5 (strongSwan's
    /// `rsa/pss` auth constraint or `charon.rsa_pss`).
    pub rsa_pss: bool,
}

impl PubkeyAuth {
    /// The CAs that may vouch for the peer.
    fn anchors(&self) -> Vec<&CertificateDer<'static>> {
        match &self.remote_cacert {
            Some(c) => vec![c],
            None => self.trust.cas.iter().collect(),
        }
    }

    /// The body of our CERTREQ payload: the SHA-1 hashes of our anchors'
    /// keys; `None` without anchors.
    pub fn certreq(&self) -> Option<Cert> {
        let data: Vec<u8> = self
            .anchors()
            .into_iter()
            .filter_map(|c| spki_sha1(c))
            .flatten()
            .collect();
        (!data.is_empty()).then_some(Cert {
            encoding: CERT_X509_SIGNATURE,
            data,
        })
    }

    /// Our CERT payloads, if we send them (`peer_asked`: it sent CERTREQ).
    pub fn cert_payloads(&self, peer_asked: bool) -> Vec<Cert> {
        let send = match self.send_cert {
            SendCert::Always => true,
            SendCert::IfAsked => peer_asked,
            SendCert::Never => false,
        };
        match (&self.local, send) {
            (Some(l), true) => l
                .chain
                .iter()
                .map(|c| Cert {
                    encoding: CERT_X509_SIGNATURE,
                    data: c.to_vec(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Our AUTH payload over `octets`.
    pub fn sign(&self, octets: &[u8], peer_hashes: &[u16]) -> Result<Authentication, PkiError> {
        let local = self.local.as_ref().ok_or(PkiError::NoLocalCredential)?;
        local.key.sign(octets, peer_hashes, self.rsa_pss)
    }

    /// Authenticate the peer: its chain (`certs`, end entity first) to one
    /// of our anchors at `now`, `id` in its certificate, `auth` a signature
    /// over `octets` by its key.
    pub fn verify(
        &self,
        certs: &[Cert],
        id: &Identification,
        octets: &[u8],
        auth: &Authentication,
        now: UnixTime,
    ) -> Result<(), PkiError> {
        let mut x509 = Vec::new();
        for c in certs {
            if c.encoding != CERT_X509_SIGNATURE {
                continue;
            }
            let der = CertificateDer::from(c.data.as_slice());
            X509Certificate::from_der(&der).map_err(|e| PkiError::BadPeerCertificate {
                encoding: c.encoding,
                why: reason::bad_der(&c.data, &e.to_string()),
            })?;
            x509.push(der);
        }
        if x509.is_empty() {
            return match certs.first() {
                Some(c) => Err(PkiError::BadPeerCertificate {
                    encoding: c.encoding,
                    why: "only X.509 (encoding 4) is supported".into(),
                }),
                None => Err(PkiError::PeerSentNoCertificate),
            };
        }
        let subject = subject_string(&x509[0]);
        let ee = EndEntityCert::try_from(&x509[0]).map_err(|e| PkiError::BadPeerCertificate {
            encoding: CERT_X509_SIGNATURE,
            why: format!("{e:?}"),
        })?;
        let anchor_certs = self.anchors();
        let anchors: Vec<_> = anchor_certs
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect();
        if anchors.is_empty() {
            return Err(PkiError::Untrusted {
                subject,
                why: "no trusted CA certificates are configured".into(),
            });
        }
        let crls: Vec<&webpki::CertRevocationList<'static>> =
            self.trust.crls.iter().map(|c| &*c.webpki).collect();
        // strongSwan's policy: a certificate is refused only when its
        // issuer's CRL lists it; expired CRLs still count.
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build()
        });
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &x509[1..],
            now,
            IkeEku,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertRevoked => self.revoked(&x509, &subject),
            e => PkiError::Untrusted {
                subject: subject.clone(),
                why: untrusted_reason(&e, self.remote_cacert.as_ref(), &x509, &anchor_certs),
            },
        })?;
        if !cert_has_identity(&x509[0], id) {
            return Err(PkiError::IdentityNotInCertificate {
                id: display_identity(id),
                subject,
                alt_names: alt_names(&x509[0]),
            });
        }
        sig::verify(&ee, &x509[0], octets, auth)
    }
}

impl PubkeyAuth {
    /// The error for a chain (end entity first) that a CRL revokes: which
    /// certificate, by whose CRL.
    fn revoked(&self, chain: &[CertificateDer<'_>], subject: &str) -> PkiError {
        let at = crl::revoked_index(&self.trust.crls, chain).unwrap_or(0);
        let info = info::cert_info(&chain[at]).ok();
        PkiError::Revoked {
            subject: subject.to_string(),
            revoked: subject_string(&chain[at]),
            serial: info.as_ref().map(|i| i.serial.clone()).unwrap_or_default(),
            issuer: info.map(|i| i.issuer).unwrap_or_default(),
        }
    }
}

/// Why webpki refused the peer's `chain`, in an operator's words: which
/// certificate expired or is not valid yet and when, which CA is unknown.
fn untrusted_reason(
    e: &webpki::Error,
    pinned: Option<&CertificateDer<'static>>,
    chain: &[CertificateDer<'_>],
    anchors: &[&CertificateDer<'_>],
) -> String {
    use reason::{top_issuer, utc, whose, Bound};
    use webpki::Error as E;
    let issuer = || top_issuer(chain).unwrap_or_else(|| "?".into());
    #[allow(deprecated)]
    match e {
        E::CertExpired { not_after, time } => format!(
            "{} expired at {} (now {})",
            whose(chain, anchors, Bound::NotAfter, *not_after),
            utc(*not_after),
            utc(*time)
        ),
        E::CertNotValidYet { not_before, time } => format!(
            "{} is not valid yet: not before {} (now {})",
            whose(chain, anchors, Bound::NotBefore, *not_before),
            utc(*not_before),
            utc(*time)
        ),
        E::UnknownIssuer => match pinned {
            Some(pin) => format!(
                "not issued by the pinned remote_cacert '{}' (issuer '{}')",
                subject_string(pin),
                issuer()
            ),
            None => format!("issued by an unknown CA '{}' (not in cacerts)", issuer()),
        },
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            "extended key usage allows neither ipsecIKE, serverAuth nor clientAuth".into()
        }
        E::InvalidSignatureForPublicKey => format!(
            "a signature of its chain does not verify with its issuer's key (issuer '{}')",
            issuer()
        ),
        E::CaUsedAsEndEntity => "it is a CA certificate, not an end entity".into(),
        E::EndEntityUsedAsCa => {
            "a certificate of its chain issues others but is no CA (basicConstraints)".into()
        }
        E::PathLenConstraintViolated => "its chain is longer than a CA's pathLenConstraint".into(),
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            format!("a certificate of its chain is signed with an unsupported algorithm ({e:?})")
        }
        E::InvalidCrlSignatureForPublicKey => {
            "a loaded CRL names its issuer but does not verify with the issuer's key (replace that CRL)".into()
        }
        E::IssuerNotCrlSigner => {
            "a loaded CRL names its issuer, whose key usage does not allow signing CRLs".into()
        }
        E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            "a loaded CRL of its issuer is signed with an unsupported algorithm".into()
        }
        other => format!("{other:?}"),
    }
}

/// Are two identities the same? DNs compare attribute by attribute (their
/// string types may differ: a peer encodes a configured DN its own way).
pub fn same_id(a: &Identification, b: &Identification) -> bool {
    a == b
        || (a.id_type == IdType::ID_DER_ASN1_DN
            && b.id_type == IdType::ID_DER_ASN1_DN
            && !dn::has_wildcard(&a.data)
            && dn_matches(&a.data, &b.data))
}

/// Is `id` a DN with a `*` value (a pattern for the peer's identity)?
pub fn is_pattern(id: &Identification) -> bool {
    id.id_type == IdType::ID_DER_ASN1_DN && dn::has_wildcard(&id.data)
}

/// A certificate's DNS, email and IP address subjectAltNames.
pub fn alt_names(der: &[u8]) -> Vec<String> {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) | GeneralName::RFC822Name(d) => Some(d.to_string()),
            GeneralName::IPAddress(a) => match a.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*a).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*a).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Is `id` the certificate's subject (DN) or one of its subjectAltNames?
pub fn cert_has_identity(der: &[u8], id: &Identification) -> bool {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return false;
    };
    if id.id_type == IdType::ID_DER_ASN1_DN {
        return dn_matches(&id.data, c.tbs_certificate.subject.as_raw());
    }
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| match (n, id.id_type) {
            (GeneralName::DNSName(d), IdType::ID_FQDN) => {
                d.as_bytes().eq_ignore_ascii_case(&id.data)
            }
            (GeneralName::RFC822Name(d), IdType::ID_RFC822_ADDR) => {
                d.as_bytes().eq_ignore_ascii_case(&id.data)
            }
            (GeneralName::IPAddress(a), IdType::ID_IPV4_ADDR | IdType::ID_IPV6_ADDR) => {
                *a == id.data.as_slice()
            }
            _ => false,
        })
}
