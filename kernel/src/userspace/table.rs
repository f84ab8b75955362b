//! The userspace dataplane's tables, with no clock and no I/O: SAs by
//! inbound SPI, the current outbound SA of every reqid, each child's
//! policies in the SPD (protect or trap), reference-counted routes,
//! lifetimes and the drain windows of rekeyed SAs.
//!
//! Time comes in as `now` ([`Tables::tick`], [`Tables::remove_sa`]); route
//! changes go out as [`RouteOps`] for the caller to apply (netlink), and
//! lifetime expiries as events for it to send. The worker and housekeeping
//! threads own the clock and the sockets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ike::config::Mode;
use ike::wire::TrafficSelector;

use super::esp::{self, InboundSa, OutboundSa};
use super::ip::{self, FiveTuple};
use super::route;
use super::spd::{self, Action, Policy, PolicyId, Spd};
use crate::lifetime::{LifetimeClock, Verdict};
use crate::{DataplaneError, DataplaneEvent, InstalledSa, SaCounters, SaInstall, Trap};

pub(super) const BACKEND: &str = "userspace";

/// How long the inbound half of an SA replaced by a rekey keeps accepting
/// packets (strongSwan's `delete_rekeyed_delay` is 5 s): the peer's last
/// packets on it may still be queued, e.g. on another worker's socket than
/// the DELETE that removed it.
pub(super) const REKEYED_DRAIN: Duration = Duration::from_secs(2);

