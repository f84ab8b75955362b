//! One IKE SA's message layer: SPIs, SK payload protection, message IDs with
//! a window of one, request retransmission and the response cache
//! (RFC 7296 §2.1, §2.2, §3.14; RFC 5282 §5; RFC 7634 §3).
//!
//! Invariants: at most one request of ours is outstanding; `peer_next_id` is
//! the only request ID we answer afresh; the cached response goes out again
//! only for a byte-identical copy of the request it answered (RFC 7296 §2.1:
//! retransmissions are identical), so a tampered or different message with
//! that ID gets nothing; anything else is dropped. A fragmented request
//! (RFC 7383 §2.6.1) is recognised by its fragment 1 alone: identical, or
//! (sent anew in other fragments) opening under the peer's key.

use std::time::Instant;

use crate::crypto::AeadAlg;
use crate::keys::IkeKeys;
use crate::wire::{
    self, encode_payloads, flags, EncryptedFragment, ExchangeType, Header, Message, Payload,
    PayloadType,
};

use super::fragment::{self, Reassembly};

/// A request of ours awaiting its response.
pub(crate) struct Outstanding {
    pub id: u32,
    pub exchange: ExchangeType,
    /// The request's datagrams: one, or its fragments.
    pub data: Vec<Vec<u8>>,
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
    /// The last response we sent: its request ID, datagrams (one, or its
    /// fragments), and the digest of the request it answered (of its first
    /// fragment, if it came fragmented).
    pub cached: Option<(u32, Vec<Vec<u8>>, RequestDigest)>,
    /// The digest of the request being answered (set by `classify_request`).
    answering: RequestDigest,
    pub out: Option<Outstanding>,
    iv: u64,
    /// Both sides announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3):
    /// we accept fragments, and send them when the connection allows.
    pub fragmentation: bool,
    /// The peer's request being reassembled.
    pub defrag_request: Option<Reassembly>,
    /// The response to our request being reassembled.
    pub defrag_response: Option<Reassembly>,
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
            fragmentation: false,
            defrag_request: None,
            defrag_response: None,
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

    /// A message whose payloads travel inside an SK payload: one datagram,
    /// or, when `max_message` is given and the message would be longer,
    /// SKF fragments of at most that many bytes (RFC 7383 §2.5), each
    /// sealed on its own.
    pub fn protect(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        payloads: &[Payload],
        max_message: Option<usize>,
    ) -> Vec<Vec<u8>> {
        let (first, mut inner) = encode_payloads(payloads);
        let whole = wire::HEADER_LEN + 4 + AeadAlg::IV_LEN + inner.len() + 1 + AeadAlg::ICV_LEN;
        let content = match max_message {
            Some(max) if whole > max => fragment::fragment_content_len(max),
            _ => {
                inner.push(0); // Pad Length: AEAD needs no padding (RFC 5282 §3)
                return vec![self.seal(exchange, response, id, first, None, inner)];
            }
        };
        let chunks: Vec<&[u8]> = inner.chunks(content).collect();
        let Ok(total) = u16::try_from(chunks.len()) else {
            inner.push(0);
            return vec![self.seal(exchange, response, id, first, None, inner)];
        };
        chunks
            .iter()
            .zip(1u16..)
            .map(|(chunk, number)| {
                let next = if number == 1 {
                    first
                } else {
                    PayloadType::NONE
                };
                let mut plain = Vec::with_capacity(chunk.len() + 1 + AeadAlg::ICV_LEN);
                plain.extend_from_slice(chunk);
                plain.push(0);
                self.seal(exchange, response, id, next, Some((number, total)), plain)
            })
            .collect()
    }

