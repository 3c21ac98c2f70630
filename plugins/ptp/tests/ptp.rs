//! Behaviour of our `ptp`: every verb and version, the routes on both
//! sides, connectivity (host, other containers, the outside with `ipMasq`),
//! bad input, rollback of failing ADDs, DEL robustness, GC and STATUS.

mod common;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const NET: &str = "ptpnet";

fn setup(tag: &str) -> Host {
    require_root();
    Host::new(tag)
}

fn conf(version: &str, extra: Value) -> String {
    merge(
        json!({
            "cniVersion": version,
            "name": NET,
            "type": "ptp",
            "ipam": {"type": "host-local", "subnet": "10.60.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
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
fn del(host: &Host, ns: Option<&str>, cid: &str, conf: &str) {
    del_ok(host, &ours(), cid, ns, conf)
}

/// Routes of `ns` as "dst [via gw] [src s] [scope]" strings, sorted.
fn route_lines(ns: &Netns, fam: Family) -> Vec<String> {
    let mut v: Vec<String> = ns
        .routes(fam)
        .iter()
        .filter(|r| !r["dst"].as_str().unwrap_or("").starts_with("fe80"))
        .map(|r| {
            let mut s = r["dst"].as_str().unwrap_or("?").to_string();
            for (k, label) in [
                ("gateway", "via"),
                ("prefsrc", "src"),
                ("scope", "scope"),
                ("dev", "dev"),
            ] {
                if let Some(x) = r[k].as_str() {
                    s += &format!(" {label} {x}");
                }
            }
            s
        })
        .collect();
    v.sort();
    v
}

/// DEL with a CNI_IFNAME naming a link ptp does not create (`lo`) leaves
/// it and succeeds.
#[test]
fn del_leaves_a_link_it_did_not_create() {
    let host = setup("ptp-notours");
    let ctr = host.container("c1");
    ctr.set_lo_up();
    let c = conf("1.0.0", json!({}));
    cni::del_leaves_foreign_link(&host, &ours(), &ctr, &c, "lo");
}

/// With `/proc/sys` read-only (systemd's `ProtectKernelTunables`), a
/// dual-stack ADD works: the host end's `accept_ra`/`accept_dad` and the
/// container's settings that cannot be written are logged, not fatal.
#[test]
fn a_read_only_proc_sys_does_not_fail_add() {
    let host = setup("ptp-rosys");
    host.netns().set_sysctl("net.ipv4.ip_forward", "1");
    host.netns().set_sysctl("net.ipv6.conf.all.forwarding", "1");
    let c = conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.60.0.0/24"}], [{"subnet": "fd60::/64"}]]}}),
    );
    let ro = cni::with_read_only_proc_sys(&host, &ours());
    let ctr = host.container("c1");
    let out = cni(&host, &ro, "ADD", "c1", Some(ctr.path_str()), &c, &[]);
    out.assert_success();
    assert!(out.stderr.contains("left as is"), "{out}");
    let res = out.expect_json().clone();
    for gw in ["10.60.0.1", "fd60::1"] {
        assert!(ctr.ping(gw), "c1 -> {gw}");
    }
    del_ok(&host, &ro, "c1", Some(ctr.path_str()), &with_prev(&c, &res));
}

/// With `/run/nuage` (the nftables lock file) read-only and empty, ADD and
/// DEL with `ipMasq` go ahead unlocked: the masquerade element comes and
/// goes.
#[test]
fn a_read_only_run_does_not_fail_masquerade() {
    let host = setup("ptp-rorun");
    host.netns().set_sysctl("net.ipv4.ip_forward", "1");
    let c = conf("1.0.0", json!({"ipMasq": true}));
    let ro = cni::with_read_only_run_nuage(&host, &ours(), true);
    let ctr = host.container("c1");
    let out = cni(&host, &ro, "ADD", "c1", Some(ctr.path_str()), &c, &[]);
    out.assert_success();
    assert!(out.stderr.contains("nft.lock"), "{out}");
    let res = out.expect_json().clone();
    let elements = || {
        host.netns()
            .exec_ok("nft", &["list", "map", "inet", "nuage", "masq4"])
    };
    assert!(elements().contains("/c1/eth0"), "{}", elements());
    del_ok(&host, &ro, "c1", Some(ctr.path_str()), &with_prev(&c, &res));
    assert!(!elements().contains("/c1/eth0"), "{}", elements());
}

#[test]
fn every_version_add_check_del() {
    let host = setup("ptp-versions");
    for (i, v) in VERSIONS.iter().enumerate() {
        let ctr = host.container("c");
        let cid = format!("c{i}");
        let c = conf(v, json!({"mtu": 1400}));
        let res = add(&host, &ctr, &cid, &c);
        let ip = if v.starts_with("0.1") || v.starts_with("0.2") {
            res["ip4"]["ip"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        } else {
            assert_json_subset(
                &res,
                &json!({"interfaces": [{}, {"name": "eth0", "sandbox": ctr.path_str()}], "ips": [{"interface": 1, "gateway": "10.60.0.1"}]}),
            );
            assert!(res["interfaces"][0].get("sandbox").is_none());
            ip_of(&res, 0)
        };
        let veth = host
            .netns()
            .link_names()
            .into_iter()
            .find(|n| n.starts_with("veth"))
            .expect("host veth");
        assert_eq!(
            route_lines(&ctr, Family::V4),
            [
                format!("10.60.0.0/24 via 10.60.0.1 src {ip} dev eth0"),
                format!("10.60.0.1 src {ip} scope link dev eth0"),
                "default via 10.60.0.1 dev eth0".to_string(),
            ],
        );
        let host_addrs: Vec<String> = host
            .netns()
            .addr_cidrs(&veth)
            .into_iter()
            .filter(|a| !a.starts_with("fe80"))
            .collect();
        assert_eq!(host_addrs, ["10.60.0.1/32"]);
        assert!(
            route_lines(host.netns(), Family::V4).contains(&format!("{ip} scope host dev {veth}"))
        );
        assert_eq!(
            (
                ctr.link("eth0").unwrap()["mtu"].as_u64(),
                host.netns().link(&veth).unwrap()["mtu"].as_u64()
            ),
            (Some(1400), Some(1400))
        );
        assert_eq!(host.sysctl(host.netns(), "net.ipv4.ip_forward"), "1");
        assert_eq!(
            host.sysctl(host.netns(), &format!("net/ipv6/conf/{veth}/accept_ra")),
            "0"
        );
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
        del(&host, Some(ctr.path_str()), &cid, &c);
        del(&host, Some(ctr.path_str()), &cid, &c);
        assert_eq!(ctr.link_names(), ["lo"]);
        assert_eq!(host.netns().link_names(), ["lo"]);
    }
    assert!(leases(&host, NET).is_empty());
}

#[test]
fn check_notices_what_is_missing() {
    let host = setup("ptp-check");
    let ctr = host.container("c");
    let c = conf("1.0.0", json!({"ipMasq": true}));
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
    assert_eq!(err_msg(&check(&c)), "ptp: Required prevResult missing");
    let veth = res["interfaces"][0]["name"].as_str().unwrap();
    host.netns().ip(&["route", "del", &ip_of(&res, 0)]);
    assert!(err_msg(&check(&with_prev(&c, &res))).contains("host route"));
    host.netns().ip(&[
        "route",
        "add",
        &ip_of(&res, 0),
        "dev",
        veth,
        "scope",
        "host",
    ]);
    check(&with_prev(&c, &res)).assert_success();
    host.exec("nft", &["flush", "map", "inet", "nuage", "masq4"])
        .assert_success();
    assert!(err_msg(&check(&with_prev(&c, &res))).contains("not in map"));
    del(&host, Some(ctr.path_str()), "c1", &c);
}

#[test]
fn containers_reach_the_host_each_other_and_with_masquerade_the_outside() {
    let host = setup("ptp-ping");
    // The outside: 192.0.2.0/24 behind the host's uplink; it has no route
    // back to the containers, so only masqueraded traffic gets answers.
    let wan = host.container("wan");
    nic(&host, &wan, "up0", Some("192.0.2.1/24"));
    wan.ip(&["addr", "add", "192.0.2.2/24", "dev", "up0-lan"]);
    wan.set_lo_up();
    let dual = json!({"type": "host-local", "ranges": [[{"subnet": "10.60.0.0/24"}], [{"subnet": "fd60::/64"}]], "routes": [{"dst": "0.0.0.0/0"}]});
    let plain = conf("1.0.0", json!({"ipam": dual}));
    let masq = conf("1.0.0", json!({"ipam": dual, "ipMasq": true}));
    let (a, b) = (host.container("a"), host.container("b"));
    let ra = add(&host, &a, "ca", &plain);
    let rb = add(&host, &b, "cb", &plain);
    assert!(a.ping("10.60.0.1"), "container -> host (its gateway)");
    assert!(host.netns().ping(&ip_of(&ra, 0)), "host -> container");
    assert!(
        a.ping(&ip_of(&rb, 0)),
        "container -> container, through the host"
    );
    assert!(a.ping(&ip_of(&rb, 1)), "the same over IPv6");
    assert!(
        unreachable(&a, "192.0.2.2"),
        "no masquerade, no way back from the outside"
    );
    del(&host, Some(a.path_str()), "ca", &plain);
    let ra = add(&host, &a, "ca", &masq);
    assert!(a.ping("192.0.2.2"), "masqueraded to the outside");
    check_ok(&host, &ours(), "ca", &a, &with_prev(&masq, &ra));
    del(&host, Some(a.path_str()), "ca", &masq);
    assert!(!host
        .exec("nft", &["list", "map", "inet", "nuage", "masq4"])
        .stdout
        .contains(&ip_of(&ra, 0)));
    del(&host, Some(b.path_str()), "cb", &plain);
}

/// IPAM routes to the container's own subnet (via the gateway, as ptp
/// routes it anyway): the kernel's connected route is the one ptp deletes,
/// not IPAM's, and the containers still reach each other. (The reference
/// fails such an ADD with EEXIST.)
#[test]
fn an_ipam_route_to_the_own_subnet_is_kept() {
    let host = setup("ptp-subnet-route");
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.60.0.0/24"}], [{"subnet": "fd60::/64"}]],
                      "routes": [{"dst": "10.60.0.0/24"}, {"dst": "fd60::/64"}]});
    let c = conf("1.0.0", json!({"ipam": ipam}));
    let (a, b) = (host.container("a"), host.container("b"));
    let ra = add(&host, &a, "ca", &c);
    let rb = add(&host, &b, "cb", &c);
    for fam in [Family::V4, Family::V6] {
        let lines = route_lines(&a, fam);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("10.60.0.0/24 via 10.60.0.1")
                    || l.starts_with("fd60::/64 via fd60::1")),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(
                |l| (l.starts_with("10.60.0.0/24") || l.starts_with("fd60::/64"))
                    && !l.contains(" via ")
            ),
            "the connected route stays deleted: {lines:?}"
        );
    }
    assert!(a.ping(&ip_of(&rb, 0)) && a.ping(&ip_of(&rb, 1)));
    check_ok(&host, &ours(), "ca", &a, &with_prev(&c, &ra));
    del(&host, Some(a.path_str()), "ca", &c);
    del(&host, Some(b.path_str()), "cb", &c);
}

#[test]
fn bad_input() {
    let host = setup("ptp-bad");
    let ctr = host.container("c");
    let cases = [
        (json!({"ipam": null}), "ptp requires an IPAM configuration"),
        (
            json!({"ipMasqBackend": "pf"}),
            r#"unknown ipmasq backend "pf""#,
        ),
        (json!({"mtu": 1u64 << 33}), "invalid MTU 8589934592"),
        (json!({"mtu": 70000}), "invalid MTU 70000"),
        (
            json!({"ipam": {"type": "static", "addresses": [{"address": "10.60.0.9/24"}]}}),
            "without a gateway",
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
    assert_eq!(host.netns().link_names(), ["lo"]);
    assert!(leases(&host, NET).is_empty());
    // A negative MTU is no MTU, as the reference reads it; null is absent.
    let other = host.container("d");
    let odd = conf("1.0.0", json!({"mtu": -5, "ipMasq": null}));
    add(&host, &other, "d1", &odd);
    assert_eq!(other.link("eth0").unwrap()["mtu"], 1500);
    del(&host, Some(other.path_str()), "d1", &odd);
}

#[test]
fn failing_adds_are_rolled_back() {
    let host = setup("ptp-rollback");
    let ctr = host.container("c");
    let cases = [
        // IPAM fails: nothing was made yet.
        (
            "IPAM",
            json!({"ipam": {"type": "host-local", "subnet": "10.60.0.0/24", "rangeStart": "10.61.0.5"}}),
        ),
        // No gateway: the lease goes.
        (
            "gateway",
            json!({"ipam": {"type": "static", "addresses": [{"address": "10.60.0.9/24"}]}}),
        ),
        // IPAM routes the subnet via a gateway ptp cannot reach.
        (
            "subnet route",
            json!({"ipam": {"type": "host-local", "subnet": "10.60.0.0/24", "routes": [{"dst": "10.60.0.0/24", "gw": "10.60.0.254"}]}}),
        ),
        // The same in IPv6, where the kernel merges the two IPAM routes
        // into one with two next hops.
        (
            "subnet route, IPv6",
            json!({"ipam": {"type": "host-local", "subnet": "fd60::/64", "routes": [{"dst": "fd60::/64", "gw": "fd60::fe"}, {"dst": "fd60::/64", "gw": "fd60::fd"}]}}),
        ),
        // Two gateways, and IPAM routes the subnet via the first: ptp's
        // route via the second (the last address's) would replace it.
        (
            "subnet route, two gateways",
            json!({"ipam": {"type": "static", "addresses": [
                {"address": "10.60.0.5/24", "gateway": "10.60.0.1"},
                {"address": "10.60.0.6/24", "gateway": "10.60.0.2"}],
                "routes": [{"dst": "10.60.0.0/24", "gw": "10.60.0.1"}]}}),
        ),
        (
            "subnet route, two gateways, IPv6",
            json!({"ipam": {"type": "static", "addresses": [
                {"address": "fd60::5/64", "gateway": "fd60::1"},
                {"address": "fd60::6/64", "gateway": "fd60::2"}],
                "routes": [{"dst": "fd60::/64", "gw": "fd60::1"}]}}),
        ),
        // A container route fails after the veth exists: lease and veth go.
        (
            "route",
            json!({"ipam": {"type": "host-local", "subnet": "10.60.0.0/24", "routes": [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]}}),
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
        assert_eq!(ctr.link_names(), ["lo"], "{what}: {out}");
        assert_eq!(host.netns().link_names(), ["lo"], "{what}");
        assert!(leases(&host, NET).is_empty(), "{what}");
    }
    // A host route to the address through another interface (a host
    // route, another network's container) is not taken over: the ADD fails
    // naming it, and it stays (a dead container's route went with its veth).
    host.netns().ip(&[
        "link", "add", "other0", "type", "veth", "peer", "name", "other1",
    ]);
    host.netns().ip(&["link", "set", "other0", "up"]);
    host.netns()
        .ip(&["route", "add", "10.60.0.9/32", "dev", "other0"]);
    let fixed = conf(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [{"address": "10.60.0.9/24", "gateway": "10.60.0.1"}]}}),
    );
    add_err(
        &host,
        &ours(),
        "c1",
        &ctr,
        &fixed,
        999,
        "a route to 10.60.0.9/32 already exists dev other0",
    );
    assert_eq!(ctr.link_names(), ["lo"]);
    let kept = route_lines(host.netns(), Family::V4);
    assert!(
        kept.iter()
            .any(|l| l.starts_with("10.60.0.9 ") && l.contains("dev other0")),
        "{kept:?}"
    );
    // A ptp host route (scope host, through a veth) is a deleted
    // container's, whose veth outlives its DEL while the kernel tears its
    // namespace down: taken over.
    host.netns()
        .ip(&["route", "del", "10.60.0.9/32", "dev", "other0"]);
    let stale = |args: &[&str]| {
        let mut a = vec!["route", "add"];
        a.extend(args);
        host.netns().ip(&a);
    };
    // Not one through a veth without the network's gateway address (a
    // workload's route), in IPv6 either.
    let dual = conf(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [
            {"address": "10.60.0.9/24", "gateway": "10.60.0.1"},
            {"address": "fd60::9/64", "gateway": "fd60::1"}]}}),
    );
    stale(&["fd60::9/128", "dev", "other0"]);
    add_err(
        &host,
        &ours(),
        "c1",
        &ctr,
        &dual,
        999,
        "a route to fd60::9/128 already exists dev other0",
    );
    host.netns()
        .ip(&["-6", "route", "del", "fd60::9/128", "dev", "other0"]);
    // (A dead container's host end holds the network's gateway address.)
    host.netns()
        .ip(&["addr", "add", "10.60.0.1/32", "dev", "other0"]);
    host.netns()
        .ip(&["-6", "addr", "add", "fd60::1/128", "dev", "other0", "nodad"]);
    stale(&["10.60.0.9/32", "dev", "other0", "scope", "host"]);
    add(&host, &ctr, "c1", &fixed);
    assert!(host.netns().ping("10.60.0.9"));
    del(&host, Some(ctr.path_str()), "c1", &fixed);
    // The same in IPv6, where the kernel reports every route with scope
    // universe: a route without gateway through a veth is taken over.
    stale(&["10.60.0.9/32", "dev", "other0", "scope", "host"]);
    stale(&["fd60::9/128", "dev", "other0"]);
    add(&host, &ctr, "c1", &dual);
    del(&host, Some(ctr.path_str()), "c1", &dual);
}

