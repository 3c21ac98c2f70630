//! The one rtnetlink request `nuage_core::netlink` has no method for yet:
//! moving a link to another namespace *and* renaming it in one request. A
//! single request/ACK exchange on a socket of the calling thread's
//! namespace; to be replaced by a core method when there is one.

use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nuage_core::netns::NetNs;
use nuage_core::{Error, Result};

/// Moves link `index` (of the calling thread's namespace) into `ns`, named
/// `name` there.
///
/// Kernel behaviour this relies on: `do_setlink` first changes the
/// namespace, taking `name` right away when the link's current name is
/// already used in `ns`, then renames the link to `name`. So the link never
/// shows up in `ns` under a colliding name, and there is no window where it
/// is renamed in the namespace it leaves (which udev and NetworkManager race
/// with). The move sets the link down and flushes its addresses and routes.
/// `EEXIST`: `name` is taken in `ns` (then the link may have moved under
/// its old name: callers check `name` is free first).
///
/// Equivalent to: `ip link set dev <index> netns <ns> name <name>`
pub fn move_link(index: u32, ns: &NetNs, name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    request(RouteNetlinkMessage::SetLink(msg)).map_err(|e| {
        e.context(format!(
            "netlink: move link {index} to netns {} as {name:?}",
            ns.path().display()
        ))
    })
}

fn request(msg: RouteNetlinkMessage) -> Result<()> {
    let os = |what: &str, e| Error::os(what, e);
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| os("open socket", e))?;
    sock.bind_auto().map_err(|e| os("bind", e))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| os("connect", e))?;
    let mut packet = NetlinkMessage::from(msg);
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    sock.send(&bytes, 0).map_err(|e| os("send", e))?;
    // The only reply to a change request is its ACK (or NACK), which echoes
    // the request: a buffer of twice its size is enough.
    let mut buf = Vec::with_capacity(bytes.len() * 2 + 64);
    sock.recv(&mut buf, 0).map_err(|e| os("receive", e))?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
        .map_err(|e| Error::internal(format!("decode reply: {e}")))?;
    match reply.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => {
                let errno = -code.get();
                let mut err = Error::internal(std::io::Error::from_raw_os_error(errno).to_string());
                err.errno = Some(errno);
                Err(err)
            }
        },
        other => Err(Error::internal(format!("unexpected reply {other:?}"))),
    }
}
