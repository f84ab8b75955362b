//! ipsec.conf (with ipsec.secrets) → vpnd.
//!
//! ipsec.conf, as strongSwan's starter reads it: a section starts at the
//! beginning of a line (`config setup`, `conn NAME`, `ca NAME`), its
//! settings are the indented `key=value` lines after it; `#` starts a
//! comment; `"..."` quotes; `include PATTERN` reads more files (relative to
//! the including one). A conn given twice is one (later keys win). A conn
//! inherits from the conns its `also=` names (the later `also=` first,
//! depth first, each conn once, at its last place), and every conn from
//! `conn %default`. A missing or looping `also=` makes the starter refuse
//! the file: here it is an error with its line.
//!
//! `left` is taken as the local side (strongSwan picks the side whose
//! address is on the host; the report says so once). A conn that is only
//! a base for others (named by an `also=`, without `auto=`) is not
//! converted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::settings::Kv;
use super::values::{self, list};
use super::{all_have_groups, valid_name, Child, Collect, Draft, ImportError, NoteKind, Psk, Val};
use crate::config::format_duration;

use super::ipsec_parse::{self as parse, Kind, Sec};

/// Keywords vpnd cannot carry, the values that behave as vpnd does, why.
const UNSUPPORTED: &[(&str, &[&str], &str)] = &[
    ("mobike", &["no"], "MOBIKE is not supported yet"),
    ("compress", &["no"], "IPComp is not supported"),
    ("installpolicy", &["yes"], "vpnd always installs policies"),
    (
        "ikedscp",
        &["000000"],
        "DSCP marking of IKE packets is not supported yet",
    ),
    (
        "rekeyfuzz",
        &[],
        "vpnd spreads rekeys with [scheduler] rekey_jitter",
    ),
    (
        "dpdtimeout",
        &[],
        "IKEv1 only; vpnd uses retransmissions to time DPD out",
    ),
    (
        "closeaction",
        &["none"],
        "acting when the peer closes a CHILD SA is not supported yet",
    ),
    (
        "inactivity",
        &["0", "0s"],
        "inactivity timeouts are not supported yet",
    ),
    ("reqid", &["0"], "vpnd assigns reqids itself"),
    (
        "replay_window",
        &[],
        "vpnd's replay window is fixed (2048 packets)",
    ),
    (
        "mark",
        &[],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "mark_in",
        &[],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "mark_out",
        &[],
        "XFRM marks need the xfrm dataplane (not built yet)",
    ),
    (
        "tfc",
        &[],
        "traffic flow confidentiality padding is not supported yet",
    ),
    (
        "sha256_96",
        &["no"],
        "truncated SHA-256 is not supported (vpnd uses AEAD)",
    ),
    ("modeconfig", &[], "Mode Config is not supported"),
    ("xauth", &[], "XAuth is not supported"),
    ("xauth_identity", &[], "XAuth is not supported"),
    ("eap_identity", &[], "EAP is not supported yet"),
    ("aaa_identity", &[], "EAP is not supported yet"),
    ("mediation", &["no"], "mediation is not supported"),
    ("mediated_by", &[], "mediation is not supported"),
    ("me_peerid", &[], "mediation is not supported"),
    ("uniqueids", &[], "a `config setup` setting"),
    (
        "leftikeport",
        &["500"],
        "vpnd uses ports 500 and 4500 (not configurable per connection yet)",
    ),
    (
        "rightikeport",
        &["500"],
        "vpnd uses ports 500 and 4500 (not configurable per connection yet)",
    ),
    (
        "leftfirewall",
        &["no"],
        "the default updown script's firewall rules are not supported: give leftupdown a script",
    ),
    ("lefthostaccess", &["no"], "hostaccess is not supported yet"),
    ("leftallowany", &["no"], "leftallowany is not supported"),
    (
        "leftdns",
        &[],
        "DNS servers via configuration payloads are not supported yet",
    ),
    (
        "rightdns",
        &[],
        "DNS servers via configuration payloads are not supported yet",
    ),
    ("leftcert", &[], "certificates are not supported yet"),
    ("rightcert", &[], "certificates are not supported yet"),
    ("leftca", &[], "certificates are not supported yet"),
    ("rightca", &[], "certificates are not supported yet"),
    ("leftsendcert", &[], "certificates are not supported yet"),
    ("rightsendcert", &[], "certificates are not supported yet"),
    ("leftcertpolicy", &[], "certificates are not supported yet"),
    ("rightcertpolicy", &[], "certificates are not supported yet"),
    ("leftsigkey", &[], "raw public keys are not supported yet"),
    ("rightsigkey", &[], "raw public keys are not supported yet"),
    (
        "leftrsasigkey",
        &[],
        "raw public keys are not supported yet",
    ),
    (
        "rightrsasigkey",
        &[],
        "raw public keys are not supported yet",
    ),
];

