//! Google's NSP instance creation (`create_instances_from_document`, google-research/bert @eedf571),
//! per document, with keyed randomness so output does not depend on threads or document ranges.
//!
//! Per document `d` and dupe pass `p`, one [`Rng`] keyed `(seed, NspDocument, [p, d])` drives pair
//! building and one keyed `(seed, Masking, [p, d])` drives masking. [`nsp_pairs`] for epoch `e`
//! therefore builds exactly the pairs of [`nsp_instances`] for pass `e`.
//!
//! Pair building (both modes): `max_num_tokens = L − 3`; `target = max_num_tokens`, or with
//! probability `short_seq_prob` `randint(2, max_num_tokens)`, drawn once per document per pass;
//! sentences accumulate into a chunk until its length reaches `target` or the document ends;
//! `a_end = randint(1, len(chunk) − 1)` (1 for a one-sentence chunk); random next when
//! `len(chunk) == 1 or random() < 0.5`, with `target_b = target − |A|`, B read from a random start
//! sentence of another document until `target_b` is reached, and the unused sentences of the chunk
//! put back (`i −= len(chunk) − a_end`); otherwise B = the rest of the chunk. `truncate_seq_pair`
//! trims the longer side one token at a time, the front with p = 0.5 else the back.
//! A and B are each contiguous in the corpus, so a pair is two global token ranges.
//!
//! | behaviour | faithful (`fix_quirks = false`) | fixed (`fix_quirks = true`) |
//! |---|---|---|
//! | random document | `randint` over every non-empty document of the run (all input files pooled, Google's `all_documents`), up to 10 tries to avoid the current one, **may still be the current document** (probability `(1/N)^10`) | uniform over all other non-empty documents of the corpus (the current one only if it is the only document) |
//! | masking | see `masking.rs`: 80/10/10 per WordPiece, full-vocab random ids, `##` joins across [SEP] | per whole word, non-special random ids, no join across specials |
//! | random-next rate | `0.5 + 0.5 · s` with `s` the share of one-sentence chunks (a one-sentence chunk is always random next, any other one with p = 0.5) | same (not a quirk of the pair logic we change) |
//!
//! Differences from Google's script in both modes, by design: documents are not shuffled and the
//! final instance list is not shuffled (a training run draws a keyed permutation); randomness is
//! per (pass, document) instead of one global `random.Random(12345)`, so bytes differ from Python's
//! output while the algorithm and its statistics are the same; documents without sentences are
//! skipped (Google drops them on reading); the end of an input file always ends a document
//! (Google's only document boundary is a blank line, so a file without a trailing blank line runs
//! into the next file's first document); an instance whose A or B ends up empty (only possible
//! with zero-token sentences) is dropped where Google's `assert len(tokens_a) >= 1` would abort.

use std::ops::Range;

use rayon::prelude::*;

use crate::corpus::CorpusView;
use crate::error::{Error, Result};
use crate::instances::masking::Masker;
use crate::instances::{MaskVocab, NspConfig, NspInstances, NspPairs};
use crate::rng::{Purpose, Rng};

/// Documents per parallel work item.
const BLOCK: usize = 64;

impl NspConfig {
    /// Reject configurations the algorithm cannot run with (instead of panicking later).
    pub fn validate(&self) -> Result<()> {
        if self.max_seq_length < 5 {
            return Err(Error::config(format!(
                "max_seq_length must be at least 5 for NSP ([CLS] A [SEP] B [SEP] with |A|,|B| >= 1), got {}",
                self.max_seq_length
            )));
        }
        if self.max_seq_length > u16::MAX as usize {
            return Err(Error::config(format!(
                "max_seq_length must be at most {} (positions are stored as uint16), got {}",
                u16::MAX,
                self.max_seq_length
            )));
        }
        if !(0.0..=1.0).contains(&self.short_seq_prob) {
            return Err(Error::config(format!("short_seq_prob must be in [0, 1], got {}", self.short_seq_prob)));
        }
        if !(0.0..=1.0).contains(&self.masked_lm_prob) {
            return Err(Error::config(format!("masked_lm_prob must be in [0, 1], got {}", self.masked_lm_prob)));
        }
        Ok(())
    }
}

/// Which documents a random next segment may come from; build once per corpus.
///
/// The pool is every non-empty document of the dataset (all input files, in corpus order), like
/// Google's single `all_documents` list over every `--input_file` (empty documents are dropped
/// there on reading, and skipped here). It is a list of `u32` document indices (4 bytes per
/// document); the tokens themselves stay memory-mapped.
pub struct NspContext {
    docs: Vec<u32>,
}

impl NspContext {
    pub fn new(corpus: &dyn CorpusView) -> Self {
        let docs =
            (0..corpus.n_documents()).filter(|&d| !corpus.doc_sentences(d).is_empty()).map(|d| d as u32).collect();
        NspContext { docs }
    }

