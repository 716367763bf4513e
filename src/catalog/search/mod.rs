//! `captiond search`: full-text search over present photos. Supported: bare words (all must match;
//! stemmed, so "dogs" finds "dog"), `"exact phrases"`, `prefix*`, `OR` between two terms, `-word` /
//! `NOT word` to exclude ([`parse_query`]). Ranking is BM25 over caption, labels, OCR text and path
//! with weights 8 > 4 > 2 > 1.
//!
//! Two engines over the same `photo_fts` rows: the ranked index beside the catalog ([`index`],
//! tantivy; ~2 ms for two common words on 1M photos) answers text queries, and FTS5
//! ([`Catalog::search_fts5`], whose bm25 recounts each word's matches per query: tens of ms) is the
//! fallback when the index cannot be opened or written, and lists photos by filters alone. Filters
//! (date taken, label, folder, camera) are checked in SQL on the ranked candidates.
//!
//! Snippets mark matches with [`HIGHLIGHT_START`] … [`HIGHLIGHT_END`] (U+0001 / U+0002, which never
//! occur in captions): the CLI swaps them for colour on a TTY and drops them otherwise.

pub(crate) mod index;
mod snippet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::OptionalExtension;

use super::{row_path, Catalog, CatalogError};
use index::{Ranked, SearchIndex};

/// Marks the start of a match in [`Hit::snippet`].
pub const HIGHLIGHT_START: char = '\u{1}';
/// Marks the end of a match in [`Hit::snippet`].
pub const HIGHLIGHT_END: char = '\u{2}';

/// bm25 column weights, in `photo_fts` column order: caption, labels, ocr, path.
const BM25: &str = "bm25(photo_fts, 8.0, 4.0, 2.0, 1.0)";

/// A search request. Empty `text` lists photos matching the filters, newest taken first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    /// Most hits returned; 0 = no limit.
    pub limit: usize,
    /// Taken on or after: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (inclusive).
    pub after: Option<String>,
    /// Taken strictly before this date (same forms): `--after 2023 --before 2024` is all of 2023.
    pub before: Option<String>,
    /// A keyword (as stored, or any form that normalises to it: "Dogs" finds "dog").
    pub label: Option<String>,
    /// Only photos inside this absolute folder (the CLI makes it absolute).
    pub under: Option<PathBuf>,
    /// Case-insensitive substring of "make model".
    pub camera: Option<String>,
}

impl SearchQuery {
    /// A text query with the CLI's default limit of 20 and no filters.
    pub fn new(text: impl Into<String>) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            limit: 20,
            ..SearchQuery::default()
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub photo_id: i64,
    pub path: PathBuf,
    /// The indexed caption text (captions of several tasks are joined by newlines).
    pub caption: String,
    /// The content's keywords, sorted.
    pub labels: Vec<String>,
    /// Relevance, higher is better (negated bm25); 0 when listing without text.
    pub score: f64,
    /// Best-matching fragment with matches between [`HIGHLIGHT_START`] and [`HIGHLIGHT_END`].
    pub snippet: String,
}

/// User text as FTS5 query parts: what must match, and what must not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FtsQuery {
    pub positive: Option<String>,
    pub negative: Option<String>,
}

/// One word or phrase of a query (`prefix`: it ended in `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryTerm {
    pub text: String,
    pub prefix: bool,
}

/// A query as the user wrote it: every group must match (any of its alternatives, `a OR b`), no
/// negative may.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ParsedQuery {
    pub groups: Vec<Vec<QueryTerm>>,
    pub negatives: Vec<QueryTerm>,
}

impl QueryTerm {
    fn render(&self) -> String {
        let mut s = format!("\"{}\"", self.text.replace('"', "\"\""));
        if self.prefix {
            s.push('*');
        }
        s
    }
}

