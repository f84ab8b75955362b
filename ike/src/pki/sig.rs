//! Signatures for IKE_AUTH: RFC 7427 Digital Signature (method 14, an ASN.1
//! AlgorithmIdentifier before the signature) and the RFC 7296 / RFC 4754
//! methods (9, 10: ECDSA with r‖s; 1, RSA with SHA-1, verified only).
//! RSA keys sign PKCS#1 v1.5, or RSASSA-PSS when the connection asks for it
//! (salt of the hash's length, MGF1 with the same hash, as strongSwan
//! does). Signing with `ring`, verifying through the end-entity certificate
//! with `rustls-webpki`.

use ring::rand::SystemRandom;
use ring::signature::{self as rsig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::SignatureVerificationAlgorithm;
use webpki::EndEntityCert;

use super::PkiError;
use crate::wire::{AuthMethod, Authentication};

/// Hash algorithms of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4,
/// RFC 8420 for Identity).
pub const HASH_SHA1: u16 = 1;
pub const HASH_SHA256: u16 = 2;
pub const HASH_SHA384: u16 = 3;
pub const HASH_SHA512: u16 = 4;
pub const HASH_IDENTITY: u16 = 5;

/// What we announce: the hashes we can verify.
pub const OUR_HASHES: [u16; 4] = [HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_IDENTITY];

/// The notify body announcing `OUR_HASHES`.
pub fn hash_notify_data() -> Vec<u8> {
    OUR_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect()
}

/// The hash identifiers of a received SIGNATURE_HASH_ALGORITHMS notify (an
/// odd trailing byte is ignored).
pub fn parse_hash_notify(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

// AlgorithmIdentifier encodings (RFC 7427 Appendix A).
const AI_RSA_SHA256: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const AI_RSA_SHA384: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
const AI_RSA_SHA512: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];
const AI_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const AI_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const AI_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

// OIDs (content bytes only) inside AlgorithmIdentifiers.
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

/// The RSASSA-PSS AlgorithmIdentifier (RFC 4055 §3.1, RFC 7427 A.4) for a
/// hash: hashAlgorithm and MGF1 with that hash (AlgorithmIdentifiers with
/// NULL parameters), saltLength the hash's length, trailerField omitted (its
/// DEFAULT 1).
fn pss_algorithm_identifier(hash_oid: &[u8], salt_len: u8) -> Vec<u8> {
    let hash = der_tlv(0x30, &[der_tlv(0x06, hash_oid), vec![0x05, 0x00]].concat());
    let mgf = der_tlv(0x30, &[der_tlv(0x06, OID_MGF1), hash.clone()].concat());
    let params = der_tlv(
        0x30,
        &[
            der_tlv(0xa0, &hash),
            der_tlv(0xa1, &mgf),
            der_tlv(0xa2, &der_tlv(0x02, &[salt_len])),
        ]
        .concat(),
    );
    der_tlv(0x30, &[der_tlv(0x06, OID_RSA_PSS), params].concat())
}

/// A private key that signs AUTH payloads.
pub enum SigningKey {
    EcdsaP256(EcdsaKeyPair),
    EcdsaP384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::EcdsaP256(_) => "SigningKey(ECDSA P-256)",
            SigningKey::EcdsaP384(_) => "SigningKey(ECDSA P-384)",
            SigningKey::Ed25519(_) => "SigningKey(Ed25519)",
            SigningKey::Rsa(_) => "SigningKey(RSA)",
        })
    }
}

const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    [&[tag][..], &der_len(body.len()), body].concat()
}

/// A SEC1 ECPrivateKey wrapped as PKCS#8 for the given curve.
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let alg = der_tlv(0x30, &[EC_PUBLIC_KEY, curve_oid].concat());
    let body = [&[0x02, 0x01, 0x00][..], &alg, &der_tlv(0x04, sec1)].concat();
    der_tlv(0x30, &body)
}

/// What form a private key's DER is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    Sec1,
    Pkcs1,
}

