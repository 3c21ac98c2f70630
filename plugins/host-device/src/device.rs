//! Moving the device into the container, finding it again, and giving it
//! back to the host.
//!
//! Kernel facts this module lives with:
//! - moving a link to another namespace sets it down and flushes its
//!   addresses and routes; its index is kept unless taken there;
//! - a link can be renamed only while down (`EBUSY`);
//! - when a namespace is destroyed, physical devices in it go back to the
//!   *initial* namespace (keeping their name, or `dev<N>` when it is taken
//!   there), while virtual ones (a veth stand-in in tests) are destroyed.

use std::cell::Cell;
use std::thread::sleep;
use std::time::Duration;

use nuage_core::netlink::{Link, MacAddr, Netlink};
use nuage_core::netns::NetNs;
use nuage_core::rollback::Undo;
use nuage_core::{log, Error, Result, ResultExt};

use crate::record::Record;

/// The name, alias, state and address of `dev` before it moves.
pub fn snapshot(dev: &Link, container_id: &str, ifname: &str) -> Record {
    Record {
        boot_id: crate::record::boot_id(),
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        name: dev.name.clone(),
        alias: dev.alias.clone().filter(|a| !a.is_empty()),
        up: dev.flags_up,
        mtu: dev.mtu,
        mac: dev.mac.map(|m| MacAddr(m).to_string()),
        kind: dev.kind.clone(),
        host_index: dev.index,
        container_index: 0,
    }
}

/// ADD: moves `dev` into `ns` as `ifname` (one request: it never appears
/// there under its host name) and sets it up. Its alias is set to its host
/// name first, as the reference does, so the device itself says where it
/// belongs. On a later failure, `undo` gives it back; if that fails,
/// `stranded` is set, so that the record DEL and GC need is kept.
///
/// Equivalent to: `ip link set dev <dev> alias <dev>; ip link set dev <dev>
/// netns <ns> name <ifname>; ip -n <ns> link set dev <ifname> up`
pub fn move_in<'a>(
    host: &mut Netlink,
    ctr: &mut Netlink,
    ns: &'a NetNs,
    rec: &'a Record,
    ifname: &str,
    stranded: &'a Cell<bool>,
    undo: &mut Undo<'a>,
) -> Result<Link> {
    host.set_alias(rec.host_index, &rec.name)
        .context("failed to move link")?;
    if let Err(e) = host.move_link(rec.host_index, ns, ifname) {
        let _ = host.set_alias(rec.host_index, rec.alias.as_deref().unwrap_or(""));
        return Err(e.context("failed to move link"));
    }
    // In the container from here on: the way back is recorded before
    // anything else can fail, and finds the device as DEL does (by its
    // alias, which is its host name).
    let owned = ifname.to_string();
    undo.push(format!("move {} back to the host", rec.name), move || {
        let back = Netlink::in_netns(ns).and_then(|mut ctr| {
            let (link, name) =
                find_in_container(&mut ctr, Some(rec), &owned)?.ok_or_else(|| {
                    Error::internal(format!("{} not found in the container", rec.name))
                })?;
            move_out(&mut Netlink::new()?, ns, link.index, &name, Some(rec))
        });
        stranded.set(back.is_err());
        back
    });
    let link = ctr.link_by_name(ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "{ifname:?} not found in netns {} after the move",
            ns.path().display()
        ))
    })?;
    ctr.set_up(link.index)
        .with_context(|| format!("failed to set {ifname:?} up"))?;
    Ok(ctr.link_by_index(link.index)?.unwrap_or(link))
}

/// DEL: the moved device in the container, found by the record (its index,
/// then its alias) and only then by `ifname` (which the container may have
/// renamed or reused); with the host name to give it back under.
pub fn find_in_container(
    ctr: &mut Netlink,
    rec: Option<&Record>,
    ifname: &str,
) -> Result<Option<(Link, String)>> {
    if let Some(rec) = rec {
        if rec.container_index != 0 {
            if let Some(l) = ctr
                .link_by_index(rec.container_index)?
                .filter(|l| l.kind == rec.kind)
            {
                return Ok(Some((l, rec.name.clone())));
            }
        }
        if let Some(l) = ctr
            .links()?
            .into_iter()
            .find(|l| l.kind == rec.kind && l.alias.as_deref() == Some(rec.name.as_str()))
        {
            return Ok(Some((l, rec.name.clone())));
        }
    }
    // No record (an ADD by another version): the reference's way, the
    // link named `ifname` whose alias is its host name.
    let Some(l) = ctr.link_by_name(ifname)? else {
        return Ok(None);
    };
    let ours = rec.is_none_or(|r| r.kind == l.kind);
    match l.alias.clone().filter(|a| !a.is_empty() && ours) {
        Some(alias) => {
            let name = rec.map_or(alias, |r| r.name.clone());
            Ok(Some((l, name)))
        }
        None => Ok(None),
    }
}

