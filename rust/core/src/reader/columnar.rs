//! Columnar inputs: Parquet files (optionally a range of their row groups) and Arrow IPC files (the
//! stream format that Hugging Face `datasets.save_to_disk` writes, and the file format). Only the
//! text column is decoded, one record batch at a time, so memory stays bounded by a batch.
//!
//! Each row is one document; a null text is an empty document (dropped and counted). The column
//! must hold strings (`string`, `large_string` or `string_view`): anything else is an error that
//! names the file, the column and its type.

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::error::{Error, IoContext, Result};

/// Rows decoded per record batch (Parquet); Arrow IPC files keep the batches they were written with.
const BATCH_ROWS: usize = 1024;

/// The suffix of an input spec that selects row groups of one Parquet file: `data.parquet#row_groups=2:5`
/// reads row groups 2, 3 and 4 (how `prepare --ray` partitions a large file).
pub const ROW_GROUPS: &str = "#row_groups=";

/// Split `spec` into the file and an optional row-group range.
pub fn split_row_groups(spec: &str) -> Result<(&str, Option<Range<usize>>)> {
    let Some(at) = spec.rfind(ROW_GROUPS) else {
        return Ok((spec, None));
    };
    let (file, sel) = (&spec[..at], &spec[at + ROW_GROUPS.len()..]);
    let bad = || Error::config(format!("{spec}: a row-group selection is written {ROW_GROUPS}START:END (e.g. 0:4)"));
    let (a, b) = sel.split_once(':').ok_or_else(bad)?;
    let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a >= b {
        return Err(bad());
    }
    Ok((file, Some(a..b)))
}

/// The number of rows of each row group of a Parquet file (how `prepare --ray` partitions it).
pub fn parquet_row_groups(path: &Path) -> Result<Vec<u64>> {
    let file = open(path)?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
        .map_err(|e| Error::format(path, format!("not a readable Parquet file: {e}")))?;
    use parquet::file::reader::FileReader;
    Ok(reader.metadata().row_groups().iter().map(|g| g.num_rows().max(0) as u64).collect())
}

type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

pub struct ColumnReader {
    path: PathBuf,
    what: &'static str,
    batches: Batches,
    /// The text column of the current batch and the next row in it.
    current: Option<(ArrayRef, usize)>,
    /// Rows returned so far.
    pub rows: u64,
    /// Progress: bytes of the file accounted so far (rows read × file size / total rows).
    count: Arc<AtomicU64>,
    file_bytes: u64,
    total_rows: u64,
    counted: u64,
}

