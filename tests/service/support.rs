//! The harness: a fresh temp dir per test that is HOME and every XDG and Hugging Face folder, a
//! child environment that inherits nothing but PATH, the real `captiond` run with a time limit
//! and dumped in full when a check fails, and finders for the external tools the tests need.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_captiond");

const TIME_LIMIT: Duration = Duration::from_secs(120);

/// `tests/fixtures/…`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

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

/// One test's private world.
pub struct TestEnv {
    dir: tempfile::TempDir,
    extra_path: Option<PathBuf>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("captiond-service-")
            .tempdir()
            .expect("create a temp dir");
        for sub in ["home", "config", "data", "cache", "hf", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        TestEnv {
            dir,
            extra_path: None,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn hf_home(&self) -> PathBuf {
        self.root().join("hf")
    }

    /// `XDG_CONFIG_HOME` of the child (user units go under it).
    pub fn config_home(&self) -> PathBuf {
        self.root().join("config")
    }

    /// Writes a file under the temp dir (parents created) and returns its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Puts `dir` ahead of PATH in the child (stand-in systemctl/launchctl).
    pub fn prepend_path(&mut self, dir: PathBuf) {
        self.extra_path = Some(dir);
    }

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

    /// A command for `program` in the clean environment, started in `<root>/work`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(program);
        cmd.env_clear()
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_DATA_HOME", self.root().join("data"))
            .env("XDG_CACHE_HOME", self.root().join("cache"))
            .env("HF_HOME", self.hf_home())
            .current_dir(self.root().join("work"))
            .timeout(TIME_LIMIT);
        let mut path = OsString::new();
        if let Some(extra) = &self.extra_path {
            path.push(extra);
            path.push(":");
        }
        path.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        cmd.env("PATH", path);
        cmd
    }

    /// Runs `captiond ARGS…`.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_env(&[], args)
    }

    /// Runs `captiond ARGS…` with extra environment variables.
    pub fn run_env<I, S>(&self, env: &[(&str, &str)], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = self.command(BIN);
        cmd.args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.push("captiond".into());
        shown.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
        Run::capture(cmd, shown.join(" "))
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

/// A finished run, shown in full when a check fails.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn capture(mut cmd: assert_cmd::Command, command: String) -> Run {
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        Run {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    #[track_caller]
    pub fn check(&self, ok: bool, what: impl Display) {
        assert!(ok, "{what}\n{self}");
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        self.check(
            self.code() == Some(code),
            format_args!("expected exit code {code}"),
        );
        self
    }

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

impl Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- status: {}", self.status)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        write!(f, "--- stderr:\n{}", self.stderr)
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
