//! The `userspace` dataplane: ESP-in-UDP (RFC 3948) over a multi-queue TUN
//! device, no kernel IPsec needed.
//!
//! - **Tables** (one `RwLock`, read once per batch on the hot path): the SPD
//!   (protect policies by reqid, trap policies), the current outbound SA of
//!   every reqid, the inbound SAs by SPI. Each SA half has its own `Mutex`,
//!   so two workers only meet on the same SA.
//! - **Workers** (one thread per CPU by default): each owns one TUN queue
//!   and per-worker buffers, and polls its queue and the UDP/4500 sockets
//!   the daemon handed over. Outbound: TUN (GSO super-packets split by
//!   tun-rs) → 5-tuple → policy → encapsulate → `sendmmsg`. Inbound:
//!   `recvmmsg` → IKE (non-ESP marker) to the daemon, keepalives dropped,
//!   ESP by SPI → replay check → decrypt → inner packet checked against the
//!   SA's selectors → TUN (TCP segments coalesced by tun-rs GRO). Nothing is
//!   allocated per packet.
//! - **Housekeeping** thread: lifetimes (soft → `Expire { hard: false }`,
//!   hard → SA removed and `Expire { hard: true }`), NAT keepalives, and the
//!   timeout of packets held for a trap.
//! - **Routes** for every installed SA's and trap's remote selectors point
//!   into the TUN device (source: a local address inside the local
//!   selector), reference-counted and removed with the last user.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ike::config::Mode;
use ike::wire::TrafficSelector;
use tokio::sync::broadcast;

use super::esp::{self, classify_udp4500, InboundSa, OutboundSa, Udp4500};
use super::ip;
use super::route::{self, Routes};
use super::spd::{self, Action, Policy, PolicyId, Spd};
use super::udp;
use crate::{
    Dataplane, DataplaneError, DataplaneEvent, EncapSockets, FailNext, FaultInjection, IkeInput,
    InstalledSa, Lifetime, SaCounters, SaInstall, Trap,
};

const BACKEND: &str = "userspace";
/// Receive buffer: a GRO-coalesced run of datagrams (at most 64 KiB).
const RX_GRO_CAP: usize = 65536;
/// Per-worker output buffer capacity (an ESP packet of an MTU-sized inner).
const TX_CAP: usize = 2048;
/// How long the inbound half of an SA replaced by a rekey keeps accepting
/// packets (strongSwan's `delete_rekeyed_delay` is 5 s): the peer's last
/// packets on it may still be queued, e.g. on another worker's socket than
/// the DELETE that removed it.
const REKEYED_DRAIN: Duration = Duration::from_secs(2);
/// Packets held per trapped child while its SA is negotiated.
const TRAP_QUEUE_LEN: usize = 16;
/// Room in front of a decrypted packet (its ESP header) that tun-rs uses for
/// the virtio header when offload is on.
const RX_OFFSET: usize = esp::PREFIX_LEN;

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

/// The sending half of an SA and where its packets go.
struct OutSa {
    sa: Mutex<OutboundSa>,
    remote: SocketAddr,
    /// Index into the attached sockets (resolved at send time by address).
    local: SocketAddr,
    /// Last time a packet went out (for keepalives), as ms since start.
    last_tx_ms: AtomicU64,
}

/// The receiving half and what it may deliver.
struct InSa {
    sa: Mutex<InboundSa>,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// Inner packets outside the selectors (RFC 4301 §5.2), dropped.
    selector_drops: AtomicU64,
    /// A rekeyed SA whose outbound half waits: the peer may not have
    /// installed it yet. The first packet that arrives on this inbound half
    /// proves it has; the old SA's removal does too (as strongSwan, which
    /// as rekey responder installs the outbound SA only then).
    pending_out: AtomicBool,
    reqid: u32,
    /// Transport mode: the local address the peer's packets are rebuilt to
    /// (their source is the address they came from).
    transport_to: Option<IpAddr>,
}

struct SaEntry {
    owner: String,
    child: String,
    reqid: u32,
    spi_out: u32,
    out: Arc<OutSa>,
    inb: Arc<InSa>,
    installed: Instant,
    lifetime: Lifetime,
    soft_sent: bool,
}

/// Per (owner, child): its policies, routes and SAs.
#[derive(Default)]
struct ChildEntry {
    reqid: u32,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// Protect or trap policies currently in the SPD.
    policies: Vec<PolicyId>,
    protecting: bool,
    routes: Vec<(IpAddr, u8)>,
    trap: Option<Trap>,
    /// Inbound SPIs, oldest first.
    sas: Vec<u32>,
}

#[derive(Default)]
struct Tables {
    spd: Spd,
    children: HashMap<(String, String), ChildEntry>,
    out_by_reqid: HashMap<u32, Arc<OutSa>>,
    inbound: HashMap<u32, Arc<InSa>>,
    sas: HashMap<u32, SaEntry>,
    /// Inbound halves of SAs replaced by a rekey, still decrypting until
    /// the deadline: (SPI, owner, deadline).
    draining: Vec<(u32, String, Instant)>,
}

