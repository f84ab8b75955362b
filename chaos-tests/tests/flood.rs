//! A bounded IKE_SA_INIT flood (`ike-flood`, 2,000/s for 8 s) at a vpnd
//! responder while a legitimate peer brings its tunnel up: the responder
//! demands COOKIEs, the peer (strongSwan's charon, or vpnd) returns one and
//! is in within seconds, and the half-open count stays at the threshold.
//! The full 2k/5k/20k table is `cargo bench -p chaos-tests --bench flood`.

use std::time::{Duration, Instant};

use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

const PSK: &str = "flood-lab-secret-42";
const FLOOD: &str = env!("CARGO_BIN_EXE_ike-flood");

/// A (198.18.0.1) answers `tob` for B (198.18.0.2) and anyone else through
/// a `%any` connection, so spoofed sources find a candidate.
fn responder_config() -> String {
    r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]

[defaults]
local_addrs = ["198.18.0.1"]
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
local_id = "a.test"

[connections.tob]
remote_addrs = ["198.18.0.2"]
remote_id = "b.test"
[connections.tob.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = ["aes256gcm16"]

[connections.anyone]
remote_addrs = ["%any"]
remote_id = "roadwarrior.test"
[connections.anyone.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.3.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    .to_string()
}

fn initiator_config() -> String {
    r#"[daemon]
listen = ["198.18.0.2"]
dataplane = "none"
secrets = ["secrets.toml"]

[connections.toa]
local_addrs = ["198.18.0.2"]
remote_addrs = ["198.18.0.1"]
local_id = "b.test"
remote_id = "a.test"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
retransmit_timeout = "1s"
[connections.toa.children.net]
local_ts = ["198.19.2.0/24"]
remote_ts = ["198.19.1.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    .to_string()
}

fn secrets() -> String {
    format!("[[psk]]\nids = [\"%any\"]\nsecret = \"{PSK}\"\n")
}

fn lab() -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("fld");
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    // Replies to spoofed sources go towards B, which drops them.
    lab.exec(
        &a,
        &["ip", "route", "add", "198.18.64.0/22", "via", "198.18.0.2"],
    );
    (lab, a, b)
}

/// Start the flood from B's namespace; returns once it is under way.
fn flood(lab: &mut Lab, b: &Ns, source: &[&str]) {
    let mut argv = vec![FLOOD, "--to", "198.18.0.1", "--rate", "2000", "--secs", "8"];
    argv.extend_from_slice(source);
    lab.spawn(b, "flood", &argv, &[]);
    std::thread::sleep(Duration::from_millis(1500));
}

fn admission(v: &Vpnd) -> serde_json::Value {
    v.stats()["admission"].clone()
}

fn check_flood_was_met(lab: &mut Lab, v: &Vpnd, up_after: Duration) {
    let adm = admission(v);
    eprintln!("up after {up_after:?} under the flood; responder admission: {adm}");
    assert!(
        up_after <= Duration::from_secs(5),
        "the peer took {up_after:?} to come up"
    );
    assert!(
        adm["cookies_sent_total"].as_u64().unwrap() > 1000,
        "cookies were in use: {adm}"
    );
    assert!(
        adm["cookies_valid_total"].as_u64().unwrap() >= 1,
        "the peer came in on a cookie: {adm}"
    );
    assert!(
        adm["half_open"].as_u64().unwrap() <= 30,
        "half-open held to the threshold: {adm}"
    );
    assert!(
        lab.wait_exit("flood", Duration::from_secs(15)).is_some(),
        "the flood ends"
    );
    assert!(
        lab.log("flood").contains("sent 16000 datagrams"),
        "{}",
        lab.log("flood")
    );
}

#[test]
fn charon_gets_through_a_spoofed_flood_on_a_cookie() {
    let (mut lab, a, b) = lab();
    let v = Vpnd::start(&mut lab, &a, "vpnd-a", &responder_config(), &secrets(), &[]);
    let c = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", "b.test", "a.test", PSK);
    let charon = Charon::start(&mut lab, &b, "charon-b", &[c]);
    flood(&mut lab, &b, &["--spoof", "198.18.64.0", "--count", "1024"]);
    let t = Instant::now();
    charon.initiate("net");
    assert!(
        Lab::wait_until(Duration::from_secs(10), || v.installed_children() == 1),
        "vpnd:\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        charon.list_sas()
    );
    let up_after = t.elapsed();
    assert!(charon.wait_installed("net", Duration::from_secs(5)));
    check_flood_was_met(&mut lab, &v, up_after);
    let log = lab.log("vpnd-a");
    assert!(log.contains("IKE_SA_INIT flood:"), "a summary line:\n{log}");
}

#[test]
fn vpnd_gets_through_a_flood_from_its_own_address_on_a_cookie() {
    let (mut lab, a, b) = lab();
    let v = Vpnd::start(&mut lab, &a, "vpnd-a", &responder_config(), &secrets(), &[]);
    let peer = Vpnd::start(&mut lab, &b, "vpnd-b", &initiator_config(), &secrets(), &[]);
    flood(&mut lab, &b, &["--from", "198.18.0.2"]);
    let t = Instant::now();
    let up = peer.ctl(&["up", "toa"]);
    let up_after = t.elapsed();
    assert!(up.ok(), "{up:?}\n{}", lab.log("vpnd-b"));
    assert_eq!(v.installed_children(), 1);
    check_flood_was_met(&mut lab, &v, up_after);
}
