//! `[connections.NAME]`, its children and `[defaults]`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ike::proposal::ProposalSpec;
use ike::wire::TrafficSelector;
use toml::de::DeTable;

use super::error::{ConfigError, Quoted};
use super::keys::{
    conn_key, key_names, line_of, resolve, value, ConnFields, ConnectionConfig, KEYS,
};
use super::reader::{entries, join, Key, ParseCtx, Value};
use super::{format_duration, Auto};
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
    /// `pfs = "require"`: a rekey only with a KE of one of the
    /// `esp_proposals` groups (strongSwan's and Libreswan's strictness);
    /// `"prefer"` (the default) proposes it and drops it for a peer that
    /// refuses it.
    pub pfs_required: bool,
    /// strongSwan's `mark_in`, `mark_out`, `if_id_in`, `if_id_out`
    /// (`dataplane = "xfrm"`).
    pub xfrm: kernel::XfrmOptions,
}

/// The longest wait between two retransmissions.
pub const RETRANSMIT_MAX_TIMEOUT: Duration = Duration::from_secs(60);

impl ConnectionConfig {
    /// The ike view. `secrets` resolves the PSK (None if no secret matches:
    /// ike reports that at auth time).
    pub fn to_peer_config(&self, secrets: &Secrets) -> Result<ike::config::PeerConfig, String> {
        let mut local_id =
            ike::config::parse_identity(&self.local_id).map_err(|e| e.to_string())?;
        let pubkey = match self.auth {
            AuthMethod::Psk => None,
            AuthMethod::Pubkey => Some(std::sync::Arc::new(
                self.pubkey_auth(secrets, &mut local_id)?,
            )),
        };
        let remote_id = if self.remote_id == "%any" {
            None
        } else {
            Some(ike::config::parse_identity(&self.remote_id).map_err(|e| e.to_string())?)
        };
        Ok(ike::config::PeerConfig {
            name: self.name.clone(),
            local_id,
            remote_id,
            psk: match self.auth {
                AuthMethod::Psk => secrets.psk_for(&self.local_id, &self.remote_id),
                AuthMethod::Pubkey => None,
            },
            pubkey,
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
                    pfs_required: c.pfs_required,
                })
                .collect(),
            encap: self.encap,
            retransmit: ike::config::Retransmit {
                timeout: self.retransmit_timeout,
                tries: self.retransmit_tries,
                max_timeout: RETRANSMIT_MAX_TIMEOUT.max(self.retransmit_timeout),
            },
            initial_contact: true,
            max_child_sas: self.max_child_sas,
            fragment_size: self.fragment_size,
        })
    }

    /// Its `local_cert` file, resolved.
    pub fn local_cert_path(&self) -> Option<PathBuf> {
        self.local_cert.as_ref().map(|p| self.resolve_path(p))
    }

    /// A path of this connection's, relative to its file's directory.
    fn resolve_path(&self, p: &std::path::Path) -> PathBuf {
        self.file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(p)
    }

    /// `auth = pubkey`: our certificate and its key from `secrets`, the
    /// trust anchors, the pin. A DN `local_id` becomes the certificate's
    /// subject exactly as encoded there; an identity the certificate does
    /// not hold is refused.
    fn pubkey_auth(
        &self,
        secrets: &Secrets,
        local_id: &mut ike::wire::Identification,
    ) -> Result<ike::pki::PubkeyAuth, String> {
        use ike::pki;
        let cert_path = self
            .local_cert
            .as_ref()
            .ok_or("auth = pubkey needs local_cert (our certificate)")?;
        let cert_path = self.resolve_path(cert_path);
        let shown = cert_path.display().to_string();
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| format!("cannot read '{}': {e}", p.display()))
                .and_then(|b| {
                    pki::parse_certificates(&b).map_err(|e| format!("'{}': {e}", p.display()))
                })
        };
        let chain = read(&cert_path)?;
        let public = pki::cert_public_key(&chain[0]).map_err(|e| format!("'{shown}': {e}"))?;
        let Some((_, key)) = secrets.key_for(&public) else {
            let files: Vec<String> = secrets
                .key_files()
                .iter()
                .map(|f| format!("'{}'", f.display()))
                .collect();
            return Err(format!(
                "no private key matches certificate '{shown}' (keys in the secrets files: {})",
                if files.is_empty() {
                    "none".to_string()
                } else {
                    files.join(", ")
                }
            ));
        };
        let local = pki::LocalCert::new(chain, key, &shown).map_err(|e| e.to_string())?;
        if local_id.id_type == ike::wire::IdType::ID_DER_ASN1_DN {
            let subject = pki::subject_der(local.cert()).map_err(|e| e.to_string())?;
            if pki::dn_matches(&local_id.data, &subject) {
                local_id.data = subject;
            }
        }
        if !pki::cert_has_identity(local.cert(), local_id) {
            return Err(format!(
                "local_id '{}' is not in certificate '{shown}' (subject '{}')",
                self.local_id,
                pki::subject_string(local.cert())
            ));
        }
        let remote_cacert = match &self.remote_cacert {
            Some(p) => Some(read(&self.resolve_path(p))?.remove(0)),
            None => None,
        };
        Ok(pki::PubkeyAuth {
            local: Some(std::sync::Arc::new(local)),
            trust: secrets.cacerts(),
            remote_cacert,
            send_cert: self.send_cert,
            rsa_pss: self.rsa_pss,
        })
    }

    pub fn child(&self, name: &str) -> Option<&ChildConfig> {
        self.children.iter().find(|c| c.name == name)
    }
}

