//! Operating vpnd online: every verb and auto mode, reload by diff, load of
//! one file, runtime retry tuning seen in `monitor`, secrets re-read, many
//! concurrent clients. vpnd against vpnd in namespaces, `none` dataplane.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chaos_tests::configs::{many, pair_config, psk_any, remove_connection};
use chaos_tests::{Lab, Vpnd};
use serde_json::Value;

const PSK: &str = "operations-secret-number-one";

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

fn installed(v: &Vpnd, conn: &str) -> bool {
    v.conn(conn)["ike_sas"].as_array().is_some_and(|i| {
        i.iter().any(|s| {
            s["child_sas"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["state"] == "installed"))
        })
    })
}

fn spi_in(v: &Vpnd, conn: &str) -> Option<String> {
    v.conn(conn)["ike_sas"][0]["child_sas"][0]["spi_in"]
        .as_str()
        .map(str::to_string)
}

fn ike_count(v: &Vpnd, conn: &str) -> usize {
    v.conn(conn)["ike_sas"].as_array().map_or(0, Vec::len)
}

#[test]
fn auto_modes_route_unroute_and_down_back_to_trap() {
    let (mut lab, a, b) = Lab::gateways("auto");
    let autos = ["start", "add", "route", "ignore"];
    let va_conf = pair_config("a", 4, "add", "", |i| format!("auto = \"{}\"", autos[i]));
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 4, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &va_conf,
        &psk_any(PSK),
        &["--impair"],
    );
    // start: up at load.
    assert!(wait(10, || installed(&va, "c0")), "{}", va.conn("c0"));
    // add: loaded, idle until `up`.
    assert_eq!(ike_count(&va, "c1"), 0);
    let r = va.ctl(&["up", "c1", "--child", "nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("connection 'c1' has no child 'nope'"),
        "{r:?}"
    );
    let up = va.ctl(&["up", "c1", "--child", "net"]);
    assert!(
        up.ok() && up.stdout.contains("CHILD SA 'net' installed"),
        "{up:?}"
    );
    // route: traps, no SA until traffic hits them.
    let c2 = va.conn("c2");
    assert_eq!(c2["routed"], true);
    assert_eq!(ike_count(&va, "c2"), 0);
    assert_eq!(va.stats()["traps"], 1);
    assert!(va.ctl(&["impair", "c2", "acquire"]).ok());
    assert!(wait(10, || installed(&va, "c2")), "{}", va.conn("c2"));
    // ignore: parsed, but unknown to up, and the error names it.
    let r = va.ctl(&["up", "c3"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no config named 'c3'"), "{r:?}");
    assert!(
        va.conn("c3").is_null(),
        "ignored connections are not loaded"
    );
    let r = va.ctl(&["route", "c3"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("'c3'"), "{r:?}");
    // down of a routed connection: SAs go, the trap stays (no clear-text window).
    assert!(va.ctl(&["down", "c2"]).ok());
    assert_eq!(ike_count(&va, "c2"), 0);
    assert_eq!(va.conn("c2")["routed"], true);
    assert_eq!(va.stats()["traps"], 1);
    // unroute, and route another.
    assert!(va.ctl(&["unroute", "c2"]).ok());
    assert_eq!(va.conn("c2")["routed"], false);
    assert_eq!(va.stats()["traps"], 0);
    assert_eq!(
        va.ctl(&["unroute", "c2"]).code,
        1,
        "unroute of an unrouted connection fails"
    );
    assert!(va.ctl(&["route", "c1"]).ok());
    assert_eq!(va.conn("c1")["routed"], true);
    drop(vb);
}

#[test]
fn add_delete_replace_with_ipsec_auto_semantics() {
    let (mut lab, a, b) = Lab::gateways("adre");
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 3, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 3, "start", ""),
        &psk_any(PSK),
        &[],
    );
    assert!(wait(10, || (0..3).all(|i| installed(&va, &format!("c{i}")))));
    let r = va.ctl(&["add", "c0"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim(), "connection 'c0' already exists");
    assert!(va.ctl(&["delete", "c1"]).ok());
    assert!(va.conn("c1").is_null());
    assert_eq!(va.stats()["child_sas"], 2, "c1's SAs are gone");
    let r = va.ctl(&["delete", "c1"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim(), "no connection named 'c1'");
    assert!(va.ctl(&["add", "c1"]).ok());
    assert!(
        wait(10, || installed(&va, "c1")),
        "added with auto = start comes up"
    );
    let before = spi_in(&va, "c0");
    let r = va.ctl(&["replace", "c0"]);
    assert!(r.ok(), "{r:?}");
    assert!(wait(10, || installed(&va, "c0") && spi_in(&va, "c0") != before));
    let r = va.ctl(&["add", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no config named 'nope'"), "{r:?}");
}

#[test]
fn reload_applies_only_the_difference_and_a_failed_reload_changes_nothing() {
    let (mut lab, a, b) = Lab::gateways("relo");
    // B accepts both proposals for every connection.
    let vb_conf = pair_config("b", 4, "add", "", |_| {
        "proposals = [\"aes256gcm16-prfsha256-x25519\", \"aes128gcm16-prfsha256-x25519\"]".into()
    });
    let _vb = Vpnd::start(&mut lab, &b, "vpnd-b", &vb_conf, &psk_any(PSK), &[]);
    let original = many("a", 3, "start", "");
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &original, &psk_any(PSK), &[]);
    assert!(wait(10, || (0..3).all(|i| installed(&va, &format!("c{i}")))));
    let spis: Vec<_> = (0..3).map(|i| spi_in(&va, &format!("c{i}"))).collect();

    // c0 unchanged, c1 changed, c2 removed, c3 new.
    let edited = pair_config("a", 4, "start", "", |i| match i {
        1 => "proposals = [\"aes128gcm16-prfsha256-x25519\"]".into(),
        _ => String::new(),
    });
    let edited = remove_connection(&edited, "c2");
    std::fs::write(&va.config, &edited).unwrap();
    let dry = va.ctl(&["reload", "--dry-run"]);
    assert!(dry.ok(), "{dry:?}");
    for line in [
        "replace c1: changed proposals",
        "add c3: new connection (auto = start)",
        "delete c2: no longer in the configuration",
        "1 connection(s) unchanged",
    ] {
        assert!(
            dry.stdout.contains(line),
            "missing '{line}' in\n{}",
            dry.stdout
        );
    }
    assert!(dry.stdout.contains("nothing changed"));
    assert_eq!(spi_in(&va, "c1"), spis[1], "dry run changed nothing");
    assert!(!va.conn("c2").is_null());

    let r = va.ctl(&["reload"]);
    assert!(r.ok(), "{r:?}");
    assert!(
        wait(10, || installed(&va, "c1") && installed(&va, "c3")),
        "{}",
        va.status()
    );
    assert_eq!(
        spi_in(&va, "c0"),
        spis[0],
        "unchanged connection keeps its SAs"
    );
    assert_ne!(
        spi_in(&va, "c1"),
        spis[1],
        "changed connection was replaced"
    );
    assert!(va.conn("c1")["ike_sas"][0]["proposal"]
        .as_str()
        .unwrap()
        .starts_with("AES_GCM_16_128"));
    assert!(va.conn("c2").is_null(), "removed connection deleted");

    // A broken file: every error reported, nothing touched.
    let spis: Vec<_> = [0, 1, 3]
        .iter()
        .map(|i| spi_in(&va, &format!("c{i}")))
        .collect();
    let broken = edited
        .replace(
            "local_id = \"a0.test\"",
            "local_id = \"a0.test\"\nauto = \"strat\"",
        )
        .replace(
            "remote_id = \"b3.test\"",
            "remote_id = \"b3.test\"\nretry_bse = \"1s\"",
        );
    std::fs::write(&va.config, &broken).unwrap();
    let r = va.ctl(&["reload"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nothing was changed"), "{r:?}");
    let path = va.config.display().to_string();
    let line_of = |needle: &str| broken.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    assert!(
        r.stderr.contains(&format!(
            "{path}:{}: connections.c0.auto: invalid value 'strat'",
            line_of("auto = \"strat\"")
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{path}:{}: connections.c3.retry_bse: unknown key",
            line_of("retry_bse")
        )),
        "{}",
        r.stderr
    );
    let after: Vec<_> = [0, 1, 3]
        .iter()
        .map(|i| spi_in(&va, &format!("c{i}")))
        .collect();
    assert_eq!(after, spis);
}

#[test]
fn load_of_one_file_leaves_the_others_alone() {
    let (mut lab, a, b) = Lab::gateways("lfil");
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 4, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 2, "start", ""),
        &psk_any(PSK),
        &[],
    );
    assert!(wait(10, || installed(&va, "c0") && installed(&va, "c1")));
    let spis: Vec<_> = (0..2).map(|i| spi_in(&va, &format!("c{i}"))).collect();
    // conf.d/c3.toml holds one connection (connection 3 of the generator).
    let full = many("a", 4, "start", "");
    let c3 = &full[full.find("\n[connections.c3]").unwrap()..];
    let file = va.dir.join("c3.toml");
    std::fs::write(&file, format!("[defaults]\nlocal_addrs = [\"198.18.0.1\"]\nremote_addrs = [\"198.18.0.2\"]\nauto = \"start\"\n{c3}")).unwrap();
    let r = va.ctl(&["load", "--file", file.to_str().unwrap()]);
    assert!(r.ok(), "{r:?}");
    assert!(r.stdout.contains("connection 'c3' added"), "{r:?}");
    assert!(wait(10, || installed(&va, "c3")));
    let after: Vec<_> = (0..2).map(|i| spi_in(&va, &format!("c{i}"))).collect();
    assert_eq!(after, spis);
    // A file with an error changes nothing and says where.
    std::fs::write(&file, "[connections.c9]\nlocal_id = 7\n").unwrap();
    let r = va.ctl(&["load", "--file", file.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("{}:2: connections.c9.local_id", file.display())),
        "{r:?}"
    );
    assert!(va.conn("c9").is_null());
}

/// Spawn `vpnctl monitor --json` and collect its events in a thread.
fn monitor(v: &Vpnd) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut child = Command::new(chaos_tests::vpnd::bin_dir().join("vpnctl"))
        .arg("--socket")
        .arg(&v.socket)
        .args(["monitor", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// The delay of the next retry announced in a monitor event, in seconds.
fn retry_delay(ev: &Value) -> Option<f64> {
    let m = ev["message"].as_str()?;
    let after = m.split(" in ").nth(1)?;
    after.trim_end_matches('s').parse().ok()
}

#[test]
fn set_changes_the_retry_schedule_of_a_failing_connection() {
    let (mut lab, a, _b) = Lab::gateways("setr");
    // Nothing answers at 198.18.0.2: every attempt fails after 0.5 s + 1 s.
    let conf = many(
        "a",
        1,
        "add",
        "keyingtries = 0\nretry_base = \"1s\"\nretry_max = \"1s\"\nretransmit_timeout = \"500ms\"\nretransmit_tries = 1",
    );
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &conf, &psk_any(PSK), &[]);
    let (mut mon, rx) = monitor(&va);
    std::thread::sleep(Duration::from_millis(300));
    assert!(va.ctl(&["up", "c0", "--async"]).ok());
    let next_retry = |rx: &std::sync::mpsc::Receiver<Value>| -> f64 {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(ev) = rx.recv_timeout(Duration::from_millis(200)) {
                if ev["kind"] == "retry" && ev["conn"] == "c0" {
                    if let Some(d) = retry_delay(&ev) {
                        return d;
                    }
                }
            }
        }
        panic!("no retry event");
    };
    let d1 = next_retry(&rx);
    assert!((0.85..=1.15).contains(&d1), "first schedule ~1s, got {d1}");
    let r = va.ctl(&[
        "set",
        "c0",
        "retry_base=4s",
        "retry_max=4s",
        "retransmit_tries=2",
    ]);
    assert!(r.ok(), "{r:?}");
    let c = va.conn("c0");
    assert_eq!(
        (
            c["retry_base_ms"].as_u64(),
            c["retry_max_ms"].as_u64(),
            c["retransmit_tries"].as_u64()
        ),
        (Some(4000), Some(4000), Some(2))
    );
    // The attempt already scheduled keeps its delay; the next ones use 4 s.
    let mut d = next_retry(&rx);
    if d < 2.0 {
        d = next_retry(&rx);
    }
    assert!((3.5..=4.5).contains(&d), "after set, schedule ~4s, got {d}");
    // Bad settings are refused and change nothing.
    let r = va.ctl(&["set", "c0", "retry_base=10m"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("retry_base (10m) is greater than retry_max (4s)"),
        "{r:?}"
    );
    let r = va.ctl(&["set", "c0", "bogus=1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown setting 'bogus'"), "{r:?}");
    assert_eq!(va.conn("c0")["retry_base_ms"], 4000);
    assert!(va.ctl(&["kill", "c0"]).ok());
    let end = Instant::now() + Duration::from_secs(5);
    let mut saw_kill = false;
    while Instant::now() < end && !saw_kill {
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(200)) {
            saw_kill = ev["kind"] == "kill" && ev["conn"] == "c0";
        }
    }
    assert!(saw_kill, "monitor shows the kill");
    let _ = mon.kill();
    let _ = mon.wait();
}

#[test]
fn rereadsecrets_is_used_by_the_next_authentication_only() {
    let (mut lab, a, b) = Lab::gateways("rers");
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 1, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 1, "start", ""),
        &psk_any(PSK),
        &[],
    );
    assert!(wait(10, || installed(&va, "c0")));
    let spi = spi_in(&va, "c0");
    for v in [&va, &vb] {
        std::fs::write(v.dir.join("secrets.toml"), psk_any("the-second-secret")).unwrap();
        let r = v.ctl(&["rereadsecrets"]);
        assert!(r.ok() && r.stdout.contains("1 secret(s) loaded"), "{r:?}");
    }
    assert_eq!(spi_in(&va, "c0"), spi, "running SAs untouched");
    assert!(va.ctl(&["down", "c0"]).ok());
    assert!(va.ctl(&["up", "c0"]).ok(), "both sides use the new secret");
    // Only one side changes: the next authentication fails.
    std::fs::write(va.dir.join("secrets.toml"), psk_any("a-third-secret")).unwrap();
    assert!(va.ctl(&["rereadsecrets"]).ok());
    assert!(va.ctl(&["down", "c0"]).ok());
    let r = va.ctl(&["up", "c0"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("AUTHENTICATION_FAILED"), "{r:?}");
}

#[test]
fn fifty_concurrent_clients_get_their_own_answers() {
    let (mut lab, a, b) = Lab::gateways("fift");
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 10, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 10, "start", ""),
        &psk_any(PSK),
        &[],
    );
    assert!(wait(20, || va.installed_children() == 10));
    let va = std::sync::Arc::new(va);
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let va = va.clone();
            std::thread::spawn(move || {
                let name = format!("c{}", i % 10);
                let r = va.ctl(&["status", &name, "--json"]);
                assert!(r.ok(), "{r:?}");
                let v: Value = serde_json::from_str(&r.stdout).unwrap();
                assert_eq!(v["connections"].as_array().unwrap().len(), 1);
                assert_eq!(v["connections"][0]["name"], name.as_str());
                assert_eq!(
                    v["connections"][0]["ike_sas"][0]["remote_id"],
                    format!("b{}.test", i % 10)
                );
                let s = va.ctl(&["stats", "--json"]);
                let s: Value = serde_json::from_str(&s.stdout).unwrap();
                assert_eq!(s["child_sas"], 10);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

#[test]
fn up_all_reports_progress_and_the_result() {
    let (mut lab, a, b) = Lab::gateways("upal");
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 4, "add", ""),
        &psk_any(PSK),
        &[],
    );
    let conf = pair_config(
        "a",
        5,
        "add",
        "keyingtries = 1\nretransmit_tries = 1\nretransmit_timeout = \"300ms\"",
        |i| {
            if i == 4 {
                // No such peer connection on B: this one fails.
                "remote_id = \"nobody.test\"".into()
            } else {
                String::new()
            }
        },
    );
    let conf = conf.replace("remote_id = \"b4.test\"\n", "");
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &conf, &psk_any(PSK), &[]);
    let r = va.ctl(&["up", "--all"]);
    assert_eq!(r.code, 1, "{r:?}");
    for k in 1..=5 {
        assert!(r.stdout.contains(&format!("[{k}/5] ")), "{}", r.stdout);
    }
    assert!(r.stdout.contains("c4: FAILED"), "{}", r.stdout);
    assert!(r.stdout.contains("4 of 5 up, 1 failed"), "{}", r.stdout);
    assert_eq!(va.installed_children(), 4);
}
