//! An IKE_SA_INIT flood at a vpnd responder carrying 50 tunnels, while a
//! 51st is brought up: the DoS benchmark.
//!
//! A (198.18.0.1, vpnd, responder) has connections c0..c50 for B
//! (198.18.0.2, vpnd, initiator) and a `%any` connection. Once B's c0..c49
//! are up, `ike-flood` sends IKE_SA_INIT requests at A for 20 s, either
//! from B's own address (`peer`) or from 1,024 spoofed addresses
//! (`spoofed`, which only the `%any` connection accepts). During the flood
//! B runs `vpnctl up c50` and A runs `vpnctl kill` on ten of the running
//! connections, one a second; both are timed, and one kill before the flood
//! gives the quiet figure (each includes starting `vpnctl`). A's RSS is sampled before, during and for
//! 30 s after the flood.
//!
//! `cargo bench -p chaos-tests --bench flood [-- [RATE...] [peer|spoofed]]`
//! (root). RATE is 2000, 5000 or 20000 (default: all three); the source
//! defaults to both. Each run prints one `FLOOD` line and a table ends the
//! run. Without `--bench` (which cargo bench passes) it does nothing, so
//! `cargo test --all-targets` skips it. Nothing here fails the build; every
//! wait is bounded, and each run's lab is torn down before the next.

use std::time::{Duration, Instant};

use chaos_tests::configs;
use chaos_tests::{Lab, Vpnd};

const FLOOD: &str = env!("CARGO_BIN_EXE_ike-flood");
const RATES: &[u64] = &[2000, 5000, 20000];
const SOURCES: &[&str] = &["peer", "spoofed"];
const FLOOD_SECS: u64 = 20;
const AFTER_SECS: u64 = 30;
const TUNNELS: usize = 50;
/// Connections killed on A during the flood (one more before it).
const KILLS: usize = 10;
/// Up at the end on A: the 50 and the 51st, less the ones killed.
const EXPECTED_AFTER: usize = TUNNELS + 1 - KILLS - 1;

struct Row {
    rate: u64,
    source: &'static str,
    up_51st: Option<Duration>,
    /// `vpnctl kill` before the flood (the process start included).
    kill_quiet: Duration,
    kill_median: Duration,
    kill_max: Duration,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    half_open_max: u64,
    cookies: u64,
    alive_after: usize,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("flood: a benchmark; run it with cargo bench (skipped)");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rates: Vec<u64> = {
        let r: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
        if r.is_empty() {
            RATES.to_vec()
        } else {
            r.into_iter().filter(|r| RATES.contains(r)).collect()
        }
    };
    let sources: Vec<&'static str> = {
        let s: Vec<&'static str> = SOURCES
            .iter()
            .copied()
            .filter(|s| args.iter().any(|a| a == s))
            .collect();
        if s.is_empty() {
            SOURCES.to_vec()
        } else {
            s
        }
    };
    let mut rows = Vec::new();
    for &source in &sources {
        for &rate in &rates {
            match run(rate, source) {
                Ok(row) => {
                    println!(
                        "FLOOD {rate}/s {source}: 51st up in {}, kill {:.1} ms quiet, {:.1} ms median and {:.1} ms max of {KILLS} under the flood, RSS {:.1} → peak {:.1} → {:.1} MiB after {AFTER_SECS} s, half-open max {}, {} cookies, {} of {} tunnels up after",
                        fmt_up(row.up_51st),
                        ms(row.kill_quiet),
                        ms(row.kill_median),
                        ms(row.kill_max),
                        mib(row.rss_before),
                        mib(row.rss_peak),
                        mib(row.rss_after),
                        row.half_open_max,
                        row.cookies,
                        row.alive_after,
                        EXPECTED_AFTER
                    );
                    rows.push(row);
                }
                Err(e) => println!("FLOOD {rate}/s {source}: FAILED: {e}"),
            }
        }
    }
    println!("\n| rate | source | 51st up | vpnctl kill: quiet / median / max of {KILLS} | RSS before | peak | {AFTER_SECS} s after | within 20% | half-open max | cookies sent | tunnels up after |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // The command's own start and connect are in each figure.
    for r in &rows {
        let within = (r.rss_after as f64) <= r.rss_before as f64 * 1.2;
        println!(
            "| {}/s | {} | {} | {:.1} / {:.1} / {:.1} ms | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {} | {}/{EXPECTED_AFTER} |",
            r.rate,
            r.source,
            fmt_up(r.up_51st),
            ms(r.kill_quiet),
            ms(r.kill_median),
            ms(r.kill_max),
            mib(r.rss_before),
            mib(r.rss_peak),
            mib(r.rss_after),
            if within { "yes" } else { "no" },
            r.half_open_max,
            r.cookies,
            r.alive_after
        );
    }
}

