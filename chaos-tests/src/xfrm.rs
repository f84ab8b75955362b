//! The kernel's IPsec SAs and policies as `ip -s xfrm state` and `ip xfrm
//! policy` show them: what a test reads to prove that real kernel ESP (not a
//! userspace stand-in) carried its traffic, and how much, and which objects
//! a daemon installed. Keys are parsed away, never kept.
//!
//! vpnd's XFRM dataplane gives everything it installs a reqid in its own
//! range, `VPND_REQID_BASE | n` with n < 2^16 (`is_vpnd_reqid`), so a test
//! can tell vpnd's objects from charon's or from ones it added itself.

use std::collections::BTreeMap;

use crate::lab::{Lab, Ns};

/// The first reqid of vpnd's range (0x76700000; `ip` prints 1987051520).
pub const VPND_REQID_BASE: u32 = 0x7670_0000;

/// True for a reqid in vpnd's range (`VPND_REQID_BASE | n`, n < 2^16).
pub fn is_vpnd_reqid(reqid: u32) -> bool {
    reqid & 0xffff_0000 == VPND_REQID_BASE
}

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
    /// `mark 0x2a/0xff` as printed, if any.
    pub mark: Option<String>,
    /// `if_id`, if any.
    pub if_id: Option<u32>,
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
            Some("mark") => st.mark = words.get(1).map(|s| s.to_string()),
            Some("if_id") => st.if_id = words.get(1).and_then(|v| parse_u32(v)),
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

/// One XFRM policy (SPD entry), from `ip xfrm policy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XfrmPolicy {
    /// Selector: source and destination prefixes (`198.19.1.0/24`).
    pub src: String,
    pub dst: String,
    /// Further selector words (`proto tcp sport 80`, `dev xfrm1`), if any.
    pub sel_extra: String,
    /// `in`, `out` or `fwd`.
    pub dir: String,
    /// A per-socket policy (`socket in|out`), not an SPD entry.
    pub socket: bool,
    /// `allow` unless `ip` printed another action (`block`).
    pub action: String,
    pub priority: u32,
    /// `mark 0x2a/0xff` as printed, if any.
    pub mark: Option<String>,
    pub if_id: Option<u32>,
    /// The templates: with none, the policy passes traffic in clear (or
    /// blocks it); with one, it asks for that SA.
    pub tmpls: Vec<XfrmTmpl>,
}

/// One template of a policy: the SA a packet matching the policy needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XfrmTmpl {
    /// Outer addresses (empty for transport mode templates without them).
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub reqid: u32,
    pub mode: String,
    /// `required` unless `ip` printed `level use`.
    pub level: String,
}

impl XfrmPolicy {
    /// The reqids of its templates.
    pub fn reqids(&self) -> impl Iterator<Item = u32> + '_ {
        self.tmpls.iter().map(|t| t.reqid)
    }

    /// True when one of its templates carries a reqid in vpnd's range.
    pub fn is_vpnd(&self) -> bool {
        self.reqids().any(is_vpnd_reqid)
    }
}

/// The policies in `ns` (`ip xfrm policy`); panics if `ip` fails.
pub fn policies(lab: &Lab, ns: &Ns) -> Vec<XfrmPolicy> {
    let out = lab.exec(ns, &["ip", "xfrm", "policy"]);
    parse_policies(&String::from_utf8_lossy(&out.stdout))
}

