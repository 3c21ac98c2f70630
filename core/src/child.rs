//! Child processes a plugin runs (`nft`, delegated IPAM plugins): they die
//! with the plugin. A runtime that times out kills the plugin and then runs
//! DEL; a child left running would finish its work after that DEL (commit
//! nft rules, allocate a lease) and leak it for good.

use std::process::Command;

/// Makes the child of `cmd` receive SIGKILL when the thread that spawns it
/// dies (the spawning thread waits for it, so: when the plugin dies).
///
/// Equivalent to: `prctl(PR_SET_PDEATHSIG, SIGKILL)` in the child before exec
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (prctl, getppid) on a captured integer; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}
