//! IP settings over netlink that would otherwise be `/proc/sys/net` files:
//! the namespace's forwarding switch (`RTM_GETNETCONF`) and per-link IPv4
//! settings (`IFLA_INET_CONF`). Unlike the `/proc/sys/net` path walk (see
//! [`crate::sysctl`]), their cost does not grow with the number of network
//! namespaces on the machine.

use netlink_packet_core::DefaultNla;
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute};

use super::nla::{attrs, u32_at};
use super::{IpFamily, Netlink};
use crate::{Error, Result};

const RTM_NEWNETCONF: u16 = 80;
const RTM_GETNETCONF: u16 = 82;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
const NETCONFA_IFINDEX_ALL: i32 = -1;
const IFLA_INET_CONF: u16 = 1;

/// An IPv4 per-link setting (`IPV4_DEVCONF_*`), as in
/// `net.ipv4.conf.<link>.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Conf {
    /// `arp_notify`: gratuitous ARP when the link comes up or changes MAC.
    ArpNotify,
}

impl Ipv4Conf {
    fn id(self) -> u16 {
        match self {
            Ipv4Conf::ArpNotify => 22,
        }
    }
}

/// The `IFLA_AF_SPEC` attribute that sets IPv4 per-link settings, for an
/// RTM_SETLINK: `{AF_INET: {IFLA_INET_CONF: {<id>: u32}...}}`. The kernel
/// applies each nested value on its own, so the others stay as they are.
pub(crate) fn ipv4_conf_attr(settings: &[(Ipv4Conf, u32)]) -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![ipv4_conf(settings)])
}

/// The `AF_INET` part of [`ipv4_conf_attr`], to combine with other families.
pub(crate) fn ipv4_conf(settings: &[(Ipv4Conf, u32)]) -> AfSpecUnspec {
    let mut conf = Vec::with_capacity(8 * settings.len());
    for (key, value) in settings {
        conf.extend_from_slice(&8u16.to_ne_bytes());
        conf.extend_from_slice(&key.id().to_ne_bytes());
        conf.extend_from_slice(&value.to_ne_bytes());
    }
    AfSpecUnspec::Inet(vec![AfSpecInet::Other(DefaultNla::new(
        IFLA_INET_CONF,
        conf,
    ))])
}

impl Netlink {
    /// Whether IP forwarding is on in this namespace for `family` (the
    /// `all` setting: `net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`).
    ///
    /// Equivalent to: `ip -4|-6 netconf show dev all`
    pub fn forwarding(&mut self, family: IpFamily) -> Result<bool> {
        // struct netconfmsg { u8 ncm_family } padded to 4, then the ifindex.
        let mut req = vec![family.af().into(), 0, 0, 0];
        req.extend_from_slice(&8u16.to_ne_bytes());
        req.extend_from_slice(&NETCONFA_IFINDEX.to_ne_bytes());
        req.extend_from_slice(&NETCONFA_IFINDEX_ALL.to_ne_bytes());
        let what = format!("get {family:?} forwarding (netconf)");
        let replies = self
            .sock
            .request_raw(RTM_GETNETCONF, 0, &req)
            .map_err(|e| e.context(self.describe(&what)))?;
        for (t, body) in replies {
            if t != RTM_NEWNETCONF {
                continue;
            }
            let forwarding = attrs(body.get(4..).unwrap_or_default())
                .find(|(kind, _)| *kind == NETCONFA_FORWARDING)
                .and_then(|(_, v)| u32_at(v, 0));
            if let Some(v) = forwarding {
                return Ok(v != 0);
            }
        }
        Err(Error::internal(self.describe(format!(
            "{what}: the kernel's reply has no forwarding attribute"
        ))))
    }
}
