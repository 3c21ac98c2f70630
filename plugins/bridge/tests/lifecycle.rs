//! The life of a bridge attachment beyond a plain ADD: DEL in every
//! degraded situation, CHECK after damage, GC and STATUS (spec 1.1.0), the
//! rollback of every failing ADD step, the bad-input matrix, the iptables
//! backend served by nftables, the bridge port limit, and concurrent ADDs.
//!
//! "Leaves nothing behind" is checked with a [`Snapshot`] of the host (its
//! links with MTU and master, the leases, our nftables elements, iptables
//! CNI rules) and of the container, taken before the failing call.

mod common;

use std::path::Path;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const NET: &str = "lifenet";
const BR: &str = "br-life";

fn setup(tag: &str) -> Host {
    require_root();
    Host::new(tag)
}

/// The full-featured network of these tests: gateway, masquerade and MAC
/// spoof check, so every DEL has links, a lease and nft elements to remove.
fn full(host: &Host, version: &str) -> Value {
    net(
        host,
        version,
        NET,
        BR,
        Some("10.90.0.0/24"),
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}),
    )
}

/// A host (`tag`) with one attachment `cid` of [`full`] (1.0.0), in
/// container `c`: the host, the config, the container, the ADD result.
fn one_attached(tag: &str, cid: &str) -> (Host, Value, Netns, Value) {
    let host = setup(tag);
    let c = full(&host, "1.0.0");
    let ctr = host.container("c");
    let res = add(&host, &ctr, cid, &c);
    (host, c, ctr, res)
}

/// Everything of attachment `cid` (ADD result `res`) is gone from the host:
/// its veth, its lease, its nft elements (by IP, host veth and comment).
#[track_caller]
fn assert_attachment_gone(host: &Host, cid: &str, res: &Value) {
    let (ip, veth) = (ip_of(res, 0), host_veth(res));
    assert!(
        !leases(host, NET).contains(&ip),
        "{cid}: lease {ip} left: {:?}",
        leases(host, NET)
    );
    for needle in [format!("\"{ip}\""), veth.clone(), format!("/{cid}/")] {
        assert!(
            nft_elements_with(host, &needle).is_empty(),
            "{cid}: nft elements with {needle} left: {:?}",
            nft_elements(host)
        );
    }
    wait_until(&format!("{cid}: host veth {veth} gone"), || {
        host.netns().link(&veth).is_none()
    });
}

/// Everything of attachment `cid` is in place: lease, one masq4 element, a
/// spoof_ports and a spoof_allowed element, the veth on the bridge.
#[track_caller]
fn assert_attachment_present(host: &Host, cid: &str, res: &Value) {
    let (ip, veth) = (ip_of(res, 0), host_veth(res));
    assert!(leases(host, NET).contains(&ip), "{cid}: no lease {ip}");
    let by_ip = nft_elements_with(host, &format!("\"{ip}\""));
    assert_eq!(by_ip.len(), 1, "{cid}: {:?}", nft_elements(host));
    assert!(by_ip[0].starts_with("inet masq4") && by_ip[0].contains(&format!("{NET}/{cid}/eth0")));
    let by_port = nft_elements_with(host, &veth);
    assert_eq!(by_port.len(), 2, "{cid}: {:?}", nft_elements(host));
    assert_eq!(
        host_link(host, &veth)["master"],
        res["interfaces"][0]["name"]
    );
}

// ---------------------------------------------------------------------------
// DEL
// ---------------------------------------------------------------------------

#[test]
fn del_is_idempotent() {
    let (host, c, ctr, res) = one_attached("life-del-twice", "c1");
    assert_attachment_present(&host, "c1", &res);

    let with = with_prev(&c, &res);
    del(&host, Some(ctr.path_str()), "c1", &with);
    assert_attachment_gone(&host, "c1", &res);
    assert_eq!(ctr.link_names(), ["lo"]);
    // Again, with and without prevResult, with and without CNI_NETNS.
    del(&host, Some(ctr.path_str()), "c1", &with);
    del(&host, Some(ctr.path_str()), "c1", &c);
    del(&host, None, "c1", &with);
    del(&host, None, "c1", &c);
    assert_attachment_gone(&host, "c1", &res);
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
    // DEL never deletes the bridge.
    assert_eq!(host_links(&host), ["br-life", "lo"]);
}

#[test]
fn del_after_the_netns_is_gone_releases_everything() {
    let host = setup("life-del-nons");
    let c = full(&host, "1.0.0");
    // With prevResult, without it (our elements are found by comment), and
    // without CNI_NETNS at all.
    for (i, (prev, pass_netns)) in [(true, true), (false, true), (false, false)]
        .into_iter()
        .enumerate()
    {
        let cid = format!("gone{i}");
        let ctr = host.container(&cid);
        let path = ctr.path_str().to_string();
        let res = add(&host, &ctr, &cid, &c);
        assert_attachment_present(&host, &cid, &res);
        // Keep another attachment around: it must survive this DEL.
        let other = host.container("other");
        let other_res = add(&host, &other, &format!("{cid}-other"), &c);

        drop(ctr); // `ip netns del`: the container and its veth go away
        assert!(!Path::new(&path).exists());
        let conf = if prev { with_prev(&c, &res) } else { c.clone() };
        del(&host, pass_netns.then_some(path.as_str()), &cid, &conf);
        assert_attachment_gone(&host, &cid, &res);
        assert_attachment_present(&host, &format!("{cid}-other"), &other_res);
        del(&host, Some(other.path_str()), &format!("{cid}-other"), &c);
    }
    assert!(leases(&host, NET).is_empty());
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
}

/// A DEL repeated after the address went to another container (the
/// runtime may repeat a DEL) leaves that container's masquerade: the
/// element is deleted only when its comment names the DEL's attachment.
#[test]
fn a_late_del_leaves_the_masquerade_of_the_addresses_new_holder() {
    let host = setup("life-late-del");
    let mut c = full(&host, "1.0.0");
    // A range of one address: B gets A's.
    c["ipam"]["rangeStart"] = json!("10.90.0.5");
    c["ipam"]["rangeEnd"] = json!("10.90.0.5");
    let a = host.container("a");
    let ra = add(&host, &a, "a", &c);
    let a_path = a.path_str().to_string();
    drop(a);
    del(&host, Some(&a_path), "a", &with_prev(&c, &ra));
    let b = host.container("b");
    let rb = add(&host, &b, "b", &c);
    assert_eq!(rb["ips"][0]["address"], ra["ips"][0]["address"]);
    del(&host, Some(&a_path), "a", &with_prev(&c, &ra));
    check(&host, &b, "b", &c, &rb).assert_success();
    assert_attachment_present(&host, "b", &rb);
    del(&host, Some(b.path_str()), "b", &with_prev(&c, &rb));
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
}

/// A DEL given another container's port never takes that container's
/// spoof check: not with a wrong `prevResult`, nor from a container that
/// rebuilt its interface as a veth whose peer index is the other's port
/// (with NET_ADMIN in its own namespace). Its own elements still go.
#[test]
fn a_del_never_takes_another_containers_spoof_check() {
    let host = setup("life-spoof-owner");
    let c = full(&host, "1.0.0");
    let (v, m) = (host.container("victim"), host.container("mallory"));
    let rv = add(&host, &v, "victim", &c);
    let rm = add(&host, &m, "mallory", &c);
    // A DEL of an unknown container with the victim's result, no netns.
    del(&host, None, "ghost", &with_prev(&c, &rv));
    assert_attachment_present(&host, "victim", &rv);
    // Mallory's eth0 becomes a veth whose peer has the victim port's index.
    let port_index = host_link(&host, &host_veth(&rv))["ifindex"].to_string();
    m.ip(&["link", "del", "eth0"]);
    // (The peer is registered first: give it an index of its own.)
    m.ip(&[
        "link",
        "add",
        "p",
        "index",
        &port_index,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "index",
        "4000",
    ]);
    del(&host, Some(m.path_str()), "mallory", &c);
    assert_attachment_present(&host, "victim", &rv);
    assert_attachment_gone(&host, "mallory", &rm);
    del(&host, Some(v.path_str()), "victim", &with_prev(&c, &rv));
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));

    // Its own spoof check is found wherever it is: after its host port was
    // renamed (DEL with prevResult), after its MAC changed (DEL without).
    let r1 = add(&host, &v, "renamed", &c);
    let port = host_veth(&r1);
    host.netns().ip(&["link", "set", &port, "down"]);
    host.netns().ip(&["link", "set", &port, "name", "renamed0"]);
    host.netns().ip(&["link", "set", "renamed0", "up"]);
    del(&host, Some(v.path_str()), "renamed", &with_prev(&c, &r1));
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
    let r2 = add(&host, &v, "newmac", &c);
    v.ip(&["link", "set", "eth0", "address", "02:11:22:33:44:55"]);
    del(&host, Some(v.path_str()), "newmac", &c);
    assert_attachment_gone(&host, "newmac", &r2);
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
}

/// Configs as Go programs and templates write them, read as the reference
/// reads them: `null` is an absent key, `mtu` -1 is unset, MACs in the
/// other forms of Go's net.ParseMAC, an empty MAC is none and only the
/// winning MAC source is read; and a DEL is not refused for what only ADD
/// checks.
/// The reference's defaults and MAC sources: no `bridge` key means `cni0`;
/// `CNI_ARGS` `MAC=` sets the container MAC, `args.cni.mac` wins over it,
/// and `runtimeConfig.mac` over both.
#[test]
fn default_bridge_name_and_mac_sources() {
    let host = setup("life-defaults");
    let mut c = net(
        &host,
        "1.0.0",
        "defnet",
        "x",
        Some("10.93.0.0/24"),
        json!({}),
    );
    c.as_object_mut().unwrap().remove("bridge");
    let ctr = host.container("c");
    let mac_of = |res: &Value| res["interfaces"][2]["mac"].as_str().unwrap().to_string();
    let run = |cid: &str, conf: &Value, cni_args: &str| {
        let (res, _) = add_with(&host, &ctr, cid, conf, &[("CNI_ARGS", cni_args)]);
        let eth0 = ctr.link("eth0").expect("eth0");
        assert_eq!(eth0["address"].as_str().unwrap(), mac_of(&res), "{res}");
        let mac = mac_of(&res);
        del(&host, Some(ctr.path_str()), cid, &with_prev(conf, &res));
        (res, mac)
    };
    let (res, mac) = run("m1", &c, "IgnoreUnknown=1;MAC=02:00:00:00:aa:01");
    assert_eq!(res["interfaces"][0]["name"], "cni0", "{res}");
    assert_eq!(mac, "02:00:00:00:aa:01");
    let mut args = c.clone();
    args["args"] = json!({"cni": {"mac": "02:00:00:00:aa:02"}});
    let (_, mac) = run("m2", &args, "IgnoreUnknown=1;MAC=02:00:00:00:aa:01");
    assert_eq!(mac, "02:00:00:00:aa:02");
    args["runtimeConfig"] = json!({"mac": "02:00:00:00:aa:03"});
    let (_, mac) = run("m3", &args, "IgnoreUnknown=1;MAC=02:00:00:00:aa:01");
    assert_eq!(mac, "02:00:00:00:aa:03");
}

