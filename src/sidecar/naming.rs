//! Where an image's sidecar lives: [`sidecar_path`].
//!
//! - `ext` (default): `IMG_1.JPG.xmp`, the image's full name plus `.xmp` (digiKam, darktable,
//!   Immich). Every image has its own, so there is never a second writer.
//! - `stem`: `IMG_1.xmp` (Lightroom, Capture One). Images sharing a stem (`IMG_1.CR2` +
//!   `IMG_1.JPG`) share the file, so exactly one of them writes it: **the RAW**, when captiond
//!   captions it (it has an embedded JPEG preview, [`crate::media::raw::file_has_preview`]),
//!   because `IMG_1.xmp` is the RAW's sidecar to Lightroom and Capture One; else a non-RAW image
//!   (the camera JPEG, whose results describe the RAW too); a RAW captiond cannot caption comes
//!   last. Among several candidates of the same kind, the one whose extension sorts first (ASCII,
//!   case-insensitive), then by file name. The others get [`SidecarLocation::Skip`] naming the
//!   writer.
//!
//! An existing sidecar is found case-insensitively (`IMG_1.jpg.XMP` counts); when several spellings
//! exist, the exact default name wins, then the first in byte order. Under `ext` naming a spelling
//! that is exactly another file's sidecar name is that file's, never ours: `c.JPG.xmp` belongs to
//! `c.JPG`, not to `c.jpg` beside it. A new file is named with the image's case and a lowercase
//! `.xmp`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::media::kind::{class_by_extension, FileClass};

/// How a library's sidecar files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarNaming {
    /// `IMG_1.JPG.xmp` (digiKam, darktable, Immich).
    Ext,
    /// `IMG_1.xmp` (Lightroom, Capture One).
    Stem,
}

