//! Test PKIs made with the openssl command: a root CA, an intermediate and
//! end-entity certificates for the two gateways of a lab, in a directory the
//! tests hand to vpnd and charon.

use std::path::Path;
use std::process::Command;

/// Runs `openssl ARGS` in `dir` and panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In `dir`: ca.pem (root), sub.pem (intermediate), a.pem/a.key (vpnd,
/// SAN a.test) and b.pem/b.key (charon, SAN b.test), both issued by sub;
/// keys SEC1 ("EC PRIVATE KEY"), or with `leaf` = Ed25519 / Rsa3072
/// leaves of that kind (keys PKCS#8 / PKCS#1).
pub fn make_pki(dir: &Path, leaf: Leaf) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
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
    openssl(dir, &args);
    for name in ["sub", "a", "b"] {
        let subj = if name == "sub" {
            "/C=CH/O=strongSwan/CN=Sub CA".to_string()
        } else {
            format!("/C=CH/O=strongSwan/CN={name}.test")
        };
        let (key, csr) = (format!("{name}.p8"), format!("{name}.csr"));
        let kind = if name == "sub" { Leaf::Ecdsa } else { leaf };
        let mut args = vec!["req"];
        match kind {
            Leaf::Ecdsa => args.extend(ec),
            Leaf::Ed25519 => args.extend(["-newkey", "ed25519", "-nodes"]),
            Leaf::Rsa3072 => args.extend(["-newkey", "rsa:3072", "-nodes"]),
        }
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args);
        let out = format!("{name}.key");
        match kind {
            Leaf::Ecdsa => openssl(dir, &["ec", "-in", &key, "-out", &out]),
            Leaf::Ed25519 => openssl(dir, &["pkey", "-in", &key, "-out", &out]),
            Leaf::Rsa3072 => openssl(dir, &["rsa", "-traditional", "-in", &key, "-out", &out]),
        }
    }
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "sub.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "sub.pem",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
        ],
    );
    for name in ["a", "b"] {
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{name}.test\n")).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "sub.pem",
                "-CAkey",
                "sub.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
    }
    let chain = std::fs::read_to_string(dir.join("a.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("sub.pem")).unwrap();
    std::fs::write(dir.join("a-chain.pem"), chain).unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Ecdsa,
    Ed25519,
    Rsa3072,
}

/// A CRL by the intermediate of [`make_pki`] ("Sub CA", sub.pem/sub.key in
/// `dir`) listing the certificates `revoked` (file names in `dir`, e.g.
/// "b.pem"), written as PEM to `out`; made with `openssl ca -revoke` and
/// `-gencrl` over a fresh index (valid 30 days). The CRL carries an
/// authorityKeyIdentifier: charon finds a CRL by its issuer's key id.
pub fn make_crl(dir: &Path, revoked: &[&str], out: &Path) {
    std::fs::write(
        dir.join("crl-ca.cnf"),
        "[ca]\ndefault_ca = sub\n[sub]\ndatabase = crl-index.txt\ncrlnumber = crlnumber\n\
         certificate = sub.pem\nprivate_key = sub.key\ndefault_md = sha256\ndefault_crl_days = 30\n\
         crl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
    )
    .unwrap();
    std::fs::write(dir.join("crl-index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    for r in revoked {
        openssl(dir, &["ca", "-config", "crl-ca.cnf", "-revoke", r]);
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let out = out.display().to_string();
    openssl(
        dir,
        &["ca", "-config", "crl-ca.cnf", "-gencrl", "-out", &out],
    );
}
