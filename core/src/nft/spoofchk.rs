//! MAC spoof check (bridge `macspoofchk`), O(1) per container, in table
//! `bridge nuage`:
//!
//! ```text
//! table bridge nuage {
//!     set spoof_ports {
//!         type ifname
//!         elements = { "veth1" comment "<network>/<containerID>/<ifname>" }
//!     }
//!     set spoof_allowed {
//!         type ifname . ether_addr
//!         elements = { "veth1" . 02:00:00:00:00:01 comment "<network>/<containerID>/<ifname>" }
//!     }
//!     chain spoofchk {                          # fixed content
//!         iifname . ether saddr @spoof_allowed return
//!         drop
//!     }
//!     chain prerouting {                        # fixed content
//!         type filter hook prerouting priority -300; policy accept;
//!         iifname @spoof_ports jump spoofchk
//!     }
//! }
//! ```
//!
//! Frames entering the bridge from a checked port pass only with the MAC
//! registered for that port; other ports are not looked at. (nft prints
//! priority -300 of the bridge family as `dstnat`.)

use std::collections::HashSet;

use nftables::expr::{Expression, MetaKey, NamedExpression};
use nftables::schema::{NfListObject, Set, SetType, SetTypeValue};
use nftables::stmt::{JumpTarget, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::{json, Value};

use super::nfnl::{self, Batch, Key};
use super::{
    attachment_comment, chain, check_chain, comment_is_of, commented, elements, eq, is_enoent,
    list_table, mac_string, meta, parse_mac, payload, rule, table, Attachment, RuleSpec, Tx, TABLE,
};
use crate::{Error, Result};

/// The base chain (type filter, hook prerouting, priority -300).
pub const BASE_CHAIN: &str = "prerouting";
/// The regular chain that returns for allowed (port, MAC) pairs and drops
/// the rest.
pub const CHAIN: &str = "spoofchk";
/// The set of checked ports (host-side interface names).
pub const PORTS: &str = "spoof_ports";
/// The set of allowed `ifname . ether_addr` pairs.
pub const ALLOWED: &str = "spoof_allowed";

const PRIO: i32 = -300;
const FAMILY: NfFamily = NfFamily::Bridge;
/// IFNAMSIZ - 1.
const IFNAME_MAX: usize = 15;

/// One element of `spoof_ports` (`mac` is `None`) or `spoof_allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoofEntry {
    pub host_ifname: String,
    pub mac: Option<[u8; 6]>,
    pub comment: Option<String>,
}

fn check_ifname(ifname: &str) -> Result<()> {
    if ifname.is_empty() || ifname.len() > IFNAME_MAX || ifname.contains(['/', ' ', '\0']) {
        return Err(Error::unsupported(format!(
            "nft: macspoofchk: {ifname:?} is not a valid interface name"
        )));
    }
    Ok(())
}

fn allowed_key(ifname: &str, mac: [u8; 6]) -> Value {
    json!({"concat": [ifname, mac_string(mac)]})
}

/// Adds to `tx` the table, both sets, and both chains (flushed and rewritten).
fn ensure(tx: &mut Tx) {
    tx.add(table(FAMILY));
    for (name, ty) in [
        (PORTS, SetTypeValue::Single(SetType::Ifname)),
        (
            ALLOWED,
            SetTypeValue::Concatenated(vec![SetType::Ifname, SetType::EtherAddr].into()),
        ),
    ] {
        tx.add(NfListObject::Set(Box::new(Set {
            family: FAMILY,
            table: TABLE.into(),
            name: name.into(),
            set_type: ty,
            ..Default::default()
        })));
    }

    tx.add(NfListObject::Chain(chain(FAMILY, CHAIN)));
    tx.flush_chain(FAMILY, CHAIN);
    for (expr, comment) in check_rules() {
        tx.add(rule(FAMILY, CHAIN, expr, comment));
    }
    tx.add(NfListObject::Chain(nftables::schema::Chain {
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Prerouting),
        prio: Some(PRIO),
        policy: Some(NfChainPolicy::Accept),
        ..chain(FAMILY, BASE_CHAIN)
    }));
    tx.flush_chain(FAMILY, BASE_CHAIN);
    for (expr, comment) in base_rules() {
        tx.add(rule(FAMILY, BASE_CHAIN, expr, comment));
    }
}

