//! The ranked search index: a tantivy index in the folder beside the catalog (`catalog.db-search`),
//! derived entirely from `photo_fts`. Why not rank in FTS5: its bm25 recounts every matching row of
//! each query word to get the word's document frequency, so "dog beach" on 1M photos costs tens of
//! milliseconds (seconds at p99); tantivy keeps document frequencies in its term dictionary and
//! skips through postings, ~2 ms.
//!
//! Keeping it in step: every change to a `photo_fts` row appends the photo id to `search_log`
//! (same transaction). [`SearchIndex::sync`] applies the ids logged after the `seq` stored in the
//! index's last commit payload (delete the photo's document, re-add it from `photo_fts` if it is
//! still there), commits with the new `seq`, and prunes the log up to it. A crash between the two
//! only repeats work. An index that is missing, unreadable, or older than what the log still holds
//! is rebuilt from `photo_fts`. Whoever syncs first takes tantivy's writer lock; anyone else
//! searches the last commit.

use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query,
    RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term,
};

use super::{ParsedQuery, QueryTerm};
use crate::catalog::{Catalog, CatalogError};

/// Tokenizer of every text field: words and numbers, lower-cased, accents folded, English stems
/// ("dogs" and "dog" are one term).
const ANALYZER: &str = "captiond_en";
/// Searched fields and their weights: caption > labels > OCR text > path.
const WEIGHTS: [(&str, f32); 4] = [
    ("caption", 8.0),
    ("labels", 4.0),
    ("ocr", 2.0),
    ("path", 1.0),
];
/// Bumped when the schema or analyzer changes: an index of another version is rebuilt.
const FORMAT: u32 = 1;
/// Writer memory budget (tantivy's minimum is 15 MB per thread).
const WRITER_HEAP: usize = 64 << 20;
/// How long a sync waits for another process's writer before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Photos re-indexed per batch while applying the log or rebuilding.
const CHUNK: usize = 5_000;

/// The folder of the index belonging to the catalog file `catalog` (`catalog.db-search`, next to
/// SQLite's own `-wal` and `-shm`).
pub fn index_dir(catalog: &Path) -> PathBuf {
    let mut name = catalog.file_name().unwrap_or_default().to_os_string();
    name.push("-search");
    catalog.with_file_name(name)
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    text: [Field; 4],
}

/// What the last commit covers: the index format and the last `search_log.seq` applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Payload {
    format: u32,
    seq: i64,
}

impl Payload {
    fn encode(self) -> String {
        format!("captiond-search {} {}", self.format, self.seq)
    }

    fn decode(s: &str) -> Option<Payload> {
        let mut it = s.strip_prefix("captiond-search ")?.split(' ');
        let p = Payload {
            format: it.next()?.parse().ok()?,
            seq: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(p)
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", INDEXED | FAST);
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let text = WEIGHTS.map(|(name, _)| b.add_text_field(name, text.clone()));
    (b.build(), Fields { id, text })
}

fn analyzer(stem: bool) -> TextAnalyzer {
    let b = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    if stem {
        b.filter(Stemmer::new(Language::English)).build()
    } else {
        b.build()
    }
}

/// `text` as the index sees it: (term, byte start, byte end) per token.
pub(super) fn tokens(text: &str, stem: bool) -> Vec<(String, usize, usize)> {
    let mut a = analyzer(stem);
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.text.clone(), t.offset_from, t.offset_to));
    }
    out
}

/// One ranked match: the photo and its score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ranked {
    pub photo_id: i64,
    pub score: f32,
}

pub(crate) struct SearchIndex {
    dir: PathBuf,
    index: Index,
    fields: Fields,
    reader: IndexReader,
}

fn index_err(dir: &Path) -> impl Fn(TantivyError) -> CatalogError + '_ {
    move |source| CatalogError::SearchIndex {
        dir: dir.to_owned(),
        source,
    }
}

