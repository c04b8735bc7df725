//! OWNER: lead. pyo3 binding.
