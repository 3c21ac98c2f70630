//! Small state files (host-device and hostShim records) replaced whole.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Replaces `path` with `data`: a crash leaves the old file or the new one.
/// The temporary name is the writer's own and short (`.tmp.<pid>.<n>`: two
/// writers never share one, and a final name near the 255-byte limit, as a
/// long container ID makes, still has room) and is removed when a step
/// fails (a full disk must not leave it behind). Not fsynced: these
/// records describe kernel state that a power loss takes with it.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path);
    let r = fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn temp_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".tmp.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("nuage-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a:eth0.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // A name of 255 bytes, the most a file name may have.
        let long = dir.join(format!("{}:eth0.json", "a".repeat(245)));
        write_atomic(&long, b"x").unwrap();
        // The rename fails (the target is a non-empty directory): no temp
        // file is left.
        let blocked = dir.join("b");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with(".tmp.")), "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
