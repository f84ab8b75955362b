//! vpnd's kernel XFRM dataplane (`dataplane = "xfrm"`) against real kernel
//! ESP: vpnd installs XFRM states, policies and routes in its own
//! namespace, against strongSwan's charon with kernel-netlink (both roles,
//! tunnel and transport mode, IPv4 and IPv6), against another vpnd, and
//! from behind a masquerading NAT. This host's kernel has no ESP, so each
//! test re-runs itself in a User-Mode Linux guest (`chaos_tests::uml`).
//!
//! Proof that vpnd's kernel did the ESP: vpnd's namespace holds states and
//! policies whose reqids are in vpnd's range and whose SPIs are the ones
//! vpnd's status names, their byte counters grow by at least what TCP
//! delivered, and vpnd's status counters (read from the kernel) agree.
//!
//! The first two tests check the guest labs themselves (IPv6, the NAT)
//! with charon on both ends.

use std::time::Duration;

use chaos_tests::configs::{self, End};
use chaos_tests::kernel_lab::{
    self as kl, assert_child_in_kernel, assert_only, assert_ping, counter, state, tcp, Expect,
    GUEST_LIMIT, UP,
};
use chaos_tests::topology::{
    self, GW1, GW1_V6, GW2, GW2_V6, LAN1, LAN1_HOST, LAN1_V6, LAN1_V6_HOST, LAN2, LAN2_HOST,
    LAN2_V6, LAN2_V6_HOST, NAT_GW1, NAT_OUTSIDE, PSK,
};
use chaos_tests::xfrm::{self, is_vpnd_reqid, Snapshot};
use chaos_tests::{uml, CharonConn, Lab, Ns};

/// Bytes of each TCP transfer (one per direction).
const BYTES: u64 = 5_000_000;

const GCM: &str = "rfc4106(gcm(aes))";

#[test]
fn guest_lab_ipv6_carries_a_charon_tunnel() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site_v6("kx6c");
        let conn = |me: &str, peer: &str, ids: (&str, &str), ts: (&str, &str)| {
            let mut c = CharonConn::psk("tun", me, peer, ids.0, ids.1, PSK);
            c.local_ts = ts.0.into();
            c.remote_ts = ts.1.into();
            c.encap = "no".into();
            c
        };
        let c2 = conn(GW2_V6, GW1_V6, ("gw2.test", "gw1.test"), (LAN2_V6, LAN1_V6));
        let c1 = conn(GW1_V6, GW2_V6, ("gw1.test", "gw2.test"), (LAN1_V6, LAN2_V6));
        let ch2 = kl::charon(&mut lab, &gw2, "charon-gw2", &[c2], "");
        let ch1 = kl::charon(&mut lab, &gw1, "charon-gw1", &[c1], "");
        ch1.initiate("net");
        assert!(
            ch1.wait_installed("net", UP) && ch2.wait_installed("net", UP),
            "{}\n{}",
            ch1.list_sas(),
            ch2.list_sas()
        );
        assert_ping(&lab, &gw1, LAN1_V6_HOST, LAN2_V6_HOST, 3);
        let st = xfrm::states(&lab, &gw1);
        let out = state(&st, GW1_V6, GW2_V6);
        assert!(out.packets >= 3 && out.encap.is_none(), "{st:#?}");
    });
}

