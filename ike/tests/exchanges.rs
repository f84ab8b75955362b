//! Every exchange in both roles, driven through `ike::testing::Pair` with
//! simulated time and impairments. Each test that uses randomness names its
//! seed in the assertion message.

use std::time::Duration;

use ike::config::{parse_identity, ChildConfig, Mode, Psk};
use ike::crypto::{AeadAlg, DhGroup, PrfAlg, SeededRandom};
use ike::proposal::ProposalSpec;
use ike::sa::natd::CookieJar;
use ike::sa::{Command, Event, IkeSa, State};
use ike::testing::{test_config, Dir, Pair};
use ike::ts::parse_ts;
use ike::wire::{ExchangeType, Message, NotifyType, Payload};

fn established(p: &Pair) -> bool {
    p.a.is_established() && p.b.is_established()
}

fn pair_with(f: impl FnOnce(&mut ike::config::PeerConfig, &mut ike::config::PeerConfig)) -> Pair {
    let mut a = test_config("a-to-b", "a.test", "b.test", "secret-psk-123", true);
    let mut b = test_config("b-from-a", "b.test", "a.test", "secret-psk-123", false);
    f(&mut a, &mut b);
    Pair::new(7, a, b)
}

fn up(p: &mut Pair) {
    p.initiate(&["net"]);
    p.drive();
    assert!(
        established(p),
        "not established: a={:?} b={:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
}

fn dmz_child(initiator: bool) -> ChildConfig {
    let (l, r) = if initiator {
        ("198.19.11.0/24", "198.19.12.0/24")
    } else {
        ("198.19.12.0/24", "198.19.11.0/24")
    };
    ChildConfig {
        name: "dmz".into(),
        local_ts: vec![parse_ts(l).unwrap()],
        remote_ts: vec![parse_ts(r).unwrap()],
        esp_proposals: vec![ProposalSpec::parse_esp("aes128gcm16").unwrap()],
        mode: Mode::Tunnel,
        pfs_required: false,
    }
}

fn count<F: Fn(&Event) -> bool>(events: &[Event], f: F) -> usize {
    events.iter().filter(|e| f(e)).count()
}

// ----- IKE_SA_INIT + IKE_AUTH ------------------------------------------------

#[test]
fn handshake_establishes_and_installs_mirrored_child() {
    let mut p = Pair::default_with_seed(1);
    up(&mut p);
    assert_eq!(p.a.children.len(), 1);
    assert!(p.children_mirror());
    let c = p.a.children.values().next().unwrap();
    assert_eq!(c.name, "net");
    assert_eq!(c.mode, Mode::Tunnel);
    assert_eq!(c.proposal.encr, AeadAlg::AesGcm16_256);
    assert!(!c.proposal.esn);
    assert_eq!(c.keys.inbound.len(), 36);
    assert_ne!(c.keys.inbound[..], c.keys.outbound[..]);
    assert_eq!(p.a.sa().state(), State::Established);
    assert_eq!(p.b.sa().state(), State::Established);
    assert_eq!(
        p.a.sa().proposal().unwrap().describe(),
        "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"
    );
    assert_eq!(
        p.b.sa().remote_id(),
        Some(&parse_identity("a.test").unwrap())
    );
    assert_eq!(p.b.sa().name(), "b-from-a");
    assert!(!p.a.sa().encap(), "no NAT between the pair");
    // Four datagrams: two requests, two responses.
    assert_eq!(p.delivered[&Dir::AtoB], 2);
    assert_eq!(p.delivered[&Dir::BtoA], 2);
}

#[test]
fn every_ike_proposal_combination_completes() {
    let mut n = 0;
    for encr in ["aes128gcm16", "aes256gcm16", "chacha20poly1305"] {
        for prf in ["prfsha256", "prfsha384", "prfsha512"] {
            for dh in ["x25519", "ecp256", "ecp384"] {
                let s = format!("{encr}-{prf}-{dh}");
                let spec = ProposalSpec::parse_ike(&s).unwrap();
                let mut p = pair_with(|a, b| {
                    a.ike_proposals = vec![spec.clone()];
                    b.ike_proposals = vec![spec.clone()];
                });
                p.initiate(&["net"]);
                p.drive();
                assert!(established(&p), "{s} failed: {:?}", p.a.closed_reason());
                assert!(p.children_mirror(), "{s}");
                n += 1;
            }
        }
    }
    assert_eq!(n, 27);
}

#[test]
fn every_esp_proposal_combination_completes() {
    for esp in [
        "aes128gcm16",
        "aes256gcm16",
        "chacha20poly1305",
        "aes128gcm16-esn",
        "aes256gcm16-esn",
        "chacha20poly1305-esn",
    ] {
        let spec = ProposalSpec::parse_esp(esp).unwrap();
        let mut p = pair_with(|a, b| {
            a.children[0].esp_proposals = vec![spec.clone()];
            b.children[0].esp_proposals = vec![spec.clone()];
        });
        up(&mut p);
        assert!(p.children_mirror(), "{esp}");
        let c = p.b.children.values().next().unwrap();
        assert_eq!(c.proposal.esn, esp.ends_with("-esn"), "{esp}");
        assert_eq!(
            c.keys.inbound.len(),
            c.proposal.encr.key_material_len(),
            "{esp}"
        );
    }
}

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
fn auth_wrong_psk_is_refused_on_both_sides() {
    let mut p = pair_with(|_, b| b.psk = Some(Psk::new(b"not the same".to_vec())));
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.b.closed_reason().unwrap(),
        "authentication of 'a.test' failed"
    );
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "peer rejected our authentication: AUTHENTICATION_FAILED"
    );
    assert!(p.a.children.is_empty() && p.b.children.is_empty());
    assert_eq!(
        count(&p.a.events, |e| matches!(e, Event::Established { .. })),
        0
    );
}

