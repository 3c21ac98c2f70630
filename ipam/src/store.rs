//! The on-disk lease store, byte-compatible with the reference host-local.
//!
//! # Layout of `<dataDir>/<network>/` (shared with the reference)
//! - `<ip>`: one file per leased address, named by the address text, holding
//!   `<containerID>\r\n<ifname>` (no trailing newline), mode 0600. Very old
//!   reference versions wrote only `<containerID>` ("legacy" leases); those
//!   are honoured and released as the reference does.
//! - `last_reserved_ip.<set>`: the address last reserved in range set `<set>`;
//!   allocation resumes after it.
//! - `lock`: every operation holds an exclusive `flock` on it, as the
//!   reference does, so both implementations can share a store.
//!
//! # nuage's addition: `.nuage/index` (the reference never interprets it)
//! An on-disk hash table from attachment (container id, ifname) to its
//! addresses (see [`crate::index`]), so that ADD's duplicate check, DEL and
//! CHECK are O(1) instead of reading every lease. Its header holds a
//! fingerprint of the store as nuage last left it (boot id, directory
//! mtime, the `last_reserved_ip` contents). The fingerprint is spoilt
//! before nuage changes anything and written back when the change is
//! complete. When it does not match (a crash mid-operation, a reboot, the
//! reference plugin or a person changed the directory), the index is
//! rebuilt from the lease files, once, under the lock. The lease files are
//! always the truth; the index is a cache of them.
//!
//! # Crash safety
//! A lease is written into an anonymous file (`O_TMPFILE`) and then linked
//! to its address name with `linkat`, which is atomic and fails with EEXIST
//! when the address is taken. A process killed at any point therefore
//! leaves either no lease file or a complete one: never an empty or partial
//! lease, which neither DEL nor the reference could ever release. Where
//! `O_TMPFILE` is unsupported, a named temporary `.nuage-tmp.<pid>` is used
//! instead; a leftover one is removed by the next rebuild and by GC.
//! Nothing is fsynced: after a power loss the boot id in the fingerprint
//! changes, which forces a rebuild, and GC removes any lease left empty.
//! `last_reserved_ip.*` and the index are rewritten in place, which is much
//! cheaper than creating or truncating files on a journalling filesystem:
//! an ADD creates one inode, as the reference does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, AT_FDCWD};
use nuage_core::{log, Error, Result};

use crate::index::{Entry, Index, Key};

const LOCK: &str = "lock";
const LAST_PREFIX: &str = "last_reserved_ip.";
const META: &str = ".nuage";
const TMP_PREFIX: &str = ".nuage-tmp.";
const STATE_MAGIC: &str = "nuage-store-state v1";
/// How many `last_reserved_ip.<set>` files the fingerprint looks at, at most.
const MAX_SETS: usize = 64;
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Who holds a lease, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// `<id>\r\n<ifname>`.
    Attachment { id: String, ifname: String },
    /// `<id>` alone (written by reference versions before ifname existed).
    Legacy { id: String },
    /// Empty or unreadable content: a reference ADD that died mid-write.
    Garbage,
}

impl Holder {
    /// Parses a lease file's content the way the reference compares it
    /// (surrounding whitespace trimmed).
    pub fn parse(content: &[u8]) -> Holder {
        let Ok(s) = std::str::from_utf8(content) else {
            return Holder::Garbage;
        };
        let s = s.trim();
        match s.split_once("\r\n") {
            Some((id, ifname)) if !id.is_empty() => Holder::Attachment {
                id: id.into(),
                ifname: ifname.into(),
            },
            Some(_) => Holder::Garbage,
            None if s.is_empty() => Holder::Garbage,
            None => Holder::Legacy { id: s.into() },
        }
    }

    /// The index key: (id, ifname), with an empty ifname for legacy leases.
    fn key(&self) -> Option<Key> {
        match self {
            Holder::Attachment { id, ifname } => Some(Key::of(id, ifname)),
            Holder::Legacy { id } => Some(Key::of(id, "")),
            Holder::Garbage => None,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Attachment { id, ifname } => write!(f, "container {id} ({ifname})"),
            Holder::Legacy { id } => write!(f, "container {id}"),
            Holder::Garbage => f.write_str("an unreadable lease"),
        }
    }
}

/// What a GC pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Leases released, with their former holder.
    pub released: Vec<(IpAddr, Holder)>,
    /// Leases kept.
    pub kept: usize,
}

