//! The daemon's configuration: the main TOML file, the files it includes and
//! the secrets files it names (see "Configuration (TOML)" in the design).
//!
//! Everything is validated at load time and every problem found is reported
//! at once, each with its file, line, dotted key and reason; a [`Config`] is
//! only returned when there is none. Connections carry [`PartialEq`] so a
//! reload can diff them; that comparison ignores where a connection is
//! written ([`ConnectionConfig::file`], [`ConnectionConfig::line`]), so
//! editing a comment above a tunnel does not restart it.

mod duration;
pub(crate) mod reader;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ike::proposal::ProposalSpec;
use ike::wire::TrafficSelector;
use toml::de::{DeTable, DeValue};

pub use actors::{Auto, DpdAction};
pub use duration::{format_duration, parse_duration};
use reader::{entries, is_glob, join, parse_document, parse_ip, Ctx, Key, Source, Value};

use crate::secrets::Secrets;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub main_file: PathBuf,
    pub daemon: DaemonConfig,
    pub scheduler: SchedulerConfig,
    /// In file order: the main file's first, then each included file's, in
    /// the order of `daemon.include` and, within one pattern, sorted by path.
    pub connections: Vec<ConnectionConfig>,
    pub secrets: Secrets,
    /// The main file's `[defaults]`, kept for [`load_extra`].
    pub defaults: Defaults,
    /// Problems that do not stop loading (secrets files readable by others).
    pub warnings: Vec<String>,
}

impl Config {
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// `[daemon]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// IKE addresses (UDP 500 and 4500); empty = all.
    pub listen: Vec<IpAddr>,
    pub dataplane: Dataplane,
    /// Glob patterns as written, relative to the main file's directory.
    pub include: Vec<String>,
    /// Secrets files (or glob patterns), resolved relative to the main
    /// file's directory; pass to [`Secrets::load`] on `rereadsecrets`.
    pub secrets: Vec<PathBuf>,
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
    /// Userspace dataplane: routing table of the routes into the TUN device.
    pub route_table: u32,
    /// Userspace dataplane: firewall mark of the daemon's own IKE and
    /// ESP-in-UDP packets, which bypass `route_table`.
    pub fwmark: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: Vec::new(),
            dataplane: Dataplane::Auto,
            include: Vec::new(),
            secrets: Vec::new(),
            metrics: None,
            tun: "vpnd0".to_string(),
            workers: 0,
            keep_alive: Duration::from_secs(20),
            socket_group: None,
            route_table: 220,
            fwmark: 0x220,
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
    /// DH + key derivations started per second.
    pub key_computations_per_sec: u32,
    pub max_concurrent: u32,
    /// Pacing towards one peer address.
    pub max_half_open_per_peer: u32,
    /// `rekey_jitter = "10%"`: rekey times are shortened by up to this much.
    pub rekey_jitter_pct: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            key_computations_per_sec: 1000,
            max_concurrent: 4,
            max_half_open_per_peer: 4,
            rekey_jitter_pct: 10,
        }
    }
}

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

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<usize>,
    /// Dotted, e.g. `connections.oregon.proposals`; empty for TOML syntax
    /// errors and unreadable files.
    pub key: String,
    pub message: String,
}