#[test]
fn auth_unknown_identity_is_refused() {
    let mut p = pair_with(|a, _| a.local_id = parse_identity("mallory.test").unwrap());
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.b.closed_reason().unwrap(),
        "no connection accepts peer identity 'mallory.test'"
    );
    assert!(p
        .a
        .closed_reason()
        .unwrap()
        .contains("AUTHENTICATION_FAILED"));
}

#[test]
fn auth_idr_naming_another_identity_is_refused_by_responder() {
    // The initiator asks for 'b.test' (IDr) but the responder is 'c.test'.
    let mut p = pair_with(|_, b| {
        b.local_id = parse_identity("c.test").unwrap();
        b.remote_id = None;
    });
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "peer rejected our authentication: AUTHENTICATION_FAILED"
    );
    assert_eq!(
        p.b.closed_reason().unwrap(),
        "no connection accepts peer identity 'a.test'"
    );
}

#[test]
fn auth_without_psk_names_the_identities() {
    let mut p = pair_with(|a, _| a.psk = None);
    p.initiate(&["net"]);
    p.drive();
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "no pre-shared key for 'a.test' - 'b.test'"
    );
}

#[test]
fn auth_esp_proposal_mismatch_keeps_ike_sa() {
    let mut p = pair_with(|a, b| {
        a.children[0].esp_proposals = vec![ProposalSpec::parse_esp("chacha20poly1305").unwrap()];
        b.children[0].esp_proposals = vec![ProposalSpec::parse_esp("aes128gcm16").unwrap()];
    });
    up(&mut p);
    assert!(p.a.children.is_empty() && p.b.children.is_empty());
    assert_eq!(
        p.a.child_failures(),
        vec!["peer rejected CHILD_SA 'net': NO_PROPOSAL_CHOSEN"]
    );
    assert!(p.b.child_failures()[0].contains("NO_PROPOSAL_CHOSEN"));
}

#[test]
fn auth_ts_narrowing_to_responder_policy() {
    let mut p = pair_with(|a, b| {
        a.children[0].remote_ts = vec![parse_ts("198.19.0.0/16").unwrap()];
        b.children[0].local_ts = vec![parse_ts("198.19.2.0/24").unwrap()];
    });
    up(&mut p);
    let ca = p.a.children.values().next().unwrap();
    assert_eq!(ca.remote_ts, vec![parse_ts("198.19.2.0/24").unwrap()]);
    assert_eq!(ca.local_ts, vec![parse_ts("198.19.1.0/24").unwrap()]);
    assert!(p.children_mirror());
}

#[test]
fn auth_ts_narrowing_of_ports_and_protocol() {
    let mut p = pair_with(|a, b| {
        a.children[0].remote_ts = vec![parse_ts("198.19.2.0/24").unwrap()];
        b.children[0].local_ts = vec![parse_ts("198.19.2.0/25[tcp/443]").unwrap()];
    });
    up(&mut p);
    let ca = p.a.children.values().next().unwrap();
    assert_eq!(
        ca.remote_ts,
        vec![parse_ts("198.19.2.0/25[tcp/443]").unwrap()]
    );
}

