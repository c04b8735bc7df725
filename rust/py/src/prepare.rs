//! `prepare`: run the core on a worker thread (own rayon pool, GIL released)
//! while the calling thread polls progress every ~100 ms, calls the Python callback and checks for
//! Ctrl-C, which cancels the run cleanly (no manifest is written).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bertkit_core::prepare::{prepare_with, PrepareConfig};
use bertkit_core::progress::Progress;
use bertkit_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{to_pyerr, IntoPy};

pub(crate) fn json_to_py(py: Python<'_>, value: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let s = serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (s,))?.unbind())
}

fn counters<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bytes", p.bytes.load(Ordering::Relaxed))?;
    d.set_item("total_bytes", p.total_bytes.load(Ordering::Relaxed))?;
    d.set_item("documents", p.documents.load(Ordering::Relaxed))?;
    d.set_item("tokens", p.tokens.load(Ordering::Relaxed))?;
    d.set_item("instances", p.instances.load(Ordering::Relaxed))?;
    d.set_item("stage", ["tokenize", "instances", "done"][p.stage.load(Ordering::Relaxed).min(2) as usize])?;
    Ok(d)
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Run `f` on a fresh thread with its own rayon pool of `threads` workers, polling from the caller.
pub(crate) fn run_polled<T: Send + 'static>(
    py: Python<'_>,
    threads: usize,
    progress: Arc<Progress>,
    callback: Option<&Bound<'_, PyAny>>,
    f: impl FnOnce(&Progress) -> bertkit_core::Result<T> + Send + 'static,
) -> PyResult<T> {
    let threads =
        if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    let p2 = progress.clone();
    let handle = std::thread::spawn(move || match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| f(&p2)),
        Err(e) => Err(Error::config(format!("cannot start {threads} worker threads: {e}"))),
    });
    // Wait in short sleeps with the GIL released; every ~100 ms take it back to check for Ctrl-C
    // and to report progress. Python is never called from the workers.
    let finished = |h: &std::thread::JoinHandle<bertkit_core::Result<T>>| -> bool {
        for _ in 0..10 {
            if h.is_finished() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        h.is_finished()
    };
    loop {
        if py.detach(|| finished(&handle)) {
            return match handle.join() {
                Ok(res) => res.py_err(),
                Err(e) => Err(PyRuntimeError::new_err(format!(
                    "internal error in bertkit (please report): {}",
                    panic_message(e)
                ))),
            };
        }
        let mut stop: Option<PyErr> = py.check_signals().err();
        if stop.is_none() {
            if let Some(cb) = callback {
                if let Err(e) = counters(py, &progress).and_then(|d| cb.call1((d,))) {
                    stop = Some(e);
                }
            }
        }
        if let Some(err) = stop {
            progress.cancel();
            let _ = py.detach(|| handle.join());
            if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                return Err(to_pyerr(Error::Cancelled));
            }
            return Err(err);
        }
    }
}

/// Prepare a dataset. `config_json` is a JSON object of `PrepareConfig` fields; `callback(counters)`
/// is called about every 100 ms with a dict of progress counters; `documents`, an iterable of str or
/// of mappings with the text field, is read after the input files (see inputs.rs). Returns the
/// summary as a dict.
#[pyfunction]
#[pyo3(signature = (config_json, callback=None, documents=None))]
fn prepare(
    py: Python<'_>,
    config_json: &str,
    callback: Option<Bound<'_, PyAny>>,
    documents: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let cfg: PrepareConfig = serde_json::from_str(config_json)
        .map_err(|e| to_pyerr(Error::config(format!("invalid prepare config: {e}"))))?;
    let threads = cfg.threads;
    let progress = Arc::new(Progress::new());
    let raised = crate::inputs::Raised::default();
    let source = match &documents {
        Some(d) => Some(crate::inputs::PySource::new(d, &cfg.text_field, raised.clone())?),
        None => None,
    };
    let result = run_polled(py, threads, progress, callback.as_ref(), move |p| {
        let source = source
            .map(|s| (Box::new(s) as Box<dyn bertkit_core::reader::TextSource>, crate::inputs::DOCUMENTS.to_string()));
        prepare_with(&cfg, p, source)
    });
    if let Some(e) = raised.lock().expect("raised lock").take() {
        return Err(e);
    }
    json_to_py(py, &result?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prepare, m)?)?;
    Ok(())
}