/// An open, exclusively locked store for one network. Dropping it unlocks.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held for the store's lifetime: the `flock` is the store's mutex.
    _lock: File,
    /// `.nuage/index`, with the fingerprint in its header.
    index: Index,
    /// The fingerprint has been spoilt and must be rewritten.
    dirty: bool,
    /// [`Store::abandon`] was called: never rewrite the fingerprint.
    abandoned: bool,
    /// The stale index could not be rebuilt (a full disk): this operation
    /// works from the lease files alone, as the reference does, and leaves
    /// the index (and its stale fingerprint) alone for a later one.
    degraded: bool,
    /// This boot's id (part of the fingerprint).
    boot: String,
    /// The contents of `last_reserved_ip.0`, `.1`, ... up to the first
    /// missing one, as on disk (only this process writes them while it
    /// holds the lock).
    last: Vec<Vec<u8>>,
}

impl Store {
    /// Opens the network's directory `dir` (`<dataDir>/<network>`, created
    /// with mode 0755 as the reference does) and takes the lock.
    pub fn open(dir: &Path) -> Result<Store> {
        // The directory usually exists: only a missing one costs a mkdir.
        match Self::lock(dir) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            r => return r,
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| fs_err(format!("create store {}", dir.display()), dir, e))?;
        Self::lock(dir)
    }

    /// Like [`Store::open`], but `None` when the store does not exist (DEL and
    /// CHECK then have nothing to look at and create nothing).
    pub fn open_existing(dir: &Path) -> Result<Option<Store>> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Self::lock(dir).map(Some),
            Ok(_) => Err(Error::internal(format!(
                "store {} is not a directory",
                dir.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fs_err(format!("stat store {}", dir.display()), dir, e)),
        }
    }

    /// Takes the lock of the existing store `dir`; ENOENT when `dir` is missing.
    fn lock(dir: &Path) -> Result<Store> {
        let path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fs_err(format!("open lock {}", path.display()), &path, e))?;
        // Bounded: a stuck holder yields code 11, not a plugin that hangs.
        let lock = nuage_core::flock::lock_file(lock, &path, true, nuage_core::flock::WAIT)?;
        let meta = dir.join(META);
        let index = match Index::open(&meta) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                create_dir(&meta)?;
                Index::open(&meta)?
            }
            r => r?,
        };
        // Without a boot id, a value no index was sealed with: every open
        // rebuilds rather than trust an index that may predate a reboot.
        let boot = read_small(Path::new(BOOT_ID)).unwrap_or_else(|_| {
            format!(
                "unknown-{}-{:?}",
                std::process::id(),
                std::time::Instant::now()
            )
            .into_bytes()
        });
        let mut store = Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            index,
            dirty: false,
            abandoned: false,
            degraded: false,
            boot: String::from_utf8_lossy(&boot).trim().to_string(),
            last: Vec::new(),
        };
        store.ensure_fresh()?;
        Ok(store)
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The address last reserved in range set `set`, if readable.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let content = match self.last.get(set) {
            Some(c) => c.clone(),
            None => read_small(&self.dir.join(format!("{LAST_PREFIX}{set}"))).ok()?,
        };
        String::from_utf8(content).ok()?.parse().ok()
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Option<Holder> {
        read_small(&self.dir.join(ip.to_string()))
            .ok()
            .map(|b| Holder::parse(&b))
    }

    /// Prepares an anonymous lease file for (`id`, `ifname`), to be linked to
    /// an address with [`Store::try_reserve`].
    pub fn new_lease(&mut self, id: &str, ifname: &str) -> Result<PendingLease> {
        self.mark_dirty()?;
        let content = format!("{}\r\n{ifname}", id.trim());
        let tmp = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(&self.dir);
        let (file, named) = match tmp {
            Ok(f) => (f, None),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                let path = self.dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
                let _ = fs::remove_file(&path);
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fs_err(format!("create {}", path.display()), &path, e))?;
                (f, Some(path))
            }
            Err(e) => {
                return Err(fs_err(
                    format!("create a lease file in {}", self.dir.display()),
                    &self.dir,
                    e,
                ))
            }
        };
        let mut lease = PendingLease { file, named };
        lease.file.write_all(content.as_bytes()).map_err(|e| {
            fs_err(
                format!("write a lease file in {}", self.dir.display()),
                &self.dir,
                e,
            )
        })?;
        Ok(lease)
    }

    /// Links `lease` to `ip` if the address is free (atomic: false when it is
    /// taken) and records `ip` as `last_reserved_ip.<set>`.
    pub fn try_reserve(&mut self, lease: &PendingLease, ip: IpAddr, set: usize) -> Result<bool> {
        let target = self.dir.join(ip.to_string());
        let linked = match &lease.named {
            Some(tmp) => fs::hard_link(tmp, &target)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0))),
            None => nix::unistd::linkat(&lease.file, "", AT_FDCWD, &target, AtFlags::AT_EMPTY_PATH)
                .or_else(|e| match e {
                    // Without CAP_DAC_READ_SEARCH, go through /proc.
                    Errno::ENOENT | Errno::EPERM => {
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&lease.file);
                        let proc = format!("/proc/self/fd/{fd}");
                        nix::unistd::linkat(
                            AT_FDCWD,
                            proc.as_str(),
                            AT_FDCWD,
                            &target,
                            AtFlags::AT_SYMLINK_FOLLOW,
                        )
                    }
                    e => Err(e),
                }),
        };
        match linked {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => {
                return Err(Error::os(
                    format!("reserve {}", target.display()),
                    std::io::Error::from_raw_os_error(e as i32),
                ))
            }
        }
        let text = ip.to_string().into_bytes();
        let last = self.dir.join(format!("{LAST_PREFIX}{set}"));
        if let Err(e) = rewrite_small(&last, &text, self.last.get(set).map(Vec::len)) {
            // Not reserved after all: the caller's rollback knows only the
            // addresses reserved before this one.
            if remove(&target).is_err() {
                self.abandon();
            }
            return Err(e);
        }
        match set.cmp(&self.last.len()) {
            std::cmp::Ordering::Less => self.last[set] = text,
            std::cmp::Ordering::Equal => self.last.push(text),
            // Beyond a gap: not part of the fingerprint, as a fresh read would find.
            std::cmp::Ordering::Greater => {}
        }
        Ok(true)
    }

    /// Removes the lease of `ip` if (and only if) `holder` holds it.
    fn release_ip(&mut self, ip: IpAddr, holder: &Holder) -> Result<bool> {
        if self.holder(ip).as_ref() != Some(holder) {
            return Ok(false);
        }
        self.mark_dirty()?;
        remove(&self.dir.join(ip.to_string()))
    }

    /// The addresses held by (`id`, `ifname`) in O(1) (index lookup, each
    /// address checked against its lease file). An empty `ifname` means the
    /// legacy, id-only leases.
    pub fn held_by(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let holder = holder_of(id, ifname);
        let Some(entry) = self.read_entry(id, ifname)? else {
            return Ok(Vec::new());
        };
        Ok(entry
            .into_iter()
            .filter(|ip| self.holder(*ip).as_ref() == Some(&holder))
            .collect())
    }

    /// Records that (`id`, `ifname`) now also holds `ips`.
    pub fn record(&mut self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<()> {
        let mut all: BTreeSet<IpAddr> = self.held_by(id, ifname)?.into_iter().collect();
        all.extend(ips);
        self.write_entry(id, ifname, &all)
    }

    /// Releases `ips` if (`id`, `ifname`) holds them (the rollback of a failed
    /// ADD), keeping the index in step.
    pub fn release_ips(&mut self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<()> {
        let holder = holder_of(id, ifname);
        for ip in ips {
            self.release_ip(*ip, &holder)?;
        }
        let left: BTreeSet<IpAddr> = self.held_by(id, ifname)?.into_iter().collect();
        if self.read_entry(id, ifname)?.is_some_and(|e| e != left) {
            self.write_entry(id, ifname, &left)?;
        }
        Ok(())
    }

    /// DEL: releases every lease of (`id`, `ifname`); when there is none, the
    /// legacy leases of `id`, as the reference. Returns what was released.
    pub fn release(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        for ifname in [ifname, ""] {
            let Some(ips) = self.read_entry(id, ifname)? else {
                continue;
            };
            let holder = holder_of(id, ifname);
            let mut released = Vec::new();
            for ip in ips {
                if self.release_ip(ip, &holder)? {
                    released.push(ip);
                }
            }
            self.write_entry(id, ifname, &BTreeSet::new())?;
            if !released.is_empty() {
                return Ok(released);
            }
        }
        Ok(Vec::new())
    }

    /// The index entry of (`id`, `ifname`); an attachment with more
    /// addresses than an index slot holds is looked up by a scan.
    fn read_entry(&self, id: &str, ifname: &str) -> Result<Option<BTreeSet<IpAddr>>> {
        let entry = match self.degraded {
            false => self.index.get(&Key::of(id, ifname))?,
            true => Some(Entry::Overflow),
        };
        match entry {
            None => Ok(None),
            Some(Entry::Ips(ips)) => Ok(Some(ips)),
            Some(Entry::Overflow) => {
                let holder = holder_of(id, ifname);
                let (leases, _) = self.scan()?;
                Ok(Some(
                    leases
                        .into_iter()
                        .filter(|(_, h)| *h == holder)
                        .map(|(ip, _)| ip)
                        .collect(),
                ))
            }
        }
    }

    /// Sets the index entry of (`id`, `ifname`); empty `ips` removes it.
    fn write_entry(&mut self, id: &str, ifname: &str, ips: &BTreeSet<IpAddr>) -> Result<()> {
        if self.degraded {
            return Ok(());
        }
        self.mark_dirty()?;
        self.index.put(&Key::of(id, ifname), ips)
    }

    /// About how many leases the store holds (its attachments, by the
    /// index), to weigh one directory read against single probes.
    pub fn size_hint(&self) -> u64 {
        self.index.attachments()
    }

    /// The addresses that have a lease file (names only, one directory read).
    pub fn leased(&self) -> Result<HashSet<IpAddr>> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| fs_err(format!("read {}", self.dir.display()), &self.dir, e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| lease_name(e.file_name().to_str()?))
            .collect())
    }

    /// Every lease in the directory (O(number of leases)), plus the names of
    /// leftover temporary files.
    fn scan(&self) -> Result<(BTreeMap<IpAddr, Holder>, Vec<PathBuf>)> {
        let mut leases = BTreeMap::new();
        let mut temps = Vec::new();
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| fs_err(format!("read {}", self.dir.display()), &self.dir, e))?;
        for ent in rd {
            let ent =
                ent.map_err(|e| fs_err(format!("read {}", self.dir.display()), &self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) {
                temps.push(ent.path());
                continue;
            }
            let Some(ip) = lease_name(name) else { continue };
            if !ent.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match read_small(&ent.path()) {
                Ok(b) => {
                    leases.insert(ip, Holder::parse(&b));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(fs_err(
                        format!("read lease {}", ent.path().display()),
                        &ent.path(),
                        e,
                    ))
                }
            }
        }
        Ok((leases, temps))
    }

    /// Rebuilds the index from the lease files: O(leases).
    pub fn rebuild(&mut self) -> Result<()> {
        self.mark_dirty()?;
        let (leases, temps) = self.scan()?;
        self.rebuild_from(&leases, temps)
    }

    /// Rebuilds the index from `leases`, a scan of the lease files made
    /// under this store's lock (so still whole), and removes `temps`.
    fn rebuild_from(
        &mut self,
        leases: &BTreeMap<IpAddr, Holder>,
        temps: Vec<PathBuf>,
    ) -> Result<()> {
        self.mark_dirty()?;
        for t in temps {
            remove(&t)?;
        }
        let mut by_key: BTreeMap<Key, BTreeSet<IpAddr>> = BTreeMap::new();
        for (ip, h) in leases {
            if let Some(key) = h.key() {
                by_key.entry(key).or_default().insert(*ip);
            }
        }
        let entries: Vec<(Key, Entry)> = by_key
            .into_iter()
            .map(|(k, ips)| (k, Entry::Ips(ips)))
            .collect();
        self.index.rebuild(&entries)?;
        log::debug(format_args!(
            "rebuilt the lease index of {}: {} leases, {} attachments",
            self.dir.display(),
            leases.len(),
            entries.len()
        ));
        Ok(())
    }

    /// GC: releases every lease for which `keep` is false, and every lease
    /// with unreadable content; never touches `lock`, `last_reserved_ip.*` or
    /// any file that is not named by an address. Then rebuilds the index
    /// from the same reading of the leases (one pass over them, not two).
    pub fn gc(&mut self, keep: impl Fn(&Holder) -> bool) -> Result<GcReport> {
        self.mark_dirty()?;
        let (mut leases, temps) = self.scan()?;
        let mut report = GcReport::default();
        let mut errors = nuage_core::Errors::new();
        leases.retain(|ip, holder| {
            if *holder != Holder::Garbage && keep(holder) {
                report.kept += 1;
                return true;
            }
            match remove(&self.dir.join(ip.to_string())) {
                Ok(true) => report.released.push((*ip, holder.clone())),
                Ok(false) => {}
                // Still there: still in the index.
                Err(e) => {
                    errors.push(e);
                    return true;
                }
            }
            false
        });
        let rebuilt = self.rebuild_from(&leases, temps);
        self.degrade_on(rebuilt);
        errors.into_result()?;
        Ok(report)
    }

    /// Rebuilds the index; when that fails (the new index cannot be
    /// written on a full disk), degrades to working from the lease files
    /// for the rest of this operation rather than failing it: a DEL must
    /// release its leases on a full disk, as the reference's does.
    fn rebuild_or_degrade(&mut self) {
        let rebuilt = self.rebuild();
        self.degrade_on(rebuilt);
    }

    /// See [`Store::rebuild_or_degrade`].
    fn degrade_on(&mut self, rebuilt: Result<()>) {
        if let Err(e) = rebuilt {
            let hint = match e.errno() {
                Some(libc::ENOSPC | libc::EDQUOT) => " (free space on that filesystem)",
                _ => "",
            };
            log::warn(format_args!(
                "lease index of {} cannot be rebuilt ({e}): reading the lease files instead{hint}",
                self.dir.display()
            ));
            self.degraded = true;
            self.abandoned = true;
        }
    }

    /// Gives up on this operation's changes to the index: the fingerprint
    /// stays spoilt, so the next operation rebuilds the index from the leases.
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Writes the fingerprint back if this store was changed. Call when the
    /// operation is complete and the index matches the leases again; until
    /// then (or if the process dies first) the next operation rebuilds.
    pub fn commit(&mut self) -> Result<()> {
        if !self.dirty || self.abandoned {
            return Ok(());
        }
        self.pin_mtime();
        let fp = self.fingerprint()?;
        self.index.seal(&fp)?;
        self.dirty = false;
        Ok(())
    }

    /// Checks the fingerprint; rebuilds the index when it does not match.
    fn ensure_fresh(&mut self) -> Result<()> {
        // Range sets are allocated in order, so their files exist from 0 up.
        self.last = (0..MAX_SETS)
            .map_while(|i| read_small(&self.dir.join(format!("{LAST_PREFIX}{i}"))).ok())
            .collect();
        if self.index.recorded() == self.fingerprint()? {
            return Ok(());
        }
        log::debug(format_args!(
            "lease index of {} is stale (crash, reboot or another writer): rebuilding",
            self.dir.display()
        ));
        self.rebuild_or_degrade();
        self.commit()
    }

    /// Boot id, directory mtime and `last_reserved_ip.*` contents: anything
    /// else that adds or removes a lease changes at least one of them.
    fn fingerprint(&self) -> Result<String> {
        let md = fs::metadata(&self.dir)
            .map_err(|e| fs_err(format!("stat {}", self.dir.display()), &self.dir, e))?;
        let mut s = format!(
            "{STATE_MAGIC}\nboot {}\nmtime {}.{:09}\n",
            self.boot,
            md.mtime(),
            md.mtime_nsec()
        );
        for (i, last) in self.last.iter().enumerate() {
            s.push_str(&format!(
                "last {i} {}\n",
                String::from_utf8_lossy(last).escape_debug()
            ));
        }
        s.push_str("end\n");
        Ok(s)
    }

    /// Sets the directory's mtime 1 ns back before it goes into the
    /// fingerprint. Kernel quirk: before 6.13's multigrain timestamps, a
    /// directory's mtime comes from a clock that moves once per tick, so a
    /// lease created by another writer (the reference `host-local`) in the
    /// tick of our last change would leave it as it is and the fingerprint
    /// blind to it. The kernel never sets a time before the current tick, so
    /// any later change moves a time set back. Best effort: without it the
    /// index is as safe as before, for all but that race.
    ///
    /// Equivalent to: `touch -m -d @<mtime - 1 ns> <dir>`
    fn pin_mtime(&self) {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let pinned = fs::metadata(&self.dir).map(|md| {
            let (sec, nsec) = (md.mtime(), md.mtime_nsec());
            match nsec {
                0 => TimeSpec::new(sec - 1, 999_999_999),
                n => TimeSpec::new(sec, n - 1),
            }
        });
        let set = pinned.and_then(|mtime| {
            utimensat(
                AT_FDCWD,
                &self.dir,
                &TimeSpec::UTIME_OMIT,
                &mtime,
                UtimensatFlags::FollowSymlink,
            )
            .map_err(std::io::Error::from)
        });
        if let Err(e) = set {
            log::debug(format_args!(
                "set the mtime of {} back: {e}",
                self.dir.display()
            ));
        }
    }

    /// Spoils the fingerprint (in place) before the first change of this
    /// operation, so that a crash from here on forces a rebuild.
    fn mark_dirty(&mut self) -> Result<()> {
        // Degraded, the recorded fingerprint is already stale.
        if !self.dirty && !self.degraded {
            self.index.spoil()?;
            self.dirty = true;
        }
        Ok(())
    }
}

