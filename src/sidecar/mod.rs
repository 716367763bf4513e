//! XMP sidecars (and opt-in embedded XMP) that digiKam, darktable, Lightroom, Immich and PhotoPrism
//! read, merged into whatever is already there without destroying anyone's work.
//!
//! # API (what the daemon and `captiond sidecars rewrite` call)
//!
//! ```no_run
//! # use captiond::sidecar::*;
//! # use captiond::config::SidecarNaming;
//! # fn demo(results: &[captiond::catalog::StoredResult], keywords: &[String]) -> Result<(), SidecarError> {
//! let settings = SidecarSettings { naming: SidecarNaming::Ext, ..SidecarSettings::default() };
//! let mut content = SidecarContent::from_results(results, keywords);
//! content.stored_size = Some((4000, 3000)); // MediaFacts width/height, before orientation
//! let image = std::path::Path::new("/photos/IMG_1.JPG");
//! match write_sidecar(image, &content, &settings)? {
//!     WriteOutcome::Created | WriteOutcome::Updated => {}
//!     WriteOutcome::Unchanged => {}          // nothing of ours changed: file not touched
//!     WriteOutcome::Skipped(reason) => tracing::debug!(%reason, "no sidecar"),
//! }
//! embed_xmp(image, &content, &settings)?;   // Skipped(EmbedDisabled) unless settings.embed
//! # Ok(()) }
//! ```
//!
//! - [`sidecar_path`] → [`SidecarLocation`]: `IMG_1.JPG.xmp` (`ext`) or `IMG_1.xmp` (`stem`),
//!   existing files found case-insensitively; with `stem`, of a RAW+JPEG pair only the RAW writes
//!   (rules in [`naming`]).
//! - [`SidecarContent::from_results`] builds what we write from the catalog's results.
//! - [`write_sidecar`] merges into the sidecar (or creates it) and returns a [`WriteOutcome`].
//! - [`embed_xmp`] does the same inside a JPEG (`APP1`) or PNG (`iTXt`) when
//!   [`SidecarSettings::embed`] is set; never RAW.
//! - [`rewrite`] / [`rewrite_under`] regenerate from the catalog (for `captiond sidecars rewrite
//!   [PATH]`); files whose content would not change are not touched.
//!
//! A failed sidecar is a [`SidecarError`] naming the file; callers log it (or mark the job) and go
//! on with the next photo.
//!
//! # What is written
//!
//! `dc:description` (x-default) + `photoshop:CaptionWriter`; keywords in `dc:subject`,
//! `lr:hierarchicalSubject` (`AI|dog`) and `digiKam:TagsList` (`AI/dog`), and in
//! `MicrosoftPhoto:LastKeywordXMP`/`mediapro:CatalogSets` when those already exist; boxes as IPTC
//! `Iptc4xmpExt:ImageRegion` (relative rectangle, top-left origin, stored frame, role
//! `subjectArea`); MWG `mwg-rs:Regions` only with [`SidecarSettings::mwg_regions`];
//! `xmp:MetadataDate` when anything changed; provenance and ownership records in the `captiond`
//! namespace ([`xmp::NS_CAPTIOND`]). Never `Iptc4xmpExt:DigitalSourceType`. The merge rules are
//! in [`merge`], the RDF model in [`xmp`], the atomic write in `write.rs`.

pub mod content;
pub mod embed;
pub mod merge;
pub mod naming;
mod write;
pub mod xmp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::catalog::{Catalog, CatalogError, PhotoState};
use crate::config::SidecarNaming;

pub use content::{Provenance, SidecarContent};
pub use naming::{is_raw, sidecar_path, SidecarLocation};
pub use xmp::{Packet, XmpError};

use content::Clean;
use write::{update_file, Change, Done};

