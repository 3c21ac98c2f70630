//! The `ipam` sections of host-local and static, parsed strictly and fully
//! validated before anything touches the disk.
//!
//! Policy on unknown keys: the reference plugins ignore them (and Go matches
//! keys case-insensitively). nuage refuses an unknown key in the `ipam`
//! section, in a range and in a route with code 7, naming the key and the
//! known ones, because a misspelt `rangeStart` silently widens the pool.
//! Keys outside `ipam` (`runtimeConfig`, `args`, the plugin's own keys) are
//! not ours to judge and are ignored. A JSON `null` counts as absent.
//!
//! Every error here is code 7 (invalid configuration), except a bad
//! `CNI_ARGS` pair, which keeps the reference's wording and code 4.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use ipnetwork::IpNetwork;
use nuage_core::spec::{version, CniArgs, Dns, NetConf, Route};
use nuage_core::{log, Error, Result};
use serde_json::{Map, Value};

use crate::range::{RangeSet, RangeSpec};

/// Where host-local keeps its leases unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The keys host-local understands under `ipam`.
pub const HOST_LOCAL_KEYS: &[&str] = &[
    "type",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "ranges",
    "routes",
    "dataDir",
    "resolvConf",
];

/// The keys static understands under `ipam`.
pub const STATIC_KEYS: &[&str] = &["type", "addresses", "routes", "dns"];

const RANGE_KEYS: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];
const ROUTE_KEYS: &[&str] = &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];
const DNS_KEYS: &[&str] = &["nameservers", "domain", "search", "options"];
const ADDRESS_KEYS: &[&str] = &["address", "gateway"];

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct HostLocalConf {
    /// The network name (a safe single path component).
    pub network: String,
    pub cni_version: String,
    /// `runtimeConfig.ipRanges`, then the legacy top-level range, then `ranges`.
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    /// Absolute, without `.` or `..` components.
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses, deduplicated, in the reference's merge order:
    /// `CNI_ARGS` `IP=`, then `args.cni.ips`, then `runtimeConfig.ips`.
    pub requested: Vec<IpAddr>,
}

impl HostLocalConf {
    /// Parses and validates the host-local view of `conf` for ADD and CHECK;
    /// `cni_args` is the raw `CNI_ARGS`.
    pub fn parse(conf: &NetConf, cni_args: &str) -> Result<Self> {
        Self::parse_with(conf, cni_args, true)
    }

    /// The same for STATUS, which checks the config and the store: `CNI_ARGS`
    /// is not read, and ranges are validated when present but not required
    /// (they may come only from the `ipRanges` capability at ADD time).
    pub fn parse_for_status(conf: &NetConf) -> Result<Self> {
        Self::parse_with(conf, "", false)
    }

    /// Where DEL and GC find the leases, `<dataDir>/<network>`, reading
    /// nothing else: a config that ADD would refuse (an unknown key, a bad
    /// range) must not keep its cleanup from releasing what it holds.
    pub fn store_dir_of(conf: &NetConf) -> Result<PathBuf> {
        let ipam = Obj::new("ipam", ipam_object(conf)?);
        check_network_name(&conf.name)?;
        // A dataDir ADD refuses (relative, with `.` or `..`) but the
        // reference took: its leases are released where the reference put
        // them, as the path resolves.
        let dir = match data_dir(&ipam) {
            Err(e) => match ipam.string("dataDir")? {
                Some(d) if !d.contains('\0') => {
                    log::warn(format_args!(
                        "{e}: releasing from it as the reference reads it"
                    ));
                    clean_lexically(d)
                }
                _ => return Err(e),
            },
            ok => ok?,
        };
        Ok(dir.join(&conf.name))
    }

