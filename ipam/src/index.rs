//! nuage's lease index: `<store>/.nuage/index`, an on-disk hash table from
//! attachment (container id, ifname) to its addresses, so that ADD's
//! duplicate check, DEL and CHECK never read every lease.
//!
//! Layout: a 4 KiB header, then `slots` slots of 64 bytes (open addressing,
//! linear probing). The header holds the store's fingerprint text (see
//! [`crate::store`]) and the table's geometry, NUL-padded. A slot is
//! `key[16] state[1] count[1] (family[1] addr[16])*2 pad[12]`, where the key
//! is the first 16 bytes of SHA-256(id NUL ifname), state is empty, live or
//! deleted, and a count of [`OVERFLOW`] means "more than two addresses:
//! look them up by scanning the leases".
//!
//! Every change is an in-place write: no file is created per lease, which
//! on a journalling filesystem costs far more than a write. The table is
//! not crash-safe by itself and need not be: the fingerprint is spoilt
//! before the first change and restored after the last, and a spoilt or
//! inconsistent index is rebuilt from the lease files (see [`Index::rebuild`]).
//! No content here can equal a lease's `<id>\r\n<ifname>`, so the reference
//! plugin's content comparisons (which read every file under the store)
//! never match this file.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nuage_core::{Error, Result};
use sha2::{Digest, Sha256};

/// Header size; slots start here.
const HEADER: u64 = 4096;
const SLOT: usize = 64;
/// Slots per 4 KiB read.
const CHUNK: u64 = 64;
const MIN_SLOTS: u64 = 256;
const INLINE: usize = 2;
/// Slot count value for an attachment with more addresses than a slot holds (two).
pub const OVERFLOW: u8 = 255;

const EMPTY: u8 = 0;
const LIVE: u8 = 1;
const DELETED: u8 = 2;

/// The index key of an attachment (an empty ifname: legacy id-only leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key([u8; 16]);

impl Key {
    pub fn of(id: &str, ifname: &str) -> Key {
        let mut h = Sha256::new();
        h.update(id.trim().as_bytes());
        h.update([0]);
        h.update(ifname.as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.finalize()[..16]);
        Key(k)
    }

    fn home(&self, slots: u64) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().unwrap_or_default()) & (slots - 1)
    }
}

/// What the index knows about an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Ips(BTreeSet<IpAddr>),
    /// More addresses than a slot holds: scan the leases.
    Overflow,
}

/// The open index file.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    file: File,
    slots: u64,
    live: u64,
    used: u64,
    /// The header's fingerprint text, as read when opened (empty if invalid).
    recorded: String,
}

impl Index {
    /// Opens (creating if needed) the index in `meta_dir`. A missing,
    /// short or malformed index opens with no slots and an empty recorded
    /// fingerprint, so that the store rebuilds it.
    pub fn open(meta_dir: &Path) -> Result<Index> {
        let path = meta_dir.join("index");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::os(format!("open {}", path.display()), e))?;
        let mut idx = Index {
            path,
            file,
            slots: 0,
            live: 0,
            used: 0,
            recorded: String::new(),
        };
        let mut header = vec![0u8; HEADER as usize];
        let n = read_at(&idx.file, &mut header, 0).map_err(|e| idx.io("read", e))?;
        let len = idx.file.metadata().map_err(|e| idx.io("stat", e))?.len();
        let text = String::from_utf8_lossy(&header[..n]);
        let text = text.split('\0').next().unwrap_or("");
        if let Some((fingerprint, geometry)) = text.split_once("end\n") {
            let nums: Vec<u64> = geometry
                .split_whitespace()
                .skip(1)
                .step_by(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [slots, live, used] = nums[..] {
                if slots.is_power_of_two()
                    && slots >= MIN_SLOTS
                    && len == HEADER + slots * SLOT as u64
                {
                    idx.slots = slots;
                    idx.live = live;
                    idx.used = used;
                    idx.recorded = format!("{fingerprint}end\n");
                }
            }
        }
        Ok(idx)
    }

    /// Attachments in the table.
    pub fn attachments(&self) -> u64 {
        self.live
    }

    /// The fingerprint recorded in the header (empty when none is valid).
    pub fn recorded(&self) -> &str {
        &self.recorded
    }

    /// Spoils the recorded fingerprint before a change.
    pub fn spoil(&mut self) -> Result<()> {
        self.recorded.clear();
        self.file
            .write_all_at(b"-", 0)
            .map_err(|e| self.io("write", e))
    }

