//! Differential tests: the same request sent to our `bridge` and to the
//! reference `/usr/lib/cni/bridge` (Debian containernetworking-plugins
//! v1.1.1, spec <= 1.0.0), each in its own host namespace with an identical
//! setup, must give the same result and the same kernel state (container
//! side, read with `ip -j`, and host side).
//!
//! Results are compared semantically after checking, then masking, what is
//! random by design: the host veth name (`veth` + 8 hex, the peer of the
//! container interface, a port of the bridge), the MACs (each the MAC of the
//! link it names) and the sandbox path (each side's own container).
//!
//! Deliberate differences, asserted where they show:
//! - 1.x results: the reference (libcni 1.1) prints `"dns": {}`, we omit an
//!   empty `dns` (as libcni >= 1.2 does; README);
//! - the bridge MAC: we create the bridge with a stable, locally
//!   administered MAC, so it never changes as ports come and go; the
//!   reference lets the kernel take the lowest port MAC, which changes;
//! - error replies: ours carry `cniVersion`, and config errors have code 7
//!   (the reference answers 999 with its own wording);
//! - a failed ADD: we undo everything; the reference leaves the bridge and
//!   the veth behind;
//! - `ipMasq`: we masquerade with nftables (table `inet nuage`), the
//!   reference with iptables `CNI-<hash>` chains;
//! - `accept_dad` of the container interface: without `enabledad` or
//!   `hairpinMode` the reference sets it to 0, we leave the kernel default
//!   and add the IPAM addresses with `nodad` (same effect on them; the write
//!   costs O(namespaces on the machine), see the bridge's `container_sysctls`).

mod common;

use std::path::PathBuf;

use common::*;
use netns_tests::*;
use serde_json::{json, Value};

const CID: &str = "ctr-diff";

fn reference() -> PathBuf {
    require_reference("bridge")
}

/// One implementation's world: its own host and container namespaces.
struct Side {
    label: &'static str,
    bin: PathBuf,
    host: Host,
    ctr: Netns,
}

impl Side {
    fn new(label: &'static str, bin: PathBuf, tag: &str) -> Side {
        let host = Host::new(&format!("{label}-{tag}"));
        let ctr = host.container(&format!("{label}-{tag}"));
        Side {
            label,
            bin,
            host,
            ctr,
        }
    }

    #[track_caller]
    fn call(&self, cmd: &str, conf: &Value, extra: &[(&str, &str)]) -> PluginOutput {
        cni(
            &self.host,
            &self.bin,
            cmd,
            CID,
            Some(self.ctr.path_str()),
            conf,
            extra,
        )
    }
}

/// Ours and the reference, with identical setups.
fn sides(tag: &str) -> (Side, Side) {
    require_root();
    let r = reference();
    (Side::new("ours", ours(), tag), Side::new("ref", r, tag))
}

/// One row of the matrix.
struct Case {
    tag: &'static str,
    version: &'static str,
    /// `None`: L2 mode (no `ipam`).
    subnets: Option<&'static [&'static str]>,
    extra: Value,
    ifname: &'static str,
    /// `CNI_ARGS`.
    args: &'static str,
}

impl Case {
    fn new(tag: &'static str, version: &'static str, extra: Value) -> Case {
        Case {
            tag,
            version,
            subnets: Some(&["10.88.0.0/24"]),
            extra,
            ifname: "eth0",
            args: "",
        }
    }

    fn conf(&self, host: &Host) -> Value {
        let mut extra = self.extra.clone();
        if let Some(s) = self.subnets {
            extra["ipam"] =
                json!({"type": "host-local", "dataDir": data_dir(host), "ranges": ranges(s)});
        }
        net(host, self.version, "diffnet", "br-diff", None, extra)
    }

    fn env(&self) -> Vec<(&'static str, &'static str)> {
        let mut e = vec![("CNI_IFNAME", self.ifname)];
        if !self.args.is_empty() {
            e.push(("CNI_ARGS", self.args));
        }
        e
    }

