//! Differential tests: the same requests sent to our `loopback` and to the
//! reference `/usr/lib/cni/loopback` (Debian containernetworking-plugins
//! v1.1.1, spec <= 1.0.0) must agree, except where we deliberately differ
//! (README "Deliberate differences"); every such difference is asserted
//! explicitly here, with the reason.
//!
//! The reference is required: a machine without it fails these tests.

use std::path::{Path, PathBuf};

use netns_tests::*;
use serde_json::{json, Value};

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loopback"))
}

fn reference() -> PathBuf {
    require_reference("loopback")
}

fn conf(version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"lo-net","type":"loopback"}}"#)
}

/// A full runtime environment for `cmd` on `netns`, with edits.
fn env<'a>(
    cmd: &'a str,
    netns: &'a str,
    edits: &[(&'a str, Option<&'a str>)],
) -> Vec<(&'a str, &'a str)> {
    let mut e = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr-1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    for (k, v) in edits {
        e.retain(|(key, _)| key != k);
        if let Some(v) = v {
            e.push((k, v));
        }
    }
    e
}

/// Both plugins' answers to one request.
struct Both {
    ours: PluginOutput,
    reference: PluginOutput,
}

#[track_caller]
fn both(host: &Host, env: &[(&str, &str)], stdin: &str) -> Both {
    Both {
        ours: host.run_plugin(&ours(), env, stdin),
        reference: host.run_plugin(&reference(), env, stdin),
    }
}

impl Both {
    fn show(&self) -> String {
        format!(
            "=== ours ===\n{}\n=== reference ===\n{}",
            self.ours, self.reference
        )
    }

    /// Both failed with the same code and message; returns (ours, reference).
    #[track_caller]
    fn same_error(&self) -> (Value, Value) {
        self.ours.assert_failure();
        self.reference.assert_failure();
        assert_eq!(self.ours.code, Some(1), "{}", self.show());
        assert_eq!(self.reference.code, Some(1), "{}", self.show());
        let o = self.ours.expect_json().clone();
        let r = self.reference.expect_json().clone();
        assert_eq!(o["code"], r["code"], "codes differ:\n{}", self.show());
        assert_eq!(o["msg"], r["msg"], "messages differ:\n{}", self.show());
        (o, r)
    }

    /// Both succeeded with nothing on stdout.
    #[track_caller]
    fn both_silent_success(&self) {
        for out in [&self.ours, &self.reference] {
            out.assert_success();
            assert_eq!(out.stdout, "", "{}", self.show());
        }
    }
}

/// The reference (libcni 1.1.x types) prints `"dns": {}` in 1.0.0 results;
/// we omit an empty `dns` as libcni >= 1.2 does (README). Asserts that
/// difference and returns the reference result without it.
#[track_caller]
fn strip_reference_empty_dns(reference: &Value, ours: &Value) -> Value {
    assert_eq!(
        reference.get("dns"),
        Some(&json!({})),
        "the 1.1.1 reference prints an empty dns in 1.0.0 results"
    );
    assert!(
        ours.get("dns").is_none(),
        "we omit an empty dns in 1.x results: {ours}"
    );
    let mut r = reference.clone();
    r.as_object_mut().unwrap().remove("dns");
    r
}

// ---------------------------------------------------------------------------
// Agreement
// ---------------------------------------------------------------------------

