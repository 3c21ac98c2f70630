//! The runtime side of CNI, as libcni does it: load a network list, run its
//! plugins in order with `prevResult` chaining (reverse order for DEL),
//! cache the result, and answer CHECK/GC/STATUS from the cache.

pub mod cache;
pub mod conf;
pub mod demo;
pub mod ping;
pub mod validate;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use nuage_core::delegate;
use nuage_core::spec::{self, version, Attachment as ValidAttachment, CniResult, VersionReply};
use nuage_core::{log, Error, ErrorReply, Errors, Result};
use serde_json::{json, Map, Value};

pub use cache::Cache;
pub use conf::NetworkList;

/// Whether process `pid` no longer exists (in this PID namespace): a killed
/// writer's temp file, a bare-pid demo's leftovers.
pub(crate) fn process_gone(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

/// Where plugins are when `CNI_PATH` does not say (libcni's convention).
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin";

/// Where configs, plugins and the cache are.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub cni_path: Vec<PathBuf>,
    pub cache: Cache,
}

/// One attachment of a container to a network.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: Vec<(String, String)>,
    /// `CAP_ARGS`: capability name -> value.
    pub capability_args: Map<String, Value>,
}

/// The verbs as runtimes send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Check,
    Del,
    Gc,
    Status,
    Version,
}

impl Verb {
    fn env(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Check => "CHECK",
            Verb::Del => "DEL",
            Verb::Gc => "GC",
            Verb::Status => "STATUS",
            Verb::Version => "VERSION",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Check => "check",
            Verb::Del => "delete",
            Verb::Gc => "gc",
            Verb::Status => "status",
            Verb::Version => "version",
        }
    }
}

