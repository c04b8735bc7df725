//! Views and static instances over a tokenized corpus.
//!
//! The surface `prepare.rs` and the Python binding use:
//! - `nsp_instances(corpus, docs, pass, cfg, vocab) -> NspInstances`: Google's
//!   `create_instances_from_document` for every document in `docs` for dupe pass `pass`, with
//!   masking; randomness keyed by (cfg.seed, pass, document) so output does not depend on threads.
//! - `nsp_pairs(corpus, cfg, epoch) -> NspPairs`: the same pair construction (with truncation
//!   applied) as token ranges, without masking: the per-epoch NSP view.
//! - `mlm_instances(corpus, seq_len, vocab) -> Vec<u32>` ([n, seq_len] row-major) and
//!   `mlm_view(corpus, seq_len, seed, epoch) -> MlmView`.
//! - `chunk_instances(corpus, docs, chunk_size, vocab) -> Chunks`, `chunk_view(corpus, chunk_size)`.
//! - `elc::elc_view(corpus, seq_len)`: ELC-BERT's sentence-aligned per-document rows.
//!
//! Also: `nsp::NspContext` + `nsp::nsp_instances_with` (reuse the per-corpus negative-document
//! index across document ranges), `nsp::nsp_instances_parallel` (all dupe passes, rayon, in
//! (pass, document) order), `NspConfig::validate`, `mlm::TokenStream` / `mlm::mlm_rows` /
//! `mlm::mlm_view_of` / `mlm::mlm_rows_of` (materialise packed rows from stream starts),
//! `mlm::check_seq_len`, `chunks::check_chunk_size`, `chunks::doc_chunk_ranges`, `in_local_pool`.
//! Quirks of Google's script and their fixed counterparts are tabulated in nsp.rs and masking.rs.
//!
//! See docs/FORMAT.md for the array layouts these fill.

pub mod chunks;
pub mod elc;
pub mod masking;
pub mod mlm;
pub mod nsp;

/// What masking and instance building need to know about the vocabulary.
#[derive(Clone, Debug)]
pub struct MaskVocab {
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub vocab_size: u32,
    /// `##` continuation pieces (whole-word masking joins them to the previous token).
    pub is_continuation: Vec<bool>,
    /// [PAD], [UNK], [CLS], [SEP], [MASK], [unusedN] ... (never drawn as random replacements when
    /// quirks are fixed).
    pub is_special: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct NspConfig {
    pub max_seq_length: usize,
    pub max_predictions_per_seq: usize,
    pub masked_lm_prob: f64,
    pub short_seq_prob: f64,
    pub dupe_factor: u32,
    pub whole_word_mask: bool,
    /// false: Google's quirks (documented in nsp.rs); true: corrected behaviour.
    pub fix_quirks: bool,
    pub seed: u64,
}

/// Unpadded static NSP instances (see docs/FORMAT.md, "nsp").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NspInstances {
    pub input_ids: Vec<u32>,
    pub offsets: Vec<u64>,
    pub segment_a_lengths: Vec<u16>,
    pub next_sentence_labels: Vec<u8>,
    pub masked_positions: Vec<u16>,
    pub masked_lm_ids: Vec<u32>,
    pub masked_offsets: Vec<u64>,
}

/// NSP pairs as global token ranges (truncation applied), for per-epoch views.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NspPairs {
    pub a_start: Vec<u64>,
    pub a_end: Vec<u64>,
    pub b_start: Vec<u64>,
    pub b_end: Vec<u64>,
    /// 1 = random next (Google's convention).
    pub labels: Vec<u8>,
}

/// Chunks for NextLevelBERT (see docs/FORMAT.md, "chunks").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunks {
    pub input_ids: Vec<u32>,
    pub offsets: Vec<u64>,
    pub document_offsets: Vec<u64>,
}

impl MaskVocab {
    /// A vocabulary description from the special ids alone (no `##` information): enough for
    /// views, which never mask. `is_special` marks the given ids.
    pub fn from_specials(pad: u32, unk: u32, cls: u32, sep: u32, mask: u32, vocab_size: u32) -> Self {
        let mut is_special = vec![false; vocab_size as usize];
        for id in [pad, unk, cls, sep, mask] {
            if let Some(x) = is_special.get_mut(id as usize) {
                *x = true;
            }
        }
        MaskVocab { pad, cls, sep, mask, vocab_size, is_continuation: vec![false; vocab_size as usize], is_special }
    }

    /// From the vocabulary's tokens in id order: `##` prefixes mark continuations; `[...]` tokens
    /// (`[PAD]`, `[unused0]`, ...) are special.
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>, pad: u32, cls: u32, sep: u32, mask: u32) -> Self {
        let (mut is_continuation, mut is_special) = (Vec::new(), Vec::new());
        for t in tokens {
            is_continuation.push(t.starts_with("##") && t.len() > 2);
            is_special.push(t.len() > 2 && t.starts_with('[') && t.ends_with(']'));
        }
        MaskVocab { pad, cls, sep, mask, vocab_size: is_special.len() as u32, is_continuation, is_special }
    }
}

impl NspInstances {
    /// Number of instances.
    pub fn len(&self) -> usize {
        self.next_sentence_labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append `other`'s instances after ours, shifting its offsets.
    pub fn append(&mut self, other: NspInstances) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
            self.masked_offsets.push(0);
        }
        let (t, m) = (self.input_ids.len() as u64, self.masked_positions.len() as u64);
        self.offsets.extend(other.offsets.iter().skip(1).map(|o| o + t));
        self.masked_offsets.extend(other.masked_offsets.iter().skip(1).map(|o| o + m));
        self.input_ids.extend(other.input_ids);
        self.segment_a_lengths.extend(other.segment_a_lengths);
        self.next_sentence_labels.extend(other.next_sentence_labels);
        self.masked_positions.extend(other.masked_positions);
        self.masked_lm_ids.extend(other.masked_lm_ids);
    }

    /// Instance `i`: (tokens, |[CLS] A [SEP]|, label, masked positions, masked original ids).
    pub fn get(&self, i: usize) -> (&[u32], u16, u8, &[u16], &[u32]) {
        let (s, e) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        let (ms, me) = (self.masked_offsets[i] as usize, self.masked_offsets[i + 1] as usize);
        (
            &self.input_ids[s..e],
            self.segment_a_lengths[i],
            self.next_sentence_labels[i],
            &self.masked_positions[ms..me],
            &self.masked_lm_ids[ms..me],
        )
    }
}

impl NspPairs {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[cfg(test)]
mod tests;

/// Run `f` on a rayon pool built for this call (`threads = 0`: one per core) and dropped after:
/// the global pool is never started, so a process that forks later (DataLoader workers) is safe.
/// Falls back to running `f` on the calling thread if no pool can be built.
pub fn in_local_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
