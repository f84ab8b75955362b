//! Certificate authentication (`auth = "pubkey"`) between vpnd and
//! strongSwan's charon in network namespaces, both roles: an ECDSA P-256
//! chain with an intermediate CA made by the openssl command, identities as
//! FQDN subjectAltNames and as DNs (charon's remote id a `CN=*` pattern);
//! Ed25519 and RSA-3072 end entities in both roles; RSA-3072 with
//! RSASSA-PSS, which charon signs and requires (`auth =
//! ike:rsa/pss-sha256`). The same cases between two vpnd.

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

/// vpnd's `up tob` succeeds and charon has the CHILD SA installed.
fn up_to_charon(lab: &Lab, v: &Vpnd, charon: &Charon) {
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
    up_to_charon(&lab, &v, &charon);
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
    up_to_charon(&lab, &v, &charon);
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

/// A line of `log` holding all of `parts`.
fn logged(log: &str, parts: &[&str]) -> bool {
    log.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

fn pss_charon(lab: &mut Lab, b: &Ns) -> Charon {
    let mut c = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", "b.test", "a.test", "");
    // Local: sign RSASSA-PSS with SHA-256; remote: accept nothing else.
    c.auth = "ike:rsa/pss-sha256".into();
    c.local_cert = "b.pem".into();
    Charon::start(lab, b, "charon-b", &[c])
}

fn pss_config(pki: &Path, pss: bool) -> String {
    vpnd_config(pki, "a.test", "b.test").replace(
        "auth = \"pubkey\"\n",
        &format!("auth = \"pubkey\"\nrsa_pss = {pss}\n"),
    )
}

#[test]
fn rsa3072_pss_both_roles() {
    for vpnd_starts in [true, false] {
        let (mut lab, a, b) = lab_with(Leaf::Rsa3072);
        let pki = lab.dir().join("pki");
        let charon = pss_charon(&mut lab, &b);
        let v = Vpnd::start(
            &mut lab,
            &a,
            "vpnd-a",
            &pss_config(&pki, true),
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
        }
        assert!(
            wait(15, || v.installed_children() == 1
                && charon.has_installed("net")),
            "vpnd:\n{}\ncharon:\n{}",
            lab.log("vpnd-a"),
            lab.log("charon-b")
        );
        // charon verified our PSS signature and made its own PSS one,
        // which vpnd verified.
        let log = lab.log("charon-b");
        assert!(
            logged(
                &log,
                &[
                    "authentication of 'a.test' with RSA_EMSA_PSS",
                    "SALT_32 successful"
                ]
            ),
            "{log}"
        );
        assert!(
            logged(
                &log,
                &[
                    "authentication of 'b.test' (myself) with RSA_EMSA_PSS",
                    "SALT_32"
                ]
            ),
            "{log}"
        );
    }
    // Without rsa_pss vpnd signs PKCS#1 v1.5, which charon refuses.
    let (mut lab, a, b) = lab_with(Leaf::Rsa3072);
    let pki = lab.dir().join("pki");
    let charon = pss_charon(&mut lab, &b);
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &pss_config(&pki, false),
        &secrets(&pki),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert!(!up.ok(), "charon accepted PKCS#1: {}", lab.log("charon-b"));
    assert!(
        wait(5, || lab.log("vpnd-a").contains("AUTHENTICATION_FAILED")),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(!charon.has_installed("net"));
}

// vpnd against vpnd: 198.18.0.1 (a) and 198.18.0.2 (b).

fn peer_config(pki: &Path, me: &str, local_id: &str, remote_id: &str, extra: &str) -> String {
    let (la, ra, lts, rts) = if me == "a" {
        ("198.18.0.1", "198.18.0.2", "198.19.1.0/24", "198.19.2.0/24")
    } else {
        ("198.18.0.2", "198.18.0.1", "198.19.2.0/24", "198.19.1.0/24")
    };
    let p = pki.display();
    format!(
        r#"[daemon]
listen = ["{la}"]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = ["{p}/ca.pem"]

[connections.peer]
local_addrs = ["{la}"]
remote_addrs = ["{ra}"]
local_id = "{local_id}"
remote_id = "{remote_id}"
auth = "pubkey"
local_cert = "{p}/{me}-chain.pem"
{extra}
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
encap = true
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2

[connections.peer.children.net]
local_ts = ["{lts}"]
remote_ts = ["{rts}"]
esp_proposals = ["aes256gcm16"]
"#
    )
}

/// Two vpnd with `leaf` certificates; `ids` = (a's id, b's id, the pattern
/// each expects of the other or "" for the other's id); `b_starts` picks
/// the initiator. Returns (a's, b's) remote_id in status.
fn vpnd_pair(leaf: Leaf, ids: (&str, &str, &str), extra: &str, b_starts: bool) -> (String, String) {
    let (mut lab, a, b) = lab_with(leaf);
    let pki = lab.dir().join("pki");
    let chain = std::fs::read_to_string(pki.join("b.pem")).unwrap()
        + &std::fs::read_to_string(pki.join("sub.pem")).unwrap();
    std::fs::write(pki.join("b-chain.pem"), chain).unwrap();
    let (ida, idb, pattern) = ids;
    let expect = |other: &str| {
        if pattern.is_empty() {
            other.to_string()
        } else {
            pattern.to_string()
        }
    };
    let key = |me: &str| format!("[[key]]\nfile = \"{}/{me}.key\"\n", pki.display());
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &peer_config(&pki, "a", ida, &expect(idb), extra),
        &key("a"),
        &[],
    );
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &peer_config(&pki, "b", idb, &expect(ida), extra),
        &key("b"),
        &[],
    );
    let up = if b_starts {
        vb.ctl(&["up", "peer"])
    } else {
        va.ctl(&["up", "peer"])
    };
    assert!(
        up.ok(),
        "up failed: {up:?}\na:\n{}\nb:\n{}",
        lab.log("vpnd-a"),
        lab.log("vpnd-b")
    );
    assert!(
        wait(5, || va.installed_children() == 1
            && vb.installed_children() == 1),
        "a:\n{}\nb:\n{}",
        lab.log("vpnd-a"),
        lab.log("vpnd-b")
    );
    let rid = |v: &Vpnd| {
        v.conn("peer")["ike_sas"][0]["remote_id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    (rid(&va), rid(&vb))
}

#[test]
fn vpnd_pair_ecdsa_chain_fqdn_and_dn() {
    let (a, b) = vpnd_pair(Leaf::Ecdsa, ("a.test", "b.test", ""), "", false);
    assert_eq!((a.as_str(), b.as_str()), ("b.test", "a.test"));
    let dn = |n: &str| format!("C=CH, O=strongSwan, CN={n}.test");
    let (a, b) = vpnd_pair(
        Leaf::Ecdsa,
        (&dn("a"), &dn("b"), "C=CH, O=strongSwan, CN=*"),
        "",
        true,
    );
    assert_eq!((a, b), (dn("b"), dn("a")));
}

#[test]
fn vpnd_pair_rsa3072_pss() {
    vpnd_pair(
        Leaf::Rsa3072,
        ("a.test", "b.test", ""),
        "rsa_pss = true",
        false,
    );
    vpnd_pair(
        Leaf::Rsa3072,
        ("a.test", "b.test", ""),
        "rsa_pss = true",
        true,
    );
}

#[test]
fn vpnd_pair_ed25519() {
    vpnd_pair(Leaf::Ed25519, ("a.test", "b.test", ""), "", false);
    vpnd_pair(Leaf::Ed25519, ("a.test", "b.test", ""), "", true);
}
