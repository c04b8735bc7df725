//! The pyo3 binding: `bertkit._core`. It only converts types, releases the GIL around core calls
//! and maps errors (errors.rs). One file per area; each has a `register` function.

use pyo3::prelude::*;

mod errors;
mod inputs;
mod prepare;
mod splitter;
mod tokenizer;
mod views;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    inputs::register(m)?;
    prepare::register(m)?;
    splitter::register(m)?;
    tokenizer::register(m)?;
    views::register(m)?;
    Ok(())
}
