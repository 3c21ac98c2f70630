//! `/proc/sys` reads and writes.
//!
//! Network sysctls (`net/...`) resolve against the network namespace of the
//! thread that *opens* the file: [`read()`] and [`write()`] act on the caller's
//! namespace, [`read_in`] and [`write_in`] on another one (via
//! [`NetNs::run`]). A missing key (an interface that does not exist, IPv6
//! disabled...) keeps `ENOENT`, see [`Error::is_not_found`].
//!
//! Kernel quirk: the path walk through `/proc/sys/net` costs O(number of
//! network namespaces on the machine): every namespace has its own dentries
//! named `net`, `ipv4`, `ipv6`, all in the same dcache hash chain, and the
//! walk compares each (~20 us with 200 namespaces, growing with every
//! container). New entries go to the head of the chain, so the host's own,
//! the oldest, is behind every namespace whose sysctls were opened since:
//! with 1000 of them, opening `/proc/sys/net/ipv6/conf` in the host takes
//! 120-530 us instead of ~3 us. Per-interface keys therefore go through a
//! [`ConfDir`]: one walk to `net/ipv{4,6}/conf`, then short relative opens.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use crate::netlink::{IpFamily, Netlink};
use crate::netns::NetNs;
use crate::{Error, Result};

const ROOT: &str = "/proc/sys";

/// The path form of a key, relative to `/proc/sys`.
///
/// As for sysctl(8), the first separator decides: a dotted key
/// (`net.ipv4.ip_forward`) has its dots turned into slashes and its slashes
/// into dots (`net.ipv4.conf.eth0/100.rp_filter` is interface `eth0.100`); a
/// slash key (`net/ipv4/conf/eth0.100/rp_filter`) is taken as is. Keys that
/// would leave `/proc/sys` (absolute, `..`) are rejected.
pub fn key_path(key: &str) -> Result<String> {
    let invalid = |why: &str| Error::config(format!("sysctl: invalid key {key:?}: {why}"));
    if key.starts_with('/') {
        return Err(invalid("must be relative to /proc/sys"));
    }
    let path: String = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    };
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid("empty, \".\" or \"..\" component"));
    }
    Ok(path)
}

/// Reads a sysctl of the caller's namespace, without the trailing newline.
///
/// Equivalent to: `sysctl -n <key>`
pub fn read(key: &str) -> Result<String> {
    let path = format!("{ROOT}/{}", key_path(key)?);
    let value =
        fs::read_to_string(&path).map_err(|e| Error::os(format_args!("sysctl: read {path}"), e))?;
    Ok(value.trim_end_matches('\n').to_string())
}

/// Writes a sysctl of the caller's namespace.
///
/// Equivalent to: `sysctl -w <key>=<value>`
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = format!("{ROOT}/{}", key_path(key)?);
    // One write(2): procfs parses each write on its own.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Error::os(format_args!("sysctl: write {value:?} to {path}"), e))
}

/// IP forwarding on for the families of `addrs`, in the namespace of `nl`
/// (which must be the caller's): read over netlink first (no `/proc/sys`
/// walk), written only when off.
///
/// Equivalent to: `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1`
pub fn enable_forwarding(nl: &mut Netlink, addrs: &[ipnetwork::IpNetwork]) -> Result<()> {
    let keys = [
        (IpFamily::V4, "net/ipv4/ip_forward"),
        (IpFamily::V6, "net/ipv6/conf/all/forwarding"),
    ];
    for (family, key) in keys {
        if !addrs.iter().any(|a| IpFamily::of(a.ip()) == family) {
            continue;
        }
        let on = match nl.forwarding(family) {
            Ok(on) => on,
            Err(_) => read(key)?.trim() == "1",
        };
        if !on {
            write(key, "1")?;
        }
    }
    Ok(())
}

/// `/proc/sys/net/ipv4/conf` or `/proc/sys/net/ipv6/conf` of the caller's
/// namespace, open: per-interface keys (and `all`/`default`) below it are
/// read and written without walking `/proc/sys/net` again.
///
/// Kernel quirk: names below a net sysctl directory resolve against the
/// network namespace of the thread that opens them, not the one the
/// directory was opened in: use a `ConfDir` only in the namespace that
/// opened it.
#[derive(Debug)]
pub struct ConfDir {
    fd: OwnedFd,
    path: &'static str,
}

