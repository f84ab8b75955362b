//! IKE fragmentation (RFC 7383) against strongSwan's charon and between two
//! vpnd, across a router that drops every IP fragment.
//!
//! Lab: a (198.18.1.1) — r — b (198.18.2.1). The router `r` forwards and
//! drops IP fragments before conntrack's defragmentation could see them
//! (an nftables prerouting chain at priority -450: `frag-off & 0x1fff` a
//! later fragment, `frag-off & 0x2000` a first one with more to come).
//! The CHILD SA carries 150 /32 selectors for a's side (and b's /24), so
//! IKE_AUTH request and response (about 2.8 KB each) cross only in IKE
//! fragments. (One /24 on b's side keeps charon's kernel-libipsec at 150
//! policies rather than 150 × 150.)
//! Lost fragments (an nftables quota drops the first full-sized one each
//! way) are recovered by retransmission in both roles against charon.
//! With vpnd's `fragment_size = 0` it does not announce fragmentation,
//! neither end fragments, and the SA does not come up: proof that the
//! lab really drops IP fragments.

use std::time::Duration;

use chaos_tests::fraglab::{lab, lab_of, FragLab, A, B, FRAGMENT_SIZE};
use chaos_tests::{Charon, CharonConn, Lab, Vpnd};

const PSK: &str = "fragmentation-interop-psk-7383";
/// Selectors on a's side.
const N_TS: u8 = 150;
/// b's side.
const LAN_B: &str = "198.19.2.0/24";
/// The selectors of a's side, `198.19.1.1/32` … `198.19.1.N_TS/32`, or
/// of b's side.
fn selectors(net: u8) -> Vec<String> {
    if net == 2 {
        return vec![LAN_B.to_string()];
    }
    (1..=N_TS).map(|i| format!("198.19.{net}.{i}/32")).collect()
}

