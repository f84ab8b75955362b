//! TCP throughput through tunnels, single iperf3 stream, in one run:
//!
//! * `veth`: the raw veth between two namespaces, no tunnel (baseline);
//! * `charon-charon`: strongSwan's charon on both ends (kernel-libipsec);
//! * `vpnd-vpnd`: vpnd on both ends, `dataplane = "userspace"`;
//! * `vpnd-charon`: vpnd (gw1, initiator) to charon (gw2).
//! * `charon-vpnd`: charon (gw1, initiator) to vpnd (gw2): vpnd receives.
//!
//! `cargo bench -p chaos-tests --bench throughput [-- [--time SECS] [--udp RATE] [SCENARIO...]]`
//! (root). A SCENARIO argument selects the scenarios whose name starts with
//! it (`charon` is charon-charon, `vpnd` both vpnd ones); none runs all.
//! `--time` is iperf3's `-t` (1 to 10, default 10). `--udp 600M` offers
//! UDP at that rate instead of TCP: what the receiving gateway delivers
//! then is its capacity, as TCP's backing off does not hide it.
//!
//! Each tunnel scenario also prints the datagrams dropped by each
//! gateway's port-4500 sockets (a receiver that cannot keep up) and the
//! cores each daemon used, so a figure comes with its cost.
//!
//! Without `--bench` (which cargo bench passes) it does nothing, so
//! `cargo test --all-targets` skips it. Each scenario prints
//! `THROUGHPUT <name> <x.xx> Gbit/s` or `THROUGHPUT <name> FAILED: <why>`
//! and the run goes on; a summary with ratios ends it. Not a test: nothing
//! here fails the build, every wait is bounded, and each scenario's lab
//! (namespaces, daemons) is torn down before the next starts.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use chaos_tests::configs;
use chaos_tests::topology::{self, GW1, GW2, LAN1_HOST, LAN2_HOST, PSK};
use chaos_tests::traffic::{self, Amount, Transfer};
use chaos_tests::{Charon, CharonConn, CharonOptions, Lab, Ns, Vpnd};

const SCENARIOS: &[&str] = &[
    "veth",
    "charon-charon",
    "vpnd-vpnd",
    "vpnd-charon",
    "charon-vpnd",
];

/// Daemon logs worth showing when a scenario fails.
const LOGS: &[&str] = &["charon-gw1", "charon-gw2", "vpnd-gw1", "vpnd-gw2"];

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not,
    // and must not spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("throughput: a benchmark; run it with cargo bench (skipped)");
        return;
    }
    let mut load = Load {
        secs: 10,
        udp: None,
    };
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--time" | "-t" => {
                load.secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s| (1..=10).contains(s))
                    .unwrap_or_else(|| usage("--time takes 1 to 10 (seconds)"));
            }
            "--udp" => {
                load.udp = Some(
                    args.next()
                        .filter(|v| valid_rate(v))
                        .unwrap_or_else(|| usage("--udp takes a rate of at most 5G, e.g. 600M")),
                );
            }
            // cargo bench passes --bench; ignore libtest-style flags.
            f if f.starts_with('-') => {}
            f => filters.push(f.to_string()),
        }
    }
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.starts_with(f.as_str())))
        .collect();
    if selected.is_empty() {
        usage(&format!("no scenario matches {filters:?}"));
    }

    if selected.iter().any(|s| s.starts_with("vpnd")) {
        // Build vpnd (release) before any clock starts.
        let _ = panic::catch_unwind(chaos_tests::vpnd::bin_dir);
    }
    // Panics inside a scenario are its failure reason, reported below.
    panic::set_hook(Box::new(|_| {}));
    let mut results = Vec::new();
    for name in selected {
        let start = Instant::now();
        let mut lab = None;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(name, &load, &mut lab)))
            .unwrap_or_else(|p| Err(panic_text(&*p)));
        match &outcome {
            Ok((t, dev)) => println!(
                "THROUGHPUT {name} {:.2} Gbit/s (via {dev}, {:.1} s, {} MB, {} retransmits)",
                t.gbits(),
                t.seconds,
                t.bytes_received / 1_000_000,
                t.retransmits.map_or("?".into(), |r| r.to_string())
            ),
            Err(why) => {
                println!("THROUGHPUT {name} FAILED: {}", one_line(why));
                if let Some(lab) = &lab {
                    show_logs(lab);
                }
            }
        }
        drop(lab);
        eprintln!("({name}: {:.1} s)", start.elapsed().as_secs_f64());
        results.push((name, outcome.ok().map(|(t, _)| t.gbits())));
    }
    summary(&results);
}

