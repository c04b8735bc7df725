//! bertkit-core: the preprocessing engine behind `bertkit prepare`.
//!
//! Pure Rust; the pyo3 binding lives in `rust/py` and only converts types, releases the GIL and
//! maps errors. Read, normalise, split and tokenize run once (`prepare`); views and instances are
//! index computations over the tokenized corpus (`instances`).

pub mod corpus;
pub mod error;
pub mod format;
pub mod instances;
pub mod prepare;
pub mod progress;
pub mod reader;
pub mod rng;
pub mod splitter;
pub mod tokenizer;

pub use error::{Error, Result};
