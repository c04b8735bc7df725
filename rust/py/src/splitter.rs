//! OWNER: see rust/py/src/lib.rs. Python-facing wrappers for this area.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
