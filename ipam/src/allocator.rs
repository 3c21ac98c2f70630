//! One address from one range set, in the reference's order, reserved
//! atomically in the [`Store`].
//!
//! Cost: the duplicate check is an index lookup, and each candidate is one
//! `linkat` (EEXIST when taken), starting right after the set's last
//! reserved address. A range that is allocated round-robin therefore finds
//! a free address at once however many leases it holds. When the walk
//! wraps into a densely leased part of the range, the directory is listed
//! once and taken addresses are skipped in memory.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nuage_core::spec::IpConfig;
use nuage_core::{Code, Error, Result};

use crate::range::{Range, RangeSet};
use crate::store::Store;

/// Taken candidates in a row after which the directory is listed once, at
/// least; see [`dense_run`].
const DENSE_RUN: u128 = 64;

/// After how many taken candidates listing the store once (every lease
/// name, ~0.6 us each) beats going on probing one address at a time (a
/// `linkat`, 2-5 us each): 1/16 of the leases, so that a free address a
/// few hundred candidates away costs that many probes, not a listing of
/// 60,000 names, and a walk through a nearly full range at most doubles.
fn dense_run(leases: u64) -> u128 {
    DENSE_RUN.max(u128::from(leases) / 16)
}

/// An allocation request for one range set.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The network name, for messages.
    pub network: &'a str,
    /// The range set's index (names its `last_reserved_ip.<index>`).
    pub index: usize,
    pub set: &'a RangeSet,
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// A specific address (`IP=`, `args.cni.ips`, `runtimeConfig.ips`).
    pub requested: Option<IpAddr>,
}

/// Reserves one address of `req.set` and returns it with its prefix and gateway.
///
/// Errors: a requested address that is the gateway or is taken is code 111
/// ([`Code::AddressUnavailable`]); an exhausted set is code 110
/// ([`Code::RangeExhausted`]); a second allocation for the same attachment
/// in the same set is refused, as the reference does.
pub fn allocate(store: &mut Store, req: &Request<'_>) -> Result<IpConfig> {
    let set = req.set;
    if let Some(ip) = req.requested {
        let range = set.range_for(ip).ok_or_else(|| {
            Error::new(
                Code::AddressUnavailable,
                format!("{ip} not in range set {set}"),
            )
        })?;
        if ip == range.gateway {
            return Err(Error::new(
                Code::AddressUnavailable,
                format!("requested ip {ip} is subnet's gateway"),
            ));
        }
        let lease = store.new_lease(req.container_id, req.ifname)?;
        if !store.try_reserve(&lease, ip, req.index)? {
            let holder = store
                .holder(ip)
                .map(|h| format!(": it is held by {h}"))
                .unwrap_or_default();
            return Err(Error::new(
                Code::AddressUnavailable,
                format!("requested IP address {ip} is not available in range set {set}{holder}"),
            ));
        }
        return Ok(config(ip, range));
    }

    for ifname in [req.ifname, ""] {
        if let Some(ip) = store
            .held_by(req.container_id, ifname)?
            .into_iter()
            .find(|ip| set.contains(*ip))
        {
            return Err(Error::internal(format!(
                "{ip} has been allocated to {}, duplicate allocation is not allowed",
                req.container_id
            ))
            .with_details(format!(
                "container {} interface {} already holds {ip}: DEL it before adding it again",
                req.container_id, req.ifname
            )));
        }
    }

    let lease = store.new_lease(req.container_id, req.ifname)?;
    let dense = dense_run(store.size_hint());
    let mut in_use: u128 = 0;
    // After a run of taken addresses (a wrap into a dense part of the range),
    // list the directory once and skip the taken ones without a syscall each.
    let mut taken: Option<HashSet<IpAddr>> = None;
    for (ip, range) in set.candidates(store.last_reserved(req.index)) {
        if taken.as_ref().is_some_and(|t| t.contains(&ip)) {
            in_use += 1;
            continue;
        }
        if store.try_reserve(&lease, ip, req.index)? {
            return Ok(config(ip, range));
        }
        in_use += 1;
        if in_use == dense && taken.is_none() {
            taken = Some(store.leased()?);
        }
    }
    Err(Error::new(
        Code::RangeExhausted,
        format!(
            "no IP addresses available in range set: {set} (network {:?}, range set {}: {in_use} of {} addresses in use)",
            req.network,
            req.index,
            set.capacity()
        ),
    )
    .with_details(format!(
        "leases of containers that are gone are reclaimed by CNI GC (cni.dev/valid-attachments) or by DEL; \
         list them in {}; or widen the range",
        store.dir().display()
    )))
}

