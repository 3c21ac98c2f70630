//! Named network namespaces owned by a test.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;

use crate::exec::{self, Background, PluginOutput, Spawn, DEFAULT_PATH};

/// Where named namespaces live (as with `ip netns`); a [`Netns::path`] is a
/// real nsfs bind mount here, usable as `CNI_NETNS`.
pub const NETNS_DIR: &str = "/run/netns";

/// Every harness namespace and temp dir is named `nuage-t<pid>-<counter>-<tag>`.
pub(crate) const PREFIX: &str = "nuage-t";

const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Address family for [`Netns::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`ip -4`).
    V4,
    /// IPv6 (`ip -6`).
    V6,
}

impl Family {
    fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }
}

/// A network namespace owned by the test, at `/run/netns/nuage-t<pid>-<n>-<tag>`.
/// Deleted on drop, also when the test panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    path_str: String,
}

impl Netns {
    /// A fresh namespace with `lo` down (as a container runtime hands it to CNI).
    #[track_caller]
    pub fn new(tag: &str) -> Netns {
        Self::create(tag, false)
    }

    /// A fresh namespace with `lo` up.
    #[track_caller]
    pub fn new_lo_up(tag: &str) -> Netns {
        Self::create(tag, true)
    }

    #[track_caller]
    fn create(tag: &str, lo_up: bool) -> Netns {
        sweep_once();
        let name = crate::unique_name(tag);
        {
            // `ip netns add` mounts /run/netns shared on first use; keep that race-free.
            let _g = crate::global_lock();
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .env_clear()
                .env("PATH", DEFAULT_PATH)
                .output()
                .unwrap_or_else(|e| panic!("cannot run `ip netns add` (iproute2 missing?): {e}"));
            assert!(
                out.status.success(),
                "`ip netns add {name}` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                if unsafe_is_root() {
                    ""
                } else {
                    " (not root: see require_root)"
                }
            );
        }
        let path = Path::new(NETNS_DIR).join(&name);
        let ns = Netns {
            path_str: path.to_str().expect("utf-8 path").to_owned(),
            name,
            path,
        };
        // From here on, a panic drops `ns` and deletes the namespace.
        ns.assert_separate();
        if lo_up {
            ns.set_lo_up();
        }
        ns
    }

    /// The namespace name (`nuage-t<pid>-<n>-<tag>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: a real nsfs path, usable as `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`Netns::path`] as `&str`, handy for environment variables.
    pub fn path_str(&self) -> &str {
        &self.path_str
    }

    /// The nsfs inode number identifying this namespace.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path.display()))
            .ino()
    }

    /// Panics unless the path is an nsfs mount of a namespace other than the
    /// one this test process runs in (the machine's).
    #[track_caller]
    fn assert_separate(&self) {
        let magic = statfs_magic(&self.path)
            .unwrap_or_else(|e| panic!("statfs {}: {e}", self.path.display()));
        assert_eq!(
            magic,
            NSFS_MAGIC,
            "{} is not an nsfs mount (f_type {magic:#x})",
            self.path.display()
        );
        let own = std::fs::metadata("/proc/self/ns/net")
            .expect("stat /proc/self/ns/net")
            .ino();
        assert_ne!(
            self.inode(),
            own,
            "{} is the test process's own (the machine's) network namespace",
            self.path.display()
        );
    }

    /// Sets `lo` up.
    #[track_caller]
    pub fn set_lo_up(&self) {
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// Runs `cmd args` inside this namespace (clean env: `PATH` only) and waits.
    #[track_caller]
    pub fn exec(&self, cmd: &str, args: &[&str]) -> PluginOutput {
        exec::run(Spawn {
            ns: self,
            program: cmd.as_ref(),
            args,
            env: &[],
            stdin: "",
            var_lib_cni: None,
        })
    }

    /// Starts `cmd args` inside this namespace (clean env: `PATH` plus `env`)
    /// and leaves it running: a listener, a daemon. Killed on drop.
    #[track_caller]
    pub fn spawn(&self, cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Background {
        exec::spawn(Spawn {
            ns: self,
            program: cmd.as_ref(),
            args,
            env,
            stdin: "",
            var_lib_cni: None,
        })
    }

    /// Like [`Netns::exec`], but panics (showing the output) unless it succeeds;
    /// returns stdout.
    #[track_caller]
    pub fn exec_ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.exec(cmd, args);
        out.assert_success();
        out.stdout
    }

    /// `ip <args>` inside this namespace; panics on failure; returns stdout.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        self.exec_ok("ip", args)
    }

    /// `ip -j <args>` inside this namespace, parsed (empty output is `[]`).
    #[track_caller]
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        if out.trim().is_empty() {
            return Value::Array(Vec::new());
        }
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("`ip {}` printed invalid JSON ({e}):\n{out}", full.join(" "))
        })
    }

    /// `ip -j -d link show`: every link, with details (`linkinfo`).
    #[track_caller]
    pub fn links(&self) -> Vec<Value> {
        as_vec(self.ip_json(&["-d", "link", "show"]))
    }

    /// One link by name (`ip -j -d link show` entry), or `None`.
    #[track_caller]
    pub fn link(&self, name: &str) -> Option<Value> {
        self.links()
            .into_iter()
            .find(|l| l.get("ifname").and_then(Value::as_str) == Some(name))
    }

    /// Names of all links.
    #[track_caller]
    pub fn link_names(&self) -> Vec<String> {
        self.links()
            .iter()
            .filter_map(|l| l.get("ifname").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// Whether the link exists and has the `UP` flag (administratively up).
    #[track_caller]
    pub fn link_is_up(&self, name: &str) -> bool {
        let l = self
            .link(name)
            .unwrap_or_else(|| panic!("no link {name} in netns {}", self.name));
        l.get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "UP"))
    }

    /// The `addr_info` entries of `ifname` (`ip -j addr show dev <ifname>`):
    /// objects with `family`, `local`, `prefixlen`, `scope`, ….
    /// Panics if the link does not exist.
    #[track_caller]
    pub fn addrs(&self, ifname: &str) -> Vec<Value> {
        let v = self.ip_json(&["addr", "show", "dev", ifname]);
        as_vec(v)
            .into_iter()
            .next()
            .and_then(|l| l.get("addr_info").cloned())
            .map(as_vec)
            .unwrap_or_default()
    }

    /// The addresses of `ifname` as `local/prefixlen` strings, in kernel order.
    #[track_caller]
    pub fn addr_cidrs(&self, ifname: &str) -> Vec<String> {
        self.addrs(ifname)
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a.get("local").and_then(Value::as_str).unwrap_or("?"),
                    a.get("prefixlen").map(Value::to_string).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Routes of the main table (`ip -j -4|-6 route show`).
    #[track_caller]
    pub fn routes(&self, family: Family) -> Vec<Value> {
        as_vec(self.ip_json(&[family.flag(), "route", "show"]))
    }

    /// Routes of a given table (`main`, `local`, `all`, or a number).
    #[track_caller]
    pub fn routes_in_table(&self, family: Family, table: &str) -> Vec<Value> {
        as_vec(self.ip_json(&[family.flag(), "route", "show", "table", table]))
    }

    /// Reads a sysctl inside this namespace. `key` is dotted
    /// (`net.ipv4.ip_forward`) or a path under /proc/sys
    /// (`net/ipv4/conf/eth0.100/forwarding`, for names that contain dots).
    #[track_caller]
    pub fn sysctl(&self, key: &str) -> String {
        self.exec_ok("cat", &[&sysctl_path(key)]).trim().to_owned()
    }

    /// Writes a sysctl inside this namespace (key as for [`Netns::sysctl`]).
    #[track_caller]
    pub fn set_sysctl(&self, key: &str, value: &str) {
        let script = format!("printf '%s' \"$1\" > {}", sysctl_path(key));
        self.exec_ok("sh", &["-c", &script, "sh", value]);
    }

    /// Makes a veth pair: `name` here and `other_name` in `other`, both set up.
    /// Use an end as a "physical" parent device (the kernel has no `dummy`).
    #[track_caller]
    pub fn veth_pair_into(&self, name: &str, other: &Netns, other_name: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            other_name,
            "netns",
            &other.name,
        ]);
        self.ip(&["link", "set", name, "up"]);
        other.ip(&["link", "set", other_name, "up"]);
    }

    /// `ping -c 1 -W 5 <addr>` from this namespace, up to 3 tries (first packets
    /// may be lost to neighbour resolution or IPv6 DAD). True if one got a reply.
    #[track_caller]
    pub fn ping(&self, addr: &str) -> bool {
        (0..3).any(|_| self.exec("ping", &["-c", "1", "-W", "5", addr]).success())
    }

    /// Whether the namespace file still exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = delete_ns_path(&self.path) {
            eprintln!(
                "netns-tests: warning: could not delete netns {}: {e}",
                self.path.display()
            );
        }
    }
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn sysctl_path(key: &str) -> String {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    format!("/proc/sys/{rel}")
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn statfs_magic(path: &Path) -> std::io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statfs writes into the zeroed struct; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// What `ip netns del` does: detach the nsfs mount, remove the file.
fn delete_ns_path(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: plain syscall on a valid C string.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    let umount_err = (rc != 0).then(std::io::Error::last_os_error);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(match umount_err {
            Some(u) => std::io::Error::other(format!("umount: {u}; unlink: {e}")),
            None => e,
        }),
    }
}

/// The pid in `nuage-t<pid>-…`, if the name has that shape.
pub(crate) fn pid_of_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse::<i32>().ok().filter(|p| *p > 0)
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let removed = sweep_stale();
        if !removed.is_empty() {
            eprintln!("netns-tests: removed stale leftovers of dead test runs: {removed:?}");
        }
    });
}

/// Removes namespaces (`/run/netns/nuage-t<pid>-*`) and temp dirs
/// (`$TMPDIR/nuage-t<pid>-*`) whose `<pid>` is no longer alive: leftovers of a
/// killed test run. Runs once automatically at the first [`Netns::new`].
/// Returns the paths removed.
pub fn sweep_stale() -> Vec<PathBuf> {
    let own = std::process::id() as i32;
    let stale = |name: &str| pid_of_name(name).is_some_and(|p| p != own && !pid_alive(p));
    let mut removed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(NETNS_DIR) {
        for e in rd.flatten() {
            let name = e.file_name();
            if stale(&name.to_string_lossy()) {
                let p = e.path();
                match delete_ns_path(&p) {
                    Ok(()) => removed.push(p),
                    Err(err) => {
                        eprintln!("netns-tests: cannot remove stale {}: {err}", p.display())
                    }
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name();
            if stale(&name.to_string_lossy()) && e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                match std::fs::remove_dir_all(&p) {
                    Ok(()) => removed.push(p),
                    Err(err) => {
                        eprintln!("netns-tests: cannot remove stale {}: {err}", p.display())
                    }
                }
            }
        }
    }
    removed
}
