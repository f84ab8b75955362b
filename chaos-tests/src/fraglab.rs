//! A lab whose router drops every IP fragment, for IKE fragmentation
//! (RFC 7383) tests: a (198.18.1.1) — r — b (198.18.2.1), or over IPv6.
//!
//! The router `r` forwards and drops IP fragments before conntrack's
//! defragmentation could see them (an nftables prerouting chain at
//! priority -450: `frag-off & 0x1fff` a later fragment, `frag-off &
//! 0x2000` a first one with more to come), and counts IKE packets longer
//! than `FRAGMENT_SIZE`. The LANs are 198.19.1.0/24 behind a and
//! 198.19.2.0/24 behind b.

use crate::topology::nft;
use crate::{Lab, Ns};

/// a's and b's addresses over IPv4 and over IPv6.
pub const A: &str = "198.18.1.1";
pub const B: &str = "198.18.2.1";
pub const A6: &str = "2001:db8:1::1";
pub const B6: &str = "2001:db8:2::1";
/// vpnd's and charon's default fragment size: no IKE datagram on the
/// wire may make a longer IP packet.
pub const FRAGMENT_SIZE: u64 = 1280;

pub struct FragLab {
    pub lab: Lab,
    pub a: Ns,
    pub r: Ns,
    pub b: Ns,
    /// a's and b's addresses.
    pub addrs: (&'static str, &'static str),
    /// The router's interfaces towards a and towards b.
    pub r_ifs: (String, String),
}

/// The router drops IP fragments of both families before conntrack could
/// reassemble them (priority -450) and, in a chain before that, counts
/// IKE packets longer than `FRAGMENT_SIZE`.
pub fn router_rules() -> String {
    format!(
        "add table inet nofrag
add chain inet nofrag big {{ type filter hook prerouting priority -460; }}
add rule inet nofrag big udp dport {{ 500, 4500 }} meta length > {FRAGMENT_SIZE} counter
add chain inet nofrag pre {{ type filter hook prerouting priority -450; }}
add rule inet nofrag pre ip frag-off & 0x1fff != 0 counter drop
add rule inet nofrag pre ip frag-off & 0x2000 != 0 counter drop
add rule inet nofrag pre exthdr frag exists counter drop
"
    )
}

pub fn lab(tag: &str) -> FragLab {
    lab_of(tag, false)
}

/// a — r — b over IPv4 (198.18.1.0/24, 198.18.2.0/24) or IPv6
/// (2001:db8:1::/64, 2001:db8:2::/64); the LANs are IPv4 either way.
pub fn lab_of(tag: &str, v6: bool) -> FragLab {
    let mut lab = Lab::new(tag);
    let a = lab.ns("a");
    let r = lab.ns("r");
    let b = lab.ns("b");
    let (addrs, gw_a, gw_b, ip, r_ifs) = if v6 {
        let (_, ra) = lab.link(&a, &[&format!("{A6}/64")], &r, &["2001:db8:1::fe/64"]);
        let (rb, _) = lab.link(&r, &["2001:db8:2::fe/64"], &b, &[&format!("{B6}/64")]);
        lab.exec(
            &r,
            &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
        );
        ((A6, B6), "2001:db8:1::fe", "2001:db8:2::fe", "-6", (ra, rb))
    } else {
        let (_, ra) = lab.link(&a, &[&format!("{A}/24")], &r, &["198.18.1.254/24"]);
        let (rb, _) = lab.link(&r, &["198.18.2.254/24"], &b, &[&format!("{B}/24")]);
        lab.exec(&r, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        ((A, B), "198.18.1.254", "198.18.2.254", "-4", (ra, rb))
    };
    lab.exec(&a, &["ip", ip, "route", "add", "default", "via", gw_a]);
    lab.exec(&b, &["ip", ip, "route", "add", "default", "via", gw_b]);
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    nft(&lab, &r, &router_rules());
    FragLab {
        lab,
        a,
        r,
        b,
        addrs,
        r_ifs,
    }
}

impl FragLab {
    /// The sum of the packet counters of one of the router's chains.
    pub fn counted(&self, chain: &str) -> u64 {
        let out = self
            .lab
            .exec(&self.r, &["nft", "list", "chain", "inet", "nofrag", chain]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "packets")?;
                w.next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// IP fragments the router dropped so far.
    pub fn dropped_ip_fragments(&self) -> u64 {
        self.counted("pre")
    }

    /// Lose the first IKE fragment-sized packet (over 1000 bytes, on port
    /// 4500) coming from a and the first one coming from b: one fragment
    /// of the IKE_AUTH request and one of its response. (A quota matches
    /// while a packet still fits in it: 1300 bytes take one such packet.)
    pub fn lose_first_big_packet_each_way(&self) {
        let mut rules = String::from(
            "add chain inet nofrag lose { type filter hook prerouting priority -440; }\n",
        );
        for ifname in [&self.r_ifs.0, &self.r_ifs.1] {
            rules.push_str(&format!(
                "add rule inet nofrag lose iifname \"{ifname}\" udp dport 4500 meta length > 1000 quota until 1300 bytes counter drop\n"
            ));
        }
        nft(&self.lab, &self.r, &rules);
    }

    pub fn ruleset(&self) -> String {
        let out = self.lab.exec(&self.r, &["nft", "list", "ruleset"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// charon's log (`charon-b`) says it split a message and reassembled
    /// one.
    pub fn assert_charon_fragmented(&self) {
        let log = self.lab.log("charon-b");
        assert!(
            log.contains("splitting IKE message") && log.contains("into"),
            "charon did not fragment:\n{log}"
        );
        assert!(
            log.contains("reassembled fragmented IKE message"),
            "charon did not reassemble:\n{log}"
        );
    }

    /// IKE packets longer than `FRAGMENT_SIZE` the router saw.
    pub fn oversized(&self) -> u64 {
        self.counted("big")
    }
}
