//! What each configuration key means, for vpnd.toml(5) (`cargo xtask
//! docs`): one entry per key of every section, with its default and its
//! strongSwan equivalent. [`code_keys`] lists the keys the parser really
//! reads (from the tables in `daemon.rs`, `keys.rs` and `connection.rs`);
//! a test fails when the two lists differ, so a key cannot be added without
//! its documentation.

/// A section of vpnd.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// `[daemon]`.
    Daemon,
    /// `[scheduler]`.
    Scheduler,
    /// `[connections.NAME]`, and `[defaults]` for all but `children`.
    Connection,
    /// `[connections.NAME.children.CHILD]`.
    Child,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Daemon,
        Section::Scheduler,
        Section::Connection,
        Section::Child,
    ];

    /// The man page's section title.
    pub fn title(self) -> &'static str {
        match self {
            Section::Daemon => "DAEMON",
            Section::Scheduler => "SCHEDULER",
            Section::Connection => "CONNECTIONS",
            Section::Child => "CHILDREN",
        }
    }

    /// The table header as written in the file.
    pub fn header(self) -> &'static str {
        match self {
            Section::Daemon => "[daemon]",
            Section::Scheduler => "[scheduler]",
            Section::Connection => "[connections.NAME] and [defaults]",
            Section::Child => "[connections.NAME.children.CHILD]",
        }
    }
}

/// One key's documentation.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    pub section: Section,
    pub key: &'static str,
    /// As written in the file; "required" when there is none.
    pub default: &'static str,
    /// The nearest strongSwan setting (swanctl.conf unless said otherwise).
    pub strongswan: &'static str,
    pub doc: &'static str,
}

/// The keys the parser reads in `section`, from its own tables.
pub fn code_keys(section: Section) -> Vec<&'static str> {
    match section {
        Section::Daemon => super::daemon::DAEMON_KEYS.to_vec(),
        Section::Scheduler => super::daemon::SCHEDULER_KEYS.to_vec(),
        Section::Connection => super::keys::key_names(true),
        Section::Child => super::connection::CHILD_KEYS.to_vec(),
    }
}

/// The documented keys of `section`, in table order.
pub fn docs(section: Section) -> impl Iterator<Item = &'static KeyDoc> {
    KEY_DOCS.iter().filter(move |d| d.section == section)
}

const fn k(
    section: Section,
    key: &'static str,
    default: &'static str,
    strongswan: &'static str,
    doc: &'static str,
) -> KeyDoc {
    KeyDoc {
        section,
        key,
        default,
        strongswan,
        doc,
    }
}

use Section::{Child as C, Connection as N, Daemon as D, Scheduler as S};