impl Runtime {
    /// ADD: every plugin in order; the final result is cached and returned
    /// in the list's version.
    pub fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value> {
        let _shared = self.cache.lock_network(&list.name, false)?;
        // As libcni, before any plugin runs: what names the cache entry and
        // the plugins' state must be a valid name.
        list.check_name()?;
        if !spec::valid_id(&att.container_id) {
            return Err(Error::env(format!(
                "invalid characters in container ID {:?}",
                att.container_id
            ))
            .with_details(
                "use letters, digits, '_', '.' and '-', starting with a letter or digit",
            ));
        }
        nuage_core::skel::validate_ifname(&att.ifname)?;
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let req = request(list, plugin, Some(att), prev.take(), Verb::Add);
            let out = self.exec(plugin, Verb::Add, Some(att), &req)?;
            let v: Value = serde_json::from_slice(&out).map_err(|e| {
                Error::decode(format!(
                    "plugin type={:?} printed a result that is not JSON: {e}",
                    plugin_type(plugin)
                ))
            })?;
            let r = CniResult::from_json(&v, &list.cni_version)?;
            prev = Some(r.to_json(&list.cni_version)?);
        }
        let result = prev.unwrap_or(Value::Null);
        let mut entry = cache::Entry::new(&att.container_id, &att.ifname, &list.name, &list.bytes);
        entry.netns = att.netns.clone();
        entry.cni_args = att.cni_args.clone();
        entry.capability_args = att.capability_args.clone();
        entry.result = result.clone();
        self.cache.put(&entry)?;
        Ok(result)
    }

    /// The cached final ADD result, converted to the list's version.
    fn cached_result(&self, list: &NetworkList, att: &Attachment) -> Option<Value> {
        let e = self.cache.get(&list.name, &att.container_id, &att.ifname)?;
        let converted = CniResult::from_json(&e.result, &list.cni_version)
            .and_then(|r| r.to_json(&list.cni_version));
        match converted {
            Ok(v) => Some(v),
            Err(err) => {
                log::warn(format_args!(
                    "cached result of {} unusable: {err}",
                    att.container_id
                ));
                None
            }
        }
    }

    /// CHECK: every plugin in order with the cached result.
    pub fn check(&self, list: &NetworkList, att: &Attachment) -> Result<()> {
        let _shared = self.cache.lock_network(&list.name, false)?;
        if !version::at_least(&list.cni_version, "0.4.0") {
            return Err(Error::incompatible(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let prev = self.cached_result(list, att);
        for plugin in &list.plugins {
            let req = request(list, plugin, Some(att), prev.clone(), Verb::Check);
            self.exec(plugin, Verb::Check, Some(att), &req)?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order with the cached result (from
    /// 0.4.0), then the cache entry is removed. A broken cache never blocks.
    pub fn del(&self, list: &NetworkList, att: &Attachment) -> Result<()> {
        let _shared = self.cache.lock_network(&list.name, false)?;
        self.del_locked(list, att)
    }

    /// DEL under the network's lock (taken by the caller).
    fn del_locked(&self, list: &NetworkList, att: &Attachment) -> Result<()> {
        let prev = if version::at_least(&list.cni_version, "0.4.0") {
            self.cached_result(list, att)
        } else {
            None
        };
        for plugin in list.plugins.iter().rev() {
            let req = request(list, plugin, Some(att), prev.clone(), Verb::Del);
            self.exec(plugin, Verb::Del, Some(att), &req)?;
        }
        self.cache
            .remove(&list.name, &att.container_id, &att.ifname)
    }

    /// GC: DELs the cached attachments that are not in `valid`, then sends
    /// GC (from 1.1.0) with the valid attachments. Every error is collected.
    /// With `valid = None`, the valid attachments are the cached ones whose
    /// netns still exists or is not recorded (a person's `nuage gc` must not tear down live
    /// containers, unlike cnitool's, which DELs every cached attachment).
    pub fn gc(&self, list: &NetworkList, valid: Option<Vec<ValidAttachment>>) -> Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        // Exclusive: an ADD in flight (shared) has its lease but not yet its
        // cache entry, and would be collected as stale; its address would
        // then go to the next container too.
        let _exclusive = self.cache.lock_network(&list.name, true)?;
        self.cache.remove_temps(&list.name);
        let entries = self.cache.entries(&list.name);
        let valid = valid.unwrap_or_else(|| {
            entries
                .iter()
                // Entries without a netns (libcni < 1.2 wrote none) cannot
                // be judged: they are kept.
                .filter(|e| e.netns.is_empty() || nuage_core::netns::NetNs::open(&e.netns).is_ok())
                .map(|e| ValidAttachment {
                    container_id: e.container_id.clone(),
                    ifname: e.if_name.clone(),
                })
                .collect()
        });
        let mut errs = Errors::new();
        for e in &entries {
            let key = ValidAttachment {
                container_id: e.container_id.clone(),
                ifname: e.if_name.clone(),
            };
            if valid.contains(&key) {
                continue;
            }
            log::info(format_args!(
                "gc: deleting stale attachment {}/{}",
                e.container_id, e.if_name
            ));
            let att = Attachment {
                container_id: e.container_id.clone(),
                netns: e.netns.clone(),
                ifname: e.if_name.clone(),
                cni_args: e.cni_args.clone(),
                capability_args: e.capability_args.clone(),
            };
            errs.collect(self.del_locked(list, &att));
        }
        if version::at_least(&list.cni_version, "1.1.0") {
            let valid = serde_json::to_value(&valid).unwrap_or(Value::Null);
            for plugin in &list.plugins {
                let mut req = request(list, plugin, None, None, Verb::Gc);
                req.insert("cni.dev/valid-attachments".into(), valid.clone());
                req.insert("cni.dev/attachments".into(), valid.clone());
                errs.collect(self.exec(plugin, Verb::Gc, None, &req));
            }
        }
        errs.into_result()
    }

    /// STATUS (from 1.1.0): every plugin in order, stopping at the first error.
    pub fn status(&self, list: &NetworkList) -> Result<()> {
        if !version::at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        for plugin in &list.plugins {
            let req = request(list, plugin, None, None, Verb::Status);
            self.exec(plugin, Verb::Status, None, &req)?;
        }
        Ok(())
    }

    /// VERSION of one plugin binary.
    pub fn version_info(&self, plugin_type: &str) -> Result<VersionReply> {
        let mut p = Map::new();
        p.insert("type".into(), json!(plugin_type));
        let mut req = Map::new();
        req.insert("cniVersion".into(), json!(version::CURRENT));
        let out = self.exec(&p, Verb::Version, None, &req)?;
        serde_json::from_slice(&out).map_err(|e| {
            Error::decode(format!(
                "plugin {plugin_type:?} printed a bad VERSION reply: {e}"
            ))
        })
    }

    /// Runs one plugin; a failure is wrapped as libcni does
    /// (`plugin type="x" failed (add): ...`), keeping the plugin's code.
    fn exec(
        &self,
        plugin: &Map<String, Value>,
        verb: Verb,
        att: Option<&Attachment>,
        req: &Map<String, Value>,
    ) -> Result<Vec<u8>> {
        let ty = plugin_type(plugin);
        let bin = delegate::find(ty, &self.cni_path)?;
        let stdin =
            serde_json::to_vec(req).map_err(|e| Error::internal(format!("encode request: {e}")))?;
        let args: Vec<String> = att
            .map(|a| a.cni_args.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        let (cid, netns, ifname) = match (verb, att) {
            (Verb::Version, _) => ("", "dummy", "dummy"),
            (_, Some(a)) => (a.container_id.as_str(), a.netns.as_str(), a.ifname.as_str()),
            (_, None) => ("", "", ""),
        };
        let path = std::env::join_paths(&self.cni_path).unwrap_or_default();
        let mut child = Process::new(&bin)
            .env("CNI_COMMAND", verb.env())
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", args.join(";"))
            .env(
                "CNI_PATH",
                if verb == Verb::Version {
                    "dummy".into()
                } else {
                    path
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::os(format!("run plugin {}", bin.display()), e))?;
        if let Some(mut s) = child.stdin.take() {
            let _ = s.write_all(&stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::os(format!("wait for plugin {}", bin.display()), e))?;
        let _ = std::io::stderr().write_all(&out.stderr);
        if out.status.success() {
            return Ok(out.stdout);
        }
        let wrap = |msg: String| format!("plugin type={ty:?} failed ({}): {msg}", verb.word());
        Err(match serde_json::from_slice::<ErrorReply>(&out.stdout) {
            Ok(reply) => {
                let mut e = Error::from(reply);
                e.msg = wrap(e.msg);
                e
            }
            Err(_) if out.stdout.is_empty() => Error::internal(wrap(format!(
                "netplugin failed: {:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ))),
            Err(e) => Error::internal(wrap(format!(
                "netplugin failed but error parsing its diagnostic message {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            ))),
        })
    }
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The request config for one plugin: the plugin object with `name` and
/// `cniVersion` injected, plus `runtimeConfig` (the enabled capabilities the
/// runtime has values for) and `prevResult` for ADD/CHECK/DEL.
fn request(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    att: Option<&Attachment>,
    prev: Option<Value>,
    verb: Verb,
) -> Map<String, Value> {
    let mut req = plugin.clone();
    req.insert("name".into(), json!(list.name));
    req.insert("cniVersion".into(), json!(list.cni_version));
    if matches!(verb, Verb::Gc | Verb::Status) {
        return req;
    }
    if let Some(att) = att {
        let caps: Map<String, Value> = plugin
            .get("capabilities")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .filter_map(|(cap, _)| Some((cap.clone(), att.capability_args.get(cap)?.clone())))
            .collect();
        if !caps.is_empty() {
            req.insert("runtimeConfig".into(), Value::Object(caps));
        }
    }
    if let Some(prev) = prev {
        req.insert("prevResult".into(), prev);
    }
    req
}

/// Prints a result as libcni does (4-space indent, no trailing newline).
pub fn pretty(v: &Value) -> String {
    spec::to_pretty(v)
}