    /// Records `fingerprint` (which must end with "end\n") and the geometry.
    pub fn seal(&mut self, fingerprint: &str) -> Result<()> {
        let mut h = format!(
            "{fingerprint}slots {} live {} used {}\n",
            self.slots, self.live, self.used
        )
        .into_bytes();
        // NUL-terminated: whatever followed a longer old header is ignored.
        h.push(0);
        if h.len() > HEADER as usize {
            return Err(Error::internal(format!(
                "{}: header too long",
                self.path.display()
            )));
        }
        self.file
            .write_all_at(&h, 0)
            .map_err(|e| self.io("write", e))?;
        self.recorded = fingerprint.to_string();
        Ok(())
    }

    /// The addresses recorded for `key`.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>> {
        Ok(self.find(key)?.1.map(|(_, e)| e))
    }

    /// Sets the addresses of `key`; an empty set removes it.
    pub fn put(&mut self, key: &Key, ips: &BTreeSet<IpAddr>) -> Result<()> {
        let entry = Entry::Ips(ips.clone());
        let (free, found) = self.find(key)?;
        let slot = match (found, ips.is_empty()) {
            (Some((i, _)), true) => {
                self.live = self.live.saturating_sub(1);
                return self.write_slot(i, &deleted_slot(key));
            }
            (None, true) => return Ok(()),
            (Some((i, _)), false) => i,
            (None, false) => {
                let Some((i, was_empty)) = free else {
                    return self.grow_and_put(key, entry);
                };
                if was_empty && (self.used + 1) * 10 > self.slots * 6 {
                    return self.grow_and_put(key, entry);
                }
                self.live += 1;
                self.used += u64::from(was_empty);
                i
            }
        };
        self.write_slot(slot, &live_slot(key, &entry))
    }

    /// Replaces the whole table with `entries` (sized for them), through a
    /// new file renamed over the old one. The header stays spoilt until
    /// [`Index::seal`].
    pub fn rebuild(&mut self, entries: &[(Key, Entry)]) -> Result<()> {
        let slots = (entries.len() as u64 * 2)
            .next_power_of_two()
            .max(MIN_SLOTS);
        let mut table = vec![0u8; HEADER as usize + slots as usize * SLOT];
        table[0] = b'-';
        for (key, entry) in entries {
            let mut i = key.home(slots);
            loop {
                let off = HEADER as usize + i as usize * SLOT;
                if table[off + 16] == EMPTY {
                    table[off..off + SLOT].copy_from_slice(&live_slot(key, entry));
                    break;
                }
                i = (i + 1) & (slots - 1);
            }
        }
        let tmp = self.path.with_extension("new");
        let io = |e| Error::os(format!("write {}", tmp.display()), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        if let Err(e) = file.write_all_at(&table, 0) {
            // A full disk: do not leave the part written behind.
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io("replace", e))?;
        self.file = file;
        self.slots = slots;
        self.live = entries.len() as u64;
        self.used = self.live;
        self.recorded.clear();
        Ok(())
    }

    /// Every live entry (for growing the table).
    fn entries(&self) -> Result<Vec<(Key, Entry)>> {
        let mut out = Vec::with_capacity(self.live as usize);
        let mut buf = vec![0u8; (CHUNK as usize) * SLOT];
        for c in 0..self.slots.div_ceil(CHUNK) {
            let n = read_at(&self.file, &mut buf, HEADER + c * CHUNK * SLOT as u64)
                .map_err(|e| self.io("read", e))?;
            for s in buf[..n].chunks_exact(SLOT) {
                if s[16] == LIVE {
                    out.push((Key(s[..16].try_into().unwrap_or_default()), decode(s)));
                }
            }
        }
        Ok(out)
    }

    fn grow_and_put(&mut self, key: &Key, entry: Entry) -> Result<()> {
        let mut all = self.entries()?;
        all.retain(|(k, _)| k != key);
        all.push((*key, entry));
        self.rebuild(&all)
    }

    /// Probes for `key`: the first reusable slot (and whether it was never
    /// used), and the slot holding `key` with its entry.
    #[allow(clippy::type_complexity)]
    fn find(&self, key: &Key) -> Result<(Option<(u64, bool)>, Option<(u64, Entry)>)> {
        if self.slots == 0 {
            return Ok((None, None));
        }
        let mut free = None;
        let mut buf = vec![0u8; CHUNK as usize * SLOT];
        let mut loaded = u64::MAX;
        let mut i = key.home(self.slots);
        for _ in 0..self.slots {
            let chunk = i / CHUNK;
            if chunk != loaded {
                read_at(&self.file, &mut buf, HEADER + chunk * CHUNK * SLOT as u64)
                    .map_err(|e| self.io("read", e))?;
                loaded = chunk;
            }
            let off = (i % CHUNK) as usize * SLOT;
            let s = &buf[off..off + SLOT];
            match s[16] {
                EMPTY => return Ok((free.or(Some((i, true))), None)),
                LIVE if s[..16] == key.0 => return Ok((free, Some((i, decode(s))))),
                DELETED if free.is_none() => free = Some((i, false)),
                _ => {}
            }
            i = (i + 1) & (self.slots - 1);
        }
        Ok((free, None))
    }

    fn write_slot(&self, i: u64, slot: &[u8; SLOT]) -> Result<()> {
        self.file
            .write_all_at(slot, HEADER + i * SLOT as u64)
            .map_err(|e| self.io("write", e))
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::os(format!("{what} {}", self.path.display()), e)
    }
}

