//! Configuration, control-socket protocol and the `vpnd` / `vpnctl` binaries. Filled in by the daemon issue.
