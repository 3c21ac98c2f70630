//! Lock files shared by the plugin processes of one machine (`flock(2)`,
//! as the reference plugins take theirs), waited for at most a bounded
//! time: a holder that is stuck (a hung plugin, a stopped process) yields
//! code 11 ("try again later") instead of a plugin that never answers.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::{Code, Error, Result};

/// How long a plugin waits for a lock before answering code 11. A holder
/// keeps it for milliseconds; many parallel holders, for seconds.
pub const WAIT: Duration = Duration::from_secs(60);

/// A held lock, released when dropped (the file is closed).
#[must_use = "the lock is released when this is dropped"]
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// Locks `path` (created, with its directory, when missing), shared or
/// exclusive, until the guard is dropped; waits for a conflicting holder
/// at most [`WAIT`].
///
/// Equivalent to: `flock [-s] -w 60 <path>`
pub fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    let open = || {
        OpenOptions::new()
            .read(true)
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
        // A lock file that exists on a read-only /run (or one we may not
        // write) still takes a lock: flock(2) needs no write access.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS | libc::EACCES)) => {
            File::open(path).or(Err(e))
        }
        r => r,
    }
    .map_err(|e| Error::os(format_args!("open {}", path.display()), e))?;
    lock_file(file, path, exclusive, WAIT).map(Lock)
}

/// [`lock`] for a lock that guards against a race, not for correctness
/// alone: where the lock file can be neither created nor opened (a
/// read-only `/run`, no permission), `None`, with a warning naming `what`
/// goes ahead unlocked, rather than the operation failing where the
/// reference's works.
pub fn lock_or_warn(path: &Path, exclusive: bool, what: &str) -> Result<Option<Lock>> {
    match lock(path, exclusive) {
        Ok(l) => Ok(Some(l)),
        Err(e) if matches!(e.errno(), Some(libc::EROFS | libc::EACCES | libc::EPERM)) => {
            crate::log::warn(format_args!("{e}: {what} goes ahead without it"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Locks the open `file` (named `path` in errors), waiting at most `wait`.
/// Uncontended, one non-blocking `flock`; contended, a thread blocks in
/// `flock` (the kernel hands the lock over in order, with no polling) while
/// this one waits for it or for the deadline.
pub fn lock_file(file: File, path: &Path, exclusive: bool, wait: Duration) -> Result<File> {
    let fail = |e: std::io::Error| Error::os(format_args!("lock {}", path.display()), e);
    let tried = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match tried {
        Ok(()) => return Ok(file),
        Err(TryLockError::Error(e)) => return Err(fail(e)),
        Err(TryLockError::WouldBlock) => {}
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        // The receiver may have given up: the file (and the lock) go with
        // this process.
        let _ = tx.send(r.map(|()| file));
    });
    match rx.recv_timeout(wait) {
        Ok(r) => r.map_err(fail),
        Err(_) => Err(Error::new(
            Code::TryAgain,
            format!(
                "{} is locked by another process for more than {} s",
                path.display(),
                wait.as_secs()
            ),
        )
        .with_details(format!(
            "a plugin may be stuck holding it: retry, or find the holder with `fuser -v {}`",
            path.display()
        ))),
    }
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
        let reopen = || File::options().write(true).open(&path).unwrap();
        let short = Duration::from_millis(50);
        let e = lock_file(reopen(), &path, true, short).unwrap_err();
        assert_eq!(e.code, Code::TryAgain, "{e}");
        assert!(e.msg.contains("is locked by another process"), "{e}");
        drop((a, b));
        let x = lock_file(reopen(), &path, true, short).unwrap();
        assert!(lock_file(reopen(), &path, false, short).is_err());
        // A waiter gets the lock once the holder lets go.
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || lock(&path, false).map(drop))
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(x);
        waiter.join().unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
