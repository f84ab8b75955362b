//! One IKE SA's message layer: SPIs, SK payload protection, message IDs with
//! a window of one, request retransmission and the response cache
//! (RFC 7296 §2.1, §2.2, §3.14; RFC 5282 §5; RFC 7634 §3).
//!
//! Invariants: at most one request of ours is outstanding; `peer_next_id` is
//! the only request ID we answer afresh; the cached response goes out again
//! only for a byte-identical copy of the request it answered (RFC 7296 §2.1:
//! retransmissions are identical), so a tampered or different message with
//! that ID gets nothing; anything else is dropped.

use std::time::Instant;

use crate::crypto::AeadAlg;
use crate::keys::IkeKeys;
use crate::wire::{
    self, encode_payloads, flags, ExchangeType, Header, Message, Payload, PayloadType,
};

/// A request of ours awaiting its response.
pub(crate) struct Outstanding {
    pub id: u32,
    pub exchange: ExchangeType,
    pub data: Vec<u8>,
    /// Transmissions so far (1 after the first send).
    pub sent: u32,
    pub next: Instant,
}

/// Why a protected message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("message has no SK payload")]
    NotEncrypted,
    #[error("SK payload too short")]
    Short,
    #[error("integrity check failed")]
    Integrity,
    #[error("bad padding")]
    Padding,
    #[error("inner payloads: {0}")]
    Decode(#[from] wire::DecodeError),
    #[error("no keys yet")]
    NoKeys,
}

pub(crate) struct MessageLayer {
    pub spi_i: u64,
    pub spi_r: u64,
    /// Are we the original initiator of this IKE SA (§2.18: after a rekey,
    /// the side that initiated the rekey)?
    pub initiator: bool,
    pub keys: Option<IkeKeys>,
    pub next_id: u32,
    pub peer_next_id: u32,
    /// The last response we sent: its request ID, datagram, and the digest
    /// of the request it answered.
    pub cached: Option<(u32, Vec<u8>, RequestDigest)>,
    /// The digest of the request being answered (set by `classify_request`).
    answering: RequestDigest,
    pub out: Option<Outstanding>,
    iv: u64,
}

impl MessageLayer {
    pub fn new(spi_i: u64, spi_r: u64, initiator: bool) -> MessageLayer {
        MessageLayer {
            spi_i,
            spi_r,
            initiator,
            keys: None,
            next_id: 0,
            peer_next_id: 0,
            cached: None,
            answering: [0; 32],
            out: None,
            iv: 0,
        }
    }

