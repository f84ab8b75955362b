//! Typed access to a parsed TOML document that keeps every value's position,
//! so that each error names its file, line and dotted key.

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::duration::parse_duration;
use super::error::{ConfigError, Quoted};

pub(crate) type Key<'i> = Spanned<Cow<'i, str>>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// One file being read: its path and where its lines start.
pub(crate) struct Source {
    pub path: PathBuf,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: &Path, text: &str) -> Source {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            path: path.to_path_buf(),
            line_starts,
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }
}

/// A file being read plus the error list every problem goes to.
pub(crate) struct ParseCtx<'a> {
    pub src: &'a Source,
    pub errors: &'a mut Vec<ConfigError>,
    /// The file's text, so that an error keeps the value it is about;
    /// `None` for a secrets file, whose text no error carries.
    pub text: Option<&'a str>,
}

impl<'a> ParseCtx<'a> {
    /// Reading a configuration file.
    pub fn new(src: &'a Source, text: &'a str, errors: &'a mut Vec<ConfigError>) -> Self {
        ParseCtx {
            src,
            errors,
            text: Some(text),
        }
    }

    /// Reading a secrets file: errors keep nothing of its text.
    pub fn secrets(src: &'a Source, errors: &'a mut Vec<ConfigError>) -> Self {
        ParseCtx {
            src,
            errors,
            text: None,
        }
    }
}

