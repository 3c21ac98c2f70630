//! A test "host": the namespace where plugins run, as a container runtime would
//! run them in the machine's namespace.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::exec::{self, Background, PluginOutput, Spawn, VAR_LIB_CNI};
use crate::netns::{Family, Netns};
use crate::tempdir::TestDir;

/// A test host: a namespace (`lo` up) in which plugins and `cnitool` run, plus
/// a scratch dir for configs and a private state dir that plugins see as
/// `/var/lib/cni` (libcni's result cache, host-local's default data dir).
/// Everything is removed on drop.
#[derive(Debug)]
pub struct Host {
    ns: Netns,
    dir: TestDir,
    state: PathBuf,
}

impl Host {
    /// A fresh host namespace named `nuage-t<pid>-<n>-host-<tag>`.
    #[track_caller]
    pub fn new(tag: &str) -> Host {
        // The bind-mount target must exist; on a CNI host it always does.
        std::fs::create_dir_all(VAR_LIB_CNI)
            .unwrap_or_else(|e| panic!("cannot create {VAR_LIB_CNI}: {e}"));
        let ns = Netns::new_lo_up(&format!("host-{tag}"));
        let dir = TestDir::new(&format!("host-{tag}"));
        let state = dir.path().join("var-lib-cni");
        std::fs::create_dir(&state)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", state.display()));
        Host { ns, dir, state }
    }

    /// The host namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The host namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// The host namespace's path.
    pub fn path(&self) -> &Path {
        self.ns.path()
    }

    /// A scratch directory of this host (for conflists, IPAM data dirs, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `<dir>/<rel>` (parents created); returns the path.
    #[track_caller]
    pub fn write_file(&self, rel: &str, contents: &str) -> PathBuf {
        self.dir.write(rel, contents)
    }

    /// What programs run by [`Host::run`] see as `/var/lib/cni`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// A fresh container namespace (`lo` down), named `…-<tag>`.
    #[track_caller]
    pub fn container(&self, tag: &str) -> Netns {
        Netns::new(tag)
    }

    /// Runs a plugin binary inside the host namespace with exactly `env` (plus
    /// `PATH` = [`crate::DEFAULT_PATH`] unless `env` sets it) and `stdin`.
    #[track_caller]
    pub fn run_plugin(&self, bin: &Path, env: &[(&str, &str)], stdin: &str) -> PluginOutput {
        self.run(bin, &[], env, stdin)
    }

    /// Like [`Host::run_plugin`], with arguments.
    #[track_caller]
    pub fn run(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: &str,
    ) -> PluginOutput {
        exec::run(Spawn {
            ns: &self.ns,
            program: program.as_os_str(),
            args,
            env,
            stdin,
            var_lib_cni: Some(&self.state),
        })
    }

    /// Starts a program inside the host namespace (same environment and
    /// `/var/lib/cni` as [`Host::run`]) and leaves it running (a daemon such as
    /// the dhcp plugin's). Killed on drop.
    #[track_caller]
    pub fn spawn(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Background {
        exec::spawn(Spawn {
            ns: &self.ns,
            program: program.as_os_str(),
            args,
            env,
            stdin: "",
            var_lib_cni: Some(&self.state),
        })
    }

    /// Runs `cnitool <command> <network> <ns path>` (the libcni driver, built by
    /// [`crate::cnitool`]) inside the host namespace. Pass `NETCONFPATH` and
    /// `CNI_PATH` (and optionally `CNI_IFNAME`, `CNI_ARGS`, `CAP_ARGS`,
    /// `CNI_CONTAINERID`) in `env`.
    #[track_caller]
    pub fn cnitool(
        &self,
        command: &str,
        network: &str,
        ns: &Netns,
        env: &[(&str, &str)],
    ) -> PluginOutput {
        self.run(
            &crate::cnitool(),
            &[command, network, ns.path_str()],
            env,
            "",
        )
    }

    /// Runs `cmd args` inside `ns` (clean env: `PATH` only).
    #[track_caller]
    pub fn exec_in(&self, ns: &Netns, cmd: &str, args: &[&str]) -> PluginOutput {
        ns.exec(cmd, args)
    }

    /// Runs `cmd args` inside the host namespace (clean env: `PATH` only).
    #[track_caller]
    pub fn exec(&self, cmd: &str, args: &[&str]) -> PluginOutput {
        self.ns.exec(cmd, args)
    }

    /// All links of `ns` (`ip -j -d link show`).
    #[track_caller]
    pub fn links(&self, ns: &Netns) -> Vec<Value> {
        ns.links()
    }

    /// One link of `ns` by name.
    #[track_caller]
    pub fn link(&self, ns: &Netns, name: &str) -> Option<Value> {
        ns.link(name)
    }

    /// The `addr_info` entries of `ifname` in `ns`.
    #[track_caller]
    pub fn addrs(&self, ns: &Netns, ifname: &str) -> Vec<Value> {
        ns.addrs(ifname)
    }

    /// Main-table routes of `ns`.
    #[track_caller]
    pub fn routes(&self, ns: &Netns, family: Family) -> Vec<Value> {
        ns.routes(family)
    }

    /// A sysctl of `ns` (see [`Netns::sysctl`]).
    #[track_caller]
    pub fn sysctl(&self, ns: &Netns, key: &str) -> String {
        ns.sysctl(key)
    }

    /// A veth pair `name` in `host` ↔ `other_name` in `other`, both up: a
    /// stand-in "physical" device (see [`Netns::veth_pair_into`]).
    #[track_caller]
    pub fn veth_pair_into(&self, host: &Netns, name: &str, other: &Netns, other_name: &str) {
        host.veth_pair_into(name, other, other_name)
    }
}
