//! The Daemon: root supervisor of the Connection actors and of the neutral
//! Responders (half-open responder SAs), the directory of loaded
//! connections, and the typed API the control socket drives. It is not on
//! the datagram path. Requests that must wait (up, down, kill, status) run
//! in their own tasks so the Daemon itself never blocks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use runtime::supervise::{Decision, RestartPolicy, RestartTracker};

use crate::connection::{ConnArgs, ConnMsg, ConnectionActor};
use crate::ctx::CtxRef;
use crate::derive_report;
use crate::report::{Expired, HandOver};
use crate::responders::{ResponderArgs, Responders};
use crate::spec::idle_status;
use crate::spec::ConnSpec;
use crate::status::{SchedulerReport, StatsReport, StatusReport};

/// What the control layer can ask.
#[derive(Debug)]
pub enum Api {
    Status(Option<String>),
    Up {
        conn: String,
        child: Option<String>,
        wait: bool,
    },
    Down(String),
    Kill(String),
    /// Add a connection; fails if the name exists.
    Add(Box<ConnSpec>),
    /// Delete if present, then add.
    Replace(Box<ConnSpec>),
    Delete(String),
    /// Retune a connection in place (retry/retransmit/DPD settings).
    Set(Box<ConnSpec>),
    Stats,
    Impair {
        conn: String,
        kind: String,
    },
    Route(String),
    Unroute(String),
    /// Names of the loaded connections.
    Names,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiReply {
    Ok(String),
    Err(String),
    Status(StatusReport),
    Stats(Box<StatsReport>),
    Names(Vec<String>),
}

pub enum DaemonMsg {
    /// An authenticated responder SA for the connection it names.
    HandOver(HandOver),
    Acquire {
        owner: String,
        child: String,
    },
    Api(Api, RpcReplyPort<ApiReply>),
    /// Start a failed connection again after its restart backoff.
    Restart(Arc<ConnSpec>),
}

derive_report!(HandOver => DaemonMsg::HandOver);

struct Conn {
    spec: Arc<ConnSpec>,
    actor: ActorRef<ConnMsg>,
}

pub struct DaemonActor;

pub struct DaemonState {
    _alive: runtime::counters::AliveGuard,
    ctx: CtxRef,
    conns: Vec<Conn>,
    /// Position in `conns` by name.
    by_name: std::collections::HashMap<String, usize>,
    /// Restart history per connection name (survives the restarts).
    trackers: std::collections::HashMap<String, RestartTracker>,
    /// Connections whose actor used up its restarts, with why: not running,
    /// still listed by `status` and `Names`, started again by `up`.
    given_up: Vec<(Arc<ConnSpec>, String)>,
}

pub struct DaemonArgs {
    pub ctx: CtxRef,
    pub conns: Vec<ConnSpec>,
    /// Connections that were up when the daemon last ran (revival).
    pub revive: Vec<String>,
}

/// Ask a Connection actor from a task and answer the API caller with its
/// result, so the Daemon itself never waits.
fn forward(
    reply: RpcReplyPort<ApiReply>,
    actor: ActorRef<ConnMsg>,
    conn: String,
    timeout_ms: u64,
    msg: impl FnOnce(RpcReplyPort<Result<String, String>>) -> ConnMsg + Send + 'static,
) {
    tokio::spawn(async move {
        let r = actor
            .call(msg, Some(Duration::from_millis(timeout_ms)))
            .await;
        let _ = reply.send(match r {
            Ok(ractor::rpc::CallResult::Success(Ok(m))) => ApiReply::Ok(m),
            Ok(ractor::rpc::CallResult::Success(Err(e))) => ApiReply::Err(e),
            Ok(_) | Err(_) => ApiReply::Err(format!("connection '{conn}': no answer in time")),
        });
    });
}

/// `vpnctl impair @daemon stall[=SECS]` impairs the daemon actor itself
/// (`@` cannot begin a connection name).
pub const DAEMON_IMPAIR_TARGET: &str = "@daemon";

/// How long a daemon stall lasts when no `=SECS` is given.
const DAEMON_STALL_DEFAULT: Duration = Duration::from_secs(600);

/// `stall[=SECS]` for [`DAEMON_IMPAIR_TARGET`]: the daemon actor stops
/// handling messages for that long (`vpnd --impair` only).
fn daemon_stall(enabled: bool, kind: &str) -> Result<Duration, String> {
    if !enabled {
        return Err("impairments are disabled: start vpnd with --impair".into());
    }
    match kind.split_once('=') {
        None if kind == "stall" => Ok(DAEMON_STALL_DEFAULT),
        Some(("stall", secs)) => match secs.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "impairment 'stall' of {DAEMON_IMPAIR_TARGET}: '{secs}' is not a positive number of seconds"
            )),
        },
        _ => Err(format!(
            "unknown impairment '{kind}' for {DAEMON_IMPAIR_TARGET}: expected stall or stall=SECS"
        )),
    }
}

