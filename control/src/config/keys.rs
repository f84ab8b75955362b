//! The connection keys, in one table.
//!
//! Each key of `[connections.NAME]` and `[defaults]` is one entry of the
//! `connection_keys!` list below: its field of [`ConnectionConfig`] (doc and
//! type), its built-in default (`None`: required), the function that reads
//! and checks its TOML value, whether `vpnctl set` may change it at runtime
//! and whether a change replaces the connection (new SAs) rather than
//! tweaking the running one. From that list come the struct, the layers of
//! `[defaults]` ([`ConnFields`]), the unknown-key check with its "did you
//! mean", equality and the reload diff ([`ConnectionConfig::changed_keys`])
//! and `set` ([`ConnectionConfig::set`]). `children`, a table of its own
//! (see `connection.rs`), is the one key added by hand ([`CHILDREN`]).
//!
//! Adding a key is one entry here; where the daemon uses it goes in
//! `convert::to_spec` (or [`ConnectionConfig::to_peer_config`]), whose
//! match on every field makes the compiler ask.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ike::proposal::ProposalSpec;

use super::connection::{AuthMethod, ChildConfig, RemoteAddr};
use super::reader::{parse_ip, ParseCtx, Value};
use super::{format_duration, parse_duration, Auto, DpdAction};

/// Reads a key's TOML value (dotted key, line) into a layer, reporting
/// what is wrong.
type Read = fn(&mut ParseCtx<'_>, &Value<'_>, &str, usize, &mut ConnFields);

/// Parses a `vpnctl set` value (key, value) and stores it.
type Set = fn(&mut ConnectionConfig, &str, &str) -> Result<(), String>;

/// One connection key.
pub(super) struct KeyDef {
    pub name: &'static str,
    /// `None` for `children`, which `connection.rs` reads.
    pub read: Option<Read>,
    /// Is the key written in no layer (a required key missing)?
    pub missing: fn(&[&ConnFields]) -> bool,
    /// Do two connections differ in this key?
    pub differs: fn(&ConnectionConfig, &ConnectionConfig) -> bool,
    /// `vpnctl set KEY=VALUE`; `None` when the key cannot be changed at
    /// runtime.
    pub set: Option<Set>,
    /// A change found on reload replaces the connection (new SAs); `false`
    /// hands the running connection its new settings instead, as `set`
    /// does. Every key replaces today. (`vpnctl load` always replaces.)
    pub replaces: bool,
}

