//! host-local as an executable: the verbs end to end, in temp stores.

mod common;

use common::*;
use serde_json::json;

fn conf(t: &TempDir, version: &str) -> serde_json::Value {
    host_local_conf(
        version,
        t.str(),
        json!({"ranges": [[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd10::/64"}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd10::1"}]}),
    )
}

#[test]
fn add_check_del_lifecycle() {
    let t = TempDir::new("life");
    let c = conf(&t, "1.1.0");
    let out = Call::new(HOST_LOCAL, "ADD", "c1").run(&c);
    assert_eq!(out.ips(), ["10.10.0.2/24", "fd10::2/64"]);
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["ips"][0]["gateway"], "10.10.0.1");
    assert!(v["ips"][0].get("interface").is_none() && v.get("interfaces").is_none());
    assert_eq!(v["routes"][1], json!({"dst": "::/0", "gw": "fd10::1"}));
    let dir = t.path().join("net1");
    assert_eq!(leases(&dir)["10.10.0.2"], "c1\r\neth0");

    assert!(Call::new(HOST_LOCAL, "CHECK", "c1").run(&c).ok);
    let miss = Call::new(HOST_LOCAL, "CHECK", "c2").run(&c);
    assert_eq!(
        miss.err_msg(),
        "host-local: Failed to find address added by container c2"
    );

    // A second ADD of the same attachment is refused and changes nothing.
    let dup = Call::new(HOST_LOCAL, "ADD", "c1").run(&c);
    assert!(
        dup.err_msg()
            .contains("duplicate allocation is not allowed"),
        "{}",
        dup.stdout
    );
    assert_eq!(leases(&dir).len(), 2);

    // DEL is exact and idempotent, and needs no netns.
    let other = Call::new(HOST_LOCAL, "ADD", "c1").ifname("net1").run(&c);
    assert_eq!(other.ips(), ["10.10.0.3/24", "fd10::3/64"]);
    for _ in 0..2 {
        let mut cmd = Call::new(HOST_LOCAL, "DEL", "c1");
        cmd.ifname = "eth0";
        let out = cmd.run(&c);
        assert!(out.ok && out.stdout.is_empty(), "{out:?}");
    }
    assert_eq!(
        leases(&dir).keys().collect::<Vec<_>>(),
        ["10.10.0.3", "fd10::3"]
    );
    assert!(!Call::new(HOST_LOCAL, "CHECK", "c1").run(&c).ok);
    assert!(
        Call::new(HOST_LOCAL, "CHECK", "c1")
            .ifname("net1")
            .run(&c)
            .ok
    );
    // DEL of a network that never had a store creates nothing.
    let t2 = TempDir::new("life-empty");
    assert!(
        Call::new(HOST_LOCAL, "DEL", "zz")
            .run(&conf(&t2, "1.0.0"))
            .ok
    );
    assert!(!t2.path().join("net1").exists());
}

/// An ADD that fails after reserving an address (here: the second range
/// set's `last_reserved_ip.1` cannot be written) leaves no lease behind,
/// and the index stays right: the retried ADD succeeds, and CHECK and DEL
/// see its addresses.
#[test]
fn a_failing_add_leaves_no_lease() {
    let t = TempDir::new("hintfail");
    let c = conf(&t, "1.1.0");
    let dir = t.path().join("net1");
    assert!(Call::new(HOST_LOCAL, "ADD", "c0").run(&c).ok);
    std::fs::remove_file(dir.join("last_reserved_ip.1")).unwrap();
    std::fs::create_dir(dir.join("last_reserved_ip.1")).unwrap();
    let out = Call::new(HOST_LOCAL, "ADD", "c1").run(&c);
    assert!(!out.ok, "{out:?}");
    assert_eq!(
        leases(&dir).keys().collect::<Vec<_>>(),
        ["10.10.0.2", "fd10::2"],
        "only c0's leases"
    );
    assert!(Call::new(HOST_LOCAL, "DEL", "c1").run(&c).ok);
    std::fs::remove_dir(dir.join("last_reserved_ip.1")).unwrap();
    let again = Call::new(HOST_LOCAL, "ADD", "c1").run(&c);
    assert!(again.ok, "{again:?}");
    assert_eq!(leases(&dir).len(), 4);
    assert!(Call::new(HOST_LOCAL, "CHECK", "c1").run(&c).ok);
    assert!(Call::new(HOST_LOCAL, "DEL", "c1").run(&c).ok);
    assert_eq!(leases(&dir).len(), 2);
}

