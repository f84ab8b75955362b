//! Certificate revocation lists (RFC 5280 §5), checked like strongSwan's
//! `revocation` plugin with `strictcrlpolicy = no`: a CRL from a
//! certificate's issuer that lists it refuses the certificate; no CRL for
//! that issuer allows it; an expired CRL is still used (what it lists
//! stays revoked) and [`Crl::is_expired`] lets the daemon warn about it.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::dn::dn_to_string;
use super::PkiError;

/// One loaded CRL.
#[derive(Clone, Debug)]
pub struct Crl {
    /// For the chain check.
    pub(super) webpki: Arc<CertRevocationList<'static>>,
    /// The issuer's DN (DER) and as strongSwan prints it.
    pub issuer_der: Vec<u8>,
    pub issuer: String,
    /// thisUpdate and nextUpdate, Unix seconds.
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// The serial numbers it lists (DER integer contents, big-endian).
    pub revoked: Vec<Vec<u8>>,
    /// Its cRLNumber, hex, if any.
    pub number: Option<String>,
}

impl Crl {
    /// Parse one DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Crl, PkiError> {
        let (rest, c) = CertificateRevocationList::from_der(der)
            .map_err(|e| PkiError::BadCrl(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::BadCrl("trailing data after the CRL".into()));
        }
        let owned = OwnedCertRevocationList::from_der(der)
            .map_err(|e| PkiError::BadCrl(format!("{e:?}")))?;
        let issuer_der = c.issuer().as_raw().to_vec();
        Ok(Crl {
            webpki: Arc::new(CertRevocationList::Owned(owned)),
            issuer: dn_to_string(&issuer_der),
            issuer_der,
            this_update: c.last_update().timestamp(),
            next_update: c.next_update().map(|t| t.timestamp()),
            revoked: c
                .iter_revoked_certificates()
                .map(|r| strip_sign(r.raw_serial()).to_vec())
                .collect(),
            number: c.crl_number().map(|n| hex_colons(&n.to_bytes_be())),
        })
    }

    /// Its nextUpdate has passed at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.next_update.is_some_and(|n| n < now)
    }

    /// Does this CRL list `cert` (same issuer, its serial among the
    /// revoked)? The CRL's signature is checked when a chain is validated,
    /// not here.
    pub fn lists(&self, cert: &[u8]) -> bool {
        let Ok((_, c)) = X509Certificate::from_der(cert) else {
            return false;
        };
        super::dn::dn_matches(&self.issuer_der, c.tbs_certificate.issuer.as_raw())
            && self
                .revoked
                .iter()
                .any(|s| s.as_slice() == strip_sign(c.tbs_certificate.raw_serial()))
    }
}

/// The CRLs of a PEM file (`X509 CRL`, one or more) or of a DER file.
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<Crl>, PkiError> {
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::BadCrl(format!("PEM: {e}")))?;
    if pem.is_empty() {
        if bytes.windows(5).any(|w| w == b"-----") {
            return Err(PkiError::BadCrl(
                "no PEM 'X509 CRL' block (is this a CRL?)".into(),
            ));
        }
        return Crl::from_der(bytes).map(|c| vec![c]).map_err(|e| match e {
            PkiError::BadCrl(why) => {
                PkiError::BadCrl(format!("neither PEM 'X509 CRL' nor a DER CRL ({why})"))
            }
            e => e,
        });
    }
    pem.iter().map(|d| Crl::from_der(d)).collect()
}

/// Keep, per issuer, only the most recent CRL (latest thisUpdate; on a tie
/// the later one loaded), as a CA's new CRL supersedes its old one.
pub fn newest_per_issuer(crls: Vec<Crl>) -> Vec<Crl> {
    let mut out: Vec<Crl> = Vec::new();
    for c in crls {
        match out.iter_mut().find(|o| o.issuer_der == c.issuer_der) {
            Some(o) if c.this_update >= o.this_update => *o = c,
            Some(_) => {}
            None => out.push(c),
        }
    }
    out
}

/// The position in `chain` of the first certificate a CRL among `crls`
/// lists, if any.
pub fn revoked_index(crls: &[Crl], chain: &[CertificateDer<'_>]) -> Option<usize> {
    chain
        .iter()
        .position(|c| crls.iter().any(|crl| crl.lists(c)))
}

/// A DER INTEGER's content without the leading zero that keeps it positive.
fn strip_sign(s: &[u8]) -> &[u8] {
    match s {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => s,
    }
}

/// Hex with ':' between bytes, as strongSwan prints serials.
pub fn hex_colons(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
