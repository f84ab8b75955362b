//! Revocation: CRLs checked for every certificate of the peer's chain
//! (strongSwan's policy: listed by its issuer's CRL => refused; no CRL for
//! the issuer => allowed; an expired CRL still revokes), CRL parsing, and
//! passphrase-protected PKCS#8 keys.

mod common;

use std::sync::Arc;

use ike::config::PeerConfig;
use ike::pki::{self, crl, Crl, LocalCert, PkiError, PubkeyAuth, SendCert, TrustStore};
use ike::testing::{test_config, Pair};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, RevokedCertParams,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;

use common::established;

type Issuer = CertifiedIssuer<'static, KeyPair>;

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CountryName, "CH");
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

fn root(cn: &str) -> Issuer {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    CertifiedIssuer::self_signed(ca_params(cn), key).unwrap()
}

fn intermediate(cn: &str, serial: u64, parent: &Issuer) -> Issuer {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = ca_params(cn);
    p.serial_number = Some(SerialNumber::from(serial));
    CertifiedIssuer::signed_by(p, key, parent).unwrap()
}

struct Leaf {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

fn leaf(cn: &str, serial: u64, issuer: &Issuer) -> Leaf {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec![cn.to_string()]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "CH");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    let cert = p.signed_by(&key, issuer).unwrap();
    Leaf {
        cert: cert.der().clone(),
        key,
    }
}

