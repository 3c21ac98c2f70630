//! Routes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{IpFamily, Netlink};
use crate::{Error, Result};

/// A route to add, replace or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Preferred source address (`src`).
    pub src: Option<IpAddr>,
    /// `RT_SCOPE_*`. Default when adding: link without a gateway but with an
    /// output interface, universe otherwise. When deleting: any.
    pub scope: Option<u8>,
    /// Default: main (254).
    pub table: Option<u32>,
    /// The metric.
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// `RTPROT_*`. Default when adding: boot. When deleting: any (set it
    /// to tell the kernel's own connected route, 2, from one IPAM added
    /// beside it).
    pub protocol: Option<u8>,
}

impl RouteSpec {
    /// A route to `dst` with everything else unset.
    pub fn new(dst: IpNetwork) -> RouteSpec {
        RouteSpec {
            dst,
            gw: None,
            oif: None,
            src: None,
            scope: None,
            table: None,
            priority: None,
            mtu: None,
            advmss: None,
            protocol: None,
        }
    }
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Preferred source address (`RTA_PREFSRC`).
    pub src: Option<IpAddr>,
    pub scope: u8,
    pub table: u32,
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// `RTPROT_*`: 2 kernel, 3 boot, 4 static...
    pub protocol: u8,
    /// `RTN_*`: 1 unicast, 2 local, 3 broadcast...
    pub kind: u8,
    /// The gateways of a multipath route (`RTA_MULTIPATH`; `gw` is then
    /// unset): IPv6 merges routes to one destination added beside each
    /// other into one such route.
    pub nexthops: Vec<IpAddr>,
}

/// The main routing table.
pub const RT_TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;
/// `RT_SCOPE_*`, of routes and addresses.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_HOST: u8 = 254;
/// `RTPROT_KERNEL`: a route the kernel made (an address's connected route).
pub const RTPROT_KERNEL: u8 = 2;
/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;

impl Netlink {
    /// The routes of every table, of one family or both. Cached (cloned)
    /// routes are left out.
    ///
    /// Equivalent to: `ip [-4|-6] route show table all`
    pub fn routes(&mut self, family: Option<IpFamily>) -> Result<Vec<Route>> {
        let mut routes = Vec::new();
        for &fam in IpFamily::select(family) {
            let mut msg = RouteMessage::default();
            msg.header.address_family = fam.af();
            let replies = self.dump(
                RouteNetlinkMessage::GetRoute(msg),
                format_args!("dump {fam:?} routes"),
            )?;
            routes.extend(replies.into_iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_msg(r),
                _ => None,
            }));
        }
        Ok(routes)
    }

    /// Adds a route; `EEXIST` if it exists.
    ///
    /// Equivalent to: `ip route add <dst> [via <gw>] [dev <oif>] [src <src>]
    /// [scope S] [table T] [metric P] [mtu M] [advmss A]`
    pub fn add_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(route_msg(spec, false));
        self.ack(msg, NLM_F_CREATE | NLM_F_EXCL, |_| {
            format!("add route {spec}")
        })
    }

    /// Adds a route beside those to the same destination with other next
    /// hops (`NLM_F_CREATE` without `NLM_F_EXCL`: IPv4 keeps both, IPv6
    /// makes gateway routes ECMP siblings), as the reference adds IPAM
    /// routes; `EEXIST` only for an identical route. A route to the
    /// interface's own subnet via its gateway, beside the kernel's
    /// connected route, is the common case.
    ///
    /// Equivalent to: `ip route prepend <dst> ...` (as [`Netlink::add_route`])
    pub fn add_route_beside(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(route_msg(spec, false));
        self.ack(msg, NLM_F_CREATE, |_| format!("add route {spec}"))
    }

    /// Adds a route through `spec.oif` that the caller owns: one to the same
    /// destination through that interface is replaced (it is the caller's
    /// too), and so is one elsewhere that `stale` says the caller may take
    /// over; any other (a host route, another network's container) is
    /// someone else's: an error naming it, and it stays.
    ///
    /// Equivalent to: `ip route add <dst> ...`; on EEXIST, `ip route show
    /// <dst>`, then `ip route replace <dst> ...` or nothing
    pub fn add_own_route(
        &mut self,
        spec: &RouteSpec,
        mut stale: impl FnMut(&mut Netlink, &Route) -> Result<bool>,
    ) -> Result<()> {
        match self.add_route(spec) {
            Err(e) if e.is_exists() => {}
            r => return r,
        }
        let table = spec.table.unwrap_or(RT_TABLE_MAIN);
        let mut other = None;
        for r in self.routes(Some(IpFamily::of(spec.dst.ip())))? {
            let same = r.dst == spec.dst && r.table == table && r.kind == RTN_UNICAST;
            if same && r.oif != spec.oif && !stale(self, &r)? {
                other = Some(r);
                break;
            }
        }
        let Some(r) = other else {
            return self.replace_route(spec);
        };
        let dev = match r.oif {
            Some(i) => self.link_by_index(i)?.map_or(format!("#{i}"), |l| l.name),
            None => "none".into(),
        };
        let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
        Err(Error::internal(format!(
            "a route to {} already exists{via} dev {dev}",
            spec.dst
        ))
        .with_details(
            "that address is routed elsewhere on this host: give the network a range no host route covers, or remove that route",
        ))
    }

    /// Adds a route or replaces the one with the same destination, table
    /// and metric.
    ///
    /// Equivalent to: `ip route replace <dst> ...` (as [`Netlink::add_route`])
    pub fn replace_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(route_msg(spec, false));
        self.ack(msg, NLM_F_CREATE | NLM_F_REPLACE, |_| {
            format!("replace route {spec}")
        })
    }

    /// Deletes the first route matching the given fields (unset ones match
    /// anything; `mtu` and `advmss` are ignored).
    ///
    /// Equivalent to: `ip route del <dst> [via <gw>] [dev <oif>] [table T] [metric P]`
    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = RouteNetlinkMessage::DelRoute(route_msg(spec, true));
        self.ack(msg, 0, |_| format!("delete route {spec}"))
    }
}

