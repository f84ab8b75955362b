//! updown scripts from a running vpnd: the PLUTO_* environment captured by
//! a script and checked field by field for up and down, client and host,
//! IPv4 and IPv6; nothing on rekey; a hanging script delays nothing.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chaos_tests::configs::{pair_config, psk_any};
use chaos_tests::{Lab, Ns, Vpnd};

const PSK: &str = "updown-test-secret-value";

fn lab(tag: &str) -> (Lab, Ns, Ns) {
    let mut lab = Lab::new(tag);
    let a = lab.ns("a");
    let b = lab.ns("b");
    lab.link(
        &a,
        &["198.18.0.1/24", "2001:db8::1/64"],
        &b,
        &["198.18.0.2/24", "2001:db8::2/64"],
    );
    (lab, a, b)
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Three connections: IPv4 subnets (client, rekeyed every 2 s), IPv4
/// host-to-host, IPv6 subnets over IPv6 with forced UDP encapsulation.
fn config(side: &str, updown: &str, auto: &str) -> String {
    let a = side == "a";
    let (me4, peer4, me6, peer6) = if a {
        ("198.18.0.1", "198.18.0.2", "2001:db8::1", "2001:db8::2")
    } else {
        ("198.18.0.2", "198.18.0.1", "2001:db8::2", "2001:db8::1")
    };
    let (other, (l4, r4), (l6, r6)) = if a {
        (
            "b",
            ("198.19.0.0/25", "198.19.0.128/25"),
            ("fd00:1::/64", "fd00:2::/64"),
        )
    } else {
        (
            "a",
            ("198.19.0.128/25", "198.19.0.0/25"),
            ("fd00:2::/64", "fd00:1::/64"),
        )
    };
    let updown_line = if updown.is_empty() {
        String::new()
    } else {
        format!("updown = \"{updown}\"")
    };
    format!(
        r#"[daemon]
listen = ["{me4}", "{me6}"]
dataplane = "none"
secrets = ["secrets.toml"]

[defaults]
auto = "{auto}"
proposals = ["aes256gcm16-prfsha256-x25519"]

[connections.c0]
local_addrs = ["{me4}"]
remote_addrs = ["{peer4}"]
local_id = "{side}0.test"
remote_id = "{other}0.test"

[connections.c0.children.net0]
local_ts = ["{l4}"]
remote_ts = ["{r4}"]
esp_proposals = ["aes256gcm16"]
rekey_time = "2s"
{updown_line}

[connections.c1]
local_addrs = ["{me4}"]
remote_addrs = ["{peer4}"]
local_id = "{side}1.test"
remote_id = "{other}1.test"

[connections.c1.children.host1]
local_ts = ["{me4}/32"]
remote_ts = ["{peer4}/32"]
esp_proposals = ["aes256gcm16"]
mode = "transport"
{updown_line}

[connections.c2]
local_addrs = ["{me6}"]
remote_addrs = ["{peer6}"]
local_id = "{side}2.test"
remote_id = "{other}2.test"
encap = true

[connections.c2.children.v6net2]
local_ts = ["{l6}"]
remote_ts = ["{r6}"]
esp_proposals = ["aes256gcm16"]
{updown_line}
"#
    )
}

/// The runs recorded by the capture script (one file each), each as a map.
fn runs(dir: &Path) -> Vec<HashMap<String, String>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<String, String>>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn child_status(v: &Vpnd, conn: &str) -> (serde_json::Value, serde_json::Value) {
    let c = v.conn(conn);
    (
        c["ike_sas"][0].clone(),
        c["ike_sas"][0]["child_sas"][0].clone(),
    )
}

#[test]
fn updown_environment_for_up_and_down_client_host_ipv4_ipv6_and_not_on_rekey() {
    let (mut lab, a, b) = lab("updn");
    // One file per run: runs of different connections are concurrent.
    let capture = lab.dir().join("runs");
    std::fs::create_dir_all(&capture).unwrap();
    let hook = lab.dir().join("capture.sh");
    script(
        &hook,
        &format!(
            "env | grep '^PLUTO_' | sort > {}/$(date +%s%N).$$",
            capture.display()
        ),
    );
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &config("b", "", "add"),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &config("a", hook.to_str().unwrap(), "start"),
        &psk_any(PSK),
        &[],
    );
    assert!(
        wait(15, || va.installed_children() == 3),
        "{}\n{}",
        va.status(),
        lab.log("vpnd-a")
    );
    assert!(
        wait(5, || runs(&capture).len() == 3),
        "{:?}",
        runs(&capture)
    );
    // Status shows when c0's CHILD SA rekeys (every 2 s).
    let (ike0, child0) = child_status(&va, "c0");
    assert!(
        child0["rekey_secs"].as_u64().is_some_and(|r| r <= 2),
        "{child0}"
    );
    assert!(
        ike0["rekey_secs"].as_u64().is_some_and(|r| r > 3600),
        "IKE rekey in ~4h: {ike0}"
    );
    // Let it rekey at least once: no further runs.
    let first_spi = child0["spi_in"].clone();
    assert!(
        wait(10, || child_status(&va, "c0").1["spi_in"] != first_spi),
        "c0 never rekeyed"
    );
    std::thread::sleep(Duration::from_millis(500));
    let ups = runs(&capture);
    assert_eq!(ups.len(), 3, "a rekey ran the script: {ups:?}");

    let by_conn =
        |runs: &[HashMap<String, String>], name: &str, verb: &str| -> HashMap<String, String> {
            runs.iter()
                .find(|r| r["PLUTO_CONNECTION"] == name && r["PLUTO_VERB"] == verb)
                .cloned()
                .unwrap_or_else(|| panic!("no {verb} run for {name} in {runs:?}"))
        };
    let check = |r: &HashMap<String, String>, expect: &[(&str, String)]| {
        for (k, v) in expect {
            assert_eq!(r.get(*k), Some(v), "{k} in {r:?}");
        }
    };
    let common = |r: &HashMap<String, String>, conn: &str| {
        let (ike, child) = child_status(&va, conn);
        check(
            r,
            &[
                ("PLUTO_VERSION", "1.1".into()),
                ("PLUTO_PROTO", "esp".into()),
                ("PLUTO_REQID", child["reqid"].to_string()),
                ("PLUTO_UNIQUEID", ike["id"].to_string()),
                (
                    "PLUTO_MY_ID",
                    ike["local_id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{conn}: {ike}"))
                        .into(),
                ),
                (
                    "PLUTO_PEER_ID",
                    ike["remote_id"].as_str().unwrap_or_default().into(),
                ),
                ("PLUTO_MY_PORT", "0".into()),
                ("PLUTO_PEER_PORT", "0".into()),
                ("PLUTO_MY_PROTOCOL", "0".into()),
                ("PLUTO_PEER_PROTOCOL", "0".into()),
            ],
        );
    };
    let r = by_conn(&ups, "net0", "up-client");
    common(&r, "c0");
    check(
        &r,
        &[
            ("PLUTO_ME", "198.18.0.1".into()),
            ("PLUTO_PEER", "198.18.0.2".into()),
            ("PLUTO_MY_CLIENT", "198.19.0.0/25".into()),
            ("PLUTO_PEER_CLIENT", "198.19.0.128/25".into()),
            ("PLUTO_MY_ID", "a0.test".into()),
            ("PLUTO_PEER_ID", "b0.test".into()),
        ],
    );
    assert!(!r.contains_key("PLUTO_UDP_ENC"), "no encapsulation on c0");
    let r = by_conn(&ups, "host1", "up-host");
    common(&r, "c1");
    check(
        &r,
        &[
            ("PLUTO_MY_CLIENT", "198.18.0.1/32".into()),
            ("PLUTO_PEER_CLIENT", "198.18.0.2/32".into()),
        ],
    );
    let r = by_conn(&ups, "v6net2", "up-client-v6");
    common(&r, "c2");
    check(
        &r,
        &[
            ("PLUTO_ME", "2001:db8::1".into()),
            ("PLUTO_PEER", "2001:db8::2".into()),
            ("PLUTO_MY_CLIENT", "fd00:1::/64".into()),
            ("PLUTO_PEER_CLIENT", "fd00:2::/64".into()),
            ("PLUTO_UDP_ENC", "4500".into()),
        ],
    );

    // Down: the same environment with the down verbs.
    for c in ["c0", "c1", "c2"] {
        let r = va.ctl(&["down", c]);
        assert!(r.ok(), "{r:?}");
    }
    assert!(
        wait(5, || runs(&capture).len() == 6),
        "{:?}",
        runs(&capture)
    );
    let all = runs(&capture);
    let r = by_conn(&all, "net0", "down-client");
    check(
        &r,
        &[
            ("PLUTO_MY_CLIENT", "198.19.0.0/25".into()),
            ("PLUTO_ME", "198.18.0.1".into()),
        ],
    );
    by_conn(&all, "host1", "down-host");
    let r = by_conn(&all, "v6net2", "down-client-v6");
    check(&r, &[("PLUTO_PEER_CLIENT", "fd00:2::/64".into())]);
    assert_eq!(va.stats()["updown_failures_total"], 0);
    assert_eq!(va.stats()["updown_runs_total"], 6);
}

#[test]
fn a_hanging_updown_script_does_not_delay_the_tunnel() {
    let (mut lab, a, b) = lab("hang");
    let hook = lab.dir().join("hang.sh");
    script(&hook, "sleep 60");
    let conf_a = pair_config("a", 2, "add", "", |_| String::new()).replace(
        "esp_proposals = [\"aes256gcm16\"]",
        &format!(
            "esp_proposals = [\"aes256gcm16\"]\nupdown = \"{}\"",
            hook.display()
        ),
    );
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &pair_config("b", 2, "add", "", |_| String::new()),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &conf_a, &psk_any(PSK), &[]);
    for c in ["c0", "c1"] {
        let t = Instant::now();
        let r = va.ctl(&["up", c]);
        assert!(r.ok(), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "up {c} took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(va.installed_children(), 2);
    let r = va.ctl(&["status", "--json"]);
    assert!(r.ok(), "the daemon still answers while scripts hang");
    // The time limit (10 s) kills the scripts and counts the failures.
    assert!(
        wait(20, || va.stats()["updown_failures_total"] == 2),
        "{}",
        va.stats()
    );
    assert_eq!(
        va.installed_children(),
        2,
        "a failed script never kills the tunnel"
    );
}
