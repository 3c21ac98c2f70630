//! The `bridge` plugin's keys, with the reference's names, defaults and
//! validation messages.

use nuage_core::skel::{CmdArgs, Command};
use nuage_core::{log, Error, Result};
use serde::Deserialize;

/// One `vlanTrunk` entry: `{"id": n}` or `{"minID": a, "maxID": b}`.
/// Other keys are ignored, as Go's decoder ignores them (newer reference
/// versions read `vlanTrunk`; v1.1.1 does not read it at all). An entry
/// with none of the three is refused by ADD.
#[derive(Debug, Clone, Deserialize)]
pub struct Trunk {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(rename = "minID", default)]
    pub min_id: Option<i64>,
    #[serde(rename = "maxID", default)]
    pub max_id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    #[serde(rename = "bridge", default = "default_bridge")]
    pub br_name: String,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub force_address: bool,
    #[serde(default)]
    pub ip_masq: bool,
    /// `iptables`, `nftables` or absent: nuage always uses nftables.
    #[serde(default)]
    pub ip_masq_backend: Option<String>,
    /// 0 or less: the kernel's default (Go's `int`, tested `> 0`).
    #[serde(default, deserialize_with = "mtu")]
    pub mtu: u32,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub vlan: i64,
    #[serde(default)]
    pub vlan_trunk: Vec<Trunk>,
    /// Only meaningful with `vlan`/`vlanTrunk` (refused on kernels without
    /// bridge VLAN filtering); accepted so reference configs parse.
    #[serde(default)]
    #[allow(dead_code)]
    pub preserve_default_vlan: bool,
    #[serde(default)]
    pub macspoofchk: bool,
    #[serde(rename = "enabledad", default)]
    pub enable_dad: bool,
    #[serde(default)]
    pub disable_container_interface: bool,
    #[serde(default)]
    pub port_isolation: bool,
    /// nuage: with `false`, the container interface has no IPv6 link-local
    /// address when IPAM gives IPv4 addresses only (see
    /// `link::container_up`); by default it has one, as with the reference.
    #[serde(rename = "ipv6LinkLocal", default = "yes")]
    pub ipv6_link_local: bool,
}

fn yes() -> bool {
    true
}

/// An MTU as the reference reads it: any integer, 0 or less meaning unset.
fn mtu<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v.max(0)).map_err(|_| serde::de::Error::custom(format!("mtu {v} is too large")))
}

fn default_bridge() -> String {
    "cni0".into()
}

/// The validated configuration of one request.
#[derive(Debug, Clone)]
pub struct Conf {
    pub br: BridgeConf,
    /// The container MAC: `CNI_ARGS` `MAC=`, then `args.cni.mac`, then
    /// `runtimeConfig.mac` (the `mac` capability), the last one given wins.
    pub mac: Option<[u8; 6]>,
    pub ipam: bool,
}

impl Conf {
    pub fn load(a: &CmdArgs) -> Result<Conf> {
        let mut br: BridgeConf = a.plugin_conf()?;
        if br.is_default_gateway {
            br.is_gateway = true;
        }
        let ipam = !a.conf.ipam_type().is_empty();
        // DEL needs none of what follows (it goes by the container, the
        // prevResult and the records): a config that ADD refuses must not
        // keep its cleanup DEL from succeeding, as with the reference.
        if a.command == Command::Del {
            return Ok(Conf {
                br,
                mac: None,
                ipam,
            });
        }
        // Kernel quirks as for CNI_IFNAME (see skel::validate_new_ifname):
        // with a '%' template each ADD would create another bridge.
        if br.br_name.is_empty()
            || br.br_name.len() > 15
            || br.br_name.contains(['/', ':', ' '])
            || br.br_name == "."
            || br.br_name == ".."
            || !nuage_core::skel::kernel_takes_as_is(&br.br_name)
        {
            return Err(
                Error::config(format!("invalid bridge name {:?}", br.br_name)).with_details(
                    "a bridge name is 1 to 15 characters without '/', ':', '%' or spaces, and not all or default",
                ),
            );
        }
        if br.mtu != 0 && !(68..=65535).contains(&br.mtu) {
            return Err(Error::config(format!("invalid MTU {}", br.mtu))
                .with_details("mtu is 68 to 65535, or 0 for the kernel's default"));
        }
        if br.hairpin_mode && br.promisc_mode {
            return Err(Error::config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        match br.ip_masq_backend.as_deref() {
            None | Some("nftables") => {}
            Some("iptables") => log::info(format_args!(
                "ipMasqBackend \"iptables\" is served by nftables (nuage never runs the iptables binaries)"
            )),
            Some(other) => {
                return Err(Error::config(format!("unknown ipmasq backend {other:?}"))
                    .with_details("ipMasqBackend must be \"nftables\" or \"iptables\""))
            }
        }
        if !(0..=4094).contains(&br.vlan) {
            return Err(Error::config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                br.vlan
            )));
        }
        for t in &br.vlan_trunk {
            let ok = |v: i64| (1..=4094).contains(&v);
            match (t.id, t.min_id, t.max_id) {
                (Some(id), None, None) if ok(id) => {}
                (None, Some(a), Some(b)) if ok(a) && ok(b) && a <= b => {}
                (None, Some(_), None) | (None, None, Some(_)) => {
                    return Err(Error::config(
                        "minID and maxID should be configured simultaneously",
                    ))
                }
                _ => {
                    let show = |v: Option<i64>| v.map_or("none".into(), |v| v.to_string());
                    return Err(Error::config(format!(
                        "invalid vlanTrunk entry (id {}, minID {}, maxID {})",
                        show(t.id),
                        show(t.min_id),
                        show(t.max_id)
                    ))
                        .with_details("use {\"id\": 1..4094} or {\"minID\": a, \"maxID\": b} with 1 <= a <= b <= 4094"));
                }
            }
        }
        if ipam && br.disable_container_interface {
            return Err(Error::config(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        let args = a.cni_args()?;
        args.check_known(&["IP", "MAC", "GATEWAY"])?;
        let mac = a.requested_mac(&args, None, |what, v| {
            format!("{what} {v:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        })?;
        Ok(Conf { br, mac, ipam })
    }

    /// VLAN filtering is requested.
    pub fn wants_vlan(&self) -> bool {
        self.br.vlan != 0 || !self.br.vlan_trunk.is_empty()
    }
}