    fn bridge(&self) -> &str {
        self.extra["bridge"].as_str().unwrap_or("br-diff")
    }
}

/// Checks what is random in a result against the kernel state of `side`,
/// then masks it. Also checks the interface indexes.
#[track_caller]
fn normalize(side: &Side, case: &Case, res: &Value) -> Value {
    let who = side.label;
    let mut r = res.clone();
    let ifs = r["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no interfaces: {res}"))
        .clone();
    assert_eq!(ifs.len(), 3, "{who}: bridge, host veth, container: {res}");
    let (br, hv, cv) = (&ifs[0], &ifs[1], &ifs[2]);
    assert_eq!(br["name"], case.bridge(), "{who}: {res}");
    assert_eq!(cv["name"], case.ifname, "{who}: {res}");
    assert_eq!(cv["sandbox"], side.ctr.path_str(), "{who}: {res}");
    assert!(
        br.get("sandbox").is_none() && hv.get("sandbox").is_none(),
        "{who}: {res}"
    );
    assert!(is_veth_name(&hv["name"]), "{who}: host veth name: {res}");
    for i in &ifs {
        assert!(
            is_mac(&i["mac"]),
            "{who}: MAC shape of {}: {res}",
            i["name"]
        );
    }
    // Each MAC is the one of the link it names; the host veth is the peer of
    // the container interface and a port of the bridge.
    let hv_name = hv["name"].as_str().unwrap();
    let hlink = host_link(&side.host, hv_name);
    let clink = side.ctr.link(case.ifname).expect("container interface");
    assert_eq!(hv["mac"], hlink["address"], "{who}");
    assert_eq!(cv["mac"], clink["address"], "{who}");
    assert_eq!(clink["link_index"], hlink["ifindex"], "{who}: veth peers");
    assert_eq!(hlink["master"], case.bridge(), "{who}");
    assert_eq!(
        br["mac"],
        host_link(&side.host, case.bridge())["address"],
        "{who}: bridge MAC"
    );
    // Every IP names the container interface (index 2).
    for ip in r["ips"].as_array().cloned().unwrap_or_default() {
        assert_eq!(ip["interface"], 2, "{who}: {res}");
    }
    for i in 0..3 {
        r["interfaces"][i]["mac"] = json!("<mac>");
    }
    r["interfaces"][1]["name"] = json!("<veth>");
    r["interfaces"][2]["sandbox"] = json!("<netns>");
    r
}

/// The host-side state of an attachment: the bridge and the host veth
/// (MACs left out), forwarding.
#[track_caller]
fn host_state(side: &Side, bridge: &str, veth: &str) -> Value {
    let h = &side.host;
    let br = host_link(h, bridge);
    let v = host_link(h, veth);
    let mut br_addrs: Vec<String> = h
        .netns()
        .addr_cidrs(bridge)
        .into_iter()
        .filter(|a| !a.starts_with("fe80"))
        .collect();
    br_addrs.sort();
    let port = &v["linkinfo"]["info_slave_data"];
    json!({
        "bridge": {
            "kind": br["linkinfo"]["info_kind"],
            "mtu": br["mtu"],
            "up": has_flag(&br, "UP"),
            "promisc": has_flag(&br, "PROMISC"),
            "stp": br["linkinfo"]["info_data"]["stp_state"],
            "vlan_filtering": br["linkinfo"]["info_data"]["vlan_filtering"],
            "addrs": br_addrs,
            "accept_ra": h.sysctl(h.netns(), &format!("net/ipv6/conf/{bridge}/accept_ra")),
        },
        "veth": {
            "kind": v["linkinfo"]["info_kind"],
            "mtu": v["mtu"],
            "txqlen": v["txqlen"],
            "up": has_flag(&v, "UP"),
            "master": v["master"],
            "hairpin": port["hairpin"],
            "isolated": port["isolated"],
            "learning": port["learning"],
            "state": port["state"],
            "accept_ra": h.sysctl(h.netns(), &format!("net/ipv6/conf/{veth}/accept_ra")),
        },
        "ip_forward": h.sysctl(h.netns(), "net.ipv4.ip_forward"),
        "ipv6_forwarding": h.sysctl(h.netns(), "net/ipv6/conf/all/forwarding"),
    })
}

