//! A catalogued photo turned up at a new path (moved, renamed or copied inside the libraries, same
//! content): its sidecar follows it, as digiKam and Lightroom do. See [`follow`].

use std::fs;
use std::path::{Path, PathBuf};

use super::naming::SidecarNaming;
use super::naming::{sharers, sidecar_path, SidecarLocation};
use super::write::{move_file, MoveError};
use super::{rewrite, RewriteOutcome, SidecarError, SidecarSettings, SkipReason, WriteOutcome};
use crate::catalog::{Catalog, PhotoState};

/// What [`follow`] did for one photo.
#[derive(Debug)]
pub struct FollowOutcome {
    /// The old sidecar file that was moved to the photo's new place, if one was.
    pub moved_from: Option<PathBuf>,
    /// The old sidecar could not be moved (it stays where it was; the new place got a fresh
    /// sidecar from the rewrite instead).
    pub move_error: Option<SidecarError>,
    /// The rewrite at the new place (after the move, if any).
    pub rewrite: RewriteOutcome,
}

/// Brings `image`'s sidecar to its new place and up to date. `image` is a photo the catalog has
/// present there with content it already knew; `from` is where it was before (its old path and
/// that library's sidecar naming) when it moved, `None` for a copy.
///
/// With `settings.sidecar`, the old sidecar file is *moved* (so a person's own edits in it travel
/// with the photo) when all of these hold: the photo is no longer at `from`; the old sidecar
/// exists, is a regular file and belongs to that photo alone (with `stem` naming no other image
/// in the old folder shares its stem: a RAW left behind keeps the pair's `IMG_1.xmp`); the
/// photo writes its new sidecar (not another image's under `stem` naming) and none exists there
/// yet. The move never replaces a file that is there. Then, in every case, [`rewrite`] merges
/// our current results into the new place's sidecar (creating one if needed) and embedded XMP.
/// No sidecar is ever deleted; a copy's original keeps its own.
pub fn follow(
    catalog: &Catalog,
    image: &Path,
    from: Option<(&Path, SidecarNaming)>,
    settings: &SidecarSettings,
) -> Result<FollowOutcome, SidecarError> {
    let present = catalog
        .photo_by_path(image)
        .map_err(|source| SidecarError::Catalog {
            path: image.to_path_buf(),
            source: Box::new(source),
        })?
        .is_some_and(|row| row.state == PhotoState::Present);
    if !present {
        // Moved on, or deleted, since: whoever recorded that handles it.
        let skip = WriteOutcome::Skipped(SkipReason::NotInCatalog);
        return Ok(FollowOutcome {
            moved_from: None,
            move_error: None,
            rewrite: RewriteOutcome {
                sidecar: skip.clone(),
                embedded: skip,
            },
        });
    }
    let mut moved_from = None;
    let mut move_error = None;
    if settings.sidecar {
        if let Some((old, new)) =
            from.and_then(|(old_image, naming)| movable(old_image, naming, image, settings.naming))
        {
            match move_file(&old, &new) {
                Ok(()) => moved_from = Some(old),
                // Created meanwhile: merge into that one.
                Err(MoveError::Exists) => {}
                Err(MoveError::Io(e)) => move_error = Some(e),
            }
        }
    }
    Ok(FollowOutcome {
        moved_from,
        move_error,
        rewrite: rewrite(catalog, image, settings)?,
    })
}

/// `(old sidecar, new sidecar)` when the old one may be moved; see [`follow`].
fn movable(
    old_image: &Path,
    old_naming: SidecarNaming,
    image: &Path,
    naming: SidecarNaming,
) -> Option<(PathBuf, PathBuf)> {
    if old_image == image || fs::symlink_metadata(old_image).is_ok() {
        // Still there (a copy, or something new in its place): the sidecar stays with it.
        return None;
    }
    let SidecarLocation::Write {
        path: old,
        exists: true,
    } = sidecar_path(old_image, old_naming)
    else {
        return None;
    };
    if !sharers(old_image, old_naming).is_empty()
        || !fs::symlink_metadata(&old).is_ok_and(|m| m.is_file())
    {
        return None;
    }
    let SidecarLocation::Write {
        path: new,
        exists: false,
    } = sidecar_path(image, naming)
    else {
        return None;
    };
    Some((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn only_a_gone_photo_s_own_sidecar_moves_and_never_onto_another() {
        let d = tempfile::tempdir().unwrap();
        let (ext, stem) = (SidecarNaming::Ext, SidecarNaming::Stem);
        let new = touch(d.path(), "sub/IMG_1.JPG");
        let old = d.path().join("IMG_1.JPG");
        // No old sidecar: nothing to move.
        assert_eq!(movable(&old, ext, &new, ext), None);
        let old_xmp = touch(d.path(), "img_1.jpg.XMP");
        assert_eq!(
            movable(&old, ext, &new, ext),
            Some((old_xmp.clone(), d.path().join("sub/IMG_1.JPG.xmp")))
        );
        // The old photo is still there: a copy.
        touch(d.path(), "IMG_1.JPG");
        assert_eq!(movable(&old, ext, &new, ext), None);
        fs::remove_file(&old).unwrap();
        // The new place has a sidecar already.
        let there = touch(d.path(), "sub/IMG_1.JPG.xmp");
        assert_eq!(movable(&old, ext, &new, ext), None);
        fs::remove_file(&there).unwrap();

        // `stem`: IMG_1.xmp moves with the JPEG only when no RAW stays behind.
        let old_stem = touch(d.path(), "IMG_1.xmp");
        assert_eq!(
            movable(&old, stem, &new, stem),
            Some((old_stem.clone(), d.path().join("sub/IMG_1.xmp")))
        );
        touch(d.path(), "IMG_1.CR2");
        assert_eq!(movable(&old, stem, &new, stem), None);
        // A PNG arriving beside a JPEG of the same stem does not write their `IMG_1.xmp` (the
        // JPEG does): the old sidecar is not moved onto the JPEG's.
        fs::remove_file(d.path().join("IMG_1.CR2")).unwrap();
        let new_png = touch(d.path(), "sub/IMG_1.png");
        let old_png = d.path().join("IMG_1.png");
        assert_eq!(movable(&old_png, stem, &new_png, stem), None);
        assert!(old_stem.exists());
    }
}
