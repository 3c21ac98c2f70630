//! Every malformed request gets a CNI error (exit status 1, the error JSON on
//! stdout with the right code) and changes nothing on disk.

mod common;

use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

/// Runs ADD with `conf` against a store that already holds a lease, from a
/// scratch working directory; asserts the error code and that neither the
/// store nor the working directory changed.
fn refused(bin: &str, conf: Value, args: &str, code: u64, msg_part: &str) {
    let t = TempDir::new("bad");
    let cwd = TempDir::new("bad-cwd");
    let good = host_local_conf("1.0.0", t.str(), json!({"subnet": "10.99.0.0/24"}));
    assert!(Call::new(HOST_LOCAL, "ADD", "existing").run(&good).ok);
    let conf = substitute(conf, t.str());
    let before = (snapshot(t.path()), snapshot(cwd.path()));
    let call = Call::new(bin, "ADD", "victim").args(args);
    let out = call
        .command()
        .current_dir(cwd.path())
        .stdin(Stdio::piped())
        .spawn()
        .map(|mut child| {
            use std::io::Write;
            let _ = child
                .stdin
                .take()
                .unwrap()
                .write_all(conf.to_string().as_bytes());
            child.wait_with_output().unwrap()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{conf}: {stdout}");
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{conf}: not JSON ({e}): {stdout}"));
    assert_eq!(v["code"], code, "{conf}: {stdout}");
    let msg = format!(
        "{} {}",
        v["msg"].as_str().unwrap_or(""),
        v["details"].as_str().unwrap_or("")
    );
    assert!(
        msg.contains(msg_part),
        "{conf}: expected {msg_part:?} in {stdout}"
    );
    assert_eq!(
        (snapshot(t.path()), snapshot(cwd.path())),
        before,
        "{conf}: the disk changed"
    );
}

/// Replaces the "DATADIR" placeholder with the test's store root.
fn substitute(v: Value, dir: &str) -> Value {
    serde_json::from_str(&v.to_string().replace("DATADIR", dir)).unwrap()
}

fn hl(ipam: Value) -> Value {
    let mut ipam = ipam;
    if ipam.get("type").is_none() {
        ipam["type"] = json!("host-local");
    }
    if ipam.get("dataDir").is_none() {
        ipam["dataDir"] = json!("DATADIR");
    }
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam})
}

#[test]
fn host_local_bad_ranges() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"subnet": "10.0.0.0/33"}),
            "invalid CIDR address: 10.0.0.0/33",
        ),
        (json!({"subnet": "bogus"}), "invalid CIDR address: bogus"),
        (
            json!({"subnet": "10.0.0.0"}),
            "invalid CIDR address: 10.0.0.0",
        ),
        (
            json!({"subnet": "10.0.0.1/24"}),
            "Network has host bits set",
        ),
        (
            json!({"subnet": "10.0.0.0/31"}),
            "too small to allocate from",
        ),
        (
            json!({"ranges": [[{"subnet": "fd00::/64", "gateway": "10.0.0.1"}]]}),
            "gateway 10.0.0.1 not in network fd00::/64",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}),
            "gateway 10.0.1.1 not in network",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}),
            "RangeStart 10.0.1.1 not in network",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeEnd": "fd00::1"}),
            "RangeEnd fd00::1 not in network",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"}),
            "is after RangeEnd",
        ),
        (json!({"ranges": []}), "no IP ranges specified"),
        (json!({"ranges": [[]]}), "empty range set"),
        (json!({}), "no IP ranges specified"),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            "mixed address families",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.128/25"}]]}),
            "overlap",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/16"}]]}),
            "range set 0 overlaps with 1",
        ),
        (
            json!({"ranges": [[{"rangeStart": "10.0.0.5"}]]}),
            "subnet is required",
        ),
        (json!({"gateway": "10.0.0.1"}), "ipam.subnet is not"),
    ];
    for (ipam, msg) in cases {
        refused(HOST_LOCAL, hl(ipam), "", 7, msg);
    }
}

