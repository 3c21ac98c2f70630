//! Detecting kernel link kinds, so a test that needs a missing one says so.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::netns::Netns;

/// The `ip link add` arguments that create a link of `kind` next to the veth
/// parent `p0`.
fn probe_args(kind: &str) -> Vec<&str> {
    match kind {
        "veth" => vec!["probe0", "type", "veth", "peer", "name", "probe1"],
        "macvlan" | "macvtap" => vec!["probe0", "link", "p0", "type", kind, "mode", "bridge"],
        "ipvlan" => vec!["probe0", "link", "p0", "type", "ipvlan", "mode", "l2"],
        "vlan" => vec!["probe0", "link", "p0", "type", "vlan", "id", "10"],
        "vrf" => vec!["probe0", "type", "vrf", "table", "10"],
        "vxlan" => vec!["probe0", "type", "vxlan", "id", "42", "dstport", "4789"],
        "geneve" => vec![
            "probe0",
            "type",
            "geneve",
            "id",
            "42",
            "remote",
            "192.0.2.1",
        ],
        _ => vec!["probe0", "type", kind],
    }
}

fn probe(kind: &str) -> Result<(), String> {
    static CACHE: Mutex<Option<HashMap<String, Result<(), String>>>> = Mutex::new(None);
    if let Some(r) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(kind)
    {
        return r.clone();
    }
    let ns = Netns::new("probe");
    ns.ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    let mut args = vec!["link", "add"];
    args.extend(probe_args(kind));
    let out = ns.exec("ip", &args);
    let r = if out.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            out.stderr.trim()
        ))
    };
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(kind.to_owned(), r.clone());
    r
}

/// Whether the kernel can create links of `kind` (`bridge`, `macvlan`,
/// `ipvlan`, `vlan`, `vxlan`, `vrf`, `dummy`, `geneve`, …). Probed once per
/// process in a scratch namespace.
pub fn link_kind_supported(kind: &str) -> bool {
    probe(kind).is_ok()
}

/// Panics, saying which kernel feature is missing, unless links of `kind` can
/// be created. A test needing a missing feature fails loudly; it never passes.
#[track_caller]
pub fn require_link_kind(kind: &str) {
    if let Err(e) = probe(kind) {
        panic!("this test needs the kernel link kind `{kind}`, which this kernel lacks: {e}");
    }
}
