//! Test labs for vpnd: network namespaces joined by veth pairs, processes
//! started inside them (vpnd, strongSwan's charon, probes), waiting on
//! conditions, and teardown that happens even when a test fails (`Drop`).
//!
//! Addresses come from 198.18.0.0/15 and the TEST-NET ranges only, inside
//! namespaces this harness creates; nothing here sends traffic elsewhere.
//! These labs need root (CI runs as root).

pub mod certs;
pub mod charon;
pub mod configs;
pub mod fraglab;
pub mod kernel_lab;
pub mod lab;
pub mod many;
pub mod procstat;
pub mod topology;
pub mod traffic;
pub mod uml;
pub mod vpnd;
pub mod xfrm;

pub use charon::{Charon, CharonConn, CharonOptions};
pub use lab::{Lab, Ns};
pub use vpnd::{Ctl, Vpnd};
