//! Applying an IPAM result to a container interface (the reference's
//! `pkg/ipam.ConfigureIface`): its addresses, the link up, its routes.

use std::net::IpAddr;
use std::time::Duration;

use crate::netlink::{Link, Netlink, RouteSpec};
use crate::netns::NetNs;
use crate::spec::CniResult;
use crate::{sysctl, Error, Result, ResultExt};

/// Configures `ifname` (in the namespace of `nl`, which is `ns`) with the
/// addresses of `res` that name it through their `interface` index, sets
/// it up, and adds every route of `res` through it (a route without `gw`
/// goes via the interface's gateway of the same family, when there is one).
pub fn configure_iface(nl: &mut Netlink, ns: &NetNs, ifname: &str, res: &CniResult) -> Result<()> {
    let link = nl.link_by_name(ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "interface {ifname:?} not found in netns {}",
            ns.path().display()
        ))
    })?;
    configure_link(nl, ns, &link, res, false)
}

/// [`configure_iface`] of a link already looked up (`link.name` is the
/// interface); a link already up is not set up again. With `nodad`, IPv6
/// addresses skip duplicate address detection (usable at once).
pub fn configure_link(
    nl: &mut Netlink,
    ns: &NetNs,
    link: &Link,
    res: &CniResult,
    nodad: bool,
) -> Result<()> {
    let ifname = link.name.as_str();
    let mut ips = Vec::new();
    for ip in &res.ips {
        let Some(i) = ip.interface else { continue };
        let iface = res.interfaces.get(i).ok_or_else(|| {
            Error::internal(format!(
                "address {} names interface {i}, but the result has {}",
                ip.address,
                res.interfaces.len()
            ))
        })?;
        if iface.name == ifname {
            ips.push(ip);
        }
    }
    if ips.iter().any(|ip| ip.address.is_ipv6()) {
        // Kernel rule: a link with an MTU below 1280 has no IPv6 at all (its
        // /proc/sys/net/ipv6/conf entry is gone).
        if link.mtu < 1280 {
            return Err(Error::config(format!(
                "{ifname} has MTU {}, below 1280, the IPv6 minimum: it cannot take the IPv6 address(es) {}",
                link.mtu,
                ips.iter()
                    .filter(|ip| ip.address.is_ipv6())
                    .map(|ip| ip.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_details("raise \"mtu\" to 1280 or more, or remove the IPv6 range"));
        }
        // IPv6 may be disabled in a fresh namespace; addresses on a link
        // that goes down must stay (keep_addr_on_down).
        // Written only where needed (a read-only /proc/sys then works).
        sysctl::conf_in(ns, true, |conf| {
            conf.ensure(ifname, "disable_ipv6", "0")?;
            conf.ensure("lo", "disable_ipv6", "0")?;
            conf.write_best_effort(ifname, "keep_addr_on_down", "1")
        })
        .context("enable IPv6")?
        .ok_or_else(|| {
            Error::internal(format!(
                "enable IPv6: IPv6 is disabled on this kernel (ipv6.disable=1) (in netns {})",
                ns.path().display()
            ))
        })?;
    }
    for ip in &ips {
        nl.add_addr_with(link.index, ip.address, nodad)
            .with_context(|| format!("configure {ifname}"))?;
    }
    if !link.flags_up {
        nl.set_up(link.index)?;
    }
    // As the reference: with an IPv6 gateway, the addresses are usable (DAD
    // done) when ADD returns; a workload that binds at once would fail on
    // a tentative one. (With `nodad` there is nothing to wait for.)
    if !nodad && ips.iter().any(|ip| ip.gateway.is_some_and(|g| g.is_ipv6())) {
        let own: Vec<_> = ips.iter().map(|ip| ip.address.ip()).collect();
        nl.settle_ipv6(link.index, ifname, &own, Duration::from_secs(10))?;
    }
    let gw = |v4: bool| {
        ips.iter()
            .filter_map(|ip| ip.gateway)
            .find(|g| g.is_ipv4() == v4)
    };
    for r in &res.routes {
        let via: Option<IpAddr> = r.gw.or_else(|| gw(r.dst.is_ipv4()));
        // As the reference: scope universe unless the route gives one,
        // even without a gateway (`ip route` would pick link).
        let spec = RouteSpec {
            gw: via,
            oif: Some(link.index),
            priority: r.priority,
            table: r.table,
            scope: r.scope.or(Some(crate::netlink::RT_SCOPE_UNIVERSE)),
            mtu: r.mtu,
            advmss: r.advmss,
            ..RouteSpec::new(r.dst)
        };
        nl.add_route_beside(&spec).with_context(|| {
            format!(
                "add route {}{} dev {ifname}",
                r.dst,
                via.map(|g| format!(" via {g}")).unwrap_or_default()
            )
        })?;
    }
    Ok(())
}

/// CHECK of what [`configure_iface`] did: each address of `res` naming
/// `ifname` is on it, and each route of `res` exists (routes may have been
/// changed by later plugins only by adding, so extra routes are fine).
pub fn check_iface(nl: &mut Netlink, ns: &NetNs, ifname: &str, res: &CniResult) -> Result<()> {
    let link = nl.link_by_name(ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "interface {ifname:?} not found in netns {}",
            ns.path().display()
        ))
    })?;
    let have = nl.addrs(Some(link.index))?;
    for ip in &res.ips {
        let named = ip
            .interface
            .and_then(|i| res.interfaces.get(i))
            .is_some_and(|i| i.name == ifname);
        if named && !have.iter().any(|a| a.address == ip.address) {
            return Err(Error::internal(format!(
                "address {} is missing on {ifname} in netns {}",
                ip.address,
                ns.path().display()
            )));
        }
    }
    let routes = nl.routes(None)?;
    for r in &res.routes {
        // The kernel masks a `dst` given with host bits; IPv6 makes routes
        // added beside each other one multipath route.
        let found = routes.iter().any(|k| {
            k.dst.prefix() == r.dst.prefix()
                && k.dst.network() == r.dst.network()
                && (r.gw.is_none() || k.gw == r.gw || r.gw.is_some_and(|g| k.nexthops.contains(&g)))
                && r.table.is_none_or(|t| k.table == t)
        });
        if !found {
            return Err(Error::internal(format!(
                "route to {}{} is missing in netns {}",
                r.dst,
                r.gw.map(|g| format!(" via {g}")).unwrap_or_default(),
                ns.path().display()
            )));
        }
    }
    Ok(())
}
