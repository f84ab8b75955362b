//! A CHILD SA is never silently lost, with whole daemons on tokio's paused
//! clock (in-memory network, `none` dataplane): a refused install is
//! retried and reported as a failure, `impair kernel-fail` hits only the
//! connection it names, the `none` dataplane enforces hard time lifetimes,
//! an expired CHILD SA of an `auto = "start"` connection is re-created,
//! and a CHILD rekey refused for want of PFS is retried with a KE.

use std::sync::Arc;
use std::time::Duration;

use actors::memnet::MemoryNet;
use actors::status::MonitorEvent;
use actors::{Api, ApiReply, Auto, ConnSpec, DaemonHandle};
use ike::proposal::ProposalSpec;
use tokio::sync::broadcast;

mod common;
use common::*;

/// Inbound SPIs of the installed CHILD SAs of `name`.
async fn installed(d: &DaemonHandle, name: &str) -> Vec<String> {
    conn(d, name)
        .await
        .ike_sas
        .iter()
        .flat_map(|i| &i.child_sas)
        .filter(|c| c.state == "installed")
        .map(|c| c.spi_in.clone())
        .collect()
}

fn drain(m: &mut broadcast::Receiver<MonitorEvent>) -> Vec<MonitorEvent> {
    std::iter::from_fn(|| m.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn kernel_fail_fails_only_the_named_connection_and_its_child_comes_back() {
    let net = MemoryNet::new();
    let names = ["c0", "c1", "c2"];
    let b = daemon(
        &net,
        B,
        names
            .iter()
            .map(|c| spec(c, B, A, false, Auto::Add))
            .collect(),
    )
    .await;
    let a = daemon(
        &net,
        A,
        names
            .iter()
            .map(|c| spec(c, A, B, true, Auto::Add))
            .collect(),
    )
    .await;
    let mut monitor = a.monitor();
    let r = a
        .api(
            Api::Impair {
                conn: "c1".into(),
                kind: "kernel-fail".into(),
            },
            T,
        )
        .await;
    assert!(matches!(&r, ApiReply::Ok(m) if m.contains("'c1'")), "{r:?}");
    // Another connection installs first: it is not the one impaired.
    let r = up(&a, "c0").await;
    assert!(
        matches!(&r, ApiReply::Ok(m) if m.contains("installed")),
        "c0: {r:?}"
    );
    // The impaired one reports the failure, never "installed".
    let r = up(&a, "c1").await;
    let ApiReply::Err(e) = &r else {
        panic!("c1 must fail: {r:?}")
    };
    assert!(
        e.contains("could not be installed") && e.contains("injected failure"),
        "{e}"
    );
    assert!(e.contains("attempt 2 to bring it up in 1.0s"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    // The retry brings it up on the same IKE SA, on both sides.
    pass(Duration::from_secs(3)).await;
    assert_eq!(installed(&a, "c1").await.len(), 1, "c1 on a after retry");
    assert_eq!(installed(&b, "c1").await.len(), 1, "c1 on b after retry");
    assert_eq!(conn(&a, "c1").await.ike_sas.len(), 1, "same IKE SA");
    let r = up(&a, "c2").await;
    assert!(matches!(&r, ApiReply::Ok(_)), "c2: {r:?}");
    for c in names {
        assert_eq!(installed(&a, c).await.len(), 1, "{c} on a");
        assert_eq!(installed(&b, c).await.len(), 1, "{c} on b");
    }
    let events = drain(&mut monitor);
    assert!(
        events
            .iter()
            .any(|e| e.conn.as_deref() == Some("c1") && e.message.contains("is up again")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(
            |e| e.conn.as_deref() != Some("c1") && e.message.contains("could not be installed")
        ),
        "{events:?}"
    );
}

/// A child without rekeys whose hard time lifetime is `hard`.
fn expiring(mut s: ConnSpec, hard: Duration) -> ConnSpec {
    s.children[0].lifetime.hard_time = Some(hard);
    s
}

#[tokio::test(start_paused = true)]
async fn none_dataplane_expires_a_child_and_auto_start_recreates_it() {
    let net = MemoryNet::new();
    let hard = Duration::from_secs(20);
    let b = daemon(
        &net,
        B,
        vec![
            spec("c0", B, A, false, Auto::Add),
            spec("c1", B, A, false, Auto::Add),
        ],
    )
    .await;
    let a = daemon(
        &net,
        A,
        vec![
            expiring(spec("c0", A, B, true, Auto::Start), hard),
            expiring(spec("c1", A, B, true, Auto::Add), hard),
        ],
    )
    .await;
    let mut monitor = a.monitor();
    assert!(matches!(up(&a, "c1").await, ApiReply::Ok(_)));
    pass(Duration::from_secs(2)).await;
    let first = installed(&a, "c0").await;
    assert_eq!(first.len(), 1, "c0 up");
    assert_eq!(installed(&a, "c1").await.len(), 1, "c1 up");
    pass(hard).await;
    // c0 (auto = start) was re-created on its IKE SA; c1 (add, clear) is
    // gone on both sides and stays gone.
    let again = installed(&a, "c0").await;
    assert_eq!(again.len(), 1, "c0 re-created");
    assert_ne!(again, first, "a new CHILD SA");
    assert_eq!(installed(&b, "c0").await.len(), 1, "c0 on b");
    assert_eq!(conn(&a, "c0").await.ike_sas.len(), 1);
    assert!(installed(&a, "c1").await.is_empty(), "c1 expired on a");
    assert!(installed(&b, "c1").await.is_empty(), "c1 deleted on b");
    let events = drain(&mut monitor);
    let said = |conn: &str, what: &str| {
        events.iter().any(|e| {
            e.conn.as_deref() == Some(conn) && e.kind == "rekey" && e.message.contains(what)
        })
    };
    assert!(
        said("c0", "connection 'c0' child 'net': rekey did not succeed"),
        "{events:?}"
    );
    assert!(said("c0", "re-created after expiry"), "{events:?}");
    assert!(said("c1", "not re-created"), "{events:?}");
    pass(Duration::from_secs(60)).await;
    assert!(installed(&a, "c1").await.is_empty());
    // c0's new CHILD SA has the same lifetime: it expired again and was
    // re-created again.
    assert_eq!(installed(&a, "c0").await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rekey_refused_for_want_of_pfs_is_retried_with_a_ke_and_survives() {
    let net = MemoryNet::new();
    let mut bs = spec("c0", B, A, false, Auto::Add);
    let mut peer = (*bs.peer).clone();
    peer.children[0].esp_proposals = vec![ProposalSpec::parse_esp("aes256gcm16-x25519").unwrap()];
    // As Libreswan's pfs=yes: a rekey without KE is refused.
    peer.children[0].pfs_required = true;
    bs.peer = Arc::new(peer);
    let b = daemon(&net, B, vec![bs]).await;
    let mut s = spec("c0", A, B, true, Auto::Add);
    s.children[0].rekey_time = Duration::from_secs(30);
    s.children[0].lifetime.hard_time = Some(Duration::from_secs(33));
    let a = daemon(&net, A, vec![s]).await;
    let mut monitor = a.monitor();
    assert!(matches!(up(&a, "c0").await, ApiReply::Ok(_)));
    let first = installed(&a, "c0").await;
    pass(Duration::from_secs(95)).await;
    let now = installed(&a, "c0").await;
    assert_eq!(now.len(), 1, "{:?}", conn(&a, "c0").await);
    assert_ne!(now, first, "rekeyed");
    assert_eq!(installed(&b, "c0").await.len(), 1);
    let warns: Vec<String> = drain(&mut monitor)
        .into_iter()
        .filter(|e| e.kind == "rekey")
        .map(|e| e.message)
        .collect();
    // Refused once, for want of PFS; later rekeys carried the KE at once.
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].starts_with("connection 'c0' child 'net': rekey of ")
            && warns[0]
                .contains("refused by peer (NO_PROPOSAL_CHOSEN); retrying with KE x25519 in 0s"),
        "{warns:?}"
    );
    let proposal = &conn(&a, "c0").await.ike_sas[0].child_sas[0].proposal;
    assert!(proposal.contains("CURVE_25519"), "{proposal}");
}