/// `{file}:{line}: {key}: {message}`, leaving out `:{line}` when unknown and
/// `{key}: ` when empty.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found: file by file in the order they were read, each
/// file's from top to bottom.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The `[defaults]` of the main file (opaque; see [`load_extra`]).
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    fields: ConnFields,
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Reads the main file, the files it includes and its secrets files.
/// Collects every error it can find in all of them.
pub fn load(main: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let text = read_file(main)?;
    let src = Source::new(main, &text);
    let doc = parse_document(&src, &text)?;
    let base = base_dir(main);

    let mut daemon = DaemonConfig::default();
    let mut scheduler = SchedulerConfig::default();
    let mut defaults = ConnFields::default();
    let mut includes: Vec<(String, Range<usize>)> = Vec::new();
    let mut secret_spans: Vec<Range<usize>> = Vec::new();
    let mut connections = Vec::new();
    let mut names = HashMap::new();
    {
        let mut ctx = Ctx {
            src: &src,
            errors: &mut errors,
        };
        let mut conn_tables = None;
        for (k, v) in entries(&doc) {
            match k.get_ref().as_ref() {
                "daemon" => {
                    if let Some(t) = ctx.table(v, "daemon") {
                        parse_daemon(
                            &mut ctx,
                            t,
                            base,
                            &mut daemon,
                            &mut includes,
                            &mut secret_spans,
                        );
                    }
                }
                "scheduler" => {
                    if let Some(t) = ctx.table(v, "scheduler") {
                        parse_scheduler(&mut ctx, t, &mut scheduler);
                    }
                }
                "defaults" => {
                    if let Some(t) = ctx.table(v, "defaults") {
                        defaults = parse_conn_fields(&mut ctx, t, "defaults", true).0;
                    }
                }
                "connections" => conn_tables = Some(v),
                _ => ctx.unknown_key(k, &join("", k.get_ref()), MAIN_KEYS),
            }
        }
        if let Some(v) = conn_tables {
            parse_connections(&mut ctx, v, &[&defaults], &mut names, &mut connections);
        }
    }

    // Included files.
    let mut seen: HashSet<PathBuf> = HashSet::new();
    seen.insert(canonical(main));
    for (pattern, span) in &includes {
        let files = match expand(base, pattern) {
            Ok(files) => files,
            Err(why) => {
                let line = src.line(span.start);
                errors.push(ConfigError {
                    file: main.to_path_buf(),
                    line: Some(line),
                    key: "daemon.include".into(),
                    message: why,
                });
                continue;
            }
        };
        for file in files {
            if !seen.insert(canonical(&file)) {
                continue;
            }
            let text = match read_file(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.extend(e.0);
                    continue;
                }
            };
            let fsrc = Source::new(&file, &text);
            let doc = match parse_document(&fsrc, &text) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let mut ctx = Ctx {
                src: &fsrc,
                errors: &mut errors,
            };
            let (_, conns) = parse_connection_file(&mut ctx, &doc, false, main);
            if let Some(v) = conns {
                parse_connections(&mut ctx, v, &[&defaults], &mut names, &mut connections);
            }
        }
    }

    // Secrets: a file named literally must exist; report that at its line.
    let mut secret_files = Vec::new();
    for (path, span) in daemon.secrets.iter().zip(&secret_spans) {
        if !is_glob(&path.to_string_lossy()) {
            if let Err(e) = std::fs::metadata(path) {
                errors.push(ConfigError {
                    file: main.to_path_buf(),
                    line: Some(src.line(span.start)),
                    key: "daemon.secrets".into(),
                    message: format!("cannot read '{}': {e}", path.display()),
                });
                continue;
            }
        }
        secret_files.push(path.clone());
    }
    let (secrets, warnings) = match Secrets::load(&secret_files) {
        Ok(s) => s,
        Err(e) => {
            errors.extend(e.0);
            (Secrets::empty(), Vec::new())
        }
    };

    if !errors.is_empty() {
        sort_by_position(&mut errors);
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        main_file: main.to_path_buf(),
        daemon,
        scheduler,
        connections,
        secrets,
        defaults: Defaults { fields: defaults },
        warnings,
    })
}

/// Reads one extra file (e.g. `conf.d/new.toml`, for `vpnctl load --file`)
/// holding `[connections.*]` and optionally `[defaults]` for that file's
/// connections, layered over the main file's `[defaults]`. A connection
/// whose name another file of `main` already defines is an error; one that
/// `file` itself defined when `main` was loaded is not (the file is being
/// re-read).
pub fn load_extra(main: &Config, file: &Path) -> Result<Vec<ConnectionConfig>, ConfigErrors> {
    let text = read_file(file)?;
    let src = Source::new(file, &text);
    let doc = parse_document(&src, &text)?;
    let mut errors = Vec::new();
    let me = canonical(file);
    let mut names: HashMap<String, (PathBuf, usize)> = main
        .connections
        .iter()
        .filter(|c| canonical(&c.file) != me)
        .map(|c| (c.name.clone(), (c.file.clone(), c.line)))
        .collect();
    let mut out = Vec::new();
    let mut ctx = Ctx {
        src: &src,
        errors: &mut errors,
    };
    let (file_defaults, conns) = parse_connection_file(&mut ctx, &doc, true, &main.main_file);
    if let Some(v) = conns {
        let layers: Vec<&ConnFields> = file_defaults
            .iter()
            .chain(std::iter::once(&main.defaults.fields))
            .collect();
        parse_connections(&mut ctx, v, &layers, &mut names, &mut out);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        sort_by_position(&mut errors);
        Err(ConfigErrors(errors))
    }
}

