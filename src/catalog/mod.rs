//! The catalog: one SQLite file (WAL) holding libraries, photos, their content (by blake3 hash), the
//! caption job queue, results, keywords and the FTS5 search index. The daemon writes it; the CLI reads
//! it at the same time (WAL readers never block, writers wait up to [`BUSY_TIMEOUT`]).
//!
//! Why content-addressed: a photo is identified by the hash of its bytes, so identical files at two
//! paths are captioned once and a move/rename keeps its results. Everything keyed on the hash
//! (`contents`, `jobs`, `results`, `keywords`) outlives the `photos` rows that point at it. XMP we
//! embed into a JPEG or PNG changes its bytes but not its content: `content_aliases` maps the new
//! bytes' hash to the content, and every place that turns a file's hash into a content resolves it
//! ([`Catalog::resolve_content`], `record_photo`), so an embedded photo is never captioned again.
//!
//! Files: [`schema`] (migrations on `PRAGMA user_version`), [`store`] (libraries, photos, results,
//! FTS rows, the bulk [`Batch`]), [`queue`] (jobs: enqueue, claim, finish, fail, back-off) and
//! [`search`] (ranked queries with filters: a tantivy index beside the file, derived from the FTS5
//! rows through `search_log`; FTS5 itself is the fallback). Opening never starts empty over a file
//! it cannot read: a corrupt or foreign file is an error that names it, and the file is left
//! untouched.

pub mod queue;
pub mod report;
pub mod results;
pub mod schema;
pub mod search;
pub mod store;
#[cfg(test)]
mod test_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

pub(crate) use crate::clock::now_ms;

pub use queue::{FailOutcome, FailedJob, Job, Priority, QueueCounts, Reclaimed, RetryPolicy};
pub use results::{Region, StoredResult, TaskResult};
pub use search::{Hit, SearchQuery, HIGHLIGHT_END, HIGHLIGHT_START};
pub use store::{Batch, LibraryRow, MediaFacts, NewPhoto, PhotoRow, PhotoState, RecordOutcome};

