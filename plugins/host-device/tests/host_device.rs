//! Behaviour of our `host-device`: every verb and version, the selectors,
//! the device given back under its name and state, DEL robustness (the
//! container renamed the device or reused its name, the namespace is gone,
//! the name is taken on the host), rollback of failing ADDs.
//!
//! The "physical" device is a veth end (`hd0`) whose peer sits in a "lan"
//! namespace. Kernel difference that matters here: when a namespace is
//! destroyed, a physical device in it returns to the initial namespace, but
//! a veth is destroyed with its peer. The tests that need a device to come
//! back do what the kernel does for a physical one (move it out by hand).

mod common;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const NET: &str = "hdnet";

/// A host with `hd0` (up, mtu 1400, alias "uplink") wired to "lan", where
/// `hd0-lan` has 10.50.0.254/24.
fn setup(tag: &str) -> (Host, Netns) {
    require_root();
    let host = Host::new(tag);
    let lan = host.container("lan");
    nic(&host, &lan, "hd0", None);
    host.netns()
        .ip(&["link", "set", "hd0", "mtu", "1400", "alias", "uplink"]);
    lan.ip(&["addr", "add", "10.50.0.254/24", "dev", "hd0-lan"]);
    (host, lan)
}

fn conf(version: &str, extra: Value) -> String {
    merge(
        json!({
            "cniVersion": version,
            "name": NET,
            "type": "host-device",
            "device": "hd0",
            "ipam": {"type": "host-local", "subnet": "10.50.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
        }),
        extra,
    )
    .to_string()
}

#[track_caller]
fn add(host: &Host, ns: &Netns, conf: &str) -> Value {
    add_ok(host, &ours(), "c1", ns, conf)
}

#[track_caller]
fn del(host: &Host, ns: Option<&str>, conf: &str) {
    del_ok(host, &ours(), "c1", ns, conf)
}

/// `hd0` is on the host as before ADD: name, up, MTU, MAC, alias.
#[track_caller]
fn assert_home(host: &Host, mac: &str) {
    let l = host
        .netns()
        .link("hd0")
        .unwrap_or_else(|| panic!("hd0 is not back: {:?}", host.netns().link_names()));
    assert!(host.netns().link_is_up("hd0"), "{l}");
    assert_eq!(
        (
            l["mtu"].as_u64(),
            l["address"].as_str(),
            l["ifalias"].as_str()
        ),
        (Some(1400), Some(mac), Some("uplink")),
        "{l}"
    );
}

fn mac_of(host: &Host) -> String {
    host.netns().link("hd0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn records(host: &Host) -> usize {
    std::fs::read_dir(host.state_dir().join("host-device").join(NET))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn every_version_moves_the_device_in_and_back() {
    let (host, _lan) = setup("hd-versions");
    let mac = mac_of(&host);
    for v in VERSIONS {
        let ctr = host.container("c");
        let c = conf(v, json!({}));
        let res = add(&host, &ctr, &c);
        assert!(host.netns().link("hd0").is_none());
        let st = state(&ctr, "eth0");
        assert_json_subset(
            &st,
            &json!({"mac": mac, "mtu": 1400, "up": true, "alias": "hd0"}),
        );
        if v.starts_with("0.1") || v.starts_with("0.2") {
            assert!(res["ip4"]["ip"].is_string(), "{res}");
        } else {
            assert_json_subset(
                &res,
                &json!({"interfaces": [{"name": "eth0", "mac": mac, "sandbox": ctr.path_str()}], "ips": [{"interface": 0}]}),
            );
        }
        assert_eq!(records(&host), 1);
        if !["0.1.0", "0.2.0", "0.3.0", "0.3.1"].contains(v) {
            check_ok(&host, &ours(), "c1", &ctr, &with_prev(&c, &res));
        }
        del(&host, Some(ctr.path_str()), &with_prev(&c, &res));
        assert_home(&host, &mac);
        assert_eq!(ctr.link_names(), ["lo"]);
        del(&host, Some(ctr.path_str()), &c);
        assert_home(&host, &mac);
    }
    assert_eq!(records(&host), 0);
    assert!(leases(&host, NET).is_empty());
}

/// Container IDs have no length limit: a 300-byte one works for ADD, CHECK
/// and DEL (its record's file name would pass the 255-byte limit), and a DEL
/// of one that was never added succeeds.
#[test]
fn a_long_container_id_works() {
    let (host, _lan) = setup("hd-longid");
    let mac = mac_of(&host);
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({}));
    let cid = "c".repeat(300);
    let never = "n".repeat(300);
    del_ok(&host, &ours(), &never, Some(ctr.path_str()), &c);
    let res = add_ok(&host, &ours(), &cid, &ctr, &c);
    assert!(host.netns().link("hd0").is_none());
    assert_eq!(records(&host), 1);
    check_ok(&host, &ours(), &cid, &ctr, &with_prev(&c, &res));
    del_ok(
        &host,
        &ours(),
        &cid,
        Some(ctr.path_str()),
        &with_prev(&c, &res),
    );
    assert_home(&host, &mac);
    assert_eq!(records(&host), 0);
    assert!(leases(&host, NET).is_empty());
}

#[test]
fn the_container_uses_the_moved_link() {
    let (host, _lan) = setup("hd-ping");
    let ctr = host.container("c");
    let c = conf(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [{"address": "10.50.0.7/24"}]}}),
    );
    let res = add(&host, &ctr, &c);
    assert!(
        ctr.ping("10.50.0.254"),
        "the container reaches the segment through hd0"
    );
    check_ok(&host, &ours(), "c1", &ctr, &with_prev(&c, &res));
    ctr.ip(&["link", "set", "eth0", "address", "02:50:00:00:00:01"]);
    let out = cni(
        &host,
        &ours(),
        "CHECK",
        "c1",
        Some(ctr.path_str()),
        &with_prev(&c, &res),
        &[],
    );
    assert!(
        err_msg(&out).contains("doesn't match container Mac"),
        "{out}"
    );
    // DEL puts back the MAC it had, too.
    let mac = res["interfaces"][0]["mac"].as_str().unwrap().to_string();
    del(&host, Some(ctr.path_str()), &c);
    assert_home(&host, &mac);
}