#[test]
fn auth_disjoint_selectors_are_ts_unacceptable() {
    let mut p =
        pair_with(|_, b| b.children[0].local_ts = vec![parse_ts("203.0.113.0/24").unwrap()]);
    up(&mut p);
    assert!(p.a.children.is_empty());
    assert_eq!(
        p.a.child_failures(),
        vec!["peer rejected CHILD_SA 'net': TS_UNACCEPTABLE"]
    );
    assert!(p.b.child_failures()[0].contains("unacceptable"));
}

#[test]
fn auth_transport_mode_negotiated() {
    let mut p = pair_with(|a, b| {
        a.children[0].mode = Mode::Transport;
        b.children[0].mode = Mode::Transport;
    });
    up(&mut p);
    assert!(p.a.children.values().all(|c| c.mode == Mode::Transport));
    assert!(p.b.children.values().all(|c| c.mode == Mode::Transport));
}

#[test]
fn auth_transport_refused_by_tunnel_responder_fails_child_and_cleans_peer() {
    let mut p = pair_with(|a, _| a.children[0].mode = Mode::Transport);
    up(&mut p);
    assert!(p.a.child_failures()[0].contains("did not accept transport mode"));
    // The responder installed its half; the initiator asked it to delete it.
    assert!(
        p.b.children.is_empty(),
        "responder still holds {:?}",
        p.b.children.keys()
    );
}

#[test]
fn forced_encapsulation_floats_to_natt_port() {
    let mut p = pair_with(|a, _| a.encap = true);
    up(&mut p);
    assert!(p.a.sa().encap() && p.b.sa().encap());
    assert_eq!(p.a.sa().local_addr().port(), 4500);
    assert_eq!(p.a.sa().remote_addr().port(), 4500);
    assert_eq!(p.b.sa().local_addr().port(), 4500);
    assert!(p
        .a
        .children
        .values()
        .chain(p.b.children.values())
        .all(|c| c.encap && c.remote.port() == 4500));
}

// ----- loss, duplication, reordering, tampering ------------------------------

#[test]
fn lost_request_at_every_step_is_retransmitted() {
    for ex in [ExchangeType::IKE_SA_INIT, ExchangeType::IKE_AUTH] {
        let mut p = Pair::default_with_seed(11);
        p.drop_next(Dir::AtoB, ex, false, 1);
        let t = {
            p.initiate(&["net"]);
            p.drive()
        };
        assert!(established(&p), "{ex}");
        assert!(
            t >= Duration::from_secs(1),
            "{ex}: waited for the retransmit ({t:?})"
        );
        assert!(p.children_mirror());
    }
    // CREATE_CHILD_SA and INFORMATIONAL requests.
    let mut p = pair_with(|a, b| {
        a.children.push(dmz_child(true));
        b.children.push(dmz_child(false));
    });
    up(&mut p);
    p.drop_next(Dir::AtoB, ExchangeType::CREATE_CHILD_SA, false, 2);
    p.command(Dir::AtoB, Command::CreateChild { name: "dmz".into() });
    p.drive();
    assert_eq!(p.a.children.len(), 2);
    assert!(p.children_mirror());
    let spi = *p.a.children.keys().next().unwrap();
    p.drop_next(Dir::AtoB, ExchangeType::INFORMATIONAL, false, 1);
    p.command(Dir::AtoB, Command::DeleteChild { spi_in: spi });
    p.drive();
    assert_eq!(p.a.children.len(), 1);
    assert!(p.children_mirror());
}

