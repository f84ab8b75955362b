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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::spis::DataplaneSpis;
use ike::sa::{Accept, Command, Cost, IkeSa, KeyWork, Responder, Timers, Transmit};
use ike::wire::Header;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use runtime::scheduler::{HalfOpenGuard, Priority, Weight};
use runtime::timer::Timer;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::admission::{HalfOpenSlot, Refusal};
use crate::child_sa::ChildMsg;
use crate::ctx::CtxRef;
use crate::derive_report;
use crate::report::{ChildReport, HandOver, IkeReport};
use crate::router::Datagram;
use crate::spec::ConnSpec;

mod events;
mod impair;
mod status;
pub use self::status::{IkeView, IkeViewRef};

use self::events::{run_down, ChildActor};
pub use self::impair::{parse_impair, Impair};
use self::impair::{roll, send_impaired};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
        candidates: ike::sa::CandidatesRef,
        /// Its place under the half-open caps, held until authenticated.
        slot: Option<HalfOpenSlot>,
        /// `Stranger` when no connection names the peer's address.
        priority: Priority,
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
    /// Where the SA publishes its status for its owner to read.
    pub view: IkeViewRef,
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
    /// This actor in `ike_sas`, however it ends (a stopped supervisor's
    /// children may end without `post_stop`).
    _counted: Counted,
    ctx: CtxRef,
    spec: Arc<ConnSpec>,
    /// The core's timer settings from `spec`, kept so each step compares
    /// rather than rebuilds them.
    timers: Timers,
    parent: DerivedActorRef<IkeReport>,
    start: Option<IkeStart>,
    /// A responder SA accepted on the neutral path: at IKE_AUTH it moves
    /// to its connection, whichever that is.
    neutral: bool,
    /// Who the SA's reserved inbound SPIs belong to.
    spi_owner: Option<crate::spis::SpiOwner>,
    sa: Option<Box<IkeSa>>,
    busy: bool,
    work: Option<JoinHandle<()>>,
    deferred: VecDeque<IkeMsg>,
    registered: Vec<u64>,
    half_open_key: Option<(u64, SocketAddr)>,
    children: HashMap<u32, ChildActor>,
    /// CHILD SAs being deleted because they reached their hard lifetime.
    expired: HashSet<u32>,
    timer_gen: u64,
    timer_at: Option<Instant>,
    /// The core's next deadline; dropping it cancels it.
    timer: Timer,
    guard: Option<HalfOpenGuard>,
    /// A responder SA's place under the half-open caps.
    slot: Option<HalfOpenSlot>,
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
    view: IkeViewRef,
    /// What `view`'s strings were last built from.
    shape: status::Shape,
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
        rekey_retry_base: spec.retry.retry_base,
        rekey_retry_max: spec.retry.retry_max,
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
        self.slot = None;
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
        let weight = Weight::of(sa.signs_slowly());
        self.work = Some(tokio::spawn(async move {
            let sa = sched
                .compute(priority, weight, move || {
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
        self.publish_status();
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
                    Cost::Keys(work) => {
                        let ctx = self.ctx.clone();
                        self.offload(myself, priority(work), move |sa| {
                            if let Err(e) =
                                sa.handle_datagram(runtime::clock::now(), local, remote, &data)
                            {
                                rejected(&ctx, &e);
                            }
                        })
                    }
                    Cost::Cheap => {
                        if let Err(e) = sa.handle_datagram(now, local, remote, &data) {
                            rejected(&self.ctx, &e);
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
            IkeMsg::Command(cmd)
            | IkeMsg::Child(ChildReport {
                command: cmd,
                expired: false,
            }) => self.command(myself, now, cmd),
            IkeMsg::Child(ChildReport {
                command: cmd,
                expired: true,
            }) => {
                if let Command::DeleteChild { spi_in } = &cmd {
                    self.expired.insert(*spi_in);
                }
                self.command(myself, now, cmd)
            }
            _ => {}
        }
        if !self.busy {
            self.after_step(myself).await?;
        }
        Ok(())
    }

    fn command(&mut self, myself: &ActorRef<IkeMsg>, now: Instant, cmd: Command) {
        match cmd.cost() {
            Cost::Keys(work) => self.offload(myself, priority(work), move |sa| {
                sa.handle_command(runtime::clock::now(), cmd)
            }),
            Cost::Cheap => {
                if let Some(sa) = self.sa.as_mut() {
                    sa.handle_command(now, cmd);
                }
            }
        }
    }
}

/// One IKE SA actor in the daemon's `ike_sas` count while it lives.
struct Counted(CtxRef);

impl Counted {
    fn new(ctx: &CtxRef) -> Counted {
        ctx.ike_sas.fetch_add(1, Ordering::Relaxed);
        Counted(ctx.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.ike_sas.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A datagram for this SA that it refused: garbage (undecodable, an SK
/// payload that does not open, a protocol violation) counts as malformed;
/// late or duplicate ones do not.
fn rejected(ctx: &CtxRef, e: &ike::sa::DatagramError) {
    use ike::sa::DatagramError as E;
    tracing::debug!("datagram rejected: {e}");
    if matches!(e, E::Malformed(_) | E::Open(_) | E::Invalid(_)) {
        ctx.malformed();
    }
}

impl Actor for IkeSaActor {
    type Msg = IkeMsg;
    type State = IkeState;
    type Arguments = IkeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IkeMsg>,
        mut args: IkeArgs,
    ) -> Result<IkeState, ActorProcessingErr> {
        let slot = match &mut args.start {
            IkeStart::Accept { slot, .. } => slot.take(),
            _ => None,
        };
        let counted = Counted::new(&args.ctx);
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
        let st = IkeState {
            _alive: runtime::counters::AliveGuard::new(),
            _counted: counted,
            ctx: args.ctx,
            timers: timers(&args.spec),
            spec: args.spec,
            parent: args.parent,
            start: Some(args.start),
            neutral,
            spi_owner: None,
            sa: None,
            busy: true,
            work: None,
            deferred: VecDeque::new(),
            registered: Vec::new(),
            half_open_key,
            children: HashMap::new(),
            expired: HashSet::new(),
            timer_gen: 0,
            timer_at: None,
            timer: Timer::none(),
            guard: None,
            slot,
            half_open_counted,
            established: false,
            spec_pending: false,
            started_at: Some(runtime::clock::now()),
            initiated,
            done: false,
            impair: Impair::default(),
            id,
            view: args.view,
            shape: status::Shape::default(),
            span,
        };
        st.init_view();
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<IkeMsg>,
        msg: IkeMsg,
        st: &mut IkeState,
    ) -> Result<(), ActorProcessingErr> {
        // The span follows the step across its awaits (a guard held over
        // an await would tag whatever else ran on this thread meanwhile).
        let span = st.span.clone();
        // Boxed: ractor keeps one loop future per actor for the actor's
        // whole life, and it would otherwise hold the largest state of
        // every await in `step` inline (about 8 KB per IKE SA).
        Box::pin(step(myself, msg, st).instrument(span)).await
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
        Ok(())
    }
}

/// An IKE SA actor that is killed (as ractor kills the children of a
/// connection actor that stops) never runs `post_stop`, but its state is
/// dropped: its SPIs, half-open places and CHILD SAs are released here.
impl Drop for IkeState {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One message to the IKE SA actor.
async fn step(
    myself: ActorRef<IkeMsg>,
    msg: IkeMsg,
    st: &mut IkeState,
) -> Result<(), ActorProcessingErr> {
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
                    let (spis, owner) = DataplaneSpis::boxed(
                        st.ctx.dataplane.clone(),
                        &conn,
                        local.ip(),
                        remote.ip(),
                    );
                    st.spi_owner = Some(owner);
                    st.work = Some(tokio::spawn(async move {
                        // Pace bring-up under the peer's half-open limits.
                        let guard = sched.half_open(remote.ip()).await;
                        ctx_events.event(Some(&conn), "state", format!("initiating to {remote}"));
                        let weight = Weight::of(peer.signs_slowly());
                        let sa = sched
                            .compute(Priority::Normal, weight, move || {
                                let names: Vec<&str> =
                                    children.iter().map(String::as_str).collect();
                                IkeSa::initiate(
                                    runtime::clock::now(),
                                    peer,
                                    local,
                                    remote,
                                    spis,
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
                    priority,
                    ..
                } => {
                    let sched = st.ctx.scheduler.clone();
                    let me = myself.clone();
                    let ctx = st.ctx.clone();
                    let (spis, owner) =
                        DataplaneSpis::boxed(ctx.dataplane.clone(), "", local.ip(), remote.ip());
                    st.spi_owner = Some(owner);
                    let weight = Weight::of(candidates.signs_slowly());
                    st.work = Some(tokio::spawn(async move {
                        let outcome = sched
                            .compute_or_shed(priority, weight, move || {
                                let params = Responder {
                                    local,
                                    remote,
                                    candidates,
                                    require_cookie: None,
                                };
                                IkeSa::accept(runtime::clock::now(), params, spis, &data)
                            })
                            .await;
                        let log = ctx.admission.may_log();
                        match outcome {
                            None => {
                                ctx.admission.refuse(Refusal::Shed);
                                let _ = me.send_message(IkeMsg::Computed(None));
                            }
                            Some(Accept::Created(sa)) => {
                                let _ = me.send_message(IkeMsg::Computed(Some(sa)));
                            }
                            Some(Accept::Reply(t, why)) => {
                                if log {
                                    tracing::info!(%remote, "IKE_SA_INIT from {remote} answered without state: {why}");
                                }
                                ctx.sockets.send(&t).await;
                                let _ = me.send_message(IkeMsg::Computed(None));
                            }
                            Some(Accept::Ignore(why)) => {
                                if log {
                                    tracing::info!(%remote, "IKE_SA_INIT ignored: {why}");
                                }
                                ctx.malformed();
                                let _ = me.send_message(IkeMsg::Computed(None));
                            }
                        }
                    }));
                }
                IkeStart::Adopt(HandOver {
                    mut sa,
                    established,
                    started,
                    spi_owner,
                    ..
                }) => {
                    st.started_at = Some(started);
                    if let Some(o) = &spi_owner {
                        *o.lock().unwrap_or_else(|p| p.into_inner()) = st.spec.name.clone();
                    }
                    st.spi_owner = spi_owner;
                    // The accepting actor's timers are not ours.
                    sa.set_timers(runtime::clock::now(), &st.timers);
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
                    sa.set_timers(runtime::clock::now(), &st.timers);
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
        IkeMsg::Impair(i) => st.impair = i,
        IkeMsg::UpdateSpec(spec) => {
            st.timers = timers(&spec);
            st.spec = spec;
            if let Some(sa) = st.sa.as_mut() {
                sa.set_retransmit(st.spec.peer.retransmit);
                sa.set_timers(runtime::clock::now(), &st.timers);
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
