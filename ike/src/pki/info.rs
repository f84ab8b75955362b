//! What an operator sees of a certificate (`vpnctl list-certs`).

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::crl::hex_colons;
use super::dn::dn_to_string;
use super::PkiError;

/// A certificate's facts, as strongSwan's `--list-certs` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// subjectAltNames: DNS names, e-mail addresses, IP addresses, URIs.
    pub sans: Vec<String>,
    /// Hex, ':' between bytes.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// "ECDSA P-256", "RSA 3072", "Ed25519", ...
    pub key_type: String,
    /// basicConstraints cA.
    pub ca: bool,
}

/// The facts of one DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let tbs = &c.tbs_certificate;
    let mut sans = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::RFC822Name(d) => sans.push(d.to_string()),
                GeneralName::URI(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(a) => match a.len() {
                    4 => sans.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*a).unwrap_or([0; 4]))
                            .to_string(),
                    ),
                    16 => sans.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*a).unwrap_or([0; 16]))
                            .to_string(),
                    ),
                    _ => {}
                },
                GeneralName::DirectoryName(n) => sans.push(dn_to_string(n.as_raw())),
                _ => {}
            }
        }
    }
    let serial = tbs.raw_serial();
    let serial = match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    Ok(CertInfo {
        subject: dn_to_string(tbs.subject.as_raw()),
        issuer: dn_to_string(tbs.issuer.as_raw()),
        sans,
        serial: hex_colons(serial),
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
        key_type: key_type(&c),
        ca: c.is_ca(),
    })
}

fn key_type(c: &X509Certificate<'_>) -> String {
    let spki = c.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.3.101.112" => return "Ed25519".into(),
        "1.3.101.113" => return "Ed448".into(),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            return match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                Some(o) => format!("ECDSA (curve {o})"),
                None => "ECDSA".into(),
            };
        }
        _ => {}
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(k)) => {
            let kind = if alg == "1.2.840.113549.1.1.10" {
                "RSA-PSS"
            } else {
                "RSA"
            };
            format!("{kind} {}", k.key_size())
        }
        _ => format!("unknown ({alg})"),
    }
}

/// Unix seconds as `2026-12-01T19:50:33Z`.
pub fn utc_string(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_796_154_633), "2026-12-01T19:50:33Z");
    }
}
