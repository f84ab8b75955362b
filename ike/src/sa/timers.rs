//! The IKE SA's timers beyond retransmission and the half-open limit: dead
//! peer detection, the IKE SA rekey and each CHILD SA's rekey. They live in
//! the core so that `testing::Pair` drives them on simulated time; the
//! driver only sleeps until `poll_timeout` and calls `handle_timeout`.
//!
//! Every timer runs only while the SA is established. DPD and the IKE rekey
//! are armed when IKE_AUTH completes and again after each IKE rekey; a CHILD
//! SA's rekey is armed when it is installed. Rekey deadlines carry jitter
//! drawn from the SA's `Provider`, so tunnels configured alike spread out.
//!
//! Which inputs make the SA compute keys is said here too (`Cost`), so a
//! driver can run exactly those under its key-computation scheduler.

use std::time::{Duration, Instant};

use crate::wire::{ExchangeType, Header};

use super::{ChildState, Command, IkeSa, Phase, Task};

/// The timer settings of one connection. All zero (the default) means no
/// DPD and no rekeys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    /// Liveness check interval once established (RFC 7296 §2.4); zero = off.
    pub dpd_delay: Duration,
    /// IKE SA rekey interval (§2.8); zero = never.
    pub ike_rekey: Duration,
    /// CHILD SA rekey interval by child config name; absent or zero = never.
    pub child_rekey: Vec<(String, Duration)>,
    /// Rekey jitter: each rekey deadline is moved by up to this percentage
    /// of its interval, either way.
    pub jitter_pct: u32,
    /// A failed CHILD rekey is tried again after this, doubling per
    /// failure up to `rekey_retry_max`, at most `MAX_REKEY_RETRIES` times;
    /// zero stands for 1 s (and 60 s for the cap).
    pub rekey_retry_base: Duration,
    pub rekey_retry_max: Duration,
}

/// How many times a failed CHILD rekey is tried again before the SA is
/// left to its lifetime (which, ending, gets the CHILD SA re-created by
/// the daemon where the connection asks for that).
pub const MAX_REKEY_RETRIES: u32 = 5;

impl Timers {
    /// The wait before retry number `attempt` (1-based) of a CHILD rekey.
    pub fn rekey_retry_delay(&self, attempt: u32) -> Duration {
        let base = if self.rekey_retry_base.is_zero() {
            Duration::from_secs(1)
        } else {
            self.rekey_retry_base
        };
        let max = if self.rekey_retry_max.is_zero() {
            Duration::from_secs(60)
        } else {
            self.rekey_retry_max
        };
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        base.saturating_mul(factor).min(max.max(base))
    }
}

impl Timers {
    fn child_rekey(&self, name: &str) -> Duration {
        self.child_rekey
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .unwrap_or_default()
    }
}

/// What an input costs the SA. Inputs that compute keys (DH, SKEYSEED,
/// KEYMAT) are the ones a daemon rate-limits and runs off its I/O tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Parsing, bookkeeping, symmetric crypto of one message.
    Cheap,
    /// Key computations, for the reason given.
    Keys(KeyWork),
}

/// Why an input computes keys; a driver maps these to priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyWork {
    /// The IKE_SA_INIT response of an SA we initiate: DH and SKEYSEED.
    Establish,
    /// IKE_AUTH in either role: AUTH and the first CHILD SA's keys. The
    /// peer is waiting with a half-open SA.
    Authenticate,
    /// The peer's CREATE_CHILD_SA request: the peer waits for our answer.
    PeerCreateChild,
    /// Our own CREATE_CHILD_SA (new CHILD SA, rekeys) and its response.
    OwnCreateChild,
}

/// `d` moved by up to `pct` percent of itself, either way, `r` in [0, 1).
fn jitter(d: Duration, pct: u32, r: f64) -> Duration {
    let factor = 1.0 + (pct.min(100) as f64 / 100.0) * (2.0 * r - 1.0);
    d.mul_f64(factor.max(0.0))
}

impl IkeSa {
    /// Use these timer settings. Settings that changed take effect at once
    /// (the changed timer is re-armed from `now`): DPD and the IKE rekey of
    /// an established SA, and the rekey of each installed CHILD SA whose
    /// interval changed. So an SA handed to another connection, whose first
    /// CHILD SA was installed under the accepting side's settings, rekeys on
    /// its own connection's schedule.
    pub fn set_timers(&mut self, now: Instant, timers: &Timers) {
        if *timers == self.timers {
            return;
        }
        let timers = timers.clone();
        let dpd_changed = timers.dpd_delay != self.timers.dpd_delay;
        let rekey_changed = timers.ike_rekey != self.timers.ike_rekey
            || timers.jitter_pct != self.timers.jitter_pct;
        self.timers = timers;
        if self.phase() == Phase::Established {
            if dpd_changed {
                self.arm_dpd(now);
            }
            if rekey_changed {
                self.arm_ike_rekey(now);
            }
        }
        for i in 0..self.children.len() {
            let c = &self.children[i];
            if c.state != ChildState::Installed
                || c.rekey_interval == self.timers.child_rekey(&c.sa.name)
            {
                continue;
            }
            let name = c.sa.name.clone();
            let (at, interval) = self.child_rekey_deadline(now, &name);
            self.children[i].rekey_at = at;
            self.children[i].rekey_interval = interval;
        }
    }

