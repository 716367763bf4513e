//! Reports the user commands read from the catalog, plus the one small write they need:
//! - throughput for `captiond status` ([`Catalog::captioned_since`]);
//! - the rows of `captiond export` ([`Catalog::export_rows`]): a streaming merge join over
//!   `photos`, `results`, `regions` and `keywords`, each read once in content-hash order (every
//!   one of them has an index that yields that order), so a million photos never sit in memory;
//! - rescan requests ([`Catalog::request_rescan`], [`Catalog::take_rescan_requests`]): `captiond
//!   rescan` leaves a row in `rescan_requests`; the running daemon polls and takes them. The table
//!   is created on first use (`CREATE TABLE IF NOT EXISTS`), so catalogs of every schema version
//!   accept it and readers that find no table simply see no requests.

use std::path::{Path, PathBuf};

use rusqlite::{params, Transaction, TransactionBehavior};

use super::results::Region;
use super::{now_ms, path_to_sql, row_path, Catalog, CatalogError};

/// A rescan asked for by `captiond rescan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescanRequest {
    pub id: i64,
    /// A folder or file inside a library; `None`: every library.
    pub path: Option<PathBuf>,
    /// Unix ms.
    pub requested_at: i64,
}

/// Content hashes `from <= hash < to` (text order: hashes are lowercase hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

impl HashRange<'static> {
    /// Every hash (the upper bound sorts after any text).
    pub const ALL: HashRange<'static> = HashRange {
        from: "",
        to: "\u{10FFFF}",
    };

    /// `ALL` cut in two at `8`: halves of equal size for hex hashes.
    pub const HALVES: [HashRange<'static>; 2] = [
        HashRange { from: "", to: "8" },
        HashRange {
            from: "8",
            to: "\u{10FFFF}",
        },
    ];
}

/// What kind of text a task leaves in `results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// `clean_text`: a display caption.
    Caption,
    /// `ocr_text`: text read from the image.
    Ocr,
}

/// One text column of an export: the task and which of its texts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportText {
    pub task: String,
    pub kind: TextKind,
}

/// One present photo with everything the catalog knows about its content. For every task, only
/// its newest result counts (as in search).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    /// EXIF date taken, `YYYY-MM-DDTHH:MM:SS` (an offset may follow).
    pub taken_at: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// One entry per [`ExportText`] given to [`Catalog::export_rows`], in that order.
    pub texts: Vec<Option<String>>,
    /// Keywords, sorted.
    pub labels: Vec<String>,
    /// Boxes of every task's newest result, by task then as stored.
    pub regions: Vec<Region>,
    /// `repo@revision` of the newest result; `None` before the first result.
    pub model: Option<String>,
}

/// The part of an [`ExportRow`] shared by every path of one content.
#[derive(Debug, Default)]
struct ContentData {
    texts: Vec<Option<String>>,
    labels: Vec<String>,
    regions: Vec<Region>,
    model: Option<String>,
}

struct ResultLine {
    hash: String,
    task: String,
    model: String,
    created_at: i64,
    id: i64,
    clean_text: Option<String>,
    ocr_text: Option<String>,
}

struct RegionLine {
    hash: String,
    result_id: i64,
    region: Region,
}

/// A cursor with one row of look-ahead, for the merge join.
struct Peek<'s, T> {
    rows: rusqlite::Rows<'s>,
    next: Option<T>,
    read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
}

impl<'s, T> Peek<'s, T> {
    fn new(
        mut rows: rusqlite::Rows<'s>,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Self> {
        let next = rows.next()?.map(read).transpose()?;
        Ok(Peek { rows, next, read })
    }

    fn advance(&mut self) -> rusqlite::Result<Option<T>> {
        let row = self.rows.next()?.map(self.read).transpose()?;
        Ok(std::mem::replace(&mut self.next, row))
    }