#[test]
fn guest_lab_nat_masquerades_a_charon_tunnel() {
    uml::guest_test(GUEST_LIMIT, || {
        let mut n = topology::behind_nat("kxnc");
        let mut c1 = CharonConn::psk("tun", NAT_GW1, GW2, "gw1.test", "gw2.test", PSK);
        c1.local_ts = LAN1.into();
        c1.remote_ts = LAN2.into();
        c1.encap = "no".into();
        let mut c2 = CharonConn::psk("tun", GW2, NAT_OUTSIDE, "gw2.test", "gw1.test", PSK);
        c2.encap = "no".into();
        let ch2 = kl::charon(&mut n.lab, &n.gw2, "charon-gw2", &[c2], "");
        let ch1 = kl::charon(&mut n.lab, &n.gw1, "charon-gw1", &[c1], "keep_alive = 2s");
        ch1.initiate("net");
        assert!(
            ch1.wait_installed("net", UP) && ch2.wait_installed("net", UP),
            "{}\n{}",
            ch1.list_sas(),
            ch2.list_sas()
        );
        // charon detected the NAT (no forced encapsulation here).
        let sas = ch1.list_sas();
        assert!(sas.contains("TUNNEL-in-UDP"), "{sas}");
        assert_ping(&n.lab, &n.gw1, LAN1_HOST, LAN2_HOST, 3);
        let st = xfrm::states(&n.lab, &n.gw2);
        let inbound = state(&st, NAT_OUTSIDE, GW2);
        assert!(inbound.packets >= 3, "{st:#?}");
        // The keepalive counter sees charon's (behind the NAT, every 2 s
        // when idle).
        count_keepalives(&n);
        std::thread::sleep(Duration::from_secs(5));
        let k = forwarded_keepalives(&n);
        assert!(k >= 1, "{k} keepalives from charon counted");
    });
}

#[test]
fn xfrm_vpnd_initiator_charon_responder_tunnel() {
    uml::guest_test(GUEST_LIMIT, || with_charon(&Sides::v4("tunnel"), true));
}

#[test]
fn xfrm_charon_initiator_vpnd_responder_tunnel() {
    uml::guest_test(GUEST_LIMIT, || with_charon(&Sides::v4("tunnel"), false));
}

#[test]
fn xfrm_vpnd_initiator_charon_responder_transport() {
    uml::guest_test(GUEST_LIMIT, || with_charon(&Sides::v4("transport"), true));
}

#[test]
fn xfrm_charon_initiator_vpnd_responder_transport() {
    uml::guest_test(GUEST_LIMIT, || with_charon(&Sides::v4("transport"), false));
}

#[test]
fn xfrm_vpnd_initiator_charon_responder_ipv6_tunnel() {
    uml::guest_test(GUEST_LIMIT, || with_charon(&Sides::v6(), true));
}

/// vpnd on gw1, its peer on gw2: addresses, selectors, where traffic
/// starts, and whether the SAs are UDP-encapsulated.
struct Sides {
    v6: bool,
    mode: &'static str,
    gw1: &'static str,
    gw2: &'static str,
    ts1: String,
    ts2: String,
    host1: &'static str,
    host2: &'static str,
    /// charon's `encap`: forced UDP encapsulation in the IPv4 tunnel
    /// cases, plain ESP (IP protocol 50) in the others.
    encap: bool,
}

impl Sides {
    fn v4(mode: &'static str) -> Sides {
        match mode {
            "tunnel" => Sides {
                v6: false,
                mode,
                gw1: GW1,
                gw2: GW2,
                ts1: LAN1.into(),
                ts2: LAN2.into(),
                host1: LAN1_HOST,
                host2: LAN2_HOST,
                encap: true,
            },
            _ => Sides {
                v6: false,
                mode,
                gw1: GW1,
                gw2: GW2,
                ts1: format!("{GW1}/32"),
                ts2: format!("{GW2}/32"),
                host1: GW1,
                host2: GW2,
                encap: false,
            },
        }
    }

    fn v6() -> Sides {
        Sides {
            v6: true,
            mode: "tunnel",
            gw1: GW1_V6,
            gw2: GW2_V6,
            ts1: LAN1_V6.into(),
            ts2: LAN2_V6.into(),
            host1: LAN1_V6_HOST,
            host2: LAN2_V6_HOST,
            encap: false,
        }
    }

    fn lab(&self, tag: &str) -> (Lab, Ns, Ns) {
        if self.v6 {
            topology::site_to_site_v6(tag)
        } else {
            topology::site_to_site(tag)
        }
    }

