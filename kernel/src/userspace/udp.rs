//! Batched UDP I/O for ESP-in-UDP on a borrowed, non-blocking socket:
//! `recvmmsg(2)` and `sendmmsg(2)` into and from caller buffers. The
//! `mmsghdr`/`iovec` arrays live on the stack and are rebuilt per call
//! (cheap), so callers may reorder their buffers freely between calls.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, RawFd};

/// Datagrams moved per system call at most.
pub const BATCH: usize = 64;

/// Converts a kernel socket address; `None` for families we do not use.
fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `ss` and returns the length to pass to the kernel.
fn to_storage(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr; we write a sockaddr_in into it.
            let sin = unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Sends `pkts[i]` to `dsts[i]` for every `i` in batches, one datagram per
/// message. Returns how many were handed to the kernel; a full socket
/// buffer is waited on briefly (`poll`, 5 ms at a time, at most 10 times)
/// before the rest is given up.
pub fn send_batch<B: AsRef<[u8]>>(fd: RawFd, pkts: &[B], dsts: &[SocketAddr]) -> usize {
    // Runs of one datagram carry no UDP_SEGMENT: this cannot fail.
    send_runs(fd, pkts, dsts, 1).unwrap_or(0)
}

const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (Linux 4.18): send one buffer as many equal datagrams.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (Linux 5.0): receive coalesced datagrams with their size.
const UDP_GRO: libc::c_int = 104;
/// Most segments one GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes one GSO send may carry (an IPv4 datagram's limit, minus
/// headers).
pub const GSO_MAX_BYTES: usize = 65000;
/// Room for one `int` control message, as u64s for alignment.
const CMSG_WORDS: usize = 4;

/// Asks the kernel to hand over coalesced datagrams (`UDP_GRO`); `false`
/// when unsupported (each datagram then arrives alone).
pub fn enable_gro(fd: RawFd) -> bool {
    setsockopt_int(fd, SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Receives up to `bufs.len().min(BATCH)` datagrams (`WouldBlock` when
/// none is waiting). Each buffer is cleared and filled with what arrived,
/// at most `cap` bytes (its capacity is reserved once, so this never
/// allocates, and nothing is zero-filled: the kernel writes the bytes);
/// `froms[i]` gets its source. With `UDP_GRO` on the socket, `segs[i]` is the size of
/// the equal-sized datagrams buffer `i` holds back to back (the last one may
/// be shorter), or its whole length when it holds one.
pub fn recv_batch_gro(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    cap: usize,
    froms: &mut [Option<SocketAddr>],
    segs: &mut [usize],
) -> io::Result<usize> {
    let n = bufs.len().min(froms.len()).min(segs.len()).min(BATCH);
    // SAFETY: plain C structs for which all-zero is a valid value.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut ctrl = [[0u64; CMSG_WORDS]; BATCH];
    for i in 0..n {
        bufs[i].clear();
        bufs[i].reserve(cap);
        iov[i] = libc::iovec {
            iov_base: bufs[i].spare_capacity_mut().as_mut_ptr().cast(),
            iov_len: cap,
        };
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        h.msg_control = ctrl[i].as_mut_ptr().cast();
        h.msg_controllen = size_of::<[u64; CMSG_WORDS]>();
    }
    // SAFETY: every msghdr points at live buffers of the stated lengths.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for i in 0..got {
        let len = (msgs[i].msg_len as usize).min(cap);
        // SAFETY: the kernel wrote `len` bytes (at most `cap`, within the
        // reserved capacity) at the start of the buffer.
        unsafe { bufs[i].set_len(len) };
        froms[i] = from_storage(&addrs[i]);
        segs[i] = len;
        let h = &msgs[i].msg_hdr;
        // SAFETY: walking the control buffer the kernel filled, within
        // msg_controllen, with the libc CMSG macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let mut v: libc::c_int = 0;
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(c),
                        (&mut v as *mut libc::c_int).cast(),
                        size_of::<libc::c_int>(),
                    );
                    if v > 0 {
                        segs[i] = (v as usize).min(len.max(1));
                    }
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
    }
    Ok(got)
}

/// Sends `pkts[i]` to `dsts[i]`, coalescing runs of equal-sized datagrams
/// to the same destination into one `UDP_SEGMENT` send each (the last of a
/// run may be shorter), many sends per `sendmmsg`. Returns the datagrams
/// handed to the kernel; `Err` only if the kernel refuses segmentation
/// itself (the caller then falls back to [`send_batch`]).
pub fn send_batch_gso<B: AsRef<[u8]>>(
    fd: RawFd,
    pkts: &[B],
    dsts: &[SocketAddr],
) -> io::Result<usize> {
    send_runs(fd, pkts, dsts, GSO_MAX_SEGMENTS)
}

/// The send loop of [`send_batch`] and [`send_batch_gso`]: runs of at most
/// `max_run` datagrams, each run one message.
fn send_runs<B: AsRef<[u8]>>(
    fd: RawFd,
    pkts: &[B],
    dsts: &[SocketAddr],
    max_run: usize,
) -> io::Result<usize> {
    let total = pkts.len().min(dsts.len());
    // Runs: (start, count, segment size).
    let mut done = 0;
    let mut sent = 0;
    let mut waits = 0;
    while done < total {
        // SAFETY: plain C structs; all-zero is valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iov: [libc::iovec; BATCH * 4] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut ctrl = [[0u64; CMSG_WORDS]; BATCH];
        let mut counts = [0usize; BATCH];
        let mut m = 0;
        let mut k = 0; // iovecs used
        let mut i = done;
        while i < total && m < BATCH && k < iov.len() {
            let size = pkts[i].as_ref().len();
            let mut j = i;
            let mut bytes = 0;
            while j < total
                && j - i < max_run
                && k + (j - i) < iov.len()
                && dsts[j] == dsts[i]
                && bytes + pkts[j].as_ref().len() <= GSO_MAX_BYTES
            {
                let l = pkts[j].as_ref().len();
                if l > size {
                    break;
                }
                bytes += l;
                j += 1;
                if l < size {
                    break; // a shorter datagram ends the run
                }
            }
            let count = j - i;
            for (x, p) in pkts[i..j].iter().enumerate() {
                let p = p.as_ref();
                iov[k + x] = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
            }
            let len = to_storage(&dsts[i], &mut addrs[m]);
            let h = &mut msgs[m].msg_hdr;
            h.msg_name = (&mut addrs[m] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = len;
            h.msg_iov = &mut iov[k];
            h.msg_iovlen = count;
            if count > 1 {
                h.msg_control = ctrl[m].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE of an int fits in CMSG_WORDS u64s; the
                // header is written through the libc macros.
                unsafe {
                    h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    let seg = size as u16;
                    std::ptr::copy_nonoverlapping(
                        (&seg as *const u16).cast::<u8>(),
                        libc::CMSG_DATA(c),
                        size_of::<u16>(),
                    );
                }
            }
            counts[m] = count;
            m += 1;
            k += count;
            i = j;
        }
        // SAFETY: the msghdrs point at live buffers; the kernel only reads.
        let r =
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), m as libc::c_uint, libc::MSG_DONTWAIT) };
        if r > 0 {
            let r = r as usize;
            let d: usize = counts[..r].iter().sum();
            sent += d;
            done += d;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock if waits < 10 => {
                waits += 1;
                wait_writable(fd);
            }
            io::ErrorKind::Interrupted => {}
            _ if matches!(
                err.raw_os_error(),
                Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT)
            ) && counts[0] > 1 =>
            {
                return Err(err);
            }
            _ => {
                tracing::trace!("sendmmsg to {}: {err}", dsts[done]);
                done += counts[0];
            }
        }
        if waits >= 10 {
            break;
        }
    }
    Ok(sent)
}

