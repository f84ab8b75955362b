//! Configuration, control-socket protocol and the `vpnd` / `vpnctl` binaries. Filled in by the daemon issue.
pub mod config;
pub mod convert;
pub mod protocol;
pub mod secrets;
pub mod server;
