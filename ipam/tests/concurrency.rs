//! Many plugin processes on one network at once: every ADD gets its own
//! address, DELs interleaved with ADDs lose no lease, and the index agrees
//! with the leases afterwards.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{json, Value};

fn conf(t: &TempDir) -> Value {
    host_local_conf(
        "1.1.0",
        t.str(),
        json!({"ranges": [[{"subnet": "10.60.0.0/24"}], [{"subnet": "fd60::/120"}]]}),
    )
}

/// Starts `cmd` for every id at once, then waits for all of them.
fn all_at_once(cmd: &str, ids: &[String], c: &Value) -> Vec<(String, Out)> {
    let children: Vec<_> = ids
        .iter()
        .map(|id| (id.clone(), Call::new(HOST_LOCAL, cmd, id).spawn(c)))
        .collect();
    children
        .into_iter()
        .map(|(id, child)| {
            let o = child.wait_with_output().unwrap();
            let out = Out {
                ok: o.status.success(),
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            };
            (id, out)
        })
        .collect()
}

/// The store's leases grouped by holder.
fn by_holder(t: &TempDir) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (ip, holder) in leases(&t.path().join("net1")) {
        m.entry(holder).or_default().insert(ip);
    }
    m
}

#[test]
fn sixty_four_parallel_adds_get_distinct_addresses() {
    let t = TempDir::new("par");
    let c = conf(&t);
    let ids: Vec<String> = (0..64).map(|i| format!("par{i}")).collect();
    let mut seen = BTreeSet::new();
    let mut expect: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, out) in all_at_once("ADD", &ids, &c) {
        let ips = out.ips();
        assert_eq!(ips.len(), 2, "{id}: {ips:?}");
        for ip in &ips {
            assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        }
        let bare = ips
            .iter()
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect();
        expect.insert(format!("{id}\r\neth0"), bare);
    }
    assert_eq!(by_holder(&t), expect);
    // Allocation was sequential under the lock: exactly .2 ... .65.
    let v4: BTreeSet<u32> = seen
        .iter()
        .filter_map(|a| {
            a.strip_prefix("10.60.0.")?
                .strip_suffix("/24")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(v4, (2..66).collect());
    for (id, out) in all_at_once("CHECK", &ids, &c) {
        assert!(out.ok, "{id}: {}", out.stdout);
    }
}

#[test]
fn adds_and_dels_interleaved_lose_nothing() {
    let t = TempDir::new("mix");
    let c = conf(&t);
    let old: Vec<String> = (0..32).map(|i| format!("old{i}")).collect();
    for (id, out) in all_at_once("ADD", &old, &c) {
        assert!(out.ok, "{id}: {}", out.stdout);
    }
    for round in 0..3 {
        let new: Vec<String> = (0..32).map(|i| format!("new{round}-{i}")).collect();
        let gone: Vec<String> = if round == 0 {
            old.clone()
        } else {
            (0..32).map(|i| format!("new{}-{i}", round - 1)).collect()
        };
        // DELs and ADDs all in flight together.
        let mut children = Vec::new();
        for (a, d) in new.iter().zip(&gone) {
            children.push(("ADD", a.clone(), Call::new(HOST_LOCAL, "ADD", a).spawn(&c)));
            children.push(("DEL", d.clone(), Call::new(HOST_LOCAL, "DEL", d).spawn(&c)));
        }
        let mut added = BTreeMap::new();
        for (cmd, id, child) in children {
            let o = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(o.status.success(), "{cmd} {id}: {stdout}");
            if cmd == "ADD" {
                let v: Value = serde_json::from_str(&stdout).unwrap();
                let ips: BTreeSet<String> = v["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        i["address"]
                            .as_str()
                            .unwrap()
                            .split('/')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                added.insert(format!("{id}\r\neth0"), ips);
            }
        }
        // Exactly the new attachments hold leases, each the ones it was given.
        assert_eq!(by_holder(&t), added, "round {round}");
        for (id, out) in all_at_once("CHECK", &gone, &c) {
            assert!(!out.ok, "{id} was deleted but CHECK passed");
        }
        for (id, out) in all_at_once("CHECK", &new, &c) {
            assert!(out.ok, "{id}: {}", out.stdout);
        }
    }
}

#[test]
fn gc_concurrent_with_adds_keeps_every_valid_lease() {
    let t = TempDir::new("gc-race");
    let c = conf(&t);
    let ids: Vec<String> = (0..32).map(|i| format!("g{i}")).collect();
    let mut g = c.clone();
    g["cni.dev/valid-attachments"] = Value::Array(
        ids.iter()
            .map(|id| json!({"containerID": id, "ifname": "eth0"}))
            .collect(),
    );
    // A stale lease that every GC may reclaim.
    assert!(Call::new(HOST_LOCAL, "ADD", "stale").run(&c).ok);
    let mut children = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        children.push(("ADD", Call::new(HOST_LOCAL, "ADD", id).spawn(&c)));
        if i % 4 == 0 {
            children.push(("GC", Call::new(HOST_LOCAL, "GC", "").spawn(&g)));
        }
    }
    for (cmd, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let holders = by_holder(&t);
    assert!(!holders.contains_key("stale\r\neth0"));
    assert_eq!(holders.len(), 32);
    assert!(holders.values().all(|ips| ips.len() == 2));
    // Then a GC that keeps half.
    g["cni.dev/valid-attachments"] = Value::Array(
        ids[..16]
            .iter()
            .map(|id| json!({"containerID": id, "ifname": "eth0"}))
            .collect(),
    );
    assert!(Call::new(HOST_LOCAL, "GC", "").run(&g).ok);
    assert_eq!(by_holder(&t).len(), 16);
    for (id, out) in all_at_once("CHECK", &ids, &c) {
        let n: usize = id[1..].parse().unwrap();
        assert_eq!(out.ok, n < 16, "{id}");
    }
}