/// A lease file not yet linked to an address; see [`Store::new_lease`].
#[derive(Debug)]
pub struct PendingLease {
    file: File,
    /// The temporary name, when `O_TMPFILE` was not available.
    named: Option<PathBuf>,
}

impl Drop for PendingLease {
    fn drop(&mut self) {
        if let Some(p) = &self.named {
            let _ = fs::remove_file(p);
        }
    }
}

/// An I/O error on the store, with what to do about the common ones.
fn fs_err(what: String, path: &Path, e: std::io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Some(format!(
            "the filesystem of {} is full: free space on it",
            path.display()
        )),
        Some(libc::EROFS) => Some(format!(
            "{} is on a read-only filesystem: set ipam.dataDir to a writable directory",
            path.display()
        )),
        Some(libc::ENOTDIR) => path.ancestors().find(|p| p.is_file()).map(|f| {
            format!(
                "{} is a file, not a directory: set ipam.dataDir to a directory",
                f.display()
            )
        }),
        Some(libc::EACCES | libc::EPERM) => Some(format!(
            "permission denied on {}: check its owner and mode, and any SELinux or AppArmor policy",
            path.display()
        )),
        _ => None,
    };
    let err = Error::os(what, e);
    match hint {
        Some(h) => err.with_details(h),
        None => err,
    }
}

