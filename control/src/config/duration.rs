//! Durations as written in the configuration and on `vpnctl set`.

use std::time::Duration;

/// Parses "500ms", "30s", "2m", "4h", "1d", "0"; a number without a unit is
/// seconds. The error message quotes the input and says what is expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration '{s}': expected a whole number with a unit ms, s, m, h or d \
             (e.g. \"30s\", \"5m\", \"4h\")"
        )
    };
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit_ms: u64 = match t[digits..].trim_start() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration '{s}': too large"))
}

/// The shortest exact form of `d` in the syntax [`parse_duration`] reads.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.checked_rem(1000) != Some(0) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (s, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("4h", Duration::from_secs(4 * 3600)),
            ("1d", Duration::from_secs(86_400)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(s), Ok(d));
            assert_eq!(format_duration(d), s);
        }
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 10 m "), Ok(Duration::from_secs(600)));
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "s",
            "5x",
            "-5s",
            "1.5h",
            "1h30m",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_duration("18446744073709551615d").unwrap_err(),
            "invalid duration '18446744073709551615d': too large"
        );
    }
}