/// The reference's 1.x result without its empty `dns` (asserting that it
/// has one and we do not).
#[track_caller]
fn without_reference_empty_dns(case: &Case, ours: &Value, reference: &Value) -> Value {
    let mut r = reference.clone();
    if case.version.starts_with('1') && ours.get("dns").is_none() {
        assert_eq!(
            r.get("dns"),
            Some(&json!({})),
            "the 1.1.1 reference prints an empty dns in 1.x results: {reference}"
        );
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

/// The container-side states of both sides after an ADD of `conf`, which
/// must agree but for the deliberate `accept_dad` difference: with IPAM,
/// and neither `enabledad` nor `hairpinMode`, the reference writes 0 and we
/// leave the kernel's default, 1.
#[track_caller]
fn assert_same_ctr_state(ours: Value, reference: Value, conf: &Value) {
    let (mut ours, reference) = (ours, reference);
    let dad_written = conf["enabledad"] == true || conf["hairpinMode"] == true;
    if conf.get("ipam").is_some() && !dad_written {
        assert_eq!(ours["accept_dad"], "1", "ours: {ours}");
        assert_eq!(reference["accept_dad"], "0", "reference: {reference}");
        ours["accept_dad"] = reference["accept_dad"].clone();
    }
    assert_json_eq(&ours, &reference);
}

/// Runs `case` on both sides: ADD (same result, same container and host
/// state), CHECK (both fine), DEL twice (both fine, same state after).
#[track_caller]
fn agree(case: Case) {
    let (o, r) = sides(case.tag);
    let (co, cr) = (case.conf(&o.host), case.conf(&r.host));
    let env = case.env();
    let (ao, ar) = (o.call("ADD", &co, &env), r.call("ADD", &cr, &env));
    ao.assert_success();
    ar.assert_success();
    let (res_o, res_r) = (ao.expect_json().clone(), ar.expect_json().clone());
    let no = normalize(&o, &case, &res_o);
    let nr = normalize(&r, &case, &res_r);
    let nr = without_reference_empty_dns(&case, &no, &nr);
    assert_json_eq(&no, &nr);

    // Container side, as `ip -j` and /proc/sys show it.
    assert_same_ctr_state(
        ctr_state(&o.ctr, case.ifname),
        ctr_state(&r.ctr, case.ifname),
        &co,
    );

    // Host side.
    let (vo, vr) = (host_veth(&res_o), host_veth(&res_r));
    assert_json_eq(
        &host_state(&o, case.bridge(), &vo),
        &host_state(&r, case.bridge(), &vr),
    );
    // Deliberate: our bridge MAC is pinned (locally administered, set at
    // creation). The reference pins its bridge's MAC only with isGateway,
    // else the bridge takes the lowest port MAC (see
    // `bridge_mac_stays_ours_and_moves_with_the_reference`).
    let br_mac = host_link(&o.host, case.bridge())["address"].clone();
    let first = br_mac.as_str().unwrap();
    assert_eq!(
        u8::from_str_radix(&first[..2], 16).unwrap() & 0b11,
        0b10,
        "our bridge MAC is locally administered unicast: {first}"
    );

    // CHECK with each one's own result: both fine, silently (CHECK needs
    // 0.4.0: before, both refuse with code 1).
    let l2 = case.subnets.is_none();
    for (s, conf, res, add) in [(&o, &co, &res_o, &ao), (&r, &cr, &res_r, &ar)] {
        let out = s.call("CHECK", &with_prev(conf, res), &env);
        if case.version < "0.4.0" {
            let e = err(&out, 1);
            assert!(e.contains("CHECK"), "{}: {out}", s.label);
        } else if l2 && s.label == "ref" {
            // Deliberate: the reference runs IPAM CHECK even without an
            // `ipam` section, so its CHECK of an L2 network always fails.
            assert_eq!(err(&out, 999), "no plugin name provided");
        } else {
            out.assert_success();
            assert_eq!(out.stdout, "", "{}: CHECK after\n{add}\n{out}", s.label);
        }
    }

    // DEL (with prevResult), twice: both fine; the attachment is gone.
    for _ in 0..2 {
        for (s, conf, res) in [(&o, &co, &res_o), (&r, &cr, &res_r)] {
            let out = s.call("DEL", &with_prev(conf, res), &env);
            out.assert_success();
            assert_eq!(out.stdout, "", "{}: {out}", s.label);
        }
    }
    for s in [&o, &r] {
        assert_eq!(s.ctr.link_names(), ["lo"], "{}", s.label);
        assert!(ports_of(&s.host, case.bridge()).is_empty(), "{}", s.label);
        assert!(leases(&s.host, "diffnet").is_empty(), "{}", s.label);
        // Neither deletes the bridge on DEL.
        assert!(s.host.netns().link(case.bridge()).is_some(), "{}", s.label);
    }
    let mut brs: Vec<Value> = Vec::new();
    for s in [&o, &r] {
        let b = host_link(&s.host, case.bridge());
        brs.push(json!({
            "mtu": b["mtu"], "promisc": has_flag(&b, "PROMISC"),
            "addrs": s.host.netns().addr_cidrs(case.bridge()).into_iter()
                .filter(|a| !a.starts_with("fe80")).collect::<Vec<_>>(),
        }));
    }
    assert_json_eq(&brs[0], &brs[1]);
}

#[test]
fn plain_1_0_0() {
    agree(Case::new("plain", "1.0.0", json!({})));
}

#[test]
fn is_gateway_1_0_0() {
    agree(Case::new("gw", "1.0.0", json!({"isGateway": true})));
}

#[test]
fn is_default_gateway_1_0_0() {
    agree(Case::new(
        "defgw",
        "1.0.0",
        json!({"isDefaultGateway": true}),
    ));
}

#[test]
fn dual_stack_default_gateway_1_0_0() {
    let mut c = Case::new("dual", "1.0.0", json!({"isDefaultGateway": true}));
    c.subnets = Some(&["10.88.0.0/24", "fd00:88::/64"]);
    agree(c);
}

#[test]
fn dual_stack_gateway_0_4_0() {
    let mut c = Case::new("dual04", "0.4.0", json!({"isGateway": true}));
    c.subnets = Some(&["10.88.0.0/24", "fd00:88::/64"]);
    agree(c);
}

#[test]
fn is_gateway_0_3_1() {
    agree(Case::new("gw031", "0.3.1", json!({"isGateway": true})));
}

#[test]
fn plain_0_4_0_ipv6_only() {
    let mut c = Case::new("v6only", "0.4.0", json!({}));
    c.subnets = Some(&["fd00:89::/64"]);
    agree(c);
}

#[test]
fn mtu_1_0_0() {
    agree(Case::new(
        "mtu",
        "1.0.0",
        json!({"mtu": 1400, "isGateway": true}),
    ));
}

#[test]
fn l2_mode_without_ipam_1_0_0() {
    let mut c = Case::new("l2", "1.0.0", json!({}));
    c.subnets = None;
    agree(c);
}

#[test]
fn l2_mode_without_ipam_0_3_1() {
    let mut c = Case::new("l2-031", "0.3.1", json!({"mtu": 1450}));
    c.subnets = None;
    agree(c);
}

#[test]
fn hairpin_mode_1_0_0() {
    agree(Case::new(
        "hairpin",
        "1.0.0",
        json!({"hairpinMode": true, "isGateway": true}),
    ));
}

#[test]
fn promisc_mode_1_0_0() {
    agree(Case::new("promisc", "1.0.0", json!({"promiscMode": true})));
}

#[test]
fn chained_with_prev_result_1_0_0() {
    // A bridge after another plugin (here: a loopback result): prevResult
    // is not merged into the result by either implementation.
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x"}],
        "ips": [{"interface": 0, "address": "127.0.0.1/8"}],
    });
    agree(Case::new(
        "chained",
        "1.0.0",
        json!({"isGateway": true, "prevResult": prev}),
    ));
}