#[test]
fn del_is_idempotent_and_needs_no_netns() {
    let host = setup("ptp-del");
    let c = conf("1.0.0", json!({"ipMasq": true}));
    let ctr = host.container("c");
    let res = add(&host, &ctr, "c1", &c);
    // A key that does not decode (not one the reference v1.1.1 reads) does
    // not stop a DEL.
    let ctr2 = host.container("c2");
    let res2 = add(&host, &ctr2, "c2", &c);
    del(
        &host,
        Some(ctr2.path_str()),
        "c2",
        &conf("1.0.0", json!({"ipMasq": true, "ipMasqBackend": 5})),
    );
    assert!(!leases(&host, NET).contains(&ip_of(&res2, 0)));
    assert_eq!(ctr2.link_names(), ["lo"]);
    let path = ctr.path_str().to_string();
    drop(ctr);
    // The veth died with the namespace; masquerade and lease are still ours
    // to clean, without prevResult.
    for _ in 0..2 {
        del(&host, Some(&path), "c1", &c);
    }
    del(&host, None, "c1", &c);
    del(
        &host,
        None,
        "c1",
        &conf("1.0.0", json!({"ipMasqBackend": "pf", "mtu": -1})),
    );
    assert!(leases(&host, NET).is_empty());
    let map = host
        .exec("nft", &["list", "map", "inet", "nuage", "masq4"])
        .stdout;
    assert!(!map.contains(&ip_of(&res, 0)), "{map}");
    // The host end goes with the namespace, asynchronously (cleanup_net).
    wait_until("the host veth goes with the namespace", || {
        host.netns().link_names() == ["lo"]
    });
}

