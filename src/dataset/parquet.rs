//! The Parquet writer: one row per question-answer pair, readable by pyarrow and Hugging Face `datasets`.
//!
//! Columns (documented in the README, checked by `tests/python/check_dataset.py`):
//! `id`, `image` (struct `bytes`, `path`: the `datasets` Image layout), `messages` (list of `role` +
//! `content`, a list of `type` + `text`: user = image + question, assistant = answer), then the provenance:
//! `frame`, `question`, `answer`, `question_type`, `category`, `objects`, `labels`, `references`,
//! `answer_bool`, `answer_object`, `value`, `unit`, `margin`, `threshold`, `robot_width_m`, `value_at_most`,
//! `unit_system`, `question_template`, `answer_template`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray, UInt32Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::qa::QaRecord;
use crate::run::AtomicFile;

/// Rows per row group (about 25 MB of QA rows before compression). The writer holds the open group's pages in
/// memory, so this bounds its memory; the footer grows by a few kB per group (a few MB for 100 million rows).
pub const ROWS_PER_GROUP: usize = 8_192;

/// Rows buffered before they are encoded into the open row group (which the writer holds encoded and compressed,
/// a few MB): bounds the writer's memory however many rows a file gets.
pub const ROWS_PER_WRITE: usize = 1_024;

fn content_fields() -> Fields {
    Fields::from(vec![Field::new("type", DataType::Utf8, false), Field::new("text", DataType::Utf8, true)])
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new(
            "content",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(content_fields()), false))),
            false,
        ),
    ])
}

fn image_fields() -> Fields {
    Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)])
}

fn list_of(inner: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", inner, true)))
}

/// The `datasets` feature description stored in the schema metadata, so `load_dataset("parquet", ...)` decodes
/// `image` as an image and keeps the nested types.
fn huggingface_features() -> String {
    // The encoding every `datasets` release reads (3.x and 5.x alike): `Sequence` for lists of values, a
    // one-element JSON array for lists of structs.
    let s = |dtype: &str| serde_json::json!({"dtype": dtype, "_type": "Value"});
    let seq = |feature: serde_json::Value| serde_json::json!({"feature": feature, "_type": "Sequence"});
    serde_json::json!({
        "info": {"features": {
            "id": s("string"),
            "image": {"_type": "Image"},
            "messages": [{
                "role": s("string"),
                "content": [{"type": s("string"), "text": s("string")}],
            }],
            "frame": s("string"),
            "question": s("string"),
            "answer": s("string"),
            "question_type": s("string"),
            "category": s("string"),
            "objects": seq(s("uint32")),
            "labels": seq(s("string")),
            "references": seq(s("string")),
            "answer_bool": s("bool"),
            "answer_object": s("uint32"),
            "value": s("float64"),
            "unit": s("string"),
            "margin": s("float64"),
            "threshold": s("float64"),
            "robot_width_m": s("float64"),
            "value_at_most": s("bool"),
            "unit_system": s("string"),
            "question_template": s("uint32"),
            "answer_template": s("uint32"),
        }}
    })
    .to_string()
}

