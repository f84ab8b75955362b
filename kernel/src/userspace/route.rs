//! Routes into the userspace dataplane's TUN device.
//!
//! The userspace ESP dataplane routes the remote traffic selectors of its
//! CHILD SAs into its TUN device. This module does the few rtnetlink calls
//! that takes: `ip route replace` and `ip route del` over a `NETLINK_ROUTE`
//! socket, each a short blocking round trip that waits for the kernel's ACK.
//!
//! Traffic selectors are address ranges and routes are prefixes, so
//! [`range_to_prefixes`] turns one into the other; [`local_addr_in`] picks
//! the preferred source address of such a route (an address of this host
//! inside the local traffic selector, as strongSwan does).

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// How long to wait for the kernel's answer before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest datagram we read from the socket; ACKs are far smaller.
const RECV_BUF_LEN: usize = 64 * 1024;

/// A `NETLINK_ROUTE` socket that adds and deletes routes in one routing
/// table (main unless [`Routes::with_table`]), and the policy rule that
/// sends unmarked traffic to that table.
///
/// Calls are serialized by an inner lock, so one `Routes` can be shared
/// between threads.
pub struct Routes {
    inner: Mutex<Inner>,
    table: u32,
}

/// The policy routing rule `ip rule add priority P not fwmark M lookup T`:
/// everything this host sends, except packets marked `M` (the daemon's own
/// IKE and ESP-in-UDP sockets), consults table `T` first. This is how a
/// route into the TUN device may cover the peer's own address (transport
/// mode, or a remote selector of 0.0.0.0/0) without capturing the
/// encapsulated packets themselves (strongSwan's `fwmark` options do the
/// same for kernel-libipsec). With `fwmark` 0 it is the plain rule
/// `ip rule add priority P lookup T` (kernel ESP's, as strongSwan's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkRule {
    pub priority: u32,
    pub fwmark: u32,
    pub table: u32,
}

struct Inner {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    /// Opens and binds a `NETLINK_ROUTE` socket in the calling thread's
    /// network namespace.
    pub fn new() -> io::Result<Routes> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        set_recv_timeout(&socket, REPLY_TIMEOUT)?;
        Ok(Routes {
            inner: Mutex::new(Inner { socket, seq: 0 }),
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
        })
    }

    /// Like [`Routes::new`], for routes in `table` (1..=2^32-1; 253, 254
    /// and 255 are default, main and local).
    pub fn with_table(table: u32) -> io::Result<Routes> {
        if table == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "routing table 0 is not a table",
            ));
        }
        let mut r = Routes::new()?;
        r.table = table;
        Ok(r)
    }

    /// The table this socket's routes go to.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// Adds `rule` for IPv4 and IPv6, replacing an identical one left by an
    /// earlier run (a daemon killed with SIGKILL cannot remove its rule).
    pub fn add_rule(&self, rule: MarkRule) -> io::Result<()> {
        for v4 in [true, false] {
            self.del_rule_family(rule, v4)?;
            self.request(
                RouteNetlinkMessage::NewRule(rule_message(rule, v4)),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            )?;
        }
        Ok(())
    }

    /// Removes `rule` (both families); a rule that is not there is `Ok`.
    pub fn del_rule(&self, rule: MarkRule) -> io::Result<()> {
        self.del_rule_family(rule, true)?;
        self.del_rule_family(rule, false)
    }

    fn del_rule_family(&self, rule: MarkRule, v4: bool) -> io::Result<()> {
        loop {
            match self.request(
                RouteNetlinkMessage::DelRule(rule_message(rule, v4)),
                NLM_F_REQUEST | NLM_F_ACK,
            ) {
                Ok(()) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `ip route replace <dst>/<prefix> dev <ifindex> [src <src>] table
    /// <table> proto static`, IPv4 or IPv6 by `dst`.
    ///
    /// Host bits of `dst` beyond `prefix` are cleared. Errors: a `prefix`
    /// longer than the address, or a `src` of the other family, is
    /// `InvalidInput`; a refusal by the kernel is its errno.
    pub fn add(
        &self,
        dst: IpAddr,
        prefix: u8,
        ifindex: u32,
        src: Option<IpAddr>,
    ) -> io::Result<()> {
        if let Some(src) = src {
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "route source and destination of different families",
                ));
            }
        }
        let mut msg = route_message(dst, prefix, ifindex, self.table)?;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        // What iproute2 picks for a route without gateway.
        msg.header.scope = if dst.is_ipv4() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        if let Some(src) = src {
            msg.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
        }
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes the `proto static` route `<dst>/<prefix> dev <ifindex>` from
    /// this socket's table.
    ///
    /// Idempotent: a route that is not there (`ESRCH`, `ENOENT`), or whose
    /// device is gone and with it the route (`ENODEV`), is `Ok`.
    pub fn del(&self, dst: IpAddr, prefix: u8, ifindex: u32) -> io::Result<()> {
        let mut msg = route_message(dst, prefix, ifindex, self.table)?;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        match self.request(
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        ) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends one request and waits for the `NLMSG_ERROR` that acknowledges
    /// (code 0) or refuses it.
    fn request(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        // A poisoned lock only means another caller panicked mid-call; the
        // socket itself stays usable (stale replies are skipped by seq).
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seq = inner.seq.wrapping_add(1);
        let seq = inner.seq;

        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let sent = inner.socket.send(&buf, 0)?;
        if sent != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write on netlink socket",
            ));
        }

        let mut rx: Vec<u8> = Vec::with_capacity(RECV_BUF_LEN);
        loop {
            rx.clear();
            let n = match inner.socket.recv(&mut rx, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel on the netlink socket",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n > rx.len() {
                return Err(invalid_data("truncated netlink datagram"));
            }
            if let Some(result) = find_ack(&rx[..n], seq)? {
                return result;
            }
        }
    }
}

