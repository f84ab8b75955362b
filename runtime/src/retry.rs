//! The connection retry policy (strongSwan `keyingtries`).

use std::time::Duration;

use crate::backoff::Backoff;

/// How often and how fast a connection retries establishing its IKE SA.
///
/// `keyingtries` is the total number of attempts (the first one included),
/// as in strongSwan: `keyingtries = 3` means the initial attempt plus two
/// retries. `0` means retry forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub keyingtries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub jitter_pct: u32,
}

impl Default for RetryPolicy {
    /// keyingtries 3, retry_base 1 s, retry_max 5 min, 20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            keyingtries: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            jitter_pct: 20,
        }
    }
}

impl RetryPolicy {
    /// After `failed` consecutive failed attempts (1-based): `Some(delay before
    /// the next attempt)` or `None` = give up (`failed >= keyingtries` when
    /// `keyingtries > 0`).
    ///
    /// The delay before retry number k (after k failed attempts) is
    /// `retry_base * 2^(k-1)` capped at `retry_max`, ± `jitter_pct` %.
    /// `failed = 0` is treated like 1.
    pub fn next_attempt(&self, failed: u32, rand01: f64) -> Option<Duration> {
        if self.keyingtries > 0 && failed >= self.keyingtries {
            return None;
        }
        Some(self.backoff().delay(failed.max(1), rand01))
    }

    /// The backoff this policy uses between attempts.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.retry_base,
            max: self.retry_max,
            jitter_pct: self.jitter_pct,
        }
    }
}
