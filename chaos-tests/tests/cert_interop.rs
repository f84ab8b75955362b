//! Certificate authentication (`auth = "pubkey"`) between vpnd and
//! strongSwan's charon in network namespaces, both roles: an ECDSA P-256
//! chain with an intermediate CA made by the openssl command, identities as
//! FQDN subjectAltNames and as DNs (charon's remote id a `CN=*` pattern);
//! Ed25519 and RSA-3072 end entities in both roles.

use std::path::Path;
use std::time::Duration;

use chaos_tests::certs::{charon_credentials, make_pki, Leaf};
use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

fn lab() -> (Lab, Ns, Ns) {
    lab_with(Leaf::Ecdsa)
}

fn lab_with(leaf: Leaf) -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("cert");
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    let pki = lab.dir().join("pki");
    make_pki(&pki, leaf);
    // charon's credentials, beside its swanctl.conf.
    charon_credentials(&pki, &lab.dir().join("charon-b"), leaf);
    (lab, a, b)
}

fn vpnd_config(pki: &Path, local_id: &str, remote_id: &str) -> String {
    let p = pki.display();
    format!(
        r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = ["{p}/ca.pem"]

[connections.tob]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "{local_id}"
remote_id = "{remote_id}"
auth = "pubkey"
local_cert = "{p}/a-chain.pem"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
encap = true
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2

[connections.tob.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    )
}

fn secrets(pki: &Path) -> String {
    format!("[[key]]\nfile = \"{}/a.key\"\n", pki.display())
}

fn charon(lab: &mut Lab, b: &Ns, local_id: &str, remote_id: &str) -> Charon {
    let mut c = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", local_id, remote_id, "");
    c.auth = "pubkey".into();
    c.local_cert = "b.pem".into();
    Charon::start(lab, b, "charon-b", &[c])
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

#[test]
fn ecdsa_chain_fqdn_vpnd_initiator() {
    let (mut lab, a, b) = lab();
    let pki = lab.dir().join("pki");
    let charon = charon(&mut lab, &b, "b.test", "a.test");
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(&pki, "a.test", "b.test"),
        &secrets(&pki),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        lab.log("charon-b")
    );
    assert!(
        charon.has_installed("net"),
        "charon:\n{}",
        charon.list_sas()
    );
    let ike = &v.conn("tob")["ike_sas"][0];
    assert_eq!(ike["remote_id"], "b.test");
    assert_eq!(ike["child_sas"][0]["state"], "installed");
}

#[test]
fn ecdsa_chain_dn_charon_initiator() {
    let (mut lab, a, b) = lab();
    let pki = lab.dir().join("pki");
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(
            &pki,
            "C=CH, O=strongSwan, CN=a.test",
            "C=CH, O=strongSwan, CN=*",
        ),
        &secrets(&pki),
        &[],
    );
    let charon = charon(
        &mut lab,
        &b,
        "\"C=CH, O=strongSwan, CN=b.test\"",
        "\"C=CH, O=strongSwan, CN=a.test\"",
    );
    charon.initiate("net");
    assert!(
        wait(15, || v.installed_children() == 1),
        "vpnd:\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "charon:\n{}",
        charon.list_sas()
    );
    let ike = &v.conn("tob")["ike_sas"][0];
    assert_eq!(ike["initiator"], false);
    assert_eq!(ike["remote_id"], "C=CH, O=strongSwan, CN=b.test");
}

#[test]
fn ecdsa_chain_fqdn_charon_initiator() {
    let (mut lab, a, b) = lab();
    let pki = lab.dir().join("pki");
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(&pki, "a.test", "b.test"),
        &secrets(&pki),
        &[],
    );
    let charon = charon(&mut lab, &b, "b.test", "a.test");
    charon.initiate("net");
    assert!(
        wait(15, || v.installed_children() == 1),
        "vpnd:\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        lab.log("charon-b")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "charon:\n{}",
        charon.list_sas()
    );
}

#[test]
fn ecdsa_chain_dn_vpnd_initiator() {
    let (mut lab, a, b) = lab();
    let pki = lab.dir().join("pki");
    let charon = charon(
        &mut lab,
        &b,
        "\"C=CH, O=strongSwan, CN=b.test\"",
        "\"C=CH, O=strongSwan, CN=*\"",
    );
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(
            &pki,
            "C=CH, O=strongSwan, CN=a.test",
            "C=CH, O=strongSwan, CN=*",
        ),
        &secrets(&pki),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert!(
        up.ok(),
        "up failed: {up:?}\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        lab.log("charon-b")
    );
    assert!(
        charon.has_installed("net"),
        "charon:\n{}",
        charon.list_sas()
    );
    let ike = &v.conn("tob")["ike_sas"][0];
    assert_eq!(ike["remote_id"], "C=CH, O=strongSwan, CN=b.test");
}

/// One lab per leaf kind: vpnd initiator, then charon initiator.
fn both_roles(leaf: Leaf) {
    for vpnd_starts in [true, false] {
        let (mut lab, a, b) = lab_with(leaf);
        let pki = lab.dir().join("pki");
        let charon = charon(&mut lab, &b, "b.test", "a.test");
        let v = Vpnd::start(
            &mut lab,
            &a,
            "vpnd-a",
            &vpnd_config(&pki, "a.test", "b.test"),
            &secrets(&pki),
            &[],
        );
        if vpnd_starts {
            let up = v.ctl(&["up", "tob"]);
            assert!(
                up.ok(),
                "up failed: {up:?}\n{}\ncharon:\n{}",
                lab.log("vpnd-a"),
                lab.log("charon-b")
            );
        } else {
            charon.initiate("net");
            assert!(
                wait(15, || v.installed_children() == 1),
                "vpnd:\n{}\ncharon:\n{}",
                lab.log("vpnd-a"),
                lab.log("charon-b")
            );
        }
        assert!(
            wait(5, || charon.has_installed("net")),
            "charon:\n{}",
            charon.list_sas()
        );
    }
}

#[test]
fn ed25519_both_roles() {
    both_roles(Leaf::Ed25519);
}

#[test]
fn rsa3072_both_roles() {
    both_roles(Leaf::Rsa3072);
}
