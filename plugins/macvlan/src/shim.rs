//! `hostShim` (nuage only): the host reaching its own macvlan containers.
//!
//! Kernel rule: frames a macvlan sends never reach its lower device's own
//! stack, and frames the lower device sends never reach its macvlans (the
//! macvlan driver switches only between macvlans of one lower device). So the
//! host, whose addresses live on the master, cannot talk to its containers.
//! The fix users apply by hand: one more macvlan, on the host (the "shim"),
//! a sibling of the containers, with a route to each container through it.
//!
//! The shim is created by the first ADD that needs it and deleted with its
//! last container route. It carries an alias naming its network
//! ([`owner_alias`]): a link of that name that nuage did not create (an
//! administrator's own shim, say) is neither taken over nor deleted.
//! Each attachment's routes are recorded in
//! `/var/lib/cni/macvlan/<network>/<containerID>:<ifname>.json`, so DEL and
//! GC remove exactly them, with or without `prevResult`. A `flock` on the
//! network's directory serializes the shim's ADD, DEL and GC.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use nuage_core::netlink::{
    Link, MacvlanMode, Netlink, RouteSpec, RTPROT_KERNEL, RT_SCOPE_LINK, RT_TABLE_MAIN,
};
use nuage_core::spec::Attachment;
use nuage_core::{flock, log, sysctl, Error, Errors, Result, ResultExt};
use serde::{Deserialize, Serialize};

use crate::config::Shim;

const STATE_DIR: &str = "/var/lib/cni/macvlan";
/// In a network's state directory: the name of a shim being created.
const CREATING: &str = ".creating";

/// The alias of a shim nuage created for `network`.
fn owner_alias(network: &str) -> String {
    format!("nuage hostShim of network {network}")
}

/// What one attachment added to the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    shim: String,
    ips: Vec<IpAddr>,
}

/// The network's state directory, locked until the guard is dropped.
struct Locked {
    dir: PathBuf,
    _lock: flock::Lock,
}

/// Whether `network` has shim records: DEL and GC follow them even when
/// the config no longer asks for `hostShim`.
pub fn has_records(network: &str) -> bool {
    record_files(&Path::new(STATE_DIR).join(network))
        .next()
        .is_some()
}

/// The record files in a network's state directory.
fn record_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
}

/// Whether the note in the network's state directory `dir` says that the
/// shim `name` was being created (see [`ensure`]).
fn creating(dir: &Path, name: &str) -> bool {
    fs::read_to_string(dir.join(CREATING)).is_ok_and(|n| n == name)
}

fn lock(network: &str) -> Result<Locked> {
    let dir = Path::new(STATE_DIR).join(network);
    let lock = flock::lock(&dir.join(".lock"), true).context("hostShim")?;
    Ok(Locked { dir, _lock: lock })
}

impl Locked {
    /// Notes (before creating it) that the shim `name` is being created.
    fn mark_creating(&self, name: &str) -> Result<()> {
        nuage_core::file::write_atomic(&self.dir.join(CREATING), name.as_bytes())
            .map_err(|e| Error::os(format_args!("hostShim: write {}", self.dir.display()), e))
    }

    /// Whether an ADD was creating the shim `name` when it stopped.
    fn creating(&self, name: &str) -> bool {
        creating(&self.dir, name)
    }

    fn done_creating(&self) {
        let _ = fs::remove_file(self.dir.join(CREATING));
    }

    fn path(&self, att: &Attachment) -> PathBuf {
        self.dir.join(att.file_name("json"))
    }

