//! The network configuration a plugin receives on stdin.
//!
//! [`NetConf`] holds the keys every plugin shares; each plugin reads its own
//! keys from [`NetConf::raw`] into a typed struct with [`NetConf::plugin`].
//! Unknown keys are kept in `raw` and passed on unchanged to delegates.
//! Keys are matched case-sensitively (Go's `encoding/json` is lenient about
//! case; configs in the wild use the documented spelling).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::result::Dns;
use super::version;
use crate::{Error, Result};

/// An attachment still in use, as listed to GC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

impl Attachment {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Attachment {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// The name of a file of state kept for this attachment:
    /// `<containerID>:<ifname>.<ext>` (':' is in neither). Container IDs
    /// have no length limit but file names do (255 bytes): a longer name
    /// has `#<sha256 of the container ID>` for the ID (`#` is not in IDs),
    /// so ADD, DEL and GC of any ID agree on one file. Every name that
    /// fits stays plain: files written before the hashing keep their name.
    pub fn file_name(&self, ext: &str) -> String {
        let plain = format!("{}:{}.{ext}", self.container_id, self.ifname);
        if plain.len() <= 255 {
            return plain;
        }
        let id = crate::nft::sha256_hex(&self.container_id);
        format!("#{id}:{}.{ext}", self.ifname)
    }
}

/// The shared keys of a plugin's network configuration.
#[derive(Debug, Clone, Default)]
pub struct NetConf {
    /// `cniVersion`; "0.1.0" when absent, as the reference reads it.
    pub cni_version: String,
    pub name: String,
    /// `type`.
    pub plugin_type: String,
    /// The `ipam` object, if any.
    pub ipam: Option<Value>,
    pub dns: Option<Dns>,
    pub runtime_config: Option<Value>,
    pub args: Option<Value>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments`, falling back to `cni.dev/attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole object as received.
    pub raw: Value,
    /// An `ipam` that does not decode (not an object, a `type` that is not
    /// a string): refused where [`KeyChecks::ipam`] asks; read as absent
    /// meanwhile.
    bad_ipam: Option<Error>,
    /// A `dns` that does not decode: refused where
    /// [`KeyChecks::dns_capabilities`] asks, read as absent by DEL and GC,
    /// which need no DNS to clean up.
    bad_dns: Option<Error>,
}

/// `v` without the `null` members of its objects, at every depth (array
/// elements are kept: Go decodes a `null` element to a zero value).
pub fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9_.\-]*$`, shared by network names and container IDs.
pub fn valid_id(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Which shared keys a verb of a plugin refuses when they have a wrong
/// type ([`NetConf::check_keys`]); see `skel::Plugin::key_checks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyChecks {
    /// `ipam` (an object, with a string `type`).
    pub ipam: bool,
    /// `dns` and `capabilities` (Go's `types.NetConf` declares both).
    pub dns_capabilities: bool,
    /// `runtimeConfig`, `args`, `args.cni`.
    pub runtime: bool,
}

impl KeyChecks {
    pub const NONE: KeyChecks = KeyChecks {
        ipam: false,
        dns_capabilities: false,
        runtime: false,
    };
    pub const ALL: KeyChecks = KeyChecks {
        ipam: true,
        dns_capabilities: true,
        runtime: true,
    };
    pub const IPAM: KeyChecks = KeyChecks {
        ipam: true,
        dns_capabilities: false,
        runtime: false,
    };
}

/// Plugin keys that say what a DEL or GC must clean up (the masquerade,
/// the MAC spoof check): one whose value does not decode is taken as set.
pub const CLEANUP_FLAGS: &[&str] = &["ipMasq", "macspoofchk"];