/// The Parquet schema of a QA dataset.
pub fn schema() -> SchemaRef {
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new(
            "messages",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(message_fields()), false))),
            false,
        ),
        Field::new("frame", DataType::Utf8, false),
        Field::new("question", DataType::Utf8, false),
        Field::new("answer", DataType::Utf8, false),
        Field::new("question_type", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("objects", list_of(DataType::UInt32), false),
        Field::new("labels", list_of(DataType::Utf8), false),
        Field::new("references", list_of(DataType::Utf8), false),
        Field::new("answer_bool", DataType::Boolean, true),
        Field::new("answer_object", DataType::UInt32, true),
        Field::new("value", DataType::Float64, true),
        Field::new("unit", DataType::Utf8, true),
        Field::new("margin", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("robot_width_m", DataType::Float64, true),
        Field::new("value_at_most", DataType::Boolean, false),
        Field::new("unit_system", DataType::Utf8, true),
        Field::new("question_template", DataType::UInt32, false),
        Field::new("answer_template", DataType::UInt32, false),
    ];
    let metadata: std::collections::HashMap<String, String> =
        [("huggingface".to_string(), huggingface_features())].into_iter().collect();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Streams QA records into a Parquet file, one row group per [`ROWS_PER_GROUP`] rows, renamed into place on
/// [`ParquetQaWriter::finish`].
///
/// Rows reach the encoder in batches of exactly [`ROWS_PER_WRITE`] (the last one shorter), whatever the batches
/// they came in, so the file's bytes depend only on the sequence of rows: the parts of a run concatenate to the
/// same file however the run was cut into parts.
pub struct ParquetQaWriter {
    writer: ArrowWriter<AtomicFile>,
    rows: Vec<QaRecord>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    path: std::path::PathBuf,
}

impl ParquetQaWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = AtomicFile::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .build();
        let writer = ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| parquet_error(path, e))?;
        Ok(ParquetQaWriter { writer, rows: Vec::new(), pending: Vec::new(), pending_rows: 0, path: path.to_path_buf() })
    }

    pub fn push(&mut self, records: &[QaRecord]) -> Result<()> {
        self.rows.extend_from_slice(records);
        if self.rows.len() >= ROWS_PER_WRITE {
            self.rows_to_batch()?;
        }
        Ok(())
    }

    /// Appends rows that are already a record batch of [`schema`] (another file's rows, when parts are merged).
    pub fn push_batch(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows_to_batch()?;
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        while self.pending_rows >= ROWS_PER_WRITE {
            self.write_pending(ROWS_PER_WRITE)?;
        }
        Ok(())
    }

    /// Appends every row of a Parquet file written by this writer, streaming it a row group at a time.
    pub fn append_file(&mut self, path: &Path) -> Result<()> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let bad = |e: &dyn std::fmt::Display| Error::Parts {
            path: path.to_path_buf(),
            message: format!("cannot read this Parquet part: {e}"),
        };
        let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(ROWS_PER_WRITE).build())
            .map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            // Re-attach the writer's schema (with the Hugging Face metadata) to the columns read back.
            let batch = RecordBatch::try_new(schema(), batch.columns().to_vec()).map_err(|e| bad(&e))?;
            self.push_batch(batch)?;
        }
        Ok(())
    }

    fn rows_to_batch(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let batch = record_batch(&rows).map_err(|e| parquet_error(&self.path, e))?;
        self.push_batch(batch)
    }

    /// Encodes the first `n` pending rows as one batch.
    fn write_pending(&mut self, n: usize) -> Result<()> {
        let all =
            arrow_select::concat::concat_batches(&schema(), &self.pending).map_err(|e| parquet_error(&self.path, e))?;
        let n = n.min(all.num_rows());
        self.writer.write(&all.slice(0, n)).map_err(|e| parquet_error(&self.path, e))?;
        self.pending_rows = all.num_rows() - n;
        self.pending = match self.pending_rows {
            0 => Vec::new(),
            rest => vec![all.slice(n, rest)],
        };
        Ok(())
    }

    /// Writes the last rows and the footer, then renames the file into place.
    pub fn finish(mut self) -> Result<std::path::PathBuf> {
        self.rows_to_batch()?;
        if self.pending_rows > 0 {
            self.write_pending(self.pending_rows)?;
        }
        let path = self.path.clone();
        let file = self.writer.into_inner().map_err(|e| parquet_error(&path, e))?;
        file.commit()
    }
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Output { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) }
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn string_lists<'a>(rows: impl Iterator<Item = &'a Vec<String>>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for s in row {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

/// One Arrow record batch of QA rows, in the column order of [`schema`].
pub fn record_batch(rows: &[QaRecord]) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let image = StructArray::try_new(
        image_fields(),
        vec![
            Arc::new(BinaryArray::from_iter(rows.iter().map(|_| None::<&[u8]>))) as ArrayRef,
            strings(rows.iter().map(|r| r.image.as_deref())),
        ],
        None,
    )?;
    // Each row: a user message (image, question) and an assistant message (answer).
    let mut content_type = Vec::with_capacity(3 * n);
    let mut content_text: Vec<Option<&str>> = Vec::with_capacity(3 * n);
    for r in rows {
        content_type.extend(["image", "text", "text"]);
        content_text.extend([None, Some(r.question.as_str()), Some(r.answer.as_str())]);
    }
    let content = StructArray::try_new(
        content_fields(),
        vec![Arc::new(StringArray::from(content_type)) as ArrayRef, Arc::new(StringArray::from(content_text))],
        None,
    )?;
    let content_lists = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Struct(content_fields()), false)),
        OffsetBuffer::from_lengths((0..n).flat_map(|_| [2usize, 1])),
        Arc::new(content),
        None,
    )?;
    let roles: Vec<&str> = (0..n).flat_map(|_| ["user", "assistant"]).collect();
    let message_structs = StructArray::try_new(
        message_fields(),
        vec![Arc::new(StringArray::from(roles)) as ArrayRef, Arc::new(content_lists)],
        None,
    )?;
    let messages = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Struct(message_fields()), false)),
        OffsetBuffer::from_lengths(std::iter::repeat_n(2usize, n)),
        Arc::new(message_structs),
        None,
    )?;
    let mut objects = ListBuilder::new(UInt32Builder::new());
    for r in rows {
        objects.values().append_slice(&r.objects);
        objects.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.id.as_str()))),
        Arc::new(image),
        Arc::new(messages),
        strings(rows.iter().map(|r| Some(r.frame.as_str()))),
        strings(rows.iter().map(|r| Some(r.question.as_str()))),
        strings(rows.iter().map(|r| Some(r.answer.as_str()))),
        strings(rows.iter().map(|r| Some(r.question_type.name()))),
        strings(rows.iter().map(|r| Some(r.category.name()))),
        Arc::new(objects.finish()),
        string_lists(rows.iter().map(|r| &r.labels)),
        string_lists(rows.iter().map(|r| &r.references)),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.answer_bool).collect::<Vec<_>>())),
        Arc::new(UInt32Array::from(rows.iter().map(|r| r.answer_object).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.value).collect::<Vec<_>>())),
        strings(rows.iter().map(|r| r.unit.as_deref())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.margin).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.threshold).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.robot_width_m).collect::<Vec<_>>())),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.value_at_most).collect::<Vec<_>>())),
        strings(rows.iter().map(|r| r.unit_system.map(|u| u.name()))),
        Arc::new(UInt32Array::from(rows.iter().map(|r| r.question_template).collect::<Vec<_>>())),
        Arc::new(UInt32Array::from(rows.iter().map(|r| r.answer_template).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema(), columns)
}
