//! Traffic selectors (§2.9), identity parsing, and PSK AUTH (§2.15) checked
//! against an independent HMAC computation.

use ike::auth::{psk_auth, signed_octets, verify_psk_auth};
use ike::config::{display_identity, parse_identity};
use ike::crypto::PrfAlg;
use ike::ts::{all_within, intersect, narrow, parse_ts, Display};
use ike::wire::IdType;
use ring::hmac;

fn d(s: &str) -> String {
    Display(&parse_ts(s).unwrap()).to_string()
}

#[test]
fn ts_parse_and_display_round_trip() {
    for s in [
        "198.19.1.0/24",
        "198.19.1.5/32",
        "0.0.0.0/0",
        "2001:db8::/32",
        "::/0",
        "198.19.2.0/25[6/443]",
        "198.19.2.0/24[17]",
        "10.0.0.0/8[6/1000-2000]",
    ] {
        assert_eq!(d(s), s);
    }
    assert_eq!(d("198.19.2.0/24[tcp/443]"), "198.19.2.0/24[6/443]");
    assert_eq!(d("198.19.1.77/24"), "198.19.1.0/24", "host bits are masked");
}

#[test]
fn ts_parse_errors_name_the_input() {
    for (s, why) in [
        ("198.19.1.0/33", "prefix length too long"),
        ("nonsense/8", "not an IP address"),
        ("10.0.0.0/8[tcp/9-1]", "port range is reversed"),
        ("10.0.0.0/8[tcp", "missing ']'"),
        ("10.0.0.0/8[bogus]", "unknown protocol"),
    ] {
        let e = parse_ts(s).unwrap_err();
        assert_eq!(e.why, why, "{s}");
        assert!(e.to_string().contains(s));
    }
}

#[test]
fn ts_intersection_rules() {
    let a = parse_ts("198.19.0.0/16").unwrap();
    let b = parse_ts("198.19.2.0/24[tcp/443]").unwrap();
    assert_eq!(intersect(&a, &b), Some(b.clone()));
    let v6 = parse_ts("2001:db8::/32").unwrap();
    assert_eq!(intersect(&a, &v6), None, "families never intersect");
    let udp = parse_ts("198.19.2.0/24[udp]").unwrap();
    assert_eq!(intersect(&b, &udp), None, "different protocols");
    let ports = parse_ts("198.19.0.0/16[tcp/400-500]").unwrap();
    assert_eq!(intersect(&ports, &b), Some(b.clone()));
    assert_eq!(intersect(&parse_ts("198.19.3.0/24").unwrap(), &b), None);
}

#[test]
fn ts_narrowing_keeps_only_the_overlap_without_duplicates() {
    let proposed = vec![
        parse_ts("198.19.2.7/32").unwrap(),
        parse_ts("198.19.0.0/16").unwrap(),
    ];
    let ours = vec![
        parse_ts("198.19.2.0/24").unwrap(),
        parse_ts("198.19.9.0/24").unwrap(),
    ];
    let n = narrow(&proposed, &ours);
    let shown: Vec<String> = n.iter().map(|t| Display(t).to_string()).collect();
    assert_eq!(
        shown,
        vec!["198.19.2.7/32", "198.19.2.0/24", "198.19.9.0/24"]
    );
    assert!(all_within(&n, &proposed));
    assert!(!all_within(
        &[parse_ts("198.20.0.0/16").unwrap()],
        &proposed
    ));
    assert!(
        !all_within(&[], &proposed),
        "an empty answer is not acceptable"
    );
}

