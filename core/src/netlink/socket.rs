//! A synchronous rtnetlink socket: one request at a time, replies collected
//! until the kernel's ACK, NACK or DONE.

use std::io;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, SocketAddr};

use super::nla::{ack_message, ack_tlvs, NLMSG_HDRLEN};
use crate::{Code, Error, Result};

/// The kernel sizes dump datagrams from the reader's buffer, up to 32 KiB;
/// one link's reply is a few KiB.
const RECV_BUF: usize = 64 * 1024;
/// A dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is
/// retried after these pauses (ms, plus up to as much again at random, so
/// that plugins dumping side by side do not retry in step): a node where
/// containers start and stop in parallel changes its links continuously
/// (5 immediate retries failed 7 % of link dumps with 400 links and 4
/// veths coming and going).
const DUMP_RETRY_MS: &[u64] = &[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

pub(crate) struct Socket {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// A socket bound to the calling thread's current network namespace.
    pub fn new() -> io::Result<Socket> {
        let mut sock = netlink_sys::Socket::new(NETLINK_ROUTE)?;
        // Port id 0: the kernel picks one (without `bind_auto`'s
        // getsockname: replies are matched by sequence number).
        sock.bind(&SocketAddr::new(0, 0))?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Best effort, these are newer than the oldest kernels we may meet:
        // strict checking (4.20) makes the kernel honour dump filters and
        // reject malformed requests; extended ACKs (4.12) carry the kernel's
        // own message ("Unknown device type"), capped to not echo the request.
        let _ = sock.set_netlink_get_strict_chk(true);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(Socket {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends a request (ACK requested) and returns the replies before the ACK.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK | flags, decode)
    }

    /// Dumps a table, retrying when the dump was interrupted by a change.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        // No NLM_F_ACK: a dump ends with NLMSG_DONE (or a NACK if it cannot start).
        self.exchange(msg, NLM_F_DUMP, decode)
    }

    /// [`Socket::request`] with the replies read by `read` from their bytes
    /// (`nlmsg_type`, and the message, header included) instead of the
    /// generic decoder; `None`s are dropped.
    pub fn request_as<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        read: impl FnMut(u16, &[u8]) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.exchange(msg, NLM_F_ACK | flags, into_ok(read))
    }

    /// [`Socket::dump`] with the replies read by `read`, as [`Socket::request_as`].
    pub fn dump_as<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        read: impl FnMut(u16, &[u8]) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.exchange(msg, NLM_F_DUMP, into_ok(read))
    }

    /// Sends a request the `netlink-packet-route` types cannot express
    /// (`nlmsg_type` and its payload as bytes, ACK requested) and returns
    /// the replies before the ACK, as (type, payload) pairs.
    pub fn request_raw(
        &mut self,
        nlmsg_type: u16,
        flags: u16,
        payload: &[u8],
    ) -> Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + payload.len();
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&(len as u32).to_ne_bytes());
        bytes.extend_from_slice(&nlmsg_type.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        bytes.extend_from_slice(&self.seq.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        self.sock
            .send(&bytes, 0)
            .map_err(|e| Error::os("send", e))?;
        let mut replies = Vec::new();
        self.replies(|t, msg| {
            replies.push((t, msg[NLMSG_HDRLEN..].to_vec()));
            Ok(())
        })?;
        Ok(replies)
    }

    /// Sends `msg` and reads its replies with `read`, again from the start
    /// when a dump was interrupted.
    fn exchange<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut read: impl FnMut(u16, &[u8]) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        let mut packet = NetlinkMessage::from(msg);
        packet.header.flags = NLM_F_REQUEST | flags;
        for &ms in DUMP_RETRY_MS {
            if ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(ms + jitter(ms)));
            }
            self.seq = self.seq.wrapping_add(1);
            packet.header.sequence_number = self.seq;
            packet.finalize();
            let mut bytes = vec![0; packet.buffer_len()];
            packet.serialize(&mut bytes);
            self.sock
                .send(&bytes, 0)
                .map_err(|e| Error::os("send", e))?;
            let mut replies = Vec::new();
            let interrupted = self.replies(|t, msg| {
                replies.extend(read(t, msg)?);
                Ok(())
            })?;
            if !interrupted {
                return Ok(replies);
            }
        }
        let mut e = Error::new(
            Code::TryAgain,
            format!(
                "dump interrupted by concurrent changes {} times",
                DUMP_RETRY_MS.len()
            ),
        );
        e.errno = Some(libc::EINTR);
        Err(e)
    }

    /// Reads the replies to the current request up to its ACK, NACK or DONE,
    /// handing every other one to `each` (its `nlmsg_type` and its bytes,
    /// header included). Returns whether the dump was interrupted.
    fn replies(&mut self, mut each: impl FnMut(u16, &[u8]) -> Result<()>) -> Result<bool> {
        let mut interrupted = false;
        loop {
            self.recv()?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= self.buf.len() {
                let header = NetlinkBuffer::new_checked(&self.buf[off..]).map_err(decode_err)?;
                let (start, len) = (off, header.length() as usize);
                off += (len + 3) & !3;
                // Left over from an earlier request abandoned on error.
                if header.sequence_number() != self.seq {
                    continue;
                }
                interrupted |= header.flags() & NLM_F_DUMP_INTR != 0;
                let body = &self.buf[start + NLMSG_HDRLEN..start + len];
                match header.message_type() {
                    // Both start with an errno (0: success), followed, for
                    // an error, by the echoed request, for DONE by nothing,
                    // and then the extended-ACK TLVs.
                    t @ (NLMSG_ERROR | NLMSG_DONE) => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno == 0 {
                            return Ok(interrupted);
                        }
                        let tlvs = match t {
                            NLMSG_ERROR => ack_tlvs(header.flags(), &body[4..]),
                            _ if header.flags() & NLM_F_ACK_TLVS != 0 => &body[4..],
                            _ => &[],
                        };
                        return Err(kernel_error(-errno, tlvs));
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => return Err(Error::internal("receive: overrun")),
                    t => each(t, &self.buf[start..start + len])?,
                }
            }
        }
    }

    /// Receives one datagram into `self.buf`, in one `recv`: the buffer
    /// holds any reply we ask for (dumps come in datagrams of at most
    /// 32 KiB; a link's own reply is a few KiB, as we never ask for VF info),
    /// and a larger one is an error, not a silently truncated reply.
    fn recv(&mut self) -> Result<()> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_TRUNC) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::os("receive", e)),
                Ok(size) if size > self.buf.len() => {
                    return Err(Error::internal(format!(
                    "receive: a {size}-byte netlink reply does not fit the {RECV_BUF}-byte buffer"
                )))
                }
                Ok(_) => return Ok(()),
            }
        }
    }
}

/// The generic decoder of replies.
fn decode(_: u16, msg: &[u8]) -> Result<Option<RouteNetlinkMessage>> {
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg).map_err(decode_err)?;
    Ok(match msg.payload {
        NetlinkPayload::InnerMessage(m) => Some(m),
        _ => None,
    })
}

fn into_ok<T>(
    mut read: impl FnMut(u16, &[u8]) -> Option<T>,
) -> impl FnMut(u16, &[u8]) -> Result<Option<T>> {
    move |t, msg| Ok(read(t, msg))
}

fn decode_err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("decode reply: {e}"))
}

/// A NACK: the errno (kept for `is_not_found`/`is_exists`) and the kernel's
/// extended-ACK message, if any.
fn kernel_error(errno: i32, tlvs: &[u8]) -> Error {
    let err = io::Error::from_raw_os_error(errno);
    let mut e = match ack_message(tlvs) {
        Some(r) => Error::internal(format!("{err} ({r})")),
        None => Error::internal(err.to_string()),
    };
    e.errno = Some(errno);
    e
}

/// 0..=`max` ms, from the clock's nanoseconds and the process id.
fn jitter(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    (nanos ^ u64::from(std::process::id())) % (max + 1)
}
