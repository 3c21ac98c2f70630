//! The container's macvlan: creation, and its CHECK.

use nuage_core::netlink::{self, Ipv4Conf, Link, MacAddr, Netlink};
use nuage_core::netns::NetNs;
use nuage_core::skel::CmdArgs;
use nuage_core::spec::CniResult;
use nuage_core::sysctl;
use nuage_core::{Error, Result, ResultExt};

use crate::config::Conf;

/// Everything on the container's side before IPAM, in one visit of its
/// namespace (each visit is a thread: on VMs, handing work to an idle vCPU
/// is a noticeable part of an ADD). Returns a socket on the container's
/// namespace, the master and the new macvlan, which is deleted again if a
/// step fails.
///
/// The macvlan is created on the master directly in the container's
/// namespace, so a host link called `ifname` cannot collide with it.
/// Kernel quirk: older kernels looked the new name up in the *requesting*
/// namespace and answered `EEXIST` when the host had a link of that name
/// (vishvananda/netlink#27, the reason the reference always creates under
/// a temporary name); current ones (tested: 6.18) look in the target
/// namespace. So on `EEXIST` the macvlan is created under a temporary name
/// and renamed; otherwise not, as a rename costs an RCU grace period.
///
/// With IPAM it gets `arp_notify` (gratuitous ARP when it comes up and
/// when addresses change, so the segment learns the new MAC), over netlink;
/// `ndisc_notify`, its IPv6 counterpart, has no netlink setter and is set
/// by [`ndisc_notify`] when there are IPv6 addresses.
///
/// Equivalent to: `ip link add <ifname> link <master> [mtu M] [address A]
/// netns <ns> type macvlan mode <mode> [bcqueuelen N]; ip netns exec <ns>
/// sysctl net.ipv4.conf.<ifname>.arp_notify=1`
pub fn setup(
    host: &mut Netlink,
    ns: &NetNs,
    conf: &Conf,
    ifname: &str,
) -> Result<(Netlink, Link, Link)> {
    ns.run(|| {
        let mut ctr = Netlink::new()?;
        if ctr.link_by_name(ifname)?.is_some() {
            return Err(Error::internal(format!(
                "container interface name {ifname:?} already exists"
            ))
            .with_details(format!(
                "netns {} already has {ifname}: DEL the old attachment first",
                ns.path().display()
            )));
        }
        let master = conf.master(if conf.link_in_container {
            &mut ctr
        } else {
            host
        })?;
        let target = (!conf.link_in_container).then_some(ns);
        let mut create = |name: &str, ctr: &mut Netlink| {
            let parent = if conf.link_in_container {
                ctr
            } else {
                &mut *host
            };
            parent.create_macvlan(name, master.index, conf.mode, conf.mtu(), conf.mac, target)
        };
        let mut name = ifname.to_string();
        let mut attempt = 0;
        loop {
            match create(&name, &mut ctr) {
                Ok(()) => break,
                // A name taken on the host (old kernels), or a random one taken.
                Err(e) if e.is_exists() && attempt < 5 && ctr.link_by_name(&name)?.is_none() => {
                    attempt += 1;
                    name = netlink::random_name("mvtmp");
                }
                Err(e) => return Err(explain_create(e, conf, &master)),
            }
        }
        let link = ctr
            .link_by_name(&name)?
            .ok_or_else(|| Error::internal(format!("macvlan {name:?} vanished after creation")))?;
        let finish = |ctr: &mut Netlink| -> Result<Link> {
            if let Some(len) = conf.bcqueuelen {
                ctr.set_macvlan_bcqueuelen(link.index, len)?;
            }
            if conf.ipam {
                // Per-interface settings keep their values across a rename.
                ctr.set_ipv4_conf(link.index, &[(Ipv4Conf::ArpNotify, 1)])?;
            }
            if name == ifname {
                return Ok(link.clone());
            }
            ctr.set_name(link.index, ifname)
                .with_context(|| format!("failed to rename macvlan to {ifname:?}"))?;
            ctr.link_by_index(link.index)?
                .ok_or_else(|| Error::internal(format!("macvlan {ifname:?} vanished")))
        };
        match finish(&mut ctr) {
            Ok(mv) => Ok((ctr, master, mv)),
            Err(e) => {
                let _ = ctr.del_link(link.index);
                Err(e)
            }
        }
    })?
}