/// `iifname . ether saddr @spoof_allowed return`, then `drop`.
fn check_rules() -> Vec<RuleSpec> {
    let pair = Expression::Named(NamedExpression::Concat(vec![
        meta(MetaKey::Iifname),
        payload("ether", "saddr"),
    ]));
    let allowed = Expression::String(format!("@{ALLOWED}").into());
    vec![
        (vec![eq(pair, allowed), Statement::Return(None)], None),
        (vec![Statement::Drop(None)], None),
    ]
}

/// `iifname @spoof_ports jump spoofchk`.
fn base_rules() -> Vec<RuleSpec> {
    let ports = Expression::String(format!("@{PORTS}").into());
    let jump = Statement::Jump(JumpTarget {
        target: CHAIN.into(),
    });
    vec![(vec![eq(meta(MetaKey::Iifname), ports), jump], None)]
}

/// Lets frames from bridge port `host_ifname` in only with source MAC
/// `mac` (the container's): one element in each set, with `att`'s comment.
/// Idempotent.
///
/// Fast path, when the table exists and the port is new (every ADD but the
/// host's first): one NETLINK_NETFILTER batch (no nft process) of
/// ```text
/// create element bridge nuage spoof_ports { "veth1" comment "<network>/<containerID>/<ifname>" }
/// create element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 comment "..." }
/// ```
/// Otherwise one transaction that ensures and rewrites everything:
/// ```text
/// add table bridge nuage
/// add set bridge nuage spoof_ports { type ifname; }
/// add set bridge nuage spoof_allowed { type ifname . ether_addr; }
/// add chain bridge nuage spoofchk
/// flush chain bridge nuage spoofchk
/// add rule bridge nuage spoofchk iifname . ether saddr @spoof_allowed return
/// add rule bridge nuage spoofchk drop
/// add chain bridge nuage prerouting { type filter hook prerouting priority -300; policy accept; }
/// flush chain bridge nuage prerouting
/// add rule bridge nuage prerouting iifname @spoof_ports jump spoofchk
/// add element bridge nuage spoof_ports { "veth1" }
/// delete element bridge nuage spoof_ports { "veth1" }
/// add element bridge nuage spoof_ports { "veth1" comment "..." }
/// add element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 }
/// delete element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 }
/// add element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 comment "..." }
/// ```
/// (`add; delete; add` refreshes the comment of an element that already
/// exists: `add` alone would keep the old one.) A pair left for this port
/// with another MAC by a missed DEL stays allowed until [`gc`] or
/// `del(host_ifname, None)` removes it.
pub fn add(network: &str, host_ifname: &str, mac: [u8; 6], att: &Attachment) -> Result<()> {
    // Fast path (see `masq::add`): any failure falls through to the full
    // transaction, whose error is the one reported.
    let _writing = super::writers_lock(false)?;
    let mut batch = Batch::new();
    push_create(&mut batch, network, host_ifname, mac, att)?;
    if batch
        .commit(&add_op(network, host_ifname, mac, att))
        .is_ok()
    {
        return Ok(());
    }
    add_full(network, host_ifname, mac, att)
}

fn add_op(network: &str, host_ifname: &str, mac: [u8; 6], att: &Attachment) -> String {
    format!(
        "add MAC spoof check for port {host_ifname} ({}, {}) to sets bridge {TABLE} {PORTS}/{ALLOWED}",
        mac_string(mac),
        attachment_comment(network, att)
    )
}

/// The fast path of [`add`]: `create element` only, into `batch` (after
/// checking the interface name).
///
/// Equivalent to the two `create element` lines of [`add`].
pub(crate) fn push_create(
    batch: &mut Batch,
    network: &str,
    host_ifname: &str,
    mac: [u8; 6],
    att: &Attachment,
) -> Result<()> {
    check_ifname(host_ifname)?;
    let comment = attachment_comment(network, att);
    batch.create(FAMILY, PORTS, Key::ifname(host_ifname), None, &comment);
    let pair = Key::ifname_ether(host_ifname, mac);
    batch.create(FAMILY, ALLOWED, pair, None, &comment);
    Ok(())
}

