//! Operations on vpnd's kernel XFRM dataplane, in a UML guest each:
//! `auto = "route"` trap policies and ACQUIRE, `down` and `unroute`;
//! `kill` of one of two connections to the same peer (established,
//! half-open, rekeying) while the other carries a ping without loss;
//! `impair kernel-fail`; marks with a VTI device and if_ids on the objects.
//!
//! Objects are told apart by reqid: each CHILD SA's (and its trap's) states
//! and policies carry the reqid vpnd's status names, in vpnd's range.

use std::collections::BTreeMap;
use std::time::Duration;

use chaos_tests::configs::{self, End};
use chaos_tests::kernel_lab::{
    self as kl, assert_child_in_kernel, assert_only, assert_ping, wait_kernel, Expect, GUEST_LIMIT,
    UP,
};
use chaos_tests::topology::{self, GW1, GW2, LAN1, LAN1_HOST, LAN2, LAN2_HOST, PSK};
use chaos_tests::traffic;
use chaos_tests::xfrm::{is_vpnd_reqid, Snapshot};
use chaos_tests::{uml, Charon, CharonConn, Lab, Ns, Vpnd};

const GCM: &str = "rfc4106(gcm(aes))";

/// charon's end (gw2) of the site-to-site tunnel "tun" / "net".
fn charon_conn() -> CharonConn {
    let mut c = CharonConn::psk("tun", GW2, GW1, "gw2.test", "gw1.test", PSK);
    c.local_ts = LAN2.into();
    c.remote_ts = LAN1.into();
    c.encap = "no".into();
    c
}

/// vpnd's end (gw1) of "tun" with `auto`, `conn_extra` and `child_extra`.
fn vpnd_conf(auto: &'static str, conn_extra: &str, child_extra: &str) -> String {
    configs::xfrm_end(&End {
        conn_extra,
        child_extra,
        retransmit_timeout: "2s",
        ..End::site(1, auto)
    })
}

fn expect() -> Expect<'static> {
    Expect {
        me: GW1,
        peer: GW2,
        mode: "tunnel",
        encap: false,
        aead: GCM,
    }
}

