//! The plugin entry point, with the reference skel's observable behaviour:
//! `CNI_*` environment and stdin in, one verb call, the result or error JSON
//! out on stdout, exit status 0 or 1.
//!
//! Order of checks (each failure is printed as a CNI error):
//! 1. `CNI_COMMAND` unset: the about text on stderr, exit 0.
//! 2. required variables per verb (code 4, fixed order), then container id
//!    and interface name validation (code 4);
//! 3. stdin: JSON (code 6), `name` (code 7);
//! 4. version gates: CHECK needs >= 0.4.0, GC/STATUS >= 1.1.0, and the
//!    config version must be one the plugin supports (code 1);
//! 5. the verb. Any error without a well-known code is 999.
//!
//! Deliberate difference: the reference checks "CNI_NETNS is the plugin's own
//! netns" (code 8) *after* ADD/DEL already ran; we refuse before touching
//! anything (see [`CmdArgs::open_netns`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::netns::NetNs;
use crate::spec::{
    self, version, Attachment, CniArgs, CniResult, KeyChecks, NetConf, VersionReply,
};
use crate::{log, Code, Error, Result};

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// Everything a verb gets: the environment, stdin, and the parsed shared keys.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`, `None` when unset or empty.
    pub netns: Option<String>,
    pub ifname: String,
    /// `CNI_ARGS`, raw.
    pub args: String,
    pub path: Vec<PathBuf>,
    /// `CNI_NETNS_OVERRIDE` is 1/true: acting on the plugin's own netns is allowed.
    pub netns_override: bool,
    /// stdin, as received (delegates get these exact bytes).
    pub stdin: Vec<u8>,
    pub conf: NetConf,
}

impl CmdArgs {
    /// `CNI_ARGS`, parsed; unknown keys are checked by the caller with
    /// [`CniArgs::check_known`].
    pub fn cni_args(&self) -> Result<CniArgs> {
        CniArgs::parse(&self.args)
    }

