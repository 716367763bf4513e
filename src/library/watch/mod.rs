//! Watches one library root and reports what changed under it.
//!
//! Input: a root, its [`PathFilter`] and a [`WatchMode`]. Output: a stream of [`WatchEvent`]s on a
//! `tokio::sync::mpsc::UnboundedReceiver` (the daemon `select!`s over it; `try_recv` and
//! `blocking_recv` serve synchronous callers). The events say *where to look*, not what to do:
//! the daemon stats each `Changed` path into a [`SettleTracker`](super::SettleTracker) and
//! reconciles with a full [`walk`](super::walk) on `Rescan`/`RootBack`.
//!
//! **Events** (local disks): one *non-recursive* inotify watch per folder, placed by our own
//! walk, so hidden and excluded folders cost no watch and [`LibraryWatcher::watch_count`] is
//! exact. A new folder gets its watch and then is listed, so files that landed before the watch
//! are reported too. If the kernel's watch limit is hit (ENOSPC), the root falls back to polling
//! with an error that names `/proc/sys/fs/inotify/max_user_watches`. (Other platforms: one
//! recursive notify watch on the root, FSEvents on macOS.)
//!
//! **Poll** (network filesystems, whose remote changes never raise local events): a periodic
//! stat walk diffed against the previous one; a file that reappears elsewhere with the same
//! inode and size is a rename. Folders that cannot be read in one pass keep their old entries,
//! so a flaky share does not look emptied.
//!
//! **Root gone**: a root that disappears (folder deleted or moved, share unmounted) yields one
//! `RootGone`, never a `Removed` per file: removals are held briefly and dropped if the root
//! is found gone. The root's identity (filesystem type, and whether it is a mount point) is
//! checked every second, because an unmount raises no notify event and leaves the empty mount
//! point folder behind. When it is back, with the same identity, `RootBack`.
//!
//! Bursts are coalesced: events are gathered for 50 ms (500 ms when the batch holds a removal
//! or rename), repeated `Changed` for one path within a batch are sent once, and inotify's
//! MOVED_FROM/MOVED_TO pairs (notify's rename tracker) become one `Renamed`.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::RecommendedWatcher;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

mod events;
mod poll;
mod root;

use poll::Snapshot;
use root::{root_identity, RootIdentity};

use super::fs_kind::fs_type_id;
use super::scan::PathFilter;

/// How a root is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify (FSEvents on macOS): immediate, for local filesystems.
    Events,
    /// A stat walk every interval: for network filesystems (see `fs_kind::should_poll`).
    Poll(Duration),
}

