//! What the catalog knows about libraries, photos and their content (the `libraries`, `photos`,
//! `contents` and `content_aliases` tables). Discovery calls these functions. A photo that moves,
//! goes or comes back has its search row rebuilt by [`super::results`], and a content whose last
//! photo went has its waiting jobs dropped by [`super::queue`]'s one rule for that.
//!
//! Bulk writes: the initial walk should call [`Catalog::record_many`] with chunks of a few thousand
//! photos (one transaction, cached statements), or hold a [`Batch`] to mix records and enqueues in
//! one transaction. Neither should stay open while files are being read or hashed: the write lock
//! blocks the worker (which waits at most [`super::BUSY_TIMEOUT`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::queue::{self, Orphans, Priority};
use super::results::{delete_fts, refresh_fts};
use super::{now_ms, path_to_sql, row_path, Catalog, CatalogError};

/// Whether a path still exists on disk (as far as the last scan or event knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhotoState {
    Present,
    Gone,
}

impl PhotoState {
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoState::Present => "present",
            PhotoState::Gone => "gone",
        }
    }

    fn from_sql(s: &str) -> PhotoState {
        if s == "present" {
            PhotoState::Present
        } else {
            PhotoState::Gone
        }
    }
}

/// A watched root.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryRow {
    pub id: i64,
    pub root: PathBuf,
    /// False while the root is unmounted/missing: its photos are kept, not marked gone, and their
    /// jobs are not claimed.
    pub online: bool,
    /// Watched by polling (network filesystem) rather than notify events.
    pub polled: bool,
    /// Unix ms of the last completed scan.
    pub last_scan_at: Option<i64>,
    /// Present photos in this library.
    pub present: u64,
}

/// One path as the catalog knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoRow {
    pub id: i64,
    pub library_id: i64,
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub state: PhotoState,
    /// Unix ms.
    pub first_seen: i64,
    /// Unix ms.
    pub last_seen: i64,
}

/// What decoding/EXIF tells us about a content (stored once per hash).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaFacts {
    /// Pixel size as stored (before orientation).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// EXIF orientation 1..=8.
    pub orientation: u16,
    /// EXIF `DateTimeOriginal` as `YYYY-MM-DDTHH:MM:SS` (an offset may follow).
    pub taken_at: Option<String>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// (latitude, longitude), signed decimal degrees.
    pub gps: Option<(f64, f64)>,
}

impl Default for MediaFacts {
    fn default() -> Self {
        MediaFacts {
            width: None,
            height: None,
            orientation: 1,
            taken_at: None,
            camera_make: None,
            camera_model: None,
            gps: None,
        }
    }
}

/// What [`Catalog::record_photo`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    pub photo_id: i64,
    /// The content the path was recorded under: the hash given, or, when that is the hash of a
    /// file we embedded XMP into, the content it was embedded into (see
    /// [`Catalog::alias_embedded`]). Enqueue this one.
    pub hash: String,
    /// The hash was not in the catalog before: nothing has ever been captioned for it.
    pub content_is_new: bool,
    /// The path is new, now holds different content, or came back after being gone. The caller
    /// should then `enqueue` the hash (a no-op returning false when a job exists) and rewrite the
    /// sidecar; an unchanged path needs neither.
    pub changed: bool,
}

