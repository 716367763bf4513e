//! Atomic read-modify-write of one file, used for sidecars and for embedding into images.
//!
//! [`update_file`] reads the file (noting size, mtime and a blake3 of the bytes), asks the caller
//! for the new bytes, writes them to a hidden temp file in the same folder (mode and, where
//! permitted, owner copied from the original), fsyncs it, checks that the original did not change
//! meanwhile (if it did, the caller's merge runs again on the new bytes), then renames the temp
//! file over the original (a new file is linked in place so a file created meanwhile is never
//! clobbered) and fsyncs the folder. Any failure removes the temp file; the original is then as it
//! was. A read-only original (no write bit) is left alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::SidecarError;

/// How often a merge is redone because another program changed the file meanwhile.
const MAX_ATTEMPTS: usize = 5;

/// What the caller wants done with the bytes it was shown.
pub(crate) enum Change {
    /// Leave the file as it is.
    Keep,
    /// Leave the file as it is (or absent) for this reason.
    Skip(super::SkipReason),
    /// Replace (or create) the file with these bytes.
    Write(Vec<u8>),
}

/// What [`update_file`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Done {
    Created,
    Updated,
    Unchanged,
    Skipped(super::SkipReason),
}

struct Snapshot {
    bytes: Vec<u8>,
    len: u64,
    mtime: Option<SystemTime>,
    hash: blake3::Hash,
    meta: fs::Metadata,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> SidecarError {
    let path = path.to_path_buf();
    move |source| SidecarError::Io {
        path,
        action,
        source,
    }
}

fn snapshot(path: &Path) -> Result<Option<Snapshot>, SidecarError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let meta = file.metadata().map_err(io_err(path, "stat"))?;
    if meta.is_dir() {
        return Err(io_err(path, "read")(io::Error::other("it is a folder")));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut file, &mut bytes).map_err(io_err(path, "read"))?;
    Ok(Some(Snapshot {
        len: bytes.len() as u64,
        mtime: meta.modified().ok(),
        hash: blake3::hash(&bytes),
        bytes,
        meta,
    }))
}

/// Whether the file still is what `before` saw.
fn unchanged_since(path: &Path, before: &Option<Snapshot>) -> Result<bool, SidecarError> {
    let now = snapshot(path)?;
    Ok(match (before, now) {
        (None, None) => true,
        (Some(b), Some(n)) => b.len == n.len && b.mtime == n.mtime && b.hash == n.hash,
        _ => false,
    })
}

/// A temp file that is removed unless it was put in place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn temp_path(target: &Path) -> PathBuf {
    /// The longest file name common filesystems take (ext4, XFS, btrfs, APFS, NTFS: 255 bytes).
    const NAME_MAX: usize = 255;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!(".captiond-{}-{n}.tmp", std::process::id());
    let mut name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A long photo name must not make the temp name too long to create: shorten its copy here
    // (the temp file is renamed onto the real name anyway).
    let budget = NAME_MAX - 1 - suffix.len();
    if name.len() > budget {
        let mut cut = budget;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    target.with_file_name(format!(".{name}{suffix}"))
}

/// Removes the temp files a killed captiond left in `dir` (`.NAME.captiond-PID-N.tmp` whose PID
/// no longer runs), once per folder per process: a `kill -9` between writing a temp file and
/// renaming it leaves one behind, and nothing else would ever remove it.
fn sweep_stale_temps(dir: &Path) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if !swept
            .get_or_insert_with(HashSet::new)
            .insert(dir.to_path_buf())
        {
            return;
        }
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(stale_temp_pid) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a temp file a stopped captiond left")
                }
                Err(e) => {
                    tracing::debug!(path = %entry.path().display(), "cannot remove a stale temp file: {e}")
                }
            }
        }
    }
}

/// The PID in a temp file name made by [`temp_path`] (`.NAME.captiond-PID-N.tmp`).
fn stale_temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = rest.rsplit_once(".captiond-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether a process with this PID exists (a PID that exists but is not ours to signal counts).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true // never remove what might be in use
}

/// Whether the user captiond runs as may write `path` in place. Replacing a file by rename
/// needs only the folder's write permission; this keeps us to what the file itself allows
/// (`access(2)` with the effective ids, as the kernel would judge an `open` for writing).
#[cfg(unix)]
fn may_write_in_place(path: &Path, meta: &fs::Metadata) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o222 == 0 {
        return false; // locked for everyone, root included: the person's wish
    }
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path we own; no memory is written.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

