//! Masquerade (`ipMasq` of bridge and ptp), O(1) per container, in table
//! `inet nuage`:
//!
//! ```text
//! table inet nuage {
//!     map masq4 {
//!         type ipv4_addr : verdict
//!         elements = { 10.88.0.2 comment "<network>/<containerID>/<ifname>" : jump masq-<12 hex>-<8 hex> }
//!     }
//!     map masq6 { type ipv6_addr : verdict; ... }
//!     chain masq-<12 hex>-<8 hex> {             # one per network (and subnet set)
//!         ip daddr 224.0.0.0/4 return
//!         ip6 daddr ff00::/8 return
//!         ip daddr 10.88.0.0/24 return          # the subnets given to add()
//!         masquerade comment "network: <network>"
//!     }
//!     chain postrouting {                       # fixed content
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr vmap @masq4
//!         ip6 saddr vmap @masq6
//!     }
//! }
//! ```
//!
//! A network chain's name is `masq-<a>-<b>`, `<a>` the first 12 hex digits
//! of sha256(network name), `<b>` the first 8 of sha256(its sorted subnets):
//! network names may hold `-` and `.`, and containers of one network may sit
//! in different subnets (IPAM range sets), each keeping the reference
//! semantics "masquerade what leaves *its* subnet". The content of a chain
//! is a function of its name, so a chain that exists is right, and rewriting
//! it (flush, then the same rules) is idempotent.
//!
//! [`add`] first tries a transaction that only creates the map elements,
//! sent over NETLINK_NETFILTER: measured here (nft 1.0.6, kernel 6.18), a
//! transaction that re-adds an existing chain, flushes a non-empty one or
//! deletes an element takes ~15 ms (the kernel waits; the CPU time is ~1
//! ms), one that only creates elements ~3 ms through nft, with or without
//! 20k rules in the host's ruleset, and ~0.1-0.2 ms (up to 1000 elements)
//! without nft. Only when that fails (a network's first container, a
//! repeated ADD, a stale element, our table flushed by someone) does it run
//! the full transaction that ensures the table, maps and both chains,
//! flushing and rewriting the chains. So a chain of ours flushed or deleted
//! by someone else, while the table stays, is rewritten by the next full
//! transaction (e.g. a repeated ADD), and [`check`] reports it meanwhile.
//!
//! Kernel quirk (6.18): adding an element that jumps makes the commit
//! re-validate every element of the map, each a walk of its chain, so the
//! element batch grows from ~0.05 ms (5 elements) to 0.15-0.25 ms (1000).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nftables::expr::Expression;
use nftables::schema::NfListObject;
use nftables::stmt::{Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::{json, Value};

use super::nfnl::{self, Batch, Key};
use super::{
    attachment_comment, chain, chains, check_chain, clip_comment, commented, elements, eq,
    list_table, payload, prefix, rule, sha256_hex, table, Attachment, RuleSpec, Tx, TABLE,
};
use crate::{Error, Result};

/// The base chain (type nat, hook postrouting, priority srcnat).
pub const BASE_CHAIN: &str = "postrouting";
/// The verdict map of IPv4 container addresses.
pub const MAP4: &str = "masq4";
/// The verdict map of IPv6 container addresses.
pub const MAP6: &str = "masq6";

/// Priority `srcnat` (the JSON schema wants the number).
const PRIO_SRCNAT: i32 = 100;
const FAMILY: NfFamily = NfFamily::INet;

/// One element of `masq4`/`masq6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqEntry {
    pub ip: IpAddr,
    /// The chain it jumps to (`masq-<net>-<subnets>`), if it is a jump.
    pub chain: Option<String>,
    /// Its comment ([`attachment_comment`]).
    pub comment: Option<String>,
}

impl MasqEntry {
    /// Whether this element jumps to one of `network`'s chains.
    pub fn is_of(&self, network: &str) -> bool {
        self.chain
            .as_deref()
            .is_some_and(|c| c.starts_with(&chain_prefix(network)))
    }
}

/// The chain that masquerades for `network` containers in `subnets`:
/// `masq-<12 hex of sha256(network)>-<8 hex of sha256(sorted subnets)>`.
pub fn chain_name(network: &str, subnets: &[IpNetwork]) -> String {
    let subnets: Vec<String> = canonical(subnets).iter().map(|n| n.to_string()).collect();
    format!(
        "{}{}",
        chain_prefix(network),
        &sha256_hex(&subnets.join(","))[..8]
    )
}

fn chain_prefix(network: &str) -> String {
    format!("masq-{}-", &sha256_hex(network)[..12])
}