    /// vpnd's config on gw1 (`side` 1) or gw2.
    fn vpnd_config(&self, side: u8, auto: &str) -> String {
        let (me, peer, ids, lts, rts) = if side == 1 {
            (
                self.gw1,
                self.gw2,
                ("gw1.test", "gw2.test"),
                &self.ts1,
                &self.ts2,
            )
        } else {
            (
                self.gw2,
                self.gw1,
                ("gw2.test", "gw1.test"),
                &self.ts2,
                &self.ts1,
            )
        };
        configs::xfrm_end(&End {
            me,
            peer,
            my_id: ids.0,
            peer_id: ids.1,
            auto,
            local_ts: &[lts],
            remote_ts: &[rts],
            child_extra: &format!("mode = \"{}\"", self.mode),
            retransmit_timeout: "2s",
            ..End::default()
        })
    }

    fn charon_conn(&self) -> CharonConn {
        let mut c = CharonConn::psk("tun", self.gw2, self.gw1, "gw2.test", "gw1.test", PSK);
        c.local_ts = self.ts2.clone();
        c.remote_ts = self.ts1.clone();
        c.mode = self.mode.into();
        c.encap = if self.encap { "yes" } else { "no" }.into();
        c
    }
}

/// vpnd (xfrm, gw1) and charon (kernel-netlink, gw2), one tunnel started
/// by either: both kernels hold the SAs (vpnd's with its reqids), ping and
/// TCP both ways, and the kernel counters and vpnd's status agree.
fn with_charon(s: &Sides, vpnd_initiates: bool) {
    let tag = match (s.v6, s.mode, vpnd_initiates) {
        (true, ..) => "kx6v",
        (_, "tunnel", true) => "kxtv",
        (_, "tunnel", false) => "kxtc",
        (_, _, true) => "kxpv",
        _ => "kxpc",
    };
    let (mut lab, gw1, gw2) = s.lab(tag);
    let (vpnd, charon) = if vpnd_initiates {
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[s.charon_conn()], "");
        let vpnd = kl::vpnd(
            &mut lab,
            &gw1,
            "vpnd-gw1",
            &s.vpnd_config(1, "start"),
            false,
        );
        (vpnd, charon)
    } else {
        let vpnd = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &s.vpnd_config(1, "add"), false);
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[s.charon_conn()], "");
        charon.initiate("net");
        (vpnd, charon)
    };
    let child = kl::wait_child(&lab, &vpnd, "tun", UP);
    assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());

    let e = Expect {
        me: s.gw1,
        peer: s.gw2,
        mode: s.mode,
        encap: s.encap,
        aead: GCM,
    };
    let snap = Snapshot::take(&lab, &gw1);
    let (vin, vout) = assert_child_in_kernel(&snap, &child, &e);
    assert_only(&snap, &[kl::reqid(&child)]);
    // charon's kernel holds the other ends of the same SAs, not in vpnd's
    // reqid range.
    let theirs = xfrm::states(&lab, &gw2);
    let (cin, cout) = (state(&theirs, s.gw1, s.gw2), state(&theirs, s.gw2, s.gw1));
    assert_eq!(
        (cin.spi, cout.spi),
        (vout.spi, vin.spi),
        "{theirs:#?}\n{}",
        snap.describe()
    );
    assert!(!is_vpnd_reqid(cin.reqid), "{cin:?}");

    assert_ping(&lab, &gw1, s.host1, s.host2, 3);
    assert_ping(&lab, &gw2, s.host2, s.host1, 3);
    let up = tcp(&mut lab, &gw1, s.host1, &gw2, s.host2, BYTES);
    let down = tcp(&mut lab, &gw2, s.host2, &gw1, s.host1, BYTES);

    let after = Snapshot::take(&lab, &gw1);
    let (ain, aout) = assert_child_in_kernel(&after, &child, &e);
    let diag = after.describe();
    eprintln!("vpnd's kernel after the transfers:\n{diag}");
    assert!(
        aout.bytes >= vout.bytes + up,
        "outbound state counted {up} more: {diag}"
    );
    assert!(
        ain.bytes >= vin.bytes + down,
        "inbound state counted {down} more: {diag}"
    );
    assert_eq!(
        (ain.failed, ain.replay_drops),
        (0, 0),
        "kernel drops: {diag}"
    );
    // vpnd's status reads the same counters from the kernel.
    let c = vpnd.installed_child("tun").expect("still installed");
    assert!(
        counter(&c, "bytes_out") >= up && counter(&c, "bytes_in") >= down,
        "{c}\n{diag}"
    );
    assert!(
        counter(&c, "packets_out") > 6 && counter(&c, "packets_in") > 6,
        "{c}"
    );
    // And the other kernel saw the same.
    let theirs = xfrm::states(&lab, &gw2);
    assert!(state(&theirs, s.gw1, s.gw2).bytes >= up, "{theirs:#?}");
}

