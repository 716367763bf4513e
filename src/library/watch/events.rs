//! Events mode: one non-recursive inotify watch per accepted folder (one recursive watch on other
//! platforms), notify's events gathered into batches and turned into [`WatchEvent`]s; a kernel
//! watch limit falls back to polling.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};

use super::{Backend, Msg, WatchError, WatchEvent, Worker};
use crate::media::kind::FileClass;

/// The kernel refused another watch.
pub(super) struct LimitHit(PathBuf);

/// Output of one batch: events in order, with per-batch de-duplication.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) events: Vec<WatchEvent>,
    changed: HashSet<PathBuf>,
    removed: HashSet<PathBuf>,
}

impl Outbox {
    pub(super) fn changed(&mut self, path: PathBuf) {
        self.removed.remove(&path);
        if self.changed.insert(path.clone()) {
            self.events.push(WatchEvent::Changed(path));
        }
    }

    pub(super) fn removed(&mut self, path: PathBuf) {
        self.changed.remove(&path);
        if self.removed.insert(path.clone()) {
            self.events.push(WatchEvent::Removed(path));
        }
    }

    pub(super) fn renamed(&mut self, from: PathBuf, to: PathBuf) {
        self.changed.remove(&from);
        self.changed.remove(&to);
        self.removed.remove(&to);
        self.events.push(WatchEvent::Renamed { from, to });
    }
}

#[cfg(target_os = "linux")]
const PER_FOLDER_WATCHES: bool = true;
#[cfg(not(target_os = "linux"))]
const PER_FOLDER_WATCHES: bool = false;

