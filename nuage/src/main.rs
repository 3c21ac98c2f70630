//! `nuage`: drive CNI plugins the way a container runtime does (libcni +
//! cnitool), for people and tests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nuage::{cache, conf, validate, Attachment, Cache, Runtime};
use nuage_core::{Error, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};

const USAGE: &str = "\
usage: nuage [--cache-dir DIR] [--ifname NAME] <command> ...

commands:
  add    <network> <netns>   attach a namespace to a network, print the result
  check  <network> <netns>   check an attachment against its cached result
  del    <network> <netns>   detach (idempotent; the netns may be gone)
  gc     <network> [<netns>] delete stale cached attachments, then send GC
  status <network> [<netns>] ask every plugin whether it is ready
  validate <file|network>    explain what is wrong with a network config
  list                       networks in NETCONFPATH and their cached attachments
  demo                       a live run on throwaway namespaces (as root)

environment (as cnitool reads it):
  NETCONFPATH  config directory (default /etc/cni/net.d)
  CNI_PATH     plugin directories, ':'-separated (default /opt/cni/bin)
  CNI_IFNAME   interface name (default eth0)
  CNI_ARGS     K=V;K=V pairs for the plugins
  CAP_ARGS     JSON object of capability arguments, e.g. {\"portMappings\":[...]}
  CNI_CONTAINERID  container id (default: derived from the netns path)
  NUAGE_CACHE_DIR  result cache directory (default /var/lib/cni)";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nuage: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn run(mut args: Vec<String>) -> Result<ExitCode> {
    let mut cache_dir = env("NUAGE_CACHE_DIR").unwrap_or_else(|| cache::DEFAULT_DIR.into());
    let mut ifname = env("CNI_IFNAME").unwrap_or_else(|| "eth0".into());
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        if flag == "--help" {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        let value = (!args.is_empty())
            .then(|| args.remove(0))
            .ok_or_else(|| Error::config(format!("{flag} needs a value\n{USAGE}")))?;
        match flag.as_str() {
            "--cache-dir" => cache_dir = value,
            "--ifname" => ifname = value,
            _ => return Err(Error::config(format!("unknown option {flag}\n{USAGE}"))),
        }
    }
    let conf_dir = PathBuf::from(env("NETCONFPATH").unwrap_or_else(|| "/etc/cni/net.d".into()));
    let rt = Runtime {
        cni_path: std::env::split_paths(
            &env("CNI_PATH").unwrap_or_else(|| nuage::DEFAULT_CNI_PATH.into()),
        )
        .collect(),
        cache: Cache::new(cache_dir),
    };
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let arg = |i: usize| args.get(i).map(String::as_str);
    let arity = match cmd {
        // gc and status take the netns cnitool's command line has, unused.
        "add" | "check" | "del" | "gc" | "status" => 3,
        "validate" => 2,
        _ => 1,
    };
    if args.len() > arity && cmd != "help" {
        return Err(Error::config(format!(
            "too many arguments for {cmd}: {:?}\n{USAGE}",
            &args[arity..]
        )));
    }
    match (cmd, arg(1), arg(2)) {
        ("add" | "check" | "del", Some(net), Some(netns)) => {
            let list = conf::load(&conf_dir, net)?;
            let att = attachment(netns, &ifname)?;
            match cmd {
                "add" => print!("{}", nuage::pretty(&rt.add(&list, &att)?)),
                "check" => rt.check(&list, &att)?,
                _ => rt.del(&list, &att)?,
            }
        }
        ("gc", Some(net), _) => rt.gc(&conf::load(&conf_dir, net)?, None)?,
        ("status", Some(net), _) => rt.status(&conf::load(&conf_dir, net)?)?,
        ("validate", Some(what), None) => {
            let path = if Path::new(what).is_file() {
                PathBuf::from(what)
            } else {
                conf::load(&conf_dir, what)?.source
            };
            let findings = validate::validate(&rt, &path);
            for (error, msg) in &findings {
                println!("{}: {msg}", if *error { "error" } else { "warning" });
            }
            if findings.iter().any(|(e, _)| *e) {
                return Ok(ExitCode::FAILURE);
            }
            println!("{}: valid", path.display());
        }
        ("list", None, None) => {
            if !list(&rt, &conf_dir) {
                return Ok(ExitCode::FAILURE);
            }
        }
        ("demo", None, None) => nuage::demo::run()?,
        ("help", ..) => println!("{USAGE}"),
        _ => return Err(Error::config(format!("bad arguments {args:?}\n{USAGE}"))),
    }
    Ok(ExitCode::SUCCESS)
}

/// The attachment from the environment, as cnitool builds it.
fn attachment(netns: &str, ifname: &str) -> Result<Attachment> {
    let netns = clean_path(
        &std::path::absolute(netns)
            .map_err(|e| Error::os(format!("netns path {netns:?}"), e))?
            .to_string_lossy(),
    );
    let container_id = env("CNI_CONTAINERID").unwrap_or_else(|| {
        let sum = Sha512::digest(netns.as_bytes());
        let hex: String = sum[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("cnitool-{hex}")
    });
    let mut cni_args = Vec::new();
    for pair in env("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => cni_args.push((k.to_string(), v.to_string())),
            _ => {
                return Err(Error::env(format!(
                    "invalid CNI_ARGS pair {pair:?}: expected K=V"
                )))
            }
        }
    }
    let capability_args = match env("CAP_ARGS") {
        None => Map::new(),
        Some(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            Ok(other) => {
                return Err(Error::decode(format!(
                    "CAP_ARGS must be a JSON object (capability name -> value), got {other}"
                )))
            }
            Err(e) => return Err(Error::decode(format!("CAP_ARGS: {e}"))),
        },
    };
    Ok(Attachment {
        container_id,
        netns,
        ifname: ifname.to_string(),
        cni_args,
        capability_args,
    })
}

/// Go's `filepath.Clean` for absolute paths (cnitool derives the container
/// id from the cleaned path): no `.`, no `..`, no doubled separators.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Prints every network and its cached attachments. A network another
/// file of the same name shadows, or that a broken file before it keeps
/// from loading (libcni stops at the first broken file), is marked as not
/// used. False when a file is broken.
fn list(rt: &Runtime, conf_dir: &Path) -> bool {
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    let mut broken: Option<PathBuf> = None;
    for (path, l) in conf::load_all(conf_dir) {
        match l {
            Ok(l) => {
                let unused = if let Some((_, first)) = seen.iter().find(|(n, _)| *n == l.name) {
                    Some(format!("shadowed by {}", first.display()))
                } else {
                    broken
                        .as_ref()
                        .map(|b| format!("not loadable: {} comes first and is broken", b.display()))
                };
                seen.push((l.name.clone(), l.source.clone()));
                println!(
                    "{} ({}, cniVersion {}): {}{}",
                    l.name,
                    l.source.display(),
                    l.cni_version,
                    l.types().join(" -> "),
                    unused
                        .as_ref()
                        .map(|u| format!(" [unused: {u}]"))
                        .unwrap_or_default()
                );
                if unused.is_some() {
                    continue;
                }
                for e in rt.cache.entries(&l.name) {
                    let ips: Vec<&str> = e
                        .result
                        .get("ips")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
                        .collect();
                    println!(
                        "  {} {} netns={} {}",
                        e.container_id,
                        e.if_name,
                        e.netns,
                        ips.join(" ")
                    );
                }
            }
            Err(e) => {
                println!("error: {e}");
                broken.get_or_insert(path);
            }
        }
    }
    broken.is_none()
}
