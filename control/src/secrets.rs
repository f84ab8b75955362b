//! Pre-shared keys from the secrets files that `[daemon] secrets` names:
//!
//! ```toml
//! [[psk]]
//! ids = ["a.test", "b.test"]
//! secret = "..."
//! ```
//!
//! Private keys for certificate authentication (`auth = "pubkey"`):
//!
//! ```toml
//! [[key]]
//! file = "keys/gw.pem"     # PKCS#8, SEC1 EC or PKCS#1 RSA; PEM or DER
//! passphrase = "..."       # if it is an encrypted PKCS#8 key
//! ```
//!
//! `file` is relative to the secrets file's directory. A connection's
//! `local_cert` takes the key whose public key is the certificate's.
//! Passphrases are zeroized after use and never appear in errors.
//!
//! `ids` names the identities a secret serves (local or remote); `"%any"`
//! matches any identity. A secret is taken as written, or as bytes when it
//! starts with `0x` (hex) or `0s` (base64), as in strongSwan. Secrets are
//! zeroized when dropped and never appear in errors or `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};

use ike::config::{parse_identity, Psk};
use ike::wire::Identification;
use rustls_pki_types::CertificateDer;
use toml::de::DeValue;
use zeroize::Zeroizing;

use crate::config::error::{sort_by_position, ConfigError, ConfigErrors};
use crate::config::reader::{entries, join, parse_document, ParseCtx, Source, Value};

/// The loaded pre-shared keys.
#[derive(Clone, Default)]
pub struct Secrets {
    psks: Vec<PskEntry>,
    keys: Vec<KeyEntry>,
    /// Trust anchors from `[daemon] cacerts` and CRLs from `[daemon] crls`.
    cas: std::sync::Arc<ike::pki::TrustStore>,
    /// The file each of `cas.cas` and `cas.crls` came from, in order.
    ca_files: Vec<PathBuf>,
    crl_files: Vec<PathBuf>,
}

#[derive(Clone)]
struct KeyEntry {
    file: PathBuf,
    key: std::sync::Arc<ike::pki::SigningKey>,
}

#[derive(Clone)]
struct PskEntry {
    /// As written, for `Debug`.
    names: Vec<String>,
    ids: Vec<SecretId>,
    secret: Zeroizing<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SecretId {
    Any,
    Id(Identification),
}

/// How well an entry's ids match one identity (strongSwan's id_match_t).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    None,
    Any,
    Perfect,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entry<'a>(&'a PskEntry);
        impl fmt::Debug for Entry<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Psk")
                    .field("ids", &self.0.names)
                    .field("secret", &format_args!("<redacted>"))
                    .finish()
            }
        }
        f.debug_struct("Secrets")
            .field("psk", &self.psks.iter().map(Entry).collect::<Vec<_>>())
            .field(
                "key",
                &self.keys.iter().map(|k| &k.file).collect::<Vec<_>>(),
            )
            .field("cacerts", &self.cas.cas.len())
            .field("crls", &self.cas.crls.len())
            .finish()
    }
}

const FILE_KEYS: &[&str] = &["psk", "key"];
const KEY_KEYS: &[&str] = &["file", "passphrase"];
const PSK_KEYS: &[&str] = &["ids", "secret"];

impl Secrets {
    pub fn empty() -> Secrets {
        Secrets::default()
    }

