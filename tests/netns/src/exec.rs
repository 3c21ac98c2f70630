//! Running a program inside a test namespace, with a clean environment.
//!
//! The child (between fork and exec) does what `ip netns exec` does:
//! `setns(CLONE_NEWNET)` into the namespace, `unshare(CLONE_NEWNS)`, makes every
//! mount a slave (so nothing propagates back to the machine), and remounts
//! `/sys` so `/sys/class/net` shows the namespace's links. For plugins run by a
//! [`crate::Host`] it also bind-mounts the host's private state dir over
//! `/var/lib/cni`, so libcni's result cache and IPAM's default data dir stay
//! inside the test. It sets `PR_SET_PDEATHSIG=SIGKILL`, and the parent kills
//! it after a timeout, so nothing outlives a failed test.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Netns;

/// The `PATH` every program run by the harness gets (unless the test passes its own).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where plugins run by a [`crate::Host`] see the host's state dir.
pub(crate) const VAR_LIB_CNI: &str = "/var/lib/cni";

/// A hang guard, not a speed assertion: a program still running after this is
/// killed and the test fails. `NUAGE_TEST_TIMEOUT_SECS` overrides it.
fn timeout() -> Duration {
    let secs = std::env::var("NUAGE_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// What a program run by the harness did.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// `stdout` parsed as JSON, when it is non-empty valid JSON.
    pub json: Option<Value>,
}

impl PluginOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics (showing stdout and stderr) unless the exit code is 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success, got:\n{self}");
        self
    }

    /// Panics (showing stdout and stderr) if the exit code is 0.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "expected failure, got:\n{self}");
        self
    }

    /// The parsed JSON on stdout; panics (showing the output) if there is none.
    #[track_caller]
    pub fn expect_json(&self) -> &Value {
        match &self.json {
            Some(v) => v,
            None => panic!("expected JSON on stdout, got:\n{self}"),
        }
    }

    /// Asserts a CNI error: non-zero exit and a JSON error object on stdout with
    /// this `code`. Returns the error object.
    #[track_caller]
    pub fn assert_cni_error(&self, code: u64) -> &Value {
        assert!(
            !self.success(),
            "expected CNI error code {code}, but the command succeeded:\n{self}"
        );
        let v = self.expect_json();
        assert_eq!(
            v.get("code").and_then(Value::as_u64),
            Some(code),
            "expected CNI error code {code}, got:\n{self}"
        );
        v
    }
}

impl fmt::Display for PluginOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.code, self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".to_owned(),
        };
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "status: {how}")?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// One program to run inside a namespace.
pub(crate) struct Spawn<'a> {
    pub ns: &'a Netns,
    pub program: &'a OsStr,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub stdin: &'a str,
    /// Bind-mounted over `/var/lib/cni` in the child.
    pub var_lib_cni: Option<&'a Path>,
}

fn cstring(p: &OsStr) -> CString {
    CString::new(p.as_bytes()).expect("path contains a NUL byte")
}

/// Collects a pipe in a thread, into a buffer readable even if the pipe never
/// reaches EOF (a left-over grandchild holding it open).
fn collect<R: Read + Send + 'static>(mut r: R) -> Collected {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let b = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => b
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    (buf, rx)
}

