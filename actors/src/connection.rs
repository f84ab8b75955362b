//! The Connection actor: one per loaded connection. It owns the retry policy
//! (keyingtries with exponential backoff), supervises its IKE SA actors
//! (a panic restarts the connection per its restart policy; its kernel
//! state is removed first), and serves `up`, `down`, `kill` and `status`.
//!
//! Invariants: after `kill` no actor, timer or dataplane SA of this
//! connection remains; a retry is only ever scheduled while the operator
//! wants the connection up; every `up` waiter gets exactly one answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ike::sa::Command;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use runtime::supervise::{Decision, RestartPolicy, RestartTracker};
use runtime::timer::Timer;

use crate::child_retry::{ChildRetries, Next};
use crate::ctx::CtxRef;
use crate::derive_report;
use crate::ike_sa::{IkeArgs, IkeMsg, IkeSaActor, IkeStart, IkeView, IkeViewRef, Impair};
use crate::report::{HandOver, IkeReport};
use crate::socket::IKE_PORT;
use crate::spec::{idle_status, Auto, ConnSpec, DpdAction};
use crate::status::ConnStatus;
use crate::uniqueness::{self, Established, Verdict};
use tracing::Instrument;

pub type Reply = RpcReplyPort<Result<String, String>>;

pub enum ConnMsg {
    Up {
        child: Option<String>,
        reply: Option<Reply>,
    },
    Down(Reply),
    Kill(Reply),
    /// A responder SA authenticated as this connection.
    Adopt(HandOver),
    /// From one of this connection's IKE SA actors.
    Ike(IkeReport),
    Retry(u64),
    /// The next attempt to bring a CHILD SA back (`child_retry`).
    ChildRetry {
        child: String,
        gen: u64,
    },
    DownTimeout,
    Status(RpcReplyPort<ConnStatus>),
    Impair {
        kind: String,
        reply: Reply,
    },
    /// Retune retries at runtime (`vpnctl set`), or new secrets.
    Set(Box<ConnSpec>, Reply),
    Route(Reply),
    Unroute(Reply),
}

derive_report!(IkeReport => ConnMsg::Ike);

pub struct ConnectionActor;

pub struct ConnArgs {
    pub ctx: CtxRef,
    pub spec: Arc<ConnSpec>,
}

struct Ike {
    actor: ActorRef<IkeMsg>,
    /// What it publishes for `status`.
    view: IkeViewRef,
    ours: bool,
    established: bool,
    /// Set when its `Up` arrived: what finds stale and duplicate siblings.
    up: Option<Established<ActorId>>,
}

pub struct ConnState {
    _alive: runtime::counters::AliveGuard,
    ctx: CtxRef,
    spec: Arc<ConnSpec>,
    ikes: Vec<Ike>,
    want_up: bool,
    failed: u32,
    retry_gen: u64,
    /// The next attempt and when it is due; dropping it cancels it.
    retry: Option<(Timer, std::time::Instant)>,
    up_waiters: Vec<(Option<String>, Reply)>,
    down_waiters: Vec<Reply>,
    tracker: RestartTracker,
    /// Set when the restarts ran out: the connection stays down until
    /// `up` (or `down`) and says so in `status`.
    gave_up: Option<String>,
    last_error: Option<String>,
    impair: Impair,
    routed: bool,
    /// The operator took it down (`down`, `kill`) and nothing brought it
    /// up since: not to be revived.
    taken_down: bool,
    /// What the revival state says of this connection.
    recorded_up: bool,
    /// CHILD SAs to bring back: install failures, expiries.
    child_retries: ChildRetries,
    span: tracing::Span,
}

impl ConnState {
    /// Tell the revival state whether this connection is up: an
    /// established IKE SA, or an attempt of ours running or scheduled, and
    /// not taken down by the operator.
    fn record_revival(&mut self) {
        let Some(r) = self.ctx.revival.clone() else {
            return;
        };
        let up = !self.taken_down
            && (self.retry.is_some() || self.ikes.iter().any(|i| i.established || i.ours));
        if up != self.recorded_up {
            self.recorded_up = up;
            r.set(&self.spec.name, up);
        }
    }