    /// Reads the secrets files in order. A path with glob characters
    /// (`*?[`) is expanded (matching nothing is fine); a literal path must
    /// exist. Returns warnings for files readable by group or others.
    pub fn load(files: &[PathBuf]) -> Result<(Secrets, Vec<String>), ConfigErrors> {
        let mut secrets = Secrets::empty();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let text = path.to_string_lossy();
            if text.contains(['*', '?', '[']) {
                match glob::glob(&text) {
                    Ok(paths) => {
                        let mut found: Vec<PathBuf> =
                            paths.flatten().filter(|p| p.is_file()).collect();
                        found.sort();
                        for p in found {
                            secrets.load_file(&p, &mut warnings, &mut errors);
                        }
                    }
                    Err(e) => errors.push(ConfigError::whole_file(
                        path,
                        format!("invalid pattern: {}", e.msg),
                    )),
                }
            } else {
                secrets.load_file(path, &mut warnings, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok((secrets, warnings))
        } else {
            sort_by_position(&mut errors);
            Err(ConfigErrors(errors))
        }
    }

    fn load_file(
        &mut self,
        path: &Path,
        warnings: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        let text = match read_secret_file(path, warnings) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::whole_file(path, format!("cannot read: {e}")));
                return;
            }
        };
        let src = Source::new(path, &text);
        let doc = match parse_document(&src, &text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        let mut ctx = ParseCtx::secrets(&src, errors);
        for (k, v) in entries(&doc) {
            if k.get_ref() == "key" {
                let DeValue::Array(items) = v.get_ref() else {
                    ctx.err(v.span(), "key", "expected [[key]] tables");
                    continue;
                };
                let dir = path.parent().unwrap_or(Path::new("."));
                for item in items.iter() {
                    if let Some(entry) = parse_key(&mut ctx, item, dir) {
                        self.keys.push(entry);
                    }
                }
                continue;
            }
            if k.get_ref() != "psk" {
                ctx.unknown_key(k, &join("", k.get_ref()), FILE_KEYS);
                continue;
            }
            let DeValue::Array(items) = v.get_ref() else {
                ctx.err(
                    v.span(),
                    "psk",
                    format!(
                        "expected [[psk]] tables, found a {}",
                        v.get_ref().type_str()
                    ),
                );
                continue;
            };
            for item in items.iter() {
                if let Some(entry) = parse_entry(&mut ctx, item) {
                    self.psks.push(entry);
                }
            }
        }
    }

    /// The pre-shared key for a connection between `local_id` and
    /// `remote_id`, with strongSwan's rules: an entry matches when one of
    /// its ids matches either identity (`%any` matches any); among matching
    /// entries the best match of the remote identity wins, then the best
    /// match of the local one (exact beats `%any`), then the first in file
    /// order. So an entry naming both identities wins over one naming only
    /// one of them. `None` if no entry matches.
    pub fn psk_for(&self, local_id: &str, remote_id: &str) -> Option<Psk> {
        let local = query(local_id);
        let remote = query(remote_id);
        let mut best: Option<(&PskEntry, (Match, Match))> = None;
        for e in &self.psks {
            let score = (e.matches(&remote), e.matches(&local));
            if score == (Match::None, Match::None) {
                continue;
            }
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((e, score));
            }
        }
        best.map(|(e, _)| Psk(Zeroizing::new(e.secret.to_vec())))
    }

    /// The private key (and its file) whose public key is `public_key`.
    pub fn key_for(
        &self,
        public_key: &[u8],
    ) -> Option<(&Path, std::sync::Arc<ike::pki::SigningKey>)> {
        self.keys
            .iter()
            .find(|k| k.key.public_key() == public_key)
            .map(|k| (k.file.as_path(), k.key.clone()))
    }

    /// The files of the `[[key]]` entries.
    pub fn key_files(&self) -> Vec<&Path> {
        self.keys.iter().map(|k| k.file.as_path()).collect()
    }

    /// The trust anchors (`[daemon] cacerts`).
    pub fn cacerts(&self) -> std::sync::Arc<ike::pki::TrustStore> {
        self.cas.clone()
    }

    /// The CA certificates with the file each came from.
    pub fn ca_files(&self) -> impl Iterator<Item = (&CertificateDer<'static>, &Path)> {
        self.cas
            .cas
            .iter()
            .zip(self.ca_files.iter().map(|p| p.as_path()))
    }

    /// The CRLs with the file each came from.
    pub fn crl_files(&self) -> impl Iterator<Item = (&ike::pki::Crl, &Path)> {
        self.cas
            .crls
            .iter()
            .zip(self.crl_files.iter().map(|p| p.as_path()))
    }

    /// Everything `rereadsecrets` reads: the secrets files, then
    /// `[daemon] cacerts` and `crls` (`main` names the file that lists
    /// them, for errors).
    pub fn reload(
        daemon: &crate::config::DaemonConfig,
        main: &Path,
    ) -> Result<(Secrets, Vec<String>), ConfigErrors> {
        let (mut s, mut w) = Secrets::load(&daemon.secrets)?;
        let more = s
            .load_trust(&daemon.cacerts, &daemon.crls)
            .map_err(|e| ConfigErrors(vec![ConfigError::whole_file(main, e)]))?;
        w.extend(more);
        Ok((s, w))
    }

    /// Load `[daemon] cacerts` and `[daemon] crls`: files (PEM, possibly
    /// several certificates or CRLs, or DER) and directories (every
    /// regular file in them). Of several CRLs by one issuer the newest is
    /// kept. Errors name the file; warnings name expired CRLs (they are
    /// still used: what they list stays revoked).
    pub fn load_trust(
        &mut self,
        cacerts: &[PathBuf],
        crls: &[PathBuf],
    ) -> Result<Vec<String>, String> {
        let mut cas = Vec::new();
        let mut ca_files = Vec::new();
        for f in expand(cacerts, "cacerts")? {
            let bytes = std::fs::read(&f)
                .map_err(|e| format!("cannot read CA certificate '{}': {e}", f.display()))?;
            let certs = ike::pki::parse_certificates(&bytes)
                .map_err(|e| format!("CA certificate '{}': {e}", f.display()))?;
            ca_files.extend(std::iter::repeat_n(f.clone(), certs.len()));
            cas.extend(certs);
        }
        let mut all = Vec::new();
        for f in expand(crls, "crls")? {
            let bytes =
                std::fs::read(&f).map_err(|e| format!("cannot read CRL '{}': {e}", f.display()))?;
            let list =
                ike::pki::parse_crls(&bytes).map_err(|e| format!("CRL '{}': {e}", f.display()))?;
            all.extend(list.into_iter().map(|c| (c, f.clone())));
        }
        // The newest CRL per issuer (latest thisUpdate; the later file on a tie).
        let mut kept: Vec<(ike::pki::Crl, PathBuf)> = Vec::new();
        for (c, f) in all {
            match kept.iter_mut().find(|(o, _)| o.issuer_der == c.issuer_der) {
                Some(o) if c.this_update >= o.0.this_update => *o = (c, f),
                Some(_) => {}
                None => kept.push((c, f)),
            }
        }
        let now = unix_now();
        let warnings = kept
            .iter()
            .filter(|(c, _)| c.is_expired(now))
            .map(|(c, f)| {
                format!(
                    "CRL '{}' of '{}' expired at {} (nextUpdate); it is still used: the certificates it lists stay revoked",
                    f.display(),
                    c.issuer,
                    ike::pki::utc_string(c.next_update.unwrap_or(0))
                )
            })
            .collect();
        let (crls, crl_files) = kept.into_iter().unzip();
        self.cas = std::sync::Arc::new(ike::pki::TrustStore { cas, crls });
        self.ca_files = ca_files;
        self.crl_files = crl_files;
        Ok(warnings)
    }

    /// Is `cert` listed by a loaded CRL of its issuer?
    pub fn is_revoked(&self, cert: &[u8]) -> bool {
        self.cas.crls.iter().any(|c| c.lists(cert))
    }

    /// Number of `[[psk]]` entries.
    pub fn len(&self) -> usize {
        self.psks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.psks.is_empty()
    }
}