/// Subnets with their host bits cleared, sorted, without duplicates.
fn canonical(subnets: &[IpNetwork]) -> Vec<IpNetwork> {
    let mut v: Vec<IpNetwork> = subnets
        .iter()
        .map(|n| IpNetwork::new(n.network(), n.prefix()).expect("same prefix is valid"))
        .collect();
    v.sort_by_key(|n| (n.is_ipv6(), n.network(), n.prefix()));
    v.dedup();
    v
}

fn map_of(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => MAP4,
        IpAddr::V6(_) => MAP6,
    }
}

fn jump(chain: &str) -> Value {
    json!({"jump": {"target": chain}})
}

fn list_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds to `tx` the table, both maps, `network`'s chain (flushed and
/// rewritten) and the base chain (flushed and rewritten); returns the
/// network chain's name.
fn ensure(tx: &mut Tx, network: &str, subnets: &[IpNetwork]) -> String {
    let name = chain_name(network, subnets);
    tx.add(table(FAMILY));
    for (map, ty) in [(MAP4, "ipv4_addr"), (MAP6, "ipv6_addr")] {
        // The crate's Map has no `verdict` data type.
        tx.raw(
            "add",
            "map",
            json!({"family": "inet", "table": TABLE, "name": map, "type": ty, "map": "verdict"}),
        );
    }
    tx.add(NfListObject::Chain(chain(FAMILY, &name)));
    tx.flush_chain(FAMILY, &name);
    for (expr, comment) in network_rules(network, subnets) {
        tx.add(rule(FAMILY, &name, expr, comment));
    }
    tx.add(NfListObject::Chain(nftables::schema::Chain {
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(PRIO_SRCNAT),
        policy: Some(NfChainPolicy::Accept),
        ..chain(FAMILY, BASE_CHAIN)
    }));
    tx.flush_chain(FAMILY, BASE_CHAIN);
    for (expr, comment) in base_rules() {
        tx.add(rule(FAMILY, BASE_CHAIN, expr, comment));
    }
    name
}

/// The rules of a network chain: return for multicast and `subnets`, then
/// masquerade.
fn network_rules(network: &str, subnets: &[IpNetwork]) -> Vec<RuleSpec> {
    let ret = |proto: &'static str, addr: String, len: u8| {
        let m = eq(payload(proto, "daddr"), prefix(addr, len));
        (vec![m, Statement::Return(None)], None)
    };
    let mut rules = vec![
        ret("ip", "224.0.0.0".into(), 4),
        ret("ip6", "ff00::".into(), 8),
    ];
    for net in canonical(subnets) {
        let proto = if net.is_ipv4() { "ip" } else { "ip6" };
        rules.push(ret(proto, net.network().to_string(), net.prefix()));
    }
    rules.push((
        vec![Statement::Masquerade(None)],
        Some(clip_comment(&format!("network: {network}"))),
    ));
    rules
}

/// The rules of the base chain: `ip saddr vmap @masq4`, `ip6 saddr vmap @masq6`.
fn base_rules() -> Vec<RuleSpec> {
    [("ip", MAP4), ("ip6", MAP6)]
        .into_iter()
        .map(|(proto, map)| {
            let vmap = Statement::VerdictMap(VerdictMap {
                key: payload(proto, "saddr"),
                data: Expression::String(format!("@{map}").into()),
            });
            (vec![vmap], None)
        })
        .collect()
}

