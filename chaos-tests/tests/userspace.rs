//! vpnd's userspace ESP dataplane (ESP-in-UDP over TUN) carrying real
//! traffic: against strongSwan's charon (kernel-libipsec) in both roles,
//! vpnd to vpnd over IPv4 and IPv6, `auto = "route"`, lifetimes, replayed
//! and tampered packets, `kill`, and a NAT in between.

use std::time::Duration;

use chaos_tests::charon::tunnel_pair;
use chaos_tests::configs::{psk_any, userspace_end as config, End};
use chaos_tests::topology::{
    self, GW1, GW2, LAN1, LAN1_HOST, LAN2, LAN2_HOST, NAT_GW1, NAT_OUTSIDE, PSK,
};
use chaos_tests::traffic;
use chaos_tests::vpnd::bin_dir;
use chaos_tests::{Charon, Lab, Ns, Vpnd};
use serde_json::Value;

/// gw1's (side 1) or gw2's end of the site-to-site tunnel LAN1 <=> LAN2.
fn site(side: u8, auto: &'static str) -> String {
    site_with(side, auto, "", "")
}

fn site_with(side: u8, auto: &'static str, daemon_extra: &str, child_extra: &str) -> String {
    config(&End {
        daemon_extra,
        child_extra,
        ..End::site(side, auto)
    })
}

fn start(lab: &mut Lab, ns: &Ns, name: &str, config: &str) -> Vpnd {
    Vpnd::start(lab, ns, name, config, &psk_any(PSK), &[])
}

/// The first installed CHILD SA of connection "tun".
fn child(v: &Vpnd) -> Option<Value> {
    v.installed_child("tun")
}

