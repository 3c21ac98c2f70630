//! Behaviour of our `macvlan`: every verb and version, L2 and L3 modes,
//! connectivity between containers, bad input, rollback of failing ADDs,
//! DEL robustness, and the `hostShim`. Each test builds its own host
//! namespace, where a veth end plays the physical NIC (the kernel has no
//! `dummy`).

mod common;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const NET: &str = "mvnet";

/// A host with the NIC `phy0` (10.40.0.1/24, default route via .254) on a
/// "lan" namespace.
fn setup(tag: &str) -> (Host, Netns) {
    require_root();
    require_link_kind("macvlan");
    let host = Host::new(tag);
    let lan = host.container("lan");
    nic(&host, &lan, "phy0", Some("10.40.0.1/24"));
    host.netns().ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.40.0.254",
        "dev",
        "phy0",
    ]);
    (host, lan)
}

fn conf(version: &str, extra: Value) -> String {
    merge(
        json!({
            "cniVersion": version,
            "name": NET,
            "type": "macvlan",
            "master": "phy0",
            "ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "rangeStart": "10.40.0.10", "routes": [{"dst": "0.0.0.0/0"}]},
        }),
        extra,
    )
    .to_string()
}

#[track_caller]
fn add(host: &Host, ns: &Netns, cid: &str, conf: &str) -> Value {
    add_ok(host, &ours(), cid, ns, conf)
}

#[track_caller]
fn del(host: &Host, ns: Option<&Netns>, cid: &str, conf: &str) {
    del_ok(host, &ours(), cid, ns.map(Netns::path_str), conf)
}

#[test]
fn every_version_add_check_del() {
    let (host, _lan) = setup("mv-versions");
    for (i, v) in VERSIONS.iter().enumerate() {
        let ctr = host.container("c");
        let cid = format!("c{i}");
        let c = conf(v, json!({}));
        let res = add(&host, &ctr, &cid, &c);
        assert_eq!(res["cniVersion"], *v);
        if v.starts_with("0.1") || v.starts_with("0.2") {
            assert!(
                res["ip4"]["ip"].as_str().unwrap().starts_with("10.40.0."),
                "{res}"
            );
        } else {
            assert_json_subset(
                &res,
                &json!({"interfaces": [{"name": "eth0", "sandbox": ctr.path_str()}], "ips": [{"interface": 0, "gateway": "10.40.0.1"}], "routes": [{"dst": "0.0.0.0/0"}]}),
            );
            let mac = res["interfaces"][0]["mac"].as_str().unwrap();
            assert_eq!(ctr.link("eth0").unwrap()["address"], mac);
        }
        let st = state(&ctr, "eth0");
        assert_eq!(
            (st["kind"].as_str(), st["mode"].as_str(), st["up"].as_bool()),
            (Some("macvlan"), Some("bridge"), Some(true))
        );
        assert_eq!(ctr.sysctl("net.ipv4.conf.eth0.arp_notify"), "1");
        if !["0.1.0", "0.2.0", "0.3.0", "0.3.1"].contains(v) {
            cni(
                &host,
                &ours(),
                "CHECK",
                &cid,
                Some(ctr.path_str()),
                &with_prev(&c, &res),
                &[],
            )
            .assert_success();
        }
        del(&host, Some(&ctr), &cid, &with_prev(&c, &res));
        assert!(ctr.link("eth0").is_none());
        del(&host, Some(&ctr), &cid, &c);
    }
    assert!(leases(&host, NET).is_empty(), "{:?}", leases(&host, NET));
    assert_eq!(
        host.netns().link_names().len(),
        2,
        "only lo and phy0 are left: {:?}",
        host.netns().link_names()
    );
}

#[test]
fn check_fails_when_something_is_off() {
    let (host, _lan) = setup("mv-check");
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({}));
    let res = add(&host, &ctr, "c1", &c);
    let check = |conf: &str| {
        cni(
            &host,
            &ours(),
            "CHECK",
            "c1",
            Some(ctr.path_str()),
            conf,
            &[],
        )
    };
    check(&with_prev(&c, &res)).assert_success();
    check(&c).assert_failure();
    assert_eq!(err_msg(&check(&c)), "required prevResult missing");
    // Another mode than the link's.
    let out = check(&with_prev(&conf("1.0.0", json!({"mode": "private"})), &res));
    assert!(
        err_msg(&out).contains("does not match expected value: private"),
        "{out}"
    );
    ctr.ip(&["addr", "flush", "dev", "eth0"]);
    check(&with_prev(&c, &res)).assert_failure();
    del(&host, Some(&ctr), "c1", &c);
}

