//! `captiond doctor`: checks the setup and says how to fix each problem. One line per check,
//! `ok|warn|FAIL  <check>: <detail>`, each problem followed by `fix: …` lines; exit 1 when any
//! check fails. Read-only: nothing is written into the libraries (write permission is asked of
//! the kernel with access(2)), the catalog is opened read-only, nothing is downloaded.
//!
//! Checks: the config; each library root (exists, readable, not an empty mount point, local or
//! network filesystem and so watched or polled, sidecar write permission); inotify's
//! `max_user_watches` against the folders the libraries need watched (counted with the library
//! walker); the model (local folder complete, or in the Hugging Face cache, or downloadable);
//! GPU backends compiled in and usable, and the configured device; catalog health
//! (`PRAGMA quick_check`); free disk space for the catalog.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use florence2::hub::{self, HubSettings, ModelSource};
use florence2::load::ModelFiles;
use florence2::DeviceChoice;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{default_config_path, Library, Settings};
use crate::errors::error_chain as chain;
use crate::library::scan::{self, PathFilter};
use crate::library::{filesystem_kind, should_poll, FsKind};

#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// Below this much free space the catalog cannot be trusted to grow (FAIL); below
/// [`DISK_WARN`] it soon cannot.
const DISK_FAIL: u64 = 64 << 20;
const DISK_WARN: u64 = 1 << 30;
/// Free space wanted in the Hugging Face cache before a first download (Florence-2-large is
/// about 1.6 GB).
const DOWNLOAD_ROOM: u64 = 2 << 30;
/// The inotify watch limit recommended when raising it.
const RECOMMENDED_WATCHES: u64 = 524_288;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

/// Prints findings as they come and remembers whether any failed.
#[derive(Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn emit(&mut self, level: Level, check: &str, detail: &str, fixes: &[String]) {
        let word = match level {
            Level::Ok => "ok",
            Level::Warn => {
                self.warned += 1;
                "warn"
            }
            Level::Fail => {
                self.failed += 1;
                "FAIL"
            }
        };
        println!("{word:<4}  {check}: {}", one_line(detail));
        for fix in fixes {
            println!("      fix: {fix}");
        }
    }

    fn ok(&mut self, check: &str, detail: impl AsRef<str>) {
        self.emit(Level::Ok, check, detail.as_ref(), &[]);
    }

    fn warn(&mut self, check: &str, detail: impl AsRef<str>, fix: impl Into<String>) {
        self.emit(Level::Warn, check, detail.as_ref(), &[fix.into()]);
    }

    fn fail(&mut self, check: &str, detail: impl AsRef<str>, fix: impl Into<String>) {
        self.emit(Level::Fail, check, detail.as_ref(), &[fix.into()]);
    }
}

pub fn run(config: Option<&Path>, _args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let Some(settings) = check_config(config, &mut report) else {
        return Ok(finish(&report));
    };
    let config_name = settings
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the config file".into());
    let mut watched = Vec::new();
    if settings.libraries.is_empty() {
        report.warn(
            "libraries",
            "none configured: the daemon has nothing to caption",
            format!("add a [[library]] with path = \"/your/photos\" to {config_name}"),
        );
    }
    for (i, lib) in settings.libraries.iter().enumerate() {
        if let Some(events) = check_library(i, lib, &config_name, &mut report) {
            if events {
                watched.push(lib);
            }
        }
    }
    check_watches(&watched, &mut report);
    check_model(&settings, &config_name, &mut report);
    check_device(settings.model.device, &config_name, &mut report);
    check_catalog(&settings.database, &mut report);
    check_disk(&settings.database, &mut report);
    Ok(finish(&report))
}

fn finish(report: &Report) -> ExitCode {
    if report.failed > 0 {
        eprintln!(
            "captiond doctor: {} problem(s) to fix, {} warning(s)",
            report.failed, report.warned
        );
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Multi-line text (a TOML error with its source excerpt) as one line: the excerpt's `|`
/// lines are dropped, the rest joined.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            let excerpt = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !excerpt.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_config(config: Option<&Path>, report: &mut Report) -> Option<Settings> {
    match Settings::load(config) {
        Ok(s) => {
            match &s.source {
                Some(p) => report.ok("config", p.display().to_string()),
                None => report.warn(
                    "config",
                    format!(
                        "no config file ({} does not exist); using the built-in defaults",
                        default_config_path()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "no default location".into())
                    ),
                    "create it with at least one [[library]] (config.example.toml documents \
                     every key), or pass --config FILE",
                ),
            }
            Some(s)
        }
        Err(e) => {
            report.fail(
                "config",
                chain(&e),
                "correct the file (config.example.toml documents every key); the other checks \
                 need a valid config",
            );
            None
        }
    }
}