#[test]
fn configs_as_go_reads_them() {
    let host = setup("life-go-conf");
    let nulls = net(
        &host,
        "1.0.0",
        "gonet",
        "br-go",
        Some("10.91.0.0/24"),
        json!({"mtu": null, "isGateway": null, "ipMasq": null, "hairpinMode": null,
               "promiscMode": null, "vlan": null, "macspoofchk": null,
               "dns": {"nameservers": null, "search": null}}),
    );
    let c1 = host.container("c1");
    let r1 = add(&host, &c1, "c1", &nulls);
    check(&host, &c1, "c1", &nulls, &r1).assert_success();
    del(&host, Some(c1.path_str()), "c1", &with_prev(&nulls, &r1));

    let mut macs = net(
        &host,
        "1.0.0",
        "gonet",
        "br-go",
        Some("10.91.0.0/24"),
        json!({"mtu": -1}),
    );
    macs["capabilities"] = json!({"mac": true});
    macs["runtimeConfig"] = json!({"mac": "0E-00-00-00-00-0A"});
    macs["args"] = json!({"cni": {"mac": ""}});
    let c2 = host.container("c2");
    let (res, _) = add_with(
        &host,
        &c2,
        "c2",
        &macs,
        &[("CNI_ARGS", "IgnoreUnknown=1;MAC=zz")],
    );
    assert_eq!(res["interfaces"][2]["mac"], "0e:00:00:00:00:0a");
    let mut dotted = macs.clone();
    dotted["runtimeConfig"] = json!({"mac": "0e00.0000.000b"});
    let c3 = host.container("c3");
    let r3 = add(&host, &c3, "c3", &dotted);
    assert_eq!(r3["interfaces"][2]["mac"], "0e:00:00:00:00:0b");
    del(&host, Some(c2.path_str()), "c2", &macs);
    del(&host, Some(c3.path_str()), "c3", &dotted);

    // ADD refuses hairpin with promisc; the runtime's cleanup DEL succeeds.
    let both = net(
        &host,
        "1.0.0",
        "gonet",
        "br-go",
        Some("10.91.0.0/24"),
        json!({"hairpinMode": true, "promiscMode": true}),
    );
    let c4 = host.container("c4");
    err(
        &cni(&host, &ours(), "ADD", "c4", Some(c4.path_str()), &both, &[]),
        7,
    );
    del(&host, Some(c4.path_str()), "c4", &both);
    assert!(leases(&host, "gonet").is_empty());
}

/// On a bridge whose MAC the kernel chose (one made by someone else, the
/// reference's cni0), a port can change that MAC: the result reports the
/// MAC after our port joined, so CHECK agrees with it, isGateway or not.
#[test]
fn the_result_has_the_bridge_mac_after_the_port_joined() {
    let host = setup("life-brmac");
    host.netns()
        .ip(&["link", "add", "br-kmac", "type", "bridge"]);
    host.netns().ip(&["link", "set", "br-kmac", "up"]);
    for gw in [false, true] {
        let c = net(
            &host,
            "1.0.0",
            "kmac",
            "br-kmac",
            Some("10.96.0.0/24"),
            json!({"isGateway": gw}),
        );
        let cid = format!("k{gw}");
        let ctr = host.container(&cid);
        let res = add(&host, &ctr, &cid, &c);
        let now = host.netns().link("br-kmac").unwrap()["address"].clone();
        assert_eq!(res["interfaces"][0]["mac"], now, "isGateway {gw}");
        check(&host, &ctr, &cid, &c, &res).assert_success();
        del(&host, Some(ctr.path_str()), &cid, &with_prev(&c, &res));
    }
}

/// Names the kernel does not take as is: `eth%d` is a template (the
/// kernel would pick `eth0`), and a rename to `all` or `default` fails after
/// the move. ADD refuses them (code 4) before anything is created; DEL of
/// such a name succeeds (nothing can have been created under it).
#[test]
fn add_refuses_names_the_kernel_does_not_take_as_is() {
    let host = setup("life-kname");
    let c = net(
        &host,
        "1.0.0",
        "kname",
        "br-kname",
        Some("10.93.0.0/24"),
        json!({}),
    );
    let ctr = host.container("c1");
    for ifname in ["all", "default", "eth%d"] {
        let out = cni(
            &host,
            &ours(),
            "ADD",
            "c1",
            Some(ctr.path_str()),
            &c,
            &[("CNI_IFNAME", ifname)],
        );
        assert_eq!(
            err(&out, 4),
            format!("interface name {ifname:?} is reserved by the kernel")
        );
        assert_eq!(ctr.link_names(), ["lo"]);
        assert!(leases(&host, "kname").is_empty());
        cni(
            &host,
            &ours(),
            "DEL",
            "c1",
            Some(ctr.path_str()),
            &c,
            &[("CNI_IFNAME", ifname)],
        )
        .assert_success();
    }
    assert!(host.netns().link("br-kname").is_none(), "nothing created");
}

/// A DEL whose `ipam` cannot be read fails (code 7, as the reference's):
/// read as absent, it would release nothing, succeed, and leak the lease
/// for good. A bridge name the kernel does not take as is (`%`) is refused
/// before anything is created.
#[test]
fn del_with_an_unreadable_ipam_fails_and_keeps_the_lease() {
    let host = setup("life-badipam");
    let c = net(
        &host,
        "1.0.0",
        "badipam",
        "br-badipam",
        Some("10.92.0.0/24"),
        json!({}),
    );
    let ctr = host.container("c1");
    let res = add(&host, &ctr, "c1", &c);
    for bad in [json!(5), json!({"type": 5})] {
        let mut b = c.clone();
        b["ipam"] = bad;
        let out = cni(&host, &ours(), "DEL", "c1", Some(ctr.path_str()), &b, &[]);
        err(&out, 7);
        assert_eq!(leases(&host, "badipam").len(), 1);
    }
    del(&host, Some(ctr.path_str()), "c1", &with_prev(&c, &res));
    assert!(leases(&host, "badipam").is_empty());
    let mut t = c.clone();
    t["bridge"] = json!("br%d");
    let out = cni(&host, &ours(), "ADD", "c2", Some(ctr.path_str()), &t, &[]);
    assert!(
        err(&out, 7).contains(r#"invalid bridge name "br%d""#),
        "{out}"
    );
    let links = host.netns().link_names();
    assert!(
        !links
            .iter()
            .any(|l| l.starts_with("br") && l != "br-badipam"),
        "nothing created: {links:?}"
    );
}

/// DEL with a CNI_IFNAME naming a link bridge does not create (`lo`, or
/// a veth's place taken by another kind) leaves it and succeeds: it is not
/// this plugin's, and a DEL that fails is retried forever.
#[test]
fn del_leaves_a_link_it_did_not_create() {
    let host = setup("life-notours");
    let c = net(
        &host,
        "1.0.0",
        "notours",
        "br-notours",
        Some("10.95.0.0/24"),
        json!({}),
    );
    let ctr = host.container("c1");
    ctr.set_lo_up();
    cni::del_leaves_foreign_link(&host, &ours(), &ctr, &c.to_string(), "lo");
}

/// With `/proc/sys` read-only (systemd's `ProtectKernelTunables`), a
/// dual-stack ADD works as the reference's does: the host-side settings
/// that cannot be written are logged, those already in place not written.
#[test]
fn a_read_only_proc_sys_does_not_fail_add() {
    let host = setup("life-rosys");
    // Forwarding, which ADD needs, on beforehand as an administrator would
    // have it there (ADD reads it over netlink and leaves it).
    host.netns().set_sysctl("net.ipv4.ip_forward", "1");
    host.netns().set_sysctl("net.ipv6.conf.all.forwarding", "1");
    let c = net(
        &host,
        "1.0.0",
        "rosys",
        "br-rosys",
        None,
        json!({"isGateway": true, "ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "fd99::/64"}]],
            "dataDir": data_dir(&host)}}),
    );
    let ro = netns_tests::cni::with_read_only_proc_sys(&host, &ours());
    let ctr = host.container("c1");
    let out = cni(&host, &ro, "ADD", "c1", Some(ctr.path_str()), &c, &[]);
    out.assert_success();
    assert!(
        out.stderr
            .contains("accept_ra: Read-only file system (os error 30): left as is"),
        "{out}"
    );
    let res = out.expect_json().clone();
    assert!(reaches(&ctr, "10.99.0.1"), "c1 -> v4 gateway");
    assert!(reaches(&ctr, "fd99::1"), "c1 -> v6 gateway");
    check(&host, &ctr, "c1", &c, &res).assert_success();
    cni(
        &host,
        &ro,
        "DEL",
        "c1",
        Some(ctr.path_str()),
        &with_prev(&c, &res),
        &[],
    )
    .assert_success();
    assert!(leases(&host, "rosys").is_empty());
}

/// A bridge made by someone else (the reference's cni0) has a MAC the
/// kernel assigned: it follows the lowest port, and becomes zero when the
/// last port leaves. ADD pins it where it is (a zero one to our stable MAC),
/// so it no longer changes as containers and other ports come and go.
#[test]
fn a_bridge_made_by_someone_else_gets_its_mac_pinned() {
    let host = setup("life-pin");
    let h = host.netns();
    let plain =
        |name: &str, br: &str, subnet: &str| net(&host, "1.0.0", name, br, Some(subnet), json!({}));
    let mac = |br: &str| h.link(br).unwrap()["address"].as_str().unwrap().to_string();
    let assign_type = |br: &str| {
        h.exec_ok("cat", &[&format!("/sys/class/net/{br}/addr_assign_type")])
            .trim()
            .to_string()
    };
    // A bridge with a foreign port of the lowest MAC: the bridge took it.
    h.ip(&["link", "add", "br-pin", "type", "bridge"]);
    h.ip(&["link", "set", "br-pin", "up"]);
    h.ip(&[
        "link",
        "add",
        "fp0",
        "address",
        "02:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "fp1",
    ]);
    h.ip(&["link", "set", "fp0", "master", "br-pin"]);
    assert_eq!(mac("br-pin"), "02:00:00:00:00:01");
    assert_ne!(assign_type("br-pin"), "3", "the kernel's choice");

    let c = plain("pinnet", "br-pin", "10.97.0.0/24");
    let ctr = host.container("c1");
    let res = add(&host, &ctr, "c1", &c);
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:00:00:01");
    assert_eq!(assign_type("br-pin"), "3", "set: the kernel keeps it");
    // The foreign port leaves, then ours: the MAC stays (unpinned, it would
    // become our port's, then zero).
    h.ip(&["link", "del", "fp0"]);
    assert_eq!(mac("br-pin"), "02:00:00:00:00:01");
    del(&host, Some(ctr.path_str()), "c1", &with_prev(&c, &res));
    assert!(ports_of(&host, "br-pin").is_empty());
    assert_eq!(mac("br-pin"), "02:00:00:00:00:01");

    // A bridge whose last port left has a zero MAC: it gets a stable one.
    h.ip(&["link", "add", "br-zero", "type", "bridge"]);
    h.ip(&["link", "add", "zp0", "type", "veth", "peer", "name", "zp1"]);
    h.ip(&["link", "set", "zp0", "master", "br-zero"]);
    h.ip(&["link", "set", "zp0", "nomaster"]);
    assert_eq!(mac("br-zero"), "00:00:00:00:00:00");
    let z = plain("zeronet", "br-zero", "10.98.0.0/24");
    let res = add(&host, &ctr, "c2", &z);
    let pinned = mac("br-zero");
    assert_ne!(pinned, "00:00:00:00:00:00");
    assert!(pinned.starts_with("02:"), "locally administered: {pinned}");
    assert_eq!(res["interfaces"][0]["mac"], pinned.as_str());
    check(&host, &ctr, "c2", &z, &res).assert_success();
    del(&host, Some(ctr.path_str()), "c2", &with_prev(&z, &res));
    assert_eq!(mac("br-zero"), pinned, "no port left, still pinned");

    // A bridge that never had a port (the kernel's random MAC, up): it gets
    // the stable MAC too, and comes up (operstate) once our port is on it.
    // Kernel quirk: pinning its own MAC would leave its bridge id unset, and
    // its operstate UNKNOWN for good.
    h.ip(&["link", "add", "br-new", "type", "bridge"]);
    h.ip(&["link", "set", "br-new", "up"]);
    let random = mac("br-new");
    let n = plain("newnet", "br-new", "10.99.0.0/24");
    let res = add(&host, &ctr, "c3", &n);
    let pinned = mac("br-new");
    assert!(pinned != random && pinned.starts_with("02:"), "{pinned}");
    assert_eq!(res["interfaces"][0]["mac"], pinned.as_str());
    let operstate = || h.exec_ok("cat", &["/sys/class/net/br-new/operstate"]);
    // Linkwatch runs the bridge's (non-urgent) events within a second.
    let up = (0..30).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        operstate().trim() == "up"
    });
    assert!(up, "br-new operstate {}", operstate().trim());
    del(&host, Some(ctr.path_str()), "c3", &with_prev(&n, &res));
}

