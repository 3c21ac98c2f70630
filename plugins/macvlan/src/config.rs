//! The `macvlan` plugin's keys, with the reference's names, defaults and
//! validation messages, plus nuage's `hostShim`.

use ipnetwork::IpNetwork;
use nuage_core::netlink::{Link, MacvlanMode, Netlink};
use nuage_core::skel::{CmdArgs, Command};
use nuage_core::{log, Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacvlanConf {
    #[serde(default)]
    master: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    link_in_container: bool,
    /// Read in [`Conf::load`]: strictly for ADD, CHECK and STATUS, with a
    /// message of its own; ignored when bad otherwise.
    #[serde(default)]
    bcqueuelen: Option<serde_json::Value>,
    /// Read in [`Conf::load`] ([`parse_shim`]): strictly for ADD, CHECK and
    /// STATUS; a bad one is the default shim otherwise, whose records DEL
    /// and GC follow.
    #[serde(default)]
    host_shim: Option<serde_json::Value>,
}

/// `"hostShim": true`, or `{"name": ..., "addresses": [...]}`.
#[derive(Debug, Clone)]
enum ShimKey {
    On(bool),
    Spec(ShimSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShimSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    addresses: Vec<IpNetwork>,
}

/// The host-side macvlan that lets the host reach its own containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    pub name: String,
    /// Host addresses put on the shim (as /32 or /128) and used as the
    /// source of host-to-container traffic.
    pub addresses: Vec<IpNetwork>,
}

/// The validated configuration of one request.
#[derive(Debug, Clone)]
pub struct Conf {
    /// `master`; empty means "the interface of the default route".
    pub master: String,
    pub mode: MacvlanMode,
    /// 0: the master's. Checked against the master's in [`Conf::master`].
    pub mtu: i64,
    /// The container MAC: `mac`, then `CNI_ARGS` `MAC=`, then `args.cni.mac`,
    /// then `runtimeConfig.mac`; the last one given wins.
    pub mac: Option<[u8; 6]>,
    pub link_in_container: bool,
    pub bcqueuelen: Option<u32>,
    pub ipam: bool,
    pub shim: Option<Shim>,
}

impl Conf {
    /// Parses and validates the config without looking at any link (DEL
    /// must work when the master is gone). DEL and GC only need to know
    /// what to clean up: a bad mode, MAC or `CNI_ARGS` does not stop them
    /// (the reference's DEL does not read them either). STATUS reads them
    /// as ADD does: it answers whether ADD would work.
    pub fn load(a: &CmdArgs) -> Result<Conf> {
        let mv: MacvlanConf = a.plugin_conf()?;
        // STATUS too: it answers whether ADD would work.
        let strict = matches!(a.command, Command::Add | Command::Check | Command::Status);
        let mode = match parse_mode(&mv.mode) {
            Err(e) if strict => return Err(e),
            r => r.unwrap_or(MacvlanMode::Bridge),
        };
        let mac = if strict { mac(a, &mv)? } else { None };
        let ipam = !a.conf.ipam_type().is_empty();
        // Outside ADD, CHECK and STATUS a value that does not parse is
        // ignored: a bad `bcqueuelen` is unset, a bad `hostShim` is the
        // default shim, whose records (which name the shim they used) DEL
        // and GC follow.
        let bcqueuelen = match mv.bcqueuelen.map(serde_json::from_value::<u32>) {
            Some(Err(e)) if strict => {
                return Err(Error::config(format!("invalid bcqueuelen: {e}"))
                    .with_details("bcqueuelen is the broadcast queue length, 0 to 4294967295"))
            }
            Some(r) => r.ok(),
            None => None,
        };
        let shim = match mv.host_shim.map(parse_shim) {
            None | Some(Ok(ShimKey::On(false))) => None,
            Some(Ok(ShimKey::On(true))) => Some(ShimSpec::default()),
            Some(Ok(ShimKey::Spec(s))) => Some(s),
            Some(Err(e)) if strict => return Err(e),
            Some(Err(_)) => Some(ShimSpec::default()),
        };
        let shim = match shim {
            None => None,
            Some(s) => {
                let fail = |msg: &str| match strict {
                    true => Err(Error::config(format!("hostShim: {msg}"))),
                    false => Ok(()),
                };
                if mv.link_in_container {
                    fail("cannot be used with linkInContainer (the master is not on the host)")?;
                }
                if !matches!(mode, MacvlanMode::Bridge | MacvlanMode::Vepa) {
                    fail(&format!(
                        "needs mode \"bridge\" (or \"vepa\"): in mode {mode} the host shim cannot talk to its sibling macvlans"
                    ))?;
                }
                if !ipam {
                    fail("needs IPAM: the shim routes the containers' addresses")?;
                }
                let mut name = s.name.unwrap_or_else(|| default_shim_name(&a.conf.name));
                if nuage_core::skel::validate_ifname(&name).is_err()
                    || !nuage_core::skel::kernel_takes_as_is(&name)
                {
                    if strict {
                        return Err(Error::config(format!(
                            "hostShim: invalid interface name {name:?}"
                        )));
                    }
                    name = default_shim_name(&a.conf.name);
                }
                Some(Shim {
                    name,
                    addresses: s.addresses,
                })
            }
        };
        Ok(Conf {
            master: mv.master,
            mode,
            mtu: mv.mtu,
            mac,
            link_in_container: mv.link_in_container,
            bcqueuelen,
            ipam,
            shim,
        })
    }

    /// The master link: `master`, or the interface of the first default
    /// route (in the container with `linkInContainer`), whose MTU bounds ours.
    /// `nl` is the socket of the namespace the master lives in.
    pub fn master(&self, nl: &mut Netlink) -> Result<Link> {
        let name = if self.master.is_empty() {
            let (name, via) = default_route_interface(nl)?;
            log::info(format_args!(
                "\"master\" not set: using {name:?}, the interface of the default route{via}"
            ));
            name
        } else {
            self.master.clone()
        };
        let master = nl.link_by_name(&name)?.ok_or_else(|| {
            Error::internal(format!("failed to lookup master {name:?}: Link not found"))
                .with_details(if self.link_in_container {
                    format!(
                        "linkInContainer is set: {name} must exist in the container's namespace"
                    )
                } else {
                    format!("set \"master\" to an existing host interface ({name} does not exist)")
                })
        })?;
        // The reference's bounds, and the kernel's floor (68, IPv4's minimum;
        // below it the kernel's EINVAL reads like a bad master).
        let below_ipv4 = (1..68).contains(&self.mtu);
        if self.mtu < 0 || self.mtu > i64::from(master.mtu) || below_ipv4 {
            let bounds = if below_ipv4 {
                "must be 0 or at least 68, IPv4's minimum".to_string()
            } else {
                format!("must be [0, master MTU({})]", master.mtu)
            };
            return Err(
                Error::config(format!("invalid MTU {}, {bounds}", self.mtu)).with_details(format!(
                    "mtu is 68 to {} (the MTU of {}), or 0 for the master's",
                    master.mtu, master.name
                )),
            );
        }
        Ok(master)
    }
}

impl Conf {
    /// DEL and GC: the shim whose records to follow: the config's, or,
    /// when the config no longer has `hostShim` but the network has
    /// records (the key was removed while containers were attached), the
    /// default one (each record names the shim it used).
    pub fn shim_to_clean(&self, a: &CmdArgs) -> Option<String> {
        match &self.shim {
            Some(s) => Some(s.name.clone()),
            None => crate::shim::has_records(&a.conf.name).then(|| default_shim_name(&a.conf.name)),
        }
    }

    /// The MTU to create the macvlan with; `None` is the master's.
    pub fn mtu(&self) -> Option<u32> {
        u32::try_from(self.mtu).ok().filter(|m| *m != 0)
    }
}

/// The container MAC: `mac`, then `CNI_ARGS` `MAC=`, then `args.cni.mac`,
/// then `runtimeConfig.mac`; the last one given wins.
fn mac(a: &CmdArgs, mv: &MacvlanConf) -> Result<Option<[u8; 6]>> {
    let args = a.cni_args()?;
    args.check_known(&["IP", "MAC", "GATEWAY"])?;
    a.requested_mac(&args, Some(&mv.mac), |what, v| {
        format!("invalid args {v} for MAC addr: {what} is not a MAC address")
    })
}

fn parse_shim(v: serde_json::Value) -> Result<ShimKey> {
    let e = match v {
        serde_json::Value::Bool(b) => return Ok(ShimKey::On(b)),
        v @ serde_json::Value::Object(_) => match serde_json::from_value(v) {
            Ok(spec) => return Ok(ShimKey::Spec(spec)),
            Err(e) => e.to_string(),
        },
        other => format!("{other} is neither a boolean nor an object"),
    };
    Err(Error::config(format!("invalid hostShim: {e}")).with_details(
        "hostShim is true, or {\"name\": \"<ifname>\", \"addresses\": [\"<ip>/<prefix>\", ...]}",
    ))
}

fn parse_mode(s: &str) -> Result<MacvlanMode> {
    Ok(match s {
        "" | "bridge" => MacvlanMode::Bridge,
        "private" => MacvlanMode::Private,
        "vepa" => MacvlanMode::Vepa,
        "passthru" => MacvlanMode::Passthru,
        _ => {
            return Err(
                Error::config(format!("unknown macvlan mode: {s:?}")).with_details(
                    "mode is one of \"bridge\" (default), \"private\", \"vepa\", \"passthru\"",
                ),
            )
        }
    })
}

/// `mvshim<8 hex>`, from the network name: one shim per network.
fn default_shim_name(network: &str) -> String {
    // FNV-1a: stable across versions and machines, no dependency.
    let h = network.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("mvshim{h:08x}")
}

/// The interface of the first default route of the main table (IPv4 first),
/// as the reference picks it; also says which route, for the log.
fn default_route_interface(nl: &mut Netlink) -> Result<(String, String)> {
    const MAIN: u32 = 254;
    let routes = nl.routes(None)?;
    let route = routes
        .iter()
        .find(|r| r.table == MAIN && r.dst.prefix() == 0 && r.oif.is_some())
        .ok_or_else(|| {
            Error::internal("no default route interface found").with_details(
                "set \"master\" in the network config to the host interface to attach to",
            )
        })?;
    let oif = route.oif.unwrap_or_default();
    let link = nl
        .link_by_index(oif)?
        .ok_or_else(|| Error::internal(format!("default route interface {oif} vanished")))?;
    let via = route.gw.map(|g| format!(" via {g}")).unwrap_or_default();
    Ok((link.name, format!(" ({}{via})", route.dst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_shim_names() {
        assert_eq!(parse_mode("").unwrap(), MacvlanMode::Bridge);
        assert_eq!(parse_mode("passthru").unwrap(), MacvlanMode::Passthru);
        assert_eq!(
            parse_mode("l2").unwrap_err().msg,
            "unknown macvlan mode: \"l2\""
        );
        let n = default_shim_name("net1");
        assert_eq!(n.len(), 14);
        assert_eq!(n, default_shim_name("net1"));
        assert_ne!(n, default_shim_name("net2"));
    }
}
