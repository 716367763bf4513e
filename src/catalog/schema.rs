//! Catalog schema and its migrations, keyed on `PRAGMA user_version`: migration `i` (1-based) brings
//! a file from version `i - 1` to `i`, each in its own `BEGIN IMMEDIATE` transaction, so a crash mid
//! way leaves the previous version intact and two processes opening at once migrate only once.
//! Migrations are append-only: a released one is never edited (`tests/fixtures/catalog/v1.sql` is a
//! version-1 catalog that must always migrate). `PRAGMA application_id` marks the file as ours, so a
//! catalog path pointing at another program's database is refused instead of being written into.

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::CatalogError;

/// `PRAGMA application_id` of a captiond catalog ("capt").
pub const APPLICATION_ID: i32 = 0x6361_7074;

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Version 1. Times are Unix milliseconds; `taken_at` is EXIF local time `YYYY-MM-DDTHH:MM:SS`
/// (with `+HH:MM` appended when EXIF has the offset), so text comparison orders it.
const V1: &str = r#"
CREATE TABLE libraries (
    id           INTEGER PRIMARY KEY,
    root         TEXT NOT NULL UNIQUE,
    online       INTEGER NOT NULL DEFAULT 1,
    polled       INTEGER NOT NULL DEFAULT 0,
    last_scan_at INTEGER
);

-- One row per distinct file content (blake3 of the bytes).
CREATE TABLE contents (
    hash         TEXT PRIMARY KEY NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    orientation  INTEGER NOT NULL DEFAULT 1,
    taken_at     TEXT,
    camera_make  TEXT,
    camera_model TEXT,
    gps_lat      REAL,
    gps_lon      REAL
) WITHOUT ROWID;
CREATE INDEX contents_taken_at ON contents(taken_at);

-- One row per path ever seen. `path` is TEXT (BLOB of raw bytes for the rare non-UTF-8 name).
CREATE TABLE photos (
    id         INTEGER PRIMARY KEY,
    library_id INTEGER NOT NULL REFERENCES libraries(id),
    path       TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL REFERENCES contents(hash),
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('present', 'gone')),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
CREATE INDEX photos_hash ON photos(hash, state);
CREATE INDEX photos_library ON photos(library_id, state);

-- The work queue: one job per (content, profile); profile = model + revision + task set.
CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY,
    hash       TEXT NOT NULL REFERENCES contents(hash),
    profile    TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    priority   INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    not_before INTEGER NOT NULL DEFAULT 0,
    claimed_at INTEGER,
    updated_at INTEGER NOT NULL,
    UNIQUE (hash, profile)
);
CREATE INDEX jobs_claim ON jobs(profile, state, priority, id);
CREATE INDEX jobs_state ON jobs(state);

CREATE TABLE results (
    id             INTEGER PRIMARY KEY,
    hash           TEXT NOT NULL REFERENCES contents(hash),
    task           TEXT NOT NULL,
    model_repo     TEXT NOT NULL,
    model_revision TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    raw_text       TEXT NOT NULL,
    clean_text     TEXT,
    ocr_text       TEXT,
    result_json    TEXT NOT NULL,
    UNIQUE (hash, task, model_repo, model_revision)
);

-- Boxes normalised to 0..1 in the stored (un-rotated) frame.
CREATE TABLE regions (
    id        INTEGER PRIMARY KEY,
    result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    label     TEXT NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL
);
CREATE INDEX regions_result ON regions(result_id);

CREATE TABLE keywords (
    hash    TEXT NOT NULL REFERENCES contents(hash),
    keyword TEXT NOT NULL,
    PRIMARY KEY (hash, keyword)
) WITHOUT ROWID;
CREATE INDEX keywords_keyword ON keywords(keyword);

-- rowid = photos.id; one row per present photo whose content has results.
CREATE VIRTUAL TABLE photo_fts USING fts5(
    caption, labels, ocr, path,
    tokenize = 'porter unicode61'
);
"#;

