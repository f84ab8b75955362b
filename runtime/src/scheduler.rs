//! The key-computation scheduler: one actor that hands out permits for
//! CPU-bound key computations (DH, key derivation) under a rate limit
//! (token bucket), a concurrency cap and a priority order, and paces
//! half-open IKE SAs per peer.
//!
//! Callers never talk to the actor directly: use a [`SchedulerHandle`]
//! (cheap to clone). Waiting callers get a oneshot; a caller whose future is
//! dropped while waiting (task aborted, timeout) leaves no slot behind.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `[scheduler]` configuration. A zero means "no limit" for each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Permits granted per second (token bucket, burst = max(1, rate / 20)).
    pub key_computations_per_sec: u32,
    /// Permits outstanding at once.
    pub max_concurrent: u32,
    /// Half-open IKE SAs we initiated towards one peer address.
    pub max_half_open_per_peer: u32,
}

impl Default for SchedulerConfig {
    /// 1000/s, 4 concurrent, 4 half-open per peer.
    fn default() -> Self {
        SchedulerConfig {
            key_computations_per_sec: 1000,
            max_concurrent: 4,
            max_half_open_per_peer: 4,
        }
    }
}

/// The share of all cores key computations may take at the default rate.
pub const DEFAULT_KEY_CPU_SHARE: f64 = 0.5;

impl SchedulerConfig {
    /// The default `key_computations_per_sec` for a machine where one key
    /// computation takes `cost` and `cores` cores can run them: as many as
    /// fill [`DEFAULT_KEY_CPU_SHARE`] of the CPU, rounded down to a
    /// hundred, at least 100.
    pub fn derived_rate(cost: Duration, cores: usize) -> u32 {
        let per_sec = DEFAULT_KEY_CPU_SHARE * cores.max(1) as f64 / cost.as_secs_f64().max(1e-7);
        ((per_sec.min(u32::MAX as f64) as u32) / 100 * 100).max(100)
    }

    /// Token-bucket burst: `max(1, rate / 20)`.
    pub fn burst(&self) -> u32 {
        (self.key_computations_per_sec / 20).max(1)
    }
}

/// Permit priority; `High` is served first, FIFO within one priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Finishing an exchange the peer is waiting on (responder work, IKE_AUTH follow-ups).
    High,
    /// New initiations.
    Normal,
    /// Rekeys.
    Low,
    /// Responder work for a peer no connection names by address (matched
    /// only by `%any` or a range). Served last, from a queue of at most
    /// [`STRANGER_QUEUE`] waiters that sheds its oldest when full, so a
    /// flood of strangers never delays a configured peer or a rekey.
    Stranger,
}

/// What a key computation is expected to cost, which decides where it
/// runs (see [`SchedulerHandle::compute`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    /// Hundreds of microseconds at most: elliptic-curve DH, key
    /// derivation, PSK, ECDSA and Ed25519 signatures.
    Light,
    /// Milliseconds: RSA signatures.
    Heavy,
}

impl Weight {
    /// `Heavy` if `slow`.
    pub fn of(slow: bool) -> Weight {
        if slow {
            Weight::Heavy
        } else {
            Weight::Light
        }
    }
}

/// Waiters kept at [`Priority::Stranger`]; one more sheds the oldest.
pub const STRANGER_QUEUE: usize = 256;

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
            Priority::Stranger => 3,
        }
    }
}

/// Scheduler counters (`vpnctl stats` → `"scheduler"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SchedulerStats {
    /// Permits granted since start.
    pub key_computations_total: u64,
    /// Callers waiting for a permit (all priorities).
    pub queued: u64,
    /// Permits outstanding.
    pub in_flight: u64,
    /// Configured `key_computations_per_sec` (0 = unlimited).
    pub rate_limit_per_sec: u64,
    /// Half-open slots held, all peers.
    pub half_open: u64,
    /// Stranger waiters shed because their queue was full.
    pub shed_total: u64,
}

