//! nuage-core: the layer every nuage CNI plugin stands on.
//!
//! One module per concern:
//! - [`spec`]: the CNI wire types of every version, version negotiation and
//!   result conversion;
//! - [`skel`]: the plugin entry point (`CNI_*` environment + stdin -> a verb
//!   call -> stdout), with the reference skel's observable behaviour;
//! - [`error`]: the error type, which knows its CNI code;
//! - [`netns`]: network namespace handles, safe entry, and the "is this really
//!   a netns" check;
//! - [`netlink`]: a small synchronous rtnetlink client, one socket per namespace;
//! - [`sysctl`]: per-namespace `/proc/sys` reads and writes;
//! - [`sysfs`]: link attributes only `/sys/class/net` shows;
//! - [`ifconfig`]: an IPAM result applied to a container interface;
//! - [`delegate`]: running another plugin (IPAM) from `CNI_PATH`;
//! - [`child`]: child processes (`nft`, delegates) that die with the plugin;
//! - [`file`]: small state files replaced whole;
//! - [`nft`]: ipMasq and macspoofchk in nftables tables of our own, O(1) per container;
//! - [`rollback`]: undo steps for an ADD that fails half-way;
//! - [`log`]: one line per operation, to stderr or a log file, never stdout;
//! - [`alloc`]: the plugins' bump allocator (short-lived processes).

pub mod alloc;
pub mod child;
pub mod delegate;
pub mod error;
pub mod file;
pub mod flock;
pub mod ifconfig;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod rollback;
pub mod skel;
pub mod spec;
pub mod sysctl;
pub mod sysfs;

pub use error::{Code, Error, ErrorReply, Errors, Result, ResultExt};
