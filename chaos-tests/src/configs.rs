//! Config generators for vpnd labs.

use std::fmt::Write;

/// `n` connections between 198.18.0.1 (side "a") and 198.18.0.2 ("b"):
/// connection i protects 198.19.i.0/25 (a) === 198.19.i.128/25 (b), with
/// identities a{i}.test and b{i}.test. `defaults` goes into `[defaults]`;
/// `per_conn(i)` adds lines to connection i (they override the defaults).
pub fn pair_config(
    side: &str,
    n: usize,
    auto: &str,
    defaults: &str,
    per_conn: impl Fn(usize) -> String,
) -> String {
    let (me, peer, mine, theirs) = if side == "a" {
        ("198.18.0.1", "198.18.0.2", 0, 128)
    } else {
        ("198.18.0.2", "198.18.0.1", 128, 0)
    };
    let other = if side == "a" { "b" } else { "a" };
    let mut s = format!(
        "[daemon]\nlisten = [\"{me}\"]\ndataplane = \"none\"\nsecrets = [\"secrets.toml\"]\n\n[defaults]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nauto = \"{auto}\"\nproposals = [\"aes256gcm16-prfsha256-x25519\"]\n{defaults}\n"
    );
    if !defaults.contains("retransmit_timeout") {
        s.push_str("retransmit_timeout = \"1s\"\n");
    }
    for i in 0..n {
        let _ = write!(
            s,
            "\n[connections.c{i}]\nlocal_id = \"{side}{i}.test\"\nremote_id = \"{other}{i}.test\"\n{}\n[connections.c{i}.children.net]\nlocal_ts = [\"198.19.{i}.{mine}/25\"]\nremote_ts = [\"198.19.{i}.{theirs}/25\"]\nesp_proposals = [\"aes256gcm16\"]\n",
            per_conn(i)
        );
    }
    s
}

/// `config` without connection `name` (its table and its children's).
pub fn remove_connection(config: &str, name: &str) -> String {
    let own = format!("[connections.{name}]");
    let children = format!("[connections.{name}.");
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        if line.starts_with('[') {
            skipping = line == own || line.starts_with(&children);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `pair_config` with nothing per connection.
pub fn many(side: &str, n: usize, auto: &str, defaults: &str) -> String {
    pair_config(side, n, auto, defaults, |_| String::new())
}

/// A secrets file with one PSK for every identity.
pub fn psk_any(secret: &str) -> String {
    format!("[[psk]]\nids = [\"%any\"]\nsecret = \"{secret}\"\n")
}

/// One vpnd end of a tunnel "tun" / CHILD SA "net". The extras and the
/// retransmit timeout default to empty (none; "1s").
#[derive(Default)]
pub struct End<'a> {
    pub me: &'a str,
    pub peer: &'a str,
    pub my_id: &'a str,
    pub peer_id: &'a str,
    pub auto: &'a str,
    pub local_ts: &'a [&'a str],
    pub remote_ts: &'a [&'a str],
    pub daemon_extra: &'a str,
    /// Lines in the connection's table (e.g. `rekey_time = "20s"`).
    pub conn_extra: &'a str,
    pub child_extra: &'a str,
    /// The connection's first retransmit ("1s" by default; slower in a
    /// UML guest).
    pub retransmit_timeout: &'a str,
}

impl End<'static> {
    /// gw1's (side 1) or gw2's end of the `topology` site-to-site tunnel
    /// LAN1 <=> LAN2, identities gw1.test and gw2.test.
    pub fn site(side: u8, auto: &'static str) -> End<'static> {
        use crate::topology::{GW1, GW2, LAN1, LAN2};
        let (me, peer, my_id, peer_id, local_ts, remote_ts): (_, _, _, _, &[&str], &[&str]) =
            if side == 1 {
                (GW1, GW2, "gw1.test", "gw2.test", &[LAN1], &[LAN2])
            } else {
                (GW2, GW1, "gw2.test", "gw1.test", &[LAN2], &[LAN1])
            };
        End {
            me,
            peer,
            my_id,
            peer_id,
            auto,
            local_ts,
            remote_ts,
            ..End::default()
        }
    }
}

fn list(v: &[&str]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// vpnd's config for `e` with `dataplane = "userspace"`: connection
/// "tun", CHILD SA "net", PSK from `secrets.toml`.
pub fn userspace_end(e: &End<'_>) -> String {
    end_config("userspace", e)
}

/// vpnd's config for `e` with the kernel's XFRM dataplane
/// (`dataplane = "xfrm"`): connection "tun", CHILD SA "net".
pub fn xfrm_end(e: &End<'_>) -> String {
    end_config("xfrm", e)
}

fn end_config(dataplane: &str, e: &End<'_>) -> String {
    format!(
        r#"[daemon]
listen = ["{me}"]
dataplane = "{dataplane}"
secrets = ["secrets.toml"]
{daemon_extra}

[connections.tun]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_id = "{my_id}"
remote_id = "{peer_id}"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "{auto}"
keyingtries = 1
retransmit_timeout = "{rt}"
retransmit_tries = 3
{conn_extra}

[connections.tun.children.net]
local_ts = [{lts}]
remote_ts = [{rts}]
esp_proposals = ["aes256gcm16"]
{child_extra}
"#,
        me = e.me,
        peer = e.peer,
        my_id = e.my_id,
        peer_id = e.peer_id,
        auto = e.auto,
        lts = list(e.local_ts),
        rts = list(e.remote_ts),
        daemon_extra = e.daemon_extra,
        conn_extra = e.conn_extra,
        child_extra = e.child_extra,
        rt = if e.retransmit_timeout.is_empty() {
            "1s"
        } else {
            e.retransmit_timeout
        },
    )
}