/// Every key, by section.
pub static KEY_DOCS: &[KeyDoc] = &[
    k(D, "listen", "[] (all addresses)", "charon.interfaces_use (strongswan.conf), roughly",
      "IKE addresses; vpnd binds UDP 500 and 4500 on each."),
    k(D, "dataplane", "\"auto\"", "the kernel-netlink or kernel-libipsec plugin",
      "Where ESP runs: auto (userspace when it can start, else none), userspace (ESP-in-UDP over a TUN device), none (records SAs and traps only); xfrm is not built yet."),
    k(D, "include", "[]", "include (swanctl.conf)",
      "Glob patterns of further files, relative to the main file's directory, e.g. \"conf.d/*.toml\". They may hold connections only; connections merge."),
    k(D, "secrets", "[]", "the secrets section (swanctl.conf), ipsec.secrets",
      "Secrets files (or patterns), relative to the main file's directory; vpnd warns about one that group or others can read. See SECRETS below."),
    k(D, "cacerts", "[]", "x509ca/ (swanctl), ipsec.d/cacerts/",
      "Trust anchors for auth = pubkey: CA certificate files (PEM, several per file allowed, or DER) or directories of them, relative to the main file's directory."),
    k(D, "crls", "[]", "x509crl/ (swanctl), ipsec.d/crls/",
      "Certificate revocation lists (PEM or DER) or directories of them, relative to the main file's directory. A peer certificate (or one of its chain) that its issuer's CRL lists is refused; no CRL for an issuer allows its certificates; an expired CRL is still used, with a warning. vpnctl rereadsecrets loads them again."),
    k(D, "metrics", "unset (off)", "none",
      "IP:port of a Prometheus endpoint (/metrics), e.g. \"127.0.0.1:9469\"."),
    k(D, "socket_group", "unset (socket mode 0600)", "charon.group (strongswan.conf)",
      "Group that may use the control socket (mode 0660)."),
    k(D, "tun", "\"vpnd0\"", "none (kernel-libipsec's TUN device)",
      "Userspace dataplane: the TUN device's name (1 to 15 characters)."),
    k(D, "workers", "0 (one per CPU)", "none",
      "Userspace dataplane: worker threads, at most 64."),
    k(D, "keep_alive", "\"20s\"", "charon.keep_alive (strongswan.conf)",
      "NAT keepalive interval on UDP-encapsulated SAs; 0 turns them off."),
    k(D, "route_table", "220", "charon.routing_table (strongswan.conf)",
      "Routing table of the dataplane's routes (not 253 to 255): userspace, into the TUN device; xfrm, to the remote selectors of tunnel-mode children, with rule priority 220."),
    k(D, "install_routes", "true", "charon.install_routes (strongswan.conf)",
      "xfrm dataplane: route each tunnel-mode child's remote selectors in route_table, from an address of this host inside its local selectors."),
    k(D, "fwmark", "0x220", "charon.plugins.kernel-netlink.fwmark (strongswan.conf)",
      "Userspace dataplane: firewall mark of vpnd's own IKE and ESP-in-UDP packets, which bypass route_table."),
    k(D, "cookie_threshold", "30", "charon.cookie_threshold (strongswan.conf)",
      "Half-open responder SAs before COOKIEs are required; 0 = never."),
    k(D, "cookie_threshold_ip", "3", "charon.cookie_threshold_ip (strongswan.conf)",
      "The same, from one source address."),
    k(D, "block_threshold", "5", "charon.block_threshold (strongswan.conf)",
      "Half-open SAs from one source address before its new requests are dropped; 0 = no limit."),
    k(D, "half_open_max", "10000", "charon.init_limit_half_open (strongswan.conf)",
      "Half-open responder SAs in all before new requests are dropped; 0 = no limit."),
    k(D, "state_dir", "\"/var/lib/vpnd\"", "none",
      "Where vpnd remembers which connections were up, to bring them back after a restart; \"\" turns revival off."),
    k(S, "key_computations_per_sec", "derived at start", "charon.init_limit_job_load (strongswan.conf), roughly",
      "DH and key derivations started per second, at least 1. Unset, vpnd times one key computation at start and allows as many as fill half of all cores, rounded down to a hundred."),
    k(S, "max_concurrent", "4", "charon.threads (strongswan.conf), roughly",
      "Key computations running at once, at least 1."),
    k(S, "max_half_open_per_peer", "4", "none",
      "Our half-open IKE SAs towards one peer address, at least 1."),
    k(S, "rekey_jitter", "\"10%\"", "rand_time (a duration there)",
      "Rekey times are shortened by a random amount up to this share (0% to 100%)."),
    k(N, "local_addrs", "[] (any local address)", "local_addrs",
      "Our addresses for this connection; [\"%any\"] is the same as []."),
    k(N, "remote_addrs", "required", "remote_addrs",
      "The peer's addresses; \"%any\" accepts it from anywhere (responder only)."),
    k(N, "local_id", "required", "local.id",
      "Our identity: FQDN, user@fqdn, IP address, @#hex key id, or a DN (\"C=CH, O=strongSwan, CN=gw\"; with certificates). With auth = pubkey it must be in local_cert (its subject or a subjectAltName)."),
    k(N, "remote_id", "required", "remote.id",
      "The peer's identity, or \"%any\". A DN may use * for any value (\"C=CH, O=strongSwan, CN=*\"). With auth = pubkey it must be in the peer's certificate."),
    k(N, "auth", "\"psk\"", "local.auth, remote.auth",
      "psk (the secret from the secrets files) or pubkey (certificates: local_cert, its [[key]] in the secrets files, [daemon] cacerts)."),
    k(N, "local_cert", "unset", "local.certs",
      "auth = pubkey: our certificate, PEM or DER, relative to the connection's file; intermediate CA certificates may follow it in the same PEM file and are sent with it. Its private key is the [[key]] of the secrets files that matches it."),
    k(N, "remote_cacert", "unset (any of cacerts)", "remote.cacerts",
      "auth = pubkey: pin the CA the peer's chain must end at (a file as local_cert)."),
    k(N, "send_cert", "\"ifasked\"", "local.send_cert",
      "auth = pubkey: send our certificate chain ifasked (the peer sent a CERTREQ), always or never."),
    k(N, "rsa_pss", "false", "local.auth = rsa/pss (ike:rsa/pss-sha256); charon.rsa_pss",
      "auth = pubkey with an RSA key: sign RSASSA-PSS (MGF1 with the same hash, salt of the hash's length) instead of PKCS#1 v1.5. Peers' PSS signatures are verified either way."),
    k(N, "proposals", "[\"default\"]", "proposals",
      "IKE proposals in strongSwan syntax, e.g. \"aes256gcm16-prfsha256-x25519\"."),
    k(N, "auto", "\"add\"", "children.CHILD.start_action; auto= (ipsec.conf)",
      "start (initiate at load), route (trap policies: traffic starts it), add (load only), ignore (validate, do not load)."),
    k(N, "rekey_time", "\"4h\"", "rekey_time",
      "IKE SA rekey interval; 0 = never."),
    k(N, "dpd_delay", "\"30s\"", "dpd_delay",
      "Liveness check interval; 0 = off, else at least 1s. vpnctl set can change it."),
    k(N, "dpd_action", "\"restart\"", "children.CHILD.dpd_action",
      "What a dead peer leads to: clear, hold or restart."),
    k(N, "retransmit_timeout", "\"2s\"", "charon.retransmit_timeout (strongswan.conf)",
      "First retransmission (at least 100ms); it doubles after each. vpnctl set can change it."),
    k(N, "retransmit_tries", "5", "charon.retransmit_tries (strongswan.conf)",
      "Retransmissions before an exchange fails. vpnctl set can change it."),
    k(N, "keyingtries", "3", "keyingtries",
      "Attempts before giving up; 0 = forever. vpnctl set can change it."),
    k(N, "retry_base", "\"1s\"", "charon.retry_initiate_interval (strongswan.conf), roughly",
      "The backoff between attempts starts here and doubles. vpnctl set can change it."),
    k(N, "retry_max", "\"5m\"", "none",
      "The longest backoff between attempts. vpnctl set can change it."),
    k(N, "encap", "false", "encap",
      "Force UDP encapsulation of ESP even without NAT."),
    k(N, "max_child_sas", "64", "none",
      "CHILD SAs one IKE SA may hold (1 to 10000); past it a peer's request for a new one gets NO_ADDITIONAL_SAS (rekeys are always allowed)."),
    k(N, "fragment_size", "1280", "fragmentation; charon.fragment_size (strongswan.conf)",
      "IKE fragmentation (RFC 7383): encrypted IKE messages larger than this IP datagram size (IP and UDP headers included) go out in fragments if the peer supports it; 0 = off (not offered), else 576 to 65535. The default suits both IPv4 and IPv6 (1280 is the IPv6 minimum MTU)."),
    k(N, "children", "none", "children",
      "The connection's CHILD SAs, one table each: [connections.NAME.children.CHILD] (not in [defaults])."),
    k(C, "local_ts", "required", "local_ts",
      "Our traffic selectors: 198.19.1.0/24, 10.0.0.0/8[tcp/443], 2001:db8::/32."),
    k(C, "remote_ts", "required", "remote_ts",
      "The peer's traffic selectors."),
    k(C, "esp_proposals", "[\"default\"]", "esp_proposals",
      "ESP proposals in strongSwan syntax; add a group (\"-x25519\") for PFS on rekeys, \"-esn\" for extended sequence numbers."),
    k(C, "mode", "\"tunnel\"", "mode",
      "tunnel or transport."),
    k(C, "rekey_time", "\"1h\"", "rekey_time",
      "CHILD SA rekey interval; 0 = never."),
    k(C, "updown", "unset", "updown",
      "Script run when the CHILD SA comes up and goes down, with strongSwan's PLUTO_* environment (example: /usr/share/doc/vpnd/examples/updown-nftables.sh)."),
    k(C, "rekey_bytes", "0 (none)", "rekey_bytes",
      "Soft volume limit: rekey after this many bytes."),
    k(C, "life_bytes", "0 (none)", "life_bytes",
      "Hard volume limit: the SA is removed and DELETE sent."),
    k(C, "rekey_packets", "0 (none)", "rekey_packets",
      "Soft packet limit: rekey after this many packets."),
    k(C, "life_packets", "0 (none)", "life_packets",
      "Hard packet limit."),
    k(C, "life_time", "110% of rekey_time", "life_time",
      "Hard time limit; must be longer than rekey_time."),
    k(C, "mark_in", "unset", "mark_in",
      "XFRM mark (value[/mask], decimal or 0x hex) of the inbound SA and policies (dataplane \"xfrm\")."),
    k(C, "mark_out", "unset", "mark_out",
      "XFRM mark of the outbound SA and policy (dataplane \"xfrm\")."),
    k(C, "if_id_in", "unset", "if_id_in",
      "XFRM interface id of the inbound SA and policies: route-based VPN through an xfrm interface (dataplane \"xfrm\")."),
    k(C, "if_id_out", "unset", "if_id_out",
      "XFRM interface id of the outbound SA and policy (dataplane \"xfrm\")."),
    k(C, "pfs", "\"prefer\"", "none (strongSwan requires the group of esp_proposals)",
      "prefer: propose a KE on rekeys and drop it for a peer that refuses; require: rekey only with one (needs a group in esp_proposals)."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_in_the_code_is_documented_and_no_other() {
        for s in Section::ALL {
            let mut code = code_keys(s);
            let mut documented: Vec<&str> = docs(s).map(|d| d.key).collect();
            code.sort_unstable();
            documented.sort_unstable();
            assert_eq!(
                documented,
                code,
                "{}: KEY_DOCS must list exactly the keys the parser reads",
                s.header()
            );
        }
    }

    #[test]
    fn every_entry_says_something() {
        for d in KEY_DOCS {
            assert!(
                !d.default.is_empty() && !d.strongswan.is_empty() && !d.doc.is_empty(),
                "{}",
                d.key
            );
        }
    }
}
