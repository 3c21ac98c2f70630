//! Differential tests: the same requests to our `host-device` and to the
//! reference `/usr/lib/cni/host-device` (Debian containernetworking-plugins
//! v1.1.1, spec <= 1.0.0) give the same result and container-side state;
//! and each one's DEL gives back what the other's ADD moved.
//!
//! Deliberate differences, asserted here: we omit an empty `dns` in 1.x
//! results; our DEL gives the device back *up* (if it was) with its own
//! alias, the reference leaves it down with its alias set to its name
//! (plugins#754); a repeated DEL succeeds with us and fails with the
//! reference; we refuse a config naming the device twice (the reference
//! silently picks one).

mod common;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

fn reference() -> std::path::PathBuf {
    require_reference("host-device")
}

fn setup(tag: &str) -> (Host, Netns) {
    require_root();
    let host = Host::new(tag);
    let lan = host.container("lan");
    nic(&host, &lan, "hd0", None);
    host.netns()
        .ip(&["link", "set", "hd0", "mtu", "1400", "alias", "uplink"]);
    (host, lan)
}

fn config(version: &str, extra: &Value, data_dir: &str) -> String {
    let mut v = json!({"cniVersion": version, "name": "hddiff", "type": "host-device"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    if v["ipam"]["type"] == "host-local" {
        v["ipam"]["dataDir"] = json!(data_dir);
    }
    v.to_string()
}

#[test]
fn results_and_container_state_agree() {
    let (host, _lan) = setup("hd-diff");
    let ctr = host.container("c");
    let mac = host.netns().link("hd0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let v4 = json!({"type": "host-local", "subnet": "10.51.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.51.0.254"}]});
    let matrix = [
        ("device, L2", json!({"device": "hd0"})),
        (
            "device, IPv4, dns",
            json!({"device": "hd0", "ipam": v4, "dns": {"nameservers": ["10.51.0.53"]}}),
        ),
        (
            "hwaddr, static",
            json!({"hwaddr": mac, "ipam": {"type": "static", "addresses": [{"address": "10.51.0.9/24", "gateway": "10.51.0.1"}, {"address": "fd51::9/64"}]}}),
        ),
    ];
    for (what, extra) in matrix {
        for version in ["0.3.1", "0.4.0", "1.0.0"] {
            if what.starts_with("device, L2") && version == "0.3.1" {
                continue;
            }
            let mut seen = Vec::new();
            for (who, bin) in [("ours", ours()), ("reference", reference())] {
                let dir = host
                    .dir()
                    .join(format!("ipam-{who}-{version}-{}", what.len()));
                let c = config(version, &extra, dir.to_str().unwrap());
                let out = cni(&host, &bin, "ADD", "c1", Some(ctr.path_str()), &c, &[]);
                assert!(out.success(), "{what} {version} {who}:\n{out}");
                let res = out.expect_json().clone();
                seen.push((res.clone(), state(&ctr, "eth0")));
                if version != "0.3.1" {
                    let check = cni(
                        &host,
                        &bin,
                        "CHECK",
                        "c1",
                        Some(ctr.path_str()),
                        &with_prev(&c, &res),
                        &[],
                    );
                    assert!(check.success(), "{what} {version} {who} CHECK:\n{check}");
                }
                cni(&host, &bin, "DEL", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
                let back = host.netns().link("hd0").expect("hd0 is back");
                if who == "ours" {
                    assert!(
                        host.netns().link_is_up("hd0") && back["ifalias"] == "uplink",
                        "{back}"
                    );
                } else {
                    // The reference's DEL: down, alias = its name.
                    assert!(
                        !host.netns().link_is_up("hd0") && back["ifalias"] == "hd0",
                        "{back}"
                    );
                    host.netns()
                        .ip(&["link", "set", "hd0", "up", "alias", "uplink"]);
                }
            }
            let ((o, os), (r, rs)) = (&seen[0], &seen[1]);
            let r = without_empty_dns(r);
            assert!(
                json_eq(o, &r),
                "{what} {version}: results differ:\n{}",
                json_diff(o, &r).join("\n")
            );
            assert!(
                json_eq(os, rs),
                "{what} {version}: container state differs:\n{}",
                json_diff(os, rs).join("\n")
            );
        }
    }
}

#[test]
fn each_del_gives_back_what_the_other_add_moved() {
    let (host, _lan) = setup("hd-diff-cross");
    let ctr = host.container("c");
    let c = config("1.0.0", &json!({"device": "hd0"}), "");
    for (adder, deleter) in [(reference(), ours()), (ours(), reference())] {
        cni(&host, &adder, "ADD", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
        cni(&host, &deleter, "DEL", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
        assert!(host.netns().link("hd0").is_some(), "{}", deleter.display());
        assert_eq!(ctr.link_names(), ["lo"]);
        host.netns().ip(&["link", "set", "hd0", "up"]);
    }
}

#[test]
fn errors_and_repeated_del() {
    let (host, _lan) = setup("hd-diff-err");
    let ctr = host.container("c");
    let none = config("1.0.0", &json!({}), "");
    let o = cni(
        &host,
        &ours(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &none,
        &[],
    );
    let r = cni(
        &host,
        &reference(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &none,
        &[],
    );
    assert_eq!(err_msg(&o), err_msg(&r));
    // Repeated DEL: the reference fails ("Link not found"), we succeed.
    let c = config("1.0.0", &json!({"device": "hd0"}), "");
    for bin in [ours(), reference()] {
        cni(&host, &bin, "ADD", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
        cni(&host, &bin, "DEL", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
    }
    cni(&host, &ours(), "DEL", "c1", Some(ctr.path_str()), &c, &[]).assert_success();
    cni(
        &host,
        &reference(),
        "DEL",
        "c1",
        Some(ctr.path_str()),
        &c,
        &[],
    )
    .assert_failure();
}
