//! Poll mode, for network filesystems whose remote changes raise no local events: a periodic
//! stat walk diffed against the previous one; a file that reappears elsewhere with the same inode
//! and size is a rename.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use super::events::Outbox;
use super::{Backend, Worker};
use crate::library::scan::{self, ScanError};
use crate::media::kind::{class_by_extension, FileClass};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

pub(super) type Snapshot = HashMap<PathBuf, Stamp>;

impl Worker {
    /// One stat walk of the root: candidate files (by name; unknown extensions not sniffed)
    /// and the folders that could not be read.
    pub(super) fn snapshot(&self) -> (Snapshot, Vec<PathBuf>) {
        let mut snap = Snapshot::new();
        let mut failed = Vec::new();
        for entry in scan::entries(&self.root, &self.filter) {
            let entry = match entry {
                Ok(e) => e,
                Err(ScanError::ReadDir { path, .. } | ScanError::Walk { path, .. }) => {
                    failed.push(path);
                    continue;
                }
                Err(_) => continue,
            };
            let ft = entry.file_type();
            if ft.is_dir() || class_by_extension(entry.file_name()) == FileClass::Ignored {
                continue;
            }
            let md = if ft.is_symlink() {
                fs::metadata(entry.path())
            } else {
                entry.metadata().map_err(io::Error::other)
            };
            let Ok(md) = md else { continue };
            if !md.is_file() {
                continue;
            }
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&md);
            #[cfg(not(unix))]
            let ino = 0;
            snap.insert(
                entry.into_path(),
                Stamp {
                    size: md.len(),
                    mtime_ns: scan::mtime_ns(&md),
                    ino,
                },
            );
        }
        (snap, failed)
    }

    pub(super) fn poll_tick(&mut self) {
        let Backend::Poll { interval, .. } = self.backend else {
            return;
        };
        let (mut new, failed) = self.snapshot();
        if !self.check_root() {
            return;
        }
        let Backend::Poll { snapshot, next, .. } = &mut self.backend else {
            return;
        };
        *next = Instant::now() + interval;
        let Some(old) = snapshot.take() else {
            *snapshot = Some(new);
            return;
        };
        // A folder that failed to list this time keeps what it had: no false removals.
        for (p, s) in &old {
            if !new.contains_key(p) && failed.iter().any(|f| p.starts_with(f)) {
                new.insert(p.clone(), *s);
            }
        }
        let mut gone: Vec<PathBuf> = old
            .keys()
            .filter(|p| !new.contains_key(*p))
            .cloned()
            .collect();
        let mut fresh: Vec<PathBuf> = new
            .iter()
            .filter(|(p, s)| old.get(*p).is_none_or(|o| o != *s))
            .map(|(p, _)| p.clone())
            .collect();
        gone.sort();
        fresh.sort();
        let mut out = Outbox::default();
        // A file that vanished here and appeared there with the same inode and size moved.
        let by_ino: HashMap<u64, &PathBuf> = gone
            .iter()
            .filter(|p| old[*p].ino != 0)
            .map(|p| (old[p].ino, p))
            .collect();
        let mut moved = HashSet::new();
        for p in fresh {
            let stamp = new[&p];
            let from = match old.contains_key(&p) {
                true => None,
                false => by_ino
                    .get(&stamp.ino)
                    .filter(|f| old[**f].size == stamp.size && !moved.contains(**f)),
            };
            match from {
                Some(from) => {
                    moved.insert((*from).clone());
                    let touched = old[*from].mtime_ns != stamp.mtime_ns;
                    out.renamed((*from).clone(), p.clone());
                    if touched {
                        out.changed(p);
                    }
                }
                None => out.changed(p),
            }
        }
        for p in gone.iter().filter(|p| !moved.contains(*p)) {
            out.removed(p.clone());
        }
        *snapshot = Some(new);
        for e in out.events {
            self.send(e);
        }
    }
}
