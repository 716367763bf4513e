//! Walks a library root and says which files are candidate photos.
//!
//! Inputs: a root folder and a [`PathFilter`] (hidden names, `exclude` globs, NAS junk folders,
//! non-image extensions). Outputs: [`walk`] yields [`WalkItem::File`] with [`FileFacts`] (absolute
//! path, size, mtime) for each candidate and [`WalkItem::Dir`] for each folder entered, in
//! walk order, streaming (nothing is collected, so 100k files cost no memory here). Unreadable
//! folders come out as [`ScanError`] items and the walk goes on.
//!
//! Also: [`hash_file`] (blake3 content hash, the photo's identity in the catalog). What a file's
//! name or first bytes say about its type is `media::kind`'s.
//!
//! Symlinks: symlinked *directories* are never followed (no loops, no escaping the root, no
//! photo seen twice through two paths); symlinked *files* are candidates like regular files,
//! with the size and mtime of their target.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use crate::media::kind::{class_by_extension, sniff_image, FileClass};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot walk {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("exclude pattern {pattern:?} is not a valid glob: {source}")]
    BadGlob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
}

/// What the catalog needs to know about a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileFacts {
    /// Absolute (as absolute as the root given to the walk or watcher).
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl FileFacts {
    /// Stats `path` (following a symlink) now.
    pub fn stat(path: &Path) -> io::Result<Self> {
        let md = fs::metadata(path)?;
        Ok(Self::from_metadata(path.to_path_buf(), &md))
    }

    pub fn from_metadata(path: PathBuf, md: &Metadata) -> Self {
        FileFacts {
            path,
            size: md.len(),
            mtime_ns: mtime_ns(md),
        }
    }
}

pub(crate) fn mtime_ns(md: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        md.mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec())
    }
    #[cfg(not(unix))]
    {
        match md.modified() {
            Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
            },
            Err(_) => 0,
        }
    }
}

/// One item of a [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkItem {
    /// A candidate photo: a known image extension, or an unknown one whose first bytes
    /// [`sniff_image`] recognises.
    File(FileFacts),
    /// A folder the walk entered (the root first), i.e. one that is neither hidden nor
    /// excluded: exactly the folders a watcher needs.
    Dir(PathBuf),
}

/// Folders NAS boxes and operating systems litter shares with; their JPEGs are thumbnails, not
/// photos (Synology's `@eaDir` alone holds several per photo). Skipped like hidden folders.
pub const SKIPPED_NAMES: &[&str] = &[
    "@eaDir",
    "#recycle",
    "#snapshot",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
];

/// Decides, by name only, what a walk or watcher looks at under one library root.
///
/// `exclude` patterns follow gitignore habits: a pattern without `/` (`*.tmp`, `Private`) is
/// matched against each file or folder *name* at any depth; a pattern with `/`
/// (`**/.thumbnails/**`, `2019/scans`, `/Inbox`) against the path relative to the root, where
/// `*` does not cross `/` and a leading `/` anchors to the root. An excluded folder is not
/// entered (and not watched).
#[derive(Debug, Clone)]
pub struct PathFilter {
    root: PathBuf,
    by_name: GlobSet,
    by_path: GlobSet,
}

