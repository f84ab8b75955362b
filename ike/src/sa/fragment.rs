//! IKE message fragmentation (RFC 7383): how an encrypted message is split
//! into SKF payloads, and the bounded reassembly of received fragments.
//!
//! Sending: a message whose datagram would exceed the connection's
//! `fragment_size` (an IP datagram size: IP and UDP headers and the non-ESP
//! marker count, as in strongSwan's `message.c`) is split into fragments of
//! at most that size, each encrypted and integrity-protected on its own.
//!
//! Receiving: each fragment is opened (its ICV checked) before it is kept;
//! fragments are kept per message ID, at most [`MAX_FRAGMENTS`] of them and
//! [`MAX_REASSEMBLED_LEN`] bytes of plaintext in all; a partial message is
//! dropped after [`REASSEMBLY_TIMEOUT`] without a new fragment. A larger
//! Total Fragments than before restarts the reassembly, a smaller one drops
//! the fragment (RFC 7383 §2.6); duplicates are ignored.

use std::time::{Duration, Instant};

use crate::crypto::AeadAlg;
use crate::wire::{self, ExchangeType, PayloadType};

use super::message::RequestDigest;

/// At most this many fragments in one message we reassemble (strongSwan
/// accepts 255, but at its default `max_packet` of 10000 bytes needs far
/// fewer; 64 fragments of the smallest allowed size still carry 30 KB).
pub const MAX_FRAGMENTS: u16 = 64;
/// At most this many bytes of plaintext in one reassembled message.
pub const MAX_REASSEMBLED_LEN: usize = 64 * 1024;
/// A partial message is dropped when no fragment of it was accepted for
/// this long (the peer's next retransmission starts it again).
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of an IPv4 / IPv6 header (no options or extension headers).
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const NON_ESP_MARKER: usize = 4;
/// SKF payload header: generic header plus Fragment Number and Total.
const SKF_HEADER: usize = 8;

/// The largest IKE message (UDP payload less the non-ESP marker) that fits
/// an IP datagram of `fragment_size` bytes.
pub(crate) fn max_message_len(fragment_size: u16, ipv4: bool, natt: bool) -> usize {
    let ip = if ipv4 { IPV4_HEADER } else { IPV6_HEADER };
    let marker = if natt { NON_ESP_MARKER } else { 0 };
    usize::from(fragment_size)
        .saturating_sub(ip + UDP_HEADER + marker)
        .max(1)
}

/// Plaintext bytes each fragment carries when a message is limited to
/// `max_message` bytes: less the IKE header, the SKF header, IV, ICV and
/// the pad length byte (AEAD ciphers need no padding, RFC 5282 §3).
pub(crate) fn fragment_content_len(max_message: usize) -> usize {
    max_message
        .saturating_sub(wire::HEADER_LEN + SKF_HEADER + AeadAlg::IV_LEN + AeadAlg::ICV_LEN + 1)
        .max(1)
}

/// Counters of one IKE SA's fragmentation, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Messages we sent fragmented.
    pub messages_fragmented: u32,
    /// Fragments we sent (retransmissions included).
    pub fragments_sent: u32,
    /// Fragments accepted: integrity checked and stored.
    pub fragments_received: u32,
    /// Messages reassembled from fragments.
    pub messages_reassembled: u32,
    /// Fragments dropped: malformed, failing the integrity check, of an
    /// unexpected message ID, duplicates, over a limit, or a partial
    /// message that timed out (counted per fragment it held).
    pub fragments_dropped: u32,
}

/// Why a fragment was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("fragmentation was not negotiated")]
    NotNegotiated,
    #[error("fragment of message ID {got}, expecting {expected}")]
    UnexpectedId { got: u32, expected: u32 },
    #[error("fragment of an already answered request (not fragment 1)")]
    AlreadyAnswered,
    #[error("duplicate fragment {0}")]
    Duplicate(u16),
    #[error("fragment with Total Fragments {got}, less than the {current} seen before")]
    TotalShrank { got: u16, current: u16 },
    #[error("{0} fragments exceed the limit of {MAX_FRAGMENTS}")]
    TooManyFragments(u16),
    #[error("reassembled message exceeds {MAX_REASSEMBLED_LEN} bytes")]
    TooLarge,
    #[error("fragment's exchange type {got} differs from the message's {expected}")]
    ExchangeChanged {
        got: ExchangeType,
        expected: ExchangeType,
    },
}

