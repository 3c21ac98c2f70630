//! Benchmark of the `bridge` plugin (not a timed test): ours against the
//! reference `/usr/lib/cni/bridge`, in the same run, each in its own
//! throwaway "host" network namespace, plugins invoked directly (as a
//! runtime does: exec with the CNI environment, config on stdin) with
//! host-local IPAM (in-process for ours, the reference `host-local`
//! executable for the reference).
//!
//! (a) ADD then DEL, bridge + host-local: medians, ratio ours/reference
//!     (target <= 1/5);
//! (b) the same with `ipMasq` (ours: nftables map element; reference:
//!     iptables chain; target <= 1/10);
//! (c) 1000 containers attached to one bridge (with `ipMasq` and
//!     `macspoofchk`): median of
//!     the last 100 ADDs / median of the first 100 (target <= 1.5 for ours;
//!     the reference's growth is reported);
//! (d) 200 ADDs, 16 at a time: all succeed with distinct addresses, each
//!     on the bridge; throughput ours / reference.
//!
//! Every namespace is named `nuage-brbench-<pid>-…` and deleted at the end;
//! leftovers of a killed run (dead pid) are removed at start. Needs root.
//!
//! Usage: `bridge-bench [--ours PATH] [--reference PATH] [--samples N]
//! [--fill N] [--parallel N] [--jobs N] [--only a,b,c,d] [--fill-conf F]
//! [--fill-ours-only] [--fill-pace-ms N] [--settle-ms N]`;
//! `bench/bridge/run.sh` builds (release) and runs it.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PREFIX: &str = "nuage-brbench-";

type Res<T> = Result<T, String>;

struct Opts {
    ours: PathBuf,
    reference: PathBuf,
    samples: usize,
    fill: usize,
    parallel: usize,
    jobs: usize,
    only: String,
    /// Features of the (c) network: `masq`, `spoof`, both (`masq,spoof`) or
    /// `none`; with `nolinklocal`, ours also gets `"ipv6LinkLocal": false`
    /// (a diagnostic: the reference has no such key and ignores it).
    fill_conf: String,
    /// Run (c) for ours only.
    fill_ours_only: bool,
    /// (c): pause between containers (0: back to back, the default). A
    /// diagnostic: it separates what the number of ports costs from what
    /// the multicast of the containers attached in the last seconds costs.
    fill_pace: Duration,
    /// (a), (b): pause after each DEL before the next ADD (0: back to back,
    /// the default). A diagnostic: it separates an ADD's own cost from the
    /// kernel work the previous DEL left running (veth teardown, RCU).
    settle: Duration,
}

