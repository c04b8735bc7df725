//! WordPiece tokenization (BERT-style), ids only. OWNER: tokenizer helper.
//!
//! CONTRACT (other modules rely on exactly this surface):
//! - `Tokenizer::from_file(path, lowercase: Option<bool>) -> Result<Tokenizer>`: a `vocab.txt` (one
//!   token per line) or a `tokenizer.json` (HF, WordPiece model). `lowercase=None` means: from the
//!   tokenizer.json's normalizer, or `true` for a vocab.txt. Errors name the file: missing
//!   [CLS]/[SEP]/[MASK]/[UNK] (and which), unreadable file, unsupported tokenizer.json pipeline.
//! - `encode_into(&self, text, out: &mut Vec<u32>)`: appends ids, equal id-for-id to HF
//!   `tokenizers` BertWordPieceTokenizer / the tokenizer.json pipeline without special tokens.
//! - `vocab_size()`, `specials() -> SpecialIds`, `token(id) -> &str`, `is_continuation(id)` (a `##`
//!   piece; used by whole-word masking), `decode(ids) -> String`, `info() -> TokenizerInfo`.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;

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
    pub strip_accents: Option<bool>,
    pub continuing_subword_prefix: String,
    pub special_tokens: std::collections::BTreeMap<String, u32>,
    pub special_ids: SpecialIds,
}

pub struct Tokenizer {}

impl Tokenizer {
    pub fn from_file(_path: &Path, _lowercase: Option<bool>) -> Result<Tokenizer> {
        unimplemented!("tokenizer helper")
    }
    pub fn encode_into(&self, _text: &str, _out: &mut Vec<u32>) {
        unimplemented!()
    }
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut v = Vec::new();
        self.encode_into(text, &mut v);
        v
    }
    pub fn vocab_size(&self) -> usize {
        unimplemented!()
    }
    pub fn specials(&self) -> SpecialIds {
        unimplemented!()
    }
    pub fn token(&self, _id: u32) -> &str {
        unimplemented!()
    }
    pub fn is_continuation(&self, _id: u32) -> bool {
        unimplemented!()
    }
    pub fn decode(&self, _ids: &[u32]) -> String {
        unimplemented!()
    }
    pub fn info(&self) -> TokenizerInfo {
        unimplemented!()
    }
}
