//! CNI wire types for spec versions 0.1.0 to 1.1.0.

pub mod args;
pub mod config;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use config::{valid_id, Attachment, KeyChecks, NetConf};
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

/// A decoding error in JSON's words, not Rust's: "expected u32" becomes
/// "expected a non-negative integer", "expected struct Dns" "expected an
/// object", and so on (the key and value are already in the message).
pub fn plain_decode_error(e: impl std::fmt::Display) -> String {
    let mut s = e.to_string();
    for (rust, json) in [
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("expected usize", "expected a non-negative integer"),
        ("expected u8", "expected an integer from 0 to 255"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
    ] {
        s = s.replace(rust, json);
    }
    // "expected struct Dns" / "expected struct Attachment"
    while let Some(i) = s.find("expected struct ") {
        let end = s[i + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(s.len(), |j| i + 16 + j);
        s.replace_range(i..end, "expected an object");
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_in_json_words() {
        assert_eq!(
            plain_decode_error("mtu: invalid type: string \"x\", expected i64"),
            "mtu: invalid type: string \"x\", expected an integer"
        );
        assert_eq!(
            plain_decode_error("invalid type: integer `5`, expected struct Dns at line 1"),
            "invalid type: integer `5`, expected an object at line 1"
        );
        assert_eq!(
            plain_decode_error("invalid value: integer `-1`, expected usize"),
            "invalid value: integer `-1`, expected a non-negative integer"
        );
    }
}
