//! The per-container changes of [`super`] (creating and deleting elements
//! of our sets and maps) sent straight to nf_tables over NETLINK_NETFILTER,
//! without running nft: ~3 ms and a read of every element of every set less
//! per change (see the module docs of [`super`]).
//!
//! One change is one batch: `NFNL_MSG_BATCH_BEGIN` (res_id
//! `NFNL_SUBSYS_NFTABLES`), one `NFT_MSG_{NEW,DESTROY,DEL}SETELEM` message
//! per set, `NFNL_MSG_BATCH_END`, on a socket opened in the calling thread's
//! network namespace and closed when done (a DEL's retries share it, see
//! [`Conn`] for why).
//! The kernel applies the batch entirely or not at all, and answers every
//! message (`NLM_F_ACK`) once it has committed or aborted; a failure of the
//! batch itself (commit, missing nf_tables) answers the BATCH_BEGIN message.
//! nfnetlink handles a batch within the `sendmsg` call, so every answer is
//! queued by the time it returns.
//!
//! The messages are what nft 1.0.6 sends for the same commands (checked
//! against `nft --debug=netlink,mnl`; see the tests), without the
//! `NFTA_SET_ELEM_LIST_SET_ID` attribute nft adds, which only names a set
//! created in the same batch:
//!
//! ```text
//! nlmsghdr  type NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM (0x0a0c)
//!           flags NLM_F_REQUEST|NLM_F_ACK|NLM_F_CREATE|NLM_F_EXCL (nft
//!           sends no NLM_F_ACK: it only looks for errors)
//! nfgenmsg  family NFPROTO_INET (1) / NFPROTO_BRIDGE (7), version 0, res_id 0
//! NFTA_SET_ELEM_LIST_TABLE     "nuage\0"
//! NFTA_SET_ELEM_LIST_SET       "masq4\0"
//! NFTA_SET_ELEM_LIST_ELEMENTS  (nested)
//!   NFTA_LIST_ELEM             (nested, one per element)
//!     NFTA_SET_ELEM_KEY        (nested)
//!       NFTA_DATA_VALUE        the key: 0a 58 00 02 (ipv4_addr); 16 bytes
//!                              (ipv6_addr); "veth1" NUL-padded to 16 bytes
//!                              (ifname); ifname . ether_addr: 16 + 6 + 2
//!                              bytes (each field padded to 4 bytes)
//!     NFTA_SET_ELEM_DATA       (nested, maps only)
//!       NFTA_DATA_VERDICT      (nested)
//!         NFTA_VERDICT_CODE    NFT_JUMP, be32: ff ff ff fd
//!         NFTA_VERDICT_CHAIN   "masq-...\0"
//!     NFTA_SET_ELEM_USERDATA   libnftnl TLV: 00 (NFTNL_UDATA_SET_ELEM_COMMENT),
//!                              length incl. NUL, comment, 00
//! ```

use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nftables::types::NfFamily;
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;

use super::{mac_string, TABLE};
use crate::netlink::nla::{ack_message, ack_tlvs, attrs, u16_at, u32_at, NLMSG_HDRLEN};
use crate::{log, Code, Error, Errors, Result};

// <linux/netlink.h>
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

// <linux/netfilter/nfnetlink.h>
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;

// <linux/netfilter/nf_tables.h>
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Linux 6.3: like DELSETELEM, a missing element is not an error.
const NFT_MSG_DESTROYSETELEM: u16 = 30;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;

// <libnftnl/udata.h>
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

const IFNAMSIZ: usize = 16;
/// Answers come within `sendmsg`; this only guards against a kernel that
/// would not answer at all.
const RECV_TIMEOUT_SECS: i64 = 10;
const RECV_BUF: usize = 64 * 1024;

/// `nfgen_family` of an nft family.
fn nfproto(family: NfFamily) -> u8 {
    match family {
        NfFamily::INet => 1,
        NfFamily::IP => 2,
        NfFamily::ARP => 3,
        NfFamily::NetDev => 5,
        NfFamily::Bridge => 7,
        NfFamily::IP6 => 10,
    }
}

fn family_name(family: NfFamily) -> &'static str {
    match family {
        NfFamily::INet => "inet",
        NfFamily::IP => "ip",
        NfFamily::ARP => "arp",
        NfFamily::NetDev => "netdev",
        NfFamily::Bridge => "bridge",
        NfFamily::IP6 => "ip6",
    }
}

