//! Helpers shared by the whole-daemon tests: connection specs mirrored
//! between the two ends, daemons on an in-memory network, status and
//! stats, and simulated time.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::admission::AdmissionConfig;
use actors::memnet::MemoryNet;
use actors::socket::Sockets;
use actors::spec::ChildSpec;
use actors::status::{ConnStatus, StatsReport};
use actors::{Api, ApiReply, Auto, ConnSpec, DaemonHandle, DaemonSettings, DpdAction};
use kernel::none::NoneDataplane;
use runtime::retry::RetryPolicy;
use runtime::scheduler::SchedulerConfig;

pub const A: &str = "198.18.0.1";
pub const B: &str = "198.18.0.2";
pub const T: Duration = Duration::from_secs(5);

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Connection `name` from `me` to `peer`; the initiator side ("a") and the
/// responder side ("b") mirror each other's identities and selectors.
pub fn spec(name: &str, me: &str, peer: &str, initiator: bool, auto: Auto) -> ConnSpec {
    let (lid, rid) = if initiator {
        (format!("{name}.a.test"), format!("{name}.b.test"))
    } else {
        (format!("{name}.b.test"), format!("{name}.a.test"))
    };
    let mut peer_cfg = ike::testing::test_config(name, &lid, &rid, "in-memory-psk", initiator);
    peer_cfg.retransmit.tries = 3;
    ConnSpec {
        name: name.into(),
        peer: Arc::new(peer_cfg),
        auto,
        local_addrs: vec![ip(me)],
        remote_addrs: vec![Some(ip(peer))],
        retry: RetryPolicy {
            keyingtries: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            jitter_pct: 0,
        },
        dpd_delay: Duration::ZERO,
        dpd_action: DpdAction::Clear,
        rekey_time: Duration::ZERO,
        children: vec![ChildSpec {
            name: "net".into(),
            rekey_time: Duration::ZERO,
            updown: None,
            lifetime: kernel::Lifetime::default(),
            xfrm: kernel::XfrmOptions::default(),
        }],
        jitter_pct: 0,
    }
}

pub async fn daemon(net: &Arc<MemoryNet>, me: &str, conns: Vec<ConnSpec>) -> DaemonHandle {
    daemon_with(net, me, conns, AdmissionConfig::default()).await
}

pub async fn daemon_with(
    net: &Arc<MemoryNet>,
    me: &str,
    conns: Vec<ConnSpec>,
    admission: AdmissionConfig,
) -> DaemonHandle {
    let settings = DaemonSettings {
        listen: vec![ip(me)],
        dataplane: Arc::new(NoneDataplane::new()),
        scheduler: SchedulerConfig::default(),
        impair: true,
        admission,
        state_dir: None,
    };
    DaemonHandle::start_on(settings, conns, Sockets::memory(net.clone(), vec![ip(me)]))
        .await
        .expect("daemon starts")
}

pub async fn conn(d: &DaemonHandle, name: &str) -> ConnStatus {
    match d.api(Api::Status(Some(name.into())), T).await {
        ApiReply::Status(mut s) => s.connections.remove(0),
        other => panic!("status of {name}: {other:?}"),
    }
}

pub async fn stats(d: &DaemonHandle) -> StatsReport {
    match d.api(Api::Stats, T).await {
        ApiReply::Stats(s) => *s,
        other => panic!("stats: {other:?}"),
    }
}

/// Let simulated time pass (the daemons' timers fire as they fall due).
pub async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

pub async fn up(d: &DaemonHandle, name: &str) -> ApiReply {
    d.api(
        Api::Up {
            conn: name.into(),
            child: None,
            wait: true,
        },
        Duration::from_secs(120),
    )
    .await
}