fn holder_of(id: &str, ifname: &str) -> Holder {
    if ifname.is_empty() {
        Holder::Legacy {
            id: id.trim().into(),
        }
    } else {
        Holder::Attachment {
            id: id.trim().into(),
            ifname: ifname.into(),
        }
    }
}

/// The address a lease file name stands for: only canonical address texts
/// count (so `lock`, `last_reserved_ip.0` and our files never do).
pub fn lease_name(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = name.parse().ok()?;
    (ip.to_string() == name).then_some(ip)
}

/// Reads a file of at most 64 KiB (lease and marker files are tiny). One
/// `read` for a file shorter than the first buffer: a short read of a
/// regular file is its end.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0; 512];
    let n = loop {
        match f.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    buf.truncate(n);
    if n == 512 {
        f.take(64 * 1024 - 512).read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// Replaces a small file's content: in place when it does not shrink (one
/// `pwrite`, and no truncation to zero, which makes ext4 start writeback on
/// close); through a temporary file renamed over it when it does, since a
/// write then a truncate killed in between would leave the new text with
/// the old one's tail (`10.0.0.2` over `10.0.0.254`). `old_len` is the
/// current length when known (saves a `stat`).
fn rewrite_small(path: &Path, data: &[u8], old_len: Option<usize>) -> Result<()> {
    let io = |e| fs_err(format!("write {}", path.display()), path, e);
    let open = |path: &Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
    };
    let shrinks = |old: u64| old > data.len() as u64;
    if !old_len.is_some_and(|n| shrinks(n as u64)) {
        let f = open(path).map_err(io)?;
        let old = match old_len {
            Some(n) => n as u64,
            None => f.metadata().map_err(io)?.len(),
        };
        if !shrinks(old) {
            return f.write_all_at(data, 0).map_err(io);
        }
    }
    let tmp = path.with_file_name(format!("{TMP_PREFIX}last.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    open(&tmp)
        .and_then(|f| f.write_all_at(data, 0))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })
}

/// Removes a file; `false` when it was already gone.
fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fs_err(format!("remove {}", path.display()), path, e)),
    }
}

