//! `nuage demo`: a live run of the whole path a runtime takes, on throwaway
//! namespaces and an embedded default network, cleaned up at the end.

use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nuage_core::netlink::{IpFamily, Netlink};
use nuage_core::netns::NetNs;
use nuage_core::{Error, Result};

use crate::{conf, ping, Attachment, Cache, Runtime};

/// The embedded default network of the demo: a bridge with a gateway,
/// addresses from in-process host-local IPAM, `lo` up by the loopback plugin
/// chained after it. `@DATADIR@` is the demo's own store. (No `ipMasq`: the
/// demo needs nothing beyond a Linux kernel, and masquerading needs `nft`.)
const NETWORK: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "nuage-demo",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "nuage0",
      "isGateway": true,
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

/// SIGINT, SIGTERM and SIGHUP, blocked and read from a signalfd at each
/// step: the demo stops there and cleans up, instead of dying with its
/// namespaces left (their default action).
static SIGNALS: OnceLock<Mutex<SignalFd>> = OnceLock::new();

fn catch_signals() {
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(sig);
    }
    // Before any thread starts: they inherit the mask.
    if mask.thread_block().is_ok() {
        if let Ok(fd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        {
            let _ = SIGNALS.set(Mutex::new(fd));
        }
    }
}

fn interrupted() -> bool {
    SIGNALS
        .get()
        .and_then(|m| m.lock().ok()?.read_signal().ok()?)
        .is_some()
}

/// A line for the person watching. Output errors are ignored: with stdout
/// closed (`nuage demo | head -1`) the demo still cleans up.
fn say(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A step: announced, unless a signal asked the demo to stop.
fn step(msg: impl Display) -> Result<()> {
    if interrupted() {
        return Err(Error::internal("interrupted: cleaning up"));
    }
    say(format_args!("==> {msg}"));
    Ok(())
}

/// Where each running demo holds an exclusive lock, `<tag>.lock`, for its
/// whole life: the lock (not the pid, which another PID namespace or a
/// reused pid makes meaningless) tells a live demo from a killed one.
const LOCK_DIR: &str = "/run/nuage/demo";

fn lock_path(tag: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{tag}.lock"))
}

/// A tag of its own for this demo (in its namespace and directory names):
/// the pid and the clock, so demos in two PID namespaces never share one.
fn new_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}.{nanos:08x}", std::process::id())
}

/// Takes this demo's lock, before it creates anything named by its tag.
fn hold_lock(tag: &str) -> Result<fs::File> {
    use std::os::unix::fs::MetadataExt;
    let path = lock_path(tag);
    loop {
        fs::create_dir_all(LOCK_DIR).map_err(|e| Error::os(format!("create {LOCK_DIR}"), e))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::os(format!("create {}", path.display()), e))?;
        f.lock()
            .map_err(|e| Error::os(format!("lock {}", path.display()), e))?;
        // Another demo may have taken this (still unlocked) file for a dead
        // demo's and removed it meanwhile: then lock a new one.
        let same = |m: fs::Metadata, n: fs::Metadata| (m.dev(), m.ino()) == (n.dev(), n.ino());
        if let (Ok(held), Ok(named)) = (f.metadata(), fs::metadata(&path)) {
            if same(held, named) {
                return Ok(f);
            }
        }
    }
}

/// Whether the demo of `tag` is gone, with its lock then held. Only names
/// a demo makes are judged: `<pid>.<8 hex>` by its lock (missing or free:
/// dead), and a bare `<pid>` (older demos, which held no lock) by whether
/// that process exists; any other `nuage-demo-*` name is not ours.
fn dead(tag: &str) -> Option<Option<fs::File>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tag.split_once('.') {
        Some((pid, n))
            if digits(pid) && n.len() == 8 && n.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            match fs::File::open(lock_path(tag)) {
                Err(_) => Some(None),
                Ok(f) => f.try_lock().ok().map(|()| Some(f)),
            }
        }
        None if digits(tag) => crate::process_gone(tag.parse().ok()?).then_some(None),
        _ => None,
    }
}

/// Removes what demos killed before their cleanup left: namespaces under
/// /run/netns and work directories, by the tag in their names.
fn remove_leftovers() {
    let tag_of = |name: &str| -> Option<String> {
        let tag = name.strip_prefix("nuage-demo-")?.split('-').next()?;
        (!tag.is_empty()).then(|| tag.to_string())
    };
    let mut tags: Vec<String> = [Path::new("/run/netns"), &std::env::temp_dir()]
        .iter()
        .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| tag_of(&e.file_name().to_string_lossy()))
        .collect();
    // And the locks of demos killed before they named anything, or after
    // they removed all but their lock.
    tags.extend(
        fs::read_dir(LOCK_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".lock").map(str::to_string)
            }),
    );
    tags.sort();
    tags.dedup();
    for tag in tags {
        let Some(lock) = dead(&tag) else { continue };
        let prefix = format!("nuage-demo-{tag}");
        let mine = |n: &str| n == prefix || n.starts_with(&format!("{prefix}-"));
        for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if mine(&name) {
                say(format_args!(
                    "==> removing namespace {name}, left by an interrupted demo"
                ));
                let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = fs::remove_dir_all(std::env::temp_dir().join(&prefix));
        if lock.is_some() {
            let _ = fs::remove_file(lock_path(&tag));
        }
    }
}

