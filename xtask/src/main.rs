//! `cargo xtask docs [DIR]`: man pages and shell completions into DIR
//! (default `target/docs`).
//!
//! `cargo xtask deb [CARGO-DEB ARGS...]`: the docs, then the Debian package
//! with `cargo deb` (cargo-deb, `cargo install cargo-deb --locked`); the
//! package lands in `target/debian/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("docs") => {
            let dir = args.next().map_or_else(xtask::docs_dir, PathBuf::from);
            for p in xtask::write_docs(&dir).context("writing the docs")? {
                println!("{}", p.display());
            }
            Ok(())
        }
        Some("deb") => {
            xtask::write_docs(&xtask::docs_dir()).context("writing the docs")?;
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let have = Command::new(&cargo)
                .args(["deb", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !have {
                bail!("cargo-deb is not installed: cargo install cargo-deb --locked");
            }
            let status = Command::new(&cargo)
                .current_dir(xtask::workspace_root())
                .args(["deb", "--package", "control", "--locked"])
                .args(args)
                .status()
                .context("running cargo deb")?;
            if !status.success() {
                bail!("cargo deb failed ({status})");
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask docs [DIR] | cargo xtask deb [CARGO-DEB ARGS...]");
            std::process::exit(2);
        }
    }
}
