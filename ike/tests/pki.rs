//! Certificate authentication between two simulated endpoints: chains with
//! an intermediate CA, ECDSA, Ed25519 and RSA keys, DN identities, and the
//! refusals (expired, not yet valid, unknown or unpinned CA, identity not in
//! the certificate, no or garbage certificate).

mod common;

use std::sync::Arc;

use ike::config::{parse_identity, PeerConfig};
use ike::pki::{self, LocalCert, PkiError, PubkeyAuth, SendCert, TrustStore};
use ike::testing::{test_config, Pair};
use ike::wire::{AuthMethod, Cert};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    IsCa, KeyPair, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_ED25519,
};
use rustls_pki_types::CertificateDer;

use common::established;

type Issuer = CertifiedIssuer<'static, KeyPair>;

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CountryName, "CH");
    p.distinguished_name
        .push(DnType::OrganizationName, "strongSwan");
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

fn root(cn: &str) -> Issuer {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    CertifiedIssuer::self_signed(ca_params(cn), key).unwrap()
}

fn intermediate(cn: &str, parent: &Issuer) -> Issuer {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    CertifiedIssuer::signed_by(ca_params(cn), key, parent).unwrap()
}

struct Leaf {
    cert: CertificateDer<'static>,
    key_pem: String,
}

fn leaf_with(
    cn: &str,
    key: KeyPair,
    issuer: &Issuer,
    edit: impl FnOnce(&mut CertificateParams),
) -> Leaf {
    let mut p = CertificateParams::new(vec![cn.to_string()]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "CH");
    p.distinguished_name
        .push(DnType::OrganizationName, "strongSwan");
    p.distinguished_name.push(DnType::CommonName, cn);
    edit(&mut p);
    let cert = p.signed_by(&key, issuer).unwrap();
    Leaf {
        cert: cert.der().clone(),
        key_pem: key.serialize_pem(),
    }
}

fn leaf(cn: &str, alg: &'static SignatureAlgorithm, issuer: &Issuer) -> Leaf {
    leaf_with(cn, KeyPair::generate_for(alg).unwrap(), issuer, |_| {})
}

fn auth(leaf: &Leaf, chain: &[&Issuer], trust: &[&Issuer]) -> PubkeyAuth {
    let mut certs = vec![leaf.cert.clone()];
    certs.extend(chain.iter().map(|i| i.der().clone()));
    let key = pki::parse_private_key(leaf.key_pem.as_bytes()).unwrap();
    PubkeyAuth {
        local: Some(Arc::new(
            LocalCert::new(certs, Arc::new(key), "test.pem").unwrap(),
        )),
        trust: Arc::new(TrustStore {
            cas: trust.iter().map(|i| i.der().clone()).collect(),
            ..Default::default()
        }),
        remote_cacert: None,
        send_cert: SendCert::IfAsked,
    }
}

/// a.test (initiator) and b.test (responder) with these credentials.
fn pair(a: PubkeyAuth, b: PubkeyAuth, edit: impl FnOnce(&mut PeerConfig, &mut PeerConfig)) -> Pair {
    let mut ca = test_config("a-to-b", "a.test", "b.test", "unused", true);
    let mut cb = test_config("b-from-a", "b.test", "a.test", "unused", false);
    ca.psk = None;
    cb.psk = None;
    ca.pubkey = Some(Arc::new(a));
    cb.pubkey = Some(Arc::new(b));
    edit(&mut ca, &mut cb);
    Pair::new(11, ca, cb)
}

fn run(p: &mut Pair) {
    p.initiate(&["net"]);
    p.drive();
}

fn assert_up(p: &Pair) {
    assert!(
        established(p),
        "not established: a={:?} b={:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
    assert_eq!(p.a.children.len(), 1, "the first CHILD SA rides along");
}

/// The responder refused the initiator with a reason containing `why`; the
/// initiator heard AUTHENTICATION_FAILED.
fn assert_refused_by_b(p: &Pair, why: &str) {
    assert!(!established(p));
    let b = p.b.closed_reason().expect("b closed");
    assert!(b.contains(why), "b's reason {b:?} lacks {why:?}");
    let a = p.a.closed_reason().expect("a closed");
    assert!(a.contains("AUTHENTICATION_FAILED"), "a: {a}");
}

#[test]
fn ecdsa_chain_with_intermediate_both_roles() {
    let root = root("Root CA");
    let sub = intermediate("Sub CA", &root);
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &sub);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &sub);
    let mut p = pair(
        auth(&a, &[&sub], &[&root]),
        auth(&b, &[&sub], &[&root]),
        |_, _| {},
    );
    run(&mut p);
    assert_up(&p);
}

