//! Running another plugin (an IPAM `type` that nuage does not implement
//! in-process) from `CNI_PATH`, as the spec's delegation section says: the
//! same environment with `CNI_COMMAND` replaced, the complete network config
//! on stdin, its stderr passed through, its error returned as is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::skel::{CmdArgs, Command};
use crate::spec::CniResult;
use crate::{log, Error, ErrorReply, Result};

/// Finds `plugin_type` in the `CNI_PATH` directories. A name with a path
/// separator or `..` is refused (libcni CVE-2021-20206: a config must not be
/// able to run an arbitrary binary).
pub fn find(plugin_type: &str, path: &[PathBuf]) -> Result<PathBuf> {
    if plugin_type.is_empty()
        || plugin_type.contains('/')
        || plugin_type.contains('\\')
        || plugin_type.contains("..")
        || plugin_type.contains('\0')
    {
        return Err(Error::config(format!("invalid plugin type {plugin_type:?}")).with_details(
            "a plugin type is a binary name found on CNI_PATH; it must not contain '/', '\\' or '..'",
        ));
    }
    path.iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            Error::config(format!(
                "failed to find plugin {plugin_type:?} in path {path:?}"
            ))
            .with_details(format!(
                "install the {plugin_type} binary into one of the CNI_PATH directories"
            ))
        })
}

/// Runs `plugin_type` for `cmd` with `a`'s environment and stdin.
/// Returns the plugin's stdout on success.
pub fn exec(plugin_type: &str, cmd: Command, a: &CmdArgs) -> Result<Vec<u8>> {
    let bin = find(plugin_type, &a.path)?;
    exec_bin(&bin, cmd, a)
}

fn exec_bin(bin: &Path, cmd: Command, a: &CmdArgs) -> Result<Vec<u8>> {
    log::debug(format_args!(
        "delegating {} to {}",
        cmd.as_str(),
        bin.display()
    ));
    let joined = std::env::join_paths(&a.path).unwrap_or_default();
    let mut child = crate::child::die_with_parent(&mut Process::new(bin))
        .env("CNI_COMMAND", cmd.as_str())
        .env("CNI_CONTAINERID", &a.container_id)
        .env("CNI_NETNS", a.netns.as_deref().unwrap_or(""))
        .env("CNI_IFNAME", &a.ifname)
        .env("CNI_ARGS", &a.args)
        .env("CNI_PATH", joined)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::os(format!("run delegate {}", bin.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A delegate that exits without reading stdin is judged by its status.
        let _ = stdin.write_all(&a.stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::os(format!("wait for delegate {}", bin.display()), e))?;
    // Its log lines go on to ours; when it fails without an error reply,
    // they are also all there is to say why.
    let _ = std::io::stderr().write_all(&out.stderr);
    if out.status.success() {
        return Ok(out.stdout);
    }
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match serde_json::from_slice::<ErrorReply>(&out.stdout) {
        Ok(reply) => Err(Error::from(reply)),
        Err(_) if out.stdout.is_empty() => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim();
            // The end of what it said: the error comes last.
            let tail = said
                .char_indices()
                .rev()
                .nth(499)
                .map_or(said, |(i, _)| &said[i..]);
            let mut e = Error::internal(format!(
                "delegate {name} {} failed with {} and printed no error",
                cmd.as_str(),
                out.status
            ));
            if !tail.is_empty() {
                e = e.with_details(format!("its stderr: {tail}"));
            }
            Err(e)
        }
        Err(e) => Err(Error::internal(format!(
            "delegate {name} {} failed with {} and its error could not be parsed ({e}): {}",
            cmd.as_str(),
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ))),
    }
}

/// Delegated ADD: the delegate's result, read in the config's version. An
/// IPAM result's `ips[].interface` is dropped (the spec says an IPAM
/// plugin should not set it; libcni ignores it; the caller assigns its own).
///
/// When the ADD fails, the delegate gets a DEL (best effort) before the
/// error is returned, as the spec's delegation procedure says: also when it
/// exited 0 (it allocated) but printed a result that cannot be read, which
/// would otherwise leave its allocation behind.
pub fn add(plugin_type: &str, a: &CmdArgs) -> Result<CniResult> {
    let read = |out: Vec<u8>| -> Result<CniResult> {
        let mut v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            Error::decode(format!(
                "delegate {plugin_type} ADD printed a result that is not JSON: {e}"
            ))
        })?;
        if let Some(ips) = v.get_mut("ips").and_then(serde_json::Value::as_array_mut) {
            for ip in ips.iter_mut().filter_map(serde_json::Value::as_object_mut) {
                ip.remove("interface");
            }
        }
        CniResult::from_json(&v, &a.conf.cni_version)
    };
    let bin = find(plugin_type, &a.path)?;
    let r = exec_bin(&bin, Command::Add, a).and_then(read);
    if r.is_err() {
        if let Err(d) = exec_bin(&bin, Command::Del, a) {
            log::warn(format_args!(
                "delegate {plugin_type}: DEL after its failed ADD: {d}"
            ));
        }
    }
    r
}

/// Delegated DEL, CHECK, GC or STATUS.
pub fn run(plugin_type: &str, cmd: Command, a: &CmdArgs) -> Result<()> {
    exec(plugin_type, cmd, a).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_path_tricks() {
        for t in ["../bin/sh", "/bin/sh", "a\\b", "..", ""] {
            let e = find(t, &[PathBuf::from("/usr/bin")]).unwrap_err();
            assert_eq!(e.code, crate::Code::InvalidConfig, "{t}");
        }
        assert!(find(
            "sh",
            &[PathBuf::from("/nonexistent"), PathBuf::from("/bin")]
        )
        .is_ok());
        assert!(find("no-such-plugin", &[PathBuf::from("/bin")]).is_err());
    }
}
