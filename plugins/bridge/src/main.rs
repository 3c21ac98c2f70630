//! `bridge`: containers on a Linux bridge through veth pairs.
//!
//! ADD: ensure the bridge, create the veth with its peer directly in the
//! container, attach the host end, allocate addresses (in-process IPAM),
//! configure the container, put the gateway on the bridge, masquerade
//! (nftables). Every step is undone if a later one fails.
//! DEL: release the addresses, delete the veth, remove our nftables
//! entries; each step runs even if another failed, and none needs the netns.

mod config;
mod link;

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nuage_core::netlink::{MacAddr, Netlink};
use nuage_core::rollback::Undo;
use nuage_core::skel::{self, CmdArgs, Plugin};
use nuage_core::spec::{CniResult, Interface, Route};
use nuage_core::{ifconfig, log, nft, sysctl, Error, Errors, Result, ResultExt};

use config::Conf;

struct Bridge;

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = Conf::load(a)?;
        a.conf.require_ipam_for_old_result()?;
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        let mut undo = Undo::new();
        // Held shared from the bridge's lookup until our veth is its port,
        // so that no rollback deletes the bridge in between. Declared after
        // `undo`, it is released before any rollback runs (which may need
        // it exclusive).
        let joining = link::lock_bridge(&conf.br.br_name, false)?;
        let existing = link::check_free(&mut host, &mut ctr, &conf, &a.ifname, &ns)?;
        if conf.wants_vlan() {
            link::require_vlan_filtering(&mut host, &conf.br.br_name)?;
        }

        // In-process IPAM (host-local, static) first: an exhausted range
        // fails before any link exists, and the container interface can
        // come up knowing its address families. An IPAM plugin run from
        // CNI_PATH (dhcp...) runs once the interface is up, as with the
        // reference.
        let mut ipam = None;
        if conf.ipam && nuage_ipam::in_process(a) {
            ipam = Some(run_ipam(a, &mut undo)?);
        }
        // The host's IPv6 per-interface sysctls (None: IPv6 disabled).
        let v6 = sysctl::ConfDir::open(true)?;
        let br = link::ensure_bridge(&mut host, &conf, existing, v6.as_ref(), &mut undo)?;
        let host_veth = link::create_veth(
            &mut host,
            &ns,
            &conf,
            &br,
            &a.ifname,
            v6.as_ref(),
            &mut undo,
        )?;
        drop(joining);
        if conf.ipam {
            link::container_sysctls(&ns, &a.ifname, conf.br.enable_dad, conf.br.hairpin_mode)?;
        }
        let v4_only = ipam
            .as_ref()
            .is_some_and(|r| r.ips.iter().all(|ip| ip.address.is_ipv4()));
        let ctr_veth = link::container_up(&mut ctr, &conf, &a.ifname, v4_only)?;
        if conf.ipam && ipam.is_none() {
            ipam = Some(run_ipam(a, &mut undo)?);
        }
        let mut result = CniResult {
            cni_version: a.conf.cni_version.clone(),
            interfaces: vec![
                iface(&br.name, br.mac, ""),
                iface(&host_veth.name, host_veth.mac, ""),
                iface(&a.ifname, ctr_veth.mac, a.netns.as_deref().unwrap_or("")),
            ],
            ..Default::default()
        };
        if let Some(ipam) = ipam {
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            result.dns = ipam.dns;
            gateways(&conf, &mut result);
            ifconfig::configure_link(&mut ctr, &ns, &ctr_veth, &result, !conf.br.enable_dad)?;
            if conf.br.is_gateway {
                let gws: Vec<IpNetwork> = result
                    .ips
                    .iter()
                    .filter_map(|ip| IpNetwork::new(ip.gateway?, ip.address.prefix()).ok())
                    .collect();
                link::ensure_gateway_addrs(&mut host, &br, &gws, conf.br.force_address)?;
                sysctl::enable_forwarding(&mut host, &gws)?;
            }
        }
        // As the reference, the bridge's MAC once our port (and gateway) is
        // on it: the kernel may have changed it (to its lowest port's)
        // unless it was set explicitly, as we do for the bridges we create.
        if !link::has_pinned_mac(&br) {
            if let Some(b) = host.link_by_index(br.index)? {
                result.interfaces[0].mac = mac_string(b.mac);
            }
        }
        // Masquerade and spoof check in one nftables transaction.
        let subnets: Vec<IpNetwork> = result.ips.iter().map(|ip| network_of(ip.address)).collect();
        let ips: Vec<IpAddr> = result.ips.iter().map(|ip| ip.address.ip()).collect();
        let mac = ctr_veth.mac.unwrap_or_default();
        let rules = nft::AttachmentRules {
            network: &a.conf.name,
            att: &a.attachment(),
            masq: (conf.br.ip_masq && conf.ipam).then_some((&subnets[..], &ips[..])),
            spoofchk: conf.br.macspoofchk.then_some((&host_veth.name[..], mac)),
        };
        if rules.masq.is_some() || rules.spoofchk.is_some() {
            nft::add(&rules)?;
            let (net, port, masq, spoof) = (
                a.conf.name.as_str(),
                host_veth.name.clone(),
                rules.masq.is_some(),
                rules.spoofchk.is_some(),
            );
            undo.push("netfilter rules", move || {
                let mut errs = Errors::new();
                if masq {
                    errs.collect(nft::masq::del(net, &ips));
                }
                if spoof {
                    errs.collect(nft::spoofchk::del(&port, Some(mac)));
                }
                errs.into_result()
            });
        }
        if !conf.br.disable_container_interface {
            link::wait_port_up(&mut host, &host_veth.name, host_veth.index)?;
        }
        if let Some(dns) = a.conf.dns.as_ref().filter(|d| !d.is_empty()) {
            result.dns = dns.clone();
        }
        undo.commit();
        Ok(result)
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let att = a.attachment();
        let net = a.conf.name.as_str();
        let prev = a.prev_result().ok().flatten();
        let mut errs = Errors::new();
        // What the container had: its addresses and the host end of its
        // veth, from the netns while it exists, else from prevResult.
        let mut ips: Vec<IpAddr> = prev
            .iter()
            .flat_map(|p| p.ips.iter().map(|ip| ip.address.ip()))
            .collect();
        // The spoof-check pair registered at ADD: the host port, and the MAC
        // of the result (the container may have changed its MAC since).
        let mut macs: Vec<MacAddr> = prev
            .as_ref()
            .and_then(|p| p.interfaces.get(2)?.mac.parse().ok())
            .into_iter()
            .collect();
        let mut port = prev
            .as_ref()
            .and_then(|p| Some(p.interfaces.get(1)?.name.clone()));
        // The port was found alive (the container's veth still there): its
        // elements should be there too, unless under another name or MAC.
        let mut live_port = false;
        // The container's addresses could not be read: its masquerade
        // elements are then also looked up by comment.
        let mut addrs_unknown = false;
        if let Some(ns) = errs.collect(a.open_netns_for_del()).flatten() {
            errs.collect(Netlink::in_netns(&ns).and_then(|mut ctr| {
                // Only our veth is ours to read and delete.
                let Some(l) = ctr.own_link_named(&a.ifname, "veth")? else {
                    return Ok(());
                };
                // Read only what the firewall cleanup below needs; a failed
                // read does not keep the veth from being deleted.
                if conf.br.ip_masq {
                    match ctr.addrs(Some(l.index)) {
                        Ok(have) => ips.extend(nft::masq::masqueradable(&have)),
                        Err(e) => {
                            log::warn(format_args!("DEL: read the addresses of {}: {e}", a.ifname));
                            addrs_unknown = true;
                        }
                    }
                }
                let peer = match l.link.filter(|_| conf.br.macspoofchk) {
                    Some(i) => Netlink::new()
                        .ok()
                        .and_then(|mut h| h.link_by_index(i).ok().flatten()),
                    None => None,
                };
                if let Some(peer) = peer {
                    port = Some(peer.name);
                    live_port = true;
                    // And the current MAC: without prevResult it is the
                    // only one known (a pair left by a MAC change is removed
                    // by GC).
                    macs.extend(l.mac.map(MacAddr).filter(|m| !macs.contains(m)));
                }
                // Deleting the container end deletes the host end with it.
                ctr.del_link(l.index)
                    .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
            }));
        }
        ips.sort();
        ips.dedup();
        // Firewall entries go before the addresses return to IPAM: a
        // released address may be handed to a new container at once. What
        // is known goes in one transaction; what is not is found by the
        // element comments (a listing).
        let masq_ips: &[IpAddr] = if conf.br.ip_masq { &ips } else { &[] };
        let macs: Vec<[u8; 6]> = macs.iter().map(|m| m.0).collect();
        let spoof = port
            .as_deref()
            .filter(|_| conf.br.macspoofchk && !macs.is_empty())
            .map(|p| (p, &macs[..]));
        // A spoof-check element of the port this DEL was given that is
        // another's, or absent while the port is alive (renamed) or while
        // others are there (the MAC changed): this attachment's own are
        // found by comment. All absent from a dead port is a repeated DEL.
        let mut foreign = false;
        if !masq_ips.is_empty() || spoof.is_some() {
            let found = errs
                .collect(nft::del(net, &att, masq_ips, spoof))
                .unwrap_or_default();
            foreign =
                found.foreign || (found.absent > 0 && (live_port || found.absent < found.looked));
        }
        if conf.br.ip_masq && (ips.is_empty() || addrs_unknown) {
            errs.collect(nft::masq::del_attachment(net, &att));
        }
        if conf.br.macspoofchk && (spoof.is_none() || foreign) {
            errs.collect(nft::spoofchk::del_attachment(net, &att));
        }
        if conf.ipam {
            errs.collect(nuage_ipam::del(a).context("release addresses"));
        }
        errs.into_result()
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        if conf.ipam {
            nuage_ipam::check(a)?;
        }
        let prev = a
            .prev_result()?
            .ok_or_else(|| Error::internal("Required prevResult missing"))?;
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        let (port, mac) = link::check_links(&mut host, &mut ctr, &conf, a, &prev)?;
        ifconfig::check_iface(&mut ctr, &ns, &a.ifname, &prev)?;
        let att = a.attachment();
        let net = a.conf.name.as_str();
        if conf.br.macspoofchk {
            nft::spoofchk::check(net, &port, mac, &att)?;
        }
        if conf.br.ip_masq && conf.ipam {
            let subnets: Vec<IpNetwork> =
                prev.ips.iter().map(|ip| network_of(ip.address)).collect();
            let ips: Vec<IpAddr> = prev.ips.iter().map(|ip| ip.address.ip()).collect();
            nft::masq::check(net, &subnets, &ips, &att)?;
        }
        Ok(())
    }

    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let Some(valid) = a.conf.valid_attachments.as_deref() else {
            return Ok(());
        };
        let net = a.conf.name.as_str();
        let mut errs = Errors::new();
        if conf.br.ip_masq {
            errs.collect(nft::masq::gc(net, valid));
        }
        if conf.br.macspoofchk {
            errs.collect(nft::spoofchk::gc(net, valid));
        }
        if conf.ipam {
            errs.collect(nuage_ipam::gc(a));
        }
        errs.into_result()
    }

    /// Not ready (50): a config ADD refuses, the bridge name taken by
    /// another kind of link, `vlan` without bridge VLAN filtering, nftables
    /// missing for `ipMasq`/`macspoofchk`, IPAM not ready. A missing bridge
    /// is fine: ADD creates it.
    fn status(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let mut host = Netlink::new()?;
        link::existing_bridge(&mut host, &conf.br.br_name)?;
        if conf.wants_vlan() {
            link::require_vlan_filtering(&mut host, &conf.br.br_name)?;
        }
        if conf.br.ip_masq || conf.br.macspoofchk {
            nft::status()?;
        }
        if conf.ipam {
            nuage_ipam::status(a)?;
        }
        Ok(())
    }
}

