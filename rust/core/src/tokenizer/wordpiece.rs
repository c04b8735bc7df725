//! Greedy longest-match-first WordPiece over one pre-tokenized word, as HF `tokenizers`' WordPiece
//! model does it, working on bytes without allocating.
//!
//! Equivalences that make it fast without changing the result:
//! - a continuation lookup of `prefix + piece` is a lookup of `piece` in a second map that holds
//!   the tokens starting with the prefix, stripped of it (same answer, no string building);
//! - a candidate longer than the longest key of the map cannot match, so the search starts at
//!   `start + longest key` (rounded down to a char boundary) instead of the word's end.

use rustc_hash::FxHashMap;

/// Token bytes → id. Later ids win on duplicate tokens, as in HF's `WordPiece::read_file`.
/// Keys of up to 7 bytes (most pieces) are packed with their length into a `u64`, up to 15 into
/// a `u128`: they hash with a multiply or two and compare without `memcmp`.
#[derive(Default, Debug)]
pub(crate) struct PieceMap {
    short: FxHashMap<u64, u32>,
    medium: FxHashMap<u128, u32>,
    long: FxHashMap<Box<[u8]>, u32>,
    longest: usize,
}

#[inline]
fn pack(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..key.len()].copy_from_slice(key);
    b[7] = key.len() as u8;
    u64::from_le_bytes(b)
}

#[inline]
fn pack16(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..key.len()].copy_from_slice(key);
    b[15] = key.len() as u8;
    u128::from_le_bytes(b)
}

impl PieceMap {
    pub(crate) fn insert(&mut self, key: &[u8], id: u32) {
        self.longest = self.longest.max(key.len());
        if key.len() <= 7 {
            self.short.insert(pack(key), id);
        } else if key.len() <= 15 {
            self.medium.insert(pack16(key), id);
        } else {
            self.long.insert(key.into(), id);
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        if key.len() <= 7 {
            self.short.get(&pack(key)).copied()
        } else if key.len() <= 15 {
            self.medium.get(&pack16(key)).copied()
        } else {
            self.long.get(key).copied()
        }
    }
}

#[derive(Debug)]
pub(crate) struct WordPiece {
    /// Every token, for the first piece of a word.
    start: PieceMap,
    /// Tokens starting with the continuing-subword prefix, without it. `None` when the prefix is
    /// empty: continuation pieces are then looked up in `start`.
    cont: Option<PieceMap>,
    pub(crate) unk: u32,
    pub(crate) max_chars: usize,
}

#[inline]
fn is_char_boundary(word: &[u8], i: usize) -> bool {
    i >= word.len() || (word[i] as i8) >= -0x40
}

impl WordPiece {
    /// `tokens[id]` is the token of id `id`.
    pub(crate) fn new(tokens: &[String], prefix: &str, unk: u32, max_chars: usize) -> WordPiece {
        let mut start = PieceMap::default();
        let mut cont = (!prefix.is_empty()).then(PieceMap::default);
        for (id, token) in tokens.iter().enumerate() {
            let id = id as u32;
            start.insert(token.as_bytes(), id);
            if let Some(cont) = cont.as_mut() {
                if let Some(rest) = token.strip_prefix(prefix) {
                    cont.insert(rest.as_bytes(), id);
                }
            }
        }
        WordPiece { start, cont, unk, max_chars }
    }

    /// Id of a whole token, if in the vocabulary.
    #[inline]
    pub(crate) fn lookup(&self, token: &[u8]) -> Option<u32> {
        self.start.get(token)
    }

    /// Appends the pieces of `word` (valid UTF-8, non-empty) to `out`; the whole word becomes
    /// the unknown token when it has more than `max_chars` chars or some position has no piece.
    pub(crate) fn tokenize(&self, word: &[u8], out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        // chars <= bytes, so only long words need counting.
        if word.len() > self.max_chars && word.iter().filter(|&&b| (b as i8) >= -0x40).count() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < word.len() {
            let map = if start == 0 { &self.start } else { self.cont.as_ref().unwrap_or(&self.start) };
            let mut end = word.len().min(start + map.longest);
            while !is_char_boundary(word, end) {
                end -= 1;
            }
            loop {
                if end <= start {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
                if let Some(id) = map.get(&word[start..end]) {
                    out.push(id);
                    start = end;
                    break;
                }
                end -= 1;
                while !is_char_boundary(word, end) {
                    end -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wp(tokens: &[&str], prefix: &str) -> WordPiece {
        let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        WordPiece::new(&tokens, prefix, 0, 10)
    }

    fn run(w: &WordPiece, word: &str) -> Vec<u32> {
        let mut out = vec![99];
        w.tokenize(word.as_bytes(), &mut out);
        out.remove(0);
        out
    }

    #[test]
    fn greedy_longest_match_with_prefix() {
        let w = wp(&["[UNK]", "un", "##aff", "##able", "unaff", "##a", "##ble", "é", "##é"], "##");
        assert_eq!(run(&w, "unaffable"), vec![4, 3]);
        assert_eq!(run(&w, "unable"), vec![1, 3]);
        // No piece for "x": the whole word is unknown, pieces already pushed are dropped.
        assert_eq!(run(&w, "unx"), vec![0]);
        assert_eq!(run(&w, "éé"), vec![7, 8]);
        // A continuation never matches a bare token.
        assert_eq!(run(&w, "unun"), vec![0]);
    }

    #[test]
    fn empty_prefix_uses_one_map_and_long_words_are_unknown() {
        let w = wp(&["[UNK]", "ab", "c", "abc"], "");
        assert_eq!(run(&w, "abcab"), vec![3, 1]);
        assert_eq!(run(&w, "cab"), vec![2, 1]);
        assert_eq!(run(&w, "ababababab"), vec![1; 5]);
        assert_eq!(run(&w, "abababababc"), vec![0]); // 11 chars > 10
        assert_eq!(run(&w, ""), Vec::<u32>::new());
    }

    #[test]
    fn duplicates_later_id_wins_and_prefix_only_token() {
        let w = wp(&["[UNK]", "a", "a", "##", "####"], "##");
        assert_eq!(run(&w, "a"), vec![2]);
        // "##" continuation is the empty piece; "####" is the continuation "##".
        assert_eq!(run(&w, "a##"), vec![2, 4]);
    }

    #[test]
    fn char_count_not_bytes_for_the_limit() {
        let w = wp(&["[UNK]", "é"], "");
        assert_eq!(run(&w, &"é".repeat(10)), vec![1; 10]);
        assert_eq!(run(&w, &"é".repeat(11)), vec![0]);
    }
}