/// A DEL repeated after the address went to another container leaves that
/// container's masquerade (elements are deleted by address only when their
/// comment names the DEL's attachment).
#[test]
fn a_late_del_leaves_the_masquerade_of_the_addresses_new_holder() {
    let host = setup("ptp-late");
    let c = conf(
        "1.0.0",
        json!({"ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.60.0.0/24",
                                        "rangeStart": "10.60.0.5", "rangeEnd": "10.60.0.5"}}),
    );
    let a = host.container("a");
    let ra = add(&host, &a, "ca", &c);
    let path = a.path_str().to_string();
    drop(a);
    let a_prev = with_prev(&c, &ra);
    del(&host, Some(&path), "ca", &a_prev);
    let b = host.container("b");
    let rb = add(&host, &b, "cb", &c);
    assert_eq!(ip_of(&rb, 0), ip_of(&ra, 0));
    del(&host, Some(&path), "ca", &a_prev);
    let b_prev = with_prev(&c, &rb);
    check_ok(&host, &ours(), "cb", &b, &b_prev);
    del(&host, Some(b.path_str()), "cb", &b_prev);
    let map = host
        .exec("nft", &["list", "map", "inet", "nuage", "masq4"])
        .stdout;
    assert!(!map.contains(&ip_of(&rb, 0)), "{map}");
}