#[test]
fn host_local_unknown_keys_and_types() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"subnet": "10.0.0.0/24", "rangestart": "10.0.0.5"}),
            "unknown key \"rangestart\"",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "foo": 1}),
            "the keys of host-local are: type, subnet",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "start": "10.0.0.5"}]]}),
            "ipam.ranges[0][0]: unknown key \"start\"",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0", "via": "x"}]}),
            "unknown key \"via\"",
        ),
        (json!({"subnet": 5}), "ipam.subnet must be a string, got 5"),
        (
            json!({"subnet": "10.0.0.0/24", "gateway": ["10.0.0.1"]}),
            "ipam.gateway must be a string",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeStart": 1}),
            "ipam.rangeStart must be a string",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "dataDir": true}),
            "ipam.dataDir must be a string",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "resolvConf": {}}),
            "ipam.resolvConf must be a string",
        ),
        (
            json!({"ranges": "10.0.0.0/24"}),
            "ipam.ranges must be a list",
        ),
        (
            json!({"ranges": [{"subnet": "10.0.0.0/24"}]}),
            "ipam.ranges[0] must be a list of ranges",
        ),
        (
            json!({"ranges": [["10.0.0.0/24"]]}),
            "ipam.ranges[0][0] must be an object",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "routes": {"dst": "0.0.0.0/0"}}),
            "ipam.routes must be a list",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0"}]}),
            "invalid CIDR address",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}),
            "same address family",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "type": 3}),
            "ipam.type must be a string",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
            "resolvConf /nonexistent",
        ),
    ];
    for (ipam, msg) in cases {
        refused(HOST_LOCAL, hl(ipam), "", 7, msg);
    }
    // The spec 1.1.0 route keys are checked from 1.1.0 on (before, they
    // are not read, as by the reference).
    let mut v11 = hl(json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "::/0", "mtu": -1}]}));
    v11["cniVersion"] = json!("1.1.0");
    refused(HOST_LOCAL, v11, "", 7, "non-negative integer");
}

#[test]
fn host_local_path_tricks() {
    for d in [
        "relative/dir",
        "DATADIR/../escape",
        "DATADIR/./x",
        "DATADIR/a\u{0}b",
        "..",
    ] {
        refused(
            HOST_LOCAL,
            hl(json!({"subnet": "10.0.0.0/24", "dataDir": d})),
            "",
            7,
            "ipam.dataDir",
        );
    }
    for name in ["../net1", "a/b", ".hidden", "net 1", "net\u{0}1"] {
        let mut c = hl(json!({"subnet": "10.0.0.0/24"}));
        c["name"] = json!(name);
        refused(
            HOST_LOCAL,
            c,
            "",
            7,
            "invalid characters found in network name",
        );
    }
}

#[test]
fn host_local_bad_requests_and_envelope() {
    let ok = || hl(json!({"subnet": "10.0.0.0/24"}));
    refused(HOST_LOCAL, ok(), "IP=bogus", 4, "invalid IP address bogus");
    refused(HOST_LOCAL, ok(), "IP", 4, "ARGS: invalid pair");
    refused(HOST_LOCAL, ok(), "FOO=1", 999, "ARGS: unknown args");
    let mut c = ok();
    c["runtimeConfig"] = json!({"ips": ["not-an-ip"]});
    refused(
        HOST_LOCAL,
        c,
        "",
        7,
        "runtimeConfig.ips: invalid IP address",
    );
    let mut c = ok();
    c["args"] = json!({"cni": {"ips": "10.0.0.5"}});
    refused(
        HOST_LOCAL,
        c,
        "",
        7,
        "args.cni.ips must be a list of strings",
    );
    let mut c = ok();
    c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.0.0.0/16"}]]});
    refused(HOST_LOCAL, c, "", 7, "range set 0 overlaps with 1");
    let mut c = ok();
    c["ipam"] = json!("host-local");
    refused(HOST_LOCAL, c, "", 7, "ipam");
    let mut c = ok();
    c.as_object_mut().unwrap().remove("ipam");
    refused(HOST_LOCAL, c, "", 7, "IPAM config missing 'ipam' key");
    let mut c = hl(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}));
    c["cniVersion"] = json!("0.2.0");
    refused(
        HOST_LOCAL,
        c,
        "",
        7,
        "does not support more than 1 address per family",
    );
    let mut c = ok();
    c["cniVersion"] = json!("9.9.9");
    refused(HOST_LOCAL, c, "", 1, "incompatible CNI versions");
}

