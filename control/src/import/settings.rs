//! strongSwan's settings syntax, as swanctl.conf (and strongswan.conf) use
//! it, read into a tree of sections and key/value pairs with the file and
//! line of each.
//!
//! The syntax, as strongSwan's settings lexer and parser define it:
//! - `name = value` sets a key; the value runs to the end of the line, a
//!   `#` or a `}`; its words are joined by one space; `"..."` quotes keep
//!   spaces and `#`, with `\n`, `\t`, `\r` and `\` + newline (continuation)
//!   escapes. `name =` with nothing after it leaves the key unset.
//! - `name {` ... `}` opens a section; `name : a.b, c {` makes it inherit
//!   the sections named by the dotted paths (from the top), which fill in
//!   what the section does not set itself.
//! - `include PATTERN` reads the files matching a glob, relative to the
//!   including file's directory, at that point (in the current section).
//! - `#` starts a comment; names may hold any character but
//!   `# { } : . , = "` and white space.
//! - A section or key given twice is one: later keys replace earlier ones,
//!   sections merge.

use std::path::{Path, PathBuf};

use super::ImportError;

/// Where something is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub file: PathBuf,
    pub line: usize,
}

/// One `name = value`.
#[derive(Clone, Debug)]
pub(crate) struct Kv {
    pub name: String,
    /// `None`: written as `name =` (unset).
    pub value: Option<String>,
    pub at: Pos,
}

/// One section with what it holds, in the order first written.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub name: String,
    pub at: Pos,
    /// `name : ref, ...`: dotted paths from the top.
    pub refs: Vec<(String, Pos)>,
    pub kvs: Vec<Kv>,
    pub sections: Vec<Section>,
}

impl Section {
    fn new(name: &str, at: Pos) -> Section {
        Section {
            name: name.to_string(),
            at,
            refs: Vec::new(),
            kvs: Vec::new(),
            sections: Vec::new(),
        }
    }

