//! The `userspace` dataplane: ESP-in-UDP (RFC 3948) over a multi-queue TUN
//! device, no kernel IPsec needed.
//!
//! - **Tables** (`table`, one `RwLock`, read once per batch on the hot
//!   path): the SPD (protect policies by reqid, trap policies), the current
//!   outbound SA of every reqid, the inbound SAs by SPI, lifetimes and
//!   drains. Each SA half has its own `Mutex`, so two workers only meet on
//!   the same SA. Packets held for traps are in `hold`.
//! - **Workers** (`worker`, one thread per CPU by default): each owns one
//!   TUN queue and per-worker buffers, and polls its queue and the UDP/4500
//!   sockets the daemon handed over.
//! - **Housekeeping** thread (`housekeeping`): the clock of lifetimes,
//!   drains and held packets, and NAT keepalives.
//! - **Routes** for every installed SA's and trap's remote selectors point
//!   into the TUN device (source: a local address inside the local
//!   selector), reference-counted by the tables and removed with the last
//!   user.
//!
//! This module puts them together behind [`Dataplane`], [`EncapSockets`]
//! (it takes the daemon's port-4500 sockets over) and [`FaultInjection`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::hold::Holds;
use super::route::{self, Routes};
use super::table::{child_key, lock, NewSa, OutSa, RouteOp, RouteOps, Tables, BACKEND};
use super::{housekeeping, udp, worker};
use crate::{
    Dataplane, DataplaneError, DataplaneEvent, EncapSockets, FailNext, FaultInjection, IkeInput,
    InstalledSa, SaCounters, SaInstall, Trap,
};

/// Per-worker output buffer capacity (an ESP packet of an MTU-sized inner).
pub(super) const TX_CAP: usize = 2048;

/// Settings of the userspace dataplane.
#[derive(Clone, Debug)]
pub struct UserspaceOptions {
    /// TUN device name.
    pub tun: String,
    /// Worker threads (0: one per CPU).
    pub workers: usize,
    /// MTU of the TUN device: the veth/ethernet MTU minus ESP-in-UDP
    /// overhead (IPv6 outer: 85 bytes).
    pub mtu: u16,
    /// NAT keepalive interval (RFC 3948 §2.3); zero disables.
    pub keep_alive: Duration,
    /// How long packets that hit a trap are held for the SA.
    pub trap_hold: Duration,
    /// TSO/GRO offload on the TUN device (virtio-net header).
    pub offload: bool,
    /// Routing table of the routes into the TUN device.
    pub route_table: u32,
    /// Firewall mark of the daemon's IKE sockets; a policy rule sends all
    /// traffic without it to `route_table` first.
    pub fwmark: u32,
}

/// Names of the per-worker receive counters in `vpnctl stats`.
const WORKER_RX: [&str; 8] = [
    "esp_rx_packets_worker0",
    "esp_rx_packets_worker1",
    "esp_rx_packets_worker2",
    "esp_rx_packets_worker3",
    "esp_rx_packets_worker4",
    "esp_rx_packets_worker5",
    "esp_rx_packets_worker6",
    "esp_rx_packets_worker7",
];

/// Priority of the `not fwmark` rule (strongSwan's is 220 too).
pub const RULE_PRIORITY: u32 = 220;

impl Default for UserspaceOptions {
    fn default() -> Self {
        UserspaceOptions {
            tun: "vpnd0".into(),
            workers: 0,
            mtu: 1400,
            keep_alive: Duration::from_secs(20),
            trap_hold: Duration::from_secs(5),
            offload: true,
            route_table: 220,
            fwmark: 0x220,
        }
    }
}

/// A UDP/4500 socket the daemon handed over.
pub(super) struct Sock {
    pub(super) local: SocketAddr,
    pub(super) sock: std::net::UdpSocket,
    pub(super) ike: IkeInput,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) tx_packets: AtomicU64,
    pub(super) rx_packets: AtomicU64,
    /// Decrypted packets by worker (the first `WORKER_RX.len()` workers).
    pub(super) rx_by_worker: [AtomicU64; WORKER_RX.len()],
    pub(super) no_policy: AtomicU64,
    pub(super) no_sa: AtomicU64,
    pub(super) unknown_spi: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) esp_errors: AtomicU64,
    pub(super) transport_fragments: AtomicU64,
    pub(super) keepalives_rx: AtomicU64,
    pub(super) keepalives_tx: AtomicU64,
    pub(super) trap_held: AtomicU64,
    pub(super) trap_sent: AtomicU64,
    pub(super) trap_dropped: AtomicU64,
    pub(super) acquires: AtomicU64,
    pub(super) tun_errors: AtomicU64,
    pub(super) send_drops: AtomicU64,
}

