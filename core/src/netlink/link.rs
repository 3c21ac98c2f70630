//! Links: lookup, dump, settings, creation (veth, bridge, macvlan, vxlan).

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoData, InfoKind, InfoMacVlan,
    InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
    LinkProtoInfoBridge, MacVlanMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::devconf::{ipv4_conf, ipv4_conf_attr};
use super::{Ipv4Conf, MacAddr, Netlink};
use crate::netns::NetNs;
use crate::{Error, Result};

const IFLA_BRPORT_MODE: u16 = 4; // hairpin
const IFLA_BRPORT_ISOLATED: u16 = 33;

/// A network interface, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "veth", "bridge", "macvlan", "vxlan"...; `None` for
    /// physical devices and `lo`.
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub flags_up: bool,
    /// Operationally up (`IFLA_OPERSTATE` is `UP`).
    pub oper_up: bool,
    /// The bridge (or other controller) this link is a port of.
    pub controller: Option<u32>,
    pub alias: Option<String>,
    /// `IFLA_LINK`: the parent of a macvlan/vxlan, the peer of a veth. When
    /// `link_netnsid` is set, this index is in that other namespace.
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the namespace of `link`, as an id local to ours.
    pub link_netnsid: Option<i32>,
    /// Promiscuous mode requested by user space (`IFF_PROMISC`).
    pub promisc: bool,
    /// The `MACVLAN_MODE_*` of a macvlan (see [`MacvlanMode::as_u32`]).
    pub macvlan_mode: Option<u32>,
    /// Port settings, when this link is a bridge port.
    pub bridge_port: Option<BridgePort>,
    /// Number of TX and RX queues (`IFLA_NUM_TX_QUEUES`, `IFLA_NUM_RX_QUEUES`).
    pub queues: (u32, u32),
    /// `net.ipv6.conf.<link>.accept_ra`, from `IFLA_INET6_CONF` (which
    /// netlink reports but cannot set); `None` without IPv6.
    pub ipv6_accept_ra: Option<i32>,
}

/// The settings of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
}

/// A veth pair to create; the peer may go straight into another namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct VethSpec<'a> {
    pub name: &'a str,
    pub peer_name: &'a str,
    /// Applied to both ends.
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub peer_mac: Option<[u8; 6]>,
    pub peer_netns: Option<&'a NetNs>,
    /// The host end up. (Not the peer: the kernel cannot open it before the
    /// pair is linked, `ENOTCONN`; see [`Netlink::set_up_named`].)
    pub up: bool,
    /// The bridge the host end joins, in the same request.
    pub controller: Option<u32>,
    /// TX and RX queues of each end; `None`: the kernel's default, one per
    /// possible CPU. Each queue is a sysfs directory the kernel creates
    /// and registers with the link, so creation costs O(queues); without
    /// XDP a veth uses none of them (it transmits locklessly, without a
    /// qdisc, and receives through the per-CPU backlog).
    pub queues: Option<u32>,
}

/// A bridge to create.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeSpec<'a> {
    pub name: &'a str,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// Multicast snooping off.
    ///
    /// Kernel behaviour: with snooping on, every port added or brought up
    /// re-arms the multicast timers of *every* port of the bridge
    /// (`br_port_state_selection`), whose expiries then run for each port:
    /// O(ports) per container, O(ports^2) in all. Without a multicast
    /// querier on the segment (a container bridge has none unless set up),
    /// snooping floods multicast to every port anyway, so turning it off
    /// changes no forwarding.
    pub no_snooping: bool,
    /// VLAN filtering on. A kernel built without
    /// `CONFIG_BRIDGE_VLAN_FILTERING` refuses it with `EOPNOTSUPP`, and the
    /// bridge is then not created.
    pub vlan_filtering: bool,
}

/// A VXLAN device to create.
#[derive(Debug, Clone, Copy, Default)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The underlay device.
    pub dev_index: Option<u32>,
    /// The underlay source address.
    pub local: Option<IpAddr>,
    /// UDP destination port; 0 is the kernel default (8472, not IANA's 4789).
    pub port: u16,
    /// Learn remote MACs from received packets.
    pub learning: bool,
    pub mtu: Option<u32>,
}

