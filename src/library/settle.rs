//! Holds changed files back until they stop changing, so a half-copied photo is never queued.
//!
//! Input: what a stat saw for each changed file ([`SettleTracker::observe`], fed from walk items
//! and watch events). Output: [`SettleTracker::due`], the files whose size and mtime have not
//! moved for the `settle` period. The clock is passed in (`Instant`), so tests drive it.
//!
//! Only files seen changing are tracked (O(changed files), never the whole library). When a
//! file's timer runs out, `due` stats it once more: copies that stall without events (network
//! shares, mmap writers) restart the timer instead of being queued, and a file that vanished is
//! dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::scan::FileFacts;

#[derive(Debug)]
struct Pending {
    size: u64,
    mtime_ns: i64,
    since: Instant,
}

#[derive(Debug)]
pub struct SettleTracker {
    settle: Duration,
    pending: HashMap<PathBuf, Pending>,
}

impl SettleTracker {
    /// `settle`: how long size and mtime must stay unchanged (`[daemon] settle_ms`).
    pub fn new(settle: Duration) -> Self {
        SettleTracker {
            settle,
            pending: HashMap::new(),
        }
    }

    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// Records a stat of `path` taken at `now`. The same size and mtime as last time keep the
    /// timer running; anything else (a file still growing) restarts it.
    pub fn observe(&mut self, path: &Path, size: u64, mtime_ns: i64, now: Instant) {
        match self.pending.get_mut(path) {
            Some(p) if p.size == size && p.mtime_ns == mtime_ns => {}
            Some(p) => {
                *p = Pending {
                    size,
                    mtime_ns,
                    since: now,
                }
            }
            None => {
                self.pending.insert(
                    path.to_path_buf(),
                    Pending {
                        size,
                        mtime_ns,
                        since: now,
                    },
                );
            }
        }
    }

    /// [`observe`](Self::observe) with facts from a walk or [`FileFacts::stat`].
    pub fn observe_facts(&mut self, facts: &FileFacts, now: Instant) {
        self.observe(&facts.path, facts.size, facts.mtime_ns, now);
    }

    /// Stops tracking `path` (removed, or renamed away). Returns whether it was tracked.
    pub fn forget(&mut self, path: &Path) -> bool {
        self.pending.remove(path).is_some()
    }

    /// Stops tracking everything under the folder `dir` (a removed folder, a root gone offline).
    pub fn forget_under(&mut self, dir: &Path) {
        self.pending.retain(|p, _| !p.starts_with(dir));
    }

    /// How many files are waiting to settle.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest moment [`due`](Self::due) can return something; `None` when nothing waits.
    /// The daemon sleeps until then.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.since + self.settle).min()
    }

    /// Files unchanged for the settle period as of `now`, each returned once (and forgotten).
    /// Each candidate is stat'ed again first: changed → its timer restarts at `now`;
    /// vanished or unreadable → dropped.
    pub fn due(&mut self, now: Instant) -> Vec<FileFacts> {
        let settle = self.settle;
        let mut ready = Vec::new();
        self.pending.retain(|path, p| {
            if now.saturating_duration_since(p.since) < settle {
                return true;
            }
            match FileFacts::stat(path) {
                Ok(f) if f.size == p.size && f.mtime_ns == p.mtime_ns => {
                    ready.push(f);
                    false
                }
                Ok(f) => {
                    *p = Pending {
                        size: f.size,
                        mtime_ns: f.mtime_ns,
                        since: now,
                    };
                    true
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), error = %e, "cannot stat a changed file; dropping it until it changes again");
                    }
                    false
                }
            }
        });
        ready.sort_by(|a, b| a.path.cmp(&b.path));
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn settles_once_after_the_file_stops_changing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.jpg");
        let mut file = fs::File::create(&path).unwrap();
        let mut t = SettleTracker::new(ms(2000));
        let t0 = Instant::now();
        let stat = |p: &Path| FileFacts::stat(p).unwrap();

        // Growing: every observation with a new size restarts the timer.
        for step in 0..4u64 {
            file.write_all(&[0u8; 100]).unwrap();
            t.observe_facts(&stat(&path), t0 + ms(step * 1500));
            assert!(t.due(t0 + ms(step * 1500 + 1999)).is_empty());
        }
        let last = t0 + ms(3 * 1500);
        assert_eq!(t.next_due(), Some(last + ms(2000)));
        // The same stat again does not restart it.
        t.observe_facts(&stat(&path), last + ms(1000));
        let due = t.due(last + ms(2000));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].size, 400);
        assert!(t.due(last + ms(10_000)).is_empty());
        assert!(t.is_empty());
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn a_change_missed_by_events_restarts_the_timer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.jpg");
        fs::write(&path, b"half").unwrap();
        let mut t = SettleTracker::new(ms(500));
        let t0 = Instant::now();
        t.observe_facts(&FileFacts::stat(&path).unwrap(), t0);
        fs::write(&path, b"half and the rest").unwrap(); // no observe: events were lost
        assert!(t.due(t0 + ms(600)).is_empty());
        assert_eq!(t.len(), 1);
        let due = t.due(t0 + ms(1100));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].size, 17);
    }

    #[test]
    fn vanished_and_forgotten_files_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a.jpg"),
            tmp.path().join("sub/b.jpg"),
            tmp.path().join("sub/c.jpg"),
        );
        fs::create_dir(tmp.path().join("sub")).unwrap();
        for p in [&a, &b, &c] {
            fs::write(p, b"x").unwrap();
        }
        let mut t = SettleTracker::new(ms(100));
        let t0 = Instant::now();
        for p in [&a, &b, &c] {
            t.observe_facts(&FileFacts::stat(p).unwrap(), t0);
        }
        fs::remove_file(&a).unwrap();
        t.forget_under(&tmp.path().join("sub"));
        assert!(t.due(t0 + ms(200)).is_empty());
        assert!(t.is_empty());
        assert!(!t.forget(&a));
    }
}