impl SearchIndex {
    /// Opens the index of `catalog`, creating it (empty, not yet built) if missing. An index of
    /// another format, or one tantivy cannot read, is removed and created again: it only ever
    /// holds what the catalog can rebuild.
    pub fn open(catalog: &Catalog) -> Result<SearchIndex, CatalogError> {
        let dir = index_dir(catalog.path());
        let (schema, fields) = schema();
        let dir_for_err = dir.clone();
        let err = index_err(&dir_for_err);
        let io_err = |source: std::io::Error| CatalogError::SearchIndexIo {
            dir: dir.clone(),
            source,
        };
        let existing = if dir.join("meta.json").exists() {
            match Index::open_in_dir(&dir) {
                Ok(ix)
                    if ix.schema() == schema
                        && stored_payload(&ix).is_none_or(|p| p.format == FORMAT) =>
                {
                    Some(ix)
                }
                Ok(_) | Err(_) => {
                    tracing::info!(dir = %dir.display(), "search index of another version: rebuilding it");
                    std::fs::remove_dir_all(&dir).map_err(io_err)?;
                    None
                }
            }
        } else {
            None
        };
        let index = match existing {
            Some(ix) => ix,
            None => {
                std::fs::create_dir_all(&dir).map_err(io_err)?;
                match Index::create_in_dir(&dir, schema) {
                    Ok(ix) => ix,
                    // Another process created it in between.
                    Err(TantivyError::IndexAlreadyExists) => {
                        Index::open_in_dir(&dir).map_err(&err)?
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        };
        index.tokenizers().register(ANALYZER, analyzer(true));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(&err)?;
        Ok(SearchIndex {
            dir,
            index,
            fields,
            reader,
        })
    }

    /// Whether the index has been built at least once (searchable).
    pub fn is_built(&self) -> bool {
        stored_payload(&self.index).is_some()
    }

    /// Brings the index up to the catalog's `search_log`; returns how many photos were re-indexed,
    /// or `None` when another process kept the writer for longer than [`LOCK_WAIT`] (it is
    /// rebuilding; the caller must not trust this index until a later sync succeeds).
    pub fn sync(&mut self, catalog: &Catalog) -> Result<Option<usize>, CatalogError> {
        let err = index_err(&self.dir);
        let waited = std::time::Instant::now();
        let mut writer: IndexWriter = loop {
            if self.plan(catalog)? == Plan::UpToDate {
                // Possibly committed by another process: read its commit.
                self.reader.reload().map_err(&err)?;
                return Ok(Some(0));
            }
            match self.index.writer_with_num_threads(1, WRITER_HEAP) {
                Ok(w) => break w,
                // Syncs are short: wait for the other writer, then see what is left.
                Err(TantivyError::LockFailure(..)) if waited.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TantivyError::LockFailure(..)) => return Ok(None),
                Err(e) => return Err(err(e)),
            }
        };
        // Planned again under the writer lock: another process may have synced meanwhile.
        let mut done = 0usize;
        let fields = self.fields;
        let mut add = |doc: &super::SearchDoc| {
            done += 1;
            writer_add(&writer, fields, doc).map_err(&err)
        };
        let seq = match self.plan(catalog)? {
            Plan::UpToDate => {
                self.reader.reload().map_err(&err)?;
                return Ok(Some(0));
            }
            Plan::Apply { after } => {
                let (upto, ids) = catalog.search_log_after(after)?;
                for chunk in ids.chunks(CHUNK) {
                    for &id in chunk {
                        writer.delete_term(Term::from_field_u64(fields.id, id as u64));
                    }
                    catalog.search_docs(Some(chunk), &mut add)?;
                }
                upto
            }
            Plan::Rebuild => {
                writer.delete_all_documents().map_err(&err)?;
                // The log's end first, then the rows: a change in between is applied again later.
                let upto = catalog.search_log_bounds()?.last_seq;
                let total = catalog.search_doc_count()?;
                if total > 50_000 {
                    tracing::info!(photos = total, "building the search index");
                }
                catalog.search_docs(None, &mut add)?;
                upto
            }
        };
        let mut prepared = writer.prepare_commit().map_err(&err)?;
        prepared.set_payload(
            &Payload {
                format: FORMAT,
                seq,
            }
            .encode(),
        );
        prepared.commit().map_err(&err)?;
        writer.wait_merging_threads().map_err(&err)?;
        self.reader.reload().map_err(&err)?;
        if catalog.is_writable() {
            catalog.prune_search_log(seq)?;
        }
        Ok(Some(done))
    }

    /// What [`SearchIndex::sync`] has to do, from the last commit's payload and the log's bounds.
    fn plan(&self, catalog: &Catalog) -> Result<Plan, CatalogError> {
        let log = catalog.search_log_bounds()?;
        Ok(match stored_payload(&self.index) {
            Some(p) if p.seq == log.last_seq => Plan::UpToDate,
            // Every change after the commit is still in the log (pruning stops at the commit).
            Some(p) if p.seq < log.last_seq && log.first_seq.is_some_and(|f| f <= p.seq + 1) => {
                Plan::Apply { after: p.seq }
            }
            // Never built, the log no longer reaches back to it, or another catalog's index.
            _ => Plan::Rebuild,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    UpToDate,
    Apply { after: i64 },
    Rebuild,
}

fn writer_add(writer: &IndexWriter, fields: Fields, doc: &super::SearchDoc) -> tantivy::Result<()> {
    let mut d = TantivyDocument::default();
    d.add_u64(fields.id, doc.photo_id as u64);
    for (field, text) in fields.text.iter().zip([
        doc.caption.as_str(),
        doc.labels.as_str(),
        doc.ocr.as_str(),
        doc.path.as_str(),
    ]) {
        if !text.is_empty() {
            d.add_text(*field, text);
        }
    }
    writer.add_document(d)?;
    Ok(())
}

impl SearchIndex {
    /// The best `limit` photos for `query` (all matches when `limit` is 0), best first; ties in
    /// photo id order. `only`: rank just these photos.
    pub fn ranked(
        &self,
        query: &ParsedQuery,
        limit: usize,
        only: Option<&[i64]>,
    ) -> Result<Vec<Ranked>, CatalogError> {
        let err = index_err(&self.dir);
        let Some(mut q) = self.build(query) else {
            return Ok(Vec::new());
        };
        if let Some(ids) = only {
            // Only these photos (those a narrow filter lets through); adds nothing to scores.
            let set = TermSetQuery::new(
                ids.iter()
                    .map(|&id| Term::from_field_u64(self.fields.id, id as u64)),
            );
            q = Box::new(BooleanQuery::new(vec![
                (Occur::Must, q),
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(Box::new(set), 0.0)),
                ),
            ]));
        }
        let searcher = self.reader.searcher();
        let limit = if limit == 0 {
            (searcher.num_docs() as usize).max(1)
        } else {
            limit
        };
        let top: Vec<(f32, DocAddress)> = searcher
            .search(&*q, &TopDocs::with_limit(limit).order_by_score())
            .map_err(&err)?;
        let mut out = Vec::with_capacity(top.len());
        let mut columns = Vec::new();
        for (score, addr) in top {
            let ord = addr.segment_ord as usize;
            if columns.len() <= ord {
                columns.resize_with(ord + 1, || None);
            }
            if columns[ord].is_none() {
                columns[ord] = Some(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .u64("id")
                        .map_err(&err)?,
                );
            }
            let col = columns[ord].as_ref().expect("filled above");
            if let Some(id) = col.first(addr.doc_id) {
                out.push(Ranked {
                    photo_id: id as i64,
                    score,
                });
            }
        }
        // Equal scores: lower photo id first, as the FTS5 search orders them.
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.photo_id.cmp(&b.photo_id))
        });
        Ok(out)
    }

