//! vpnctl: drive a running vpnd over its control socket.
//!
//! Exit status: 0 done; 1 the operation failed (message on stderr); 2 usage
//! error; 3 daemon not reachable.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;

use actors::status::{ConnStatus, StatsReport, StatusReport};
use clap::Parser;
use control::cli::{Verb, VpnctlArgs as Args};
use control::protocol::{Request, Response};

fn main() {
    let args = Args::parse();
    if let Verb::Import {
        file,
        out,
        check,
        secrets,
        format,
        force,
    } = &args.verb
    {
        std::process::exit(import(
            file,
            out,
            *check,
            secrets.as_deref(),
            format.as_deref(),
            *force,
        ));
    }
    let (req, json) = match args.verb {
        Verb::Status { conn, json, kernel } => (Request::Status { conn, kernel }, json),
        Verb::Up {
            all: true, no_wait, ..
        } => std::process::exit(up_all(&args.socket, no_wait)),
        Verb::Up {
            conn,
            child,
            no_wait,
            ..
        } => (
            Request::Up {
                conn: conn.expect("clap requires it"),
                child,
                no_wait,
            },
            false,
        ),
        Verb::Add { conn } => (Request::Add { conn }, false),
        Verb::Delete { conn } => (Request::Delete { conn }, false),
        Verb::Replace { conn } => (Request::Replace { conn }, false),
        Verb::Route { conn } => (Request::Route { conn }, false),
        Verb::Unroute { conn } => (Request::Unroute { conn }, false),
        Verb::Set { conn, settings } => (Request::Set { conn, settings }, false),
        Verb::Rereadsecrets => (Request::RereadSecrets, false),
        Verb::ListCerts { json } => (Request::ListCerts, json),
        Verb::Reload { dry_run } => (Request::Reload { dry_run }, false),
        Verb::Down { conn } => (Request::Down { conn }, false),
        Verb::Kill { conn } => (Request::Kill { conn }, false),
        Verb::Load { file } => (
            Request::Load {
                file: file.map(|f| std::fs::canonicalize(&f).unwrap_or(f)),
            },
            false,
        ),
        Verb::Stats { json } => (Request::Stats, json),
        Verb::Monitor { json } => (Request::Monitor, json),
        Verb::Impair { conn, kind } => (Request::Impair { conn, kind }, false),
        Verb::Import { .. } => unreachable!("handled above"),
    };
    let monitor = req == Request::Monitor;
    let mut conn = connect(&args.socket);
    send(&mut conn, &req);
    if json && matches!(req, Request::Status { .. }) && !std::io::stdout().is_terminal() {
        let line = read_line(&mut conn);
        if let Some(status) = control::protocol::status_json(&line) {
            println!("{status}");
            std::process::exit(0);
        }
        std::process::exit(print(parse(&line), json));
    }
    loop {
        let code = print(receive(&mut conn), json);
        if !monitor {
            std::process::exit(code);
        }
    }
}

type Conn = (UnixStream, BufReader<UnixStream>);

fn connect(socket: &std::path::Path) -> Conn {
    match UnixStream::connect(socket) {
        Ok(s) => {
            let r = BufReader::new(s.try_clone().expect("clone socket"));
            (s, r)
        }
        Err(e) => {
            eprintln!("vpnctl: vpnd is not reachable at {}: {e}", socket.display());
            std::process::exit(3);
        }
    }
}

fn send(conn: &mut Conn, req: &Request) {
    let line = serde_json::to_string(req).expect("serialize");
    if writeln!(conn.0, "{line}").is_err() {
        eprintln!("vpnctl: lost the connection to vpnd");
        std::process::exit(3);
    }
}

fn receive(conn: &mut Conn) -> Response {
    parse(&read_line(conn))
}

fn read_line(conn: &mut Conn) -> String {
    let mut buf = String::new();
    match conn.1.read_line(&mut buf) {
        Ok(0) | Err(_) => {
            eprintln!("vpnctl: vpnd closed the connection");
            std::process::exit(3);
        }
        Ok(_) => buf,
    }
}

fn parse(buf: &str) -> Response {
    match serde_json::from_str(buf) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vpnctl: unreadable answer from vpnd: {e}");
            std::process::exit(1);
        }
    }
}