    fn parse_with(conf: &NetConf, cni_args: &str, need_ranges: bool) -> Result<Self> {
        let ipam = ipam_object(conf)?;
        let ipam = Obj::new("ipam", ipam);
        ipam.known_keys(HOST_LOCAL_KEYS, "host-local")?;
        ipam.string("type")?;
        check_network_name(&conf.name)?;

        let mut requested = Vec::new();
        let args = CniArgs::parse(cni_args)?;
        args.check_known(&["IP"])?;
        // `IP=` with no value is no request, as for the reference.
        if let Some(v) = args.get("IP").filter(|v| !v.is_empty()) {
            let ip = parse_ip_or_cidr(v).ok_or_else(|| {
                Error::env(format!(
                    "ARGS: error parsing value of pair \"IP={v}\": invalid IP address {v}"
                ))
            })?;
            requested.push(ip);
        }
        for (what, list) in [
            ("args.cni.ips", conf.args_cni("ips")),
            ("runtimeConfig.ips", conf.runtime("ips")),
        ] {
            for s in string_list(what, list)? {
                let ip = parse_ip_or_cidr(&s)
                    .ok_or_else(|| Error::config(format!("{what}: invalid IP address {s:?}")))?;
                requested.push(ip);
            }
        }
        let mut seen = std::collections::HashSet::new();
        requested.retain(|ip| seen.insert(*ip));

        // Range sets: the ipRanges capability first, then the legacy single
        // range, then `ranges`; all validated, then checked for overlaps.
        let mut specs: Vec<Vec<RangeSpec>> = Vec::new();
        if let Some(v) = conf.runtime("ipRanges") {
            specs.extend(range_sets("runtimeConfig.ipRanges", v)?);
        }
        if let Some(subnet) = ipam.cidr("subnet")? {
            specs.push(vec![range_spec_of(&ipam, subnet)?]);
        } else {
            for key in ["rangeStart", "rangeEnd", "gateway"] {
                if ipam.get(key).is_some() {
                    return Err(Error::config(format!("ipam.{key} is set but ipam.subnet is not"))
                        .with_details("the top-level rangeStart/rangeEnd/gateway belong to the top-level subnet"));
                }
            }
        }
        if let Some(v) = ipam.get("ranges") {
            specs.extend(range_sets("ipam.ranges", v)?);
        }
        if specs.is_empty() && need_ranges {
            return Err(Error::config("no IP ranges specified")
                .with_details("set ipam.ranges (or ipam.subnet) to at least one subnet"));
        }
        let mut range_sets = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let set = RangeSet::new(s)
                .map_err(|e| Error::config(format!("invalid range set {i}: {e}")))?;
            range_sets.push(set);
        }
        let v4 = range_sets.iter().filter(|s| s.is_ipv4()).count();
        check_per_family(&conf.cni_version, v4, range_sets.len() - v4)?;
        for (i, a) in range_sets.iter().enumerate() {
            for (j, b) in range_sets.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(Error::config(format!("range set {i} overlaps with {j}"))
                        .with_details(format!("{a} and {b} share addresses")));
                }
            }
        }

        let data_dir = data_dir(&ipam)?;
        let resolv_conf = match ipam.string("resolvConf")? {
            None | Some("") => None,
            Some(p) if p.contains('\0') => {
                return Err(Error::config(
                    "ipam.resolvConf: the path contains a NUL byte",
                ))
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        Ok(HostLocalConf {
            network: conf.name.clone(),
            cni_version: conf.cni_version.clone(),
            range_sets,
            routes: routes(&ipam, &conf.cni_version)?,
            data_dir,
            resolv_conf,
            requested,
        })
    }

    /// `<dataDir>/<network>`.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }
}

