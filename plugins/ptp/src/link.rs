//! The veth pair of a ptp attachment, its addresses and routes on both
//! sides, and their checks.
//!
//! A veth cannot be `IFF_POINTOPOINT`, so, as the reference does, the
//! container gets its address with the IPAM prefix (`10.1.1.5/24`), the
//! connected route `10.1.1.0/24 dev eth0` is replaced by a link route to the
//! gateway alone (`10.1.1.1/32 dev eth0 scope link src 10.1.1.5`) and the
//! subnet via the gateway (`10.1.1.0/24 via 10.1.1.1 src 10.1.1.5`): every
//! packet goes to the host, which holds the gateway address on its end of
//! the veth (`10.1.1.1/32`) and a host route to the container
//! (`10.1.1.5/32 dev veth...`), and routes between containers.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nuage_core::netlink::{
    IpFamily, Link, MacAddr, Netlink, RouteSpec, VethSpec, RTPROT_KERNEL, RT_SCOPE_HOST,
    RT_SCOPE_LINK, RT_SCOPE_UNIVERSE,
};
use nuage_core::netns::NetNs;
use nuage_core::rollback::Undo;
use nuage_core::skel::CmdArgs;
use nuage_core::spec::CniResult;
use nuage_core::sysctl::{self, ConfDir};
use nuage_core::{ifconfig, Error, Result, ResultExt};

/// `ifname` must be free in the container (checked before any change).
pub fn check_free(ctr: &mut Netlink, ns: &NetNs, ifname: &str) -> Result<()> {
    if ctr.link_by_name(ifname)?.is_some() {
        return Err(
            Error::internal(format!("container veth name {ifname:?} already exists")).with_details(
                format!(
                    "netns {} already has {ifname}: DEL the old attachment first",
                    ns.path().display()
                ),
            ),
        );
    }
    Ok(())
}

/// The veth pair: the container end (`ifname`) is created directly in the
/// container namespace, the host end (`veth<8 hex>`) up; the host end gets
/// `accept_ra=0` and no DAD (its gateway addresses are the host's). Returns
/// (host end, container end).
///
/// Equivalent to: `ip link add veth<8hex> [mtu M] up numtxqueues 1
/// numrxqueues 1 type veth peer name <ifname> netns <ns> numtxqueues 1
/// numrxqueues 1; sysctl -w net.ipv6.conf.veth<8hex>.accept_ra=0
/// net.ipv6.conf.veth<8hex>.accept_dad=0`
pub fn create_veth(
    host: &mut Netlink,
    ctr: &mut Netlink,
    ns: &NetNs,
    mtu: Option<u32>,
    ifname: &str,
    undo: &mut Undo,
) -> Result<(Link, Link)> {
    let spec = VethSpec {
        peer_name: ifname,
        mtu,
        peer_netns: Some(ns),
        up: true,
        // One queue per end instead of one per CPU: see `VethSpec`.
        queues: Some(1),
        ..Default::default()
    };
    let hv = host.create_veth_random(&spec)?;
    let index = hv.index;
    // Deleting one end deletes both, and the routes through them.
    undo.push(format!("veth {}", hv.name), move || {
        Netlink::new()?
            .del_link(index)
            .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
    });
    // The host end is a router port: no router advertisements, set before
    // the container end comes up (until then nothing can reach the host end).
    if let Some(v6) = ConfDir::open(true)? {
        for key in ["accept_ra", "accept_dad"] {
            v6.write_best_effort(&hv.name, key, "0")?;
        }
    }
    // The container end comes up with its addresses (`configure_container`):
    // with IPv6, after `accept_dad=0`, so its link-local address is not
    // tentative for a second (the routes wait for every address).
    let cv = ctr.link_by_name(ifname)?.ok_or_else(|| {
        Error::internal(format!("container veth {ifname:?} vanished after creation"))
    })?;
    Ok((hv, cv))
}