#[test]
fn add_results_and_kernel_state_agree_at_1_0_0() {
    require_root();
    let host = Host::new("diff-add");
    let c = conf("1.0.0");
    // Several realistic CNI_ARGS (the reference never parses CNI_ARGS, ours
    // accepts the Kubernetes keys and IgnoreUnknown).
    for args in [
        "",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=x",
        "K8S_POD_NAME=p;K8S_POD_UID=u",
    ] {
        let a = host.container("ours");
        let b = host.container("ref");
        // Same container path for both results: run each on its own
        // container, then compare with the sandbox normalised.
        let o = host.run_plugin(
            &ours(),
            &env("ADD", a.path_str(), &[("CNI_ARGS", Some(args))]),
            &c,
        );
        let r = host.run_plugin(
            &reference(),
            &env("ADD", b.path_str(), &[("CNI_ARGS", Some(args))]),
            &c,
        );
        o.assert_success();
        r.assert_success();
        let mut ov = o.expect_json().clone();
        let mut rv = r.expect_json().clone();
        assert_eq!(ov["interfaces"][0]["sandbox"], json!(a.path_str()));
        assert_eq!(rv["interfaces"][0]["sandbox"], json!(b.path_str()));
        ov["interfaces"][0]["sandbox"] = json!("<netns>");
        rv["interfaces"][0]["sandbox"] = json!("<netns>");
        let rv = strip_reference_empty_dns(&rv, &ov);
        assert_json_eq(&ov, &rv);
        assert!(a.link_is_up("lo") && b.link_is_up("lo"));
        assert_eq!(a.addr_cidrs("lo"), b.addr_cidrs("lo"));

        // DEL: both set lo down.
        let o = host.run_plugin(&ours(), &env("DEL", a.path_str(), &[]), &c);
        let r = host.run_plugin(&reference(), &env("DEL", b.path_str(), &[]), &c);
        Both {
            ours: o,
            reference: r,
        }
        .both_silent_success();
        assert!(!a.link_is_up("lo") && !b.link_is_up("lo"));
    }
}

#[test]
fn same_container_same_result_at_1_0_0() {
    require_root();
    let host = Host::new("diff-same");
    let ctr = host.container("c");
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &conf("1.0.0"));
    let o = b.ours.expect_json();
    let r = strip_reference_empty_dns(b.reference.expect_json(), o);
    assert_json_eq(o, &r);
}

#[test]
fn check_and_del_agree() {
    require_root();
    let host = Host::new("diff-check");
    let ctr = host.container("c");
    for v in ["0.4.0", "1.0.0"] {
        let c = conf(v);
        host.run_plugin(&ours(), &env("ADD", ctr.path_str(), &[]), &c)
            .assert_success();
        // CHECK after ADD.
        both(&host, &env("CHECK", ctr.path_str(), &[]), &c).both_silent_success();
        // DEL, twice, then with the netns unset.
        both(&host, &env("DEL", ctr.path_str(), &[]), &c).both_silent_success();
        both(&host, &env("DEL", ctr.path_str(), &[]), &c).both_silent_success();
        both(&host, &env("DEL", "", &[("CNI_NETNS", None)]), &c).both_silent_success();
        assert!(!ctr.link_is_up("lo"));
        // CHECK after DEL: same code and message.
        let b = both(&host, &env("CHECK", ctr.path_str(), &[]), &c);
        let (o, r) = b.same_error();
        assert_eq!(o["code"], 999);
        assert_eq!(o["msg"], "loopback interface is down");
        // Deliberate: our error replies carry cniVersion (SPEC 1.1.0) and
        // details saying what to do; the reference has neither.
        assert_eq!(o["cniVersion"], json!(v), "{}", b.show());
        assert!(r.get("cniVersion").is_none(), "{}", b.show());
        assert!(o["details"].as_str().unwrap().contains(ctr.path_str()));
        assert!(r.get("details").is_none(), "{}", b.show());
    }
}

#[test]
fn del_of_a_deleted_netns_agrees() {
    require_root();
    let host = Host::new("diff-gone");
    let ctr = host.container("gone");
    let path = ctr.path_str().to_owned();
    drop(ctr);
    both(&host, &env("DEL", &path, &[]), &conf("1.0.0")).both_silent_success();
}

#[test]
fn prev_result_of_the_same_version_agrees() {
    require_root();
    let host = Host::new("diff-prev");
    let ctr = host.container("c");
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
        "dns": {"nameservers": ["10.0.0.53"], "search": ["example.org"]}
    });
    let c =
        json!({"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback", "prevResult": prev})
            .to_string();
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &c);
    b.ours.assert_success();
    b.reference.assert_success();
    assert_json_eq(b.ours.expect_json(), b.reference.expect_json());
    assert_json_eq(b.ours.expect_json(), &prev);
}

