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
/// leaves of that kind (keys PKCS#8 / PKCS#1), or RSA 4096 throughout.
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
    let rsa4096 = ["-newkey", "rsa:4096", "-nodes"];
    let ca_key: &[&str] = if leaf == Leaf::Rsa4096 { &rsa4096 } else { &ec };
    let mut args = vec!["req", "-x509"];
    args.extend(ca_key);
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
        let kind = match leaf {
            Leaf::Rsa4096 => leaf,
            _ if name == "sub" => Leaf::Ecdsa,
            _ => leaf,
        };
        let mut args = vec!["req"];
        match kind {
            Leaf::Ecdsa => args.extend(ec),
            Leaf::Ed25519 => args.extend(["-newkey", "ed25519", "-nodes"]),
            Leaf::Rsa3072 => args.extend(["-newkey", "rsa:3072", "-nodes"]),
            Leaf::Rsa4096 => args.extend(rsa4096),
        }
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args);
        let out = format!("{name}.key");
        match kind {
            Leaf::Ecdsa => openssl(dir, &["ec", "-in", &key, "-out", &out]),
            Leaf::Ed25519 => openssl(dir, &["pkey", "-in", &key, "-out", &out]),
            Leaf::Rsa3072 | Leaf::Rsa4096 => {
                openssl(dir, &["rsa", "-traditional", "-in", &key, "-out", &out])
            }
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
    /// RSA 4096 all along the chain (root, intermediate, end entities):
    /// an IKE_AUTH of about 4.5 KB, which crosses only in fragments.
    Rsa4096,
}

/// charon's credentials for end `b` of the PKI in `pki`, laid out in its
/// directory `cdir` as swanctl loads them: `x509/b.pem`, the root and the
/// intermediate in `x509ca/`, the key in `ecdsa/`, `pkcs8/` or `rsa/`.
pub fn charon_credentials(pki: &Path, cdir: &Path, leaf: Leaf) {
    let key_dir = match leaf {
        Leaf::Ecdsa => "ecdsa",
        Leaf::Ed25519 => "pkcs8",
        Leaf::Rsa3072 | Leaf::Rsa4096 => "rsa",
    };
    for (sub, file) in [
        ("x509", "b.pem"),
        ("x509ca", "ca.pem"),
        ("x509ca", "sub.pem"),
        (key_dir, "b.key"),
    ] {
        std::fs::create_dir_all(cdir.join(sub)).unwrap();
        std::fs::copy(pki.join(file), cdir.join(sub).join(file)).unwrap();
    }
}

/// Certificates with a chosen validity window, issued with `openssl ca`
/// (OpenSSL 3.0's `x509 -req` cannot set notBefore): `dates` are
/// GeneralizedTimes such as `20010101000000Z`.
pub fn issue_with_dates(
    dir: &Path,
    issuer: &str,
    csr: &str,
    out: &str,
    san: &str,
    dates: (&str, &str),
) {
    let cnf = dir.join("ca.cnf");
    if !cnf.exists() {
        std::fs::write(
            &cnf,
            "[ca]\ndefault_ca = ca_default\n\n[ca_default]\ndatabase = index.txt\n\
             new_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = any\n\
             unique_subject = no\n\n[any]\ncountryName = optional\n\
             organizationName = optional\ncommonName = supplied\n",
        )
        .unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
    }
    let ext = format!("{out}.ext");
    std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{san}\n")).unwrap();
    openssl(
        dir,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-batch",
            "-notext",
            "-preserveDN",
            "-cert",
            &format!("{issuer}.pem"),
            "-keyfile",
            &format!("{issuer}.key"),
            "-in",
            csr,
            "-out",
            out,
            "-startdate",
            dates.0,
            "-enddate",
            dates.1,
            "-extfile",
            &ext,
        ],
    );
}

/// `make_pki` (ECDSA) plus bad credentials for both gateways `x` in a, b,
/// on the same keys: `x-expired.pem` (2001-2002) and `x-future.pem`
/// (2090-2091) from sub, and `x-other.pem` from a second root CA
/// `other.pem` ("CN=Other CA"); `x-expired-chain.pem` and
/// `x-future-chain.pem` carry sub, `b-chain.pem` is b's good chain.
pub fn make_refusal_pki(dir: &Path) {
    make_pki(dir, Leaf::Ecdsa);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-subj",
            "/C=CH/O=strongSwan/CN=Other CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    for name in ["a", "b"] {
        let csr = format!("{name}.csr");
        let san = format!("{name}.test");
        for (kind, dates) in [
            ("expired", ("20010101000000Z", "20020101000000Z")),
            ("future", ("20900101000000Z", "20910101000000Z")),
        ] {
            let out = format!("{name}-{kind}.pem");
            issue_with_dates(dir, "sub", &csr, &out, &san, dates);
            std::fs::write(
                dir.join(format!("{name}-{kind}-chain.pem")),
                read(&out) + &read("sub.pem"),
            )
            .unwrap();
        }
        issue_with_dates(
            dir,
            "other",
            &csr,
            &format!("{name}-other.pem"),
            &san,
            ("20250101000000Z", "20400101000000Z"),
        );
    }
    std::fs::write(dir.join("b-chain.pem"), read("b.pem") + &read("sub.pem")).unwrap();
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