/// Splits user text into words, `"phrases"`, `prefix*`, `a OR b` and `-word` / `NOT word`. Terms
/// without a letter or digit (which a tokenizer turns into nothing) are dropped.
pub(crate) fn parse_query(text: &str) -> ParsedQuery {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut groups: Vec<Vec<QueryTerm>> = Vec::new();
    let mut negatives: Vec<QueryTerm> = Vec::new();
    let mut or_next = false;
    let mut not_next = false;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut negate = std::mem::take(&mut not_next);
        while i < chars.len() && chars[i] == '-' {
            negate = true;
            i += 1;
        }
        if i >= chars.len() || chars[i].is_whitespace() {
            continue;
        }
        let (word, quoted) = if chars[i] == '"' {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&c| c == '"')
                .map_or(chars.len(), |p| start + p);
            i = (end + 1).min(chars.len());
            (chars[start..end].iter().collect::<String>(), true)
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                i += 1;
            }
            (chars[start..i].iter().collect::<String>(), false)
        };
        let mut prefix = false;
        let mut word = word;
        if quoted {
            if i < chars.len() && chars[i] == '*' {
                prefix = true;
                i += 1;
            }
        } else {
            match word.as_str() {
                "OR" if !negate => {
                    or_next = true;
                    continue;
                }
                "AND" => continue,
                "NOT" => {
                    not_next = true;
                    continue;
                }
                _ => {}
            }
            let trimmed = word.trim_end_matches('*');
            prefix = trimmed.len() < word.len();
            word = trimmed.to_owned();
        }
        if !word.chars().any(char::is_alphanumeric) {
            continue;
        }
        let term = QueryTerm { text: word, prefix };
        if negate {
            negatives.push(term);
        } else if std::mem::take(&mut or_next) && !groups.is_empty() {
            groups.last_mut().expect("not empty").push(term);
        } else {
            groups.push(vec![term]);
        }
    }
    ParsedQuery { groups, negatives }
}

/// Turns user text into FTS5 expressions made only of quoted strings, `*`, `AND`, `OR`, `NOT` and
/// parentheses we place ourselves, so no input can be an FTS5 syntax error.
pub(crate) fn fts_query(text: &str) -> FtsQuery {
    let ParsedQuery { groups, negatives } = parse_query(text);
    let positive = (!groups.is_empty()).then(|| {
        groups
            .iter()
            .map(|g| {
                let alts: Vec<String> = g.iter().map(QueryTerm::render).collect();
                if alts.len() == 1 {
                    alts.into_iter().next().expect("one")
                } else {
                    format!("({})", alts.join(" OR "))
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    });
    let negative = (!negatives.is_empty()).then(|| {
        negatives
            .iter()
            .map(QueryTerm::render)
            .collect::<Vec<_>>()
            .join(" OR ")
    });
    FtsQuery { positive, negative }
}

/// Checks a date bound (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, then `T` or a space and `HH`, `HH:MM` or
/// `HH:MM:SS`) and brings it to the stored form (`T` between date and time).
pub fn normalise_date(value: &str) -> Result<String, CatalogError> {
    const TEMPLATE: &[u8] = b"0000-00-00T00:00:00";
    let s = value.trim().replacen(' ', "T", 1);
    let ok = [4, 7, 10, 13, 16, 19].contains(&s.len())
        && s.bytes().zip(TEMPLATE).all(|(c, t)| match t {
            b'0' => c.is_ascii_digit(),
            _ => c == *t,
        });
    if ok {
        Ok(s)
    } else {
        Err(CatalogError::BadDate {
            value: value.to_owned(),
        })
    }
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

/// SQL conditions (with their parameters, in order) for the filters of a query.
fn filters(q: &SearchQuery) -> Result<(String, Vec<Value>), CatalogError> {
    let mut sql = String::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(after) = &q.after {
        sql.push_str(" AND c.taken_at >= ?");
        params.push(Value::Text(normalise_date(after)?));
    }
    if let Some(before) = &q.before {
        sql.push_str(" AND c.taken_at < ?");
        params.push(Value::Text(normalise_date(before)?));
    }
    if let Some(label) = q.label.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        let plain = label.to_lowercase();
        let normalised = crate::clean::normalise_keyword(label).unwrap_or_else(|| plain.clone());
        sql.push_str(" AND p.hash IN (SELECT k.hash FROM keywords k WHERE k.keyword IN (?, ?))");
        params.push(Value::Text(plain));
        params.push(Value::Text(normalised));
    }
    if let Some(under) = &q.under {
        // Range scans on the path index: inside DIR means DIR/ <= path < DIR0 ('0' follows '/').
        // Paths are TEXT, or BLOB for non-UTF-8 names, so both kinds of bound are given.
        let mut base = path_bytes(under);
        while base.len() > 1 && base.last() == Some(&b'/') {
            base.pop();
        }
        if base == b"/" {
            base.clear();
        }
        let lo = [base.as_slice(), b"/"].concat();
        let hi = [base.as_slice(), b"0"].concat();
        sql.push_str(" AND ((p.path >= ? AND p.path < ?) OR (p.path >= ? AND p.path < ?))");
        match (String::from_utf8(lo.clone()), String::from_utf8(hi.clone())) {
            (Ok(l), Ok(h)) => params.extend([Value::Text(l), Value::Text(h)]),
            _ => params.extend([Value::Null, Value::Null]),
        }
        params.extend([Value::Blob(lo), Value::Blob(hi)]);
    }
    if let Some(camera) = q.camera.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        let escaped = camera
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        sql.push_str(
            " AND (coalesce(c.camera_make, '') || ' ' || coalesce(c.camera_model, '')) \
             LIKE ? ESCAPE '\\'",
        );
        params.push(Value::Text(format!("%{escaped}%")));
    }
    Ok((sql, params))
}

const LABELS: &str = "(SELECT group_concat(k.keyword, char(31) ORDER BY k.keyword)
                       FROM keywords k WHERE k.hash = p.hash)";

/// Most photos a filter may let through to be ranked as a set (beyond it, ranked candidates are
/// checked against the filter instead).
const NARROW_FILTER: usize = 20_000;

/// One photo's searchable text, as `photo_fts` holds it.
pub(crate) struct SearchDoc {
    pub photo_id: i64,
    pub caption: String,
    pub labels: String,
    pub ocr: String,
    pub path: String,
}

/// The live part of `search_log`: the first `seq` still there and the last one ever handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBounds {
    pub first_seq: Option<i64>,
    pub last_seq: i64,
}