impl PathFilter {
    pub fn new(root: &Path, excludes: &[String]) -> Result<Self, ScanError> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for pattern in excludes {
            let trimmed = pattern.trim();
            let (text, anchored) = match trimmed.strip_prefix('/') {
                Some(rest) => (rest, true),
                None => (trimmed, false),
            };
            let glob = GlobBuilder::new(text)
                .literal_separator(true)
                .build()
                .map_err(|source| ScanError::BadGlob {
                    pattern: pattern.clone(),
                    source,
                })?;
            if anchored || text.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|source| ScanError::BadGlob {
                pattern: excludes.join(", "),
                source,
            })
        };
        Ok(PathFilter {
            root: root.to_path_buf(),
            by_name: build(by_name)?,
            by_path: build(by_path)?,
        })
    }

    /// The library root that relative-path patterns are anchored to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` relative to the root; a path outside the root is judged by its name alone.
    fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        match path.strip_prefix(&self.root) {
            Ok(rel) => rel,
            Err(_) => path.file_name().map(Path::new).unwrap_or(Path::new("")),
        }
    }

    /// Whether a walk or watcher enters the folder `path` (absolute). Every folder between the
    /// root and `path` is checked too; the root itself is always accepted.
    pub fn accepts_dir(&self, path: &Path) -> bool {
        let rel = self.relative(path);
        let mut prefix = PathBuf::new();
        for part in rel.iter() {
            prefix.push(part);
            if self.entry_excluded(&prefix, part, true) {
                return false;
            }
        }
        true
    }

    /// What the file `path` (absolute) is to us, checking its folders as well as its name.
    pub fn classify(&self, path: &Path) -> FileClass {
        let rel = self.relative(path);
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return FileClass::Ignored;
        };
        let mut prefix = PathBuf::new();
        for part in parent.iter() {
            prefix.push(part);
            if self.entry_excluded(&prefix, part, true) {
                return FileClass::Ignored;
            }
        }
        if self.entry_excluded(rel, name, false) {
            return FileClass::Ignored;
        }
        class_by_extension(name)
    }

    /// This entry alone (its folders were checked on the way down). `rel` is relative to the
    /// root, `name` its last component.
    fn entry_excluded(&self, rel: &Path, name: &OsStr, is_dir: bool) -> bool {
        if name_skipped(name) || self.by_name.is_match(name) {
            return true;
        }
        if self.by_path.is_empty() {
            return false;
        }
        // `a/**` does not match `a` itself in globset; probing with a child name makes folder
        // patterns prune the folder instead of walking it to reject every file inside.
        self.by_path.is_match(rel) || (is_dir && self.by_path.is_match(rel.join("\u{1}")))
    }
}

fn name_skipped(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.first() == Some(&b'.') || SKIPPED_NAMES.iter().any(|s| s.as_bytes() == bytes)
}

/// Walks `root` (the filter's root, or a folder or file under it) and yields candidates and
/// folders; see the module docs. An error item (an unreadable folder, a file that cannot be
/// stat'ed or sniffed) does not end the walk. Files that vanish mid-walk are skipped silently.
/// Files with unknown extensions are sniffed here (a 64-byte read), so every `File` item is a
/// candidate; files with image extensions are not opened.
pub fn walk<'a>(
    root: &Path,
    filter: &'a PathFilter,
) -> impl Iterator<Item = Result<WalkItem, ScanError>> + 'a {
    entries(root, filter).filter_map(move |res| match res {
        Err(err) => Some(Err(err)),
        Ok(entry) => entry_item(entry, filter).transpose(),
    })
}

/// The raw, pruned walk under [`walk`]: every entry that is not hidden or excluded by name or
/// path (files of any extension included), folders not followed through symlinks.
pub(crate) fn entries<'a>(
    root: &Path,
    filter: &'a PathFilter,
) -> impl Iterator<Item = Result<walkdir::DirEntry, ScanError>> + 'a {
    let wanted = filter.accepts_dir(root);
    // The library root may itself be a symlink (a user's `/photos` pointing at a disk); any
    // other starting point (a renamed or rescanned folder) that is a symlink is not followed,
    // or a link renamed inside the library would walk whatever it points at.
    let iter = WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(root == filter.root())
        .into_iter()
        .filter_entry(move |e| {
            e.depth() == 0
                || !filter.entry_excluded(
                    filter.relative(e.path()),
                    e.file_name(),
                    e.file_type().is_dir(),
                )
        })
        .map(|res| res.map_err(walk_error));
    wanted.then_some(iter).into_iter().flatten()
}

fn walk_error(err: walkdir::Error) -> ScanError {
    let path = err.path().map(Path::to_path_buf).unwrap_or_default();
    if err.io_error().is_some() {
        let source = err.into_io_error().expect("checked above");
        ScanError::ReadDir { path, source }
    } else {
        ScanError::Walk { path, source: err }
    }
}

