//! `host-device`: moves an existing host interface into the container as
//! `CNI_IFNAME`, and gives it back on DEL.
//!
//! ADD: find the device (`device`, `hwaddr`, `kernelpath`, `pciBusID` or
//! the `deviceID` capability), record its name and state, move it into the
//! container under its new name, allocate addresses (in-process IPAM) and
//! configure it. Every step is undone if a later one fails.
//! DEL: find the device by its record (not by `CNI_IFNAME`, which the
//! container may have renamed or reused), give it back under its original
//! name and state, then release the addresses (also without a netns).
//! Repeated DEL succeeds; a DEL that cannot give the device back fails, so
//! that it is retried rather than the device lost, and the record is kept
//! until the device is accounted for (also when a physical device has not
//! come back from a destroyed namespace yet: GC finishes the job).

mod config;
mod device;
mod record;

use std::cell::Cell;

use nuage_core::netlink::{MacAddr, Netlink};
use nuage_core::rollback::Undo;
use nuage_core::skel::{self, CmdArgs, Plugin};
use nuage_core::spec::{CniResult, Interface};
use nuage_core::{ifconfig, log, Error, Errors, Result, ResultExt};

use config::Conf;
use record::Store;

struct HostDevice;

impl Plugin for HostDevice {
    fn name(&self) -> &'static str {
        "host-device"
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = Conf::load(a)?;
        a.conf.require_ipam_for_old_result()?;
        // Before the device moves (a move each way costs ~13 ms, and the
        // container sees the device meanwhile).
        if conf.ipam {
            nuage_ipam::validate(a)?;
        }
        let ns = a.open_netns()?;
        let mut host = Netlink::new()?;
        let mut ctr = Netlink::in_netns(&ns)?;
        if ctr.link_by_name(&a.ifname)?.is_some() {
            return Err(Error::internal(format!(
                "container interface name {:?} already exists",
                a.ifname
            ))
            .with_details(format!(
                "netns {} already has {}: DEL the old attachment first",
                ns.path().display(),
                a.ifname
            )));
        }
        let dpdk = conf.dpdk()?;
        let store = Store::new(&conf.data_dir, &a.conf.name);
        let att = a.attachment();
        let sandbox = a.netns.clone().unwrap_or_default();

        // A device driven from user space (DPDK) has no interface to move.
        let rec = if dpdk {
            None
        } else {
            let dev = conf.find(&mut host)?;
            Some(device::snapshot(&dev, &a.container_id, &a.ifname))
        };

