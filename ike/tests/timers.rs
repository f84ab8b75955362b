//! The IKE SA's own timers (DPD, IKE rekey, CHILD rekeys, jitter) on
//! simulated time through `ike::testing::Pair`, and the cost the core
//! reports for its inputs.

use std::time::Duration;

use ike::sa::{Command, Cost, Event, KeyWork, Timers};
use ike::testing::Pair;
use ike::wire::{ExchangeType, Header, PayloadType};

const MIN: Duration = Duration::from_secs(60);

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// A pair with these timers on both sides, established within 5 simulated
/// seconds (timers keep `Pair::drive` busy, so drive only that long).
fn up_with(seed: u64, a: Timers, b: Timers) -> Pair {
    let mut p = Pair::default_with_seed(seed);
    p.a.timers = a;
    p.b.timers = b;
    p.initiate(&["net"]);
    p.drive_for(Duration::from_secs(5));
    assert!(
        p.a.is_established() && p.b.is_established(),
        "seed {seed}: not established: {:?} {:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
    p
}

/// Timers with only DPD, every `secs` seconds.
fn dpd(secs: u64) -> Timers {
    Timers {
        dpd_delay: Duration::from_secs(secs),
        ..Timers::default()
    }
}

fn liveness_requests_from_a(p: &Pair) -> usize {
    count(&p.a.events, |e| matches!(e, Event::Alive))
}

#[test]
fn dpd_checks_liveness_every_interval_and_only_once_established() {
    let mut p = up_with(1, dpd(30), Timers::default());
    assert_eq!(liveness_requests_from_a(&p), 0);
    p.advance(Duration::from_secs(31));
    assert_eq!(liveness_requests_from_a(&p), 1, "one check after 30 s");
    p.advance(Duration::from_secs(60));
    assert_eq!(liveness_requests_from_a(&p), 3, "one more every 30 s");
    // The responder has no DPD configured: it never asked.
    assert_eq!(count(&p.b.events, |e| matches!(e, Event::Alive)), 0);
}

#[test]
fn dpd_against_a_dead_peer_closes_the_sa_by_timeout() {
    let mut p = up_with(2, dpd(10), Timers::default());
    p.b.sa = None; // the peer vanishes
    p.advance(10 * MIN);
    let reason = p.a.closed_reason().expect("closed");
    assert!(
        reason.contains("INFORMATIONAL") && reason.contains("retransmissions"),
        "{reason}"
    );
}

#[test]
fn set_timers_turns_dpd_on_for_an_established_sa() {
    let mut p = up_with(3, Timers::default(), Timers::default());
    p.advance(2 * MIN);
    assert_eq!(liveness_requests_from_a(&p), 0, "DPD is off");
    let now = p.now;
    p.a.sa_mut().set_timers(now, &dpd(20));
    p.advance(Duration::from_secs(21));
    assert_eq!(liveness_requests_from_a(&p), 1);
}

#[test]
fn ike_sa_rekeys_at_its_interval_and_keeps_its_children() {
    let rekey = Timers {
        ike_rekey: 60 * MIN,
        ..Timers::default()
    };
    let mut p = up_with(4, rekey, Timers::default());
    let before = (p.a.sa().spi_i(), p.a.sa().spi_r());
    let at = p.a.sa().rekey_at().expect("rekey armed");
    assert_eq!(at.duration_since(p.now), 60 * MIN, "armed at establishment");
    assert!(p.b.sa().rekey_at().is_none(), "the responder has no rekey");
    p.advance(60 * MIN - Duration::from_secs(1));
    assert_eq!(
        count(&p.a.events, |e| matches!(e, Event::IkeRekeyed { .. })),
        0
    );
    p.advance(Duration::from_secs(2));
    assert_eq!(
        count(&p.a.events, |e| matches!(e, Event::IkeRekeyed { .. })),
        1
    );
    assert_ne!((p.a.sa().spi_i(), p.a.sa().spi_r()), before);
    assert_eq!(
        (p.a.sa().spi_i(), p.a.sa().spi_r()),
        (p.b.sa().spi_i(), p.b.sa().spi_r())
    );
    assert!(p.children_mirror());
    assert_eq!(p.a.children.len(), 1);
    // Re-armed for the new SA.
    let next = p.a.sa().rekey_at().expect("re-armed");
    assert!(next.duration_since(p.now) > 59 * MIN);
}

#[test]
fn child_sa_rekeys_at_its_interval_and_the_old_one_goes() {
    let rekey = Timers {
        child_rekey: vec![("net".into(), 10 * MIN)],
        ..Timers::default()
    };
    let mut p = up_with(5, rekey, Timers::default());
    let old = *p.a.children.keys().next().expect("child");
    let at = p.a.sa().child_rekey_at(old).expect("child rekey armed");
    assert!(at.duration_since(p.now) <= 10 * MIN);
    p.advance(10 * MIN + Duration::from_secs(1));
    let ready = count(
        &p.a.events,
        |e| matches!(e, Event::ChildReady(c) if c.rekey_of == Some(old)),
    );
    assert_eq!(ready, 1, "one rekey of the child");
    assert!(!p.a.children.contains_key(&old), "the old SA is deleted");
    assert_eq!(p.a.children.len(), 1);
    assert!(p.children_mirror());
    let new = *p.a.children.keys().next().expect("child");
    assert!(
        p.a.sa().child_rekey_at(new).is_some(),
        "the new SA is armed"
    );
}

#[test]
fn a_changed_child_rekey_interval_rearms_installed_child_sas() {
    // As after a hand-over: the CHILD SA was installed under settings
    // without a rekey, then the owning connection's settings arrive.
    let mut p = up_with(9, Timers::default(), Timers::default());
    let spi = *p.b.children.keys().next().expect("child");
    assert!(p.b.sa().child_rekey_at(spi).is_none());
    let now = p.now;
    p.b.sa_mut().set_timers(
        now,
        &Timers {
            child_rekey: vec![("net".into(), 10 * MIN)],
            ..Timers::default()
        },
    );
    let at =
        p.b.sa()
            .child_rekey_at(spi)
            .expect("armed by the new settings");
    assert_eq!(at.duration_since(now), 10 * MIN);
    // The same settings again change nothing.
    p.advance(MIN);
    let now = p.now;
    p.b.sa_mut().set_timers(
        now,
        &Timers {
            child_rekey: vec![("net".into(), 10 * MIN)],
            ..Timers::default()
        },
    );
    assert_eq!(p.b.sa().child_rekey_at(spi), Some(at));
    p.advance(10 * MIN);
    let rekeyed = count(
        &p.b.events,
        |e| matches!(e, Event::ChildReady(c) if c.rekey_of == Some(spi)),
    );
    assert_eq!(rekeyed, 1, "the responder rekeyed its CHILD SA");
    assert!(p.children_mirror());
}

#[test]
fn both_sides_rekeying_at_once_converge() {
    // Identical intervals and no jitter: both initiate the same rekeys at
    // the same instant, the collisions of RFC 7296 §2.8.1.
    let t = Timers {
        ike_rekey: 30 * MIN,
        child_rekey: vec![("net".into(), 30 * MIN)],
        ..Timers::default()
    };
    for seed in 0..8 {
        let mut p = up_with(seed, t.clone(), t.clone());
        p.advance(30 * MIN + Duration::from_secs(30));
        assert!(p.a.is_established() && p.b.is_established(), "seed {seed}");
        assert_eq!(
            (p.a.sa().spi_i(), p.a.sa().spi_r()),
            (p.b.sa().spi_i(), p.b.sa().spi_r()),
            "seed {seed}: one IKE SA survives on both sides"
        );
        assert_eq!(p.a.children.len(), 1, "seed {seed}: {:?}", p.a.children);
        assert!(p.children_mirror(), "seed {seed}");
    }
}

#[test]
fn rekey_jitter_spreads_deadlines_within_its_percentage() {
    let t = Timers {
        ike_rekey: 100 * MIN,
        jitter_pct: 10,
        ..Timers::default()
    };
    let mut seen = Vec::new();
    for seed in 0..16 {
        let p = up_with(seed, t.clone(), Timers::default());
        let after = p.a.sa().rekey_at().expect("armed").duration_since(p.now);
        assert!(
            after >= 89 * MIN && after <= 110 * MIN,
            "seed {seed}: {after:?}"
        );
        seen.push(after.as_secs());
    }
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() > 8, "jitter spreads the deadlines: {seen:?}");
}

