//! Our `loopback` driven end to end by the reference libcni (Debian's
//! golang-github-appc-cni-dev 1.1.2, through the `cnitool` driver built by
//! `netns_tests::cnitool()`), as a real runtime runs it: config list
//! loading, result parsing and caching in `/var/lib/cni/results` (the host's
//! private state dir), CHECK with the cached result, DEL.
//!
//! libcni 1.1.2 knows spec versions up to 1.0.0: it cannot parse a 1.1.0
//! result and ignores `cniVersions`. Both facts are asserted below.

use std::path::{Path, PathBuf};

use netns_tests::*;
use serde_json::{json, Value};

const CID: &str = "ctr-cnitool";

fn plugin_dir() -> String {
    Path::new(env!("CARGO_BIN_EXE_loopback"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// A conf dir holding one conflist for network `lo-net`; returns the dir.
fn write_conflist(host: &Host, tag: &str, body: &Value) -> PathBuf {
    host.write_file(&format!("{tag}/10-lo.conflist"), &body.to_string());
    host.dir().join(tag)
}

fn conflist(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lo-net", "plugins": [{"type": "loopback"}]})
}

fn cache_file(host: &Host) -> PathBuf {
    host.state_dir()
        .join("results")
        .join(format!("lo-net-{CID}-eth0"))
}

#[track_caller]
fn cnitool(
    host: &Host,
    cmd: &str,
    ctr: &Netns,
    conf_dir: &Path,
    extra: &[(&str, &str)],
) -> PluginOutput {
    let dir = plugin_dir();
    let mut env = vec![
        ("NETCONFPATH", conf_dir.to_str().unwrap()),
        ("CNI_PATH", dir.as_str()),
        ("CNI_CONTAINERID", CID),
        ("CNI_IFNAME", "eth0"),
    ];
    env.extend_from_slice(extra);
    host.cnitool(cmd, "lo-net", ctr, &env)
}

/// The result as libcni prints it after parsing ours (libcni 1.1.2 always
/// prints `dns`).
fn printed_result(version: &str, sandbox: &str) -> Value {
    match version {
        "0.1.0" | "0.2.0" => json!({
            "cniVersion": version,
            "ip4": {"ip": "127.0.0.1/8"},
            "ip6": {"ip": "::1/128"},
            "dns": {}
        }),
        "1.0.0" => json!({
            "cniVersion": version,
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}],
            "ips": [
                {"interface": 0, "address": "127.0.0.1/8"},
                {"interface": 0, "address": "::1/128"}
            ],
            "dns": {}
        }),
        _ => json!({
            "cniVersion": version,
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}],
            "ips": [
                {"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                {"version": "6", "interface": 0, "address": "::1/128"}
            ],
            "dns": {}
        }),
    }
}

#[test]
fn add_check_del_through_libcni_at_every_version_it_knows() {
    require_root();
    let host = Host::new("cnitool-versions");
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let ctr = host.container(&format!("v{v}"));
        let dir = write_conflist(&host, &format!("conf-{v}"), &conflist(v));

        // add: libcni parses our result, caches it, prints it.
        let out = cnitool(&host, "add", &ctr, &dir, &[]);
        out.assert_success();
        assert_json_eq(out.expect_json(), &printed_result(v, ctr.path_str()));
        assert!(ctr.link_is_up("lo"), "{v}: lo up after add");
        let cached: Value = serde_json::from_slice(
            &std::fs::read(cache_file(&host)).expect("libcni cached the result"),
        )
        .unwrap();
        assert_eq!(cached["kind"], "cniCacheV1");
        assert_eq!(cached["result"]["cniVersion"], json!(v));

        // check (from 0.4.0: libcni sends the cached result as prevResult).
        let out = cnitool(&host, "check", &ctr, &dir, &[]);
        if v == "0.4.0" || v == "1.0.0" {
            out.assert_success();
            assert_eq!(out.stdout, "");
        } else {
            out.assert_failure();
            assert!(
                out.stderr.contains(&format!(
                    "configuration version \"{v}\" does not support the CHECK command"
                )),
                "{out}"
            );
        }

        // del: lo down, cache entry gone; a second del is fine.
        for _ in 0..2 {
            let out = cnitool(&host, "del", &ctr, &dir, &[]);
            out.assert_success();
            assert_eq!(out.stdout, "");
            assert!(!ctr.link_is_up("lo"), "{v}: lo down after del");
            assert!(!cache_file(&host).exists(), "{v}: cache removed by del");
        }

        // check after del fails, with our message passed through.
        if v == "0.4.0" || v == "1.0.0" {
            let out = cnitool(&host, "check", &ctr, &dir, &[]);
            out.assert_failure();
            assert!(out.stderr.contains("loopback interface is down"), "{out}");
        }
    }
    assert!(host.netns().link_is_up("lo"));
}

