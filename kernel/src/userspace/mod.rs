//! The userspace ESP dataplane: pure packet processing, no I/O.
//!
//! - [`esp`]: RFC 4303 ESP with AEAD (RFC 4106, RFC 7634) as carried in
//!   ESP-in-UDP (RFC 3948); encapsulate/decapsulate into caller buffers.
//! - [`replay`]: the anti-replay window (checked before decryption, updated
//!   after the ICV verified).
//! - [`spd`]: policy lookup, most specific first, and 5-tuple parsing.
//! - [`route`]: rtnetlink routes of remote traffic selectors into the TUN
//!   device (the one module here that does I/O: blocking netlink calls).
//!
//! The device side (TUN queues, UDP/4500 sockets, worker threads) builds on
//! these and lives elsewhere; apart from [`route`], nothing here reads a
//! clock or a socket.

pub mod esp;
pub mod replay;
pub mod route;
pub mod spd;

pub use esp::{Decap, EspError, InboundSa, OutboundSa};
pub use replay::{ReplayError, ReplayWindow};
pub use spd::{parse_five_tuple, Action, FiveTuple, Policy, PolicyId, Spd};
