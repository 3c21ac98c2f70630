//! Differential tests against the reference plugins in /usr/lib/cni (v1.1.1,
//! spec <= 1.0.0): same results, and one store shared by both
//! implementations with no duplicate and each honouring the other's leases.
//! Skipped (with a note) when the reference binaries are not installed.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

macro_rules! need_reference {
    () => {
        if !have_reference() {
            eprintln!("reference plugins not installed in /usr/lib/cni: skipped");
            return;
        }
    };
}

/// A result with the v1.1.1 reference's always-present empty `dns` removed.
fn normalized(out: &Out) -> Value {
    let mut v = out.json();
    if v.get("dns") == Some(&json!({})) {
        v.as_object_mut().unwrap().remove("dns");
    }
    v
}

/// Runs the same step on both implementations, each with its own store, and
/// asserts the same outcome (the same result, or both failing).
struct Twin {
    ours: TempDir,
    theirs: TempDir,
}

impl Twin {
    fn new(tag: &str) -> Twin {
        Twin {
            ours: TempDir::new(&format!("{tag}-ours")),
            theirs: TempDir::new(&format!("{tag}-ref")),
        }
    }

    fn step(&self, cmd: &str, id: &str, args: &str, ipam: &Value, extra: &Value) -> Value {
        let run = |bin: &str, dir: &TempDir| {
            let mut c = host_local_conf("1.0.0", dir.str(), ipam.clone());
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            Call::new(bin, cmd, id).args(args).run(&c)
        };
        let a = run(HOST_LOCAL, &self.ours);
        let b = run(REF_HOST_LOCAL, &self.theirs);
        assert_eq!(
            a.ok, b.ok,
            "{cmd} {id} {args}: ours {} / reference {}",
            a.stdout, b.stdout
        );
        if a.ok && cmd == "ADD" {
            assert_eq!(normalized(&a), normalized(&b), "{cmd} {id} {args}");
        }
        assert_eq!(
            leases(&self.ours.path().join("net1")),
            leases(&self.theirs.path().join("net1")),
            "stores differ after {cmd} {id} {args}"
        );
        if a.ok {
            a.json()
        } else {
            Value::Null
        }
    }
}

