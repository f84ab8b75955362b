//! Supervision, retry policies, timers and the key-computation scheduler (ractor). Filled in by the daemon issue.
