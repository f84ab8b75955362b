//! `ike`: IKEv2 (RFC 7296) as a library a daemon drives, with no I/O.
//!
//! - [`wire`]: the message codec; malformed input is an error, never a panic.
//! - [`crypto`], [`keys`], [`auth`]: AEAD ciphers, PRFs, DH groups, key
//!   derivation, PSK authentication (constant-time checks, zeroized keys).
//! - [`pki`]: certificate authentication (RFC 7427 signatures, chain
//!   validation, identities bound to certificates).
//! - [`proposal`], [`ts`]: strongSwan proposal syntax, negotiation, traffic
//!   selector narrowing.
//! - [`sa`]: the IKE SA state machine for every exchange, both roles. Inputs
//!   take `now`; outputs are polled; randomness comes from a provider.
//! - `testing` (feature `testing`): `Pair`, two endpoints on a simulated
//!   network with loss, duplication, reordering and tampering.
//!
//! No sockets, no clock reads, no threads, no async runtime.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod keys;
pub mod pki;
pub mod proposal;
pub mod sa;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ts;
pub mod wire;
