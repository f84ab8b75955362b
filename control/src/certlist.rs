//! `vpnctl list-certs`: the loaded certificates (our own with their
//! intermediates, the CA certificates), whether we hold each one's private
//! key, its revocation status, and the loaded CRLs, as strongSwan's
//! `swanctl --list-certs` shows them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secrets::Secrets;

/// `list-certs --json`: one object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertsReport {
    pub certs: Vec<CertEntry>,
    pub crls: Vec<CrlEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertEntry {
    /// local (a connection's `local_cert`), intermediate (in a
    /// `local_cert` file after the first), ca (`[daemon] cacerts`).
    pub role: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    /// Hex, ':' between bytes.
    pub serial: String,
    /// UTC, `2026-12-01T19:50:33Z`.
    pub not_before: String,
    pub not_after: String,
    /// e.g. "ECDSA P-256", "RSA 3072", "Ed25519".
    pub key_type: String,
    pub has_private_key: bool,
    pub ca: bool,
    /// The file it was loaded from.
    pub source: String,
    /// A loaded CRL of its issuer lists it.
    pub revoked: bool,
    /// The connections whose `local_cert` it is (role local/intermediate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrlEntry {
    pub issuer: String,
    pub this_update: String,
    pub next_update: Option<String>,
    /// Its nextUpdate has passed (it is still used).
    pub expired: bool,
    /// Number of revoked serials it lists.
    pub revoked_count: usize,
    pub revoked_serials: Vec<String>,
    /// Its cRLNumber, hex.
    pub number: Option<String>,
    pub source: String,
}

/// The `local_cert` files of `config`'s connections (not `auto =
/// "ignore"`), with the connection's name.
pub fn local_certs(config: &crate::config::Config) -> Vec<(String, PathBuf)> {
    config
        .connections
        .iter()
        .filter(|c| c.auto != crate::config::Auto::Ignore)
        .filter_map(|c| c.local_cert_path().map(|p| (c.name.clone(), p)))
        .collect()
}

/// The report from `secrets` (keys, CAs, CRLs) and the `local_cert` files
/// of `local` (connection name, certificate file). Reads those files (call
/// it off the async runtime). A file that cannot be read is reported as an
/// entry with the error as its subject rather than hiding the rest.
pub fn report(secrets: &Secrets, local: &[(String, PathBuf)]) -> CertsReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut certs: Vec<CertEntry> = Vec::new();
    let mut files: Vec<(&Path, Vec<&str>)> = Vec::new();
    for (name, path) in local {
        match files.iter_mut().find(|(p, _)| *p == path.as_path()) {
            Some((_, names)) => names.push(name),
            None => files.push((path, vec![name])),
        }
    }
    for (path, names) in files {
        let chain = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| ike::pki::parse_certificates(&b).map_err(|e| e.to_string()));
        let chain = match chain {
            Ok(c) => c,
            Err(e) => {
                certs.push(unreadable(path, &e, &names));
                continue;
            }
        };
        for (i, der) in chain.iter().enumerate() {
            let role = if i == 0 { "local" } else { "intermediate" };
            let has_key = i == 0
                && ike::pki::cert_public_key(der)
                    .ok()
                    .is_some_and(|k| secrets.key_for(&k).is_some());
            if let Some(mut e) = entry(secrets, der, role, path, has_key) {
                e.connections = names.iter().map(|n| n.to_string()).collect();
                certs.push(e);
            }
        }
    }
    for (der, path) in secrets.ca_files() {
        let has_key = ike::pki::cert_public_key(der)
            .ok()
            .is_some_and(|k| secrets.key_for(&k).is_some());
        if let Some(e) = entry(secrets, der, "ca", path, has_key) {
            certs.push(e);
        }
    }
    let crls = secrets
        .crl_files()
        .map(|(c, path)| CrlEntry {
            issuer: c.issuer.clone(),
            this_update: ike::pki::utc_string(c.this_update),
            next_update: c.next_update.map(ike::pki::utc_string),
            expired: c.is_expired(now),
            revoked_count: c.revoked.len(),
            revoked_serials: c
                .revoked
                .iter()
                .map(|s| ike::pki::crl::hex_colons(s))
                .collect(),
            number: c.number.clone(),
            source: path.display().to_string(),
        })
        .collect();
    CertsReport { certs, crls }
}