/// What changed under a root. Paths are absolute (under the root as given to `start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A candidate file was created, written, touched or moved in from outside the library.
    /// Stat it and feed the settle tracker; it may already be gone, or still growing (more
    /// `Changed` follow). Its extension is an image one or unknown: an unknown one is a photo
    /// only if `sniff_image` says so.
    Changed(PathBuf),
    /// This path is gone. If it was a folder, everything under it is gone.
    Removed(PathBuf),
    /// A file, or a folder with everything under it, moved within the library.
    Renamed { from: PathBuf, to: PathBuf },
    /// Events may have been lost (kernel queue overflow, watcher error, switch to polling):
    /// reconcile the root with a full walk.
    Rescan,
    /// The root disappeared or its share was unmounted: the library is offline. Nothing under
    /// it is deleted; no more events until `RootBack`.
    RootGone,
    /// The root is back: reconcile it with a full walk (changes made while it was away are not
    /// reported one by one).
    RootBack,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "the inotify watch limit is reached (fs.inotify.max_user_watches = {limit}, see \
         /proc/sys/fs/inotify/max_user_watches) while watching {path}; raise it, e.g. \
         `sysctl fs.inotify.max_user_watches=524288`"
    )]
    WatchLimit { path: PathBuf, limit: String },
    #[error("cannot start a file watcher for {root}: {source}")]
    Notify {
        root: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the watcher thread for {root}: {source}")]
    Thread {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Timings; fixed in production, shortened by tests.
#[derive(Debug, Clone)]
struct Tuning {
    /// How long a batch of events is gathered before it is sent.
    coalesce: Duration,
    /// How long a batch holding a removal or rename is gathered (time for the root's own
    /// DELETE_SELF to arrive after an `rm -rf` of its files).
    removal_hold: Duration,
    /// How often the root's existence and identity are checked.
    root_check: Duration,
    /// Poll interval after falling back from events.
    fallback_poll: Duration,
    /// Pretend the kernel's watch limit is this (tests of the fallback).
    watch_limit: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            coalesce: Duration::from_millis(50),
            removal_hold: Duration::from_millis(500),
            root_check: Duration::from_secs(1),
            fallback_poll: Duration::from_secs(30),
            watch_limit: None,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    watches: AtomicUsize,
    polling: AtomicBool,
    fallback: Mutex<Option<String>>,
}

enum Msg {
    Notify {
        generation: u64,
        event: notify::Result<notify::Event>,
    },
    Stop,
}

/// Watches one library root from a thread of its own; dropping it stops the thread.
pub struct LibraryWatcher {
    root: PathBuf,
    shared: Arc<Shared>,
    control: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl LibraryWatcher {
    /// Starts watching `root`. In events mode every watch is in place when this returns, so a
    /// walk started afterwards misses nothing. A root that is missing at start is not an error:
    /// the first event is `RootGone`, and `RootBack` follows when it appears.
    pub fn start(
        root: &Path,
        filter: PathFilter,
        mode: WatchMode,
    ) -> Result<(Self, UnboundedReceiver<WatchEvent>), WatchError> {
        Self::start_tuned(root, filter, mode, Tuning::default())
    }

    fn start_tuned(
        root: &Path,
        filter: PathFilter,
        mode: WatchMode,
        tuning: Tuning,
    ) -> Result<(Self, UnboundedReceiver<WatchEvent>), WatchError> {
        let (out, events) = unbounded_channel();
        let (control, inbox) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let mut worker = Worker {
            root: root.to_path_buf(),
            filter,
            out,
            control: control.clone(),
            shared: shared.clone(),
            tuning,
            backend: Backend::Poll {
                interval: Duration::MAX,
                snapshot: None,
                next: Instant::now(),
            },
            online: false,
            identity: None,
            identity_warned: false,
            next_root_check: Instant::now(),
            batch: Vec::new(),
            batch_started: None,
            batch_holds_removal: false,
            generation: 0,
        };
        worker.begin(mode);
        let thread = std::thread::Builder::new()
            .name("captiond-watch".into())
            .spawn(move || worker.run(inbox))
            .map_err(|source| WatchError::Thread {
                root: root.to_path_buf(),
                source,
            })?;
        Ok((
            LibraryWatcher {
                root: root.to_path_buf(),
                shared,
                control,
                thread: Some(thread),
            },
            events,
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// inotify watches held for this root now (one per watched folder; 0 while polling or
    /// offline; 1 on platforms with a recursive watch).
    pub fn watch_count(&self) -> usize {
        self.shared.watches.load(Ordering::Relaxed)
    }

    /// Whether this root is polled (asked for, or fallen back to).
    pub fn is_polling(&self) -> bool {
        self.shared.polling.load(Ordering::Relaxed)
    }

    /// Why events mode was given up for polling, if it was (the watch limit, most often).
    pub fn fallback_reason(&self) -> Option<String> {
        self.shared
            .fallback
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }
}

impl Drop for LibraryWatcher {
    fn drop(&mut self) {
        let _ = self.control.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Backend {
    Events {
        watcher: Option<RecommendedWatcher>,
        watched: HashSet<PathBuf>,
    },
    Poll {
        interval: Duration,
        snapshot: Option<Snapshot>,
        next: Instant,
    },
}

struct Worker {
    root: PathBuf,
    filter: PathFilter,
    out: UnboundedSender<WatchEvent>,
    control: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    tuning: Tuning,
    backend: Backend,
    online: bool,
    /// The root's identity when last online (`None`: never seen).
    identity: Option<RootIdentity>,
    identity_warned: bool,
    next_root_check: Instant,
    batch: Vec<notify::Event>,
    batch_started: Option<Instant>,
    batch_holds_removal: bool,
    /// Bumped whenever the notify watcher is replaced, so stale events are told apart.
    generation: u64,
}

impl Worker {
    fn send(&self, event: WatchEvent) {
        tracing::debug!(root = %self.root.display(), ?event, "library event");
        let _ = self.out.send(event);
    }

    /// Sets up the backend for `mode`, synchronously (called by `start`).
    fn begin(&mut self, mode: WatchMode) {
        self.backend = match mode {
            WatchMode::Events => Backend::Events {
                watcher: None,
                watched: HashSet::new(),
            },
            WatchMode::Poll(interval) => Backend::Poll {
                interval,
                snapshot: None,
                next: Instant::now() + interval,
            },
        };
        self.shared
            .polling
            .store(matches!(mode, WatchMode::Poll(_)), Ordering::Relaxed);
        match root_identity(&self.root) {
            Some(id) => {
                self.identity = Some(id);
                self.online = true;
                self.arm(false);
            }
            None => {
                self.online = false;
                self.send(WatchEvent::RootGone);
            }
        }
        self.next_root_check = Instant::now() + self.tuning.root_check;
    }

    fn run(mut self, inbox: mpsc::Receiver<Msg>) {
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Notify { generation, event }) => {
                    if generation == self.generation && self.online {
                        self.take(event);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.out.is_closed() {
                break;
            }
            let now = Instant::now();
            if self.batch_deadline().is_some_and(|d| d <= now) {
                self.flush();
            }
            if self.next_root_check <= now {
                self.check_root();
                self.next_root_check = Instant::now() + self.tuning.root_check;
            }
            if let Backend::Poll { next, .. } = self.backend {
                if next <= now && self.online {
                    self.poll_tick();
                }
            }
        }
    }

    fn batch_deadline(&self) -> Option<Instant> {
        let hold = if self.batch_holds_removal {
            self.tuning.removal_hold
        } else {
            self.tuning.coalesce
        };
        self.batch_started.map(|t| t + hold)
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self.next_root_check;
        if let Some(b) = self.batch_deadline() {
            d = d.min(b);
        }
        if let Backend::Poll { next, .. } = self.backend {
            if self.online {
                d = d.min(next);
            }
        }
        d
    }

    /// (Re)arms the backend for an online root: watches in events mode, a baseline snapshot
    /// in poll mode. `report`: emit `Rescan` if events mode had to fall back to polling.
    fn arm(&mut self, report: bool) {
        match &mut self.backend {
            Backend::Events { .. } => {
                if let Err(err) = self.arm_events() {
                    self.fall_back_to_polling(err, report);
                }
            }
            Backend::Poll { interval, .. } => {
                let interval = *interval;
                let (snap, _) = self.snapshot();
                self.backend = Backend::Poll {
                    interval,
                    snapshot: Some(snap),
                    next: Instant::now() + interval,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::library::scan;
    use crate::library::scan::tests::{write, JPEG};
    use crate::library::{FileFacts, SettleTracker};
    use std::io::Write;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fast() -> Tuning {
        Tuning {
            coalesce: ms(20),
            removal_hold: ms(150),
            root_check: ms(100),
            fallback_poll: ms(100),
            watch_limit: None,
        }
    }

    /// Receives until `done` holds for everything received so far, or `timeout`.
    fn recv_until(
        rx: &mut UnboundedReceiver<WatchEvent>,
        timeout: Duration,
        done: impl Fn(&[WatchEvent]) -> bool,
    ) -> Vec<WatchEvent> {
        let end = Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) && Instant::now() < end {
            match rx.try_recv() {
                Ok(e) => got.push(e),
                Err(_) => std::thread::sleep(ms(5)),
            }
        }
        got
    }

    /// Whatever arrives within `quiet`.
    fn drain(rx: &mut UnboundedReceiver<WatchEvent>, quiet: Duration) -> Vec<WatchEvent> {
        recv_until(rx, quiet, |_| false)
    }

    fn changed(p: &Path) -> WatchEvent {
        WatchEvent::Changed(p.to_path_buf())
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("photos");
        write(&root.join("x/c.jpg"), JPEG);
        fs::create_dir_all(root.join("y")).unwrap();
        fs::create_dir_all(root.join(".hidden")).unwrap();
        fs::create_dir_all(root.join("skip/deeper")).unwrap();
        (tmp, root)
    }

    /// The scenario every mode must pass.
    fn scenario(mode: WatchMode) {
        let (_tmp, root) = setup();
        let filter = PathFilter::new(&root, &["skip".into()]).unwrap();
        let (w, mut rx) = LibraryWatcher::start_tuned(&root, filter, mode, fast()).unwrap();
        if mode == WatchMode::Events {
            assert_eq!(w.watch_count(), 3, "root, x, y; not .hidden or skip");
        }
        let timeout = ms(3000);

        // Create (and noise that must stay silent).
        let a = root.join("a.jpg");
        write(&a, JPEG);
        write(&root.join("notes.txt"), b"x");
        write(&root.join(".hidden/h.jpg"), JPEG);
        write(&root.join("skip/s.jpg"), JPEG);
        let got = recv_until(&mut rx, timeout, |g| g.contains(&changed(&a)));
        assert!(got.contains(&changed(&a)), "{got:?}");

        // A slow write: several Changed, and the settle tracker yields the file once, complete.
        let b = root.join("y/b.jpg");
        let mut file = fs::File::create(&b).unwrap();
        let mut tracker = SettleTracker::new(ms(300));
        let mut seen = 0;
        let mut settled = Vec::new();
        let mut feed = |events: Vec<WatchEvent>, tracker: &mut SettleTracker| {
            for e in events {
                if let WatchEvent::Changed(p) = e {
                    if p == b {
                        seen += 1;
                    }
                    if let Ok(f) = FileFacts::stat(&p) {
                        tracker.observe_facts(&f, Instant::now());
                    }
                }
            }
        };
        for _ in 0..10 {
            file.write_all(&[7u8; 1000]).unwrap();
            file.flush().unwrap();
            std::thread::sleep(ms(110));
            feed(drain(&mut rx, ms(1)), &mut tracker);
            settled.extend(tracker.due(Instant::now()));
            assert!(settled.iter().all(|f| f.path != b), "settled while growing");
        }
        drop(file);
        let end = Instant::now() + ms(2500);
        while Instant::now() < end {
            feed(drain(&mut rx, ms(20)), &mut tracker);
            settled.extend(tracker.due(Instant::now()));
        }
        let b_settled: Vec<_> = settled.iter().filter(|f| f.path == b).collect();
        assert_eq!(b_settled.len(), 1, "{settled:?}");
        assert_eq!(b_settled[0].size, 10_000);
        assert!(seen >= 3, "only {seen} Changed for a 1 s write");

        // Rename across folders.
        let (c, c2) = (root.join("x/c.jpg"), root.join("y/c2.jpg"));
        fs::rename(&c, &c2).unwrap();
        let want = WatchEvent::Renamed {
            from: c.clone(),
            to: c2.clone(),
        };
        let got = recv_until(&mut rx, timeout, |g| g.contains(&want));
        assert!(got.contains(&want), "{got:?}");

        // Delete.
        fs::remove_file(&a).unwrap();
        let want = WatchEvent::Removed(a.clone());
        let got = recv_until(&mut rx, timeout, |g| g.contains(&want));
        assert!(got.contains(&want), "{got:?}");

        // A new folder filled at once, files landing before any watch could exist.
        let n = root.join("new");
        let files = [n.join("1.jpg"), n.join("2.jpg"), n.join("deeper/3.jpg")];
        for f in &files {
            write(f, JPEG);
        }
        let got = recv_until(&mut rx, timeout, |g| {
            files.iter().all(|f| g.contains(&changed(f)))
        });
        for f in &files {
            assert!(got.contains(&changed(f)), "{f:?} in {got:?}");
        }
        if mode == WatchMode::Events {
            assert_eq!(w.watch_count(), 5);
            // A folder renamed: one Renamed, and its files are reported under the new name.
            fs::rename(&n, root.join("renamed")).unwrap();
            let want = WatchEvent::Renamed {
                from: n.clone(),
                to: root.join("renamed"),
            };
            let got = recv_until(&mut rx, timeout, |g| g.contains(&want));
            assert!(got.contains(&want), "{got:?}");
            let later = root.join("renamed/deeper/4.jpg");
            write(&later, JPEG);
            let got = recv_until(&mut rx, timeout, |g| g.contains(&changed(&later)));
            assert!(got.contains(&changed(&later)), "{got:?}");
            assert_eq!(w.watch_count(), 5);
        }

        // Nothing about ignored files ever came.
        let rest = drain(&mut rx, ms(300));
        for e in &rest {
            if let WatchEvent::Changed(p) | WatchEvent::Removed(p) = e {
                assert!(!p.to_string_lossy().contains("notes.txt"), "{e:?}");
                assert!(!p.to_string_lossy().contains("h.jpg"), "{e:?}");
                assert!(!p.to_string_lossy().contains("s.jpg"), "{e:?}");
            }
        }

        // The root vanishes with its files: one RootGone, no Removed per file.
        fs::remove_dir_all(&root).unwrap();
        let got = recv_until(&mut rx, timeout, |g| g.contains(&WatchEvent::RootGone));
        assert!(got.contains(&WatchEvent::RootGone), "{got:?}");
        let removed = got
            .iter()
            .filter(|e| matches!(e, WatchEvent::Removed(_)))
            .count();
        assert_eq!(removed, 0, "{got:?}");
        assert_eq!(w.watch_count(), 0);
        std::thread::sleep(ms(200));
        write(&root.join("back.jpg"), JPEG);
        let got = recv_until(&mut rx, timeout, |g| g.contains(&WatchEvent::RootBack));
        assert!(got.contains(&WatchEvent::RootBack), "{got:?}");
        assert!(
            !got.iter().any(|e| matches!(e, WatchEvent::Removed(_))),
            "{got:?}"
        );
        if mode == WatchMode::Events {
            assert_eq!(w.watch_count(), 1);
        }
        // And it is watched again.
        let again = root.join("again.jpg");
        write(&again, JPEG);
        let got = recv_until(&mut rx, timeout, |g| g.contains(&changed(&again)));
        assert!(got.contains(&changed(&again)), "{got:?}");
    }

    #[test]
    fn events_mode_reports_changes() {
        scenario(WatchMode::Events);
    }

    #[test]
    fn poll_mode_reports_the_same_changes() {
        scenario(WatchMode::Poll(ms(100)));
    }

    #[test]
    fn watch_limit_falls_back_to_polling() {
        let (_tmp, root) = setup();
        let filter = PathFilter::new(&root, &[]).unwrap();
        let tuning = Tuning {
            watch_limit: Some(2),
            ..fast()
        };
        let (w, mut rx) =
            LibraryWatcher::start_tuned(&root, filter, WatchMode::Events, tuning).unwrap();
        assert!(w.is_polling());
        assert_eq!(w.watch_count(), 0);
        let reason = w.fallback_reason().unwrap();
        assert!(
            reason.contains("/proc/sys/fs/inotify/max_user_watches"),
            "{reason}"
        );
        let a = root.join("y/a.jpg");
        write(&a, JPEG);
        let got = recv_until(&mut rx, ms(3000), |g| g.contains(&changed(&a)));
        assert!(got.contains(&changed(&a)), "{got:?}");
    }

    #[test]
    fn watch_limit_hit_later_falls_back_with_a_rescan() {
        let (_tmp, root) = setup();
        let filter = PathFilter::new(&root, &["skip".into()]).unwrap();
        let tuning = Tuning {
            watch_limit: Some(3),
            ..fast()
        };
        let (w, mut rx) =
            LibraryWatcher::start_tuned(&root, filter, WatchMode::Events, tuning).unwrap();
        assert!(!w.is_polling());
        write(&root.join("more/a.jpg"), JPEG);
        let got = recv_until(&mut rx, ms(3000), |g| g.contains(&WatchEvent::Rescan));
        assert!(got.contains(&WatchEvent::Rescan), "{got:?}");
        assert!(w.is_polling());
        let b = root.join("more/b.jpg");
        write(&b, JPEG);
        let got = recv_until(&mut rx, ms(3000), |g| g.contains(&changed(&b)));
        assert!(got.contains(&changed(&b)), "{got:?}");
    }

    #[test]
    fn a_root_missing_at_start_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("not-yet");
        let filter = PathFilter::new(&root, &[]).unwrap();
        let (w, mut rx) =
            LibraryWatcher::start_tuned(&root, filter, WatchMode::Events, fast()).unwrap();
        assert_eq!(rx.try_recv().unwrap(), WatchEvent::RootGone);
        fs::create_dir(&root).unwrap();
        let got = recv_until(&mut rx, ms(3000), |g| g.contains(&WatchEvent::RootBack));
        assert!(got.contains(&WatchEvent::RootBack), "{got:?}");
        assert_eq!(w.watch_count(), 1);
    }

    #[test]
    fn a_moved_root_goes_offline() {
        let (tmp, root) = setup();
        let filter = PathFilter::new(&root, &[]).unwrap();
        let (_w, mut rx) =
            LibraryWatcher::start_tuned(&root, filter, WatchMode::Events, fast()).unwrap();
        let elsewhere = tmp.path().join("moved");
        fs::rename(&root, &elsewhere).unwrap();
        // Writes in the moved tree must not be reported under the old paths.
        write(&elsewhere.join("x/late.jpg"), JPEG);
        let got = recv_until(&mut rx, ms(3000), |g| g.contains(&WatchEvent::RootGone));
        assert_eq!(got, vec![WatchEvent::RootGone]);
        assert!(drain(&mut rx, ms(300)).is_empty());
    }

    /// Discovery figures on a generated tree of 100k zero-length photos in 1000 folders.
    /// `cargo test --lib library::watch::tests::discovery_figures -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn discovery_figures() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        let t = Instant::now();
        for d in 0..1000 {
            let dir = root.join(format!("{:02}/{d:04}", d / 100));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..100 {
                fs::File::create(dir.join(format!("IMG_{f:04}.jpg"))).unwrap();
            }
        }
        println!("generated 100k files in {:?}", t.elapsed());
        let filter = PathFilter::new(&root, &["**/.thumbnails/**".into()]).unwrap();
        let rss = || {
            fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap_or("")
                .to_string()
        };
        println!("before: {}", rss());
        for pass in ["first walk", "second walk", "third walk"] {
            let t = Instant::now();
            let (mut files, mut dirs) = (0, 0);
            for item in scan::walk(&root, &filter) {
                match item.unwrap() {
                    scan::WalkItem::File(_) => files += 1,
                    scan::WalkItem::Dir(_) => dirs += 1,
                }
            }
            println!("{pass}: {files} files, {dirs} folders in {:?}", t.elapsed());
        }
        let t = Instant::now();
        let (w, _rx) = LibraryWatcher::start(&root, filter.clone(), WatchMode::Events).unwrap();
        println!(
            "events watcher: {} watches set up in {:?}; {}",
            w.watch_count(),
            t.elapsed(),
            rss()
        );
        drop(w);
        let t = Instant::now();
        let (w, _rx) =
            LibraryWatcher::start(&root, filter, WatchMode::Poll(Duration::from_secs(3600)))
                .unwrap();
        println!(
            "poll watcher: baseline snapshot in {:?}; {}",
            t.elapsed(),
            rss()
        );
        drop(w);
    }
}
