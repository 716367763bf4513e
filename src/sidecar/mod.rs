//! XMP sidecars (and opt-in embedded XMP) that digiKam, darktable, Lightroom, Immich and PhotoPrism
//! read, merged into whatever is already there without destroying anyone's work.
//!
//! # API (what the daemon and `captiond sidecars rewrite` call)
//!
//! ```no_run
//! # use captiond::sidecar::*;
//! # use captiond::sidecar::SidecarNaming;
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
//! // For a catalogued photo, let the catalog follow the new bytes (what `rewrite` does):
//! # let catalog: captiond::catalog::Catalog = unimplemented!();
//! embed_xmp_observed(image, &content, &settings, &catalog)?;
//! # Ok(()) }
//! ```
//!
//! - [`sidecar_path`] → [`SidecarLocation`]: `IMG_1.JPG.xmp` (`ext`) or `IMG_1.xmp` (`stem`),
//!   existing files found case-insensitively; with `stem`, of a RAW+JPEG pair only the RAW writes
//!   (rules in [`naming`]).
//! - [`SidecarContent::from_results`] builds what we write from the catalog's results.
//! - [`write_sidecar`] merges into the sidecar (or creates it) and returns a [`WriteOutcome`].
//! - [`embed_xmp`] does the same inside a JPEG (`APP1`) or PNG (`iTXt`) when
//!   [`SidecarSettings::embed`] is set; never RAW. That changes the file's bytes, so its hash:
//!   [`embed_xmp_observed`] with the [`Catalog`] as [`EmbedObserver`] records the new hash as an
//!   alias of the photo's content (before the rename) and its new size and mtime (after), so the
//!   photo is not captioned again.
//! - [`rewrite`] / [`rewrite_under`] regenerate from the catalog (for `captiond sidecars rewrite
//!   [PATH]`); files whose content would not change are not touched.
//! - [`follow()`]: a photo moved, renamed or copied (same content): its old sidecar is moved to the
//!   new place when it is the photo's alone and nothing is there yet, then [`rewrite`]; the
//!   daemon calls it for what discovery reports.
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
mod follow;
pub mod iptc;
pub mod merge;
pub mod naming;
mod write;
pub mod xmp;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogError, PhotoState};
use crate::clock::now_ms;

pub use content::{Provenance, SidecarContent};
pub use follow::{follow, FollowOutcome};
pub use naming::{is_raw, sidecar_path, SidecarLocation, SidecarNaming};
pub use xmp::{Packet, XmpError};

use content::Clean;
use write::{update_file, update_file_observed, Change, Done};

/// How sidecars are written. Config keys: `sidecars`, `naming` and `embed` per `[[library]]`,
/// `keyword_parent` and `mwg_regions` in the `[sidecar]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSettings {
    /// Write the sidecar file at all (`sidecars`). Default on; off with [`Self::embed`] on
    /// embeds only.
    pub sidecar: bool,
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
            sidecar: true,
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
    /// The user captiond runs as may not write the file itself (the person locked it, or it is
    /// someone else's): replacing it through the folder's permission would bypass that.
    ReadOnly,
    /// The file belongs to someone else and captiond cannot give the new file the same owner:
    /// the owner would lose it.
    OwnerWouldChange,
    /// The path is a symbolic link: captiond never writes through one (it may point anywhere).
    Symlink,
    /// The photo's embedded XMP cannot be read, so a new sidecar could hide what it says.
    EmbeddedUnreadable,
    /// No sidecar exists and we have nothing to put in one.
    NothingToWrite,
    /// [`SidecarSettings::sidecar`] is off.
    SidecarDisabled,
    /// [`SidecarSettings::embed`] is off.
    EmbedDisabled,
    /// Not a JPEG or PNG (RAW files are never embedded into).
    NotEmbeddable,
    /// The catalog has no photo at this path.
    NotInCatalog,
}

