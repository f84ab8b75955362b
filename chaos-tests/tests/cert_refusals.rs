//! Certificates that must not authenticate, between vpnd and strongSwan's
//! charon in network namespaces: an expired certificate, one not yet valid,
//! one from an unknown CA, one from another CA than the pinned
//! `remote_cacert`, and an identity the certificate does not hold. Each
//! case runs in one lab in every direction that can be built: charon
//! presents the bad credential and vpnd verifies it (as responder and as
//! initiator; vpnd's log must say why), and vpnd presents it and charon
//! verifies (vpnd hears AUTHENTICATION_FAILED or loses the SA). No tunnel
//! comes up and both daemons keep running.
//!
//! The same PKI with good credentials comes up in `cert_interop` and in
//! `refusal_lab_with_good_credentials_comes_up` here.

use std::path::Path;
use std::time::Duration;

use chaos_tests::certs::make_refusal_pki;
use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

/// The lab's PKI and charon's credential directory; `charon_cas` are the CA
/// files charon trusts (from the PKI).
fn lab(tag: &str, charon_cas: &[&str]) -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways(tag);
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    let pki = lab.dir().join("pki");
    make_refusal_pki(&pki);
    let cdir = lab.dir().join("charon");
    for sub in ["x509", "x509ca", "ecdsa"] {
        std::fs::create_dir_all(cdir.join(sub)).unwrap();
    }
    for f in ["b.pem", "b-expired.pem", "b-future.pem", "b-other.pem"] {
        std::fs::copy(pki.join(f), cdir.join("x509").join(f)).unwrap();
    }
    for f in charon_cas {
        std::fs::copy(pki.join(f), cdir.join("x509ca").join(f)).unwrap();
    }
    std::fs::copy(pki.join("b.key"), cdir.join("ecdsa/b.key")).unwrap();
    (lab, a, b)
}

/// vpnd's side of one attempt.
struct V<'a> {
    cert: &'a str,
    local_id: &'a str,
    remote_id: &'a str,
    /// Extra connection lines (`remote_cacert = ...`).
    extra: String,
    cacerts: &'a [&'a str],
}

impl Default for V<'_> {
    fn default() -> Self {
        V {
            cert: "a-chain.pem",
            local_id: "a.test",
            remote_id: "b.test",
            extra: String::new(),
            cacerts: &["ca.pem"],
        }
    }
}

fn vpnd_config(pki: &Path, v: &V) -> String {
    let p = pki.display();
    let cacerts: Vec<String> = v.cacerts.iter().map(|c| format!("\"{p}/{c}\"")).collect();
    format!(
        r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = [{cacerts}]

[connections.tob]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "{lid}"
remote_id = "{rid}"
auth = "pubkey"
local_cert = "{p}/{cert}"
{extra}
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
"#,
        cacerts = cacerts.join(", "),
        lid = v.local_id,
        rid = v.remote_id,
        cert = v.cert,
        extra = v.extra,
    )
}

/// charon's side of one attempt.
struct C<'a> {
    cert: &'a str,
    local_id: &'a str,
    remote_id: &'a str,
    remote_extra: &'a str,
}