/// Starts ADD of `conf` for `cid` in the background (`path`: its `PATH`
/// and `CNI_PATH`), kills it once the slow child it runs has written
/// `flags/started`, and checks that the child never gets to `flags/ran`.
fn kill_add_and_check_its_child_dies(
    host: &Host,
    conf: &Value,
    cid: &str,
    path: (&str, &str),
    flags: &Path,
    what: &str,
) {
    let file = host.write_file(&format!("{cid}.json"), &conf.to_string());
    let ctr = host.container(cid);
    let cmd = format!("exec {} < {}", ours().display(), file.display());
    let bg = host.spawn(
        Path::new("/bin/sh"),
        &["-c", &cmd],
        &[
            ("PATH", path.0),
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", ctr.path_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.1),
        ],
    );
    wait_until(&format!("the ADD started {what}"), || {
        flags.join("started").exists()
    });
    let killed = std::process::Command::new("kill")
        .args(["-9", &bg.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !flags.join("ran").exists(),
        "the {what} of the killed ADD ran on"
    );
    drop(bg);
}

/// A script that marks `flags/started`, sleeps 2 s, marks `flags/ran`,
/// then runs `then`.
fn slow_script(flags: &Path, then: &str) -> String {
    std::fs::create_dir_all(flags).unwrap();
    format!(
        "#!/bin/sh\n: > {f}/started\nsleep 2\n: > {f}/ran\nexec {then}\n",
        f = flags.display()
    )
}

/// The `nft` an ADD starts dies with it: a runtime that kills a slow ADD
/// (its timeout) and DELs the attachment gets no rules committed behind
/// its back.
#[test]
fn the_nft_of_a_killed_add_dies_with_it() {
    let host = setup("life-pdeath");
    let flags = host.dir().join("pd");
    write_script(
        &host,
        "slow-nft/nft",
        &slow_script(&flags, "/usr/sbin/nft \"$@\""),
    );
    let path = format!("{}:{DEFAULT_PATH}", host.dir().join("slow-nft").display());
    let conf = full(&host, "1.0.0");
    kill_add_and_check_its_child_dies(&host, &conf, "pd", (&path, REFERENCE_DIR), &flags, "nft");
}

/// The same for a delegated IPAM plugin: a killed ADD's delegate must not
/// allocate after the runtime's DEL (the lease would leak for good).
#[test]
fn the_ipam_delegate_of_a_killed_add_dies_with_it() {
    let host = setup("life-pdeath-ipam");
    let flags = host.dir().join("pdi");
    let then = format!("{REFERENCE_DIR}/host-local");
    write_script(&host, "slow-ipam/slow-ipam", &slow_script(&flags, &then));
    let mut conf = full(&host, "1.0.0");
    conf["ipam"]["type"] = json!("slow-ipam");
    let cni_path = format!("{}:{REFERENCE_DIR}", host.dir().join("slow-ipam").display());
    let path = (DEFAULT_PATH, cni_path.as_str());
    kill_add_and_check_its_child_dies(&host, &conf, "pdi", path, &flags, "IPAM delegate");
}

#[test]
fn del_with_the_veth_already_deleted() {
    let host = setup("life-del-noveth");
    let c = full(&host, "1.0.0");
    for (i, prev) in [true, false].into_iter().enumerate() {
        let cid = format!("noveth{i}");
        let ctr = host.container(&cid);
        let res = add(&host, &ctr, &cid, &c);
        host.netns().ip(&["link", "del", &host_veth(&res)]);
        assert_eq!(ctr.link_names(), ["lo"], "deleting one end deletes both");
        let conf = if prev { with_prev(&c, &res) } else { c.clone() };
        del(&host, Some(ctr.path_str()), &cid, &conf);
        assert_attachment_gone(&host, &cid, &res);
        del(&host, Some(ctr.path_str()), &cid, &conf);
    }
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
}

#[test]
fn del_without_prev_result_finds_everything_from_the_container() {
    let (host, c, ctr, res) = one_attached("life-del-noprev", "np");
    del(&host, Some(ctr.path_str()), "np", &c);
    assert_attachment_gone(&host, "np", &res);
    assert_eq!(ctr.link_names(), ["lo"]);
}

#[test]
fn del_with_a_prev_result_that_is_not_an_object_still_releases_everything() {
    // ADD and CHECK refuse it (code 6); DEL must not: the reference's
    // DEL fails on it and leaks the lease.
    let (host, c, ctr, res) = one_attached("life-del-badprev", "bp");
    let bad = merge(c.clone(), json!({"prevResult": "10.0.0.2/24"}));
    del(&host, Some(ctr.path_str()), "bp", &bad);
    assert_attachment_gone(&host, "bp", &res);
    assert_eq!(ctr.link_names(), ["lo"]);
}

#[test]
fn del_under_a_config_that_add_refuses_releases_everything() {
    // vlanTrunk is refused by ADD on this kernel (and an entry with an
    // extra key is accepted by the reference's decoder); a bad MTU, too.
    let (host, c, ctr, res) = one_attached("life-del-oddconf", "oc");
    let odd = merge(
        c.clone(),
        // Keys the reference v1.1.1 does not read, with values ours cannot
        // decode: a DEL ignores them.
        json!({"vlanTrunk": [{"id": "5", "comment": "x"}, {"minId": 1}], "mtu": 10,
               "portIsolation": "true", "preserveDefaultVlan": "no",
               "ipMasq": "true", "macspoofchk": "yes",
               "disableContainerInterface": 1, "ipMasqBackend": 5}),
    );
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "oc2",
        Some(ctr.path_str()),
        &odd,
        &[],
    );
    assert_ne!(out.assert_cni_error(7)["msg"], "", "{out}");
    del(&host, Some(ctr.path_str()), "oc", &odd);
    assert_attachment_gone(&host, "oc", &res);
    assert_eq!(ctr.link_names(), ["lo"]);
}

/// On a host without `nft`, a DEL whose config has an `ipMasq` that does
/// not decode (taken as true for the cleanup) succeeds: none of our tables
/// can exist without `nft`, which creates them.
#[test]
fn del_without_nft_of_a_config_add_refused_succeeds() {
    let host = setup("life-del-nonft");
    let ctr = host.container("c");
    let odd = merge(
        full(&host, "1.0.0"),
        json!({"ipMasq": "true", "macspoofchk": "yes"}),
    );
    let out = cni(&host, &ours(), "ADD", "nn", Some(ctr.path_str()), &odd, &[]);
    out.assert_cni_error(7);
    let script = r#"set -e; mount --bind /dev/null /usr/sbin/nft; exec "$1""#;
    let plugin = ours();
    let out = host.run(
        Path::new("/bin/sh"),
        &["-c", script, "sh", plugin.to_str().unwrap()],
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "nn"),
            ("CNI_NETNS", ctr.path_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", REFERENCE_DIR),
        ],
        &odd.to_string(),
    );
    out.assert_success();
}

/// A read-only `/run/nuage` (the lock files) fails neither ADD nor DEL,
/// as it fails neither of the reference's: the lock files are opened
/// read-only when they exist; when they cannot be had at all, the
/// operation goes ahead unlocked, with a warning, and DEL still removes
/// the nftables elements.
#[test]
fn a_read_only_run_nuage_fails_neither_add_nor_del() {
    let host = setup("life-rorun");
    let c = full(&host, "1.0.0");
    // The existing files, read-only; then nothing there, and nothing can
    // be created (ADD too).
    for (cid, empty) in [("rb", false), ("rt", true)] {
        let ctr = host.container(cid);
        let ro = cni::with_read_only_run_nuage(&host, &ours(), empty);
        let res = if empty {
            let out = cni(&host, &ro, "ADD", cid, Some(ctr.path_str()), &c, &[]);
            out.assert_success();
            assert!(out.stderr.contains("without it"), "{out}");
            let res = out.expect_json().clone();
            assert_attachment_present(&host, cid, &res);
            res
        } else {
            add(&host, &ctr, cid, &c)
        };
        let prev = with_prev(&c, &res);
        cni(&host, &ro, "DEL", cid, Some(ctr.path_str()), &prev, &[]).assert_success();
        assert_attachment_gone(&host, cid, &res);
        assert_eq!(ctr.link_names(), ["lo"]);
    }
}

/// DEL collects errors instead of stopping at the first: with a CNI_NETNS
/// that is not a network namespace it fails (code 8, as the reference),
/// yet the host-side cleanup, which needs no netns, is done: the lease
/// and the nftables elements go.
#[test]
fn del_that_cannot_enter_the_netns_still_cleans_the_host_side() {
    let (host, c, ctr, res) = one_attached("life-del-collect", "dc");
    let c = with_prev(&c, &res);
    // Not empty: an empty file is what an unmounted netns leaves, taken as
    // a netns gone (host-side cleanup only, success).
    let not_ns = host.write_file("not-a-netns", "not a netns");
    let out = cni(
        &host,
        &ours(),
        "DEL",
        "dc",
        Some(not_ns.to_str().unwrap()),
        &c,
        &[],
    );
    let msg = err(&out, 8);
    assert!(msg.contains("not-a-netns"), "{msg}");
    let ip = ip_of(&res, 0);
    assert!(!leases(&host, NET).contains(&ip), "lease {ip} left");
    assert!(
        nft_elements_with(&host, "/dc/").is_empty(),
        "{:?}",
        nft_elements(&host)
    );
    // The right netns then: the veth goes too.
    del(&host, Some(ctr.path_str()), "dc", &c);
    assert_attachment_gone(&host, "dc", &res);
    assert_eq!(ctr.link_names(), ["lo"]);
}

#[test]
fn del_with_the_hosts_own_netns_touches_nothing_there() {
    // A late DEL whose netns path now names the plugin's own namespace (a
    // recycled path) must not delete the host's interface of that name.
    let host = setup("life-del-ownns");
    host.netns().ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    let c = full(&host, "1.0.0");
    let ctr = host.container("c");
    let res = add(&host, &ctr, "own", &c);
    // Not the attachment's namespace: the host's interface stays, the
    // attachment's host-side state (lease, elements) goes.
    del(
        &host,
        Some(host.path().to_str().unwrap()),
        "own",
        &with_prev(&c, &res),
    );
    assert!(
        host.netns().link("eth0").is_some(),
        "the host's eth0 was deleted"
    );
    assert!(!leases(&host, NET).contains(&ip_of(&res, 0)));
    assert!(
        nft_elements_with(&host, "/own/").is_empty(),
        "{:?}",
        nft_elements(&host)
    );
}

/// Network `l2net` on bridge `br-l2`, without IPAM (L2 mode), with `extra`.
fn l2_net(host: &Host, extra: Value) -> Value {
    net(host, "1.0.0", "l2net", "br-l2", None, extra)
}