#[test]
fn runtime_cni_args_through_libcni() {
    require_root();
    let host = Host::new("cnitool-args");
    let ctr = host.container("c");
    let dir = write_conflist(&host, "conf", &conflist("1.0.0"));
    // What kubelet runtimes send: accepted.
    let k8s =
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=abc";
    let out = cnitool(&host, "add", &ctr, &dir, &[("CNI_ARGS", k8s)]);
    out.assert_success();
    assert!(ctr.link_is_up("lo"));
    let cached: Value = serde_json::from_slice(&std::fs::read(cache_file(&host)).unwrap()).unwrap();
    assert_eq!(cached["cniArgs"][0], json!(["IgnoreUnknown", "1"]));
    cnitool(&host, "del", &ctr, &dir, &[("CNI_ARGS", k8s)]).assert_success();

    // An unknown key without IgnoreUnknown: our error, wrapped by libcni.
    let ctr2 = host.container("c2");
    let out = cnitool(&host, "add", &ctr2, &dir, &[("CNI_ARGS", "FOO=bar")]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="loopback" failed (add): ARGS: unknown args ["FOO=bar"]"#),
        "{out}"
    );
    assert!(!ctr2.link_is_up("lo"));
}

/// A list that offers 1.1.0 in `cniVersions` but says 1.0.0 in `cniVersion`
/// works with libcni 1.1.2, which ignores `cniVersions` (nuage would pick
/// 1.1.0: see nuage's runner tests).
#[test]
fn cni_versions_list_is_ignored_by_libcni_1_1() {
    require_root();
    let host = Host::new("cnitool-versions-list");
    let ctr = host.container("c");
    let dir = write_conflist(
        &host,
        "conf",
        &json!({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": "lo-net",
                "plugins": [{"type": "loopback"}]}),
    );
    let out = cnitool(&host, "add", &ctr, &dir, &[]);
    out.assert_success();
    assert_json_eq(out.expect_json(), &printed_result("1.0.0", ctr.path_str()));
    cnitool(&host, "check", &ctr, &dir, &[]).assert_success();
    cnitool(&host, "del", &ctr, &dir, &[]).assert_success();
    assert!(!ctr.link_is_up("lo"));
}

/// At 1.1.0 our plugin does its job, but libcni 1.1.2 cannot parse a 1.1.0
/// result, so `add` reports a libcni error (not ours) and nothing is cached.
/// check (no cached result, loopback needs none) and del work.
#[test]
fn spec_1_1_0_through_libcni_1_1() {
    require_root();
    let host = Host::new("cnitool-110");
    let ctr = host.container("c");
    let dir = write_conflist(&host, "conf", &conflist("1.1.0"));

    let out = cnitool(&host, "add", &ctr, &dir, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains(
            r#"plugin type="loopback" failed (add): unsupported CNI result version "1.1.0""#
        ),
        "libcni 1.1.2 is expected to refuse 1.1.0 results:\n{out}"
    );
    // The plugin itself succeeded: lo is up.
    assert!(ctr.link_is_up("lo"));
    assert!(!cache_file(&host).exists());

    let out = cnitool(&host, "check", &ctr, &dir, &[]);
    out.assert_success();
    let out = cnitool(&host, "del", &ctr, &dir, &[]);
    out.assert_success();
    assert!(!ctr.link_is_up("lo"));
    let out = cnitool(&host, "check", &ctr, &dir, &[]);
    out.assert_failure();
    assert!(out.stderr.contains("loopback interface is down"), "{out}");
}

/// DEL through libcni when the container's namespace is already gone.
#[test]
fn del_after_the_namespace_is_gone_through_libcni() {
    require_root();
    let host = Host::new("cnitool-gone");
    let ctr = host.container("c");
    let dir = write_conflist(&host, "conf", &conflist("1.0.0"));
    cnitool(&host, "add", &ctr, &dir, &[]).assert_success();
    assert!(cache_file(&host).exists());
    let path = ctr.path().to_path_buf();
    drop(ctr);
    assert!(!path.exists());
    // cnitool needs a netns argument: the (gone) path, as a runtime passes it.
    let dir_s = plugin_dir();
    let out = host.run(
        &netns_tests::cnitool(),
        &["del", "lo-net", path.to_str().unwrap()],
        &[
            ("NETCONFPATH", dir.to_str().unwrap()),
            ("CNI_PATH", dir_s.as_str()),
            ("CNI_CONTAINERID", CID),
            ("CNI_IFNAME", "eth0"),
        ],
        "",
    );
    out.assert_success();
    assert!(!cache_file(&host).exists());
}