    pub fn kv(&self, name: &str) -> Option<&Kv> {
        self.kvs.iter().find(|k| k.name == name)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    fn set(&mut self, kv: Kv) {
        match self.kvs.iter_mut().find(|k| k.name == kv.name) {
            Some(k) => *k = kv,
            None => self.kvs.push(kv),
        }
    }

    /// Adds `s` as a subsection, merging it into one of the same name.
    fn add(&mut self, s: Section) {
        match self.sections.iter_mut().find(|x| x.name == s.name) {
            Some(x) => x.extend(s),
            None => self.sections.push(s),
        }
    }

    /// A later definition of the same section: its keys replace, its
    /// sections merge.
    fn extend(&mut self, other: Section) {
        for r in other.refs {
            if !self.refs.iter().any(|(n, _)| *n == r.0) {
                self.refs.push(r);
            }
        }
        for kv in other.kvs {
            self.set(kv);
        }
        for s in other.sections {
            self.add(s);
        }
    }

    /// Fills in what `base` has and `self` does not write (inheritance).
    fn fill_from(&mut self, base: &Section) {
        for kv in &base.kvs {
            if self.kv(&kv.name).is_none() {
                self.kvs.push(kv.clone());
            }
        }
        for s in &base.sections {
            match self.sections.iter_mut().find(|x| x.name == s.name) {
                Some(x) => x.fill_from(s),
                None => self.sections.push(s.clone()),
            }
        }
    }

    /// The section at a dotted path below `self`.
    fn find(&self, path: &str) -> Option<&Section> {
        let mut s = self;
        for part in path.split('.') {
            s = s.section(part)?;
        }
        Some(s)
    }
}

/// Every section path some section inherits from (`name : a.b {`).
pub(crate) fn referenced(root: &Section) -> Vec<String> {
    fn walk(s: &Section, out: &mut Vec<String>) {
        out.extend(s.refs.iter().map(|(r, _)| r.clone()));
        for c in &s.sections {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// How deep includes and references may nest.
const MAX_DEPTH: usize = 16;

/// Reads `path` (whose text is `text`) and the files it includes.
/// `missing` collects includes that matched no file, as (where, pattern):
/// strongSwan accepts those.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    missing: &mut Vec<(Pos, String)>,
) -> Result<Section, ImportError> {
    let mut p = Parser {
        stack: vec![Section::new(
            "",
            Pos {
                file: path.to_path_buf(),
                line: 0,
            },
        )],
        missing,
        depth: 0,
    };
    p.file(path, text)?;
    if p.stack.len() > 1 {
        let open = p.stack.pop().expect("checked");
        return Err(ImportError::Syntax {
            file: open.at.file.clone(),
            line: open.at.line,
            message: format!("section '{}' is not closed (missing '}}')", open.name),
        });
    }
    Ok(p.stack.pop().expect("the root"))
}

/// The tree with every reference (`name : base {`) resolved: a section
/// holds what it inherits. References that name nothing go to `dangling`.
pub(crate) fn resolve(root: &Section, dangling: &mut Vec<(Pos, String)>) -> Section {
    fn walk(
        s: &Section,
        root: &Section,
        depth: usize,
        dangling: &mut Vec<(Pos, String)>,
    ) -> Section {
        let mut out = Section {
            name: s.name.clone(),
            at: s.at.clone(),
            refs: Vec::new(),
            kvs: s.kvs.clone(),
            sections: s
                .sections
                .iter()
                .map(|c| walk(c, root, depth, dangling))
                .collect(),
        };
        for (r, at) in &s.refs {
            match root.find(r) {
                Some(base) if depth < MAX_DEPTH => {
                    let base = walk(base, root, depth + 1, dangling);
                    out.fill_from(&base);
                }
                Some(_) => dangling.push((at.clone(), format!("{r} (references nest too deep)"))),
                None => dangling.push((at.clone(), r.clone())),
            }
        }
        out
    }
    walk(root, root, 0, dangling)
}

struct Parser<'m> {
    /// The open sections, the root first.
    stack: Vec<Section>,
    missing: &'m mut Vec<(Pos, String)>,
    depth: usize,
}

/// A name character of the lexer.
fn is_name(b: u8) -> bool {
    !matches!(
        b,
        b'#' | b'{' | b'}' | b':' | b'.' | b',' | b'=' | b'"' | b'\r' | b'\n' | b'\t' | b' '
    )
}

struct Lexer<'t> {
    s: &'t [u8],
    i: usize,
    line: usize,
    file: &'t Path,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn syntax(&self, message: impl Into<String>) -> ImportError {
        ImportError::Syntax {
            file: self.file.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            file: self.file.to_path_buf(),
            line: self.line,
        }
    }

