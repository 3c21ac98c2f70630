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

/// The embedded default network of the demo: a bridge with a gateway and
/// masquerading, addresses from in-process host-local IPAM, `lo` up by the
/// loopback plugin chained after it. `@DATADIR@` is the demo's own store.
const NETWORK: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "nuage-demo",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "nuage0",
      "isGateway": true,
      "ipMasq": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.123.0.0/24" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "@DATADIR@"
      }
    },
    { "type": "loopback" }
  ]
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

/// Runs the demo. Everything happens in namespaces it creates: a "node"
/// namespace where the plugins run (so the bridge and the nftables table
/// live there, not on this machine), and one per container. Plugins are
/// taken from the directory of the `nuage` binary unless CNI_PATH says
/// otherwise.
pub fn run() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::internal(
            "the demo creates network namespaces: run it as root",
        ));
    }
    let pid = std::process::id();
    let work = std::env::temp_dir().join(format!("nuage-demo-{pid}"));
    let _cleanup = RemoveDir(work.clone());
    fs::create_dir_all(&work).map_err(|e| Error::os(format!("create {}", work.display()), e))?;
    let conf_path = work.join("10-nuage-demo.conflist");
    let network = NETWORK.replace("@DATADIR@", &work.join("ipam").display().to_string());
    fs::write(&conf_path, network).map_err(|e| Error::os("write demo network", e))?;
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
        "network {:?} (cniVersion {}): {}",
        list.name,
        list.cni_version,
        list.types().join(" -> ")
    ));
    for (error, msg) in crate::validate::validate(&rt, &conf_path) {
        if error {
            return Err(Error::config(format!("demo network is invalid: {msg}")));
        }
    }
    let node = Namespace::create(&format!("nuage-demo-{pid}-node"))?;
    sh(&node, &["ip", "link", "set", "lo", "up"])?;
    step(format!(
        "node namespace {} (the plugins run here)",
        node.path.display()
    ));
    let node_ns = nuage_core::netns::NetNs::open(&node.path)?;
    // Child processes inherit the netns of the thread that spawns them.
    node_ns.run(|| in_node(&rt, &list, &node, pid))?
}

fn in_node(rt: &Runtime, list: &crate::NetworkList, node: &Namespace, pid: u32) -> Result<()> {
    let mut containers = Vec::new();
    for i in 1..=3 {
        let ns = Namespace::create(&format!("nuage-demo-{pid}-c{i}"))?;
        let att = Attachment {
            container_id: format!("nuage-demo-{pid}-c{i}"),
            netns: ns.path.display().to_string(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        let result = rt.add(list, &att)?;
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let gw = result["ips"][0]["gateway"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        step(format!(
            "container c{i} ({}): ADD eth0 {ip} via {gw}",
            ns.path.display()
        ));
        containers.push((ns, att, ip, gw));
    }
    let addr = |ip: &str| ip.split('/').next().unwrap_or("").to_string();
    let ping = |from: &Namespace, to: &str| -> Result<String> {
        let out = sh(from, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to])?;
        Ok(out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .trim()
            .to_string())
    };
    for (i, (ns, _, _, gw)) in containers.iter().enumerate() {
        let peer = &containers[(i + 1) % containers.len()];
        println!(
            "    c{} -> c{} {}: {}",
            i + 1,
            (i + 1) % containers.len() + 1,
            addr(&peer.2),
            ping(ns, &addr(&peer.2))?
        );
        println!("    c{} -> gateway {gw}: {}", i + 1, ping(ns, gw)?);
    }
    let routes = sh(&containers[0].0, &["ip", "route"])?;
    println!(
        "    routes in c1: {}",
        routes.lines().map(str::trim).collect::<Vec<_>>().join("; ")
    );
    let bridge = sh(node, &["ip", "-brief", "addr", "show", "nuage0"])?;
    println!("    node bridge: {}", bridge.trim());
    for (i, (_, att, _, _)) in containers.iter().enumerate() {
        rt.check(list, att)?;
        step(format!("c{}: CHECK ok", i + 1));
    }
    for (i, (ns, att, _, _)) in containers.iter().enumerate() {
        rt.del(list, att)?;
        let links: Value = serde_json::from_str(&sh(ns, &["ip", "-j", "link"])?)
            .map_err(|e| Error::decode(format!("ip -j output: {e}")))?;
        let names: Vec<&str> = links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .collect();
        step(format!(
            "c{}: DEL done, links left: {}",
            i + 1,
            names.join(" ")
        ));
        rt.del(list, att)?;
    }
    step("second DEL of every container ok (idempotent)");
    drop(containers);
    step("container and node namespaces removed; demo complete");
    Ok(())
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