#[test]
fn chained_with_prev_result_0_4_0() {
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "lo", "sandbox": "/var/run/netns/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "127.0.0.1/8"}],
        "dns": {},
    });
    agree(Case::new(
        "chained04",
        "0.4.0",
        json!({"isDefaultGateway": true, "prevResult": prev}),
    ));
}

#[test]
fn mac_dns_and_ifname_1_0_0() {
    let mut c = Case::new(
        "macdns",
        "1.0.0",
        json!({
            "isGateway": true,
            "runtimeConfig": {"mac": "02:aa:bb:cc:dd:ee"},
            "dns": {"nameservers": ["192.0.2.53"], "search": ["example.test"]},
        }),
    );
    c.ifname = "net1";
    agree(c);
    // The MAC was masked in `agree`; check it is the requested one on both.
    let (o, r) = sides("mac");
    let case = Case::new(
        "mac",
        "1.0.0",
        json!({"args": {"cni": {"mac": "02:aa:bb:cc:dd:01"}}}),
    );
    for s in [&o, &r] {
        let out = s.call("ADD", &case.conf(&s.host), &[]);
        out.assert_success();
        assert_eq!(
            out.expect_json()["interfaces"][2]["mac"],
            "02:aa:bb:cc:dd:01",
            "{}",
            s.label
        );
        assert_eq!(s.ctr.link("eth0").unwrap()["address"], "02:aa:bb:cc:dd:01");
    }
}

