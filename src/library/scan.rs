//! Walks a library root and says which files are candidate photos.
//!
//! Inputs: a root folder and a [`PathFilter`] (hidden names, `exclude` globs, NAS junk folders,
//! non-image extensions). Outputs: [`walk`] yields [`WalkItem::File`] with [`FileFacts`] (absolute
//! path, size, mtime) for each candidate and [`WalkItem::Dir`] for each folder entered, in
//! walk order, streaming (nothing is collected, so 100k files cost no memory here). Unreadable
//! folders come out as [`ScanError`] items and the walk goes on.
//!
//! Also: [`sniff_image`] (file type from the first bytes, never from the name alone) and
//! [`hash_file`] (blake3 content hash, the photo's identity in the catalog).
//!
//! Symlinks: symlinked *directories* are never followed (no loops, no escaping the root, no
//! photo seen twice through two paths); symlinked *files* are candidates like regular files,
//! with the size and mtime of their target.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

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

/// What a file's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    /// A photo extension (`.jpg`, `.heic`, `.dng`, …; any case).
    Image,
    /// No extension, or one we do not know: a candidate only if [`sniff_image`] says image.
    Unknown,
    /// Hidden, excluded, a sidecar (`.xmp`) or an obvious non-image (`.txt`, `.mov`, `.db`, …).
    Ignored,
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

/// Classifies by extension alone (case-insensitive).
pub fn class_by_extension(name: &OsStr) -> FileClass {
    let Some(ext) = Path::new(name).extension() else {
        return FileClass::Unknown;
    };
    let bytes = ext.as_encoded_bytes();
    let mut buf = [0u8; 12];
    if bytes.len() > buf.len() {
        return FileClass::Unknown;
    }
    for (d, s) in buf.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    let Ok(lower) = std::str::from_utf8(&buf[..bytes.len()]) else {
        return FileClass::Unknown;
    };
    match lower {
        "jpg" | "jpeg" | "jpe" | "jfif" | "png" | "tif" | "tiff" | "webp" | "gif" | "bmp"
        | "dib" | "heic" | "heif" | "hif" | "avif" | "jxl" => FileClass::Image,
        _ if RAW_EXTENSIONS.contains(&lower) => FileClass::Image,
        // Sidecars and edit files.
        "xmp" | "pp3" | "dop" | "aae" | "on1" | "lrcat" | "lrdata" | "cos" | "arp"
        // Video and audio (their THM/LRV companions are thumbnails).
        | "mov" | "mp4" | "m4v" | "avi" | "mkv" | "mts" | "m2ts" | "3gp" | "wmv" | "mpg"
        | "mpeg" | "webm" | "thm" | "lrv" | "mp3" | "m4a" | "wav" | "aac" | "flac" | "ogg"
        // Text, documents, databases, archives, partial downloads.
        | "txt" | "json" | "xml" | "html" | "htm" | "md" | "csv" | "log" | "ini" | "cfg"
        | "pdf" | "doc" | "docx" | "db" | "sqlite" | "sqlite3" | "db-wal" | "db-shm"
        | "db-journal" | "zip" | "tar" | "gz" | "7z" | "rar" | "part" | "crdownload"
        | "download" | "tmp" | "swp" | "exe" | "dll" | "so" | "sh" | "py" | "js" | "css" => {
            FileClass::Ignored
        }
        _ => FileClass::Unknown,
    }
}

/// Camera raw extensions whose files are (mostly) TIFF containers or have their own magic.
/// Camera raw extensions (lower case).
pub const RAW_EXTENSIONS: &[&str] = &[
    "dng", "nef", "nrw", "cr2", "cr3", "crw", "arw", "srf", "sr2", "orf", "rw2", "raf", "pef",
    "srw", "x3f", "erf", "3fr", "mef", "mos", "iiq", "rwl", "kdc", "dcr",
];

/// Whether a file name has a camera-raw extension (case-insensitive).
pub fn has_raw_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| RAW_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
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
    let iter = WalkDir::new(root)
        .follow_links(false)
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

/// A file type recognised from content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Jpeg,
    Png,
    /// A TIFF container with a non-raw extension.
    Tiff,
    /// Camera raw: TIFF-based raws (DNG, NEF, ARW, PEF, … by extension; CR2, ORF, RW2 by
    /// magic), Fujifilm RAF, Canon CR3.
    Raw,
    /// HEIF with HEVC (`.heic`) or a generic HEIF brand.
    Heic,
    Avif,
    WebP,
    Gif,
    Bmp,
    Jxl,
}

/// How many leading bytes [`sniff_image`] reads.
pub const SNIFF_LEN: usize = 64;

/// Reads the first bytes of `path` and says which image format it holds, if any. The extension
/// only refines a TIFF container into [`ImageKind::Raw`]. A short or empty file is `Ok(None)`.
pub fn sniff_image(path: &Path) -> io::Result<Option<ImageKind>> {
    let mut head = [0u8; SNIFF_LEN];
    let mut file = File::open(path)?;
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = sniff_bytes(&head[..len]);
    let raw_ext = path
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| RAW_EXTENSIONS.iter().any(|r| r.eq_ignore_ascii_case(e)));
    Ok(match kind {
        Some(ImageKind::Tiff) if raw_ext => Some(ImageKind::Raw),
        other => other,
    })
}

