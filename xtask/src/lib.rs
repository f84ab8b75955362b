//! The operator's documentation, generated so that it cannot drift from the
//! code: vpnd(8) and vpnctl(8) from the clap definitions the binaries parse
//! ([`control::cli`]), vpnd.toml(5) from the documented key table that a
//! test holds equal to the parser's own key tables
//! ([`control::config::doc`]), and bash and zsh completions (clap_complete).
//!
//! An xtask rather than a build script or a hidden subcommand: the
//! generators (clap_mangen, clap_complete) stay out of the daemon's build
//! and out of the shipped binaries, and nothing runs on every `cargo build`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Arg, Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;
use control::cli::{VpnctlArgs, VpndArgs};
use control::config::doc::{docs, Section};

const MANUAL: &str = "vpnd manual";

fn source() -> String {
    format!("vpnd {}", env!("CARGO_PKG_VERSION"))
}

/// `vpnd`'s clap command.
pub fn vpnd_command() -> Command {
    VpndArgs::command()
}

/// `vpnctl`'s clap command.
pub fn vpnctl_command() -> Command {
    VpnctlArgs::command()
}

/// The verbs of vpnctl (visible subcommands), in definition order.
pub fn verbs() -> Vec<Command> {
    vpnctl_command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect()
}

fn section(r: &mut Roff, title: &str) {
    r.control("SH", [title]);
}

fn paragraph(r: &mut Roff, text: &str) {
    r.control("PP", None::<&str>);
    r.text([roman(text)]);
}

/// A tagged paragraph: `tag` in bold, then `body`.
fn tagged(r: &mut Roff, tag: Vec<Inline>, body: &str) {
    r.control("TP", None::<&str>);
    r.text(tag);
    r.text([roman(body)]);
}

/// One example: what it does, then the command in bold.
fn example(r: &mut Roff, what: &str, cmd: &str) {
    r.control("TP", None::<&str>);
    r.text([bold(cmd)]);
    r.text([roman(what)]);
}