fn column_types(schema: &Schema) -> String {
    schema.fields().iter().map(|f| format!("{} ({})", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// The index of the text column, or an error naming the file and the columns present.
fn text_column(path: &Path, schema: &Schema, field: &str, what: &str) -> Result<usize> {
    let Some((index, f)) = schema.column_with_name(field) else {
        let names = if schema.fields().is_empty() { "none".to_string() } else { column_types(schema) };
        return Err(Error::format(
            path,
            format!("{what} has no column {field:?} (columns: {names}); choose the text column with --text-field"),
        ));
    };
    match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(index),
        other => Err(Error::format(
            path,
            format!("column {field:?} of this {what} is {other}, expected a string column (choose another with --text-field)"),
        )),
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).at(path)
}

impl ColumnReader {
    pub fn open_parquet(
        path: &Path,
        field: &str,
        row_groups: Option<Range<usize>>,
        count: &Arc<AtomicU64>,
    ) -> Result<Self> {
        let what = "Parquet file";
        let file = open(path)?;
        let file_bytes = file.metadata().at(path)?.len();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::format(path, format!("not a readable Parquet file: {e}")))?;
        let index = text_column(path, builder.schema(), field, what)?;
        let n_groups = builder.metadata().num_row_groups();
        let groups: Vec<usize> = match row_groups {
            Some(r) if r.end > n_groups => {
                return Err(Error::config(format!(
                    "{}: row groups {}:{} asked for, the file has {n_groups}",
                    path.display(),
                    r.start,
                    r.end
                )))
            }
            Some(r) => r.collect(),
            None => (0..n_groups).collect(),
        };
        let meta = Arc::clone(builder.metadata());
        let whole_file = groups.len() == n_groups;
        let total_rows: u64 = groups.iter().map(|&g| meta.row_group(g).num_rows().max(0) as u64).sum();
        let group_bytes: u64 = groups.iter().map(|&g| meta.row_group(g).compressed_size().max(0) as u64).sum();
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::format(path, format!("not a readable Parquet file: {e}")))?;
        Ok(ColumnReader {
            path: path.to_path_buf(),
            what: "Parquet",
            batches: Box::new(reader),
            current: None,
            rows: 0,
            count: Arc::clone(count),
            file_bytes: if whole_file { file_bytes } else { group_bytes },
            total_rows,
            counted: 0,
        })
    }

    /// An Arrow IPC file: the stream format (`datasets.save_to_disk`) or the file format (`ARROW1`).
    pub fn open_arrow(path: &Path, field: &str, count: &Arc<AtomicU64>) -> Result<Self> {
        let what = "Arrow file";
        let mut file = open(path)?;
        let file_bytes = file.metadata().at(path)?.len();
        let mut magic = [0u8; 6];
        let n = file.read(&mut magic).at(path)?;
        let is_file_format = n == 6 && &magic == b"ARROW1";
        let bad = |e: ArrowError| Error::format(path, format!("not a readable Arrow IPC file: {e}"));
        // Read the schema, then open again decoding only the text column.
        // The row count is not known up front: progress counts the file when it is done.
        let batches: Batches = if is_file_format {
            let probe = arrow_ipc::reader::FileReader::try_new_buffered(open(path)?, None).map_err(bad)?;
            let index = text_column(path, &probe.schema(), field, what)?;
            Box::new(arrow_ipc::reader::FileReader::try_new_buffered(open(path)?, Some(vec![index])).map_err(bad)?)
        } else {
            let probe = arrow_ipc::reader::StreamReader::try_new(BufReader::new(open(path)?), None).map_err(bad)?;
            let index = text_column(path, &probe.schema(), field, what)?;
            Box::new(
                arrow_ipc::reader::StreamReader::try_new(BufReader::new(open(path)?), Some(vec![index]))
                    .map_err(bad)?,
            )
        };
        Ok(ColumnReader {
            path: path.to_path_buf(),
            what: "Arrow IPC",
            batches,
            current: None,
            rows: 0,
            count: Arc::clone(count),
            file_bytes,
            total_rows: 0,
            counted: 0,
        })
    }

    fn account(&mut self, done: bool) {
        let target = if done || self.total_rows == 0 {
            if done {
                self.file_bytes
            } else {
                self.counted
            }
        } else {
            (self.file_bytes as f64 * self.rows as f64 / self.total_rows as f64) as u64
        };
        if target > self.counted {
            self.count.fetch_add(target - self.counted, Ordering::Relaxed);
            self.counted = target;
        }
    }

    /// The next row's text: `Ok(None)` at the end, `Ok(Some(None))` for a null.
    pub fn next_text(&mut self) -> Result<Option<Option<String>>> {
        loop {
            if let Some((array, row)) = self.current.as_mut() {
                if *row < array.len() {
                    let i = *row;
                    *row += 1;
                    self.rows += 1;
                    if array.is_null(i) {
                        return Ok(Some(None));
                    }
                    let text = match array.data_type() {
                        DataType::Utf8 => array.as_string::<i32>().value(i),
                        DataType::LargeUtf8 => array.as_string::<i64>().value(i),
                        _ => array.as_string_view().value(i),
                    };
                    return Ok(Some(Some(text.to_string())));
                }
                self.current = None;
                self.account(false);
            }
            match self.batches.next() {
                None => {
                    self.account(true);
                    return Ok(None);
                }
                Some(Err(e)) => {
                    return Err(Error::format(
                        &self.path,
                        format!("corrupt {} data after row {}: {e}", self.what, self.rows),
                    ))
                }
                Some(Ok(batch)) => {
                    if batch.num_columns() != 1 {
                        return Err(Error::format(&self.path, "internal: the text column was not projected"));
                    }
                    self.current = Some((Arc::clone(batch.column(0)), 0));
                }
            }
        }
    }
}