#[test]
fn xfrm_vpnd_to_vpnd_carries_ping_and_tcp() {
    uml::guest_test(GUEST_LIMIT, || {
        let s = Sides::v4("tunnel");
        let (mut lab, gw1, gw2) = s.lab("kxvv");
        let v2 = kl::vpnd(&mut lab, &gw2, "vpnd-gw2", &s.vpnd_config(2, "add"), false);
        let v1 = kl::vpnd(
            &mut lab,
            &gw1,
            "vpnd-gw1",
            &s.vpnd_config(1, "start"),
            false,
        );
        let c1 = kl::wait_child(&lab, &v1, "tun", UP);
        let c2 = kl::wait_child(&lab, &v2, "tun", UP);
        // Both namespaces hold vpnd's objects; no NAT, no forced encap:
        // plain ESP.
        let e = |me, peer| Expect {
            me,
            peer,
            mode: "tunnel",
            encap: false,
            aead: GCM,
        };
        let s1 = Snapshot::take(&lab, &gw1);
        let s2 = Snapshot::take(&lab, &gw2);
        let (in1, out1) = assert_child_in_kernel(&s1, &c1, &e(GW1, GW2));
        let (in2, out2) = assert_child_in_kernel(&s2, &c2, &e(GW2, GW1));
        assert_eq!((in1.spi, out1.spi), (out2.spi, in2.spi));
        assert_only(&s1, &[kl::reqid(&c1)]);
        assert_only(&s2, &[kl::reqid(&c2)]);

        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
        assert_ping(&lab, &gw2, LAN2_HOST, LAN1_HOST, 3);
        let up = tcp(&mut lab, &gw1, LAN1_HOST, &gw2, LAN2_HOST, BYTES);
        let down = tcp(&mut lab, &gw2, LAN2_HOST, &gw1, LAN1_HOST, BYTES);
        let a1 = Snapshot::take(&lab, &gw1);
        let (ain, aout) = assert_child_in_kernel(&a1, &c1, &e(GW1, GW2));
        assert!(aout.bytes >= up && ain.bytes >= down, "{}", a1.describe());
        let c = v2.installed_child("tun").expect("gw2's child");
        assert!(
            counter(&c, "bytes_in") >= up && counter(&c, "bytes_out") >= down,
            "{c}"
        );
    });
}

