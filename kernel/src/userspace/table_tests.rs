//! The userspace tables on synthetic time: no threads, no TUN, no netlink.

use super::*;
use crate::Lifetime;
use ike::crypto::AeadAlg;
use ike::keys::ChildKeys;
use ike::ts::parse_ts;

const ALG: AeadAlg = AeadAlg::AesGcm16_128;
const REQID: u32 = 7;

fn ts(s: &str) -> TrafficSelector {
    parse_ts(s).unwrap()
}

fn sa(spi_in: u32, lifetime: Lifetime) -> SaInstall {
    let m: Vec<u8> = (0..ALG.key_material_len()).map(|i| i as u8).collect();
    SaInstall {
        owner: "c".into(),
        child: "net".into(),
        reqid: REQID,
        spi_in,
        spi_out: spi_in + 0x1000,
        local: "192.0.2.1:4500".parse().unwrap(),
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: true,
        mode: Mode::Tunnel,
        local_ts: vec![ts("10.1.0.0/16")],
        remote_ts: vec![ts("10.2.0.0/16")],
        encr: ALG,
        esn: false,
        keys: ChildKeys {
            encr: ALG,
            inbound: m.clone().into(),
            outbound: m.into(),
        },
        rekey_of: None,
        initiator: true,
        lifetime,
        opts: Default::default(),
    }
}

fn rekey(spi_in: u32, old: u32, initiator: bool) -> SaInstall {
    SaInstall {
        rekey_of: Some(old),
        initiator,
        ..sa(spi_in, Lifetime::default())
    }
}

fn install(t: &mut Tables, sa: &SaInstall, now: Instant) -> RouteOps {
    let new = NewSa::build(sa, t.ms(now)).unwrap();
    t.install(sa, new, now).unwrap().1
}

/// Fresh tables with SA 0x100 installed `at` seconds after their epoch.
fn with_sa(lifetime: Lifetime, at: f64) -> (Instant, Tables) {
    let t0 = Instant::now();
    let mut t = Tables::new(t0);
    let _ = install(&mut t, &sa(0x100, lifetime), secs(t0, at));
    (t0, t)
}

fn trap() -> Trap {
    Trap {
        owner: "c".into(),
        child: "net".into(),
        reqid: REQID,
        local_ts: vec![ts("10.1.0.0/16")],
        remote_ts: vec![ts("10.2.0.0/16")],
        local: None,
        remote: None,
        mode: ike::config::Mode::Tunnel,
        opts: Default::default(),
    }
}

/// 10.1.0.5:1000 → 10.2.0.9:53, UDP, `body` bytes of payload.
fn packet(body: usize) -> Vec<u8> {
    let (src, dst) = ("10.1.0.5".parse().unwrap(), "10.2.0.9".parse().unwrap());
    let mut p = Vec::new();
    assert!(ip::push_header(&mut p, src, dst, ip::PROTO_UDP, 8 + body));
    p.extend_from_slice(&[0x03, 0xe8, 0, 53, 0, 0, 0, 0]);
    p.resize(p.len() + body, 0);
    p
}