    /// Number of documents a random next segment can be drawn from.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    fn random_document(&self, d: usize, fixed: bool, rng: &mut Rng) -> usize {
        let n = self.docs.len() as u64;
        if n <= 1 {
            return d;
        }
        if fixed {
            loop {
                let r = self.docs[rng.below(n) as usize] as usize;
                if r != d {
                    return r;
                }
            }
        }
        // Google: `for _ in range(10): random_document_index = rng.randint(0, len(all_documents) - 1)`,
        // stopping at the first index other than the current document's.
        let mut r = d;
        for _ in 0..10 {
            r = self.docs[rng.randint(0, n - 1) as usize] as usize;
            if r != d {
                break;
            }
        }
        r
    }
}

/// One pair of a document: untruncated (`*_full`) and truncated token ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub a: Range<u64>,
    pub b: Range<u64>,
    pub a_full: Range<u64>,
    pub b_full: Range<u64>,
    pub random_next: bool,
    pub b_doc: usize,
}

/// Build the pairs of document `d` (Google's algorithm); `emit` gets every pair with non-empty A
/// and B. `segs` is a reusable buffer. Returns whether a short target was drawn.
pub(crate) fn doc_pairs(
    corpus: &dyn CorpusView,
    ctx: &NspContext,
    d: usize,
    cfg: &NspConfig,
    rng: &mut Rng,
    segs: &mut Vec<Range<u64>>,
    mut emit: impl FnMut(&Pair),
) -> bool {
    let max_num = cfg.max_seq_length.saturating_sub(3) as u64;
    if max_num < 2 {
        return false;
    }
    segs.clear();
    segs.extend(corpus.doc_sentences(d).map(|s| corpus.sentence_tokens(s)));
    let n = segs.len();
    if n == 0 {
        return false;
    }
    let mut target = max_num;
    let short = rng.random() < cfg.short_seq_prob;
    if short {
        target = rng.randint(2, max_num);
    }
    let mut i = 0usize;
    let mut chunk_start = 0usize;
    let mut cur_len = 0u64;
    while i < n {
        cur_len += segs[i].end - segs[i].start;
        if i == n - 1 || cur_len >= target {
            let clen = i + 1 - chunk_start;
            let a_end = if clen >= 2 { rng.randint(1, clen as u64 - 1) as usize } else { 1 };
            let a_full = segs[chunk_start].start..segs[chunk_start + a_end - 1].end;
            let random_next = clen == 1 || rng.random() < 0.5;
            let (b_full, b_doc) = if random_next {
                let target_b = target as i64 - (a_full.end - a_full.start) as i64;
                let r = ctx.random_document(d, cfg.fix_quirks, rng);
                let rs = corpus.doc_sentences(r);
                let b = if rs.is_empty() {
                    0..0
                } else {
                    let start = rs.start + rng.randint(0, rs.len() as u64 - 1) as usize;
                    let b_start = corpus.sentence_tokens(start).start;
                    let mut b_end = b_start;
                    for s in start..rs.end {
                        b_end = corpus.sentence_tokens(s).end;
                        if (b_end - b_start) as i64 >= target_b {
                            break;
                        }
                    }
                    b_start..b_end
                };
                // Put back the sentences of the chunk that B did not use.
                i -= clen - a_end;
                (b, r)
            } else {
                (segs[chunk_start + a_end].start..segs[i].end, d)
            };
            let (mut a, mut b) = (a_full.clone(), b_full.clone());
            truncate_seq_pair(&mut a, &mut b, max_num, rng);
            if !a.is_empty() && !b.is_empty() {
                emit(&Pair { a, b, a_full, b_full, random_next, b_doc });
            }
            chunk_start = i + 1;
            cur_len = 0;
        }
        i += 1;
    }
    short
}

/// Google's `truncate_seq_pair` on ranges: trim the longer side (B on ties), front with p = 0.5.
fn truncate_seq_pair(a: &mut Range<u64>, b: &mut Range<u64>, max_num: u64, rng: &mut Rng) {
    loop {
        let (la, lb) = (a.end - a.start, b.end - b.start);
        if la + lb <= max_num {
            return;
        }
        let t = if la > lb { &mut *a } else { &mut *b };
        if rng.random() < 0.5 {
            t.start += 1;
        } else {
            t.end -= 1;
        }
    }
}

fn doc_rng(cfg: &NspConfig, purpose: Purpose, pass: u64, d: usize) -> Rng {
    Rng::keyed(cfg.seed, purpose, &[pass, d as u64])
}