struct Sock {
    local: SocketAddr,
    sock: std::net::UdpSocket,
    ike: IkeInput,
}

/// Packets held for a trapped child.
#[derive(Default)]
struct Held {
    packets: VecDeque<(Instant, Vec<u8>)>,
    last_acquire: Option<Instant>,
}

#[derive(Default)]
struct Stats {
    tx_packets: AtomicU64,
    rx_packets: AtomicU64,
    /// Decrypted packets by worker (the first `WORKER_RX.len()` workers).
    rx_by_worker: [AtomicU64; WORKER_RX.len()],
    no_policy: AtomicU64,
    no_sa: AtomicU64,
    unknown_spi: AtomicU64,
    invalid: AtomicU64,
    esp_errors: AtomicU64,
    transport_fragments: AtomicU64,
    keepalives_rx: AtomicU64,
    keepalives_tx: AtomicU64,
    trap_held: AtomicU64,
    trap_sent: AtomicU64,
    trap_dropped: AtomicU64,
    acquires: AtomicU64,
    tun_errors: AtomicU64,
    send_drops: AtomicU64,
}

struct Shared {
    opts: UserspaceOptions,
    /// Worker threads (each reads its share of the sockets).
    workers: usize,
    ifindex: u32,
    started: Instant,
    tables: RwLock<Tables>,
    socks: RwLock<Vec<Arc<Sock>>>,
    socks_gen: AtomicU64,
    held: Mutex<HashMap<(String, String), Held>>,
    routes: Routes,
    rule: route::MarkRule,
    route_refs: Mutex<HashMap<(IpAddr, u8), usize>>,
    events: broadcast::Sender<DataplaneEvent>,
    stop: AtomicBool,
    fail_next: FailNext,
    stats: Stats,
    /// Rekeyed SAs (reqid, inbound SPI) whose first packet arrived: their
    /// outbound half takes over.
    promote: Mutex<Vec<(u32, u32)>>,
}

