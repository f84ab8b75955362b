//! Many tunnels between two gateways: the cost per tunnel as the count
//! grows, and whether the control plane still answers.
//!
//! Two namespaces, a (198.18.0.1, initiator) and b (198.18.0.2,
//! responder), N connections between them, each one IKE SA and one CHILD
//! SA with /32 selectors (`none` dataplane for vpnd, kernel-libipsec with
//! routes off for charon). For each run:
//!
//! * **all installed**: from starting the initiator until both ends hold
//!   N installed CHILD SAs;
//! * **CPU** of each daemon over that time (utime + stime);
//! * **RSS per tunnel** of each daemon: its RSS with the tunnels up less
//!   its RSS with the same configuration loaded and no tunnel, over N;
//! * **status**: `vpnctl status CONN` (median of 10) and `vpnctl status
//!   --json` (median of 3) on the initiator; for charon `swanctl
//!   --list-sas --ike CONN` and `swanctl --list-sas`;
//! * **kill** p50 and p99 of 100 `vpnctl kill` (charon: 20 `swanctl
//!   --terminate --force`), each timed with its process start;
//! * **churn** (vpnd, 1,000 tunnels): 10 rounds of `up` all and `kill`
//!   all; the RSS drift of the last round against the first, and whether
//!   `vpnctl stats` shows the same actor count after each round.
//!
//! `cargo bench -p chaos-tests --bench scale [-- [vpnd] [charon] [N...]
//! [--cap RATE] [--no-churn]]` (root). By default vpnd at 1,000, 5,000 and
//! 10,000 and charon at 1,000 and 5,000 (charon is given at most
//! `CHARON_SECS` to come up; a row says when it was cut short). `--cap`
//! sets vpnd's `key_computations_per_sec` (default 100000, so the cap is
//! not what is measured; `--cap default` keeps vpnd's own default).
//! Prints one markdown table. Without `--bench` (which cargo bench passes)
//! it does nothing, so `cargo test --all-targets` skips it.
//!
//! `-- storm N [--cap RATE]` (default 10,000 tunnels, cap 5000) is the
//! control plane under load instead: N tunnels come up under the cap,
//! then
//!
//! * **flood**: `ike-flood` sends IKE_SA_INITs from 1,024 spoofed unknown
//!   sources at the responder (5,000/s for 10 s) while `status CONN`,
//!   `status --json` and 20 `kill`s are timed on the responder;
//! * **rekey storm**: every tunnel's IKE SA and CHILD SA have the same
//!   60 s rekey time and no jitter, so all of them rekey at once; the key
//!   computations per second (sampled each second from `vpnctl stats`)
//!   are held to the cap, the control plane is timed again on the
//!   initiator, and afterwards no tunnel may be missing and no exchange
//!   may have timed out ("did not answer" in either log).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chaos_tests::configs::psk_any;
use chaos_tests::many::{self, host};
use chaos_tests::procstat::{cpu, rss};
use chaos_tests::{Charon, CharonConn, CharonOptions, Lab, Ns, Vpnd};

const PSK: &str = "scale-bench-psk-0123456789abcdef";
const CHARON_SECS: u64 = 600;
const KILLS: usize = 100;
const CHURN_TUNNELS: usize = 1000;
const CHURN_ROUNDS: usize = 10;
const STORM_CAP: u64 = 5000;
const STORM_REKEY_SECS: u64 = 60;
const FLOOD: &str = env!("CARGO_BIN_EXE_ike-flood");

