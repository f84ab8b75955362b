//! The man pages cover what the code has: every vpnctl verb and each of its
//! arguments in vpnctl(8), every option in vpnd(8), every configuration key
//! the parser reads in vpnd.toml(5), each with a description. A verb,
//! option or key added without its doc makes one of these fail. `man -l`
//! renders each page without warnings.

use std::process::Command;

use control::config::doc::{code_keys, docs, Section};

/// The page as plain text: roff escapes undone, fonts dropped.
fn plain(page: &[u8]) -> String {
    String::from_utf8(page.to_vec())
        .expect("utf-8")
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\*(Aq", "'")
        .replace("\\(aq", "'")
        .replace("\\[aq]", "'")
        .replace("\\&", "")
}

#[test]
fn vpnctl_page_has_every_verb_with_its_arguments_and_exit_status() {
    let page = plain(&xtask::vpnctl_man().unwrap());
    let verbs = xtask::verbs();
    assert!(
        verbs.len() >= 16,
        "the verbs of the design: {}",
        verbs.len()
    );
    for v in &verbs {
        let about = v.get_about().map(|s| s.to_string()).unwrap_or_default();
        assert!(
            !about.is_empty(),
            "verb '{}' has no doc comment",
            v.get_name()
        );
        assert!(
            page.contains(&about),
            "vpnctl(8) lacks the doc of '{}'",
            v.get_name()
        );
        assert!(
            page.contains(&format!(".TP\n{} ", v.get_name()))
                || page.contains(&format!(".TP\n{}\n", v.get_name())),
            "vpnctl(8) has no entry for '{}'",
            v.get_name()
        );
        for a in v.get_arguments().filter(|a| a.get_id().as_str() != "help") {
            let help = a.get_help().map(|s| s.to_string()).unwrap_or_default();
            assert!(
                !help.is_empty(),
                "argument '{}' of verb '{}' has no doc comment",
                a.get_id(),
                v.get_name()
            );
            assert!(page.contains(&help), "vpnctl(8) lacks '{help}'");
        }
    }
    for needed in [
        "EXIT STATUS",
        "EXAMPLES",
        "vpnd is not reachable",
        "vpnctl set oregon keyingtries=0",
    ] {
        assert!(page.contains(needed), "vpnctl(8) has {needed}");
    }
}

#[test]
fn vpnd_page_has_every_option() {
    let page = plain(&xtask::vpnd_man().unwrap());
    let cmd = xtask::vpnd_command();
    for a in cmd.get_arguments() {
        let long = a.get_long().expect("long options only");
        assert!(
            page.contains(&format!("--{long}")),
            "vpnd(8) lacks --{long}"
        );
        let help = a.get_help().map(|s| s.to_string()).unwrap_or_default();
        assert!(!help.is_empty(), "--{long} has no doc comment");
    }
    for needed in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "READY=1",
        "/etc/vpnd/vpnd.toml",
    ] {
        assert!(page.contains(needed), "vpnd(8) mentions {needed}");
    }
}

#[test]
fn vpnd_toml_page_has_every_key_of_the_code() {
    let page = plain(&xtask::vpnd_toml_man().unwrap());
    for s in Section::ALL {
        let keys = code_keys(s);
        assert!(!keys.is_empty());
        for key in keys {
            let d = docs(s)
                .find(|d| d.key == key)
                .unwrap_or_else(|| panic!("{key} of {} is not documented", s.header()));
            // Each key is its own tagged paragraph: ".TP" then the key.
            let entry = format!(".TP\n{key}\n{}", d.doc);
            assert!(
                page.contains(&entry),
                "vpnd.toml(5) lacks {key} of {} with its doc",
                s.header()
            );
            assert!(
                page.contains(&format!("Default: {}.", d.default)),
                "{key}: default"
            );
            assert!(
                page.contains(&format!("strongSwan: {}.", d.strongswan)),
                "{key}: strongSwan"
            );
        }
    }
}

#[test]
fn completions_know_every_verb() {
    let bash = String::from_utf8(xtask::completion(clap_complete::Shell::Bash, "vpnctl")).unwrap();
    let zsh = String::from_utf8(xtask::completion(clap_complete::Shell::Zsh, "vpnctl")).unwrap();
    assert!(
        zsh.starts_with("#compdef vpnctl"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    for v in xtask::verbs() {
        assert!(
            bash.contains(v.get_name()),
            "bash completion lacks {}",
            v.get_name()
        );
        assert!(
            zsh.contains(v.get_name()),
            "zsh completion lacks {}",
            v.get_name()
        );
    }
    let bash_vpnd =
        String::from_utf8(xtask::completion(clap_complete::Shell::Bash, "vpnd")).unwrap();
    assert!(bash_vpnd.contains("--log-format"));
}

/// `man -l` renders each page; groff's warnings (bad requests, escapes)
/// fail the test.
#[test]
fn man_renders_each_page() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("docs-{}", std::process::id()));
    let files = xtask::write_docs(&dir).unwrap();
    let have_man = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_man,
        "man is missing: apt-get install man-db (scripts/deps.sh installs it)"
    );
    for f in files
        .iter()
        .filter(|f| f.to_string_lossy().contains("/man/"))
    {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(f)
            .env("MANWIDTH", "80")
            .output()
            .expect("man -l");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {}: {err}", f.display());
        assert!(err.trim().is_empty(), "man -l {} warns: {err}", f.display());
        assert!(text.contains("NAME"), "{}: {text}", f.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
