//! Revival: which connections are up, kept in a small state file, so that a
//! restarted vpnd initiates them again at once (with INITIAL_CONTACT, so the
//! peer drops the SAs it still holds for us) instead of waiting for every
//! peer's DPD to give up. Libreswan revives connections the same way within
//! one pluto; this carries the set across a crash.
//!
//! Invariants:
//! - The file lists the connections that have an established IKE SA, or an
//!   attempt of ours under way or scheduled, and that the operator did not
//!   take down (`down`, `kill`, `delete`). It never lists more names than
//!   connections are loaded.
//! - It is written atomically (a temporary file, fsync, rename), never on
//!   the async runtime (the blocking pool does it), and coalesced: however
//!   many connections change within [`DEBOUNCE`], one write follows.
//! - Reading it is bounded ([`MAX_FILE`]); a damaged or oversized file is
//!   reported and ignored, never fatal.
//! - After [`Revival::freeze`] (a clean shutdown) nothing more is recorded,
//!   so the kills of the shutdown itself do not empty it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The state file's name inside `state_dir`.
pub const FILE_NAME: &str = "revival.json";
/// Changes within this window make one write.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A larger file is not read (about 60,000 names of 64 bytes).
pub const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RevivalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path}: {size} bytes, more than the {MAX_FILE} a state file may have")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: not a vpnd state file: {why}")]
    Invalid { path: PathBuf, why: String },
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    /// Connection names, sorted.
    up: Vec<String>,
}

#[derive(Default)]
struct Inner {
    names: BTreeSet<String>,
    dirty: bool,
    frozen: bool,
}

/// The recorder one daemon shares between its Connection actors.
pub struct Revival {
    path: PathBuf,
    inner: Mutex<Inner>,
    wake: Notify,
    /// One write at a time (the writer task and `flush`).
    writing: tokio::sync::Mutex<()>,
}

impl Revival {
    /// Open `dir` (created 0700 if missing) and read the connections that
    /// were up. Blocking: call it off the async runtime. A missing file is
    /// an empty set; an unreadable or damaged one is an error the caller
    /// logs (the recorder then starts empty and overwrites it).
    pub fn open(dir: &Path) -> (Result<Arc<Revival>, RevivalError>, Vec<String>) {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(source) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            return (
                Err(RevivalError::Io {
                    path: dir.to_path_buf(),
                    source,
                }),
                Vec::new(),
            );
        }
        let path = dir.join(FILE_NAME);
        let (names, err) = match read(&path) {
            Ok(n) => (n, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        if let Some(e) = err {
            tracing::warn!("revival state ignored: {e}");
        }
        let r = Arc::new(Revival {
            path,
            inner: Mutex::new(Inner {
                names: names.iter().cloned().collect(),
                dirty: false,
                frozen: false,
            }),
            wake: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
        });
        (Ok(r), names)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is `name` in the set (as read at start, or recorded since)?
    pub fn contains(&self, name: &str) -> bool {
        self.inner
            .lock()
            .expect("revival lock")
            .names
            .contains(name)
    }

    /// Record that `name` is up (or no longer). Cheap; the write follows
    /// within [`DEBOUNCE`].
    pub fn set(&self, name: &str, up: bool) {
        let mut g = self.inner.lock().expect("revival lock");
        if g.frozen {
            return;
        }
        let changed = if up {
            g.names.insert(name.to_string())
        } else {
            g.names.remove(name)
        };
        if changed {
            g.dirty = true;
            drop(g);
            self.wake.notify_one();
        }
    }

    /// Stop recording (clean shutdown: what was up stays in the file).
    pub fn freeze(&self) {
        self.inner.lock().expect("revival lock").frozen = true;
    }

    /// The writer: one write per burst of changes. Runs until the daemon's
    /// runtime ends.
    pub fn spawn_writer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.wake.notified().await;
                tokio::time::sleep(DEBOUNCE).await;
                me.flush().await;
            }
        })
    }

    /// Write the set now if it changed since the last write.
    pub async fn flush(&self) {
        let _w = self.writing.lock().await;
        let names: Vec<String> = {
            let mut g = self.inner.lock().expect("revival lock");
            if !g.dirty {
                return;
            }
            g.dirty = false;
            g.names.iter().cloned().collect()
        };
        let path = self.path.clone();
        let r = tokio::task::spawn_blocking(move || write(&path, names)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Try again with the next change.
                self.inner.lock().expect("revival lock").dirty = true;
                tracing::warn!("cannot write the revival state: {e}");
            }
            Err(e) => tracing::warn!("revival state writer: {e}"),
        }
    }
}

