//! Crash recovery, vpnd against vpnd: 20 connections between A (`auto =
//! "add"`, the responder) and B (`auto = "start"`). Either daemon is
//! SIGKILLed and started again with the same config and socket; all 20
//! CHILD SAs must be back within 10 s and neither side may keep a stale SA.
//! The restarted responder comes back by revival (it initiates what was up,
//! with INITIAL_CONTACT); the restarted initiator by `auto = "start"`.
//! Each test prints its recovery time as a `MEASURE` line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaos_tests::{Lab, Ns, Vpnd};
use serde_json::Value;

const PSK: &str = "lab-secret-with-some-length";
const N: usize = 20;
const LIMIT: Duration = Duration::from_secs(10);

fn secrets() -> String {
    chaos_tests::configs::psk_any(PSK)
}

/// Per connection: the (spi_i, spi_r, installed children's spi_in) of
/// each IKE SA.
type Sas = BTreeMap<String, Vec<(String, String, Vec<String>)>>;

fn sas(v: &Vpnd) -> Sas {
    let s = v.status();
    let mut out = BTreeMap::new();
    for c in s["connections"].as_array().unwrap() {
        let ikes = c["ike_sas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["spi_i"].as_str().unwrap_or_default().to_string(),
                    i["spi_r"].as_str().unwrap_or_default().to_string(),
                    i["child_sas"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|ch| ch["state"] == "installed")
                        .map(|ch| ch["spi_in"].as_str().unwrap_or_default().to_string())
                        .collect(),
                )
            })
            .collect();
        out.insert(c["name"].as_str().unwrap().to_string(), ikes);
    }
    out
}

/// Every connection has exactly one IKE SA with one installed CHILD SA.
fn one_each(v: &Vpnd) -> bool {
    let s = sas(v);
    s.len() == N
        && s.values()
            .all(|ikes| ikes.len() == 1 && ikes[0].2.len() == 1)
}

/// Both daemons up with 20 tunnels.
fn pair(tag: &str) -> (Lab, Ns, Ns, Vpnd, Vpnd) {
    let (mut lab, a, b) = Lab::gateways(tag);
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &chaos_tests::configs::many("a", N, "add", ""),
        &secrets(),
        &[],
    );
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &chaos_tests::configs::many("b", N, "start", ""),
        &secrets(),
        &[],
    );
    assert!(
        Lab::wait_until(Duration::from_secs(30), || one_each(&va) && one_each(&vb)),
        "a={} b={}\n{}",
        va.installed_children(),
        vb.installed_children(),
        lab.log("vpnd-b")
    );
    (lab, a, b, va, vb)
}