#[test]
fn bridge_mode_connects_containers_and_private_mode_isolates_them() {
    let (host, _lan) = setup("mv-modes");
    for (mode, reachable) in [("bridge", true), ("private", false), ("vepa", false)] {
        let c = conf("1.0.0", json!({"mode": mode}));
        let (a, b) = (host.container("a"), host.container("b"));
        let ra = add(&host, &a, "ca", &c);
        let rb = add(&host, &b, "cb", &c);
        let ip_b = ip_of(&rb, 0);
        if reachable {
            assert!(a.ping(&ip_b), "mode {mode}: a -> {ip_b}");
        } else {
            assert!(unreachable(&a, &ip_b), "mode {mode}: a reached {ip_b}");
        }
        assert_eq!(state(&a, "eth0")["mode"], mode);
        del(&host, Some(&a), "ca", &with_prev(&c, &ra));
        del(&host, Some(&b), "cb", &with_prev(&c, &rb));
    }
}

#[test]
fn l2_mode_without_ipam() {
    let (host, _lan) = setup("mv-l2");
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({"ipam": null, "mtu": 1400}));
    let res = add(&host, &ctr, "c1", &c);
    assert_json_subset(&res, &json!({"interfaces": [{"name": "eth0"}]}));
    assert!(res.get("ips").is_none(), "{res}");
    let st = state(&ctr, "eth0");
    assert_eq!(
        (st["up"].as_bool(), st["mtu"].as_u64()),
        (Some(true), Some(1400))
    );
    assert_eq!(st["addrs"], json!([]));
    // An L2 result cannot be written in the 0.1.0/0.2.0 shape.
    let other = host.container("d");
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "c2",
        Some(other.path_str()),
        &conf("0.2.0", json!({"ipam": null})),
        &[],
    );
    assert!(
        err_msg(&out).contains("cannot convert: no valid IP addresses"),
        "{out}"
    );
    del(&host, Some(&ctr), "c1", &c);
}

#[test]
fn mac_sources_in_order() {
    let (host, _lan) = setup("mv-mac");
    let c = conf("1.0.0", json!({"mac": "02:00:00:00:00:01", "ipam": null}));
    let cases: [(&str, &str, &str); 5] = [
        ("", "{}", "02:00:00:00:00:01"),
        (
            "IgnoreUnknown=1;MAC=02:00:00:00:00:02",
            "{}",
            "02:00:00:00:00:02",
        ),
        (
            "MAC=02:00:00:00:00:02",
            r#"{"mac":"02:00:00:00:00:03"}"#,
            "02:00:00:00:00:03",
        ),
        // Empty sources are none; only the winning one is read, in any
        // 48-bit form of Go's net.ParseMAC.
        ("IgnoreUnknown=1;MAC=", r#"{"mac":""}"#, "02:00:00:00:00:01"),
        (
            "IgnoreUnknown=1;MAC=zz",
            r#"{"mac":"02-00-00-00-00-0A"}"#,
            "02:00:00:00:00:0a",
        ),
    ];
    for (args, rc, want) in cases {
        let ctr = host.container("c");
        let c = with(&c, "runtimeConfig", serde_json::from_str(rc).unwrap());
        let out = cni(
            &host,
            &ours(),
            "ADD",
            "c1",
            Some(ctr.path_str()),
            &c,
            &[("CNI_ARGS", args)],
        );
        assert_eq!(
            out.assert_success().expect_json()["interfaces"][0]["mac"],
            want,
            "{args} {rc}"
        );
        assert_eq!(ctr.link("eth0").unwrap()["address"], want);
        del(&host, Some(&ctr), "c1", &c);
    }
    // Two containers with one MAC: the kernel refuses the second at UP;
    // the error says why, with and without IPAM, and nothing is left.
    let (a, b) = (host.container("a"), host.container("b"));
    for c in [
        c.clone(),
        conf("1.0.0", json!({"mac": "02:00:00:00:00:01"})),
    ] {
        add(&host, &a, "ca", &c);
        let out = cni(&host, &ours(), "ADD", "cb", Some(b.path_str()), &c, &[]);
        let e = out.expect_json();
        assert!(
            e["details"]
                .as_str()
                .is_some_and(|d| d.contains("already has MAC 02:00:00:00:00:01")),
            "{out}"
        );
        assert_eq!(b.link_names(), ["lo"]);
        del(&host, Some(&a), "ca", &c);
    }
    assert!(leases(&host, NET).is_empty());
    // Another failure (a duplicate route, EEXIST) gets no MAC hint.
    let dup = conf(
        "1.0.0",
        json!({"mac": "02:00:00:00:00:01", "ipam": {"type": "static",
               "addresses": [{"address": "10.40.0.77/24"}],
               "routes": [{"dst": "192.0.2.0/24"}, {"dst": "192.0.2.0/24"}]}}),
    );
    let out = cni(&host, &ours(), "ADD", "ca", Some(a.path_str()), &dup, &[]);
    let e = out.assert_cni_error(999);
    assert!(e.get("details").is_none(), "{out}");
    assert_eq!(a.link_names(), ["lo"]);
}

#[test]
fn bcqueuelen_mtu_and_a_host_name_that_is_taken() {
    let (host, lan) = setup("mv-attrs");
    // A host link called like the container interface must not collide:
    // the macvlan is made in the container under a temporary name.
    nic(&host, &lan, "eth0", None);
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({"bcqueuelen": 2500, "mtu": 1300}));
    add(&host, &ctr, "c1", &c);
    let link = ctr.link("eth0").unwrap();
    assert_eq!(link["linkinfo"]["info_data"]["bcqueuelen"], 2500, "{link}");
    assert_eq!(link["mtu"], 1300);
    assert!(host.netns().link("eth0").is_some());
    del(&host, Some(&ctr), "c1", &c);
}

