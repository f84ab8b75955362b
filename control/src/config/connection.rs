//! `[connections.NAME]`, its children and `[defaults]`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ike::proposal::ProposalSpec;
use ike::wire::TrafficSelector;
use toml::de::DeTable;

use super::error::ConfigError;
use super::reader::{entries, join, parse_ip, Ctx, Key, Value};
use super::{format_duration, Auto, DpdAction};
use crate::secrets::Secrets;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Psk,
    Pubkey,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Psk => "psk",
            AuthMethod::Pubkey => "pubkey",
        }
    }
}

/// One entry of `remote_addrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoteAddr {
    Ip(IpAddr),
    /// `%any`: accept the peer from anywhere (responder only).
    Any,
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAddr::Ip(a) => a.fmt(f),
            RemoteAddr::Any => f.write_str("%any"),
        }
    }
}

/// `[connections.NAME]` with `[defaults]` applied.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    pub name: String,
    /// Empty = any local address.
    pub local_addrs: Vec<IpAddr>,
    pub remote_addrs: Vec<RemoteAddr>,
    /// As written.
    pub local_id: String,
    /// As written; may be `%any`.
    pub remote_id: String,
    pub auth: AuthMethod,
    pub proposals: Vec<ProposalSpec>,
    pub auto: Auto,
    pub rekey_time: Duration,
    /// Zero = no dead peer detection.
    pub dpd_delay: Duration,
    pub dpd_action: DpdAction,
    pub retransmit_timeout: Duration,
    pub retransmit_tries: u32,
    /// 0 = forever.
    pub keyingtries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub encap: bool,
    /// In file order.
    pub children: Vec<ChildConfig>,
    /// Where `[connections.NAME]` is; not part of equality.
    pub file: PathBuf,
    /// 1-based; not part of equality.
    pub line: usize,
}

/// Equality of everything that matters to a running connection: `file` and
/// `line` are ignored so that moving a connection within or between files
/// is not a change.
impl PartialEq for ConnectionConfig {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.local_addrs == o.local_addrs
            && self.remote_addrs == o.remote_addrs
            && self.local_id == o.local_id
            && self.remote_id == o.remote_id
            && self.auth == o.auth
            && self.proposals == o.proposals
            && self.auto == o.auto
            && self.rekey_time == o.rekey_time
            && self.dpd_delay == o.dpd_delay
            && self.dpd_action == o.dpd_action
            && self.retransmit_timeout == o.retransmit_timeout
            && self.retransmit_tries == o.retransmit_tries
            && self.keyingtries == o.keyingtries
            && self.retry_base == o.retry_base
            && self.retry_max == o.retry_max
            && self.encap == o.encap
            && self.children == o.children
    }
}

/// `[connections.NAME.children.CHILD]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildConfig {
    pub name: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub esp_proposals: Vec<ProposalSpec>,
    pub mode: ike::config::Mode,
    pub rekey_time: Duration,
    pub updown: Option<PathBuf>,
    /// Volume lifetimes (strongSwan's rekey_bytes / life_bytes /
    /// rekey_packets / life_packets; 0 = none) and the hard time limit
    /// (`life_time`; default 110% of rekey_time).
    pub rekey_bytes: u64,
    pub life_bytes: u64,
    pub rekey_packets: u64,
    pub life_packets: u64,
    pub life_time: Option<Duration>,
}

/// The longest wait between two retransmissions.
pub const RETRANSMIT_MAX_TIMEOUT: Duration = Duration::from_secs(60);

