//! Conversions both formats share: identities, traffic selectors,
//! addresses, proposals, times and sizes, from strongSwan's forms into the
//! ones vpnd's configuration reads. Each returns why when vpnd cannot carry
//! the value.

use std::net::IpAddr;
use std::time::Duration;

use ike::proposal::ProposalSpec;

/// A strongSwan identity as vpnd writes it. `remote` allows `%any`.
pub(crate) fn identity(s: &str, remote: bool) -> Result<String, String> {
    let s = s.trim();
    if matches!(s, "%any" | "%any4" | "%any6" | "*") {
        return if remote {
            Ok("%any".into())
        } else {
            Err(format!("'{s}' is not an identity vpnd can send"))
        };
    }
    if s.contains('*') {
        return Err(format!(
            "identity '{s}' has a wildcard: vpnd matches identities exactly (not supported yet)"
        ));
    }
    let converted = match s.split_once(':') {
        Some((kind, rest)) if s.parse::<IpAddr>().is_err() => match kind {
            "fqdn" | "dns" => format!("@{rest}"),
            "email" | "rfc822" | "userfqdn" if rest.contains('@') => rest.to_string(),
            "ipv4" | "ipv6" | "ip" if rest.parse::<IpAddr>().is_ok() => rest.to_string(),
            "keyid" if rest.starts_with('#') => format!("@{rest}"),
            "asn1dn" | "dn" => {
                return Err(format!(
                    "identity '{s}' is a distinguished name: that needs certificates (not supported yet)"
                ))
            }
            _ => {
                return Err(format!(
                    "identity type '{kind}:' is not supported by vpnd yet"
                ))
            }
        },
        _ => s.to_string(),
    };
    if converted.contains('=') {
        return Err(format!(
            "identity '{s}' is a distinguished name: that needs certificates (not supported yet)"
        ));
    }
    ike::config::parse_identity(&converted).map_err(|e| e.to_string())?;
    Ok(converted)
}

/// strongSwan's comma-separated lists: split, trimmed, empty items dropped.
pub(crate) fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// One address of `local_addrs`/`remote_addrs`/`left`/`right`: an IP
/// address or `%any` (as `None`).
pub(crate) fn address(s: &str) -> Result<Option<IpAddr>, String> {
    match s {
        "%any" | "%any4" | "%any6" | "0.0.0.0" | "::" => Ok(None),
        _ => s.parse::<IpAddr>().map(Some).map_err(|_| {
            if s.contains('/') || s.contains('-') {
                format!("address '{s}' is a subnet or range: vpnd needs single addresses (not supported yet)")
            } else if s.starts_with('%') {
                format!("'{s}' is not supported by vpnd yet: name the address")
            } else {
                format!("'{s}' is a host name: vpnd needs IP addresses (not supported yet)")
            }
        }),
    }
}

/// A traffic selector. `dynamic` is the IKE address of that side when it
/// is known, for strongSwan's `dynamic` (the default).
pub(crate) fn selectors(s: &str, dynamic: Option<IpAddr>) -> Result<Vec<String>, String> {
    let s = s.trim();
    let (net, extra) = match s.find('[') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let nets: Vec<String> = match net {
        "dynamic" => match dynamic {
            Some(IpAddr::V4(a)) => vec![format!("{a}/32")],
            Some(IpAddr::V6(a)) => vec![format!("{a}/128")],
            None => {
                return Err(
                    "'dynamic' (the tunnel's own address) needs one known IKE address: \
                     name the subnet, or give that side a single address"
                        .to_string(),
                )
            }
        },
        "%any" | "" => vec!["0.0.0.0/0".into(), "::/0".into()],
        "%any4" => vec!["0.0.0.0/0".into()],
        "%any6" => vec!["::/0".into()],
        n if n.contains('-') && !n.contains('/') => {
            return Err(format!(
                "'{s}': address ranges are not supported by vpnd yet (use subnets)"
            ))
        }
        n => vec![n.to_string()],
    };
    let mut out = Vec::new();
    for n in nets {
        let ts = format!("{n}{extra}");
        ike::ts::parse_ts(&ts).map_err(|e| e.to_string())?;
        out.push(ts);
    }
    Ok(out)
}

/// The proposals of a comma-separated list vpnd can use, and why each of
/// the others cannot be. A trailing `!` (ipsec.conf's strict marker) is
/// removed and reported by the caller.
pub(crate) fn proposals(s: &str, esp: bool) -> (Vec<String>, Vec<String>) {
    let s = s.trim().trim_end_matches('!');
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for p in list(s) {
        let parsed = if esp {
            ProposalSpec::parse_esp(&p)
        } else {
            ProposalSpec::parse_ike(&p)
        };
        match parsed {
            Ok(_) => ok.push(p),
            Err(e) => bad.push(e.to_string()),
        }
    }
    (ok, bad)
}

/// strtoul with base 0: `0x` hex, a leading `0` octal, else decimal.
/// Returns the number and the rest.
fn leading_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim_start();
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') && s[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let n = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if n == 0 {
        return None;
    }
    let v = u64::from_str_radix(&digits[..n], radix).ok()?;
    Some((v, &digits[n..]))
}