/// One photo for [`Catalog::record_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewPhoto {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: String,
    pub media: MediaFacts,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Catalog {
    /// Adds a library root (or finds it) and returns its id.
    pub fn upsert_library(&self, root: &Path) -> Result<i64, CatalogError> {
        self.read("upsert_library", |c| {
            c.prepare_cached(
                "INSERT INTO libraries(root) VALUES (?1)
                 ON CONFLICT(root) DO UPDATE SET root = excluded.root RETURNING id",
            )?
            .query_row([path_to_sql(root)], |r| r.get(0))
        })
    }

    /// Records whether a root is reachable and whether it is polled.
    pub fn set_library_state(
        &self,
        id: i64,
        online: bool,
        polled: bool,
    ) -> Result<(), CatalogError> {
        self.read("set_library_state", |c| {
            c.prepare_cached("UPDATE libraries SET online = ?2, polled = ?3 WHERE id = ?1")?
                .execute(params![id, online, polled])
                .map(drop)
        })
    }

    /// Stamps the end of a full scan of a library.
    pub fn mark_library_scanned(&self, id: i64) -> Result<(), CatalogError> {
        self.read("mark_library_scanned", |c| {
            c.prepare_cached("UPDATE libraries SET last_scan_at = ?2 WHERE id = ?1")?
                .execute(params![id, now_ms()])
                .map(drop)
        })
    }

    /// All libraries with their count of present photos, in id order.
    pub fn libraries(&self) -> Result<Vec<LibraryRow>, CatalogError> {
        self.read("libraries", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT l.id, l.root, l.online, l.polled, l.last_scan_at,
                        (SELECT count(*) FROM photos p WHERE p.library_id = l.id AND p.state = 'present')
                 FROM libraries l ORDER BY l.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LibraryRow {
                    id: r.get(0)?,
                    root: row_path(r, 1)?,
                    online: r.get(2)?,
                    polled: r.get(3)?,
                    last_scan_at: r.get(4)?,
                    present: r.get::<_, i64>(5)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Every path recorded under a library (present or gone) with its size, mtime and state, so a
    /// rescan can skip files whose size and mtime are unchanged without hashing them.
    pub fn photo_stats_under(
        &self,
        library_id: i64,
    ) -> Result<HashMap<PathBuf, (u64, i64, PhotoState)>, CatalogError> {
        self.read("photo_stats_under", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT path, size, mtime_ns, state FROM photos WHERE library_id = ?1",
            )?;
            let rows = stmt.query_map([library_id], |r| {
                Ok((
                    row_path(r, 0)?,
                    (
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)?,
                        PhotoState::from_sql(&r.get::<_, String>(3)?),
                    ),
                ))
            })?;
            rows.collect()
        })
    }

    /// The row for a path, present or gone.
    pub fn photo_by_path(&self, path: &Path) -> Result<Option<PhotoRow>, CatalogError> {
        self.read("photo_by_path", |c| {
            c.prepare_cached(
                "SELECT id, library_id, path, hash, size, mtime_ns, state, first_seen, last_seen
                 FROM photos WHERE path = ?1",
            )?
            .query_row([path_to_sql(path)], |r| {
                Ok(PhotoRow {
                    id: r.get(0)?,
                    library_id: r.get(1)?,
                    path: row_path(r, 2)?,
                    hash: r.get(3)?,
                    size: r.get::<_, i64>(4)? as u64,
                    mtime_ns: r.get(5)?,
                    state: PhotoState::from_sql(&r.get::<_, String>(6)?),
                    first_seen: r.get(7)?,
                    last_seen: r.get(8)?,
                })
            })
            .optional()
        })
    }

    /// Records a settled file: its content (first time the hash is seen) and the path (present,
    /// `last_seen` now). A path that already has results for its content gets its search row.
    /// `hash` is the blake3 of the file's bytes; a hash of bytes we embedded XMP into is recorded
    /// as the content they came from ([`RecordOutcome::hash`]).
    pub fn record_photo(
        &self,
        library_id: i64,
        path: &Path,
        size: u64,
        mtime_ns: i64,
        hash: &str,
        media: &MediaFacts,
    ) -> Result<RecordOutcome, CatalogError> {
        self.write("record_photo", |c| {
            record_in(c, now_ms(), library_id, path, size, mtime_ns, hash, media)
        })
    }

    /// [`Catalog::record_photo`] for many photos in one transaction (the initial walk: pass chunks
    /// of a few thousand). Outcomes are in input order.
    pub fn record_many(
        &self,
        library_id: i64,
        photos: &[NewPhoto],
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        self.write("record_many", |c| {
            let now = now_ms();
            photos
                .iter()
                .map(|p| {
                    record_in(
                        c, now, library_id, &p.path, p.size, p.mtime_ns, &p.hash, &p.media,
                    )
                })
                .collect()
        })
    }

    /// Opens a write transaction for mixed bulk work (record + enqueue + gone). See [`Batch`].
    pub fn batch(&mut self) -> Result<Batch<'_>, CatalogError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql_err("batch", e))?;
        Ok(Batch {
            conn: &self.conn,
            path: &self.path,
            began: Instant::now(),
            open: true,
        })
    }

    /// Unchanged files seen again: `last_seen` = now. A path recorded as gone is brought back
    /// (present again, search row restored); unknown paths are ignored.
    pub fn touch_photos(&self, paths: &[PathBuf]) -> Result<(), CatalogError> {
        self.write("touch_photos", |c| {
            let now = now_ms();
            paths.iter().try_for_each(|p| touch_in(c, now, p))
        })
    }

    /// Deleted files: state `gone`, search row removed. Results, keywords and done jobs stay (keyed
    /// by content), so a file that comes back is not captioned again; a still-pending job whose
    /// content has no present path left is dropped (recording the path again re-enqueues it).
    /// Returns how many present photos became gone.
    pub fn mark_gone(&self, paths: &[PathBuf]) -> Result<usize, CatalogError> {
        self.write("mark_gone", |c| {
            let mut n = 0;
            for p in paths {
                n += usize::from(mark_gone_in(c, p)?);
            }
            Ok(n)
        })
    }

    /// A file moved or renamed (same content): the row keeps its id and results, takes the new path
    /// (and the library whose root holds it), and its search row follows. A row already at `to` is
    /// replaced. False when `from` is unknown.
    pub fn rename_photo(&self, from: &Path, to: &Path) -> Result<bool, CatalogError> {
        self.write("rename_photo", |c| rename_in(c, now_ms(), from, to))
    }

    /// Present paths holding this content, in path order (the worker reads the first readable one).
    pub fn present_paths_for_hash(&self, hash: &str) -> Result<Vec<PathBuf>, CatalogError> {
        self.read("present_paths_for_hash", |c| present_paths(c, hash))
    }

    /// Every path recorded with this content and its state: present ones first (in path order),
    /// then gone ones, most recently seen first (where a photo that turns up again with this
    /// content may have come from).
    pub fn paths_for_hash(&self, hash: &str) -> Result<Vec<(PathBuf, PhotoState)>, CatalogError> {
        self.read("paths_for_hash", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT path, state FROM photos WHERE hash = ?1
                 ORDER BY state != 'present', CASE WHEN state = 'present' THEN path END,
                          last_seen DESC, path",
            )?;
            let rows = stmt.query_map([hash], |r| {
                Ok((
                    row_path(r, 0)?,
                    PhotoState::from_sql(&r.get::<_, String>(1)?),
                ))
            })?;
            rows.collect()
        })
    }

    /// The content's pixel size as discovery recorded it (before orientation; a RAW's is its
    /// preview's), when known.
    pub fn content_dimensions(&self, hash: &str) -> Result<Option<(u32, u32)>, CatalogError> {
        self.read("content_dimensions", |c| {
            let dims: Option<(Option<i64>, Option<i64>)> = c
                .prepare_cached("SELECT width, height FROM contents WHERE hash = ?1")?
                .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(match dims {
                Some((Some(w), Some(h))) => u32::try_from(w).ok().zip(u32::try_from(h).ok()),
                _ => None,
            })
        })
    }

    /// The content a file whose bytes hash to `file_hash` holds: `file_hash` itself when it is a
    /// known content, the content it was embedded from when it is an alias, `None` when unknown.
    pub fn resolve_content(&self, file_hash: &str) -> Result<Option<String>, CatalogError> {
        self.read("resolve_content", |c| {
            let resolved = resolve_alias(c, file_hash)?;
            let known = c
                .prepare_cached("SELECT 1 FROM contents WHERE hash = ?1")?
                .query_row([&resolved], |_| Ok(()))
                .optional()?
                .is_some();
            Ok(known.then_some(resolved))
        })
    }

    /// Embedding XMP is about to replace bytes hashing to `old_file_hash` with bytes hashing to
    /// `new_file_hash`: records `new_file_hash` as an alias of the content the old bytes hold
    /// (resolved through earlier aliases, so aliases never chain), so whoever hashes the new file
    /// (a rescan, a watcher, the worker) finds that content and nothing is captioned again.
    /// Call it *before* the new bytes are put in place. Returns the content, or `None` (nothing
    /// recorded) when the old bytes are no known content, e.g. an edit not yet scanned: the new
    /// file is then new content, as it would be without us.
    pub fn alias_embedded(
        &self,
        old_file_hash: &str,
        new_file_hash: &str,
    ) -> Result<Option<String>, CatalogError> {
        self.write("alias_embedded", |c| {
            alias_in(c, old_file_hash, new_file_hash)
        })
    }

    /// The file at `path` now holds bytes hashing to `file_hash` (an alias from
    /// [`Catalog::alias_embedded`]) with this size and mtime: the photo row takes them, so a rescan
    /// sees an unchanged file and does not even read it. Only when the row still holds the content
    /// the alias names; returns whether it was updated. Call it *after* the new bytes are in place.
    pub fn adopt_embedded(
        &self,
        path: &Path,
        file_hash: &str,
        size: u64,
        mtime_ns: i64,
    ) -> Result<bool, CatalogError> {
        self.write("adopt_embedded", |c| {
            let content = resolve_alias(c, file_hash)?;
            let n = c
                .prepare_cached(
                    "UPDATE photos SET size = ?3, mtime_ns = ?4 WHERE path = ?1 AND hash = ?2",
                )?
                .execute(params![path_to_sql(path), content, to_i64(size), mtime_ns])?;
            Ok(n > 0)
        })
    }
}

