//! The static IPAM plugin: the configured addresses, routes and DNS, with
//! the `ips` capability, `args.cni.ips` and `CNI_ARGS` `IP=`/`GATEWAY=`
//! overrides (see [`StaticConf::parse`]). Nothing is stored: DEL and GC
//! have nothing to do.

use nuage_core::skel::{CmdArgs, Command, Plugin};
use nuage_core::spec::{version, CniResult, IpConfig, KeyChecks};
use nuage_core::{Error, Result};

use crate::config::StaticConf;

/// The static plugin, for [`nuage_core::skel::run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Static;

impl Plugin for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    /// It names no link after CNI_IFNAME.
    fn names_links(&self) -> bool {
        false
    }
    /// See [`crate::key_checks`].
    fn key_checks(&self, cmd: Command) -> KeyChecks {
        crate::key_checks(cmd, false)
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
    fn status(&self, a: &CmdArgs) -> Result<()> {
        status(a)
    }
}

/// ADD: the configured addresses (host bits kept) with their gateways.
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    let conf = StaticConf::parse(&a.conf, &a.args)?;
    Ok(CniResult {
        cni_version: version::CURRENT.into(),
        interfaces: Vec::new(),
        ips: conf
            .addresses
            .iter()
            .map(|(address, gateway)| IpConfig {
                interface: None,
                address: *address,
                gateway: *gateway,
            })
            .collect(),
        routes: conf.routes,
        dns: conf.dns,
    })
}

/// DEL: nothing was allocated, so nothing to release.
pub fn del(_a: &CmdArgs) -> Result<()> {
    Ok(())
}

/// CHECK: every configured address must be in `prevResult`, with the
/// configured gateway when one is set. (The reference only compares the
/// addresses it finds and passes when one is missing; a missing address is
/// an error here, as the spec asks.)
pub fn check(a: &CmdArgs) -> Result<()> {
    let conf = StaticConf::parse(&a.conf, &a.args)?;
    let prev = a
        .prev_result()?
        .ok_or_else(|| Error::internal("Required prevResult missing"))?;
    for (address, gateway) in &conf.addresses {
        let Some(found) = prev.ips.iter().find(|c| c.address.ip() == address.ip()) else {
            return Err(Error::internal(format!(
                "static: address {address} not found in prevResult for interface {}",
                a.ifname
            )));
        };
        if gateway.is_some() && found.gateway != *gateway {
            return Err(Error::internal(format!(
                "static: Failed to match addr {} on interface {}",
                found.address.ip(),
                a.ifname
            ))
            .with_details(format!(
                "the result's gateway is {}, the config's {}",
                found.gateway.map_or("none".into(), |g| g.to_string()),
                gateway.map_or("none".into(), |g| g.to_string())
            )));
        }
    }
    Ok(())
}

/// STATUS: ready when the configuration is valid (code 50 otherwise).
pub fn status(a: &CmdArgs) -> Result<()> {
    StaticConf::parse(&a.conf, "")
        .map(drop)
        .map_err(|e| Error::not_available(format!("static is not ready: {e}")))
}