pub(super) const CHILD_KEYS: &[&str] = &[
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
    "pfs",
    "mark_in",
    "mark_out",
    "if_id_in",
    "if_id_out",
];

/// A mark as strongSwan writes it: `value[/mask]`, decimal or `0x` hex, as
/// a string or an integer; the mask defaults to 0xffffffff.
pub fn parse_mark(s: &str) -> Result<(u32, u32), String> {
    let num = |t: &str| {
        let t = t.trim();
        let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => t.parse::<u32>(),
        };
        r.map_err(|_| format!("invalid number '{t}' (a 32-bit value, decimal or 0x hex)"))
    };
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (num(v)?, num(m)?),
        None => (num(s)?, u32::MAX),
    };
    if v & !m != 0 {
        return Err(format!("value 0x{v:x} has bits outside its mask 0x{m:x}"));
    }
    Ok((v, m))
}

const PFS: &[(&str, bool)] = &[("prefer", false), ("require", true)];

const MODES: &[(&str, ike::config::Mode)] = &[
    ("tunnel", ike::config::Mode::Tunnel),
    ("transport", ike::config::Mode::Transport),
];

pub(super) fn parse_connections(
    ctx: &mut ParseCtx<'_>,
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
            ctx.err_key(k.span(), &key, message);
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

/// Parses the connection keys of `t`; returns them and the `children` value.
pub(super) fn parse_conn_fields<'t, 'i>(
    ctx: &mut ParseCtx<'_>,
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
        if name == "children" {
            if in_defaults {
                ctx.err_key(
                    k.span(),
                    key,
                    "children cannot be set in [defaults]: each connection defines its own",
                );
            } else {
                children = Some((k, v));
            }
        } else if let Some(read) = conn_key(name).and_then(|d| d.read) {
            read(ctx, v, key, line, &mut f);
        } else if CHILD_KEYS.contains(&name) {
            let conn = if in_defaults {
                "connections.CONN"
            } else {
                prefix
            };
            ctx.err_key(
                k.span(),
                key,
                format!("unknown key '{name}' (it belongs in a child: [{conn}.children.NAME])"),
            );
        } else {
            ctx.unknown_key(k, key, &key_names(!in_defaults));
        }
    }
    (f, children)
}

fn build_connection(
    ctx: &mut ParseCtx<'_>,
    k: &Key<'_>,
    v: &Value<'_>,
    defaults: &[&ConnFields],
) -> Option<ConnectionConfig> {
    let name = k.get_ref().as_ref();
    let prefix = join("connections", name);
    let header = ctx.line(&k.span());
    let before = ctx.error_count();
    if !valid_name(name) {
        ctx.err_key(
            k.span(),
            &prefix,
            format!("invalid connection name '{name}': use letters, digits, '.', '-' and '_'"),
        );
    }
    let t = ctx.table(v, &prefix)?;
    let (fields, children_v) = parse_conn_fields(ctx, t, &prefix, false);
    let builtin = ConnFields::builtin();
    let mut layers = vec![&fields];
    layers.extend_from_slice(defaults);
    layers.push(&builtin);

    for key in KEYS.iter().filter(|key| (key.missing)(&layers)) {
        ctx.err_key(
            k.span(),
            &join(&prefix, key.name),
            "missing (required; set it here or in [defaults])",
        );
    }

    let remote_addrs = resolve(&layers, |l| &l.remote_addrs);
    let auto_s = resolve(&layers, |l| &l.auto);
    if let (Some(auto @ (Auto::Start | Auto::Route)), Some(addrs)) =
        (value(auto_s), value(remote_addrs))
    {
        if addrs.iter().all(|a| *a == RemoteAddr::Any) {
            ctx.errors.push(ConfigError {
                file: ctx.src.path.clone(),
                line: Some(line_of(auto_s, line_of(remote_addrs, header))),
                key: join(&prefix, "auto"),
                message: format!(
                    "auto = '{}' cannot initiate to remote_addrs = [\"%any\"]: \
                     name the peer's address or use auto = 'add'",
                    auto.as_str()
                ),
                quoted: Quoted::Withheld,
            });
        }
    }

    let base_s = resolve(&layers, |l| &l.retry_base);
    let max_s = resolve(&layers, |l| &l.retry_max);
    if let (Some(b), Some(m)) = (value(base_s), value(max_s)) {
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
                quoted: Quoted::Withheld,
            });
        }
    }

    let children = build_children(ctx, k, &prefix, children_v);
    let conn = ConnFields::connection(
        &layers,
        name.to_string(),
        children?,
        ctx.src.path.clone(),
        header,
    )?;
    (ctx.error_count() == before).then_some(conn)
}

