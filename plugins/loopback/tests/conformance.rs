//! Conformance of the `loopback` plugin with the CNI spec (SPEC 1.1.0 and the
//! reference skel's observable behaviour), run as root inside a throw-away
//! "host" namespace per test (see `netns-tests`).
//!
//! What is checked: result shapes of every spec version, the kernel state
//! (`lo` up after ADD, down after DEL), CHECK/GC/STATUS version gates,
//! `prevResult` pass-through, idempotent DEL, the whole bad-input matrix with
//! exact codes and messages, the own-netns protection, VERSION, `CNI_ARGS`,
//! and logging. Differences from the reference binary are in
//! `differential.rs`.

use std::path::Path;

use netns_tests::*;
use serde_json::{json, Value};

/// Every spec version nuage speaks, oldest first.
const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_loopback"))
}

fn conf(version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"lo-net","type":"loopback"}}"#)
}

fn at_least(v: &str, min: &str) -> bool {
    let p = |s: &str| -> Vec<u32> { s.split('.').map(|x| x.parse().unwrap()).collect() };
    p(v) >= p(min)
}

/// The environment of one plugin call (owned, so tests can edit it freely).
#[derive(Clone)]
struct Env(Vec<(String, String)>);

impl Env {
    /// All four `CNI_*` variables a runtime sends, for `cmd` on `netns`.
    fn new(cmd: &str, netns: &str) -> Env {
        Env(vec![
            ("CNI_COMMAND".into(), cmd.into()),
            ("CNI_CONTAINERID".into(), "ctr-1".into()),
            ("CNI_NETNS".into(), netns.into()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ])
    }

    fn set(mut self, k: &str, v: &str) -> Env {
        self.0.retain(|(key, _)| key != k);
        self.0.push((k.into(), v.into()));
        self
    }

    fn unset(mut self, k: &str) -> Env {
        self.0.retain(|(key, _)| key != k);
        self
    }

    #[track_caller]
    fn run(&self, host: &Host, stdin: &str) -> PluginOutput {
        let env: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host.run_plugin(plugin(), &env, stdin)
    }
}

/// Success with nothing at all on stdout (DEL, CHECK, GC, STATUS).
#[track_caller]
fn assert_silent_success(out: &PluginOutput) {
    out.assert_success();
    assert_eq!(out.stdout, "", "stdout must be empty on success:\n{out}");
}

/// Success with exactly one JSON document on stdout (and no logs on stderr);
/// returns it.
#[track_caller]
fn assert_json_success(out: &PluginOutput) -> Value {
    out.assert_success();
    // `json` is set only when the whole of stdout parses as one JSON value.
    let v = out.expect_json().clone();
    assert!(
        out.stdout.trim_start().starts_with('{'),
        "stdout must carry only the JSON result:\n{out}"
    );
    assert_eq!(out.stderr, "", "nothing on stderr on success:\n{out}");
    v
}

/// A CNI error with this code and message; returns the whole error object.
#[track_caller]
fn assert_error(out: &PluginOutput, code: u64, msg: &str) -> Value {
    assert_eq!(out.code, Some(1), "errors exit with status 1:\n{out}");
    let v = out.assert_cni_error(code).clone();
    assert_eq!(v["msg"], json!(msg), "wrong message:\n{out}");
    v
}

/// The result loopback prints in `version` for a container whose `lo` has
/// 127.0.0.1/8 (and ::1/128 when `v6`).
fn expected_result(version: &str, sandbox: &str, v6: bool) -> Value {
    if !at_least(version, "0.3.0") {
        let mut r = json!({"cniVersion": version, "ip4": {"ip": "127.0.0.1/8"}, "dns": {}});
        if v6 {
            r["ip6"] = json!({"ip": "::1/128"});
        }
        return r;
    }
    let legacy = !at_least(version, "1.0.0");
    let ip = |fam: &str, addr: &str| {
        if legacy {
            json!({"version": fam, "interface": 0, "address": addr})
        } else {
            json!({"interface": 0, "address": addr})
        }
    };
    let mut ips = vec![ip("4", "127.0.0.1/8")];
    if v6 {
        ips.push(ip("6", "::1/128"));
    }
    let mut r = json!({
        "cniVersion": version,
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}],
        "ips": ips,
    });
    if legacy {
        r["dns"] = json!({});
    }
    r
}

// ---------------------------------------------------------------------------
// ADD / CHECK / DEL / GC / STATUS per version
// ---------------------------------------------------------------------------

