//! CSV: a header row of the column names, one record per photo; nulls are empty cells and list
//! columns hold JSON text (`["dog","ball"]`, `[[0.1,0.2,0.5,0.6]]`), which keeps them unambiguous.
//!
//! Text cells (captions, OCR text, paths, camera, model) come from photos and models, not from
//! the person opening the file: one that a spreadsheet would run as a formula (it starts with
//! `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, OWASP's advice for CSV
//! injection. The JSONL and Parquet exports keep the text as it is.

use std::io::Write;

use super::jsonl::list_json;
use super::{camera, ExportError, RowSink, LEADING, TRAILING};
use crate::catalog::report::ExportRow;

pub(super) struct CsvSink {
    out: csv::Writer<Box<dyn Write + Send>>,
    record: Vec<String>,
}

fn csv_err(e: csv::Error) -> ExportError {
    let source = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    ExportError::Write {
        format: "csv",
        source,
    }
}

impl CsvSink {
    pub(super) fn new(
        out: Box<dyn Write + Send>,
        names: &[String],
    ) -> Result<CsvSink, ExportError> {
        let mut out = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(out);
        let header = LEADING
            .iter()
            .copied()
            .chain(names.iter().map(String::as_str))
            .chain(TRAILING.iter().copied());
        out.write_record(header).map_err(csv_err)?;
        Ok(CsvSink {
            out,
            record: Vec::new(),
        })
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// A text cell a spreadsheet will not evaluate (see the module docs).
fn text_cell(s: String) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

impl RowSink for CsvSink {
    fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        let r = &mut self.record;
        r.clear();
        r.push(text_cell(row.path.to_string_lossy().into_owned()));
        r.push(row.hash.clone());
        r.push(row.size.to_string());
        r.push(opt(&row.taken_at));
        r.push(opt(&row.width));
        r.push(opt(&row.height));
        r.push(text_cell(camera(row).unwrap_or_default()));
        r.extend(row.texts.iter().map(|t| text_cell(opt(t))));
        r.push(list_json(&row.labels));
        let boxes: Vec<[f32; 4]> = row.regions.iter().map(|g| g.bbox).collect();
        r.push(list_json(&boxes));
        let box_labels: Vec<&str> = row.regions.iter().map(|g| g.label.as_str()).collect();
        r.push(list_json(&box_labels));
        r.push(text_cell(opt(&row.model)));
        self.out.write_record(&*r).map_err(csv_err)
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush().map_err(|source| ExportError::Write {
            format: "csv",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_evaluate_are_quoted() {
        for bad in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(text_cell(bad.into()), format!("'{bad}"));
        }
        for fine in ["a dog = happy", "/photos/a.jpg", "", "2 dogs"] {
            assert_eq!(text_cell(fine.into()), fine);
        }
    }
}
