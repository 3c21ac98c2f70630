//! `nuage demo`: a live run of the whole path a runtime takes, on throwaway
//! namespaces and an embedded default network, cleaned up at the end.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nuage_core::{Error, Result};
use serde_json::Value;

use crate::{conf, Attachment, Cache, Runtime};

/// The embedded default network of the demo.
const NETWORK: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "nuage-demo",
  "plugins": [ { "type": "loopback" } ]
}"#;

/// A named network namespace under /run/netns, as `ip netns add` makes it;
/// removed on drop.
pub struct Namespace {
    pub name: String,
    pub path: PathBuf,
}

impl Namespace {
    /// Equivalent to: ip netns add <name>
    pub fn create(name: &str) -> Result<Namespace> {
        let dir = Path::new("/run/netns");
        fs::create_dir_all(dir).map_err(|e| Error::os("create /run/netns", e))?;
        let path = dir.join(name);
        fs::File::create(&path).map_err(|e| Error::os(format!("create {}", path.display()), e))?;
        let ns = Namespace {
            name: name.to_string(),
            path: path.clone(),
        };
        // A fresh thread unshares its netns and pins it with a bind mount;
        // the caller's thread (and the machine's namespace) is never changed.
        std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os("unshare(CLONE_NEWNET)", e.into()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::os(format!("bind-mount netns on {}", path.display()), e.into()))
        })
        .join()
        .map_err(|_| Error::internal("netns thread panicked"))??;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&self.path);
    }
}

fn step(msg: impl Display) {
    println!("==> {msg}");
}

fn sh(ns: &Namespace, cmd: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(cmd)
        .output()
        .map_err(|e| Error::os(format!("run {cmd:?} in {}", ns.name), e))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "{cmd:?} in {} failed: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the demo; plugins are taken from the directory of the `nuage`
/// binary unless CNI_PATH says otherwise.
pub fn run() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::internal(
            "the demo creates network namespaces: run it as root",
        ));
    }
    let work = std::env::temp_dir().join(format!("nuage-demo-{}", std::process::id()));
    let _cleanup = RemoveDir(work.clone());
    fs::create_dir_all(&work).map_err(|e| Error::os(format!("create {}", work.display()), e))?;
    let conf_path = work.join("10-nuage-demo.conflist");
    fs::write(&conf_path, NETWORK).map_err(|e| Error::os("write demo network", e))?;
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let cni_path = std::env::var("CNI_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_else(|| vec![bin_dir]);
    let rt = Runtime {
        cni_path,
        cache: Cache::new(work.join("cache")),
    };
    let list = conf::load(&work, "nuage-demo")?;
    step(format!(
        "network {:?} ({}): {}",
        list.name,
        list.cni_version,
        list.types().join(" -> ")
    ));
    for (error, msg) in crate::validate::validate(&rt, &conf_path) {
        if error {
            return Err(Error::config(format!("demo network is invalid: {msg}")));
        }
    }

    let mut containers = Vec::new();
    for i in 1..=2 {
        let ns = Namespace::create(&format!("nuage-demo-{}-{i}", std::process::id()))?;
        step(format!("container {i}: namespace {}", ns.path.display()));
        let att = Attachment {
            container_id: format!("nuage-demo-{}-{i}", std::process::id()),
            netns: ns.path.display().to_string(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        let result = rt.add(&list, &att)?;
        let ips: Vec<&str> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .collect();
        step(format!("container {i}: ADD gave {}", ips.join(", ")));
        containers.push((ns, att));
    }
    for (i, (ns, att)) in containers.iter().enumerate() {
        let addrs = sh(ns, &["ip", "-brief", "addr", "show", "lo"])?;
        println!("    container {}: {}", i + 1, addrs.trim());
        let ping = sh(ns, &["ping", "-c", "1", "-W", "2", "127.0.0.1"])?;
        let summary = ping
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .trim();
        println!("    container {}: ping 127.0.0.1: {summary}", i + 1);
        rt.check(&list, att)?;
        step(format!("container {}: CHECK ok", i + 1));
    }
    for (i, (ns, att)) in containers.iter().enumerate() {
        rt.del(&list, att)?;
        let lo: Value = serde_json::from_str(&sh(ns, &["ip", "-j", "link", "show", "lo"])?)
            .map_err(|e| Error::decode(format!("ip -j output: {e}")))?;
        let state = lo[0]["operstate"].as_str().unwrap_or("?").to_string();
        step(format!("container {}: DEL done, lo is {state}", i + 1));
        rt.del(&list, att)?;
        step(format!("container {}: second DEL ok (idempotent)", i + 1));
    }
    drop(containers);
    step("namespaces removed; demo complete");
    Ok(())
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
