//! Two connections on one address pair, vpnd the responder: the half-open
//! SA is weighed against both and handed, at IKE_AUTH, to the connection
//! whose identity matched. That connection's IKE proposals are enforced,
//! and its events, rekey timer and INITIAL_CONTACT follow the SA there.
//! Against strongSwan's charon and against vpnd as the initiator.

use std::time::Duration;

use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

const PSK: &str = "handover-lab-secret-42";

/// c0 (b0.test) allows ECP_256 and x25519; c1 (b1.test) only x25519 and
/// rekeys its IKE SA every 10 s.
fn responder_config() -> String {
    r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]

[defaults]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
auto = "add"

[connections.c0]
remote_id = "b0.test"
proposals = ["aes256gcm16-prfsha256-ecp256-x25519"]
[connections.c0.children.net]
local_ts = ["198.19.1.0/25"]
remote_ts = ["198.19.2.0/25"]
esp_proposals = ["aes256gcm16"]

[connections.c1]
remote_id = "b1.test"
proposals = ["aes256gcm16-prfsha256-x25519"]
rekey_time = "10s"
[connections.c1.children.net]
local_ts = ["198.19.1.128/25"]
remote_ts = ["198.19.2.128/25"]
esp_proposals = ["aes256gcm16"]
"#
    .to_string()
}

/// B's connections to A: `name` as `id`, offering `ike`.
fn initiator_conn(name: &str, id: &str, ike: &str, half: &str) -> String {
    let (mine, theirs) = match half {
        "low" => ("198.19.2.0/25", "198.19.1.0/25"),
        _ => ("198.19.2.128/25", "198.19.1.128/25"),
    };
    format!(
        r#"
[connections.{name}]
local_addrs = ["198.18.0.2"]
remote_addrs = ["198.18.0.1"]
local_id = "{id}"
remote_id = "a.test"
proposals = ["{ike}"]
auto = "add"
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2
[connections.{name}.children.net]
local_ts = ["{mine}"]
remote_ts = ["{theirs}"]
esp_proposals = ["aes256gcm16"]
"#
    )
}

fn secrets() -> String {
    format!("[[psk]]\nids = [\"%any\"]\nsecret = \"{PSK}\"\n")
}

fn lab() -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("hov");
    lab.lan(&a, &["198.19.1.1/25", "198.19.1.129/25"]);
    lab.lan(&b, &["198.19.2.1/25", "198.19.2.129/25"]);
    (lab, a, b)
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