fn toml_list(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// vpnd on `me` (net 1 behind a, net 2 behind b) towards `peer`.
fn vpnd_config(
    me: &str,
    peer: &str,
    ids: (&str, &str),
    nets: (u8, u8),
    frag: Option<u16>,
) -> String {
    let frag = frag.map_or(String::new(), |f| format!("fragment_size = {f}\n"));
    format!(
        r#"[daemon]
listen = ["{me}"]
dataplane = "none"
secrets = ["secrets.toml"]

[connections.big]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_id = "{lid}"
remote_id = "{rid}"
auth = "psk"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
encap = true
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2
{frag}
[connections.big.children.net]
local_ts = {lts}
remote_ts = {rts}
esp_proposals = ["aes256gcm16"]
"#,
        lid = ids.0,
        rid = ids.1,
        lts = toml_list(&selectors(nets.0)),
        rts = toml_list(&selectors(nets.1)),
    )
}

fn secrets() -> String {
    format!("[[psk]]\nids = [\"a.test\", \"b.test\"]\nsecret = \"{PSK}\"\n")
}

/// charon on b: net 2 behind it, net 1 behind a.
fn charon(l: &mut FragLab) -> Charon {
    let (a, b) = l.addrs;
    let mut c = CharonConn::psk("big", b, a, "b.test", "a.test", PSK);
    c.local_ts = selectors(2).join(",");
    c.remote_ts = selectors(1).join(",");
    c.extra = "fragmentation = yes".into();
    Charon::start(&mut l.lab, &l.b, "charon-b", &[c])
}

fn vpnd_a(l: &mut FragLab, frag: Option<u16>) -> Vpnd {
    let (a, b) = l.addrs;
    let config = vpnd_config(a, b, ("a.test", "b.test"), (1, 2), frag);
    Vpnd::start(&mut l.lab, &l.a, "vpnd-a", &config, &secrets(), &[])
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

/// The CHILD SA of `v` (on a's side if `on_a`) carries all selectors.
fn assert_all_selectors(v: &Vpnd, on_a: bool) {
    let child = v.installed_child("big").expect("installed child");
    let n = |k: &str| child[k].as_array().map_or(0, Vec::len);
    let many = usize::from(N_TS);
    let expect = if on_a { (many, 1) } else { (1, many) };
    assert_eq!((n("local_ts"), n("remote_ts")), expect, "{child}");
}

#[test]
fn vpnd_initiator_charon_responder_in_fragments() {
    let mut l = lab("fri");
    let charon = charon(&mut l);
    let v = vpnd_a(&mut l, None);
    let up = v.ctl(&["up", "big"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\ncharon:\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "{}",
        charon.list_sas()
    );
    assert_all_selectors(&v, true);
    l.assert_charon_fragmented();
    assert_eq!(l.oversized(), 0, "IKE packets over {FRAGMENT_SIZE} bytes");
    assert_eq!(l.dropped_ip_fragments(), 0);
}

#[test]
fn charon_initiator_vpnd_responder_in_fragments() {
    let mut l = lab("frr");
    let v = vpnd_a(&mut l, None);
    let charon = charon(&mut l);
    charon.initiate("net");
    assert!(
        wait(15, || v.installed_children() == 1),
        "vpnd:\n{}\ncharon:\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "{}",
        charon.list_sas()
    );
    assert_eq!(v.conn("big")["ike_sas"][0]["initiator"], false);
    assert_all_selectors(&v, true);
    l.assert_charon_fragmented();
    assert_eq!(l.oversized(), 0, "IKE packets over {FRAGMENT_SIZE} bytes");
    assert_eq!(l.dropped_ip_fragments(), 0);
}

#[test]
fn vpnd_to_vpnd_in_fragments_both_ways() {
    let mut l = lab("frv");
    let va = vpnd_a(&mut l, None);
    let config = vpnd_config(l.addrs.1, l.addrs.0, ("b.test", "a.test"), (2, 1), None);
    let vb = Vpnd::start(&mut l.lab, &l.b, "vpnd-b", &config, &secrets(), &[]);
    let up = va.ctl(&["up", "big"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("vpnd-b")
    );
    assert!(
        wait(5, || vb.installed_children() == 1),
        "{}",
        l.lab.log("vpnd-b")
    );
    assert_all_selectors(&va, true);
    assert_all_selectors(&vb, false);
    // And the other way round, b initiating.
    let down = va.ctl(&["down", "big"]);
    assert!(down.ok(), "{down:?}");
    assert!(wait(5, || vb.installed_children() == 0));
    let up = vb.ctl(&["up", "big"]);
    assert!(up.ok(), "up from b failed: {up:?}\n{}", l.lab.log("vpnd-b"));
    assert!(wait(5, || va.installed_children() == 1));
    assert_eq!(l.dropped_ip_fragments(), 0, "vpnd sent IP fragments");
    assert_eq!(l.oversized(), 0, "IKE packets over {FRAGMENT_SIZE} bytes");
}

#[test]
fn vpnd_initiator_charon_responder_over_ipv6_in_fragments() {
    let mut l = lab_of("fr6", true);
    let charon = charon(&mut l);
    let v = vpnd_a(&mut l, None);
    let up = v.ctl(&["up", "big"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\ncharon:\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "{}",
        charon.list_sas()
    );
    assert_all_selectors(&v, true);
    l.assert_charon_fragmented();
    // The 40-byte IPv6 header counts: still no packet over 1280 bytes.
    assert_eq!(l.oversized(), 0, "IKE packets over {FRAGMENT_SIZE} bytes");
    assert_eq!(l.dropped_ip_fragments(), 0);
}

#[test]
fn without_fragmentation_vpnd_and_charon_do_not_come_up_either_way() {
    let mut l = lab("fro");
    let charon = charon(&mut l);
    let v = vpnd_a(&mut l, Some(0));
    let up = v.ctl(&["up", "big"]);
    assert!(!up.ok(), "came up without fragmentation: {up:?}");
    assert!(!charon.has_installed("net"));
    let dropped = l.dropped_ip_fragments();
    assert!(dropped > 0, "the router dropped no IP fragments");
    // The counter of oversized IKE packets works: it saw the first
    // fragments (UDP header and all) of the unfragmented IKE_AUTH.
    assert!(l.oversized() > 0, "no oversized IKE packet counted");
    // charon initiating: it does not fragment for a peer that did not
    // announce support, so its IKE_AUTH is lost too.
    charon.initiate("net");
    assert!(
        !wait(8, || v.installed_children() == 1),
        "{}",
        l.lab.log("vpnd-a")
    );
    assert!(l.dropped_ip_fragments() > dropped);
    assert!(!l.lab.log("charon-b").contains("splitting IKE message"));
}

#[test]
fn lost_fragments_each_way_are_retransmitted_with_charon_responding() {
    let mut l = lab("frl");
    l.lose_first_big_packet_each_way();
    let charon = charon(&mut l);
    let v = vpnd_a(&mut l, None);
    let up = v.ctl(&["up", "big"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\ncharon:\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "{}",
        charon.list_sas()
    );
    assert_eq!(
        l.counted("lose"),
        2,
        "one fragment lost each way:\n{}",
        l.ruleset()
    );
    // vpnd sent its request again, whole; its fragment 1 made charon send
    // its cached response again, whole.
    let log = l.lab.log("charon-b");
    assert!(
        log.contains("received retransmit of request with ID 1, retransmitting response"),
        "{log}"
    );
    // vpnd's datagrams are the size of charon's: 1248 bytes of UDP
    // payload (1280 with the IP and UDP headers and the non-ESP marker).
    assert!(
        log.contains(&format!(
            "received packet: from {A}[4500] to {B}[4500] (1248 bytes)"
        )),
        "{log}"
    );
}

#[test]
fn lost_fragments_each_way_are_retransmitted_with_charon_initiating() {
    let mut l = lab("frm");
    l.lose_first_big_packet_each_way();
    let v = vpnd_a(&mut l, None);
    let charon = charon(&mut l);
    charon.initiate("net");
    assert!(
        wait(15, || v.installed_children() == 1),
        "vpnd:\n{}\ncharon:\n{}",
        l.lab.log("vpnd-a"),
        l.lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "{}",
        charon.list_sas()
    );
    assert_eq!(
        l.counted("lose"),
        2,
        "one fragment lost each way:\n{}",
        l.ruleset()
    );
    let log = l.lab.log("charon-b");
    assert!(
        log.contains("retransmit 1 of request with message ID 1"),
        "{log}"
    );
}
