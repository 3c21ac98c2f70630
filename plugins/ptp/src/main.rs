//! `ptp`: one veth pair per container, routed (not bridged) by the host.
//!
//! ADD: validate, allocate addresses (in-process IPAM), enable forwarding,
//! create the veth with its peer directly in the container, route the
//! container through the host end and the host to the container,
//! masquerade (nftables). Every step is undone if a later one fails.
//! DEL: stop masquerading, release the addresses, delete the veth; each step
//! runs even if another failed, and none needs the netns.

mod config;
mod link;

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nuage_core::netlink::{MacAddr, Netlink};
use nuage_core::nft;
use nuage_core::rollback::Undo;
use nuage_core::skel::{self, CmdArgs, Plugin};
use nuage_core::spec::{CniResult, Interface};
use nuage_core::{sysctl, Error, Errors, Result, ResultExt};

use config::Conf;

struct Ptp;

impl Plugin for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = Conf::load(a)?;
        conf.require_ipam()?;
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        link::check_free(&mut ctr, &ns, &a.ifname)?;

        let mut undo = Undo::new();
        let ipam = nuage_ipam::add(a)?;
        undo.push("IPAM lease", || nuage_ipam::del(a));
        if ipam.ips.is_empty() {
            return Err(Error::internal("IPAM plugin returned missing IP config"));
        }
        for ip in &ipam.ips {
            link::gateway(ip.address, ip.gateway)?;
        }
        let addrs: Vec<_> = ipam.ips.iter().map(|ip| ip.address).collect();
        sysctl::enable_forwarding(&mut host, &addrs).context("Could not enable IP forwarding")?;

        let (hv, cv) = link::create_veth(&mut host, &mut ctr, &ns, conf.mtu, &a.ifname, &mut undo)?;
        let mac = |m: Option<[u8; 6]>| m.map(|m| MacAddr(m).to_string()).unwrap_or_default();
        let mut result = CniResult {
            cni_version: a.conf.cni_version.clone(),
            interfaces: vec![
                Interface {
                    name: hv.name.clone(),
                    mac: mac(hv.mac),
                    ..Default::default()
                },
                Interface {
                    name: a.ifname.clone(),
                    mac: mac(cv.mac),
                    sandbox: a.netns.clone().unwrap_or_default(),
                    ..Default::default()
                },
            ],
            ips: ipam.ips,
            routes: ipam.routes,
            dns: ipam.dns,
        };
        for ip in &mut result.ips {
            ip.interface = Some(1);
        }
        link::configure_container(&mut ctr, &ns, &cv, &result)?;
        link::configure_host(&mut host, &hv, &result)?;
        if conf.ip_masq {
            let subnets: Vec<IpNetwork> = result
                .ips
                .iter()
                .map(|ip| link::network_of(ip.address))
                .collect();
            let ips: Vec<IpAddr> = result.ips.iter().map(|ip| ip.address.ip()).collect();
            nft::masq::add(&a.conf.name, &subnets, &ips, &a.attachment())?;
            undo.push("masquerade", move || nft::masq::del(&a.conf.name, &ips));
        }
        // Only a `dns` given to ptp replaces IPAM's.
        if let Some(dns) = a.conf.dns.as_ref().filter(|d| !d.is_empty()) {
            result.dns = dns.clone();
        }
        undo.commit();
        Ok(result)
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let mut errs = Errors::new();
        let ns = errs.collect(a.open_netns_for_del()).flatten();
        // Before the addresses go back to IPAM (another container could get
        // them): the elements of the addresses this DEL knows (prevResult,
        // the container's), each only if it is this attachment's; with none
        // known, those found by comment in a listing.
        if conf.ip_masq {
            let mut ips: Vec<IpAddr> = a
                .prev_result()
                .ok()
                .flatten()
                .iter()
                .flat_map(|p| p.ips.iter().map(|ip| ip.address.ip()))
                .collect();
            if let Some(ns) = &ns {
                let held = Netlink::in_netns(ns).and_then(|mut ctr| {
                    match ctr.link_by_name(&a.ifname)? {
                        Some(l) => ctr.addrs(Some(l.index)),
                        None => Ok(Vec::new()),
                    }
                });
                ips.extend(nft::masq::masqueradable(
                    &errs.collect(held).unwrap_or_default(),
                ));
            }
            errs.collect(nft::masq::del_for(&a.conf.name, &a.attachment(), &ips));
        }
        if conf.ipam {
            errs.collect(nuage_ipam::del(a).context("release addresses"));
        }
        if let Some(ns) = ns {
            // Deleting the container end deletes the host end, its gateway
            // addresses and the host routes through it.
            errs.collect(
                Netlink::in_netns(&ns)
                    .and_then(|mut ctr| ctr.del_own_link_named(&a.ifname, "veth")),
            );
        }
        errs.into_result()
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        conf.require_ipam()?;
        let ns = a.open_netns()?;
        nuage_ipam::check(a)?;
        let prev = a
            .prev_result()?
            .ok_or_else(|| Error::internal("ptp: Required prevResult missing"))?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        link::check(&mut host, &mut ctr, &ns, a, &prev)?;
        if conf.ip_masq {
            let subnets: Vec<IpNetwork> = prev
                .ips
                .iter()
                .map(|ip| link::network_of(ip.address))
                .collect();
            let ips: Vec<IpAddr> = prev.ips.iter().map(|ip| ip.address.ip()).collect();
            nft::masq::check(&a.conf.name, &subnets, &ips, &a.attachment())?;
        }
        Ok(())
    }

    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let Some(valid) = a.conf.valid_attachments.as_deref() else {
            return Ok(());
        };
        let mut errs = Errors::new();
        if conf.ipam {
            errs.collect(nuage_ipam::gc(a));
        }
        if conf.ip_masq {
            errs.collect(nft::masq::gc(&a.conf.name, valid));
        }
        errs.into_result()
    }

    fn status(&self, a: &CmdArgs) -> Result<()> {
        if Conf::load(a)?.ip_masq {
            nft::status()?;
        }
        // Without an ipam section this is 50 too: ptp cannot serve ADD.
        nuage_ipam::status(a)
    }
}

/// A bump allocator: this process lives for one CNI operation (see
/// `nuage_core::alloc`).
#[global_allocator]
static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();

fn main() {
    skel::run(&Ptp)
}
