//! `captiond status [--json]`: libraries (online or offline now, photos, watched or polled), the
//! queue (pending, running, done, failed), throughput (photos captioned in the last hour) and the
//! ETA of what is pending, the configured model and device, and whether a daemon is running.
//! Reads the catalog read-only, so it works while the daemon writes.
//!
//! Before the first scan (no catalog yet) it lists the configured libraries as not scanned, with
//! every count 0, and exits 0: a fresh install is not an error.
//!
//! Also home to what the other catalog commands share: [`open_catalog`] (a missing catalog is an
//! error that says to run `captiond run` first).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::catalog::{Catalog, LibraryRow, QueueCounts};
use crate::config::Settings;
use crate::daemon::{daemon_state, DaemonState};
use crate::library::PollMode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object: `pending`, `running`, `done`, `failed`, `captioned_last_hour`,
    /// `eta_seconds`, `libraries`, `daemon_running`, `daemon_pid`, `model`, `database`.
    #[arg(long)]
    pub json: bool,
}

/// Opens the configured catalog, read-only or not. A catalog that does not exist yet is an error
/// naming the file (never created here: only `captiond run` makes one).
pub fn open_catalog(database: &Path, readonly: bool) -> anyhow::Result<Catalog> {
    if !database.exists() {
        anyhow::bail!(
            "no catalog at {}: nothing has been scanned yet; run `captiond run` (or `captiond run \
             --once`) first",
            database.display()
        );
    }
    Ok(if readonly {
        Catalog::open_readonly(database)?
    } else {
        Catalog::open(database)?
    })
}

/// One library in `status --json`.
#[derive(Debug, Serialize)]
pub struct LibraryStatus {
    pub root: String,
    /// Listed in the config (false: only in the catalog, from an earlier config).
    pub configured: bool,
    /// The root is a reachable folder right now.
    pub online: bool,
    /// Present photos in the catalog.
    pub photos: u64,
    /// `watched` (filesystem events), `polled` (network filesystems, `poll = true`), or `auto`
    /// when the daemon has not looked at it yet.
    pub mode: &'static str,
    /// End of the last full scan, RFC 3339 UTC; null before the first.
    pub last_scan: Option<String>,
    /// Whether a full scan of this library has finished.
    pub scanned: bool,
}

/// The configured model in `status --json`.
#[derive(Debug, Serialize)]
pub struct ModelStatus {
    /// `repo@revision`, or the local folder.
    pub source: String,
    pub tasks: Vec<String>,
    /// The config's `device` (`auto`, `cpu`, `cuda`, `metal`).
    pub device: String,
    pub dtype: String,
    /// GPU backends compiled into this binary (the CPU is always there).
    pub backends: Vec<&'static str>,
}

/// `status --json` (the CLI contract: the counts under plain keys).
#[derive(Debug, Serialize)]
pub struct Status {
    pub database: String,
    /// False before the first scan: the catalog file does not exist yet (every count is 0).
    pub catalog_exists: bool,
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    /// Jobs finished in the last hour.
    pub captioned_last_hour: u64,
    /// Seconds until the pending jobs are done at last hour's rate; null when no daemon runs or
    /// nothing was captioned in the last hour.
    pub eta_seconds: Option<u64>,
    pub libraries: Vec<LibraryStatus>,
    /// Null when the lock could not be tested.
    pub daemon_running: Option<bool>,
    pub daemon_pid: Option<u32>,
    /// Rescan requests (`captiond rescan`) the daemon has not taken yet.
    pub rescan_requests: u64,
    pub model: ModelStatus,
}

fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Gathers everything `status` shows; `catalog` is `None` before the first scan.
pub fn collect(settings: &Settings, catalog: Option<&Catalog>) -> anyhow::Result<Status> {
    // Before the first scan there is no catalog: every count is 0 and no library was scanned.
    let (counts, last_hour, rows, rescan_requests) = match catalog {
        Some(c) => (
            c.queue_counts(None)?,
            c.captioned_since(crate::catalog::now_ms() - 3_600_000)?,
            c.libraries()?,
            c.rescan_requests_waiting()?,
        ),
        None => (QueueCounts::default(), 0, Vec::new(), 0),
    };
    let daemon = daemon_state(&settings.database);

    let mut libraries = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let lib_status = |root: &Path, row: Option<&LibraryRow>, configured: bool, poll| {
        let mode = match (row, poll) {
            (_, Some(PollMode::Always)) => "polled",
            (_, Some(PollMode::Never)) => "watched",
            (Some(r), _) if r.last_scan_at.is_some() || r.polled => {
                if r.polled {
                    "polled"
                } else {
                    "watched"
                }
            }
            _ => "auto",
        };
        LibraryStatus {
            root: root.display().to_string(),
            configured,
            online: root.is_dir(),
            photos: row.map_or(0, |r| r.present),
            mode,
            last_scan: row.and_then(|r| r.last_scan_at).map(rfc3339),
            scanned: row.is_some_and(|r| r.last_scan_at.is_some()),
        }
    };
    for lib in &settings.libraries {
        let row = rows.iter().find(|r| r.root == lib.path);
        libraries.push(lib_status(&lib.path, row, true, Some(lib.poll)));
        seen.push(lib.path.clone());
    }
    for row in rows.iter().filter(|r| !seen.contains(&r.root)) {
        libraries.push(lib_status(&row.root, Some(row), false, None));
    }

    let eta_seconds = (daemon.running() == Some(true) && last_hour > 0 && counts.pending > 0)
        .then(|| counts.pending.saturating_mul(3600) / last_hour);
    let mut backends = vec!["cpu"];
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    if cfg!(feature = "metal") {
        backends.push("metal");
    }
    let model = ModelStatus {
        source: settings.model.location.to_string(),
        tasks: settings
            .model
            .tasks
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        device: value_name(&settings.model.device),
        dtype: value_name(&settings.model.dtype),
        backends,
    };
    Ok(Status {
        database: settings.database.display().to_string(),
        catalog_exists: catalog.is_some(),
        pending: counts.pending,
        running: counts.running,
        done: counts.done,
        failed: counts.failed,
        captioned_last_hour: last_hour,
        eta_seconds,
        libraries,
        daemon_running: daemon.running(),
        daemon_pid: daemon.pid(),
        rescan_requests,
        model,
    })
}

