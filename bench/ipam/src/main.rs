//! IPAM benchmark (not a timed test): prints medians and ratios.
//!
//! 1. In-process host-local ADD in an empty /16 versus the same /16 holding
//!    50,000 leases (the bound: at most 2x), plus DEL and CHECK, and
//!    the one-time index rebuild after another writer touched the store.
//! 2. The `host-local` executable versus the reference one, interleaved in
//!    the same run (the bound: ours at most half the reference's median).
//!
//! Usage: `ipam-bench [--ours PATH] [--reference PATH] [--leases N]
//! [--samples N] [--dir PATH]`; `bench/ipam/run.sh` builds and runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use nuage_core::skel::{CmdArgs, Command};
use nuage_core::spec::NetConf;
use serde_json::{json, Value};

struct Opts {
    ours: PathBuf,
    reference: PathBuf,
    leases: usize,
    samples: usize,
    dir: PathBuf,
}

fn opts() -> Opts {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Opts {
        ours: exe_dir.join("host-local"),
        reference: PathBuf::from("/usr/lib/cni/host-local"),
        leases: 50_000,
        samples: 1000,
        dir: std::env::temp_dir().join(format!("nuage-ipam-bench-{}", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--ours" => o.ours = val().into(),
            "--reference" => o.reference = val().into(),
            "--leases" => o.leases = val().parse().expect("--leases N"),
            "--samples" => o.samples = val().parse().expect("--samples N"),
            "--dir" => o.dir = val().into(),
            _ => panic!("unknown argument {a}; see the doc comment of bench/ipam/src/main.rs"),
        }
    }
    o
}

fn conf(data_dir: &Path, name: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "bridge",
           "ipam": {"type": "host-local", "subnet": "10.128.0.0/16", "dataDir": data_dir,
                    "routes": [{"dst": "0.0.0.0/0"}]}})
}

