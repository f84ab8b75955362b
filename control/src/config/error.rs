//! Configuration errors, shared by the configuration and the secrets files.

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
    pub message: String,
}

impl ConfigError {
    /// A problem with `file` as a whole (no line, no key).
    pub(crate) fn whole_file(file: &Path, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: String::new(),
            message,
        }
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
