//! The host-local IPAM plugin: leases from local address ranges, kept in a
//! directory shared with (and readable by) the reference plugin.
//!
//! | verb   | behaviour |
//! |--------|-----------|
//! | ADD    | one address per range set, in the reference's order; requested addresses honoured; all-or-nothing |
//! | DEL    | releases the attachment's leases; succeeds when there are none (or no store) |
//! | CHECK  | the attachment holds at least one lease |
//! | GC     | releases every lease whose attachment is not in `cni.dev/valid-attachments` |
//! | STATUS | the configuration is valid and the store writable, else code 50 with the reason |
//!
//! Error codes beyond the spec's: 110 ([`Code::RangeExhausted`]) when a range
//! set has no free address, 111 ([`Code::AddressUnavailable`]) when a
//! requested address is taken, is a gateway, or lies outside every range set.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;

use nuage_core::skel::{CmdArgs, Command, Plugin};
use nuage_core::spec::{version, CniResult, Dns, IpConfig, KeyChecks};
use nuage_core::{log, Code, Error, Result, ResultExt};

use crate::allocator::{allocate, Request};
use crate::config::HostLocalConf;
use crate::store::{keep_valid, Store};

/// The host-local plugin, for [`nuage_core::skel::run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLocal;

impl Plugin for HostLocal {
    fn name(&self) -> &'static str {
        "host-local"
    }
    /// It names no link after CNI_IFNAME.
    fn names_links(&self) -> bool {
        false
    }
    /// See [`crate::key_checks`].
    fn key_checks(&self, cmd: Command) -> KeyChecks {
        crate::key_checks(cmd, true)
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        add(a)
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        del(a)
    }
    fn check(&self, a: &CmdArgs) -> Result<()> {
        check(a)
    }
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        gc(a)
    }
    fn status(&self, a: &CmdArgs) -> Result<()> {
        status(a)
    }
}

/// ADD: everything is validated (config, `resolvConf`, requested addresses)
/// before the store is touched; on any failure the addresses reserved so far
/// are released again.
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    let conf = HostLocalConf::parse(&a.conf, &a.args)?;
    let dns = match &conf.resolv_conf {
        Some(p) => parse_resolv_conf(p)?,
        None => Dns::default(),
    };
    let requested = assign_requested(&conf)?;

    let mut store = Store::open(&conf.store_dir())?;
    let allocated = allocate_all(&mut store, &conf, &requested, &a.container_id, &a.ifname);
    // Rollback kept the index in step with the leases, so commit either way.
    let committed = store.commit();
    let ips = allocated?;
    committed?;
    log::info(format_args!(
        "allocated {} to {} ({}) on network {}",
        ips.iter()
            .map(|c| c.address.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        a.container_id,
        a.ifname,
        conf.network
    ));
    Ok(CniResult {
        cni_version: version::CURRENT.into(),
        interfaces: Vec::new(),
        ips,
        routes: conf.routes,
        dns,
    })
}

/// Matches each requested address to the first range set that holds it (as
/// the reference does), refusing gateways and addresses outside every set.
fn assign_requested(conf: &HostLocalConf) -> Result<Vec<Option<IpAddr>>> {
    let mut left = conf.requested.clone();
    let mut out = Vec::with_capacity(conf.range_sets.len());
    for (i, set) in conf.range_sets.iter().enumerate() {
        let ip = left
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|p| left.remove(p));
        if let Some(ip) = ip {
            if set.range_for(ip).is_some_and(|r| r.gateway == ip) {
                return Err(Error::new(
                    Code::AddressUnavailable,
                    format!(
                        "failed to allocate for range {i}: requested ip {ip} is subnet's gateway"
                    ),
                ));
            }
        }
        out.push(ip);
    }
    if !left.is_empty() {
        let ips: Vec<String> = left.iter().map(ToString::to_string).collect();
        let sets: Vec<String> = conf.range_sets.iter().map(ToString::to_string).collect();
        return Err(Error::new(
            Code::AddressUnavailable,
            format!("failed to allocate all requested IPs: {}", ips.join(" ")),
        )
        .with_details(format!(
            "{}; each requested address must lie in a different range set of network {:?}, whose range sets are: {}",
            left.iter()
                .map(|ip| why_not_requestable(conf, *ip))
                .collect::<Vec<_>>()
                .join("; "),
            conf.network,
            sets.join("; ")
        )));
    }
    Ok(out)
}