#[test]
fn the_core_says_which_inputs_compute_keys() {
    let rekey = Timers {
        ike_rekey: 10 * MIN,
        ..Timers::default()
    };
    let p = up_with(6, rekey, Timers::default());
    let now = p.now;
    assert_eq!(p.a.sa().timeout_cost(now), Cost::Cheap);
    assert_eq!(
        p.a.sa().timeout_cost(now + 11 * MIN),
        Cost::Keys(KeyWork::OwnCreateChild)
    );
    assert_eq!(Command::Liveness.cost(), Cost::Cheap);
    assert_eq!(
        Command::RekeyIke.cost(),
        Cost::Keys(KeyWork::OwnCreateChild)
    );
    // A CREATE_CHILD_SA request from the peer computes keys; an
    // INFORMATIONAL does not.
    let header = |exchange, response: bool| {
        Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: PayloadType(0),
            version: 0x20,
            exchange,
            flags: if response { 0x20 } else { 0x08 },
            message_id: 1,
            length: 28,
        }
        .encode()
    };
    assert_eq!(
        p.a.sa()
            .datagram_cost(&header(ExchangeType::CREATE_CHILD_SA, false)),
        Cost::Keys(KeyWork::PeerCreateChild)
    );
    assert_eq!(
        p.a.sa()
            .datagram_cost(&header(ExchangeType::IKE_AUTH, true)),
        Cost::Keys(KeyWork::Authenticate)
    );
    assert_eq!(
        p.a.sa()
            .datagram_cost(&header(ExchangeType::INFORMATIONAL, false)),
        Cost::Cheap
    );
    assert_eq!(
        p.a.sa()
            .datagram_cost(&header(ExchangeType::IKE_SA_INIT, true)),
        Cost::Cheap,
        "an IKE_SA_INIT response to an established SA is dropped, not computed"
    );
    assert_eq!(p.a.sa().datagram_cost(b"garbage"), Cost::Cheap);
}