    /// An IKE SA is established: remove the siblings it makes stale
    /// (INITIAL_CONTACT) or that duplicate it (`uniqueness`).
    async fn on_established(&mut self, up: crate::report::Up) {
        let new = Established {
            key: up.ike,
            ids: up.ids,
            started: up.started,
            established_at: runtime::clock::now(),
            spis: up.spis,
        };
        if let Some(i) = self.ikes.iter_mut().find(|i| i.actor.get_id() == up.ike) {
            i.established = true;
            i.up = Some(new.clone());
        }
        let others: Vec<Established<ActorId>> =
            self.ikes.iter().filter_map(|i| i.up.clone()).collect();
        for v in uniqueness::resolve(&new, up.initial_contact, &others) {
            let (key, why) = match v {
                Verdict::Stale(k) => (k, "INITIAL_CONTACT: removing a stale IKE SA"),
                Verdict::Duplicate(k) => (
                    k,
                    "removing a duplicate IKE SA (both ends initiated at once; the lower SPI goes)",
                ),
            };
            let Some(pos) = self.ikes.iter().position(|i| i.actor.get_id() == key) else {
                continue;
            };
            let i = self.ikes.remove(pos);
            self.ctx.event(Some(&self.spec.name), "state", why.into());
            let _ = ractor::call_t!(i.actor, IkeMsg::Kill, 500);
            i.actor.stop(None);
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    fn cancel_retry(&mut self) {
        self.retry_gen += 1;
        self.retry = None;
        self.child_retries.clear();
    }

    /// CHILD SA `child` failed to come (back) up, or was `lost`: plan its
    /// next attempt per the retry policy; say what happens, as a warning.
    fn retry_child(&mut self, myself: &ActorRef<ConnMsg>, child: &str, lost: bool) -> String {
        let next =
            self.child_retries
                .failed(myself, child, &self.spec.retry, lost, |child, gen| {
                    ConnMsg::ChildRetry { child, gen }
                });
        let name = self.spec.name.clone();
        match next {
            Next::Retry { after, attempt } => format!(
                "connection '{name}' child '{child}': attempt {attempt} to bring it up in {:.1}s",
                after.as_secs_f64()
            ),
            Next::GiveUp { attempts } => {
                format!("connection '{name}' child '{child}': giving up after {attempts} attempts")
            }
        }
    }

    fn schedule_retry(&mut self, myself: &ActorRef<ConnMsg>, after: Duration) {
        self.cancel_retry();
        let gen = self.retry_gen;
        let timer = Timer::after(myself, after, move || ConnMsg::Retry(gen));
        self.retry = Some((timer, runtime::clock::now() + after));
    }

    fn answer_up(&mut self, child: Option<&str>, result: Result<String, String>) {
        let mut keep = Vec::new();
        for (want, reply) in self.up_waiters.drain(..) {
            let matches = match (&want, child) {
                (None, _) | (_, None) => true,
                (Some(w), Some(c)) => w == c,
            };
            if matches {
                let _ = reply.send(result.clone());
            } else {
                keep.push((want, reply));
            }
        }
        self.up_waiters = keep;
    }

    async fn initiate(
        &mut self,
        myself: &ActorRef<ConnMsg>,
        child: Option<String>,
    ) -> Result<(), String> {
        let spec = self.spec.clone();
        // An established IKE SA (ours or the peer's) gets the child; one of
        // ours still connecting is awaited.
        if let Some(ike) = self.ikes.iter().find(|i| i.established) {
            let name = child.unwrap_or_else(|| {
                spec.peer
                    .children
                    .first()
                    .map(|c| c.name.clone())
                    .unwrap_or_default()
            });
            let _ = ike
                .actor
                .send_message(IkeMsg::Command(Command::CreateChild { name }));
            return Ok(());
        }
        if self.ikes.iter().any(|i| i.ours) {
            return Ok(());
        }
        let remote = spec.initiate_to().ok_or_else(|| {
            format!(
                "connection '{}' cannot initiate: remote_addrs is %any",
                spec.name
            )
        })?;
        let local = spec
            .local_addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .or_else(|| {
                self.ctx
                    .sockets
                    .addrs()
                    .into_iter()
                    .find(|a: &IpAddr| a.is_ipv4() == remote.is_ipv4() && !a.is_unspecified())
            })
            .ok_or_else(|| {
                format!(
                    "connection '{}' has no local address to initiate from",
                    spec.name
                )
            })?;
        let children: Vec<String> = match child {
            Some(c) => {
                if spec.peer.child(&c).is_none() {
                    return Err(format!("connection '{}' has no child '{c}'", spec.name));
                }
                vec![c]
            }
            None => spec.peer.children.iter().map(|c| c.name.clone()).collect(),
        };
        let view = IkeView::new_ref();
        let args = IkeArgs {
            ctx: self.ctx.clone(),
            spec: spec.clone(),
            parent: myself.get_derived(),
            view: view.clone(),
            start: IkeStart::Initiate {
                local: SocketAddr::new(local, IKE_PORT),
                remote: SocketAddr::new(remote, IKE_PORT),
                children,
            },
        };
        let (actor, _) = Actor::spawn_linked(None, IkeSaActor, args, myself.get_cell())
            .await
            .map_err(|e| format!("cannot start IKE SA actor: {e}"))?;
        if self.impair != Impair::default() {
            let _ = actor.send_message(IkeMsg::Impair(self.impair.clone()));
        }
        self.ikes.push(Ike {
            actor,
            view,
            ours: true,
            established: false,
            up: None,
        });
        Ok(())
    }

    fn remove_dataplane_sas(&self) {
        let owner = &self.spec.name;
        for spi in self.ctx.dataplane.spis_of(owner) {
            let _ = self.ctx.dataplane.remove_sa(owner, spi);
        }
    }

    async fn status(&self) -> ConnStatus {
        let mut s = idle_status(&self.spec);
        s.routed = self.routed;
        s.failed_attempts = self.failed;
        s.next_retry_secs = self.retry.as_ref().map(|(_, at)| {
            at.saturating_duration_since(runtime::clock::now())
                .as_secs_f64()
        });
        s.last_error = self.last_error.clone();
        s.gave_up = self.gave_up.clone();
        s.ike_sas = self.ike_statuses();
        s
    }

    /// Read from what each IKE SA published: no message, so no SA that
    /// is busy holds the answer up.
    fn ike_statuses(&self) -> Vec<crate::status::IkeStatus> {
        let now = runtime::clock::now();
        self.ikes
            .iter()
            // One that failed or is stopping is not shown while its
            // supervision event is on the way.
            .filter(|ike| ike.actor.get_status() <= ractor::ActorStatus::Upgrading)
            .map(|ike| {
                let v = ike.view.lock().unwrap_or_else(|e| e.into_inner());
                v.read(self.ctx.dataplane.as_ref(), now)
            })
            .collect()
    }
    fn install_traps(&mut self) {
        for c in &self.spec.peer.children {
            let trap = kernel::Trap {
                owner: self.spec.name.clone(),
                child: c.name.clone(),
                reqid: self.ctx.reqid(&self.spec.name, &c.name),
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                local: self.spec.local_addrs.first().copied(),
                remote: self.spec.initiate_to(),
                mode: c.mode,
                opts: self.spec.child(&c.name).map(|s| s.xfrm).unwrap_or_default(),
            };
            if let Err(e) = self.ctx.dataplane.install_trap(&trap) {
                self.ctx.event(
                    Some(&self.spec.name),
                    "error",
                    format!("cannot install trap for '{}': {e}", c.name),
                );
            }
        }
        self.routed = true;
    }

    async fn kill_all(&mut self) {
        self.cancel_retry();
        self.want_up = false;
        for ike in self.ikes.drain(..) {
            // Best-effort DELETE from the actor itself, but never wait long.
            let _ = ractor::call_t!(ike.actor, IkeMsg::Kill, 500);
            ike.actor.stop(Some("killed".into()));
        }
        self.remove_dataplane_sas();
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnMsg;
    type State = ConnState;
    type Arguments = ConnArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnMsg>,
        a: ConnArgs,
    ) -> Result<ConnState, ActorProcessingErr> {
        let span = tracing::info_span!("conn", conn = %a.spec.name);
        let mut st = ConnState {
            _alive: runtime::counters::AliveGuard::new(),
            ctx: a.ctx,
            spec: a.spec,
            ikes: Vec::new(),
            want_up: false,
            failed: 0,
            retry_gen: 0,
            retry: None,
            up_waiters: Vec::new(),
            down_waiters: Vec::new(),
            tracker: RestartTracker::new(RestartPolicy::default()),
            gave_up: None,
            last_error: None,
            impair: Impair::default(),
            routed: false,
            taken_down: false,
            recorded_up: false,
            child_retries: ChildRetries::default(),
            span,
        };
        st.recorded_up = st
            .ctx
            .revival
            .as_ref()
            .is_some_and(|r| r.contains(&st.spec.name));
        match st.spec.auto {
            Auto::Start => {
                let _ = myself.send_message(ConnMsg::Up {
                    child: None,
                    reply: None,
                });
            }
            Auto::Route => st.install_traps(),
            // `control` never hands over an `ignore` connection.
            Auto::Add | Auto::Ignore => {}
        }
        Ok(st)
    }

    /// The handlers' futures are boxed: ractor keeps one loop future per
    /// actor for its whole life, and it would otherwise hold the largest
    /// state of every await below inline (about 5 KB per connection).
    async fn handle(
        &self,
        myself: ActorRef<ConnMsg>,
        msg: ConnMsg,
        st: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        let span = st.span.clone();
        let r = Box::pin(self.dispatch(myself, msg, st).instrument(span.clone())).await;
        span.in_scope(|| st.record_revival());
        r
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ConnMsg>,
        evt: SupervisionEvent,
        st: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        let span = st.span.clone();
        let r = Box::pin(self.supervise(myself, evt, st).instrument(span.clone())).await;
        span.in_scope(|| st.record_revival());
        r
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConnMsg>,
        st: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        st.cancel_retry();
        st.ctx.dataplane.remove_owner(&st.spec.name);
        Ok(())
    }
}

impl ConnectionActor {
    async fn dispatch(
        &self,
        myself: ActorRef<ConnMsg>,
        msg: ConnMsg,
        st: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnMsg::Up { child, reply } => {
                // The operator asks again: a fresh window of restarts.
                if st.gave_up.take().is_some() {
                    st.tracker.reset();
                }
                st.want_up = true;
                st.taken_down = false;
                st.failed = 0;
                st.cancel_retry();
                match st.initiate(&myself, child.clone()).await {
                    Ok(()) => {
                        if let Some(r) = reply {
                            st.up_waiters.push((child, r));
                        }
                    }
                    Err(e) => {
                        st.want_up = false;
                        st.last_error = Some(e.clone());
                        if let Some(r) = reply {
                            let _ = r.send(Err(e));
                        }
                    }
                }
            }
            ConnMsg::Down(reply) => {
                st.want_up = false;
                st.taken_down = true;
                st.gave_up = None;
                st.cancel_retry();
                st.answer_up(
                    None,
                    Err(format!("connection '{}' was taken down", st.name())),
                );
                if st.ikes.is_empty() {
                    let _ = reply.send(Ok(format!("connection '{}' has no IKE SA", st.name())));
                } else {
                    for ike in &st.ikes {
                        let _ = ike.actor.send_message(IkeMsg::Command(Command::Delete));
                    }
                    st.down_waiters.push(reply);
                    myself.send_after(Duration::from_secs(15), || ConnMsg::DownTimeout);
                }
            }
            ConnMsg::DownTimeout => {
                if !st.down_waiters.is_empty() {
                    st.kill_all().await;
                    for r in st.down_waiters.drain(..) {
                        let _ = r.send(Ok("peer did not answer the DELETE; SAs removed".into()));
                    }
                }
            }
            ConnMsg::Kill(reply) => {
                st.taken_down = true;
                st.kill_all().await;
                st.answer_up(None, Err(format!("connection '{}' was killed", st.name())));
                for r in st.down_waiters.drain(..) {
                    let _ = r.send(Ok("killed".into()));
                }
                st.ctx.event(
                    Some(&st.spec.name),
                    "kill",
                    format!("connection '{}' killed", st.spec.name),
                );
                let _ = reply.send(Ok(format!("connection '{}' killed", st.spec.name)));
            }
            ConnMsg::Adopt(sa) => {
                let view = IkeView::new_ref();
                let args = IkeArgs {
                    ctx: st.ctx.clone(),
                    spec: st.spec.clone(),
                    parent: myself.get_derived(),
                    start: IkeStart::Adopt(sa),
                    view: view.clone(),
                };
                if let Ok((actor, _)) =
                    Actor::spawn_linked(None, IkeSaActor, args, myself.get_cell()).await
                {
                    if st.impair != Impair::default() {
                        let _ = actor.send_message(IkeMsg::Impair(st.impair.clone()));
                    }
                    st.ikes.push(Ike {
                        actor,
                        view,
                        ours: false,
                        established: true,
                        up: None,
                    });
                    st.taken_down = false;
                    st.failed = 0;
                }
            }
            ConnMsg::Ike(IkeReport::Up(up)) => {
                st.on_established(up).await;
                st.failed = 0;
                st.last_error = None;
            }
            // Only a half-open responder SA moves, and those live under
            // the Responders, never under a connection.
            ConnMsg::Ike(IkeReport::HandOver(h)) => {
                tracing::warn!(
                    conn = h.conn,
                    "a connection's own IKE SA asked to move; dropped"
                );
            }
            ConnMsg::Ike(IkeReport::ChildUp { child }) => {
                let name = st.spec.name.clone();
                if st.child_retries.succeeded(&child) {
                    st.ctx.event(
                        Some(&name),
                        "retry",
                        format!("connection '{name}' child '{child}' is up again"),
                    );
                }
                st.answer_up(
                    Some(&child),
                    Ok(format!(
                        "connection '{name}' established, CHILD SA '{child}' installed"
                    )),
                );
            }
            ConnMsg::Ike(IkeReport::ChildFailed {
                child,
                reason,
                install,
            }) => {
                st.last_error = Some(reason.clone());
                // A refused install, or a failed attempt to bring one back,
                // is tried again; the client hears of the failure.
                let mut answer = format!("connection '{}': {reason}", st.spec.name);
                if install || st.child_retries.pending(&child) {
                    let next = st.retry_child(&myself, &child, false);
                    st.ctx.warn(Some(&st.spec.name), "retry", next.clone());
                    answer = format!("{answer}; {next}");
                }
                st.answer_up(Some(&child), Err(answer));
            }
            ConnMsg::Ike(IkeReport::ChildLost { child, reason }) => {
                st.last_error = Some(reason);
                let name = st.spec.name.clone();
                if st.spec.auto == Auto::Start || st.spec.dpd_action == DpdAction::Restart {
                    st.want_up = true;
                    let next = st.retry_child(&myself, &child, true);
                    st.ctx.warn(
                        Some(&name),
                        "rekey",
                        format!("{next} (re-created after expiry)"),
                    );
                } else {
                    st.ctx.warn(
                        Some(&name),
                        "rekey",
                        format!(
                            "connection '{name}' child '{child}': not re-created (auto = \"{}\", \
                             dpd_action = \"{}\")",
                            st.spec.auto.as_str(),
                            st.spec.dpd_action.as_str()
                        ),
                    );
                }
            }
            ConnMsg::ChildRetry { child, gen } => {
                if st.child_retries.fire(&child, gen) {
                    if let Err(e) = st.initiate(&myself, Some(child.clone())).await {
                        st.last_error = Some(e.clone());
                        let next = st.retry_child(&myself, &child, false);
                        st.ctx
                            .warn(Some(&st.spec.name), "retry", format!("{e}; {next}"));
                    }
                }
            }
            ConnMsg::Ike(IkeReport::Closed {
                ike,
                reason,
                timeout,
                was_established,
                initiated,
            }) => {
                let ours = match st.ikes.iter().position(|i| i.actor.get_id() == ike) {
                    Some(pos) => st.ikes.remove(pos).ours,
                    None => initiated,
                };
                // A responder SA that failed before IKE_AUTH may not even be
                // this connection's peer: only our own attempts count here.
                if !was_established && ours {
                    st.last_error = Some(reason.clone());
                    st.answer_up(
                        None,
                        Err(format!("connection '{}' failed: {reason}", st.spec.name)),
                    );
                }
                if st.ikes.is_empty() {
                    for r in st.down_waiters.drain(..) {
                        let _ = r.send(Ok(format!("connection '{}' is down", st.spec.name)));
                    }
                }
                if !st.want_up || !ours {
                    return Ok(());
                }
                if was_established {
                    if timeout && st.spec.dpd_action == DpdAction::Restart {
                        st.ctx.event(
                            Some(&st.spec.name),
                            "retry",
                            "peer is dead (DPD); restarting".into(),
                        );
                        st.failed = 0;
                        if let Err(e) = st.initiate(&myself, None).await {
                            st.last_error = Some(e);
                        }
                    }
                    return Ok(());
                }
                st.failed += 1;
                match st
                    .spec
                    .retry
                    .next_attempt(st.failed, runtime::backoff::rand01())
                {
                    Some(delay) => {
                        st.ctx.event(
                            Some(&st.spec.name),
                            "retry",
                            format!(
                                "attempt {} failed ({reason}); attempt {} in {:.1}s",
                                st.failed,
                                st.failed + 1,
                                delay.as_secs_f64()
                            ),
                        );
                        st.schedule_retry(&myself, delay);
                    }
                    None => {
                        st.want_up = false;
                        st.ctx.event(
                            Some(&st.spec.name),
                            "retry",
                            format!("giving up after {} attempts: {reason}", st.failed),
                        );
                    }
                }
            }
            ConnMsg::Retry(gen) => {
                if gen == st.retry_gen && st.want_up {
                    st.retry = None;
                    if let Err(e) = st.initiate(&myself, None).await {
                        st.last_error = Some(e);
                    }
                }
            }
            ConnMsg::Status(reply) => {
                let _ = reply.send(st.status().await);
            }
            ConnMsg::Impair { kind, reply } => {
                if !st.ctx.impair {
                    let _ = reply.send(Err(
                        "impairments are disabled: start vpnd with --impair".into()
                    ));
                    return Ok(());
                }
                match crate::ike_sa::parse_impair(&kind) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(Some(i)) => {
                        for ike in &st.ikes {
                            let _ = ike.actor.send_message(IkeMsg::Impair(i.clone()));
                        }
                        st.impair = i;
                        let _ = reply.send(Ok(format!(
                            "connection '{}': impairment '{kind}' set",
                            st.spec.name
                        )));
                    }
                    Ok(None) if kind == "panic-connection" => {
                        let _ = reply.send(Ok(format!(
                            "connection '{}': connection actor panics",
                            st.spec.name
                        )));
                        panic!(
                            "impair: injected panic in the connection actor of '{}'",
                            st.spec.name
                        );
                    }
                    Ok(None) if kind == "kernel-fail" || kind == "acquire" => {
                        let Some(faults) = st.ctx.dataplane.faults() else {
                            let _ = reply.send(Err(format!(
                                "the '{}' dataplane has no fault injection",
                                st.ctx.dataplane.name()
                            )));
                            return Ok(());
                        };
                        if kind == "kernel-fail" {
                            faults.fail_next_install(&st.spec.name);
                            let _ = reply.send(Ok(format!(
                                "connection '{}': its next dataplane install fails",
                                st.spec.name
                            )));
                            return Ok(());
                        }
                        // As if a packet had hit the trap of the first child.
                        let child = st
                            .spec
                            .peer
                            .children
                            .first()
                            .map(|c| c.name.clone())
                            .unwrap_or_default();
                        faults.simulate_acquire(&st.spec.name, &child);
                        let _ = reply.send(Ok(format!(
                            "connection '{}': acquire for '{child}' raised",
                            st.spec.name
                        )));
                    }
                    Ok(None) => match st.ikes.first() {
                        Some(ike) => {
                            let _ = ike.actor.send_message(IkeMsg::Panic);
                            let _ = reply.send(Ok(format!(
                                "connection '{}': IKE SA actor will panic",
                                st.spec.name
                            )));
                        }
                        None => {
                            let _ = reply.send(Err(format!(
                                "connection '{}' has no IKE SA to panic",
                                st.spec.name
                            )));
                        }
                    },
                }
            }
            ConnMsg::Set(spec, reply) => {
                st.spec = Arc::new(*spec);
                // Running IKE SAs pick it up for their next retransmission
                // and DPD timer; the next attempt uses the new retry policy.
                for ike in &st.ikes {
                    let _ = ike.actor.send_message(IkeMsg::UpdateSpec(st.spec.clone()));
                }
                let _ = reply.send(Ok(format!("connection '{}' updated", st.spec.name)));
            }
            ConnMsg::Route(reply) => {
                st.install_traps();
                let _ = reply.send(Ok(format!("connection '{}' routed", st.spec.name)));
            }
            ConnMsg::Unroute(reply) => {
                if !st.routed {
                    let _ = reply.send(Err(format!("connection '{}' is not routed", st.spec.name)));
                    return Ok(());
                }
                for c in &st.spec.peer.children {
                    let _ = st.ctx.dataplane.remove_trap(&st.spec.name, &c.name);
                }
                st.routed = false;
                let _ = reply.send(Ok(format!("connection '{}' unrouted", st.spec.name)));
            }
        }
        Ok(())
    }

