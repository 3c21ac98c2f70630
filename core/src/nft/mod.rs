//! The netfilter side of `bridge`/`ptp` (`ipMasq`) and bridge `macspoofchk`,
//! in two tables of our own: nothing else of the host's ruleset is read or
//! touched.
//!
//! - [`masq`]: table `inet nuage`, one fixed base chain `postrouting` that
//!   looks the source address up in the verdict maps `masq4`/`masq6`; each
//!   container IP is one map element jumping to its network's chain.
//! - [`spoofchk`]: table `bridge nuage`, one fixed base chain `prerouting`
//!   and the sets `spoof_ports` (host veths) and `spoof_allowed`
//!   (host veth . MAC).
//!
//! Per container, ADD and DEL only create or delete map/set elements, so
//! their cost does not grow with the number of containers (the reference
//! plugins' per-container rules and chains do, see user-pain §2). Each
//! element carries a comment naming its attachment ([`attachment_comment`]),
//! which is how GC finds the stale ones. Every change is one transaction: it
//! applies entirely or not at all.
//!
//! Two transports:
//! - `nfnl`: the per-container element changes (the fast path of ADD,
//!   `create element`; DEL, `destroy`/`delete element`) go straight to
//!   nf_tables over NETLINK_NETFILTER, one batch per change, with the bytes
//!   nft itself would send: no process to start, and no read of the ruleset
//!   (nft reads every element of every set before each change);
//! - `nft -j -f -` for everything else: ensuring and rewriting tables, sets
//!   and chains (ADD's full path: a network's first container, repairs),
//!   CHECK, GC and the listings (`nft -j list table`).
//!
//! The JSON is built with the `nftables` crate's schema types where they fit
//! (tables, chains, rules, sets); maps of verdicts and elements with comments
//! are `serde_json::Value`s, as the crate cannot express them (it has no
//! `verdict` set type, and its `Elem` serializes absent fields as `null`).
//!
//! nft 1.0.6 / kernel quirks this module works around:
//! - nft 1.0.6 has no `destroy`; the kernel's NFT_MSG_DESTROYSETELEM (6.3)
//!   ignores a missing element but not a missing table or set (ENOENT, which
//!   aborts the whole batch): `nfnl` deletes with DESTROYSETELEM and, on
//!   ENOENT, retries set by set ignoring ENOENT; on a kernel without it
//!   (EINVAL) it sends DELSETELEM, and on ENOENT retries element by element
//!   ignoring ENOENT (as GC's nft transactions do);
//! - `add element` of an existing key is a no-op that keeps the old comment,
//!   and fails with EEXIST when the old *value* differs; so ADD's full
//!   transaction does `add; delete; add` of each element, and on EEXIST
//!   deletes the existing elements first (`create element`, the fast path,
//!   fails with EEXIST on any existing key);
//! - a transaction that re-adds an existing chain, flushes a non-empty one
//!   or deletes an element takes ~15 ms of wall time here (~1 ms of CPU),
//!   one that only creates elements ~3 ms with nft, ~0.1 ms with `nfnl`;
//!   so ADD first tries `create element` alone (see [`masq::add`]), and
//!   falls back to the full nft transaction on any error (ENOENT: no table,
//!   set or chain yet; EEXIST). The ~15 ms are not the commit (~20 us for
//!   a deletion): closing the NETLINK_NETFILTER socket after a transaction
//!   that freed something waits for an RCU grace period (the kernel flushes
//!   nf_tables' destroy work), in nft and in `nfnl` alike;
//! - `delete chain` of a chain that a map element still jumps to is EBUSY;
//! - comments are at most 128 bytes ("comment too long");
//! - any nft read (`list chain`, `get element`, even `list tables`) fetches
//!   every element of every set: ~6 us per element, so reads are O(number
//!   of containers) while writes (`create`/`delete element`) stay ~O(1);
//!   ADD and DEL never read (except `spoofchk::del` without a MAC and the
//!   `del_attachment`s), CHECK and GC read our table once, with
//!   `nft -j list table <family> nuage` (`nft -j get element` prints text
//!   anyway, and several `list` commands in one `-f` input fail or read the
//!   whole ruleset);
//! - with JSON input, nft cannot point at the failing command
//!   (`internal:0:0-0`), so error messages name the objects themselves
//!   (nfnl's name the failing message's nft command);
//! - nft's error texts come from `strerror`: it runs with `LC_ALL=C`.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ipnetwork::IpNetwork;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::NfFamily;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Code, Error, Result};

