//! Supervision, retry policies, timers and the key-computation scheduler (ractor).
//!
//! * [`backoff`] — exponential backoff with jitter, and a fast PRNG for jitter.
//! * [`retry`] — the connection retry policy (strongSwan `keyingtries`).
//! * [`supervise`] — restart policies for supervised actors, process-wide
//!   actor/restart counters, helpers for `handle_supervisor_evt`.
//! * [`clock`] — the daemon's only source of time (works on tokio's paused clock).
//! * [`timer`] — cancel-on-drop actor timers.
//! * [`scheduler`] — the key-computation scheduler actor (rate limit,
//!   concurrency cap, priorities, per-peer half-open pacing).

pub mod backoff;
pub mod clock;
pub mod retry;
pub mod scheduler;
pub mod supervise;
pub mod timer;

/// Process-wide actor/restart counters (also at `runtime::supervise::counters`).
pub use supervise::counters;

/// Register descriptions for every metric this crate emits. Call once at
/// start-up after installing a `metrics` recorder (optional: the metrics are
/// emitted either way).
pub fn describe_metrics() {
    metrics::describe_gauge!("vpnd_actors_alive", "Actors currently alive");
    metrics::describe_counter!(
        "vpnd_restarts_total",
        "Actor restarts decided by supervisors"
    );
    metrics::describe_counter!(
        "vpnd_key_computations_total",
        "Key-computation permits granted by the scheduler"
    );
    metrics::describe_gauge!(
        "vpnd_scheduler_queued",
        "Key computations waiting for a permit"
    );
    metrics::describe_gauge!(
        "vpnd_scheduler_in_flight",
        "Key-computation permits outstanding"
    );
    metrics::describe_gauge!(
        "vpnd_scheduler_half_open",
        "Initiated IKE SAs currently half-open (all peers)"
    );
}
