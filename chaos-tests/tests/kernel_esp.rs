//! vpnd's userspace dataplane against real kernel ESP: strongSwan's charon
//! with kernel-netlink alone (XFRM states and policies, no kernel-libipsec)
//! in one namespace, vpnd with `dataplane = "userspace"` in the other, in
//! both roles, in tunnel and in transport mode (strongSwan's libipsec has
//! no transport mode: this is where vpnd's meets a real one). This host's
//! kernel has no ESP, so each test runs its body in a User-Mode Linux guest
//! (`chaos_tests::uml`): on the host the `#[test]` boots a guest that
//! re-runs the same test, which then finds itself inside.
//!
//! Proof that the kernel did the ESP: charon's namespace holds the XFRM
//! states (`ip -s xfrm state`), UDP-encapsulated, whose byte counters grow
//! by at least what TCP delivered; vpnd's namespace holds none.

use std::time::Duration;

use chaos_tests::configs::{self, psk_any};
use chaos_tests::topology::{self, GW1, GW2, LAN1, LAN1_HOST, LAN2, LAN2_HOST, PSK};
use chaos_tests::traffic;
use chaos_tests::xfrm::{self, XfrmState};
use chaos_tests::{uml, Charon, CharonConn, CharonOptions, Lab, Ns, Vpnd};
use serde_json::Value;

/// From boot to power-off, per guest.
const GUEST_LIMIT: Duration = Duration::from_secs(180);

/// Bytes of each TCP transfer (one per direction).
const BYTES: u64 = 10_000_000;

#[test]
fn guest_kernel_installs_esp_states_with_aes_gcm_and_chacha20_poly1305() {
    uml::guest_test(GUEST_LIMIT, || {
        let (lab, gw1, _gw2) = topology::site_to_site("kesm");
        // The kernel checks the algorithm when the state is added: this
        // fails unless esp4 and the AEAD's modules are there.
        for (spi, aead, key) in [
            (
                "0x1001",
                "rfc4106(gcm(aes))",
                "0x".to_string() + &"11".repeat(36),
            ),
            (
                "0x1002",
                "rfc7539esp(chacha20,poly1305)",
                "0x".to_string() + &"22".repeat(36),
            ),
        ] {
            lab.exec(
                &gw1,
                &[
                    "ip", "xfrm", "state", "add", "src", GW1, "dst", GW2, "proto", "esp", "spi",
                    spi, "mode", "tunnel", "aead", aead, &key, "128", "encap", "espinudp", "4500",
                    "4500", "0.0.0.0",
                ],
            );
        }
        let states = xfrm::states(&lab, &gw1);
        assert_eq!(states.len(), 2, "{states:?}");
        assert!(states.iter().all(|s| s.proto == "esp"), "{states:?}");
    });
}

#[test]
fn vpnd_initiator_kernel_esp_charon_responder_tunnel() {
    uml::guest_test(GUEST_LIMIT, || scenario("tunnel", true));
}

#[test]
fn kernel_esp_charon_initiator_vpnd_responder_tunnel() {
    uml::guest_test(GUEST_LIMIT, || scenario("tunnel", false));
}

#[test]
fn vpnd_initiator_kernel_esp_charon_responder_transport() {
    uml::guest_test(GUEST_LIMIT, || scenario("transport", true));
}

#[test]
fn kernel_esp_charon_initiator_vpnd_responder_transport() {
    uml::guest_test(GUEST_LIMIT, || scenario("transport", false));
}

/// What each end protects and where its traffic starts: vpnd on gw1,
/// charon on gw2 of `topology::site_to_site`.
struct Sides {
    vpnd_ts: String,
    vpnd_host: &'static str,
    charon_ts: String,
    charon_host: &'static str,
}

