//! What the integration test modules share: the binary under test, fixture paths, a fresh
//! temp dir per test that is HOME and every XDG and Hugging Face folder, the child environment
//! that inherits nothing, and [`Run`], a finished `captiond` run that is dumped whole in every
//! failure message. What only one area needs stays in that area's `support.rs`, which
//! re-exports from here what its tests use.

pub mod raw_file;

use std::ffi::{OsStr, OsString};
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_captiond");

/// Any run of [`Sandbox::command`] taking longer than this is killed: a hang must fail the test,
/// not wedge CI. The tiny fixture models answer in well under a second.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Folders of fixtures that the model crate owns: the tiny models, the reference goldens, the
/// images the goldens were made from and the processor's checks (crates/florence2/tests/fixtures).
const MODEL_FIXTURES: [&str; 4] = ["models", "golden", "images", "processor"];

/// A fixture by its path under a fixtures folder: the model crate's (see [`MODEL_FIXTURES`]) or
/// the daemon's own `tests/fixtures` (old catalogs, photo managers' sidecars).
pub fn fixture(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let top = rel.split('/').next().unwrap_or_default();
    let dir = if MODEL_FIXTURES.contains(&top) {
        root.join("crates/florence2/tests/fixtures")
    } else {
        root.join("tests/fixtures")
    };
    dir.join(rel)
}

/// The tiny model `<name>` (`crates/florence2/tests/fixtures/models/<name>`).
pub fn model(name: &str) -> PathBuf {
    fixture("models").join(name)
}

/// A reference image (`crates/florence2/tests/fixtures/images/<name>`).
pub fn image(name: &str) -> PathBuf {
    fixture("images").join(name)
}

/// Drops ANSI colour sequences (the log is coloured even when not a terminal).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One test's private world: a temp dir (`captiond-<test crate>-…`) holding `home`, `config`,
/// `data`, `cache` and `hf` (HOME, the XDG folders and HF_HOME of the child), plus whatever
/// folders the crate asks for.
pub struct Sandbox {
    dir: tempfile::TempDir,
    extra_path: Option<PathBuf>,
}

impl Sandbox {
    /// A sandbox with a `work` folder, where [`Sandbox::command`] starts.
    pub fn new() -> Sandbox {
        Sandbox::with_dirs(&["work"])
    }

    /// A sandbox with the folders `extra` besides the HOME/XDG/HF ones.
    pub fn with_dirs(extra: &[&str]) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(concat!("captiond-", env!("CARGO_CRATE_NAME"), "-"))
            .tempdir()
            .expect("create a temp dir");
        let child_homes = ["home", "config", "data", "cache", "hf"];
        for sub in child_homes.iter().chain(extra) {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox {
            dir,
            extra_path: None,
        }
    }

    /// The temp dir root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME` of the child.
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// Where [`Sandbox::command`] starts the child (its current directory).
    pub fn work(&self) -> PathBuf {
        self.root().join("work")
    }

    /// `HF_HOME` of the child.
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

    /// Puts `dir` ahead of PATH in the children of [`Sandbox::command`] (stand-in tools).
    pub fn prepend_path(&mut self, dir: PathBuf) {
        self.extra_path = Some(dir);
    }

    /// A command for `program` whose environment is only HOME, the XDG folders and HF_HOME of
    /// this sandbox: no `HF_*`, `XDG_*`, proxies or `RUST_LOG` of the caller.
    pub fn scrubbed(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_DATA_HOME", self.root().join("data"))
            .env("XDG_CACHE_HOME", self.root().join("cache"))
            .env("HF_HOME", self.hf_home());
        cmd
    }

    /// A [`scrubbed`](Self::scrubbed) command for `program` with PATH (what
    /// [`prepend_path`](Self::prepend_path) added, then the caller's), started in
    /// [`Sandbox::work`] and killed after a time limit.
    pub fn command(&self, program: impl AsRef<OsStr>) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.scrubbed(program));
        cmd.current_dir(self.work()).timeout(TIME_LIMIT);
        // `sh` (resource limits, stand-in tools) needs a PATH; the binary itself does not care.
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
        Run::captiond(self.command(BIN), env, args)
    }
}

/// How failure messages show the command line `head ARGS…`.
pub fn shown(head: &str, args: &[OsString]) -> String {
    let mut shown = vec![head.to_string()];
    shown.extend(args.iter().map(|a| quote(&a.to_string_lossy())));
    shown.join(" ")
}

/// `arg` as a shell would need it.
fn quote(arg: &str) -> String {
    if arg.is_empty() || arg.contains([' ', '<', '>', '\'', '"', '@']) {
        format!("'{}'", arg.replace('\'', "'\\''"))
    } else {
        arg.to_string()
    }
}

/// A finished run: everything needed to judge it, and to show it when a check fails.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Runs `cmd` (a prepared `captiond` command) with `ARGS…` and extra environment variables,
    /// shown as `K=V … captiond ARGS…`.
    pub fn captiond<I, S>(mut cmd: assert_cmd::Command, env: &[(&str, &str)], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        cmd.args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let env_shown: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        Run::capture(cmd, format!("{env_shown}{}", shown("captiond", &args)))
    }

    /// Runs `cmd` to completion; `command` is how failure messages show it.
    pub fn capture(mut cmd: assert_cmd::Command, command: String) -> Run {
        let start = Instant::now();
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        Run {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }

    /// The exit code; `None` when killed by a signal (the time limit included).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails the test (showing the run) unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, what: impl Display) {
        assert!(ok, "{what}\n{self}");
    }

    /// Fails the test unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        self.check(
            self.status.code() == Some(code),
            format_args!("expected exit code {code}"),
        );
        self
    }

    /// stdout as one JSON object per non-empty line.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => v,
                _ => panic!("stdout line is not a JSON object: {line:?}\n{self}"),
            })
            .collect()
    }
}

impl Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- status: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        write!(f, "--- stderr:\n{}", strip_ansi(&self.stderr))
    }
}