/// A validated static configuration.
#[derive(Debug, Clone)]
pub struct StaticConf {
    pub cni_version: String,
    /// Addresses with their host bits, each with its optional gateway.
    pub addresses: Vec<(IpNetwork, Option<IpAddr>)>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

impl StaticConf {
    /// Parses `ipam.addresses` and applies the overrides as the reference:
    /// `CNI_ARGS` `IP=` (comma-separated CIDRs) appends and `GATEWAY=` sets
    /// the gateway of every `IP=` address whose subnet holds it (not of the
    /// configured ones: the reference has not parsed those yet when it
    /// applies `GATEWAY`); `args.cni.ips` replaces the list, and
    /// `runtimeConfig.ips` (the `ips` capability) replaces it again.
    pub fn parse(conf: &NetConf, cni_args: &str) -> Result<Self> {
        let ipam = Obj::new("ipam", ipam_object(conf)?);
        ipam.known_keys(STATIC_KEYS, "static")?;
        ipam.string("type")?;

        let mut addresses = Vec::new();
        if let Some(list) = ipam.array("addresses")? {
            for (i, v) in list.iter().enumerate() {
                let a = Obj::of(format!("ipam.addresses[{i}]"), v)?;
                a.known_keys(ADDRESS_KEYS, "an address")?;
                let s = a
                    .string("address")?
                    .ok_or_else(|| Error::config(format!("{}.address is required", a.path)))?;
                addresses.push((parse_cidr(s, &a.path)?, a.ip("gateway")?));
            }
        }
        let args = CniArgs::parse(cni_args)?;
        args.check_known(&["IP", "GATEWAY"])?;
        let from_args = addresses.len();
        // A bad CNI_ARGS value is code 4 (an environment variable), not 7.
        let env = |e: Error| Error::env(e.msg);
        if let Some(ips) = args.get("IP").filter(|s| !s.is_empty()) {
            for s in ips.split(',').map(str::trim) {
                addresses.push((parse_cidr(s, "CNI_ARGS IP").map_err(env)?, None));
            }
        }
        if let Some(gws) = args.get("GATEWAY").filter(|s| !s.is_empty()) {
            for s in gws.split(',').map(str::trim) {
                let gw = parse_ip(s).ok_or_else(|| {
                    Error::env(format!(
                        "CNI_ARGS GATEWAY: invalid gateway address {s:?}: use an IP address"
                    ))
                })?;
                for (net, g) in &mut addresses[from_args..] {
                    if net.contains(gw) && net.is_ipv4() == gw.is_ipv4() {
                        *g = Some(gw);
                    }
                }
            }
        }
        for (what, list) in [
            ("args.cni.ips", conf.args_cni("ips")),
            ("runtimeConfig.ips", conf.runtime("ips")),
        ] {
            let list = string_list(what, list)?;
            if !list.is_empty() {
                addresses = list
                    .iter()
                    .map(|s| Ok((parse_cidr(s, what)?, None)))
                    .collect::<Result<_>>()?;
            }
        }
        for (i, (net, gw)) in addresses.iter().enumerate() {
            if let Some(gw) = gw {
                if gw.is_ipv4() != net.is_ipv4() {
                    return Err(Error::config(format!(
                        "invalid address {i}: gateway {gw} is not of the same address family as {net}"
                    )));
                }
            }
        }
        let v4 = addresses.iter().filter(|(n, _)| n.is_ipv4()).count();
        check_per_family(&conf.cni_version, v4, addresses.len() - v4)?;
        let dns = match ipam.get("dns") {
            None => Dns::default(),
            Some(v) => dns(&Obj::of("ipam.dns".into(), v)?)?,
        };
        Ok(StaticConf {
            cni_version: conf.cni_version.clone(),
            addresses,
            routes: routes(&ipam, &conf.cni_version)?,
            dns,
        })
    }
}

/// The `ipam` object, or the reference's error when there is none.
fn ipam_object(conf: &NetConf) -> Result<&Map<String, Value>> {
    conf.ipam
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| Error::config("IPAM config missing 'ipam' key"))
}

/// A network name must be one safe path component: `^[A-Za-z0-9][A-Za-z0-9_.-]*$`
/// (so no `/`, no `..`, no NUL) and at most 255 bytes.
pub fn check_network_name(name: &str) -> Result<()> {
    if !nuage_core::spec::valid_id(name) || name.len() > 255 {
        return Err(Error::config(format!("invalid network name {name:?}")).with_details(
            "a network name is used as a directory name: it must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$ and be at most 255 bytes",
        ));
    }
    Ok(())
}