impl Sides {
    /// Tunnel mode: the LANs behind the gateways. Transport mode: the
    /// gateways themselves (/32 selectors), traffic gateway to gateway.
    fn for_mode(mode: &str) -> Sides {
        match mode {
            "tunnel" => Sides {
                vpnd_ts: LAN1.into(),
                vpnd_host: LAN1_HOST,
                charon_ts: LAN2.into(),
                charon_host: LAN2_HOST,
            },
            "transport" => Sides {
                vpnd_ts: format!("{GW1}/32"),
                vpnd_host: GW1,
                charon_ts: format!("{GW2}/32"),
                charon_host: GW2,
            },
            other => panic!("unknown ESP mode {other}"),
        }
    }
}

/// vpnd's end (gw1): connection "tun", CHILD SA "net".
fn vpnd_config(mode: &str, auto: &str, s: &Sides) -> String {
    configs::userspace_end(&configs::End {
        me: GW1,
        peer: GW2,
        my_id: "gw1.test",
        peer_id: "gw2.test",
        auto,
        local_ts: &[&s.vpnd_ts],
        remote_ts: &[&s.charon_ts],
        child_extra: &format!("mode = \"{mode}\""),
        // Charon's first ESP state in the guest takes seconds (crypto
        // modules load on demand).
        retransmit_timeout: "2s",
        ..configs::End::default()
    })
}

/// The installed CHILD SA "net" of connection "tun" in vpnd's status.
fn vpnd_child(v: &Vpnd) -> Option<Value> {
    v.installed_child("tun")
}

