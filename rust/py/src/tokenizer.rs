//! `bertkit._core.WordPieceTokenizer`: a thin wrapper over `bertkit_core::tokenizer::Tokenizer`
//! that converts types, releases the GIL and maps errors.

use std::path::PathBuf;

use bertkit_core::tokenizer::Tokenizer;
use pyo3::prelude::*;

use crate::errors::IntoPy;

/// WordPiece tokenizer (ids only) from a `vocab.txt` or an HF `tokenizer.json`.
#[pyclass(name = "WordPieceTokenizer", module = "bertkit._core", frozen)]
pub struct PyWordPieceTokenizer {
    inner: Tokenizer,
}

#[pymethods]
impl PyWordPieceTokenizer {
    #[new]
    #[pyo3(signature = (path, lowercase = None))]
    fn new(py: Python<'_>, path: PathBuf, lowercase: Option<bool>) -> PyResult<Self> {
        let inner = py.detach(|| Tokenizer::from_file(&path, lowercase)).py_err()?;
        Ok(PyWordPieceTokenizer { inner })
    }

    /// Ids of `text`, without special tokens.
    fn encode(&self, py: Python<'_>, text: String) -> Vec<u32> {
        py.detach(|| self.inner.encode(&text))
    }

    /// Ids of each text, on `threads` threads (0: one per core), without the GIL.
    #[pyo3(signature = (texts, threads = 0))]
    fn encode_batch(&self, py: Python<'_>, texts: Vec<String>, threads: usize) -> PyResult<Vec<Vec<u32>>> {
        py.detach(|| self.inner.encode_batch(&texts, threads)).py_err()
    }

    fn decode(&self, ids: Vec<u32>) -> String {
        self.inner.decode(&ids)
    }

    fn id_to_token(&self, id: u32) -> Option<&str> {
        self.inner.token_checked(id)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The tokenizer's identity, as recorded in a dataset manifest.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.inner.info())
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    fn __repr__(&self) -> String {
        let info = self.inner.info();
        format!(
            "WordPieceTokenizer(source={:?}, pipeline={:?}, vocab_size={}, lowercase={})",
            info.source,
            info.pipeline,
            info.vocab_size,
            if info.lowercase { "True" } else { "False" }
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWordPieceTokenizer>()
}