fn usage(why: &str) -> ! {
    eprintln!(
        "throughput: {why}\nusage: cargo bench -p chaos-tests --bench throughput -- [--time SECS] [{}]...",
        SCENARIOS.join("|")
    );
    std::process::exit(2)
}

/// One scenario. The lab is kept in `slot` so that it outlives a panic
/// (its logs are shown, then it is dropped quietly).
fn run(name: &str, load: &Load, slot: &mut Option<Lab>) -> Result<(Transfer, String), String> {
    let (lab, gw1, gw2) = topology::site_to_site(&format!("tp{}", &name[..2]));
    let lab = slot.insert(lab);
    match name {
        "veth" => {
            let dev = route_dev(lab, &gw1, GW1, GW2)?;
            Ok((measure(lab, &gw1, GW1, &gw2, GW2, load)?, dev))
        }
        "charon-charon" => {
            let (_c1, _c2) =
                topology::site_to_site_charons(lab, &gw1, &gw2, &CharonOptions::default());
            tunnel(lab, &gw1, &gw2, load)
        }
        "vpnd-vpnd" => {
            let v2 = vpnd(lab, &gw2, 2)?;
            let v1 = vpnd(lab, &gw1, 1)?;
            up(lab, &v1)?;
            wait_installed(&v2, "gw2")?;
            tunnel(lab, &gw1, &gw2, load)
        }
        "vpnd-charon" => {
            let (_, c2) = charon_conns();
            let charon = Charon::start(lab, &gw2, "charon-gw2", &[c2]);
            let v1 = vpnd(lab, &gw1, 1)?;
            up(lab, &v1)?;
            if !charon.wait_installed("net", Duration::from_secs(5)) {
                return Err(format!("charon has no CHILD SA:\n{}", charon.list_sas()));
            }
            tunnel(lab, &gw1, &gw2, load)
        }
        "charon-vpnd" => {
            let (c1, _) = charon_conns();
            let v2 = vpnd(lab, &gw2, 2)?;
            let charon = Charon::start(lab, &gw1, "charon-gw1", &[c1]);
            charon.initiate("net");
            if !charon.wait_installed("net", Duration::from_secs(10)) {
                return Err(format!("charon has no CHILD SA:\n{}", charon.list_sas()));
            }
            wait_installed(&v2, "gw2")?;
            tunnel(lab, &gw1, &gw2, load)
        }
        other => Err(format!("unknown scenario {other}")),
    }
}

/// Ping first (a clearer failure than iperf3's), then measure LAN to LAN.
/// Also returns the device the kernel routes LAN to LAN traffic to.
fn tunnel(lab: &mut Lab, gw1: &Ns, gw2: &Ns, load: &Load) -> Result<(Transfer, String), String> {
    let dev = route_dev(lab, gw1, LAN1_HOST, LAN2_HOST)?;
    if dev.starts_with("va") {
        return Err(format!(
            "{LAN2_HOST} is routed to the veth {dev}, not a tunnel"
        ));
    }
    let ping = traffic::ping_output(lab, gw1, LAN1_HOST, LAN2_HOST, 3);
    if traffic::received(&ping) != Some(3) {
        return Err(format!(
            "ping {LAN1_HOST} -> {LAN2_HOST} through the tunnel: {}",
            String::from_utf8_lossy(&ping.stdout)
                .lines()
                .find(|l| l.contains("transmitted"))
                .unwrap_or("no output")
        ));
    }
    let before = [udp_drops(lab, gw1), udp_drops(lab, gw2)];
    let cpu_before = CpuSample::take(&[gw1, gw2]);
    let t = measure(lab, gw1, LAN1_HOST, gw2, LAN2_HOST, load)?;
    let cpu = CpuSample::take(&[gw1, gw2]).since(&cpu_before);
    let after = [udp_drops(lab, gw1), udp_drops(lab, gw2)];
    // Where the tunnel loses packets: a receiver that cannot keep up with
    // its UDP socket overflows its receive buffer.
    let d = |i: usize| after[i].saturating_sub(before[i]);
    Ok((
        t,
        format!("{dev}; drops at UDP 4500 gw1 {} gw2 {}; {cpu}", d(0), d(1)),
    ))
}

