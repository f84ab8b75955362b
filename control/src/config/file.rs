//! Opening the files a configuration names: regular files only, opened
//! without ever waiting on a FIFO or a device, and no larger than a limit.
//! So a bad `include`, secrets entry or `vpnctl load --file` can neither
//! hang the daemon nor make it read without end.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest configuration, include or secrets file read.
pub const MAX_FILE: u64 = 8 << 20;

/// Linux's O_NONBLOCK: opening a FIFO for reading returns at once instead
/// of waiting for a writer (it makes no difference to regular files).
const O_NONBLOCK: i32 = 0o4000;

/// Linux's O_NOFOLLOW: opening a symbolic link fails.
const O_NOFOLLOW: i32 = 0o400000;

/// Open `path` for reading if it is a regular file of at most `MAX_FILE`
/// bytes; the check is made on the opened file, not on the name.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    open_with(path, O_NONBLOCK)
}

/// As [`open_regular`], and the last component must not be a symbolic link.
pub fn open_regular_nofollow(path: &Path) -> io::Result<(File, Metadata)> {
    open_with(path, O_NONBLOCK | O_NOFOLLOW)
}

fn open_with(path: &Path, flags: i32) -> io::Result<(File, Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(too_large());
    }
    Ok((f, meta))
}

/// Read a file opened by `open_regular` into `out`, still bounded (it may
/// have grown since).
pub fn read_bounded(f: File, out: &mut String) -> io::Result<()> {
    f.take(MAX_FILE + 1).read_to_string(out)?;
    if out.len() as u64 > MAX_FILE {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {} MiB", MAX_FILE >> 20),
    )
}
