//! Configuration errors, shared by the configuration and the secrets files.
//!
//! An error knows what it quotes from its file ([`Quoted`]), so that it can
//! be told to a control client who may not read that file without handing
//! them the file's contents: [`ConfigError::render`] then names the file,
//! line and key and leaves the rest out.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<usize>,
    /// Dotted, e.g. `connections.oregon.proposals`; empty for TOML syntax
    /// errors and unreadable files.
    pub key: String,
    /// The whole reason, as told to someone who may read `file`; it may
    /// quote what the file says (see `quoted`).
    pub message: String,
    /// What `message` quotes from `file`.
    pub quoted: Quoted,
}

/// What an error's message quotes from the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quoted {
    /// Nothing but key names and the file's name: the file as a whole
    /// (cannot be read, not a regular file), an unknown or missing key.
    Nothing,
    /// The value at the error's position, as the file writes it (TOML).
    Value(String),
    /// Something from the file whose text is not kept: anything from a
    /// secrets file, a TOML syntax error, a check across several keys.
    Withheld,
}

/// Told in place of an error's reason to a client who may not read the file.
pub const REDACTED: &str = "redacted: file not readable by you";

impl ConfigError {
    /// A problem with `file` as a whole (no line, no key).
    pub(crate) fn whole_file(file: &Path, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: String::new(),
            message,
            quoted: Quoted::Nothing,
        }
    }

    /// The value this error is about, as written, when it is kept.
    pub fn value(&self) -> Option<&str> {
        match &self.quoted {
            Quoted::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The error as told to a client: whole when `may_read` (the client can
    /// read `file`) or when it quotes nothing from the file; otherwise the
    /// file, line and key with the reason left out.
    pub fn render(&self, may_read: bool) -> String {
        if may_read || self.quoted == Quoted::Nothing {
            return self.to_string();
        }
        let mut out = self.file.display().to_string();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        if self.key.is_empty() {
            out.push_str(&format!(": invalid TOML ({REDACTED})"));
        } else {
            out.push_str(&format!(": {}: invalid value ({REDACTED})", self.key));
        }
        out
    }
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

impl ConfigErrors {
    /// Every error as [`ConfigError::render`] tells it, `may_read` saying
    /// whether the client can read each error's file (asked once a file).
    pub fn render(&self, mut may_read: impl FnMut(&Path) -> bool) -> String {
        let mut readable: HashMap<&Path, bool> = HashMap::new();
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|e| {
                let ok = *readable
                    .entry(e.file.as_path())
                    .or_insert_with(|| may_read(&e.file));
                e.render(ok)
            })
            .collect();
        lines.join("\n")
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, key: &str, message: &str, quoted: Quoted) -> ConfigError {
        ConfigError {
            file: "/etc/vpnd/conf.d/x.toml".into(),
            line,
            key: key.into(),
            message: message.into(),
            quoted,
        }
    }

    #[test]
    fn a_value_is_told_only_to_a_reader() {
        let e = error(
            Some(4),
            "connections.x.auto",
            "invalid value 'SECRET-VALUE-123': expected start, route, add or ignore",
            Quoted::Value("\"SECRET-VALUE-123\"".into()),
        );
        assert_eq!(e.value(), Some("\"SECRET-VALUE-123\""));
        assert_eq!(
            e.render(true),
            "/etc/vpnd/conf.d/x.toml:4: connections.x.auto: invalid value \
             'SECRET-VALUE-123': expected start, route, add or ignore"
        );
        assert_eq!(
            e.render(false),
            "/etc/vpnd/conf.d/x.toml:4: connections.x.auto: invalid value \
             (redacted: file not readable by you)"
        );
    }

    #[test]
    fn withheld_text_is_left_out_and_key_only_errors_are_told_whole() {
        let syntax = error(Some(2), "", "invalid TOML: x", Quoted::Withheld);
        assert_eq!(syntax.value(), None);
        assert_eq!(
            syntax.render(false),
            "/etc/vpnd/conf.d/x.toml:2: invalid TOML (redacted: file not readable by you)"
        );
        let across = error(
            Some(9),
            "connections.x.retry_base",
            "5m > 1m",
            Quoted::Withheld,
        );
        assert!(!across.render(false).contains("5m"));
        let unknown = error(
            Some(3),
            "connections.x.autp",
            "unknown key 'autp' (did you mean 'auto'?)",
            Quoted::Nothing,
        );
        assert_eq!(unknown.render(false), unknown.to_string());
        let whole = error(None, "", "cannot read: Permission denied", Quoted::Nothing);
        assert_eq!(
            whole.render(false),
            "/etc/vpnd/conf.d/x.toml: cannot read: Permission denied"
        );
    }

    #[test]
    fn each_file_is_asked_about_once() {
        let mut a = error(Some(1), "k", "v1", Quoted::Value("1".into()));
        let mut b = a.clone();
        b.line = Some(2);
        a.file = "/root/only.toml".into();
        let errs = ConfigErrors(vec![a.clone(), a, b]);
        let mut asked = Vec::new();
        let out = errs.render(|p| {
            asked.push(p.to_path_buf());
            p != Path::new("/root/only.toml")
        });
        assert_eq!(asked.len(), 2);
        assert_eq!(
            out,
            "/root/only.toml:1: k: invalid value (redacted: file not readable by you)\n\
             /root/only.toml:1: k: invalid value (redacted: file not readable by you)\n\
             /etc/vpnd/conf.d/x.toml:2: k: v1"
        );
    }
}