/// The key of an element: its bytes as nf_tables stores them, and how nft
/// prints it (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    bytes: Vec<u8>,
    text: String,
}

impl Key {
    /// `ipv4_addr` (4 bytes) or `ipv6_addr` (16 bytes), network order.
    pub fn ip(ip: &IpAddr) -> Key {
        let bytes = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        Key {
            bytes,
            text: ip.to_string(),
        }
    }

    /// `ifname`: IFNAMSIZ bytes, NUL-padded (callers check the name fits).
    pub fn ifname(name: &str) -> Key {
        Key {
            bytes: ifname_bytes(name).to_vec(),
            text: format!("{name:?}"),
        }
    }

    /// `ifname . ether_addr`: each field padded to a multiple of 4 bytes.
    pub fn ifname_ether(name: &str, mac: [u8; 6]) -> Key {
        let mut bytes = ifname_bytes(name).to_vec();
        bytes.extend_from_slice(&mac);
        bytes.extend_from_slice(&[0, 0]);
        Key {
            bytes,
            text: format!("{name:?} . {}", mac_string(mac)),
        }
    }
}

fn ifname_bytes(name: &str) -> [u8; IFNAMSIZ] {
    let mut b = [0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Destroy,
    Delete,
}

impl Op {
    fn msg_type(self) -> u16 {
        let t = match self {
            Op::Create => NFT_MSG_NEWSETELEM,
            Op::Destroy if SIMULATE_NO_DESTROY.with(Cell::get) => NFT_MSG_UNKNOWN,
            Op::Destroy => NFT_MSG_DESTROYSETELEM,
            Op::Delete => NFT_MSG_DELSETELEM,
        };
        NFNL_SUBSYS_NFTABLES << 8 | t
    }

    fn flags(self) -> u16 {
        match self {
            Op::Create => NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            Op::Destroy | Op::Delete => NLM_F_REQUEST | NLM_F_ACK,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Destroy => "destroy",
            Op::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone)]
struct Elem {
    key: Key,
    /// Maps: the chain the element jumps to.
    jump: Option<String>,
    comment: Option<String>,
}

/// The elements of one set in one message.
#[derive(Debug, Clone)]
struct Msg {
    op: Op,
    family: NfFamily,
    set: &'static str,
    elems: Vec<Elem>,
}

impl Msg {
    /// The nft command of this message, e.g.
    /// `create element inet nuage masq4 { 10.88.0.2 : jump masq-... }`.
    fn command(&self) -> String {
        let mut s = format!(
            "{} element {} {TABLE} {} {{ ",
            self.op.word(),
            family_name(self.family),
            self.set
        );
        for (i, e) in self.elems.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&e.key.text);
            if let Some(c) = &e.jump {
                let _ = write!(s, " : jump {c}");
            }
        }
        s.push_str(" }");
        s
    }

    fn encode(&self, buf: &mut Vec<u8>, seq: u32) {
        let start = begin_msg(buf, self.op.msg_type(), self.op.flags(), seq);
        put_nfgenmsg(buf, nfproto(self.family), 0);
        put_str(buf, NFTA_SET_ELEM_LIST_TABLE, TABLE);
        put_str(buf, NFTA_SET_ELEM_LIST_SET, self.set);
        let list = begin_nest(buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        for e in &self.elems {
            let elem = begin_nest(buf, NFTA_LIST_ELEM);
            let key = begin_nest(buf, NFTA_SET_ELEM_KEY);
            put_attr(buf, NFTA_DATA_VALUE, &e.key.bytes);
            end_nest(buf, key);
            if self.op == Op::Create {
                if let Some(chain) = &e.jump {
                    let data = begin_nest(buf, NFTA_SET_ELEM_DATA);
                    let verdict = begin_nest(buf, NFTA_DATA_VERDICT);
                    put_attr(buf, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                    put_str(buf, NFTA_VERDICT_CHAIN, chain);
                    end_nest(buf, verdict);
                    end_nest(buf, data);
                }
                if let Some(c) = &e.comment {
                    put_attr(buf, NFTA_SET_ELEM_USERDATA, &comment_udata(c));
                }
            }
            end_nest(buf, elem);
        }
        end_nest(buf, list);
        end_msg(buf, start);
    }
}

/// A libnftnl udata TLV holding an element comment.
fn comment_udata(comment: &str) -> Vec<u8> {
    // nft refuses comments over 128 bytes; ours are shorter (COMMENT_MAX),
    // and a TLV length is one byte.
    let c = &comment.as_bytes()[..comment.len().min(254)];
    let mut v = Vec::with_capacity(c.len() + 3);
    v.push(NFTNL_UDATA_SET_ELEM_COMMENT);
    v.push((c.len() + 1) as u8);
    v.extend_from_slice(c);
    v.push(0);
    v
}

// ---------------------------------------------------------------------------
// Encoding.

fn begin_msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end_msg
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    start
}

fn end_msg(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// `struct nfgenmsg`: family, version 0, res_id (big endian).
fn put_nfgenmsg(buf: &mut Vec<u8>, family: u8, res_id: u16) {
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    pad(buf);
}

/// A NUL-terminated string attribute.
fn put_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    put_attr(buf, ty, &v);
}

fn begin_nest(buf: &mut Vec<u8>, ty: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn end_nest(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

// ---------------------------------------------------------------------------
// Batches.

/// Element changes to commit in one nf_tables transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    msgs: Vec<Msg>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    fn push(&mut self, op: Op, family: NfFamily, set: &'static str, elem: Elem) {
        match self.msgs.last_mut() {
            Some(m) if m.op == op && m.family == family && m.set == set => m.elems.push(elem),
            _ => self.msgs.push(Msg {
                op,
                family,
                set,
                elems: vec![elem],
            }),
        }
    }

    /// `create element <family> nuage <set> { <key> comment "<comment>" [: jump <chain>] }`:
    /// fails with EEXIST if the key exists (whatever its value or comment),
    /// ENOENT if the table, set or chain does not.
    pub fn create(
        &mut self,
        family: NfFamily,
        set: &'static str,
        key: Key,
        jump: Option<&str>,
        comment: &str,
    ) {
        let elem = Elem {
            key,
            jump: jump.map(str::to_string),
            comment: Some(comment.to_string()),
        };
        self.push(Op::Create, family, set, elem);
    }

    fn remove(&mut self, op: Op, family: NfFamily, set: &'static str, key: Key) {
        let elem = Elem {
            key,
            jump: None,
            comment: None,
        };
        self.push(op, family, set, elem);
    }

    /// The whole batch, BATCH_BEGIN to BATCH_END, its messages numbered
    /// from `seq` on (BATCH_BEGIN is `seq`).
    fn encode(&self, seq: u32) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256 * (self.msgs.len() + 1));
        let begin = begin_msg(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
        put_nfgenmsg(&mut buf, 0, NFNL_SUBSYS_NFTABLES);
        end_msg(&mut buf, begin);
        for (i, m) in self.msgs.iter().enumerate() {
            m.encode(&mut buf, seq + 1 + i as u32);
        }
        let end_seq = seq + 1 + self.msgs.len() as u32;
        let end = begin_msg(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq);
        put_nfgenmsg(&mut buf, 0, NFNL_SUBSYS_NFTABLES);
        end_msg(&mut buf, end);
        buf
    }

    /// Sends the batch and waits for the kernel's verdict on it: applied
    /// entirely, or not at all and the error of the first message that
    /// failed, as an error naming `op` and that message's nft command, with
    /// the errno (EBUSY, EAGAIN, EINTR: [`Code::TryAgain`]).
    ///
    /// Equivalent to `nft -f -` with the batch's commands.
    pub fn commit(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        Conn::open(op)?.commit(self, op)
    }
}