#[test]
fn results_in_every_version() {
    let t = TempDir::new("versions");
    for (i, v) in [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ]
    .iter()
    .enumerate()
    {
        let ipam = json!({"subnet": "10.20.0.0/24"});
        let c = host_local_conf(v, t.str(), ipam);
        let id = format!("v{i}");
        let out = Call::new(HOST_LOCAL, "ADD", &id).run(&c);
        assert!(out.ok, "{v}: {}", out.stdout);
        let j = out.json();
        assert_eq!(j["cniVersion"], *v);
        let addr = format!("10.20.0.{}/24", i + 2);
        if v.starts_with("0.1") || v.starts_with("0.2") {
            assert_eq!(j["ip4"]["ip"], addr.as_str());
        } else {
            assert_eq!(j["ips"][0]["address"], addr.as_str());
        }
    }
}

#[test]
fn requested_addresses() {
    let t = TempDir::new("req");
    let mut c = conf(&t, "1.0.0");
    // CNI_ARGS, args.cni.ips and the ips capability are merged.
    let out = Call::new(HOST_LOCAL, "ADD", "a")
        .args("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.10.0.50")
        .run(&c);
    assert_eq!(out.ips(), ["10.10.0.50/24", "fd10::2/64"]);
    c["args"] = json!({"cni": {"ips": ["10.10.0.60"]}});
    c["runtimeConfig"] = json!({"ips": ["fd10::60/64"]});
    let out = Call::new(HOST_LOCAL, "ADD", "b").run(&c);
    assert_eq!(out.ips(), ["10.10.0.60/24", "fd10::60/64"]);
    // Taken, gateway, outside every range: code 111, nothing changes.
    let dir = t.path().join("net1");
    let before = leases(&dir);
    for (args, msg) in [
        (
            "IP=10.10.0.50",
            "requested IP address 10.10.0.50 is not available",
        ),
        ("IP=10.10.0.1", "requested ip 10.10.0.1 is subnet's gateway"),
        (
            "IP=192.168.1.1",
            "failed to allocate all requested IPs: 192.168.1.1",
        ),
    ] {
        let c = conf(&t, "1.0.0");
        let out = Call::new(HOST_LOCAL, "ADD", "x").args(args).run(&c);
        assert_eq!(out.err_code(), 111, "{args}");
        assert!(out.err_msg().contains(msg), "{args}: {}", out.stdout);
        assert_eq!(leases(&dir), before);
    }
    // The details say why a requested address is not in the network.
    let out = Call::new(HOST_LOCAL, "ADD", "x")
        .args("IP=192.168.1.1")
        .run(&conf(&t, "1.0.0"));
    assert!(
        out.stdout
            .contains("192.168.1.1 is in none of the network's subnets"),
        "{}",
        out.stdout
    );
    // Unknown CNI_ARGS keys without IgnoreUnknown.
    let out = Call::new(HOST_LOCAL, "ADD", "x")
        .args("FOO=bar")
        .run(&conf(&t, "1.0.0"));
    assert_eq!(out.err_msg(), r#"ARGS: unknown args ["FOO=bar"]"#);
}

#[test]
fn ip_ranges_capability_and_allocation_order() {
    let t = TempDir::new("order");
    let mut c = host_local_conf(
        "1.0.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.30.0.0/24", "rangeStart": "10.30.0.250"}, {"subnet": "10.31.0.0/30"}]]}),
    );
    let got: Vec<String> = (0..6)
        .map(|i| Call::new(HOST_LOCAL, "ADD", &format!("o{i}")).run(&c).ips()[0].clone())
        .collect();
    assert_eq!(
        got,
        [
            "10.30.0.250/24",
            "10.30.0.251/24",
            "10.30.0.252/24",
            "10.30.0.253/24",
            "10.30.0.254/24",
            "10.31.0.2/30"
        ]
    );
    let out = Call::new(HOST_LOCAL, "ADD", "o9").run(&c);
    assert_eq!(out.err_code(), 110);
    let msg = out.err_msg();
    assert!(msg.contains(
        "no IP addresses available in range set: 10.30.0.250-10.30.0.254,10.31.0.1-10.31.0.2"
    ));
    assert!(
        msg.contains("network \"net1\"") && msg.contains("6 of 6 addresses in use"),
        "{msg}"
    );
    // Release one: the cycle wraps to it.
    assert!(Call::new(HOST_LOCAL, "DEL", "o1").run(&c).ok);
    assert_eq!(
        Call::new(HOST_LOCAL, "ADD", "o9").run(&c).ips(),
        ["10.30.0.251/24"]
    );
    // The ipRanges capability is prepended as its own range set; a failure
    // in a later set rolls the earlier one back.
    c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "192.168.50.0/24"}]]});
    let dir = t.path().join("net1");
    let before = leases(&dir);
    assert_eq!(Call::new(HOST_LOCAL, "ADD", "cap").run(&c).err_code(), 110);
    assert_eq!(leases(&dir), before);
    assert!(Call::new(HOST_LOCAL, "DEL", "o2").run(&c).ok);
    // As the reference, last_reserved_ip is not rolled back: .3, not .2.
    assert_eq!(
        Call::new(HOST_LOCAL, "ADD", "cap").run(&c).ips(),
        ["192.168.50.3/24", "10.30.0.252/24"]
    );
}