/// Static, masked NSP instances for documents `docs` and dupe pass `pass`, in document order.
/// Offsets are local (start at 0). Builds an [`NspContext`]; call [`nsp_instances_with`] to reuse
/// one across calls.
pub fn nsp_instances(
    corpus: &dyn CorpusView,
    docs: Range<usize>,
    pass: u32,
    cfg: &NspConfig,
    vocab: &MaskVocab,
) -> NspInstances {
    let ctx = NspContext::new(corpus);
    nsp_instances_with(corpus, &ctx, docs, pass, cfg, vocab)
}

pub fn nsp_instances_with(
    corpus: &dyn CorpusView,
    ctx: &NspContext,
    docs: Range<usize>,
    pass: u32,
    cfg: &NspConfig,
    vocab: &MaskVocab,
) -> NspInstances {
    let mut out = NspInstances { offsets: vec![0], masked_offsets: vec![0], ..Default::default() };
    if cfg.validate().is_err() {
        return out;
    }
    let mut masker = Masker::new(cfg, vocab);
    let mut segs = Vec::new();
    for d in docs {
        let mut rng = doc_rng(cfg, Purpose::NspDocument, pass as u64, d);
        let mut mrng = doc_rng(cfg, Purpose::Masking, pass as u64, d);
        doc_pairs(corpus, ctx, d, cfg, &mut rng, &mut segs, |p| {
            let start = out.input_ids.len();
            out.input_ids.push(vocab.cls);
            corpus.tokens_into(p.a.clone(), &mut out.input_ids);
            out.input_ids.push(vocab.sep);
            corpus.tokens_into(p.b.clone(), &mut out.input_ids);
            out.input_ids.push(vocab.sep);
            let a_len = (p.a.end - p.a.start) as usize;
            masker.mask(
                &mut out.input_ids[start..],
                a_len,
                &mut mrng,
                &mut out.masked_positions,
                &mut out.masked_lm_ids,
            );
            out.offsets.push(out.input_ids.len() as u64);
            out.segment_a_lengths.push((a_len + 2) as u16);
            out.next_sentence_labels.push(p.random_next as u8);
            out.masked_offsets.push(out.masked_positions.len() as u64);
        });
    }
    out
}

/// All dupe passes (`0..cfg.dupe_factor`) for documents `docs`, in (pass, document) order, built in
/// parallel on the current rayon pool. Identical to calling [`nsp_instances`] pass by pass.
pub fn nsp_instances_parallel(
    corpus: &dyn CorpusView,
    docs: Range<usize>,
    cfg: &NspConfig,
    vocab: &MaskVocab,
) -> NspInstances {
    let ctx = NspContext::new(corpus);
    let mut items = Vec::new();
    for pass in 0..cfg.dupe_factor {
        let mut s = docs.start;
        while s < docs.end {
            let e = (s + BLOCK).min(docs.end);
            items.push((pass, s..e));
            s = e;
        }
    }
    let parts: Vec<NspInstances> =
        items.into_par_iter().map(|(pass, r)| nsp_instances_with(corpus, &ctx, r, pass, cfg, vocab)).collect();
    let mut out = NspInstances::default();
    for p in parts {
        out.append(p);
    }
    if out.offsets.is_empty() {
        out.offsets.push(0);
        out.masked_offsets.push(0);
    }
    out
}

/// The NSP pairs of every document for one epoch (= dupe pass `epoch`), unmasked, as global
/// token ranges with truncation applied; parallel over documents, in document order.
pub fn nsp_pairs(corpus: &dyn CorpusView, cfg: &NspConfig, epoch: u64) -> NspPairs {
    let ctx = NspContext::new(corpus);
    let n = corpus.n_documents();
    let blocks: Vec<Range<usize>> = (0..n.div_ceil(BLOCK)).map(|b| b * BLOCK..((b + 1) * BLOCK).min(n)).collect();
    let parts: Vec<NspPairs> = blocks
        .into_par_iter()
        .map(|r| {
            let mut out = NspPairs::default();
            if cfg.validate().is_err() {
                return out;
            }
            let mut segs = Vec::new();
            for d in r {
                let mut rng = doc_rng(cfg, Purpose::NspDocument, epoch, d);
                doc_pairs(corpus, &ctx, d, cfg, &mut rng, &mut segs, |p| {
                    out.a_start.push(p.a.start);
                    out.a_end.push(p.a.end);
                    out.b_start.push(p.b.start);
                    out.b_end.push(p.b.end);
                    out.labels.push(p.random_next as u8);
                });
            }
            out
        })
        .collect();
    let mut out = NspPairs::default();
    for p in parts {
        out.a_start.extend(p.a_start);
        out.a_end.extend(p.a_end);
        out.b_start.extend(p.b_start);
        out.b_end.extend(p.b_end);
        out.labels.extend(p.labels);
    }
    out
}
