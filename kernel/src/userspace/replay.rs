//! Anti-replay window (RFC 4303 §3.4.3, RFC 6479-style ring bitmap).
//!
//! Invariants:
//! - `check` never mutates: it is the cheap test done *before* decryption.
//! - `update` is called only *after* the ICV verified, so a forged packet can
//!   neither mark a sequence number as seen nor slide the window.
//! - Sequence number 0 is never valid (the first packet of an SA is 1,
//!   §3.3.3), so a fresh window (top = 0) accepts 1 onwards.
//! - The window covers `size` numbers ending at the highest verified one:
//!   `top - size < seq <= top` are remembered; anything at or below
//!   `top - size` is too old. A jump further than the window clears it.
//!
//! The bitmap is a ring of 64-bit words indexed by `seq / 64`; one spare word
//! makes sliding a matter of clearing whole words (no bit shifting), so the
//! hot path is a couple of loads and a mask.

/// Smallest window we accept; RFC 4303 §3.4.3 asks for at least 32 (64
/// recommended); high-rate links reorder more, so we insist on 1024.
pub const MIN_WINDOW: u64 = 1024;
/// Default window size in packets.
pub const DEFAULT_WINDOW: u64 = 2048;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Seen before (inside the window, bit set).
    #[error("sequence number {0} was already received")]
    Replayed(u64),
    /// At or below the left edge of the window (or 0, which is never sent).
    #[error("sequence number {0} is older than the replay window")]
    TooOld(u64),
}

/// A sliding anti-replay window over 64-bit (extended) sequence numbers.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Highest sequence number verified so far (0: none yet).
    top: u64,
    /// Window size in packets (a multiple of 64, ≥ [`MIN_WINDOW`]).
    size: u64,
    /// Ring of `size / 64 + 1` words.
    bits: Box<[u64]>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl ReplayWindow {
    /// A window of `size` packets, rounded up to a multiple of 64 and to at
    /// least [`MIN_WINDOW`].
    pub fn new(size: u64) -> Self {
        let size = size.clamp(MIN_WINDOW, 1 << 20).div_ceil(64) * 64;
        let words = (size / 64 + 1) as usize;
        ReplayWindow {
            top: 0,
            size,
            bits: vec![0u64; words].into_boxed_slice(),
        }
    }

    /// Window size in packets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let word = ((seq / 64) % self.bits.len() as u64) as usize;
        (word, 1u64 << (seq % 64))
    }

    /// Whether `seq` would be accepted; does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld(seq));
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayError::TooOld(seq));
        }
        let (word, mask) = self.slot(seq);
        if self.bits[word] & mask != 0 {
            Err(ReplayError::Replayed(seq))
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received, sliding the window if it is new. Call only
    /// after the packet's integrity was verified and [`check`](Self::check)
    /// passed; a sequence number `check` refuses is ignored here.
    pub fn update(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        if seq > self.top {
            let cur_word = self.top / 64;
            let new_word = seq / 64;
            let n = self.bits.len() as u64;
            let advance = (new_word - cur_word).min(n);
            for i in 1..=advance {
                let w = ((cur_word + i) % n) as usize;
                self.bits[w] = 0;
            }
            self.top = seq;
        }
        let (word, mask) = self.slot(seq);
        self.bits[word] |= mask;
    }

    /// Both steps at once, for callers that verified integrity already.
    pub fn check_and_update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        self.update(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rounds_up_and_has_minimum() {
        assert_eq!(ReplayWindow::new(0).size(), MIN_WINDOW);
        assert_eq!(ReplayWindow::new(2000).size(), 2048);
        assert_eq!(ReplayWindow::default().size(), DEFAULT_WINDOW);
    }

    #[test]
    fn window_old_bits_do_not_alias_after_wrap_of_ring() {
        let mut w = ReplayWindow::new(1024);
        for s in 1..=5000u64 {
            w.check_and_update(s).unwrap();
        }
        // Every number still inside the window is a replay, anything older is
        // too old, and nothing in the future is marked.
        for s in 5000 - 1023..=5000 {
            assert_eq!(w.check(s), Err(ReplayError::Replayed(s)));
        }
        assert_eq!(w.check(5000 - 1024), Err(ReplayError::TooOld(5000 - 1024)));
        for s in 5001..5200 {
            assert_eq!(w.check(s), Ok(()));
        }
    }
}