    pub fn header(&self, exchange: ExchangeType, response: bool, id: u32) -> Header {
        let mut f = 0;
        if self.initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: f,
            message_id: id,
            length: 0,
        }
    }

    /// A plaintext message (IKE_SA_INIT).
    pub fn plain(
        &self,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        payloads: Vec<Payload>,
    ) -> Vec<u8> {
        Message {
            header: self.header(exchange, response, id),
            payloads,
        }
        .encode()
    }

    /// A message whose payloads travel inside an SK payload.
    pub fn protect(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        payloads: &[Payload],
    ) -> Vec<u8> {
        let keys = self
            .keys
            .as_ref()
            .expect("protect() before keys: caller bug");
        let key = if self.initiator {
            &keys.sk_ei
        } else {
            &keys.sk_er
        };
        let (first, mut inner) = encode_payloads(payloads);
        inner.push(0); // Pad Length: AEAD needs no padding (RFC 5282 §3)
        let body_len = AeadAlg::IV_LEN + inner.len() + AeadAlg::ICV_LEN;
        let mut header = self.header(exchange, response, id);
        header.next_payload = PayloadType::SK;
        header.length = (wire::HEADER_LEN + 4 + body_len) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        out.extend_from_slice(&header.encode());
        out.push(first.0);
        out.push(0);
        out.extend_from_slice(&((4 + body_len) as u16).to_be_bytes());
        self.iv = self.iv.wrapping_add(1);
        let iv = self.iv.to_be_bytes();
        key.seal_in_place(&iv, &out[..], &mut inner);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&inner);
        out
    }

    /// Verify and decrypt the SK payload of `msg` (decoded from `data`).
    pub fn open(&self, data: &[u8], msg: &Message) -> Result<Vec<Payload>, OpenError> {
        let keys = self.keys.as_ref().ok_or(OpenError::NoKeys)?;
        let Some(Payload::Encrypted(sk)) = msg.payloads.last() else {
            return Err(OpenError::NotEncrypted);
        };
        // The peer's key: messages from the original initiator use SK_ei.
        let key = if msg.header.is_initiator() {
            &keys.sk_ei
        } else {
            &keys.sk_er
        };
        let body = &sk.body;
        if body.len() < AeadAlg::IV_LEN + AeadAlg::ICV_LEN + 1 || data.len() < body.len() {
            return Err(OpenError::Short);
        }
        let aad = &data[..data.len() - body.len()];
        let iv: [u8; 8] = body[..8].try_into().map_err(|_| OpenError::Short)?;
        let mut buf = body[8..].to_vec();
        let plain = key
            .open_in_place(&iv, aad, &mut buf)
            .map_err(|_| OpenError::Integrity)?;
        let (&pad, rest) = plain.split_last().ok_or(OpenError::Padding)?;
        if pad as usize > rest.len() {
            return Err(OpenError::Padding);
        }
        let inner = &rest[..rest.len() - pad as usize];
        Ok(wire::decode_payloads(sk.next_payload, inner)?)
    }

    /// Record a request we are sending; returns its message ID.
    pub fn begin_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        data: Vec<u8>,
        first_wait: std::time::Duration,
    ) -> u32 {
        let id = self.next_id;
        self.out = Some(Outstanding {
            id,
            exchange,
            data,
            sent: 1,
            next: now + first_wait,
        });
        id
    }

    pub fn next_request_id(&self) -> u32 {
        self.next_id
    }

    /// The response to our outstanding request arrived.
    pub fn finish_request(&mut self) -> Option<Outstanding> {
        let out = self.out.take()?;
        self.next_id = self.next_id.wrapping_add(1);
        Some(out)
    }
}

/// What to do with an incoming request's message ID (§2.2).
pub(crate) enum RequestId {
    New,
    Retransmit(Vec<u8>),
    Drop,
}

/// SHA-256 of a request datagram, to recognise its retransmissions.
pub(crate) type RequestDigest = [u8; 32];

pub(crate) fn digest(request: &[u8]) -> RequestDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, request);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl MessageLayer {
    /// What a received request (the whole datagram, `request`) with message
    /// ID `id` is: new, a retransmission of the one we answered last (only
    /// if byte-identical), or something to drop.
    pub fn classify_request(&mut self, id: u32, request: &[u8]) -> RequestId {
        let d = digest(request);
        if id == self.peer_next_id {
            self.answering = d;
            return RequestId::New;
        }
        match &self.cached {
            Some((cid, data, cd)) if *cid == id && *cd == d => RequestId::Retransmit(data.clone()),
            _ => RequestId::Drop,
        }
    }

    /// The request being answered is `request` (for requests that skip
    /// `classify_request`: the first IKE_SA_INIT).
    pub fn answering(&mut self, request: &[u8]) {
        self.answering = digest(request);
    }

    pub fn answered(&mut self, id: u32, response: Vec<u8>) {
        self.cached = Some((id, response, self.answering));
        self.peer_next_id = id.wrapping_add(1);
    }
}

#[cfg(test)]
mod retransmit_tests {
    use super::*;

    #[test]
    fn only_an_identical_copy_of_the_answered_request_gets_the_cached_response() {
        let mut m = MessageLayer::new(1, 2, false);
        let request = b"request one".to_vec();
        assert!(matches!(m.classify_request(0, &request), RequestId::New));
        m.answered(0, b"response one".to_vec());
        match m.classify_request(0, &request) {
            RequestId::Retransmit(r) => assert_eq!(r, b"response one"),
            _ => panic!("an identical retransmission gets the cached response"),
        }
        // Same message ID, other bytes (tampered, or a different request).
        assert!(matches!(
            m.classify_request(0, b"request 0ne"),
            RequestId::Drop
        ));
        // The next ID is new; an older one is dropped.
        assert!(matches!(
            m.classify_request(1, b"request two"),
            RequestId::New
        ));
        m.answered(1, b"response two".to_vec());
        assert!(matches!(m.classify_request(0, &request), RequestId::Drop));
    }
}
