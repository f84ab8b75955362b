//! Batched UDP I/O for ESP-in-UDP on a borrowed, non-blocking socket:
//! `recvmmsg(2)` and `sendmmsg(2)` into and from caller buffers. The
//! `mmsghdr`/`iovec` arrays live on the stack and are rebuilt per call
//! (cheap), so callers may reorder their buffers freely between calls.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

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

/// Receives up to `bufs.len().min(BATCH)` datagrams. Each buffer is resized
/// to `cap` (callers reserve that capacity once, so this never allocates)
/// and truncated to the datagram; `froms[i]` gets its source. Returns how
/// many arrived; `WouldBlock` when none is waiting.
pub fn recv_batch(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    cap: usize,
    froms: &mut [Option<SocketAddr>],
) -> io::Result<usize> {
    let n = bufs.len().min(froms.len()).min(BATCH);
    // SAFETY: plain C structs for which all-zero is a valid value.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for i in 0..n {
        bufs[i].resize(cap, 0);
        iov[i] = libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: cap,
        };
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
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
        // Truncated datagrams (MSG_TRUNC) are cut to `cap` and fail their
        // integrity check later.
        bufs[i].truncate(len);
        froms[i] = from_storage(&addrs[i]);
    }
    Ok(got)
}

/// Sends `pkts[i]` to `dsts[i]` for every `i` in batches. Returns how many
/// were handed to the kernel; a full socket buffer is waited on briefly
/// (`poll`, 5 ms at a time, at most 10 times) before the rest is given up.
pub fn send_batch<B: AsRef<[u8]>>(fd: RawFd, pkts: &[B], dsts: &[SocketAddr]) -> usize {
    let total = pkts.len().min(dsts.len());
    let mut sent = 0;
    let mut waits = 0;
    while sent < total {
        let n = (total - sent).min(BATCH);
        // SAFETY: plain C structs; all-zero is valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..n {
            let p = pkts[sent + i].as_ref();
            iov[i] = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
            let len = to_storage(&dsts[sent + i], &mut addrs[i]);
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = len;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the msghdrs point at live buffers; the kernel only reads.
        let r =
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if r > 0 {
            sent += r as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock if waits < 10 => {
                waits += 1;
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 5) };
            }
            io::ErrorKind::Interrupted => {}
            _ => {
                // Unreachable destination and the like: skip that datagram.
                tracing::trace!("sendmmsg to {}: {err}", dsts[sent]);
                sent += 1;
            }
        }
        if waits >= 10 {
            break;
        }
    }
    sent
}

/// Sends one datagram (control-path use: keepalives, flushed queues).
pub fn send_one(fd: RawFd, pkt: &[u8], dst: SocketAddr) -> io::Result<()> {
    if send_batch(fd, &[pkt], &[dst]) == 1 {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WouldBlock, "send failed"))
    }
}

/// Sets a socket buffer size (`SO_SNDBUF`/`SO_RCVBUF`); best effort.
pub fn set_buffer(fd: RawFd, opt: libc::c_int, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: a valid int option value of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