/// IPAM ADD, its lease released by `undo` if the ADD fails later.
fn run_ipam<'a>(a: &'a CmdArgs, undo: &mut Undo<'a>) -> Result<CniResult> {
    let r = nuage_ipam::add(a)?;
    undo.push("IPAM lease", || nuage_ipam::del(a));
    if r.ips.is_empty() {
        return Err(Error::internal("IPAM plugin returned missing IP config"));
    }
    Ok(r)
}

fn mac_string(mac: Option<[u8; 6]>) -> String {
    mac.map(|m| MacAddr(m).to_string()).unwrap_or_default()
}

fn iface(name: &str, mac: Option<[u8; 6]>, sandbox: &str) -> Interface {
    Interface {
        name: name.to_string(),
        mac: mac_string(mac),
        sandbox: sandbox.to_string(),
        ..Default::default()
    }
}

fn network_of(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

/// Every address is on the container interface (index 2); with
/// `isGateway` a missing gateway is the subnet's first address; with
/// `isDefaultGateway` a default route per family, unless IPAM gave one.
fn gateways(conf: &Conf, result: &mut CniResult) {
    for i in 0..result.ips.len() {
        let ip = &mut result.ips[i];
        ip.interface = Some(2);
        if ip.gateway.is_none() && conf.br.is_gateway {
            ip.gateway = first_host(ip.address);
        }
        let (v4, gw) = (ip.address.is_ipv4(), ip.gateway);
        if conf.br.is_default_gateway {
            let default: IpNetwork = if v4 { "0.0.0.0/0" } else { "::/0" }
                .parse()
                .expect("literal");
            let found = result
                .routes
                .iter()
                .any(|r| r.dst == default && r.gw.is_some());
            if !found {
                result.routes.push(Route::new(default, gw));
            }
        }
    }
}

fn first_host(n: IpNetwork) -> Option<IpAddr> {
    match n.network() {
        IpAddr::V4(a) => Some(IpAddr::V4((u32::from(a) + 1).into())),
        IpAddr::V6(a) => Some(IpAddr::V6((u128::from(a) + 1).into())),
    }
}

/// A bump allocator: this process lives for one CNI operation (see
/// `nuage_core::alloc`).
#[global_allocator]
static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();

fn main() {
    skel::run(&Bridge)
}