#[test]
fn lost_response_at_every_step_is_answered_from_cache() {
    for ex in [ExchangeType::IKE_SA_INIT, ExchangeType::IKE_AUTH] {
        let mut p = Pair::default_with_seed(12);
        p.drop_next(Dir::BtoA, ex, true, 1);
        p.initiate(&["net"]);
        p.drive();
        assert!(established(&p), "{ex}");
        assert_eq!(
            p.b.children.len(),
            1,
            "{ex}: responder created one child only"
        );
        assert_eq!(
            count(&p.b.events, |e| matches!(e, Event::ChildReady(_))),
            1,
            "{ex}"
        );
        assert!(p.children_mirror());
    }
    let mut p = pair_with(|a, b| {
        a.children.push(dmz_child(true));
        b.children.push(dmz_child(false));
    });
    up(&mut p);
    p.drop_next(Dir::BtoA, ExchangeType::CREATE_CHILD_SA, true, 1);
    p.command(Dir::AtoB, Command::CreateChild { name: "dmz".into() });
    p.drive();
    assert_eq!(
        p.b.children.len(),
        2,
        "responder answered the retransmit from its cache"
    );
    assert!(p.children_mirror());
    p.drop_next(Dir::BtoA, ExchangeType::INFORMATIONAL, true, 1);
    p.command(Dir::AtoB, Command::Liveness);
    p.drive();
    assert_eq!(count(&p.a.events, |e| matches!(e, Event::Alive)), 1);
}

#[test]
fn duplicated_messages_change_nothing() {
    let mut p = Pair::default_with_seed(13);
    p.impair.duplicate_pct = 100;
    up(&mut p);
    assert_eq!(p.a.children.len(), 1);
    assert_eq!(p.b.children.len(), 1);
    assert!(p.children_mirror());
    // Duplicates of requests got cached answers; duplicate responses dropped.
    assert!(!p.a.rejected.is_empty());
}

#[test]
fn random_loss_duplication_and_reordering_converge() {
    for seed in 0..24u64 {
        let mut p = Pair::default_with_seed(seed);
        p.impair.loss_pct = 25;
        p.impair.duplicate_pct = 15;
        p.impair.reorder_pct = 30;
        p.impair.reorder_window = Duration::from_millis(200);
        p.initiate(&["net"]);
        p.drive();
        if established(&p) {
            assert!(p.children_mirror(), "seed {seed}");
            // Then rekey everything under the same conditions.
            let spi = *p.a.children.keys().next().unwrap();
            p.command(Dir::AtoB, Command::RekeyChild { spi_in: spi });
            p.command(Dir::BtoA, Command::RekeyIke);
            p.drive();
            if !p.a.sa().is_closed() && !p.b.sa().is_closed() {
                assert!(
                    p.children_mirror(),
                    "seed {seed}: {:?} vs {:?}",
                    p.a.children.keys(),
                    p.b.children.keys()
                );
                assert_eq!(p.a.children.len(), 1, "seed {seed}");
            }
        } else {
            // Give-up is allowed only as a timeout after the retransmissions.
            let r = p.a.closed_reason().unwrap_or_default();
            assert!(
                r.contains("did not answer") || r.contains("did not complete"),
                "seed {seed}: {r}"
            );
        }
    }
}

#[test]
fn tampered_messages_are_rejected_and_retransmitted() {
    let mut p = Pair::default_with_seed(14);
    p.tamper_next(Dir::AtoB, ExchangeType::IKE_AUTH, false, 1);
    p.tamper_next(Dir::BtoA, ExchangeType::IKE_AUTH, true, 1);
    up(&mut p);
    assert!(
        p.b.rejected
            .iter()
            .any(|r| r.contains("integrity check failed")),
        "{:?}",
        p.b.rejected
    );
    assert!(
        p.a.rejected
            .iter()
            .any(|r| r.contains("integrity check failed")),
        "{:?}",
        p.a.rejected
    );
    assert!(p.children_mirror());
}