impl Catalog {
    /// Searches present photos; see the module docs for the query language and ranking.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<Hit>, CatalogError> {
        let parsed = parse_query(&query.text);
        if parsed.groups.is_empty() {
            return self.search_fts5(query);
        }
        let (filter_sql, filter_params) = filters(query)?;
        let mut slot = self.search_index.borrow_mut();
        let usable = match self.ready_index(&mut slot) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::warn!(
                    "search index unusable, using the slower SQLite search: {}",
                    crate::errors::error_chain(&e)
                );
                *slot = None;
                false
            }
        };
        let Some(ix) = slot.as_ref().filter(|_| usable) else {
            drop(slot);
            return self.search_fts5(query);
        };
        // Ranked candidates are checked in SQL (present, filters); fetch more until enough pass.
        let want = query.limit;
        let mut fetch = match want {
            0 => 0,
            n if filter_params.is_empty() => n + n / 4 + 4,
            n => n.max(20) * 8,
        };
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) && !filter_params.is_empty() {
                // The best candidates mostly failed the filters: a narrow filter. Rank only the
                // photos it lets through, when they are few enough to list.
                if let Some(ids) = self.filtered_ids(&filter_sql, &filter_params)? {
                    let ranked = ix.ranked(&parsed, want, Some(&ids))?;
                    let mut hits = self.hits_for(&ranked, &parsed, &filter_sql, &filter_params)?;
                    if want > 0 {
                        hits.truncate(want);
                    }
                    return Ok(hits);
                }
            }
            let ranked = ix.ranked(&parsed, fetch, None)?;
            let exhausted = fetch == 0 || ranked.len() < fetch;
            let mut hits = self.hits_for(&ranked, &parsed, &filter_sql, &filter_params)?;
            if exhausted || hits.len() >= want {
                if want > 0 {
                    hits.truncate(want);
                }
                return Ok(hits);
            }
            fetch = fetch.saturating_mul(8);
        }
    }

    /// Opens the ranked index once per catalog handle and brings it up to date; `false` when it
    /// could not be (another process is rebuilding it): never answer from a stale index.
    fn ready_index(&self, slot: &mut Option<SearchIndex>) -> Result<bool, CatalogError> {
        if slot.is_none() {
            *slot = Some(SearchIndex::open(self)?);
        }
        let ix = slot.as_mut().expect("just set");
        Ok(ix.sync(self)?.is_some() && ix.is_built())
    }

    /// Brings the ranked search index up to date (the daemon calls this after work, so the first
    /// search after a backfill does not build it). Returns photos re-indexed; `None` when another
    /// process holds the index's writer.
    pub fn sync_search_index(&self) -> Result<Option<usize>, CatalogError> {
        let mut slot = self.search_index.borrow_mut();
        if slot.is_none() {
            *slot = Some(SearchIndex::open(self)?);
        }
        slot.as_mut().expect("just set").sync(self)
    }

    /// The present photos passing the filters, when there are at most [`NARROW_FILTER`].
    fn filtered_ids(
        &self,
        filter_sql: &str,
        filter_params: &[Value],
    ) -> Result<Option<Vec<i64>>, CatalogError> {
        let sql = format!(
            "SELECT p.id FROM photos p JOIN contents c ON c.hash = p.hash
             WHERE p.state = 'present'{filter_sql} LIMIT ?"
        );
        let mut params = filter_params.to_vec();
        params.push(Value::Integer(NARROW_FILTER as i64 + 1));
        let ids: Vec<i64> = self.read("search filter", |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?;
            rows.collect()
        })?;
        Ok((ids.len() <= NARROW_FILTER).then_some(ids))
    }

    /// Rows of `ranked` photos that are present and pass the filters, in rank order.
    fn hits_for(
        &self,
        ranked: &[Ranked],
        parsed: &ParsedQuery,
        filter_sql: &str,
        filter_params: &[Value],
    ) -> Result<Vec<Hit>, CatalogError> {
        if ranked.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(&ranked.iter().map(|r| r.photo_id).collect::<Vec<_>>())
            .expect("integers serialise");
        let mut params = vec![Value::Text(ids)];
        params.extend(filter_params.iter().cloned());
        let sql = format!(
            "SELECT p.id, p.path, f.caption, f.labels, f.ocr, f.path, {LABELS}
             FROM photos p
             JOIN photo_fts f ON f.rowid = p.id
             JOIN contents c ON c.hash = p.hash
             WHERE p.id IN (SELECT value FROM json_each(?)) AND p.state = 'present'{filter_sql}"
        );
        let mut rows: HashMap<i64, Hit> = self.read("search", |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                let id: i64 = r.get(0)?;
                let text = |i| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
                let (caption, labels_text, ocr, path_text) =
                    (text(2)?, text(3)?, text(4)?, text(5)?);
                let labels: Option<String> = r.get(6)?;
                Ok((
                    id,
                    Hit {
                        photo_id: id,
                        path: row_path(r, 1)?,
                        snippet: snippet::snippet(
                            [&caption, &labels_text, &ocr, &path_text],
                            parsed,
                        ),
                        caption,
                        labels: labels
                            .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
                            .unwrap_or_default(),
                        score: 0.0,
                    },
                ))
            })?;
            rows.collect()
        })?;
        Ok(ranked
            .iter()
            .filter_map(|r| {
                rows.remove(&r.photo_id).map(|mut h| {
                    h.score = f64::from(r.score);
                    h
                })
            })
            .collect())
    }

    /// The live bounds of `search_log`.
    pub(crate) fn search_log_bounds(&self) -> Result<LogBounds, CatalogError> {
        self.read("search log bounds", |c| {
            let first_seq = c.query_row("SELECT min(seq) FROM search_log", [], |r| r.get(0))?;
            let last_seq = c
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'search_log'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .unwrap_or(0);
            Ok(LogBounds {
                first_seq,
                last_seq,
            })
        })
    }

    /// The last `seq` logged and the distinct photos changed after `after` (up to it).
    pub(crate) fn search_log_after(&self, after: i64) -> Result<(i64, Vec<i64>), CatalogError> {
        self.read("search log", |c| {
            let upto: i64 = c.query_row(
                "SELECT coalesce(max(seq), ?1) FROM search_log WHERE seq > ?1",
                [after],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(
                "SELECT DISTINCT photo_id FROM search_log WHERE seq > ?1 AND seq <= ?2
                 ORDER BY photo_id",
            )?;
            let ids = stmt
                .query_map([after, upto], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok((upto, ids))
        })
    }

    /// Forgets log rows the index has applied (only from a writable handle).
    pub(crate) fn prune_search_log(&self, upto: i64) -> Result<(), CatalogError> {
        self.write("prune search log", |c| {
            c.execute("DELETE FROM search_log WHERE seq <= ?1", [upto])?;
            Ok(())
        })
    }

    /// Rows in `photo_fts`.
    pub(crate) fn search_doc_count(&self) -> Result<u64, CatalogError> {
        self.read("count search rows", |c| {
            c.query_row("SELECT count(*) FROM photo_fts", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    /// Calls `f` with the `photo_fts` row of each of `ids` that has one (all rows when `None`).
    pub(crate) fn search_docs(
        &self,
        ids: Option<&[i64]>,
        mut f: impl FnMut(&SearchDoc) -> Result<(), CatalogError>,
    ) -> Result<(), CatalogError> {
        let (sql, params) = match ids {
            Some(ids) => (
                "SELECT rowid, caption, labels, ocr, path FROM photo_fts
                 WHERE rowid IN (SELECT value FROM json_each(?1))",
                vec![Value::Text(
                    serde_json::to_string(ids).expect("integers serialise"),
                )],
            ),
            None => (
                "SELECT rowid, caption, labels, ocr, path FROM photo_fts",
                Vec::new(),
            ),
        };
        let mut failed = None;
        self.read("read search rows", |c| {
            let mut stmt = c.prepare(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            while let Some(r) = rows.next()? {
                let text = |i| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
                let doc = SearchDoc {
                    photo_id: r.get(0)?,
                    caption: text(1)?,
                    labels: text(2)?,
                    ocr: text(3)?,
                    path: text(4)?,
                };
                if let Err(e) = f(&doc) {
                    failed = Some(e);
                    break;
                }
            }
            Ok(())
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// [`Catalog::search`] with FTS5 alone (bm25 with the same weights): the fallback, the
    /// filter-only listing, and the baseline of `captiond bench-search`.
    pub fn search_fts5(&self, query: &SearchQuery) -> Result<Vec<Hit>, CatalogError> {
        let fts = fts_query(&query.text);
        let (filter_sql, filter_params) = filters(query)?;
        let limit = if query.limit == 0 {
            -1
        } else {
            i64::try_from(query.limit).unwrap_or(i64::MAX)
        };
        let mut params: Vec<Value> = Vec::new();
        let sql = if let Some(positive) = &fts.positive {
            let expr = match &fts.negative {
                Some(neg) => format!("({positive}) NOT ({neg})"),
                None => positive.clone(),
            };
            params.push(Value::Text(expr));
            params.extend(filter_params);
            format!(
                "SELECT p.id, p.path, photo_fts.caption, -{BM25},
                        snippet(photo_fts, -1, char(1), char(2), '…', 16), {LABELS}
                 FROM photo_fts
                 JOIN photos p ON p.id = photo_fts.rowid
                 JOIN contents c ON c.hash = p.hash
                 WHERE photo_fts MATCH ? AND p.state = 'present'{filter_sql}
                 ORDER BY {BM25}, p.id
                 LIMIT ?"
            )
        } else {
            if fts.negative.is_none() && !query.text.trim().is_empty() && filter_params.is_empty() {
                // Only operators or punctuation: nothing to look for.
                return Ok(Vec::new());
            }
            let mut exclude = String::new();
            params.extend(filter_params);
            if let Some(neg) = &fts.negative {
                exclude = " AND p.id NOT IN (SELECT rowid FROM photo_fts WHERE photo_fts MATCH ?)"
                    .to_owned();
                params.push(Value::Text(neg.clone()));
            }
            format!(
                "SELECT p.id, p.path, photo_fts.caption, 0.0, substr(photo_fts.caption, 1, 200),
                        {LABELS}
                 FROM photos p
                 JOIN photo_fts ON photo_fts.rowid = p.id
                 JOIN contents c ON c.hash = p.hash
                 WHERE p.state = 'present'{filter_sql}{exclude}
                 ORDER BY c.taken_at DESC, p.id DESC
                 LIMIT ?"
            )
        };
        params.push(Value::Integer(limit));
        self.read("search", |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                let labels: Option<String> = r.get(5)?;
                Ok(Hit {
                    photo_id: r.get(0)?,
                    path: row_path(r, 1)?,
                    caption: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    score: r.get(3)?,
                    snippet: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    labels: labels
                        .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::{add_captioned, fixture, hash_of, Fixture, PROFILE};
    use crate::catalog::{MediaFacts, Priority, TaskResult};

    fn media(taken: &str, make: &str, model: &str) -> MediaFacts {
        MediaFacts {
            taken_at: Some(taken.into()),
            camera_make: Some(make.into()),
            camera_model: Some(model.into()),
            ..MediaFacts::default()
        }
    }

    fn corpus() -> Fixture {
        let f = fixture();
        add_captioned(
            &f,
            "/photos/2023/beach/IMG_0001.JPG",
            "1",
            media("2023-07-14T16:02:11", "Canon", "EOS R5"),
            "A brown dog running on a sandy beach next to the ocean.",
            &["dog", "ocean"],
        );
        add_captioned(
            &f,
            "/photos/2023/city/IMG_0002.JPG",
            "2",
            media("2023-03-02T09:00:00", "Apple", "iPhone 13"),
            "A red car parked on a street in front of a shop.",
            &["car", "shop"],
        );
        add_captioned(
            &f,
            "/photos/2022/home/IMG_0003.JPG",
            "3",
            media("2022-12-24T20:30:00", "Canon", "EOS 80D"),
            "Two cats sleeping on a sofa; a car toy lies on the red carpet.",
            &["cat", "sofa"],
        );
        add_captioned(
            &f,
            "/photos/dog-walks/IMG_0004.JPG",
            "4",
            MediaFacts::default(),
            "A bicycle leaning against a wall.",
            &["bicycle"],
        );
        f
    }

    fn paths(hits: Vec<Hit>) -> Vec<String> {
        hits.into_iter()
            .map(|h| h.path.to_string_lossy().into_owned())
            .collect()
    }

    /// `paths` in sorted order, to compare the two engines' match sets.
    fn sorted_paths(hits: Vec<Hit>) -> Vec<String> {
        let mut p = paths(hits);
        p.sort();
        p
    }

    fn search(f: &Fixture, q: SearchQuery) -> Vec<String> {
        paths(f.cat.search(&q).unwrap())
    }

    fn text(f: &Fixture, t: &str) -> Vec<String> {
        search(f, SearchQuery::new(t))
    }

    #[test]
    fn builds_safe_queries() {
        let q = |s: &str| fts_query(s);
        assert_eq!(
            q("dogs beach").positive.as_deref(),
            Some("\"dogs\" AND \"beach\"")
        );
        assert_eq!(q("\"red car\"").positive.as_deref(), Some("\"red car\""));
        assert_eq!(q("bicyc*").positive.as_deref(), Some("\"bicyc\"*"));
        assert_eq!(
            q("cat OR dog").positive.as_deref(),
            Some("(\"cat\" OR \"dog\")")
        );
        let neg = q("car -red NOT toy");
        assert_eq!(neg.positive.as_deref(), Some("\"car\""));
        assert_eq!(neg.negative.as_deref(), Some("\"red\" OR \"toy\""));
        assert_eq!(q("a\"b").positive.as_deref(), Some("\"a\" AND \"b\""));
        assert_eq!(q("\"open").positive.as_deref(), Some("\"open\""));
        assert_eq!(q("( ) * - AND OR NOT \""), FtsQuery::default());
        assert_eq!(q("\" AND \"").positive.as_deref(), Some("\" AND \""));
        assert_eq!(q("x:y").positive.as_deref(), Some("\"x:y\""));
    }

    #[test]
    fn ranks_caption_over_path_and_stems() {
        let f = corpus();
        // "dog" is in IMG_0001's caption and labels, and only in IMG_0004's folder name.
        assert_eq!(
            text(&f, "dogs"),
            vec![
                "/photos/2023/beach/IMG_0001.JPG",
                "/photos/dog-walks/IMG_0004.JPG"
            ]
        );
        assert_eq!(text(&f, "sleep"), vec!["/photos/2022/home/IMG_0003.JPG"]);
        assert_eq!(text(&f, "runs"), vec!["/photos/2023/beach/IMG_0001.JPG"]);
        let hits = f.cat.search(&SearchQuery::new("dog")).unwrap();
        assert!(hits[0].score > hits[1].score);
        assert!(
            hits[0].snippet.contains("\u{1}dog\u{2}"),
            "{:?}",
            hits[0].snippet
        );
        assert_eq!(hits[0].labels, vec!["dog", "ocean"]);
        // Caption beats a mention in a longer caption and in labels weight.
        let cars = text(&f, "car");
        assert_eq!(cars[0], "/photos/2023/city/IMG_0002.JPG");
        assert_eq!(cars.len(), 2);
    }

    #[test]
    fn phrases_prefixes_or_not() {
        let f = corpus();
        assert_eq!(
            text(&f, "\"red car\""),
            vec!["/photos/2023/city/IMG_0002.JPG"]
        );
        assert_eq!(text(&f, "\"car red\"").len(), 0);
        assert_eq!(text(&f, "bicyc*"), vec!["/photos/dog-walks/IMG_0004.JPG"]);
        assert_eq!(text(&f, "sof*"), vec!["/photos/2022/home/IMG_0003.JPG"]);
        assert_eq!(text(&f, "cat OR bicycle").len(), 2);
        assert_eq!(
            text(&f, "car -carpet"),
            vec!["/photos/2023/city/IMG_0002.JPG"]
        );
        assert_eq!(text(&f, "-car").len(), 2);
    }

    #[test]
    fn filters() {
        let f = corpus();
        let q = |t: &str| SearchQuery::new(t);
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    label: Some("Cats".into()),
                    ..q("")
                }
            ),
            vec!["/photos/2022/home/IMG_0003.JPG"]
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    label: Some("car".into()),
                    ..q("red")
                }
            ),
            vec!["/photos/2023/city/IMG_0002.JPG"]
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    after: Some("2023".into()),
                    ..q("")
                }
            ),
            vec![
                "/photos/2023/beach/IMG_0001.JPG",
                "/photos/2023/city/IMG_0002.JPG"
            ]
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    after: Some("2023-03-02".into()),
                    before: Some("2023-07-14".into()),
                    ..q("")
                }
            ),
            vec!["/photos/2023/city/IMG_0002.JPG"]
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    before: Some("2023-01-01 00:00:00".into()),
                    ..q("car")
                }
            ),
            vec!["/photos/2022/home/IMG_0003.JPG"]
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    under: Some("/photos/2023/".into()),
                    ..q("a")
                }
            )
            .len(),
            2
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    under: Some("/photos/2023/beach".into()),
                    ..q("")
                }
            ),
            vec!["/photos/2023/beach/IMG_0001.JPG"]
        );
        // "/photos/20" is not a folder prefix of "/photos/2023/…".
        assert!(search(
            &f,
            SearchQuery {
                under: Some("/photos/20".into()),
                ..q("")
            }
        )
        .is_empty());
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    under: Some("/".into()),
                    ..q("")
                }
            )
            .len(),
            4
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    camera: Some("canon".into()),
                    ..q("")
                }
            )
            .len(),
            2
        );
        assert_eq!(
            search(
                &f,
                SearchQuery {
                    camera: Some("eos r5".into()),
                    ..q("")
                }
            ),
            vec!["/photos/2023/beach/IMG_0001.JPG"]
        );
        assert!(search(
            &f,
            SearchQuery {
                camera: Some("%".into()),
                ..q("")
            }
        )
        .is_empty());
        let err = f
            .cat
            .search(&SearchQuery {
                after: Some("last week".into()),
                ..q("")
            })
            .unwrap_err();
        assert!(matches!(err, CatalogError::BadDate { .. }), "{err}");
        assert_eq!(search(&f, SearchQuery { limit: 1, ..q("a") }).len(), 1);
    }

    #[test]
    fn fts_syntax_in_user_text_never_errors() {
        let f = corpus();
        for q in [
            "\"",
            "\"\"",
            "\"unterminated phrase",
            "dog AND",
            "AND",
            "OR dog",
            "dog OR",
            "NOT",
            "dog NOT",
            "(dog",
            "dog)",
            "(cat OR dog) AND (",
            "*",
            "dog*",
            "*dog",
            "-",
            "--dog",
            "- -",
            "dog -",
            "-\"\"",
            "caption:dog",
            "{caption labels}: dog",
            "NEAR(dog beach, 2)",
            "^dog",
            "dog + beach",
            "a\"b\"c",
            "'; DROP TABLE photos; --",
            "\\",
            "😀 dog",
            "\u{0}",
            "d\u{301}",
        ] {
            let r = f.cat.search(&SearchQuery::new(q));
            assert!(r.is_ok(), "{q:?}: {:?}", r.err());
        }
        assert_eq!(text(&f, "😀 dog").len(), 2);
        assert_eq!(text(&f, "(dog").len(), 2);
    }

    #[test]
    fn ocr_text_is_searchable_and_gone_is_not() {
        let f = corpus();
        let h = hash_of("sign");
        f.cat
            .record_photo(
                f.lib,
                Path::new("/photos/sign.jpg"),
                1,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        let job = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        let ocr = TaskResult {
            task: "<OCR>".into(),
            model_repo: "m".into(),
            model_revision: "r".into(),
            raw_text: "GELATERIA".into(),
            clean_text: None,
            result_json: serde_json::json!({"<OCR>": "GELATERIA"}),
            regions: vec![],
            keywords: vec![],
            ocr_text: Some("Gelateria Roma".into()),
        };
        f.cat.finish(job.id, &h, &[ocr]).unwrap();
        let hits = f.cat.search(&SearchQuery::new("gelateria")).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].caption, "");
        f.cat
            .mark_gone(&[PathBuf::from("/photos/sign.jpg")])
            .unwrap();
        assert!(text(&f, "gelateria").is_empty());
    }

    /// The ranked index and FTS5 find the same photos for every query form, and the index (not
    /// the fallback) answered.
    #[test]
    fn index_and_fts5_agree() {
        let f = corpus();
        for q in [
            "dogs",
            "car",
            "red car",
            "\"red car\"",
            "bicyc*",
            "cat OR bicycle",
            "car -carpet",
            "sleeping cats",
            "beach",
            "photos",
            "IMG_0002",
            "nothing-like-this",
        ] {
            let q = SearchQuery::new(q);
            assert_eq!(
                sorted_paths(f.cat.search(&q).unwrap()),
                sorted_paths(f.cat.search_fts5(&q).unwrap()),
                "{q:?}"
            );
        }
        // With filters too (the narrow ones are ranked as a set).
        let filtered = [
            SearchQuery {
                label: Some("cat".into()),
                ..SearchQuery::new("car")
            },
            SearchQuery {
                before: Some("2023".into()),
                ..SearchQuery::new("car OR dog")
            },
            SearchQuery {
                under: Some(PathBuf::from("/photos/2023")),
                ..SearchQuery::new("a")
            },
            SearchQuery {
                camera: Some("canon".into()),
                limit: 1,
                ..SearchQuery::new("car OR dog")
            },
        ];
        for q in filtered {
            assert_eq!(
                sorted_paths(f.cat.search(&q).unwrap()),
                sorted_paths(f.cat.search_fts5(&q).unwrap()),
                "{q:?}"
            );
        }
        let dir = index::index_dir(&f.db);
        assert!(dir.join("meta.json").is_file());
        assert!(f.cat.search_index.borrow().as_ref().unwrap().is_built());
    }

    /// Changes reach the index through the log, which is pruned once applied; a missing or
    /// damaged index is rebuilt from the catalog.
    #[test]
    fn index_follows_the_catalog_and_rebuilds() {
        let f = corpus();
        assert_eq!(index::status(&f.cat).unwrap(), index::IndexStatus::Missing);
        assert_eq!(text(&f, "bicycle").len(), 1);
        assert_eq!(f.cat.search_log_bounds().unwrap().first_seq, None, "pruned");
        assert_eq!(
            index::status(&f.cat).unwrap(),
            index::IndexStatus::Built {
                photos: 4,
                behind: 0
            }
        );
        f.cat
            .rename_photo(
                Path::new("/photos/dog-walks/IMG_0004.JPG"),
                Path::new("/photos/garage/IMG_0004.JPG"),
            )
            .unwrap();
        assert!(matches!(
            index::status(&f.cat).unwrap(),
            index::IndexStatus::Built { behind: 1.., .. }
        ));
        assert_eq!(text(&f, "garage"), vec!["/photos/garage/IMG_0004.JPG"]);
        assert_eq!(text(&f, "dog"), vec!["/photos/2023/beach/IMG_0001.JPG"]);

        // Another handle (a CLI process) on the same files: read-only catalog, shared index.
        let ro = Catalog::open_readonly(&f.db).unwrap();
        let ro_text = |q: &str| paths(ro.search(&SearchQuery::new(q)).unwrap());
        assert_eq!(ro_text("garage"), vec!["/photos/garage/IMG_0004.JPG"]);

        // Deleted, then damaged: rebuilt each time with the same answers.
        let dir = index::index_dir(&f.db);
        drop(f.cat.search_index.borrow_mut().take());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text(&f, "garage"), vec!["/photos/garage/IMG_0004.JPG"]);
        drop(f.cat.search_index.borrow_mut().take());
        std::fs::write(dir.join("meta.json"), b"{ not json").unwrap();
        assert_eq!(text(&f, "garage"), vec!["/photos/garage/IMG_0004.JPG"]);
        assert_eq!(ro_text("sofa"), vec!["/photos/2022/home/IMG_0003.JPG"]);
    }

    /// Filters apply to ranked candidates, also when most of the best ones fail them.
    #[test]
    fn filters_on_ranked_candidates_fetch_more() {
        let f = fixture();
        for i in 0..300 {
            let year = if i == 299 { 2020 } else { 2024 };
            add_captioned(
                &f,
                &format!("/photos/{year}/IMG_{i:04}.JPG"),
                &format!("{i}"),
                media(&format!("{year}-01-01T00:00:00"), "Canon", "R5"),
                "A dog on a beach.",
                &["dog"],
            );
        }
        let hits = search(
            &f,
            SearchQuery {
                before: Some("2021".into()),
                ..SearchQuery::new("dog beach")
            },
        );
        assert_eq!(hits, vec!["/photos/2020/IMG_0299.JPG"]);
        let all = search(
            &f,
            SearchQuery {
                limit: 0,
                ..SearchQuery::new("dog")
            },
        );
        assert_eq!(all.len(), 300);
    }
}