/// A CRL by `issuer` listing `serials`, valid from `from` to `until` (years).
fn crl_by(issuer: &Issuer, serials: &[u64], from: i32, until: i32) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: date_time_ymd(from, 1, 1),
        next_update: date_time_ymd(until, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: date_time_ymd(from, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

fn auth(leaf: &Leaf, chain: &[&Issuer], trust: &[&Issuer], crls: &[Vec<u8>]) -> PubkeyAuth {
    let mut certs = vec![leaf.cert.clone()];
    certs.extend(chain.iter().map(|i| i.der().clone()));
    let key = pki::parse_private_key(leaf.key.serialize_pem().as_bytes()).unwrap();
    PubkeyAuth {
        local: Some(Arc::new(
            LocalCert::new(certs, Arc::new(key), "test.pem").unwrap(),
        )),
        trust: Arc::new(TrustStore {
            cas: trust.iter().map(|i| i.der().clone()).collect(),
            crls: crls.iter().map(|c| Crl::from_der(c).unwrap()).collect(),
        }),
        remote_cacert: None,
        send_cert: SendCert::Always,
        ..Default::default()
    }
}

fn run(a: PubkeyAuth, b: PubkeyAuth) -> Pair {
    let mut ca: PeerConfig = test_config("a-to-b", "a.test", "b.test", "unused", true);
    let mut cb = test_config("b-from-a", "b.test", "a.test", "unused", false);
    ca.psk = None;
    cb.psk = None;
    ca.pubkey = Some(Arc::new(a));
    cb.pubkey = Some(Arc::new(b));
    let mut p = Pair::new(17, ca, cb);
    p.initiate(&["net"]);
    p.drive();
    p
}

fn assert_up(p: &Pair) {
    assert!(
        established(p),
        "not established: a={:?} b={:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
}

#[test]
fn responder_refuses_a_revoked_initiator_naming_it() {
    let ca = root("Root");
    let a = leaf("a.test", 0x1001, &ca);
    let b = leaf("b.test", 0x1002, &ca);
    let crl = crl_by(&ca, &[0x1001], 2020, 2090);
    let p = run(auth(&a, &[], &[&ca], &[]), auth(&b, &[], &[&ca], &[crl]));
    assert!(!established(&p));
    let why = p.b.closed_reason().expect("b closed");
    assert!(why.contains("revoked"), "{why}");
    assert!(why.contains("C=CH, CN=a.test"), "{why}");
    assert!(why.contains("10:01"), "serial in {why}");
    assert!(why.contains("CRL of 'C=CH, CN=Root'"), "{why}");
    let a_why = p.a.closed_reason().expect("a closed");
    assert!(a_why.contains("AUTHENTICATION_FAILED"), "{a_why}");
}

#[test]
fn initiator_refuses_a_revoked_responder() {
    let ca = root("Root");
    let a = leaf("a.test", 7, &ca);
    let b = leaf("b.test", 8, &ca);
    let crl = crl_by(&ca, &[8], 2020, 2090);
    let p = run(auth(&a, &[], &[&ca], &[crl]), auth(&b, &[], &[&ca], &[]));
    assert!(!established(&p));
    let why = p.a.closed_reason().expect("a closed");
    assert!(
        why.contains("revoked") && why.contains("CN=b.test"),
        "{why}"
    );
}

#[test]
fn a_revoked_intermediate_refuses_the_chain_below_it() {
    let ca = root("Root");
    let sub = intermediate("Sub", 0x77, &ca);
    let a = leaf("a.test", 1, &sub);
    let b = leaf("b.test", 2, &ca);
    let crl = crl_by(&ca, &[0x77], 2020, 2090);
    let p = run(
        auth(&a, &[&sub], &[&ca], &[]),
        auth(&b, &[], &[&ca], &[crl]),
    );
    assert!(!established(&p));
    let why = p.b.closed_reason().expect("b closed");
    assert!(why.contains("certificate 'C=CH, CN=Sub'"), "{why}");
    assert!(why.contains("revoked"), "{why}");
}

#[test]
fn a_crl_that_does_not_list_the_peer_or_no_crl_for_its_issuer_allows_it() {
    let ca = root("Root");
    let other = root("Other");
    let a = leaf("a.test", 1, &ca);
    let b = leaf("b.test", 2, &ca);
    // The issuer's CRL lists other serials; another CA's CRL lists serial 1.
    let crls = vec![
        crl_by(&ca, &[3, 4], 2020, 2090),
        crl_by(&other, &[1], 2020, 2090),
    ];
    let p = run(
        auth(&a, &[], &[&ca], &crls),
        auth(&b, &[], &[&ca, &other], &crls),
    );
    assert_up(&p);
}

#[test]
fn an_expired_crl_still_revokes_and_still_allows_the_rest() {
    let ca = root("Root");
    let a = leaf("a.test", 1, &ca);
    let b = leaf("b.test", 2, &ca);
    let stale = crl_by(&ca, &[1], 2019, 2020);
    let parsed = Crl::from_der(&stale).unwrap();
    assert!(parsed.is_expired(1_800_000_000));
    let p = run(
        auth(&a, &[], &[&ca], &[]),
        auth(&b, &[], &[&ca], std::slice::from_ref(&stale)),
    );
    assert!(p.b.closed_reason().unwrap().contains("revoked"));
    let stale_other = crl_by(&ca, &[9], 2019, 2020);
    let p = run(
        auth(&a, &[], &[&ca], &[]),
        auth(&b, &[], &[&ca], &[stale_other]),
    );
    assert_up(&p);
}

#[test]
fn verify_returns_the_revoked_error() {
    let ca = root("Root");
    let b = leaf("b.test", 0xabcd, &ca);
    let me = leaf("a.test", 1, &ca);
    let crl = crl_by(&ca, &[0xabcd], 2020, 2090);
    let pk = auth(&me, &[], &[&ca], &[crl]);
    let cert = ike::wire::Cert {
        encoding: pki::CERT_X509_SIGNATURE,
        data: b.cert.to_vec(),
    };
    let id = ike::config::parse_identity("b.test").unwrap();
    let auth = ike::wire::Authentication {
        method: ike::wire::AuthMethod::DIGITAL_SIGNATURE,
        data: vec![0; 8],
    };
    let now =
        rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
    match pk.verify(&[cert], &id, b"octets", &auth, now) {
        Err(PkiError::Revoked {
            subject,
            revoked,
            serial,
            issuer,
        }) => {
            assert_eq!(subject, "C=CH, CN=b.test");
            assert_eq!(revoked, subject);
            assert_eq!(serial, "ab:cd");
            assert_eq!(issuer, "C=CH, CN=Root");
        }
        other => panic!("expected Revoked, got {other:?}"),
    }
}

#[test]
fn crls_parse_from_pem_and_der_with_their_facts() {
    let ca = root("Root");
    let der = crl_by(&ca, &[5, 0x0100], 2021, 2031);
    let b64 = base64(&der);
    let pem = format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n");
    for bytes in [der.clone(), pem.into_bytes()] {
        let crls = pki::parse_crls(&bytes).unwrap();
        assert_eq!(crls.len(), 1);
        let c = &crls[0];
        assert_eq!(c.issuer, "C=CH, CN=Root");
        assert_eq!(c.revoked, vec![vec![5u8], vec![1, 0]]);
        assert_eq!(c.this_update, 1_609_459_200); // 2021-01-01
        assert_eq!(c.next_update, Some(1_924_992_000)); // 2031-01-01
        assert_eq!(c.number.as_deref(), Some("01"));
        assert!(!c.is_expired(1_800_000_000));
        assert!(c.is_expired(1_924_992_001));
        let leaf5 = leaf("x.test", 5, &ca);
        let leaf6 = leaf("y.test", 6, &ca);
        assert!(c.lists(&leaf5.cert));
        assert!(!c.lists(&leaf6.cert));
    }
}

#[test]
fn garbage_crls_are_precise_errors() {
    let e = pki::parse_crls(b"not a crl").unwrap_err();
    assert!(matches!(e, PkiError::BadCrl(_)), "{e:?}");
    let e = pki::parse_crls(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err();
    assert!(e.to_string().contains("X509 CRL"), "{e}");
    let e =
        pki::parse_crls(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap_err();
    assert!(e.to_string().starts_with("invalid CRL"), "{e}");
}

#[test]
fn the_newest_crl_of_an_issuer_wins() {
    let ca = root("Root");
    let other = root("Other");
    let old = Crl::from_der(&crl_by(&ca, &[1], 2020, 2090)).unwrap();
    let new = Crl::from_der(&crl_by(&ca, &[1, 2], 2022, 2090)).unwrap();
    let oth = Crl::from_der(&crl_by(&other, &[], 2021, 2090)).unwrap();
    let kept = crl::newest_per_issuer(vec![new.clone(), oth.clone(), old.clone()]);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].revoked.len(), 2);
    assert_eq!(kept[1].issuer, "C=CH, CN=Other");
    let kept = crl::newest_per_issuer(vec![old, new]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].this_update, 1_640_995_200); // 2022-01-01
}

#[test]
fn cert_info_shows_what_an_operator_needs() {
    let ca = root("Root");
    let l = leaf("a.test", 0x01ff, &ca);
    let i = pki::cert_info(&l.cert).unwrap();
    assert_eq!(i.subject, "C=CH, CN=a.test");
    assert_eq!(i.issuer, "C=CH, CN=Root");
    assert_eq!(i.sans, vec!["a.test".to_string()]);
    assert_eq!(i.serial, "01:ff");
    assert_eq!(i.key_type, "ECDSA P-256");
    assert!(!i.ca);
    assert!(i.not_after > i.not_before);
    let c = pki::cert_info(ca.der()).unwrap();
    assert!(c.ca);
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn a_forged_crl_fails_closed_with_a_clear_reason() {
    let ca = root("Root");
    // Same name, other key: its CRL does not verify with the real CA's key.
    let forger = root("Root");
    let a = leaf("a.test", 1, &ca);
    let b = leaf("b.test", 2, &ca);
    let forged = crl_by(&forger, &[9], 2020, 2090);
    let p = run(auth(&a, &[], &[&ca], &[]), auth(&b, &[], &[&ca], &[forged]));
    assert!(!established(&p));
    let why = p.b.closed_reason().expect("b closed");
    assert!(
        why.contains("does not verify with the issuer's key"),
        "{why}"
    );
}
