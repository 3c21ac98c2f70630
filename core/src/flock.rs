//! Lock files shared by the plugin processes of one machine.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::{Error, Result};

/// A held lock, released when dropped.
#[must_use = "the lock is released when this is dropped"]
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Locks `path` (created, with its directory, when missing), shared or
/// exclusive, until the guard is dropped; waits for a conflicting holder.
///
/// Equivalent to: `flock [-s] <path>`
pub fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .and_then(|()| open())
        }
        r => r,
    }
    .map_err(|e| Error::os(format_args!("open {}", path.display()), e))?;
    let how = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    Flock::lock(file, how)
        .map(Lock)
        .map_err(|(_, e)| Error::os(format_args!("lock {}", path.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let dir = std::env::temp_dir().join(format!("nuage-flock-{}", std::process::id()));
        let path = dir.join("sub/x.lock");
        let a = lock(&path, false).unwrap();
        let b = lock(&path, false).unwrap();
        let try_exclusive = || {
            let f = File::options().write(true).open(&path).unwrap();
            Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
        };
        assert!(
            !try_exclusive(),
            "an exclusive lock while shared ones are held"
        );
        drop((a, b));
        assert!(try_exclusive());
        let _x = lock(&path, true).unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        assert!(Flock::lock(f, FlockArg::LockSharedNonblock).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