/// How sidecars are written. Recommended config keys: `naming` per `[[library]]`, the rest in a
/// `[sidecar]` table as `keyword_parent`, `mwg_regions`, `embed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSettings {
    /// `ext` (`IMG_1.JPG.xmp`, default) or `stem` (`IMG_1.xmp`).
    pub naming: SidecarNaming,
    /// Parent of our hierarchical keywords (`AI` → `AI|dog`, `AI/dog`); `|` or `/` nest further;
    /// empty puts them at the top level. Default `AI`.
    pub keyword_parent: String,
    /// Also write MWG regions (`mwg-rs:Regions`). Default off: digiKam and Immich treat every MWG
    /// region as a face/person.
    pub mwg_regions: bool,
    /// Also embed XMP into JPEG and PNG originals (changes their bytes). Default off.
    pub embed: bool,
}

impl Default for SidecarSettings {
    fn default() -> Self {
        SidecarSettings {
            naming: SidecarNaming::Ext,
            keyword_parent: "AI".to_string(),
            mwg_regions: false,
            embed: false,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Updated,
    /// The file already holds exactly our content: not touched.
    Unchanged,
    Skipped(SkipReason),
}

/// Why nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `stem` naming: another image sharing the stem writes this sidecar.
    NotWriter { writer: PathBuf },
    /// The file has no write permission: the person locked it.
    ReadOnly,
    /// No sidecar exists and we have nothing to put in one.
    NothingToWrite,
    /// [`SidecarSettings::embed`] is off.
    EmbedDisabled,
    /// Not a JPEG or PNG (RAW files are never embedded into).
    NotEmbeddable,
    /// The catalog has no photo at this path.
    NotInCatalog,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotWriter { writer } => {
                write!(f, "the sidecar belongs to {}", writer.display())
            }
            SkipReason::ReadOnly => f.write_str("the file is read-only"),
            SkipReason::NothingToWrite => f.write_str("nothing to write"),
            SkipReason::EmbedDisabled => f.write_str("embedding is off"),
            SkipReason::NotEmbeddable => f.write_str("not a JPEG or PNG"),
            SkipReason::NotInCatalog => f.write_str("not in the catalog"),
        }
    }
}

