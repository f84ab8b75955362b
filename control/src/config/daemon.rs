//! `[daemon]` and `[scheduler]`.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::reader::{entries, join, parse_ip, ParseCtx, Value};

/// `[daemon]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// IKE addresses (UDP 500 and 4500); empty = all.
    pub listen: Vec<IpAddr>,
    pub dataplane: Dataplane,
    /// Glob patterns as written, relative to the main file's directory.
    pub include: Vec<String>,
    /// Secrets files (or glob patterns), resolved relative to the main
    /// file's directory; pass to
    /// [`Secrets::load`](crate::secrets::Secrets::load) on `rereadsecrets`.
    pub secrets: Vec<PathBuf>,
    /// Trust anchors for `auth = "pubkey"`: CA certificate files (PEM or
    /// DER) or directories of them, resolved relative to the main file's
    /// directory.
    pub cacerts: Vec<PathBuf>,
    /// Certificate revocation lists: files (PEM or DER) or directories of
    /// them, resolved relative to the main file's directory.
    pub crls: Vec<PathBuf>,
    /// Prometheus endpoint.
    pub metrics: Option<SocketAddr>,
    /// Group that may use the control socket (mode 0660 instead of 0600).
    pub socket_group: Option<String>,
    /// Userspace dataplane: the TUN device's name.
    pub tun: String,
    /// Userspace dataplane: worker threads (0 = one per CPU).
    pub workers: u32,
    /// NAT keepalive interval for UDP-encapsulated SAs (0 = off).
    pub keep_alive: Duration,
    /// Routing table of the dataplane's routes (userspace: into the TUN
    /// device; xfrm: for tunnel-mode children, like strongSwan's).
    pub route_table: u32,
    /// xfrm dataplane: install those routes (strongSwan's install_routes).
    pub install_routes: bool,
    /// Userspace dataplane: firewall mark of the daemon's own IKE and
    /// ESP-in-UDP packets, which bypass `route_table`.
    pub fwmark: u32,
    /// Half-open responder SAs before COOKIEs are required (0 = never).
    pub cookie_threshold: u32,
    /// ... from one source address (0 = never).
    pub cookie_threshold_ip: u32,
    /// Half-open SAs from one source address before its new requests are
    /// dropped (0 = no limit).
    pub block_threshold: u32,
    /// Half-open responder SAs in all before new requests are dropped
    /// (0 = no limit).
    pub half_open_max: u32,
    /// Where the daemon keeps state across restarts (which connections
    /// were up, for revival); absolute, or relative to the main file's
    /// directory. `None` (`state_dir = ""`) turns revival off.
    pub state_dir: Option<PathBuf>,
}

/// The default `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vpnd";

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: Vec::new(),
            dataplane: Dataplane::Auto,
            include: Vec::new(),
            secrets: Vec::new(),
            cacerts: Vec::new(),
            crls: Vec::new(),
            metrics: None,
            tun: "vpnd0".to_string(),
            workers: 0,
            keep_alive: Duration::from_secs(20),
            socket_group: None,
            route_table: 220,
            install_routes: true,
            fwmark: 0x220,
            cookie_threshold: 30,
            cookie_threshold_ip: 3,
            block_threshold: 5,
            half_open_max: 10_000,
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataplane {
    Auto,
    Xfrm,
    Userspace,
    None,
}

impl Dataplane {
    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Auto => "auto",
            Dataplane::Xfrm => "xfrm",
            Dataplane::Userspace => "userspace",
            Dataplane::None => "none",
        }
    }
}

/// `[scheduler]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// DH + key derivations started per second; `None`: derived at start
    /// from this machine's speed (`SchedulerConfig::derived_rate` in
    /// `runtime`).
    pub key_computations_per_sec: Option<u32>,
    pub max_concurrent: u32,
    /// Pacing towards one peer address.
    pub max_half_open_per_peer: u32,
    /// `rekey_jitter = "10%"`: rekey times are shortened by up to this much.
    pub rekey_jitter_pct: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        // The scheduler's own defaults, and 10% rekey jitter.
        let runtime = runtime::scheduler::SchedulerConfig::default();
        SchedulerConfig {
            key_computations_per_sec: None,
            max_concurrent: runtime.max_concurrent,
            max_half_open_per_peer: runtime.max_half_open_per_peer,
            rekey_jitter_pct: 10,
        }
    }
}