#[test]
fn gc_and_status() {
    let host = setup("ptp-gc");
    let c = conf("1.1.0", json!({"ipMasq": true}));
    assert_eq!(
        cni(&host, &ours(), "STATUS", "", None, &c, &[])
            .assert_success()
            .stdout,
        ""
    );
    cni(
        &host,
        &ours(),
        "STATUS",
        "",
        None,
        &conf("1.1.0", json!({"ipam": null})),
        &[],
    )
    .assert_cni_error(50);
    // A config ADD refuses.
    let bad = conf("1.1.0", json!({"ipMasq": true, "ipMasqBackend": "pf"}));
    cni(&host, &ours(), "STATUS", "", None, &bad, &[]).assert_cni_error(50);
    let (a, b) = (host.container("a"), host.container("b"));
    let ra = add(&host, &a, "ca", &c);
    let rb = add(&host, &b, "cb", &c);
    let gc = with(
        &c,
        "cni.dev/valid-attachments",
        json!([{"containerID": "ca", "ifname": "eth0"}]),
    );
    cni(&host, &ours(), "GC", "", None, &gc, &[]).assert_success();
    assert_eq!(leases(&host, NET), [ip_of(&ra, 0)]);
    let map = host
        .exec("nft", &["list", "map", "inet", "nuage", "masq4"])
        .stdout;
    assert!(
        map.contains(&ip_of(&ra, 0)) && !map.contains(&ip_of(&rb, 0)),
        "{map}"
    );
    del(&host, Some(a.path_str()), "ca", &c);
    del(&host, Some(b.path_str()), "cb", &c);
}
