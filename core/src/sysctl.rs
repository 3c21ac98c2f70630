//! `/proc/sys` reads and writes.
//!
//! Network sysctls (`net/...`) resolve against the network namespace of the
//! thread that *opens* the file: [`read()`] and [`write()`] act on the caller's
//! namespace, [`read_in`] and [`write_in`] on another one (via
//! [`NetNs::run`]). A missing key (an interface that does not exist, IPv6
//! disabled...) keeps `ENOENT`, see [`Error::is_not_found`].

use std::fs::{self, OpenOptions};
use std::io::Write;

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

/// [`write`], skipped when the key does not exist (IPv6 disabled, a
/// link that is already gone).
pub fn write_if_present(key: &str, value: &str) -> Result<()> {
    match write(key, value) {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

/// IP forwarding on for the families of `addrs`, read first so that a
/// value already set is not rewritten.
///
/// Equivalent to: `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1`
pub fn enable_forwarding(addrs: &[ipnetwork::IpNetwork]) -> Result<()> {
    let keys = [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ];
    for (v4, key) in keys {
        if addrs.iter().any(|a| a.is_ipv4() == v4) && read(key)?.trim() != "1" {
            write(key, "1")?;
        }
    }
    Ok(())
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
