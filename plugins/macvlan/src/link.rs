//! The container's macvlan: creation, and its CHECK.

use std::io::Read;

use nuage_core::netlink::{Link, MacAddr, Netlink};
use nuage_core::netns::NetNs;
use nuage_core::rollback::Undo;
use nuage_core::skel::CmdArgs;
use nuage_core::spec::CniResult;
use nuage_core::{sysctl, Error, Result, ResultExt};

use crate::config::Conf;
use crate::rtnl;

/// `ifname` must be free in the container (checked before any change).
pub fn check_free(ctr: &mut Netlink, ns: &NetNs, ifname: &str) -> Result<()> {
    if ctr.link_by_name(ifname)?.is_some() {
        return Err(Error::internal(format!(
            "container interface name {ifname:?} already exists"
        ))
        .with_details(format!(
            "netns {} already has {ifname}: DEL the old attachment first",
            ns.path().display()
        )));
    }
    Ok(())
}

/// Creates the macvlan on `master` directly in the container namespace
/// under a temporary name, then renames it `ifname`: it is never visible
/// on the host, so a host link called `ifname` cannot collide with it.
///
/// `parent` is the socket of the master's namespace (the host's, or the
/// container's with `linkInContainer`).
///
/// Equivalent to: `ip link add mvtmp<8hex> link <master> [mtu M] [address A]
/// netns <ns> type macvlan mode <mode> [bcqueuelen N]; ip -n <ns> link set
/// mvtmp<8hex> name <ifname>`
pub fn create<'a>(
    parent: &mut Netlink,
    ctr: &mut Netlink,
    ns: &'a NetNs,
    conf: &Conf,
    master: &Link,
    ifname: &str,
    undo: &mut Undo<'a>,
) -> Result<Link> {
    let target = (!conf.link_in_container).then_some(ns);
    let mut attempt = 0;
    let tmp = loop {
        let tmp = format!("mvtmp{:08x}", random_u32());
        match parent.create_macvlan(&tmp, master.index, conf.mode, conf.mtu(), conf.mac, target) {
            Ok(()) => break tmp,
            Err(e) if e.is_exists() && attempt < 5 && ctr.link_by_name(&tmp)?.is_some() => {
                attempt += 1
            }
            Err(e) => return Err(explain_create(e, conf, master)),
        }
    };
    let link = ctr
        .link_by_name(&tmp)?
        .ok_or_else(|| Error::internal(format!("macvlan {tmp:?} vanished after creation")))?;
    let index = link.index;
    undo.push(format!("macvlan {ifname}"), move || {
        Netlink::in_netns(ns)?.del_link(index).or_else(|e| {
            if e.is_not_found() {
                Ok(())
            } else {
                Err(e)
            }
        })
    });
    if let Some(len) = conf.bcqueuelen {
        ns.run(|| rtnl::set_bcqueuelen(index, len))??;
    }
    ctr.set_name(index, ifname)
        .with_context(|| format!("failed to rename macvlan to {ifname:?}"))?;
    ctr.link_by_index(index)?
        .ok_or_else(|| Error::internal(format!("macvlan {ifname:?} vanished after rename")))
}

/// The kernel's errors, with what to do about them.
fn explain_create(e: Error, conf: &Conf, master: &Link) -> Error {
    let hint = match e.errno() {
        Some(libc::EADDRINUSE) | Some(libc::EEXIST) if conf.mac.is_some() => Some(format!(
            "another macvlan on {} already has MAC {}: give each container its own",
            master.name,
            MacAddr(conf.mac.unwrap_or_default())
        )),
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

/// Gratuitous ARP and unsolicited neighbour advertisements when the
/// addresses change, so the segment's switches and hosts learn the new MAC.
/// Best effort, as in the reference (IPv6 may be off).
pub fn notify_sysctls(ns: &NetNs, ifname: &str) -> Result<()> {
    ns.run(|| {
        let _ = sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
        let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
    })
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

pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos() ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}
