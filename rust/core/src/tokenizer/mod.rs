//! WordPiece tokenization (BERT-style), ids only.
//!
//! The surface other modules rely on:
//! - `Tokenizer::from_file(path, lowercase: Option<bool>) -> Result<Tokenizer>`: a `vocab.txt` (one
//!   token per line) or a `tokenizer.json` (HF, WordPiece model). `lowercase=None` means: from the
//!   tokenizer.json's normalizer, or `true` for a vocab.txt. Errors name the file: missing
//!   [CLS]/[SEP]/[MASK]/[UNK] (and which), unreadable file, unsupported tokenizer.json pipeline.
//! - `encode_into(&self, text, out: &mut Vec<u32>)`: appends ids, equal id-for-id to HF
//!   `tokenizers` BertWordPieceTokenizer / the tokenizer.json pipeline without special tokens.
//! - `vocab_size()`, `specials() -> SpecialIds`, `token(id) -> &str`, `is_continuation(id)` (a `##`
//!   piece; used by whole-word masking), `decode(ids) -> String`, `info() -> TokenizerInfo`.
//!
//! Two pipelines are supported, the only ones bertkit writes or reads:
//! - BERT: `BertNormalizer` + `BertPreTokenizer` + WordPiece (`##`), what a `vocab.txt` means;
//! - ELC-BERT: no normalizer, `Sequence[ByteLevel(add_prefix_space, use_regex), Digits(individual)]`
//!   + WordPiece with an empty continuing-subword prefix.
//!
//! As in HF, the special tokens of the vocabulary (`added_tokens` of a tokenizer.json; `[PAD]`,
//! `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]` of a vocab.txt) are matched in the raw text first (longest
//! at the leftmost position, case-sensitive) and the text between them goes through the pipeline.
//!
//! Where this differs from HF on purpose: a vocab.txt with a duplicate token maps that token to its
//! last line (as HF does), but ids are line numbers, so `vocab_size()` counts lines (HF counts
//! distinct tokens) and `token(id)` returns the line (HF returns nothing for the shadowed id).

mod bert;
mod bytelevel;
mod wordpiece;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use bert::{BertOptions, BertPipeline};
use bytelevel::ByteLevelPipeline;
use wordpiece::WordPiece;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

/// Identity of a tokenizer, recorded in the dataset manifest.
#[derive(Clone, Debug, Serialize)]
pub struct TokenizerInfo {
    pub kind: String,
    pub source: String,
    pub vocab_sha256: String,
    pub vocab_size: usize,
    pub lowercase: bool,
    /// The effective value (`null` in a tokenizer.json resolved to `lowercase`).
    pub strip_accents: Option<bool>,
    pub continuing_subword_prefix: String,
    pub special_tokens: BTreeMap<String, u32>,
    pub special_ids: SpecialIds,
    /// `"bert"` (BertNormalizer + BertPreTokenizer) or `"byte_level"` (ELC-BERT style).
    pub pipeline: String,
    pub max_input_chars_per_word: usize,
}

// One per tokenizer, never moved around: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Pipeline {
    Bert(BertPipeline),
    ByteLevel(ByteLevelPipeline),
}

/// Tokens matched in the raw text before the pipeline runs.
struct AddedTokens {
    first_byte: [bool; 256],
    /// Longest first, so the first match at a position is the longest.
    tokens: Vec<(Box<[u8]>, u32)>,
}

impl AddedTokens {
    fn new(tokens: impl IntoIterator<Item = (String, u32)>) -> AddedTokens {
        let mut added = AddedTokens { first_byte: [false; 256], tokens: Vec::new() };
        for (token, id) in tokens {
            if let Some(&b) = token.as_bytes().first() {
                added.first_byte[b as usize] = true;
                added.tokens.push((token.into_bytes().into(), id));
            }
        }
        added.tokens.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        added
    }

    #[inline]
    fn match_at(&self, rest: &[u8]) -> Option<(usize, u32)> {
        self.tokens.iter().find(|(t, _)| rest.starts_with(t)).map(|(t, id)| (t.len(), *id))
    }
}

pub struct Tokenizer {
    tokens: Vec<String>,
    wordpiece: WordPiece,
    pipeline: Pipeline,
    added: AddedTokens,
    continuation: Vec<bool>,
    info: TokenizerInfo,
}

const BERT_SPECIALS: [&str; 4] = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"];

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Everything `Tokenizer::build` needs, whatever the file was.
struct Parts {
    tokens: Vec<String>,
    prefix: String,
    unk_token: String,
    max_chars: usize,
    /// `None` for the byte-level pipeline.
    bert: Option<BertOptions>,
    /// Added tokens matched in raw text, and whether they are special.
    added: Vec<(String, u32, bool)>,
}