impl SkipReason {
    /// Whether the skip says something about the file (its permissions, owner, a link, its
    /// embedded XMP) that a person should hear about, rather than about the settings.
    pub fn concerns_the_file(&self) -> bool {
        matches!(
            self,
            SkipReason::ReadOnly
                | SkipReason::OwnerWouldChange
                | SkipReason::Symlink
                | SkipReason::EmbeddedUnreadable
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotWriter { writer } => {
                write!(f, "the sidecar belongs to {}", writer.display())
            }
            SkipReason::ReadOnly => f.write_str("the file is not writable by this user"),
            SkipReason::OwnerWouldChange => {
                f.write_str("the file belongs to another user and its owner could not be kept")
            }
            SkipReason::Symlink => f.write_str("the path is a symbolic link; not written through"),
            SkipReason::EmbeddedUnreadable => {
                f.write_str("the photo's embedded XMP cannot be read; no sidecar may hide it")
            }
            SkipReason::NothingToWrite => f.write_str("nothing to write"),
            SkipReason::SidecarDisabled => f.write_str("sidecars are off"),
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

/// Merges `content` into `image`'s sidecar, creating it if needed (only with
/// `settings.sidecar`). See the module docs.
pub fn write_sidecar(
    image: &Path,
    content: &SidecarContent,
    settings: &SidecarSettings,
) -> Result<WriteOutcome, SidecarError> {
    if !settings.sidecar {
        return Ok(WriteOutcome::Skipped(SkipReason::SidecarDisabled));
    }
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
            // A new sidecar starts from what the photo itself carries, or apps that read the
            // sidecar first would show our caption instead of the person's.
            None => match seed_from_image(image) {
                Ok(seed) => seed,
                Err(reason) => return Ok(Change::Skip(reason)),
            },
        };
        Ok(match merged(&old, &clean, settings) {
            Some(p) => Change::Write(p.serialize(0)),
            None => Change::Keep,
        })
    })?;
    Ok(outcome(done))
}

/// Largest photo read whole to find the metadata a new sidecar starts from; of a larger one only
/// the first [`SEED_PREFIX`] bytes (a JPEG's metadata segments all come before its image data).
const SEED_WHOLE: u64 = 256 << 20;
const SEED_PREFIX: u64 = 64 << 20;

