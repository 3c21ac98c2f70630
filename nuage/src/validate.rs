//! `nuage validate`: what is wrong with a network config list, in plain words.

use std::path::Path;

use nuage_core::spec::version;
use serde_json::Value;

use crate::{NetworkList, Runtime};

/// Top-level keys of a conflist (SPEC §1).
const LIST_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
    "plugins",
];

/// Well-known capabilities (CONVENTIONS.md) and the runtime conventions.
const CAPABILITIES: &[&str] = &[
    "portMappings",
    "ipRanges",
    "bandwidth",
    "dns",
    "ips",
    "mac",
    "infinibandGUID",
    "deviceID",
    "aliases",
    "cgroupPath",
    "io.kubernetes.cri.pod-annotations",
];

/// A finding: `true` for an error, `false` for a warning.
pub type Finding = (bool, String);

/// Checks the list in `path` against the plugins on the runtime's CNI_PATH.
pub fn validate(rt: &Runtime, path: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return vec![(true, format!("cannot read {}: {e}", path.display()))],
    };
    let single = path.extension().is_none_or(|e| e != "conflist");
    let list = match NetworkList::from_bytes(&bytes, path, single) {
        Ok(l) => l,
        Err(e) => return vec![(true, e.to_string())],
    };
    if let Err(e) = list.check_name() {
        out.push((true, e.to_string()));
    }
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&bytes) {
        if !single {
            for k in obj.keys().filter(|k| !LIST_KEYS.contains(&k.as_str())) {
                out.push((false, format!(
                    "unknown top-level key {k:?}: plugin settings belong inside \"plugins\" (known keys: {})",
                    LIST_KEYS.join(", ")
                )));
            }
        }
        if obj.get("cniVersion").is_none() {
            out.push((
                false,
                "no \"cniVersion\": it then means 0.1.0; set \"cniVersion\": \"1.1.0\"".into(),
            ));
        }
    }
    if let Some(bad) = list_versions(&bytes)
        .into_iter()
        .find(|v| version::parse_loose(v).is_none())
    {
        out.push((
            true,
            format!("cniVersions holds {bad:?}, which is not a version (libcni >= 1.2 refuses the list): write versions as \"1.1.0\""),
        ));
    }
    if !version::ALL.contains(&list.cni_version.as_str()) {
        out.push((
            true,
            format!(
                "cniVersion {:?} is not a CNI version nuage knows ({})",
                list.cni_version,
                version::ALL.join(", ")
            ),
        ));
    }
    for (i, plugin) in list.plugins.iter().enumerate() {
        let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        let at = format!("plugins[{i}] ({ty})");
        match rt.version_info(ty) {
            Ok(v) if !v.supported_versions.contains(&list.cni_version) => out.push((true, format!(
                "{at}: the plugin supports {:?} but the list uses {}; change cniVersion or upgrade the plugin",
                v.supported_versions, list.cni_version
            ))),
            Ok(_) => {}
            Err(e) => out.push((true, format!("{at}: {e}"))),
        }
        match plugin.get("capabilities") {
            None => {}
            Some(Value::Object(caps)) => {
                for (cap, on) in caps {
                    if !on.is_boolean() {
                        out.push((
                            true,
                            format!("{at}: capabilities.{cap} must be true or false, got {on}"),
                        ));
                    }
                    if !CAPABILITIES.contains(&cap.as_str()) {
                        out.push((false, format!("{at}: capability {cap:?} is not a well-known one; runtimes will not fill it")));
                    }
                }
            }
            Some(other) => out.push((
                true,
                format!("{at}: \"capabilities\" must be an object, got {other}"),
            )),
        }
        if let Some(ipam) = plugin.get("ipam") {
            match ipam.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => {
                    if let Err(e) = nuage_core::delegate::find(t, &rt.cni_path) {
                        out.push((true, format!("{at}: ipam: {e}")));
                    }
                }
                _ => out.push((false, format!("{at}: \"ipam\" has no \"type\": the plugin runs without addresses (L2 only)"))),
            }
        }
    }
    out
}

/// The `cniVersions` entries of a list, as written.
fn list_versions(bytes: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    v.get("cniVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
        .collect()
}
