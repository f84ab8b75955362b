//! The daemon's configuration: the main TOML file, the files it includes and
//! the secrets files it names (the README's "Configuration" shows them).
//!
//! Everything is validated at load time and every problem found is reported
//! at once, each with its file, line, dotted key and reason; a [`Config`] is
//! only returned when there is none. Connections carry [`PartialEq`] so a
//! reload can diff them; that comparison ignores where a connection is
//! written ([`ConnectionConfig::file`], [`ConnectionConfig::line`]), so
//! editing a comment above a tunnel does not restart it.
//!
//! This file reads the files and their top level; `daemon.rs` reads
//! `[daemon]` and `[scheduler]`, `connection.rs` `[connections.NAME]` and its
//! children, `keys.rs` holds the table of connection keys, `reader.rs` typed
//! access to TOML with positions, `error.rs` the errors.

mod connection;
mod daemon;
pub mod doc;
mod duration;
pub(crate) mod error;
pub mod file;
mod keys;
pub(crate) mod reader;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use actors::{Auto, DpdAction};
use connection::{parse_conn_fields, parse_connections};
pub use connection::{AuthMethod, ChildConfig, RemoteAddr, RETRANSMIT_MAX_TIMEOUT};
use daemon::{parse_daemon, parse_scheduler};
pub use daemon::{DaemonConfig, Dataplane, SchedulerConfig};
pub use duration::{format_duration, parse_duration};
use error::sort_by_position;
pub use error::{ConfigError, ConfigErrors, Quoted, REDACTED};
use keys::ConnFields;
pub use keys::{ConnectionConfig, SET_KEYS};
use reader::{entries, is_glob, join, parse_document, ParseCtx, Source, Value};

use crate::secrets::Secrets;

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
        let mut ctx = ParseCtx::new(&src, &text, &mut errors);
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
                    quoted: Quoted::Withheld,
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
            let mut ctx = ParseCtx::new(&fsrc, &text, &mut errors);
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
                    quoted: Quoted::Withheld,
                });
                continue;
            }
        }
        secret_files.push(path.clone());
    }
    let (mut secrets, warnings) = match Secrets::load(&secret_files) {
        Ok(s) => s,
        Err(e) => {
            errors.extend(e.0);
            (Secrets::empty(), Vec::new())
        }
    };
    let mut warnings = warnings;
    match secrets.load_trust(&daemon.cacerts, &daemon.crls) {
        Ok(w) => warnings.extend(w),
        Err(e) => errors.push(ConfigError::whole_file(main, e)),
    }

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
    load_extra_text(main, file, &text)
}

/// [`load_extra`] of `file`'s text, already read (by a caller that checked
/// the file as it opened it).
pub fn load_extra_text(
    main: &Config,
    file: &Path,
    text: &str,
) -> Result<Vec<ConnectionConfig>, ConfigErrors> {
    let src = Source::new(file, text);
    let doc = parse_document(&src, text)?;
    let mut errors = Vec::new();
    let me = canonical(file);
    let mut names: HashMap<String, (PathBuf, usize)> = main
        .connections
        .iter()
        .filter(|c| canonical(&c.file) != me)
        .map(|c| (c.name.clone(), (c.file.clone(), c.line)))
        .collect();
    let mut out = Vec::new();
    let mut ctx = ParseCtx::new(&src, text, &mut errors);
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

const MAIN_KEYS: &[&str] = &["daemon", "scheduler", "defaults", "connections"];

fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    let mut text = String::new();
    file::open_regular(path)
        .and_then(|(f, _)| file::read_bounded(f, &mut text))
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read: {e}")))?;
    Ok(text)
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

/// The top level of an included or extra file: only `[connections.*]`
/// (and `[defaults]` when `allow_defaults`).
fn parse_connection_file<'t, 'i>(
    ctx: &mut ParseCtx<'_>,
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
            "daemon" | "scheduler" | "defaults" => ctx.err_key(
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