/// Parse `ip xfrm policy` output (with or without `-s`): each policy starts
/// with an unindented `src A dst B` line, its `dir` or `socket` line, then
/// optional `mark`, `tmpl` (with an indented `proto` line and maybe a
/// `level` line) and `if_id` lines.
pub fn parse_policies(text: &str) -> Vec<XfrmPolicy> {
    let mut out: Vec<XfrmPolicy> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !line.starts_with(char::is_whitespace) && words.first() == Some(&"src") {
            let extra: Vec<&str> = words.iter().skip(4).copied().collect();
            out.push(XfrmPolicy {
                src: value(&words, "src").unwrap_or_default().into(),
                dst: value(&words, "dst").unwrap_or_default().into(),
                sel_extra: extra.join(" "),
                action: "allow".into(),
                ..Default::default()
            });
            continue;
        }
        let Some(p) = out.last_mut() else {
            continue;
        };
        match words.first().copied() {
            Some(kind @ ("dir" | "socket")) => {
                p.socket = kind == "socket";
                p.dir = words.get(1).unwrap_or(&"").to_string();
                if let Some(a) = value(&words, "action") {
                    p.action = a.into();
                }
                p.priority = value(&words, "priority")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
            Some("mark") => p.mark = words.get(1).map(|s| s.to_string()),
            Some("if_id") => p.if_id = words.get(1).and_then(|v| parse_u32(v)),
            Some("tmpl") => p.tmpls.push(XfrmTmpl {
                src: value(&words, "src").unwrap_or_default().into(),
                dst: value(&words, "dst").unwrap_or_default().into(),
                level: "required".into(),
                ..Default::default()
            }),
            Some("proto") => {
                if let Some(t) = p.tmpls.last_mut() {
                    t.proto = value(&words, "proto").unwrap_or_default().into();
                    t.reqid = value(&words, "reqid")
                        .and_then(|r| r.split('(').next()?.parse().ok())
                        .unwrap_or(0);
                    t.mode = value(&words, "mode").unwrap_or_default().into();
                }
            }
            Some("level") => {
                if let Some(t) = p.tmpls.last_mut() {
                    t.level = words.get(1).unwrap_or(&"").to_string();
                }
            }
            _ => {}
        }
    }
    out
}

/// What one namespace's kernel holds: states and policies, read together.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub states: Vec<XfrmState>,
    pub policies: Vec<XfrmPolicy>,
}

impl Snapshot {
    /// `ip -s xfrm state` and `ip xfrm policy` in `ns`.
    pub fn take(lab: &Lab, ns: &Ns) -> Snapshot {
        Snapshot {
            states: states(lab, ns),
            policies: policies(lab, ns),
        }
    }

    /// States with a reqid in vpnd's range.
    pub fn vpnd_states(&self) -> Vec<&XfrmState> {
        self.states
            .iter()
            .filter(|s| is_vpnd_reqid(s.reqid))
            .collect()
    }

    /// SPD policies (not per-socket ones) with a template in vpnd's range.
    pub fn vpnd_policies(&self) -> Vec<&XfrmPolicy> {
        self.policies
            .iter()
            .filter(|p| !p.socket && p.is_vpnd())
            .collect()
    }

    /// `(states, policies)` carrying `reqid`.
    pub fn count(&self, reqid: u32) -> (usize, usize) {
        (
            self.states.iter().filter(|s| s.reqid == reqid).count(),
            self.policies
                .iter()
                .filter(|p| p.reqids().any(|r| r == reqid))
                .count(),
        )
    }

    /// `(states, policies)` per reqid in vpnd's range.
    pub fn vpnd_counts(&self) -> BTreeMap<u32, (usize, usize)> {
        let mut m: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for s in self.vpnd_states() {
            m.entry(s.reqid).or_default().0 += 1;
        }
        for p in self.vpnd_policies() {
            for r in p.reqids().filter(|r| is_vpnd_reqid(*r)) {
                m.entry(r).or_default().1 += 1;
            }
        }
        m
    }

