//! What ADD remembers about each device it moves, so DEL can give it back
//! under its original name and state even when the container renamed it,
//! reused its name, or the namespace is gone.
//!
//! One JSON file per attachment, `<dataDir>/<network>/<containerID>:<ifname>.json`
//! (see [`Attachment::file_name`] for long IDs),
//! written before the device moves. A record carries the boot id: after a
//! reboot every device is back on the host, so older records are dropped.

use std::fs;
use std::path::{Path, PathBuf};

use nuage_core::spec::Attachment;
use nuage_core::{log, Error, Result};
use serde::{Deserialize, Serialize};

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(rename = "bootID")]
    pub boot_id: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    /// The host name, alias, state and address of the device before ADD.
    pub name: String,
    pub alias: Option<String>,
    pub up: bool,
    pub mtu: u32,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// `IFLA_INFO_KIND` (`None` for physical devices).
    pub kind: Option<String>,
    pub host_index: u32,
    /// Its index in the container (0 until moved).
    pub container_index: u32,
}

/// The records of one network.
pub struct Store {
    dir: PathBuf,
}

pub fn boot_id() -> String {
    fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Store {
    pub fn new(data_dir: &Path, network: &str) -> Store {
        Store {
            dir: data_dir.join(network),
        }
    }

    fn path(&self, att: &Attachment) -> PathBuf {
        self.dir.join(att.file_name("json"))
    }

    /// The record of `att`, if it is of this boot (an older one is removed).
    pub fn read(&self, att: &Attachment) -> Option<Record> {
        let path = self.path(att);
        let rec = read_file(&path)?;
        self.current(&path, rec)
    }

    /// Every record of this boot, with its path.
    pub fn all(&self) -> Vec<(PathBuf, Record)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                let rec = read_file(&p)?;
                Some((p.clone(), self.current(&p, rec)?))
            })
            .collect()
    }

    fn current(&self, path: &Path, rec: Record) -> Option<Record> {
        if rec.boot_id == boot_id() {
            return Some(rec);
        }
        log::info(format_args!(
            "dropping {} from an earlier boot",
            path.display()
        ));
        let _ = fs::remove_file(path);
        None
    }

    /// Writes atomically (a crash leaves the old record or the new one).
    pub fn write(&self, att: &Attachment, rec: &Record) -> Result<()> {
        let path = self.path(att);
        let data = serde_json::to_vec_pretty(rec).unwrap_or_default();
        fs::create_dir_all(&self.dir)
            .and_then(|()| nuage_core::file::write_atomic(&path, &data))
            .map_err(|e| Error::os(format_args!("write {}", path.display()), e))
    }

    pub fn remove(&self, att: &Attachment) -> Result<()> {
        remove_path(&self.path(att))
    }
}

pub fn remove_path(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::os(format_args!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

fn read_file(path: &Path) -> Option<Record> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn(format_args!("ignoring unreadable {}: {e}", path.display()));
            None
        }
    }
}
