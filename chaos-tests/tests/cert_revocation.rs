//! Certificate revocation between vpnd and strongSwan's charon in network
//! namespaces. The PKI (root, "Sub CA", a.test for vpnd, b.test for
//! charon) and the CRLs, signed by Sub CA, come from the openssl command
//! (`openssl ca -revoke` / `-gencrl`).
//!
//! - vpnd, with a CRL listing charon's certificate, refuses charon in both
//!   roles (AUTHENTICATION_FAILED, a log line naming the subject and
//!   "revoked"); `status` shows the peer's certificate when it is not;
//! - charon, with a CRL in its `x509crl/` listing vpnd's certificate,
//!   refuses vpnd;
//! - a CRL loaded by `vpnctl rereadsecrets` refuses the next
//!   authentication and leaves the established tunnel as it was.

use std::path::Path;
use std::time::Duration;

use chaos_tests::certs::{make_crl, make_pki, Leaf};
use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

/// The lab with its PKI in DIR/pki (vpnd's empty CRL in DIR/pki/crls/) and
/// charon's credentials in charon-b/, `charon_revokes` certificates listed
/// in its x509crl/.
fn lab(charon_revokes: &[&str]) -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("crl");
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    let pki = lab.dir().join("pki");
    make_pki(&pki, Leaf::Ecdsa);
    make_crl(&pki, &[], &pki.join("crls/sub.crl"));
    let cdir = lab.dir().join("charon-b");
    for (sub, file) in [
        ("x509", "b.pem"),
        ("x509ca", "ca.pem"),
        ("x509ca", "sub.pem"),
        ("ecdsa", "b.key"),
    ] {
        std::fs::create_dir_all(cdir.join(sub)).unwrap();
        std::fs::copy(pki.join(file), cdir.join(sub).join(file)).unwrap();
    }
    if !charon_revokes.is_empty() {
        make_crl(&pki, charon_revokes, &cdir.join("x509crl/sub.crl"));
    }
    (lab, a, b)
}

fn vpnd_config(pki: &Path) -> String {
    let p = pki.display();
    format!(
        r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = ["{p}/ca.pem"]
crls = ["{p}/crls/"]

[connections.tob]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"
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

fn start_vpnd(lab: &mut Lab, a: &Ns) -> Vpnd {
    let pki = lab.dir().join("pki");
    Vpnd::start(
        lab,
        a,
        "vpnd-a",
        &vpnd_config(&pki),
        &format!("[[key]]\nfile = \"{}/a.key\"\n", pki.display()),
        &[],
    )
}

fn charon(lab: &mut Lab, b: &Ns) -> Charon {
    let mut c = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", "b.test", "a.test", "");
    c.auth = "pubkey".into();
    c.local_cert = "b.pem".into();
    Charon::start(lab, b, "charon-b", &[c])
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

const REVOKED_LOG: &str =
    "peer's certificate 'C=CH, O=strongSwan, CN=b.test' is revoked: certificate 'C=CH, O=strongSwan, CN=b.test'";

#[test]
fn vpnd_refuses_charons_revoked_certificate_in_both_roles() {
    let (mut lab, a, b) = lab(&[]);
    let pki = lab.dir().join("pki");
    // vpnd's CRL lists charon's certificate.
    make_crl(&pki, &["b.pem"], &pki.join("crls/sub.crl"));
    let charon = charon(&mut lab, &b);
    let v = start_vpnd(&mut lab, &a);

    // vpnd initiates: charon answers, vpnd refuses its certificate.
    let up = v.ctl(&["up", "tob"]);
    assert!(!up.ok(), "up succeeded: {up:?}");
    assert!(
        up.stderr.contains("revoked"),
        "{up:?}\n{}",
        lab.log("vpnd-a")
    );
    assert!(!charon.has_installed("net"), "{}", charon.list_sas());

    // charon initiates: vpnd refuses with AUTHENTICATION_FAILED.
    charon.initiate("net");
    assert!(
        wait(15, || lab.log("charon-b").contains("AUTHENTICATION_FAILED")),
        "charon:\n{}\nvpnd:\n{}",
        lab.log("charon-b"),
        lab.log("vpnd-a")
    );
    assert_eq!(v.installed_children(), 0);
    let log = lab.log("vpnd-a");
    assert!(
        log.matches(REVOKED_LOG).count() >= 2,
        "both refusals are logged with the subject:\n{log}"
    );
    assert!(log.contains("is listed in the CRL of 'C=CH, O=strongSwan, CN=Sub CA'"));
}

#[test]
fn charon_refuses_vpnds_revoked_certificate() {
    let (mut lab, a, b) = lab(&["a.pem"]);
    let charon = charon(&mut lab, &b);
    let (ok, creds) = charon.swanctl(&["--list-certs", "--type", "x509crl"]);
    assert!(
        ok && creds.contains("Sub CA"),
        "charon loaded no CRL:\n{creds}"
    );
    let v = start_vpnd(&mut lab, &a);
    let up = v.ctl(&["up", "tob"]);
    assert!(!up.ok(), "up succeeded: {up:?}");
    assert!(
        up.stderr.contains("AUTHENTICATION_FAILED"),
        "{up:?}\n{}",
        lab.log("vpnd-a")
    );
    let clog = lab.log("charon-b");
    assert!(clog.contains("certificate was revoked"), "charon:\n{clog}");
    assert!(!charon.has_installed("net"));
}

#[test]
fn rereadsecrets_revokes_for_the_next_authentication_and_keeps_the_tunnel() {
    let (mut lab, a, b) = lab(&[]);
    let pki = lab.dir().join("pki");
    let charon = charon(&mut lab, &b);
    let v = start_vpnd(&mut lab, &a);
    let up = v.ctl(&["up", "tob"]);
    assert!(up.ok(), "up failed: {up:?}\n{}", lab.log("vpnd-a"));
    assert!(wait(5, || charon.has_installed("net")));
    let ike = v.conn("tob")["ike_sas"][0].clone();
    assert_eq!(ike["remote_cert"], "C=CH, O=strongSwan, CN=b.test");
    let spi = ike["spi_i"].clone();

    make_crl(&pki, &["b.pem"], &pki.join("crls/sub.crl"));
    let r = v.ctl(&["rereadsecrets"]);
    assert!(r.ok(), "{r:?}");
    let certs = v.ctl(&["list-certs", "--json"]);
    let certs: serde_json::Value = serde_json::from_str(&certs.stdout).expect("json");
    assert_eq!(certs["crls"][0]["revoked_count"], 1);

    // The tunnel is as it was.
    std::thread::sleep(Duration::from_secs(2));
    let ike = v.conn("tob")["ike_sas"][0].clone();
    assert_eq!(ike["state"], "established");
    assert_eq!(ike["spi_i"], spi);
    assert_eq!(ike["child_sas"][0]["state"], "installed");
    assert!(charon.has_installed("net"), "{}", charon.list_sas());

    // The next authentication refuses charon's certificate.
    assert!(v.ctl(&["down", "tob"]).ok());
    assert!(wait(10, || !charon.has_installed("net")));
    let up = v.ctl(&["up", "tob"]);
    assert!(!up.ok(), "up succeeded after revocation: {up:?}");
    assert!(up.stderr.contains("revoked"), "{up:?}");
    assert!(lab.log("vpnd-a").contains(REVOKED_LOG));
}