fn counter(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

fn dp_counter(v: &Vpnd, key: &str) -> u64 {
    v.stats()["dataplane_counters"][key].as_u64().unwrap_or(0)
}

fn wait_installed(v: &Vpnd, lab: &Lab, secs: u64) {
    assert!(
        Lab::wait_until(Duration::from_secs(secs), || v.installed_children() > 0),
        "{}: no CHILD SA installed\n{}",
        v.name,
        lab.log(&v.name)
    );
}

fn assert_ping(lab: &Lab, ns: &Ns, src: &str, dst: &str) {
    let out = traffic::ping_output(lab, ns, src, dst, 3);
    assert!(
        traffic::received(&out).unwrap_or(0) >= 2,
        "ping {src} -> {dst}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pings each way, then a 2-second TCP stream each way that must deliver
/// at least `bytes`.
fn both_ways(lab: &mut Lab, a: (&Ns, &str), b: (&Ns, &str), bytes: u64) {
    assert_ping(lab, a.0, a.1, b.1);
    assert_ping(lab, b.0, b.1, a.1);
    assert_tcp(lab, a.0, a.1, b.0, b.1, bytes);
    assert_tcp(lab, b.0, b.1, a.0, a.1, bytes);
}

/// A 2-second TCP stream from `a_addr` to `b_addr` that must deliver at
/// least `bytes`.
fn assert_tcp(lab: &mut Lab, a: &Ns, a_addr: &str, b: &Ns, b_addr: &str, bytes: u64) {
    let t = traffic::iperf3(
        lab,
        a,
        b,
        b_addr,
        Some(a_addr),
        traffic::Amount::Seconds(2),
        Duration::from_secs(20),
        &[],
    )
    .unwrap_or_else(|e| panic!("TCP {a_addr} -> {b_addr}: {e}"));
    assert!(t.bytes_received >= bytes, "TCP {a_addr} -> {b_addr}: {t:?}");
}

/// The route vpnd installed for `prefix` in `ns` (its table, 220), if any.
fn route(lab: &Lab, ns: &Ns, prefix: &str) -> String {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let out = lab.exec(ns, &["ip", family, "route", "show", "table", "220", prefix]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Counts packets leaving `ns` on any interface but the TUN device that
/// match `what` (an nftables match); read with `leaked`.
fn watch_leaks(lab: &Lab, ns: &Ns, what: &str) {
    topology::nft(
        lab,
        ns,
        &format!(
            "add table inet leak\n\
             add chain inet leak out {{ type filter hook postrouting priority 0; }}\n\
             add rule inet leak out oifname != \"vpnd0\" {what} counter\n"
        ),
    );
}

/// Counts clear-text packets from LAN1 to LAN2 leaving gw1.
fn watch_cleartext(lab: &Lab, gw1: &Ns) {
    watch_leaks(lab, gw1, &format!("ip daddr {LAN2}"));
}

fn leaked(lab: &Lab, gw1: &Ns) -> u64 {
    let out = lab.exec(gw1, &["nft", "list", "chain", "inet", "leak", "out"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn vpnd_initiator_charon_responder_ping_and_tcp() {
    let (mut lab, gw1, gw2) = topology::site_to_site("usvc");
    let (_, c2) = tunnel_pair((GW1, GW2), ("gw1.test", "gw2.test"), (LAN1, LAN2), PSK);
    let ch2 = Charon::start(&mut lab, &gw2, "charon-gw2", &[c2]);
    let v1 = start(&mut lab, &gw1, "vpnd-gw1", &site(1, "start"));
    wait_installed(&v1, &lab, 10);
    assert!(ch2.wait_installed("net", Duration::from_secs(5)));

    const BYTES: u64 = 10_000_000;
    both_ways(&mut lab, (&gw1, LAN1_HOST), (&gw2, LAN2_HOST), BYTES);

    // Both ends counted it: vpnd sent and received the bulk, charon too.
    let c = child(&v1).expect("installed child");
    assert!(counter(&c, "bytes_out") >= BYTES, "{c}");
    assert!(counter(&c, "bytes_in") >= BYTES, "{c}");
    let (inb, _) = ch2.child_bytes("net").expect("charon counters");
    assert!(inb >= BYTES, "{}", ch2.list_sas());
    assert!(ch2.list_sas().contains("TUNNEL-in-UDP"));
    assert_eq!(counter(&c, "integrity_failures"), 0, "{c}");
}

#[test]
fn charon_initiator_vpnd_responder_ping_and_tcp() {
    let (mut lab, gw1, gw2) = topology::site_to_site("uscv");
    let v2 = start(&mut lab, &gw2, "vpnd-gw2", &site(2, "add"));
    let (c1, _) = tunnel_pair((GW1, GW2), ("gw1.test", "gw2.test"), (LAN1, LAN2), PSK);
    let ch1 = Charon::start(&mut lab, &gw1, "charon-gw1", &[c1]);
    ch1.initiate("net");
    assert!(
        ch1.wait_installed("net", Duration::from_secs(10)),
        "{}\n{}",
        ch1.list_sas(),
        lab.log("vpnd-gw2")
    );
    wait_installed(&v2, &lab, 5);

    const BYTES: u64 = 10_000_000;
    both_ways(&mut lab, (&gw1, LAN1_HOST), (&gw2, LAN2_HOST), BYTES);
    let c = child(&v2).expect("installed child");
    assert!(counter(&c, "bytes_in") >= BYTES, "{c}");
    assert!(counter(&c, "bytes_out") >= BYTES, "{c}");
}

#[test]
fn vpnd_to_vpnd_ping_tcp_and_volume_lifetime_rekey() {
    let (mut lab, gw1, gw2) = topology::site_to_site("usvv");
    // A soft packet limit on gw1 makes the SA rekey under traffic.
    let lifetime = "rekey_packets = 8000\nlife_packets = 1000000";
    let v2 = start(&mut lab, &gw2, "vpnd-gw2", &site(2, "add"));
    let v1 = start(
        &mut lab,
        &gw1,
        "vpnd-gw1",
        &site_with(1, "start", "", lifetime),
    );
    wait_installed(&v1, &lab, 10);
    wait_installed(&v2, &lab, 5);
    let first = child(&v1).expect("child")["spi_in"].clone();
    assert_eq!(
        route(&lab, &gw1, LAN2),
        format!("{LAN2} dev vpnd0 proto static scope link src {LAN1_HOST}")
    );

    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    assert_ping(&lab, &gw2, LAN2_HOST, LAN1_HOST);
    const BYTES: u64 = 15_000_000;
    assert_tcp(&mut lab, &gw1, LAN1_HOST, &gw2, LAN2_HOST, BYTES);

    // More than 8000 packets went out: the soft limit rekeyed the CHILD SA
    // and the transfer carried on over the new one.
    assert!(
        Lab::wait_until(Duration::from_secs(10), || {
            child(&v1).is_some_and(|c| c["spi_in"] != first)
        }),
        "no rekey after the soft packet limit: {:?}\n{}",
        child(&v1),
        lab.log("vpnd-gw1")
    );
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    assert_tcp(&mut lab, &gw2, LAN2_HOST, &gw1, LAN1_HOST, 5_000_000);
    // Make-before-break: no packet arrived for an SA already gone or not
    // yet there.
    for v in [&v1, &v2] {
        assert_eq!(dp_counter(v, "esp_integrity_failures"), 0);
        assert_eq!(
            dp_counter(v, "esp_unknown_spi"),
            0,
            "{}\n{}\n{}",
            v.name,
            lab.log("vpnd-gw1"),
            lab.log("vpnd-gw2")
        );
    }
}

#[test]
fn vpnd_to_vpnd_ipv6_outside_carries_ipv6_and_ipv4_inside() {
    let mut lab = Lab::new("usv6");
    let gw1 = lab.ns("gw1");
    let gw2 = lab.ns("gw2");
    lab.link(&gw1, &["2001:db8:1::1/64"], &gw2, &["2001:db8:1::2/64"]);
    for (ns, v6, v4) in [
        (&gw1, "2001:db8:a::1/64", "198.19.1.1/24"),
        (&gw2, "2001:db8:b::1/64", "198.19.2.1/24"),
    ] {
        lab.exec(ns, &["ip", "-6", "addr", "add", v6, "dev", "lo", "nodad"]);
        lab.lan(ns, &[v4]);
    }
    let end = |me, peer, my_id, peer_id, auto, l: &'static [&'static str], r| {
        config(&End {
            me,
            peer,
            my_id,
            peer_id,
            auto,
            local_ts: l,
            remote_ts: r,
            ..End::default()
        })
    };
    const A: &[&str] = &["2001:db8:a::/64", "198.19.1.0/24"];
    const B: &[&str] = &["2001:db8:b::/64", "198.19.2.0/24"];
    let v2 = start(
        &mut lab,
        &gw2,
        "vpnd-gw2",
        &end(
            "2001:db8:1::2",
            "2001:db8:1::1",
            "gw2.test",
            "gw1.test",
            "add",
            B,
            A,
        ),
    );
    let v1 = start(
        &mut lab,
        &gw1,
        "vpnd-gw1",
        &end(
            "2001:db8:1::1",
            "2001:db8:1::2",
            "gw1.test",
            "gw2.test",
            "start",
            A,
            B,
        ),
    );
    wait_installed(&v1, &lab, 10);
    wait_installed(&v2, &lab, 5);
    assert!(route(&lab, &gw1, "2001:db8:b::/64").contains("dev vpnd0"));

    assert_ping(&lab, &gw1, "2001:db8:a::1", "2001:db8:b::1");
    assert_ping(&lab, &gw2, "2001:db8:b::1", "2001:db8:a::1");
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    const BYTES: u64 = 10_000_000;
    assert_tcp(
        &mut lab,
        &gw1,
        "2001:db8:a::1",
        &gw2,
        "2001:db8:b::1",
        BYTES,
    );
    assert_tcp(&mut lab, &gw2, LAN2_HOST, &gw1, LAN1_HOST, BYTES);
    let c = child(&v1).expect("child");
    assert!(counter(&c, "bytes_out") >= BYTES, "{c}");
    let s = v1.status();
    assert!(
        s.to_string().contains("2001:db8:1::2[4500]"),
        "IKE and ESP over IPv6 port 4500: {s}"
    );
}

#[test]
fn auto_route_is_started_by_a_ping_and_never_leaks_after_down() {
    let (mut lab, gw1, gw2) = topology::site_to_site("usrt");
    watch_cleartext(&lab, &gw1);
    let _v2 = start(&mut lab, &gw2, "vpnd-gw2", &site(2, "add"));
    let v1 = start(&mut lab, &gw1, "vpnd-gw1", &site(1, "route"));
    // Routed: a trap, its route into the TUN device, no SA.
    assert!(Lab::wait_until(Duration::from_secs(5), || {
        v1.stats()["traps"].as_u64() == Some(1)
    }));
    assert!(
        route(&lab, &gw1, LAN2).contains("dev vpnd0"),
        "{}",
        route(&lab, &gw1, LAN2)
    );
    assert_eq!(v1.installed_children(), 0);

    // The first packet starts the connection; held packets follow once the
    // SA is up.
    let out = traffic::ping_output(&lab, &gw1, LAN1_HOST, LAN2_HOST, 4);
    assert!(
        traffic::received(&out).unwrap_or(0) >= 3,
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log("vpnd-gw1")
    );
    wait_installed(&v1, &lab, 5);
    assert!(dp_counter(&v1, "acquires") >= 1);
    assert!(dp_counter(&v1, "trap_held") >= 1);
    assert!(
        dp_counter(&v1, "trap_sent") >= 1,
        "the held packet went out once the SA was up: {}",
        v1.stats()
    );

    // down: back to the trap; traffic is held, never sent in clear.
    assert!(v1.ctl(&["down", "tun"]).ok());
    assert!(Lab::wait_until(Duration::from_secs(5), || {
        v1.installed_children() == 0
    }));
    assert!(route(&lab, &gw1, LAN2).contains("dev vpnd0"));
    let _ = traffic::ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 1);
    assert_eq!(leaked(&lab, &gw1), 0, "clear-text packets left gw1");
}

#[test]
fn kill_removes_route_and_sas_and_nothing_leaves_in_clear() {
    let (mut lab, gw1, gw2) = topology::site_to_site("uskl");
    watch_cleartext(&lab, &gw1);
    let _v2 = start(&mut lab, &gw2, "vpnd-gw2", &site(2, "add"));
    let v1 = start(&mut lab, &gw1, "vpnd-gw1", &site(1, "start"));
    wait_installed(&v1, &lab, 10);
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    assert_eq!(leaked(&lab, &gw1), 0, "the tunnel carried it, encrypted");

    let k = v1.ctl(&["kill", "tun"]);
    assert!(k.ok(), "{k:?}");
    assert_eq!(v1.installed_children(), 0);
    assert_eq!(route(&lab, &gw1, LAN2), "", "route left behind");
    assert!(!traffic::ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 2));
    assert_eq!(leaked(&lab, &gw1), 0, "clear-text packets left gw1");
    let stats = v1.stats();
    assert_eq!(stats["child_sas"], 0, "{stats}");
}

#[test]
fn replayed_and_tampered_esp_is_dropped_and_counted() {
    let (mut lab, gw1, gw2) = topology::site_to_site("usrp");
    let v2 = start(&mut lab, &gw2, "vpnd-gw2", &site(2, "add"));
    let v1 = start(&mut lab, &gw1, "vpnd-gw1", &site(1, "start"));
    wait_installed(&v1, &lab, 10);
    wait_installed(&v2, &lab, 5);
    let iface = lab
        .exec(&gw1, &["ip", "-o", "route", "get", GW2])
        .stdout
        .split(|b| *b == b' ')
        .skip_while(|w| *w != b"dev")
        .nth(1)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .expect("gw1's interface towards gw2");
    let inject = bin_dir().join("esp-inject");
    lab.spawn(
        &gw1,
        "esp-inject",
        &[inject.to_str().expect("utf-8"), &iface, "5", "3"],
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    let status = lab.wait_exit("esp-inject", Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "esp-inject: {}",
        lab.log("esp-inject")
    );
    assert!(
        Lab::wait_until(Duration::from_secs(3), || {
            child(&v2).is_some_and(|c| counter(&c, "replay_drops") >= 5)
        }),
        "replays not counted: {:?}",
        child(&v2)
    );
    let c = child(&v2).expect("child");
    assert_eq!(counter(&c, "replay_drops"), 5, "{c}");
    assert_eq!(counter(&c, "integrity_failures"), 3, "{c}");
    // The tunnel is unharmed.
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    let out = v2.ctl(&["status", "tun"]);
    assert!(
        out.stdout.contains("5 replayed, 3 failed integrity"),
        "{}",
        out.stdout
    );
}

#[test]
fn vpnd_behind_nat_to_charon_keepalives_hold_the_mapping() {
    let mut n = topology::behind_nat("usnat");
    n.set_udp_timeouts(4, 4);
    let (_, mut c2) = tunnel_pair(
        (topology::NAT_GW1, GW2),
        ("gw1.test", "gw2.test"),
        (LAN1, LAN2),
        PSK,
    );
    c2.remote_addr = topology::NAT_OUTSIDE.into();
    let ch2 = Charon::start(&mut n.lab, &n.gw2, "charon-gw2", &[c2]);
    let conf = config(&End {
        me: topology::NAT_GW1,
        peer: GW2,
        my_id: "gw1.test",
        peer_id: "gw2.test",
        auto: "start",
        local_ts: &[LAN1],
        remote_ts: &[LAN2],
        daemon_extra: "keep_alive = \"2s\"",
        ..End::default()
    });
    let v1 = start(&mut n.lab, &n.gw1, "vpnd-gw1", &conf);
    wait_installed(&v1, &n.lab, 10);
    assert!(ch2.wait_installed("net", Duration::from_secs(5)));
    assert!(
        ch2.list_sas()
            .contains(&format!("{}[4500]", topology::NAT_OUTSIDE)),
        "{}",
        ch2.list_sas()
    );
    assert_ping(&n.lab, &n.gw1, LAN1_HOST, LAN2_HOST);
    assert_tcp(&mut n.lab, &n.gw1, LAN1_HOST, &n.gw2, LAN2_HOST, 5_000_000);

    // Idle past the NAT's 4 s timeout: only vpnd's keepalives flow.
    std::thread::sleep(Duration::from_secs(7));
    assert!(dp_counter(&v1, "nat_keepalives_tx") >= 2, "{}", v1.stats());
    assert!(
        n.udp_mappings().contains("dport=4500"),
        "mapping gone:\n{}",
        n.udp_mappings()
    );
    // charon reaches back into gw1's LAN through the same mapping.
    assert_ping(&n.lab, &n.gw2, LAN2_HOST, LAN1_HOST);
}

#[test]
fn vpnd_to_vpnd_chacha20_poly1305_with_esn_and_aes128_gcm() {
    for (tag, esp) in [("uscc", "chacha20poly1305-esn"), ("usa1", "aes128gcm16")] {
        let (mut lab, gw1, gw2) = topology::site_to_site(tag);
        let conf = |side| {
            site(side, if side == 1 { "start" } else { "add" }).replace(
                "esp_proposals = [\"aes256gcm16\"]",
                &format!("esp_proposals = [\"{esp}\"]"),
            )
        };
        let v2 = start(&mut lab, &gw2, "vpnd-gw2", &conf(2));
        let v1 = start(&mut lab, &gw1, "vpnd-gw1", &conf(1));
        wait_installed(&v1, &lab, 10);
        wait_installed(&v2, &lab, 5);
        let c = child(&v1).expect("child");
        let want = if esp.starts_with("chacha") {
            "CHACHA20_POLY1305/EXT_SEQ"
        } else {
            "AES_GCM_16_128/NO_EXT_SEQ"
        };
        assert_eq!(c["proposal"], want, "{c}");
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
        assert_tcp(&mut lab, &gw1, LAN1_HOST, &gw2, LAN2_HOST, 5_000_000);
    }
}

/// Counts packets leaving `ns` for `dst` that are not UDP (IKE and
/// ESP-in-UDP are UDP; clear-text ICMP or TCP would not be).
fn watch_non_udp(lab: &Lab, ns: &Ns, dst: &str) {
    watch_leaks(lab, ns, &format!("ip daddr {dst} meta l4proto != udp"));
}

#[test]
fn transport_mode_vpnd_to_vpnd_host_to_host() {
    let (mut lab, gw1, gw2) = topology::site_to_site("ustr");
    let host = |me: &'static str, peer: &'static str, my_id, peer_id, auto| {
        config(&End {
            me,
            peer,
            my_id,
            peer_id,
            auto,
            local_ts: &[me],
            remote_ts: &[peer],
            child_extra: "mode = \"transport\"",
            ..End::default()
        })
    };
    let v2 = start(
        &mut lab,
        &gw2,
        "vpnd-gw2",
        &host(GW2, GW1, "gw2.test", "gw1.test", "add"),
    );
    let v1 = start(
        &mut lab,
        &gw1,
        "vpnd-gw1",
        &host(GW1, GW2, "gw1.test", "gw2.test", "start"),
    );
    wait_installed(&v1, &lab, 10);
    wait_installed(&v2, &lab, 5);
    // The peer's own address goes into the TUN device; vpnd's marked
    // IKE/ESP-in-UDP packets skip table 220 by the policy rule.
    assert_eq!(
        route(&lab, &gw1, GW2),
        format!("{GW2} dev vpnd0 proto static scope link src {GW1}")
    );
    let rules = lab.exec(&gw1, &["ip", "rule", "show", "priority", "220"]);
    assert_eq!(
        String::from_utf8_lossy(&rules.stdout).trim(),
        "220:\tnot from all fwmark 0x220 lookup 220"
    );
    watch_non_udp(&lab, &gw1, GW2);

    const BYTES: u64 = 10_000_000;
    both_ways(&mut lab, (&gw1, GW1), (&gw2, GW2), BYTES);

    let c = child(&v1).expect("installed child");
    assert!(counter(&c, "bytes_out") >= BYTES, "{c}");
    assert!(counter(&c, "bytes_in") >= BYTES, "{c}");
    assert_eq!(counter(&c, "integrity_failures"), 0, "{c}");
    assert_eq!(dp_counter(&v1, "esp_selector_drops"), 0);
    assert_eq!(dp_counter(&v2, "esp_selector_drops"), 0);
    assert_eq!(leaked(&lab, &gw1), 0, "clear-text packets left gw1 for gw2");
    let status = v1.status().to_string();
    assert!(status.contains("\"installed\""), "{status}");

    // Down: the host route and the rule's table entry go; traffic to the
    // peer uses the main table again (in clear, as without any policy).
    let d = v1.ctl(&["down", "tun"]);
    assert!(d.ok(), "{d:?}");
    assert!(Lab::wait_until(Duration::from_secs(5), || route(
        &lab, &gw1, GW2
    )
    .is_empty()));
    assert!(traffic::ping(&lab, &gw1, GW1, GW2, 2));
}

#[test]
fn transport_mode_behind_nat_fixes_checksums() {
    // gw1 (198.18.2.1) sits behind a masquerading NAT (198.18.1.254). The
    // selectors name gw1's private address; each side's SA protects the
    // packets of the addresses it sees, and TCP checksums computed over
    // the other side's view of the addresses are recomputed on receipt.
    let mut nl = topology::behind_nat("ustn");
    let transport = |me: &'static str,
                     peer: &'static str,
                     lts,
                     rts,
                     ids: (&'static str, &'static str),
                     auto| {
        config(&End {
            me,
            peer,
            my_id: ids.0,
            peer_id: ids.1,
            auto,
            local_ts: lts,
            remote_ts: rts,
            daemon_extra: "keep_alive = \"2s\"",
            child_extra: "mode = \"transport\"",
            ..End::default()
        })
    };
    let v2 = start(
        &mut nl.lab,
        &nl.gw2,
        "vpnd-gw2",
        &transport(
            GW2,
            NAT_OUTSIDE,
            &[GW2],
            &[NAT_GW1],
            ("gw2.test", "gw1.test"),
            "add",
        ),
    );
    let v1 = start(
        &mut nl.lab,
        &nl.gw1,
        "vpnd-gw1",
        &transport(
            NAT_GW1,
            GW2,
            &[NAT_GW1],
            &[GW2],
            ("gw1.test", "gw2.test"),
            "start",
        ),
    );
    wait_installed(&v1, &nl.lab, 10);
    wait_installed(&v2, &nl.lab, 5);
    // gw2 routes the address it sees gw1 at into its TUN device.
    assert_eq!(
        route(&nl.lab, &nl.gw2, NAT_OUTSIDE),
        format!("{NAT_OUTSIDE} dev vpnd0 proto static scope link src {GW2}")
    );
    assert_ping(&nl.lab, &nl.gw1, NAT_GW1, GW2);
    assert_ping(&nl.lab, &nl.gw2, GW2, NAT_OUTSIDE);
    const BYTES: u64 = 5_000_000;
    assert_tcp(&mut nl.lab, &nl.gw1, NAT_GW1, &nl.gw2, GW2, BYTES);
    let c = child(&v2).expect("installed child");
    assert!(counter(&c, "bytes_in") >= BYTES, "{c}");
    assert_eq!(dp_counter(&v1, "esp_selector_drops"), 0);
    assert_eq!(dp_counter(&v2, "esp_selector_drops"), 0);
}

#[test]
fn remote_selector_covering_the_peer_does_not_capture_ike() {
    // A "full tunnel": gw1 sends everything (0.0.0.0/0, the peer's address
    // included) through the tunnel. Without the fwmark rule the route
    // would swallow vpnd's own ESP-in-UDP packets to gw2.
    let (mut lab, gw1, gw2) = topology::site_to_site("usfl");
    let v2 = start(
        &mut lab,
        &gw2,
        "vpnd-gw2",
        &config(&End {
            me: GW2,
            peer: GW1,
            my_id: "gw2.test",
            peer_id: "gw1.test",
            auto: "add",
            local_ts: &["0.0.0.0/0"],
            remote_ts: &[LAN1],
            ..End::default()
        }),
    );
    let v1 = start(
        &mut lab,
        &gw1,
        "vpnd-gw1",
        &config(&End {
            me: GW1,
            peer: GW2,
            my_id: "gw1.test",
            peer_id: "gw2.test",
            auto: "start",
            local_ts: &[LAN1],
            remote_ts: &["0.0.0.0/0"],
            ..End::default()
        }),
    );
    wait_installed(&v1, &lab, 10);
    wait_installed(&v2, &lab, 5);
    assert_eq!(
        route(&lab, &gw1, "default"),
        format!("default dev vpnd0 proto static scope link src {LAN1_HOST}")
    );
    watch_non_udp(&lab, &gw1, GW2);
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST);
    // The gateway's own address is inside 0.0.0.0/0 too.
    assert_ping(&lab, &gw1, LAN1_HOST, GW2);
    assert_tcp(&mut lab, &gw1, LAN1_HOST, &gw2, LAN2_HOST, 5_000_000);
    assert_eq!(leaked(&lab, &gw1), 0, "clear-text packets left gw1 for gw2");
    let c = child(&v1).expect("installed child");
    assert!(counter(&c, "bytes_out") >= 5_000_000, "{c}");
}

#[test]
fn inbound_sas_spread_over_workers_by_spi() {
    // Four CHILD SAs between the same two gateways: each SA's packets are
    // decrypted by worker SPI mod 2 (the reuseport group's steering), so
    // the inbound work of different SAs uses both workers, and the
    // per-worker counters match the SPIs exactly.
    let (mut lab, gw1, gw2) = topology::site_to_site("ussp");
    const N: usize = 4;
    let side = |me: &str,
                peer: &str,
                my_id: &str,
                peer_id: &str,
                mine: u8,
                theirs: u8,
                auto: &str| {
        let mut c = format!(
            "[daemon]\nlisten = [\"{me}\"]\ndataplane = \"userspace\"\nworkers = 2\nsecrets = [\"secrets.toml\"]\n\n\
             [connections.tun]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nlocal_id = \"{my_id}\"\n\
             remote_id = \"{peer_id}\"\nproposals = [\"aes256gcm16-prfsha256-x25519\"]\nauto = \"{auto}\"\n\
             keyingtries = 1\nretransmit_timeout = \"1s\"\n"
        );
        for i in 0..N {
            c.push_str(&format!(
                "\n[connections.tun.children.c{i}]\nlocal_ts = [\"198.19.{}.0/24\"]\nremote_ts = [\"198.19.{}.0/24\"]\nesp_proposals = [\"aes256gcm16\"]\n",
                mine + i as u8,
                theirs + i as u8
            ));
        }
        c
    };
    for i in 0..N as u8 {
        lab.lan(&gw1, &[&format!("198.19.{}.1/24", 10 + i)]);
        lab.lan(&gw2, &[&format!("198.19.{}.1/24", 20 + i)]);
    }
    let v2 = start(
        &mut lab,
        &gw2,
        "vpnd-gw2",
        &side(GW2, GW1, "gw2.test", "gw1.test", 20, 10, "add"),
    );
    let v1 = start(
        &mut lab,
        &gw1,
        "vpnd-gw1",
        &side(GW1, GW2, "gw1.test", "gw2.test", 10, 20, "start"),
    );
    assert!(
        Lab::wait_until(Duration::from_secs(15), || v1.installed_children() == N
            && v2.installed_children() == N),
        "{}",
        lab.log("vpnd-gw1")
    );
    for i in 0..N as u8 {
        assert_ping(
            &lab,
            &gw1,
            &format!("198.19.{}.1", 10 + i),
            &format!("198.19.{}.1", 20 + i),
        );
    }
    // Which worker each of gw2's inbound SAs belongs to.
    let status = v2.status();
    let spis: Vec<u32> = status["connections"][0]["ike_sas"]
        .as_array()
        .expect("IKE SAs")
        .iter()
        .flat_map(|i| i["child_sas"].as_array().cloned().unwrap_or_default())
        .map(|c| u32::from_str_radix(c["spi_in"].as_str().expect("spi_in"), 16).expect("hex SPI"))
        .collect();
    assert_eq!(spis.len(), N, "{status}");
    let stats = v2.stats();
    eprintln!(
        "inbound SPIs {spis:08x?}: worker0 {} worker1 {} packets",
        dp_counter(&v2, "esp_rx_packets_worker0"),
        dp_counter(&v2, "esp_rx_packets_worker1")
    );
    for w in 0..2u32 {
        let sas = spis.iter().filter(|s| *s % 2 == w).count();
        let rx = dp_counter(&v2, &format!("esp_rx_packets_worker{w}"));
        // Three pings per SA, at least two answered.
        assert!(
            rx >= 2 * sas as u64,
            "worker {w}: {rx} packets for {sas} SAs: {stats}"
        );
        if sas == 0 {
            assert_eq!(
                rx, 0,
                "worker {w} decrypted packets of no SA of its own: {stats}"
            );
        }
    }
}
