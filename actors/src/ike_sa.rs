//! The IKE SA actor: owns one `ike::sa::IkeSa`, its timers (retransmit,
//! DPD, IKE rekey) and its CHILD SA actors.
//!
//! Key computations (DH, SKEYSEED, KEYMAT) never run on the actor's task:
//! inputs that need them are processed on the blocking pool under a permit
//! of the key-computation scheduler, with the `IkeSa` moved out and back
//! (`Computed`). While it is out, further inputs wait in `deferred`; `Kill`
//! and `Status` are answered at once regardless.
//!
//! Invariants: every SPI this actor registered in the router is removed
//! when it stops; every CHILD SA it installed is removed from the dataplane
//! when the CHILD SA is deleted or this actor stops (after a panic the
//! Connection removes the connection's dataplane state instead).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::config::{display_identity, PeerConfig};
use ike::crypto::SystemRandom;
use ike::sa::{Accept, Command, Cost, Event, IkeSa, KeyWork, Responder, Timers, Transmit};
use ike::wire::Header;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use runtime::scheduler::{HalfOpenGuard, Priority};
use runtime::timer::Timer;
use tokio::task::JoinHandle;

use crate::child_sa::{ChildArgs, ChildMsg, ChildSaActor};
use crate::ctx::CtxRef;
use crate::derive_report;
use crate::report::{ChildReport, HandOver, IkeReport};
use crate::router::Datagram;
use crate::spec::ConnSpec;
use crate::status::{ChildStatus, IkeStatus};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A CHILD SA's updown script and event, if it has one.
type Updown = Option<(std::path::PathBuf, kernel::updown::UpdownEvent)>;

/// A CHILD SA actor this IKE SA owns.
struct ChildActor {
    actor: ActorRef<ChildMsg>,
    installed: Instant,
    updown: Updown,
}

/// Run the down script of a CHILD SA that is gone (not replaced by a rekey).
fn run_down(ctx: &CtxRef, updown: Updown) {
    if let Some((script, ev)) = updown {
        ctx.updown
            .run(script, kernel::updown::UpdownEvent { up: false, ..ev });
    }
}

/// How the actor comes to have an IKE SA.
pub enum IkeStart {
    Initiate {
        local: SocketAddr,
        remote: SocketAddr,
        children: Vec<String>,
    },
    /// An IKE_SA_INIT request for us as responder. The SA is half-open
    /// under the neutral Responders actor and always moves to the
    /// connection its peer authenticates as.
    Accept {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
        candidates: Vec<Arc<PeerConfig>>,
    },
    /// A responder SA whose peer authenticated as this connection, handed
    /// over by the actor that accepted it on the neutral path.
    Adopt(HandOver),
}

pub struct IkeArgs {
    pub ctx: CtxRef,
    pub spec: Arc<ConnSpec>,
    /// Where this actor reports (its owner: a Connection or Responders).
    pub parent: DerivedActorRef<IkeReport>,
    pub start: IkeStart,
}

/// Fault injection (`vpnd --impair`, `vpnctl impair`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impair {
    pub drop_inbound_pct: u32,
    pub drop_outbound_pct: u32,
    pub duplicate_pct: u32,
    pub corrupt_pct: u32,
    pub delay_ms: u32,
    pub stall: bool,
}

pub enum IkeMsg {
    Start,
    Datagram(Datagram),
    /// A CHILD SA actor's request (rekey or delete it).
    Child(ChildReport),
    Timer(u64),
    Command(Command),
    /// The SA is back from the blocking pool.
    Computed(Option<Box<IkeSa>>),
    Kill(RpcReplyPort<()>),
    Status(RpcReplyPort<IkeStatus>),
    Impair(Impair),
    /// `vpnctl impair CONN panic`: panic in this actor's handler once.
    Panic,
    /// The scheduler's half-open slot for our initiation.
    HalfOpen(HalfOpenGuard),
    /// New retry/retransmit/DPD settings (`vpnctl set`).
    UpdateSpec(Arc<ConnSpec>),
}

derive_report!(Datagram => IkeMsg::Datagram);
derive_report!(ChildReport => IkeMsg::Child);

pub struct IkeSaActor;

