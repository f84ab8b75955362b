//! Whole daemons in one process on tokio's paused clock: two actor trees
//! joined by an in-memory network (`actors::memnet`), the `none`
//! dataplane, no root, no sockets. Establishing, `kill` in each state, a
//! panicking IKE SA actor and the retry backoff are checked on simulated
//! time, so a test of minutes takes milliseconds.

use std::sync::Arc;
use std::time::Duration;

use actors::admission::AdmissionConfig;
use actors::memnet::MemoryNet;
use actors::{Api, ApiReply, Auto, DaemonHandle};

mod common;
use common::*;

/// Daemons on A and B with connections c0.. on one address pair: B's
/// wait (`add`), A's are `auto`.
async fn pair(net: &Arc<MemoryNet>, n: usize, auto: Auto) -> (DaemonHandle, DaemonHandle) {
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let b = daemon(
        net,
        B,
        names
            .iter()
            .map(|c| spec(c, B, A, false, Auto::Add))
            .collect(),
    )
    .await;
    let a = daemon(
        net,
        A,
        names.iter().map(|c| spec(c, A, B, true, auto)).collect(),
    )
    .await;
    (a, b)
}

async fn installed(d: &DaemonHandle, name: &str) -> usize {
    conn(d, name)
        .await
        .ike_sas
        .iter()
        .flat_map(|i| &i.child_sas)
        .filter(|c| c.state == "installed")
        .count()
}

#[tokio::test(start_paused = true)]
async fn two_daemons_establish_and_one_kill_leaves_nothing_on_either_side() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net, 2, Auto::Add).await;
    for c in ["c0", "c1"] {
        let r = up(&a, c).await;
        assert!(matches!(&r, ApiReply::Ok(_)), "{c}: {r:?}");
        assert_eq!(installed(&a, c).await, 1, "{c} on a");
        // The responder side's SA lives under its own connection, each
        // under the one it authenticated as (c1 is not the first
        // candidate on this address pair).
        assert_eq!(installed(&b, c).await, 1, "{c} on b");
    }
    let r = a.api(Api::Kill("c0".into()), T).await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    assert!(conn(&a, "c0").await.ike_sas.is_empty());
    pass(Duration::from_millis(100)).await;
    // The best-effort DELETE reached b: its c0 is gone too, c1 untouched.
    assert!(conn(&b, "c0").await.ike_sas.is_empty(), "b's c0 deleted");
    assert_eq!(installed(&a, "c1").await, 1);
    assert_eq!(installed(&b, "c1").await, 1);
    let (sa, sb) = (stats(&a).await, stats(&b).await);
    assert_eq!((sa.ike_sas, sa.child_sas, sa.half_open), (1, 1, 0));
    assert_eq!((sb.ike_sas, sb.child_sas, sb.half_open), (1, 1, 0));
    // Deleting the connection stops its subtree: no IKE SA is left counted.
    let r = a.api(Api::Delete("c1".into()), T).await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_millis(100)).await;
    let sa = stats(&a).await;
    assert_eq!((sa.connections, sa.ike_sas, sa.child_sas), (1, 0, 0));
    // The peer heard the DELETE: its c1 SA is gone and not counted.
    let sb = stats(&b).await;
    assert_eq!((sb.connections, sb.ike_sas, sb.child_sas), (2, 0, 0));
    let r = b.api(Api::Delete("c1".into()), T).await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_millis(100)).await;
    let sb = stats(&b).await;
    assert_eq!((sb.connections, sb.ike_sas, sb.child_sas), (1, 0, 0));
}