#[test]
fn add_check_del_gc_status_at_every_version() {
    require_root();
    let host = Host::new("lo-versions");
    for v in VERSIONS {
        let ctr = host.container(&format!("v{v}"));
        let ns = ctr.path_str();
        let c = conf(v);
        assert!(!ctr.link_is_up("lo"), "a fresh container has lo down");

        // ADD: the version's own result shape, lo up.
        let out = Env::new("ADD", ns).run(&host, &c);
        let r = assert_json_success(&out);
        assert_json_eq(&r, &expected_result(v, ns, true));
        assert!(ctr.link_is_up("lo"), "{v}: lo must be up after ADD");
        assert_eq!(ctr.addr_cidrs("lo"), ["127.0.0.1/8", "::1/128"], "{v}");

        // CHECK after ADD: fine from 0.4.0, a version error (code 1) before.
        let check = Env::new("CHECK", ns).run(&host, &c);
        if at_least(v, "0.4.0") {
            assert_silent_success(&check);
        } else {
            let e = assert_error(&check, 1, "config version does not allow CHECK");
            assert_eq!(e["cniVersion"], json!(v), "{check}");
        }

        // DEL: lo down, nothing printed.
        assert_silent_success(&Env::new("DEL", ns).run(&host, &c));
        assert!(!ctr.link_is_up("lo"), "{v}: lo must be down after DEL");

        // CHECK after DEL fails: lo is down.
        let check = Env::new("CHECK", ns).run(&host, &c);
        if at_least(v, "0.4.0") {
            let e = assert_error(&check, 999, "loopback interface is down");
            assert_eq!(e["cniVersion"], json!(v), "{check}");
        } else {
            assert_error(&check, 1, "config version does not allow CHECK");
        }

        // GC and STATUS only need CNI_PATH; they exist from 1.1.0.
        for verb in ["GC", "STATUS"] {
            let env = Env(vec![
                ("CNI_COMMAND".into(), verb.into()),
                ("CNI_PATH".into(), "/opt/cni/bin".into()),
            ]);
            let out = env.run(&host, &c);
            if v == "1.1.0" {
                assert_silent_success(&out);
            } else {
                let e = assert_error(&out, 1, &format!("config version does not allow {verb}"));
                assert_eq!(
                    e["details"],
                    json!(format!("{verb} needs cniVersion 1.1.0 or later"))
                );
            }
            assert!(!ctr.link_is_up("lo"), "{v} {verb} must not touch lo");
        }
    }
    assert!(
        host.netns().link_is_up("lo"),
        "the host's lo is never touched"
    );
}

#[test]
fn add_ignores_ifname_and_is_repeatable() {
    require_root();
    let host = Host::new("lo-ifname");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    for ifname in ["eth0", "net1", "lo"] {
        let out = Env::new("ADD", ctr.path_str())
            .set("CNI_IFNAME", ifname)
            .run(&host, &c);
        // Always `lo`, whatever CNI_IFNAME says; a second ADD is fine.
        assert_json_eq(
            &assert_json_success(&out),
            &expected_result("1.0.0", ctr.path_str(), true),
        );
    }
    assert_eq!(ctr.link_names(), ["lo"], "no link is created");
    assert!(ctr.link_is_up("lo"));
}

#[test]
fn config_without_cni_version_means_0_1_0() {
    require_root();
    let host = Host::new("lo-noversion");
    let ctr = host.container("c");
    let out = Env::new("ADD", ctr.path_str()).run(&host, r#"{"name":"lo-net","type":"loopback"}"#);
    assert_json_eq(
        &assert_json_success(&out),
        &expected_result("0.1.0", ctr.path_str(), true),
    );
    // And CHECK, which needs 0.4.0, is refused.
    let out =
        Env::new("CHECK", ctr.path_str()).run(&host, r#"{"name":"lo-net","type":"loopback"}"#);
    assert_error(&out, 1, "config version does not allow CHECK");
}

// ---------------------------------------------------------------------------
// prevResult
// ---------------------------------------------------------------------------

fn with_prev(version: &str, prev: &Value) -> String {
    json!({"cniVersion": version, "name": "lo-net", "type": "loopback", "prevResult": prev})
        .to_string()
}

#[test]
fn prev_result_is_passed_through_in_the_config_version() {
    require_root();
    let host = Host::new("lo-prev");
    let ctr = host.container("c");
    let prev_1_0 = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1400, "sandbox": "/run/netns/x"}],
        "ips": [
            {"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"interface": 0, "address": "fd00::2/64"}
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "::/0"}],
        "dns": {"nameservers": ["10.0.0.53"]}
    });
    let prev_0_4 = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
        "dns": {}
    });
    let prev_0_2 = json!({
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "dns": {"nameservers": ["10.0.0.53"]}
    });
    let cases: Vec<(&str, &Value, Value)> = vec![
        // Same version: unchanged.
        ("1.0.0", &prev_1_0, prev_1_0.clone()),
        // 1.0.0 -> 0.4.0: ips[].version added, interface mtu dropped, dns kept.
        (
            "0.4.0",
            &prev_1_0,
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
                "ips": [
                    {"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
                    {"version": "6", "interface": 0, "address": "fd00::2/64"}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "::/0"}],
                "dns": {"nameservers": ["10.0.0.53"]}
            }),
        ),
        // 1.0.0 -> 0.2.0: ip4/ip6 with their routes.
        (
            "0.2.0",
            &prev_1_0,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]},
                "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0"}]},
                "dns": {"nameservers": ["10.0.0.53"]}
            }),
        ),
        // 0.4.0 -> 1.1.0: no version keys, empty dns omitted.
        (
            "1.1.0",
            &prev_0_4,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
                "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
            }),
        ),
        // 0.2.0 -> 1.0.0: ip4 becomes ips[] (no interface index), routes kept.
        (
            "1.0.0",
            &prev_0_2,
            json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.0.0.53"]}
            }),
        ),
        // 0.2.0 -> 0.3.1.
        (
            "0.3.1",
            &prev_0_2,
            json!({
                "cniVersion": "0.3.1",
                "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.0.0.53"]}
            }),
        ),
    ];
    for (version, prev, expected) in cases {
        ctr.ip(&["link", "set", "lo", "down"]);
        let out = Env::new("ADD", ctr.path_str()).run(&host, &with_prev(version, prev));
        let r = assert_json_success(&out);
        assert_json_eq(&r, &expected);
        // The plugin still did its job.
        assert!(
            ctr.link_is_up("lo"),
            "lo must be up after ADD with prevResult"
        );
    }
}

