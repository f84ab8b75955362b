//! Real traffic through tunnels: ping and TCP between the LANs behind two
//! gateways. strongSwan's charon (kernel-libipsec) on both ends first; the
//! same checks will run against vpnd's userspace dataplane.

use std::time::Duration;

use chaos_tests::topology::{self, LAN1_HOST, LAN2_HOST};
use chaos_tests::traffic;
use chaos_tests::CharonOptions;

#[test]
fn charon_to_charon_carries_ping_and_tcp() {
    let (mut lab, gw1, gw2) = topology::site_to_site("dpcc");
    let (ch1, ch2) =
        topology::site_to_site_charons(&mut lab, &gw1, &gw2, &CharonOptions::default());

    let ping = traffic::ping_output(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
    assert_eq!(
        traffic::received(&ping),
        Some(3),
        "ping through the tunnel:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let (inb, outb) = ch1.child_bytes("net").expect("counters");
    assert!(
        inb >= 252 && outb >= 252,
        "3 echoes each way:\n{}",
        ch1.list_sas()
    );

    const BYTES: u64 = 20_000_000;
    let t = traffic::tcp_transfer_from(&mut lab, &gw1, LAN1_HOST, &gw2, LAN2_HOST, BYTES)
        .unwrap_or_else(|e| panic!("TCP through the tunnel: {e}"));
    assert!(t.bytes_sent >= BYTES, "{t:?}");
    assert!(t.bytes_received >= BYTES / 2, "{t:?}");
    // It really went through the tunnel: charon's ESP counters saw it.
    let (inb2, _) = ch2.child_bytes("net").expect("counters");
    assert!(inb2 >= t.bytes_received, "{t:?}\n{}", ch2.list_sas());
}

#[test]
fn charon_behind_nat_carries_ping() {
    let mut n = topology::behind_nat("dpnat");
    // gw2 cannot reach gw1 directly: no route to the private side.
    assert!(!traffic::ping(
        &n.lab,
        &n.gw2,
        topology::GW2,
        topology::NAT_GW1,
        1
    ));
    // Mappings expire after 4 s of silence; keepalives every 2 s hold it.
    n.set_udp_timeouts(4, 4);
    let opts = CharonOptions {
        charon_extra: "  keep_alive = 2s".into(),
        ..Default::default()
    };
    let (ch1, ch2) = n.charons(&opts);
    let sas = ch2.list_sas();
    assert!(
        sas.contains(&format!("{}[4500]", topology::NAT_OUTSIDE)),
        "{sas}"
    );
    assert!(traffic::ping(&n.lab, &n.gw1, LAN1_HOST, LAN2_HOST, 3));
    // Idle well past the conntrack timeout: only NAT keepalives flow.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        n.udp_mappings().contains("dport=4500"),
        "mapping gone:\n{}",
        n.udp_mappings()
    );
    // gw2 reaches into gw1's LAN through the same mapping.
    let ping = traffic::ping_output(&n.lab, &n.gw2, LAN2_HOST, LAN1_HOST, 3);
    assert_eq!(
        traffic::received(&ping),
        Some(3),
        "ping from gw2 after idling:\n{}\n{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        n.udp_mappings(),
        ch1.list_sas()
    );
}
