//! swanctl.conf → vpnd: `connections`, their `local`/`remote` rounds and
//! `children`, and `secrets`; `pools` and `authorities` are refused or
//! listed. Every key the file writes is handled here or reported.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::settings::{self, Kv, Section};
use super::values::{self, list};
use super::{valid_name, Collect, Draft, NoteKind, Val};
use crate::config::format_duration;

#[path = "swanctl_child.rs"]
mod child;
use child::{child, secrets};

/// The keys of `connections.<conn>` that vpnd cannot carry, with the values
/// that behave as vpnd does anyway (nothing to report then) and why.
const CONN_UNSUPPORTED: &[(&str, &[&str], &str)] = &[
    ("pull", &["yes"], "Mode Config is not supported"),
    (
        "dscp",
        &["000000"],
        "DSCP marking of IKE packets is not supported yet",
    ),
    ("mobike", &["no"], "MOBIKE is not supported yet"),
    (
        "dpd_timeout",
        &["0", "0s"],
        "IKEv1 only; vpnd uses retransmissions to time DPD out",
    ),
    (
        "childless",
        &["allow", "never"],
        "childless IKE SAs are not supported yet",
    ),
    ("send_certreq", &[], "certificates are not supported yet"),
    ("send_cert", &[], "certificates are not supported yet"),
    ("ocsp", &[], "certificates are not supported yet"),
    (
        "ppk_id",
        &[],
        "postquantum preshared keys are not supported yet",
    ),
    (
        "unique",
        &["no"],
        "uniqueness policies are not supported yet",
    ),
    (
        "reauth_time",
        &["0", "0s"],
        "reauthentication is not supported yet; vpnd rekeys the IKE SA (rekey_time)",
    ),
    ("over_time", &[], "vpnd ends an IKE SA only by rekeying it"),
    (
        "rand_time",
        &[],
        "vpnd spreads rekeys with [scheduler] rekey_jitter",
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
    ("mediation", &["no"], "mediation is not supported"),
    ("mediated_by", &[], "mediation is not supported"),
    ("mediation_peer", &[], "mediation is not supported"),
];

/// Converts swanctl.conf `text` (read from `path`) into `out`.
pub(crate) fn convert(path: &Path, text: &str, out: &mut Collect) {
    let mut missing = Vec::new();
    let raw = match settings::parse(path, text, &mut missing) {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(e);
            return;
        }
    };
    for (at, pattern) in missing {
        out.note(
            &at.file,
            at.line,
            None,
            "include",
            NoteKind::Ignored,
            format!("'{pattern}' matches no file"),
        );
    }
    let mut dangling = Vec::new();
    let root = settings::resolve(&raw, &mut dangling);
    let bases = settings::referenced(&raw);
    for (at, r) in dangling {
        out.note(
            &at.file,
            at.line,
            None,
            r.clone(),
            NoteKind::Ignored,
            format!("the section inherits from '{r}', which does not exist"),
        );
    }
    for kv in &root.kvs {
        out.note(
            &kv.at.file,
            kv.at.line,
            None,
            kv.name.clone(),
            NoteKind::Ignored,
            "unknown top-level key",
        );
    }
    for s in &root.sections {
        match s.name.as_str() {
            "connections" => {
                for kv in &s.kvs {
                    out.note(
                        &kv.at.file,
                        kv.at.line,
                        None,
                        format!("connections.{}", kv.name),
                        NoteKind::Ignored,
                        "a key directly in 'connections' (connections are sections)",
                    );
                }
                for c in &s.sections {
                    let path = format!("connections.{}", c.name);
                    if bases.contains(&path) && c.section("children").is_none() {
                        out.note(
                            &c.at.file,
                            c.at.line,
                            Some(c.name.as_str()),
                            path,
                            NoteKind::Ignored,
                            "a base other connections inherit from (':'), without children: \
                             not a connection of its own",
                        );
                        continue;
                    }
                    connection(c, out);
                }
            }
            "secrets" => secrets(s, out),
            "pools" => {
                for p in &s.sections {
                    out.note(
                        &p.at.file,
                        p.at.line,
                        None,
                        format!("pools.{}", p.name),
                        NoteKind::Refused,
                        "virtual IP address pools are not supported by vpnd yet \
                         (connections that use one are refused too)",
                    );
                }
            }
            "authorities" => {
                for a in &s.sections {
                    out.note(
                        &a.at.file,
                        a.at.line,
                        None,
                        format!("authorities.{}", a.name),
                        NoteKind::Dropped,
                        "certificate authorities are not supported yet",
                    );
                }
            }
            other => out.note(
                &s.at.file,
                s.at.line,
                None,
                other.to_string(),
                NoteKind::Ignored,
                "unknown top-level section",
            ),
        }
    }
}

