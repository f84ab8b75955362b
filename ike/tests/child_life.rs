//! A CHILD SA is never silently lost: refused CHILD rekeys are retried
//! (with the IKE SA's group when the peer wants PFS, with backoff
//! otherwise), a peer's PFS is accepted although our ESP proposals name no
//! group, and an IKE SA holds a bounded number of CHILD SAs. On simulated
//! time through `ike::testing::Pair`.

use std::time::Duration;

use ike::config::PeerConfig;
use ike::crypto::DhGroup;
use ike::proposal::ProposalSpec;
use ike::sa::{ChildError, Command, Event, RekeyRetry, Timers, MAX_REKEY_RETRIES};
use ike::testing::{test_config, Dir, Pair};
use ike::wire::NotifyType;

fn esp(s: &str) -> Vec<ProposalSpec> {
    vec![ProposalSpec::parse_esp(s).expect("esp proposal")]
}

fn pair_with(seed: u64, f: impl FnOnce(&mut PeerConfig, &mut PeerConfig)) -> Pair {
    let mut a = test_config("a-to-b", "a.test", "b.test", "child-life-psk-1", true);
    let mut b = test_config("b-from-a", "b.test", "a.test", "child-life-psk-1", false);
    f(&mut a, &mut b);
    Pair::new(seed, a, b)
}

fn up(p: &mut Pair) {
    p.initiate(&["net"]);
    p.drive_for(Duration::from_secs(5));
    assert!(
        p.a.is_established() && p.b.is_established() && p.a.children.len() == 1,
        "not up: a={:?} b={:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
}

fn rekey_failures(events: &[Event]) -> Vec<(NotifyType, Option<RekeyRetry>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildRekeyFailed { reason, retry, .. } => {
                let notify = match reason {
                    ChildError::PeerRejected { notify, .. } => *notify,
                    _ => NotifyType::INVALID_SYNTAX,
                };
                Some((notify, *retry))
            }
            _ => None,
        })
        .collect()
}

fn only_child(p: &Pair, side: Dir) -> ike::sa::ChildSa {
    let s = match side {
        Dir::AtoB => &p.a,
        Dir::BtoA => &p.b,
    };
    assert_eq!(s.children.len(), 1, "{side:?}: {:?}", s.children.keys());
    s.children.values().next().unwrap().clone()
}

#[test]
fn rekey_without_ke_refused_is_retried_with_the_ike_sa_group() {
    // b wants PFS (as Libreswan's pfs=yes does), a's ESP proposals name
    // no group.
    let mut p = pair_with(1, |_, b| {
        b.children[0].esp_proposals = esp("aes256gcm16-x25519");
        b.children[0].pfs_required = true;
    });
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.drive_for(Duration::from_secs(5));
    let new = only_child(&p, Dir::AtoB);
    assert_ne!(new.spi_in, old.spi_in, "rekeyed");
    assert_eq!(new.rekey_of, Some(old.spi_in));
    assert_eq!(new.proposal.dh, Some(DhGroup::Curve25519), "with PFS");
    assert!(p.children_mirror());
    assert_eq!(
        rekey_failures(&p.a.events),
        [(
            NotifyType::NO_PROPOSAL_CHOSEN,
            Some(RekeyRetry {
                attempt: 1,
                after: Duration::ZERO,
                ke: Some(DhGroup::Curve25519)
            })
        )]
    );
    // The next rekey carries the KE at once: no second refusal.
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: new.spi_in });
    p.drive_for(Duration::from_secs(5));
    let third = only_child(&p, Dir::AtoB);
    assert_eq!(third.rekey_of, Some(new.spi_in));
    assert_eq!(third.proposal.dh, Some(DhGroup::Curve25519));
    assert_eq!(rekey_failures(&p.a.events).len(), 1);
    assert!(p.children_mirror());
}

