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
