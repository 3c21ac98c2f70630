//! What a bridge network does for traffic, observed from the containers and
//! the host: containers of one bridge reach each other and the gateway;
//! `ipMasq` lets them reach "the outside" (a namespace with no route back to
//! the container subnet), and without it they do not; `hairpinMode`,
//! `portIsolation`, `macspoofchk`, `promiscMode` and `mtu` have their kernel
//! effect; dual stack with `isDefaultGateway` gives both default routes.
//!
//! Each test builds its own host namespace (see `netns-tests`); every
//! negative connectivity check is paired with a positive control, so a
//! broken setup cannot make it pass.

mod common;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

fn setup(tag: &str) -> Host {
    require_root();
    Host::new(tag)
}

#[test]
fn containers_on_one_bridge_reach_each_other_and_the_gateway() {
    let host = setup("br-ping");
    let c = net(
        &host,
        "1.0.0",
        "pingnet",
        "br-ping",
        Some("10.10.0.0/24"),
        json!({"isGateway": true}),
    );
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let r1 = add(&host, &c1, "c1", &c);
    let r2 = add(&host, &c2, "c2", &c);
    let (ip1, ip2) = (ip_of(&r1, 0), ip_of(&r2, 0));
    assert_ne!(ip1, ip2);
    assert_eq!(r1["ips"][0]["gateway"], "10.10.0.1");

    assert!(reaches(&c1, &ip2), "c1 -> c2 ({ip2})");
    assert!(reaches(&c2, &ip1), "c2 -> c1 ({ip1})");
    assert!(reaches(&c1, "10.10.0.1"), "c1 -> gateway");
    assert!(reaches(&c2, "10.10.0.1"), "c2 -> gateway");
    assert!(reaches(host.netns(), &ip1), "host -> c1");

    // Both ports are on the bridge, with the gateway on the bridge.
    let ports = ports_of(&host, "br-ping");
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(ports.contains(&host_veth(&r1)) && ports.contains(&host_veth(&r2)));
    assert!(host
        .netns()
        .addr_cidrs("br-ping")
        .contains(&"10.10.0.1/24".to_string()));

    // The bridge MAC is pinned (nuage sets it at creation): adding ports
    // does not change it, so both results and the kernel agree.
    let br = host_link(&host, "br-ping");
    let br_mac = br["address"].clone();
    assert_eq!(r1["interfaces"][0]["mac"], br_mac);
    assert_eq!(r2["interfaces"][0]["mac"], br_mac);
    // Multicast snooping is off on the bridges nuage creates (no querier
    // here, so forwarding is the same; the pings above went through).
    assert_eq!(br["linkinfo"]["info_data"]["mcast_snooping"], 0, "{br}");

    // After DEL, c1 is gone: c2 no longer reaches it, still the gateway.
    del(&host, Some(c1.path_str()), "c1", &c);
    assert!(reaches(&c2, "10.10.0.1"), "c2 -> gateway after c1's DEL");
    assert!(unreachable(&c2, &ip1), "c1 must be gone after its DEL");
    assert_eq!(ports_of(&host, "br-ping"), [host_veth(&r2)]);
}