#[test]
fn invalid_json_is_code_6() {
    let t = TempDir::new("json");
    let out = Call::new(HOST_LOCAL, "ADD", "x")
        .command()
        .spawn()
        .map(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"{\"name\": ").unwrap();
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 6);
    assert!(snapshot(t.path()).is_empty());
}

fn st(ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("static");
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam})
}

#[test]
fn static_bad_input() {
    let cases: Vec<(Value, &str, u64)> = vec![
        (
            json!({"addresses": [{"address": "10.0.0.5"}]}),
            "invalid CIDR 10.0.0.5",
            7,
        ),
        (
            json!({"addresses": [{"address": "bogus/24"}]}),
            "invalid CIDR bogus/24",
            7,
        ),
        (
            json!({"addresses": [{"address": "10.0.0.5/24", "gateway": "x"}]}),
            "invalid IP address",
            7,
        ),
        (
            json!({"addresses": [{"address": "fd00::5/64", "gateway": "10.0.0.1"}]}),
            "same address family",
            7,
        ),
        (
            json!({"addresses": [{"gateway": "10.0.0.1"}]}),
            "address is required",
            7,
        ),
        (
            json!({"addresses": [{"address": 5}]}),
            "must be a string",
            7,
        ),
        (
            json!({"addresses": {"address": "10.0.0.5/24"}}),
            "ipam.addresses must be a list",
            7,
        ),
        (
            json!({"addresses": [], "subnet": "10.0.0.0/24"}),
            "unknown key \"subnet\"",
            7,
        ),
        (
            json!({"addresses": [{"address": "10.0.0.5/24", "gw": "10.0.0.1"}]}),
            "unknown key \"gw\"",
            7,
        ),
        (
            json!({"dns": {"servers": ["1.1.1.1"]}}),
            "unknown key \"servers\"",
            7,
        ),
        (
            json!({"dns": {"nameservers": "1.1.1.1"}}),
            "ipam.dns.nameservers must be a list of strings",
            7,
        ),
        (
            json!({"routes": [{"dst": "bogus"}]}),
            "invalid CIDR address",
            7,
        ),
    ];
    for (ipam, msg, code) in cases {
        refused(STATIC, st(ipam), "", code, msg);
    }
    // A bad CNI_ARGS value is code 4 (an environment variable).
    refused(
        STATIC,
        st(json!({})),
        "IP=10.0.0.5",
        4,
        "invalid CIDR 10.0.0.5",
    );
    refused(
        STATIC,
        st(json!({})),
        "IP=10.0.0.5/24;GATEWAY=nope",
        4,
        "CNI_ARGS GATEWAY: invalid gateway address \"nope\"",
    );
    let mut c = st(json!({}));
    c["runtimeConfig"] = json!({"ips": ["10.0.0.5"]});
    refused(STATIC, c, "", 7, "invalid CIDR 10.0.0.5");
    // An ipam static's DEL cannot read: it has nothing to release, and
    // succeeds (as the reference's); host-local's DEL fails (a lease would
    // leak), as the reference's does.
    for bad in [json!(5), json!({"type": 5})] {
        let mut c = st(json!({}));
        c["ipam"] = bad.clone();
        let out = Call::new(STATIC, "DEL", "c1").run(&c);
        assert!(out.ok, "static DEL with ipam {bad}: {}", out.stdout);
        let out = Call::new(HOST_LOCAL, "DEL", "c1").run(&c);
        assert_eq!(out.err_code(), 7, "host-local DEL with ipam {bad}");
    }
}
