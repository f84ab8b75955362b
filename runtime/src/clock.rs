//! The daemon reads time only through this module, so tests can run on
//! tokio's paused clock (`#[tokio::test(start_paused = true)]`).

use std::time::Instant;

/// Current time as a `std::time::Instant`, taken from tokio's clock
/// (`tokio::time::Instant::now().into_std()`): it follows `tokio::time::pause`
/// / `advance` in tests. Must be called from within a tokio runtime context
/// when the clock is paused; outside a runtime it is plain `Instant::now()`.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Same clock as a `tokio::time::Instant` (for `sleep_until`).
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}