#[test]
fn identities_parse_like_strongswan() {
    let cases = [
        ("198.18.0.1", IdType::ID_IPV4_ADDR, vec![198, 18, 0, 1]),
        ("a.test", IdType::ID_FQDN, b"a.test".to_vec()),
        ("@a.test", IdType::ID_FQDN, b"a.test".to_vec()),
        ("ops@a.test", IdType::ID_RFC822_ADDR, b"ops@a.test".to_vec()),
        ("@#0a0B", IdType::ID_KEY_ID, vec![0x0a, 0x0b]),
    ];
    for (s, t, data) in cases {
        let id = parse_identity(s).unwrap();
        assert_eq!((id.id_type, id.data.clone()), (t, data), "{s}");
    }
    assert_eq!(
        parse_identity("2001:db8::1").unwrap().id_type,
        IdType::ID_IPV6_ADDR
    );
    assert_eq!(
        display_identity(&parse_identity("2001:db8::1").unwrap()),
        "2001:db8::1"
    );
    assert_eq!(
        display_identity(&parse_identity("@#0a0b").unwrap()),
        "@#0a0b"
    );
    assert!(parse_identity("").is_err());
    assert!(parse_identity("@#abc").is_err());
    let dn = parse_identity("C=CH, O=strongSwan, CN=moon").unwrap();
    assert_eq!(dn.id_type, IdType::ID_DER_ASN1_DN);
    assert_eq!(display_identity(&dn), "C=CH, O=strongSwan, CN=moon");
    assert!(parse_identity("C=CH, XX=strongSwan")
        .unwrap_err()
        .to_string()
        .contains("unknown DN attribute"));
}

#[test]
fn psk_auth_matches_independent_hmac_computation() {
    let psk = b"pre-shared secret";
    let sk_p = [0x42u8; 32];
    let msg = b"IKE_SA_INIT bytes";
    let nonce = [7u8; 32];
    let id = parse_identity("a.test").unwrap();
    let octets = signed_octets(PrfAlg::HmacSha256, &sk_p, msg, &nonce, &id);

    // Independently: prf(SK_p, IDType|RESERVED|data), then
    // prf(prf(PSK, "Key Pad for IKEv2"), msg | nonce | maced_id).
    let sign = |key: &[u8], data: &[u8]| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    };
    let mut id_body = vec![2u8, 0, 0, 0];
    id_body.extend_from_slice(b"a.test");
    let maced = sign(&sk_p, &id_body);
    let expected_octets = [&msg[..], &nonce[..], &maced[..]].concat();
    assert_eq!(octets, expected_octets);
    let expected = sign(&sign(psk, b"Key Pad for IKEv2"), &expected_octets);
    assert_eq!(psk_auth(PrfAlg::HmacSha256, psk, &octets), expected);

    assert!(verify_psk_auth(PrfAlg::HmacSha256, psk, &octets, &expected));
    let mut wrong = expected.clone();
    wrong[31] ^= 1;
    assert!(!verify_psk_auth(PrfAlg::HmacSha256, psk, &octets, &wrong));
    assert!(!verify_psk_auth(
        PrfAlg::HmacSha256,
        psk,
        &octets,
        &expected[..16]
    ));
    assert!(!verify_psk_auth(
        PrfAlg::HmacSha256,
        b"other",
        &octets,
        &expected
    ));
}

#[test]
fn child_keymat_order_initiator_to_responder_first() {
    use ike::crypto::AeadAlg;
    use ike::keys::derive_child_keys;
    let sk_d = [9u8; 32];
    let (ni, nr) = ([1u8; 32], [2u8; 32]);
    let i = derive_child_keys(
        PrfAlg::HmacSha256,
        &sk_d,
        AeadAlg::AesGcm16_256,
        None,
        &ni,
        &nr,
        true,
    );
    let r = derive_child_keys(
        PrfAlg::HmacSha256,
        &sk_d,
        AeadAlg::AesGcm16_256,
        None,
        &ni,
        &nr,
        false,
    );
    assert_eq!(i.outbound[..], r.inbound[..]);
    assert_eq!(i.inbound[..], r.outbound[..]);
    // KEYMAT = prf+(SK_d, Ni | Nr): the first 36 bytes protect i → r.
    let keymat = PrfAlg::HmacSha256.prf_plus(&sk_d, &[&ni[..], &nr[..]].concat(), 72);
    assert_eq!(i.outbound[..], keymat[..36]);
    assert_eq!(i.inbound[..], keymat[36..]);
}
