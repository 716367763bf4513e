//! Discovery wired to the catalog: walks and watch events in, photos recorded and jobs queued out.
//!
//! Inputs: the configured libraries, [`WatchEvent`]s from their watchers, the clock. Outputs: catalog
//! rows (libraries online/offline, photos present/gone/renamed, contents with their EXIF facts) and
//! pending jobs for the current profile.
//!
//! - [`Discovery::reconcile`]: a full walk of one root compared with what the catalog knows. Files
//!   with the size and mtime on record are only touched (in bulk); new or changed ones are read once
//!   (hash, EXIF, pixel size from the header) when their mtime is older than `settle`, else handed to
//!   the [`SettleTracker`]; catalog photos the walk did not see become gone, except under folders it
//!   could not read. A root that is missing, not a folder, or an *empty* folder while the catalog
//!   has photos there (an unmounted share's mount point) is offline: nothing is marked gone.
//! - [`Discovery::handle_change`]: one `Changed`/`Removed`/`Renamed` event. A removed or renamed
//!   folder applies to every photo under it; a rename keeps the photo's row and results.
//! - [`Discovery::process_due`]: files that have settled are read and queued.
//! - [`Discovery::rescan_request`]: a `captiond rescan [PATH]` taken from the catalog: the
//!   reconcile above for every library, or for one folder or file.
//!
//! Writes are batched: files are read and hashed (in parallel) outside any transaction, then each
//! chunk is recorded and queued in one short transaction, so the worker is never kept waiting long.
//!
//! Photos that turn up at a new path with content the catalog already knew are collected as
//! [`Relocated`] (taken with [`Discovery::take_relocated`]; the daemon hands them to the worker,
//! which brings their sidecars along): a file renamed or moved (an inotify rename pair or a
//! polled inode match, with its old path), and a path recorded with known content (a copy, or a
//! move the walk or an unpaired rename found; the old path is another catalog photo with that
//! content whose file is missing). Only in libraries with sidecars or embedding on, and only
//! where a path changes, so an unchanged rescan costs nothing more. A renamed *folder* adds none:
//! its sidecars moved with it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::{DaemonError, Shared};
use crate::catalog::{Catalog, CatalogError, MediaFacts, NewPhoto, PhotoState, Priority};
use crate::config::{Library, Settings};
use crate::library::{
    filesystem_kind, should_poll, walk, FileFacts, FsKind, PathFilter, ScanError, SettleTracker,
    WalkItem, WatchEvent,
};
use crate::media::kind::FileClass;
use crate::media::probe::{probe_file, Probe};

/// Most files recorded in one write transaction. Each commit costs a few ms (WAL checkpoints), so
/// big transactions are what makes the initial catalog fast (~2× over 512-file ones).
const CHUNK: usize = 4096;
/// ... but files read for longer than this are recorded at once, so large files (RAW) reach the
/// queue promptly.
const MAX_GATHER: Duration = Duration::from_millis(500);
/// Files read and hashed in parallel at a time.
const READ_AT_ONCE: usize = 256;
/// Paths per `touch_photos` / `mark_gone` transaction.
const BULK: usize = 20_000;

/// One configured library as discovery tracks it.
#[derive(Debug)]
pub struct LibraryState {
    pub config: Library,
    pub id: i64,
    pub filter: PathFilter,
    /// As last written to the catalog (`None`: not yet decided this run).
    online: Option<bool>,
    /// Watched by polling (network or FUSE filesystem, or `poll = true`).
    pub polled: bool,
    /// The watcher reported `RootGone` and not yet `RootBack`: offline even if a folder is there
    /// (the watcher also notices a mount point that lost its mount).
    held_offline: bool,
}

impl LibraryState {
    pub fn root(&self) -> &Path {
        &self.config.path
    }

    pub fn is_online(&self) -> bool {
        self.online == Some(true)
    }
}

/// What one reconcile found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Candidate photo files the walk saw.
    pub files: usize,
    /// Same size and mtime as on record: touched only.
    pub unchanged: usize,
    /// Read, hashed and recorded.
    pub recorded: usize,
    /// New jobs queued.
    pub queued: usize,
    /// Too fresh: waiting in the settle tracker.
    pub settling: usize,
    /// Catalog photos not found any more, now gone.
    pub gone: usize,
    /// Files or folders that could not be read (logged with their path).
    pub unreadable: usize,
    pub elapsed: Duration,
}