fn cmd_args(command: Command, id: &str, conf: &Value) -> CmdArgs {
    let stdin = conf.to_string().into_bytes();
    CmdArgs {
        command,
        container_id: id.into(),
        netns: Some("/run/netns/bench".into()),
        ifname: "eth0".into(),
        args: String::new(),
        path: vec![],
        netns_override: false,
        conf: NetConf::parse(&stdin).expect("config"),
        stdin,
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// Per-verb samples: ADD, CHECK, DEL.
#[derive(Default)]
struct Samples([Vec<Duration>; 3]);

impl Samples {
    /// ADD, CHECK and DEL of a fresh attachment (so the lease count stays
    /// what it was), each timed.
    fn cycle(&mut self, conf: &Value, id: &str) {
        let (r, d) = time(|| nuage_ipam::add(&cmd_args(Command::Add, id, conf)));
        r.expect("ADD");
        self.0[0].push(d);
        let (r, d) = time(|| nuage_ipam::check(&cmd_args(Command::Check, id, conf)));
        r.expect("CHECK");
        self.0[1].push(d);
        let (r, d) = time(|| nuage_ipam::del(&cmd_args(Command::Del, id, conf)));
        r.expect("DEL");
        self.0[2].push(d);
    }

    fn medians(self) -> [Duration; 3] {
        self.0.map(median)
    }
}

fn in_process(o: &Opts, dir: &Path, label: &str) -> bool {
    println!(
        "== in-process host-local on {label} ({}), 10.128.0.0/16, {} samples each",
        dir.display(),
        o.samples
    );
    let empty = conf(dir, "empty");
    let full = conf(dir, "full");
    // Seeding is itself an allocation benchmark: ADDs with 0 .. N leases.
    let mut seed = Vec::with_capacity(o.leases);
    for i in 0..o.leases {
        let (r, d) = time(|| nuage_ipam::add(&cmd_args(Command::Add, &format!("seed-{i}"), &full)));
        r.expect("seed ADD");
        seed.push(d);
    }
    let tenth = (o.leases / 10).max(1).min(seed.len());
    if tenth > 0 {
        let first = median(seed[..tenth].to_vec());
        let last = median(seed[seed.len() - tenth..].to_vec());
        println!(
            "seeded {} leases in {:.2} s; ADD median over the first tenth {}, over the last tenth {} ({:.2}x)",
            o.leases,
            seed.iter().sum::<Duration>().as_secs_f64(),
            us(first),
            us(last),
            last.as_secs_f64() / first.as_secs_f64()
        );
    }
    // Let the seeding's writeback finish, so that it does not slow one side.
    sync();
    // Interleaved, alternating which goes first, so that both see the same
    // machine conditions.
    let (mut e, mut f) = (Samples::default(), Samples::default());
    for i in 0..o.samples {
        if i % 2 == 0 {
            e.cycle(&empty, &format!("e-{i}"));
            f.cycle(&full, &format!("f-{i}"));
        } else {
            f.cycle(&full, &format!("f-{i}"));
            e.cycle(&empty, &format!("e-{i}"));
        }
    }
    let (e, f) = (e.medians(), f.medians());

    println!(
        "{:<8} {:>14} {:>18} {:>8}",
        "verb",
        "empty range",
        format!("{} leases", o.leases),
        "ratio"
    );
    for (i, verb) in ["ADD", "CHECK", "DEL"].iter().enumerate() {
        let ratio = f[i].as_secs_f64() / e[i].as_secs_f64();
        println!("{verb:<8} {:>14} {:>18} {ratio:>7.2}x", us(e[i]), us(f[i]));
    }
    let add_ratio = f[0].as_secs_f64() / e[0].as_secs_f64();
    println!(
        "ADD with {} leases / ADD in an empty range = {add_ratio:.2} (bound: <= 2): {}",
        o.leases,
        if add_ratio <= 2.0 { "PASS" } else { "FAIL" }
    );

    // Another writer touched the store (as the reference plugin does when
    // it allocates): the first operation rebuilds the index once.
    std::fs::write(dir.join("full/10.128.255.254"), "foreign\r\neth0").expect("foreign lease");
    std::fs::write(dir.join("full/last_reserved_ip.0"), "10.128.255.254").expect("foreign last");
    let (r, d) = time(|| nuage_ipam::add(&cmd_args(Command::Add, "after-foreign", &full)));
    r.expect("ADD after a foreign write");
    let (_, d2) = time(|| nuage_ipam::add(&cmd_args(Command::Add, "after-rebuild", &full)));
    println!(
        "first ADD after a foreign write (index rebuilt from {} leases): {:.1} ms; the next one: {}",
        o.leases,
        d.as_secs_f64() * 1e3,
        us(d2)
    );
    add_ratio <= 2.0
}

/// Flushes dirty data to disk (`sync`) and lets the journal settle.
fn sync() {
    let _ = Process::new("sync").status();
    std::thread::sleep(Duration::from_millis(200));
}

/// Runs one plugin process, returning its wall time.
fn exec(bin: &Path, cmd: &str, id: &str, conf: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Process::new(bin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let d = start.elapsed();
    assert!(
        out.status.success(),
        "{} {cmd} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    d
}

fn executables(o: &Opts) -> bool {
    if !o.reference.exists() || !o.ours.exists() {
        println!(
            "== executables: skipped ({} or {} missing)",
            o.ours.display(),
            o.reference.display()
        );
        return true;
    }
    println!(
        "== executables, interleaved, {} samples each: {} vs {}",
        o.samples,
        o.ours.display(),
        o.reference.display()
    );
    let ours = conf(&o.dir, "exec-ours").to_string().into_bytes();
    let theirs = conf(&o.dir, "exec-ref").to_string().into_bytes();
    let (mut oa, mut ra, mut od, mut rd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Warm-up, so both binaries are in the page cache.
    for i in 0..20 {
        let id = format!("w{i}");
        exec(&o.ours, "ADD", &id, &ours);
        exec(&o.reference, "ADD", &id, &theirs);
    }
    for i in 0..o.samples {
        let id = format!("x{i}");
        // Alternate which goes first, so neither gets a systematic edge.
        if i % 2 == 0 {
            oa.push(exec(&o.ours, "ADD", &id, &ours));
            ra.push(exec(&o.reference, "ADD", &id, &theirs));
        } else {
            ra.push(exec(&o.reference, "ADD", &id, &theirs));
            oa.push(exec(&o.ours, "ADD", &id, &ours));
        }
        if i % 2 == 0 {
            od.push(exec(&o.ours, "DEL", &id, &ours));
            rd.push(exec(&o.reference, "DEL", &id, &theirs));
        } else {
            rd.push(exec(&o.reference, "DEL", &id, &theirs));
            od.push(exec(&o.ours, "DEL", &id, &ours));
        }
    }
    let (oa, ra, od, rd) = (median(oa), median(ra), median(od), median(rd));
    println!(
        "{:<8} {:>12} {:>12} {:>8}",
        "verb", "nuage", "reference", "ratio"
    );
    for (verb, a, b) in [("ADD", oa, ra), ("DEL", od, rd)] {
        println!(
            "{verb:<8} {:>12} {:>12} {:>7.2}x",
            us(a),
            us(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    let ratio = oa.as_secs_f64() / ra.as_secs_f64();
    println!(
        "ADD median nuage / reference = {ratio:.2} (bound: <= 0.5): {}",
        if ratio <= 0.5 { "PASS" } else { "FAIL" }
    );
    ratio <= 0.5
}

/// A tmpfs directory for the in-process run, if the machine has one.
fn tmpfs_dir() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    ["/dev/shm", "/run"].into_iter().find_map(|m| {
        mounts
            .lines()
            .any(|l| {
                l.split_whitespace().nth(1) == Some(m)
                    && l.split_whitespace().nth(2) == Some("tmpfs")
            })
            .then(|| Path::new(m).join(format!("nuage-ipam-bench-{}", std::process::id())))
    })
}

fn main() {
    let o = opts();
    let tmpfs = tmpfs_dir();
    for d in std::iter::once(&o.dir).chain(&tmpfs) {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("create the bench directory");
    }
    // On tmpfs the figures are the allocator's own cost; on a disk
    // filesystem they include journal waits that depend on the machine's
    // other I/O (see bench/ipam/README.md).
    let algo = tmpfs
        .as_deref()
        .map(|d| in_process(&o, d, "tmpfs"))
        .unwrap_or(true);
    let disk = in_process(&o, &o.dir, "the data directory's filesystem");
    let exec = executables(&o);
    for d in std::iter::once(&o.dir).chain(&tmpfs) {
        let _ = std::fs::remove_dir_all(d);
    }
    println!(
        "summary: in-process flat on tmpfs: {}; on disk: {}; executable at most half the reference: {}",
        verdict(algo),
        verdict(disk),
        verdict(exec)
    );
    if !(algo && exec) {
        std::process::exit(1);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}