#[test]
fn truncated_and_corrupted_messages_leave_the_sa_unchanged() {
    let mut p = Pair::default_with_seed(15);
    up(&mut p);
    let now = p.now;
    let (la, lb) = (p.a.sa().local_addr(), p.b.sa().local_addr());
    // Build a real request to mangle: a liveness check from A.
    p.a.sa_mut().handle_command(now, Command::Liveness);
    let t = p.a.sa_mut().poll_transmit().unwrap();
    for cut in [0, 1, 27, 28, 31, 40, t.data.len() - 1] {
        let r = p.b.sa_mut().handle_datagram(now, lb, la, &t.data[..cut]);
        assert!(r.is_err(), "truncated at {cut} accepted");
    }
    for byte in [30, 40, t.data.len() / 2, t.data.len() - 1] {
        let mut bad = t.data.clone();
        bad[byte] ^= 0x80;
        let r = p.b.sa_mut().handle_datagram(now, lb, la, &bad);
        assert!(r.is_err(), "bit flip at {byte} accepted");
    }
    assert!(p.b.sa_mut().poll_transmit().is_none(), "nothing answered");
    // The genuine one still works: the message ID was not consumed.
    p.b.sa_mut().handle_datagram(now, lb, la, &t.data).unwrap();
    assert!(p.b.sa_mut().poll_transmit().is_some());
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
                candidates: vec![config.clone()],
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
            candidates: vec![p.b.config.clone()],
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

// ----- retransmission and timeouts -------------------------------------------

#[test]
fn retransmissions_back_off_exponentially() {
    let mut p = Pair::default_with_seed(18);
    p.drop_next(Dir::AtoB, ExchangeType::IKE_SA_INIT, false, 3);
    p.initiate(&["net"]);
    let t = p.drive();
    assert!(established(&p));
    // Waits of 1 + 2 + 4 seconds, plus round trips.
    assert!(
        t >= Duration::from_secs(7) && t < Duration::from_secs(8),
        "{t:?}"
    );
}

#[test]
fn silent_peer_times_out_after_configured_tries() {
    let mut p = Pair::default_with_seed(19);
    p.drop_next(Dir::AtoB, ExchangeType::IKE_SA_INIT, false, 100);
    p.initiate(&["net"]);
    let t = p.drive();
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "peer did not answer IKE_SA_INIT after 4 retransmissions"
    );
    // 1 + 2 + 4 + 8 + 10 (capped) seconds.
    assert_eq!(t, Duration::from_secs(25));
    assert!(p.a.sa().poll_timeout().is_none());
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
fn liveness_check_detects_dead_peer() {
    let mut p = Pair::default_with_seed(21);
    up(&mut p);
    p.command(Dir::AtoB, Command::Liveness);
    p.drive();
    assert_eq!(count(&p.a.events, |e| matches!(e, Event::Alive)), 1);
    p.drop_next(Dir::AtoB, ExchangeType::INFORMATIONAL, false, 100);
    p.command(Dir::AtoB, Command::Liveness);
    p.drive();
    assert_eq!(
        p.a.closed_reason().unwrap(),
        "peer did not answer INFORMATIONAL after 4 retransmissions"
    );
    assert!(
        p.a.children.is_empty(),
        "children reported deleted on close"
    );
}

// ----- CREATE_CHILD_SA -------------------------------------------------------

#[test]
fn create_child_from_initiator_and_from_responder() {
    for side in [Dir::AtoB, Dir::BtoA] {
        let mut p = pair_with(|a, b| {
            a.children.push(dmz_child(true));
            b.children.push(dmz_child(false));
        });
        up(&mut p);
        p.command(side, Command::CreateChild { name: "dmz".into() });
        p.drive();
        assert_eq!(p.a.children.len(), 2, "{side:?}");
        assert!(p.children_mirror(), "{side:?}");
        assert!(p
            .a
            .children
            .values()
            .any(|c| c.name == "dmz" && c.proposal.encr == AeadAlg::AesGcm16_128));
    }
}

#[test]
fn initiate_with_several_children_creates_the_rest_after_auth() {
    let mut p = pair_with(|a, b| {
        a.children.push(dmz_child(true));
        b.children.push(dmz_child(false));
    });
    p.initiate(&["net", "dmz"]);
    p.drive();
    assert_eq!(p.a.children.len(), 2);
    assert!(p.children_mirror());
}

#[test]
fn create_unknown_child_fails_locally() {
    let mut p = Pair::default_with_seed(22);
    up(&mut p);
    p.command(
        Dir::AtoB,
        Command::CreateChild {
            name: "nope".into(),
        },
    );
    p.drive();
    assert_eq!(
        p.a.child_failures(),
        vec!["connection 'a-to-b' has no child 'nope'"]
    );
}

#[test]
fn child_rekey_from_either_side_replaces_the_sa() {
    for side in [Dir::AtoB, Dir::BtoA] {
        let mut p = Pair::default_with_seed(23);
        up(&mut p);
        let old_a = p.a.children.values().next().unwrap().clone();
        let old = match side {
            Dir::AtoB => old_a.spi_in,
            Dir::BtoA => old_a.spi_out,
        };
        p.command(side, Command::RekeyChild { spi_in: old });
        p.drive();
        assert_eq!(p.a.children.len(), 1, "{side:?}");
        assert!(p.children_mirror(), "{side:?}");
        let new_a = p.a.children.values().next().unwrap();
        assert_ne!(new_a.spi_in, old_a.spi_in);
        assert_ne!(new_a.keys.inbound[..], old_a.keys.inbound[..]);
        let rekeyed = |events: &[Event]| {
            events
                .iter()
                .any(|e| matches!(e, Event::ChildDeleted { reason, .. } if reason == "rekeyed"))
        };
        assert!(
            rekeyed(&p.a.events) && rekeyed(&p.b.events),
            "{side:?}: old SA reported as rekeyed"
        );
    }
}

#[test]
fn child_rekey_with_pfs_uses_a_new_key_exchange() {
    let mut p = pair_with(|a, b| {
        a.children[0].esp_proposals = vec![ProposalSpec::parse_esp("aes256gcm16-x25519").unwrap()];
        b.children[0].esp_proposals = vec![ProposalSpec::parse_esp("aes256gcm16-x25519").unwrap()];
    });
    up(&mut p);
    let old = *p.a.children.keys().next().unwrap();
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old });
    p.drive();
    assert!(p.children_mirror());
    let c = p.a.children.values().next().unwrap();
    assert_eq!(c.proposal.dh, Some(DhGroup::Curve25519));
    assert_eq!(c.rekey_of, Some(old));
}

