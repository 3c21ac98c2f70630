//! [`Link`] read straight from the bytes of an RTM_NEWLINK message.
//!
//! A link's reply carries ~1.5 KiB of attributes (bridge options, the IPv4
//! and IPv6 settings arrays...) of which a plugin needs a dozen. Decoding all
//! of them into `netlink-packet-route`'s types took 12 us per message, and
//! 40 us in a fresh process (its many decoders are cold code), several times
//! per ADD; walking the attributes for the few we keep takes ~1 us.

use super::nla::{attrs, u32_at, NLMSG_HDRLEN};
use super::{mac6, BridgePort, Link};

/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;

const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;
const IF_OPER_UP: u8 = 6;
const AF_INET6: u16 = 10;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_LINK_NETNSID: u16 = 37;

const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const IFLA_INET6_CONF: u16 = 2;
/// Index of `accept_ra` in `IFLA_INET6_CONF` (`DEVCONF_ACCEPT_RA`).
const DEVCONF_ACCEPT_RA: usize = 3;

impl Link {
    /// The link described by `msg`, an RTM_NEWLINK message (netlink header
    /// included); `None` when it is too short to be one.
    pub(super) fn parse(msg: &[u8]) -> Option<Link> {
        let hdr = msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + IFINFOMSG_LEN)?;
        let flags = u32_at(hdr, 8)?;
        let mut link = Link {
            index: u32_at(hdr, 4)?,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            flags_up: flags & IFF_UP != 0,
            oper_up: false,
            controller: None,
            alias: None,
            link: None,
            link_netnsid: None,
            promisc: flags & IFF_PROMISC != 0,
            macvlan_mode: None,
            bridge_port: None,
            queues: (0, 0),
            ipv6_accept_ra: None,
        };
        for (kind, v) in attrs(&msg[NLMSG_HDRLEN + IFINFOMSG_LEN..]) {
            match kind {
                IFLA_ADDRESS => link.mac = mac6(v),
                IFLA_IFNAME => link.name = string(v),
                IFLA_MTU => link.mtu = u32_at(v, 0).unwrap_or(0),
                IFLA_LINK => link.link = u32_at(v, 0),
                IFLA_MASTER => link.controller = u32_at(v, 0),
                IFLA_OPERSTATE => link.oper_up = v.first() == Some(&IF_OPER_UP),
                IFLA_IFALIAS => link.alias = Some(string(v)),
                IFLA_NUM_TX_QUEUES => link.queues.0 = u32_at(v, 0).unwrap_or(0),
                IFLA_NUM_RX_QUEUES => link.queues.1 = u32_at(v, 0).unwrap_or(0),
                IFLA_LINK_NETNSID => link.link_netnsid = u32_at(v, 0).map(|n| n as i32),
                IFLA_LINKINFO => link_info(&mut link, v),
                IFLA_AF_SPEC => {
                    let v6 = attrs(v).find(|(family, _)| *family == AF_INET6);
                    let conf =
                        v6.and_then(|(_, v6)| attrs(v6).find(|(k, _)| *k == IFLA_INET6_CONF));
                    link.ipv6_accept_ra = conf
                        .and_then(|(_, c)| u32_at(c, 4 * DEVCONF_ACCEPT_RA))
                        .map(|n| n as i32);
                }
                _ => {}
            }
        }
        Some(link)
    }
}

/// `IFLA_LINKINFO`: the kind, a macvlan's mode, a bridge port's flags.
fn link_info(link: &mut Link, info: &[u8]) {
    let (mut data, mut port_kind, mut port_data) = (None, None, None);
    for (kind, v) in attrs(info) {
        match kind {
            IFLA_INFO_KIND => link.kind = Some(string(v)),
            IFLA_INFO_DATA => data = Some(v),
            IFLA_INFO_SLAVE_KIND => port_kind = Some(string(v)),
            IFLA_INFO_SLAVE_DATA => port_data = Some(v),
            _ => {}
        }
    }
    if let (Some("macvlan"), Some(data)) = (link.kind.as_deref(), data) {
        link.macvlan_mode = attrs(data)
            .find(|(k, _)| *k == IFLA_MACVLAN_MODE)
            .and_then(|(_, v)| u32_at(v, 0));
    }
    if let (Some("bridge"), Some(data)) = (port_kind.as_deref(), port_data) {
        let mut port = BridgePort::default();
        for (kind, v) in attrs(data) {
            match kind {
                IFLA_BRPORT_MODE => port.hairpin = v.first().is_some_and(|b| *b != 0),
                IFLA_BRPORT_ISOLATED => port.isolated = v.first().is_some_and(|b| *b != 0),
                _ => {}
            }
        }
        link.bridge_port = Some(port);
    }
}

