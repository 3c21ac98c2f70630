//! ADD results: one model (the 1.1.0 shape) and conversion to and from every
//! version's wire shape, as libcni converts.
//!
//! | version         | shape                                                         |
//! |-----------------|---------------------------------------------------------------|
//! | 1.0.0, 1.1.0    | `interfaces`, `ips`, `routes`, `dns` (omitted when empty)     |
//! | 0.3.x, 0.4.0    | as 1.x, `ips[].version` added, interface `mtu`/`socketPath`/`pciID` dropped, `dns` always present |
//! | 0.1.0, 0.2.0    | `ip4`/`ip6` (first address of each family), routes by family  |

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::version;
use crate::{Error, Result};

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces, empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address with its prefix length, as Go's `net.ParseCIDR` reads it:
/// "10.1.0.5" alone is refused (`ipnetwork` would take it as a /32).
fn cidr<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<IpNetwork, D::Error> {
    use serde::de::Error as _;
    let s = String::deserialize(d)?;
    match s.split_once('/') {
        Some((_, len)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("invalid CIDR address: {s}"))),
        _ => Err(D::Error::custom(format!(
            "invalid CIDR address: {s} (an address with its prefix length, like 10.1.0.5/24)"
        ))),
    }
}

/// An optional address ("10.1.0.1", no prefix length), named in the error.
fn ip_opt<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<IpAddr>, D::Error> {
    use serde::de::Error as _;
    match Option::<String>::deserialize(d)? {
        // Go reads "" as no address.
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            D::Error::custom(format!(
                "invalid IP address: {s} (an address without a prefix length, like 10.1.0.1)"
            ))
        }),
    }
}

/// An address in a result; `address` keeps its host bits ("10.1.0.5/16").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(deserialize_with = "cidr")]
    pub address: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(deserialize_with = "cidr")]
    pub dst: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(rename = "advmss", default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 0 global, 253 link, 254 host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// The route as a config or result of `version` has it: `mtu`,
    /// `advmss`, `priority`, `table` and `scope` are spec 1.1.0 fields, so
    /// before 1.1.0 they are not read (as the reference v1.1.1 does not),
    /// neither put in a result nor applied.
    pub fn for_version(self, version: &str) -> Route {
        if version::at_least(version, "1.1.0") {
            return self;
        }
        Route::new(self.dst, self.gw)
    }

    /// A plain route to `dst`, via `gw` when given.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings, in the result's key names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result in the 1.1.0 model; [`CniResult::to_json`] prints any version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// The 0.1.0/0.2.0 per-family block.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ip020 {
    #[serde(deserialize_with = "cidr")]
    ip: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_opt",
        skip_serializing_if = "Option::is_none"
    )]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