    /// One datagram: the IKE header, an SK payload (or, with `fragment`
    /// = (number, total), an SKF payload) whose next-payload field is
    /// `next`, and `plain` (pad length included) sealed under our key with
    /// everything before the IV as AAD.
    fn seal(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        next: PayloadType,
        fragment: Option<(u16, u16)>,
        mut plain: Vec<u8>,
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
        let frag_fields = if fragment.is_some() { 4 } else { 0 };
        let payload_len = 4 + frag_fields + AeadAlg::IV_LEN + plain.len() + AeadAlg::ICV_LEN;
        let mut header = self.header(exchange, response, id);
        header.next_payload = if fragment.is_some() {
            PayloadType::SKF
        } else {
            PayloadType::SK
        };
        header.length = (wire::HEADER_LEN + payload_len) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        out.extend_from_slice(&header.encode());
        out.push(next.0);
        out.push(0);
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        if let Some((number, total)) = fragment {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
        }
        self.iv = self.iv.wrapping_add(1);
        let iv = self.iv.to_be_bytes();
        key.seal_in_place(&iv, &out[..], &mut plain);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&plain);
        out
    }

    /// Verify and decrypt the SK payload of `msg` (decoded from `data`).
    pub fn open(&self, data: &[u8], msg: &Message) -> Result<Vec<Payload>, OpenError> {
        let Some(Payload::Encrypted(sk)) = msg.payloads.last() else {
            return Err(OpenError::NotEncrypted);
        };
        let inner = self.open_body(data, msg.header.is_initiator(), &sk.body)?;
        Ok(wire::decode_payloads(sk.next_payload, &inner)?)
    }

    /// Verify and decrypt the SKF payload of `msg` (decoded from `data`):
    /// the fragment and its plaintext (padding removed).
    pub fn open_fragment<'m>(
        &self,
        data: &[u8],
        msg: &'m Message,
    ) -> Result<(&'m EncryptedFragment, Vec<u8>), OpenError> {
        let Some(Payload::EncryptedFragment(f)) = msg.payloads.last() else {
            return Err(OpenError::NotEncrypted);
        };
        Ok((f, self.open_body(data, msg.header.is_initiator(), &f.body)?))
    }

    /// Open `body` (IV ‖ ciphertext ‖ ICV, the end of `data`) with the
    /// key of the side whose Initiator flag is `from_initiator`; everything
    /// in `data` before the body is the AAD (RFC 5282 §5, RFC 7383 §2.5).
    fn open_body(
        &self,
        data: &[u8],
        from_initiator: bool,
        body: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let keys = self.keys.as_ref().ok_or(OpenError::NoKeys)?;
        // The peer's key: messages from the original initiator use SK_ei.
        let key = if from_initiator {
            &keys.sk_ei
        } else {
            &keys.sk_er
        };
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
        let n = rest.len() - pad as usize;
        buf.truncate(n);
        Ok(buf)
    }

    /// Record a request we are sending; returns its message ID.
    pub fn begin_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        data: Vec<Vec<u8>>,
        first_wait: std::time::Duration,
    ) -> u32 {
        let id = self.next_id;
        self.defrag_response = None;
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
    Retransmit(Vec<Vec<u8>>),
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

    /// The request being answered came in fragments; the first one's
    /// datagram had digest `d`.
    pub fn answering_digest(&mut self, d: RequestDigest) {
        self.answering = d;
    }

    /// A fragment of a request with message ID `id` whose datagram has
    /// digest `d`: `Some(response)` if it is fragment 1 of the request we
    /// answered last, byte for byte (RFC 7383 §2.6.1: only fragment 1 of a
    /// retransmitted request makes the response go out again; one that
    /// differs is opened first, by the caller).
    pub fn retransmitted_fragment(
        &self,
        id: u32,
        number: u16,
        d: &RequestDigest,
    ) -> Option<Vec<Vec<u8>>> {
        match &self.cached {
            Some((cid, data, cd)) if *cid == id && number == 1 && cd == d => Some(data.clone()),
            _ => None,
        }
    }

    pub fn answered(&mut self, id: u32, response: Vec<Vec<u8>>) {
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
        m.answered(0, vec![b"response one".to_vec()]);
        match m.classify_request(0, &request) {
            RequestId::Retransmit(r) => assert_eq!(r, vec![b"response one".to_vec()]),
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
        m.answered(1, vec![b"response two".to_vec()]);
        assert!(matches!(m.classify_request(0, &request), RequestId::Drop));
    }
}