/// What the dataplane's threads share.
pub(super) struct Shared {
    pub(super) opts: UserspaceOptions,
    /// Worker threads (each reads its share of the sockets).
    pub(super) workers: usize,
    ifindex: u32,
    started: Instant,
    tables: RwLock<Tables>,
    pub(super) socks: RwLock<Vec<Arc<Sock>>>,
    pub(super) socks_gen: AtomicU64,
    pub(super) held: Mutex<Holds>,
    routes: Routes,
    rule: route::MarkRule,
    pub(super) events: broadcast::Sender<DataplaneEvent>,
    pub(super) stop: AtomicBool,
    fail_next: FailNext,
    pub(super) stats: Stats,
    /// Rekeyed SAs (reqid, inbound SPI) whose first packet arrived: their
    /// outbound half takes over.
    pub(super) promote: Mutex<Vec<(u32, u32)>>,
}

/// ESP-in-UDP over TUN.
pub struct UserspaceDataplane {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl UserspaceDataplane {
    /// Creates the TUN device (up, no address) and starts the workers.
    pub fn new(opts: UserspaceOptions) -> io::Result<UserspaceDataplane> {
        let workers = if opts.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            opts.workers
        };
        let first = tun_rs::DeviceBuilder::new()
            .name(&opts.tun)
            .mtu(opts.mtu)
            .multi_queue(true)
            .offload(opts.offload)
            .build_sync()
            .map_err(|e| io::Error::new(e.kind(), format!("TUN device {}: {e}", opts.tun)))?;
        let mut queues = vec![first];
        for _ in 1..workers {
            let q = queues[0].try_clone()?;
            queues.push(q);
        }
        for q in &queues {
            q.set_nonblocking(true)?;
        }
        queues[0].enabled(true)?;
        let ifindex = route::ifindex(&opts.tun)?;
        let routes = Routes::with_table(opts.route_table)?;
        let rule = route::MarkRule {
            priority: RULE_PRIORITY,
            fwmark: opts.fwmark,
            table: opts.route_table,
        };
        routes.add_rule(rule).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "policy rule 'not fwmark {:#x} lookup {}': {e}",
                    opts.fwmark, opts.route_table
                ),
            )
        })?;
        let started = Instant::now();
        let shared = Arc::new(Shared {
            opts,
            workers,
            ifindex,
            started,
            tables: RwLock::new(Tables::new(started)),
            socks: RwLock::new(Vec::new()),
            socks_gen: AtomicU64::new(0),
            held: Mutex::new(Holds::default()),
            routes,
            rule,
            events: broadcast::channel(1024).0,
            stop: AtomicBool::new(false),
            fail_next: FailNext::default(),
            stats: Stats::default(),
            promote: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        let nq = queues.len();
        for (i, q) in queues.into_iter().enumerate() {
            let sh = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("esp-worker-{i}"))
                    .spawn(move || worker::Worker::new(sh, q, i, nq).run())?,
            );
        }
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("esp-housekeeping".into())
                .spawn(move || housekeeping::run(sh))?,
        );
        Ok(UserspaceDataplane {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// The TUN device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.shared.ifindex
    }
}

impl Drop for UserspaceDataplane {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        for (dst, len) in self.shared.read().routes() {
            let _ = self.shared.routes.del(dst, len, self.shared.ifindex);
        }
        if let Err(e) = self.shared.routes.del_rule(self.shared.rule) {
            tracing::warn!("policy rule removal: {e}");
        }
    }
}

