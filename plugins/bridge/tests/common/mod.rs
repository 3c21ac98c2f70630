//! Helpers shared by the bridge plugin's integration tests: network configs
//! with host-local IPAM kept inside the test host's scratch dir, CNI calls,
//! and readers of the state a bridge attachment leaves (links, leases, our
//! nftables elements, iptables rules, container-side state).
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

#[allow(unused_imports)] // each test file uses its own subset
pub use netns_tests::cni::{ip_of, merge, wait_until};
use netns_tests::*;
use serde_json::{json, Value};

/// Our `bridge` executable.
pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bridge"))
}

/// Where host-local keeps the leases of the networks of `host`: inside the
/// host's scratch dir, so nothing escapes the test.
pub fn data_dir(host: &Host) -> PathBuf {
    host.dir().join("ipam")
}

/// A bridge network config: `name` on `bridge`, host-local IPAM on
/// `subnet` (`None`: L2 mode, no `ipam`) with its data dir in the host's
/// scratch dir; `extra` keys are merged in (a `null` removes the key).
pub fn net(
    host: &Host,
    version: &str,
    name: &str,
    bridge: &str,
    subnet: Option<&str>,
    extra: Value,
) -> Value {
    let mut v = json!({
        "cniVersion": version,
        "name": name,
        "type": "bridge",
        "bridge": bridge,
    });
    if let Some(s) = subnet {
        v["ipam"] = json!({
            "type": "host-local",
            "subnet": s,
            "dataDir": data_dir(host),
        });
    }
    merge(v, extra)
}

/// `ranges` for host-local: one range set per subnet (dual stack with a v4
/// and a v6 subnet).
pub fn ranges(subnets: &[&str]) -> Value {
    Value::Array(subnets.iter().map(|s| json!([{ "subnet": s }])).collect())
}

/// `conf` with `prevResult` set (what runtimes send to CHECK and DEL).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// One CNI call of `bin` in `host`: `cmd` for attachment (`cid`,
/// `CNI_IFNAME=eth0`) on `netns` (`None`: `CNI_NETNS` unset), `CNI_PATH`
/// the reference plugins' dir, plus `extra` variables (a later one wins).
#[track_caller]
pub fn cni(
    host: &Host,
    bin: &Path,
    cmd: &str,
    cid: &str,
    netns: Option<&str>,
    conf: &Value,
    extra: &[(&str, &str)],
) -> PluginOutput {
    cni::cni(host, bin, cmd, cid, netns, &conf.to_string(), extra)
}

/// Our ADD, which must succeed; returns the result.
#[track_caller]
pub fn add(host: &Host, ctr: &Netns, cid: &str, conf: &Value) -> Value {
    cni::add_ok(host, &ours(), cid, ctr, &conf.to_string())
}

/// Our ADD with `extra` environment variables, which must succeed; returns
/// the result (and the output, for its stderr).
#[track_caller]
pub fn add_with(
    host: &Host,
    ctr: &Netns,
    cid: &str,
    conf: &Value,
    extra: &[(&str, &str)],
) -> (Value, PluginOutput) {
    let out = cni(host, &ours(), "ADD", cid, Some(ctr.path_str()), conf, extra);
    out.assert_success();
    (out.expect_json().clone(), out)
}

/// Our DEL, which must succeed with nothing on stdout.
#[track_caller]
pub fn del(host: &Host, netns: Option<&str>, cid: &str, conf: &Value) {
    cni::del_ok(host, &ours(), cid, netns, &conf.to_string())
}