/// The full path of [`add`]: table, sets and chains ensured, the elements
/// replaced.
pub(crate) fn add_full(
    network: &str,
    host_ifname: &str,
    mac: [u8; 6],
    att: &Attachment,
) -> Result<()> {
    check_ifname(host_ifname)?;
    let comment = attachment_comment(network, att);
    let op = add_op(network, host_ifname, mac, att);
    let elems = [
        (PORTS, json!(host_ifname)),
        (ALLOWED, allowed_key(host_ifname, mac)),
    ];

    let mut tx = Tx::new();
    ensure(&mut tx);
    for (set, key) in elems {
        tx.element("add", FAMILY, set, key.clone());
        tx.element("delete", FAMILY, set, key.clone());
        tx.element("add", FAMILY, set, commented(key, &comment));
    }
    tx.apply(&op)
}

/// Stops checking port `host_ifname`: deletes its `spoof_ports` element and
/// its allowed pair (every pair of this port when `mac` is `None`, which
/// lists the set with nft). Idempotent: a missing table, set or element is
/// success.
///
/// Equivalent to `nft -f -` with the lines below, sent over
/// NETLINK_NETFILTER (no nft process) in one transaction; a missing table
/// or set is retried set by set, and a kernel without `destroy` (before
/// 6.3) gets `delete element`, see `nfnl::delete`:
/// ```text
/// destroy element bridge nuage spoof_ports { "veth1" }
/// destroy element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 }
/// ```
pub fn del(host_ifname: &str, mac: Option<[u8; 6]>) -> Result<()> {
    check_ifname(host_ifname)?;
    let op = format!("delete MAC spoof check of port {host_ifname} from table bridge {TABLE}");
    let _writing = super::writers_lock(false)?;
    let macs: Vec<[u8; 6]> = match mac {
        Some(mac) => vec![mac],
        None => list()?
            .into_iter()
            .filter(|e| e.host_ifname == host_ifname)
            .filter_map(|e| e.mac)
            .collect(),
    };
    nfnl::delete(&dels(host_ifname, &macs)?, &op)
}

/// The set elements of port `host_ifname` with each of `macs`, for a
/// deletion.
pub(crate) fn dels(host_ifname: &str, macs: &[[u8; 6]]) -> Result<Vec<nfnl::Del>> {
    check_ifname(host_ifname)?;
    let mut dels = vec![(FAMILY, PORTS, Key::ifname(host_ifname))];
    dels.extend(
        macs.iter()
            .map(|mac| (FAMILY, ALLOWED, Key::ifname_ether(host_ifname, *mac))),
    );
    Ok(dels)
}

/// Stops checking the port of `att` on `network`: its elements, found by
/// their comments (the DEL path when the port or its MACs are not known,
/// or when the port a DEL was given turned out to be another's).
///
/// Equivalent to `nft -j list table bridge nuage`, then `destroy element`
/// of each element whose comment names `att`.
pub fn del_attachment(network: &str, att: &Attachment) -> Result<()> {
    if !super::tables_possible() {
        return Ok(());
    }
    // Shared from the listing to the deletion: no GC in between.
    let _writing = super::writers_lock(false)?;
    let comment = attachment_comment(network, att);
    let mut dels = Vec::new();
    for e in list()?
        .into_iter()
        .filter(|e| e.comment.as_deref() == Some(comment.as_str()))
    {
        dels.extend(match e.mac {
            None => vec![(FAMILY, PORTS, Key::ifname(&e.host_ifname))],
            Some(mac) => vec![(FAMILY, ALLOWED, Key::ifname_ether(&e.host_ifname, mac))],
        });
    }
    let op = format!("delete MAC spoof checks of {comment:?} from table bridge {TABLE}");
    nfnl::delete(&dels, &op)
}