        // Set when a rollback could not give the device back: its record
        // stays, for DEL and GC to finish the job.
        let stranded = Cell::new(false);
        let mut undo = Undo::new();
        let mut result = CniResult {
            cni_version: a.conf.cni_version.clone(),
            interfaces: vec![Interface {
                name: a.ifname.clone(),
                sandbox,
                ..Default::default()
            }],
            ..Default::default()
        };
        if let Some(r) = &rec {
            // Recorded before the move: whatever happens next, DEL finds it.
            store.write(&att, r)?;
            undo.push("device record", || {
                if stranded.get() {
                    log::warn(format_args!(
                        "{} could not be given back: its record stays for DEL and GC",
                        r.name
                    ));
                    return Ok(());
                }
                store.remove(&att)
            });
            let moved =
                device::move_in(&mut host, &mut ctr, &ns, r, &a.ifname, &stranded, &mut undo)?;
            store.write(
                &att,
                &record::Record {
                    container_index: moved.index,
                    ..r.clone()
                },
            )?;
            result.interfaces[0].mac = moved
                .mac
                .map(|m| MacAddr(m).to_string())
                .unwrap_or_default();
        }
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
            if !dpdk {
                ifconfig::configure_iface(&mut ctr, &ns, &a.ifname, &result)?;
            }
            result.dns = a.conf.dns.clone().unwrap_or_default();
        }
        undo.commit();
        Ok(result)
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let store = Store::new(&conf.data_dir, &a.conf.name);
        let att = a.attachment();
        let mut errs = Errors::new();
        let rec = store.read(&att);
        let mut host = Netlink::new()?;
        // The record goes only once the device is accounted for: back on
        // the host, or known to be out of reach. On any error it stays, for
        // a retried DEL or GC to give the device back.
        let mut settled = false;
        let mut netns_gone = false;
        match a.open_netns_for_del() {
            Err(e) => errs.push(e),
            Ok(Some(ns)) => {
                let found = Netlink::in_netns(&ns).and_then(|mut ctr| {
                    device::find_in_container(&mut ctr, rec.as_ref(), &a.ifname)
                });
                match found {
                    Err(e) => errs.push(e),
                    Ok(Some((link, name))) => {
                        match device::move_out(&mut host, &ns, link.index, &name, rec.as_ref()) {
                            Ok(()) => settled = true,
                            Err(e) => errs.push(e),
                        }
                    }
                    // Not in the container: back on the host already (a
                    // repeated DEL), or moved away by someone else.
                    Ok(None) => match &rec {
                        None => settled = true,
                        Some(rec) => match device::restore_on_host(&mut host, rec) {
                            Ok(_) => settled = true,
                            Err(e) => errs.push(e),
                        },
                    },
                }
            }
            // The namespace is gone: a physical device returns from it to
            // the initial namespace (this one, on a real host) shortly
            // after; a virtual one was destroyed with it.
            Ok(None) => {
                netns_gone = true;
                match &rec {
                    None => settled = true,
                    Some(rec) => match device::restore_after_netns(&mut host, rec) {
                        Ok(true) => settled = true,
                        Ok(false) if rec.kind.is_some() => settled = true,
                        Ok(false) => log::warn(format_args!(
                            "{} is not back on this host yet: its record stays for a later DEL or GC",
                            rec.name
                        )),
                        Err(e) => errs.push(e),
                    },
                }
            }
        }
        if settled {
            errs.collect(store.remove(&att));
        }
        // Unlike the reference, also without a netns: the lease is the host's.
        // Released once the device left the container, which held the
        // address until then; kept when it may still be there (an error),
        // for the retried DEL.
        if conf.ipam && (settled || netns_gone) {
            errs.collect(nuage_ipam::del(a).context("release addresses"));
        }
        errs.into_result()
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let conf = Conf::load(a)?;
        let ns = a.open_netns()?;
        if conf.ipam {
            nuage_ipam::check(a)?;
        }
        let prev = a
            .prev_result()?
            .ok_or_else(|| Error::internal("Required prevResult missing"))?;
        if conf.dpdk()? {
            return Ok(());
        }
        let netns = a.netns.as_deref().unwrap_or("");
        let iface = prev.container_interface(&a.ifname, netns)?;
        let mut ctr = Netlink::in_netns(&ns)?;
        let link = ctr.link_by_name(&a.ifname)?.ok_or_else(|| {
            Error::internal(format!(
                "Container Interface name in prevResult: {} not found",
                a.ifname
            ))
        })?;
        let mac = link.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
        if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&mac) {
            return Err(Error::internal(format!(
                "Interface {} Mac {} doesn't match container Mac: {mac}",
                a.ifname, iface.mac
            )));
        }
        ifconfig::check_iface(&mut ctr, &ns, &a.ifname, &prev)
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
        // Records of attachments the runtime no longer has: their namespace
        // is gone, so their device is back on the host or destroyed.
        let mut host = Netlink::new()?;
        for (path, rec) in Store::new(&conf.data_dir, &a.conf.name).all() {
            let live = valid
                .iter()
                .any(|v| v.container_id == rec.container_id && v.ifname == rec.ifname);
            if !live {
                log::info(format_args!(
                    "GC: {} of {}/{} is stale",
                    rec.name, rec.container_id, rec.ifname
                ));
                if errs.collect(device::restore_on_host(&mut host, &rec)) == Some(false) {
                    log::info(format_args!(
                        "GC: {} is not on this host (a virtual device is destroyed with its namespace)",
                        rec.name
                    ));
                }
                errs.collect(record::remove_path(&path));
            }
        }
        errs.into_result()
    }

    fn status(&self, a: &CmdArgs) -> Result<()> {
        if Conf::load(a)?.ipam {
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
    skel::run(&HostDevice)
}