fn no_conn(name: &str) -> ApiReply {
    ApiReply::Err(format!("no connection named '{name}'"))
}

/// Ask each connection for its status, in order: in up to `STATUS_LANES`
/// tasks at once, so that thousands of connections answer in the time of
/// their work rather than of thousands of round trips one after another.
async fn gather_status(targets: Vec<ActorRef<ConnMsg>>) -> Vec<crate::status::ConnStatus> {
    const STATUS_LANES: usize = 16;
    let per = targets.len().div_ceil(STATUS_LANES).max(1);
    let mut lanes = Vec::new();
    for chunk in targets.chunks(per) {
        let chunk = chunk.to_vec();
        lanes.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for t in chunk {
                if let Ok(s) = ractor::call_t!(t, ConnMsg::Status, 3000) {
                    out.push(s);
                }
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(targets.len());
    for lane in lanes {
        all.extend(lane.await.unwrap_or_default());
    }
    all
}

/// Start the neutral home of half-open responder SAs under the Daemon.
async fn spawn_responders(
    myself: &ActorRef<DaemonMsg>,
    ctx: &CtxRef,
) -> Result<(), ractor::SpawnErr> {
    let args = ResponderArgs {
        ctx: ctx.clone(),
        hand_over: myself.get_derived(),
    };
    Actor::spawn_linked(None, Responders, args, myself.get_cell()).await?;
    Ok(())
}

impl DaemonState {
    fn find(&self, name: &str) -> Option<&Conn> {
        self.conns.get(*self.by_name.get(name)?)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Take connection `pos` out of the list (and the index).
    fn remove_at(&mut self, pos: usize) -> Conn {
        let c = self.conns.remove(pos);
        self.by_name.remove(&c.spec.name);
        for (i, c) in self.conns.iter().enumerate().skip(pos) {
            self.by_name.insert(c.spec.name.clone(), i);
        }
        c
    }

    /// Why `name` gave up, if it did.
    fn gave_up(&self, name: &str) -> Option<&str> {
        self.given_up
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, why)| why.as_str())
    }

    /// The answer for a verb on `name`, which has no actor: it gave up
    /// (`what` says what that means for the verb), or there is no such
    /// connection. Down and kill of one that gave up succeed.
    fn not_running(&self, name: &str, what: &str) -> ApiReply {
        match self.gave_up(name) {
            Some(why) if what == "is down" || what == "has no SAs" => {
                ApiReply::Ok(format!("connection '{name}' {what}: it {why}"))
            }
            Some(why) => ApiReply::Err(format!("connection '{name}' {what}: it {why}")),
            None => no_conn(name),
        }
    }

    /// Forget that `name` gave up; its spec, if it had.
    fn take_given_up(&mut self, name: &str) -> Option<Arc<ConnSpec>> {
        let pos = self.given_up.iter().position(|(s, _)| s.name == name)?;
        Some(self.given_up.remove(pos).0)
    }

    /// Start a connection and make it visible to the responder path.
    async fn start_conn(
        &mut self,
        myself: &ActorRef<DaemonMsg>,
        spec: Arc<ConnSpec>,
    ) -> Result<(), String> {
        self.spawn_conn(myself, spec).await?;
        self.publish();
        Ok(())
    }

    /// Start a connection's actor; `publish` makes it visible.
    async fn spawn_conn(
        &mut self,
        myself: &ActorRef<DaemonMsg>,
        spec: Arc<ConnSpec>,
    ) -> Result<(), String> {
        // A dataplane that only speaks ESP-in-UDP needs encapsulation
        // negotiated whether or not there is a NAT (strongSwan `encap`).
        let spec = if self.ctx.dataplane.encap().forces_encap() && !spec.peer.encap {
            let mut s = (*spec).clone();
            let mut peer = (*s.peer).clone();
            peer.encap = true;
            s.peer = Arc::new(peer);
            Arc::new(s)
        } else {
            spec
        };
        let args = ConnArgs {
            ctx: self.ctx.clone(),
            spec: spec.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, ConnectionActor, args, myself.get_cell())
            .await
            .map_err(|e| format!("cannot start connection '{}': {e}", spec.name))?;
        self.by_name.insert(spec.name.clone(), self.conns.len());
        self.conns.push(Conn { spec, actor });
        Ok(())
    }

    /// Make the loaded connections visible to the responder path.
    fn publish(&self) {
        self.ctx
            .publish(self.conns.iter().map(|c| c.spec.clone()).collect());
    }

    async fn stop_conn(&mut self, name: &str) -> bool {
        let Some(pos) = self.position(name) else {
            return false;
        };
        let c = self.remove_at(pos);
        self.publish();
        if let Some(r) = &self.ctx.revival {
            r.set(name, false);
        }
        let _ = ractor::call_t!(c.actor, ConnMsg::Kill, 2000);
        let _ = c
            .actor
            .stop_and_wait(None, Some(Duration::from_secs(2)))
            .await;
        self.ctx.dataplane.remove_owner(name);
        true
    }

    /// Initiate the connections that were up when the daemon last ran,
    /// whatever their `auto` (a responder's too: the peer's stale SAs go
    /// on our INITIAL_CONTACT). `start` ones initiate anyway; a name no
    /// longer configured is dropped from the state.
    fn revive(&self, names: Vec<String>) {
        let Some(r) = &self.ctx.revival else { return };
        let mut revived = 0usize;
        for name in names {
            match self.find(&name) {
                None => {
                    tracing::info!(
                        conn = name,
                        "revival: connection '{name}' was up but is no longer configured; skipped"
                    );
                    r.set(&name, false);
                }
                Some(c) if c.spec.auto == crate::spec::Auto::Start => {}
                Some(c) => {
                    revived += 1;
                    let _ = c.actor.send_message(ConnMsg::Up {
                        child: None,
                        reply: None,
                    });
                }
            }
        }
        if revived > 0 {
            self.ctx.event(
                None,
                "revival",
                format!("initiating {revived} connection(s) that were up before the restart"),
            );
        }
    }

    fn stats(&self) -> StatsReport {
        StatsReport {
            actors: runtime::supervise::counters::actors_alive(),
            restarts_total: runtime::supervise::counters::restarts_total(),
            ike_sas: self.ctx.ike_sas.load(Ordering::Relaxed),
            child_sas: self.ctx.dataplane.installed().len() as u64,
            half_open: self.ctx.half_open_sas.load(Ordering::Relaxed),
            rss_bytes: rss_bytes(),
            scheduler: SchedulerReport::default(),
            malformed_datagrams_total: self.ctx.router.malformed(),
            admission: self.ctx.admission.stats(),
            unknown_spi_total: self.ctx.router.unknown_spi(),
            connections: self.conns.len() as u64,
            dataplane: self.ctx.dataplane.name().to_string(),
            traps: self.ctx.dataplane.traps().len() as u64,
            updown_runs_total: self.ctx.updown.runs_total(),
            updown_failures_total: self.ctx.updown.failures_total(),
            dataplane_counters: self
                .ctx
                .dataplane
                .stats()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// Resident set size from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

impl Actor for DaemonActor {
    type Msg = DaemonMsg;
    type State = DaemonState;
    type Arguments = DaemonArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DaemonMsg>,
        a: DaemonArgs,
    ) -> Result<DaemonState, ActorProcessingErr> {
        spawn_responders(&myself, &a.ctx).await?;
        let mut st = DaemonState {
            _alive: runtime::counters::AliveGuard::new(),
            ctx: a.ctx,
            conns: Vec::new(),
            by_name: std::collections::HashMap::new(),
            trackers: std::collections::HashMap::new(),
            given_up: Vec::new(),
        };
        // The directory is written once, not once per connection.
        for spec in a.conns {
            st.spawn_conn(&myself, Arc::new(spec)).await?;
        }
        st.publish();
        st.revive(a.revive);
        // Trap hits start their connection.
        let mut events = st.ctx.dataplane.subscribe();
        let me = myself.clone();
        let ctx = st.ctx.clone();
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("dataplane events: {n} lost");
                        continue;
                    }
                    Err(_) => return,
                };
                match ev {
                    kernel::DataplaneEvent::Acquire { owner, child } => {
                        if me
                            .send_message(DaemonMsg::Acquire { owner, child })
                            .is_err()
                        {
                            return;
                        }
                    }
                    kernel::DataplaneEvent::Expire { spi_in, hard } => {
                        let actor = ctx.children.get(&spi_in).map(|a| a.clone());
                        if let Some(a) = actor {
                            let _ = a.send_message(Expired { hard });
                        }
                    }
                }
            }
        });
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<DaemonMsg>,
        msg: DaemonMsg,
        st: &mut DaemonState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DaemonMsg::HandOver(h) => match st.find(&h.conn) {
                Some(c) => {
                    let _ = c.actor.send_message(ConnMsg::Adopt(h));
                }
                None => tracing::warn!(
                    conn = h.conn,
                    "authenticated IKE SA for a connection that is gone"
                ),
            },
            DaemonMsg::Acquire { owner, child } => {
                if let Some(c) = st.find(&owner) {
                    st.ctx.event(
                        Some(&owner),
                        "state",
                        format!("traffic hit the trap of '{child}'"),
                    );
                    let _ = c.actor.send_message(ConnMsg::Up {
                        child: Some(child),
                        reply: None,
                    });
                }
            }
            DaemonMsg::Api(api, reply) => self.api(&myself, st, api, reply).await,
            DaemonMsg::Restart(spec) => {
                // Unless it was deleted or re-added meanwhile.
                if st.find(&spec.name).is_none() {
                    if let Err(e) = st.start_conn(&myself, spec.clone()).await {
                        st.ctx.event(Some(&spec.name), "error", e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<DaemonMsg>,
        evt: SupervisionEvent,
        st: &mut DaemonState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let Some(pos) = st
                .conns
                .iter()
                .position(|c| c.actor.get_id() == cell.get_id())
            else {
                // Not a connection: the Responders. Half-open SAs are lost
                // (their peers retry); new requests find the new one.
                tracing::warn!("the responder path failed ({err}); restarting it");
                runtime::supervise::counters::restart();
                spawn_responders(&myself, &st.ctx).await?;
                return Ok(());
            };
            let c = st.remove_at(pos);
            st.publish();
            runtime::supervise::counters::restart();
            st.ctx.dataplane.remove_owner(&c.spec.name);
            st.ctx.event(
                Some(&c.spec.name),
                "error",
                format!("connection actor failed: {err}"),
            );
            let tracker = st
                .trackers
                .entry(c.spec.name.clone())
                .or_insert_with(|| RestartTracker::new(RestartPolicy::default()));
            match tracker.on_failure(runtime::clock::now(), runtime::backoff::rand01()) {
                Decision::Restart { after, .. } => {
                    let spec = c.spec.clone();
                    myself.send_after(after, move || DaemonMsg::Restart(spec));
                }
                Decision::GiveUp { restarts_in_window } => {
                    let name = &c.spec.name;
                    let why = format!(
                        "gave up after {restarts_in_window} restarts of the connection in \
                         the window; run 'vpnctl up {name}' to start it again"
                    );
                    tracing::warn!(conn = name.as_str(), "{why}");
                    st.ctx.event(Some(name), "error", why.clone());
                    st.given_up.push((c.spec.clone(), why));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DaemonMsg>,
        st: &mut DaemonState,
    ) -> Result<(), ActorProcessingErr> {
        for c in &st.conns {
            st.ctx.dataplane.remove_owner(&c.spec.name);
        }
        Ok(())
    }
}

impl DaemonActor {
    async fn api(
        &self,
        myself: &ActorRef<DaemonMsg>,
        st: &mut DaemonState,
        api: Api,
        reply: RpcReplyPort<ApiReply>,
    ) {
        match api {
            Api::Status(filter) => {
                let stopped = |(spec, why): &(Arc<ConnSpec>, String)| {
                    let mut s = idle_status(spec);
                    s.gave_up = Some(why.clone());
                    s.last_error = Some(why.clone());
                    s
                };
                let (targets, given_up): (Vec<ActorRef<ConnMsg>>, Vec<_>) = match &filter {
                    Some(name) => match st.find(name) {
                        Some(c) => (vec![c.actor.clone()], Vec::new()),
                        None => match st.given_up.iter().find(|(s, _)| &s.name == name) {
                            Some(g) => (Vec::new(), vec![stopped(g)]),
                            None => {
                                let _ = reply.send(no_conn(name));
                                return;
                            }
                        },
                    },
                    None => (
                        st.conns.iter().map(|c| c.actor.clone()).collect(),
                        st.given_up.iter().map(stopped).collect(),
                    ),
                };
                tokio::spawn(async move {
                    let mut report = StatusReport {
                        connections: gather_status(targets).await,
                        ..Default::default()
                    };
                    report.connections.extend(given_up);
                    let _ = reply.send(ApiReply::Status(report));
                });
            }
            Api::Up { conn, child, wait } => {
                // One that gave up starts again, with a fresh window.
                if let Some(spec) = st.take_given_up(&conn) {
                    st.trackers.remove(&conn);
                    if let Err(e) = st.start_conn(myself, spec).await {
                        let _ = reply.send(ApiReply::Err(e));
                        return;
                    }
                }
                let Some(c) = st.find(&conn) else {
                    let _ = reply.send(no_conn(&conn));
                    return;
                };
                if !wait {
                    let _ = c.actor.send_message(ConnMsg::Up { child, reply: None });
                    let _ = reply.send(ApiReply::Ok(format!("initiating connection '{conn}'")));
                    return;
                }
                forward(reply, c.actor.clone(), conn, 300_000, |p| ConnMsg::Up {
                    child,
                    reply: Some(p),
                });
            }
            Api::Down(conn) => match st.find(&conn) {
                Some(c) => forward(reply, c.actor.clone(), conn, 30_000, ConnMsg::Down),
                None => {
                    let _ = reply.send(st.not_running(&conn, "is down"));
                }
            },
            Api::Kill(conn) => match st.find(&conn) {
                Some(c) => forward(reply, c.actor.clone(), conn, 5_000, ConnMsg::Kill),
                None => {
                    let _ = reply.send(st.not_running(&conn, "has no SAs"));
                }
            },
            Api::Add(spec) => {
                if st.find(&spec.name).is_some() || st.gave_up(&spec.name).is_some() {
                    let _ = reply.send(ApiReply::Err(format!(
                        "connection '{}' already exists",
                        spec.name
                    )));
                    return;
                }
                let name = spec.name.clone();
                let r = st.start_conn(myself, Arc::new(*spec)).await;
                let _ = reply.send(match r {
                    Ok(()) => ApiReply::Ok(format!("connection '{name}' added")),
                    Err(e) => ApiReply::Err(e),
                });
            }
            Api::Replace(spec) => {
                let name = spec.name.clone();
                let gave_up = st.take_given_up(&name).is_some();
                if gave_up {
                    st.trackers.remove(&name);
                }
                let existed = st.stop_conn(&name).await || gave_up;
                let r = st.start_conn(myself, Arc::new(*spec)).await;
                let verb = if existed { "replaced" } else { "added" };
                let _ = reply.send(match r {
                    Ok(()) => ApiReply::Ok(format!("connection '{name}' {verb}")),
                    Err(e) => ApiReply::Err(e),
                });
            }
            Api::Delete(name) => {
                let gave_up = st.take_given_up(&name).is_some();
                let r = if st.stop_conn(&name).await || gave_up {
                    ApiReply::Ok(format!("connection '{name}' deleted"))
                } else {
                    no_conn(&name)
                };
                let _ = reply.send(r);
            }
            Api::Set(spec) => {
                let name = spec.name.clone();
                if let Some(g) = st.given_up.iter_mut().find(|(s, _)| s.name == name) {
                    // Kept for when `up` starts it again.
                    g.0 = Arc::new(*spec);
                    let _ = reply.send(ApiReply::Ok(format!(
                        "connection '{name}' updated (it is not running: {})",
                        g.1
                    )));
                    return;
                }
                let Some(pos) = st.position(&name) else {
                    let _ = reply.send(no_conn(&name));
                    return;
                };
                let spec = Arc::new(*spec);
                st.conns[pos].spec = spec.clone();
                st.publish();
                let actor = st.conns[pos].actor.clone();
                forward(reply, actor, name, 3_000, move |p| {
                    ConnMsg::Set(Box::new((*spec).clone()), p)
                });
            }
            Api::Stats => {
                let mut stats = st.stats();
                let sched = st.ctx.scheduler.clone();
                tokio::spawn(async move {
                    let s = sched.stats().await;
                    stats.scheduler = SchedulerReport {
                        key_computations_total: s.key_computations_total,
                        queued: s.queued,
                        in_flight: s.in_flight,
                        rate_limit_per_sec: s.rate_limit_per_sec,
                        shed_total: s.shed_total,
                    };
                    let _ = reply.send(ApiReply::Stats(Box::new(stats)));
                });
            }
            Api::Impair { conn, kind } if conn == DAEMON_IMPAIR_TARGET => {
                match daemon_stall(st.ctx.impair, &kind) {
                    Ok(d) => {
                        let _ = reply.send(ApiReply::Ok(format!(
                            "the daemon actor stalls for {}s",
                            d.as_secs()
                        )));
                        st.ctx.event(
                            None,
                            "error",
                            format!("impair: daemon actor stalls for {}s", d.as_secs()),
                        );
                        // The actor answers nothing meanwhile (the runtime
                        // is not blocked): what a wedged actor tree looks
                        // like to the control socket and the watchdog.
                        tokio::time::sleep(d).await;
                    }
                    Err(e) => {
                        let _ = reply.send(ApiReply::Err(e));
                    }
                }
            }
            Api::Impair { conn, kind } => match st.find(&conn) {
                Some(c) => forward(reply, c.actor.clone(), conn, 3_000, |p| ConnMsg::Impair {
                    kind,
                    reply: p,
                }),
                None => {
                    let _ = reply.send(st.not_running(&conn, "cannot be impaired"));
                }
            },
            Api::Route(conn) => match st.find(&conn) {
                Some(c) => forward(reply, c.actor.clone(), conn, 3_000, ConnMsg::Route),
                None => {
                    let _ = reply.send(st.not_running(&conn, "cannot be routed"));
                }
            },
            Api::Unroute(conn) => match st.find(&conn) {
                Some(c) => forward(reply, c.actor.clone(), conn, 3_000, ConnMsg::Unroute),
                None => {
                    let _ = reply.send(st.not_running(&conn, "is not routed"));
                }
            },
            Api::Names => {
                let _ = reply.send(ApiReply::Names(
                    st.conns
                        .iter()
                        .map(|c| &c.spec)
                        .chain(st.given_up.iter().map(|(s, _)| s))
                        .map(|s| s.name.clone())
                        .collect(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_stall_parses_and_is_gated() {
        assert_eq!(daemon_stall(true, "stall"), Ok(DAEMON_STALL_DEFAULT));
        assert_eq!(daemon_stall(true, "stall=7"), Ok(Duration::from_secs(7)));
        assert_eq!(
            daemon_stall(false, "stall").unwrap_err(),
            "impairments are disabled: start vpnd with --impair"
        );
        assert!(daemon_stall(true, "stall=0").is_err());
        assert_eq!(
            daemon_stall(true, "panic").unwrap_err(),
            "unknown impairment 'panic' for @daemon: expected stall or stall=SECS"
        );
    }
}