#[test]
fn del_of_an_l2_attachment_and_of_one_never_added() {
    let host = setup("life-del-l2");
    let l2 = l2_net(&host, json!({"macspoofchk": true}));
    let ctr = host.container("c");
    let res = add(&host, &ctr, "l2", &l2);
    assert!(res.get("ips").is_none(), "{res}");
    assert_eq!(nft_elements_with(&host, &host_veth(&res)).len(), 2);
    del(&host, Some(ctr.path_str()), "l2", &l2);
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
    assert_eq!(ctr.link_names(), ["lo"]);
    // Never added: fine (the bridge need not even exist).
    let c = full(&host, "1.0.0");
    del(&host, Some(ctr.path_str()), "never", &c);
    del(&host, None, "never", &c);
}

/// `disableContainerInterface` (L2 only): the container end stays down,
/// while the host end comes up as for any ADD (created down, brought up
/// after its IPv6 sysctls): up, a port of the bridge, IPv6 off,
/// `accept_ra=0`. DEL removes the pair.
#[test]
fn disable_container_interface_leaves_only_the_container_end_down() {
    let host = setup("life-dci");
    let l2 = l2_net(&host, json!({"disableContainerInterface": true}));
    let ctr = host.container("c");
    let res = add(&host, &ctr, "dci", &l2);
    let eth0 = ctr.link("eth0").expect("container end");
    assert!(!has_flag(&eth0, "UP"), "{eth0}");
    let veth = host_veth(&res);
    let hv = host_link(&host, &veth);
    assert!(has_flag(&hv, "UP"), "{hv}");
    assert_eq!(ports_of(&host, "br-l2"), [veth.as_str()]);
    let sys = |k: &str| host.sysctl(host.netns(), &format!("net/ipv6/conf/{veth}/{k}"));
    assert_eq!(
        (sys("disable_ipv6"), sys("accept_ra")),
        ("1".into(), "0".into())
    );
    del(&host, Some(ctr.path_str()), "dci", &l2);
    assert_eq!(ctr.link_names(), ["lo"]);
    assert!(host.netns().link(&veth).is_none());
}

/// Puts an `nft` wrapper first in `PATH` that logs each invocation (its
/// arguments and its stdin, one line) to `<host dir>/nft.log`, then runs the
/// real nft; returns the `PATH` to pass and the log's path.
fn nft_logger(host: &Host) -> (String, std::path::PathBuf) {
    let log = host.dir().join("nft.log");
    write_script(
        host,
        "nft-wrap/nft",
        &format!(
            "#!/bin/sh\n\
             in=$(cat)\n\
             printf '%s\\t%s\\n' \"$*\" \"$in\" >> {log}\n\
             printf '%s' \"$in\" | exec /usr/sbin/nft \"$@\"\n",
            log = log.display()
        ),
    );
    let path = format!("{}:{DEFAULT_PATH}", host.dir().join("nft-wrap").display());
    (path, log)
}

/// The lines of the nft log from line `from` on.
fn nft_log(log: &Path, from: usize) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .skip(from)
        .map(str::to_string)
        .collect()
}

#[test]
fn add_and_del_of_a_container_run_no_nft_once_the_network_exists() {
    // The per-container work is a few set elements, sent to nf_tables over
    // netlink: only the first ADD of a network (tables, maps, chains) runs
    // nft. The elements are those of this attachment, and DEL removes them.
    let host = setup("life-nftlog");
    let c = net(
        &host,
        "1.0.0",
        NET,
        BR,
        None,
        json!({
            "isGateway": true, "ipMasq": true, "macspoofchk": true,
            "ipam": {"type": "host-local", "dataDir": data_dir(&host),
                     "ranges": ranges(&["10.90.0.0/24", "fd00:90::/64"])},
        }),
    );
    let (path, log) = nft_logger(&host);
    let env = [("PATH", path.as_str())];
    let first = host.container("first");
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "first",
        Some(first.path_str()),
        &c,
        &env,
    );
    out.assert_success();
    assert!(
        !nft_log(&log, 0).is_empty(),
        "the first ADD sets up the tables"
    );

    let ctr = host.container("c");
    let mark = nft_log(&log, 0).len();
    let out = cni(&host, &ours(), "ADD", "c", Some(ctr.path_str()), &c, &env);
    out.assert_success();
    let res = out.expect_json().clone();
    assert_eq!(nft_log(&log, mark), Vec::<String>::new());
    let elems = nft_elements(&host);
    let n = res["ips"].as_array().map_or(0, Vec::len);
    let ips: Vec<String> = (0..n).map(|i| ip_of(&res, i)).collect();
    for ip in &ips {
        assert!(
            elems
                .iter()
                .any(|e| e.contains(ip.as_str()) && e.contains("/c/eth0")),
            "no masquerade element of {ip} for c/eth0: {elems:#?}"
        );
    }

    // DEL without prevResult, the netns present (addresses read from the
    // container, which also has an IPv6 link-local address).
    assert!(ctr.addr_cidrs("eth0").iter().any(|a| a.starts_with("fe80")));
    let mark = nft_log(&log, 0).len();
    let out = cni(&host, &ours(), "DEL", "c", Some(ctr.path_str()), &c, &env);
    out.assert_success();
    assert_attachment_gone(&host, "c", &res);
    assert_eq!(nft_log(&log, mark), Vec::<String>::new());
    assert!(
        nft_elements(&host).iter().all(|e| !e.contains("/c/eth0")),
        "{:#?}",
        nft_elements(&host)
    );
}

#[test]
fn del_with_the_netns_present_does_not_list_the_spoof_check_table() {
    // The container's MAC is known (its interface is there, and in
    // prevResult): deleting its spoof-check pair needs no listing of every
    // element of `bridge nuage`, which costs more with each container.
    let host = setup("life-nftlist");
    let c = full(&host, "1.0.0");
    let (path, log) = nft_logger(&host);
    let env = [("PATH", path.as_str())];
    let ctr = host.container("c");
    let out = cni(&host, &ours(), "ADD", "c", Some(ctr.path_str()), &c, &env);
    out.assert_success();
    let mut res = out.expect_json().clone();
    for with_prev_result in [false, true] {
        let conf = if with_prev_result {
            with_prev(&c, &res)
        } else {
            c.clone()
        };
        let mark = nft_log(&log, 0).len();
        let out = cni(
            &host,
            &ours(),
            "DEL",
            "c",
            Some(ctr.path_str()),
            &conf,
            &env,
        );
        out.assert_success();
        assert_attachment_gone(&host, "c", &res);
        // A repeated DEL (runtimes send them) with prevResult finds
        // nothing: no listing either. (Without it, and the container's
        // interface gone, only a listing can find what might be left.)
        if with_prev_result {
            let out = cni(
                &host,
                &ours(),
                "DEL",
                "c",
                Some(ctr.path_str()),
                &conf,
                &env,
            );
            out.assert_success();
        }
        let del_log = nft_log(&log, mark);
        assert!(
            del_log.iter().all(|l| !l.starts_with("-j list")),
            "DEL listed a whole table: {del_log:#?}"
        );
        // Again, for the second round (with prevResult).
        let out = cni(&host, &ours(), "ADD", "c", Some(ctr.path_str()), &c, &[]);
        res = out.assert_success().expect_json().clone();
    }
}

// ---------------------------------------------------------------------------
// CHECK
// ---------------------------------------------------------------------------

/// CHECK with `res` as prevResult.
fn check(host: &Host, ctr: &Netns, cid: &str, conf: &Value, res: &Value) -> PluginOutput {
    cni(
        host,
        &ours(),
        "CHECK",
        cid,
        Some(ctr.path_str()),
        &with_prev(conf, res),
        &[],
    )
}

