//! vpnd against strongSwan's charon in network namespaces: both roles,
//! DELETE, wrong PSK, proposal mismatch.

use std::time::Duration;

use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

const PSK: &str = "daemon-interop-secret-42";

fn lab() -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("dint");
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    (lab, a, b)
}

fn vpnd_config(auto: &str, proposals: &str) -> String {
    format!(
        r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]

[connections.tob]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"
auth = "psk"
proposals = ["{proposals}"]
auto = "{auto}"
encap = true
keyingtries = 1
retransmit_timeout = "1s"
retransmit_tries = 2

[connections.tob.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = ["aes256gcm16"]
"#
    )
}

fn secrets(psk: &str) -> String {
    format!("[[psk]]\nids = [\"a.test\", \"b.test\"]\nsecret = \"{psk}\"\n")
}

fn charon(lab: &mut Lab, b: &Ns, f: impl FnOnce(&mut CharonConn)) -> Charon {
    let mut c = CharonConn::psk("toa", "198.18.0.2", "198.18.0.1", "b.test", "a.test", PSK);
    f(&mut c);
    Charon::start(lab, b, "charon-b", &[c])
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

#[test]
fn vpnd_initiator_charon_responder_child_installed_on_both() {
    let (mut lab, a, b) = lab();
    let charon = charon(&mut lab, &b, |_| {});
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config("add", "aes256gcm16-prfsha256-x25519"),
        &secrets(PSK),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert!(up.ok(), "up failed: {up:?}\n{}", lab.log("vpnd-a"));
    assert!(up.stdout.contains("CHILD SA 'net' installed"), "{up:?}");
    assert!(
        charon.has_installed("net"),
        "charon:\n{}",
        charon.list_sas()
    );
    let c = v.conn("tob");
    let ike = &c["ike_sas"][0];
    assert_eq!(ike["state"], "established");
    assert_eq!(ike["remote_id"], "b.test");
    assert_eq!(ike["remote"], "198.18.0.2[4500]");
    assert_eq!(ike["child_sas"][0]["state"], "installed");
    assert_eq!(ike["child_sas"][0]["local_ts"][0], "198.19.1.0/24");
    // The SPIs agree with charon's view.
    let spi_in = ike["child_sas"][0]["spi_in"].as_str().unwrap().to_string();
    assert!(
        charon.list_sas().contains(&spi_in),
        "{}\n{spi_in}",
        charon.list_sas()
    );
}

#[test]
fn charon_initiator_vpnd_responder_child_installed_on_both() {
    let (mut lab, a, b) = lab();
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config("add", "aes256gcm16-prfsha256-x25519"),
        &secrets(PSK),
        &[],
    );
    let charon = charon(&mut lab, &b, |_| {});
    charon.initiate("net");
    assert!(
        wait(15, || v.installed_children() == 1),
        "vpnd:\n{}",
        lab.log("vpnd-a")
    );
    assert!(
        wait(5, || charon.has_installed("net")),
        "charon:\n{}",
        charon.list_sas()
    );
    let ike = &v.conn("tob")["ike_sas"][0];
    assert_eq!(ike["initiator"], false);
    assert_eq!(ike["remote_id"], "b.test");
    assert_eq!(ike["child_sas"][0]["remote_ts"][0], "198.19.2.0/24");
}

#[test]
fn vpnd_down_sends_delete_and_charon_removes_its_sas() {
    let (mut lab, a, b) = lab();
    let charon = charon(&mut lab, &b, |_| {});
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config("start", "aes256gcm16-prfsha256-x25519"),
        &secrets(PSK),
        &[],
    );
    assert!(
        wait(15, || v.installed_children() == 1
            && charon.has_installed("net")),
        "{}",
        lab.log("vpnd-a")
    );
    let down = v.ctl(&["down", "tob"]);
    assert!(down.ok(), "{down:?}");
    assert!(v.conn("tob")["ike_sas"].as_array().unwrap().is_empty());
    assert!(
        wait(5, || !charon.list_sas().contains("ESTABLISHED")),
        "charon still has:\n{}",
        charon.list_sas()
    );
    assert!(
        lab.log("charon-b").contains("received DELETE for IKE_SA"),
        "{}",
        lab.log("charon-b")
    );
    assert_eq!(v.stats()["child_sas"], 0);
}

#[test]
fn wrong_psk_is_refused_on_both_sides_in_both_roles() {
    // vpnd initiates with the wrong key: charon refuses, vpnd reports it.
    let (mut lab, a, b) = lab();
    let charon_b = charon(&mut lab, &b, |_| {});
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config("add", "aes256gcm16-prfsha256-x25519"),
        &secrets("wrong-secret"),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(up.stderr.contains("AUTHENTICATION_FAILED"), "{up:?}");
    assert!(
        lab.log("vpnd-a").contains(
            "with 'b.test' closed: peer rejected our authentication: AUTHENTICATION_FAILED"
        ),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(
        lab.log("charon-b").contains("MAC mismatched"),
        "{}",
        lab.log("charon-b")
    );
    assert!(!charon_b.list_sas().contains("ESTABLISHED"));
    // charon initiates with the wrong key: vpnd names the failure and the peer.
    charon_b.initiate("net");
    assert!(
        wait(10, || lab
            .log("vpnd-a")
            .contains("authentication of 'b.test' failed")),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(
        wait(5, || lab.log("charon-b").contains("AUTHENTICATION_FAILED")),
        "{}",
        lab.log("charon-b")
    );
    assert_eq!(v.installed_children(), 0);
}

#[test]
fn proposal_mismatch_is_no_proposal_chosen_on_both_sides() {
    let (mut lab, a, b) = lab();
    let charon_b = charon(&mut lab, &b, |c| {
        c.proposals = "aes128gcm16-prfsha384-ecp384".into()
    });
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config("add", "chacha20poly1305-prfsha256-x25519"),
        &secrets(PSK),
        &[],
    );
    let up = v.ctl(&["up", "tob"]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(
        up.stderr
            .contains("peer rejected our proposals: NO_PROPOSAL_CHOSEN"),
        "{up:?}"
    );
    assert!(
        lab.log("charon-b")
            .contains("received proposals unacceptable"),
        "{}",
        lab.log("charon-b")
    );
    // And the other way round.
    charon_b.initiate("net");
    assert!(
        wait(10, || lab.log("vpnd-a").contains(
            "NO_PROPOSAL_CHOSEN: none of the peer's proposals is acceptable"
        )),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(
        wait(5, || lab.log("charon-b").contains("NO_PROPOSAL_CHOSEN")),
        "{}",
        lab.log("charon-b")
    );
}
