//! The files a configuration names are read as regular files only, never
//! waiting on a FIFO or a device, and bounded in size: a bad `include`,
//! secrets entry or `vpnctl load --file` is an error, not a hang.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use control::config;
use control::secrets::Secrets;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vpnd-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("conf.d")).unwrap();
    d
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(ok.success());
}

/// Run `f` on a thread; fail (instead of hanging) if it takes 5 s.
fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("reading the configuration blocked")
}

#[test]
fn an_included_fifo_is_refused_at_once() {
    let d = scratch("fifo");
    let main = d.join("vpnd.toml");
    std::fs::write(&main, "[daemon]\ninclude = [\"conf.d/tunnel.toml\"]\n").unwrap();
    mkfifo(&d.join("conf.d/tunnel.toml"));
    let r = within_5s(move || config::load(&main).map(|_| ()).map_err(|e| e.to_string()));
    let e = r.expect_err("a FIFO is not a configuration file");
    assert!(
        e.contains("tunnel.toml") && e.contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn load_file_of_a_device_or_fifo_is_refused_at_once() {
    let d = scratch("dev");
    let main = d.join("vpnd.toml");
    std::fs::write(&main, "[daemon]\n").unwrap();
    let c = config::load(&main).expect("loads");
    let fifo = d.join("extra.toml");
    mkfifo(&fifo);
    for f in [PathBuf::from("/dev/zero"), fifo] {
        let c = c.clone();
        let r = within_5s(move || {
            config::load_extra(&c, &f)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let e = r.expect_err("not a regular file");
        assert!(e.contains("not a regular file"), "{e}");
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let d = scratch("big");
    let main = d.join("vpnd.toml");
    let mut text = String::from("[daemon]\n");
    text.push_str(&"# padding padding padding padding padding padding\n".repeat(180_000));
    assert!(text.len() as u64 > config::file::MAX_FILE);
    std::fs::write(&main, text).unwrap();
    let e = config::load(&main)
        .map(|_| ())
        .expect_err("too large")
        .to_string();
    assert!(e.contains("larger than 8 MiB"), "{e}");
}

#[test]
fn a_secrets_fifo_is_refused_at_once() {
    let d = scratch("secrets");
    let fifo = d.join("secrets.toml");
    mkfifo(&fifo);
    let r = within_5s(move || {
        Secrets::load(&[fifo])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let e = r.expect_err("a FIFO is not a secrets file");
    assert!(e.contains("not a regular file"), "{e}");
}