impl ConnectionConfig {
    /// The ike view. `secrets` resolves the PSK (None if no secret matches:
    /// ike reports that at auth time).
    pub fn to_peer_config(&self, secrets: &Secrets) -> Result<ike::config::PeerConfig, String> {
        if self.auth == AuthMethod::Pubkey {
            return Err("auth = pubkey is not supported yet".to_string());
        }
        let local_id = ike::config::parse_identity(&self.local_id).map_err(|e| e.to_string())?;
        let remote_id = if self.remote_id == "%any" {
            None
        } else {
            Some(ike::config::parse_identity(&self.remote_id).map_err(|e| e.to_string())?)
        };
        Ok(ike::config::PeerConfig {
            name: self.name.clone(),
            local_id,
            remote_id,
            psk: secrets.psk_for(&self.local_id, &self.remote_id),
            ike_proposals: self.proposals.clone(),
            children: self
                .children
                .iter()
                .map(|c| ike::config::ChildConfig {
                    name: c.name.clone(),
                    local_ts: c.local_ts.clone(),
                    remote_ts: c.remote_ts.clone(),
                    esp_proposals: c.esp_proposals.clone(),
                    mode: c.mode,
                })
                .collect(),
            encap: self.encap,
            retransmit: ike::config::Retransmit {
                timeout: self.retransmit_timeout,
                tries: self.retransmit_tries,
                max_timeout: RETRANSMIT_MAX_TIMEOUT.max(self.retransmit_timeout),
            },
            initial_contact: true,
        })
    }

    pub fn child(&self, name: &str) -> Option<&ChildConfig> {
        self.children.iter().find(|c| c.name == name)
    }
}

const CONN_KEYS: &[&str] = &[
    "local_addrs",
    "remote_addrs",
    "local_id",
    "remote_id",
    "auth",
    "proposals",
    "auto",
    "rekey_time",
    "dpd_delay",
    "dpd_action",
    "retransmit_timeout",
    "retransmit_tries",
    "keyingtries",
    "retry_base",
    "retry_max",
    "encap",
    "children",
];

const CHILD_KEYS: &[&str] = &[
    "local_ts",
    "remote_ts",
    "esp_proposals",
    "mode",
    "rekey_time",
    "updown",
    "rekey_bytes",
    "life_bytes",
    "rekey_packets",
    "life_packets",
    "life_time",
];

const AUTOS: &[(&str, Auto)] = &[
    ("start", Auto::Start),
    ("route", Auto::Route),
    ("add", Auto::Add),
    ("ignore", Auto::Ignore),
];

const DPD_ACTIONS: &[(&str, DpdAction)] = &[
    ("clear", DpdAction::Clear),
    ("hold", DpdAction::Hold),
    ("restart", DpdAction::Restart),
];

const AUTHS: &[(&str, AuthMethod)] = &[("psk", AuthMethod::Psk), ("pubkey", AuthMethod::Pubkey)];

const MODES: &[(&str, ike::config::Mode)] = &[
    ("tunnel", ike::config::Mode::Tunnel),
    ("transport", ike::config::Mode::Transport),
];

