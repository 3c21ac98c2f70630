//! `CNI_ARGS` (`K=V;K2=V2`) with the reference's `types.LoadArgs` semantics.

use crate::{Error, Result};

/// Keys every plugin accepts without `IgnoreUnknown`: the Kubernetes runtime
/// convention that kubelet, CRI-O and containerd always send.
pub const K8S_KEYS: &[&str] = &[
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// Parsed `CNI_ARGS`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(Vec<(String, String)>);

impl CniArgs {
    /// Splits `s` into pairs; each must be exactly `K=V`
    /// (`ARGS: invalid pair "<pair>"` otherwise).
    pub fn parse(s: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) => pairs.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(Error::env(format!("ARGS: invalid pair {pair:?}")).with_details(
                        "CNI_ARGS must be K=V pairs separated by ';', e.g. IgnoreUnknown=1;IP=10.0.0.5",
                    ))
                }
            }
        }
        Ok(CniArgs(pairs))
    }

    /// Checks every key against `known` (plus `IgnoreUnknown` and the K8S keys):
    /// an unknown key is an error unless `IgnoreUnknown` is 1/true
    /// (case-insensitive). Keys are case-sensitive, as in the reference.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        let mut ignore = false;
        if let Some(v) = self.get("IgnoreUnknown") {
            ignore = match v.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(Error::env(format!(
                        "ARGS: IgnoreUnknown={v:?} is not a boolean: use 1, true, 0 or false"
                    )))
                }
            };
        }
        if ignore {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| {
                k != "IgnoreUnknown"
                    && !known.contains(&k.as_str())
                    && !K8S_KEYS.contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(
                Error::internal(format!("ARGS: unknown args {unknown:?}")).with_details(format!(
                    "known keys: {known:?}; add IgnoreUnknown=1 to CNI_ARGS to pass others through"
                )),
            )
        }
    }

    /// The value of `key` (the last one wins, as with Go's reflection setter).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_unknown_keys() {
        let a = CniArgs::parse("IP=10.0.0.5;K8S_POD_NAME=x").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        a.check_known(&["IP"]).unwrap();
        assert!(CniArgs::parse("IP").is_err());
        assert!(CniArgs::parse("A=b=c").is_err());
        let e = CniArgs::parse("FOO=1")
            .unwrap()
            .check_known(&["IP"])
            .unwrap_err();
        assert_eq!(e.msg, r#"ARGS: unknown args ["FOO=1"]"#);
        CniArgs::parse("FOO=1;IgnoreUnknown=TRUE")
            .unwrap()
            .check_known(&[])
            .unwrap();
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }
}