/// ractor kills (rather than stops) the CHILD SA actors of an IKE SA that
/// stops, and a killed actor runs no `post_stop`: what it registered must
/// still go, or every tunnel brought up and killed leaks its CHILD SA
/// actor's mailboxes (the scale bench's churn grew 4 MB a round).
#[tokio::test(start_paused = true)]
async fn killed_tunnels_leave_no_child_sa_registered_on_either_side() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net, 3, Auto::Add).await;
    for round in 0..2 {
        for c in ["c0", "c1", "c2"] {
            let r = up(&a, c).await;
            assert!(matches!(&r, ApiReply::Ok(_)), "{c}: {r:?}");
        }
        assert_eq!(a.registered_children(), 3, "round {round}");
        assert_eq!(b.registered_children(), 3, "round {round}");
        for c in ["c0", "c1"] {
            let r = a.api(Api::Kill(c.into()), T).await;
            assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
        }
        pass(Duration::from_millis(100)).await;
        assert_eq!(a.registered_children(), 1, "round {round}: c2's alone");
        assert_eq!(b.registered_children(), 1, "round {round}: c2's alone");
        let r = a.api(Api::Kill("c2".into()), T).await;
        assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
        pass(Duration::from_millis(100)).await;
        assert_eq!(a.registered_children(), 0, "round {round}");
        assert_eq!(b.registered_children(), 0, "round {round}");
        let (sa, sb) = (stats(&a).await, stats(&b).await);
        assert_eq!((sa.ike_sas, sa.child_sas), (0, 0));
        assert_eq!((sb.ike_sas, sb.child_sas), (0, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn kill_while_retransmitting_to_a_vanished_peer_is_complete() {
    let net = MemoryNet::new();
    net.unplug(ip(B));
    let a = daemon(&net, A, vec![spec("c0", A, B, true, Auto::Add)]).await;
    let r = a
        .api(
            Api::Up {
                conn: "c0".into(),
                child: None,
                wait: false,
            },
            T,
        )
        .await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_millis(2500)).await; // retransmitting now
    let c = conn(&a, "c0").await;
    assert_eq!(c.ike_sas.len(), 1, "{c:?}");
    assert_eq!(c.ike_sas[0].state, "connecting");
    let r = a.api(Api::Kill("c0".into()), T).await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    let c = conn(&a, "c0").await;
    assert!(c.ike_sas.is_empty() && c.next_retry_secs.is_none(), "{c:?}");
    let s = stats(&a).await;
    assert_eq!((s.ike_sas, s.child_sas, s.half_open), (0, 0, 0));
    // Nothing starts again on its own, however long we wait.
    pass(Duration::from_secs(600)).await;
    assert!(conn(&a, "c0").await.ike_sas.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_half_open_responder_sa_belongs_to_no_connection_until_ike_auth() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net, 2, Auto::Add).await;
    // a's IKE_AUTH requests are lost: b holds a half-open SA for c1.
    let a_ip = ip(A);
    net.lose(Some(Box::new(move |t| {
        t.local.ip() == a_ip && t.data.get(18) == Some(&ike::wire::ExchangeType::IKE_AUTH.0)
    })));
    let r = a
        .api(
            Api::Up {
                conn: "c1".into(),
                child: None,
                wait: false,
            },
            T,
        )
        .await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_millis(200)).await;
    assert_eq!(stats(&b).await.half_open, 1);
    // It is under no connection: not in c0's status, though c0 is the
    // first candidate for this address pair, nor in c1's yet.
    assert!(conn(&b, "c0").await.ike_sas.is_empty());
    assert!(conn(&b, "c1").await.ike_sas.is_empty());
    // Killing c0, the connection that used to own every half-open SA on
    // this address pair, leaves it alone.
    let r = b.api(Api::Kill("c0".into()), T).await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    assert_eq!(
        stats(&b).await.half_open,
        1,
        "c0's kill took c1's half-open SA"
    );
    // IKE_AUTH gets through on a retransmission: the SA moves to c1.
    net.lose(None);
    pass(Duration::from_secs(5)).await;
    assert_eq!(installed(&b, "c1").await, 1);
    assert_eq!(installed(&a, "c1").await, 1);
    assert_eq!(stats(&b).await.half_open, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_ike_sa_actor_is_restarted_alone() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net, 3, Auto::Start).await;
    pass(Duration::from_secs(5)).await;
    let mut before = Vec::new();
    for i in 0..3 {
        let c = conn(&a, &format!("c{i}")).await;
        assert_eq!(installed(&a, &c.name).await, 1, "{c:?}");
        before.push(c.ike_sas[0].clone());
    }
    let r = a
        .api(
            Api::Impair {
                conn: "c0".into(),
                kind: "panic".into(),
            },
            T,
        )
        .await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_secs(10)).await;
    let c0 = conn(&a, "c0").await;
    assert_eq!(c0.ike_sas.len(), 1, "{c0:?}");
    assert_ne!(c0.ike_sas[0].id, before[0].id, "c0 has a new IKE SA");
    assert_eq!(installed(&a, "c0").await, 1);
    for (i, old) in before.iter().enumerate().skip(1) {
        let now = &conn(&a, &format!("c{i}")).await.ike_sas[0];
        assert_eq!(now.id, old.id, "c{i} untouched");
        assert_eq!(now.spi_i, old.spi_i);
    }
    assert!(stats(&a).await.restarts_total >= 1);
    // The peer replaced its stale c0 SA on INITIAL_CONTACT.
    assert_eq!(conn(&b, "c0").await.ike_sas.len(), 1);
    assert_eq!(stats(&b).await.child_sas, 3);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_give_up_after_keyingtries() {
    let net = MemoryNet::new();
    net.unplug(ip(B));
    let a = daemon(&net, A, vec![spec("c0", A, B, true, Auto::Add)]).await;
    let mut monitor = a.monitor();
    let started = tokio::time::Instant::now();
    let r = up(&a, "c0").await;
    // `up` answers with the first attempt's failure: 1 + 2 + 4 + 8 s of
    // retransmissions (timeout 1 s, 3 tries, doubling).
    let ApiReply::Err(e) = &r else {
        panic!("up against a vanished peer: {r:?}")
    };
    assert!(e.contains("retransmissions"), "{e}");
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    // The connection goes on: attempt 2 after 1 s, attempt 3 after 2 s
    // more, then it gives up.
    pass(Duration::from_secs(60)).await;
    let mut retries = Vec::new();
    while let Ok(ev) = monitor.try_recv() {
        if ev.kind == "retry" {
            retries.push((ev.t, ev.message));
        }
    }
    let said: Vec<&str> = retries.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(retries.len(), 3, "{said:?}");
    assert!(
        said[0].starts_with("attempt 1 failed") && said[0].ends_with("attempt 2 in 1.0s"),
        "{said:?}"
    );
    assert!(
        said[1].starts_with("attempt 2 failed") && said[1].ends_with("attempt 3 in 2.0s"),
        "{said:?}"
    );
    assert!(
        said[2].starts_with("giving up after 3 attempts"),
        "{said:?}"
    );
    // Each attempt took its 15 s, with the backoff between them.
    let gaps: Vec<u64> = retries
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).round() as u64)
        .collect();
    assert_eq!(gaps, [16, 17], "{retries:?}");
    let c = conn(&a, "c0").await;
    assert!(c.ike_sas.is_empty() && c.next_retry_secs.is_none(), "{c:?}");
    // The next `up` works once the peer is there.
    net.plug(ip(B));
    let b = daemon(&net, B, vec![spec("c0", B, A, false, Auto::Add)]).await;
    let r = up(&a, "c0").await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    assert_eq!(installed(&b, "c0").await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_flood_from_spoofed_addresses_meets_cookies_and_the_configured_peer_still_comes_up() {
    let net = MemoryNet::new();
    // B answers c0 from A, and anyone at all through a %any connection.
    let mut anyone = spec("roadwarrior", B, A, false, Auto::Add);
    anyone.remote_addrs = vec![None];
    let b = daemon_with(
        &net,
        B,
        vec![spec("c0", B, A, false, Auto::Add), anyone],
        AdmissionConfig {
            cookie_threshold: 5,
            cookie_threshold_ip: 2,
            block_threshold: 3,
            half_open_max: 40,
        },
    )
    .await;
    let a = daemon(&net, A, vec![spec("c0", A, B, true, Auto::Add)]).await;
    // A valid IKE_SA_INIT request, sent again and again with a fresh SPI
    // from 500 addresses nobody answers for.
    let cfg = Arc::new(ike::testing::test_config(
        "x", "x.test", "y.test", "p", true,
    ));
    let (from, to): (std::net::SocketAddr, std::net::SocketAddr) = (
        "198.18.100.1:500".parse().unwrap(),
        format!("{B}:500").parse().unwrap(),
    );
    let mut probe = ike::sa::IkeSa::initiate(
        tokio::time::Instant::now().into_std(),
        cfg,
        from,
        to,
        Box::new(ike::crypto::SystemRandom::new()),
        &["net"],
    );
    let template = probe.poll_transmit().expect("an IKE_SA_INIT request").data;
    let flood = |round: u64| {
        for i in 0..1000u64 {
            let mut data = template.clone();
            data[..8].copy_from_slice(&(round * 1000 + i + 1).to_be_bytes());
            let spoofed =
                std::net::Ipv4Addr::new(198, 18, 100 + (i % 2) as u8, (i / 2 % 250) as u8 + 1);
            net.inject(&ike::sa::Transmit {
                local: std::net::SocketAddr::new(spoofed.into(), 500),
                remote: to,
                non_esp_marker: false,
                data,
            });
        }
    };
    flood(0);
    pass(Duration::from_millis(10)).await;
    let during = stats(&b).await.admission;
    assert!(during.half_open <= 5, "{during:?}");
    assert!(during.cookies_sent_total >= 990, "{during:?}");
    // The configured peer gets a COOKIE too, returns it, and is in.
    flood(1);
    assert!(matches!(up(&a, "c0").await, ApiReply::Ok(_)));
    assert_eq!(installed(&b, "c0").await, 1);
    let after = stats(&b).await.admission;
    assert!(after.cookies_valid_total >= 1, "{after:?}");
    assert_eq!(after.requests_total, 2001 + after.cookies_valid_total);
    // The strangers' half-open SAs time out and every count comes back.
    pass(Duration::from_secs(40)).await;
    let end = stats(&b).await;
    assert_eq!(end.admission.half_open, 0, "{:?}", end.admission);
    assert_eq!(end.half_open, 0);
    assert_eq!(installed(&b, "c0").await, 1, "the tunnel is untouched");
}

/// Both ends initiate every connection at the same moment (a restarted
/// gateway reviving while its peer's DPD restarts): each pair of
/// duplicates is resolved the same way on both ends, one IKE SA and one
/// CHILD SA per connection remain, the same on both.
#[tokio::test(start_paused = true)]
async fn simultaneous_initiation_from_both_ends_leaves_one_sa_pair() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net, 5, Auto::Add).await;
    let (mut ma, mut mb) = (a.monitor(), b.monitor());
    // Both requests go out while nothing gets through; their
    // retransmissions cross once the link is back.
    net.unplug(ip(A));
    for i in 0..5 {
        let c = format!("c{i}");
        for d in [&a, &b] {
            let r = d
                .api(
                    Api::Up {
                        conn: c.clone(),
                        child: None,
                        wait: false,
                    },
                    T,
                )
                .await;
            assert!(matches!(r, ApiReply::Ok(_)), "{r:?}");
        }
    }
    pass(Duration::from_millis(500)).await;
    net.plug(ip(A));
    pass(Duration::from_secs(20)).await;
    // Each end removed one duplicate per connection, and said so.
    for m in [&mut ma, &mut mb] {
        let mut removed = 0;
        while let Ok(e) = m.try_recv() {
            removed += usize::from(e.message.starts_with("removing a duplicate IKE SA"));
        }
        assert_eq!(removed, 5);
    }
    let mut same_role = 0;
    for i in 0..5 {
        let name = format!("c{i}");
        let (ca, cb) = (conn(&a, &name).await, conn(&b, &name).await);
        assert_eq!(ca.ike_sas.len(), 1, "{ca:?}");
        assert_eq!(cb.ike_sas.len(), 1, "{cb:?}");
        assert_eq!(ca.ike_sas[0].spi_i, cb.ike_sas[0].spi_i, "{name}");
        assert_eq!(ca.ike_sas[0].spi_r, cb.ike_sas[0].spi_r, "{name}");
        assert_eq!(installed(&a, &name).await, 1, "{name}");
        assert_eq!(installed(&b, &name).await, 1, "{name}");
        same_role += usize::from(ca.ike_sas[0].initiator == cb.ike_sas[0].initiator);
    }
    assert_eq!(
        same_role, 0,
        "one end initiated the SA that remains, the other answered"
    );
    assert_eq!(stats(&a).await.ike_sas, 5);
    assert_eq!(stats(&b).await.ike_sas, 5);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_used_up_its_restarts_says_so_until_up() {
    let net = MemoryNet::new();
    let (a, _b) = pair(&net, 1, Auto::Start).await;
    pass(Duration::from_secs(5)).await;
    assert_eq!(installed(&a, "c0").await, 1);
    let mut monitor = a.monitor();
    // The default policy: 5 restarts in 60 s; the sixth failure gives up.
    for i in 0..6 {
        let r = a
            .api(
                Api::Impair {
                    conn: "c0".into(),
                    kind: "panic".into(),
                },
                T,
            )
            .await;
        assert!(matches!(&r, ApiReply::Ok(_)), "panic {i}: {r:?}");
        pass(Duration::from_secs(4)).await;
        let c = conn(&a, "c0").await;
        if i < 5 {
            assert_eq!(installed(&a, "c0").await, 1, "restart {i}: {c:?}");
            assert_eq!(c.gave_up, None);
        }
    }
    let c = conn(&a, "c0").await;
    let said = "gave up after 5 restarts in the window; run 'vpnctl up c0' to retry";
    assert_eq!(c.gave_up.as_deref(), Some(said), "{c:?}");
    assert!(c.ike_sas.is_empty(), "{c:?}");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["gave_up"], said);
    assert!(json.get("last_error").is_some() && json.get("failed_attempts").is_some());
    // It stays down, and monitor said why. (Still within the window of the
    // five restarts, so the `up` below must start a fresh one.)
    pass(Duration::from_secs(20)).await;
    assert!(conn(&a, "c0").await.ike_sas.is_empty());
    let mut events = Vec::new();
    while let Ok(ev) = monitor.try_recv() {
        events.push((ev.kind, ev.message));
    }
    assert!(
        events.iter().any(|(k, m)| k == "error" && m == said),
        "{events:?}"
    );
    // `up` brings it back, with a fresh window of restarts.
    let r = up(&a, "c0").await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    let c = conn(&a, "c0").await;
    assert_eq!(c.gave_up, None, "{c:?}");
    assert_eq!(installed(&a, "c0").await, 1);
    let r = a
        .api(
            Api::Impair {
                conn: "c0".into(),
                kind: "panic".into(),
            },
            T,
        )
        .await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_secs(4)).await;
    assert_eq!(installed(&a, "c0").await, 1, "restarted, not given up");
}