fn live_slot(key: &Key, entry: &Entry) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..16].copy_from_slice(&key.0);
    s[16] = LIVE;
    let ips = match entry {
        Entry::Ips(ips) if ips.len() <= INLINE => ips,
        _ => {
            s[17] = OVERFLOW;
            return s;
        }
    };
    s[17] = ips.len() as u8;
    for (n, ip) in ips.iter().enumerate() {
        let off = 18 + n * 17;
        match ip {
            IpAddr::V4(a) => {
                s[off] = 4;
                s[off + 1..off + 5].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                s[off] = 6;
                s[off + 1..off + 17].copy_from_slice(&a.octets());
            }
        }
    }
    s
}

fn deleted_slot(key: &Key) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..16].copy_from_slice(&key.0);
    s[16] = DELETED;
    s
}

fn decode(s: &[u8]) -> Entry {
    if s[17] == OVERFLOW {
        return Entry::Overflow;
    }
    let mut ips = BTreeSet::new();
    for n in 0..usize::from(s[17]).min(INLINE) {
        let off = 18 + n * 17;
        let a = &s[off + 1..off + 17];
        match s[off] {
            4 => ips.insert(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => ips.insert(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(a).unwrap_or_default(),
            ))),
            _ => return Entry::Overflow,
        };
    }
    Entry::Ips(ips)
}

/// `pread` until `buf` is full or the end of the file; returns the bytes read.
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[n..].fill(0);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn put_get_delete_grow_and_reopen() {
        let t = TempDir::new("index");
        let mut idx = Index::open(&t.0).unwrap();
        assert_eq!(idx.recorded(), "");
        idx.rebuild(&[]).unwrap();
        let k = |i: usize| Key::of(&format!("c{i}"), "eth0");
        // Enough entries to grow the table several times.
        for i in 0..1000 {
            idx.put(
                &k(i),
                &ips(&[&format!("10.0.{}.{}", i / 256, i % 256), "fd00::1"]),
            )
            .unwrap();
        }
        assert!(idx.slots >= 2048);
        for i in (0..1000).step_by(2) {
            idx.put(&k(i), &BTreeSet::new()).unwrap();
        }
        idx.put(
            &Key::of("big", "eth0"),
            &ips(&["10.9.0.1", "10.9.0.2", "fd00::9"]),
        )
        .unwrap();
        idx.seal("fp\nend\n").unwrap();
        drop(idx);
        let idx = Index::open(&t.0).unwrap();
        assert_eq!(idx.recorded(), "fp\nend\n");
        assert_eq!(idx.live, 501);
        assert_eq!(idx.get(&k(0)).unwrap(), None);
        assert_eq!(
            idx.get(&k(3)).unwrap(),
            Some(Entry::Ips(ips(&["10.0.0.3", "fd00::1"])))
        );
        assert_eq!(
            idx.get(&k(999)).unwrap(),
            Some(Entry::Ips(ips(&["10.0.3.231", "fd00::1"])))
        );
        assert_eq!(
            idx.get(&Key::of("big", "eth0")).unwrap(),
            Some(Entry::Overflow)
        );
        assert_eq!(idx.get(&Key::of("c3", "eth1")).unwrap(), None);
        assert_ne!(Key::of("c1", ""), Key::of("c1", "eth0"));
    }

    #[test]
    fn damaged_index_opens_as_stale() {
        let t = TempDir::new("index-bad");
        let mut idx = Index::open(&t.0).unwrap();
        idx.rebuild(&[]).unwrap();
        idx.seal("fp\nend\n").unwrap();
        drop(idx);
        // Truncated: geometry no longer matches the length.
        let f = OpenOptions::new()
            .write(true)
            .open(t.0.join("index"))
            .unwrap();
        f.set_len(HEADER + 100).unwrap();
        assert_eq!(Index::open(&t.0).unwrap().recorded(), "");
        fs::write(t.0.join("index"), "garbage").unwrap();
        assert_eq!(Index::open(&t.0).unwrap().recorded(), "");
    }
}
