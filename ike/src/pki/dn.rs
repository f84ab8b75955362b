//! Distinguished names as strongSwan writes them ("C=CH, O=strongSwan,
//! CN=moon"): parsing to DER for ID_DER_ASN1_DN, printing, and matching a
//! received DN against a configured one in which a value `*` matches any.

use super::sig::der_read;

/// Attribute short names and their OID contents.
const ATTRS: &[(&str, &[u8])] = &[
    ("C", &[0x55, 4, 6]),
    ("ST", &[0x55, 4, 8]),
    ("L", &[0x55, 4, 7]),
    ("O", &[0x55, 4, 10]),
    ("OU", &[0x55, 4, 11]),
    ("CN", &[0x55, 4, 3]),
    ("SN", &[0x55, 4, 4]),
    ("serialNumber", &[0x55, 4, 5]),
    ("T", &[0x55, 4, 12]),
    ("G", &[0x55, 4, 42]),
    ("E", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1]),
    (
        "DC",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 1, 0x19],
    ),
];

const ALIASES: &[(&str, &str)] = &[("emailAddress", "E"), ("S", "ST"), ("N", "SN")];

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![tag];
    match n {
        0..=0x7f => v.push(n as u8),
        0x80..=0xff => v.extend([0x81, n as u8]),
        _ => v.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(body);
    v
}

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// Parse "C=CH, O=strongSwan, CN=*" into the DER of an X.501 Name.
pub fn parse_dn(s: &str) -> Result<Vec<u8>, &'static str> {
    let mut rdns = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').ok_or("a DN part lacks '='")?;
        let (k, v) = (k.trim(), v.trim());
        let k = ALIASES
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(k))
            .map_or(k, |(_, n)| n);
        let oid = ATTRS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, o)| *o)
            .ok_or(
                "unknown DN attribute (use C, ST, L, O, OU, CN, SN, serialNumber, T, G, E, DC)",
            )?;
        if v.is_empty() {
            return Err("empty DN value");
        }
        let tag = if k == "E" || k == "DC" {
            0x16
        } else if printable(v) {
            0x13
        } else {
            0x0c
        };
        let atv = tlv(0x30, &[tlv(6, oid), tlv(tag, v.as_bytes())].concat());
        rdns.extend(tlv(0x31, &atv));
    }
    if rdns.is_empty() {
        return Err("empty DN");
    }
    Ok(tlv(0x30, &rdns))
}

/// The (OID, value) pairs of a DER Name, in order; `None` if malformed.
fn attributes(der: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let (tag, mut rdns, rest) = der_read(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (t, mut set, r) = der_read(rdns)?;
        if t != 0x31 {
            return None;
        }
        rdns = r;
        while !set.is_empty() {
            let (t, atv, r) = der_read(set)?;
            set = r;
            let (ot, oid, r) = der_read(atv)?;
            let (_, value, _) = der_read(r)?;
            if t != 0x30 || ot != 6 {
                return None;
            }
            out.push((oid, value));
        }
    }
    Some(out)
}

/// Does the DN `der` match `pattern` (same attributes in the same order,
/// values equal ignoring ASCII case, or `*` in the pattern)?
pub fn dn_matches(pattern: &[u8], der: &[u8]) -> bool {
    let (Some(p), Some(d)) = (attributes(pattern), attributes(der)) else {
        return false;
    };
    p.len() == d.len()
        && p.iter()
            .zip(&d)
            .all(|((po, pv), (o, v))| po == o && (*pv == b"*" || pv.eq_ignore_ascii_case(v)))
}

/// Does the DN have a `*` value?
pub(super) fn has_wildcard(der: &[u8]) -> bool {
    attributes(der).is_some_and(|a| a.iter().any(|(_, v)| *v == b"*"))
}

/// A DER Name as strongSwan prints it.
pub fn dn_to_string(der: &[u8]) -> String {
    let Some(attrs) = attributes(der) else {
        return "(malformed DN)".into();
    };
    attrs
        .iter()
        .map(|(oid, v)| {
            let name = ATTRS
                .iter()
                .find(|(_, o)| o == oid)
                .map(|(n, _)| n.to_string())
                .unwrap_or_else(|| oid.iter().map(|b| format!("{b:02x}")).collect());
            format!("{name}={}", String::from_utf8_lossy(v))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_round_trips_and_wildcards_match() {
        let dn = parse_dn("C=CH, O=strongSwan, CN=moon.strongswan.org").unwrap();
        assert_eq!(
            dn_to_string(&dn),
            "C=CH, O=strongSwan, CN=moon.strongswan.org"
        );
        let pat = parse_dn("C=CH, O=strongSwan, CN=*").unwrap();
        assert!(dn_matches(&pat, &dn));
        assert!(!dn_matches(&parse_dn("C=CH, O=other, CN=*").unwrap(), &dn));
        assert!(!dn_matches(&parse_dn("C=CH, O=strongSwan").unwrap(), &dn));
        assert!(
            !dn_matches(&dn, &pat),
            "a literal '*' is not a wildcard in the peer's DN"
        );
    }

    #[test]
    fn bad_dns_are_errors() {
        assert!(parse_dn("C=CH, nonsense").is_err());
        assert!(parse_dn("XX=1").is_err());
        assert!(parse_dn("CN=").is_err());
        assert!(!dn_matches(&[0x30, 0x05, 0x31], &[0x30, 0x00]));
    }
}
