//! Harness of the daemon tests: on top of `tests/common` (temp dir with the HOME/XDG/HF folders,
//! scrubbed child environment, [`Run`]), a library and catalog per test, a config on the tiny
//! fixture model, the real `captiond` binary run as a child process, and bounded waits that poll
//! the catalog. Every failure message carries the child's log.

use std::fs;
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::common::{image, model, Sandbox};
pub use crate::common::{strip_ansi, Run, BIN};

/// Any one `captiond` run or wait longer than this fails the test.
pub const LIMIT: Duration = Duration::from_secs(40);

/// `[daemon] settle_ms` of the tests.
pub const SETTLE_MS: u64 = 300;

pub fn tiny_model() -> PathBuf {
    model("tiny-a")
}

/// A small PNG whose pixels (so whose hash) depend on `seed`.
pub fn png(seed: u32) -> Vec<u8> {
    png_sized(seed, 32, 24)
}

pub fn png_sized(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(x * 7919 + y * 104_729);
        image::Rgb([
            (v >> 3) as u8,
            (v >> 11) as u8,
            (v >> 19) as u8 ^ seed as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Lines of a log saying a photo was captioned (one per finished job, from the pipeline).
pub fn captioned_lines(log: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("captioned:"))
        .map(str::to_string)
        .collect()
}

/// How many captioned lines name `path` exactly.
pub fn captioned_count(log: &str, path: &Path) -> usize {
    let needle = format!("path={}}}", path.display());
    captioned_lines(log)
        .iter()
        .filter(|l| l.contains(&needle))
        .count()
}

/// One test's world: a [`Sandbox`] with a library, a catalog folder and a config on the tiny
/// fixture model.
pub struct Env {
    sandbox: Sandbox,
}

impl Deref for Env {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Run {
    /// `(captioned, failed, skipped)` from the `--once` summary line.
    #[track_caller]
    pub fn summary(&self) -> (u64, u64, u64) {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("captioned "))
            .unwrap_or_else(|| panic!("no summary line\n{self}"));
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        self.check(nums.len() == 3, format!("odd summary line {line:?}"));
        (nums[0], nums[1], nums[2])
    }
}

impl Env {
    pub fn new() -> Env {
        let env = Env {
            sandbox: Sandbox::with_dirs(&["work", "lib", "db", "staging"]),
        };
        env.write_config(&["<CAPTION>", "<OD>"], &tiny_model());
        env
    }

    /// The library root.
    pub fn lib(&self) -> PathBuf {
        self.root().join("lib")
    }

    pub fn db(&self) -> PathBuf {
        self.root().join("db/catalog.db")
    }

    pub fn config(&self) -> PathBuf {
        self.root().join("config.toml")
    }

    /// Writes the config: this env's library and catalog, the given tasks and model folder.
    pub fn write_config(&self, tasks: &[&str], model: &Path) {
        self.write_config_with(tasks, model, "");
    }

    /// [`write_config`](Self::write_config) with extra `[[library]]` keys (`sidecars` defaults to
    /// false unless given here).
    pub fn write_config_with(&self, tasks: &[&str], model: &Path, library_keys: &str) {
        let library_keys = if library_keys.contains("sidecars") {
            library_keys.to_string()
        } else {
            format!("sidecars = false\n{library_keys}")
        };
        let tasks: Vec<String> = tasks.iter().map(|t| format!("{t:?}")).collect();
        let text = format!(
            r#"database = {db:?}

[[library]]
path = {lib:?}
{library_keys}

[model]
dir = {model:?}
device = "cpu"
tasks = [{tasks}]
beams = 1
max_new_tokens = 8
batch_size = 4

[daemon]
settle_ms = {SETTLE_MS}
rescan_interval = "1h"
idle_unload = "10m"
"#,
            db = self.db().display().to_string(),
            lib = self.lib().display().to_string(),
            model = model.display().to_string(),
            tasks = tasks.join(", "),
        );
        fs::write(self.config(), text).unwrap();
    }

    /// Writes `bytes` at `rel` under the library (folders created).
    pub fn put(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.lib().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.scrubbed(BIN);
        cmd.env("HF_HUB_OFFLINE", "1")
            .current_dir(self.work())
            .arg("--config")
            .arg(self.config())
            .args(args);
        cmd
    }

    /// Runs `captiond --config CONFIG ARGS…` to completion (killed after [`LIMIT`]).
    pub fn run(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let out_path = self.root().join("run.out");
        let err_path = self.root().join("run.err");
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("start captiond");
        let status = wait_child(&mut child, LIMIT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "captiond {} ran over {LIMIT:?}\n--- stderr:\n{}",
                args.join(" "),
                strip_ansi(&fs::read_to_string(&err_path).unwrap_or_default())
            )
        });
        Run {
            command: format!("captiond {}", args.join(" ")),
            status,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed: start.elapsed(),
        }
    }

    /// Starts `captiond run` in the background.
    pub fn spawn(&self) -> Daemon {
        let n = fs::read_dir(self.root())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("daemon"))
            })
            .count();
        let log = self.root().join(format!("daemon{n}.log"));
        let child = self
            .command(&["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start captiond run");
        Daemon {
            child,
            log,
            db: self.db(),
        }
    }

    /// A read-only connection to the catalog, once it exists.
    pub fn sql(&self) -> Option<Connection> {
        let conn = Connection::open_with_flags(
            self.db(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(Duration::from_secs(5)).ok()?;
        // Not migrated yet: no tables.
        conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, i64>(0))
            .ok()?;
        Some(conn)
    }

    /// One integer from the catalog (0 while it does not exist yet, or for a NULL). A query
    /// that fails on an existing catalog (a renamed table or column) fails the test: it must
    /// never read as 0.
    #[track_caller]
    pub fn count(&self, sql: &str) -> i64 {
        let Some(conn) = self.sql() else {
            return 0;
        };
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .unwrap_or_else(|e| panic!("catalog query failed: {sql}: {e}"))
            .unwrap_or(0)
    }

    pub fn done(&self) -> i64 {
        self.count("SELECT count(*) FROM jobs WHERE state = 'done'")
    }

    /// (path, hash, state) of every photo row, by path.
    pub fn photos(&self) -> Vec<(PathBuf, String, String)> {
        let Some(c) = self.sql() else {
            return Vec::new();
        };
        let mut stmt = c
            .prepare("SELECT path, hash, state FROM photos ORDER BY path")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((PathBuf::from(r.get::<_, String>(0)?), r.get(1)?, r.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// (hash, task, created_at) of every result, sorted.
    pub fn results(&self) -> Vec<(String, String, i64)> {
        let Some(c) = self.sql() else {
            return Vec::new();
        };
        let mut stmt = c
            .prepare("SELECT hash, task, created_at FROM results ORDER BY hash, task")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The state of the photo at `path` (`None`: unknown).
    pub fn state_of(&self, path: &Path) -> Option<String> {
        self.photos()
            .into_iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, s)| s)
    }
}

/// A `captiond run` in the background; killed (SIGKILL) if still running when dropped.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    db: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Polls `check` every 20 ms until it gives `Some`, failing the test after `limit` (or if
    /// the daemon exits) with the daemon's log.
    #[track_caller]
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "captiond run exited ({status}) while waiting for {what}\n--- log:\n{}",
                    strip_ansi(&self.log_text())
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what} (catalog {})\n--- log:\n{}",
                    self.db.display(),
                    strip_ansi(&self.log_text())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the first scan of every library is recorded (watchers are in place by then).
    #[track_caller]
    pub fn wait_ready(&mut self, env: &Env) {
        self.wait_for("the initial scan", LIMIT, || {
            (env.count("SELECT count(*) FROM libraries WHERE last_scan_at IS NOT NULL") > 0)
                .then_some(())
        });
    }

    /// SIGTERM, then waits for the exit; returns the exit code and the log.
    #[track_caller]
    pub fn terminate(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = wait_child(&mut self.child, LIMIT).unwrap_or_else(|| {
            panic!(
                "captiond run did not stop within {LIMIT:?} of SIGTERM\n--- log:\n{}",
                strip_ansi(&self.log_text())
            )
        });
        (status.code(), self.log_text())
    }

    /// SIGKILL (kill -9) and reap.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log_text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `bytes` to `path` in `chunks` pieces with `gap` between them, flushing each.
pub fn write_slowly(path: &Path, bytes: &[u8], chunks: usize, gap: Duration) {
    let mut f = fs::File::create(path).unwrap();
    let step = bytes.len().div_ceil(chunks);
    for piece in bytes.chunks(step) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        std::thread::sleep(gap);
    }
}

