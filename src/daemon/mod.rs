//! `captiond run`: the daemon loop tying discovery, the catalog queue and the captioning worker
//! together (and `run --once`, the same pipeline run to completion).
//!
//! Start-up: take the catalog's run lock (one daemon per catalog), open the catalog (an error stops
//! the run: never start empty), return jobs left `running` by a crash to `pending`, drop pending
//! jobs whose content no present photo holds any more (deleted mid-caption), and queue every
//! present content without a job for the current profile (model + revision + tasks); failed jobs
//! stay failed until `captiond retry`. `--once` also makes jobs still backing off from an earlier
//! run claimable at once (their attempts still count towards the limit). Then, per
//! library: online or offline, a watcher (events or polling; daemon mode only), and an initial
//! reconcile that queues new photos as backfill. The worker thread ([`worker`]) captions in the
//! meantime.
//!
//! Daemon loop (`tokio`, one thread for signals and event forwarding; the loop itself does blocking
//! discovery work): watch events → [`Discovery`], settled files → queued (priority new), a periodic
//! reconcile every `rescan_interval`, `captiond rescan` requests taken from the catalog every 2 s, SIGTERM/SIGINT → stop watchers, let the worker finish or hand
//! back its batch, exit 0. Photos discovery finds at a new path with known content (moved,
//! renamed, copied) are sent to the worker ([`WorkerMsg::Relocated`]), which brings their
//! sidecars along. A second signal exits at once (running jobs are resumed next start).
//! Fatal: catalog errors and a model that cannot be loaded; a photo that fails is only a failed job.

pub mod discover;
pub mod lock;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{oneshot, Notify};

use crate::catalog::{Catalog, CatalogError, Priority, RetryPolicy};
use crate::config::Settings;
use crate::errors::error_chain;
use crate::library::{LibraryWatcher, ScanError, WatchEvent, WatchMode};
use crate::pipeline::profile_key;

pub use discover::{Discovery, ReconcileStats, Relocated, Totals};
pub use lock::{daemon_state, lock_path, DaemonState, RunLock};
pub use worker::{Shared, WorkerConfig, WorkerMsg, WorkerStats};

/// How often a network (or `poll = true`) library is stat-walked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How often the daemon looks for `captiond rescan` requests in the catalog.
const REQUEST_POLL: Duration = Duration::from_secs(2);

/// Why a run stopped (each names what it is about).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "another `captiond run` is already working on the catalog {database}{}; stop it first \
         (lock file {lock})",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    AlreadyRunning {
        database: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot create or lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the model {model}; captioning is impossible, so captiond stops")]
    ModelLoad {
        model: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("library {root}: bad exclude pattern")]
    Filter {
        root: PathBuf,
        #[source]
        source: ScanError,
    },
    #[error("cannot start {what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the captioning worker crashed (see the log above); running jobs resume at the next start"
    )]
    WorkerCrashed,
}

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Discover, caption everything claimable, then return (no watchers, no waiting on retries:
    /// failed attempts are retried at once up to the usual limit, and so are jobs still backing
    /// off from an earlier daemon run).
    pub once: bool,
}

/// What a run did (printed by `run --once`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Photos (contents) captioned in this run.
    pub captioned: u64,
    /// Jobs that ran out of attempts in this run.
    pub failed: u64,
    /// Photos found that needed no captioning (unchanged, or their content already had a job).
    pub skipped: u64,
    /// Jobs queued by discovery in this run.
    pub queued: u64,
    /// Files that could not be read.
    pub unreadable: u64,
}