impl Default for C<'_> {
    fn default() -> Self {
        C {
            cert: "b.pem",
            local_id: "b.test",
            remote_id: "a.test",
            remote_extra: "",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Starter {
    Vpnd,
    Charon,
}

/// One attempt with fresh daemons named after `run`, vpnd in `ns.0` and
/// charon in `ns.1`: the tunnel must not come up, vpnd's log must come to
/// contain `vpnd_says`, both daemons still answer afterwards.
fn refused(lab: &mut Lab, ns: (&Ns, &Ns), run: &str, v: &V, c: &C, by: Starter, vpnd_says: &str) {
    let (a, b) = ns;
    let pki = lab.dir().join("pki");
    let (vname, cname) = (format!("vpnd-{run}"), format!("charon-{run}"));
    // The credential files live in the shared charon/ directory.
    let cdir = lab.dir().join(&cname);
    std::fs::create_dir_all(&cdir).unwrap();
    for sub in ["x509", "x509ca", "ecdsa"] {
        let to = cdir.join(sub);
        if !to.exists() {
            std::os::unix::fs::symlink(lab.dir().join("charon").join(sub), to).unwrap();
        }
    }
    let mut conn = CharonConn::psk(
        "toa",
        "198.18.0.2",
        "198.18.0.1",
        c.local_id,
        c.remote_id,
        "",
    );
    conn.auth = "pubkey".into();
    conn.local_cert = c.cert.into();
    conn.remote_extra = c.remote_extra.into();
    let charon = Charon::start(lab, b, &cname, &[conn]);
    let secrets = format!("[[key]]\nfile = \"{}/a.key\"\n", pki.display());
    let vpnd = Vpnd::start(lab, a, &vname, &vpnd_config(&pki, v), &secrets, &[]);
    let logs = |lab: &Lab| format!("vpnd:\n{}\ncharon:\n{}", lab.log(&vname), lab.log(&cname));
    match by {
        Starter::Vpnd => {
            let up = vpnd.ctl(&["up", "tob"]);
            assert!(!up.ok(), "{run}: up succeeded: {up:?}\n{}", logs(lab));
            // The operator who ran `vpnctl up` reads the reason too.
            let said = format!("{}{}", up.stdout, up.stderr);
            assert!(said.contains(vpnd_says), "{run}: up said {said:?}");
            let status = vpnd.conn("tob");
            let last = status["last_error"].as_str().unwrap_or("");
            assert!(last.contains(vpnd_says), "{run}: status {status}");
        }
        Starter::Charon => charon.initiate("net"),
    }
    let said = Lab::wait_until(Duration::from_secs(10), || {
        lab.log(&vname).contains(vpnd_says)
    });
    assert!(said, "{run}: vpnd never said {vpnd_says:?}\n{}", logs(lab));
    // Whatever half-state there was is gone, and nothing is installed.
    let gone = Lab::wait_until(Duration::from_secs(10), || {
        vpnd.conn("tob")["ike_sas"]
            .as_array()
            .is_none_or(|s| s.is_empty())
    });
    assert!(
        gone,
        "{run}: vpnd kept an IKE SA: {}\n{}",
        vpnd.conn("tob"),
        logs(lab)
    );
    assert_eq!(vpnd.installed_children(), 0, "{run}");
    // charon keeps no IKE SA either (as responder it was told
    // AUTHENTICATION_FAILED after the fact when vpnd refused it).
    let charon_clean = Lab::wait_until(Duration::from_secs(10), || {
        !charon.list_sas().contains("toa: #")
    });
    assert!(
        charon_clean,
        "{run}: charon kept {}\n{}",
        charon.list_sas(),
        logs(lab)
    );
    // Both still run.
    assert!(
        vpnd.ctl(&["stats"]).ok(),
        "{run}: vpnd is gone\n{}",
        logs(lab)
    );
    assert!(
        charon.swanctl(&["--stats"]).0,
        "{run}: charon is gone\n{}",
        logs(lab)
    );
    lab.stop(&vname);
    lab.stop(&cname);
}

/// What vpnd logs when charon refused our certificate.
const CHARON_REFUSED: &str = "AUTHENTICATION_FAILED";

/// Charon presents `bad`, vpnd verifies (responder, then initiator); vpnd
/// presents `vbad`, charon verifies (vpnd initiator, then responder).
fn both_sides(lab: &mut Lab, a: &Ns, b: &Ns, bad: C, vpnd_says: &str, vbad: V, charon_c: C) {
    let v = V::default();
    refused(lab, (a, b), "cv-r", &v, &bad, Starter::Charon, vpnd_says);
    refused(lab, (a, b), "cv-i", &v, &bad, Starter::Vpnd, vpnd_says);
    refused(
        lab,
        (a, b),
        "vc-i",
        &vbad,
        &charon_c,
        Starter::Vpnd,
        CHARON_REFUSED,
    );
    refused(
        lab,
        (a, b),
        "vc-r",
        &vbad,
        &charon_c,
        Starter::Charon,
        CHARON_REFUSED,
    );
}

#[test]
fn expired_certificate_refused_both_sides() {
    let (mut lab, a, b) = lab("crx", &["ca.pem", "sub.pem"]);
    both_sides(
        &mut lab,
        &a,
        &b,
        C {
            cert: "b-expired.pem",
            ..C::default()
        },
        "peer's certificate 'C=CH, O=strongSwan, CN=b.test' is not trusted: it expired at 2002-01-01 00:00:00 UTC",
        V {
            cert: "a-expired-chain.pem",
            ..V::default()
        },
        C::default(),
    );
}

#[test]
fn not_yet_valid_certificate_refused_both_sides() {
    let (mut lab, a, b) = lab("crf", &["ca.pem", "sub.pem"]);
    both_sides(
        &mut lab,
        &a,
        &b,
        C {
            cert: "b-future.pem",
            ..C::default()
        },
        "is not trusted: it is not valid yet: not before 2090-01-01 00:00:00 UTC",
        V {
            cert: "a-future-chain.pem",
            ..V::default()
        },
        C::default(),
    );
}

#[test]
fn unknown_ca_refused_both_sides() {
    // charon trusts only our CA; vpnd's cacerts hold only it, too.
    let (mut lab, a, b) = lab("cru", &["ca.pem", "sub.pem"]);
    both_sides(
        &mut lab,
        &a,
        &b,
        C {
            cert: "b-other.pem",
            ..C::default()
        },
        "is not trusted: issued by an unknown CA 'C=CH, O=strongSwan, CN=Other CA' (not in cacerts)",
        V {
            cert: "a-other.pem",
            ..V::default()
        },
        C::default(),
    );
}

#[test]
fn other_ca_than_the_pinned_one_refused_both_sides() {
    // Both trust both CAs; each pins the other CA for its peer. (Asked
    // for the pinned CA only, charon sends no intermediate: the issuer
    // named is Sub CA.)
    let (mut lab, a, b) = lab("crp", &["ca.pem", "sub.pem", "other.pem"]);
    let pki = lab.dir().join("pki");
    let pinned = V {
        extra: format!("remote_cacert = \"{}/other.pem\"", pki.display()),
        cacerts: &["ca.pem", "other.pem"],
        ..V::default()
    };
    let v = &pinned;
    let says = "is not trusted: not issued by the pinned remote_cacert 'C=CH, O=strongSwan, CN=Other CA' (issuer 'C=CH, O=strongSwan, CN=Sub CA')";
    refused(
        &mut lab,
        (&a, &b),
        "cv-r",
        v,
        &C::default(),
        Starter::Charon,
        says,
    );
    refused(
        &mut lab,
        (&a, &b),
        "cv-i",
        v,
        &C::default(),
        Starter::Vpnd,
        says,
    );
    let pin = C {
        remote_extra: "cacerts = other.pem",
        ..C::default()
    };
    let v = V::default();
    refused(
        &mut lab,
        (&a, &b),
        "vc-i",
        &v,
        &pin,
        Starter::Vpnd,
        CHARON_REFUSED,
    );
    refused(
        &mut lab,
        (&a, &b),
        "vc-r",
        &v,
        &pin,
        Starter::Charon,
        CHARON_REFUSED,
    );
}

#[test]
fn identity_not_in_certificate_refused() {
    // charon claims mallory.test with b.test's certificate; vpnd expects
    // mallory.test, so only the certificate can refuse it. (vpnd itself
    // refuses to load a local_id its certificate does not hold:
    // control/tests/certs.rs.)
    let (mut lab, a, b) = lab("cri", &["ca.pem", "sub.pem"]);
    let v = V {
        remote_id: "mallory.test",
        ..V::default()
    };
    let c = C {
        local_id: "mallory.test",
        ..C::default()
    };
    let says =
        "peer identity 'mallory.test' is not in its certificate 'C=CH, O=strongSwan, CN=b.test' (subjectAltNames: b.test)";
    refused(&mut lab, (&a, &b), "cv-r", &v, &c, Starter::Charon, says);
    refused(&mut lab, (&a, &b), "cv-i", &v, &c, Starter::Vpnd, says);
}

#[test]
fn refusal_lab_with_good_credentials_comes_up() {
    // The refusal labs' PKI and configs, with the good certificates, pinned
    // to the CA that did issue them: up in both directions.
    let (mut lab, a, b) = lab("crg", &["ca.pem", "sub.pem", "other.pem"]);
    let pki = lab.dir().join("pki");
    for (run, by) in [("i", Starter::Vpnd), ("r", Starter::Charon)] {
        let v = V {
            extra: format!("remote_cacert = \"{}/ca.pem\"", pki.display()),
            cacerts: &["ca.pem", "other.pem"],
            ..V::default()
        };
        let (vname, cname) = (format!("vpnd-{run}"), format!("charon-{run}"));
        let cdir = lab.dir().join(&cname);
        std::fs::create_dir_all(&cdir).unwrap();
        for sub in ["x509", "x509ca", "ecdsa"] {
            std::os::unix::fs::symlink(lab.dir().join("charon").join(sub), cdir.join(sub)).unwrap();
        }
        let mut conn = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", "b.test", "a.test", "");
        conn.auth = "pubkey".into();
        conn.local_cert = "b.pem".into();
        conn.remote_extra = "cacerts = ca.pem".into();
        let charon = Charon::start(&mut lab, &b, &cname, &[conn]);
        let secrets = format!("[[key]]\nfile = \"{}/a.key\"\n", pki.display());
        let vpnd = Vpnd::start(&mut lab, &a, &vname, &vpnd_config(&pki, &v), &secrets, &[]);
        match by {
            Starter::Vpnd => {
                let up = vpnd.ctl(&["up", "tob"]);
                assert!(up.ok(), "{up:?}\n{}\n{}", lab.log(&vname), lab.log(&cname));
            }
            Starter::Charon => charon.initiate("net"),
        }
        assert!(
            Lab::wait_until(Duration::from_secs(10), || vpnd.installed_children() == 1
                && charon.has_installed("net")),
            "{run}: not up\n{}\n{}",
            lab.log(&vname),
            lab.log(&cname)
        );
        // What `refused` looks for to see charon's SA gone is there now.
        assert!(
            charon.list_sas().contains("toa: #"),
            "{}",
            charon.list_sas()
        );
        lab.stop(&vname);
        lab.stop(&cname);
    }
}
