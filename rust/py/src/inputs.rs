//! Inputs from Python: documents pulled from any iterable (`prepare(config, documents=...)`), and
//! the input expansion that `prepare --ray` partitions.
//!
//! The core's reader thread pulls the iterable in batches (up to `BATCH_ITEMS` items or
//! `BATCH_BYTES` of text), taking the GIL only for that; the rest of the pipeline runs without it.
//! An exception raised by the iterable is kept and re-raised as itself once the run has stopped.

use std::sync::{Arc, Mutex};

use bertkit_core::reader::TextSource;
use bertkit_core::{Error, Result};
use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList, PyString};

use crate::errors::IntoPy;

const BATCH_ITEMS: usize = 1024;
const BATCH_BYTES: usize = 4 << 20;

/// The name a Python iterable has in the manifest's `inputs` and in error messages.
pub const DOCUMENTS: &str = "<documents>";

/// The first exception an iterable raised (re-raised by `prepare` instead of a bertkit error).
pub type Raised = Arc<Mutex<Option<PyErr>>>;

pub struct PySource {
    iterator: Py<PyIterator>,
    text_field: String,
    items: u64,
    raised: Raised,
    done: bool,
}

impl PySource {
    pub fn new(documents: &Bound<'_, PyAny>, text_field: &str, raised: Raised) -> PyResult<Self> {
        let iterator = documents.try_iter().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "documents must be an iterable of str or of mappings with a {text_field:?} field, got {}",
                documents.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        Ok(PySource { iterator: iterator.unbind(), text_field: text_field.to_string(), items: 0, raised, done: false })
    }

    fn text_of(&self, item: &Bound<'_, PyAny>) -> Result<String> {
        let bad = |what: String| Error::input(DOCUMENTS, self.items, what);
        if let Ok(s) = item.cast::<PyString>() {
            return s.to_str().map(str::to_string).map_err(|e| bad(format!("the text is not valid UTF-8: {e}")));
        }
        let kind = item.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        if !item.hasattr("keys").unwrap_or(false) {
            return Err(bad(format!(
                "item {} is {kind}, expected a str or a mapping with a {:?} field",
                self.items, self.text_field
            )));
        }
        let value = item
            .get_item(&self.text_field)
            .map_err(|_| bad(format!("item {} has no field {:?}", self.items, self.text_field)))?;
        if value.is_none() {
            return Ok(String::new());
        }
        match value.cast::<PyString>() {
            Ok(s) => s.to_str().map(str::to_string).map_err(|e| bad(format!("the text is not valid UTF-8: {e}"))),
            Err(_) => Err(bad(format!(
                "field {:?} of item {} is {}, expected a str",
                self.text_field,
                self.items,
                value.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))),
        }
    }
}

impl TextSource for PySource {
    fn next_texts(&mut self, out: &mut Vec<String>) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        Python::attach(|py| {
            let mut it = self.iterator.bind(py).clone();
            let mut bytes = 0usize;
            while out.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
                let next = match it.next() {
                    Some(Ok(item)) => item,
                    None => {
                        self.done = true;
                        break;
                    }
                    Some(Err(e)) => {
                        let message = format!("the documents iterable raised {e}");
                        *self.raised.lock().expect("raised lock") = Some(e);
                        return Err(Error::input(DOCUMENTS, self.items + 1, message));
                    }
                };
                self.items += 1;
                let text = self.text_of(&next)?;
                bytes += text.len();
                out.push(text);
            }
            Ok(!out.is_empty() || !self.done)
        })
    }
}

/// Expand input specs as `prepare` does (files, directories, globs, datasets folders, `-`).
#[pyfunction]
fn expand_inputs(py: Python<'_>, specs: Vec<String>) -> PyResult<Py<PyList>> {
    let files = py.detach(|| bertkit_core::reader::expand_inputs(&specs)).py_err()?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Ok(PyList::new(py, names)?.unbind())
}

/// Row groups and rows of each row group of a Parquet file.
#[pyfunction]
fn parquet_row_groups(py: Python<'_>, path: String) -> PyResult<Vec<u64>> {
    py.detach(|| bertkit_core::reader::parquet_row_groups(std::path::Path::new(&path))).py_err()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(expand_inputs, m)?)?;
    m.add_function(wrap_pyfunction!(parquet_row_groups, m)?)?;
    Ok(())
}
