//! Python-facing views over a prepared dataset: NSP pairs, packed-MLM
//! row starts and rows, NextLevelBERT chunk ranges. Every function takes the dataset directory,
//! opens its corpus shards memory-mapped, releases the GIL for the computation and returns numpy
//! arrays (token ranges are global indices into the concatenated corpus `tokens`).

use std::path::{Path, PathBuf};

use bertkit_core::corpus::MmapCorpus;
use bertkit_core::format::{Manifest, MANIFEST};
use bertkit_core::instances::chunks::{self, check_chunk_size};
use bertkit_core::instances::elc::{self, check_elc_seq_len};
use bertkit_core::instances::mlm::{self, check_seq_len, TokenStream};
use bertkit_core::instances::{in_local_pool, nsp, MaskVocab, NspConfig};
use bertkit_core::{Error, Result};
use numpy::{AllowTypeChange, IntoPyArray, PyArray2, PyArrayLike1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::IntoPy;

/// The special ids and vocabulary size recorded in the manifest (`tokenizer.special_ids`,
/// `tokenizer.vocab_size`).
fn manifest_vocab(dir: &Path, m: &Manifest) -> Result<MaskVocab> {
    let path = dir.join(MANIFEST);
    let ids = &m.tokenizer["special_ids"];
    let get = |name: &str| -> Result<u32> {
        ids[name]
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| Error::format(&path, format!("tokenizer.special_ids.{name} is missing or not an id")))
    };
    let vocab_size = m.tokenizer["vocab_size"]
        .as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| Error::format(&path, "tokenizer.vocab_size is missing or not a number"))?;
    Ok(MaskVocab::from_specials(get("pad")?, get("unk")?, get("cls")?, get("sep")?, get("mask")?, vocab_size))
}

fn open(dir: &Path) -> Result<(MmapCorpus, MaskVocab)> {
    let m = Manifest::read(dir)?;
    let vocab = manifest_vocab(dir, &m)?;
    Ok((MmapCorpus::open_with(dir, &m)?, vocab))
}

/// NSP pairs for one epoch (Google's pair construction with truncation, no masking):
/// `{"a_start", "a_end", "b_start", "b_end"}` (uint64 global token ranges) and `"labels"`
/// (uint8, 1 = random next).
#[pyfunction(name = "nsp_view")]
#[pyo3(signature = (dataset, seq_len=128, seed=12345, epoch=0, short_seq_prob=0.1, fix_quirks=false))]
fn nsp_view_py<'py>(
    py: Python<'py>,
    dataset: PathBuf,
    seq_len: usize,
    seed: u64,
    epoch: u64,
    short_seq_prob: f64,
    fix_quirks: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = NspConfig {
        max_seq_length: seq_len,
        max_predictions_per_seq: 0,
        masked_lm_prob: 0.0,
        short_seq_prob,
        dupe_factor: 1,
        whole_word_mask: false,
        fix_quirks,
        seed,
    };
    cfg.validate().py_err()?;
    let pairs = py
        .detach(|| -> Result<_> {
            let (corpus, _) = open(&dataset)?;
            Ok(in_local_pool(0, || nsp::nsp_pairs(&corpus, &cfg, epoch)))
        })
        .py_err()?;
    let d = PyDict::new(py);
    d.set_item("a_start", pairs.a_start.into_pyarray(py))?;
    d.set_item("a_end", pairs.a_end.into_pyarray(py))?;
    d.set_item("b_start", pairs.b_start.into_pyarray(py))?;
    d.set_item("b_end", pairs.b_end.into_pyarray(py))?;
    d.set_item("labels", pairs.labels.into_pyarray(py))?;
    Ok(d)
}

/// Packed-MLM row starts (uint64 positions in the document stream, see `mlm_rows`) for one epoch,
/// in visiting order.
#[pyfunction(name = "mlm_view")]
#[pyo3(signature = (dataset, seq_len=128, seed=12345, epoch=0))]
fn mlm_view_py<'py>(
    py: Python<'py>,
    dataset: PathBuf,
    seq_len: usize,
    seed: u64,
    epoch: u64,
) -> PyResult<Bound<'py, numpy::PyArray1<u64>>> {
    check_seq_len(seq_len).py_err()?;
    let view = py
        .detach(|| -> Result<_> {
            let (corpus, _) = open(&dataset)?;
            Ok(mlm::mlm_view(&corpus, seq_len, seed, epoch))
        })
        .py_err()?;
    Ok(view.starts.into_pyarray(py))
}

fn rows_array<'py>(py: Python<'py>, rows: Vec<u32>, seq_len: usize) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let n = rows.len() / seq_len;
    rows.into_pyarray(py).reshape([n, seq_len])
}