/// Looks through one datagram for the `NLMSG_ERROR` answering `seq`.
/// `Ok(None)`: not in this datagram. `Err`: the datagram does not parse.
fn find_ack(mut data: &[u8], seq: u32) -> io::Result<Option<io::Result<()>>> {
    while !data.is_empty() {
        let nl = NetlinkBuffer::new_checked(data)
            .map_err(|e| invalid_data(format!("bad netlink message: {e}")))?;
        let len = nl.length() as usize;
        let this_seq = nl.sequence_number();
        let msg = &data[..len];
        if this_seq == seq {
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg)
                .map_err(|e| invalid_data(format!("bad netlink message: {e}")))?;
            if let NetlinkPayload::Error(err) = parsed.payload {
                return Ok(Some(match err.code {
                    None => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(code.get().wrapping_neg())),
                }));
            }
        }
        // Messages are 4-byte aligned within a datagram.
        let next = len.saturating_add(3) & !3;
        data = data.get(next..).unwrap_or(&[]);
    }
    Ok(None)
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `priority P not fwmark M lookup T` for one family.
fn rule_message(rule: MarkRule, v4: bool) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.table = u8::try_from(rule.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.action = RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::Priority(rule.priority));
    if rule.fwmark != 0 {
        msg.header.flags = RuleFlags::Invert;
        msg.attributes.push(RuleAttribute::FwMark(rule.fwmark));
        msg.attributes.push(RuleAttribute::FwMask(u32::MAX));
    }
    msg.attributes.push(RuleAttribute::Table(rule.table));
    msg
}

/// The parts common to adding and deleting: family, destination, device,
/// table.
fn route_message(dst: IpAddr, prefix: u8, ifindex: u32, table: u32) -> io::Result<RouteMessage> {
    let dst = mask(dst, prefix).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix} too long for {dst}"),
        )
    })?;
    let mut msg = RouteMessage::default();
    msg.header.address_family = match dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = prefix;
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    if table > 255 {
        msg.attributes.push(RouteAttribute::Table(table));
    }
    if prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    msg.attributes.push(RouteAttribute::Oif(ifindex));
    Ok(msg)
}

/// `addr` with the bits past `prefix` cleared; `None` if `prefix` is longer
/// than the address.
fn mask(addr: IpAddr, prefix: u8) -> Option<IpAddr> {
    let (value, bits) = to_bits(addr);
    if prefix > bits {
        return None;
    }
    let host = host_mask(bits - prefix);
    Some(from_bits(value & !host, addr.is_ipv4()))
}

fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval for the duration of the call and the
    // length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface index of device `name` (`if_nametoindex`).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("device {name}: {e}")));
    }
    Ok(index)
}

