//! The `nuage` runner (the libcni + cnitool side) driven as a person or a
//! runtime would, inside a throw-away test host: config loading, chaining,
//! the result cache, CHECK/DEL/GC/STATUS, capability args, error wrapping,
//! `validate`, `list` and `demo`.
//!
//! Plugins are our `loopback` and small recording plugins (a Perl script,
//! Perl being part of every Debian system) that write each call's
//! environment and stdin to files and answer like a chained plugin: ADD
//! prints the `prevResult` it got (or a small result of its own).

use std::collections::HashMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use netns_tests::*;
use serde_json::{json, Value};

fn nuage_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nuage"))
}

/// The recording plugin. `__DIR__` is replaced by the record directory; the
/// plugin's name is its file name (one copy per name).
const RECORDER: &str = r#"#!/usr/bin/perl
# A CNI plugin for tests: records each call, answers like a chained plugin.
use strict;
use warnings;
my $dir = '__DIR__';
my ($name) = $0 =~ m{([^/]+)$};
my $in = do { local $/; <STDIN> };
$in = '' unless defined $in;
my $cmd = defined $ENV{CNI_COMMAND} ? $ENV{CNI_COMMAND} : '';
my $seq = 0;
if (open(my $f, '<', "$dir/seq")) { $seq = <$f>; close $f; chomp $seq; }
$seq++;
open(my $s, '>', "$dir/seq") or die "seq: $!";
print $s $seq;
close $s;
my $base = sprintf('%s/%04d-%s-%s', $dir, $seq, $name, $cmd);
open(my $o, '>', "$base.stdin") or die "stdin: $!";
print $o $in;
close $o;
open($o, '>', "$base.env") or die "env: $!";
for my $k (sort keys %ENV) { print $o "$k=$ENV{$k}\n" if $k =~ /^CNI_/; }
close $o;
print STDERR "recorder $name: $cmd\n";
if (-e "$dir/fail-$name-$cmd") {
    print '{"code":7,"msg":"recorder ' . $name . ' told to fail","details":"remove the fail file"}';
    exit 1;
}
if ($cmd eq 'VERSION') {
    print '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}';
    exit 0;
}
if ($cmd eq 'ADD') {
    if ($in =~ /"prevResult"\s*:\s*(\{(?:[^{}"]++|"(?:[^"\\]|\\.)*+"|(?1))*\})/) {
        print $1;
        exit 0;
    }
    my ($v) = $in =~ /"cniVersion"\s*:\s*"([^"]*)"/;
    $v = '0.1.0' unless defined $v;
    if ($v =~ /^0\.[12]\./) {
        print qq({"cniVersion":"$v","ip4":{"ip":"10.99.0.2/24"}});
    } else {
        print qq({"cniVersion":"$v","interfaces":[{"name":"$name"}],"ips":[{"interface":0,"address":"10.99.0.2/24"}]});
    }
}
exit 0;
"#;

/// One recorded plugin call.
#[derive(Debug, Clone)]
struct Call {
    plugin: String,
    cmd: String,
    /// stdin parsed as JSON (Null when it was not JSON).
    stdin: Value,
    env: HashMap<String, String>,
}

impl Call {
    fn env(&self, k: &str) -> &str {
        self.env.get(k).map(String::as_str).unwrap_or("<unset>")
    }
}

/// A runtime setup in a test host: conf dir, plugin dir (`CNI_PATH`), cache
/// dir and record dir.
struct Rt {
    host: Host,
    conf: PathBuf,
    bin: PathBuf,
    cache: PathBuf,
    rec: PathBuf,
}

impl Rt {
    #[track_caller]
    fn new(tag: &str) -> Rt {
        require_root();
        let host = Host::new(tag);
        let d = host.dir().to_path_buf();
        let (conf, bin_dir, cache, rec) = (
            d.join("net.d"),
            d.join("bin"),
            d.join("cache"),
            d.join("rec"),
        );
        for p in [&conf, &bin_dir, &cache, &rec] {
            std::fs::create_dir_all(p).unwrap();
        }
        symlink(bin("loopback"), bin_dir.join("loopback")).unwrap();
        let rt = Rt {
            host,
            conf,
            bin: bin_dir,
            cache,
            rec,
        };
        for name in ["rec-a", "rec-b", "rec-c"] {
            rt.add_script(name, &RECORDER.replace("__DIR__", rt.rec.to_str().unwrap()));
        }
        rt
    }

    fn add_script(&self, name: &str, body: &str) {
        let p = self.bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes `<conf dir>/<rel>`.
    fn write_conf(&self, rel: &str, v: &Value) -> PathBuf {
        self.write_conf_text(rel, &serde_json::to_string_pretty(v).unwrap())
    }

    fn write_conf_text(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.conf.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `nuage <args>` in the host with the runtime environment plus `extra`.
    #[track_caller]
    fn nuage(&self, args: &[&str], extra: &[(&str, &str)]) -> PluginOutput {
        let mut env = vec![
            ("NETCONFPATH", self.conf.to_str().unwrap()),
            ("CNI_PATH", self.bin.to_str().unwrap()),
            ("NUAGE_CACHE_DIR", self.cache.to_str().unwrap()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v));
        }
        self.host.run(nuage_bin(), args, &env, "")
    }

    /// `nuage <verb> <net> <ctr>` with container id `cid`.
    #[track_caller]
    fn verb(
        &self,
        verb: &str,
        net: &str,
        ctr: &str,
        cid: &str,
        extra: &[(&str, &str)],
    ) -> PluginOutput {
        let mut e = vec![("CNI_CONTAINERID", cid)];
        e.extend_from_slice(extra);
        self.nuage(&[verb, net, ctr], &e)
    }

    /// Every recorded call so far, in order; clears the record.
    fn take_calls(&self) -> Vec<Call> {
        let mut names: Vec<String> = std::fs::read_dir(&self.rec)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".stdin"))
            .collect();
        names.sort();
        let calls = names
            .iter()
            .map(|n| {
                let base = n.trim_end_matches(".stdin");
                let (_seq, rest) = base.split_once('-').unwrap();
                let (plugin, cmd) = rest.rsplit_once('-').unwrap();
                let stdin = std::fs::read_to_string(self.rec.join(n)).unwrap();
                let env = std::fs::read_to_string(self.rec.join(format!("{base}.env"))).unwrap();
                Call {
                    plugin: plugin.to_owned(),
                    cmd: cmd.to_owned(),
                    stdin: serde_json::from_str(&stdin).unwrap_or(Value::Null),
                    env: env
                        .lines()
                        .filter_map(|l| l.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                }
            })
            .collect();
        for e in std::fs::read_dir(&self.rec).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".stdin") || n.ends_with(".env") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        calls
    }

    /// Makes recorder `plugin` fail `cmd` (code 7) until [`Rt::unfail`].
    fn fail(&self, plugin: &str, cmd: &str) {
        std::fs::write(self.rec.join(format!("fail-{plugin}-{cmd}")), "").unwrap();
    }

    fn cache_file(&self, net: &str, cid: &str, ifname: &str) -> PathBuf {
        self.cache
            .join("results")
            .join(format!("{net}-{cid}-{ifname}"))
    }

    fn cached(&self, net: &str, cid: &str, ifname: &str) -> Value {
        let p = self.cache_file(net, cid, ifname);
        let b = std::fs::read(&p).unwrap_or_else(|e| panic!("cache {}: {e}", p.display()));
        serde_json::from_slice(&b).unwrap()
    }
}