pub mod masq;
mod nfnl;
pub mod spoofchk;

/// The name of both our tables (`inet nuage`, `bridge nuage`).
pub const TABLE: &str = "nuage";

/// nft's limit on rule and element comments, in bytes.
pub const COMMENT_MAX: usize = 128;

/// One attachment of a container to a network (container id, ifname): what
/// GC keeps.
pub use crate::spec::Attachment;

/// What an ADD of `bridge` (or `ptp`) puts in our tables for one attachment.
#[derive(Debug, Clone, Copy)]
pub struct AttachmentRules<'a> {
    pub network: &'a str,
    pub att: &'a Attachment,
    /// `ipMasq`: the attachment's subnets and addresses.
    pub masq: Option<(&'a [IpNetwork], &'a [IpAddr])>,
    /// `macspoofchk`: the host port and the container's MAC.
    pub spoofchk: Option<(&'a str, [u8; 6])>,
}

/// The lock that makes a GC's list-then-delete one step for the other
/// writers of our tables: [`masq::gc`] and [`spoofchk::gc`] hold it
/// exclusive from listing a table to deleting what they found stale; the
/// element changes of ADD and DEL hold it shared. Without it, between a
/// GC's listing and its deletion, a DEL could free an address and an ADD
/// hand it out again and add its element, which the GC then deleted (an
/// element is deleted by key: its comment is not part of it), leaving a
/// valid container unmasqueraded; and a DEL's deletion made the GC's
/// fail (ENOENT). One file for the machine: GC is rare and short.
///
/// `None` where the lock file can be neither created nor opened (a
/// read-only `/run`, no permission): the change then goes ahead unlocked,
/// with a warning, as before this lock existed, rather than leave a DEL's
/// elements behind.
///
/// Equivalent to: `flock [-s] /run/nuage/nft.lock`
pub(crate) fn writers_lock(exclusive: bool) -> Result<Option<crate::flock::Lock>> {
    crate::flock::lock_or_warn(
        Path::new("/run/nuage/nft.lock"),
        exclusive,
        "the nftables change (a GC at the same time may miss or take an element)",
    )
}

