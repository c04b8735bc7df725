//! Reading corpora into documents. OWNER: reader helper.
//!
//! CONTRACT:
//! - `expand_inputs(specs) -> Result<Vec<PathBuf>>`: files as given, directories recursively (sorted,
//!   hidden files skipped), globs (sorted); a spec that matches nothing is an error naming it.
//! - `DocumentReader::new(files, cfg)`, then `next_batch(max_bytes, out)` appends whole documents
//!   (in input order) until their text reaches `max_bytes` or the input ends; returns Ok(false) once
//!   nothing more is left. Memory is bounded by the batch (plus one document).
//! - Formats: plain text (blank line ends a document; `OneDocPerLine`; `SentencesPerLine` = Google's
//!   one sentence per line with blank lines between documents: the document text keeps the line
//!   breaks and prepare uses the `lines` splitter), `.jsonl` (one JSON object per line, text in
//!   `cfg.text_field`), and `.gz` of either (by extension). CRLF / CR / mixed newlines work.
//! - UTF-8 policy per `cfg.on_invalid_utf8`: Error (names file and byte offset), Replace (U+FFFD),
//!   Skip (drop the line; counted). Empty/whitespace-only documents are dropped and counted.
//!   Binary files (NUL-heavy) are an error naming the file.
//! - `skipped()` returns counts by reason; `bytes_read()` returns input bytes consumed so far.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocMode {
    BlankLine,
    OneDocPerLine,
    SentencesPerLine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidUtf8 {
    Error,
    Replace,
    Skip,
}

#[derive(Clone, Debug)]
pub struct ReaderConfig {
    pub doc_mode: DocMode,
    pub text_field: String,
    pub on_invalid_utf8: InvalidUtf8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Index of the input file in the expanded list.
    pub source: u32,
    pub text: String,
}

pub fn expand_inputs(_specs: &[String]) -> Result<Vec<PathBuf>> {
    unimplemented!("reader helper")
}

pub struct DocumentReader {}

impl DocumentReader {
    pub fn new(_files: Vec<PathBuf>, _cfg: ReaderConfig) -> Self {
        unimplemented!()
    }
    pub fn next_batch(&mut self, _max_bytes: usize, _out: &mut Vec<Document>) -> Result<bool> {
        unimplemented!()
    }
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        unimplemented!()
    }
    pub fn bytes_read(&self) -> u64 {
        unimplemented!()
    }
}