/// Whether a path has a camera raw extension (the scanner's list).
pub fn is_raw(path: &Path) -> bool {
    crate::media::kind::has_raw_extension(path)
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

/// Whether the file `name` is an image whose stem is `stem` (ignoring ASCII case): a candidate
/// writer of the `stem`-named sidecar `<stem>.xmp`.
fn shares_stem(name: &OsStr, stem: &OsStr) -> bool {
    let p = Path::new(name);
    p.extension().is_some()
        && p.file_stem()
            .is_some_and(|s| same_ignoring_ascii_case(s, stem))
        && class_by_extension(name) == FileClass::Image
}

/// The other images that share `image`'s sidecar file under `naming`, as they are now: with
/// `stem`, every other image in its folder with the same stem (`IMG_1.CR2` for `IMG_1.JPG`),
/// whether or not `image` itself is still there; with `ext`, none (each image has its own).
/// A sidecar with such sharers is not `image`'s alone to move.
pub fn sharers(image: &Path, naming: SidecarNaming) -> Vec<PathBuf> {
    if naming == SidecarNaming::Ext {
        return Vec::new();
    }
    let (Some(stem), Some(own)) = (image.file_stem(), image.file_name()) else {
        return Vec::new();
    };
    let dir = match image.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|n| n.as_os_str() != own && shares_stem(n, stem))
                .map(|n| dir.join(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
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

    // `ext`: `X.xmp` is the sidecar of the file `X` when that file is there and is not us.
    // Only names equal to `wanted` but for ASCII case are asked, so the last 4 bytes are `.xmp`.
    let anothers = |n: &OsString| {
        let owner = &n.as_encoded_bytes()[..n.len() - 4];
        naming == SidecarNaming::Ext
            && owner != image.file_name().unwrap_or_default().as_encoded_bytes()
            && names.iter().any(|m| m.as_encoded_bytes() == owner)
    };
    let existing = if names.contains(&wanted) {
        Some(wanted.clone())
    } else {
        names
            .iter()
            .find(|n| same_ignoring_ascii_case(n, &wanted) && !anothers(n))
            .cloned()
    };
    let path = dir.join(existing.as_ref().unwrap_or(&wanted));
    let exists = existing.is_some() || path.exists();

    if naming == SidecarNaming::Stem {
        let stem = image.file_stem().unwrap_or_default();
        let own = image.file_name().unwrap_or_default();
        let mut candidates: Vec<OsString> = names
            .iter()
            .filter(|n| shares_stem(n, stem))
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
            // 0: a RAW we caption, 1: any other image, 2: a RAW we cannot caption.
            let rank = if !is_raw(p) {
                1
            } else if crate::media::raw::file_has_preview(&dir.join(p)) {
                0
            } else {
                2
            };
            (rank, ext, n.as_encoded_bytes().to_vec())
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

    /// `c.JPG` and `c.jpg` side by side (a case-sensitive filesystem): each has its own
    /// sidecar; the one of `c.JPG` is never taken for `c.jpg`'s, whichever exists first.
    #[test]
    fn names_differing_in_case_get_their_own_sidecars() {
        let d = tempfile::tempdir().unwrap();
        let upper = touch(d.path(), "c.JPG");
        let lower = touch(d.path(), "c.jpg");
        touch(d.path(), "c.JPG.xmp");
        assert_eq!(
            sidecar_path(&lower, SidecarNaming::Ext),
            SidecarLocation::Write {
                path: d.path().join("c.jpg.xmp"),
                exists: false
            }
        );
        assert_eq!(
            sidecar_path(&upper, SidecarNaming::Ext),
            SidecarLocation::Write {
                path: d.path().join("c.JPG.xmp"),
                exists: true
            }
        );
        // With `c.JPG` gone (moved away), its differently cased sidecar is found again.
        std::fs::remove_file(&upper).unwrap();
        assert_eq!(
            sidecar_path(&lower, SidecarNaming::Ext).path(),
            d.path().join("c.JPG.xmp")
        );
    }

    #[test]
    fn a_captioned_raw_writes_the_stem_sidecar_of_its_pair() {
        use crate::media::raw::tests::{jpeg, RawBuilder};
        let d = tempfile::tempdir().unwrap();
        let nef = d.path().join("IMG_3.NEF");
        std::fs::write(
            &nef,
            RawBuilder::nef_like(true, jpeg(8, 8, 0), jpeg(32, 24, 1), 1).build(),
        )
        .unwrap();
        let jpg = touch(d.path(), "IMG_3.JPG");
        let dng = touch(d.path(), "IMG_3.dng"); // no preview: never the writer
        assert_eq!(
            sidecar_path(&nef, SidecarNaming::Stem),
            SidecarLocation::Write {
                path: d.path().join("IMG_3.xmp"),
                exists: false
            }
        );
        for other in [&jpg, &dng] {
            assert_eq!(
                sidecar_path(other, SidecarNaming::Stem),
                SidecarLocation::Skip {
                    path: d.path().join("IMG_3.xmp"),
                    writer: nef.clone()
                }
            );
        }
        // `ext` naming: each its own, RAW included.
        assert_eq!(
            sidecar_path(&nef, SidecarNaming::Ext).path(),
            d.path().join("IMG_3.NEF.xmp")
        );
        // Without the captioned RAW, the JPEG writes and the preview-less DNG does not.
        std::fs::remove_file(&nef).unwrap();
        assert!(matches!(
            sidecar_path(&jpg, SidecarNaming::Stem),
            SidecarLocation::Write { .. }
        ));
        assert!(matches!(
            sidecar_path(&dng, SidecarNaming::Stem),
            SidecarLocation::Skip { writer, .. } if writer == jpg
        ));
    }

    #[test]
    fn stem_naming_gives_a_raw_jpeg_pair_one_writer() {
        let d = tempfile::tempdir().unwrap();
        let jpg = touch(d.path(), "IMG_2.JPG");
        let raw = touch(d.path(), "IMG_2.CR2");
        touch(d.path(), "IMG_2.mov");
        touch(d.path(), "IMG_2.XMP");
        // This CR2 has no embedded preview (so it is not captioned): the JPEG writes the pair's
        // shared sidecar.
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
        // Sharers: the other images of the stem, whether or not the image itself is there.
        assert_eq!(sharers(&jpg, SidecarNaming::Stem), vec![raw.clone()]);
        std::fs::remove_file(&jpg).unwrap();
        assert_eq!(sharers(&jpg, SidecarNaming::Stem), vec![raw.clone()]);
        assert!(sharers(&raw, SidecarNaming::Stem).is_empty());
        assert!(sharers(&raw, SidecarNaming::Ext).is_empty());
        touch(d.path(), "IMG_2.JPG");
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