/// Masquerades what `ips` send outside `subnets` (and outside multicast),
/// for the attachment `att` of `network`: one map element per IP, jumping
/// to the chain of (`network`, `subnets`), with `att`'s comment. `subnets`
/// are the container's subnets (host bits are ignored). Idempotent:
/// repeating it leaves one element per IP and the same rules; an element
/// left for the same IP by another attachment or network is replaced.
/// Empty `ips`: nothing to do, nft is not run.
///
/// Fast path, when the table and chain exist and the IPs are new (every ADD
/// but a network's first): one NETLINK_NETFILTER batch (no nft process) of
/// ```text
/// create element inet nuage masq4 { 10.88.0.2 comment "<network>/<containerID>/<ifname>" : jump masq-<net>-<subnets> }
/// ```
/// Otherwise (first ADD, repeated ADD, stale element, table flushed by
/// someone) one transaction that ensures and rewrites everything:
/// ```text
/// add table inet nuage
/// add map inet nuage masq4 { type ipv4_addr : verdict; }
/// add map inet nuage masq6 { type ipv6_addr : verdict; }
/// add chain inet nuage masq-<net>-<subnets>
/// flush chain inet nuage masq-<net>-<subnets>
/// add rule inet nuage masq-<net>-<subnets> ip daddr 224.0.0.0/4 return
/// add rule inet nuage masq-<net>-<subnets> ip6 daddr ff00::/8 return
/// add rule inet nuage masq-<net>-<subnets> ip daddr 10.88.0.0/24 return
/// add rule inet nuage masq-<net>-<subnets> masquerade comment "network: <network>"
/// add chain inet nuage postrouting { type nat hook postrouting priority srcnat; policy accept; }
/// flush chain inet nuage postrouting
/// add rule inet nuage postrouting ip saddr vmap @masq4
/// add rule inet nuage postrouting ip6 saddr vmap @masq6
/// add element inet nuage masq4 { 10.88.0.2 : jump masq-<net>-<subnets> }
/// delete element inet nuage masq4 { 10.88.0.2 }
/// add element inet nuage masq4 { 10.88.0.2 comment "..." : jump masq-<net>-<subnets> }
/// ```
/// (`add; delete; add` refreshes the comment of an element that exists:
/// `add` alone would keep the old one.) If that fails with EEXIST (an
/// element of one of the IPs jumps to another chain), the existing elements
/// are listed, and deleted before the adds in a third transaction.
pub fn add(network: &str, subnets: &[IpNetwork], ips: &[IpAddr], att: &Attachment) -> Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let _writing = super::writers_lock(false)?;
    // Fast path: no chain is re-added and nothing deleted, which makes the
    // kernel's commit several times cheaper, and no nft runs (see the module
    // docs). Any
    // failure (ENOENT: no table or chain yet; EEXIST: the element exists)
    // falls through to the full transaction, whose error is the one reported.
    let mut batch = Batch::new();
    push_create(&mut batch, network, subnets, ips, att);
    if batch.commit(&add_op(network, ips, att)).is_ok() {
        return Ok(());
    }
    add_full(network, subnets, ips, att)
}

fn add_op(network: &str, ips: &[IpAddr], att: &Attachment) -> String {
    format!(
        "add masquerade for {} ({}) to maps inet {TABLE} {MAP4}/{MAP6}",
        list_ips(ips),
        attachment_comment(network, att)
    )
}

/// The fast path of [`add`]: `create element` only, into `batch`.
///
/// Equivalent to `create element inet nuage masq4 { <ip> comment "<comment>" : jump <chain> }`
/// (`masq6` for IPv6) for each of `ips`.
pub(crate) fn push_create(
    batch: &mut Batch,
    network: &str,
    subnets: &[IpNetwork],
    ips: &[IpAddr],
    att: &Attachment,
) {
    let comment = attachment_comment(network, att);
    let chain = chain_name(network, subnets);
    for ip in ips {
        batch.create(FAMILY, map_of(ip), Key::ip(ip), Some(&chain), &comment);
    }
}

/// The full path of [`add`]: tables, maps and chains ensured, the elements
/// replaced.
pub(crate) fn add_full(
    network: &str,
    subnets: &[IpNetwork],
    ips: &[IpAddr],
    att: &Attachment,
) -> Result<()> {
    let comment = attachment_comment(network, att);
    let chain = chain_name(network, subnets);
    let op = add_op(network, ips, att);
    let element = |ip: &IpAddr| json!([commented(json!(ip.to_string()), &comment), jump(&chain)]);

    let mut tx = Tx::new();
    ensure(&mut tx, network, subnets);
    for ip in ips {
        let (map, key) = (map_of(ip), json!(ip.to_string()));
        tx.element("add", FAMILY, map, json!([key.clone(), jump(&chain)]));
        tx.element("delete", FAMILY, map, key);
        tx.element("add", FAMILY, map, element(ip));
    }
    match tx.apply(&op) {
        // An element of one of these IPs jumps elsewhere (a stale one of
        // another network or subnet): `add` of a key with another value is
        // EEXIST, whatever the flags. Delete what exists, then add.
        Err(e) if e.is_exists() => {
            let existing: HashSet<IpAddr> = list(None)?.into_iter().map(|m| m.ip).collect();
            let mut tx = Tx::new();
            ensure(&mut tx, network, subnets);
            for ip in ips {
                if existing.contains(ip) {
                    tx.element("delete", FAMILY, map_of(ip), json!(ip.to_string()));
                }
                tx.element("add", FAMILY, map_of(ip), element(ip));
            }
            tx.apply(&op)
        }
        r => r,
    }
}