#[derive(Default)]
struct Row {
    who: &'static str,
    n: usize,
    /// `None`: not all came up in time (the count that did is in `note`).
    up: Option<Duration>,
    cpu: (Duration, Duration),
    rss_per_tunnel: (u64, u64),
    status_one: Duration,
    status_all: Duration,
    kill: (Duration, Duration),
    churn: Option<String>,
    note: String,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: a benchmark; run it with cargo bench (skipped)");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut cap, mut counts) = (Some(100_000), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--cap" {
            cap = it.next().and_then(|v| v.parse::<u64>().ok());
        } else if let Ok(n) = a.parse::<usize>() {
            counts.push(n);
        }
    }
    let (mut vpnd, mut charon) = (
        args.iter().any(|a| a == "vpnd"),
        args.iter().any(|a| a == "charon"),
    );
    if !vpnd && !charon {
        (vpnd, charon) = (true, true);
    }
    let churn = !args.iter().any(|a| a == "--no-churn");
    if args.iter().any(|a| a == "storm") {
        let n = counts.first().copied().unwrap_or(10_000);
        let cap = if args.iter().any(|a| a == "--cap") {
            cap
        } else {
            Some(STORM_CAP)
        };
        println!("\n{}", storm_run(n, cap));
        return;
    }
    let mut rows = Vec::new();
    if vpnd {
        let ns = if counts.is_empty() {
            vec![1000, 5000, 10000]
        } else {
            counts.clone()
        };
        for n in ns {
            let row = vpnd_run(n, cap, churn && n == CHURN_TUNNELS);
            print_row(&row);
            rows.push(row);
        }
    }
    if charon {
        let ns = if counts.is_empty() {
            vec![1000, 5000]
        } else {
            counts.clone()
        };
        for n in ns {
            let row = charon_run(n);
            print_row(&row);
            rows.push(row);
        }
    }
    println!("\n{}", table(&rows, cap));
}

fn vpnd_config(n: usize, side: usize, auto: &str, cap: Option<u64>) -> String {
    many::vpnd_config(n, side, auto, "dataplane = \"none\"\n", cap)
}

fn child_sas(v: &Vpnd) -> u64 {
    let s = v.ctl(&["stats", "--json"]);
    serde_json::from_str::<serde_json::Value>(&s.stdout)
        .ok()
        .and_then(|j| j["child_sas"].as_u64())
        .unwrap_or(0)
}

fn actors(v: &Vpnd) -> u64 {
    v.stats()["actors"].as_u64().unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied().unwrap_or_default()
}

fn timed(f: impl FnOnce() -> bool) -> Duration {
    let mut ok = false;
    let d = timed_any(|| {
        ok = f();
        ok
    });
    assert!(ok, "a timed control request failed");
    d
}

/// As `timed`, for a run that was cut short: a request about a tunnel
/// that never came up may fail, and is timed all the same.
fn timed_any(f: impl FnOnce() -> bool) -> Duration {
    let t = Instant::now();
    let _ = f();
    t.elapsed()
}