fn fmt_up(d: Option<Duration>) -> String {
    d.map_or("not up".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn responder_config() -> String {
    let mut c = configs::many("a", TUNNELS + 1, "add", "");
    c.push_str(
        "\n[connections.anyone]\nremote_addrs = [\"%any\"]\nlocal_id = \"a.test\"\nremote_id = \"roadwarrior.test\"\n[connections.anyone.children.net]\nlocal_ts = [\"198.19.250.0/24\"]\nremote_ts = [\"198.19.251.0/24\"]\nesp_proposals = [\"aes256gcm16\"]\n",
    );
    c
}

fn run(rate: u64, source: &'static str) -> Result<Row, String> {
    let (mut lab, a, b) = Lab::gateways("flb");
    lab.exec(
        &a,
        &["ip", "route", "add", "198.18.64.0/22", "via", "198.18.0.2"],
    );
    let secrets = configs::psk_any("flood-bench-secret");
    let va = Vpnd::start(&mut lab, &a, "vpnd-a", &responder_config(), &secrets, &[]);
    let initiator = configs::pair_config("b", TUNNELS + 1, "start", "", |i| {
        if i == TUNNELS {
            "auto = \"add\"\n".into()
        } else {
            String::new()
        }
    });
    let vb = Vpnd::start(&mut lab, &b, "vpnd-b", &initiator, &secrets, &[]);
    if !Lab::wait_until(Duration::from_secs(60), || {
        vb.installed_children() == TUNNELS
    }) {
        return Err(format!("only {} tunnels came up", vb.installed_children()));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = |v: &Vpnd| v.stats()["rss_bytes"].as_u64().unwrap_or(0);
    let rss_before = rss(&va);
    let kill = |name: String| -> Result<Duration, String> {
        let t0 = Instant::now();
        let k = va.ctl(&["kill", &name]);
        let took = t0.elapsed();
        if !k.ok() {
            return Err(format!("kill {name} failed: {}", k.stderr.trim()));
        }
        Ok(took)
    };
    let kill_quiet = kill(format!("c{}", TUNNELS - 1))?;
    let rate_s = rate.to_string();
    let secs_s = FLOOD_SECS.to_string();
    let mut argv = vec![
        FLOOD,
        "--to",
        "198.18.0.1",
        "--rate",
        &rate_s,
        "--secs",
        &secs_s,
    ];
    match source {
        "peer" => argv.extend_from_slice(&["--from", "198.18.0.2"]),
        _ => argv.extend_from_slice(&["--spoof", "198.18.64.0", "--count", "1024"]),
    }
    lab.spawn(&b, "flood", &argv, &[]);
    let start = Instant::now();
    let (mut rss_peak, mut half_open_max) = (rss_before, 0);
    let mut kills = Vec::new();
    let mut up_51st = None;
    while start.elapsed() < Duration::from_secs(FLOOD_SECS) {
        let t = start.elapsed().as_secs();
        let s = va.stats();
        rss_peak = rss_peak.max(s["rss_bytes"].as_u64().unwrap_or(0));
        half_open_max = half_open_max.max(s["admission"]["half_open"].as_u64().unwrap_or(0));
        if t >= 3 && up_51st.is_none() {
            let t0 = Instant::now();
            let up = vb.ctl(&["up", &format!("c{TUNNELS}")]);
            if up.ok() {
                up_51st = Some(t0.elapsed());
            } else {
                println!("up c{TUNNELS} under the flood: {}", up.stderr.trim());
                up_51st = Some(Duration::MAX);
            }
        }
        if t >= 4 + kills.len() as u64 && kills.len() < KILLS {
            kills.push(kill(format!("c{}", TUNNELS - 1 - KILLS + kills.len()))?);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let up_51st = up_51st.filter(|d| *d != Duration::MAX);
    lab.wait_exit("flood", Duration::from_secs(10));
    print!("{}", lab.log("flood"));
    let cookies = va.stats()["admission"]["cookies_sent_total"]
        .as_u64()
        .unwrap_or(0);
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(AFTER_SECS) {
        rss_peak = rss_peak.max(rss(&va));
        std::thread::sleep(Duration::from_secs(1));
    }
    let rss_after = rss(&va);
    // The ones not killed, and the 51st.
    let alive_after = va.installed_children();
    kills.sort();
    let kill_median = kills.get(kills.len() / 2).copied().unwrap_or_default();
    let kill_max = kills.last().copied().unwrap_or_default();
    Ok(Row {
        rate,
        source,
        up_51st,
        kill_quiet,
        kill_median,
        kill_max,
        rss_before,
        rss_peak,
        rss_after,
        half_open_max,
        cookies,
        alive_after,
    })
}