/// [`sniff_image`] on bytes already read (the first [`SNIFF_LEN`] are enough).
pub fn sniff_bytes(head: &[u8]) -> Option<ImageKind> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some(ImageKind::Jpeg);
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(ImageKind::Png);
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        // Canon CR2 marks itself at offset 8.
        return Some(if at(8, b"CR") {
            ImageKind::Raw
        } else {
            ImageKind::Tiff
        });
    }
    // Olympus ORF, Panasonic RW2: TIFF with their own magic.
    if at(0, b"IIRO") || at(0, b"IIRS") || at(0, b"MMOR") || at(0, b"IIU\0") {
        return Some(ImageKind::Raw);
    }
    if at(0, b"FUJIFILMCCD-RAW") {
        return Some(ImageKind::Raw);
    }
    if at(4, b"ftyp") {
        return sniff_ftyp(head);
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some(ImageKind::WebP);
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some(ImageKind::Gif);
    }
    // "BM", then file size, then two reserved u16 that writers leave zero.
    if at(0, b"BM") && at(6, &[0, 0, 0, 0]) {
        return Some(ImageKind::Bmp);
    }
    if at(0, &[0xFF, 0x0A]) || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some(ImageKind::Jxl);
    }
    None
}

/// ISO base media `ftyp` box: major brand at 8, compatible brands from 16 to the box end.
fn sniff_ftyp(head: &[u8]) -> Option<ImageKind> {
    let brand = |b: &[u8]| -> Option<ImageKind> {
        match b {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"hevm" | b"hevs" => {
                Some(ImageKind::Heic)
            }
            b"avif" | b"avis" => Some(ImageKind::Avif),
            b"crx " => Some(ImageKind::Raw),
            _ => None,
        }
    };
    let major = head.get(8..12)?;
    if let Some(kind) = brand(major) {
        return Some(kind);
    }
    let box_len = u32::from_be_bytes(head[0..4].try_into().ok()?) as usize;
    let end = box_len.min(head.len());
    let compatible: Vec<&[u8]> = head.get(16..end)?.chunks_exact(4).collect();
    // A generic HEIF major brand (mif1/msf1/miaf) names the codec among the compatible ones.
    if let Some(kind) = compatible.iter().find_map(|b| brand(b)) {
        return Some(kind);
    }
    match major {
        b"mif1" | b"msf1" | b"miaf" => Some(ImageKind::Heic),
        _ => None, // mp4, mov, 3gp, …
    }
}

/// Streams `path` through blake3 and returns the lowercase hex digest and the number of bytes
/// read (compare with the size the walk saw: a mismatch means the file changed meanwhile).
///
/// Plain 1 MiB reads: blake3's `update` already runs SIMD over several chunks at a time, and one
/// core hashes far faster than disks or shares deliver (GB/s); the crate's `mmap`/`rayon`
/// features are not enabled in this build.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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
    fn sniffs_formats_from_content() {
        let cases: &[(&[u8], Option<ImageKind>)] = &[
            (JPEG, Some(ImageKind::Jpeg)),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(ImageKind::Png)),
            (b"II*\0\x08\0\0\0", Some(ImageKind::Tiff)),
            (b"MM\0*\0\0\0\x08", Some(ImageKind::Tiff)),
            (b"II*\0\x10\0\0\0CR\x02\0", Some(ImageKind::Raw)),
            (b"IIRO\x08\0\0\0", Some(ImageKind::Raw)),
            (b"IIU\0\x18\0\0\0", Some(ImageKind::Raw)),
            (b"FUJIFILMCCD-RAW 0201", Some(ImageKind::Raw)),
            (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", Some(ImageKind::Heic)),
            (
                b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf",
                Some(ImageKind::Avif),
            ),
            (b"\0\0\0\x18ftypavif\0\0\0\0avifmif1", Some(ImageKind::Avif)),
            (
                b"\0\0\0\x18ftypcrx \0\0\0\x01crx isom",
                Some(ImageKind::Raw),
            ),
            (b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2", None),
            (b"\0\0\0\x14ftypqt  \0\0\x02\0qt  ", None),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some(ImageKind::WebP)),
            (b"RIFF\x24\0\0\0WAVEfmt ", None),
            (b"GIF89a\x01\0\x01\0", Some(ImageKind::Gif)),
            (b"BM\x3a\0\0\0\0\0\0\0\x36\0", Some(ImageKind::Bmp)),
            (b"BMW is a car", None),
            (b"\xff\x0a\xfa", Some(ImageKind::Jxl)),
            (b"", None),
            (b"\xff", None),
            (b"<?xpacket begin", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                sniff_bytes(bytes),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let dng = tmp.path().join("x.DNG");
        write(&dng, b"II*\0\x08\0\0\0");
        assert_eq!(sniff_image(&dng).unwrap(), Some(ImageKind::Raw));
        let tif = tmp.path().join("x.tif");
        write(&tif, b"II*\0\x08\0\0\0");
        assert_eq!(sniff_image(&tif).unwrap(), Some(ImageKind::Tiff));
        let empty = tmp.path().join("empty.jpg");
        write(&empty, b"");
        assert_eq!(sniff_image(&empty).unwrap(), None);
        assert!(sniff_image(&tmp.path().join("nope")).is_err());
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