pub(super) fn parse_connections(
    ctx: &mut Ctx<'_>,
    v: &Value<'_>,
    defaults: &[&ConnFields],
    names: &mut HashMap<String, (PathBuf, usize)>,
    out: &mut Vec<ConnectionConfig>,
) {
    let Some(t) = ctx.table(v, "connections") else {
        return;
    };
    for (k, v) in entries(t) {
        let name = k.get_ref().as_ref();
        let key = join("connections", name);
        let line = ctx.line(&k.span());
        if let Some((file, l)) = names.get(name) {
            let message = format!(
                "duplicate connection name '{name}': already defined at {}:{l}",
                file.display()
            );
            ctx.err(k.span(), &key, message);
        } else {
            names.insert(name.to_string(), (ctx.src.path.clone(), line));
        }
        if let Some(c) = build_connection(ctx, k, v, defaults) {
            out.push(c);
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

// ---------------------------------------------------------------------------
// Connection keys, shared by [defaults] and [connections.NAME]
// ---------------------------------------------------------------------------

/// A key's state in one table.
#[derive(Clone, Debug, Default)]
enum Slot<T> {
    /// Not written.
    #[default]
    Unset,
    /// Written with an invalid value (already reported).
    Bad,
    /// Written at `line`.
    Set(T, usize),
}

#[derive(Clone, Debug, Default)]
pub(super) struct ConnFields {
    local_addrs: Slot<Vec<IpAddr>>,
    remote_addrs: Slot<Vec<RemoteAddr>>,
    local_id: Slot<String>,
    remote_id: Slot<String>,
    auth: Slot<AuthMethod>,
    proposals: Slot<Vec<ProposalSpec>>,
    auto: Slot<Auto>,
    rekey_time: Slot<Duration>,
    dpd_delay: Slot<Duration>,
    dpd_action: Slot<DpdAction>,
    retransmit_timeout: Slot<Duration>,
    retransmit_tries: Slot<u32>,
    keyingtries: Slot<u32>,
    retry_base: Slot<Duration>,
    retry_max: Slot<Duration>,
    encap: Slot<bool>,
}

fn slot<T>(line: usize, v: Option<T>) -> Slot<T> {
    match v {
        Some(v) => Slot::Set(v, line),
        None => Slot::Bad,
    }
}

fn identity(s: &str, allow_any: bool) -> Result<String, String> {
    if s == "%any" {
        return if allow_any {
            Ok(s.to_string())
        } else {
            Err("'%any' is only allowed for remote_id".to_string())
        };
    }
    ike::config::parse_identity(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Parses the connection keys of `t`; returns them and the `children` value.
pub(super) fn parse_conn_fields<'t, 'i>(
    ctx: &mut Ctx<'_>,
    t: &'t DeTable<'i>,
    prefix: &str,
    in_defaults: bool,
) -> (ConnFields, Option<(&'t Key<'i>, &'t Value<'i>)>) {
    let mut f = ConnFields::default();
    let mut children = None;
    for (k, v) in entries(t) {
        let name = k.get_ref().as_ref();
        let key = join(prefix, name);
        let key = key.as_str();
        let line = ctx.line(&k.span());
        match name {
            "local_addrs" => {
                let r = ctx.strings(v, key).and_then(|items| {
                    if let [(only, _)] = items.as_slice() {
                        if *only == "%any" {
                            return Some(Vec::new());
                        }
                    }
                    let before = ctx.error_count();
                    let mut addrs = Vec::new();
                    for (s, span) in items {
                        match parse_ip(s) {
                            Ok(a) => addrs.push(a),
                            Err(why) => ctx.err(span, key, why),
                        }
                    }
                    (ctx.error_count() == before).then_some(addrs)
                });
                f.local_addrs = slot(line, r);
            }
            "remote_addrs" => {
                let r = ctx.list(v, key, false, |s| {
                    if s.trim() == "%any" {
                        return Ok(RemoteAddr::Any);
                    }
                    s.trim().parse().map(RemoteAddr::Ip).map_err(|_| {
                        format!("invalid address '{s}': expected an IP address or %any")
                    })
                });
                f.remote_addrs = slot(line, r);
            }
            "local_id" | "remote_id" => {
                let r = ctx.string(v, key).map(|s| identity(s, name == "remote_id"));
                let r = match r {
                    Some(Ok(s)) => Some(s),
                    Some(Err(why)) => {
                        ctx.err(v.span(), key, why);
                        None
                    }
                    None => None,
                };
                let s = slot(line, r);
                if name == "local_id" {
                    f.local_id = s;
                } else {
                    f.remote_id = s;
                }
            }
            "auth" => f.auth = slot(line, ctx.choice(v, key, AUTHS)),
            "proposals" => {
                let r = ctx.list(v, key, false, |s| {
                    ProposalSpec::parse_ike(s).map_err(|e| e.to_string())
                });
                f.proposals = slot(line, r);
            }
            "auto" => f.auto = slot(line, ctx.choice(v, key, AUTOS)),
            "rekey_time" => f.rekey_time = slot(line, ctx.duration(v, key)),
            "dpd_delay" => f.dpd_delay = slot(line, ctx.duration(v, key)),
            "dpd_action" => f.dpd_action = slot(line, ctx.choice(v, key, DPD_ACTIONS)),
            "retransmit_timeout" => {
                let r = ctx.duration(v, key).filter(|d| {
                    let ok = !d.is_zero();
                    if !ok {
                        ctx.err(v.span(), key, "must be greater than 0");
                    }
                    ok
                });
                f.retransmit_timeout = slot(line, r);
            }
            "retransmit_tries" => f.retransmit_tries = slot(line, ctx.uint(v, key)),
            "keyingtries" => f.keyingtries = slot(line, ctx.uint(v, key)),
            "retry_base" => f.retry_base = slot(line, ctx.duration(v, key)),
            "retry_max" => f.retry_max = slot(line, ctx.duration(v, key)),
            "encap" => f.encap = slot(line, ctx.boolean(v, key)),
            "children" if in_defaults => ctx.err(
                k.span(),
                key,
                "children cannot be set in [defaults]: each connection defines its own",
            ),
            "children" => children = Some((k, v)),
            _ if CHILD_KEYS.contains(&name) => ctx.err(
                k.span(),
                key,
                format!(
                    "unknown key '{name}' (it belongs in a child: [{}.children.NAME])",
                    if in_defaults {
                        "connections.CONN"
                    } else {
                        prefix
                    }
                ),
            ),
            _ => {
                let known: &[&str] = if in_defaults {
                    &CONN_KEYS[..CONN_KEYS.len() - 1]
                } else {
                    CONN_KEYS
                };
                ctx.unknown_key(k, key, known)
            }
        }
    }
    (f, children)
}

/// The first layer (connection, then defaults) that writes the key.
fn resolve<'a, T>(
    layers: &[&'a ConnFields],
    get: impl Fn(&'a ConnFields) -> &'a Slot<T>,
) -> Option<(&'a Slot<T>, bool)> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| (get(l), i == 0))
        .find(|(s, _)| !matches!(s, Slot::Unset))
}

/// The value of a key, `default` if no layer writes it, `None` if invalid.
fn or_default<T: Clone>(s: Option<(&Slot<T>, bool)>, default: T) -> Option<T> {
    match s {
        Some((Slot::Set(v, _), _)) => Some(v.clone()),
        Some((_, _)) => None,
        None => Some(default),
    }
}

/// The line to report a cross-key problem at: where the key is written when
/// the connection itself writes it, else the connection's header.
fn line_of<T>(s: Option<(&Slot<T>, bool)>, header: usize) -> usize {
    match s {
        Some((Slot::Set(_, line), true)) => *line,
        _ => header,
    }
}

fn build_connection(
    ctx: &mut Ctx<'_>,
    k: &Key<'_>,
    v: &Value<'_>,
    defaults: &[&ConnFields],
) -> Option<ConnectionConfig> {
    let name = k.get_ref().as_ref();
    let prefix = join("connections", name);
    let header = ctx.line(&k.span());
    let before = ctx.error_count();
    if !valid_name(name) {
        ctx.err(
            k.span(),
            &prefix,
            format!("invalid connection name '{name}': use letters, digits, '.', '-' and '_'"),
        );
    }
    let t = ctx.table(v, &prefix)?;
    let (fields, children_v) = parse_conn_fields(ctx, t, &prefix, false);
    let mut layers = vec![&fields];
    layers.extend_from_slice(defaults);

    let required = |ctx: &mut Ctx<'_>, present: bool, bad: bool, key: &str| {
        if !present && !bad {
            ctx.err(
                k.span(),
                &join(&prefix, key),
                "missing (required; set it here or in [defaults])",
            );
        }
    };
    let remote_addrs = resolve(&layers, |l| &l.remote_addrs);
    let local_id = resolve(&layers, |l| &l.local_id);
    let remote_id = resolve(&layers, |l| &l.remote_id);
    fn get<T: Clone>(s: Option<(&Slot<T>, bool)>) -> (Option<T>, bool) {
        match s {
            Some((Slot::Set(v, _), _)) => (Some(v.clone()), false),
            Some((Slot::Bad, _)) => (None, true),
            _ => (None, false),
        }
    }
    let (remote_addrs_v, bad) = get(remote_addrs);
    required(ctx, remote_addrs_v.is_some(), bad, "remote_addrs");
    let (local_id_v, bad) = get(local_id);
    required(ctx, local_id_v.is_some(), bad, "local_id");
    let (remote_id_v, bad) = get(remote_id);
    required(ctx, remote_id_v.is_some(), bad, "remote_id");

    let auto_s = resolve(&layers, |l| &l.auto);
    let auto = or_default(auto_s, Auto::Add);
    if let (Some(Auto::Start | Auto::Route), Some(addrs)) = (auto, &remote_addrs_v) {
        if addrs.iter().all(|a| *a == RemoteAddr::Any) {
            let auto = auto.map_or("", Auto::as_str);
            ctx.errors.push(ConfigError {
                file: ctx.src.path.clone(),
                line: Some(line_of(auto_s, line_of(remote_addrs, header))),
                key: join(&prefix, "auto"),
                message: format!(
                    "auto = '{auto}' cannot initiate to remote_addrs = [\"%any\"]: \
                     name the peer's address or use auto = 'add'"
                ),
            });
        }
    }

    let base_s = resolve(&layers, |l| &l.retry_base);
    let retry_base = or_default(base_s, Duration::from_secs(1));
    let max_s = resolve(&layers, |l| &l.retry_max);
    let retry_max = or_default(max_s, Duration::from_secs(300));
    if let (Some(b), Some(m)) = (retry_base, retry_max) {
        if b > m {
            ctx.errors.push(ConfigError {
                file: ctx.src.path.clone(),
                line: Some(line_of(base_s, line_of(max_s, header))),
                key: join(&prefix, "retry_base"),
                message: format!(
                    "retry_base ({}) is longer than retry_max ({})",
                    format_duration(b),
                    format_duration(m)
                ),
            });
        }
    }

    let children = build_children(ctx, k, &prefix, children_v);

    let conn = ConnectionConfig {
        name: name.to_string(),
        local_addrs: or_default(resolve(&layers, |l| &l.local_addrs), Vec::new())?,
        remote_addrs: remote_addrs_v?,
        local_id: local_id_v?,
        remote_id: remote_id_v?,
        auth: or_default(resolve(&layers, |l| &l.auth), AuthMethod::Psk)?,
        proposals: or_default(resolve(&layers, |l| &l.proposals), default_ike_proposals())?,
        auto: auto?,
        rekey_time: or_default(
            resolve(&layers, |l| &l.rekey_time),
            Duration::from_secs(4 * 3600),
        )?,
        dpd_delay: or_default(resolve(&layers, |l| &l.dpd_delay), Duration::from_secs(30))?,
        dpd_action: or_default(resolve(&layers, |l| &l.dpd_action), DpdAction::Restart)?,
        retransmit_timeout: or_default(
            resolve(&layers, |l| &l.retransmit_timeout),
            Duration::from_secs(2),
        )?,
        retransmit_tries: or_default(resolve(&layers, |l| &l.retransmit_tries), 5)?,
        keyingtries: or_default(resolve(&layers, |l| &l.keyingtries), 3)?,
        retry_base: retry_base?,
        retry_max: retry_max?,
        encap: or_default(resolve(&layers, |l| &l.encap), false)?,
        children: children?,
        file: ctx.src.path.clone(),
        line: header,
    };
    (ctx.error_count() == before).then_some(conn)
}

fn default_ike_proposals() -> Vec<ProposalSpec> {
    ProposalSpec::parse_ike("default").map_or_else(|_| Vec::new(), |p| vec![p])
}

fn default_esp_proposals() -> Vec<ProposalSpec> {
    ProposalSpec::parse_esp("default").map_or_else(|_| Vec::new(), |p| vec![p])
}

fn build_children(
    ctx: &mut Ctx<'_>,
    conn_key: &Key<'_>,
    prefix: &str,
    v: Option<(&Key<'_>, &Value<'_>)>,
) -> Option<Vec<ChildConfig>> {
    let key = join(prefix, "children");
    let missing = format!(
        "missing: a connection needs at least one child ([{key}.NAME] with local_ts and remote_ts)"
    );
    let Some((_, v)) = v else {
        ctx.err(conn_key.span(), &key, missing);
        return None;
    };
    let t = ctx.table(v, &key)?;
    if t.is_empty() {
        ctx.err(v.span(), &key, missing);
        return None;
    }
    let before = ctx.error_count();
    let mut out = Vec::new();
    for (ck, cv) in entries(t) {
        if let Some(c) = build_child(ctx, &key, ck, cv) {
            out.push(c);
        }
    }
    (ctx.error_count() == before).then_some(out)
}

fn build_child(
    ctx: &mut Ctx<'_>,
    children_key: &str,
    k: &Key<'_>,
    v: &Value<'_>,
) -> Option<ChildConfig> {
    let name = k.get_ref().as_ref();
    let prefix = join(children_key, name);
    let before = ctx.error_count();
    if !valid_name(name) {
        ctx.err(
            k.span(),
            &prefix,
            format!("invalid child name '{name}': use letters, digits, '.', '-' and '_'"),
        );
    }
    let t = ctx.table(v, &prefix)?;
    let mut local_ts = None;
    let mut remote_ts = None;
    let mut esp_proposals = Some(default_esp_proposals());
    let mut mode = Some(ike::config::Mode::Tunnel);
    let mut rekey_time = Some(Duration::from_secs(3600));
    let mut updown = None;
    let mut volume = [0u64; 4];
    let mut life_time = None;
    let mut seen_ts = (false, false);
    for (ck, cv) in entries(t) {
        let cname = ck.get_ref().as_ref();
        let key = join(&prefix, cname);
        let key = key.as_str();
        let ts = |s: &str| ike::ts::parse_ts(s).map_err(|e| e.to_string());
        match cname {
            "local_ts" => {
                seen_ts.0 = true;
                local_ts = ctx.list(cv, key, false, ts);
            }
            "remote_ts" => {
                seen_ts.1 = true;
                remote_ts = ctx.list(cv, key, false, ts);
            }
            "esp_proposals" => {
                esp_proposals = ctx.list(cv, key, false, |s| {
                    ProposalSpec::parse_esp(s).map_err(|e| e.to_string())
                })
            }
            "mode" => mode = ctx.choice(cv, key, MODES),
            "rekey_time" => rekey_time = ctx.duration(cv, key),
            "rekey_bytes" | "life_bytes" | "rekey_packets" | "life_packets" => {
                let i = ["rekey_bytes", "life_bytes", "rekey_packets", "life_packets"]
                    .iter()
                    .position(|n| *n == cname)
                    .unwrap_or(0);
                if let Some(n) = ctx.ulong(cv, key) {
                    volume[i] = n;
                }
            }
            "life_time" => life_time = ctx.duration(cv, key),
            "updown" => match ctx.string(cv, key) {
                Some("") => ctx.err(cv.span(), key, "must not be empty"),
                Some(s) => updown = Some(PathBuf::from(s)),
                None => {}
            },
            _ if CONN_KEYS.contains(&cname) => ctx.err(
                ck.span(),
                key,
                format!(
                    "unknown key '{cname}' (it is a connection key: set it in [{}])",
                    children_key
                        .strip_suffix(".children")
                        .unwrap_or(children_key)
                ),
            ),
            _ => ctx.unknown_key(ck, key, CHILD_KEYS),
        }
    }
    for (seen, which) in [(seen_ts.0, "local_ts"), (seen_ts.1, "remote_ts")] {
        if !seen {
            ctx.err(k.span(), &join(&prefix, which), "missing (required)");
        }
    }
    for (soft, hard, what) in [
        (volume[0], volume[1], "bytes"),
        (volume[2], volume[3], "packets"),
    ] {
        if soft != 0 && hard != 0 && soft >= hard {
            ctx.err(
                k.span(),
                &join(&prefix, &format!("rekey_{what}")),
                format!("rekey_{what} ({soft}) must be below life_{what} ({hard})"),
            );
        }
    }
    if let (Some(r), Some(l)) = (rekey_time, life_time) {
        if !r.is_zero() && l <= r {
            ctx.err(
                k.span(),
                &join(&prefix, "life_time"),
                "life_time must be longer than rekey_time",
            );
        }
    }
    let child = ChildConfig {
        name: name.to_string(),
        local_ts: local_ts?,
        remote_ts: remote_ts?,
        esp_proposals: esp_proposals?,
        mode: mode?,
        rekey_time: rekey_time?,
        updown,
        rekey_bytes: volume[0],
        life_bytes: volume[1],
        rekey_packets: volume[2],
        life_packets: volume[3],
        life_time,
    };
    (ctx.error_count() == before).then_some(child)
}