    /// Takes every row whose key equals `hash`, dropping the ones before it.
    fn take_hash(
        &mut self,
        hash: &str,
        key: fn(&T) -> &str,
        mut take: impl FnMut(T),
    ) -> rusqlite::Result<()> {
        while let Some(next) = &self.next {
            match key(next).cmp(hash) {
                std::cmp::Ordering::Less => {
                    self.advance()?;
                }
                std::cmp::Ordering::Equal => {
                    if let Some(row) = self.advance()? {
                        take(row);
                    }
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(())
    }
}

fn read_rescan(r: &rusqlite::Row<'_>) -> rusqlite::Result<RescanRequest> {
    let path = match r.get_ref(1)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(row_path(r, 1)?),
    };
    Ok(RescanRequest {
        id: r.get(0)?,
        path,
        requested_at: r.get(2)?,
    })
}

impl Catalog {
    /// Jobs finished (`done`) at or after `since_ms` (Unix ms): photos captioned lately.
    pub fn captioned_since(&self, since_ms: i64) -> Result<u64, CatalogError> {
        self.read("captioned_since", |c| {
            c.prepare_cached("SELECT count(*) FROM jobs WHERE state = 'done' AND updated_at >= ?1")?
                .query_row([since_ms], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    /// Asks the daemon to rescan `path` (a folder or file inside a library) or, with `None`, every
    /// library. Returns false when an equal request (or one for everything) is already waiting.
    pub fn request_rescan(&self, path: Option<&Path>) -> Result<bool, CatalogError> {
        self.write("request_rescan", |c| {
            let value = path.map(path_to_sql);
            let waiting: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM rescan_requests WHERE path IS NULL OR path IS ?1)",
                )?
                .query_row([&value], |r| r.get(0))?;
            if waiting {
                return Ok(false);
            }
            c.prepare_cached("INSERT INTO rescan_requests(path, requested_at) VALUES (?1, ?2)")?
                .execute(params![value, now_ms()])?;
            Ok(true)
        })
    }

    /// The rescan requests waiting for the daemon, oldest first (read-only handles too).
    pub fn rescan_requests(&self) -> Result<Vec<RescanRequest>, CatalogError> {
        self.read("rescan_requests", |c| {
            let mut stmt =
                c.prepare_cached("SELECT id, path, requested_at FROM rescan_requests ORDER BY id")?;
            let rows = stmt.query_map([], read_rescan)?;
            rows.collect()
        })
    }

    /// For the daemon, polled every few seconds: removes and returns the waiting rescan requests,
    /// oldest first. `path: None` means every library; a path is a folder or file inside one.
    /// Costs one read when there is nothing to take (no write lock).
    pub fn take_rescan_requests(&self) -> Result<Vec<RescanRequest>, CatalogError> {
        let any = self.read("take_rescan_requests", |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM rescan_requests)")?
                .query_row([], |r| r.get::<_, bool>(0))
        })?;
        if !any {
            return Ok(Vec::new());
        }
        self.write("take_rescan_requests", |c| {
            let mut stmt =
                c.prepare_cached("DELETE FROM rescan_requests RETURNING id, path, requested_at")?;
            let mut out = stmt
                .query_map([], read_rescan)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.sort_by_key(|r| r.id);
            Ok(out)
        })
    }

    /// The text columns an export has: every task with a caption (`clean_text`) or OCR text,
    /// captions first, each group by task name.
    pub fn export_texts(&self) -> Result<Vec<ExportText>, CatalogError> {
        self.read("export_texts", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT task, max(clean_text IS NOT NULL), max(ocr_text IS NOT NULL)
                 FROM results GROUP BY task ORDER BY task",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<(String, bool, bool)>>>()?;
            let mut out: Vec<ExportText> = rows
                .iter()
                .filter(|r| r.1)
                .map(|r| ExportText {
                    task: r.0.clone(),
                    kind: TextKind::Caption,
                })
                .collect();
            out.extend(rows.iter().filter(|r| r.2).map(|r| ExportText {
                task: r.0.clone(),
                kind: TextKind::Ocr,
            }));
            Ok(out)
        })
    }

    /// Calls `sink` once per present photo, ordered by content hash then photo id, from one
    /// consistent snapshot. Stops at the first error of `sink`, returned as `Ok(Err(e))`.
    pub fn export_rows<E>(
        &self,
        texts: &[ExportText],
        sink: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<Result<(), E>, CatalogError> {
        self.export_rows_in(texts, HashRange::ALL, sink)
    }

    /// [`Catalog::export_rows`] for the contents whose hash lies in `range`, so that several
    /// threads (each with its own handle) can share an export.
    pub fn export_rows_in<E>(
        &self,
        texts: &[ExportText],
        range: HashRange<'_>,
        mut sink: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<Result<(), E>, CatalogError> {
        self.read("export", |c| {
            // A read transaction: one snapshot across the four cursors.
            let tx = Transaction::new_unchecked(c, TransactionBehavior::Deferred)?;
            let mut photos_stmt = tx.prepare(
                "SELECT p.path, p.hash, p.size, c.taken_at, c.width, c.height, c.camera_make,
                        c.camera_model
                 FROM photos p JOIN contents c ON c.hash = p.hash
                 WHERE p.state = 'present' AND p.hash >= ?1 AND p.hash < ?2
                 ORDER BY p.hash, p.id",
            )?;
            let mut results_stmt = tx.prepare(
                "SELECT hash, task, model_repo || '@' || model_revision, created_at, id,
                        clean_text, ocr_text
                 FROM results WHERE hash >= ?1 AND hash < ?2 ORDER BY hash",
            )?;
            let mut regions_stmt = tx.prepare(
                "SELECT r.hash, g.result_id, g.label, g.x1, g.y1, g.x2, g.y2
                 FROM results r JOIN regions g ON g.result_id = r.id
                 WHERE r.hash >= ?1 AND r.hash < ?2
                 ORDER BY r.hash",
            )?;
            let mut keywords_stmt = tx.prepare(
                "SELECT hash, keyword FROM keywords WHERE hash >= ?1 AND hash < ?2
                     ORDER BY hash, keyword",
            )?;
            let bounds = [range.from, range.to];

            let mut photos = Peek::new(photos_stmt.query(bounds)?, |r| {
                Ok(ExportRow {
                    path: row_path(r, 0)?,
                    hash: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    taken_at: r.get(3)?,
                    width: r.get(4)?,
                    height: r.get(5)?,
                    camera_make: r.get(6)?,
                    camera_model: r.get(7)?,
                    texts: Vec::new(),
                    labels: Vec::new(),
                    regions: Vec::new(),
                    model: None,
                })
            })?;
            let mut results = Peek::new(results_stmt.query(bounds)?, |r| {
                Ok(ResultLine {
                    hash: r.get(0)?,
                    task: r.get(1)?,
                    model: r.get(2)?,
                    created_at: r.get(3)?,
                    id: r.get(4)?,
                    clean_text: r.get(5)?,
                    ocr_text: r.get(6)?,
                })
            })?;
            let mut regions = Peek::new(regions_stmt.query(bounds)?, |r| {
                Ok(RegionLine {
                    hash: r.get(0)?,
                    result_id: r.get(1)?,
                    region: Region {
                        label: r.get(2)?,
                        bbox: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                    },
                })
            })?;
            let mut keywords = Peek::new(keywords_stmt.query(bounds)?, |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;

            // The content part of the rows, built once per hash: moved into the last row of its
            // hash (copies of one content are adjacent), cloned only for the ones before it.
            let mut data = ContentData::default();
            let mut data_hash: Option<String> = None;
            let mut newest: Vec<ResultLine> = Vec::new();
            while let Some(mut row) = photos.advance()? {
                if data_hash.as_deref() != Some(row.hash.as_str()) {
                    let hash = row.hash.as_str();
                    // The newest result of each task.
                    newest.clear();
                    results.take_hash(
                        hash,
                        |l| &l.hash,
                        |line| match newest.iter_mut().find(|n| n.task == line.task) {
                            Some(n) => {
                                if (line.created_at, line.id) > (n.created_at, n.id) {
                                    *n = line;
                                }
                            }
                            None => newest.push(line),
                        },
                    )?;
                    newest.sort_by(|a, b| a.task.cmp(&b.task));
                    data = ContentData {
                        texts: texts
                            .iter()
                            .map(|t| {
                                newest.iter().find(|n| n.task == t.task).and_then(|n| {
                                    match t.kind {
                                        TextKind::Caption => n.clean_text.clone(),
                                        TextKind::Ocr => n.ocr_text.clone(),
                                    }
                                })
                            })
                            .collect(),
                        model: newest
                            .iter()
                            .max_by_key(|n| (n.created_at, n.id))
                            .map(|n| n.model.clone()),
                        ..ContentData::default()
                    };
                    let mut by_result: Vec<(i64, Region)> = Vec::new();
                    regions.take_hash(
                        hash,
                        |l| &l.hash,
                        |l| {
                            if newest.iter().any(|n| n.id == l.result_id) {
                                by_result.push((l.result_id, l.region));
                            }
                        },
                    )?;
                    // By task (the order of `newest`), each result's boxes in stored order.
                    for n in &newest {
                        data.regions.extend(
                            by_result
                                .iter()
                                .filter(|(id, _)| *id == n.id)
                                .map(|(_, g)| g.clone()),
                        );
                    }
                    keywords.take_hash(hash, |k| &k.0, |k| data.labels.push(k.1))?;
                    data_hash = Some(row.hash.clone());
                }
                let more_of_this = photos.next.as_ref().is_some_and(|n| n.hash == row.hash);
                let content = if more_of_this {
                    ContentData {
                        texts: data.texts.clone(),
                        labels: data.labels.clone(),
                        regions: data.regions.clone(),
                        model: data.model.clone(),
                    }
                } else {
                    std::mem::take(&mut data)
                };
                row.texts = content.texts;
                row.labels = content.labels;
                row.regions = content.regions;
                row.model = content.model;
                if let Err(e) = sink(row) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })
    }

    /// The library (id, root) whose root holds `path` (the deepest one), if any.
    pub fn library_of(&self, path: &Path) -> Result<Option<(i64, PathBuf)>, CatalogError> {
        let libraries = self.libraries()?;
        Ok(libraries
            .into_iter()
            .filter(|l| path.starts_with(&l.root))
            .max_by_key(|l| l.root.components().count())
            .map(|l| (l.id, l.root)))
    }

    /// How many rescan requests wait.
    pub fn rescan_requests_waiting(&self) -> Result<u64, CatalogError> {
        self.read("rescan_requests_waiting", |c| {
            c.prepare_cached("SELECT count(*) FROM rescan_requests")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::{add_captioned, fixture, hash_of, PROFILE};
    use crate::catalog::{MediaFacts, Priority};

    #[test]
    fn rescan_requests_round_trip() {
        let f = fixture();
        assert!(f.cat.take_rescan_requests().unwrap().is_empty());
        assert!(f.cat.rescan_requests().unwrap().is_empty());
        assert!(f
            .cat
            .request_rescan(Some(Path::new("/photos/2023")))
            .unwrap());
        assert!(!f
            .cat
            .request_rescan(Some(Path::new("/photos/2023")))
            .unwrap());
        assert!(f.cat.request_rescan(None).unwrap());
        assert!(!f.cat.request_rescan(Some(Path::new("/photos/x"))).unwrap());
        assert_eq!(f.cat.rescan_requests_waiting().unwrap(), 2);
        let ro = Catalog::open_readonly(&f.db).unwrap();
        assert_eq!(ro.rescan_requests().unwrap().len(), 2);
        let taken = f.cat.take_rescan_requests().unwrap();
        assert_eq!(
            taken.iter().map(|r| r.path.clone()).collect::<Vec<_>>(),
            vec![Some(PathBuf::from("/photos/2023")), None]
        );
        assert!(f.cat.take_rescan_requests().unwrap().is_empty());
        assert_eq!(
            f.cat
                .library_of(Path::new("/photos/a/b.jpg"))
                .unwrap()
                .unwrap()
                .0,
            f.lib
        );
        assert!(f.cat.library_of(Path::new("/elsewhere")).unwrap().is_none());
    }

    #[test]
    fn export_rows_merge_by_hash() {
        let f = fixture();
        let a = add_captioned(
            &f,
            "/photos/a.jpg",
            "A",
            MediaFacts {
                width: Some(40),
                height: Some(30),
                taken_at: Some("2023-01-02T03:04:05".into()),
                camera_make: Some("Canon".into()),
                camera_model: Some("EOS R5".into()),
                ..MediaFacts::default()
            },
            "A dog.",
            &["dog", "ball"],
        );
        // A copy of the same content and a photo with no results yet.
        f.cat
            .record_photo(
                f.lib,
                Path::new("/photos/copy.jpg"),
                10,
                1,
                &a,
                &MediaFacts::default(),
            )
            .unwrap();
        // (add_captioned finishes every claimable job, so B goes before the pending photo.)
        add_captioned(
            &f,
            "/photos/b.jpg",
            "B",
            MediaFacts::default(),
            "A cat.",
            &["cat"],
        );
        let p = hash_of("pending");
        f.cat
            .record_photo(
                f.lib,
                Path::new("/photos/p.jpg"),
                7,
                1,
                &p,
                &MediaFacts::default(),
            )
            .unwrap();
        f.cat.enqueue(&p, PROFILE, Priority::New).unwrap();
        let texts = f.cat.export_texts().unwrap();
        assert_eq!(
            texts,
            vec![ExportText {
                task: "<MORE_DETAILED_CAPTION>".into(),
                kind: TextKind::Caption
            }]
        );
        let mut rows = Vec::new();
        f.cat
            .export_rows(&texts, |r| {
                rows.push(r);
                Ok::<(), ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 4);
        let by_path = |p: &str| rows.iter().find(|r| r.path == Path::new(p)).unwrap();
        let ra = by_path("/photos/a.jpg");
        assert_eq!(ra.texts, vec![Some("A dog.".to_string())]);
        assert_eq!(ra.labels, vec!["ball", "dog"]);
        assert_eq!(ra.regions.len(), 2);
        assert_eq!(ra.model.as_deref(), Some("microsoft/Florence-2-base@abc"));
        assert_eq!(
            (ra.width, ra.taken_at.as_deref()),
            (Some(40), Some("2023-01-02T03:04:05"))
        );
        assert_eq!(by_path("/photos/copy.jpg").texts, ra.texts);
        let rp = by_path("/photos/p.jpg");
        assert_eq!((rp.texts.clone(), rp.model.clone()), (vec![None], None));
        assert!(rp.labels.is_empty() && rp.regions.is_empty());
        assert_eq!(by_path("/photos/b.jpg").labels, vec!["cat"]);
        // The two halves of the hash space together are the whole.
        let mut halves = Vec::new();
        for range in HashRange::HALVES {
            f.cat
                .export_rows_in(&texts, range, |r| {
                    halves.push(r.path);
                    Ok::<(), ()>(())
                })
                .unwrap()
                .unwrap();
        }
        halves.sort();
        let mut all: Vec<PathBuf> = rows.iter().map(|r| r.path.clone()).collect();
        all.sort();
        assert_eq!(halves, all);
        // The sink's error stops the walk.
        let mut n = 0;
        let out = f
            .cat
            .export_rows(&texts, |_| {
                n += 1;
                Err("full")
            })
            .unwrap();
        assert_eq!((out, n), (Err("full"), 1));
    }
}