/// The files of `paths`: a directory stands for its regular files, sorted
/// (`what` names the key in errors).
fn expand(paths: &[PathBuf], what: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read {what} directory '{}': {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file())
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An identity to look up: `None` is `%any` (or unparsable: matches only
/// `%any` entries).
fn query(id: &str) -> Option<Identification> {
    if id == "%any" {
        None
    } else {
        parse_identity(id).ok()
    }
}

impl PskEntry {
    fn matches(&self, id: &Option<Identification>) -> Match {
        self.ids
            .iter()
            .map(|s| match (s, id) {
                (SecretId::Any, _) => Match::Any,
                (SecretId::Id(a), Some(b)) if a == b => Match::Perfect,
                _ => Match::None,
            })
            .max()
            .unwrap_or(Match::None)
    }
}

/// Reads a secrets file into zeroized memory (sized up front so the buffer
/// is not reallocated), warning when group or others may read it.
fn read_secret_file(path: &Path, warnings: &mut Vec<String>) -> std::io::Result<Zeroizing<String>> {
    let (f, meta) = crate::config::file::open_regular(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let who = if mode & 0o004 != 0 {
                "readable by others"
            } else if mode & 0o040 != 0 {
                "readable by group"
            } else {
                "accessible by group or others"
            };
            warnings.push(format!(
                "secrets file '{}' is {who} (mode {mode:04o}); chmod 600 it",
                path.display()
            ));
        }
    }
    let len = usize::try_from(meta.len()).unwrap_or(0);
    let mut text = Zeroizing::new(String::with_capacity(len + 1));
    crate::config::file::read_bounded(f, &mut text)?;
    Ok(text)
}

fn parse_entry(ctx: &mut ParseCtx<'_>, item: &Value<'_>) -> Option<PskEntry> {
    let t = ctx.table(item, "psk")?;
    let before = ctx.error_count();
    let mut ids = None;
    let mut secret = None;
    for (k, v) in entries(t) {
        let key = join("psk", k.get_ref());
        match k.get_ref().as_ref() {
            "ids" => {
                ids = ctx.list(v, &key, false, |s| {
                    if s == "%any" {
                        Ok((s.to_string(), SecretId::Any))
                    } else {
                        parse_identity(s)
                            .map(|id| (s.to_string(), SecretId::Id(id)))
                            .map_err(|e| e.to_string())
                    }
                })
            }
            "secret" => {
                if let Some(s) = ctx.string(v, &key) {
                    match decode_secret(s) {
                        Ok(b) => secret = Some(b),
                        Err(why) => ctx.err(v.span(), &key, why),
                    }
                }
            }
            _ => ctx.unknown_key(k, &key, PSK_KEYS),
        }
    }
    for (present, name) in [
        (t.contains_key("ids"), "ids"),
        (t.contains_key("secret"), "secret"),
    ] {
        if !present {
            ctx.err_key(item.span(), &join("psk", name), "missing (required)");
        }
    }
    if ctx.error_count() != before {
        return None;
    }
    let (names, ids) = ids?.into_iter().unzip();
    Some(PskEntry {
        names,
        ids,
        secret: secret?,
    })
}

fn parse_key(ctx: &mut ParseCtx<'_>, item: &Value<'_>, dir: &Path) -> Option<KeyEntry> {
    let t = ctx.table(item, "key")?;
    let mut file = None;
    let mut passphrase: Option<Zeroizing<Vec<u8>>> = None;
    for (k, v) in entries(t) {
        let key = join("key", k.get_ref());
        match k.get_ref().as_ref() {
            "file" => {
                if let Some(s) = ctx.string(v, &key) {
                    file = Some((dir.join(s), v.span()));
                }
            }
            "passphrase" => {
                if let Some(p) = ctx.string(v, &key) {
                    passphrase = Some(Zeroizing::new(p.as_bytes().to_vec()));
                }
            }
            _ => ctx.unknown_key(k, &key, KEY_KEYS),
        }
    }
    let Some((file, span)) = file else {
        ctx.err_key(item.span(), "key.file", "missing (required)");
        return None;
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => Zeroizing::new(b),
        Err(e) => {
            ctx.err(
                span,
                "key.file",
                format!("cannot read '{}': {e}", file.display()),
            );
            return None;
        }
    };
    let parsed = match &passphrase {
        Some(p) => ike::pki::parse_private_key_with_passphrase(&bytes, p),
        None => ike::pki::parse_private_key(&bytes),
    };
    match parsed {
        Ok(key) => Some(KeyEntry {
            file,
            key: std::sync::Arc::new(key),
        }),
        Err(e) => {
            ctx.err(span, "key.file", format!("'{}': {e}", file.display()));
            None
        }
    }
}

/// The secret's bytes: `0x` hex, `0s` base64, or the string itself. Errors
/// never include the secret.
fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let out = if let Some(hex) = s.strip_prefix("0x") {
        decode_hex(hex).ok_or("invalid hex secret after '0x'")?
    } else if let Some(b64) = s.strip_prefix("0s") {
        decode_base64(b64).ok_or("invalid base64 secret after '0s'")?
    } else {
        Zeroizing::new(s.as_bytes().to_vec())
    };
    if out.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let s = s.as_bytes();
    if s.len() & 1 == 1 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.chunks(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

fn decode_base64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() * 3 / 4));
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | value(c)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(&**decode_secret("0x6869").unwrap(), b"hi");
        assert_eq!(&**decode_secret("0saGk=").unwrap(), b"hi");
        assert_eq!(&**decode_secret("0saGVsbG8").unwrap(), b"hello");
        assert_eq!(&**decode_secret("0sYWJj").unwrap(), b"abc");
        assert_eq!(&**decode_secret("plain").unwrap(), b"plain");
        assert!(decode_secret("0x6").is_err());
        assert!(decode_secret("0xzz").is_err());
        assert!(decode_secret("0s!!").is_err());
        assert!(decode_secret("").is_err());
    }
}
