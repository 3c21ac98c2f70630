//! Loading network configuration lists as libcni does (`LoadNetworkConf`):
//! `*.conflist` files in name order, the first whose `name` matches; else
//! `*.conf`/`*.json` single-plugin files wrapped into a list; plugins from
//! `<dir>/<name>/*.conf` appended unless `loadOnlyInlinedPlugins`.

use std::fs;
use std::path::{Path, PathBuf};

use nuage_core::spec::{valid_id, version};
use nuage_core::{Error, Result};
use serde_json::{Map, Value};

/// A loaded network configuration list.
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    /// The selected version: the highest of `cniVersion` and `cniVersions`.
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Map<String, Value>>,
    /// The file's bytes (cached with results, as libcni does).
    pub bytes: Vec<u8>,
    pub source: PathBuf,
}

impl NetworkList {
    /// Parses a conflist (or, with `single`, a one-plugin `.conf`).
    pub fn from_bytes(bytes: &[u8], source: &Path, single: bool) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode(format!("{}: not valid JSON: {e}", source.display())))?;
        let Value::Object(obj) = v else {
            return Err(Error::decode(format!(
                "{}: must be a JSON object",
                source.display()
            )));
        };
        let name = match obj.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => {
                return Err(Error::config(format!(
                    "{}: missing network name",
                    source.display()
                )))
            }
        };
        // As libcni: a version that is not a string is refused on load; a
        // missing one means 0.1.0 (what plugins take an empty one for).
        let declared = match obj.get("cniVersion") {
            None => "0.1.0",
            Some(Value::String(v)) => v.as_str(),
            Some(other) => {
                return Err(Error::config(format!(
                    "{}: \"cniVersion\" must be a string, got {other}",
                    source.display()
                ))
                .with_details(format!("write it quoted: \"cniVersion\": \"{other}\"")))
            }
        };
        let mut candidates: Vec<&str> = obj
            .get("cniVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        candidates.push(declared);
        let cni_version = version::highest(candidates).unwrap_or(declared).to_string();
        let flag = |k: &str| -> Result<bool> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(other) => Err(Error::config(format!(
                    "{}: {k:?} must be true or false, got {other}",
                    source.display()
                ))),
            }
        };
        let (disable_check, disable_gc, inlined_only) = (
            flag("disableCheck")?,
            flag("disableGC")?,
            flag("loadOnlyInlinedPlugins")?,
        );
        let plugins = if single {
            vec![obj.clone()]
        } else {
            match obj.get("plugins") {
                Some(Value::Array(a)) if a.is_empty() => {
                    return Err(Error::config(format!(
                        "{}: \"plugins\" is empty",
                        source.display()
                    )))
                }
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.as_object().cloned().ok_or_else(|| {
                            Error::config(format!(
                                "{}: plugins[{i}] is not an object",
                                source.display()
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
                None if inlined_only => {
                    return Err(Error::config(format!(
                        "{}: loadOnlyInlinedPlugins is true but there is no \"plugins\" list",
                        source.display()
                    )))
                }
                None => Vec::new(),
                Some(_) => {
                    return Err(Error::config(format!(
                        "{}: \"plugins\" must be a list",
                        source.display()
                    )))
                }
            }
        };
        let mut list = NetworkList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins,
            bytes: bytes.to_vec(),
            source: source.to_path_buf(),
        };
        if single {
            // As libcni's ConfListFromConf: the cache holds the list the
            // file was wrapped into, which libcni-based runtimes reload.
            let raw_version = obj.get("cniVersion").cloned().unwrap_or(Value::from(""));
            list.bytes = serde_json::to_vec(&serde_json::json!({
                "cniVersion": raw_version,
                "name": list.name,
                "plugins": [obj],
            }))
            .map_err(|e| Error::internal(format!("encode {}: {e}", source.display())))?;
        }
        if !single && !inlined_only {
            list.append_sibling_plugins()?;
        }
        if list.plugins.is_empty() {
            return Err(Error::config(format!(
                "{}: no plugin configs found",
                source.display()
            )));
        }
        for (i, p) in list.plugins.iter().enumerate() {
            match p.get("type") {
                Some(Value::String(t)) if !t.is_empty() => {}
                _ => {
                    return Err(Error::config(format!(
                        "{}: plugins[{i}] has no \"type\"",
                        source.display()
                    )))
                }
            }
        }
        Ok(list)
    }

    /// The network name as ADD requires it (libcni checks it only there, so
    /// that a badly named network in one file blocks no other).
    pub fn check_name(&self) -> Result<()> {
        if valid_id(&self.name) {
            return Ok(());
        }
        Err(Error::config(format!(
            "{}: invalid network name {:?}",
            self.source.display(),
            self.name
        ))
        .with_details("use letters, digits, '_', '.' and '-', starting with a letter or digit"))
    }

    /// `<dir>/<network name>/*.conf`, in file name order.
    fn append_sibling_plugins(&mut self) -> Result<()> {
        let Some(dir) = self.source.parent().map(|d| d.join(&self.name)) else {
            return Ok(());
        };
        for path in files_with(&dir, &["conf"]) {
            let bytes =
                fs::read(&path).map_err(|e| Error::os(format!("read {}", path.display()), e))?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::decode(format!("{}: not valid JSON: {e}", path.display())))?;
            match v {
                Value::Object(o) => self.plugins.push(o),
                _ => {
                    return Err(Error::config(format!(
                        "{}: must be a JSON object",
                        path.display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// The plugin `types`, in order.
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }
}

/// Regular files in `dir` with one of `exts`, sorted by name.
fn files_with(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)))
        .collect();
    files.sort();
    files
}

/// Finds network `name` in `dir`: conflists first, then single-plugin files.
pub fn load(dir: &Path, name: &str) -> Result<NetworkList> {
    let lists = files_with(dir, &["conflist"]);
    let singles = files_with(dir, &["conf", "json"]);
    if lists.is_empty() && singles.is_empty() {
        return Err(
            Error::config(format!("no net configurations found in {}", dir.display()))
                .with_details("set NETCONFPATH to the directory holding your .conflist files"),
        );
    }
    for (files, single) in [(lists, false), (singles, true)] {
        for path in files {
            let bytes =
                fs::read(&path).map_err(|e| Error::os(format!("read {}", path.display()), e))?;
            let list = NetworkList::from_bytes(&bytes, &path, single)?;
            if list.name == name {
                return Ok(list);
            }
        }
    }
    Err(Error::config(format!(
        "no net configuration with name {name:?} in {}",
        dir.display()
    )))
}

/// Every file of `dir` in the order [`load`] reads them, with its network
/// or why it does not load (for listings).
pub fn load_all(dir: &Path) -> Vec<(PathBuf, Result<NetworkList>)> {
    let mut out = Vec::new();
    for (files, single) in [
        (files_with(dir, &["conflist"]), false),
        (files_with(dir, &["conf", "json"]), true),
    ] {
        for path in files {
            let l = fs::read(&path)
                .map_err(|e| Error::os(format!("read {}", path.display()), e))
                .and_then(|b| NetworkList::from_bytes(&b, &path, single));
            out.push((path, l));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_highest_version_and_flags() {
        let l = NetworkList::from_bytes(
            br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","9.0.0"],"name":"n",
                 "disableCheck":"TRUE","plugins":[{"type":"loopback"}]}"#,
            Path::new("/x/n.conflist"),
            false,
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.1.0");
        assert!(l.disable_check && !l.disable_gc);
        assert_eq!(l.types(), ["loopback"]);
    }

    #[test]
    fn rejects_bad_lists() {
        let p = Path::new("/x/n.conflist");
        for bad in [
            &br#"{"name":"n","plugins":[]}"#[..],
            br#"{"name":"n","plugins":[{}]}"#,
            br#"{"plugins":[{"type":"a"}]}"#,
            br#"{"name":"n","disableGC":"maybe","plugins":[{"type":"a"}]}"#,
            br#"{"name":"n","loadOnlyInlinedPlugins":true}"#,
        ] {
            assert!(
                NetworkList::from_bytes(bad, p, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