    /// Skips white space, newlines and comments.
    fn skip(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    self.bump();
                }
                b'#' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.bump();
        }
    }

    fn name(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_name) {
            self.bump();
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted string, the opening quote consumed.
    fn string(&mut self) -> Result<String, ImportError> {
        let start_line = self.line;
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ImportError::Syntax {
                        file: self.file.to_path_buf(),
                        line: start_line,
                        message: "unterminated string".into(),
                    })
                }
                Some(b'"') => break,
                Some(b'\r') => {}
                Some(b'\\') => match self.bump() {
                    None => {
                        return Err(ImportError::Syntax {
                            file: self.file.to_path_buf(),
                            line: start_line,
                            message: "unterminated string".into(),
                        })
                    }
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'\n') => {}
                    Some(b'\r') if self.peek() == Some(b'\n') => {
                        self.bump();
                    }
                    Some(b) => out.push(b),
                },
                Some(b) => out.push(b),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The value after `=`: `None` when empty.
    fn value(&mut self) -> Result<Option<String>, ImportError> {
        let mut parts: Vec<String> = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'#' | b'}' | b'\n') => break,
                Some(b' ' | b'\t' | b'\r') => {
                    self.bump();
                }
                Some(b'"') => {
                    self.bump();
                    parts.push(self.string()?);
                }
                Some(_) => {
                    let start = self.i;
                    while self.peek().is_some_and(|b| {
                        !matches!(b, b'#' | b'}' | b'"' | b'\r' | b'\n' | b'\t' | b' ')
                    }) {
                        self.bump();
                    }
                    parts.push(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
                }
            }
        }
        Ok((!parts.is_empty()).then(|| parts.join(" ")))
    }

    /// The pattern after `include `.
    fn pattern(&mut self) -> Result<String, ImportError> {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
        if self.peek() == Some(b'"') {
            self.bump();
            return self.string();
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'#' | b'}' | b'\n' | b'\t' | b' ') => break,
                Some(b'\r') => {
                    self.bump();
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(b @ (b'"' | b'#' | b'}' | b' ')) => {
                            self.bump();
                            out.push(b);
                        }
                        _ => out.push(b'\\'),
                    }
                }
                Some(b) => {
                    self.bump();
                    out.push(b);
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// `include` followed by blanks and then not `=` starts an include.
    fn at_include(&self) -> bool {
        let rest = &self.s[self.i..];
        if !rest.starts_with(b"include") {
            return false;
        }
        let after = &rest[7..];
        let blanks = after
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        blanks > 0 && after.get(blanks).is_some_and(|b| *b != b'=')
    }

    /// `ref, ref.path, ...` after `:`.
    fn refs(&mut self) -> Result<Vec<(String, Pos)>, ImportError> {
        let mut out = Vec::new();
        loop {
            self.skip();
            let at = self.pos();
            let mut name = self.name();
            while self.peek() == Some(b'.') && self.s.get(self.i + 1).copied().is_some_and(is_name)
            {
                self.bump();
                name.push('.');
                name.push_str(&self.name());
            }
            if name.is_empty() {
                return Err(self.syntax("expected the name of a section to inherit after ':'"));
            }
            out.push((name, at));
            self.skip();
            if self.peek() == Some(b',') {
                self.bump();
                continue;
            }
            return Ok(out);
        }
    }
}

