//! `vpnctl import`: strongSwan configuration (swanctl.conf, or ipsec.conf
//! with ipsec.secrets) converted into vpnd's.
//!
//! The result is one TOML file per connection (`conf.d/NAME.toml`) and one
//! secrets file (`secrets.toml`, mode 0600), plus a report. Every option
//! that is written in the source and that vpnd cannot carry over is in the
//! report with its file, line, key and connection ([`Note`]); nothing is
//! dropped silently. A connection that cannot work without such an option
//! (certificates, virtual IPs, IKEv1, ...) is not converted at all and says
//! why ([`NoteKind::Refused`]).
//!
//! Where strongSwan's default differs from vpnd's (keyingtries, DPD, auto),
//! the converted connection writes strongSwan's value, so it behaves as it
//! did under charon whatever `[defaults]` says.
//!
//! Errors ([`ImportError`]) are reserved for input strongSwan itself
//! refuses: a syntax error, an include that cannot be read, a value no
//! strongSwan accepts (`mode = tunel`). Each has its file, line and key. An
//! error writes nothing. Each converted connection is checked with vpnd's
//! own loader before anything is written.
//!
//! `settings.rs` reads strongSwan's settings syntax (swanctl.conf),
//! `ipsec_parse.rs` ipsec.conf and ipsec.secrets;
//! `swanctl.rs` and `ipsec.rs` convert the two formats; `values.rs` holds
//! the conversions they share (identities, selectors, proposals, times);
//! `emit.rs` renders, checks and writes the result.

mod emit;
mod ipsec;
mod ipsec_parse;
mod settings;
mod swanctl;
mod values;

/// Helpers of the swanctl and ipsec conversion tests.
#[cfg(test)]
mod test_util {
    use super::{Collect, Connection, Val};

    /// `out`, checked to hold no error.
    pub fn without_errors(out: Collect) -> Collect {
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out
    }

    pub fn conn<'a>(out: &'a Collect, name: &str) -> &'a Connection {
        out.connections
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no connection {name}: {:#?}", out.notes))
    }

    pub fn s(v: &str) -> Val {
        Val::Str(v.into())
    }

    pub fn l(v: &[&str]) -> Val {
        Val::List(v.iter().map(|x| x.to_string()).collect())
    }
}

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use emit::{WriteOptions, Written};

/// The two input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// swanctl.conf (strongSwan's settings syntax).
    Swanctl,
    /// ipsec.conf (the starter's `conn` sections), with ipsec.secrets.
    Ipsec,
}

impl Format {
    /// The format of `path`: by its name (`*ipsec.conf`, `*swanctl.conf`),
    /// else by its content (a `conn NAME` or `config setup` line at the
    /// start of a line means ipsec.conf).
    pub fn detect(path: &Path, text: &str) -> Format {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with("ipsec.conf") {
            return Format::Ipsec;
        }
        if name.ends_with("swanctl.conf") {
            return Format::Swanctl;
        }
        let ipsec = text.lines().any(|l| {
            let mut w = l.split_whitespace();
            let first = w.next();
            !l.starts_with([' ', '\t'])
                && (first == Some("conn") || (first == Some("config") && w.next() == Some("setup")))
        });
        if ipsec {
            Format::Ipsec
        } else {
            Format::Swanctl
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Swanctl => "swanctl.conf",
            Format::Ipsec => "ipsec.conf",
        }
    }
}

/// A TOML value of a converted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Str(String),
    List(Vec<String>),
    Int(u64),
    Bool(bool),
}

/// One converted connection: vpnd's keys in the order they are written.
#[derive(Clone, Debug)]
pub struct Connection {
    pub name: String,
    /// Where the connection is defined in the source.
    pub file: PathBuf,
    pub line: usize,
    pub keys: Vec<(&'static str, Val)>,
    pub children: Vec<Child>,
}

impl Connection {
    /// The value of one of its keys.
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// One converted child.
#[derive(Clone, Debug)]
pub struct Child {
    pub name: String,
    pub keys: Vec<(&'static str, Val)>,
}

impl Child {
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// One pre-shared key for the secrets file.
#[derive(Clone)]
pub struct Psk {
    pub ids: Vec<String>,
    pub secret: Zeroizing<String>,
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psk")
            .field("ids", &self.ids)
            .field("secret", &format_args!("<redacted>"))
            .field("line", &self.line)
            .finish()
    }
}

/// What happened to an option that is not carried over as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// The whole connection (or section) is not converted.
    Refused,
    /// The option is left out: vpnd does not support it yet.
    Dropped,
    /// The option is converted, but behaves differently under vpnd.
    Changed,
    /// strongSwan ignores it too (an unknown key, an include that matches
    /// no file, a reference to no section).
    Ignored,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Refused => "refused",
            NoteKind::Dropped => "not supported",
            NoteKind::Changed => "changed",
            NoteKind::Ignored => "ignored",
        }
    }
}