    fn read(&self, att: &Attachment) -> Option<Record> {
        let bytes = fs::read(self.path(att)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn records(&self) -> Vec<(PathBuf, Record)> {
        record_files(&self.dir)
            .filter_map(|p| {
                let r = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
                Some((p, r))
            })
            .collect()
    }

    fn write(&self, att: &Attachment, rec: &Record) -> Result<()> {
        let path = self.path(att);
        let bytes = serde_json::to_vec(rec)?;
        nuage_core::file::write_atomic(&path, &bytes)
            .map_err(|e| Error::os(format_args!("hostShim: write {}", path.display()), e))
    }
}

/// ADD: ensures the shim on `master` and routes each container address
/// through it.
///
/// Equivalent to: `ip link add <shim> link <master> type macvlan mode bridge;
/// ip addr add <address>/32 dev <shim>; ip link set <shim> up;
/// ip route add <ip>/32 dev <shim> scope link [src <host ip>]` (see
/// `Netlink::add_own_route`)
pub fn add(
    host: &mut Netlink,
    shim: &Shim,
    master: &Link,
    mode: MacvlanMode,
    network: &str,
    att: &Attachment,
    ips: &[IpAddr],
) -> Result<()> {
    let state = lock(network)?;
    let link = ensure(host, &state, shim, master, mode, network)?;
    let rec = Record {
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        shim: shim.name.clone(),
        ips: ips.to_vec(),
    };
    let route_all = |host: &mut Netlink| -> Result<()> {
        // Recorded first: whatever happens below, DEL finds what was done.
        state.write(att, &rec)?;
        let master_addrs = host.addrs(Some(master.index))?;
        for &ip in ips {
            let src = shim
                .addresses
                .iter()
                .map(|a| a.ip())
                .chain(
                    master_addrs
                        .iter()
                        .filter(|a| a.scope == 0)
                        .map(|a| a.address.ip()),
                )
                .find(|a| a.is_ipv4() == ip.is_ipv4());
            let spec = RouteSpec {
                oif: Some(link.index),
                src,
                scope: Some(RT_SCOPE_LINK),
                ..RouteSpec::new(host_net(ip))
            };
            // Through the shim already: kept for a record of the address's
            // previous holder (see `remove`). Elsewhere: not ours to take.
            host.add_own_route(&spec, |_, _| Ok(false))
                .context("hostShim")?;
        }
        Ok(())
    };
    route_all(host).inspect_err(|_| {
        // Undone here: the caller only records an undo step for a whole ADD.
        let _ = remove(host, &state, &state.path(att), &rec);
    })
}

/// The shim, created when missing: a macvlan sibling of the containers,
/// `accept_ra=0` and no DAD (its addresses are the host's own), up.
fn ensure(
    host: &mut Netlink,
    state: &Locked,
    shim: &Shim,
    master: &Link,
    mode: MacvlanMode,
    network: &str,
) -> Result<Link> {
    let name = &shim.name;
    let alias = owner_alias(network);
    let mut created = false;
    let link = match host.link_by_name(name)? {
        Some(l) => l,
        None => {
            created = true;
            // The kernel ignores IFLA_IFALIAS at creation: the shim is
            // marked by a second request. Under the network's lock, a
            // marker file says a creation is under way, so that the next
            // ADD can take a shim whose creator was killed in between.
            state.mark_creating(name)?;
            if let Err(e) = host.create_macvlan(name, master.index, mode, None, None, None) {
                state.done_creating();
                return Err(e.context("hostShim"));
            }
            log::info(format_args!("hostShim: created {name} on {}", master.name));
            host.link_by_name(name)?.ok_or_else(|| {
                Error::internal(format!("hostShim: {name:?} vanished after creation"))
            })?
        }
    };
    let on_master = link.kind.as_deref() == Some("macvlan") && link.link == Some(master.index);
    let mut ours = link.alias.as_deref() == Some(alias.as_str());
    if !ours && on_master && link.alias.is_none() && state.creating(name) {
        host.set_alias(link.index, &alias).context("hostShim")?;
        ours = true;
    }
    state.done_creating();
    let link = Link {
        alias: Some(alias.clone()).filter(|_| ours).or(link.alias),
        ..link
    };
    if !ours || !on_master {
        return Err(Error::internal(format!(
            "hostShim: {name:?} already exists and is not this network's shim on {:?}",
            master.name
        ))
        .with_details(
            "name the shim after a free interface name with \"hostShim\": {\"name\": ...} (nuage neither takes over nor deletes a link it did not create)",
        ));
    }
    let configured = configure(host, shim, &link);
    // A shim this ADD created and could not configure is deleted again
    // (under the network's lock no other ADD can be using it yet).
    if let (Err(_), true) = (&configured, created) {
        let _ = host.del_link(link.index);
    }
    configured.map(|()| link)
}

/// The shim's settings: no router advertisements and no DAD (best effort,
/// as for the other host-side links), its addresses, up.
fn configure(host: &mut Netlink, shim: &Shim, link: &Link) -> Result<()> {
    if let Some(v6) = sysctl::ConfDir::open(true)? {
        for key in ["accept_ra", "accept_dad"] {
            v6.write_best_effort(&link.name, key, "0")?;
        }
    }
    let have = host.addrs(Some(link.index))?;
    for a in &shim.addresses {
        let a = host_net(a.ip());
        if !have.iter().any(|h| h.address == a) {
            match host.add_addr(link.index, a) {
                Err(e) if !e.is_exists() => return Err(e.context("hostShim")),
                _ => {}
            }
        }
    }
    if !link.flags_up {
        host.set_up(link.index)?;
    }
    if shim.addresses.iter().any(|a| a.is_ipv6()) {
        let own: Vec<_> = shim.addresses.iter().map(|a| a.ip()).collect();
        host.wait_not_tentative(link.index, &link.name, &own)?;
    }
    Ok(())
}

/// DEL: removes the attachment's routes (from its record), its record, and
/// the shim with its last route. Without a record the attachment routed
/// nothing (ADD records before it routes) or was already removed: nothing
/// of it is deleted, not even by address (a `prevResult`'s address may be
/// another container's by now), but a shim left without routes by a failed
/// ADD goes.
pub fn del(network: &str, shim_name: &str, att: &Attachment) -> Result<()> {
    let state = lock(network)?;
    let mut host = Netlink::new()?;
    let rec = state.read(att).unwrap_or_else(|| Record {
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        shim: shim_name.to_string(),
        ips: Vec::new(),
    });
    remove(&mut host, &state, &state.path(att), &rec)
}

/// GC: removes what attachments not in `valid` left.
pub fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    let state = lock(network)?;
    let mut host = Netlink::new()?;
    let mut errs = Errors::new();
    for (path, rec) in state.records() {
        let live = valid
            .iter()
            .any(|v| v.container_id == rec.container_id && v.ifname == rec.ifname);
        if !live {
            errs.collect(remove(&mut host, &state, &path, &rec));
        }
    }
    errs.into_result()
}

/// Removes `rec`'s routes and file (at `path`), and the shim once no route
/// uses it. A route to an address another record also holds stays: that
/// address went back to IPAM and on to another container, whose route it
/// now is.
fn remove(host: &mut Netlink, state: &Locked, path: &Path, rec: &Record) -> Result<()> {
    let network = state.dir.file_name().unwrap_or_default().to_string_lossy();
    let alias = owner_alias(&network);
    let Some(link) = host
        .link_by_name(&rec.shim)?
        .filter(|l| l.alias.as_deref() == Some(alias.as_str()))
    else {
        // Gone, or not ours: routes through a link nuage did not create
        // are not ours either.
        return remove_file(path);
    };
    let others: Vec<IpAddr> = state
        .records()
        .into_iter()
        .filter(|(p, _)| p != path)
        .flat_map(|(_, r)| r.ips)
        .collect();
    for &ip in rec.ips.iter().filter(|ip| !others.contains(ip)) {
        let spec = RouteSpec {
            oif: Some(link.index),
            ..RouteSpec::new(host_net(ip))
        };
        match host.del_route(&spec) {
            Err(e) if !e.is_not_found() => return Err(e.context("hostShim")),
            _ => {}
        }
    }
    remove_file(path)?;
    let used = host.routes(None)?.iter().any(|r| {
        r.oif == Some(link.index) && r.table == RT_TABLE_MAIN && r.protocol != RTPROT_KERNEL
    });
    if !used && link.kind.as_deref() == Some("macvlan") {
        log::info(format_args!(
            "hostShim: deleting {} with its last container route",
            rec.shim
        ));
        match host.del_link(link.index) {
            Err(e) if !e.is_not_found() => return Err(e.context("hostShim")),
            _ => {}
        }
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::os(
            format_args!("hostShim: remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// STATUS: a link of the shim's name that is not this network's shim makes
/// ADD fail; a missing one is fine (ADD creates it), and so is one an ADD
/// left unmarked when killed (the next ADD takes it).
pub fn status(host: &mut Netlink, shim: &Shim, master: &Link, network: &str) -> Result<()> {
    let creating = creating(&Path::new(STATE_DIR).join(network), &shim.name);
    match host.link_by_name(&shim.name)? {
        Some(l)
            if l.alias.as_deref() != Some(owner_alias(network).as_str())
                && !(creating
                    && l.alias.is_none()
                    && l.kind.as_deref() == Some("macvlan")
                    && l.link == Some(master.index)) =>
        {
            Err(Error::internal(format!(
                "hostShim: {:?} already exists and is not this network's shim",
                shim.name
            ))
            .with_details(
                "name the shim after a free interface name with \"hostShim\": {\"name\": ...}",
            ))
        }
        _ => Ok(()),
    }
}

/// CHECK: the shim exists, is up, and routes each address.
pub fn check(host: &mut Netlink, shim: &Shim, ips: &[IpAddr]) -> Result<()> {
    let link = host
        .link_by_name(&shim.name)?
        .filter(|l| l.kind.as_deref() == Some("macvlan"))
        .ok_or_else(|| {
            Error::internal(format!(
                "hostShim: macvlan {:?} not found on the host",
                shim.name
            ))
        })?;
    if !link.flags_up {
        return Err(Error::internal(format!("hostShim: {} is down", shim.name)));
    }
    let routes = host.routes(None)?;
    for &ip in ips {
        if !routes
            .iter()
            .any(|r| r.dst == host_net(ip) && r.oif == Some(link.index))
        {
            return Err(Error::internal(format!(
                "hostShim: route to {ip} via {} is missing",
                shim.name
            )));
        }
    }
    Ok(())
}

/// `ip/32` or `ip/128`.
fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::from(ip)
}
