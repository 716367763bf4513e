//! The captioning worker: a thread of its own with its own catalog connection. It claims
//! `batch_size` jobs at a time, runs them through [`process_batch`], writes the sidecars of the
//! photos it finished, and repeats. The model is loaded on the first claimable job and unloaded
//! after `idle_unload` without work, so an idle daemon stays small.
//!
//! Stopping: the shared `stop` flag is checked before every claim and, inside a batch, before every
//! task; an interrupted batch is released back to `pending`. In `--once` mode the worker ends when
//! discovery is finished and nothing is claimable any more.
//!
//! The worker is the one writer of sidecars. Besides jobs it takes [`WorkerMsg::Relocated`]:
//! photos discovery found at a new path with known content (moved, renamed, copied). Their
//! sidecars follow ([`crate::sidecar::follow`]) before each claim, while idle, before a finished
//! batch's sidecars are written (so a photo moved mid-batch brings its old sidecar before one is
//! made at the new place) and once more before the worker returns.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::discover::Relocated;
use super::DaemonError;
use crate::catalog::{Catalog, RetryPolicy};
use crate::config::{library_of, Library, ModelSettings, SidecarOptions};
use crate::errors::error_chain;
use crate::pipeline::{process_batch, Captioner};
use crate::sidecar::{follow, rewrite, WriteOutcome};

/// How long an idle daemon worker waits before looking for claimable jobs again without being
/// woken (jobs whose back-off ran out, libraries that came back).
const IDLE_POLL: Duration = Duration::from_secs(2);
/// How often, at most, the search index follows the catalog while captioning (it also does when
/// the queue runs dry, so searches never wait for a big catch-up).
const INDEX_SYNC_EVERY: Duration = Duration::from_secs(10);

/// Flags shared by the daemon loop and the worker.
#[derive(Debug, Default)]
pub struct Shared {
    /// Shutdown asked: finish or hand back the current batch, then return.
    pub stop: AtomicBool,
    /// `--once`: discovery has queued everything it will queue.
    pub discovery_done: AtomicBool,
}

/// What the daemon loop sends the worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Look for claimable jobs now (discovery queued some, or is done).
    Wake,
    /// Photos at new paths whose sidecars should follow (see [`Relocated`]).
    Relocated(Vec<Relocated>),
}

/// What the worker needs, owned (it runs on its own thread).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database: PathBuf,
    pub model: ModelSettings,
    pub profile: String,
    pub policy: RetryPolicy,
    pub once: bool,
    pub idle_unload: Duration,
    pub libraries: Vec<Library>,
    pub sidecar: SidecarOptions,
}

/// What the worker did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs completed (captioned and stored).
    pub captioned: u64,
    /// Failed attempts (retried or not).
    pub failed_attempts: u64,
    /// Jobs handed back at shutdown.
    pub released: u64,
}