impl Tokenizer {
    pub fn from_file(path: &Path, lowercase: Option<bool>) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).at(path)?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parts =
            if is_json { parse_json(path, &bytes, lowercase)? } else { parse_vocab_txt(path, &bytes, lowercase)? };
        Tokenizer::build(path, parts)
    }

    fn build(path: &Path, parts: Parts) -> Result<Tokenizer> {
        let Parts { tokens, prefix, unk_token, max_chars, bert, added } = parts;
        // Later ids win on duplicates (HF's HashMap insert order).
        let mut index: rustc_hash::FxHashMap<&str, u32> = Default::default();
        for (id, t) in tokens.iter().enumerate() {
            index.insert(t.as_str(), id as u32);
        }
        let mut missing = Vec::new();
        let mut find = |t: &str| match index.get(t) {
            Some(&id) => id,
            None => {
                missing.push(t.to_string());
                0
            }
        };
        let unk = find(&unk_token);
        let [pad, cls, sep, mask] = BERT_SPECIALS.map(&mut find);
        if !missing.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "missing special token{} {} (a WordPiece vocabulary for bertkit needs {unk_token}, [CLS], [SEP], [MASK] and [PAD])",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", ")
                ),
            ));
        }
        let specials = SpecialIds { pad, unk, cls, sep, mask };
        let mut special_tokens = BTreeMap::new();
        for (t, id) in [(unk_token.as_str(), unk), ("[PAD]", pad), ("[CLS]", cls), ("[SEP]", sep), ("[MASK]", mask)] {
            special_tokens.insert(t.to_string(), id);
        }
        for (t, id, special) in &added {
            if *special {
                special_tokens.insert(t.clone(), *id);
            }
        }

        let mut hasher = Sha256::new();
        for t in &tokens {
            hasher.update(t.as_bytes());
            hasher.update(b"\n");
        }
        let vocab_sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();

        let continuation = tokens.iter().map(|t| !prefix.is_empty() && t.starts_with(&prefix)).collect();
        let wordpiece = WordPiece::new(&tokens, &prefix, unk, max_chars);
        let (pipeline, lowercase, strip_accents, name) = match bert {
            Some(o) => (Pipeline::Bert(BertPipeline::new(o)), o.lowercase, Some(o.strip_accents), "bert"),
            None => (Pipeline::ByteLevel(ByteLevelPipeline::new()), false, Some(false), "byte_level"),
        };
        let info = TokenizerInfo {
            kind: "wordpiece".into(),
            source: file_name(path),
            vocab_sha256,
            vocab_size: tokens.len(),
            lowercase,
            strip_accents,
            continuing_subword_prefix: prefix,
            special_tokens,
            special_ids: specials,
            pipeline: name.into(),
            max_input_chars_per_word: max_chars,
        };
        Ok(Tokenizer {
            added: AddedTokens::new(added.into_iter().map(|(t, id, _)| (t, id))),
            tokens,
            wordpiece,
            pipeline,
            continuation,
            info,
        })
    }

    /// The pipeline on text that holds no added token.
    #[inline]
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        match &self.pipeline {
            Pipeline::Bert(p) => p.encode(&self.wordpiece, text, out),
            Pipeline::ByteLevel(p) => p.encode(&self.wordpiece, text, out),
        }
    }

    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        let mut last = 0;
        let mut i = 0;
        while i < bytes.len() {
            if self.added.first_byte[bytes[i] as usize] {
                if let Some((len, id)) = self.added.match_at(&bytes[i..]) {
                    // Added tokens are valid UTF-8, so `i` and `i + len` are char boundaries.
                    self.encode_plain(&text[last..i], out);
                    out.push(id);
                    i += len;
                    last = i;
                    continue;
                }
            }
            i += 1;
        }
        self.encode_plain(&text[last..], out);
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut v = Vec::new();
        self.encode_into(text, &mut v);
        v
    }

    /// Encodes every text on a rayon pool of `threads` threads built for this call (0: one per
    /// core), in order. No global pool is touched, so this is safe after a fork.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], threads: usize) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::config(format!("cannot start {threads} tokenizer threads: {e}")))?;
        Ok(pool.install(|| texts.par_iter().with_min_len(64).map(|t| self.encode(t.as_ref())).collect()))
    }

    /// Number of ids (lines of a vocab.txt, entries of a tokenizer.json vocab).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn specials(&self) -> SpecialIds {
        self.info.special_ids
    }

    /// The token of `id`; `""` when `id` is out of range (see `token_checked`).
    pub fn token(&self, id: u32) -> &str {
        self.token_checked(id).unwrap_or("")
    }

    pub fn token_checked(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Id of a whole token, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.wordpiece.lookup(token.as_bytes())
    }

    /// Whether `id` is a continuation piece (starts with the `##` prefix). Always false with an
    /// empty prefix (ELC style), where a token's id does not tell.
    pub fn is_continuation(&self, id: u32) -> bool {
        self.continuation.get(id as usize).copied().unwrap_or(false)
    }

    /// Text of `ids`. BERT: pieces joined by spaces, continuation pieces glued on without their
    /// prefix (HF's WordPiece decoder without its cleanup). Byte-level: the bytes of the pieces
    /// (special tokens as written), decoded lossily. Out-of-range ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.pipeline {
            Pipeline::Bert(_) => {
                let prefix = &self.info.continuing_subword_prefix;
                let mut s = String::new();
                for (n, t) in ids.iter().filter_map(|&i| self.token_checked(i)).enumerate() {
                    match t.strip_prefix(prefix.as_str()) {
                        Some(rest) if n > 0 && !prefix.is_empty() => s.push_str(rest),
                        _ => {
                            if n > 0 {
                                s.push(' ');
                            }
                            s.push_str(t);
                        }
                    }
                }
                s
            }
            Pipeline::ByteLevel(_) => {
                let mut bytes = Vec::new();
                for &id in ids {
                    let Some(t) = self.token_checked(id) else {
                        continue;
                    };
                    if self.info.special_tokens.get(t) == Some(&id) {
                        bytes.extend_from_slice(t.as_bytes());
                    } else {
                        ByteLevelPipeline::unmap(t, &mut bytes);
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    pub fn info(&self) -> TokenizerInfo {
        self.info.clone()
    }
}

/// `vocab.txt`: one token per line, id = line number, trailing whitespace trimmed (as HF does).
fn parse_vocab_txt(path: &Path, bytes: &[u8], lowercase: Option<bool>) -> Result<Parts> {
    let mut tokens = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if !bytes.is_empty() {
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = std::str::from_utf8(line).map_err(|e| {
                Error::input(path, n as u64 + 1, format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()))
            })?;
            tokens.push(line.trim_end().to_string());
        }
    }
    if tokens.len() > u32::MAX as usize {
        return Err(Error::format(path, "more than 2^32 tokens"));
    }
    let lowercase = lowercase.unwrap_or(true);
    let specials = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"];
    let added = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| specials.contains(&t.as_str()))
        .map(|(id, t)| (t.clone(), id as u32, true))
        .collect();
    Ok(Parts {
        tokens,
        prefix: "##".into(),
        unk_token: "[UNK]".into(),
        max_chars: 100,
        bert: Some(BertOptions { clean_text: true, handle_chinese_chars: true, strip_accents: lowercase, lowercase }),
        added,
    })
}

