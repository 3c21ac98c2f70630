//! The one rtnetlink request `nuage_core::netlink` has no method for yet:
//! changing a macvlan's broadcast queue length (`bcqueuelen`). A single
//! request/ACK exchange on a socket of the calling thread's namespace; to be
//! replaced by a core method when there is one.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nuage_core::{Error, Result};

/// Sets `bcqueuelen` on the macvlan `index`: an RTM_NEWLINK without
/// NLM_F_CREATE on an existing link is the kernel's "changelink" (RTM_SETLINK
/// ignores IFLA_INFO_DATA). Needs kernel 5.11.
///
/// Equivalent to: `ip link set dev <index> type macvlan bcqueuelen <len>`
pub fn set_bcqueuelen(index: u32, len: u32) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::BcQueueLen(len)])),
    ]));
    request(RouteNetlinkMessage::NewLink(msg))
        .map_err(|e| e.context(format!("netlink: set bcqueuelen {len} on link {index}")))
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
