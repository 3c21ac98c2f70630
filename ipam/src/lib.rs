//! nuage-ipam: address management for every nuage plugin, in-process, and
//! the `host-local` and `static` IPAM executables.
//!
//! Plugins call [`add`], [`del`], [`check`], [`gc`] and [`status`] with their
//! own [`CmdArgs`] (whose `conf` is the full network config). They dispatch
//! on `ipam.type`: `host-local` and `static` run in this process (no exec on
//! the hot path); any other type is executed from `CNI_PATH` through
//! [`nuage_core::delegate`], as the spec's delegation section says.
//!
//! Modules, by concern:
//! - [`config`]: parsing and validating the `ipam` sections;
//! - [`range`]: ranges, range sets and the allocation order;
//! - [`store`]: the reference-compatible lease directory and GC;
//! - [`index`]: nuage's O(1) index of that directory;
//! - [`allocator`]: one address from one range set;
//! - [`host_local`], [`static_ipam`]: the two plugins.
//!
//! IPAM-specific error codes: 110 ([`Code::RangeExhausted`]) and 111
//! ([`Code::AddressUnavailable`]).

pub mod allocator;
pub mod config;
pub mod host_local;
pub mod index;
pub mod range;
pub mod static_ipam;
pub mod store;

pub use host_local::HostLocal;
pub use static_ipam::Static;

use nuage_core::skel::{CmdArgs, Command};
use nuage_core::spec::{CniResult, KeyChecks};
use nuage_core::{delegate, Code, Error, Result};

/// The `ipam.type` to run, or a configuration error.
fn ipam_type(a: &CmdArgs) -> Result<&str> {
    let ipam = a
        .conf
        .ipam
        .as_ref()
        .ok_or_else(|| Error::config("IPAM config missing 'ipam' key"))?;
    match ipam.get("type") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => Ok(t),
        _ => Err(Error::config("ipam.type is required")
            .with_details("name the IPAM plugin, e.g. \"host-local\" or \"static\"")),
    }
}

/// Whether `ipam.type` runs in this process (`host-local`, `static`) rather
/// than as a plugin from `CNI_PATH`. `false` for a broken config (the
/// verbs report the error).
pub fn in_process(a: &CmdArgs) -> bool {
    matches!(ipam_type(a), Ok("host-local" | "static"))
}

/// Checks the `ipam` section of an in-process IPAM as ADD would, without
/// touching the store: for plugins whose ADD is costly to undo (host-device
/// moves a device). A delegated IPAM is checked by its own ADD.
pub fn validate(a: &CmdArgs) -> Result<()> {
    match ipam_type(a)? {
        "host-local" => config::HostLocalConf::parse(&a.conf, &a.args).map(drop),
        "static" => config::StaticConf::parse(&a.conf, &a.args).map(drop),
        _ => Ok(()),
    }
}

/// IPAM ADD: the abbreviated IPAM result (no interfaces, no interface index).
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    match ipam_type(a)? {
        "host-local" => host_local::add(a),
        "static" => static_ipam::add(a),
        other => delegate::add(other, a).map(CniResult::into_ipam),
    }
}

/// IPAM DEL: releases what ADD allocated; succeeds when there is nothing.
pub fn del(a: &CmdArgs) -> Result<()> {
    match ipam_type(a)? {
        "host-local" => host_local::del(a),
        "static" => static_ipam::del(a),
        other => delegate::run(other, Command::Del, a),
    }
}

/// IPAM CHECK.
pub fn check(a: &CmdArgs) -> Result<()> {
    match ipam_type(a)? {
        "host-local" => host_local::check(a),
        "static" => static_ipam::check(a),
        other => delegate::run(other, Command::Check, a),
    }
}

/// IPAM GC (spec 1.1.0): releases what belongs to attachments not listed in
/// `cni.dev/valid-attachments`.
pub fn gc(a: &CmdArgs) -> Result<()> {
    match ipam_type(a)? {
        "host-local" => host_local::gc(a),
        "static" => Ok(()),
        other => delegate::run(other, Command::Gc, a),
    }
}

/// IPAM STATUS (spec 1.1.0): code 50 with the reason when ADD cannot work.
/// Any failure that is not already 50 or 51 (a missing or misconfigured
/// IPAM) is reported as 50: the plugin cannot serve ADD.
pub fn status(a: &CmdArgs) -> Result<()> {
    let r = ipam_type(a).and_then(|t| match t {
        "host-local" => host_local::status(a),
        "static" => static_ipam::status(a),
        other => delegate::run(other, Command::Status, a),
    });
    r.map_err(|e| match e.code {
        Code::NotAvailable | Code::LimitedConnectivity => e,
        _ => Error {
            code: Code::NotAvailable,
            ..e
        },
    })
}

/// The shared keys a verb of an IPAM plugin refuses with a wrong type, as
/// the reference's decodes them: its config struct declares `ipam`,
/// `runtimeConfig` and `args`, not `dns` or `capabilities`. DEL and GC of
/// a plugin that `releases` leases fail on an `ipam` they cannot read (it
/// would leak); the others have nothing to release and read nothing.
pub(crate) fn key_checks(cmd: Command, releases: bool) -> KeyChecks {
    match cmd {
        Command::Add | Command::Check | Command::Status => KeyChecks {
            ipam: true,
            dns_capabilities: false,
            runtime: true,
        },
        Command::Del | Command::Gc if releases => KeyChecks::IPAM,
        _ => KeyChecks::NONE,
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "nuage-ipam-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
