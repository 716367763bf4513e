//! `captiond export`: the catalog as a dataset file, one row per present photo, streamed from
//! [`Catalog::export_rows`] (nothing is held beyond one record batch of [`BATCH_ROWS`] rows).
//!
//! Columns, in order (the same names in every format):
//! - `path` (string), `hash` (blake3 hex), `size` (bytes, int64);
//! - `date_taken` (EXIF local time `YYYY-MM-DDTHH:MM:SS`, an offset may follow; null if unknown),
//!   `width`, `height` (pixels as stored, int32, null if unknown), `camera` ("make model");
//! - one text column per task found in the catalog: captions as `caption` (`<CAPTION>`),
//!   `caption_detailed`, `caption_more_detailed`, …; OCR text as `ocr`, `ocr_with_region`, …
//!   (null where the photo has no result for the task yet);
//! - `labels` (list of keywords, sorted), `boxes` (list of `[x1, y1, x2, y2]`, normalised 0..1 in
//!   the stored frame) and `box_labels` (the label of each box, same order), `model`
//!   (`repo@revision` of the newest result).
//!
//! Parquet (arrow-rs, Snappy): strings are `utf8`, lists are `list<utf8>` and
//! `list<list<float>>`: what pyarrow, pandas and `datasets.load_dataset("parquet", …)` read as
//! plain columns. JSONL: one object per line with those keys. CSV: a header row, list columns as
//! JSON text (`["dog","ball"]`), empty cells for nulls. Rows come in no set order (two threads
//! read halves of the catalog); copies of one photo are adjacent. Non-UTF-8 paths are written
//! lossily (U+FFFD).

mod csv_out;
mod jsonl;
mod parquet_out;

use std::io::Write;

use crate::catalog::report::{ExportRow, ExportText, HashRange, TextKind};
use crate::catalog::{Catalog, CatalogError};

/// Rows per Arrow record batch (and per flush of the text writers).
pub const BATCH_ROWS: usize = 8192;

