//! Helpers for plugin integration tests: one CNI call, config edits, the
//! container-side state in a comparable form, and small network checks.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Family, Host, Netns, PluginOutput, REFERENCE_DIR};

pub const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// One CNI call: `cmd` for attachment (`cid`, `eth0`) on `netns` (`None`:
/// `CNI_NETNS` unset), with `extra` variables (e.g. `CNI_ARGS`; a later
/// `CNI_IFNAME` wins).
#[track_caller]
pub fn cni(
    host: &Host,
    bin: &Path,
    cmd: &str,
    cid: &str,
    netns: Option<&str>,
    conf: &str,
    extra: &[(&str, &str)],
) -> PluginOutput {
    let mut env = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", REFERENCE_DIR),
    ];
    if let Some(ns) = netns {
        env.push(("CNI_NETNS", ns));
    }
    env.extend_from_slice(extra);
    host.run_plugin(bin, &env, conf)
}

/// DEL of `bin` (`conf`) with `CNI_IFNAME` naming `ifname`, a link of `ns`
/// the plugin did not create (`lo`, another plugin's interface): it must
/// succeed and leave the link as it was, up or down.
#[track_caller]
pub fn del_leaves_foreign_link(host: &Host, bin: &Path, ns: &Netns, conf: &str, ifname: &str) {
    let up = ns.link_is_up(ifname);
    let out = cni(
        host,
        bin,
        "DEL",
        "c1",
        Some(ns.path_str()),
        conf,
        &[("CNI_IFNAME", ifname)],
    );
    out.assert_success();
    assert_eq!(ns.link_is_up(ifname), up, "{ifname} changed:\n{out}");
}

/// A wrapper that runs `bin` with `/proc/sys` read-only, as systemd's
/// `ProtectKernelTunables` or an unprivileged container has it. The mount
/// is made in the mount namespace of the test's own process tree (see
/// `exec`), never the machine's.
pub fn with_read_only_proc_sys(host: &Host, bin: &Path) -> std::path::PathBuf {
    with_mounts(
        host,
        bin,
        "ro-proc-sys",
        "mount -o bind,ro /proc/sys /proc/sys",
    )
}

/// A wrapper that runs `bin` with `/run/nuage` (our lock files) read-only:
/// the files there as they are (`empty` false), or none at all.
pub fn with_read_only_run_nuage(host: &Host, bin: &Path, empty: bool) -> std::path::PathBuf {
    if empty {
        with_mounts(
            host,
            bin,
            "ro-run-empty",
            "mount -t tmpfs -o ro tmpfs /run/nuage",
        )
    } else {
        std::fs::create_dir_all("/run/nuage").unwrap();
        with_mounts(
            host,
            bin,
            "ro-run",
            "mount --bind /run/nuage /run/nuage && mount -o remount,bind,ro /run/nuage",
        )
    }
}