/// What a new sidecar starts from: the photo's embedded XMP (a person's caption, keywords,
/// rating, everything), plus its IPTC-IIM caption and keywords where that XMP has none, as
/// exiftool (MWG rules) and digiKam do when they create a sidecar. Embedded XMP that cannot be
/// read is [`SkipReason::EmbeddedUnreadable`]: a sidecar without it could hide a person's words.
fn seed_from_image(image: &Path) -> Result<Packet, SkipReason> {
    use std::io::Read;
    let mut seed = Packet {
        xpacket: true,
        ..Packet::default()
    };
    let Ok(file) = std::fs::File::open(image) else {
        return Ok(seed); // gone or unreadable: there is nothing of anyone's to keep
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::new();
    let cap = if size <= SEED_WHOLE {
        size
    } else {
        SEED_PREFIX
    };
    if file.take(cap).read_to_end(&mut data).is_err() {
        return Ok(seed);
    }
    match embed::read_embedded(image, &data) {
        Ok(Some(embedded)) => {
            seed = Packet {
                xpacket: true,
                ..embedded
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(
                path = %image.display(),
                "no sidecar created: {}",
                crate::errors::error_chain(&e)
            );
            return Err(SkipReason::EmbeddedUnreadable);
        }
    }
    if let Some(iim) = iptc::read_jpeg_iptc(&data) {
        let empty = |p: &Packet, local: &str| match p.get(xmp::NS_DC, local) {
            None => true,
            Some(n) => match &n.value {
                xmp::Value::Array(_, items) => items
                    .iter()
                    .all(|i| i.as_text().is_none_or(|t| t.trim().is_empty())),
                xmp::Value::Text(t) => t.trim().is_empty(),
                _ => false,
            },
        };
        if let Some(caption) = iim.caption.filter(|_| empty(&seed, "description")) {
            seed.set(xmp::NS_DC, "description", xmp::Node::alt_default(caption));
        }
        if !iim.keywords.is_empty() && empty(&seed, "subject") {
            let items = iim.keywords.into_iter().map(xmp::Node::text).collect();
            seed.set(
                xmp::NS_DC,
                "subject",
                xmp::Node::array(xmp::ArrayKind::Bag, items),
            );
        }
    }
    Ok(seed)
}

/// Told when embedding replaces an original's bytes, so that whoever knows files by the hash of
/// their bytes keeps recognising this one. [`Catalog`] implements it (see
/// [`Catalog::alias_embedded`]: the new bytes stay the content they were, nothing is captioned
/// again); `()` ignores both calls.
pub trait EmbedObserver {
    /// The bytes of `image` (blake3 hex `old_hash`) are about to be replaced by bytes hashing to
    /// `new_hash`. An error abandons the embed; the file is left as it was.
    fn before_replace(
        &self,
        image: &Path,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), SidecarError>;
    /// The new bytes are in place, with this size and mtime (nanoseconds since the epoch, as
    /// discovery reads them). The file is written whatever happens here: log failures.
    fn after_replace(&self, image: &Path, new_hash: &str, size: u64, mtime_ns: i64);
}

impl EmbedObserver for () {
    fn before_replace(&self, _: &Path, _: &str, _: &str) -> Result<(), SidecarError> {
        Ok(())
    }
    fn after_replace(&self, _: &Path, _: &str, _: u64, _: i64) {}
}

impl EmbedObserver for Catalog {
    fn before_replace(
        &self,
        image: &Path,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), SidecarError> {
        self.alias_embedded(old_hash, new_hash)
            .map(drop)
            .map_err(|source| SidecarError::Catalog {
                path: image.to_path_buf(),
                source: Box::new(source),
            })
    }

    fn after_replace(&self, image: &Path, new_hash: &str, size: u64, mtime_ns: i64) {
        // Without this the next scan reads and hashes the file once, and finds the alias.
        if let Err(e) = self.adopt_embedded(image, new_hash, size, mtime_ns) {
            tracing::warn!(
                path = %image.display(),
                "embedded XMP written, but its new size and mtime are not in the catalog: {e}"
            );
        }
    }
}

/// Merges `content` into the XMP embedded in a JPEG or PNG `image` (only with `settings.embed`;
/// never RAW). Without it, originals are never opened for writing. The file's bytes change, so
/// to a catalog it looks like new content: use [`embed_xmp_observed`] with the catalog (as
/// [`rewrite`] does) for photos it knows.
pub fn embed_xmp(
    image: &Path,
    content: &SidecarContent,
    settings: &SidecarSettings,
) -> Result<WriteOutcome, SidecarError> {
    embed_xmp_observed(image, content, settings, &())
}

/// [`embed_xmp`] telling `observer` when it replaces the file (see [`EmbedObserver`]).
pub fn embed_xmp_observed(
    image: &Path,
    content: &SidecarContent,
    settings: &SidecarSettings,
    observer: &dyn EmbedObserver,
) -> Result<WriteOutcome, SidecarError> {
    if !settings.embed {
        return Ok(WriteOutcome::Skipped(SkipReason::EmbedDisabled));
    }
    if is_raw(image) {
        return Ok(WriteOutcome::Skipped(SkipReason::NotEmbeddable));
    }
    let clean = content.clean(settings);
    let done = update_file_observed(
        image,
        |old| {
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
        },
        observer,
    )?;
    Ok(outcome(done))
}

/// What [`rewrite`] did for one photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteOutcome {
    pub sidecar: WriteOutcome,
    pub embedded: WriteOutcome,
}

/// Regenerates one photo's sidecar (with `settings.sidecar`) and embedded XMP (with
/// `settings.embed`) from the catalog: its stored results and keywords, its stored pixel size
/// read from the file header. Photos whose results were removed lose our fields; untouched if
/// nothing changes. Embedding keeps the photo's identity in the catalog (an alias of its content,
/// its new size and mtime), so the changed file is not captioned again.
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
    // A RAW's stored frame is its preview's, as the catalog has it (the `image` crate reads no
    // RAW header); other files are measured now, the catalog's size is the fallback.
    let header = (!is_raw(image))
        .then(|| ::image::image_dimensions(image).ok())
        .flatten();
    content.stored_size = match header {
        Some(dims) => Some(dims),
        None => catalog
            .content_dimensions(&photo.hash)
            .map_err(catalog_err)?,
    };
    Ok(RewriteOutcome {
        sidecar: write_sidecar(image, &content, settings)?,
        embedded: embed_xmp_observed(image, &content, settings, catalog)?,
    })
}

/// [`rewrite`] for every present photo in the catalog at or under `under` (all when `None`), in
/// path order. `settings_for` gives each photo's settings (its library's naming), or `None` to skip
/// it (neither sidecars nor embedding for that library); `report` gets each photo's result, errors
/// included, and the walk goes on.
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