    /// Policies and states with the same selector, direction (policies) or
    /// SPI and destination (states) more than once: what a restart that
    /// re-installs without cleaning up would leave behind.
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for p in self.policies.iter().filter(|p| !p.socket) {
            let key = format!(
                "policy {} -> {} {} dir {} mark {:?} if_id {:?}",
                p.src, p.dst, p.sel_extra, p.dir, p.mark, p.if_id
            );
            *seen.entry(key).or_default() += 1;
        }
        for s in &self.states {
            let key = format!("state {} -> {} {} spi {:08x}", s.src, s.dst, s.proto, s.spi);
            *seen.entry(key).or_default() += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, n)| format!("{k} x{n}"))
            .collect()
    }

    /// One line per state and policy: for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for st in &self.states {
            s.push_str(&format!(
                "state {} -> {} {} spi {:08x} reqid {:#x} {} encap {:?} mark {:?} if_id {:?}: {} bytes, {} packets\n",
                st.src, st.dst, st.proto, st.spi, st.reqid, st.mode, st.encap, st.mark, st.if_id, st.bytes, st.packets
            ));
        }
        for p in &self.policies {
            let tmpls: Vec<String> = p
                .tmpls
                .iter()
                .map(|t| {
                    format!(
                        "{} {}->{} reqid {:#x} {} {}",
                        t.proto, t.src, t.dst, t.reqid, t.mode, t.level
                    )
                })
                .collect();
            s.push_str(&format!(
                "policy {}{} {} -> {} {} prio {} {} mark {:?} if_id {:?} tmpl [{}]\n",
                if p.socket { "socket " } else { "" },
                p.dir,
                p.src,
                p.dst,
                p.sel_extra,
                p.priority,
                p.action,
                p.mark,
                p.if_id,
                tmpls.join("; ")
            ));
        }
        s
    }
}

/// `0x2a` or `42`.
fn parse_u32(v: &str) -> Option<u32> {
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
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
                mark: None,
                if_id: None,
            }
        );
        assert_eq!(s[1].mode, "transport");
        assert_eq!(s[1].encap, None);
        assert_eq!((s[1].spi, s[1].bytes, s[1].failed), (0x1235, 0, 0));
    }

    #[test]
    fn parse_states_of_nothing_is_empty() {
        assert!(parse_states("").is_empty());
        assert!(parse_policies("").is_empty());
    }

    #[test]
    fn parse_states_reads_mark_and_if_id() {
        let text = "src 198.18.1.1 dst 198.18.1.2
\tproto esp spi 0x00001234(4660) reqid 1987051521(0x76700001) mode tunnel
\treplay-window 0 seq 0x00000000 flag  (0x00000000)
\tmark 0x2a/0xff 
\taead rfc4106(gcm(aes)) 0x11 (288 bits) 128
\tif_id 0x2a
\tlifetime current:
\t  0(bytes), 0(packets)
";
        let s = parse_states(text);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].reqid, VPND_REQID_BASE | 1);
        assert_eq!(s[0].mark.as_deref(), Some("0x2a/0xff"));
        assert_eq!(s[0].if_id, Some(42));
    }

    // From a 6.1 kernel with iproute2 6.1: an SPD policy with mark, if_id
    // and `level use`, a plain one, per-socket bypass policies, and an IPv6
    // policy; then the same with -s.
    const POLICIES: &str = "src 198.19.2.0/24 dst 198.19.1.0/24 
\tdir fwd priority 375423 ptype main 
\tmark 0x2a/0xff 
\ttmpl src 198.18.1.2 dst 198.18.1.1
\t\tproto esp reqid 1987051521 mode tunnel
\t\tlevel use 
\tif_id 0x2a
src 198.19.1.0/24 dst 198.19.2.0/24 
\tdir out priority 0 ptype main 
\ttmpl src 198.18.1.1 dst 198.18.1.2
\t\tproto esp reqid 1 mode tunnel
src 0.0.0.0/0 dst 0.0.0.0/0 
\tsocket in priority 0 ptype main 
src 0.0.0.0/0 dst 0.0.0.0/0 
\tsocket out priority 0 ptype main 
src 2001:db8:12::/64 dst 2001:db8:11::/64 proto tcp 
\tdir in action block priority 7 ptype main 
";

    const POLICIES_STATS: &str = "src 2001:db8:11::/64 dst 2001:db8:12::/64 uid 0