/// Messages of the scheduler actor. Use [`SchedulerHandle`] instead of
/// sending these yourself.
#[doc(hidden)]
pub enum SchedulerMsg {
    Acquire(Priority, oneshot::Sender<Grant>),
    Release,
    HalfOpen(IpAddr, oneshot::Sender<HalfOpenGuard>),
    HalfOpenRelease(IpAddr),
    /// A waiter gave up; drop closed waiters.
    Prune,
    /// Token-bucket refill timer.
    Tick,
    Stats(oneshot::Sender<SchedulerStats>),
    SetConfig(SchedulerConfig, oneshot::Sender<()>),
}

/// The answer to an `Acquire`: a permit, or shed (strangers only).
#[doc(hidden)]
#[derive(Debug)]
pub enum Grant {
    Permit(Permit),
    Shed,
}

/// A key-computation permit. Dropping it (from any thread, including a
/// `spawn_blocking` worker) releases the concurrency slot.
#[must_use = "the permit is released when dropped"]
#[derive(Debug)]
pub struct Permit {
    actor: Option<ActorRef<SchedulerMsg>>,
}

impl Permit {
    fn disarm(&mut self) {
        self.actor = None;
    }

    /// A permit not tied to any scheduler (what callers get when the
    /// scheduler actor is gone: the daemon fails open rather than stalls).
    pub fn detached() -> Permit {
        Permit { actor: None }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(a) = self.actor.take() {
            let _ = a.send_message(SchedulerMsg::Release);
        }
    }
}

/// A half-open slot towards one peer; dropping it releases the slot (call
/// sites drop it when the IKE SA is established or has failed).
#[must_use = "the half-open slot is released when dropped"]
#[derive(Debug)]
pub struct HalfOpenGuard {
    actor: Option<ActorRef<SchedulerMsg>>,
    peer: IpAddr,
}

impl HalfOpenGuard {
    fn disarm(&mut self) {
        self.actor = None;
    }

    /// The peer this slot counts against.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }
}

impl Drop for HalfOpenGuard {
    fn drop(&mut self) {
        if let Some(a) = self.actor.take() {
            let _ = a.send_message(SchedulerMsg::HalfOpenRelease(self.peer));
        }
    }
}

/// The scheduler actor. Spawn it with [`SchedulerHandle::spawn`] (optionally
/// linked to a supervisor), not with `Actor::spawn` directly.
pub struct Scheduler;

/// Start-up arguments of [`Scheduler`] (built by [`SchedulerHandle`]).
pub struct SchedulerArgs {
    cfg: SchedulerConfig,
    pressure: broadcast::Sender<SchedulerStats>,
}

struct Shared {
    actor: RwLock<ActorRef<SchedulerMsg>>,
    cfg: RwLock<SchedulerConfig>,
    pressure: broadcast::Sender<SchedulerStats>,
    /// Run computations on the caller's task (see `set_inline`).
    inline: std::sync::atomic::AtomicBool,
}

/// Cheap-to-clone handle to the scheduler actor.
#[derive(Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("actor", &self.actor_ref().get_id())
            .finish()
    }
}

/// Buffered pressure notifications per subscriber.
const PRESSURE_CAPACITY: usize = 64;

/// Removes a waiter from the scheduler when the waiting future is dropped.
struct Waiting<T> {
    rx: Option<oneshot::Receiver<T>>,
    actor: ActorRef<SchedulerMsg>,
}

impl<T> Waiting<T> {
    async fn wait(mut self) -> Option<T> {
        let rx = self.rx.as_mut().expect("receiver present");
        let r = rx.await.ok();
        self.rx = None; // completed: nothing to prune
        r
    }
}

impl<T> Drop for Waiting<T> {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            // Close first so the actor sees the sender as closed; a value
            // already sent (a granted Permit) is dropped here and released.
            drop(rx);
            let _ = self.actor.send_message(SchedulerMsg::Prune);
        }
    }
}

