//! Static masking of one NSP instance, as Google's `create_masked_lm_predictions` does it.
//!
//! | step | faithful (`fix_quirks = false`) | fixed (`fix_quirks = true`) |
//! |---|---|---|
//! | candidates | every position except [CLS] and the two [SEP]s | same |
//! | whole-word groups | a `##` piece joins the previous group, **even across the A/B [SEP]** (a truncated B may start with `##`) | a `##` piece right after a special token starts its own group |
//! | budget | `min(max_pred, max(1, round(len · p)))`, `len` counts the specials, `round` is Python's round-half-even | same |
//! | group selection | shuffled groups; a group that would overshoot the budget is skipped, not cut | same |
//! | 80/10/10 | drawn **per WordPiece**, even under whole-word masking (google-research/bert#910) | drawn once per group (whole word) |
//! | random replacement | `randint(0, V−1)` over the full vocabulary: [PAD], [unusedN], [CLS]... possible | uniform over non-special ids |
//! | output order | positions sorted | same |
//!
//! Google also checks a `covered_indexes` set; groups are disjoint by construction, so that check
//! can never fire and is not repeated here.

use crate::instances::{MaskVocab, NspConfig};
use crate::rng::Rng;

/// Python's `max(1, round(n · p))` capped at `max_pred`, with round-half-even (`round(4.5) == 4`).
pub fn num_to_predict(n_tokens: usize, masked_lm_prob: f64, max_pred: usize) -> usize {
    let r = (n_tokens as f64 * masked_lm_prob).round_ties_even();
    let r = if r.is_finite() && r > 0.0 { r as usize } else { 0 };
    max_pred.min(r.max(1))
}

/// Reusable buffers and per-call constants for masking; build once per batch of documents.
pub struct Masker<'v> {
    vocab: &'v MaskVocab,
    prob: f64,
    max_pred: usize,
    whole_word: bool,
    fixed: bool,
    /// At least one id is not special (fixed-mode random replacement is possible).
    has_normal: bool,
    groups: Vec<(u32, u32)>,
    picked: Vec<(u16, u32)>,
}

impl<'v> Masker<'v> {
    pub fn new(cfg: &NspConfig, vocab: &'v MaskVocab) -> Self {
        let v = vocab.vocab_size as usize;
        let has_normal = (0..v).any(|i| !vocab.is_special.get(i).copied().unwrap_or(false));
        Masker {
            vocab,
            prob: cfg.masked_lm_prob,
            max_pred: cfg.max_predictions_per_seq,
            whole_word: cfg.whole_word_mask,
            fixed: cfg.fix_quirks,
            has_normal,
            groups: Vec::new(),
            picked: Vec::new(),
        }
    }

    #[inline]
    fn is_cont(&self, id: u32) -> bool {
        self.vocab.is_continuation.get(id as usize).copied().unwrap_or(false)
    }

    #[inline]
    fn random_id(&self, rng: &mut Rng, original: u32) -> u32 {
        let v = self.vocab.vocab_size as u64;
        if v == 0 {
            return original;
        }
        if !self.fixed {
            return rng.randint(0, v - 1) as u32;
        }
        if !self.has_normal {
            return original;
        }
        loop {
            let id = rng.below(v) as u32;
            if !self.vocab.is_special.get(id as usize).copied().unwrap_or(false) {
                return id;
            }
        }
    }

