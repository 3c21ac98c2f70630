//! The `host-local` IPAM executable.

fn main() {
    nuage_core::skel::run(&nuage_ipam::HostLocal)
}