#[test]
fn xfrm_auto_route_traps_acquire_down_and_unroute() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxrt");
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[charon_conn()], "");
        let v = kl::vpnd(
            &mut lab,
            &gw1,
            "vpnd-gw1",
            &vpnd_conf("route", "", ""),
            false,
        );

        // Before any traffic: trap policies (a template, vpnd's reqid) and
        // no state at all.
        let (trap, ok) = wait_kernel(&lab, &gw1, Duration::from_secs(10), |s| {
            !s.vpnd_policies().is_empty()
        });
        assert!(
            ok,
            "no trap policies:\n{}\n{}",
            trap.describe(),
            lab.log("vpnd-gw1")
        );
        assert!(
            trap.states.is_empty(),
            "states before traffic:\n{}",
            trap.describe()
        );
        let trap_out: Vec<_> = trap
            .vpnd_policies()
            .into_iter()
            .filter(|p| p.dir == "out")
            .collect();
        assert_eq!(trap_out.len(), 1, "{}", trap.describe());
        assert_eq!(
            (trap_out[0].src.as_str(), trap_out[0].dst.as_str()),
            (LAN1, LAN2)
        );
        assert_eq!(trap_out[0].tmpls[0].dst, GW2, "{}", trap.describe());
        assert_eq!(v.conn("tun")["routed"], true, "{}", v.conn("tun"));
        assert!(v.installed_child("tun").is_none());

        // A ping raises ACQUIRE; vpnd initiates (the first echoes may be
        // lost while the SA is negotiated).
        let first = traffic::ping_output(&lab, &gw1, LAN1_HOST, LAN2_HOST, 1);
        let child = kl::wait_child(&lab, &v, "tun", UP);
        eprintln!(
            "first ping (raises ACQUIRE): {}",
            String::from_utf8_lossy(&first.stdout)
        );
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
        let up = Snapshot::take(&lab, &gw1);
        assert_child_in_kernel(&up, &child, &expect());
        assert_only(&up, &[kl::reqid(&child)]);
        let log = lab.log("vpnd-gw1");
        assert!(
            kl::log_shows_acquire(&log),
            "vpnd's log names no ACQUIRE:\n{log}"
        );

        // down: the SAs go, the traps are back (same selectors, no state).
        let d = v.ctl(&["down", "tun"]);
        assert!(d.ok(), "{d:?}");
        let (after_down, ok) = wait_kernel(&lab, &gw1, Duration::from_secs(10), |s| {
            s.vpnd_states().is_empty() && !s.vpnd_policies().is_empty()
        });
        assert!(ok, "after down:\n{}", after_down.describe());
        let sel = |s: &Snapshot| -> Vec<(String, String, String)> {
            let mut v: Vec<_> = s
                .vpnd_policies()
                .into_iter()
                .map(|p| (p.dir.clone(), p.src.clone(), p.dst.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            sel(&after_down),
            sel(&trap),
            "traps after down:\n{}",
            after_down.describe()
        );
        assert!(
            after_down.duplicates().is_empty(),
            "{}",
            after_down.describe()
        );

        // unroute: nothing of the connection is left.
        let u = v.ctl(&["unroute", "tun"]);
        assert!(u.ok(), "{u:?}");
        let (gone, ok) = wait_kernel(&lab, &gw1, Duration::from_secs(10), |s| {
            s.vpnd_counts().is_empty()
        });
        assert!(ok, "after unroute:\n{}", gone.describe());
        assert_eq!(v.conn("tun")["routed"], false, "{}", v.conn("tun"));
        // And a ping no longer starts anything.
        let _ = traffic::ping_output(&lab, &gw1, LAN1_HOST, LAN2_HOST, 1);
        std::thread::sleep(Duration::from_secs(2));
        assert!(v.conn("tun")["ike_sas"]
            .as_array()
            .is_none_or(|a| a.is_empty()));
    });
}

// ---- kill: two connections to one peer ----

/// gw1 (vpnd) and gw2 (charon) with two connections: "tun" (LAN1 <=> LAN2,
/// gw1.test/gw2.test) and "two" (198.19.3.0/24 <=> 198.19.4.0/24,
/// gw1b.test/gw2b.test); "two" carries the ping that must not notice.
struct Two {
    lab: Lab,
    gw1: Ns,
    gw2: Ns,
    v: Vpnd,
    charon: Charon,
}

const LAN3_HOST: &str = "198.19.3.1";
const LAN4_HOST: &str = "198.19.4.1";

