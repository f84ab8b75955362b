//! Lab shapes for traffic tests and benchmarks.
//!
//! * Site to site: gateways gw1 (198.18.1.1/24) and gw2 (198.18.1.2/24) on
//!   one veth link, each with a protected LAN on loopback: 198.19.1.1/24
//!   behind gw1, 198.19.2.1/24 behind gw2.
//! * Site to site over IPv6: the same two gateways on 2001:db8:1::1/64 and
//!   2001:db8:1::2/64, with 2001:db8:11::1/64 behind gw1 and
//!   2001:db8:12::1/64 behind gw2 (and the IPv4 LANs above).
//! * Behind a NAT: gw1 — nat — gw2, where `nat` masquerades gw1's side
//!   with nftables, so gw2 only ever sees nat's outside address and cannot
//!   reach gw1 at all. Same LANs as above. Inside a UML guest, whose kernel
//!   has nftables but not its `ip` family, the same rule is an iptables
//!   (legacy, x_tables) MASQUERADE rule.

use std::time::Duration;

use crate::charon::{tunnel_pair, Charon, CharonOptions};
use crate::lab::{Lab, Ns};

/// The pre-shared key of these labs' tunnels (identities gw1.test, gw2.test).
pub const PSK: &str = "topology-psk-0123456789abcdef";

/// gw1's address on the site-to-site link.
pub const GW1: &str = "198.18.1.1";
/// gw2's address on the site-to-site link (and on nat's outside link).
pub const GW2: &str = "198.18.1.2";
/// A host in the LAN behind gw1, and that LAN.
pub const LAN1_HOST: &str = "198.19.1.1";
pub const LAN1: &str = "198.19.1.0/24";
/// A host in the LAN behind gw2, and that LAN.
pub const LAN2_HOST: &str = "198.19.2.1";
pub const LAN2: &str = "198.19.2.0/24";

/// The two-gateway site-to-site lab: (lab, gw1, gw2).
pub fn site_to_site(tag: &str) -> (Lab, Ns, Ns) {
    let mut lab = Lab::new(tag);
    let gw1 = lab.ns("gw1");
    let gw2 = lab.ns("gw2");
    lab.link(&gw1, &[&format!("{GW1}/24")], &gw2, &[&format!("{GW2}/24")]);
    lab.lan(&gw1, &[&format!("{LAN1_HOST}/24")]);
    lab.lan(&gw2, &[&format!("{LAN2_HOST}/24")]);
    (lab, gw1, gw2)
}

/// gw1's and gw2's addresses on the IPv6 site-to-site link.
pub const GW1_V6: &str = "2001:db8:1::1";
pub const GW2_V6: &str = "2001:db8:1::2";
/// A host in the IPv6 LAN behind gw1, and that LAN.
pub const LAN1_V6_HOST: &str = "2001:db8:11::1";
pub const LAN1_V6: &str = "2001:db8:11::/64";
/// A host in the IPv6 LAN behind gw2, and that LAN.
pub const LAN2_V6_HOST: &str = "2001:db8:12::1";
pub const LAN2_V6: &str = "2001:db8:12::/64";

/// The site-to-site lab over IPv6 (IPv6 outside, IPv6 and IPv4 LANs):
/// (lab, gw1, gw2). Addresses skip duplicate address detection, so they
/// are usable at once.
pub fn site_to_site_v6(tag: &str) -> (Lab, Ns, Ns) {
    let mut lab = Lab::new(tag);
    let gw1 = lab.ns("gw1");
    let gw2 = lab.ns("gw2");
    lab.link(
        &gw1,
        &[&format!("{GW1_V6}/64")],
        &gw2,
        &[&format!("{GW2_V6}/64")],
    );
    for (ns, v6, v4) in [
        (&gw1, LAN1_V6_HOST, LAN1_HOST),
        (&gw2, LAN2_V6_HOST, LAN2_HOST),
    ] {
        let v6 = format!("{v6}/64");
        lab.exec(ns, &["ip", "-6", "addr", "add", &v6, "dev", "lo", "nodad"]);
        lab.lan(ns, &[&format!("{v4}/24")]);
    }
    (lab, gw1, gw2)
}

/// Charons on gw1 and gw2 of a site-to-site lab with the tunnel
/// LAN1 <=> LAN2 (connection "tun", CHILD SA "net"), gw1 initiating.
/// Panics unless "net" is installed on both ends within 10 s.
pub fn site_to_site_charons(
    lab: &mut Lab,
    gw1: &Ns,
    gw2: &Ns,
    opts: &CharonOptions,
) -> (Charon, Charon) {
    charon_tunnel(lab, (gw1, GW1, GW2), (gw2, GW2, GW1), opts)
}

/// Start the two ends (gw2, the responder, first) and initiate from gw1.
fn charon_tunnel(
    lab: &mut Lab,
    gw1: (&Ns, &str, &str),
    gw2: (&Ns, &str, &str),
    opts: &CharonOptions,
) -> (Charon, Charon) {
    let (c1, mut c2) = tunnel_pair((gw1.1, gw1.2), ("gw1.test", "gw2.test"), (LAN1, LAN2), PSK);
    c2.remote_addr = gw2.2.into();
    let ch2 = Charon::start_with(lab, gw2.0, "charon-gw2", &[c2], opts);
    let ch1 = Charon::start_with(lab, gw1.0, "charon-gw1", &[c1], opts);
    ch1.initiate("net");
    let up = ch1.wait_installed("net", Duration::from_secs(10))
        && ch2.wait_installed("net", Duration::from_secs(5));
    assert!(
        up,
        "charon tunnel did not come up\ngw1:\n{}\ngw2:\n{}",
        ch1.list_sas(),
        ch2.list_sas()
    );
    (ch1, ch2)
}