/// Runs the daemon (or `--once`) until done or signalled; see the module docs.
pub fn run(settings: &Settings, options: RunOptions) -> Result<RunSummary, DaemonError> {
    let lock = RunLock::acquire(&settings.database)?;
    tracing::debug!(lock = %lock.path().display(), "catalog lock taken");
    let catalog = Catalog::open(&settings.database)?;
    let profile = profile_key(&settings.model);
    // Jobs a dead process left running each spend an attempt (the attempt limit is the same for
    // `--once`, whose policy only drops the back-off).
    let reclaimed = catalog.reclaim_running(&RetryPolicy::default())?;
    if reclaimed.failed > 0 {
        tracing::warn!(
            jobs = reclaimed.failed,
            "photos that stopped captiond every time they were captioned are left failed \
             (`captiond status` lists them, `captiond retry` tries again)"
        );
    }
    let reclaimed = reclaimed.returned;
    let orphans = catalog.drop_orphaned_pending()?;
    if orphans > 0 {
        tracing::info!(
            jobs = orphans,
            "dropped queued jobs whose photos were deleted (they are queued again if they return)"
        );
    }
    let requeued = catalog.requeue_for_profile(&profile)?;
    // `--once` is an explicit request to caption what is queued: no waiting out an earlier run's
    // back-off (the attempt limit still holds: those attempts were counted).
    let unblocked = if options.once {
        catalog.clear_backoff(&profile)?
    } else {
        0
    };
    let before = catalog.queue_counts(Some(&profile))?;
    tracing::info!(
        catalog = %settings.database.display(),
        %profile,
        reclaimed,
        requeued,
        unblocked,
        pending = before.pending,
        done = before.done,
        once = options.once,
        "starting"
    );
    if settings.libraries.is_empty() {
        tracing::warn!("no [[library]] in the config: nothing to watch");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("captiond-rt")
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Start {
            what: "the async runtime",
            source,
        })?;
    let (totals, stats) =
        runtime.block_on(run_loop(settings, options, catalog, profile.clone()))?;
    let after = Catalog::open(&settings.database)?.queue_counts(Some(&profile))?;
    let summary = RunSummary {
        captioned: stats.captioned,
        failed: after.failed.saturating_sub(before.failed),
        skipped: totals.skipped,
        queued: totals.queued,
        unreadable: totals.unreadable,
    };
    tracing::info!(
        captioned = summary.captioned,
        failed = summary.failed,
        skipped = summary.skipped,
        pending = after.pending,
        released = stats.released,
        "stopped"
    );
    drop(lock);
    Ok(summary)
}

async fn run_loop(
    settings: &Settings,
    options: RunOptions,
    catalog: Catalog,
    profile: String,
) -> Result<(Totals, WorkerStats), DaemonError> {
    let shared = Arc::new(Shared::default());
    let stop_notify = Arc::new(Notify::new());
    listen_for_signals(shared.clone(), stop_notify.clone())?;

    // The worker starts first so captioning overlaps discovery.
    let policy = if options.once {
        RetryPolicy {
            base: Duration::ZERO,
            ..RetryPolicy::default()
        }
    } else {
        RetryPolicy::default()
    };
    let cfg = WorkerConfig {
        database: settings.database.clone(),
        model: settings.model.clone(),
        profile: profile.clone(),
        policy,
        once: options.once,
        idle_unload: settings.daemon.idle_unload,
        libraries: settings.libraries.clone(),
        sidecar: settings.sidecar.clone(),
    };
    let (wake_tx, wake_rx) = mpsc::channel::<WorkerMsg>();
    let (done_tx, mut done_rx) = oneshot::channel();
    let worker_shared = shared.clone();
    let worker = std::thread::Builder::new()
        .name("captiond-worker".into())
        .spawn(move || {
            let result = worker::work(&cfg, &worker_shared, &wake_rx);
            let _ = done_tx.send(result);
        })
        .map_err(|source| DaemonError::Start {
            what: "the worker thread",
            source,
        })?;
    let moves_tx = wake_tx.clone();
    let wake = move || {
        let _ = wake_tx.send(WorkerMsg::Wake);
    };
    // Photos discovery found at new paths go to the worker, the one writer of sidecars (sending
    // wakes it). Called after every discovery step, and always before `discovery_done` is set.
    let forward_moves = move |discovery: &mut Discovery| {
        let moved = discovery.take_relocated();
        if !moved.is_empty() {
            let _ = moves_tx.send(WorkerMsg::Relocated(moved));
        }
    };

    let mut discovery = Discovery::new(catalog, settings, profile, shared.clone())?;
    let (event_tx, mut events) = unbounded_channel::<(usize, WatchEvent)>();
    let mut watchers: Vec<Option<(LibraryWatcher, WatchMode)>> =
        (0..discovery.libraries().len()).map(|_| None).collect();

    let outcome: Result<Option<WorkerStats>, DaemonError> = async {
        for (idx, watcher) in watchers.iter_mut().enumerate() {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let online = discovery.check_root(idx)?;
            if !options.once {
                // Watch before walking, so nothing lands unseen between the two. A root that is
                // missing now is watched too: the watcher reports when it appears.
                *watcher = start_watcher(&discovery, idx, &event_tx);
            }
            if online {
                discovery.reconcile(idx, Priority::Backfill)?;
                forward_moves(&mut discovery);
                wake();
            }
        }
        let every = settings.daemon.rescan_interval.max(Duration::from_secs(1));
        let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests = tokio::time::interval(REQUEST_POLL);
        requests.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            forward_moves(&mut discovery);
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if options.once
                && discovery.settling() == 0
                && !shared.discovery_done.load(Ordering::SeqCst)
            {
                shared.discovery_done.store(true, Ordering::SeqCst);
                wake();
            }
            let due = discovery.next_due().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = stop_notify.notified() => return Ok(None),
                result = &mut done_rx => {
                    return match result {
                        Ok(Ok(stats)) => Ok(Some(stats)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(DaemonError::WorkerCrashed),
                    };
                }
                Some((idx, event)) = events.recv() => {
                    match event {
                        WatchEvent::RootGone => discovery.root_gone(idx)?,
                        WatchEvent::RootBack => {
                            discovery.root_back(idx)?;
                            restart_watcher_if_needed(&discovery, idx, &mut watchers, &event_tx);
                            wake();
                        }
                        WatchEvent::Rescan => {
                            discovery.reconcile(idx, Priority::New)?;
                            wake();
                        }
                        change => discovery.handle_change(idx, change)?,
                    }
                }
                _ = sleep_until(due), if due.is_some() => {
                    if discovery.process_due()? > 0 {
                        wake();
                    }
                }
                _ = requests.tick(), if !options.once => {
                    let mut queued = 0;
                    for path in discovery.take_rescan_requests()? {
                        queued += discovery.rescan_request(path.as_deref())?;
                    }
                    if queued > 0 {
                        wake();
                    }
                }
                _ = rescan.tick(), if !options.once => {
                    for idx in 0..discovery.libraries().len() {
                        discovery.reconcile(idx, Priority::New)?;
                    }
                    wake();
                }
            }
        }
    }
    .await;

    // Shutdown: watchers first, then the worker (it finishes or releases its batch).
    drop(watchers);
    shared.stop.store(true, Ordering::SeqCst);
    wake();
    let stats = match outcome {
        Ok(Some(stats)) => {
            let _ = worker.join();
            stats
        }
        Ok(None) => {
            // Blocking here is fine: this thread only drives this loop; signals run elsewhere.
            let result = worker.join();
            match (result, done_rx.try_recv()) {
                (Ok(()), Ok(Ok(stats))) => stats,
                (Ok(()), Ok(Err(e))) => return Err(e),
                _ => return Err(DaemonError::WorkerCrashed),
            }
        }
        Err(e) => {
            let _ = worker.join();
            return Err(e);
        }
    };
    Ok((discovery.totals(), stats))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM/SIGINT: the first asks for a clean stop, a second exits at once.