#[test]
fn ecdsa_p384_and_ed25519_keys() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P384_SHA384, &root);
    let b = leaf("b.test", &PKCS_ED25519, &root);
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_up(&p);
}

fn openssl_rsa_key() -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl genpkey (package openssl)");
    assert!(out.status.success(), "openssl genpkey failed");
    KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

#[test]
fn rsa_keys_sign_pkcs1_sha256() {
    let root = root("Root CA");
    let a = leaf_with("a.test", openssl_rsa_key(), &root, |_| {});
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_up(&p);
}

#[test]
fn distinguished_names_with_wildcards() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(
        auth(&a, &[], &[&root]),
        auth(&b, &[], &[&root]),
        |ca, cb| {
            ca.local_id = parse_identity("C=CH, O=strongSwan, CN=a.test").unwrap();
            ca.remote_id = Some(parse_identity("C=CH, O=strongSwan, CN=*").unwrap());
            cb.local_id = parse_identity("C=CH, O=strongSwan, CN=b.test").unwrap();
            cb.remote_id = Some(parse_identity("C=CH, O=strongSwan, CN=a.test").unwrap());
        },
    );
    run(&mut p);
    assert_up(&p);
}

#[test]
fn expired_certificate_is_refused() {
    let root = root("Root CA");
    let a = leaf_with(
        "a.test",
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        &root,
        |p| {
            p.not_before = date_time_ymd(2001, 1, 1);
            p.not_after = date_time_ymd(2002, 1, 1);
        },
    );
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_refused_by_b(&p, "has expired");
}

#[test]
fn not_yet_valid_certificate_is_refused() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf_with(
        "b.test",
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        &root,
        |p| {
            p.not_before = date_time_ymd(2090, 1, 1);
            p.not_after = date_time_ymd(2091, 1, 1);
        },
    );
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    // The initiator checks the responder's certificate.
    assert!(!established(&p));
    let a = p.a.closed_reason().expect("a closed");
    assert!(
        a.contains("not valid yet") && a.contains("b.test"),
        "a: {a}"
    );
}

#[test]
fn unknown_ca_is_refused() {
    let root = root("Root CA");
    let other = self::root("Other CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &other);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_refused_by_b(&p, "unknown CA");
}

#[test]
fn other_ca_than_the_pinned_one_is_refused() {
    let root = root("Root CA");
    let other = self::root("Other CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut b_auth = auth(&b, &[], &[&root, &other]);
    b_auth.remote_cacert = Some(other.der().clone());
    let mut p = pair(auth(&a, &[], &[&root]), b_auth, |_, _| {});
    run(&mut p);
    assert_refused_by_b(&p, "pinned remote_cacert");

    // Pinned to the CA that did issue it: accepted.
    let mut b_auth = auth(&b, &[], &[&root, &other]);
    b_auth.remote_cacert = Some(root.der().clone());
    let mut p = pair(auth(&a, &[], &[&root]), b_auth, |_, _| {});
    run(&mut p);
    assert_up(&p);
}

#[test]
fn identity_not_in_certificate_names_both() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(
        auth(&a, &[], &[&root]),
        auth(&b, &[], &[&root]),
        |ca, cb| {
            ca.local_id = parse_identity("mallory.test").unwrap();
            cb.remote_id = None;
        },
    );
    run(&mut p);
    assert_refused_by_b(
        &p,
        "peer identity 'mallory.test' is not in its certificate 'C=CH, O=strongSwan, CN=a.test'",
    );
}

#[test]
fn no_certificate_sent_is_refused() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut a_auth = auth(&a, &[], &[&root]);
    a_auth.send_cert = SendCert::Never;
    let mut p = pair(a_auth, auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_refused_by_b(&p, "peer sent no certificate");
}

#[test]
fn garbage_and_truncated_cert_payloads_are_precise_errors() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let v = auth(&a, &[], &[&root]);
    let id = parse_identity("a.test").unwrap();
    let sig = v.sign(b"octets", &[2]).unwrap();
    let now = rustls_pki_types::UnixTime::now();
    let good = a.cert.to_vec();
    for data in [
        vec![],
        vec![0x30],
        good[..good.len() / 2].to_vec(),
        vec![0xff; 300],
    ] {
        let certs = [Cert { encoding: 4, data }];
        match v.verify(&certs, &id, b"octets", &sig, now) {
            Err(PkiError::BadPeerCertificate { encoding: 4, .. }) => {}
            other => panic!("expected BadPeerCertificate, got {other:?}"),
        }
    }
    let certs = [Cert {
        encoding: 4,
        data: good.clone(),
    }];
    assert_eq!(v.verify(&certs, &id, b"octets", &sig, now), Ok(()));
    assert!(matches!(
        v.verify(&certs, &id, b"other octets", &sig, now),
        Err(PkiError::BadSignature(_))
    ));
    let pgp = [Cert {
        encoding: 2,
        data: good,
    }];
    assert!(matches!(
        v.verify(&pgp, &id, b"octets", &sig, now),
        Err(PkiError::BadPeerCertificate { encoding: 2, .. })
    ));
}

