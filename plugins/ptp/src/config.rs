//! The `ptp` plugin's keys, with the reference's names and validation.

use nuage_core::skel::{CmdArgs, Command};
use nuage_core::{log, Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PtpConf {
    #[serde(default)]
    ip_masq: bool,
    /// `iptables`, `nftables` or absent: nuage always uses nftables.
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: i64,
}

/// The validated configuration of one request.
#[derive(Debug, Clone)]
pub struct Conf {
    pub ip_masq: bool,
    pub mtu: Option<u32>,
    /// `ipam.type` is set: required for ADD, CHECK and STATUS (see [`Conf::require_ipam`]).
    pub ipam: bool,
}

impl Conf {
    /// Parses and validates the config; DEL and GC, which only clean up,
    /// do not fail on a bad `ipMasqBackend` or `mtu` (STATUS does: it
    /// answers whether ADD would work).
    pub fn load(a: &CmdArgs) -> Result<Conf> {
        let p: PtpConf = a.plugin_conf()?;
        // STATUS too: it answers whether ADD would work.
        let strict = matches!(a.command, Command::Add | Command::Check | Command::Status);
        match p.ip_masq_backend.as_deref() {
            None | Some("nftables") => {}
            Some("iptables") => log::info(format_args!(
                "ipMasqBackend \"iptables\" is served by nftables (nuage never runs the iptables binaries)"
            )),
            Some(other) if strict => {
                return Err(Error::config(format!("unknown ipmasq backend {other:?}"))
                    .with_details("ipMasqBackend must be \"nftables\" or \"iptables\""))
            }
            Some(_) => {}
        }
        // Negative: unset, as the reference reads it (Go's `int`).
        let mtu = u32::try_from(p.mtu.max(0))
            .or_else(|e| if strict { Err(e) } else { Ok(0) })
            .map_err(|_| {
                Error::config(format!("invalid MTU {}", p.mtu))
                    .with_details("mtu is 0 (the kernel default) or a positive number")
            })?;
        if strict && mtu != 0 && !(68..=65535).contains(&mtu) {
            return Err(Error::config(format!("invalid MTU {mtu}"))
                .with_details("mtu is 68 to 65535, or 0 for the kernel's default"));
        }
        Ok(Conf {
            ip_masq: p.ip_masq,
            mtu: (mtu != 0).then_some(mtu),
            ipam: !a.conf.ipam_type().is_empty(),
        })
    }

    /// ptp routes the addresses IPAM gives: without IPAM there is nothing to do.
    pub fn require_ipam(&self) -> Result<()> {
        if self.ipam {
            return Ok(());
        }
        Err(Error::config("ptp requires an IPAM configuration")
            .with_details("add an \"ipam\" section, e.g. {\"type\": \"host-local\", \"subnet\": \"10.1.1.0/24\"}"))
    }
}
