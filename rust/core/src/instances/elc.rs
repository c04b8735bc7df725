//! ELC-BERT's packing (ltgoslo/elc-bert `pre_training/cache_dataset.py`): per document,
//! sentence-aligned rows of at most `seq_len − 2` tokens.
//!
//! A document's sentences are appended to the current row one by one; when the row grows past
//! `seq_len − 2` tokens, its first `seq_len − 2` tokens are written (so the overflowing sentence's
//! head ends that row) and the next row starts with the **whole** overflowing sentence. The last row
//! of a document keeps what is left (cut to `seq_len − 2`), and the training rows are
//! `[CLS] row [SEP]` padded to `seq_len`. Consequences kept from the original: the head of every
//! overflowing sentence appears twice (at the end of one row and the start of the next), and of a
//! sentence longer than a row only its first `seq_len − 2` tokens are ever seen. Rows never cross
//! a document. Each row is one contiguous token range, so the view is two arrays of global offsets.

use std::ops::Range;

use rayon::prelude::*;

use crate::corpus::CorpusView;
use crate::error::{Error, Result};

/// Documents per parallel work item.
const BLOCK: usize = 256;

/// `seq_len` leaves room for [CLS] and [SEP] and at least one token.
pub fn check_elc_seq_len(seq_len: usize) -> Result<()> {
    if seq_len < 3 {
        return Err(Error::config(format!(
            "seq_len must be at least 3 for ELC-BERT rows ([CLS] + tokens + [SEP]), got {seq_len}"
        )));
    }
    Ok(())
}

/// Append the rows (global token ranges, without [CLS]/[SEP]) of document `d` to `out`.
pub fn doc_elc_rows(corpus: &dyn CorpusView, d: usize, seq_len: usize, out: &mut Vec<Range<u64>>) {
    let room = seq_len.max(3) as u64 - 2;
    let mut start: Option<u64> = None;
    let mut len = 0u64;
    for s in corpus.doc_sentences(d) {
        let r = corpus.sentence_tokens(s);
        if r.is_empty() {
            continue;
        }
        let st = *start.get_or_insert(r.start);
        len += r.end - r.start;
        if len > room {
            out.push(st..st + room);
            start = Some(r.start);
            len = r.end - r.start;
        }
    }
    if let Some(st) = start {
        out.push(st..st + len.min(room));
    }
}

/// Every document's rows in corpus order: `(starts, ends, document_offsets)` (rows of document `d`
/// are `document_offsets[d] .. document_offsets[d + 1]`). Parallel over blocks of documents; the
/// result does not depend on the thread count.
pub fn elc_view(corpus: &dyn CorpusView, seq_len: usize) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let n = corpus.n_documents();
    let blocks: Vec<Range<usize>> = (0..n.div_ceil(BLOCK)).map(|b| b * BLOCK..((b + 1) * BLOCK).min(n)).collect();
    let parts: Vec<(Vec<Range<u64>>, Vec<u64>)> = blocks
        .into_par_iter()
        .map(|r| {
            let mut rows = Vec::new();
            let mut counts = Vec::with_capacity(r.len());
            for d in r {
                let before = rows.len();
                doc_elc_rows(corpus, d, seq_len, &mut rows);
                counts.push((rows.len() - before) as u64);
            }
            (rows, counts)
        })
        .collect();
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    let (mut starts, mut ends) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u64);
    for (rows, counts) in parts {
        for r in rows {
            starts.push(r.start);
            ends.push(r.end);
        }
        for c in counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c);
        }
    }
    (starts, ends, offsets)
}
