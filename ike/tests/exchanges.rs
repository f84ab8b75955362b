//! Every exchange in both roles, driven through `ike::testing::Pair` with
//! simulated time and impairments. Each test that uses randomness names its
//! seed in the assertion message.

use std::time::Duration;

use ike::config::{parse_identity, ChildConfig, Mode, Psk};
use ike::crypto::{AeadAlg, DhGroup};
use ike::proposal::ProposalSpec;
use ike::sa::{Command, Event, State};
use ike::testing::{Dir, Pair};
use ike::ts::parse_ts;
use ike::wire::ExchangeType;

mod common;
use common::*;

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