#[test]
fn ipam_routes_1_0_0() {
    let case = Case::new("routes", "1.0.0", json!({"isGateway": true}));
    let (o, r) = sides("routes");
    let mut results = Vec::new();
    for s in [&o, &r] {
        let mut conf = case.conf(&s.host);
        // The subnet's own route via the gateway sits beside the kernel's
        // connected route (an exclusive add would fail).
        // The spec 1.1.0 route fields are not read at 1.0.0, as by the
        // reference: a plain route in the main table.
        conf["ipam"]["routes"] = json!([{"dst": "192.168.0.0/16"},
            {"dst": "172.16.0.0/12", "gw": "10.88.0.254"}, {"dst": "10.88.0.0/24"},
            {"dst": "10.200.0.0/16", "mtu": 1400, "advmss": 1300, "priority": 50, "table": 100},
            {"dst": "10.201.0.0/16", "scope": 253},
            {"dst": "10.202.0.0/16", "scope": 300, "mtu": "x", "table": -1}]);
        let out = s.call("ADD", &conf, &[]);
        out.assert_success();
        results.push((out.expect_json().clone(), ctr_state(&s.ctr, "eth0")));
    }
    let no = normalize(&o, &case, &results[0].0);
    let nr = normalize(&r, &case, &results[1].0);
    assert_json_eq(&no, &without_reference_empty_dns(&case, &no, &nr));
    assert_same_ctr_state(
        results[0].1.clone(),
        results[1].1.clone(),
        &case.conf(&o.host),
    );
}