fn default_esp_proposals() -> Vec<ProposalSpec> {
    ProposalSpec::parse_esp("default").map_or_else(|_| Vec::new(), |p| vec![p])
}

fn build_children(
    ctx: &mut ParseCtx<'_>,
    conn_key: &Key<'_>,
    prefix: &str,
    v: Option<(&Key<'_>, &Value<'_>)>,
) -> Option<Vec<ChildConfig>> {
    let key = join(prefix, "children");
    let missing = format!(
        "missing: a connection needs at least one child ([{key}.NAME] with local_ts and remote_ts)"
    );
    let Some((_, v)) = v else {
        ctx.err_key(conn_key.span(), &key, missing);
        return None;
    };
    let t = ctx.table(v, &key)?;
    if t.is_empty() {
        ctx.err_key(v.span(), &key, missing);
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
    ctx: &mut ParseCtx<'_>,
    children_key: &str,
    k: &Key<'_>,
    v: &Value<'_>,
) -> Option<ChildConfig> {
    let name = k.get_ref().as_ref();
    let prefix = join(children_key, name);
    let before = ctx.error_count();
    if !valid_name(name) {
        ctx.err_key(
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
    let mut xfrm = kernel::XfrmOptions::default();
    let mut life_time = None;
    let mut pfs_required = Some(false);
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
            "pfs" => pfs_required = ctx.choice(cv, key, PFS),
            "mark_in" | "mark_out" | "if_id_in" | "if_id_out" => {
                let text = match cv.get_ref() {
                    toml::de::DeValue::Integer(i) => Some(i.to_string()),
                    _ => ctx.string(cv, key).map(str::to_string),
                };
                let Some(text) = text else { continue };
                let parsed = if cname.starts_with("mark") {
                    parse_mark(&text)
                } else {
                    parse_mark(&text).and_then(|(v, m)| {
                        if m != u32::MAX {
                            Err("an interface id has no mask".to_string())
                        } else if v == 0 {
                            Err("must not be 0 (0 means unset)".to_string())
                        } else {
                            Ok((v, m))
                        }
                    })
                };
                match (parsed, cname) {
                    (Err(e), _) => ctx.err(cv.span(), key, e),
                    (Ok(m), "mark_in") => xfrm.mark_in = m,
                    (Ok(m), "mark_out") => xfrm.mark_out = m,
                    (Ok((v, _)), "if_id_in") => xfrm.if_id_in = v,
                    (Ok((v, _)), _) => xfrm.if_id_out = v,
                }
            }
            "updown" => match ctx.string(cv, key) {
                Some("") => ctx.err(cv.span(), key, "must not be empty"),
                Some(s) => updown = Some(PathBuf::from(s)),
                None => {}
            },
            _ if conn_key(cname).is_some() => ctx.err_key(
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
            ctx.err_key(k.span(), &join(&prefix, which), "missing (required)");
        }
    }
    for (soft, hard, what) in [
        (volume[0], volume[1], "bytes"),
        (volume[2], volume[3], "packets"),
    ] {
        if soft != 0 && hard != 0 && soft >= hard {
            ctx.err_across(
                k.span(),
                &join(&prefix, &format!("rekey_{what}")),
                format!("rekey_{what} ({soft}) must be below life_{what} ({hard})"),
            );
        }
    }
    if let (Some(r), Some(l)) = (rekey_time, life_time) {
        if !r.is_zero() && l <= r {
            ctx.err_across(
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
        pfs_required: pfs_required?,
        xfrm,
    };
    if child.pfs_required && child.esp_proposals.iter().all(|p| p.dh.is_empty()) {
        ctx.err_across(
            k.span(),
            &join(&prefix, "pfs"),
            "pfs = \"require\" needs a group in esp_proposals (e.g. \"aes256gcm16-x25519\")",
        );
        return None;
    }
    (ctx.error_count() == before).then_some(child)
}
