//! Map core errors to Python exceptions once: I/O errors to the builtin OSError family, the rest
//! to the classes declared in `bertkit/exceptions.py`. Messages already name the file.

use bertkit_core::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError};
use pyo3::prelude::*;

fn bertkit_exception(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py.import("bertkit.exceptions").and_then(|m| m.getattr(class)) {
        Ok(cls) => match cls.call1((message.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(_) => PyRuntimeError::new_err(message),
    }
}

pub fn to_pyerr(e: Error) -> PyErr {
    let message = e.to_string();
    match &e {
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        _ => Python::attach(|py| {
            let class = match &e {
                Error::InvalidUtf8 { .. } | Error::Input { .. } | Error::NoDocuments(_) => "InputError",
                Error::Format { .. } => "FormatError",
                Error::Config(_) => "ConfigError",
                Error::Exists { .. } => "DatasetExistsError",
                Error::Cancelled => "Cancelled",
                Error::Io { .. } => unreachable!(),
            };
            bertkit_exception(py, class, message)
        }),
    }
}

/// `result.map_err(to_pyerr)` shorthand.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for bertkit_core::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}