/// `tun_child` goes into tun's child table, `tun_conn` into its connection
/// table; charon's "tun" uses `tun_encap`.
fn two_connections(tag: &str, tun_conn: &str, tun_child: &str, tun_encap: &str) -> Two {
    let (mut lab, gw1, gw2) = topology::site_to_site(tag);
    lab.lan(&gw1, &[&format!("{LAN3_HOST}/24")]);
    lab.lan(&gw2, &[&format!("{LAN4_HOST}/24")]);
    let mut tun = charon_conn();
    tun.encap = tun_encap.into();
    let mut two = CharonConn::psk("two", GW2, GW1, "gw2b.test", "gw1b.test", PSK);
    two.child = "net2".into();
    two.local_ts = "198.19.4.0/24".into();
    two.remote_ts = "198.19.3.0/24".into();
    two.encap = "no".into();
    let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[tun, two], "");
    let mut conf = vpnd_conf("add", tun_conn, tun_child);
    conf.push_str(&format!(
        r#"
[connections.two]
local_addrs = ["{GW1}"]
remote_addrs = ["{GW2}"]
local_id = "gw1b.test"
remote_id = "gw2b.test"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
keyingtries = 1
retransmit_timeout = "2s"

[connections.two.children.net2]
local_ts = ["198.19.3.0/24"]
remote_ts = ["198.19.4.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    ));
    let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, true);
    let up = v.ctl(&["up", "two"]);
    assert!(up.ok(), "up two: {up:?}\n{}", lab.log("vpnd-gw1"));
    kl::wait_child(&lab, &v, "two", UP);
    assert!(charon.wait_installed("net2", UP), "{}", charon.list_sas());
    Two {
        lab,
        gw1,
        gw2,
        v,
        charon,
    }
}

/// (SPI, reqid) of every vpnd state, with the policies' reqid counts.
fn objects(s: &Snapshot, reqid: u32) -> (Vec<u32>, usize) {
    let mut spis: Vec<u32> = s
        .states
        .iter()
        .filter(|st| st.reqid == reqid)
        .map(|st| st.spi)
        .collect();
    spis.sort();
    (spis, s.count(reqid).1)
}

/// Kill "tun" in whatever state `prepare` left it while "two" carries a
/// 20/s ping; then exactly tun's objects are gone, two's are untouched and
/// the ping lost nothing.
fn kill_beside_running_ping(t: &mut Two, what: &str) {
    let two = t.v.installed_child("two").expect("two is up");
    let r2 = kl::reqid(&two);
    let before = Snapshot::take(&t.lab, &t.gw1);
    let two_before = objects(&before, r2);
    assert_eq!(two_before.0.len(), 2, "two's states: {}", before.describe());
    assert!(two_before.1 >= 3, "two's policies: {}", before.describe());
    let tun_reqids: Vec<u32> = before
        .vpnd_counts()
        .into_keys()
        .filter(|r| *r != r2)
        .collect();
    eprintln!(
        "{what}: before kill, tun's reqids {tun_reqids:x?}, counts {:x?}\n{}",
        before.vpnd_counts(),
        before.describe()
    );

    let ping = traffic::ping_start(
        &mut t.lab,
        &t.gw1,
        "ping-two",
        LAN3_HOST,
        LAN4_HOST,
        Duration::from_millis(50),
        100,
    );
    std::thread::sleep(Duration::from_secs(1));
    let k = t.v.ctl(&["kill", "tun"]);
    assert!(k.ok(), "kill tun ({what}): {k:?}");
    let (after, ok) = wait_kernel(&t.lab, &t.gw1, Duration::from_secs(5), |s| {
        s.vpnd_counts().keys().all(|r| *r == r2)
    });
    let (tx, rx) = ping.finish(&mut t.lab);
    assert!(
        ok,
        "{what}: tun's objects left after kill:\n{}\n{}",
        after.describe(),
        t.lab.log("vpnd-gw1")
    );
    assert_eq!(
        objects(&after, r2),
        two_before,
        "{what}: two's objects changed:\nbefore\n{}\nafter\n{}",
        before.describe(),
        after.describe()
    );
    assert_eq!(
        after.vpnd_counts(),
        BTreeMap::from([(r2, (two_before.0.len(), two_before.1))])
    );
    assert_eq!((tx, rx), (100, 100), "{what}: ping through two lost echoes");
    // Routes: two's is still in table 220, tun's is gone.
    let routes = kl::routes(&t.lab, &t.gw1, 220);
    assert!(
        routes.contains("198.19.4.0/24") && !routes.contains(LAN2),
        "{what}: table 220 after kill:\n{routes}"
    );
    assert!(t.v.installed_child("two").is_some());
    assert!(t.v.conn("tun")["ike_sas"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
    assert_ping(&t.lab, &t.gw1, LAN3_HOST, LAN4_HOST, 2);
}

#[test]
fn xfrm_kill_established_connection_leaves_the_other_alone() {
    uml::guest_test(GUEST_LIMIT, || {
        let mut t = two_connections("kxke", "", "", "no");
        let up = t.v.ctl(&["up", "tun"]);
        assert!(up.ok(), "{up:?}");
        let tun = kl::wait_child(&t.lab, &t.v, "tun", UP);
        assert!(t.charon.wait_installed("net", UP));
        assert_ping(&t.lab, &t.gw1, LAN1_HOST, LAN2_HOST, 2);
        let snap = Snapshot::take(&t.lab, &t.gw1);
        let r = kl::reqid(&tun);
        assert_eq!(objects(&snap, r).0.len(), 2, "{}", snap.describe());
        kill_beside_running_ping(&mut t, "established");
        // The other end still has two's SAs, and tun's traffic now goes
        // nowhere (no policy, no route left in vpnd's namespace).
        assert!(!kl::ping_gets_through(
            &t.lab, &t.gw1, LAN1_HOST, LAN2_HOST, 2
        ));
        let _ = &t.gw2;
    });
}

#[test]
fn xfrm_kill_half_open_connection_leaves_the_other_alone() {
    uml::guest_test(GUEST_LIMIT, || {
        // The peer stays silent towards tun: vpnd drops every answer to it
        // (charon's encapsulation is chosen per address pair, so a port
        // filter on the peer would hit two as well). tun stays half-open,
        // retransmitting IKE_SA_INIT, while two is untouched.
        let mut t = two_connections("kxkh", "", "", "no");
        let imp = t.v.ctl(&["impair", "tun", "drop-inbound=100"]);
        assert!(imp.ok(), "{imp:?}");
        let up = t.v.ctl(&["up", "tun", "--async"]);
        assert!(up.ok(), "{up:?}");
        let connecting = Lab::wait_until(Duration::from_secs(10), || {
            t.v.conn("tun")["ike_sas"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        });
        assert!(connecting, "tun never started: {}", t.v.conn("tun"));
        // A few IKE_SA_INIT retransmissions go unanswered.
        std::thread::sleep(Duration::from_secs(3));
        assert!(t.v.installed_child("tun").is_none(), "{}", t.v.conn("tun"));
        let snap = Snapshot::take(&t.lab, &t.gw1);
        eprintln!(
            "half-open tun: {}\nkernel:\n{}",
            t.v.conn("tun"),
            snap.describe()
        );
        kill_beside_running_ping(&mut t, "half-open");
    });
}

#[test]
fn xfrm_kill_rekeying_connection_leaves_the_other_alone() {
    uml::guest_test(GUEST_LIMIT, || {
        // tun's CHILD SA rekeys after 8 s (its hard lifetime is far off);
        // its peer's answers are dropped from 5 s on, so the rekey stays in
        // flight (CREATE_CHILD_SA retransmitted, a new inbound SPI
        // allocated) until the kill.
        let mut t = two_connections("kxkr", "", "rekey_time = \"8s\"\nlife_time = \"60s\"", "no");
        let up = t.v.ctl(&["up", "tun"]);
        assert!(up.ok(), "{up:?}");
        let tun = kl::wait_child(&t.lab, &t.v, "tun", UP);
        let old_spi = kl::spi(&tun, "spi_in");
        std::thread::sleep(Duration::from_secs(5));
        let imp = t.v.ctl(&["impair", "tun", "drop-inbound=100"]);
        assert!(imp.ok(), "{imp:?}");
        // In flight: the status says so, or the new inbound SPI's larval
        // state is there beside the old pair.
        let rekeying = Lab::wait_until(Duration::from_secs(15), || {
            t.v.conn("tun").to_string().contains("\"rekeying\"")
                || Snapshot::take(&t.lab, &t.gw1)
                    .states
                    .iter()
                    .any(|s| s.dst == GW1 && s.spi != old_spi && s.bytes == 0 && s.mode != "tunnel")
        });
        let snap = Snapshot::take(&t.lab, &t.gw1);
        assert!(
            rekeying,
            "tun never showed a rekey in flight: {}\n{}",
            t.v.conn("tun"),
            snap.describe()
        );
        // The old SA still stands (its rekey is unanswered).
        assert!(
            snap.states.iter().any(|s| s.spi == old_spi),
            "{}",
            snap.describe()
        );
        eprintln!(
            "rekeying tun: {}\nkernel:\n{}",
            t.v.conn("tun"),
            snap.describe()
        );
        kill_beside_running_ping(&mut t, "rekeying");
    });
}

// ---- kernel-fail ----

#[test]
fn xfrm_kernel_fail_reports_and_leaves_nothing_half_installed() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxkf");
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[charon_conn()], "");
        let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &vpnd_conf("add", "", ""), true);
        let imp = v.ctl(&["impair", "tun", "kernel-fail"]);
        assert!(imp.ok(), "{imp:?}");
        let up = v.ctl(&["up", "tun"]);
        eprintln!("up with kernel-fail: {up:?}");
        assert!(!up.ok(), "up succeeded despite kernel-fail: {up:?}");
        assert!(
            !up.stderr.trim().is_empty(),
            "no error message for the failed install: {up:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
        let snap = Snapshot::take(&lab, &gw1);
        assert!(
            snap.vpnd_counts().is_empty(),
            "half-installed after kernel-fail:\n{}\n{}",
            snap.describe(),
            lab.log("vpnd-gw1")
        );
        assert!(v.installed_child("tun").is_none(), "{}", v.conn("tun"));
        assert!(!kl::ping_gets_through(&lab, &gw1, LAN1_HOST, LAN2_HOST, 1));
        let log = lab.log("vpnd-gw1");
        eprintln!("vpnd's log after kernel-fail:\n{log}");

        // Only the next install failed: the following up works.
        let again = v.ctl(&["up", "tun"]);
        assert!(again.ok(), "{again:?}\n{}", lab.log("vpnd-gw1"));
        let child = kl::wait_child(&lab, &v, "tun", UP);
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        let snap = Snapshot::take(&lab, &gw1);
        assert_child_in_kernel(&snap, &child, &expect());
        assert_only(&snap, &[kl::reqid(&child)]);
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
    });
}