#[test]
fn master_defaults_to_the_default_route_interface() {
    let (host, lan) = setup("mv-default");
    nic(&host, &lan, "phy1", None);
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({"master": null}));
    add(&host, &ctr, "c1", &c);
    let parent = ctr.link("eth0").unwrap()["link_index"].as_u64();
    let phy0 = host.netns().link("phy0").unwrap()["ifindex"].as_u64();
    assert_eq!(
        parent, phy0,
        "the macvlan's parent is phy0, the default route's interface"
    );
    // CHECK resolves the same default.
    let res = add_check_prev(&host, &ctr, &c);
    del(&host, Some(&ctr), "c1", &with_prev(&c, &res));
}

/// The result of the ADD that made `ctr`'s eth0, rebuilt for CHECK.
fn add_check_prev(host: &Host, ctr: &Netns, c: &str) -> Value {
    let link = ctr.link("eth0").unwrap();
    let addr = &ctr.addrs("eth0")[0];
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": link["address"], "sandbox": ctr.path_str()}],
        "ips": [{"interface": 0, "address": format!("{}/{}", addr["local"].as_str().unwrap(), addr["prefixlen"]), "gateway": "10.40.0.1"}],
    });
    cni(
        host,
        &ours(),
        "CHECK",
        "c1",
        Some(ctr.path_str()),
        &with_prev(c, &prev),
        &[],
    )
    .assert_success();
    prev
}

#[test]
fn link_in_container() {
    let (host, lan) = setup("mv-inctr");
    let ctr = host.container("c");
    // The master lives in the container's namespace.
    lan.veth_pair_into("up0-lan", &ctr, "up0");
    let c = conf("1.0.0", json!({"master": "up0", "linkInContainer": true}));
    let res = add(&host, &ctr, "c1", &c);
    assert_eq!(ctr.link("eth0").unwrap()["link"], "up0");
    check_ok(&host, &ours(), "c1", &ctr, &with_prev(&c, &res));
    del(&host, Some(&ctr), "c1", &c);
    assert!(ctr.link("eth0").is_none() && ctr.link("up0").is_some());
}

#[test]
fn bad_input() {
    let (host, _lan) = setup("mv-bad");
    let ctr = host.container("c");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"master": "nope0"}),
            r#"failed to lookup master "nope0""#,
        ),
        // Longer than any interface name (the kernel would answer ERANGE).
        (
            json!({"master": "a-name-no-link-can-have"}),
            r#"failed to lookup master "a-name-no-link-can-have""#,
        ),
        (
            json!({"mtu": 9000}),
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
        (
            json!({"mtu": -1}),
            "invalid MTU -1, must be [0, master MTU(1500)]",
        ),
        // Below the kernel's floor: refused up front, not as a bad master.
        (
            json!({"mtu": 67}),
            "invalid MTU 67, must be 0 or at least 68, IPv4's minimum",
        ),
        (json!({"mode": "l3"}), r#"unknown macvlan mode: "l3""#),
        (
            json!({"mac": "zz:00:00:00:00:00"}),
            "invalid args zz:00:00:00:00:00 for MAC addr",
        ),
        (
            json!({"hostShim": true, "mode": "private"}),
            "hostShim: needs mode",
        ),
        (
            json!({"hostShim": {"bogus": 1}}),
            "invalid hostShim: unknown field `bogus`",
        ),
        (
            json!({"hostShim": 5}),
            "invalid hostShim: 5 is neither a boolean nor an object",
        ),
        // A template name: each ADD would make another shim.
        (
            json!({"hostShim": {"name": "mvsh%d"}}),
            r#"hostShim: invalid interface name "mvsh%d""#,
        ),
        (
            json!({"bcqueuelen": -1}),
            "invalid bcqueuelen: invalid value: integer `-1`",
        ),
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
    // No default route and no master.
    host.netns().ip(&["route", "del", "default"]);
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &conf("1.0.0", json!({"master": null})),
        &[],
    );
    assert!(
        err_msg(&out).contains("no default route interface found"),
        "{out}"
    );
    // The interface name is taken in the container.
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
    // Nothing was left behind by any of these.
    assert_eq!(ctr.link_names().len(), 3, "{:?}", ctr.link_names());
    assert!(leases(&host, NET).is_empty());
    assert_eq!(host.netns().link_names().len(), 2);
}

