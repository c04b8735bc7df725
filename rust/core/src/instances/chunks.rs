//! Document chunking for NextLevelBERT (Czinczoll et al., ACL 2024; aiintelligentsystems/next-level-bert).
//!
//! `chunk_size = N > 0`: a document's tokens (its sentences concatenated) are cut into pieces of
//! `N − 2` tokens, the last one shorter. `N = 0`: one sentence per chunk, truncated to its first
//! [`MAX_SENTENCE_TOKENS`] tokens; sentences without tokens give no chunk. Each piece is stored as
//! `[CLS] piece [SEP]`; views give the pieces as global token ranges without the specials.

use std::ops::Range;

use crate::corpus::CorpusView;
use crate::error::{Error, Result};
use crate::instances::{Chunks, MaskVocab};

/// Sentence-mode chunks keep at most this many tokens (256 with [CLS] and [SEP]), as
/// aiintelligentsystems/next-level-bert `src/data_processing_library.py` (`create_input_sents`)
/// truncates each sentence to `max_seq_len - 2` with its `max_seq_len` of 256.
pub const MAX_SENTENCE_TOKENS: u64 = 254;

/// `chunk_size` is 0 (sentence mode) or at least 3.
pub fn check_chunk_size(chunk_size: usize) -> Result<()> {
    if chunk_size == 1 || chunk_size == 2 {
        return Err(Error::config(format!(
            "chunk_size must be 0 (one sentence per chunk) or at least 3 ([CLS] + tokens + [SEP]), got {chunk_size}"
        )));
    }
    Ok(())
}

/// Append the token ranges (without specials) of document `d`'s chunks to `out`. A `chunk_size`
/// of 1 or 2 (rejected by [`check_chunk_size`]) is treated as 3.
pub fn doc_chunk_ranges(corpus: &dyn CorpusView, d: usize, chunk_size: usize, out: &mut Vec<Range<u64>>) {
    if chunk_size == 0 {
        for s in corpus.doc_sentences(d) {
            let r = corpus.sentence_tokens(s);
            if !r.is_empty() {
                out.push(r.start..r.end.min(r.start + MAX_SENTENCE_TOKENS));
            }
        }
        return;
    }
    let piece = chunk_size.max(3) as u64 - 2;
    let r = corpus.doc_tokens(d);
    let mut s = r.start;
    while s < r.end {
        let e = (s + piece).min(r.end);
        out.push(s..e);
        s = e;
    }
}

/// Chunks of documents `docs`, wrapped `[CLS] piece [SEP]`; offsets local (start at 0).
pub fn chunk_instances(corpus: &dyn CorpusView, docs: Range<usize>, chunk_size: usize, vocab: &MaskVocab) -> Chunks {
    let mut out = Chunks { offsets: vec![0], document_offsets: vec![0], ..Default::default() };
    let mut ranges = Vec::new();
    for d in docs {
        ranges.clear();
        doc_chunk_ranges(corpus, d, chunk_size, &mut ranges);
        for r in &ranges {
            out.input_ids.push(vocab.cls);
            corpus.tokens_into(r.clone(), &mut out.input_ids);
            out.input_ids.push(vocab.sep);
            out.offsets.push(out.input_ids.len() as u64);
        }
        out.document_offsets.push((out.offsets.len() - 1) as u64);
    }
    out
}

/// Chunk token ranges of the whole corpus without specials: `(starts, ends, document_offsets)`,
/// `document_offsets` having `n_documents + 1` entries (chunks of document `d` are
/// `document_offsets[d] .. document_offsets[d + 1]`).
pub fn chunk_view(corpus: &dyn CorpusView, chunk_size: usize) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let (mut starts, mut ends, mut doc_offsets) = (Vec::new(), Vec::new(), vec![0u64]);
    let mut ranges = Vec::new();
    for d in 0..corpus.n_documents() {
        ranges.clear();
        doc_chunk_ranges(corpus, d, chunk_size, &mut ranges);
        for r in &ranges {
            starts.push(r.start);
            ends.push(r.end);
        }
        doc_offsets.push(starts.len() as u64);
    }
    (starts, ends, doc_offsets)
}