#[test]
fn ip_masq_same_result_and_container_state_other_netfilter() {
    let case = Case::new(
        "masq",
        "1.0.0",
        json!({"isDefaultGateway": true, "ipMasq": true}),
    );
    let (o, r) = sides(case.tag);
    let (co, cr) = (case.conf(&o.host), case.conf(&r.host));
    let (ao, ar) = (o.call("ADD", &co, &[]), r.call("ADD", &cr, &[]));
    ao.assert_success();
    ar.assert_success();
    let (res_o, res_r) = (ao.expect_json().clone(), ar.expect_json().clone());
    let no = normalize(&o, &case, &res_o);
    let nr = normalize(&r, &case, &res_r);
    assert_json_eq(&no, &without_reference_empty_dns(&case, &no, &nr));
    assert_same_ctr_state(
        ctr_state(&o.ctr, "eth0"),
        ctr_state(&r.ctr, "eth0"),
        &case.conf(&o.host),
    );

    // Deliberate: we masquerade with one element of our nftables map, the
    // reference with an iptables chain per container.
    let ip = ip_of(&res_o, 0);
    assert_eq!(nft_elements_with(&o.host, &format!("\"{ip}\"")).len(), 1);
    assert!(
        iptables_cni_lines(&o.host).is_empty(),
        "{:?}",
        iptables_cni_lines(&o.host)
    );
    let ref_rules = iptables_cni_lines(&r.host);
    assert!(
        ref_rules
            .iter()
            .any(|l| l.contains(&format!("-s {ip}/32")) && l.contains("-j CNI-")),
        "{ref_rules:?}"
    );
    assert!(nft_table(&r.host, "inet").is_none());

    // DEL: both remove their masquerade.
    for (s, conf, res) in [(&o, &co, &res_o), (&r, &cr, &res_r)] {
        s.call("DEL", &with_prev(conf, res), &[]).assert_success();
    }
    assert!(
        nft_elements(&o.host).is_empty(),
        "{:?}",
        nft_elements(&o.host)
    );
    assert!(
        iptables_cni_lines(&r.host).is_empty(),
        "{:?}",
        iptables_cni_lines(&r.host)
    );
}

#[test]
fn legacy_versions_0_1_0_and_0_2_0_dual_stack() {
    // The pre-0.3 shape (ip4/ip6, no interfaces): nothing random in it, so
    // the results must be identical.
    for v in ["0.1.0", "0.2.0"] {
        let tag = if v == "0.1.0" { "v010" } else { "v020" };
        let mut case = Case::new(tag, v, json!({"isDefaultGateway": true}));
        case.subnets = Some(&["10.88.0.0/24", "fd00:88::/64"]);
        let (o, r) = sides(tag);
        let mut res = Vec::new();
        for s in [&o, &r] {
            let out = s.call("ADD", &case.conf(&s.host), &[]);
            out.assert_success();
            res.push(out.expect_json().clone());
        }
        assert_json_eq(&res[0], &res[1]);
        assert_eq!(res[0]["ip4"]["ip"], "10.88.0.2/24", "{v}: {}", res[0]);
        assert_same_ctr_state(
            ctr_state(&o.ctr, "eth0"),
            ctr_state(&r.ctr, "eth0"),
            &case.conf(&o.host),
        );
        for s in [&o, &r] {
            s.call("DEL", &case.conf(&s.host), &[]).assert_success();
            assert_eq!(s.ctr.link_names(), ["lo"]);
        }
    }
}

#[test]
fn enabledad_dual_stack_1_0_0() {
    let mut c = Case::new(
        "dad",
        "1.0.0",
        json!({"enabledad": true, "isGateway": true}),
    );
    c.subnets = Some(&["10.88.0.0/24", "fd00:88::/64"]);
    agree(c);
}