/// The revival state of a lab daemon.
fn state_file(v: &Vpnd) -> Vec<String> {
    let text = std::fs::read_to_string(v.dir.join("state/revival.json")).unwrap_or_default();
    let j: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    j["up"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// After a restart: both sides hold the same single IKE SA and CHILD SA per
/// connection, none of them one from before the crash.
fn assert_clean(va: &Vpnd, vb: &Vpnd, before: &Sas) {
    let (sa, sb) = (sas(va), sas(vb));
    for (name, ikes_b) in &sb {
        assert_eq!(ikes_b.len(), 1, "b {name}: {ikes_b:?}");
        let ikes_a = &sa[name];
        assert_eq!(ikes_a.len(), 1, "a {name}: {ikes_a:?}");
        let (ib, ia) = (&ikes_b[0], &ikes_a[0]);
        // The same IKE SA on both ends.
        assert_eq!((&ib.0, &ib.1), (&ia.0, &ia.1), "{name}");
        assert_eq!(ib.2.len(), 1, "b {name}: {ib:?}");
        assert_eq!(ia.2.len(), 1, "a {name}: {ia:?}");
        let old = &before[name][0];
        assert_ne!(
            ib.0, old.0,
            "{name}: b kept the IKE SA from before the crash"
        );
        assert!(!ib.2.contains(&old.2[0]), "{name}: b kept a stale CHILD SA");
    }
    for (v, side) in [(va, "a"), (vb, "b")] {
        let st = v.stats();
        assert_eq!(st["ike_sas"], N, "{side}: {st}");
        assert_eq!(st["child_sas"], N, "{side}: {st}");
        assert_eq!(st["half_open"], 0, "{side}: {st}");
    }
}

/// SIGKILL `name` and start it again with the same config and socket;
/// the seconds until both sides have 20 fresh tunnels.
fn crash_and_measure(lab: &mut Lab, ns: &Ns, victim: &Vpnd, other: &Vpnd, before: &Sas) -> f64 {
    lab.kill(&victim.name);
    let t = Instant::now();
    victim.launch(lab, ns, &[]);
    let fresh = |v: &Vpnd| {
        let s = sas(v);
        s.len() == N
            && s.iter().all(|(name, ikes)| {
                ikes.len() == 1 && ikes[0].2.len() == 1 && ikes[0].0 != before[name][0].0
            })
    };
    let back = Lab::wait_until(LIMIT + Duration::from_secs(20), || {
        victim.ctl(&["stats", "--json"]).ok() && fresh(victim) && fresh(other)
    });
    let took = t.elapsed().as_secs_f64();
    assert!(
        back,
        "not back after {took:.1}s: victim {} other {}\n{}",
        victim.installed_children(),
        other.installed_children(),
        lab.log(&victim.name)
    );
    took
}

#[test]
fn responder_sigkill_and_restart_revives_all_twenty_without_stale_sas() {
    let (mut lab, a, _b, va, vb) = pair("rvra");
    // The responder recorded all 20 as up (written within the debounce).
    assert!(
        Lab::wait_until(Duration::from_secs(3), || state_file(&va).len() == N),
        "{:?}",
        state_file(&va)
    );
    let before = sas(&vb);
    let took = crash_and_measure(&mut lab, &a, &va, &vb, &before);
    println!(
        "MEASURE recovery after SIGKILL of the responder (auto=add, revival), {N} tunnels vpnd<->vpnd: all back in {took:.2}s (from restart)"
    );
    // Stable: nothing else comes or goes afterwards.
    std::thread::sleep(Duration::from_secs(2));
    assert_clean(&va, &vb, &before);
    assert!(
        lab.log("vpnd-a")
            .contains("that were up before the restart"),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(took <= LIMIT.as_secs_f64(), "recovery took {took:.2}s");
}

#[test]
fn initiator_sigkill_and_restart_brings_all_twenty_back_without_stale_sas() {
    let (mut lab, _a, b, va, vb) = pair("rvin");
    let before = sas(&va);
    let took = crash_and_measure(&mut lab, &b, &vb, &va, &before);
    println!(
        "MEASURE recovery after SIGKILL of the initiator (auto=start), {N} tunnels vpnd<->vpnd: all back in {took:.2}s (from restart)"
    );
    std::thread::sleep(Duration::from_secs(2));
    // `before` is A's view; for B's the same SPIs hold.
    assert_clean(&va, &vb, &before);
    assert!(took <= LIMIT.as_secs_f64(), "recovery took {took:.2}s");
}

#[test]
fn operator_down_is_not_revived_and_an_unconfigured_name_is_skipped() {
    let (mut lab, a, b) = Lab::gateways("rvop");
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &chaos_tests::configs::many("a", 3, "add", ""),
        &secrets(),
        &[],
    );
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &chaos_tests::configs::many("b", 3, "start", ""),
        &secrets(),
        &[],
    );
    assert!(Lab::wait_until(Duration::from_secs(20), || {
        va.installed_children() == 3 && vb.installed_children() == 3
    }));
    let down = va.ctl(&["down", "c1"]);
    assert!(down.ok(), "{down:?}");
    let want = vec!["c0".to_string(), "c2".to_string()];
    assert!(
        Lab::wait_until(Duration::from_secs(3), || state_file(&va) == want),
        "{:?}",
        state_file(&va)
    );
    // c2 leaves A's configuration while A is down.
    lab.kill("vpnd-a");
    let config = std::fs::read_to_string(&va.config).unwrap();
    std::fs::write(
        &va.config,
        chaos_tests::configs::remove_connection(&config, "c2"),
    )
    .unwrap();
    va.launch(&mut lab, &a, &[]);
    assert!(
        Lab::wait_until(Duration::from_secs(10), || va
            .ctl(&["stats", "--json"])
            .ok()
            && va.installed_child("c0").is_some()),
        "{}",
        lab.log("vpnd-a")
    );
    std::thread::sleep(Duration::from_secs(2));
    // c1 stays down on both sides; c2 is not loaded.
    assert!(va.conn("c1")["ike_sas"].as_array().unwrap().is_empty());
    assert!(vb.conn("c1")["ike_sas"].as_array().unwrap().is_empty());
    assert!(va.conn("c2").is_null());
    let log = lab.log("vpnd-a");
    assert!(
        log.contains("connection 'c2' was up but is no longer configured; skipped"),
        "{log}"
    );
    assert!(
        Lab::wait_until(Duration::from_secs(3), || state_file(&va) == ["c0"]),
        "{:?}",
        state_file(&va)
    );
    // `kill` takes it out too.
    assert!(va.ctl(&["kill", "c0"]).ok());
    assert!(
        Lab::wait_until(Duration::from_secs(3), || state_file(&va).is_empty()),
        "{:?}",
        state_file(&va)
    );
}

/// `swanctl --list-sas` lines that say ESTABLISHED (IKE SAs) and INSTALLED
/// (CHILD SAs).
fn charon_counts(c: &chaos_tests::Charon) -> (usize, usize) {
    let sas = c.list_sas();
    (
        sas.lines().filter(|l| l.contains("ESTABLISHED")).count(),
        sas.lines().filter(|l| l.contains("INSTALLED")).count(),
    )
}

/// vpnd (A, `auto = "add"`) against charon (B, `start_action = start`),
/// 20 connections; vpnd is SIGKILLed and revives them. charon, which
/// survived, must drop its stale SAs on the INITIAL_CONTACT.
#[test]
fn responder_sigkill_against_charon_revives_and_charon_drops_stale_sas() {
    let (mut lab, a, b) = Lab::gateways("rvch");
    // kernel-libipsec routes each CHILD SA from an address in its local
    // selector: charon's side needs one per tunnel.
    let lan: Vec<String> = (0..N).map(|i| format!("198.19.{i}.129/25")).collect();
    lab.lan(&b, &lan.iter().map(String::as_str).collect::<Vec<_>>());
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &chaos_tests::configs::many("a", N, "add", "encap = true"),
        &secrets(),
        &[],
    );
    let conns: Vec<chaos_tests::CharonConn> = (0..N)
        .map(|i| {
            let mut c = chaos_tests::CharonConn::psk(
                &format!("c{i}"),
                "198.18.0.2",
                "198.18.0.1",
                &format!("b{i}.test"),
                &format!("a{i}.test"),
                PSK,
            );
            c.local_ts = format!("198.19.{i}.128/25");
            c.remote_ts = format!("198.19.{i}.0/25");
            c.start_action = "start".into();
            c
        })
        .collect();
    let charon = chaos_tests::Charon::start(&mut lab, &b, "charon-b", &conns);
    assert!(
        Lab::wait_until(Duration::from_secs(30), || one_each(&va)
            && charon_counts(&charon) == (N, N)),
        "vpnd {} charon {:?}\n{}",
        va.installed_children(),
        charon_counts(&charon),
        charon.list_sas()
    );
    assert!(
        Lab::wait_until(Duration::from_secs(3), || state_file(&va).len() == N),
        "{:?}",
        state_file(&va)
    );
    let before = sas(&va);
    lab.kill("vpnd-a");
    let t = Instant::now();
    va.launch(&mut lab, &a, &[]);
    let fresh = |v: &Vpnd| {
        let s = sas(v);
        s.len() == N
            && s.iter().all(|(name, ikes)| {
                ikes.len() == 1 && ikes[0].2.len() == 1 && ikes[0].0 != before[name][0].0
            })
    };
    let back = Lab::wait_until(LIMIT + Duration::from_secs(20), || {
        va.ctl(&["stats", "--json"]).ok() && fresh(&va) && charon_counts(&charon) == (N, N)
    });
    let took = t.elapsed().as_secs_f64();
    assert!(
        back,
        "not back after {took:.1}s: vpnd {} charon {:?}\n{}\n{}",
        va.installed_children(),
        charon_counts(&charon),
        charon.list_sas(),
        lab.log("vpnd-a")
    );
    println!(
        "MEASURE recovery after SIGKILL of vpnd (responder, auto=add, revival) against charon, {N} tunnels: all back in {took:.2}s (from restart)"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(charon_counts(&charon), (N, N), "{}", charon.list_sas());
    let log = lab.log("charon-b");
    let dropped = log
        .lines()
        .filter(|l| l.contains("received INITIAL_CONTACT"))
        .count();
    assert_eq!(dropped, N, "charon dropped stale SAs:\n{log}");
    // charon's SPIs are vpnd's: every vpnd SA is one charon has.
    let list = charon.list_sas();
    for (name, ikes) in sas(&va) {
        assert!(list.contains(&ikes[0].0), "{name}: {ikes:?} not in\n{list}");
    }
    assert!(took <= LIMIT.as_secs_f64(), "recovery took {took:.2}s");
}