/// Keywords of the remote side that matter only when `right` is local:
/// ignored, as strongSwan ignores the other side's.
const OTHER_SIDE: &[&str] = &[
    "rightupdown",
    "rightfirewall",
    "righthostaccess",
    "rightallowany",
];

/// Keywords that make a connection impossible for vpnd.
const REFUSED: &[(&str, &str)] = &[
    ("leftsourceip", "virtual IPs are not supported by vpnd yet"),
    ("rightsourceip", "virtual IP address pools are not supported by vpnd yet"),
    ("ah", "AH is not supported by vpnd"),
    ("leftauth2", "several authentication rounds are not supported by vpnd yet"),
    ("rightauth2", "several authentication rounds are not supported by vpnd yet"),
    ("leftid2", "several authentication rounds are not supported by vpnd yet"),
    ("rightid2", "several authentication rounds are not supported by vpnd yet"),
    ("leftcert2", "several authentication rounds are not supported by vpnd yet"),
    ("rightcert2", "several authentication rounds are not supported by vpnd yet"),
    ("leftca2", "several authentication rounds are not supported by vpnd yet"),
    ("rightca2", "several authentication rounds are not supported by vpnd yet"),
    ("leftgroups", "group membership constraints are not supported yet"),
    ("rightgroups", "group membership constraints are not supported yet (dropping them would accept more peers)"),
    ("leftgroups2", "several authentication rounds are not supported by vpnd yet"),
    ("rightgroups2", "several authentication rounds are not supported by vpnd yet"),
];

/// Keywords strongSwan still reads but ignores.
const DEPRECATED: &[&str] = &[
    "pfs",
    "pfsgroup",
    "eap",
    "leftnexthop",
    "rightnexthop",
    "ldaphost",
    "ldapbase",
];

/// Converts ipsec.conf `text` (read from `path`) and `secrets` into `out`.
pub(crate) fn convert(path: &Path, text: &str, secrets: Option<&Path>, out: &mut Collect) {
    let mut ignored = Vec::new();
    let sections = match parse::parse(path, text, &mut ignored) {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(e);
            return;
        }
    };
    for (at, key, why) in ignored {
        out.note(&at.file, at.line, None, key, NoteKind::Ignored, why);
    }
    let mut conns: Vec<&Sec> = Vec::new();
    for s in &sections {
        match s.kind {
            Kind::Setup => {
                for kv in &s.settings {
                    out.note(
                        &kv.at.file,
                        kv.at.line,
                        None,
                        format!("config setup: {}", kv.name),
                        NoteKind::Dropped,
                        "daemon settings are not converted (see [daemon] in vpnd.toml)",
                    );
                }
            }
            Kind::Ca => out.note(
                &s.at.file,
                s.at.line,
                None,
                format!("ca {}", s.name),
                NoteKind::Dropped,
                "certificate authorities are not supported yet",
            ),
            Kind::Conn => conns.push(s),
        }
    }
    let by_name: HashMap<&str, &Sec> = conns.iter().map(|s| (s.name.as_str(), *s)).collect();
    let default = by_name.get("%default").copied();
    let bases: Vec<&str> = conns
        .iter()
        .flat_map(|s| s.also.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut first = true;
    for s in conns.iter().filter(|s| s.name != "%default") {
        let chain = match linearize(s, &by_name, &mut Vec::new()) {
            Ok(mut c) => {
                c.extend(default);
                c
            }
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        let view = View { chain };
        if bases.contains(&s.name.as_str()) && view.get("auto").is_none() {
            out.note(
                &s.at.file,
                s.at.line,
                Some(s.name.as_str()),
                format!("conn {}", s.name),
                NoteKind::Ignored,
                "a base for also= without auto=: not a connection of its own",
            );
            continue;
        }
        if first {
            out.note(&s.at.file, s.at.line, None, format!("conn {}", s.name), NoteKind::Changed, "left is taken as the local side in every conn (strongSwan picks the side whose address is on this host)");
            first = false;
        }
        connection(s, &view, out);
    }
    if let Some(sp) = secrets {
        read_secrets(sp, out);
    }
}

/// A conn with what it inherits: itself first, then its parents, most
/// important first.
struct View<'a> {
    chain: Vec<&'a Sec>,
}

