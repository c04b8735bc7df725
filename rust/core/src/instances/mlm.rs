//! Packed MLM sequences by token splitting across documents (RoBERTa FULL-SENTENCES; the
//! "token splitting" that won the nanoBERT A/B test: my-best-day/medium `scripts/tokenize_text.py`).
//!
//! **The stream.** The documents with at least one token, in corpus order, joined by one [SEP]
//! between consecutive documents (none before the first or after the last). Its length is
//! `S = n_tokens + (k − 1)` for `k` non-empty documents. Stream position `p` is either a separator
//! or corpus token `p − m`, where `m` is the number of separators before `p`; the separator before
//! the `j`-th boundary (0-based) sits at `boundary_token_j + j`. [`TokenStream`] holds exactly these
//! separator positions.
//!
//! **A row** starting at stream position `s` is `[CLS] + stream[s .. s + L − 2] + [SEP]`.
//! [`mlm_instances`] cuts the stream at `0, L−2, 2(L−2), ...` and drops the last partial row.
//! [`mlm_view`] does the same from a per-epoch offset `shift ∈ [0, L−2)` (keyed by
//! `(seed, MlmView, [epoch])`) and lists the row starts `shift + k(L−2)` in the keyed order
//! `permutation(n_rows, seed, epoch)`; [`mlm_rows`] materialises any rows from their starts.

use rayon::prelude::*;

use crate::corpus::CorpusView;
use crate::error::{Error, Result};
use crate::instances::MaskVocab;
use crate::rng::{permutation, Purpose, Rng};

/// Rows per parallel work item in [`mlm_instances`].
const ROWS_PER_BLOCK: usize = 512;

/// Longest packed row accepted (a guard against absurd allocations from a typo).
pub const MAX_SEQ_LEN: usize = 1 << 20;

/// `seq_len` must leave room for at least one token between [CLS] and [SEP], and be at most
/// [`MAX_SEQ_LEN`].
pub fn check_seq_len(seq_len: usize) -> Result<()> {
    if seq_len > MAX_SEQ_LEN {
        return Err(Error::config(format!("seq_len must be at most {MAX_SEQ_LEN}, got {seq_len}")));
    }
    if seq_len < 3 {
        return Err(Error::config(format!("seq_len must be at least 3 ([CLS] + tokens + [SEP]), got {seq_len}")));
    }
    Ok(())
}

/// The virtual token stream of a corpus: where its document separators are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenStream {
    /// Stream positions of the separators, strictly increasing.
    pub separators: Vec<u64>,
    n_tokens: u64,
}

impl TokenStream {
    pub fn new(corpus: &dyn CorpusView) -> Self {
        let mut separators = Vec::new();
        let mut seen_nonempty = false;
        for d in 0..corpus.n_documents() {
            let r = corpus.doc_tokens(d);
            if r.is_empty() {
                continue;
            }
            if seen_nonempty {
                separators.push(r.start + separators.len() as u64);
            }
            seen_nonempty = true;
        }
        TokenStream { separators, n_tokens: corpus.n_tokens() }
    }