pub(super) const DAEMON_KEYS: &[&str] = &[
    "listen",
    "dataplane",
    "include",
    "secrets",
    "cacerts",
    "crls",
    "metrics",
    "socket_group",
    "tun",
    "workers",
    "keep_alive",
    "route_table",
    "install_routes",
    "fwmark",
    "cookie_threshold",
    "cookie_threshold_ip",
    "block_threshold",
    "half_open_max",
    "state_dir",
];

pub(super) const SCHEDULER_KEYS: &[&str] = &[
    "key_computations_per_sec",
    "max_concurrent",
    "max_half_open_per_peer",
    "rekey_jitter",
];

const DATAPLANES: &[(&str, Dataplane)] = &[
    ("auto", Dataplane::Auto),
    ("xfrm", Dataplane::Xfrm),
    ("userspace", Dataplane::Userspace),
    ("none", Dataplane::None),
];

pub(super) fn parse_daemon(
    ctx: &mut ParseCtx<'_>,
    t: &DeTable<'_>,
    base: &Path,
    out: &mut DaemonConfig,
    includes: &mut Vec<(String, Range<usize>)>,
    secret_spans: &mut Vec<Range<usize>>,
) {
    for (k, v) in entries(t) {
        let key = join("daemon", k.get_ref());
        match k.get_ref().as_ref() {
            "listen" => {
                if let Some(l) = ctx.list(v, &key, true, parse_ip) {
                    out.listen = l;
                }
            }
            "dataplane" => {
                if let Some(d) = ctx.choice(v, &key, DATAPLANES) {
                    out.dataplane = d;
                }
            }
            "include" => {
                if let Some(l) = ctx.strings(v, &key) {
                    for (s, span) in l {
                        if s.trim().is_empty() {
                            ctx.err(span, &key, "must not be empty");
                            continue;
                        }
                        out.include.push(s.to_string());
                        includes.push((s.to_string(), span));
                    }
                }
            }
            "secrets" => {
                if let Some(l) = ctx.strings(v, &key) {
                    for (s, span) in l {
                        if s.trim().is_empty() {
                            ctx.err(span, &key, "must not be empty");
                            continue;
                        }
                        out.secrets.push(base.join(s));
                        secret_spans.push(span);
                    }
                }
            }
            "cacerts" => {
                if let Some(l) = ctx.strings(v, &key) {
                    for (s, span) in l {
                        if s.trim().is_empty() {
                            ctx.err(span, &key, "must not be empty");
                            continue;
                        }
                        out.cacerts.push(base.join(s));
                    }
                }
            }
            "crls" => {
                if let Some(l) = ctx.strings(v, &key) {
                    for (s, span) in l {
                        if s.trim().is_empty() {
                            ctx.err(span, &key, "must not be empty");
                            continue;
                        }
                        out.crls.push(base.join(s));
                    }
                }
            }
            "metrics" => {
                if let Some(s) = ctx.string(v, &key) {
                    match s.parse::<SocketAddr>() {
                        Ok(a) => out.metrics = Some(a),
                        Err(_) => ctx.err(
                            v.span(),
                            &key,
                            format!(
                                "invalid address '{s}': expected IP:port, e.g. \"127.0.0.1:9469\""
                            ),
                        ),
                    }
                }
            }
            "socket_group" => {
                if let Some(s) = ctx.string(v, &key) {
                    if s.is_empty() {
                        ctx.err(v.span(), &key, "must not be empty");
                    } else {
                        out.socket_group = Some(s.to_string());
                    }
                }
            }
            "tun" => {
                if let Some(s) = ctx.string(v, &key) {
                    if s.is_empty()
                        || s.len() > 15
                        || !s
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        ctx.err(
                            v.span(),
                            &key,
                            format!("invalid interface name '{s}': 1 to 15 letters, digits, '-', '_' or '.'"),
                        );
                    } else {
                        out.tun = s.to_string();
                    }
                }
            }
            "workers" => {
                if let Some(n) = ctx.uint(v, &key) {
                    if n > 64 {
                        ctx.err(v.span(), &key, format!("invalid value {n}: at most 64"));
                    } else {
                        out.workers = n;
                    }
                }
            }
            "keep_alive" => {
                if let Some(d) = ctx.duration(v, &key) {
                    out.keep_alive = d;
                }
            }
            "install_routes" => {
                if let Some(b) = ctx.boolean(v, &key) {
                    out.install_routes = b;
                }
            }
            "route_table" => {
                if let Some(n) = ctx.ulong(v, &key) {
                    match u32::try_from(n) {
                        Ok(0) | Err(_) => ctx.err(
                            v.span(),
                            &key,
                            format!("invalid value {n}: a routing table is 1 to 4294967295"),
                        ),
                        Ok(253..=255) => ctx.err(
                            v.span(),
                            &key,
                            format!(
                                "invalid value {n}: tables 253, 254 and 255 are the system's default, main and local"
                            ),
                        ),
                        Ok(t) => out.route_table = t,
                    }
                }
            }
            "fwmark" => {
                if let Some(n) = ctx.ulong(v, &key) {
                    match u32::try_from(n) {
                        Ok(0) | Err(_) => ctx.err(
                            v.span(),
                            &key,
                            format!(
                                "invalid value {n}: a firewall mark is 1 to 0xffffffff (0 is every unmarked packet)"
                            ),
                        ),
                        Ok(m) => out.fwmark = m,
                    }
                }
            }
            "cookie_threshold" => ctx
                .uint(v, &key)
                .into_iter()
                .for_each(|n| out.cookie_threshold = n),
            "cookie_threshold_ip" => ctx
                .uint(v, &key)
                .into_iter()
                .for_each(|n| out.cookie_threshold_ip = n),
            "block_threshold" => ctx
                .uint(v, &key)
                .into_iter()
                .for_each(|n| out.block_threshold = n),
            "half_open_max" => ctx
                .uint(v, &key)
                .into_iter()
                .for_each(|n| out.half_open_max = n),
            "state_dir" => {
                if let Some(s) = ctx.string(v, &key) {
                    if s.is_empty() {
                        out.state_dir = None;
                    } else if s.contains('\0') {
                        ctx.err(v.span(), &key, "must not contain a NUL character");
                    } else if Path::new(s)
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                    {
                        ctx.err(
                            v.span(),
                            &key,
                            format!("invalid directory '{s}': '..' is not allowed"),
                        );
                    } else {
                        out.state_dir = Some(base.join(s));
                    }
                }
            }
            _ => ctx.unknown_key(k, &key, DAEMON_KEYS),
        }
    }
}

