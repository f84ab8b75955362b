//! Secrets files: which PSK serves which identities, never printed,
//! permission warnings.

use control::config::{self};
use control::secrets::Secrets;

mod common;
use common::*;

fn psk_text(p: Option<ike::config::Psk>) -> Option<String> {
    p.map(|p| String::from_utf8(p.0.to_vec()).unwrap())
}

#[test]
fn secrets_matching_rules() {
    let dir = Dir::new("secrets");
    let f = dir.write_secret(
        "secrets.toml",
        r#"
[[psk]]
ids = ["%any"]
secret = "fallback"

[[psk]]
ids = ["b.test"]
secret = "remote-only"

[[psk]]
ids = ["a.test", "b.test"]
secret = "both"

[[psk]]
ids = ["gw.test"]
secret = "local-only"

[[psk]]
ids = ["198.18.0.7", "@c.test"]
secret = "0x736563726574"
"#,
    );
    let (s, warnings) = Secrets::load(&[f]).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(s.len(), 5);
    // Both ids named beats one of them, whatever the order in the file.
    assert_eq!(
        psk_text(s.psk_for("a.test", "b.test")).as_deref(),
        Some("both")
    );
    // A single id matches when it is the remote one...
    assert_eq!(
        psk_text(s.psk_for("x.test", "b.test")).as_deref(),
        Some("remote-only")
    );
    // ... and an exact remote match beats %any.
    assert_eq!(
        psk_text(s.psk_for("gw.test", "b.test")).as_deref(),
        Some("remote-only")
    );
    // %any matches whatever else is asked.
    assert_eq!(
        psk_text(s.psk_for("x.test", "y.test")).as_deref(),
        Some("fallback")
    );
    // Identities compare as identities: "@c.test" is the FQDN c.test; IPs too.
    assert_eq!(
        psk_text(s.psk_for("198.18.0.7", "c.test")).as_deref(),
        Some("secret")
    );

    let f = dir.write_secret(
        "only.toml",
        "[[psk]]\nids = [\"gw.test\"]\nsecret = \"local-only\"\n[[psk]]\nids = [\"a.test\", \"b.test\"]\nsecret = \"0sYm90aA==\"\n",
    );
    let (s, _) = Secrets::load(&[f]).unwrap();
    // A single id matches when it is the local one.
    assert_eq!(
        psk_text(s.psk_for("gw.test", "z.test")).as_deref(),
        Some("local-only")
    );
    assert_eq!(
        psk_text(s.psk_for("a.test", "b.test")).as_deref(),
        Some("both")
    );
    assert_eq!(
        psk_text(s.psk_for("b.test", "a.test")).as_deref(),
        Some("both")
    );
    // Nothing matches.
    assert!(s.psk_for("x.test", "y.test").is_none());
    assert!(Secrets::empty().psk_for("a.test", "b.test").is_none());
    assert!(Secrets::empty().is_empty());
}

#[test]
fn secrets_are_never_printed() {
    let dir = Dir::new("redact");
    let f = dir.write_secret(
        "s.toml",
        "[[psk]]\nids = [\"a.test\"]\nsecret = \"hunter2hunter2\"\n",
    );
    let (s, _) = Secrets::load(&[f]).unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert_eq!(
        dbg,
        "Secrets { psk: [Psk { ids: [\"a.test\"], secret: <redacted> }], key: [], cacerts: 0, crls: 0 }"
    );
    let psk = s.psk_for("a.test", "b.test").unwrap();
    assert!(!format!("{psk:?}").contains("hunter2"));

    let f = dir.write_secret(
        "bad.toml",
        "[[psk]]\nids = [\"a.test\", \"XX=x\"]\nsecret = \"0xhunter2\"\n[[psk]]\nids = []\nsecret = 42\n",
    );
    let e = Secrets::load(std::slice::from_ref(&f))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2"), "{e}");
    let p = d(&f);
    assert_eq!(
        e,
        [
            format!("{p}:2: psk.ids: invalid identity 'XX=x': unknown DN attribute (use C, ST, L, O, OU, CN, SN, serialNumber, T, G, E, DC)"),
            format!("{p}:3: psk.secret: invalid hex secret after '0x'"),
            format!("{p}:5: psk.ids: must not be empty"),
            format!("{p}:6: psk.secret: expected a string, found an integer"),
        ]
        .join("\n")
    );
}

#[test]
fn secrets_permissions_warning() {
    let dir = Dir::new("perms");
    let f = dir.write("secrets.toml", SECRETS);
    chmod(&f, 0o644);
    let (_, w) = Secrets::load(std::slice::from_ref(&f)).unwrap();
    assert_eq!(
        w,
        [format!(
            "secrets file '{}' is readable by others (mode 0644); chmod 600 it",
            d(&f)
        )]
    );
    chmod(&f, 0o640);
    let (_, w) = Secrets::load(std::slice::from_ref(&f)).unwrap();
    assert_eq!(
        w,
        [format!(
            "secrets file '{}' is readable by group (mode 0640); chmod 600 it",
            d(&f)
        )]
    );
    chmod(&f, 0o600);
    let (_, w) = Secrets::load(std::slice::from_ref(&f)).unwrap();
    assert!(w.is_empty(), "{w:?}");

    // load() passes the warning on.
    let main = dir.write("vpnd.toml", "[daemon]\nsecrets = [\"secrets.toml\"]\n");
    chmod(&f, 0o644);
    let c = ok(config::load(&main));
    assert_eq!(
        c.warnings,
        [format!(
            "secrets file '{}' is readable by others (mode 0644); chmod 600 it",
            d(&f)
        )]
    );
}

#[test]
fn missing_secrets_file_via_secrets_load() {
    let dir = Dir::new("nosecret");
    let f = dir.path("gone.toml");
    let e = Secrets::load(std::slice::from_ref(&f))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            d(&f)
        )
    );
}