/// Waits up to 5 ms for room in `fd`'s send buffer.
fn wait_writable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 5) };
}

/// Sends one datagram (control-path use: keepalives, flushed queues).
pub fn send_one(fd: RawFd, pkt: &[u8], dst: SocketAddr) -> io::Result<()> {
    if send_batch(fd, &[pkt], &[dst]) == 1 {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WouldBlock, "send failed"))
    }
}

/// A UDP socket bound to `local` with `SO_REUSEPORT`, so that sibling
/// sockets (made the same way) may bind the same address and port; close on
/// exec, blocking.
pub fn bind_reuseport(local: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let sock = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = to_storage(&local, &mut storage);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let r = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Whether `SO_REUSEPORT` is set on `fd`.
pub fn reuseport(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid int option buffer of the stated size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && v != 0
}

/// Steers each datagram arriving at `fd`'s `SO_REUSEPORT` group to the
/// group's socket number `SPI mod n` (sockets are numbered in bind order):
/// the classic BPF program loads the first 32-bit word of the UDP payload
/// (an ESP packet's SPI; 0 for IKE's non-ESP marker, and a keepalive too
/// short to load also yields 0), takes it modulo `n` and returns it. Every
/// SA's packets thus meet one socket (one reader: never reordered) while
/// different SAs, of one peer or many, spread over the group.
pub fn steer_by_spi(fd: RawFd, n: u32) -> io::Result<()> {
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no sockets"));
    }
    let prog = [
        // A = payload[0..4] (the kernel pulls the UDP header first).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: n,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel
    // copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SO_MARK`: the firewall mark of everything sent on `fd`.
pub fn set_mark(fd: RawFd, mark: u32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, mark as libc::c_int)
}

/// Sets a socket buffer size: `force` (`SO_*BUFFORCE`, beyond the sysctl
/// limit; needs CAP_NET_ADMIN), else `opt` (capped by the sysctl); best
/// effort.
pub fn set_buffer(fd: RawFd, force: libc::c_int, opt: libc::c_int, bytes: usize) {
    for o in [force, opt] {
        if setsockopt_int(fd, libc::SOL_SOCKET, o, bytes as libc::c_int).is_ok() {
            return;
        }
    }
}