fn config(ip: IpAddr, range: &Range) -> IpConfig {
    IpConfig {
        interface: None,
        // The prefix is the subnet's, always valid for an address inside it.
        address: IpNetwork::new(ip, range.subnet.prefix()).unwrap_or(range.subnet),
        gateway: Some(range.gateway),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listing comes after 64 taken candidates, or 1/16 of the leases
    /// when there are more: a free address some hundreds of candidates
    /// away in a big store costs probes, not a listing of every lease.
    #[test]
    fn the_listing_threshold_grows_with_the_store() {
        assert_eq!(dense_run(0), 64);
        assert_eq!(dense_run(1000), 64);
        assert_eq!(dense_run(60_000), 3750);
    }
    use crate::range::RangeSpec;
    use crate::test_util::TempDir;

    fn set(subnet: &str) -> RangeSet {
        RangeSet::new(&[RangeSpec {
            subnet: subnet.parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }])
        .unwrap()
    }

    fn req<'a>(set: &'a RangeSet, id: &'a str, requested: Option<IpAddr>) -> Request<'a> {
        Request {
            network: "net1",
            index: 0,
            set,
            container_id: id,
            ifname: "eth0",
            requested,
        }
    }

    #[test]
    fn round_robin_and_exhaustion() {
        let t = TempDir::new("alloc");
        let mut s = Store::open(&t.0.join("net1")).unwrap();
        let set = set("10.0.0.0/29");
        let mut got = Vec::new();
        for i in 0..5 {
            let id = format!("c{i}");
            let c = allocate(&mut s, &req(&set, &id, None)).unwrap();
            s.record(&id, "eth0", &[c.address.ip()]).unwrap();
            assert_eq!(c.gateway, Some("10.0.0.1".parse().unwrap()));
            got.push(c.address.to_string());
        }
        assert_eq!(
            got,
            [
                "10.0.0.2/29",
                "10.0.0.3/29",
                "10.0.0.4/29",
                "10.0.0.5/29",
                "10.0.0.6/29"
            ]
        );
        let e = allocate(&mut s, &req(&set, "c9", None)).unwrap_err();
        assert_eq!(e.code, Code::RangeExhausted);
        assert!(
            e.msg
                .starts_with("no IP addresses available in range set: 10.0.0.1-10.0.0.6"),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("5 of 5 addresses in use"), "{}", e.msg);
        assert!(e.details.unwrap().contains("GC"));
        // Freed addresses are reused only after the cycle comes round again.
        s.release("c1", "eth0").unwrap();
        let c = allocate(&mut s, &req(&set, "c9", None)).unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.3/29");
    }

    #[test]
    fn duplicates_and_requests() {
        let t = TempDir::new("alloc2");
        let mut s = Store::open(&t.0.join("n")).unwrap();
        let set = set("10.0.0.0/24");
        let c = allocate(&mut s, &req(&set, "c1", None)).unwrap();
        s.record("c1", "eth0", &[c.address.ip()]).unwrap();
        let e = allocate(&mut s, &req(&set, "c1", None)).unwrap_err();
        assert_eq!(
            e.msg,
            "10.0.0.2 has been allocated to c1, duplicate allocation is not allowed"
        );
        let e = allocate(&mut s, &req(&set, "c2", Some("10.0.0.1".parse().unwrap()))).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                Code::AddressUnavailable,
                "requested ip 10.0.0.1 is subnet's gateway"
            )
        );
        let e = allocate(&mut s, &req(&set, "c2", Some("10.0.0.2".parse().unwrap()))).unwrap_err();
        assert_eq!(
            e.msg,
            "requested IP address 10.0.0.2 is not available in range set 10.0.0.1-10.0.0.254: it is held by container c1 (eth0)"
        );
        let c = allocate(&mut s, &req(&set, "c2", Some("10.0.0.77".parse().unwrap()))).unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.77/24");
        // The next dynamic allocation continues after the requested one.
        let c = allocate(&mut s, &req(&set, "c3", None)).unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.78/24");
    }

    #[test]
    fn dense_wrap_skips_taken_addresses() {
        let t = TempDir::new("alloc3");
        let mut s = Store::open(&t.0.join("n")).unwrap();
        let set = set("10.0.0.0/23");
        // Fill all but one address, then point last_reserved at the end.
        for i in 0..509u32 {
            let id = format!("c{i}");
            let c = allocate(&mut s, &req(&set, &id, None)).unwrap();
            s.record(&id, "eth0", &[c.address.ip()]).unwrap();
        }
        s.release("c300", "eth0").unwrap();
        let c = allocate(&mut s, &req(&set, "x", None)).unwrap();
        assert_eq!(c.address.to_string(), "10.0.1.46/23");
        let e = allocate(&mut s, &req(&set, "y", None)).unwrap_err();
        assert!(e.msg.contains("509 of 509 addresses in use"), "{}", e.msg);
    }
}
