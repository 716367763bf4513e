//! JSON Lines: one object per photo, keys in column order (see the module docs of `export`).

use std::io::{BufWriter, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{camera, ExportError, RowSink};
use crate::catalog::report::ExportRow;

/// A row with its text column names, serialised as one flat object.
struct JsonRow<'a> {
    row: &'a ExportRow,
    names: &'a [String],
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.row;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("path", &r.path.to_string_lossy())?;
        m.serialize_entry("hash", &r.hash)?;
        m.serialize_entry("size", &r.size)?;
        m.serialize_entry("date_taken", &r.taken_at)?;
        m.serialize_entry("width", &r.width)?;
        m.serialize_entry("height", &r.height)?;
        m.serialize_entry("camera", &camera(r))?;
        for (name, text) in self.names.iter().zip(&r.texts) {
            m.serialize_entry(name, text)?;
        }
        m.serialize_entry("labels", &r.labels)?;
        let boxes: Vec<[f32; 4]> = r.regions.iter().map(|g| g.bbox).collect();
        m.serialize_entry("boxes", &boxes)?;
        let box_labels: Vec<&str> = r.regions.iter().map(|g| g.label.as_str()).collect();
        m.serialize_entry("box_labels", &box_labels)?;
        m.serialize_entry("model", &r.model)?;
        m.end()
    }
}

pub(super) struct JsonlSink {
    out: BufWriter<Box<dyn Write + Send>>,
    names: Vec<String>,
}

impl JsonlSink {
    pub(super) fn new(out: Box<dyn Write + Send>, names: &[String]) -> JsonlSink {
        JsonlSink {
            out: BufWriter::with_capacity(1 << 16, out),
            names: names.to_vec(),
        }
    }
}

fn write_err(source: std::io::Error) -> ExportError {
    ExportError::Write {
        format: "jsonl",
        source,
    }
}

impl RowSink for JsonlSink {
    fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        let line = JsonRow {
            row,
            names: &self.names,
        };
        serde_json::to_writer(&mut self.out, &line).map_err(|e| write_err(e.into()))?;
        self.out.write_all(b"\n").map_err(write_err)
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush().map_err(write_err)
    }
}

/// A value as compact JSON text (the CSV writer's list cells).
pub(super) fn list_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