impl NetConf {
    /// Parses stdin. Decoding errors are code 6, a missing or bad `name` code 7
    /// (the reference skel's checks), bad shared keys code 7 naming the key.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(
                Error::decode("error unmarshall network config: stdin is empty")
                    .with_details("the runtime must send the network configuration on stdin"),
            );
        }
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode(format!("error unmarshall network config: {e}")))?;
        let Value::Object(obj) = &raw else {
            return Err(Error::decode(
                "error unmarshall network config: the network config must be a JSON object",
            ));
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(Error::config("missing network name")
                    .with_details("add a \"name\" key to the network config"))
            }
            Some(other) => {
                return Err(Error::decode(format!(
                    "error unmarshall network config: \"name\" must be a string, got {other}"
                )))
            }
        };
        if !valid_id(&name) {
            return Err(
                Error::config("invalid characters found in network name").with_details(name)
            );
        }
        let cni_version =
            opt_string(obj, "cniVersion")?.unwrap_or_else(|| version::IMPLICIT.into());
        let plugin_type = opt_string(obj, "type")?.unwrap_or_default();
        let mut bad_ipam = None;
        let ipam = match obj.get("ipam") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => match v.get("type") {
                Some(t) if !t.is_string() && !t.is_null() => {
                    bad_ipam = Some(
                        Error::config(format!(
                            "ipam.type must be a string naming the IPAM plugin, got {t}"
                        ))
                        .with_details("e.g. \"type\": \"host-local\""),
                    );
                    None
                }
                _ => Some(v.clone()),
            },
            Some(other) => {
                bad_ipam = Some(Error::config(format!(
                    "\"ipam\" must be an object, got {other}"
                )));
                None
            }
        };
        let mut bad_dns = None;
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => None,
            Some(v) => match serde_json::from_value(without_nulls(v.clone())) {
                Ok(d) => Some(d),
                Err(e) => {
                    bad_dns = Some(Error::config(format!(
                        "\"dns\": {}",
                        super::plain_decode_error(e)
                    )));
                    None
                }
            },
        };
        let attachments_key = if obj.contains_key("cni.dev/valid-attachments") {
            "cni.dev/valid-attachments"
        } else {
            "cni.dev/attachments"
        };
        let valid_attachments = match obj.get(attachments_key) {
            None => None,
            // libcni writes a runtime's empty (nil) list as null: none is
            // valid, as with [].
            Some(Value::Null) => Some(Vec::new()),
            // Read in place: a big node's list is megabytes.
            Some(v) => Some(Vec::<Attachment>::deserialize(v).map_err(|e| {
                Error::config(format!(
                    "\"{attachments_key}\": {}",
                    super::plain_decode_error(e)
                ))
            })?),
        };
        let take = |k: &str| obj.get(k).filter(|v| !v.is_null()).cloned();
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            ipam,
            dns,
            runtime_config: take("runtimeConfig"),
            args: take("args"),
            prev_result: take("prevResult"),
            valid_attachments,
            raw: raw.clone(),
            bad_ipam,
            bad_dns,
        })
    }

    /// ADD of a plugin whose only addresses come from IPAM: a 0.1.0/0.2.0
    /// result cannot be written without one, so such an ADD is refused
    /// before anything is created (the reference fails once it is all
    /// done, and leaves it in place).
    pub fn require_ipam_for_old_result(&self) -> Result<()> {
        if !self.ipam_type().is_empty() || version::at_least(&self.cni_version, "0.3.0") {
            return Ok(());
        }
        Err(
            Error::internal("cannot convert: no valid IP addresses").with_details(format!(
                "a {} result needs at least one IP address and this network has no \"ipam\": add one, or use cniVersion 0.3.0 or later",
                self.cni_version
            )),
        )
    }

    /// ADD and CHECK: a `prevResult` must be an object (code 6 otherwise,
    /// as the reference's decoder). DEL does not ask: a broken one must
    /// not keep it from releasing what the attachment holds.
    pub fn check_prev_result_is_object(&self) -> Result<()> {
        match &self.prev_result {
            None | Some(Value::Object(_)) => Ok(()),
            Some(other) => Err(Error::decode(format!(
                "\"prevResult\" must be a result object, got {other}"
            ))
            .with_details("pass the previous plugin's result, or no prevResult")),
        }
    }

    /// Reads the plugin's own keys into `T` (code 7 naming the key on error).
    /// A `null` value is an absent key, as for Go's decoder (which leaves
    /// the field at its zero value): configs written by Go programs and
    /// templates carry them.
    pub fn plugin<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(without_nulls(self.raw.clone())).map_err(|e| {
            let key = e.path().to_string();
            Error::config(format!(
                "invalid {} config for network {:?}: {key}: {}",
                self.plugin_type,
                self.name,
                super::plain_decode_error(e.into_inner())
            ))
        })
    }

    /// [`NetConf::plugin`] for DEL and GC, which only clean up: a key whose
    /// value does not decode is dropped (its default applies), or, for a
    /// flag in [`CLEANUP_FLAGS`], taken as `true`, with a warning, instead of
    /// failing a DEL the runtime would retry forever
    /// (keys this version reads that the reference's did not, a config
    /// edited since ADD).
    pub fn plugin_lenient<T: DeserializeOwned>(&self) -> Result<T> {
        let mut raw = without_nulls(self.raw.clone());
        loop {
            let e = match serde_path_to_error::deserialize(raw.clone()) {
                Ok(t) => return Ok(t),
                Err(e) => e,
            };
            let key = match e.path().iter().next() {
                Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
                _ => String::new(),
            };
            let Some(o) = raw.as_object_mut().filter(|o| o.contains_key(&key)) else {
                // Not a key's value (the config itself): strict's error.
                return self.plugin();
            };
            // A flag that says what to clean up is taken as set: cleaning
            // by comment touches only this attachment's state. Any other
            // key is dropped (its default applies).
            let how = if CLEANUP_FLAGS.contains(&key.as_str())
                && o.get(&key) != Some(&Value::Bool(true))
            {
                o.insert(key.clone(), Value::Bool(true));
                "taking it as true"
            } else {
                o.remove(&key);
                "ignoring it"
            };
            crate::log::warn(format_args!(
                "{} network {:?}: \"{key}\": {}: {how} for this cleanup",
                self.plugin_type,
                self.name,
                e.into_inner()
            ));
        }
    }

    /// The `ipam.type`, empty when there is no IPAM section.
    pub fn ipam_type(&self) -> &str {
        self.ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Refuses (code 7) the shared keys of `checks` whose wrong type would
    /// otherwise read as "not given" (no IPAM, no runtime settings), as the
    /// reference's decoder refuses the keys its plugin's struct declares.
    pub fn check_keys(&self, checks: KeyChecks) -> Result<()> {
        if checks.ipam {
            if let Some(e) = &self.bad_ipam {
                return Err(e.clone());
            }
        }
        let obj = self.raw.as_object();
        let get = |k: &str| obj.and_then(|o| o.get(k));
        let mut objects = Vec::new();
        if checks.dns_capabilities {
            if let Some(e) = &self.bad_dns {
                return Err(e.clone());
            }
            objects.push(("capabilities", get("capabilities")));
        }
        if checks.runtime {
            objects.push(("runtimeConfig", get("runtimeConfig")));
            objects.push(("args", get("args")));
            objects.push(("args.cni", get("args").and_then(|a| a.get("cni"))));
        }
        for (key, v) in objects {
            if let Some(v) = v.filter(|v| !v.is_object() && !v.is_null()) {
                return Err(Error::config(format!(
                    "\"{key}\" must be an object, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// `runtimeConfig.<key>`, when the runtime supplied it.
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        self.runtime_config
            .as_ref()?
            .get(key)
            .filter(|v| !v.is_null())
    }

    /// `args.cni.<key>`, when given.
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        self.args
            .as_ref()?
            .get("cni")?
            .get(key)
            .filter(|v| !v.is_null())
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::decode(format!(
            "error unmarshall network config: {key:?} must be a string, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    /// Keys whose wrong type would read as "not given" are refused.
    #[test]
    fn wrong_typed_runtime_keys_are_refused() {
        for (extra, msg) in [
            (
                r#""ipam":{"type":5}"#,
                "ipam.type must be a string naming the IPAM plugin, got 5",
            ),
            (
                r#""runtimeConfig":5"#,
                r#""runtimeConfig" must be an object, got 5"#,
            ),
            (r#""args":[]"#, r#""args" must be an object, got []"#),
            (
                r#""args":{"cni":"x"}"#,
                r#""args.cni" must be an object, got "x""#,
            ),
            (
                r#""capabilities":true"#,
                r#""capabilities" must be an object, got true"#,
            ),
            (r#""ipam":5"#, r#""ipam" must be an object, got 5"#),
            (
                r#""dns":5"#,
                r#""dns": invalid type: integer `5`, expected an object"#,
            ),
        ] {
            let s = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge",{extra}}}"#);
            let e = NetConf::parse(s.as_bytes())
                .unwrap()
                .check_keys(KeyChecks::ALL)
                .unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str()),
                (Code::InvalidConfig, msg),
                "{extra}"
            );
        }
        let ok = br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":null},
                      "runtimeConfig":null,"args":{"cni":null}}"#;
        assert!(NetConf::parse(ok)
            .unwrap()
            .check_keys(KeyChecks::ALL)
            .is_ok());
    }

    #[test]
    fn attachment_file_names_fit_a_file_name() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            Attachment::new(id.clone(), "eth0").file_name("json"),
            format!("{id}:eth0.json")
        );
        // The longest plain name a file can have is kept (older versions
        // wrote it so).
        let fits = "c".repeat(255 - ":eth0.json".len());
        assert_eq!(
            Attachment::new(fits.clone(), "eth0").file_name("json"),
            format!("{fits}:eth0.json")
        );
        let long = Attachment::new("c".repeat(300), "eth0").file_name("json");
        assert!(
            long.starts_with('#') && long.ends_with(":eth0.json"),
            "{long}"
        );
        assert!(long.len() <= 255);
        assert_ne!(
            long,
            Attachment::new("d".repeat(300), "eth0").file_name("json")
        );
    }

    #[test]
    fn parses_shared_keys() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n1","type":"bridge","ipam":{"type":"host-local"},
                "runtimeConfig":{"mac":"aa:bb:cc:dd:ee:ff"},"args":{"cni":{"ips":["10.0.0.2"]}},
                "cni.dev/attachments":[{"containerID":"c","ifname":"eth0"}],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(c.ipam_type(), "host-local");
        assert_eq!(c.runtime("mac").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(c.args_cni("ips").unwrap()[0], "10.0.0.2");
        assert_eq!(c.valid_attachments.unwrap()[0].ifname, "eth0");
        assert_eq!(c.raw["extra"], 1);
    }

    #[test]
    fn reference_errors() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, Code::Decode);
        assert_eq!(
            NetConf::parse(b"{}").unwrap_err().msg,
            "missing network name"
        );
        let e = NetConf::parse(br#"{"name":"a b"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                Code::InvalidConfig,
                "invalid characters found in network name"
            )
        );
        assert_eq!(
            NetConf::parse(br#"{"name":"x"}"#).unwrap().cni_version,
            "0.1.0"
        );
        let c = NetConf::parse(br#"{"name":"x","prevResult":"{}"}"#).unwrap();
        let e = c.check_prev_result_is_object().unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert!(e.msg.contains(r#"got "{}""#), "{}", e.msg);
        #[derive(serde::Deserialize, Debug)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Keys {
            #[serde(default)]
            is_gateway: bool,
            #[serde(default)]
            trunk: Vec<u16>,
        }
        let bad = |raw: &[u8]| {
            let c = NetConf::parse(raw).unwrap();
            let e = c.plugin::<Keys>().unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig);
            e.msg
        };
        assert_eq!(
            bad(br#"{"name":"n","type":"bridge","isGateway":"true"}"#),
            r#"invalid bridge config for network "n": isGateway: invalid type: string "true", expected a boolean"#
        );
        assert!(
            bad(br#"{"name":"n","type":"t","trunk":[1,-2]}"#).contains(": trunk[1]: invalid value"),
        );
        let c = NetConf::parse(br#"{"name":"x","prevResult":null}"#).unwrap();
        assert!(c.prev_result.is_none());
        c.check_prev_result_is_object().unwrap();
    }
}
