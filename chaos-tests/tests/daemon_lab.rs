//! vpnd against vpnd in network namespaces: many connections between two
//! gateways, kill of a half-open connection, panic containment, bad config,
//! and the 100-tunnel bring-up measurement.

use std::time::{Duration, Instant};

use chaos_tests::{Lab, Vpnd};

const PSK: &str = "lab-secret-with-some-length";

fn many(side: &str, n: usize, auto: &str, extra: &str) -> String {
    chaos_tests::configs::many(side, n, auto, extra)
}

fn secrets() -> String {
    chaos_tests::configs::psk_any(PSK)
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

#[test]
fn twenty_connections_between_two_vpnd() {
    let (mut lab, a, b) = Lab::gateways("twen");
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 20, "add", ""),
        &secrets(),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 20, "start", ""),
        &secrets(),
        &[],
    );
    assert!(
        wait(60, || va.installed_children() == 20
            && vb.installed_children() == 20),
        "a={} b={}\n{}",
        va.installed_children(),
        vb.installed_children(),
        lab.log("vpnd-b")
    );
    // Every responder SA ended up under the connection its peer
    // authenticated as, with the narrowed selectors of that connection.
    let sb = vb.status();
    for c in sb["connections"].as_array().unwrap() {
        let i: usize = c["name"].as_str().unwrap()[1..].parse().unwrap();
        let ikes = c["ike_sas"].as_array().unwrap();
        assert_eq!(ikes.len(), 1, "{c}");
        assert_eq!(ikes[0]["remote_id"], format!("a{i}.test"));
        assert_eq!(
            ikes[0]["child_sas"][0]["local_ts"][0],
            format!("198.19.{i}.128/25")
        );
    }
    let stats = va.stats();
    assert_eq!(stats["ike_sas"], 20);
    assert_eq!(stats["child_sas"], 20);
    assert_eq!(stats["half_open"], 0);
    assert!(
        stats["scheduler"]["key_computations_total"]
            .as_u64()
            .unwrap()
            >= 20
    );
}

#[test]
fn kill_of_a_half_open_connection_is_prompt_and_complete() {
    let (mut lab, a, _b) = Lab::gateways("kill");
    // Nothing listens on 198.18.0.2: the peer never answers.
    let config = many("a", 2, "add", "keyingtries = 0\nretransmit_tries = 10");
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &config, &secrets(), &[]);
    assert!(va.ctl(&["up", "c0", "--async"]).ok());
    assert!(
        wait(10, || va.conn("c0")["ike_sas"][0]["state"] == "connecting"),
        "{}",
        va.conn("c0")
    );
    std::thread::sleep(Duration::from_millis(1500)); // retransmitting now
    let t = Instant::now();
    let kill = va.ctl(&["kill", "c0"]);
    let took = t.elapsed();
    assert!(kill.ok(), "{kill:?}");
    assert!(took < Duration::from_secs(2), "kill took {took:?}");
    let c = va.conn("c0");
    assert!(c["ike_sas"].as_array().unwrap().is_empty(), "{c}");
    assert!(c["next_retry_secs"].is_null(), "retries cancelled: {c}");
    let stats = va.stats();
    assert_eq!(
        (
            stats["ike_sas"].as_u64(),
            stats["half_open"].as_u64(),
            stats["child_sas"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    // Nothing starts again on its own.
    let log_len = lab.log("vpnd-a").len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(va.conn("c0")["ike_sas"].as_array().unwrap().is_empty());
    assert!(
        !lab.log("vpnd-a")[log_len..].contains("initiating"),
        "{}",
        &lab.log("vpnd-a")[log_len..]
    );
    // Unknown names are an error with exit status 1.
    let k = va.ctl(&["kill", "nope"]);
    assert_eq!(k.code, 1);
    assert_eq!(k.stderr.trim(), "no connection named 'nope'");
}

#[test]
fn a_panicking_ike_sa_actor_is_contained_and_restarted() {
    let (mut lab, a, b) = Lab::gateways("panc");
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 3, "add", ""),
        &secrets(),
        &[],
    );
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 3, "start", ""),
        &secrets(),
        &["--impair"],
    );
    assert!(wait(20, || va.installed_children() == 3
        && vb.installed_children() == 3));
    let before: Vec<serde_json::Value> = (0..3)
        .map(|i| va.conn(&format!("c{i}"))["ike_sas"][0].clone())
        .collect();
    let r = va.ctl(&["impair", "c0", "panic"]);
    assert!(r.ok(), "{r:?}");
    // c0 comes back with a new IKE SA; c1 and c2 never noticed.
    assert!(
        wait(20, || {
            let c = va.conn("c0");
            c["ike_sas"][0]["id"] != before[0]["id"]
                && c["ike_sas"][0]["child_sas"][0]["state"] == "installed"
        }),
        "{}\n{}",
        va.conn("c0"),
        lab.log("vpnd-a")
    );
    for (i, b) in before.iter().enumerate().skip(1) {
        let now = &va.conn(&format!("c{i}"))["ike_sas"][0];
        assert_eq!(now["id"], b["id"], "c{i} untouched");
        assert_eq!(now["spi_i"], b["spi_i"]);
        assert_eq!(now["child_sas"][0]["spi_in"], b["child_sas"][0]["spi_in"]);
    }
    assert!(va.stats()["restarts_total"].as_u64().unwrap() >= 1);
    assert!(
        lab.log("vpnd-a").contains("IKE SA actor failed"),
        "{}",
        lab.log("vpnd-a")
    );
    // The peer dropped the stale SA on INITIAL_CONTACT.
    assert!(
        wait(10, || vb.conn("c0")["ike_sas"].as_array().unwrap().len()
            == 1),
        "{}",
        vb.conn("c0")
    );
    assert_eq!(va.installed_children(), 3);
    assert!(wait(5, || vb.installed_children() == 3), "{}", vb.status());
    // Impairments are refused without --impair.
    let r = vb.ctl(&["impair", "c0", "panic"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("start vpnd with --impair"), "{r:?}");
}