#[test]
fn check_passes_after_add_and_names_what_was_damaged() {
    let host = setup("life-check");
    let c = full(&host, "1.0.0");
    let fresh = |cid: &str| {
        let ctr = host.container(cid);
        let res = add(&host, &ctr, cid, &c);
        let out = check(&host, &ctr, cid, &c, &res);
        out.assert_success();
        assert_eq!(out.stdout, "", "{out}");
        (ctr, res)
    };

    // The container address removed.
    let (ctr, res) = fresh("addr");
    let addr = res["ips"][0]["address"].as_str().unwrap().to_string();
    ctr.ip(&["addr", "del", &addr, "dev", "eth0"]);
    let e = err(&check(&host, &ctr, "addr", &c, &res), 999);
    assert!(e.contains(&addr) && e.contains("missing"), "{e}");

    // The masquerade element removed.
    let (ctr, res) = fresh("masq");
    let ip = ip_of(&res, 0);
    nft_cmd(
        &host,
        &format!("delete element inet nuage masq4 {{ {ip} }}"),
    );
    let e = err(&check(&host, &ctr, "masq", &c, &res), 999);
    assert!(e.contains(&ip) && e.contains("masq4"), "{e}");

    // The spoof-check port element removed.
    let (ctr, res) = fresh("spoof");
    let veth = host_veth(&res);
    nft_cmd(
        &host,
        &format!("delete element bridge nuage spoof_ports {{ \"{veth}\" }}"),
    );
    let e = err(&check(&host, &ctr, "spoof", &c, &res), 999);
    assert!(e.contains(&veth) && e.contains("spoof_ports"), "{e}");

    // The container MAC changed.
    let (ctr, res) = fresh("mac");
    ctr.ip(&["link", "set", "eth0", "address", "02:00:00:00:be:ef"]);
    let e = err(&check(&host, &ctr, "mac", &c, &res), 999);
    assert!(e.contains("MAC") && e.contains("eth0"), "{e}");

    // The host veth taken off the bridge.
    let (ctr, res) = fresh("nomaster");
    let veth = host_veth(&res);
    host.netns().ip(&["link", "set", &veth, "nomaster"]);
    let e = err(&check(&host, &ctr, "nomaster", &c, &res), 999);
    assert!(e.contains(&veth) && e.contains(BR), "{e}");
    host.netns().ip(&["link", "set", &veth, "master", BR]);
    check(&host, &ctr, "nomaster", &c, &res).assert_success();

    // The bridge made promiscuous although the config says no.
    host.netns().ip(&["link", "set", BR, "promisc", "on"]);
    let e = err(&check(&host, &ctr, "nomaster", &c, &res), 999);
    assert!(e.contains("promisc"), "{e}");
    host.netns().ip(&["link", "set", BR, "promisc", "off"]);

    // The host veth renamed, or given another MAC: as the reference, the
    // host end the result records must be there, with its MAC.
    let (ctr, res) = fresh("hostmac");
    let veth = host_veth(&res);
    host.netns()
        .ip(&["link", "set", &veth, "address", "02:00:00:00:00:77"]);
    let e = err(&check(&host, &ctr, "hostmac", &c, &res), 999);
    assert!(e.contains(&veth) && e.contains("MAC"), "{e}");
    let (ctr, res) = fresh("hostname");
    let veth = host_veth(&res);
    let h = host.netns();
    h.ip(&["link", "set", &veth, "down"]);
    h.ip(&["link", "set", &veth, "name", "renamed0"]);
    h.ip(&["link", "set", "renamed0", "up"]);
    let e = err(&check(&host, &ctr, "hostname", &c, &res), 999);
    assert!(e.contains(&veth) && e.contains("not found"), "{e}");
    // As the reference, host interfaces recorded before the host end must
    // exist, those after it are not looked at.
    let (ctr, res) = fresh("hostorder");
    let gone = json!({"name": "gone0", "mac": "02:00:00:00:00:99"});
    let mut after = res.clone();
    after["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(gone.clone());
    check(&host, &ctr, "hostorder", &c, &after).assert_success();
    let mut before = res.clone();
    before["interfaces"].as_array_mut().unwrap().insert(1, gone);
    let e = err(&check(&host, &ctr, "hostorder", &c, &before), 999);
    assert!(e.contains("gone0") && e.contains("not found"), "{e}");

    // The default route removed (a network with isDefaultGateway).
    let dg = net(
        &host,
        "1.0.0",
        "dgnet",
        "br-dg",
        Some("10.97.0.0/24"),
        json!({"isDefaultGateway": true}),
    );
    let dctr = host.container("dg");
    let dres = add(&host, &dctr, "dg", &dg);
    check(&host, &dctr, "dg", &dg, &dres).assert_success();
    dctr.ip(&["route", "del", "default"]);
    let e = err(&check(&host, &dctr, "dg", &dg, &dres), 999);
    assert!(e.contains("0.0.0.0/0") && e.contains("10.97.0.1"), "{e}");

    // No prevResult.
    let (ctr, _) = fresh("noprev");
    let out = cni(
        &host,
        &ours(),
        "CHECK",
        "noprev",
        Some(ctr.path_str()),
        &c,
        &[],
    );
    assert_eq!(err(&out, 999), "Required prevResult missing");

    // The bridge deleted (every attachment above is on it).
    let (ctr, res) = fresh("bridge");
    host.netns().ip(&["link", "del", BR]);
    let e = err(&check(&host, &ctr, "bridge", &c, &res), 999);
    assert!(e.contains(BR) && e.contains("not found"), "{e}");

    // Our masquerade base chain flushed by someone: every masqueraded
    // attachment's CHECK says so. Last, because a later ADD of a new
    // container does not rewrite the chain (only a network's first ADD or a
    // repeated one runs the full transaction; see core/src/nft/masq.rs).
    let (ctr, res) = fresh("flushed");
    nft_cmd(&host, "flush chain inet nuage postrouting");
    let e = err(&check(&host, &ctr, "flushed", &c, &res), 999);
    assert!(e.contains("postrouting"), "{e}");
}

/// `nft -f` of one command in the host.
#[track_caller]
fn nft_cmd(host: &Host, cmd: &str) {
    let file = host.write_file("cmd.nft", &format!("{cmd}\n"));
    host.netns().exec_ok("nft", &["-f", file.to_str().unwrap()]);
}

/// ADD, CHECK, DEL and GC change no table but ours: an administrator's
/// `inet` table with a nat chain and an iptables-nft `ip nat` table are
/// the same, rule for rule, after them.
#[test]
fn foreign_nftables_tables_are_left_alone() {
    let host = setup("life-foreign");
    nft_cmd(
        &host,
        "table inet admin {\n\
         chain post {\n\
         type nat hook postrouting priority srcnat; policy accept;\n\
         ip saddr 10.0.0.0/8 oifname \"eth9\" counter masquerade\n\
         }\n\
         }\n\
         table ip nat {\n\
         chain POSTROUTING {\n\
         type nat hook postrouting priority srcnat; policy accept;\n\
         ip saddr 10.95.0.0/24 counter return\n\
         }\n\
         }",
    );
    let foreign = || {
        ["inet admin", "ip nat"].map(|t| {
            let mut args = vec!["list", "table"];
            args.extend(t.split(' '));
            host.netns().exec_ok("nft", &args)
        })
    };
    let before = foreign();
    let mut c = full(&host, "1.1.0");
    let ctr = host.container("c");
    let res = add(&host, &ctr, "fa", &c);
    check(&host, &ctr, "fa", &c, &res).assert_success();
    assert_eq!(foreign(), before, "after ADD and CHECK");
    c["cni.dev/valid-attachments"] = json!([]);
    let out = host.run_plugin(
        &ours(),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", REFERENCE_DIR)],
        &c.to_string(),
    );
    out.assert_success();
    del(&host, Some(ctr.path_str()), "fa", &with_prev(&c, &res));
    assert_attachment_gone(&host, "fa", &res);
    assert_eq!(foreign(), before, "after GC and DEL");
}

// ---------------------------------------------------------------------------
// GC and STATUS (1.1.0)
// ---------------------------------------------------------------------------

/// B (result `rb`, container `cb`) has the address A had, with its own
/// masquerade element, and passes CHECK.
#[track_caller]
fn assert_b_took_over(host: &Host, c: &Value, (ra, rb): (&Value, &Value), cb: &Netns) {
    assert_eq!(ip_of(rb, 0), ip_of(ra, 0));
    assert_eq!(
        nft_elements_with(host, "/b/").len(),
        1,
        "B's masquerade element: {:?}",
        nft_elements(host)
    );
    check(host, cb, "b", c, rb).assert_success();
}

/// The stage of a race between a GC or a DEL held in mid-step by a slow
/// `nft` ([`slow_nft`]) and an ADD of the address it frees: a 1.1.0
/// network with `ipMasq` whose range is one address, container A attached
/// (`ra`), container B not yet, and the config of a GC that keeps B only.
struct Race {
    host: Host,
    c: Value,
    flag: std::path::PathBuf,
    slow_path: String,
    ca: Netns,
    cb: Netns,
    ra: Value,
    gc_conf: Value,
}

impl Race {
    fn new(tag: &str, ip: &str, slow_arg: &str, slow_before: bool) -> Race {
        let host = setup(tag);
        let mut c = full(&host, "1.1.0");
        c.as_object_mut().unwrap().remove("macspoofchk");
        c["ipam"]["rangeStart"] = json!(ip);
        c["ipam"]["rangeEnd"] = json!(ip);
        let (flag, slow_path) = slow_nft(&host, slow_arg, slow_before);
        let (ca, cb) = (host.container("a"), host.container("b"));
        let ra = add(&host, &ca, "a", &c);
        let mut gc_conf = c.clone();
        gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
        Race {
            host,
            c,
            flag,
            slow_path,
            ca,
            cb,
            ra,
            gc_conf,
        }
    }
}

/// A `PATH` whose `nft` waits 1 s in the runs that have the argument
/// `arg`, before running the real one (`before`) or after it; returns the
/// flag file it creates when it starts waiting, and the `PATH`.
fn slow_nft(host: &Host, arg: &str, before: bool) -> (std::path::PathBuf, String) {
    let flag = host.dir().join(format!("slow-nft{arg}.flag"));
    let wait = format!(
        "case \" $* \" in *\" {arg} \"*) : > {}; sleep 1;; esac",
        flag.display()
    );
    let body = if before {
        format!("#!/bin/sh\n{wait}\nexec /usr/sbin/nft \"$@\"\n")
    } else {
        format!("#!/bin/sh\n/usr/sbin/nft \"$@\"; rc=$?\n{wait}\nexit $rc\n")
    };
    let dir = format!("slow-nft{arg}");
    write_script(host, &format!("{dir}/nft"), &body);
    let path = format!("{}:{DEFAULT_PATH}", host.dir().join(dir).display());
    (flag, path)
}

/// GC lists our tables, then deletes the elements of attachments that are
/// not valid, by key. In between, a DEL frees an address and an ADD of a
/// valid attachment gets it and adds its element under the same key: GC
/// must not delete that one. A slow `nft` (its `-f` run, GC's deletion,
/// waits 1 s) holds GC between its listing and its deletion.
#[test]
fn gc_never_deletes_the_element_of_an_address_given_again_meanwhile() {
    // GC's deletion is its `nft -f` run.
    let r = Race::new("life-gc-race", "10.90.0.5", "-f", true);
    let host = &r.host;
    let rb = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            host.run_plugin(
                &ours(),
                &[
                    ("CNI_COMMAND", "GC"),
                    ("CNI_PATH", REFERENCE_DIR),
                    ("PATH", &r.slow_path),
                ],
                &r.gc_conf.to_string(),
            )
        });
        wait_until("GC between its listing and its deletion", || {
            r.flag.exists()
        });
        del(host, Some(r.ca.path_str()), "a", &with_prev(&r.c, &r.ra));
        let rb = add(host, &r.cb, "b", &r.c);
        gc.join().expect("GC thread").assert_success();
        rb
    });
    assert_b_took_over(host, &r.c, (&r.ra, &rb), &r.cb);
}

/// A DEL that knows no address (netns gone, no prevResult) finds its
/// elements in a listing of the table, then deletes them. A GC in between
/// could free the address and an ADD take it: the DEL must not then
/// delete the new holder's element. A slow `nft` holds the DEL after its
/// listing.
#[test]
fn del_by_listing_never_deletes_the_element_of_the_next_holder() {
    // After the DEL's listing (`nft -j list table`).
    let r = Race::new("life-del-list-race", "10.90.0.6", "list", false);
    let (host, c, flag, slow_path) = (&r.host, &r.c, &r.flag, &r.slow_path);
    let (cb, ra, gc_conf) = (&r.cb, &r.ra, &r.gc_conf);
    let gone = host.dir().join("netns-gone");
    let rb = std::thread::scope(|s| {
        let del_a = s.spawn(|| {
            cni(
                host,
                &ours(),
                "DEL",
                "a",
                Some(gone.to_str().unwrap()),
                c,
                &[("PATH", slow_path)],
            )
        });
        wait_until("DEL A between its listing and its deletion", || {
            flag.exists()
        });
        let gc = host.run_plugin(
            &ours(),
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", REFERENCE_DIR)],
            &gc_conf.to_string(),
        );
        gc.assert_success();
        let rb = add(host, cb, "b", c);
        del_a.join().expect("DEL thread").assert_success();
        rb
    });
    assert_b_took_over(host, c, (ra, &rb), cb);
}

#[test]
fn gc_releases_unlisted_attachments_and_keeps_listed_ones() {
    let host = setup("life-gc");
    let c = full(&host, "1.1.0");
    let ctrs: Vec<Netns> = (0..3).map(|i| host.container(&format!("gc{i}"))).collect();
    let res: Vec<Value> = ctrs
        .iter()
        .enumerate()
        .map(|(i, ctr)| add(&host, ctr, &format!("gc{i}"), &c))
        .collect();
    // An attachment of another network on the same host must be untouched.
    let other = net(
        &host,
        "1.1.0",
        "othernet",
        "br-other",
        Some("10.95.0.0/24"),
        json!({"ipMasq": true, "macspoofchk": true}),
    );
    let octr = host.container("other");
    let ores = add(&host, &octr, "gc1", &other);
    let other_elems = nft_elements_with(&host, "othernet/");
    assert_eq!(other_elems.len(), 3, "{:?}", nft_elements(&host));

    let gc = |valid: Value| {
        let mut conf = c.clone();
        conf["cni.dev/valid-attachments"] = valid;
        let out = host.run_plugin(
            &ours(),
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", REFERENCE_DIR)],
            &conf.to_string(),
        );
        out.assert_success();
        assert_eq!(out.stdout, "", "{out}");
    };
    gc(json!([
        {"containerID": "gc0", "ifname": "eth0"},
        {"containerID": "gc2", "ifname": "eth0"},
        // Same container, another interface: not gc1/eth0.
        {"containerID": "gc1", "ifname": "eth1"},
    ]));
    assert_attachment_present(&host, "gc0", &res[0]);
    assert_attachment_present(&host, "gc2", &res[2]);
    let ip1 = ip_of(&res[1], 0);
    assert!(
        !leases(&host, NET).contains(&ip1),
        "{:?}",
        leases(&host, NET)
    );
    assert!(nft_elements_with(&host, &format!("{NET}/gc1/")).is_empty());
    assert!(nft_elements_with(&host, &format!("\"{ip1}\"")).is_empty());
    assert_eq!(nft_elements_with(&host, "othernet/"), other_elems);
    assert_eq!(leases(&host, "othernet"), [ip_of(&ores, 0)]);

    // An empty list releases everything of this network, and only it; so
    // does null (libcni's encoding of a runtime's empty list).
    let g3 = host.container("gc3");
    let r3 = add(&host, &g3, "gc3", &c);
    assert_attachment_present(&host, "gc3", &r3);
    gc(Value::Null);
    assert!(!leases(&host, NET).contains(&ip_of(&r3, 0)));
    assert!(nft_elements_with(&host, &format!("{NET}/gc3/")).is_empty());
    gc(json!([]));
    assert!(leases(&host, NET).is_empty());
    assert!(nft_elements_with(&host, &format!("{NET}/")).is_empty());
    assert_eq!(nft_elements_with(&host, "othernet/"), other_elems);

    // GC before 1.1.0 is refused.
    let mut old = full(&host, "1.0.0");
    old["cni.dev/valid-attachments"] = json!([]);
    let out = host.run_plugin(
        &ours(),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", REFERENCE_DIR)],
        &old.to_string(),
    );
    err(&out, 1);
}