/// A daemon's RSS with `config` loaded and no tunnel: started, sampled
/// once it answers and has settled, stopped.
fn loaded_rss(lab: &mut Lab, ns: &Ns, name: &str, config: &str) -> u64 {
    let v = Vpnd::start(lab, ns, name, config, &psk_any(PSK), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let r = lab.pid(name).map_or(0, rss);
    let _ = v;
    lab.stop(name);
    r
}

fn vpnd_run(n: usize, cap: Option<u64>, churn: bool) -> Row {
    eprintln!("scale: vpnd ↔ vpnd, {n} tunnels");
    let (mut lab, a, b) = Lab::gateways("scv");
    let cfg_a = vpnd_config(n, 0, "start", cap);
    let cfg_b = vpnd_config(n, 1, "add", cap);
    let base_a = loaded_rss(&mut lab, &a, "vpnd-a0", &vpnd_config(n, 0, "add", cap));
    let vb = Vpnd::start(&mut lab, &b, "vpnd-b", &cfg_b, &psk_any(PSK), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let base_b = lab.pid("vpnd-b").map_or(0, rss);
    let (cpu_b0, t) = (
        lab.pid("vpnd-b").map_or(Duration::ZERO, cpu),
        Instant::now(),
    );
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &cfg_a, &psk_any(PSK), &[]);
    let all = Lab::wait_until(Duration::from_secs(900), || {
        child_sas(&va) >= n as u64 && child_sas(&vb) >= n as u64
    });
    let up = t.elapsed();
    let (pa, pb) = (lab.pid("vpnd-a").unwrap(), lab.pid("vpnd-b").unwrap());
    let mut row = Row {
        who: "vpnd ↔ vpnd",
        n,
        up: all.then_some(up),
        cpu: (cpu(pa), cpu(pb) - cpu_b0),
        ..Row::default()
    };
    if !all {
        row.note = format!("{} of {n} up after {up:.0?}", child_sas(&va));
        return row;
    }
    std::thread::sleep(Duration::from_secs(2));
    let per = |now: u64, base: u64| now.saturating_sub(base) / n as u64;
    row.rss_per_tunnel = (per(rss(pa), base_a), per(rss(pb), base_b));
    let mid = format!("c{}", n / 2);
    row.status_one = median(
        (0..10)
            .map(|_| timed(|| va.ctl(&["status", &mid]).ok()))
            .collect(),
    );
    row.status_all = median(
        (0..3)
            .map(|_| timed(|| va.ctl(&["status", "--json"]).ok()))
            .collect(),
    );
    let kills: Vec<Duration> = (0..KILLS.min(n))
        .map(|i| timed(|| va.ctl(&["kill", &format!("c{i}")]).ok()))
        .collect();
    row.kill = (percentile(&kills, 0.5), percentile(&kills, 0.99));
    if churn {
        row.churn = Some(churn_rounds(&va, &vb, pa, n));
    }
    row
}

/// Kill every tunnel still up, then `CHURN_ROUNDS` times: `up --async`
/// all, wait, sample, `kill` all, wait. The drift of the initiator's RSS
/// (sampled with the tunnels down) from round 1 to the last, and the actor
/// counts.
fn churn_rounds(va: &Vpnd, vb: &Vpnd, pid: u32, n: usize) -> String {
    let kill_all = || {
        for i in 0..n {
            let _ = va.ctl(&["kill", &format!("c{i}")]);
        }
        Lab::wait_until(Duration::from_secs(120), || {
            child_sas(va) == 0 && child_sas(vb) == 0
        })
    };
    assert!(kill_all(), "tunnels left before the churn");
    std::thread::sleep(Duration::from_secs(1));
    let actors0 = actors(va);
    let (mut first, mut last, mut same_actors) = (0, 0, true);
    for round in 0..CHURN_ROUNDS {
        for i in 0..n {
            let _ = va.ctl(&["up", "--async", &format!("c{i}")]);
        }
        if !Lab::wait_until(Duration::from_secs(300), || {
            child_sas(va) >= n as u64 && child_sas(vb) >= n as u64
        }) {
            return format!("round {}: only {} up", round + 1, child_sas(va));
        }
        if !kill_all() {
            return format!("round {}: kill left {}", round + 1, child_sas(va));
        }
        std::thread::sleep(Duration::from_secs(1));
        let r = rss(pid);
        if round == 0 {
            first = r;
        }
        last = r;
        same_actors &= actors(va) == actors0;
    }
    let drift = (last as f64 - first as f64) / first.max(1) as f64 * 100.0;
    format!(
        "{drift:+.1}% ({:.1} → {:.1} MiB), actors {}",
        first as f64 / 1048576.0,
        last as f64 / 1048576.0,
        if same_actors { "same" } else { "differ" }
    )
}

fn charon_conns(n: usize, side: usize, start: &str) -> Vec<CharonConn> {
    let mut conns = many::charon_conns(n, side, start, PSK);
    for c in &mut conns {
        // A handshake that times out under the load is tried again, as
        // vpnd's initiator does, rather than lost.
        c.extra = "keyingtries = 3".into();
    }
    conns
}

fn installed(c: &Charon) -> usize {
    c.list_sas()
        .lines()
        .filter(|l| l.contains("INSTALLED"))
        .count()
}

fn charon_run(n: usize) -> Row {
    eprintln!("scale: charon ↔ charon, {n} tunnels");
    let (mut lab, a, b) = Lab::gateways("scc");
    let opts = CharonOptions {
        charon_extra: "install_routes = no\ncookie_threshold = 1000000\ncookie_threshold_ip = 1000000\nblock_threshold = 1000000\ninit_limit_half_open = 1000000\nretransmit_timeout = 4\nretransmit_tries = 5".into(),
        ..Default::default()
    };
    // kernel-libipsec routes each CHILD SA through its TUN device from an
    // address of the local selector: each side holds its N addresses.
    for (side, ns) in [(0, &a), (1, &b)] {
        let batch = lab.dir().join(format!("addrs-{side}"));
        let lines: String = (0..n)
            .map(|i| format!("addr add {}/32 dev lo\n", host(i, side)))
            .collect();
        std::fs::write(&batch, lines).expect("batch file");
        lab.exec(ns, &["ip", "-batch", batch.to_str().expect("path")]);
    }
    let cb = Charon::start_with(&mut lab, &b, "charon-b", &charon_conns(n, 1, "none"), &opts);
    std::thread::sleep(Duration::from_secs(2));
    let base_b = lab.pid("charon-b").map_or(0, rss);
    let cpu_b0 = lab.pid("charon-b").map_or(Duration::ZERO, cpu);
    // charon-a's RSS with the connections loaded comes from a first
    // instance that initiates nothing.
    let idle = Charon::start_with(
        &mut lab,
        &a,
        "charon-a0",
        &charon_conns(n, 0, "none"),
        &opts,
    );
    std::thread::sleep(Duration::from_secs(2));
    let base_a = lab.pid("charon-a0").map_or(0, rss);
    drop(idle);
    lab.stop("charon-a0");
    let t = Instant::now();
    let ca = Charon::start_with(
        &mut lab,
        &a,
        "charon-a",
        &charon_conns(n, 0, "start"),
        &opts,
    );
    let all = Lab::wait_until(Duration::from_secs(CHARON_SECS), || {
        std::thread::sleep(Duration::from_secs(1));
        installed(&ca) >= n && installed(&cb) >= n
    });
    let up = t.elapsed();
    let (pa, pb) = (lab.pid("charon-a").unwrap(), lab.pid("charon-b").unwrap());
    let mut row = Row {
        who: "charon ↔ charon",
        n,
        up: all.then_some(up),
        cpu: (cpu(pa), cpu(pb) - cpu_b0),
        ..Row::default()
    };
    let per = |now: u64, base: u64| now.saturating_sub(base) / n as u64;
    row.rss_per_tunnel = (per(rss(pa), base_a), per(rss(pb), base_b));
    if !all {
        row.note = format!("cut at {CHARON_SECS} s: {} of {n} up", installed(&ca));
    }
    let mid = format!("c{}", n / 2);
    row.status_one = median(
        (0..10)
            .map(|_| timed_any(|| ca.swanctl(&["--list-sas", "--ike", &mid]).0))
            .collect(),
    );
    row.status_all = median(
        (0..3)
            .map(|_| timed_any(|| ca.swanctl(&["--list-sas"]).0))
            .collect(),
    );
    let kills: Vec<Duration> = (0..20)
        .map(|i| {
            let ike = format!("c{i}");
            timed_any(|| {
                ca.swanctl(&["--terminate", "--ike", &ike, "--force", "--timeout", "5"])
                    .0
            })
        })
        .collect();
    row.kill = (percentile(&kills, 0.5), percentile(&kills, 0.99));
    row
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_row(r: &Row) {
    eprintln!(
        "SCALE {} {}: up {:?} cpu {:?}/{:?} rss/tunnel {}/{} B status {} / {} kill {} / {} churn {:?} {}",
        r.who,
        r.n,
        r.up,
        r.cpu.0,
        r.cpu.1,
        r.rss_per_tunnel.0,
        r.rss_per_tunnel.1,
        ms(r.status_one),
        ms(r.status_all),
        ms(r.kill.0),
        ms(r.kill.1),
        r.churn,
        r.note
    );
}

fn table(rows: &[Row], cap: Option<u64>) -> String {
    let mut t = format!(
        "vpnd key_computations_per_sec: {}\n\n| daemons | tunnels | all installed | CPU initiator / responder | per tunnel | RSS per tunnel, initiator / responder | `status CONN` | `status --json` (all) | `kill` p50 / p99 | churn RSS drift |\n|---|---|---|---|---|---|---|---|---|---|\n",
        cap.map_or("default".into(), |c| c.to_string())
    );
    for r in rows {
        let up = match r.up {
            Some(d) => format!("{:.2} s", d.as_secs_f64()),
            None => r.note.clone(),
        };
        let per = |d: Duration| d.as_secs_f64() * 1e6 / r.n as f64;
        let _ = writeln!(
            t,
            "| {} | {} | {up} | {:.2} s / {:.2} s | {:.0} / {:.0} µs | {:.1} / {:.1} KB | {} | {} | {} / {} | {} |",
            r.who,
            r.n,
            r.cpu.0.as_secs_f64(),
            r.cpu.1.as_secs_f64(),
            per(r.cpu.0),
            per(r.cpu.1),
            r.rss_per_tunnel.0 as f64 / 1024.0,
            r.rss_per_tunnel.1 as f64 / 1024.0,
            ms(r.status_one),
            ms(r.status_all),
            ms(r.kill.0),
            ms(r.kill.1),
            r.churn.as_deref().unwrap_or("—"),
        );
    }
    t
}

/// Control-plane latencies on `v`: `status CONN` (median of 10), `status
/// --json` (median of 3), and `kill` p50 / p99 over `kills`.
struct Latency {
    status_one: Duration,
    status_all: Duration,
    kill: (Duration, Duration),
}

fn latency(v: &Vpnd, n: usize, kills: &[String]) -> Latency {
    let mid = format!("c{}", n / 2);
    let status_one = median(
        (0..10)
            .map(|_| timed(|| v.ctl(&["status", &mid]).ok()))
            .collect(),
    );
    let status_all = median(
        (0..3)
            .map(|_| timed(|| v.ctl(&["status", "--json"]).ok()))
            .collect(),
    );
    let k: Vec<Duration> = kills
        .iter()
        .map(|c| timed(|| v.ctl(&["kill", c]).ok()))
        .collect();
    Latency {
        status_one,
        status_all,
        kill: (percentile(&k, 0.5), percentile(&k, 0.99)),
    }
}

fn key_computations(v: &Vpnd) -> u64 {
    v.stats()["scheduler"]["key_computations_total"]
        .as_u64()
        .unwrap_or(0)
}

fn ike_sas(v: &Vpnd) -> u64 {
    v.stats()["ike_sas"].as_u64().unwrap_or(0)
}

/// Exchanges that ran out of retransmissions, as the logs say.
fn timeouts(lab: &Lab, name: &str) -> usize {
    lab.log(name).matches("did not answer").count()
}

fn storm_run(n: usize, cap: Option<u64>) -> String {
    eprintln!("scale: storm, {n} tunnels, cap {cap:?}");
    let (mut lab, a, b) = Lab::gateways("scs");
    // The flood's spoofed sources are routed back towards A (so B's
    // reverse-path filter lets them in), which does not forward and
    // drops the replies.
    lab.exec(
        &b,
        &["ip", "route", "add", "198.18.64.0/22", "via", "198.18.0.1"],
    );
    let rekey = format!("rekey_time = \"{STORM_REKEY_SECS}s\"\n");
    let storm = |c: String| {
        c.replace("[scheduler]\n", "[scheduler]\nrekey_jitter = \"0%\"\n")
            .replace(
                "retransmit_timeout = \"10s\"\n",
                &format!("retransmit_timeout = \"10s\"\n{rekey}"),
            )
            .replace(
                "esp_proposals = [\"aes256gcm16\"]\n",
                &format!("esp_proposals = [\"aes256gcm16\"]\n{rekey}"),
            )
    };
    // Only the initiator's lifetimes are short: it rekeys everything.
    let cfg_a = storm(vpnd_config(n, 0, "start", cap));
    let cfg_b = vpnd_config(n, 1, "add", cap);
    let vb = Vpnd::start(&mut lab, &b, "vpnd-b", &cfg_b, &psk_any(PSK), &[]);
    let t = Instant::now();
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &cfg_a, &psk_any(PSK), &[]);
    let all = Lab::wait_until(Duration::from_secs(300), || {
        child_sas(&va) >= n as u64 && child_sas(&vb) >= n as u64
    });
    let up = t.elapsed();
    if !all {
        return format!("storm: only {} of {n} up after {up:.0?}", child_sas(&va));
    }
    eprintln!("scale: storm: {n} up in {up:.1?}");
    // The flood, at the responder.
    let base = admission_requests(&vb);
    lab.spawn(
        &a,
        "flood",
        &[
            FLOOD,
            "--to",
            "198.18.0.2",
            "--rate",
            "5000",
            "--secs",
            "10",
            "--spoof",
            "198.18.64.0",
            "--count",
            "1024",
        ],
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    let flood_kills: Vec<String> = (0..20).map(|i| format!("c{}", n - 1 - i)).collect();
    let flood = latency(&vb, n, &flood_kills);
    let flood_ok = lab.wait_exit("flood", Duration::from_secs(20)).is_some();
    let refused = admission_requests(&vb).saturating_sub(base);
    let sent = lab.log("flood");
    let left = n - flood_kills.len();
    // The storm: everything established within `up` rekeys about
    // STORM_REKEY_SECS after it was.
    let storm_at = t + Duration::from_secs(STORM_REKEY_SECS);
    let mut rates = Vec::new();
    let (mut last, mut at) = (key_computations(&va), Instant::now());
    let mut storm_lat = None;
    let storm_kills: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let end = storm_at + up + Duration::from_secs(30);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        let (now, t2) = (key_computations(&va), Instant::now());
        rates.push((now - last) as f64 / t2.duration_since(at).as_secs_f64());
        (last, at) = (now, t2);
        if storm_lat.is_none() && Instant::now() > storm_at + Duration::from_secs(2) {
            storm_lat = Some(latency(&va, n, &storm_kills));
        }
    }
    let peak = rates.iter().cloned().fold(0.0, f64::max);
    let busy = rates.iter().filter(|r| **r > 100.0).count();
    let want = (left - storm_kills.len()) as u64;
    let settled = Lab::wait_until(Duration::from_secs(60), || {
        child_sas(&va) == want && child_sas(&vb) == want && ike_sas(&va) == want
    });
    let lost = want.saturating_sub(child_sas(&va).min(child_sas(&vb)));
    let timed_out = timeouts(&lab, "vpnd-a") + timeouts(&lab, "vpnd-b");
    let storm_lat = storm_lat.expect("timed during the storm");
    let row = |what: &str, l: &Latency| {
        format!(
            "| {what} | {} | {} | {} / {} |\n",
            ms(l.status_one),
            ms(l.status_all),
            ms(l.kill.0),
            ms(l.kill.1)
        )
    };
    let mut out = format!(
        "{n} tunnels up in {:.2} s (key_computations_per_sec {}).\n\n| under | `status CONN` | `status --json` | `kill` p50 / p99 |\n|---|---|---|---|\n",
        up.as_secs_f64(),
        cap.map_or("default".into(), |c| c.to_string())
    );
    out += &row(
        &format!("flood of spoofed IKE_SA_INITs, 5,000/s (responder; {refused} requests met at its admission gate)"),
        &flood,
    );
    out += &row("rekey storm (initiator)", &storm_lat);
    let _ = write!(
        out,
        "\nRekey storm: {} tunnels rekeyed their IKE SA and CHILD SA together; key computations per second on the initiator peaked at {peak:.0} (cap {}), busy for {busy} s; tunnels lost: {lost}; exchanges timed out: {timed_out}; all settled: {settled}. The flood ended: {flood_ok} ({}).\n",
        want,
        cap.map_or("default".into(), |c| c.to_string()),
        sent.trim()
    );
    out
}

/// New IKE_SA_INITs the responder's admission gate has met: those from
/// addresses some connection accepts, and those from addresses none does.
fn admission_requests(v: &Vpnd) -> u64 {
    let a = &v.stats()["admission"];
    a["requests_total"].as_u64().unwrap_or(0) + a["unmatched_total"].as_u64().unwrap_or(0)
}