/// A whole message put back together.
pub(crate) struct Reassembled {
    pub exchange: ExchangeType,
    /// Type of the first inner payload (from fragment 1).
    pub first: PayloadType,
    pub plain: Vec<u8>,
    /// Digest of fragment 1's datagram: a retransmitted request is
    /// recognised by it (RFC 7383 §2.6.1).
    pub first_digest: RequestDigest,
}

/// One message being reassembled.
pub(crate) struct Reassembly {
    pub id: u32,
    exchange: ExchangeType,
    total: u16,
    /// Index `number - 1`.
    parts: Vec<Option<Vec<u8>>>,
    received: u16,
    len: usize,
    first: Option<(PayloadType, RequestDigest)>,
    pub deadline: Instant,
}

/// The outcome of offering an opened fragment.
pub(crate) enum Added {
    /// Kept; more are missing.
    Stored,
    /// Dropped for this reason.
    Dropped(FragmentError),
    /// The message is complete.
    Complete(Reassembled),
}

/// A fragment whose integrity was verified.
pub(crate) struct Opened<'a> {
    pub id: u32,
    pub exchange: ExchangeType,
    pub number: u16,
    pub total: u16,
    pub next_payload: PayloadType,
    pub plain: Vec<u8>,
    pub digest: &'a RequestDigest,
}

impl Reassembly {
    fn new(id: u32, exchange: ExchangeType, total: u16, now: Instant) -> Reassembly {
        Reassembly {
            id,
            exchange,
            total,
            parts: vec![None; usize::from(total)],
            received: 0,
            len: 0,
            first: None,
            deadline: now + REASSEMBLY_TIMEOUT,
        }
    }

    /// Fragments held.
    pub fn held(&self) -> u32 {
        u32::from(self.received)
    }

    /// Is fragment `number` of `total` of message `id` the one missing?
    pub fn completed_by(&self, id: u32, number: u16, total: u16) -> bool {
        id == self.id
            && total == self.total
            && self.received.saturating_add(1) == total
            && self
                .parts
                .get(usize::from(number).wrapping_sub(1))
                .is_some_and(Option::is_none)
    }
}

/// Offer an opened fragment to the reassembly slot `slot` (one for
/// requests, one for responses). The caller has checked the message ID.
/// Also returns how many fragments held before were discarded.
pub(crate) fn add(slot: &mut Option<Reassembly>, now: Instant, f: Opened<'_>) -> (Added, u32) {
    let held = slot.as_ref().map_or(0, Reassembly::held);
    let added = add_inner(slot, now, f);
    let left = slot.as_ref().map_or(0, Reassembly::held);
    let discarded = match &added {
        Added::Stored if left <= held => held + 1 - left,
        Added::Stored | Added::Dropped(_) => held.saturating_sub(left),
        Added::Complete(_) => 0,
    };
    (added, discarded)
}

fn add_inner(slot: &mut Option<Reassembly>, now: Instant, f: Opened<'_>) -> Added {
    if f.total > MAX_FRAGMENTS {
        *slot = None;
        return Added::Dropped(FragmentError::TooManyFragments(f.total));
    }
    let restart = match slot {
        Some(r) if r.id == f.id && r.deadline > now => {
            if f.exchange != r.exchange {
                return Added::Dropped(FragmentError::ExchangeChanged {
                    got: f.exchange,
                    expected: r.exchange,
                });
            }
            if f.total < r.total {
                return Added::Dropped(FragmentError::TotalShrank {
                    got: f.total,
                    current: r.total,
                });
            }
            f.total > r.total
        }
        _ => true,
    };
    if restart {
        *slot = Some(Reassembly::new(f.id, f.exchange, f.total, now));
    }
    let Some(r) = slot.as_mut() else {
        return Added::Stored;
    };
    let index = usize::from(f.number).saturating_sub(1);
    let Some(part) = r.parts.get_mut(index) else {
        // The decoder guarantees number <= total; be total anyway.
        return Added::Dropped(FragmentError::TooManyFragments(f.number));
    };
    if part.is_some() {
        return Added::Dropped(FragmentError::Duplicate(f.number));
    }
    let len = r.len.saturating_add(f.plain.len());
    if len > MAX_REASSEMBLED_LEN {
        *slot = None;
        return Added::Dropped(FragmentError::TooLarge);
    }
    *part = Some(f.plain);
    r.len = len;
    r.received += 1;
    r.deadline = now + REASSEMBLY_TIMEOUT;
    if f.number == 1 {
        r.first = Some((f.next_payload, *f.digest));
    }
    if r.received < r.total {
        return Added::Stored;
    }
    let Some(r) = slot.take() else {
        return Added::Stored;
    };
    let Some((first, first_digest)) = r.first else {
        return Added::Stored;
    };
    let mut plain = Vec::with_capacity(r.len);
    for p in r.parts.into_iter().flatten() {
        plain.extend_from_slice(&p);
    }
    Added::Complete(Reassembled {
        exchange: r.exchange,
        first,
        plain,
        first_digest,
    })
}

