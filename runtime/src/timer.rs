//! Cancel-on-drop actor timers on top of ractor's `send_after` /
//! `send_interval` (which return plain `JoinHandle`s that keep running when
//! dropped). Keep a [`Timer`] in the actor's state: replacing or dropping it
//! cancels the pending message, so a stopped actor leaves no timers behind.
//! Timers use tokio's clock (paused time in tests).

use std::time::Duration;

use ractor::{ActorRef, Message};
use tokio::task::AbortHandle;

/// A pending one-shot or periodic message to an actor; cancelled on drop.
#[derive(Debug, Default)]
pub struct Timer(Option<AbortHandle>);

impl Timer {
    /// Send `msg()` to `actor` once after `after`.
    pub fn after<M: Message>(
        actor: &ActorRef<M>,
        after: Duration,
        msg: impl FnOnce() -> M + Send + 'static,
    ) -> Timer {
        Timer(Some(actor.send_after(after, msg).abort_handle()))
    }

    /// Send `msg()` to `actor` every `period` (first after one period).
    pub fn every<M: Message>(
        actor: &ActorRef<M>,
        period: Duration,
        msg: impl Fn() -> M + Send + 'static,
    ) -> Timer {
        Timer(Some(actor.send_interval(period, msg).abort_handle()))
    }

    /// A timer that is not armed.
    pub fn none() -> Timer {
        Timer(None)
    }

    /// Cancel the pending message (no-op if already fired or not armed).
    pub fn cancel(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }

    /// True while the message is still pending (or the interval running).
    pub fn is_armed(&self) -> bool {
        self.0.as_ref().is_some_and(|h| !h.is_finished())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.cancel();
    }
}
