//! The rule-based English splitter: one forward pass over the bytes of the text.
//!
//! Candidate boundaries are `.`, `?`, `!`, `…`, line breaks and list bullets. At a terminal
//! cluster (e.g. `?!`, `...`, `. . . .`, then closing quotes/brackets) the decision looks at a
//! bounded window: the token before the cluster (abbreviation? initial? list marker?) and the
//! first character / word after the following whitespace (lower-case? a common sentence
//! starter?). Every byte is visited a bounded number of times, so the pass is linear.

use std::ops::Range;

use super::lexicon::{abbreviation, is_sentence_starter, Abbrev};

/// Longest token looked at before a period; longer tokens (URLs, ...) are ordinary words.
const MAX_TOKEN: usize = 48;
/// Longest run of blanks/bullets looked through for a list marker at a sentence start.
const MAX_LEAD: usize = 64;
const NONE: usize = usize::MAX;

pub(super) fn split(text: &str, out: &mut Vec<Range<usize>>) {
    Rules { text, b: text.as_bytes(), out, start: 0, marker_dot: NONE, list: None }.run();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MarkerKind {
    Number,
    Lower,
    Upper,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MarkerSuffix {
    /// `1.`
    Dot,
    /// `1)`
    Paren,
    /// `1.)`
    DotParen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    kind: MarkerKind,
    suffix: MarkerSuffix,
    value: u32,
    /// Byte offset of the marker's period, if it has one.
    dot: usize,
}

/// The list being read: markers of this style with this value start a new item.
#[derive(Clone, Copy, Debug)]
struct ListState {
    kind: MarkerKind,
    suffix: MarkerSuffix,
    next: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    No,
    /// After the whole cluster and its closing quotes/brackets.
    After,
    /// After the first period of the cluster ("words. . . . Next": the ellipsis opens the next).
    AfterFirst,
}

struct Rules<'a, 'o> {
    text: &'a str,
    b: &'a [u8],
    out: &'o mut Vec<Range<usize>>,
    /// Start of the current sentence (untrimmed).
    start: usize,
    /// The period of the list marker opening the current sentence ("1." in "1. The item").
    marker_dot: usize,
    list: Option<ListState>,
}

#[inline]
fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Length of the whitespace character at `p` (ASCII blanks and NBSP), 0 if none.
#[inline]
fn space_len(b: &[u8], p: usize) -> usize {
    match b.get(p) {
        Some(&c) if is_blank(c) => 1,
        Some(0xC2) if b.get(p + 1) == Some(&0xA0) => 2,
        _ => 0,
    }
}

/// Length of a list bullet character at `p` (• ‣ ⁃ ◦ ▪ ●), 0 if none.
#[inline]
fn bullet_len(b: &[u8], p: usize) -> usize {
    if p + 2 < b.len() && b[p] == 0xE2 {
        match (b[p + 1], b[p + 2]) {
            (0x80, 0xA2) | (0x80, 0xA3) | (0x81, 0x83) | (0x97, 0xA6) | (0x96, 0xAA) | (0x97, 0x8F) => 3,
            _ => 0,
        }
    } else {
        0
    }
}

/// Length of an opening quote/bracket at `p` (( [ { " ' “ ‘ « ¿ ¡), 0 if none.
#[inline]
fn opener_len(b: &[u8], p: usize) -> usize {
    match b.get(p) {
        Some(b'(' | b'[' | b'{' | b'"' | b'\'') => 1,
        Some(0xE2) if b.get(p + 1) == Some(&0x80) && matches!(b.get(p + 2), Some(0x9C | 0x98)) => 3,
        Some(0xC2) if matches!(b.get(p + 1), Some(0xAB | 0xBF | 0xA1)) => 2,
        _ => 0,
    }
}

/// Length of a closing quote/bracket at `p` () ] } " ' ” ’ »), 0 if none.
#[inline]
fn closer_len(b: &[u8], p: usize) -> usize {
    match b.get(p) {
        Some(b')' | b']' | b'}' | b'"' | b'\'') => 1,
        Some(0xE2) if b.get(p + 1) == Some(&0x80) && matches!(b.get(p + 2), Some(0x9D | 0x99)) => 3,
        Some(0xC2) if b.get(p + 1) == Some(&0xBB) => 2,
        _ => 0,
    }
}

/// Length of a dash at `p` (- – —), 0 if none.
#[inline]
fn dash_len(b: &[u8], p: usize) -> usize {
    match b.get(p) {
        Some(b'-') => 1,
        Some(0xE2) if b.get(p + 1) == Some(&0x80) && matches!(b.get(p + 2), Some(0x93 | 0x94)) => 3,
        _ => 0,
    }
}

#[inline]
fn is_ellipsis(b: &[u8], p: usize) -> bool {
    p + 2 < b.len() && b[p] == 0xE2 && b[p + 1] == 0x80 && b[p + 2] == 0xA6
}

/// A list marker at `p`: `12.`, `12)`, `12.)`, `a.`, `a)`, `A)` followed by whitespace.
fn parse_marker(b: &[u8], p: usize) -> Option<Marker> {
    let n = b.len();
    let mut q = p;
    let (kind, value) = if q < n && b[q].is_ascii_digit() {
        let mut v = 0u32;
        while q < n && b[q].is_ascii_digit() && q - p < 3 {
            v = v * 10 + u32::from(b[q] - b'0');
            q += 1;
        }
        if q < n && b[q].is_ascii_digit() {
            return None;
        }
        (MarkerKind::Number, v)
    } else if q < n && b[q].is_ascii_lowercase() {
        q += 1;
        (MarkerKind::Lower, u32::from(b[q - 1]))
    } else if q < n && b[q].is_ascii_uppercase() {
        q += 1;
        (MarkerKind::Upper, u32::from(b[q - 1]))
    } else {
        return None;
    };
    let mut dot = NONE;
    let suffix = match b.get(q) {
        Some(b'.') if b.get(q + 1) == Some(&b')') => {
            dot = q;
            q += 2;
            MarkerSuffix::DotParen
        }
        Some(b'.') => {
            dot = q;
            q += 1;
            MarkerSuffix::Dot
        }
        Some(b')') => {
            q += 1;
            MarkerSuffix::Paren
        }
        _ => return None,
    };
    // "A. Smith" is an initial, not a list item.
    if kind == MarkerKind::Upper && suffix == MarkerSuffix::Dot {
        return None;
    }
    if q < n && space_len(b, q) == 0 {
        return None;
    }
    Some(Marker { kind, suffix, value, dot })
}

/// "U.S", "e.g", "a.m", "Ph.D": letter groups of one or two letters joined by periods.
fn is_dotted_abbrev(tok: &[u8]) -> bool {
    let mut groups = 0;
    for part in tok.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 2 || !part.iter().all(u8::is_ascii_alphabetic) {
            return false;
        }
        groups += 1;
    }
    groups >= 2
}

impl Rules<'_, '_> {
    fn run(mut self) {
        let b = self.b;
        let n = b.len();
        self.begin(0);
        let mut i = 0;
        while i < n {
            match b[i] {
                b'.' | b'?' | b'!' => i = self.terminal(i),
                b'\n' | b'\r' => i = self.newline(i),
                0xE2 => {
                    if is_ellipsis(b, i) {
                        i = self.terminal(i);
                    } else if bullet_len(b, i) > 0 && i > 0 && space_len(b, i - 1) > 0 {
                        // A bullet after a blank starts a new item.
                        self.emit(i);
                        self.begin(i);
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                b' ' | b'\t' if self.list.is_some() => {
                    self.list_check(i + 1);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        self.emit(n);
    }

    /// Push the current sentence, trimmed, ending at `end`, if it is not empty.
    fn emit(&mut self, end: usize) {
        if end <= self.start {
            return;
        }
        let t = self.text[self.start..end].trim();
        if !t.is_empty() {
            let off = t.as_ptr() as usize - self.text.as_ptr() as usize;
            self.out.push(off..off + t.len());
        }
        self.start = end;
    }

    /// Start a sentence at `pos`; note a list marker that opens it.
    fn begin(&mut self, pos: usize) {
        self.start = pos;
        self.marker_dot = NONE;
        let b = self.b;
        let mut p = pos;
        while p < b.len() && p - pos < MAX_LEAD {
            let l = space_len(b, p) + bullet_len(b, p);
            if l == 0 {
                break;
            }
            p += l;
        }
        if let Some(m) = parse_marker(b, p) {
            self.marker_dot = m.dot;
            self.list = Some(ListState { kind: m.kind, suffix: m.suffix, next: m.value + 1 });
        }
    }

    /// Inside a list, the next marker ("2)" after "1) ...") starts a new item.
    fn list_check(&mut self, p: usize) {
        let Some(list) = self.list else { return };
        if let Some(m) = parse_marker(self.b, p) {
            if m.kind == list.kind && m.suffix == list.suffix && m.value == list.next {
                self.emit(p);
                self.begin(p);
            }
        }
    }

    /// A line break at `i`: a blank line ends the sentence (and the paragraph); a single break
    /// is a space unless the next line starts with a bullet or list marker.
    fn newline(&mut self, i: usize) -> usize {
        let b = self.b;
        let n = b.len();
        let mut p = i;
        let mut breaks = 0;
        while p < n {
            match b[p] {
                b'\n' => {
                    breaks += 1;
                    p += 1;
                }
                b'\r' => {
                    breaks += 1;
                    p += 1;
                    if p < n && b[p] == b'\n' {
                        p += 1;
                    }
                }
                b' ' | b'\t' | 0x0b | 0x0c => p += 1,
                _ => break,
            }
        }
        if p >= n {
            return p;
        }
        if breaks >= 2 {
            self.emit(i);
            self.list = None;
            self.begin(p);
        } else if self.line_item(p) {
            self.emit(i);
            self.begin(p);
        } else {
            self.list_check(p);
        }
        p
    }

    fn line_item(&self, p: usize) -> bool {
        let b = self.b;
        if bullet_len(b, p) > 0 {
            return true;
        }
        if matches!(b[p], b'*' | b'+') || dash_len(b, p) > 0 {
            let l = dash_len(b, p).max(1);
            return space_len(b, p + l) > 0;
        }
        parse_marker(b, p).is_some()
    }

    /// A terminal cluster starts at `i`. Returns where scanning resumes.
    fn terminal(&mut self, i: usize) -> usize {
        let b = self.b;
        let n = b.len();
        let mut p = i;
        let mut dots = 0u32;
        let mut qe = false;
        let mut spaced = false;
        while p < n {
            match b[p] {
                b'.' => {
                    dots += 1;
                    p += 1;
                }
                b'?' | b'!' => {
                    qe = true;
                    p += 1;
                }
                0xE2 if is_ellipsis(b, p) => {
                    dots += 3;
                    p += 3;
                }
                // ". . ." : a dot, a space, a dot that is not the start of a word like ".NET"
                b' ' if dots > 0
                    && b.get(p + 1) == Some(&b'.')
                    && (p + 2 == n || matches!(b[p + 2], b' ' | b'.') || closer_len(b, p + 2) > 0) =>
                {
                    spaced = true;
                    p += 1;
                }
                _ => break,
            }
        }
        let cluster_end = p;
        loop {
            let l = closer_len(b, p);
            if l == 0 {
                break;
            }
            p += l;
        }
        let q = p;
        if q >= n || space_len(b, q) == 0 {
            // End of text, or inside a token: 3.14, U.S.A, example.com, Jr.'s, "mean...see".
            return q;
        }
        let mut m = q;
        loop {
            let l = space_len(b, m);
            if l == 0 {
                break;
            }
            m += l;
        }
        if m >= n {
            return q;
        }
        let mut k = m;
        loop {
            let l = opener_len(b, k);
            if l == 0 {
                break;
            }
            k += l;
        }
        let class = self.classify(k);
        match self.decide(i, cluster_end, dots, qe, spaced, class, k) {
            Split::No => {}
            Split::After => {
                self.emit(q);
                self.begin(q);
            }
            Split::AfterFirst => {
                self.emit(i + 1);
                self.begin(i + 1);
            }
        }
        q
    }

    fn classify(&self, k: usize) -> Class {
        let Some(&c) = self.b.get(k) else {
            return Class::Other;
        };
        if c.is_ascii_lowercase() {
            Class::Lower
        } else if c.is_ascii_uppercase() {
            Class::Upper
        } else if c.is_ascii_digit() {
            Class::Digit
        } else if matches!(
            c,
            b'/' | b',' | b';' | b':' | b'%' | b')' | b']' | b'}' | b'=' | b'+' | b'<' | b'>' | b'|' | b'&'
        ) {
            // Punctuation that continues a sentence: "February 7. /TASS/", "No. , 5".
            Class::Lower
        } else if c >= 0x80 {
            // `k` is at a char boundary: it follows ASCII bytes or whole multi-byte characters.
            match self.text.get(k..).and_then(|s| s.chars().next()) {
                Some(ch) if ch.is_lowercase() => Class::Lower,
                Some(ch) if ch.is_uppercase() => Class::Upper,
                Some(ch) if ch.is_numeric() => Class::Digit,
                Some(ch) if ch.is_alphabetic() => Class::Upper,
                _ => Class::Other,
            }
        } else {
            Class::Other
        }
    }

    /// Is the word at `k` a common sentence starter ("The", "He", "How", ...)?
    fn starter_at(&self, k: usize) -> bool {
        let b = self.b;
        let mut e = k;
        while e < b.len() && b[e].is_ascii_alphabetic() && e - k < 12 {
            e += 1;
        }
        is_sentence_starter(&b[k..e])
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(&self, i: usize, cluster_end: usize, dots: u32, qe: bool, spaced: bool, class: Class, k: usize) -> Split {
        let b = self.b;
        if class == Class::Lower {
            return Split::No;
        }
        if qe {
            return Split::After;
        }
        let attached = i > 0 && space_len(b, i - 1) == 0 && !(i >= 2 && b[i - 2] == 0xC2 && b[i - 1] == 0xA0);
        if dots >= 2 {
            // "[...]" marks an omission inside a quotation.
            if i > 0 && b[i - 1] == b'[' && b.get(cluster_end) == Some(&b']') {
                return Split::No;
            }
            if spaced {
                // ". . ." is an omission inside the sentence; a fourth dot is the period.
                return if dots < 4 {
                    Split::No
                } else if attached && b.get(i + 1) == Some(&b' ') {
                    Split::AfterFirst
                } else {
                    Split::After
                };
            }
            return Split::After;
        }
        if i == self.marker_dot {
            return Split::No;
        }
        // The token before the period, without leading quotes, brackets, bullets, dashes.
        // The token stops at a blank or at ASCII punctuation other than . ' & ("D-Mass", "(Mr").
        let stops = |c: u8| is_blank(c) || (c.is_ascii_punctuation() && !matches!(c, b'.' | b'\'' | b'&'));
        let mut s = i;
        while s > 0 && !stops(b[s - 1]) && i - s < MAX_TOKEN {
            s -= 1;
        }
        if s > 0 && !stops(b[s - 1]) {
            return Split::After; // a very long token: a URL, a number, ... not an abbreviation
        }
        while s < i {
            let l = opener_len(b, s) + bullet_len(b, s) + dash_len(b, s);
            if l == 0 {
                break;
            }
            s += l;
        }
        if s >= i {
            return Split::After;
        }
        let tok = &b[s..i];
        let mut lower = [0u8; MAX_TOKEN];
        let lower = &mut lower[..tok.len()];
        lower.copy_from_slice(tok);
        lower.make_ascii_lowercase();
        let starter_rule = || match class {
            Class::Digit => Split::No,
            Class::Upper if !self.starter_at(k) => Split::No,
            _ => Split::After,
        };
        match abbreviation(lower) {
            Some(Abbrev::Connective) => return Split::No,
            Some(Abbrev::Prepositive) => {
                return match class {
                    Class::Upper if self.starter_at(k) => Split::After,
                    _ => Split::No,
                };
            }
            Some(Abbrev::Numeric) if class == Class::Digit => return Split::No,
            Some(Abbrev::Other) => return starter_rule(),
            _ => {}
        }
        if (tok.len() == 1 && tok[0].is_ascii_alphabetic()) || is_dotted_abbrev(tok) {
            // Initials ("Jonas E. Smith"), "p. 55", "U.S. Government" vs "the U.S. How".
            return starter_rule();
        }
        Split::After
    }
}
