//! Installing and removing 1,000 CHILD SAs in the kernel (XFRM states and
//! policies), vpnd beside charon, in a User-Mode Linux guest (this host's
//! kernel has no ESP).
//!
//! * `backend`: vpnd's `xfrm` dataplane alone, in its own namespace:
//!   1,000 SA pairs, each with its out/in/fwd policies, installed one after
//!   another, then from 16 threads at once (the netlink thread batches
//!   them), and removed. The time per CHILD SA is the daemon's cost of
//!   keying the kernel.
//! * `tunnels`: 1,000 tunnels (one IKE SA and one CHILD SA each) between
//!   two daemons in two namespaces, vpnd ↔ vpnd (dataplane xfrm) and
//!   charon ↔ charon (kernel-netlink), timed until all are installed on
//!   both ends, with each daemon's CPU; then SIGTERM, timed until the
//!   daemon is gone and the kernel holds none of its states.
//!
//! `cargo bench -p chaos-tests --bench xfrm` (root; a few minutes). On the
//! host it boots the guest, which runs this same binary; it prints one
//! markdown table. Without `--bench` (which cargo bench passes) it does
//! nothing, so `cargo test --all-targets` skips it.

use std::time::{Duration, Instant};

use chaos_tests::configs::psk_any;
use chaos_tests::many::{self, host};
use chaos_tests::procstat::cpu;
use chaos_tests::{uml, Charon, CharonOptions, Lab, Ns, Vpnd};
use ike::config::Mode;
use ike::wire::TrafficSelector;
use kernel::xfrm::{XfrmDataplane, XfrmSettings};
use kernel::{Dataplane, SaInstall};

const N: usize = 1000;
const PSK: &str = "xfrm-bench-psk-0123456789abcdef";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !uml::in_guest() {
        chaos_tests::lab::require_root();
        chaos_tests::vpnd::bin_dir();
        uml::ensure_installed().expect("user-mode-linux");
        let exe = std::env::current_exe().expect("exe");
        let only_backend = if std::env::args().any(|a| a == "backend") {
            "backend"
        } else {
            "all"
        };
        let out = uml::run(
            &[exe.to_str().expect("utf-8"), "--bench", only_backend],
            &[],
            Duration::from_secs(1500),
        )
        .expect("guest");
        let text = out.output();
        println!("{}", text.split_once('\n').map_or(text, |(_, r)| r));
        if !out.success() {
            eprintln!("{out}");
            std::process::exit(1);
        }
        return;
    }
    let mut backend = backend();
    backend.push(ip_batch());
    print_rows(&backend);
    let (vpnd, charon) = if std::env::args().any(|a| a == "backend") {
        (Vec::new(), Vec::new())
    } else {
        let vpnd = tunnels_vpnd();
        print_rows(&vpnd);
        let charon = tunnels_charon();
        print_rows(&charon);
        (vpnd, charon)
    };
    println!("\n| daemon (in the UML guest, 1 CPU) | measure | 1,000 CHILD SAs | per CHILD SA |");
    println!("|---|---|---|---|");
    for (who, what, total) in backend.iter().chain(&vpnd).chain(&charon) {
        println!(
            "| {who} | {what} | {:.3} s | {:.0} µs |",
            total.as_secs_f64(),
            total.as_secs_f64() * 1e6 / N as f64
        );
    }
}

type Row = (&'static str, &'static str, Duration);

fn print_rows(rows: &[Row]) {
    for (who, what, d) in rows {
        eprintln!("XFRM-BENCH {who}: {what}: {:.3} s", d.as_secs_f64());
    }
}

/// SIGTERM `name` and wait (bounded) for it to exit; a daemon removes its
/// kernel state on the way out.
fn terminate(lab: &mut Lab, name: &str) {
    if let Some(pid) = lab.pid(name) {
        // SAFETY: signalling a child process we started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    lab.wait_exit(name, Duration::from_secs(300));
}

fn ts(a: &str) -> TrafficSelector {
    let ip = a.parse().expect("ip");
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: u16::MAX,
        start_addr: ip,
        end_addr: ip,
    }
}

fn sa(i: usize) -> SaInstall {
    SaInstall {
        owner: format!("c{i}"),
        child: "net".into(),
        reqid: i as u32 + 1,
        spi_in: 0xc100_0000 + i as u32,
        spi_out: 0xc200_0000 + i as u32,
        local: "198.18.0.1:500".parse().expect("addr"),
        remote: "198.18.0.2:500".parse().expect("addr"),
        encap: false,
        mode: Mode::Tunnel,
        local_ts: vec![ts(&host(i, 0))],
        remote_ts: vec![ts(&host(i, 1))],
        encr: ike::crypto::AeadAlg::AesGcm16_256,
        esn: false,
        keys: ike::keys::ChildKeys {
            encr: ike::crypto::AeadAlg::AesGcm16_256,
            inbound: vec![1; 36].into(),
            outbound: vec![2; 36].into(),
        },
        rekey_of: None,
        initiator: true,
        lifetime: Default::default(),
        opts: Default::default(),
    }
}