/// One entry of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    /// The connection it concerns, if any.
    pub conn: Option<String>,
    /// The option as the source names it: `connections.gw.mobike` for
    /// swanctl.conf, `conn gw: mobike` for ipsec.conf.
    pub key: String,
    pub kind: NoteKind,
    pub message: String,
}

/// `{file}:{line}: {key}: {kind}: {message}`.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}: {}",
            self.file.display(),
            self.line,
            self.key,
            self.kind.as_str(),
            self.message
        )
    }
}

/// Input that strongSwan itself would not accept, or a file problem.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: syntax error: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: {key}: {message}", file.display())]
    Value {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error(
        "{}:{line}: connection '{name}': the converted connection does not load in vpnd \
         (an importer bug; please report it): {message}",
        file.display()
    )]
    NotLoadable {
        file: PathBuf,
        line: usize,
        name: String,
        message: String,
    },
    #[error("{}: already exists (--force overwrites it)", .0.display())]
    Exists(PathBuf),
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every error found, in the order found.
#[derive(Debug)]
pub struct ImportErrors(pub Vec<ImportError>);

impl fmt::Display for ImportErrors {
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

impl std::error::Error for ImportErrors {}

impl From<ImportError> for ImportErrors {
    fn from(e: ImportError) -> Self {
        ImportErrors(vec![e])
    }
}

/// A converted configuration, not yet written.
#[derive(Debug)]
pub struct Import {
    pub source: PathBuf,
    pub format: Format,
    /// The ipsec.secrets read (ipsec.conf only), if any.
    pub secrets_source: Option<PathBuf>,
    pub connections: Vec<Connection>,
    pub psks: Vec<Psk>,
    /// Sorted by file and line.
    pub notes: Vec<Note>,
}

impl Import {
    /// The connection named `name`.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The notes about connection `name`.
    pub fn notes_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Note> + 'a {
        self.notes
            .iter()
            .filter(move |n| n.conn.as_deref() == Some(name))
    }

    /// The report: one line per note, then a summary.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&n.to_string());
            out.push('\n');
        }
        let refused = self
            .notes
            .iter()
            .filter(|n| n.kind == NoteKind::Refused)
            .count();
        let dropped = self
            .notes
            .iter()
            .filter(|n| n.kind == NoteKind::Dropped)
            .count();
        let changed = self
            .notes
            .iter()
            .filter(|n| n.kind == NoteKind::Changed)
            .count();
        let names: Vec<&str> = self.connections.iter().map(|c| c.name.as_str()).collect();
        out.push_str(&format!(
            "{}: {} connection(s) converted{}, {} pre-shared key(s); {} refused, {} option(s) not supported, {} changed\n",
            self.source.display(),
            names.len(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            },
            self.psks.len(),
            refused,
            dropped,
            changed
        ));
        out
    }
}

/// Reads and converts `path`. `format` overrides the detection;
/// `secrets` names ipsec.secrets for an ipsec.conf (default: `ipsec.secrets`
/// beside it, when it exists).
pub fn import(
    path: &Path,
    format: Option<Format>,
    secrets: Option<&Path>,
) -> Result<Import, ImportErrors> {
    let text = read(path)?;
    let format = format.unwrap_or_else(|| Format::detect(path, &text));
    let mut out = Collect::default();
    let mut secrets_source = None;
    match format {
        Format::Swanctl => swanctl::convert(path, &text, &mut out),
        Format::Ipsec => {
            let secrets = match secrets {
                Some(p) => Some(p.to_path_buf()),
                None => {
                    let p = path.parent().unwrap_or(Path::new("")).join("ipsec.secrets");
                    p.exists().then_some(p)
                }
            };
            ipsec::convert(path, &text, secrets.as_deref(), &mut out);
            secrets_source = secrets;
        }
    }
    if !out.errors.is_empty() {
        return Err(ImportErrors(out.errors));
    }
    out.notes
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let import = Import {
        source: path.to_path_buf(),
        format,
        secrets_source,
        connections: out.connections,
        psks: out.psks,
        notes: out.notes,
    };
    emit::check(&import)?;
    Ok(import)
}

/// What the converters collect.
#[derive(Default)]
pub(crate) struct Collect {
    pub connections: Vec<Connection>,
    pub psks: Vec<Psk>,
    pub notes: Vec<Note>,
    pub errors: Vec<ImportError>,
}

impl Collect {
    pub fn note(
        &mut self,
        file: &Path,
        line: usize,
        conn: Option<&str>,
        key: impl Into<String>,
        kind: NoteKind,
        message: impl Into<String>,
    ) {
        self.notes.push(Note {
            file: file.to_path_buf(),
            line,
            conn: conn.map(str::to_string),
            key: key.into(),
            kind,
            message: message.into(),
        });
    }