#[test]
fn bad_config_is_refused_naming_file_line_and_key() {
    let (mut lab, a, _b) = Lab::gateways("badc");
    let mut config = many("a", 1, "add", "");
    config = config.replace(
        "remote_id = \"b0.test\"",
        "remote_id = \"b0.test\"\nremote_addr = \"198.18.0.2\"",
    );
    let v = Vpnd::prepare(&lab, "vpnd-a", &config, &secrets());
    // The line as written (prepare adds the lab's state_dir).
    let line = std::fs::read_to_string(&v.config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("remote_addr ="))
        .unwrap()
        + 1;
    v.launch(&mut lab, &a, &[]);
    let status = lab.wait_exit("vpnd-a", Duration::from_secs(10));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(1)),
        "{}",
        lab.log("vpnd-a")
    );
    let log = lab.log("vpnd-a");
    let expected = format!(
        "{}:{line}: connections.c0.remote_addr: unknown key 'remote_addr' (did you mean 'remote_addrs'?)",
        v.config.display()
    );
    assert!(log.contains(&expected), "expected {expected}\ngot {log}");
    assert!(
        !v.socket.exists(),
        "no control socket for a daemon that did not start"
    );
}

#[test]
fn control_socket_is_private_and_unreachable_daemon_is_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    let (mut lab, a, _b) = Lab::gateways("sock");
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 1, "add", ""),
        &secrets(),
        &[],
    );
    let mode = std::fs::metadata(&v.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    lab.stop("vpnd-a");
    let r = v.ctl(&["status"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("not reachable"), "{r:?}");
}

/// Measurement for the daemon issue: time from starting the initiating
/// vpnd to 100 CHILD SAs installed on both sides, and both daemons' RSS.
#[test]
fn hundred_tunnels_bring_up_time_and_memory() {
    let (mut lab, a, b) = Lab::gateways("hund");
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 100, "add", ""),
        &secrets(),
        &[],
    );
    let t = Instant::now();
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &many("a", 100, "start", ""),
        &secrets(),
        &[],
    );
    assert!(
        wait(120, || va.installed_children() == 100
            && vb.installed_children() == 100),
        "a={} b={}",
        va.installed_children(),
        vb.installed_children()
    );
    let took = t.elapsed();
    let (ra, rb) = (
        va.stats()["rss_bytes"].as_u64().unwrap(),
        vb.stats()["rss_bytes"].as_u64().unwrap(),
    );
    println!(
        "MEASURE 100 tunnels vpnd<->vpnd: all installed {:.2}s after start (includes vpnd start-up); RSS initiator {:.1} MiB, responder {:.1} MiB",
        took.as_secs_f64(),
        ra as f64 / 1048576.0,
        rb as f64 / 1048576.0
    );
    assert_eq!(va.stats()["half_open"], 0);
}

#[test]
fn prometheus_endpoint_serves_the_daemons_metrics() {
    let (mut lab, a, b) = Lab::gateways("prom");
    let _vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &many("b", 2, "add", ""),
        &secrets(),
        &[],
    );
    let config = many("a", 2, "start", "").replace(
        "dataplane = \"none\"",
        "dataplane = \"none\"\nmetrics = \"127.0.0.1:9469\"",
    );
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &config, &secrets(), &[]);
    assert!(wait(10, || va.installed_children() == 2));
    let scrape = || {
        let out = lab.try_exec(
            &a,
            &[
                "bash",
                "-c",
                "exec 3<>/dev/tcp/127.0.0.1/9469 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait(5, || scrape().contains("vpnd_ike_established_total 2")),
        "{}",
        scrape()
    );
    let m = scrape();
    for name in [
        "vpnd_key_computations_total",
        "vpnd_ike_establish_seconds",
        "vpnd_actors_alive",
    ] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
}