#[test]
fn ipv4_only_containers_can_do_without_an_ipv6_link_local_address() {
    // `"ipv6LinkLocal": false`: no link-local address, so no DAD probe,
    // router solicitation or MLD report flooded to every port of the
    // bridge per new container. By default, as the reference, one.
    let host = setup("br-ll");
    let conf = |extra: Value| {
        net(
            &host,
            "1.0.0",
            "llnet",
            "br-ll",
            Some("10.11.0.0/24"),
            extra,
        )
    };
    let (c1, c2) = (host.container("l1"), host.container("l2"));
    let r1 = add(
        &host,
        &c1,
        "l1",
        &conf(json!({"isGateway": true, "ipv6LinkLocal": false})),
    );
    let r2 = add(&host, &c2, "l2", &conf(json!({"isGateway": true})));
    assert_eq!(c1.addr_cidrs("eth0"), [format!("{}/24", ip_of(&r1, 0))]);
    assert!(
        c2.addr_cidrs("eth0").iter().any(|a| a.starts_with("fe80:")),
        "{:?}",
        c2.addr_cidrs("eth0")
    );
    // IPv6 itself stays on: the container may still configure addresses.
    assert_eq!(
        c1.exec_ok("cat", &["/proc/sys/net/ipv6/conf/eth0/disable_ipv6"])
            .trim(),
        "0"
    );
    assert!(reaches(&c1, &ip_of(&r2, 0)) && reaches(&c2, &ip_of(&r1, 0)));
    // A link that cannot have IPv6 (MTU below 1280) has no link-local
    // address to suppress: the kernel's EAFNOSUPPORT is no failure.
    let c3 = host.container("l3");
    let small = net(
        &host,
        "1.0.0",
        "llnet1000",
        "br-ll1000",
        Some("10.12.0.0/24"),
        json!({"isGateway": true, "ipv6LinkLocal": false, "mtu": 1000}),
    );
    let r3 = add(&host, &c3, "l3", &small);
    assert!(reaches(&c3, "10.12.0.1"), "{r3}");
    del(&host, Some(c3.path_str()), "l3", &small);
}

/// Adds nft counters in `ns` (hook prerouting, before any routing
/// decision) of the ICMP echo requests from the host's uplink address and
/// from container addresses; read them with [`echo_requests_from`].
fn count_echo_requests(host: &Host, ns: &Netns) {
    let rules = r#"
table ip count {
    chain pre {
        type filter hook prerouting priority -150; policy accept;
        icmp type echo-request ip saddr 192.0.2.1 counter comment "from-host"
        icmp type echo-request ip saddr 10.0.0.0/8 counter comment "from-containers"
    }
}
"#;
    let file = host.write_file("count.nft", rules);
    ns.exec_ok("nft", &["-f", file.to_str().unwrap()]);
}

/// Packets counted by the rule with `comment` of [`count_echo_requests`].
fn echo_requests_from(ns: &Netns, comment: &str) -> u64 {
    let out = ns.exec_ok("nft", &["-j", "list", "table", "ip", "count"]);
    let v: Value = serde_json::from_str(&out).expect("nft -j JSON");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r["comment"] == comment)
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
        .sum()
}

#[test]
fn ip_masq_reaches_the_outside_and_without_it_the_reply_is_lost() {
    let host = setup("br-masq");
    // "The outside": a namespace on a veth from the host, 192.0.2.0/24,
    // with no route back to the container subnets.
    let outside = host.container("outside");
    host.veth_pair_into(host.netns(), "uplink", &outside, "eth0");
    host.netns()
        .ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink"]);
    outside.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    outside.set_lo_up();
    count_echo_requests(&host, &outside);
    assert!(
        outside
            .routes(Family::V4)
            .iter()
            .all(|r| r["dst"] != "default"),
        "the outside must have no default route"
    );

    let masq = net(
        &host,
        "1.0.0",
        "masqnet",
        "br-masq",
        Some("10.20.0.0/24"),
        json!({"isDefaultGateway": true, "ipMasq": true}),
    );
    let plain = net(
        &host,
        "1.0.0",
        "plainnet",
        "br-plain",
        Some("10.21.0.0/24"),
        json!({"isDefaultGateway": true}),
    );
    let (cm, cp) = (host.container("masq"), host.container("plain"));
    let rm = add(&host, &cm, "cm", &masq);
    let rp = add(&host, &cp, "cp", &plain);
    assert_eq!(host.sysctl(host.netns(), "net.ipv4.ip_forward"), "1");
    // Both containers have a working first hop.
    assert!(reaches(&cm, "10.20.0.1"));
    assert!(reaches(&cp, "10.21.0.1"));

    // With ipMasq: the reply comes back, and the outside saw the host's
    // address as the source (masqueraded), never the container's.
    assert!(
        reaches(&cm, "192.0.2.2"),
        "masqueraded container -> outside"
    );
    assert!(echo_requests_from(&outside, "from-host") >= 1);
    assert_eq!(echo_requests_from(&outside, "from-containers"), 0);
    let ip_m = ip_of(&rm, 0);
    assert_eq!(
        nft_elements_with(&host, &format!("\"{ip_m}\"")).len(),
        1,
        "one masq4 element for {ip_m}: {:?}",
        nft_elements(&host)
    );

    // Without ipMasq: the request gets out with the container's source
    // address, and the reply has no way back.
    assert!(unreachable(&cp, "192.0.2.2"), "plain container -> outside");
    assert!(
        echo_requests_from(&outside, "from-containers") >= 1,
        "the un-masqueraded request did reach the outside"
    );
    let ip_p = ip_of(&rp, 0);
    assert!(nft_elements_with(&host, &format!("\"{ip_p}\"")).is_empty());

    // After DEL of the masqueraded container, its element is gone.
    del(&host, Some(cm.path_str()), "cm", &masq);
    assert!(
        nft_elements_with(&host, &format!("\"{ip_m}\"")).is_empty(),
        "{:?}",
        nft_elements(&host)
    );
}