/// `dataDir` must be an absolute path without `.`/`..` components or NUL.
/// `d` with `.` and `..` collapsed by its text, as Go's `filepath.Clean`
/// (which the reference's `filepath.Join` applies) does: a `..` after a
/// symlink names the symlink's parent, not its target's. A relative path
/// stays relative; `/..` is `/`.
fn clean_lexically(d: &str) -> PathBuf {
    let absolute = d.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in d.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => PathBuf::from(format!("/{joined}")),
        (false, true) => PathBuf::from("."),
        (false, false) => PathBuf::from(joined),
    }
}

/// `ipam.dataDir`, checked, or the default.
fn data_dir(ipam: &Obj) -> Result<PathBuf> {
    match ipam.string("dataDir")? {
        None | Some("") => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
        Some(d) => checked_data_dir(d),
    }
}

fn checked_data_dir(d: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        Err(
            Error::config(format!("ipam.dataDir {d:?} {why}")).with_details(format!(
                "use an absolute, normalized path such as {DEFAULT_DATA_DIR}"
            )),
        )
    };
    if d.contains('\0') {
        return bad("contains a NUL byte");
    }
    if !d.starts_with('/') {
        return bad("is not an absolute path");
    }
    if d.split('/').any(|c| c == "." || c == "..") {
        return bad("contains '.' or '..' components");
    }
    if d.len() > 3072 {
        return bad("is too long");
    }
    let p = Path::new(d);
    debug_assert!(p
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
    Ok(p.to_path_buf())
}

/// More than one address per family needs config version 0.3.0 or later.
fn check_per_family(cni_version: &str, v4: usize, v6: usize) -> Result<()> {
    if (v4 > 1 || v6 > 1) && !version::at_least(cni_version, "0.3.0") {
        return Err(Error::config(format!(
            "CNI version {cni_version} does not support more than 1 address per family"
        )));
    }
    Ok(())
}

/// Go's `net.ParseIP`, with IPv4-mapped IPv6 addresses folded to IPv4.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// An address, or the address part of a CIDR (the reference's `ip.IP`).
pub(crate) fn parse_ip_or_cidr(s: &str) -> Option<IpAddr> {
    match s.split_once('/') {
        Some((ip, prefix)) => {
            let ip = parse_ip(ip)?;
            let p: u8 = prefix.parse().ok()?;
            (prefix.bytes().all(|b| b.is_ascii_digit()) && p <= if ip.is_ipv4() { 32 } else { 128 })
                .then_some(ip)
        }
        None => parse_ip(s),
    }
}

/// A CIDR with its host bits kept ("10.1.0.5/16"); the prefix is required.
fn parse_cidr(s: &str, what: &str) -> Result<IpNetwork> {
    cidr(s).ok_or_else(|| {
        Error::config(format!(
            "{what}: invalid CIDR {s}: invalid CIDR address: {s}"
        ))
    })
}

fn cidr(s: &str) -> Option<IpNetwork> {
    let (ip, prefix) = s.split_once('/')?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return None;
    }
    IpNetwork::new(parse_ip(ip)?, prefix.parse().ok()?).ok()
}

/// An optional list of strings (`args.cni.ips`, `runtimeConfig.ips`).
fn string_list(what: &str, v: Option<&Value>) -> Result<Vec<String>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let bad = || Error::config(format!("{what} must be a list of strings, got {v}"));
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

