//! Scratch directories removed on drop.

use std::path::{Path, PathBuf};

/// A directory `$TMPDIR/nuage-t<pid>-<n>-<tag>`, removed (recursively) on drop,
/// also when the test panics. Leftovers of killed runs are swept like namespaces.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates a fresh, empty directory.
    #[track_caller]
    pub fn new(tag: &str) -> TestDir {
        let path = std::env::temp_dir().join(crate::unique_name(tag));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `rel` (parent dirs created) and returns the full path.
    #[track_caller]
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&p, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "netns-tests: warning: could not remove {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}
