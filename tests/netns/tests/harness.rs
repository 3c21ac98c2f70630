//! Tests of the test harness itself (run as root, like every netns test).

use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use netns_tests::*;
use serde_json::{json, Value};

fn mounted(path: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let p = path.to_str().unwrap();
    mi.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == p))
}

#[test]
fn netns_is_a_distinct_named_nsfs_namespace() {
    require_root();
    let ns = Netns::new("distinct");
    let prefix = format!("nuage-t{}-", std::process::id());
    assert!(ns.name().starts_with(&prefix), "{}", ns.name());
    assert!(ns.name().ends_with("-distinct"), "{}", ns.name());
    assert_eq!(ns.path(), Path::new("/run/netns").join(ns.name()));
    assert_eq!(ns.path_str(), ns.path().to_str().unwrap());
    assert!(mounted(ns.path()), "{} is not a mount point", ns.path_str());

    let machine = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_ne!(ns.inode(), machine);
    let other = Netns::new("distinct2");
    assert_ne!(ns.inode(), other.inode());

    // A fresh namespace has only lo, down; Netns::new_lo_up brings it up.
    assert_eq!(ns.link_names(), vec!["lo".to_owned()]);
    assert!(!ns.link_is_up("lo"));
    let up = Netns::new_lo_up("lo-up");
    assert!(up.link_is_up("lo"));
    assert_eq!(up.addr_cidrs("lo"), vec!["127.0.0.1/8", "::1/128"]);

    // What the namespace reports as its own netns is the same file.
    let seen = ns.exec_ok("stat", &["-L", "-c", "%i", "/proc/self/ns/net"]);
    assert_eq!(seen.trim().parse::<u64>().unwrap(), ns.inode());
}

#[test]
fn netns_is_removed_on_drop_even_after_a_panic() {
    require_root();
    let mut seen: Option<PathBuf> = None;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let ns = Netns::new("panics");
        seen = Some(ns.path().to_path_buf());
        assert!(ns.exists());
        panic!("test failure inside a test using a netns");
    }));
    assert!(r.is_err());
    let path = seen.expect("the netns was created");
    assert!(!path.exists(), "{} left behind", path.display());
    assert!(!mounted(&path), "{} still mounted", path.display());

    // And a plain drop.
    let ns = Netns::new("drops");
    let path = ns.path().to_path_buf();
    drop(ns);
    assert!(!path.exists() && !mounted(&path));

    // A Host's namespace and dirs go too.
    let mut paths: Vec<PathBuf> = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let host = Host::new("panics");
        paths = vec![
            host.path().to_path_buf(),
            host.dir().to_path_buf(),
            host.state_dir().to_path_buf(),
        ];
        host.write_file("conf/x.conflist", "{}");
        panic!("boom");
    }));
    assert!(r.is_err());
    assert_eq!(paths.len(), 3);
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn stale_namespaces_of_dead_processes_are_swept() {
    require_root();
    // A pid that is certainly dead: a child we reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let name = format!("nuage-t{dead}-0-stale");
    let host = Host::new("sweep");
    // `ip netns add` makes a new namespace; it does not touch the machine's.
    host.exec("ip", &["netns", "add", &name]).assert_success();
    let stale = Path::new("/run/netns").join(&name);
    assert!(stale.exists());
    let mine = Netns::new("alive");

    let removed = sweep_stale();
    let still_there = stale.exists();
    if still_there {
        // Do not leave it behind if the sweep is broken.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
    }
    assert!(
        !still_there,
        "stale {} not swept (removed: {removed:?})",
        stale.display()
    );
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(mine.exists(), "a live process's namespace was swept");
    assert!(host.path().exists());
}

