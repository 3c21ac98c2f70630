//! The `host-device` plugin's keys, with the reference's names and
//! validation messages, and the device they select.

use std::path::{Component, Path, PathBuf};

use nuage_core::netlink::{Link, MacAddr, Netlink};
use nuage_core::skel::{CmdArgs, Command};
use nuage_core::{log, Error, Result};
use serde::Deserialize;

const SYS_BUS_PCI: &str = "/sys/bus/pci/devices";
const SYS_BUS_AUX: &str = "/sys/bus/auxiliary/devices";
/// Drivers that hand a PCI device to user space (DPDK): no netdev to move.
const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];
/// Where the record of each moved device is kept (the `dataDir` key).
const DATA_DIR: &str = "/var/lib/cni/host-device";

#[derive(Debug, Clone, Deserialize)]
struct HostDeviceConf {
    #[serde(default)]
    device: String,
    #[serde(default)]
    hwaddr: String,
    #[serde(default)]
    kernelpath: String,
    #[serde(rename = "pciBusID", default)]
    pci_bus_id: String,
    #[serde(rename = "dataDir", default)]
    data_dir: Option<PathBuf>,
}

/// How the device is named in the config: exactly one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `device`: a host interface name.
    Name(String),
    /// `hwaddr`.
    Mac([u8; 6]),
    /// `kernelpath`: `/sys/devices/...`, whose `net/` lists the interface.
    KernelPath(PathBuf),
    /// `pciBusID` (or a PCI `runtimeConfig.deviceID`).
    Pci(String),
    /// An auxiliary-bus `runtimeConfig.deviceID`.
    Aux(String),
}

#[derive(Debug, Clone)]
pub struct Conf {
    /// `None` for DEL, GC and STATUS.
    pub selector: Option<Selector>,
    /// A PCI `runtimeConfig.deviceID` the config's own selector overrides:
    /// still the device whose user-space driver means DPDK mode.
    injected_pci: Option<String>,
    pub ipam: bool,
    pub data_dir: PathBuf,
}

impl Conf {
    /// Parses and validates the config. The device selector is checked for
    /// ADD and CHECK only: DEL, GC and STATUS find devices by their records,
    /// and must not fail because a device (a `deviceID`) is gone.
    pub fn load(a: &CmdArgs) -> Result<Conf> {
        let hd: HostDeviceConf = a.plugin_conf()?;
        let data_dir = hd
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DATA_DIR));
        if !data_dir.is_absolute()
            || data_dir
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(Error::config(format!(
                "dataDir {} must be an absolute path without . or ..",
                data_dir.display()
            )));
        }
        let strict = matches!(a.command, Command::Add | Command::Check);
        let (selector, injected_pci) = if strict {
            let (s, i) = selector(a, hd)?;
            (Some(s), i)
        } else {
            (None, None)
        };
        Ok(Conf {
            selector,
            injected_pci,
            ipam: !a.conf.ipam_type().is_empty(),
            data_dir,
        })
    }

    fn selected(&self) -> Result<&Selector> {
        self.selector
            .as_ref()
            .ok_or_else(|| Error::internal("no device selector outside ADD and CHECK"))
    }

    /// A PCI device bound to a user-space (DPDK) driver: there is no
    /// interface to move, the container gets the device some other way.
    pub fn dpdk(&self) -> Result<bool> {
        let id = match (self.selected()?, &self.injected_pci) {
            (Selector::Pci(id), _) | (_, Some(id)) => id,
            _ => return Ok(false),
        };
        let driver = Path::new(SYS_BUS_PCI).join(id).join("driver");
        // No driver bound: no DPDK, and no interface either, which the
        // lookup then reports by its PCI address.
        if !driver.exists() {
            return Ok(false);
        }
        let target = std::fs::read_link(&driver).map_err(|e| {
            Error::os(
                format_args!("error with host device: {}", driver.display()),
                e,
            )
        })?;
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
        Ok(USERSPACE_DRIVERS.contains(&name))
    }

    /// The selected host interface.
    pub fn find(&self, host: &mut Netlink) -> Result<Link> {
        let fail = |why: String| Error::internal(format!("failed to find host device: {why}"));
        let by_name = |host: &mut Netlink, name: &str| {
            host.link_by_name(name)?
                .ok_or_else(|| fail(format!("Link not found: no interface {name:?} on the host")))
        };
        match self.selected()? {
            Selector::Name(name) => by_name(host, name),
            Selector::Mac(mac) => host
                .links()?
                .into_iter()
                .find(|l| l.mac == Some(*mac))
                .ok_or_else(|| {
                    fail(format!(
                        "no interface with MAC {} on the host",
                        MacAddr(*mac)
                    ))
                }),
            Selector::KernelPath(p) => by_name(host, &first_netdev(&p.join("net"))?),
            Selector::Aux(id) => by_name(
                host,
                &first_netdev(&Path::new(SYS_BUS_AUX).join(id).join("net"))?,
            ),
            Selector::Pci(id) => {
                let dir = Path::new(SYS_BUS_PCI).join(id);
                let net = if dir.join("net").exists() {
                    dir.join("net")
                } else {
                    // virtio devices: /sys/bus/pci/devices/<id>/virtio<N>/net
                    std::fs::read_dir(&dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path().join("net"))
                        .find(|p| {
                            p.parent()
                                .and_then(|d| d.file_name())
                                .is_some_and(|n| n.to_string_lossy().starts_with("virtio"))
                                && p.exists()
                        })
                        .ok_or_else(|| fail(format!("no net directory under pci device {id}")))?
                };
                by_name(host, &first_netdev(&net)?)
            }
        }
    }
}