#[test]
fn l2_mode_and_hwaddr_selector() {
    let (host, _lan) = setup("hd-l2");
    let mac = mac_of(&host);
    let ctr = host.container("c");
    let c = conf(
        "1.0.0",
        json!({"device": null, "hwaddr": mac.to_uppercase(), "ipam": null, "dns": {"nameservers": ["1.1.1.1"]}}),
    );
    let res = add(&host, &ctr, &c);
    assert_json_eq(
        &res,
        &json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": mac, "sandbox": ctr.path_str()}]}),
    );
    assert!(ctr.link_is_up("eth0"));
    del(&host, Some(ctr.path_str()), &c);
    assert_home(&host, &mac);
}

/// A bad IPAM section is refused before the device moves (and before its
/// record is written).
#[test]
fn a_bad_ipam_section_is_refused_before_the_move() {
    let (host, _lan) = setup("hd-badipam");
    let ctr = host.container("c");
    let c = conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local", "subnet": "10.50.0.0/33"}}),
    );
    let out = cni(&host, &ours(), "ADD", "c1", Some(ctr.path_str()), &c, &[]);
    out.assert_cni_error(7);
    assert!(
        !host.state_dir().join("host-device").join(NET).exists(),
        "no record, no move"
    );
    assert!(host.netns().link("hd0").is_some());
}

