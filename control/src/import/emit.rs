//! The converted configuration as vpnd's files: `conf.d/NAME.toml` per
//! connection and `secrets.toml` (mode 0600), each checked with vpnd's own
//! loader before anything is written, and written only when no target
//! exists (or with `force`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Connection, Import, ImportError, ImportErrors, Val};
use crate::config::reader::join;
use crate::config::{self, Config, DaemonConfig, Defaults, SchedulerConfig};
use crate::secrets::Secrets;

/// Where and how [`Import::write`] writes.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Gets `conf.d/NAME.toml` and `secrets.toml`.
    pub dir: PathBuf,
    /// Overwrite files that exist.
    pub force: bool,
}

/// What [`Import::write`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub connections: Vec<PathBuf>,
    pub secrets: PathBuf,
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_val(v: &Val) -> String {
    match v {
        Val::Str(s) => toml_str(s),
        Val::List(l) => format!(
            "[{}]",
            l.iter()
                .map(String::as_str)
                .map(toml_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Val::Int(n) => n.to_string(),
        Val::Bool(b) => b.to_string(),
    }
}

/// One connection's file.
pub fn render_connection(c: &Connection, source: &Path) -> String {
    let mut out = format!(
        "# Converted by `vpnctl import` from {}:{}.\n",
        c.file.display(),
        c.line
    );
    if c.file != source {
        out.push_str(&format!("# (included by {})\n", source.display()));
    }
    let table = join("connections", &c.name);
    out.push_str(&format!("[{table}]\n"));
    for (k, v) in &c.keys {
        out.push_str(&format!("{k} = {}\n", render_val(v)));
    }
    for ch in &c.children {
        out.push_str(&format!(
            "\n[{}]\n",
            join(&format!("{table}.children"), &ch.name)
        ));
        for (k, v) in &ch.keys {
            out.push_str(&format!("{k} = {}\n", render_val(v)));
        }
    }
    out
}

/// The secrets file (zeroized when dropped).
pub fn render_secrets(import: &Import) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    let from = match &import.secrets_source {
        Some(s) => s.display().to_string(),
        None => import.source.display().to_string(),
    };
    out.push_str(&format!(
        "# Converted by `vpnctl import` from {from}. Keep this file mode 0600.\n"
    ));
    for p in &import.psks {
        out.push_str(&format!(
            "\n# {}:{}\n[[psk]]\nids = {}\nsecret = ",
            p.file.display(),
            p.line,
            render_val(&Val::List(p.ids.clone()))
        ));
        let quoted = Zeroizing::new(toml_str(&p.secret));
        out.push_str(&quoted);
        out.push('\n');
    }
    out
}

/// The file name of a connection below the output directory.
pub fn connection_file(name: &str) -> PathBuf {
    Path::new("conf.d").join(format!("{name}.toml"))
}

/// Loads every converted connection with vpnd's loader (as a file of
/// `conf.d/` under an empty main configuration): what is written must load.
pub(super) fn check(import: &Import) -> Result<(), ImportErrors> {
    let blank = Config {
        main_file: PathBuf::from("vpnd.toml"),
        daemon: DaemonConfig::default(),
        scheduler: SchedulerConfig::default(),
        connections: Vec::new(),
        secrets: Secrets::empty(),
        defaults: Defaults::default(),
        warnings: Vec::new(),
    };
    let mut errors = Vec::new();
    for c in &import.connections {
        let text = render_connection(c, &import.source);
        let file = connection_file(&c.name);
        if let Err(e) = config::load_extra_text(&blank, &file, &text) {
            errors.push(ImportError::NotLoadable {
                file: c.file.clone(),
                line: c.line,
                name: c.name.clone(),
                message: e.to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ImportErrors(errors))
    }
}

impl Import {
    /// Writes `conf.d/NAME.toml` for each connection and `secrets.toml`
    /// (mode 0600) under `opts.dir`. Without `opts.force`, nothing is
    /// written if any of those files exists.
    pub fn write(&self, opts: &WriteOptions) -> Result<Written, ImportErrors> {
        let conns: Vec<(PathBuf, String)> = self
            .connections
            .iter()
            .map(|c| {
                (
                    opts.dir.join(connection_file(&c.name)),
                    render_connection(c, &self.source),
                )
            })
            .collect();
        let secrets_path = opts.dir.join("secrets.toml");
        if !opts.force {
            let exists: Vec<ImportError> = conns
                .iter()
                .map(|(p, _)| p)
                .chain(std::iter::once(&secrets_path))
                .filter(|p| p.symlink_metadata().is_ok())
                .map(|p| ImportError::Exists(p.clone()))
                .collect();
            if !exists.is_empty() {
                return Err(ImportErrors(exists));
            }
        }
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImportError::Write { path, source }
        };
        let confd = opts.dir.join("conf.d");
        std::fs::create_dir_all(&confd).map_err(werr(&confd))?;
        let secrets = render_secrets(self);
        write_file(&secrets_path, secrets.as_bytes(), 0o600).map_err(werr(&secrets_path))?;
        let mut written = Vec::new();
        for (path, text) in &conns {
            write_file(path, text.as_bytes(), 0o644).map_err(werr(path))?;
            written.push(path.clone());
        }
        Ok(Written {
            connections: written,
            secrets: secrets_path,
        })
    }
}

/// Writes `data` to `path` with `mode` (also when the file existed with
/// another mode); never through a symbolic link.
fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(path)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let doc: toml::Table =
            toml::from_str(&format!("k = {}", toml_str("x\"\\\t\u{7f}é"))).unwrap();
        assert_eq!(doc["k"].as_str(), Some("x\"\\\t\u{7f}é"));
    }
}
