//! A small synchronous rtnetlink client, one socket per network namespace.
//!
//! A netlink socket acts on the namespace it was *created* in, for its whole
//! life: [`Netlink::new`] talks to the calling thread's namespace,
//! [`Netlink::in_netns`] to another one (created there via [`NetNs::run`]),
//! with no need to enter the namespace for each call.
//!
//! Every method documents the `ip`/`bridge` command it is equivalent to.
//! Errors name the operation and its object, keep the kernel's errno (see
//! [`Error::is_not_found`], [`Error::is_exists`]), and carry the kernel's
//! extended-ACK message when there is one.

mod addr;
mod devconf;
mod link;
mod linkmsg;
mod neigh;
pub(crate) mod nla;
mod route;
mod socket;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netns::NetNs;
use crate::{Error, Result, ResultExt};

pub use addr::Addr;
pub use devconf::Ipv4Conf;
pub use link::{BridgePort, BridgeSpec, Link, MacvlanMode, VethSpec, VxlanSpec};
pub use neigh::{FdbEntry, Neigh};
pub use route::{
    Route, RouteSpec, RTN_UNICAST, RTPROT_KERNEL, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
};

/// `<prefix><8 random hex digits>`: a link name unlikely to be taken (the
/// reference's `veth1a2b3c4d`), for host-side ends and temporary names.
pub fn random_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    // std's random hash keys: seeded once per process by `getrandom`, fresh
    // for every `RandomState`; no `/dev/urandom` open per name.
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{prefix}{:08x}", bits as u32)
}

/// An rtnetlink socket bound to one network namespace.
pub struct Netlink {
    sock: socket::Socket,
    /// Named in error messages when the socket is not the caller's namespace.
    netns: Option<PathBuf>,
}

impl Netlink {
    /// A socket on the calling thread's current network namespace (not
    /// necessarily the process's: see [`NetNs::current`]).
    pub fn new() -> Result<Netlink> {
        let sock = socket::Socket::new().map_err(|e| Error::os("netlink: open socket", e))?;
        Ok(Netlink { sock, netns: None })
    }

    /// A socket on `ns`: created inside it, it stays bound to it.
    ///
    /// Equivalent to: `ip -n <ns> ...` for every call made on it.
    pub fn in_netns(ns: &NetNs) -> Result<Netlink> {
        let what = || format!("netlink: open socket in netns {}", ns.path().display());
        let sock = ns
            .run(socket::Socket::new)
            .with_context(what)?
            .map_err(|e| Error::os(what(), e))?;
        Ok(Netlink {
            sock,
            netns: Some(ns.path().to_path_buf()),
        })
    }

    /// Sends a change request and waits for its ACK; a failure is described
    /// by `what()` (the operation and its object).
    fn ack<D: fmt::Display>(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce(&mut Self) -> D,
    ) -> Result<()> {
        match self.sock.request(msg, flags) {
            Ok(_) => Ok(()),
            Err(e) => {
                let what = what(self);
                Err(e.context(self.describe(what)))
            }
        }
    }

    /// Dumps a table; a failure is described by `what`.
    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: impl fmt::Display,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sock
            .dump(msg)
            .map_err(|e| e.context(self.describe(what)))
    }

    /// `netlink: <what>[ in netns <path>]`.
    fn describe(&self, what: impl fmt::Display) -> String {
        match &self.netns {
            Some(p) => format!("netlink: {what} in netns {}", p.display()),
            None => format!("netlink: {what}"),
        }
    }

    /// `link 5 "eth0"` (or `link 5` when the name cannot be found), for errors.
    fn link_desc(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(l)) => format!("link {index} {:?}", l.name),
            _ => format!("link {index}"),
        }
    }
}

/// An IP address family, to restrict a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    fn af(self) -> AddressFamily {
        match self {
            IpFamily::V4 => AddressFamily::Inet,
            IpFamily::V6 => AddressFamily::Inet6,
        }
    }

    /// Both families, or just `family`.
    fn select(family: Option<IpFamily>) -> &'static [IpFamily] {
        match family {
            None => &[IpFamily::V4, IpFamily::V6],
            Some(IpFamily::V4) => &[IpFamily::V4],
            Some(IpFamily::V6) => &[IpFamily::V6],
        }
    }
}

/// A hardware address attribute, if it is an Ethernet one (6 bytes).
fn mac6(b: &[u8]) -> Option<[u8; 6]> {
    b.try_into().ok()
}

/// An Ethernet address, parsed from and printed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(m: MacAddr) -> Self {
        m.0
    }
}

/// The 48-bit forms of Go's `net.ParseMAC`: `aa:bb:cc:dd:ee:ff`,
/// `aa-bb-cc-dd-ee-ff` (either case) and `aabb.ccdd.eeff`.
impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || {
            Error::config(format!(
                "invalid MAC address {s:?}: expected the form aa:bb:cc:dd:ee:ff"
            ))
        };
        let hex = |p: &str| -> Option<Vec<u8>> {
            if p.is_empty()
                || !p.len().is_multiple_of(2)
                || !p.bytes().all(|c| c.is_ascii_hexdigit())
            {
                return None;
            }
            (0..p.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&p[i..i + 2], 16).ok())
                .collect()
        };
        let (sep, width) = match s.as_bytes().get(2) {
            Some(b':') => (':', 2),
            Some(b'-') => ('-', 2),
            _ => ('.', 4),
        };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 12 / width || parts.iter().any(|p| p.len() != width) {
            return Err(invalid());
        }
        let bytes: Vec<u8> = parts
            .iter()
            .map(|p| hex(p))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?
            .concat();
        let mac: [u8; 6] = bytes.try_into().map_err(|_| invalid())?;
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:AB:cd:00:01:ff".parse().unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0x00, 0x01, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:01:ff");
        for bad in [
            "",
            "02:ab:cd:00:01",
            "02:ab:cd:00:01:ff:00",
            "2:ab:cd:00:01:ff",
            "0g:ab:cd:00:01:ff",
            "+2:ab:cd:00:01:ff",
            "02-ab:cd-00-01-ff",
            "02ab.cd00.01f",
            "02ab.cd00.01ff.0000",
            "02abcd0001ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        // Go's net.ParseMAC forms of 48 bits.
        for good in ["02-AB-cd-00-01-ff", "02ab.cd00.01ff", "02AB.CD00.01FF"] {
            assert_eq!(good.parse::<MacAddr>().unwrap(), m, "{good}");
        }
    }

    #[test]
    fn random_names_are_fresh_link_names() {
        let names: std::collections::HashSet<String> =
            (0..1000).map(|_| random_name("veth")).collect();
        // 1000 draws from 2^32: a repeat would mean the bits are not random.
        assert_eq!(names.len(), 1000);
        for n in &names {
            assert_eq!(n.len(), 12, "{n}");
            assert!(n[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{n}");
        }
    }
}
