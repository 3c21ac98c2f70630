//! IP addresses of links.

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::RouteNetlinkMessage;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{IpFamily, Netlink};
use crate::{Error, Result};

/// An address of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    /// The local address and prefix length.
    pub address: IpNetwork,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
    /// `IFA_F_*` (`IFA_F_TENTATIVE`, `IFA_F_PERMANENT`...).
    pub flags: u32,
}

impl Netlink {
    /// The addresses of one link, or of all links.
    /// A missing link is an error (not found).
    ///
    /// Equivalent to: `ip addr show [dev <index>]`
    pub fn addrs(&mut self, index: Option<u32>) -> Result<Vec<Addr>> {
        self.addr_dump(index, None)
    }

    /// [`Netlink::addrs`] of one family. Cheaper when the namespace is busy:
    /// the per-family dumps run without the RTNL lock (kernel >= 6.10), the
    /// all-families one waits for it.
    ///
    /// Equivalent to: `ip -4|-6 addr show [dev <index>]`
    pub fn addrs_of(&mut self, index: Option<u32>, family: IpFamily) -> Result<Vec<Addr>> {
        self.addr_dump(index, Some(family))
    }

    fn addr_dump(&mut self, index: Option<u32>, family: Option<IpFamily>) -> Result<Vec<Addr>> {
        let mut msg = AddressMessage::default();
        // Filtered by the kernel with strict checking, by us in any case.
        msg.header.index = index.unwrap_or(0);
        if let Some(f) = family {
            msg.header.family = f.af();
        }
        let what = match index {
            Some(i) => format!("dump addresses of link {i}"),
            None => "dump addresses".to_string(),
        };
        let replies = self.dump(RouteNetlinkMessage::GetAddress(msg), what)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Addr::from_msg(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| family.is_none_or(|f| IpFamily::of(a.address.ip()) == f))
            .collect())
    }

    /// Waits until no IPv6 address of link `index` (`name` for messages) is
    /// tentative; fails if duplicate address detection failed.
    ///
    /// Kernel quirk: even with `accept_dad=0` a new IPv6 address starts
    /// tentative until the addrconf work item runs (asynchronously, after
    /// the address is added or the link goes up); a tentative address
    /// cannot be a route's `src` ("Invalid source address"). That takes a
    /// millisecond or so, not the seconds of a real DAD.
    pub fn wait_not_tentative(&mut self, index: u32, name: &str, own: &[IpAddr]) -> Result<()> {
        if self.dad_settled(index, name, own, Duration::from_secs(2))? {
            return Ok(());
        }
        Err(Error::internal(format!(
            "IPv6 addresses of {name} are still tentative after 2 s"
        )))
    }

    /// Waits, for up to `max`, until duplicate address detection has
    /// settled on link `index` (`name` for messages): no IPv6 address is
    /// tentative. A failed detection is an error; a wait that runs out is
    /// not (logged), as with the reference's `ip.SettleAddresses`.
    ///
    /// Equivalent to: polling `ip -6 addr show dev <index> tentative`
    pub fn settle_ipv6(
        &mut self,
        index: u32,
        name: &str,
        own: &[IpAddr],
        max: Duration,
    ) -> Result<()> {
        if !self.dad_settled(index, name, own, max)? {
            crate::log::warn(format_args!(
                "IPv6 addresses of {name} still tentative after {max:?}"
            ));
        }
        Ok(())
    }

    /// Polls the IPv6 addresses of link `index` until none is tentative
    /// (true) or `max` has passed (false), at once then after growing
    /// pauses. A failed duplicate address detection is an error on the
    /// caller's addresses (`own`) and any global one; on a link-local
    /// address the kernel made it is logged: the interface still works with
    /// its other addresses, as with the reference.
    fn dad_settled(
        &mut self,
        index: u32,
        name: &str,
        own: &[IpAddr],
        max: Duration,
    ) -> Result<bool> {
        const IFA_F_DADFAILED: u32 = 0x08;
        const IFA_F_TENTATIVE: u32 = 0x40;
        let failed = |a: &Addr| a.flags & IFA_F_DADFAILED != 0;
        let link_local = |a: &Addr| matches!(a.address.ip(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let start = Instant::now();
        let mut pauses = [0, 1, 2, 5, 10, 20].into_iter();
        let mut warned = false;
        loop {
            std::thread::sleep(Duration::from_millis(pauses.next().unwrap_or(50)));
            let addrs = self.addrs_of(Some(index), IpFamily::V6)?;
            if let Some(a) = addrs
                .iter()
                .find(|a| failed(a) && (!link_local(a) || own.contains(&a.address.ip())))
            {
                return Err(Error::internal(format!(
                    "{} on {name}: duplicate address detected",
                    a.address
                ))
                .with_details("another host on the link uses this address"));
            }
            if let Some(a) = addrs.iter().find(|a| failed(a)).filter(|_| !warned) {
                warned = true;
                crate::log::warn(format_args!(
                    "{} on {name}: duplicate address detected; the link-local address is unusable, the others are not",
                    a.address
                ));
            }
            // A failed address stays tentative for good.
            if !addrs
                .iter()
                .any(|a| a.flags & IFA_F_TENTATIVE != 0 && !failed(a))
            {
                return Ok(true);
            }
            if start.elapsed() >= max {
                return Ok(false);
            }
        }
    }

    /// Adds an address; `EEXIST` if the link already has it.
    ///
    /// Equivalent to: `ip addr add <address> dev <index>` (with `broadcast +`
    /// for IPv4 prefixes shorter than /31)
    pub fn add_addr(&mut self, index: u32, address: IpNetwork) -> Result<()> {
        self.add_addr_with(index, address, false)
    }

    /// [`Netlink::add_addr`]; with `nodad` an IPv6 address skips duplicate
    /// address detection: it is usable at once (never tentative), and the
    /// interface's `accept_dad` need not change.
    ///
    /// Equivalent to: `ip addr add <address> dev <index> [nodad]`
    pub fn add_addr_with(&mut self, index: u32, address: IpNetwork, nodad: bool) -> Result<()> {
        let mut msg = addr_msg(index, address);
        if nodad && address.is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.ack(RouteNetlinkMessage::NewAddress(msg), flags, |nl| {
            format!("add address {address} to {}", nl.link_desc(index))
        })
        .map_err(|mut e| {
            // The kernel's answer to an IPv6 address on a device with IPv6 off.
            if address.is_ipv6() && e.errno == Some(libc::EACCES) {
                e.msg += "; is IPv6 disabled in this namespace (net.ipv6.conf.*.disable_ipv6)?";
            }
            e
        })
    }

    /// Equivalent to: `ip addr del <address> dev <index>`
    pub fn del_addr(&mut self, index: u32, address: IpNetwork) -> Result<()> {
        let msg = addr_msg(index, address);
        self.ack(RouteNetlinkMessage::DelAddress(msg), 0, |nl| {
            format!("delete address {address} from {}", nl.link_desc(index))
        })
    }
}

impl Addr {
    fn from_msg(msg: AddressMessage) -> Option<Addr> {
        let h = msg.header;
        let mut flags = u32::from(h.flags.bits());
        let (mut local, mut address) = (None, None);
        for attr in msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                // The 32-bit flags supersede the header's 8 bits.
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        // IFA_LOCAL is the address itself (IFA_ADDRESS is the peer on
        // point-to-point links); IPv6 usually sends IFA_ADDRESS only.
        let ip = local.or(address)?;
        Some(Addr {
            index: h.index,
            address: IpNetwork::new(ip, h.prefix_len).ok()?,
            scope: h.scope.into(),
            flags,
        })
    }
}

fn addr_msg(index: u32, address: IpNetwork) -> AddressMessage {
    let ip = address.ip();
    let mut msg = AddressMessage::default();
    msg.header.family = IpFamily::of(ip).af();
    msg.header.prefix_len = address.prefix();
    msg.header.index = index;
    // As `ip`: 127/8 gets host scope; IPv6 scopes are derived by the kernel.
    if ip.is_loopback() && ip.is_ipv4() {
        msg.header.scope = AddressScope::Host;
    }
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if let IpNetwork::V4(net) = address {
        if net.prefix() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
    }
    msg
}