fn type_of(v: &Value) -> String {
    match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        _ => v.to_string(),
    }
}

fn get_bool(v: &Value, key: &str, default: bool) -> std::result::Result<bool, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("{key} must be a boolean, found {other}")),
    }
}

/// Why the ids of a tokenizer.json's vocab are not 0..n: most often a special token was deleted (name it),
/// otherwise the first missing id.
fn vocab_gap_message(model: &Value, vocab: &serde_json::Map<String, Value>, token: &str, id: u64) -> String {
    let unk = model.get("unk_token").and_then(Value::as_str).unwrap_or("[UNK]");
    let missing: Vec<&str> = [unk].into_iter().chain(BERT_SPECIALS).filter(|t| !vocab.contains_key(*t)).collect();
    if !missing.is_empty() {
        return format!(
            "missing special token{} {} in the vocab (a WordPiece vocabulary for bertkit needs {unk}, [CLS], [SEP], \
             [MASK] and [PAD]; its ids now have a gap)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        );
    }
    let mut present = vec![false; vocab.len()];
    for v in vocab.values() {
        if let Some(x) = v.as_u64().and_then(|x| present.get_mut(x as usize)) {
            *x = true;
        }
    }
    let gap = present.iter().position(|p| !p).unwrap_or(0);
    format!("vocab ids must be 0..{} without gaps: no token has id {gap} ({token:?} has id {id})", vocab.len())
}

/// HF `tokenizer.json` with a WordPiece model and one of the two supported pipelines.
fn parse_json(path: &Path, bytes: &[u8], lowercase: Option<bool>) -> Result<Parts> {
    let fail = |m: String| Error::format(path, m);
    let root: Value = serde_json::from_slice(bytes).map_err(|e| fail(format!("not a valid tokenizer.json: {e}")))?;
    let model = root
        .get("model")
        .filter(|m| m.is_object())
        .ok_or_else(|| fail("not a tokenizer.json: no \"model\" object".into()))?;
    let model_type = type_of(model);
    if model_type != "WordPiece" {
        return Err(fail(format!("unsupported model type {model_type:?}: bertkit reads WordPiece tokenizers only")));
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| fail("WordPiece model without a \"vocab\" object".into()))?;
    let mut slots: Vec<Option<String>> = vec![None; vocab.len()];
    for (token, id) in vocab {
        let id = id.as_u64().ok_or_else(|| fail(format!("vocab id of {token:?} is not an integer: {id}")))?;
        let Some(slot) = slots.get_mut(id as usize) else {
            return Err(fail(vocab_gap_message(model, vocab, token, id)));
        };
        if let Some(other) = slot.replace(token.clone()) {
            return Err(fail(format!("tokens {other:?} and {token:?} share id {id}")));
        }
    }
    let tokens: Vec<String> = slots.into_iter().map(Option::unwrap_or_default).collect();
    let str_field = |key: &str, default: &str| -> Result<String> {
        match model.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(fail(format!("model.{key} must be a string, found {v}"))),
        }
    };
    let unk_token = str_field("unk_token", "[UNK]")?;
    let prefix = str_field("continuing_subword_prefix", "##")?;
    let max_chars = match model.get("max_input_chars_per_word") {
        None | Some(Value::Null) => 100,
        Some(v) => {
            v.as_u64().ok_or_else(|| fail(format!("model.max_input_chars_per_word must be an integer, found {v}")))?
                as usize
        }
    };

    let normalizer = root.get("normalizer").unwrap_or(&Value::Null);
    let bert_norm = match normalizer {
        Value::Null => None,
        n if type_of(n) == "BertNormalizer" => {
            let l = lowercase.map_or_else(|| get_bool(n, "lowercase", true), Ok);
            let l = l.map_err(|m| fail(format!("normalizer: {m}")))?;
            let strip = get_bool(n, "strip_accents", l).map_err(|m| fail(format!("normalizer: {m}")))?;
            let clean = get_bool(n, "clean_text", true).map_err(|m| fail(format!("normalizer: {m}")))?;
            let cjk = get_bool(n, "handle_chinese_chars", true).map_err(|m| fail(format!("normalizer: {m}")))?;
            Some(BertOptions { clean_text: clean, handle_chinese_chars: cjk, strip_accents: strip, lowercase: l })
        }
        n => {
            return Err(fail(format!("unsupported normalizer {}: bertkit supports BertNormalizer or none", type_of(n))))
        }
    };
    let pre = root.get("pre_tokenizer").unwrap_or(&Value::Null);
    let bert = match type_of(pre).as_str() {
        "BertPreTokenizer" => Some(bert_norm.unwrap_or(BertOptions {
            clean_text: false,
            handle_chinese_chars: false,
            strip_accents: false,
            lowercase: false,
        })),
        "Sequence" if is_elc_pre_tokenizer(pre) => {
            if bert_norm.is_some() {
                return Err(fail(
                    "unsupported pipeline: BertNormalizer with the ByteLevel+Digits pre-tokenizer".into(),
                ));
            }
            if lowercase == Some(true) {
                return Err(fail(
                    "lowercase=True is not supported: this ByteLevel tokenizer has no normalizer".into(),
                ));
            }
            None
        }
        _ => {
            return Err(fail(format!(
                "unsupported pre_tokenizer {pre}: bertkit supports BertPreTokenizer, or Sequence[ByteLevel(add_prefix_space=true, use_regex=true), Digits(individual_digits=true)]"
            )))
        }
    };

    let mut added = Vec::new();
    if let Some(list) = root.get("added_tokens").and_then(Value::as_array) {
        for a in list {
            let content = a.get("content").and_then(Value::as_str).unwrap_or_default();
            let id = a.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX);
            if tokens.get(id as usize).map(String::as_str) != Some(content) {
                return Err(fail(format!(
                    "added token {content:?} (id {id}) is not the vocabulary's token of that id; added tokens outside the WordPiece vocab are not supported"
                )));
            }
            for key in ["single_word", "lstrip", "rstrip", "normalized"] {
                if get_bool(a, key, false).map_err(|m| fail(format!("added token {content:?}: {m}")))? {
                    return Err(fail(format!(
                        "added token {content:?} has {key}=true, which bertkit does not support"
                    )));
                }
            }
            let special = get_bool(a, "special", false).map_err(|m| fail(format!("added token {content:?}: {m}")))?;
            added.push((content.to_string(), id as u32, special));
        }
    }
    Ok(Parts { tokens, prefix, unk_token, max_chars, bert, added })
}

fn is_elc_pre_tokenizer(pre: &Value) -> bool {
    let Some([byte_level, digits]) = pre.get("pretokenizers").and_then(Value::as_array).map(Vec::as_slice) else {
        return false;
    };
    type_of(byte_level) == "ByteLevel"
        && get_bool(byte_level, "add_prefix_space", true) == Ok(true)
        && get_bool(byte_level, "use_regex", true) == Ok(true)
        && type_of(digits) == "Digits"
        && get_bool(digits, "individual_digits", false) == Ok(true)
}

#[cfg(test)]
mod tests;