pub struct IkeState {
    _alive: runtime::counters::AliveGuard,
    ctx: CtxRef,
    spec: Arc<ConnSpec>,
    parent: DerivedActorRef<IkeReport>,
    start: Option<IkeStart>,
    /// A responder SA accepted on the neutral path: at IKE_AUTH it moves
    /// to its connection, whichever that is.
    neutral: bool,
    sa: Option<Box<IkeSa>>,
    busy: bool,
    work: Option<JoinHandle<()>>,
    deferred: VecDeque<IkeMsg>,
    registered: Vec<u64>,
    half_open_key: Option<(u64, SocketAddr)>,
    children: HashMap<u32, ChildActor>,
    timer_gen: u64,
    timer_at: Option<Instant>,
    /// The core's next deadline; dropping it cancels it.
    timer: Timer,
    guard: Option<HalfOpenGuard>,
    half_open_counted: bool,
    established: bool,
    /// When this SA started negotiating (for the establishment histogram).
    started_at: Option<Instant>,
    /// New retransmit or timer settings arrived while the SA was computing.
    spec_pending: bool,
    /// We started this SA (not a responder SA).
    initiated: bool,
    done: bool,
    impair: Impair,
    id: u64,
    snapshot: IkeStatus,
    span: tracing::Span,
}

/// The scheduler priority of a key computation: what a peer waits for
/// first, our own rekeys last.
fn priority(work: KeyWork) -> Priority {
    match work {
        KeyWork::Authenticate | KeyWork::PeerCreateChild => Priority::High,
        KeyWork::Establish => Priority::Normal,
        KeyWork::OwnCreateChild => Priority::Low,
    }
}

/// The core's timer settings for a connection.
fn timers(spec: &ConnSpec) -> Timers {
    Timers {
        dpd_delay: spec.dpd_delay,
        ike_rekey: spec.rekey_time,
        child_rekey: spec
            .children
            .iter()
            .map(|c| (c.name.clone(), c.rekey_time))
            .collect(),
        jitter_pct: spec.jitter_pct,
    }
}

fn roll(pct: u32) -> bool {
    pct > 0 && runtime::backoff::rand01() * 100.0 < pct as f64
}

/// Send one datagram through the connection's impairments.
async fn send_impaired(ctx: &CtxRef, impair: &Impair, t: Transmit) {
    if impair.stall || roll(impair.drop_outbound_pct) {
        return;
    }
    let mut t = t;
    if roll(impair.corrupt_pct) && !t.data.is_empty() {
        let i = (runtime::backoff::rand01() * t.data.len() as f64) as usize % t.data.len();
        t.data[i] ^= 0x40;
    }
    let copies = if roll(impair.duplicate_pct) { 2 } else { 1 };
    if impair.delay_ms > 0 {
        let ctx = ctx.clone();
        let delay = Duration::from_millis(impair.delay_ms as u64);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..copies {
                ctx.sockets.send(&t).await;
            }
        });
        return;
    }
    for _ in 0..copies {
        ctx.sockets.send(&t).await;
    }
}

impl IkeState {
    fn conn_name(&self) -> &str {
        &self.spec.name
    }

    fn register(&mut self, myself: &ActorRef<IkeMsg>) {
        let Some(sa) = self.sa.as_ref() else { return };
        let spi = sa.local_spi();
        if spi != 0 && !self.registered.contains(&spi) {
            self.ctx.router.insert_spi(spi, myself.get_derived());
            self.registered.push(spi);
        }
    }

    fn unregister_all(&mut self) {
        for spi in self.registered.drain(..) {
            self.ctx.router.remove_spi(spi);
        }
        if let Some((spi_i, peer)) = self.half_open_key.take() {
            self.ctx.router.remove_half_open(spi_i, peer);
        }
    }