impl Shared {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the route changes of a table update (under the tables' lock,
    /// so that they happen in the order of the updates).
    pub(super) fn apply(&self, ops: RouteOps) {
        for op in ops.0 {
            match op {
                RouteOp::Add { prefixes, local_ts } => {
                    let src = local_ts
                        .iter()
                        .find_map(|t| route::local_addr_in(t.start_addr, t.end_addr));
                    for (dst, len) in prefixes {
                        let src = src.filter(|s| s.is_ipv4() == dst.is_ipv4());
                        if let Err(err) = self.routes.add(dst, len, self.ifindex, src) {
                            tracing::warn!("route {dst}/{len} via {}: {err}", self.opts.tun);
                        }
                    }
                }
                RouteOp::Del(prefixes) => {
                    for (dst, len) in prefixes {
                        if let Err(err) = self.routes.del(dst, len, self.ifindex) {
                            tracing::warn!("route {dst}/{len} removal: {err}");
                        }
                    }
                }
            }
        }
    }

    /// Switches outbound to rekeyed SAs the peer has started using.
    pub(super) fn promote_pending(&self) {
        let todo: Vec<(u32, u32)> = {
            let mut p = lock(&self.promote);
            if p.is_empty() {
                return;
            }
            p.drain(..).collect()
        };
        let mut t = self.write();
        for (reqid, spi) in todo {
            t.promote(reqid, spi);
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(super) fn sock_for(&self, local: SocketAddr) -> Option<Arc<Sock>> {
        let socks = self.socks.read().unwrap_or_else(|e| e.into_inner());
        sock_pos(&socks, local).map(|i| socks[i].clone())
    }

    /// Encrypts and sends packets held for `key` (its SA just came up).
    fn flush_held(&self, key: &(String, String), out: &Arc<OutSa>) {
        let Some(packets) = lock(&self.held).take(key) else {
            return;
        };
        let Some(sock) = self.sock_for(out.local) else {
            self.stats
                .trap_dropped
                .fetch_add(packets.len() as u64, Ordering::Relaxed);
            return;
        };
        let mut buf = Vec::with_capacity(TX_CAP);
        for p in packets {
            buf.clear();
            let r = lock(&out.sa).encapsulate(&p, &mut buf);
            match r {
                Ok(_) if udp::send_one(sock.sock.as_raw_fd(), &buf, out.remote).is_ok() => {
                    self.stats.trap_sent.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.stats.trap_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out.last_tx_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A packet hit `owner`'s trap at `now`: hold it and raise an acquire
    /// (at most once a second per trap).
    pub(super) fn trapped(&self, owner: &str, child: &str, packet: &[u8], now: Instant) {
        let t = lock(&self.held).hold(owner, child, packet, now);
        if t.held {
            self.stats.trap_held.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.trap_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if t.acquire {
            self.stats.acquires.fetch_add(1, Ordering::Relaxed);
            let _ = self.events.send(DataplaneEvent::Acquire {
                owner: owner.to_string(),
                child: child.to_string(),
            });
        }
    }

    fn drop_held(&self, key: &(String, String)) {
        let n = lock(&self.held).remove(key);
        self.stats
            .trap_dropped
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The socket bound to `local`'s address, else a wildcard one of its family.
pub(super) fn sock_pos(socks: &[Arc<Sock>], local: SocketAddr) -> Option<usize> {
    socks
        .iter()
        .position(|s| s.local.ip() == local.ip())
        .or_else(|| {
            socks
                .iter()
                .position(|s| s.local.ip().is_unspecified() && s.local.is_ipv4() == local.is_ipv4())
        })
}

impl Dataplane for UserspaceDataplane {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn install_sa(&self, sa: &SaInstall) -> Result<(), DataplaneError> {
        self.shared.fail_next.check(&sa.owner)?;
        let new = NewSa::build(sa, self.shared.now_ms())?;
        let out = {
            let mut t = self.shared.write();
            let (out, ops) = t.install(sa, new, Instant::now())?;
            self.shared.apply(ops);
            out
        };
        self.shared
            .flush_held(&child_key(&sa.owner, &sa.child), &out);
        Ok(())
    }

    fn remove_sa(&self, owner: &str, spi_in: u32) -> Result<(), DataplaneError> {
        let mut t = self.shared.write();
        let ops = t.remove_sa(owner, spi_in, Some(Instant::now()));
        self.shared.apply(ops);
        Ok(())
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        let mut t = self.shared.write();
        let ops = t.install_trap(trap);
        self.shared.apply(ops);
        Ok(())
    }

    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError> {
        {
            let mut t = self.shared.write();
            let Some(ops) = t.remove_trap(owner, child) else {
                return Ok(());
            };
            self.shared.apply(ops);
        }
        self.shared.drop_held(&child_key(owner, child));
        Ok(())
    }

    fn remove_owner(&self, owner: &str) {
        let children = {
            let mut t = self.shared.write();
            let (children, ops) = t.remove_owner(owner);
            self.shared.apply(ops);
            children
        };
        for c in &children {
            self.shared.drop_held(&child_key(owner, c));
        }
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        self.shared.read().counters(spi_in)
    }

    fn installed(&self) -> Vec<InstalledSa> {
        self.shared.read().installed()
    }

    fn spis_of(&self, owner: &str) -> Vec<u32> {
        self.shared.read().spis_of(owner)
    }

    fn traps(&self) -> Vec<Trap> {
        self.shared.read().traps()
    }

    fn subscribe(&self) -> broadcast::Receiver<DataplaneEvent> {
        self.shared.events.subscribe()
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = &self.shared.stats;
        let mut v = vec![
            ("esp_tx_packets", s.tx_packets.load(Ordering::Relaxed)),
            ("esp_rx_packets", s.rx_packets.load(Ordering::Relaxed)),
            ("esp_no_policy", s.no_policy.load(Ordering::Relaxed)),
            ("esp_no_sa", s.no_sa.load(Ordering::Relaxed)),
            ("esp_unknown_spi", s.unknown_spi.load(Ordering::Relaxed)),
            ("esp_invalid", s.invalid.load(Ordering::Relaxed)),
            ("esp_errors", s.esp_errors.load(Ordering::Relaxed)),
            (
                "esp_transport_fragments",
                s.transport_fragments.load(Ordering::Relaxed),
            ),
            ("nat_keepalives_rx", s.keepalives_rx.load(Ordering::Relaxed)),
            ("nat_keepalives_tx", s.keepalives_tx.load(Ordering::Relaxed)),
            ("trap_held", s.trap_held.load(Ordering::Relaxed)),
            ("trap_sent", s.trap_sent.load(Ordering::Relaxed)),
            ("trap_dropped", s.trap_dropped.load(Ordering::Relaxed)),
            ("acquires", s.acquires.load(Ordering::Relaxed)),
            ("tun_errors", s.tun_errors.load(Ordering::Relaxed)),
            ("send_drops", s.send_drops.load(Ordering::Relaxed)),
        ];
        for (name, c) in WORKER_RX
            .iter()
            .zip(&s.rx_by_worker)
            .take(self.shared.workers)
        {
            v.push((name, c.load(Ordering::Relaxed)));
        }
        let (replay, integrity, selector) = self.shared.read().drop_totals();
        v.push(("esp_replay_drops", replay));
        v.push(("esp_integrity_failures", integrity));
        v.push(("esp_selector_drops", selector));
        v
    }

    fn encap(&self) -> &dyn EncapSockets {
        self
    }

    fn faults(&self) -> Option<&dyn FaultInjection> {
        Some(self)
    }
}

impl EncapSockets for UserspaceDataplane {
    fn forces_encap(&self) -> bool {
        true
    }

    fn bind_encap_socket(&self, local: SocketAddr) -> io::Result<std::net::UdpSocket> {
        if self.shared.workers > 1 {
            udp::bind_reuseport(local)
        } else {
            std::net::UdpSocket::bind(local)
        }
    }

    /// Keeps `socket` and, when it was bound by `bind_encap_socket` for
    /// several workers, binds one sibling per further worker on the same
    /// address and port and steers each SPI to one of them (SPI mod
    /// workers): inbound decryption spreads over the workers by SA, and
    /// each SA's packets still meet a single reader.
    fn attach_encap_socket(
        &self,
        local: SocketAddr,
        socket: std::net::UdpSocket,
        ike: IkeInput,
    ) -> bool {
        let mut group = vec![socket];
        let n = self.shared.workers;
        if n > 1 && udp::reuseport(group[0].as_raw_fd()) {
            let siblings = group[0].local_addr().and_then(|at| {
                (1..n)
                    .map(|_| {
                        udp::bind_reuseport(at).and_then(|s| s.set_nonblocking(true).map(|_| s))
                    })
                    .collect::<io::Result<Vec<_>>>()
            });
            match siblings
                .and_then(|s| udp::steer_by_spi(group[0].as_raw_fd(), n as u32).map(|_| s))
            {
                Ok(s) => group.extend(s),
                Err(e) => tracing::warn!("{local}: one reader for all SAs ({e})"),
            }
        }
        let mut socks = self.shared.socks.write().unwrap_or_else(|e| e.into_inner());
        for sock in group {
            let fd = sock.as_raw_fd();
            if let Err(e) = self.prepare_socket(fd) {
                tracing::warn!("SO_MARK on {local}: {e}");
            }
            if !udp::enable_gro(fd) {
                tracing::debug!("UDP GRO unavailable on {local}");
            }
            udp::set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 4 << 20);
            udp::set_buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 4 << 20);
            socks.push(Arc::new(Sock {
                local,
                sock,
                ike: ike.clone(),
            }));
        }
        drop(socks);
        self.shared.socks_gen.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn prepare_socket(&self, fd: RawFd) -> io::Result<()> {
        udp::set_mark(fd, self.shared.opts.fwmark)
    }
}

impl FaultInjection for UserspaceDataplane {
    fn fail_next_install(&self, owner: &str) {
        self.shared.fail_next.arm(owner);
    }

    /// Raised whether or not the trap is installed.
    fn simulate_acquire(&self, owner: &str, child: &str) {
        let _ = self.shared.events.send(DataplaneEvent::Acquire {
            owner: owner.to_string(),
            child: child.to_string(),
        });
    }
}
