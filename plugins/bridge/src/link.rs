//! The links of a bridge network: the bridge, the veth pairs, the gateway
//! addresses, and their checks.

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use ipnetwork::IpNetwork;
use nuage_core::netlink::{self, BridgeSpec, IpFamily, Ipv4Conf, Link, MacAddr, Netlink, VethSpec};
use nuage_core::netns::NetNs;
use nuage_core::rollback::Undo;
use nuage_core::skel::CmdArgs;
use nuage_core::spec::CniResult;
use nuage_core::sysctl::{self, ConfDir};
use nuage_core::sysfs;
use nuage_core::{log, Error, Result, ResultExt};
use sha2::{Digest, Sha256};

use crate::config::Conf;

/// Validation before any change: the container name is free, and the
/// bridge name is free or a bridge. Returns the bridge if it exists.
pub fn check_free(
    host: &mut Netlink,
    ctr: &mut Netlink,
    conf: &Conf,
    ifname: &str,
    ns: &NetNs,
) -> Result<Option<Link>> {
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
    existing_bridge(host, &conf.br.br_name)
}

/// The bridge `name` if it exists; an error if the name is another kind
/// of link (ADD, and STATUS, which reports it as not ready).
pub fn existing_bridge(host: &mut Netlink, name: &str) -> Result<Option<Link>> {
    match host.link_by_name(name)? {
        Some(l) if l.kind.as_deref() != Some("bridge") => Err(Error::internal(format!(
            "{name:?} already exists but is not a bridge"
        ))
        .with_details(format!(
            "{name} is a {} link: choose another \"bridge\" name in the network config",
            l.kind.as_deref().unwrap_or("physical")
        ))),
        existing => Ok(existing),
    }
}

/// `vlan`/`vlanTrunk` need bridge VLAN filtering: probe for it with a
/// throwaway bridge (created and deleted at once).
pub fn require_vlan_filtering(host: &mut Netlink, bridge: &str) -> Result<()> {
    let probe = netlink::random_name("nuvlan");
    let spec = BridgeSpec {
        name: &probe,
        vlan_filtering: true,
        ..Default::default()
    };
    match host.create_bridge(&spec) {
        Ok(()) => {
            if let Some(l) = host.link_by_name(&probe)? {
                host.del_link(l.index)?;
            }
            Err(Error::unsupported(format!(
                "bridge {bridge:?}: vlan and vlanTrunk are not supported by nuage yet"
            ))
            .with_details("remove \"vlan\"/\"vlanTrunk\" from the network config"))
        }
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Err(Error::unsupported(format!(
            "bridge {bridge:?}: this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), needed by \"vlan\"/\"vlanTrunk\""
        ))
        .with_details("remove \"vlan\"/\"vlanTrunk\" from the network config, or use a kernel with bridge VLAN filtering")),
        Err(e) => Err(e.context("probe bridge VLAN filtering")),
    }
}