#[test]
fn rekey_without_ke_gets_invalid_ke_for_another_ike_group_and_uses_it() {
    // The IKE SA uses x25519; b wants PFS with ecp256, which a's IKE
    // proposals allow.
    let mut p = pair_with(2, |a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        b.ike_proposals = a.ike_proposals.clone();
        b.children[0].esp_proposals = esp("aes256gcm16-ecp256");
        b.children[0].pfs_required = true;
    });
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.drive_for(Duration::from_secs(5));
    let new = only_child(&p, Dir::AtoB);
    assert_eq!(new.rekey_of, Some(old.spi_in));
    assert_eq!(new.proposal.dh, Some(DhGroup::Ecp256));
    assert!(p.children_mirror());
    let f = rekey_failures(&p.a.events);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].0, NotifyType::NO_PROPOSAL_CHOSEN);
    assert_eq!(f[1].0, NotifyType::INVALID_KE_PAYLOAD);
    assert_eq!(f[1].1.unwrap().ke, Some(DhGroup::Ecp256));
}

#[test]
fn responder_accepts_pfs_its_esp_proposals_do_not_name() {
    // a wants PFS, b's ESP proposals name no group: b does the DH.
    let mut p = pair_with(3, |a, _| {
        a.children[0].esp_proposals = esp("aes256gcm16-x25519")
    });
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.drive_for(Duration::from_secs(5));
    let new = only_child(&p, Dir::AtoB);
    assert_eq!(new.rekey_of, Some(old.spi_in));
    assert_eq!(new.proposal.dh, Some(DhGroup::Curve25519));
    let b_new = only_child(&p, Dir::BtoA);
    assert_eq!(b_new.proposal.dh, Some(DhGroup::Curve25519));
    assert!(p.children_mirror());
    assert!(rekey_failures(&p.a.events).is_empty());
    assert!(
        p.b.child_failures().is_empty(),
        "{:?}",
        p.b.child_failures()
    );
    // b's own rekey of that SA keeps PFS, although b names no group.
    p.command(
        Dir::BtoA,
        Command::RekeyChild {
            spi_in: b_new.spi_in,
        },
    );
    p.drive_for(Duration::from_secs(5));
    let b_third = only_child(&p, Dir::BtoA);
    assert_eq!(b_third.rekey_of, Some(b_new.spi_in));
    assert_eq!(b_third.proposal.dh, Some(DhGroup::Curve25519));
    assert!(rekey_failures(&p.b.events).is_empty());
    assert!(p.children_mirror());
}

#[test]
fn responder_without_group_refuses_a_ke_its_ike_proposals_do_not_allow() {
    // a wants PFS with ecp256 only; b's IKE proposals allow only x25519,
    // and its ESP proposals name no group: no common group, so the rekey
    // is refused and a keeps the old SA, trying again later.
    let mut p = pair_with(4, |a, _| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        a.children[0].esp_proposals = esp("aes256gcm16-ecp256");
        a.children[0].pfs_required = true;
    });
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.drive_for(Duration::from_secs(3));
    assert_eq!(only_child(&p, Dir::AtoB).spi_in, old.spi_in, "old SA kept");
    let f = rekey_failures(&p.a.events);
    assert_eq!(f[0].0, NotifyType::NO_PROPOSAL_CHOSEN, "{f:?}");
    assert!(f[0].1.is_some(), "retried later");
}

#[test]
fn refused_rekey_backs_off_then_leaves_the_sa_to_its_lifetime() {
    // b wants ecp256 PFS, which a's proposals never allow: every try fails.
    let mut p = pair_with(5, |_, b| {
        b.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        b.children[0].esp_proposals = esp("aes256gcm16-ecp256");
        b.children[0].pfs_required = true;
    });
    p.a.timers = Timers {
        rekey_retry_base: Duration::from_secs(2),
        rekey_retry_max: Duration::from_secs(10),
        ..Timers::default()
    };
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.advance(Duration::from_secs(120));
    let f = rekey_failures(&p.a.events);
    // Each try: without KE (refused), at once with KE (refused); then
    // MAX_REKEY_RETRIES later tries with backoff, then one saying there
    // is no more.
    let immediate = f
        .iter()
        .filter(|(_, r)| r.is_some_and(|r| r.after.is_zero()))
        .count();
    assert_eq!(immediate as u32, MAX_REKEY_RETRIES + 1, "{f:?}");
    let delays: Vec<Option<Duration>> = f
        .iter()
        .filter(|(_, r)| !r.is_some_and(|r| r.after.is_zero()))
        .map(|(_, r)| r.map(|r| r.after))
        .collect();
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(f[0].1.unwrap().after, Duration::ZERO, "{f:?}");
    assert_eq!(delays.len() as u32, MAX_REKEY_RETRIES + 1, "{f:?}");
    assert_eq!(
        delays,
        [secs(2), secs(4), secs(8), secs(10), secs(10), None]
    );
    // Nothing was lost meanwhile: the old SA is in service on both sides.
    assert_eq!(only_child(&p, Dir::AtoB).spi_in, old.spi_in);
    assert_eq!(only_child(&p, Dir::BtoA).spi_out, old.spi_in);
    assert!(p.a.is_established() && p.b.is_established());
}