/// `up --all`: every loaded connection at once, a progress line as each
/// finishes. Exit 1 if any failed.
fn up_all(socket: &std::path::Path, no_wait: bool) -> i32 {
    let mut c = connect(socket);
    send(
        &mut c,
        &Request::Status {
            conn: None,
            kernel: false,
        },
    );
    let names: Vec<String> = match receive(&mut c) {
        Response::Status { status } => status.connections.into_iter().map(|c| c.name).collect(),
        Response::Error { message } => {
            eprintln!("{message}");
            return 1;
        }
        _ => Vec::new(),
    };
    let total = names.len();
    if total == 0 {
        println!("no connections loaded");
        return 0;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for name in names {
        let tx = tx.clone();
        let socket = socket.to_path_buf();
        std::thread::spawn(move || {
            let mut c = connect(&socket);
            send(
                &mut c,
                &Request::Up {
                    conn: name.clone(),
                    child: None,
                    no_wait,
                },
            );
            let _ = tx.send((name, receive(&mut c)));
        });
    }
    drop(tx);
    let (mut done, mut failed) = (0, 0);
    for (name, resp) in rx {
        done += 1;
        match resp {
            Response::Ok { message } => println!("[{done}/{total}] {name}: {message}"),
            Response::Error { message } => {
                failed += 1;
                println!("[{done}/{total}] {name}: FAILED: {message}");
            }
            _ => {}
        }
    }
    println!("{} of {total} up, {failed} failed", total - failed);
    i32::from(failed > 0)
}

fn print(resp: Response, json: bool) -> i32 {
    match resp {
        Response::Ok { message } => {
            println!("{message}");
            0
        }
        Response::Error { message } => {
            eprintln!("{message}");
            1
        }
        Response::Status { status } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&status).expect("json"));
            } else {
                print_status(&status);
            }
            0
        }
        Response::Stats { stats } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
            } else {
                print_stats(&stats);
            }
            0
        }
        Response::Certs { certs } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&certs).expect("json"));
            } else {
                print!("{}", control::certlist::render_text(&certs));
            }
            0
        }
        Response::Event { event } => {
            if json {
                println!("{}", serde_json::to_string(&event).expect("json"));
            } else {
                println!(
                    "{:>9.3}s {:<10} {:<14} {}",
                    event.t,
                    event.kind,
                    event.conn.as_deref().unwrap_or("-"),
                    event.message
                );
            }
            let _ = std::io::stdout().flush();
            0
        }
    }
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s => format!("{} hours", s / 3600),
    }
}

fn print_conn(c: &ConnStatus) {
    let mut head = format!("{}: auto={}", c.name, c.auto);
    if c.routed {
        head.push_str(", routed");
    }
    if c.failed_attempts > 0 {
        head.push_str(&format!(", {} failed attempt(s)", c.failed_attempts));
    }
    if let Some(n) = c.next_retry_secs {
        head.push_str(&format!(", next attempt in {n:.1}s"));
    }
    if c.gave_up.is_some() {
        head.push_str(", gave up");
    }
    println!("{head}");
    if let Some(g) = &c.gave_up {
        println!("  gave up: {g}");
    }
    if let Some(e) = c
        .last_error
        .as_ref()
        .filter(|e| Some(*e) != c.gave_up.as_ref())
    {
        println!("  last error: {e}");
    }
    println!(
        "  retry: keyingtries {}, base {}ms, max {}ms; retransmit {}ms x{}; dpd {}ms",
        c.keyingtries,
        c.retry_base_ms,
        c.retry_max_ms,
        c.retransmit_timeout_ms,
        c.retransmit_tries,
        c.dpd_delay_ms
    );
    for ike in &c.ike_sas {
        println!(
            "  #{}, {}, IKEv2, {}_i{} {}_r{}",
            ike.id,
            ike.state.to_uppercase(),
            ike.spi_i,
            if ike.initiator { "*" } else { "" },
            ike.spi_r,
            if ike.initiator { "" } else { "*" }
        );
        println!("    local  '{}' @ {}", ike.local_id, ike.local);
        println!("    remote '{}' @ {}", ike.remote_id, ike.remote);
        if let Some(cert) = &ike.remote_cert {
            println!("    remote certificate '{cert}'");
        }
        if !ike.proposal.is_empty() {
            println!("    {}", ike.proposal);
        }
        if ike.state == "established" || ike.state == "rekeying" {
            match ike.rekey_secs {
                Some(r) => println!(
                    "    established {} ago, rekeying in {}",
                    ago(ike.established_secs),
                    ago(r)
                ),
                None => println!("    established {} ago", ago(ike.established_secs)),
            }
        }
        for ch in &ike.child_sas {
            println!(
                "    {}: reqid {}, {}, {}{}, ESP:{}",
                ch.name,
                ch.reqid,
                ch.state.to_uppercase(),
                ch.mode,
                if ike.encap { "-in-UDP" } else { "" },
                ch.proposal
            );
            match ch.rekey_secs {
                Some(r) => println!(
                    "      installed {} ago, rekeying in {}",
                    ago(ch.installed_secs),
                    ago(r)
                ),
                None => println!("      installed {} ago", ago(ch.installed_secs)),
            }
            println!(
                "      in  {}, {:>10} bytes, {:>8} packets",
                ch.spi_in, ch.bytes_in, ch.packets_in
            );
            println!(
                "      out {}, {:>10} bytes, {:>8} packets",
                ch.spi_out, ch.bytes_out, ch.packets_out
            );
            if ch.replay_drops + ch.integrity_failures > 0 {
                println!(
                    "      dropped: {} replayed, {} failed integrity",
                    ch.replay_drops, ch.integrity_failures
                );
            }
            println!("      local  {}", ch.local_ts.join(" "));
            println!("      remote {}", ch.remote_ts.join(" "));
        }
    }
}