/// The address as a number and its width in bits.
fn to_bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn from_bits(value: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

/// A value with the low `host_bits` bits set (`host_bits` ≤ 128).
fn host_mask(host_bits: u8) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// The smallest set of CIDR prefixes exactly covering the inclusive range
/// `[start, end]`, in ascending order.
///
/// For example 198.19.2.0–198.19.2.255 is `[198.19.2.0/24]`, and
/// 10.0.0.1–10.0.0.6 is `[10.0.0.1/32, 10.0.0.2/31, 10.0.0.4/31,
/// 10.0.0.6/32]`. Empty if the two addresses are of different families or
/// `start > end`.
pub fn range_to_prefixes(start: IpAddr, end: IpAddr) -> Vec<(IpAddr, u8)> {
    if start.is_ipv4() != end.is_ipv4() {
        return Vec::new();
    }
    let v4 = start.is_ipv4();
    let (mut cur, bits) = to_bits(start);
    let (end, _) = to_bits(end);
    let mut out = Vec::new();
    while cur <= end {
        // The largest aligned block starting at `cur` that ends by `end`.
        let align = if cur == 0 {
            bits
        } else {
            (cur.trailing_zeros() as u8).min(bits)
        };
        let mut host_bits = align;
        while cur
            .checked_add(host_mask(host_bits))
            .is_none_or(|last| last > end)
        {
            host_bits -= 1;
        }
        out.push((from_bits(cur, v4), bits - host_bits));
        let last = cur + host_mask(host_bits);
        if last == end {
            break;
        }
        cur = last + 1;
    }
    out
}

/// An address configured on this host (`getifaddrs`) inside `[start, end]`:
/// one on a non-loopback interface if there is such, otherwise one on a
/// loopback interface; `None` if there is none or the addresses cannot be
/// read.
pub fn local_addr_in(start: IpAddr, end: IpAddr) -> Option<IpAddr> {
    if start.is_ipv4() != end.is_ipv4() {
        return None;
    }
    let (lo, _) = to_bits(start);
    let (hi, _) = to_bits(end);
    let inside = |a: IpAddr| a.is_ipv4() == start.is_ipv4() && (lo..=hi).contains(&to_bits(a).0);

    let mut fallback = None;
    for (addr, loopback, _) in host_addrs().ok()? {
        if !inside(addr) {
            continue;
        }
        if !loopback {
            return Some(addr);
        }
        fallback.get_or_insert(addr);
    }
    fallback
}

/// The index of the interface that holds `addr`.
pub fn ifindex_of_addr(addr: IpAddr) -> Option<u32> {
    let name = host_addrs()
        .ok()?
        .into_iter()
        .find(|(a, _, _)| *a == addr)?
        .2;
    ifindex(&name).ok()
}

/// Every IPv4 and IPv6 address on this host, with whether its interface is
/// a loopback one and the interface's name.
fn host_addrs() -> io::Result<Vec<(IpAddr, bool, String)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out pointer; on success the list is freed
    // below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet
        // freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0
            || (!ifa.ifa_name.is_null()
                // SAFETY: a non-null ifa_name is a NUL-terminated string.
                && unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() == b"lo");
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose
        // sa_family says which concrete type it is.
        let addr = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        let name = if ifa.ifa_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null ifa_name is a NUL-terminated string.
            unsafe { CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned()
        };
        out.push((addr, loopback, name));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_clears_host_bits() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(mask(a, 8), Some("10.0.0.0".parse().unwrap()));
        assert_eq!(mask(a, 0), Some("0.0.0.0".parse().unwrap()));
        assert_eq!(mask(a, 32), Some(a));
        assert_eq!(mask(a, 33), None);
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(mask(b, 64), Some("2001:db8::".parse().unwrap()));
        assert_eq!(mask(b, 129), None);
    }

    #[test]
    fn find_ack_maps_codes_and_skips_other_seqs() {
        // Two NLMSG_ERROR messages in one datagram: seq 7 (ack), seq 8
        // (EEXIST), each 16 header + 4 code + 16 echoed header.
        fn err(seq: u32, code: i32) -> Vec<u8> {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&2u16.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&code.to_ne_bytes());
            m.extend_from_slice(&[0u8; 16]);
            m
        }
        let mut d = err(7, 0);
        d.extend(err(8, -libc::EEXIST));
        assert!(matches!(find_ack(&d, 7), Ok(Some(Ok(())))));
        let e = find_ack(&d, 8).unwrap().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert!(find_ack(&d, 9).unwrap().is_none());
        // Garbage never panics.
        assert!(find_ack(&d[..10], 7).is_err());
        let mut bad = err(7, 0);
        bad[0] = 200;
        assert!(find_ack(&bad, 7).is_err());
    }
}
