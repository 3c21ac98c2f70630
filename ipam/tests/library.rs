//! The in-process API that bridge, macvlan and ptp call: dispatch on
//! `ipam.type`, with host-local and static in-process and anything else
//! executed from CNI_PATH.

mod common;

use std::path::PathBuf;

use common::*;
use nuage_core::skel::{CmdArgs, Command};
use nuage_core::spec::NetConf;
use nuage_core::Code;
use serde_json::{json, Value};

fn args(command: Command, id: &str, conf: &Value, path: Vec<PathBuf>) -> CmdArgs {
    let stdin = conf.to_string().into_bytes();
    CmdArgs {
        command,
        container_id: id.into(),
        netns: Some("/run/netns/x".into()),
        ifname: "eth0".into(),
        args: String::new(),
        path,
        netns_override: false,
        conf: NetConf::parse(&stdin).unwrap(),
        stdin,
    }
}

fn bridge_conf(ipam: Value) -> Value {
    json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge", "bridge": "cni0", "isGateway": true, "ipam": ipam})
}

#[test]
fn host_local_in_process() {
    let t = TempDir::new("lib-hl");
    let c =
        bridge_conf(json!({"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": t.str()}));
    let r = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![])).unwrap();
    assert!(r.interfaces.is_empty());
    assert_eq!(r.ips[0].address.to_string(), "10.77.0.2/24");
    assert_eq!(r.ips[0].interface, None);
    nuage_ipam::check(&args(Command::Check, "c1", &c, vec![])).unwrap();
    nuage_ipam::status(&args(Command::Status, "", &c, vec![])).unwrap();
    nuage_ipam::del(&args(Command::Del, "c1", &c, vec![])).unwrap();
    nuage_ipam::del(&args(Command::Del, "c1", &c, vec![])).unwrap();
    assert!(nuage_ipam::check(&args(Command::Check, "c1", &c, vec![])).is_err());
    let mut g = c.clone();
    g["cni.dev/valid-attachments"] = json!([]);
    nuage_ipam::gc(&args(Command::Gc, "", &g, vec![])).unwrap();
}

#[test]
fn static_in_process() {
    let c = bridge_conf(
        json!({"type": "static", "addresses": [{"address": "10.78.0.5/24", "gateway": "10.78.0.1"}]}),
    );
    let r = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![])).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.78.0.5/24");
    nuage_ipam::del(&args(Command::Del, "c1", &c, vec![])).unwrap();
    // CHECK needs prevResult and finds each configured address in it.
    let e = nuage_ipam::check(&args(Command::Check, "c1", &c, vec![])).unwrap_err();
    assert_eq!(e.msg, "Required prevResult missing");
    let mut chk = c.clone();
    chk["prevResult"] = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.78.0.5/24", "gateway": "10.78.0.1"}]});
    nuage_ipam::check(&args(Command::Check, "c1", &chk, vec![])).unwrap();
    chk["prevResult"]["ips"][0]["gateway"] = json!("10.78.0.254");
    let e = nuage_ipam::check(&args(Command::Check, "c1", &chk, vec![])).unwrap_err();
    assert!(
        e.msg.contains("Failed to match addr 10.78.0.5"),
        "{}",
        e.msg
    );
    chk["prevResult"]["ips"] = json!([]);
    assert!(nuage_ipam::check(&args(Command::Check, "c1", &chk, vec![])).is_err());
}

#[test]
fn other_types_are_executed_from_cni_path() {
    if !have_reference() {
        eprintln!("reference plugins not installed: skipped");
        return;
    }
    let t = TempDir::new("lib-deleg");
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(REF_HOST_LOCAL, bin.join("other-ipam")).unwrap();
    let mut c =
        bridge_conf(json!({"type": "other-ipam", "subnet": "10.79.0.0/24", "dataDir": t.str()}));
    c["cniVersion"] = json!("1.0.0");
    let r = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![bin.clone()])).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.79.0.2/24");
    assert_eq!(leases(&t.path().join("net1"))["10.79.0.2"], "c1\r\neth0");
    nuage_ipam::check(&args(Command::Check, "c1", &c, vec![bin.clone()])).unwrap();
    nuage_ipam::del(&args(Command::Del, "c1", &c, vec![bin.clone()])).unwrap();
    assert!(leases(&t.path().join("net1")).is_empty());
    let e = nuage_ipam::add(&args(
        Command::Add,
        "c1",
        &c,
        vec![PathBuf::from("/nonexistent")],
    ))
    .unwrap_err();
    assert!(e.msg.contains("failed to find plugin"), "{}", e.msg);
}