    fn leave_half_open(&mut self) {
        self.guard = None;
        if self.half_open_counted {
            self.half_open_counted = false;
            self.ctx.half_open_sas.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Run a step that may compute keys on the blocking pool.
    fn offload(
        &mut self,
        myself: &ActorRef<IkeMsg>,
        priority: Priority,
        step: impl FnOnce(&mut IkeSa) + Send + 'static,
    ) {
        let Some(mut sa) = self.sa.take() else { return };
        self.busy = true;
        let sched = self.ctx.scheduler.clone();
        let me = myself.clone();
        self.work = Some(tokio::spawn(async move {
            let sa = sched
                .compute(priority, move || {
                    step(&mut sa);
                    sa
                })
                .await;
            let _ = me.send_message(IkeMsg::Computed(Some(sa)));
        }));
    }

    fn arm_timer(&mut self, myself: &ActorRef<IkeMsg>) {
        let next = self.sa.as_ref().and_then(|s| s.poll_timeout());
        if next == self.timer_at {
            return;
        }
        self.timer_at = next;
        // A timer cancelled after it fired may still deliver: the
        // generation tells a stale one from the current.
        self.timer_gen += 1;
        self.timer = match next {
            Some(at) => {
                let gen = self.timer_gen;
                let after = at.saturating_duration_since(runtime::clock::now());
                Timer::after(myself, after, move || IkeMsg::Timer(gen))
            }
            None => Timer::none(),
        };
    }

    fn refresh_snapshot(&mut self) {
        let Some(sa) = self.sa.as_ref() else { return };
        let now = runtime::clock::now();
        let children = sa
            .child_sas()
            .map(|(c, state)| {
                let counters = self.ctx.dataplane.counters(c.spi_in).unwrap_or_default();
                let installed = self.children.get(&c.spi_in);
                ChildStatus {
                    name: c.name.clone(),
                    state: if installed.is_some() {
                        state.to_string()
                    } else {
                        "installing".into()
                    },
                    reqid: self.ctx.reqid(&self.spec.name, &c.name),
                    spi_in: format!("{:08x}", c.spi_in),
                    spi_out: format!("{:08x}", c.spi_out),
                    local_ts: c
                        .local_ts
                        .iter()
                        .map(|t| ike::ts::Display(t).to_string())
                        .collect(),
                    remote_ts: c
                        .remote_ts
                        .iter()
                        .map(|t| ike::ts::Display(t).to_string())
                        .collect(),
                    proposal: c.proposal.describe(),
                    mode: format!("{:?}", c.mode).to_uppercase(),
                    installed_secs: installed
                        .map(|c| now.saturating_duration_since(c.installed).as_secs())
                        .unwrap_or(0),
                    rekey_secs: sa
                        .child_rekey_at(c.spi_in)
                        .map(|t| t.saturating_duration_since(now).as_secs()),
                    bytes_in: counters.bytes_in,
                    bytes_out: counters.bytes_out,
                    packets_in: counters.packets_in,
                    packets_out: counters.packets_out,
                    replay_drops: counters.replay_drops,
                    integrity_failures: counters.integrity_failures,
                }
            })
            .collect();
        let fmt_addr = |a: SocketAddr| format!("{}[{}]", a.ip(), a.port());
        self.snapshot = IkeStatus {
            id: self.id,
            state: sa.state().to_string(),
            local: fmt_addr(sa.local_addr()),
            remote: fmt_addr(sa.remote_addr()),
            local_id: sa.local_id().map(display_identity).unwrap_or_default(),
            remote_id: sa.remote_id().map(display_identity).unwrap_or_default(),
            proposal: sa.proposal().map(|p| p.describe()).unwrap_or_default(),
            established_secs: sa
                .established_at()
                .map(|t| now.saturating_duration_since(t).as_secs())
                .unwrap_or(0),
            initiator: sa.is_initiator(),
            spi_i: format!("{:016x}", sa.spi_i()),
            spi_r: format!("{:016x}", sa.spi_r()),
            encap: sa.encap(),
            rekey_secs: sa
                .rekey_at()
                .map(|t| t.saturating_duration_since(now).as_secs()),
            child_sas: children,
        };
    }

    /// After any input: send, react to events, re-arm the timer.
    async fn after_step(&mut self, myself: &ActorRef<IkeMsg>) -> Result<(), ActorProcessingErr> {
        let mut pending: Vec<Transmit> = Vec::new();
        loop {
            // Register before anything goes out: the peer's answer may come
            // back faster than this loop finishes.
            self.register(myself);
            let Some(sa) = self.sa.as_mut() else { break };
            pending.extend(std::iter::from_fn(|| sa.poll_transmit()));
            let Some(ev) = sa.poll_event() else { break };
            self.handle_event(myself, ev).await?;
            if self.done {
                break;
            }
        }
        // Events first, then what goes out: a new CHILD SA is in the
        // dataplane before the message that completes it leaves (the peer
        // may use it at once), and one we deleted is gone before the peer
        // has our answer.
        for t in pending {
            tracing::debug!(to = %t.remote, len = t.data.len(), "send");
            send_impaired(&self.ctx, &self.impair, t).await;
        }
        if self.done {
            return Ok(());
        }
        self.register(myself);
        self.arm_timer(myself);
        self.refresh_snapshot();
        Ok(())
    }

    async fn handle_event(
        &mut self,
        myself: &ActorRef<IkeMsg>,
        ev: Event,
    ) -> Result<(), ActorProcessingErr> {
        let conn = self.spec.name.clone();
        match ev {
            Event::Established {
                name,
                proposal,
                local_id,
                remote_id,
                initial_contact,
            } => {
                if self.neutral || name != conn {
                    // A responder SA authenticated: hand it over so it
                    // lives in its connection's subtree.
                    let Some(sa) = self.sa.take() else {
                        return Ok(());
                    };
                    self.unregister_all();
                    self.leave_half_open();
                    let established = Event::Established {
                        name: name.clone(),
                        proposal,
                        local_id,
                        remote_id,
                        initial_contact,
                    };
                    let _ = self.parent.send_message(IkeReport::HandOver(HandOver {
                        conn: name,
                        sa,
                        established,
                    }));
                    self.done = true;
                    myself.stop(Some("handed over".into()));
                    return Ok(());
                }
                self.established = true;
                if let Some(t) = self.started_at.take() {
                    metrics::histogram!("vpnd_ike_establish_seconds").record(
                        runtime::clock::now()
                            .saturating_duration_since(t)
                            .as_secs_f64(),
                    );
                }
                metrics::counter!("vpnd_ike_established_total").increment(1);
                self.leave_half_open();
                if let Some((spi_i, peer)) = self.half_open_key.take() {
                    self.ctx.router.remove_half_open(spi_i, peer);
                }
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!(
                        "IKE SA #{} established with '{}' using {}",
                        self.id,
                        display_identity(&remote_id),
                        proposal.describe()
                    ),
                );
                let _ = self.parent.send_message(IkeReport::Up {
                    ike: myself.get_id(),
                    initial_contact,
                });
            }
            Event::ChildReady(child) => {
                let reqid = self.ctx.reqid(&conn, &child.name);
                let spi_in = child.spi_in;
                let name = child.name.clone();
                let spec = self.spec.clone();
                let settings = spec.child(&name);
                let rekey = settings.map(|c| c.rekey_time).unwrap_or_default();
                let rekey_of = child.rekey_of;
                let updown = settings.and_then(|c| c.updown.as_ref()).map(|script| {
                    let sa = self.sa.as_ref();
                    let id = |i: Option<&ike::wire::Identification>| {
                        i.map(display_identity).unwrap_or_default()
                    };
                    let ev = kernel::updown::UpdownEvent {
                        up: true,
                        connection: name.clone(),
                        reqid,
                        unique_id: self.id,
                        me: child.local.ip(),
                        my_id: id(sa.and_then(|s| s.local_id())),
                        peer: child.remote.ip(),
                        peer_id: id(sa.and_then(|s| s.remote_id())),
                        udp_encap_port: child.encap.then(|| child.remote.port()),
                        local_ts: child.local_ts.clone(),
                        remote_ts: child.remote_ts.clone(),
                        mark_in: None,
                        mark_out: None,
                        if_id_in: None,
                        if_id_out: None,
                    };
                    (script.clone(), ev)
                });
                let mut lifetime = settings.map(|c| c.lifetime).unwrap_or_default();
                if lifetime.hard_time.is_none() && !rekey.is_zero() {
                    lifetime.hard_time = Some(rekey + rekey / 10);
                }
                let args = ChildArgs {
                    ctx: self.ctx.clone(),
                    conn: conn.clone(),
                    updown: updown.clone(),
                    sa: *child,
                    reqid,
                    lifetime,
                    parent: myself.get_derived(),
                };
                match Actor::spawn_linked(None, ChildSaActor, args, myself.get_cell()).await {
                    Ok((child_ref, _)) => {
                        self.children.insert(
                            spi_in,
                            ChildActor {
                                actor: child_ref,
                                installed: runtime::clock::now(),
                                updown,
                            },
                        );
                        let what = if rekey_of.is_some() {
                            "rekeyed"
                        } else {
                            "installed"
                        };
                        self.ctx.event(
                            Some(&conn),
                            "child",
                            format!("CHILD SA '{name}' {what}: SPI in {spi_in:08x}, reqid {reqid}"),
                        );
                        if rekey_of.is_none() {
                            let _ = self.parent.send_message(IkeReport::ChildUp { child: name });
                        }
                    }
                    Err(e) => {
                        let reason = format!("CHILD SA '{name}' could not be installed: {e}");
                        self.ctx.event(Some(&conn), "error", reason.clone());
                        let _ = self.parent.send_message(IkeReport::ChildFailed {
                            child: name,
                            reason,
                        });
                        if let Some(sa) = self.sa.as_mut() {
                            sa.handle_command(
                                runtime::clock::now(),
                                Command::DeleteChild { spi_in },
                            );
                        }
                    }
                }
            }
            Event::ChildFailed { name, reason } => {
                let reason = reason.to_string();
                self.ctx.event(Some(&conn), "error", reason.clone());
                let _ = self.parent.send_message(IkeReport::ChildFailed {
                    child: name,
                    reason,
                });
            }
            Event::ChildDeleted {
                name,
                spi_in,
                reason,
                ..
            } => {
                if let Some(child) = self.children.remove(&spi_in) {
                    let _ = self.ctx.dataplane.remove_sa(&conn, spi_in);
                    let _ = child.actor.send_message(ChildMsg::Removed);
                    // A rekeyed SA's successor carries on its "up".
                    if reason != "rekeyed" {
                        run_down(&self.ctx, child.updown);
                    }
                }
                self.ctx.event(
                    Some(&conn),
                    "child",
                    format!("CHILD SA '{name}' {spi_in:08x} deleted: {reason}"),
                );
            }
            Event::IkeRekeyed {
                spi_i,
                spi_r,
                proposal,
                ..
            } => {
                self.register(myself);
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!(
                        "IKE SA #{} rekeyed: SPIs {spi_i:016x}_i {spi_r:016x}_r, {}",
                        self.id,
                        proposal.describe()
                    ),
                );
            }
            Event::Retired { spi_i, spi_r } => {
                // Whichever of the old SPIs we registered goes.
                for spi in [spi_i, spi_r] {
                    if let Some(i) = self.registered.iter().position(|s| *s == spi) {
                        self.registered.remove(i);
                        self.ctx.router.remove_spi(spi);
                    }
                }
            }
            Event::ExchangeFailed { exchange, reason } => {
                self.ctx
                    .event(Some(&conn), "error", format!("{exchange} failed: {reason}"));
            }
            Event::Alive => {}
            Event::Closed {
                reason,
                was_established,
            } => {
                let peer = match self.sa.as_ref().and_then(|s| s.remote_id()) {
                    Some(id) => display_identity(id),
                    None => self
                        .spec
                        .peer
                        .remote_id
                        .as_ref()
                        .map(display_identity)
                        .unwrap_or_else(|| "%any".into()),
                };
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!("IKE SA #{} with '{peer}' closed: {reason}", self.id),
                );
                self.finish();
                let _ = self.parent.send_message(IkeReport::Closed {
                    ike: myself.get_id(),
                    reason: reason.to_string(),
                    timeout: matches!(reason, ike::sa::Reason::Timeout { .. }),
                    was_established,
                    initiated: self.initiated,
                });
                self.done = true;
                myself.stop(None);
            }
        }
        Ok(())
    }

    /// Remove everything this SA holds: SPIs, CHILD SAs in the dataplane,
    /// timers and work in flight.
    fn finish(&mut self) {
        for (spi, child) in self.children.drain() {
            let _ = self.ctx.dataplane.remove_sa(&self.spec.name, spi);
            let _ = child.actor.send_message(ChildMsg::Removed);
            run_down(&self.ctx, child.updown);
        }
        self.unregister_all();
        self.leave_half_open();
        self.timer.cancel();
        if let Some(h) = self.work.take() {
            h.abort();
        }
    }

    async fn handle_input(
        &mut self,
        myself: &ActorRef<IkeMsg>,
        msg: IkeMsg,
    ) -> Result<(), ActorProcessingErr> {
        let now = runtime::clock::now();
        match msg {
            IkeMsg::Datagram(Datagram {
                local,
                remote,
                data,
            }) => {
                tracing::debug!(from = %remote, len = data.len(), "datagram");
                if self.impair.stall || roll(self.impair.drop_inbound_pct) {
                    return Ok(());
                }
                let Some(sa) = self.sa.as_mut() else {
                    return Ok(());
                };
                match sa.datagram_cost(&data) {
                    Cost::Keys(work) => self.offload(myself, priority(work), move |sa| {
                        if let Err(e) =
                            sa.handle_datagram(runtime::clock::now(), local, remote, &data)
                        {
                            tracing::debug!("datagram rejected: {e}");
                        }
                    }),
                    Cost::Cheap => {
                        if let Err(e) = sa.handle_datagram(now, local, remote, &data) {
                            tracing::debug!("datagram rejected: {e}");
                            if matches!(e, ike::sa::DatagramError::Malformed(_)) {
                                self.ctx.malformed();
                            }
                        }
                    }
                }
            }
            // Retransmissions, DPD and rekeys: the core's timers. A due
            // rekey computes keys, under the scheduler like any other.
            IkeMsg::Timer(gen) if gen == self.timer_gen => {
                self.timer_at = None;
                match self.sa.as_ref().map(|sa| sa.timeout_cost(now)) {
                    Some(Cost::Keys(work)) => self.offload(myself, priority(work), |sa| {
                        sa.handle_timeout(runtime::clock::now())
                    }),
                    Some(Cost::Cheap) => {
                        if let Some(sa) = self.sa.as_mut() {
                            sa.handle_timeout(now);
                        }
                    }
                    None => {}
                }
            }
            IkeMsg::Command(cmd) | IkeMsg::Child(ChildReport(cmd)) => match cmd.cost() {
                Cost::Keys(work) => self.offload(myself, priority(work), move |sa| {
                    sa.handle_command(runtime::clock::now(), cmd)
                }),
                Cost::Cheap => {
                    if let Some(sa) = self.sa.as_mut() {
                        sa.handle_command(now, cmd);
                    }
                }
            },
            _ => {}
        }
        if !self.busy {
            self.after_step(myself).await?;
        }
        Ok(())
    }
}

