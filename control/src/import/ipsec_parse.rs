//! Reading ipsec.conf and ipsec.secrets into sections and entries, with
//! the file and line of each (the conversion is in `ipsec.rs`).

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::settings::{Kv, Pos};
use super::ImportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Setup,
    Conn,
    Ca,
}

/// One `config setup`, `conn NAME` or `ca NAME`, merged over every place it
/// is written.
#[derive(Clone, Debug)]
pub(crate) struct Sec {
    pub kind: Kind,
    pub name: String,
    pub at: Pos,
    /// Later settings of the same key replace earlier ones (in place).
    pub settings: Vec<Kv>,
    /// `also=` in the order written.
    pub also: Vec<(String, Pos)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Eq,
}

/// The tokens of one line: words and quoted strings, `=`; a `#` outside
/// quotes ends the line (but `@#` starts a key-id word).
fn tokens(line: &str) -> Result<Vec<Tok>, String> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => break,
            b'=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            b'"' => {
                i += 1;
                let mut s = Vec::new();
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string".into()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let c = b.get(i + 1).copied().ok_or("unterminated string")?;
                            s.push(match c {
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'r' => b'\r',
                                c => c,
                            });
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Word(String::from_utf8_lossy(&s).into_owned()));
            }
            _ => {
                let start = i;
                if b[i..].starts_with(b"@#") {
                    i += 2;
                }
                while i < b.len() && !matches!(b[i], b'"' | b'#' | b'=' | b' ' | b'\t' | b'\r') {
                    i += 1;
                }
                out.push(Tok::Word(
                    String::from_utf8_lossy(&b[start..i]).into_owned(),
                ));
            }
        }
    }
    Ok(out)
}

/// Reads ipsec.conf and the files it includes. `ignored` collects what
/// strongSwan skips (as where, key, why): includes that match no file,
/// settings before any section.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    ignored: &mut Vec<(Pos, String, String)>,
) -> Result<Vec<Sec>, ImportError> {
    let mut secs: Vec<Sec> = Vec::new();
    let mut current: Option<usize> = None;
    file(path, text, &mut secs, &mut current, ignored, 0)?;
    Ok(secs)
}

fn file(
    path: &Path,
    text: &str,
    secs: &mut Vec<Sec>,
    current: &mut Option<usize>,
    ignored: &mut Vec<(Pos, String, String)>,
    depth: usize,
) -> Result<(), ImportError> {
    for (i, raw) in text.lines().enumerate() {
        let at = Pos {
            file: path.to_path_buf(),
            line: i + 1,
        };
        let syntax = |message: String| ImportError::Syntax {
            file: at.file.clone(),
            line: at.line,
            message,
        };
        let toks = tokens(raw).map_err(syntax)?;
        let indented = raw.starts_with([' ', '\t']);
        let words: Vec<&str> = toks
            .iter()
            .map(|t| match t {
                Tok::Word(w) => w.as_str(),
                Tok::Eq => "=",
            })
            .collect();
        match words.as_slice() {
            [] => continue,
            ["include", pattern, ..] if !toks.get(1).is_some_and(|t| *t == Tok::Eq) => {
                if depth >= 16 {
                    return Err(syntax(format!("include '{pattern}': includes nest too deep (a loop?)")));
                }
                let files = expand(path, pattern);
                if files.is_empty() {
                    ignored.push((
                        at.clone(),
                        "include".to_string(),
                        format!("'{pattern}' matches no file"),
                    ));
                }
                for f in files {
                    let text = super::read(&f)?;
                    file(&f, &text, secs, current, ignored, depth + 1)?;
                }
            }
            _ if !indented => match words.as_slice() {
                ["config", "setup"] => *current = Some(section(secs, Kind::Setup, "setup", &at)),
                ["conn", name] => *current = Some(section(secs, Kind::Conn, name, &at)),
                ["ca", name] => *current = Some(section(secs, Kind::Ca, name, &at)),
                ["version", ..] => {}
                ["conn"] | ["ca"] => return Err(syntax("section name missing".into())),
                _ => return Err(syntax(format!("expected 'config setup', 'conn NAME' or 'ca NAME' at the start of a line, found '{}'", raw.trim()))),
            },
            [key, "=", rest @ ..] => {
                let Some(c) = *current else {
                    ignored.push((
                        at.clone(),
                        key.to_string(),
                        "outside any section (strongSwan skips it too)".into(),
                    ));
                    continue;
                };
                let value = (!rest.is_empty()).then(|| rest.join(" "));
                let s = &mut secs[c];
                if *key == "also" {
                    if let Some(v) = value.filter(|v| v != "%default") {
                        s.also.push((v, at.clone()));
                    }
                    continue;
                }
                let kv = Kv { name: key.to_string(), value, at: at.clone() };
                match s.settings.iter_mut().find(|k| k.name == *key) {
                    Some(k) => *k = kv,
                    None => s.settings.push(kv),
                }
            }
            [key] => return Err(syntax(format!("missing value for setting '{key}'"))),
            _ => return Err(syntax(format!("expected 'key=value', found '{}'", raw.trim()))),
        }
    }
    Ok(())
}