fn opts() -> Res<Opts> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Opts {
        ours: exe_dir.join("bridge"),
        reference: PathBuf::from("/usr/lib/cni/bridge"),
        samples: 200,
        fill: 1000,
        parallel: 200,
        jobs: 16,
        only: "a,b,c,d".into(),
        fill_conf: "masq,spoof".into(),
        fill_ours_only: false,
        fill_pace: Duration::ZERO,
        settle: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--ours" => o.ours = val()?.into(),
            "--reference" => o.reference = val()?.into(),
            "--samples" => o.samples = num(val()?)?,
            "--fill" => o.fill = num(val()?)?,
            "--parallel" => o.parallel = num(val()?)?,
            "--jobs" => o.jobs = num(val()?)?,
            "--only" => o.only = val()?,
            "--fill-conf" => o.fill_conf = val()?,
            "--fill-ours-only" => o.fill_ours_only = true,
            "--fill-pace-ms" => o.fill_pace = Duration::from_millis(num(val()?)? as u64),
            "--settle-ms" => o.settle = Duration::from_millis(num(val()?)? as u64),
            _ => {
                return Err(format!(
                    "unknown argument {a}; see bench/bridge/src/main.rs"
                ))
            }
        }
    }
    for (what, p) in [("--ours", &o.ours), ("--reference", &o.reference)] {
        if !p.is_file() {
            return Err(format!("{what} {} does not exist", p.display()));
        }
    }
    if o.fill < 200 || o.fill > 1023 {
        return Err("--fill must be between 200 and 1023 (ports per bridge)".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------------------
// Namespaces

/// `ip <args>` in the machine's namespace (only `netns add/del` and `-n`).
fn ip(args: &[&str], stdin: Option<&str>) -> Res<String> {
    let mut child = Command::new("ip")
        .args(args)
        .env_clear()
        .env("PATH", PATH_ENV)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    if let (Some(s), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(s.as_bytes())
            .map_err(|e| format!("ip stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces this run created, deleted at the end.
#[derive(Default)]
struct Namespaces {
    names: Mutex<Vec<String>>,
}

impl Namespaces {
    /// Creates `count` namespaces `nuage-brbench-<pid>-<tag>-<i>` (one
    /// `ip -batch`), lo up when `lo_up`.
    fn create(&self, tag: &str, count: usize, lo_up: bool) -> Res<Vec<String>> {
        let names: Vec<String> = (0..count)
            .map(|i| format!("{PREFIX}{}-{tag}-{i}", std::process::id()))
            .collect();
        let mut batch = String::new();
        for n in &names {
            batch += &format!("netns add {n}\n");
        }
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(names.iter().cloned());
        ip(&["-batch", "-"], Some(&batch))?;
        if lo_up {
            for n in &names {
                ip(&["-n", n, "link", "set", "lo", "up"], None)?;
            }
        }
        Ok(names)
    }

    fn delete(&self, names: &[String]) {
        let mut batch = String::new();
        for n in names {
            batch += &format!("netns del {n}\n");
        }
        if let Err(e) = ip(&["-force", "-batch", "-"], Some(&batch)) {
            eprintln!("warning: {e}");
        }
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| !names.contains(n));
    }

    fn delete_all(&self) {
        let all = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !all.is_empty() {
            self.delete(&all);
        }
    }
}

/// Deletes `nuage-brbench-<pid>-*` namespaces whose pid is dead.
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let mut stale = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                stale.push(name);
            }
        }
    }
    if !stale.is_empty() {
        eprintln!("removing {} stale namespaces of dead runs", stale.len());
        Namespaces::default().delete(&stale);
    }
}

// ---------------------------------------------------------------------------
// Running plugins inside a host namespace

/// Runs `f` on a thread that has entered network namespace `ns` (children it
/// spawns are born there).
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Res<T> {
    let file = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open {ns}: {e}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| "worker thread panicked".to_string())?
    })
}

struct Outcome {
    took: Duration,
    ok: bool,
    stdout: String,
    stderr: String,
}

/// One plugin invocation from the current thread (already in the host
/// namespace), timed from spawn to exit.
fn call(bin: &Path, cmd: &str, cid: &str, ctr: &str, conf: &str) -> Outcome {
    let start = Instant::now();
    let child = Command::new(bin)
        .env_clear()
        .env("PATH", PATH_ENV)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", format!("/run/netns/{ctr}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                took: start.elapsed(),
                ok: false,
                stdout: String::new(),
                stderr: format!("spawn {}: {e}", bin.display()),
            }
        }
    };
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(conf.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => Outcome {
            took: start.elapsed(),
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => Outcome {
            took: start.elapsed(),
            ok: false,
            stdout: String::new(),
            stderr: format!("wait: {e}"),
        },
    }
}

/// `call` in host `ns`; an error unless it succeeded.
fn call_in(ns: &str, bin: &Path, cmd: &str, cid: &str, ctr: &str, conf: &str) -> Res<Outcome> {
    let o = in_ns(ns, || call(bin, cmd, cid, ctr, conf))?;
    if !o.ok {
        return Err(format!(
            "{} {cmd} {cid} failed:\n{}\n{}",
            bin.display(),
            o.stdout.trim(),
            o.stderr.trim()
        ));
    }
    Ok(o)
}

/// The first IP address of a result.
fn first_ip(stdout: &str) -> Option<String> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    Some(v["ips"][0]["address"].as_str()?.to_string())
}