#[test]
fn failing_adds_are_rolled_back() {
    let (host, _lan) = setup("mv-rollback");
    let ctr = host.container("c");
    let cases = [
        // IPAM fails: the macvlan made before it goes.
        (
            "IPAM",
            json!({"ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "rangeStart": "10.40.0.300"}}),
        ),
        // Configuring the container fails after IPAM: lease and link go.
        (
            "route",
            json!({"ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "routes": [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]}}),
        ),
        // The shim cannot be made (its name is a veth): lease, link and record go.
        ("hostShim", json!({"hostShim": {"name": "phy0"}})),
    ];
    for (what, extra) in cases {
        let c = conf("1.0.0", extra);
        let out = cni(&host, &ours(), "ADD", "c1", Some(ctr.path_str()), &c, &[]);
        out.assert_failure();
        assert_eq!(ctr.link_names(), ["lo"], "{what}: {out}");
        assert!(
            leases(&host, NET).is_empty(),
            "{what}: {:?}",
            leases(&host, NET)
        );
        let records = host.state_dir().join("macvlan").join(NET);
        let left: Vec<_> = std::fs::read_dir(&records)
            .map(|d| d.flatten().filter(|e| e.file_name() != ".lock").count())
            .into_iter()
            .collect();
        assert!(
            left.iter().all(|n| *n == 0),
            "{what}: records left in {}",
            records.display()
        );
    }
    assert_eq!(host.netns().link_names().len(), 2);
}

#[test]
fn del_is_idempotent_and_needs_no_netns() {
    let (host, _lan) = setup("mv-del");
    let c = conf("1.0.0", json!({}));
    let ctr = host.container("c");
    add(&host, &ctr, "c1", &c);
    // The namespace goes first (the macvlan with it): DEL still releases the lease.
    let path = ctr.path_str().to_string();
    drop(ctr);
    assert_eq!(leases(&host, NET).len(), 1);
    for _ in 0..2 {
        let out = cni(&host, &ours(), "DEL", "c1", Some(&path), &c, &[]);
        out.assert_success();
    }
    assert!(leases(&host, NET).is_empty());
    // Without CNI_NETNS, and for an attachment that never existed.
    let ctr = host.container("c");
    add(&host, &ctr, "c2", &c);
    del(&host, None, "c2", &c);
    assert!(leases(&host, NET).is_empty());
    del(&host, None, "never-added", &c);
    // A DEL with the master gone works too.
    host.netns().ip(&["link", "del", "phy0"]);
    del(&host, Some(&ctr), "c2", &c);
    // Nor does what ADD refuses stop a DEL: a bad mode, MAC, CNI_ARGS,
    // bcqueuelen (a key the reference v1.1.1 does not read) or hostShim.
    host.netns()
        .ip(&["link", "add", "phy0", "type", "veth", "peer", "phy0p"]);
    add(&host, &ctr, "c3", &c);
    let odd = conf(
        "1.0.0",
        json!({"mode": "bogus", "mac": "nonsense", "bcqueuelen": -1,
               "hostShim": {"name": "not a name", "bogus": 1}, "linkInContainer": "yes"}),
    );
    let out = cni(
        &host,
        &ours(),
        "DEL",
        "c3",
        Some(ctr.path_str()),
        &odd,
        &[("CNI_ARGS", "FOO=bar")],
    );
    out.assert_success();
    assert!(leases(&host, NET).is_empty());
    assert_eq!(ctr.link_names(), ["lo"]);
}

#[test]
fn host_shim_lets_the_host_reach_its_containers() {
    let (host, _lan) = setup("mv-shim");
    let plain = conf("1.0.0", json!({}));
    let shim = conf("1.0.0", json!({"hostShim": {"name": "mvshim0"}}));
    // Without the shim: the kernel's rule, the host cannot reach its macvlans.
    let a = host.container("a");
    let ra = add(&host, &a, "ca", &plain);
    let ip = |r: &Value| ip_of(r, 0);
    assert!(
        unreachable(host.netns(), &ip(&ra)),
        "the host reached a macvlan container without a shim"
    );
    del(&host, Some(&a), "ca", &plain);

    let (b, c) = (host.container("b"), host.container("c"));
    let rb = add(&host, &b, "cb", &shim);
    let rc = add(&host, &c, "cc", &shim);
    assert!(host.netns().ping(&ip(&rb)) && host.netns().ping(&ip(&rc)));
    assert!(
        b.ping("10.40.0.1"),
        "the container reaches the host's address"
    );
    let link = host.netns().link("mvshim0").expect("the shim exists");
    assert_eq!(
        (
            link["linkinfo"]["info_kind"].as_str(),
            link["link"].as_str()
        ),
        (Some("macvlan"), Some("phy0"))
    );
    check_ok(&host, &ours(), "cb", &b, &with_prev(&shim, &rb));

    // DEL without prevResult finds its routes from the record; the shim stays for c.
    del(&host, Some(&b), "cb", &shim);
    let routes = host.netns().routes(Family::V4);
    assert!(
        !routes.iter().any(|r| r["dst"] == ip(&rb).as_str()),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == ip(&rc).as_str() && r["dev"] == "mvshim0"),
        "{routes:?}"
    );
    // The route gone, CHECK says so.
    host.netns().ip(&["route", "del", &ip(&rc)]);
    cni(
        &host,
        &ours(),
        "CHECK",
        "cc",
        Some(c.path_str()),
        &with_prev(&shim, &rc),
        &[],
    )
    .assert_failure();
    // GC of a network where c is no longer valid removes c's record and the shim.
    let gc = with(
        &with(&shim, "cniVersion", json!("1.1.0")),
        "cni.dev/valid-attachments",
        json!([]),
    );
    cni(&host, &ours(), "GC", "", None, &gc, &[]).assert_success();
    assert!(
        host.netns().link("mvshim0").is_none(),
        "the shim goes with its last route"
    );
    assert!(leases(&host, NET).is_empty());
    del(&host, Some(&c), "cc", &shim);
    assert_eq!(host.netns().link_names().len(), 2);
}

#[test]
fn shim_is_deleted_with_the_last_container() {
    let (host, _lan) = setup("mv-shim-last");
    let dual = json!({"type": "host-local", "ranges": [[{"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.10"}], [{"subnet": "fd40::/64"}]]});
    let shim = conf(
        "1.0.0",
        json!({"hostShim": {"addresses": ["10.40.0.250/24", "fd40::250/64"]}, "ipam": dual}),
    );
    let a = host.container("a");
    let ra = add(&host, &a, "ca", &shim);
    let name = host
        .netns()
        .link_names()
        .into_iter()
        .find(|n| n.starts_with("mvshim"))
        .expect("a shim named after the network");
    let addrs = host.netns().addr_cidrs(&name);
    assert!(addrs.contains(&"10.40.0.250/32".to_string()), "{addrs:?}");
    let dst = ip_of(&ra, 0);
    let route = host
        .netns()
        .routes(Family::V4)
        .into_iter()
        .find(|r| r["dst"] == dst.as_str())
        .unwrap();
    assert_eq!(route["prefsrc"], "10.40.0.250", "{route}");
    assert!(host.netns().ping(&dst));
    let dst6 = ip_of(&ra, 1);
    let route = host
        .netns()
        .routes(Family::V6)
        .into_iter()
        .find(|r| r["dst"] == dst6.as_str())
        .unwrap();
    assert_eq!(route["prefsrc"], "fd40::250", "{route}");
    assert!(host.netns().ping(&dst6));
    del(&host, Some(&a), "ca", &with_prev(&shim, &ra));
    assert!(host.netns().link(&name).is_none());
}

/// A link named as the shim that nuage did not create (an administrator's
/// own shim, on the master or on another link) is neither taken over by
/// ADD nor deleted by the DEL that follows the failed ADD.
#[test]
fn a_shim_nuage_did_not_create_is_left_alone() {
    let (host, lan) = setup("mv-shim-foreign");
    nic(&host, &lan, "phy1", None);
    for parent in ["phy0", "phy1"] {
        host.netns().ip(&[
            "link", "add", "mvadm", "link", parent, "type", "macvlan", "mode", "bridge",
        ]);
        host.netns()
            .ip(&["addr", "add", "10.40.0.20/24", "dev", "mvadm"]);
        host.netns().ip(&["link", "set", "mvadm", "up"]);
        let c = conf("1.0.0", json!({"hostShim": {"name": "mvadm"}}));
        let ctr = host.container("c");
        let needle = "is not this network's shim";
        add_err(&host, &ours(), "c1", &ctr, &c, 999, needle);
        del(&host, Some(&ctr), "c1", &c);
        let addrs = host.netns().addr_cidrs("mvadm");
        assert!(
            addrs.contains(&"10.40.0.20/24".to_string()),
            "{parent}: {addrs:?}"
        );
        assert!(leases(&host, NET).is_empty());
        host.netns().ip(&["link", "del", "mvadm"]);
    }
}

/// An ADD killed between creating the shim and marking it as the
/// network's leaves an unmarked macvlan and the note that it was being
/// created: the next ADD takes it (and STATUS does not report the network
/// broken). Without the note (an administrator's macvlan of that name,
/// down and without addresses), it is refused.
#[test]
fn a_half_made_shim_is_taken_by_the_next_add() {
    let (host, _lan) = setup("mv-shim-half");
    host.netns().ip(&[
        "link", "add", "mvshim3", "link", "phy0", "type", "macvlan", "mode", "bridge",
    ]);
    let c = conf("1.1.0", json!({"hostShim": {"name": "mvshim3"}}));
    let ctr = host.container("c");
    cni(&host, &ours(), "STATUS", "", None, &c, &[]).assert_cni_error(50);
    cni(&host, &ours(), "ADD", "c1", Some(ctr.path_str()), &c, &[]).assert_cni_error(999);
    del(&host, Some(&ctr), "c1", &c);
    assert!(host.netns().link("mvshim3").is_some(), "not nuage's: kept");
    let state = host.state_dir().join("macvlan").join(NET);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(".creating"), "mvshim3").unwrap();
    cni(&host, &ours(), "STATUS", "", None, &c, &[]).assert_success();
    let res = add(&host, &ctr, "c1", &c);
    let shim = host.netns().link("mvshim3").unwrap();
    assert_eq!(
        shim["ifalias"],
        format!("nuage hostShim of network {NET}"),
        "{shim}"
    );
    assert!(host.netns().ping(&ip_of(&res, 0)));
    del(&host, Some(&ctr), "c1", &c);
    assert!(host.netns().link("mvshim3").is_none());
}

/// A host route to the container's address through another interface is
/// not taken over by the shim: the ADD fails naming it, and it stays.
#[test]
fn shim_does_not_take_over_a_host_route() {
    let (host, _lan) = setup("mv-shim-hostroute");
    host.netns()
        .ip(&["route", "add", "10.40.0.50/32", "via", "10.40.0.254"]);
    let fixed = json!({"type": "static", "addresses": [{"address": "10.40.0.50/24"}]});
    let c = conf(
        "1.0.0",
        json!({"hostShim": {"name": "mvshim2"}, "ipam": fixed}),
    );
    let ctr = host.container("c");
    let needle = "a route to 10.40.0.50/32 already exists via 10.40.0.254 dev phy0";
    add_err(&host, &ours(), "c1", &ctr, &c, 999, needle);
    assert_eq!(ctr.link_names(), ["lo"]);
    assert!(
        host.netns().link("mvshim2").is_none(),
        "the shim went with the failed ADD"
    );
    let kept = host.netns().routes(Family::V4);
    assert!(
        kept.iter()
            .any(|r| r["dst"] == "10.40.0.50" && r["gateway"] == "10.40.0.254"),
        "{kept:?}"
    );
    del(&host, Some(&ctr), "c1", &c);
}

/// `hostShim` removed from the config while containers use the shim: DEL
/// and GC still remove their routes and the shim (by the records).
#[test]
fn shim_is_cleaned_after_the_key_is_removed() {
    let (host, _lan) = setup("mv-shim-gone");
    let shim = conf("1.1.0", json!({"hostShim": {"name": "mvshim9"}}));
    let plain = conf("1.1.0", json!({}));
    let (a, b) = (host.container("a"), host.container("b"));
    let ra = add(&host, &a, "ca", &shim);
    let rb = add(&host, &b, "cb", &shim);
    let routed = |ip: &str| {
        host.netns()
            .routes(Family::V4)
            .iter()
            .any(|r| r["dst"] == ip && r["dev"] == "mvshim9")
    };
    assert!(routed(&ip_of(&ra, 0)) && routed(&ip_of(&rb, 0)));
    del(&host, Some(&a), "ca", &plain);
    assert!(!routed(&ip_of(&ra, 0)) && routed(&ip_of(&rb, 0)));
    let gc = with(&plain, "cni.dev/valid-attachments", json!([]));
    cni(&host, &ours(), "GC", "", None, &gc, &[]).assert_success();
    assert!(!routed(&ip_of(&rb, 0)));
    assert!(host.netns().link("mvshim9").is_none());
    assert!(leases(&host, NET).is_empty());
}

/// A DEL never deletes another attachment's shim route: not a late DEL
/// whose `prevResult` names an address now held by another container, nor
/// the DEL of a container whose address another one also routes.
#[test]
fn shim_routes_belong_to_their_attachment() {
    let (host, _lan) = setup("mv-shim-own");
    let fixed = json!({"type": "static", "addresses": [{"address": "10.40.0.50/24"}]});
    let shim = conf(
        "1.0.0",
        json!({"hostShim": {"name": "mvshim1"}, "ipam": fixed}),
    );
    let routed = |ip: &str| {
        host.netns()
            .routes(Family::V4)
            .iter()
            .any(|r| r["dst"] == ip && r["dev"] == "mvshim1")
    };
    let check = |cid: &str, ns: &Netns, prev: &Value| {
        cni(
            &host,
            &ours(),
            "CHECK",
            cid,
            Some(ns.path_str()),
            &with_prev(&shim, prev),
            &[],
        )
    };
    let (a, b) = (host.container("a"), host.container("b"));
    let ra = add(&host, &a, "ca", &shim);
    del(&host, Some(&a), "ca", &with_prev(&shim, &ra));
    assert!(host.netns().link("mvshim1").is_none());
    // The address goes to b; then a's DEL comes again, with its prevResult.
    let rb = add(&host, &b, "cb", &shim);
    assert_eq!(ip_of(&rb, 0), "10.40.0.50");
    del(&host, Some(&a), "ca", &with_prev(&shim, &ra));
    assert!(routed("10.40.0.50"), "a late DEL removed b's route");
    check("cb", &b, &rb).assert_success();
    assert!(host.netns().ping("10.40.0.50"));

    // Two attachments record the same address (a's lease released, b's
    // added, a's DEL not yet done): a's DEL leaves the route to b.
    let ra = add(&host, &a, "ca", &shim);
    del(&host, Some(&a), "ca", &with_prev(&shim, &ra));
    assert!(
        routed("10.40.0.50"),
        "a's DEL removed the route b also holds"
    );
    check("cb", &b, &rb).assert_success();
    del(&host, Some(&b), "cb", &with_prev(&shim, &rb));
    assert!(!routed("10.40.0.50"));
    assert!(
        host.netns().link("mvshim1").is_none(),
        "the shim goes with b"
    );
}

/// With an IPv6 gateway, ADD returns once duplicate address detection is
/// done (as the reference): the container can use its address at once.
#[test]
fn ipv6_addresses_are_usable_when_add_returns() {
    let (host, _lan) = setup("mv-dad");
    let c = conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local",
                        "ranges": [[{"subnet": "fd40::/64", "gateway": "fd40::1"}]],
                        "routes": [{"dst": "::/0"}]}}),
    );
    let ctr = host.container("c");
    let res = add(&host, &ctr, "c6", &c);
    let tentative = ctr.exec_ok("ip", &["-6", "addr", "show", "dev", "eth0", "tentative"]);
    assert!(tentative.trim().is_empty(), "{tentative}");
    let ip = ip_of(&res, 0);
    ctr.exec_ok("ip", &["-6", "route", "get", "fd40::99", "from", &ip]);
    del(&host, Some(&ctr), "c6", &c);
}