fn section(secs: &mut Vec<Sec>, kind: Kind, name: &str, at: &Pos) -> usize {
    if let Some(i) = secs.iter().position(|s| s.kind == kind && s.name == name) {
        return i;
    }
    secs.push(Sec {
        kind,
        name: name.to_string(),
        at: at.clone(),
        settings: Vec::new(),
        also: Vec::new(),
    });
    secs.len() - 1
}

/// The files an include pattern names, relative to the including file.
pub(crate) fn expand(including: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        including.parent().unwrap_or(Path::new("")).join(pattern)
    };
    let s = full.to_string_lossy().into_owned();
    if !s.contains(['*', '?', '[']) {
        return if full.is_file() {
            vec![full]
        } else {
            Vec::new()
        };
    }
    let mut v: Vec<PathBuf> = glob::glob(&s)
        .map(|g| g.flatten().filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// One line of ipsec.secrets.
pub(crate) enum SecretLine {
    Include(String),
    Secret {
        ids: Vec<String>,
        kind: String,
        secret: Zeroizing<String>,
    },
}

/// Reads one line of ipsec.secrets: `[ids] : TYPE secret`, `include
/// PATTERN`, or nothing (blank, comment). Errors never quote the line.
pub(crate) fn secret_line(raw: &str) -> Result<Option<SecretLine>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if let Some(p) = line.strip_prefix("include ") {
        return Ok(Some(SecretLine::Include(p.trim().to_string())));
    }
    // The selectors end at " : " (or a leading ": "); ids may be quoted.
    let (ids_part, rest) =
        if let Some(r) = line.strip_prefix(": ").or_else(|| line.strip_prefix(":\t")) {
            ("", r)
        } else {
            match find_separator(line) {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => return Err("missing ' : ' between the identities and the secret".into()),
            }
        };
    let ids = ids_words(ids_part)?;
    let rest = rest.trim_start();
    let kind_len = rest.find([' ', '\t']).unwrap_or(rest.len());
    let kind = rest[..kind_len].to_string();
    if kind.is_empty() {
        return Err("missing the kind of secret (PSK, RSA, ...)".into());
    }
    let value = rest[kind_len..].trim();
    let secret = match value.as_bytes().first() {
        Some(q @ (b'"' | b'\'')) => {
            let q = *q as char;
            let inner = &value[1..];
            let end = inner.rfind(q).ok_or("unterminated quoted secret")?;
            if !inner[end + 1..].trim().is_empty() && !inner[end + 1..].trim().starts_with('#') {
                return Err("text after the quoted secret".into());
            }
            Zeroizing::new(inner[..end].to_string())
        }
        Some(_) => {
            let end = value.find([' ', '\t', '#']).unwrap_or(value.len());
            Zeroizing::new(value[..end].to_string())
        }
        None => Zeroizing::new(String::new()),
    };
    Ok(Some(SecretLine::Secret { ids, kind, secret }))
}

