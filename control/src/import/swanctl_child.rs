//! swanctl.conf → vpnd, the parts below a connection: its children and
//! the `secrets` section.

use std::net::IpAddr;
use std::time::Duration;

use super::super::settings::{Kv, Section};
use super::super::values::{self, list};
use super::super::{all_have_groups, valid_name, Child, Collect, Draft, NoteKind, Psk, Val};
use super::{action, val, Action, FromChild};
use crate::config::format_duration;

/// The same for `children.<child>`.
const CHILD_UNSUPPORTED: &[(&str, &[&str], &str)] = &[
    (
        "sha256_96",
        &["no"],
        "truncated SHA-256 is not supported (vpnd uses AEAD)",
    ),
    (
        "rand_time",
        &[],
        "vpnd spreads rekeys with [scheduler] rekey_jitter",
    ),
    (
        "rand_bytes",
        &["0"],
        "random volume margins are not supported yet",
    ),
    (
        "rand_packets",
        &["0"],
        "random volume margins are not supported yet",
    ),
    ("hostaccess", &["no"], "hostaccess is not supported yet"),
    ("policies", &["yes"], "vpnd always installs policies"),
    (
        "policies_fwd_out",
        &["no"],
        "forward policies are not supported yet",
    ),
    ("ipcomp", &["no"], "IPComp is not supported"),
    (
        "inactivity",
        &["0", "0s"],
        "inactivity timeouts are not supported yet",
    ),
    ("reqid", &["0"], "vpnd assigns reqids itself"),
    (
        "priority",
        &["0"],
        "policy priorities are not supported yet",
    ),
    (
        "interface",
        &[],
        "binding policies to an interface is not supported yet",
    ),
    (
        "mark_in",
        &["0"],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "mark_in_sa",
        &["no"],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "mark_out",
        &["0"],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "set_mark_in",
        &["0"],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "set_mark_out",
        &["0"],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "if_id_in",
        &["0"],
        "XFRM interface ids need the xfrm dataplane (not built yet)",
    ),
    (
        "if_id_out",
        &["0"],
        "XFRM interface ids need the xfrm dataplane (not built yet)",
    ),
    ("label", &[], "security labels are not supported"),
    ("label_mode", &[], "security labels are not supported"),
    (
        "tfc_padding",
        &["0"],
        "traffic flow confidentiality padding is not supported yet",
    ),
    (
        "replay_window",
        &[],
        "vpnd's replay window is fixed (2048 packets)",
    ),
    ("per_cpu_sas", &["no"], "per-CPU SAs are not supported yet"),
    (
        "hw_offload",
        &["no"],
        "hardware offload needs the xfrm dataplane (not built yet)",
    ),
    ("copy_df", &["yes"], "the DF bit is always copied"),
    ("copy_ecn", &["yes"], "ECN bits are always copied"),
    (
        "copy_dscp",
        &["out"],
        "DSCP copying is not configurable yet",
    ),
    ("icmp", &[], "ICMP handling is not configurable yet"),
];