/// Rows `[CLS] + stream[s : s + seq_len - 2] + [SEP]` for the given stream starts, as a uint32
/// array `[len(starts), seq_len]` (rows running past the stream's end are padded with [PAD]).
#[pyfunction(name = "mlm_rows")]
#[pyo3(signature = (dataset, starts, seq_len=128))]
fn mlm_rows_py<'py>(
    py: Python<'py>,
    dataset: PathBuf,
    starts: PyArrayLike1<'py, u64, AllowTypeChange>,
    seq_len: usize,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    check_seq_len(seq_len).py_err()?;
    let starts: Vec<u64> = starts.as_array().to_vec();
    let rows = py
        .detach(|| -> Result<_> {
            let (corpus, vocab) = open(&dataset)?;
            Ok(mlm::mlm_rows(&corpus, &starts, seq_len, &vocab))
        })
        .py_err()?;
    rows_array(py, rows, seq_len)
}

/// A dataset opened once for repeated packed-MLM row reads (the stream's separator index is built
/// on opening): `MlmStream(dataset).rows(starts, seq_len)`.
#[pyclass(name = "MlmStream", frozen)]
struct PyMlmStream {
    corpus: MmapCorpus,
    vocab: MaskVocab,
    stream: TokenStream,
}

#[pymethods]
impl PyMlmStream {
    #[new]
    fn new(py: Python<'_>, dataset: PathBuf) -> PyResult<Self> {
        py.detach(|| -> Result<_> {
            let (corpus, vocab) = open(&dataset)?;
            let stream = TokenStream::new(&corpus);
            Ok(PyMlmStream { corpus, vocab, stream })
        })
        .py_err()
    }

    /// Stream length: tokens plus one separator between consecutive non-empty documents.
    fn __len__(&self) -> usize {
        self.stream.len() as usize
    }

    #[pyo3(signature = (seq_len=128, seed=12345, epoch=0))]
    fn view<'py>(
        &self,
        py: Python<'py>,
        seq_len: usize,
        seed: u64,
        epoch: u64,
    ) -> PyResult<Bound<'py, numpy::PyArray1<u64>>> {
        check_seq_len(seq_len).py_err()?;
        let view = py.detach(|| mlm::mlm_view_of(&self.stream, seq_len, seed, epoch));
        Ok(view.starts.into_pyarray(py))
    }

    #[pyo3(signature = (starts, seq_len=128))]
    fn rows<'py>(
        &self,
        py: Python<'py>,
        starts: PyArrayLike1<'py, u64, AllowTypeChange>,
        seq_len: usize,
    ) -> PyResult<Bound<'py, PyArray2<u32>>> {
        check_seq_len(seq_len).py_err()?;
        let starts: Vec<u64> = starts.as_array().to_vec();
        let rows = py.detach(|| mlm::mlm_rows_of(&self.corpus, &self.stream, &starts, seq_len, &self.vocab));
        rows_array(py, rows, seq_len)
    }
}

/// NextLevelBERT chunk token ranges without [CLS]/[SEP]: `{"starts", "ends", "document_offsets"}`
/// (uint64; chunks of document d are `document_offsets[d] : document_offsets[d + 1]`).
#[pyfunction(name = "chunk_view")]
#[pyo3(signature = (dataset, chunk_size=256))]
fn chunk_view_py<'py>(py: Python<'py>, dataset: PathBuf, chunk_size: usize) -> PyResult<Bound<'py, PyDict>> {
    check_chunk_size(chunk_size).py_err()?;
    let (starts, ends, dofs) = py
        .detach(|| -> Result<_> {
            let (corpus, _) = open(&dataset)?;
            Ok(chunks::chunk_view(&corpus, chunk_size))
        })
        .py_err()?;
    let d = PyDict::new(py);
    d.set_item("starts", starts.into_pyarray(py))?;
    d.set_item("ends", ends.into_pyarray(py))?;
    d.set_item("document_offsets", dofs.into_pyarray(py))?;
    Ok(d)
}

/// ELC-BERT's rows (`pre_training/cache_dataset.py`) as token ranges without [CLS]/[SEP]:
/// `{"starts", "ends", "document_offsets"}` (uint64; rows of document d are
/// `document_offsets[d] : document_offsets[d + 1]`).
#[pyfunction(name = "elc_view")]
#[pyo3(signature = (dataset, seq_len=128))]
fn elc_view_py<'py>(py: Python<'py>, dataset: PathBuf, seq_len: usize) -> PyResult<Bound<'py, PyDict>> {
    check_elc_seq_len(seq_len).py_err()?;
    let (starts, ends, dofs) = py
        .detach(|| -> Result<_> {
            let (corpus, _) = open(&dataset)?;
            Ok(in_local_pool(0, || elc::elc_view(&corpus, seq_len)))
        })
        .py_err()?;
    let d = PyDict::new(py);
    d.set_item("starts", starts.into_pyarray(py))?;
    d.set_item("ends", ends.into_pyarray(py))?;
    d.set_item("document_offsets", dofs.into_pyarray(py))?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(elc_view_py, m)?)?;
    m.add_function(wrap_pyfunction!(nsp_view_py, m)?)?;
    m.add_function(wrap_pyfunction!(mlm_view_py, m)?)?;
    m.add_function(wrap_pyfunction!(mlm_rows_py, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_view_py, m)?)?;
    m.add_class::<PyMlmStream>()?;
    Ok(())
}