    /// Mask `tokens` (`[CLS] A [SEP] B [SEP]`, `a_len = |A|`) in place; append the sorted masked
    /// positions and the original ids to `positions` / `labels`. Returns the number masked.
    pub fn mask(
        &mut self,
        tokens: &mut [u32],
        a_len: usize,
        rng: &mut Rng,
        positions: &mut Vec<u16>,
        labels: &mut Vec<u32>,
    ) -> usize {
        let n = tokens.len();
        let sep_a = a_len + 1;
        let is_special_pos = |i: usize| i == 0 || i == sep_a || i + 1 == n;
        // Candidate groups as position ranges [start, end); special positions inside are skipped
        // (only the faithful cross-[SEP] join can put one inside).
        self.groups.clear();
        for (i, &tok) in tokens.iter().enumerate() {
            if is_special_pos(i) {
                continue;
            }
            let join = self.whole_word
                && !self.groups.is_empty()
                && self.is_cont(tok)
                && (!self.fixed || !is_special_pos(i - 1));
            if join {
                self.groups.last_mut().unwrap().1 = i as u32 + 1;
            } else {
                self.groups.push((i as u32, i as u32 + 1));
            }
        }
        rng.shuffle(&mut self.groups);
        let budget = num_to_predict(n, self.prob, self.max_pred);
        self.picked.clear();
        for gi in 0..self.groups.len() {
            if self.picked.len() >= budget {
                break;
            }
            let (s, e) = self.groups[gi];
            let (s, e) = (s as usize, e as usize);
            let glen = (s..e).filter(|&i| !is_special_pos(i)).count();
            if self.picked.len() + glen > budget {
                continue;
            }
            // Fixed mode: one decision for the whole group.
            let group_choice = if self.fixed { Some(choice(rng)) } else { None };
            for (i, tok) in tokens.iter_mut().enumerate().take(e).skip(s) {
                if is_special_pos(i) {
                    continue;
                }
                let original = *tok;
                let c = group_choice.unwrap_or_else(|| choice(rng));
                *tok = match c {
                    Choice::Mask => self.vocab.mask,
                    Choice::Keep => original,
                    Choice::Random => self.random_id(rng, original),
                };
                self.picked.push((i as u16, original));
            }
        }
        self.picked.sort_unstable_by_key(|p| p.0);
        for &(p, l) in &self.picked {
            positions.push(p);
            labels.push(l);
        }
        self.picked.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Mask,
    Keep,
    Random,
}

/// Google's draw: `random() < 0.8` → [MASK]; else `random() < 0.5` → keep; else random id.
#[inline]
fn choice(rng: &mut Rng) -> Choice {
    if rng.random() < 0.8 {
        Choice::Mask
    } else if rng.random() < 0.5 {
        Choice::Keep
    } else {
        Choice::Random
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

    pub(crate) fn vocab(v: u32) -> MaskVocab {
        // ids 0..5 special; ids >= 1000 are `##` pieces.
        MaskVocab {
            pad: 0,
            cls: 2,
            sep: 3,
            mask: 4,
            vocab_size: v,
            is_continuation: (0..v).map(|i| i >= 1000).collect(),
            is_special: (0..v).map(|i| i < 5).collect(),
        }
    }

    fn cfg(wwm: bool, fixed: bool) -> NspConfig {
        NspConfig {
            max_seq_length: 128,
            max_predictions_per_seq: 20,
            masked_lm_prob: 0.15,
            short_seq_prob: 0.1,
            dupe_factor: 1,
            whole_word_mask: wwm,
            fix_quirks: fixed,
            seed: 1,
        }
    }

    #[test]
    fn round_half_even_budget() {
        // 30 · 0.15 == 4.5 in binary floating point; Python's round gives 4.
        assert_eq!(num_to_predict(30, 0.15, 20), 4);
        assert_eq!(num_to_predict(10, 0.25, 20), 2); // 2.5 → 2
        assert_eq!(num_to_predict(14, 0.25, 20), 4); // 3.5 → 4
        assert_eq!(num_to_predict(3, 0.15, 20), 1); // max(1, 0)
        assert_eq!(num_to_predict(1000, 0.15, 20), 20); // capped
        assert_eq!(num_to_predict(31, 0.15, 20), 5); // 4.65 → 5
    }

    #[test]
    fn budget_is_exact_without_wwm() {
        let v = vocab(2000);
        let c = cfg(false, false);
        let mut m = Masker::new(&c, &v);
        for n in 5..128usize {
            let a_len = (n - 3) / 2;
            // [CLS] A [SEP] B [SEP] with |A| = a_len.
            let mut t: Vec<u32> = vec![2];
            t.extend((0..a_len).map(|i| 10 + i as u32));
            t.push(3);
            t.extend((0..n - 3 - a_len).map(|i| 500 + i as u32));
            t.push(3);
            let orig = t.clone();
            let mut rng = Rng::keyed(5, Purpose::Test, &[n as u64]);
            let (mut pos, mut lab) = (vec![], vec![]);
            let k = m.mask(&mut t, a_len, &mut rng, &mut pos, &mut lab);
            assert_eq!(k, num_to_predict(n, 0.15, 20).min(n - 3));
            assert!(pos.windows(2).all(|w| w[0] < w[1]));
            for (&p, &l) in pos.iter().zip(&lab) {
                let p = p as usize;
                assert!(p != 0 && p != a_len + 1 && p != n - 1);
                assert_eq!(l, orig[p]);
            }
            for i in 0..n {
                if !pos.contains(&(i as u16)) {
                    assert_eq!(t[i], orig[i]);
                }
            }
        }
    }

    /// Statistics of the 80/10/10 draw and of the WWM modes.
    fn run_many(wwm: bool, fixed: bool) -> (usize, usize, usize, usize, usize) {
        let v = vocab(2000);
        let c = cfg(wwm, fixed);
        let mut m = Masker::new(&c, &v);
        let (mut n_mask, mut n_keep, mut n_rand, mut mixed_words, mut special_rand) = (0, 0, 0, 0, 0);
        for k in 0..4000u64 {
            let mut rng = Rng::keyed(9, Purpose::Test, &[k]);
            // Words: a head (10..900) followed by 0..3 `##` pieces.
            let mut t = vec![2u32];
            let a_len = 60;
            let mut words = vec![];
            while t.len() < 1 + a_len {
                let start = t.len();
                t.push(10 + rng.below(890) as u32);
                for _ in 0..rng.below(3) {
                    if t.len() < 1 + a_len {
                        t.push(1000 + rng.below(900) as u32);
                    }
                }
                words.push(start..t.len());
            }
            t.push(3);
            for _ in 0..60 {
                t.push(10 + rng.below(890) as u32);
            }
            t.push(3);
            let orig = t.clone();
            let (mut pos, mut lab) = (vec![], vec![]);
            m.mask(&mut t, a_len, &mut rng, &mut pos, &mut lab);
            for &p in &pos {
                let p = p as usize;
                if t[p] == v.mask {
                    n_mask += 1;
                } else if t[p] == orig[p] {
                    n_keep += 1;
                } else {
                    n_rand += 1;
                    if v.is_special[t[p] as usize] {
                        special_rand += 1;
                    }
                }
            }
            if wwm {
                for w in &words {
                    let masked: Vec<bool> = w.clone().map(|i| pos.contains(&(i as u16))).collect();
                    // Whole words: all pieces of a word are masked or none are.
                    assert!(masked.iter().all(|&x| x) || masked.iter().all(|&x| !x));
                    if masked[0] && w.len() > 1 {
                        // [MASK] vs not: a random id may equal the original, never [MASK]
                        // in fixed mode (special ids are never drawn).
                        let kinds: Vec<bool> = w.clone().map(|i| t[i] == v.mask).collect();
                        if kinds.iter().any(|&x| x != kinds[0]) {
                            mixed_words += 1;
                        }
                    }
                }
            }
        }
        (n_mask, n_keep, n_rand, mixed_words, special_rand)
    }

    #[test]
    fn proportions_80_10_10() {
        let (m, k, r, _, _) = run_many(false, false);
        let total = (m + k + r) as f64;
        assert!(total > 50_000.0);
        assert!((m as f64 / total - 0.8).abs() < 0.01, "{m} {k} {r}");
        assert!((k as f64 / total - 0.1).abs() < 0.01, "{m} {k} {r}");
        assert!((r as f64 / total - 0.1).abs() < 0.01, "{m} {k} {r}");
    }

    #[test]
    fn wwm_faithful_mixes_treatment_fixed_does_not() {
        let (_, _, _, mixed_faithful, special_faithful) = run_many(true, false);
        let (m, k, r, mixed_fixed, special_fixed) = run_many(true, true);
        assert!(mixed_faithful > 100, "{mixed_faithful}");
        assert_eq!(mixed_fixed, 0);
        // Random ids come from the full vocab in faithful mode (5 of 2000 ids are special).
        assert!(special_faithful > 0);
        assert_eq!(special_fixed, 0);
        let total = (m + k + r) as f64;
        assert!((m as f64 / total - 0.8).abs() < 0.02, "{m} {k} {r}");
    }

    #[test]
    fn wwm_join_across_sep_only_in_faithful_mode() {
        let v = vocab(2000);
        // [CLS] w ## [SEP] ## w [SEP]
        let base = vec![2u32, 10, 1001, 3, 1002, 11, 3];
        for fixed in [false, true] {
            let c = cfg(true, fixed);
            let mut m = Masker::new(&c, &v);
            m.groups.clear();
            let mut t = base.clone();
            let mut rng = Rng::keyed(1, Purpose::Test, &[]);
            let (mut p, mut l) = (vec![], vec![]);
            m.mask(&mut t, 2, &mut rng, &mut p, &mut l);
            let mut g = m.groups.clone();
            g.sort_unstable();
            if fixed {
                assert_eq!(g, vec![(1, 3), (4, 5), (5, 6)]);
            } else {
                assert_eq!(g, vec![(1, 5), (5, 6)]);
            }
        }
    }
}
