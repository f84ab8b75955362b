//! UDP sockets on 500 and 4500 for every listen address and their receive
//! tasks, which hand each datagram to the `router` (non-ESP marker on 4500,
//! RFC 3948 §2.2; SPI demultiplexing; the responder path; malformed
//! datagrams counted and dropped, never a panic).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock, Weak};

use ike::sa::Transmit;
use kernel::Dataplane;
use tokio::net::UdpSocket;

use crate::memnet::MemoryNet;
use crate::router::ActorRouter;

pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;

/// The port 4500 socket: read by the daemon (tokio), or handed to a
/// dataplane that carries ESP-in-UDP and reads it on its own threads. The
/// latter is never registered with tokio's reactor, which would otherwise be
/// woken for every ESP packet.
enum Natt {
    Tokio(Arc<UdpSocket>),
    Dataplane(std::net::UdpSocket),
}

struct Bound {
    ip: IpAddr,
    ike: Arc<UdpSocket>,
    natt: Natt,
}

/// The daemon's IKE sockets, or its link to an in-memory network (tests).
pub struct Sockets {
    bound: Vec<Bound>,
    memory: Option<(Arc<MemoryNet>, Vec<IpAddr>)>,
    /// Where a dataplane delivers IKE datagrams it read (set once the
    /// daemon's router exists).
    target: Arc<OnceLock<Weak<ActorRouter>>>,
}