    /// The tantivy query for a parsed user query: every group must match (any of its
    /// alternatives), no negative may; each word or phrase may match in any field, weighted.
    fn build(&self, query: &ParsedQuery) -> Option<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for group in &query.groups {
            let alts: Vec<(Occur, Box<dyn Query>)> = group
                .iter()
                .filter_map(|t| self.term_query(t))
                .map(|q| (Occur::Should, q))
                .collect();
            if alts.is_empty() {
                // A word with no indexable token (e.g. only punctuation) matches nothing.
                return None;
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(alts))));
        }
        for t in &query.negatives {
            if let Some(q) = self.term_query(t) {
                clauses.push((Occur::MustNot, q));
            }
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// One word, phrase or prefix, in any field, weighted.
    fn term_query(&self, term: &QueryTerm) -> Option<Box<dyn Query>> {
        let toks: Vec<String> = tokens(&term.text, !term.prefix)
            .into_iter()
            .map(|t| t.0)
            .collect();
        if toks.is_empty() {
            return None;
        }
        let per_field = self
            .fields
            .text
            .iter()
            .zip(WEIGHTS)
            .map(|(&field, (_, w))| {
                let terms: Vec<Term> = toks
                    .iter()
                    .map(|t| Term::from_field_text(field, t))
                    .collect();
                let q: Box<dyn Query> = match (term.prefix, terms.len()) {
                    (false, 1) => Box::new(TermQuery::new(
                        terms.into_iter().next().expect("one"),
                        IndexRecordOption::WithFreqs,
                    )),
                    (false, _) => Box::new(PhraseQuery::new(terms)),
                    (true, 1) => {
                        let pattern = format!("{}.*", regex_escape(&toks[0]));
                        match RegexQuery::from_pattern(&pattern, field) {
                            Ok(q) => Box::new(q),
                            Err(_) => return None,
                        }
                    }
                    (true, _) => Box::new(PhrasePrefixQuery::new(terms)),
                };
                Some((
                    Occur::Should,
                    Box::new(BoostQuery::new(q, w)) as Box<dyn Query>,
                ))
            });
        let alts: Vec<(Occur, Box<dyn Query>)> = per_field.flatten().collect();
        (!alts.is_empty()).then(|| Box::new(BooleanQuery::new(alts)) as Box<dyn Query>)
    }
}

