//! The `xfrm` dataplane: CHILD SAs as Linux kernel ESP, keyed over netlink
//! XFRM (states, policies, traps), with ACQUIRE and EXPIRE from the kernel.
//!
//! * Messages are built in [`build`] (pure), the bookkeeping of what each
//!   connection owns is in [`tables`] (pure), and the netlink I/O is on
//!   the threads of [`nl`].
//! * Every object vpnd installs carries a reqid in vpnd's range
//!   ([`build::REQID_BASE`]); [`XfrmDataplane::reconcile`] removes such
//!   objects a crashed vpnd left, and logs each.
//! * A CHILD SA is installed all or nothing: when the kernel refuses any of
//!   its states or policies, what was added is removed again and the
//!   kernel's message is returned.
//! * Rekeys are make-before-break: the new pair goes in under the child's
//!   policies before the old one is removed, the old inbound state stays
//!   [`LINGER`] longer for packets in flight, and as rekey responder the new
//!   outbound state waits until the old SA goes (the peer then has the new
//!   inbound SA).

pub mod build;
pub mod nl;
pub mod probe;
pub mod routes;
pub mod sockets;
pub mod tables;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlink_packet_xfrm::{XfrmAttrs, XfrmMessage};
use tokio::sync::broadcast;

use self::build::{Direction, PolicyKey, StateKey};
use self::nl::{Answer, KernelEvent, Netlink, Request};
use self::tables::{Loose, SaEntry, Tables};
use crate::{
    Dataplane, DataplaneError, DataplaneEvent, EncapSockets, FailNext, FaultInjection, InstalledSa,
    SaCounters, SaInstall, Trap,
};

pub use self::build::XfrmOptions;

/// How long the inbound state of a rekeyed SA outlives it.
pub const LINGER: Duration = Duration::from_secs(3);

const BACKEND: &str = "xfrm";

fn failed(what: impl Into<String>) -> DataplaneError {
    DataplaneError::Failed {
        backend: BACKEND,
        what: what.into(),
    }
}

/// How the backend runs.
#[derive(Clone, Debug)]
pub struct XfrmSettings {
    /// Routes for tunnel-mode children in `route_table` (strongSwan's
    /// `install_routes`).
    pub install_routes: bool,
    pub route_table: u32,
    /// NAT keepalive interval for ESP-in-UDP SAs (RFC 3948 §2.3); zero
    /// disables.
    pub keep_alive: Duration,
}

impl Default for XfrmSettings {
    fn default() -> Self {
        XfrmSettings {
            install_routes: true,
            route_table: 220,
            keep_alive: Duration::from_secs(20),
        }
    }
}

struct Shared {
    nl: Netlink,
    routes: Option<routes::RouteTable>,
    sockets: sockets::KernelSockets,
    keepalives: AtomicU64,
    tables: Mutex<Tables>,
    events: broadcast::Sender<DataplaneEvent>,
    fail_next: FailNext,
    kernel_errors: AtomicU64,
    bad_events: Arc<AtomicU64>,
    acquires: AtomicU64,
    expires: AtomicU64,
}

/// The kernel XFRM backend.
pub struct XfrmDataplane {
    shared: Arc<Shared>,
}

