//! `macvlan`: containers on a host interface's L2 segment, each with its own
//! MAC address on a macvlan of that interface (the "master").
//!
//! ADD: find the master (default: the default route's interface), create
//! the macvlan directly in the container, allocate addresses (in-process
//! IPAM), configure it; with `hostShim`, route the container from the host
//! through a host-side macvlan. Every step is undone if a later one fails.
//! DEL: release the addresses, delete the macvlan, remove the shim routes;
//! each step runs even if another failed, and none needs the netns.

mod config;
mod link;
mod shim;

use std::net::IpAddr;

use nuage_core::netlink::{MacAddr, Netlink};
use nuage_core::rollback::Undo;
use nuage_core::skel::{self, CmdArgs, Plugin};
use nuage_core::spec::{CniResult, Interface};
use nuage_core::{ifconfig, Error, Errors, Result, ResultExt};

use config::Conf;

struct Macvlan;

impl Plugin for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = Conf::load(a)?;
        a.conf.require_ipam_for_old_result()?;
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let (mut ctr, master, mv) = link::setup(&mut host, &ns, &conf, &a.ifname)?;
        let mut undo = Undo::new();
        let (ns, index) = (&ns, mv.index);
        undo.push(format!("macvlan {}", a.ifname), move || {
            link::delete(ns, index)
        });
        let mut result = CniResult {
            cni_version: a.conf.cni_version.clone(),
            interfaces: vec![Interface {
                name: a.ifname.clone(),
                mac: mv.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default(),
                sandbox: a.netns.clone().unwrap_or_default(),
                ..Default::default()
            }],
            ..Default::default()
        };
        if conf.ipam {
            let ipam = nuage_ipam::add(a)?;
            undo.push("IPAM lease", || nuage_ipam::del(a));
            if ipam.ips.is_empty() {
                return Err(Error::internal("IPAM plugin returned missing IP config"));
            }
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            for ip in &mut result.ips {
                ip.interface = Some(0);
            }
            if result.ips.iter().any(|ip| ip.address.is_ipv6()) {
                link::ndisc_notify(ns, &a.ifname);
            }
            ifconfig::configure_link(&mut ctr, ns, &mv, &result, false)
                .map_err(|e| link::explain_up(e, &conf, &master))?;
            if let Some(s) = &conf.shim {
                let att = a.attachment();
                let ips: Vec<IpAddr> = result.ips.iter().map(|ip| ip.address.ip()).collect();
                shim::add(&mut host, s, &master, conf.mode, &a.conf.name, &att, &ips)?;
                undo.push("hostShim routes", move || {
                    shim::del(&a.conf.name, &s.name, &att)
                });
            }
        } else {
            ctr.set_up(mv.index)
                .with_context(|| format!("failed to set {:?} UP", a.ifname))
                .map_err(|e| link::explain_up(e, &conf, &master))?;
        }
        // As the reference: the config's `dns`, even when empty, replaces IPAM's.
        result.dns = a.conf.dns.clone().unwrap_or_default();
        undo.commit();
        Ok(result)
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let mut errs = Errors::new();
        if let Some(ns) = errs.collect(a.open_netns_for_del()).flatten() {
            errs.collect(
                Netlink::in_netns(&ns)
                    .and_then(|mut ctr| ctr.del_own_link_named(&a.ifname, "macvlan")),
            );
        }
        // The shim's routes go before the addresses return to IPAM: a
        // released address may be handed to a new container at once, and
        // its route must not be the one deleted.
        if let Some(name) = conf.shim_to_clean(a) {
            errs.collect(shim::del(&a.conf.name, &name, &a.attachment()));
        }
        if conf.ipam {
            errs.collect(nuage_ipam::del(a).context("release addresses"));
        }
        errs.into_result()
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        conf.master(if conf.link_in_container {
            &mut ctr
        } else {
            &mut host
        })?;
        if conf.ipam {
            nuage_ipam::check(a)?;
        }
        let prev = a
            .prev_result()?
            .ok_or_else(|| Error::internal("required prevResult missing"))?;
        link::check(&mut ctr, &conf, a, &prev)?;
        ifconfig::check_iface(&mut ctr, &ns, &a.ifname, &prev)?;
        if let Some(s) = &conf.shim {
            let ips: Vec<IpAddr> = prev.ips.iter().map(|ip| ip.address.ip()).collect();
            shim::check(&mut host, s, &ips)?;
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
        if conf.shim_to_clean(a).is_some() {
            errs.collect(shim::gc(&a.conf.name, valid));
        }
        errs.into_result()
    }

    /// Beyond the reference (whose STATUS leaves "check if master
    /// interface exists" as a TODO): a host master that ADD could not
    /// find makes the network not ready (code 50). A master inside the
    /// container (`linkInContainer`) can only be checked by ADD.
    fn status(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        if !conf.link_in_container {
            let mut host = Netlink::new()?;
            let master = conf.master(&mut host)?;
            if let Some(s) = &conf.shim {
                shim::status(&mut host, s, &master, &a.conf.name)?;
            }
        }
        if conf.ipam {
            nuage_ipam::status(a)?;
        }
        Ok(())
    }
}

/// A bump allocator: this process lives for one CNI operation (see
/// `nuage_core::alloc`).
#[global_allocator]
static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();

fn main() {
    skel::run(&Macvlan)
}
