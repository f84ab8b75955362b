//! vpnd's kernel XFRM dataplane on this host, no UML guest: the kernel
//! here has XFRM policies but no ESP, which is enough for trap policies
//! and ACQUIRE (no SA is ever installed: the peer never answers).
//! `dataplane = "auto"` on this kernel picks the userspace dataplane and
//! says why.

use std::time::Duration;

use chaos_tests::configs::{self, End};
use chaos_tests::kernel_lab as kl;
use chaos_tests::topology::{self, GW2, LAN1, LAN1_HOST, LAN2, LAN2_HOST};
use chaos_tests::traffic;
use chaos_tests::xfrm::{self, Snapshot};
use chaos_tests::Lab;

#[test]
fn xfrm_auto_route_installs_traps_and_a_ping_raises_acquire() {
    // gw2 exists but runs nothing: the initiation ACQUIRE starts goes
    // unanswered.
    let (mut lab, gw1, _gw2) = topology::site_to_site("xhrt");
    let conf = configs::xfrm_end(&End {
        retransmit_timeout: "2s",
        ..End::site(1, "route")
    });
    let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
    let (snap, ok) = kl::wait_kernel(&lab, &gw1, Duration::from_secs(10), |s| {
        !s.vpnd_policies().is_empty()
    });
    assert!(
        ok,
        "no trap policies:\n{}\n{}",
        snap.describe(),
        lab.log("vpnd-gw1")
    );
    let out: Vec<_> = snap
        .vpnd_policies()
        .into_iter()
        .filter(|p| p.dir == "out")
        .cloned()
        .collect();
    assert_eq!(out.len(), 1, "{}", snap.describe());
    assert_eq!((out[0].src.as_str(), out[0].dst.as_str()), (LAN1, LAN2));
    let t = &out[0].tmpls[0];
    assert_eq!(
        (t.proto.as_str(), t.mode.as_str(), t.dst.as_str()),
        ("esp", "tunnel", GW2)
    );
    assert!(xfrm::is_vpnd_reqid(t.reqid), "{t:?}");
    assert!(snap.states.is_empty(), "{}", snap.describe());
    assert_eq!(v.conn("tun")["routed"], true, "{}", v.conn("tun"));
    assert!(v.conn("tun")["ike_sas"]
        .as_array()
        .is_none_or(|a| a.is_empty()));

    // A packet into the selectors: the kernel raises ACQUIRE, vpnd starts
    // an IKE SA towards gw2.
    let _ = traffic::ping_output(&lab, &gw1, LAN1_HOST, LAN2_HOST, 1);
    let started = Lab::wait_until(Duration::from_secs(5), || {
        v.conn("tun")["ike_sas"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let log = lab.log("vpnd-gw1");
    assert!(
        started,
        "no IKE SA after the ping: {}\n{log}",
        v.conn("tun")
    );
    assert!(
        kl::log_shows_acquire(&log),
        "vpnd's log names no ACQUIRE:\n{log}"
    );
    eprintln!("after ACQUIRE: {}", v.conn("tun"));
    // The traps stay while it negotiates.
    let still = Snapshot::take(&lab, &gw1);
    assert!(!still.vpnd_policies().is_empty(), "{}", still.describe());
}

#[test]
fn dataplane_auto_picks_userspace_on_this_kernel_and_says_why() {
    let (mut lab, gw1, _gw2) = topology::site_to_site("xhau");
    let conf = configs::xfrm_end(&End::site(1, "add"))
        .replace("dataplane = \"xfrm\"", "dataplane = \"auto\"");
    assert!(conf.contains("dataplane = \"auto\""));
    let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
    let log = lab.log("vpnd-gw1");
    let line = log
        .lines()
        .find(|l| l.contains("userspace"))
        .unwrap_or_else(|| panic!("vpnd's log does not say it picked userspace:\n{log}"));
    let l = line.to_lowercase();
    // The reason is about this kernel: it has no ESP (esp4) for XFRM.
    assert!(
        l.contains("kernel") && (l.contains("esp") || l.contains("xfrm")),
        "the choice gives no reason about the kernel's ESP: {line}"
    );
    eprintln!("dataplane choice: {line}");
    // And it really runs the userspace dataplane (its TUN device exists).
    let links = lab.exec(&gw1, &["ip", "-o", "link"]);
    assert!(
        String::from_utf8_lossy(&links.stdout).contains("vpnd0"),
        "no vpnd0 TUN device: {}",
        String::from_utf8_lossy(&links.stdout)
    );
    let _ = v;
}