// ---------------------------------------------------------------------------
// Statistics and printing

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        Duration::ZERO
    } else {
        v[v.len() / 2]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

// ---------------------------------------------------------------------------
// The benchmark

/// One implementation under test: its binary, its host namespace and its
/// scratch dir (host-local's dataDir).
struct Impl {
    label: &'static str,
    bin: PathBuf,
    host: String,
    dir: PathBuf,
}

impl Impl {
    fn conf(&self, name: &str, bridge: &str, subnet: &str, masq: bool, spoof: bool) -> String {
        json!({
            "cniVersion": "1.0.0",
            "name": name,
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": masq,
            "macspoofchk": spoof,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.dir.join("ipam")},
        })
        .to_string()
    }

    fn ports(&self, bridge: &str) -> Res<usize> {
        let out = ip(
            &["-n", &self.host, "-j", "link", "show", "master", bridge],
            None,
        )?;
        let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Array(vec![]));
        Ok(v.as_array().map_or(0, Vec::len))
    }
}

/// (a) and (b): `samples` ADD+DEL cycles per implementation, interleaved
/// (alternating which goes first), after 5 warm-up cycles. Returns whether
/// the ADD ratio meets `target`.
fn latency(o: &Opts, impls: &[Impl; 2], ns: &Namespaces, masq: bool, target: f64) -> Res<bool> {
    let (label, name, bridge, subnet) = if masq {
        (
            "(b) ADD+DEL with ipMasq",
            "benchmasq",
            "br-masq",
            "10.201.0.0/16",
        )
    } else {
        (
            "(a) ADD+DEL, bridge + host-local",
            "benchnet",
            "br-bench",
            "10.200.0.0/16",
        )
    };
    let ctrs = ns.create(if masq { "lat-masq" } else { "lat" }, 2, false)?;
    let mut add = [Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new()];
    for i in 0..(o.samples + 5) {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let im = &impls[k];
            let conf = im.conf(name, bridge, subnet, masq, false);
            let cid = format!("lat-{i}");
            let a = call_in(&im.host, &im.bin, "ADD", &cid, &ctrs[k], &conf)?;
            let d = call_in(&im.host, &im.bin, "DEL", &cid, &ctrs[k], &conf)?;
            std::thread::sleep(o.settle);
            if i >= 5 {
                add[k].push(a.took);
                del[k].push(d.took);
            }
        }
    }
    ns.delete(&ctrs);
    let (ao, ar) = (median(&add[0]), median(&add[1]));
    let (dd, dr) = (median(&del[0]), median(&del[1]));
    let r = ratio(ao, ar);
    let settle = match o.settle {
        Duration::ZERO => String::new(),
        d => format!(", {} ms after each DEL", d.as_millis()),
    };
    println!("{label}: {} samples each, interleaved{settle}", o.samples);
    println!(
        "  {:<12}{:>12}{:>12}{:>10}",
        "verb", "ours", "reference", "ours/ref"
    );
    println!(
        "  {:<12}{:>12}{:>12}{:>10.3}",
        "ADD median",
        ms(ao),
        ms(ar),
        r
    );
    println!(
        "  {:<12}{:>12}{:>12}{:>10.3}",
        "DEL median",
        ms(dd),
        ms(dr),
        ratio(dd, dr)
    );
    let ok = r <= target;
    println!(
        "  ADD ours/reference = {r:.3} = 1/{:.1} (target <= 1/{}): {}",
        1.0 / r,
        (1.0 / target).round(),
        verdict(ok)
    );
    Ok(ok)
}

