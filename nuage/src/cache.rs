//! The result cache, in libcni's format and place, so that nuage and
//! libcni-based runtimes read each other's entries:
//! `<dir>/results/<network>-<containerID>-<ifname>` (0600, directory 0700),
//! `{"kind":"cniCacheV1","containerId","config":<base64>,"ifName",
//! "networkName","netns","cniArgs","capabilityArgs","result"}`.
//! Written atomically (temp file, fsync, rename); a broken entry reads as
//! absent and never blocks DEL.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use nuage_core::{log, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The default cache directory (libcni's).
pub const DEFAULT_DIR: &str = "/var/lib/cni";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// base64 of the network config bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: String,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub netns: String,
    #[serde(
        rename = "cniArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default)]
    pub result: Value,
}

/// Go's encoder writes `null` for an empty slice, map or config.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Entry {
    pub fn new(container_id: &str, if_name: &str, network: &str, config: &[u8]) -> Self {
        Entry {
            kind: "cniCacheV1".into(),
            container_id: container_id.into(),
            config: base64::engine::general_purpose::STANDARD.encode(config),
            if_name: if_name.into(),
            network_name: network.into(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: Value::Null,
        }
    }
}

/// A cache rooted at a directory (`/var/lib/cni` unless told otherwise).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The lock of `network`'s attachments in this cache: ADD, CHECK and
    /// DEL hold it shared, GC exclusive (so that GC never takes an ADD in
    /// flight, whose lease exists before its cache entry, for stale). A
    /// runtime on libcni does not take it; the spec leaves GC against ADD
    /// to the runtime.
    ///
    /// Equivalent to: `flock [-s] <dir>/locks/<network>`
    pub fn lock_network(&self, network: &str, exclusive: bool) -> Result<nuage_core::flock::Lock> {
        nuage_core::flock::lock(&self.dir.join("locks").join(network), exclusive)
    }

    /// Removes the temporary files of `network`'s entries (`.<entry>.tmp<pid>`)
    /// that a killed writer left: its process is gone. (A name of another
    /// network can share the prefix; its writer, alive, keeps its file.)
    pub fn remove_temps(&self, network: &str) {
        let prefix = format!(".{network}-");
        for e in fs::read_dir(self.results()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit_once(".tmp"))
                .and_then(|(_, pid)| pid.parse::<i32>().ok());
            if pid.is_some_and(crate::process_gone) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results()
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes `entry` atomically.
    pub fn put(&self, e: &Entry) -> Result<()> {
        let dir = self.results();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|err| Error::os(format!("create cache directory {}", dir.display()), err))?;
        let path = self.path(&e.network_name, &e.container_id, &e.if_name);
        let tmp = path.with_file_name(format!(
            ".{}.tmp{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let data = serde_json::to_vec(e)
            .map_err(|err| Error::internal(format!("encode cache entry: {err}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&tmp);
            Error::os(format!("write cache entry {}", path.display()), err)
        })
    }

    /// Reads an entry; a missing, unreadable or broken one is `None` (a
    /// broken one is logged, and left for DEL to remove).
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Option<Entry> {
        let path = self.path(network, container_id, ifname);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("kind").and_then(Value::as_str) == Some("cniCacheV1") => {
                match serde_json::from_value::<Entry>(v) {
                    Ok(e) => Some(e),
                    Err(err) => self.discard(&path, err),
                }
            }
            // A legacy cache file holds the bare result.
            Ok(v @ Value::Object(_)) => {
                let mut e = Entry::new(container_id, ifname, network, b"");
                e.result = v;
                Some(e)
            }
            Ok(_) => self.discard(&path, "not a JSON object"),
            Err(err) => self.discard(&path, err),
        }
    }

    fn discard(&self, path: &Path, why: impl std::fmt::Display) -> Option<Entry> {
        log::warn(format_args!(
            "ignoring broken cache entry {}: {why}",
            path.display()
        ));
        None
    }

    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::os(
                format!("remove cache entry {}", path.display()),
                e,
            )),
        }
    }

    /// Every readable entry of `network`.
    pub fn entries(&self, network: &str) -> Vec<Entry> {
        let prefix = format!("{network}-");
        let mut names: Vec<String> = fs::read_dir(self.results())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| {
                serde_json::from_slice::<Entry>(&fs::read(self.results().join(n)).ok()?).ok()
            })
            .filter(|e| e.network_name == network && !e.if_name.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_broken_entries() {
        let dir = std::env::temp_dir().join(format!("nuage-cache-test-{}", std::process::id()));
        let c = Cache::new(&dir);
        let mut e = Entry::new("c1", "eth0", "net", b"{}");
        e.result = serde_json::json!({"cniVersion": "1.0.0"});
        c.put(&e).unwrap();
        assert_eq!(
            c.get("net", "c1", "eth0").unwrap().result["cniVersion"],
            "1.0.0"
        );
        assert_eq!(c.entries("net").len(), 1);
        fs::write(c.path("net", "c2", "eth0"), b"{broken").unwrap();
        assert!(c.get("net", "c2", "eth0").is_none());
        assert!(c.path("net", "c2", "eth0").exists(), "left for DEL");
        c.remove("net", "c2", "eth0").unwrap();
        // Go writes null for an empty config, args or capabilities.
        fs::write(
            c.path("net", "c3", "eth0"),
            br#"{"kind":"cniCacheV1","containerId":"c3","config":null,"ifName":"eth0",
                "networkName":"net","netns":null,"cniArgs":null,"capabilityArgs":null,
                "result":{"cniVersion":"1.0.0"}}"#,
        )
        .unwrap();
        let e = c.get("net", "c3", "eth0").unwrap();
        assert_eq!((e.config.as_str(), e.cni_args.len()), ("", 0));
        assert_eq!(c.entries("net").len(), 2);
        c.remove("net", "c3", "eth0").unwrap();
        c.remove("net", "c1", "eth0").unwrap();
        c.remove("net", "c1", "eth0").unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