impl SigningKey {
    /// Load a private key (ECDSA P-256/P-384, Ed25519 or RSA).
    pub fn from_der(der: &[u8], format: KeyFormat) -> Result<SigningKey, PkiError> {
        let rng = SystemRandom::new();
        let bad = |why: String| PkiError::Key(why);
        match format {
            KeyFormat::Pkcs8 => {
                if let Ok(k) =
                    EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
                {
                    return Ok(SigningKey::EcdsaP256(k));
                }
                if let Ok(k) =
                    EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
                {
                    return Ok(SigningKey::EcdsaP384(k));
                }
                if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(SigningKey::Ed25519(k));
                }
                RsaKeyPair::from_pkcs8(der)
                    .map(SigningKey::Rsa)
                    .map_err(|e| {
                        bad(format!(
                            "PKCS#8 key is not ECDSA P-256/P-384, Ed25519 or RSA ({e})"
                        ))
                    })
            }
            KeyFormat::Sec1 => {
                let p256 = sec1_to_pkcs8(der, P256_OID);
                if let Ok(k) =
                    EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, &p256, &rng)
                {
                    return Ok(SigningKey::EcdsaP256(k));
                }
                let p384 = sec1_to_pkcs8(der, P384_OID);
                EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P384_SHA384_ASN1_SIGNING, &p384, &rng)
                    .map(SigningKey::EcdsaP384)
                    .map_err(|e| bad(format!("EC key is not a P-256 or P-384 key ({e})")))
            }
            KeyFormat::Pkcs1 => RsaKeyPair::from_der(der)
                .map(SigningKey::Rsa)
                .map_err(|e| bad(format!("invalid RSA key ({e})"))),
        }
    }

    /// The raw public key as it appears in a certificate's
    /// subjectPublicKey BIT STRING (RSA: the RSAPublicKey DER).
    pub fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::EcdsaP256(k) | SigningKey::EcdsaP384(k) => k.public_key().as_ref(),
            SigningKey::Ed25519(k) => k.public_key().as_ref(),
            SigningKey::Rsa(k) => k.public_key().as_ref(),
        }
    }

    /// An AUTH payload over `octets`, with a hash the peer announced
    /// (`peer_hashes`; empty: it sent no SIGNATURE_HASH_ALGORITHMS, so
    /// ECDSA falls back to methods 9/10). An RSA key signs RSASSA-PSS if
    /// `rsa_pss`, else PKCS#1 v1.5; other keys ignore it.
    pub fn sign(
        &self,
        octets: &[u8],
        peer_hashes: &[u16],
        rsa_pss: bool,
    ) -> Result<Authentication, PkiError> {
        let rng = SystemRandom::new();
        let failed = |_| PkiError::Sign;
        let has = |h| peer_hashes.is_empty() || peer_hashes.contains(&h);
        let digital = |ai: &[u8], sig: &[u8]| Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: [&[ai.len() as u8][..], ai, sig].concat(),
        };
        match self {
            SigningKey::EcdsaP256(k) | SigningKey::EcdsaP384(k) => {
                let p384 = matches!(self, SigningKey::EcdsaP384(_));
                let (hash, ai) = if p384 {
                    (HASH_SHA384, AI_ECDSA_SHA384)
                } else {
                    (HASH_SHA256, AI_ECDSA_SHA256)
                };
                if !has(hash) {
                    return Err(PkiError::NoCommonHash(peer_hashes.to_vec()));
                }
                let sig = k.sign(&rng, octets).map_err(failed)?;
                if peer_hashes.is_empty() {
                    // RFC 4754: r‖s, from a fresh fixed-format signature.
                    let alg = if p384 {
                        &rsig::ECDSA_P384_SHA384_FIXED_SIGNING
                    } else {
                        &rsig::ECDSA_P256_SHA256_FIXED_SIGNING
                    };
                    let fixed = fixed_from_asn1(sig.as_ref(), alg).ok_or(PkiError::Sign)?;
                    let method = if p384 {
                        AuthMethod::ECDSA_SHA384_P384
                    } else {
                        AuthMethod::ECDSA_SHA256_P256
                    };
                    return Ok(Authentication {
                        method,
                        data: fixed,
                    });
                }
                Ok(digital(ai, sig.as_ref()))
            }
            SigningKey::Ed25519(k) => {
                if !has(HASH_IDENTITY) {
                    return Err(PkiError::NoCommonHash(peer_hashes.to_vec()));
                }
                Ok(digital(AI_ED25519, k.sign(octets).as_ref()))
            }
            SigningKey::Rsa(k) => {
                let hash = [HASH_SHA256, HASH_SHA384, HASH_SHA512]
                    .into_iter()
                    .find(|&h| has(h))
                    .ok_or_else(|| PkiError::NoCommonHash(peer_hashes.to_vec()))?;
                let (pad, ai): (&'static dyn rsig::RsaEncoding, Vec<u8>) = match (hash, rsa_pss) {
                    (HASH_SHA256, false) => (&rsig::RSA_PKCS1_SHA256, AI_RSA_SHA256.to_vec()),
                    (HASH_SHA384, false) => (&rsig::RSA_PKCS1_SHA384, AI_RSA_SHA384.to_vec()),
                    (_, false) => (&rsig::RSA_PKCS1_SHA512, AI_RSA_SHA512.to_vec()),
                    (HASH_SHA256, true) => (
                        &rsig::RSA_PSS_SHA256,
                        pss_algorithm_identifier(OID_SHA256, 32),
                    ),
                    (HASH_SHA384, true) => (
                        &rsig::RSA_PSS_SHA384,
                        pss_algorithm_identifier(OID_SHA384, 48),
                    ),
                    (_, true) => (
                        &rsig::RSA_PSS_SHA512,
                        pss_algorithm_identifier(OID_SHA512, 64),
                    ),
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(pad, &rng, octets, &mut sig).map_err(failed)?;
                Ok(digital(&ai, &sig))
            }
        }
    }
}

