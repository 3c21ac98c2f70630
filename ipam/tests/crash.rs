//! Crash safety: ADDs and DELs killed with SIGKILL at random points, hundreds
//! of times. The store must never hold a partial lease, a duplicate, or a
//! lease that GC cannot reclaim, and the index must recover.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

/// xorshift64*: enough randomness for delays, no dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("crash test seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Checks the invariants that must hold whatever was killed when.
fn check_store(t: &TempDir, known: &BTreeSet<String>) {
    let dir = t.path().join("net1");
    let mut per_holder: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ip, content) in leases(&dir) {
        let (id, ifname) = content
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("lease {ip} is partial or corrupt: {content:?}"));
        assert!(
            known.contains(id) && ifname == "eth0",
            "lease {ip} has unexpected holder {content:?}"
        );
        per_holder.entry(content).or_default().push(ip);
    }
    for (holder, ips) in per_holder {
        let v4 = ips.iter().filter(|ip| !ip.contains(':')).count();
        assert!(v4 <= 1 && ips.len() - v4 <= 1, "{holder:?} holds {ips:?}");
    }
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().into_string().unwrap();
        assert!(
            !name.starts_with(".nuage-tmp"),
            "temporary file {name} left behind"
        );
    }
}

#[test]
fn sigkill_at_random_points() {
    let t = TempDir::new("crash");
    let c = host_local_conf(
        "1.1.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.70.0.0/22"}], [{"subnet": "fd70::/118"}]]}),
    );
    let mut rng = Rng::new();
    // Calibrate: kill within about the time a whole operation takes.
    let mut times: Vec<u64> = (0..5)
        .map(|i| {
            let start = std::time::Instant::now();
            let id = format!("cal{i}");
            assert!(Call::new(HOST_LOCAL, "ADD", &id).run(&c).ok);
            assert!(Call::new(HOST_LOCAL, "DEL", &id).run(&c).ok);
            start.elapsed().as_micros() as u64 / 2
        })
        .collect();
    times.sort();
    let mut window = times[2] * 3;
    eprintln!(
        "one operation takes ~{}us: killing within {window}us",
        times[2]
    );
    let mut known: BTreeSet<String> = BTreeSet::new();
    // Attachments whose ADD completed (and were not DELed since): their result.
    let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let iterations = 400;
    let mut killed = 0;
    let mut batch_kills = 0;
    for i in 0..iterations {
        // The machine's other load changes how long an operation takes:
        // keep about half of them killed by adapting the window.
        if i > 0 && i % 50 == 0 {
            match batch_kills {
                0..=14 => window = (window / 2).max(50),
                36.. => window = window * 3 / 2,
                _ => {}
            }
            batch_kills = 0;
        }
        let del = i % 3 == 2 && !known.is_empty();
        let id = if del {
            known
                .iter()
                .nth(rng.below(known.len() as u64) as usize)
                .unwrap()
                .clone()
        } else {
            format!("k{i}")
        };
        known.insert(id.clone());
        let mut child = Call::new(HOST_LOCAL, if del { "DEL" } else { "ADD" }, &id).spawn(&c);
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            if del {
                live.remove(&id);
            } else {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                let ips = v["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        a["address"]
                            .as_str()
                            .unwrap()
                            .split('/')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                live.insert(id.clone(), ips);
            }
        } else {
            if std::env::var("CRASH_DEBUG").is_ok() {
                eprintln!("{:?} {}", o.status, String::from_utf8_lossy(&o.stdout));
            }
            killed += 1;
            batch_kills += 1;
            if del {
                // A killed DEL may or may not have released: the runtime retries.
                live.remove(&id);
            }
        }
        check_store(&t, &known);
    }
    eprintln!("{killed} of {iterations} operations were killed");
    assert!(
        killed > iterations / 10,
        "the delays never hit a running plugin"
    );
    assert!(killed < iterations * 9 / 10, "almost nothing completed");

    // Every lease of a completed ADD is still there, with its holder.
    let dir = t.path().join("net1");
    let all = leases(&dir);
    for (id, ips) in &live {
        for ip in ips {
            assert_eq!(
                all.get(ip).map(String::as_str),
                Some(format!("{id}\r\neth0").as_str()),
                "{ip}"
            );
        }
    }
    // GC reclaims everything that is not live, whatever state it was left in.
    let mut g = c.clone();
    g["cni.dev/valid-attachments"] = Value::Array(
        live.keys()
            .map(|id| json!({"containerID": id, "ifname": "eth0"}))
            .collect(),
    );
    let out = Call::new(HOST_LOCAL, "GC", "").run(&g);
    assert!(out.ok, "{out:?}");
    let want: BTreeSet<String> = live.values().flatten().cloned().collect();
    assert_eq!(leases(&dir).keys().cloned().collect::<BTreeSet<_>>(), want);
    // The index agrees: CHECK finds every live attachment, DEL releases it.
    for id in live.keys() {
        assert!(Call::new(HOST_LOCAL, "CHECK", id).run(&c).ok, "{id}");
        assert!(Call::new(HOST_LOCAL, "DEL", id).run(&c).ok, "{id}");
    }
    assert!(leases(&dir).is_empty());
    // And allocation still works, with distinct addresses.
    let a = Call::new(HOST_LOCAL, "ADD", "after1").run(&c).ips();
    let b = Call::new(HOST_LOCAL, "ADD", "after2").run(&c).ips();
    assert!(a.iter().all(|x| !b.contains(x)));
}