#[test]
fn ipv6_disabled_agrees_at_1_0_0() {
    require_root();
    let host = Host::new("diff-noipv6");
    let ctr = host.container("c");
    ctr.set_sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &conf("1.0.0"));
    let o = b.ours.expect_json();
    let r = strip_reference_empty_dns(b.reference.expect_json(), o);
    assert_json_eq(o, &r);
    assert_eq!(o["ips"].as_array().unwrap().len(), 1, "{}", b.show());
}

#[test]
fn non_loopback_address_error_agrees() {
    require_root();
    let host = Host::new("diff-nonlo");
    let ctr = host.container("c");
    ctr.ip(&["addr", "add", "10.1.2.3/32", "dev", "lo"]);
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &conf("1.0.0"));
    let (o, _) = b.same_error();
    assert_eq!(o["code"], 999);
    assert_eq!(
        o["msg"],
        "loopback interface found with non-loopback address \"10.1.2.3\""
    );
}

/// The bad-input matrix where both agree by design: same code and message.
#[test]
fn bad_input_matrix_agrees() {
    require_root();
    let host = Host::new("diff-matrix");
    let ctr = host.container("c");
    let ns = ctr.path_str();
    let c = conf("1.0.0");
    let c = c.as_str();
    let c031 = conf("0.3.1");
    let c031 = c031.as_str();
    let long = "0123456789abcdef";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("ADD nothing set", vec![("CNI_COMMAND", "ADD")], c),
        ("DEL nothing set", vec![("CNI_COMMAND", "DEL")], c),
        ("CHECK nothing set", vec![("CNI_COMMAND", "CHECK")], c),
        ("ADD no netns", env("ADD", ns, &[("CNI_NETNS", None)]), c),
        ("ADD no path", env("ADD", ns, &[("CNI_PATH", None)]), c),
        (
            "ADD empty ifname",
            env("ADD", ns, &[("CNI_IFNAME", Some(""))]),
            c,
        ),
        ("DEL no id", env("DEL", ns, &[("CNI_CONTAINERID", None)]), c),
        (
            "CHECK no id and path",
            env(
                "CHECK",
                ns,
                &[("CNI_CONTAINERID", None), ("CNI_PATH", None)],
            ),
            c,
        ),
        (
            "ADD bad id",
            env("ADD", ns, &[("CNI_CONTAINERID", Some("-c1"))]),
            c,
        ),
        (
            "DEL bad id",
            env("DEL", ns, &[("CNI_CONTAINERID", Some("c 1"))]),
            c,
        ),
        (
            "ADD long ifname",
            env("ADD", ns, &[("CNI_IFNAME", Some(long))]),
            c,
        ),
        (
            "ADD dot ifname",
            env("ADD", ns, &[("CNI_IFNAME", Some("."))]),
            c,
        ),
        (
            "ADD dotdot ifname",
            env("ADD", ns, &[("CNI_IFNAME", Some(".."))]),
            c,
        ),
        (
            "ADD slash ifname",
            env("ADD", ns, &[("CNI_IFNAME", Some("a/b"))]),
            c,
        ),
        (
            "DEL colon ifname",
            env("DEL", ns, &[("CNI_IFNAME", Some("a:b"))]),
            c,
        ),
        (
            "CHECK space ifname",
            env("CHECK", ns, &[("CNI_IFNAME", Some("a b"))]),
            c,
        ),
        (
            "ADD no name",
            env("ADD", ns, &[]),
            r#"{"cniVersion":"1.0.0","type":"loopback"}"#,
        ),
        (
            "DEL empty name",
            env("DEL", ns, &[]),
            r#"{"cniVersion":"1.0.0","name":""}"#,
        ),
        (
            "ADD bad name",
            env("ADD", ns, &[]),
            r#"{"cniVersion":"1.0.0","name":"a b"}"#,
        ),
        (
            "ADD unknown version",
            env("ADD", ns, &[]),
            r#"{"cniVersion":"9.9.9","name":"n"}"#,
        ),
        ("CHECK at 0.3.1", env("CHECK", ns, &[]), c031),
        ("unknown CNI_COMMAND", env("FOO", ns, &[]), c),
    ];
    for (what, e, stdin) in &cases {
        let b = both(&host, e, stdin);
        let (o, r) = b.same_error();
        // Deliberate: once the config is read, our error replies carry its
        // cniVersion (SPEC 1.1.0); the reference's never do. Errors found
        // before the config is read (environment, JSON, name) have none.
        assert!(r.get("cniVersion").is_none(), "{what}:\n{}", b.show());
        match *what {
            "ADD unknown version" => assert_eq!(o["cniVersion"], "9.9.9", "{}", b.show()),
            "CHECK at 0.3.1" => assert_eq!(o["cniVersion"], "0.3.1", "{}", b.show()),
            "unknown CNI_COMMAND" => {}
            _ => assert!(o.get("cniVersion").is_none(), "{what}:\n{}", b.show()),
        }
        // Details agree too, except where ours adds a hint (see below).
        match (o.get("details"), r.get("details")) {
            (_, Some(rd)) if *what == "ADD unknown version" => {
                // Deliberate: we also support 1.1.0, so the list is longer.
                assert_eq!(
                    rd,
                    r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0"]"#
                );
                assert_eq!(
                    o["details"],
                    r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
                );
            }
            // Deliberate: a too-long name's details also name it and its size.
            (Some(od), Some(rd)) if rd == "interface name should be less than 16 characters" => {
                let od = od.as_str().unwrap_or_default();
                assert!(
                    od.starts_with("CNI_IFNAME ") && od.ends_with(rd.as_str().unwrap()),
                    "{what}:\n{}",
                    b.show()
                );
            }
            (od, Some(rd)) => assert_eq!(od, Some(rd), "{what}:\n{}", b.show()),
            // Deliberate: where the reference says nothing more, ours may add
            // a hint (the offending CNI_IFNAME, what to do).
            (_, None) => {}
        }
    }
    // Broken JSON: both code 6 and the same message prefix (the rest is the
    // decoder's own wording: Go's vs serde's).
    for stdin in ["{not json", ""] {
        let b = both(&host, &env("ADD", ns, &[]), stdin);
        for out in [&b.ours, &b.reference] {
            let e = out.assert_cni_error(6);
            assert!(
                e["msg"]
                    .as_str()
                    .unwrap()
                    .starts_with("error unmarshall network config: "),
                "{}",
                b.show()
            );
        }
    }
    assert!(
        !ctr.link_is_up("lo"),
        "no failed request touched the container"
    );
}

