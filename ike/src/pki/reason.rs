//! Pieces of the refusal messages an operator reads: which certificate of a
//! chain a validity error is about, and its dates in UTC.

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::dn_to_string;

/// A time as `2026-12-01 19:50:33 UTC`.
pub(super) fn utc(t: UnixTime) -> String {
    let iso = super::info::utc_string(t.as_secs() as i64);
    format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1))
}

/// Which bound of a certificate's validity.
#[derive(Clone, Copy)]
pub(super) enum Bound {
    NotBefore,
    NotAfter,
}

/// Who a validity error is about: "it" (the end entity, `chain[0]`) or
/// "its CA 'DN'" — the first of `chain` then `anchors` whose bound is `at`.
pub(super) fn whose(
    chain: &[CertificateDer<'_>],
    anchors: &[&CertificateDer<'_>],
    bound: Bound,
    at: UnixTime,
) -> String {
    let all = chain.iter().chain(anchors.iter().copied());
    for (i, der) in all.enumerate() {
        let Ok((_, c)) = X509Certificate::from_der(der) else {
            continue;
        };
        let v = c.validity();
        let t = match bound {
            Bound::NotBefore => v.not_before,
            Bound::NotAfter => v.not_after,
        };
        if u64::try_from(t.timestamp()).ok() == Some(at.as_secs()) {
            return if i == 0 {
                "it".into()
            } else {
                format!("its CA '{}'", dn_to_string(c.subject().as_raw()))
            };
        }
    }
    "a certificate of its chain".into()
}

/// The issuer of the last certificate of `chain`, for "unknown CA" errors.
pub(super) fn top_issuer(chain: &[CertificateDer<'_>]) -> Option<String> {
    let (_, c) = X509Certificate::from_der(chain.last()?).ok()?;
    Some(dn_to_string(c.issuer().as_raw()))
}

/// Why `data`, a CERT payload's body, is no certificate: empty, not a DER
/// SEQUENCE, shorter than its DER header says, or else `parse_error`.
pub(super) fn bad_der(data: &[u8], parse_error: &str) -> String {
    let Some((&tag, rest)) = data.split_first() else {
        return "it is empty".into();
    };
    if tag != 0x30 {
        return format!(
            "{} bytes that are not DER (a certificate starts with 0x30, this with 0x{tag:02x})",
            data.len()
        );
    }
    let announced = match rest.split_first() {
        Some((&l, _)) if l < 0x80 => Some(2 + l as usize),
        Some((&l, more)) if (0x81..=0x84).contains(&l) => {
            let n = (l & 0x7f) as usize;
            more.get(..n)
                .map(|b| 2 + n + b.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize))
        }
        _ => None,
    };
    match announced {
        Some(total) if total > data.len() => format!(
            "truncated: {} of the {total} bytes its DER header announces",
            data.len()
        ),
        _ => format!("{} bytes of malformed DER ({parse_error})", data.len()),
    }
}

/// "subjectAltNames: a, b" or "no subjectAltNames".
pub(super) fn alt_names(names: &[String]) -> String {
    if names.is_empty() {
        "no subjectAltNames".into()
    } else {
        format!("subjectAltNames: {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        let at = |s| utc(UnixTime::since_unix_epoch(Duration::from_secs(s)));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_009_843_199), "2001-12-31 23:59:59 UTC");
        assert_eq!(at(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn bad_der_says_what_is_wrong() {
        assert_eq!(bad_der(&[], "e"), "it is empty");
        assert_eq!(
            bad_der(&[0xde; 3], "e"),
            "3 bytes that are not DER (a certificate starts with 0x30, this with 0xde)"
        );
        assert_eq!(
            bad_der(&[0x30, 0x82, 0x01, 0x00, 0x30], "e"),
            "truncated: 5 of the 260 bytes its DER header announces"
        );
        assert_eq!(bad_der(&[0x30, 0x82], "e"), "2 bytes of malformed DER (e)");
        assert_eq!(
            bad_der(&[0x30, 0x01, 0x05], "e"),
            "3 bytes of malformed DER (e)"
        );
    }
}