fn ike_sas(v: &Vpnd, conn: &str) -> Vec<serde_json::Value> {
    v.conn(conn)["ike_sas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// c1's one IKE SA, established, with its rekey timer armed; returns its
/// SPIs.
fn adopted_with_timers(v: &Vpnd) -> String {
    let sas = ike_sas(v, "c1");
    assert_eq!(sas.len(), 1, "{sas:?}");
    let ike = &sas[0];
    assert_eq!(ike["state"], "established", "{ike}");
    assert_eq!(ike["initiator"], false);
    assert!(
        ike["proposal"].as_str().unwrap().contains("CURVE_25519"),
        "{ike}"
    );
    assert!(
        ike["rekey_secs"].as_u64().is_some_and(|s| s <= 10),
        "the adopted SA keeps c1's rekey timer: {ike}"
    );
    format!("{}/{}", ike["spi_i"], ike["spi_r"])
}

/// vpnd rekeys c1's IKE SA itself (rekey_time 10 s): new SPIs, still one.
fn rekeyed_by_us(v: &Vpnd, before: &str) {
    assert!(
        wait(25, || {
            let sas = ike_sas(v, "c1");
            sas.len() == 1
                && sas[0]["state"] == "established"
                && format!("{}/{}", sas[0]["spi_i"], sas[0]["spi_r"]) != before
        }),
        "c1's IKE SA was not rekeyed: {:?}",
        ike_sas(v, "c1")
    );
}

fn established_event_for_c1(lab: &Lab) {
    let log = lab.log("vpnd-a");
    assert!(
        log.lines()
            .any(|l| l.contains("established with 'b1.test'") && l.contains("conn=\"c1\"")),
        "an 'established' event under c1:\n{log}"
    );
}

#[test]
fn charon_two_connections_one_pair_proposals_enforced_timers_and_initial_contact_follow() {
    let (mut lab, a, b) = lab();
    let v = Vpnd::start(&mut lab, &a, "vpnd-a", &responder_config(), &secrets(), &[]);
    let conn = |name: &str, id: &str, ike: &str, child: &str, lts: &str, rts: &str| {
        let mut c = CharonConn::psk(name, "198.18.0.2", "198.18.0.1", id, "a.test", PSK);
        c.proposals = ike.into();
        c.child = child.into();
        c.local_ts = lts.into();
        c.remote_ts = rts.into();
        c
    };
    let conns = [
        conn(
            "good0",
            "b0.test",
            "aes256gcm16-prfsha256-ecp256",
            "net0",
            "198.19.2.0/25",
            "198.19.1.0/25",
        ),
        conn(
            "bad1",
            "b1.test",
            "aes256gcm16-prfsha256-ecp256",
            "netbad",
            "198.19.2.128/25",
            "198.19.1.128/25",
        ),
        conn(
            "good1",
            "b1.test",
            "aes256gcm16-prfsha256-x25519",
            "net1",
            "198.19.2.128/25",
            "198.19.1.128/25",
        ),
    ];
    let charon = Charon::start(&mut lab, &b, "charon-b", &conns);
    charon.initiate("net0");
    assert!(
        wait(10, || v.installed_child("c0").is_some()),
        "{}",
        lab.log("vpnd-a")
    );
    // ECP_256 under c0's proposals, but the peer is c1's: refused.
    charon.initiate("netbad");
    assert!(
        wait(10, || lab.log("vpnd-a").contains(
            "connection 'c1' accepts peer identity 'b1.test' but not the negotiated IKE proposal"
        )),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(ike_sas(&v, "c1").is_empty());
    assert!(!charon.has_installed("netbad"), "{}", charon.list_sas());
    // x25519: c1 takes it, with its timers and its events.
    charon.initiate("net1");
    assert!(
        wait(10, || v.installed_child("c1").is_some()),
        "{}",
        lab.log("vpnd-a")
    );
    let spis = adopted_with_timers(&v);
    established_event_for_c1(&lab);
    rekeyed_by_us(&v, &spis);
    assert!(v.installed_child("c0").is_some(), "c0 untouched");
    // charon crashes and comes back as b1.test: its INITIAL_CONTACT clears
    // the stale SAs of that identity (c1's), and only those (c0's stays).
    lab.kill("charon-b");
    let charon = Charon::start(&mut lab, &b, "charon-b-again", &conns);
    charon.initiate("net1");
    assert!(
        wait(10, || {
            let sas = ike_sas(&v, "c1");
            sas.len() == 1
                && v.installed_child("c1").is_some()
                && sas[0]["established_secs"].as_u64() < Some(8)
        }),
        "one fresh IKE SA for c1: {:?}\n{}",
        ike_sas(&v, "c1"),
        lab.log("vpnd-a")
    );
    assert_eq!(
        ike_sas(&v, "c0").len(),
        1,
        "c0's peer identity has not come back: its stale SA stays until DPD"
    );
}

#[test]
fn vpnd_two_connections_one_pair_proposals_enforced_and_timers_follow() {
    let (mut lab, a, b) = lab();
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &responder_config(),
        &secrets(),
        &["--impair"],
    );
    let peer_config = format!(
        "[daemon]\nlisten = [\"198.18.0.2\"]\ndataplane = \"none\"\nsecrets = [\"secrets.toml\"]\n{}{}{}",
        initiator_conn("good0", "b0.test", "aes256gcm16-prfsha256-ecp256", "low"),
        initiator_conn("bad1", "b1.test", "aes256gcm16-prfsha256-ecp256", "high"),
        initiator_conn("good1", "b1.test", "aes256gcm16-prfsha256-x25519", "high"),
    );
    let peer = Vpnd::start(&mut lab, &b, "vpnd-b", &peer_config, &secrets(), &[]);
    assert!(peer.ctl(&["up", "good0"]).ok(), "{}", lab.log("vpnd-b"));
    let bad = peer.ctl(&["up", "bad1"]);
    assert!(!bad.ok(), "{bad:?}");
    assert!(
        bad.stderr.contains("AUTHENTICATION_FAILED")
            || bad.stdout.contains("AUTHENTICATION_FAILED"),
        "{bad:?}"
    );
    assert!(lab
        .log("vpnd-a")
        .contains("but not the negotiated IKE proposal"));
    assert!(ike_sas(&v, "c1").is_empty());
    let good = peer.ctl(&["up", "good1"]);
    assert!(good.ok(), "{good:?}\n{}", lab.log("vpnd-a"));
    let spis = adopted_with_timers(&v);
    established_event_for_c1(&lab);
    rekeyed_by_us(&v, &spis);
    assert!(v.installed_child("c0").is_some(), "c0 untouched");
    assert_eq!(peer.installed_children(), 2);
    // An impairment of c1 reaches the SA it adopted: its actor panics and
    // is restarted alone; c0's SA is untouched.
    let restarts = v.stats()["restarts_total"].as_u64().unwrap();
    let c0_spi = v.installed_child("c0").unwrap()["spi_in"].clone();
    assert!(v.ctl(&["impair", "c1", "panic"]).ok());
    assert!(
        wait(10, || v.stats()["restarts_total"].as_u64().unwrap()
            > restarts),
        "c1's adopted IKE SA actor did not panic: {}",
        lab.log("vpnd-a")
    );
    assert_eq!(v.installed_child("c0").unwrap()["spi_in"], c0_spi);
}