/// A key's value; `None` for `key =` (unset).
fn val(kv: &Kv) -> Option<&str> {
    kv.value.as_deref()
}

/// Start and DPD actions, strongSwan's names (flags may be combined).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    None,
    Trap,
    Start,
    TrapStart,
}

fn action(s: &str) -> Option<Action> {
    let mut trap = false;
    let mut start = false;
    for part in s.split('|').map(str::trim) {
        match part {
            "start" | "restart" => start = true,
            "route" | "trap" => trap = true,
            "none" | "clear" => {}
            _ => return None,
        }
    }
    Some(match (trap, start) {
        (false, false) => Action::None,
        (true, false) => Action::Trap,
        (false, true) => Action::Start,
        (true, true) => Action::TrapStart,
    })
}

/// What the children say about connection-level behaviour.
struct FromChild {
    value: Action,
    file: std::path::PathBuf,
    line: usize,
    key: String,
}

fn connection(c: &Section, out: &mut Collect) {
    let name = c.name.as_str();
    let prefix = format!("connections.{name}");
    let mut d = Draft::new(name, &c.at.file, c.at.line);
    if !valid_name(name) {
        d.refuse(
            &c.at.file,
            c.at.line,
            &prefix,
            format!("'{name}' is not a vpnd connection name (letters, digits, '.', '-' and '_')"),
        );
    }
    let mut local_addrs: Vec<IpAddr> = Vec::new();
    let mut local_any = true;
    let mut remote_addrs: Vec<String> = vec!["%any".into()];
    let mut remote_ips: Vec<IpAddr> = Vec::new();
    let mut proposals = vec!["default".to_string()];
    let mut rekey_time = Duration::from_secs(4 * 3600);
    let mut dpd_delay = Duration::ZERO;
    let mut keyingtries = 1u32;
    let mut encap = false;
    let mut fragment_size = None;
    for kv in &c.kvs {
        let Some(v) = val(kv) else { continue };
        let key = format!("{prefix}.{}", kv.name);
        let (file, line) = (&kv.at.file, kv.at.line);
        match kv.name.as_str() {
            "version" => match v {
                "0" | "2" => {}
                "1" => d.refuse(file, line, &key, "IKEv1 is not supported by vpnd"),
                _ => out.error(
                    file,
                    line,
                    key,
                    format!("invalid IKE version '{v}': expected 0, 1 or 2"),
                ),
            },
            "local_addrs" | "remote_addrs" => {
                let mut ips = Vec::new();
                let mut any = false;
                for a in list(v) {
                    match values::address(&a) {
                        Ok(Some(ip)) => ips.push(ip),
                        Ok(None) => any = true,
                        Err(why) => d.refuse(file, line, &key, why),
                    }
                }
                if kv.name == "local_addrs" {
                    local_any = any || ips.is_empty();
                    local_addrs = if local_any { Vec::new() } else { ips };
                } else {
                    remote_ips = ips.clone();
                    remote_addrs = ips.iter().map(IpAddr::to_string).collect();
                    if any || remote_addrs.is_empty() {
                        remote_addrs.push("%any".into());
                    }
                }
            }
            "local_port" | "remote_port" => match values::number(v) {
                Ok(500) => {}
                Ok(_) => d.drop_key(
                    file,
                    line,
                    &key,
                    "vpnd uses ports 500 and 4500 (not configurable per connection yet)",
                ),
                Err(why) => out.error(file, line, key, why),
            },
            "proposals" => {
                let (ok, bad) = values::proposals(v, false);
                for why in bad {
                    d.drop_key(file, line, &key, format!("proposal left out: {why}"));
                }
                if ok.is_empty() {
                    d.refuse(
                        file,
                        line,
                        &key,
                        "none of the IKE proposals is supported by vpnd",
                    );
                }
                proposals = ok;
            }
            "vips" => d.refuse(
                file,
                line,
                &key,
                "virtual IPs are not supported by vpnd yet",
            ),
            "pools" => d.refuse(
                file,
                line,
                &key,
                "virtual IP address pools are not supported by vpnd yet",
            ),
            "aggressive" => match values::boolean(v) {
                Ok(false) => {}
                Ok(true) => d.refuse(
                    file,
                    line,
                    &key,
                    "Aggressive Mode is IKEv1, which vpnd does not support",
                ),
                Err(why) => out.error(file, line, key, why),
            },
            "ppk_required" => match values::boolean(v) {
                Ok(false) => {}
                Ok(true) => d.refuse(
                    file,
                    line,
                    &key,
                    "postquantum preshared keys are not supported yet",
                ),
                Err(why) => out.error(file, line, key, why),
            },
            "encap" => match values::boolean(v) {
                Ok(b) => encap = b,
                Err(why) => out.error(file, line, key, why),
            },
            "fragmentation" => match v {
                "yes" => {}
                "no" => fragment_size = Some(0),
                "accept" => d.change(file, line, &key, "fragmentation = accept: vpnd has no accept-only mode; it announces fragmentation and fragments messages over fragment_size (1280)"),
                "force" => d.change(file, line, &key, "fragmentation = force: vpnd fragments only for a peer that announced support"),
                _ => out.error(
                    file,
                    line,
                    key,
                    format!("invalid fragmentation '{v}': expected yes, accept, force or no"),
                ),
            },
            "dpd_delay" => match values::time(v) {
                Ok(t) => dpd_delay = t,
                Err(why) => out.error(file, line, key, why),
            },
            "rekey_time" => match values::time(v) {
                Ok(t) => rekey_time = t,
                Err(why) => out.error(file, line, key, why),
            },
            "keyingtries" => match values::number(v) {
                Ok(n) => keyingtries = n,
                Err(why) => out.error(file, line, key, why),
            },
            other => match CONN_UNSUPPORTED.iter().find(|(n, _, _)| *n == other) {
                Some((_, fine, why)) => {
                    if !fine.contains(&v) {
                        d.drop_key(file, line, &key, format!("{other} = {v}: {why}"));
                    }
                }
                None => d.ignore(file, line, &key, "unknown connection key"),
            },
        }
    }

    // Authentication rounds.
    let locals: Vec<&Section> = c
        .sections
        .iter()
        .filter(|s| s.name.starts_with("local"))
        .collect();
    let remotes: Vec<&Section> = c
        .sections
        .iter()
        .filter(|s| s.name.starts_with("remote"))
        .collect();
    let mut local_id = None;
    let mut remote_id = "%any".to_string();
    for (side, rounds) in [("local", &locals), ("remote", &remotes)] {
        match rounds.as_slice() {
            [] => d.refuse(
                &c.at.file,
                c.at.line,
                &format!("{prefix}.{side}"),
                format!("no {side} section: strongSwan's default authentication is pubkey (certificates), which vpnd does not support yet"),
            ),
            [one] => {
                let id = auth_round(&mut d, one, &prefix, side == "remote");
                match (side, id) {
                    ("local", id) => local_id = id,
                    (_, Some(id)) => remote_id = id,
                    _ => {}
                }
            }
            [_, second, ..] => d.refuse(
                &second.at.file,
                second.at.line,
                &format!("{prefix}.{}", second.name),
                "several authentication rounds are not supported by vpnd yet",
            ),
        }
    }
    let local_id = match local_id {
        Some(id) => Some(id),
        None => match local_addrs.as_slice() {
            [one] => Some(one.to_string()),
            _ => {
                if !locals.is_empty() {
                    let l = locals[0];
                    d.refuse(
                        &l.at.file,
                        l.at.line,
                        &format!("{prefix}.{}.id", l.name),
                        "no local id: strongSwan then uses the address it sends from, but vpnd needs \
                         an identity; set id, or give local_addrs one address",
                    );
                }
                None
            }
        },
    };

    // Children.
    let local_dyn = match local_addrs.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let remote_dyn = match remote_ips.as_slice() {
        [one] if !remote_addrs.iter().any(|a| a == "%any") => Some(*one),
        _ => None,
    };
    let mut starts = Vec::new();
    let mut dpds = Vec::new();
    let mut have_children = false;
    for s in &c.sections {
        let key = format!("{prefix}.{}", s.name);
        if s.name == "children" {
            for kv in &s.kvs {
                d.ignore(
                    &kv.at.file,
                    kv.at.line,
                    &format!("{key}.{}", kv.name),
                    "a key directly in 'children' (children are sections)",
                );
            }
            for ch in &s.sections {
                have_children = true;
                if let Some(child) = child(
                    &mut d,
                    ch,
                    &key,
                    (local_dyn, remote_dyn),
                    &mut starts,
                    &mut dpds,
                    out,
                ) {
                    d.conn.children.push(child);
                }
            }
        } else if !s.name.starts_with("local") && !s.name.starts_with("remote") {
            d.ignore(
                &s.at.file,
                s.at.line,
                &key,
                "unknown section in a connection",
            );
        }
    }
    if !have_children {
        d.refuse(
            &c.at.file,
            c.at.line,
            &format!("{prefix}.children"),
            "no children: vpnd needs at least one CHILD SA per connection (childless IKE SAs are not supported yet)",
        );
    }

    // Connection-level actions from the children.
    let auto = merge_actions(&mut d, &starts, "start_action", "auto");
    let mut auto = match auto {
        Action::None => "add",
        Action::Trap => "route",
        Action::Start | Action::TrapStart => "start",
    };
    if auto != "add" && remote_addrs.iter().all(|a| a == "%any") {
        if let Some(f) = starts.iter().find(|f| f.value != Action::None) {
            d.change(&f.file, f.line, &f.key, "remote_addrs is %any, so there is nobody to initiate to: the connection is loaded with auto = \"add\" (strongSwan cannot initiate it either)");
        }
        auto = "add";
    }
    let dpd_action = match merge_actions(&mut d, &dpds, "dpd_action", "dpd_action") {
        Action::None => "clear",
        Action::Trap => "hold",
        Action::Start | Action::TrapStart => "restart",
    };

    if d.is_refused() {
        d.finish(out);
        return;
    }
    d.set(
        "local_addrs",
        Val::List(if local_any {
            vec!["%any".into()]
        } else {
            local_addrs.iter().map(IpAddr::to_string).collect()
        }),
    );
    d.set("remote_addrs", Val::List(remote_addrs));
    d.set("local_id", Val::Str(local_id.unwrap_or_default()));
    d.set("remote_id", Val::Str(remote_id));
    d.set("auth", Val::Str("psk".into()));
    d.set("proposals", Val::List(proposals));
    d.set("auto", Val::Str(auto.into()));
    d.set("rekey_time", Val::Str(format_duration(rekey_time)));
    d.set("dpd_delay", Val::Str(format_duration(dpd_delay)));
    d.set("dpd_action", Val::Str(dpd_action.into()));
    d.set("keyingtries", Val::Int(keyingtries.into()));
    d.set("encap", Val::Bool(encap));
    if let Some(f) = fragment_size {
        d.set("fragment_size", Val::Int(f));
    }
    d.finish(out);
}