/// Checks one library; `Some(true)` when it is online and watched with events, `Some(false)`
/// when online and polled, `None` when it cannot be used.
fn check_library(i: usize, lib: &Library, config: &str, report: &mut Report) -> Option<bool> {
    let root = &lib.path;
    let check = format!("library {}", root.display());
    let key = format!("library[{i}]");
    let listing = match std::fs::metadata(root) {
        Ok(md) if !md.is_dir() => {
            report.fail(
                &check,
                "is not a folder",
                format!("point {key}.path in {config} at the folder holding the photos"),
            );
            return None;
        }
        Ok(_) => std::fs::read_dir(root),
        Err(e) => Err(e),
    };
    let mut entries = match listing {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report.emit(
                Level::Fail,
                &check,
                "does not exist",
                &[
                    "if it is on a disk or share that is not mounted, mount it (the daemon keeps \
                     an offline library's photos and resumes when it is back)"
                        .into(),
                    format!("otherwise correct {key}.path in {config}"),
                ],
            );
            return None;
        }
        Err(e) => {
            report.fail(
                &check,
                format!("cannot be read: {e}"),
                format!(
                    "give the user running captiond read and search permission on {} (chmod/chown \
                     or an ACL), or mount the share with options that allow it",
                    root.display()
                ),
            );
            return None;
        }
    };
    if entries.next().is_none() {
        report.warn(
            &check,
            "is an empty folder (an unmounted share's mount point looks like this)",
            "mount the share or disk; if it is really empty, nothing needs doing",
        );
        return None;
    }
    let kind = filesystem_kind(root).unwrap_or(FsKind::Local);
    let polled = should_poll(kind, lib.poll);
    let what = match kind {
        FsKind::Local => "a local filesystem".to_string(),
        FsKind::Network(name) => format!("a network filesystem ({name})"),
        FsKind::Fuse => "a FUSE filesystem of unknown kind".to_string(),
    };
    let how = if polled {
        "polled every 30 s"
    } else {
        "watched with events"
    };
    match (kind, polled) {
        (FsKind::Network(_), false) => report.warn(
            &check,
            format!("on {what}, {how} (poll = false): changes made by other machines are missed"),
            format!("set poll = \"auto\" for {key} in {config}"),
        ),
        _ => report.ok(&check, format!("readable, on {what}, {how}")),
    }
    if lib.sidecars || lib.embed {
        let keys = match (lib.sidecars, lib.embed) {
            (true, true) => (
                "sidecars and embedded XMP are on",
                "sidecars = false and embed = false",
            ),
            (true, false) => ("sidecars are on", "sidecars = false"),
            _ => ("embedded XMP is on", "embed = false"),
        };
        check_sidecars(root, &key, keys, config, report);
    }
    Some(!polled)
}

/// `(on, off)`: which writing keys (`sidecars`, `embed`) are on, and how to turn them off.
fn check_sidecars(
    root: &Path,
    key: &str,
    (on, off): (&str, &str),
    config: &str,
    report: &mut Report,
) {
    let check = format!("sidecars {}", root.display());
    match access_writable(root) {
        Ok(()) => report.ok(&check, "XMP sidecars can be written here"),
        Err(e) => {
            let why = if e.raw_os_error() == Some(libc::EROFS) {
                "the filesystem is mounted read-only".to_string()
            } else {
                e.to_string()
            };
            report.emit(
                Level::Fail,
                &check,
                &format!("{on} but this folder is not writable: {why}"),
                &[
                    format!(
                        "give the user running captiond write permission on {} and its folders \
                         (chown/chmod or an ACL; a share: mount it read-write)",
                        root.display()
                    ),
                    format!("or set {off} for {key} in {config}: results stay in the catalog"),
                ],
            );
        }
    }
}