pub(super) fn parse_scheduler(ctx: &mut ParseCtx<'_>, t: &DeTable<'_>, out: &mut SchedulerConfig) {
    for (k, v) in entries(t) {
        let key = join("scheduler", k.get_ref());
        let positive = |ctx: &mut ParseCtx<'_>, slot: &mut u32| {
            if let Some(n) = ctx.uint(v, &key) {
                if n == 0 {
                    ctx.err(v.span(), &key, "invalid value 0: must be at least 1");
                } else {
                    *slot = n;
                }
            }
        };
        match k.get_ref().as_ref() {
            "key_computations_per_sec" => {
                let mut rate = 0;
                positive(ctx, &mut rate);
                if rate > 0 {
                    out.key_computations_per_sec = Some(rate);
                }
            }
            "max_concurrent" => positive(ctx, &mut out.max_concurrent),
            "max_half_open_per_peer" => positive(ctx, &mut out.max_half_open_per_peer),
            "rekey_jitter" => {
                if let Some(p) = percentage(ctx, v, &key) {
                    out.rekey_jitter_pct = p;
                }
            }
            _ => ctx.unknown_key(k, &key, SCHEDULER_KEYS),
        }
    }
}

/// "10%" (or a bare integer), 0 to 100.
fn percentage(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<u32> {
    let n = match v.get_ref() {
        DeValue::Integer(_) => ctx.uint(v, key)?,
        DeValue::String(s) => match s.trim().trim_end_matches('%').trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                ctx.err(
                    v.span(),
                    key,
                    format!("invalid value '{s}': expected a percentage such as \"10%\""),
                );
                return None;
            }
        },
        _ => {
            ctx.string(v, key);
            return None;
        }
    };
    if n > 100 {
        ctx.err(
            v.span(),
            key,
            format!("invalid value {n}%: must be between 0% and 100%"),
        );
        return None;
    }
    Some(n)
}