pub(super) fn failed(what: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Failed {
        backend: BACKEND,
        what: what.to_string(),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending half of an SA and where its packets go.
pub(super) struct OutSa {
    pub(super) sa: Mutex<OutboundSa>,
    pub(super) remote: SocketAddr,
    /// The local address; the socket is resolved by it at send time.
    pub(super) local: SocketAddr,
    /// Last time a packet went out (for keepalives), as ms since the
    /// tables' epoch.
    pub(super) last_tx_ms: AtomicU64,
}

/// The receiving half and what it may deliver.
pub(super) struct InSa {
    pub(super) sa: Mutex<InboundSa>,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// Inner packets outside the selectors (RFC 4301 §5.2), dropped.
    pub(super) selector_drops: AtomicU64,
    /// A rekeyed SA whose outbound half waits: the peer may not have
    /// installed it yet. The first packet that arrives on this inbound half
    /// proves it has; the old SA's removal does too (as strongSwan, which
    /// as rekey responder installs the outbound SA only then).
    pub(super) pending_out: AtomicBool,
    pub(super) reqid: u32,
    /// Transport mode: the local address the peer's packets are rebuilt to
    /// (their source is the address they came from).
    pub(super) transport_to: Option<IpAddr>,
}

impl InSa {
    /// Whether a decapsulated packet lies within the SA's selectors
    /// (source in the remote, destination in the local ones).
    pub(super) fn allows(&self, packet: &[u8]) -> bool {
        let Ok(t) = ip::parse_five_tuple(packet) else {
            return false;
        };
        let (sp, dp) = match t.ports {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        };
        self.remote_ts
            .iter()
            .any(|r| spd::ts_matches(r, t.src, t.proto, sp))
            && self
                .local_ts
                .iter()
                .any(|l| spd::ts_matches(l, t.dst, t.proto, dp))
    }
}

/// Both halves of an SA about to be installed (keyed outside the tables'
/// lock).
pub(super) struct NewSa {
    out: Arc<OutSa>,
    inb: Arc<InSa>,
}

impl NewSa {
    /// Checks what this backend can carry and keys both halves; `now_ms`
    /// starts the keepalive clock.
    pub(super) fn build(sa: &SaInstall, now_ms: u64) -> Result<NewSa, DataplaneError> {
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
        Ok(NewSa {
            out: Arc::new(OutSa {
                sa: Mutex::new(outbound),
                remote: sa.remote,
                local: sa.local,
                last_tx_ms: AtomicU64::new(now_ms),
            }),
            inb: Arc::new(InSa {
                sa: Mutex::new(inbound),
                local_ts,
                remote_ts,
                selector_drops: AtomicU64::new(0),
                pending_out: AtomicBool::new(false),
                reqid: sa.reqid,
                transport_to,
            }),
        })
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

/// A route change into the TUN device for the caller to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RouteOp {
    /// Route these prefixes into the device; the source is an address of
    /// this host inside `local_ts`, if it has one.
    Add {
        prefixes: Vec<(IpAddr, u8)>,
        local_ts: Vec<TrafficSelector>,
    },
    /// The last user of these prefixes is gone.
    Del(Vec<(IpAddr, u8)>),
}

/// Route changes, in order; they must be applied.
#[must_use]
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RouteOps(pub(super) Vec<RouteOp>);

impl RouteOps {
    fn append(&mut self, mut other: RouteOps) {
        self.0.append(&mut other.0);
    }
}

/// What [`Tables::tick`] did: lifetime events to send (soft ones first,
/// then hard ones, whose SAs are already gone) and route changes to make.
#[must_use]
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tick {
    pub(super) events: Vec<DataplaneEvent>,
    pub(super) routes: RouteOps,
}

struct SaEntry {
    owner: String,
    child: String,
    reqid: u32,
    spi_out: u32,
    out: Arc<OutSa>,
    inb: Arc<InSa>,
    life: LifetimeClock,
}

/// Per (owner, child): its policies, routes and SAs.
#[derive(Default)]
struct ChildPolicies {
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

pub(super) fn child_key(owner: &str, child: &str) -> (String, String) {
    (owner.to_string(), child.to_string())
}

/// Everything the workers look packets up in.
pub(super) struct Tables {
    /// Where the keepalive clock (`last_tx_ms`) starts.
    epoch: Instant,
    spd: Spd,
    children: HashMap<(String, String), ChildPolicies>,
    out_by_reqid: HashMap<u32, Arc<OutSa>>,
    inbound: HashMap<u32, Arc<InSa>>,
    sas: HashMap<u32, SaEntry>,
    /// Inbound halves of SAs replaced by a rekey, still decrypting until
    /// the deadline: (SPI, owner, deadline).
    draining: Vec<(u32, String, Instant)>,
    /// Users of each route into the device.
    route_refs: HashMap<(IpAddr, u8), usize>,
}

impl Tables {
    pub(super) fn new(epoch: Instant) -> Tables {
        Tables {
            epoch,
            spd: Spd::new(),
            children: HashMap::new(),
            out_by_reqid: HashMap::new(),
            inbound: HashMap::new(),
            sas: HashMap::new(),
            draining: Vec::new(),
            route_refs: HashMap::new(),
        }
    }

    /// `now` in ms since the epoch, as `last_tx_ms` counts.
    pub(super) fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The action of the policy an outbound packet falls under.
    pub(super) fn policy(&self, t: &FiveTuple) -> Option<&Action> {
        self.spd.lookup_tuple(t).map(|p| &p.action)
    }

    /// The SA that currently sends for `reqid`.
    pub(super) fn outbound(&self, reqid: u32) -> Option<&Arc<OutSa>> {
        self.out_by_reqid.get(&reqid)
    }

    /// The inbound half of `spi` (installed, or draining after a rekey).
    pub(super) fn inbound(&self, spi: u32) -> Option<&Arc<InSa>> {
        self.inbound.get(&spi)
    }

    /// Every route into the device (for teardown).
    pub(super) fn routes(&self) -> Vec<(IpAddr, u8)> {
        self.route_refs.keys().copied().collect()
    }

    fn route_add(
        &mut self,
        ts: &[TrafficSelector],
        local_ts: &[TrafficSelector],
        ops: &mut RouteOps,
    ) -> Vec<(IpAddr, u8)> {
        let mut added = Vec::new();
        let mut fresh = Vec::new();
        for t in ts {
            for (dst, len) in route::range_to_prefixes(t.start_addr, t.end_addr) {
                let e = self.route_refs.entry((dst, len)).or_insert(0);
                if *e == 0 {
                    fresh.push((dst, len));
                }
                *e += 1;
                added.push((dst, len));
            }
        }
        if !fresh.is_empty() {
            ops.0.push(RouteOp::Add {
                prefixes: fresh,
                local_ts: local_ts.to_vec(),
            });
        }
        added
    }

    fn route_del(&mut self, routes: &[(IpAddr, u8)], ops: &mut RouteOps) {
        let mut gone = Vec::new();
        for r in routes {
            if let Some(e) = self.route_refs.get_mut(r) {
                *e -= 1;
                if *e == 0 {
                    self.route_refs.remove(r);
                    gone.push(*r);
                }
            }
        }
        if !gone.is_empty() {
            ops.0.push(RouteOp::Del(gone));
        }
    }

    /// Installs an SA pair: its policies (protect, replacing a trap's) and
    /// routes come with the child's first SA. A rekey keeps sending on the
    /// old SA until the peer shows it has the new one (or the old one goes)
    /// when we did not initiate it. Returns the outbound half (held packets
    /// go out on it).
    pub(super) fn install(
        &mut self,
        sa: &SaInstall,
        new: NewSa,
        now: Instant,
    ) -> Result<(Arc<OutSa>, RouteOps), DataplaneError> {
        if self.sas.contains_key(&sa.spi_in) {
            return Err(DataplaneError::Duplicate(sa.spi_in));
        }
        let NewSa { out, inb } = new;
        let mut ops = RouteOps::default();
        let key = child_key(&sa.owner, &sa.child);
        let needs_routes = self.children.get(&key).is_none_or(|c| c.routes.is_empty());
        let new_routes =
            needs_routes.then(|| self.route_add(&inb.remote_ts, &inb.local_ts, &mut ops));
        let c = self.children.entry(key.clone()).or_default();
        c.reqid = sa.reqid;
        c.local_ts = inb.local_ts.clone();
        c.remote_ts = inb.remote_ts.clone();
        if let Some(r) = new_routes {
            c.routes = r;
        }
        c.sas.push(sa.spi_in);
        let protecting = c.protecting;
        self.inbound.insert(sa.spi_in, inb.clone());
        let old_sending = !sa.initiator
            && sa.rekey_of.is_some_and(|old| {
                self.sas.contains_key(&old) && self.out_by_reqid.contains_key(&sa.reqid)
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
            self.out_by_reqid.insert(sa.reqid, out.clone());
        }
        self.sas.insert(
            sa.spi_in,
            SaEntry {
                owner: sa.owner.clone(),
                child: sa.child.clone(),
                reqid: sa.reqid,
                spi_out: sa.spi_out,
                out: out.clone(),
                inb,
                life: LifetimeClock::new(sa.lifetime, now),
            },
        );
        if !protecting {
            self.set_policies(&key, true);
        }
        Ok((out, ops))
    }

    /// Switches `reqid`'s outbound to the rekeyed SA `spi` the peer has
    /// started using.
    pub(super) fn promote(&mut self, reqid: u32, spi: u32) {
        if let Some(out) = self.sas.get(&spi).map(|e| e.out.clone()) {
            self.out_by_reqid.insert(reqid, out);
        }
    }

    /// Removes an SA pair; the child's newest remaining SA takes over
    /// sending, or, with none left, its trap (or nothing: policies and
    /// routes go). With `drain_since`, an SA that a newer one of its child
    /// replaces (a rekey) stops sending at once but keeps decrypting for
    /// [`REKEYED_DRAIN`] from then; otherwise (the child's last SA, `kill`,
    /// a hard lifetime) it goes entirely.
    pub(super) fn remove_sa(
        &mut self,
        owner: &str,
        spi_in: u32,
        drain_since: Option<Instant>,
    ) -> RouteOps {
        let mut ops = RouteOps::default();
        let Some(e) = self.sas.remove(&spi_in) else {
            return ops;
        };
        if e.owner != owner {
            tracing::warn!(
                "remove_sa: SPI {spi_in:08x} belongs to '{}', not '{owner}'",
                e.owner
            );
        }
        let key = child_key(&e.owner, &e.child);
        let newest = self.children.get_mut(&key).and_then(|c| {
            c.sas.retain(|s| *s != spi_in);
            c.sas.last().copied()
        });
        match drain_since {
            Some(now) if newest.is_some() => {
                self.draining
                    .push((spi_in, e.owner.clone(), now + REKEYED_DRAIN));
            }
            _ => {
                self.inbound.remove(&spi_in);
            }
        }
        if !self.children.contains_key(&key) {
            return ops;
        }
        match newest {
            Some(n) => {
                // Another SA of the child remains (rekey): it sends from now.
                if self
                    .out_by_reqid
                    .get(&e.reqid)
                    .is_some_and(|o| Arc::ptr_eq(o, &e.out))
                {
                    if let Some(s) = self.sas.get(&n) {
                        s.inb.pending_out.store(false, Ordering::SeqCst);
                        let o = s.out.clone();
                        self.out_by_reqid.insert(e.reqid, o);
                    }
                }
            }
            None => {
                self.out_by_reqid.remove(&e.reqid);
                // Trap policies take over, if there is a trap.
                self.set_policies(&key, false);
                if self.children.get(&key).is_some_and(|c| c.trap.is_none()) {
                    if let Some(c) = self.children.remove(&key) {
                        self.route_del(&c.routes, &mut ops);
                    }
                }
            }
        }
        ops
    }

    /// Installs a trap; its policies are in force while the child has no
    /// SA.
    pub(super) fn install_trap(&mut self, trap: &Trap) -> RouteOps {
        let mut ops = RouteOps::default();
        let key = child_key(&trap.owner, &trap.child);
        let has_routes = self
            .children
            .get(&key)
            .is_some_and(|c| !c.routes.is_empty());
        let routes =
            (!has_routes).then(|| self.route_add(&trap.remote_ts, &trap.local_ts, &mut ops));
        let c = self.children.entry(key.clone()).or_default();
        c.trap = Some(trap.clone());
        if let Some(r) = routes {
            c.routes = r;
        }
        if c.sas.is_empty() {
            c.reqid = trap.reqid;
            c.local_ts = trap.local_ts.clone();
            c.remote_ts = trap.remote_ts.clone();
            self.set_policies(&key, false);
        }
        ops
    }

    /// Removes a trap; with no SA left its policies and routes go too.
    /// `None`: the child is not known at all.
    pub(super) fn remove_trap(&mut self, owner: &str, child: &str) -> Option<RouteOps> {
        let mut ops = RouteOps::default();
        let key = child_key(owner, child);
        let c = self.children.get_mut(&key)?;
        c.trap = None;
        if c.sas.is_empty() {
            self.set_policies(&key, false);
            if let Some(c) = self.children.remove(&key) {
                self.route_del(&c.routes, &mut ops);
            }
        }
        Some(ops)
    }

    /// Removes everything of `owner`: traps, SAs (nothing keeps
    /// decrypting), policies and routes. Returns the children it had (their
    /// held packets go too).
    pub(super) fn remove_owner(&mut self, owner: &str) -> (Vec<String>, RouteOps) {
        let spis: Vec<u32> = self
            .sas
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(s, _)| *s)
            .collect();
        let children: Vec<String> = self
            .children
            .keys()
            .filter(|(o, _)| o == owner)
            .map(|(_, c)| c.clone())
            .collect();
        let mut ops = RouteOps::default();
        for c in &children {
            if let Some(o) = self.remove_trap(owner, c) {
                ops.append(o);
            }
        }
        for s in spis {
            ops.append(self.remove_sa(owner, s, None));
        }
        self.end_drains(|d_owner, _| d_owner == owner);
        (children, ops)
    }

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

    /// Replaces a child's SPD entries with protect (`true`) or trap
    /// policies.
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

    /// Time passes: drains past their deadline end; an SA over a soft
    /// limit raises `Expire { hard: false }` once, one over a hard limit
    /// is removed and raises `Expire { hard: true }`.
    pub(super) fn tick(&mut self, now: Instant) -> Tick {
        self.end_drains(|_, until| until <= now);
        let mut soft = Vec::new();
        let mut hard = Vec::new();
        for (spi, e) in self.sas.iter_mut() {
            if e.life.is_unlimited() {
                continue;
            }
            let (pout, bout) = lock(&e.out.sa).counters();
            let st = lock(&e.inb.sa).stats();
            let bytes = bout.max(st.bytes);
            let packets = pout.max(st.packets);
            match e.life.check(now, bytes, packets) {
                Verdict::Hard => hard.push((e.owner.clone(), *spi)),
                Verdict::Soft => soft.push(*spi),
                Verdict::Live => {}
            }
        }
        let mut tick = Tick::default();
        for spi in soft {
            tick.events.push(DataplaneEvent::Expire {
                spi_in: spi,
                hard: false,
            });
        }
        for (owner, spi) in hard {
            tracing::info!(conn = owner, "SA {spi:08x}: hard lifetime reached, removed");
            tick.routes.append(self.remove_sa(&owner, spi, None));
            tick.events.push(DataplaneEvent::Expire {
                spi_in: spi,
                hard: true,
            });
        }
        tick
    }

    /// The (local, remote) pairs of sending SAs that sent nothing for
    /// `interval` up to `now_ms` (RFC 3948 §2.3); each counts as having
    /// sent now.
    pub(super) fn keepalives_due(
        &self,
        now_ms: u64,
        interval: Duration,
    ) -> Vec<(SocketAddr, SocketAddr)> {
        let mut v: Vec<(SocketAddr, SocketAddr)> = self
            .out_by_reqid
            .values()
            .filter(|o| {
                now_ms.saturating_sub(o.last_tx_ms.load(Ordering::Relaxed))
                    >= interval.as_millis() as u64
            })
            .map(|o| {
                o.last_tx_ms.store(now_ms, Ordering::Relaxed);
                (o.local, o.remote)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub(super) fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        let e = self.sas.get(&spi_in)?;
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

    /// Inbound SPIs of `owner`'s SA pairs, by its children.
    pub(super) fn spis_of(&self, owner: &str) -> Vec<u32> {
        self.children
            .iter()
            .filter(|((o, _), _)| o == owner)
            .flat_map(|(_, c)| c.sas.iter().copied())
            .collect()
    }

    pub(super) fn installed(&self) -> Vec<InstalledSa> {
        let mut v: Vec<InstalledSa> = self
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

    pub(super) fn traps(&self) -> Vec<Trap> {
        self.children
            .values()
            .filter_map(|c| c.trap.clone())
            .collect()
    }

    /// Inbound drops over the installed SAs: (replays, integrity failures,
    /// selector mismatches).
    pub(super) fn drop_totals(&self) -> (u64, u64, u64) {
        let (mut replay, mut integrity, mut selector) = (0, 0, 0);
        for e in self.sas.values() {
            let st = lock(&e.inb.sa).stats();
            replay += st.replayed + st.too_old;
            integrity += st.integrity;
            selector += e.inb.selector_drops.load(Ordering::Relaxed);
        }
        (replay, integrity, selector)
    }
}

/// The tables on synthetic time: no threads, no TUN device, no netlink.
#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