/// The content `file_hash` is an alias of, or `file_hash` itself.
fn resolve_alias(c: &Connection, file_hash: &str) -> rusqlite::Result<String> {
    Ok(
        c.prepare_cached("SELECT hash FROM content_aliases WHERE file_hash = ?1")?
            .query_row([file_hash], |r| r.get(0))
            .optional()?
            .unwrap_or_else(|| file_hash.to_string()),
    )
}

/// See [`Catalog::alias_embedded`].
fn alias_in(
    c: &Connection,
    old_file_hash: &str,
    new_file_hash: &str,
) -> rusqlite::Result<Option<String>> {
    let content = resolve_alias(c, old_file_hash)?;
    let known = |h: &str| -> rusqlite::Result<bool> {
        Ok(c.prepare_cached("SELECT 1 FROM contents WHERE hash = ?1")?
            .query_row([h], |_| Ok(()))
            .optional()?
            .is_some())
    };
    if !known(&content)? {
        return Ok(None);
    }
    // The new bytes are already a content of their own (the same file catalogued elsewhere):
    // they keep that identity.
    if new_file_hash == content || known(new_file_hash)? {
        return Ok(Some(content));
    }
    c.prepare_cached(
        "INSERT INTO content_aliases(file_hash, hash) VALUES (?1, ?2)
         ON CONFLICT(file_hash) DO NOTHING",
    )?
    .execute(params![new_file_hash, content])?;
    resolve_alias(c, new_file_hash).map(Some)
}

