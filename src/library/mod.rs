//! Stage 1, discover: which photo files exist under a library root and when they change.
//!
//! Inputs: a library root and its `exclude` globs. Outputs, with no database and no model:
//! - [`scan::walk`]: a full walk yielding every candidate photo ([`FileFacts`]: path, size, mtime)
//!   and every folder seen, for the start-up and periodic reconcile;
//! - [`watch::LibraryWatcher`]: a stream of [`WatchEvent`]s (changed, removed, renamed, rescan,
//!   root gone/back), from inotify/FSEvents or, on network filesystems, from a periodic stat walk;
//! - [`settle::SettleTracker`]: holds changed files back until their size and mtime have stopped
//!   moving, so a half-copied photo is never queued;
//! - [`fs_kind::filesystem_kind`]: local vs network filesystem, deciding between events and polling.
//!
//! The daemon wires these to the catalog: walk + watch events → `SettleTracker::observe` →
//! `SettleTracker::due` → hash and queue.

pub mod fs_kind;
pub mod scan;
pub mod settle;
pub mod watch;

pub use fs_kind::{filesystem_kind, should_poll, FsKind, PollMode};
pub use scan::{hash_file, walk, FileFacts, PathFilter, ScanError, WalkItem};
pub use settle::SettleTracker;
pub use watch::{LibraryWatcher, WatchError, WatchEvent, WatchMode};
