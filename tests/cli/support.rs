//! The harness every CLI test uses: a fresh temp dir per test that serves as HOME and every XDG and
//! Hugging Face folder, a child environment that inherits nothing (no `HF_*`, `XDG_*`, proxies, no
//! `RUST_LOG`), the real `captiond` binary run with a time limit, and the whole run (command line,
//! exit status, stdout, stderr) dumped in every failure message.

use std::ffi::OsString;
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_captiond");

/// Any run taking longer than this is killed: a hang must fail the test, not wedge CI. The tiny
/// fixture models answer in well under a second.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// `tests/fixtures/…`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// `tests/fixtures/models/<name>`.
pub fn model(name: &str) -> PathBuf {
    fixture("models").join(name)
}

/// `tests/fixtures/images/<name>`.
pub fn image(name: &str) -> PathBuf {
    fixture("images").join(name)
}

/// A path as the text `captiond` prints for it (`path.display()`).
pub fn text(path: &Path) -> String {
    path.display().to_string()
}

/// One test's private world.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("captiond-cli-")
            .tempdir()
            .expect("create a temp dir");
        for sub in ["home", "config", "data", "cache", "hf", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        TestEnv { dir }
    }

    /// The temp dir root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the child starts (its current directory).
    pub fn work(&self) -> PathBuf {
        self.root().join("work")
    }

    /// `HF_HOME` of the child.
    pub fn hf_home(&self) -> PathBuf {
        self.root().join("hf")
    }

    /// `XDG_CONFIG_HOME` of the child.
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

    /// A command for `program` in the clean environment, started in [`TestEnv::work`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(program);
        cmd.env_clear()
            .env("HOME", self.root().join("home"))
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_DATA_HOME", self.root().join("data"))
            .env("XDG_CACHE_HOME", self.root().join("cache"))
            .env("HF_HOME", self.hf_home())
            .current_dir(self.work())
            .timeout(TIME_LIMIT);
        // `sh` (used for resource limits) needs a PATH; the binary itself does not care.
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
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
        let mut shown = vec!["captiond".to_string()];
        shown.extend(args.iter().map(|a| quote(&a.to_string_lossy())));
        let env_shown: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        Run::capture(cmd, format!("{env_shown}{}", shown.join(" ")))
    }

    /// Runs `captiond ARGS…` under `ulimit -v` (KiB of address space), so that a huge allocation
    /// fails instead of succeeding slowly.
    #[cfg(unix)]
    pub fn run_with_memory_limit<I, S>(&self, kib: u64, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = self.command("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(&args);
        let mut shown = vec![format!("(ulimit -v {kib}) captiond")];
        shown.extend(args.iter().map(|a| quote(&a.to_string_lossy())));
        Run::capture(cmd, shown.join(" "))
    }
}

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
    fn capture(mut cmd: assert_cmd::Command, command: String) -> Run {
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
            self.code() == Some(code),
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

    /// The one `--json` line expected on stdout.
    #[track_caller]
    pub fn single_row(&self) -> Value {
        let rows = self.json_lines();
        self.check(rows.len() == 1, "expected exactly one JSON line");
        rows.into_iter().next().unwrap()
    }

    /// stderr lines that contain `needle`.
    pub fn stderr_lines_with(&self, needle: &str) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(needle)).collect()
    }

    /// `(path, task)` of each `--json` line, in order.
    #[track_caller]
    pub fn path_task_order(&self) -> Vec<(String, String)> {
        self.json_lines()
            .iter()
            .map(|row| (str_field(row, "path"), str_field(row, "task")))
            .collect()
    }
}

impl Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- status: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        write!(f, "--- stderr:\n{}", self.stderr)
    }
}

#[track_caller]
pub fn str_field(row: &Value, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{key}` missing or not a string in {row}"))
        .to_string()
}

/// The keys every caption-task row has (the CLI contract); `caption` only for caption tasks.
pub const ROW_KEYS: [&str; 5] = ["path", "task", "token_ids", "text", "result"];

/// Checks a row's contract keys and types: `caption` present iff `caption_task`.
#[track_caller]
pub fn check_row_shape(run: &Run, row: &Value, caption_task: bool) {
    for key in ROW_KEYS {
        run.check(
            row.get(key).is_some(),
            format_args!("`{key}` missing in {row}"),
        );
    }
    run.check(row["path"].is_string(), "`path` is not a string");
    run.check(row["task"].is_string(), "`task` is not a string");
    run.check(row["text"].is_string(), "`text` is not a string");
    let ids = row["token_ids"].as_array();
    run.check(
        ids.is_some_and(|ids| !ids.is_empty() && ids.iter().all(Value::is_u64)),
        "`token_ids` is not a non-empty array of integers",
    );
    if caption_task {
        run.check(
            row["caption"].is_string(),
            "`caption` missing or not a string",
        );
        run.check(
            row["result"].is_string(),
            "caption `result` is not a string",
        );
    } else {
        run.check(
            row.get("caption").is_none(),
            "`caption` present for a non-caption task",
        );
    }
}

/// One generation mode of a golden case.
#[derive(Debug, Clone)]
pub struct Expected {
    pub token_ids: Value,
    pub text: Value,
    pub result: Value,
    pub score: Option<f64>,
}

/// A case of `golden/<model>/manifest.json`: what the Python reference produced.
#[derive(Debug, Clone)]
pub struct Golden {
    pub image: PathBuf,
    pub task: String,
    pub max_new_tokens: u64,
    pub greedy: Expected,
    pub beam: Expected,
    pub num_beams: u64,
}

pub fn manifest(model: &str) -> Value {
    let path = fixture(&format!("golden/{model}/manifest.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn golden(model: &str, case: &str) -> Golden {
    let manifest = manifest(model);
    let c = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap_or_else(|| panic!("no case {case} in golden/{model}/manifest.json"))
        .clone();
    let expected = |mode: &Value| Expected {
        token_ids: mode["token_ids"].clone(),
        text: mode["text"].clone(),
        result: mode["result"].clone(),
        score: mode["score"].as_f64(),
    };
    Golden {
        image: fixture(c["image"].as_str().unwrap()),
        task: c["task"].as_str().unwrap().to_string(),
        max_new_tokens: c["greedy"]["max_new_tokens"].as_u64().unwrap(),
        greedy: expected(&c["greedy"]),
        beam: expected(&c["beam"]),
        num_beams: c["beam"]["num_beams"].as_u64().unwrap(),
    }
}

/// Checks a row's `token_ids`, `text` and `result` against the reference.
#[track_caller]
pub fn check_matches(run: &Run, row: &Value, want: &Expected, what: &str) {
    for (key, value) in [
        ("token_ids", &want.token_ids),
        ("text", &want.text),
        ("result", &want.result),
    ] {
        run.check(
            &row[key] == value,
            format_args!(
                "{what}: `{key}` is {}, the reference says {value}",
                row[key]
            ),
        );
    }
}