    /// When the IKE SA rekeys next, if it does.
    pub fn rekey_at(&self) -> Option<Instant> {
        self.rekey_at
    }

    /// When the CHILD SA with inbound SPI `spi_in` rekeys next, if it does.
    pub fn child_rekey_at(&self, spi_in: u32) -> Option<Instant> {
        self.children
            .iter()
            .find(|c| c.sa.spi_in == spi_in)
            .and_then(|c| c.rekey_at)
    }

    /// What handling this datagram costs (see `Cost`).
    /// A fragment (RFC 7383) is cheap unless it would complete its
    /// message.
    pub fn datagram_cost(&self, data: &[u8]) -> Cost {
        let Ok(h) = Header::decode(data) else {
            return Cost::Cheap;
        };
        if h.next_payload == crate::wire::PayloadType::SKF && !self.fragment_completes(&h, data) {
            return Cost::Cheap;
        }
        let work = match (h.exchange, h.is_response()) {
            (ExchangeType::IKE_SA_INIT, true) if self.phase() == Phase::InitSent => {
                KeyWork::Establish
            }
            (ExchangeType::IKE_AUTH, _) => KeyWork::Authenticate,
            (ExchangeType::CREATE_CHILD_SA, false) => KeyWork::PeerCreateChild,
            (ExchangeType::CREATE_CHILD_SA, true) => KeyWork::OwnCreateChild,
            _ => return Cost::Cheap,
        };
        Cost::Keys(work)
    }

    /// What `handle_timeout(now)` costs: keys when a rekey is due.
    pub fn timeout_cost(&self, now: Instant) -> Cost {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if self.phase() == Phase::Established
            && (due(self.rekey_at) || self.children.iter().any(|c| due(c.rekey_at)))
        {
            Cost::Keys(KeyWork::OwnCreateChild)
        } else {
            Cost::Cheap
        }
    }

    /// Arm DPD and the IKE rekey: IKE_AUTH completed or the IKE SA was
    /// rekeyed.
    pub(super) fn arm_periodic(&mut self, now: Instant) {
        self.arm_dpd(now);
        self.arm_ike_rekey(now);
    }

    fn arm_dpd(&mut self, now: Instant) {
        let d = self.timers.dpd_delay;
        self.dpd_at = (!d.is_zero()).then(|| now + d);
    }

    fn arm_ike_rekey(&mut self, now: Instant) {
        let d = self.timers.ike_rekey;
        self.rekey_at = (!d.is_zero()).then(|| now + self.jittered(d));
    }

    /// The rekey deadline of a CHILD SA of config `name` installed `now`,
    /// and the interval it comes from.
    pub(super) fn child_rekey_deadline(
        &mut self,
        now: Instant,
        name: &str,
    ) -> (Option<Instant>, Duration) {
        let d = self.timers.child_rekey(name);
        ((!d.is_zero()).then(|| now + self.jittered(d)), d)
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        if self.timers.jitter_pct == 0 {
            return d;
        }
        let mut b = [0u8; 4];
        self.provider.random().fill(&mut b);
        let r = u32::from_be_bytes(b) as f64 / (u32::MAX as f64 + 1.0);
        jitter(d, self.timers.jitter_pct, r)
    }

    /// The earliest of the established SA's own deadlines.
    pub(super) fn next_periodic(&self) -> Option<Instant> {
        if self.phase() != Phase::Established {
            return None;
        }
        self.dpd_at
            .into_iter()
            .chain(self.rekey_at)
            .chain(self.children.iter().filter_map(|c| c.rekey_at))
            .min()
    }

    /// Queue the work of every deadline that is due: a liveness check, the
    /// IKE rekey, CHILD rekeys. `run_tasks` starts it.
    pub(super) fn fire_periodic(&mut self, now: Instant) {
        if self.phase() != Phase::Established {
            return;
        }
        if self.dpd_at.is_some_and(|t| t <= now) {
            self.arm_dpd(now);
            self.tasks.push_back(Task::Liveness);
        }
        if self.rekey_at.is_some_and(|t| t <= now) {
            self.rekey_at = None;
            self.tasks.push_back(Task::RekeyIke);
        }
        let mut due = Vec::new();
        for c in &mut self.children {
            if c.rekey_at.is_some_and(|t| t <= now) {
                c.rekey_at = None;
                due.push(Task::CreateChild {
                    name: c.sa.name.clone(),
                    rekey_of: Some(c.sa.spi_in),
                });
            }
        }
        self.tasks.extend(due);
    }
}

impl Command {
    /// What handling this command costs (see `Cost`).
    pub fn cost(&self) -> Cost {
        match self {
            Command::CreateChild { .. } | Command::RekeyChild { .. } | Command::RekeyIke => {
                Cost::Keys(KeyWork::OwnCreateChild)
            }
            Command::DeleteChild { .. } | Command::Delete | Command::Liveness => Cost::Cheap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_percentage() {
        let d = Duration::from_secs(100);
        assert_eq!(jitter(d, 10, 0.0), Duration::from_secs(90));
        assert_eq!(jitter(d, 10, 0.5), d);
        assert!(jitter(d, 10, 0.999_999) < Duration::from_secs(110));
        assert_eq!(jitter(d, 250, 0.0), Duration::ZERO);
    }
}