impl Actor for IkeSaActor {
    type Msg = IkeMsg;
    type State = IkeState;
    type Arguments = IkeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IkeMsg>,
        args: IkeArgs,
    ) -> Result<IkeState, ActorProcessingErr> {
        args.ctx.ike_sas.fetch_add(1, Ordering::Relaxed);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // A half-open responder SA belongs to no connection yet.
        let span = if matches!(args.start, IkeStart::Accept { .. }) {
            tracing::info_span!("ike", conn = "%responder", id)
        } else {
            tracing::info_span!("ike", conn = %args.spec.name, id)
        };
        let mut half_open_key = None;
        let mut half_open_counted = false;
        if let IkeStart::Accept { remote, data, .. } = &args.start {
            if let Ok(h) = Header::decode(data) {
                args.ctx
                    .router
                    .insert_half_open(h.spi_i, *remote, myself.get_derived());
                half_open_key = Some((h.spi_i, *remote));
            }
        }
        if !matches!(args.start, IkeStart::Adopt(_)) {
            args.ctx.half_open_sas.fetch_add(1, Ordering::Relaxed);
            half_open_counted = true;
        }
        let initiated = matches!(args.start, IkeStart::Initiate { .. });
        let neutral = matches!(args.start, IkeStart::Accept { .. });
        let _ = myself.send_message(IkeMsg::Start);
        Ok(IkeState {
            _alive: runtime::counters::AliveGuard::new(),
            ctx: args.ctx,
            spec: args.spec,
            parent: args.parent,
            start: Some(args.start),
            neutral,
            sa: None,
            busy: true,
            work: None,
            deferred: VecDeque::new(),
            registered: Vec::new(),
            half_open_key,
            children: HashMap::new(),
            timer_gen: 0,
            timer_at: None,
            timer: Timer::none(),
            guard: None,
            half_open_counted,
            established: false,
            spec_pending: false,
            started_at: Some(runtime::clock::now()),
            initiated,
            done: false,
            impair: Impair::default(),
            id,
            snapshot: IkeStatus {
                id,
                state: "connecting".into(),
                local: String::new(),
                remote: String::new(),
                local_id: String::new(),
                remote_id: String::new(),
                proposal: String::new(),
                established_secs: 0,
                initiator: true,
                spi_i: String::new(),
                spi_r: String::new(),
                encap: false,
                rekey_secs: None,
                child_sas: Vec::new(),
            },
            span,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IkeMsg>,
        msg: IkeMsg,
        st: &mut IkeState,
    ) -> Result<(), ActorProcessingErr> {
        let span = st.span.clone();
        let _enter = span.enter();
        if st.done {
            return Ok(());
        }
        match msg {
            IkeMsg::Start => {
                tracing::debug!("start");
                let start = st.start.take().expect("started once");
                match start {
                    IkeStart::Initiate {
                        local,
                        remote,
                        children,
                    } => {
                        let sched = st.ctx.scheduler.clone();
                        let peer = st.spec.peer.clone();
                        let me = myself.clone();
                        let ctx_events = st.ctx.clone();
                        let conn = st.spec.name.clone();
                        st.work = Some(tokio::spawn(async move {
                            // Pace bring-up under the peer's half-open limits.
                            let guard = sched.half_open(remote.ip()).await;
                            ctx_events.event(
                                Some(&conn),
                                "state",
                                format!("initiating to {remote}"),
                            );
                            let sa = sched
                                .compute(Priority::Normal, move || {
                                    let names: Vec<&str> =
                                        children.iter().map(String::as_str).collect();
                                    IkeSa::initiate(
                                        runtime::clock::now(),
                                        peer,
                                        local,
                                        remote,
                                        Box::new(SystemRandom::new()),
                                        &names,
                                    )
                                })
                                .await;
                            let _ = me.send_message(IkeMsg::Computed(Some(Box::new(sa))));
                            // The half-open slot is held until the SA is
                            // established or gone.
                            let _ = me.send_message(IkeMsg::HalfOpen(guard));
                        }));
                    }
                    IkeStart::Accept {
                        local,
                        remote,
                        data,
                        candidates,
                    } => {
                        let sched = st.ctx.scheduler.clone();
                        let me = myself.clone();
                        let ctx = st.ctx.clone();
                        st.work = Some(tokio::spawn(async move {
                            let outcome = sched
                                .compute(Priority::High, move || {
                                    let params = Responder {
                                        local,
                                        remote,
                                        candidates,
                                        require_cookie: None,
                                    };
                                    IkeSa::accept(
                                        runtime::clock::now(),
                                        params,
                                        Box::new(SystemRandom::new()),
                                        &data,
                                    )
                                })
                                .await;
                            match outcome {
                                Accept::Created(sa) => {
                                    let _ = me.send_message(IkeMsg::Computed(Some(sa)));
                                }
                                Accept::Reply(t, why) => {
                                    tracing::info!(%remote, "IKE_SA_INIT from {remote} answered without state: {why}");
                                    ctx.sockets.send(&t).await;
                                    let _ = me.send_message(IkeMsg::Computed(None));
                                }
                                Accept::Ignore(why) => {
                                    tracing::info!(%remote, "IKE_SA_INIT ignored: {why}");
                                    ctx.malformed();
                                    let _ = me.send_message(IkeMsg::Computed(None));
                                }
                            }
                        }));
                    }
                    IkeStart::Adopt(HandOver {
                        mut sa,
                        established,
                        ..
                    }) => {
                        // The accepting actor's timers are not ours.
                        sa.set_timers(runtime::clock::now(), timers(&st.spec));
                        st.sa = Some(sa);
                        st.busy = false;
                        st.handle_event(&myself, established).await?;
                        st.after_step(&myself).await?;
                    }
                }
            }
            IkeMsg::Computed(sa) => {
                tracing::debug!(
                    some = sa.is_some(),
                    deferred = st.deferred.len(),
                    "computed"
                );
                st.work = None;
                st.busy = false;
                match sa {
                    Some(mut sa) => {
                        if std::mem::take(&mut st.spec_pending) {
                            sa.set_retransmit(st.spec.peer.retransmit);
                        }
                        sa.set_timers(runtime::clock::now(), timers(&st.spec));
                        st.sa = Some(sa)
                    }
                    None => {
                        // Stateless answer or refusal: nothing to keep.
                        st.finish();
                        st.done = true;
                        let _ = st.parent.send_message(IkeReport::Closed {
                            ike: myself.get_id(),
                            reason: "IKE_SA_INIT refused".into(),
                            timeout: false,
                            was_established: false,
                            initiated: st.initiated,
                        });
                        myself.stop(None);
                        return Ok(());
                    }
                }
                st.after_step(&myself).await?;
                while !st.busy && !st.done {
                    let Some(m) = st.deferred.pop_front() else {
                        break;
                    };
                    st.handle_input(&myself, m).await?;
                }
            }
            IkeMsg::Kill(reply) => {
                let transmits: Vec<Transmit> = match st.sa.as_mut() {
                    Some(sa) => {
                        sa.kill(runtime::clock::now());
                        std::iter::from_fn(|| sa.poll_transmit()).collect()
                    }
                    None => Vec::new(),
                };
                for t in transmits {
                    st.ctx.sockets.send(&t).await;
                }
                st.finish();
                st.done = true;
                let _ = reply.send(());
                myself.stop(Some("killed".into()));
            }
            IkeMsg::Status(reply) => {
                if !st.busy {
                    st.refresh_snapshot();
                }
                let _ = reply.send(st.snapshot.clone());
            }
            IkeMsg::Impair(i) => st.impair = i,
            IkeMsg::UpdateSpec(spec) => {
                st.spec = spec;
                if let Some(sa) = st.sa.as_mut() {
                    sa.set_retransmit(st.spec.peer.retransmit);
                    sa.set_timers(runtime::clock::now(), timers(&st.spec));
                    // A re-armed timer may be due sooner.
                    st.arm_timer(&myself);
                } else {
                    st.spec_pending = true;
                }
            }
            IkeMsg::HalfOpen(guard) => {
                if !st.established {
                    st.guard = Some(guard);
                }
            }
            IkeMsg::Panic => {
                panic!(
                    "impair: injected panic in IKE SA actor of '{}'",
                    st.conn_name()
                );
            }
            other => {
                if st.busy {
                    st.deferred.push_back(other);
                } else {
                    st.handle_input(&myself, other).await?;
                }
            }
        }
        Ok(())
    }

    /// CHILD SA actors end normally when their SA is deleted; one that fails
    /// is contained here: its SA leaves the dataplane and the peer is asked
    /// to delete it, while the IKE SA and its other CHILD SAs go on.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<IkeMsg>,
        evt: ractor::SupervisionEvent,
        st: &mut IkeState,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorFailed(cell, err) = evt {
            let failed = st
                .children
                .iter()
                .find(|(_, c)| c.actor.get_id() == cell.get_id())
                .map(|(spi, _)| *spi);
            if let Some(spi) = failed {
                if let Some(child) = st.children.remove(&spi) {
                    run_down(&st.ctx, child.updown);
                }
                let _ = st.ctx.dataplane.remove_sa(&st.spec.name, spi);
                runtime::counters::restart();
                st.ctx.event(
                    Some(&st.spec.name),
                    "error",
                    format!("CHILD SA actor {spi:08x} failed ({err}); deleting that CHILD SA"),
                );
                if let Some(sa) = st.sa.as_mut() {
                    sa.handle_command(runtime::clock::now(), Command::DeleteChild { spi_in: spi });
                } else {
                    st.deferred
                        .push_back(IkeMsg::Command(Command::DeleteChild { spi_in: spi }));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IkeMsg>,
        st: &mut IkeState,
    ) -> Result<(), ActorProcessingErr> {
        st.finish();
        st.ctx.ike_sas.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
}