#[test]
fn veth_pair_between_two_test_namespaces_pings() {
    require_root();
    let a = Netns::new_lo_up("ping-a");
    let b = Netns::new_lo_up("ping-b");
    a.veth_pair_into("va", &b, "vb");
    let la = a.link("va").expect("va in a");
    assert_eq!(la["linkinfo"]["info_kind"], "veth");
    assert!(a.link("vb").is_none(), "vb must be in b only");
    assert!(b.link("vb").is_some());
    assert!(a.link_is_up("va") && b.link_is_up("vb"));

    a.ip(&["addr", "add", "192.0.2.1/24", "dev", "va"]);
    b.ip(&["addr", "add", "192.0.2.2/24", "dev", "vb"]);
    a.ip(&["addr", "add", "2001:db8::1/64", "dev", "va", "nodad"]);
    b.ip(&["addr", "add", "2001:db8::2/64", "dev", "vb", "nodad"]);
    assert!(a.ping("192.0.2.2"), "IPv4 ping a -> b failed");
    assert!(b.ping("2001:db8::1"), "IPv6 ping b -> a failed");

    // The readers.
    let addrs = a.addrs("va");
    assert!(addrs
        .iter()
        .any(|x| x["local"] == "192.0.2.1" && x["prefixlen"] == 24 && x["family"] == "inet"));
    assert!(a.addr_cidrs("va").contains(&"2001:db8::1/64".to_owned()));
    let r4 = a.routes(Family::V4);
    assert!(
        r4.iter()
            .any(|r| r["dst"] == "192.0.2.0/24" && r["dev"] == "va"),
        "{r4:?}"
    );
    assert!(a
        .routes(Family::V6)
        .iter()
        .any(|r| r["dst"] == "2001:db8::/64"));
    let local = a.routes_in_table(Family::V4, "local");
    assert!(local.iter().any(|r| r["dst"] == "192.0.2.1"), "{local:?}");

    assert_eq!(a.sysctl("net.ipv4.ip_forward"), "0");
    a.set_sysctl("net.ipv4.ip_forward", "1");
    assert_eq!(a.sysctl("net.ipv4.ip_forward"), "1");
    assert_eq!(a.sysctl("net/ipv4/ip_forward"), "1");
    assert_eq!(b.sysctl("net.ipv4.ip_forward"), "0", "sysctl leaked to b");
    assert_eq!(a.sysctl("net.ipv6.conf.va.disable_ipv6"), "0");
}

#[test]
fn background_processes_run_in_their_namespace_and_stop() {
    require_root();
    let host = Host::new("bg");
    let ctr = host.container("ctr");
    let mut bg = ctr.spawn(
        "sh",
        &["-c", "ip -j link show >&2; echo started; exec sleep 600"],
        &[("X", "1")],
    );
    bg.wait_for_output("started");
    assert!(bg.is_running());
    assert!(bg.id() > 0);
    assert_eq!(bg.stdout_so_far(), "started\n");
    let out = bg.stop();
    assert_eq!(out.stdout, "started\n");
    let links: Value = serde_json::from_str(&out.stderr).unwrap();
    assert_eq!(
        links.as_array().unwrap().len(),
        1,
        "only lo in ctr: {links}"
    );
    assert!(!out.success());

    // Dropping kills it.
    let bg = host.spawn(Path::new("/bin/sleep"), &["600"], &[]);
    let pid = bg.id();
    drop(bg);
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(
        !proc_dir.exists(),
        "background process {pid} survived its drop"
    );
}

#[test]
fn run_plugin_runs_in_the_host_namespace_with_a_clean_env() {
    require_root();
    let host = Host::new("run");
    let ctr = host.container("ctr");
    host.veth_pair_into(host.netns(), "h0", &ctr, "c0");

    // Only the host namespace's links, via netlink and via /sys.
    let out = host.run_plugin(Path::new("/bin/sh"), &[], "ip -j link show");
    out.assert_success();
    let names: Vec<&str> = out
        .expect_json()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["lo", "h0"]);
    let out = host.run_plugin(Path::new("/bin/sh"), &[], "ls /sys/class/net");
    let mut sys: Vec<&str> = out.assert_success().stdout.split_whitespace().collect();
    sys.sort_unstable();
    assert_eq!(sys, vec!["h0", "lo"]);

    // Exactly the environment the test passes, plus PATH.
    let out = host.run(
        Path::new("/usr/bin/env"),
        &[],
        &[("CNI_COMMAND", "VERSION"), ("FOO", "a b")],
        "",
    );
    let mut env: Vec<&str> = out.assert_success().stdout.lines().collect();
    env.sort_unstable();
    assert_eq!(
        env,
        vec![
            "CNI_COMMAND=VERSION",
            "FOO=a b",
            &format!("PATH={DEFAULT_PATH}") as &str
        ]
    );
    let out = host.run(Path::new("/usr/bin/env"), &[], &[("PATH", "/bin")], "");
    assert_eq!(out.stdout, "PATH=/bin\n");

    // stdin, stdout, stderr, exit code.
    let out = host.run(
        Path::new("/bin/sh"),
        &[
            "-c",
            r#"read x; echo "{\"got\": \"$x\"}"; echo oops >&2; exit 3"#,
        ],
        &[],
        "hello\n",
    );
    assert_eq!(out.code, Some(3));
    assert!(!out.success());
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.json, Some(json!({"got": "hello"})));

    // /var/lib/cni is the host's private state dir.
    host.run_plugin(
        Path::new("/bin/sh"),
        &[],
        "mkdir -p /var/lib/cni/results && echo x > /var/lib/cni/results/marker",
    )
    .assert_success();
    assert!(host.state_dir().join("results/marker").is_file());
    assert!(!Path::new("/var/lib/cni/results/marker").exists());

    // exec_in targets the given namespace.
    let c = host.exec_in(&ctr, "ip", &["-j", "link", "show"]);
    let names: Vec<String> = c
        .expect_json()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["lo", "c0"]);
    assert!(host.link(&ctr, "c0").is_some() && host.link(host.netns(), "c0").is_none());
    assert_eq!(host.links(&ctr).len(), 2);
    assert!(host.addrs(&ctr, "lo").is_empty());
    assert!(host.routes(&ctr, Family::V4).is_empty());
    assert_eq!(host.sysctl(&ctr, "net.ipv4.ip_forward"), "0");
}