#[test]
fn unset_command_prints_about_text_in_both() {
    require_root();
    let host = Host::new("diff-about");
    let b = both(&host, &[], "");
    b.both_silent_success();
    for out in [&b.ours, &b.reference] {
        assert!(
            out.stderr.starts_with("CNI loopback plugin "),
            "{}",
            b.show()
        );
        assert!(
            out.stderr.contains(
                "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0"
            ),
            "{}",
            b.show()
        );
    }
    // Deliberate: we also speak 1.1.0.
    assert!(b.ours.stderr.contains("1.0.0, 1.1.0"));
    assert!(!b.reference.stderr.contains("1.1.0"));
}

// ---------------------------------------------------------------------------
// Deliberate differences
// ---------------------------------------------------------------------------

/// README: loopback prints each version's own result shape; the reference
/// prints the 1.x shape under any version label (a reference quirk: its
/// result is built with the config version but never converted).
#[test]
fn zero_x_result_shapes_differ() {
    require_root();
    let host = Host::new("diff-shapes");
    let ctr = host.container("c");
    let ns = ctr.path_str();
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"] {
        let b = both(&host, &env("ADD", ns, &[]), &conf(v));
        let o = b.ours.expect_json();
        let r = b.reference.expect_json();
        // The reference: 1.x shape, old label.
        assert_json_eq(
            r,
            &json!({
                "cniVersion": v,
                "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": ns}],
                "ips": [
                    {"interface": 0, "address": "127.0.0.1/8"},
                    {"interface": 0, "address": "::1/128"}
                ],
                "dns": {}
            }),
        );
        // Ours: the shape that version defines.
        if v == "0.1.0" || v == "0.2.0" {
            assert_json_eq(
                o,
                &json!({"cniVersion": v, "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}),
            );
        } else {
            assert_json_eq(
                o,
                &json!({
                    "cniVersion": v,
                    "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": ns}],
                    "ips": [
                        {"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                        {"version": "6", "interface": 0, "address": "::1/128"}
                    ],
                    "dns": {}
                }),
            );
        }
    }
}