#[test]
fn hairpin_mode_sets_the_port_flag() {
    let host = setup("br-hairpin");
    let on = net(
        &host,
        "1.0.0",
        "hpnet",
        "br-hp",
        Some("10.30.0.0/24"),
        json!({"hairpinMode": true}),
    );
    let off = net(
        &host,
        "1.0.0",
        "nohpnet",
        "br-nohp",
        Some("10.31.0.0/24"),
        json!({}),
    );
    let (c1, c2) = (host.container("hp"), host.container("nohp"));
    let r1 = add(&host, &c1, "hp", &on);
    let r2 = add(&host, &c2, "nohp", &off);
    let (p1, p2) = (host_veth(&r1), host_veth(&r2));

    let d1 = port_data(&host, &p1);
    assert_eq!(d1["hairpin"], true, "{p1}: {d1}");
    assert_eq!(d1["isolated"], false, "{p1}: {d1}");
    assert_eq!(bridge_tool_port(&host, &p1)["hairpin"], true);
    assert_eq!(host_link(&host, &p1)["master"], "br-hp");

    let d2 = port_data(&host, &p2);
    assert_eq!(d2["hairpin"], false, "{p2}: {d2}");
    assert_eq!(bridge_tool_port(&host, &p2)["hairpin"], false);
}

#[test]
fn isolated_ports_cannot_reach_each_other_but_reach_the_gateway() {
    let host = setup("br-isolate");
    let iso = net(
        &host,
        "1.0.0",
        "isonet",
        "br-iso",
        Some("10.40.0.0/24"),
        json!({"isGateway": true, "portIsolation": true}),
    );
    // Another network on the same bridge and subnet, without isolation: an
    // isolated port still talks to non-isolated ones (positive control).
    let mut open = iso.clone();
    open["portIsolation"] = json!(false);
    let (c1, c2, c3) = (
        host.container("iso1"),
        host.container("iso2"),
        host.container("open"),
    );
    let r1 = add(&host, &c1, "iso1", &iso);
    let r2 = add(&host, &c2, "iso2", &iso);
    let r3 = add(&host, &c3, "open", &open);
    assert_eq!(port_data(&host, &host_veth(&r1))["isolated"], true);
    assert_eq!(port_data(&host, &host_veth(&r2))["isolated"], true);
    assert_eq!(port_data(&host, &host_veth(&r3))["isolated"], false);
    assert_eq!(bridge_tool_port(&host, &host_veth(&r1))["isolated"], true);

    let (ip1, ip2, ip3) = (ip_of(&r1, 0), ip_of(&r2, 0), ip_of(&r3, 0));
    assert!(reaches(&c1, "10.40.0.1"), "isolated c1 -> gateway");
    assert!(reaches(&c2, "10.40.0.1"), "isolated c2 -> gateway");
    assert!(reaches(&c1, &ip3), "isolated c1 -> non-isolated c3");
    assert!(reaches(&c3, &ip2), "non-isolated c3 -> isolated c2");
    assert!(
        unreachable(&c1, &ip2),
        "isolated c1 must not reach isolated c2"
    );
    assert!(
        unreachable(&c2, &ip1),
        "isolated c2 must not reach isolated c1"
    );
}