/// A NETLINK_NETFILTER socket, in the network namespace of the thread that
/// opened it, and the last sequence number used on it.
///
/// Closing one after a transaction that deleted something waits, in the
/// kernel, for that transaction's memory to be freed after an RCU grace
/// period (`nft_rcv_nl_event` flushes nf_tables' destroy work): ~15 ms here,
/// the bulk of a DEL's cost, which nft pays too. So a DEL's retries share
/// one socket: one wait, not one per retry.
struct Conn {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conn {
    fn open(op: &str) -> Result<Conn> {
        let open = || -> io::Result<Socket> {
            let mut sock = Socket::new(NETLINK_NETFILTER)?;
            // The kernel picks the port id; answers are matched by sequence.
            sock.bind(&SocketAddr::new(0, 0))?;
            sock.connect(&SocketAddr::new(0, 0))?;
            // Best effort: the kernel's own message in errors, answers
            // without the echoed request.
            let _ = sock.set_ext_ack(true);
            let _ = sock.set_cap_ack(true);
            let timeout = TimeVal::new(RECV_TIMEOUT_SECS as _, 0);
            setsockopt(&sock, ReceiveTimeout, &timeout).map_err(io::Error::from)?;
            Ok(sock)
        };
        let sock = open().map_err(|e| {
            Error::os(
                format_args!("nfnl: {op}: open a NETLINK_NETFILTER socket"),
                e,
            )
        })?;
        Ok(Conn {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// [`Batch::commit`] on this socket.
    fn commit(&mut self, batch: &Batch, op: &str) -> Result<()> {
        let n = batch.msgs.len();
        if n == 0 {
            return Ok(());
        }
        let fail = |what: &str, e: io::Error| Error::os(format_args!("nfnl: {op}: {what}"), e);
        // BATCH_BEGIN is `first`, the messages follow, then BATCH_END;
        // answers left from an earlier batch abandoned on error are older.
        let first = self.seq.wrapping_add(1);
        self.seq = first.wrapping_add(n as u32 + 1);
        let bytes = batch.encode(first);
        self.sock
            .send(&bytes, 0)
            .map_err(|e| fail("send the batch", e))?;

        let mut answered = vec![false; n];
        let mut left = n;
        let mut first_err: Option<(usize, i32, Option<String>)> = None;
        while left > 0 {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Error::internal(format!(
                        "nfnl: {op}: the kernel answered {} of {n} message(s) of the batch \
                         within {RECV_TIMEOUT_SECS} s",
                        n - left
                    )));
                }
                Err(e) => return Err(fail("receive the answers", e)),
            }
            for ack in acks(&self.buf) {
                if ack.seq == first {
                    // The batch as a whole: no nf_tables, no permission,
                    // or the commit failed.
                    if ack.errno != 0 {
                        return Err(kernel_error(op, "batch", ack.errno, ack.msg));
                    }
                    continue;
                }
                let Some(i) = (ack.seq.wrapping_sub(first) as usize)
                    .checked_sub(1)
                    .filter(|i| *i < n && !answered[*i])
                else {
                    continue;
                };
                answered[i] = true;
                left -= 1;
                if ack.errno != 0 && first_err.as_ref().is_none_or(|(j, ..)| i < *j) {
                    first_err = Some((i, ack.errno, ack.msg));
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some((i, errno, msg)) => Err(kernel_error(op, &batch.msgs[i].command(), errno, msg)),
        }
    }
}

impl Conn {
    /// The comment of element `key` of `set`: `None` when there is no such
    /// element (or set, or table), `Some(None)` when it has no comment.
    ///
    /// Equivalent to `nft get element <family> nuage <set> { <key> }`
    fn comment_of(&mut self, del: &Del, op: &str) -> Result<Option<Option<String>>> {
        let (family, set, key) = del;
        let fail = |what: &str, e: io::Error| Error::os(format_args!("nfnl: {op}: {what}"), e);
        let seq = self.seq.wrapping_add(1);
        self.seq = seq;
        let mut buf = Vec::with_capacity(128);
        let ty = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM;
        let start = begin_msg(&mut buf, ty, NLM_F_REQUEST | NLM_F_ACK, seq);
        put_nfgenmsg(&mut buf, nfproto(*family), 0);
        put_str(&mut buf, NFTA_SET_ELEM_LIST_TABLE, TABLE);
        put_str(&mut buf, NFTA_SET_ELEM_LIST_SET, set);
        let list = begin_nest(&mut buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        let elem = begin_nest(&mut buf, NFTA_LIST_ELEM);
        let k = begin_nest(&mut buf, NFTA_SET_ELEM_KEY);
        put_attr(&mut buf, NFTA_DATA_VALUE, &key.bytes);
        end_nest(&mut buf, k);
        end_nest(&mut buf, elem);
        end_nest(&mut buf, list);
        end_msg(&mut buf, start);
        self.sock.send(&buf, 0).map_err(|e| fail("send a get", e))?;
        // The element (NFT_MSG_NEWSETELEM), then the ACK; or an error.
        let mut found = None;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail("receive the element", e)),
            }
            for m in messages(&self.buf).into_iter().filter(|m| m.seq == seq) {
                if m.ty == ty & 0xff00 | NFT_MSG_NEWSETELEM {
                    found = Some(element_comment(m.payload));
                    continue;
                }
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                return match u32_at(m.payload, 0).map(|c| -(c as i32)) {
                    Some(0) => Ok(found),
                    Some(libc::ENOENT) => Ok(None),
                    Some(errno) => {
                        let msg = ack_message(ack_tlvs(m.flags, &m.payload[4..]));
                        let what = format!(
                            "get element {} {TABLE} {set} {{ {} }}",
                            family_name(*family),
                            key.text
                        );
                        Err(kernel_error(op, &what, errno, msg))
                    }
                    None => Err(Error::internal(format!("nfnl: {op}: a truncated answer"))),
                };
            }
        }
    }
}

/// One NLMSG_ERROR answer: the sequence number it answers, its errno
/// (positive, 0 for an ACK) and the extended ACK's message.
struct Ack {
    seq: u32,
    errno: i32,
    msg: Option<String>,
}

/// One netlink message of a datagram: type, flags, sequence number and
/// payload (after the header).
struct Message<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages of a datagram; stops at the first malformed one.
fn messages(datagram: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    let mut off = 0;
    while let (Some(len), Some(ty), Some(flags), Some(seq)) = (
        u32_at(datagram, off),
        u16_at(datagram, off + 4),
        u16_at(datagram, off + 6),
        u32_at(datagram, off + 8),
    ) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || off + len > datagram.len() {
            break;
        }
        out.push(Message {
            ty,
            flags,
            seq,
            payload: &datagram[off + NLMSG_HDRLEN..off + len],
        });
        off += (len + 3) & !3;
    }
    out
}