    pub fn error(&mut self, file: &Path, line: usize, key: impl Into<String>, message: String) {
        self.errors.push(ImportError::Value {
            file: file.to_path_buf(),
            line,
            key: key.into(),
            message,
        });
    }
}

/// A connection being converted: its keys, and what the report says
/// about it. [`Draft::finish`] hands it over with its notes, or only the
/// notes when something refuses it.
pub(crate) struct Draft {
    pub conn: Connection,
    notes: Vec<Note>,
    refused: Vec<Note>,
}

impl Draft {
    pub fn new(name: &str, file: &Path, line: usize) -> Draft {
        Draft {
            conn: Connection {
                name: name.to_string(),
                file: file.to_path_buf(),
                line,
                keys: Vec::new(),
                children: Vec::new(),
            },
            notes: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn push(&mut self, file: &Path, line: usize, key: &str, kind: NoteKind, message: String) {
        let note = Note {
            file: file.to_path_buf(),
            line,
            conn: Some(self.conn.name.clone()),
            key: key.to_string(),
            kind,
            message,
        };
        if kind == NoteKind::Refused {
            self.refused.push(note);
        } else {
            self.notes.push(note);
        }
    }

    /// The connection cannot be converted, because of this option.
    pub fn refuse(&mut self, file: &Path, line: usize, key: &str, message: impl Into<String>) {
        self.push(file, line, key, NoteKind::Refused, message.into());
    }

    /// This option is left out.
    pub fn drop_key(&mut self, file: &Path, line: usize, key: &str, message: impl Into<String>) {
        self.push(file, line, key, NoteKind::Dropped, message.into());
    }

    /// This option is converted with a difference.
    pub fn change(&mut self, file: &Path, line: usize, key: &str, message: impl Into<String>) {
        self.push(file, line, key, NoteKind::Changed, message.into());
    }

    /// strongSwan ignores this too.
    pub fn ignore(&mut self, file: &Path, line: usize, key: &str, message: impl Into<String>) {
        self.push(file, line, key, NoteKind::Ignored, message.into());
    }

    pub fn is_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    pub fn set(&mut self, key: &'static str, v: Val) {
        self.conn.keys.push((key, v));
    }

    /// Hands the connection over, or, when it is refused, only its notes
    /// (the refusals and the rest, so one run lists all there is to fix).
    pub fn finish(self, out: &mut Collect) {
        if self.refused.is_empty() {
            out.connections.push(self.conn);
        } else {
            out.notes.extend(self.refused);
        }
        out.notes.extend(self.notes);
    }
}

/// vpnd's rule for connection and child names (plus: not hidden, as the
/// name becomes a file name).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether every proposal of `esp` names a DH group (strongSwan then
/// insists on PFS when rekeying: vpnd's `pfs = "require"`).
pub(crate) fn all_have_groups(esp: &[String]) -> bool {
    !esp.is_empty()
        && esp
            .iter()
            .all(|p| ike::proposal::ProposalSpec::parse_esp(p).is_ok_and(|s| !s.dh.is_empty()))
}

/// The largest file read (as for vpnd's own configuration).
fn read(path: &Path) -> Result<String, ImportError> {
    let mut text = String::new();
    crate::config::file::open_regular(path)
        .and_then(|(f, _)| crate::config::file::read_bounded(f, &mut text))
        .map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
}

/// A secret-bearing file read into zeroized memory (sized up front so the
/// buffer is not reallocated).
fn read_secret(path: &Path) -> Result<Zeroizing<String>, ImportError> {
    let err = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (f, meta) = crate::config::file::open_regular(path).map_err(err)?;
    let len = usize::try_from(meta.len()).unwrap_or(0);
    let mut text = Zeroizing::new(String::with_capacity(len + 1));
    crate::config::file::read_bounded(f, &mut text).map_err(err)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_name_then_content() {
        assert_eq!(
            Format::detect(Path::new("/etc/ipsec.conf"), ""),
            Format::Ipsec
        );
        assert_eq!(
            Format::detect(Path::new("/etc/swanctl/swanctl.conf"), "conn x\n"),
            Format::Swanctl
        );
        assert_eq!(
            Format::detect(Path::new("x.conf"), "# c\nconn gw\n  left=1.2.3.4\n"),
            Format::Ipsec
        );
        assert_eq!(
            Format::detect(Path::new("x.conf"), "config setup\n"),
            Format::Ipsec
        );
        assert_eq!(
            Format::detect(Path::new("x.conf"), "connections {\n  conn {\n  }\n}\n"),
            Format::Swanctl
        );
    }
}