/// Duplicate address detection that fails on an IPAM address fails ADD
/// (rolled back); on the kernel's link-local address only, ADD succeeds
/// (the reference too: the interface works with its other addresses).
#[test]
fn a_duplicate_ipv6_address_fails_add_unless_only_the_link_local_one() {
    let (host, lan) = setup("mv-dup6");
    let c = |first: &str| {
        conf(
            "1.0.0",
            json!({"ipam": {"type": "host-local",
                            "ranges": [[{"subnet": "fd41::/64", "gateway": "fd41::1",
                                         "rangeStart": first}]]},
                   "runtimeConfig": {"mac": "02:11:22:33:44:55"}}),
        )
    };
    // The lan holds the link-local address of 02:11:22:33:44:55 (EUI-64)
    // and fd41::10.
    for a in ["fe80::11:22ff:fe33:4455/64", "fd41::10/64"] {
        lan.ip(&["-6", "addr", "add", a, "dev", "phy0-lan", "nodad"]);
    }
    let ctr = host.container("c");
    // The range's first address is taken: DAD fails on it.
    let taken = c("fd41::10");
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "c1",
        Some(ctr.path_str()),
        &taken,
        &[],
    );
    let msg = out.assert_cni_error(999)["msg"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("fd41::10/64 on eth0: duplicate address detected"),
        "{out}"
    );
    assert_eq!(ctr.link_names(), ["lo"], "rolled back");
    assert!(leases(&host, NET).is_empty());
    // A free address; only the link-local one is a duplicate.
    let free = c("fd41::11");
    let res = add(&host, &ctr, "c1", &free);
    let failed = ctr.exec_ok("ip", &["-6", "addr", "show", "dev", "eth0", "dadfailed"]);
    assert!(failed.contains("fe80::11:22ff:fe33:4455"), "{failed}");
    assert_eq!(ip_of(&res, 0), "fd41::11");
    del(&host, Some(&ctr), "c1", &free);
    // A link-local address IPAM gave is the container's: its duplicate
    // fails ADD as any other.
    lan.ip(&[
        "-6",
        "addr",
        "add",
        "fe80::5/64",
        "dev",
        "phy0-lan",
        "nodad",
    ]);
    let ll = conf(
        "1.0.0",
        json!({"ipam": {"type": "static",
                        "addresses": [{"address": "fe80::5/64", "gateway": "fe80::1"}]}}),
    );
    let out = cni(&host, &ours(), "ADD", "c2", Some(ctr.path_str()), &ll, &[]);
    let msg = out.assert_cni_error(999)["msg"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("fe80::5/64 on eth0: duplicate address detected"),
        "{out}"
    );
    assert_eq!(ctr.link_names(), ["lo"], "rolled back");
}