#[allow(clippy::too_many_arguments)]
pub(super) fn child(
    d: &mut Draft,
    s: &Section,
    children_key: &str,
    dynamic: (Option<IpAddr>, Option<IpAddr>),
    starts: &mut Vec<FromChild>,
    dpds: &mut Vec<FromChild>,
    out: &mut Collect,
) -> Option<Child> {
    let name = s.name.as_str();
    let prefix = format!("{children_key}.{name}");
    if !valid_name(name) {
        d.refuse(
            &s.at.file,
            s.at.line,
            &prefix,
            format!("'{name}' is not a vpnd child name (letters, digits, '.', '-' and '_')"),
        );
    }
    let mut local_ts = None;
    let mut remote_ts = None;
    let mut esp = vec!["default".to_string()];
    let mut mode = "tunnel";
    let mut rekey_time = Duration::from_secs(3600);
    let mut life_time: Option<(Duration, &Kv)> = None;
    let mut updown = None;
    let mut volume: [Option<(u64, &Kv)>; 4] = [None, None, None, None];
    const VOLUME: [&str; 4] = ["rekey_bytes", "life_bytes", "rekey_packets", "life_packets"];
    for kv in &s.kvs {
        let Some(v) = val(kv) else { continue };
        let key = format!("{prefix}.{}", kv.name);
        let (file, line) = (&kv.at.file, kv.at.line);
        match kv.name.as_str() {
            "local_ts" | "remote_ts" => {
                let dynamic = if kv.name == "local_ts" { dynamic.0 } else { dynamic.1 };
                let mut all = Vec::new();
                for t in list(v) {
                    match values::selectors(&t, dynamic) {
                        Ok(ts) => all.extend(ts),
                        Err(why) => d.refuse(file, line, &key, why),
                    }
                }
                if kv.name == "local_ts" {
                    local_ts = Some(all);
                } else {
                    remote_ts = Some(all);
                }
            }
            "esp_proposals" => {
                let (ok, bad) = values::proposals(v, true);
                for why in bad {
                    d.drop_key(file, line, &key, format!("proposal left out: {why}"));
                }
                if ok.is_empty() {
                    d.refuse(file, line, &key, "none of the ESP proposals is supported by vpnd");
                }
                esp = ok;
            }
            "ah_proposals" => d.refuse(file, line, &key, "AH is not supported by vpnd"),
            "mode" => match v {
                "tunnel" => mode = "tunnel",
                "transport" => mode = "transport",
                "transport_proxy" | "beet" | "iptfs" | "pass" | "drop" => {
                    d.refuse(file, line, &key, format!("mode = {v} is not supported by vpnd yet (tunnel or transport)"))
                }
                _ => out.error(file, line, key, format!("invalid mode '{v}': expected tunnel, transport, transport_proxy, iptfs, beet, pass or drop")),
            },
            "rekey_time" => match values::time(v) {
                Ok(t) => rekey_time = t,
                Err(why) => out.error(file, line, key, why),
            },
            "life_time" => match values::time(v) {
                Ok(t) => life_time = Some((t, kv)),
                Err(why) => out.error(file, line, key, why),
            },
            n if VOLUME.contains(&n) => match values::size(v) {
                Ok(x) => {
                    let i = VOLUME.iter().position(|k| *k == n).unwrap_or(0);
                    volume[i] = Some((x, kv));
                }
                Err(why) => out.error(file, line, key, why),
            },
            "updown" => {
                if v.contains(char::is_whitespace) {
                    d.drop_key(file, line, &key, "an updown command with arguments is not supported: vpnd runs a script by its path");
                } else {
                    updown = Some(v.to_string());
                }
            }
            "start_action" | "dpd_action" => match action(v) {
                Some(a) => {
                    let f = FromChild { value: a, file: file.clone(), line, key: key.clone() };
                    if kv.name == "start_action" {
                        starts.push(f);
                    } else {
                        dpds.push(f);
                    }
                }
                None => out.error(file, line, key, format!("invalid action '{v}': expected none, trap or start")),
            },
            "close_action" => match action(v) {
                Some(Action::None) => {}
                Some(_) => d.drop_key(file, line, &key, format!("close_action = {v}: acting when the peer closes a CHILD SA is not supported yet")),
                None => out.error(file, line, key, format!("invalid action '{v}': expected none, trap or start")),
            },
            other => match CHILD_UNSUPPORTED.iter().find(|(n, _, _)| *n == other) {
                Some((_, fine, why)) => {
                    if !fine.contains(&v) {
                        d.drop_key(file, line, &key, format!("{other} = {v}: {why}"));
                    }
                }
                None => d.ignore(file, line, &key, "unknown child key"),
            },
        }
    }
    for sub in &s.sections {
        d.ignore(
            &sub.at.file,
            sub.at.line,
            &format!("{prefix}.{}", sub.name),
            "unknown section in a child",
        );
    }
    let dyn_ts = |which: &str, dynamic: Option<IpAddr>, d: &mut Draft| match values::selectors(
        "dynamic", dynamic,
    ) {
        Ok(ts) => Some(ts),
        Err(why) => {
            d.refuse(
                &s.at.file,
                s.at.line,
                &format!("{prefix}.{which}"),
                format!("not set, so {why}"),
            );
            None
        }
    };
    let local_ts = match local_ts {
        Some(ts) => ts,
        None => dyn_ts("local_ts", dynamic.0, &mut *d)?,
    };
    let remote_ts = match remote_ts {
        Some(ts) => ts,
        None => dyn_ts("remote_ts", dynamic.1, &mut *d)?,
    };
    let mut keys: Vec<(&'static str, Val)> = vec![
        ("local_ts", Val::List(local_ts)),
        ("remote_ts", Val::List(remote_ts)),
    ];
    let pfs = all_have_groups(&esp);
    keys.push(("esp_proposals", Val::List(esp)));
    keys.push(("mode", Val::Str(mode.into())));
    keys.push(("rekey_time", Val::Str(format_duration(rekey_time))));
    if let Some((life, kv)) = life_time {
        if rekey_time.is_zero() || life > rekey_time {
            keys.push(("life_time", Val::Str(format_duration(life))));
        } else {
            d.change(&kv.at.file, kv.at.line, &format!("{prefix}.life_time"), "not longer than rekey_time, which vpnd refuses: left at vpnd's default (110% of rekey_time)");
        }
    }
    for (pair, what) in [(0usize, "bytes"), (2, "packets")] {
        let (soft, hard) = (volume[pair], volume[pair + 1]);
        if let (Some((s_, kv)), Some((h, _))) = (soft, hard) {
            if s_ != 0 && h != 0 && s_ >= h {
                d.change(
                    &kv.at.file,
                    kv.at.line,
                    &format!("{prefix}.rekey_{what}"),
                    format!("not below life_{what}, which vpnd refuses: left out"),
                );
                volume[pair] = None;
            }
        }
    }
    for (i, k) in VOLUME.iter().enumerate() {
        if let Some((n, _)) = volume[i] {
            keys.push((*k, Val::Int(n)));
        }
    }
    if let Some(u) = updown {
        keys.push(("updown", Val::Str(u)));
    }
    if pfs {
        keys.push(("pfs", Val::Str("require".into())));
    }
    Some(Child {
        name: name.to_string(),
        keys,
    })
}