/// The NLMSG_ERROR messages of a datagram.
fn acks(datagram: &[u8]) -> Vec<Ack> {
    messages(datagram)
        .into_iter()
        .filter(|m| m.ty == NLMSG_ERROR)
        .filter_map(|m| {
            let code = u32_at(m.payload, 0)?;
            Some(Ack {
                seq: m.seq,
                errno: -(code as i32),
                msg: ack_message(ack_tlvs(m.flags, &m.payload[4..])),
            })
        })
        .collect()
}

/// The comment of the first element in an NFT_MSG_NEWSETELEM payload
/// (after its `nfgenmsg`): `None` when it has none.
fn element_comment(payload: &[u8]) -> Option<String> {
    let nested = |buf: &[u8], kind: u16| {
        attrs(buf)
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.to_vec())
    };
    let list = nested(payload.get(4..)?, NFTA_SET_ELEM_LIST_ELEMENTS)?;
    let elem = nested(&list, NFTA_LIST_ELEM)?;
    let udata = nested(&elem, NFTA_SET_ELEM_USERDATA)?;
    // libnftnl TLVs: type (1 byte), length (1 byte), value.
    let mut rest = &udata[..];
    while let [ty, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *ty == NFTNL_UDATA_SET_ELEM_COMMENT {
            let text = String::from_utf8_lossy(value);
            return Some(text.trim_end_matches('\0').to_string());
        }
        rest = &tail[usize::from(*len)..];
    }
    None
}