/// (c): `fill` containers attached one after another (ours and the
/// reference interleaved), all kept; then all deleted.
fn fill(o: &Opts, impls: &[Impl; 2], ns: &Namespaces) -> Res<bool> {
    let n = o.fill;
    let (masq, spoof) = (o.fill_conf.contains("masq"), o.fill_conf.contains("spoof"));
    let which: &[Impl] = if o.fill_ours_only {
        &impls[..1]
    } else {
        &impls[..]
    };
    let mut ctrs = Vec::new();
    for im in which {
        ctrs.push(ns.create(&format!("fill-{}", im.label), n, false)?);
    }
    let no_link_local = o.fill_conf.contains("nolinklocal");
    let confs: Vec<String> = which
        .iter()
        .map(|im| {
            let conf = im.conf("benchfill", "br-fill", "10.202.0.0/16", masq, spoof);
            if !no_link_local {
                return conf;
            }
            let mut v: Value = serde_json::from_str(&conf).expect("conf() gives JSON");
            v["ipv6LinkLocal"] = json!(false);
            v.to_string()
        })
        .collect();
    // One step for each implementation, in turn: `cmd` for container `i`.
    let step = |cmd: &str, i: usize, out: &mut Vec<Vec<Duration>>| -> Res<()> {
        for (k, im) in which.iter().enumerate() {
            let cid = format!("fill-{i}");
            let o = call_in(&im.host, &im.bin, cmd, &cid, &ctrs[k][i], &confs[k])?;
            out[k].push(o.took);
        }
        Ok(())
    };
    let mut add = vec![Vec::new(); which.len()];
    let mut del = vec![Vec::new(); which.len()];
    (0..n).try_for_each(|i| {
        std::thread::sleep(o.fill_pace);
        step("ADD", i, &mut add)
    })?;
    let ports: Vec<usize> = which
        .iter()
        .map(|im| im.ports("br-fill"))
        .collect::<Res<_>>()?;
    (0..n).try_for_each(|i| step("DEL", i, &mut del))?;
    for c in &ctrs {
        ns.delete(c);
    }
    let features = match (masq, spoof) {
        (true, true) => "ipMasq + macspoofchk",
        (true, false) => "ipMasq",
        (false, true) => "macspoofchk",
        (false, false) => "no ipMasq, no macspoofchk",
    };
    let features = if no_link_local {
        format!("{features}; ours without IPv6 link-local")
    } else {
        features.to_string()
    };
    let pace = match o.fill_pace {
        Duration::ZERO => String::new(),
        p => format!(", {} ms apart", p.as_millis()),
    };
    println!("(c) {n} containers on one bridge ({features}), attached one by one{pace}, interleaved; then deleted in the same order");
    println!(
        "  {:<11}{:>7}{:>16}{:>16}{:>8}{:>16}{:>16}{:>8}",
        "",
        "ports",
        "ADD first 100",
        "ADD last 100",
        "growth",
        "DEL first 100",
        "DEL last 100",
        "ratio"
    );
    let mut growth = vec![0.0; which.len()];
    for (k, im) in which.iter().enumerate() {
        let (f, l) = (median(&add[k][..100]), median(&add[k][n - 100..]));
        growth[k] = ratio(l, f);
        let (df, dl) = (median(&del[k][..100]), median(&del[k][n - 100..]));
        println!(
            "  {:<11}{:>7}{:>16}{:>16}{:>7.2}x{:>16}{:>16}{:>7.2}x",
            im.label,
            ports[k],
            ms(f),
            ms(l),
            growth[k],
            ms(df),
            ms(dl),
            ratio(df, dl)
        );
    }
    let ok = growth[0] <= 1.5 && ports[0] == n;
    print!(
        "  ours: ADD last 100 / first 100 = {:.2} (target <= 1.5): {}",
        growth[0],
        verdict(ok)
    );
    match growth.get(1) {
        Some(g) => println!("; reference: {g:.2}"),
        None => println!(),
    }
    println!("  (DEL first 100 run on the full bridge, DEL last 100 on the nearly empty one)");
    Ok(ok)
}