#[test]
fn macspoofchk_drops_frames_from_a_changed_mac() {
    let host = setup("br-spoof");
    let chk = net(
        &host,
        "1.0.0",
        "spoofnet",
        "br-spoof",
        Some("10.50.0.0/24"),
        json!({"isGateway": true, "macspoofchk": true}),
    );
    let nochk = net(
        &host,
        "1.0.0",
        "nospoofnet",
        "br-nospoof",
        Some("10.51.0.0/24"),
        json!({"isGateway": true}),
    );
    let (c1, c2, c3) = (
        host.container("spoof1"),
        host.container("spoof2"),
        host.container("nochk"),
    );
    let r1 = add(&host, &c1, "spoof1", &chk);
    let r2 = add(&host, &c2, "spoof2", &chk);
    add(&host, &c3, "nochk", &nochk);
    let p1 = host_veth(&r1);
    let mac1 = r1["interfaces"][2]["mac"].as_str().unwrap().to_string();

    // The port and its (port, MAC) pair are in our sets.
    let elems = nft_elements_with(&host, &p1);
    assert!(
        elems.iter().any(|e| e.starts_with("bridge spoof_ports"))
            && elems
                .iter()
                .any(|e| e.starts_with("bridge spoof_allowed") && e.contains(&mac1)),
        "{elems:?}"
    );
    assert!(reaches(&c1, "10.50.0.1"), "c1 with its own MAC");
    assert!(reaches(&c1, &ip_of(&r2, 0)), "c1 -> c2 with its own MAC");

    // Change the MACs; forget the old neighbour entries everywhere.
    for (ns, mac) in [(&c1, "02:de:ad:be:ef:01"), (&c3, "02:de:ad:be:ef:03")] {
        ns.ip(&["link", "set", "eth0", "address", mac]);
        ns.ip(&["neigh", "flush", "all"]);
    }
    host.netns().ip(&["neigh", "flush", "all"]);
    c2.ip(&["neigh", "flush", "all"]);

    // Controls: the other checked container, and a changed MAC on a
    // network without the check, still work.
    assert!(reaches(&c2, "10.50.0.1"), "c2 (unchanged MAC)");
    assert!(reaches(&c3, "10.51.0.1"), "c3 (changed MAC, no check)");
    // Frames from c1's new MAC are dropped.
    assert!(unreachable(&c1, "10.50.0.1"), "spoofed c1 -> gateway");
    assert!(unreachable(&c1, &ip_of(&r2, 0)), "spoofed c1 -> c2");

    // Back to the registered MAC: it works again.
    c1.ip(&["link", "set", "eth0", "address", &mac1]);
    assert!(reaches(&c1, "10.50.0.1"), "c1 with its MAC restored");

    del(&host, Some(c1.path_str()), "spoof1", &chk);
    assert!(
        nft_elements_with(&host, &p1).is_empty(),
        "{:?}",
        nft_elements(&host)
    );
}

#[test]
fn promisc_mode_makes_the_bridge_promiscuous() {
    let host = setup("br-promisc");
    let on = net(
        &host,
        "1.0.0",
        "pnet",
        "br-prom",
        Some("10.60.0.0/24"),
        json!({"promiscMode": true}),
    );
    let off = net(
        &host,
        "1.0.0",
        "npnet",
        "br-noprom",
        Some("10.61.0.0/24"),
        json!({}),
    );
    let (c1, c2) = (host.container("p"), host.container("np"));
    add(&host, &c1, "p", &on);
    add(&host, &c2, "np", &off);
    let b = host_link(&host, "br-prom");
    assert!(has_flag(&b, "PROMISC"), "{b}");
    assert!(b["promiscuity"].as_u64().unwrap_or(0) >= 1, "{b}");
    let b = host_link(&host, "br-noprom");
    assert!(!has_flag(&b, "PROMISC"), "{b}");
    assert_eq!(b["promiscuity"], 0, "{b}");
}