impl XfrmDataplane {
    /// Opens the netlink sockets and starts listening for kernel events.
    pub fn new(settings: XfrmSettings) -> std::io::Result<XfrmDataplane> {
        let nl = Netlink::open()?;
        let routes = if settings.install_routes {
            Some(routes::RouteTable::open(settings.route_table)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            nl,
            routes,
            sockets: sockets::KernelSockets::default(),
            keepalives: AtomicU64::new(0),
            tables: Mutex::new(Tables::default()),
            events: broadcast::channel(1024).0,
            fail_next: FailNext::default(),
            kernel_errors: AtomicU64::new(0),
            bad_events: Arc::new(AtomicU64::new(0)),
            acquires: AtomicU64::new(0),
            expires: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        nl::listen(
            move |ev| {
                if let Some(s) = weak.upgrade() {
                    s.kernel_event(ev);
                }
            },
            shared.bad_events.clone(),
        )?;
        if !settings.keep_alive.is_zero() {
            let weak = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("xfrm-keepalive".into())
                .spawn(move || loop {
                    std::thread::sleep(settings.keep_alive);
                    let Some(s) = weak.upgrade() else { return };
                    s.send_keepalives();
                })?;
        }
        Ok(XfrmDataplane { shared })
    }

    /// Removes the states and policies in vpnd's reqid range that this
    /// process did not install (a crashed vpnd's), returning a line per
    /// object removed.
    pub fn reconcile(&self) -> Vec<String> {
        self.shared.reconcile()
    }

    /// Kernel states and policies that vpnd does not know: another keying
    /// daemon's, an operator's, or stale ones in vpnd's range.
    pub fn unknown(&self) -> Vec<String> {
        self.shared.unknown()
    }
}

fn lock(t: &Mutex<Tables>) -> std::sync::MutexGuard<'_, Tables> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        lock(&self.tables)
    }