    /// The container MAC the request asks for, read as the reference
    /// plugins read it: of `config` (the plugin's own key, if it has one),
    /// `CNI_ARGS` `MAC=` (from `args`), `args.cni.mac` and
    /// `runtimeConfig.mac`, the last non-empty one wins and only it is
    /// parsed. `unparsable(source, value)` words the error of one that is not
    /// a MAC: code 4 from `CNI_ARGS` (an environment variable), 7 otherwise.
    /// A multicast MAC, which no interface can have, is refused.
    pub fn requested_mac(
        &self,
        args: &CniArgs,
        config: Option<&str>,
        unparsable: impl Fn(&str, &str) -> String,
    ) -> Result<Option<[u8; 6]>> {
        fn string<'v>(what: &str, v: Option<&'v serde_json::Value>) -> Result<Option<&'v str>> {
            match v {
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(other) => Err(
                    Error::config(format!("{what} must be a string, got {other}"))
                        .with_details("use the form \"aa:bb:cc:dd:ee:ff\""),
                ),
            }
        }
        let sources = [
            ("mac", config),
            ("CNI_ARGS MAC", args.get("MAC")),
            (
                "args.cni.mac",
                string("args.cni.mac", self.conf.args_cni("mac"))?,
            ),
            (
                "runtimeConfig.mac",
                string("runtimeConfig.mac", self.conf.runtime("mac"))?,
            ),
        ];
        let Some((what, v)) = sources
            .into_iter()
            .rev()
            .find_map(|(what, v)| Some((what, v.filter(|v| !v.is_empty())?)))
        else {
            return Ok(None);
        };
        let mac: crate::netlink::MacAddr = v.parse().map_err(|_| {
            let msg = unparsable(what, v);
            let e = if what.starts_with("CNI_ARGS") {
                Error::env(msg)
            } else {
                Error::config(msg)
            };
            e.with_details("use the form aa:bb:cc:dd:ee:ff")
        })?;
        if mac.0[0] & 1 != 0 {
            return Err(Error::config(format!(
                "{what} {v:?} is a multicast address, which no interface can have"
            ))
            .with_details(
                "use a unicast MAC: the low bit of the first byte clear (02:..., not 01:...)",
            ));
        }
        Ok(Some(mac.0))
    }

    /// The container's network namespace for ADD and CHECK: it must exist, be
    /// a network namespace, and not be the plugin's own (code 8) unless
    /// `CNI_NETNS_OVERRIDE` is set.
    pub fn open_netns(&self) -> Result<NetNs> {
        let path = self
            .netns
            .as_deref()
            .ok_or_else(|| Error::env("required env variables [CNI_NETNS] missing"))?;
        let ns = NetNs::open(path)?;
        if !self.netns_override && ns.is_current()? {
            return Err(Error::netns("plugin's netns and netns from CNI_NETNS should not be the same")
                .with_details(format!(
                    "CNI_NETNS {path:?} is the namespace the plugin runs in; pass the container's namespace \
                     (or set CNI_NETNS_OVERRIDE=1 if this is really intended)"
                )));
        }
        Ok(ns)
    }

    /// The container's namespace for DEL, which is best-effort: `None` when
    /// `CNI_NETNS` is empty, the path is gone, or it now names the plugin's
    /// own namespace (a late DEL on a recycled `/proc/<pid>/ns/net` must never
    /// touch the host's links). Host-side cleanup goes on in every case.
    pub fn open_netns_for_del(&self) -> Result<Option<NetNs>> {
        let Some(path) = self.netns.as_deref() else {
            return Ok(None);
        };
        match self.open_netns() {
            Ok(ns) => Ok(Some(ns)),
            Err(e) if e.is_not_found() || unmounted_netns(path) => {
                log::info(format_args!(
                    "netns {path} is already gone: only host-side cleanup"
                ));
                Ok(None)
            }
            Err(e)
                if e.code == Code::InvalidNetns
                    && e.errno.is_none()
                    && NetNs::open(path).is_ok() =>
            {
                log::warn(format_args!(
                    "CNI_NETNS {path} is the plugin's own namespace (recycled path?): container-side cleanup skipped"
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// This request's attachment: (`CNI_CONTAINERID`, `CNI_IFNAME`).
    pub fn attachment(&self) -> Attachment {
        Attachment::new(&self.container_id, &self.ifname)
    }

    /// The plugin's own keys: strictly for ADD, CHECK and STATUS; for DEL
    /// and GC, which only clean up, a key that does not decode is ignored
    /// (see [`NetConf::plugin_lenient`]).
    pub fn plugin_conf<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        match self.command {
            Command::Del | Command::Gc => self.conf.plugin_lenient(),
            _ => self.conf.plugin(),
        }
    }

    /// `prevResult`, read in the config's version; CHECK also requires each
    /// `ips[].interface` to name one of its interfaces.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        let prev = self
            .conf
            .prev_result
            .as_ref()
            .map(|v| CniResult::from_json(v, &self.conf.cni_version))
            .transpose()?;
        if let (Some(p), Command::Check) = (&prev, self.command) {
            p.check_interface_indexes()?;
        }
        Ok(prev)
    }
}

/// An empty regular file where a netns was bind-mounted: what a runtime
/// leaves when it unmounted the namespace but did not remove the file.
fn unmounted_netns(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// A CNI plugin: one method per verb. GC and STATUS default to success, as
/// the reference's `nil` callbacks do.
pub trait Plugin {
    /// The binary's name, for the about text and logs.
    fn name(&self) -> &'static str;
    fn supported_versions(&self) -> &'static [&'static str] {
        version::ALL
    }
    /// Whether ADD creates or renames a link named `CNI_IFNAME` (then
    /// [`validate_new_ifname`] applies). IPAM plugins and `loopback` do not.
    fn names_links(&self) -> bool {
        true
    }
    /// The shared keys `cmd` refuses when they have a wrong type (see
    /// [`NetConf::check_keys`]), as the reference's plugin decodes them.
    /// Interface plugins: all of them on ADD, CHECK and STATUS (STATUS
    /// answers 50); on DEL and GC only an `ipam` they cannot read, which
    /// read as absent would release nothing and leak the lease for good.
    fn key_checks(&self, cmd: Command) -> KeyChecks {
        match cmd {
            Command::Add | Command::Check | Command::Status => KeyChecks::ALL,
            Command::Del | Command::Gc => KeyChecks::IPAM,
            Command::Version => KeyChecks::NONE,
        }
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult>;
    fn del(&self, a: &CmdArgs) -> Result<()>;
    fn check(&self, a: &CmdArgs) -> Result<()>;
    fn gc(&self, _a: &CmdArgs) -> Result<()> {
        Ok(())
    }
    fn status(&self, _a: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

/// Runs `plugin` on this process's environment and stdin, then exits.
pub fn run(plugin: &impl Plugin) -> ! {
    let stdout = std::io::stdout();
    let code = run_with(
        plugin,
        // A value that is not UTF-8 is read with U+FFFD in place of the
        // bad bytes, not as unset: CNI_COMMAND is then unknown (code 4), an
        // interface name is refused, and CNI_ARGS keeps its other keys.
        |k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()),
        std::io::stdin().lock(),
        &mut stdout.lock(),
        &mut std::io::stderr(),
    );
    std::process::exit(code)
}

/// [`run`] with its inputs and outputs explicit; returns the exit status.
pub fn run_with(
    plugin: &impl Plugin,
    env: impl Fn(&str) -> Option<String>,
    stdin: impl Read,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> i32 {
    log::init(plugin.name(), None, None);
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let Some(cmd_name) = env("CNI_COMMAND") else {
        log::flush_complaints();
        let _ = writeln!(
            stderr,
            "CNI {} plugin {} (nuage)\nCNI protocol versions supported: {}",
            plugin.name(),
            env!("CARGO_PKG_VERSION"),
            plugin.supported_versions().join(", ")
        );
        return 0;
    };
    let started = Instant::now();
    let mut seen = Seen::default();
    let outcome = dispatch(plugin, &cmd_name, &env, stdin, &mut seen);
    log::flush_complaints();
    let (status, summary) = match outcome {
        Ok(out) => {
            if let Some(out) = out {
                let _ = stdout.write_all(out.as_bytes());
            }
            (0, "ok".to_string())
        }
        Err((e, ctx)) => {
            let reply = e.to_reply(seen.version.as_deref());
            let _ = stdout.write_all(spec::to_pretty(&reply).as_bytes());
            let level = if ctx.is_some() {
                log::Level::Error
            } else {
                log::Level::Warn
            };
            log::log(
                level,
                format_args!("{} failed: code {}: {e}", cmd_name, reply.code),
            );
            (1, format!("error code {}", reply.code))
        }
    };
    let _ = stdout.flush();
    log::info(format_args!(
        "{cmd_name} net={} id={} if={} netns={} took {:.1}ms: {summary}",
        seen.network.as_deref().unwrap_or("-"),
        env("CNI_CONTAINERID").unwrap_or_else(|| "-".into()),
        env("CNI_IFNAME").unwrap_or_else(|| "-".into()),
        env("CNI_NETNS").unwrap_or_else(|| "-".into()),
        started.elapsed().as_secs_f64() * 1000.0,
    ));
    status
}

/// What the request revealed before it failed, for the error reply and the log.
#[derive(Default)]
struct Seen {
    version: Option<String>,
    network: Option<String>,
}

/// Marker that the failure happened inside the verb (logged as an error),
/// not while validating the request (logged as a warning).
struct InVerb;

type Outcome = std::result::Result<Option<String>, (Error, Option<InVerb>)>;

fn dispatch(
    plugin: &impl Plugin,
    cmd_name: &str,
    env: &impl Fn(&str) -> Option<String>,
    mut stdin: impl Read,
    seen: &mut Seen,
) -> Outcome {
    let pre = |e: Error| (e, None);
    let cmd = Command::parse(cmd_name);
    check_env(cmd, env).map_err(pre)?;
    if cmd == Some(Command::Add) && plugin.names_links() {
        validate_new_ifname(&env("CNI_IFNAME").unwrap_or_default()).map_err(pre)?;
    }
    if cmd == Some(Command::Version) {
        let mut data = Vec::new();
        let _ = stdin.read_to_end(&mut data);
        return Ok(Some(version_reply(plugin, &data)));
    }
    // Room for a typical config up front: one read(2) and the EOF read,
    // instead of std's growing probes from 32 bytes.
    let mut data = Vec::with_capacity(16 * 1024);
    stdin
        .read_to_end(&mut data)
        .map_err(|e| pre(Error::io(format!("error reading from stdin: {e}"))))?;
    let conf = NetConf::parse(&data).map_err(pre)?;
    log::init(
        plugin.name(),
        conf.raw.get("logFile").and_then(|v| v.as_str()),
        conf.raw.get("logLevel").and_then(|v| v.as_str()),
    );
    let Some(cmd) = cmd else {
        return Err(pre(Error::env(format!("unknown CNI_COMMAND: {cmd_name}"))
            .with_details(
                "CNI_COMMAND must be one of ADD, DEL, CHECK, GC, STATUS, VERSION",
            )));
    };
    // A reply echoes the config's version only if it is one ("v1.0.0" or
    // "1.0.0 " would make the reply as unreadable as the config).
    seen.version = Some(conf.cni_version.clone()).filter(|v| version::parse_loose(v).is_some());
    seen.network = Some(conf.name.clone());
    check_version(plugin, cmd, &conf.cni_version).map_err(pre)?;
    log::debug(format_args!(
        "{} network {:?} config: {}",
        cmd.as_str(),
        conf.name,
        conf.raw
    ));

    let override_ =
        env("CNI_NETNS_OVERRIDE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let a = CmdArgs {
        command: cmd,
        container_id: env("CNI_CONTAINERID").unwrap_or_default(),
        netns: env("CNI_NETNS"),
        ifname: env("CNI_IFNAME").unwrap_or_default(),
        args: env("CNI_ARGS").unwrap_or_default(),
        path: env("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
        netns_override: override_,
        stdin: data,
        conf,
    };
    let in_verb = |e: Error| (e, Some(InVerb));
    if matches!(cmd, Command::Add | Command::Check) {
        a.conf
            .check_prev_result_is_object()
            .map_err(|e| (e, None))?;
    }
    // What ADD would refuse, STATUS reports as not available. DEL and GC
    // refuse only an ipam they cannot read (see there).
    a.conf
        .check_keys(plugin.key_checks(cmd))
        .map_err(|e| match cmd {
            Command::Status => Error {
                code: Code::NotAvailable,
                ..e
            },
            _ => e,
        })
        .map_err(|e| (e, None))?;
    match cmd {
        Command::Add => {
            let result = plugin.add(&a).map_err(in_verb)?;
            let json = result.to_json(&a.conf.cni_version).map_err(in_verb)?;
            Ok(Some(spec::to_pretty(&json)))
        }
        Command::Del => plugin.del(&a).map(|()| None).map_err(in_verb),
        Command::Check => plugin.check(&a).map(|()| None).map_err(in_verb),
        Command::Gc => plugin.gc(&a).map(|()| None).map_err(in_verb),
        // Whatever keeps ADD from working (a config ADD would refuse, a
        // missing master) is "not available" (50), unless the plugin said
        // more (51).
        Command::Status => plugin.status(&a).map(|()| None).map_err(|e| {
            let code = match e.code {
                Code::NotAvailable | Code::LimitedConnectivity => e.code,
                _ => Code::NotAvailable,
            };
            in_verb(Error { code, ..e })
        }),
        Command::Version => Ok(None),
    }
}

/// Required variables per verb, in the reference's fixed order, then the
/// container id and interface name checks for the verbs that need them.
fn check_env(cmd: Option<Command>, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
    use Command::*;
    let required: &[(&str, &[Command])] = &[
        ("CNI_CONTAINERID", &[Add, Check, Del]),
        ("CNI_NETNS", &[Add, Check]),
        ("CNI_IFNAME", &[Add, Check, Del]),
        ("CNI_PATH", &[Add, Check, Del, Gc, Status]),
    ];
    let needs = |name: &str| {
        required
            .iter()
            .any(|(n, cmds)| *n == name && cmd.is_some_and(|c| cmds.contains(&c)))
    };
    let missing: Vec<&str> = required
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| needs(n) && env(n).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }
    if needs("CNI_CONTAINERID") {
        let id = env("CNI_CONTAINERID").unwrap_or_default();
        if !spec::valid_id(&id) {
            return Err(Error::env("invalid characters in containerID").with_details(id));
        }
    }
    if needs("CNI_IFNAME") {
        validate_ifname(&env("CNI_IFNAME").unwrap_or_default())?;
    }
    Ok(())
}

/// What an interface ADD creates or renames must also be a name the kernel
/// takes as is. Kernel quirks: a '%' makes it a template (`eth%d` becomes
/// `eth0`, not the name asked for), and `all` and `default` are the names of
/// the per-namespace sysctl directories, so a rename to them fails with
/// EINVAL after a move to another namespace already happened. DEL and CHECK
/// do not refuse them: nothing can have been created under such a name.
pub fn validate_new_ifname(name: &str) -> Result<()> {
    if !kernel_takes_as_is(name) {
        return Err(
            Error::env(format!("interface name {name:?} is reserved by the kernel")).with_details(
                "CNI_IFNAME may not be \"all\" or \"default\" or contain '%': choose another name",
            ),
        );
    }
    Ok(())
}

/// Whether the kernel names a link created or renamed as `name` exactly
/// that (see [`validate_new_ifname`]): no '%' template, not `all` or
/// `default`. Also for the other names a plugin gives links (a bridge, a
/// shim).
pub fn kernel_takes_as_is(name: &str) -> bool {
    name != "all" && name != "default" && !name.contains('%')
}

/// The kernel's interface name rules (IFNAMSIZ, no '/', ':' or whitespace).
pub fn validate_ifname(name: &str) -> Result<()> {
    let err =
        |msg: &str| Err(Error::env(msg.to_string()).with_details(format!("CNI_IFNAME {name:?}")));
    if name.is_empty() {
        return err("interface name is empty");
    }
    if name.len() > 15 {
        return Err(
            Error::env("interface name is too long").with_details(format!(
                "CNI_IFNAME {name:?} is {} bytes: interface name should be less than 16 characters",
                name.len()
            )),
        );
    }
    if name == "." || name == ".." {
        return err("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return err("interface name contains / or : or whitespace characters");
    }
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return err("interface name is not valid UTF-8");
    }
    Ok(())
}

fn check_version(plugin: &impl Plugin, cmd: Command, conf_version: &str) -> Result<()> {
    let supported = plugin.supported_versions();
    let gate = match cmd {
        Command::Check => Some("0.4.0"),
        Command::Gc | Command::Status => Some("1.1.0"),
        _ => None,
    };
    if let Some(min) = gate {
        // The gate reads the version as libcni does ("1.0" passes as
        // 1.0.0, to be refused by the exact match below, code 1).
        let Some(v) = version::parse_loose(conf_version) else {
            return Err(Error::decode(format!(
                "invalid version {conf_version:?}: expected major.minor.patch"
            )));
        };
        if Some(v) < version::parse_loose(min) {
            return Err(Error::incompatible(format!(
                "config version does not allow {}",
                cmd.as_str()
            ))
            .with_details(format!("{} needs cniVersion {min} or later", cmd.as_str())));
        }
        if !supported.iter().any(|s| version::parse_loose(s) >= Some(v)) {
            return Err(Error::incompatible(format!(
                "plugin version does not allow {}",
                cmd.as_str()
            )));
        }
    }
    if !supported.contains(&conf_version) {
        let list: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
        return Err(
            Error::incompatible("incompatible CNI versions").with_details(format!(
                "config is {conf_version:?}, plugin supports [{}]",
                list.join(" ")
            )),
        );
    }
    Ok(())
}

/// `{"cniVersion","supportedVersions"}` compact, with a newline. The spec
/// echoes the request's version; when it is not usable we answer ours.
fn version_reply(plugin: &impl Plugin, stdin: &[u8]) -> String {
    let asked = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .filter(|v| version::parse(v).is_some());
    let reply = VersionReply {
        cni_version: asked.unwrap_or_else(|| version::CURRENT.to_string()),
        supported_versions: plugin
            .supported_versions()
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut s = serde_json::to_string(&reply).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Echo;
    impl Plugin for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn add(&self, a: &CmdArgs) -> Result<CniResult> {
            Ok(a.prev_result()?.unwrap_or_default())
        }
        fn del(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &CmdArgs) -> Result<()> {
            Err(Error::internal("check failed"))
        }
    }

    fn call(env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(
            &Echo,
            |k| env.get(k).cloned(),
            stdin.as_bytes(),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn err_of(out: &str) -> (u64, String, Option<String>) {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
            v["details"].as_str().map(str::to_string),
        )
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    /// A wrong-typed runtime key fails ADD (and CHECK, STATUS) but not
    /// DEL: the reference took such configs for plugins that do not read
    /// the key, and their attachments must still be deleted.
    #[test]
    fn wrong_typed_runtime_keys_fail_add_not_del() {
        for conf in [
            r#"{"cniVersion":"1.0.0","name":"n","args":[]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","dns":5,"runtimeConfig":5}"#,
        ] {
            let (code, out, _) = call(FULL, conf);
            assert_eq!((code, out.as_str()), (0, ""), "DEL {conf}");
        }
        // An ipam DEL cannot read fails it, as with the reference: read as
        // absent, the DEL would release nothing and succeed.
        for conf in [
            r#"{"cniVersion":"1.0.0","name":"n","ipam":5}"#,
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":5}}"#,
        ] {
            let (_, out, _) = call(FULL, conf);
            assert_eq!(err_of(&out).0, 7, "DEL {conf}");
        }
        let conf = r#"{"cniVersion":"1.0.0","name":"n","args":[]}"#;
        let mut env = FULL.to_vec();
        env[0] = ("CNI_COMMAND", "ADD");
        env.push(("CNI_NETNS", "/x"));
        let (_, out, _) = call(&env, conf);
        assert_eq!(
            err_of(&out),
            (7, r#""args" must be an object, got []"#.into(), None)
        );
    }

    #[test]
    fn dangling_interface_index_is_refused_by_check_only() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0",
                 "ips":[{"address":"10.1.0.5/24","interface":0}]}}"#,
        )
        .unwrap();
        let mut a = CmdArgs {
            command: Command::Add,
            container_id: "c".into(),
            netns: None,
            ifname: "eth0".into(),
            args: String::new(),
            path: Vec::new(),
            netns_override: false,
            stdin: Vec::new(),
            conf,
        };
        assert_eq!(a.prev_result().unwrap().unwrap().ips.len(), 1);
        a.command = Command::Check;
        let e = a.prev_result().unwrap_err();
        assert_eq!(e.code, crate::Code::Decode, "{e}");
    }

    #[test]
    fn about_without_command() {
        let (code, out, err) = call(&[], "");
        assert_eq!((code, out.as_str()), (0, ""));
        assert!(err.contains("CNI echo plugin"), "{err}");
    }

    #[test]
    fn missing_env_in_fixed_order() {
        let (code, out, _) = call(&[("CNI_COMMAND", "ADD")], "{}");
        assert_eq!(code, 1);
        assert_eq!(
            err_of(&out).1,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        let (_, out, _) = call(&[("CNI_COMMAND", "GC")], "{}");
        assert_eq!(err_of(&out).1, "required env variables [CNI_PATH] missing");
    }

    #[test]
    fn validates_ids_and_ifnames() {
        let mut env = FULL.to_vec();
        env[1] = ("CNI_CONTAINERID", "-bad");
        let (_, out, _) = call(&env, r#"{"name":"n"}"#);
        assert_eq!(
            err_of(&out),
            (
                4,
                "invalid characters in containerID".into(),
                Some("-bad".into())
            )
        );
        for (ifname, msg) in [
            ("0123456789abcdef", "interface name is too long"),
            ("..", "interface name is . or .."),
            (
                "a/b",
                "interface name contains / or : or whitespace characters",
            ),
        ] {
            let mut env = FULL.to_vec();
            env[2] = ("CNI_IFNAME", ifname);
            let (_, out, _) = call(&env, r#"{"name":"n"}"#);
            assert_eq!(err_of(&out).1, msg);
        }
    }

    /// An error reply echoes the config's version only when it is one.
    #[test]
    fn error_replies_echo_only_valid_versions() {
        let version_of = |conf: &str| {
            let mut env = FULL.to_vec();
            env[0] = ("CNI_COMMAND", "CHECK");
            env.push(("CNI_NETNS", "/x"));
            let (_, out, _) = call(&env, conf);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["cniVersion"].as_str().map(str::to_string)
        };
        assert_eq!(version_of(r#"{"cniVersion":"v1.0.0","name":"n"}"#), None);
        assert_eq!(version_of(r#"{"cniVersion":"1.0.0 ","name":"n"}"#), None);
        assert_eq!(
            version_of(r#"{"cniVersion":"1.0.0","name":"n"}"#).as_deref(),
            Some("1.0.0")
        );
    }

    #[test]
    fn config_errors() {
        let (_, out, _) = call(FULL, "{not json");
        assert_eq!(err_of(&out).0, 6);
        let (_, out, _) = call(FULL, r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(err_of(&out).0, 7);
        let (_, out, _) = call(FULL, r#"{"cniVersion":"9.9.9","name":"n"}"#);
        let (code, msg, details) = err_of(&out);
        assert_eq!((code, msg.as_str()), (1, "incompatible CNI versions"));
        assert!(details
            .unwrap()
            .starts_with(r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0""#));
        let mut env = FULL.to_vec();
        env[0] = ("CNI_COMMAND", "FOO");
        let (_, out, _) = call(&env, r#"{"name":"n"}"#);
        assert_eq!(err_of(&out).1, "unknown CNI_COMMAND: FOO");
    }

    #[test]
    fn verb_gates() {
        let mut env = FULL.to_vec();
        env[0] = ("CNI_COMMAND", "CHECK");
        env.push(("CNI_NETNS", "/run/netns/x"));
        let (_, out, _) = call(&env, r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert_eq!(err_of(&out).1, "config version does not allow CHECK");
        // As libcni: a short version passes the gate, then is not one of
        // ours (code 1); only one that does not parse is code 6.
        for (v, code, msg) in [
            ("1.0", 1, "incompatible CNI versions"),
            ("0.4", 1, "incompatible CNI versions"),
            ("0.3", 1, "config version does not allow CHECK"),
            (
                "v1.0.0",
                6,
                r#"invalid version "v1.0.0": expected major.minor.patch"#,
            ),
        ] {
            let (_, out, _) = call(&env, &format!(r#"{{"cniVersion":"{v}","name":"n"}}"#));
            let (c, m, _) = err_of(&out);
            assert_eq!((c, m.as_str()), (code, msg), "{v}");
        }
        let (code, out, _) = call(
            &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")],
            r#"{"cniVersion":"1.0.0","name":"n"}"#,
        );
        assert_eq!(
            (code, err_of(&out).1.as_str()),
            (1, "config version does not allow STATUS")
        );
        let (code, out, _) = call(
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            r#"{"cniVersion":"1.1.0","name":"n"}"#,
        );
        assert_eq!((code, out.as_str()), (0, ""));
    }

    #[test]
    fn version_and_del() {
        let (code, out, _) = call(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(code, 0);
        assert!(out.ends_with('\n'));
        let v: VersionReply = serde_json::from_str(&out).unwrap();
        assert_eq!(v.cni_version, "0.4.0");
        assert_eq!(v.supported_versions.len(), 7);
        let (code, out, _) = call(FULL, r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!((code, out.as_str()), (0, ""));
    }
}
