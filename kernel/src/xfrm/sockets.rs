//! The daemon's IKE sockets on a kernel-ESP host: each gets per-socket
//! bypass policies (IKE itself never goes through an IPsec policy, however
//! wide the selectors), and the port-4500 sockets are marked
//! `UDP_ENCAP_ESPINUDP` so the kernel takes ESP-in-UDP off them (RFC 3948).

use std::io;
use std::os::fd::RawFd;

use netlink_packet_core::Emitable;
use netlink_packet_xfrm::{
    UserPolicyInfo, AF_INET, AF_INET6, XFRM_POLICY_ALLOW, XFRM_POLICY_IN, XFRM_POLICY_OUT,
};

use crate::EncapSockets;

/// Missing from libc for linux-gnu.
const UDP_ENCAP: libc::c_int = 100;
const UDP_ENCAP_ESPINUDP: libc::c_int = 2;
const IP_XFRM_POLICY: libc::c_int = 17;
const IPV6_XFRM_POLICY: libc::c_int = 35;
const NATT_PORT: u16 = 4500;

/// The port-4500 sockets (duplicated descriptors), for NAT keepalives.
#[derive(Default)]
pub struct KernelSockets {
    natt: std::sync::Mutex<Vec<(std::net::SocketAddr, std::os::fd::OwnedFd)>>,
}

impl KernelSockets {
    /// Sends one NAT keepalive (a single 0xFF byte, RFC 3948 §2.3) from
    /// the port-4500 socket bound to `local` (or to the wildcard address).
    pub fn keepalive(&self, local: std::net::SocketAddr, remote: std::net::SocketAddr) -> bool {
        let natt = self.natt.lock().unwrap_or_else(|p| p.into_inner());
        let fd = natt.iter().find(|(a, _)| *a == local).or_else(|| {
            natt.iter().find(|(a, _)| {
                a.ip().is_unspecified()
                    && a.port() == local.port()
                    && a.is_ipv4() == local.is_ipv4()
            })
        });
        let Some((_, fd)) = fd else { return false };
        let fd = std::os::fd::AsRawFd::as_raw_fd(fd);
        let sock = std::mem::ManuallyDrop::new(
            // SAFETY: `fd` stays open (owned by `natt`, locked) while this
            // borrowed socket, which never closes it, is used.
            unsafe { <std::net::UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) },
        );
        sock.send_to(&[0xff], remote).is_ok()
    }
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: `val` is valid for its length for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's address.
fn local(fd: RawFd) -> io::Result<std::net::SocketAddr> {
    // SAFETY: storage is large enough for any address; len says so.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(&ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok((ip, u16::from_be(a.sin_port)).into())
        }
        _ => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(&ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok((ip, u16::from_be(a.sin6_port)).into())
        }
    }
}

/// The `xfrm_userpolicy_info` of a per-socket bypass policy.
pub fn bypass(v6: bool, dir: u8) -> Vec<u8> {
    let mut p = UserPolicyInfo {
        direction: dir,
        action: XFRM_POLICY_ALLOW,
        ..UserPolicyInfo::default()
    };
    p.selector.family = if v6 { AF_INET6 } else { AF_INET };
    let mut buf = vec![0u8; p.buffer_len()];
    p.emit(&mut buf);
    buf
}

impl EncapSockets for KernelSockets {
    fn prepare_socket(&self, fd: RawFd) -> io::Result<()> {
        let addr = local(fd)?;
        let (v6, port) = (addr.is_ipv6(), addr.port());
        let (level, name) = if v6 {
            (libc::IPPROTO_IPV6, IPV6_XFRM_POLICY)
        } else {
            (libc::IPPROTO_IP, IP_XFRM_POLICY)
        };
        for dir in [XFRM_POLICY_IN, XFRM_POLICY_OUT] {
            setsockopt(fd, level, name, &bypass(v6, dir))?;
        }
        if port == NATT_PORT {
            setsockopt(
                fd,
                libc::IPPROTO_UDP,
                UDP_ENCAP,
                &UDP_ENCAP_ESPINUDP.to_ne_bytes(),
            )?;
            // SAFETY: `fd` is an open socket; the duplicate is owned here.
            let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            self.natt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((addr, dup));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_policies_are_the_kernels_struct_size() {
        assert_eq!(bypass(false, XFRM_POLICY_IN).len(), 168);
    }

    #[test]
    fn ike_sockets_get_bypass_and_encap() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        KernelSockets::default().prepare_socket(fd).unwrap();
    }
}
