//! Who is at the other end of a control connection, and what the daemon
//! does on their behalf.
//!
//! Anyone who can connect to the socket (root, or a member of `[daemon]
//! socket_group`) may use every verb; root acts for them. Two things stay
//! root's alone, because root would otherwise read files for them:
//!
//! - `load --file` takes from a client other than root (or the daemon's own
//!   user) only a regular file owned by root and not writable by group or
//!   others, in directories that are all owned by root and not writable by
//!   group or others ([`open_vouched`]). Such a file is one root vouched
//!   for; a member's own file could set `updown` to a script of theirs,
//!   which would run as root.
//! - A configuration error is told whole only to a client who may read the
//!   file it is about ([`Peer::may_read`]); to anyone else it names the
//!   file, line and key and leaves the value out.
//!
//! Everything here touches the filesystem or /proc: call it off the async
//! runtime.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::file;

/// A control client's credentials, from the socket (`SO_PEERCRED`) and its
/// process's supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (/proc/PID/status `Groups:`); empty when they
    /// could not be read, which only ever grants less.
    pub groups: Vec<u32>,
    /// Root, or the user the daemon runs as: the daemon grants such a
    /// client nothing it could not do itself.
    pub trusted: bool,
}

impl Peer {
    /// The daemon's own side (tests and in-process callers).
    pub fn root() -> Peer {
        Peer {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            trusted: true,
        }
    }

    /// The client with these credentials; `pid` names its process, whose
    /// supplementary groups are read from /proc. Blocking.
    pub fn from_cred(uid: u32, gid: u32, pid: Option<i32>) -> Peer {
        let trusted = uid == 0 || Some(uid) == daemon_uid();
        let groups = match pid {
            Some(pid) if !trusted => std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|s| groups_of(&s))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Peer {
            uid,
            gid,
            groups,
            trusted,
        }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Do the mode bits of `meta` grant this client `bits` (4 read, 1
    /// search)? The owner's bits decide for the owner, the group's for a
    /// member, the others' for everyone else, as the kernel decides.
    fn granted(&self, meta: &Metadata, bits: u32) -> bool {
        let mode = meta.mode();
        let class = if meta.uid() == self.uid {
            mode >> 6
        } else if self.in_group(meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        class & bits == bits
    }

    /// Could this client read `path` itself: search permission on every
    /// directory above it and read permission on the file? Always for a
    /// trusted client. Access control lists are not consulted, so the
    /// answer errs on "no". Blocking.
    pub fn may_read(&self, path: &Path) -> bool {
        if self.trusted {
            return true;
        }
        let Ok(real) = std::fs::canonicalize(path) else {
            return false;
        };
        let dirs_ok = real.ancestors().skip(1).all(|dir| {
            std::fs::metadata(dir)
                .map(|m| self.granted(&m, 0o1))
                .unwrap_or(false)
        });
        dirs_ok
            && std::fs::metadata(&real)
                .map(|m| self.granted(&m, 0o4))
                .unwrap_or(false)
    }
}

/// The daemon's effective uid (the owner of /proc/self).
fn daemon_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The `Groups:` line of /proc/PID/status.
fn groups_of(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

const RULE: &str = "a socket_group member may load only files owned by root and not \
                    writable by group or others, in directories likewise";

/// Why `meta` is not something root vouched for, if it is not. (An access
/// control list that lets anyone else write shows in the group bits, its
/// mask, so it is refused too.)
fn not_vouched(meta: &Metadata) -> Option<String> {
    if meta.uid() != 0 {
        return Some(format!("is owned by uid {}", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "group",
        (false, true) => "others",
        (false, false) => return None,
    };
    Some(format!("is writable by {writable} (mode {mode:04o})"))
}

/// Open `path` for `load --file` on behalf of a client who is not
/// trusted: the file must be regular, owned by root and not writable by
/// group or others, and so must every directory above it (so nobody but
/// root can swap it). The checks are made on the canonical path, each
/// directory without following links, and on the opened file itself.
/// Returns the canonical path and the file's text. Blocking.
///
/// The client must be able to reach the file (search every directory
/// above it), and a file that is missing or out of reach gets one answer:
/// so the daemon tells nothing about a path that `stat` would not tell the
/// client itself.
pub fn open_vouched(path: &Path, peer: &Peer) -> Result<(PathBuf, String), String> {
    let given = path.display();
    let unreachable = || format!("load --file: {given}: no such file, or not reachable by you");
    let real = std::fs::canonicalize(path).map_err(|_| unreachable())?;
    let reachable = real
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| peer.trusted || peer.granted(&m, 0o1)));
    if !reachable {
        return Err(unreachable());
    }
    let named = if real == path {
        given.to_string()
    } else {
        format!("{given} (which is {})", real.display())
    };
    let mut dirs: Vec<&Path> = real.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("load --file: {named}: {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "load --file: {named}: {} is not a directory",
                dir.display()
            ));
        }
        if let Some(why) = not_vouched(&meta) {
            return Err(format!(
                "load --file: {named}: its directory {} {why}; {RULE}",
                dir.display()
            ));
        }
    }
    let (f, meta): (File, Metadata) =
        file::open_regular_nofollow(&real).map_err(|e| format!("load --file: {named}: {e}"))?;
    if let Some(why) = not_vouched(&meta) {
        return Err(format!("load --file: {named} {why}; {RULE}"));
    }
    let mut text = String::new();
    file::read_bounded(f, &mut text).map_err(|e| format!("load --file: {named}: {e}"))?;
    Ok((real, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_groups_come_from_the_status_line() {
        let status = "Name:\tvpnctl\nUid:\t65534\t65534\t65534\t65534\n\
                      Gid:\t1001\t1001\t1001\t1001\nGroups:\t27 1001 4242 \nNSpgid:\t1\n";
        assert_eq!(groups_of(status), [27, 1001, 4242]);
        assert_eq!(groups_of("Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(groups_of("Name:\tx\n"), Vec::<u32>::new());
    }

    #[test]
    fn the_owner_class_decides_for_the_owner() {
        let dir = std::env::temp_dir().join(format!("vpnd-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o044)).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let owner = Peer {
            uid: meta.uid(),
            gid: meta.gid(),
            groups: Vec::new(),
            trusted: false,
        };
        assert!(!owner.granted(&meta, 4), "owner bits are ---");
        let member = Peer {
            uid: meta.uid() + 1,
            gid: 4242,
            groups: vec![meta.gid()],
            trusted: false,
        };
        assert!(member.granted(&meta, 4));
        let other = Peer {
            uid: meta.uid() + 1,
            gid: meta.gid() + 1,
            groups: Vec::new(),
            trusted: false,
        };
        assert!(other.granted(&meta, 4));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert!(!other.granted(&meta, 4));
        assert!(member.granted(&meta, 4));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