/// Adds `rules`: both fast paths in one NETLINK_NETFILTER batch (one
/// kernel commit, no nft process); if that fails (first container of a
/// network, stale elements), each part on its full path (nft). Holds
/// [`writers_lock`] shared.
///
/// Equivalent to `nft -f -` with the `create element` lines of
/// [`masq::add`] and [`spoofchk::add`].
pub fn add(rules: &AttachmentRules) -> Result<()> {
    if rules.masq.is_none() && rules.spoofchk.is_none() {
        return Ok(());
    }
    let _writing = writers_lock(false)?;
    let mut batch = nfnl::Batch::new();
    if let Some((subnets, ips)) = rules.masq {
        masq::push_create(&mut batch, rules.network, subnets, ips, rules.att);
    }
    if let Some((port, mac)) = rules.spoofchk {
        spoofchk::push_create(&mut batch, rules.network, port, mac, rules.att)?;
    }
    let op = format!(
        "add netfilter rules of {}",
        attachment_comment(rules.network, rules.att)
    );
    if batch.is_empty() || batch.commit(&op).is_ok() {
        return Ok(());
    }
    if let Some((port, mac)) = rules.spoofchk {
        spoofchk::add_full(rules.network, port, mac, rules.att)?;
    }
    if let Some((subnets, ips)) = rules.masq {
        if let Err(e) = masq::add_full(rules.network, subnets, ips, rules.att) {
            if let Some((port, mac)) = rules.spoofchk {
                let _ = spoofchk::del(port, Some(mac));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Hooks for tests (not a stable API).
#[doc(hidden)]
pub mod testing {
    /// How many times the calling thread has started the nft binary: lets
    /// a test tell a fast path (NETLINK_NETFILTER only) from a full one.
    pub fn nft_runs() -> u64 {
        super::NFT_RUNS.with(std::cell::Cell::get)
    }

    /// Runs `f` with this thread's element deletions meeting a kernel
    /// before 6.3: NFT_MSG_DESTROYSETELEM rejected (EINVAL), so they fall
    /// back to NFT_MSG_DELSETELEM.
    pub fn without_destroy<T>(f: impl FnOnce() -> T) -> T {
        super::nfnl::without_destroy(f)
    }
}

thread_local! {
    static NFT_RUNS: Cell<u64> = const { Cell::new(0) };
}

/// Deletes the masquerade of `ips` and the spoof check of `port` with each
/// of its `macs` (both optional), in one transaction over netlink: the
/// DEL of attachment `att` whose addresses and port are known. An element
/// is deleted only if it is `att`'s (by its comment): a late or repeated
/// DEL must not take the masquerade of a container that got the address
/// since, nor a DEL given another container's port (a wrong `prevResult`,
/// a container that rebuilt its interface to point at another's port) that
/// container's spoof check. Idempotent, as [`masq::del`] and
/// [`spoofchk::del`]. Returns what became of the spoof-check elements
/// (`att`'s own may be elsewhere when one was another's or absent: see
/// [`spoofchk::del_attachment`]).
///
/// Equivalent to `nft get element` of each address, then `nft -f -` with
/// the `destroy element` lines of [`masq::del`] (for `att`'s elements) and
/// [`spoofchk::del`].
pub fn del(
    network: &str,
    att: &Attachment,
    ips: &[IpAddr],
    spoof: Option<(&str, &[[u8; 6]])>,
) -> Result<SpoofDel> {
    if ips.is_empty() && spoof.is_none() {
        return Ok(SpoofDel::default());
    }
    let _writing = writers_lock(false)?;
    del_locked(network, att, ips, spoof)
}

/// [`del`], by a caller that holds [`writers_lock`] (and read what to
/// delete under it).
pub(crate) fn del_locked(
    network: &str,
    att: &Attachment,
    ips: &[IpAddr],
    spoof: Option<(&str, &[[u8; 6]])>,
) -> Result<SpoofDel> {
    let mut checked = masq::dels(ips);
    if let Some((port, macs)) = spoof {
        checked.extend(spoofchk::dels(port, macs)?);
    }
    let op = format!("delete netfilter rules of network {network:?} (masquerade, spoof check)");
    let comment = attachment_comment(network, att);
    let (foreign, absent) = nfnl::delete_commented(&checked, &comment, &op)?;
    let bridge = |v: &[nfnl::Del]| v.iter().filter(|d| d.0 == NfFamily::Bridge).count();
    let looked = checked.iter().filter(|d| d.0 == NfFamily::Bridge).count();
    Ok(SpoofDel {
        foreign: bridge(&foreign) > 0,
        absent: bridge(&absent),
        looked,
    })
}

/// What [`del`] found of the spoof-check elements it looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoofDel {
    /// One was another attachment's (kept).
    pub foreign: bool,
    /// How many were absent, of the `looked` for.
    pub absent: usize,
    pub looked: usize,
}

/// The comment of an element added for `att` on `network`:
/// `<network>/<containerID>/<ifname>` (CNI names, IDs and interface names
/// contain no `/`). When that exceeds [`COMMENT_MAX`], it becomes
/// `<network>/#<sha256 of the long form, 32 hex>` (and a network name longer
/// than 64 bytes becomes `#<16 hex>`): still unique and deterministic, so GC
/// can compare comments.
pub fn attachment_comment(network: &str, att: &Attachment) -> String {
    let plain = format!("{network}/{}/{}", att.container_id, att.ifname);
    if plain.len() <= COMMENT_MAX {
        return plain;
    }
    format!("{}/#{}", network_tag(network), &sha256_hex(&plain)[..32])
}

/// Whether an element comment was made by [`attachment_comment`] for `network`.
pub(crate) fn comment_is_of(network: &str, comment: &str) -> bool {
    let tag = network_tag(network);
    [network, &*tag].iter().any(|n| {
        comment
            .strip_prefix(n)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn network_tag(network: &str) -> Cow<'_, str> {
    if network.len() <= 64 {
        Cow::Borrowed(network)
    } else {
        Cow::Owned(format!("#{}", &sha256_hex(network)[..16]))
    }
}

pub(crate) fn sha256_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(s.as_bytes()) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `s` cut to at most [`COMMENT_MAX`] bytes, on a character boundary.
pub(crate) fn clip_comment(s: &str) -> String {
    let mut end = s.len().min(COMMENT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `aa:bb:cc:dd:ee:ff`, as nft prints `ether_addr`.
pub(crate) fn mac_string(mac: [u8; 6]) -> String {
    let m = mac;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

// ---------------------------------------------------------------------------
// JSON builders (nftables crate types).

pub(crate) fn table(family: NfFamily) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family,
        name: TABLE.into(),
        handle: None,
    })
}

pub(crate) fn chain(family: NfFamily, name: &str) -> Chain<'static> {
    Chain {
        family,
        table: TABLE.into(),
        name: name.to_string().into(),
        ..Default::default()
    }
}

pub(crate) fn rule(
    family: NfFamily,
    chain: &str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

/// `<protocol> <field>`, e.g. `ip saddr`.
pub(crate) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

pub(crate) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn prefix(addr: String, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(addr.into())),
        len: len.into(),
    }))
}

/// `<left> == <right>`.
pub(crate) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

// ---------------------------------------------------------------------------
// Transactions.

/// One `nft -j -f -` transaction, built command by command.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    cmds: Vec<Value>,
}

