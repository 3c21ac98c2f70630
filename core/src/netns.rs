//! Network namespace handles.
//!
//! A [`NetNs`] holds an open fd on a namespace file (`/run/netns/<name>`,
//! `/proc/<pid>/ns/net`), checked at open time to really be a *network*
//! namespace. Code enters a namespace only through [`NetNs::run`] (or the
//! [`Entered`] guard it uses), which switches the calling thread for the
//! duration of a closure and switches it back when the guard drops: an
//! early return or a panic cannot leave the thread in the container's
//! namespace, and a failed switch back aborts the process rather than let
//! it go on in the wrong namespace. (A thread per visit would cost ~0.4 ms
//! here; a plugin makes several visits per ADD.)

use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC, PROC_SUPER_MAGIC};

use crate::{Error, Result};

/// The calling thread's namespace (`/proc/self` would be the process leader's).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

const HINT: &str = "pass a netns path such as /run/netns/<name> or /proc/<pid>/ns/net";

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
    /// `(st_dev, st_ino)`: the namespace's identity.
    id: (u64, u64),
}

impl NetNs {
    /// Opens `path` and checks that it is a network namespace.
    ///
    /// Errors have CNI code 8 and say what the path is instead (missing,
    /// directory, regular file, another namespace type...). A missing path
    /// keeps `ENOENT`, so [`Error::is_not_found`] lets DEL treat it as gone.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        let fail = |what: &str| Error::netns(format!("CNI_NETNS {path:?} {what}"));
        let not_netns = |what: &str| fail(&format!("is {what}, not a network namespace: {HINT}"));

        // O_NONBLOCK: a FIFO must not hang the open; O_NOCTTY: nor a tty become ours.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| {
                let what = match e.kind() {
                    io::ErrorKind::NotFound => "does not exist",
                    _ => "cannot be opened",
                };
                with_errno(fail(&format!("{what}: {e}")), e.raw_os_error())
            })?;
        let meta = file
            .metadata()
            .map_err(|e| with_errno(fail(&format!("fstat: {e}")), e.raw_os_error()))?;
        let fs_type = fstatfs(&file)
            .map_err(|e| with_errno(fail(&format!("fstatfs: {e}")), Some(e as i32)))?
            .filesystem_type();

        if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
            let t = meta.file_type();
            let kind = if t.is_dir() {
                "a directory"
            } else if t.is_file() {
                return Err(not_netns("a regular file").with_details(
                    "an empty file under /run/netns means the namespace was unmounted",
                ));
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else {
                "not a namespace file"
            };
            return Err(not_netns(kind));
        }
        match ns_type(&file) {
            Ok(t) if t == CloneFlags::CLONE_NEWNET => {}
            Ok(t) => return Err(not_netns(&format!("a {} namespace", ns_type_name(t)))),
            // Only the setns probe fails so (no NS_GET_NSTYPE, kernel < 4.11).
            Err(Errno::EINVAL) if fs_type == PROC_SUPER_MAGIC => {
                return Err(not_netns("a /proc file"))
            }
            Err(Errno::EINVAL) => return Err(not_netns("a namespace of another type")),
            Err(e) => {
                return Err(with_errno(
                    fail(&format!("cannot be checked to be a network namespace: {e}")),
                    Some(e as i32),
                ))
            }
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The calling thread's current network namespace.
    pub fn current() -> Result<NetNs> {
        Self::open(THREAD_NETNS)
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether both handles refer to the same namespace.
    pub fn same_as(&self, other: &NetNs) -> bool {
        self.id == other.id
    }

    /// Whether the calling thread is in this namespace.
    pub fn is_current(&self) -> Result<bool> {
        let meta = std::fs::metadata(THREAD_NETNS)
            .map_err(|e| Error::os(format_args!("netns: stat {THREAD_NETNS}"), e))?;
        Ok((meta.dev(), meta.ino()) == self.id)
    }

    /// Runs `f` inside this namespace: the calling thread enters it, runs
    /// `f`, and returns to its own namespace, whatever `f` does (see
    /// [`Entered`]). A panic in `f` is propagated after the return.
    ///
    /// Everything that resolves against the *current* namespace (netlink
    /// sockets at creation, `/proc/sys/net`, child processes, new threads)
    /// sees this namespace in `f`.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _entered = self.enter()?;
        Ok(f())
    }

    /// Switches the calling thread into this namespace until the returned
    /// guard drops.
    ///
    /// Equivalent to: `nsenter --net=<path>` for the current thread.
    pub fn enter(&self) -> Result<Entered> {
        let home = File::open(THREAD_NETNS)
            .map_err(|e| Error::os(format_args!("netns: open {THREAD_NETNS}"), e))?;
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| {
            with_errno(
                Error::netns(format!("netns: enter {}: {e}", self.path.display())),
                Some(e as i32),
            )
        })?;
        Ok(Entered {
            home,
            _not_send: PhantomData,
        })
    }
}

/// The calling thread is inside another network namespace until this is
/// dropped. Not `Send`: only the thread that entered can return.
#[must_use = "the thread returns to its namespace when this guard drops"]
pub struct Entered {
    home: File,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.home, CloneFlags::CLONE_NEWNET) {
            // Going on would act on the container's namespace as if it were
            // ours: stop here.
            eprintln!("netns: cannot return to the original network namespace: {e}");
            std::process::abort();
        }
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn with_errno(mut e: Error, errno: Option<i32>) -> Error {
    e.errno = errno;
    e
}

/// The namespace type of `file`: `NS_GET_NSTYPE`, or on kernels without it
/// (< 4.11, `ENOTTY`) a `setns(CLONE_NEWNET)` probe on a scratch thread.
/// `EINVAL` means "not a namespace" (or, for the probe, not a network one).
fn ns_type(file: &File) -> Result<CloneFlags, Errno> {
    match ioctl_ns_get_nstype(file) {
        Err(Errno::ENOTTY) => {}
        r => return r.map(CloneFlags::from_bits_retain),
    }
    thread::scope(|s| {
        thread::Builder::new()
            .spawn_scoped(s, || setns(file, CloneFlags::CLONE_NEWNET))
            .map_err(|_| Errno::EAGAIN)?
            .join()
            .unwrap_or(Err(Errno::EINVAL))
    })
    .map(|()| CloneFlags::CLONE_NEWNET)
}

#[allow(unsafe_code)]
fn ioctl_ns_get_nstype(file: &File) -> Result<i32, Errno> {
    // _IO(NSIO, 0x3), linux/nsfs.h.
    const NS_GET_NSTYPE: nix::sys::ioctl::ioctl_num_type = nix::request_code_none!(0xb7, 0x3);
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
    // `file` keeps open for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    Errno::result(r)
}

fn ns_type_name(t: CloneFlags) -> String {
    let name = match t {
        CloneFlags::CLONE_NEWNS => "mount",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ if t.bits() == 0x80 => "time", // CLONE_NEWTIME
        _ => return format!("type {:#x}", t.bits()),
    };
    name.to_string()
}
