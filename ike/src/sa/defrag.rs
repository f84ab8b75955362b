//! Fragmentation (RFC 7383) on an IKE SA. Sending: when a message goes
//! out in fragments (§2.5). Receiving (§2.6): which message a
//! fragment may belong to, its integrity check before it is kept, the
//! resend of a cached response when fragment 1 of an answered request
//! comes again (§2.6.1), and handing a reassembled message to the same
//! processing as an unfragmented one.

use std::net::SocketAddr;
use std::time::Instant;

use super::fragment::{self, Added, FragmentError, Opened, Reassembled};
use super::message::{digest, OpenError};
use super::{DatagramError, IkeSa};
use crate::wire::{self, ExchangeType, Message, Payload};

impl IkeSa {
    /// The longest message we send in one datagram, when fragmentation
    /// is negotiated and our connection uses it.
    pub(super) fn max_message(&self) -> Option<usize> {
        if !self.core.fragmentation {
            return None;
        }
        let size = self
            .config
            .as_ref()
            .or_else(|| self.candidates.first())
            .map(|c| c.fragment_size)?;
        if size == 0 {
            return None;
        }
        Some(fragment::max_message_len(
            size.max(crate::config::MIN_FRAGMENT_SIZE),
            self.remote.is_ipv4(),
            self.natt,
        ))
    }

    /// Protect a message of the current IKE SA, in fragments if needed.
    pub(super) fn protect(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        payloads: &[Payload],
    ) -> Vec<Vec<u8>> {
        let max = self.max_message();
        let data = self.core.protect(exchange, response, id, payloads, max);
        if data.len() > 1 {
            self.frag_stats.messages_fragmented += 1;
        }
        data
    }

    /// A datagram of the current IKE SA whose last payload is SKF.
    pub(super) fn handle_fragment(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: Message,
    ) -> Result<(), DatagramError> {
        let done = match self.take_fragment(now, data, &msg) {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.frag_stats.fragments_dropped =
                    self.frag_stats.fragments_dropped.saturating_add(1);
                return Err(e);
            }
        };
        self.frag_stats.messages_reassembled += 1;
        let payloads = wire::decode_payloads(done.first, &done.plain)
            .map_err(|e| DatagramError::Open(OpenError::Decode(e)))?;
        let id = msg.header.message_id;
        if msg.header.is_response() {
            self.process_response(now, payloads)
        } else {
            self.core.answering_digest(done.first_digest);
            self.process_request(now, local, remote, done.exchange, id, None, payloads)
        }
    }

    /// Check, open and keep one fragment; `Some` once its message is
    /// complete. `Ok(None)` also when it made us resend a cached response.
    fn take_fragment(
        &mut self,
        now: Instant,
        data: &[u8],
        msg: &Message,
    ) -> Result<Option<Reassembled>, DatagramError> {
        if !self.core.fragmentation {
            return Err(DatagramError::Fragment(FragmentError::NotNegotiated));
        }
        let h = &msg.header;
        if h.is_initiator() == self.core.initiator {
            return Err(DatagramError::Unexpected(
                "fragment with our own initiator flag",
            ));
        }
        if h.exchange == ExchangeType::IKE_SA_INIT {
            return Err(DatagramError::Unexpected("IKE_SA_INIT in fragments"));
        }
        let Some(Payload::EncryptedFragment(f)) = msg.payloads.last() else {
            return Err(DatagramError::Open(OpenError::NotEncrypted));
        };
        let d = digest(data);
        // Which message it may belong to, before the cost of opening it.
        if h.is_response() {
            let Some(out) = self.core.out.as_ref() else {
                return Err(DatagramError::Unexpected("response without a request"));
            };
            if h.message_id != out.id || h.exchange != out.exchange {
                return Err(DatagramError::Fragment(FragmentError::UnexpectedId {
                    got: h.message_id,
                    expected: out.id,
                }));
            }
        } else if h.message_id != self.core.peer_next_id {
            if let Some(resp) = self.core.retransmitted_fragment(h.message_id, f.number, &d) {
                self.transmit_all(resp);
                return Ok(None);
            }
            let answered = self
                .core
                .cached
                .as_ref()
                .is_some_and(|(id, _, _)| *id == h.message_id);
            if answered && f.number == 1 {
                // Not the copy we saw (the peer may have fragmented it
                // anew, for a smaller MTU): fragment 1 that opens under the
                // peer's key is its retransmission all the same (§2.6.1).
                self.core
                    .open_fragment(data, msg)
                    .map_err(DatagramError::Open)?;
                if let Some((_, resp, _)) = self.core.cached.as_ref() {
                    let resp = resp.clone();
                    self.transmit_all(resp);
                }
                return Ok(None);
            }
            return Err(DatagramError::Fragment(if answered {
                FragmentError::AlreadyAnswered
            } else {
                FragmentError::UnexpectedId {
                    got: h.message_id,
                    expected: self.core.peer_next_id,
                }
            }));
        }
        let (f, plain) = self
            .core
            .open_fragment(data, msg)
            .map_err(DatagramError::Open)?;
        let opened = Opened {
            id: h.message_id,
            exchange: h.exchange,
            number: f.number,
            total: f.total,
            next_payload: f.next_payload,
            plain,
            digest: &d,
        };
        let slot = if h.is_response() {
            &mut self.core.defrag_response
        } else {
            &mut self.core.defrag_request
        };
        let (added, discarded) = fragment::add(slot, now, opened);
        self.frag_stats.fragments_dropped =
            self.frag_stats.fragments_dropped.saturating_add(discarded);
        match added {
            Added::Stored => {
                self.frag_stats.fragments_received += 1;
                Ok(None)
            }
            Added::Complete(done) => {
                self.frag_stats.fragments_received += 1;
                Ok(Some(done))
            }
            Added::Dropped(e) => Err(DatagramError::Fragment(e)),
        }
    }

    /// Would the fragment `data` (header `h`, already decoded) complete
    /// its message, if it opens? Read from its SKF header alone, for
    /// [`IkeSa::datagram_cost`].
    pub(super) fn fragment_completes(&self, h: &crate::wire::Header, data: &[u8]) -> bool {
        let field = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (Some(number), Some(total)) = (field(32), field(34)) else {
            return false;
        };
        let slot = if h.is_response() {
            &self.core.defrag_response
        } else {
            &self.core.defrag_request
        };
        match slot {
            _ if total == 1 => true,
            Some(r) => r.completed_by(h.message_id, number, total),
            None => false,
        }
    }

    /// Drop partial messages that waited too long for their other
    /// fragments.
    pub(super) fn expire_reassembly(&mut self, now: Instant) {
        for slot in [
            &mut self.core.defrag_request,
            &mut self.core.defrag_response,
        ] {
            if slot.as_ref().is_some_and(|r| r.deadline <= now) {
                let held = slot.take().map_or(0, |r| r.held());
                self.frag_stats.fragments_dropped =
                    self.frag_stats.fragments_dropped.saturating_add(held);
            }
        }
    }
}
