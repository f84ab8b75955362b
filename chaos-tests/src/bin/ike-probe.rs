//! ike-probe: drives one `ike::sa::IkeSa` over real UDP sockets (500 and
//! 4500 with the non-ESP marker), so the sans-IO core can be checked against
//! strongSwan without the daemon. Prints one line per event on stdout and
//! exits 0 when the scripted actions all succeeded.
//!
//! ike-probe --role initiator|responder --local ADDR --remote ADDR
//!           --local-id ID --remote-id ID --psk SECRET
//!           [--ike PROPOSAL] [--esp PROPOSAL] [--local-ts TS] [--remote-ts TS]
//!           [--encap] [--then ACTION,...] [--hold SECS] [--timeout SECS]
//! ACTION: rekey-child | rekey-ike | liveness | create-child | delete-child | delete

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::config::{parse_identity, ChildConfig, Mode, PeerConfig, Psk, Retransmit};
use ike::crypto::SystemRandom;
use ike::proposal::ProposalSpec;
use ike::sa::{Accept, Command, Event, IkeSa, Responder};

struct Args {
    initiator: bool,
    local: IpAddr,
    remote: IpAddr,
    config: PeerConfig,
    then: Vec<String>,
    hold: Duration,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut role, mut local, mut remote, mut lid, mut rid, mut psk) =
        (None, None, None, None, None, None);
    let mut ike = "aes256gcm16-prfsha256-x25519".to_string();
    let mut esp = "aes256gcm16".to_string();
    let mut lts = "198.19.1.0/24".to_string();
    let mut rts = "198.19.2.0/24".to_string();
    let (mut encap, mut then, mut hold, mut timeout) = (false, Vec::new(), 0u64, 30u64);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--role" => role = Some(val()?),
            "--local" => local = Some(val()?.parse().map_err(|e| format!("--local: {e}"))?),
            "--remote" => remote = Some(val()?.parse().map_err(|e| format!("--remote: {e}"))?),
            "--local-id" => lid = Some(val()?),
            "--remote-id" => rid = Some(val()?),
            "--psk" => psk = Some(val()?),
            "--ike" => ike = val()?,
            "--esp" => esp = val()?,
            "--local-ts" => lts = val()?,
            "--remote-ts" => rts = val()?,
            "--encap" => encap = true,
            "--then" => then = val()?.split(',').map(str::to_string).collect(),
            "--hold" => hold = val()?.parse().map_err(|e| format!("--hold: {e}"))?,
            "--timeout" => timeout = val()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let id = |s: Option<String>, what| {
        parse_identity(&s.ok_or(format!("{what} is required"))?).map_err(|e| e.to_string())
    };
    let config = PeerConfig {
        name: "probe".into(),
        local_id: id(lid, "--local-id")?,
        remote_id: Some(id(rid, "--remote-id")?),
        psk: Some(Psk::new(psk.ok_or("--psk is required")?.into_bytes())),
        pubkey: None,
        ike_proposals: ProposalSpec::parse_ike_list(&ike).map_err(|e| e.to_string())?,
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ike::ts::parse_ts(&lts).map_err(|e| e.to_string())?],
            remote_ts: vec![ike::ts::parse_ts(&rts).map_err(|e| e.to_string())?],
            esp_proposals: ProposalSpec::parse_esp_list(&esp).map_err(|e| e.to_string())?,
            mode: Mode::Tunnel,
            pfs_required: false,
        }],
        encap,
        retransmit: Retransmit {
            timeout: Duration::from_secs(1),
            tries: 3,
            max_timeout: Duration::from_secs(4),
        },
        initial_contact: true,
        max_child_sas: ike::config::DEFAULT_MAX_CHILD_SAS,
        fragment_size: ike::config::DEFAULT_FRAGMENT_SIZE,
    };
    Ok(Args {
        initiator: match role.as_deref() {
            Some("initiator") => true,
            Some("responder") => false,
            _ => return Err("--role initiator|responder is required".into()),
        },
        local: local.ok_or("--local is required")?,
        remote: remote.ok_or("--remote is required")?,
        config,
        then,
        hold: Duration::from_secs(hold),
        timeout: Duration::from_secs(timeout),
    })
}

type Rx = (SocketAddr, SocketAddr, Vec<u8>);