fn print_status(s: &StatusReport) {
    if s.connections.is_empty() {
        println!("no connections loaded");
    }
    for c in &s.connections {
        print_conn(c);
    }
    if !s.kernel_unknown.is_empty() {
        println!("kernel state vpnd did not install:");
        for l in &s.kernel_unknown {
            println!("  {l}");
        }
    }
}

fn print_stats(s: &StatsReport) {
    println!("actors:              {}", s.actors);
    println!("restarts:            {}", s.restarts_total);
    println!("connections:         {}", s.connections);
    println!(
        "IKE SAs:             {} ({} half-open)",
        s.ike_sas, s.half_open
    );
    println!(
        "CHILD SAs:           {} (dataplane {})",
        s.child_sas, s.dataplane
    );
    println!(
        "key computations:    {} total, {} queued, {} in flight, limit {}/s",
        s.scheduler.key_computations_total,
        s.scheduler.queued,
        s.scheduler.in_flight,
        s.scheduler.rate_limit_per_sec
    );
    println!(
        "malformed datagrams: {} ({} for unknown IKE SPIs)",
        s.malformed_datagrams_total, s.unknown_spi_total
    );
    let a = &s.admission;
    println!(
        "IKE_SA_INIT:         {} new requests, {} half-open responders",
        a.requests_total, a.half_open
    );
    println!(
        "  cookies:           {} sent, {} valid, {} invalid",
        a.cookies_sent_total, a.cookies_valid_total, a.cookies_invalid_total
    );
    println!(
        "  dropped:           {} half_open_max, {} block_threshold, {} backlog, {} shed, {} unmatched",
        a.dropped_half_open_max_total,
        a.dropped_block_threshold_total,
        a.dropped_backlog_total,
        a.shed_total,
        a.unmatched_total
    );
    println!("traps:               {}", s.traps);
    println!(
        "updown scripts:      {} runs, {} failed",
        s.updown_runs_total, s.updown_failures_total
    );
    for (k, v) in &s.dataplane_counters {
        println!("{:<21}{v}", format!("{k}:"));
    }
    println!(
        "memory (RSS):        {:.1} MiB",
        s.rss_bytes as f64 / 1048576.0
    );
}

/// `import`: convert, print the report, write unless `check`. Exit 1 when
/// the input has errors (nothing is written then).
fn import(
    file: &std::path::Path,
    out: &std::path::Path,
    check: bool,
    secrets: Option<&std::path::Path>,
    format: Option<&str>,
    force: bool,
) -> i32 {
    use control::import::{self, Format, WriteOptions};
    let format = format.map(|f| match f {
        "ipsec" => Format::Ipsec,
        _ => Format::Swanctl,
    });
    let result = match import::import(file, format, secrets) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("vpnctl: nothing written");
            return 1;
        }
    };
    print!("{}", result.report());
    if check {
        println!("--check: nothing written");
        return 0;
    }
    match result.write(&WriteOptions {
        dir: out.to_path_buf(),
        force,
    }) {
        Ok(w) => {
            for p in &w.connections {
                println!("wrote {}", p.display());
            }
            println!("wrote {} (mode 0600)", w.secrets.display());
            println!(
                "vpnd.toml (in {}) needs: [daemon] include = [\"conf.d/*.toml\"] and secrets = [\"secrets.toml\"]",
                out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