impl Sockets {
    /// Bind 500 and 4500 on each address (all IPv4 addresses when empty),
    /// offering each 4500 socket to `dataplane`.
    pub async fn bind(
        listen: &[IpAddr],
        dataplane: &Arc<dyn Dataplane>,
    ) -> std::io::Result<Sockets> {
        let addrs: Vec<IpAddr> = if listen.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        } else {
            listen.to_vec()
        };
        let target: Arc<OnceLock<Weak<ActorRouter>>> = Arc::new(OnceLock::new());
        let mut bound = Vec::new();
        for ip in addrs {
            let ike = UdpSocket::bind(SocketAddr::new(ip, IKE_PORT))
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("bind {ip}:{IKE_PORT}: {e}")))?;
            let local = SocketAddr::new(ip, NATT_PORT);
            let natt = dataplane
                .encap()
                .bind_encap_socket(local)
                .and_then(|s| s.set_nonblocking(true).map(|_| s))
                .map_err(|e| std::io::Error::new(e.kind(), format!("bind {local}: {e}")))?;
            for (fd, port) in [(ike.as_raw_fd(), IKE_PORT), (natt.as_raw_fd(), NATT_PORT)] {
                dataplane.encap().prepare_socket(fd).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("socket {ip}:{port}: {e}"))
                })?;
            }
            let t = target.clone();
            let input: kernel::IkeInput = Arc::new(move |local, from, data: &[u8]| {
                if let Some(router) = t.get().and_then(Weak::upgrade) {
                    router.route(local, from, data, true);
                }
            });
            let taken = match natt.try_clone() {
                Ok(dup) => dataplane.encap().attach_encap_socket(local, dup, input),
                Err(e) => {
                    tracing::warn!("cannot share {local} with the dataplane: {e}");
                    false
                }
            };
            let natt = if taken {
                Natt::Dataplane(natt)
            } else {
                Natt::Tokio(Arc::new(UdpSocket::from_std(natt)?))
            };
            bound.push(Bound {
                ip,
                ike: Arc::new(ike),
                natt,
            });
        }
        Ok(Sockets {
            bound,
            target,
            memory: None,
        })
    }

    /// No sockets: datagrams travel over `net`, from and to `addrs`. For
    /// in-process tests of whole daemons.
    pub fn memory(net: Arc<MemoryNet>, addrs: Vec<IpAddr>) -> Sockets {
        Sockets {
            bound: Vec::new(),
            target: Arc::new(OnceLock::new()),
            memory: Some((net, addrs)),
        }
    }

    /// Over an in-memory network (`Sockets::memory`).
    pub fn is_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The addresses we listen on (for picking a source address).
    pub fn addrs(&self) -> Vec<IpAddr> {
        if let Some((_, addrs)) = &self.memory {
            return addrs.clone();
        }
        self.bound.iter().map(|b| b.ip).collect()
    }

    fn pick(&self, local: IpAddr) -> Option<&Bound> {
        self.bound.iter().find(|b| b.ip == local).or_else(|| {
            self.bound
                .iter()
                .find(|b| b.ip.is_unspecified() && b.ip.is_ipv4() == local.is_ipv4())
        })
    }

    /// Send one IKE datagram (with the non-ESP marker when on 4500).
    pub async fn send(&self, t: &Transmit) {
        if let Some((net, _)) = &self.memory {
            net.deliver(t);
            return;
        }
        let Some(b) = self.pick(t.local.ip()) else {
            tracing::warn!(local = %t.local, "no socket bound for this local address");
            return;
        };
        let r = if t.non_esp_marker {
            let d = with_marker(t);
            match &b.natt {
                Natt::Tokio(s) => s.send_to(&d, t.remote).await.map(|_| ()),
                // Non-blocking; a full buffer loses this datagram, which
                // IKE retransmits like any other loss.
                Natt::Dataplane(s) => s.send_to(&d, t.remote).map(|_| ()),
            }
        } else {
            b.ike.send_to(&t.data, t.remote).await.map(|_| ())
        };
        if let Err(e) = r {
            tracing::debug!(remote = %t.remote, "send failed: {e}");
        }
    }

    /// Send one IKE datagram now or not at all (a full socket buffer drops
    /// it): for stateless answers sent from the receive path.
    pub fn try_send(&self, t: &Transmit) {
        if let Some((net, _)) = &self.memory {
            net.deliver(t);
            return;
        }
        let Some(b) = self.pick(t.local.ip()) else {
            return;
        };
        let r = if t.non_esp_marker {
            let d = with_marker(t);
            match &b.natt {
                Natt::Tokio(s) => s.try_send_to(&d, t.remote).map(|_| ()),
                Natt::Dataplane(s) => s.send_to(&d, t.remote).map(|_| ()),
            }
        } else {
            b.ike.try_send_to(&t.data, t.remote).map(|_| ())
        };
        if let Err(e) = r {
            tracing::trace!(remote = %t.remote, "stateless answer not sent: {e}");
        }
    }

    /// Start the receive tasks for the sockets the daemon reads itself. They
    /// end when the runtime shuts down.
    pub fn spawn_readers(&self, router: Arc<ActorRouter>) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = self.target.set(Arc::downgrade(&router));
        if let Some((net, addrs)) = &self.memory {
            for ip in addrs {
                net.attach(*ip, &router);
            }
        }
        let mut tasks = Vec::new();
        for b in &self.bound {
            let mut socks = vec![(b.ike.clone(), false)];
            if let Natt::Tokio(s) = &b.natt {
                socks.push((s.clone(), true));
            }
            for (sock, natt) in socks {
                let router = router.clone();
                let ip = b.ip;
                tasks.push(tokio::spawn(async move {
                    let port = if natt { NATT_PORT } else { IKE_PORT };
                    let local = SocketAddr::new(ip, port);
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match sock.recv_from(&mut buf).await {
                            Ok((n, from)) => {
                                router.route(local, from, &buf[..n], natt);
                            }
                            Err(e) => {
                                tracing::debug!("recv on {local}: {e}");
                            }
                        }
                    }
                }));
            }
        }
        tasks
    }
}

/// The datagram with the non-ESP marker of port 4500 (RFC 3948 §2.2).
fn with_marker(t: &Transmit) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + t.data.len());
    d.extend_from_slice(&[0, 0, 0, 0]);
    d.extend_from_slice(&t.data);
    d
}