/// Read a state file: regular, at most [`MAX_FILE`] bytes. Missing is empty.
pub fn read(path: &Path) -> Result<Vec<String>, RevivalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| RevivalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(RevivalError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_FILE {
        return Err(RevivalError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let mut text = String::new();
    f.take(MAX_FILE + 1).read_to_string(&mut text).map_err(io)?;
    let parsed: FileFormat = serde_json::from_str(&text).map_err(|e| RevivalError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if parsed.version != 1 {
        return Err(RevivalError::Invalid {
            path: path.to_path_buf(),
            why: format!("version {} (this vpnd writes version 1)", parsed.version),
        });
    }
    Ok(parsed.up)
}

/// Write atomically: `path.tmp` (0600), fsync, rename over `path`, fsync
/// the directory.
pub fn write(path: &Path, names: Vec<String>) -> Result<(), RevivalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RevivalError::Io { path: p, source }
    };
    let body = serde_json::to_vec(&FileFormat {
        version: 1,
        up: names,
    })
    .expect("a list of strings serialises");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(&body).map_err(io(&tmp))?;
    f.write_all(b"\n").map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Linux's `O_NONBLOCK`: opening a FIFO planted at the path returns at
/// once instead of waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vpnd-revival-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn open_missing_dir_creates_it_private_and_empty() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("missing").join("sub");
        let (r, names) = Revival::open(&d);
        assert!(r.is_ok());
        assert!(names.is_empty());
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(d.parent().unwrap());
    }

    #[tokio::test]
    async fn set_then_flush_writes_once_and_reads_back() {
        let d = dir("flush");
        let (r, _) = Revival::open(&d);
        let r = r.unwrap();
        for i in 0..1000 {
            r.set(&format!("c{i}"), true);
        }
        r.set("c5", false);
        r.flush().await;
        let back = read(r.path()).unwrap();
        assert_eq!(back.len(), 999);
        assert!(!back.contains(&"c5".to_string()));
        // Nothing changed: no write (the file's mtime stays).
        let m1 = std::fs::metadata(r.path()).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        r.flush().await;
        let m2 = std::fs::metadata(r.path()).unwrap().modified().unwrap();
        assert_eq!(m1, m2);
        let (again, names) = Revival::open(&d);
        assert!(again.unwrap().contains("c999"));
        assert_eq!(names.len(), 999);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn frozen_recorder_keeps_what_was_up() {
        let d = dir("frozen");
        let (r, _) = Revival::open(&d);
        let r = r.unwrap();
        r.set("c0", true);
        r.freeze();
        r.set("c0", false);
        r.set("c1", true);
        r.flush().await;
        assert_eq!(read(r.path()).unwrap(), vec!["c0".to_string()]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_oversized_or_fifo_state_is_refused_not_fatal() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(FILE_NAME);
        std::fs::write(&p, "not json").unwrap();
        assert!(matches!(read(&p), Err(RevivalError::Invalid { .. })));
        std::fs::write(&p, r#"{"version":7,"up":[]}"#).unwrap();
        assert!(matches!(read(&p), Err(RevivalError::Invalid { .. })));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        assert!(matches!(read(&p), Err(RevivalError::TooLarge { .. })));
        std::fs::remove_file(&p).unwrap();
        let fifo = std::process::Command::new("mkfifo").arg(&p).status();
        if fifo.is_ok_and(|s| s.success()) {
            assert!(matches!(read(&p), Err(RevivalError::NotRegular { .. })));
        }
        // `open` reports it and starts empty.
        let (r, names) = Revival::open(&d);
        assert!(r.is_ok() && names.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