/// Running totals over the whole run (for the `--once` summary).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Jobs queued.
    pub queued: u64,
    /// Photos seen that needed no captioning (unchanged, or their content already had a job).
    pub skipped: u64,
    /// Files that could not be read.
    pub unreadable: u64,
}

/// A photo found at a new path with content the catalog already knew: its sidecar should follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocated {
    /// Where the photo is now.
    pub path: PathBuf,
    /// Where it was, when it moved (no file is there any more); `None` for a copy.
    pub from: Option<PathBuf>,
}

/// What reading one settled file gave.
enum Examined {
    Photo(NewPhoto),
    /// Changed while being read: back to the settle tracker.
    Changing(FileFacts),
    Vanished,
    NotImage,
    Unreadable,
}

/// Discovery state for all libraries, with its own catalog connection.
pub struct Discovery {
    catalog: Catalog,
    profile: String,
    settle: Duration,
    libraries: Vec<LibraryState>,
    tracker: SettleTracker,
    shared: Arc<Shared>,
    totals: Totals,
    /// Photos at new paths since the last [`take_relocated`](Self::take_relocated).
    relocated: Vec<Relocated>,
}

impl Discovery {
    /// Registers every configured library in the catalog and marks libraries the config no longer
    /// names offline (their photos are kept, their jobs wait). Long walks end early once
    /// `shared.stop` is set.
    pub fn new(
        catalog: Catalog,
        settings: &Settings,
        profile: String,
        shared: Arc<Shared>,
    ) -> Result<Discovery, DaemonError> {
        let mut libraries = Vec::with_capacity(settings.libraries.len());
        for lib in &settings.libraries {
            let id = catalog.upsert_library(&lib.path)?;
            let filter =
                PathFilter::new(&lib.path, &lib.exclude).map_err(|source| DaemonError::Filter {
                    root: lib.path.clone(),
                    source,
                })?;
            libraries.push(LibraryState {
                config: lib.clone(),
                id,
                filter,
                online: None,
                polled: false,
                held_offline: false,
            });
        }
        let configured: HashSet<i64> = libraries.iter().map(|l| l.id).collect();
        for row in catalog.libraries()? {
            if row.online && !configured.contains(&row.id) {
                tracing::info!(
                    library = %row.root.display(),
                    "library is no longer configured: offline (its photos are kept)"
                );
                catalog.set_library_state(row.id, false, row.polled)?;
            }
        }
        Ok(Discovery {
            catalog,
            profile,
            settle: settings.daemon.settle,
            libraries,
            tracker: SettleTracker::new(settings.daemon.settle),
            shared,
            totals: Totals::default(),
            relocated: Vec::new(),
        })
    }

