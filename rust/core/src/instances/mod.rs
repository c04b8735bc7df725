//! Views and static instances over a tokenized corpus. OWNER: instances helper.
//!
//! CONTRACT (used by `prepare.rs` and the Python binding):
//! - `nsp_instances(corpus, docs, pass, cfg, vocab) -> NspInstances`: Google's
//!   `create_instances_from_document` for every document in `docs` for dupe pass `pass`, with
//!   masking; randomness keyed by (cfg.seed, pass, document) so output does not depend on threads.
//! - `nsp_pairs(corpus, cfg, epoch) -> NspPairs`: the same pair construction (with truncation
//!   applied) as token ranges, without masking: the per-epoch NSP view.
//! - `mlm_instances(corpus, seq_len, vocab) -> Vec<u32>` ([n, seq_len] row-major) and
//!   `mlm_view(corpus, seq_len, seed, epoch) -> MlmView`.
//! - `chunk_instances(corpus, docs, chunk_size, vocab) -> Chunks`, `chunk_view(corpus, chunk_size)`.
//! See docs/FORMAT.md for the array layouts these fill.

pub mod chunks;
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