/// A wrapper (`<tag>-<bin name>.sh`) that runs the shell commands `mounts`
/// (in the mount namespace of the test's own process tree, see `exec`,
/// never the machine's; exit 97 if they fail), then execs `bin`.
pub fn with_mounts(host: &Host, bin: &Path, tag: &str, mounts: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let name = bin.file_name().unwrap().to_string_lossy();
    let p = host.write_file(
        &format!("{tag}-{name}.sh"),
        &format!(
            "#!/bin/sh\n{{ {mounts}; }} || exit 97\nexec {}\n",
            bin.display()
        ),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Our ADD (or anyone's: `bin`) of attachment (`cid`, `eth0`) in `ns`,
/// which must succeed; returns the result.
#[track_caller]
pub fn add_ok(host: &Host, bin: &Path, cid: &str, ns: &Netns, conf: &str) -> Value {
    let out = cni(host, bin, "ADD", cid, Some(ns.path_str()), conf, &[]);
    out.assert_success();
    out.expect_json().clone()
}

/// An ADD of attachment (`cid`, `eth0`) in `ns` that must fail with CNI
/// error `code` and a message containing `needle`.
#[track_caller]
pub fn add_err(
    host: &Host,
    bin: &Path,
    cid: &str,
    ns: &Netns,
    conf: &str,
    code: u64,
    needle: &str,
) {
    let out = cni(host, bin, "ADD", cid, Some(ns.path_str()), conf, &[]);
    let msg = out.assert_cni_error(code)["msg"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        msg.contains(needle),
        "expected {needle:?} in the message:\n{out}"
    );
}

/// A CHECK of attachment (`cid`, `eth0`) in `ns` (`conf` carries the
/// prevResult), which must succeed with nothing on stdout.
#[track_caller]
pub fn check_ok(host: &Host, bin: &Path, cid: &str, ns: &Netns, conf: &str) {
    let out = cni(host, bin, "CHECK", cid, Some(ns.path_str()), conf, &[]);
    out.assert_success();
    assert_eq!(out.stdout, "", "CHECK prints nothing:\n{out}");
}

/// A DEL of attachment (`cid`, `eth0`) on `netns` (`None`: `CNI_NETNS`
/// unset), which must succeed with nothing on stdout.
#[track_caller]
pub fn del_ok(host: &Host, bin: &Path, cid: &str, netns: Option<&str>, conf: &str) {
    let out = cni(host, bin, "DEL", cid, netns, conf, &[]);
    out.assert_success();
    assert_eq!(out.stdout, "", "DEL prints nothing:\n{out}");
}

/// `v` with the keys of `extra` set (a `null` value removes the key).
pub fn merge(mut v: Value, extra: Value) -> Value {
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        if x.is_null() {
            v.as_object_mut().expect("object").remove(&k);
        } else {
            v[k] = x;
        }
    }
    v
}

/// `conf` with `key` set to `value`.
pub fn with(conf: &str, key: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(conf).expect("test config is JSON");
    v[key] = value;
    v.to_string()
}

/// `conf` with `prevResult` set, as runtimes send it to CHECK and DEL.
pub fn with_prev(conf: &str, prev: &Value) -> String {
    with(conf, "prevResult", prev.clone())
}

/// A stand-in "physical" NIC: veth `name` in the host, its peer in `lan`
/// (a namespace playing the segment), both up; `cidr` on the host end.
pub fn nic(host: &Host, lan: &Netns, name: &str, cidr: Option<&str>) {
    host.netns()
        .veth_pair_into(name, lan, &format!("{name}-lan"));
    if let Some(c) = cidr {
        host.netns().ip(&["addr", "add", c, "dev", name]);
    }
}

/// The leases of host-local `network` in the host's default data dir.
pub fn leases(host: &Host, network: &str) -> Vec<String> {
    let dir = host.state_dir().join("networks").join(network);
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

/// The container-side state of `ifname` that the result describes, in a
/// comparable form: the link (kind, macvlan mode, MTU, queue length, MAC,
/// up, alias), its addresses (no link-local) and the routes of the
/// namespace (no kernel link-local or multicast ones; protocol ignored).
pub fn state(ns: &Netns, ifname: &str) -> Value {
    let link = ns
        .link(ifname)
        .unwrap_or_else(|| panic!("no {ifname} in {}", ns.name()));
    let info = &link["linkinfo"];
    let flags = link["flags"].as_array().cloned().unwrap_or_default();
    let addrs = global_addrs(ns, ifname);
    let routes = comparable_routes(ns);
    json!({
        "name": link["ifname"],
        "kind": info["info_kind"],
        "mode": info["info_data"]["mode"],
        "mtu": link["mtu"],
        "txqlen": link["txqlen"],
        "mac": link["address"],
        "up": flags.iter().any(|f| f == "UP"),
        "alias": link.get("ifalias").cloned().unwrap_or(Value::Null),
        "addrs": addrs,
        "routes": routes,
    })
}

/// The addresses of `ifname` without link-local ones, as "ip/prefix", sorted.
pub fn global_addrs(ns: &Netns, ifname: &str) -> Vec<String> {
    let mut addrs: Vec<String> = ns
        .addrs(ifname)
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect();
    addrs.sort();
    addrs
}

/// The routes of `ns` (main table, both families) without the kernel's
/// link-local and multicast ones, and without `protocol`/`flags`/`pref`,
/// which differ between otherwise equal setups.
pub fn comparable_routes(ns: &Netns) -> Vec<Value> {
    let mut routes = Vec::new();
    for fam in [Family::V4, Family::V6] {
        for mut r in ns.routes(fam) {
            let dst = r["dst"].as_str().unwrap_or("");
            if dst.starts_with("fe80::")
                || dst.starts_with("ff00::")
                || dst.starts_with("multicast")
            {
                continue;
            }
            if let Some(o) = r.as_object_mut() {
                o.remove("protocol");
                o.remove("flags");
                o.remove("pref");
            }
            routes.push(r);
        }
    }
    routes
}

/// Waits (bounded, not a timing assertion) until `cond` holds; panics with
/// `what` if it does not within 30 s.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gave up waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `msg` of a failed call's error reply.
#[track_caller]
pub fn err_msg(out: &PluginOutput) -> String {
    out.assert_failure();
    out.expect_json()["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `ip` does not answer from `ns` (one ping, 2 s): for "must not reach".
#[track_caller]
pub fn unreachable(ns: &Netns, ip: &str) -> bool {
    !ns.exec("ping", &["-c", "1", "-W", "2", ip]).success()
}

/// The address of a result's `ips[i]`, without its prefix.
pub fn ip_of(res: &Value, i: usize) -> String {
    let a = res["ips"][i]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[{i}] in {res}"));
    a.split('/').next().unwrap_or_default().to_string()
}

/// The reference prints `"dns": {}` in 1.0.0 results, we omit an empty
/// `dns` there (as libcni >= 1.2): the reference result without it.
pub fn without_empty_dns(v: &Value) -> Value {
    let mut v = v.clone();
    if v.get("dns") == Some(&json!({}))
        && v["cniVersion"].as_str().is_some_and(|s| s.starts_with('1'))
    {
        v.as_object_mut().map(|o| o.remove("dns"));
    }
    v
}