#[test]
fn new_child_past_the_limit_gets_no_additional_sas_and_rekeys_still_pass() {
    let mut p = pair_with(6, |_, b| b.max_child_sas = 2);
    up(&mut p);
    p.command(Dir::AtoB, Command::CreateChild { name: "net".into() });
    p.drive_for(Duration::from_secs(3));
    assert_eq!(p.a.children.len(), 2);
    p.command(Dir::AtoB, Command::CreateChild { name: "net".into() });
    p.drive_for(Duration::from_secs(3));
    assert_eq!(p.a.children.len(), 2, "third refused");
    assert_eq!(p.b.children.len(), 2);
    let a_fail = p.a.child_failures();
    assert!(
        a_fail.iter().any(|f| f.contains("NO_ADDITIONAL_SAS")),
        "{a_fail:?}"
    );
    let b_fail = p.b.child_failures();
    assert!(
        b_fail.iter().any(|f| f.contains("limit of 2 CHILD SAs")),
        "{b_fail:?}"
    );
    // A rekey is not a new CHILD SA: allowed at the limit.
    let spi = *p.a.children.keys().next().unwrap();
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: spi });
    p.drive_for(Duration::from_secs(3));
    assert_eq!(p.a.children.len(), 2);
    assert!(!p.a.children.contains_key(&spi), "rekeyed");
    assert!(p.children_mirror());
}

#[test]
fn peer_refusing_pfs_gets_rekeys_without_ke_unless_pfs_is_required() {
    // a names ecp256; b names no group and its IKE proposals allow only
    // x25519, so it refuses a's KE (as strongSwan without a group does).
    let mut p = pair_with(7, |a, b| {
        a.ike_proposals =
            vec![ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        a.children[0].esp_proposals = esp("aes256gcm16-ecp256");
        let _ = b;
    });
    up(&mut p);
    let old = only_child(&p, Dir::AtoB);
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    p.drive_for(Duration::from_secs(5));
    let new = only_child(&p, Dir::AtoB);
    assert_eq!(new.rekey_of, Some(old.spi_in), "rekeyed without PFS");
    assert_eq!(new.proposal.dh, None);
    assert!(p.children_mirror());
    let f = rekey_failures(&p.a.events);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].1.unwrap().ke, None, "retried without KE");
    // The next rekey goes without KE at once.
    p.command(Dir::AtoB, Command::RekeyChild { spi_in: new.spi_in });
    p.drive_for(Duration::from_secs(5));
    assert_eq!(only_child(&p, Dir::AtoB).rekey_of, Some(new.spi_in));
    assert_eq!(rekey_failures(&p.a.events).len(), 1);
    // b as responder, naming a group, accepts a's KE-less request too;
    // one that requires PFS refuses it.
    let mut q = pair_with(8, |a, b| {
        b.children[0].esp_proposals = esp("aes256gcm16-x25519");
        a.children[0].esp_proposals = esp("aes256gcm16-ecp256");
        a.children[0].pfs_required = false;
    });
    up(&mut q);
    let old = only_child(&q, Dir::AtoB);
    q.command(Dir::AtoB, Command::RekeyChild { spi_in: old.spi_in });
    q.drive_for(Duration::from_secs(5));
    assert_eq!(only_child(&q, Dir::AtoB).rekey_of, Some(old.spi_in));
}