#[test]
fn xfrm_vpnd_behind_nat_uses_espinudp_and_keepalives_hold_the_mapping() {
    uml::guest_test(GUEST_LIMIT, || {
        let mut n = topology::behind_nat("kxnt");
        n.set_udp_timeouts(4, 4);
        let mut c2 = CharonConn::psk("tun", GW2, NAT_OUTSIDE, "gw2.test", "gw1.test", PSK);
        c2.encap = "no".into();
        let charon = kl::charon(&mut n.lab, &n.gw2, "charon-gw2", &[c2], "");
        let conf = configs::xfrm_end(&End {
            me: NAT_GW1,
            peer: GW2,
            my_id: "gw1.test",
            peer_id: "gw2.test",
            auto: "start",
            local_ts: &[LAN1],
            remote_ts: &[LAN2],
            daemon_extra: "keep_alive = \"2s\"",
            retransmit_timeout: "2s",
            ..End::default()
        });
        let v1 = kl::vpnd(&mut n.lab, &n.gw1, "vpnd-gw1", &conf, false);
        let child = kl::wait_child(&n.lab, &v1, "tun", UP);
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        let sas = charon.list_sas();
        assert!(
            sas.contains(&format!("{NAT_OUTSIDE}[4500]")) && sas.contains("TUNNEL-in-UDP"),
            "charon sees vpnd behind the NAT on 4500: {sas}"
        );
        // vpnd detected the NAT itself: nothing forces encapsulation.
        let snap = Snapshot::take(&n.lab, &n.gw1);
        let e = Expect {
            me: NAT_GW1,
            peer: GW2,
            mode: "tunnel",
            encap: true,
            aead: GCM,
        };
        let (vin, vout) = assert_child_in_kernel(&snap, &child, &e);
        for st in [&vin, &vout] {
            let enc = st.encap.as_deref().unwrap_or("");
            assert!(
                enc.contains("sport 4500") && enc.contains("dport 4500"),
                "{}",
                snap.describe()
            );
        }
        assert_ping(&n.lab, &n.gw1, LAN1_HOST, LAN2_HOST, 3);
        assert_ping(&n.lab, &n.gw2, LAN2_HOST, LAN1_HOST, 3);
        let up = tcp(&mut n.lab, &n.gw1, LAN1_HOST, &n.gw2, LAN2_HOST, BYTES);
        let st = xfrm::states(&n.lab, &n.gw2);
        assert!(state(&st, NAT_OUTSIDE, GW2).bytes >= up, "{st:#?}");

        // Idle past the NAT's 4 s timeout: only vpnd's keepalives flow
        // (every 2 s); charon's ESP still reaches gw1 through the mapping,
        // which would be gone otherwise.
        count_keepalives(&n);
        let idle_from = Snapshot::take(&n.lab, &n.gw1);
        std::thread::sleep(Duration::from_secs(7));
        // The keepalives themselves, as the NAT forwarded them: 1-byte UDP
        // payloads (29-byte IPv4 packets) to port 4500.
        let keepalives = forwarded_keepalives(&n);
        assert!(
            keepalives >= 2,
            "{keepalives} NAT keepalives crossed the NAT in 7 s (keep_alive = 2s)"
        );
        eprintln!("vpnd stats after the idle period: {}", v1.stats());
        let mappings = n.udp_mappings();
        eprintln!("NAT mappings after 7 s idle:\n{mappings}");
        assert!(
            mappings.is_empty() || mappings.contains("dport=4500"),
            "the 4500 mapping expired:\n{mappings}\nvpnd stats: {}",
            v1.stats()
        );
        assert_ping(&n.lab, &n.gw2, LAN2_HOST, LAN1_HOST, 3);
        // Keepalives are not ESP: the inbound state only counted the pings.
        let after = Snapshot::take(&n.lab, &n.gw1);
        let grew = state(&after.states, GW2, NAT_GW1).packets
            - state(&idle_from.states, GW2, NAT_GW1).packets;
        assert!((3..10).contains(&grew), "{}", after.describe());
    });
}

/// A rule in the NAT that counts what it forwards of NAT keepalives
/// (FORWARD, UDP to 4500, 29-byte packets: a 1-byte payload).
fn count_keepalives(n: &topology::NatLab) {
    n.lab.exec(
        &n.nat,
        &[
            "iptables-legacy",
            "-A",
            "FORWARD",
            "-p",
            "udp",
            "--dport",
            "4500",
            "-m",
            "length",
            "--length",
            "29",
            "-j",
            "ACCEPT",
        ],
    );
}

/// Packets the NAT's keepalive counting rule (FORWARD, UDP to 4500, 29
/// bytes) matched so far.
fn forwarded_keepalives(n: &topology::NatLab) -> u64 {
    let out = n.lab.exec(
        &n.nat,
        &["iptables-legacy", "-L", "FORWARD", "-v", "-x", "-n"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("dpt:4500") && l.contains("length 29"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no keepalive counting rule:\n{text}"))
}