/// Every entry under `root` with its size, mtime and permission bits, sorted (for "nothing was
/// written" checks).
pub fn tree_snapshot(root: &Path) -> Vec<(PathBuf, u64, i64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        let md = entry.metadata().unwrap();
        out.push((
            entry.path().to_path_buf(),
            if md.is_dir() { 0 } else { md.len() },
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.mode(),
        ));
    }
    out.sort();
    out
}

/// A PNG that only has a header claiming `w`×`h` pixels (a decompression bomb's calling card).
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A fixture image (the model crate's reference images).
pub fn fixture_image(name: &str) -> Vec<u8> {
    fs::read(image(name)).unwrap()
}

/// Whether exiftool can be run. Missing under `CI` is a failure, elsewhere a loud skip of the
/// checks that need it.
pub fn have_exiftool() -> bool {
    let have = Command::new("exiftool")
        .arg("-ver")
        .output()
        .is_ok_and(|o| o.status.success());
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        have || !ci,
        "CI is set but exiftool is missing: apt-get install -y libimage-exiftool-perl"
    );
    if !have {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!!! SKIPPED exiftool checks: exiftool not installed \
             (apt-get install -y libimage-exiftool-perl) !!!!!!!!!!\n"
        );
    }
    have
}

/// `exiftool -s3 TAG FILE`: one tag's value as a reader sees it ("" when absent).
pub fn exiftool_tag(path: &Path, tag: &str) -> String {
    let out = Command::new("exiftool")
        .arg("-s3")
        .arg(tag)
        .arg(path)
        .output()
        .expect("run exiftool");
    assert!(
        out.status.success(),
        "exiftool {tag} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