/// An `ips[].interface` that names no interface: ADD passes the result
/// along as the reference does (CHECKs that read it refuse it, code 6).
#[test]
fn dangling_interface_index_passes_add() {
    require_root();
    let host = Host::new("lo-dangle");
    let ctr = host.container("c");
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "interface": 0}]});
    let out = Env::new("ADD", ctr.path_str()).run(&host, &with_prev("1.0.0", &prev));
    let res = assert_json_success(&out);
    assert_eq!(res["ips"], prev["ips"]);
}

#[test]
fn invalid_prev_result_is_refused_before_touching_the_container() {
    require_root();
    let host = Host::new("lo-badprev");
    let ctr = host.container("c");
    // A bad address; a result version that does not exist (read as an
    // old one, its ips and interfaces would be dropped from the chain).
    let bad_ip = json!({"cniVersion": "1.0.0", "ips": [{"address": "banana"}]});
    let bad_version = json!({"cniVersion": "1.0", "interfaces": [{"name": "eth0"}],
                             "ips": [{"interface": 0, "address": "10.0.0.2/24"}]});
    let not_object = json!(["10.0.0.2/24"]);
    for (prev, named) in [
        (bad_ip, "banana"),
        (bad_version, "\"1.0\""),
        (not_object, "[\"10.0.0.2/24\"]"),
    ] {
        let out = Env::new("ADD", ctr.path_str()).run(&host, &with_prev("1.0.0", &prev));
        out.assert_failure();
        let e = out.expect_json();
        assert_eq!(
            e["code"], 6,
            "a prevResult that does not decode is code 6:\n{out}"
        );
        assert!(
            e["msg"].as_str().unwrap().contains(named),
            "the message names the bad value:\n{out}"
        );
        assert!(!ctr.link_is_up("lo"), "nothing done on a bad request");
    }
}

// ---------------------------------------------------------------------------
// DEL idempotence, IPv6 disabled, non-loopback addresses
// ---------------------------------------------------------------------------

#[test]
fn del_is_idempotent() {
    require_root();
    let host = Host::new("lo-del");
    let c = conf("1.0.0");

    // Twice in a row after ADD.
    let ctr = host.container("twice");
    assert_json_success(&Env::new("ADD", ctr.path_str()).run(&host, &c));
    for _ in 0..2 {
        assert_silent_success(&Env::new("DEL", ctr.path_str()).run(&host, &c));
        assert!(!ctr.link_is_up("lo"));
    }

    // DEL without ADD.
    let fresh = host.container("fresh");
    assert_silent_success(&Env::new("DEL", fresh.path_str()).run(&host, &c));

    // Without CNI_NETNS (unset, and empty).
    assert_silent_success(&Env::new("DEL", "").unset("CNI_NETNS").run(&host, &c));
    assert_silent_success(&Env::new("DEL", "").run(&host, &c));

    // With a netns that has been deleted since (`ip netns del`: path gone).
    let gone = host.container("gone");
    assert_json_success(&Env::new("ADD", gone.path_str()).run(&host, &c));
    let path = gone.path_str().to_owned();
    drop(gone);
    assert!(!Path::new(&path).exists());
    assert_silent_success(&Env::new("DEL", &path).run(&host, &c));
    assert_silent_success(&Env::new("DEL", &path).run(&host, &c));

    assert!(
        host.netns().link_is_up("lo"),
        "the host's lo is never touched"
    );
}

/// A namespace that has been unmounted but whose (now empty) file is still
/// at the path: what a runtime leaves when it crashes between unmount and
/// unlink. The namespace is gone, so DEL must succeed (SPEC: DEL must clean
/// up as much as possible and succeed when the netns is gone). The plugin's
/// own error message says that an empty file there means "unmounted".
#[test]
fn del_with_an_unmounted_netns_file_succeeds() {
    require_root();
    let host = Host::new("lo-unmounted");
    let c = conf("1.0.0");
    let ctr = host.container("unmounted");
    assert_json_success(&Env::new("ADD", ctr.path_str()).run(&host, &c));
    let st = std::process::Command::new("umount")
        .arg(ctr.path())
        .status()
        .expect("run umount");
    assert!(st.success(), "umount {}", ctr.path_str());
    let meta = std::fs::metadata(ctr.path()).expect("the file stays");
    assert!(meta.is_file() && meta.len() == 0);

    let out = Env::new("DEL", ctr.path_str()).run(&host, &c);
    assert_silent_success(&out);
}