/// How long a statement waits for another connection's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong in the catalog. Each variant names the catalog file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot create the folder {dir} for the catalog {path}")]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the catalog {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path} is not a readable SQLite catalog (corrupt, or another kind of file); it was left \
         untouched: restore a backup or move it away to start a new catalog"
    )]
    NotADatabase {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path} is a SQLite database but not a captiond catalog ({reason}); it was left untouched"
    )]
    Foreign { path: PathBuf, reason: String },
    #[error(
        "the catalog {path} has schema version {found}, newer than this captiond understands \
         ({supported}); upgrade captiond"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the catalog {path} has schema version {found} and needs upgrading to {supported}; open it \
         read-write once (e.g. `captiond run`)"
    )]
    NeedsUpgrade {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot migrate the catalog {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("catalog {path}: {op} failed")]
    Sql {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("catalog {path}: job {job_id} for content {hash} does not exist")]
    NoSuchJob {
        path: PathBuf,
        job_id: i64,
        hash: String,
    },
    #[error("invalid date {value:?}: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")]
    BadDate { value: String },
    #[error("search index {dir}")]
    SearchIndex {
        dir: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("search index {dir}")]
    SearchIndexIo {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An open catalog: one SQLite connection plus the file it belongs to. `Send`, not `Sync`: give each
/// thread its own handle (they share the file safely) or wrap one in a `Mutex`.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    readonly: bool,
    /// The ranked search index, opened by the first search (see [`search::index`]).
    search_index: std::cell::RefCell<Option<search::index::SearchIndex>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

impl Catalog {
    /// Opens (creating it and its parent folders if missing) the catalog at `path` for reading and
    /// writing, sets WAL, `synchronous=NORMAL`, foreign keys and the busy timeout, and migrates the
    /// schema to the current version. A file that is not SQLite, or is another program's database, is
    /// an error naming it and is never modified.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::CreateDir {
                path: path.to_owned(),
                dir: dir.to_owned(),
                source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        let catalog = Catalog {
            conn,
            path: path.to_owned(),
            readonly: false,
            search_index: Default::default(),
        };
        catalog.configure(false)?;
        schema::migrate(&catalog.conn, &catalog.path)?;
        Ok(catalog)
    }

    /// Opens an existing catalog read-only (for the CLI while the daemon writes). Never creates or
    /// migrates; an out-of-date schema is [`CatalogError::NeedsUpgrade`].
    pub fn open_readonly(path: &Path) -> Result<Catalog, CatalogError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        let catalog = Catalog {
            conn,
            path: path.to_owned(),
            readonly: true,
            search_index: Default::default(),
        };
        catalog.configure(true)?;
        schema::check_readonly(&catalog.conn, &catalog.path)?;
        Ok(catalog)
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opened with [`Catalog::open`] (not read-only).
    pub fn is_writable(&self) -> bool {
        !self.readonly
    }

    /// `PRAGMA quick_check`: an empty list when the file is healthy, else SQLite's complaints
    /// (for `captiond doctor`). Reads the whole file, so it takes a while on large catalogs.
    pub fn quick_check(&self) -> Result<Vec<String>, CatalogError> {
        self.read("quick_check", |c| {
            let mut stmt = c.prepare("PRAGMA quick_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let lines = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(lines.into_iter().filter(|l| l != "ok").collect())
        })
    }

    fn configure(&self, readonly: bool) -> Result<(), CatalogError> {
        let c = &self.conn;
        let path = &self.path;
        c.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_error(path, e))?;
        c.set_prepared_statement_cache_capacity(64);
        // The first statement that reads the header: a non-SQLite file fails here, before any write.
        let _: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        if readonly {
            c.pragma_update(None, "query_only", true)
                .map_err(|e| open_error(path, e))?;
        } else {
            schema::refuse_foreign(c, path)?;
            let mode: String = c
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(|e| open_error(path, e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(catalog = %path.display(), %mode, "could not switch the catalog to WAL");
            }
            c.pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| open_error(path, e))?;
        }
        c.pragma_update(None, "foreign_keys", true)
            .map_err(|e| open_error(path, e))?;
        Ok(())
    }

    /// Wraps a rusqlite error with the catalog path and the operation.
    fn sql_err(&self, op: &'static str, source: rusqlite::Error) -> CatalogError {
        CatalogError::Sql {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Runs `f` on the connection outside any explicit transaction (single statements, reads).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CatalogError> {
        f(&self.conn).map_err(|e| self.sql_err(op, e))
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction (takes the write lock up front, so WAL never
    /// has to upgrade a read snapshot, which fails without waiting); commits on `Ok`, rolls back on
    /// `Err`.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, CatalogError> {
        let run = || {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.sql_err(op, e))
    }
}

fn open_error(path: &Path, source: rusqlite::Error) -> CatalogError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            CatalogError::NotADatabase {
                path: path.to_owned(),
                source,
            }
        }
        _ => CatalogError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// Paths go in as TEXT when they are UTF-8 (nearly always), else as a BLOB of the raw bytes, so no
/// file name is ever mangled; [`path_from_sql`] reads both back.
pub(crate) fn path_to_sql(path: &Path) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match path.to_str() {
        Some(s) => Value::Text(s.to_owned()),
        None => Value::Blob(path_bytes(path)),
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

pub(crate) fn path_from_sql(
    v: rusqlite::types::ValueRef<'_>,
) -> rusqlite::types::FromSqlResult<PathBuf> {
    use rusqlite::types::{FromSqlError, ValueRef};
    match v {
        ValueRef::Text(t) => Ok(PathBuf::from(String::from_utf8_lossy(t).into_owned())),
        #[cfg(unix)]
        ValueRef::Blob(b) => {
            use std::os::unix::ffi::OsStrExt;
            Ok(PathBuf::from(std::ffi::OsStr::from_bytes(b)))
        }
        #[cfg(not(unix))]
        ValueRef::Blob(b) => Ok(PathBuf::from(String::from_utf8_lossy(b).into_owned())),
        _ => Err(FromSqlError::InvalidType),
    }
}

/// Reads column `idx` of `row` as a path written by [`path_to_sql`].
pub(crate) fn row_path(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<PathBuf> {
    let v = row.get_ref(idx)?;
    path_from_sql(v).map_err(|e| match e {
        rusqlite::types::FromSqlError::InvalidType => {
            rusqlite::Error::InvalidColumnType(idx, "path".into(), v.data_type())
        }
        other => rusqlite::Error::FromSqlConversionFailure(idx, v.data_type(), Box::new(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_empty_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/catalog.db");
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.path(), path);
        let v: i64 = cat
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::LATEST);
        let mode: String = cat
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let lib = cat.upsert_library(Path::new("/photos")).unwrap();
        drop(cat);
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.upsert_library(Path::new("/photos")).unwrap(), lib);
        assert_eq!(cat.libraries().unwrap().len(), 1);
        assert!(cat.quick_check().unwrap().is_empty());
        let ro = Catalog::open_readonly(&path).unwrap();
        assert_eq!(ro.libraries().unwrap().len(), 1);
        assert!(ro.upsert_library(Path::new("/other")).is_err());
    }

    #[test]
    fn garbage_file_is_an_error_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let err = Catalog::open(&path).unwrap_err();
        assert!(matches!(err, CatalogError::NotADatabase { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        let err = Catalog::open_readonly(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("catalog.db")]);
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE notes(x); INSERT INTO notes VALUES (1);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Catalog::open(&path).unwrap_err();
        assert!(matches!(err, CatalogError::Foreign { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn readonly_missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.db");
        let err = Catalog::open_readonly(&path).unwrap_err();
        assert!(err.to_string().contains("nope.db"), "{err}");
        assert!(!path.exists());
    }
}