/// Stops masquerading for `ips`: deletes their map elements. Idempotent: a
/// missing table, map or element is success. `network` only names the
/// operation in errors.
///
/// Call it before the addresses go back to IPAM: once released, an address
/// may be handed to a new container whose element this would delete.
///
/// Equivalent to `nft destroy element inet nuage masq4 { 10.88.0.2 }` (and
/// `masq6` for IPv6), all in one transaction, sent over NETLINK_NETFILTER
/// (no nft process); a missing table or map is retried map by map, and a
/// kernel without `destroy` (before 6.3) gets `delete element`, see
/// `nfnl::delete`.
pub fn del(network: &str, ips: &[IpAddr]) -> Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let op = format!(
        "delete masquerade of {} (network {network:?}) from maps inet {TABLE} {MAP4}/{MAP6}",
        list_ips(ips)
    );
    let _writing = super::writers_lock(false)?;
    nfnl::delete(&dels(ips), &op)
}

/// The map elements of `ips`, for a deletion.
pub(crate) fn dels(ips: &[IpAddr]) -> Vec<nfnl::Del> {
    ips.iter()
        .map(|ip| (FAMILY, map_of(ip), Key::ip(ip)))
        .collect()
}

/// The addresses of a container interface that ADD may have given a
/// masquerade element: all but the kernel's own link-scope ones (its IPv6
/// link-local address), which IPAM did not hand out.
pub fn masqueradable(addrs: &[crate::netlink::Addr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .filter(|a| !(a.scope == crate::netlink::RT_SCOPE_LINK && a.address.is_ipv6()))
        .map(|a| a.address.ip())
        .collect()
}

/// The DEL of `att`'s masquerade: its elements among `ips` (what the DEL
/// knows: `prevResult`, the container's addresses), each deleted only if
/// its comment names `att` (see [`super::del`]); with no address known,
/// those whose comment names `att` in a listing ([`del_attachment`]).
///
/// Equivalent to `nft get element` then `nft destroy element` of each of
/// `ips`, or [`del_attachment`]
pub fn del_for(network: &str, att: &Attachment, ips: &[IpAddr]) -> Result<()> {
    let mut ips = ips.to_vec();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return del_attachment(network, att);
    }
    super::del_locked(network, att, &ips, None).map(drop)
}

/// Stops masquerading for whatever `att` has on `network`, found by the
/// element comments: the DEL path when neither the container's addresses
/// nor a `prevResult` are known (the netns is gone and the runtime lost its
/// cache). Lists the table, so it costs more than [`del`].
///
/// The writers' lock is held shared from the listing to the deletion, so
/// no GC runs in between; and each element goes only if its comment still
/// names `att` ([`super::del`]): a concurrent DEL of `att` may free the
/// address meanwhile, and an ADD take it and add its own element.
///
/// Equivalent to `nft -j list table inet nuage`, then `nft get element`
/// and `nft destroy element` of each address whose comment names `att`.
pub fn del_attachment(network: &str, att: &Attachment) -> Result<()> {
    if !super::tables_possible() {
        return Ok(());
    }
    let _writing = super::writers_lock(false)?;
    let comment = attachment_comment(network, att);
    let ips: Vec<IpAddr> = list(Some(network))?
        .into_iter()
        .filter(|m| m.comment.as_deref() == Some(comment.as_str()))
        .map(|m| m.ip)
        .collect();
    if ips.is_empty() {
        return Ok(());
    }
    super::del(network, att, &ips, None).map(drop)
}

