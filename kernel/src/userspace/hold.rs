//! Packets held for trapped children while their SA is negotiated, with no
//! clock of their own: the caller passes `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Packets held per trapped child.
pub(super) const TRAP_QUEUE_LEN: usize = 16;
/// At most one ACQUIRE per trap in this time.
pub(super) const ACQUIRE_INTERVAL: Duration = Duration::from_secs(1);

/// Packets held for one trapped child.
#[derive(Default)]
struct Held {
    packets: VecDeque<(Instant, Vec<u8>)>,
    last_acquire: Option<Instant>,
}

/// What became of a trapped packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Trapped {
    /// Queued (else dropped: the queue is full).
    pub(super) held: bool,
    /// An ACQUIRE is due.
    pub(super) acquire: bool,
}

/// The hold queues, by (owner, child).
#[derive(Default)]
pub(super) struct Holds {
    queues: HashMap<(String, String), Held>,
}

impl Holds {
    /// A packet hit `owner`'s trap for `child` at `now`: holds a copy if
    /// there is room; an ACQUIRE is due on the first hit and then at most
    /// once per [`ACQUIRE_INTERVAL`].
    pub(super) fn hold(
        &mut self,
        owner: &str,
        child: &str,
        packet: &[u8],
        now: Instant,
    ) -> Trapped {
        let h = self
            .queues
            .entry((owner.to_string(), child.to_string()))
            .or_default();
        let held = h.packets.len() < TRAP_QUEUE_LEN;
        if held {
            h.packets.push_back((now, packet.to_vec()));
        }
        let acquire = h
            .last_acquire
            .is_none_or(|t| now.duration_since(t) >= ACQUIRE_INTERVAL);
        if acquire {
            h.last_acquire = Some(now);
        }
        Trapped { held, acquire }
    }

    /// The packets held for `key`, oldest first, to send on its new SA;
    /// `None` when it was never trapped.
    pub(super) fn take(&mut self, key: &(String, String)) -> Option<Vec<Vec<u8>>> {
        let h = self.queues.get_mut(key)?;
        Some(h.packets.drain(..).map(|(_, p)| p).collect())
    }

    /// Forgets `key` (its trap is gone); returns the packets dropped.
    pub(super) fn remove(&mut self, key: &(String, String)) -> usize {
        self.queues.remove(key).map_or(0, |h| h.packets.len())
    }

    /// Drops the packets held for `hold` or longer at `now`; returns how
    /// many.
    pub(super) fn expire(&mut self, now: Instant, hold: Duration) -> u64 {
        let mut dropped = 0;
        for h in self.queues.values_mut() {
            while h
                .packets
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= hold)
            {
                h.packets.pop_front();
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (String, String) {
        ("c".to_string(), "net".to_string())
    }

    #[test]
    fn acquire_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            h.hold("c", "net", b"1", at(0)),
            Trapped {
                held: true,
                acquire: true
            }
        );
        assert_eq!(
            h.hold("c", "net", b"2", at(999)),
            Trapped {
                held: true,
                acquire: false
            }
        );
        assert_eq!(
            h.hold("c", "net", b"3", at(1000)),
            Trapped {
                held: true,
                acquire: true
            }
        );
        // Another child has its own rate.
        assert!(h.hold("c", "other", b"x", at(1001)).acquire);
        assert_eq!(
            h.take(&key()),
            Some(vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()])
        );
        assert_eq!(h.take(&key()), Some(vec![]));
        assert_eq!(h.take(&("c".into(), "never".into())), None);
    }

    #[test]
    fn queue_is_bounded() {
        let now = Instant::now();
        let mut h = Holds::default();
        for i in 0..TRAP_QUEUE_LEN {
            assert!(h.hold("c", "net", &[i as u8], now).held);
        }
        assert!(!h.hold("c", "net", b"over", now).held);
        assert_eq!(h.remove(&key()), TRAP_QUEUE_LEN);
        assert_eq!(h.remove(&key()), 0);
    }

    #[test]
    fn held_packets_expire_after_the_hold_time() {
        let t0 = Instant::now();
        let hold = Duration::from_secs(5);
        let mut h = Holds::default();
        let _ = h.hold("c", "net", b"old", t0);
        let _ = h.hold("c", "net", b"new", t0 + Duration::from_secs(3));
        assert_eq!(h.expire(t0 + Duration::from_millis(4999), hold), 0);
        assert_eq!(h.expire(t0 + hold, hold), 1);
        assert_eq!(h.expire(t0 + Duration::from_secs(7), hold), 0);
        assert_eq!(h.expire(t0 + Duration::from_secs(8), hold), 1);
        assert_eq!(h.take(&key()), Some(vec![]));
    }
}