    /// Stream length: tokens plus separators.
    pub fn len(&self) -> u64 {
        self.n_tokens + self.separators.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append `stream[start .. start + n]` (clipped to the stream's end) to `out`.
    pub fn fill(&self, corpus: &dyn CorpusView, start: u64, n: usize, sep: u32, out: &mut Vec<u32>) {
        let end = start.saturating_add(n as u64).min(self.len());
        let mut p = start;
        let mut m = self.separators.partition_point(|&x| x < p);
        while p < end {
            if self.separators.get(m) == Some(&p) {
                out.push(sep);
                p += 1;
                m += 1;
                continue;
            }
            let next = self.separators.get(m).copied().unwrap_or(u64::MAX);
            let upto = end.min(next);
            let t = p - m as u64;
            corpus.tokens_into(t..t + (upto - p), out);
            p = upto;
        }
    }

    /// Append the row `[CLS] + stream[start .. start + seq_len − 2] + [SEP]`; a row running past
    /// the end of the stream is padded with `vocab.pad` before the [SEP]. (`seq_len < 3` gives
    /// `[CLS] [SEP]`; see [`check_seq_len`].)
    pub fn row(&self, corpus: &dyn CorpusView, start: u64, seq_len: usize, vocab: &MaskVocab, out: &mut Vec<u32>) {
        let begin = out.len();
        out.push(vocab.cls);
        self.fill(corpus, start, seq_len.saturating_sub(2), vocab.sep, out);
        out.resize(begin + seq_len.saturating_sub(1).max(1), vocab.pad);
        out.push(vocab.sep);
    }
}

/// Every full row of the stream cut at multiples of `seq_len − 2`, `[n, seq_len]` row-major.
/// Empty when `seq_len < 3`.
pub fn mlm_instances(corpus: &dyn CorpusView, seq_len: usize, vocab: &MaskVocab) -> Vec<u32> {
    if check_seq_len(seq_len).is_err() {
        return Vec::new();
    }
    let stream = TokenStream::new(corpus);
    let piece = (seq_len - 2) as u64;
    let n_rows = (stream.len() / piece) as usize;
    let mut out = vec![0u32; n_rows * seq_len];
    out.par_chunks_mut(ROWS_PER_BLOCK * seq_len).enumerate().for_each(|(b, chunk)| {
        let mut buf = Vec::with_capacity(chunk.len());
        let first = b * ROWS_PER_BLOCK;
        for r in 0..chunk.len() / seq_len {
            stream.row(corpus, (first + r) as u64 * piece, seq_len, vocab, &mut buf);
        }
        chunk.copy_from_slice(&buf);
    });
    out
}

/// One epoch's packed-MLM view: row starts in the stream, in visiting order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MlmView {
    pub seq_len: usize,
    /// Offset of the first row in the stream, in `[0, seq_len − 2)`.
    pub shift: u64,
    /// Stream length (tokens + separators).
    pub stream_len: u64,
    /// Row starts `shift + k·(seq_len − 2)` in the keyed order of `permutation(n, seed, epoch)`.
    pub starts: Vec<u64>,
}

pub fn mlm_view(corpus: &dyn CorpusView, seq_len: usize, seed: u64, epoch: u64) -> MlmView {
    let stream = TokenStream::new(corpus);
    mlm_view_of(&stream, seq_len, seed, epoch)
}

/// [`mlm_view`] for an already built stream.
pub fn mlm_view_of(stream: &TokenStream, seq_len: usize, seed: u64, epoch: u64) -> MlmView {
    if check_seq_len(seq_len).is_err() {
        return MlmView { seq_len, stream_len: stream.len(), ..Default::default() };
    }
    let piece = (seq_len - 2) as u64;
    let shift = Rng::keyed(seed, Purpose::MlmView, &[epoch]).below(piece);
    let n_rows = stream.len().saturating_sub(shift) / piece;
    let starts = permutation(n_rows, seed, epoch).into_iter().map(|k| shift + k * piece).collect();
    MlmView { seq_len, shift, stream_len: stream.len(), starts }
}

/// Rows for the given stream starts, `[starts.len(), seq_len]` row-major (see [`TokenStream::row`]).
pub fn mlm_rows(corpus: &dyn CorpusView, starts: &[u64], seq_len: usize, vocab: &MaskVocab) -> Vec<u32> {
    let stream = TokenStream::new(corpus);
    mlm_rows_of(corpus, &stream, starts, seq_len, vocab)
}

pub fn mlm_rows_of(
    corpus: &dyn CorpusView,
    stream: &TokenStream,
    starts: &[u64],
    seq_len: usize,
    vocab: &MaskVocab,
) -> Vec<u32> {
    if check_seq_len(seq_len).is_err() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(starts.len() * seq_len);
    for &s in starts {
        stream.row(corpus, s, seq_len, vocab, &mut out);
    }
    out
}