// ---- marks and if_ids ----

/// A VTI device `vti42` (key 42) towards `peer` in `ns` with `lan` routed
/// into it; policy checks on it are off, as strongSwan's VTI setup has it.
fn vti(lab: &Lab, ns: &Ns, me: &str, peer: &str, lan: &str) {
    lab.exec(
        ns,
        &[
            "ip", "link", "add", "vti42", "type", "vti", "local", me, "remote", peer, "key", "42",
        ],
    );
    lab.exec(
        ns,
        &["sysctl", "-q", "-w", "net.ipv4.conf.vti42.disable_policy=1"],
    );
    lab.exec(ns, &["ip", "link", "set", "vti42", "up"]);
    lab.exec(ns, &["ip", "route", "add", lan, "dev", "vti42"]);
}

/// charon's end of a 0.0.0.0/0 tunnel marked 42 both ways (gw1 or gw2).
fn marked_charon_conn(side: u8) -> CharonConn {
    let mut c = if side == 1 {
        CharonConn::psk("tun", GW1, GW2, "gw1.test", "gw2.test", PSK)
    } else {
        charon_conn()
    };
    c.local_ts = "0.0.0.0/0".into();
    c.remote_ts = "0.0.0.0/0".into();
    c.encap = "no".into();
    c.child_extra = "mark_in = 42\n        mark_out = 42".into();
    c
}