/// Why a sidecar (or embedded packet) could not be written. The file is then as it was.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot {action} {path}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not XMP captiond can safely merge into; it was left untouched")]
    Parse {
        path: PathBuf,
        #[source]
        source: XmpError,
    },
    #[error(
        "{path} kept changing while captiond merged into it; left as the other program wrote it"
    )]
    Conflict { path: PathBuf },
    #[error("cannot embed XMP into {path}: {reason}; the file was left untouched")]
    Embed { path: PathBuf, reason: String },
    #[error("cannot read the catalog entry of {path}")]
    Catalog {
        path: PathBuf,
        #[source]
        source: Box<CatalogError>,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Our content merged into `old`; `None` when that changes nothing. Stamps `xmp:MetadataDate`.
fn merged(old: &Packet, clean: &Clean, settings: &SidecarSettings) -> Option<Packet> {
    let mut p = old.clone();
    merge::merge(&mut p, clean, settings);
    if p.same_data(old) {
        return None;
    }
    p.set(
        xmp::NS_XMP,
        "MetadataDate",
        xmp::Node::text(merge::xmp_date(now_ms())),
    );
    p.toolkit = Some("captiond".to_string());
    Some(p)
}

fn outcome(done: Done) -> WriteOutcome {
    match done {
        Done::Created => WriteOutcome::Created,
        Done::Updated => WriteOutcome::Updated,
        Done::Unchanged => WriteOutcome::Unchanged,
        Done::Skipped(r) => WriteOutcome::Skipped(r),
    }
}

/// Merges `content` into `image`'s sidecar, creating it if needed. See the module docs.
pub fn write_sidecar(
    image: &Path,
    content: &SidecarContent,
    settings: &SidecarSettings,
) -> Result<WriteOutcome, SidecarError> {
    let path = match sidecar_path(image, settings.naming) {
        SidecarLocation::Skip { writer, .. } => {
            return Ok(WriteOutcome::Skipped(SkipReason::NotWriter { writer }))
        }
        SidecarLocation::Write { path, .. } => path,
    };
    let clean = content.clean(settings);
    let done = update_file(&path, |old| {
        let old = match old {
            Some(bytes) => Packet::parse(bytes).map_err(|source| SidecarError::Parse {
                path: path.clone(),
                source,
            })?,
            None if clean.is_empty() => return Ok(Change::Skip(SkipReason::NothingToWrite)),
            None => Packet {
                xpacket: true,
                ..Packet::default()
            },
        };
        Ok(match merged(&old, &clean, settings) {
            Some(p) => Change::Write(p.serialize(0)),
            None => Change::Keep,
        })
    })?;
    Ok(outcome(done))
}

/// Merges `content` into the XMP embedded in a JPEG or PNG `image` (only with `settings.embed`;
/// never RAW). Without it, originals are never opened for writing.
pub fn embed_xmp(
    image: &Path,
    content: &SidecarContent,
    settings: &SidecarSettings,
) -> Result<WriteOutcome, SidecarError> {
    if !settings.embed {
        return Ok(WriteOutcome::Skipped(SkipReason::EmbedDisabled));
    }
    if is_raw(image) {
        return Ok(WriteOutcome::Skipped(SkipReason::NotEmbeddable));
    }
    let clean = content.clean(settings);
    let done = update_file(image, |old| {
        let Some(data) = old else {
            return Err(SidecarError::Io {
                path: image.to_path_buf(),
                action: "open",
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        if embed::embed_format(data).is_none() {
            return Ok(Change::Skip(SkipReason::NotEmbeddable));
        }
        embed::apply(image, data, |old| match old {
            Some(old) => merged(&old, &clean, settings),
            None if clean.is_empty() => None,
            None => merged(&Packet::default(), &clean, settings),
        })
    })?;
    Ok(outcome(done))
}

/// What [`rewrite`] did for one photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteOutcome {
    pub sidecar: WriteOutcome,
    pub embedded: WriteOutcome,
}

/// Regenerates one photo's sidecar (and embedded XMP when `settings.embed`) from the catalog:
/// its stored results and keywords, its stored pixel size read from the file header. Photos
/// whose results were removed lose our fields; untouched if nothing changes.
pub fn rewrite(
    catalog: &Catalog,
    image: &Path,
    settings: &SidecarSettings,
) -> Result<RewriteOutcome, SidecarError> {
    let catalog_err = |source| SidecarError::Catalog {
        path: image.to_path_buf(),
        source: Box::new(source),
    };
    let Some(photo) = catalog.photo_by_path(image).map_err(catalog_err)? else {
        let skip = WriteOutcome::Skipped(SkipReason::NotInCatalog);
        return Ok(RewriteOutcome {
            sidecar: skip.clone(),
            embedded: skip,
        });
    };
    let results = catalog.results_for_hash(&photo.hash).map_err(catalog_err)?;
    let keywords = catalog
        .keywords_for_hash(&photo.hash)
        .map_err(catalog_err)?;
    let mut content = SidecarContent::from_results(&results, &keywords);
    content.stored_size = ::image::image_dimensions(image).ok();
    Ok(RewriteOutcome {
        sidecar: write_sidecar(image, &content, settings)?,
        embedded: embed_xmp(image, &content, settings)?,
    })
}

/// [`rewrite`] for every present photo in the catalog at or under `under` (all when `None`), in
/// path order. `settings_for` gives each photo's settings (its library's naming), or `None` to skip
/// it (sidecars off for that library); `report` gets each photo's result, errors included, and the
/// walk goes on.
pub fn rewrite_under(
    catalog: &Catalog,
    under: Option<&Path>,
    mut settings_for: impl FnMut(&Path) -> Option<SidecarSettings>,
    mut report: impl FnMut(&Path, Result<RewriteOutcome, SidecarError>),
) -> Result<(), CatalogError> {
    for lib in catalog.libraries()? {
        let mut paths: Vec<PathBuf> = catalog
            .photo_stats_under(lib.id)?
            .into_iter()
            .filter(|(p, (_, _, state))| {
                *state == PhotoState::Present && under.is_none_or(|u| p.starts_with(u))
            })
            .map(|(p, _)| p)
            .collect();
        paths.sort();
        for path in paths {
            if let Some(settings) = settings_for(&path) {
                report(&path, rewrite(catalog, &path, &settings));
            }
        }
    }
    Ok(())
}