/// CPU time of the daemons (charon, vpnd) on each gateway and of the whole
/// machine, from /proc: the cost side of a throughput figure. A daemon's
/// time includes the kernel work done in its threads (its sends deliver
/// to the peer's socket in the same softirq, its TUN writes run the
/// receiving TCP stack), as for any process.
struct CpuSample {
    at: Instant,
    /// (gateway index, daemon name, clock ticks used so far).
    daemons: Vec<(usize, String, u64)>,
    /// /proc/stat: idle ticks and all ticks, all CPUs.
    idle: u64,
    total: u64,
}

impl CpuSample {
    fn take(gws: &[&Ns]) -> CpuSample {
        let mut daemons: Vec<(usize, String, u64)> = Vec::new();
        for (i, ns) in gws.iter().enumerate() {
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", &ns.name])
                .output();
            let pids = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            for pid in pids.unwrap_or_default().split_whitespace() {
                let Some((comm, ticks)) = proc_ticks(pid) else {
                    continue;
                };
                if comm != "charon" && comm != "vpnd" {
                    continue;
                }
                match daemons.iter_mut().find(|d| d.0 == i && d.1 == comm) {
                    Some(d) => d.2 += ticks,
                    None => daemons.push((i, comm, ticks)),
                }
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        CpuSample {
            at: Instant::now(),
            daemons,
            // idle + iowait
            idle: cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0),
            total: cpu.iter().sum(),
        }
    }

    /// Cores used over the interval since `before`, per daemon and idle.
    fn since(&self, before: &CpuSample) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(0.001);
        let hz = clock_ticks();
        let daemons = self
            .daemons
            .iter()
            .map(|(i, name, t)| {
                let old = before
                    .daemons
                    .iter()
                    .find(|d| d.0 == *i && d.1 == *name)
                    .map_or(0, |d| d.2);
                (*i, name.clone(), t.saturating_sub(old) as f64 / hz / secs)
            })
            .collect();
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let cores = total / hz / secs;
        CpuUse {
            daemons,
            idle: self.idle.saturating_sub(before.idle) as f64 / hz / secs,
            cores,
        }
    }
}

struct CpuUse {
    daemons: Vec<(usize, String, f64)>,
    idle: f64,
    cores: f64,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cores used:")?;
        for (i, name, c) in &self.daemons {
            write!(f, " gw{} {name} {c:.2},", i + 1)?;
        }
        write!(f, " idle {:.2} of {:.0}", self.idle, self.cores)
    }
}

