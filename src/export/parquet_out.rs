//! The Parquet writer: rows go into Arrow builders, every [`BATCH_ROWS`] rows become a record
//! batch handed to arrow-rs' `ArrowWriter` (Snappy, row groups of [`ROW_GROUP_ROWS`]).

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{camera, ExportError, RowSink, BATCH_ROWS};
use crate::catalog::report::ExportRow;

/// Rows per Parquet row group: large enough for good compression, small enough that the writer's
/// buffered group stays around tens of MB.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// The Arrow schema of an export with these text columns.
pub fn schema(text_columns: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("size", DataType::Int64, false),
        Field::new("date_taken", DataType::Utf8, true),
        Field::new("width", DataType::Int32, true),
        Field::new("height", DataType::Int32, true),
        Field::new("camera", DataType::Utf8, true),
    ];
    fields.extend(
        text_columns
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true)),
    );
    fields.extend([
        Field::new("labels", list_of(DataType::Utf8), false),
        Field::new("boxes", list_of(list_of(DataType::Float32)), false),
        Field::new("box_labels", list_of(DataType::Utf8), false),
        Field::new("model", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

struct Builders {
    path: StringBuilder,
    hash: StringBuilder,
    size: Int64Builder,
    date_taken: StringBuilder,
    width: Int32Builder,
    height: Int32Builder,
    camera: StringBuilder,
    texts: Vec<StringBuilder>,
    labels: ListBuilder<StringBuilder>,
    boxes: ListBuilder<ListBuilder<Float32Builder>>,
    box_labels: ListBuilder<StringBuilder>,
    model: StringBuilder,
}

impl Builders {
    fn new(texts: usize) -> Builders {
        let n = BATCH_ROWS;
        Builders {
            path: StringBuilder::with_capacity(n, n * 48),
            hash: StringBuilder::with_capacity(n, n * 64),
            size: Int64Builder::with_capacity(n),
            date_taken: StringBuilder::with_capacity(n, n * 19),
            width: Int32Builder::with_capacity(n),
            height: Int32Builder::with_capacity(n),
            camera: StringBuilder::new(),
            texts: (0..texts)
                .map(|_| StringBuilder::with_capacity(n, n * 256))
                .collect(),
            labels: ListBuilder::new(StringBuilder::new()),
            boxes: ListBuilder::new(ListBuilder::new(Float32Builder::new())),
            box_labels: ListBuilder::new(StringBuilder::new()),
            model: StringBuilder::new(),
        }
    }

    fn push(&mut self, row: &ExportRow) {
        self.path.append_value(row.path.to_string_lossy());
        self.hash.append_value(&row.hash);
        self.size
            .append_value(i64::try_from(row.size).unwrap_or(i64::MAX));
        self.date_taken.append_option(row.taken_at.as_deref());
        self.width
            .append_option(row.width.and_then(|w| i32::try_from(w).ok()));
        self.height
            .append_option(row.height.and_then(|h| i32::try_from(h).ok()));
        self.camera.append_option(camera(row));
        for (b, text) in self.texts.iter_mut().zip(&row.texts) {
            b.append_option(text.as_deref());
        }
        for label in &row.labels {
            self.labels.values().append_value(label);
        }
        self.labels.append(true);
        for region in &row.regions {
            let coords = self.boxes.values();
            for v in region.bbox {
                coords.values().append_value(v);
            }
            coords.append(true);
            self.box_labels.values().append_value(&region.label);
        }
        self.boxes.append(true);
        self.box_labels.append(true);
        self.model.append_option(row.model.as_deref());
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.path.finish()),
            Arc::new(self.hash.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.date_taken.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
            Arc::new(self.camera.finish()),
        ];
        columns.extend(
            self.texts
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.labels.finish()));
        columns.push(Arc::new(self.boxes.finish()));
        columns.push(Arc::new(self.box_labels.finish()));
        columns.push(Arc::new(self.model.finish()));
        columns
    }
}

pub(super) struct ParquetSink {
    writer: ArrowWriter<Box<dyn Write + Send>>,
    schema: SchemaRef,
    builders: Builders,
    pending: usize,
}

impl ParquetSink {
    pub(super) fn new(
        out: Box<dyn Write + Send>,
        text_columns: &[String],
    ) -> Result<ParquetSink, ExportError> {
        let schema = schema(text_columns);
        // Dictionaries only where values repeat; paths, hashes and captions are nearly unique.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_dictionary_enabled(false)
            .set_created_by(format!("captiond {}", env!("CARGO_PKG_VERSION")));
        for col in [
            vec!["camera"],
            vec!["model"],
            vec!["labels", "list", "item"],
            vec!["box_labels", "list", "item"],
        ] {
            let path = ColumnPath::new(col.into_iter().map(str::to_owned).collect());
            props = props.set_column_dictionary_enabled(path, true);
        }
        let writer = ArrowWriter::try_new(out, schema.clone(), Some(props.build()))
            .map_err(ExportError::Parquet)?;
        Ok(ParquetSink {
            writer,
            schema,
            builders: Builders::new(text_columns.len()),
            pending: 0,
        })
    }

    fn flush_batch(&mut self) -> Result<(), ExportError> {
        if self.pending == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(self.schema.clone(), self.builders.finish())
            .map_err(ExportError::Arrow)?;
        self.writer.write(&batch).map_err(ExportError::Parquet)?;
        self.pending = 0;
        Ok(())
    }
}

impl RowSink for ParquetSink {
    fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        self.builders.push(row);
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.flush_batch()?;
        let mut out = self.writer.into_inner().map_err(ExportError::Parquet)?;
        out.flush().map_err(|source| ExportError::Write {
            format: "parquet",
            source,
        })
    }
}