impl Tx {
    pub fn new() -> Tx {
        Tx::default()
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    fn push(&mut self, cmd: NfCmd<'_>) {
        let v = serde_json::to_value(NfObject::CmdObject(cmd))
            .expect("nftables schema types serialize to JSON");
        self.cmds.push(v);
    }

    /// `add <object>`: creates it, or does nothing if it exists.
    pub fn add(&mut self, obj: NfListObject<'_>) {
        self.push(NfCmd::Add(obj));
    }

    /// `delete <object>`.
    pub fn delete(&mut self, obj: NfListObject<'_>) {
        self.push(NfCmd::Delete(obj));
    }

    /// `flush chain <family> nuage <name>`.
    pub fn flush_chain(&mut self, family: NfFamily, name: &str) {
        self.push(NfCmd::Flush(FlushObject::Chain(chain(family, name))));
    }

    /// `{"<cmd>": {"<kind>": body}}`, for what the crate cannot express.
    pub fn raw(&mut self, cmd: &str, kind: &str, body: Value) {
        self.cmds.push(json!({ cmd: { kind: body } }));
    }

    /// `add|delete element <family> nuage <set> { <elem> }`, `elem` being the
    /// JSON of one element (key, `{"elem": {...}}`, or `[key, value]`).
    pub fn element(&mut self, cmd: &str, family: NfFamily, set: &str, elem: Value) {
        let family = serde_json::to_value(family).expect("family serializes");
        self.raw(
            cmd,
            "element",
            json!({"family": family, "table": TABLE, "name": set, "elem": [elem]}),
        );
    }

    /// The JSON document sent to nft.
    pub fn to_json(&self) -> Value {
        json!({ "nftables": self.cmds })
    }

    /// Runs the transaction; `op` names the operation and its objects in
    /// the error.
    pub fn apply(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let input = serde_json::to_vec(&self.to_json()).expect("JSON serializes");
        nft(&["-j", "-f", "-"], Some(&input), op).map(drop)
    }
}

/// A JSON element with a comment: `{"elem": {"val": key, "comment": c}}`.
pub(crate) fn commented(key: Value, comment: &str) -> Value {
    json!({"elem": {"val": key, "comment": comment}})
}

// ---------------------------------------------------------------------------
// Running nft.

/// Where nft may live when `PATH` (a runtime's, often minimal) lacks it.
const NFT_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

/// Whether our tables could exist at all: they and their chains are only
/// ever created by running `nft` (the fast paths add elements to them).
/// Without it, a DEL or GC that would list them has nothing to clean.
pub(crate) fn tables_possible() -> bool {
    nft_path().is_some()
}

fn nft_path() -> Option<&'static Path> {
    static NFT: OnceLock<Option<PathBuf>> = OnceLock::new();
    NFT.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(NFT_DIRS.iter().map(PathBuf::from))
            .map(|d| d.join("nft"))
            .find(|p| p.is_file())
    })
    .as_deref()
}