/// A delegate (a shell script here) that logs each command and answers what
/// `ADD_OUT` says, exiting with `ADD_RC`.
fn fake_delegate(t: &TempDir, add_out: &str, add_rc: u8) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("fake-ipam");
    let log = t.path().join("log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND\" >> {log}\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{add_out}'; exit {add_rc}; fi\nexit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn delegate_log(t: &TempDir) -> Vec<String> {
    std::fs::read_to_string(t.path().join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A delegate's ADD result with `ips[].interface` is read (the index is
/// the caller's to assign); a failed delegated ADD (an unreadable result
/// after exit 0, or an error, with or without `msg`) is followed by its
/// DEL, so that nothing it allocated stays.
#[test]
fn delegate_results_and_failures() {
    let c = bridge_conf(json!({"type": "fake-ipam"}));
    let t = TempDir::new("lib-fake-ok");
    let ok = r#"{"cniVersion":"1.1.0","ips":[{"address":"10.98.0.5/24","interface":0}]}"#;
    let bin = fake_delegate(&t, ok, 0);
    let r = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![bin])).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.98.0.5/24");
    assert_eq!(delegate_log(&t), ["ADD"]);

    for (out, rc, code) in [
        ("not json", 0, Code::Decode),
        (r#"{"cniVersion":"1.0","ips":[]}"#, 0, Code::Decode),
        (r#"{"code":7}"#, 1, Code::InvalidConfig),
        (r#"{"code":11,"msg":"busy"}"#, 1, Code::TryAgain),
    ] {
        let t = TempDir::new("lib-fake-bad");
        let bin = fake_delegate(&t, out, rc);
        let e = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![bin])).unwrap_err();
        assert_eq!(e.code, code, "{out}: {e}");
        assert_eq!(delegate_log(&t), ["ADD", "DEL"], "{out}");
    }
    // A delegate that fails without an error reply: what it said on stderr
    // is the error's details (the reference puts it in the message).
    let t = TempDir::new("lib-fake-stderr");
    let bin = fake_delegate(&t, "", 1);
    let script = bin.join("fake-ipam");
    let body = std::fs::read_to_string(&script).unwrap().replace(
        "printf '%s' ''; exit 1",
        "echo 'dhcp daemon not running: start it' >&2; exit 1",
    );
    std::fs::write(&script, body).unwrap();
    let e = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![bin])).unwrap_err();
    assert!(e.msg.contains("printed no error"), "{e}");
    assert_eq!(
        e.details.as_deref(),
        Some("its stderr: dhcp daemon not running: start it"),
        "{e}"
    );
}

#[test]
fn missing_or_bad_type() {
    let c = json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge"});
    let e = nuage_ipam::add(&args(Command::Add, "c1", &c, vec![])).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (Code::InvalidConfig, "IPAM config missing 'ipam' key")
    );
    let c = bridge_conf(json!({"subnet": "10.0.0.0/24"}));
    assert_eq!(
        nuage_ipam::add(&args(Command::Add, "c1", &c, vec![]))
            .unwrap_err()
            .code,
        Code::InvalidConfig
    );
    assert_eq!(
        nuage_ipam::status(&args(Command::Status, "", &c, vec![]))
            .unwrap_err()
            .code,
        Code::NotAvailable
    );
    let c = bridge_conf(json!({"type": "../../bin/sh"}));
    assert_eq!(
        nuage_ipam::add(&args(Command::Add, "c1", &c, vec![]))
            .unwrap_err()
            .code,
        Code::InvalidConfig
    );
}