/// The reference (spec <= 1.0.0) refuses 1.1.0 configs; we speak 1.1.0,
/// including GC and STATUS, which it does not know at all.
#[test]
fn spec_1_1_0_differs() {
    require_root();
    let host = Host::new("diff-110");
    let ctr = host.container("c");
    let c = conf("1.1.0");
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &c);
    b.ours.assert_success();
    assert_eq!(b.ours.expect_json()["cniVersion"], "1.1.0");
    let r = b.reference.assert_cni_error(1);
    assert_eq!(r["msg"], "incompatible CNI versions", "{}", b.show());

    let b = both(&host, &env("DEL", ctr.path_str(), &[]), &c);
    b.ours.assert_success();
    b.reference.assert_cni_error(1);

    for verb in ["GC", "STATUS"] {
        let b = both(&host, &env(verb, ctr.path_str(), &[]), &c);
        assert_eq!(b.ours.stdout, "", "{}", b.show());
        b.ours.assert_success();
        let r = b.reference.assert_cni_error(4);
        assert_eq!(
            r["msg"],
            format!("unknown CNI_COMMAND: {verb}"),
            "{}",
            b.show()
        );
        // At 1.0.0 ours refuses with the version gate (code 1).
        let b = both(&host, &env(verb, ctr.path_str(), &[]), &conf("1.0.0"));
        assert_eq!(
            b.ours.assert_cni_error(1)["msg"],
            format!("config version does not allow {verb}")
        );
        b.reference.assert_cni_error(4);
    }
}

