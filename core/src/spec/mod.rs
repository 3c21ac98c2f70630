//! CNI wire types for spec versions 0.1.0 to 1.1.0.

pub mod args;
pub mod config;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use config::{valid_id, Attachment, NetConf};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};

use serde::Serialize;
use serde_json::Value;

/// The reply to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VersionReply {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

/// Results and errors as libcni prints them: 4-space indent, no newline.
pub fn to_pretty(v: &impl Serialize) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => Value::Null.to_string(),
    }
}
