//! The control side of vpnd: the configuration and secrets files
//! ([`config`], [`secrets`]), their lowering into what the actors run
//! ([`convert`]), the control socket's protocol and server ([`protocol`],
//! [`server`]), strongSwan configuration converted to vpnd's ([`import`],
//! `vpnctl import`), the certificate listing ([`certlist`]), systemd notifications ([`notify`]), and the `vpnd`
//! and `vpnctl` binaries (`src/bin`) with their command lines ([`cli`]).
pub mod certlist;
pub mod cli;
pub mod config;
pub mod convert;
pub mod import;
pub mod notify;
pub mod peer;
pub mod protocol;
pub mod secrets;
pub mod server;