impl CniResult {
    /// Reads a result of any version (a `prevResult`, a delegate's output or
    /// a cached result). A missing `cniVersion` means `default_version`.
    pub fn from_json(v: &Value, default_version: &str) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::decode(format!("result is not a JSON object: {v}")))?;
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => default_version.to_string(),
        };
        // Read as another version's, its fields would be dropped unseen.
        if !version::ALL.contains(&cni_version.as_str()) {
            return Err(Error::decode(format!(
                "result cniVersion {cni_version:?} is not a CNI result version: one of {} is expected",
                version::ALL.join(", ")
            )));
        }
        let field = |k: &str| obj.get(k).filter(|v| !v.is_null()).cloned();
        let decode = |what: &str, e: serde_json::Error| {
            Error::decode(format!("result {what}: {}", super::plain_decode_error(e)))
        };

        let mut r = CniResult {
            cni_version,
            ..Default::default()
        };
        if let Some(d) = field("dns") {
            r.dns = serde_json::from_value(d).map_err(|e| decode("dns", e))?;
        }
        if !version::at_least(&r.cni_version, "0.3.0") {
            for key in ["ip4", "ip6"] {
                if let Some(b) = field(key) {
                    let b: Ip020 = serde_json::from_value(b).map_err(|e| decode(key, e))?;
                    r.ips.push(IpConfig {
                        interface: None,
                        address: b.ip,
                        gateway: b.gateway,
                    });
                    r.routes.extend(b.routes);
                }
            }
            return Ok(r);
        }
        if let Some(i) = field("interfaces") {
            r.interfaces = serde_json::from_value(i).map_err(|e| decode("interfaces", e))?;
        }
        if let Some(ips) = field("ips") {
            // 0.3.x/0.4.0 carry "version": ignored, it is derived from the address.
            r.ips = serde_json::from_value(ips).map_err(|e| decode("ips", e))?;
        }
        if let Some(routes) = field("routes") {
            let routes: Vec<Route> =
                serde_json::from_value(routes).map_err(|e| decode("routes", e))?;
            let v = r.cni_version.clone();
            r.routes = routes.into_iter().map(|x| x.for_version(&v)).collect();
        }
        Ok(r)
    }

    /// CHECK only (stricter than the reference, which passes such a
    /// result along): every `ips[].interface` names one of `interfaces`.
    /// ADD and DEL, like libcni, take a dangling index as no interface.
    pub fn check_interface_indexes(&self) -> Result<()> {
        for ip in &self.ips {
            if let Some(i) = ip.interface {
                if i >= self.interfaces.len() {
                    return Err(Error::decode(format!(
                        "result ips: address {} names interface {i}, but the result has {} interface(s)",
                        ip.address,
                        self.interfaces.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The wire form in `version` (which must be a supported version).
    pub fn to_json(&self, version: &str) -> Result<Value> {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if !version::at_least(version, "0.3.0") {
            // 0.1.0/0.2.0: the first address of each family.
            let mut found = false;
            for (key, v4) in [("ip4", true), ("ip6", false)] {
                let Some(ip) = self.ips.iter().find(|ip| ip.address.is_ipv4() == v4) else {
                    continue;
                };
                found = true;
                // The 0.2.0 route is `dst` and `gw` only (as libcni's converter).
                let routes = self
                    .routes
                    .iter()
                    .filter(|r| r.dst.is_ipv4() == v4)
                    .map(|r| Route::new(r.dst, r.gw))
                    .collect();
                let block = Ip020 {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes,
                };
                out.insert(key.into(), val(&block));
            }
            if !found {
                return Err(Error::internal("cannot convert: no valid IP addresses").with_details(format!(
                    "a {version} result needs at least one IP address; use cniVersion 0.3.0 or later for a result without addresses"
                )));
            }
            out.insert("dns".into(), val(&self.dns));
            return Ok(Value::Object(out));
        }
        let legacy = !version::at_least(version, "1.0.0");
        if !self.interfaces.is_empty() {
            let ifaces: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    if legacy {
                        val(&Interface {
                            name: i.name.clone(),
                            mac: i.mac.clone(),
                            sandbox: i.sandbox.clone(),
                            ..Default::default()
                        })
                    } else {
                        val(i)
                    }
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(ifaces));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut v = val(ip);
                    if legacy {
                        let fam = if ip.address.is_ipv4() { "4" } else { "6" };
                        // Go's field order: version, interface, address, gateway.
                        let mut m = Map::new();
                        m.insert("version".into(), json!(fam));
                        if let Value::Object(o) = v {
                            m.extend(o);
                        }
                        v = Value::Object(m);
                    }
                    v
                })
                .collect();
            out.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            out.insert("routes".into(), val(&self.routes));
        }
        if legacy || !self.dns.is_empty() {
            out.insert("dns".into(), val(&self.dns));
        }
        Ok(Value::Object(out))
    }

    /// The interface `ifname` of the container `netns`, as CHECK looks it
    /// up (the reference's message when the sandbox differs).
    pub fn container_interface(&self, ifname: &str, netns: &str) -> Result<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.name == ifname && i.sandbox == netns)
            .ok_or_else(|| {
                let sandbox = self
                    .interfaces
                    .iter()
                    .find(|i| i.name == ifname)
                    .map_or("", |i| i.sandbox.as_str());
                Error::internal(format!(
                    "Sandbox in prevResult {sandbox} doesn't match configured netns: {netns}"
                ))
            })
    }

    /// The IPAM form: no interfaces, no interface index on addresses.
    pub fn into_ipam(mut self) -> Self {
        self.interfaces.clear();
        for ip in &mut self.ips {
            ip.interface = None;
        }
        self
    }
}

/// Serializes a result part (plain data: this cannot fail).
fn val<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "0a:58:0a:01:00:05".into(),
                mtu: Some(1400),
                sandbox: "/run/netns/x".into(),
                ..Default::default()
            }],
            ips: vec![
                IpConfig {
                    interface: Some(0),
                    address: "10.1.0.5/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                },
                IpConfig {
                    interface: Some(0),
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                },
            ],
            routes: vec![
                Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.0.1".parse().unwrap()),
                ),
                Route {
                    table: Some(100),
                    scope: Some(253),
                    ..Route::new("::/0".parse().unwrap(), None)
                },
            ],
            dns: Dns::default(),
        }
    }

    /// An address or route destination needs its prefix length, as Go's
    /// ParseCIDR (the reference) requires.
    #[test]
    fn addresses_need_a_prefix_length() {
        for bad in [
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.86.0.5"}]}),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.86.0.5/"}]}),
            json!({"cniVersion": "1.0.0", "routes": [{"dst": "10.0.0.0"}]}),
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.86.0.5"}}),
        ] {
            let e = CniResult::from_json(&bad, "1.0.0").unwrap_err();
            assert!(e.to_string().contains("invalid CIDR address"), "{bad}: {e}");
        }
        let ok = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.86.0.5/32"}]});
        assert!(CniResult::from_json(&ok, "1.0.0").is_ok());
        // "" is no gateway, as Go reads it, in every version's shape.
        for empty in [
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.86.0.5/24", "gateway": ""}]}),
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.86.0.5/24", "gateway": ""}}),
        ] {
            let r = CniResult::from_json(&empty, "1.0.0").unwrap();
            assert_eq!(r.ips[0].gateway, None, "{empty}");
        }
        // A gateway is an address without one, named when it is not.
        let bad = json!({"cniVersion": "1.0.0",
                         "ips": [{"address": "10.86.0.5/24", "gateway": "10.86.0.1/24"}]});
        let e = CniResult::from_json(&bad, "1.0.0").unwrap_err();
        assert!(
            e.to_string().contains("invalid IP address: 10.86.0.1/24"),
            "{e}"
        );
    }

    #[test]
    fn one_x_shape() {
        let v = sample().to_json("1.1.0").unwrap();
        assert_eq!(v["interfaces"][0]["mtu"], 1400);
        assert_eq!(v["ips"][0]["address"], "10.1.0.5/16");
        assert!(v["ips"][0].get("version").is_none());
        assert!(v.get("dns").is_none());
        assert_eq!(v["routes"][1]["table"], 100);
    }

    #[test]
    fn zero_four_shape() {
        let v = sample().to_json("0.4.0").unwrap();
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert_eq!(v["dns"], json!({}));
        let back = CniResult::from_json(&v, "0.4.0").unwrap();
        assert_eq!(back.ips, sample().ips);
    }

    #[test]
    fn zero_two_shape() {
        let v = sample().to_json("0.2.0").unwrap();
        assert_eq!(v["ip4"]["ip"], "10.1.0.5/16");
        assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(
            v["ip6"]["routes"][0],
            json!({"dst": "::/0"}),
            "dst and gw only"
        );
        assert!(v.get("ips").is_none());
        let back = CniResult::from_json(&v, "0.2.0").unwrap();
        assert_eq!(back.ips.len(), 2);
        assert_eq!(back.routes.len(), 2);
        let empty = CniResult::default().to_json("0.2.0").unwrap_err();
        assert_eq!(empty.msg, "cannot convert: no valid IP addresses");
    }

    #[test]
    fn rejects_bad_interface_index() {
        let v = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        let r = CniResult::from_json(&v, "1.0.0").unwrap();
        assert!(r.check_interface_indexes().is_err());
    }

    /// A result of a version we do not know is refused, not read as an
    /// 0.2.0 one (which would drop its interfaces, ips and routes).
    #[test]
    fn rejects_unknown_result_versions() {
        for bad in ["1.0", "abc", "1.2.0", "v1.0.0"] {
            let v = json!({"cniVersion": bad, "ips": [{"address": "10.0.0.2/24"}]});
            let e = CniResult::from_json(&v, "1.0.0").unwrap_err();
            assert_eq!(e.code, crate::Code::Decode, "{bad}");
            assert!(e.msg.contains(&format!("{bad:?}")), "{e}");
        }
        let v = json!({"ips": [{"address": "10.0.0.2/24"}]});
        assert_eq!(CniResult::from_json(&v, "1.0.0").unwrap().ips.len(), 1);
    }
}