/// How a macvlan talks to its siblings on the same parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvlanMode {
    /// The kernel's `MACVLAN_MODE_*` value, as in [`Link::macvlan_mode`].
    pub fn as_u32(self) -> u32 {
        u32::from(self.kernel())
    }

    fn kernel(self) -> MacVlanMode {
        match self {
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
        })
    }
}

impl Netlink {
    /// The link named `name`, or `None` (also for a name no link can have:
    /// longer than 15 bytes, which the kernel answers with ERANGE).
    ///
    /// Equivalent to: `ip link show dev <name>`
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        if name.is_empty() || name.len() > 15 {
            return Ok(None);
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(msg, format_args!("get link {name:?}"))
    }

    /// The link with index `index`, or `None`.
    ///
    /// Equivalent to: `ip link show dev <index>`
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(link_msg(index), format_args!("get link {index}"))
    }

    fn get_link(&mut self, mut msg: LinkMessage, what: fmt::Arguments) -> Result<Option<Link>> {
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self
            .sock
            .request_as(RouteNetlinkMessage::GetLink(msg), 0, link_of)
        {
            Ok(links) => Ok(links.into_iter().next()),
            Err(e) if e.errno == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.context(self.describe(what))),
        }
    }

    /// All links of the namespace.
    ///
    /// Equivalent to: `ip link show`
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.sock
            .dump_as(RouteNetlinkMessage::GetLink(msg), link_of)
            .map_err(|e| e.context(self.describe("dump links")))
    }

    /// The ports of bridge (or other controller) `index`, filtered by the
    /// kernel (strict checking): a short dump, so one that a concurrent
    /// link change interrupts (and that is retried) far less often than a
    /// dump of every link of a busy namespace.
    ///
    /// Equivalent to: `ip link show master <index>`
    pub fn ports_of(&mut self, index: u32) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        msg.attributes.push(LinkAttribute::Controller(index));
        let links = self
            .sock
            .dump_as(RouteNetlinkMessage::GetLink(msg), link_of)
            .map_err(|e| e.context(self.describe(format_args!("dump ports of link {index}"))))?;
        // Filtered by us too: a kernel without strict checking dumps all.
        Ok(links
            .into_iter()
            .filter(|l| l.controller == Some(index))
            .collect())
    }

    /// Equivalent to: `ip link set dev <index> up`
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = link_msg(index);
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.set_link(index, msg, |l| format!("set {l} up"))
    }

    /// Sets the link named `name` up, with the IPv4 settings `ipv4` (in the
    /// same request: they do not depend on the order) and, if
    /// `no_link_local`, without an IPv6 link-local address (set first), and
    /// returns it. `None`: no such link.
    ///
    /// Equivalent to: `sysctl -w net.ipv4.conf.<name>.<key>=<value>...; ip
    /// link set dev <name> [addrgenmode none] up; ip link show dev <name>`
    pub fn set_up_named(
        &mut self,
        name: &str,
        ipv4: &[(Ipv4Conf, u32)],
        no_link_local: bool,
    ) -> Result<Option<Link>> {
        let named = || {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.to_string()));
            msg
        };
        let mut ipv4_af = (!ipv4.is_empty()).then(|| ipv4_conf(ipv4));
        if no_link_local {
            // Kernel quirk: one RTM_SETLINK applies the flags before
            // IFLA_AF_SPEC, so the link would come up (and may get its
            // link-local address) with the old mode: a request of its own.
            let mut af = vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                In6AddrGenMode::None,
            )])];
            af.extend(ipv4_af.take());
            let mut msg = named();
            msg.attributes.push(LinkAttribute::AfSpecUnspec(af));
            match self.sock.request(RouteNetlinkMessage::SetLink(msg), 0) {
                Err(e) if e.errno == Some(libc::ENODEV) => return Ok(None),
                // A link without IPv6 (MTU below 1280, a kernel booted with
                // ipv6.disable=1) has no link-local address to suppress.
                Err(e) if e.errno == Some(libc::EAFNOSUPPORT) => {
                    ipv4_af = (!ipv4.is_empty()).then(|| ipv4_conf(ipv4));
                }
                Err(e) => {
                    return Err(
                        e.context(self.describe(format_args!("set IP settings of link {name:?}")))
                    )
                }
                Ok(_) => {}
            }
        }
        let mut msg = named();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(af) = ipv4_af {
            msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![af]));
        }
        match self.sock.request(RouteNetlinkMessage::SetLink(msg), 0) {
            Ok(_) => self.link_by_name(name),
            Err(e) if e.errno == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.context(self.describe(format_args!("set link {name:?} up")))),
        }
    }

    /// Sets IPv4 per-link settings over netlink, without the O(namespaces)
    /// `/proc/sys/net` walk.
    ///
    /// Equivalent to: `sysctl -w net.ipv4.conf.<link>.<key>=<value>...`
    pub fn set_ipv4_conf(&mut self, index: u32, settings: &[(Ipv4Conf, u32)]) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes.push(ipv4_conf_attr(settings));
        self.set_link(index, msg, |l| {
            format!("set IPv4 settings {settings:?} on {l}")
        })
    }

    /// Equivalent to: `ip link set dev <index> down`
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        let mut msg = link_msg(index);
        msg.header.change_mask = LinkFlags::Up;
        self.set_link(index, msg, |l| format!("set {l} down"))
    }

    /// Equivalent to: `ip link set dev <index> mtu <mtu>`
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(index, msg, |l| format!("set mtu {mtu} on {l}"))
    }

    /// Equivalent to: `ip link set dev <index> address <mac>`
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.set_link(index, msg, |l| {
            format!("set address {} on {l}", MacAddr(mac))
        })
    }

    /// Renames a link; the kernel refuses (`EBUSY`) while it is up.
    ///
    /// Equivalent to: `ip link set dev <index> name <name>`
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_link(index, msg, |l| format!("rename {l} to {name:?}"))
    }

    /// Equivalent to: `ip link set dev <index> alias <alias>`
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link(index, msg, |l| format!("set alias {alias:?} on {l}"))
    }

    /// Equivalent to: `ip link set dev <index> promisc on|off`
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = link_msg(index);
        if on {
            msg.header.flags = LinkFlags::Promisc;
        }
        msg.header.change_mask = LinkFlags::Promisc;
        let state = if on { "on" } else { "off" };
        self.set_link(index, msg, |l| format!("set promisc {state} on {l}"))
    }

    /// Enslaves a link to a bridge, or releases it with `None`.
    ///
    /// Equivalent to: `ip link set dev <index> master <controller>` / `nomaster`
    pub fn set_controller(&mut self, index: u32, controller: Option<u32>) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes
            .push(LinkAttribute::Controller(controller.unwrap_or(0)));
        self.set_link(index, msg, |l| match controller {
            Some(c) => format!("attach {l} to controller {c}"),
            None => format!("release {l} from its controller"),
        })
    }

    /// Moves a link to another namespace. It goes down, and loses its
    /// addresses and routes; its index may change there.
    ///
    /// Equivalent to: `ip link set dev <index> netns <ns>`
    pub fn set_netns(&mut self, index: u32, ns: &NetNs) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        self.set_link(index, msg, |l| {
            format!("move {l} to netns {}", ns.path().display())
        })
    }

    /// Deletes a link (both ends, for a veth).
    ///
    /// Equivalent to: `ip link del dev <index>`
    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let msg = RouteNetlinkMessage::DelLink(link_msg(index));
        self.ack(msg, 0, |nl| format!("delete {}", nl.link_desc(index)))
    }

    /// Moves link `index` into `ns` and names it `name` there, in one
    /// request.
    ///
    /// Kernel behaviour this relies on: `do_setlink` first changes the
    /// namespace, taking `name` right away when the link's current name is
    /// already used in `ns`, then renames it. So the link never shows up in
    /// `ns` under a colliding name, and is never renamed in the namespace it
    /// leaves (where udev and NetworkManager would race with it). The move
    /// sets the link down and flushes its addresses and routes. `EEXIST`:
    /// `name` is taken in `ns`.
    ///
    /// Equivalent to: `ip link set dev <index> netns <ns> name <name>`
    pub fn move_link(&mut self, index: u32, ns: &NetNs, name: &str) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_link(index, msg, |l| {
            format!("move {l} to netns {} as {name:?}", ns.path().display())
        })
    }

    /// Sets the broadcast queue length of macvlan `index`: an RTM_NEWLINK
    /// without `NLM_F_CREATE` on an existing link is the kernel's
    /// "changelink" (RTM_SETLINK ignores `IFLA_INFO_DATA`). Kernel >= 5.11.
    ///
    /// Equivalent to: `ip link set dev <index> type macvlan bcqueuelen <len>`
    pub fn set_macvlan_bcqueuelen(&mut self, index: u32, len: u32) -> Result<()> {
        let mut msg = link_msg(index);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::BcQueueLen(len)])),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg), 0, |nl| {
            format!("set bcqueuelen {len} on {}", nl.link_desc(index))
        })
    }

    /// Deletes the link named `name` if there is one (a veth takes its peer
    /// with it); `false` when there was nothing to delete.
    ///
    /// Equivalent to: `ip link del dev <name>`, "Cannot find device" ignored
    pub fn del_link_named(&mut self, name: &str) -> Result<bool> {
        let Some(l) = self.link_by_name(name)? else {
            return Ok(false);
        };
        match self.del_link(l.index) {
            Err(e) if e.is_not_found() => Ok(false),
            r => r.map(|()| true),
        }
    }

    /// The link named `name` if it is of `kind` (`veth`, `macvlan`): what a
    /// DEL may read and delete. Another kind under that name (`lo`, another
    /// plugin's interface after a wrong `CNI_IFNAME`) is not this plugin's:
    /// `None`, with a warning, and DEL goes on.
    ///
    /// Equivalent to: `ip link show dev <name> type <kind>`
    pub fn own_link_named(&mut self, name: &str, kind: &str) -> Result<Option<Link>> {
        let Some(l) = self.link_by_name(name)? else {
            return Ok(None);
        };
        if l.kind.as_deref() != Some(kind) {
            crate::log::warn(format_args!(
                "{name} is a {} link, not the {kind} this plugin creates: left as is",
                l.kind.as_deref().unwrap_or("physical")
            ));
            return Ok(None);
        }
        Ok(Some(l))
    }

    /// DEL of what a plugin created: [`Netlink::del_link_named`], but only
    /// of a link of `kind` ([`Netlink::own_link_named`]).
    ///
    /// Equivalent to: `ip link del dev <name> type <kind>`
    pub fn del_own_link_named(&mut self, name: &str, kind: &str) -> Result<bool> {
        let Some(l) = self.own_link_named(name, kind)? else {
            return Ok(false);
        };
        match self.del_link(l.index) {
            Err(e) if e.is_not_found() => Ok(false),
            r => r.map(|()| true),
        }
    }

    /// Creates a veth pair in one request; with `peer_netns` the peer is
    /// created directly in that namespace (never visible in ours); with `up`
    /// the host end comes up, and with `controller` it joins that bridge,
    /// all in the same request: a failure at any step (a full
    /// bridge: `EXFULL`) leaves nothing behind.
    ///
    /// Returns the host end as the kernel announced it (asked with
    /// `NLM_F_ECHO`, kernel >= 6.3; `None` on older kernels): its index,
    /// name and MAC, before it joined `controller`.
    ///
    /// Equivalent to: `ip link add <name> [mtu M] [address A] [up] [master
    /// <controller>] [numtxqueues Q numrxqueues Q] type veth peer name
    /// <peer_name> [mtu M] [address A] [netns <ns>] [numtxqueues Q numrxqueues Q]`
    pub fn create_veth(&mut self, spec: &VethSpec) -> Result<Option<Link>> {
        let queues = |attrs: &mut Vec<LinkAttribute>| {
            if let Some(q) = spec.queues {
                attrs.push(LinkAttribute::NumTxQueues(q));
                attrs.push(LinkAttribute::NumRxQueues(q));
            }
        };
        let mut peer = LinkMessage::default();
        peer.attributes = base_attrs(spec.peer_name, spec.mtu, spec.peer_mac);
        queues(&mut peer.attributes);
        // Transmit queue length 0 on both ends, as the reference's links
        // have (`ip link` shows no qlen): a veth has no qdisc to queue in.
        peer.attributes.push(LinkAttribute::TxQueueLen(0));
        if let Some(ns) = spec.peer_netns {
            // The fd must stay open until the ACK: `spec` borrows the NetNs.
            peer.attributes
                .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        let data = InfoData::Veth(InfoVeth::Peer(peer));
        let mut msg = new_link(spec.name, InfoKind::Veth, Some(data), spec.mtu, spec.mac);
        if spec.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .extend(spec.controller.map(LinkAttribute::Controller));
        queues(&mut msg.attributes);
        msg.attributes.push(LinkAttribute::TxQueueLen(0));
        let echoed = self
            .sock
            .request_as(
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
                link_of,
            )
            .map_err(|e| {
                let ns = spec
                    .peer_netns
                    .map(|ns| format!(" in netns {}", ns.path().display()))
                    .unwrap_or_default();
                e.context(self.describe(format!(
                    "create veth {:?} (peer {:?}{ns})",
                    spec.name, spec.peer_name
                )))
            })?;
        Ok(echoed.into_iter().find(|l| l.name == spec.name))
    }

    /// [`Netlink::create_veth`] with the host end named `veth<8 hex>` at
    /// random, as the reference names it (`spec.name` is not used): a name
    /// already taken on the host is replaced by another, up to 10 times.
    /// Returns the host end.
    ///
    /// Equivalent to: `ip link add veth<8hex> ... type veth peer name
    /// <peer_name> ...; ip link show veth<8hex>`
    pub fn create_veth_random(&mut self, spec: &VethSpec) -> Result<Link> {
        let mut attempt = 0;
        loop {
            let name = super::random_name("veth");
            match self.create_veth(&VethSpec {
                name: &name,
                ..*spec
            }) {
                Ok(Some(echoed)) => return Ok(echoed),
                Ok(None) => {
                    return self.link_by_name(&name)?.ok_or_else(|| {
                        Error::internal(format!("veth {name:?} vanished after creation"))
                    })
                }
                // A random name taken on the host: try another. (The peer's
                // name is the caller's to have checked free.)
                Err(e) if e.is_exists() && attempt < 10 && self.link_by_name(&name)?.is_some() => {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a bridge.
    ///
    /// Kernel quirk: bridge options (`vlan_filtering`, `mcast_snooping`...)
    /// take effect only in the creating RTM_NEWLINK (or an RTM_NEWLINK on the
    /// existing bridge); RTM_SETLINK accepts and silently ignores them.
    ///
    /// Equivalent to: `ip link add <name> [mtu M] [address A] type bridge
    /// [mcast_snooping 0] [vlan_filtering 1]`
    pub fn create_bridge(&mut self, spec: &BridgeSpec) -> Result<()> {
        let mut opts = Vec::new();
        if spec.no_snooping {
            opts.push(InfoBridge::MulticastSnooping(false));
        }
        if spec.vlan_filtering {
            opts.push(InfoBridge::VlanFiltering(true));
        }
        let data = (!opts.is_empty()).then_some(InfoData::Bridge(opts));
        let msg = new_link(spec.name, InfoKind::Bridge, data, spec.mtu, spec.mac);
        let vlan = if spec.vlan_filtering {
            " with vlan_filtering"
        } else {
            ""
        };
        self.create(msg, |_| format!("create bridge {:?}{vlan}", spec.name))
    }

    /// Creates a macvlan on `parent_index` (in this socket's namespace),
    /// directly in `netns` when given.
    ///
    /// Equivalent to: `ip link add <name> link <parent> [mtu M] [address A]
    /// [netns <ns>] type macvlan mode <mode>`
    pub fn create_macvlan(
        &mut self,
        name: &str,
        parent_index: u32,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        netns: Option<&NetNs>,
    ) -> Result<()> {
        let data = InfoData::MacVlan(vec![InfoMacVlan::Mode(mode.kernel())]);
        let mut msg = new_link(name, InfoKind::MacVlan, Some(data), mtu, mac);
        msg.attributes.push(LinkAttribute::Link(parent_index));
        // As the reference's macvlan (`ip link` shows no qlen).
        msg.attributes.push(LinkAttribute::TxQueueLen(0));
        if let Some(ns) = netns {
            // The parent is looked up in the socket's namespace, the new
            // device is registered in `ns`.
            msg.attributes
                .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        self.create(msg, |nl| {
            let ns = netns
                .map(|ns| format!(", in netns {}", ns.path().display()))
                .unwrap_or_default();
            let parent = nl.link_desc(parent_index);
            format!("create macvlan {name:?} (parent {parent}, mode {mode}{ns})")
        })
    }

    /// Creates a VXLAN device.
    ///
    /// Equivalent to: `ip link add <name> [mtu M] type vxlan id <vni> [dev <dev>]
    /// [local <ip>] [dstport <port>] [no]learning`
    pub fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let mut info = vec![InfoVxlan::Id(spec.vni)];
        if let Some(dev) = spec.dev_index {
            info.push(InfoVxlan::Link(dev));
        }
        match spec.local {
            Some(IpAddr::V4(ip)) => info.push(InfoVxlan::Local(ip)),
            Some(IpAddr::V6(ip)) => info.push(InfoVxlan::Local6(ip)),
            None => {}
        }
        if spec.port != 0 {
            info.push(InfoVxlan::Port(spec.port));
        }
        info.push(InfoVxlan::Learning(spec.learning));
        let msg = new_link(
            spec.name,
            InfoKind::Vxlan,
            Some(InfoData::Vxlan(info)),
            spec.mtu,
            None,
        );
        self.create(msg, |_| {
            format!("create vxlan {:?} (vni {})", spec.name, spec.vni)
        })
    }

    /// Sets bridge-port flags (`None` leaves a flag unchanged). The link
    /// must already be a bridge port (`EOPNOTSUPP` otherwise).
    ///
    /// Equivalent to: `bridge link set dev <index> [hairpin on|off] [isolated on|off]`
    pub fn set_bridge_port(
        &mut self,
        index: u32,
        hairpin: Option<bool>,
        isolated: Option<bool>,
    ) -> Result<()> {
        let port: Vec<_> = [
            (IFLA_BRPORT_MODE, hairpin),
            (IFLA_BRPORT_ISOLATED, isolated),
        ]
        .into_iter()
        .filter_map(|(kind, v)| {
            v.map(|v| LinkProtoInfoBridge::Other(DefaultNla::new(kind, vec![v.into()])))
        })
        .collect();
        if port.is_empty() {
            return Ok(());
        }
        // AF_BRIDGE routes the request to the bridge's ndo_bridge_setlink;
        // the port attributes must be nested (NLA_F_NESTED), as they are here:
        // a flat IFLA_PROTINFO would be read as a bare STP port state.
        let mut msg = link_msg(index);
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(port));
        self.set_link(index, msg, |l| {
            let flag = |name, v: Option<bool>| {
                v.map(|v| format!(" {name} {}", if v { "on" } else { "off" }))
                    .unwrap_or_default()
            };
            format!(
                "set bridge port {l}{}{}",
                flag("hairpin", hairpin),
                flag("isolated", isolated)
            )
        })
    }

    fn set_link(
        &mut self,
        index: u32,
        msg: LinkMessage,
        what: impl FnOnce(String) -> String,
    ) -> Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, |nl| {
            what(nl.link_desc(index))
        })
    }

    fn create<D: fmt::Display>(
        &mut self,
        msg: LinkMessage,
        what: impl FnOnce(&mut Self) -> D,
    ) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }
}

/// The link of an RTM_NEWLINK reply (see [`Link::parse`]).
fn link_of(nlmsg_type: u16, msg: &[u8]) -> Option<Link> {
    const RTM_NEWLINK: u16 = 16;
    (nlmsg_type == RTM_NEWLINK)
        .then(|| Link::parse(msg))
        .flatten()
}

fn link_msg(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

fn base_attrs(name: &str, mtu: Option<u32>, mac: Option<[u8; 6]>) -> Vec<LinkAttribute> {
    let mut attrs = vec![LinkAttribute::IfName(name.to_string())];
    attrs.extend(mtu.map(LinkAttribute::Mtu));
    attrs.extend(mac.map(|m| LinkAttribute::Address(m.to_vec())));
    attrs
}

fn new_link(
    name: &str,
    kind: InfoKind,
    data: Option<InfoData>,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes = base_attrs(name, mtu, mac);
    let mut info = vec![LinkInfo::Kind(kind)];
    info.extend(data.map(LinkInfo::Data));
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}