/// A write transaction for bulk discovery work, from [`Catalog::batch`]. Dropping it without
/// [`Batch::commit`] rolls back everything since the last commit. For long walks call
/// [`Batch::commit_if_due`] between photos (never in the middle of a record + enqueue pair you
/// want atomic) so the worker and the CLI are not kept waiting on the write lock.
pub struct Batch<'c> {
    conn: &'c Connection,
    path: &'c Path,
    began: Instant,
    open: bool,
}

impl Batch<'_> {
    fn err(&self, op: &'static str, source: rusqlite::Error) -> CatalogError {
        CatalogError::Sql {
            path: self.path.to_owned(),
            op,
            source,
        }
    }

    /// As [`Catalog::record_photo`], inside the batch.
    pub fn record_photo(
        &mut self,
        library_id: i64,
        path: &Path,
        size: u64,
        mtime_ns: i64,
        hash: &str,
        media: &MediaFacts,
    ) -> Result<RecordOutcome, CatalogError> {
        record_in(
            self.conn,
            now_ms(),
            library_id,
            path,
            size,
            mtime_ns,
            hash,
            media,
        )
        .map_err(|e| self.err("record_photo", e))
    }

    /// As [`Catalog::enqueue`], inside the batch.
    pub fn enqueue(
        &mut self,
        hash: &str,
        profile: &str,
        priority: Priority,
    ) -> Result<bool, CatalogError> {
        queue::enqueue_in(self.conn, now_ms(), hash, profile, priority)
            .map_err(|e| self.err("enqueue", e))
    }

    /// As [`Catalog::touch_photos`] for one path, inside the batch.
    pub fn touch_photo(&mut self, path: &Path) -> Result<(), CatalogError> {
        touch_in(self.conn, now_ms(), path).map_err(|e| self.err("touch_photo", e))
    }

    /// As [`Catalog::mark_gone`] for one path, inside the batch; true if it was present.
    pub fn mark_gone(&mut self, path: &Path) -> Result<bool, CatalogError> {
        mark_gone_in(self.conn, path).map_err(|e| self.err("mark_gone", e))
    }

    /// Commits and opens a new transaction when this one has been open longer than `max_hold`;
    /// returns whether it did.
    pub fn commit_if_due(&mut self, max_hold: Duration) -> Result<bool, CatalogError> {
        if self.began.elapsed() < max_hold {
            return Ok(false);
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err("batch commit", e))?;
        self.open = false;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err("batch begin", e))?;
        self.open = true;
        self.began = Instant::now();
        Ok(true)
    }

    /// Commits the batch.
    pub fn commit(mut self) -> Result<(), CatalogError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err("batch commit", e))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(catalog = %self.path.display(), error = %e, "batch rollback failed");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn record_in(
    c: &Connection,
    now: i64,
    library_id: i64,
    path: &Path,
    size: u64,
    mtime_ns: i64,
    hash: &str,
    media: &MediaFacts,
) -> rusqlite::Result<RecordOutcome> {
    // Bytes we embedded XMP into are the content they were embedded into.
    let hash: &str = &resolve_alias(c, hash)?;
    let content_is_new =
        c.prepare_cached(
            "INSERT INTO contents(hash, size, width, height, orientation, taken_at, camera_make,
                                  camera_model, gps_lat, gps_lon)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(hash) DO NOTHING",
        )?
        .execute(params![
            hash,
            to_i64(size),
            media.width,
            media.height,
            media.orientation,
            media.taken_at,
            media.camera_make,
            media.camera_model,
            media.gps.map(|g| g.0),
            media.gps.map(|g| g.1),
        ])? == 1;
    let p = path_to_sql(path);
    let existing: Option<(i64, String, String)> = c
        .prepare_cached("SELECT id, hash, state FROM photos WHERE path = ?1")?
        .query_row([&p], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match existing {
        None => {
            c.prepare_cached(
                "INSERT INTO photos(library_id, path, hash, size, mtime_ns, state, first_seen,
                                    last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'present', ?6, ?6)",
            )?
            .execute(params![library_id, p, hash, to_i64(size), mtime_ns, now])?;
            let photo_id = c.last_insert_rowid();
            if !content_is_new {
                refresh_fts(c, photo_id, hash, path)?;
            }
            Ok(RecordOutcome {
                photo_id,
                hash: hash.to_string(),
                content_is_new,
                changed: true,
            })
        }
        Some((photo_id, old_hash, old_state)) => {
            c.prepare_cached(
                "UPDATE photos SET library_id = ?2, hash = ?3, size = ?4, mtime_ns = ?5,
                                   state = 'present', last_seen = ?6
                 WHERE id = ?1",
            )?
            .execute(params![
                photo_id,
                library_id,
                hash,
                to_i64(size),
                mtime_ns,
                now
            ])?;
            let changed = old_hash != hash || old_state != "present";
            if changed {
                refresh_fts(c, photo_id, hash, path)?;
            }
            if old_hash != hash {
                queue::drop_orphaned_jobs(c, Orphans::OfContent(&old_hash))?;
            }
            Ok(RecordOutcome {
                photo_id,
                hash: hash.to_string(),
                content_is_new,
                changed,
            })
        }
    }
}