#[test]
fn bad_input_changes_nothing() {
    let (host, _lan) = setup("hd-bad");
    let ctr = host.container("c");
    let cases = [
        (
            json!({"device": null}),
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ),
        (
            json!({"hwaddr": "02:00:00:00:00:01"}),
            r#"specify only one of "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ),
        (
            json!({"device": null, "kernelpath": "/tmp/x"}),
            r#"kernel device path "/tmp/x" must be absolute and begin with /sys/devices/"#,
        ),
        (
            json!({"device": null, "kernelpath": "/sys/devices/../../etc"}),
            "must be absolute and begin with /sys/devices/",
        ),
        (
            json!({"device": null, "hwaddr": "nonsense"}),
            r#"failed to parse MAC address "nonsense""#,
        ),
        (
            json!({"device": null, "hwaddr": "02:00:00:00:00:01"}),
            "failed to find host device: no interface with MAC 02:00:00:00:00:01",
        ),
        (json!({"device": "nope0"}), "failed to find host device"),
        (
            json!({"dataDir": "/tmp/../tmp/hd"}),
            "must be an absolute path without . or ..",
        ),
        (
            json!({"device": "a-name-no-link-can-have"}),
            "failed to find host device",
        ),
        (
            json!({"device": null, "runtimeConfig": {"deviceID": "0000:99:99.9"}}),
            "runtime config DeviceID 0000:99:99.9 not found or unsupported",
        ),
        (json!({"device": "lo"}), "failed to move link"),
        // A 0.2.0 result needs an address: refused before the move.
        (
            json!({"cniVersion": "0.2.0", "ipam": null}),
            "cannot convert: no valid IP addresses",
        ),
    ];
    for (extra, msg) in cases {
        let out = cni(
            &host,
            &ours(),
            "ADD",
            "c1",
            Some(ctr.path_str()),
            &conf("1.0.0", extra.clone()),
            &[],
        );
        assert!(err_msg(&out).contains(msg), "{extra}: {out}");
    }
    assert_eq!(
        host.netns().link("lo").unwrap().get("ifalias"),
        None,
        "lo's alias was restored"
    );
    assert_eq!(ctr.link_names(), ["lo"]);
    assert_home(&host, &mac_of(&host));
    assert_eq!(records(&host), 0);
    assert!(leases(&host, NET).is_empty());
}

/// A runtime injects `runtimeConfig.deviceID` (Multus with a device
/// plugin) into a config that names its device: as with the reference, the
/// deviceID must exist, and a config's name wins over one bound to a
/// kernel driver (a user-space one would mean DPDK mode).
#[test]
fn an_injected_device_id_yields_to_the_configured_device() {
    let (host, _lan) = setup("hd-devid");
    let mac = mac_of(&host);
    let with_id = |id: &str| {
        conf(
            "1.0.0",
            json!({"capabilities": {"deviceID": true}, "runtimeConfig": {"deviceID": id}}),
        )
    };
    let ctr = host.container("c");
    let missing = cni(
        &host,
        &ours(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &with_id("0000:99:99.9"),
        &[],
    );
    assert!(
        err_msg(&missing).contains("runtime config DeviceID 0000:99:99.9 not found"),
        "{missing}"
    );
    // A PCI device of this machine bound to a kernel driver (read only).
    let kernel_bound = std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path().join("driver")).is_ok_and(|d| {
                let d = d
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                !["vfio-pci", "uio_pci_generic", "igb_uio"].contains(&d.as_str())
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let Some(id) = kernel_bound else {
        eprintln!(
            "no PCI device bound to a kernel driver here: the deviceID precedence case is not run"
        );
        return;
    };
    let c = with_id(&id);
    let res = add(&host, &ctr, &c);
    assert_eq!(res["interfaces"][0]["mac"], mac.as_str());
    del(&host, Some(ctr.path_str()), &c);
    assert_home(&host, &mac);
}

#[test]
fn failing_adds_give_the_device_back() {
    let (host, _lan) = setup("hd-rollback");
    let mac = mac_of(&host);
    let ctr = host.container("c");
    let cases = [
        (
            "IPAM",
            json!({"ipam": {"type": "host-local", "subnet": "10.50.0.0/33"}}),
        ),
        (
            "route",
            json!({"ipam": {"type": "host-local", "subnet": "10.50.0.0/24", "routes": [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]}}),
        ),
    ];
    for (what, extra) in cases {
        let out = cni(
            &host,
            &ours(),
            "ADD",
            "c1",
            Some(ctr.path_str()),
            &conf("1.0.0", extra),
            &[],
        );
        out.assert_failure();
        assert_home(&host, &mac);
        assert_eq!(ctr.link_names(), ["lo"], "{what}");
        assert_eq!(records(&host), 0, "{what}");
        assert!(leases(&host, NET).is_empty(), "{what}");
    }
    // The name is taken in the container: refused before anything moves.
    ctr.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &conf("1.0.0", json!({})),
        &[],
    );
    assert!(err_msg(&out).contains("already exists"), "{out}");
    assert_home(&host, &mac);
}

#[test]
fn del_finds_the_device_the_container_renamed() {
    let (host, _lan) = setup("hd-renamed");
    let mac = mac_of(&host);
    let c = conf("1.0.0", json!({}));
    // Renamed; renamed, alias cleared and its name reused by another link.
    for reuse in [false, true] {
        let ctr = host.container("c");
        add(&host, &ctr, &c);
        ctr.ip(&["link", "set", "eth0", "down"]);
        ctr.ip(&["link", "set", "eth0", "name", "net9"]);
        if reuse {
            ctr.ip(&["link", "set", "net9", "alias", ""]);
            ctr.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0-peer",
            ]);
        }
        del(&host, Some(ctr.path_str()), &c);
        assert_home(&host, &mac);
        let mut left = ctr.link_names();
        left.sort();
        let want: &[&str] = if reuse {
            &["eth0", "eth0-peer", "lo"]
        } else {
            &["lo"]
        };
        assert_eq!(left, want, "the container's own links stay");
        del(&host, Some(ctr.path_str()), &c);
    }
    assert!(leases(&host, NET).is_empty());
}