#[test]
fn same_addresses_in_the_same_order() {
    need_reference!();
    let twin = Twin::new("order");
    let none = json!({});
    let ipam = json!({
        "ranges": [
            [{"subnet": "10.80.0.0/28", "rangeStart": "10.80.0.4", "rangeEnd": "10.80.0.9"},
             {"subnet": "10.81.0.0/30"}],
            [{"subnet": "fd80::/124", "gateway": "fd80::5"}]
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.80.0.1"}, {"dst": "fd99::/64"}]
    });
    for i in 0..7 {
        twin.step("ADD", &format!("c{i}"), "", &ipam, &none);
    }
    // Exhausted on both, then freed addresses come round again in order.
    twin.step("ADD", "full", "", &ipam, &none);
    for i in [1, 4, 2] {
        twin.step("DEL", &format!("c{i}"), "", &ipam, &none);
    }
    for i in 10..13 {
        twin.step("ADD", &format!("c{i}"), "", &ipam, &none);
    }
    twin.step("DEL", "never-added", "", &ipam, &none);
    twin.step("DEL", "c12", "", &ipam, &none);
    // Requested addresses: CNI_ARGS, args and the ips capability.
    twin.step("ADD", "r1", "IP=10.81.0.2", &ipam, &none);
    twin.step("DEL", "c0", "", &ipam, &none);
    twin.step(
        "ADD",
        "r2",
        "",
        &ipam,
        &json!({"runtimeConfig": {"ips": ["10.80.0.4"]}}),
    );
    twin.step(
        "ADD",
        "r3",
        "",
        &ipam,
        &json!({"args": {"cni": {"ips": ["10.80.0.4"]}}}),
    );
    twin.step("ADD", "r4", "IP=10.80.0.1", &ipam, &none);
    // Duplicate ADD, CHECK.
    twin.step("ADD", "c3", "", &ipam, &none);
    twin.step("CHECK", "c3", "", &ipam, &none);
    twin.step("CHECK", "c1", "", &ipam, &none);
}

#[test]
fn same_results_for_common_configs() {
    need_reference!();
    let none = json!({});
    let configs = [
        json!({"subnet": "10.90.0.0/16"}),
        json!({"subnet": "10.90.0.0/24", "rangeStart": "10.90.0.100", "rangeEnd": "10.90.0.110", "gateway": "10.90.0.254"}),
        json!({"ranges": [[{"subnet": "fd90::/64"}]], "routes": [{"dst": "::/0"}]}),
        json!({"ranges": [[{"subnet": "10.91.0.0/24"}], [{"subnet": "fd91::/64"}], [{"subnet": "10.92.0.0/24"}]]}),
    ];
    for (i, ipam) in configs.iter().enumerate() {
        let twin = Twin::new(&format!("cfg{i}"));
        for j in 0..3 {
            twin.step("ADD", &format!("x{j}"), "", ipam, &none);
        }
        twin.step(
            "ADD",
            "cap",
            "",
            ipam,
            &json!({"runtimeConfig": {"ipRanges": [[{"subnet": "192.168.9.0/24"}]]}}),
        );
    }
    // Both refuse what the reference refuses.
    for bad in [
        json!({"subnet": "10.0.0.0/31"}),
        json!({"subnet": "10.0.0.1/24"}),
        json!({"ranges": [[]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}),
    ] {
        Twin::new("bad").step("ADD", "b", "", &bad, &none);
    }
}

#[test]
fn one_store_shared_by_both_implementations() {
    need_reference!();
    let t = TempDir::new("shared");
    let c = host_local_conf(
        "1.0.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.95.0.0/24"}], [{"subnet": "fd95::/120"}]]}),
    );
    let dir = t.path().join("net1");
    let mut seen = BTreeSet::new();
    // Alternate implementations: allocation continues where the other left off.
    for i in 0..12 {
        let expect = i + 2;
        let bin = if i % 2 == 0 {
            HOST_LOCAL
        } else {
            REF_HOST_LOCAL
        };
        let id = format!("s{i}");
        let ips = Call::new(bin, "ADD", &id).run(&c).ips();
        assert_eq!(
            ips,
            [
                format!("10.95.0.{expect}/24"),
                format!("fd95::{expect:x}/120")
            ],
            "{bin}"
        );
        for ip in ips {
            assert!(seen.insert(ip.clone()), "duplicate {ip}");
        }
    }
    // Each honours the other's leases: CHECK finds them, a second ADD is a
    // duplicate, a requested address that the other holds is refused.
    for (mine, other, id) in [
        (HOST_LOCAL, REF_HOST_LOCAL, "s1"),
        (REF_HOST_LOCAL, HOST_LOCAL, "s0"),
    ] {
        assert!(Call::new(mine, "CHECK", id).run(&c).ok, "{mine} CHECK {id}");
        let dup = Call::new(mine, "ADD", id).run(&c);
        assert!(
            !dup.ok && dup.err_msg().contains("duplicate allocation"),
            "{mine}: {}",
            dup.stdout
        );
        let holder_ip = if id == "s1" { "10.95.0.3" } else { "10.95.0.2" };
        let taken = Call::new(mine, "ADD", "intruder")
            .args(&format!("IP={holder_ip}"))
            .run(&c);
        assert!(!taken.ok, "{mine} handed out {holder_ip} held via {other}");
    }
    // Each releases the other's leases, and nothing else.
    assert!(Call::new(HOST_LOCAL, "DEL", "s1").run(&c).ok);
    assert!(Call::new(REF_HOST_LOCAL, "DEL", "s2").run(&c).ok);
    let left = leases(&dir);
    assert!(!left.contains_key("10.95.0.3") && !left.contains_key("10.95.0.4"));
    assert_eq!(left.len(), 20);
    assert!(!Call::new(REF_HOST_LOCAL, "CHECK", "s1").run(&c).ok);
    assert!(!Call::new(HOST_LOCAL, "CHECK", "s2").run(&c).ok);
    // nuage's index never matches the reference's content comparisons: a
    // reference DEL of an unknown container removes nothing.
    assert!(Call::new(REF_HOST_LOCAL, "DEL", "nobody").run(&c).ok);
    assert!(dir.join(".nuage/index").exists());
    assert_eq!(leases(&dir).len(), 20);
    // Our ADD after the reference's DEL: continues after the last address.
    assert_eq!(
        Call::new(HOST_LOCAL, "ADD", "n1").run(&c).ips()[0],
        "10.95.0.14/24"
    );
    assert_eq!(
        Call::new(REF_HOST_LOCAL, "ADD", "n2").run(&c).ips()[0],
        "10.95.0.15/24"
    );
    assert_eq!(
        Call::new(HOST_LOCAL, "ADD", "n3").run(&c).ips()[0],
        "10.95.0.16/24"
    );
}

