//! Where an image's sidecar lives: [`sidecar_path`].
//!
//! - `ext` (default): `IMG_1.JPG.xmp`, the image's full name plus `.xmp` (digiKam, darktable,
//!   Immich). Every image has its own, so there is never a second writer.
//! - `stem`: `IMG_1.xmp` (Lightroom, Capture One). Images sharing a stem (`IMG_1.CR2` +
//!   `IMG_1.JPG`) share the file, so exactly one of them writes it: **a non-RAW image**, because
//!   captiond captions the camera JPEG (it has no RAW decoder) and its results describe the RAW
//!   too, which is what Lightroom and Capture One attach `IMG_1.xmp` to; among several candidates
//!   of the same kind, the one whose extension sorts first (ASCII, case-insensitive), then by file
//!   name. The others get [`SidecarLocation::Skip`] naming the writer.
//!
//! An existing sidecar is found case-insensitively (`IMG_1.jpg.XMP` counts); when several spellings
//! exist, the exact default name wins, then the first in byte order. A new file is named with the
//! image's case and a lowercase `.xmp`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::config::SidecarNaming;
use crate::library::scan::{class_by_extension, FileClass};

/// Whether a path has a camera raw extension (the scanner's list).
pub fn is_raw(path: &Path) -> bool {
    crate::library::scan::has_raw_extension(path)
}

/// Where to write an image's sidecar, or why not to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarLocation {
    /// This image writes `path`; `exists` tells whether a file is there now.
    Write { path: PathBuf, exists: bool },
    /// Another image sharing the stem (`writer`) owns `path`.
    Skip { path: PathBuf, writer: PathBuf },
}

impl SidecarLocation {
    pub fn path(&self) -> &Path {
        match self {
            SidecarLocation::Write { path, .. } | SidecarLocation::Skip { path, .. } => path,
        }
    }
}

fn default_name(image: &Path, naming: SidecarNaming) -> OsString {
    let name = match naming {
        SidecarNaming::Ext => image.file_name(),
        SidecarNaming::Stem => image.file_stem(),
    };
    let mut n = name.unwrap_or_default().to_os_string();
    n.push(".xmp");
    n
}

fn same_ignoring_ascii_case(a: &OsStr, b: &OsStr) -> bool {
    a.as_encoded_bytes()
        .eq_ignore_ascii_case(b.as_encoded_bytes())
}

/// Finds the sidecar for `image` under `naming`; see the module docs for the rules.
pub fn sidecar_path(image: &Path, naming: SidecarNaming) -> SidecarLocation {
    let dir = match image.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let wanted = default_name(image, naming);
    let mut names: Vec<OsString> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    names.sort();

    let existing = if names.contains(&wanted) {
        Some(wanted.clone())
    } else {
        names
            .iter()
            .find(|n| same_ignoring_ascii_case(n, &wanted))
            .cloned()
    };
    let path = dir.join(existing.as_ref().unwrap_or(&wanted));
    let exists = existing.is_some() || path.exists();

    if naming == SidecarNaming::Stem {
        let stem = image.file_stem().unwrap_or_default();
        let own = image.file_name().unwrap_or_default();
        let mut candidates: Vec<OsString> = names
            .iter()
            .filter(|n| {
                let p = Path::new(n.as_os_str());
                p.extension().is_some()
                    && p.file_stem()
                        .is_some_and(|s| same_ignoring_ascii_case(s, stem))
                    && class_by_extension(n) == FileClass::Image
            })
            .cloned()
            .collect();
        if !candidates.iter().any(|n| n.as_os_str() == own) {
            // The image itself may not be listed (a race with a rename): it competes anyway.
            candidates.push(own.to_os_string());
        }
        let key = |n: &OsString| {
            let p = Path::new(n.as_os_str());
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            (is_raw(p), ext, n.as_encoded_bytes().to_vec())
        };
        let writer = candidates.into_iter().min_by_key(key);
        if let Some(writer) = writer {
            if writer != own {
                return SidecarLocation::Skip {
                    path,
                    writer: dir.join(writer),
                };
            }
        }
    }
    SidecarLocation::Write { path, exists }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn ext_naming_keeps_case_and_finds_existing_case_insensitively() {
        let d = tempfile::tempdir().unwrap();
        let img = touch(d.path(), "IMG_1.JPG");
        assert_eq!(
            sidecar_path(&img, SidecarNaming::Ext),
            SidecarLocation::Write {
                path: d.path().join("IMG_1.JPG.xmp"),
                exists: false
            }
        );
        touch(d.path(), "img_1.jpg.XMP");
        assert_eq!(
            sidecar_path(&img, SidecarNaming::Ext),
            SidecarLocation::Write {
                path: d.path().join("img_1.jpg.XMP"),
                exists: true
            }
        );
        // The exact name wins over another spelling.
        touch(d.path(), "IMG_1.JPG.xmp");
        assert_eq!(
            sidecar_path(&img, SidecarNaming::Ext).path(),
            d.path().join("IMG_1.JPG.xmp")
        );
    }

    #[test]
    fn stem_naming_gives_a_raw_jpeg_pair_one_writer() {
        let d = tempfile::tempdir().unwrap();
        let jpg = touch(d.path(), "IMG_2.JPG");
        let raw = touch(d.path(), "IMG_2.CR2");
        touch(d.path(), "IMG_2.mov");
        touch(d.path(), "IMG_2.XMP");
        // The JPEG is the one captioned, so it writes the pair's shared sidecar.
        assert_eq!(
            sidecar_path(&jpg, SidecarNaming::Stem),
            SidecarLocation::Write {
                path: d.path().join("IMG_2.XMP"),
                exists: true
            }
        );
        assert_eq!(
            sidecar_path(&raw, SidecarNaming::Stem),
            SidecarLocation::Skip {
                path: d.path().join("IMG_2.XMP"),
                writer: jpg.clone()
            }
        );
        // JPEG + PNG, no RAW: the extension that sorts first writes.
        let a = touch(d.path(), "b.png");
        let b = touch(d.path(), "b.jpg");
        assert!(matches!(
            sidecar_path(&b, SidecarNaming::Stem),
            SidecarLocation::Write { .. }
        ));
        assert!(matches!(
            sidecar_path(&a, SidecarNaming::Stem),
            SidecarLocation::Skip { .. }
        ));
        // A lone image writes.
        let c = touch(d.path(), "c.jpg");
        assert_eq!(
            sidecar_path(&c, SidecarNaming::Stem),
            SidecarLocation::Write {
                path: d.path().join("c.xmp"),
                exists: false
            }
        );
    }
}