fn take(buf: &Collected) -> String {
    // The child has exited; give the reader a moment to drain the pipe.
    let _ = buf.1.recv_timeout(Duration::from_secs(10));
    let bytes = buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Starts the program in the namespace (stdin, stdout, stderr piped).
#[track_caller]
fn start(s: &Spawn<'_>) -> (std::process::Child, String) {
    let command = std::iter::once(s.program.to_string_lossy().into_owned())
        .chain(s.args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let command = format!("{command}   (in netns {})", s.ns.name());

    let nsfile = std::fs::File::open(s.ns.path())
        .unwrap_or_else(|e| panic!("cannot open netns {}: {e}", s.ns.path().display()));
    let nsfd = nsfile.as_raw_fd();
    let bind_src = s.var_lib_cni.map(|p| cstring(p.as_os_str()));

    let mut cmd = Command::new(s.program);
    cmd.args(s.args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in s.env {
        cmd.env(k, v);
    }
    // SAFETY: the closure only makes raw syscalls (async-signal-safe) on data
    // prepared before fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let null = std::ptr::null::<libc::c_char>();
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            check(libc::setns(nsfd, libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing done below may propagate back to the machine.
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH))?;
            check(libc::mount(
                c"sysfs".as_ptr(),
                c"/sys".as_ptr(),
                c"sysfs".as_ptr(),
                0,
                std::ptr::null(),
            ))?;
            if let Some(src) = &bind_src {
                check(libc::mount(
                    src.as_ptr(),
                    c"/var/lib/cni".as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            Ok(())
        });
    }

    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{command}`: {e} (program missing, or entering the namespace \
             failed: setns/unshare/mount of /sys{})",
            if s.var_lib_cni.is_some() {
                " or the bind mount on /var/lib/cni"
            } else {
                ""
            }
        )
    });
    drop(nsfile);
    (child, command)
}

/// Runs the program in the namespace and waits for it (with the hang guard).
#[track_caller]
pub(crate) fn run(s: Spawn<'_>) -> PluginOutput {
    let (mut child, command) = start(&s);

    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = s.stdin.as_bytes().to_vec();
    thread::spawn(move || {
        // A program that does not read stdin closes the pipe: ignore EPIPE.
        let _ = stdin.write_all(&input);
    });
    let out = collect(child.stdout.take().expect("piped stdout"));
    let err = collect(child.stderr.take().expect("piped stderr"));

    let limit = timeout();
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = take(&out);
                let stderr = take(&err);
                panic!(
                    "`{command}` still running after {limit:?}: killed (hang guard; \
                     NUAGE_TEST_TIMEOUT_SECS changes it)\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Err(e) => panic!("waiting for `{command}`: {e}"),
        }
    };
    let stdout = take(&out);
    let stderr = take(&err);
    finish(command, status, stdout, stderr)
}

fn finish(command: String, status: ExitStatus, stdout: String, stderr: String) -> PluginOutput {
    let json = if stdout.trim().is_empty() {
        None
    } else {
        serde_json::from_str(&stdout).ok()
    };
    PluginOutput {
        command,
        code: status.code(),
        status,
        stdout,
        stderr,
        json,
    }
}

type Collected = (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>);

/// A program left running inside a namespace (a listener, a daemon), started
/// by [`Netns::spawn`]. Killed (SIGKILL) and reaped on drop; [`Background::stop`]
/// ends it with SIGTERM first and returns what it printed.
#[derive(Debug)]
pub struct Background {
    child: Option<std::process::Child>,
    command: String,
    out: Option<Collected>,
    err: Option<Collected>,
}

impl Background {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What it has printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.out.as_ref().map_or_else(String::new, |o| {
            String::from_utf8_lossy(&o.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        })
    }

    /// What it has printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.err.as_ref().map_or_else(String::new, |o| {
            String::from_utf8_lossy(&o.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        })
    }

    /// Waits until stdout or stderr contains `needle` (e.g. a "listening"
    /// line). Panics, showing the output, if the process exits first or after
    /// the hang guard's timeout.
    #[track_caller]
    pub fn wait_for_output(&mut self, needle: &str) {
        let limit = timeout();
        let start = Instant::now();
        loop {
            if self.stdout_so_far().contains(needle) || self.stderr_so_far().contains(needle) {
                return;
            }
            let exited = !self.is_running();
            if exited || start.elapsed() > limit {
                panic!(
                    "`{}` {} before printing {needle:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.command,
                    if exited { "exited" } else { "timed out" },
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, up to 5 s grace, then SIGKILL; returns the exit status and output.
    #[track_caller]
    pub fn stop(mut self) -> PluginOutput {
        let mut child = self.child.take().expect("child present until stop/drop");
        if let Ok(None) = child.try_wait() {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
                thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
        }
        let status = child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.command));
        let stdout = self.out.take().map(|o| take(&o)).unwrap_or_default();
        let stderr = self.err.take().map(|o| take(&o)).unwrap_or_default();
        finish(std::mem::take(&mut self.command), status, stdout, stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the program in the namespace and leaves it running.
#[track_caller]
pub(crate) fn spawn(s: Spawn<'_>) -> Background {
    let (mut child, command) = start(&s);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = s.stdin.as_bytes().to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = collect(child.stdout.take().expect("piped stdout"));
    let err = collect(child.stderr.take().expect("piped stderr"));
    Background {
        child: Some(child),
        command,
        out: Some(out),
        err: Some(err),
    }
}
