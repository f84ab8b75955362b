//! `auth = "pubkey"` configuration: local_cert with its chain, [[key]] in
//! the secrets files, [daemon] cacerts, remote_cacert, send_cert, DN
//! identities; and the refusals at load (no matching key, identity not in
//! the certificate, unreadable or garbage files, passphrases). Certificates
//! come from the openssl command.

use std::path::Path;
use std::process::Command;

use control::config;
use ike::pki::SendCert;
use ike::wire::IdType;

mod common;
use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, sub.pem (intermediate), gw.pem (a.test, issued by sub) with
/// gw.key (PKCS#8) and gw.sec1 (SEC1), chain.pem = gw.pem + sub.pem, and
/// other.key, a key of no certificate's.
fn make_pki(dir: &Dir) {
    let p = dir.path("");
    std::fs::write(
        p.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        p.join("gw.ext"),
        "subjectAltName=DNS:a.test\nextendedKeyUsage=1.3.6.1.5.5.7.3.17\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/C=CH/O=strongSwan/CN=Root CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    openssl(&p, &args);
    for (name, subj) in [
        ("sub", "/C=CH/O=strongSwan/CN=Sub CA"),
        ("gw", "/C=CH/O=strongSwan/CN=a.test"),
    ] {
        let mut args = vec!["req"];
        args.extend(ec);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        openssl(&p, &args);
    }
    openssl(
        &p,
        &[
            "x509",
            "-req",
            "-in",
            "sub.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "sub.pem",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
        ],
    );
    openssl(
        &p,
        &[
            "x509",
            "-req",
            "-in",
            "gw.csr",
            "-CA",
            "sub.pem",
            "-CAkey",
            "sub.key",
            "-CAcreateserial",
            "-out",
            "gw.pem",
            "-days",
            "30",
            "-extfile",
            "gw.ext",
        ],
    );
    openssl(&p, &["ec", "-in", "gw.key", "-out", "gw.sec1"]);
    openssl(
        &p,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.key",
        ],
    );
    let chain = std::fs::read_to_string(p.join("gw.pem")).unwrap()
        + &std::fs::read_to_string(p.join("sub.pem")).unwrap();
    std::fs::write(p.join("chain.pem"), chain).unwrap();
}

fn conf(local_id: &str, extra: &str) -> String {
    format!(
        "[daemon]\nsecrets = [\"secrets.toml\"]\ncacerts = [\"ca.pem\"]\n\n[connections.pk]\nremote_addrs = [\"198.18.0.2\"]\nlocal_id = \"{local_id}\"\nremote_id = \"C=CH, O=strongSwan, CN=*\"\nauth = \"pubkey\"\nlocal_cert = \"chain.pem\"\n{extra}\n{}",
        child("pk")
    )
}

#[test]
fn pubkey_connection_loads_chain_key_and_anchors() {
    let dir = Dir::new("certs-ok");
    make_pki(&dir);
    for key in ["gw.key", "gw.sec1"] {
        dir.write_secret("secrets.toml", &format!("[[key]]\nfile = \"{key}\"\n"));
        let main = dir.write(
            "vpnd.toml",
            &conf(
                "C=CH, O=strongSwan, CN=a.test",
                "remote_cacert = \"sub.pem\"\nsend_cert = \"always\"\n",
            ),
        );
        let c = ok(config::load(&main));
        let p = c.connections[0].to_peer_config(&c.secrets).unwrap();
        assert!(p.psk.is_none());
        let pk = p.pubkey.expect("pubkey");
        assert_eq!(
            pk.local.as_ref().unwrap().chain.len(),
            2,
            "{key}: end entity and intermediate"
        );
        assert_eq!(pk.trust.cas.len(), 1);
        assert!(pk.remote_cacert.is_some());
        assert_eq!(pk.send_cert, SendCert::Always);
        assert_eq!(p.local_id.id_type, IdType::ID_DER_ASN1_DN);
        assert_eq!(
            ike::config::display_identity(&p.local_id),
            "C=CH, O=strongSwan, CN=a.test"
        );
        assert_eq!(pk.cert_payloads(false).len(), 2);
        assert!(pk.certreq().is_some());
    }
    // An FQDN from the subjectAltName works as well.
    let main = dir.write("vpnd.toml", &conf("a.test", ""));
    let c = ok(config::load(&main));
    let p = c.connections[0].to_peer_config(&c.secrets).unwrap();
    let pk = p.pubkey.unwrap();
    assert_eq!(pk.send_cert, SendCert::IfAsked);
    assert!(!pk.rsa_pss, "PKCS#1 v1.5 unless asked");
    let main = dir.write("vpnd.toml", &conf("a.test", "rsa_pss = true\n"));
    let c = ok(config::load(&main));
    let p = c.connections[0].to_peer_config(&c.secrets).unwrap();
    assert!(p.pubkey.unwrap().rsa_pss);
    let main = dir.write("vpnd.toml", &conf("a.test", "rsa_pss = \"yes\"\n"));
    let errs = errors(config::load(&main));
    assert!(errs.iter().any(|e| e.contains("rsa_pss")), "{errs:?}");
}

#[test]
fn pubkey_refusals_name_the_file() {
    let dir = Dir::new("certs-bad");
    make_pki(&dir);
    let cert = d(&dir.path("chain.pem"));

    dir.write_secret("secrets.toml", "[[key]]\nfile = \"other.key\"\n");
    let main = dir.write("vpnd.toml", &conf("a.test", ""));
    let c = ok(config::load(&main));
    let e = c.connections[0].to_peer_config(&c.secrets).unwrap_err();
    assert_eq!(
        e,
        format!(
            "no private key matches certificate '{cert}' (keys in the secrets files: '{}')",
            d(&dir.path("other.key"))
        )
    );

    dir.write_secret("secrets.toml", "[[key]]\nfile = \"gw.key\"\n");
    let main = dir.write("vpnd.toml", &conf("b.test", ""));
    let c = ok(config::load(&main));
    let e = c.connections[0].to_peer_config(&c.secrets).unwrap_err();
    assert_eq!(
        e,
        format!("local_id 'b.test' is not in certificate '{cert}' (subject 'C=CH, O=strongSwan, CN=a.test')")
    );

    std::fs::write(
        dir.path("garbage.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let s = dir.write_secret(
        "secrets.toml",
        "[[key]]\nfile = \"garbage.key\"\n[[key]]\nfile = \"gw.key\"\npassphrase = \"x\"\n",
    );
    let errs = errors(config::load(&main));
    // (A passphrase on a key that is not encrypted is not an error.)
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!(
            "{}:2: key.file: '{}': invalid private key",
            d(&s),
            d(&dir.path("garbage.key"))
        )),
        "{errs:?}"
    );

    dir.write_secret("secrets.toml", "[[key]]\nfile = \"gw.key\"\n");
    std::fs::write(dir.path("ca.pem"), "not a certificate").unwrap();
    let errs = errors(config::load(&main));
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("CA certificate '{}'", d(&dir.path("ca.pem"))))),
        "{errs:?}"
    );
}
