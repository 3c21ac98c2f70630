//! The `host-local` IPAM executable.

/// A bump allocator: this process lives for one CNI operation (see
/// `nuage_core::alloc`).
#[global_allocator]
static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();

fn main() {
    nuage_core::skel::run(&nuage_ipam::HostLocal)
}
