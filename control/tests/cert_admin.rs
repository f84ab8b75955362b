//! Credential management over the control socket, with two daemons on an
//! in-memory network authenticating with certificates (openssl-made PKI:
//! root CA, intermediate "Sub CA", a.test and b.test; CRLs from `openssl
//! ca -gencrl`; A's key an encrypted PKCS#8 file with a passphrase):
//!
//! - `list-certs --json` and its text form: our certificate with its
//!   intermediate and private key, the CA certificates, the CRLs;
//! - `status` names the peer's certificate subject;
//! - `rereadsecrets` with a new CRL revokes the peer for the next
//!   authentication, the running IKE SA untouched;
//! - a failing `rereadsecrets` (garbage CRL, wrong passphrase) says which
//!   file and changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use actors::memnet::MemoryNet;
use actors::socket::Sockets;
use actors::{DaemonHandle, DaemonSettings};
use control::server::{self, Server};
use kernel::none::NoneDataplane;
use serde_json::Value;

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// In `p`: ca.pem, sub.pem (intermediate, issues the CRLs), a.pem/a.key,
/// b.pem/b.key (SANs a.test, b.test), a-chain.pem = a.pem + sub.pem,
/// a.p8 = a.key encrypted (PBES2 AES-256-CBC) with "hunter2 horse".
fn make_pki(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::write(
        p.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
    )
    .unwrap();
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/C=CH/O=strongSwan/CN=Root CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    openssl(p, &args);
    for (name, subj) in [
        ("sub", "/C=CH/O=strongSwan/CN=Sub CA"),
        ("a", "/C=CH/O=strongSwan/CN=a.test"),
        ("b", "/C=CH/O=strongSwan/CN=b.test"),
    ] {
        let mut args = vec!["req"];
        args.extend(EC);
        let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        openssl(p, &args);
    }
    let sign = |name: &str, ca: &str, ext: &str| {
        openssl(
            p,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-extfile",
                ext,
            ],
        )
    };
    sign("sub", "ca", "ca.ext");
    for name in ["a", "b"] {
        let ext = format!("{name}.ext");
        std::fs::write(p.join(&ext), format!("subjectAltName=DNS:{name}.test\n")).unwrap();
        sign(name, "sub", &ext);
    }
    let chain = std::fs::read_to_string(p.join("a.pem")).unwrap()
        + &std::fs::read_to_string(p.join("sub.pem")).unwrap();
    std::fs::write(p.join("a-chain.pem"), chain).unwrap();
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "a.key",
            "-out",
            "a.p8",
            "-passout",
            "pass:hunter2 horse",
        ],
    );
}

/// A CRL by Sub CA listing `revoked` (certificate files), PEM, at `out`.
fn make_crl(p: &Path, revoked: &[&str], out: &Path) {
    std::fs::write(
        p.join("ca.cnf"),
        "[ca]\ndefault_ca = sub\n[sub]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         certificate = sub.pem\nprivate_key = sub.key\ndefault_md = sha256\ndefault_crl_days = 30\n\
         crl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
    )
    .unwrap();
    std::fs::write(p.join("index.txt"), "").unwrap();
    std::fs::write(p.join("crlnumber"), "01\n").unwrap();
    for r in revoked {
        openssl(p, &["ca", "-config", "ca.cnf", "-revoke", r]);
    }
    openssl(
        p,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-gencrl",
            "-out",
            &out.display().to_string(),
        ],
    );
}