#[tokio::test(start_paused = true)]
async fn a_connection_actor_that_used_up_its_restarts_stays_listed_until_up() {
    let net = MemoryNet::new();
    let (a, _b) = pair(&net, 2, Auto::Start).await;
    pass(Duration::from_secs(5)).await;
    let mut monitor = a.monitor();
    let impair = |kind: &'static str| {
        a.api(
            Api::Impair {
                conn: "c0".into(),
                kind: kind.into(),
            },
            T,
        )
    };
    // The daemon's policy: 5 restarts of a connection in 60 s.
    for i in 0..6 {
        let r = impair("panic-connection").await;
        assert!(matches!(&r, ApiReply::Ok(_)), "panic {i}: {r:?}");
        pass(Duration::from_secs(4)).await;
        if i < 5 {
            assert_eq!(installed(&a, "c0").await, 1, "restart {i}");
        }
    }
    let said = "gave up after 5 restarts of the connection in the window; \
                run 'vpnctl up c0' to start it again";
    let c = conn(&a, "c0").await;
    assert_eq!(c.gave_up.as_deref(), Some(said), "{c:?}");
    assert!(c.ike_sas.is_empty());
    match a.api(Api::Status(None), T).await {
        ApiReply::Status(s) => {
            let names: Vec<_> = s.connections.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["c1", "c0"], "c0 is still listed");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(installed(&a, "c1").await, 1, "c1 untouched");
    let mut events = Vec::new();
    while let Ok(ev) = monitor.try_recv() {
        events.push((ev.kind, ev.message));
    }
    assert!(
        events.iter().any(|(k, m)| k == "error" && m == said),
        "{events:?}"
    );
    // Other verbs say why; down succeeds (it is down).
    let r = impair("stall").await;
    assert!(
        matches!(&r, ApiReply::Err(e) if e.contains("cannot be impaired: it gave up")),
        "{r:?}"
    );
    let r = a.api(Api::Down("c0".into()), T).await;
    assert!(
        matches!(&r, ApiReply::Ok(m) if m.contains("is down")),
        "{r:?}"
    );
    match a.api(Api::Names, T).await {
        ApiReply::Names(n) => assert!(n.contains(&"c0".to_string()), "{n:?}"),
        other => panic!("{other:?}"),
    }
    // `up` starts it again, with a fresh window of restarts.
    let r = up(&a, "c0").await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    let c = conn(&a, "c0").await;
    assert_eq!(c.gave_up, None, "{c:?}");
    assert_eq!(installed(&a, "c0").await, 1);
    let r = impair("panic-connection").await;
    assert!(matches!(&r, ApiReply::Ok(_)), "{r:?}");
    pass(Duration::from_secs(4)).await;
    assert_eq!(installed(&a, "c0").await, 1, "restarted, not given up");
}