/// The position of the ':' of the first " : " outside quotes.
fn find_separator(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut quoted = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b':' if !quoted
                && i > 0
                && matches!(b[i - 1], b' ' | b'\t')
                && b.get(i + 1).is_some_and(|c| matches!(c, b' ' | b'\t')) =>
            {
                return Some(i)
            }
            _ => {}
        }
    }
    None
}

fn ids_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for t in tokens(s)? {
        match t {
            Tok::Word(w) => out.push(w),
            Tok::Eq => return Err("'=' among the identities (quote a distinguished name)".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_words_quotes_comments() {
        assert_eq!(
            tokens("  rightid=\"C=CH, O=x\" # c").unwrap(),
            [
                Tok::Word("rightid".into()),
                Tok::Eq,
                Tok::Word("C=CH, O=x".into())
            ]
        );
        assert_eq!(
            tokens("leftid=@#0a0b").unwrap()[2],
            Tok::Word("@#0a0b".into())
        );
        assert!(tokens("x=\"open").is_err());
    }

    #[test]
    fn sections_merge_and_later_keys_win() {
        let t = "config setup\n\tuniqueids=no\n\nconn a\n\tleft=1.1.1.1\n\talso=b\nconn b\n\tright=2.2.2.2\nconn a\n\tleft=3.3.3.3\n\tempty=\n";
        let s = parse(Path::new("i.conf"), t, &mut Vec::new()).unwrap();
        assert_eq!(s.len(), 3);
        let a = s.iter().find(|s| s.name == "a").unwrap();
        assert_eq!(a.settings[0].value.as_deref(), Some("3.3.3.3"));
        assert_eq!(a.settings[0].at.line, 10);
        assert_eq!(a.settings[1].value, None);
        assert_eq!(
            a.also,
            [(
                "b".to_string(),
                Pos {
                    file: "i.conf".into(),
                    line: 6
                }
            )]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = |t: &str| {
            parse(Path::new("i.conf"), t, &mut Vec::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("conn a\n  left\n"),
            "i.conf:2: syntax error: missing value for setting 'left'"
        );
        assert_eq!(e("conn\n"), "i.conf:1: syntax error: section name missing");
        assert_eq!(
            e("conn a\nleft=1\n"),
            "i.conf:2: syntax error: expected 'config setup', 'conn NAME' or 'ca NAME' at the start of a line, found 'left=1'"
        );
    }

    #[test]
    fn secrets_lines() {
        let Some(SecretLine::Secret { ids, kind, secret }) = secret_line(": PSK \"s e\"").unwrap()
        else {
            panic!()
        };
        assert!(ids.is_empty());
        assert_eq!(kind, "PSK");
        assert_eq!(&*secret, "s e");
        let Some(SecretLine::Secret { ids, secret, .. }) =
            secret_line("a.test 2001:db8::1 : PSK 0x0102 # c").unwrap()
        else {
            panic!()
        };
        assert_eq!(ids, ["a.test", "2001:db8::1"]);
        assert_eq!(&*secret, "0x0102");
        let Some(SecretLine::Secret { ids, kind, .. }) =
            secret_line("\"C=CH, CN=x\" : RSA key.pem").unwrap()
        else {
            panic!()
        };
        assert_eq!(ids, ["C=CH, CN=x"]);
        assert_eq!(kind, "RSA");
        assert!(secret_line("# x").unwrap().is_none());
        assert!(
            matches!(secret_line("include /etc/ipsec.d/*.secrets").unwrap(), Some(SecretLine::Include(p)) if p == "/etc/ipsec.d/*.secrets")
        );
        assert!(secret_line("a.test PSK x").is_err());
        assert!(secret_line(": PSK \"open").is_err());
    }
}