fn entry_item(
    entry: walkdir::DirEntry,
    filter: &PathFilter,
) -> Result<Option<WalkItem>, ScanError> {
    let ft = entry.file_type();
    if ft.is_dir() {
        return Ok(Some(WalkItem::Dir(entry.into_path())));
    }
    let class = if entry.depth() == 0 {
        filter.classify(entry.path())
    } else {
        class_by_extension(entry.file_name())
    };
    if class == FileClass::Ignored {
        return Ok(None);
    }
    let stat = if ft.is_symlink() {
        fs::metadata(entry.path())
    } else if ft.is_file() {
        entry.metadata().map_err(|e| {
            e.into_io_error()
                .unwrap_or_else(|| io::Error::other("metadata failed"))
        })
    } else {
        return Ok(None); // fifo, socket, device
    };
    let read_err = |source: io::Error| ScanError::Read {
        path: entry.path().to_path_buf(),
        source,
    };
    let md = match stat {
        Ok(md) if md.is_file() => md,
        Ok(_) => return Ok(None), // a symlinked folder: not followed
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if class == FileClass::Unknown {
        match sniff_image(entry.path()) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        }
    }
    Ok(Some(WalkItem::File(FileFacts::from_metadata(
        entry.into_path(),
        &md,
    ))))
}