/// With `/proc/sys` read-only, ADD with a host shim works (the shim's
/// `accept_ra`/`accept_dad` are best effort, as the other host-side
/// links'), and the host reaches the container through it.
#[test]
fn a_read_only_proc_sys_does_not_fail_a_shim() {
    let (host, _lan) = setup("mv-roshim");
    let c = conf("1.0.0", json!({"hostShim": {"name": "mvshro0"}}));
    let ro = cni::with_read_only_proc_sys(&host, &ours());
    let ctr = host.container("c1");
    let res = add_ok(&host, &ro, "c1", &ctr, &c);
    assert!(host.netns().ping(&ip_of(&res, 0)), "{res}");
    del_ok(&host, &ro, "c1", Some(ctr.path_str()), &with_prev(&c, &res));
    assert!(
        host.netns().link("mvshro0").is_none(),
        "the shim goes with its last container"
    );
}

/// DEL with a CNI_IFNAME naming a link macvlan does not create (another
/// plugin's veth) leaves it and succeeds.
#[test]
fn del_leaves_a_link_it_did_not_create() {
    let (host, _lan) = setup("mv-notours");
    let ctr = host.container("c1");
    ctr.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth2",
    ]);
    let c = conf("1.0.0", json!({}));
    cni::del_leaves_foreign_link(&host, &ours(), &ctr, &c, "eth1");
}

