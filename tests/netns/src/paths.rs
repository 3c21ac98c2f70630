//! Where binaries are: workspace bins, the reference plugins, cnitool.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Debian's `containernetworking-plugins` (v1.1.1, spec ≤ 1.0.0).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// `target/<profile>`: the running test executable is
/// `target/<profile>/deps/<name>-<hash>` (or directly in `target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a parent dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The cargo target dir (parent of the profile dir).
fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("profile dir has a parent dir")
        .to_path_buf()
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Path of a workspace binary (`target/<profile>/<name>`), next to the running
/// test executable. Panics with a clear message if it is not built.
#[track_caller]
pub fn bin(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        is_executable(&p),
        "workspace binary `{name}` not found at {}: build it first. `cargo test --workspace` \
         builds the bin targets of every package that has integration tests (tests/*.rs); \
         otherwise `cargo build -p <package>` with the same profile and target dir",
        p.display()
    );
    p
}

/// The reference Go plugin `/usr/lib/cni/<name>`, if installed.
pub fn reference(name: &str) -> Option<PathBuf> {
    let p = Path::new(REFERENCE_DIR).join(name);
    is_executable(&p).then_some(p)
}

/// Like [`reference`], but panics when missing: CI installs
/// `containernetworking-plugins`, so a test that needs it fails, never skips.
#[track_caller]
pub fn require_reference(name: &str) -> PathBuf {
    reference(name).unwrap_or_else(|| {
        panic!(
            "reference plugin {REFERENCE_DIR}/{name} is missing: install Debian's \
             containernetworking-plugins (.ci/run does)"
        )
    })
}

/// The project's `shared/` folder (a sibling of the workspace clone).
/// `NUAGE_SHARED_DIR` overrides; else `<workspace>/../shared` with the
/// workspace found from this crate's manifest dir at compile time, or from the
/// target dir.
#[track_caller]
pub fn shared_dir() -> PathBuf {
    let probe = |p: PathBuf| -> Option<PathBuf> {
        let p = p.canonicalize().ok()?;
        p.join("tools/cnitool/build.sh").is_file().then_some(p)
    };
    if let Some(dir) = std::env::var_os("NUAGE_SHARED_DIR") {
        return probe(PathBuf::from(&dir)).unwrap_or_else(|| {
            panic!(
                "NUAGE_SHARED_DIR={} has no tools/cnitool/build.sh",
                Path::new(&dir).display()
            )
        });
    }
    // CARGO_MANIFEST_DIR = <workspace>/tests/netns
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let from_target = target_dir().join("../../shared");
    probe(from_manifest.clone())
        .or_else(|| probe(from_target.clone()))
        .unwrap_or_else(|| {
            panic!(
                "cannot find shared/tools/cnitool/build.sh at {} or {}; \
                 set NUAGE_SHARED_DIR",
                from_manifest.display(),
                from_target.display()
            )
        })
}

/// The libcni-based `cnitool` driver, built once per machine into
/// `<target-dir>/cnitool/cnitool` by `shared/tools/cnitool/build.sh`
/// (rebuilt when `main.go` or `build.sh` is newer). A file lock makes parallel
/// tests and test processes build it once.
#[track_caller]
pub fn cnitool() -> PathBuf {
    static DONE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = done.as_ref() {
        return p.clone();
    }
    let tool_dir = shared_dir().join("tools/cnitool");
    let out_dir = target_dir().join("cnitool");
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let exe = out_dir.join("cnitool");

    let lock = std::fs::File::create(out_dir.join(".build.lock"))
        .unwrap_or_else(|e| panic!("cannot create lock in {}: {e}", out_dir.display()));
    // SAFETY: flock on an fd we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());

    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match mtime(&exe) {
        Some(built) => ["main.go", "build.sh"]
            .iter()
            .all(|f| mtime(&tool_dir.join(f)).is_some_and(|src| src <= built)),
        None => false,
    };
    if !(fresh && is_executable(&exe)) {
        let out = Command::new("bash")
            .arg(tool_dir.join("build.sh"))
            .arg(&out_dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
        assert!(
            out.status.success() && is_executable(&exe),
            "building cnitool with {}/build.sh failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            tool_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
    *done = Some(exe.clone());
    exe
}