/// vpnd's `auto` and `dpd_action` are per connection, strongSwan's per
/// child: they agree, or the strongest wins and the report says so.
fn merge_actions(d: &mut Draft, from: &[FromChild], what: &str, ours: &str) -> Action {
    let Some(best) = from.iter().max_by_key(|f| f.value) else {
        return Action::None;
    };
    if from.iter().any(|f| f.value != best.value) {
        d.change(
            &best.file,
            best.line,
            &best.key,
            format!("the children's {what} differ; vpnd's {ours} is per connection and follows this one"),
        );
    } else if best.value == Action::TrapStart {
        d.change(
            &best.file,
            best.line,
            &best.key,
            format!("{what} = trap|start: vpnd's {ours} takes one, and starts the connection"),
        );
    }
    best.value
}

/// One `local*` or `remote*` round: its identity (if written); refuses
/// what vpnd cannot authenticate with.
fn auth_round(d: &mut Draft, s: &Section, prefix: &str, remote: bool) -> Option<String> {
    let sp = format!("{prefix}.{}", s.name);
    let mut id = None;
    let mut auth_seen = false;
    for kv in &s.kvs {
        let Some(v) = val(kv) else { continue };
        let key = format!("{sp}.{}", kv.name);
        let (file, line) = (&kv.at.file, kv.at.line);
        match kv.name.as_str() {
            "auth" => {
                auth_seen = true;
                if v != "psk" {
                    d.refuse(file, line, &key, format!("auth = {v} is not supported by vpnd yet (psk only)"));
                }
            }
            "id" => match values::identity(v, remote) {
                Ok(i) => id = Some(i),
                Err(why) => d.refuse(file, line, &key, why),
            },
            "groups" => d.refuse(file, line, &key, "group membership constraints are not supported yet (dropping them would accept more peers)"),
            "round" => {}
            "certs" | "cacerts" | "pubkeys" | "cert_policy" | "ca_id" | "revocation" => {
                d.drop_key(file, line, &key, "certificates are not supported yet");
            }
            "eap_id" | "aaa_id" | "xauth_id" => d.drop_key(file, line, &key, "EAP and XAuth are not supported yet"),
            _ => d.ignore(file, line, &key, "unknown key in an authentication round"),
        }
    }
    for sub in &s.sections {
        let key = format!("{sp}.{}", sub.name);
        if sub.name.starts_with("cert") || sub.name.starts_with("cacert") {
            d.drop_key(
                &sub.at.file,
                sub.at.line,
                &key,
                "certificates are not supported yet",
            );
        } else {
            d.ignore(
                &sub.at.file,
                sub.at.line,
                &key,
                "unknown section in an authentication round",
            );
        }
    }
    if !auth_seen {
        d.refuse(
            &s.at.file,
            s.at.line,
            &format!("{sp}.auth"),
            "auth is not set: strongSwan's default is pubkey (certificates), which vpnd does not support yet",
        );
    }
    id
}

#[cfg(test)]
#[path = "swanctl_tests.rs"]
mod tests;