/// With `/proc/sys` read-only, a dual-stack ADD works where the settings
/// are already as needed (IPv6 on: nothing to write) and the rest is
/// logged (`keep_addr_on_down`).
#[test]
fn a_read_only_proc_sys_does_not_fail_add() {
    let (host, lan) = setup("mv-rosys");
    lan.ip(&["addr", "add", "10.40.0.254/24", "dev", "phy0-lan"]);
    lan.ip(&[
        "-6",
        "addr",
        "add",
        "fd42::1/64",
        "dev",
        "phy0-lan",
        "nodad",
    ]);
    let c = conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.10"}],
                       [{"subnet": "fd42::/64", "rangeStart": "fd42::10"}]]}}),
    );
    let ro = cni::with_read_only_proc_sys(&host, &ours());
    let ctr = host.container("c1");
    let res = add_ok(&host, &ro, "c1", &ctr, &c);
    assert!(ctr.ping("10.40.0.254") && ctr.ping("fd42::1"), "{res}");
    del_ok(&host, &ro, "c1", Some(ctr.path_str()), &with_prev(&c, &res));
}

#[test]
fn status_and_gc() {
    let (host, _lan) = setup("mv-gc");
    let c = conf("1.1.0", json!({}));
    let out = cni(&host, &ours(), "STATUS", "", None, &c, &[]);
    assert_eq!(out.assert_success().stdout, "");
    let (a, b) = (host.container("a"), host.container("b"));
    add(&host, &a, "ca", &c);
    add(&host, &b, "cb", &c);
    assert_eq!(leases(&host, NET).len(), 2);
    let gc = with(
        &c,
        "cni.dev/valid-attachments",
        json!([{"containerID": "ca", "ifname": "eth0"}]),
    );
    cni(&host, &ours(), "GC", "", None, &gc, &[]).assert_success();
    assert_eq!(leases(&host, NET).len(), 1);
    let bad = conf("1.1.0", json!({"ipam": {"type": "no-such-ipam"}}));
    cni(&host, &ours(), "STATUS", "", None, &bad, &[]).assert_cni_error(50);
    // A master ADD cannot find makes the network not ready, by name...
    let gone = conf("1.1.0", json!({"master": "phy9"}));
    let out = cni(&host, &ours(), "STATUS", "", None, &gone, &[]);
    let msg = out.assert_cni_error(50)["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("\"phy9\""), "{out}");
    // ...or as the default route's interface, once there is no default route.
    let default = conf("1.1.0", json!({"master": ""}));
    cni(&host, &ours(), "STATUS", "", None, &default, &[]).assert_success();
    host.netns().ip(&["route", "del", "default"]);
    cni(&host, &ours(), "STATUS", "", None, &default, &[]).assert_cni_error(50);
    // A config ADD refuses, a shim name taken by a link not nuage's.
    host.netns()
        .ip(&["link", "add", "taken0", "type", "veth", "peer", "taken1"]);
    for extra in [
        json!({"mode": "bogus"}),
        json!({"hostShim": 5}),
        json!({"hostShim": {"name": "taken0"}}),
    ] {
        let bad = conf("1.1.0", extra.clone());
        let out = cni(&host, &ours(), "STATUS", "", None, &bad, &[]);
        out.assert_cni_error(50);
    }
    // A master in the container is ADD's to check.
    let inside = conf("1.1.0", json!({"master": "phy9", "linkInContainer": true}));
    cni(&host, &ours(), "STATUS", "", None, &inside, &[]).assert_success();
}