/// `secrets`: `ike*` sections become pre-shared keys; the other kinds are
/// listed.
pub(super) fn secrets(s: &Section, out: &mut Collect) {
    for kv in &s.kvs {
        out.note(
            &kv.at.file,
            kv.at.line,
            None,
            format!("secrets.{}", kv.name),
            NoteKind::Ignored,
            "a key directly in 'secrets' (secrets are sections)",
        );
    }
    for sec in &s.sections {
        let key = format!("secrets.{}", sec.name);
        let (file, line) = (&sec.at.file, sec.at.line);
        if !sec.name.starts_with("ike") {
            let kind = [
                "eap", "xauth", "ntlm", "ppk", "private", "rsa", "ecdsa", "pkcs8", "pkcs12",
                "token",
            ]
            .into_iter()
            .find(|k| sec.name.starts_with(k));
            match kind {
                Some(k) => out.note(
                    file,
                    line,
                    None,
                    key,
                    NoteKind::Dropped,
                    format!("{k} secrets are not supported yet (pre-shared IKE keys only)"),
                ),
                None => out.note(
                    file,
                    line,
                    None,
                    key,
                    NoteKind::Ignored,
                    "unknown kind of secret",
                ),
            }
            continue;
        }
        let mut ids = Vec::new();
        let mut secret = None;
        let mut bad = None;
        for kv in &sec.kvs {
            let Some(v) = val(kv) else { continue };
            if kv.name == "secret" {
                secret = Some(zeroize::Zeroizing::new(v.to_string()));
            } else if kv.name.starts_with("id") {
                match values::identity(v, true) {
                    Ok(id) => ids.push(id),
                    Err(why) => bad = Some((kv, why)),
                }
            } else {
                out.note(
                    &kv.at.file,
                    kv.at.line,
                    None,
                    format!("{key}.{}", kv.name),
                    NoteKind::Ignored,
                    "unknown key in an IKE secret",
                );
            }
        }
        if let Some((kv, why)) = bad {
            out.note(
                &kv.at.file,
                kv.at.line,
                None,
                format!("{key}.{}", kv.name),
                NoteKind::Dropped,
                format!("the secret is left out: {why}"),
            );
            continue;
        }
        let Some(secret) = secret else {
            out.note(
                file,
                line,
                None,
                format!("{key}.secret"),
                NoteKind::Ignored,
                "no secret: strongSwan skips it too",
            );
            continue;
        };
        if ids.is_empty() {
            ids.push("%any".into());
        }
        out.psks.push(Psk {
            ids,
            secret,
            file: file.clone(),
            line,
        });
    }
}