#[test]
fn guest_lab_vti_carries_a_marked_charon_tunnel() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxvc");
        vti(&lab, &gw1, GW1, GW2, LAN2);
        vti(&lab, &gw2, GW2, GW1, LAN1);
        let no_routes = "install_routes = no";
        let ch2 = kl::charon(
            &mut lab,
            &gw2,
            "charon-gw2",
            &[marked_charon_conn(2)],
            no_routes,
        );
        let ch1 = kl::charon(
            &mut lab,
            &gw1,
            "charon-gw1",
            &[marked_charon_conn(1)],
            no_routes,
        );
        ch1.initiate("net");
        assert!(
            ch1.wait_installed("net", UP) && ch2.wait_installed("net", UP),
            "{}\n{}",
            ch1.list_sas(),
            ch2.list_sas()
        );
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
        assert_ping(&lab, &gw1, GW1, GW2, 2);
        let snap = Snapshot::take(&lab, &gw1);
        let out = kl::state(&snap.states, GW1, GW2);
        assert!(out.packets >= 3, "{}", snap.describe());
    });
}

#[test]
fn xfrm_marks_route_through_a_vti_device() {
    // The guest kernel has no XFRM interfaces (CONFIG_XFRM_INTERFACE is
    // off), so route-based VPN here is VTI: the device marks what it sends
    // with its key and looks inbound SAs up with it.
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxvt");
        vti(&lab, &gw1, GW1, GW2, LAN2);
        vti(&lab, &gw2, GW2, GW1, LAN1);
        let c = marked_charon_conn(2);
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[c], "install_routes = no");
        let conf = configs::xfrm_end(&End {
            local_ts: &["0.0.0.0/0"],
            remote_ts: &["0.0.0.0/0"],
            daemon_extra: "install_routes = false",
            child_extra: "mark_in = 42\nmark_out = \"0x2a\"",
            retransmit_timeout: "2s",
            ..End::site(1, "start")
        });
        let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
        let child = kl::wait_child(&lab, &v, "tun", UP);
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        let snap = Snapshot::take(&lab, &gw1);
        let (_, out) = assert_child_in_kernel(&snap, &child, &expect());
        let r = kl::reqid(&child);
        assert_eq!(
            out.mark.as_deref(),
            Some("0x2a/0xffffffff"),
            "{}",
            snap.describe()
        );
        for p in snap.policies.iter().filter(|p| p.reqids().any(|x| x == r)) {
            assert_eq!(
                p.mark.as_deref(),
                Some("0x2a/0xffffffff"),
                "{}",
                snap.describe()
            );
            assert_eq!((p.src.as_str(), p.dst.as_str()), ("0.0.0.0/0", "0.0.0.0/0"));
        }
        // IKE itself is unmarked and so outside the 0/0 policies: the IKE
        // SA still works (a DPD-like INFORMATIONAL would fail otherwise).
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
        assert_ping(&lab, &gw2, LAN2_HOST, LAN1_HOST, 3);
        let after = Snapshot::take(&lab, &gw1);
        let (ain, aout) = assert_child_in_kernel(&after, &child, &expect());
        assert!(
            ain.packets >= 6 && aout.packets >= 6,
            "{}",
            after.describe()
        );
        // Traffic not routed into the VTI device is not marked, so it is
        // not tunnelled: gw1 still reaches gw2 in clear.
        assert_ping(&lab, &gw1, GW1, GW2, 2);
    });
}

#[test]
fn xfrm_if_ids_reach_states_and_policies() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxif");
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[charon_conn()], "");
        let conf = configs::xfrm_end(&End {
            daemon_extra: "install_routes = false",
            child_extra: "if_id_in = 42\nif_id_out = 43",
            retransmit_timeout: "2s",
            ..End::site(1, "start")
        });
        let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
        let child = kl::wait_child(&lab, &v, "tun", UP);
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        let snap = Snapshot::take(&lab, &gw1);
        let (inb, out) = assert_child_in_kernel(&snap, &child, &expect());
        assert_eq!(
            (inb.if_id, out.if_id),
            (Some(42), Some(43)),
            "{}",
            snap.describe()
        );
        let r = kl::reqid(&child);
        for p in snap.policies.iter().filter(|p| p.reqids().any(|x| x == r)) {
            let want = if p.dir == "out" { 43 } else { 42 };
            assert_eq!(p.if_id, Some(want), "{}", snap.describe());
        }
        assert!(is_vpnd_reqid(r));
    });
}