impl<'a> View<'a> {
    /// The setting that decides `key`: the first in the chain that writes it.
    fn get(&self, key: &str) -> Option<&'a Kv> {
        self.chain
            .iter()
            .find_map(|s| s.settings.iter().find(|k| k.name == key))
    }

    /// Its value; `None` when unset or written empty.
    fn value(&self, key: &str) -> Option<(&'a str, &'a Kv)> {
        self.get(key)
            .and_then(|k| k.value.as_deref().map(|v| (v, k)))
    }

    /// Every key set anywhere in the chain, once, as decided.
    fn keys(&self) -> Vec<&'a Kv> {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for s in &self.chain {
            for kv in &s.settings {
                if !seen.contains(&kv.name.as_str()) {
                    seen.push(&kv.name);
                    out.push(kv);
                }
            }
        }
        out
    }
}

/// The parents of `s` in order of importance (the starter's linearization:
/// later `also=` first, depth first, each at its last occurrence), `s`
/// itself first.
fn linearize<'a>(
    s: &'a Sec,
    by_name: &HashMap<&str, &'a Sec>,
    stack: &mut Vec<String>,
) -> Result<Vec<&'a Sec>, ImportError> {
    stack.push(s.name.clone());
    let mut parents: Vec<&Sec> = Vec::new();
    for (name, at) in s.also.iter().rev() {
        let Some(p) = by_name.get(name.as_str()).copied() else {
            return Err(ImportError::Value {
                file: at.file.clone(),
                line: at.line,
                key: format!("conn {}: also", s.name),
                message: format!("no conn named '{name}'"),
            });
        };
        if stack.contains(&p.name) {
            return Err(ImportError::Value {
                file: at.file.clone(),
                line: at.line,
                key: format!("conn {}: also", s.name),
                message: format!("'{name}' includes this conn again (a loop)"),
            });
        }
        parents.extend(linearize(p, by_name, stack)?);
    }
    stack.pop();
    let mut out = vec![s];
    for (i, p) in parents.iter().enumerate() {
        if !parents[i + 1..].iter().any(|q| q.name == p.name) {
            out.push(p);
        }
    }
    Ok(out)
}

