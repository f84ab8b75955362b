//! The lifetime of one installed SA pair, as every backend enforces it:
//! what it has reached given the time since it was installed and its
//! traffic. Backends differ only in their clock and their counters (the
//! userspace tables tick on their housekeeping thread and count packets;
//! `none` moves no packets and wakes a timer at the hard time).
//!
//! Invariants: `Soft` is reported at most once per SA; `Hard` wins over
//! `Soft` when both are reached at once; an SA with
//! `Lifetime::default()` never expires.

use std::time::{Duration, Instant};

use crate::Lifetime;

/// What an SA's lifetime has reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing (or a soft limit already reported).
    Live,
    /// A soft limit, for the first time: the CHILD SA should be rekeyed.
    Soft,
    /// A hard limit: the SA must go.
    Hard,
}

/// One SA's lifetime and how far it has come.
#[derive(Clone, Copy, Debug)]
pub struct LifetimeClock {
    lifetime: Lifetime,
    installed: Instant,
    soft_sent: bool,
}

impl LifetimeClock {
    pub fn new(lifetime: Lifetime, installed: Instant) -> LifetimeClock {
        LifetimeClock {
            lifetime,
            installed,
            soft_sent: false,
        }
    }

    /// No limit at all: nothing to check.
    pub fn is_unlimited(&self) -> bool {
        self.lifetime == Lifetime::default()
    }

    /// When the hard time limit is reached, if there is one.
    pub fn hard_deadline(&self) -> Option<Instant> {
        self.lifetime.hard_time.map(|d| self.installed + d)
    }

    /// The time since installation at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.installed)
    }

    /// Where the SA stands at `now` with `bytes` and `packets` counted
    /// (the larger direction). A `Soft` verdict is given once.
    pub fn check(&mut self, now: Instant, bytes: u64, packets: u64) -> Verdict {
        let l = self.lifetime;
        let over = |limit: u64, v: u64| limit != 0 && v >= limit;
        let hard = over(l.hard_bytes, bytes)
            || over(l.hard_packets, packets)
            || l.hard_time.is_some_and(|d| self.age(now) >= d);
        if hard {
            return Verdict::Hard;
        }
        if !self.soft_sent && (over(l.soft_bytes, bytes) || over(l.soft_packets, packets)) {
            self.soft_sent = true;
            return Verdict::Soft;
        }
        Verdict::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_time_soft_once_and_hard_wins() {
        let t0 = Instant::now();
        let mut c = LifetimeClock::new(
            Lifetime {
                soft_bytes: 100,
                hard_bytes: 1000,
                hard_time: Some(Duration::from_secs(10)),
                ..Lifetime::default()
            },
            t0,
        );
        assert_eq!(c.hard_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(c.check(t0, 0, 0), Verdict::Live);
        assert_eq!(c.check(t0, 150, 1), Verdict::Soft);
        assert_eq!(c.check(t0, 200, 2), Verdict::Live, "soft only once");
        assert_eq!(c.check(t0 + Duration::from_secs(10), 200, 2), Verdict::Hard);
        let mut d = LifetimeClock::new(
            Lifetime {
                soft_bytes: 100,
                hard_bytes: 100,
                ..Lifetime::default()
            },
            t0,
        );
        assert_eq!(d.check(t0, 100, 1), Verdict::Hard, "hard wins over soft");
        let mut u = LifetimeClock::new(Lifetime::default(), t0);
        assert!(u.is_unlimited());
        assert_eq!(
            u.check(t0 + Duration::from_secs(1 << 30), u64::MAX, u64::MAX),
            Verdict::Live
        );
    }
}