/// A list of range sets (`ranges`, `ipRanges`): `[[{subnet, ...}, ...], ...]`.
fn range_sets(what: &str, v: &Value) -> Result<Vec<Vec<RangeSpec>>> {
    let sets = v.as_array().ok_or_else(|| {
        Error::config(format!(
            "{what} must be a list of range sets (lists of ranges), got {v}"
        ))
    })?;
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let path = format!("{what}[{i}]");
        let ranges = set
            .as_array()
            .ok_or_else(|| Error::config(format!("{path} must be a list of ranges, got {set}")))?;
        let mut specs = Vec::with_capacity(ranges.len());
        for (j, r) in ranges.iter().enumerate() {
            let r = Obj::of(format!("{path}[{j}]"), r)?;
            r.known_keys(RANGE_KEYS, "a range")?;
            let subnet = r
                .cidr("subnet")?
                .ok_or_else(|| Error::config(format!("{}.subnet is required", r.path)))?;
            specs.push(range_spec_of(&r, subnet)?);
        }
        out.push(specs);
    }
    Ok(out)
}

fn range_spec_of(o: &Obj<'_>, subnet: IpNetwork) -> Result<RangeSpec> {
    Ok(RangeSpec {
        subnet,
        range_start: o.ip("rangeStart")?,
        range_end: o.ip("rangeEnd")?,
        gateway: o.ip("gateway")?,
    })
}

/// `routes`: `[{dst, gw?, mtu?, advmss?, priority?, table?, scope?}]`; the
/// last five only from spec 1.1.0 on (as [`Route::for_version`]).
fn routes(ipam: &Obj<'_>, version: &str) -> Result<Vec<Route>> {
    let Some(list) = ipam.array("routes")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let r = Obj::of(format!("ipam.routes[{i}]"), v)?;
        r.known_keys(ROUTE_KEYS, "a route")?;
        let dst = r
            .cidr("dst")?
            .ok_or_else(|| Error::config(format!("{}.dst is required", r.path)))?;
        // Masked. The reference keeps the host bits in its result (CNI's
        // types.ParseCIDR does not mask), and the kernel then refuses the
        // route ("Invalid prefix for given prefix length"): a deliberate
        // difference.
        let dst = IpNetwork::new(dst.network(), dst.prefix()).unwrap_or(dst);
        let gw = r.ip("gw")?;
        if let Some(gw) = gw {
            if gw.is_ipv4() != dst.is_ipv4() {
                return Err(Error::config(format!(
                    "{}: gateway {gw} is not of the same address family as {dst}",
                    r.path
                )));
            }
        }
        // Before 1.1.0 the other keys are not read at all, not even
        // checked (as the reference: a 1.0.0 config it takes, we take).
        if !nuage_core::spec::version::at_least(version, "1.1.0") {
            out.push(Route::new(dst, gw));
            continue;
        }
        out.push(Route {
            dst,
            gw,
            mtu: r.u32("mtu")?,
            advmss: r.u32("advmss")?,
            priority: r.u32("priority")?,
            table: r.u32("table")?,
            scope: r.u32("scope")?.map(u8::try_from).transpose().map_err(|_| {
                Error::config(format!("{}.scope must be between 0 and 255", r.path))
            })?,
        });
    }
    Ok(out)
}

/// static's `dns`: `{nameservers?, domain?, search?, options?}`.
fn dns(o: &Obj<'_>) -> Result<Dns> {
    o.known_keys(DNS_KEYS, "dns")?;
    let list = |k: &str| string_list(&format!("{}.{k}", o.path), o.get(k));
    Ok(Dns {
        nameservers: list("nameservers")?,
        domain: o.string("domain")?.map(str::to_string),
        search: list("search")?,
        options: list("options")?,
    })
}