/// gw1's address on its private link to the NAT.
pub const NAT_GW1: &str = "198.18.2.1";
/// The NAT's inside address (gw1's default gateway).
pub const NAT_INSIDE: &str = "198.18.2.254";
/// The NAT's outside address: what gw2 sees as gw1's address.
pub const NAT_OUTSIDE: &str = "198.18.1.254";

/// gw1 — nat — gw2.
pub struct NatLab {
    pub lab: Lab,
    /// Behind the NAT: 198.18.2.1/24, default route via nat.
    pub gw1: Ns,
    /// The NAT: 198.18.2.254/24 inside, 198.18.1.254/24 outside.
    pub nat: Ns,
    /// Outside: 198.18.1.2/24, no route to 198.18.2.0/24.
    pub gw2: Ns,
    /// nat's interface towards gw2 (the masquerading one).
    pub nat_outside_if: String,
}

/// Build the NAT lab: nat forwards and masquerades everything leaving
/// towards gw2 (`nft ... oifname <outside> masquerade`); gw1's default
/// route goes via nat; gw2 knows only its own link, so it can answer
/// nat's outside address and nothing behind it.
pub fn behind_nat(tag: &str) -> NatLab {
    let mut lab = Lab::new(tag);
    let gw1 = lab.ns("gw1");
    let nat = lab.ns("nat");
    let gw2 = lab.ns("gw2");
    lab.link(
        &gw1,
        &[&format!("{NAT_GW1}/24")],
        &nat,
        &[&format!("{NAT_INSIDE}/24")],
    );
    let (nat_outside_if, _) = lab.link(
        &nat,
        &[&format!("{NAT_OUTSIDE}/24")],
        &gw2,
        &[&format!("{GW2}/24")],
    );
    lab.lan(&gw1, &[&format!("{LAN1_HOST}/24")]);
    lab.lan(&gw2, &[&format!("{LAN2_HOST}/24")]);
    lab.exec(&gw1, &["ip", "route", "add", "default", "via", NAT_INSIDE]);
    lab.exec(&nat, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    if crate::uml::in_guest() {
        crate::traffic::require_tool("iptables-legacy", "iptables");
        lab.exec(
            &nat,
            &[
                "iptables-legacy",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &nat_outside_if,
                "-j",
                "MASQUERADE",
            ],
        );
    } else {
        let rules = format!(
            "add table ip nat\n\
             add chain ip nat post {{ type nat hook postrouting priority 100; }}\n\
             add rule ip nat post oifname \"{nat_outside_if}\" masquerade\n"
        );
        nft(&lab, &nat, &rules);
    }
    NatLab {
        lab,
        gw1,
        nat,
        gw2,
        nat_outside_if,
    }
}

/// Load an nftables script into `ns` (`nft -f -`); panics if it fails.
pub fn nft(lab: &Lab, ns: &Ns, script: &str) {
    let path = lab.dir().join(format!("nft-{}.nft", ns.name));
    std::fs::write(&path, script).expect("nft script");
    lab.exec(ns, &["nft", "-f", path.to_str().expect("utf-8 path")]);
}

impl NatLab {
    /// Charons on gw1 (behind the NAT, initiator) and gw2 with the tunnel
    /// LAN1 <=> LAN2; gw2 expects gw1 at the NAT's outside address. Panics
    /// unless the CHILD SA "net" is installed on both ends within 10 s.
    pub fn charons(&mut self, opts: &CharonOptions) -> (Charon, Charon) {
        charon_tunnel(
            &mut self.lab,
            (&self.gw1, NAT_GW1, GW2),
            (&self.gw2, GW2, NAT_OUTSIDE),
            opts,
        )
    }

    /// Shorten conntrack's UDP timeouts in the NAT (seconds): `udp` for a
    /// flow seen in one direction only, `stream` once both directions were
    /// seen (kernel defaults 30 s and 120 s). A NAT mapping then expires
    /// after `stream` seconds without packets, unless keepalives refresh it.
    pub fn set_udp_timeouts(&self, udp: u32, stream: u32) {
        for (key, v) in [
            ("net.netfilter.nf_conntrack_udp_timeout", udp),
            ("net.netfilter.nf_conntrack_udp_timeout_stream", stream),
        ] {
            self.lab
                .exec(&self.nat, &["sysctl", "-q", "-w", &format!("{key}={v}")]);
        }
    }

    /// The NAT's current UDP mappings as nftables sees them, one per line
    /// (`conntrack -L` when that tool exists, else /proc's table; empty
    /// when neither is available).
    pub fn udp_mappings(&self) -> String {
        let out = self
            .lab
            .try_exec(&self.nat, &["conntrack", "-L", "-p", "udp"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let out = self
            .lab
            .try_exec(&self.nat, &["cat", "/proc/net/nf_conntrack"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("udp"))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