fn connection(s: &Sec, view: &View<'_>, out: &mut Collect) {
    let name = s.name.as_str();
    let pre = format!("conn {name}");
    let mut d = Draft::new(name, &s.at.file, s.at.line);
    let key = |k: &str| format!("{pre}: {k}");
    if !valid_name(name) {
        d.refuse(
            &s.at.file,
            s.at.line,
            &pre,
            format!("'{name}' is not a vpnd connection name (letters, digits, '.', '-' and '_')"),
        );
    }
    let get = |k: &str| view.value(k);

    // Addresses: left is local.
    let addrs = |k: &str, d: &mut Draft| -> (Vec<IpAddr>, bool) {
        let Some((v, kv)) = get(k) else {
            return (Vec::new(), true);
        };
        let mut ips = Vec::new();
        let mut any = false;
        for a in list(v) {
            let a = if a == "%defaultroute" {
                "%any"
            } else {
                a.as_str()
            };
            match values::address(a) {
                Ok(Some(ip)) => ips.push(ip),
                Ok(None) => any = true,
                Err(why) => d.refuse(&kv.at.file, kv.at.line, &key(k), why),
            }
        }
        let any = any || ips.is_empty();
        (ips, any)
    };
    let (left, left_any) = addrs("left", &mut d);
    let (right, right_any) = addrs("right", &mut d);
    if get("right").is_none() {
        d.refuse(
            &s.at.file,
            s.at.line,
            &key("right"),
            "not set: the peer's address is needed (right=%any for any)",
        );
    }
    let one = |ips: &[IpAddr], any: bool| match ips {
        [a] if !any => Some(*a),
        _ => None,
    };
    let (left_one, right_one) = (one(&left[..], left_any), one(&right[..], right_any));

    // Identities.
    let local_id = match get("leftid") {
        Some((v, kv)) => values::identity(v, false)
            .map_err(|why| d.refuse(&kv.at.file, kv.at.line, &key("leftid"), why))
            .ok(),
        None => match left_one {
            Some(a) => Some(a.to_string()),
            None => {
                d.refuse(&s.at.file, s.at.line, &key("leftid"), "not set, and left is not one address: strongSwan then uses the address it sends from, but vpnd needs an identity");
                None
            }
        },
    };
    let remote_id = match get("rightid") {
        Some((v, kv)) => values::identity(v, true)
            .map_err(|why| d.refuse(&kv.at.file, kv.at.line, &key("rightid"), why))
            .ok(),
        None => Some(right_one.map_or("%any".to_string(), |a| a.to_string())),
    };

    // Authentication.
    let authby = get("authby");
    for (side, k) in [("left", "leftauth"), ("right", "rightauth")] {
        let (v, kv, what) = match (get(k), authby) {
            (Some((v, kv)), _) => (v, Some(kv), k),
            (None, Some((v, kv))) => (v, Some(kv), "authby"),
            (None, None) => ("pubkey", None, "authby"),
        };
        let psk = matches!(v, "psk" | "secret");
        if !psk {
            match kv {
                Some(kv) => d.refuse(&kv.at.file, kv.at.line, &key(what), format!("{what}={v} ({side}) is not supported by vpnd yet (psk only)")),
                None => d.refuse(&s.at.file, s.at.line, &key("authby"), "not set: strongSwan's default is pubkey (certificates), which vpnd does not support yet"),
            }
            break;
        }
    }

    // Everything else, each key once.
    let mut ike = vec!["default".to_string()];
    let mut esp = vec!["default".to_string()];
    let mut auto = "ignore";
    let mut keyingtries = 3u32;
    let mut dpd_delay = Duration::from_secs(30);
    let mut dpd_action = "none";
    let mut ike_life = Duration::from_secs(10800);
    let mut life = Duration::from_secs(3600);
    let mut margin = Duration::from_secs(540);
    let mut rekey = true;
    let mut bytes = (0u64, 0u64);
    let mut packets = (0u64, 0u64);
    let mut mode = "tunnel";
    let mut encap = false;
    let mut fragment_size = None;
    let mut updown = None;
    for kv in view.keys() {
        let Some(v) = kv.value.as_deref() else {
            continue;
        };
        let k = kv.name.as_str();
        let kk = key(k);
        let (file, line) = (&kv.at.file, kv.at.line);
        let mut bad = |why: String| out.error(file, line, kk.clone(), why);
        match k {
            "left" | "right" | "leftid" | "rightid" | "authby" | "leftauth" | "rightauth" | "also" => {}
            "leftsubnet" | "rightsubnet" | "leftsubnetwithin" | "rightsubnetwithin" | "leftprotoport" | "rightprotoport" => {}
            "auto" => match v {
                "start" | "route" | "add" | "ignore" => auto = v,
                _ => bad(format!("invalid value '{v}': expected start, route, add or ignore")),
            },
            "keyexchange" => match v {
                "ikev2" | "ike" => {}
                "ikev1" => d.refuse(file, line, &kk, "IKEv1 is not supported by vpnd"),
                _ => bad(format!("invalid value '{v}': expected ike, ikev1 or ikev2")),
            },
            "aggressive" => match values::boolean(v) {
                Ok(false) => {}
                Ok(true) => d.refuse(file, line, &kk, "Aggressive Mode is IKEv1, which vpnd does not support"),
                Err(why) => bad(why),
            },
            "ike" | "esp" => {
                let is_esp = k == "esp";
                let strict = v.trim_end().ends_with('!');
                let (ok, dropped) = values::proposals(v, is_esp);
                for why in &dropped {
                    d.drop_key(file, line, &kk, format!("proposal left out: {why}"));
                }
                let list = if ok.is_empty() && strict {
                    d.refuse(file, line, &kk, format!("none of the {} proposals is supported by vpnd", k.to_uppercase()));
                    Vec::new()
                } else if ok.is_empty() {
                    d.change(file, line, &kk, "none of these proposals is supported by vpnd; without '!' strongSwan adds its defaults, so vpnd's defaults (\"default\") are used");
                    vec!["default".into()]
                } else {
                    if !strict {
                        d.change(file, line, &kk, "without a trailing '!' strongSwan also accepts its default proposals; vpnd accepts only these");
                    }
                    ok
                };
                if is_esp {
                    esp = list;
                } else {
                    ike = list;
                }
            }
            "keyingtries" => match v {
                "%forever" => keyingtries = 0,
                _ => match values::number(v) {
                    Ok(n) => keyingtries = n,
                    Err(why) => bad(why),
                },
            },
            "dpddelay" => match values::time(v) {
                Ok(t) => dpd_delay = t,
                Err(why) => bad(why),
            },
            "dpdaction" => match v {
                "none" | "clear" | "hold" | "restart" => dpd_action = v,
                _ => bad(format!("invalid value '{v}': expected none, clear, hold or restart")),
            },
            "ikelifetime" | "lifetime" | "keylife" | "rekeymargin" | "margintime" => match values::time(v) {
                Ok(t) => match k {
                    "ikelifetime" => ike_life = t,
                    "rekeymargin" | "margintime" => margin = t,
                    _ => life = t,
                },
                Err(why) => bad(why),
            },
            "lifebytes" | "marginbytes" | "lifepackets" | "marginpackets" => match values::size(v) {
                Ok(n) => match k {
                    "lifebytes" => bytes.0 = n,
                    "marginbytes" => bytes.1 = n,
                    "lifepackets" => packets.0 = n,
                    _ => packets.1 = n,
                },
                Err(why) => bad(why),
            },
            "rekey" => match values::boolean(v) {
                Ok(b) => rekey = b,
                Err(why) => bad(why),
            },
            "reauth" => match values::boolean(v) {
                Ok(true) => d.change(file, line, &kk, "vpnd rekeys the IKE SA instead of reauthenticating it"),
                Ok(false) => {}
                Err(why) => bad(why),
            },
            "type" => match v {
                "tunnel" => mode = "tunnel",
                "transport" => mode = "transport",
                "transport_proxy" | "passthrough" | "pass" | "drop" | "reject" => d.refuse(file, line, &kk, format!("type={v} is not supported by vpnd yet (tunnel or transport)")),
                _ => bad(format!("invalid value '{v}': expected tunnel, transport, transport_proxy, passthrough or drop")),
            },
            "forceencaps" => match values::boolean(v) {
                Ok(b) => encap = b,
                Err(why) => bad(why),
            },
            "fragmentation" => match v {
                "yes" => {}
                "no" => fragment_size = Some(0),
                "accept" => d.change(file, line, &kk, "fragmentation = accept: vpnd has no accept-only mode; it announces fragmentation and fragments messages over fragment_size (1280)"),
                "force" => d.change(file, line, &kk, "fragmentation = force: vpnd fragments only for a peer that announced support"),
                _ => bad(format!("invalid value '{v}': expected yes, accept, force or no")),
            },
            "leftupdown" => {
                if v.contains(char::is_whitespace) {
                    d.drop_key(file, line, &kk, "an updown command with arguments is not supported: vpnd runs a script by its path");
                } else {
                    updown = Some(v.to_string());
                }
            }
            _ if OTHER_SIDE.contains(&k) => d.ignore(file, line, &kk, "applies only where right is the local side"),
            _ if DEPRECATED.contains(&k) => d.ignore(file, line, &kk, "deprecated; strongSwan ignores it"),
            _ => {
                if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == k) {
                    d.refuse(file, line, &kk, *why);
                } else if let Some((_, fine, why)) = UNSUPPORTED.iter().find(|(n, _, _)| *n == k) {
                    if !fine.contains(&v) {
                        d.drop_key(file, line, &kk, format!("{k}={v}: {why}"));
                    }
                } else {
                    d.ignore(file, line, &kk, "unknown keyword");
                }
            }
        }
    }

    // Traffic selectors: subnets, else the side's own address.
    let ts = |side: &str, one: Option<IpAddr>, d: &mut Draft| -> Option<Vec<String>> {
        let sub = format!("{side}subnet");
        let pp = get(&format!("{side}protoport")).map(|(v, _)| format!("[{v}]"));
        let (items, kv) = match get(&sub).or_else(|| get(&format!("{side}subnetwithin"))) {
            Some((v, kv)) => (list(v), Some(kv)),
            None => (vec!["dynamic".to_string()], None),
        };
        let mut outv = Vec::new();
        for it in items {
            let it = match (&pp, it.contains('[')) {
                (Some(p), false) => format!("{it}{p}"),
                _ => it,
            };
            match values::selectors(&it, one) {
                Ok(t) => outv.extend(t),
                Err(why) => {
                    let (file, line) =
                        kv.map_or((&s.at.file, s.at.line), |kv| (&kv.at.file, kv.at.line));
                    let why = if kv.is_none() {
                        format!("not set, so {why}")
                    } else {
                        why
                    };
                    d.refuse(file, line, &key(&sub), why);
                    return None;
                }
            }
        }
        Some(outv)
    };
    let local_ts = ts("left", left_one, &mut d);
    let remote_ts = ts("right", right_one, &mut d);

    if auto != "add" && auto != "ignore" && right_one.is_none() && right.is_empty() {
        if let Some((_, kv)) = get("auto") {
            d.change(&kv.at.file, kv.at.line, &key("auto"), "right is %any, so there is nobody to initiate to: loaded with auto=add (strongSwan cannot initiate it either)");
        }
        auto = "add";
    }
    if d.is_refused() {
        d.finish(out);
        return;
    }
    let dpd_off = dpd_action == "none";
    let sub = |a: Duration, b: Duration| a.saturating_sub(b);
    let ike_rekey = if rekey {
        sub(ike_life, margin)
    } else {
        Duration::ZERO
    };
    let child_rekey = if rekey {
        sub(life, margin)
    } else {
        Duration::ZERO
    };
    d.set(
        "local_addrs",
        Val::List(if left_any {
            vec!["%any".into()]
        } else {
            left.iter().map(IpAddr::to_string).collect()
        }),
    );
    let mut remote: Vec<String> = right.iter().map(IpAddr::to_string).collect();
    if right_any {
        remote.push("%any".into());
    }
    d.set("remote_addrs", Val::List(remote));
    d.set("local_id", Val::Str(local_id.unwrap_or_default()));
    d.set("remote_id", Val::Str(remote_id.unwrap_or_default()));
    d.set("auth", Val::Str("psk".into()));
    d.set("proposals", Val::List(ike));
    d.set("auto", Val::Str(auto.into()));
    d.set("rekey_time", Val::Str(format_duration(ike_rekey)));
    d.set(
        "dpd_delay",
        Val::Str(format_duration(if dpd_off {
            Duration::ZERO
        } else {
            dpd_delay
        })),
    );
    d.set(
        "dpd_action",
        Val::Str(if dpd_off { "clear" } else { dpd_action }.into()),
    );
    d.set("keyingtries", Val::Int(keyingtries.into()));
    d.set("encap", Val::Bool(encap));
    if let Some(f) = fragment_size {
        d.set("fragment_size", Val::Int(f));
    }
    let pfs = all_have_groups(&esp);
    let mut keys: Vec<(&'static str, Val)> = vec![
        ("local_ts", Val::List(local_ts.unwrap_or_default())),
        ("remote_ts", Val::List(remote_ts.unwrap_or_default())),
        ("esp_proposals", Val::List(esp)),
        ("mode", Val::Str(mode.into())),
        ("rekey_time", Val::Str(format_duration(child_rekey))),
    ];
    if child_rekey.is_zero() || life > child_rekey {
        keys.push(("life_time", Val::Str(format_duration(life))));
    }
    for ((total, spare), (soft, hard)) in [
        (bytes, ("rekey_bytes", "life_bytes")),
        (packets, ("rekey_packets", "life_packets")),
    ] {
        if total > 0 {
            let r = if rekey {
                total.saturating_sub(spare)
            } else {
                0
            };
            if r > 0 && r < total {
                keys.push((soft, Val::Int(r)));
            }
            keys.push((hard, Val::Int(total)));
        }
    }
    if let Some(u) = updown {
        keys.push(("updown", Val::Str(u)));
    }
    if pfs {
        keys.push(("pfs", Val::Str("require".into())));
    }
    d.conn.children.push(Child {
        name: name.to_string(),
        keys,
    });
    d.finish(out);
}