fn route_msg(spec: &RouteSpec, delete: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let table = spec.table.unwrap_or(RT_TABLE_MAIN);
    let h = &mut msg.header;
    h.address_family = IpFamily::of(spec.dst.ip()).af();
    h.destination_prefix_length = spec.dst.prefix();
    // Tables above 255 exist only as RTA_TABLE.
    h.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    if delete {
        // As `ip route del`: unspecified protocol and type match any route,
        // scope "nowhere" matches any scope (IPv4).
        h.scope = spec.scope.map_or(RouteScope::NoWhere, RouteScope::from);
        h.protocol = spec
            .protocol
            .map_or(RouteProtocol::Unspec, RouteProtocol::from);
    } else {
        h.protocol = spec
            .protocol
            .map_or(RouteProtocol::Boot, RouteProtocol::from);
        h.kind = RouteType::Unicast;
        h.scope = match spec.scope {
            Some(s) => RouteScope::from(s),
            None if spec.gw.is_none() && spec.oif.is_some() => RouteScope::Link,
            None => RouteScope::Universe,
        };
    }

    let attrs = &mut msg.attributes;
    if spec.dst.prefix() > 0 {
        // The kernel rejects host bits beyond the prefix (IPv4).
        attrs.push(RouteAttribute::Destination(spec.dst.network().into()));
    }
    attrs.push(RouteAttribute::Table(table));
    attrs.extend(spec.gw.map(|gw| RouteAttribute::Gateway(gw.into())));
    attrs.extend(spec.oif.map(RouteAttribute::Oif));
    attrs.extend(spec.src.map(|src| RouteAttribute::PrefSource(src.into())));
    attrs.extend(spec.priority.map(RouteAttribute::Priority));
    let metrics: Vec<_> = spec
        .mtu
        .map(RouteMetric::Mtu)
        .into_iter()
        .chain(spec.advmss.map(RouteMetric::Advmss))
        .collect();
    // IPv4 deletion would require the metrics to match too.
    if !delete && !metrics.is_empty() {
        attrs.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

impl Route {
    fn from_msg(msg: RouteMessage) -> Option<Route> {
        let h = msg.header;
        if h.flags.contains(RouteFlags::Cloned) {
            return None;
        }
        let unspecified: IpAddr = match h.address_family {
            AddressFamily::Inet => Ipv4Addr::UNSPECIFIED.into(),
            AddressFamily::Inet6 => Ipv6Addr::UNSPECIFIED.into(),
            _ => return None,
        };
        let mut dst = unspecified;
        let mut route = Route {
            dst: IpNetwork::new(unspecified, 0).ok()?,
            gw: None,
            oif: None,
            src: None,
            scope: h.scope.into(),
            table: h.table.into(),
            priority: None,
            mtu: None,
            advmss: None,
            protocol: h.protocol.into(),
            kind: h.kind.into(),
            nexthops: Vec::new(),
        };
        for attr in msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = ip(a)?,
                RouteAttribute::Gateway(a) => route.gw = ip(a),
                RouteAttribute::PrefSource(a) => route.src = ip(a),
                RouteAttribute::Oif(i) => route.oif = Some(i),
                RouteAttribute::Table(t) => route.table = t,
                RouteAttribute::Priority(p) => route.priority = Some(p),
                RouteAttribute::MultiPath(hops) => {
                    for hop in hops {
                        route.oif = route.oif.or(Some(hop.interface_index));
                        route
                            .nexthops
                            .extend(hop.attributes.into_iter().filter_map(|a| match a {
                                RouteAttribute::Gateway(g) => ip(g),
                                _ => None,
                            }));
                    }
                }
                RouteAttribute::Metrics(metrics) => {
                    for m in metrics {
                        match m {
                            RouteMetric::Mtu(v) => route.mtu = Some(v),
                            RouteMetric::Advmss(v) => route.advmss = Some(v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        route.dst = IpNetwork::new(dst, h.destination_prefix_length).ok()?;
        Some(route)
    }
}

fn ip(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(ip.into()),
        RouteAddress::Inet6(ip) => Some(ip.into()),
        _ => None,
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gw {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev {oif}")?;
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(table) = self.table {
            write!(f, " table {table}")?;
        }
        if let Some(p) = self.priority {
            write!(f, " metric {p}")?;
        }
        Ok(())
    }
}