/// `[(plugin, cmd)]` of calls, for order assertions.
fn seq(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .map(|c| (c.plugin.clone(), c.cmd.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Our loopback's result in `version` for a container at `sandbox`.
fn lo_result(version: &str, sandbox: &str) -> Value {
    let legacy = version != "1.0.0" && version != "1.1.0";
    let ip = |fam: &str, a: &str| {
        if legacy {
            json!({"version": fam, "interface": 0, "address": a})
        } else {
            json!({"interface": 0, "address": a})
        }
    };
    let mut r = json!({
        "cniVersion": version,
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}],
        "ips": [ip("4", "127.0.0.1/8"), ip("6", "::1/128")],
    });
    if legacy {
        r["dns"] = json!({});
    }
    r
}

fn list(version: &str, name: &str, plugins: Value) -> Value {
    json!({"cniVersion": version, "name": name, "plugins": plugins})
}

// ---------------------------------------------------------------------------
// add / check / del and the cache
// ---------------------------------------------------------------------------

#[test]
fn add_check_del_with_loopback_and_the_cache_file() {
    let rt = Rt::new("nuage-basic");
    let ctr = rt.host.container("c");
    let conf = rt.write_conf(
        "10-lo.conflist",
        &list("1.0.0", "lo-net", json!([{"type": "loopback"}])),
    );
    let conf_bytes = std::fs::read(&conf).unwrap();
    let extra = [
        ("CNI_IFNAME", "net0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=pod"),
    ];

    let out = rt.verb("add", "lo-net", ctr.path_str(), "ctr-1", &extra);
    out.assert_success();
    let result = out.expect_json().clone();
    assert_json_eq(&result, &lo_result("1.0.0", ctr.path_str()));
    assert!(ctr.link_is_up("lo"));

    // The cache file, in libcni's format and place.
    let path = rt.cache_file("lo-net", "ctr-1", "net0");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "cache file mode");
    let dmode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700, "cache dir mode");
    let c = rt.cached("lo-net", "ctr-1", "net0");
    assert_eq!(c["kind"], "cniCacheV1");
    assert_eq!(c["containerId"], "ctr-1");
    assert_eq!(c["ifName"], "net0");
    assert_eq!(c["networkName"], "lo-net");
    assert_eq!(c["netns"], json!(ctr.path_str()));
    assert_eq!(
        c["cniArgs"],
        json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "pod"]])
    );
    let config = base64::engine::general_purpose::STANDARD
        .decode(c["config"].as_str().unwrap())
        .expect("config is base64");
    assert_eq!(config, conf_bytes, "config is the conflist's bytes");
    assert_json_eq(&c["result"], &result);

    // check: nothing printed.
    let out = rt.verb("check", "lo-net", ctr.path_str(), "ctr-1", &extra);
    out.assert_success();
    assert_eq!(out.stdout, "");

    // del: lo down, cache gone; again: fine.
    for _ in 0..2 {
        let out = rt.verb("del", "lo-net", ctr.path_str(), "ctr-1", &extra);
        out.assert_success();
        assert_eq!(out.stdout, "");
        assert!(!ctr.link_is_up("lo"));
        assert!(!path.exists(), "del removes the cache entry");
    }
    // check after del: loopback's error, wrapped.
    let out = rt.verb("check", "lo-net", ctr.path_str(), "ctr-1", &extra);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="loopback" failed (check): loopback interface is down"#),
        "{out}"
    );
    assert!(rt.host.netns().link_is_up("lo"));
}

#[test]
fn del_works_when_the_netns_is_gone() {
    let rt = Rt::new("nuage-gone");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-lo.conflist",
        &list(
            "1.0.0",
            "lo-net",
            json!([{"type": "loopback"}, {"type": "rec-a"}]),
        ),
    );
    rt.verb("add", "lo-net", ctr.path_str(), "c1", &[])
        .assert_success();
    let path = ctr.path_str().to_owned();
    drop(ctr);
    rt.take_calls();
    let out = rt.verb("del", "lo-net", &path, "c1", &[]);
    out.assert_success();
    let calls = rt.take_calls();
    assert_eq!(seq(&calls), pairs(&[("rec-a", "DEL")]));
    assert_eq!(calls[0].env("CNI_NETNS"), path);
    assert!(!rt.cache_file("lo-net", "c1", "eth0").exists());
}

#[test]
fn broken_cache_file_does_not_block_del_or_check() {
    let rt = Rt::new("nuage-broken-cache");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-r.conflist",
        &list("1.0.0", "rnet", json!([{"type": "rec-a"}])),
    );
    for garbage in [
        "{broken",
        "",
        "[]",
        r#"{"kind":"cniCacheV1","containerId":5}"#,
    ] {
        rt.verb("add", "rnet", ctr.path_str(), "c1", &[])
            .assert_success();
        let path = rt.cache_file("rnet", "c1", "eth0");
        std::fs::write(&path, garbage).unwrap();
        rt.take_calls();

        let out = rt.verb("check", "rnet", ctr.path_str(), "c1", &[]);
        out.assert_success();
        let calls = rt.take_calls();
        assert_eq!(seq(&calls), pairs(&[("rec-a", "CHECK")]), "{garbage:?}");
        assert!(
            calls[0].stdin.get("prevResult").is_none(),
            "{garbage:?}: {:?}",
            calls[0].stdin
        );

        std::fs::write(&path, garbage).unwrap();
        let out = rt.verb("del", "rnet", ctr.path_str(), "c1", &[]);
        out.assert_success();
        let calls = rt.take_calls();
        assert_eq!(seq(&calls), pairs(&[("rec-a", "DEL")]), "{garbage:?}");
        assert!(calls[0].stdin.get("prevResult").is_none(), "{garbage:?}");
        assert!(!path.exists(), "{garbage:?}: del removes the broken entry");
    }
    // Go's encoder writes null for an empty config, args and capabilities:
    // such an entry is whole, and CHECK gets its result.
    rt.verb("add", "rnet", ctr.path_str(), "c1", &[])
        .assert_success();
    let path = rt.cache_file("rnet", "c1", "eth0");
    let mut entry = rt.cached("rnet", "c1", "eth0");
    for k in ["config", "cniArgs", "capabilityArgs"] {
        entry[k] = Value::Null;
    }
    std::fs::write(&path, entry.to_string()).unwrap();
    rt.take_calls();
    rt.verb("check", "rnet", ctr.path_str(), "c1", &[])
        .assert_success();
    let calls = rt.take_calls();
    assert_eq!(calls[0].stdin["prevResult"], entry["result"]);
    assert!(path.exists(), "CHECK keeps the entry");
    rt.verb("del", "rnet", ctr.path_str(), "c1", &[])
        .assert_success();
}

/// As libcni: the network name, container ID and interface name are
/// checked by ADD before any plugin runs, and only the network's own name
/// (a badly named network in another file blocks nothing); a `cniVersion`
/// that is not a string is refused, a missing one means 0.1.0; a `.conf`
/// is cached as the list it was wrapped into.
#[test]
fn names_and_versions_are_checked_as_libcni_does() {
    let rt = Rt::new("nuage-names");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "01-bad.conflist",
        &list("1.0.0", "bad name", json!([{"type": "rec-a"}])),
    );
    rt.write_conf(
        "02-good.conflist",
        &list("1.0.0", "good", json!([{"type": "rec-a"}])),
    );
    rt.write_conf_text("50-nov.conf", r#"{"name": "nov", "type": "rec-b"}"#);
    rt.write_conf_text(
        "99-num.conflist",
        r#"{"cniVersion": 1.0, "name": "num", "plugins": [{"type": "rec-a"}]}"#,
    );
    rt.verb("add", "good", ctr.path_str(), "c1", &[])
        .assert_success();
    rt.verb("del", "good", ctr.path_str(), "c1", &[])
        .assert_success();
    rt.verb("del", "bad name", ctr.path_str(), "c1", &[])
        .assert_success();
    rt.take_calls();

    let refused = |args: &[&str], extra: &[(&str, &str)], needle: &str| {
        let out = rt.nuage(args, extra);
        out.assert_failure();
        assert!(out.stderr.contains(needle), "{args:?}: {out}");
        assert!(rt.take_calls().is_empty(), "{args:?}: no plugin may run");
    };
    refused(
        &["add", "bad name", ctr.path_str()],
        &[("CNI_CONTAINERID", "c1")],
        r#"invalid network name "bad name""#,
    );
    refused(
        &["add", "good", ctr.path_str()],
        &[("CNI_CONTAINERID", "bad id/x")],
        r#"invalid characters in container ID "bad id/x""#,
    );
    refused(
        &["--ifname", "a/b", "add", "good", ctr.path_str()],
        &[("CNI_CONTAINERID", "c1")],
        "interface name contains /",
    );
    refused(
        &["add", "num", ctr.path_str()],
        &[("CNI_CONTAINERID", "c1")],
        r#""cniVersion" must be a string, got 1.0"#,
    );
    // As with libcni, a list that cannot load blocks those after it.
    std::fs::remove_file(rt.conf.join("99-num.conflist")).unwrap();

    let out = rt.verb("add", "nov", ctr.path_str(), "c2", &[]);
    out.assert_success();
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed["cniVersion"], "0.1.0", "{out}");
    let calls = rt.take_calls();
    assert_eq!(calls[0].stdin["cniVersion"], "0.1.0");
    let config = rt.cached("nov", "c2", "eth0")["config"].clone();
    let config = base64::engine::general_purpose::STANDARD
        .decode(config.as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config,
        json!({"cniVersion": "", "name": "nov", "plugins": [{"name": "nov", "type": "rec-b"}]})
    );
    rt.verb("del", "nov", ctr.path_str(), "c2", &[])
        .assert_success();
}

