//! ELC-BERT's pre-tokenizer: `Sequence[ByteLevel(add_prefix_space=True, use_regex=True),
//! Digits(individual_digits=True)]`, with no normalizer, feeding WordPiece without a prefix.
//!
//! ByteLevel adds a space in front unless the text starts with `' '`, splits with GPT-2's pattern
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (hand-written
//! below, leftmost-first like the regex engine) and maps every byte to one printable char (GPT-2's
//! `bytes_to_unicode`). Digits then isolates every *mapped* char that is numeric: ASCII digits,
//! and also `²³¹¼½¾`, which are the images of the bytes 0xB2, 0xB3, 0xB9, 0xBC-0xBE (so UTF-8
//! continuation bytes get split off too, exactly as HF does).
//!
//! `\p{L}`/`\p{N}` use Unicode 16.0 general categories, the version of the Oniguruma inside HF
//! `tokenizers` 0.23 (checked on every code point: no difference).

use unicode_general_category::{get_general_category, GeneralCategory as G};

use super::wordpiece::WordPiece;

/// GPT-2's byte → char table: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100 upwards in byte order.
pub(crate) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
            c
        };
    }
    table
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

#[inline]
fn class(c: char) -> Class {
    if c.is_ascii() {
        if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if c.is_ascii_whitespace() || c == '\u{B}' {
            Class::Space
        } else {
            Class::Other
        }
    } else if c.is_whitespace() {
        Class::Space
    } else {
        match get_general_category(c) {
            G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
                Class::Letter
            }
            G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
            _ => Class::Other,
        }
    }
}

/// The GPT-2 split of `s`: calls `f` with each piece, in order; pieces cover `s`.
pub(crate) fn gpt2_split(s: &str, mut f: impl FnMut(&str)) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let end = piece_end(s, bytes, i, c);
        f(&s[i..end]);
        i = end;
    }
}

/// End of the piece that starts at byte `i` (char `c`).
fn piece_end(s: &str, bytes: &[u8], i: usize, c: char) -> usize {
    // 's|'t|'re|'ve|'m|'ll|'d
    if c == '\'' {
        let rest = &bytes[i + 1..];
        match rest {
            [b's' | b't' | b'm' | b'd', ..] => return i + 2,
            [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => return i + 3,
            _ => {}
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
    let (j, first) = if c == ' ' {
        match s[i + 1..].chars().next() {
            Some(d) => (i + 1, Some(d)),
            None => (i + 1, None),
        }
    } else {
        (i, Some(c))
    };
    if let Some(first) = first {
        let k = class(first);
        if k != Class::Space {
            return j + run_len(&s[j..], |d| class(d) == k);
        }
    }
    // `\s+(?!\S)` then `\s+`: c is whitespace here.
    let run = run_len(&s[i..], |d| class(d) == Class::Space);
    let run_end = i + run;
    if run_end == s.len() {
        return run_end;
    }
    // Followed by a non-space: give back the last whitespace char, unless it is the only one.
    let last = s[i..run_end].chars().next_back().map_or(1, char::len_utf8);
    if run > last {
        run_end - last
    } else {
        run_end
    }
}

/// Bytes of the longest prefix of `s` whose chars satisfy `p`.
#[inline]
fn run_len(s: &str, p: impl Fn(char) -> bool) -> usize {
    s.char_indices().find(|&(_, d)| !p(d)).map_or(s.len(), |(j, _)| j)
}

pub(crate) struct ByteLevelPipeline {
    /// UTF-8 of the mapped char of each byte.
    mapped: [([u8; 2], u8); 256],
    /// Whether the mapped char of each byte is numeric (`char::is_numeric`).
    numeric: [bool; 256],
}

impl ByteLevelPipeline {
    pub(crate) fn new() -> ByteLevelPipeline {
        let table = bytes_to_unicode();
        let mut mapped = [([0u8; 2], 0u8); 256];
        let mut numeric = [false; 256];
        for b in 0..256 {
            let c = table[b];
            let mut buf = [0u8; 4];
            let len = c.encode_utf8(&mut buf).len();
            mapped[b] = ([buf[0], buf[1]], len as u8);
            numeric[b] = c.is_numeric();
        }
        ByteLevelPipeline { mapped, numeric }
    }

    pub(crate) fn encode(&self, wp: &WordPiece, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut word: Vec<u8> = Vec::with_capacity(64);
        let mut piece = |p: &str| {
            for &b in p.as_bytes() {
                if self.numeric[b as usize] {
                    wp.tokenize(&word, out);
                    word.clear();
                    let (m, len) = self.mapped[b as usize];
                    wp.tokenize(&m[..len as usize], out);
                } else {
                    let (m, len) = self.mapped[b as usize];
                    word.extend_from_slice(&m[..len as usize]);
                }
            }
            wp.tokenize(&word, out);
            word.clear();
        };
        if text.starts_with(' ') {
            gpt2_split(text, &mut piece);
        } else {
            let mut owned = String::with_capacity(text.len() + 1);
            owned.push(' ');
            owned.push_str(text);
            gpt2_split(&owned, &mut piece);
        }
    }

    /// Bytes of a mapped token (the inverse of the byte mapping), for decoding.
    pub(crate) fn unmap(token: &str, out: &mut Vec<u8>) {
        for c in token.chars() {
            let u = c as u32;
            match u {
                0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => out.push(u as u8),
                0x100..=0x143 => {
                    // The n-th non-printable byte.
                    let n = u - 0x100;
                    let b = (0..=255u8)
                        .filter(|b| !matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
                        .nth(n as usize)
                        .unwrap_or(b'?');
                    out.push(b);
                }
                _ => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        gpt2_split(s, |p| v.push(p.to_string()));
        v
    }

    #[test]
    fn gpt2_pattern() {
        assert_eq!(split(" it's 2019"), [" it", "'s", " 2019"]);
        assert_eq!(split(" \thello"), [" ", "\t", "hello"]);
        assert_eq!(split(" a  b"), [" a", " ", " b"]);
        assert_eq!(split(" x\n\n y"), [" x", "\n\n", " y"]);
        assert_eq!(split(" x   "), [" x", "   "]);
        assert_eq!(split(" don'T ...'s"), [" don", "'", "T", " ...'", "s"]);
        assert_eq!(split(" 'll've"), [" '", "ll", "'ve"]);
        assert_eq!(split(" café über"), [" café", " über"]);
        assert_eq!(split(" ½x"), [" ½", "x"]);
        assert_eq!(split(" "), [" "]);
    }

    #[test]
    fn byte_table() {
        let t = bytes_to_unicode();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń');
        let mut seen = std::collections::HashSet::new();
        assert!(t.iter().all(|c| seen.insert(*c)));
        let mut back = Vec::new();
        ByteLevelPipeline::unmap("ĠcafÃ©Ċ", &mut back);
        assert_eq!(back, " café\n".as_bytes());
    }
}
