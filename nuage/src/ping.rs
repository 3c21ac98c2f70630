//! ICMP echo from inside a namespace, so the demo needs no `ping` binary.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn,
};
use nix::sys::time::TimeVal;
use nuage_core::netns::NetNs;
use nuage_core::{Error, Result};

/// What `count` echo requests to one address gave.
#[derive(Debug, Clone, Copy)]
pub struct PingStats {
    pub sent: u16,
    pub received: u16,
    /// The mean round-trip time of the replies.
    pub rtt: Option<Duration>,
}

impl std::fmt::Display for PingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} replies", self.received, self.sent)?;
        if let Some(rtt) = self.rtt {
            write!(f, ", rtt {:.3} ms", rtt.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// Sends `count` ICMP echo requests to `dst` from namespace `ns` (a raw
/// socket created inside it), waiting up to `timeout` for each reply.
///
/// Equivalent to: `ip netns exec <ns> ping -c <count> -W <timeout> <dst>`
pub fn ping(ns: &NetNs, dst: Ipv4Addr, count: u16, timeout: Duration) -> Result<PingStats> {
    let os = |what: &str, e: nix::Error| Error::os(format!("ping {dst}: {what}"), e.into());
    let fd = ns
        .run(|| {
            socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            )
        })?
        .map_err(|e| os("open raw ICMP socket", e))?;
    let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(|e| os("set timeout", e))?;
    let id = (std::process::id() & 0xffff) as u16;
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let mut stats = PingStats {
        sent: 0,
        received: 0,
        rtt: None,
    };
    let mut total = Duration::ZERO;
    for seq in 1..=count {
        let started = Instant::now();
        sendto(
            fd.as_raw_fd(),
            &echo_request(id, seq),
            &to,
            MsgFlags::empty(),
        )
        .map_err(|e| os("send", e))?;
        stats.sent += 1;
        let mut buf = [0u8; 1500];
        while started.elapsed() < timeout {
            let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => break,
                Err(e) => return Err(os("receive", e)),
            };
            if is_reply(&buf[..n], dst, id, seq) {
                stats.received += 1;
                total += started.elapsed();
                break;
            }
        }
    }
    if stats.received > 0 {
        stats.rtt = Some(total / u32::from(stats.received));
    }
    Ok(stats)
}

/// Type 8 (echo request), code 0, checksum, identifier, sequence, payload.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"nuage demo ping!");
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// A raw ICMP socket receives the IPv4 header too: an echo reply (type 0)
/// from `from` with our identifier and sequence.
fn is_reply(pkt: &[u8], from: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Some(&first) = pkt.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if pkt.len() < ihl + 8 || pkt[12..16] != from.octets() {
        return false;
    }
    let icmp = &pkt[ihl..];
    icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }
}
