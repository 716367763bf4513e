//! Root checks: a root that disappears (deleted, moved, share unmounted) goes offline with one
//! `RootGone`; it comes back only with the same identity (filesystem type, mount point or not),
//! because an unmount leaves the empty mount point folder behind.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::fs_type_id;
use super::{Backend, WatchEvent, Worker};

/// What a root looks like when present; a change means it is not the same library (an
/// unmounted share leaves its empty mount point behind, on another filesystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RootIdentity {
    fs_type: String,
    mount_point: bool,
}

pub(super) fn root_identity(root: &Path) -> Option<RootIdentity> {
    let md = fs::metadata(root).ok()?;
    if !md.is_dir() {
        return None;
    }
    let fs_type = fs_type_id(root).ok()?;
    #[cfg(unix)]
    let mount_point = {
        use std::os::unix::fs::MetadataExt;
        root.parent()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|parent| parent.dev() != md.dev())
    };
    #[cfg(not(unix))]
    let mount_point = false;
    Some(RootIdentity {
        fs_type,
        mount_point,
    })
}

impl Worker {
    /// Checks the root and sends `RootGone`/`RootBack` on a change. Returns whether it is online.
    pub(super) fn check_root(&mut self) -> bool {
        let now = root_identity(&self.root);
        let present = match (&now, &self.identity) {
            (Some(id), Some(known)) if id != known => {
                if !self.identity_warned {
                    tracing::warn!(
                        root = %self.root.display(),
                        "library root is present but on another filesystem than before \
                         ({id:?} instead of {known:?}); treating it as offline (an unmounted \
                         share?) until it returns; restart captiond to accept the new one"
                    );
                    self.identity_warned = true;
                }
                false
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if self.online && !present {
            self.go_offline();
        } else if !self.online && present {
            self.identity = now;
            self.identity_warned = false;
            self.online = true;
            self.arm(false);
            self.send(WatchEvent::RootBack);
        }
        self.online
    }

    pub(super) fn go_offline(&mut self) {
        self.online = false;
        self.batch.clear();
        self.batch_started = None;
        self.batch_holds_removal = false;
        match &mut self.backend {
            Backend::Events { watcher, watched } => {
                // Watches follow inodes: a root moved elsewhere would go on reporting.
                *watcher = None;
                watched.clear();
                self.generation += 1;
                self.shared.watches.store(0, Ordering::Relaxed);
            }
            Backend::Poll { snapshot, .. } => *snapshot = None,
        }
        self.send(WatchEvent::RootGone);
    }
}