fn status(host: &Host, conf: &Value) -> PluginOutput {
    host.run_plugin(
        &ours(),
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", REFERENCE_DIR)],
        &conf.to_string(),
    )
}

#[test]
fn status_is_ok_and_code_50_when_the_store_cannot_be_written() {
    let host = setup("life-status");
    let c = full(&host, "1.1.0");
    let out = status(&host, &c);
    out.assert_success();
    assert_eq!(out.stdout, "");
    let l2 = net(&host, "1.1.0", "l2", "br-l2", None, json!({}));
    status(&host, &l2).assert_success();

    // The data dir under a regular file.
    let file = host.write_file("not-a-dir", "x");
    let mut bad = c.clone();
    bad["ipam"]["dataDir"] = json!(file.join("leases"));
    let e = err(&status(&host, &bad), 50);
    assert!(e.contains("not-a-dir"), "{e}");

    // The data dir on a read-only bind mount (made inside the plugin's own
    // mount namespace by a wrapper shell, so nothing leaks).
    let ro = host.dir().join("ro");
    std::fs::create_dir_all(ro.join("leases")).unwrap();
    let mut conf = c.clone();
    conf["ipam"]["dataDir"] = json!(ro.join("leases"));
    let script = r#"set -e; mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; exec "$2""#;
    let plugin = ours();
    let out = host.run(
        Path::new("/bin/sh"),
        &[
            "-c",
            script,
            "sh",
            ro.to_str().unwrap(),
            plugin.to_str().unwrap(),
        ],
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", REFERENCE_DIR)],
        &conf.to_string(),
    );
    let e = err(&out, 50);
    assert!(e.contains("read-only"), "{e}");
    // The same, writable: fine (so the wrapper is not what fails).
    let out = host.run(
        Path::new("/bin/sh"),
        &["-c", r#"exec "$1""#, "sh", plugin.to_str().unwrap()],
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", REFERENCE_DIR)],
        &conf.to_string(),
    );
    out.assert_success();

    // The bridge name taken by another kind of link: ADD would fail.
    host.netns()
        .ip(&["link", "add", "taken0", "type", "veth", "peer", "taken1"]);
    let mut taken = c.clone();
    taken["bridge"] = json!("taken0");
    let e = err(&status(&host, &taken), 50);
    assert!(
        e.contains("\"taken0\" already exists but is not a bridge"),
        "{e}"
    );

    // What ADD would refuse: a bad config, VLANs without VLAN filtering.
    for extra in [
        json!({"hairpinMode": true, "promiscMode": true}),
        json!({"vlan": 5}),
    ] {
        err(&status(&host, &merge(c.clone(), extra)), 50);
    }

    // STATUS before 1.1.0 is refused.
    err(&status(&host, &full(&host, "1.0.0")), 1);
}

// ---------------------------------------------------------------------------
// Rollback of a failing ADD
// ---------------------------------------------------------------------------

/// ADD of `cid` in `ctr` must fail with `code` and leave the host and the
/// container exactly as they were; returns the message.
#[track_caller]
fn add_fails_cleanly(host: &Host, ctr: &Netns, cid: &str, conf: &Value, code: u64) -> String {
    add_fails_cleanly_with(host, ctr, cid, conf, code, &[])
}

/// [`add_fails_cleanly`] with `extra` environment variables.
fn add_fails_cleanly_with(
    host: &Host,
    ctr: &Netns,
    cid: &str,
    conf: &Value,
    code: u64,
    extra: &[(&str, &str)],
) -> String {
    let network = conf["name"].as_str().unwrap_or("");
    let before = Snapshot::take(host, network, ctr);
    let mtus = link_mtus(host);
    let out = cni(host, &ours(), "ADD", cid, Some(ctr.path_str()), conf, extra);
    let msg = err(&out, code);
    before.assert_unchanged(host, network, ctr, &format!("ADD {cid} ({msg})"));
    assert_eq!(link_mtus(host), mtus, "ADD {cid}: link MTUs changed");
    msg
}

/// "name mtu master" of every host link.
fn link_mtus(host: &Host) -> Vec<String> {
    let mut v: Vec<String> = host
        .netns()
        .links()
        .iter()
        .map(|l| format!("{} {} {}", l["ifname"], l["mtu"], l["master"]))
        .collect();
    v.sort();
    v
}

/// In-process IPAM runs before any link exists: an exhausted range fails
/// the ADD with nothing to undo but what the test checks is left as it was.
/// With an IPAM run from `CNI_PATH` the failure comes after the veth (and
/// the bridge) exist, and both go.
#[test]
fn rollback_when_ipam_is_exhausted() {
    let host = setup("life-exhaust");
    // A /30 has one usable address (the gateway is skipped).
    let c = net(
        &host,
        "1.0.0",
        NET,
        BR,
        Some("10.91.0.0/30"),
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}),
    );
    let c1 = host.container("c1");
    let r1 = add(&host, &c1, "c1", &c);
    assert_eq!(ip_of(&r1, 0), "10.91.0.2");
    let c2 = host.container("c2");
    let msg = add_fails_cleanly(&host, &c2, "c2", &c, 110);
    assert!(
        msg.contains("10.91.0.1") || msg.contains("no IP addresses available"),
        "{msg}"
    );
    // The bridge (not created by this ADD) stays, with c1 working on it.
    assert_eq!(ports_of(&host, BR), [host_veth(&r1)]);
    assert!(reaches(&c1, "10.91.0.1"));

    // Now an ADD that creates its bridge and its veth, brings the container
    // end up, and then finds the range full (the only address taken by
    // another host-local user of the store): its IPAM, the reference's
    // host-local under another name, runs from CNI_PATH, after the links.
    let bin = host.dir().join("exec-ipam");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(require_reference("host-local"), bin.join("hl-exec")).unwrap();
    let mut c = net(
        &host,
        "1.0.0",
        "exhnet",
        "br-exh",
        Some("10.92.0.0/30"),
        json!({"ipMasq": true, "macspoofchk": true}),
    );
    let squat = host.container("squat");
    let out = cni(
        &host,
        &require_reference("host-local"),
        "ADD",
        "squatter",
        Some(squat.path_str()),
        &c,
        &[],
    );
    out.assert_success();
    assert_eq!(leases(&host, "exhnet"), ["10.92.0.2"]);
    c["ipam"]["type"] = json!("hl-exec");
    let c3 = host.container("c3");
    let msg = add_fails_cleanly_with(
        &host,
        &c3,
        "c3",
        &c,
        999,
        &[("CNI_PATH", bin.to_str().unwrap())],
    );
    assert!(msg.contains("no IP addresses available"), "{msg}");
    assert!(
        host.netns().link("br-exh").is_none(),
        "the bridge this ADD created must go"
    );
}

#[test]
fn rollback_when_the_bridge_name_is_taken_by_a_non_bridge() {
    let host = setup("life-notbr");
    host.netns().ip(&[
        "link",
        "add",
        BR,
        "type",
        "veth",
        "peer",
        "name",
        "br-life-peer",
    ]);
    let ctr = host.container("c");
    let msg = add_fails_cleanly(&host, &ctr, "c", &full(&host, "1.0.0"), 999);
    assert_eq!(msg, format!("\"{BR}\" already exists but is not a bridge"));
    assert_eq!(host_link(&host, BR)["linkinfo"]["info_kind"], "veth");
}

#[test]
fn rollback_on_bad_mtu() {
    let host = setup("life-mtu");
    let ctr = host.container("c");
    let with_mtu = |mtu: u32, dual: bool| {
        let mut c = full(&host, "1.0.0");
        c["mtu"] = json!(mtu);
        if dual {
            c["ipam"]["ranges"] = ranges(&["10.90.0.0/24", "fd00:90::/64"]);
            c["ipam"].as_object_mut().unwrap().remove("subnet");
        }
        c
    };
    // Fresh bridge: too big for any link, refused before anything is made.
    let msg = add_fails_cleanly(&host, &ctr, "c", &with_mtu(70000, false), 7);
    assert!(msg.contains("invalid MTU 70000"), "{msg}");
    assert!(host.netns().link(BR).is_none());
    // Fresh bridge, MTU below IPv6's minimum with an IPv6 range: fails after
    // the bridge, the veth and the leases exist.
    add_fails_cleanly(&host, &ctr, "c", &with_mtu(100, true), 7);
    assert!(
        host.netns().link(BR).is_none(),
        "the bridge this ADD created must go"
    );

    // Existing bridge (with an attachment): the same two, and it stays.
    let first = host.container("first");
    let r = add(&host, &first, "first", &full(&host, "1.0.0"));
    add_fails_cleanly(&host, &ctr, "c", &with_mtu(70000, false), 7);
    add_fails_cleanly(&host, &ctr, "c", &with_mtu(100, true), 7);
    assert_eq!(ports_of(&host, BR), [host_veth(&r)]);
    assert_eq!(host_link(&host, BR)["mtu"], 1500);
}

#[test]
fn mtu_below_the_ipv6_minimum_is_named_in_the_error() {
    // Usability: `mtu: 100` with an IPv6 range can never work; the error
    // should say so instead of a sysctl path.
    let host = setup("life-mtu-msg");
    let ctr = host.container("c");
    let mut c = full(&host, "1.0.0");
    c["mtu"] = json!(1000);
    c["ipam"]["ranges"] = ranges(&["fd00:90::/64"]);
    c["ipam"].as_object_mut().unwrap().remove("subnet");
    let msg = add_fails_cleanly(&host, &ctr, "c", &c, 7);
    assert!(
        msg.to_lowercase().contains("mtu") && msg.contains("1280"),
        "the error should name the MTU and IPv6's minimum (1280): {msg}"
    );
}

#[test]
fn rollback_when_the_bridge_already_has_another_gateway_address() {
    // The gateway address is one of the last ADD steps: the veth, the lease
    // and the nft elements exist by then.
    let host = setup("life-gwaddr");
    host.netns().ip(&["link", "add", BR, "type", "bridge"]);
    host.netns().ip(&["addr", "add", "10.99.0.1/24", "dev", BR]);
    let ctr = host.container("c");
    let msg = add_fails_cleanly(&host, &ctr, "c", &full(&host, "1.0.0"), 999);
    assert_eq!(
        msg,
        format!("\"{BR}\" already has an IP address different from 10.90.0.1/24")
    );
    let global = |host: &Host| -> Vec<String> {
        host.netns()
            .addr_cidrs(BR)
            .into_iter()
            .filter(|a| !a.starts_with("fe80"))
            .collect()
    };
    assert_eq!(global(&host), ["10.99.0.1/24"]);
    assert!(
        host.netns().link(BR).is_some(),
        "a bridge this ADD did not create stays"
    );

    // With forceAddress the old address is replaced.
    let mut c = full(&host, "1.0.0");
    c["forceAddress"] = json!(true);
    let res = add(&host, &ctr, "c", &c);
    assert_eq!(global(&host), ["10.90.0.1/24"]);
    assert_attachment_present(&host, "c", &res);
}