/// The worker loop; returns when stopped, when `--once` has nothing left, or on a fatal error
/// (catalog, model load).
pub fn work(
    cfg: &WorkerConfig,
    shared: &Arc<Shared>,
    wake: &Receiver<WorkerMsg>,
) -> Result<WorkerStats, DaemonError> {
    let _span = tracing::info_span!("worker").entered();
    let catalog = Catalog::open(&cfg.database)?;
    // Relocations received and not yet handled.
    let mut moved: Vec<Relocated> = Vec::new();
    let follow_moves = |moved: &mut Vec<Relocated>| {
        // Everything sent so far, then all of it in the order discovery found it.
        moved.extend(
            wake.try_iter()
                .filter_map(|m| match m {
                    WorkerMsg::Relocated(r) => Some(r),
                    WorkerMsg::Wake => None,
                })
                .flatten(),
        );
        if !moved.is_empty() {
            follow_relocated(
                &catalog,
                &cfg.libraries,
                &cfg.sidecar,
                std::mem::take(moved),
            );
        }
    };
    let mut stats = WorkerStats::default();
    let mut captioner: Option<Captioner> = None;
    let mut last_work = Instant::now();
    let mut last_index_sync: Option<Instant> = None;
    // `run --once` on a terminal shows a bar with an ETA; under a service, log lines only.
    let progress = (cfg.once && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} captioning {pos}/{len} photos [{elapsed_precise}] ETA {eta} {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let _shown = progress.as_ref().map(crate::progress::show);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        // Read before claiming: when set, every job discovery queued is already committed, and
        // every relocation it found is already sent.
        let discovery_done = shared.discovery_done.load(Ordering::SeqCst);
        follow_moves(&mut moved);
        let jobs = catalog.claim(&cfg.profile, cfg.model.batch_size)?;
        if jobs.is_empty() {
            sync_search_index(&catalog, &mut last_index_sync, Duration::ZERO);
            if cfg.once && discovery_done {
                break;
            }
            let mut wait = if cfg.once {
                Duration::from_millis(200)
            } else {
                IDLE_POLL
            };
            if captioner.is_some() {
                let idle = last_work.elapsed();
                if idle >= cfg.idle_unload {
                    captioner = None;
                    crate::memory::release_freed_memory();
                    tracing::info!(
                        idle_s = idle.as_secs(),
                        "model unloaded after idling; it loads again with the next job"
                    );
                } else {
                    wait = wait.min(cfg.idle_unload - idle);
                }
            }
            match wake.recv_timeout(wait) {
                Ok(WorkerMsg::Relocated(r)) => moved.extend(r),
                Ok(WorkerMsg::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            continue;
        }
        let model = match &mut captioner {
            Some(c) => c,
            None => {
                let started = Instant::now();
                match Captioner::load(&cfg.model, std::io::stderr().is_terminal()) {
                    Ok(c) => {
                        tracing::info!(ms = started.elapsed().as_millis() as u64, "model ready");
                        captioner.insert(c)
                    }
                    Err(e) => {
                        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
                        catalog.release(&ids)?;
                        return Err(DaemonError::ModelLoad {
                            model: cfg.model.location.to_string(),
                            source: e.into(),
                        });
                    }
                }
            }
        };
        if let Some(bar) = &progress {
            // Pending grows while discovery runs: keep the total in step with the queue.
            let counts = catalog.queue_counts(Some(&cfg.profile))?;
            bar.set_length(bar.position() + counts.pending + counts.running);
        }
        let report = process_batch(model, &catalog, &jobs, &cfg.policy, &shared.stop)?;
        if let Some(bar) = &progress {
            bar.inc((report.done + report.failed) as u64);
        }
        stats.captioned += report.done as u64;
        stats.failed_attempts += report.failed as u64;
        stats.released += report.released as u64;
        follow_moves(&mut moved);
        for hash in &report.finished {
            write_sidecars(&catalog, &cfg.libraries, &cfg.sidecar, hash);
        }
        sync_search_index(&catalog, &mut last_index_sync, INDEX_SYNC_EVERY);
        last_work = Instant::now();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // Moves discovery saw before the stop: quick file renames, and lost for good if left (the
    // next run finds the photos unchanged at their new paths).
    follow_moves(&mut moved);
    Ok(stats)
}

/// Brings the search index up to the catalog when `every` has passed since the last time. A
/// failure is logged and the worker goes on: search falls back to SQLite meanwhile.
fn sync_search_index(catalog: &Catalog, last: &mut Option<Instant>, every: Duration) {
    if last.is_some_and(|t| t.elapsed() < every) {
        return;
    }
    *last = Some(Instant::now());
    let started = Instant::now();
    match catalog.sync_search_index() {
        Ok(Some(n)) if n > 0 => tracing::debug!(
            photos = n,
            ms = started.elapsed().as_millis() as u64,
            "search index updated"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("search index not updated: {}", error_chain(&e)),
    }
}

/// Writes (merges) the XMP sidecar of every present photo holding `hash`, in libraries with
/// `sidecars = true`, and embeds it into JPEG and PNG originals in libraries with `embed = true`
/// (the catalog follows the new bytes, so they are not captioned again). A failure is logged
/// with the file's name and the worker goes on.
fn write_sidecars(catalog: &Catalog, libraries: &[Library], options: &SidecarOptions, hash: &str) {
    let paths = match catalog.present_paths_for_hash(hash) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%hash, "no sidecars written: {e}");
            return;
        }
    };
    for path in paths {
        let Some(lib) = library_of(libraries, &path) else {
            continue;
        };
        let Some(settings) = lib.sidecar_settings(options) else {
            continue;
        };
        match rewrite(catalog, &path, &settings) {
            Ok(outcome) => {
                if let WriteOutcome::Skipped(reason) = &outcome.sidecar {
                    if reason.concerns_the_file() {
                        tracing::warn!(path = %path.display(), %reason, "no sidecar written");
                    } else {
                        tracing::debug!(path = %path.display(), %reason, "no sidecar written");
                    }
                }
                if let WriteOutcome::Skipped(reason) = &outcome.embedded {
                    if reason.concerns_the_file() {
                        tracing::warn!(path = %path.display(), %reason, "no XMP embedded");
                    } else if settings.embed {
                        tracing::debug!(path = %path.display(), %reason, "no XMP embedded");
                    }
                }
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                "sidecar not written: {}",
                error_chain(&e)
            ),
        }
    }
}

/// Brings the sidecars of photos found at new paths along ([`follow`]), in libraries with
/// sidecars or embedding on. A move out of a library with `sidecars = true` may take the old
/// sidecar file along (found with that library's naming); otherwise the new place's sidecar is
/// written or merged from the catalog. Failures are logged with the file's name; the rest goes on.
fn follow_relocated(
    catalog: &Catalog,
    libraries: &[Library],
    options: &SidecarOptions,
    moved: Vec<Relocated>,
) {
    for r in chain_moves(moved) {
        let Some(settings) =
            library_of(libraries, &r.path).and_then(|l| l.sidecar_settings(options))
        else {
            continue;
        };
        let from = r.from.as_deref().and_then(|f| {
            let lib = library_of(libraries, f)?;
            lib.sidecars.then_some((f, lib.naming))
        });
        match follow(catalog, &r.path, from, &settings) {
            Ok(outcome) => {
                if let Some(old) = &outcome.moved_from {
                    tracing::info!(
                        from = %old.display(),
                        path = %r.path.display(),
                        "sidecar moved with its photo"
                    );
                }
                if let Some(e) = &outcome.move_error {
                    tracing::warn!(
                        path = %r.path.display(),
                        "sidecar not moved with its photo (left where it was; a new one is \
                         written): {}",
                        error_chain(e)
                    );
                }
                if let WriteOutcome::Skipped(reason) = &outcome.rewrite.sidecar {
                    tracing::debug!(path = %r.path.display(), %reason, "no sidecar written");
                }
            }
            Err(e) => tracing::warn!(
                path = %r.path.display(),
                "sidecar of a moved or copied photo not written: {}",
                error_chain(&e)
            ),
        }
    }
}

/// Joins moves in a row (`a` → `b`, then `b` → `c` before the first was handled) into one
/// (`a` → `c`), so the sidecar still at `a` reaches `c`. Order is kept.
fn chain_moves(moved: Vec<Relocated>) -> Vec<Relocated> {
    let mut out: Vec<Relocated> = Vec::with_capacity(moved.len());
    let mut at: HashMap<PathBuf, usize> = HashMap::new();
    for r in moved {
        if let Some(i) = r.from.as_ref().and_then(|f| at.remove(f)) {
            at.insert(r.path.clone(), i);
            out[i].path = r.path;
            continue;
        }
        at.insert(r.path.clone(), out.len());
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str, from: Option<&str>) -> Relocated {
        Relocated {
            path: PathBuf::from(path),
            from: from.map(PathBuf::from),
        }
    }

    #[test]
    fn moves_in_a_row_are_joined() {
        let got = chain_moves(vec![
            r("/l/b", Some("/l/a")),
            r("/l/copy", None),
            r("/l/c", Some("/l/b")),
            r("/l/copy2", Some("/l/copy")),
            r("/l/d", Some("/l/c")),
            r("/l/x", Some("/l/w")),
        ]);
        assert_eq!(
            got,
            vec![
                r("/l/d", Some("/l/a")),
                r("/l/copy2", None),
                r("/l/x", Some("/l/w")),
            ]
        );
    }
}