/// Checks that port `host_ifname` is checked, that `mac` is its allowed MAC,
/// both with `att`'s comment, and that both chains hold exactly the rules
/// [`add`] writes. The error names everything missing or different.
///
/// Equivalent to `nft -j list table bridge nuage` (see `masq::check` for
/// why one listing).
pub fn check(network: &str, host_ifname: &str, mac: [u8; 6], att: &Attachment) -> Result<()> {
    check_ifname(host_ifname)?;
    let comment = attachment_comment(network, att);
    let m = mac_string(mac);
    let op = format!("check MAC spoof check of port {host_ifname} ({m}, {comment})");
    let Some(objs) = list_table("bridge", &op)? else {
        return Err(Error::internal(format!(
            "nft: {op}: table bridge {TABLE} does not exist"
        )));
    };
    let mut problems = Vec::new();
    problems.extend(check_chain(&objs, "bridge", BASE_CHAIN, &base_rules()));
    problems.extend(check_chain(&objs, "bridge", CHAIN, &check_rules()));
    let listed = entries(&objs);
    let port = listed
        .iter()
        .find(|e| e.mac.is_none() && e.host_ifname == host_ifname);
    let pair = listed
        .iter()
        .find(|e| e.mac == Some(mac) && e.host_ifname == host_ifname);
    for (found, set, missing) in [
        (
            port,
            PORTS,
            format!("port {host_ifname} is not in set bridge {TABLE} {PORTS}"),
        ),
        (
            pair,
            ALLOWED,
            format!("{host_ifname} . {m} is not in set bridge {TABLE} {ALLOWED}"),
        ),
    ] {
        match found {
            None => problems.push(missing),
            Some(e) if e.comment.as_deref() != Some(comment.as_str()) => {
                let c = e.comment.as_deref().unwrap_or("none");
                problems.push(format!(
                    "the element of {host_ifname} in set bridge {TABLE} {set} belongs to attachment {c:?}, not {comment:?}"
                ));
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "nft: {op}: {}",
            problems.join("; ")
        )))
    }
}

/// The elements of both sets, from `nft -j list table bridge nuage`. No
/// table: empty.
pub fn list() -> Result<Vec<SpoofEntry>> {
    match list_table("bridge", &format!("list table bridge {TABLE}"))? {
        Some(objs) => Ok(entries(&objs)),
        None => Ok(Vec::new()),
    }
}

fn entries(objs: &[Value]) -> Vec<SpoofEntry> {
    let mut out = Vec::new();
    for e in elements(objs, "set", PORTS) {
        if let Some(ifname) = e.key.as_str() {
            out.push(SpoofEntry {
                host_ifname: ifname.to_string(),
                mac: None,
                comment: e.comment.map(str::to_string),
            });
        }
    }
    for e in elements(objs, "set", ALLOWED) {
        let parts = e.key.get("concat").and_then(Value::as_array);
        let (Some(ifname), Some(mac)) = (
            parts.and_then(|p| p.first()).and_then(Value::as_str),
            parts
                .and_then(|p| p.get(1))
                .and_then(Value::as_str)
                .and_then(parse_mac),
        ) else {
            continue;
        };
        out.push(SpoofEntry {
            host_ifname: ifname.to_string(),
            mac: Some(mac),
            comment: e.comment.map(str::to_string),
        });
    }
    out
}

/// Garbage collection for `network`: deletes the elements of both sets
/// whose comment names an attachment of `network` not in `valid`, in one
/// transaction (listing again and retrying if a concurrent DEL removed one
/// first). Elements of other networks, and elements without our comment,
/// are left alone.
///
/// Equivalent to `nft -j list table bridge nuage`, then `nft -f -` with:
/// ```text
/// delete element bridge nuage spoof_ports { "veth9" }
/// delete element bridge nuage spoof_allowed { "veth9" . 02:00:00:00:00:09 }
/// ```
pub fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    if !super::tables_possible() {
        return Ok(());
    }
    let valid: HashSet<String> = valid
        .iter()
        .map(|a| attachment_comment(network, a))
        .collect();
    let op =
        format!("garbage-collect MAC spoof checks of network {network:?} in table bridge {TABLE}");
    let _alone = super::writers_lock(true)?;
    let mut attempt = 0;
    loop {
        let mut tx = Tx::new();
        for e in list()? {
            let Some(c) = &e.comment else { continue };
            if !comment_is_of(network, c) || valid.contains(c) {
                continue;
            }
            match e.mac {
                None => tx.element("delete", FAMILY, PORTS, json!(e.host_ifname)),
                Some(mac) => {
                    tx.element("delete", FAMILY, ALLOWED, allowed_key(&e.host_ifname, mac))
                }
            }
        }
        match tx.apply(&op) {
            Err(e) if attempt < 2 && is_enoent(&e) => attempt += 1,
            r => return r,
        }
    }
}
