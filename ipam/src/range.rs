//! Address ranges and range sets (host-local's `ranges`), with the reference
//! plugin's defaults, validation messages and allocation order.
//!
//! A [`Range`] is one subnet with an allocatable window `start..=end` and a
//! gateway; a [`RangeSet`] is a pool of disjoint ranges of one family from
//! which one address is allocated. Defaults (as the reference):
//! `gateway` = network + 1, `rangeStart` = network + 1 (the gateway is then
//! skipped, so the first address handed out is .2), `rangeEnd` = broadcast - 1
//! for IPv4 and the last address for IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// An address as a number, for arithmetic (IPv4 in the low 32 bits).
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_u128`] for the given family.
pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        // Callers only produce values inside an IPv4 subnet.
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// One range as written in the config, before defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    /// `subnet`, as written (host bits are an error, reported by [`Range::new`]).
    pub subnet: IpNetwork,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A validated range with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNetwork,
    /// First allocatable address (inclusive).
    pub start: IpAddr,
    /// Last allocatable address (inclusive).
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    /// Applies the defaults and validates, with the reference's messages.
    pub fn new(spec: &RangeSpec) -> Result<Range, String> {
        let subnet = spec.subnet;
        let (prefix, bits) = (subnet.prefix(), if subnet.is_ipv4() { 32 } else { 128 });
        if prefix > bits - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        // The reference takes it, and a bridge then puts a route to every
        // address (a second default route) on the host.
        if prefix == 0 {
            return Err(format!(
                "Network {subnet} covers every address: use a prefix of /1 or longer"
            ));
        }
        let network = subnet.network();
        if subnet.ip() != network {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {prefix} the network address is {network}"
            ));
        }
        let v4 = subnet.is_ipv4();
        let base = to_u128(network);
        let host_mask = if prefix == 0 && !v4 {
            u128::MAX
        } else {
            (1u128 << (bits - prefix)) - 1
        };
        let last = base | host_mask;
        let first_host = from_u128(base + 1, v4);
        let in_subnet = |ip: IpAddr| ip.is_ipv4() == v4 && subnet.contains(ip);

        let gateway = match spec.gateway {
            None => first_host,
            Some(gw) if in_subnet(gw) => gw,
            Some(gw) => return Err(format!("gateway {gw} not in network {subnet}")),
        };
        let start = match spec.range_start {
            None => first_host,
            Some(ip) if in_subnet(ip) => ip,
            Some(ip) => return Err(format!("RangeStart {ip} not in network {subnet}")),
        };
        let end = match spec.range_end {
            None => from_u128(if v4 { last - 1 } else { last }, v4),
            Some(ip) if in_subnet(ip) => ip,
            Some(ip) => return Err(format!("RangeEnd {ip} not in network {subnet}")),
        };
        if to_u128(start) > to_u128(end) {
            return Err(format!(
                "RangeStart {start} is after RangeEnd {end} in network {subnet}"
            ));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Whether `ip` is allocatable here: same family, in the subnet, and
    /// within `start..=end` (the gateway is *not* excluded).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.subnet.is_ipv4()
            && self.subnet.contains(ip)
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    /// Whether the two ranges share an address (never across families).
    pub fn overlaps(&self, other: &Range) -> bool {
        self.subnet.is_ipv4() == other.subnet.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }

    /// How many addresses can be handed out (the window minus the gateway).
    pub fn capacity(&self) -> u128 {
        let size = to_u128(self.end) - to_u128(self.start) + 1;
        size - u128::from(self.contains(self.gateway))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A pool of disjoint ranges of one family; one address is allocated per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(Vec<Range>);

impl RangeSet {
    /// Validates every range, then the set: non-empty, one family, no overlap.
    pub fn new(specs: &[RangeSpec]) -> Result<RangeSet, String> {
        if specs.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = specs
            .iter()
            .map(Range::new)
            .collect::<Result<Vec<_>, _>>()?;
        let v4 = ranges[0].subnet.is_ipv4();
        if ranges.iter().any(|r| r.subnet.is_ipv4() != v4) {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(format!("subnets {a} and {b} overlap"));
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[0].subnet.is_ipv4()
    }

    /// The range that holds `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// How many addresses the whole set can hand out.
    pub fn capacity(&self) -> u128 {
        self.0.iter().map(Range::capacity).sum()
    }

    /// The candidates in the reference's order: starting after `last` (the
    /// set's `last_reserved_ip`) when it lies in the set, else at the first
    /// range's start; the gateway is skipped, ranges are walked in order and
    /// wrap around, and iteration stops after one full cycle.
    pub fn candidates(&self, last: Option<IpAddr>) -> Candidates<'_> {
        let resume =
            last.and_then(|ip| self.0.iter().position(|r| r.contains(ip)).map(|i| (i, ip)));
        match resume {
            Some((idx, ip)) => Candidates {
                set: self,
                idx,
                cur: Some(to_u128(ip)),
                first: None,
                done: false,
            },
            None => Candidates {
                set: self,
                idx: 0,
                cur: None,
                first: None,
                done: false,
            },
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Iterator over allocation candidates, see [`RangeSet::candidates`].
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<u128>,
    /// The first candidate produced: seeing it again ends the cycle.
    first: Option<u128>,
    done: bool,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let ranges = &self.set.0;
        while !self.done {
            let mut r = &ranges[self.idx];
            let cur = match self.cur {
                None => {
                    let s = to_u128(r.start);
                    self.first = Some(s);
                    s
                }
                Some(c) => {
                    let next = if c == to_u128(r.end) {
                        self.idx = (self.idx + 1) % ranges.len();
                        r = &ranges[self.idx];
                        to_u128(r.start)
                    } else {
                        c + 1
                    };
                    match self.first {
                        None => self.first = Some(next),
                        Some(f) if f == next => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    next
                }
            };
            self.cur = Some(cur);
            let ip = from_u128(cur, r.subnet.is_ipv4());
            if ip != r.gateway {
                return Some((ip, r));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: subnet.parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ips(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(ip))
            .map(|(a, _)| a.to_string())
            .collect()
    }

    #[test]
    fn defaults() {
        let r = Range::new(&spec("10.1.2.0/24")).unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
        );
        assert_eq!(r.capacity(), 253);
        let r = Range::new(&spec("fd00::/120")).unwrap();
        assert_eq!((r.start, r.end), (ip("fd00::1"), ip("fd00::ff")));
        let r = Range::new(&spec("8000::/1")).unwrap();
        assert_eq!(r.end, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(
            r.to_string(),
            "8000::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        for all in ["::/0", "0.0.0.0/0"] {
            let e = Range::new(&spec(all)).unwrap_err();
            assert!(e.contains("covers every address"), "{e}");
        }
    }

    #[test]
    fn reference_messages() {
        let err = |s: RangeSpec| Range::new(&s).unwrap_err();
        assert_eq!(
            err(spec("10.0.0.0/31")),
            "Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(spec("fd00::/127")),
            "Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            err(spec("10.0.0.1/24")),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0"
        );
        let mut s = spec("10.0.0.0/24");
        s.gateway = Some(ip("fd00::1"));
        assert_eq!(err(s.clone()), "gateway fd00::1 not in network 10.0.0.0/24");
        s.gateway = Some(ip("10.0.1.1"));
        assert_eq!(err(s), "gateway 10.0.1.1 not in network 10.0.0.0/24");
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.1.1"));
        assert_eq!(err(s), "RangeStart 10.0.1.1 not in network 10.0.0.0/24");
        let mut s = spec("10.0.0.0/24");
        s.range_end = Some(ip("fd00::1"));
        assert_eq!(err(s), "RangeEnd fd00::1 not in network 10.0.0.0/24");
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.0.100"));
        s.range_end = Some(ip("10.0.0.50"));
        assert!(err(s).starts_with("RangeStart 10.0.0.100 is after RangeEnd 10.0.0.50"));
    }

    #[test]
    fn set_validation() {
        assert_eq!(RangeSet::new(&[]).unwrap_err(), "empty range set");
        assert_eq!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("fd00::/64")]).unwrap_err(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("10.0.0.0/25")]).unwrap_err(),
            "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.126 overlap"
        );
        let a = RangeSet::new(&[spec("10.0.0.0/24")]).unwrap();
        let b = RangeSet::new(&[spec("10.0.1.0/24")]).unwrap();
        let c = RangeSet::new(&[spec("fd00::/64")]).unwrap();
        assert!(!a.overlaps(&b) && !a.overlaps(&c) && a.overlaps(&a));
        assert_eq!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("10.0.1.0/24")])
                .unwrap()
                .to_string(),
            "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254"
        );
    }

    #[test]
    fn order_from_scratch_skips_gateway_and_wraps() {
        let set = RangeSet::new(&[spec("10.0.0.0/29"), spec("10.0.1.0/30")]).unwrap();
        assert_eq!(
            ips(&set, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"]
        );
        // Resumes after the last reserved address and wraps across ranges.
        assert_eq!(
            ips(&set, Some("10.0.0.5")),
            ["10.0.0.6", "10.0.1.2", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        );
        assert_eq!(
            ips(&set, Some("10.0.1.2")),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"]
        );
        // A last address outside the set is ignored.
        assert_eq!(ips(&set, Some("192.168.0.1")).len(), 6);
    }

    #[test]
    fn order_with_explicit_window_and_gateway() {
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.0.10"));
        s.range_end = Some(ip("10.0.0.12"));
        s.gateway = Some(ip("10.0.0.11"));
        let set = RangeSet::new(&[s]).unwrap();
        assert_eq!(ips(&set, None), ["10.0.0.10", "10.0.0.12"]);
        assert_eq!(ips(&set, Some("10.0.0.10")), ["10.0.0.12", "10.0.0.10"]);
        assert_eq!(set.capacity(), 2);
        // A set holding only its gateway yields nothing and terminates.
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.0.1"));
        s.range_end = Some(ip("10.0.0.1"));
        let set = RangeSet::new(&[s]).unwrap();
        assert!(ips(&set, None).is_empty());
        assert!(ips(&set, Some("10.0.0.1")).is_empty());
    }

    #[test]
    fn ipv6_order() {
        let set = RangeSet::new(&[spec("fd00::/126")]).unwrap();
        assert_eq!(ips(&set, None), ["fd00::2", "fd00::3"]);
    }
}
