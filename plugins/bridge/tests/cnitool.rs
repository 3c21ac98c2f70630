//! Our `bridge` driven end to end by the reference libcni (Debian's
//! golang-github-appc-cni-dev 1.1.2, through the `cnitool` driver built by
//! `netns_tests::cnitool()`), as a real runtime runs it: a conflist with
//! `bridge` and its in-process host-local IPAM at cniVersion 1.0.0; add
//! (result parsed and cached by libcni), check (with the cached result as
//! prevResult), del; the kernel, the leases and our nftables elements
//! after each step.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const NET: &str = "cninet";

fn plugin_dir() -> String {
    ours().parent().unwrap().to_str().unwrap().to_owned()
}

/// A conf dir holding one conflist; returns the dir.
fn write_conflist(host: &Host, tag: &str, body: &Value) -> PathBuf {
    host.write_file(&format!("{tag}/10-bridge.conflist"), &body.to_string());
    host.dir().join(tag)
}

fn conflist(host: &Host, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": NET,
        "plugins": [{
            "type": "bridge",
            "bridge": "br-cni",
            "isDefaultGateway": true,
            "ipMasq": true,
            "macspoofchk": true,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir(host),
                "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]],
            },
        }],
    })
}

fn cache_file(host: &Host, cid: &str) -> PathBuf {
    host.state_dir()
        .join("results")
        .join(format!("{NET}-{cid}-eth0"))
}

#[track_caller]
fn cnitool(host: &Host, cmd: &str, ctr: &Netns, cid: &str, conf_dir: &Path) -> PluginOutput {
    let dir = plugin_dir();
    host.cnitool(
        cmd,
        NET,
        ctr,
        &[
            ("NETCONFPATH", conf_dir.to_str().unwrap()),
            ("CNI_PATH", dir.as_str()),
            ("CNI_CONTAINERID", cid),
            ("CNI_IFNAME", "eth0"),
        ],
    )
}

#[test]
fn add_check_del_through_libcni_1_0_0() {
    require_root();
    let host = Host::new("br-cnitool");
    let dir = write_conflist(&host, "conf", &conflist(&host, "1.0.0"));
    let (c1, c2) = (host.container("c1"), host.container("c2"));

    // add: libcni parses our result, caches it and prints it (libcni 1.1.2
    // always prints `dns`).
    let out = cnitool(&host, "add", &c1, "cid-1", &dir);
    out.assert_success();
    let r1 = out.expect_json().clone();
    assert_json_subset(
        &r1,
        &json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br-cni"},
                {},
                {"name": "eth0", "sandbox": c1.path_str()},
            ],
            "ips": [
                {"interface": 2, "address": "10.77.0.2/24", "gateway": "10.77.0.1"},
                {"interface": 2, "address": "fd00:77::2/64", "gateway": "fd00:77::1"},
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.77.0.1"},
                {"dst": "::/0", "gw": "fd00:77::1"},
            ],
            "dns": {},
        }),
    );
    assert!(is_veth_name(&r1["interfaces"][1]["name"]), "{r1}");
    let cached: Value =
        serde_json::from_slice(&std::fs::read(cache_file(&host, "cid-1")).expect("cached"))
            .unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["result"]["ips"], r1["ips"]);

    // The kernel and the host's books agree with the result.
    let addrs = c1.addr_cidrs("eth0");
    assert!(
        addrs.contains(&"10.77.0.2/24".into()) && addrs.contains(&"fd00:77::2/64".into()),
        "{addrs:?}"
    );
    assert_eq!(leases(&host, NET), ["10.77.0.2", "fd00:77::2"]);
    let veth1 = host_veth(&r1);
    assert_eq!(host_link(&host, &veth1)["master"], "br-cni");
    assert_eq!(nft_elements_with(&host, &format!("{NET}/cid-1/")).len(), 4);

    // A second container; both reach each other and the gateway.
    let out = cnitool(&host, "add", &c2, "cid-2", &dir);
    out.assert_success();
    let r2 = out.expect_json().clone();
    assert_eq!(ip_of(&r2, 0), "10.77.0.3");
    assert!(reaches(&c1, "10.77.0.3"));
    assert!(reaches(&c2, "10.77.0.1"));

    // check: libcni sends the cached result as prevResult.
    for (ctr, cid) in [(&c1, "cid-1"), (&c2, "cid-2")] {
        let out = cnitool(&host, "check", ctr, cid, &dir);
        out.assert_success();
        assert_eq!(out.stdout, "", "{out}");
    }
    // check after damage: our message comes through libcni.
    c2.ip(&["addr", "del", "10.77.0.3/24", "dev", "eth0"]);
    let out = cnitool(&host, "check", &c2, "cid-2", &dir);
    out.assert_failure();
    assert!(
        out.stderr.contains("10.77.0.3/24") && out.stderr.contains("missing"),
        "{out}"
    );

    // del: everything of the attachment goes, twice is fine.
    for _ in 0..2 {
        let out = cnitool(&host, "del", &c1, "cid-1", &dir);
        out.assert_success();
        assert_eq!(out.stdout, "");
    }
    assert!(!cache_file(&host, "cid-1").exists());
    assert_eq!(c1.link_names(), ["lo"]);
    assert!(host.netns().link(&veth1).is_none());
    assert_eq!(leases(&host, NET), ["10.77.0.3", "fd00:77::3"]);
    assert!(nft_elements_with(&host, &format!("{NET}/cid-1/")).is_empty());
    assert_eq!(nft_elements_with(&host, &format!("{NET}/cid-2/")).len(), 4);

    // del of the second container after its namespace is gone.
    let path = c2.path().to_path_buf();
    drop(c2);
    let plugins = plugin_dir();
    let out = host.run(
        &netns_tests::cnitool(),
        &["del", NET, path.to_str().unwrap()],
        &[
            ("NETCONFPATH", dir.to_str().unwrap()),
            ("CNI_PATH", plugins.as_str()),
            ("CNI_CONTAINERID", "cid-2"),
            ("CNI_IFNAME", "eth0"),
        ],
        "",
    );
    out.assert_success();
    assert!(leases(&host, NET).is_empty(), "{:?}", leases(&host, NET));
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
    assert!(!cache_file(&host, "cid-2").exists());
}

#[test]
fn add_check_del_through_libcni_0_4_0_l2() {
    // An L2 network (no ipam) at 0.4.0: no IPs in the result, the link up.
    require_root();
    let host = Host::new("br-cnitool-l2");
    let dir = write_conflist(
        &host,
        "conf",
        &json!({"cniVersion": "0.4.0", "name": NET,
                "plugins": [{"type": "bridge", "bridge": "br-l2", "mtu": 1400}]}),
    );
    let ctr = host.container("c");
    let out = cnitool(&host, "add", &ctr, "l2", &dir);
    out.assert_success();
    let r = out.expect_json();
    assert!(r.get("ips").is_none() || r["ips"] == json!([]), "{r}");
    assert_eq!(r["interfaces"][2]["name"], "eth0");
    assert!(ctr.link_is_up("eth0"));
    assert_eq!(ctr.link("eth0").unwrap()["mtu"], 1400);
    cnitool(&host, "check", &ctr, "l2", &dir).assert_success();
    cnitool(&host, "del", &ctr, "l2", &dir).assert_success();
    assert_eq!(ctr.link_names(), ["lo"]);
    assert!(ports_of(&host, "br-l2").is_empty());
}
