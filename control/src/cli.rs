//! The command lines of `vpnd` and `vpnctl` (clap). They live in the
//! library so that the man pages and shell completions (`cargo xtask docs`)
//! are generated from the very definitions the binaries parse.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `vpnd`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "vpnd",
    version,
    about = "IKEv2/IPsec keying daemon",
    long_about = "vpnd is an IKEv2/IPsec keying daemon. It runs in the foreground, logs to \
                  stderr and is driven by vpnctl(8) over its control socket. Every connection, \
                  IKE SA and CHILD SA is its own supervised actor. The configuration file is \
                  described in vpnd.toml(5); a bad configuration makes vpnd exit with status 1 \
                  and one line per error (file, line, key).\n\n\
                  Under systemd (Type=notify) vpnd sends READY=1 once its sockets are bound and \
                  its configuration is loaded, STATUS= with a summary of its connections and \
                  SAs, and, when WatchdogSec= is set, WATCHDOG=1 only while its actor tree \
                  answers. Without NOTIFY_SOCKET none of this happens."
)]
pub struct VpndArgs {
    /// Configuration file.
    #[arg(long, value_name = "PATH", default_value = "/etc/vpnd/vpnd.toml")]
    pub config: PathBuf,
    /// Control socket (mode 0600, or 0660 with [daemon] socket_group).
    #[arg(long, value_name = "PATH", default_value = "/run/vpnd/vpnd.sock")]
    pub socket: PathBuf,
    /// Log format on stderr (json: one object per line with structured fields).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Allow fault injection through `vpnctl impair` (tests only).
    #[arg(long)]
    pub impair: bool,
}

/// `vpnctl`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "vpnctl",
    version,
    about = "Control a running vpnd",
    long_about = "vpnctl drives a running vpnd(8) over its control socket, the way swanctl \
                  drives charon: it loads, starts, stops and inspects connections. The \
                  configuration file (vpnd.toml(5)) is only a data source: nothing changes \
                  until a verb says so."
)]
pub struct VpnctlArgs {
    /// vpnd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/run/vpnd/vpnd.sock"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub verb: Verb,
}

// `vpnctl`'s verbs.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Connections, IKE SAs and CHILD SAs.
    Status {
        /// Only this connection.
        conn: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also list kernel XFRM states and policies vpnd did not install
        /// (another daemon's, an operator's, stale ones).
        #[arg(long)]
        kernel: bool,
    },
    /// Establish a connection (waits for the result unless --async).
    Up {
        /// The connection.
        #[arg(required_unless_present = "all")]
        conn: Option<String>,
        /// Only this CHILD SA of the connection.
        #[arg(long, value_name = "NAME")]
        child: Option<String>,
        /// Return before the result.
        #[arg(long = "async")]
        no_wait: bool,
        /// Every loaded connection, with progress.
        #[arg(long, conflicts_with = "conn")]
        all: bool,
    },
    /// Load a connection's definition from the configuration (fails if loaded).
    Add {
        /// The connection.
        conn: String,
    },
    /// Tear down and unload a connection (SAs, routes, traps).
    Delete {
        /// The connection.
        conn: String,
    },
    /// Delete (if loaded), then add from the configuration.
    Replace {
        /// The connection.
        conn: String,
    },
    /// Install trap policies: traffic to the remote selectors starts it.
    Route {
        /// The connection.
        conn: String,
    },
    /// Remove trap policies.
    Unroute {
        /// The connection.
        conn: String,
    },
    /// Retune retries: keyingtries, retry_base, retry_max, retransmit_timeout, retransmit_tries, dpd_delay.
    Set {
        /// The connection.
        conn: String,
        /// One or more settings, e.g. keyingtries=0 retry_max=10m.
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Reload the secrets files, private keys, certificates, CA
    /// certificates and CRLs (used from the next authentication).
    Rereadsecrets,
    /// List the loaded certificates, private keys, CA certificates and CRLs.
    ListCerts {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration and apply only the differences.
    Reload {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a connection's SAs (sends DELETE, waits for the answer).
    Down {
        /// The connection.
        conn: String,
    },
    /// Tear a connection down now, whatever its state.
    Kill {
        /// The connection.
        conn: String,
    },
    /// Apply new and changed connections from the config, or from one file.
    Load {
        /// One extra file, e.g. conf.d/new-customer.toml.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Daemon counters.
    Stats {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stream events.
    Monitor {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Fault injection (vpnd --impair only).
    Impair {
        /// The connection, or @daemon for the daemon actor itself.
        conn: String,
        /// drop-inbound=PCT, drop-outbound=PCT, duplicate=PCT, delay=MS, corrupt=PCT, stall, panic, panic-connection, kernel-fail or clear; for @daemon: stall or stall=SECS.
        kind: String,
    },
    /// Convert strongSwan configuration into vpnd's, listing what it cannot carry over.
    ///
    /// Reads swanctl.conf, or ipsec.conf with ipsec.secrets; writes
    /// conf.d/NAME.toml per connection and secrets.toml (mode 0600) under
    /// --out, and reports every option it does not carry over as it was.
    /// Needs no daemon. Exit status 1 when the input has errors (nothing is
    /// written then).
    Import {
        /// swanctl.conf or ipsec.conf.
        file: PathBuf,
        /// Where conf.d/ and secrets.toml are written.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Only report; write nothing.
        #[arg(long)]
        check: bool,
        /// ipsec.secrets, for an ipsec.conf (default: the one beside it).
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// The input format (default: by the file's name, else its content).
        #[arg(long, value_parser = ["swanctl", "ipsec"])]
        format: Option<String>,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        VpndArgs::command().debug_assert();
        VpnctlArgs::command().debug_assert();
    }
}