fn listen_for_signals(shared: Arc<Shared>, notify: Arc<Notify>) -> Result<(), DaemonError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let start = |kind| {
            signal(kind).map_err(|source| DaemonError::Start {
                what: "the signal handlers",
                source,
            })
        };
        let mut term = start(SignalKind::terminate())?;
        let mut int = start(SignalKind::interrupt())?;
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                count += 1;
                if count == 1 {
                    tracing::info!(
                        signal = name,
                        "stopping: finishing or handing back the current batch"
                    );
                    shared.stop.store(true, Ordering::SeqCst);
                    notify.notify_one();
                } else {
                    tracing::warn!(
                        signal = name,
                        "second signal: exiting now; running jobs resume at the next start"
                    );
                    std::process::exit(1);
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.stop.store(true, Ordering::SeqCst);
                notify.notify_one();
            }
        });
    }
    Ok(())
}

fn wanted_mode(discovery: &Discovery, idx: usize) -> WatchMode {
    if discovery.libraries()[idx].polled {
        WatchMode::Poll(POLL_INTERVAL)
    } else {
        WatchMode::Events
    }
}

/// Starts the watcher of library `idx` and forwards its events, tagged with `idx`. A watcher that
/// cannot start is logged; the periodic reconcile still covers the library.
fn start_watcher(
    discovery: &Discovery,
    idx: usize,
    events: &UnboundedSender<(usize, WatchEvent)>,
) -> Option<(LibraryWatcher, WatchMode)> {
    let lib = &discovery.libraries()[idx];
    let mode = wanted_mode(discovery, idx);
    match LibraryWatcher::start(lib.root(), lib.filter.clone(), mode) {
        Ok((watcher, mut rx)) => {
            tracing::debug!(library = %lib.root().display(), ?mode, watches = watcher.watch_count(), "watching");
            let tx = events.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if tx.send((idx, event)).is_err() {
                        break;
                    }
                }
            });
            Some((watcher, mode))
        }
        Err(e) => {
            tracing::error!(
                library = %lib.root().display(),
                "{}; only the periodic rescan will see changes there",
                error_chain(&e)
            );
            None
        }
    }
}

/// A root that came back may be on another kind of filesystem (a share mounted where a local
/// folder was): switch between events and polling if so.
fn restart_watcher_if_needed(
    discovery: &Discovery,
    idx: usize,
    watchers: &mut [Option<(LibraryWatcher, WatchMode)>],
    events: &UnboundedSender<(usize, WatchEvent)>,
) {
    let wanted = wanted_mode(discovery, idx);
    let current = watchers[idx].as_ref().map(|(_, m)| *m);
    if current != Some(wanted) {
        watchers[idx] = None;
        watchers[idx] = start_watcher(discovery, idx, events);
    }
}