/// (comm, utime + stime in clock ticks) of a process, all its threads.
fn proc_ticks(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of stat(5); fields[0] is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Datagrams dropped by the UDP sockets bound to port 4500 (ESP-in-UDP
/// and IKE) in `ns`: the `drops` column of /proc/net/udp and udp6 (per
/// namespace), so the inner traffic's sockets are not counted.
fn udp_drops(lab: &Lab, ns: &Ns) -> u64 {
    let out = lab.try_exec(ns, &["cat", "/proc/net/udp", "/proc/net/udp6"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(port, 16).ok()? == 4500)
                .then(|| f.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// `ip route get DST from SRC`'s output device in `ns`.
fn route_dev(lab: &Lab, ns: &Ns, src: &str, dst: &str) -> Result<String, String> {
    let out = lab.try_exec(ns, &["ip", "-o", "route", "get", dst, "from", src]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "dev")
        .and(words.next())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "no route {src} -> {dst}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

fn measure(
    lab: &mut Lab,
    client: &Ns,
    client_addr: &str,
    server: &Ns,
    server_addr: &str,
    load: &Load,
) -> Result<Transfer, String> {
    let udp = load
        .udp
        .as_deref()
        .map(|rate| ["-u", "-b", rate, "-l", "1300"]);
    traffic::iperf3(
        lab,
        client,
        server,
        server_addr,
        Some(client_addr),
        Amount::Seconds(load.secs),
        Duration::from_secs(15),
        udp.as_ref().map_or(&[][..], |a| &a[..]),
    )
}

/// What each scenario's iperf3 client sends.
struct Load {
    /// iperf3's `-t`.
    secs: u32,
    /// UDP at this offered rate (iperf3's `-b`, 1300-byte datagrams)
    /// instead of one TCP stream: finds what a receiver can take, without
    /// TCP backing off.
    udp: Option<String>,
}

/// A rate for iperf3's `-b`: digits with an optional K, M or G, at most
/// 5 Gbit/s (the run stays bounded).
fn valid_rate(v: &str) -> bool {
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1e3),
        Some((i, 'M' | 'm')) => (&v[..i], 1e6),
        Some((i, 'G' | 'g')) => (&v[..i], 1e9),
        _ => (v, 1.0),
    };
    num.parse::<f64>().is_ok_and(|n| n > 0.0 && n * mult <= 5e9)
}

/// The site-to-site tunnel's charon ends (gw1's, gw2's).
fn charon_conns() -> (CharonConn, CharonConn) {
    chaos_tests::charon::tunnel_pair(
        (GW1, GW2),
        ("gw1.test", "gw2.test"),
        (topology::LAN1, topology::LAN2),
        PSK,
    )
}

/// vpnd on gw1 (side 1) or gw2 (side 2) with the userspace dataplane.
fn vpnd(lab: &mut Lab, ns: &Ns, side: u8) -> Result<Vpnd, String> {
    let config = configs::userspace_end(&configs::End::site(side, "add"));
    // Vpnd::start panics (with vpnd's log) when the daemon does not come
    // up, e.g. while it rejects the userspace dataplane.
    Ok(Vpnd::start(
        lab,
        ns,
        &format!("vpnd-gw{side}"),
        &config,
        &configs::psk_any(PSK),
        &[],
    ))
}

fn up(lab: &Lab, v: &Vpnd) -> Result<(), String> {
    let c = v.ctl(&["up", "tun"]);
    if !c.ok() {
        return Err(format!(
            "vpnctl up tun: {}{} {}",
            c.stdout.trim(),
            c.stderr.trim(),
            last_error(&lab.log(&v.name))
        ));
    }
    wait_installed(v, &v.name)
}

fn wait_installed(v: &Vpnd, who: &str) -> Result<(), String> {
    if Lab::wait_until(Duration::from_secs(10), || v.installed_children() >= 1) {
        Ok(())
    } else {
        Err(format!("{who}: no installed CHILD SA within 10 s"))
    }
}

/// The last log line that looks like an error, if any.
fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("error"))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// The first line of a reason, plus the first error line of what follows
/// (a daemon log appended by a harness panic).
fn one_line(why: &str) -> String {
    let mut lines = why.lines();
    let first = lines.next().unwrap_or("").trim().to_string();
    let rest: Vec<&str> = lines.collect();
    match rest
        .iter()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("not available"))
    {
        Some(e) => format!("{first} {}", e.trim()),
        None => first,
    }
}

fn show_logs(lab: &Lab) {
    for name in LOGS {
        let log = lab.log(name);
        if log.is_empty() {
            continue;
        }
        eprintln!("  --- {name} (last lines) ---");
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        for l in tail.into_iter().rev() {
            eprintln!("  | {l}");
        }
    }
}

fn summary(results: &[(&str, Option<f64>)]) {
    let get = |n: &str| results.iter().find(|r| r.0 == n).and_then(|r| r.1);
    println!("\nTHROUGHPUT SUMMARY (single TCP stream, Gbit/s)");
    for (name, g) in results {
        match (g, get("veth")) {
            (Some(g), Some(v)) if *name != "veth" => {
                println!("  {name:<14} {g:>7.2}   {:>5.1}% of veth", 100.0 * g / v)
            }
            (Some(g), _) => println!("  {name:<14} {g:>7.2}"),
            (None, _) => println!("  {name:<14}  FAILED"),
        }
    }
    for vpnd in ["vpnd-vpnd", "vpnd-charon", "charon-vpnd"] {
        match (get(vpnd), get("charon-charon")) {
            (Some(a), Some(b)) => println!("  RATIO {vpnd}/charon-charon {:.2}", a / b),
            _ if results.iter().any(|r| r.0 == vpnd) => {
                println!("  RATIO {vpnd}/charon-charon n/a")
            }
            _ => {}
        }
    }
}
