//! Test harness for nuage's plugin crates (use it as a dev-dependency).
//!
//! House rules it enforces or makes easy:
//! - a test never touches the machine's own network namespace: it builds a
//!   [`Host`] (a throw-away "host" namespace) plus container [`Netns`]es, and
//!   runs plugins *inside* the host namespace with [`Host::run_plugin`];
//! - everything a test creates is removed on drop, also when the test panics;
//!   namespaces left by a killed run are swept at first use ([`sweep_stale`]);
//! - tests need root and say so loudly ([`require_root`]); a missing kernel
//!   feature is detected and reported ([`require_link_kind`]), never skipped.
//!
//! ```rust,ignore
//! use netns_tests::*;
//! require_root();
//! let host = Host::new("loopback-add");
//! let ctr = host.container("ctr");
//! let out = host.run_plugin(
//!     &bin("loopback"),
//!     &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", ctr.path_str()),
//!       ("CNI_IFNAME", "lo"), ("CNI_PATH", "/nonexistent")],
//!     r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#,
//! );
//! out.assert_success();
//! assert!(host.link(&ctr, "lo").unwrap()["flags"].to_string().contains("UP"));
//! ```
#![allow(unsafe_code)] // pre_exec/setns/mount/flock in a test-only crate

pub mod cni;
mod exec;
mod host;
mod json;
mod kernel;
mod netns;
mod paths;
mod tempdir;

pub use exec::{Background, PluginOutput, DEFAULT_PATH};
pub use host::Host;
pub use json::{assert_json_eq, assert_json_subset, json_diff, json_eq, json_subset_diff};
pub use kernel::{link_kind_supported, require_link_kind};
pub use netns::{sweep_stale, Family, Netns, NETNS_DIR};
pub use paths::{bin, cnitool, reference, require_reference, shared_dir, REFERENCE_DIR};
pub use tempdir::TestDir;

/// Panics unless the test runs as root. These tests create namespaces and
/// links; CI runs them as root, and they must never pass silently without it.
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (euid is {euid}): it creates network namespaces; \
         run the tests as root (CI does) — they must not silently pass"
    );
}

/// Serializes harness-internal critical sections (namespace creation).
pub(crate) fn global_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `tag` safe for a namespace or file name: `[A-Za-z0-9_.-]`, at most 40 chars.
pub(crate) fn sanitize_tag(tag: &str) -> String {
    let s: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "x".to_owned()
    } else {
        s
    }
}

/// A process-unique, increasing counter for resource names.
pub(crate) fn next_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `nuage-t<pid>-<counter>-<tag>`: the name of every namespace and temp dir the
/// harness makes (the pid lets [`sweep_stale`] find leftovers of dead runs).
pub(crate) fn unique_name(tag: &str) -> String {
    format!(
        "{}{}-{}-{}",
        netns::PREFIX,
        std::process::id(),
        next_id(),
        sanitize_tag(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_sanitized() {
        assert_eq!(sanitize_tag("a b/c:d"), "a_b_c_d");
        assert_eq!(sanitize_tag(""), "x");
        assert_eq!(sanitize_tag(&"y".repeat(100)).len(), 40);
    }

    #[test]
    fn unique_names_have_pid_and_counter() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        let prefix = format!("nuage-t{}-", std::process::id());
        assert!(a.starts_with(&prefix), "{a}");
        assert_eq!(netns::pid_of_name(&a), Some(std::process::id() as i32));
    }
}