fn kernel_error(op: &str, what: &str, errno: i32, msg: Option<String>) -> Error {
    let err = io::Error::from_raw_os_error(errno);
    let text = match msg {
        Some(m) => format!("nfnl: {op}: {what}: {err} ({m})"),
        None => format!("nfnl: {op}: {what}: {err}"),
    };
    let code = match errno {
        libc::EBUSY | libc::EAGAIN | libc::EINTR => Code::TryAgain,
        _ => Code::Internal,
    };
    let mut e = Error::new(code, text);
    e.errno = Some(errno);
    e
}

// ---------------------------------------------------------------------------
// Deleting.

/// Set once a kernel rejected NFT_MSG_DESTROYSETELEM (before 6.3).
static NO_DESTROY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Tests: act as a kernel before 6.3 would, see [`without_destroy`].
    static SIMULATE_NO_DESTROY: Cell<bool> = const { Cell::new(false) };
}

/// A message type nf_tables does not know (it has ~40): rejected with
/// EINVAL, as kernels before 6.3 reject NFT_MSG_DESTROYSETELEM.
const NFT_MSG_UNKNOWN: u16 = 0xff;

/// Runs `f` with this thread's deletions meeting what a kernel before 6.3
/// does with NFT_MSG_DESTROYSETELEM: the destroy messages are sent with a
/// type unknown to nf_tables, which rejects them (EINVAL), so the fallback
/// to NFT_MSG_DELSETELEM runs (without marking the kernel as lacking
/// destroy for the rest of the process).
pub fn without_destroy<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SIMULATE_NO_DESTROY.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(SIMULATE_NO_DESTROY.with(|c| c.replace(true)));
    f()
}

