//! Test tool: capture one outgoing ESP-in-UDP packet on an interface and
//! inject replays and tampered copies of it towards the same peer.
//!
//! `esp-inject IFACE REPLAYS TAMPERED` (run inside the sender's namespace
//! with `ip netns exec`): waits up to 10 s for an IPv4 UDP datagram to port
//! 4500 carrying ESP (non-zero SPI), then sends its payload `REPLAYS` times
//! unchanged (the receiver has seen that sequence number: replays) and
//! `TAMPERED` times with the sequence number moved far ahead (inside the
//! window but covered by the ICV: integrity failures). Prints
//! `captured spi=XXXXXXXX seq=N dst=IP` on success; exits 1 otherwise.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const ETH_P_ALL: u16 = 0x0003;
const ETH_HLEN: usize = 14;

fn capture(iface: &str) -> Result<(Ipv4Addr, Vec<u8>), String> {
    let cname = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
    // SAFETY: plain libc calls with valid arguments; the buffer outlives them.
    unsafe {
        let ifindex = libc::if_nametoindex(cname.as_ptr());
        if ifindex == 0 {
            return Err(format!("no interface {iface}"));
        }
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ALL.to_be()),
        );
        if fd < 0 {
            return Err(format!("AF_PACKET: {}", std::io::Error::last_os_error()));
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) < 0
        {
            return Err(format!("bind: {}", std::io::Error::last_os_error()));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n <= 0 {
                continue;
            }
            if let Some(found) = esp_in(&buf[..n as usize]) {
                libc::close(fd);
                return Ok(found);
            }
        }
        libc::close(fd);
        Err("no ESP-in-UDP packet seen within 10 s".into())
    }
}

/// The destination and UDP payload of an Ethernet/IPv4/UDP:4500 ESP frame.
fn esp_in(frame: &[u8]) -> Option<(Ipv4Addr, Vec<u8>)> {
    let ip = frame.get(ETH_HLEN..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let payload = udp.get(8..len)?;
    // ESP: SPI non-zero, and long enough to be more than a keepalive.
    (dport == 4500 && payload.len() > 32 && payload[..4] != [0, 0, 0, 0])
        .then(|| (dst, payload.to_vec()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: esp-inject IFACE REPLAYS TAMPERED");
        std::process::exit(2);
    }
    let replays: u32 = args[2].parse().expect("REPLAYS");
    let tampered: u32 = args[3].parse().expect("TAMPERED");
    let (dst, pkt) = match capture(&args[1]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("esp-inject: {e}");
            std::process::exit(1);
        }
    };
    let spi = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
    let seq = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
    println!("captured spi={spi:08x} seq={seq} dst={dst}");
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    let to = SocketAddr::from((dst, 4500));
    // Let the original arrive first, so every copy is a replay.
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..replays {
        sock.send_to(&pkt, to).expect("send");
    }
    for i in 0..tampered {
        let mut t = pkt.clone();
        let s = seq.wrapping_add(100 + i);
        t[4..8].copy_from_slice(&s.to_be_bytes());
        sock.send_to(&t, to).expect("send");
    }
    println!("sent {replays} replays and {tampered} tampered");
}
