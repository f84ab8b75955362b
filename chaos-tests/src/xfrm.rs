//! The kernel's IPsec SAs as `ip -s xfrm state` shows them: what a test
//! reads to prove that real kernel ESP (not a userspace stand-in) carried
//! its traffic, and how much. Keys are parsed away, never kept.

use crate::lab::{Lab, Ns};

/// One XFRM state (SA).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XfrmState {
    /// Outer source and destination addresses.
    pub src: String,
    pub dst: String,
    /// `esp`, `ah`, `comp`, ...
    pub proto: String,
    pub spi: u32,
    pub reqid: u32,
    /// `tunnel`, `transport`, ...
    pub mode: String,
    /// The AEAD algorithm, e.g. `rfc4106(gcm(aes))`, when it has one.
    pub aead: Option<String>,
    /// UDP encapsulation, e.g. `espinudp sport 4500 dport 4500`, if any.
    pub encap: Option<String>,
    /// `lifetime current`: bytes and packets through this SA so far.
    pub bytes: u64,
    pub packets: u64,
    /// `stats`: packets dropped by the replay check, and those that failed
    /// (integrity check, decryption).
    pub replay_drops: u64,
    pub failed: u64,
}

/// The states in `ns` (`ip -s xfrm state`); panics if `ip` fails.
pub fn states(lab: &Lab, ns: &Ns) -> Vec<XfrmState> {
    let out = lab.exec(ns, &["ip", "-s", "xfrm", "state"]);
    parse_states(&String::from_utf8_lossy(&out.stdout))
}

/// Parse `ip -s xfrm state` output: each state starts with an unindented
/// `src A dst B` line; the rest is indented.
pub fn parse_states(text: &str) -> Vec<XfrmState> {
    let mut states: Vec<XfrmState> = Vec::new();
    let mut in_current = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !line.starts_with(char::is_whitespace) && words.first() == Some(&"src") {
            states.push(XfrmState {
                src: value(&words, "src").unwrap_or_default().into(),
                dst: value(&words, "dst").unwrap_or_default().into(),
                ..Default::default()
            });
            in_current = false;
            continue;
        }
        let Some(st) = states.last_mut() else {
            continue;
        };
        match words.first().copied() {
            Some("proto") => {
                st.proto = value(&words, "proto").unwrap_or_default().into();
                st.spi = value(&words, "spi").map(hex_before_paren).unwrap_or(0);
                st.reqid = value(&words, "reqid")
                    .and_then(|r| r.split('(').next()?.parse().ok())
                    .unwrap_or(0);
                st.mode = value(&words, "mode").unwrap_or_default().into();
            }
            // The key (words[2]) is deliberately not kept.
            Some("aead") => st.aead = words.get(1).map(|s| s.to_string()),
            Some("encap") => st.encap = Some(words[2..].join(" ")),
            Some("lifetime") => in_current = words.get(1) == Some(&"current:"),
            Some(w) if in_current && w.ends_with("(bytes),") => {
                st.bytes = number_before_paren(w);
                st.packets = words.get(1).map_or(0, |p| number_before_paren(p));
                in_current = false;
            }
            Some("replay-window") if words.contains(&"failed") => {
                st.replay_drops = value(&words, "replay").map_or(0, |v| v.parse().unwrap_or(0));
                st.failed = value(&words, "failed").map_or(0, |v| v.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    states
}

/// The word after `key`.
fn value<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| *w == key)?;
    words.get(i + 1).copied()
}

/// `0x00001234(4660)` → 0x1234.
fn hex_before_paren(s: &str) -> u32 {
    let h = s.split('(').next().unwrap_or("");
    u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap_or(0)
}

/// `1234(bytes),` → 1234.
fn number_before_paren(s: &str) -> u64 {
    s.split('(')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "src 198.18.1.2 dst 198.18.1.1
\tproto esp spi 0xc1f00a17(3253734935) reqid 1(0x00000001) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\taead rfc4106(gcm(aes)) 0x0102030405060708091011121314151617181920212223242526272829303132aabbccdd (288 bits) 128
\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0
\tanti-replay context: seq 0x0, oseq 0x5, bitmap 0x00000000
\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\t  limit: soft (INF)(packets), hard (INF)(packets)
\t  expire add: soft 0(sec), hard 0(sec)
\t  expire use: soft 0(sec), hard 0(sec)
\tlifetime current:
\t  2104(bytes), 5(packets)
\t  add 2026-11-22 23:35:45 use 2026-11-22 23:35:47
\tstats:
\t  replay-window 0 replay 2 failed 1
src 198.18.1.1 dst 198.18.1.2
\tproto esp spi 0x00001235(4661) reqid 2(0x00000002) mode transport
\treplay-window 0 seq 0x00000000 flag  (0x00000000)
\taead rfc7539esp(chacha20,poly1305) 0x01 (288 bits) 128
\tlifetime current:
\t  0(bytes), 0(packets)
\tstats:
\t  replay-window 0 replay 0 failed 0
";

    #[test]
    fn parse_states_reads_addresses_mode_encap_and_counters() {
        let s = parse_states(SAMPLE);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            XfrmState {
                src: "198.18.1.2".into(),
                dst: "198.18.1.1".into(),
                proto: "esp".into(),
                spi: 0xc1f0_0a17,
                reqid: 1,
                mode: "tunnel".into(),
                aead: Some("rfc4106(gcm(aes))".into()),
                encap: Some("espinudp sport 4500 dport 4500 addr 0.0.0.0".into()),
                bytes: 2104,
                packets: 5,
                replay_drops: 2,
                failed: 1,
            }
        );
        assert_eq!(s[1].mode, "transport");
        assert_eq!(s[1].encap, None);
        assert_eq!((s[1].spi, s[1].bytes, s[1].failed), (0x1235, 0, 0));
    }

    #[test]
    fn parse_states_of_nothing_is_empty() {
        assert!(parse_states("").is_empty());
    }
}