#[test]
fn resolv_conf_becomes_dns() {
    let t = TempDir::new("dns");
    let rc = t.path().join("resolv.conf");
    // With a Latin-1 comment (not UTF-8), as the reference reads it.
    std::fs::write(
        &rc,
        b"# caf\xe9\nnameserver 10.0.0.53\nsearch a.example b.example\noptions ndots:2\ndomain example\n",
    )
    .unwrap();
    let c = host_local_conf(
        "1.0.0",
        t.str(),
        json!({"subnet": "10.40.0.0/24", "resolvConf": rc.to_str().unwrap()}),
    );
    let v = Call::new(HOST_LOCAL, "ADD", "d").run(&c).json();
    assert_eq!(
        v["dns"],
        json!({"nameservers": ["10.0.0.53"], "domain": "example", "search": ["a.example", "b.example"], "options": ["ndots:2"]})
    );
}

/// Empty strings where an address goes (templated configs) are no
/// address, and `IP=` without a value is no request, as for the reference.
#[test]
fn empty_values_are_absent() {
    let t = TempDir::new("empty");
    let c = host_local_conf(
        "1.0.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.41.0.0/24", "gateway": "", "rangeStart": "", "rangeEnd": ""}]],
               "routes": [{"dst": "0.0.0.0/0", "gw": ""}]}),
    );
    let out = Call::new(HOST_LOCAL, "ADD", "e1").args("IP=").run(&c);
    assert_eq!(out.ips(), ["10.41.0.2/24"], "{out:?}");
    let v = out.json();
    assert_eq!(v["ips"][0]["gateway"], "10.41.0.1");
    assert_eq!(v["routes"], json!([{"dst": "0.0.0.0/0"}]));
}