fn touch_in(c: &Connection, now: i64, path: &Path) -> rusqlite::Result<()> {
    let p = path_to_sql(path);
    let n = c
        .prepare_cached("UPDATE photos SET last_seen = ?1 WHERE path = ?2 AND state = 'present'")?
        .execute(params![now, p])?;
    if n == 0 {
        let revived: Option<(i64, String)> = c
            .prepare_cached(
                "UPDATE photos SET state = 'present', last_seen = ?1
                 WHERE path = ?2 AND state = 'gone' RETURNING id, hash",
            )?
            .query_row(params![now, p], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, hash)) = revived {
            refresh_fts(c, id, &hash, path)?;
        }
    }
    Ok(())
}

fn mark_gone_in(c: &Connection, path: &Path) -> rusqlite::Result<bool> {
    let gone: Option<(i64, String)> = c
        .prepare_cached(
            "UPDATE photos SET state = 'gone' WHERE path = ?1 AND state = 'present'
             RETURNING id, hash",
        )?
        .query_row([path_to_sql(path)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, hash)) = gone else {
        return Ok(false);
    };
    delete_fts(c, id)?;
    queue::drop_orphaned_jobs(c, Orphans::OfContent(&hash))?;
    Ok(true)
}

fn rename_in(c: &Connection, now: i64, from: &Path, to: &Path) -> rusqlite::Result<bool> {
    let moved: Option<(i64, String)> = c
        .prepare_cached("SELECT id, hash FROM photos WHERE path = ?1")?
        .query_row([path_to_sql(from)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, hash)) = moved else {
        return Ok(false);
    };
    let replaced: Option<(i64, String)> = c
        .prepare_cached("SELECT id, hash FROM photos WHERE path = ?1 AND id != ?2")?
        .query_row(params![path_to_sql(to), id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((other, _)) = &replaced {
        delete_fts(c, *other)?;
        c.prepare_cached("DELETE FROM photos WHERE id = ?1")?
            .execute([other])?;
    }
    let library = library_for_path(c, to)?;
    c.prepare_cached(
        "UPDATE photos SET path = ?2, state = 'present', last_seen = ?3,
                           library_id = coalesce(?4, library_id)
         WHERE id = ?1",
    )?
    .execute(params![id, path_to_sql(to), now, library])?;
    refresh_fts(c, id, &hash, to)?;
    if let Some((_, other_hash)) = replaced {
        queue::drop_orphaned_jobs(c, Orphans::OfContent(&other_hash))?;
    }
    Ok(true)
}

/// The library whose root is the longest prefix of `path`.
fn library_for_path(c: &Connection, path: &Path) -> rusqlite::Result<Option<i64>> {
    let mut stmt = c.prepare_cached("SELECT id, root FROM libraries")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, row_path(r, 1)?)))?;
    let mut best: Option<(i64, usize)> = None;
    for row in rows {
        let (id, root) = row?;
        let depth = root.components().count();
        if path.starts_with(&root) && best.is_none_or(|(_, d)| depth > d) {
            best = Some((id, depth));
        }
    }
    Ok(best.map(|(id, _)| id))
}