impl SchedulerHandle {
    /// Spawn the scheduler actor, linked to `supervisor` if given (pass
    /// `Some(myself.get_cell())` from the daemon's root actor). The returned
    /// `JoinHandle` completes when the actor stops.
    pub async fn spawn(
        cfg: SchedulerConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<(SchedulerHandle, JoinHandle<()>), SpawnErr> {
        Self::spawn_named(None, cfg, supervisor).await
    }

    /// As [`SchedulerHandle::spawn`], registering the actor under `name`
    /// (ractor registry: names must be unique process-wide).
    pub async fn spawn_named(
        name: Option<String>,
        cfg: SchedulerConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<(SchedulerHandle, JoinHandle<()>), SpawnErr> {
        let (pressure, _) = broadcast::channel(PRESSURE_CAPACITY);
        let args = SchedulerArgs {
            cfg,
            pressure: pressure.clone(),
        };
        let (actor, join) = spawn_actor(name, args, supervisor).await?;
        let handle = SchedulerHandle {
            shared: Arc::new(Shared {
                actor: RwLock::new(actor),
                cfg: RwLock::new(cfg),
                pressure,
                inline: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        Ok((handle, join))
    }

    /// Respawn the scheduler actor (after it failed) with the last
    /// configuration, and point this handle and all its clones at the new
    /// actor. Permits granted by the old actor stay valid and release
    /// nothing in the new one; waiters of the old actor fail open.
    pub async fn respawn(
        &self,
        name: Option<String>,
        supervisor: Option<ActorCell>,
    ) -> Result<JoinHandle<()>, SpawnErr> {
        let cfg = *self.shared.cfg.read().unwrap_or_else(|e| e.into_inner());
        let args = SchedulerArgs {
            cfg,
            pressure: self.shared.pressure.clone(),
        };
        let (actor, join) = spawn_actor(name, args, supervisor).await?;
        *self.shared.actor.write().unwrap_or_else(|e| e.into_inner()) = actor;
        Ok(join)
    }

    /// The current actor (e.g. to compare with a `SupervisionEvent`'s cell).
    pub fn actor_ref(&self) -> ActorRef<SchedulerMsg> {
        self.shared
            .actor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current actor's cell.
    pub fn cell(&self) -> ActorCell {
        self.actor_ref().get_cell()
    }

    /// Wait for a key-computation permit: respects the rate (token bucket,
    /// `key_computations_per_sec`, burst = max(1, rate/20)), the concurrency
    /// cap (`max_concurrent` permits outstanding), and priority order (High
    /// before Normal before Low; FIFO within). Cancel-safe. If the scheduler
    /// actor is gone, returns a [`Permit::detached`] at once (fail open).
    pub async fn permit(&self, priority: Priority) -> Permit {
        self.permit_or_shed(priority)
            .await
            .unwrap_or_else(Permit::detached)
    }

    /// As [`SchedulerHandle::permit`], but `None` when the waiter was shed
    /// (only [`Priority::Stranger`] waiters are).
    pub async fn permit_or_shed(&self, priority: Priority) -> Option<Permit> {
        let actor = self.actor_ref();
        let (tx, rx) = oneshot::channel();
        if actor
            .send_message(SchedulerMsg::Acquire(priority, tx))
            .is_err()
        {
            tracing::warn!("key-computation scheduler is not running; proceeding without a permit");
            return Some(Permit::detached());
        }
        match (Waiting {
            rx: Some(rx),
            actor,
        })
        .wait()
        .await
        {
            Some(Grant::Permit(p)) => Some(p),
            Some(Grant::Shed) => None,
            None => {
                tracing::warn!("key-computation scheduler stopped; proceeding without a permit");
                Some(Permit::detached())
            }
        }
    }

    /// Run a CPU-bound closure (DH, key derivation, AUTH) under a permit;
    /// returns its result. [`Weight::Heavy`] work runs on tokio's blocking
    /// pool, so it never holds up the runtime; [`Weight::Light`] work runs
    /// on the calling task, because handing a job of a few hundred
    /// microseconds to another thread and back costs about as much again.
    /// The permit is held until the closure returns, even if this future
    /// is dropped meanwhile. A panic in `f` is resumed in the caller.
    pub async fn compute<T: Send + 'static>(
        &self,
        priority: Priority,
        weight: Weight,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let permit = self.permit(priority).await;
        self.run(permit, weight, f).await
    }

    /// As [`SchedulerHandle::compute`], but `None` (and `f` never runs) when
    /// the waiter was shed; see [`Priority::Stranger`].
    pub async fn compute_or_shed<T: Send + 'static>(
        &self,
        priority: Priority,
        weight: Weight,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit = self.permit_or_shed(priority).await?;
        Some(self.run(permit, weight, f).await)
    }

    async fn run<T: Send + 'static>(
        &self,
        permit: Permit,
        weight: Weight,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        if weight == Weight::Light
            || self
                .shared
                .inline
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            let _permit = permit;
            return f();
        }
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        });
        match job.await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("key computation did not complete: {e}"),
        }
    }

    /// Run key computations on the calling task, still under a permit,
    /// instead of the blocking pool. For tests on tokio's paused clock:
    /// tokio cannot see work on the blocking pool and would move the clock
    /// past it, firing retransmissions and timeouts that never happen on a
    /// real clock.
    pub fn set_inline(&self, inline: bool) {
        self.shared
            .inline
            .store(inline, std::sync::atomic::Ordering::Relaxed);
    }

    /// Half-open pacing: wait until fewer than `max_half_open_per_peer` IKE
    /// SAs we initiated towards `peer` are half-open. The guard releases the
    /// slot on drop (established or failed). Cancel-safe; fails open like
    /// [`SchedulerHandle::permit`].
    pub async fn half_open(&self, peer: IpAddr) -> HalfOpenGuard {
        let actor = self.actor_ref();
        let (tx, rx) = oneshot::channel();
        if actor
            .send_message(SchedulerMsg::HalfOpen(peer, tx))
            .is_err()
        {
            return HalfOpenGuard { actor: None, peer };
        }
        (Waiting {
            rx: Some(rx),
            actor,
        })
        .wait()
        .await
        .unwrap_or(HalfOpenGuard { actor: None, peer })
    }

    /// Current counters (all zero but the rate if the actor is gone).
    pub async fn stats(&self) -> SchedulerStats {
        let actor = self.actor_ref();
        let (tx, rx) = oneshot::channel();
        if actor.send_message(SchedulerMsg::Stats(tx)).is_ok() {
            if let Ok(s) = rx.await {
                return s;
            }
        }
        let cfg = *self.shared.cfg.read().unwrap_or_else(|e| e.into_inner());
        SchedulerStats {
            rate_limit_per_sec: cfg.key_computations_per_sec as u64,
            ..Default::default()
        }
    }

    /// Apply a new configuration (reload). Returns once the actor applied it.
    /// Permits outstanding stay valid; lowering `max_concurrent` only delays
    /// new grants.
    pub async fn set_config(&self, cfg: SchedulerConfig) {
        *self.shared.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
        let (tx, rx) = oneshot::channel();
        if self
            .actor_ref()
            .send_message(SchedulerMsg::SetConfig(cfg, tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// The configuration last set.
    pub fn config(&self) -> SchedulerConfig {
        *self.shared.cfg.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Scheduler-pressure notifications: a [`SchedulerStats`] snapshot each
    /// time `queued` goes from 0 to > 0 and back to 0.
    pub fn subscribe_pressure(&self) -> broadcast::Receiver<SchedulerStats> {
        self.shared.pressure.subscribe()
    }
}

async fn spawn_actor(
    name: Option<String>,
    args: SchedulerArgs,
    supervisor: Option<ActorCell>,
) -> Result<(ActorRef<SchedulerMsg>, JoinHandle<()>), SpawnErr> {
    match supervisor {
        Some(sup) => Actor::spawn_linked(name, Scheduler, args, sup).await,
        None => Actor::spawn(name, Scheduler, args).await,
    }
}

/// One token in bucket units: units accrue at `rate` per nanosecond.
const UNIT: u128 = 1_000_000_000;

#[derive(Default)]
struct Peer {
    active: u32,
    waiters: VecDeque<oneshot::Sender<HalfOpenGuard>>,
}

#[doc(hidden)]
pub struct SchedulerState {
    cfg: SchedulerConfig,
    pressure: broadcast::Sender<SchedulerStats>,
    queues: [VecDeque<oneshot::Sender<Grant>>; 4],
    in_flight: u32,
    units: u128,
    last_refill: Instant,
    tick: Option<(Instant, tokio::task::AbortHandle)>,
    peers: HashMap<IpAddr, Peer>,
    half_open: u64,
    total: u64,
    shed: u64,
    under_pressure: bool,
}

impl SchedulerState {
    fn new(cfg: SchedulerConfig, pressure: broadcast::Sender<SchedulerStats>) -> Self {
        SchedulerState {
            cfg,
            pressure,
            queues: Default::default(),
            in_flight: 0,
            units: cfg.burst() as u128 * UNIT,
            last_refill: Instant::now(),
            tick: None,
            peers: HashMap::new(),
            half_open: 0,
            total: 0,
            shed: 0,
            under_pressure: false,
        }
    }

    fn rate(&self) -> u128 {
        self.cfg.key_computations_per_sec as u128
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_refill).as_nanos();
        self.last_refill = now;
        if self.rate() == 0 {
            return;
        }
        let cap = self.cfg.burst() as u128 * UNIT;
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(self.rate()))
            .min(cap);
    }

    fn queued(&self) -> u64 {
        self.queues.iter().map(|q| q.len() as u64).sum()
    }

    fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            key_computations_total: self.total,
            queued: self.queued(),
            in_flight: self.in_flight as u64,
            rate_limit_per_sec: self.cfg.key_computations_per_sec as u64,
            half_open: self.half_open,
            shed_total: self.shed,
        }
    }

    /// Index of the highest-priority queue with a live waiter at its head
    /// (dropping cancelled heads on the way).
    fn next_queue(&mut self) -> Option<usize> {
        for (i, q) in self.queues.iter_mut().enumerate() {
            while q.front().is_some_and(|w| w.is_closed()) {
                q.pop_front();
            }
            if !q.is_empty() {
                return Some(i);
            }
        }
        None
    }

    fn schedule_tick(&mut self, myself: &ActorRef<SchedulerMsg>, now: Instant) {
        let rate = self.rate();
        let need = UNIT.saturating_sub(self.units);
        let nanos = need.div_ceil(rate).max(1);
        let delay = Duration::from_nanos(nanos.min(u64::MAX as u128) as u64);
        let deadline = now + delay;
        if let Some((d, h)) = &self.tick {
            if *d <= deadline && !h.is_finished() {
                return;
            }
            h.abort();
        }
        let h = myself.send_after(delay, || SchedulerMsg::Tick);
        self.tick = Some((deadline, h.abort_handle()));
    }

    /// Grant permits while slots, tokens and waiters allow.
    fn pump(&mut self, myself: &ActorRef<SchedulerMsg>) {
        let now = Instant::now();
        self.refill(now);
        let limited = self.rate() > 0;
        loop {
            if self.cfg.max_concurrent > 0 && self.in_flight >= self.cfg.max_concurrent {
                break;
            }
            let Some(qi) = self.next_queue() else { break };
            if limited && self.units < UNIT {
                self.schedule_tick(myself, now);
                break;
            }
            let tx = self.queues[qi].pop_front().expect("non-empty queue");
            if limited {
                self.units -= UNIT;
            }
            self.in_flight += 1;
            match tx.send(Grant::Permit(Permit {
                actor: Some(myself.clone()),
            })) {
                Ok(()) => {
                    self.total += 1;
                    metrics::counter!("vpnd_key_computations_total").increment(1);
                }
                Err(Grant::Shed) => {}
                Err(Grant::Permit(mut p)) => {
                    // The waiter went away between our check and the send:
                    // give back the slot and the token.
                    p.disarm();
                    self.in_flight -= 1;
                    if limited {
                        self.units += UNIT;
                    }
                }
            }
        }
        self.publish();
    }

    fn pump_peer(&mut self, myself: &ActorRef<SchedulerMsg>, peer: IpAddr) {
        let max = self.cfg.max_half_open_per_peer;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        while max == 0 || p.active < max {
            let Some(tx) = p.waiters.pop_front() else {
                break;
            };
            if tx.is_closed() {
                continue;
            }
            p.active += 1;
            self.half_open += 1;
            if let Err(mut g) = tx.send(HalfOpenGuard {
                actor: Some(myself.clone()),
                peer,
            }) {
                g.disarm();
                p.active -= 1;
                self.half_open -= 1;
            }
        }
        if p.active == 0 && p.waiters.is_empty() {
            self.peers.remove(&peer);
        }
    }

    fn prune(&mut self) {
        for q in &mut self.queues {
            q.retain(|w| !w.is_closed());
        }
        self.peers.retain(|_, p| {
            p.waiters.retain(|w| !w.is_closed());
            p.active > 0 || !p.waiters.is_empty()
        });
    }

    /// Update gauges; notify subscribers when pressure starts or ends.
    fn publish(&mut self) {
        let stats = self.stats();
        metrics::gauge!("vpnd_scheduler_queued").set(stats.queued as f64);
        metrics::gauge!("vpnd_scheduler_in_flight").set(stats.in_flight as f64);
        metrics::gauge!("vpnd_scheduler_half_open").set(stats.half_open as f64);
        let pressure = stats.queued > 0;
        if pressure != self.under_pressure {
            self.under_pressure = pressure;
            if pressure {
                tracing::debug!(
                    queued = stats.queued,
                    in_flight = stats.in_flight,
                    rate = stats.rate_limit_per_sec,
                    "scheduler pressure: key computations queued"
                );
            } else {
                tracing::debug!(in_flight = stats.in_flight, "scheduler pressure over");
            }
            let _ = self.pressure.send(stats);
        }
    }
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SchedulerState::new(args.cfg, args.pressure))
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, h)) = state.tick.take() {
            h.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Acquire(prio, tx) => {
                let q = &mut state.queues[prio.index()];
                if prio == Priority::Stranger {
                    q.retain(|w| !w.is_closed());
                    if q.len() >= STRANGER_QUEUE {
                        if let Some(oldest) = q.pop_front() {
                            let _ = oldest.send(Grant::Shed);
                            state.shed += 1;
                            metrics::counter!("vpnd_scheduler_shed_total").increment(1);
                        }
                    }
                }
                state.queues[prio.index()].push_back(tx);
                state.pump(&myself);
            }
            SchedulerMsg::Release => {
                state.in_flight = state.in_flight.saturating_sub(1);
                state.pump(&myself);
            }
            SchedulerMsg::Tick => {
                state.tick = None;
                state.pump(&myself);
            }
            SchedulerMsg::Prune => {
                state.prune();
                state.publish();
            }
            SchedulerMsg::HalfOpen(peer, tx) => {
                state.peers.entry(peer).or_default().waiters.push_back(tx);
                state.pump_peer(&myself, peer);
                state.publish();
            }
            SchedulerMsg::HalfOpenRelease(peer) => {
                if let Some(p) = state.peers.get_mut(&peer) {
                    if p.active > 0 {
                        p.active -= 1;
                        state.half_open = state.half_open.saturating_sub(1);
                    }
                }
                state.pump_peer(&myself, peer);
                state.publish();
            }
            SchedulerMsg::Stats(tx) => {
                state.prune();
                state.publish();
                let _ = tx.send(state.stats());
            }
            SchedulerMsg::SetConfig(cfg, tx) => {
                let now = Instant::now();
                state.refill(now); // accrue at the old rate up to now
                state.cfg = cfg;
                let cap = cfg.burst() as u128 * UNIT;
                state.units = state.units.min(cap);
                if let Some((_, h)) = state.tick.take() {
                    h.abort();
                }
                state.pump(&myself);
                let peers: Vec<IpAddr> = state.peers.keys().copied().collect();
                for peer in peers {
                    state.pump_peer(&myself, peer);
                }
                state.publish();
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}