#[test]
fn add_with_ipv6_disabled_reports_only_ipv4() {
    require_root();
    let host = Host::new("lo-noipv6");
    for v in ["0.2.0", "0.4.0", "1.0.0"] {
        let ctr = host.container("noipv6");
        ctr.set_sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        let out = Env::new("ADD", ctr.path_str()).run(&host, &conf(v));
        assert_json_eq(
            &assert_json_success(&out),
            &expected_result(v, ctr.path_str(), false),
        );
        assert!(ctr.link_is_up("lo"));
        assert_eq!(ctr.addr_cidrs("lo"), ["127.0.0.1/8"]);
    }
}

#[test]
fn non_loopback_address_on_lo_fails_naming_it() {
    require_root();
    let host = Host::new("lo-nonlo");
    for addr in ["10.1.2.3", "fd00::1"] {
        let ctr = host.container("nonlo");
        let cidr = if addr.contains(':') {
            format!("{addr}/128")
        } else {
            format!("{addr}/32")
        };
        ctr.ip(&["addr", "add", &cidr, "dev", "lo"]);
        let out = Env::new("ADD", ctr.path_str()).run(&host, &conf("1.0.0"));
        let e = assert_error(
            &out,
            999,
            &format!("loopback interface found with non-loopback address \"{addr}\""),
        );
        assert_eq!(e["cniVersion"], "1.0.0");
        assert!(
            e["details"].as_str().unwrap_or("").contains(ctr.path_str()),
            "details say which netns:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// The bad-input matrix
// ---------------------------------------------------------------------------

/// The required variables of each verb, in the reference's fixed order.
fn required(verb: &str) -> &'static [&'static str] {
    match verb {
        "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        "GC" | "STATUS" => &["CNI_PATH"],
        _ => unreachable!(),
    }
}

#[test]
fn missing_environment_variables_per_verb() {
    require_root();
    let host = Host::new("lo-env");
    let ctr = host.container("c");
    let c = conf("1.1.0");
    let all = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"];
    let env_error = |out: &PluginOutput, missing: &[&str]| {
        let msg = format!("required env variables [{}] missing", missing.join(","));
        let e = assert_error(out, 4, &msg);
        // Nothing of the config is known yet: exactly code and msg.
        assert_json_eq(&e, &json!({"code": 4, "msg": msg}));
    };
    for verb in ["ADD", "CHECK", "DEL", "GC", "STATUS"] {
        let req = required(verb);
        // Each variable alone, unset and set to "".
        for var in all {
            for empty in [false, true] {
                let base = Env::new(verb, ctr.path_str());
                let env = if empty {
                    base.set(var, "")
                } else {
                    base.unset(var)
                };
                let out = env.run(&host, &c);
                if req.contains(&var) {
                    env_error(&out, &[var]);
                } else {
                    // Not required for this verb: the call goes on.
                    assert!(out.success(), "{verb} without {var} must not fail:\n{out}");
                }
            }
        }
        // All of them: the required ones, in the fixed order.
        let mut env = Env::new(verb, ctr.path_str());
        for var in all {
            env = env.unset(var);
        }
        env_error(&env.run(&host, &c), req);
        // Two of them, given in reverse order in the environment.
        if req.len() > 1 {
            let env = Env(vec![
                ("CNI_PATH".into(), String::new()),
                ("CNI_COMMAND".into(), verb.into()),
                ("CNI_IFNAME".into(), "eth0".into()),
                ("CNI_NETNS".into(), ctr.path_str().into()),
            ]);
            env_error(&env.run(&host, &c), &["CNI_CONTAINERID", "CNI_PATH"]);
        }
    }
    assert!(
        !ctr.link_is_up("lo"),
        "no failed call touched the container"
    );
}

#[test]
fn invalid_container_ids() {
    require_root();
    let host = Host::new("lo-cid");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    for verb in ["ADD", "CHECK", "DEL"] {
        for id in ["-c1", "_c1", ".c1", "c 1", "c/1", "c:1", "c;1", "ctr\u{e9}"] {
            let out = Env::new(verb, ctr.path_str())
                .set("CNI_CONTAINERID", id)
                .run(&host, &c);
            let e = assert_error(&out, 4, "invalid characters in containerID");
            assert_eq!(e["details"], json!(id), "{out}");
        }
    }
    assert!(!ctr.link_is_up("lo"));
    // Valid ones, including every allowed character.
    for id in [
        "0",
        "C1.a_b-c",
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
    ] {
        let out = Env::new("ADD", ctr.path_str())
            .set("CNI_CONTAINERID", id)
            .run(&host, &c);
        assert_json_success(&out);
    }
    // GC does not look at the container id.
    let out = Env(vec![
        ("CNI_COMMAND".into(), "GC".into()),
        ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ("CNI_CONTAINERID".into(), "-bad".into()),
    ])
    .run(&host, &conf("1.1.0"));
    assert_silent_success(&out);
}

#[test]
fn invalid_interface_names() {
    require_root();
    let host = Host::new("lo-ifname-bad");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    let contains = "interface name contains / or : or whitespace characters";
    let cases: &[(&str, &str)] = &[
        ("0123456789abcdef", "interface name is too long"),
        // 9 characters, 18 bytes: the limit is in bytes (IFNAMSIZ).
        (
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "interface name is too long",
        ),
        (".", "interface name is . or .."),
        ("..", "interface name is . or .."),
        ("a/b", contains),
        ("a:b", contains),
        ("a b", contains),
        ("a\tb", contains),
        ("eth0\n", contains),
    ];
    for verb in ["ADD", "CHECK", "DEL"] {
        for (ifname, msg) in cases {
            let out = Env::new(verb, ctr.path_str())
                .set("CNI_IFNAME", ifname)
                .run(&host, &c);
            let e = assert_error(&out, 4, msg);
            if *msg == "interface name is too long" {
                let details = e["details"].as_str().unwrap_or_default();
                assert!(
                    details.contains(&format!("{ifname:?} is {} bytes", ifname.len()))
                        && details.ends_with("should be less than 16 characters"),
                    "{e}"
                );
            }
        }
    }
    assert!(!ctr.link_is_up("lo"));
    // 15 bytes is the longest valid name.
    let out = Env::new("ADD", ctr.path_str())
        .set("CNI_IFNAME", "0123456789abcde")
        .run(&host, &c);
    assert_json_success(&out);
    // Names the kernel does not take as is (`all`, `default`, `%`) are
    // refused only by plugins that name a link so; loopback names none.
    for ifname in ["all", "default", "eth%d"] {
        let out = Env::new("ADD", ctr.path_str())
            .set("CNI_IFNAME", ifname)
            .run(&host, &c);
        assert_json_success(&out);
    }
}

/// As the reference's loopback: ADD decodes Go's `types.NetConf`, so a
/// wrong-typed `ipam`, `dns` or `capabilities` is refused and `args` or
/// `runtimeConfig` (not in it) pass; CHECK and DEL read no config key.
#[test]
fn shared_keys_are_read_as_the_reference_reads_them() {
    require_root();
    let host = Host::new("lo-anykeys");
    let ctr = host.container("c");
    let conf = |extra: &str| {
        format!(r#"{{"cniVersion":"1.0.0","name":"lo-net","type":"loopback",{extra}}}"#)
    };
    let ok = conf(r#""args":[],"runtimeConfig":5"#);
    for verb in ["ADD", "CHECK", "DEL"] {
        Env::new(verb, ctr.path_str())
            .run(&host, &ok)
            .assert_success();
    }
    for extra in [
        r#""ipam":5"#,
        r#""ipam":{"type":5}"#,
        r#""dns":5"#,
        r#""capabilities":5"#,
    ] {
        let c = conf(extra);
        let out = Env::new("ADD", ctr.path_str()).run(&host, &c);
        out.assert_cni_error(7);
        Env::new("ADD", ctr.path_str())
            .run(&host, &ok)
            .assert_success();
        for verb in ["CHECK", "DEL"] {
            Env::new(verb, ctr.path_str())
                .run(&host, &c)
                .assert_success();
        }
    }
}

/// Environment values that are not UTF-8 (as Go reads them: bytes) are
/// not taken as unset: an unknown CNI_COMMAND is code 4 (not the silent
/// "about" text and exit 0), an interface name is refused, and CNI_ARGS
/// keeps its keys.
#[test]
fn environment_values_that_are_not_utf8() {
    require_root();
    let host = Host::new("lo-nonutf8");
    let ctr = host.container("c");
    let file = host.write_file("lo.json", &conf("1.0.0"));
    let run = |cmd: &str, ifname: &str, args: &str| {
        let script = format!(
            "CNI_COMMAND={cmd} CNI_CONTAINERID=c1 CNI_NETNS={} CNI_IFNAME={ifname} \
             CNI_PATH=/opt/cni/bin CNI_ARGS={args} exec {} < {}",
            ctr.path_str(),
            plugin().display(),
            file.display()
        );
        host.run(Path::new("/bin/sh"), &["-c", &script], &[], "")
    };
    let ff = "$(printf '\\377')";
    let out = run(ff, "lo", "");
    assert_eq!(out.code, Some(1), "{out}");
    let e = out.assert_cni_error(4);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .starts_with("unknown CNI_COMMAND"),
        "{out}"
    );
    let out = run("ADD", &format!("eth{ff}"), "");
    assert_error(&out, 4, "interface name is not valid UTF-8");
    let out = run(
        "ADD",
        "lo",
        &format!("IgnoreUnknown=1\\;K8S_POD_NAME=caf{ff}"),
    );
    assert_json_success(&out);
    let out = run("ADD", "lo", &format!("K8S_POD_NAME=caf{ff}\\;BOGUS=1"));
    out.assert_cni_error(999);
}

#[test]
fn broken_config_json_and_network_names() {
    require_root();
    let host = Host::new("lo-badconf");
    let ctr = host.container("c");
    for verb in ["ADD", "CHECK", "DEL"] {
        // Not JSON, or not an object: code 6.
        for stdin in ["{not json", "", "[1]", r#"{"cniVersion":"1.0.0","name":"#] {
            let out = Env::new(verb, ctr.path_str()).run(&host, stdin);
            out.assert_failure();
            let e = out.assert_cni_error(6);
            let msg = e["msg"].as_str().unwrap();
            assert!(
                msg.starts_with("error unmarshall network config: "),
                "{verb} {stdin:?}:\n{out}"
            );
        }
        // No usable name: code 7.
        for stdin in [
            r#"{"cniVersion":"1.0.0","type":"loopback"}"#,
            r#"{"cniVersion":"1.0.0","name":"","type":"loopback"}"#,
            r#"{"cniVersion":"1.0.0","name":null,"type":"loopback"}"#,
        ] {
            let out = Env::new(verb, ctr.path_str()).run(&host, stdin);
            assert_error(&out, 7, "missing network name");
        }
        for name in ["a b", "-net", "net/x", "net:1", "n\u{e9}t"] {
            let stdin =
                json!({"cniVersion": "1.0.0", "name": name, "type": "loopback"}).to_string();
            let out = Env::new(verb, ctr.path_str()).run(&host, &stdin);
            let e = assert_error(&out, 7, "invalid characters found in network name");
            assert_eq!(e["details"], json!(name));
        }
    }
    // GC and STATUS read the config too.
    for verb in ["GC", "STATUS"] {
        let env = Env(vec![
            ("CNI_COMMAND".into(), verb.into()),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ]);
        env.run(&host, "{not json").assert_cni_error(6);
        assert_error(
            &env.run(&host, r#"{"cniVersion":"1.1.0"}"#),
            7,
            "missing network name",
        );
    }
    assert!(!ctr.link_is_up("lo"));
}

#[test]
fn unknown_cni_versions() {
    require_root();
    let host = Host::new("lo-badversion");
    let ctr = host.container("c");
    let supported = r#"plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#;
    for verb in ["ADD", "DEL"] {
        for v in ["9.9.9", "0.5.0", "1.0", "1.2.0"] {
            let out = Env::new(verb, ctr.path_str()).run(&host, &conf(v));
            let e = assert_error(&out, 1, "incompatible CNI versions");
            assert_eq!(
                e["details"],
                json!(format!("config is \"{v}\", {supported}")),
                "{out}"
            );
            assert_eq!(e["cniVersion"], json!(v), "{out}");
        }
    }
    assert!(!ctr.link_is_up("lo"));
}

#[test]
fn unknown_and_unset_cni_command() {
    require_root();
    let host = Host::new("lo-command");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    for cmd in ["FOO", "add", "Del", "ADD "] {
        let out = Env::new(cmd, ctr.path_str()).run(&host, &c);
        assert_error(&out, 4, &format!("unknown CNI_COMMAND: {cmd}"));
    }
    // Unset or empty: the about text on stderr, exit 0, nothing on stdout.
    for env in [
        Env::new("", ctr.path_str()).unset("CNI_COMMAND"),
        Env::new("", ctr.path_str()),
        Env(vec![]),
    ] {
        let out = env.run(&host, &c);
        assert_silent_success(&out);
        let about = out.stderr.as_str();
        assert!(about.starts_with("CNI loopback plugin "), "{out}");
        assert!(
            about.contains(
                "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
            ),
            "{out}"
        );
    }
    assert!(!ctr.link_is_up("lo"));
}

#[test]
fn netns_paths_that_are_not_a_container_netns_are_code_8() {
    require_root();
    let host = Host::new("lo-badnetns");
    let c = conf("1.0.0");
    let file = host.write_file("not-a-netns", "");
    let dir = host.dir().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let missing = host.dir().join("missing");
    let own = host.path().to_str().unwrap().to_owned();
    let cases: Vec<(String, &str)> = vec![
        (file.to_str().unwrap().into(), "is a regular file"),
        (dir.to_str().unwrap().into(), "is a directory"),
        (missing.to_str().unwrap().into(), "does not exist"),
        ("/proc/self/ns/uts".into(), "is a uts namespace"),
        (own.clone(), ""),
        ("/proc/self/ns/net".into(), ""),
    ];
    for verb in ["ADD", "CHECK"] {
        for (path, says) in &cases {
            let out = Env::new(verb, path).run(&host, &c);
            out.assert_failure();
            let e = out.assert_cni_error(8);
            assert_eq!(e["cniVersion"], "1.0.0", "{out}");
            let msg = e["msg"].as_str().unwrap();
            if says.is_empty() {
                assert_eq!(
                    msg, "plugin's netns and netns from CNI_NETNS should not be the same",
                    "{out}"
                );
                assert!(
                    e["details"]
                        .as_str()
                        .unwrap()
                        .contains("CNI_NETNS_OVERRIDE"),
                    "{out}"
                );
            } else {
                assert!(msg.contains(path.as_str()) && msg.contains(says), "{out}");
            }
        }
    }
    // Refused before acting: the host's lo is still up.
    assert!(host.netns().link_is_up("lo"));
}

#[test]
fn own_netns_is_refused_unless_overridden_and_del_never_touches_it() {
    require_root();
    let host = Host::new("lo-ownns");
    let c = conf("1.0.0");
    let own = host.path().to_str().unwrap().to_owned();

    // ADD on its own namespace, lo down beforehand: refused, nothing done.
    host.netns().ip(&["link", "set", "lo", "down"]);
    let out = Env::new("ADD", &own).run(&host, &c);
    assert_error(
        &out,
        8,
        "plugin's netns and netns from CNI_NETNS should not be the same",
    );
    assert!(!host.netns().link_is_up("lo"), "refused before acting");

    // CNI_NETNS_OVERRIDE=1 (or true, any case): allowed, acts on the host ns.
    for value in ["1", "true", "TRUE"] {
        host.netns().ip(&["link", "set", "lo", "down"]);
        let out = Env::new("ADD", &own)
            .set("CNI_NETNS_OVERRIDE", value)
            .run(&host, &c);
        assert_json_eq(
            &assert_json_success(&out),
            &expected_result("1.0.0", &own, true),
        );
        assert!(host.netns().link_is_up("lo"), "override {value}: lo set up");
    }
    // Anything else is not an override.
    let out = Env::new("ADD", &own)
        .set("CNI_NETNS_OVERRIDE", "yes")
        .run(&host, &c);
    out.assert_cni_error(8);

    // DEL on the own namespace (a recycled /proc/<pid>/ns/net): success, and
    // the host's lo stays up.
    assert!(host.netns().link_is_up("lo"));
    for path in [own.as_str(), "/proc/self/ns/net"] {
        assert_silent_success(&Env::new("DEL", path).run(&host, &c));
        assert!(
            host.netns().link_is_up("lo"),
            "DEL {path} took the host's lo down"
        );
    }
    // ... unless explicitly overridden.
    let out = Env::new("DEL", &own)
        .set("CNI_NETNS_OVERRIDE", "1")
        .run(&host, &c);
    assert_silent_success(&out);
    assert!(!host.netns().link_is_up("lo"), "override: DEL acts");
}

/// plugins#714: a late DEL whose `/proc/<pid>/ns/net` now belongs to another
/// process of the host namespace (a recycled pid) must not take the host's
/// `lo` down; a pid that is gone is a namespace that is gone.
#[test]
fn proc_pid_netns_paths() {
    require_root();
    let host = Host::new("lo-procpid");
    let c = conf("1.0.0");
    let mut host_proc = host.spawn(Path::new("/bin/sleep"), &["1000"], &[]);
    assert!(host_proc.is_running());
    let recycled = format!("/proc/{}/ns/net", host_proc.id());
    assert_silent_success(&Env::new("DEL", &recycled).run(&host, &c));
    assert!(
        host.netns().link_is_up("lo"),
        "DEL on a host process's netns took lo down"
    );
    assert_error(
        &Env::new("ADD", &recycled).run(&host, &c),
        8,
        "plugin's netns and netns from CNI_NETNS should not be the same",
    );
    drop(host_proc);

    // A container's process: its /proc path works like /run/netns.
    let ctr = host.container("c");
    let mut ctr_proc = ctr.spawn("sleep", &["1000"], &[]);
    assert!(ctr_proc.is_running());
    let path = format!("/proc/{}/ns/net", ctr_proc.id());
    assert_json_eq(
        &assert_json_success(&Env::new("ADD", &path).run(&host, &c)),
        &expected_result("1.0.0", &path, true),
    );
    assert!(ctr.link_is_up("lo"));
    assert_silent_success(&Env::new("DEL", &path).run(&host, &c));
    assert!(!ctr.link_is_up("lo"));

    // A process that has exited: DEL succeeds, ADD says the path is missing.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dead = format!("/proc/{pid}/ns/net");
    assert_silent_success(&Env::new("DEL", &dead).run(&host, &c));
    let e = Env::new("ADD", &dead).run(&host, &c);
    let msg = e.assert_cni_error(8)["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("does not exist"), "{e}");
    assert!(host.netns().link_is_up("lo"));
}

#[test]
fn version_reply() {
    require_root();
    let host = Host::new("lo-version");
    let all = json!(VERSIONS);
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
        (r#"{"cniVersion":"1.0.0","name":"x"}"#, "1.0.0"),
        (r#"{"cniVersion":"1.1.0"}"#, "1.1.0"),
        (r#"{"cniVersion":"0.1.0"}"#, "0.1.0"),
        // Nothing usable asked: our current version.
        ("", "1.1.0"),
        ("garbage", "1.1.0"),
        (r#"{"cniVersion":"banana"}"#, "1.1.0"),
    ];
    for (stdin, echoed) in cases {
        // VERSION needs no other variable; stray ones are ignored.
        for env in [
            Env(vec![("CNI_COMMAND".into(), "VERSION".into())]),
            Env::new("VERSION", "/nonexistent").set("CNI_IFNAME", "a/b"),
        ] {
            let out = env.run(&host, stdin);
            out.assert_success();
            let expected = json!({"cniVersion": echoed, "supportedVersions": all});
            // Compact JSON and one newline.
            assert_eq!(out.stdout, format!("{expected}\n"), "{stdin:?}:\n{out}");
            assert_eq!(out.stderr, "");
        }
    }
}

#[test]
fn cni_args() {
    require_root();
    let host = Host::new("lo-args");
    let ctr = host.container("c");
    let c = conf("1.0.0");
    let add = |args: &str| {
        Env::new("ADD", ctr.path_str())
            .set("CNI_ARGS", args)
            .run(&host, &c)
    };
    // Unknown keys are refused (loopback knows none)...
    for args in [
        "FOO=bar",
        "IP=10.0.0.5",
        "K8S_POD_NAME=x;foo=1",
        "IgnoreUnknown=0;FOO=1",
    ] {
        let out = add(args);
        out.assert_failure();
        let e = out.assert_cni_error(999);
        assert!(
            e["msg"]
                .as_str()
                .unwrap()
                .starts_with("ARGS: unknown args ["),
            "{args}:\n{out}"
        );
    }
    let e = add("FOO=bar").assert_cni_error(999).clone();
    assert_eq!(e["msg"], r#"ARGS: unknown args ["FOO=bar"]"#);
    assert!(!ctr.link_is_up("lo"), "refused before acting");
    // ... unless IgnoreUnknown is 1/true; the K8S keys are always accepted.
    for args in [
        "",
        "IgnoreUnknown=1;FOO=bar",
        "FOO=bar;IgnoreUnknown=true",
        "IgnoreUnknown=TRUE;A=1;B=2",
        "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=abc",
        ";;K8S_POD_NAME=x;",
    ] {
        let out = add(args);
        assert_json_eq(
            &assert_json_success(&out),
            &expected_result("1.0.0", ctr.path_str(), true),
        );
    }
    // Malformed pairs: code 4, whatever IgnoreUnknown says.
    for (args, pair) in [
        ("FOO", "FOO"),
        ("IgnoreUnknown=1;A=b=c", "A=b=c"),
        ("K8S_POD_NAME", "K8S_POD_NAME"),
    ] {
        let out = add(args);
        let e = assert_error(&out, 4, &format!("ARGS: invalid pair \"{pair}\""));
        assert_eq!(e["cniVersion"], "1.0.0");
    }
    // IgnoreUnknown itself must be a boolean.
    add("IgnoreUnknown=maybe;FOO=1").assert_failure();
}

#[test]
fn log_file_gets_one_line_per_operation() {
    require_root();
    let host = Host::new("lo-log");
    let ctr = host.container("c");
    let log = host.dir().join("loopback.log");
    let c = json!({
        "cniVersion": "1.0.0", "name": "lognet", "type": "loopback",
        "logFile": log.to_str().unwrap()
    })
    .to_string();
    let env = |cmd: &str| Env::new(cmd, ctr.path_str()).set("CNI_CONTAINERID", "ctr-logged");

    let out = env("ADD").run(&host, &c);
    // Exactly the result on stdout, and no log on stderr.
    assert_json_eq(
        &assert_json_success(&out),
        &expected_result("1.0.0", ctr.path_str(), true),
    );
    assert_silent_success(&env("CHECK").run(&host, &c));
    let out = env("DEL").run(&host, &c);
    assert_silent_success(&out);
    assert_eq!(out.stderr, "", "logs go to the file, not stderr");

    let text = std::fs::read_to_string(&log).expect("the log file exists");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per operation:\n{text}");
    for (line, verb) in lines.iter().zip(["ADD", "CHECK", "DEL"]) {
        for needle in [verb, "lognet", "ctr-logged", "eth0", "ok"] {
            assert!(
                line.contains(needle),
                "{needle:?} missing in log line {line:?}"
            );
        }
        assert!(line.contains(ctr.path_str()), "netns in {line:?}");
    }

    // A failure is logged too, and stdout still carries only the error.
    let out = env("CHECK").run(&host, &c);
    assert_error(&out, 999, "loopback interface is down");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("CHECK") && last.contains("lognet") && last.contains("999"),
        "{text}"
    );
    assert!(!last.contains(" ok"), "{last}");

    // A log line is one line: a newline in a logged value is escaped.
    let out = env("DEL")
        .set("CNI_NETNS", "/x\nFAKE forged line")
        .run(&host, &c);
    out.assert_success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("FAKE")), "{text}");
    assert!(text.contains("netns=/x\\nFAKE forged line took"), "{text}");

    // A log file that cannot be used (relative, unwritable) is said on
    // stderr, where the lines go instead; a bad level is said in the log.
    for (file, level, needle) in [
        ("relative.log", "info", "is not an absolute path"),
        ("/proc/nuage.log", "info", "cannot be written"),
    ] {
        let c = json!({
            "cniVersion": "1.0.0", "name": "lognet", "type": "loopback",
            "logFile": file, "logLevel": level
        })
        .to_string();
        let out = env("DEL").run(&host, &c);
        out.assert_success();
        assert!(out.stderr.contains(needle), "{file}: {out}");
        assert!(out.stderr.contains("DEL net=lognet"), "{file}: {out}");
    }
    // An empty NUAGE_LOG_LEVEL is unset; a bad one is said once.
    let plain = conf("1.0.0");
    let out = env("DEL").set("NUAGE_LOG_LEVEL", "").run(&host, &plain);
    assert_silent_success(&out);
    assert_eq!(out.stderr, "", "{out}");
    let out = env("DEL").set("NUAGE_LOG_LEVEL", "loud").run(&host, &plain);
    out.assert_success();
    assert_eq!(out.stderr.matches("is not one of").count(), 1, "{out}");
    let c = json!({
        "cniVersion": "1.0.0", "name": "lognet", "type": "loopback",
        "logFile": log.to_str().unwrap(), "logLevel": "verbose"
    })
    .to_string();
    env("DEL").run(&host, &c).assert_success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(r#"log level "verbose" is not one of error, warn, info, debug"#),
        "{text}"
    );
}
