//! Neighbours (ARP/NDP entries) and bridge/VXLAN forwarding database entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{mac6, IpFamily, MacAddr, Netlink};
use crate::Result;

/// A neighbour (ARP or NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    pub index: u32,
    pub ip: IpAddr,
    /// `None` while unresolved.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` (0x80 permanent, 0x02 reachable...).
    pub state: u16,
}

/// A forwarding database entry of a bridge port or a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: [u8; 6],
    /// The remote VTEP, for VXLAN entries.
    pub dst: Option<IpAddr>,
    /// `NUD_*` (0x80 permanent...).
    pub state: u16,
    /// `NTF_*` (0x02 self: the device's own table, 0x04 master: the bridge's).
    pub flags: u8,
    /// The bridge, for entries of the bridge's table.
    pub controller: Option<u32>,
}

impl Netlink {
    /// Adds a permanent neighbour entry; `EEXIST` if there is one.
    ///
    /// Equivalent to: `ip neigh add <ip> lladdr <mac> dev <index> nud permanent`
    pub fn add_neigh(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        let mut msg = neigh_msg(IpFamily::of(ip).af(), index);
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        let msg = RouteNetlinkMessage::NewNeighbour(msg);
        self.ack(msg, NLM_F_CREATE | NLM_F_EXCL, |nl| {
            format!(
                "add neighbour {ip} lladdr {} on {}",
                MacAddr(mac),
                nl.link_desc(index)
            )
        })
    }

    /// Equivalent to: `ip neigh del <ip> dev <index>`
    pub fn del_neigh(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let mut msg = neigh_msg(IpFamily::of(ip).af(), index);
        msg.attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        self.ack(RouteNetlinkMessage::DelNeighbour(msg), 0, |nl| {
            format!("delete neighbour {ip} on {}", nl.link_desc(index))
        })
    }

    /// The IPv4 and IPv6 neighbours of a link.
    ///
    /// Equivalent to: `ip neigh show dev <index>`
    pub fn neighs(&mut self, index: u32) -> Result<Vec<Neigh>> {
        let mut neighs = Vec::new();
        for &fam in IpFamily::select(None) {
            // The dump filter goes in NDA_IFINDEX: strict checking wants a
            // zero ndm_ifindex in neighbour dump requests.
            let mut msg = neigh_msg(fam.af(), 0);
            msg.attributes.push(NeighbourAttribute::IfIndex(index));
            let replies = self.dump(
                RouteNetlinkMessage::GetNeighbour(msg),
                format_args!("dump {fam:?} neighbours of link {index}"),
            )?;
            neighs.extend(
                replies
                    .into_iter()
                    .filter_map(|m| match m {
                        RouteNetlinkMessage::NewNeighbour(n) => Neigh::from_msg(n),
                        _ => None,
                    })
                    .filter(|n| n.index == index),
            );
        }
        Ok(neighs)
    }

    /// Adds a permanent FDB entry to the device's own table; on a VXLAN
    /// device, `dst` is the remote VTEP, and one MAC may have several (the
    /// all-zero MAC with several `dst` floods to each).
    ///
    /// Equivalent to: `bridge fdb append <mac> dev <index> [dst <ip>] self permanent`
    pub fn add_fdb(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        let msg = fdb_msg(index, mac, dst);
        let msg = RouteNetlinkMessage::NewNeighbour(msg);
        self.ack(msg, NLM_F_CREATE | NLM_F_APPEND, |nl| {
            format!(
                "add fdb entry {}{} on {}",
                MacAddr(mac),
                dst_desc(dst),
                nl.link_desc(index)
            )
        })
    }

    /// Deletes an FDB entry of the device's own table (only the `dst` remote,
    /// when given).
    ///
    /// Equivalent to: `bridge fdb del <mac> dev <index> [dst <ip>] self`
    pub fn del_fdb(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        let msg = RouteNetlinkMessage::DelNeighbour(fdb_msg(index, mac, dst));
        self.ack(msg, 0, |nl| {
            format!(
                "delete fdb entry {}{} on {}",
                MacAddr(mac),
                dst_desc(dst),
                nl.link_desc(index)
            )
        })
    }

    /// The FDB entries of a device (its own and, for a bridge port, the
    /// bridge's entries for that port).
    ///
    /// Equivalent to: `bridge fdb show dev <index>`
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        // Unlike neighbour dumps, FDB dumps take the port in ndm_ifindex.
        let msg = neigh_msg(AddressFamily::Bridge, index);
        let replies = self.dump(
            RouteNetlinkMessage::GetNeighbour(msg),
            format_args!("dump fdb of link {index}"),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => FdbEntry::from_msg(n),
                _ => None,
            })
            .filter(|e| e.index == index)
            .collect())
    }
}

fn neigh_msg(family: AddressFamily, index: u32) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.ifindex = index;
    msg
}

fn fdb_msg(index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = neigh_msg(AddressFamily::Bridge, index);
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own; // NTF_SELF
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    // The kernel tells IPv4 from IPv6 by the length of NDA_DST.
    msg.attributes
        .extend(dst.map(|ip| NeighbourAttribute::Destination(ip.into())));
    msg
}

fn dst_desc(dst: Option<IpAddr>) -> String {
    dst.map(|ip| format!(" dst {ip}")).unwrap_or_default()
}

/// An NDA_DST: typed for IPv4/IPv6 messages, raw bytes for AF_BRIDGE ones.
fn neigh_ip(a: NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(ip) => Some(ip.into()),
        NeighbourAddress::Inet6(ip) => Some(ip.into()),
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b)
                .ok()
                .map(|b| Ipv4Addr::from(b).into()),
            16 => <[u8; 16]>::try_from(b)
                .ok()
                .map(|b| Ipv6Addr::from(b).into()),
            _ => None,
        },
        _ => None,
    }
}

impl Neigh {
    fn from_msg(msg: NeighbourMessage) -> Option<Neigh> {
        let (mut ip, mut mac) = (None, None);
        for attr in msg.attributes {
            match attr {
                NeighbourAttribute::Destination(a) => ip = neigh_ip(a),
                NeighbourAttribute::LinkLayerAddress(a) => mac = mac6(&a),
                _ => {}
            }
        }
        Some(Neigh {
            index: msg.header.ifindex,
            ip: ip?,
            mac,
            state: msg.header.state.into(),
        })
    }
}

impl FdbEntry {
    fn from_msg(msg: NeighbourMessage) -> Option<FdbEntry> {
        if msg.header.family != AddressFamily::Bridge {
            return None;
        }
        let (mut mac, mut dst, mut controller) = (None, None, None);
        for attr in msg.attributes {
            match attr {
                NeighbourAttribute::LinkLayerAddress(a) => mac = mac6(&a),
                NeighbourAttribute::Destination(a) => dst = neigh_ip(a),
                NeighbourAttribute::Controller(c) => controller = Some(c),
                _ => {}
            }
        }
        Some(FdbEntry {
            index: msg.header.ifindex,
            mac: mac?,
            dst,
            state: msg.header.state.into(),
            flags: msg.header.flags.bits(),
            controller,
        })
    }
}