/// Runs the demo. Everything happens in namespaces it creates: a "node"
/// namespace where the plugins run (so the bridge and its state
/// live there, not on this machine), and one per container. Plugins are
/// taken from the directory of the `nuage` binary unless CNI_PATH says
/// otherwise.
pub fn run() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::internal(
            "the demo creates network namespaces: run it as root",
        ));
    }
    catch_signals();
    remove_leftovers();
    let tag = new_tag();
    let lock = hold_lock(&tag)?;
    let _unlock = RemoveLock(lock_path(&tag), lock);
    let work = std::env::temp_dir().join(format!("nuage-demo-{tag}"));
    let _cleanup = RemoveDir(work.clone());
    fs::create_dir_all(&work).map_err(|e| Error::os(format!("create {}", work.display()), e))?;
    let conf_path = work.join("10-nuage-demo.conflist");
    let network = NETWORK.replace("@DATADIR@", &work.join("ipam").display().to_string());
    fs::write(&conf_path, network).map_err(|e| Error::os("write demo network", e))?;
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    // Installed as the README says, nuage is in /usr/local/bin and the
    // plugins in /opt/cni/bin, the default CNI_PATH of the other commands.
    let cni_path = std::env::var("CNI_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_else(|| vec![bin_dir, PathBuf::from(crate::DEFAULT_CNI_PATH)]);
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
    ))?;
    for (error, msg) in crate::validate::validate(&rt, &conf_path) {
        if error {
            return Err(Error::config(format!("demo network is invalid: {msg}")));
        }
    }
    let node = Namespace::create(&format!("nuage-demo-{tag}-node"))?;
    let node_ns = NetNs::open(&node.path)?;
    let mut nl = Netlink::in_netns(&node_ns)?;
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_up(lo.index)?;
    }
    step(format!(
        "node namespace {} (the plugins run here)",
        node.path.display()
    ))?;
    // Child processes inherit the netns of the thread that spawns them.
    node_ns.run(|| in_node(&rt, &list, &node, &tag))?
}

fn in_node(rt: &Runtime, list: &crate::NetworkList, node: &Namespace, tag: &str) -> Result<()> {
    let mut containers = Vec::new();
    for i in 1..=3 {
        let ns = Namespace::create(&format!("nuage-demo-{tag}-c{i}"))?;
        let att = Attachment {
            container_id: format!("nuage-demo-{tag}-c{i}"),
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
        ))?;
        containers.push((ns, att, ip, gw));
    }
    let addr = |ip: &str| ip.split('/').next().unwrap_or("").parse::<Ipv4Addr>();
    let ping = |from: &Namespace, to: &str| -> Result<String> {
        let ip = addr(to).map_err(|e| Error::internal(format!("address {to:?}: {e}")))?;
        let stats = ping::ping(&NetNs::open(&from.path)?, ip, 2, Duration::from_secs(2))?;
        if stats.received == 0 {
            return Err(Error::internal(format!(
                "{} cannot reach {ip}: {stats}",
                from.name
            )));
        }
        Ok(stats.to_string())
    };
    for (i, (ns, _, _, gw)) in containers.iter().enumerate() {
        let n = containers.len();
        let peer = &containers[(i + 1) % n].2;
        say(format_args!(
            "    c{} -> c{} {peer}: {}",
            i + 1,
            (i + 1) % n + 1,
            ping(ns, peer)?
        ));
        say(format_args!(
            "    c{} -> gateway {gw}: {}",
            i + 1,
            ping(ns, gw)?
        ));
    }
    let mut c1 = Netlink::in_netns(&NetNs::open(&containers[0].0.path)?)?;
    let routes: Vec<String> = c1
        .routes(Some(IpFamily::V4))?
        .iter()
        .filter(|r| r.table == 254)
        .map(|r| match r.gw {
            Some(gw) => format!("{} via {gw}", r.dst),
            None => format!("{} dev eth0", r.dst),
        })
        .collect();
    say(format_args!("    routes in c1: {}", routes.join("; ")));
    let mut nl = Netlink::in_netns(&NetNs::open(&node.path)?)?;
    if let Some(br) = nl.link_by_name("nuage0")? {
        let addrs: Vec<String> = nl
            .addrs(Some(br.index))?
            .iter()
            .map(|a| a.address.to_string())
            .collect();
        say(format_args!("    node bridge nuage0: {}", addrs.join(" ")));
    }
    for (i, (_, att, _, _)) in containers.iter().enumerate() {
        rt.check(list, att)?;
        step(format!("c{}: CHECK ok", i + 1))?;
    }
    for (i, (ns, att, _, _)) in containers.iter().enumerate() {
        rt.del(list, att)?;
        let names: Vec<String> = Netlink::in_netns(&NetNs::open(&ns.path)?)?
            .links()?
            .into_iter()
            .map(|l| l.name)
            .collect();
        step(format!(
            "c{}: DEL done, links left: {}",
            i + 1,
            names.join(" ")
        ))?;
        rt.del(list, att)?;
    }
    step("second DEL of every container ok (idempotent)")?;
    drop(containers);
    step("container and node namespaces removed; demo complete")?;
    Ok(())
}

/// Releases the demo's lock last, after its namespaces and directory are
/// gone, and removes the lock file.
struct RemoveLock(PathBuf, #[allow(dead_code)] fs::File);
impl Drop for RemoveLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