fn help_of(a: &Arg) -> String {
    a.get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn value_name(a: &Arg) -> String {
    a.get_value_names()
        .and_then(|v| v.first())
        .map(|s| s.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
}

/// The arguments of a verb as documented (no help flag, no global option).
fn verb_args(verb: &Command) -> Vec<&Arg> {
    verb.get_arguments()
        .filter(|a| a.get_id().as_str() != "help" && !a.is_global_set() && !a.is_hide_set())
        .collect()
}

/// `status [CONN] [--json]`.
pub fn verb_usage(verb: &Command) -> Vec<Inline> {
    let mut out = vec![bold(verb.get_name())];
    for a in verb_args(verb) {
        out.push(roman(" "));
        let many = a.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(a.get_action(), clap::ArgAction::Append);
        let (open, close) = if a.is_required_set() {
            ("", "")
        } else {
            ("[", "]")
        };
        out.push(roman(open));
        if a.is_positional() {
            out.push(italic(value_name(a)));
            if many {
                out.push(roman("..."));
            }
        } else {
            let long = format!("--{}", a.get_long().unwrap_or(a.get_id().as_str()));
            out.push(bold(long));
            if a.get_action().takes_values() {
                out.push(roman(" "));
                out.push(italic(value_name(a)));
            }
        }
        out.push(roman(close));
    }
    out
}

fn arg_tag(a: &Arg) -> Vec<Inline> {
    if a.is_positional() {
        vec![italic(value_name(a))]
    } else {
        let mut t = vec![bold(format!(
            "--{}",
            a.get_long().unwrap_or(a.get_id().as_str())
        ))];
        if a.get_action().takes_values() {
            t.push(roman(" "));
            t.push(italic(value_name(a)));
        }
        t
    }
}

fn man_header(cmd: Command, section: &str, out: &mut dyn Write) -> io::Result<Man> {
    let man = Man::new(cmd)
        .section(section)
        .manual(MANUAL)
        .source(source());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    Ok(man)
}

fn see_also(r: &mut Roff, pages: &str) {
    section(r, "SEE ALSO");
    r.text([roman(pages)]);
}

/// vpnctl(8): options, every verb with its arguments, exit status,
/// examples.
pub fn vpnctl_man() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let man = man_header(vpnctl_command(), "8", &mut out)?;
    let mut r = Roff::new();
    section(&mut r, "VERBS");
    for verb in verbs() {
        let about = verb
            .get_long_about()
            .or(verb.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        tagged(&mut r, verb_usage(&verb), &about);
        let args = verb_args(&verb);
        if !args.is_empty() {
            r.control("RS", None::<&str>);
            for a in args {
                tagged(&mut r, arg_tag(a), &help_of(a));
            }
            r.control("RE", None::<&str>);
        }
    }
    section(&mut r, "EXIT STATUS");
    for (code, what) in [
        ("0", "Done."),
        (
            "1",
            "The operation failed; the message is on stderr, e.g. no connection named 'oregon'.",
        ),
        ("2", "Usage error (unknown verb, missing or bad argument)."),
        ("3", "vpnd is not reachable on its control socket."),
    ] {
        tagged(&mut r, vec![bold(code)], what);
    }
    section(&mut r, "EXAMPLES");
    example(
        &mut r,
        "Load a new tunnel's file and start it.",
        "vpnctl load --file /etc/vpnd/conf.d/oregon.toml && vpnctl up oregon",
    );
    example(
        &mut r,
        "What a reload would change, then apply it.",
        "vpnctl reload --dry-run; vpnctl reload",
    );
    example(
        &mut r,
        "Retry forever, at most every ten minutes.",
        "vpnctl set oregon keyingtries=0 retry_max=10m",
    );
    example(
        &mut r,
        "Connections and SAs as JSON.",
        "vpnctl status --json",
    );
    example(&mut r, "Events as they happen.", "vpnctl monitor");
    section(&mut r, "FILES");
    tagged(
        &mut r,
        vec![italic("/run/vpnd/vpnd.sock")],
        "The control socket (mode 0600, or 0660 for [daemon] socket_group).",
    );
    see_also(&mut r, "vpnd(8), vpnd.toml(5), swanctl(8)");
    r.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// vpnd(8).
pub fn vpnd_man() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let man = man_header(vpnd_command(), "8", &mut out)?;
    let mut r = Roff::new();
    section(&mut r, "SIGNALS");
    tagged(
        &mut r,
        vec![bold("SIGTERM"), roman(", "), bold("SIGINT")],
        "Shut down: every connection is killed (best-effort DELETEs); the revival state keeps what was up, and the next start brings it back.",
    );
    section(&mut r, "ENVIRONMENT");
    tagged(
        &mut r,
        vec![bold("RUST_LOG")],
        "Log filter, e.g. info, debug, or actors=debug,info (default info).",
    );
    tagged(&mut r, vec![bold("NOTIFY_SOCKET")], "Set by systemd for Type=notify: vpnd sends READY=1 once its sockets are bound and its configuration is loaded, STATUS= with a one-line summary (12 connections, 11 IKE SAs, 14 CHILD SAs) as tunnels come and go, and STOPPING=1 on shutdown. Unset: nothing is sent.");
    tagged(&mut r, vec![bold("WATCHDOG_USEC")], "Set by systemd for WatchdogSec=: every half interval vpnd asks its daemon actor for its counters and sends WATCHDOG=1 only when the answer comes within a quarter interval, so a wedged daemon is restarted.");
    tagged(&mut r, vec![bold("JOURNAL_STREAM")], "Set by systemd when stderr is the journal: text logs then leave out the timestamp, which journald records itself.");
    section(&mut r, "EXIT STATUS");
    tagged(&mut r, vec![bold("0")], "Shut down on a signal.");
    tagged(&mut r, vec![bold("1")], "The configuration is invalid (one line per error: file, line, key and reason) or a socket, the dataplane or the metrics endpoint cannot be set up.");
    tagged(&mut r, vec![bold("2")], "Usage error.");
    section(&mut r, "FILES");
    tagged(
        &mut r,
        vec![italic("/etc/vpnd/vpnd.toml")],
        "The configuration, see vpnd.toml(5).",
    );
    tagged(
        &mut r,
        vec![italic("/etc/vpnd/conf.d/")],
        "One file per tunnel, when the configuration includes conf.d/*.toml.",
    );
    tagged(
        &mut r,
        vec![italic("/etc/vpnd/secrets.toml")],
        "Pre-shared keys, mode 0600.",
    );
    tagged(
        &mut r,
        vec![italic("/run/vpnd/vpnd.sock")],
        "The control socket.",
    );
    tagged(
        &mut r,
        vec![italic("/var/lib/vpnd/")],
        "Revival state: which connections were up.",
    );
    tagged(
        &mut r,
        vec![italic("/usr/lib/systemd/system/vpnd.service")],
        "The systemd unit (Type=notify, WatchdogSec=, ExecReload=vpnctl reload).",
    );
    section(&mut r, "EXAMPLES");
    example(&mut r, "Run under systemd.", "systemctl enable --now vpnd");
    example(
        &mut r,
        "Run in the foreground with debug logs as JSON.",
        "RUST_LOG=debug vpnd --config /etc/vpnd/vpnd.toml --log-format json",
    );
    see_also(
        &mut r,
        "vpnctl(8), vpnd.toml(5), systemd.service(5), sd_notify(3)",
    );
    r.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// vpnd.toml(5): every key of every section, with its default and its
/// strongSwan equivalent.
pub fn vpnd_toml_man() -> io::Result<Vec<u8>> {
    let mut r = Roff::new();
    let source = source();
    // No date: the page is the same whenever it is generated.
    r.control("TH", ["VPND.TOML", "5", "\"\"", source.as_str(), MANUAL]);
    section(&mut r, "NAME");
    r.text([roman(
        "vpnd.toml - configuration of vpnd, the IKEv2/IPsec keying daemon",
    )]);
    section(&mut r, "SYNOPSIS");
    r.text([italic("/etc/vpnd/vpnd.toml")]);
    section(&mut r, "DESCRIPTION");
    paragraph(&mut r, "The configuration is TOML. The main file holds [daemon], [scheduler], [defaults] and [connections.NAME] tables; the files that [daemon] include names hold connections only (one file per tunnel works: connections merge). [defaults] takes any connection key except children, and every connection inherits it. Everything is checked at load time and every problem is reported at once, each with its file, line, dotted key and reason; an unknown key gets a \"did you mean\".");
    paragraph(&mut r, "Durations are written \"500ms\", \"30s\", \"5m\", \"4h\" or \"1d\"; a bare number is seconds. The file is only a data source: vpnctl reload applies the differences, vpnctl load --file one more file.");
    for s in Section::ALL {
        section(&mut r, s.title());
        paragraph(&mut r, &format!("Keys of {}:", s.header()));
        for d in docs(s) {
            r.control("TP", None::<&str>);
            r.text([bold(d.key)]);
            r.text([roman(d.doc)]);
            r.control("br", None::<&str>);
            r.text([roman("Default: "), roman(d.default), roman(".")]);
            r.control("br", None::<&str>);
            r.text([roman("strongSwan: "), italic(d.strongswan), roman(".")]);
        }
    }
    section(&mut r, "SECRETS");
    paragraph(&mut r, "The files [daemon] secrets names hold pre-shared keys, one [[psk]] table each, and the private keys of auth = pubkey, one [[key]] table each (file, relative to the secrets file, and passphrase for an encrypted PKCS#8 key); they should be root's and mode 0600: vpnd warns about one that group or others can read. vpnctl rereadsecrets loads them again, with [daemon] cacerts, crls and every local_cert.");
    tagged(
        &mut r,
        vec![bold("ids")],
        "The identities the secret serves, local or remote; \"%any\" matches any.",
    );
    tagged(
        &mut r,
        vec![bold("secret")],
        "As written, or as bytes after 0x (hex) or 0s (base64), as in strongSwan.",
    );
    section(&mut r, "EXAMPLE");
    r.control("nf", None::<&str>);
    r.text([roman(EXAMPLE)]);
    r.control("fi", None::<&str>);
    section(&mut r, "SEE ALSO");
    r.text([roman("vpnd(8), vpnctl(8), swanctl.conf(5)")]);
    let mut out = Vec::new();
    r.to_writer(&mut out)?;
    Ok(out)
}

const EXAMPLE: &str = r#"[daemon]
listen = ["198.18.0.1"]
include = ["conf.d/*.toml"]
secrets = ["secrets.toml"]

[defaults]
keyingtries = 0

[connections.oregon]
remote_addrs = ["198.18.0.2"]
local_id = "a.example.org"
remote_id = "b.example.org"
auto = "start"

[connections.oregon.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = ["aes256gcm16-x25519"]
"#;

/// Completion script for `shell` and the binary `name` ("vpnd" or
/// "vpnctl").
pub fn completion(shell: Shell, name: &str) -> Vec<u8> {
    let mut cmd = match name {
        "vpnd" => vpnd_command(),
        _ => vpnctl_command(),
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Every generated file: its path below the output directory and its
/// contents. The layout mirrors where the package installs them.
pub fn generated() -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = vec![
        (PathBuf::from("man/vpnd.8"), vpnd_man()?),
        (PathBuf::from("man/vpnctl.8"), vpnctl_man()?),
        (PathBuf::from("man/vpnd.toml.5"), vpnd_toml_man()?),
    ];
    for name in ["vpnd", "vpnctl"] {
        files.push((
            PathBuf::from(format!("completions/bash/{name}")),
            completion(Shell::Bash, name),
        ));
        files.push((
            PathBuf::from(format!("completions/zsh/_{name}")),
            completion(Shell::Zsh, name),
        ));
    }
    Ok(files)
}

/// Writes [`generated`] below `dir`; returns the paths written.
pub fn write_docs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, bytes) in generated()? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where `cargo xtask docs` writes and the package takes them from.
pub fn docs_dir() -> PathBuf {
    workspace_root().join("target/docs")
}