/// The container side: addresses and IPAM routes (`ConfigureIface`), then
/// the connected routes replaced by routes through the gateway.
///
/// Equivalent to, per address: `ip addr add 10.1.1.5/24 dev eth0; ip route
/// del 10.1.1.0/24 dev eth0; ip route add 10.1.1.1/32 dev eth0 scope link
/// src 10.1.1.5; ip route add 10.1.1.0/24 via 10.1.1.1 dev eth0 src 10.1.1.5`
pub fn configure_container(
    ctr: &mut Netlink,
    ns: &NetNs,
    link: &Link,
    result: &CniResult,
) -> Result<()> {
    if result.ips.iter().any(|ip| ip.address.is_ipv6()) {
        // No DAD on a link whose only other end is the host: a tentative
        // address could not be a route's `src` yet, and would delay ADD.
        sysctl::conf_in(ns, true, |v6| {
            v6.write_best_effort(&link.name, "accept_dad", "0")
        })?;
    }
    ifconfig::configure_link(ctr, ns, link, result, false)?;
    if result.ips.iter().any(|ip| ip.address.is_ipv6()) {
        let own: Vec<_> = result.ips.iter().map(|ip| ip.address.ip()).collect();
        ctr.wait_not_tentative(link.index, &link.name, &own)?;
    }
    // The (subnet, gateway) routes this loop added: a later address of the
    // same subnet with another gateway replaces them (the last one wins,
    // as with the reference).
    let mut ours: Vec<(IpNetwork, IpAddr)> = Vec::new();
    for ip in &result.ips {
        let gw = gateway(ip.address, ip.gateway)?;
        let (addr, subnet) = (ip.address.ip(), network_of(ip.address));
        // The kernel's own (proto kernel, scope link), not a route IPAM
        // added beside it to the same subnet via the gateway.
        let connected = RouteSpec {
            oif: Some(link.index),
            scope: Some(RT_SCOPE_LINK),
            protocol: Some(RTPROT_KERNEL),
            ..RouteSpec::new(subnet)
        };
        ignore(ctr.del_route(&connected), Error::is_not_found)
            .context("ptp: delete the connected route")?;
        let to_gw = RouteSpec {
            oif: Some(link.index),
            scope: Some(RT_SCOPE_LINK),
            src: Some(addr),
            ..RouteSpec::new(IpNetwork::from(gw))
        };
        let via_gw = RouteSpec {
            gw: Some(gw),
            oif: Some(link.index),
            scope: Some(RT_SCOPE_UNIVERSE),
            src: Some(addr),
            ..RouteSpec::new(subnet)
        };
        // Two addresses of one family with one gateway share these routes.
        ignore(ctr.add_route(&to_gw), Error::is_exists).context("ptp")?;
        match ctr.add_route(&via_gw) {
            Err(e) if e.is_exists() => {
                // Ours, or IPAM's to the subnet via the same gateway: fine.
                // Via another gateway (which ptp cannot reach: the host
                // end answers only for the gateway) the containers of the
                // network could not reach each other.
                // (IPv6 merges such routes into one with several next hops.)
                let other = ctr
                    .routes(Some(IpFamily::of(addr)))?
                    .into_iter()
                    .filter(|r| r.dst == subnet && r.oif == Some(link.index))
                    .flat_map(|r| r.gw.into_iter().chain(r.nexthops))
                    .find(|g| *g != gw);
                match other {
                    None => {}
                    Some(g) if ours.contains(&(subnet, g)) => {
                        ctr.replace_route(&via_gw).context("ptp")?;
                        ours.push((subnet, gw));
                    }
                    Some(other) => {
                        return Err(Error::config(format!(
                            "ptp: an IPAM route to the container's subnet {subnet} via {other} conflicts with ptp's own, via the gateway {gw}"
                        ))
                        .with_details("remove that route from the IPAM config: ptp routes the subnet via the gateway itself"));
                    }
                }
            }
            // Only a route ptp added is its to replace: one that was
            // there already is IPAM's, which the result promises.
            r => {
                r.context("ptp")?;
                ours.push((subnet, gw));
            }
        }
    }
    Ok(())
}

