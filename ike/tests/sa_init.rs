//! IKE_SA_INIT and the responder path: proposal and KE group choice,
//! COOKIEs, stateless refusals, half-open expiry, and which of several
//! connections on one address pair may take the SA.

use ike::crypto::{AeadAlg, DhGroup, PrfAlg, SeededRandom};
use ike::proposal::ProposalSpec;
use ike::sa::natd::CookieJar;
use ike::sa::IkeSa;
use ike::testing::{test_config, Dir, Pair};
use ike::wire::{ExchangeType, Message, NotifyType, Payload};

mod common;
use common::*;

#[test]
fn responder_prefers_its_own_proposal_order() {
    let mut p = pair_with(|a, b| {
        a.ike_proposals = ProposalSpec::parse_ike_list(
            "aes128gcm16-prfsha256-x25519,aes256gcm16-prfsha384-x25519",
        )
        .unwrap();
        b.ike_proposals = ProposalSpec::parse_ike_list(
            "aes256gcm16-prfsha384-x25519,aes128gcm16-prfsha256-x25519",
        )
        .unwrap();
    });
    up(&mut p);
    let chosen = p.a.sa().proposal().unwrap();
    assert_eq!(chosen.encr, AeadAlg::AesGcm16_256);
    assert_eq!(chosen.prf, Some(PrfAlg::HmacSha384));
}

#[test]
fn sa_init_invalid_ke_payload_retries_with_requested_group() {
    let mut p = pair_with(|a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        b.ike_proposals = vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-ecp256").unwrap()];
    });
    up(&mut p);
    assert_eq!(
        p.b.stateless_replies,
        vec!["INVALID_KE_PAYLOAD: the peer's KE group is not the one we chose"]
    );
    assert_eq!(p.a.sa().proposal().unwrap().dh, Some(DhGroup::Ecp256));
}

#[test]
fn sa_init_cookie_demanded_then_accepted() {
    let mut p = Pair::default_with_seed(3);
    p.cookies = Some(CookieJar::new(&mut SeededRandom::new(99)));
    up(&mut p);
    assert_eq!(p.b.stateless_replies, vec!["COOKIE: a cookie is required"]);
}

#[test]
fn cookie_from_another_initiator_is_refused() {
    let mut rng = SeededRandom::new(5);
    let jar = CookieJar::new(&mut rng);
    let ni = [7u8; 32];
    let c = jar.make(&ni, "198.18.0.1".parse().unwrap(), 42);
    assert!(jar.verify(&c, &ni, "198.18.0.1".parse().unwrap(), 42));
    assert!(!jar.verify(&c, &ni, "198.18.0.9".parse().unwrap(), 42));
    assert!(!jar.verify(&c, &ni, "198.18.0.1".parse().unwrap(), 43));
    let mut rotated = jar;
    rotated.rotate(&mut rng);
    assert!(
        rotated.verify(&c, &ni, "198.18.0.1".parse().unwrap(), 42),
        "previous secret stays valid"
    );
    rotated.rotate(&mut rng);
    assert!(!rotated.verify(&c, &ni, "198.18.0.1".parse().unwrap(), 42));
}

#[test]
fn sa_init_proposal_mismatch_is_no_proposal_chosen() {
    let mut p = pair_with(|a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("chacha20poly1305-prfsha256-x25519").unwrap()];
        b.ike_proposals = vec![ProposalSpec::parse_ike("aes256gcm16-prfsha384-ecp384").unwrap()];
    });
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "peer rejected our proposals: NO_PROPOSAL_CHOSEN"
    );
    assert_eq!(
        p.b.stateless_replies,
        vec!["NO_PROPOSAL_CHOSEN: none of the peer's proposals is acceptable"]
    );
    assert!(p.b.sa.is_none(), "responder keeps no state");
}

#[test]
fn garbage_to_responder_path_never_creates_state() {
    let mut rng = SeededRandom::new(16);
    let config = std::sync::Arc::new(test_config("b", "b.test", "a.test", "x", false));
    for len in [0usize, 1, 27, 28, 29, 64, 300] {
        let mut buf = vec![0u8; len];
        ike::crypto::Random::fill(&mut rng, &mut buf);
        let r = IkeSa::accept(
            std::time::Instant::now(),
            ike::sa::Responder {
                local: "198.18.0.2:500".parse().unwrap(),
                remote: "198.18.0.1:500".parse().unwrap(),
                candidates: ike::sa::Candidates::one(config.clone()),
                require_cookie: None,
            },
            Box::new(SeededRandom::new(1)),
            &buf,
        );
        assert!(matches!(r, ike::sa::Accept::Ignore(_)), "len {len}");
    }
}

#[test]
fn unsupported_critical_payload_is_refused_statelessly() {
    let p = Pair::default_with_seed(17);
    let mut a = IkeSa::initiate(
        p.now,
        p.a.config.clone(),
        p.a.addr,
        p.b.addr,
        Box::new(SeededRandom::new(2)),
        &["net"],
    );
    // Take A's IKE_SA_INIT and add an unknown critical payload.
    let t = a.poll_transmit().unwrap();
    let mut m = Message::decode(&t.data).unwrap();
    m.payloads.push(Payload::Unknown {
        payload_type: ike::wire::PayloadType(200),
        critical: true,
        body: vec![1, 2, 3],
    });
    let r = IkeSa::accept(
        p.now,
        ike::sa::Responder {
            local: t.remote,
            remote: t.local,
            candidates: ike::sa::Candidates::one(p.b.config.clone()),
            require_cookie: None,
        },
        Box::new(SeededRandom::new(1)),
        &m.encode(),
    );
    let ike::sa::Accept::Reply(reply, _) = r else {
        panic!("expected a stateless reply")
    };
    let reply = Message::decode(&reply.data).unwrap();
    assert!(reply
        .payloads
        .iter()
        .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD && n.data == [200])));
}