    async fn supervise(
        &self,
        myself: ActorRef<ConnMsg>,
        evt: SupervisionEvent,
        st: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(pos) = st
                    .ikes
                    .iter()
                    .position(|i| i.actor.get_id() == cell.get_id())
                else {
                    return Ok(());
                };
                let failed = st.ikes.remove(pos);
                runtime::supervise::counters::restart();
                // The dead actor's subtree is gone; so must its kernel state be.
                st.remove_dataplane_sas();
                st.ctx.event(
                    Some(&st.spec.name),
                    "error",
                    format!("IKE SA actor failed: {err}"),
                );
                let restart = failed.ours || failed.established;
                match st
                    .tracker
                    .on_failure(runtime::clock::now(), runtime::backoff::rand01())
                {
                    Decision::Restart {
                        after,
                        restart_number,
                    } if restart && (st.want_up || failed.established) => {
                        st.want_up = true;
                        st.ctx.event(
                            Some(&st.spec.name),
                            "retry",
                            format!(
                                "restart {restart_number} of the connection in {:.1}s",
                                after.as_secs_f64()
                            ),
                        );
                        st.schedule_retry(&myself, after);
                    }
                    Decision::Restart { .. } => {}
                    Decision::GiveUp { restarts_in_window }
                        if restart && (st.want_up || failed.established) =>
                    {
                        st.want_up = false;
                        let why = format!(
                            "gave up after {restarts_in_window} restarts in the window; \
                             run 'vpnctl up {}' to retry",
                            st.spec.name
                        );
                        tracing::warn!("{why}");
                        st.last_error = Some(why.clone());
                        st.gave_up = Some(why.clone());
                        st.ctx.event(Some(&st.spec.name), "error", why);
                    }
                    Decision::GiveUp { restarts_in_window } => {
                        st.want_up = false;
                        st.last_error =
                            Some(format!("gave up after {restarts_in_window} restarts"));
                        st.ctx.event(
                            Some(&st.spec.name),
                            "error",
                            format!("giving up after {restarts_in_window} restarts in the window"),
                        );
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                let id = cell.get_id();
                st.ikes.retain(|i| i.actor.get_id() != id);
            }
            _ => {}
        }
        Ok(())
    }
}