#[test]
fn cni_errors_and_missing_binaries_are_reported() {
    require_root();
    let host = Host::new("errs");
    let out = host.run_plugin(
        Path::new("/bin/sh"),
        &[],
        r#"echo '{"code": 4, "msg": "required env variables [CNI_NETNS] missing"}'; exit 1"#,
    );
    let e = out.assert_cni_error(4);
    assert_eq!(e["msg"], "required env variables [CNI_NETNS] missing");

    let err = catch_unwind(|| bin("nuage-no-such-binary")).expect_err("must panic");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("`nuage-no-such-binary` not found"), "{msg}");

    let err = catch_unwind(AssertUnwindSafe(|| {
        host.run_plugin(Path::new("/nonexistent/plugin"), &[], "")
    }))
    .expect_err("must panic");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("cannot start"), "{msg}");
}

#[test]
fn reference_loopback_runs_through_the_harness_and_cnitool() {
    require_root();
    let lo = require_reference("loopback");
    assert_eq!(reference("loopback"), Some(lo.clone()));
    assert_eq!(reference("nuage-no-such-plugin"), None);

    let host = Host::new("ref-lo");
    let ctr = host.container("ctr");
    assert!(!ctr.link_is_up("lo"));
    let conf = r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#;
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", ctr.path_str()),
        ("CNI_IFNAME", "lo"),
        ("CNI_PATH", REFERENCE_DIR),
    ];
    let out = host.run_plugin(&lo, &env, conf);
    out.assert_success();
    assert_json_subset(
        out.expect_json(),
        &json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": ctr.path_str()}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}, {"address": "::1/128", "interface": 0}],
        }),
    );
    assert!(ctr.link_is_up("lo"));

    // Through libcni: a conflist in the host's scratch dir.
    let cnitool_path = cnitool();
    assert!(cnitool_path.is_file());
    assert_eq!(cnitool(), cnitool_path, "built once");
    let ctr2 = host.container("ctr2");
    let confdir = host.dir().join("net.d");
    host.write_file(
        "net.d/10-lo.conflist",
        r#"{"cniVersion":"1.0.0","name":"lonet","plugins":[{"type":"loopback"}]}"#,
    );
    let env = [
        ("NETCONFPATH", confdir.to_str().unwrap()),
        ("CNI_PATH", REFERENCE_DIR),
    ];
    let out = host.cnitool("add", "lonet", &ctr2, &env);
    out.assert_success();
    let res: &Value = out.expect_json();
    assert_eq!(res["interfaces"][0]["sandbox"], ctr2.path_str());
    assert!(ctr2.link_is_up("lo"));
    // libcni's cache landed in the host's private state dir.
    let results: Vec<_> = std::fs::read_dir(host.state_dir().join("results"))
        .expect("cache dir")
        .collect();
    assert_eq!(results.len(), 1);
    host.cnitool("check", "lonet", &ctr2, &env).assert_success();
    host.cnitool("del", "lonet", &ctr2, &env).assert_success();
    assert!(!ctr2.link_is_up("lo"));

    let usage = host.run(&cnitool_path, &[], &[], "");
    assert_eq!(usage.code, Some(1));
    assert!(usage.stderr.contains("usage"), "{usage}");
}

#[test]
fn kernel_link_kinds_are_detected() {
    require_root();
    for kind in ["veth", "bridge", "macvlan", "vxlan"] {
        require_link_kind(kind);
        assert!(link_kind_supported(kind), "{kind}");
    }
    assert!(!link_kind_supported("nuage-no-such-kind"));
    let err = catch_unwind(|| require_link_kind("nuage-no-such-kind")).expect_err("must panic");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("lacks"), "{msg}");
}

#[test]
fn shared_dir_has_the_cnitool_sources() {
    let d = shared_dir();
    assert!(d.join("tools/cnitool/main.go").is_file(), "{}", d.display());
}