/// Generates [`ConnectionConfig`], [`ConnFields`] and [`KEYS`] from the list
/// of keys. `parse` is a `fn(&mut ParseCtx, &Value, key) -> Option<T>` that
/// reports what is wrong and returns `None` then.
macro_rules! connection_keys {
    ($(
        $(#[$doc:meta])*
        $name:ident: $ty:ty {
            default: $default:expr,
            parse: $parse:expr,
            set: $set:tt,
            replaces: $replaces:expr,
        }
    )*) => {
        /// `[connections.NAME]` with `[defaults]` applied.
        #[derive(Clone, Debug)]
        pub struct ConnectionConfig {
            pub name: String,
            $( $(#[$doc])* pub $name: $ty, )*
            /// In file order.
            pub children: Vec<ChildConfig>,
            /// Where `[connections.NAME]` is; not part of equality.
            pub file: PathBuf,
            /// 1-based; not part of equality.
            pub line: usize,
        }

        /// The connection keys one table writes (`[defaults]` or
        /// `[connections.NAME]`), before layering.
        #[derive(Clone, Debug, Default)]
        pub(super) struct ConnFields {
            $( pub $name: Slot<$ty>, )*
        }

        impl ConnFields {
            /// The built-in defaults, the last layer; required keys are unset.
            pub fn builtin() -> ConnFields {
                ConnFields { $( $name: builtin($default), )* }
            }

            /// Each key from the first of `layers` that writes it; `None` if
            /// one is invalid or missing (already reported).
            pub fn connection(
                layers: &[&ConnFields],
                name: String,
                children: Vec<ChildConfig>,
                file: PathBuf,
                line: usize,
            ) -> Option<ConnectionConfig> {
                Some(ConnectionConfig {
                    name,
                    $( $name: value(resolve(layers, |l| &l.$name))?, )*
                    children,
                    file,
                    line,
                })
            }
        }

        /// Every connection key, in the order "did you mean" prefers them.
        pub(super) static KEYS: &[KeyDef] = &[
            $(
                KeyDef {
                    name: stringify!($name),
                    read: Some(|ctx, v, key, line, f| {
                        let parse: fn(&mut ParseCtx<'_>, &Value<'_>, &str) -> Option<$ty> = $parse;
                        f.$name = slot(line, parse(ctx, v, key));
                    }),
                    missing: |layers| resolve(layers, |l| &l.$name).is_none(),
                    differs: |a, b| a.$name != b.$name,
                    set: connection_keys!(@set $set $name),
                    replaces: $replaces,
                },
            )*
            CHILDREN,
        ];
    };
    (@set true $name:ident) => {
        Some(|c, key, value| {
            c.$name = Setting::from_setting(key, value)?;
            Ok(())
        })
    };
    (@set false $name:ident) => {
        None
    };
}

connection_keys! {
    /// Empty = any local address.
    local_addrs: Vec<IpAddr> {
        default: Some(Vec::new()),
        parse: local_addrs,
        set: false,
        replaces: true,
    }
    remote_addrs: Vec<RemoteAddr> {
        default: None,
        parse: remote_addrs,
        set: false,
        replaces: true,
    }
    /// As written.
    local_id: String {
        default: None,
        parse: |ctx, v, key| identity(ctx, v, key, false),
        set: false,
        replaces: true,
    }
    /// As written; may be `%any`.
    remote_id: String {
        default: None,
        parse: |ctx, v, key| identity(ctx, v, key, true),
        set: false,
        replaces: true,
    }
    auth: AuthMethod {
        default: Some(AuthMethod::Psk),
        parse: |ctx, v, key| ctx.choice(v, key, AUTHS),
        set: false,
        replaces: true,
    }
    /// `auth = "pubkey"`: our certificate (PEM or DER; intermediates may
    /// follow it in the same PEM file and are sent along), relative to the
    /// connection's file.
    local_cert: Option<PathBuf> {
        default: Some(None),
        parse: |ctx, v, key| path(ctx, v, key).map(Some),
        set: false,
        replaces: true,
    }
    /// Pin: the peer's certificate chain must end at this CA.
    remote_cacert: Option<PathBuf> {
        default: Some(None),
        parse: |ctx, v, key| path(ctx, v, key).map(Some),
        set: false,
        replaces: true,
    }
    send_cert: ike::pki::SendCert {
        default: Some(ike::pki::SendCert::IfAsked),
        parse: |ctx, v, key| ctx.choice(v, key, SEND_CERTS),
        set: false,
        replaces: true,
    }
    /// `auth = "pubkey"` with an RSA key: sign RSASSA-PSS instead of
    /// PKCS#1 v1.5.
    rsa_pss: bool {
        default: Some(false),
        parse: |ctx, v, key| ctx.boolean(v, key),
        set: false,
        replaces: true,
    }
    proposals: Vec<ProposalSpec> {
        default: Some(default_ike_proposals()),
        parse: ike_proposals,
        set: false,
        replaces: true,
    }
    auto: Auto {
        default: Some(Auto::Add),
        parse: |ctx, v, key| ctx.choice(v, key, AUTOS),
        set: false,
        replaces: true,
    }
    rekey_time: Duration {
        default: Some(Duration::from_secs(4 * 3600)),
        parse: |ctx, v, key| ctx.duration(v, key),
        set: false,
        replaces: true,
    }
    /// Zero = no dead peer detection; otherwise at least 1 s.
    dpd_delay: Duration {
        default: Some(Duration::from_secs(30)),
        parse: |ctx, v, key| floored(ctx, v, key, check_dpd_delay),
        set: true,
        replaces: true,
    }
    dpd_action: DpdAction {
        default: Some(DpdAction::Restart),
        parse: |ctx, v, key| ctx.choice(v, key, DPD_ACTIONS),
        set: false,
        replaces: true,
    }
    /// At least 100 ms.
    retransmit_timeout: Duration {
        default: Some(Duration::from_secs(2)),
        parse: |ctx, v, key| floored(ctx, v, key, check_retransmit_timeout),
        set: true,
        replaces: true,
    }
    retransmit_tries: u32 {
        default: Some(5),
        parse: |ctx, v, key| ctx.uint(v, key),
        set: true,
        replaces: true,
    }
    /// 0 = forever.
    keyingtries: u32 {
        default: Some(3),
        parse: |ctx, v, key| ctx.uint(v, key),
        set: true,
        replaces: true,
    }
    retry_base: Duration {
        default: Some(Duration::from_secs(1)),
        parse: |ctx, v, key| ctx.duration(v, key),
        set: true,
        replaces: true,
    }
    retry_max: Duration {
        default: Some(Duration::from_secs(300)),
        parse: |ctx, v, key| ctx.duration(v, key),
        set: true,
        replaces: true,
    }
    encap: bool {
        default: Some(false),
        parse: |ctx, v, key| ctx.boolean(v, key),
        set: false,
        replaces: true,
    }
    /// CHILD SAs one IKE SA may hold (1..=MAX_CHILD_SAS_LIMIT); past it a
    /// peer's request for a new one gets NO_ADDITIONAL_SAS.
    max_child_sas: u32 {
        default: Some(ike::config::DEFAULT_MAX_CHILD_SAS),
        parse: max_child_sas,
        set: false,
        replaces: true,
    }
    /// IKE fragmentation (RFC 7383): the largest IP datagram (IP and UDP
    /// headers included) an encrypted IKE message may fill before it goes
    /// out in fragments; 0 = no fragmentation (not announced either), else
    /// MIN_FRAGMENT_SIZE..=65535.
    fragment_size: u16 {
        default: Some(ike::config::DEFAULT_FRAGMENT_SIZE),
        parse: fragment_size,
        set: false,
        replaces: true,
    }
}

/// The smallest nonzero `fragment_size`: the IPv4 datagram every host
/// must accept (RFC 791).
pub const MIN_FRAGMENT_SIZE: u16 = ike::config::MIN_FRAGMENT_SIZE;

fn fragment_size(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<u16> {
    let n = ctx.uint(v, key)?;
    match u16::try_from(n) {
        Ok(0) => Some(0),
        Ok(n) if n >= MIN_FRAGMENT_SIZE => Some(n),
        _ => {
            ctx.err(
                v.span(),
                key,
                format!(
                    "invalid value {n}: must be 0 (no fragmentation) or between {MIN_FRAGMENT_SIZE} and 65535"
                ),
            );
            None
        }
    }
}

/// The largest `max_child_sas` accepted.
pub const MAX_CHILD_SAS_LIMIT: u32 = 10_000;

fn max_child_sas(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<u32> {
    let n = ctx.uint(v, key)?;
    if n == 0 || n > MAX_CHILD_SAS_LIMIT {
        ctx.err(
            v.span(),
            key,
            format!("invalid value {n}: must be between 1 and {MAX_CHILD_SAS_LIMIT}"),
        );
        return None;
    }
    Some(n)
}

/// `children`: read by `connection.rs` (it is not allowed in `[defaults]`).
const CHILDREN: KeyDef = KeyDef {
    name: "children",
    read: None,
    missing: |_| false,
    differs: |a, b| a.children != b.children,
    set: None,
    replaces: true,
};

/// The keys `vpnctl set` accepts, in the order messages list them.
pub const SET_KEYS: [&str; 6] = [
    "keyingtries",
    "retry_base",
    "retry_max",
    "retransmit_timeout",
    "retransmit_tries",
    "dpd_delay",
];

/// The connection key named `name`.
pub(super) fn conn_key(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// The names of the connection keys, `children` only if `with_children`.
pub(super) fn key_names(with_children: bool) -> Vec<&'static str> {
    KEYS.iter()
        .map(|k| k.name)
        .filter(|n| with_children || *n != CHILDREN.name)
        .collect()
}

impl ConnectionConfig {
    /// The keys whose values differ between `self` and `other`, in table
    /// order (the reload plan lists them).
    pub fn changed_keys(&self, other: &ConnectionConfig) -> Vec<&'static str> {
        KEYS.iter()
            .filter(|k| (k.differs)(self, other))
            .map(|k| k.name)
            .collect()
    }

    /// Does going from `self` to `other` replace the connection, rather
    /// than hand the running one its new settings?
    pub fn replaced_by(&self, other: &ConnectionConfig) -> bool {
        KEYS.iter().any(|k| k.replaces && (k.differs)(self, other))
    }

    /// `vpnctl set KEY=VALUE`: one runtime setting, checked and stored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let Some(set) = conn_key(key).and_then(|k| k.set) else {
            return Err(format!(
                "unknown setting '{key}': expected one of {}",
                SET_KEYS.join(", ")
            ));
        };
        let mut next = self.clone();
        set(&mut next, key, value)?;
        // The same bounds as in the file.
        let checked = match key {
            "dpd_delay" => check_dpd_delay(next.dpd_delay),
            "retransmit_timeout" => check_retransmit_timeout(next.retransmit_timeout),
            _ => Ok(()),
        };
        checked.map_err(|why| format!("{key}: {why}"))?;
        *self = next;
        Ok(())
    }
}

/// Equality of everything that matters to a running connection: `file` and
/// `line` are ignored so that moving a connection within or between files
/// is not a change.
impl PartialEq for ConnectionConfig {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && KEYS.iter().all(|k| !(k.differs)(self, o))
    }
}

// ---------------------------------------------------------------------------
// Layers: the connection's own table, then `[defaults]`, then built-ins
// ---------------------------------------------------------------------------

/// A key's state in one layer.
#[derive(Clone, Debug, Default)]
pub(super) enum Slot<T> {
    /// Not written.
    #[default]
    Unset,
    /// Written with an invalid value (already reported).
    Bad,
    /// Written at `line`.
    Set(T, usize),
}

fn slot<T>(line: usize, v: Option<T>) -> Slot<T> {
    match v {
        Some(v) => Slot::Set(v, line),
        None => Slot::Bad,
    }
}

fn builtin<T>(default: Option<T>) -> Slot<T> {
    match default {
        Some(v) => Slot::Set(v, 0),
        None => Slot::Unset,
    }
}

/// The first layer that writes the key, and whether it is the first layer
/// (the connection itself).
pub(super) fn resolve<'a, T>(
    layers: &[&'a ConnFields],
    get: impl Fn(&'a ConnFields) -> &'a Slot<T>,
) -> Option<(&'a Slot<T>, bool)> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| (get(l), i == 0))
        .find(|(s, _)| !matches!(s, Slot::Unset))
}

/// The value of a resolved key; `None` if invalid or missing.
pub(super) fn value<T: Clone>(s: Option<(&Slot<T>, bool)>) -> Option<T> {
    match s {
        Some((Slot::Set(v, _), _)) => Some(v.clone()),
        _ => None,
    }
}

/// The line to report a cross-key problem at: where the key is written when
/// the connection itself writes it, else the connection's header.
pub(super) fn line_of<T>(s: Option<(&Slot<T>, bool)>, header: usize) -> usize {
    match s {
        Some((Slot::Set(_, line), true)) => *line,
        _ => header,
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

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

const SEND_CERTS: &[(&str, ike::pki::SendCert)] = &[
    ("ifasked", ike::pki::SendCert::IfAsked),
    ("always", ike::pki::SendCert::Always),
    ("never", ike::pki::SendCert::Never),
];

fn path(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<PathBuf> {
    let s = ctx.string(v, key)?;
    if s.trim().is_empty() {
        ctx.err(v.span(), key, "must not be empty");
        return None;
    }
    Some(PathBuf::from(s))
}

const AUTHS: &[(&str, AuthMethod)] = &[("psk", AuthMethod::Psk), ("pubkey", AuthMethod::Pubkey)];

fn default_ike_proposals() -> Vec<ProposalSpec> {
    ProposalSpec::parse_ike("default").map_or_else(|_| Vec::new(), |p| vec![p])
}

/// `["%any"]` is the empty list (any local address).
fn local_addrs(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<Vec<IpAddr>> {
    let items = ctx.strings(v, key)?;
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
}

fn remote_addrs(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<Vec<RemoteAddr>> {
    ctx.list(v, key, false, |s| {
        if s.trim() == "%any" {
            return Ok(RemoteAddr::Any);
        }
        s.trim()
            .parse()
            .map(RemoteAddr::Ip)
            .map_err(|_| format!("invalid address '{s}': expected an IP address or %any"))
    })
}

/// An identity, kept as written; `%any` only when `allow_any`.
fn identity(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str, allow_any: bool) -> Option<String> {
    let s = ctx.string(v, key)?;
    let why = if s == "%any" {
        if allow_any {
            return Some(s.to_string());
        }
        "'%any' is only allowed for remote_id".to_string()
    } else {
        match ike::config::parse_identity(s) {
            Ok(_) => return Some(s.to_string()),
            Err(e) => e.to_string(),
        }
    };
    ctx.err(v.span(), key, why);
    None
}

fn ike_proposals(ctx: &mut ParseCtx<'_>, v: &Value<'_>, key: &str) -> Option<Vec<ProposalSpec>> {
    ctx.list(v, key, false, |s| {
        ProposalSpec::parse_ike(s).map_err(|e| e.to_string())
    })
}

/// A duration that `check` accepts.
fn floored(
    ctx: &mut ParseCtx<'_>,
    v: &Value<'_>,
    key: &str,
    check: fn(Duration) -> Result<(), String>,
) -> Option<Duration> {
    let d = ctx.duration(v, key)?;
    if let Err(why) = check(d) {
        ctx.err(v.span(), key, why);
        return None;
    }
    Some(d)
}

/// The shortest DPD interval: a peer is not probed more than once a second.
pub const MIN_DPD_DELAY: Duration = Duration::from_secs(1);

/// The shortest first retransmission timeout.
pub const MIN_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(100);

/// `dpd_delay`: 0 (off) or at least [`MIN_DPD_DELAY`].
fn check_dpd_delay(d: Duration) -> Result<(), String> {
    if !d.is_zero() && d < MIN_DPD_DELAY {
        return Err(format!(
            "{} is below the minimum of {} (0 turns dead peer detection off)",
            format_duration(d),
            format_duration(MIN_DPD_DELAY)
        ));
    }
    Ok(())
}

/// `retransmit_timeout`: at least [`MIN_RETRANSMIT_TIMEOUT`].
fn check_retransmit_timeout(d: Duration) -> Result<(), String> {
    if d < MIN_RETRANSMIT_TIMEOUT {
        return Err(format!(
            "{} is below the minimum of {}",
            format_duration(d),
            format_duration(MIN_RETRANSMIT_TIMEOUT)
        ));
    }
    Ok(())
}

/// A value `vpnctl set KEY=VALUE` can give a key.
trait Setting: Sized {
    fn from_setting(key: &str, value: &str) -> Result<Self, String>;
}

impl Setting for Duration {
    fn from_setting(key: &str, value: &str) -> Result<Self, String> {
        parse_duration(value).map_err(|e| format!("{key}: {e}"))
    }
}

impl Setting for u32 {
    fn from_setting(key: &str, value: &str) -> Result<Self, String> {
        value
            .parse::<u32>()
            .map_err(|_| format!("{key}: '{value}' is not a whole number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keys_are_the_settable_keys() {
        let mut settable: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.set.is_some())
            .map(|k| k.name)
            .collect();
        let mut listed = SET_KEYS.to_vec();
        settable.sort_unstable();
        listed.sort_unstable();
        assert_eq!(settable, listed);
    }

    fn connection() -> ConnectionConfig {
        let mut f = ConnFields::builtin();
        f.remote_addrs = Slot::Set(vec![RemoteAddr::Any], 2);
        f.local_id = Slot::Set("a.test".into(), 3);
        f.remote_id = Slot::Set("%any".into(), 4);
        ConnFields::connection(&[&f], "c".into(), Vec::new(), PathBuf::from("x"), 1)
            .expect("every required key is set")
    }

    #[test]
    fn set_and_diff_come_from_the_table() {
        let a = connection();
        assert_eq!(a.keyingtries, 3);
        let mut b = a.clone();
        b.line = 9;
        assert_eq!(a, b, "position is not part of equality");
        b.set("retry_base", "4s").unwrap();
        b.set("keyingtries", "0").unwrap();
        assert_eq!(b.retry_base, Duration::from_secs(4));
        assert_eq!(a.changed_keys(&b), ["keyingtries", "retry_base"]);
        assert!(a.replaced_by(&b));
        assert_ne!(a, b);
        assert_eq!(
            b.set("auto", "start").unwrap_err(),
            "unknown setting 'auto': expected one of keyingtries, retry_base, retry_max, \
             retransmit_timeout, retransmit_tries, dpd_delay"
        );
        assert_eq!(
            b.set("keyingtries", "x").unwrap_err(),
            "keyingtries: 'x' is not a whole number"
        );
    }

    #[test]
    fn set_keeps_the_floors_of_the_file() {
        let mut c = connection();
        assert_eq!(
            c.set("dpd_delay", "1ms").unwrap_err(),
            "dpd_delay: 1ms is below the minimum of 1s (0 turns dead peer detection off)"
        );
        assert_eq!(c.dpd_delay, Duration::from_secs(30), "unchanged");
        c.set("dpd_delay", "0").unwrap();
        assert!(c.dpd_delay.is_zero());
        c.set("dpd_delay", "1s").unwrap();
        assert_eq!(
            c.set("retransmit_timeout", "50ms").unwrap_err(),
            "retransmit_timeout: 50ms is below the minimum of 100ms"
        );
        assert_eq!(
            c.set("retransmit_timeout", "0").unwrap_err(),
            "retransmit_timeout: 0s is below the minimum of 100ms"
        );
        assert_eq!(c.retransmit_timeout, Duration::from_secs(2));
        c.set("retransmit_timeout", "100ms").unwrap();
        assert_eq!(c.retransmit_timeout, Duration::from_millis(100));
    }
}