impl ConfDir {
    /// The IPv4 or IPv6 `conf` directory; `None` when it does not exist
    /// (IPv6 disabled on the kernel command line).
    ///
    /// Equivalent to: `cd /proc/sys/net/ipv{4,6}/conf`
    pub fn open(v6: bool) -> Result<Option<ConfDir>> {
        let path = if v6 {
            "/proc/sys/net/ipv6/conf"
        } else {
            "/proc/sys/net/ipv4/conf"
        };
        let fd = match open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::os(format_args!("sysctl: open {path}"), e.into())),
        };
        Ok(Some(ConfDir { fd, path }))
    }

    fn open_key(&self, ifname: &str, key: &str, write: bool) -> Result<File> {
        let rel = format!("{ifname}/{key}");
        if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
            return Err(Error::config(format!(
                "sysctl: invalid interface name {ifname:?}"
            )));
        }
        let flags = if write {
            OFlag::O_WRONLY
        } else {
            OFlag::O_RDONLY
        };
        let fd = openat(
            &self.fd,
            rel.as_str(),
            flags | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let verb = if write { "write" } else { "read" };
            Error::os(
                format_args!("sysctl: {verb} {}/{rel}", self.path),
                std::io::Error::from(e),
            )
        })?;
        Ok(File::from(fd))
    }

    /// Sets `net.ipv{4,6}.conf.<ifname>.<key>` (one write(2)).
    ///
    /// Equivalent to: `sysctl -w net.ipv{4,6}.conf.<ifname>.<key>=<value>`
    pub fn write(&self, ifname: &str, key: &str, value: &str) -> Result<()> {
        self.open_key(ifname, key, true)?
            .write_all(value.as_bytes())
            .map_err(|e| {
                Error::os(
                    format_args!("sysctl: write {value:?} to {}/{ifname}/{key}", self.path),
                    e,
                )
            })
    }

    /// Reads `net.ipv{4,6}.conf.<ifname>.<key>`, trimmed.
    pub fn read(&self, ifname: &str, key: &str) -> Result<String> {
        let mut s = String::new();
        self.open_key(ifname, key, false)?
            .read_to_string(&mut s)
            .map_err(|e| Error::os(format_args!("sysctl: read {}/{ifname}/{key}", self.path), e))?;
        Ok(s.trim().to_string())
    }

    /// Sets the key unless it already has `value`: where `/proc/sys` is
    /// read-only (systemd's `ProtectKernelTunables`, an unprivileged
    /// container) a setting already in place costs no write that would fail.
    pub fn ensure(&self, ifname: &str, key: &str, value: &str) -> Result<()> {
        match self.read(ifname, key) {
            Ok(v) if v == value => Ok(()),
            _ => self.write(ifname, key, value),
        }
    }

    /// [`ConfDir::write`] for a setting that is an improvement, not a need
    /// (host-side `accept_ra=0`, DAD settings), on a link this operation
    /// made or whose value it read over netlink (so no read first): a
    /// missing key is skipped, and a write `/proc/sys` refuses (read-only,
    /// not permitted) is logged instead of failing the operation, as the
    /// reference does, unless the value is already in place.
    pub fn write_best_effort(&self, ifname: &str, key: &str, value: &str) -> Result<()> {
        match self.write(ifname, key, value) {
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) if matches!(e.errno(), Some(libc::EROFS | libc::EACCES | libc::EPERM)) => {
                if !self.read(ifname, key).is_ok_and(|v| v == value) {
                    crate::log::warn(format_args!("{e}: left as is"));
                }
                Ok(())
            }
            r => r,
        }
    }
}

/// Runs `f` on the IPv4 or IPv6 [`ConfDir`] of `ns`, inside `ns` (see the
/// quirk on [`ConfDir`]); `None` when that directory does not exist (IPv6
/// disabled on the kernel command line). Errors name `ns`.
///
/// Equivalent to: `ip netns exec <ns> sysctl -w net.ipv{4,6}.conf.<ifname>.<key>=<value>...`
pub fn conf_in<T>(
    ns: &NetNs,
    v6: bool,
    f: impl FnOnce(&ConfDir) -> Result<T>,
) -> Result<Option<T>> {
    ns.run(|| ConfDir::open(v6)?.map(|dir| f(&dir)).transpose())?
        .map_err(|e| in_netns(e, ns))
}

/// Reads a sysctl of `ns`.
///
/// Equivalent to: `ip netns exec <ns> sysctl -n <key>`
pub fn read_in(ns: &NetNs, key: &str) -> Result<String> {
    ns.run(|| read(key))?.map_err(|e| in_netns(e, ns))
}

/// Writes a sysctl of `ns`.
///
/// Equivalent to: `ip netns exec <ns> sysctl -w <key>=<value>`
pub fn write_in(ns: &NetNs, key: &str, value: &str) -> Result<()> {
    ns.run(|| write(key, value))?.map_err(|e| in_netns(e, ns))
}

fn in_netns(mut e: Error, ns: &NetNs) -> Error {
    e.msg = format!("{} (in netns {})", e.msg, ns.path().display());
    e
}

#[cfg(test)]
mod tests {
    use super::key_path;

    #[test]
    fn key_forms() {
        let ok = |k: &str| key_path(k).unwrap();
        assert_eq!(ok("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(ok("net/ipv4/ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(
            ok("net.ipv4.conf.eth0/100.rp_filter"),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            ok("net/ipv4/conf/eth0.100/rp_filter"),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        for bad in [
            "",
            "/proc/sys/net",
            "net/../../etc/passwd",
            "net..ipv4",
            "net/./x",
            "net/ipv4/",
        ] {
            assert!(key_path(bad).is_err(), "{bad}");
        }
    }
}
