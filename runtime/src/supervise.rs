//! Restart policies for supervised actors (ractor 0.16).
//!
//! A supervisor overrides `Actor::handle_supervisor_evt` (the default stops
//! the supervisor when any child exits), classifies the event with
//! [`classify`], and on [`ChildEvent::Failed`] asks its [`RestartTracker`]
//! (or [`on_child_failure`], which also logs and counts) whether to restart
//! the child after a delay or give up. Restart by scheduling a message to
//! itself (`myself.send_after(after, || Msg::RestartChild)`) and calling
//! `Actor::spawn_linked(name, child, args, myself.get_cell())` when it
//! arrives; never sleep inside `handle_supervisor_evt`.

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::{Duration, Instant};

use ractor::{ActorCell, SupervisionEvent};

use crate::backoff::Backoff;

/// At most `max_restarts` restarts within any `window`; restarts are delayed
/// by `backoff.delay(restart_number)` where `restart_number` counts the
/// restarts within the current window (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window: Duration,
    pub backoff: Backoff,
}

impl Default for RestartPolicy {
    /// 5 restarts in 60 s, backoff 100 ms .. 10 s, 20 % jitter.
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(10),
                jitter_pct: 20,
            },
        }
    }
}

/// What a supervisor should do about a failed child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Respawn the child after `after`; this is restart number
    /// `restart_number` (1-based) within the policy window.
    Restart {
        after: Duration,
        restart_number: u32,
    },
    /// Too many restarts: `restarts_in_window` restarts already happened
    /// within the window. Leave the child dead (and clean up what it owned).
    GiveUp { restarts_in_window: u32 },
}

/// Tracks one child's restarts against a [`RestartPolicy`].
#[derive(Clone, Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Instants of restarts decided within the window, oldest first.
    recent: VecDeque<Instant>,
    total: u64,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// Record a failure at `now`; decide. Restarts older than `window`
    /// (`now - t >= window`) are forgotten. A `GiveUp` is not recorded as a
    /// restart: once the window has passed, the tracker allows restarts again.
    pub fn on_failure(&mut self, now: Instant, rand01: f64) -> Decision {
        self.forget_before(now);
        let in_window = self.recent.len() as u32;
        if in_window >= self.policy.max_restarts {
            return Decision::GiveUp {
                restarts_in_window: in_window,
            };
        }
        self.recent.push_back(now);
        self.total += 1;
        let restart_number = in_window + 1;
        Decision::Restart {
            after: self.policy.backoff.delay(restart_number, rand01),
            restart_number,
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Restarts (Decision::Restart) this tracker ever decided.
    pub fn restarts_total(&self) -> u64 {
        self.total
    }

    /// Restarts within the window ending at `now`.
    pub fn restarts_in_window(&self, now: Instant) -> u32 {
        self.recent
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < self.policy.window)
            .count() as u32
    }

    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Change the policy (e.g. on reload); the restart history is kept.
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    /// Forget all restarts (e.g. after the child proved healthy).
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

/// A supervision event, classified.
#[derive(Debug)]
pub enum ChildEvent<'a> {
    /// The child finished `post_start` and is running.
    Started(&'a ActorCell),
    /// The child panicked or returned `Err` from `handle`/`post_start`/`post_stop`
    /// (ractor's `SupervisionEvent::ActorFailed`); `reason` is the panic
    /// message or error text.
    Failed {
        child: &'a ActorCell,
        reason: String,
    },
    /// The child stopped normally (`stop`, `kill`, or its task was cancelled);
    /// `reason` is the stop reason if any ("killed" for `kill()`).
    Terminated {
        child: &'a ActorCell,
        reason: Option<&'a str>,
    },
    /// Anything else (process-group changes ...).
    Other,
}

/// Classify a supervision event for a `handle_supervisor_evt` match.
pub fn classify(evt: &SupervisionEvent) -> ChildEvent<'_> {
    match evt {
        SupervisionEvent::ActorStarted(c) => ChildEvent::Started(c),
        SupervisionEvent::ActorFailed(c, err) => ChildEvent::Failed {
            child: c,
            reason: err.to_string(),
        },
        SupervisionEvent::ActorTerminated(c, _, reason) => ChildEvent::Terminated {
            child: c,
            reason: reason.as_deref(),
        },
        _ => ChildEvent::Other,
    }
}

/// Name of an actor for logs: its registered name, else its id.
pub fn actor_label(cell: &ActorCell) -> String {
    cell.get_name()
        .unwrap_or_else(|| format!("actor {}", cell.get_id()))
}

/// For `handle_supervisor_evt`: record a failed child at [`crate::clock::now`]
/// with jitter from [`crate::backoff::rand01`], log the failure and the
/// decision (`warn` on restart, `error` on give-up), and count a restart in
/// [`counters`] when the decision is `Restart`.
pub fn on_child_failure(
    tracker: &mut RestartTracker,
    child: &str,
    reason: &dyn Display,
) -> Decision {
    let decision = tracker.on_failure(crate::clock::now(), crate::backoff::rand01());
    match decision {
        Decision::Restart {
            after,
            restart_number,
        } => {
            counters::restart();
            tracing::warn!(
                child,
                restart_number,
                after_ms = after.as_millis() as u64,
                "child failed: {reason}; restarting"
            );
        }
        Decision::GiveUp { restarts_in_window } => {
            tracing::error!(
                child,
                restarts_in_window,
                "child failed: {reason}; too many restarts, giving up"
            );
        }
    }
    decision
}

/// Process-wide counters for `vpnctl stats`: actors alive and restarts.
/// Each update also feeds the `metrics` gauge `vpnd_actors_alive` and the
/// counter `vpnd_restarts_total`.
pub mod counters {
    use std::sync::atomic::{AtomicU64, Ordering};

    static ALIVE: AtomicU64 = AtomicU64::new(0);
    static RESTARTS: AtomicU64 = AtomicU64::new(0);

    /// Call when an actor starts (e.g. in `pre_start`), or hold an [`AliveGuard`].
    pub fn actor_started() {
        let n = ALIVE.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("vpnd_actors_alive").set(n as f64);
    }

    /// Call when an actor stops. Saturates at zero.
    pub fn actor_stopped() {
        let prev = ALIVE
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            })
            .unwrap_or(0);
        metrics::gauge!("vpnd_actors_alive").set(prev.saturating_sub(1) as f64);
    }

    /// Count one actor restart.
    pub fn restart() {
        RESTARTS.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vpnd_restarts_total").increment(1);
    }

    pub fn actors_alive() -> u64 {
        ALIVE.load(Ordering::Relaxed)
    }

    pub fn restarts_total() -> u64 {
        RESTARTS.load(Ordering::Relaxed)
    }

    /// Counts an actor alive for as long as it exists: create it in
    /// `pre_start` and keep it in the actor's state. ractor does not call
    /// `post_stop` after a panic, but the state is always dropped, so this
    /// is the reliable way to count `actor_stopped`.
    #[derive(Debug)]
    pub struct AliveGuard(());

    impl AliveGuard {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            actor_started();
            AliveGuard(())
        }
    }

    impl Drop for AliveGuard {
        fn drop(&mut self) {
            actor_stopped();
        }
    }
}