/// Streams `path` through blake3 and returns the lowercase hex digest and the number of bytes
/// read (compare with the size the walk saw: a mismatch means the file changed meanwhile).
///
/// Plain 1 MiB reads: blake3's `update` already runs SIMD over several chunks at a time, and one
/// core hashes far faster than disks or shares deliver (GB/s); the crate's `mmap`/`rayon`
/// features are not enabled in this build.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let total = crate::media::probe::stream_into(&mut hasher, &mut File::open(path)?)?;
    Ok((hasher.finalize().to_hex().to_string(), total))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;

    pub(crate) const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    pub(crate) fn write(path: &Path, bytes: &[u8]) {
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).unwrap();
        }
        fs::write(path, bytes).unwrap();
    }

    fn collect(root: &Path, filter: &PathFilter) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
        let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
        for item in walk(root, filter) {
            match item.unwrap() {
                WalkItem::File(f) => {
                    assert!(files.insert(f.path.strip_prefix(root).unwrap().into()))
                }
                WalkItem::Dir(d) => assert!(dirs.insert(d.strip_prefix(root).unwrap().into())),
            }
        }
        (files, dirs)
    }

    fn set(items: &[&str]) -> BTreeSet<PathBuf> {
        items.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn walk_keeps_photos_and_skips_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for p in [
            "a.jpg",
            "B.JPEG",
            "raw/c.NEF",
            "sub/deep/d.heic",
            ".hidden.jpg",
            ".cache/e.jpg",
            "@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg",
            "thumbs/f.jpg",
            "x/.thumbnails/g.jpg",
            "Private/h.jpg",
            "a.jpg.xmp",
            "a.XMP",
            "notes.txt",
            "clip.MOV",
            "catalog.db",
            "edit.tmp",
        ] {
            write(&root.join(p), JPEG);
        }
        // Content decides for unknown extensions; the deny-list wins for known non-images.
        write(&root.join("IMG_9.bin"), JPEG);
        write(&root.join("noext"), JPEG);
        write(&root.join("readme.bin"), b"hello world, not an image");
        write(&root.join("jpeg-named.json"), JPEG);
        let filter = PathFilter::new(
            root,
            &[
                "/thumbs".into(),
                "**/.thumbnails/**".into(),
                "Private".into(),
            ],
        )
        .unwrap();
        let (files, dirs) = collect(root, &filter);
        assert_eq!(
            files,
            set(&[
                "a.jpg",
                "B.JPEG",
                "raw/c.NEF",
                "sub/deep/d.heic",
                "IMG_9.bin",
                "noext"
            ])
        );
        assert_eq!(dirs, set(&["", "raw", "sub", "sub/deep", "x"]));

        assert_eq!(
            filter.classify(&root.join("x/.thumbnails/g.jpg")),
            FileClass::Ignored
        );
        assert_eq!(
            filter.classify(&root.join("thumbs/f.jpg")),
            FileClass::Ignored
        );
        assert_eq!(
            filter.classify(&root.join("y/Private/z.jpg")),
            FileClass::Ignored
        );
        assert_eq!(filter.classify(&root.join("y/z.jpg")), FileClass::Image);
        assert_eq!(filter.classify(&root.join("y/z.bin")), FileClass::Unknown);
        assert!(!filter.accepts_dir(&root.join("a/@eaDir/b")));
        assert!(filter.accepts_dir(root));

        // A walk of a sub-folder keeps root-relative patterns, and facts are right.
        let items: Vec<_> = walk(&root.join("raw"), &filter)
            .map(Result::unwrap)
            .collect();
        assert_eq!(items.len(), 2);
        let WalkItem::File(facts) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(facts.size, JPEG.len() as u64);
        assert_eq!(facts, &FileFacts::stat(&root.join("raw/c.NEF")).unwrap());
        assert_eq!(walk(&root.join("thumbs"), &filter).count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_do_not_hang_and_linked_files_count() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(&root.join("a/p.jpg"), JPEG);
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink(root.join("a/p.jpg"), root.join("link.jpg")).unwrap();
        std::os::unix::fs::symlink(root.join("missing.jpg"), root.join("dangling.jpg")).unwrap();
        let filter = PathFilter::new(root, &[]).unwrap();
        let (files, dirs) = collect(root, &filter);
        assert_eq!(files, set(&["a/p.jpg", "link.jpg"]));
        assert_eq!(dirs, set(&["", "a"]));
    }

    /// Runs `f` on this thread without the capabilities that let root read any folder, so
    /// permission tests mean something in containers that run tests as root. Capabilities are
    /// per thread on Linux; the test thread ends afterwards anyway.
    #[cfg(target_os = "linux")]
    pub(crate) fn without_dac_override<T>(f: impl FnOnce() -> T) -> T {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
        unsafe {
            let saved;
            if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
                saved = data;
                // CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2
                data[0].effective &= !0b110;
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
            } else {
                saved = data;
            }
            let out = f();
            libc::syscall(libc::SYS_capset, &mut header, saved.as_ptr());
            out
        }
    }

    #[cfg(target_os = "linux")]
    /// A symlink to a folder outside the library, walked as a starting point (a watcher's rename
    /// event, a rescan request): nothing outside is listed. The root itself may be a link.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_folder_inside_the_library_is_never_walked() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        write(&outside.join("secret.jpg"), JPEG);
        let real_root = tmp.path().join("real");
        fs::create_dir_all(&real_root).unwrap();
        write(&real_root.join("a.jpg"), JPEG);
        std::os::unix::fs::symlink(&outside, real_root.join("l2")).unwrap();
        let root = tmp.path().join("lib");
        std::os::unix::fs::symlink(&real_root, &root).unwrap();
        let filter = PathFilter::new(&root, &[]).unwrap();

        let (files, _) = collect(&root, &filter);
        assert_eq!(
            files,
            set(&["a.jpg"]),
            "the root link is followed, the inner one not"
        );
        let inner: Vec<_> = walk(&root.join("l2"), &filter).collect();
        assert!(inner.is_empty(), "{inner:?}");
    }

    #[test]
    fn unreadable_folder_is_reported_and_the_walk_goes_on() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(&root.join("a/locked/x.jpg"), JPEG);
        write(&root.join("b/y.jpg"), JPEG);
        write(&root.join("z.jpg"), JPEG);
        fs::set_permissions(root.join("a/locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let filter = PathFilter::new(root, &[]).unwrap();
        let items: Vec<_> = without_dac_override(|| walk(root, &filter).collect());
        fs::set_permissions(root.join("a/locked"), fs::Permissions::from_mode(0o755)).unwrap();
        let errors: Vec<String> = items
            .iter()
            .filter_map(|i| i.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("a/locked"), "{errors:?}");
        let files = items
            .iter()
            .filter(|i| matches!(i, Ok(WalkItem::File(_))))
            .count();
        assert_eq!(files, 2);
    }

    #[test]
    fn hashes_with_blake3() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("abc");
        write(&p, b"abc");
        let (hex, n) = hash_file(&p).unwrap();
        assert_eq!(
            hex,
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(n, 3);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        write(&p, &big);
        let (hex, n) = hash_file(&p).unwrap();
        assert_eq!(hex, blake3::hash(&big).to_hex().to_string());
        assert_eq!(n, big.len() as u64);
    }

    #[test]
    fn bad_exclude_glob_is_an_error() {
        let e = PathFilter::new(Path::new("/p"), &["a/[".into()]).unwrap_err();
        assert!(e.to_string().contains("a/["), "{e}");
    }
}
