//! strongSwan proposal parsing, wire form and negotiation.

use ike::crypto::{AeadAlg, DhGroup, PrfAlg};
use ike::proposal::{
    accept_response, select, to_wire_all, Chosen, DhMode, ProposalError, ProposalSpec,
};
use ike::wire::{Attribute, Proposal, ProtocolId, Transform, TransformType, ATTR_KEY_LENGTH};

fn ike(s: &str) -> ProposalSpec {
    ProposalSpec::parse_ike(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn esp(s: &str) -> ProposalSpec {
    ProposalSpec::parse_esp(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn t(transform_type: TransformType, id: u16) -> Transform {
    Transform {
        transform_type,
        id,
        attributes: Vec::new(),
    }
}

fn t_kl(transform_type: TransformType, id: u16, bits: u16) -> Transform {
    Transform {
        transform_type,
        id,
        attributes: vec![Attribute::Tv {
            attr_type: ATTR_KEY_LENGTH,
            value: bits,
        }],
    }
}

fn prop(number: u8, protocol: ProtocolId, spi: &[u8], transforms: Vec<Transform>) -> Proposal {
    Proposal {
        number,
        protocol,
        spi: spi.to_vec(),
        transforms,
    }
}

const ENCR: TransformType = TransformType::ENCR;
const PRF: TransformType = TransformType::PRF;
const INTEG: TransformType = TransformType::INTEG;
const DH: TransformType = TransformType::DH;
const ESN: TransformType = TransformType::ESN;

// ------------------------------------------------------------------ parsing

#[test]
fn parses_ike_examples() {
    assert_eq!(
        ike("aes256gcm16-prfsha256-x25519"),
        ProposalSpec {
            protocol: ProtocolId::IKE,
            encr: vec![AeadAlg::AesGcm16_256],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Curve25519],
            esn: vec![],
        }
    );
    assert_eq!(
        ike("aes128gcm16-prfsha384-ecp384"),
        ProposalSpec {
            protocol: ProtocolId::IKE,
            encr: vec![AeadAlg::AesGcm16_128],
            prf: vec![PrfAlg::HmacSha384],
            dh: vec![DhGroup::Ecp384],
            esn: vec![],
        }
    );
    assert_eq!(
        ike("chacha20poly1305-prfsha256-x25519"),
        ProposalSpec {
            protocol: ProtocolId::IKE,
            encr: vec![AeadAlg::ChaCha20Poly1305],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Curve25519],
            esn: vec![],
        }
    );
}

#[test]
fn parses_several_algorithms_per_type_in_given_order() {
    let s = ike("chacha20poly1305-aes128gcm16-prfsha512-prfsha256-ecp384-x25519-ecp256");
    assert_eq!(
        s.encr,
        vec![AeadAlg::ChaCha20Poly1305, AeadAlg::AesGcm16_128]
    );
    assert_eq!(s.prf, vec![PrfAlg::HmacSha512, PrfAlg::HmacSha256]);
    assert_eq!(
        s.dh,
        vec![DhGroup::Ecp384, DhGroup::Curve25519, DhGroup::Ecp256]
    );
    // Order of kinds does not matter.
    assert_eq!(
        ike("x25519-prfsha256-aes256gcm16"),
        ike("aes256gcm16-prfsha256-x25519")
    );
}

#[test]
fn parses_aliases_case_insensitively_and_drops_duplicates() {
    assert_eq!(
        ike("aes256gcm-prfsha256-curve25519"),
        ike("aes256gcm16-prfsha256-x25519")
    );
    assert_eq!(
        ike("aes128gcm-prfsha256-ecp256").encr,
        vec![AeadAlg::AesGcm16_128]
    );
    assert_eq!(
        ike("aes128gcm128-prfsha256-ecp256").encr,
        vec![AeadAlg::AesGcm16_128]
    );
    assert_eq!(
        ike("AES256GCM16-PRFSHA256-X25519"),
        ike("aes256gcm16-prfsha256-x25519")
    );
    assert_eq!(
        ike("aes256gcm16-aes256gcm-prfsha256-x25519-curve25519"),
        ike("aes256gcm16-prfsha256-x25519")
    );
}

#[test]
fn parses_default_keyword() {
    let d = ike("default");
    assert_eq!(d.encr.len(), 3);
    assert_eq!(d.prf.len(), 3);
    assert_eq!(d.dh.len(), 3);
    let e = esp("default");
    assert_eq!(e.encr.len(), 3);
    assert!(e.prf.is_empty() && e.dh.is_empty());
    assert_eq!(e.esn, vec![false]);
    assert!(matches!(
        ProposalSpec::parse_ike("default-x25519"),
        Err(ProposalError::DefaultCombined { .. })
    ));
}

#[test]
fn parses_esp_examples() {
    assert_eq!(
        esp("aes256gcm16"),
        ProposalSpec {
            protocol: ProtocolId::ESP,
            encr: vec![AeadAlg::AesGcm16_256],
            prf: vec![],
            dh: vec![],
            esn: vec![false],
        }
    );
    let s = esp("aes128gcm16-esn");
    assert_eq!(s.encr, vec![AeadAlg::AesGcm16_128]);
    assert_eq!(s.esn, vec![true]);
    let s = esp("chacha20poly1305");
    assert_eq!(s.encr, vec![AeadAlg::ChaCha20Poly1305]);
    assert_eq!(s.esn, vec![false]);
    let s = esp("aes256gcm16-x25519");
    assert_eq!(s.dh, vec![DhGroup::Curve25519]);
    assert_eq!(s.esn, vec![false]);
    assert_eq!(esp("aes256gcm16-esn-noesn").esn, vec![true, false]);
    assert_eq!(esp("aes256gcm16-noesn-esn").esn, vec![false, true]);
}

fn err_ike(s: &str) -> ProposalError {
    ProposalSpec::parse_ike(s).expect_err(s)
}

fn err_esp(s: &str) -> ProposalError {
    ProposalSpec::parse_esp(s).expect_err(s)
}

#[test]
fn errors_name_the_offending_token() {
    let e = err_ike("aes256-sha256-modp2048");
    assert!(e.to_string().contains("'aes256'"), "{e}");
    assert!(e.to_string().contains("aes256-sha256-modp2048"), "{e}");
    assert!(
        matches!(e, ProposalError::UnsupportedAlgorithm { ref token, .. } if token == "aes256")
    );

    let e = err_ike("aes256gcm16-prfmd5-x25519");
    assert!(e.to_string().contains("'prfmd5'"), "{e}");

    let e = err_ike("aes256gcm16-prfsha256-modp2048");
    assert!(
        e.to_string().contains("unsupported algorithm 'modp2048'"),
        "{e}"
    );

    let e = err_ike("aes256gcm16-prfsha256-bogus");
    assert_eq!(
        e.to_string(),
        "unknown algorithm 'bogus' in proposal 'aes256gcm16-prfsha256-bogus'"
    );

    let e = err_ike("aes192gcm16-prfsha256-x25519");
    assert!(e.to_string().contains("'aes192gcm16'"), "{e}");
    let e = err_ike("aes128gcm8-prfsha256-x25519");
    assert!(
        matches!(e, ProposalError::UnsupportedAlgorithm { .. }),
        "{e}"
    );
}

#[test]
fn integrity_algorithms_are_rejected() {
    let e = err_ike("aes256gcm16-sha256-prfsha256-x25519");
    assert!(matches!(e, ProposalError::IntegrityAlgorithm { ref token, .. } if token == "sha256"));
    assert!(
        e.to_string().contains("integrity algorithm 'sha256'"),
        "{e}"
    );
    assert!(matches!(
        err_esp("aes128gcm16-sha1"),
        ProposalError::IntegrityAlgorithm { .. }
    ));
}

#[test]
fn empty_and_incomplete_proposals_are_rejected() {
    assert_eq!(err_ike(""), ProposalError::Empty);
    assert_eq!(err_ike("  "), ProposalError::Empty);
    assert_eq!(err_esp(""), ProposalError::Empty);
    assert!(matches!(
        err_ike("aes256gcm16--x25519"),
        ProposalError::EmptyToken { .. }
    ));
    assert!(matches!(
        err_ike("prfsha256-x25519"),
        ProposalError::NoEncryption { .. }
    ));
    assert!(err_ike("prfsha256-x25519")
        .to_string()
        .contains("no encryption algorithm"));
    let e = err_ike("aes256gcm16-x25519");
    assert!(matches!(e, ProposalError::NoPrf { .. }));
    assert!(e.to_string().contains("IKE proposal needs a PRF"), "{e}");
    assert!(matches!(
        err_ike("aes256gcm16-prfsha256"),
        ProposalError::NoDh { .. }
    ));
    assert!(matches!(
        err_esp("x25519-esn"),
        ProposalError::NoEncryption { .. }
    ));
}

#[test]
fn esp_rejects_prf_and_ike_rejects_esn() {
    let e = err_esp("aes256gcm16-prfsha256");
    assert!(
        matches!(e, ProposalError::NotAllowed { ref token, protocol: "ESP", .. } if token == "prfsha256")
    );
    assert!(
        e.to_string().contains("'prfsha256'") && e.to_string().contains("ESP"),
        "{e}"
    );
    assert!(matches!(
        err_ike("aes256gcm16-prfsha256-x25519-esn"),
        ProposalError::NotAllowed {
            protocol: "IKE",
            ..
        }
    ));
}

#[test]
fn parses_proposal_lists() {
    let l =
        ProposalSpec::parse_ike_list("aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256!")
            .unwrap();
    assert_eq!(
        l,
        vec![
            ike("aes256gcm16-prfsha256-x25519"),
            ike("aes128gcm16-prfsha256-ecp256")
        ]
    );
    let l = ProposalSpec::parse_esp_list("aes256gcm16-esn,chacha20poly1305").unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(
        ProposalSpec::parse_esp_list("").unwrap_err(),
        ProposalError::Empty
    );
    assert!(ProposalSpec::parse_esp_list("aes256gcm16,,").is_err());
}

#[test]
fn strongswan_string_round_trips() {
    for s in [
        "aes256gcm16-prfsha256-x25519",
        "aes128gcm16-aes256gcm16-prfsha384-prfsha256-ecp384-ecp256",
        "chacha20poly1305-prfsha512-x25519",
    ] {
        let spec = ike(s);
        assert_eq!(spec.to_string_strongswan(), s);
        assert_eq!(spec.to_string(), s);
        assert_eq!(ike(&spec.to_string_strongswan()), spec);
    }
    for s in [
        "aes256gcm16",
        "aes128gcm16-esn",
        "aes256gcm16-x25519",
        "aes256gcm16-esn-noesn",
    ] {
        let spec = esp(s);
        assert_eq!(spec.to_string_strongswan(), s);
        assert_eq!(esp(&spec.to_string_strongswan()), spec);
    }
    assert_eq!(
        ike("aes256gcm-prfsha256-curve25519").to_string(),
        "aes256gcm16-prfsha256-x25519"
    );
    assert_eq!(esp("aes256gcm16-noesn").to_string(), "aes256gcm16");
}

// ------------------------------------------------------------------ wire form

#[test]
fn ike_spec_to_wire_has_encr_with_key_length_prf_and_dh() {
    let p = ike("aes256gcm16-chacha20poly1305-prfsha256-x25519-ecp256").to_wire(1, &[], false);
    assert_eq!(p.number, 1);
    assert_eq!(p.protocol, ProtocolId::IKE);
    assert!(p.spi.is_empty());
    assert_eq!(
        p.transforms,
        vec![
            t_kl(ENCR, 20, 256),
            t(ENCR, 28),
            t(PRF, 5),
            t(DH, 31),
            t(DH, 19),
        ]
    );
    // IKE always carries its DH groups.
    assert_eq!(
        ike("aes128gcm16-prfsha384-ecp384")
            .to_wire(2, &[1; 8], true)
            .transforms,
        vec![t_kl(ENCR, 20, 128), t(PRF, 6), t(DH, 20)]
    );
}

#[test]
fn esp_spec_to_wire_has_encr_optional_dh_and_esn() {
    let spec = esp("aes256gcm16-x25519-esn-noesn");
    let spi = [0xde, 0xad, 0xbe, 0xef];
    let with_dh = spec.to_wire(3, &spi, true);
    assert_eq!(with_dh.number, 3);
    assert_eq!(with_dh.protocol, ProtocolId::ESP);
    assert_eq!(with_dh.spi, spi);
    assert_eq!(
        with_dh.transforms,
        vec![t_kl(ENCR, 20, 256), t(DH, 31), t(ESN, 1), t(ESN, 0)]
    );
    let without = spec.to_wire(3, &spi, false);
    assert_eq!(
        without.transforms,
        vec![t_kl(ENCR, 20, 256), t(ESN, 1), t(ESN, 0)]
    );
    // No groups: include_dh adds nothing.
    assert_eq!(
        esp("chacha20poly1305").to_wire(1, &spi, true).transforms,
        vec![t(ENCR, 28), t(ESN, 0)]
    );
}

#[test]
fn to_wire_all_numbers_proposals_from_one() {
    let specs =
        ProposalSpec::parse_ike_list("aes256gcm16-prfsha256-x25519,aes128gcm16-prfsha256-ecp256")
            .unwrap();
    let w = to_wire_all(&specs, &[], false);
    assert_eq!(w.iter().map(|p| p.number).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(w[1], specs[1].to_wire(2, &[], false));
}

// ------------------------------------------------------------------ selection

#[test]
fn to_wire_then_select_round_trips() {
    for s in [
        "aes256gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha384-ecp384",
        "chacha20poly1305-prfsha512-ecp256",
    ] {
        let spec = ike(s);
        let chosen = select(
            std::slice::from_ref(&spec),
            &[spec.to_wire(1, &[], false)],
            DhMode::Negotiate,
        )
        .expect(s);
        assert_eq!(chosen.protocol, ProtocolId::IKE);
        assert_eq!(chosen.number, 1);
        assert_eq!(chosen.encr, spec.encr[0]);
        assert_eq!(chosen.prf, Some(spec.prf[0]));
        assert_eq!(chosen.dh, Some(spec.dh[0]));
        assert!(!chosen.esn);
    }
    let spec = esp("aes128gcm16-esn");
    let spi = [1, 2, 3, 4];
    let chosen = select(
        std::slice::from_ref(&spec),
        &[spec.to_wire(1, &spi, false)],
        DhMode::Ignore,
    )
    .unwrap();
    assert_eq!(chosen.spi, spi);
    assert_eq!(chosen.encr, AeadAlg::AesGcm16_128);
    assert!(chosen.esn);
    assert_eq!((chosen.prf, chosen.dh), (None, None));
}

#[test]
fn select_follows_our_preference_not_theirs() {
    // The peer prefers ChaCha20 and ECP-256; we prefer AES-256 and X25519.
    let theirs = ike("chacha20poly1305-aes256gcm16-prfsha512-prfsha256-ecp256-x25519").to_wire(
        1,
        &[],
        false,
    );
    let ours = ike("aes256gcm16-chacha20poly1305-prfsha256-prfsha512-x25519-ecp256");
    let c = select(&[ours], &[theirs], DhMode::Negotiate).unwrap();
    assert_eq!(c.encr, AeadAlg::AesGcm16_256);
    assert_eq!(c.prf, Some(PrfAlg::HmacSha256));
    assert_eq!(c.dh, Some(DhGroup::Curve25519));
}

#[test]
fn select_walks_our_specs_first_then_their_proposals() {
    let theirs = vec![
        ike("aes128gcm16-prfsha256-ecp256").to_wire(1, &[], false),
        ike("aes256gcm16-prfsha384-x25519").to_wire(2, &[], false),
    ];
    let ours = vec![
        ike("aes256gcm16-prfsha384-x25519"),
        ike("aes128gcm16-prfsha256-ecp256"),
    ];
    // Our first spec only matches their second proposal: it wins.
    let c = select(&ours, &theirs, DhMode::Negotiate).unwrap();
    assert_eq!(c.number, 2);
    assert_eq!(c.encr, AeadAlg::AesGcm16_256);
    // With a spec matching both, their first proposal wins.
    let c = select(&[ike("default")], &theirs, DhMode::Negotiate).unwrap();
    assert_eq!(c.number, 1);
}

#[test]
fn select_without_overlap_gives_none() {
    let theirs = [ike("aes128gcm16-prfsha256-ecp256").to_wire(1, &[], false)];
    assert_eq!(
        select(
            &[ike("aes256gcm16-prfsha256-ecp256")],
            &theirs,
            DhMode::Negotiate
        ),
        None
    );
    assert_eq!(
        select(
            &[ike("aes128gcm16-prfsha384-ecp256")],
            &theirs,
            DhMode::Negotiate
        ),
        None
    );
    assert_eq!(
        select(
            &[ike("aes128gcm16-prfsha256-x25519")],
            &theirs,
            DhMode::Negotiate
        ),
        None
    );
    assert_eq!(select(&[], &theirs, DhMode::Negotiate), None);
    assert_eq!(select(&[ike("default")], &[], DhMode::Negotiate), None);
    // Protocols must match.
    let esp_prop = [esp("aes128gcm16").to_wire(1, &[1, 2, 3, 4], false)];
    assert_eq!(
        select(&[ike("default")], &esp_prop, DhMode::Negotiate),
        None
    );
    assert!(select(&[esp("aes128gcm16")], &esp_prop, DhMode::Ignore).is_some());
}

#[test]
fn select_skips_unknown_transform_ids_and_attributes() {
    let theirs = prop(
        1,
        ProtocolId::IKE,
        &[],
        vec![
            t_kl(ENCR, 12, 256), // AES-CBC: unknown to us
            t_kl(ENCR, 20, 192), // AES-GCM-192: unsupported
            t(ENCR, 1000),       // private use
            Transform {
                // Key length plus an attribute we do not know: skipped.
                transform_type: ENCR,
                id: 28,
                attributes: vec![Attribute::Tv {
                    attr_type: 99,
                    value: 1,
                }],
            },
            t_kl(ENCR, 20, 128),
            t(PRF, 2), // PRF_HMAC_SHA1
            t(PRF, 7),
            t(DH, 14), // MODP-2048
            t(DH, 20),
        ],
    );
    let c = select(&[ike("default")], &[theirs], DhMode::Negotiate).unwrap();
    assert_eq!(c.encr, AeadAlg::AesGcm16_128);
    assert_eq!(c.prf, Some(PrfAlg::HmacSha512));
    assert_eq!(c.dh, Some(DhGroup::Ecp384));
    assert_eq!(c.describe(), "AES_GCM_16_128/PRF_HMAC_SHA2_512/ECP_384");
}

#[test]
fn select_rejects_proposals_with_unknown_types_or_integrity() {
    let base = ike("aes256gcm16-prfsha256-x25519").to_wire(1, &[], false);
    let ours = [ike("aes256gcm16-prfsha256-x25519")];

    let mut unknown_type = base.clone();
    unknown_type.transforms.push(t(TransformType(6), 1));
    assert_eq!(
        select(&ours, &[unknown_type.clone()], DhMode::Negotiate),
        None
    );

    let mut with_integ = base.clone();
    with_integ.transforms.push(t(INTEG, 12)); // AUTH_HMAC_SHA2_256_128
    assert_eq!(
        select(&ours, &[with_integ.clone()], DhMode::Negotiate),
        None
    );

    let mut integ_none = base.clone();
    integ_none.transforms.push(t(INTEG, 0));
    assert!(select(&ours, &[integ_none], DhMode::Negotiate).is_some());

    // The bad proposals are skipped, a later good one is taken.
    let mut good = base.clone();
    good.number = 3;
    let c = select(&ours, &[unknown_type, with_integ, good], DhMode::Negotiate).unwrap();
    assert_eq!(c.number, 3);

    // An IKE proposal missing a type we need is unacceptable.
    let mut no_prf = base.clone();
    no_prf.transforms.retain(|t| t.transform_type != PRF);
    assert_eq!(select(&ours, &[no_prf], DhMode::Negotiate), None);
}

#[test]
fn esp_esn_selection() {
    let spi = [9, 9, 9, 9];
    let theirs = [esp("aes256gcm16-esn-noesn").to_wire(1, &spi, false)];
    assert!(
        !select(&[esp("aes256gcm16")], &theirs, DhMode::Ignore)
            .unwrap()
            .esn
    );
    assert!(
        select(&[esp("aes256gcm16-esn")], &theirs, DhMode::Ignore)
            .unwrap()
            .esn
    );
    // Peer wants ESN only; we only do no-ESN.
    let esn_only = [esp("aes256gcm16-esn").to_wire(1, &spi, false)];
    assert_eq!(
        select(&[esp("aes256gcm16")], &esn_only, DhMode::Ignore),
        None
    );
    // A proposal without ESN transform means no ESN.
    let no_esn = [prop(1, ProtocolId::ESP, &spi, vec![t_kl(ENCR, 20, 256)])];
    assert!(
        !select(&[esp("aes256gcm16-esn-noesn")], &no_esn, DhMode::Ignore)
            .unwrap()
            .esn
    );
    assert_eq!(
        select(&[esp("aes256gcm16-esn")], &no_esn, DhMode::Ignore),
        None
    );
    // A PRF has no place in an ESP proposal.
    let mut with_prf = theirs[0].clone();
    with_prf.transforms.push(t(PRF, 5));
    assert_eq!(
        select(&[esp("aes256gcm16")], &[with_prf], DhMode::Ignore),
        None
    );
}

#[test]
fn dh_mode_ignore_ignores_peer_dh_in_ike_auth() {
    let spi = [1, 1, 1, 1];
    let theirs = [esp("aes256gcm16-ecp256").to_wire(1, &spi, true)];
    // Our spec has PFS groups too, but they play no role in IKE_AUTH.
    for ours in [esp("aes256gcm16"), esp("aes256gcm16-x25519")] {
        let c = select(&[ours], &theirs, DhMode::Ignore).unwrap();
        assert_eq!(c.dh, None);
        assert_eq!(
            c.to_wire(1, &[2, 2, 2, 2]).transforms,
            vec![t_kl(ENCR, 20, 256), t(ESN, 0)]
        );
    }
}

#[test]
fn dh_mode_negotiate_requires_a_common_group_when_we_want_pfs() {
    let spi = [1, 1, 1, 1];
    let pfs_x25519 = [esp("aes256gcm16-ecp256-x25519").to_wire(1, &spi, true)];
    let no_pfs = [esp("aes256gcm16").to_wire(1, &spi, true)];

    let c = select(&[esp("aes256gcm16-x25519")], &pfs_x25519, DhMode::Negotiate).unwrap();
    assert_eq!(c.dh, Some(DhGroup::Curve25519));
    assert_eq!(c.describe(), "AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ");
    // We want PFS, the peer offers none.
    assert_eq!(
        select(&[esp("aes256gcm16-x25519")], &no_pfs, DhMode::Negotiate),
        None
    );
    // We want PFS with a group the peer does not offer.
    assert_eq!(
        select(&[esp("aes256gcm16-ecp384")], &pfs_x25519, DhMode::Negotiate),
        None
    );
}

#[test]
fn dh_mode_negotiate_without_our_groups_requires_none_from_peer() {
    let spi = [1, 1, 1, 1];
    let ours = [esp("aes256gcm16")];
    let no_pfs = [esp("aes256gcm16").to_wire(1, &spi, true)];
    assert_eq!(select(&ours, &no_pfs, DhMode::Negotiate).unwrap().dh, None);
    // The peer insists on PFS.
    let pfs = [esp("aes256gcm16-x25519").to_wire(1, &spi, true)];
    assert_eq!(select(&ours, &pfs, DhMode::Negotiate), None);
    // The peer offers PFS or NONE: NONE it is.
    let optional = [prop(
        1,
        ProtocolId::ESP,
        &spi,
        vec![t_kl(ENCR, 20, 256), t(DH, 31), t(DH, 0), t(ESN, 0)],
    )];
    assert_eq!(
        select(&ours, &optional, DhMode::Negotiate).unwrap().dh,
        None
    );
}

// ------------------------------------------------------------------ chosen

#[test]
fn describe_uses_strongswan_names() {
    let c = Chosen {
        protocol: ProtocolId::IKE,
        number: 1,
        spi: vec![],
        encr: AeadAlg::AesGcm16_256,
        prf: Some(PrfAlg::HmacSha256),
        dh: Some(DhGroup::Curve25519),
        esn: false,
    };
    assert_eq!(c.describe(), "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519");
    assert_eq!(c.to_string(), c.describe());
    let c = Chosen {
        protocol: ProtocolId::ESP,
        number: 1,
        spi: vec![1, 2, 3, 4],
        encr: AeadAlg::AesGcm16_256,
        prf: None,
        dh: None,
        esn: false,
    };
    assert_eq!(c.describe(), "AES_GCM_16_256/NO_EXT_SEQ");
    let c = Chosen {
        encr: AeadAlg::ChaCha20Poly1305,
        dh: Some(DhGroup::Ecp384),
        esn: true,
        ..c
    };
    assert_eq!(c.describe(), "CHACHA20_POLY1305/ECP_384/EXT_SEQ");
    let c = Chosen {
        protocol: ProtocolId::IKE,
        encr: AeadAlg::AesGcm16_128,
        prf: Some(PrfAlg::HmacSha384),
        dh: Some(DhGroup::Ecp256),
        esn: false,
        ..c
    };
    assert_eq!(c.describe(), "AES_GCM_16_128/PRF_HMAC_SHA2_384/ECP_256");
}

#[test]
fn chosen_to_wire_is_a_single_transform_proposal() {
    let theirs = [ike("default").to_wire(1, &[], false)];
    let c = select(
        &[ike("chacha20poly1305-prfsha384-ecp256")],
        &theirs,
        DhMode::Negotiate,
    )
    .unwrap();
    let w = c.to_wire(1, &[7; 8]);
    assert_eq!(w.spi, vec![7; 8]);
    assert_eq!(w.transforms, vec![t(ENCR, 28), t(PRF, 6), t(DH, 19)]);
}

// ------------------------------------------------------------------ accept_response

#[test]
fn accept_response_accepts_the_responders_choice() {
    let offered = ProposalSpec::parse_ike_list(
        "aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp256,chacha20poly1305-prfsha512-ecp384",
    )
    .unwrap();
    let sent = to_wire_all(&offered, &[], false);
    // The responder (strongSwan-like) picks from our proposals.
    for responder in [
        ike("aes128gcm16-prfsha384-ecp256"),
        ike("chacha20poly1305-prfsha512-ecp384"),
    ] {
        let chosen = select(&[responder], &sent, DhMode::Negotiate).unwrap();
        let response = [chosen.to_wire(chosen.number, &[])];
        let accepted = accept_response(&offered, &response, DhMode::Negotiate).unwrap();
        assert_eq!(accepted, chosen);
    }
}

#[test]
fn accept_response_rejects_two_transforms_of_a_type() {
    let offered = [ike("aes256gcm16-aes128gcm16-prfsha256-x25519-ecp256")];
    let resp = |transforms| [prop(1, ProtocolId::IKE, &[], transforms)];
    let good = vec![t_kl(ENCR, 20, 256), t(PRF, 5), t(DH, 31)];
    assert!(accept_response(&offered, &resp(good), DhMode::Negotiate).is_some());
    for bad in [
        vec![
            t_kl(ENCR, 20, 256),
            t_kl(ENCR, 20, 128),
            t(PRF, 5),
            t(DH, 31),
        ],
        vec![t_kl(ENCR, 20, 256), t(PRF, 5), t(DH, 31), t(DH, 19)],
        vec![t_kl(ENCR, 20, 256), t(PRF, 5), t(PRF, 5), t(DH, 31)],
    ] {
        assert_eq!(
            accept_response(&offered, &resp(bad), DhMode::Negotiate),
            None
        );
    }
}

#[test]
fn accept_response_rejects_transforms_not_offered() {
    let offered = [ike("aes256gcm16-prfsha256-x25519")];
    let resp = |transforms| [prop(1, ProtocolId::IKE, &[], transforms)];
    for bad in [
        vec![t_kl(ENCR, 20, 128), t(PRF, 5), t(DH, 31)], // AES-128 not offered
        vec![t(ENCR, 28), t(PRF, 5), t(DH, 31)],         // ChaCha not offered
        vec![t_kl(ENCR, 20, 256), t(PRF, 6), t(DH, 31)], // SHA-384 not offered
        vec![t_kl(ENCR, 20, 256), t(PRF, 5), t(DH, 19)], // ECP-256 not offered
        vec![t_kl(ENCR, 20, 256), t(PRF, 5), t(DH, 31), t(INTEG, 12)],
        vec![t_kl(ENCR, 20, 256), t(PRF, 5)], // missing DH
        vec![t_kl(ENCR, 20, 256), t(DH, 31)], // missing PRF
        vec![t(PRF, 5), t(DH, 31)],           // missing ENCR
        vec![
            t_kl(ENCR, 20, 256),
            t(PRF, 5),
            t(DH, 31),
            t(TransformType(9), 1),
        ],
    ] {
        assert_eq!(
            accept_response(&offered, &resp(bad.clone()), DhMode::Negotiate),
            None,
            "{bad:?}"
        );
    }
}

#[test]
fn accept_response_checks_count_number_and_protocol() {
    let offered = [
        ike("aes256gcm16-chacha20poly1305-prfsha256-x25519"),
        ike("aes128gcm16-prfsha256-ecp256"),
    ];
    // Our own multi-transform proposal echoed back is not a choice.
    let echoed = offered[0].to_wire(1, &[], false);
    assert_eq!(
        accept_response(&offered, &[echoed], DhMode::Negotiate),
        None
    );
    let one = |n: u8, spec: &ProposalSpec| {
        let c = select(
            std::slice::from_ref(spec),
            &[spec.to_wire(n, &[], false)],
            DhMode::Negotiate,
        )
        .unwrap();
        c.to_wire(n, &[])
    };
    assert!(accept_response(&offered, &[one(1, &offered[0])], DhMode::Negotiate).is_some());
    assert!(accept_response(&offered, &[one(2, &offered[1])], DhMode::Negotiate).is_some());
    // Proposal number pointing at the wrong spec, or at none.
    assert_eq!(
        accept_response(&offered, &[one(2, &offered[0])], DhMode::Negotiate),
        None
    );
    assert_eq!(
        accept_response(&offered, &[one(3, &offered[0])], DhMode::Negotiate),
        None
    );
    assert_eq!(
        accept_response(&offered, &[one(0, &offered[0])], DhMode::Negotiate),
        None
    );
    // Not exactly one proposal.
    assert_eq!(accept_response(&offered, &[], DhMode::Negotiate), None);
    assert_eq!(
        accept_response(
            &offered,
            &[one(1, &offered[0]), one(2, &offered[1])],
            DhMode::Negotiate
        ),
        None
    );
    // Wrong protocol.
    let mut wrong = one(1, &offered[0]);
    wrong.protocol = ProtocolId::ESP;
    assert_eq!(accept_response(&offered, &[wrong], DhMode::Negotiate), None);
}

#[test]
fn accept_response_for_esp() {
    let spi = [5, 6, 7, 8];
    let offered = [esp("aes256gcm16-x25519-esn-noesn")];
    let resp = |transforms| [prop(1, ProtocolId::ESP, &spi, transforms)];

    // IKE_AUTH: we sent no DH; a stray DH is ignored.
    let c = accept_response(
        &offered,
        &resp(vec![t_kl(ENCR, 20, 256), t(ESN, 1)]),
        DhMode::Ignore,
    )
    .unwrap();
    assert_eq!((c.dh, c.esn, c.spi.as_slice()), (None, true, &spi[..]));
    let c = accept_response(
        &offered,
        &resp(vec![t_kl(ENCR, 20, 256), t(DH, 31), t(ESN, 0)]),
        DhMode::Ignore,
    )
    .unwrap();
    assert_eq!(c.dh, None);
    assert!(!c.esn);

    // CREATE_CHILD_SA with PFS: the group is required.
    let c = accept_response(
        &offered,
        &resp(vec![t_kl(ENCR, 20, 256), t(DH, 31), t(ESN, 0)]),
        DhMode::Negotiate,
    )
    .unwrap();
    assert_eq!(c.dh, Some(DhGroup::Curve25519));
    assert_eq!(
        accept_response(
            &offered,
            &resp(vec![t_kl(ENCR, 20, 256), t(ESN, 0)]),
            DhMode::Negotiate
        ),
        None
    );
    assert_eq!(
        accept_response(
            &offered,
            &resp(vec![t_kl(ENCR, 20, 256), t(DH, 19), t(ESN, 0)]),
            DhMode::Negotiate
        ),
        None
    );
    // Two ESN transforms.
    assert_eq!(
        accept_response(
            &offered,
            &resp(vec![t_kl(ENCR, 20, 256), t(ESN, 0), t(ESN, 1)]),
            DhMode::Ignore
        ),
        None
    );

    // ESN not offered.
    let no_esn = [esp("aes256gcm16")];
    assert_eq!(
        accept_response(
            &no_esn,
            &resp(vec![t_kl(ENCR, 20, 256), t(ESN, 1)]),
            DhMode::Ignore
        ),
        None
    );
    // Missing ESN means no ESN, fine when we offered it.
    assert!(
        !accept_response(&no_esn, &resp(vec![t_kl(ENCR, 20, 256)]), DhMode::Ignore)
            .unwrap()
            .esn
    );
    // No PFS wanted: NONE or nothing is fine, a group is not.
    assert!(accept_response(
        &no_esn,
        &resp(vec![t_kl(ENCR, 20, 256), t(DH, 0), t(ESN, 0)]),
        DhMode::Negotiate
    )
    .is_some());
    assert_eq!(
        accept_response(
            &no_esn,
            &resp(vec![t_kl(ENCR, 20, 256), t(DH, 31), t(ESN, 0)]),
            DhMode::Negotiate
        ),
        None
    );
}