// ---------------------------------------------------------------------------
// Config loading
// ---------------------------------------------------------------------------

#[test]
fn conflists_first_then_conf_and_json_fallbacks() {
    let rt = Rt::new("nuage-load");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-a.conflist",
        &list("1.0.0", "a", json!([{"type": "rec-a"}])),
    );
    // Same name as a conflist: the conflist wins.
    rt.write_conf(
        "05-b.conf",
        &json!({"cniVersion": "1.0.0", "name": "b", "type": "rec-c"}),
    );
    rt.write_conf(
        "20-b.conflist",
        &list("1.0.0", "b", json!([{"type": "rec-b"}])),
    );
    rt.write_conf(
        "30-single.conf",
        &json!({"cniVersion": "0.4.0", "name": "single", "type": "rec-c", "mtu": 1400}),
    );
    rt.write_conf(
        "40-viajson.json",
        &json!({"cniVersion": "1.0.0", "name": "viajson", "type": "rec-a"}),
    );
    // Not a config file: ignored.
    rt.write_conf(
        "50-ignored.txt",
        &list("1.0.0", "ignored", json!([{"type": "rec-a"}])),
    );

    for (net, plugin) in [
        ("a", "rec-a"),
        ("b", "rec-b"),
        ("single", "rec-c"),
        ("viajson", "rec-a"),
    ] {
        let out = rt.verb("add", net, ctr.path_str(), "c1", &[]);
        out.assert_success();
        let calls = rt.take_calls();
        assert_eq!(seq(&calls), pairs(&[(plugin, "ADD")]), "network {net}");
        assert_eq!(calls[0].stdin["name"], json!(net));
    }
    // The .conf is wrapped into a list: the plugin gets the file's keys.
    rt.verb("check", "single", ctr.path_str(), "c1", &[])
        .assert_success();
    let calls = rt.take_calls();
    assert_eq!(calls[0].stdin["mtu"], 1400);
    assert_eq!(calls[0].stdin["cniVersion"], "0.4.0");
    assert_eq!(calls[0].stdin["type"], "rec-c");

    let out = rt.verb("add", "ignored", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"no net configuration with name "ignored""#),
        "{out}"
    );
    assert!(rt.take_calls().is_empty());

    // An empty conf dir.
    let empty = rt.host.dir().join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    let out = rt.nuage(
        &["add", "a", ctr.path_str()],
        &[("NETCONFPATH", empty.to_str().unwrap())],
    );
    out.assert_failure();
    assert!(out.stderr.contains("no net configurations found"), "{out}");
}

#[test]
fn plugins_in_the_network_directory_are_appended() {
    let rt = Rt::new("nuage-sibling");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-net.conflist",
        &list("1.0.0", "net", json!([{"type": "loopback"}])),
    );
    rt.write_conf("net/20-b.conf", &json!({"type": "rec-b", "key": "b"}));
    rt.write_conf("net/10-a.conf", &json!({"type": "rec-a", "key": "a"}));
    rt.write_conf("net/30-ignored.json", &json!({"type": "rec-c"}));

    let out = rt.verb("add", "net", ctr.path_str(), "c1", &[]);
    out.assert_success();
    let expected = lo_result("1.0.0", ctr.path_str());
    assert_json_eq(out.expect_json(), &expected);
    let calls = rt.take_calls();
    assert_eq!(seq(&calls), pairs(&[("rec-a", "ADD"), ("rec-b", "ADD")]));
    for c in &calls {
        assert_eq!(c.stdin["name"], "net");
        assert_eq!(c.stdin["cniVersion"], "1.0.0");
        assert_json_eq(&c.stdin["prevResult"], &expected);
    }
    assert_eq!(calls[0].stdin["key"], "a");

    // loadOnlyInlinedPlugins: only the list's own plugins.
    rt.write_conf(
        "10-net.conflist",
        &json!({"cniVersion": "1.0.0", "name": "net", "loadOnlyInlinedPlugins": true,
                "plugins": [{"type": "loopback"}]}),
    );
    rt.verb("add", "net", ctr.path_str(), "c2", &[])
        .assert_success();
    assert!(rt.take_calls().is_empty());
}

#[test]
fn the_highest_known_version_is_selected() {
    let rt = Rt::new("nuage-versions");
    let ctr = rt.host.container("c");
    let cases = [
        (
            json!({"cniVersion": "0.4.0", "cniVersions": ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]}),
            "1.1.0",
        ),
        (
            json!({"cniVersion": "1.0.0", "cniVersions": ["0.3.1", "0.4.0"]}),
            "1.0.0",
        ),
        (
            json!({"cniVersion": "0.3.1", "cniVersions": ["9.0.0"]}),
            "0.3.1",
        ),
        (json!({"cniVersions": ["0.4.0", "1.0.0"]}), "1.0.0"),
    ];
    for (i, (versions, selected)) in cases.into_iter().enumerate() {
        let mut l = versions;
        l["name"] = json!(format!("n{i}"));
        l["plugins"] = json!([{"type": "rec-a"}, {"type": "loopback"}]);
        rt.write_conf(&format!("{i}.conflist"), &l);
        let out = rt.verb("add", &format!("n{i}"), ctr.path_str(), "c1", &[]);
        out.assert_success();
        let calls = rt.take_calls();
        assert_eq!(calls[0].stdin["cniVersion"], json!(selected), "{l}");
        // The final result is printed in the selected version.
        assert_eq!(out.expect_json()["cniVersion"], json!(selected), "{l}");
    }
}

// ---------------------------------------------------------------------------
// Chaining, reverse DEL, CHECK gates
// ---------------------------------------------------------------------------