/// "1 photo", "3 photos".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration for people: "40s", "12m", "3h 20m", "2d 4h".
pub fn rough_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn print_human(s: &Status, settings: &Settings, catalog: Option<&Catalog>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if s.catalog_exists {
        writeln!(out, "catalog    {}", s.database)?;
    } else {
        writeln!(
            out,
            "catalog    {} (not created yet: nothing scanned; `captiond run` makes it)",
            s.database
        )?;
    }
    let daemon = match (s.daemon_running, s.daemon_pid) {
        (Some(true), Some(pid)) => format!("running (pid {pid})"),
        (Some(true), None) => "running".to_owned(),
        (Some(false), _) => "not running (start it with `captiond run`)".to_owned(),
        (None, _) => match daemon_state(&settings.database) {
            DaemonState::Unknown(why) => format!("unknown: {why}"),
            _ => "unknown".to_owned(),
        },
    };
    writeln!(out, "daemon     {daemon}")?;
    if s.libraries.is_empty() {
        writeln!(out, "libraries  none (add a [[library]] to the config)")?;
    } else {
        writeln!(out, "libraries")?;
        for lib in &s.libraries {
            let mut line = format!(
                "  {}  {}, {}, {}",
                lib.root,
                if lib.online { "online" } else { "offline" },
                lib.mode,
                plural(lib.photos, "photo", "photos")
            );
            match &lib.last_scan {
                Some(scan) => line.push_str(&format!(", last scan {scan}")),
                None => line.push_str(", not scanned yet"),
            }
            if !lib.configured {
                line.push_str(" (no longer in the config)");
            }
            writeln!(out, "{line}")?;
        }
    }
    writeln!(
        out,
        "queue      {} pending, {} running, {} done, {} failed",
        s.pending, s.running, s.done, s.failed
    )?;
    let eta = match s.eta_seconds {
        Some(secs) => format!("; about {} for the pending ones", rough_duration(secs)),
        None if s.pending > 0 && s.daemon_running == Some(false) => {
            "; pending photos wait for a daemon".to_owned()
        }
        None => String::new(),
    };
    writeln!(
        out,
        "speed      {} in the last hour{eta}",
        plural(s.captioned_last_hour, "photo captioned", "photos captioned")
    )?;
    writeln!(
        out,
        "model      {} ({}); device {}, dtype {}; backends: {}",
        s.model.source,
        s.model.tasks.join(", "),
        s.model.device,
        s.model.dtype,
        s.model.backends.join(", ")
    )?;
    if s.rescan_requests > 0 {
        writeln!(
            out,
            "rescan     {} waiting for the daemon",
            plural(s.rescan_requests, "request", "requests")
        )?;
    }
    if s.failed > 0 {
        writeln!(
            out,
            "failed     {} (`captiond retry` queues them again); latest:",
            plural(s.failed, "photo", "photos")
        )?;
        let latest = match catalog {
            Some(c) => c.failed_jobs(3)?,
            None => Vec::new(),
        };
        for job in latest {
            let path = job
                .path
                .map(|p| p.display().to_string())
                .unwrap_or(job.hash);
            let error = job.last_error.unwrap_or_default();
            writeln!(out, "  {path}: {}", error.lines().next().unwrap_or(""))?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(config: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = if settings.database.exists() {
        Some(open_catalog(&settings.database, true)?)
    } else {
        None
    };
    let status = collect(&settings, catalog.as_ref())?;
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &status)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        print_human(&status, &settings, catalog.as_ref())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_plurals() {
        assert_eq!(rough_duration(5), "5s");
        assert_eq!(rough_duration(600), "10m");
        assert_eq!(rough_duration(3 * 3600 + 1260), "3h 21m");
        assert_eq!(rough_duration(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(plural(1, "photo", "photos"), "1 photo");
        assert_eq!(plural(0, "photo", "photos"), "0 photos");
    }
}
