//! Link attributes that only sysfs shows (`/sys/class/net/<name>/...`).
//!
//! Kernel quirk: sysfs shows the links of the network namespace it was
//! mounted for, not the reader's. A plugin run in another namespace than
//! its `/sys` (a runtime that entered the host namespace without remounting
//! sysfs) would read another link of the same name: every read here is
//! checked against the link's index and gives `None` when it does not match.

use std::fs;

const CLASS_NET: &str = "/sys/class/net";

/// `addr_assign_type` says who chose a link's MAC.
pub const NET_ADDR_PERM: u8 = 0;
/// The kernel chose it at random.
pub const NET_ADDR_RANDOM: u8 = 1;
/// Taken from another device (a bridge's from its lowest port).
pub const NET_ADDR_STOLEN: u8 = 2;
/// Set by the user: a bridge then keeps it as ports come and go.
pub const NET_ADDR_SET: u8 = 3;

/// How the MAC of link `name` (index `index`) was assigned, one of the
/// `NET_ADDR_*` values; `None` when this sysfs does not show that link.
///
/// Equivalent to: `cat /sys/class/net/<name>/addr_assign_type`
pub fn addr_assign_type(name: &str, index: u32) -> Option<u8> {
    // Interface names never hold '/', but this is a path: check anyway.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let read = |attr: &str| fs::read_to_string(format!("{CLASS_NET}/{name}/{attr}")).ok();
    if read("ifindex")?.trim().parse::<u32>().ok()? != index {
        return None;
    }
    read("addr_assign_type")?.trim().parse().ok()
}