\tdir in action allow index 8 priority 0 ptype main share any flag  (0x00000000)
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\tlifetime current:
\t  0(bytes), 0(packets)
\t  add 2026-12-01 16:57:36 use -
\ttmpl src 2001:db8:1::2 dst 2001:db8:1::1
\t\tproto esp spi 0x00000000(0) reqid 1987051522(0x76700002) mode tunnel
\t\tlevel required share any 
\t\tenc-mask ffffffff auth-mask ffffffff comp-mask ffffffff
";

    #[test]
    fn parse_policies_reads_selectors_templates_marks_and_socket_policies() {
        let p = parse_policies(POLICIES);
        assert_eq!(p.len(), 5, "{p:#?}");
        assert_eq!(
            p[0],
            XfrmPolicy {
                src: "198.19.2.0/24".into(),
                dst: "198.19.1.0/24".into(),
                sel_extra: String::new(),
                dir: "fwd".into(),
                socket: false,
                action: "allow".into(),
                priority: 375423,
                mark: Some("0x2a/0xff".into()),
                if_id: Some(42),
                tmpls: vec![XfrmTmpl {
                    src: "198.18.1.2".into(),
                    dst: "198.18.1.1".into(),
                    proto: "esp".into(),
                    reqid: VPND_REQID_BASE | 1,
                    mode: "tunnel".into(),
                    level: "use".into(),
                }],
            }
        );
        assert!(p[0].is_vpnd());
        assert_eq!((p[1].dir.as_str(), p[1].tmpls[0].reqid), ("out", 1));
        assert_eq!(p[1].tmpls[0].level, "required");
        assert!(!p[1].is_vpnd());
        assert!(p[2].socket && p[3].socket);
        assert_eq!((p[2].dir.as_str(), p[3].dir.as_str()), ("in", "out"));
        assert!(p[2].tmpls.is_empty());
        assert_eq!(p[4].action, "block");
        assert_eq!(p[4].sel_extra, "proto tcp");
        assert_eq!(p[4].priority, 7);

        let s = parse_policies(POLICIES_STATS);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].dir, "in");
        assert_eq!(s[0].sel_extra, "uid 0");
        assert_eq!(s[0].tmpls[0].reqid, VPND_REQID_BASE | 2);
        assert_eq!(s[0].tmpls[0].src, "2001:db8:1::2");
    }

    #[test]
    fn snapshot_counts_by_reqid_and_finds_duplicates() {
        let mut states = parse_states(SAMPLE);
        states[0].reqid = VPND_REQID_BASE | 1;
        let snap = Snapshot {
            states,
            policies: parse_policies(POLICIES),
        };
        assert_eq!(snap.vpnd_states().len(), 1);
        assert_eq!(snap.vpnd_policies().len(), 1);
        assert_eq!(snap.count(VPND_REQID_BASE | 1), (1, 1));
        assert_eq!(snap.count(2), (1, 0));
        assert_eq!(
            snap.vpnd_counts(),
            BTreeMap::from([(VPND_REQID_BASE | 1, (1, 1))])
        );
        assert!(snap.duplicates().is_empty(), "{:?}", snap.duplicates());
        let mut twice = snap.clone();
        twice.policies.push(snap.policies[1].clone());
        twice.states.push(snap.states[0].clone());
        assert_eq!(twice.duplicates().len(), 2, "{:?}", twice.duplicates());
        assert!(snap.describe().contains("reqid 0x76700001"));
    }

    #[test]
    fn vpnd_reqid_range() {
        assert!(is_vpnd_reqid(0x7670_0000));
        assert!(is_vpnd_reqid(0x7670_ffff));
        assert!(is_vpnd_reqid(1_987_051_521));
        assert!(!is_vpnd_reqid(0x7671_0000));
        assert!(!is_vpnd_reqid(1));
    }
}