/// The host side: the gateway address on the host end, and a route to each
/// container address through it. Another host route to that address is
/// taken over only if it is a ptp host route (scope host, through a veth):
/// a deleted container's, whose veth outlives the DEL while the kernel
/// tears its namespace down. Any other (an administrator's route) is an
/// error, and stays.
///
/// Equivalent to, per address: `ip addr add 10.1.1.1/32 dev veth<8hex>;
/// ip route add 10.1.1.5/32 dev veth<8hex> scope host`
pub fn configure_host(host: &mut Netlink, hv: &Link, result: &CniResult) -> Result<()> {
    for ip in &result.ips {
        let gw = gateway(ip.address, ip.gateway)?;
        ignore(
            host.add_addr(hv.index, IpNetwork::from(gw)),
            Error::is_exists,
        )
        .with_context(|| format!("failed to add IP addr {gw} to veth"))?;
        // Scope host, as the reference's `AddHostRoute`.
        let to_ctr = RouteSpec {
            oif: Some(hv.index),
            scope: Some(RT_SCOPE_HOST),
            ..RouteSpec::new(IpNetwork::from(ip.address.ip()))
        };
        host.add_own_route(&to_ctr, |host, r| {
            // A ptp host end: no gateway, scope host (the kernel reports
            // every IPv6 route with scope universe), a veth holding this
            // network's gateway address, as every ptp host end does.
            let ptp_like = r.gw.is_none() && (r.dst.is_ipv6() || r.scope == RT_SCOPE_HOST);
            let Some(oif) = r.oif.filter(|_| ptp_like) else {
                return Ok(false);
            };
            let veth = host
                .link_by_index(oif)?
                .is_some_and(|l| l.kind.as_deref() == Some("veth"));
            Ok(veth && host.addrs(Some(oif))?.iter().any(|a| a.address.ip() == gw))
        })
        .context("failed to add route on host")?;
    }
    Ok(())
}

/// The gateway of an address: ptp cannot work without one.
pub fn gateway(address: IpNetwork, gw: Option<IpAddr>) -> Result<IpAddr> {
    gw.ok_or_else(|| {
        Error::internal(format!("IPAM gave {address} without a gateway: ptp routes everything through it"))
            .with_details("set \"gateway\" in the IPAM config (host-local defaults it to the subnet's first address)")
    })
}

/// CHECK: the container end is a veth with the recorded MAC in the recorded
/// sandbox; the host end exists, holds the gateways and routes to the
/// container; the addresses and routes of `prev` are in place.
pub fn check(
    host: &mut Netlink,
    ctr: &mut Netlink,
    ns: &NetNs,
    a: &CmdArgs,
    prev: &CniResult,
) -> Result<()> {
    let netns = a.netns.as_deref().unwrap_or("");
    let iface = prev.container_interface(&a.ifname, netns)?;
    let cv = ctr.link_by_name(&a.ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "ptp: Container Interface name in prevResult: {} not found",
            a.ifname
        ))
    })?;
    if cv.kind.as_deref() != Some("veth") {
        return Err(Error::internal(format!(
            "Error: Container interface {} not of type veth/p2p",
            a.ifname
        )));
    }
    let mac = cv.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&mac) {
        return Err(Error::internal(format!(
            "ptp: Interface {} Mac {} doesn't match container Mac: {mac}",
            a.ifname, iface.mac
        )));
    }
    ifconfig::check_iface(ctr, ns, &a.ifname, prev)?;

    let Some(host_name) = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty())
        .map(|i| i.name.as_str())
    else {
        return Ok(());
    };
    let hv = host.link_by_name(host_name)?.ok_or_else(|| {
        Error::internal(format!(
            "ptp: host veth {host_name} (of {}) not found",
            a.ifname
        ))
    })?;
    let addrs = host.addrs(Some(hv.index))?;
    let routes = host.routes(None)?;
    for ip in &prev.ips {
        let Some(gw) = ip.gateway else { continue };
        if !addrs.iter().any(|x| x.address.ip() == gw) {
            return Err(Error::internal(format!(
                "ptp: gateway {gw} is missing on host veth {host_name}"
            )));
        }
        let dst = IpNetwork::from(ip.address.ip());
        if !routes
            .iter()
            .any(|r| r.dst == dst && r.oif == Some(hv.index))
        {
            return Err(Error::internal(format!(
                "ptp: host route to {dst} via {host_name} is missing"
            )));
        }
    }
    Ok(())
}

/// `10.1.1.0/24` of `10.1.1.5/24`.
pub fn network_of(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

fn ignore(r: Result<()>, benign: fn(&Error) -> bool) -> Result<()> {
    match r {
        Err(e) if benign(&e) => Ok(()),
        r => r,
    }
}
