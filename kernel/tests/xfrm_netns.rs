//! The `xfrm` backend against this host's kernel, in a network namespace of
//! its own per test (root): policies, traps and ACQUIRE, reserved SPIs,
//! reconciliation, and an install the kernel refuses. This kernel has XFRM
//! policies but no ESP, so SAs themselves are tested in the UML guest
//! (chaos-tests); here their refusal must leave nothing behind.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use ike::config::Mode;
use ike::wire::TrafficSelector;
use kernel::xfrm::{XfrmDataplane, XfrmSettings};
use kernel::{Dataplane, DataplaneEvent, SaInstall, Trap};

/// Moves this test's thread (and the threads and processes it starts) into
/// a fresh network namespace with loopback up.
fn own_netns() {
    // SAFETY: affects only the calling thread.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWNET) (run as root): {}",
        std::io::Error::last_os_error()
    );
    ip(&["link", "set", "lo", "up"]);
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ts(a: &str, b: &str) -> TrafficSelector {
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: u16::MAX,
        start_addr: a.parse().unwrap(),
        end_addr: b.parse().unwrap(),
    }
}

fn trap(owner: &str, reqid: u32, remote_net: &str) -> Trap {
    Trap {
        owner: owner.into(),
        child: "net".into(),
        reqid,
        local_ts: vec![ts("198.19.1.0", "198.19.1.255")],
        remote_ts: vec![ts(remote_net, &remote_net.replace(".0", ".255"))],
        local: Some("198.18.0.1".parse().unwrap()),
        remote: Some("198.18.0.2".parse().unwrap()),
        mode: Mode::Tunnel,
        opts: Default::default(),
    }
}

fn policies() -> String {
    ip(&["xfrm", "policy"])
}

#[test]
fn traps_install_policies_and_routes_raise_acquire_and_go() {
    own_netns();
    // The gateway: its outer address and a LAN address inside the local
    // selectors, on a veth (loopback routes skip XFRM).
    ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(&["link", "set", "v0", "up"]);
    ip(&["link", "set", "v1", "up"]);
    ip(&["addr", "add", "198.18.0.1/24", "dev", "v0"]);
    ip(&["addr", "add", "198.19.1.1/24", "dev", "v0"]);
    let dp = XfrmDataplane::new(XfrmSettings::default()).unwrap();
    assert!(
        ip(&["rule"]).contains("220:\tfrom all lookup 220"),
        "{}",
        ip(&["rule"])
    );
    let mut events = dp.subscribe();
    dp.install_trap(&trap("c1", 1, "198.19.2.0")).unwrap();
    dp.install_trap(&trap("c2", 2, "198.19.3.0")).unwrap();
    let p = policies();
    // out, in and fwd for each, with vpnd's reqids and strongSwan's
    // priority for a trap of /24 <-> /24.
    assert_eq!(p.matches("reqid 1987051521").count(), 3, "{p}");
    assert_eq!(p.matches("reqid 1987051522").count(), 3, "{p}");
    assert!(p.contains("priority 375424"), "{p}");
    assert!(p.contains("tmpl src 198.18.0.1 dst 198.18.0.2"), "{p}");

    // Routed in table 220 like strongSwan's, from the LAN address.
    let routes = ip(&["route", "show", "table", "220"]);
    assert!(
        routes.contains("198.19.2.0/24 dev v0 proto static scope link src 198.19.1.1"),
        "{routes}"
    );
    assert!(routes.contains("198.19.3.0/24 dev v0"), "{routes}");

    // A packet into c2's selectors hits its trap.
    let s = UdpSocket::bind("198.19.1.1:0").unwrap();
    let _ = s.send_to(b"hello", "198.19.3.9:9");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ev = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(3), events.recv()).await })
        .unwrap_or_else(|_| panic!("no ACQUIRE within 3 s: {:?}", dp.stats()))
        .unwrap();
    assert_eq!(
        ev,
        DataplaneEvent::Acquire {
            owner: "c2".into(),
            child: "net".into()
        }
    );
    assert_eq!(
        dp.stats()
            .iter()
            .find(|s| s.0 == "xfrm_acquires")
            .unwrap()
            .1,
        1
    );

    // Removing c2 takes exactly its policies.
    dp.remove_owner("c2");
    let p = policies();
    assert_eq!(p.matches("reqid 1987051522").count(), 0, "{p}");
    assert_eq!(p.matches("reqid 1987051521").count(), 3, "{p}");
    dp.remove_trap("c1", "net").unwrap();
    assert_eq!(policies().trim(), "", "policies left");
    assert!(dp.traps().is_empty());
    assert_eq!(
        ip(&["route", "show", "table", "220"]).trim(),
        "",
        "routes left"
    );
    drop(dp);
    assert!(!ip(&["rule"]).contains("lookup 220"), "{}", ip(&["rule"]));
}