/// Sends `n` packets on the reqid's current SA.
fn send(t: &Tables, n: usize, body: usize) {
    let out = t.outbound(REQID).unwrap();
    let mut buf = Vec::new();
    for _ in 0..n {
        buf.clear();
        lock(&out.sa).encapsulate(&packet(body), &mut buf).unwrap();
    }
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

fn expire(spi_in: u32, hard: bool) -> DataplaneEvent {
    DataplaneEvent::Expire { spi_in, hard }
}

fn route_del() -> RouteOps {
    RouteOps(vec![RouteOp::Del(vec![("10.2.0.0".parse().unwrap(), 16)])])
}

fn tuple() -> FiveTuple {
    ip::parse_five_tuple(&packet(0)).unwrap()
}

#[test]
fn soft_packet_limit_asks_for_a_rekey_once_and_the_hard_one_removes() {
    let (t0, mut t) = with_sa(
        Lifetime {
            soft_packets: 3,
            hard_packets: 5,
            ..Lifetime::default()
        },
        0.0,
    );
    send(&t, 2, 10);
    assert_eq!(t.tick(secs(t0, 1.0)), Tick::default());
    send(&t, 1, 10);
    let tick = t.tick(secs(t0, 2.0));
    assert_eq!(tick.events, vec![expire(0x100, false)]);
    assert_eq!(
        t.tick(secs(t0, 3.0)),
        Tick::default(),
        "soft is raised once"
    );
    send(&t, 2, 10);
    let tick = t.tick(secs(t0, 4.0));
    assert_eq!(tick.events, vec![expire(0x100, true)]);
    assert_eq!(
        tick.routes,
        route_del(),
        "the child's last SA took its routes"
    );
    assert!(t.installed().is_empty());
    assert!(t.inbound(0x100).is_none() && t.outbound(REQID).is_none());
    assert_eq!(t.policy(&tuple()), None);
}

#[test]
fn soft_byte_limit_counts_inner_bytes() {
    let (t0, mut t) = with_sa(
        Lifetime {
            soft_bytes: 1000,
            hard_bytes: 2000,
            ..Lifetime::default()
        },
        0.0,
    );
    send(&t, 1, 900);
    assert_eq!(t.tick(t0).events, vec![]);
    send(&t, 1, 100);
    assert_eq!(t.tick(t0).events, vec![expire(0x100, false)]);
    assert_eq!(t.counters(0x100).unwrap().bytes_out, 2 * 28 + 1000);
    send(&t, 1, 1000);
    assert_eq!(t.tick(t0).events, vec![expire(0x100, true)]);
    assert_eq!(t.counters(0x100), None);
}

#[test]
fn hard_time_limit_removes_the_sa_at_its_age() {
    // Installed 10 s after the epoch: it expires at 70 s.
    let (t0, mut t) = with_sa(
        Lifetime {
            hard_time: Some(Duration::from_secs(60)),
            ..Lifetime::default()
        },
        10.0,
    );
    assert_eq!(t.tick(secs(t0, 69.9)), Tick::default());
    let tick = t.tick(secs(t0, 70.0));
    assert_eq!(tick.events, vec![expire(0x100, true)]);
    assert_eq!(tick.routes, route_del());
    assert!(t.installed().is_empty());
}

#[test]
fn rekeyed_sa_keeps_decrypting_for_the_drain_window() {
    let (t0, mut t) = with_sa(Lifetime::default(), 0.0);
    let _ = install(&mut t, &rekey(0x200, 0x100, true), t0);
    // As initiator of the rekey the new SA sends at once.
    assert_eq!(lock(&t.outbound(REQID).unwrap().sa).spi(), 0x1200);
    let removed = secs(t0, 5.0);
    assert_eq!(t.remove_sa("c", 0x100, Some(removed)), RouteOps::default());
    assert_eq!(t.installed().len(), 1);
    assert!(t.counters(0x100).is_none());
    assert_eq!(t.tick(secs(t0, 6.999)), Tick::default());
    assert!(t.inbound(0x100).is_some(), "still draining");
    assert_eq!(t.tick(removed + REKEYED_DRAIN), Tick::default());
    assert!(t.inbound(0x100).is_none(), "drain over after 2 s");
    assert!(t.inbound(0x200).is_some());
    assert_eq!(t.policy(&tuple()), Some(&Action::Protect { reqid: REQID }));
}

#[test]
fn removing_the_owner_ends_drains_at_once() {
    let (t0, mut t) = with_sa(Lifetime::default(), 0.0);
    let _ = install(&mut t, &rekey(0x200, 0x100, true), t0);
    let _ = t.remove_sa("c", 0x100, Some(t0));
    assert!(t.inbound(0x100).is_some());
    let (children, routes) = t.remove_owner("c");
    assert_eq!(children, vec!["net".to_string()]);
    assert_eq!(routes, route_del());
    assert!(t.inbound(0x100).is_none() && t.inbound(0x200).is_none());
    assert!(t.routes().is_empty());
}

#[test]
fn rekey_responder_sends_on_the_old_sa_until_the_new_one_is_used() {
    let (t0, mut t) = with_sa(Lifetime::default(), 0.0);
    let _ = install(&mut t, &rekey(0x200, 0x100, false), t0);
    let sending = |t: &Tables| lock(&t.outbound(REQID).unwrap().sa).spi();
    assert_eq!(sending(&t), 0x1100);
    assert!(t.inbound(0x200).unwrap().pending_out.load(Ordering::SeqCst));
    // A worker saw the first packet on the new SA.
    t.promote(REQID, 0x200);
    assert_eq!(sending(&t), 0x1200);

    // Or the old SA goes first.
    let _ = install(&mut t, &rekey(0x300, 0x200, false), t0);
    assert_eq!(sending(&t), 0x1200);
    let _ = t.remove_sa("c", 0x200, Some(t0));
    assert_eq!(sending(&t), 0x1300);
    assert!(!t.inbound(0x300).unwrap().pending_out.load(Ordering::SeqCst));
}

#[test]
fn trap_policies_give_way_to_the_sa_and_come_back_with_shared_routes() {
    let t0 = Instant::now();
    let mut t = Tables::new(t0);
    let ops = t.install_trap(&trap());
    assert_eq!(
        ops,
        RouteOps(vec![RouteOp::Add {
            prefixes: vec![("10.2.0.0".parse().unwrap(), 16)],
            local_ts: vec![ts("10.1.0.0/16")],
        }])
    );
    let trapped = Action::Trap {
        owner: "c".into(),
        child: "net".into(),
    };
    assert_eq!(t.policy(&tuple()), Some(&trapped));
    assert_eq!(
        install(&mut t, &sa(0x100, Lifetime::default()), t0),
        RouteOps::default(),
        "the trap's routes serve the SA"
    );
    assert_eq!(t.policy(&tuple()), Some(&Action::Protect { reqid: REQID }));
    assert_eq!(t.remove_sa("c", 0x100, Some(t0)), RouteOps::default());
    assert_eq!(t.policy(&tuple()), Some(&trapped));
    assert!(t.inbound(0x100).is_none(), "the last SA does not drain");
    assert_eq!(t.traps(), vec![trap()]);
    assert_eq!(t.remove_trap("c", "net"), Some(route_del()));
    assert_eq!(t.policy(&tuple()), None);
    assert_eq!(t.remove_trap("c", "net"), None);
}

#[test]
fn keepalives_are_due_after_the_interval_without_traffic() {
    let (t0, t) = with_sa(Lifetime::default(), 1.0);
    let every = Duration::from_secs(20);
    assert!(t.keepalives_due(t.ms(secs(t0, 20.999)), every).is_empty());
    let pair = (
        sa(0, Lifetime::default()).local,
        sa(0, Lifetime::default()).remote,
    );
    assert_eq!(t.keepalives_due(t.ms(secs(t0, 21.0)), every), vec![pair]);
    assert!(
        t.keepalives_due(t.ms(secs(t0, 22.0)), every).is_empty(),
        "a keepalive counts as traffic"
    );
}

#[test]
fn duplicate_spi_and_plain_esp_are_refused() {
    let (t0, mut t) = with_sa(Lifetime::default(), 0.0);
    let again = sa(0x100, Lifetime::default());
    let new = NewSa::build(&again, 0).unwrap();
    assert!(matches!(
        t.install(&again, new, t0),
        Err(DataplaneError::Duplicate(0x100))
    ));
    let plain = SaInstall {
        encap: false,
        ..sa(0x200, Lifetime::default())
    };
    assert!(matches!(
        NewSa::build(&plain, 0),
        Err(DataplaneError::Failed { .. })
    ));
}

#[test]
fn inbound_selectors_check_decapsulated_packets() {
    let (_, t) = with_sa(Lifetime::default(), 0.0);
    let inb = t.inbound(0x100).unwrap();
    // The peer's packet: from its side (10.2/16) to ours (10.1/16).
    let (src, dst) = ("10.2.0.9".parse().unwrap(), "10.1.0.5".parse().unwrap());
    let mut p = Vec::new();
    assert!(ip::push_header(&mut p, src, dst, ip::PROTO_ICMP, 4));
    p.extend_from_slice(&[8, 0, 0, 0]);
    assert!(inb.allows(&p));
    assert!(!inb.allows(&packet(0)), "our own direction");
    assert!(!inb.allows(&[0x45]));
}