pub(crate) fn present_paths(c: &Connection, hash: &str) -> rusqlite::Result<Vec<PathBuf>> {
    let mut stmt = c.prepare_cached(
        "SELECT path FROM photos WHERE hash = ?1 AND state = 'present' ORDER BY path",
    )?;
    let rows = stmt.query_map([hash], |r| row_path(r, 0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::*;
    use crate::catalog::{Priority, SearchQuery};

    fn paths(hits: &[crate::catalog::Hit]) -> Vec<String> {
        hits.iter()
            .map(|h| h.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn record_and_stats() {
        let f = fixture();
        let h = hash_of("a");
        let media = MediaFacts {
            width: Some(4000),
            height: Some(3000),
            orientation: 6,
            taken_at: Some("2023-05-01T10:00:00".into()),
            camera_make: Some("Canon".into()),
            camera_model: Some("EOS R5".into()),
            gps: Some((48.1, 11.5)),
        };
        let p = Path::new("/photos/a.jpg");
        let o = f.cat.record_photo(f.lib, p, 123, 456, &h, &media).unwrap();
        assert!(o.content_is_new && o.changed);
        let again = f.cat.record_photo(f.lib, p, 123, 456, &h, &media).unwrap();
        assert_eq!(again.photo_id, o.photo_id);
        assert!(!again.content_is_new && !again.changed);
        let stats = f.cat.photo_stats_under(f.lib).unwrap();
        assert_eq!(stats[p], (123, 456, PhotoState::Present));
        let row = f.cat.photo_by_path(p).unwrap().unwrap();
        assert_eq!((row.hash.as_str(), row.size), (h.as_str(), 123));
        f.cat.touch_photos(&[p.to_owned()]).unwrap();
        assert_eq!(f.cat.mark_gone(&[p.to_owned()]).unwrap(), 1);
        assert_eq!(f.cat.mark_gone(&[p.to_owned()]).unwrap(), 0);
        assert_eq!(
            f.cat.photo_stats_under(f.lib).unwrap()[p].2,
            PhotoState::Gone
        );
        let back = f.cat.record_photo(f.lib, p, 123, 456, &h, &media).unwrap();
        assert!(back.changed && !back.content_is_new);
        let libs = f.cat.libraries().unwrap();
        assert_eq!(libs[0].present, 1);
        assert!(libs[0].online);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_round_trips() {
        use std::os::unix::ffi::OsStrExt;
        let f = fixture();
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/photos/caf\xe9.jpg"));
        f.cat
            .record_photo(f.lib, p, 1, 1, &hash_of("x"), &MediaFacts::default())
            .unwrap();
        assert!(f.cat.photo_by_path(p).unwrap().is_some());
        assert!(f.cat.photo_stats_under(f.lib).unwrap().contains_key(p));
        assert_eq!(
            f.cat.present_paths_for_hash(&hash_of("x")).unwrap(),
            vec![p]
        );
    }

    #[test]
    fn identical_content_captioned_once_and_both_searchable() {
        let f = fixture();
        let h = hash_of("same bytes");
        let a = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/a.jpg"),
                5,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        let b = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/copy/b.jpg"),
                5,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        assert!(a.content_is_new && !b.content_is_new);
        assert!(f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        let jobs = f.cat.claim(PROFILE, 10).unwrap();
        assert_eq!(jobs.len(), 1);
        f.cat
            .finish(
                jobs[0].id,
                &h,
                &caption("A brown dog on a beach.", &["dog"]),
            )
            .unwrap();
        let hits = f.cat.search(&SearchQuery::new("dog")).unwrap();
        assert_eq!(paths(&hits), vec!["/photos/a.jpg", "/photos/copy/b.jpg"]);
        assert_eq!(hits[0].labels, vec!["dog"]);
        assert_eq!(hits[0].caption, "A brown dog on a beach.");
        // A third copy found later is searchable at once, with no new job.
        let c = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/c.jpg"),
                5,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        assert!(c.changed && !c.content_is_new);
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        assert_eq!(f.cat.search(&SearchQuery::new("beach")).unwrap().len(), 3);
        let stored = f.cat.results_for_hash(&h).unwrap();
        assert_eq!(stored.len(), 2);
        let od = stored.iter().find(|r| r.task == "<OD>").unwrap();
        assert_eq!(od.regions[0].label, "dog");
        assert_eq!(od.regions[0].bbox, [0.1, 0.2, 0.5, 0.6]);
        assert_eq!(f.cat.keywords_for_hash(&h).unwrap(), vec!["dog"]);
    }

    #[test]
    fn rename_keeps_results_and_updates_search() {
        let f = fixture();
        let h = add_captioned(
            &f,
            "/photos/old/IMG_1.jpg",
            "c1",
            MediaFacts::default(),
            "A red bicycle.",
            &["bicycle"],
        );
        let id = f
            .cat
            .photo_by_path(Path::new("/photos/old/IMG_1.jpg"))
            .unwrap()
            .unwrap()
            .id;
        assert!(f
            .cat
            .rename_photo(
                Path::new("/photos/old/IMG_1.jpg"),
                Path::new("/photos/holidays/IMG_1.jpg")
            )
            .unwrap());
        assert!(!f
            .cat
            .rename_photo(Path::new("/photos/nope.jpg"), Path::new("/photos/x.jpg"))
            .unwrap());
        let row = f
            .cat
            .photo_by_path(Path::new("/photos/holidays/IMG_1.jpg"))
            .unwrap()
            .unwrap();
        assert_eq!((row.id, row.hash.as_str()), (id, h.as_str()));
        assert!(f
            .cat
            .photo_by_path(Path::new("/photos/old/IMG_1.jpg"))
            .unwrap()
            .is_none());
        let hits = f.cat.search(&SearchQuery::new("holidays")).unwrap();
        assert_eq!(paths(&hits), vec!["/photos/holidays/IMG_1.jpg"]);
        assert!(f.cat.search(&SearchQuery::new("old")).unwrap().is_empty());
        assert_eq!(f.cat.search(&SearchQuery::new("bicycle")).unwrap().len(), 1);
        assert_eq!(f.cat.queue_counts(None).unwrap().done, 1);
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 0);
    }

    #[test]
    fn gone_leaves_search_and_comeback_is_not_requeued() {
        let f = fixture();
        let h = add_captioned(
            &f,
            "/photos/cat.jpg",
            "c2",
            MediaFacts::default(),
            "A cat sleeping on a sofa.",
            &["cat", "sofa"],
        );
        assert_eq!(f.cat.search(&SearchQuery::new("cat")).unwrap().len(), 1);
        assert_eq!(
            f.cat
                .mark_gone(&[PathBuf::from("/photos/cat.jpg")])
                .unwrap(),
            1
        );
        assert!(f.cat.search(&SearchQuery::new("cat")).unwrap().is_empty());
        assert!(f.cat.present_paths_for_hash(&h).unwrap().is_empty());
        // It comes back under another name: same content, no new job, searchable again.
        let o = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/back.jpg"),
                10,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        assert!(o.changed && !o.content_is_new);
        // Where it may have come from: present paths first, then gone ones.
        assert_eq!(
            f.cat.paths_for_hash(&h).unwrap(),
            vec![
                (PathBuf::from("/photos/back.jpg"), PhotoState::Present),
                (PathBuf::from("/photos/cat.jpg"), PhotoState::Gone),
            ]
        );
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        assert!(f.cat.claim(PROFILE, 10).unwrap().is_empty());
        assert_eq!(
            paths(&f.cat.search(&SearchQuery::new("sofa")).unwrap()),
            vec!["/photos/back.jpg"]
        );
        // Touching a gone path brings it back too.
        f.cat
            .mark_gone(&[PathBuf::from("/photos/back.jpg")])
            .unwrap();
        f.cat
            .touch_photos(&[PathBuf::from("/photos/back.jpg")])
            .unwrap();
        assert_eq!(f.cat.search(&SearchQuery::new("sofa")).unwrap().len(), 1);
    }

    #[test]
    fn pending_job_of_deleted_content_is_dropped_and_requeued_on_return() {
        let f = fixture();
        let h = hash_of("pending");
        let p = PathBuf::from("/photos/p.jpg");
        f.cat
            .record_photo(f.lib, &p, 1, 1, &h, &MediaFacts::default())
            .unwrap();
        assert!(f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        f.cat.mark_gone(std::slice::from_ref(&p)).unwrap();
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 0);
        let o = f
            .cat
            .record_photo(f.lib, &p, 1, 1, &h, &MediaFacts::default())
            .unwrap();
        assert!(o.changed);
        assert!(f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
    }

    #[test]
    fn embedded_bytes_resolve_to_their_content_and_are_not_queued_again() {
        let f = fixture();
        let h = add_captioned(
            &f,
            "/photos/emb.jpg",
            "pixels",
            MediaFacts::default(),
            "A red kite.",
            &["kite"],
        );
        let e1 = hash_of("pixels + our xmp");
        let unknown = hash_of("never seen");
        assert_eq!(f.cat.resolve_content(&h).unwrap().as_deref(), Some(&*h));
        assert_eq!(f.cat.resolve_content(&e1).unwrap(), None);
        assert_eq!(f.cat.resolve_content(&unknown).unwrap(), None);

        // Before the rename: the alias; after: the row takes the new stat.
        assert_eq!(f.cat.alias_embedded(&h, &e1).unwrap().as_deref(), Some(&*h));
        assert_eq!(f.cat.resolve_content(&e1).unwrap().as_deref(), Some(&*h));
        let p = Path::new("/photos/emb.jpg");
        assert!(f.cat.adopt_embedded(p, &e1, 20, 99).unwrap());
        assert_eq!(
            f.cat.photo_stats_under(f.lib).unwrap()[p],
            (20, 99, PhotoState::Present)
        );
        let row = f.cat.photo_by_path(p).unwrap().unwrap();
        assert_eq!(row.hash, h, "the row keeps its content");

        // A rescan that hashes the file anyway (restart, watcher race): same content, unchanged.
        let o = f
            .cat
            .record_photo(f.lib, p, 20, 99, &e1, &MediaFacts::default())
            .unwrap();
        assert_eq!(o.hash, h);
        assert!(!o.changed && !o.content_is_new);
        // Moved or copied elsewhere: a new path of the old content, whose job is done.
        let moved = Path::new("/photos/other/emb.jpg");
        let o = f
            .cat
            .record_photo(f.lib, moved, 20, 5, &e1, &MediaFacts::default())
            .unwrap();
        assert_eq!(o.hash, h);
        assert!(o.changed && !o.content_is_new);
        assert!(!f.cat.enqueue(&o.hash, PROFILE, Priority::New).unwrap());
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 0);
        let mut found = paths(&f.cat.search(&SearchQuery::new("kite")).unwrap());
        found.sort();
        assert_eq!(found, vec!["/photos/emb.jpg", "/photos/other/emb.jpg"]);

        // Embedding again into embedded bytes: a new alias of the same content, no chain.
        let e2 = hash_of("pixels + our xmp, updated");
        assert_eq!(
            f.cat.alias_embedded(&e1, &e2).unwrap().as_deref(),
            Some(&*h)
        );
        let target: String = f
            .cat
            .conn
            .query_row(
                "SELECT hash FROM content_aliases WHERE file_hash = ?1",
                [&e2],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(target, h);
        assert!(f.cat.adopt_embedded(p, &e2, 21, 100).unwrap());
        let o = f
            .cat
            .record_photo(f.lib, p, 21, 100, &e2, &MediaFacts::default())
            .unwrap();
        assert_eq!(o.hash, h);
        assert!(!o.changed);

        // Bytes of no known content (an edit not scanned yet): nothing recorded.
        assert_eq!(f.cat.alias_embedded(&unknown, &hash_of("x")).unwrap(), None);
        assert_eq!(f.cat.resolve_content(&hash_of("x")).unwrap(), None);
        // The new bytes are a content of their own: they keep it.
        let other = add_captioned(
            &f,
            "/photos/o.jpg",
            "other",
            MediaFacts::default(),
            "A cat.",
            &["cat"],
        );
        assert_eq!(
            f.cat.alias_embedded(&h, &other).unwrap().as_deref(),
            Some(&*h)
        );
        assert_eq!(
            f.cat.resolve_content(&other).unwrap().as_deref(),
            Some(&*other)
        );
        // A row that holds other content is not adopted.
        assert!(!f
            .cat
            .adopt_embedded(Path::new("/photos/o.jpg"), &e1, 1, 1)
            .unwrap());
        assert!(!f
            .cat
            .adopt_embedded(Path::new("/photos/missing.jpg"), &e1, 1, 1)
            .unwrap());

        // Someone edits the embedded file: new bytes, no alias, new content captioned as usual.
        let edited = hash_of("pixels + our xmp, then cropped");
        let o = f
            .cat
            .record_photo(f.lib, p, 30, 200, &edited, &MediaFacts::default())
            .unwrap();
        assert_eq!(o.hash, edited);
        assert!(o.changed && o.content_is_new);
        assert!(f.cat.enqueue(&o.hash, PROFILE, Priority::New).unwrap());
    }

    #[test]
    fn edited_file_points_at_new_content() {
        let f = fixture();
        add_captioned(
            &f,
            "/photos/e.jpg",
            "v1",
            MediaFacts::default(),
            "A tree.",
            &["tree"],
        );
        let h2 = hash_of("v2");
        let o = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/e.jpg"),
                11,
                2,
                &h2,
                &MediaFacts::default(),
            )
            .unwrap();
        assert!(o.changed && o.content_is_new);
        // Old caption no longer describes the file.
        assert!(f.cat.search(&SearchQuery::new("tree")).unwrap().is_empty());
    }

    #[test]
    fn batch_commits_and_rolls_back() {
        let mut f = fixture();
        let lib = f.lib;
        {
            let mut b = f.cat.batch().unwrap();
            b.record_photo(
                lib,
                Path::new("/photos/1.jpg"),
                1,
                1,
                &hash_of("1"),
                &MediaFacts::default(),
            )
            .unwrap();
            assert!(b.enqueue(&hash_of("1"), PROFILE, Priority::New).unwrap());
            assert!(b.commit_if_due(Duration::ZERO).unwrap());
            b.record_photo(
                lib,
                Path::new("/photos/2.jpg"),
                1,
                1,
                &hash_of("2"),
                &MediaFacts::default(),
            )
            .unwrap();
            // dropped: the second record is rolled back
        }
        let stats = f.cat.photo_stats_under(lib).unwrap();
        assert_eq!(stats.len(), 1);
        let mut b = f.cat.batch().unwrap();
        b.record_photo(
            lib,
            Path::new("/photos/3.jpg"),
            1,
            1,
            &hash_of("3"),
            &MediaFacts::default(),
        )
        .unwrap();
        assert!(b.mark_gone(Path::new("/photos/1.jpg")).unwrap());
        b.touch_photo(Path::new("/photos/3.jpg")).unwrap();
        b.commit().unwrap();
        assert_eq!(f.cat.photo_stats_under(lib).unwrap().len(), 2);
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 0);
    }

    /// A measurement, not a test of speed: prints the bulk insert rate. Not part of every test
    /// run (it costs seconds); run it with `cargo test -- --ignored bulk_insert_rate`.
    #[test]
    #[ignore = "a measurement; run with --ignored"]
    fn bulk_insert_rate_20k() {
        let f = fixture();
        let photos: Vec<NewPhoto> = (0..20_000)
            .map(|i| NewPhoto {
                path: PathBuf::from(format!("/photos/{:03}/IMG_{i:05}.JPG", i / 500)),
                size: 3_000_000 + i as u64,
                mtime_ns: 1_700_000_000_000_000_000 + i as i64,
                hash: hash_of(&i.to_string()),
                media: MediaFacts {
                    width: Some(6000),
                    height: Some(4000),
                    taken_at: Some("2023-05-01T10:00:00".into()),
                    camera_make: Some("Canon".into()),
                    ..MediaFacts::default()
                },
            })
            .collect();
        let start = Instant::now();
        for chunk in photos.chunks(5000) {
            let out = f.cat.record_many(f.lib, chunk).unwrap();
            assert!(out.iter().all(|o| o.content_is_new));
        }
        let record = start.elapsed();
        let mut cat = Catalog::open(&f.db).unwrap();
        let start = Instant::now();
        let mut b = cat.batch().unwrap();
        for p in &photos {
            b.enqueue(&p.hash, PROFILE, Priority::Backfill).unwrap();
        }
        b.commit().unwrap();
        let enqueue = start.elapsed();
        let start = Instant::now();
        let stats = f.cat.photo_stats_under(f.lib).unwrap();
        let scan = start.elapsed();
        assert_eq!(stats.len(), 20_000);
        println!(
            "catalog bulk: record_many 20k photos in {:.0} ms ({:.0} photos/s); enqueue 20k in \
             {:.0} ms ({:.0} jobs/s); photo_stats_under 20k in {:.0} ms",
            record.as_secs_f64() * 1e3,
            20_000.0 / record.as_secs_f64(),
            enqueue.as_secs_f64() * 1e3,
            20_000.0 / enqueue.as_secs_f64(),
            scan.as_secs_f64() * 1e3,
        );
    }
}