fn count(ns: Option<&Ns>, what: &str) -> usize {
    let mut c = std::process::Command::new("ip");
    if let Some(ns) = ns {
        c.args(["netns", "exec", &ns.name, "ip"]);
    }
    let out = c.args(["xfrm", what]).output().expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("src"))
        .count()
}

/// This process's user and system CPU so far.
fn rusage() -> (Duration, Duration) {
    // SAFETY: a zeroed rusage is a valid out value.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let d = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (d(r.ru_utime), d(r.ru_stime))
}

/// vpnd's backend alone, in a namespace of this thread's own.
fn backend() -> Vec<Row> {
    std::thread::spawn(|| {
        // SAFETY: affects only this thread (and what it starts).
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let settings = XfrmSettings {
            install_routes: false,
            keep_alive: Duration::ZERO,
            ..XfrmSettings::default()
        };
        let dp = std::sync::Arc::new(XfrmDataplane::new(settings).expect("xfrm"));
        let sas: Vec<SaInstall> = (0..N).map(sa).collect();
        let t = Instant::now();
        let cpu0 = rusage();
        for s in &sas {
            dp.install_sa(s).expect("install");
        }
        let seq_in = t.elapsed();
        let cpu1 = rusage();
        assert_eq!(count(None, "state"), 2 * N);
        assert_eq!(count(None, "policy"), 3 * N);
        let t = Instant::now();
        for s in &sas {
            dp.remove_owner(&s.owner);
        }
        let seq_out = t.elapsed();
        let cpu2 = rusage();
        assert_eq!(count(None, "state") + count(None, "policy"), 0);
        let t = Instant::now();
        std::thread::scope(|sc| {
            for chunk in sas.chunks(N / 16 + 1) {
                let dp = dp.clone();
                sc.spawn(move || {
                    for s in chunk {
                        dp.install_sa(s).expect("install");
                    }
                });
            }
        });
        let par_in = t.elapsed();
        assert_eq!(count(None, "state"), 2 * N);
        let t = Instant::now();
        std::thread::scope(|sc| {
            for chunk in sas.chunks(N / 16 + 1) {
                let dp = dp.clone();
                sc.spawn(move || {
                    for s in chunk {
                        dp.remove_owner(&s.owner);
                    }
                });
            }
        });
        let par_out = t.elapsed();
        assert_eq!(count(None, "state") + count(None, "policy"), 0);
        vec![
            ("vpnd xfrm backend", "install, one after another", seq_in),
            (
                "vpnd xfrm backend",
                "install, one after another: user CPU (vpnd's own)",
                cpu1.0 - cpu0.0,
            ),
            (
                "vpnd xfrm backend",
                "install, one after another: system CPU (the kernel's)",
                cpu1.1 - cpu0.1,
            ),
            (
                "vpnd xfrm backend",
                "remove, one after another: user CPU (vpnd's own)",
                cpu2.0 - cpu1.0,
            ),
            ("vpnd xfrm backend", "remove, one after another", seq_out),
            ("vpnd xfrm backend", "install, 16 threads (batched)", par_in),
            ("vpnd xfrm backend", "remove, 16 threads (batched)", par_out),
        ]
    })
    .join()
    .expect("backend bench")
}

/// The kernel's own floor in this guest: the same 1,000 state pairs and
/// 3,000 policies added and deleted by one `ip -batch` process.
fn ip_batch() -> Row {
    std::thread::spawn(|| {
        // SAFETY: affects only this thread (and what it starts).
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let key = format!("0x{}", "01".repeat(36));
        let mut add = String::new();
        let mut del = String::new();
        for i in 0..N {
            let (l, r) = (host(i, 0), host(i, 1));
            for (src, dst, spi) in [("198.18.0.2", "198.18.0.1", 0xc100_0000 + i), ("198.18.0.1", "198.18.0.2", 0xc200_0000 + i)] {
                add.push_str(&format!("xfrm state add src {src} dst {dst} proto esp spi {spi} reqid {} mode tunnel aead 'rfc4106(gcm(aes))' {key} 128\n", i + 1));
                del.push_str(&format!("xfrm state delete src {src} dst {dst} proto esp spi {spi}\n"));
            }
            for (dir, s, d) in [("out", &l, &r), ("in", &r, &l), ("fwd", &r, &l)] {
                let (ts, td) = if dir == "out" { ("198.18.0.1", "198.18.0.2") } else { ("198.18.0.2", "198.18.0.1") };
                add.push_str(&format!("xfrm policy add src {s}/32 dst {d}/32 dir {dir} tmpl src {ts} dst {td} proto esp reqid {} mode tunnel\n", i + 1));
                del.push_str(&format!("xfrm policy delete src {s}/32 dst {d}/32 dir {dir}\n"));
            }
        }
        let dir = std::env::temp_dir();
        let (a, d) = (dir.join("xfrm-add.batch"), dir.join("xfrm-del.batch"));
        std::fs::write(&a, add).expect("batch");
        std::fs::write(&d, del).expect("batch");
        let t = Instant::now();
        for f in [&a, &d] {
            let ok = std::process::Command::new("ip")
                .arg("-batch")
                .arg(f)
                .status()
                .expect("ip")
                .success();
            assert!(ok, "ip -batch {}", f.display());
        }
        ("ip -batch (the kernel's floor)", "install and remove", t.elapsed())
    })
    .join()
    .expect("ip batch")
}