/// A NUL-terminated attribute string.
fn string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | 0x8000, &parts.concat())
    }

    fn message(index: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![0; NLMSG_HDRLEN];
        m.extend_from_slice(&[0, 0, 1, 0]); // family, pad, type (ARPHRD_ETHER)
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend(attrs.concat());
        m
    }

    #[test]
    fn reads_the_attributes_a_plugin_uses() {
        let conf: Vec<u8> = [1i32, 64, 1500, 2, 1]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let msg = message(
            7,
            IFF_UP | IFF_PROMISC,
            &[
                attr(IFLA_IFNAME, b"mv0\0"),
                attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 9]),
                attr(IFLA_MTU, &1400u32.to_ne_bytes()),
                attr(IFLA_OPERSTATE, &[IF_OPER_UP]),
                attr(IFLA_LINK, &3u32.to_ne_bytes()),
                attr(IFLA_LINK_NETNSID, &(-1i32).to_ne_bytes()),
                attr(IFLA_IFALIAS, b"uplink\0"),
                attr(IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes()),
                attr(IFLA_NUM_RX_QUEUES, &2u32.to_ne_bytes()),
                nested(
                    IFLA_LINKINFO,
                    &[
                        attr(IFLA_INFO_KIND, b"macvlan\0"),
                        nested(
                            IFLA_INFO_DATA,
                            &[attr(IFLA_MACVLAN_MODE, &4u32.to_ne_bytes())],
                        ),
                        attr(IFLA_INFO_SLAVE_KIND, b"bridge\0"),
                        nested(
                            IFLA_INFO_SLAVE_DATA,
                            &[
                                attr(IFLA_BRPORT_MODE, &[1]),
                                attr(IFLA_BRPORT_ISOLATED, &[0]),
                            ],
                        ),
                    ],
                ),
                nested(
                    IFLA_AF_SPEC,
                    &[
                        nested(2, &[attr(1, &[0; 16])]), // AF_INET: ignored
                        nested(
                            AF_INET6,
                            &[
                                attr(1, &[0; 4]),
                                attr(5, &[0xff; 16]), // IFLA_INET6_CACHEINFO
                                attr(IFLA_INET6_CONF, &conf),
                            ],
                        ),
                    ],
                ),
            ],
        );
        let l = Link::parse(&msg).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.mtu), (7, "mv0", 1400));
        assert_eq!(l.mac, Some([2, 0, 0, 0, 0, 9]));
        assert!(l.flags_up && l.promisc && l.oper_up);
        assert_eq!((l.link, l.link_netnsid), (Some(3), Some(-1)));
        assert_eq!(l.alias.as_deref(), Some("uplink"));
        assert_eq!(l.queues, (1, 2));
        assert_eq!(
            (l.kind.as_deref(), l.macvlan_mode),
            (Some("macvlan"), Some(4))
        );
        assert_eq!(
            l.bridge_port,
            Some(BridgePort {
                hairpin: true,
                isolated: false
            })
        );
        assert_eq!(l.ipv6_accept_ra, Some(2));
        assert_eq!(l.controller, None);
    }

    #[test]
    fn short_or_malformed_input_never_panics() {
        let good = message(
            2,
            0,
            &[
                attr(IFLA_IFNAME, b"eth0\0"),
                attr(IFLA_MTU, &1500u32.to_ne_bytes()),
            ],
        );
        for cut in 0..good.len() {
            let l = Link::parse(&good[..cut]);
            assert_eq!(l.is_some(), cut >= NLMSG_HDRLEN + IFINFOMSG_LEN, "{cut}");
        }
        let l = Link::parse(&good).unwrap();
        assert_eq!((l.name.as_str(), l.mtu, l.kind), ("eth0", 1500, None));
        // An attribute claiming more than there is, or less than a header.
        for bad in [
            attr(IFLA_MTU, &[1]),
            vec![200, 0, 4, 0, 1],
            vec![2, 0, 4, 0],
        ] {
            let l = Link::parse(&message(2, 0, &[bad])).unwrap();
            assert_eq!(l.mtu, 0);
        }
    }
}