fn entry(
    secrets: &Secrets,
    der: &[u8],
    role: &str,
    path: &Path,
    has_private_key: bool,
) -> Option<CertEntry> {
    let i = ike::pki::cert_info(der).ok()?;
    Some(CertEntry {
        role: role.to_string(),
        subject: i.subject,
        issuer: i.issuer,
        sans: i.sans,
        serial: i.serial,
        not_before: ike::pki::utc_string(i.not_before),
        not_after: ike::pki::utc_string(i.not_after),
        key_type: i.key_type,
        has_private_key,
        ca: i.ca,
        source: path.display().to_string(),
        revoked: secrets.is_revoked(der),
        connections: Vec::new(),
    })
}

fn unreadable(path: &Path, why: &str, names: &[&str]) -> CertEntry {
    CertEntry {
        role: "local".into(),
        subject: format!("(cannot read: {why})"),
        issuer: String::new(),
        sans: Vec::new(),
        serial: String::new(),
        not_before: String::new(),
        not_after: String::new(),
        key_type: String::new(),
        has_private_key: false,
        ca: false,
        source: path.display().to_string(),
        revoked: false,
        connections: names.iter().map(|n| n.to_string()).collect(),
    }
}

/// The text form, as `swanctl --list-certs` lays it out.
pub fn render_text(r: &CertsReport) -> String {
    let mut out = String::new();
    let section = |title: &str, role: &[&str], out: &mut String| {
        let list: Vec<&CertEntry> = r
            .certs
            .iter()
            .filter(|c| role.contains(&c.role.as_str()))
            .collect();
        if list.is_empty() {
            return;
        }
        out.push_str(&format!("\nList of {title}:\n"));
        for c in list {
            out.push('\n');
            out.push_str(&format!("  subject:  \"{}\"\n", c.subject));
            if !c.issuer.is_empty() {
                out.push_str(&format!("  issuer:   \"{}\"\n", c.issuer));
            }
            if !c.sans.is_empty() {
                out.push_str(&format!("  altNames: {}\n", c.sans.join(", ")));
            }
            if !c.serial.is_empty() {
                out.push_str(&format!("  serial:    {}\n", c.serial));
                out.push_str(&format!(
                    "  validity:  not before {}\n             not after  {}\n",
                    c.not_before, c.not_after
                ));
                let mut flags = vec![c.key_type.clone()];
                if c.has_private_key {
                    flags.push("has private key".into());
                }
                if c.ca {
                    flags.push("CA".into());
                }
                out.push_str(&format!("  pubkey:    {}\n", flags.join(", ")));
                out.push_str(&format!(
                    "  status:    {}\n",
                    if c.revoked { "REVOKED" } else { "not revoked" }
                ));
            }
            if c.role != "ca" {
                out.push_str(&format!("  role:      {}", c.role));
                if !c.connections.is_empty() {
                    out.push_str(&format!(" (of {})", c.connections.join(", ")));
                }
                out.push('\n');
            }
            out.push_str(&format!("  source:    {}\n", c.source));
        }
    };
    section("X.509 End Entity Certificates", &["local"], &mut out);
    section(
        "X.509 Intermediate CA Certificates",
        &["intermediate"],
        &mut out,
    );
    section("X.509 CA Certificates", &["ca"], &mut out);
    if !r.crls.is_empty() {
        out.push_str("\nList of X.509 CRLs:\n");
        for c in &r.crls {
            out.push('\n');
            out.push_str(&format!("  issuer:   \"{}\"\n", c.issuer));
            if let Some(n) = &c.number {
                out.push_str(&format!("  serial:    {n}\n"));
            }
            out.push_str(&format!("  updates:   this {}\n", c.this_update));
            match &c.next_update {
                Some(n) => out.push_str(&format!(
                    "             next {n}{}\n",
                    if c.expired {
                        " (expired, still used)"
                    } else {
                        ""
                    }
                )),
                None => out.push_str("             next (none)\n"),
            }
            out.push_str(&format!(
                "  revoked:   {} certificate(s){}{}\n",
                c.revoked_count,
                if c.revoked_serials.is_empty() {
                    ""
                } else {
                    ": "
                },
                c.revoked_serials.join(", ")
            ));
            out.push_str(&format!("  source:    {}\n", c.source));
        }
    }
    if out.is_empty() {
        out.push_str("no certificates or CRLs loaded\n");
    }
    out.trim_start_matches('\n').to_string()
}