/// Why a requested address left over is not one to allocate.
fn why_not_requestable(conf: &HostLocalConf, ip: IpAddr) -> String {
    let sets = || conf.range_sets.iter().enumerate();
    if let Some((i, _)) = sets().find(|(_, s)| s.contains(ip)) {
        return format!("{ip} lies in range set {i}, which another requested address takes");
    }
    let in_subnet = sets().find_map(|(i, s)| {
        s.ranges()
            .iter()
            .find(|r| r.subnet.contains(ip))
            .map(|r| (i, r))
    });
    match in_subnet {
        Some((i, r)) if r.gateway == ip => format!("{ip} is the gateway of range set {i}"),
        Some((i, r)) => format!(
            "{ip} is in subnet {} of range set {i} but outside its range {}-{}",
            r.subnet, r.start, r.end
        ),
        None => format!("{ip} is in none of the network's subnets"),
    }
}

fn allocate_all(
    store: &mut Store,
    conf: &HostLocalConf,
    requested: &[Option<IpAddr>],
    id: &str,
    ifname: &str,
) -> Result<Vec<IpConfig>> {
    let mut ips: Vec<IpConfig> = Vec::with_capacity(conf.range_sets.len());
    let rollback = |store: &mut Store, ips: &[IpConfig], e: Error| -> Result<Vec<IpConfig>> {
        let got: Vec<IpAddr> = ips.iter().map(|c| c.address.ip()).collect();
        if let Err(re) = store.release_ips(id, ifname, &got) {
            log::warn(format_args!("rolling back {got:?} failed: {re}"));
            // The index may now disagree with the leases: leave it to be rebuilt.
            store.abandon();
        }
        Err(e)
    };
    for (index, set) in conf.range_sets.iter().enumerate() {
        let req = Request {
            network: &conf.network,
            index,
            set,
            container_id: id,
            ifname,
            requested: requested[index],
        };
        match allocate(store, &req).context(format!("failed to allocate for range {index}")) {
            Ok(c) => ips.push(c),
            Err(e) => return rollback(store, &ips, e),
        }
    }
    let got: Vec<IpAddr> = ips.iter().map(|c| c.address.ip()).collect();
    if let Err(e) = store.record(id, ifname, &got) {
        return rollback(store, &ips, e);
    }
    Ok(ips)
}

/// DEL: releases the attachment's leases (or, when it holds none, the legacy
/// id-only leases of the container). Succeeds when there is nothing to do.
///
/// DEL needs only the store: ranges (which may come from the `ipRanges`
/// capability) and `CNI_ARGS` are not required, so a DEL without them still
/// releases.
pub fn del(a: &CmdArgs) -> Result<()> {
    let dir = HostLocalConf::store_dir_of(&a.conf)?;
    let Some(mut store) = Store::open_existing(&dir)? else {
        return Ok(());
    };
    let released = store.release(&a.container_id, &a.ifname)?;
    store.commit()?;
    if !released.is_empty() {
        log::info(format_args!(
            "released {released:?} of {} ({}) on network {}",
            a.container_id, a.ifname, a.conf.name
        ));
    }
    Ok(())
}

/// CHECK: the attachment must hold at least one lease (the reference's test).
pub fn check(a: &CmdArgs) -> Result<()> {
    let conf = HostLocalConf::parse(&a.conf, &a.args)?;
    let missing = || {
        Error::internal(format!(
            "host-local: Failed to find address added by container {}",
            a.container_id
        ))
        .with_details(format!(
            "no lease for interface {} in {}",
            a.ifname,
            conf.store_dir().display()
        ))
    };
    let Some(mut store) = Store::open_existing(&conf.store_dir())? else {
        return Err(missing());
    };
    let found = !store.held_by(&a.container_id, &a.ifname)?.is_empty()
        || !store.held_by(&a.container_id, "")?.is_empty();
    store.commit()?;
    if found {
        Ok(())
    } else {
        Err(missing())
    }
}

/// GC: releases every lease whose attachment is not listed in
/// `cni.dev/valid-attachments` (or `cni.dev/attachments`). An empty list
/// releases everything; when neither key is present nothing is released,
/// since "no list" is not "no attachments". Legacy id-only leases are kept
/// while their container id is attached on any interface.
pub fn gc(a: &CmdArgs) -> Result<()> {
    let dir = HostLocalConf::store_dir_of(&a.conf)?;
    let Some(valid) = &a.conf.valid_attachments else {
        log::info(format_args!(
            "GC of network {} without cni.dev/valid-attachments: nothing released",
            a.conf.name
        ));
        return Ok(());
    };
    let Some(mut store) = Store::open_existing(&dir)? else {
        return Ok(());
    };
    let keep = keep_valid(
        valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str())),
    );
    let report = store.gc(keep)?;
    store.commit()?;
    for (ip, holder) in &report.released {
        log::info(format_args!(
            "GC released {ip} of {holder} on network {}",
            a.conf.name
        ));
    }
    Ok(())
}

