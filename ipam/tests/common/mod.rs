//! Helpers shared by the integration tests: run a CNI plugin binary with an
//! environment and stdin, temp stores, store inspection.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub const HOST_LOCAL: &str = env!("CARGO_BIN_EXE_host-local");
pub const STATIC: &str = env!("CARGO_BIN_EXE_static");
pub const REF_HOST_LOCAL: &str = "/usr/lib/cni/host-local";
pub const REF_STATIC: &str = "/usr/lib/cni/static";

/// The outcome of one plugin run.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout as JSON (Null when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("bad JSON {e}: {}", self.stdout))
        }
    }
    /// The addresses of an ADD result.
    pub fn ips(&self) -> Vec<String> {
        assert!(self.ok, "ADD failed: {} {}", self.stdout, self.stderr);
        self.json()["ips"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["address"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The CNI error code of a failure.
    pub fn err_code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {}", self.stdout);
        self.json()["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {}", self.stdout))
    }
    pub fn err_msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// One invocation: binary, verb, attachment, CNI_ARGS and the config.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub bin: &'a str,
    pub cmd: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(bin: &'a str, cmd: &'a str, id: &'a str) -> Self {
        Call {
            bin,
            cmd,
            id,
            ifname: "eth0",
            args: "",
        }
    }

    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }

    pub fn args(mut self, args: &'a str) -> Self {
        self.args = args;
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(self.bin);
        c.env_clear()
            .env("CNI_COMMAND", self.cmd)
            .env("CNI_CONTAINERID", self.id)
            .env("CNI_NETNS", "/proc/1/ns/net")
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_ARGS", self.args)
            .env("CNI_PATH", "/usr/lib/cni")
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts the plugin and writes `conf` to its stdin.
    pub fn spawn(&self, conf: &Value) -> Child {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin));
        let data = conf.to_string();
        let mut stdin = child.stdin.take().unwrap();
        // A killed child may not read it all.
        let _ = stdin.write_all(data.as_bytes());
        drop(stdin);
        child
    }

    pub fn run(&self, conf: &Value) -> Out {
        let out = self.spawn(conf).wait_with_output().unwrap();
        Out {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "nuage-ipam-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network config with a host-local `ipam` section (dataDir filled in).
pub fn host_local_conf(version: &str, data_dir: &str, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(data_dir);
    json!({"cniVersion": version, "name": "net1", "type": "bridge", "ipam": ipam})
}

/// The leases of a store: address text -> file content.
pub fn leases(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.parse::<std::net::IpAddr>().is_ok() {
            out.insert(name, std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

/// Every file under `dir`, recursively, with its content.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.insert(p.clone(), Vec::new());
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
        }
    }
    out
}

pub fn have_reference() -> bool {
    Path::new(REF_HOST_LOCAL).exists() && Path::new(REF_STATIC).exists()
}
