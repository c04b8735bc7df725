//! HF `BertNormalizer` + `BertPreTokenizer`, fused into one pass that feeds words to WordPiece.
//!
//! HF's order, per char: clean_text (drop U+0000, U+FFFD and `Other` chars except `\t\n\r`;
//! whitespace → space), CJK ideographs spaced out, strip accents (NFD, drop Mn), lowercase
//! (`char::to_lowercase`, char by char, so no final-sigma rule). The pre-tokenizer then splits the
//! normalised text on whitespace (removed) and punctuation (isolated). ASCII bytes go through a
//! 128-entry table; other chars take the general path.
//!
//! Known difference: NFD is applied char by char, so the canonical reordering of a run of
//! combining marks is not done. Only Mn marks are dropped, so the output differs only when two
//! non-Mn marks with different non-zero combining classes follow each other (a few musical and
//! Khitan symbols).

use unicode_categories::UnicodeCategories;
use unicode_normalization::char::decompose_canonical;

use super::wordpiece::WordPiece;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BertOptions {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    pub strip_accents: bool,
    pub lowercase: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ascii {
    Drop,
    Space,
    Punct,
    Keep(u8),
}

pub(crate) struct BertPipeline {
    opts: BertOptions,
    ascii: [Ascii; 128],
}

/// `\t\n\r` count as whitespace for BERT, never as control.
#[inline]
pub(crate) fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// HF's control: any Cc, Cf or Co char except `\t\n\r`.
#[inline]
pub(crate) fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// The CJK blocks BERT puts spaces around (the same ranges as HF and Google).
#[inline]
pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// ASCII punctuation (33-47, 58-64, 91-96, 123-126) or Unicode P*.
#[inline]
pub(crate) fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && c.is_punctuation())
}

/// Words are collected here; punctuation and word ends go straight to WordPiece.
struct Sink<'a> {
    wp: &'a WordPiece,
    word: Vec<u8>,
    out: &'a mut Vec<u32>,
}

impl Sink<'_> {
    #[inline]
    fn flush(&mut self) {
        if !self.word.is_empty() {
            self.wp.tokenize(&self.word, self.out);
            self.word.clear();
        }
    }

    #[inline]
    fn punct(&mut self, bytes: &[u8]) {
        self.flush();
        self.out.push(self.wp.lookup(bytes).unwrap_or(self.wp.unk));
    }

    /// A char of the normalised text: split or append.
    #[inline]
    fn normalized(&mut self, c: char) {
        if c.is_whitespace() {
            self.flush();
        } else if is_bert_punctuation(c) {
            let mut buf = [0u8; 4];
            self.punct(c.encode_utf8(&mut buf).as_bytes());
        } else {
            let mut buf = [0u8; 4];
            self.word.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

impl BertPipeline {
    pub(crate) fn new(opts: BertOptions) -> BertPipeline {
        let mut ascii = [Ascii::Drop; 128];
        for (b, slot) in ascii.iter_mut().enumerate() {
            let mut c = b as u8 as char;
            if opts.clean_text {
                if c == '\0' || is_bert_control(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    c = ' ';
                }
            }
            if opts.lowercase {
                c = c.to_ascii_lowercase();
            }
            *slot = if c.is_whitespace() {
                Ascii::Space
            } else if is_bert_punctuation(c) {
                Ascii::Punct
            } else {
                Ascii::Keep(c as u8)
            };
        }
        BertPipeline { opts, ascii }
    }

    pub(crate) fn encode(&self, wp: &WordPiece, text: &str, out: &mut Vec<u32>) {
        let mut sink = Sink { wp, word: Vec::with_capacity(64), out };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                match self.ascii[b as usize] {
                    Ascii::Keep(k) => sink.word.push(k),
                    Ascii::Space => sink.flush(),
                    Ascii::Punct => sink.punct(&bytes[i..i + 1]),
                    Ascii::Drop => {}
                }
                i += 1;
            } else {
                // `i` is a char boundary of a valid str, so this char exists.
                let c = text[i..].chars().next().unwrap_or(' ');
                i += c.len_utf8();
                self.general(c, &mut sink);
            }
        }
        sink.flush();
    }

    fn general(&self, c: char, sink: &mut Sink<'_>) {
        let o = &self.opts;
        let mut c = c;
        if o.clean_text {
            if c == '\0' || c == '\u{FFFD}' || is_bert_control(c) {
                return;
            }
            if is_bert_whitespace(c) {
                c = ' ';
            }
        }
        let chinese = o.handle_chinese_chars && is_chinese_char(c);
        if chinese {
            sink.flush();
        }
        if o.strip_accents {
            decompose_canonical(c, |d| {
                if !d.is_mark_nonspacing() {
                    self.lower(d, sink);
                }
            });
        } else {
            self.lower(c, sink);
        }
        if chinese {
            sink.flush();
        }
    }

    #[inline]
    fn lower(&self, c: char, sink: &mut Sink<'_>) {
        if self.opts.lowercase {
            for l in c.to_lowercase() {
                sink.normalized(l);
            }
        } else {
            sink.normalized(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_classes() {
        assert!(is_bert_control('\u{7}'));
        assert!(is_bert_control('\u{200B}')); // Cf
        assert!(is_bert_control('\u{E000}')); // Co
        assert!(!is_bert_control('\t'));
        assert!(is_bert_whitespace('\u{3000}'));
        assert!(is_bert_whitespace('\n'));
        assert!(is_bert_punctuation('$'));
        assert!(is_bert_punctuation('`'));
        assert!(is_bert_punctuation('«'));
        assert!(is_bert_punctuation('—'));
        assert!(!is_bert_punctuation('€')); // Sc, not P*
        assert!(is_chinese_char('中'));
        assert!(!is_chinese_char('ア'));
    }
}