fn create_dir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fs_err(format!("create {}", path.display()), path, e)),
    }
}

/// The attachments GC keeps: exact (id, ifname) pairs, and any lease of a
/// legacy (id-only) holder whose id is still attached somewhere.
pub fn keep_valid<'a>(
    valid: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> impl Fn(&Holder) -> bool {
    let mut pairs = HashSet::new();
    let mut ids = HashSet::new();
    for (id, ifname) in valid {
        pairs.insert((id.trim().to_string(), ifname.to_string()));
        ids.insert(id.trim().to_string());
    }
    move |h| match h {
        Holder::Attachment { id, ifname } => pairs.contains(&(id.clone(), ifname.clone())),
        Holder::Legacy { id } => ids.contains(id),
        Holder::Garbage => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reserve(s: &mut Store, id: &str, ifname: &str, addr: &str) -> bool {
        let l = s.new_lease(id, ifname).unwrap();
        let ok = s.try_reserve(&l, ip(addr), 0).unwrap();
        if ok {
            s.record(id, ifname, &[ip(addr)]).unwrap();
        }
        ok
    }

    /// Kernel quirk of [`Store::pin_mtime`]: another writer's lease created
    /// in the clock tick of our last change (so the directory keeps the
    /// kernel's mtime of that change) is still seen by the next open.
    #[test]
    fn a_change_in_the_tick_of_our_commit_is_seen() {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let t = TempDir::new("tick");
        let dir = t.0.join("net1");
        let mut s = Store::open(&dir).unwrap();
        assert!(reserve(&mut s, "c1", "eth0", "10.0.0.2"));
        let md = fs::metadata(&dir).unwrap();
        let kernel = TimeSpec::new(md.mtime(), md.mtime_nsec());
        s.commit().unwrap();
        drop(s);
        // The reference host-local adds a lease; a coarse clock leaves the
        // directory's mtime where the kernel set it for our change.
        fs::write(dir.join("10.0.0.3"), "c9\r\neth0").unwrap();
        utimensat(
            AT_FDCWD,
            &dir,
            &TimeSpec::UTIME_OMIT,
            &kernel,
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.held_by("c9", "eth0").unwrap(), [ip("10.0.0.3")]);
    }

    /// `last_reserved_ip` is replaced whole when it shrinks (wrap-around):
    /// no tail of the longer old address is left, even for a moment.
    #[test]
    fn a_shorter_hint_replaces_the_file() {
        let t = TempDir::new("shrink");
        let dir = t.0.join("net1");
        let mut s = Store::open(&dir).unwrap();
        assert!(reserve(&mut s, "c1", "eth0", "10.0.0.254"));
        let before = fs::metadata(dir.join("last_reserved_ip.0")).unwrap().ino();
        assert!(reserve(&mut s, "c2", "eth0", "10.0.0.2"));
        s.commit().unwrap();
        let last = dir.join("last_reserved_ip.0");
        assert_eq!(fs::read(&last).unwrap(), b"10.0.0.2");
        assert_ne!(fs::metadata(&last).unwrap().ino(), before, "renamed over");
        // Growing again is in place.
        let ino = fs::metadata(&last).unwrap().ino();
        assert!(reserve(&mut s, "c3", "eth0", "10.0.0.30"));
        assert_eq!(fs::read(&last).unwrap(), b"10.0.0.30");
        assert_eq!(fs::metadata(&last).unwrap().ino(), ino);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(TMP_PREFIX)),
            "{names:?}"
        );
    }

    /// A reservation whose `last_reserved_ip` cannot be written is undone:
    /// the caller's rollback would not know its address.
    #[test]
    fn a_reservation_without_its_hint_is_undone() {
        let t = TempDir::new("hint");
        let dir = t.0.join("net1");
        let mut s = Store::open(&dir).unwrap();
        fs::create_dir(dir.join("last_reserved_ip.0")).unwrap();
        let l = s.new_lease("c1", "eth0").unwrap();
        assert!(s.try_reserve(&l, ip("10.0.0.2"), 0).is_err());
        assert!(!dir.join("10.0.0.2").exists());
    }

    #[test]
    fn reference_file_format() {
        let t = TempDir::new("fmt");
        let dir = t.0.join("net1");
        let mut s = Store::open(&dir).unwrap();
        assert!(reserve(&mut s, " c1 ", "eth0", "10.0.0.2"));
        assert!(!reserve(&mut s, "c2", "eth0", "10.0.0.2"));
        s.commit().unwrap();
        assert_eq!(fs::read(dir.join("10.0.0.2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            fs::read(dir.join("last_reserved_ip.0")).unwrap(),
            b"10.0.0.2"
        );
        assert_eq!(
            fs::metadata(dir.join("10.0.0.2")).unwrap().mode() & 0o777,
            0o600
        );
        assert!(dir.join("lock").exists());
        assert_eq!(s.last_reserved(0), Some(ip("10.0.0.2")));
        assert_eq!(s.held_by("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
        // Nothing else at the top level but the reference's files and .nuage.
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".nuage", "10.0.0.2", "last_reserved_ip.0", "lock"]);
        // The index is the only file in .nuage, and never reads as a lease.
        let meta: Vec<_> = fs::read_dir(dir.join(".nuage"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(meta, ["index"]);
        let content = fs::read(dir.join(".nuage/index")).unwrap();
        assert!(content.starts_with(STATE_MAGIC.as_bytes()));
        // It holds NUL bytes, which no container id or ifname can.
        assert!(content.contains(&0));
    }

    #[test]
    fn release_is_exact_and_idempotent() {
        let t = TempDir::new("rel");
        let dir = t.0.join("n");
        let mut s = Store::open(&dir).unwrap();
        reserve(&mut s, "c1", "eth0", "10.0.0.2");
        reserve(&mut s, "c1", "eth1", "10.0.0.3");
        reserve(&mut s, "c2", "eth0", "10.0.0.4");
        assert_eq!(s.release("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
        assert!(s.release("c1", "eth0").unwrap().is_empty());
        s.commit().unwrap();
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert!(!dir.join("10.0.0.2").exists());
        assert_eq!(s.held_by("c1", "eth1").unwrap(), [ip("10.0.0.3")]);
        assert_eq!(s.held_by("c2", "eth0").unwrap(), [ip("10.0.0.4")]);
    }

    #[test]
    fn foreign_writes_trigger_a_rebuild() {
        let t = TempDir::new("foreign");
        let dir = t.0.join("n");
        let mut s = Store::open(&dir).unwrap();
        reserve(&mut s, "c1", "eth0", "10.0.0.2");
        s.commit().unwrap();
        drop(s);
        // The reference plugin adds a lease (and its last_reserved_ip) ...
        fs::write(dir.join("10.0.0.3"), "ref\r\neth0").unwrap();
        fs::write(dir.join("last_reserved_ip.0"), "10.0.0.3").unwrap();
        // ... and an ancient one wrote a legacy lease.
        fs::write(dir.join("10.0.0.9"), "old\n").unwrap();
        let mut s = Store::open(&dir).unwrap();
        assert_eq!(s.held_by("ref", "eth0").unwrap(), [ip("10.0.0.3")]);
        assert_eq!(s.held_by("old", "").unwrap(), [ip("10.0.0.9")]);
        // DEL falls back to legacy leases only when nothing else matched.
        assert_eq!(s.release("old", "eth0").unwrap(), [ip("10.0.0.9")]);
        s.commit().unwrap();
        drop(s);
        // The reference removes our lease behind our back.
        fs::remove_file(dir.join("10.0.0.2")).unwrap();
        let s = Store::open(&dir).unwrap();
        assert!(s.held_by("c1", "eth0").unwrap().is_empty());
    }

    /// A stale index that cannot be rebuilt (here `.nuage/index.new` is a
    /// directory; on a node, a full disk) does not fail the operation: it
    /// works from the lease files, leaves no partial index behind, and the
    /// next operation that can rebuild does.
    #[test]
    fn a_stale_index_that_cannot_be_rebuilt_is_worked_around() {
        let t = TempDir::new("degraded");
        let dir = t.0.join("n");
        let mut s = Store::open(&dir).unwrap();
        reserve(&mut s, "c1", "eth0", "10.0.0.2");
        reserve(&mut s, "c2", "eth0", "10.0.0.3");
        s.commit().unwrap();
        drop(s);
        fs::write(dir.join("10.0.0.4"), "ref\r\neth0").unwrap(); // the reference
        let blocker = dir.join(META).join("index.new");
        fs::create_dir(&blocker).unwrap();
        let mut s = Store::open(&dir).unwrap();
        assert!(s.degraded);
        assert_eq!(s.held_by("ref", "eth0").unwrap(), [ip("10.0.0.4")]);
        assert_eq!(s.release("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
        assert!(reserve(&mut s, "c3", "eth0", "10.0.0.5"));
        s.commit().unwrap();
        drop(s);
        assert!(!dir.join("10.0.0.2").exists());
        fs::remove_dir(&blocker).unwrap();
        let mut s = Store::open(&dir).unwrap();
        assert!(!s.degraded);
        assert_eq!(s.held_by("c3", "eth0").unwrap(), [ip("10.0.0.5")]);
        assert_eq!(s.release("c2", "eth0").unwrap(), [ip("10.0.0.3")]);
        s.commit().unwrap();
    }

    #[test]
    fn crash_before_commit_is_repaired() {
        let t = TempDir::new("crash");
        let dir = t.0.join("n");
        let mut s = Store::open(&dir).unwrap();
        // Lease linked, but the process "dies" before indexing and commit.
        let l = s.new_lease("c1", "eth0").unwrap();
        assert!(s.try_reserve(&l, ip("10.0.0.2"), 0).unwrap());
        drop(l);
        drop(s);
        let mut s = Store::open(&dir).unwrap();
        assert_eq!(s.held_by("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
        assert_eq!(s.release("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
    }

    #[test]
    fn gc_keeps_valid_and_reserved_files() {
        let t = TempDir::new("gc");
        let dir = t.0.join("n");
        let mut s = Store::open(&dir).unwrap();
        reserve(&mut s, "keep", "eth0", "10.0.0.2");
        reserve(&mut s, "gone", "eth0", "10.0.0.3");
        reserve(&mut s, "keep", "eth1", "10.0.0.4");
        s.commit().unwrap();
        fs::write(dir.join("10.0.0.5"), "keep").unwrap(); // legacy, id still attached
        fs::write(dir.join("10.0.0.6"), "").unwrap(); // a reference ADD killed mid-write
        fs::write(dir.join(".nuage-tmp.1"), "gone\r\neth0").unwrap();
        fs::write(dir.join("notes"), "gone\r\neth0").unwrap();
        drop(s);
        let mut s = Store::open(&dir).unwrap();
        let r = s.gc(keep_valid([("keep", "eth0")])).unwrap();
        s.commit().unwrap();
        let released: Vec<String> = r.released.iter().map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(released, ["10.0.0.3", "10.0.0.4", "10.0.0.6"]);
        assert_eq!(r.kept, 2);
        for f in [
            "lock",
            "last_reserved_ip.0",
            "10.0.0.2",
            "10.0.0.5",
            "notes",
        ] {
            assert!(dir.join(f).exists(), "{f}");
        }
        assert!(!dir.join(".nuage-tmp.1").exists());
        assert!(s.held_by("gone", "eth0").unwrap().is_empty());
        // An empty valid list is meaningful: everything goes.
        let r = s.gc(keep_valid([])).unwrap();
        assert_eq!(r.released.len(), 2);
    }

    #[test]
    fn holder_parsing() {
        assert_eq!(
            Holder::parse(b"c1\r\neth0"),
            Holder::Attachment {
                id: "c1".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(Holder::parse(b" c1 \n"), Holder::Legacy { id: "c1".into() });
        assert_eq!(Holder::parse(b""), Holder::Garbage);
        // The reference trims before comparing: this reads as container "eth0".
        assert_eq!(
            Holder::parse(b"\r\neth0"),
            Holder::Legacy { id: "eth0".into() }
        );
        assert_eq!(lease_name("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(lease_name("fd00::1"), Some(ip("fd00::1")));
        assert_eq!(lease_name("fd00:0::1"), None);
        assert_eq!(lease_name("last_reserved_ip.0"), None);
        assert_eq!(lease_name("lock"), None);
    }
}
