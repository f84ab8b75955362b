//! vpnctl: drive a running vpnd over its control socket.
//!
//! Exit status: 0 done; 1 the operation failed (message on stderr); 2 usage
//! error; 3 daemon not reachable.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use actors::status::{ConnStatus, StatsReport, StatusReport};
use clap::{Parser, Subcommand};
use control::protocol::{Request, Response};

#[derive(Parser, Debug)]
#[command(name = "vpnctl", version, about = "Control a running vpnd")]
struct Args {
    /// vpnd's control socket.
    #[arg(long, global = true, default_value = "/run/vpnd/vpnd.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Connections, IKE SAs and CHILD SAs.
    Status {
        conn: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Establish a connection (waits for the result unless --async).
    Up {
        conn: String,
        #[arg(long)]
        child: Option<String>,
        #[arg(long = "async")]
        no_wait: bool,
    },
    /// Delete a connection's SAs (sends DELETE, waits for the answer).
    Down { conn: String },
    /// Tear a connection down now, whatever its state.
    Kill { conn: String },
    /// Apply new and changed connections from the config, or from one file.
    Load {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Daemon counters.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Stream events.
    Monitor {
        #[arg(long)]
        json: bool,
    },
    /// Fault injection (vpnd --impair only).
    Impair { conn: String, kind: String },
}

fn main() {
    let args = Args::parse();
    let (req, json) = match args.verb {
        Verb::Status { conn, json } => (Request::Status { conn }, json),
        Verb::Up {
            conn,
            child,
            no_wait,
        } => (
            Request::Up {
                conn,
                child,
                no_wait,
            },
            false,
        ),
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
    };
    let stream = match UnixStream::connect(&args.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "vpnctl: vpnd is not reachable at {}: {e}",
                args.socket.display()
            );
            std::process::exit(3);
        }
    };
    let mut w = stream.try_clone().expect("clone socket");
    let line = serde_json::to_string(&req).expect("serialize");
    if writeln!(w, "{line}").is_err() {
        eprintln!("vpnctl: lost the connection to vpnd");
        std::process::exit(3);
    }
    let mut reader = BufReader::new(stream);
    let monitor = req == Request::Monitor;
    loop {
        let mut buf = String::new();
        match reader.read_line(&mut buf) {
            Ok(0) | Err(_) => {
                eprintln!("vpnctl: vpnd closed the connection");
                std::process::exit(3);
            }
            Ok(_) => {}
        }
        let resp: Response = match serde_json::from_str(&buf) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("vpnctl: unreadable answer from vpnd: {e}");
                std::process::exit(1);
            }
        };
        let code = print(resp, json);
        if !monitor {
            std::process::exit(code);
        }
    }
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
    println!("{head}");
    if let Some(e) = &c.last_error {
        println!("  last error: {e}");
    }
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
        if !ike.proposal.is_empty() {
            println!("    {}", ike.proposal);
        }
        if ike.state == "established" || ike.state == "rekeying" {
            println!("    established {} ago", ago(ike.established_secs));
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
            println!("      installed {} ago", ago(ch.installed_secs));
            println!(
                "      in  {}, {:>10} bytes, {:>8} packets",
                ch.spi_in, ch.bytes_in, ch.packets_in
            );
            println!(
                "      out {}, {:>10} bytes, {:>8} packets",
                ch.spi_out, ch.bytes_out, ch.packets_out
            );
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
    println!("malformed datagrams: {}", s.malformed_datagrams_total);
    println!(
        "memory (RSS):        {:.1} MiB",
        s.rss_bytes as f64 / 1048576.0
    );
}