/// Escapes a token for tantivy's regex syntax (tokens are words, but be safe).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
}

/// The ranked index as `captiond doctor` reports it (reading only: never creates or syncs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatus {
    /// Not built yet: the next search or the daemon builds it.
    Missing,
    /// Built; `behind` catalog changes not applied yet (the next search or the daemon does).
    Built { photos: u64, behind: i64 },
    /// Of another version, or unreadable: it is rebuilt on the next search.
    Stale { reason: String },
}

/// Reads the state of `catalog`'s ranked index without changing anything.
pub fn status(catalog: &Catalog) -> Result<IndexStatus, CatalogError> {
    let dir = index_dir(catalog.path());
    if !dir.join("meta.json").exists() {
        return Ok(IndexStatus::Missing);
    }
    let index = match Index::open_in_dir(&dir) {
        Ok(ix) => ix,
        Err(e) => {
            return Ok(IndexStatus::Stale {
                reason: e.to_string(),
            })
        }
    };
    let Some(payload) = stored_payload(&index) else {
        return Ok(IndexStatus::Missing);
    };
    if payload.format != FORMAT || index.schema() != schema().0 {
        return Ok(IndexStatus::Stale {
            reason: "made by another captiond version".into(),
        });
    }
    index.tokenizers().register(ANALYZER, analyzer(true));
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(index_err(&dir))?;
    let log = catalog.search_log_bounds()?;
    Ok(IndexStatus::Built {
        photos: reader.searcher().num_docs(),
        behind: (log.last_seq - payload.seq).max(0),
    })
}

fn stored_payload(index: &Index) -> Option<Payload> {
    let metas = index.load_metas().ok()?;
    Payload::decode(metas.payload.as_deref()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let p = Payload {
            format: FORMAT,
            seq: 42,
        };
        assert_eq!(Payload::decode(&p.encode()), Some(p));
        assert_eq!(Payload::decode("something else"), None);
        assert_eq!(Payload::decode("captiond-search 1 2 3"), None);
    }

    #[test]
    fn index_sits_beside_the_catalog() {
        assert_eq!(
            index_dir(Path::new("/var/lib/captiond/catalog.db")),
            PathBuf::from("/var/lib/captiond/catalog.db-search")
        );
    }

    #[test]
    fn analyzer_stems_and_folds() {
        let t: Vec<String> = tokens("Dogs running on the Café's path", true)
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(t, ["dog", "run", "on", "the", "cafe", "s", "path"]);
        let t: Vec<String> = tokens("Bicyc", false).into_iter().map(|t| t.0).collect();
        assert_eq!(t, ["bicyc"]);
    }
}