/// STATUS of a network that needs nftables (`ipMasq`, `macspoofchk`):
/// code 50 when the `nft` binary, which sets up our tables, is missing.
pub fn status() -> Result<()> {
    match nft_path() {
        Some(_) => Ok(()),
        None => {
            let e = nft_missing("status");
            Err(Error::not_available(e.msg))
        }
    }
}

fn nft_missing(op: &str) -> Error {
    Error::internal(format!(
        "nft: {op}: the `nft` binary was not found (searched PATH and {}): \
         install the nftables package (needed by ipMasq with the nftables backend and macspoofchk)",
        NFT_DIRS.join(", ")
    ))
}

/// Runs `nft <args>` with `input` on stdin; returns stdout. A failure is an
/// error naming `op`, with nft's `Error:` lines in the message, its whole
/// stderr in the details, and the errno its message names. The `nft` dies
/// with the plugin (see [`crate::child`]).
pub(crate) fn nft(args: &[&str], input: Option<&[u8]>, op: &str) -> Result<String> {
    let bin = nft_path().ok_or_else(|| nft_missing(op))?;
    NFT_RUNS.with(|n| n.set(n.get() + 1));
    let mut cmd = Command::new(bin);
    crate::child::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                nft_missing(op)
            } else {
                Error::os(format_args!("nft: {op}: run {}", bin.display()), e)
            }
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // nft reads all its input before answering; a write error (EPIPE if it
        // died early) shows up in its exit status and stderr below.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::os(format_args!("nft: {op}: wait for {}", bin.display()), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(nft_failed(op, &stderr, out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nft_failed(op: &str, stderr: &str, status: std::process::ExitStatus) -> Error {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.find("Error: ").map(|i| &l[i + "Error: ".len()..]))
        .collect();
    let summary = if errors.is_empty() {
        match stderr.trim() {
            "" => format!("nft exited with {status}"),
            s => s.lines().next().unwrap_or(s).to_string(),
        }
    } else {
        errors.join("; ")
    };
    let errno = errno_of(stderr);
    let code = match errno {
        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR) => Code::TryAgain,
        _ => Code::Internal,
    };
    let mut e = Error::new(code, format!("nft: {op}: {summary}"));
    if !stderr.trim().is_empty() {
        e = e.with_details(stderr.trim().to_string());
    }
    e.errno = errno;
    e
}

/// The errno whose `strerror` text nft printed (first one wins).
fn errno_of(stderr: &str) -> Option<i32> {
    const TEXTS: &[(&str, i32)] = &[
        ("No such file or directory", libc::ENOENT),
        ("File exists", libc::EEXIST),
        ("Device or resource busy", libc::EBUSY),
        ("Resource temporarily unavailable", libc::EAGAIN),
        ("Interrupted system call", libc::EINTR),
        ("Operation not permitted", libc::EPERM),
        ("Operation not supported", libc::EOPNOTSUPP),
        ("Protocol not supported", libc::EPROTONOSUPPORT),
        ("Message too long", libc::EMSGSIZE),
    ];
    TEXTS
        .iter()
        .filter_map(|(t, n)| stderr.find(t).map(|at| (at, *n)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, n)| n)
}

/// Whether `e` is nft saying that an object does not exist.
pub(crate) fn is_enoent(e: &Error) -> bool {
    e.errno == Some(libc::ENOENT)
}

/// `nft -j list table <family> nuage`, as JSON objects; `None` when the
/// table does not exist.
pub(crate) fn list_table(family: &str, op: &str) -> Result<Option<Vec<Value>>> {
    let out = match nft(&["-j", "list", "table", family, TABLE], None, op) {
        Ok(out) => out,
        Err(e) if is_enoent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let doc: Value = serde_json::from_str(&out).map_err(|e| {
        Error::internal(format!(
            "nft: {op}: cannot parse `nft -j list table` output: {e}"
        ))
    })?;
    match doc.get("nftables") {
        Some(Value::Array(objs)) => Ok(Some(objs.clone())),
        _ => Err(Error::internal(format!(
            "nft: {op}: `nft -j list table` output has no \"nftables\" array"
        ))),
    }
}

/// The elements of set or map `name` in a `list table` output: each one's
/// key (and value, for maps) and comment.
pub(crate) fn elements<'v>(objs: &'v [Value], kind: &str, name: &str) -> Vec<Elem<'v>> {
    let Some(set) = objs
        .iter()
        .filter_map(|o| o.get(kind))
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
    else {
        return Vec::new();
    };
    let Some(Value::Array(elems)) = set.get("elem") else {
        return Vec::new();
    };
    elems
        .iter()
        .map(|e| {
            // A map element is `[key, value]`; a set element is just the key.
            let (key, value) = match e {
                Value::Array(kv) if kv.len() == 2 => (&kv[0], Some(&kv[1])),
                other => (other, None),
            };
            // A key with a comment is `{"elem": {"val": key, "comment": c}}`.
            let (key, comment) = match key.get("elem") {
                Some(inner) => (
                    inner.get("val").unwrap_or(&Value::Null),
                    inner.get("comment").and_then(Value::as_str),
                ),
                None => (key, None),
            };
            Elem {
                key,
                value,
                comment,
            }
        })
        .collect()
}