impl Parser<'_> {
    fn top(&mut self) -> &mut Section {
        self.stack.last_mut().expect("the root is never popped")
    }

    fn file(&mut self, path: &Path, text: &str) -> Result<(), ImportError> {
        let mut lx = Lexer {
            s: text.as_bytes(),
            i: 0,
            line: 1,
            file: path,
        };
        loop {
            lx.skip();
            let Some(b) = lx.peek() else {
                return Ok(());
            };
            match b {
                b'}' => {
                    lx.bump();
                    if self.stack.len() == 1 {
                        return Err(lx.syntax("unexpected '}' (no section is open)"));
                    }
                    let s = self.stack.pop().expect("checked");
                    self.top().add(s);
                }
                b'"' => return Err(lx.syntax("unexpected string (quotes belong after '=')")),
                b'{' | b':' | b'.' | b',' | b'=' => {
                    return Err(lx.syntax(format!("unexpected '{}'", b as char)))
                }
                _ if lx.at_include() => {
                    let at = lx.pos();
                    lx.i += "include".len();
                    let pattern = lx.pattern()?;
                    self.include(&at, &pattern)?;
                }
                _ => {
                    let at = lx.pos();
                    let name = lx.name();
                    while matches!(lx.peek(), Some(b' ' | b'\t' | b'\r')) {
                        lx.bump();
                    }
                    // A section's '{' may follow on a later line.
                    if lx.peek() != Some(b'=') {
                        lx.skip();
                    }
                    match lx.peek() {
                        Some(b'=') => {
                            lx.bump();
                            let value = lx.value()?;
                            self.top().set(Kv { name, value, at });
                        }
                        Some(b'{') => {
                            lx.bump();
                            self.stack.push(Section::new(&name, at));
                        }
                        Some(b':') => {
                            lx.bump();
                            let refs = lx.refs()?;
                            if lx.peek() != Some(b'{') {
                                return Err(lx.syntax(format!(
                                    "expected '{{' after the references of section '{name}'"
                                )));
                            }
                            lx.bump();
                            let mut s = Section::new(&name, at);
                            s.refs = refs;
                            self.stack.push(s);
                        }
                        Some(b'.') => {
                            return Err(lx.syntax(format!(
                            "'{name}.': dotted names are not allowed here; open a section instead"
                        )))
                        }
                        Some(b) => {
                            return Err(lx.syntax(format!(
                                "expected '=' or '{{' after '{name}', found '{}'",
                                b as char
                            )))
                        }
                        None => {
                            return Err(lx.syntax(format!(
                                "expected '=' or '{{' after '{name}', found the end of the file"
                            )))
                        }
                    }
                }
            }
        }
    }

    fn include(&mut self, at: &Pos, pattern: &str) -> Result<(), ImportError> {
        if pattern.is_empty() {
            return Err(ImportError::Syntax {
                file: at.file.clone(),
                line: at.line,
                message: "include without a pattern".into(),
            });
        }
        if self.depth >= MAX_DEPTH {
            return Err(ImportError::Syntax {
                file: at.file.clone(),
                line: at.line,
                message: format!("include '{pattern}': includes nest too deep (a loop?)"),
            });
        }
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            at.file.parent().unwrap_or(Path::new("")).join(pattern)
        };
        let full_s = full.to_string_lossy().into_owned();
        let files: Vec<PathBuf> = if full_s.contains(['*', '?', '[']) {
            let glob = glob::glob(&full_s).map_err(|e| ImportError::Syntax {
                file: at.file.clone(),
                line: at.line,
                message: format!("include '{pattern}': invalid pattern: {}", e.msg),
            })?;
            let mut v: Vec<PathBuf> = glob.flatten().filter(|p| p.is_file()).collect();
            v.sort();
            v
        } else if full.exists() {
            vec![full]
        } else {
            Vec::new()
        };
        if files.is_empty() {
            self.missing.push((at.clone(), pattern.to_string()));
        }
        for f in files {
            let text = super::read(&f)?;
            self.depth += 1;
            let r = self.file(&f, &text);
            self.depth -= 1;
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Section {
        let mut missing = Vec::new();
        let t = parse(Path::new("t.conf"), text, &mut missing).unwrap();
        resolve(&t, &mut Vec::new())
    }

    fn err(text: &str) -> String {
        parse(Path::new("t.conf"), text, &mut Vec::new())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn sections_keys_values_and_lines() {
        let t = tree(
            "# comment\nconnections {\n  gw {\n    local_addrs = 198.18.0.1 # mine\n    proposals = aes256gcm16-prfsha256-x25519,  default\n    x = \"a # b\" c\n    empty =\n  }\n}\n",
        );
        let gw = t.section("connections").unwrap().section("gw").unwrap();
        assert_eq!(gw.at.line, 3);
        let la = gw.kv("local_addrs").unwrap();
        assert_eq!(la.value.as_deref(), Some("198.18.0.1"));
        assert_eq!(la.at.line, 4);
        assert_eq!(
            gw.kv("proposals").unwrap().value.as_deref(),
            Some("aes256gcm16-prfsha256-x25519, default")
        );
        assert_eq!(gw.kv("x").unwrap().value.as_deref(), Some("a # b c"));
        assert_eq!(gw.kv("empty").unwrap().value, None);
    }

    #[test]
    fn later_keys_replace_and_sections_merge() {
        let t = tree("a {\n x = 1\n}\na {\n x = 2\n y = 3\n}\n");
        let a = t.section("a").unwrap();
        assert_eq!(t.sections.len(), 1);
        assert_eq!(a.kv("x").unwrap().value.as_deref(), Some("2"));
        assert_eq!(a.kv("x").unwrap().at.line, 5);
        assert_eq!(a.kv("y").unwrap().value.as_deref(), Some("3"));
    }

    #[test]
    fn brace_on_the_next_line_and_closing_after_a_value() {
        let t = tree("a\n{\n  b { x = 1 }\n}");
        let b = t.section("a").unwrap().section("b").unwrap();
        assert_eq!(b.kv("x").unwrap().value.as_deref(), Some("1"));
    }

    #[test]
    fn quoted_strings_with_escapes_and_continuation() {
        let t = tree("k = \"a\\tb\\\"c\\\n d\"\n");
        assert_eq!(t.kv("k").unwrap().value.as_deref(), Some("a\tb\"c d"));
    }

    #[test]
    fn references_fill_in_what_a_section_does_not_set() {
        let t = tree(
            "connections {\n base {\n  version = 2\n  local_addrs = 1.1.1.1\n  children { net { mode = transport } }\n }\n gw : connections.base {\n  local_addrs = 2.2.2.2\n }\n}\n",
        );
        let gw = t.section("connections").unwrap().section("gw").unwrap();
        assert_eq!(gw.kv("version").unwrap().value.as_deref(), Some("2"));
        assert_eq!(
            gw.kv("local_addrs").unwrap().value.as_deref(),
            Some("2.2.2.2")
        );
        let net = gw.section("children").unwrap().section("net").unwrap();
        assert_eq!(net.kv("mode").unwrap().value.as_deref(), Some("transport"));
    }

    #[test]
    fn dangling_references_are_collected() {
        let raw = parse(Path::new("t"), "a : nowhere {\n}\n", &mut Vec::new()).unwrap();
        let mut dangling = Vec::new();
        resolve(&raw, &mut dangling);
        assert_eq!(dangling.len(), 1);
        assert_eq!(dangling[0].1, "nowhere");
        assert_eq!(dangling[0].0.line, 1);
    }

    #[test]
    fn a_key_named_include_is_a_key() {
        let t = tree("include = yes\n");
        assert_eq!(t.kv("include").unwrap().value.as_deref(), Some("yes"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(
            err("a {\n  b = 1\n"),
            "t.conf:1: syntax error: section 'a' is not closed (missing '}')"
        );
        assert_eq!(
            err("a = 1\n}\n"),
            "t.conf:2: syntax error: unexpected '}' (no section is open)"
        );
        assert_eq!(
            err("\n\nx y\n"),
            "t.conf:3: syntax error: expected '=' or '{' after 'x', found 'y'"
        );
        assert_eq!(
            err("a.b = 1\n"),
            "t.conf:1: syntax error: 'a.': dotted names are not allowed here; open a section instead"
        );
        assert_eq!(
            err("k = \"open\n\n"),
            "t.conf:1: syntax error: unterminated string"
        );
        assert_eq!(
            err("\"x\" = 1"),
            "t.conf:1: syntax error: unexpected string (quotes belong after '=')"
        );
    }

    #[test]
    fn includes_relative_to_the_file_in_the_current_section() {
        let dir = std::env::temp_dir().join(format!("vpnd-import-inc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "y = 2\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "x = 1\n").unwrap();
        let main = dir.join("main.conf");
        let text = "s {\n  include conf.d/*.conf\n  include missing.conf\n}\n";
        let mut missing = Vec::new();
        let t = parse(&main, text, &mut missing).unwrap();
        let s = t.section("s").unwrap();
        assert_eq!(s.kv("x").unwrap().at.file, dir.join("conf.d/a.conf"));
        assert_eq!(s.kv("y").unwrap().value.as_deref(), Some("2"));
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0.line, 3);
        // An include of itself is stopped.
        std::fs::write(&main, "include main.conf\n").unwrap();
        let e = parse(&main, "include main.conf\n", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("nest too deep"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