/// A MAC for a bridge we create: stable for this machine and bridge name,
/// locally administered, so the bridge never takes (and changes to) the
/// lowest MAC of its ports (the kernel's default, which breaks ARP caches).
fn bridge_mac(name: &str) -> [u8; 6] {
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let h = Sha256::digest(format!("nuage-bridge/{}/{name}", machine.trim()));
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// Whether `br` has the MAC [`ensure_bridge`] gives the bridges it creates:
/// set explicitly, the kernel never changes it as ports come and go.
pub fn has_pinned_mac(br: &Link) -> bool {
    br.mac == Some(bridge_mac(&br.name))
}

/// The bridge (`existing`, or created when missing and deleted again if the
/// ADD fails), promiscuous if asked, `accept_ra=0`, up. A bridge we create
/// has a pinned MAC and multicast snooping off (its cost is O(ports) per
/// container; see `BridgeSpec::no_snooping`).
///
/// Equivalent to: `ip link add <br> address <stable mac> [mtu M] type bridge
/// mcast_snooping 0; ip link set <br> up`
pub fn ensure_bridge(
    host: &mut Netlink,
    conf: &Conf,
    existing: Option<Link>,
    v6: Option<&ConfDir>,
    undo: &mut Undo,
) -> Result<Link> {
    let name = conf.br.br_name.as_str();
    let mtu = (conf.br.mtu != 0).then_some(conf.br.mtu);
    let br = match existing {
        Some(mut l) => {
            if !has_pinned_mac(&l) {
                pin_mac(host, &mut l);
            }
            l
        }
        None => {
            let spec = BridgeSpec {
                name,
                mtu,
                mac: Some(bridge_mac(name)),
                no_snooping: true,
                ..Default::default()
            };
            match host.create_bridge(&spec) {
                Ok(()) => {
                    log::info(format_args!("created bridge {name}"));
                    let owned = name.to_string();
                    undo.push(format!("bridge {name}"), move || del_unused_bridge(&owned));
                }
                // Another ADD created it meanwhile.
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(e),
            }
            host.link_by_name(name)?.ok_or_else(|| {
                Error::internal(format!("bridge {name:?} vanished after creation"))
            })?
        }
    };
    if conf.br.promisc_mode && !br.promisc {
        host.set_promisc(br.index, true)?;
    }
    // No router advertisements on host-side links (CVE-2020-10749); the
    // write is skipped when the bridge already says 0.
    if let Some(v6) = v6.filter(|_| br.ipv6_accept_ra != Some(0)) {
        v6.write_best_effort(name, "accept_ra", "0")?;
    }
    if !br.flags_up {
        host.set_up(br.index)?;
    }
    Ok(br)
}

/// Pins the MAC of a bridge nuage did not create (the reference's, an
/// administrator's) where it is, so that it stops changing as containers
/// come and go; a zero MAC becomes the one of the bridges we create.
/// Best effort: a failure is logged and the ADD goes on.
///
/// Kernel quirk: a bridge whose MAC the kernel assigned takes the lowest MAC
/// of its ports whenever one joins or leaves, and 00:00:00:00:00:00 when the
/// last one leaves; setting it, even to the value it has, marks it as the
/// user's (`addr_assign_type` 3), which the bridge then keeps. Done once:
/// sysfs tells whether it is already set (netlink does not say).
///
/// Equivalent to: `ip link set <br> address <its MAC, or the stable one>`
fn pin_mac(host: &mut Netlink, br: &mut Link) {
    let Some(kind) = sysfs::addr_assign_type(&br.name, br.index) else {
        log::debug(format_args!(
            "bridge {}: /sys does not show this namespace's links, its MAC is left as is",
            br.name
        ));
        return;
    };
    if kind == sysfs::NET_ADDR_SET {
        return;
    }
    // One pinner at a time, deciding on what it reads under the lock: an
    // ADD that read the bridge before another pinned it must not set the
    // MAC it read, which the other's containers no longer know.
    let _pinning = match nuage_core::flock::lock(&lock_path(&format!("{}.pin", br.name)), true) {
        Ok(l) => l,
        Err(e) => {
            log::warn(format_args!("bridge {}: MAC left as is: {e}", br.name));
            return;
        }
    };
    if let Ok(Some(now)) = host.link_by_index(br.index) {
        br.mac = now.mac;
    }
    if sysfs::addr_assign_type(&br.name, br.index) == Some(sysfs::NET_ADDR_SET) {
        return;
    }
    // Its own MAC, which containers may have in their ARP caches. Unless
    // zero (the kernel zeroes it when the last port leaves) or the bridge
    // has no port: no container knows its MAC then, and pinning a portless
    // bridge's own MAC hits a kernel quirk: the bridge id stays unset (only
    // a MAC change sets it), and the bridge's operstate UNKNOWN for good.
    let has_ports = host.ports_of(br.index).map_or(true, |p| !p.is_empty());
    let mac = match br.mac {
        Some(m) if m != [0; 6] && has_ports => m,
        _ => bridge_mac(&br.name),
    };
    match host.set_mac(br.index, mac) {
        Ok(()) => {
            log::info(format_args!(
                "pinned the MAC of bridge {} at {}: the kernel would change it as ports come and go",
                br.name,
                MacAddr(mac)
            ));
            br.mac = Some(mac);
        }
        Err(e) => log::warn(format_args!("pin the MAC of bridge {}: {e}", br.name)),
    }
}

fn del_by_name(name: &str) -> Result<()> {
    Netlink::new()?.del_link_named(name).map(drop)
}

/// The lock that keeps a rollback from deleting a bridge a port is
/// joining: ADDs hold it shared from finding (or creating) the bridge until
/// their veth is a port of it; a rollback holds it exclusive from listing
/// the bridge's ports to deleting it. One file per bridge name, for the
/// whole machine (namespaces with bridges of the same name only share the
/// wait).
///
/// `None` where the lock file can be neither created nor opened (a
/// read-only `/run`): the ADD or rollback goes ahead, with a warning, as
/// the reference's (which takes no such lock) does.
///
/// Equivalent to: `flock [-s] /run/nuage/bridge/<name>.lock`
pub fn lock_bridge(name: &str, exclusive: bool) -> Result<Option<nuage_core::flock::Lock>> {
    nuage_core::flock::lock_or_warn(
        &lock_path(name),
        exclusive,
        &format!("the ADD (or its rollback) on bridge {name}"),
    )
}

fn lock_path(name: &str) -> std::path::PathBuf {
    Path::new("/run/nuage/bridge").join(format!("{name}.lock"))
}

/// Rollback of a bridge this ADD created: deleted unless another ADD has
/// attached a port to it meanwhile (our own veth is already gone).
fn del_unused_bridge(name: &str) -> Result<()> {
    let _alone = lock_bridge(name, true)?;
    let mut nl = Netlink::new()?;
    let Some(br) = nl.link_by_name(name)? else {
        return Ok(());
    };
    if !nl.ports_of(br.index)?.is_empty() {
        log::info(format_args!(
            "bridge {name} kept: another container joined it"
        ));
        return Ok(());
    }
    nl.del_link(br.index)
}

/// The veth pair, in one request: the container end (`ifname`, with the
/// requested MAC and MTU, down) created directly in the container
/// namespace, the host end (`veth<8 hex>`) down and a port of the bridge;
/// then the host end gets `accept_ra=0`, IPv6 off, comes up, and gets the
/// port flags. Returns the host end; [`container_up`] brings the container
/// end up.
pub fn create_veth(
    host: &mut Netlink,
    ns: &NetNs,
    conf: &Conf,
    br: &Link,
    ifname: &str,
    v6: Option<&ConfDir>,
    undo: &mut Undo,
) -> Result<Link> {
    let spec = VethSpec {
        peer_name: ifname,
        mtu: (conf.br.mtu != 0).then_some(conf.br.mtu),
        peer_mac: conf.mac,
        peer_netns: Some(ns),
        // Down until `disable_ipv6` is written (below).
        up: false,
        controller: Some(br.index),
        // One queue per end instead of one per CPU: see `VethSpec`.
        queues: Some(1),
        ..Default::default()
    };
    let mut hv = host.create_veth_random(&spec).map_err(|e| {
        if e.errno() == Some(libc::EXFULL) {
            Error::internal(format!(
                "bridge {:?} is full: the kernel allows 1023 ports per bridge",
                br.name
            ))
            .with_details("spread containers over several bridge networks")
        } else {
            e
        }
    })?;
    let owned = hv.name.clone();
    undo.push(format!("veth {owned}"), move || del_by_name(&owned));
    hv.controller = Some(br.index);
    // Before the container end comes up (no carrier until then, so no IPv6
    // on the port yet): no router advertisements (CVE-2020-10749), and no
    // IPv6 at all on the port. A bridge port's own addresses are never
    // reached (the bridge takes every frame), and each port's link-local
    // and multicast routes sit in one FIB node shared by all ports: adding
    // them walks the siblings and the FIB, O(ports) per container.
    //
    // Kernel quirk: the `disable_ipv6` handler only try-locks RTNL and,
    // while another holds it, restarts the write(2) at once: a busy loop.
    // A veth that is up when it joins the bridge queues an urgent
    // linkwatch event, whose kworker takes RTNL right then, often on our
    // CPU, which the loop keeps from it: up to 2 ms here, 10-25 % of the
    // median ADD. A link that is down queues no urgent event, so the host
    // end comes up only after the write (one more request, ~30 us).
    if let Some(v6) = v6 {
        v6.write_best_effort(&hv.name, "accept_ra", "0")?;
        v6.write_best_effort(&hv.name, "disable_ipv6", "1")?;
    }
    host.set_up(hv.index)?;
    hv.flags_up = true;
    if conf.br.hairpin_mode || conf.br.port_isolation {
        host.set_bridge_port(
            hv.index,
            Some(conf.br.hairpin_mode),
            Some(conf.br.port_isolation),
        )?;
    }
    Ok(hv)
}

/// The container end of the veth, up (unless `disableContainerInterface`),
/// with `arp_notify` when there is IPAM (L3). With `v4_only` (in-process
/// IPAM gave IPv4 addresses only) and `"ipv6LinkLocal": false`, it comes up
/// without an IPv6 link-local address. A container's link-local address
/// makes it send multicast (DAD probe, router solicitations, MLD reports)
/// that the bridge floods to every port: O(ports) per new container,
/// O(ports^2) in all. With 1000 ports on one bridge that flooding is most
/// of the cost of a new container; without it, ADD stays nearly flat.
///
/// Equivalent to: `ip -n <ns> link set <ifname> [addrgenmode none] up`
pub fn container_up(ctr: &mut Netlink, conf: &Conf, ifname: &str, v4_only: bool) -> Result<Link> {
    let cv = if conf.br.disable_container_interface {
        ctr.link_by_name(ifname)?
    } else {
        let arp_notify: &[_] = if conf.ipam {
            &[(Ipv4Conf::ArpNotify, 1)]
        } else {
            &[]
        };
        let no_link_local = v4_only && !conf.br.ipv6_link_local;
        ctr.set_up_named(ifname, arp_notify, no_link_local)?
    };
    cv.ok_or_else(|| Error::internal(format!("container veth {ifname:?} vanished after creation")))
}

/// The container's DAD settings. With `enabledad`: DAD on, enhanced
/// (`accept_dad=1`, `enhanced_dad=1`). Without: the IPAM addresses are added
/// with `nodad` by ADD, and `accept_dad=0` is written only with
/// `hairpinMode`, where the bridge reflects the container's own DAD probes
/// back to it and every address it configures would fail DAD.
///
/// The reference writes `accept_dad=0` in every case. We do not, because
/// the write costs O(network namespaces on the machine) (see
/// `nuage_core::sysctl`): a fresh namespace's first `/proc/sys/net` lookup
/// compares the dentries of every other namespace (~0.5 ms with 400).
///
/// Equivalent to: `sysctl -w net.ipv6.conf.<ifname>.accept_dad=0` in the
/// container (with `hairpinMode`)
pub fn container_sysctls(ns: &NetNs, ifname: &str, enable_dad: bool, hairpin: bool) -> Result<()> {
    if !enable_dad && !hairpin {
        return Ok(());
    }
    sysctl::conf_in(ns, true, |v6| {
        if enable_dad {
            v6.write_best_effort(ifname, "accept_dad", "1")?;
            v6.write_best_effort(ifname, "enhanced_dad", "1")
        } else {
            v6.write_best_effort(ifname, "accept_dad", "0")
        }
    })
    .map(drop)
}

/// The gateway addresses on the bridge. An IPv4 bridge already holding
/// another address (or an IPv6 one in an overlapping subnet) is an error,
/// unless `forceAddress`, which replaces it.
///
/// Equivalent to: `ip addr add <gw>/<prefix> dev <br>`
pub fn ensure_gateway_addrs(
    host: &mut Netlink,
    br: &Link,
    gws: &[IpNetwork],
    force: bool,
) -> Result<()> {
    for gw in gws {
        let existing = host.addrs_of(Some(br.index), IpFamily::of(gw.ip()))?;
        if existing.iter().any(|a| a.address == *gw) {
            continue;
        }
        // Before anything changes (forceAddress removes the bridge's old
        // address below): the gateway must not be an address the host
        // already has elsewhere. A subnet chosen by the runtime (the `ips`
        // capability) could otherwise put the LAN router's address on the
        // bridge.
        if let Some(a) = host
            .addrs_of(None, IpFamily::of(gw.ip()))?
            .into_iter()
            .find(|a| a.address.ip() == gw.ip() && a.index != br.index)
        {
            let dev = host
                .link_by_index(a.index)?
                .map_or(format!("#{}", a.index), |l| l.name);
            return Err(Error::internal(format!(
                "gateway {} is already an address of {dev} on this host",
                gw.ip()
            ))
            .with_details(format!(
                "the network's subnet {}/{} overlaps a host network: give the network another subnet",
                gw.network(),
                gw.prefix()
            )));
        }
        for a in existing
            .iter()
            .filter(|a| a.address.is_ipv4() == gw.is_ipv4())
        {
            let clash = if gw.is_ipv4() {
                true
            } else {
                // Link-local addresses never clash.
                !a.address.ip().to_string().starts_with("fe80")
                    && (a.address.contains(gw.ip()) || gw.contains(a.address.ip()))
            };
            if !clash {
                continue;
            }
            if !force {
                return Err(Error::internal(format!(
                    "{:?} already has an IP address different from {gw}",
                    br.name
                ))
                .with_details(format!(
                    "{} has {}: set \"forceAddress\": true to replace it, or use another bridge",
                    br.name, a.address
                )));
            }
            host.del_addr(br.index, a.address)?;
        }
        match host.add_addr(br.index, *gw) {
            // A concurrent ADD on the same bridge added it since the dump
            // (EEXIST is the same address and prefix).
            Err(e) if e.is_exists() => {}
            r => r.with_context(|| format!("gateway on {}", br.name))?,
        }
    }
    Ok(())
}

/// Waits until the host end is operationally up (both ends up), as the
/// reference does before answering.
pub fn wait_port_up(host: &mut Netlink, name: &str, index: u32) -> Result<()> {
    for ms in [0, 5, 20, 50, 100, 250, 500, 1000, 1000] {
        sleep(Duration::from_millis(ms));
        match host.link_by_index(index)? {
            Some(l) if l.oper_up => return Ok(()),
            Some(_) => {}
            None => return Err(Error::internal(format!("bridge port {name:?} disappeared"))),
        }
    }
    Err(Error::internal(format!(
        "bridge port in error state: {name} is not up"
    )))
}

/// CHECK of the links: the bridge (a bridge, MAC and promisc as recorded),
/// the container end (a veth with the recorded MAC), the host end (its
/// peer, a port of the bridge). Returns the host end's name and the
/// container MAC.
pub fn check_links(
    host: &mut Netlink,
    ctr: &mut Netlink,
    conf: &Conf,
    a: &CmdArgs,
    prev: &CniResult,
) -> Result<(String, [u8; 6])> {
    let name = &conf.br.br_name;
    let br = host
        .link_by_name(name)?
        .ok_or_else(|| Error::internal(format!("bridge {name:?} not found")))?;
    if br.kind.as_deref() != Some("bridge") {
        return Err(Error::internal(format!("{name:?} is not a bridge")));
    }
    let recorded = |n: &str| prev.interfaces.iter().find(|i| i.name == n);
    if let Some(i) = recorded(name) {
        let mac = br.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
        if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&mac) {
            return Err(Error::internal(format!(
                "bridge {name} MAC is {mac}, the result says {}",
                i.mac
            )));
        }
    }
    if br.promisc != conf.br.promisc_mode {
        return Err(Error::internal(format!(
            "bridge {name} promiscuous mode is {}, the config says {}",
            br.promisc, conf.br.promisc_mode
        )));
    }
    let cv = ctr
        .link_by_name(&a.ifname)?
        .ok_or_else(|| Error::internal(format!("container interface {:?} not found", a.ifname)))?;
    if cv.kind.as_deref() != Some("veth") {
        return Err(Error::internal(format!(
            "container interface {} is not a veth",
            a.ifname
        )));
    }
    if let Some(i) = recorded(&a.ifname).filter(|i| !i.sandbox.is_empty()) {
        let mac = cv.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
        if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&mac) {
            return Err(Error::internal(format!(
                "container interface {} MAC is {mac}, the result says {}",
                a.ifname, i.mac
            )));
        }
        if i.sandbox != a.netns.clone().unwrap_or_default() {
            return Err(Error::internal(format!(
                "container interface {} sandbox is {}, not CNI_NETNS",
                a.ifname, i.sandbox
            )));
        }
    }
    let peer = cv
        .link
        .and_then(|idx| host.link_by_index(idx).ok().flatten())
        .ok_or_else(|| Error::internal(format!("the host end of {} is gone", a.ifname)))?;
    if peer.controller != Some(br.index) {
        return Err(Error::internal(format!(
            "{} (host end of {}) is not a port of {name}",
            peer.name, a.ifname
        )));
    }
    check_recorded_host_end(host, prev, name, &a.ifname, &peer)?;
    Ok((peer.name, cv.mac.unwrap_or_default()))
}

/// As the reference: the host-side interfaces the result records (no
/// sandbox, neither the bridge nor the container's), in order up to
/// `peer`, the host end of the container's veth, must exist under their
/// names, and `peer` must be among them with the recorded MAC. So a host
/// end renamed, or given another MAC, fails CHECK.
fn check_recorded_host_end(
    host: &mut Netlink,
    prev: &CniResult,
    bridge: &str,
    ifname: &str,
    peer: &Link,
) -> Result<()> {
    for i in prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty() && i.name != bridge && i.name != ifname)
    {
        let Some(l) = host.link_by_name(&i.name)? else {
            return Err(Error::internal(format!(
                "host interface {} (in prevResult) not found",
                i.name
            ))
            .with_details(format!("the host end of {ifname} is now {}", peer.name)));
        };
        if l.index != peer.index {
            continue;
        }
        let mac = l.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
        if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&mac) {
            return Err(Error::internal(format!(
                "host interface {} MAC is {mac}, the result says {}",
                i.name, i.mac
            )));
        }
        return Ok(());
    }
    Err(Error::internal(format!(
        "prevResult does not record {}, the host end of {ifname}",
        peer.name
    )))
}
