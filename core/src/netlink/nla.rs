//! Netlink attributes read from raw bytes, for the messages decoded without
//! `netlink-packet-route`: link replies ([`super::linkmsg`]), netconf, and
//! the ACKs of both our netlink families (rtnetlink, nf_tables).

/// `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The attributes in `buf` as (type without the nested/byte-order flags,
/// payload); stops at the first malformed one.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(buf, 0)?);
        let kind = u16_at(buf, 2)? & 0x3fff;
        let payload = buf.get(4..len)?;
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
        Some((kind, payload))
    })
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The extended-ACK attributes of an NLMSG_ERROR message (`flags` from its
/// header, `payload` after its errno): they follow the echoed request, cut
/// to its header when the ACK is capped.
pub(crate) fn ack_tlvs(flags: u16, payload: &[u8]) -> &[u8] {
    if flags & NLM_F_ACK_TLVS == 0 {
        return &[];
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32_at(payload, 0).map_or(0, |n| n as usize)
    };
    payload.get((echoed + 3) & !3..).unwrap_or_default()
}

/// The kernel's message (`NLMSGERR_ATTR_MSG`) among extended-ACK
/// attributes, if there is a non-empty one.
pub(crate) fn ack_message(tlvs: &[u8]) -> Option<String> {
    let (_, msg) = attrs(tlvs).find(|(kind, _)| *kind == NLMSGERR_ATTR_MSG)?;
    let msg = String::from_utf8_lossy(msg);
    let msg = msg.trim_end_matches('\0');
    (!msg.is_empty()).then(|| msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    #[test]
    fn ack_messages_capped_uncapped_and_absent() {
        let msg = [
            attr(2, &[0; 4]),
            attr(NLMSGERR_ATTR_MSG, b"Unknown device type\0"),
        ]
        .concat();
        // Capped: the echoed request is its 16-byte header.
        let capped = [vec![0; NLMSG_HDRLEN], msg.clone()].concat();
        let tlvs = ack_tlvs(NLM_F_ACK_TLVS | NLM_F_CAPPED, &capped);
        assert_eq!(ack_message(tlvs).as_deref(), Some("Unknown device type"));
        // Not capped: the whole request (22 bytes, padded to 24) is echoed.
        let mut echoed = 22u32.to_ne_bytes().to_vec();
        echoed.resize(24, 0);
        let full = [echoed, msg].concat();
        assert_eq!(
            ack_message(ack_tlvs(NLM_F_ACK_TLVS, &full)).as_deref(),
            Some("Unknown device type")
        );
        // No TLVs flag, an empty message, nothing at all.
        assert_eq!(ack_tlvs(0, &full), b"");
        assert_eq!(ack_message(&attr(NLMSGERR_ATTR_MSG, b"\0")), None);
        assert_eq!(ack_message(&[]), None);
    }

    #[test]
    fn attrs_stop_at_the_first_malformed_one() {
        let buf = [attr(1, b"ab"), attr(3 | 0x8000, &[7; 4]), vec![3, 0, 9, 0]].concat();
        let got: Vec<(u16, Vec<u8>)> = attrs(&buf).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(got, [(1, b"ab".to_vec()), (3, vec![7; 4])]);
    }
}