/// An ASN.1 ECDSA-Sig-Value as r‖s of the curve's size.
fn fixed_from_asn1(der: &[u8], alg: &'static rsig::EcdsaSigningAlgorithm) -> Option<Vec<u8>> {
    let size = if std::ptr::eq(alg, &rsig::ECDSA_P384_SHA384_FIXED_SIGNING) {
        48
    } else {
        32
    };
    let (tag, body, rest) = der_read(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (t1, r, rest) = der_read(body)?;
    let (t2, s, rest) = der_read(rest)?;
    if t1 != 2 || t2 != 2 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(2 * size);
    for x in [r, s] {
        let x = x.strip_prefix(&[0]).unwrap_or(x);
        if x.len() > size {
            return None;
        }
        out.extend(std::iter::repeat_n(0, size - x.len()));
        out.extend_from_slice(x);
    }
    Some(out)
}

/// r‖s as an ASN.1 ECDSA-Sig-Value.
fn asn1_from_fixed(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let int = |x: &[u8]| {
        let mut x = x;
        while x.len() > 1 && x[0] == 0 && x[1] & 0x80 == 0 {
            x = &x[1..];
        }
        if x.first().is_some_and(|b| b & 0x80 != 0) {
            der_tlv(2, &[&[0][..], x].concat())
        } else {
            der_tlv(2, x)
        }
    };
    der_tlv(0x30, &[int(r), int(s)].concat())
}

/// One DER TLV (short or one/two-byte long length): tag, body, rest.
pub(super) fn der_read(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, b) = b.split_first()?;
    let (len, b) = match l {
        0..=0x7f => (l as usize, b),
        0x81 => (*b.first()? as usize, b.get(1..)?),
        0x82 => (
            u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize,
            b.get(2..)?,
        ),
        _ => return None,
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The algorithm a peer's AUTH payload claims, for verification.
fn verification_alg(
    auth: &Authentication,
) -> Result<(&'static dyn SignatureVerificationAlgorithm, Vec<u8>), PkiError> {
    use webpki::ring as alg;
    match auth.method {
        AuthMethod::ECDSA_SHA256_P256 => Ok((alg::ECDSA_P256_SHA256, asn1_from_fixed(&auth.data))),
        AuthMethod::ECDSA_SHA384_P384 => Ok((alg::ECDSA_P384_SHA384, asn1_from_fixed(&auth.data))),
        AuthMethod::DIGITAL_SIGNATURE => {
            let (&len, rest) = auth.data.split_first().ok_or(PkiError::BadAuthData)?;
            let ai = rest.get(..len as usize).ok_or(PkiError::BadAuthData)?;
            let sig = rest[len as usize..].to_vec();
            let (tag, body, tail) = der_read(ai).ok_or(PkiError::BadAuthData)?;
            let (otag, oid, params) = der_read(body).ok_or(PkiError::BadAuthData)?;
            if tag != 0x30 || otag != 6 || !tail.is_empty() {
                return Err(PkiError::BadAuthData);
            }
            let a: &'static dyn SignatureVerificationAlgorithm = match oid {
                OID_ECDSA_SHA256 => alg::ECDSA_P256_SHA256,
                OID_ECDSA_SHA384 => alg::ECDSA_P384_SHA384,
                OID_ECDSA_SHA512 => {
                    return Err(PkiError::UnsupportedSignature("ECDSA with SHA-512".into()))
                }
                OID_ED25519 => alg::ED25519,
                OID_RSA_SHA256 => alg::RSA_PKCS1_2048_8192_SHA256,
                OID_RSA_SHA384 => alg::RSA_PKCS1_2048_8192_SHA384,
                OID_RSA_SHA512 => alg::RSA_PKCS1_2048_8192_SHA512,
                OID_RSA_PSS => pss_alg(params)?,
                other => {
                    let hex: String = other.iter().map(|b| format!("{b:02x}")).collect();
                    return Err(PkiError::UnsupportedSignature(format!(
                        "algorithm OID 06{hex}"
                    )));
                }
            };
            Ok((a, sig))
        }
        m => Err(PkiError::UnsupportedSignature(format!(
            "AUTH method {}",
            m.0
        ))),
    }
}

/// RSASSA-PSS parameters (the DER after the OID): the hash, and what
/// `ring` verifies with it: MGF1 with the same hash, a salt of the hash's
/// length, trailer field 1. Anything else is named in the error.
fn pss_alg(params: &[u8]) -> Result<&'static dyn SignatureVerificationAlgorithm, PkiError> {
    use webpki::ring as alg;
    use x509_parser::asn1_rs::{Any, FromDer};
    use x509_parser::signature_algorithm::RsaSsaPssParams;
    let unsupported = |why: String| PkiError::UnsupportedSignature(format!("RSASSA-PSS {why}"));
    let (rest, any) = Any::from_der(params).map_err(|_| PkiError::BadAuthData)?;
    if !rest.is_empty() {
        return Err(PkiError::BadAuthData);
    }
    let p = RsaSsaPssParams::try_from(&any).map_err(|_| PkiError::BadAuthData)?;
    let hash = p.hash_algorithm_oid();
    let (a, name, len): (&'static dyn SignatureVerificationAlgorithm, _, _) = match hash.as_bytes()
    {
        OID_SHA256 => (alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, "SHA-256", 32),
        OID_SHA384 => (alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, "SHA-384", 48),
        OID_SHA512 => (alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, "SHA-512", 64),
        _ => {
            return Err(unsupported(format!(
                "with hash {hash} (SHA-256/384/512 only)"
            )))
        }
    };
    let mgf = p.mask_gen_algorithm().map_err(|_| PkiError::BadAuthData)?;
    if mgf.mgf.as_bytes() != OID_MGF1 || mgf.hash != *hash {
        return Err(unsupported(format!(
            "with mask generation {} / {} (only MGF1 with {name})",
            mgf.mgf, mgf.hash
        )));
    }
    if p.salt_length() != len {
        return Err(unsupported(format!(
            "with a {}-byte salt (only the hash's length, {len})",
            p.salt_length()
        )));
    }
    if p.trailer_field() != 1 {
        return Err(unsupported(format!(
            "with trailer field {}",
            p.trailer_field()
        )));
    }
    Ok(a)
}

/// Check the peer's AUTH payload against the public key of its (validated)
/// end-entity certificate.
pub fn verify(
    cert: &EndEntityCert<'_>,
    cert_der: &[u8],
    octets: &[u8],
    auth: &Authentication,
) -> Result<(), PkiError> {
    if auth.method == AuthMethod::RSA_SIG {
        // RFC 7296 method 1: PKCS#1 v1.5 with SHA-1 (verified only).
        let key = super::cert_public_key(cert_der)?;
        return rsig::UnparsedPublicKey::new(
            &rsig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            key,
        )
        .verify(octets, &auth.data)
        .map_err(|_| PkiError::BadSignature("RSA PKCS#1 SHA-1 signature invalid".into()));
    }
    let (alg, sig) = verification_alg(auth)?;
    cert.verify_signature(alg, octets, &sig)
        .map_err(|e| PkiError::BadSignature(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_sig_value_round_trips_through_fixed() {
        let fixed: Vec<u8> = (0..64)
            .map(|i| if i == 0 || i == 32 { 0x80 } else { i })
            .collect();
        let der = asn1_from_fixed(&fixed);
        assert_eq!(
            fixed_from_asn1(&der, &rsig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            fixed
        );
    }

    #[test]
    fn truncated_auth_data_is_an_error() {
        for data in [vec![], vec![20, 0x30], vec![2, 0x30, 0x05]] {
            let auth = Authentication {
                method: AuthMethod::DIGITAL_SIGNATURE,
                data,
            };
            assert!(matches!(
                verification_alg(&auth),
                Err(PkiError::BadAuthData)
            ));
        }
    }

    /// The parameters after the OID of an AlgorithmIdentifier.
    fn params_of(ai: &[u8]) -> Vec<u8> {
        let (_, body, _) = der_read(ai).unwrap();
        let (_, _, params) = der_read(body).unwrap();
        params.to_vec()
    }

    #[test]
    fn pss_parameters_are_checked_precisely() {
        for (oid, salt) in [(OID_SHA256, 32), (OID_SHA384, 48), (OID_SHA512, 64)] {
            assert!(pss_alg(&params_of(&pss_algorithm_identifier(oid, salt))).is_ok());
        }
        let why = |params: &[u8]| match pss_alg(params) {
            Err(PkiError::UnsupportedSignature(w)) => w,
            other => panic!("{:?}", other.map(|_| ())),
        };
        assert_eq!(
            why(&params_of(&pss_algorithm_identifier(OID_SHA256, 20))),
            "RSASSA-PSS with a 20-byte salt (only the hash's length, 32)"
        );
        // Empty parameters: SHA-1 and MGF1-SHA-1 by default (RFC 4055).
        assert_eq!(
            why(&[0x30, 0x00]),
            "RSASSA-PSS with hash 1.3.14.3.2.26 (SHA-256/384/512 only)"
        );
        // MGF1 with another hash than the signature's.
        let mut mixed = pss_algorithm_identifier(OID_SHA256, 32);
        let at = mixed
            .windows(OID_SHA256.len())
            .rposition(|w| w == OID_SHA256)
            .unwrap();
        mixed[at..at + OID_SHA384.len()].copy_from_slice(OID_SHA384);
        assert!(why(&params_of(&mixed)).contains("only MGF1 with SHA-256"));
        assert!(matches!(
            pss_alg(&[0x30, 0x05, 0xa0]),
            Err(PkiError::BadAuthData)
        ));
        assert!(matches!(pss_alg(&[]), Err(PkiError::BadAuthData)));
    }

    #[test]
    fn hash_notify_round_trips() {
        assert_eq!(parse_hash_notify(&hash_notify_data()), OUR_HASHES.to_vec());
    }
}