#[test]
fn ecdsa_without_hash_notify_uses_rfc4754_methods() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let v = auth(&a, &[], &[&root]);
    let sig = v.sign(b"octets", &[]).unwrap();
    assert_eq!(sig.method, AuthMethod::ECDSA_SHA256_P256);
    assert_eq!(sig.data.len(), 64);
    let certs = [Cert {
        encoding: 4,
        data: a.cert.to_vec(),
    }];
    let id = parse_identity("a.test").unwrap();
    let now = rustls_pki_types::UnixTime::now();
    assert_eq!(v.verify(&certs, &id, b"octets", &sig, now), Ok(()));
    let sig14 = v.sign(b"octets", &[2, 3]).unwrap();
    assert_eq!(sig14.method, AuthMethod::DIGITAL_SIGNATURE);
    assert!(matches!(
        v.sign(b"octets", &[4]),
        Err(PkiError::NoCommonHash(_))
    ));
}

#[test]
fn key_that_is_not_the_certificates_is_refused() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key = pki::parse_private_key(other.serialize_pem().as_bytes()).unwrap();
    let err = LocalCert::new(vec![a.cert.clone()], Arc::new(key), "certs/a.pem").unwrap_err();
    assert_eq!(
        err.to_string(),
        "private key does not match certificate 'certs/a.pem'"
    );
}

#[test]
fn certreq_carries_sha1_of_each_anchor_key() {
    let root = root("Root CA");
    let other = self::root("Other CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let v = auth(&a, &[], &[&root, &other]);
    let req = v.certreq().unwrap();
    assert_eq!(req.encoding, 4);
    assert_eq!(req.data.len(), 40);
    use rcgen::PublicKeyData;
    let spki = root.key().subject_public_key_info();
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &spki);
    assert_eq!(&req.data[..20], sha1.as_ref());
}

#[test]
fn rfc7296_rsa_sha1_signatures_are_verified() {
    let root = root("Root CA");
    let key = openssl_rsa_key();
    let key_pem = key.serialize_pem();
    let a = leaf_with("a.test", key, &root, |_| {});
    let v = auth(&a, &[], &[&root]);
    let dir = std::env::temp_dir().join(format!("ike-pki-sha1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k.pem"), key_pem).unwrap();
    std::fs::write(dir.join("m"), b"octets").unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args(["dgst", "-sha1", "-sign", "k.pem", "m"])
        .output()
        .expect("openssl dgst");
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success());
    let sig = ike::wire::Authentication {
        method: AuthMethod::RSA_SIG,
        data: out.stdout,
    };
    let certs = [Cert {
        encoding: 4,
        data: a.cert.to_vec(),
    }];
    let id = parse_identity("a.test").unwrap();
    let now = rustls_pki_types::UnixTime::now();
    assert_eq!(v.verify(&certs, &id, b"octets", &sig, now), Ok(()));
    assert!(matches!(
        v.verify(&certs, &id, b"other", &sig, now),
        Err(PkiError::BadSignature(_))
    ));
}