impl Worker {
    pub(super) fn arm_events(&mut self) -> Result<(), WatchError> {
        self.generation += 1;
        let generation = self.generation;
        let control = self.control.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let _ = control.send(Msg::Notify { generation, event });
        })
        .map_err(|source| {
            let instances = matches!(&source.kind, notify::ErrorKind::Io(e) if e.raw_os_error() == Some(libc::EMFILE));
            if instances {
                tracing::error!(
                    limit = %read_limit("max_user_instances"),
                    "too many inotify instances (see /proc/sys/fs/inotify/max_user_instances)"
                );
            }
            WatchError::Notify {
                root: self.root.clone(),
                source,
            }
        })?;
        self.backend = Backend::Events {
            watcher: Some(watcher),
            watched: HashSet::new(),
        };
        let mut out = Outbox::default();
        let root = self.root.clone();
        self.add_tree(&root, false, &mut out)
            .map_err(|LimitHit(path)| WatchError::WatchLimit {
                path,
                limit: read_limit("max_user_watches"),
            })
    }

    pub(super) fn fall_back_to_polling(&mut self, err: WatchError, report: bool) {
        let interval = self.tuning.fallback_poll;
        tracing::error!(
            root = %self.root.display(),
            "{err}; polling this library every {}s instead",
            interval.as_secs()
        );
        if let Ok(mut g) = self.shared.fallback.lock() {
            *g = Some(err.to_string());
        }
        // Dropping the notify watcher releases its watches for other programs.
        self.backend = Backend::Poll {
            interval,
            snapshot: None,
            next: Instant::now(),
        };
        self.generation += 1;
        self.shared.watches.store(0, Ordering::Relaxed);
        self.shared.polling.store(true, Ordering::Relaxed);
        self.batch.clear();
        self.batch_started = None;
        self.arm(false);
        if report {
            self.send(WatchEvent::Rescan);
        }
    }

    /// Watches `dir` and every accepted folder under it (watch first, then list, so nothing
    /// lands unseen); with `report`, sends `Changed` for the files found.
    pub(super) fn add_tree(
        &mut self,
        dir: &Path,
        report: bool,
        out: &mut Outbox,
    ) -> Result<(), LimitHit> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if !self.add_watch(&d)? {
                continue;
            }
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(folder = %d.display(), error = %e, "cannot read folder");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let path = entry.path();
                if ft.is_dir() {
                    if self.filter.accepts_dir(&path) {
                        stack.push(path);
                    }
                } else if report
                    && (ft.is_file() || (ft.is_symlink() && path.is_file()))
                    && self.filter.classify(&path) != FileClass::Ignored
                {
                    out.changed(path);
                }
            }
        }
        Ok(())
    }

    /// Returns whether the folder is (newly or already) watched, so worth listing.
    pub(super) fn add_watch(&mut self, dir: &Path) -> Result<bool, LimitHit> {
        let Backend::Events { watcher, watched } = &mut self.backend else {
            return Ok(false);
        };
        let Some(watcher) = watcher else {
            return Ok(false);
        };
        if watched.contains(dir) {
            return Ok(true);
        }
        if !PER_FOLDER_WATCHES && dir != self.root {
            return Ok(true); // the root's recursive watch covers it
        }
        if self.tuning.watch_limit.is_some_and(|l| watched.len() >= l) {
            return Err(LimitHit(dir.to_path_buf()));
        }
        let mode = if PER_FOLDER_WATCHES {
            RecursiveMode::NonRecursive
        } else {
            RecursiveMode::Recursive
        };
        match watcher.watch(dir, mode) {
            Ok(()) => {
                watched.insert(dir.to_path_buf());
                self.shared.watches.store(watched.len(), Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => match &e.kind {
                notify::ErrorKind::MaxFilesWatch => Err(LimitHit(dir.to_path_buf())),
                notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                    Err(LimitHit(dir.to_path_buf()))
                }
                notify::ErrorKind::PathNotFound => Ok(false),
                notify::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => Ok(false),
                _ => {
                    tracing::warn!(folder = %dir.display(), error = %e, "cannot watch folder; the periodic rescan will cover it");
                    Ok(false)
                }
            },
        }
    }

    /// Forgets the watches of `dir` and everything under it (notify already dropped its own on
    /// the DELETE/MOVED_FROM). Returns whether `dir` was a watched folder.
    pub(super) fn forget_tree(&mut self, dir: &Path) -> bool {
        let Backend::Events { watched, .. } = &mut self.backend else {
            return false;
        };
        let was = watched.contains(dir);
        if was {
            watched.retain(|p| !p.starts_with(dir));
            self.shared.watches.store(watched.len(), Ordering::Relaxed);
        }
        was
    }

    pub(super) fn is_watched(&self, dir: &Path) -> bool {
        matches!(&self.backend, Backend::Events { watched, .. } if watched.contains(dir))
    }

    pub(super) fn take(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    let path = e
                        .paths
                        .first()
                        .cloned()
                        .unwrap_or_else(|| self.root.clone());
                    let err = WatchError::WatchLimit {
                        path,
                        limit: read_limit("max_user_watches"),
                    };
                    self.fall_back_to_polling(err, true);
                    return;
                }
                tracing::warn!(root = %self.root.display(), error = %e, "watcher error; rescanning");
                notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan)
            }
        };
        if matches!(event.kind, EventKind::Access(AccessKind::Open(_))) {
            return; // our own hashing and decoding open files
        }
        if matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        ) {
            self.batch_holds_removal = true;
        }
        self.batch_started.get_or_insert_with(Instant::now);
        self.batch.push(event);
    }

    pub(super) fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_started = None;
        self.batch_holds_removal = false;
        if !self.check_root() {
            return; // offline: RootGone was sent, the batch is moot
        }
        let mut out = Outbox::default();
        let mut moved_from: Vec<(usize, PathBuf)> = Vec::new();
        let mut rescan = false;
        for event in batch {
            if event.need_rescan() {
                rescan = true;
                continue;
            }
            let first = event.paths.first().cloned();
            match event.kind {
                EventKind::Create(CreateKind::Folder) => {
                    for p in event.paths {
                        if let Err(limit) = self.dir_appeared(&p, &mut out) {
                            return self.limit_hit(limit);
                        }
                    }
                }
                EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Data(_))
                | EventKind::Modify(ModifyKind::Metadata(_))
                | EventKind::Modify(ModifyKind::Any)
                | EventKind::Modify(ModifyKind::Other)
                | EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    for p in event.paths {
                        self.file_changed(p, &mut out);
                    }
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    // Without a tracker it is a watched folder's own MOVE_SELF, which its
                    // parent reports too (or, for the root, the root check handles).
                    if let (Some(t), Some(p)) = (event.attrs.tracker(), first) {
                        moved_from.push((t, p));
                    }
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    let paired = event
                        .attrs
                        .tracker()
                        .is_some_and(|t| moved_from.iter().any(|(m, _)| *m == t));
                    if let (false, Some(p)) = (paired, first) {
                        if let Err(limit) = self.moved_in(p, &mut out) {
                            return self.limit_hit(limit);
                        }
                    }
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    if let Some(t) = event.attrs.tracker() {
                        moved_from.retain(|(m, _)| *m != t);
                    }
                    if let [from, to] = &event.paths[..] {
                        if let Err(limit) = self.renamed(from.clone(), to.clone(), &mut out) {
                            return self.limit_hit(limit);
                        }
                    }
                }
                EventKind::Modify(ModifyKind::Name(_)) => {
                    // Unpaired renames (FSEvents): look at what is there now.
                    for p in event.paths {
                        if fs::symlink_metadata(&p).is_ok() {
                            if let Err(limit) = self.moved_in(p, &mut out) {
                                return self.limit_hit(limit);
                            }
                        } else {
                            self.removed(p, &mut out);
                        }
                    }
                }
                EventKind::Remove(_) => {
                    for p in event.paths {
                        self.removed(p, &mut out);
                    }
                }
                EventKind::Access(_) | EventKind::Other | EventKind::Any => {}
            }
        }
        for (_, p) in moved_from {
            self.removed(p, &mut out); // moved out of the library
        }
        if rescan {
            out.events.push(WatchEvent::Rescan);
        }
        for e in out.events {
            self.send(e);
        }
    }

    pub(super) fn limit_hit(&mut self, LimitHit(path): LimitHit) {
        let err = WatchError::WatchLimit {
            path,
            limit: read_limit("max_user_watches"),
        };
        self.fall_back_to_polling(err, true);
    }

    pub(super) fn file_changed(&mut self, path: PathBuf, out: &mut Outbox) {
        if path == self.root || self.is_watched(&path) {
            return; // a folder's own attributes
        }
        if self.filter.classify(&path) != FileClass::Ignored {
            out.changed(path);
        }
    }

    pub(super) fn dir_appeared(&mut self, path: &Path, out: &mut Outbox) -> Result<(), LimitHit> {
        if self.filter.accepts_dir(path) {
            self.add_tree(path, true, out)?;
        }
        Ok(())
    }

    pub(super) fn moved_in(&mut self, path: PathBuf, out: &mut Outbox) -> Result<(), LimitHit> {
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => self.dir_appeared(&path, out),
            Ok(_) => {
                self.file_changed(path, out);
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    pub(super) fn removed(&mut self, path: PathBuf, out: &mut Outbox) {
        if path == self.root {
            return; // the root check decides
        }
        if self.forget_tree(&path) || self.filter.classify(&path) != FileClass::Ignored {
            out.removed(path);
        }
    }

    pub(super) fn renamed(
        &mut self,
        from: PathBuf,
        to: PathBuf,
        out: &mut Outbox,
    ) -> Result<(), LimitHit> {
        let was_dir = self.forget_tree(&from);
        let is_dir = was_dir || fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
        if is_dir {
            let to_ok = self.filter.accepts_dir(&to);
            match (was_dir, to_ok) {
                (true, true) => {
                    self.add_tree(&to, false, out)?;
                    out.renamed(from, to);
                }
                (true, false) => out.removed(from),
                (false, true) => self.add_tree(&to, true, out)?,
                (false, false) => {}
            }
        } else {
            let from_ok = self.filter.classify(&from) != FileClass::Ignored;
            let to_ok = self.filter.classify(&to) != FileClass::Ignored;
            match (from_ok, to_ok) {
                (true, true) => out.renamed(from, to),
                (true, false) => out.removed(from),
                (false, true) => out.changed(to),
                (false, false) => {}
            }
        }
        Ok(())
    }
}

/// Reads `/proc/sys/fs/inotify/<name>` for messages.
pub(super) fn read_limit(name: &str) -> String {
    fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