#[test]
fn responder_half_open_sa_expires() {
    let mut p = Pair::default_with_seed(20);
    p.drop_next(Dir::AtoB, ExchangeType::IKE_AUTH, false, 100);
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.b.closed_reason().unwrap(),
        "peer did not complete IKE_AUTH within 30s"
    );
}

#[test]
fn responder_accepts_the_initiators_ke_group_without_a_round_trip() {
    // The responder prefers ecp384 but also allows x25519, which the
    // initiator sent: no INVALID_KE_PAYLOAD.
    let mut p = pair_with(|a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp384").unwrap()];
        b.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-ecp384-x25519").unwrap()];
    });
    up(&mut p);
    assert!(p.b.stateless_replies.is_empty());
    assert_eq!(p.a.sa().proposal().unwrap().dh, Some(DhGroup::Curve25519));
}

#[test]
fn check_cookie_challenges_then_passes_the_initiators_retry() {
    let p = Pair::default_with_seed(21);
    let jar = CookieJar::new(&mut SeededRandom::new(8));
    let mut a = IkeSa::initiate(
        p.now,
        p.a.config.clone(),
        p.a.addr,
        p.b.addr,
        Box::new(SeededRandom::new(2)),
        &["net"],
    );
    let first = a.poll_transmit().unwrap();
    let (local, remote) = (first.remote, first.local);
    let ike::sa::CookieCheck::Challenge { reply, invalid } =
        IkeSa::check_cookie(local, remote, &first.data, &jar)
    else {
        panic!("no cookie yet: expected a challenge")
    };
    assert!(!invalid, "none was presented");
    // The initiator follows the COOKIE and retries with it first.
    a.handle_datagram(p.now, reply.remote, reply.local, &reply.data)
        .unwrap();
    let retry = a.poll_transmit().unwrap();
    assert!(matches!(
        IkeSa::check_cookie(local, remote, &retry.data, &jar),
        ike::sa::CookieCheck::Valid
    ));
    // From another address the same cookie is worthless.
    let elsewhere: std::net::SocketAddr = "198.18.7.7:500".parse().unwrap();
    assert!(matches!(
        IkeSa::check_cookie(local, elsewhere, &retry.data, &jar),
        ike::sa::CookieCheck::Challenge { invalid: true, .. }
    ));
    // A flipped cookie byte is a challenge again, marked invalid.
    let mut m = Message::decode(&retry.data).unwrap();
    if let Some(Payload::Notify(n)) = m.payloads.first_mut() {
        n.data[3] ^= 1;
    }
    assert!(matches!(
        IkeSa::check_cookie(local, remote, &m.encode(), &jar),
        ike::sa::CookieCheck::Challenge { invalid: true, .. }
    ));
    assert!(matches!(
        IkeSa::check_cookie(local, remote, &[0u8; 40], &jar),
        ike::sa::CookieCheck::Malformed(_)
    ));
}

/// Two connections on one address pair: IKE_SA_INIT weighs both ("c0"
/// first, which allows ECP_256), IKE_AUTH names the one the peer is. That
/// one allows only x25519, so an SA negotiated with ECP_256 is refused with
/// a reason that names both; offered x25519 first, the same peer is in.
#[test]
fn ike_auth_refuses_a_suite_the_identified_connection_does_not_allow() {
    let setup = |a_first: &str| {
        let mut p = pair_with(|a, b| {
            a.ike_proposals = vec![ProposalSpec::parse_ike(a_first).unwrap()];
            b.ike_proposals =
                vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519").unwrap()];
        });
        let mut c0 = test_config("c0", "b.test", "other.test", "other-psk", false);
        c0.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-ecp256-x25519").unwrap()];
        p.b_others = vec![std::sync::Arc::new(c0)];
        p
    };
    let mut p = setup("aes256gcm16-prfsha256-ecp256");
    p.initiate(&["net"]);
    p.drive();
    assert!(!established(&p));
    let why = p.b.closed_reason().unwrap();
    assert!(
        why.contains("connection 'b-from-a' accepts peer identity 'a.test' but not the negotiated IKE proposal")
            && why.contains("ECP_256"),
        "{why}"
    );
    assert!(
        p.a.closed_reason()
            .unwrap()
            .contains("AUTHENTICATION_FAILED"),
        "{:?}",
        p.a.closed_reason()
    );
    let mut p = setup("aes256gcm16-prfsha256-x25519");
    up(&mut p);
    assert_eq!(p.b.sa().proposal().unwrap().dh, Some(DhGroup::Curve25519));
}

/// Offered both groups, the responder picks the one every candidate
/// connection allows, so the connection IKE_AUTH names can take the SA.
#[test]
fn ike_sa_init_prefers_a_suite_every_candidate_allows() {
    let mut p = pair_with(|a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-ecp256-x25519").unwrap()];
        b.ike_proposals = vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519").unwrap()];
    });
    let mut c0 = test_config("c0", "b.test", "other.test", "other-psk", false);
    c0.ike_proposals =
        vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-ecp256-x25519").unwrap()];
    p.b_others = vec![std::sync::Arc::new(c0)];
    up(&mut p);
    assert_eq!(p.b.sa().proposal().unwrap().dh, Some(DhGroup::Curve25519));
    assert_eq!(p.b.sa().name(), "b-from-a");
}