#[test]
fn child_rekey_pfs_invalid_ke_retries_with_responder_group() {
    let mut p = pair_with(|a, b| {
        a.children[0].esp_proposals =
            vec![ProposalSpec::parse_esp("aes256gcm16-x25519-ecp256").unwrap()];
        b.children[0].esp_proposals = vec![ProposalSpec::parse_esp("aes256gcm16-ecp256").unwrap()];
    });
    up(&mut p);
    let old = *p.a.children.keys().next().unwrap();
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old });
    p.drive();
    assert!(p.children_mirror());
    assert_eq!(
        p.a.children.values().next().unwrap().proposal.dh,
        Some(DhGroup::Ecp256)
    );
}

#[test]
fn simultaneous_child_rekey_collision_leaves_one_sa() {
    for seed in 0..8u64 {
        let mut p = Pair::default_with_seed(100 + seed);
        up(&mut p);
        let c = p.a.children.values().next().unwrap().clone();
        // Both sides start before either request arrives.
        p.command(Dir::AtoB, Command::RekeyChild { spi_in: c.spi_in });
        p.command(Dir::BtoA, Command::RekeyChild { spi_in: c.spi_out });
        p.drive();
        assert_eq!(
            p.a.children.len(),
            1,
            "seed {seed}: a has {:?}",
            p.a.children.keys()
        );
        assert_eq!(p.b.children.len(), 1, "seed {seed}");
        assert!(p.children_mirror(), "seed {seed}");
        assert!(
            !p.a.children.contains_key(&c.spi_in),
            "seed {seed}: old SA gone"
        );
        // Three SAs existed; two were deleted as rekeyed/redundant.
        assert_eq!(
            count(&p.a.events, |e| matches!(e, Event::ChildReady(_))),
            3,
            "seed {seed}"
        );
        // Both deletions belong to the rekey, on both sides (so no updown
        // "down" runs for them).
        for side in [&p.a, &p.b] {
            let reasons: Vec<&str> = side
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::ChildDeleted { reason, .. } => Some(reason.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(reasons, vec!["rekeyed", "rekeyed"], "seed {seed}");
        }
    }
}

#[test]
fn ike_rekey_from_either_side_keeps_children() {
    for side in [Dir::AtoB, Dir::BtoA] {
        let mut p = Pair::default_with_seed(24);
        up(&mut p);
        let old = (p.a.sa().spi_i(), p.a.sa().spi_r());
        let children: Vec<u32> = p.a.children.keys().copied().collect();
        p.command(side, Command::RekeyIke);
        p.drive();
        let new = (p.a.sa().spi_i(), p.a.sa().spi_r());
        assert_ne!(old, new, "{side:?}");
        assert_eq!(new, (p.b.sa().spi_i(), p.b.sa().spi_r()));
        assert_eq!(p.a.children.keys().copied().collect::<Vec<_>>(), children);
        for s in [&p.a, &p.b] {
            assert_eq!(
                count(&s.events, |e| matches!(e, Event::IkeRekeyed { .. })),
                1,
                "{side:?}"
            );
            assert_eq!(
                count(&s.events, |e| matches!(e, Event::Retired { .. })),
                1,
                "{side:?}"
            );
            assert_eq!(s.sa().spi_pairs().len(), 1, "{side:?}: old SA retired");
        }
        // The rekeyed SA works: liveness and a new child.
        p.command(Dir::BtoA, Command::Liveness);
        let spi = children[0];
        p.command(Dir::AtoB, Command::RekeyChild { spi_in: spi });
        p.drive();
        assert_eq!(count(&p.b.events, |e| matches!(e, Event::Alive)), 1);
        assert!(p.children_mirror());
        // The initiator of the rekey becomes the new SA's original initiator.
        assert_eq!(p.a.sa().is_initiator(), side == Dir::AtoB);
    }
}

#[test]
fn simultaneous_ike_rekey_collision_converges() {
    for seed in 0..8u64 {
        let mut p = Pair::default_with_seed(200 + seed);
        up(&mut p);
        p.command(Dir::AtoB, Command::RekeyIke);
        p.command(Dir::BtoA, Command::RekeyIke);
        p.drive();
        assert!(
            !p.a.sa().is_closed() && !p.b.sa().is_closed(),
            "seed {seed}"
        );
        assert_eq!(
            (p.a.sa().spi_i(), p.a.sa().spi_r()),
            (p.b.sa().spi_i(), p.b.sa().spi_r()),
            "seed {seed}: both sides kept the same IKE SA"
        );
        assert_eq!(
            p.a.sa().spi_pairs().len(),
            1,
            "seed {seed}: a retired the others"
        );
        assert_eq!(
            p.b.sa().spi_pairs().len(),
            1,
            "seed {seed}: b retired the others"
        );
        p.command(Dir::AtoB, Command::Liveness);
        p.drive();
        assert_eq!(
            count(&p.a.events, |e| matches!(e, Event::Alive)),
            1,
            "seed {seed}"
        );
    }
}

// ----- INFORMATIONAL ---------------------------------------------------------

#[test]
fn delete_child_from_either_side() {
    for side in [Dir::AtoB, Dir::BtoA] {
        let mut p = Pair::default_with_seed(25);
        up(&mut p);
        let c = p.a.children.values().next().unwrap().clone();
        let spi = if side == Dir::AtoB {
            c.spi_in
        } else {
            c.spi_out
        };
        p.command(side, Command::DeleteChild { spi_in: spi });
        p.drive();
        assert!(
            p.a.children.is_empty() && p.b.children.is_empty(),
            "{side:?}"
        );
        assert_eq!(p.a.sa().state(), State::Established);
    }
}

#[test]
fn delete_ike_from_either_side_removes_everything() {
    for side in [Dir::AtoB, Dir::BtoA] {
        let mut p = Pair::default_with_seed(26);
        up(&mut p);
        p.command(side, Command::Delete);
        p.drive();
        let (us, them) = if side == Dir::AtoB {
            (&p.a, &p.b)
        } else {
            (&p.b, &p.a)
        };
        assert_eq!(us.closed_reason().unwrap(), "deleted locally");
        assert_eq!(them.closed_reason().unwrap(), "deleted by peer");
        assert!(p.a.children.is_empty() && p.b.children.is_empty());
    }
}

#[test]
fn kill_sends_one_delete_and_closes_at_once() {
    let mut p = Pair::default_with_seed(27);
    up(&mut p);
    let now = p.now;
    p.a.sa_mut().kill(now);
    assert!(p.a.sa().is_closed());
    assert!(
        p.a.sa().poll_timeout().is_none(),
        "no retransmission after kill"
    );
    p.drive();
    assert_eq!(p.a.closed_reason().unwrap(), "killed locally");
    assert_eq!(p.b.closed_reason().unwrap(), "deleted by peer");
}

#[test]
fn delete_while_connecting_closes_without_traffic() {
    let mut p = Pair::default_with_seed(28);
    p.drop_next(Dir::AtoB, ExchangeType::IKE_SA_INIT, false, 100);
    p.initiate(&["net"]);
    p.command(Dir::AtoB, Command::Delete);
    assert_eq!(p.a.closed_reason().unwrap(), "deleted locally");
}

// ----- determinism -----------------------------------------------------------

#[test]
fn same_seed_same_transcript() {
    let run = |seed| {
        let mut p = Pair::default_with_seed(seed);
        up(&mut p);
        let c = p.a.children.values().next().unwrap().clone();
        (
            p.a.sa().spi_i(),
            p.a.sa().spi_r(),
            c.spi_in,
            c.keys.inbound.to_vec(),
        )
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
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
