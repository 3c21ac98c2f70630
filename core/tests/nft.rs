//! Root integration tests of `nuage_core::nft` (masquerade and MAC spoof
//! check), against the real `nft` and kernel.
//!
//! They never touch the machine's own network namespace: every namespace is
//! fresh, unshared by a scratch thread ([`fresh_ns`]), and the API, `nft`,
//! `ping` all run inside one through [`NetNs::run`] (a child process
//! inherits the namespace of the thread that spawns it). Without root, or
//! without the `nft` binary, they print a message and pass.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

use ipnetwork::IpNetwork;
use nix::sched::{unshare, CloneFlags};
use nuage_core::netlink::{BridgeSpec, Netlink, RouteSpec, VethSpec};
use nuage_core::netns::NetNs;
use nuage_core::nft::{self, masq, spoofchk, Attachment};
use nuage_core::sysctl;
use serde_json::Value;

macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: this test needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)");
            return;
        }
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipping: this test needs the nft binary");
            return;
        }
    };
}

/// A fresh network namespace: a scratch thread unshares one and opens it;
/// the returned handle's fd keeps it alive after the thread exits.
fn fresh_ns() -> NetNs {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        NetNs::current().expect("open the new netns")
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` in `ns`.
fn within<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    ns.run(f).expect("enter test netns")
}

/// `nft <args>` in `ns`: (success, stdout, stderr).
fn nft_cmd(ns: &NetNs, args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    within(ns, move || {
        let out = Command::new("nft").args(&args).output().expect("run nft");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

fn nft_ok(ns: &NetNs, args: &[&str]) -> String {
    let (ok, out, err) = nft_cmd(ns, args);
    assert!(ok, "nft {args:?} failed: {err}");
    out
}

/// `nft -j list table <family> <name>` as its objects; `None` if absent.
fn table_json(ns: &NetNs, family: &str, name: &str) -> Option<Vec<Value>> {
    let (ok, out, err) = nft_cmd(ns, &["-j", "list", "table", family, name]);
    if !ok {
        assert!(err.contains("No such file or directory"), "{err}");
        return None;
    }
    let doc: Value = serde_json::from_str(&out).expect("nft JSON");
    Some(doc["nftables"].as_array().expect("nftables array").clone())
}

fn objects<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter_map(|o| o.get(kind)).collect()
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects(objs, kind)
        .into_iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objs:#?}"))
}

/// Rules of `chain`, as their `expr` arrays and comments.
fn rules_of(objs: &[Value], chain: &str) -> Vec<(Value, Option<String>)> {
    objects(objs, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .map(|r| {
            (
                r["expr"].clone(),
                r.get("comment").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

/// Elements of map `masq4`/`masq6`: key -> (jump target, comment).
fn map_elems(objs: &[Value], map: &str) -> BTreeMap<String, (String, Option<String>)> {
    let m = named(objs, "map", map);
    let mut out = BTreeMap::new();
    for e in m
        .get("elem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (key, val) = (&e[0], &e[1]);
        let (key, comment) = match key.get("elem") {
            Some(inner) => (
                inner["val"].as_str().unwrap().to_string(),
                inner
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            None => (key.as_str().unwrap().to_string(), None),
        };
        let target = val["jump"]["target"].as_str().unwrap().to_string();
        assert!(
            out.insert(key.clone(), (target, comment)).is_none(),
            "duplicate {key}"
        );
    }
    out
}

/// Elements of a set: rendered key (`a . b` for concatenations) -> comment.
fn set_elems(objs: &[Value], set: &str) -> BTreeMap<String, Option<String>> {
    let s = named(objs, "set", set);
    let mut out = BTreeMap::new();
    for e in s
        .get("elem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (key, comment) = match e.get("elem") {
            Some(inner) => (
                &inner["val"],
                inner
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            None => (e, None),
        };
        let key = match key.get("concat") {
            Some(parts) => parts
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" . "),
            None => key.as_str().unwrap().to_string(),
        };
        out.insert(key, comment);
    }
    out
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn att(id: &str, ifname: &str) -> Attachment {
    Attachment::new(id, ifname)
}

fn comment(network: &str, id: &str, ifname: &str) -> Option<String> {
    Some(format!("{network}/{id}/{ifname}"))
}

const NET_A: &str = "net-a.1";
const NET_B: &str = "net_b.2";

fn subnets_a() -> Vec<IpNetwork> {
    vec![net("10.88.0.0/24"), net("fd00:a::/64")]
}

fn subnets_b() -> Vec<IpNetwork> {
    vec![net("10.89.0.0/24"), net("fd00:b::/64")]
}

fn add_a(ns: &NetNs, id: &str, v4: &str, v6: &str) {
    let (id, ips) = (id.to_string(), vec![ip(v4), ip(v6)]);
    within(ns, || {
        masq::add(NET_A, &subnets_a(), &ips, &att(&id, "eth0"))
    })
    .unwrap_or_else(|e| panic!("masq add: {e}"));
}

fn add_b(ns: &NetNs, id: &str, v4: &str, v6: &str) {
    let (id, ips) = (id.to_string(), vec![ip(v4), ip(v6)]);
    within(ns, || {
        masq::add(NET_B, &subnets_b(), &ips, &att(&id, "eth0"))
    })
    .unwrap_or_else(|e| panic!("masq add: {e}"));
}

fn pfx(proto: &str, field: &str, addr: &str, len: u32) -> Value {
    serde_json::json!({"match": {"op": "==",
        "left": {"payload": {"protocol": proto, "field": field}},
        "right": {"prefix": {"addr": addr, "len": len}}}})
}

#[test]
fn masq_two_networks_have_the_documented_structure() {
    require_root!();
    let ns = fresh_ns();
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    add_b(&ns, "c2", "10.89.0.2", "fd00:b::2");

    let objs = table_json(&ns, "inet", "nuage").expect("table inet nuage");
    let (chain_a, chain_b) = (
        masq::chain_name(NET_A, &subnets_a()),
        masq::chain_name(NET_B, &subnets_b()),
    );
    assert_ne!(chain_a, chain_b);

    // Maps: one element per container IP, jumping to its network's chain.
    let m4 = map_elems(&objs, "masq4");
    assert_eq!(
        m4,
        BTreeMap::from([
            (
                "10.88.0.2".into(),
                (chain_a.clone(), comment(NET_A, "c1", "eth0"))
            ),
            (
                "10.89.0.2".into(),
                (chain_b.clone(), comment(NET_B, "c2", "eth0"))
            ),
        ])
    );
    let m6 = map_elems(&objs, "masq6");
    assert_eq!(
        m6,
        BTreeMap::from([
            (
                "fd00:a::2".into(),
                (chain_a.clone(), comment(NET_A, "c1", "eth0"))
            ),
            (
                "fd00:b::2".into(),
                (chain_b.clone(), comment(NET_B, "c2", "eth0"))
            ),
        ])
    );
    assert_eq!(named(&objs, "map", "masq4")["type"], "ipv4_addr");
    assert_eq!(named(&objs, "map", "masq4")["map"], "verdict");
    assert_eq!(named(&objs, "map", "masq6")["type"], "ipv6_addr");

    // The base chain: nat/postrouting/srcnat, two vmap lookups, nothing else.
    let base = named(&objs, "chain", "postrouting");
    assert_eq!(base["type"], "nat");
    assert_eq!(base["hook"], "postrouting");
    assert_eq!(base["prio"], 100);
    assert_eq!(base["policy"], "accept");
    let vmap = |proto: &str, map: &str| {
        serde_json::json!([{"vmap": {"key": {"payload": {"protocol": proto, "field": "saddr"}},
            "data": format!("@{map}")}}])
    };
    assert_eq!(
        rules_of(&objs, "postrouting"),
        vec![(vmap("ip", "masq4"), None), (vmap("ip6", "masq6"), None)]
    );

    // One regular chain per network; exactly three chains in all.
    let mut names: Vec<&str> = objects(&objs, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut want = vec!["postrouting", chain_a.as_str(), chain_b.as_str()];
    want.sort();
    assert_eq!(names, want);
    assert!(named(&objs, "chain", &chain_a).get("hook").is_none());

    let ret = serde_json::json!({"return": null});
    for (chain, network, v4, v6) in [
        (&chain_a, NET_A, "10.88.0.0", "fd00:a::"),
        (&chain_b, NET_B, "10.89.0.0", "fd00:b::"),
    ] {
        assert_eq!(
            rules_of(&objs, chain),
            vec![
                (
                    serde_json::json!([pfx("ip", "daddr", "224.0.0.0", 4), ret]),
                    None
                ),
                (
                    serde_json::json!([pfx("ip6", "daddr", "ff00::", 8), ret]),
                    None
                ),
                (serde_json::json!([pfx("ip", "daddr", v4, 24), ret]), None),
                (serde_json::json!([pfx("ip6", "daddr", v6, 64), ret]), None),
                (
                    serde_json::json!([{"masquerade": null}]),
                    Some(format!("network: {network}"))
                ),
            ],
            "chain {chain}"
        );
    }

    // check() and list() agree.
    within(&ns, || {
        masq::check(
            NET_A,
            &subnets_a(),
            &[ip("10.88.0.2"), ip("fd00:a::2")],
            &att("c1", "eth0"),
        )
    })
    .unwrap();
    within(&ns, || {
        masq::check(
            NET_B,
            &subnets_b(),
            &[ip("10.89.0.2"), ip("fd00:b::2")],
            &att("c2", "eth0"),
        )
    })
    .unwrap();
    let mut listed = within(&ns, || masq::list(Some(NET_A))).unwrap();
    listed.sort_by_key(|m| m.ip);
    assert_eq!(
        listed,
        vec![
            masq::MasqEntry {
                ip: ip("10.88.0.2"),
                chain: Some(chain_a.clone()),
                comment: comment(NET_A, "c1", "eth0"),
            },
            masq::MasqEntry {
                ip: ip("fd00:a::2"),
                chain: Some(chain_a.clone()),
                comment: comment(NET_A, "c1", "eth0"),
            },
        ]
    );
    assert_eq!(within(&ns, || masq::list(None)).unwrap().len(), 4);
}

#[test]
fn masq_add_is_idempotent_and_replaces_stale_elements() {
    require_root!();
    let ns = fresh_ns();
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    let first = table_json(&ns, "inet", "nuage").unwrap();
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    let second = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&first, "masq4"), map_elems(&second, "masq4"));
    assert_eq!(map_elems(&second, "masq4").len(), 1);
    assert_eq!(map_elems(&second, "masq6").len(), 1);
    assert_eq!(
        objects(&first, "rule").len(),
        objects(&second, "rule").len()
    );
    assert_eq!(objects(&second, "rule").len(), 2 + 5);

    // The same IP for another attachment: the element is rewritten with the
    // new comment (a plain `add element` would keep the old one).
    add_a(&ns, "c9", "10.88.0.2", "fd00:a::2");
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    let chain_a = masq::chain_name(NET_A, &subnets_a());
    assert_eq!(
        map_elems(&objs, "masq4")["10.88.0.2"],
        (chain_a.clone(), comment(NET_A, "c9", "eth0"))
    );
    let ips = [ip("10.88.0.2"), ip("fd00:a::2")];
    within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c9", "eth0"))
    })
    .unwrap();
    let e = within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg
            .contains("belongs to attachment \"net-a.1/c9/eth0\", not \"net-a.1/c1/eth0\""),
        "{e}"
    );

    // The same IP now on another network: the old value differs, plain
    // `add` is EEXIST; add() replaces the element.
    let id = "c3".to_string();
    within(&ns, || {
        masq::add(NET_B, &subnets_b(), &ips, &att(&id, "eth0"))
    })
    .unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    let chain_b = masq::chain_name(NET_B, &subnets_b());
    assert_eq!(
        map_elems(&objs, "masq4"),
        BTreeMap::from([(
            "10.88.0.2".into(),
            (chain_b.clone(), comment(NET_B, "c3", "eth0"))
        )])
    );
    assert_eq!(
        map_elems(&objs, "masq6")["fd00:a::2"],
        (chain_b.clone(), comment(NET_B, "c3", "eth0"))
    );
    let e = within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c3", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg
            .contains(&format!("jumps to {chain_b}, not {chain_a}")),
        "{e}"
    );

    // Empty IP list: a no-op that does not even create the table.
    let other = fresh_ns();
    within(&other, || {
        masq::add(NET_A, &subnets_a(), &[], &att("c1", "eth0"))
    })
    .unwrap();
    assert!(table_json(&other, "inet", "nuage").is_none());
}

#[test]
fn masq_del_is_idempotent_and_check_fails_after_it() {
    require_root!();
    let ns = fresh_ns();
    let ips = [ip("10.88.0.2"), ip("fd00:a::2")];

    // No table at all: success, and nothing is created.
    within(&ns, || masq::del(NET_A, &ips)).unwrap();
    within(&ns, || masq::del(NET_A, &ips[..1])).unwrap();
    assert!(table_json(&ns, "inet", "nuage").is_none());
    let e = within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(e.msg.contains("table inet nuage does not exist"), "{e}");

    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    add_a(&ns, "c2", "10.88.0.3", "fd00:a::3");
    within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap();
    within(&ns, || masq::del(NET_A, &ips)).unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(
        map_elems(&objs, "masq4").keys().collect::<Vec<_>>(),
        ["10.88.0.3"]
    );
    assert_eq!(
        map_elems(&objs, "masq6").keys().collect::<Vec<_>>(),
        ["fd00:a::3"]
    );

    let e = within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg.contains("10.88.0.2 is not in map inet nuage masq4"),
        "{e}"
    );
    assert!(
        e.msg.contains("fd00:a::2 is not in map inet nuage masq6"),
        "{e}"
    );

    // Again: every element is missing now.
    within(&ns, || masq::del(NET_A, &ips)).unwrap();
    // Partly missing: the present one still goes.
    within(&ns, || {
        masq::del(NET_A, &[ip("10.88.0.2"), ip("10.88.0.3")])
    })
    .unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert!(map_elems(&objs, "masq4").is_empty());
    assert_eq!(map_elems(&objs, "masq6").len(), 1);

    // Table gone (someone flushed the ruleset): still success.
    nft_ok(&ns, &["delete", "table", "inet", "nuage"]);
    within(&ns, || masq::del(NET_A, &ips)).unwrap();
}

/// `nft::del` (a DEL whose addresses are known) takes only the attachment's
/// own masquerade elements: after its address went to another container, a
/// late or repeated DEL leaves that container's element. Long container IDs
/// (hashed comments) are compared the same way.
#[test]
fn a_late_del_keeps_the_element_of_the_addresses_new_holder() {
    require_root!();
    let ns = fresh_ns();
    let long = "f".repeat(200);
    for (old, new) in [("c1", "c2"), (long.as_str(), "c3")] {
        let ips = [ip("10.88.0.2"), ip("fd00:a::2")];
        add_a(&ns, old, "10.88.0.2", "fd00:a::2");
        within(&ns, || nft::del(NET_A, &att(old, "eth0"), &ips, None)).unwrap();
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert!(map_elems(&objs, "masq4").is_empty() && map_elems(&objs, "masq6").is_empty());
        // The address goes to `new`; `old`'s DEL comes again.
        add_a(&ns, new, "10.88.0.2", "fd00:a::2");
        within(&ns, || nft::del(NET_A, &att(old, "eth0"), &ips, None)).unwrap();
        within(&ns, || {
            masq::check(NET_A, &subnets_a(), &ips, &att(new, "eth0"))
        })
        .unwrap_or_else(|e| panic!("{new}'s elements are gone: {e}"));
        // Its own DEL takes them; missing elements, then a missing table,
        // are no error.
        within(&ns, || nft::del(NET_A, &att(new, "eth0"), &ips, None)).unwrap();
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert!(map_elems(&objs, "masq4").is_empty() && map_elems(&objs, "masq6").is_empty());
        within(&ns, || nft::del(NET_A, &att(new, "eth0"), &ips, None)).unwrap();
    }
    nft_ok(&ns, &["delete", "table", "inet", "nuage"]);
    within(&ns, || {
        nft::del(NET_A, &att("c1", "eth0"), &[ip("10.88.0.2")], None)
    })
    .unwrap();
}

/// `masq::del_for` takes every element ADD made for the attachment, also
/// of an IPAM-given link-local address (169.254.0.0/16), and with no
/// address known finds them by comment.
#[test]
fn del_for_takes_every_element_of_the_attachment() {
    require_root!();
    let ns = fresh_ns();
    let ips = vec![ip("10.88.0.7"), ip("169.254.1.2")];
    let subnets = vec![net("10.88.0.0/24"), net("169.254.0.0/16")];
    for known in [true, false] {
        let add = ips.clone();
        within(&ns, || masq::add(NET_A, &subnets, &add, &att("c7", "eth0"))).unwrap();
        let del: Vec<IpAddr> = if known { ips.clone() } else { Vec::new() };
        within(&ns, || masq::del_for(NET_A, &att("c7", "eth0"), &del)).unwrap();
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert!(map_elems(&objs, "masq4").is_empty(), "known: {known}");
    }
}

#[test]
fn masq_gc_removes_only_stale_attachments_of_its_network() {
    require_root!();
    let ns = fresh_ns();
    within(&ns, || masq::gc(NET_A, &[])).unwrap(); // no table
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    add_a(&ns, "c2", "10.88.0.3", "fd00:a::3");
    add_a(&ns, "c3", "10.88.0.4", "fd00:a::4");
    add_b(&ns, "c2", "10.89.0.3", "fd00:b::3"); // same container, other network
                                                // Another subnet set of network A: a second chain of A.
    let other_subnets = [net("10.90.0.0/24")];
    within(&ns, || {
        masq::add(
            NET_A,
            &other_subnets,
            &[ip("10.90.0.2")],
            &att("c4", "eth0"),
        )
    })
    .unwrap();

    within(&ns, || {
        masq::gc(NET_A, &[att("c1", "eth0"), att("c3", "eth1")])
    })
    .unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    let keys = |m: &str| map_elems(&objs, m).into_keys().collect::<Vec<_>>();
    assert_eq!(keys("masq4"), ["10.88.0.2", "10.89.0.3"]);
    assert_eq!(keys("masq6"), ["fd00:a::2", "fd00:b::3"]);
    // The chain of A's other subnets lost its last element: deleted.
    let chains: Vec<&str> = objects(&objs, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        !chains.contains(&masq::chain_name(NET_A, &other_subnets).as_str()),
        "{chains:?}"
    );
    assert!(chains.contains(&masq::chain_name(NET_A, &subnets_a()).as_str()));

    // Nothing valid left on A: its elements and chain go, B stays whole.
    within(&ns, || masq::gc(NET_A, &[])).unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(
        map_elems(&objs, "masq4").into_keys().collect::<Vec<_>>(),
        ["10.89.0.3"]
    );
    let mut chains: Vec<&str> = objects(&objs, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    chains.sort();
    let chain_b = masq::chain_name(NET_B, &subnets_b());
    let mut want = vec!["postrouting", chain_b.as_str()];
    want.sort();
    assert_eq!(chains, want);
    within(&ns, || {
        masq::check(
            NET_B,
            &subnets_b(),
            &[ip("10.89.0.3"), ip("fd00:b::3")],
            &att("c2", "eth0"),
        )
    })
    .unwrap();
    // Idempotent.
    within(&ns, || masq::gc(NET_A, &[])).unwrap();
    within(&ns, || masq::gc(NET_B, &[att("c2", "eth0")])).unwrap();
    assert_eq!(within(&ns, || masq::list(None)).unwrap().len(), 2);
}

#[test]
fn host_tables_are_left_untouched() {
    require_root!();
    let ns = fresh_ns();
    let host_rules = "\
table inet filter {
    set blocked {
        type ipv4_addr
        elements = { 198.51.100.7 }
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.88.0.0/16 masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip saddr @blocked drop
    }
}
table bridge filter {
    chain prerouting {
        type filter hook prerouting priority -300; policy accept;
        ether saddr 02:00:00:00:00:99 drop
    }
}
table ip nat {
    chain nuage {
    }
}
";
    let input = host_rules.to_string();
    within(&ns, move || {
        use std::io::Write;
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    });
    let before = nft_ok(&ns, &["-j", "list", "ruleset"]);

    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    within(&ns, || {
        spoofchk::add(NET_A, "veth1", [2, 0, 0, 0, 0, 1], &att("c1", "eth0"))
    })
    .unwrap();
    within(&ns, || masq::gc(NET_A, &[])).unwrap();
    within(&ns, || spoofchk::gc(NET_A, &[])).unwrap();
    within(&ns, || masq::del(NET_A, &[ip("10.88.0.2")])).unwrap();
    within(&ns, || spoofchk::del("veth1", None)).unwrap();

    // Remove our tables: what is left must be exactly the host's ruleset.
    nft_ok(&ns, &["delete", "table", "inet", "nuage"]);
    nft_ok(&ns, &["delete", "table", "bridge", "nuage"]);
    let after = nft_ok(&ns, &["-j", "list", "ruleset"]);
    assert_eq!(before, after);
}

#[test]
fn nft_errors_name_the_operation_and_carry_nft_stderr() {
    require_root!();
    let ns = fresh_ns();
    // A foreign `masq4` of another type in our table: adding ours clashes.
    nft_ok(&ns, &["add", "table", "inet", "nuage"]);
    nft_ok(
        &ns,
        &[
            "add",
            "set",
            "inet",
            "nuage",
            "masq4",
            "{ type ipv4_addr; }",
        ],
    );
    let ips = [ip("10.88.0.2")];
    let e = within(&ns, || {
        masq::add(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg
            .starts_with("nft: add masquerade for 10.88.0.2 (net-a.1/c1/eth0)"),
        "{e}"
    );
    assert!(e.msg.contains("maps inet nuage masq4/masq6"), "{e}");
    assert!(e.msg.contains("set is not a map"), "{e}");
    assert!(e.details.is_some(), "{e:?}");
    assert_eq!(e.code, nuage_core::Code::Internal);
}

#[test]
fn masq_rules_stay_constant_with_many_containers() {
    require_root!();
    let ns = fresh_ns();
    let subnets = [net("10.88.0.0/16")];
    let ids: Vec<String> = (0..200).map(|i| format!("ctr{i:03}")).collect();
    let ips: Vec<IpAddr> = (0..200u32)
        .map(|i| ip(&format!("10.88.{}.{}", i / 250, 2 + i % 250)))
        .collect();
    let add_all = || {
        for (id, ip) in ids.iter().zip(&ips) {
            within(&ns, || masq::add(NET_A, &subnets, &[*ip], &att(id, "eth0"))).unwrap();
        }
    };
    add_all();
    let once = table_json(&ns, "inet", "nuage").unwrap();
    add_all();
    let twice = table_json(&ns, "inet", "nuage").unwrap();
    // 2 base rules + 2 multicast returns + 1 subnet return + masquerade.
    assert_eq!(objects(&once, "rule").len(), 6);
    assert_eq!(objects(&twice, "rule").len(), 6);
    assert_eq!(objects(&twice, "chain").len(), 2);
    let m = map_elems(&twice, "masq4");
    assert_eq!(m.len(), 200);
    assert_eq!(m, map_elems(&once, "masq4"));
    assert_eq!(m["10.88.0.199"].1, comment(NET_A, "ctr197", "eth0"));

    // GC keeping half, then DEL of the rest.
    let valid: Vec<Attachment> = ids.iter().step_by(2).map(|id| att(id, "eth0")).collect();
    within(&ns, || masq::gc(NET_A, &valid)).unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&objs, "masq4").len(), 100);
    let evens: Vec<IpAddr> = ips.iter().step_by(2).copied().collect();
    within(&ns, || masq::del(NET_A, &evens)).unwrap();
    assert!(within(&ns, || masq::list(None)).unwrap().is_empty());
}

/// Brings `name` up in `nl`'s namespace, with `addr` if given.
fn up(nl: &mut Netlink, name: &str, addr: Option<&str>) -> u32 {
    let l = nl
        .link_by_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no link {name}"));
    if let Some(a) = addr {
        nl.add_addr(l.index, net(a)).unwrap();
    }
    nl.set_up(l.index).unwrap();
    l.index
}

/// Whether `ping` from `ns` to `dst` gets at least one reply.
fn pings(ns: &NetNs, dst: &str) -> bool {
    let dst = dst.to_string();
    within(ns, move || {
        Command::new("ping")
            .args(["-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", &dst])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run ping")
            .success()
    })
}

#[test]
fn masquerade_works_end_to_end() {
    require_root!();
    // host: hc0 10.88.0.1/24 <-> container: eth0 10.88.0.2/24 (default via .1)
    // host: ho0 192.0.2.1/24 <-> outside: eth0 192.0.2.2/24 (no route back
    // to 10.88.0.0/24: replies arrive only if the source was masqueraded).
    let (host, cont, outside) = (fresh_ns(), fresh_ns(), fresh_ns());
    let mut nh = Netlink::in_netns(&host).unwrap();
    let mut nc = Netlink::in_netns(&cont).unwrap();
    let mut no = Netlink::in_netns(&outside).unwrap();
    for (name, peer) in [("hc0", &cont), ("ho0", &outside)] {
        nh.create_veth(&VethSpec {
            name,
            peer_name: "eth0",
            peer_netns: Some(peer),
            ..Default::default()
        })
        .unwrap();
    }
    up(&mut nh, "lo", None);
    up(&mut nh, "hc0", Some("10.88.0.1/24"));
    up(&mut nh, "ho0", Some("192.0.2.1/24"));
    up(&mut nc, "lo", None);
    up(&mut nc, "eth0", Some("10.88.0.2/24"));
    nc.add_route(&RouteSpec {
        gw: Some(ip("10.88.0.1")),
        ..RouteSpec::new(net("0.0.0.0/0"))
    })
    .unwrap();
    up(&mut no, "lo", None);
    up(&mut no, "eth0", Some("192.0.2.2/24"));
    sysctl::write_in(&host, "net.ipv4.ip_forward", "1").unwrap();

    assert!(pings(&cont, "10.88.0.1"), "container -> host must work");
    assert!(
        !pings(&cont, "192.0.2.2"),
        "without masquerade, no reply can come back"
    );

    let ips = [ip("10.88.0.2")];
    let subnets = [net("10.88.0.0/24")];
    within(&host, || {
        masq::add(NET_A, &subnets, &ips, &att("c1", "eth0"))
    })
    .unwrap();
    assert!(
        pings(&cont, "192.0.2.2"),
        "masqueraded ping must get replies"
    );
    within(&host, || {
        masq::check(NET_A, &subnets, &ips, &att("c1", "eth0"))
    })
    .unwrap();

    within(&host, || masq::del(NET_A, &ips)).unwrap();
    assert!(!pings(&cont, "192.0.2.2"), "after del, no masquerade again");
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

#[test]
fn spoofchk_structure_check_del_gc() {
    require_root!();
    let ns = fresh_ns();
    within(&ns, || spoofchk::del("veth1", Some(MAC_A))).unwrap(); // no table
    within(&ns, || spoofchk::del("veth1", None)).unwrap();
    within(&ns, || spoofchk::gc(NET_A, &[])).unwrap();

    for _ in 0..2 {
        within(&ns, || {
            spoofchk::add(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
        })
        .unwrap();
        within(&ns, || {
            spoofchk::add(NET_A, "veth2", MAC_B, &att("c2", "eth0"))
        })
        .unwrap();
    }
    within(&ns, || {
        spoofchk::add(NET_B, "veth3", MAC_A, &att("c3", "eth0"))
    })
    .unwrap();

    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(
        set_elems(&objs, "spoof_ports"),
        BTreeMap::from([
            ("veth1".into(), comment(NET_A, "c1", "eth0")),
            ("veth2".into(), comment(NET_A, "c2", "eth0")),
            ("veth3".into(), comment(NET_B, "c3", "eth0")),
        ])
    );
    assert_eq!(
        set_elems(&objs, "spoof_allowed"),
        BTreeMap::from([
            (
                "veth1 . 02:00:00:00:00:0a".into(),
                comment(NET_A, "c1", "eth0")
            ),
            (
                "veth2 . 02:00:00:00:00:0b".into(),
                comment(NET_A, "c2", "eth0")
            ),
            (
                "veth3 . 02:00:00:00:00:0a".into(),
                comment(NET_B, "c3", "eth0")
            ),
        ])
    );
    let base = named(&objs, "chain", "prerouting");
    assert_eq!(
        (&base["type"], &base["hook"], &base["prio"]),
        (&"filter".into(), &"prerouting".into(), &(-300).into())
    );
    assert_eq!(
        rules_of(&objs, "prerouting"),
        vec![(
            serde_json::json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "@spoof_ports"}},
                {"jump": {"target": "spoofchk"}}
            ]),
            None
        )]
    );
    assert_eq!(
        rules_of(&objs, "spoofchk"),
        vec![
            (
                serde_json::json!([
                    {"match": {"op": "==", "left": {"concat": [{"meta": {"key": "iifname"}},
                        {"payload": {"protocol": "ether", "field": "saddr"}}]}, "right": "@spoof_allowed"}},
                    {"return": null}
                ]),
                None
            ),
            (serde_json::json!([{"drop": null}]), None),
        ]
    );
    assert_eq!(objects(&objs, "chain").len(), 2);

    within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap();
    let e = within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_B, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg
            .contains("veth1 . 02:00:00:00:00:0b is not in set bridge nuage spoof_allowed"),
        "{e}"
    );
    let e = within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c2", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg.contains("belongs to attachment \"net-a.1/c1/eth0\""),
        "{e}"
    );

    // del with and without the MAC; twice.
    within(&ns, || spoofchk::del("veth1", Some(MAC_A))).unwrap();
    within(&ns, || spoofchk::del("veth1", Some(MAC_A))).unwrap();
    within(&ns, || spoofchk::del("veth2", None)).unwrap();
    within(&ns, || spoofchk::del("veth2", None)).unwrap();
    let e = within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg
            .contains("port veth1 is not in set bridge nuage spoof_ports"),
        "{e}"
    );
    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(set_elems(&objs, "spoof_ports").len(), 1);
    assert_eq!(set_elems(&objs, "spoof_allowed").len(), 1);

    // gc: only A's stale ones.
    within(&ns, || {
        spoofchk::add(NET_A, "veth4", MAC_A, &att("c4", "eth0"))
    })
    .unwrap();
    within(&ns, || {
        spoofchk::add(NET_A, "veth5", MAC_B, &att("c5", "eth0"))
    })
    .unwrap();
    within(&ns, || spoofchk::gc(NET_A, &[att("c5", "eth0")])).unwrap();
    let mut listed: Vec<(String, Option<[u8; 6]>)> = within(&ns, spoofchk::list)
        .unwrap()
        .into_iter()
        .map(|e| (e.host_ifname, e.mac))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("veth3".into(), None),
            ("veth3".into(), Some(MAC_A)),
            ("veth5".into(), None),
            ("veth5".into(), Some(MAC_B)),
        ]
    );
    within(&ns, || spoofchk::gc(NET_A, &[att("c5", "eth0")])).unwrap();
    assert_eq!(within(&ns, spoofchk::list).unwrap().len(), 4);
}

#[test]
fn spoofchk_drops_frames_with_another_mac() {
    require_root!();
    // host: bridge br0 with ports p1, p2; container a (eth0 MAC_A,
    // 10.99.0.10) behind p1, container b (eth0 MAC_B, 10.99.0.11) behind p2.
    let (host, a, b) = (fresh_ns(), fresh_ns(), fresh_ns());
    let mut nh = Netlink::in_netns(&host).unwrap();
    nh.create_bridge(&BridgeSpec {
        name: "br0",
        ..Default::default()
    })
    .unwrap();
    let br = up(&mut nh, "br0", None);
    for (port, ns, mac) in [("p1", &a, MAC_A), ("p2", &b, MAC_B)] {
        nh.create_veth(&VethSpec {
            name: port,
            peer_name: "eth0",
            peer_mac: Some(mac),
            peer_netns: Some(ns),
            ..Default::default()
        })
        .unwrap();
        let idx = up(&mut nh, port, None);
        nh.set_controller(idx, Some(br)).unwrap();
    }
    let mut na = Netlink::in_netns(&a).unwrap();
    let mut nb = Netlink::in_netns(&b).unwrap();
    let eth_a = up(&mut na, "eth0", Some("10.99.0.10/24"));
    up(&mut nb, "eth0", Some("10.99.0.11/24"));

    assert!(
        pings(&a, "10.99.0.11"),
        "bridge must forward before the check"
    );
    within(&host, || {
        spoofchk::add(NET_A, "p1", MAC_A, &att("a", "eth0"))
    })
    .unwrap();
    within(&host, || {
        spoofchk::add(NET_A, "p2", MAC_B, &att("b", "eth0"))
    })
    .unwrap();
    assert!(pings(&a, "10.99.0.11"), "registered MACs must pass");

    // The container takes another MAC: its frames are dropped at p1.
    na.set_down(eth_a).unwrap();
    na.set_mac(eth_a, [0x02, 0, 0, 0, 0, 0x0c]).unwrap();
    na.set_up(eth_a).unwrap();
    assert!(!pings(&a, "10.99.0.11"), "a spoofed MAC must be dropped");

    // Without the check on p1, the same frames pass again.
    within(&host, || spoofchk::del("p1", None)).unwrap();
    assert!(pings(&a, "10.99.0.11"), "unchecked port must forward");
    // And registering the new MAC lets it pass with the check back on.
    within(&host, || {
        spoofchk::add(NET_A, "p1", [0x02, 0, 0, 0, 0, 0x0c], &att("a", "eth0"))
    })
    .unwrap();
    assert!(
        pings(&a, "10.99.0.11"),
        "the newly registered MAC must pass"
    );
}

#[test]
fn long_container_ids_get_hashed_comments_that_gc_understands() {
    require_root!();
    let ns = fresh_ns();
    let (long1, long2) = ("a".repeat(200), "b".repeat(200));
    let (a1, a2) = (att(&long1, "eth0"), att(&long2, "eth0"));
    let ips1 = [ip("10.88.0.2")];
    within(&ns, || masq::add(NET_A, &subnets_a(), &ips1, &a1)).unwrap();
    within(&ns, || {
        masq::add(NET_A, &subnets_a(), &[ip("10.88.0.3")], &a2)
    })
    .unwrap();
    within(&ns, || spoofchk::add(NET_A, "veth1", MAC_A, &a1)).unwrap();
    within(&ns, || spoofchk::add(NET_A, "veth2", MAC_B, &a2)).unwrap();

    let c1 = nft::attachment_comment(NET_A, &a1);
    assert!(
        c1.len() <= nft::COMMENT_MAX && c1.starts_with("net-a.1/#"),
        "{c1}"
    );
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(
        map_elems(&objs, "masq4")["10.88.0.2"].1.as_deref(),
        Some(c1.as_str())
    );
    within(&ns, || masq::check(NET_A, &subnets_a(), &ips1, &a1)).unwrap();
    within(&ns, || spoofchk::check(NET_A, "veth1", MAC_A, &a1)).unwrap();

    within(&ns, || masq::gc(NET_A, std::slice::from_ref(&a1))).unwrap();
    within(&ns, || spoofchk::gc(NET_A, &[a1])).unwrap();
    let left: Vec<IpAddr> = within(&ns, || masq::list(None))
        .unwrap()
        .into_iter()
        .map(|m| m.ip)
        .collect();
    assert_eq!(left, ips1);
    let ports: Vec<String> = within(&ns, spoofchk::list)
        .unwrap()
        .into_iter()
        .map(|e| e.host_ifname)
        .collect();
    assert_eq!(ports, ["veth1", "veth1"]);
}

#[test]
fn concurrent_adds_and_dels_all_succeed() {
    require_root!();
    let ns = fresh_ns();
    let ids: Vec<String> = (0..32).map(|i| format!("par{i}")).collect();
    let subnets = subnets_a();
    within(&ns, || {
        std::thread::scope(|s| {
            for (i, id) in ids.iter().enumerate() {
                let subnets = &subnets;
                s.spawn(move || {
                    let ips = [ip(&format!("10.88.0.{}", 10 + i))];
                    masq::add(NET_A, subnets, &ips, &att(id, "eth0")).unwrap();
                    let mac = [2, 0, 0, 0, 1, i as u8];
                    let port = format!("vp{i}");
                    spoofchk::add(NET_A, &port, mac, &att(id, "eth0")).unwrap();
                    if i % 2 == 0 {
                        masq::del(NET_A, &ips).unwrap();
                        spoofchk::del(&port, Some(mac)).unwrap();
                    }
                });
            }
        })
    });
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&objs, "masq4").len(), 16);
    assert_eq!(rules_of(&objs, "postrouting").len(), 2);
    assert_eq!(objects(&objs, "rule").len(), 2 + 5);
    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(set_elems(&objs, "spoof_ports").len(), 16);
    assert_eq!(set_elems(&objs, "spoof_allowed").len(), 16);
    assert_eq!(objects(&objs, "rule").len(), 3);
}

#[test]
fn check_sees_tampered_chains_and_a_repeated_add_heals_them() {
    require_root!();
    let ns = fresh_ns();
    let ips = [ip("10.88.0.2"), ip("fd00:a::2")];
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    let chain_a = masq::chain_name(NET_A, &subnets_a());
    nft_ok(&ns, &["flush", "chain", "inet", "nuage", &chain_a]);
    nft_ok(
        &ns,
        &["add", "rule", "inet", "nuage", "postrouting", "accept"],
    );
    let e = within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg.contains(&format!(
            "chain inet nuage {chain_a} holds 0 rule(s) that differ from the 5 we write"
        )),
        "{e}"
    );
    assert!(
        e.msg.contains(
            "chain inet nuage postrouting holds 3 rule(s) that differ from the 2 we write"
        ),
        "{e}"
    );
    // A new container takes the fast path: it does not rewrite chains.
    add_a(&ns, "c2", "10.88.0.3", "fd00:a::3");
    assert!(within(&ns, || masq::check(
        NET_A,
        &subnets_a(),
        &ips,
        &att("c1", "eth0")
    ))
    .is_err());
    // A repeated ADD takes the full transaction: both chains are rewritten.
    add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
    within(&ns, || {
        masq::check(NET_A, &subnets_a(), &ips, &att("c1", "eth0"))
    })
    .unwrap();

    within(&ns, || {
        spoofchk::add(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap();
    nft_ok(&ns, &["flush", "chain", "bridge", "nuage", "spoofchk"]);
    let e = within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(
        e.msg.contains(
            "chain bridge nuage spoofchk holds 0 rule(s) that differ from the 2 we write"
        ),
        "{e}"
    );
    within(&ns, || {
        spoofchk::add(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap();
    within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap();
    nft_ok(&ns, &["delete", "table", "bridge", "nuage"]);
    let e = within(&ns, || {
        spoofchk::check(NET_A, "veth1", MAC_A, &att("c1", "eth0"))
    })
    .unwrap_err();
    assert!(e.msg.contains("table bridge nuage does not exist"), "{e}");
}

// ---------------------------------------------------------------------------
// The NETLINK_NETFILTER fast paths (nft::add's `create element`, the dels).

/// Runs `f` in `ns` and counts the nft processes it started (nft is
/// counted per thread, where it is spawned).
fn nft_runs_of<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> (T, u64) {
    within(ns, || {
        let before = nft::testing::nft_runs();
        let r = f();
        (r, nft::testing::nft_runs() - before)
    })
}

fn rules_for<'a>(
    att: &'a Attachment,
    subnets: &'a [IpNetwork],
    ips: &'a [IpAddr],
    port: &'a str,
    mac: [u8; 6],
) -> nft::AttachmentRules<'a> {
    nft::AttachmentRules {
        network: NET_A,
        att,
        masq: Some((subnets, ips)),
        spoofchk: Some((port, mac)),
    }
}

/// `nft -f -` of `input` in `ns`.
fn nft_input(ns: &NetNs, input: String) {
    within(ns, move || {
        use std::io::Write;
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
}

#[test]
fn nfnl_fast_path_adds_without_nft_and_check_gc_understand_it() {
    require_root!();
    let ns = fresh_ns();
    let subnets = subnets_a();
    let (a1, a2) = (att("c1", "eth0"), att("c2", "eth0"));
    let ips1 = [ip("10.88.0.2"), ip("fd00:a::2")];
    let ips2 = [ip("10.88.0.3"), ip("fd00:a::3")];

    // The first ADD finds no table: create fails (ENOENT), the full nft
    // paths create everything.
    let (r, runs) = nft_runs_of(&ns, || {
        nft::add(&rules_for(&a1, &subnets, &ips1, "veth1", MAC_A))
    });
    r.unwrap();
    assert!(runs >= 2, "the full paths run nft ({runs} runs)");

    // The second ADD: NETLINK_NETFILTER only.
    let (r, runs) = nft_runs_of(&ns, || {
        nft::add(&rules_for(&a2, &subnets, &ips2, "veth2", MAC_B))
    });
    r.unwrap();
    assert_eq!(runs, 0, "the fast path must not run nft");

    let objs = table_json(&ns, "inet", "nuage").unwrap();
    let chain = masq::chain_name(NET_A, &subnets);
    assert_eq!(
        map_elems(&objs, "masq4")["10.88.0.3"],
        (chain.clone(), comment(NET_A, "c2", "eth0"))
    );
    assert_eq!(
        map_elems(&objs, "masq6")["fd00:a::3"],
        (chain.clone(), comment(NET_A, "c2", "eth0"))
    );
    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(
        set_elems(&objs, "spoof_ports")["veth2"],
        comment(NET_A, "c2", "eth0")
    );
    assert_eq!(
        set_elems(&objs, "spoof_allowed")["veth2 . 02:00:00:00:00:0b"],
        comment(NET_A, "c2", "eth0")
    );
    within(&ns, || masq::check(NET_A, &subnets, &ips2, &a2)).unwrap();
    within(&ns, || spoofchk::check(NET_A, "veth2", MAC_B, &a2)).unwrap();
    within(&ns, || masq::check(NET_A, &subnets, &ips1, &a1)).unwrap();

    // masq::add and spoofchk::add alone take the same fast path.
    let a3 = att("c3", "eth0");
    let ips3 = [ip("10.88.0.4")];
    let (r, runs) = nft_runs_of(&ns, || {
        masq::add(NET_A, &subnets, &ips3, &a3)?;
        spoofchk::add(NET_A, "veth3", MAC_A, &a3)
    });
    r.unwrap();
    assert_eq!(runs, 0);
    within(&ns, || masq::check(NET_A, &subnets, &ips3, &a3)).unwrap();
    within(&ns, || spoofchk::check(NET_A, "veth3", MAC_A, &a3)).unwrap();

    // A repeated ADD: create is EEXIST, the full path rewrites (nft).
    let (r, runs) = nft_runs_of(&ns, || {
        nft::add(&rules_for(&a2, &subnets, &ips2, "veth2", MAC_B))
    });
    r.unwrap();
    assert!(runs >= 1);
    within(&ns, || masq::check(NET_A, &subnets, &ips2, &a2)).unwrap();

    // GC reads the comments of nfnl-made elements: c2 and c3 go, c1 stays.
    within(&ns, || masq::gc(NET_A, std::slice::from_ref(&a1))).unwrap();
    within(&ns, || spoofchk::gc(NET_A, std::slice::from_ref(&a1))).unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(
        map_elems(&objs, "masq4").into_keys().collect::<Vec<_>>(),
        ["10.88.0.2"]
    );
    assert_eq!(
        map_elems(&objs, "masq6").into_keys().collect::<Vec<_>>(),
        ["fd00:a::2"]
    );
    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(
        set_elems(&objs, "spoof_ports")
            .into_keys()
            .collect::<Vec<_>>(),
        ["veth1"]
    );
    assert_eq!(set_elems(&objs, "spoof_allowed").len(), 1);

    // A stale element of this IP on another network (another verdict):
    // create is EEXIST, the full path replaces it.
    let b = att("c9", "eth0");
    within(&ns, || masq::add(NET_B, &subnets_b(), &ips1[..1], &b)).unwrap();
    within(&ns, || masq::check(NET_B, &subnets_b(), &ips1[..1], &b)).unwrap();
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(
        map_elems(&objs, "masq4")["10.88.0.2"],
        (
            masq::chain_name(NET_B, &subnets_b()),
            comment(NET_B, "c9", "eth0")
        )
    );
}

/// Elements made over NETLINK_NETFILTER read back exactly as the same
/// elements made by nft: `nft -j list ruleset` of both namespaces is equal.
#[test]
fn nfnl_elements_list_exactly_like_nft_made_ones() {
    require_root!();
    let (via_nfnl, via_nft) = (fresh_ns(), fresh_ns());
    let subnets = subnets_a();
    let a1 = att("c1", "eth0");
    // A comment of exactly COMMENT_MAX bytes, and a 15-byte port name.
    let id = "x".repeat(nft::COMMENT_MAX - NET_A.len() - "//eth0".len());
    let a2 = att(&id, "eth0");
    let c2 = nft::attachment_comment(NET_A, &a2);
    assert_eq!(c2.len(), nft::COMMENT_MAX);
    let (ips1, ips2) = (
        [ip("10.88.0.2"), ip("fd00:a::2")],
        [ip("10.88.0.250"), ip("fd00:a::ffff:1")],
    );
    let port2 = "vethabcdefghijk";
    let mac2 = [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54];
    for ns in [&via_nfnl, &via_nft] {
        within(ns, || {
            nft::add(&rules_for(&a1, &subnets, &ips1, "veth1", MAC_A))
        })
        .unwrap();
    }
    let (r, runs) = nft_runs_of(&via_nfnl, || {
        nft::add(&rules_for(&a2, &subnets, &ips2, port2, mac2))
    });
    r.unwrap();
    assert_eq!(runs, 0);
    let chain = masq::chain_name(NET_A, &subnets);
    nft_input(
        &via_nft,
        format!(
            "create element inet nuage masq4 {{ 10.88.0.250 comment \"{c2}\" : jump {chain} }}\n\
             create element inet nuage masq6 {{ fd00:a::ffff:1 comment \"{c2}\" : jump {chain} }}\n\
             create element bridge nuage spoof_ports {{ \"{port2}\" comment \"{c2}\" }}\n\
             create element bridge nuage spoof_allowed {{ \"{port2}\" . fe:dc:ba:98:76:54 comment \"{c2}\" }}\n"
        ),
    );
    for args in [&["-j", "list", "ruleset"][..], &["list", "ruleset"]] {
        let (a, b) = (nft_ok(&via_nfnl, args), nft_ok(&via_nft, args));
        assert_eq!(a, b, "nft {args:?}");
    }
    assert!(nft_ok(&via_nfnl, &["list", "ruleset"]).contains(&format!("comment \"{c2}\"")));
    within(&via_nfnl, || masq::check(NET_A, &subnets, &ips2, &a2)).unwrap();
    within(&via_nfnl, || spoofchk::check(NET_A, port2, mac2, &a2)).unwrap();

    // And nfnl deletes nft-made elements.
    let (r, runs) = nft_runs_of(&via_nft, || {
        masq::del(NET_A, &ips2)?;
        spoofchk::del(port2, Some(mac2))
    });
    r.unwrap();
    assert_eq!(runs, 0);
    let objs = table_json(&via_nft, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&objs, "masq4").len(), 1);
    assert_eq!(map_elems(&objs, "masq6").len(), 1);
    let objs = table_json(&via_nft, "bridge", "nuage").unwrap();
    assert_eq!(set_elems(&objs, "spoof_ports").len(), 1);
    assert_eq!(set_elems(&objs, "spoof_allowed").len(), 1);
}

#[test]
fn nfnl_dels_are_idempotent_with_and_without_destroy() {
    require_root!();
    for legacy in [false, true] {
        let run = |ns: &NetNs, f: &(dyn Fn() -> nuage_core::Result<()> + Sync)| {
            let (r, runs) = nft_runs_of(ns, || {
                if legacy {
                    nft::testing::without_destroy(f)
                } else {
                    f()
                }
            });
            r.unwrap_or_else(|e| panic!("legacy={legacy}: {e}"));
            assert_eq!(runs, 0, "legacy={legacy}: a del must not run nft");
        };
        let ns = fresh_ns();
        let ips = [ip("10.88.0.2"), ip("fd00:a::2")];
        // No tables at all.
        run(&ns, &|| masq::del(NET_A, &ips));
        run(&ns, &|| spoofchk::del("veth1", Some(MAC_A)));
        assert!(table_json(&ns, "inet", "nuage").is_none());
        assert!(table_json(&ns, "bridge", "nuage").is_none());

        add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
        add_a(&ns, "c2", "10.88.0.3", "fd00:a::3");
        within(&ns, || {
            spoofchk::add(NET_A, "veth1", MAC_A, &att("c1", "eth0"))?;
            spoofchk::add(NET_A, "veth2", MAC_B, &att("c2", "eth0"))
        })
        .unwrap();
        run(&ns, &|| masq::del(NET_A, &ips));
        run(&ns, &|| spoofchk::del("veth1", Some(MAC_A)));
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert_eq!(
            map_elems(&objs, "masq4").into_keys().collect::<Vec<_>>(),
            ["10.88.0.3"]
        );
        assert_eq!(
            map_elems(&objs, "masq6").into_keys().collect::<Vec<_>>(),
            ["fd00:a::3"]
        );
        let objs = table_json(&ns, "bridge", "nuage").unwrap();
        assert_eq!(
            set_elems(&objs, "spoof_ports")
                .into_keys()
                .collect::<Vec<_>>(),
            ["veth2"]
        );
        // Missing elements; then partly missing: the present ones go.
        run(&ns, &|| masq::del(NET_A, &ips));
        run(&ns, &|| spoofchk::del("veth1", Some(MAC_A)));
        run(&ns, &|| {
            masq::del(NET_A, &[ip("10.88.0.2"), ip("10.88.0.3"), ip("fd00:a::3")])
        });
        run(&ns, &|| spoofchk::del("veth2", Some(MAC_A))); // the port goes, not the pair
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert!(map_elems(&objs, "masq4").is_empty());
        assert!(map_elems(&objs, "masq6").is_empty());
        let objs = table_json(&ns, "bridge", "nuage").unwrap();
        assert!(set_elems(&objs, "spoof_ports").is_empty());
        assert_eq!(set_elems(&objs, "spoof_allowed").len(), 1);

        // One map missing (someone deleted masq6): the batch fails with
        // ENOENT, the other map's element still goes.
        add_a(&ns, "c1", "10.88.0.2", "fd00:a::2");
        nft_input(
            &ns,
            "flush chain inet nuage postrouting\ndelete map inet nuage masq6\n".into(),
        );
        run(&ns, &|| masq::del(NET_A, &ips));
        let objs = table_json(&ns, "inet", "nuage").unwrap();
        assert!(map_elems(&objs, "masq4").is_empty());

        // Tables gone: still success.
        nft_ok(&ns, &["delete", "table", "inet", "nuage"]);
        nft_ok(&ns, &["delete", "table", "bridge", "nuage"]);
        run(&ns, &|| masq::del(NET_A, &ips));
        run(&ns, &|| spoofchk::del("veth2", Some(MAC_B)));
    }
}

#[test]
fn nfnl_errors_name_the_operation_and_the_message() {
    require_root!();
    let ns = fresh_ns();
    // A foreign `masq4` with 16-byte keys: our 4-byte key is EINVAL, with
    // destroy and with delete.
    nft_ok(&ns, &["add", "table", "inet", "nuage"]);
    nft_ok(
        &ns,
        &["add", "set", "inet", "nuage", "masq4", "{ type ifname; }"],
    );
    let e = within(&ns, || masq::del(NET_A, &[ip("10.88.0.2")])).unwrap_err();
    assert_eq!(e.errno, Some(libc::EINVAL), "{e}");
    assert!(
        e.msg.starts_with(
            "nfnl: delete masquerade of 10.88.0.2 (network \"net-a.1\") from maps inet nuage masq4/masq6: \
             delete element inet nuage masq4 { 10.88.0.2 }: Invalid argument"
        ),
        "{e}"
    );
    // An invalid port name is refused before anything is sent.
    let e = within(&ns, || spoofchk::del("veth/x", None)).unwrap_err();
    assert!(e.msg.contains("not a valid interface name"), "{e}");
    let a = att("c1", "eth0");
    let e = within(&ns, || {
        nft::add(&rules_for(&a, &[], &[], "a-much-too-long-name", MAC_A))
    })
    .unwrap_err();
    assert!(e.msg.contains("not a valid interface name"), "{e}");
}

#[test]
fn nfnl_parallel_adds_and_dels_on_distinct_elements_all_succeed() {
    require_root!();
    let ns = fresh_ns();
    let subnets = subnets_a();
    // The tables exist: every ADD below takes the fast path.
    add_a(&ns, "c0", "10.88.0.2", "fd00:a::2");
    within(&ns, || {
        spoofchk::add(NET_A, "veth0", MAC_A, &att("c0", "eth0"))
    })
    .unwrap();
    let ids: Vec<String> = (0..48).map(|i| format!("par{i}")).collect();
    let runs: u64 = within(&ns, || {
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let subnets = &subnets;
                    s.spawn(move || {
                        let before = nft::testing::nft_runs();
                        let a = att(id, "eth0");
                        let ips = [ip(&format!("10.88.1.{i}")), ip(&format!("fd00:a::1:{i:x}"))];
                        let (port, mac) = (format!("vp{i}"), [2, 0, 0, 0, 2, i as u8]);
                        nft::add(&nft::AttachmentRules {
                            network: NET_A,
                            att: &a,
                            masq: Some((subnets, &ips)),
                            spoofchk: Some((&port, mac)),
                        })
                        .unwrap();
                        if i % 2 == 0 {
                            masq::del(NET_A, &ips).unwrap();
                            spoofchk::del(&port, Some(mac)).unwrap();
                        }
                        nft::testing::nft_runs() - before
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        })
    });
    assert_eq!(runs, 0, "no nft process on the fast paths");
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&objs, "masq4").len(), 1 + 24);
    assert_eq!(map_elems(&objs, "masq6").len(), 1 + 24);
    let objs = table_json(&ns, "bridge", "nuage").unwrap();
    assert_eq!(set_elems(&objs, "spoof_ports").len(), 1 + 24);
    assert_eq!(set_elems(&objs, "spoof_allowed").len(), 1 + 24);
    for i in (1..48).step_by(2) {
        let a = att(&ids[i], "eth0");
        let ips = [ip(&format!("10.88.1.{i}")), ip(&format!("fd00:a::1:{i:x}"))];
        within(&ns, || masq::check(NET_A, &subnets, &ips, &a)).unwrap();
    }
}

/// Not a test: the cost of one ADD and one DEL of a masquerade element over
/// NETLINK_NETFILTER and over `nft -j -f -` (what the code did before),
/// with 1000 elements in the map (`NUAGE_TIMING_FILL` to change). Run with
/// `cargo test -p nuage-core --release --test nft -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_nfnl_vs_nft_exec() {
    use std::time::{Duration, Instant};
    require_root!();
    let ns = fresh_ns();
    let subnets = [net("10.0.0.0/8")];
    let a0 = att("c0", "eth0");
    within(&ns, || masq::add(NET_A, &subnets, &[ip("10.1.0.1")], &a0)).unwrap();
    let chain = masq::chain_name(NET_A, &subnets);
    let fill: u32 = std::env::var("NUAGE_TIMING_FILL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let elems: Vec<String> = (0..fill)
        .map(|i| {
            format!(
                "10.2.{}.{} comment \"{NET_A}/fill{i}/eth0\" : jump {chain}",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    for chunk in elems.chunks(1000) {
        nft_input(
            &ns,
            format!("add element inet nuage masq4 {{ {} }}\n", chunk.join(", ")),
        );
    }
    let objs = table_json(&ns, "inet", "nuage").unwrap();
    assert_eq!(map_elems(&objs, "masq4").len(), fill as usize + 1);

    const N: u32 = 200;
    let key = |net: u32, i: u32| format!("10.{net}.{}.{}", i / 250, i % 250 + 1);
    let ((add, del), runs) = nft_runs_of(&ns, || {
        let (mut add, mut del) = (Duration::ZERO, Duration::ZERO);
        for i in 0..N {
            let ips = [ip(&key(100, i))];
            let t = Instant::now();
            masq::add(NET_A, &subnets, &ips, &att(&format!("t{i}"), "eth0")).unwrap();
            add += t.elapsed();
            let t = Instant::now();
            masq::del(NET_A, &ips).unwrap();
            del += t.elapsed();
        }
        (add / N, del / N)
    });
    assert_eq!(runs, 0);

    let exec = |json: Value| {
        use std::io::Write;
        let mut child = Command::new("nft")
            .args(["-j", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(json.to_string().as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    };
    let (add_nft, del_nft) = within(&ns, || {
        let (mut add, mut del) = (Duration::ZERO, Duration::ZERO);
        for i in 0..N {
            let (k, comment) = (key(101, i), format!("{NET_A}/t{i}/eth0"));
            let t = Instant::now();
            exec(serde_json::json!({"nftables": [{"create": {"element": {
                "family": "inet", "table": "nuage", "name": "masq4",
                "elem": [[{"elem": {"val": k, "comment": comment}},
                          {"jump": {"target": chain}}]]}}}]}));
            add += t.elapsed();
            let t = Instant::now();
            exec(serde_json::json!({"nftables": [{"delete": {"element": {
                "family": "inet", "table": "nuage", "name": "masq4", "elem": [k]}}}]}));
            del += t.elapsed();
        }
        (add / N, del / N)
    });
    eprintln!(
        "{} elements in masq4, mean of {N}: \
         nfnl: add {add:?}, del {del:?}; nft -j -f -: add {add_nft:?}, del {del_nft:?}",
        fill + 1
    );
}
