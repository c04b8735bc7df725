//! Python-facing wrapper of `bertkit_core::splitter`.

use bertkit_core::splitter::{split_sentences, SplitterKind};
use bertkit_core::Error;
use pyo3::prelude::*;

use crate::errors::IntoPy;

fn parse_kind(name: &str) -> bertkit_core::Result<SplitterKind> {
    SplitterKind::parse(name).ok_or_else(|| {
        Error::config(format!("unknown sentence splitter {name:?}: expected one of \"rules\", \"lines\", \"none\""))
    })
}

/// Split `text` into sentences, trimmed of surrounding whitespace. `splitter` is "rules"
/// (rule-based English), "lines" (one sentence per non-blank line) or "none" (the whole text).
#[pyfunction(name = "split_sentences", signature = (text, splitter = "rules"))]
fn split_sentences_py(py: Python<'_>, text: &str, splitter: &str) -> PyResult<Vec<String>> {
    let kind = parse_kind(splitter).py_err()?;
    let ranges = py.detach(|| {
        let mut out = Vec::new();
        split_sentences(kind, text, &mut out);
        out
    });
    Ok(ranges.into_iter().map(|r| text[r].to_owned()).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(split_sentences_py, m)?)?;
    Ok(())
}