fn is_enoent(e: &Error) -> bool {
    e.errno == Some(libc::ENOENT)
}

/// An element to delete: table `<family> nuage`, set, key.
pub(crate) type Del = (NfFamily, &'static str, Key);

/// Deletes the elements `dels` (family, set, key) of our tables, in one
/// batch: one socket, so the kernel's wait for its cleanup work when the
/// socket closes (an RCU grace period, ~15 ms here, after a transaction
/// that freed something) is paid once. Idempotent: a missing element, set
/// or table is success.
///
/// Equivalent to `nft destroy element <family> nuage <set> { <key> }` for
/// each (kernel >= 6.3, nft >= 1.0.8), in one transaction: `destroy`
/// ignores a missing element but not a missing table or set (ENOENT, which
/// aborts the batch), so on ENOENT each set's message is sent on its own,
/// ENOENT ignored. A kernel without `destroy` (EINVAL or EOPNOTSUPP) gets
/// `delete element` instead, and on ENOENT one element at a time, ENOENT
/// ignored.
pub(crate) fn delete(dels: &[Del], op: &str) -> Result<()> {
    if dels.is_empty() {
        return Ok(());
    }
    delete_on(&mut Conn::open(op)?, dels, op)
}

/// [`delete`] of those of `checked` whose element carries `comment`; an
/// element of the same key with another comment, or none, is
/// another attachment's (its address was released and handed out again
/// before this late or repeated DEL, or a DEL was given another's port) and
/// stays. One socket for the reads and the deletion, one transaction.
/// Returns the checked elements that were not deleted as `comment`'s:
/// `(another's, absent)`.
///
/// Equivalent to `nft get element ...` for each of `checked`, then
/// [`delete`].
pub(crate) fn delete_commented(
    checked: &[Del],
    comment: &str,
    op: &str,
) -> Result<(Vec<Del>, Vec<Del>)> {
    if checked.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut conn = Conn::open(op)?;
    let (mut foreign, mut absent) = (Vec::new(), Vec::new());
    let mut mine = Vec::new();
    // A failed read keeps that element (it may be another's), not the rest.
    let mut errs = Errors::new();
    for d in checked {
        let Some(comment_of) = errs.collect(conn.comment_of(d, op)) else {
            continue;
        };
        match comment_of {
            Some(Some(c)) if c == comment => mine.push(d.clone()),
            Some(other) => {
                foreign.push(d.clone());
                log::info(format_args!(
                    "nfnl: {op}: {} in {} {TABLE} {} belongs to {:?}, not {comment:?}: kept",
                    d.2.text,
                    family_name(d.0),
                    d.1,
                    other.unwrap_or_default()
                ))
            }
            None => absent.push(d.clone()),
        }
    }
    if !mine.is_empty() {
        errs.collect(delete_on(&mut conn, &mine, op));
    }
    errs.into_result().map(|()| (foreign, absent))
}

fn delete_on(conn: &mut Conn, dels: &[Del], op: &str) -> Result<()> {
    let simulated = SIMULATE_NO_DESTROY.with(Cell::get);
    if !simulated && NO_DESTROY.load(Ordering::Relaxed) {
        return delete_each(conn, dels, op);
    }
    let b = batch(Op::Destroy, dels);
    match conn.commit(&b, op) {
        Ok(()) => Ok(()),
        // A missing table or set (a missing element is no error): the
        // batch was aborted, the other sets' elements are still there.
        Err(e) if is_enoent(&e) => {
            let mut errs = Errors::new();
            if b.msgs.len() > 1 {
                for m in &b.msgs {
                    let one = Batch {
                        msgs: vec![m.clone()],
                    };
                    match conn.commit(&one, op) {
                        Err(e) if !is_enoent(&e) => errs.push(e),
                        _ => {}
                    }
                }
            }
            errs.into_result()
        }
        Err(e) if matches!(e.errno, Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
            // Or an EINVAL of the elements themselves, which `delete` then
            // reports: remember only a kernel that took `delete`.
            let r = delete_each(conn, dels, op);
            if r.is_ok() && !simulated {
                NO_DESTROY.store(true, Ordering::Relaxed);
            }
            r
        }
        Err(e) => Err(e),
    }
}

fn batch(op: Op, dels: &[Del]) -> Batch {
    let mut b = Batch::new();
    for (family, set, key) in dels {
        b.remove(op, *family, set, key.clone());
    }
    b
}

/// `delete element` of all `dels` in one batch; on ENOENT (a missing
/// element, set or table) one at a time, ENOENT ignored.
fn delete_each(conn: &mut Conn, dels: &[Del], op: &str) -> Result<()> {
    match conn.commit(&batch(Op::Delete, dels), op) {
        Err(e) if is_enoent(&e) && dels.len() > 1 => {
            let mut errs = Errors::new();
            for d in dels {
                let one = batch(Op::Delete, std::slice::from_ref(d));
                match conn.commit(&one, op) {
                    Err(e) if !is_enoent(&e) => errs.push(e),
                    _ => {}
                }
            }
            errs.into_result()
        }
        Err(e) if is_enoent(&e) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a reply: NLMSG_ERROR carries extended-ACK TLVs.
    const NLM_F_ACK_TLVS: u16 = 0x200;
    /// In a reply: the echoed request was cut to its header.
    const NLM_F_CAPPED: u16 = 0x100;
    const NLMSGERR_ATTR_MSG: u16 = 1;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// The attributes after the nfgenmsg of the one message of `b` (the
    /// netlink header is checked separately).
    fn attrs_of(b: &Batch) -> Vec<u8> {
        let mut buf = Vec::new();
        b.msgs[0].encode(&mut buf, 7);
        buf[NLMSG_HDRLEN + 4..].to_vec()
    }

    // The expected bytes are nft 1.0.6's (`nft --debug=mnl`, or strace) for
    // the same `create element` commands, minus NFTA_SET_ELEM_LIST_SET_ID
    // (`08 00 04 00 00 00 00 0N`, after the set name), on little endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn elements_are_encoded_as_nft_does() {
        let table_attr = "0a 00 01 00 6e 75 61 67 65 00 00 00";
        let comment = "12 00 06 00 00 0c 6e 65 74 2f 63 31 2f 65 74 68 30 00 00 00";
        let verdict = "20 00 02 80 1c 00 02 80 08 00 01 00 ff ff ff fd \
                       0d 00 02 00 6d 61 73 71 2d 61 62 63 00 00 00 00";

        // create element inet nuage masq4 { 10.88.0.2 comment "net/c1/eth0" : jump masq-abc }
        let mut b = Batch::new();
        let ip: IpAddr = "10.88.0.2".parse().unwrap();
        b.create(
            NfFamily::INet,
            "masq4",
            Key::ip(&ip),
            Some("masq-abc"),
            "net/c1/eth0",
        );
        let want = format!(
            "{table_attr} 0a 00 02 00 6d 61 73 71 34 00 00 00 \
             48 00 03 80 44 00 01 80 0c 00 01 80 08 00 01 00 0a 58 00 02 {verdict} {comment}"
        );
        assert_eq!(attrs_of(&b), hex(&want));

        // create element inet nuage masq6 { fd00:a::2 comment "net/c1/eth0" : jump masq-abc }
        let mut b = Batch::new();
        let ip: IpAddr = "fd00:a::2".parse().unwrap();
        b.create(
            NfFamily::INet,
            "masq6",
            Key::ip(&ip),
            Some("masq-abc"),
            "net/c1/eth0",
        );
        let want = format!(
            "{table_attr} 0a 00 02 00 6d 61 73 71 36 00 00 00 \
             54 00 03 80 50 00 01 80 18 00 01 80 14 00 01 00 \
             fd 00 00 0a 00 00 00 00 00 00 00 00 00 00 00 02 {verdict} {comment}"
        );
        assert_eq!(attrs_of(&b), hex(&want));

        // create element bridge nuage spoof_ports { "veth1" comment "net/c1/eth0" }
        let mut b = Batch::new();
        b.create(
            NfFamily::Bridge,
            "spoof_ports",
            Key::ifname("veth1"),
            None,
            "net/c1/eth0",
        );
        let want = format!(
            "{table_attr} 10 00 02 00 73 70 6f 6f 66 5f 70 6f 72 74 73 00 \
             34 00 03 80 30 00 01 80 18 00 01 80 14 00 01 00 \
             76 65 74 68 31 00 00 00 00 00 00 00 00 00 00 00 {comment}"
        );
        assert_eq!(attrs_of(&b), hex(&want));

        // create element bridge nuage spoof_allowed { "veth1" . 02:00:00:00:00:01 comment "net/c1/eth0" }
        let mut b = Batch::new();
        let key = Key::ifname_ether("veth1", [2, 0, 0, 0, 0, 1]);
        b.create(NfFamily::Bridge, "spoof_allowed", key, None, "net/c1/eth0");
        let want = format!(
            "{table_attr} 12 00 02 00 73 70 6f 6f 66 5f 61 6c 6c 6f 77 65 64 00 00 00 \
             3c 00 03 80 38 00 01 80 20 00 01 80 1c 00 01 00 \
             76 65 74 68 31 00 00 00 00 00 00 00 00 00 00 00 02 00 00 00 00 01 00 00 {comment}"
        );
        assert_eq!(attrs_of(&b), hex(&want));
        assert_eq!(
            b.msgs[0].command(),
            "create element bridge nuage spoof_allowed { \"veth1\" . 02:00:00:00:00:01 }"
        );

        // delete element inet nuage masq4 { 10.88.0.2 }
        let mut b = Batch::new();
        let ip: IpAddr = "10.88.0.2".parse().unwrap();
        b.remove(Op::Delete, NfFamily::INet, "masq4", Key::ip(&ip));
        let want = format!(
            "{table_attr} 0a 00 02 00 6d 61 73 71 34 00 00 00 \
             14 00 03 80 10 00 01 80 0c 00 01 80 08 00 01 00 0a 58 00 02"
        );
        assert_eq!(attrs_of(&b), hex(&want));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn batches_are_framed_as_nft_does() {
        let mut b = Batch::new();
        let ip: IpAddr = "10.88.0.2".parse().unwrap();
        b.create(NfFamily::INet, "masq4", Key::ip(&ip), Some("c"), "x");
        let ip: IpAddr = "10.88.0.3".parse().unwrap();
        b.create(NfFamily::INet, "masq4", Key::ip(&ip), Some("c"), "y");
        b.create(NfFamily::Bridge, "spoof_ports", Key::ifname("v"), None, "x");
        assert_eq!(b.msgs.len(), 2, "one message per set");
        let bytes = b.encode(1);
        // BATCH_BEGIN: len 20, type 16, NLM_F_REQUEST, seq 1, nfgenmsg
        // AF_UNSPEC v0 res_id htons(NFNL_SUBSYS_NFTABLES).
        assert_eq!(
            bytes[..20],
            hex("14 00 00 00 10 00 01 00 01 00 00 00 00 00 00 00 00 00 00 0a")
        );
        // First message: type 0x0a0c, NLM_F_REQUEST|ACK|EXCL|CREATE, seq 2,
        // nfgenmsg NFPROTO_INET.
        assert_eq!(bytes[24..36], hex("0c 0a 05 06 02 00 00 00 00 00 00 00"));
        assert_eq!(bytes[36..40], [1, 0, 0, 0]);
        let end = &bytes[bytes.len() - 20..];
        assert_eq!(
            end,
            hex("14 00 00 00 11 00 01 00 04 00 00 00 00 00 00 00 00 00 00 0a")
        );
        let first_len = u32_at(&bytes, 20).unwrap() as usize;
        // Second message: bridge family, seq 3.
        let second = &bytes[20 + first_len..];
        assert_eq!(second[8..12], 3u32.to_ne_bytes());
        assert_eq!(second[16], 7);
        assert_eq!(
            20 + first_len + u32_at(second, 0).unwrap() as usize + 20,
            bytes.len()
        );
    }

    #[test]
    fn acks_and_their_messages_are_parsed() {
        // An NLMSG_ERROR of ENOENT for seq 3, capped, with an ext-ack message.
        let mut d = Vec::new();
        let start = begin_msg(&mut d, NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 3);
        d.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        begin_msg(&mut d, 0x0a0c, 0, 3); // the echoed header
        end_msg(&mut d[start + 20..], 0);
        put_str(&mut d, NLMSGERR_ATTR_MSG, "no such set");
        end_msg(&mut d, start);
        // Then a plain ACK of seq 4.
        let start = begin_msg(&mut d, NLMSG_ERROR, NLM_F_CAPPED, 4);
        d.extend_from_slice(&0i32.to_ne_bytes());
        begin_msg(&mut d, 0x0a0c, 0, 4);
        end_msg(&mut d, start);
        let acks = acks(&d);
        assert_eq!(acks.len(), 2);
        assert_eq!((acks[0].seq, acks[0].errno), (3, libc::ENOENT));
        assert_eq!(acks[0].msg.as_deref(), Some("no such set"));
        assert_eq!(
            (acks[1].seq, acks[1].errno, acks[1].msg.as_deref()),
            (4, 0, None)
        );
    }
}