#[test]
fn add_chains_prev_result_through_the_list() {
    let rt = Rt::new("nuage-chain");
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let ctr = rt.host.container("c");
        let expected = lo_result(v, ctr.path_str());

        // loopback twice: the second passes the first's result through.
        rt.write_conf(
            "10-twice.conflist",
            &list(
                v,
                "twice",
                json!([{"type": "loopback"}, {"type": "loopback"}]),
            ),
        );
        let out = rt.verb("add", "twice", ctr.path_str(), "c1", &[]);
        out.assert_success();
        assert_json_eq(out.expect_json(), &expected);

        // loopback then the recorder: it gets loopback's result as prevResult.
        rt.write_conf(
            "20-chain.conflist",
            &list(
                v,
                "chain",
                json!([{"type": "loopback"}, {"type": "rec-a", "extra": {"k": 1}}]),
            ),
        );
        let out = rt.verb(
            "add",
            "chain",
            ctr.path_str(),
            "c2",
            &[("CNI_IFNAME", "eth1"), ("CNI_ARGS", "IgnoreUnknown=1;A=b")],
        );
        out.assert_success();
        assert_json_eq(out.expect_json(), &expected);
        let calls = rt.take_calls();
        assert_eq!(seq(&calls), pairs(&[("rec-a", "ADD")]));
        let c = &calls[0];
        assert_json_eq(
            &c.stdin,
            &json!({"type": "rec-a", "extra": {"k": 1}, "name": "chain", "cniVersion": v, "prevResult": expected}),
        );
        assert_eq!(c.env("CNI_COMMAND"), "ADD");
        assert_eq!(c.env("CNI_CONTAINERID"), "c2");
        assert_eq!(c.env("CNI_NETNS"), ctr.path_str());
        assert_eq!(c.env("CNI_IFNAME"), "eth1");
        assert_eq!(c.env("CNI_ARGS"), "IgnoreUnknown=1;A=b");
        assert_eq!(c.env("CNI_PATH"), rt.bin.to_str().unwrap());
        // The plugin's stderr is passed through.
        assert!(out.stderr.contains("recorder rec-a: ADD"), "{out}");
        // The cached result is the final one.
        assert_json_eq(&rt.cached("chain", "c2", "eth1")["result"], &expected);
        // The first plugin of a list gets no prevResult.
        rt.write_conf(
            "30-first.conflist",
            &list(v, "first", json!([{"type": "rec-a"}, {"type": "loopback"}])),
        );
        rt.verb("add", "first", ctr.path_str(), "c3", &[])
            .assert_success();
        let calls = rt.take_calls();
        assert!(calls[0].stdin.get("prevResult").is_none());
    }
}

#[test]
fn del_runs_in_reverse_order_with_the_cached_result() {
    let rt = Rt::new("nuage-reverse");
    let ctr = rt.host.container("c");
    for v in ["0.3.1", "0.4.0", "1.0.0"] {
        let plugins = json!([{"type": "rec-a"}, {"type": "rec-b"}, {"type": "rec-c"}]);
        rt.write_conf("10-r.conflist", &list(v, "r", plugins));
        let out = rt.verb("add", "r", ctr.path_str(), "c1", &[]);
        out.assert_success();
        let result = out.expect_json().clone();
        assert_eq!(
            seq(&rt.take_calls()),
            pairs(&[("rec-a", "ADD"), ("rec-b", "ADD"), ("rec-c", "ADD")])
        );
        rt.verb("del", "r", ctr.path_str(), "c1", &[])
            .assert_success();
        let calls = rt.take_calls();
        assert_eq!(
            seq(&calls),
            pairs(&[("rec-c", "DEL"), ("rec-b", "DEL"), ("rec-a", "DEL")]),
            "{v}"
        );
        for c in &calls {
            if v == "0.3.1" {
                // Below 0.4.0 DEL never gets a prevResult.
                assert!(c.stdin.get("prevResult").is_none(), "{v}: {}", c.stdin);
            } else {
                assert_json_eq(&c.stdin["prevResult"], &result);
            }
        }
        // Without a cache entry: no prevResult key at all.
        rt.verb("del", "r", ctr.path_str(), "c1", &[])
            .assert_success();
        for c in rt.take_calls() {
            assert!(c.stdin.get("prevResult").is_none(), "{v}: {}", c.stdin);
        }
    }
}

#[test]
fn check_sends_the_cached_result_and_honours_disable_check() {
    let rt = Rt::new("nuage-check");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-c.conflist",
        &list("1.0.0", "c", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
    );
    let out = rt.verb("add", "c", ctr.path_str(), "c1", &[]);
    let result = out.expect_json().clone();
    rt.take_calls();
    rt.verb("check", "c", ctr.path_str(), "c1", &[])
        .assert_success();
    let calls = rt.take_calls();
    assert_eq!(
        seq(&calls),
        pairs(&[("rec-a", "CHECK"), ("rec-b", "CHECK")])
    );
    for c in &calls {
        assert_json_eq(&c.stdin["prevResult"], &result);
    }

    // disableCheck (a bool, or the string "true" in any case): nothing runs.
    for flag in [json!(true), json!("true"), json!("TRUE")] {
        rt.write_conf(
            "10-c.conflist",
            &json!({"cniVersion": "1.0.0", "name": "c", "disableCheck": flag,
                    "plugins": [{"type": "rec-a"}]}),
        );
        let out = rt.verb("check", "c", ctr.path_str(), "c1", &[]);
        out.assert_success();
        assert!(rt.take_calls().is_empty(), "disableCheck {flag}");
    }
    // A bad flag value is a config error.
    rt.write_conf(
        "10-c.conflist",
        &json!({"cniVersion": "1.0.0", "name": "c", "disableCheck": "maybe", "plugins": [{"type": "rec-a"}]}),
    );
    rt.verb("check", "c", ctr.path_str(), "c1", &[])
        .assert_failure();

    // Below 0.4.0 CHECK is refused without running anything.
    rt.write_conf(
        "10-c.conflist",
        &list("0.3.1", "c", json!([{"type": "rec-a"}])),
    );
    let out = rt.verb("check", "c", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"configuration version "0.3.1" does not support the CHECK command"#),
        "{out}"
    );
    assert!(rt.take_calls().is_empty());
}

// ---------------------------------------------------------------------------
// Capability args
// ---------------------------------------------------------------------------

#[test]
fn capability_args_reach_only_plugins_that_enable_them() {
    let rt = Rt::new("nuage-caps");
    let ctr = rt.host.container("c");
    let caps_a = json!({"portMappings": true, "bandwidth": false, "mac": true});
    rt.write_conf(
        "10-caps.conflist",
        &list(
            "1.0.0",
            "caps",
            json!([
                {"type": "rec-a", "capabilities": caps_a},
                {"type": "rec-b"},
                {"type": "rec-c", "capabilities": {"ips": true}}
            ]),
        ),
    );
    let ports = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let cap_args = json!({
        "portMappings": ports,
        "bandwidth": {"ingressRate": 1000},
        "ips": ["10.0.0.5/24"],
        "dns": {"servers": ["10.0.0.53"]}
    });
    let cap_s = cap_args.to_string();
    let extra = [("CAP_ARGS", cap_s.as_str())];
    rt.verb("add", "caps", ctr.path_str(), "c1", &extra)
        .assert_success();
    rt.verb("del", "caps", ctr.path_str(), "c1", &extra)
        .assert_success();
    let calls = rt.take_calls();
    assert_eq!(calls.len(), 6);
    for c in &calls {
        match c.plugin.as_str() {
            // Only the enabled capability the runtime has a value for; the
            // `capabilities` key itself is passed on unchanged.
            "rec-a" => {
                assert_json_eq(&c.stdin["runtimeConfig"], &json!({"portMappings": ports}));
                assert_json_eq(&c.stdin["capabilities"], &caps_a);
            }
            "rec-b" => assert!(c.stdin.get("runtimeConfig").is_none(), "{}", c.stdin),
            "rec-c" => assert_json_eq(&c.stdin["runtimeConfig"], &json!({"ips": ["10.0.0.5/24"]})),
            p => panic!("unexpected plugin {p}"),
        }
    }
    // The runtime's capability args are cached (for a later GC's DEL).
    rt.verb("add", "caps", ctr.path_str(), "c2", &extra)
        .assert_success();
    assert_json_eq(
        &rt.cached("caps", "c2", "eth0")["capabilityArgs"],
        &cap_args,
    );

    // No CAP_ARGS: no runtimeConfig anywhere.
    rt.take_calls();
    rt.verb("add", "caps", ctr.path_str(), "c3", &[])
        .assert_success();
    for c in rt.take_calls() {
        assert!(c.stdin.get("runtimeConfig").is_none(), "{}", c.stdin);
    }
    // CAP_ARGS that is not a JSON object: refused before running anything.
    let out = rt.verb("add", "caps", ctr.path_str(), "c4", &[("CAP_ARGS", "[1]")]);
    out.assert_failure();
    assert!(rt.take_calls().is_empty());
}

