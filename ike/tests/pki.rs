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
        rsa_pss: false,
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
    assert_refused_by_b(&p, "it expired at 2002-01-01 00:00:00 UTC");
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
        a.contains("it is not valid yet: not before 2090-01-01 00:00:00 UTC")
            && a.contains("b.test"),
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
    assert_refused_by_b(
        &p,
        "issued by an unknown CA 'C=CH, O=strongSwan, CN=Other CA'",
    );
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
    assert_refused_by_b(
        &p,
        "not issued by the pinned remote_cacert 'C=CH, O=strongSwan, CN=Other CA' \
         (issuer 'C=CH, O=strongSwan, CN=Root CA')",
    );

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
        "peer identity 'mallory.test' is not in its certificate 'C=CH, O=strongSwan, CN=a.test' \
         (subjectAltNames: a.test)",
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

fn openssl_rsa3072_key() -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
        ])
        .output()
        .expect("openssl genpkey (package openssl)");
    assert!(out.status.success(), "openssl genpkey failed");
    KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

/// The RSASSA-PSS parameters of a method-14 AUTH payload: (hash OID, MGF1
/// hash OID, salt length), read with x509-parser.
fn pss_params(auth: &ike::wire::Authentication) -> (String, String, u32) {
    use x509_parser::prelude::FromDer;
    use x509_parser::signature_algorithm::RsaSsaPssParams;
    use x509_parser::x509::AlgorithmIdentifier;
    assert_eq!(auth.method, AuthMethod::DIGITAL_SIGNATURE);
    let len = auth.data[0] as usize;
    let (rest, ai) = AlgorithmIdentifier::from_der(&auth.data[1..1 + len]).unwrap();
    assert!(rest.is_empty());
    assert_eq!(ai.algorithm.to_id_string(), "1.2.840.113549.1.1.10");
    let p = RsaSsaPssParams::try_from(ai.parameters.as_ref().unwrap()).unwrap();
    let mgf = p.mask_gen_algorithm().unwrap();
    assert_eq!(mgf.mgf.to_id_string(), "1.2.840.113549.1.1.8");
    assert_eq!(p.trailer_field(), 1);
    (
        p.hash_algorithm_oid().to_id_string(),
        mgf.hash.to_id_string(),
        p.salt_length(),
    )
}