fn lab(tag: &str) -> (Lab, Ns, Ns) {
    let mut lab = Lab::new(tag);
    let a = lab.ns("a");
    let b = lab.ns("b");
    lab.link(&a, &["198.18.0.1/24"], &b, &["198.18.0.2/24"]);
    (lab, a, b)
}

fn vpnd_config(side: usize, auto: &str) -> String {
    let daemon = "dataplane = \"xfrm\"\ninstall_routes = false\n";
    many::vpnd_config(N, side, auto, daemon, Some(100_000))
}

fn tunnels_vpnd() -> Vec<Row> {
    let (mut lab, a, b) = lab("xbv");
    let vb = Vpnd::start(
        &mut lab,
        &b,
        "vpnd-b",
        &vpnd_config(1, "add"),
        &psk_any(PSK),
        &[],
    );
    let t = Instant::now();
    let va = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(0, "start"),
        &psk_any(PSK),
        &[],
    );
    let up = Lab::wait_until(Duration::from_secs(600), || {
        count(Some(&a), "state") >= 2 * N && count(Some(&b), "state") >= 2 * N
    });
    let took = t.elapsed();
    assert!(up, "vpnd: not all up: {} states", count(Some(&a), "state"));
    let (ca, cb) = (
        cpu(lab.pid("vpnd-a").expect("pid")),
        cpu(lab.pid("vpnd-b").expect("pid")),
    );
    let _ = (&va, &vb);
    let t = Instant::now();
    terminate(&mut lab, "vpnd-a");
    let gone = Lab::wait_until(Duration::from_secs(120), || count(Some(&a), "state") == 0);
    let down = t.elapsed();
    assert!(gone, "vpnd left {} states", count(Some(&a), "state"));
    vec![
        ("vpnd ↔ vpnd", "all installed (wall)", took),
        ("vpnd ↔ vpnd", "CPU, initiator", ca),
        ("vpnd ↔ vpnd", "CPU, responder", cb),
        ("vpnd ↔ vpnd", "SIGTERM until its states are gone", down),
    ]
}

fn tunnels_charon() -> Vec<Row> {
    let (mut lab, a, b) = lab("xbc");
    let conns = |side: usize, start: &str| many::charon_conns(N, side, start, PSK);
    let opts = CharonOptions {
        kernel_esp: true,
        charon_extra: "install_routes = no\ncookie_threshold = 100000\ncookie_threshold_ip = 100000\nblock_threshold = 100000\ninit_limit_half_open = 100000".into(),
        ..Default::default()
    };
    let _cb = Charon::start_with(&mut lab, &b, "charon-b", &conns(1, "none"), &opts);
    let t = Instant::now();
    let _ca = Charon::start_with(&mut lab, &a, "charon-a", &conns(0, "start"), &opts);
    let up = Lab::wait_until(Duration::from_secs(900), || {
        count(Some(&a), "state") >= 2 * N && count(Some(&b), "state") >= 2 * N
    });
    let took = t.elapsed();
    let states = count(Some(&a), "state");
    let (ca, cb) = (
        lab.pid("charon-a").map(cpu).unwrap_or_default(),
        lab.pid("charon-b").map(cpu).unwrap_or_default(),
    );
    let t = Instant::now();
    terminate(&mut lab, "charon-a");
    let gone = Lab::wait_until(Duration::from_secs(120), || count(Some(&a), "state") == 0);
    let down = t.elapsed();
    if !up {
        eprintln!("charon: only {states} of {} states after {took:?}", 2 * N);
    }
    let _ = gone;
    vec![
        ("charon ↔ charon", "all installed (wall)", took),
        ("charon ↔ charon", "CPU, initiator", ca),
        ("charon ↔ charon", "CPU, responder", cb),
        ("charon ↔ charon", "SIGTERM until its states are gone", down),
    ]
}
