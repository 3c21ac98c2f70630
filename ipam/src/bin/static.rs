//! The `static` IPAM executable.

fn main() {
    nuage_core::skel::run(&nuage_ipam::Static)
}