#[test]
fn reserved_spis_are_the_kernels_and_go_with_their_connection() {
    own_netns();
    let dp = XfrmDataplane::new(XfrmSettings::default()).unwrap();
    let local: IpAddr = "198.18.0.1".parse().unwrap();
    let remote: IpAddr = "198.18.0.2".parse().unwrap();
    let a = dp.alloc_spi("c1", local, remote, 0).expect("ALLOCSPI");
    let b = dp.alloc_spi("c2", local, remote, 0).expect("ALLOCSPI");
    assert_ne!(a, b);
    assert!((0xc000_0000..=0xcfff_ffff).contains(&a), "{a:08x}");
    let states = ip(&["xfrm", "state"]);
    assert!(states.contains(&format!("spi 0x{a:08x}")), "{states}");
    assert!(states.contains(&format!("spi 0x{b:08x}")), "{states}");
    dp.remove_owner("c1");
    let states = ip(&["xfrm", "state"]);
    assert!(!states.contains(&format!("spi 0x{a:08x}")), "{states}");
    assert!(states.contains(&format!("spi 0x{b:08x}")), "{states}");
}

fn sa(owner: &str, spi_in: u32, spi_out: u32) -> SaInstall {
    SaInstall {
        owner: owner.into(),
        child: "net".into(),
        reqid: 5,
        spi_in,
        spi_out,
        local: "198.18.0.1:4500".parse().unwrap(),
        remote: "198.18.0.2:4500".parse().unwrap(),
        encap: true,
        mode: Mode::Tunnel,
        local_ts: vec![ts("198.19.1.0", "198.19.1.255")],
        remote_ts: vec![ts("198.19.2.0", "198.19.2.255")],
        encr: ike::crypto::AeadAlg::AesGcm16_256,
        esn: false,
        keys: ike::keys::ChildKeys {
            encr: ike::crypto::AeadAlg::AesGcm16_256,
            inbound: vec![1; 36].into(),
            outbound: vec![2; 36].into(),
        },
        rekey_of: None,
        initiator: true,
        lifetime: Default::default(),
        opts: Default::default(),
    }
}

#[test]
fn a_refused_install_says_why_and_leaves_nothing_half_installed() {
    own_netns();
    let dp = XfrmDataplane::new(XfrmSettings::default()).unwrap();
    // With a trap in place, the refused SA must put the trap back.
    dp.install_trap(&Trap {
        reqid: 5,
        remote_ts: vec![ts("198.19.2.0", "198.19.2.255")],
        ..trap("c1", 5, "198.19.2.0")
    })
    .unwrap();
    let before = policies();
    let spi = dp
        .alloc_spi(
            "c1",
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            0,
        )
        .unwrap();
    let err = dp
        .install_sa(&sa("c1", spi, 0xc100_0001))
        .unwrap_err()
        .to_string();
    // This kernel has no ESP: the kernel's own words come back.
    assert!(err.contains("AEAD algorithm not found"), "{err}");
    assert!(err.contains(&format!("{spi:08x}")), "{err}");
    assert!(dp.installed().is_empty());
    let states = ip(&["xfrm", "state"]);
    assert_eq!(states.trim(), "", "states left: {states}");
    assert_eq!(policies(), before, "the trap's policies changed");
    // Injected failures behave the same.
    dp.faults().unwrap().fail_next_install("c1");
    assert_eq!(
        dp.install_sa(&sa("c1", 0x1234, 0x5678)),
        Err(kernel::DataplaneError::Injected)
    );
    dp.remove_owner("c1");
    assert_eq!(policies().trim(), "");
}

#[test]
fn reconcile_removes_only_stale_objects_in_vpnds_range() {
    own_netns();
    // A crashed vpnd's policy (reqid 0x76700007) and another daemon's.
    for (src, reqid) in [("198.19.1.0/24", "1987051527"), ("198.19.9.0/24", "1")] {
        ip(&[
            "xfrm",
            "policy",
            "add",
            "src",
            src,
            "dst",
            "198.19.2.0/24",
            "dir",
            "out",
            "tmpl",
            "src",
            "198.18.0.1",
            "dst",
            "198.18.0.2",
            "proto",
            "esp",
            "reqid",
            reqid,
            "mode",
            "tunnel",
        ]);
    }
    let dp = XfrmDataplane::new(XfrmSettings::default()).unwrap();
    dp.install_trap(&trap("c1", 3, "198.19.4.0")).unwrap();
    let removed = dp.reconcile();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].contains("198.19.1.0/24"), "{removed:?}");
    let p = policies();
    assert!(
        p.contains("198.19.9.0/24"),
        "another daemon's policy went: {p}"
    );
    assert!(!p.contains("src 198.19.1.0/24 dst 198.19.2.0/24"), "{p}");
    assert_eq!(
        p.matches("reqid 1987051523").count(),
        3,
        "our own trap went: {p}"
    );
    // And the other daemon's policy is what status calls unknown.
    let unknown = dp.unknown_state();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].contains("198.19.9.0/24"), "{unknown:?}");
}

#[test]
fn auto_probe_names_the_missing_algorithm() {
    own_netns();
    let err = kernel::xfrm::probe::probe().unwrap_err();
    assert!(
        err.starts_with("no ESP in this kernel: rfc4106(gcm(aes)) not found"),
        "{err}"
    );
}