/// `ndisc_notify=1` on the container's macvlan (unsolicited neighbour
/// advertisements when it comes up or its IPv6 addresses change), best
/// effort as the reference. Only for IPv6 results: the write walks
/// `/proc/sys/net`, whose cost grows with the number of namespaces on the
/// machine (see `nuage_core::sysctl`), and the setting only concerns IPv6
/// addresses (the reference writes it for every result).
///
/// Equivalent to: `ip netns exec <ns> sysctl -w net.ipv6.conf.<ifname>.ndisc_notify=1`
pub fn ndisc_notify(ns: &NetNs, ifname: &str) {
    let _ = sysctl::conf_in(ns, true, |v6| v6.write(ifname, "ndisc_notify", "1"));
}

/// Deletes link `index` of `ns`, if it is still there.
pub fn delete(ns: &NetNs, index: u32) -> Result<()> {
    match Netlink::in_netns(ns)?.del_link(index) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The kernel refuses to bring up a macvlan whose MAC a sibling on the
/// same master already has (EADDRINUSE at UP, not at creation).
pub fn explain_up(e: Error, conf: &Conf, master: &Link) -> Error {
    match e.errno() {
        Some(libc::EADDRINUSE) => match duplicate_mac(conf, master) {
            Some(h) => e.with_details(h),
            None => e,
        },
        _ => e,
    }
}

fn duplicate_mac(conf: &Conf, master: &Link) -> Option<String> {
    conf.mac.map(|mac| {
        format!(
            "another macvlan on {} already has MAC {}: give each container its own",
            master.name,
            MacAddr(mac)
        )
    })
}

/// The kernel's errors, with what to do about them.
fn explain_create(e: Error, conf: &Conf, master: &Link) -> Error {
    let hint = match e.errno() {
        Some(libc::EADDRINUSE) | Some(libc::EEXIST) if conf.mac.is_some() => {
            duplicate_mac(conf, master)
        }
        Some(libc::EINVAL) | Some(libc::EBUSY)
            if conf.mode == nuage_core::netlink::MacvlanMode::Passthru =>
        {
            Some(format!(
            "mode passthru allows a single macvlan on {}, and not next to macvlans of other modes",
            master.name
        ))
        }
        Some(libc::EINVAL) => Some(format!(
            "{} must be an Ethernet device that is not itself a macvlan in another mode",
            master.name
        )),
        _ => None,
    };
    let e = e.context("failed to create macvlan");
    match hint {
        Some(h) => e.with_details(h),
        None => e,
    }
}

/// CHECK of the link: `prevResult` names `ifname` in this sandbox, and it is
/// a macvlan in the configured mode with the recorded MAC.
pub fn check(ctr: &mut Netlink, conf: &Conf, a: &CmdArgs, prev: &CniResult) -> Result<()> {
    let netns = a.netns.as_deref().unwrap_or("");
    let iface = prev
        .interfaces
        .iter()
        .find(|i| i.name == a.ifname && i.sandbox == netns)
        .ok_or_else(|| {
            let sandbox = prev
                .interfaces
                .iter()
                .find(|i| i.name == a.ifname)
                .map(|i| i.sandbox.as_str());
            Error::internal(format!(
                "sandbox in prevResult {} doesn't match configured netns: {netns}",
                sandbox.unwrap_or("")
            ))
        })?;
    let link = ctr.link_by_name(&a.ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "container Interface name in prevResult: {} not found",
            a.ifname
        ))
    })?;
    if link.kind.as_deref() != Some("macvlan") {
        return Err(Error::internal(format!(
            "error: Container interface {} not of type macvlan",
            a.ifname
        )));
    }
    if link.macvlan_mode != Some(conf.mode.as_u32()) {
        return Err(Error::internal(format!(
            "container macvlan mode {} does not match expected value: {}",
            mode_name(link.macvlan_mode),
            conf.mode
        )));
    }
    let mac = link.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&mac) {
        return Err(Error::internal(format!(
            "interface {} Mac {} doesn't match container Mac: {mac}",
            a.ifname, iface.mac
        )));
    }
    Ok(())
}

fn mode_name(mode: Option<u32>) -> String {
    use nuage_core::netlink::MacvlanMode::*;
    [Private, Vepa, Bridge, Passthru]
        .into_iter()
        .find(|m| Some(m.as_u32()) == mode)
        .map_or_else(|| format!("{mode:?}"), |m| m.to_string())
}