#[test]
fn mtu_is_applied_to_both_veth_ends_and_the_bridge() {
    let host = setup("br-mtu");
    let c = net(
        &host,
        "1.0.0",
        "mtunet",
        "br-mtu",
        Some("10.70.0.0/24"),
        json!({"mtu": 1400, "isGateway": true}),
    );
    let ctr = host.container("mtu");
    let r = add(&host, &ctr, "mtu", &c);
    assert_eq!(ctr.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(host_link(&host, &host_veth(&r))["mtu"], 1400);
    assert_eq!(host_link(&host, "br-mtu")["mtu"], 1400);
    // Traffic: 1400-byte packets with DF pass; 1401 bytes do not leave.
    assert!(reaches(&ctr, "10.70.0.1"));
    let ping_df = |size: &str| {
        ctr.exec(
            "ping",
            &["-c", "1", "-W", "5", "-M", "do", "-s", size, "10.70.0.1"],
        )
    };
    let full = ping_df("1372");
    assert!(full.success(), "{full}");
    let too_big = ping_df("1373");
    assert!(!too_big.success(), "{too_big}");
}

#[test]
fn dual_stack_default_gateway_gives_both_default_routes() {
    let host = setup("br-dual");
    let c = net(
        &host,
        "1.0.0",
        "dualnet",
        "br-dual",
        None,
        json!({
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "dataDir": data_dir(&host),
                     "ranges": ranges(&["10.80.0.0/24", "fd00:80::/64"])},
        }),
    );
    let (c1, c2) = (host.container("d1"), host.container("d2"));
    let r1 = add(&host, &c1, "d1", &c);
    let r2 = add(&host, &c2, "d2", &c);
    assert_json_subset(
        &r1,
        &json!({
            "ips": [
                {"interface": 2, "address": "10.80.0.2/24", "gateway": "10.80.0.1"},
                {"interface": 2, "address": "fd00:80::2/64", "gateway": "fd00:80::1"},
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.80.0.1"},
                {"dst": "::/0", "gw": "fd00:80::1"},
            ],
        }),
    );
    for (ctr, fam, gw) in [
        (&c1, Family::V4, "10.80.0.1"),
        (&c1, Family::V6, "fd00:80::1"),
        (&c2, Family::V4, "10.80.0.1"),
        (&c2, Family::V6, "fd00:80::1"),
    ] {
        let routes = ctr.routes(fam);
        assert!(
            routes
                .iter()
                .any(|r| r["dst"] == "default" && r["gateway"] == gw && r["dev"] == "eth0"),
            "{}: no default via {gw}: {routes:?}",
            ctr.name()
        );
    }
    let br = host.netns().addr_cidrs("br-dual");
    assert!(
        br.contains(&"10.80.0.1/24".into()) && br.contains(&"fd00:80::1/64".into()),
        "{br:?}"
    );
    assert_eq!(
        host.sysctl(host.netns(), "net/ipv6/conf/all/forwarding"),
        "1"
    );
    // Both families carry traffic, between containers and to the gateways.
    assert!(reaches(&c1, &ip_of(&r2, 0)));
    assert!(reaches(&c1, &ip_of(&r2, 1)), "c1 -> c2 over IPv6");
    assert!(reaches(&c2, "fd00:80::1"), "c2 -> IPv6 gateway");
    assert!(reaches(&c2, "10.80.0.1"));
    // With IPv6 addresses, the container keeps its link-local address.
    assert!(c1.addr_cidrs("eth0").iter().any(|a| a.starts_with("fe80:")));
    // ... while the bridge ports themselves have no IPv6 (nuage turns it
    // off on the host ends: they are never addressed), but accept_ra=0.
    for r in [&r1, &r2] {
        let veth = host_veth(r);
        let sys = |k: &str| host.sysctl(host.netns(), &format!("net/ipv6/conf/{veth}/{k}"));
        assert_eq!(
            (sys("disable_ipv6"), sys("accept_ra")),
            ("1".into(), "0".into())
        );
        assert_eq!(host.netns().addr_cidrs(&veth), Vec::<String>::new());
    }
}
