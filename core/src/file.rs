//! Small state files (host-device and hostShim records) replaced whole.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Replaces `path` with `data`: a crash leaves the old file or the new one.
/// The temporary name is the writer's own (`.<name>.<pid>.tmp`, so two
/// writers never share one) and is removed when a step fails (a full disk
/// must not leave it behind). Not fsynced: these records describe kernel
/// state that a power loss takes with it.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path);
    let r = fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
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
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