/// VERSION: the spec says the reply echoes the request's cniVersion; the
/// reference answers its library's version. Ours also lists 1.1.0.
#[test]
fn version_reply_differs() {
    require_root();
    let host = Host::new("diff-version");
    for asked in ["0.3.1", "0.4.0", "1.0.0"] {
        let stdin = format!(r#"{{"cniVersion":"{asked}"}}"#);
        let b = both(&host, &[("CNI_COMMAND", "VERSION")], &stdin);
        b.ours.assert_success();
        b.reference.assert_success();
        // Both compact JSON plus one newline.
        assert_eq!(
            b.reference.stdout,
            "{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}\n"
        );
        assert_eq!(
            b.ours.stdout,
            format!("{{\"cniVersion\":\"{asked}\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}}\n")
        );
    }
}

/// README: the own-netns check (code 8) runs before anything is changed.
/// The 1.1.1 reference has no such check at all (it came with cni v1.2.0,
/// and runs after the fact there): its ADD acts on the plugin's own
/// namespace, and its DEL takes the host's `lo` down (plugins#714). Each
/// binary gets its own test host, so the reference's damage stays there.
#[test]
fn own_netns_differs() {
    require_root();
    let c = conf("1.0.0");
    let paths: [fn(&Host) -> String; 2] = [
        |h| h.path().to_str().unwrap().to_owned(),
        |_| "/proc/self/ns/net".to_owned(),
    ];
    for path_of in paths {
        // ADD: ours refuses before acting; the reference acts.
        let ours_host = Host::new("diff-own-ours");
        let ref_host = Host::new("diff-own-ref");
        for h in [&ours_host, &ref_host] {
            h.netns().ip(&["link", "set", "lo", "down"]);
        }
        let p = path_of(&ours_host);
        let o = ours_host.run_plugin(&ours(), &env("ADD", &p, &[]), &c);
        assert_eq!(
            o.assert_cni_error(8)["msg"],
            "plugin's netns and netns from CNI_NETNS should not be the same"
        );
        assert!(
            !ours_host.netns().link_is_up("lo"),
            "ours acted before refusing"
        );
        let p = path_of(&ref_host);
        let r = ref_host.run_plugin(&reference(), &env("ADD", &p, &[]), &c);
        r.assert_success();
        assert!(
            ref_host.netns().link_is_up("lo"),
            "the reference set the host's lo up"
        );

        // DEL: ours succeeds without touching the host's lo; the reference
        // takes it down.
        ours_host.netns().set_lo_up();
        let p = path_of(&ours_host);
        let o = ours_host.run_plugin(&ours(), &env("DEL", &p, &[]), &c);
        o.assert_success();
        assert!(
            ours_host.netns().link_is_up("lo"),
            "ours took the host's lo down"
        );
        let p = path_of(&ref_host);
        let r = ref_host.run_plugin(&reference(), &env("DEL", &p, &[]), &c);
        r.assert_success();
        assert!(
            !ref_host.netns().link_is_up("lo"),
            "the reference is expected to take the host's lo down (plugins#714)"
        );
    }
}

/// Paths that are not network namespaces: ours says code 8 and what the
/// path is; the reference gives 999 with a low-level message. A missing
/// path on DEL succeeds in both.
#[test]
fn bad_netns_paths_differ() {
    require_root();
    let host = Host::new("diff-badns");
    let file = host.write_file("regular-file", "");
    let dir = host.dir().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let missing = host.dir().join("missing");
    let c = conf("1.0.0");
    let cases: [(&Path, &str, &str); 3] = [
        (&file, "is a regular file", "unknown FS magic on"),
        (&dir, "is a directory", "unknown FS magic on"),
        (&missing, "does not exist", "failed to Statfs"),
    ];
    for (path, ours_says, ref_says) in cases {
        let p = path.to_str().unwrap();
        for verb in ["ADD", "CHECK"] {
            let b = both(&host, &env(verb, p, &[]), &c);
            let o = b.ours.assert_cni_error(8);
            assert!(
                o["msg"].as_str().unwrap().contains(ours_says),
                "{}",
                b.show()
            );
            let r = b.reference.assert_cni_error(999);
            assert!(
                r["msg"].as_str().unwrap().contains(ref_says),
                "{}",
                b.show()
            );
        }
    }
    let b = both(&host, &env("DEL", missing.to_str().unwrap(), &[]), &c);
    b.both_silent_success();
    // A namespace of another type: ours 8, the reference 999 from setns.
    let b = both(&host, &env("ADD", "/proc/self/ns/uts", &[]), &c);
    b.ours.assert_cni_error(8);
    b.reference.assert_cni_error(999);
}

/// Ours reads CNI_ARGS like every reference plugin that takes args
/// (`types.LoadArgs`: unknown keys refused unless IgnoreUnknown, malformed
/// pairs refused); the reference loopback never looks at CNI_ARGS.
#[test]
fn cni_args_checking_differs() {
    require_root();
    let host = Host::new("diff-args");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    for (args, code) in [("FOO=bar", 999), ("FOO", 4), ("IgnoreUnknown=1;A=b=c", 4)] {
        let b = both(
            &host,
            &env("ADD", ctr.path_str(), &[("CNI_ARGS", Some(args))]),
            &c,
        );
        b.ours.assert_cni_error(code);
        b.reference.assert_success();
    }
}

/// Ours converts a prevResult of another version to the config's version;
/// the reference refuses it ("result type supports [1.0.0] but unmarshalled
/// CNIVersion is ...").
#[test]
fn prev_result_of_another_version_differs() {
    require_root();
    let host = Host::new("diff-prev-other");
    let ctr = host.container("c");
    let c = json!({
        "cniVersion": "1.0.0", "name": "lo-net", "type": "loopback",
        "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}}
    })
    .to_string();
    let b = both(&host, &env("ADD", ctr.path_str(), &[]), &c);
    assert_json_eq(
        b.ours.expect_json(),
        &json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}),
    );
    let r = b.reference.assert_cni_error(999);
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("failed to parse prevResult"),
        "{}",
        b.show()
    );
}

/// With nothing but CNI_COMMAND set to an unknown verb, ours says what is
/// wrong (code 4, unknown command); the 1.1.1 reference answers code 3
/// "missing containerID" (its old skel checks the container id first).
#[test]
fn unknown_command_without_environment_differs() {
    require_root();
    let host = Host::new("diff-unknown");
    let b = both(&host, &[("CNI_COMMAND", "FOO")], &conf("1.0.0"));
    assert_eq!(
        b.ours.assert_cni_error(4)["msg"],
        "unknown CNI_COMMAND: FOO"
    );
    assert_eq!(
        b.reference.assert_cni_error(3)["msg"],
        "missing containerID"
    );
}