fn check_watches(watched: &[&Library], report: &mut Report) {
    if !cfg!(target_os = "linux") {
        report.ok(
            "watches",
            "this platform watches each library with one recursive watch (no per-folder limit)",
        );
        return;
    }
    let limit = read_proc_number("/proc/sys/fs/inotify/max_user_watches");
    let mut needed: u64 = 0;
    let mut unreadable = 0usize;
    for lib in watched {
        let Ok(filter) = PathFilter::new(&lib.path, &lib.exclude) else {
            continue;
        };
        for entry in scan::entries(&lib.path, &filter) {
            match entry {
                Ok(e) if e.file_type().is_dir() => needed += 1,
                Ok(_) => {}
                Err(_) => unreadable += 1,
            }
        }
    }
    let note = if unreadable > 0 {
        format!(" ({unreadable} entries could not be read)")
    } else {
        String::new()
    };
    let Some(limit) = limit else {
        report.ok(
            "inotify",
            format!("{needed} folders to watch; the limit could not be read{note}"),
        );
        return;
    };
    let raise = |at_least: u64| {
        let n = (at_least * 2).next_power_of_two().max(RECOMMENDED_WATCHES);
        format!(
            "raise the limit: echo fs.inotify.max_user_watches={n} | sudo tee \
             /etc/sysctl.d/90-captiond.conf && sudo sysctl --system"
        )
    };
    let detail = format!(
        "{needed} folder{} to watch, fs.inotify.max_user_watches = {limit} (shared with every \
         other program of this user){note}",
        if needed == 1 { "" } else { "s" }
    );
    if needed > limit {
        report.emit(
            Level::Fail,
            "inotify",
            &detail,
            &[
                raise(needed),
                "or set poll = true for the largest library (slower to notice changes)".into(),
            ],
        );
    } else if needed > limit / 2 {
        report.warn("inotify", detail, raise(needed));
    } else {
        report.ok("inotify", detail);
    }
    if let Some(instances) = read_proc_number("/proc/sys/fs/inotify/max_user_instances") {
        if watched.len() as u64 > instances / 2 {
            report.warn(
                "inotify",
                format!(
                    "{} watched libraries, fs.inotify.max_user_instances = {instances}",
                    watched.len()
                ),
                "raise it: echo fs.inotify.max_user_instances=1024 | sudo tee -a \
                 /etc/sysctl.d/90-captiond.conf && sudo sysctl --system",
            );
        }
    }
}

fn read_proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn check_model(settings: &Settings, config: &str, report: &mut Report) {
    match &settings.model.location {
        ModelSource::Dir(dir) => match ModelFiles::from_dir(dir) {
            Ok(files) => report.ok(
                "model",
                format!(
                    "local folder {} ({} weight file(s))",
                    dir.display(),
                    files.weights.len()
                ),
            ),
            Err(e) => report.fail(
                "model",
                chain(&e),
                format!(
                    "point [model] dir in {config} at a folder with config.json, \
                     preprocessor_config.json, tokenizer.json and model.safetensors (a Hugging \
                     Face snapshot), or remove `dir` to use the hub repo"
                ),
            ),
        },
        ModelSource::Repo { id, revision } => check_hub_model(id, revision, report),
    }
}

fn check_hub_model(id: &str, revision: &str, report: &mut Report) {
    let spec = format!("{id}@{revision}");
    let hub_settings = match HubSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            report.fail("model", chain(&e), "set HF_HOME to a writable folder");
            return;
        }
    };
    let source = ModelSource::Repo {
        id: id.to_string(),
        revision: revision.to_string(),
    };
    // Offline: looks in the cache only, so nothing is downloaded or written.
    let cache_only = HubSettings {
        offline: true,
        ..hub_settings.clone()
    };
    match hub::resolve_with(&source, false, &cache_only) {
        Ok(files) => report.ok(
            "model",
            format!("{spec} is in the Hugging Face cache ({})", files.dir.display()),
        ),
        Err(e) if hub_settings.offline => report.emit(
            Level::Fail,
            "model",
            &format!("{spec} is not (completely) in the Hugging Face cache and HF_HUB_OFFLINE is set: {}", chain(&e)),
            &[
                "run `captiond run` once with network access and HF_HUB_OFFLINE unset, or copy \
                 the Hugging Face cache (HF_HOME) from a machine that has the model"
                    .into(),
                "or download it elsewhere and set [model] dir to its folder".into(),
            ],
        ),
        Err(_) => {
            let cache = &hub_settings.cache_dir;
            report.ok(
                "model",
                format!(
                    "{spec} is not cached yet; the first `captiond run` downloads it from {} into {}",
                    hub_settings.endpoint,
                    cache.display()
                ),
            );
            if let Some(free) = free_bytes_near(cache) {
                if free < DOWNLOAD_ROOM {
                    report.warn(
                        "model",
                        format!(
                            "only {} free for the download in {}",
                            human_bytes(free),
                            cache.display()
                        ),
                        "free some space, or set HF_HOME to a folder on a larger disk",
                    );
                }
            }
        }
    }
}