#[test]
fn macspoofchk_same_effect_other_table() {
    let case = Case::new(
        "spoof",
        "1.0.0",
        json!({"isGateway": true, "macspoofchk": true}),
    );
    let (o, r) = sides(case.tag);
    let mut results = Vec::new();
    for s in [&o, &r] {
        let out = s.call("ADD", &case.conf(&s.host), &[]);
        out.assert_success();
        results.push(out.expect_json().clone());
    }
    let no = normalize(&o, &case, &results[0]);
    let nr = normalize(&r, &case, &results[1]);
    assert_json_eq(&no, &without_reference_empty_dns(&case, &no, &nr));
    assert_same_ctr_state(
        ctr_state(&o.ctr, "eth0"),
        ctr_state(&r.ctr, "eth0"),
        &case.conf(&o.host),
    );

    // Deliberate: our table `bridge nuage` (sets), the reference's chains
    // in `bridge nat`.
    assert_eq!(nft_elements_with(&o.host, &host_veth(&results[0])).len(), 2);
    let tables = |s: &Side| s.host.netns().exec_ok("nft", &["list", "tables"]);
    assert!(tables(&o).contains("table bridge nuage") && !tables(&o).contains("bridge nat"));
    assert!(tables(&r).contains("table bridge nat"), "{}", tables(&r));

    // Same effect: frames from another MAC are dropped.
    for s in [&o, &r] {
        assert!(reaches(&s.ctr, "10.88.0.1"), "{}", s.label);
        s.ctr
            .ip(&["link", "set", "eth0", "address", "02:de:ad:00:00:01"]);
        s.ctr.ip(&["neigh", "flush", "all"]);
        s.host.netns().ip(&["neigh", "flush", "all"]);
        assert!(unreachable(&s.ctr, "10.88.0.1"), "{}: spoofed MAC", s.label);
    }
    // DEL removes both implementations' entries.
    for (s, res) in [(&o, &results[0]), (&r, &results[1])] {
        s.call("DEL", &with_prev(&case.conf(&s.host), res), &[])
            .assert_success();
    }
    assert!(
        nft_elements(&o.host).is_empty(),
        "{:?}",
        nft_elements(&o.host)
    );
    let rest = r
        .host
        .netns()
        .exec_ok("nft", &["list", "table", "bridge", "nat"]);
    assert!(!rest.contains("cni-br-iface"), "{rest}");
}

#[test]
fn bridge_mac_stays_ours_and_moves_with_the_reference() {
    // Deliberate: without isGateway the reference bridge MAC follows the
    // lowest port MAC (with isGateway it pins it, as we always do),
    // so it can change when a container joins; ours never does.
    let (o, r) = sides("brmac");
    let case = Case::new("brmac", "1.0.0", json!({}));
    let low = "02:00:00:00:00:01"; // lower than any random veth MAC
    let mut macs = Vec::new();
    for s in [&o, &r] {
        let conf = case.conf(&s.host);
        s.call("ADD", &conf, &[]).assert_success();
        let before = host_link(&s.host, "br-diff")["address"].clone();
        let c2 = s.host.container(&format!("{}-2", s.label));
        let out = cni(
            &s.host,
            &s.bin,
            "ADD",
            "ctr-2",
            Some(c2.path_str()),
            &conf,
            &[],
        );
        out.assert_success();
        // Give the second port a very low MAC, as a new port may have.
        s.host
            .netns()
            .ip(&["link", "set", &host_veth(out.expect_json()), "address", low]);
        macs.push((before, host_link(&s.host, "br-diff")["address"].clone()));
    }
    assert_eq!(macs[0].0, macs[0].1, "our bridge MAC never changes");
    assert_eq!(
        macs[1].1, low,
        "the reference's bridge took the new low MAC"
    );
}

// ---------------------------------------------------------------------------
// Failures: both refuse; we leave nothing behind.
// ---------------------------------------------------------------------------