/// The names of the chains in a `list table` output.
pub(crate) fn chains(objs: &[Value]) -> Vec<&str> {
    objs.iter()
        .filter_map(|o| o.get("chain")?.get("name")?.as_str())
        .collect()
}

/// One element of a listed set or map.
#[derive(Debug)]
pub(crate) struct Elem<'v> {
    pub key: &'v Value,
    pub value: Option<&'v Value>,
    pub comment: Option<&'v str>,
}

/// A rule to write: its statements and comment.
pub(crate) type RuleSpec = (Vec<Statement<'static>>, Option<String>);

/// What is wrong with chain `name` of a `list table` output, given the rules
/// it should hold, in order: `None` if it holds exactly those.
pub(crate) fn check_chain(
    objs: &[Value],
    family: &str,
    name: &str,
    want: &[RuleSpec],
) -> Option<String> {
    if !chains(objs).contains(&name) {
        return Some(format!("chain {family} {TABLE} {name} is missing"));
    }
    let got: Vec<(&Value, Option<&str>)> = objs
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r.get("chain").and_then(Value::as_str) == Some(name))
        .map(|r| {
            let expr = r.get("expr").unwrap_or(&Value::Null);
            (expr, r.get("comment").and_then(Value::as_str))
        })
        .collect();
    let want: Vec<(Value, Option<&str>)> = want
        .iter()
        .map(|(expr, c)| {
            let expr = serde_json::to_value(expr).expect("statements serialize");
            (expr, c.as_deref())
        })
        .collect();
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|((ge, gc), (we, wc))| *ge == we && gc == wc);
    (!same).then(|| {
        format!(
            "chain {family} {TABLE} {name} holds {} rule(s) that differ from the {} we write",
            got.len(),
            want.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_fit_and_identify_the_network() {
        let att = Attachment::new("abc", "eth0");
        assert_eq!(attachment_comment("net-1.a", &att), "net-1.a/abc/eth0");
        assert!(comment_is_of("net-1.a", "net-1.a/abc/eth0"));
        assert!(!comment_is_of("net-1", "net-1.a/abc/eth0"));

        let long_id = "c".repeat(200);
        let c = attachment_comment("net", &Attachment::new(&long_id, "eth0"));
        assert!(c.len() <= COMMENT_MAX && c.starts_with("net/#"), "{c}");
        assert!(comment_is_of("net", &c));
        assert_ne!(
            c,
            attachment_comment("net", &Attachment::new(&long_id, "eth1"))
        );

        let long_net = "n".repeat(125);
        let c = attachment_comment(&long_net, &Attachment::new("x", "eth0"));
        assert!(c.len() <= COMMENT_MAX && c.starts_with('#'), "{c}");
        assert!(comment_is_of(&long_net, &c));
        assert!(!comment_is_of("net", &c));
    }

    #[test]
    fn macs_and_errnos() {
        let mac = [0x02, 0, 0xab, 1, 2, 0xff];
        assert_eq!(mac_string(mac), "02:00:ab:01:02:ff");
        assert_eq!(parse_mac("02:00:ab:01:02:ff"), Some(mac));
        assert_eq!(parse_mac("02:00:ab:01:02"), None);
        assert_eq!(
            errno_of("internal:0:0-0: Error: Could not process rule: Device or resource busy"),
            Some(libc::EBUSY)
        );
        assert_eq!(errno_of("Error: syntax error"), None);
        assert_eq!(clip_comment(&"é".repeat(100)).len(), 128);
    }
}