/// CHECK finds the routes ADD added as the kernel keeps them: a `dst`
/// given with host bits (a delegated IPAM's; the kernel masks it), and
/// IPv6 routes to one destination via two gateways (merged into one
/// multipath route).
#[test]
fn check_finds_routes_as_the_kernel_keeps_them() {
    let host = setup("life-check-routes");
    let result = r#"{"cniVersion":"1.0.0",
        "ips":[{"address":"10.93.0.5/24","gateway":"10.93.0.1"},{"address":"fd93::5/64","gateway":"fd93::1"}],
        "routes":[{"dst":"192.168.1.1/16"},{"dst":"fd99::/48"},{"dst":"fd99::/48","gw":"fd93::fe"}]}"#;
    write_script(
        &host,
        "fake/fake-ipam",
        &format!(
            "#!/bin/sh\ncat > /dev/null\n[ \"$CNI_COMMAND\" = ADD ] && echo '{result}'\nexit 0\n"
        ),
    );
    let mut c = net(
        &host,
        "1.0.0",
        "fakenet",
        "br-fake",
        None,
        json!({"isGateway": true}),
    );
    c["ipam"] = json!({"type": "fake-ipam"});
    let cni_path = format!("{}:{REFERENCE_DIR}", host.dir().join("fake").display());
    let ctr = host.container("c");
    let env = [("CNI_PATH", cni_path.as_str())];
    let out = cni(&host, &ours(), "ADD", "c", Some(ctr.path_str()), &c, &env);
    let res = out.assert_success().expect_json().clone();
    let out = cni(
        &host,
        &ours(),
        "CHECK",
        "c",
        Some(ctr.path_str()),
        &with_prev(&c, &res),
        &env,
    );
    out.assert_success();
    let out = cni(
        &host,
        &ours(),
        "DEL",
        "c",
        Some(ctr.path_str()),
        &with_prev(&c, &res),
        &env,
    );
    out.assert_success();
}

/// A gateway the host already has on another link (a runtime-chosen
/// subnet that overlaps the LAN, whose router is its .1) is refused: the
/// bridge would take the router's address.
#[test]
fn rollback_when_the_gateway_is_a_host_address_elsewhere() {
    let host = setup("life-gwhost");
    let lan = host.container("lan");
    netns_tests::cni::nic(&host, &lan, "up0", Some("10.90.0.1/24"));
    let ctr = host.container("c");
    let msg = add_fails_cleanly(&host, &ctr, "c", &full(&host, "1.0.0"), 999);
    assert_eq!(
        msg,
        "gateway 10.90.0.1 is already an address of up0 on this host"
    );
    assert!(
        host.netns().link(BR).is_none(),
        "the bridge this ADD created went"
    );
    assert!(host
        .netns()
        .addr_cidrs("up0")
        .contains(&"10.90.0.1/24".to_string()));
    // With forceAddress, the bridge's own address stays too: the check
    // comes before the old address would be replaced.
    host.netns().ip(&["link", "add", BR, "type", "bridge"]);
    host.netns().ip(&["addr", "add", "10.99.0.1/24", "dev", BR]);
    let mut c = full(&host, "1.0.0");
    c["forceAddress"] = json!(true);
    add_fails_cleanly(&host, &ctr, "c", &c, 999);
    assert!(host
        .netns()
        .addr_cidrs(BR)
        .contains(&"10.99.0.1/24".to_string()));
}

#[test]
fn add_for_an_attachment_that_holds_a_lease_fails_without_releasing_it() {
    // A runtime lost a container without DEL and ADDs the same (id, ifname)
    // again in a new namespace: IPAM refuses the duplicate; the rollback
    // must not release the lease (or elements) the first ADD holds.
    let host = setup("life-dup");
    let c = full(&host, "1.0.0");
    let first = host.container("first");
    let res = add(&host, &first, "dup", &c);
    let again = host.container("again");
    let before_leases = leases(&host, NET);
    let out = cni(
        &host,
        &ours(),
        "ADD",
        "dup",
        Some(again.path_str()),
        &c,
        &[],
    );
    out.assert_failure();
    assert_eq!(again.link_names(), ["lo"]);
    assert_eq!(leases(&host, NET), before_leases);
    assert_attachment_present(&host, "dup", &res);
    assert_eq!(ports_of(&host, BR), [host_veth(&res)]);
}

#[test]
fn dual_stack_del_removes_the_masquerade_of_both_families() {
    let host = setup("life-dual");
    let c = net(
        &host,
        "1.0.0",
        NET,
        BR,
        None,
        json!({
            "isGateway": true, "ipMasq": true, "macspoofchk": true,
            "ipam": {"type": "host-local", "dataDir": data_dir(&host),
                     "ranges": ranges(&["10.90.0.0/24", "fd00:90::/64"])},
        }),
    );
    // DEL without prevResult: with the netns (addresses read from the
    // container), then with the netns gone (elements found by comment).
    for (i, keep_ns) in [true, false].into_iter().enumerate() {
        let cid = format!("dual{i}");
        let ctr = host.container(&cid);
        let res = add(&host, &ctr, &cid, &c);
        let (ip4, ip6) = (ip_of(&res, 0), ip_of(&res, 1));
        assert_eq!(nft_elements_with(&host, &format!("\"{ip4}\"")).len(), 1);
        let e6 = nft_elements_with(&host, &format!("\"{ip6}\""));
        assert!(e6.len() == 1 && e6[0].starts_with("inet masq6"), "{e6:?}");
        let path = ctr.path_str().to_string();
        if !keep_ns {
            drop(ctr);
            del(&host, Some(&path), &cid, &c);
        } else {
            del(&host, Some(&path), &cid, &c);
            assert_eq!(ctr.link_names(), ["lo"]);
        }
        assert!(
            nft_elements_with(&host, &format!("/{cid}/")).is_empty(),
            "{:?}",
            nft_elements(&host)
        );
        assert!(leases(&host, NET).is_empty(), "{:?}", leases(&host, NET));
    }
    assert!(nft_elements(&host).is_empty(), "{:?}", nft_elements(&host));
}

#[test]
fn rollback_when_the_spoof_check_or_the_masquerade_cannot_be_written() {
    // Our tables hold a set/map of another type (someone else's, or an old
    // layout): the nft step fails; everything before it is undone.
    let host = setup("life-nftfail");
    let ctr = host.container("c");
    let c = full(&host, "1.0.0");

    nft_cmd(
        &host,
        "add table bridge nuage { set spoof_ports { type ether_addr; }; }",
    );
    let msg = add_fails_cleanly(&host, &ctr, "c", &c, 999);
    assert!(msg.contains("spoof_ports") && msg.contains("nft"), "{msg}");
    assert!(
        host.netns().link(BR).is_none(),
        "the bridge this ADD created must go"
    );
    nft_cmd(&host, "delete table bridge nuage");

    // The masquerade comes after IPAM and the gateway address.
    nft_cmd(
        &host,
        "add table inet nuage { map masq4 { type ipv4_addr : ipv4_addr; }; }",
    );
    let msg = add_fails_cleanly(&host, &ctr, "c", &c, 999);
    assert!(msg.contains("masq4") && msg.contains("10.90.0."), "{msg}");
    assert!(
        host.netns().link(BR).is_none(),
        "the bridge this ADD created must go"
    );
    nft_cmd(&host, "delete table inet nuage");

    // Repaired: the same ADD works.
    let res = add(&host, &ctr, "c", &c);
    assert_attachment_present(&host, "c", &res);
}

#[test]
fn rollback_when_the_container_already_has_the_interface() {
    let host = setup("life-ifexists");
    let ctr = host.container("c");
    ctr.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth9",
    ]);
    let msg = add_fails_cleanly(&host, &ctr, "c", &full(&host, "1.0.0"), 999);
    assert_eq!(msg, "container veth name \"eth0\" already exists");
    assert!(host.netns().link(BR).is_none());
    // An existing bridge is not touched either.
    let other = host.container("other");
    let r = add(&host, &other, "other", &full(&host, "1.0.0"));
    add_fails_cleanly(&host, &ctr, "c", &full(&host, "1.0.0"), 999);
    assert_eq!(ports_of(&host, BR), [host_veth(&r)]);
}

#[test]
fn every_add_keeps_router_advertisements_off_on_the_bridge() {
    let host = setup("life-accept-ra");
    let ra = || host.sysctl(host.netns(), &format!("net/ipv6/conf/{BR}/accept_ra"));
    // A bridge the node already had, with the kernel's default.
    host.netns().ip(&["link", "add", BR, "type", "bridge"]);
    host.netns()
        .set_sysctl(&format!("net/ipv6/conf/{BR}/accept_ra"), "1");
    let c1 = host.container("c1");
    add(&host, &c1, "c1", &full(&host, "1.0.0"));
    assert_eq!(ra(), "0");
    // Re-enabled behind our back: the next ADD turns it off again.
    host.netns()
        .set_sysctl(&format!("net/ipv6/conf/{BR}/accept_ra"), "2");
    let c2 = host.container("c2");
    add(&host, &c2, "c2", &full(&host, "1.0.0"));
    assert_eq!(ra(), "0");
    // Already off: it stays off.
    let c3 = host.container("c3");
    add(&host, &c3, "c3", &full(&host, "1.0.0"));
    assert_eq!(ra(), "0");
}

#[test]
fn a_failed_add_does_not_delete_a_bridge_another_add_joined_meanwhile() {
    // ADD A creates the bridge, then waits in its IPAM (a delegated plugin
    // that blocks until told to fail); meanwhile ADD B joins the same
    // bridge and succeeds; then A fails. A's rollback must not take the
    // bridge from under B.
    let host = setup("life-race");
    let bin_dir = host.dir().join("cni-bin");
    let flags = host.dir().join("flags");
    std::fs::create_dir_all(&flags).unwrap();
    write_script(
        &host,
        "cni-bin/blocking-ipam",
        &format!(
            "#!/bin/sh\n\
             case \"$CNI_COMMAND\" in\n\
             ADD) : > {f}/started\n\
                  while [ ! -e {f}/go ]; do sleep 0.05; done\n\
                  echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"blocking-ipam: told to fail\"}}'\n\
                  exit 1;;\n\
             *) exit 0;;\n\
             esac\n",
            f = flags.display()
        ),
    );
    let a_conf = json!({
        "cniVersion": "1.0.0", "name": "racea", "type": "bridge", "bridge": "br-race",
        "ipam": {"type": "blocking-ipam"},
    });
    let b_conf = net(
        &host,
        "1.0.0",
        "raceb",
        "br-race",
        Some("10.94.0.0/24"),
        json!({}),
    );
    let (ca, cb) = (host.container("a"), host.container("b"));
    let bin_dir = bin_dir.to_str().unwrap().to_string();
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            cni(
                &host,
                &ours(),
                "ADD",
                "a",
                Some(ca.path_str()),
                &a_conf,
                &[("CNI_PATH", &bin_dir)],
            )
        });
        wait_until("ADD A in its IPAM", || flags.join("started").exists());
        assert!(
            host.netns().link("br-race").is_some(),
            "A created the bridge"
        );
        let rb = add(&host, &cb, "b", &b_conf);
        assert_eq!(ports_of(&host, "br-race").len(), 2);
        std::fs::write(flags.join("go"), "").unwrap();
        let out = a.join().expect("ADD A thread");
        err(&out, 11);
        assert_eq!(ca.link_names(), ["lo"], "A's veth is gone");
        assert!(
            host.netns().link("br-race").is_some(),
            "A's rollback deleted bridge br-race, which B joined meanwhile"
        );
        assert_eq!(ports_of(&host, "br-race"), [host_veth(&rb)]);
    });
}

