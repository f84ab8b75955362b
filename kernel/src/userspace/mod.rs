//! The userspace ESP dataplane.
//!
//! - [`dataplane`]: the `userspace` backend: TUN queues, UDP/4500 sockets,
//!   worker threads, lifetimes, keepalives and traps, built on the modules
//!   below.
//! - [`udp`]: batched `recvmmsg`/`sendmmsg`.
//! - [`esp`]: RFC 4303 ESP with AEAD (RFC 4106, RFC 7634) as carried in
//!   ESP-in-UDP (RFC 3948); encapsulate/decapsulate into caller buffers.
//! - [`replay`]: the anti-replay window (checked before decryption, updated
//!   after the ICV verified).
//! - [`spd`]: policy lookup, most specific first.
//! - [`ip`]: IPv4/IPv6 headers through checked views, the 5-tuple of a
//!   packet, the header transport mode rebuilds.
//! - [`route`]: rtnetlink routes of remote traffic selectors into the TUN
//!   device (the one module here that does I/O: blocking netlink calls).
//!
//! [`esp`], [`replay`], [`spd`] and [`ip`] are pure packet processing: no
//! clock, no socket.

pub mod dataplane;
pub mod esp;
pub mod ip;
pub mod replay;
pub mod route;
pub mod spd;
pub mod udp;

pub use dataplane::{UserspaceDataplane, UserspaceOptions};
pub use esp::{Decap, EspError, InboundSa, OutboundSa};
pub use replay::{ReplayError, ReplayWindow};
pub use spd::{parse_five_tuple, Action, FiveTuple, Policy, PolicyId, Spd};
