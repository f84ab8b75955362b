//! The userspace ESP dataplane.
//!
//! - [`dataplane`]: the `userspace` backend: the [`crate::Dataplane`] impl
//!   over the parts below, TUN device and policy rule setup.
//! - `table` and `hold`: its state with no clock and no I/O (SAs, policies,
//!   routes by reference count, lifetimes, rekey drains; packets held for
//!   traps); time comes in as `now`.
//! - `worker` and `housekeeping`: its threads, which own the clock and the
//!   I/O (TUN queues, UDP/4500 sockets, keepalives).
//! - [`udp`]: batched `recvmmsg`/`sendmmsg`.
//! - [`esp`]: RFC 4303 ESP with AEAD (RFC 4106, RFC 7634) as carried in
//!   ESP-in-UDP (RFC 3948); encapsulate/decapsulate into caller buffers.
//! - [`replay`]: the anti-replay window (checked before decryption, updated
//!   after the ICV verified).
//! - [`spd`]: policy lookup, most specific first.
//! - [`ip`]: IPv4/IPv6 headers through checked views, the 5-tuple of a
//!   packet, the header transport mode rebuilds.
//! - [`route`]: rtnetlink routes of remote traffic selectors into the TUN
//!   device (blocking netlink calls).
//!
//! [`esp`], [`replay`], [`spd`] and [`ip`] are pure packet processing: no
//! clock, no socket.

pub mod dataplane;
pub mod esp;
mod hold;
mod housekeeping;
pub mod ip;
pub mod replay;
pub mod route;
pub mod spd;
mod table;
pub mod udp;
mod worker;

pub use dataplane::{UserspaceDataplane, UserspaceOptions};
pub use esp::{Decap, EspError, InboundSa, OutboundSa};
pub use replay::{ReplayError, ReplayWindow};
pub use spd::{parse_five_tuple, Action, FiveTuple, Policy, PolicyId, Spd};