#[cfg(not(unix))]
fn may_write_in_place(_path: &Path, meta: &fs::Metadata) -> bool {
    !meta.permissions().readonly()
}

/// Gives the temp file the original's owner, group and mode. An owner we cannot keep (the file
/// is another user's and we are not root) is [`super::SkipReason::OwnerWouldChange`]: the
/// replacement would take the file from its owner.
#[cfg(unix)]
fn copy_owner_and_mode(
    file: &File,
    meta: &fs::Metadata,
) -> io::Result<Result<(), super::SkipReason>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ours = file.metadata()?;
    if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
        let owner = (ours.uid() != meta.uid()).then_some(meta.uid());
        // When only the group differs and we are not in it, ours stays: the owner keeps the file.
        if std::os::unix::fs::fchown(file, owner, Some(meta.gid())).is_err() && owner.is_some() {
            return Ok(Err(super::SkipReason::OwnerWouldChange));
        }
    }
    file.set_permissions(fs::Permissions::from_mode(
        meta.permissions().mode() & 0o7777,
    ))?;
    Ok(Ok(()))
}

#[cfg(not(unix))]
fn copy_owner_and_mode(
    file: &File,
    meta: &fs::Metadata,
) -> io::Result<Result<(), super::SkipReason>> {
    file.set_permissions(meta.permissions())?;
    Ok(Ok(()))
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Whether `path` itself is a symbolic link (never written through: it may point outside the
/// library or at someone else's file).
fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Atomically replaces `path` with what `change` makes of its current bytes (`None`: no file).
pub(crate) fn update_file(
    path: &Path,
    change: impl FnMut(Option<&[u8]>) -> Result<Change, SidecarError>,
) -> Result<Done, SidecarError> {
    update_file_observed(path, change, &())
}

/// [`update_file`] telling `observer` about a replacement of an existing file: before the new
/// bytes are put in place (its error abandons the write, the file untouched) and after (with the
/// size and mtime of the new bytes' file, read from the temp file before the rename, so they are
/// ours even if another program writes right after). Creating a file is not reported.
pub(crate) fn update_file_observed(
    path: &Path,
    mut change: impl FnMut(Option<&[u8]>) -> Result<Change, SidecarError>,
    observer: &dyn super::EmbedObserver,
) -> Result<Done, SidecarError> {
    if is_symlink(path) {
        return Ok(Done::Skipped(super::SkipReason::Symlink));
    }
    let target = path.to_path_buf();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sweep_stale_temps(&dir);
    for _ in 0..MAX_ATTEMPTS {
        let before = snapshot(&target)?;
        if let Some(b) = &before {
            if !may_write_in_place(&target, &b.meta) {
                return Ok(Done::Skipped(super::SkipReason::ReadOnly));
            }
        }
        let bytes = match change(before.as_ref().map(|s| s.bytes.as_slice()))? {
            Change::Keep => return Ok(Done::Unchanged),
            Change::Skip(reason) => return Ok(Done::Skipped(reason)),
            Change::Write(bytes) => bytes,
        };
        if before.as_ref().is_some_and(|b| b.bytes == bytes) {
            return Ok(Done::Unchanged);
        }

        let mut tmp = TempFile {
            path: temp_path(&target),
            armed: true,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .map_err(io_err(&tmp.path, "create the temp file"))?;
        if let Some(b) = &before {
            if let Err(reason) =
                copy_owner_and_mode(&file, &b.meta).map_err(io_err(&tmp.path, "set the mode of"))?
            {
                return Ok(Done::Skipped(reason));
            }
        }
        file.write_all(&bytes).map_err(io_err(&tmp.path, "write"))?;
        file.sync_all().map_err(io_err(&tmp.path, "fsync"))?;
        // The rename keeps size and mtime: this is what the file will look like in place.
        let written = file.metadata().map_err(io_err(&tmp.path, "stat"))?;
        drop(file);

        let new_hash = before
            .as_ref()
            .map(|b| (b.hash.to_hex(), blake3::hash(&bytes).to_hex()));
        if let Some((old, new)) = &new_hash {
            observer.before_replace(path, old.as_str(), new.as_str())?;
        }
        if !unchanged_since(&target, &before)? {
            continue;
        }
        match &before {
            Some(_) => {
                fs::rename(&tmp.path, &target).map_err(io_err(&target, "replace"))?;
                tmp.armed = false;
            }
            None => match fs::hard_link(&tmp.path, &target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // Filesystems without hard links (FAT, some network shares): rename instead.
                Err(_) => {
                    if target.exists() {
                        continue;
                    }
                    fs::rename(&tmp.path, &target).map_err(io_err(&target, "create"))?;
                    tmp.armed = false;
                }
            },
        }
        drop(tmp);
        sync_dir(&dir);
        if let Some((_, new)) = &new_hash {
            observer.after_replace(
                path,
                new.as_str(),
                written.len(),
                crate::library::scan::mtime_ns(&written),
            );
        }
        return Ok(if before.is_some() {
            Done::Updated
        } else {
            Done::Created
        });
    }
    Err(SidecarError::Conflict { path: target })
}

/// Why [`move_file`] did not move.
#[derive(Debug)]
pub(crate) enum MoveError {
    /// A file is already at the destination: nothing was changed.
    Exists,
    /// The move failed; the source is where it was (and nothing new is at the destination).
    Io(SidecarError),
}

/// Moves the file `from` to `to`, which must not exist: a file there (even one created
/// meanwhile) is never replaced. Hard-links `to` and then unlinks `from` (a rename that cannot
/// clobber); where hard links are not available (FAT, some network shares) renames after
/// checking `to` is free; across filesystems copies the bytes to a new `to` (fsynced, mode kept)
/// and then removes `from`. Both folders are fsynced.
pub(crate) fn move_file(from: &Path, to: &Path) -> Result<(), MoveError> {
    let dir_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let unlink = |p: &Path| fs::remove_file(p).map_err(|e| MoveError::Io(io_err(p, "remove")(e)));
    match fs::hard_link(from, to) {
        Ok(()) => unlink(from)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(MoveError::Exists),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_new(from, to)?,
        Err(_) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(MoveError::Exists);
            }
            match fs::rename(from, to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_new(from, to)?,
                Err(e) => return Err(MoveError::Io(io_err(from, "move")(e))),
            }
        }
    }
    sync_dir(&dir_of(to));
    sync_dir(&dir_of(from));
    Ok(())
}

/// `move_file` across filesystems: `to` created new with `from`'s bytes and mode, then `from`
/// removed.
fn copy_new(from: &Path, to: &Path) -> Result<(), MoveError> {
    let bytes = fs::read(from).map_err(|e| MoveError::Io(io_err(from, "read")(e)))?;
    let meta = fs::metadata(from).map_err(|e| MoveError::Io(io_err(from, "stat")(e)))?;
    let mut file = match OpenOptions::new().write(true).create_new(true).open(to) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(MoveError::Exists),
        Err(e) => return Err(MoveError::Io(io_err(to, "create")(e))),
    };
    let mut placed = TempFile {
        path: to.to_path_buf(),
        armed: true,
    };
    let kept = copy_owner_and_mode(&file, &meta)
        .map_err(|e| MoveError::Io(io_err(to, "set the mode of")(e)))?;
    if kept.is_err() {
        // The copy would belong to us, not to the person who owns the sidecar: leave it.
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        return Err(MoveError::Io(io_err(to, "keep the owner of")(denied)));
    }
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| MoveError::Io(io_err(to, "write")(e)))?;
    placed.armed = false;
    fs::remove_file(from).map_err(|e| MoveError::Io(io_err(from, "remove")(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn creates_updates_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xmp");
        let done = update_file(&p, |old| {
            assert!(old.is_none());
            Ok(Change::Write(b"one".to_vec()))
        })
        .unwrap();
        assert_eq!(done, Done::Created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
        let done = update_file(&p, |old| {
            assert_eq!(old, Some(&b"one"[..]));
            Ok(Change::Write(b"two".to_vec()))
        })
        .unwrap();
        assert_eq!(done, Done::Updated);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        assert_eq!(
            update_file(&p, |_| Ok(Change::Write(b"two".to_vec()))).unwrap(),
            Done::Unchanged
        );
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_concurrent_change_makes_the_merge_run_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xmp");
        fs::write(&p, b"v1").unwrap();
        let mut seen = Vec::new();
        let done = update_file(&p, |old| {
            let old = old.unwrap().to_vec();
            if seen.is_empty() {
                // Another program writes while we merge.
                fs::write(&p, b"v2-longer").unwrap();
            }
            seen.push(old.clone());
            let mut new = old;
            new.extend_from_slice(b"+ours");
            Ok(Change::Write(new))
        })
        .unwrap();
        assert_eq!(done, Done::Updated);
        assert_eq!(seen, vec![b"v1".to_vec(), b"v2-longer".to_vec()]);
        assert_eq!(fs::read(&p).unwrap(), b"v2-longer+ours");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn errors_leave_no_temp_file_and_the_original_untouched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xmp");
        fs::write(&p, b"orig").unwrap();
        let err = update_file(&p, |_| {
            Err(SidecarError::Conflict {
                path: PathBuf::from("x"),
            })
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"orig");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn move_file_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.xmp");
        let b = d.path().join("sub/b.xmp");
        fs::create_dir_all(b.parent().unwrap()).unwrap();
        fs::write(&a, b"mine").unwrap();
        move_file(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"mine");
        fs::write(&a, b"other").unwrap();
        assert!(matches!(move_file(&a, &b), Err(MoveError::Exists)));
        assert_eq!(fs::read(&a).unwrap(), b"other");
        assert_eq!(fs::read(&b).unwrap(), b"mine");
        let missing = d.path().join("missing.xmp");
        assert!(matches!(
            move_file(&missing, &d.path().join("c.xmp")),
            Err(MoveError::Io(_))
        ));
        assert!(!d.path().join("c.xmp").exists());
    }

    #[cfg(unix)]
    #[test]
    fn read_only_files_are_skipped_and_symlinks_kept() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ro.xmp");
        fs::write(&p, b"orig").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        let done = update_file(&p, |_| Ok(Change::Write(b"new".to_vec()))).unwrap();
        assert_eq!(done, Done::Skipped(super::super::SkipReason::ReadOnly));
        assert_eq!(fs::read(&p).unwrap(), b"orig");

        // A sidecar that is a symbolic link is never written through, wherever it points.
        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("real.xmp");
        fs::write(&real, b"a").unwrap();
        let link = d.path().join("link.xmp");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let done = update_file(&link, |_| Ok(Change::Write(b"b".to_vec()))).unwrap();
        assert_eq!(done, Done::Skipped(super::super::SkipReason::Symlink));
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"a");
        // A dangling link is not created through either.
        let dangling = d.path().join("dangling.xmp");
        std::os::unix::fs::symlink(elsewhere.path().join("new.xmp"), &dangling).unwrap();
        let done = update_file(&dangling, |_| Ok(Change::Write(b"c".to_vec()))).unwrap();
        assert_eq!(done, Done::Skipped(super::super::SkipReason::Symlink));
        assert!(!elsewhere.path().join("new.xmp").exists());
    }

    /// A sidecar for a photo with a 230-byte name: the temp name stays under 255 bytes.
    #[test]
    fn a_long_name_gets_its_file() {
        let d = tempfile::tempdir().unwrap();
        let name = format!("{}é.jpg.xmp", "x".repeat(223));
        assert!(name.len() > 230 && name.len() <= 255);
        let target = d.path().join(&name);
        assert!(temp_path(&target).file_name().unwrap().len() <= 255);
        update_file(&target, |_| Ok(Change::Write(b"<x/>".to_vec()))).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"<x/>");
        assert!(leftovers(d.path()).is_empty());
    }

    /// Temp files left by a killed captiond (its PID gone) are swept on the next write in their
    /// folder; a live process's are not.
    #[cfg(unix)]
    #[test]
    fn temp_files_of_a_dead_process_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = d.path().join(format!(".a.xmp.captiond-{dead}-3.tmp"));
        let live = d.path().join(".b.xmp.captiond-1-0.tmp"); // PID 1 always runs
        let other = d.path().join(".c.tmp");
        for p in [&stale, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(
            stale_temp_pid(&format!(".a.xmp.captiond-{dead}-3.tmp")),
            Some(dead)
        );
        assert_eq!(stale_temp_pid(".c.tmp"), None);
        update_file(&d.path().join("a.xmp"), |_| {
            Ok(Change::Write(b"new".to_vec()))
        })
        .unwrap();
        assert!(!stale.exists(), "the dead process's temp file is swept");
        assert!(live.exists() && other.exists(), "nothing else is touched");
    }
}