#[test]
fn ipam_default_route_plus_default_gateway_fails_on_both() {
    // IPAM gives a default route without a gateway, and isDefaultGateway
    // adds one with the gateway: both implementations add both routes and
    // the second is EEXIST (the reference's behaviour, kept).
    let case = Case::new("dupdef", "1.0.0", json!({"isDefaultGateway": true}));
    let (o, r) = sides(case.tag);
    let mut outs = Vec::new();
    for s in [&o, &r] {
        let mut conf = case.conf(&s.host);
        conf["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        outs.push(s.call("ADD", &conf, &[]));
    }
    let eo = err(&outs[0], 999);
    let er = err(&outs[1], 999);
    assert!(eo.contains("0.0.0.0/0") && eo.contains("exists"), "{eo}");
    assert!(er.contains("file exists"), "{er}");
    // Deliberate: we undo the whole ADD; the reference leaves the bridge and
    // the veth (it releases the address).
    assert_eq!(host_links(&o.host), ["lo"]);
    assert_eq!(o.ctr.link_names(), ["lo"]);
    assert!(leases(&o.host, "diffnet").is_empty());
    assert!(host_links(&r.host).contains(&"br-diff".to_string()));
    assert_eq!(ports_of(&r.host, "br-diff").len(), 1);
    assert!(leases(&r.host, "diffnet").is_empty());
}

#[test]
fn refusals_agree_in_substance() {
    let (o, r) = sides("refuse");
    let base = Case::new("refuse", "1.0.0", json!({}));
    let run = |s: &Side, extra: Value| -> PluginOutput {
        s.call("ADD", &merge(base.conf(&s.host), extra), &[])
    };

    // hairpinMode + promiscMode: same message (the reference ends it with
    // a period); deliberate: ours is a config error, code 7.
    let e = err(
        &run(&o, json!({"hairpinMode": true, "promiscMode": true})),
        7,
    );
    assert_eq!(
        e,
        "cannot set hairpin mode and promiscuous mode at the same time"
    );
    let e = err(
        &run(&r, json!({"hairpinMode": true, "promiscMode": true})),
        999,
    );
    assert_eq!(
        e,
        "cannot set hairpin mode and promiscuous mode at the same time."
    );

    // A bridge name taken by a non-bridge link.
    for s in [&o, &r] {
        s.host.netns().ip(&[
            "link",
            "add",
            "br-taken",
            "type",
            "veth",
            "peer",
            "name",
            "br-taken-p",
        ]);
    }
    let e = err(&run(&o, json!({"bridge": "br-taken"})), 999);
    assert_eq!(e, "\"br-taken\" already exists but is not a bridge");
    let e = err(&run(&r, json!({"bridge": "br-taken"})), 999);
    assert!(
        e.ends_with("\"br-taken\" already exists but is not a bridge"),
        "{e}"
    );

    // CNI_IFNAME already in the container. Deliberate: our wording, and we
    // do not create the bridge first (the reference does and leaves it).
    for s in [&o, &r] {
        s.ctr.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth9",
        ]);
    }
    let e = err(&run(&o, json!({})), 999);
    assert_eq!(e, "container veth name \"eth0\" already exists");
    let e = err(&run(&r, json!({})), 999);
    assert_eq!(e, "container veth name provided (eth0) already exists");
    assert!(o.host.netns().link("br-diff").is_none());
    assert!(r.host.netns().link("br-diff").is_some());
    for s in [&o, &r] {
        assert!(leases(&s.host, "diffnet").is_empty(), "{}", s.label);
    }
    // Deliberate: our error replies carry cniVersion, the reference's not.
    let out = run(&o, json!({}));
    assert_eq!(out.expect_json()["cniVersion"], "1.0.0");
    assert!(run(&r, json!({})).expect_json().get("cniVersion").is_none());
}

#[test]
fn del_and_check_without_add_agree() {
    let (o, r) = sides("noadd");
    let case = Case::new("noadd", "1.0.0", json!({"isGateway": true}));
    for s in [&o, &r] {
        let conf = case.conf(&s.host);
        // DEL of something never added: fine, also without a netns.
        s.call("DEL", &conf, &[]).assert_success();
        let out = cni(&s.host, &s.bin, "DEL", CID, None, &conf, &[]);
        out.assert_success();
    }
    // CHECK without prevResult: both refuse. The reference runs IPAM CHECK
    // first, which fails first (nothing allocated); so do we.
    let mut msgs = Vec::new();
    for s in [&o, &r] {
        let out = s.call("CHECK", &case.conf(&s.host), &[]);
        out.assert_failure();
        msgs.push(out.expect_json()["msg"].as_str().unwrap_or("").to_string());
    }
    assert!(
        msgs[1].contains("Failed to find address added by container"),
        "{msgs:?}"
    );
    assert!(msgs[0].contains(CID), "{msgs:?}");
}
