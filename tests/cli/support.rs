//! The harness every CLI test uses. The shared part (`tests/common`): a fresh temp dir per test
//! that serves as HOME and every XDG and Hugging Face folder, a child environment that inherits
//! nothing (no `HF_*`, `XDG_*`, proxies, no `RUST_LOG`), the real `captiond` binary run with a time
//! limit, and the whole run (command line, exit status, stdout, stderr) dumped in every failure
//! message. Here: runs under a memory limit, the `--json` row contract and the golden references.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::shown;
pub use crate::common::{fixture, image, model, Run, Sandbox as TestEnv, BIN};

/// A path as the text `captiond` prints for it (`path.display()`).
pub fn text(path: &Path) -> String {
    path.display().to_string()
}

impl TestEnv {
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
        Run::capture(cmd, shown(&format!("(ulimit -v {kib}) captiond"), &args))
    }
}

impl Run {
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