fn serial_of(p: &Path, cert: &str) -> String {
    let out = Command::new("openssl")
        .current_dir(p)
        .args(["x509", "-noout", "-serial", "-in", cert])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let hex = s.trim().trim_start_matches("serial=").to_lowercase();
    let hex = hex.trim_start_matches("00");
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn config_text(me: &str, peer: &str, lid: &str, rid: &str, cert: &str) -> String {
    let (lts, rts) = if me == B {
        ("198.19.2.0/24", "198.19.1.0/24")
    } else {
        ("198.19.1.0/24", "198.19.2.0/24")
    };
    format!(
        r#"[daemon]
dataplane = "none"
secrets = ["secrets.toml"]
cacerts = ["pki/ca.pem", "pki/sub.pem"]
crls = ["crls/"]

[connections.home]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_id = "{lid}"
remote_id = "{rid}"
auth = "pubkey"
local_cert = "pki/{cert}"
send_cert = "always"
auto = "add"
keyingtries = 1
retransmit_timeout = "200ms"
retransmit_tries = 2
[connections.home.children.net]
local_ts = ["{lts}"]
remote_ts = ["{rts}"]
"#
    )
}

async fn daemon(
    net: &Arc<MemoryNet>,
    me: &str,
    config: &control::config::Config,
) -> Arc<DaemonHandle> {
    let ip = me.parse().expect("ip");
    let settings = DaemonSettings {
        listen: vec![ip],
        dataplane: Arc::new(NoneDataplane::new()),
        scheduler: Default::default(),
        impair: false,
        admission: Default::default(),
        state_dir: None,
    };
    let specs = control::convert::specs(config).expect("specs");
    Arc::new(
        DaemonHandle::start_on(settings, specs, Sockets::memory(net.clone(), vec![ip]))
            .await
            .expect("daemon"),
    )
}

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vpnd-certadmin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A (socket in `dir`, key a.p8 with its passphrase) and B (in dir/b); the
/// PKI in dir/pki, an empty CRL by Sub CA in each one's crls/.
async fn lab(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    make_pki(&pki);
    let net = MemoryNet::new();
    let bdir = dir.join("b");
    for d in [dir, bdir.as_path()] {
        std::fs::create_dir_all(d.join("crls")).unwrap();
        make_crl(&pki, &[], &d.join("crls/sub.crl"));
        if d != dir {
            std::os::unix::fs::symlink(&pki, d.join("pki")).unwrap();
        }
    }
    write_secret(
        &dir.join("secrets.toml"),
        "[[key]]\nfile = \"pki/a.p8\"\npassphrase = \"hunter2 horse\"\n",
    );
    write_secret(
        &bdir.join("secrets.toml"),
        "[[key]]\nfile = \"pki/b.key\"\n",
    );
    std::fs::write(
        dir.join("vpnd.toml"),
        config_text(A, B, "a.test", "b.test", "a-chain.pem"),
    )
    .unwrap();
    std::fs::write(
        bdir.join("vpnd.toml"),
        config_text(B, A, "b.test", "a.test", "b.pem"),
    )
    .unwrap();
    let bconfig = control::config::load(&bdir.join("vpnd.toml")).expect("b's config");
    std::mem::forget(daemon(&net, B, &bconfig).await);
    let config = control::config::load(&dir.join("vpnd.toml")).expect("a's config");
    let a = daemon(&net, A, &config).await;
    let path = dir.join("vpnd.sock");
    let listener = server::bind(&path, None).expect("bind");
    tokio::spawn(Server::new(a, config).serve(listener));
    path
}

struct Out {
    ok: bool,
    code: Option<i32>,
    text: String,
}

async fn vpnctl(sock: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpnctl"));
    cmd.arg("--socket").arg(sock).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run vpnctl"))
        .await
        .unwrap();
    Out {
        ok: out.status.success(),
        code: out.status.code(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

async fn json(sock: &Path, args: &[&str]) -> Value {
    let r = vpnctl(sock, args).await;
    assert!(r.ok, "{args:?}: {}", r.text);
    serde_json::from_str(&r.text).unwrap_or_else(|e| panic!("{e}: {}", r.text))
}

async fn home(sock: &Path) -> Value {
    json(sock, &["status", "home", "--json"]).await["connections"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_certs_shows_chain_key_cas_and_crls() {
    let dir = scratch("list");
    let sock = lab(&dir).await;
    let pki = dir.join("pki");
    let v = json(&sock, &["list-certs", "--json"]).await;
    let certs = v["certs"].as_array().expect("certs");
    let by = |role: &str| -> Vec<&Value> { certs.iter().filter(|c| c["role"] == role).collect() };
    let local = by("local");
    assert_eq!(local.len(), 1, "{v:#}");
    let a = local[0];
    assert_eq!(a["subject"], "C=CH, O=strongSwan, CN=a.test");
    assert_eq!(a["issuer"], "C=CH, O=strongSwan, CN=Sub CA");
    assert_eq!(a["sans"], serde_json::json!(["a.test"]));
    assert_eq!(a["serial"], serial_of(&pki, "a.pem"));
    assert_eq!(a["key_type"], "ECDSA P-256");
    assert_eq!(a["has_private_key"], true, "the passphrase key was loaded");
    assert_eq!(a["ca"], false);
    assert_eq!(a["revoked"], false);
    assert_eq!(a["source"], pki.join("a-chain.pem").display().to_string());
    assert_eq!(a["connections"], serde_json::json!(["home"]));
    assert!(a["not_before"].as_str().unwrap().ends_with('Z'));
    assert!(a["not_after"].as_str().unwrap() > a["not_before"].as_str().unwrap());
    let inter = by("intermediate");
    assert_eq!(inter.len(), 1);
    assert_eq!(inter[0]["subject"], "C=CH, O=strongSwan, CN=Sub CA");
    assert_eq!(inter[0]["ca"], true);
    assert_eq!(inter[0]["has_private_key"], false);
    let cas: Vec<&str> = by("ca")
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        cas,
        [
            "C=CH, O=strongSwan, CN=Root CA",
            "C=CH, O=strongSwan, CN=Sub CA"
        ]
    );
    let crls = v["crls"].as_array().expect("crls");
    assert_eq!(crls.len(), 1);
    assert_eq!(crls[0]["issuer"], "C=CH, O=strongSwan, CN=Sub CA");
    assert_eq!(crls[0]["revoked_count"], 0);
    assert_eq!(crls[0]["expired"], false);
    assert_eq!(crls[0]["number"], "01");
    assert_eq!(
        crls[0]["source"],
        dir.join("crls/sub.crl").display().to_string()
    );

    let t = vpnctl(&sock, &["list-certs"]).await;
    assert!(t.ok, "{}", t.text);
    for want in [
        "List of X.509 End Entity Certificates:",
        "subject:  \"C=CH, O=strongSwan, CN=a.test\"",
        "altNames: a.test",
        "pubkey:    ECDSA P-256, has private key",
        "status:    not revoked",
        "List of X.509 Intermediate CA Certificates:",
        "List of X.509 CA Certificates:",
        "pubkey:    ECDSA P-256, CA",
        "List of X.509 CRLs:",
        "issuer:   \"C=CH, O=strongSwan, CN=Sub CA\"",
        "revoked:   0 certificate(s)",
    ] {
        assert!(t.text.contains(want), "missing {want:?} in:\n{}", t.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rereadsecrets_revokes_the_peer_for_the_next_authentication_only() {
    let dir = scratch("revoke");
    let sock = lab(&dir).await;
    let pki = dir.join("pki");
    let up = vpnctl(&sock, &["up", "home"]).await;
    assert!(up.ok, "{}", up.text);
    let ike = home(&sock).await["ike_sas"][0].clone();
    assert_eq!(ike["state"], "established");
    assert_eq!(ike["remote_cert"], "C=CH, O=strongSwan, CN=b.test");
    let spi = ike["spi_i"].clone();
    let text = vpnctl(&sock, &["status", "home"]).await.text;
    assert!(
        text.contains("remote certificate 'C=CH, O=strongSwan, CN=b.test'"),
        "{text}"
    );

    make_crl(&pki, &["b.pem"], &dir.join("crls/sub.crl"));
    let r = vpnctl(&sock, &["rereadsecrets"]).await;
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text
            .contains("1 private key(s), 2 CA certificate(s), 1 CRL(s)"),
        "{}",
        r.text
    );
    let v = json(&sock, &["list-certs", "--json"]).await;
    assert_eq!(v["crls"][0]["revoked_count"], 1);
    assert_eq!(v["crls"][0]["revoked_serials"][0], serial_of(&pki, "b.pem"));
    // The running IKE SA is untouched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ike = home(&sock).await["ike_sas"][0].clone();
    assert_eq!(ike["state"], "established");
    assert_eq!(ike["spi_i"], spi);
    // The next authentication refuses B's certificate.
    assert!(vpnctl(&sock, &["down", "home"]).await.ok);
    let up = vpnctl(&sock, &["up", "home"]).await;
    assert!(!up.ok, "{}", up.text);
    let c = home(&sock).await;
    let why = c["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("revoked") && why.contains("CN=b.test"),
        "{c:#}\n{}",
        up.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rereadsecrets_names_the_file_and_changes_nothing() {
    let dir = scratch("fail");
    let sock = lab(&dir).await;
    let pki = dir.join("pki");
    let before = json(&sock, &["list-certs", "--json"]).await;

    // A garbage CRL beside a new one that would revoke B.
    make_crl(&pki, &["b.pem"], &dir.join("crls/sub.crl"));
    std::fs::write(dir.join("crls/zz-bad.crl"), "not a CRL\n").unwrap();
    let r = vpnctl(&sock, &["rereadsecrets"]).await;
    assert_eq!(r.code, Some(1), "{}", r.text);
    assert!(
        r.text
            .contains(&format!("CRL '{}'", dir.join("crls/zz-bad.crl").display())),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("every credential is as it was"),
        "{}",
        r.text
    );
    std::fs::remove_file(dir.join("crls/zz-bad.crl")).unwrap();

    // A wrong passphrase names the key file.
    write_secret(
        &dir.join("secrets.toml"),
        "[[key]]\nfile = \"pki/a.p8\"\npassphrase = \"wrong-guess\"\n",
    );
    let r = vpnctl(&sock, &["rereadsecrets"]).await;
    assert_eq!(r.code, Some(1), "{}", r.text);
    assert!(
        r.text.contains("a.p8") && r.text.contains("wrong passphrase"),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("wrong-guess"),
        "the passphrase is never shown: {}",
        r.text
    );

    // Nothing changed: the same listing, and B still authenticates.
    let after = json(&sock, &["list-certs", "--json"]).await;
    assert_eq!(before, after);
    let up = vpnctl(&sock, &["up", "home"]).await;
    assert!(up.ok, "{}", up.text);
    assert_eq!(home(&sock).await["ike_sas"][0]["state"], "established");
}

#[test]
fn crls_load_from_pem_and_der_expired_ones_warn_and_bad_ones_name_the_file() {
    let dir = scratch("load");
    let pki = dir.join("pki");
    make_pki(&pki);
    std::fs::create_dir_all(dir.join("crls")).unwrap();
    // An expired CRL listing b.pem (DER), written by openssl.
    make_crl(&pki, &["b.pem"], &pki.join("stale.pem"));
    openssl(
        &pki,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-gencrl",
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20200201000000Z",
            "-out",
            "stale.pem",
        ],
    );
    openssl(
        &pki,
        &[
            "crl",
            "-in",
            "stale.pem",
            "-outform",
            "DER",
            "-out",
            &dir.join("crls/stale.der").display().to_string(),
        ],
    );
    write_secret(
        &dir.join("secrets.toml"),
        "[[key]]\nfile = \"pki/a.p8\"\npassphrase = \"hunter2 horse\"\n",
    );
    let main = dir.join("vpnd.toml");
    std::fs::write(&main, config_text(A, B, "a.test", "b.test", "a-chain.pem")).unwrap();
    let c = control::config::load(&main).expect("loads");
    let crl = dir.join("crls/stale.der");
    assert!(
        c.warnings.iter().any(|w| w
            == &format!(
                "CRL '{}' of 'C=CH, O=strongSwan, CN=Sub CA' expired at 2020-02-01T00:00:00Z \
                 (nextUpdate); it is still used: the certificates it lists stay revoked",
                crl.display()
            )),
        "{:?}",
        c.warnings
    );
    let b = std::fs::read(pki.join("b.pem")).unwrap();
    let b = ike::pki::parse_certificates(&b).unwrap().remove(0);
    assert!(c.secrets.is_revoked(&b), "the expired CRL still revokes");
    let a = std::fs::read(pki.join("a.pem")).unwrap();
    let a = ike::pki::parse_certificates(&a).unwrap().remove(0);
    assert!(!c.secrets.is_revoked(&a));

    // A certificate where a CRL should be: the file is named.
    std::fs::copy(pki.join("ca.pem"), dir.join("crls/zz.pem")).unwrap();
    let e = control::config::load(&main).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "CRL '{}': invalid CRL: no PEM 'X509 CRL' block",
            dir.join("crls/zz.pem").display()
        )),
        "{e}"
    );
}

#[test]
fn passphrase_keys_load_and_refusals_name_the_file() {
    let dir = scratch("pass");
    let pki = dir.join("pki");
    make_pki(&pki);
    std::fs::create_dir_all(dir.join("crls")).unwrap();
    openssl(
        &pki,
        &[
            "ec",
            "-in",
            "a.key",
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            "legacy.key",
        ],
    );
    let main = dir.join("vpnd.toml");
    std::fs::write(&main, config_text(A, B, "a.test", "b.test", "a-chain.pem")).unwrap();
    let secrets = dir.join("secrets.toml");
    let shown = |f: &str| pki.join(f).display().to_string();
    let load_err = |text: &str| {
        write_secret(&secrets, text);
        control::config::load(&main).unwrap_err().to_string()
    };

    // The right passphrase: the connection gets our key.
    write_secret(
        &secrets,
        "[[key]]\nfile = \"pki/a.p8\"\npassphrase = \"hunter2 horse\"\n",
    );
    let c = control::config::load(&main).expect("loads");
    let p = c.connections[0]
        .to_peer_config(&c.secrets)
        .expect("key found");
    assert!(p.pubkey.unwrap().local.is_some());

    let e = load_err("[[key]]\nfile = \"pki/a.p8\"\npassphrase = \"Hunter2 horse\"\n");
    assert!(
        e.contains(&format!(
            "{}:2: key.file: '{}': invalid private key: cannot decrypt: wrong passphrase",
            secrets.display(),
            shown("a.p8")
        )),
        "{e}"
    );
    assert!(!e.contains("Hunter2"), "{e}");

    let e = load_err("[[key]]\nfile = \"pki/a.p8\"\n");
    assert!(
        e.contains(&format!(
            "'{}': invalid private key: the key is encrypted: give its passphrase",
            shown("a.p8")
        )),
        "{e}"
    );

    let e = load_err("[[key]]\nfile = \"pki/legacy.key\"\npassphrase = \"x\"\n");
    assert!(
        e.contains(&format!(
            "'{}': invalid private key: legacy OpenSSL PEM encryption",
            shown("legacy.key")
        )) && e.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"),
        "{e}"
    );

    let e = load_err("[[key]]\nfile = \"pki/a.p8\"\npassphrase = 7\n");
    assert!(e.contains("key.passphrase"), "{e}");
}