/// Orders errors by line within each file, keeping files in the order they
/// were read.
pub(crate) fn sort_by_position(errors: &mut [ConfigError]) {
    let mut files: Vec<&Path> = Vec::new();
    for e in errors.iter() {
        if !files.contains(&e.file.as_path()) {
            files.push(&e.file);
        }
    }
    let rank: HashMap<PathBuf, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.to_path_buf(), i))
        .collect();
    errors.sort_by_key(|e| (rank[&e.file], e.line.unwrap_or(0)));
}

const MAIN_KEYS: &[&str] = &["daemon", "scheduler", "defaults", "connections"];

const DAEMON_KEYS: &[&str] = &[
    "listen",
    "dataplane",
    "include",
    "secrets",
    "metrics",
    "socket_group",
    "tun",
    "workers",
    "keep_alive",
    "route_table",
    "fwmark",
];

const SCHEDULER_KEYS: &[&str] = &[
    "key_computations_per_sec",
    "max_concurrent",
    "max_half_open_per_peer",
    "rekey_jitter",
];

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

const DATAPLANES: &[(&str, Dataplane)] = &[
    ("auto", Dataplane::Auto),
    ("xfrm", Dataplane::Xfrm),
    ("userspace", Dataplane::Userspace),
    ("none", Dataplane::None),
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

fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }
        .into()
    })
}

fn base_dir(main: &Path) -> &Path {
    main.parent().unwrap_or(Path::new(""))
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The files an include pattern names, sorted. A literal name must exist; a
/// glob may match nothing. Hidden files are not matched by wildcards.
fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = base.join(pattern);
    if !is_glob(pattern) {
        return match std::fs::metadata(&path) {
            Ok(_) => Ok(vec![path]),
            Err(e) => Err(format!("cannot read '{}': {e}", path.display())),
        };
    }
    let full = if Path::new(pattern).is_absolute() || base.as_os_str().is_empty() {
        pattern.to_string()
    } else {
        let base = base.to_string_lossy();
        let sep = if base.ends_with('/') { "" } else { "/" };
        format!("{}{sep}{pattern}", glob::Pattern::escape(&base))
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&full, options)
        .map_err(|e| format!("invalid pattern '{pattern}': {}", e.msg))?;
    let mut files = Vec::new();
    for p in paths {
        let p = p.map_err(|e| format!("cannot read '{}': {}", e.path().display(), e.error()))?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_daemon(
    ctx: &mut Ctx<'_>,
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
            _ => ctx.unknown_key(k, &key, DAEMON_KEYS),
        }
    }
}

fn parse_scheduler(ctx: &mut Ctx<'_>, t: &DeTable<'_>, out: &mut SchedulerConfig) {
    for (k, v) in entries(t) {
        let key = join("scheduler", k.get_ref());
        let positive = |ctx: &mut Ctx<'_>, slot: &mut u32| {
            if let Some(n) = ctx.uint(v, &key) {
                if n == 0 {
                    ctx.err(v.span(), &key, "invalid value 0: must be at least 1");
                } else {
                    *slot = n;
                }
            }
        };
        match k.get_ref().as_ref() {
            "key_computations_per_sec" => positive(ctx, &mut out.key_computations_per_sec),
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
fn percentage(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<u32> {
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

/// The top level of an included or extra file: only `[connections.*]`
/// (and `[defaults]` when `allow_defaults`).
fn parse_connection_file<'t, 'i>(
    ctx: &mut Ctx<'_>,
    doc: &'t DeTable<'i>,
    allow_defaults: bool,
    main: &Path,
) -> (Option<ConnFields>, Option<&'t Value<'i>>) {
    let mut defaults = None;
    let mut conns = None;
    for (k, v) in entries(doc) {
        let name = k.get_ref().as_ref();
        match name {
            "connections" => conns = Some(v),
            "defaults" if allow_defaults => {
                if let Some(t) = ctx.table(v, "defaults") {
                    defaults = Some(parse_conn_fields(ctx, t, "defaults", true).0);
                }
            }
            "daemon" | "scheduler" | "defaults" => ctx.err(
                k.span(),
                name,
                format!(
                    "[{name}] is only allowed in the main configuration file ({}); \
                     an included file may only define [connections.*]",
                    main.display()
                ),
            ),
            _ => {
                let known: &[&str] = if allow_defaults {
                    &["connections", "defaults"]
                } else {
                    &["connections"]
                };
                ctx.unknown_key(k, &join("", name), known)
            }
        }
    }
    (defaults, conns)
}

fn parse_connections(
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
struct ConnFields {
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
fn parse_conn_fields<'t, 'i>(
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
