//! N tunnels between two gateways, a (198.18.0.1, side 0) and b
//! (198.18.0.2, side 1), for the benchmarks that count tunnels: tunnel `i`
//! is connection `c{i}` with identities `{side}-{i}.test` and /32
//! selectors, 198.19.0.0/17 on a's side and 198.19.128.0/17 on b's.

use std::fmt::Write as _;

use crate::CharonConn;

/// Tunnel `i`'s address on `side`.
pub fn host(i: usize, side: usize) -> String {
    format!("198.19.{}.{}", (i >> 8) + 128 * side, i & 255)
}

/// (this side's address, the peer's).
pub fn addrs(side: usize) -> (&'static str, &'static str) {
    if side == 0 {
        ("198.18.0.1", "198.18.0.2")
    } else {
        ("198.18.0.2", "198.18.0.1")
    }
}

/// vpnd's config for `side` with `n` connections: `daemon` holds extra
/// `[daemon]` lines (the dataplane), `cap` the scheduler's
/// `key_computations_per_sec` (`None`: vpnd's default).
pub fn vpnd_config(n: usize, side: usize, auto: &str, daemon: &str, cap: Option<u64>) -> String {
    let (me, peer) = addrs(side);
    let mut s = format!("[daemon]\nlisten = [\"{me}\"]\n{daemon}secrets = [\"secrets.toml\"]\n\n");
    if let Some(cap) = cap {
        let _ = write!(s, "[scheduler]\nkey_computations_per_sec = {cap}\n\n");
    }
    let _ = write!(
        s,
        "[defaults]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nauto = \"{auto}\"\nproposals = [\"aes256gcm16-prfsha256-x25519\"]\nretransmit_timeout = \"10s\"\n"
    );
    for i in 0..n {
        let _ = write!(
            s,
            "\n[connections.c{i}]\nlocal_id = \"{side}-{i}.test\"\nremote_id = \"{}-{i}.test\"\n[connections.c{i}.children.net]\nlocal_ts = [\"{}/32\"]\nremote_ts = [\"{}/32\"]\nesp_proposals = [\"aes256gcm16\"]\n",
            1 - side,
            host(i, side),
            host(i, 1 - side)
        );
    }
    s
}

/// charon's connections for `side`, each with child `net{i}`, started by
/// `start` (swanctl `start_action`).
pub fn charon_conns(n: usize, side: usize, start: &str, psk: &str) -> Vec<CharonConn> {
    let (me, peer) = addrs(side);
    (0..n)
        .map(|i| {
            let mut c = CharonConn::psk(
                &format!("c{i}"),
                me,
                peer,
                &format!("{side}-{i}.test"),
                &format!("{}-{i}.test", 1 - side),
                psk,
            );
            c.child = format!("net{i}");
            c.local_ts = format!("{}/32", host(i, side));
            c.remote_ts = format!("{}/32", host(i, 1 - side));
            c.start_action = start.into();
            c
        })
        .collect()
}