    /// One NAT keepalive to the peer of every ESP-in-UDP SA.
    fn send_keepalives(&self) {
        let peers: Vec<(std::net::SocketAddr, std::net::SocketAddr)> = self
            .lock()
            .sas
            .values()
            .filter(|s| s.encap)
            .map(|s| (s.local, s.remote))
            .collect();
        for (local, remote) in peers {
            if self.sockets.keepalive(local, remote) {
                self.keepalives.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn add_routes(&self, rs: &[routes::Route]) {
        if let Some(t) = &self.routes {
            t.add(rs);
        }
    }

    fn remove_routes(&self, rs: &[routes::Route]) {
        if let Some(t) = &self.routes {
            t.remove(rs);
        }
    }

    fn routes_for(
        &self,
        local_ts: &[ike::wire::TrafficSelector],
        remote_ts: &[ike::wire::TrafficSelector],
        local: IpAddr,
        remote: IpAddr,
        mode: ike::config::Mode,
    ) -> Vec<routes::Route> {
        if self.routes.is_none() {
            return Vec::new();
        }
        routes::child_routes(local_ts, remote_ts, local, remote, mode)
    }

    /// Runs `requests`; the errors, each named by its label.
    fn run(&self, requests: Vec<(String, Request)>) -> Vec<Result<Answer, String>> {
        let (labels, reqs): (Vec<String>, Vec<Request>) = requests.into_iter().unzip();
        self.nl
            .run(reqs)
            .into_iter()
            .zip(labels)
            .map(|(a, label)| match a {
                Answer::Error(e) => {
                    self.kernel_errors.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("vpnd_xfrm_kernel_errors_total").increment(1);
                    Err(format!("{label}: {e}"))
                }
                ok => Ok(ok),
            })
            .collect()
    }

    /// Deletes, ignoring "already gone".
    fn delete(&self, requests: Vec<(String, Request)>) {
        for r in self.run(requests).into_iter().filter_map(Result::err) {
            if !r.contains("No such process") && !r.contains("No such file") {
                tracing::warn!(target: "vpnd::xfrm", "{r}");
            }
        }
    }

    fn delete_state(&self, l: Loose) -> (String, Request) {
        (
            format!("deleting state {:08x}", l.key.spi),
            Request::Ack(build::delete_state(l.key, l.mark)),
        )
    }

    fn delete_policies(keys: &[PolicyKey]) -> Vec<(String, Request)> {
        keys.iter()
            .map(|k| {
                (
                    "deleting policy".to_string(),
                    Request::Ack(build::delete_policy(k)),
                )
            })
            .collect()
    }

    fn trap_policies(t: &Trap) -> Vec<(XfrmMessage, PolicyKey)> {
        let any = |ts: &[ike::wire::TrafficSelector]| {
            ts.first()
                .map(|t| t.start_addr)
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        };
        let local = t.local.unwrap_or_else(|| unspecified(any(&t.local_ts)));
        let remote = t.remote.unwrap_or_else(|| unspecified(any(&t.remote_ts)));
        build::child_policies(
            &t.local_ts,
            &t.remote_ts,
            local,
            remote,
            t.reqid,
            t.mode,
            &t.opts,
            true,
        )
    }

    /// Deletes the reserved (never installed) state `spi`.
    fn release_spi(&self, spi: u32) {
        let larval = self.lock().larval.remove(&spi);
        if let Some((_, key)) = larval {
            self.delete(vec![self.delete_state(Loose { key, mark: (0, 0) })]);
        }
    }

    fn install(&self, sa: &SaInstall) -> Result<(), DataplaneError> {
        if let Err(e) = self.fail_next.check(&sa.owner) {
            // Refused before the kernel saw it: its reserved SPI goes too.
            self.release_spi(sa.spi_in);
            return Err(e);
        }
        let (update_in, child_state) = {
            let t = self.lock();
            if t.sas.contains_key(&sa.spi_in) {
                return Err(DataplaneError::Duplicate(sa.spi_in));
            }
            let c = t.children.get(&(sa.owner.clone(), sa.child.clone()));
            (
                t.larval.contains_key(&sa.spi_in),
                c.map(|c| (c.policies.is_empty(), c.trapped)),
            )
        };
        let inbound = build::state(
            sa,
            &Direction {
                src: sa.remote,
                dst: sa.local,
                spi: sa.spi_in,
                key: &sa.keys.inbound,
                mark: sa.opts.mark_in,
                if_id: sa.opts.if_id_in,
                update: update_in,
            },
        );
        let outbound = build::state(
            sa,
            &Direction {
                src: sa.local,
                dst: sa.remote,
                spi: sa.spi_out,
                key: &sa.keys.outbound,
                mark: sa.opts.mark_out,
                if_id: sa.opts.if_id_out,
                update: false,
            },
        );
        // As rekey responder, the new outbound SA waits for the old one to go.
        let defer_out = sa.rekey_of.is_some() && !sa.initiator;
        let mut reqs = vec![(
            format!("adding inbound SA {:08x}", sa.spi_in),
            Request::Ack(inbound),
        )];
        if !defer_out {
            reqs.push((
                format!("adding outbound SA {:08x}", sa.spi_out),
                Request::Ack(outbound.clone()),
            ));
        }
        // Policies: new ones for the child's first SA, the trap's replaced
        // by the SA's, or (a rekey, a second SA) the ones that are there.
        let (needs_policies, was_trapped) = match child_state {
            None | Some((true, _)) => (true, false),
            Some((false, trapped)) => (trapped, trapped),
        };
        let policies = if needs_policies {
            build::child_policies(
                &sa.local_ts,
                &sa.remote_ts,
                sa.local.ip(),
                sa.remote.ip(),
                sa.reqid,
                sa.mode,
                &sa.opts,
                false,
            )
        } else {
            Vec::new()
        };
        for (m, _) in &policies {
            reqs.push(("adding policy".to_string(), Request::Ack(m.clone())));
        }
        let results = self.run(reqs);
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        if !errors.is_empty() {
            self.roll_back(sa, &results, defer_out, &policies, was_trapped);
            return Err(failed(format!(
                "CHILD SA {:08x} of '{}' not installed: {}",
                sa.spi_in,
                sa.owner,
                errors.join("; ")
            )));
        }
        let mut t = self.lock();
        if let Some(old) = sa.rekey_of.filter(|_| defer_out) {
            t.successor.insert(old, sa.spi_in);
        }
        t.insert_sa(SaEntry {
            owner: sa.owner.clone(),
            child: sa.child.clone(),
            reqid: sa.reqid,
            spi_in: sa.spi_in,
            spi_out: sa.spi_out,
            local: sa.local,
            remote: sa.remote,
            opts: sa.opts,
            encap: sa.encap,
            pending_out: defer_out.then_some(outbound),
        });
        if needs_policies {
            let c = t.child_mut(&sa.owner, &sa.child);
            c.policies = policies.into_iter().map(|(_, k)| k).collect();
            c.trapped = false;
            if !was_trapped {
                drop(t);
                let rs = self.routes_for(
                    &sa.local_ts,
                    &sa.remote_ts,
                    sa.local.ip(),
                    sa.remote.ip(),
                    sa.mode,
                );
                self.add_routes(&rs);
                self.lock().child_mut(&sa.owner, &sa.child).routes = rs;
            }
        }
        Ok(())
    }

    /// Undoes what of `sa` the kernel accepted.
    fn roll_back(
        &self,
        sa: &SaInstall,
        results: &[Result<Answer, String>],
        defer_out: bool,
        policies: &[(XfrmMessage, PolicyKey)],
        was_trapped: bool,
    ) {
        let mut undo = Vec::new();
        let ok = |i: usize| results.get(i).is_some_and(|r| r.is_ok());
        // Added, or reserved (ALLOCSPI) and refused: either way it goes.
        if ok(0) || self.lock().larval.contains_key(&sa.spi_in) {
            undo.push(self.delete_state(Loose {
                key: StateKey {
                    dst: sa.local.ip(),
                    spi: sa.spi_in,
                },
                mark: sa.opts.mark_in,
            }));
        }
        let first_policy = if defer_out { 1 } else { 2 };
        if !defer_out && ok(1) {
            undo.push(self.delete_state(Loose {
                key: StateKey {
                    dst: sa.remote.ip(),
                    spi: sa.spi_out,
                },
                mark: sa.opts.mark_out,
            }));
        }
        let added: Vec<PolicyKey> = policies
            .iter()
            .enumerate()
            .filter(|(i, _)| ok(first_policy + i))
            .map(|(_, (_, k))| *k)
            .collect();
        if was_trapped {
            // Put the trap back as it was.
            let trap = self
                .lock()
                .children
                .get(&(sa.owner.clone(), sa.child.clone()))
                .and_then(|c| c.trap.clone());
            if let Some(trap) = trap {
                for (m, _) in Self::trap_policies(&trap) {
                    undo.push(("restoring trap".to_string(), Request::Ack(m)));
                }
            }
        } else {
            undo.extend(Self::delete_policies(&added));
        }
        self.delete(undo);
        self.lock().larval.remove(&sa.spi_in);
    }

    /// Removes the SA pair `spi_in` of `owner`; returns the inbound SPI to
    /// delete after [`LINGER`] when a rekey replaced it.
    fn remove(&self, owner: &str, spi_in: u32) -> Option<u32> {
        let mut reqs = Vec::new();
        let mut linger = None;
        let mut routes_gone = Vec::new();
        {
            let mut t = self.lock();
            if let Some((o, key)) = t.larval.remove(&spi_in) {
                if o == owner {
                    reqs.push(self.delete_state(Loose { key, mark: (0, 0) }));
                }
            }
            if let Some(l) = t.lingering.remove(&spi_in) {
                reqs.push(self.delete_state(l.1));
            }
            if t.sas.get(&spi_in).is_some_and(|s| s.owner == owner) {
                let sa = t.take_sa(spi_in).expect("present");
                // A rekeyed SA's successor sends from now on.
                if let Some(next) = t.successor.remove(&spi_in) {
                    if let Some(out) = t.sas.get_mut(&next).and_then(|n| n.pending_out.take()) {
                        reqs.push(("adding deferred outbound SA".into(), Request::Ack(out)));
                    }
                }
                t.successor.retain(|_, next| *next != spi_in);
                if sa.pending_out.is_none() {
                    reqs.push(self.delete_state(Loose {
                        key: sa.out_key(),
                        mark: sa.opts.mark_out,
                    }));
                }
                let inbound = Loose {
                    key: sa.in_key(),
                    mark: sa.opts.mark_in,
                };
                let key = (sa.owner.clone(), sa.child.clone());
                let child = t.child_mut(&key.0, &key.1);
                if child.sas.is_empty() {
                    reqs.push(self.delete_state(inbound));
                    let keys = std::mem::take(&mut child.policies);
                    match child.trap.clone() {
                        Some(trap) => {
                            for (m, k) in Self::trap_policies(&trap) {
                                reqs.push(("restoring trap".into(), Request::Ack(m)));
                                child.policies.push(k);
                            }
                            child.trapped = true;
                        }
                        None => {
                            reqs.extend(Self::delete_policies(&keys));
                            routes_gone = std::mem::take(&mut child.routes);
                        }
                    }
                    t.prune(&key.0, &key.1);
                } else {
                    // Rekeyed: packets in flight on the old SA still arrive.
                    t.lingering.insert(spi_in, (sa.owner.clone(), inbound));
                    linger = Some(spi_in);
                }
            }
        }
        self.delete(reqs);
        self.remove_routes(&routes_gone);
        linger
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        let policies = Self::trap_policies(trap);
        let has_sa = {
            let mut t = self.lock();
            let c = t.child_mut(&trap.owner, &trap.child);
            c.trap = Some(trap.clone());
            !c.sas.is_empty()
        };
        self.lock().by_reqid.insert(
            build::kernel_reqid(trap.reqid),
            (trap.owner.clone(), trap.child.clone()),
        );
        if has_sa {
            // The SA's policies stay; the trap comes back when it goes.
            return Ok(());
        }
        let reqs = policies
            .iter()
            .map(|(m, _)| ("adding trap policy".to_string(), Request::Ack(m.clone())))
            .collect();
        let results = self.run(reqs);
        let errors: Vec<String> = results.iter().filter_map(|r| r.clone().err()).collect();
        let added: Vec<PolicyKey> = policies
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|((_, k), _)| *k)
            .collect();
        if !errors.is_empty() {
            self.delete(Self::delete_policies(&added));
            let mut t = self.lock();
            t.child_mut(&trap.owner, &trap.child).trap = None;
            t.prune(&trap.owner, &trap.child);
            return Err(failed(format!(
                "trap of '{}/{}' not installed: {}",
                trap.owner,
                trap.child,
                errors.join("; ")
            )));
        }
        let rs = self.routes_for(
            &trap.local_ts,
            &trap.remote_ts,
            // An end the connection does not name routes nothing.
            trap.local.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            trap.remote.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            trap.mode,
        );
        self.add_routes(&rs);
        let mut t = self.lock();
        let c = t.child_mut(&trap.owner, &trap.child);
        c.policies = added;
        c.trapped = true;
        c.routes = rs;
        Ok(())
    }

    fn remove_trap(&self, owner: &str, child: &str) {
        let (keys, rs) = {
            let mut t = self.lock();
            let Some(c) = t.children.get_mut(&(owner.to_string(), child.to_string())) else {
                return;
            };
            let Some(trap) = c.trap.take() else { return };
            let (keys, rs) = if c.trapped {
                c.trapped = false;
                (
                    std::mem::take(&mut c.policies),
                    std::mem::take(&mut c.routes),
                )
            } else {
                (Vec::new(), Vec::new())
            };
            t.by_reqid.remove(&build::kernel_reqid(trap.reqid));
            t.prune(owner, child);
            (keys, rs)
        };
        self.delete(Self::delete_policies(&keys));
        self.remove_routes(&rs);
    }

    /// Everything of `owner`: its SAs' states, lingering and reserved
    /// states, its policies and traps.
    fn remove_owner(&self, owner: &str) {
        let mut reqs = Vec::new();
        let mut rs = Vec::new();
        {
            let mut t = self.lock();
            for key in t.owner_children(owner) {
                let c = t.children.remove(&key).expect("listed");
                for spi in &c.sas {
                    if let Some(sa) = t.take_sa(*spi) {
                        reqs.push(self.delete_state(Loose {
                            key: sa.in_key(),
                            mark: sa.opts.mark_in,
                        }));
                        if sa.pending_out.is_none() {
                            reqs.push(self.delete_state(Loose {
                                key: sa.out_key(),
                                mark: sa.opts.mark_out,
                            }));
                        }
                        t.successor.remove(spi);
                    }
                }
                reqs.extend(Self::delete_policies(&c.policies));
                rs.extend(c.routes);
                if let Some(trap) = c.trap {
                    t.by_reqid.remove(&build::kernel_reqid(trap.reqid));
                }
            }
            let lingering: Vec<u32> = t
                .lingering
                .iter()
                .filter(|(_, (o, _))| o == owner)
                .map(|(s, _)| *s)
                .collect();
            for spi in lingering {
                if let Some((_, l)) = t.lingering.remove(&spi) {
                    reqs.push(self.delete_state(l));
                }
            }
            let larval: Vec<u32> = t
                .larval
                .iter()
                .filter(|(_, (o, _))| o == owner)
                .map(|(s, _)| *s)
                .collect();
            for spi in larval {
                if let Some((_, key)) = t.larval.remove(&spi) {
                    reqs.push(self.delete_state(Loose { key, mark: (0, 0) }));
                }
            }
        }
        self.delete(reqs);
        self.remove_routes(&rs);
    }

    fn alloc_spi(&self, owner: &str, local: IpAddr, remote: IpAddr, reqid: u32) -> Option<u32> {
        let answer = self
            .nl
            .one(Request::Get(build::alloc_spi(remote, local, reqid)));
        let spi = match answer {
            Answer::Data(mut m) => match m.pop() {
                Some(XfrmMessage::AddSa(s)) | Some(XfrmMessage::UpdateSa(s)) => {
                    s.user_sa_info.id.spi
                }
                _ => return None,
            },
            Answer::Error(e) => {
                tracing::warn!(target: "vpnd::xfrm", "ALLOCSPI for '{owner}': {e}");
                return None;
            }
            Answer::Done => return None,
        };
        self.lock()
            .larval
            .insert(spi, (owner.to_string(), StateKey { dst: local, spi }));
        Some(spi)
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        let sa = self.lock().sas.get(&spi_in).cloned()?;
        let answers = self.nl.run(vec![
            Request::Get(build::get_state(sa.in_key(), sa.opts.mark_in)),
            Request::Get(build::get_state(sa.out_key(), sa.opts.mark_out)),
        ]);
        let info = |a: &Answer| match a {
            Answer::Data(m) => match m.first() {
                Some(XfrmMessage::AddSa(s)) => Some(s.user_sa_info),
                _ => None,
            },
            _ => None,
        };
        let mut c = SaCounters::default();
        if let Some(i) = answers.first().and_then(info) {
            c.bytes_in = i.lifetime_cur.bytes;
            c.packets_in = i.lifetime_cur.packets;
            c.replay_drops = (i.stats.replay + i.stats.replay_window) as u64;
            c.integrity_failures = i.stats.integrity_failed as u64;
        }
        if let Some(o) = answers.get(1).and_then(info) {
            c.bytes_out = o.lifetime_cur.bytes;
            c.packets_out = o.lifetime_cur.packets;
        }
        Some(c)
    }

    fn kernel_event(&self, ev: KernelEvent) {
        match ev {
            KernelEvent::Acquire(a) => {
                let reqid = a.nlas.iter().find_map(|n| match n {
                    XfrmAttrs::Template(t) => t.first().map(|t| t.reqid),
                    _ => None,
                });
                let who = reqid.and_then(|r| self.lock().by_reqid.get(&r).cloned());
                if let Some((owner, child)) = who {
                    self.acquires.fetch_add(1, Ordering::Relaxed);
                    let _ = self.events.send(DataplaneEvent::Acquire { owner, child });
                }
            }
            KernelEvent::Expire(e) => {
                let st = &e.expire.state;
                let dst = if st.family == netlink_packet_xfrm::AF_INET6 {
                    IpAddr::V6(st.id.daddr.to_ipv6())
                } else {
                    IpAddr::V4(st.id.daddr.to_ipv4())
                };
                let key = StateKey {
                    dst,
                    spi: st.id.spi,
                };
                let spi_in = self.lock().by_state.get(&key).copied();
                if let Some(spi_in) = spi_in {
                    self.expires.fetch_add(1, Ordering::Relaxed);
                    let _ = self.events.send(DataplaneEvent::Expire {
                        spi_in,
                        hard: e.expire.hard != 0,
                    });
                }
            }
        }
    }
}

/// Deletes the lingering inbound state `spi` after [`LINGER`] (at once
/// outside a Tokio runtime).
fn spawn_linger(shared: &Arc<Shared>, spi: u32) {
    let finish = move |s: &Shared| {
        let l = s.lock().lingering.remove(&spi);
        if let Some((_, l)) = l {
            s.delete(vec![s.delete_state(l)]);
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let weak = Arc::downgrade(shared);
            rt.spawn(async move {
                tokio::time::sleep(LINGER).await;
                if let Some(s) = weak.upgrade() {
                    tokio::task::spawn_blocking(move || finish(&s));
                }
            });
        }
        Err(_) => finish(shared),
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    if like.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    }
}

impl Dataplane for XfrmDataplane {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn install_sa(&self, sa: &SaInstall) -> Result<(), DataplaneError> {
        self.shared.install(sa)
    }

    fn remove_sa(&self, owner: &str, spi_in: u32) -> Result<(), DataplaneError> {
        if let Some(spi) = self.shared.remove(owner, spi_in) {
            spawn_linger(&self.shared, spi);
        }
        Ok(())
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        self.shared.install_trap(trap)
    }

    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError> {
        self.shared.remove_trap(owner, child);
        Ok(())
    }

    fn remove_owner(&self, owner: &str) {
        self.shared.remove_owner(owner)
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        self.shared.counters(spi_in)
    }

    fn installed(&self) -> Vec<InstalledSa> {
        self.shared.lock().installed()
    }

    fn spis_of(&self, owner: &str) -> Vec<u32> {
        self.shared.lock().spis_of(owner)
    }

    fn traps(&self) -> Vec<Trap> {
        self.shared.lock().traps()
    }

    fn subscribe(&self) -> broadcast::Receiver<DataplaneEvent> {
        self.shared.events.subscribe()
    }

    fn alloc_spi(&self, owner: &str, local: IpAddr, remote: IpAddr, reqid: u32) -> Option<u32> {
        self.shared.alloc_spi(owner, local, remote, reqid)
    }

    fn release_spi(&self, spi_in: u32) {
        self.shared.release_spi(spi_in)
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = &self.shared;
        let t = s.lock();
        vec![
            ("xfrm_sas", t.sas.len() as u64),
            ("xfrm_lingering", t.lingering.len() as u64),
            ("xfrm_reserved_spis", t.larval.len() as u64),
            (
                "xfrm_kernel_errors",
                s.kernel_errors.load(Ordering::Relaxed),
            ),
            ("xfrm_bad_events", s.bad_events.load(Ordering::Relaxed)),
            ("xfrm_acquires", s.acquires.load(Ordering::Relaxed)),
            ("xfrm_expires", s.expires.load(Ordering::Relaxed)),
            ("xfrm_keepalives_sent", s.keepalives.load(Ordering::Relaxed)),
        ]
    }

    fn encap(&self) -> &dyn EncapSockets {
        &self.shared.sockets
    }

    fn faults(&self) -> Option<&dyn FaultInjection> {
        Some(self)
    }

    fn unknown_state(&self) -> Vec<String> {
        self.shared.unknown()
    }
}

impl FaultInjection for XfrmDataplane {
    fn fail_next_install(&self, owner: &str) {
        self.shared.fail_next.arm(owner);
    }

    fn simulate_acquire(&self, owner: &str, child: &str) {
        let _ = self.shared.events.send(DataplaneEvent::Acquire {
            owner: owner.to_string(),
            child: child.to_string(),
        });
    }
}
