//! Helpers shared by this crate's integration tests.

use std::path::PathBuf;

pub use netns_tests::cni::*;

pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ptp"))
}