/// A strongSwan time: a number with an optional `s`, `m`, `h` or `d`.
pub(crate) fn time(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid time '{s}': expected a number with s, m, h or d");
    let (n, rest) = leading_number(s).ok_or_else(bad)?;
    let mult = match rest.trim() {
        "" | "s" | "S" => 1,
        "m" | "M" => 60,
        "h" | "H" => 3600,
        "d" | "D" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid time '{s}': too large"))
}

/// A strongSwan volume: a number with an optional `k`, `m` or `g` (powers
/// of 1024).
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid number '{s}': expected a number, optionally with k, m or g");
    let (n, rest) = leading_number(s).ok_or_else(bad)?;
    let mult: u64 = match rest.trim() {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    Ok(n.saturating_mul(mult))
}

/// A strongSwan boolean.
pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "enabled" | "1" => Ok(true),
        "no" | "false" | "disabled" | "0" => Ok(false),
        _ => Err(format!("invalid value '{s}': expected yes or no")),
    }
}

/// A whole number.
pub(crate) fn number(s: &str) -> Result<u32, String> {
    leading_number(s)
        .filter(|(_, rest)| rest.trim().is_empty())
        .and_then(|(n, _)| u32::try_from(n).ok())
        .ok_or_else(|| format!("invalid number '{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(identity("moon.example", false).unwrap(), "moon.example");
        assert_eq!(identity("@moon.example", false).unwrap(), "@moon.example");
        assert_eq!(
            identity("fqdn:moon.example", false).unwrap(),
            "@moon.example"
        );
        assert_eq!(
            identity("carol@example.org", false).unwrap(),
            "carol@example.org"
        );
        assert_eq!(
            identity("email:carol@example.org", false).unwrap(),
            "carol@example.org"
        );
        assert_eq!(identity("198.18.0.1", false).unwrap(), "198.18.0.1");
        assert_eq!(identity("2001:db8::1", false).unwrap(), "2001:db8::1");
        assert_eq!(identity("keyid:#0a0b", false).unwrap(), "@#0a0b");
        assert_eq!(identity("%any", true).unwrap(), "%any");
        assert!(identity("%any", false).is_err());
        assert!(identity("C=CH, O=strongSwan, CN=moon", true)
            .unwrap_err()
            .contains("distinguished name"));
        assert!(identity("*@example.org", true)
            .unwrap_err()
            .contains("wildcard"));
        assert!(identity("asn1dn:#3000", true).is_err());
    }

    #[test]
    fn addresses_and_selectors() {
        assert_eq!(
            address("198.18.0.1").unwrap(),
            Some("198.18.0.1".parse().unwrap())
        );
        assert_eq!(address("%any").unwrap(), None);
        assert!(address("vpn.example.org")
            .unwrap_err()
            .contains("host name"));
        assert!(address("198.18.0.0/24").unwrap_err().contains("subnet"));
        assert_eq!(selectors("10.1.0.0/16", None).unwrap(), ["10.1.0.0/16"]);
        assert_eq!(
            selectors("10.1.0.0/16[tcp/443]", None).unwrap(),
            ["10.1.0.0/16[tcp/443]"]
        );
        assert_eq!(
            selectors("dynamic", Some("198.18.0.1".parse().unwrap())).unwrap(),
            ["198.18.0.1/32"]
        );
        assert_eq!(
            selectors("dynamic[udp/500]", Some("2001:db8::1".parse().unwrap())).unwrap(),
            ["2001:db8::1/128[udp/500]"]
        );
        assert!(selectors("dynamic", None).is_err());
        assert_eq!(selectors("%any", None).unwrap(), ["0.0.0.0/0", "::/0"]);
        assert!(selectors("10.0.0.1-10.0.0.9", None)
            .unwrap_err()
            .contains("ranges"));
        assert!(selectors("10.0.0.0/33", None).is_err());
    }

    #[test]
    fn proposal_lists() {
        let (ok, bad) = proposals(
            "aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048, default!",
            false,
        );
        assert_eq!(ok, ["aes256gcm16-prfsha256-x25519", "default"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        let (ok, bad) = proposals("aes128gcm16-esn,3des-md5", true);
        assert_eq!(ok, ["aes128gcm16-esn"]);
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn times_sizes_booleans() {
        assert_eq!(time("30").unwrap(), Duration::from_secs(30));
        assert_eq!(time("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(time("4h").unwrap(), Duration::from_secs(4 * 3600));
        assert_eq!(time("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(time("10 m").unwrap(), Duration::from_secs(600));
        assert_eq!(time("0x10").unwrap(), Duration::from_secs(16));
        assert!(time("4w").is_err());
        assert!(time("").is_err());
        assert_eq!(size("1k").unwrap(), 1024);
        assert_eq!(size("2M").unwrap(), 2 << 20);
        assert_eq!(size("500").unwrap(), 500);
        assert!(size("5x").is_err());
        assert!(boolean("Yes").unwrap());
        assert!(!boolean("disabled").unwrap());
        assert!(boolean("maybe").is_err());
        assert_eq!(number("5").unwrap(), 5);
        assert!(number("5s").is_err());
    }
}