#[test]
fn gc_releases_what_is_not_valid() {
    let t = TempDir::new("gc");
    let c = conf(&t, "1.1.0");
    for id in ["keep", "gone1", "gone2"] {
        assert!(Call::new(HOST_LOCAL, "ADD", id).run(&c).ok);
    }
    let dir = t.path().join("net1");
    std::fs::write(dir.join("10.10.0.99"), "").unwrap(); // a reference ADD killed mid-write
    let mut g = c.clone();
    // Without the key, GC releases nothing.
    assert!(Call::new(HOST_LOCAL, "GC", "").run(&g).ok);
    assert_eq!(leases(&dir).len(), 7);
    g["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = Call::new(HOST_LOCAL, "GC", "").run(&g);
    assert!(out.ok && out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        leases(&dir).keys().collect::<Vec<_>>(),
        ["10.10.0.2", "fd10::2"]
    );
    for f in ["lock", "last_reserved_ip.0", "last_reserved_ip.1"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // The fallback key, and an empty list meaning "nothing is valid".
    let mut g2 = c.clone();
    g2["cni.dev/attachments"] = json!([]);
    assert!(Call::new(HOST_LOCAL, "GC", "").run(&g2).ok);
    assert!(leases(&dir).is_empty());
    // Allocation resumes after the last reserved address.
    assert_eq!(
        Call::new(HOST_LOCAL, "ADD", "new").run(&c).ips(),
        ["10.10.0.5/24", "fd10::5/64"]
    );
    // GC needs a 1.1.0 config.
    let old = Call::new(HOST_LOCAL, "GC", "").run(&conf(&t, "1.0.0"));
    assert_eq!(old.err_code(), 1);
}

#[test]
fn gc_with_ranges_only_from_the_capability() {
    let t = TempDir::new("gc-cap");
    let mut c = host_local_conf("1.1.0", t.str(), json!({}));
    c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.50.0.0/24"}]]});
    assert!(Call::new(HOST_LOCAL, "ADD", "a").run(&c).ok);
    // DEL needs no ranges either (a runtime may not pass the capability).
    assert!(Call::new(HOST_LOCAL, "ADD", "b").run(&c).ok);
    let bare = host_local_conf("1.1.0", t.str(), json!({}));
    assert!(Call::new(HOST_LOCAL, "DEL", "b").run(&bare).ok);
    assert_eq!(leases(&t.path().join("net1")).len(), 1);
    let mut g = bare.clone();
    g["cni.dev/valid-attachments"] = json!([]);
    let out = Call::new(HOST_LOCAL, "GC", "").run(&g);
    assert!(out.ok, "{out:?}");
    assert!(leases(&t.path().join("net1")).is_empty());
}

/// A config ADD refuses (an unknown key: a typo the reference's decoder
/// ignores; a range that no longer parses) must not keep DEL and GC from
/// releasing the leases it holds: the runtime would retry them forever.
#[test]
fn del_and_gc_release_under_a_config_that_add_refuses() {
    let t = TempDir::new("lenient");
    let c = conf(&t, "1.1.0");
    for id in ["a", "b"] {
        assert!(Call::new(HOST_LOCAL, "ADD", id).run(&c).ok);
    }
    let dir = t.path().join("net1");
    let mut typo = c.clone();
    typo["ipam"]["rangeStrat"] = json!("10.10.0.100");
    typo["ipam"]["ranges"] = json!([[{"subnet": "10.10.0.1/24"}]]);
    let add = Call::new(HOST_LOCAL, "ADD", "x").run(&typo);
    assert_eq!(add.err_code(), 7, "{add:?}");
    let out = Call::new(HOST_LOCAL, "DEL", "a").run(&typo);
    assert!(out.ok && out.stdout.is_empty(), "{out:?}");
    assert_eq!(leases(&dir).len(), 2, "b's leases only");
    typo["cni.dev/valid-attachments"] = json!([]);
    let out = Call::new(HOST_LOCAL, "GC", "").run(&typo);
    assert!(out.ok, "{out:?}");
    assert!(leases(&dir).is_empty());
    // A dataDir ADD refuses but the reference took (not normalized):
    // released where the reference reads it, `..` collapsed by its text
    // (here after a symlink, whose target's parent is elsewhere).
    assert!(Call::new(HOST_LOCAL, "ADD", "d").run(&c).ok);
    std::fs::create_dir_all(t.path().join("real/sub")).unwrap();
    std::os::unix::fs::symlink(t.path().join("real/sub"), t.path().join("link")).unwrap();
    let mut dotted = c.clone();
    dotted["ipam"]["dataDir"] = json!(format!("{}/link/..", t.str()));
    assert_eq!(Call::new(HOST_LOCAL, "ADD", "e").run(&dotted).err_code(), 7);
    let out = Call::new(HOST_LOCAL, "DEL", "d").run(&dotted);
    assert!(out.ok, "{out:?}");
    assert!(leases(&dir).is_empty());
}

/// Store failures say what to do: a dataDir under a file names the file.
#[test]
fn store_errors_say_what_to_fix() {
    let t = TempDir::new("fserr");
    let f = t.path().join("plain");
    std::fs::write(&f, "").unwrap();
    let c = host_local_conf(
        "1.0.0",
        f.join("leases").to_str().unwrap(),
        json!({"subnet": "10.10.0.0/24"}),
    );
    let out = Call::new(HOST_LOCAL, "ADD", "c1").run(&c);
    assert_eq!(out.err_code(), 999, "{out:?}");
    assert_eq!(
        out.json()["details"],
        format!(
            "{} is a file, not a directory: set ipam.dataDir to a directory",
            f.display()
        ),
        "{out:?}"
    );
}

#[test]
fn status_reports_readiness() {
    let t = TempDir::new("status");
    let c = conf(&t, "1.1.0");
    let out = Call::new(HOST_LOCAL, "STATUS", "").run(&c);
    assert!(out.ok && out.stdout.is_empty(), "{out:?}");
    assert!(!t.path().join("net1").exists(), "STATUS must not write");
    let bad = host_local_conf("1.1.0", t.str(), json!({"subnet": "10.0.0.1/24"}));
    let out = Call::new(HOST_LOCAL, "STATUS", "").run(&bad);
    assert_eq!(out.err_code(), 50);
    assert!(out.err_msg().contains("host bits set"), "{}", out.stdout);
    // A store under a file cannot be created.
    let f = t.path().join("file");
    std::fs::write(&f, "").unwrap();
    let c = host_local_conf(
        "1.1.0",
        f.to_str().unwrap(),
        json!({"subnet": "10.0.0.0/24"}),
    );
    assert_eq!(Call::new(HOST_LOCAL, "STATUS", "").run(&c).err_code(), 50);
    // A store on /proc (writable to root by access(2), but it takes no
    // files), and a resolvConf ADD cannot read: ADD would fail.
    let c = host_local_conf(
        "1.1.0",
        "/proc/nuage-store",
        json!({"subnet": "10.0.0.0/24"}),
    );
    let out = Call::new(HOST_LOCAL, "STATUS", "").run(&c);
    assert_eq!(out.err_code(), 50, "{out:?}");
    assert!(
        out.err_msg().contains("a proc filesystem"),
        "{}",
        out.stdout
    );
    let c = host_local_conf(
        "1.1.0",
        t.str(),
        json!({"subnet": "10.0.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
    );
    let out = Call::new(HOST_LOCAL, "STATUS", "").run(&c);
    assert_eq!(out.err_code(), 50, "{out:?}");
    assert!(
        out.err_msg().contains("/nonexistent/resolv.conf"),
        "{}",
        out.stdout
    );
}

#[test]
fn version_and_about() {
    let out = Call::new(HOST_LOCAL, "VERSION", "").run(&json!({"cniVersion": "1.0.0"}));
    let v = out.json();
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
}

#[test]
fn three_range_sets_and_legacy_leases() {
    // More addresses than an index slot holds inline: looked up by a scan.
    let t = TempDir::new("three");
    let c = host_local_conf(
        "1.0.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.11.0.0/24"}], [{"subnet": "10.12.0.0/24"}], [{"subnet": "fd11::/64"}]]}),
    );
    let out = Call::new(HOST_LOCAL, "ADD", "tri").run(&c);
    assert_eq!(out.ips(), ["10.11.0.2/24", "10.12.0.2/24", "fd11::2/64"]);
    assert!(!Call::new(HOST_LOCAL, "ADD", "tri").run(&c).ok, "duplicate");
    assert!(Call::new(HOST_LOCAL, "CHECK", "tri").run(&c).ok);
    assert!(Call::new(HOST_LOCAL, "DEL", "tri").run(&c).ok);
    let dir = t.path().join("net1");
    assert!(leases(&dir).is_empty());
    // A legacy id-only lease (very old reference versions): CHECK finds it,
    // DEL releases it when the attachment holds nothing else.
    std::fs::write(dir.join("10.11.0.77"), "old").unwrap();
    assert!(Call::new(HOST_LOCAL, "CHECK", "old").run(&c).ok);
    assert!(
        !Call::new(HOST_LOCAL, "ADD", "old").run(&c).ok,
        "legacy lease is a duplicate"
    );
    assert!(Call::new(HOST_LOCAL, "DEL", "old").run(&c).ok);
    assert!(leases(&dir).is_empty());
}