#[test]
fn both_implementations_at_once() {
    need_reference!();
    let t = TempDir::new("both");
    let c = host_local_conf("1.0.0", t.str(), json!({"subnet": "10.96.0.0/24"}));
    let children: Vec<_> = (0..64)
        .map(|i| {
            let bin = if i % 2 == 0 {
                HOST_LOCAL
            } else {
                REF_HOST_LOCAL
            };
            let id = format!("m{i}");
            (id.clone(), Call::new(bin, "ADD", &id).spawn(&c))
        })
        .collect();
    let mut seen = BTreeSet::new();
    for (id, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let ip = v["ips"][0]["address"].as_str().unwrap().to_string();
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
    }
    let l = leases(&t.path().join("net1"));
    assert_eq!(l.len(), 64);
    assert_eq!(l.values().collect::<BTreeSet<_>>().len(), 64);
}

#[test]
fn static_same_results() {
    need_reference!();
    let cases = [
        (
            json!({"addresses": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}, {"address": "fd00::3/64"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}],
                "dns": {"nameservers": ["10.1.2.53"], "domain": "example", "search": ["a"], "options": ["ndots:1"]}}),
            json!({}),
            "",
        ),
        (
            json!({"addresses": [{"address": "10.1.2.3/24"}]}),
            json!({}),
            "IP=192.168.7.7/24,10.5.0.5/16;GATEWAY=192.168.7.1",
        ),
        // GATEWAY in the subnet of a configured address, with and without
        // its own gateway: only IP= addresses take it.
        (
            json!({"addresses": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}, {"address": "10.1.3.3/24"}]}),
            json!({}),
            "IP=10.1.2.9/24;GATEWAY=10.1.2.254,10.1.3.254",
        ),
        (
            json!({"addresses": [{"address": "10.1.2.3/24"}]}),
            json!({"args": {"cni": {"ips": ["10.9.9.9/8"]}}}),
            "",
        ),
        (
            json!({"addresses": [{"address": "10.1.2.3/24"}]}),
            json!({"args": {"cni": {"ips": ["10.9.9.9/8"]}}, "runtimeConfig": {"ips": ["172.16.0.9/12", "fd00::9/64"]}}),
            "",
        ),
        (
            json!({"addresses": [{"address": "10.1.2.3/32", "gateway": "10.1.2.1"}]}),
            json!({}),
            "",
        ),
    ];
    for (ipam, extra, args) in cases {
        let mut ipam = ipam;
        ipam["type"] = json!("static");
        let mut c = json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let a = Call::new(STATIC, "ADD", "c").args(args).run(&c);
        let b = Call::new(REF_STATIC, "ADD", "c").args(args).run(&c);
        assert!(
            a.ok && b.ok,
            "{c}: ours {} / reference {}",
            a.stdout,
            b.stdout
        );
        assert_eq!(normalized(&a), normalized(&b), "{c} {args}");
        // CHECK with the ADD result as prevResult passes on both.
        let mut chk = c.clone();
        chk["prevResult"] = a.json();
        assert!(Call::new(STATIC, "CHECK", "c").args(args).run(&chk).ok);
        assert!(Call::new(REF_STATIC, "CHECK", "c").args(args).run(&chk).ok);
        assert!(Call::new(STATIC, "DEL", "c").args(args).run(&c).ok);
    }
}