fn check_device(choice: DeviceChoice, config: &str, report: &mut Report) {
    let compiled: Vec<&str> = [
        (cfg!(feature = "cuda"), "cuda"),
        (cfg!(feature = "metal"), "metal"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let rebuild = |backend: &str| {
        format!("rebuild with the backend: cargo install --path . --features {backend}")
    };
    // Each compiled-in backend, tried for real.
    let mut usable = Vec::new();
    for backend in &compiled {
        let tried = match *backend {
            "cuda" => candle_core::Device::new_cuda(0).map(|_| ()),
            _ => candle_core::Device::new_metal(0).map(|_| ()),
        };
        match tried {
            Ok(()) => {
                usable.push(*backend);
                report.ok("gpu", format!("{backend} compiled in, device 0 usable"));
            }
            Err(e) => {
                let fix = if *backend == "cuda" {
                    "check the NVIDIA driver (`nvidia-smi`) and that the CUDA libraries are on the \
                     loader path (LD_LIBRARY_PATH)"
                } else {
                    "Metal needs macOS on Apple silicon or a Metal-capable GPU"
                };
                report.warn(
                    "gpu",
                    format!("{backend} compiled in but not usable: {e}"),
                    fix,
                );
            }
        }
    }
    if compiled.is_empty() {
        report.ok(
            "gpu",
            "no GPU backend compiled in (CPU only); for a GPU: cargo install --path . --features \
             cuda (or metal on a Mac)",
        );
    }
    let wanted = match choice {
        DeviceChoice::Auto => {
            let picked = usable.first().copied().unwrap_or("cpu");
            if picked == "cpu" && !compiled.is_empty() {
                report.warn(
                    "device",
                    "auto: no compiled-in GPU backend is usable, so captioning runs on the CPU \
                     (much slower)",
                    "fix the GPU problem above, or set device = \"cpu\" to say so",
                );
            } else {
                report.ok("device", format!("auto → {picked}"));
            }
            return;
        }
        DeviceChoice::Cpu => {
            report.ok("device", "cpu (as configured)");
            return;
        }
        DeviceChoice::Cuda => "cuda",
        DeviceChoice::Metal => "metal",
    };
    if usable.contains(&wanted) {
        report.ok("device", format!("{wanted} (as configured)"));
    } else if !compiled.contains(&wanted) {
        report.emit(
            Level::Fail,
            "device",
            &format!("device = \"{wanted}\" but this build has no {wanted} backend"),
            &[
                rebuild(wanted),
                format!("or set device = \"auto\" in {config}"),
            ],
        );
    } else {
        report.fail(
            "device",
            format!("device = \"{wanted}\" but it is not usable (see the gpu check)"),
            format!("fix the GPU problem, or set device = \"auto\" in {config}"),
        );
    }
}

fn check_catalog(path: &Path, report: &mut Report) {
    if !path.exists() {
        match nearest_existing(path).map(|dir| (access_writable(&dir), dir)) {
            Some((Ok(()), _)) | None => report.ok(
                "catalog",
                format!(
                    "{} does not exist yet; `captiond run` creates it",
                    path.display()
                ),
            ),
            Some((Err(e), dir)) => report.fail(
                "catalog",
                format!(
                    "{} does not exist and cannot be created: {} is not writable ({e})",
                    path.display(),
                    dir.display()
                ),
                "set `database` in the config to a path in a writable folder, or fix the \
                 folder's permissions",
            ),
        }
        return;
    }
    let catalog = match Catalog::open_readonly(path) {
        Ok(c) => c,
        Err(e) => {
            let fix = match &e {
                CatalogError::NeedsUpgrade { .. } => {
                    report.warn(
                        "catalog",
                        chain(&e),
                        "run `captiond run` once: it upgrades the catalog",
                    );
                    return;
                }
                CatalogError::TooNew { .. } => "upgrade captiond".to_string(),
                CatalogError::NotADatabase { .. } | CatalogError::Foreign { .. } => format!(
                    "restore a backup, or move {} away to start a new catalog (every photo is \
                     then captioned again)",
                    path.display()
                ),
                _ => format!("check the permissions of {} and its folder", path.display()),
            };
            report.fail("catalog", chain(&e), fix);
            return;
        }
    };
    match catalog.quick_check() {
        Ok(problems) if problems.is_empty() => {
            let counts = catalog
                .queue_counts(None)
                .map(|c| {
                    format!(
                        " ({} done, {} pending, {} failed)",
                        c.done, c.pending, c.failed
                    )
                })
                .unwrap_or_default();
            report.ok(
                "catalog",
                format!("{} passes quick_check{counts}", path.display()),
            );
        }
        Ok(problems) => {
            let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
            report.fail(
                "catalog",
                format!(
                    "{} is damaged ({} problem(s)): {}",
                    path.display(),
                    problems.len(),
                    shown.join("; ")
                ),
                format!(
                    "stop the daemon, then restore a backup or rescue it: sqlite3 {} .recover | \
                     sqlite3 recovered.db, and move recovered.db into its place",
                    path.display()
                ),
            );
            return;
        }
        Err(e) => {
            report.fail(
                "catalog",
                chain(&e),
                "stop the daemon and run `captiond doctor` again; if it persists, restore a backup",
            );
            return;
        }
    }
    // The daemon writes the file and, for WAL, creates files beside it.
    let dir = path.parent().unwrap_or(Path::new("."));
    for p in [path, dir] {
        if let Err(e) = access_writable(p) {
            report.fail(
                "catalog",
                format!("{} is not writable: {e}", p.display()),
                "run captiond as the catalog's owner, or fix the permissions (chown/chmod)",
            );
            return;
        }
    }
    check_search_index(&catalog, report);
}

/// The ranked search index beside the catalog: built, how far behind, writable.
fn check_search_index(catalog: &Catalog, report: &mut Report) {
    use crate::catalog::search::index::{index_dir, status, IndexStatus};
    let dir = index_dir(catalog.path());
    if dir.exists() {
        if let Err(e) = access_writable(&dir) {
            report.warn(
                "search index",
                format!("{} is not writable: {e}", dir.display()),
                "fix its permissions (search works meanwhile, but through the slower SQLite \
                 search)",
            );
            return;
        }
    }
    match status(catalog) {
        Ok(IndexStatus::Missing) => report.ok(
            "search index",
            format!(
                "{} is not built yet; the daemon or the first search builds it",
                dir.display()
            ),
        ),
        Ok(IndexStatus::Built { photos, behind }) => report.ok(
            "search index",
            format!(
                "{} holds {photos} photos{}",
                dir.display(),
                if behind > 0 {
                    format!(" ({behind} catalog changes to apply at the next search)")
                } else {
                    String::new()
                }
            ),
        ),
        Ok(IndexStatus::Stale { reason }) => report.warn(
            "search index",
            format!("{} will be rebuilt: {reason}", dir.display()),
            "nothing to do: the next search or the daemon rebuilds it from the catalog",
        ),
        Err(e) => report.warn(
            "search index",
            chain(&e),
            format!("delete {} (it is rebuilt from the catalog)", dir.display()),
        ),
    }
}

fn check_disk(database: &Path, report: &mut Report) {
    let Some(dir) = nearest_existing(database.parent().unwrap_or(Path::new("."))) else {
        return;
    };
    let Some(free) = free_bytes(&dir) else {
        return;
    };
    let detail = format!(
        "{} free for the catalog in {}",
        human_bytes(free),
        dir.display()
    );
    let fix = "free some space, or move the catalog (`database` in the config) to a larger disk";
    if free < DISK_FAIL {
        report.fail("disk", detail, fix);
    } else if free < DISK_WARN {
        report.warn("disk", detail, fix);
    } else {
        report.ok("disk", detail);
    }
}

/// The path itself if it exists, else its closest existing ancestor.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if p.exists() {
            return Some(p);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// access(2) with W_OK: asks the kernel whether this process may write, without writing
/// (read-only mounts answer EROFS).
fn access_writable(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; `c` outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn free_bytes_near(path: &Path) -> Option<u64> {
    free_bytes(&nearest_existing(path)?)
}

/// "512 B", "3.00 GiB": indicatif's binary units, as the progress bars show them.
fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_fit_one_line() {
        let toml = "config x is not valid: TOML parse error at line 2, column 1\n  |\n2 | beems = 3\n  | ^^^^^\nunknown field `beems`\n";
        assert_eq!(
            one_line(toml),
            "config x is not valid: TOML parse error at line 2, column 1 unknown field `beems`"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(1536 << 20), "1.50 GiB");
    }

    #[test]
    fn nearest_existing_climbs() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c.db");
        assert_eq!(nearest_existing(&deep).unwrap(), tmp.path());
        assert!(access_writable(tmp.path()).is_ok());
        assert!(free_bytes(tmp.path()).is_some());
    }
}