/// (d): `parallel` ADDs, `jobs` at a time, per implementation (ours first,
/// then the reference, each on its own fresh bridge); then the DELs, the
/// same way.
fn concurrent(o: &Opts, impls: &[Impl; 2], ns: &Namespaces) -> Res<bool> {
    let n = o.parallel;
    println!(
        "(d) {n} ADDs, {} at a time, on a new bridge (bridge + host-local)",
        o.jobs
    );
    println!(
        "  {:<11}{:>10}{:>10}{:>12}{:>10}{:>8}{:>12}{:>10}",
        "", "ok", "distinct", "ADD wall", "ADD/s", "ports", "DEL wall", "DEL/s"
    );
    let mut rates = [0.0; 2];
    let mut all_ok = true;
    for (k, im) in impls.iter().enumerate() {
        let ctrs = ns.create(&format!("par-{}", im.label), n, false)?;
        let conf = im.conf("benchpar", "br-par", "10.203.0.0/16", false, false);
        let run = |cmd: &'static str| -> Res<(Duration, Vec<Outcome>)> {
            let next = AtomicUsize::new(0);
            let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..n).map(|_| None).collect());
            let start = Instant::now();
            std::thread::scope(|s| {
                let mut hs = Vec::new();
                for _ in 0..o.jobs {
                    hs.push(s.spawn(|| {
                        in_ns(&im.host, || loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n {
                                break;
                            }
                            let out = call(&im.bin, cmd, &format!("par-{i}"), &ctrs[i], &conf);
                            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
                        })
                    }));
                }
                for h in hs {
                    h.join().map_err(|_| "worker panicked".to_string())??;
                }
                Ok::<(), String>(())
            })?;
            let wall = start.elapsed();
            let outs = results
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .into_iter()
                .flatten()
                .collect();
            Ok((wall, outs))
        };
        let (add_wall, adds) = run("ADD")?;
        let ok = adds.iter().filter(|a| a.ok).count();
        if let Some(bad) = adds.iter().find(|a| !a.ok) {
            eprintln!(
                "  {}: a failed ADD: {}{}",
                im.label,
                bad.stdout.trim(),
                bad.stderr.trim()
            );
        }
        let ips: HashSet<String> = adds.iter().filter_map(|a| first_ip(&a.stdout)).collect();
        let ports = im.ports("br-par")?;
        let (del_wall, dels) = run("DEL")?;
        let del_ok = dels.iter().all(|d| d.ok) && im.ports("br-par")? == 0;
        ns.delete(&ctrs);
        rates[k] = n as f64 / add_wall.as_secs_f64();
        let good = ok == n && ips.len() == n && ports == n && del_ok;
        all_ok &= good;
        println!(
            "  {:<11}{:>10}{:>10}{:>12}{:>10.1}{:>8}{:>12}{:>10.1}{}",
            im.label,
            format!("{ok}/{n}"),
            ips.len(),
            ms(add_wall),
            rates[k],
            ports,
            ms(del_wall),
            n as f64 / del_wall.as_secs_f64(),
            if good { "" } else { "   <- FAILED" }
        );
    }
    println!(
        "  ADD throughput ours/reference = {:.2}x; all ADDs ok with distinct addresses, on the bridge, all DELs ok: {}",
        rates[0] / rates[1],
        verdict(all_ok)
    );
    Ok(all_ok)
}

fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let v: Value = serde_json::from_slice(&o.stdout).ok()?;
            let list = v["supportedVersions"].as_array()?;
            Some(format!(
                "spec {}..{}",
                list.first()?.as_str()?,
                list.last()?.as_str()?
            ))
        })
        .unwrap_or_else(|| "?".into())
}

fn run(o: &Opts, ns: &Namespaces) -> Res<bool> {
    let hosts = ns.create("host", 2, true)?;
    let scratch = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
    let impls = [
        Impl {
            label: "ours",
            bin: o.ours.clone(),
            host: hosts[0].clone(),
            dir: scratch.join("ours"),
        },
        Impl {
            label: "reference",
            bin: o.reference.clone(),
            host: hosts[1].clone(),
            dir: scratch.join("ref"),
        },
    ];
    println!(
        "bridge-bench: ours {} ({}), reference {} ({}); {} CPUs; kernel {}",
        o.ours.display(),
        version_of(&o.ours),
        o.reference.display(),
        version_of(&o.reference),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "host-local IPAM: in-process (ours), /usr/lib/cni/host-local (reference); dataDir on {}",
        scratch.display()
    );
    let mut ok = true;
    let r = (|| {
        if o.only.contains('a') {
            ok &= latency(o, &impls, ns, false, 0.2)?;
        }
        if o.only.contains('b') {
            ok &= latency(o, &impls, ns, true, 0.1)?;
        }
        if o.only.contains('c') {
            ok &= fill(o, &impls, ns)?;
        }
        if o.only.contains('d') {
            ok &= concurrent(o, &impls, ns)?;
        }
        Ok(ok)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            std::process::exit(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bridge-bench: needs root (it creates network namespaces)");
        std::process::exit(2);
    }
    sweep_stale();
    let ns = Namespaces::default();
    let r = run(&o, &ns);
    ns.delete_all();
    match r {
        Ok(true) => println!("summary: all targets met"),
        Ok(false) => {
            println!("summary: some targets missed (see FAIL above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            std::process::exit(2);
        }
    }
}