/// ESP-in-UDP over TUN.
pub struct UserspaceDataplane {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn failed(what: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Failed {
        backend: BACKEND,
        what: what.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let shared = Arc::new(Shared {
            opts,
            workers,
            ifindex,
            started: Instant::now(),
            tables: RwLock::new(Tables::default()),
            socks: RwLock::new(Vec::new()),
            socks_gen: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
            routes,
            rule,
            route_refs: Mutex::new(HashMap::new()),
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
                    .spawn(move || Worker::new(sh, q, i, nq).run())?,
            );
        }
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("esp-housekeeping".into())
                .spawn(move || housekeeping(sh))?,
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
        let refs: Vec<(IpAddr, u8)> = lock(&self.shared.route_refs).keys().copied().collect();
        for (dst, len) in refs {
            let _ = self.shared.routes.del(dst, len, self.shared.ifindex);
        }
        if let Err(e) = self.shared.routes.del_rule(self.shared.rule) {
            tracing::warn!("policy rule removal: {e}");
        }
    }
}

impl Shared {
    /// Switches outbound to rekeyed SAs the peer has started using.
    fn promote_pending(&self) {
        let todo: Vec<(u32, u32)> = {
            let mut p = lock(&self.promote);
            if p.is_empty() {
                return;
            }
            p.drain(..).collect()
        };
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for (reqid, spi) in todo {
            if let Some(out) = t.sas.get(&spi).map(|e| e.out.clone()) {
                t.out_by_reqid.insert(reqid, out);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn route_add(&self, ts: &[TrafficSelector], local_ts: &[TrafficSelector]) -> Vec<(IpAddr, u8)> {
        let src = local_ts
            .iter()
            .find_map(|t| route::local_addr_in(t.start_addr, t.end_addr));
        let mut added = Vec::new();
        let mut refs = lock(&self.route_refs);
        for t in ts {
            for (dst, len) in route::range_to_prefixes(t.start_addr, t.end_addr) {
                let src = src.filter(|s| s.is_ipv4() == dst.is_ipv4());
                let e = refs.entry((dst, len)).or_insert(0);
                if *e == 0 {
                    if let Err(err) = self.routes.add(dst, len, self.ifindex, src) {
                        tracing::warn!("route {dst}/{len} via {}: {err}", self.opts.tun);
                    }
                }
                *e += 1;
                added.push((dst, len));
            }
        }
        added
    }

    fn route_del(&self, routes: &[(IpAddr, u8)]) {
        let mut refs = lock(&self.route_refs);
        for r in routes {
            if let Some(e) = refs.get_mut(r) {
                *e -= 1;
                if *e == 0 {
                    refs.remove(r);
                    if let Err(err) = self.routes.del(r.0, r.1, self.ifindex) {
                        tracing::warn!("route {}/{} removal: {err}", r.0, r.1);
                    }
                }
            }
        }
    }

    fn sock_for(&self, local: SocketAddr) -> Option<Arc<Sock>> {
        let socks = self.socks.read().unwrap_or_else(|e| e.into_inner());
        sock_pos(&socks, local).map(|i| socks[i].clone())
    }

    /// Removes an SA pair; the child's newest remaining SA takes over
    /// sending, or, with none left, its trap (or nothing: policies and
    /// routes go). With `drain`, an SA that a newer one of its child
    /// replaces (a rekey) stops sending at once but keeps decrypting for
    /// [`REKEYED_DRAIN`]; otherwise (the child's last SA, `kill`, a hard
    /// lifetime) it goes entirely.
    fn remove_sa(&self, owner: &str, spi_in: u32, drain: bool) {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let Some(e) = t.sas.remove(&spi_in) else {
            return;
        };
        if e.owner != owner {
            tracing::warn!(
                "remove_sa: SPI {spi_in:08x} belongs to '{}', not '{owner}'",
                e.owner
            );
        }
        let key = child_key(&e.owner, &e.child);
        let newest = t.children.get_mut(&key).and_then(|c| {
            c.sas.retain(|s| *s != spi_in);
            c.sas.last().copied()
        });
        if drain && newest.is_some() {
            t.draining
                .push((spi_in, e.owner.clone(), Instant::now() + REKEYED_DRAIN));
        } else {
            t.inbound.remove(&spi_in);
        }
        if !t.children.contains_key(&key) {
            return;
        }
        match newest {
            Some(n) => {
                // Another SA of the child remains (rekey): it sends from now.
                if t.out_by_reqid
                    .get(&e.reqid)
                    .is_some_and(|o| Arc::ptr_eq(o, &e.out))
                {
                    if let Some(s) = t.sas.get(&n) {
                        s.inb.pending_out.store(false, Ordering::SeqCst);
                        let o = s.out.clone();
                        t.out_by_reqid.insert(e.reqid, o);
                    }
                }
            }
            None => {
                t.out_by_reqid.remove(&e.reqid);
                // Trap policies take over, if there is a trap.
                t.set_policies(&key, false);
                if t.children.get(&key).is_some_and(|c| c.trap.is_none()) {
                    if let Some(c) = t.children.remove(&key) {
                        self.route_del(&c.routes);
                    }
                }
            }
        }
    }

    /// Encrypts and sends packets held for `key` (its SA just came up).
    fn flush_held(&self, key: &(String, String), out: &Arc<OutSa>) {
        let packets: Vec<Vec<u8>> = match lock(&self.held).get_mut(key) {
            Some(h) => h.packets.drain(..).map(|(_, p)| p).collect(),
            None => return,
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

    /// A packet hit `owner`'s trap: hold it and raise an acquire (at most
    /// once a second per trap).
    fn trapped(&self, owner: &str, child: &str, packet: &[u8]) {
        let mut held = lock(&self.held);
        let h = held
            .entry((owner.to_string(), child.to_string()))
            .or_default();
        if h.packets.len() < TRAP_QUEUE_LEN {
            h.packets.push_back((Instant::now(), packet.to_vec()));
            self.stats.trap_held.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.trap_dropped.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        if h.last_acquire
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            h.last_acquire = Some(now);
            self.stats.acquires.fetch_add(1, Ordering::Relaxed);
            let _ = self.events.send(DataplaneEvent::Acquire {
                owner: owner.to_string(),
                child: child.to_string(),
            });
        }
    }
}

impl Tables {
    /// Ends the drains `done(owner, deadline)` selects: their inbound
    /// halves stop decrypting (unless the SPI was installed anew).
    fn end_drains(&mut self, done: impl Fn(&str, Instant) -> bool) {
        let mut ended = Vec::new();
        self.draining.retain(|(spi, owner, until)| {
            let end = done(owner, *until);
            if end {
                ended.push(*spi);
            }
            !end
        });
        for spi in ended {
            if !self.sas.contains_key(&spi) {
                self.inbound.remove(&spi);
            }
        }
    }

    /// Replaces `c`'s SPD entries with protect (`true`) or trap policies.
    fn set_policies(&mut self, key: &(String, String), protect: bool) {
        let Some(c) = self.children.get_mut(key) else {
            return;
        };
        for id in c.policies.drain(..) {
            self.spd.remove(id);
        }
        c.protecting = protect;
        let action = if protect {
            Action::Protect { reqid: c.reqid }
        } else if c.trap.is_some() {
            Action::Trap {
                owner: key.0.clone(),
                child: key.1.clone(),
            }
        } else {
            return;
        };
        for l in &c.local_ts {
            for r in &c.remote_ts {
                let id = self.spd.insert(Policy {
                    local: l.clone(),
                    remote: r.clone(),
                    action: action.clone(),
                });
                c.policies.push(id);
            }
        }
    }
}

/// The socket bound to `local`'s address, else a wildcard one of its family.
fn sock_pos(socks: &[Arc<Sock>], local: SocketAddr) -> Option<usize> {
    socks
        .iter()
        .position(|s| s.local.ip() == local.ip())
        .or_else(|| {
            socks
                .iter()
                .position(|s| s.local.ip().is_unspecified() && s.local.is_ipv4() == local.is_ipv4())
        })
}

fn child_key(owner: &str, child: &str) -> (String, String) {
    (owner.to_string(), child.to_string())
}

impl Dataplane for UserspaceDataplane {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn install_sa(&self, sa: &SaInstall) -> Result<(), DataplaneError> {
        self.shared.fail_next.check()?;
        if !sa.encap {
            return Err(failed(
                "the userspace dataplane carries only UDP-encapsulated ESP (encap was not negotiated)",
            ));
        }
        let transport_to = match sa.mode {
            Mode::Tunnel => None,
            Mode::Transport => {
                if sa.local.is_ipv4() != sa.remote.is_ipv4() || sa.local.ip().is_unspecified() {
                    return Err(failed(format!(
                        "transport mode between {} and {}: needs two addresses of one family",
                        sa.local, sa.remote
                    )));
                }
                Some(sa.local.ip())
            }
        };
        // Transport mode protects the endpoints' own packets: its selectors
        // are the SA's addresses (as strongSwan installs them), keeping the
        // negotiated protocol and ports. Behind a NAT the negotiated ones
        // name a private address the packets never carry.
        let (local_ts, remote_ts) = match transport_to {
            None => (sa.local_ts.clone(), sa.remote_ts.clone()),
            Some(_) => (
                at_host(&sa.local_ts, sa.local.ip()),
                at_host(&sa.remote_ts, sa.remote.ip()),
            ),
        };
        let (inbound, outbound) = esp::sa_pair(sa).map_err(failed)?;
        let out = Arc::new(OutSa {
            sa: Mutex::new(outbound),
            remote: sa.remote,
            local: sa.local,
            last_tx_ms: AtomicU64::new(self.shared.now_ms()),
        });
        let inb = Arc::new(InSa {
            sa: Mutex::new(inbound),
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            selector_drops: AtomicU64::new(0),
            pending_out: AtomicBool::new(false),
            reqid: sa.reqid,
            transport_to,
        });
        let key = child_key(&sa.owner, &sa.child);
        let new_routes;
        {
            let mut t = self
                .shared
                .tables
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if t.sas.contains_key(&sa.spi_in) {
                return Err(DataplaneError::Duplicate(sa.spi_in));
            }
            let needs_routes = t.children.get(&key).is_none_or(|c| c.routes.is_empty());
            new_routes = needs_routes.then(|| self.shared.route_add(&remote_ts, &local_ts));
            let c = t.children.entry(key.clone()).or_default();
            c.reqid = sa.reqid;
            c.local_ts = local_ts;
            c.remote_ts = remote_ts;
            if let Some(r) = new_routes {
                c.routes = r;
            }
            c.sas.push(sa.spi_in);
            let protecting = c.protecting;
            t.inbound.insert(sa.spi_in, inb.clone());
            // A rekey keeps sending on the old SA until the peer shows it
            // has the new one (or the old one goes).
            let old_sending = !sa.initiator
                && sa.rekey_of.is_some_and(|old| {
                    t.sas.contains_key(&old) && t.out_by_reqid.contains_key(&sa.reqid)
                });
            tracing::debug!(
                "install {:08x} (rekey of {:?}, initiator {}): outbound {}",
                sa.spi_in,
                sa.rekey_of,
                sa.initiator,
                if old_sending { "waits" } else { "now" }
            );
            if old_sending {
                inb.pending_out.store(true, Ordering::SeqCst);
            } else {
                t.out_by_reqid.insert(sa.reqid, out.clone());
            }
            t.sas.insert(
                sa.spi_in,
                SaEntry {
                    owner: sa.owner.clone(),
                    child: sa.child.clone(),
                    reqid: sa.reqid,
                    spi_out: sa.spi_out,
                    out: out.clone(),
                    inb,
                    installed: Instant::now(),
                    lifetime: sa.lifetime,
                    soft_sent: false,
                },
            );
            if !protecting {
                t.set_policies(&key, true);
            }
        }
        self.shared.flush_held(&key, &out);
        Ok(())
    }

    fn remove_sa(&self, owner: &str, spi_in: u32) -> Result<(), DataplaneError> {
        self.shared.remove_sa(owner, spi_in, true);
        Ok(())
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        let key = child_key(&trap.owner, &trap.child);
        let mut t = self
            .shared
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let has_routes = t.children.get(&key).is_some_and(|c| !c.routes.is_empty());
        let routes = (!has_routes).then(|| self.shared.route_add(&trap.remote_ts, &trap.local_ts));
        let c = t.children.entry(key.clone()).or_default();
        c.trap = Some(trap.clone());
        if let Some(r) = routes {
            c.routes = r;
        }
        if c.sas.is_empty() {
            c.reqid = trap.reqid;
            c.local_ts = trap.local_ts.clone();
            c.remote_ts = trap.remote_ts.clone();
            t.set_policies(&key, false);
        }
        Ok(())
    }

    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError> {
        let key = child_key(owner, child);
        let mut t = self
            .shared
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(c) = t.children.get_mut(&key) else {
            return Ok(());
        };
        c.trap = None;
        if c.sas.is_empty() {
            t.set_policies(&key, false);
            if let Some(c) = t.children.remove(&key) {
                self.shared.route_del(&c.routes);
            }
        }
        drop(t);
        if let Some(h) = lock(&self.shared.held).remove(&key) {
            self.shared
                .stats
                .trap_dropped
                .fetch_add(h.packets.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn remove_owner(&self, owner: &str) {
        let (spis, children): (Vec<u32>, Vec<String>) = {
            let t = self.shared.tables.read().unwrap_or_else(|e| e.into_inner());
            (
                t.sas
                    .iter()
                    .filter(|(_, e)| e.owner == owner)
                    .map(|(s, _)| *s)
                    .collect(),
                t.children
                    .keys()
                    .filter(|(o, _)| o == owner)
                    .map(|(_, c)| c.clone())
                    .collect(),
            )
        };
        for c in &children {
            let _ = self.remove_trap(owner, c);
        }
        for s in spis {
            self.shared.remove_sa(owner, s, false);
        }
        // Nothing of a killed connection keeps decrypting.
        self.shared
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .end_drains(|d_owner, _| d_owner == owner);
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        let t = self.shared.tables.read().unwrap_or_else(|e| e.into_inner());
        let e = t.sas.get(&spi_in)?;
        let (packets_out, bytes_out) = lock(&e.out.sa).counters();
        let s = lock(&e.inb.sa).stats();
        Some(SaCounters {
            bytes_in: s.bytes,
            bytes_out,
            packets_in: s.packets,
            packets_out,
            replay_drops: s.replayed + s.too_old,
            integrity_failures: s.integrity,
        })
    }

    fn installed(&self) -> Vec<InstalledSa> {
        let t = self.shared.tables.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<InstalledSa> = t
            .sas
            .iter()
            .map(|(spi, e)| InstalledSa {
                owner: e.owner.clone(),
                child: e.child.clone(),
                reqid: e.reqid,
                spi_in: *spi,
                spi_out: e.spi_out,
            })
            .collect();
        v.sort_by_key(|s| s.spi_in);
        v
    }

    fn traps(&self) -> Vec<Trap> {
        let t = self.shared.tables.read().unwrap_or_else(|e| e.into_inner());
        t.children.values().filter_map(|c| c.trap.clone()).collect()
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
        let t = self.shared.tables.read().unwrap_or_else(|e| e.into_inner());
        let (mut replay, mut integrity, mut selector) = (0, 0, 0);
        for e in t.sas.values() {
            let st = lock(&e.inb.sa).stats();
            replay += st.replayed + st.too_old;
            integrity += st.integrity;
            selector += e.inb.selector_drops.load(Ordering::Relaxed);
        }
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
    fn fail_next_install(&self) {
        self.shared.fail_next.arm();
    }

    /// Raised whether or not the trap is installed.
    fn simulate_acquire(&self, owner: &str, child: &str) {
        let _ = self.shared.events.send(DataplaneEvent::Acquire {
            owner: owner.to_string(),
            child: child.to_string(),
        });
    }
}

/// `ts` with every address range narrowed to `host` (protocol and ports
/// kept; duplicates merged).
fn at_host(ts: &[TrafficSelector], host: IpAddr) -> Vec<TrafficSelector> {
    let mut v: Vec<TrafficSelector> = Vec::new();
    for t in ts {
        let h = TrafficSelector {
            start_addr: host,
            end_addr: host,
            ..t.clone()
        };
        if !v.contains(&h) {
            v.push(h);
        }
    }
    if v.is_empty() {
        v.push(TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: host,
            end_addr: host,
        });
    }
    v
}

/// Whether a decapsulated tunnel-mode packet lies within the SA's
/// selectors (source in the remote, destination in the local ones).
fn inbound_allowed(inb: &InSa, packet: &[u8]) -> bool {
    let Ok(t) = ip::parse_five_tuple(packet) else {
        return false;
    };
    let (sp, dp) = match t.ports {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    inb.remote_ts
        .iter()
        .any(|r| spd::ts_matches(r, t.src, t.proto, sp))
        && inb
            .local_ts
            .iter()
            .any(|l| spd::ts_matches(l, t.dst, t.proto, dp))
}

/// One worker: a TUN queue, per-worker buffers, the shared sockets.
struct Worker {
    sh: Arc<Shared>,
    tun: tun_rs::SyncDevice,
    offload: bool,
    /// TUN receive: the raw (possibly GSO) frame and the split packets.
    tun_raw: Vec<u8>,
    tun_bufs: Vec<Vec<u8>>,
    tun_sizes: Vec<usize>,
    /// Encapsulated packets and their destinations, per batch.
    tx: Vec<Vec<u8>>,
    tx_dst: Vec<SocketAddr>,
    tx_sock: Vec<usize>,
    /// UDP receive buffers (each may hold GRO-coalesced datagrams), their
    /// sources and segment sizes.
    rx: Vec<Vec<u8>>,
    rx_from: Vec<Option<SocketAddr>>,
    rx_segs: Vec<usize>,
    /// Decrypted packets bound for the TUN device, `RX_OFFSET` bytes in.
    tun_out: Vec<Vec<u8>>,
    /// UDP segmentation offload on send (off after the kernel refuses it).
    gso: bool,
    gro: tun_rs::GROTable,
    socks: Vec<Arc<Sock>>,
    socks_gen: u64,
    /// This worker reads the sockets whose index is `id` modulo `of`: one
    /// reader per socket keeps every flow's packets in order (two readers
    /// of one socket would reorder TCP segments).
    id: usize,
    of: usize,
    /// `pfds[1 + k]` is socket `polled[k]`.
    polled: Vec<usize>,
}

impl Worker {
    fn new(sh: Arc<Shared>, tun: tun_rs::SyncDevice, id: usize, of: usize) -> Worker {
        let n = tun_rs::IDEAL_BATCH_SIZE;
        let offload = sh.opts.offload;
        Worker {
            sh,
            tun,
            offload,
            tun_raw: vec![0; tun_rs::VIRTIO_NET_HDR_LEN + 65535],
            tun_bufs: (0..n).map(|_| vec![0; 2048]).collect(),
            tun_sizes: vec![0; n],
            tx: (0..n).map(|_| Vec::with_capacity(TX_CAP)).collect(),
            tx_dst: Vec::with_capacity(n),
            tx_sock: Vec::with_capacity(n),
            rx: (0..udp::BATCH)
                .map(|_| Vec::with_capacity(RX_GRO_CAP))
                .collect(),
            rx_from: vec![None; udp::BATCH],
            rx_segs: vec![0; udp::BATCH],
            // TUN GRO coalesces into the first buffer of a flow: room for
            // 64 KiB.
            tun_out: (0..n)
                .map(|_| Vec::with_capacity(65536 + RX_OFFSET))
                .collect(),
            gso: true,
            gro: tun_rs::GROTable::default(),
            socks: Vec::new(),
            socks_gen: u64::MAX,
            id,
            of,
            polled: Vec::new(),
        }
    }

    fn run(mut self) {
        let tun_fd = self.tun.as_raw_fd();
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        while !self.sh.stop.load(Ordering::Relaxed) {
            let g = self.sh.socks_gen.load(Ordering::SeqCst);
            if g != self.socks_gen {
                self.socks_gen = g;
                self.socks = self
                    .sh
                    .socks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                pfds.clear();
                pfds.push(libc::pollfd {
                    fd: tun_fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                self.polled.clear();
                for (k, s) in self.socks.iter().enumerate() {
                    if k % self.of != self.id {
                        continue;
                    }
                    self.polled.push(k);
                    pfds.push(libc::pollfd {
                        fd: s.sock.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            // SAFETY: `pfds` is a valid array of pollfd.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
            if r <= 0 {
                continue;
            }
            if pfds[0].revents != 0 {
                self.drain_tun();
            }
            for k in 0..self.polled.len() {
                if pfds[k + 1].revents != 0 {
                    self.drain_udp(self.polled[k]);
                }
            }
        }
    }

    /// Outbound: drain the TUN queue (bounded rounds, then poll again).
    fn drain_tun(&mut self) {
        for _ in 0..16 {
            let n = if self.offload {
                match self.tun.recv_multiple(
                    &mut self.tun_raw,
                    &mut self.tun_bufs,
                    &mut self.tun_sizes,
                    0,
                ) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("TUN read: {e}");
                        return;
                    }
                }
            } else {
                match self.tun.recv(&mut self.tun_bufs[0]) {
                    Ok(n) => {
                        self.tun_sizes[0] = n;
                        1
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("TUN read: {e}");
                        return;
                    }
                }
            };
            self.encapsulate_batch(n);
        }
    }

    fn encapsulate_batch(&mut self, n: usize) {
        self.tx_dst.clear();
        self.tx_sock.clear();
        let sh = self.sh.clone();
        let now_ms = sh.now_ms();
        {
            let t = sh.tables.read().unwrap_or_else(|e| e.into_inner());
            let mut last: Option<(u32, Arc<OutSa>, usize)> = None;
            for i in 0..n {
                let pkt = &self.tun_bufs[i][..self.tun_sizes[i]];
                let Ok(tuple) = ip::parse_five_tuple(pkt) else {
                    sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let reqid = match t.spd.lookup_tuple(&tuple).map(|p| &p.action) {
                    Some(Action::Protect { reqid }) => *reqid,
                    Some(Action::Trap { owner, child }) => {
                        sh.trapped(owner, child, pkt);
                        continue;
                    }
                    Some(Action::Discard) | Some(Action::Bypass) | None => {
                        sh.stats.no_policy.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                if last.as_ref().is_none_or(|(r, _, _)| *r != reqid) {
                    let Some(out) = t.out_by_reqid.get(&reqid) else {
                        sh.stats.no_sa.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let Some(si) = sock_pos(&self.socks, out.local) else {
                        sh.stats.no_sa.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    last = Some((reqid, out.clone(), si));
                }
                let Some((_, out, si)) = &last else { continue };
                let k = self.tx_dst.len();
                let buf = &mut self.tx[k];
                buf.clear();
                match lock(&out.sa).encapsulate(pkt, buf) {
                    Ok(_) => {}
                    Err(esp::EspError::TransportFragment) => {
                        sh.stats.transport_fragments.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => {
                        sh.stats.esp_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                out.last_tx_ms.store(now_ms, Ordering::Relaxed);
                self.tx_dst.push(out.remote);
                self.tx_sock.push(*si);
            }
            // Sent under the read lock: an SA removed (and its DELETE
            // answered) after this batch was encrypted would otherwise see
            // the batch arrive at the peer after the DELETE.
            self.send_tx();
        }
    }

    /// Sends the batch, in runs of the same socket.
    fn send_tx(&mut self) {
        let total = self.tx_dst.len();
        let mut start = 0;
        while start < total {
            let si = self.tx_sock[start];
            let mut end = start + 1;
            while end < total && self.tx_sock[end] == si {
                end += 1;
            }
            let fd = self.socks[si].sock.as_raw_fd();
            let (pkts, dsts) = (&self.tx[start..end], &self.tx_dst[start..end]);
            let sent = if self.gso {
                match udp::send_batch_gso(fd, pkts, dsts) {
                    Ok(n) => n,
                    Err(e) => {
                        // Resending duplicates at worst, which the peer's
                        // replay window drops.
                        tracing::info!(
                            "UDP segmentation offload refused ({e}); sending datagrams one by one"
                        );
                        self.gso = false;
                        udp::send_batch(fd, pkts, dsts)
                    }
                }
            } else {
                udp::send_batch(fd, pkts, dsts)
            };
            self.sh
                .stats
                .tx_packets
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.sh
                .stats
                .send_drops
                .fetch_add((end - start - sent) as u64, Ordering::Relaxed);
            start = end;
        }
    }

    /// Inbound: drain one UDP/4500 socket (bounded rounds).
    fn drain_udp(&mut self, si: usize) {
        let sock = self.socks[si].clone();
        let fd: RawFd = sock.sock.as_raw_fd();
        for _ in 0..16 {
            let r = udp::recv_batch_gro(
                fd,
                &mut self.rx,
                RX_GRO_CAP,
                &mut self.rx_from,
                &mut self.rx_segs,
            );
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("recvmmsg on {}: {e}", sock.local);
                    return;
                }
            };
            self.decapsulate_batch(&sock, n);
            if n < udp::BATCH {
                return;
            }
        }
    }

    /// Decrypts every datagram (every GRO segment) of the batch and writes
    /// the inner packets to the TUN device in batches.
    fn decapsulate_batch(&mut self, sock: &Sock, n: usize) {
        let sh = self.sh.clone();
        let t = sh.tables.read().unwrap_or_else(|e| e.into_inner());
        let mut k = 0;
        for i in 0..n {
            let Some(from) = self.rx_from[i] else {
                continue;
            };
            let seg = self.rx_segs[i].max(1);
            let len = self.rx[i].len();
            let mut off = 0;
            while off < len {
                let end = (off + seg).min(len);
                let d = &mut self.rx[i][off..end];
                off = end;
                let spi = match classify_udp4500(d) {
                    Udp4500::Keepalive => {
                        sh.stats.keepalives_rx.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Udp4500::Ike => {
                        (sock.ike)(sock.local, from, d);
                        continue;
                    }
                    Udp4500::Invalid => {
                        sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Udp4500::Esp(spi) => spi,
                };
                let Some(inb) = t.inbound.get(&spi) else {
                    let n = sh.stats.unknown_spi.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        tracing::debug!(
                            "ESP for unknown SPI {spi:08x} from {from} ({} so far)",
                            n + 1
                        );
                    }
                    continue;
                };
                let mut sa = lock(&inb.sa);
                match sa.decapsulate(d) {
                    Ok(p) if p.is_dummy() => {}
                    Ok(p) => {
                        if inb.pending_out.load(Ordering::Relaxed)
                            && inb.pending_out.swap(false, Ordering::SeqCst)
                        {
                            lock(&sh.promote).push((inb.reqid, spi));
                        }
                        let out = &mut self.tun_out[k];
                        out.clear();
                        out.resize(RX_OFFSET, 0);
                        match inb.transport_to {
                            None => out.extend_from_slice(p.payload),
                            Some(to) => {
                                let ok = esp::transport_rebuild(
                                    out,
                                    from.ip(),
                                    to,
                                    p.next_header,
                                    p.payload,
                                );
                                if !ok {
                                    sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                        }
                        if !inbound_allowed(inb, &out[RX_OFFSET..]) {
                            inb.selector_drops.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        k += 1;
                        sh.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                        if let Some(c) = sh.stats.rx_by_worker.get(self.id) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Counted by cause in the SA's statistics.
                    Err(_) => {}
                }
                drop(sa);
                if k == self.tun_out.len() {
                    self.write_tun(k);
                    k = 0;
                }
            }
        }
        drop(t);
        if k > 0 {
            self.write_tun(k);
        }
        sh.promote_pending();
    }

    /// Writes `tun_out[..k]` to the TUN queue (coalesced by GRO).
    fn write_tun(&mut self, k: usize) {
        let r = if self.offload {
            self.tun
                .send_multiple(&mut self.gro, &mut self.tun_out[..k], RX_OFFSET)
                .map(|_| ())
        } else {
            let mut r = Ok(());
            for b in &self.tun_out[..k] {
                if let Err(e) = self.tun.send(&b[RX_OFFSET..]) {
                    r = Err(e);
                }
            }
            r
        };
        if let Err(e) = r {
            self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TUN write: {e}");
        }
    }
}

/// Lifetimes, keepalives and held-packet timeouts, twice a second.
fn housekeeping(sh: Arc<Shared>) {
    let mut last_keepalive = Instant::now();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        // Held packets past their time.
        {
            let hold = sh.opts.trap_hold;
            let mut held = lock(&sh.held);
            for h in held.values_mut() {
                while h.packets.front().is_some_and(|(t, _)| t.elapsed() >= hold) {
                    h.packets.pop_front();
                    sh.stats.trap_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Lifetimes, and rekeyed SAs past their drain time.
        let mut soft = Vec::new();
        let mut hard = Vec::new();
        {
            let mut t = sh.tables.write().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            t.end_drains(|_, until| until <= now);
            for (spi, e) in t.sas.iter_mut() {
                let l = e.lifetime;
                if l == Lifetime::default() {
                    continue;
                }
                let (pout, bout) = lock(&e.out.sa).counters();
                let st = lock(&e.inb.sa).stats();
                let bytes = bout.max(st.bytes);
                let packets = pout.max(st.packets);
                let over = |limit: u64, v: u64| limit != 0 && v >= limit;
                let hard_hit = over(l.hard_bytes, bytes)
                    || over(l.hard_packets, packets)
                    || l.hard_time.is_some_and(|d| e.installed.elapsed() >= d);
                if hard_hit {
                    hard.push((e.owner.clone(), *spi));
                } else if !e.soft_sent
                    && (over(l.soft_bytes, bytes) || over(l.soft_packets, packets))
                {
                    e.soft_sent = true;
                    soft.push(*spi);
                }
            }
        }
        for spi in soft {
            let _ = sh.events.send(DataplaneEvent::Expire {
                spi_in: spi,
                hard: false,
            });
        }
        for (owner, spi) in hard {
            tracing::info!(conn = owner, "SA {spi:08x}: hard lifetime reached, removed");
            sh.remove_sa(&owner, spi, false);
            let _ = sh.events.send(DataplaneEvent::Expire {
                spi_in: spi,
                hard: true,
            });
        }
        // NAT keepalives (RFC 3948 §2.3) for SAs that sent nothing lately.
        let ka = sh.opts.keep_alive;
        if !ka.is_zero() && last_keepalive.elapsed() >= Duration::from_secs(1) {
            last_keepalive = Instant::now();
            let now = sh.now_ms();
            let due: Vec<(SocketAddr, SocketAddr)> = {
                let t = sh.tables.read().unwrap_or_else(|e| e.into_inner());
                let mut v: Vec<(SocketAddr, SocketAddr)> = t
                    .out_by_reqid
                    .values()
                    .filter(|o| {
                        now.saturating_sub(o.last_tx_ms.load(Ordering::Relaxed))
                            >= ka.as_millis() as u64
                    })
                    .map(|o| {
                        o.last_tx_ms.store(now, Ordering::Relaxed);
                        (o.local, o.remote)
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            for (local, remote) in due {
                if let Some(s) = sh.sock_for(local) {
                    if udp::send_one(s.sock.as_raw_fd(), &[0xff], remote).is_ok() {
                        sh.stats.keepalives_tx.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