/// Moves link `index` of `ns` back to the calling thread's namespace under
/// `name` (or `hostdev<N>` when `name` is taken there: the device is never
/// left behind), then restores its recorded state.
///
/// Equivalent to: `ip -n <ns> link set dev <index> netns <host> name <name>;
/// ip link set dev <name> alias <old alias> [mtu M] [address A] [up]`
pub fn move_out(
    host: &mut Netlink,
    ns: &NetNs,
    index: u32,
    name: &str,
    rec: Option<&Record>,
) -> Result<()> {
    let here = NetNs::current()?;
    let target = free_name(host, name)?;
    Netlink::in_netns(ns)?
        .move_link(index, &here, &target)
        .with_context(|| format!("failed to give {name} back to the host"))?;
    let dev = host.link_by_name(&target)?.ok_or_else(|| {
        Error::internal(format!("{target:?} not found on the host after the move"))
    })?;
    restore(host, &dev, rec)
}

/// `name`, or the first free `hostdev<N>` when a host link already has it.
fn free_name(host: &mut Netlink, name: &str) -> Result<String> {
    if host.link_by_name(name)?.is_none() {
        return Ok(name.to_string());
    }
    for alt in (0..).map(|n| format!("hostdev{n}")) {
        if host.link_by_name(&alt)?.is_none() {
            log::warn(format_args!(
                "{name:?} is taken on the host: the device comes back as {alt:?}"
            ));
            return Ok(alt);
        }
    }
    Err(Error::internal(format!(
        "no free name to give {name} back under"
    )))
}

/// The recorded alias, MAC, MTU and up state; without a record the alias
/// is cleared and the link left down (its state is unknown).
fn restore(host: &mut Netlink, dev: &Link, rec: Option<&Record>) -> Result<()> {
    host.set_alias(
        dev.index,
        rec.and_then(|r| r.alias.as_deref()).unwrap_or(""),
    )?;
    let Some(rec) = rec else {
        return Ok(());
    };
    if let Some(mac) = rec.mac.as_deref().and_then(|m| m.parse::<MacAddr>().ok()) {
        if dev.mac != Some(mac.0) {
            host.set_mac(dev.index, mac.0)?;
        }
    }
    if rec.mtu != 0 && dev.mtu != rec.mtu {
        host.set_mtu(dev.index, rec.mtu)?;
    }
    if rec.up && !dev.flags_up {
        host.set_up(dev.index)?;
    }
    Ok(())
}

/// DEL when the device is not in the container (the namespace is gone):
/// if it came back to this namespace on its own, give it its name and
/// state back. Returns whether it was found.
pub fn restore_on_host(host: &mut Netlink, rec: &Record) -> Result<bool> {
    let ours = |l: &Link| {
        l.kind == rec.kind
            && (l.alias.as_deref() == Some(rec.name.as_str())
                || rec.mac.is_some() && l.mac.map(|m| MacAddr(m).to_string()) == rec.mac)
    };
    // Where it usually is, without a dump of every link (which a busy host
    // interrupts): at its old index (kept when free) or under its name.
    let mut direct = host.link_by_index(rec.host_index)?.filter(ours);
    if direct.is_none() {
        direct = host.link_by_name(&rec.name)?.filter(ours);
    }
    if let Some(dev) = direct {
        return restore_found(host, rec, dev).map(|()| true);
    }
    let links = host.links()?;
    let by_alias = links
        .iter()
        .find(|l| l.kind == rec.kind && l.alias.as_deref() == Some(rec.name.as_str()));
    let by_mac = || {
        let mut same = links.iter().filter(|l| {
            l.kind == rec.kind
                && l.mac.map(|m| MacAddr(m).to_string()) == rec.mac
                && rec.mac.is_some()
        });
        // Bond ports share a MAC: only an unambiguous match counts.
        match (same.next(), same.next()) {
            (Some(l), None) => Some(l),
            _ => None,
        }
    };
    let Some(dev) = by_alias.or_else(by_mac).cloned() else {
        return Ok(false);
    };
    restore_found(host, rec, dev).map(|()| true)
}

/// [`restore_on_host`] of `dev`, found: its name back unless taken, then
/// its recorded state.
fn restore_found(host: &mut Netlink, rec: &Record, dev: Link) -> Result<()> {
    if dev.name != rec.name {
        if host.link_by_name(&rec.name)?.is_some() {
            log::warn(format_args!(
                "{} came back as {:?} and its name is taken: left so",
                rec.name, dev.name
            ));
        } else {
            host.set_down(dev.index)?;
            host.set_name(dev.index, &rec.name)?;
            log::info(format_args!(
                "{} came back as {:?}: renamed",
                rec.name, dev.name
            ));
        }
    }
    let dev = host.link_by_index(dev.index)?.unwrap_or(dev);
    restore(host, &dev, Some(rec))
}

/// DEL with the container's namespace gone: [`restore_on_host`], given a
/// physical device (no link kind) time to come back. The kernel returns
/// the physical devices of a destroyed namespace from a work queue, after
/// the runtime's delete has returned; virtual ones are destroyed with it.
pub fn restore_after_netns(host: &mut Netlink, rec: &Record) -> Result<bool> {
    let waits: &[u64] = if rec.kind.is_none() {
        &[0, 10, 20, 50, 100, 200, 400]
    } else {
        &[0]
    };
    for &ms in waits {
        sleep(Duration::from_millis(ms));
        if restore_on_host(host, rec)? {
            return Ok(true);
        }
    }
    Ok(false)
}