fn reader(sock: UdpSocket, natt: bool, tx: mpsc::Sender<Rx>) {
    let local = sock.local_addr().expect("local addr");
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return;
        };
        let data = &buf[..n];
        let data = if natt {
            // RFC 3948: IKE on 4500 carries four zero bytes; anything else is
            // ESP (or a one-byte keepalive), not ours to handle here.
            match data.strip_prefix(&[0, 0, 0, 0]) {
                Some(d) => d,
                None => continue,
            }
        } else {
            data
        };
        if tx.send((local, from, data.to_vec())).is_err() {
            return;
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ike-probe: {e}");
            std::process::exit(2);
        }
    };
    let s500 = UdpSocket::bind((args.local, 500)).expect("bind 500");
    let s4500 = UdpSocket::bind((args.local, 4500)).expect("bind 4500");
    let (tx, rx) = mpsc::channel();
    for (s, natt) in [(&s500, false), (&s4500, true)] {
        let s = s.try_clone().expect("clone");
        let tx = tx.clone();
        std::thread::spawn(move || reader(s, natt, tx));
    }
    let config = Arc::new(args.config);
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut sa: Option<IkeSa> = None;
    if args.initiator {
        sa = Some(IkeSa::initiate(
            Instant::now(),
            config.clone(),
            SocketAddr::new(args.local, 500),
            SocketAddr::new(args.remote, 500),
            Box::new(SystemRandom::new()),
            &["net"],
        ));
    }
    let mut actions = args.then.into_iter();
    let mut waiting_for: Option<String> = None;
    let mut established = false;
    let mut hold_until: Option<Instant> = None;
    let mut child_spis: Vec<u32> = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            println!(
                "timeout waiting for {}",
                waiting_for.as_deref().unwrap_or("establishment")
            );
            std::process::exit(1);
        }
        if let Some(h) = hold_until {
            if now >= h {
                println!("done");
                std::process::exit(0);
            }
        }
        // Flush outputs.
        if let Some(s) = sa.as_mut() {
            while let Some(t) = s.poll_transmit() {
                let r = if t.non_esp_marker {
                    let mut d = vec![0u8; 4];
                    d.extend_from_slice(&t.data);
                    s4500.send_to(&d, t.remote)
                } else {
                    s500.send_to(&t.data, t.remote)
                };
                if let Err(e) = r {
                    println!("send error: {e}");
                }
            }
            while let Some(e) = s.poll_event() {
                let line = match &e {
                    Event::Established {
                        proposal,
                        remote_id,
                        ..
                    } => {
                        established = true;
                        format!(
                            "established {} {}",
                            ike::config::display_identity(remote_id),
                            proposal.describe()
                        )
                    }
                    Event::ChildReady(c) => {
                        child_spis.push(c.spi_in);
                        if c.rekey_of.is_some() && waiting_for.as_deref() == Some("rekey-child") {
                            waiting_for = None;
                        }
                        if waiting_for.as_deref() == Some("create-child") {
                            waiting_for = None;
                        }
                        format!(
                            "child {} in={:08x} out={:08x} {} encap={} rekey_of={:?}",
                            c.name,
                            c.spi_in,
                            c.spi_out,
                            c.proposal.describe(),
                            c.encap,
                            c.rekey_of.map(|s| format!("{s:08x}"))
                        )
                    }
                    Event::ChildDeleted { spi_in, reason, .. } => {
                        child_spis.retain(|s| s != spi_in);
                        if waiting_for.as_deref() == Some("delete-child") {
                            waiting_for = None;
                        }
                        format!("child-deleted {spi_in:08x} {reason}")
                    }
                    Event::IkeRekeyed { spi_i, spi_r, .. } => {
                        if waiting_for.as_deref() == Some("rekey-ike") {
                            waiting_for = None;
                        }
                        format!("ike-rekeyed {spi_i:016x} {spi_r:016x}")
                    }
                    Event::Alive => {
                        if waiting_for.as_deref() == Some("liveness") {
                            waiting_for = None;
                        }
                        "alive".into()
                    }
                    Event::Closed { reason, .. } => {
                        println!("closed {reason}");
                        let ok = waiting_for.as_deref() == Some("delete");
                        std::process::exit(if ok { 0 } else { 1 });
                    }
                    Event::ChildFailed { name, reason } => format!("child-failed {name}: {reason}"),
                    other => format!("{other:?}"),
                };
                println!("{line}");
            }
            // Next action once the previous one completed.
            if established && waiting_for.is_none() && hold_until.is_none() {
                match actions.next() {
                    Some(a) => {
                        let cmd = match a.as_str() {
                            "rekey-child" => child_spis
                                .last()
                                .map(|s| Command::RekeyChild { spi_in: *s }),
                            "rekey-ike" => Some(Command::RekeyIke),
                            "liveness" => Some(Command::Liveness),
                            "create-child" => Some(Command::CreateChild { name: "net".into() }),
                            "delete-child" => child_spis
                                .last()
                                .map(|s| Command::DeleteChild { spi_in: *s }),
                            "delete" => Some(Command::Delete),
                            other => {
                                println!("unknown action {other}");
                                std::process::exit(2);
                            }
                        };
                        let Some(cmd) = cmd else {
                            println!("no child SA for {a}");
                            std::process::exit(1);
                        };
                        println!("action {a}");
                        waiting_for = Some(a);
                        s.handle_command(Instant::now(), cmd);
                        continue;
                    }
                    None => {
                        println!("actions complete");
                        hold_until = Some(Instant::now() + args.hold);
                    }
                }
            }
        }
        let wake = sa
            .as_ref()
            .and_then(|s| s.poll_timeout())
            .unwrap_or(now + Duration::from_millis(100))
            .min(now + Duration::from_millis(100));
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok((local, remote, data)) => {
                let now = Instant::now();
                match sa.as_mut() {
                    Some(s) => {
                        if let Err(e) = s.handle_datagram(now, local, remote, &data) {
                            println!("rejected: {e}");
                        }
                    }
                    None => {
                        let params = Responder {
                            local,
                            remote,
                            candidates: ike::sa::Candidates::one(config.clone()),
                            require_cookie: None,
                        };
                        match IkeSa::accept(now, params, Box::new(SystemRandom::new()), &data) {
                            Accept::Created(s) => sa = Some(*s),
                            Accept::Reply(t, why) => {
                                println!("stateless reply: {why}");
                                let _ = s500.send_to(&t.data, t.remote);
                            }
                            Accept::Ignore(why) => println!("ignored: {why}"),
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(s) = sa.as_mut() {
                    if s.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                        s.handle_timeout(Instant::now());
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