fn counter(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

fn assert_ping(lab: &Lab, ns: &Ns, src: &str, dst: &str) {
    let out = traffic::ping_output(lab, ns, src, dst, 3);
    assert_eq!(
        traffic::received(&out),
        Some(3),
        "ping {src} -> {dst}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// TCP from `src` (in `a`) to `dst` (in `b`); returns the bytes the server
/// received (each of them crossed the tunnel).
fn tcp(lab: &mut Lab, a: &Ns, src: &str, b: &Ns, dst: &str) -> u64 {
    let t = traffic::tcp_transfer_from(lab, a, src, b, dst, BYTES)
        .unwrap_or_else(|e| panic!("TCP {src} -> {dst}: {e}"));
    eprintln!(
        "TCP {src} -> {dst}: {} bytes in {:.2} s ({:.0} Mbit/s)",
        t.bytes_received,
        t.seconds,
        t.bits_per_second / 1e6
    );
    assert!(t.bytes_received >= BYTES / 2, "TCP {src} -> {dst}: {t:?}");
    t.bytes_received
}

/// charon's ESP state from `src` to `dst`.
fn state<'a>(states: &'a [XfrmState], src: &str, dst: &str) -> &'a XfrmState {
    states
        .iter()
        .find(|s| s.src == src && s.dst == dst && s.proto == "esp")
        .unwrap_or_else(|| panic!("no ESP state {src} -> {dst}: {states:#?}"))
}

/// One tunnel between vpnd (gw1, userspace ESP) and charon (gw2, kernel
/// ESP) in `mode`, started by vpnd or by charon: ping both ways, TCP both
/// ways, and the counters of vpnd, charon and the kernel agree that the
/// kernel's UDP-encapsulated ESP SAs carried it.
fn scenario(mode: &str, vpnd_initiates: bool) {
    let (mut lab, gw1, gw2) = topology::site_to_site(if vpnd_initiates { "kevc" } else { "kecv" });
    let s = Sides::for_mode(mode);
    let mut conn = CharonConn::psk("tun", GW2, GW1, "gw2.test", "gw1.test", PSK);
    conn.local_ts = s.charon_ts.clone();
    conn.remote_ts = s.vpnd_ts.clone();
    conn.mode = mode.into();
    let opts = CharonOptions {
        kernel_esp: true,
        ..Default::default()
    };
    let up = Duration::from_secs(30);
    let (vpnd, charon) = if vpnd_initiates {
        let charon = Charon::start_with(&mut lab, &gw2, "charon-gw2", &[conn], &opts);
        let config = vpnd_config(mode, "start", &s);
        let vpnd = Vpnd::start(&mut lab, &gw1, "vpnd-gw1", &config, &psk_any(PSK), &[]);
        (vpnd, charon)
    } else {
        let config = vpnd_config(mode, "add", &s);
        let vpnd = Vpnd::start(&mut lab, &gw1, "vpnd-gw1", &config, &psk_any(PSK), &[]);
        let charon = Charon::start_with(&mut lab, &gw2, "charon-gw2", &[conn], &opts);
        charon.initiate("net");
        (vpnd, charon)
    };
    let installed =
        Lab::wait_until(up, || vpnd.installed_children() > 0) && charon.wait_installed("net", up);
    assert!(
        installed,
        "CHILD SA not installed on both ends\ncharon:\n{}\nvpnd:\n{}",
        charon.list_sas(),
        lab.log("vpnd-gw1")
    );
    let sas = charon.list_sas();
    let wire = format!("{}-in-UDP", mode.to_uppercase());
    assert!(sas.contains(&wire), "charon's SA is not {wire}:\n{sas}");

    // The kernel holds charon's SAs; vpnd's namespace has none (its ESP is
    // in userspace).
    let before = xfrm::states(&lab, &gw2);
    for st in [state(&before, GW1, GW2), state(&before, GW2, GW1)] {
        assert_eq!(st.mode, mode, "{st:?}");
        assert!(
            st.encap
                .as_deref()
                .is_some_and(|e| e.starts_with("espinudp")),
            "{st:?}"
        );
        assert_eq!(st.aead.as_deref(), Some("rfc4106(gcm(aes))"), "{st:?}");
    }
    assert_eq!(
        xfrm::states(&lab, &gw1),
        vec![],
        "XFRM states in vpnd's namespace"
    );

    assert_ping(&lab, &gw1, s.vpnd_host, s.charon_host);
    assert_ping(&lab, &gw2, s.charon_host, s.vpnd_host);
    let to_charon = tcp(&mut lab, &gw1, s.vpnd_host, &gw2, s.charon_host);
    let to_vpnd = tcp(&mut lab, &gw2, s.charon_host, &gw1, s.vpnd_host);

    // Kernel: inbound (gw1 -> gw2) and outbound state counted the bulk, and
    // nothing failed its integrity check or the replay window.
    let after = xfrm::states(&lab, &gw2);
    let inbound = state(&after, GW1, GW2);
    let outbound = state(&after, GW2, GW1);
    let diag = format!("{after:#?}\n{}", charon.list_sas());
    for st in [inbound, outbound] {
        eprintln!(
            "kernel ESP SA {} -> {} spi {:08x} ({}, {}): {} bytes, {} packets",
            st.src,
            st.dst,
            st.spi,
            st.mode,
            st.encap.as_deref().unwrap_or("no encap"),
            st.bytes,
            st.packets
        );
    }
    assert!(inbound.bytes >= to_charon, "kernel inbound SA: {diag}");
    assert!(outbound.bytes >= to_vpnd, "kernel outbound SA: {diag}");
    assert!(inbound.packets > 6 && outbound.packets > 6, "{diag}");
    assert_eq!(
        (inbound.failed, inbound.replay_drops),
        (0, 0),
        "kernel drops: {diag}"
    );
    // charon reads the same counters from the kernel.
    let (c_in, c_out) = charon.child_bytes("net").expect("charon counters");
    assert!(c_in >= to_charon && c_out >= to_vpnd, "{diag}");
    // vpnd's dataplane counted both directions too, and rejected nothing.
    let c = vpnd_child(&vpnd).expect("vpnd's installed CHILD SA");
    assert!(counter(&c, "bytes_out") >= to_charon, "vpnd: {c}");
    assert!(counter(&c, "bytes_in") >= to_vpnd, "vpnd: {c}");
    assert_eq!(counter(&c, "integrity_failures"), 0, "vpnd: {c}");
    // Same SAs on both ends: vpnd's outbound SPI is the kernel's inbound.
    let spi_out = c["spi_out"].as_str().unwrap_or("");
    assert_eq!(
        u32::from_str_radix(spi_out, 16).ok(),
        Some(inbound.spi),
        "vpnd {c}\nkernel {inbound:?}"
    );
}
