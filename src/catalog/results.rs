//! The results a job produced and what is derived from them: the `results`, `regions` and
//! `keywords` tables, and the search row (`photo_fts`, logged in `search_log` for the ranked
//! index) of every present photo. [`super::queue`] calls [`store_results`] inside `finish`'s
//! transaction; [`super::store`] calls [`refresh_fts`] / [`delete_fts`] when a photo moves, goes or
//! comes back.
//!
//! Invariant kept here: `photo_fts` has exactly one row (rowid = `photos.id`) per *present* photo
//! whose content has results, built from the stored rows by [`refresh_fts`], so a move, a deletion,
//! a file coming back or new results all go through one function.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::{row_path, Catalog, CatalogError};

/// A labelled box, normalised to 0..1 in the stored (un-rotated) frame: `[x1, y1, x2, y2]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub label: String,
    pub bbox: [f32; 4],
}

/// The output of one task on one content, as handed to `finish`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// e.g. `<MORE_DETAILED_CAPTION>`.
    pub task: String,
    pub model_repo: String,
    pub model_revision: String,
    /// Decoded model output, special tokens kept.
    pub raw_text: String,
    /// Display caption for caption tasks (indexed as the FTS `caption` column); `None` for tasks
    /// whose output is not a caption (`<OD>`, OCR).
    pub clean_text: Option<String>,
    /// `post_process_generation` output.
    pub result_json: serde_json::Value,
    pub regions: Vec<Region>,
    /// Normalised keywords (e.g. from `<OD>` labels); the union over a job's results replaces the
    /// content's keywords.
    pub keywords: Vec<String>,
    /// Text read from the image (OCR tasks); indexed as the FTS `ocr` column.
    pub ocr_text: Option<String>,
}

/// A result as stored, for sidecars and export.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    pub id: i64,
    pub task: String,
    pub model_repo: String,
    pub model_revision: String,
    /// Unix ms.
    pub created_at: i64,
    pub raw_text: String,
    pub clean_text: Option<String>,
    pub ocr_text: Option<String>,
    pub result_json: serde_json::Value,
    pub regions: Vec<Region>,
}

