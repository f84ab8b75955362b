//! A connection's CHILD SAs waiting to be brought back: one the dataplane
//! refused to install, or one that reached its hard lifetime without a
//! successful rekey (for a connection with `auto = "start"` or
//! `dpd_action = "restart"`). Each is tried again per the connection's
//! retry policy (keyingtries, retry_base, retry_max), as a new IKE SA is.
//!
//! Invariants: at most one pending attempt per child; a fired timer whose
//! generation is not the child's current one does nothing; a child that
//! came up, or whose connection went down, has no entry left.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use runtime::retry::RetryPolicy;
use runtime::timer::Timer;

/// What the connection does next for a child.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Try again after this long (attempt number `attempt`, 1-based).
    Retry { after: Duration, attempt: u32 },
    /// The policy's tries are used up.
    GiveUp { attempts: u32 },
}

struct Entry {
    /// Attempts that failed so far.
    failed: u32,
    gen: u64,
    _timer: Timer,
    due: Instant,
}

/// The pending re-creations of one connection's CHILD SAs.
#[derive(Default)]
pub struct ChildRetries {
    entries: HashMap<String, Entry>,
    gen: u64,
}

impl ChildRetries {
    /// Is `child` being brought back?
    pub fn pending(&self, child: &str) -> bool {
        self.entries.contains_key(child)
    }

    /// When the next attempt for `child` is due.
    pub fn due(&self, child: &str) -> Option<Instant> {
        self.entries.get(child).map(|e| e.due)
    }

    /// An attempt for `child` failed (or, with `failed_before = 0`, the
    /// child was lost and its first attempt is planned): schedule the
    /// next one with `msg(child, gen)` per `policy`, or give up.
    pub fn failed<M: ractor::Message>(
        &mut self,
        myself: &ActorRef<M>,
        child: &str,
        policy: &RetryPolicy,
        lost: bool,
        msg: impl FnOnce(String, u64) -> M + Send + 'static,
    ) -> Next {
        let failed = match (lost, self.entries.get(child)) {
            // A lost SA is a fresh start: its first attempt is at once.
            (true, _) => 0,
            (false, Some(e)) => e.failed + 1,
            (false, None) => 1,
        };
        let after = if failed == 0 {
            Some(Duration::ZERO)
        } else {
            policy.next_attempt(failed, runtime::backoff::rand01())
        };
        let Some(after) = after else {
            self.entries.remove(child);
            return Next::GiveUp { attempts: failed };
        };
        self.gen += 1;
        let gen = self.gen;
        let name = child.to_string();
        let timer = Timer::after(myself, after, move || msg(name, gen));
        self.entries.insert(
            child.to_string(),
            Entry {
                failed,
                gen,
                _timer: timer,
                due: runtime::clock::now() + after,
            },
        );
        Next::Retry {
            after,
            attempt: failed + 1,
        }
    }

    /// The timer of `child` with generation `gen` fired: is it the
    /// current one (then the attempt is made)?
    pub fn fire(&mut self, child: &str, gen: u64) -> bool {
        self.entries.get(child).is_some_and(|e| e.gen == gen)
    }

    /// `child` is up: nothing more to do for it. Whether it was pending.
    pub fn succeeded(&mut self, child: &str) -> bool {
        self.entries.remove(child).is_some()
    }

    /// The connection goes down: no more attempts.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