/// Fuzzing entry (`ike/fuzz`, target `fragments`): `input` is read as a
/// sequence of fragments, each `[id: 1][number: 2][total: 2][len: 1]`
/// followed by `len` plaintext bytes (the integrity check, which a fuzzer
/// cannot pass, is taken as done), offered in order to one reassembly
/// slot, one simulated second apart when the id byte's top bit is set.
/// Panics if a bound is broken: at most [`MAX_FRAGMENTS`] held, at most
/// [`MAX_REASSEMBLED_LEN`] bytes held or reassembled, and a reassembled
/// message exactly its fragments' bytes in order.
#[doc(hidden)]
pub fn fuzz_reassembly(input: &[u8]) -> u32 {
    let start = Instant::now();
    let mut now = start;
    let mut slot: Option<Reassembly> = None;
    let mut rest = input;
    let mut completed = 0;
    let digest = [0u8; 32];
    // What each (id, total) in progress holds, to check the result.
    let mut shadow: Vec<(u16, Vec<u8>)> = Vec::new();
    while let [id, n0, n1, t0, t1, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (plain, tail) = tail.split_at(len);
        rest = tail;
        if id & 0x80 != 0 {
            now += Duration::from_secs(1);
        }
        let number = u16::from_be_bytes([*n0, *n1]);
        let total = u16::from_be_bytes([*t0, *t1]);
        if number == 0 || number > total {
            continue; // the decoder never yields these
        }
        let f = Opened {
            id: u32::from(id & 0x7f),
            exchange: ExchangeType::IKE_AUTH,
            number,
            total,
            next_payload: PayloadType::NONE,
            plain: plain.to_vec(),
            digest: &digest,
        };
        let before = slot.as_ref().map(|r| (r.id, r.total, r.deadline > now));
        match before {
            Some((rid, rt, true)) if rid == f.id && total <= rt => {}
            _ => shadow.clear(),
        }
        let (added, _) = add(&mut slot, now, f);
        match added {
            Added::Stored => shadow.push((number, plain.to_vec())),
            Added::Dropped(_) => {}
            Added::Complete(done) => {
                shadow.push((number, plain.to_vec()));
                shadow.sort_by_key(|(n, _)| *n);
                let expect: Vec<u8> = shadow.iter().flat_map(|(_, p)| p.clone()).collect();
                assert_eq!(done.plain, expect, "reassembled bytes");
                assert!(done.plain.len() <= MAX_REASSEMBLED_LEN);
                shadow.clear();
                completed += 1;
            }
        }
        if let Some(r) = &slot {
            assert!(r.total <= MAX_FRAGMENTS && r.received <= r.total);
            assert!(r.len <= MAX_REASSEMBLED_LEN);
            assert_eq!(r.parts.len(), usize::from(r.total));
        } else {
            shadow.clear();
        }
    }
    completed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(slot: &mut Option<Reassembly>, now: Instant, f: Opened<'_>) -> Added {
        add(slot, now, f).0
    }

    fn frag(id: u32, number: u16, total: u16, byte: u8, digest: &RequestDigest) -> Opened<'_> {
        Opened {
            id,
            exchange: ExchangeType::IKE_AUTH,
            number,
            total,
            next_payload: if number == 1 {
                PayloadType::IDI
            } else {
                PayloadType::NONE
            },
            plain: vec![byte; 10],
            digest,
        }
    }

    #[test]
    fn sizes_count_ip_udp_and_marker_as_strongswan_does() {
        assert_eq!(max_message_len(1280, true, false), 1252);
        assert_eq!(max_message_len(1280, false, false), 1232);
        assert_eq!(max_message_len(1280, true, true), 1248);
        // 1252 - 28 (IKE header) - 8 (SKF header) - 8 (IV) - 16 (ICV) - 1.
        assert_eq!(fragment_content_len(1252), 1191);
        assert_eq!(fragment_content_len(10), 1);
    }

    #[test]
    fn out_of_order_and_duplicate_fragments_reassemble_in_order() {
        let now = Instant::now();
        let d = [7u8; 32];
        let mut slot = None;
        assert!(matches!(
            put(&mut slot, now, frag(1, 3, 3, 3, &d)),
            Added::Stored
        ));
        assert!(matches!(
            put(&mut slot, now, frag(1, 1, 3, 1, &d)),
            Added::Stored
        ));
        assert!(matches!(
            put(&mut slot, now, frag(1, 3, 3, 3, &d)),
            Added::Dropped(FragmentError::Duplicate(3))
        ));
        match put(&mut slot, now, frag(1, 2, 3, 2, &d)) {
            Added::Complete(r) => {
                assert_eq!(r.first, PayloadType::IDI);
                assert_eq!(r.plain.len(), 30);
                assert_eq!(&r.plain[..10], &[1; 10]);
                assert_eq!(&r.plain[10..20], &[2; 10]);
                assert_eq!(&r.plain[20..], &[3; 10]);
                assert_eq!(r.first_digest, d);
            }
            _ => panic!("three fragments make the message"),
        }
        assert!(slot.is_none());
    }

    #[test]
    fn total_growing_restarts_shrinking_is_dropped() {
        let now = Instant::now();
        let d = [0u8; 32];
        let mut slot = None;
        assert!(matches!(
            put(&mut slot, now, frag(1, 1, 3, 1, &d)),
            Added::Stored
        ));
        assert!(matches!(
            put(&mut slot, now, frag(1, 2, 2, 2, &d)),
            Added::Dropped(FragmentError::TotalShrank { got: 2, current: 3 })
        ));
        // More fragments than before: what was held is discarded.
        assert!(matches!(
            put(&mut slot, now, frag(1, 2, 4, 2, &d)),
            Added::Stored
        ));
        assert_eq!(slot.as_ref().map(Reassembly::held), Some(1));
        assert!(matches!(
            put(&mut slot, now, frag(1, 1, 5, 1, &d)),
            Added::Stored
        ));
        assert_eq!(slot.as_ref().map(Reassembly::held), Some(1));
    }

    #[test]
    fn limits_and_expiry() {
        let now = Instant::now();
        let d = [0u8; 32];
        let mut slot = None;
        assert!(matches!(
            put(&mut slot, now, frag(1, 1, MAX_FRAGMENTS + 1, 1, &d)),
            Added::Dropped(FragmentError::TooManyFragments(_))
        ));
        assert!(slot.is_none());
        let mut big = frag(1, 1, 2, 0, &d);
        big.plain = vec![0; MAX_REASSEMBLED_LEN];
        assert!(matches!(put(&mut slot, now, big), Added::Stored));
        assert!(matches!(
            put(&mut slot, now, frag(1, 2, 2, 0, &d)),
            Added::Dropped(FragmentError::TooLarge)
        ));
        assert!(slot.is_none(), "an oversized message is dropped whole");
        // A stale partial message is replaced by a fresh one.
        assert!(matches!(
            put(&mut slot, now, frag(1, 1, 2, 1, &d)),
            Added::Stored
        ));
        let later = now + REASSEMBLY_TIMEOUT + Duration::from_secs(1);
        assert!(matches!(
            put(&mut slot, later, frag(1, 2, 2, 2, &d)),
            Added::Stored
        ));
        assert_eq!(slot.as_ref().map(Reassembly::held), Some(1));
    }
}
