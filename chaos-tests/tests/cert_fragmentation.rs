//! Certificate authentication with an RSA 4096 chain (root, intermediate
//! and end entities all RSA 4096) across a router that drops every IP
//! fragment (`chaos_tests::fraglab`): each IKE_AUTH carries two CERT
//! payloads and a 512-byte signature, about 4.5 KB, so it crosses only in
//! RFC 7383 fragments. vpnd against charon in both roles and vpnd against
//! vpnd both ways; with vpnd's `fragment_size = 0` the same lab does not
//! come up in either role, which shows the lab drops the IP fragments.

use std::path::Path;
use std::time::Duration;

use chaos_tests::certs::{charon_credentials, make_pki, Leaf};
use chaos_tests::fraglab::{lab, FragLab, FRAGMENT_SIZE};
use chaos_tests::{Charon, CharonConn, Lab, Vpnd};

/// The lab with the RSA 4096 PKI in `pki/` and charon's credentials in
/// `charon-b/`; `b-chain.pem` is b's chain for a vpnd on b.
fn cert_lab(tag: &str) -> FragLab {
    let l = lab(tag);
    let pki = l.lab.dir().join("pki");
    make_pki(&pki, Leaf::Rsa4096);
    charon_credentials(&pki, &l.lab.dir().join("charon-b"), Leaf::Rsa4096);
    let chain = std::fs::read_to_string(pki.join("b.pem")).unwrap()
        + &std::fs::read_to_string(pki.join("sub.pem")).unwrap();
    std::fs::write(pki.join("b-chain.pem"), chain).unwrap();
    l
}

/// vpnd on `me` as end `side` ("a" or "b") of the PKI, towards `peer`.
fn vpnd_config(pki: &Path, me: &str, peer: &str, side: &str, frag: Option<u16>) -> String {
    let p = pki.display();
    let (other, lan, rlan) = match side {
        "a" => ("b", 1, 2),
        _ => ("a", 2, 1),
    };
    let frag = frag.map_or(String::new(), |f| format!("fragment_size = {f}\n"));
    format!(
        r#"[daemon]
listen = ["{me}"]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = ["{p}/ca.pem"]

[connections.big]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_id = "{side}.test"
remote_id = "{other}.test"
auth = "pubkey"
local_cert = "{p}/{side}-chain.pem"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
encap = true
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2
{frag}
[connections.big.children.net]
local_ts = ["198.19.{lan}.0/24"]
remote_ts = ["198.19.{rlan}.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    )
}

fn vpnd(l: &mut FragLab, side: &str, frag: Option<u16>) -> Vpnd {
    let pki = l.lab.dir().join("pki");
    let (a, b) = l.addrs;
    let (me, peer, ns) = match side {
        "a" => (a, b, l.a.clone()),
        _ => (b, a, l.b.clone()),
    };
    let config = vpnd_config(&pki, me, peer, side, frag);
    let secrets = format!("[[key]]\nfile = \"{}/{side}.key\"\n", pki.display());
    Vpnd::start(
        &mut l.lab,
        &ns,
        &format!("vpnd-{side}"),
        &config,
        &secrets,
        &[],
    )
}

/// charon on b with b's certificate, fragmentation on.
fn charon(l: &mut FragLab) -> Charon {
    let (a, b) = l.addrs;
    let mut c = CharonConn::psk("big", b, a, "b.test", "a.test", "");
    c.auth = "pubkey".into();
    c.local_cert = "b.pem".into();
    c.extra = "fragmentation = yes".into();
    Charon::start(&mut l.lab, &l.b, "charon-b", &[c])
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

/// Both IKE_AUTH messages crossed in IKE fragments and nothing else: no IP
/// fragment reached the router, no IKE datagram was over the size.
fn assert_fragmented_only(l: &FragLab) {
    assert_eq!(l.dropped_ip_fragments(), 0, "IP fragments were sent");
    assert_eq!(l.oversized(), 0, "IKE packets over {FRAGMENT_SIZE} bytes");
}

#[test]
fn rsa4096_chain_vpnd_initiator_charon_responder_in_fragments() {
    let mut l = cert_lab("cfi");
    let charon = charon(&mut l);
    let v = vpnd(&mut l, "a", None);
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
    l.assert_charon_fragmented();
    assert_fragmented_only(&l);
    let log = l.lab.log("charon-b");
    assert!(
        log.contains("authentication of 'a.test' with RSA"),
        "charon did not verify an RSA signature:\n{log}"
    );
}

#[test]
fn rsa4096_chain_charon_initiator_vpnd_responder_in_fragments() {
    let mut l = cert_lab("cfr");
    let v = vpnd(&mut l, "a", None);
    let charon = charon(&mut l);
    charon.initiate("net");
    assert!(
        wait(20, || v.installed_children() == 1),
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
    l.assert_charon_fragmented();
    assert_fragmented_only(&l);
}

#[test]
fn rsa4096_chain_vpnd_to_vpnd_in_fragments_both_ways() {
    let mut l = cert_lab("cfv");
    let va = vpnd(&mut l, "a", None);
    let vb = vpnd(&mut l, "b", None);
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
    let down = va.ctl(&["down", "big"]);
    assert!(down.ok(), "{down:?}");
    assert!(wait(5, || vb.installed_children() == 0));
    let up = vb.ctl(&["up", "big"]);
    assert!(up.ok(), "up from b failed: {up:?}\n{}", l.lab.log("vpnd-b"));
    assert!(wait(5, || va.installed_children() == 1));
    assert_fragmented_only(&l);
}

#[test]
fn rsa4096_chain_without_fragmentation_does_not_come_up_either_way() {
    let mut l = cert_lab("cfo");
    let charon = charon(&mut l);
    let v = vpnd(&mut l, "a", Some(0));
    let up = v.ctl(&["up", "big"]);
    assert!(!up.ok(), "came up without fragmentation: {up:?}");
    assert!(!charon.has_installed("net"));
    let dropped = l.dropped_ip_fragments();
    assert!(dropped > 0, "the router dropped no IP fragments");
    charon.initiate("net");
    assert!(
        !wait(8, || v.installed_children() == 1),
        "{}",
        l.lab.log("vpnd-a")
    );
    assert!(l.dropped_ip_fragments() > dropped);
    assert!(!l.lab.log("charon-b").contains("splitting IKE message"));
}