impl Catalog {
    /// Every stored result for a content with its regions, by task then age (for sidecars, export).
    pub fn results_for_hash(&self, hash: &str) -> Result<Vec<StoredResult>, CatalogError> {
        self.read("results_for_hash", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, task, model_repo, model_revision, created_at, raw_text, clean_text,
                        ocr_text, result_json
                 FROM results WHERE hash = ?1 ORDER BY task, created_at, id",
            )?;
            let mut out = stmt
                .query_map([hash], |r| {
                    let json: String = r.get(8)?;
                    let result_json = serde_json::from_str(&json).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            8,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?;
                    Ok(StoredResult {
                        id: r.get(0)?,
                        task: r.get(1)?,
                        model_repo: r.get(2)?,
                        model_revision: r.get(3)?,
                        created_at: r.get(4)?,
                        raw_text: r.get(5)?,
                        clean_text: r.get(6)?,
                        ocr_text: r.get(7)?,
                        result_json,
                        regions: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut regions = c.prepare_cached(
                "SELECT label, x1, y1, x2, y2 FROM regions WHERE result_id = ?1 ORDER BY id",
            )?;
            for res in &mut out {
                res.regions = regions
                    .query_map([res.id], |r| {
                        Ok(Region {
                            label: r.get(0)?,
                            bbox: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(out)
        })
    }

    /// The content's keywords, sorted.
    pub fn keywords_for_hash(&self, hash: &str) -> Result<Vec<String>, CatalogError> {
        self.read("keywords_for_hash", |c| keywords_of(c, hash))
    }
}

fn keywords_of(c: &Connection, hash: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        c.prepare_cached("SELECT keyword FROM keywords WHERE hash = ?1 ORDER BY keyword")?;
    let rows = stmt.query_map([hash], |r| r.get(0))?;
    rows.collect()
}

/// The searchable text of a content: the newest result of each task (by `created_at`), so an older
/// model's output for the same task does not linger in search after a reprocess.
struct FtsDoc {
    caption: String,
    labels: String,
    ocr: String,
}

fn fts_doc(c: &Connection, hash: &str) -> rusqlite::Result<Option<FtsDoc>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.clean_text, r.ocr_text FROM results r
         WHERE r.hash = ?1
           AND r.id = (SELECT r2.id FROM results r2 WHERE r2.hash = r.hash AND r2.task = r.task
                       ORDER BY r2.created_at DESC, r2.id DESC LIMIT 1)
         ORDER BY r.task",
    )?;
    let rows = stmt
        .query_map([hash], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut captions = Vec::new();
    let mut ocr = Vec::new();
    for (clean, text) in rows {
        match (clean, text) {
            (_, Some(t)) => ocr.push(t),
            (Some(cap), None) => captions.push(cap),
            (None, None) => {}
        }
    }
    Ok(Some(FtsDoc {
        caption: captions.join("\n"),
        labels: keywords_of(c, hash)?.join(", "),
        ocr: ocr.join("\n"),
    }))
}

/// Removes a photo's search row and logs the change for the ranked index (`search::index`).
pub(crate) fn delete_fts(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM photo_fts WHERE rowid = ?1")?
        .execute([id])?;
    c.prepare_cached("INSERT INTO search_log(photo_id) VALUES (?1)")?
        .execute([id])?;
    Ok(())
}

fn write_fts(c: &Connection, id: i64, path: &Path, doc: Option<&FtsDoc>) -> rusqlite::Result<()> {
    delete_fts(c, id)?;
    if let Some(doc) = doc {
        c.prepare_cached(
            "INSERT INTO photo_fts(rowid, caption, labels, ocr, path) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id,
            doc.caption,
            doc.labels,
            doc.ocr,
            path.to_string_lossy()
        ])?;
    }
    Ok(())
}

/// Rebuilds the search row of one photo from its content's stored results (none: no row).
pub(crate) fn refresh_fts(
    c: &Connection,
    id: i64,
    hash: &str,
    path: &Path,
) -> rusqlite::Result<()> {
    let doc = fts_doc(c, hash)?;
    write_fts(c, id, path, doc.as_ref())
}

/// Stores a job's results (same hash/task/model/revision replaced, regions with it), replaces the
/// content's keywords by the union of theirs, and refreshes the search row of every present photo
/// of the content. Runs inside the caller's transaction.
pub(crate) fn store_results(
    c: &Connection,
    now: i64,
    hash: &str,
    results: &[TaskResult],
) -> rusqlite::Result<()> {
    if !results.is_empty() {
        let mut upsert = c.prepare_cached(
            "INSERT INTO results(hash, task, model_repo, model_revision, created_at, raw_text,
                                 clean_text, ocr_text, result_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(hash, task, model_repo, model_revision) DO UPDATE SET
                 created_at = excluded.created_at, raw_text = excluded.raw_text,
                 clean_text = excluded.clean_text, ocr_text = excluded.ocr_text,
                 result_json = excluded.result_json
             RETURNING id",
        )?;
        let mut clear = c.prepare_cached("DELETE FROM regions WHERE result_id = ?1")?;
        let mut region = c.prepare_cached(
            "INSERT INTO regions(result_id, label, x1, y1, x2, y2) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in results {
            let id: i64 = upsert.query_row(
                params![
                    hash,
                    r.task,
                    r.model_repo,
                    r.model_revision,
                    now,
                    r.raw_text,
                    r.clean_text,
                    r.ocr_text,
                    r.result_json.to_string()
                ],
                |row| row.get(0),
            )?;
            clear.execute([id])?;
            for g in &r.regions {
                let [x1, y1, x2, y2] = g.bbox;
                region.execute(params![id, g.label, x1, y1, x2, y2])?;
            }
        }
        c.prepare_cached("DELETE FROM keywords WHERE hash = ?1")?
            .execute([hash])?;
        let mut kw =
            c.prepare_cached("INSERT OR IGNORE INTO keywords(hash, keyword) VALUES (?1, ?2)")?;
        for k in results.iter().flat_map(|r| &r.keywords) {
            let k = k.trim();
            if !k.is_empty() {
                kw.execute(params![hash, k])?;
            }
        }
    }
    let doc = fts_doc(c, hash)?;
    let photos: Vec<(i64, PathBuf)> = c
        .prepare_cached("SELECT id, path FROM photos WHERE hash = ?1 AND state = 'present'")?
        .query_map([hash], |r| Ok((r.get(0)?, row_path(r, 1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, path) in photos {
        write_fts(c, id, &path, doc.as_ref())?;
    }
    Ok(())
}