/// ipsec.secrets: `[ids] : PSK "secret"` lines become pre-shared keys;
/// the other kinds are listed.
fn read_secrets(path: &Path, out: &mut Collect) {
    let mut seen = Vec::new();
    read_secrets_file(path, out, &mut seen, 0);
}

fn read_secrets_file(path: &Path, out: &mut Collect, seen: &mut Vec<PathBuf>, depth: usize) {
    let text = match super::read_secret(path) {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(e);
            return;
        }
    };
    seen.push(path.to_path_buf());
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let entry = match parse::secret_line(raw) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(why) => {
                out.errors.push(ImportError::Syntax {
                    file: path.to_path_buf(),
                    line,
                    message: why,
                });
                continue;
            }
        };
        match entry {
            parse::SecretLine::Include(pattern) => {
                let files = parse::expand(path, &pattern);
                if files.is_empty() {
                    out.note(
                        path,
                        line,
                        None,
                        "include",
                        NoteKind::Ignored,
                        format!("'{pattern}' matches no file"),
                    );
                }
                for f in files {
                    if depth >= 16 || seen.contains(&f) {
                        out.errors.push(ImportError::Syntax {
                            file: path.to_path_buf(),
                            line,
                            message: format!(
                                "include '{pattern}': includes nest too deep (a loop?)"
                            ),
                        });
                        continue;
                    }
                    read_secrets_file(&f, out, seen, depth + 1);
                }
            }
            parse::SecretLine::Secret { ids, kind, secret } => {
                if !kind.eq_ignore_ascii_case("PSK") {
                    out.note(
                        path,
                        line,
                        None,
                        kind.to_uppercase(),
                        NoteKind::Dropped,
                        format!(
                            "{} secrets are not supported yet (PSK only)",
                            kind.to_uppercase()
                        ),
                    );
                    continue;
                }
                let mut conv = Vec::new();
                let mut bad = None;
                for id in &ids {
                    match values::identity(id, true) {
                        Ok(i) => conv.push(i),
                        Err(why) => bad = Some(why),
                    }
                }
                if let Some(why) = bad {
                    out.note(
                        path,
                        line,
                        None,
                        "PSK",
                        NoteKind::Dropped,
                        format!("the secret is left out: {why}"),
                    );
                    continue;
                }
                if conv.is_empty() {
                    conv.push("%any".into());
                }
                out.psks.push(Psk {
                    ids: conv,
                    secret,
                    file: path.to_path_buf(),
                    line,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "ipsec_tests.rs"]
mod tests;