// ---------------------------------------------------------------------------
// GC and STATUS
// ---------------------------------------------------------------------------

#[test]
fn gc_deletes_attachments_whose_netns_is_gone_then_sends_valid_ones() {
    let rt = Rt::new("nuage-gc");
    let live = rt.host.container("live");
    let gone = rt.host.container("gone");
    let gone_path = gone.path_str().to_owned();
    rt.write_conf(
        "10-g.conflist",
        &list("1.1.0", "g", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
    );
    rt.verb("add", "g", live.path_str(), "c-live", &[])
        .assert_success();
    let out = rt.verb(
        "add",
        "g",
        &gone_path,
        "c-gone",
        &[("CNI_ARGS", "IgnoreUnknown=1;X=y")],
    );
    out.assert_success();
    let gone_result = out.expect_json().clone();
    drop(gone);
    rt.take_calls();

    let out = rt.nuage(&["gc", "g"], &[]);
    out.assert_success();
    let calls = rt.take_calls();
    assert_eq!(
        seq(&calls),
        pairs(&[
            ("rec-b", "DEL"),
            ("rec-a", "DEL"),
            ("rec-a", "GC"),
            ("rec-b", "GC")
        ])
    );
    // The stale attachment is deleted with its cached netns, args and result.
    for c in &calls[..2] {
        assert_eq!(c.env("CNI_CONTAINERID"), "c-gone");
        assert_eq!(c.env("CNI_NETNS"), gone_path);
        assert_eq!(c.env("CNI_IFNAME"), "eth0");
        assert_eq!(c.env("CNI_ARGS"), "IgnoreUnknown=1;X=y");
        assert_json_eq(&c.stdin["prevResult"], &gone_result);
    }
    // GC gets the live attachments under both keys; no runtimeConfig or
    // prevResult; the per-attachment variables are empty.
    let valid = json!([{"containerID": "c-live", "ifname": "eth0"}]);
    for c in &calls[2..] {
        assert_json_eq(
            &c.stdin,
            &json!({"type": c.plugin, "name": "g", "cniVersion": "1.1.0",
                    "cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}),
        );
        assert_eq!(c.env("CNI_CONTAINERID"), "");
        assert_eq!(c.env("CNI_NETNS"), "");
        assert_eq!(c.env("CNI_PATH"), rt.bin.to_str().unwrap());
    }
    assert!(rt.cache_file("g", "c-live", "eth0").exists());
    assert!(!rt.cache_file("g", "c-gone", "eth0").exists());

    // Below 1.1.0: stale attachments are still deleted, but no GC is sent.
    let gone2 = rt.host.container("gone2");
    rt.write_conf(
        "10-g.conflist",
        &list("1.0.0", "g", json!([{"type": "rec-a"}])),
    );
    rt.verb("add", "g", gone2.path_str(), "c-gone2", &[])
        .assert_success();
    drop(gone2);
    rt.take_calls();
    rt.nuage(&["gc", "g"], &[]).assert_success();
    let calls = rt.take_calls();
    assert_eq!(seq(&calls), pairs(&[("rec-a", "DEL")]));
    assert_eq!(calls[0].env("CNI_CONTAINERID"), "c-gone2");
    assert!(rt.cache_file("g", "c-live", "eth0").exists());

    // disableGC: nothing at all, the cache is kept.
    let gone3 = rt.host.container("gone3");
    rt.write_conf(
        "10-g.conflist",
        &json!({"cniVersion": "1.1.0", "name": "g", "disableGC": true, "plugins": [{"type": "rec-a"}]}),
    );
    rt.verb("add", "g", gone3.path_str(), "c-gone3", &[])
        .assert_success();
    drop(gone3);
    rt.take_calls();
    rt.nuage(&["gc", "g"], &[]).assert_success();
    assert!(rt.take_calls().is_empty());
    assert!(rt.cache_file("g", "c-gone3", "eth0").exists());
}

#[test]
fn gc_reports_errors_but_runs_every_step() {
    let rt = Rt::new("nuage-gc-errors");
    rt.write_conf(
        "10-g.conflist",
        &list("1.1.0", "g", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
    );
    let gone = rt.host.container("gone");
    rt.verb("add", "g", gone.path_str(), "c-gone", &[])
        .assert_success();
    drop(gone);
    rt.take_calls();
    rt.fail("rec-a", "GC");
    let out = rt.nuage(&["gc", "g"], &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="rec-a" failed (gc): recorder rec-a told to fail"#),
        "{out}"
    );
    // rec-b still got its GC.
    let calls = rt.take_calls();
    assert_eq!(
        seq(&calls),
        pairs(&[
            ("rec-b", "DEL"),
            ("rec-a", "DEL"),
            ("rec-a", "GC"),
            ("rec-b", "GC")
        ])
    );
}

#[test]
fn status_is_sent_from_1_1_0_and_stops_at_the_first_error() {
    let rt = Rt::new("nuage-status");
    rt.write_conf(
        "10-s.conflist",
        &list("1.1.0", "s", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
    );
    let out = rt.nuage(&["status", "s"], &[]);
    out.assert_success();
    assert_eq!(out.stdout, "");
    let calls = rt.take_calls();
    assert_eq!(
        seq(&calls),
        pairs(&[("rec-a", "STATUS"), ("rec-b", "STATUS")])
    );
    for c in &calls {
        assert_json_eq(
            &c.stdin,
            &json!({"type": c.plugin, "name": "s", "cniVersion": "1.1.0"}),
        );
    }
    // With our loopback too.
    rt.write_conf(
        "20-lo.conflist",
        &list("1.1.0", "lo", json!([{"type": "loopback"}])),
    );
    rt.nuage(&["status", "lo"], &[]).assert_success();

    rt.fail("rec-a", "STATUS");
    let out = rt.nuage(&["status", "s"], &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="rec-a" failed (status): recorder rec-a told to fail"#),
        "{out}"
    );
    assert_eq!(seq(&rt.take_calls()), pairs(&[("rec-a", "STATUS")]));

    // Below 1.1.0 nothing is sent.
    for v in ["0.4.0", "1.0.0"] {
        rt.write_conf(
            "10-s.conflist",
            &list(v, "s", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
        );
        rt.nuage(&["status", "s"], &[]).assert_success();
        assert!(rt.take_calls().is_empty(), "{v}");
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn plugin_failures_are_wrapped_like_libcni() {
    let rt = Rt::new("nuage-errors");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-e.conflist",
        &list("1.0.0", "e", json!([{"type": "rec-a"}, {"type": "rec-b"}])),
    );
    rt.fail("rec-b", "ADD");
    let out = rt.verb("add", "e", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert_eq!(out.stdout, "", "no result on failure:\n{out}");
    assert!(
        out.stderr
            .contains(r#"plugin type="rec-b" failed (add): recorder rec-b told to fail"#),
        "{out}"
    );
    assert!(
        out.stderr.contains("remove the fail file"),
        "details shown:\n{out}"
    );
    assert!(
        !rt.cache_file("e", "c1", "eth0").exists(),
        "nothing cached on failure"
    );
    assert_eq!(
        seq(&rt.take_calls()),
        pairs(&[("rec-a", "ADD"), ("rec-b", "ADD")])
    );

    // DEL: the first failing plugin stops the chain, as in libcni.
    rt.fail("rec-b", "DEL");
    let out = rt.verb("del", "e", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="rec-b" failed (delete): recorder rec-b told to fail"#),
        "{out}"
    );

    // A missing binary.
    rt.write_conf(
        "20-m.conflist",
        &list("1.0.0", "m", json!([{"type": "nope"}])),
    );
    let out = rt.verb("add", "m", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"failed to find plugin "nope" in path"#),
        "{out}"
    );

    // A plugin type with a path in it is refused (CVE-2021-20206).
    rt.write_conf(
        "30-p.conflist",
        &list("1.0.0", "p", json!([{"type": "../bin/rec-a"}])),
    );
    rt.take_calls();
    let out = rt.verb("add", "p", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains(r#"invalid plugin type "../bin/rec-a""#),
        "{out}"
    );
    assert!(rt.take_calls().is_empty());

    // A plugin that fails with garbage on stdout, or nothing.
    rt.add_script("garbage", "#!/bin/sh\necho 'this is not json'\nexit 1\n");
    rt.add_script("silent", "#!/bin/sh\necho 'boom on stderr' >&2\nexit 3\n");
    rt.write_conf(
        "40-g.conflist",
        &list("1.0.0", "g", json!([{"type": "garbage"}])),
    );
    rt.write_conf(
        "50-s.conflist",
        &list("1.0.0", "s", json!([{"type": "silent"}])),
    );
    let out = rt.verb("add", "g", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains(r#"plugin type="garbage" failed (add): netplugin failed but error parsing its diagnostic message"#),
        "{out}"
    );
    let out = rt.verb("add", "s", ctr.path_str(), "c1", &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"plugin type="silent" failed (add): netplugin failed: "boom on stderr""#),
        "{out}"
    );

    // Bad usage.
    let out = rt.nuage(&["add", "e"], &[]);
    out.assert_failure();
    assert!(out.stderr.contains("usage: nuage"), "{out}");
}

// ---------------------------------------------------------------------------
// validate, list
// ---------------------------------------------------------------------------

#[test]
fn validate_explains_what_is_wrong() {
    let rt = Rt::new("nuage-validate");
    symlink(require_reference("loopback"), rt.bin.join("refloop")).unwrap();
    let validate = |what: &str| rt.nuage(&["validate", what], &[]);

    // Good, by path and by network name.
    let good = rt.write_conf(
        "10-good.conflist",
        &list("1.1.0", "good", json!([{"type": "loopback"}])),
    );
    for what in [good.to_str().unwrap(), "good"] {
        let out = validate(what);
        out.assert_success();
        assert_eq!(out.stdout, format!("{}: valid\n", good.display()), "{out}");
    }
    // A .conf single plugin file.
    let single = rt.write_conf(
        "20-single.conf",
        &json!({"cniVersion": "1.0.0", "name": "single", "type": "loopback"}),
    );
    let out = validate(single.to_str().unwrap());
    out.assert_success();
    assert!(out.stdout.ends_with(": valid\n"), "{out}");

    let check = |file: &str, v: &Value, ok: bool, needle: &str| {
        let p = rt.write_conf(file, v);
        let out = validate(p.to_str().unwrap());
        assert_eq!(out.success(), ok, "exit status for {v}:\n{out}");
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing for {v}:\n{out}"
        );
        if !ok {
            assert_eq!(out.code, Some(1), "{out}");
            assert!(!out.stdout.contains(": valid"), "{out}");
        }
    };
    // Unknown top-level key: a warning only.
    check(
        "30-unknown.conflist",
        &json!({"cniVersion": "1.0.0", "name": "u", "mtu": 1500, "plugins": [{"type": "loopback"}]}),
        true,
        r#"warning: unknown top-level key "mtu""#,
    );
    // Missing binary.
    check(
        "31-missing.conflist",
        &list(
            "1.0.0",
            "m",
            json!([{"type": "loopback"}, {"type": "nope"}]),
        ),
        false,
        r#"error: plugins[1] (nope): failed to find plugin "nope""#,
    );
    // Version not supported by the plugin (the 1.1.1 reference has no 1.1.0).
    check(
        "32-old.conflist",
        &list("1.1.0", "o", json!([{"type": "refloop"}])),
        false,
        "error: plugins[0] (refloop): the plugin supports",
    );
    // A version nobody knows.
    check(
        "33-v.conflist",
        &list("9.9.9", "v", json!([{"type": "loopback"}])),
        false,
        r#"error: cniVersion "9.9.9" is not a CNI version nuage knows"#,
    );
    // A cniVersions entry that is not a version (libcni >= 1.2 refuses it),
    // a bad name (ADD refuses it).
    check(
        "33-vs.conflist",
        &json!({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "junk"], "name": "vs",
                "plugins": [{"type": "loopback"}]}),
        false,
        r#"error: cniVersions holds "junk", which is not a version"#,
    );
    check(
        "33-name.conflist",
        &list("1.0.0", "bad name", json!([{"type": "loopback"}])),
        false,
        r#"invalid network name "bad name""#,
    );
    // Bad capabilities.
    check(
        "34-caps.conflist",
        &list(
            "1.0.0",
            "c",
            json!([{"type": "loopback", "capabilities": {"portMappings": "yes"}}]),
        ),
        false,
        "error: plugins[0] (loopback): capabilities.portMappings must be true or false",
    );
    check(
        "35-caps.conflist",
        &list(
            "1.0.0",
            "c",
            json!([{"type": "loopback", "capabilities": ["portMappings"]}]),
        ),
        false,
        r#"error: plugins[0] (loopback): "capabilities" must be an object"#,
    );
    check(
        "36-caps.conflist",
        &list(
            "1.0.0",
            "c",
            json!([{"type": "loopback", "capabilities": {"frobnicate": true}}]),
        ),
        true,
        r#"warning: plugins[0] (loopback): capability "frobnicate" is not a well-known one"#,
    );
    // Missing ipam binary.
    check(
        "37-ipam.conflist",
        &list(
            "1.0.0",
            "i",
            json!([{"type": "loopback", "ipam": {"type": "no-such-ipam"}}]),
        ),
        false,
        r#"error: plugins[0] (loopback): ipam: failed to find plugin "no-such-ipam""#,
    );
    // Not JSON; no plugins.
    let bad = rt.write_conf_text("38-bad.conflist", "{ not json");
    let out = validate(bad.to_str().unwrap());
    out.assert_failure();
    assert!(out.stdout.starts_with("error: "), "{out}");
    check(
        "39-empty.conflist",
        &json!({"cniVersion": "1.0.0", "name": "e", "plugins": []}),
        false,
        "error: ",
    );
}

#[test]
fn list_shows_networks_and_attachments() {
    let rt = Rt::new("nuage-list");
    let ctr = rt.host.container("c");
    let p = rt.write_conf(
        "10-a.conflist",
        &list(
            "1.0.0",
            "a",
            json!([{"type": "loopback"}, {"type": "rec-a"}]),
        ),
    );
    rt.verb("add", "a", ctr.path_str(), "c-listed", &[])
        .assert_success();
    let out = rt.nuage(&["list"], &[]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!(
            "a ({}, cniVersion 1.0.0): loopback -> rec-a",
            p.display()
        )),
        "{out}"
    );
    assert!(out.stdout.contains("c-listed eth0"), "{out}");
    assert!(out.stdout.contains(ctr.path_str()), "{out}");
    assert!(out.stdout.contains("127.0.0.1/8"), "{out}");

    // A second file of the same name is shadowed; a broken file keeps the
    // lists after it from loading (as libcni), and makes list fail.
    rt.write_conf(
        "20-a.conflist",
        &list("1.0.0", "a", json!([{"type": "rec-b"}])),
    );
    rt.write_conf_text("30-broken.conflist", "{not json");
    rt.write_conf(
        "40-late.conflist",
        &list("1.0.0", "late", json!([{"type": "rec-b"}])),
    );
    let out = rt.nuage(&["list"], &[]);
    out.assert_failure();
    assert!(
        out.stdout
            .contains(&format!("[unused: shadowed by {}]", p.display())),
        "{out}"
    );
    assert!(out.stdout.contains("error: "), "{out}");
    assert!(
        out.stdout.contains("late (")
            && out
                .stdout
                .contains("30-broken.conflist comes first and is broken]"),
        "{out}"
    );
    assert_eq!(out.stdout.matches("c-listed eth0").count(), 1, "{out}");
    rt.verb("del", "a", ctr.path_str(), "c-listed", &[])
        .assert_success();

    // Extra arguments are refused, not ignored; CAP_ARGS null is empty.
    let out = rt.nuage(&["check", "a", ctr.path_str(), "x"], &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"too many arguments for check: ["x"]"#),
        "{out}"
    );
    // gc and status take cnitool's [<netns>], and no more.
    rt.nuage(&["gc", "a", ctr.path_str()], &[]).assert_success();
    rt.nuage(&["status", "a", ctr.path_str()], &[])
        .assert_success();
    let out = rt.nuage(&["gc", "a", ctr.path_str(), "x"], &[]);
    out.assert_failure();
    rt.verb(
        "del",
        "a",
        ctr.path_str(),
        "c-listed",
        &[("CAP_ARGS", "null")],
    )
    .assert_success();
    let out = rt.verb(
        "del",
        "a",
        ctr.path_str(),
        "c-listed",
        &[("CAP_ARGS", "[1]")],
    );
    out.assert_failure();
    assert!(
        out.stderr
            .contains("CAP_ARGS must be a JSON object (capability name -> value), got [1]"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Interoperability with libcni's cache, and the demo
// ---------------------------------------------------------------------------

/// nuage and libcni (cnitool) share the cache in /var/lib/cni (the host's
/// private state dir) and derive the same container id from the netns path.
#[test]
fn cache_is_shared_with_libcni() {
    let rt = Rt::new("nuage-interop");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-i.conflist",
        &list(
            "1.0.0",
            "i",
            json!([{"type": "loopback"}, {"type": "rec-a"}]),
        ),
    );
    let conf = rt.conf.to_str().unwrap().to_owned();
    let bin_dir = rt.bin.to_str().unwrap().to_owned();
    let env = [
        ("NETCONFPATH", conf.as_str()),
        ("CNI_PATH", bin_dir.as_str()),
    ];
    let results = rt.host.state_dir().join("results");
    let names = || -> Vec<String> {
        std::fs::read_dir(&results)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // nuage add (default container id, cache in /var/lib/cni) ...
    let out = rt.nuage(
        &["add", "i", ctr.path_str()],
        &[("NUAGE_CACHE_DIR", "/var/lib/cni")],
    );
    out.assert_success();
    let result = out.expect_json().clone();
    let cached = names();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let cid = cached[0]
        .strip_prefix("i-")
        .and_then(|s| s.strip_suffix("-eth0"))
        .unwrap()
        .to_owned();
    assert!(
        cid.starts_with("cnitool-") && cid.len() == "cnitool-".len() + 20,
        "{cid}"
    );
    rt.take_calls();

    // ... then cnitool check and del read nuage's entry.
    rt.host.cnitool("check", "i", &ctr, &env).assert_success();
    rt.host.cnitool("del", "i", &ctr, &env).assert_success();
    let calls = rt.take_calls();
    assert_eq!(seq(&calls), pairs(&[("rec-a", "CHECK"), ("rec-a", "DEL")]));
    for c in &calls {
        assert_eq!(c.env("CNI_CONTAINERID"), cid, "same derived container id");
        // libcni reprints results with an empty dns; compare without it.
        let mut prev = c.stdin["prevResult"].clone();
        if prev.get("dns") == Some(&json!({})) {
            prev.as_object_mut().unwrap().remove("dns");
        }
        assert_json_eq(&prev, &result);
    }
    assert!(names().is_empty(), "libcni removed nuage's entry");

    // And the other way round: cnitool add, nuage check/del.
    rt.host.cnitool("add", "i", &ctr, &env).assert_success();
    assert_eq!(names(), cached);
    rt.take_calls();
    rt.nuage(
        &["check", "i", ctr.path_str()],
        &[("NUAGE_CACHE_DIR", "/var/lib/cni")],
    )
    .assert_success();
    rt.nuage(
        &["del", "i", ctr.path_str()],
        &[("NUAGE_CACHE_DIR", "/var/lib/cni")],
    )
    .assert_success();
    let calls = rt.take_calls();
    assert_eq!(seq(&calls), pairs(&[("rec-a", "CHECK"), ("rec-a", "DEL")]));
    for c in &calls {
        assert_eq!(
            c.stdin["prevResult"]["interfaces"][0]["name"], "lo",
            "{}",
            c.stdin
        );
    }
    assert!(names().is_empty(), "nuage removed libcni's entry");
    assert!(!ctr.link_is_up("lo"));
}

#[test]
fn demo_runs_and_cleans_up() {
    require_root();
    let host = Host::new("nuage-demo");
    let out = host.run(nuage_bin(), &["demo"], &[], "");
    out.assert_success();
    assert!(out.stdout.contains("demo complete"), "{out}");
    // Three containers, each pinging a peer and the gateway: every echo answered.
    let pings = out
        .stdout
        .lines()
        .filter(|l| l.contains(": 2/2 replies"))
        .count();
    assert_eq!(pings, 6, "{out}");
    assert_eq!(out.stdout.matches("CHECK ok").count(), 3, "{out}");
    // Every namespace the demo announced (node + 3 containers) is gone.
    let mut made: Vec<&str> = out
        .stdout
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        .filter(|w| w.starts_with("/run/netns/nuage-demo-"))
        .collect();
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 4, "{out}");
    for p in &made {
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
    let (prefix, _) = made[0]
        .trim_start_matches("/run/netns/")
        .rsplit_once('-')
        .unwrap();
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "demo namespaces left: {left:?}");
}

/// A step that fails (here the bridge plugin's ADD) makes the demo say
/// which and exit non-zero, after removing what it made.
#[test]
fn demo_fails_loudly_and_cleans_up_when_a_plugin_fails() {
    require_root();
    let host = Host::new("nuage-demo-fail");
    let bin_dir = host.dir().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    for p in ["loopback", "host-local"] {
        symlink(bin(p), bin_dir.join(p)).unwrap();
    }
    let bridge = bin_dir.join("bridge");
    std::fs::write(
        &bridge,
        "#!/bin/sh\n\
         case \"$CNI_COMMAND\" in\n\
         VERSION) echo '{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}';;\n\
         ADD) echo '{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"injected failure\"}'; exit 1;;\n\
         esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&bridge, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = host.run(
        nuage_bin(),
        &["demo"],
        &[("CNI_PATH", bin_dir.to_str().unwrap())],
        "",
    );
    assert_eq!(out.code, Some(1), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("bridge") && all.contains("injected failure"),
        "{out}"
    );
    assert!(!out.stdout.contains("demo complete"), "{out}");
    let made: Vec<&str> = all
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        .filter(|w| w.starts_with("/run/netns/nuage-demo-"))
        .collect();
    assert!(!made.is_empty(), "the demo names its namespaces: {out}");
    for p in &made {
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
}

/// The demo cleans up when its output goes away mid-run (`| head -1`: a
/// write error, not an abort), and removes what demos killed before their
/// cleanup left (their lock free, or missing for older demos), but not what
/// a live demo holds, even one whose pid means nothing here (another PID
/// namespace).
#[test]
fn demo_survives_a_closed_stdout_and_removes_leftovers() {
    require_root();
    let host = Host::new("nuage-demo-pipe");
    // A demo killed earlier: its node namespace and work directory remain.
    let gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    let mut gone = gone;
    gone.wait().unwrap();
    let stale = format!("nuage-demo-{dead}-node");
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(made.success());
    let stale_dir = std::env::temp_dir().join(format!("nuage-demo-{dead}"));
    std::fs::create_dir_all(&stale_dir).unwrap();
    // A live demo of another PID namespace: a pid unknown here (above any
    // pid_max), its lock held.
    let live_tag = "4194399.0000beef".to_string();
    let live = format!("nuage-demo-{live_tag}-node");
    // A namespace someone else named nuage-demo-*: not a demo's.
    let foreign = "nuage-demo-admin".to_string();
    // The lock alone of a demo killed before it named anything: removed.
    let orphan = "/run/nuage/demo/4194398.0000cafe.lock";
    std::fs::create_dir_all("/run/nuage/demo").unwrap();
    std::fs::write(orphan, "").unwrap();
    std::fs::create_dir_all("/run/nuage/demo").unwrap();
    let lock_file = format!("/run/nuage/demo/{live_tag}.lock");
    let lock = std::fs::File::create(&lock_file).unwrap();
    lock.lock().unwrap();
    struct Cleanup(Vec<String>, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .status();
            }
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let _cleanup = Cleanup(vec![live.clone(), foreign.clone()], lock_file.clone());
    for ns in [&live, &foreign] {
        let made = std::process::Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .unwrap();
        assert!(made.success());
    }

    let cmd = format!("{} demo | head -1", nuage_bin().display());
    let out = host.run(Path::new("/bin/sh"), &["-c", &cmd], &[], "");
    out.assert_success();
    assert!(
        !Path::new("/run/netns").join(&stale).exists(),
        "the stale namespace is removed"
    );
    assert!(!stale_dir.exists(), "the stale work directory is removed");
    assert!(
        Path::new("/run/netns").join(&live).exists(),
        "a live demo's namespace is kept"
    );
    assert!(
        Path::new("/run/netns").join(&foreign).exists(),
        "a namespace no demo made is kept"
    );
    assert!(!Path::new(orphan).exists(), "a dead demo's lock is removed");
    // Nothing of a demo whose process is gone is left (tags: `<pid>.<n>`).
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| *n != live && *n != foreign)
        .filter(|n| {
            n.strip_prefix("nuage-demo-")
                .and_then(|r| r.split(['-', '.']).next())
                .is_some_and(|pid| !alive(pid))
        })
        .collect();
    assert!(left.is_empty(), "demo namespaces left: {left:?}");
}

/// `nuage gc` waits for an ADD in flight on the network: the ADD's plugins
/// have run (its lease exists) before its cache entry is written, and a GC
/// in between would DEL it as stale, its address then going to the next
/// container as well.
#[test]
fn gc_waits_for_an_add_in_flight() {
    let rt = Rt::new("nuage-gc-race");
    let ctr = rt.host.container("c");
    let started = rt.rec.join("slow-started");
    rt.add_script(
        "slow",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then : > {}; sleep 1; \
             echo '{{\"cniVersion\":\"1.0.0\"}}'; fi\nexit 0\n",
            started.display()
        ),
    );
    rt.write_conf(
        "10-g.conflist",
        &list("1.1.0", "g", json!([{"type": "rec-a"}, {"type": "slow"}])),
    );
    std::thread::scope(|s| {
        let add = s.spawn(|| rt.verb("add", "g", ctr.path_str(), "g1", &[]));
        netns_tests::cni::wait_until("the ADD in its slow plugin", || started.exists());
        rt.nuage(&["gc", "g"], &[]).assert_success();
        add.join().unwrap().assert_success();
    });
    let calls = rt.take_calls();
    assert!(
        !calls.iter().any(|c| c.cmd == "DEL"),
        "gc took the ADD in flight for stale: {:?}",
        seq(&calls)
    );
    // The plugins' GC counts it among the valid attachments (or host-local
    // would release its lease).
    let gc = calls.iter().find(|c| c.cmd == "GC").expect("GC sent");
    assert_eq!(
        gc.stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "g1", "ifname": "eth0"}]),
        "{:?}",
        gc.stdin
    );
    assert!(rt.cache_file("g", "g1", "eth0").exists());
}

/// Cache entries written by libcni < 1.2 (this machine's 1.1.2, containerd
/// 1.6/1.7, CRI-O of the same era) have no `netns` field. Whether their
/// namespace is gone is unknown, so `nuage gc` must not DEL them: that
/// would tear down a live container's host-side state (its IPAM lease,
/// ...). The README promises `nuage gc` "only deletes cached attachments
/// whose namespace is gone".
#[test]
fn gc_keeps_live_attachments_cached_by_libcni_1_1() {
    let rt = Rt::new("nuage-gc-libcni");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-g.conflist",
        &list("1.0.0", "g", json!([{"type": "rec-a"}])),
    );
    let conf = rt.conf.to_str().unwrap().to_owned();
    let bin_dir = rt.bin.to_str().unwrap().to_owned();
    let env = [
        ("NETCONFPATH", conf.as_str()),
        ("CNI_PATH", bin_dir.as_str()),
        ("CNI_CONTAINERID", "c-live"),
    ];
    rt.host.cnitool("add", "g", &ctr, &env).assert_success();
    let entry = rt.host.state_dir().join("results/g-c-live-eth0");
    let cached: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert!(
        cached.get("netns").is_none(),
        "libcni 1.1 records no netns: {cached}"
    );
    rt.take_calls();

    // The container is alive; gc must leave it alone.
    let out = rt.nuage(&["gc", "g"], &[("NUAGE_CACHE_DIR", "/var/lib/cni")]);
    out.assert_success();
    let calls = rt.take_calls();
    assert!(
        calls.iter().all(|c| c.cmd != "DEL"),
        "nuage gc sent DEL for a live attachment cached by libcni 1.1 (no netns recorded): {:?}",
        seq(&calls)
    );
    assert!(
        entry.exists(),
        "the live attachment's cache entry was removed"
    );
}

/// cnitool derives the default container id from `filepath.Abs(netns)`,
/// which cleans the path; nuage must derive the same id (and cache key) for
/// the same namespace path, or the two cannot find each other's entries.
#[test]
fn default_container_id_matches_cnitool_for_unclean_paths() {
    let rt = Rt::new("nuage-cid");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-i.conflist",
        &list("1.0.0", "i", json!([{"type": "rec-a"}])),
    );
    let unclean = format!("/run/netns/../netns//{}", ctr.name());
    let conf = rt.conf.to_str().unwrap().to_owned();
    let bin_dir = rt.bin.to_str().unwrap().to_owned();
    let out = rt.host.run(
        &netns_tests::cnitool(),
        &["add", "i", &unclean],
        &[
            ("NETCONFPATH", conf.as_str()),
            ("CNI_PATH", bin_dir.as_str()),
        ],
        "",
    );
    out.assert_success();
    let by_cnitool = rt.take_calls()[0].env("CNI_CONTAINERID").to_owned();
    rt.nuage(&["add", "i", &unclean], &[]).assert_success();
    let calls = rt.take_calls();
    assert_eq!(calls[0].env("CNI_CONTAINERID"), by_cnitool);
    assert_eq!(
        calls[0].env("CNI_NETNS"),
        ctr.path_str(),
        "the path is cleaned as cnitool does"
    );
}

/// `K=` (an empty value) is a valid CNI_ARGS pair for libcni/cnitool and for
/// the reference `types.LoadArgs` (two parts); nuage passes CNI_ARGS like
/// cnitool does.
#[test]
fn cni_args_with_an_empty_value_are_passed_like_cnitool() {
    let rt = Rt::new("nuage-args-empty");
    let ctr = rt.host.container("c");
    rt.write_conf(
        "10-a.conflist",
        &list("1.0.0", "a", json!([{"type": "rec-a"}])),
    );
    let args = "IgnoreUnknown=1;K8S_POD_UID=;K8S_POD_NAME=p";
    let conf = rt.conf.to_str().unwrap().to_owned();
    let bin_dir = rt.bin.to_str().unwrap().to_owned();
    rt.host
        .cnitool(
            "add",
            "a",
            &ctr,
            &[
                ("NETCONFPATH", conf.as_str()),
                ("CNI_PATH", bin_dir.as_str()),
                ("CNI_ARGS", args),
            ],
        )
        .assert_success();
    assert_eq!(
        rt.take_calls()[0].env("CNI_ARGS"),
        args,
        "cnitool passes it on"
    );
    let out = rt.verb("add", "a", ctr.path_str(), "c1", &[("CNI_ARGS", args)]);
    out.assert_success();
    assert_eq!(rt.take_calls()[0].env("CNI_ARGS"), args);
}