/// A JSON object being read, with its path for messages.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(path: &str, map: &'a Map<String, Value>) -> Self {
        Obj {
            path: path.into(),
            map,
        }
    }

    fn of(path: String, v: &'a Value) -> Result<Self> {
        match v.as_object() {
            Some(map) => Ok(Obj { path, map }),
            None => Err(Error::config(format!("{path} must be an object, got {v}"))),
        }
    }

    fn known_keys(&self, known: &[&str], what: &str) -> Result<()> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(Error::config(format!("{}: unknown key {k:?}", self.path))
                .with_details(format!("the keys of {what} are: {}", known.join(", ")))),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Error::config(format!(
                "{}.{key} must be a string, got {v}",
                self.path
            ))),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(Error::config(format!(
                "{}.{key} must be a list, got {v}",
                self.path
            ))),
        }
    }

    /// An address; `""` is no address, as for Go's decoder (templated
    /// configs write `"gateway": ""`).
    fn ip(&self, key: &str) -> Result<Option<IpAddr>> {
        let Some(s) = self.string(key)?.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        parse_ip(s)
            .map(Some)
            .ok_or_else(|| Error::config(format!("{}.{key}: invalid IP address {s:?}", self.path)))
    }

    fn cidr(&self, key: &str) -> Result<Option<IpNetwork>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        cidr(s)
            .map(Some)
            .ok_or_else(|| Error::config(format!("{}.{key}: invalid CIDR address: {s}", self.path)))
    }

    fn u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::config(format!(
                        "{}.{key} must be a non-negative integer, got {v}",
                        self.path
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuage_core::Code;

    fn conf(ipam: &str, extra: &str) -> NetConf {
        let s = format!(
            r#"{{"cniVersion":"1.0.0","name":"net1","type":"bridge","ipam":{ipam}{extra}}}"#
        );
        NetConf::parse(s.as_bytes()).unwrap()
    }

    fn hl(ipam: &str) -> Result<HostLocalConf> {
        HostLocalConf::parse(&conf(ipam, ""), "")
    }

    fn hl_err(ipam: &str) -> String {
        let e = hl(ipam).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig, "{e}");
        e.msg
    }

    #[test]
    fn data_dirs_are_cleaned_as_go_cleans_them() {
        for (d, want) in [
            ("/a/link/..", "/a"),
            ("/var/run/../lib/cni/networks", "/var/lib/cni/networks"),
            ("/../x/./y//", "/x/y"),
            ("rel/../../x", "../x"),
            ("./", "."),
        ] {
            assert_eq!(clean_lexically(d), PathBuf::from(want), "{d}");
        }
    }

    #[test]
    fn legacy_and_ranges_merge_in_reference_order() {
        let c = HostLocalConf::parse(
            &conf(
                r#"{"type":"host-local","subnet":"10.1.0.0/16","rangeStart":"10.1.0.10","gateway":"10.1.0.254",
                    "ranges":[[{"subnet":"fd00::/64"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.5/16","gw":"10.1.0.1","mtu":1400}],
                    "dataDir":"/run/cni/ipam"}"#,
                r#","runtimeConfig":{"ipRanges":[[{"subnet":"192.168.0.0/24"}]]}"#,
            ),
            "",
        )
        .unwrap();
        let sets: Vec<String> = c.range_sets.iter().map(ToString::to_string).collect();
        assert_eq!(
            sets,
            [
                "192.168.0.1-192.168.0.254",
                "10.1.0.10-10.1.255.254",
                "fd00::1-fd00::ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(
            c.range_sets[1].ranges()[0].gateway.to_string(),
            "10.1.0.254"
        );
        assert_eq!(c.routes[1].dst.to_string(), "10.9.0.0/16");
        assert_eq!(
            c.routes[1].mtu, None,
            "a spec 1.1.0 field, not read at 1.0.0"
        );
        let v11 = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"net1","type":"bridge","ipam":{"type":"host-local",
                 "subnet":"10.1.0.0/16","routes":[{"dst":"10.9.0.0/16","mtu":1400,"table":7}]}}"#,
        )
        .unwrap();
        let r = &HostLocalConf::parse(&v11, "").unwrap().routes[0];
        assert_eq!((r.mtu, r.table), (Some(1400), Some(7)));
        assert_eq!(c.store_dir(), PathBuf::from("/run/cni/ipam/net1"));
        let d = hl(r#"{"type":"host-local","subnet":"10.1.0.0/16"}"#).unwrap();
        assert_eq!(d.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn requested_ips_merge_and_dedup() {
        let c = HostLocalConf::parse(
            &conf(
                r#"{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#,
                r#","args":{"cni":{"ips":["10.0.0.8/24","fd00::8"]}},"runtimeConfig":{"ips":["10.0.0.7","fd00::9"]}"#,
            ),
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.7",
        )
        .unwrap();
        let r: Vec<String> = c.requested.iter().map(ToString::to_string).collect();
        assert_eq!(r, ["10.0.0.7", "10.0.0.8", "fd00::8", "fd00::9"]);
        let e =
            HostLocalConf::parse(&conf(r#"{"subnet":"10.0.0.0/24"}"#, ""), "FOO=1").unwrap_err();
        assert_eq!(e.msg, r#"ARGS: unknown args ["FOO=1"]"#);
        let e =
            HostLocalConf::parse(&conf(r#"{"subnet":"10.0.0.0/24"}"#, ""), "IP=bogus").unwrap_err();
        assert_eq!(
            e.msg,
            r#"ARGS: error parsing value of pair "IP=bogus": invalid IP address bogus"#
        );
        let e = HostLocalConf::parse(
            &conf(
                r#"{"subnet":"10.0.0.0/24"}"#,
                r#","runtimeConfig":{"ips":"10.0.0.1"}"#,
            ),
            "",
        )
        .unwrap_err();
        assert!(
            e.msg
                .starts_with("runtimeConfig.ips must be a list of strings"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn reference_validation_messages() {
        assert_eq!(hl_err(r#"{"type":"host-local"}"#), "no IP ranges specified");
        assert_eq!(hl_err(r#"{"ranges":[]}"#), "no IP ranges specified");
        assert_eq!(
            hl_err(r#"{"ranges":[[]]}"#),
            "invalid range set 0: empty range set"
        );
        assert_eq!(
            hl_err(r#"{"subnet":"10.0.0.0/31"}"#),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            hl_err(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/25"}]]}"#),
            "range set 0 overlaps with 1"
        );
        assert_eq!(
            hl_err(r#"{"ranges":[[{"subnet":"fd00::/64","gateway":"10.0.0.1"}]]}"#),
            "invalid range set 0: gateway 10.0.0.1 not in network fd00::/64"
        );
        assert_eq!(
            hl_err(r#"{"subnet":"10.0.0.0/33"}"#),
            "ipam.subnet: invalid CIDR address: 10.0.0.0/33"
        );
        assert_eq!(
            hl_err(r#"{"subnet":"10.0.0.0"}"#),
            "ipam.subnet: invalid CIDR address: 10.0.0.0"
        );
        let e = HostLocalConf::parse(
            &NetConf::parse(
                br#"{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}"#,
            )
            .unwrap(),
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.msg,
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
    }

    #[test]
    fn strict_keys_and_types() {
        let e = hl(r#"{"subnet":"10.0.0.0/24","rangestart":"10.0.0.5"}"#).unwrap_err();
        assert_eq!(e.msg, r#"ipam: unknown key "rangestart""#);
        assert!(e.details.unwrap().contains("rangeStart"));
        assert_eq!(
            hl_err(r#"{"ranges":[[{"subnet":"10.0.0.0/24","gw":"10.0.0.1"}]]}"#),
            r#"ipam.ranges[0][0]: unknown key "gw""#
        );
        assert_eq!(
            hl_err(r#"{"subnet":5}"#),
            "ipam.subnet must be a string, got 5"
        );
        assert_eq!(
            hl_err(r#"{"ranges":{"subnet":"x"}}"#),
            r#"ipam.ranges must be a list of range sets (lists of ranges), got {"subnet":"x"}"#
        );
        assert_eq!(
            hl_err(r#"{"ranges":[[{"rangeStart":"10.0.0.2"}]]}"#),
            "ipam.ranges[0][0].subnet is required"
        );
        assert_eq!(
            hl_err(r#"{"gateway":"10.0.0.1"}"#),
            "ipam.gateway is set but ipam.subnet is not"
        );
        assert_eq!(
            hl_err(r#"{"subnet":"10.0.0.0/24","routes":[{"dst":"0.0.0.0/0","via":"x"}]}"#),
            r#"ipam.routes[0]: unknown key "via""#
        );
        assert_eq!(
            hl_err(r#"{"subnet":"10.0.0.0/24","routes":[{"dst":"::/0","gw":"10.0.0.1"}]}"#),
            "ipam.routes[0]: gateway 10.0.0.1 is not of the same address family as ::/0"
        );
        // null is absent
        hl(r#"{"subnet":"10.0.0.0/24","gateway":null,"routes":null}"#).unwrap();
        let e = HostLocalConf::parse(&NetConf::parse(br#"{"name":"n"}"#).unwrap(), "").unwrap_err();
        assert_eq!(e.msg, "IPAM config missing 'ipam' key");
    }

    #[test]
    fn refuses_path_tricks() {
        for d in [
            "var/lib/cni",
            "/var/lib/../../etc",
            "/var/./lib",
            "/a\u{0}b",
            "./x",
            "..",
        ] {
            let ipam = serde_json::json!({"subnet": "10.0.0.0/24", "dataDir": d}).to_string();
            assert!(hl_err(&ipam).starts_with("ipam.dataDir"), "{d}");
        }
        for n in ["a/b", "..", ".x", "a b", ""] {
            assert!(check_network_name(n).is_err(), "{n}");
        }
        check_network_name("cbr0.v-1_2").unwrap();
        assert!(check_network_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn static_overrides() {
        let ipam = r#"{"type":"static","addresses":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"},{"address":"fd00::5/64"}],
                      "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["8.8.8.8"],"search":["x"]}}"#;
        let c = StaticConf::parse(
            &conf(ipam, ""),
            "IP=10.1.0.5/16,192.168.0.2/24;GATEWAY=10.1.0.1",
        )
        .unwrap();
        let a: Vec<String> = c
            .addresses
            .iter()
            .map(|(n, g)| format!("{n} {g:?}"))
            .collect();
        assert_eq!(
            a,
            [
                "10.0.0.5/24 Some(10.0.0.1)",
                "fd00::5/64 None",
                "10.1.0.5/16 Some(10.1.0.1)",
                "192.168.0.2/24 None"
            ]
        );
        assert_eq!(c.dns.nameservers, ["8.8.8.8"]);
        let c = StaticConf::parse(
            &conf(ipam, r#","args":{"cni":{"ips":["10.2.0.2/24"]}},"runtimeConfig":{"ips":["10.3.0.3/24"]}"#),
            "",
        )
        .unwrap();
        assert_eq!(c.addresses, vec![("10.3.0.3/24".parse().unwrap(), None)]);
        let e = StaticConf::parse(&conf(r#"{"addresses":[{"address":"10.0.0.5"}]}"#, ""), "")
            .unwrap_err();
        assert_eq!(
            e.msg,
            "ipam.addresses[0]: invalid CIDR 10.0.0.5: invalid CIDR address: 10.0.0.5"
        );
        let e = StaticConf::parse(
            &conf(
                r#"{"addresses":[{"address":"fd00::5/64","gateway":"10.0.0.1"}]}"#,
                "",
            ),
            "",
        )
        .unwrap_err();
        assert!(
            e.msg.contains("not of the same address family"),
            "{}",
            e.msg
        );
        let e = StaticConf::parse(&conf(r#"{"addresses":[{"gateway":"10.0.0.1"}]}"#, ""), "")
            .unwrap_err();
        assert_eq!(e.msg, "ipam.addresses[0].address is required");
        let e = StaticConf::parse(&conf(r#"{"addresses":[],"dns":{"servers":[]}}"#, ""), "")
            .unwrap_err();
        assert_eq!(e.msg, r#"ipam.dns: unknown key "servers""#);
    }
}