    pub fn libraries(&self) -> &[LibraryState] {
        &self.libraries
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The photos found at a new path with known content since the last call (see the module
    /// docs), in the order found.
    pub fn take_relocated(&mut self) -> Vec<Relocated> {
        std::mem::take(&mut self.relocated)
    }

    /// When the next settling file may be due (`None`: none waiting).
    pub fn next_due(&self) -> Option<Instant> {
        self.tracker.next_due()
    }

    /// Whether files are still waiting to settle.
    pub fn settling(&self) -> usize {
        self.tracker.len()
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Whether library `idx` writes sidecars or embeds XMP: only then do its photos' new paths
    /// become [`Relocated`].
    fn writes_sidecars(&self, idx: usize) -> bool {
        let config = &self.libraries[idx].config;
        config.sidecars || config.embed
    }

    /// The library whose root holds `path` (the deepest one).
    fn library_of(&self, path: &Path) -> Option<usize> {
        self.libraries
            .iter()
            .enumerate()
            .filter(|(_, l)| path.starts_with(l.root()))
            .max_by_key(|(_, l)| l.root().components().count())
            .map(|(i, _)| i)
    }

    /// Looks at the root and records online/offline (and events vs polling) in the catalog when
    /// that changed. Returns whether it is online.
    pub fn check_root(&mut self, idx: usize) -> Result<bool, CatalogError> {
        let root = self.libraries[idx].root().to_path_buf();
        let mut online = !self.libraries[idx].held_offline && is_dir(&root);
        if online && dir_is_empty(&root) {
            // An unmounted share leaves its empty mount point behind: if the catalog has photos
            // there, do not take the emptiness at face value.
            let id = self.libraries[idx].id;
            let known = self
                .catalog
                .libraries()?
                .iter()
                .find(|l| l.id == id)
                .map_or(0, |l| l.present);
            if known > 0 {
                if self.libraries[idx].online != Some(false) {
                    tracing::warn!(
                        library = %root.display(),
                        photos = known,
                        "library root is an empty folder but the catalog has photos there \
                         (an unmounted share?): offline, nothing is marked deleted"
                    );
                }
                online = false;
            }
        }
        let lib = &mut self.libraries[idx];
        let polled = if online {
            should_poll(
                filesystem_kind(&root).unwrap_or(FsKind::Local),
                lib.config.poll,
            )
        } else {
            lib.polled
        };
        if lib.online != Some(online) || lib.polled != polled {
            self.catalog.set_library_state(lib.id, online, polled)?;
            if online {
                tracing::info!(
                    library = %root.display(),
                    watch = if polled { "polling" } else { "events" },
                    "library online"
                );
            } else if lib.online != Some(false) {
                tracing::warn!(
                    library = %root.display(),
                    "library offline (root missing or not a folder): nothing under it is marked \
                     deleted; waiting for it to come back"
                );
            }
        }
        lib.online = Some(online);
        lib.polled = polled;
        if !online {
            self.tracker.forget_under(&root);
        }
        Ok(online)
    }

    /// The watcher saw the root disappear (or its share unmounted).
    pub fn root_gone(&mut self, idx: usize) -> Result<(), CatalogError> {
        self.libraries[idx].held_offline = true;
        self.check_root(idx).map(drop)
    }

    /// The watcher saw the root come back: online again and reconciled.
    pub fn root_back(&mut self, idx: usize) -> Result<ReconcileStats, CatalogError> {
        self.libraries[idx].held_offline = false;
        self.reconcile(idx, Priority::New)
    }

    /// Walks one library and brings the catalog in line with it; see the module docs.
    pub fn reconcile(
        &mut self,
        idx: usize,
        priority: Priority,
    ) -> Result<ReconcileStats, CatalogError> {
        self.reconcile_scope(idx, None, priority)
    }

    /// `captiond rescan [PATH]` (taken from the catalog's `rescan_requests`): every library, or the
    /// folder or file `path` inside one. Returns how many jobs were queued.
    pub fn rescan_request(&mut self, path: Option<&Path>) -> Result<usize, CatalogError> {
        let mut queued = 0;
        match path {
            None => {
                tracing::info!("rescan of every library requested");
                for idx in 0..self.libraries.len() {
                    queued += self.reconcile(idx, Priority::New)?.queued;
                }
            }
            Some(p) => match self.library_of(p) {
                Some(idx) => {
                    tracing::info!(path = %p.display(), "rescan requested");
                    queued += self.reconcile_scope(idx, Some(p), Priority::New)?.queued;
                }
                None => tracing::warn!(
                    path = %p.display(),
                    "rescan requested for a path outside every configured library; ignored"
                ),
            },
        }
        Ok(queued)
    }

    /// Takes the waiting `captiond rescan` requests from the catalog: `None` asks for every
    /// library, a path for one folder or file.
    pub fn take_rescan_requests(&self) -> Result<Vec<Option<PathBuf>>, CatalogError> {
        Ok(self
            .catalog
            .take_rescan_requests()?
            .into_iter()
            .map(|r| r.path)
            .collect())
    }

    /// [`reconcile`](Self::reconcile) limited to `scope` (a folder or file under the root; `None`:
    /// the whole library).
    fn reconcile_scope(
        &mut self,
        idx: usize,
        scope: Option<&Path>,
        priority: Priority,
    ) -> Result<ReconcileStats, CatalogError> {
        let started = Instant::now();
        let mut stats = ReconcileStats::default();
        if !self.check_root(idx)? {
            return Ok(stats);
        }
        let (root, lib_id) = {
            let l = &self.libraries[idx];
            (l.root().to_path_buf(), l.id)
        };
        let scope = scope.unwrap_or(&root).to_path_buf();
        let whole = scope == root;
        let _span = tracing::info_span!("reconcile", path = %scope.display()).entered();
        let mut known = self.catalog.photo_stats_under(lib_id)?;
        if !whole {
            known.retain(|p, _| p.starts_with(&scope));
        }
        let mut unreadable_dirs: Vec<PathBuf> = Vec::new();
        let mut touch: Vec<PathBuf> = Vec::new();
        let mut fresh: Vec<FileFacts> = Vec::new();
        let now_sys = SystemTime::now();
        let now = Instant::now();
        let filter = self.libraries[idx].filter.clone();
        // A scope that no longer exists has nothing to walk: what the catalog has there is gone
        // (each checked below).
        let exists = whole || fs::symlink_metadata(&scope).is_ok();
        for item in walk(&scope, &filter).take_while(|_| exists) {
            if self.stopped() {
                return Ok(stats);
            }
            match item {
                Ok(WalkItem::Dir(_)) => {}
                Ok(WalkItem::File(f)) => {
                    stats.files += 1;
                    match known.remove(&f.path) {
                        Some((size, mtime, PhotoState::Present))
                            if size == f.size && mtime == f.mtime_ns =>
                        {
                            touch.push(f.path);
                        }
                        _ if settled_by_mtime(f.mtime_ns, now_sys, self.settle) => {
                            self.tracker.forget(&f.path);
                            fresh.push(f);
                        }
                        _ => {
                            self.tracker.observe_facts(&f, now);
                            stats.settling += 1;
                        }
                    }
                }
                Err(ScanError::ReadDir { path, source }) => {
                    tracing::warn!(folder = %path.display(), "cannot read folder {}: {source}; photos under it are kept as they are", path.display());
                    unreadable_dirs.push(path);
                    stats.unreadable += 1;
                }
                Err(ScanError::Walk { path, source }) => {
                    tracing::warn!(folder = %path.display(), "cannot walk {}: {source}; photos under it are kept as they are", path.display());
                    unreadable_dirs.push(path);
                    stats.unreadable += 1;
                }
                Err(ScanError::Read { path, source }) => {
                    tracing::warn!(path = %path.display(), "cannot read {}: {source}", path.display());
                    known.remove(&path);
                    stats.unreadable += 1;
                }
                Err(e @ ScanError::BadGlob { .. }) => {
                    tracing::warn!(library = %root.display(), "{e}");
                }
            }
        }
        stats.unchanged = touch.len();
        self.totals.skipped += touch.len() as u64;
        for chunk in touch.chunks(BULK) {
            self.catalog.touch_photos(chunk)?;
        }
        self.process_files(idx, fresh, priority, &mut stats)?;
        if self.stopped() {
            return Ok(stats);
        }
        // Whatever the walk did not see is gone (deleted, or now excluded), except under folders
        // it could not read, and only while the root is still there (a share unmounted mid-walk
        // looks empty). A file that exists and is still wanted (moved in mid-walk) is kept.
        if !is_dir(&root) {
            self.check_root(idx)?;
            return Ok(stats);
        }
        let gone: Vec<PathBuf> = known
            .into_iter()
            .filter(|(p, (_, _, state))| {
                *state == PhotoState::Present
                    && !unreadable_dirs.iter().any(|d| p.starts_with(d))
                    && match fs::symlink_metadata(p) {
                        Ok(_) => filter.classify(p) == FileClass::Ignored,
                        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                    }
            })
            .map(|(p, _)| p)
            .collect();
        for chunk in gone.chunks(BULK) {
            stats.gone += self.catalog.mark_gone(chunk)?;
        }
        if whole {
            self.catalog.mark_library_scanned(lib_id)?;
        }
        stats.elapsed = started.elapsed();
        tracing::info!(
            files = stats.files,
            unchanged = stats.unchanged,
            recorded = stats.recorded,
            queued = stats.queued,
            settling = stats.settling,
            gone = stats.gone,
            unreadable = stats.unreadable,
            ms = stats.elapsed.as_millis() as u64,
            "library scanned"
        );
        Ok(stats)
    }

    /// Reads, hashes and records settled files of library `idx`, queueing each whose path is new
    /// or holds new content. Files that changed meanwhile go back to the settle tracker.
    fn process_files(
        &mut self,
        idx: usize,
        files: Vec<FileFacts>,
        priority: Priority,
        stats: &mut ReconcileStats,
    ) -> Result<(), CatalogError> {
        let lib_id = self.libraries[idx].id;
        let follow = self.writes_sidecars(idx);
        let mut gathered: Vec<Examined> = Vec::new();
        let mut since = Instant::now();
        for part in files.chunks(READ_AT_ONCE) {
            if self.stopped() {
                break;
            }
            gathered.extend(part.par_iter().map(examine).collect::<Vec<_>>());
            if gathered.len() >= CHUNK || since.elapsed() >= MAX_GATHER {
                self.record(
                    lib_id,
                    follow,
                    std::mem::take(&mut gathered),
                    priority,
                    stats,
                )?;
                since = Instant::now();
            }
        }
        if !gathered.is_empty() {
            self.record(lib_id, follow, gathered, priority, stats)?;
        }
        Ok(())
    }

    /// Records examined files in one transaction (no file is read while it is open).
    /// With `follow`, photos at new paths with known content become [`Relocated`].
    fn record(
        &mut self,
        lib_id: i64,
        follow: bool,
        examined: Vec<Examined>,
        priority: Priority,
        stats: &mut ReconcileStats,
    ) -> Result<(), CatalogError> {
        let now = Instant::now();
        // Paths that took content the catalog already had: (path, content).
        let mut known_content: Vec<(PathBuf, String)> = Vec::new();
        let mut batch = self.catalog.batch()?;
        for item in examined {
            match item {
                Examined::Photo(p) => {
                    let outcome = batch
                        .record_photo(lib_id, &p.path, p.size, p.mtime_ns, &p.hash, &p.media)?;
                    stats.recorded += 1;
                    if follow && outcome.changed && !outcome.content_is_new {
                        known_content.push((p.path.clone(), outcome.hash.clone()));
                    }
                    // `outcome.hash`, not `p.hash`: a file we embedded XMP into is the content
                    // it was embedded into.
                    let queued =
                        outcome.changed && batch.enqueue(&outcome.hash, &self.profile, priority)?;
                    if queued {
                        stats.queued += 1;
                        self.totals.queued += 1;
                        tracing::debug!(path = %p.path.display(), hash = %outcome.hash, "queued");
                    } else {
                        self.totals.skipped += 1;
                    }
                }
                Examined::Changing(f) => {
                    self.tracker.observe_facts(&f, now);
                    stats.settling += 1;
                }
                Examined::Unreadable => {
                    stats.unreadable += 1;
                    self.totals.unreadable += 1;
                }
                Examined::Vanished | Examined::NotImage => {}
            }
        }
        batch.commit()?;
        for (path, hash) in known_content {
            let from = self.missing_twin(&path, &hash)?;
            self.relocated.push(Relocated { path, from });
        }
        Ok(())
    }

    /// Where the photo now at `path` (content `hash`) was moved from: another catalog photo with
    /// that content whose file is missing. A present one first (a walk sees the new path before
    /// it marks the old one gone), else the most recently seen gone one (a move into a folder
    /// made a moment before, which inotify reports as a removal and a new file).
    fn missing_twin(&self, path: &Path, hash: &str) -> Result<Option<PathBuf>, CatalogError> {
        Ok(self
            .catalog
            .paths_for_hash(hash)?
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| {
                p != path
                    && fs::symlink_metadata(p)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            }))
    }

    /// Reads and queues the files that have settled. Returns how many jobs were queued.
    pub fn process_due(&mut self) -> Result<usize, CatalogError> {
        let due = self.tracker.due(Instant::now());
        if due.is_empty() {
            return Ok(0);
        }
        let mut by_lib: HashMap<usize, Vec<FileFacts>> = HashMap::new();
        for f in due {
            let Some(idx) = self.library_of(&f.path) else {
                continue;
            };
            if !self.libraries[idx].is_online() {
                continue;
            }
            // Already recorded as it is now (e.g. seen by the walk and by an event).
            if let Some(row) = self.catalog.photo_by_path(&f.path)? {
                if row.state == PhotoState::Present
                    && row.size == f.size
                    && row.mtime_ns == f.mtime_ns
                {
                    continue;
                }
            }
            by_lib.entry(idx).or_default().push(f);
        }
        let mut stats = ReconcileStats::default();
        for (idx, files) in by_lib {
            self.process_files(idx, files, Priority::New, &mut stats)?;
        }
        Ok(stats.queued)
    }

    /// A `Changed`, `Removed` or `Renamed` event of library `idx` (others are ignored here: the
    /// daemon turns `Rescan`/`RootGone`/`RootBack` into [`reconcile`](Self::reconcile),
    /// [`root_gone`](Self::root_gone), [`root_back`](Self::root_back)).
    pub fn handle_change(&mut self, idx: usize, event: WatchEvent) -> Result<(), CatalogError> {
        if !self.libraries[idx].is_online() {
            return Ok(());
        }
        match event {
            WatchEvent::Changed(path) => {
                self.observe(&path);
                Ok(())
            }
            WatchEvent::Removed(path) => self.removed(idx, &path),
            WatchEvent::Renamed { from, to } => self.renamed(idx, &from, &to),
            WatchEvent::Rescan | WatchEvent::RootGone | WatchEvent::RootBack => Ok(()),
        }
    }

    /// Starts (or keeps) the settle timer of a file that changed.
    fn observe(&mut self, path: &Path) {
        if let Ok(md) = fs::metadata(path) {
            if md.is_file() {
                let facts = FileFacts::from_metadata(path.to_path_buf(), &md);
                self.tracker.observe_facts(&facts, Instant::now());
            }
        }
    }

    /// Present catalog photos strictly under the folder `dir`.
    fn present_under(&self, lib_id: i64, dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
        let mut paths: Vec<PathBuf> = self
            .catalog
            .photo_stats_under(lib_id)?
            .into_iter()
            .filter(|(p, (_, _, state))| {
                *state == PhotoState::Present && p.starts_with(dir) && p != dir
            })
            .map(|(p, _)| p)
            .collect();
        paths.sort();
        Ok(paths)
    }

    fn removed(&mut self, idx: usize, path: &Path) -> Result<(), CatalogError> {
        self.tracker.forget(path);
        self.tracker.forget_under(path);
        if fs::symlink_metadata(path).is_ok() {
            // Already back (e.g. replaced): treat as a change.
            self.observe(path);
            return Ok(());
        }
        if !is_dir(self.libraries[idx].root()) {
            return self.check_root(idx).map(drop);
        }
        if self.catalog.mark_gone(&[path.to_path_buf()])? > 0 {
            tracing::info!(path = %path.display(), "photo removed");
            return Ok(());
        }
        // A folder: everything under it.
        let under = self.present_under(self.libraries[idx].id, path)?;
        if !under.is_empty() {
            let n = self.catalog.mark_gone(&under)?;
            tracing::info!(folder = %path.display(), photos = n, "folder removed");
        }
        Ok(())
    }

    fn renamed(&mut self, idx: usize, from: &Path, to: &Path) -> Result<(), CatalogError> {
        let was_settling = self.tracker.forget(from);
        self.tracker.forget_under(from);
        if self.catalog.rename_photo(from, to)? {
            tracing::info!(from = %from.display(), to = %to.display(), "photo renamed");
            if was_settling {
                self.observe(to);
            }
            if self.library_of(to).is_some_and(|i| self.writes_sidecars(i)) {
                self.relocated.push(Relocated {
                    path: to.to_path_buf(),
                    from: Some(from.to_path_buf()),
                });
            }
            return Ok(());
        }
        let Ok(md) = fs::metadata(to) else {
            return Ok(());
        };
        if !md.is_dir() {
            // Not catalogued yet (e.g. a download renamed into place): a new file.
            self.observe(to);
            return Ok(());
        }
        // A folder: its photos' sidecars moved with it, nothing to relocate.
        let under = self.present_under(self.libraries[idx].id, from)?;
        for old in &under {
            if let Ok(rel) = old.strip_prefix(from) {
                self.catalog.rename_photo(old, &to.join(rel))?;
            }
        }
        if !under.is_empty() {
            tracing::info!(from = %from.display(), to = %to.display(), photos = under.len(), "folder renamed");
        }
        // Files in the moved folder that the catalog did not have (or had otherwise) settle as new.
        let Some(to_idx) = self.library_of(to) else {
            return Ok(());
        };
        let filter = self.libraries[to_idx].filter.clone();
        let now = Instant::now();
        for item in walk(to, &filter) {
            if let Ok(WalkItem::File(f)) = item {
                let same = self.catalog.photo_by_path(&f.path)?.is_some_and(|row| {
                    row.state == PhotoState::Present
                        && row.size == f.size
                        && row.mtime_ns == f.mtime_ns
                });
                if !same {
                    self.tracker.observe_facts(&f, now);
                }
            }
        }
        Ok(())
    }
}

fn is_dir(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_dir())
}

fn dir_is_empty(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// Whether a file last modified at `mtime_ns` has been still for `settle` already.
fn settled_by_mtime(mtime_ns: i64, now: SystemTime, settle: Duration) -> bool {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let settle_ns = i64::try_from(settle.as_nanos()).unwrap_or(i64::MAX);
    now_ns.saturating_sub(mtime_ns) >= settle_ns
}

/// Reads a settled file once (streamed: see `media::probe`): checks it did not change meanwhile,
/// then lets `media::probe` say
/// whether it is a photo we can caption (by content where its name does not say so) and what the
/// catalog records of it (hash, header size, EXIF), with no pixel decode.
fn examine(facts: &FileFacts) -> Examined {
    let path = &facts.path;
    let unreadable = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Examined::Vanished
        } else {
            tracing::warn!(path = %path.display(), "cannot read {}: {e}", path.display());
            Examined::Unreadable
        }
    };
    let probed = match probe_file(path) {
        Ok(p) => p,
        Err(e) => return unreadable(e),
    };
    match FileFacts::stat(path) {
        Ok(now)
            if now.size == facts.size
                && now.mtime_ns == facts.mtime_ns
                && (now.size == probed.bytes_read || probed.probe == Probe::NotImage) => {}
        Ok(now) => return Examined::Changing(now),
        Err(e) => return unreadable(e),
    }
    match probed.probe {
        Probe::NotImage => Examined::NotImage,
        Probe::NoDecoder(kind) => {
            // Camera JPEGs beside RAW files are captioned as usual.
            tracing::debug!(path = %path.display(), ?kind, "not captioned: no decoder for this format yet");
            Examined::NotImage
        }
        Probe::Photo(p) => {
            let (width, height) = p.size.unzip();
            Examined::Photo(NewPhoto {
                path: path.clone(),
                size: facts.size,
                mtime_ns: facts.mtime_ns,
                hash: p.hash,
                media: MediaFacts {
                    width,
                    height,
                    orientation: p.exif.orientation,
                    taken_at: p.exif.date_taken,
                    camera_make: p.exif.camera_make,
                    camera_model: p.exif.camera_model,
                    gps: p.exif.gps,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_settle_rule() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let s = Duration::from_secs(2);
        assert!(settled_by_mtime(997_000_000_000, now, s));
        assert!(settled_by_mtime(998_000_000_000, now, s));
        assert!(!settled_by_mtime(999_000_000_000, now, s));
        // A future mtime (clock skew) goes through the tracker.
        assert!(!settled_by_mtime(2_000_000_000_000, now, s));
    }

    #[test]
    fn examine_reads_header_size_and_ignores_non_images_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.png");
        image::RgbImage::new(7, 5).save(&png).unwrap();
        let facts = FileFacts::stat(&png).unwrap();
        let Examined::Photo(p) = examine(&facts) else {
            panic!("not a photo")
        };
        assert_eq!((p.media.width, p.media.height), (Some(7), Some(5)));
        assert_eq!(
            p.hash,
            blake3::hash(&fs::read(&png).unwrap()).to_hex().to_string()
        );
        // Unknown extension and no image magic: ignored. Known extension: kept (fails later).
        let text = dir.path().join("notes.dat");
        fs::write(&text, b"hello").unwrap();
        assert!(matches!(
            examine(&FileFacts::stat(&text).unwrap()),
            Examined::NotImage
        ));
        let empty = dir.path().join("empty.jpg");
        fs::write(&empty, b"").unwrap();
        let Examined::Photo(p) = examine(&FileFacts::stat(&empty).unwrap()) else {
            panic!("a zero-byte .jpg is recorded so its failure is visible")
        };
        assert_eq!(p.media.width, None);
        // Stale facts: the file changed since it settled.
        let mut stale = FileFacts::stat(&png).unwrap();
        stale.size += 1;
        assert!(matches!(examine(&stale), Examined::Changing(_)));
    }
}