#[test]
fn rsa_pss_signatures_both_roles() {
    let root = root("Root CA");
    let a = leaf_with("a.test", openssl_rsa3072_key(), &root, |_| {});
    let b = leaf_with("b.test", openssl_rsa_key(), &root, |_| {});
    let pss = |l: &Leaf| PubkeyAuth {
        rsa_pss: true,
        ..auth(l, &[], &[&root])
    };
    // The AlgorithmIdentifier strongSwan sends and expects: the hash, MGF1
    // with the same hash, a salt of the hash's length.
    let v = pss(&a);
    let sha256 = "2.16.840.1.101.3.4.2.1";
    let sig = v.sign(b"octets", &[2, 3, 4, 5]).unwrap();
    assert_eq!(pss_params(&sig), (sha256.into(), sha256.into(), 32));
    assert_eq!(sig.data.len(), 1 + sig.data[0] as usize + 384);
    let sha384 = "2.16.840.1.101.3.4.2.2";
    let sig384 = v.sign(b"octets", &[3]).unwrap();
    assert_eq!(pss_params(&sig384), (sha384.into(), sha384.into(), 48));
    let sha512 = "2.16.840.1.101.3.4.2.3";
    let sig512 = v.sign(b"octets", &[4]).unwrap();
    assert_eq!(pss_params(&sig512), (sha512.into(), sha512.into(), 64));
    let certs = [Cert {
        encoding: 4,
        data: a.cert.to_vec(),
    }];
    let id = parse_identity("a.test").unwrap();
    let now = rustls_pki_types::UnixTime::now();
    for s in [&sig, &sig384, &sig512] {
        assert_eq!(v.verify(&certs, &id, b"octets", s, now), Ok(()));
        assert!(matches!(
            v.verify(&certs, &id, b"other octets", s, now),
            Err(PkiError::BadSignature(_))
        ));
    }
    // Without rsa_pss the same key signs PKCS#1 v1.5 (sha256WithRSAEncryption).
    let pkcs1 = auth(&a, &[], &[&root]).sign(b"octets", &[2]).unwrap();
    assert_eq!(pkcs1.data[..4], [15, 0x30, 0x0d, 0x06]);

    // A handshake where both sign PSS (a 3072-bit and a 2048-bit key).
    let mut p = pair(pss(&a), pss(&b), |_, _| {});
    run(&mut p);
    assert_up(&p);
    // A PSS signer and a PKCS#1 one get along: both verify either.
    let mut p = pair(pss(&a), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_up(&p);
}

#[test]
fn rsa_pss_is_ignored_by_other_keys() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let v = PubkeyAuth {
        rsa_pss: true,
        ..auth(&a, &[], &[&root])
    };
    let sig = v.sign(b"octets", &[2]).unwrap();
    assert_eq!(
        sig.data[1..13],
        [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
    );
}

/// Our "certificate" as sent in CERT payloads, whatever it holds.
fn with_chain(mut v: PubkeyAuth, chain: Vec<Vec<u8>>) -> PubkeyAuth {
    let key = v.local.as_ref().unwrap().key.clone();
    v.local = Some(Arc::new(LocalCert {
        chain: chain.into_iter().map(CertificateDer::from).collect(),
        key,
    }));
    v
}

#[test]
fn garbage_and_truncated_cert_payloads_refused_in_both_roles() {
    let root = root("Root CA");
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &root);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let refusal =
        |why: String| format!("CERT payload (encoding 4) is not an X.509 certificate: {why}");
    let garbage = (
        vec![0xde; 200],
        refusal(
            "200 bytes that are not DER (a certificate starts with 0x30, this with 0xde)".into(),
        ),
    );
    let truncated = |c: &CertificateDer| {
        let n = c.len() / 2;
        (
            c[..n].to_vec(),
            refusal(format!(
                "truncated: {n} of the {} bytes its DER header announces",
                c.len()
            )),
        )
    };
    for (bad_a, bad_b) in [
        (garbage.clone(), garbage),
        (truncated(&a.cert), truncated(&b.cert)),
    ] {
        // The initiator sends it: the responder refuses.
        let mut p = pair(
            with_chain(auth(&a, &[], &[&root]), vec![bad_a.0]),
            auth(&b, &[], &[&root]),
            |_, _| {},
        );
        run(&mut p);
        assert_refused_by_b(&p, &bad_a.1);
        assert!(p.a.children.is_empty() && p.b.children.is_empty());

        // The responder sends it: the initiator refuses, and tells it.
        let mut p = pair(
            auth(&a, &[], &[&root]),
            with_chain(auth(&b, &[], &[&root]), vec![bad_b.0]),
            |_, _| {},
        );
        run(&mut p);
        assert!(!p.a.is_established() && !p.b.is_established());
        let why = p.a.closed_reason().expect("a closed");
        assert!(why.contains(&bad_b.1) && why.contains("b.test"), "a: {why}");
        assert!(p.a.children.is_empty());
    }
    // The same pair with real certificates comes up.
    let mut p = pair(auth(&a, &[], &[&root]), auth(&b, &[], &[&root]), |_, _| {});
    run(&mut p);
    assert_up(&p);
}

#[test]
fn expired_intermediate_is_named() {
    let root = root("Root CA");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = ca_params("Sub CA");
    params.not_before = date_time_ymd(2001, 1, 1);
    params.not_after = date_time_ymd(2002, 6, 30);
    let sub = CertifiedIssuer::signed_by(params, key, &root).unwrap();
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &sub);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(
        auth(&a, &[&sub], &[&root]),
        auth(&b, &[], &[&root]),
        |_, _| {},
    );
    run(&mut p);
    assert_refused_by_b(
        &p,
        "peer's certificate 'C=CH, O=strongSwan, CN=a.test' is not trusted: \
         its CA 'C=CH, O=strongSwan, CN=Sub CA' expired at 2002-06-30 00:00:00 UTC (now 20",
    );
}

#[test]
fn a_ca_certificate_as_end_entity_is_refused() {
    let root = root("Root CA");
    let sub = intermediate("Sub CA", &root);
    let a = leaf("a.test", &PKCS_ECDSA_P256_SHA256, &sub);
    let b = leaf("b.test", &PKCS_ECDSA_P256_SHA256, &root);
    let mut p = pair(
        with_chain(auth(&a, &[], &[&root]), vec![sub.der().to_vec()]),
        auth(&b, &[], &[&root]),
        |_, _| {},
    );
    run(&mut p);
    assert_refused_by_b(
        &p,
        "peer's certificate 'C=CH, O=strongSwan, CN=Sub CA' is not trusted: \
         it is a CA certificate, not an end entity",
    );
}