impl ParseCtx<'_> {
    pub fn line(&self, span: &Range<usize>) -> usize {
        self.src.line(span.start)
    }

    /// A problem with the value at `span`; the message may quote it.
    pub fn err(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let quoted = match self.text.and_then(|t| t.get(span.clone())) {
            Some(v) => Quoted::Value(v.to_string()),
            None => Quoted::Withheld,
        };
        self.push(span, key, message.into(), quoted);
    }

    /// A problem the message tells with key names only (an unknown or
    /// missing key): it quotes nothing else from the file.
    pub fn err_key(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(span, key, message.into(), Quoted::Nothing);
    }

    /// A problem across several keys reported at `span`; the message may
    /// quote any of their values, which are not kept.
    pub fn err_across(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(span, key, message.into(), Quoted::Withheld);
    }

    fn push(&mut self, span: Range<usize>, key: &str, message: String, quoted: Quoted) {
        let line = self.line(&span);
        self.errors.push(ConfigError {
            file: self.src.path.clone(),
            line: Some(line),
            key: key.to_string(),
            message,
            quoted,
        });
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Reports a key that is not one of `known`, suggesting the closest.
    pub fn unknown_key(&mut self, key: &Key<'_>, path: &str, known: &[&str]) {
        let mut message = format!("unknown key '{}'", key.get_ref());
        if let Some(s) = suggest(key.get_ref(), known) {
            message.push_str(&format!(" (did you mean '{s}'?)"));
        }
        self.err_key(key.span(), path, message);
    }

    fn wrong_type(&mut self, v: &Value<'_>, key: &str, expected: &str) {
        let found = v.get_ref().type_str();
        self.err(
            v.span(),
            key,
            format!("expected {expected}, found {} {found}", article(found)),
        );
    }

    pub fn table<'v, 'i>(&mut self, v: &'v Value<'i>, key: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, key, "a table");
                None
            }
        }
    }

    pub fn string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    pub fn boolean(&mut self, v: &Value<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, key, "true or false");
                None
            }
        }
    }

    /// A non-negative integer that fits in a u32.
    pub fn uint(&mut self, v: &Value<'_>, key: &str) -> Option<u32> {
        let n = self.ulong(v, key)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.err(
                    v.span(),
                    key,
                    format!("invalid value {n}: too large (at most {})", u32::MAX),
                );
                None
            }
        }
    }

    /// A non-negative integer (volumes such as byte lifetimes).
    pub fn ulong(&mut self, v: &Value<'_>, key: &str) -> Option<u64> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, key, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n < 0 => {
                self.err(
                    v.span(),
                    key,
                    format!("invalid value {n}: must not be negative"),
                );
                None
            }
            Ok(n) => Some(n as u64),
            Err(_) => {
                self.err(v.span(), key, format!("invalid value {i}: too large"));
                None
            }
        }
    }

    /// A duration: a string such as "30s" or a bare integer of seconds.
    pub fn duration(&mut self, v: &Value<'_>, key: &str) -> Option<Duration> {
        match v.get_ref() {
            DeValue::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(why) => {
                    self.err(v.span(), key, why);
                    None
                }
            },
            DeValue::Integer(_) => self.uint(v, key).map(|n| Duration::from_secs(n.into())),
            _ => {
                self.wrong_type(v, key, "a duration (e.g. \"30s\", \"5m\", \"4h\")");
                None
            }
        }
    }

    /// A string that must be one of `choices`.
    pub fn choice<T: Copy>(
        &mut self,
        v: &Value<'_>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, key)?;
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            v.span(),
            key,
            format!("invalid value '{s}': expected {}", or_list(&names)),
        );
        None
    }

    /// An array of strings, each with its own span.
    pub fn strings<'v>(
        &mut self,
        v: &'v Value<'_>,
        key: &str,
    ) -> Option<Vec<(&'v str, Range<usize>)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.as_ref(), item.span())),
                _ => {
                    self.wrong_type(item, key, "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A non-empty array of strings, each converted by `f`.
    pub fn list<T>(
        &mut self,
        v: &Value<'_>,
        key: &str,
        allow_empty: bool,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = self.strings(v, key)?;
        if items.is_empty() && !allow_empty {
            self.err(v.span(), key, "must not be empty");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (s, span) in items {
            match f(s) {
                Ok(t) => out.push(t),
                Err(why) => {
                    self.err(span, key, why);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid address '{s}': expected an IP address"))
}

/// The entries of a table in the order they appear in the file.
pub(crate) fn entries<'t, 'i>(t: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// `prefix.key`, quoting `key` as TOML would when it is not a bare key.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// "a", "a or b", "a, b or c".
pub(crate) fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The known key closest to `key`, if within edit distance 2.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, counting an adjacent transposition as one edit.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = best;
        }
    }
    d[a.len() * w + b.len()]
}

/// Parses a whole document; a syntax error becomes one [`ConfigError`] with
/// the line of toml's error span.
pub(crate) fn parse_document<'i>(src: &Source, text: &'i str) -> Result<DeTable<'i>, ConfigError> {
    DeTable::parse(text).map(|t| t.into_inner()).map_err(|e| {
        let span = e.span();
        let mut message = e.message().trim().to_string();
        if message == "duplicate key" {
            if let Some(k) = span.clone().and_then(|s| text.get(s)) {
                message = format!("duplicate key '{}'", k.trim());
            }
        }
        ConfigError {
            file: src.path.clone(),
            line: span.map(|s| src.line(s.start)),
            key: String::new(),
            message: format!("invalid TOML: {message}"),
            quoted: Quoted::Withheld,
        }
    })
}

/// Does this path or pattern contain glob metacharacters?
pub(crate) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("remote_addr", "remote_addrs"), 1);
        assert_eq!(edit_distance("auot", "auto"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(
            suggest("remote_addr", &["local_addrs", "remote_addrs"]),
            Some("remote_addrs")
        );
        assert_eq!(suggest("zzz", &["local_addrs"]), None);
    }

    #[test]
    fn lines() {
        let s = Source::new(Path::new("x"), "a\nbc\n\nd");
        assert_eq!(s.line(0), 1);
        assert_eq!(s.line(1), 1);
        assert_eq!(s.line(2), 2);
        assert_eq!(s.line(5), 3);
        assert_eq!(s.line(6), 4);
    }

    #[test]
    fn joined_keys() {
        assert_eq!(join("connections", "oregon"), "connections.oregon");
        assert_eq!(join("", "a.b"), "\"a.b\"");
    }
}