/// The `msg` of a failed call's error reply, after checking its code.
#[track_caller]
pub fn err(out: &PluginOutput, code: u64) -> String {
    assert_eq!(out.code, Some(1), "errors exit with status 1:\n{out}");
    out.assert_cni_error(code)["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The host end of the attachment a result describes (`interfaces[1]`).
pub fn host_veth(res: &Value) -> String {
    res["interfaces"][1]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no interfaces[1] in {res}"))
        .to_string()
}

/// `ip` answers from `ns` (up to 3 pings, see [`Netns::ping`]).
#[track_caller]
pub fn reaches(ns: &Netns, ip: &str) -> bool {
    ns.ping(ip)
}

/// `ip` does not answer from `ns` (2 pings, 2 s each): for "must not
/// reach", always paired with a positive control in the tests.
#[track_caller]
pub fn unreachable(ns: &Netns, ip: &str) -> bool {
    !ns.exec("ping", &["-c", "2", "-W", "2", ip]).success()
}

/// The leases (file names that are IPs) of host-local network `network`
/// under [`data_dir`], sorted.
pub fn leases(host: &Host, network: &str) -> Vec<String> {
    let dir = data_dir(host).join(network);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `nft -j list table <family> nuage` in the host, or `None` when the table
/// does not exist.
pub fn nft_table(host: &Host, family: &str) -> Option<Vec<Value>> {
    let out = host.exec("nft", &["-j", "list", "table", family, "nuage"]);
    if !out.success() {
        assert!(
            out.stderr.contains("No such file or directory"),
            "nft list table {family} nuage failed:\n{out}"
        );
        return None;
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("nft -j printed invalid JSON ({e}):\n{out}"));
    Some(v["nftables"].as_array().cloned().unwrap_or_default())
}

/// The elements of our maps and sets in the host (`inet nuage` masq4/masq6,
/// `bridge nuage` spoof_ports/spoof_allowed), one string each:
/// `<family> <set>: <element JSON>` (comments included), sorted.
pub fn nft_elements(host: &Host) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["inet", "bridge"] {
        for obj in nft_table(host, family).unwrap_or_default() {
            let Some(set) = obj.get("map").or_else(|| obj.get("set")) else {
                continue;
            };
            let name = set["name"].as_str().unwrap_or("?");
            for e in set["elem"].as_array().into_iter().flatten() {
                out.push(format!("{family} {name}: {e}"));
            }
        }
    }
    out.sort();
    out
}

/// The elements of [`nft_elements`] that mention `needle` (an IP, a host
/// veth name, a container id in a comment).
pub fn nft_elements_with(host: &Host, needle: &str) -> Vec<String> {
    nft_elements(host)
        .into_iter()
        .filter(|e| e.contains(needle))
        .collect()
}

/// `iptables-save` and `ip6tables-save` in the host, as lines.
pub fn iptables_lines(host: &Host) -> Vec<String> {
    let mut v = Vec::new();
    for cmd in ["iptables-save", "ip6tables-save"] {
        let out = host.exec(cmd, &[]);
        out.assert_success();
        v.extend(out.stdout.lines().map(str::to_string));
    }
    v
}

/// The CNI chains and rules in `iptables-save` output (the reference's
/// masquerade: `CNI-<hash>` chains, `-j CNI-…` jumps).
pub fn iptables_cni_lines(host: &Host) -> Vec<String> {
    iptables_lines(host)
        .into_iter()
        .filter(|l| l.contains("CNI-") || l.contains("MASQUERADE"))
        .collect()
}

/// Names of the host's links, sorted.
pub fn host_links(host: &Host) -> Vec<String> {
    let mut v = host.netns().link_names();
    v.sort();
    v
}

/// What a bridge attachment can leave in a host: links, leases of
/// `network`, our nftables elements, iptables CNI rules; plus the links of
/// the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub host_links: Vec<String>,
    pub leases: Vec<String>,
    pub nft: Vec<String>,
    pub iptables: Vec<String>,
    pub ctr_links: Vec<String>,
}

impl Snapshot {
    #[track_caller]
    pub fn take(host: &Host, network: &str, ctr: &Netns) -> Snapshot {
        let mut ctr_links = ctr.link_names();
        ctr_links.sort();
        Snapshot {
            host_links: host_links(host),
            leases: leases(host, network),
            nft: nft_elements(host),
            iptables: iptables_cni_lines(host),
            ctr_links,
        }
    }

    /// Panics, listing the differences, unless `now` equals `self`.
    #[track_caller]
    pub fn assert_unchanged(&self, host: &Host, network: &str, ctr: &Netns, what: &str) {
        let now = Snapshot::take(host, network, ctr);
        assert_eq!(
            &now, self,
            "{what}: the failed ADD left something behind (left: now, right: before)"
        );
    }
}

/// The container-side state of `ifname` that a bridge ADD sets, in a
/// comparable form: link kind, MTU, flags, addresses (no link-local),
/// routes of the namespace (no link-local/multicast ones, protocol
/// ignored), `accept_dad`/`enhanced_dad`/`arp_notify`/`disable_ipv6` of the
/// interface, and
/// the other links of the namespace. The MAC is left out (random).
#[track_caller]
pub fn ctr_state(ns: &Netns, ifname: &str) -> Value {
    let link = ns
        .link(ifname)
        .unwrap_or_else(|| panic!("no {ifname} in {}", ns.name()));
    let mut flags: Vec<String> = link["flags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    flags.sort();
    let addrs = netns_tests::cni::global_addrs(ns, ifname);
    let routes = netns_tests::cni::comparable_routes(ns);
    let sys = |k: &str| {
        let p = format!("/proc/sys/net/{k}");
        let out = ns.exec("cat", &[&p]);
        if out.success() {
            out.stdout.trim().to_string()
        } else {
            "absent".to_string()
        }
    };
    let mut links = ns.link_names();
    links.sort();
    json!({
        "name": link["ifname"],
        "kind": link["linkinfo"]["info_kind"],
        "mtu": link["mtu"],
        "txqlen": link["txqlen"],
        "flags": flags,
        "operstate": link["operstate"],
        "addrs": addrs,
        "routes": routes,
        "accept_dad": sys(&format!("ipv6/conf/{ifname}/accept_dad")),
        "enhanced_dad": sys(&format!("ipv6/conf/{ifname}/enhanced_dad")),
        "arp_notify": sys(&format!("ipv4/conf/{ifname}/arp_notify")),
        "disable_ipv6": sys(&format!("ipv6/conf/{ifname}/disable_ipv6")),
        "links": links,
    })
}

/// `ip -j -d link show` of `name` in the host, or a panic.
#[track_caller]
pub fn host_link(host: &Host, name: &str) -> Value {
    host.netns()
        .link(name)
        .unwrap_or_else(|| panic!("no link {name} in the host; links: {:?}", host_links(host)))
}

/// Whether link `l` (`ip -j link` entry) has flag `flag`.
pub fn has_flag(l: &Value, flag: &str) -> bool {
    l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

/// The bridge-port attributes of host link `port` (`info_slave_data`).
#[track_caller]
pub fn port_data(host: &Host, port: &str) -> Value {
    let l = host_link(host, port);
    assert_eq!(
        l["linkinfo"]["info_slave_kind"], "bridge",
        "{port} is not a bridge port: {l}"
    );
    l["linkinfo"]["info_slave_data"].clone()
}

/// `bridge -j link show dev <port>` in the host: the bridge tool's view.
#[track_caller]
pub fn bridge_tool_port(host: &Host, port: &str) -> Value {
    let out = host.exec("bridge", &["-j", "-d", "link", "show", "dev", port]);
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("bridge -j printed invalid JSON ({e}):\n{out}"));
    v.as_array()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| panic!("bridge -j link show dev {port}: empty\n{out}"))
}

/// The ports (links whose master is `bridge`) of the host, sorted.
pub fn ports_of(host: &Host, bridge: &str) -> Vec<String> {
    let mut v: Vec<String> = host
        .netns()
        .links()
        .iter()
        .filter(|l| l["master"] == bridge)
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// A MAC written `aa:bb:cc:dd:ee:ff` (lower case).
pub fn is_mac(s: &Value) -> bool {
    s.as_str().is_some_and(|s| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() == 6
            && parts.iter().all(|p| {
                p.len() == 2
                    && p.chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            })
    })
}

/// A host veth name as both implementations make them: `veth` + 8 hex.
pub fn is_veth_name(s: &Value) -> bool {
    s.as_str().is_some_and(|s| {
        s.len() == 12 && s.starts_with("veth") && s[4..].chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Writes an executable shell script to `<host dir>/<rel>`.
pub fn write_script(host: &Host, rel: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = host.write_file(rel, body);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    p
}