/// Checks that each of `ips` is in its map with `att`'s comment and a jump
/// to the chain of (`network`, `subnets`), and that this chain and the base
/// chain hold exactly the rules [`add`] writes. The error names everything
/// missing or different.
///
/// Equivalent to `nft -j list table inet nuage` (nft 1.0.6 reads every
/// element of our maps for any listing, even `get element`, so one listing
/// is the cheapest check).
pub fn check(network: &str, subnets: &[IpNetwork], ips: &[IpAddr], att: &Attachment) -> Result<()> {
    let comment = attachment_comment(network, att);
    let chain = chain_name(network, subnets);
    let op = format!("check masquerade for {} ({comment})", list_ips(ips));
    let Some(objs) = list_table("inet", &op)? else {
        return Err(Error::internal(format!(
            "nft: {op}: table inet {TABLE} does not exist"
        )));
    };
    let mut problems = Vec::new();
    problems.extend(check_chain(&objs, "inet", BASE_CHAIN, &base_rules()));
    problems.extend(check_chain(
        &objs,
        "inet",
        &chain,
        &network_rules(network, subnets),
    ));
    let listed = entries(&objs);
    for ip in ips {
        let map = map_of(ip);
        let Some(m) = listed.iter().find(|m| m.ip == *ip) else {
            problems.push(format!("{ip} is not in map inet {TABLE} {map}"));
            continue;
        };
        if m.chain.as_deref() != Some(chain.as_str()) {
            let found = m.chain.as_deref().unwrap_or("something else");
            problems.push(format!(
                "{ip} in map inet {TABLE} {map} jumps to {found}, not {chain}"
            ));
        }
        if m.comment.as_deref() != Some(comment.as_str()) {
            let found = m.comment.as_deref().unwrap_or("none");
            problems.push(format!(
                "{ip} in map inet {TABLE} {map} belongs to attachment {found:?}, not {comment:?}"
            ));
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

/// The elements of both maps (of `network` only, when given), from
/// `nft -j list table inet nuage`. No table: empty.
pub fn list(network: Option<&str>) -> Result<Vec<MasqEntry>> {
    let Some(objs) = list_table("inet", &format!("list table inet {TABLE}"))? else {
        return Ok(Vec::new());
    };
    Ok(entries(&objs)
        .into_iter()
        .filter(|m| network.is_none_or(|n| m.is_of(n)))
        .collect())
}

fn entries(objs: &[Value]) -> Vec<MasqEntry> {
    let mut out = Vec::new();
    for map in [MAP4, MAP6] {
        for e in elements(objs, "map", map) {
            let Some(ip) = e.key.as_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let chain = e
                .value
                .and_then(|v| v.get("jump").or_else(|| v.get("goto")))
                .and_then(|j| j.get("target"))
                .and_then(Value::as_str)
                .map(str::to_string);
            out.push(MasqEntry {
                ip,
                chain,
                comment: e.comment.map(str::to_string),
            });
        }
    }
    out
}

/// Garbage collection for `network`: deletes its map elements whose
/// attachment is not in `valid`, and its chains no element jumps to any
/// more, in one transaction. Elements of other networks are left alone.
/// A concurrent ADD or DEL (EBUSY, ENOENT) makes it list and try again.
///
/// Equivalent to `nft -j list table inet nuage`, then `nft -f -` with:
/// ```text
/// delete element inet nuage masq4 { 10.88.0.9 }
/// flush chain inet nuage masq-<net>-<subnets>
/// delete chain inet nuage masq-<net>-<subnets>
/// ```
pub fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    if !super::tables_possible() {
        return Ok(());
    }
    let valid: HashSet<String> = valid
        .iter()
        .map(|a| attachment_comment(network, a))
        .collect();
    let prefix = chain_prefix(network);
    let op = format!("garbage-collect masquerade of network {network:?} in table inet {TABLE}");
    let _alone = super::writers_lock(true)?;
    let mut attempt = 0;
    loop {
        let Some(objs) = list_table("inet", &op)? else {
            return Ok(());
        };
        let mut tx = Tx::new();
        let mut kept_chains = HashSet::new();
        for m in entries(&objs).into_iter().filter(|m| m.is_of(network)) {
            if m.comment.as_ref().is_some_and(|c| valid.contains(c)) {
                kept_chains.extend(m.chain);
            } else {
                tx.element("delete", FAMILY, map_of(&m.ip), json!(m.ip.to_string()));
            }
        }
        for c in chains(&objs) {
            if c.starts_with(&prefix) && !kept_chains.contains(c) {
                // Rules go with the chain, but flushing first does not depend
                // on the kernel's NLM_F_NONREC handling.
                tx.flush_chain(FAMILY, c);
                tx.delete(NfListObject::Chain(chain(FAMILY, c)));
            }
        }
        match tx.apply(&op) {
            Err(e) if attempt < 2 && matches!(e.errno, Some(libc::ENOENT | libc::EBUSY)) => {
                attempt += 1
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_stable_and_canonical() {
        let a: Vec<IpNetwork> = vec![
            "10.88.0.5/24".parse().unwrap(),
            "fd00::1/64".parse().unwrap(),
        ];
        let b: Vec<IpNetwork> = vec![
            "fd00::/64".parse().unwrap(),
            "10.88.0.0/24".parse().unwrap(),
        ];
        assert_eq!(chain_name("my-net.1", &a), chain_name("my-net.1", &b));
        assert_ne!(chain_name("my-net.1", &a), chain_name("my-net.2", &a));
        assert_ne!(chain_name("my-net.1", &a), chain_name("my-net.1", &a[..1]));
        let n = chain_name("my-net.1", &a);
        assert!(n.starts_with("masq-") && n.len() == 5 + 12 + 1 + 8, "{n}");
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