/// A DEL that cannot look into the container fails and keeps the record:
/// the device is still there, under a name only the record knows.
#[test]
fn a_del_that_cannot_reach_the_container_keeps_the_record() {
    let (host, _lan) = setup("hd-unreached");
    let mac = mac_of(&host);
    let c = conf("1.0.0", json!({}));
    let ctr = host.container("c");
    add(&host, &ctr, &c);
    ctr.ip(&["link", "set", "eth0", "down"]);
    ctr.ip(&["link", "set", "eth0", "name", "net9"]);
    let bogus = std::env::temp_dir().join(format!("nuage-hd-not-a-netns-{}", std::process::id()));
    std::fs::write(&bogus, "not a namespace").unwrap();
    let out = cni(&host, &ours(), "DEL", "c1", bogus.to_str(), &c, &[]);
    std::fs::remove_file(&bogus).unwrap();
    out.assert_failure();
    assert_eq!(records(&host), 1, "the record outlives a failed DEL");
    assert_eq!(
        leases(&host, NET).len(),
        1,
        "so does the lease: the device may still hold the address"
    );
    assert!(ctr.link("net9").is_some());
    del(&host, Some(ctr.path_str()), &c);
    assert_home(&host, &mac);
    assert_eq!(records(&host), 0);
    assert!(leases(&host, NET).is_empty());
}

#[test]
fn del_when_the_name_is_taken_on_the_host() {
    let (host, lan) = setup("hd-taken");
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({"ipam": null}));
    let res = add(&host, &ctr, &c);
    host.netns().veth_pair_into("hd0", &lan, "impostor-lan");
    del(&host, Some(ctr.path_str()), &c);
    let back = host
        .netns()
        .link("hostdev0")
        .expect("the device is back under another name, never lost");
    assert_eq!(back["address"], res["interfaces"][0]["mac"]);
    assert_eq!(back["ifalias"], "uplink");
}

#[test]
fn del_with_the_netns_gone() {
    let (host, lan) = setup("hd-gone");
    let c = conf("1.0.0", json!({}));
    let ctr = host.container("c");
    add(&host, &ctr, &c);
    let path = ctr.path_str().to_string();
    // A veth is destroyed with its namespace (a physical device would
    // return to the initial namespace): DEL still releases the lease and
    // the record, and succeeds, twice.
    drop(ctr);
    del(&host, Some(&path), &c);
    del(&host, Some(&path), &c);
    del(&host, None, &c);
    // DEL needs no device selector (it goes by its record).
    del(&host, Some(&path), &conf("1.0.0", json!({"device": null})));
    assert!(leases(&host, NET).is_empty());
    assert_eq!(records(&host), 0);
    // The kernel destroys a dead namespace's devices asynchronously
    // (cleanup_net runs from a workqueue).
    wait_until("the veth stand-in goes with its namespace", || {
        host.netns().link("hd0").is_none() && lan.link("hd0-lan").is_none()
    });
}

#[test]
fn del_gives_back_a_device_that_came_home_on_its_own() {
    let (host, _lan) = setup("hd-home");
    let mac = mac_of(&host);
    let c = conf("1.0.0", json!({}));
    let ctr = host.container("c");
    add(&host, &ctr, &c);
    // What the kernel does to a physical device when its namespace dies:
    // back to the initial namespace, as `dev<N>` when its name is taken there.
    ctr.ip(&["link", "set", "eth0", "netns", host.name(), "name", "dev3"]);
    let path = ctr.path_str().to_string();
    drop(ctr);
    del(&host, Some(&path), &c);
    assert_home(&host, &mac);
    assert!(host.netns().link("dev3").is_none());
    assert!(leases(&host, NET).is_empty());
    assert_eq!(records(&host), 0);
}

#[test]
fn gc_and_status() {
    let (host, _lan) = setup("hd-gc");
    let mac = mac_of(&host);
    let c = conf("1.1.0", json!({}));
    let out = cni(&host, &ours(), "STATUS", "", None, &c, &[]);
    assert_eq!(out.assert_success().stdout, "");
    let ctr = host.container("c");
    add(&host, &ctr, &c);
    ctr.ip(&["link", "set", "eth0", "netns", host.name(), "name", "dev5"]);
    // c1 is still valid: nothing happens.
    let keep = with(
        &c,
        "cni.dev/valid-attachments",
        json!([{"containerID": "c1", "ifname": "eth0"}]),
    );
    cni(&host, &ours(), "GC", "", None, &keep, &[]).assert_success();
    assert_eq!((records(&host), leases(&host, NET).len()), (1, 1));
    // c1 is gone: its lease is released and the device renamed back.
    let gc = with(&c, "cni.dev/valid-attachments", json!([]));
    cni(&host, &ours(), "GC", "", None, &gc, &[]).assert_success();
    assert_eq!((records(&host), leases(&host, NET).len()), (0, 0));
    assert_home(&host, &mac);
    cni(
        &host,
        &ours(),
        "STATUS",
        "",
        None,
        &conf("1.1.0", json!({"ipam": {"type": "no-such-ipam"}})),
        &[],
    )
    .assert_cni_error(50);
}