/// The export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Apache Parquet (Snappy): pandas, pyarrow, Hugging Face datasets.
    Parquet,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated, with a header row; list columns as JSON text.
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// The format a file name's extension implies (`.parquet`, `.jsonl`/`.ndjson`, `.csv`).
    pub fn from_extension(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot write the {format} output")]
    Write {
        format: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the Parquet file")]
    Parquet(#[source] parquet::errors::ParquetError),
    #[error("cannot build an Arrow record batch")]
    Arrow(#[source] arrow_schema::ArrowError),
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub rows: u64,
    /// Every column name, in order.
    pub columns: Vec<String>,
}

/// The fixed columns before the text columns.
pub const LEADING: [&str; 7] = [
    "path",
    "hash",
    "size",
    "date_taken",
    "width",
    "height",
    "camera",
];
/// The fixed columns after the text columns.
pub const TRAILING: [&str; 4] = ["labels", "boxes", "box_labels", "model"];

/// The column name of a task's text: `<MORE_DETAILED_CAPTION>` → `caption_more_detailed`,
/// `<CAPTION>` → `caption`, `<OCR>` → `ocr`, `<OCR_WITH_REGION>` → `ocr_with_region`.
pub fn text_column(text: &ExportText) -> String {
    let token: String = text
        .task
        .trim_matches(|c| c == '<' || c == '>')
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match text.kind {
        TextKind::Caption => {
            if token == "caption" {
                "caption".to_owned()
            } else {
                let stem = token.strip_suffix("_caption").unwrap_or(&token);
                format!("caption_{stem}")
            }
        }
        TextKind::Ocr => {
            if token.starts_with("ocr") {
                token
            } else {
                format!("ocr_{token}")
            }
        }
    }
}

/// Text column names for `texts`, made unique (a clash gets `_2`, `_3`, …).
pub fn text_columns(texts: &[ExportText]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(texts.len());
    for t in texts {
        let base = text_column(t);
        let mut name = base.clone();
        let mut n = 2;
        while out.contains(&name)
            || LEADING.contains(&name.as_str())
            || TRAILING.contains(&name.as_str())
        {
            name = format!("{base}_{n}");
            n += 1;
        }
        out.push(name);
    }
    out
}

/// "make model", without repeating a make the model already starts with ("Canon Canon EOS R5").
pub fn camera(row: &ExportRow) -> Option<String> {
    let make = row
        .camera_make
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let model = row
        .camera_model
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match (make, model) {
        (Some(make), Some(model)) => {
            if model.to_lowercase().starts_with(&make.to_lowercase()) {
                Some(model.to_owned())
            } else {
                Some(format!("{make} {model}"))
            }
        }
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// One format's writer: rows in, bytes out. Runs on its own thread.
trait RowSink: Send {
    fn write(&mut self, row: &ExportRow) -> Result<(), ExportError>;
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

/// Writes every present photo of `catalog` to `out` in `format`. The caller owns where `out`
/// goes (a temporary file renamed on success, or stdout).
///
/// Three threads: two read the catalog (each half of the hash space with its own read-only
/// handle, the second opened here), one encodes and writes; batches of [`BATCH_ROWS`] rows pass
/// through a short queue, so reading and encoding overlap and only a few batches are in memory.
/// The two read transactions start together; a photo whose content changes at that very moment
/// may be exported in its old or its new state.
pub fn export(
    catalog: &Catalog,
    format: Format,
    out: Box<dyn Write + Send>,
) -> Result<ExportSummary, ExportError> {
    let texts = catalog.export_texts()?;
    let names = text_columns(&texts);
    let mut sink: Box<dyn RowSink> = match format {
        Format::Parquet => Box::new(parquet_out::ParquetSink::new(out, &names)?),
        Format::Jsonl => Box::new(jsonl::JsonlSink::new(out, &names)),
        Format::Csv => Box::new(csv_out::CsvSink::new(out, &names)?),
    };
    let [first_half, second_half] = HashRange::HALVES;
    let (read, written) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<ExportRow>>(4);
        let writer = s.spawn(move || -> Result<(), ExportError> {
            for batch in rx {
                for row in &batch {
                    sink.write(row)?;
                }
            }
            sink.finish()
        });
        let second = {
            let tx = tx.clone();
            let texts = &texts;
            let path = catalog.path().to_owned();
            s.spawn(move || -> Result<u64, CatalogError> {
                let handle = Catalog::open_readonly(&path)?;
                read_range(&handle, texts, second_half, &tx)
            })
        };
        let first = read_range(catalog, &texts, first_half, &tx);
        drop(tx);
        let second = join(second.join());
        let written = join(writer.join());
        (first.and_then(|a| Ok(a + second?)), written)
    });
    // A catalog error first (it explains a writer that was cut short), then the writer's.
    let rows = read?;
    written?;
    let columns = LEADING
        .iter()
        .map(|s| s.to_string())
        .chain(names)
        .chain(TRAILING.iter().map(|s| s.to_string()))
        .collect();
    Ok(ExportSummary { rows, columns })
}

/// A thread's result, its panic carried on.
fn join<T>(result: std::thread::Result<T>) -> T {
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Sends the rows of `range` to the writer in batches; returns how many. A writer that stopped
/// (its error is reported by [`export`]) ends the reading quietly.
fn read_range(
    catalog: &Catalog,
    texts: &[ExportText],
    range: HashRange<'_>,
    tx: &std::sync::mpsc::SyncSender<Vec<ExportRow>>,
) -> Result<u64, CatalogError> {
    let mut rows = 0u64;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let done = catalog.export_rows_in(texts, range, |row| {
        rows += 1;
        batch.push(row);
        if batch.len() >= BATCH_ROWS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
            tx.send(full).map_err(drop)?;
        }
        Ok::<(), ()>(())
    })?;
    if done.is_ok() && !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(task: &str, kind: TextKind) -> ExportText {
        ExportText {
            task: task.into(),
            kind,
        }
    }

    #[test]
    fn column_names() {
        use TextKind::*;
        assert_eq!(text_column(&t("<CAPTION>", Caption)), "caption");
        assert_eq!(
            text_column(&t("<DETAILED_CAPTION>", Caption)),
            "caption_detailed"
        );
        assert_eq!(
            text_column(&t("<MORE_DETAILED_CAPTION>", Caption)),
            "caption_more_detailed"
        );
        assert_eq!(text_column(&t("<OCR>", Ocr)), "ocr");
        assert_eq!(text_column(&t("<OCR_WITH_REGION>", Ocr)), "ocr_with_region");
        assert_eq!(text_column(&t("<OD>", Caption)), "caption_od");
        assert_eq!(
            text_columns(&[t("<CAPTION>", Caption), t("CAPTION", Caption)]),
            vec!["caption", "caption_2"]
        );
    }

    #[test]
    fn camera_joins_make_and_model() {
        let mut row = ExportRow {
            path: "/a".into(),
            hash: "h".into(),
            size: 1,
            taken_at: None,
            width: None,
            height: None,
            camera_make: Some("Canon".into()),
            camera_model: Some("Canon EOS R5".into()),
            texts: vec![],
            labels: vec![],
            regions: vec![],
            model: None,
        };
        assert_eq!(camera(&row).as_deref(), Some("Canon EOS R5"));
        row.camera_model = Some("iPhone 13".into());
        row.camera_make = Some("Apple".into());
        assert_eq!(camera(&row).as_deref(), Some("Apple iPhone 13"));
        row.camera_make = None;
        assert_eq!(camera(&row).as_deref(), Some("iPhone 13"));
        row.camera_model = Some(" ".into());
        assert_eq!(camera(&row), None);
    }
}
