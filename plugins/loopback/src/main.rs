//! `loopback`: the "none" network. ADD sets `lo` up in the container and
//! reports its addresses; DEL sets it down; CHECK fails when it is down.
//! `CNI_IFNAME` is ignored: this plugin only ever acts on `lo`.

use nuage_core::netlink::{Link, MacAddr, Netlink};
use nuage_core::netns::NetNs;
use nuage_core::skel::{self, CmdArgs, Command, Plugin};
use nuage_core::spec::{CniResult, Interface, IpConfig, KeyChecks};
use nuage_core::{Error, Result, ResultExt};

struct Loopback;

const LO: &str = "lo";

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }
    /// It names no link after CNI_IFNAME.
    fn names_links(&self) -> bool {
        false
    }
    /// As the reference's: ADD decodes Go's `types.NetConf` (`ipam`, `dns`,
    /// `capabilities`), CHECK and DEL read no config key.
    fn key_checks(&self, cmd: Command) -> KeyChecks {
        match cmd {
            Command::Add => KeyChecks {
                ipam: true,
                dns_capabilities: true,
                runtime: false,
            },
            _ => KeyChecks::NONE,
        }
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        a.cni_args()?.check_known(&[])?;
        let prev = a.prev_result()?;
        let ns = a.open_netns()?;
        let mut nl = Netlink::in_netns(&ns)?;
        let lo = lo_link(&mut nl, &ns)?;
        nl.set_up(lo.index).context("set lo up")?;

        let addrs = nl.addrs(Some(lo.index)).context("list lo addresses")?;
        if let Some(bad) = addrs.iter().find(|a| !a.address.ip().is_loopback()) {
            return Err(Error::internal(format!(
                "loopback interface found with non-loopback address {:?}",
                bad.address.ip().to_string()
            ))
            .with_details(format!(
                "in netns {}: remove that address from lo",
                ns.path().display()
            )));
        }
        if let Some(prev) = prev {
            return Ok(prev);
        }
        // The first address of each family, IPv4 first, as the reference reports.
        let first = |v4: bool| addrs.iter().find(|a| a.address.is_ipv4() == v4);
        let ips = [first(true), first(false)]
            .into_iter()
            .flatten()
            .map(|a| IpConfig {
                interface: Some(0),
                address: a.address,
                gateway: None,
            })
            .collect();
        Ok(CniResult {
            cni_version: a.conf.cni_version.clone(),
            interfaces: vec![Interface {
                name: LO.into(),
                mac: MacAddr(lo.mac.unwrap_or_default()).to_string(),
                sandbox: a.netns.clone().unwrap_or_default(),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        })
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let Some(ns) = a.open_netns_for_del()? else {
            return Ok(());
        };
        let mut nl = Netlink::in_netns(&ns)?;
        match nl.link_by_name(LO)? {
            Some(lo) => nl.set_down(lo.index).context("set lo down"),
            None => Ok(()),
        }
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let ns = a.open_netns()?;
        let mut nl = Netlink::in_netns(&ns)?;
        if !lo_link(&mut nl, &ns)?.flags_up {
            return Err(
                Error::internal("loopback interface is down").with_details(format!(
                    "lo in netns {} is down: run ADD again",
                    ns.path().display()
                )),
            );
        }
        Ok(())
    }
}

fn lo_link(nl: &mut Netlink, ns: &NetNs) -> Result<Link> {
    nl.link_by_name(LO)?
        .ok_or_else(|| Error::internal(format!("no lo interface in netns {}", ns.path().display())))
}

/// A bump allocator: this process lives for one CNI operation (see
/// `nuage_core::alloc`).
#[global_allocator]
static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();

fn main() {
    skel::run(&Loopback)
}