#[test]
fn concurrent_adds_on_a_new_bridge_all_succeed() {
    let host = setup("life-concurrent");
    let c = full(&host, "1.0.0");
    let ctrs: Vec<Netns> = (0..8).map(|i| host.container(&format!("p{i}"))).collect();
    let results: Vec<PluginOutput> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, ctr)| {
                let (host, c) = (&host, &c);
                s.spawn(move || {
                    cni(
                        host,
                        &ours(),
                        "ADD",
                        &format!("p{i}"),
                        Some(ctr.path_str()),
                        c,
                        &[],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = Vec::new();
    for (i, out) in results.iter().enumerate() {
        out.assert_success();
        let res = out.expect_json();
        assert_attachment_present(&host, &format!("p{i}"), res);
        ips.push(ip_of(res, 0));
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "{ips:?}");
    assert_eq!(ports_of(&host, BR).len(), 8);
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

/// One bad request: (what, stdin, extra env, code, message fragment).
type BadInput = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    u64,
    &'static str,
);

/// Whether the kernel can make a VLAN-filtering bridge (probed in the host).
fn vlan_filtering_supported(host: &Host) -> bool {
    let ns = host.netns();
    let ok = ns
        .exec(
            "ip",
            &[
                "link",
                "add",
                "vf-probe",
                "type",
                "bridge",
                "vlan_filtering",
                "1",
            ],
        )
        .success();
    if ok {
        ns.ip(&["link", "del", "vf-probe"]);
    }
    ok
}

/// Every file under the host's scratch dir (relative paths), sorted.
fn files(host: &Host) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(host.dir(), host.dir(), &mut v);
    v.sort();
    v
}

#[test]
fn bad_input_gets_the_right_code_and_leaves_nothing() {
    let host = setup("life-badinput");
    let ctr = host.container("c");
    let base = full(&host, "1.0.0");
    let with = |extra: Value| merge(base.clone(), extra);
    let mut ipam_bad = base.clone();
    ipam_bad["ipam"]["subnet"] = json!("10.0.0.0/33");
    let mut ipam_junk = base.clone();
    ipam_junk["ipam"]["subnet"] = json!("not-a-cidr");
    let not_ns = host.write_file("not-a-netns", "");
    // `vlan`/`vlanTrunk` need bridge VLAN filtering, which this test
    // machine's kernel lacks: the error says so. (On a kernel with it, nuage
    // says that it does not support VLANs yet.)
    let vlan_msg = if vlan_filtering_supported(&host) {
        "not supported by nuage yet"
    } else {
        "no bridge VLAN filtering"
    };
    let cases: Vec<BadInput> = vec![
        (
            "broken JSON",
            "{\"cniVersion\": \"1.0.0\", \"name\": ".into(),
            vec![],
            6,
            "",
        ),
        (
            "a 0.2.0 result without IPAM",
            with(json!({"cniVersion": "0.2.0", "ipam": null})).to_string(),
            vec![],
            999,
            "cannot convert: no valid IP addresses",
        ),
        (
            "prevResult that is not an object",
            with(json!({"prevResult": "10.0.0.2/24"})).to_string(),
            vec![],
            6,
            "\"prevResult\" must be a result object, got \"10.0.0.2/24\"",
        ),
        (
            "unknown ipMasqBackend",
            with(json!({"ipMasqBackend": "xtables"})).to_string(),
            vec![],
            7,
            "unknown ipmasq backend",
        ),
        (
            "hairpin and promisc",
            with(json!({"hairpinMode": true, "promiscMode": true})).to_string(),
            vec![],
            7,
            "cannot set hairpin mode and promiscuous mode at the same time",
        ),
        (
            "vlan 5000",
            with(json!({"vlan": 5000})).to_string(),
            vec![],
            7,
            "VLAN",
        ),
        (
            "bridge named ..",
            with(json!({"bridge": ".."})).to_string(),
            vec![],
            7,
            "invalid bridge name \"..\"",
        ),
        (
            "multicast MAC",
            with(json!({"capabilities": {"mac": true}, "runtimeConfig": {"mac": "01:00:5e:00:00:01"}}))
                .to_string(),
            vec![],
            7,
            "is a multicast address",
        ),
        (
            "CNI_ARGS MAC that is not one",
            base.to_string(),
            vec![("CNI_ARGS", "IgnoreUnknown=1;MAC=zz".to_string())],
            4,
            "CNI_ARGS MAC \"zz\" is not a MAC address",
        ),
        (
            "vlan -1",
            with(json!({"vlan": -1})).to_string(),
            vec![],
            7,
            "VLAN",
        ),
        (
            "vlanTrunk minID > maxID",
            with(json!({"vlanTrunk": [{"minID": 10, "maxID": 5}]})).to_string(),
            vec![],
            7,
            "vlanTrunk",
        ),
        (
            "vlan on this kernel",
            with(json!({"vlan": 100})).to_string(),
            vec![],
            2,
            vlan_msg,
        ),
        (
            "vlanTrunk on this kernel",
            with(json!({"vlanTrunk": [{"id": 5}]})).to_string(),
            vec![],
            2,
            vlan_msg,
        ),
        (
            "ipam prefix /33",
            ipam_bad.to_string(),
            vec![],
            7,
            "10.0.0.0/33",
        ),
        (
            "ipam junk CIDR",
            ipam_junk.to_string(),
            vec![],
            7,
            "not-a-cidr",
        ),
        (
            "too-long ifname",
            base.to_string(),
            vec![("CNI_IFNAME", "abcdefghijklmnop".into())],
            4,
            "interface name is too long",
        ),
        (
            "ifname with a slash",
            base.to_string(),
            vec![("CNI_IFNAME", "../eth0".into())],
            4,
            "",
        ),
        (
            "network name ../escape",
            with(json!({"name": "../escape"})).to_string(),
            vec![],
            7,
            "network name",
        ),
        (
            "network name a/b",
            with(json!({"name": "a/b"})).to_string(),
            vec![],
            7,
            "network name",
        ),
        (
            "network name ..",
            with(json!({"name": ".."})).to_string(),
            vec![],
            7,
            "network name",
        ),
        (
            "bridge name too long",
            with(json!({"bridge": "br-0123456789abcdef"})).to_string(),
            vec![],
            7,
            "bridge name",
        ),
        (
            "bridge name with a slash",
            with(json!({"bridge": "../br"})).to_string(),
            vec![],
            7,
            "bridge name",
        ),
        (
            "mtu not a number",
            with(json!({"mtu": "big"})).to_string(),
            vec![],
            7,
            "",
        ),
        (
            "MAC not a MAC",
            with(json!({"runtimeConfig": {"mac": "zz:zz"}})).to_string(),
            vec![],
            7,
            "MAC",
        ),
        (
            "ipam with disableContainerInterface",
            with(json!({"disableContainerInterface": true})).to_string(),
            vec![],
            7,
            "DisableContainerInterface",
        ),
        (
            "CNI_NETNS is the host's own namespace",
            base.to_string(),
            vec![("CNI_NETNS", host.path().display().to_string())],
            8,
            "should not be the same",
        ),
        (
            "CNI_NETNS missing",
            base.to_string(),
            vec![("CNI_NETNS", host.dir().join("nope").display().to_string())],
            8,
            "does not exist",
        ),
        (
            "CNI_NETNS a regular file",
            base.to_string(),
            vec![("CNI_NETNS", not_ns.display().to_string())],
            8,
            "not a network namespace",
        ),
    ];
    let files_before = files(&host);
    let before = Snapshot::take(&host, NET, &ctr);
    for (what, stdin, extra, code, fragment) in cases {
        let mut env: Vec<(&str, &str)> = vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "bad"),
            ("CNI_NETNS", ctr.path_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", REFERENCE_DIR),
        ];
        for (k, v) in &extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v.as_str()));
        }
        let out = host.run_plugin(&ours(), &env, &stdin);
        assert_eq!(out.code, Some(1), "{what}:\n{out}");
        let v = out.expect_json();
        assert_eq!(v["code"], code, "{what}: wrong code:\n{out}");
        let msg = v["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(fragment),
            "{what}: message {msg:?} lacks {fragment:?}"
        );
        before.assert_unchanged(&host, NET, &ctr, what);
        assert_eq!(files(&host), files_before, "{what}: files appeared");
        assert!(
            !host.dir().join("escape").exists() && !data_dir(&host).join("a").exists(),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------
// ipMasqBackend "iptables" and the port limit
// ---------------------------------------------------------------------------

#[test]
fn ip_masq_backend_iptables_is_served_by_nftables() {
    let host = setup("life-iptables");
    let mut c = full(&host, "1.0.0");
    c["ipMasqBackend"] = json!("iptables");
    let ctr = host.container("c");
    let (res, out) = add_with(&host, &ctr, "ipt", &c, &[("NUAGE_LOG_LEVEL", "info")]);
    // The log line saying so (info: the default stderr level, warn, is
    // for what needs a look).
    assert!(
        out.stderr
            .contains("ipMasqBackend \"iptables\" is served by nftables"),
        "{out}"
    );
    assert_attachment_present(&host, "ipt", &res);
    assert!(nft_table(&host, "inet").is_some());
    assert!(
        iptables_cni_lines(&host).is_empty(),
        "no iptables rules: {:?}",
        iptables_cni_lines(&host)
    );
    let tables = host.netns().exec_ok("nft", &["list", "tables"]);
    let mut tables: Vec<&str> = tables.lines().collect();
    tables.sort();
    assert_eq!(tables, ["table bridge nuage", "table inet nuage"]);
    let chk = check(&host, &ctr, "ipt", &c, &res);
    chk.assert_success();
    del(&host, Some(ctr.path_str()), "ipt", &c);
    assert_attachment_gone(&host, "ipt", &res);
    assert!(iptables_cni_lines(&host).is_empty());
}

#[test]
fn a_full_bridge_is_a_clear_error_and_leaves_nothing() {
    let host = setup("life-full");
    let c = net(
        &host,
        "1.0.0",
        NET,
        "br-full",
        Some("10.96.0.0/16"),
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}),
    );
    let first = host.container("first");
    let r = add(&host, &first, "first", &c);
    // 1022 more ports, made directly: 1023 is the kernel's maximum.
    let mut batch = String::new();
    for i in 0..1022 {
        batch +=
            &format!("link add fp{i} type veth peer name fq{i}\nlink set fp{i} master br-full\n");
    }
    let file = host.write_file("ports.batch", &batch);
    host.netns().ip(&["-batch", file.to_str().unwrap()]);
    assert_eq!(ports_of(&host, "br-full").len(), 1023);

    let ctr = host.container("c");
    let msg = add_fails_cleanly(&host, &ctr, "c", &c, 999);
    assert!(
        msg.contains("br-full") && msg.contains("full") && msg.contains("1023"),
        "the error names the bridge and the limit: {msg}"
    );
    // The first attachment is unaffected; once a port is free, ADD works.
    assert!(reaches(&first, "10.96.0.1"));
    host.netns().ip(&["link", "del", "fp0"]);
    let res = add(&host, &ctr, "c", &c);
    assert_attachment_present(&host, "c", &res);
    assert_attachment_present(&host, "first", &r);
}