/// STATUS: ready when the configuration is valid and the store can be
/// written (checked without writing anything); code 50 with the reason.
pub fn status(a: &CmdArgs) -> Result<()> {
    let unavailable = |why: String| Error::not_available(format!("host-local is not ready: {why}"));
    let conf = HostLocalConf::parse_for_status(&a.conf).map_err(|e| unavailable(e.to_string()))?;
    let dir = conf.store_dir();
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(unavailable(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    // A kernel filesystem takes no lease files, root or not (access(2)
    // below says yes to root on /proc).
    const KERNEL_FS: &[(i64, &str)] = &[
        (0x9fa0, "proc"),
        (0x6265_6572, "sysfs"),
        (0x6367_7270, "cgroup2"),
        (0x0027_e0eb, "cgroup"),
        (0x6462_6720, "debugfs"),
        (0x7363_6673, "securityfs"),
    ];
    if let Ok(fs) = nix::sys::statfs::statfs(existing) {
        let magic = fs.filesystem_type().0 as i64;
        if let Some((_, name)) = KERNEL_FS.iter().find(|(m, _)| *m == magic) {
            return Err(unavailable(format!(
                "the store {} would be on {}, a {name} filesystem, which takes no files: set ipam.dataDir elsewhere",
                dir.display(),
                existing.display()
            )));
        }
    }
    let ro = nix::sys::statvfs::statvfs(existing)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .map_err(|e| unavailable(format!("cannot stat {}: {e}", existing.display())))?;
    if ro {
        return Err(unavailable(format!(
            "the store {} is on a read-only filesystem",
            dir.display()
        )));
    }
    nix::unistd::access(
        existing,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| unavailable(format!("cannot write to {}: {e}", existing.display())))?;
    // ADD reads resolvConf: one it cannot read fails every ADD.
    if let Some(p) = &conf.resolv_conf {
        parse_resolv_conf(p).map_err(|e| unavailable(e.to_string()))?;
    }
    Ok(())
}

/// Reads a resolv.conf into `dns` as the reference does: `nameserver`,
/// `domain`, `search` and `options` lines; `#` and `;` start comments.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns> {
    let file = File::open(path)
        .map_err(|e| Error::config(format!("resolvConf {}: {e}", path.display())))?;
    let mut dns = Dns::default();
    // Bytes, not UTF-8 lines: a Latin-1 comment must not fail the ADD.
    for line in BufReader::new(file.take(1 << 20)).split(b'\n') {
        let line =
            line.map_err(|e| Error::config(format!("resolvConf {}: {e}", path.display())))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.starts_with(['#', ';']) {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [key, first, ..] = fields[..] else {
            continue;
        };
        let rest = fields[1..].iter().map(|s| s.to_string());
        match key {
            "nameserver" => dns.nameservers.push(first.into()),
            "domain" => dns.domain = Some(first.into()),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn why_a_requested_address_is_not_allocated() {
        let net = nuage_core::spec::NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"host-local",
                "ranges":[[{"subnet":"10.84.0.0/24","rangeStart":"10.84.0.2","rangeEnd":"10.84.0.3"}]]}}"#,
        )
        .unwrap();
        let conf = HostLocalConf::parse(&net, "").unwrap();
        let why = |ip: &str| why_not_requestable(&conf, ip.parse().unwrap());
        assert_eq!(why("10.84.0.1"), "10.84.0.1 is the gateway of range set 0");
        assert_eq!(
            why("10.84.0.9"),
            "10.84.0.9 is in subnet 10.84.0.0/24 of range set 0 but outside its range 10.84.0.2-10.84.0.3"
        );
        assert_eq!(
            why("10.85.0.5"),
            "10.85.0.5 is in none of the network's subnets"
        );
        assert_eq!(
            why("10.84.0.2"),
            "10.84.0.2 lies in range set 0, which another requested address takes"
        );
    }

    #[test]
    fn resolv_conf() {
        let t = TempDir::new("resolv");
        let p = t.0.join("resolv.conf");
        std::fs::write(
            &p,
            "# comment\n; other\nnameserver 10.0.0.53\nnameserver fd00::53 extra\ndomain example.com\n\
             search a.example b.example\noptions ndots:5 rotate\nsearch c\nbogus\n",
        )
        .unwrap();
        let d = parse_resolv_conf(&p).unwrap();
        assert_eq!(d.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(d.domain.as_deref(), Some("example.com"));
        assert_eq!(d.search, ["a.example", "b.example", "c"]);
        assert_eq!(d.options, ["ndots:5", "rotate"]);
        let e = parse_resolv_conf(&t.0.join("missing")).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }
}
