//! The harness: `tests/common`'s fresh temp dir per test that is HOME and every XDG and Hugging
//! Face folder, with a child environment that inherits nothing but PATH and the real `captiond` run
//! with a time limit and dumped in full when a check fails; here, stand-in tools on PATH and
//! finders for the external tools the tests need.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use crate::common::{fixture, Run, Sandbox as TestEnv, BIN};

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The binary as the service files name it (`current_exe`, canonical).
pub fn bin_path() -> String {
    std::fs::canonicalize(BIN)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

impl TestEnv {
    /// Writes an executable stand-in `name` into `<root>/fakebin` that appends its arguments to
    /// `<root>/fakebin/calls.log` and then runs `body` (sh), and puts that folder on PATH.
    pub fn fake_tool(&mut self, name: &str, body: &str) {
        let dir = self.root().join("fakebin");
        let log = dir.join("calls.log");
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            log.display()
        );
        let path = self.write(&format!("fakebin/{name}"), script);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.prepend_path(dir);
    }

    /// What the stand-in tools were called with, one call per line.
    pub fn fake_calls(&self) -> String {
        std::fs::read_to_string(self.root().join("fakebin/calls.log")).unwrap_or_default()
    }

    /// Every file and folder under the temp dir (relative), to prove a command wrote nothing.
    pub fn tree(&self) -> BTreeSet<PathBuf> {
        walkdir::WalkDir::new(self.root())
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(self.root())
                    .unwrap()
                    .to_path_buf()
            })
            .collect()
    }
}

impl Run {
    /// The file a `--dry-run` install prints between `# would write PATH:` and `# (end of PATH)`.
    #[track_caller]
    pub fn written_file(&self) -> (PathBuf, String) {
        let mut lines = self.stdout.lines();
        let path = lines
            .by_ref()
            .find_map(|l| l.strip_prefix("# would write ")?.strip_suffix(':'))
            .unwrap_or_else(|| panic!("no `# would write` line\n{self}"))
            .to_string();
        let end = format!("# (end of {path})");
        let mut body = String::new();
        for line in lines {
            if line == end {
                return (PathBuf::from(path), body);
            }
            body.push_str(line);
            body.push('\n');
        }
        panic!("no `{end}` line\n{self}");
    }
}

/// Whether this run is CI's (`CI=true`): there, a missing tool fails instead of skipping.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `program` if it runs (`program --version` exits 0). Missing: panics under CI, else prints
/// a loud skip note and returns `None`.
pub fn require_tool(program: &str, package: &str, test: &str) -> Option<PathBuf> {
    let found = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from(program));
    }
    let note = format!(
        "`{program}` is not installed (Debian package `{package}`: apt-get install -y {package})"
    );
    if in_ci() {
        panic!("{test}: {note}; CI must install it");
    }
    // Straight to fd 2, past the test harness's output capture, so the skip is seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {note}");
    None
}

/// A config with one library (holding one photo, sidecars on), the tiny fixture model and a
/// catalog path in the temp dir; returns its path.
pub fn healthy_config(env: &TestEnv) -> PathBuf {
    let lib = env.root().join("photos");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(fixture("images/photo_120x90.jpg"), lib.join("photo.jpg")).unwrap();
    let text = format!(
        "database = {db:?}\n\n[[library]]\npath = {lib:?}\n\n[model]\ndir = {model:?}\ndevice = \"cpu\"\n",
        db = env.root().join("catalog/catalog.db"),
        lib = lib,
        model = fixture("models/tiny-a"),
    );
    env.write("config.toml", text)
}