/// The one way the config names the device (`deviceID` replaces `pciBusID`),
/// and the PCI `deviceID` it overrides, if any.
fn selector(a: &CmdArgs, hd: HostDeviceConf) -> Result<(Selector, Option<String>)> {
    let mut pci = Some(hd.pci_bus_id).filter(|s| !s.is_empty());
    let mut aux = None;
    let mut pci_key = "pciBusID";
    let device_id = a
        .conf
        .runtime("deviceID")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty());
    // A runtime injects `deviceID` (Multus with a device plugin) whatever
    // the config says. As the reference: it must exist; bound to a
    // user-space driver it means DPDK mode; otherwise a config that names
    // its device by name, MAC or path keeps it (the reference's order:
    // device, hwaddr, kernelpath, then the PCI address).
    let named = !hd.device.is_empty() || !hd.hwaddr.is_empty() || !hd.kernelpath.is_empty();
    let mut injected_pci = None;
    if let Some(id) = device_id {
        let on_pci = bus_entry(SYS_BUS_PCI, id).is_some_and(|p| p.exists());
        if !on_pci && !bus_entry(SYS_BUS_AUX, id).is_some_and(|p| p.exists()) {
            return Err(Error::config(format!(
                "runtime config DeviceID {id} not found or unsupported"
            ))
            .with_details(format!(
                "{id} is neither in {SYS_BUS_PCI} nor in {SYS_BUS_AUX}"
            )));
        }
        if named {
            log::info(format_args!(
                "runtimeConfig.deviceID {id}: the config names its device, which is used"
            ));
            injected_pci = on_pci.then(|| id.to_string());
        } else {
            // The `deviceID` capability replaces `pciBusID`.
            pci_key = "runtimeConfig.deviceID";
            if on_pci {
                pci = Some(id.to_string());
            } else {
                pci = None;
                aux = Some(id.to_string());
            }
        }
    }
    let given: Vec<&str> = [
        ("device", !hd.device.is_empty()),
        ("hwaddr", !hd.hwaddr.is_empty()),
        ("kernelpath", !hd.kernelpath.is_empty()),
        (pci_key, pci.is_some() || aux.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if given.is_empty() {
        return Err(Error::config(
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ));
    }
    if given.len() > 1 {
        return Err(Error::config(
            r#"specify only one of "device", "hwaddr", "kernelpath" or "pciBusID""#,
        )
        .with_details(format!(
            "the config gives {}: keep the one that names the device",
            given.join(" and ")
        )));
    }
    let selector = if !hd.device.is_empty() {
        Selector::Name(hd.device)
    } else if !hd.hwaddr.is_empty() {
        let mac: MacAddr = hd.hwaddr.parse().map_err(|e: Error| {
            Error::config(format!(
                "failed to parse MAC address {:?}: {}",
                hd.hwaddr, e.msg
            ))
        })?;
        Selector::Mac(mac.0)
    } else if !hd.kernelpath.is_empty() {
        let p = PathBuf::from(&hd.kernelpath);
        let clean = p
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !p.is_absolute() || !p.starts_with("/sys/devices/") || !clean {
            return Err(Error::config(format!(
                "kernel device path {:?} must be absolute and begin with /sys/devices/",
                hd.kernelpath
            )));
        }
        Selector::KernelPath(p)
    } else if let Some(id) = aux {
        Selector::Aux(id)
    } else {
        let id = pci.unwrap_or_default();
        if bus_entry(SYS_BUS_PCI, &id).is_none() {
            return Err(Error::config(format!("invalid PCI address {id:?}")));
        }
        Selector::Pci(id)
    };
    Ok((selector, injected_pci))
}

/// `<bus>/<id>`, unless `id` could leave the bus directory.
fn bus_entry(bus: &str, id: &str) -> Option<PathBuf> {
    let ok = !id.is_empty() && !id.contains('/') && id != "." && id != "..";
    ok.then(|| Path::new(bus).join(id))
}

/// The first interface listed in a sysfs `net/` directory (sorted: stable).
fn first_netdev(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| {
            Error::os(
                format_args!("failed to find host device: read {}", dir.display()),
                e,
            )
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next().ok_or_else(|| {
        Error::internal(format!(
            "failed to find host device: no network device in {}",
            dir.display()
        ))
    })
}