/// Version 2: embedded XMP. Embedding into a JPEG or PNG changes its bytes (so its blake3) but not
/// what it shows: a row here says "a file whose bytes hash to `file_hash` is content `hash` plus
/// XMP captiond embedded", so the scanner and the worker keep treating it as that content instead
/// of captioning it again. `hash` is always a `contents` row, never another alias.
const V2: &str = r#"
CREATE TABLE content_aliases (
    file_hash TEXT PRIMARY KEY,
    hash      TEXT NOT NULL REFERENCES contents(hash)
) WITHOUT ROWID;
"#;

/// Version 3: the log the ranked search index (`catalog.db-search`, see `search::index`) follows.
/// Every change to a `photo_fts` row appends its photo id; the index applies the rows after the
/// last `seq` it committed, then the log is pruned up to there. AUTOINCREMENT, so a pruned `seq` is
/// never handed out again.
const V3: &str = r#"
CREATE TABLE search_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    photo_id INTEGER NOT NULL
);
"#;

/// Version 4: rescan requests from `captiond rescan` to a running daemon. Versions before this one
/// created the table on first use, so it may exist already.
const V4: &str = r#"
CREATE TABLE IF NOT EXISTS rescan_requests (
    id           INTEGER PRIMARY KEY,
    path         TEXT,              -- NULL: every library
    requested_at INTEGER NOT NULL   -- Unix ms
);
"#;

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// Refuses a database that belongs to someone else: another `application_id`, or tables without
/// ours. Runs before anything is written to the file.
pub(crate) fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), CatalogError> {
    let open_err = |source| CatalogError::Open {
        path: path.to_owned(),
        source,
    };
    let app = application_id(conn).map_err(open_err)?;
    if app == APPLICATION_ID {
        return Ok(());
    }
    if app != 0 {
        return Err(CatalogError::Foreign {
            path: path.to_owned(),
            reason: format!("its application_id is {app:#010x}"),
        });
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .map_err(open_err)?;
    if tables > 0 {
        return Err(CatalogError::Foreign {
            path: path.to_owned(),
            reason: format!("it has {tables} tables or indexes of its own"),
        });
    }
    Ok(())
}

/// Brings the file to [`LATEST`], one transaction per version.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), CatalogError> {
    let found = user_version(conn).map_err(|source| CatalogError::Open {
        path: path.to_owned(),
        source,
    })?;
    if found > LATEST {
        return Err(CatalogError::TooNew {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = i as i64 + 1;
        let step = || -> rusqlite::Result<()> {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            // Another process may have migrated while we waited for the write lock.
            if user_version(&tx)? >= version {
                return Ok(());
            }
            tx.execute_batch(sql)?;
            if version == 1 {
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            }
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        step().map_err(|source| CatalogError::Migrate {
            path: path.to_owned(),
            version,
            source,
        })?;
        tracing::info!(catalog = %path.display(), version, "catalog schema migrated");
    }
    Ok(())
}

/// For read-only handles: the schema must already be current and the file ours.
pub(crate) fn check_readonly(conn: &Connection, path: &Path) -> Result<(), CatalogError> {
    let open_err = |source| CatalogError::Open {
        path: path.to_owned(),
        source,
    };
    let found = user_version(conn).map_err(open_err)?;
    let app = application_id(conn).map_err(open_err)?;
    if app != APPLICATION_ID && (app != 0 || found > 0) {
        return Err(CatalogError::Foreign {
            path: path.to_owned(),
            reason: format!("its application_id is {app:#010x}"),
        });
    }
    if found > LATEST {
        return Err(CatalogError::TooNew {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    if found < LATEST {
        return Err(CatalogError::NeedsUpgrade {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn migrates_from_empty_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(Catalog::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let first = tables(&conn);
        for t in [
            "content_aliases",
            "contents",
            "jobs",
            "keywords",
            "libraries",
            "photo_fts",
            "photos",
            "regions",
            "rescan_requests",
            "results",
            "search_log",
        ] {
            assert!(first.iter().any(|n| n == t), "{t} missing from {first:?}");
        }
        assert_eq!(user_version(&conn).unwrap(), LATEST);
        assert_eq!(application_id(&conn).unwrap(), APPLICATION_ID);
        drop(conn);
        for _ in 0..2 {
            drop(Catalog::open(&path).unwrap());
        }
        let conn = Connection::open(&path).unwrap();
        assert_eq!(tables(&conn), first);
        assert_eq!(user_version(&conn).unwrap(), LATEST);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(Catalog::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let err = Catalog::open(&path).unwrap_err();
        assert!(matches!(err, CatalogError::TooNew { .. }), "{err:?}");
        let err = Catalog::open_readonly(&path).unwrap_err();
        assert!(matches!(err, CatalogError::TooNew { .. }), "{err:?}");
    }

    /// Versions 1-3 created `rescan_requests` on first use: a version-3 file that already has the
    /// table (with a request waiting) migrates and keeps the request.
    #[test]
    fn v3_catalog_with_a_lazy_rescan_table_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(Catalog::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE rescan_requests;
             CREATE TABLE rescan_requests (id INTEGER PRIMARY KEY, path TEXT,
                                           requested_at INTEGER NOT NULL);
             INSERT INTO rescan_requests(path, requested_at) VALUES (NULL, 5);
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.rescan_requests_waiting().unwrap(), 1);
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST);
    }

    /// The frozen version-1 catalog (tests/fixtures/catalog/v1.sql) as a file in `dir`.
    fn v1_catalog(dir: &Path) -> std::path::PathBuf {
        let sql = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/catalog/v1.sql"
        ))
        .unwrap();
        let path = dir.join("v1.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        path
    }

    /// A version-1 catalog with data, frozen as SQL: every later build must open it and keep its data.
    #[test]
    fn v1_fixture_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = v1_catalog(dir.path());
        let cat = Catalog::open(&path).unwrap();
        let hits = cat
            .search(&crate::catalog::SearchQuery::new("dogs"))
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].path, Path::new("/photos/park/IMG_0001.JPG"));
        assert_eq!(hits[0].labels, vec!["dog", "frisbee"]);
        let counts = cat.queue_counts(None).unwrap();
        assert_eq!((counts.done, counts.pending), (1, 1));
        let results = cat
            .results_for_hash("1111111111111111111111111111111111111111111111111111111111111111")
            .unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().any(|r| r.regions.len() == 2));

        // Version 2 on top: the alias table exists and works on the old data.
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST);
        assert!(tables(&conn).iter().any(|t| t == "content_aliases"));
        drop(conn);
        let old = "1111111111111111111111111111111111111111111111111111111111111111";
        let embedded = "eeee111111111111111111111111111111111111111111111111111111111111";
        assert_eq!(
            cat.alias_embedded(old, embedded).unwrap().as_deref(),
            Some(old)
        );
        assert_eq!(cat.resolve_content(embedded).unwrap().as_deref(), Some(old));
        let row = cat
            .photo_by_path(Path::new("/photos/park/IMG_0001.JPG"))
            .unwrap()
            .unwrap();
        assert_eq!(row.hash, old);
        assert!(cat
            .adopt_embedded(&row.path, embedded, row.size + 100, row.mtime_ns + 1)
            .unwrap());
        let lib = cat.libraries().unwrap()[0].id;
        let out = cat
            .record_photo(
                lib,
                Path::new("/photos/moved/IMG_0001.JPG"),
                row.size + 100,
                7,
                embedded,
                &crate::catalog::MediaFacts::default(),
            )
            .unwrap();
        assert_eq!(out.hash, old, "a moved embedded copy is the old content");
        assert!(!out.content_is_new);
    }

    /// A catalog opened read-only while still at version 1 asks for the upgrade instead of
    /// failing on the missing alias table.
    #[test]
    fn v1_catalog_read_only_needs_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = v1_catalog(dir.path());
        let err = Catalog::open_readonly(&path).unwrap_err();
        assert!(
            matches!(err, CatalogError::NeedsUpgrade { found: 1, .. }),
            "{err:?}"
        );
    }
}
