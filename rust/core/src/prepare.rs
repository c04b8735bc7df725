//! `bertkit prepare`: read → split → tokenize → corpus shards → optional static instances → manifest.
//!
//! Streaming with bounded memory: the reader hands over one shard's worth of documents at a time
//! (`shard_size` bytes of text), which are processed in parallel on the caller's rayon pool and
//! written as one corpus shard. Shard boundaries depend only on the input and `shard_size`, and all
//! randomness is keyed by (seed, purpose, index), so the output is byte-identical for any thread
//! count. Every shard is published with its record (`shards/<name>.json`) after its files are in
//! place; `manifest.json` is written last. An interrupted run leaves no manifest and `resume`
//! continues from the completed shards.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::corpus::{CorpusView, MmapCorpus};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    hash_file, write_atomic, write_npy, write_tokens, write_tokens_parts, DType, InputFile, Manifest, Shard, Totals,
    FORMAT_NAME, FORMAT_VERSION, MANIFEST, SHARD_DIR,
};
use crate::instances::{self, MaskVocab, NspConfig};
use crate::progress::Progress;
use crate::reader::{
    expand_inputs_noting_duplicates, is_stream, split_row_groups, DocMode, Document, DocumentReader, InvalidUtf8,
    ReaderConfig, TextSource,
};
use crate::splitter::{split_sentences, SplitterKind, RULES_VERSION};
use crate::tokenizer::Tokenizer;

/// Everything `prepare` needs; recorded in the manifest as `config`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Files, directories or globs.
    pub inputs: Vec<String>,
    pub out: String,
    /// A `vocab.txt` or a `tokenizer.json`.
    pub tokenizer: String,
    /// Override the tokenizer's lower-casing (None: the tokenizer's own setting).
    pub lowercase: Option<bool>,
    /// `blank-line`, `one-doc-per-line` or `sentences-per-line`.
    pub doc_mode: String,
    /// JSONL field holding the text.
    pub text_field: String,
    /// `error`, `replace` or `skip`.
    pub on_invalid_utf8: String,
    /// `rules`, `lines` or `none` (forced to `lines` by `sentences-per-line`).
    pub splitter: String,
    /// Worker threads (0: all cores). Not part of the output's identity.
    pub threads: usize,
    /// Bytes of input text per corpus shard.
    pub shard_size: usize,
    /// Static instances to build: any of `nsp`, `mlm`, `chunks`.
    pub instances: Vec<String>,
    pub seed: u64,
    /// NSP (Google) parameters.
    pub max_seq_length: usize,
    pub max_predictions_per_seq: usize,
    pub masked_lm_prob: f64,
    pub short_seq_prob: f64,
    pub dupe_factor: u32,
    pub whole_word_mask: bool,
    pub fix_quirks: bool,
    /// Packed MLM sequence length (defaults to max_seq_length when 0).
    pub mlm_seq_len: usize,
    /// NextLevelBERT chunk size in tokens (0 = one sentence per chunk).
    pub chunk_size: usize,
    /// A token (e.g. `[PAR]`) appended to the last sentence of every paragraph (a line of a
    /// document), as ltgoslo/elc-bert `preprocess/segment.py` does; empty = none. Sentences are then
    /// split per paragraph, so none crosses a line break.
    pub paragraph_token: String,
    /// `""` (none) or `nanobert`: drop every character outside `[a-zA-Z0-9\s,.!?'"-]` before
    /// splitting and tokenizing (my-best-day/medium `scripts/tokenize_text.py`).
    pub text_filter: String,
    pub overwrite: bool,
    pub resume: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            inputs: vec![],
            out: String::new(),
            tokenizer: String::new(),
            lowercase: None,
            doc_mode: "blank-line".into(),
            text_field: "text".into(),
            on_invalid_utf8: "error".into(),
            splitter: "rules".into(),
            threads: 0,
            shard_size: 64 << 20,
            instances: vec![],
            seed: 12345,
            max_seq_length: 128,
            max_predictions_per_seq: 20,
            masked_lm_prob: 0.15,
            short_seq_prob: 0.1,
            dupe_factor: 10,
            whole_word_mask: false,
            fix_quirks: false,
            mlm_seq_len: 0,
            chunk_size: 256,
            paragraph_token: String::new(),
            text_filter: String::new(),
            overwrite: false,
            resume: false,
        }
    }
}

impl PrepareConfig {
    fn doc_mode(&self) -> Result<DocMode> {
        Ok(match self.doc_mode.as_str() {
            "blank-line" => DocMode::BlankLine,
            "one-doc-per-line" => DocMode::OneDocPerLine,
            "sentences-per-line" => DocMode::SentencesPerLine,
            o => {
                return Err(Error::config(format!(
                    "unknown document mode {o:?} (blank-line, one-doc-per-line, sentences-per-line)"
                )))
            }
        })
    }
    fn invalid_utf8(&self) -> Result<InvalidUtf8> {
        Ok(match self.on_invalid_utf8.as_str() {
            "error" => InvalidUtf8::Error,
            "replace" => InvalidUtf8::Replace,
            "skip" => InvalidUtf8::Skip,
            o => return Err(Error::config(format!("unknown --on-invalid-utf8 policy {o:?} (error, replace, skip)"))),
        })
    }
    fn splitter_kind(&self) -> Result<SplitterKind> {
        if self.doc_mode == "sentences-per-line" {
            return Ok(SplitterKind::Lines);
        }
        SplitterKind::parse(&self.splitter)
            .ok_or_else(|| Error::config(format!("unknown splitter {:?} (rules, lines, none)", self.splitter)))
    }
    fn mlm_len(&self) -> usize {
        if self.mlm_seq_len == 0 {
            self.max_seq_length
        } else {
            self.mlm_seq_len
        }
    }
    fn nsp(&self) -> NspConfig {
        NspConfig {
            max_seq_length: self.max_seq_length,
            max_predictions_per_seq: self.max_predictions_per_seq,
            masked_lm_prob: self.masked_lm_prob,
            short_seq_prob: self.short_seq_prob,
            dupe_factor: self.dupe_factor,
            whole_word_mask: self.whole_word_mask,
            fix_quirks: self.fix_quirks,
            seed: self.seed,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::config("no input files given"));
        }
        if self.out.is_empty() {
            return Err(Error::config("no output directory given (--out)"));
        }
        if self.tokenizer.is_empty() {
            return Err(Error::config("no tokenizer given (--tokenizer vocab.txt or tokenizer.json)"));
        }
        self.doc_mode()?;
        self.invalid_utf8()?;
        self.splitter_kind()?;
        for k in &self.instances {
            if !["nsp", "mlm", "chunks"].contains(&k.as_str()) {
                return Err(Error::config(format!("unknown instance kind {k:?} (nsp, mlm, chunks)")));
            }
        }
        if self.max_seq_length < 8 || self.max_seq_length > 65_535 {
            return Err(Error::config(format!("max_seq_length {} must be within 8..=65535", self.max_seq_length)));
        }
        if self.mlm_len() < 3 || self.mlm_len() > 65_535 {
            return Err(Error::config(format!("mlm_seq_len {} must be within 3..=65535", self.mlm_len())));
        }
        if !(0.0..=1.0).contains(&self.masked_lm_prob) || !(0.0..=1.0).contains(&self.short_seq_prob) {
            return Err(Error::config("masked_lm_prob and short_seq_prob must be within [0, 1]"));
        }
        if self.dupe_factor == 0 && self.instances.iter().any(|k| k == "nsp") {
            return Err(Error::config("dupe_factor must be at least 1"));
        }
        if self.chunk_size == 1 || self.chunk_size == 2 {
            return Err(Error::config("chunk_size must be 0 (sentence chunks) or at least 3"));
        }
        if !["", "nanobert"].contains(&self.text_filter.as_str()) {
            return Err(Error::config(format!(
                "unknown text filter {:?} (nanobert, or empty for none)",
                self.text_filter
            )));
        }
        if self.shard_size < 1024 {
            return Err(Error::config("shard_size must be at least 1024 bytes"));
        }
        Ok(())
    }

    /// The id of `paragraph_token` in `tok` (None when no paragraph token is asked for).
    fn paragraph_id(&self, tok: &Tokenizer) -> Result<Option<u32>> {
        if self.paragraph_token.is_empty() {
            return Ok(None);
        }
        match tok.token_to_id(&self.paragraph_token) {
            Some(id) => Ok(Some(id)),
            None => Err(Error::config(format!(
                "{}: the tokenizer has no token {:?} (--paragraph-token); train it with `bertkit tokenizer train \
                 --style elc` (which defines [PAR] and [TAB]) or leave the option out",
                self.tokenizer, self.paragraph_token
            ))),
        }
    }

    /// The part of the config that determines the output (resume must match it exactly).
    fn identity(&self) -> serde_json::Value {
        let mut c = self.clone();
        c.threads = 0;
        c.overwrite = false;
        c.resume = false;
        serde_json::to_value(c).expect("config serializes")
    }
}

/// What `prepare` returns.
#[derive(Clone, Debug, Serialize)]
pub struct PrepareSummary {
    pub out: String,
    pub totals: Totals,
    pub shards: usize,
    pub input_bytes: u64,
    pub resumed_shards: usize,
    pub seconds: f64,
    /// Things the user should know that are not errors (an input given twice, read once).
    pub notes: Vec<String>,
}

const STATE: &str = "prepare.json";
/// The output lock `bertkit.locks.output_lock` holds while a writer runs (never part of a dataset).
const LOCK_FILE: &str = ".bertkit.lock";

fn shard_record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(SHARD_DIR).join(format!("{name}.json"))
}

/// A completed shard's record, if present and its files are all in place with the right sizes.
fn completed_shard(dir: &Path, name: &str) -> Option<Shard> {
    let text = fs::read_to_string(shard_record_path(dir, name)).ok()?;
    let shard: Shard = serde_json::from_str(&text).ok()?;
    let ok = shard.arrays.values().all(|a| fs::metadata(dir.join(&a.path)).map(|m| m.len() == a.size).unwrap_or(false));
    ok.then_some(shard)
}

fn publish_shard(dir: &Path, shard: &Shard) -> Result<()> {
    let text = serde_json::to_string_pretty(shard).expect("shard serializes");
    write_atomic(&shard_record_path(dir, &shard.name), text.as_bytes())
}

/// Prepare the output directory: refuse to clobber a dataset, clean up for overwrite, check resume.
fn prepare_out_dir(cfg: &PrepareConfig, out: &Path) -> Result<()> {
    let has_manifest = out.join(MANIFEST).exists();
    let has_state = out.join(STATE).exists();
    if out.exists() && !out.is_dir() {
        return Err(Error::Exists { path: out.into(), message: "exists and is not a directory".into() });
    }
    if cfg.overwrite {
        // Remove only what bertkit wrote, manifest first so the directory never looks complete.
        for f in [MANIFEST, STATE] {
            let p = out.join(f);
            if p.exists() {
                fs::remove_file(&p).at(&p)?;
            }
        }
        for d in [SHARD_DIR, "tokenizer"] {
            let p = out.join(d);
            if p.exists() {
                fs::remove_dir_all(&p).at(&p)?;
            }
        }
    } else if has_manifest {
        return Err(Error::Exists {
            path: out.into(),
            message: "already holds a complete dataset (use --overwrite to replace it)".into(),
        });
    } else if has_state && !cfg.resume {
        return Err(Error::Exists {
            path: out.into(),
            message: "holds an incomplete dataset from an interrupted run (use --resume to finish it, or --overwrite)"
                .into(),
        });
    } else if !has_state && out.is_dir() && fs::read_dir(out).at(out)?.flatten().any(|e| e.file_name() != LOCK_FILE) {
        return Err(Error::Exists {
            path: out.into(),
            message: "exists, is not empty and is not a bertkit dataset (choose another --out)".into(),
        });
    }
    fs::create_dir_all(out.join(SHARD_DIR)).at(out)?;
    Ok(())
}

/// What `--resume` must find unchanged: the prepare options, the inputs (path, size, xxh3) and the tokenizer.
fn resume_state(cfg: &PrepareConfig, inputs: &[InputFile], tok: &Tokenizer) -> serde_json::Value {
    serde_json::json!({
        "config": cfg.identity(),
        "inputs": inputs,
        "tokenizer": serde_json::to_value(tok.info()).expect("tokenizer info serializes"),
    })
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Everything that differs between the interrupted run's state and this run's, one phrase each.
fn resume_differences(prev: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let empty = serde_json::Map::new();
    let obj = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_object()).cloned().unwrap_or(empty.clone());
    for (what, key) in [("option", "config"), ("tokenizer", "tokenizer")] {
        let (a, b) = (obj(prev, key), obj(now, key));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (x, y) = (a.get(k).unwrap_or(&serde_json::Value::Null), b.get(k).unwrap_or(&serde_json::Value::Null));
            if x != y {
                diffs.push(format!("{what} {k}: {} then, {} now", short(x), short(y)));
            }
        }
    }
    let files = |v: &serde_json::Value| -> Vec<InputFile> {
        v.get("inputs").and_then(|x| serde_json::from_value(x.clone()).ok()).unwrap_or_default()
    };
    let (a, b) = (files(prev), files(now));
    if prev.get("inputs").is_none() {
        diffs.push("the interrupted run recorded no input identities (an older bertkit)".into());
    }
    for f in &a {
        match b.iter().find(|g| g.path == f.path) {
            None => diffs.push(format!("input {} is no longer among the inputs", f.path)),
            Some(g) if g.size != f.size => {
                diffs.push(format!("input {} changed ({} bytes then, {} now)", f.path, f.size, g.size))
            }
            Some(g) if g.xxh3 != f.xxh3 => {
                diffs.push(format!("input {} changed (same size, xxh3 {} then, {} now)", f.path, f.xxh3, g.xxh3))
            }
            Some(_) => {}
        }
    }
    for g in b.iter().filter(|g| !a.iter().any(|f| f.path == g.path)) {
        diffs.push(format!("input {} is new", g.path));
    }
    if diffs.is_empty() && a.iter().map(|f| &f.path).ne(b.iter().map(|f| &f.path)) {
        diffs.push("the inputs are in another order".into());
    }
    diffs
}

/// `--resume` continues only the same job: refuse (listing every difference) when the options, an input or the
/// tokenizer changed since the interrupted run. Leftover temporary files of the killed run are removed.
fn check_resume(out: &Path, now: &serde_json::Value) -> Result<()> {
    let p = out.join(STATE);
    let prev: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).at(&p)?)
        .map_err(|e| Error::format(&p, format!("unreadable state: {e}")))?;
    let diffs = resume_differences(&prev, now);
    if !diffs.is_empty() {
        return Err(Error::config(format!(
            "{}: cannot resume: the interrupted run used different options or inputs ({}); use --overwrite to \
             start over",
            out.display(),
            diffs.join("; ")
        )));
    }
    remove_temporaries(out)
}

/// Remove `NAME.tmp-PID` files a killed writer left in `out` and `out/shards` (the output lock guarantees that
/// no other writer is running, so every such file is a leftover).
fn remove_temporaries(out: &Path) -> Result<()> {
    for dir in [out.to_path_buf(), out.join(SHARD_DIR), out.join("tokenizer")] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let leftover = name
                .rsplit_once(".tmp-")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if leftover && e.file_type().is_ok_and(|t| t.is_file()) {
                fs::remove_file(e.path()).at(e.path())?;
            }
        }
    }
    Ok(())
}

/// Tokens and sentence lengths of one or more consecutive documents.
#[derive(Default)]
struct DocOut {
    tokens: Vec<u32>,
    sentence_lens: Vec<u32>,
    /// Sentences of each document (0: the document had no token and is dropped).
    doc_sentences: Vec<u32>,
}

/// Text per parallel task of consecutive documents.
const TASK_BYTES: usize = 64 << 10;

/// Consecutive ranges of documents with about `bytes` of text each.
fn group_documents(docs: &[Document], bytes: usize) -> Vec<Range<usize>> {
    let mut tasks = Vec::new();
    let (mut start, mut acc) = (0usize, 0usize);
    for (i, d) in docs.iter().enumerate() {
        acc += d.text.len();
        if acc >= bytes {
            tasks.push(start..i + 1);
            (start, acc) = (i + 1, 0);
        }
    }
    if start < docs.len() {
        tasks.push(start..docs.len());
    }
    tasks
}

/// Documents at least this long are tokenized in parallel by groups of sentences, so that a few long
/// documents (books, a 200 MB line) do not leave the other workers idle.
const BIG_DOC: usize = 1 << 16;
const SENTENCES_PER_TASK: usize = 128;

/// Append one document's tokens and sentence lengths (and its sentence count) to `out`.
/// my-best-day/medium's text filter: `re.sub(r'[^a-zA-Z0-9\s,.!?\'"-]+', '', text)` (Python's `\s`
/// on str: Unicode whitespace and the separators U+001C..U+001F).
pub fn nanobert_filter(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || ('\u{1c}'..='\u{1f}').contains(&c)
                || matches!(c, ',' | '.' | '!' | '?' | '\'' | '"' | '-')
        })
        .collect()
}

/// Per-document text options of a run: the paragraph token's id and the character filter.
#[derive(Clone, Copy, Debug, Default)]
struct TextOptions {
    paragraph: Option<u32>,
    filter: bool,
}

fn process_document_into(doc: &Document, splitter: SplitterKind, tok: &Tokenizer, opts: TextOptions, out: &mut DocOut) {
    let paragraph = opts.paragraph;
    let filtered;
    let text: &str = if opts.filter {
        filtered = nanobert_filter(&doc.text);
        &filtered
    } else {
        &doc.text
    };
    let mut ranges = Vec::new();
    // Sentence ranges, and whether each one ends a paragraph (only with a paragraph token).
    let mut ends_par = Vec::new();
    if paragraph.is_some() {
        let mut part = Vec::new();
        let mut offset = 0usize;
        for line in text.split('\n') {
            split_sentences(splitter, line, &mut part);
            for (k, r) in part.iter().enumerate() {
                ranges.push(offset + r.start..offset + r.end);
                ends_par.push(k + 1 == part.len());
            }
            offset += line.len() + 1;
        }
    } else {
        split_sentences(splitter, text, &mut ranges);
    }
    let encode = |rs: &[Range<usize>], ends: &[bool], out: &mut DocOut| {
        let mut n_sent = 0u32;
        for (i, r) in rs.iter().enumerate() {
            let before = out.tokens.len();
            tok.encode_into(&text[r.clone()], &mut out.tokens);
            if let (Some(id), Some(true)) = (paragraph, ends.get(i)) {
                out.tokens.push(id);
            }
            let n = out.tokens.len() - before;
            if n > 0 {
                out.sentence_lens.push(n as u32);
                n_sent += 1;
            }
        }
        n_sent
    };
    if text.len() < BIG_DOC || ranges.len() <= SENTENCES_PER_TASK {
        let n = encode(&ranges, &ends_par, out);
        out.doc_sentences.push(n);
        return;
    }
    // A long document (a book, a 200 MB line): tokenize groups of sentences in parallel.
    let parts: Vec<(DocOut, u32)> = ranges
        .par_chunks(SENTENCES_PER_TASK)
        .enumerate()
        .map(|(k, rs)| {
            let mut part = DocOut::default();
            let first = k * SENTENCES_PER_TASK;
            let ends = ends_par.get(first..(first + rs.len()).min(ends_par.len())).unwrap_or(&[]);
            let n = encode(rs, ends, &mut part);
            (part, n)
        })
        .collect();
    let mut n_sent = 0;
    for (p, n) in parts {
        out.tokens.extend_from_slice(&p.tokens);
        out.sentence_lens.extend_from_slice(&p.sentence_lens);
        n_sent += n;
    }
    out.doc_sentences.push(n_sent);
}

/// The `MaskVocab` of a tokenizer: continuation pieces and special tokens.
pub fn mask_vocab(tok: &Tokenizer) -> MaskVocab {
    let sp = tok.specials();
    let n = tok.vocab_size();
    let mut is_continuation = vec![false; n];
    let mut is_special = vec![false; n];
    for id in 0..n as u32 {
        let t = tok.token(id);
        is_continuation[id as usize] = tok.is_continuation(id);
        is_special[id as usize] = t.len() > 2 && t.starts_with('[') && t.ends_with(']');
    }
    for id in [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask] {
        is_special[id as usize] = true;
    }
    MaskVocab {
        pad: sp.pad,
        cls: sp.cls,
        sep: sp.sep,
        mask: sp.mask,
        vocab_size: n as u32,
        is_continuation,
        is_special,
    }
}

fn arr(name: &str, kind: &str, index: usize) -> String {
    format!("{SHARD_DIR}/{kind}-{index:05}.{name}.npy")
}

fn check_cancel(progress: &Progress) -> Result<()> {
    if progress.cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// Run `prepare`. Call inside the rayon pool that should do the work.
///
/// On failure, completed shards stay (for `resume`) and no manifest is written; if nothing was
/// completed, what this call created is removed again.
pub fn prepare(cfg: &PrepareConfig, progress: &Progress) -> Result<PrepareSummary> {
    prepare_with(cfg, progress, None)
}

/// A source of documents read after the input files, and the name the manifest gives it.
pub type NamedSource = (Box<dyn TextSource>, String);

/// `prepare` with documents from `source` after those of `cfg.inputs` (which may then be empty).
pub fn prepare_with(cfg: &PrepareConfig, progress: &Progress, source: Option<NamedSource>) -> Result<PrepareSummary> {
    match &source {
        Some((_, name)) if cfg.inputs.is_empty() => {
            PrepareConfig { inputs: vec![name.clone()], ..cfg.clone() }.validate()?
        }
        _ => cfg.validate()?,
    }
    let out = PathBuf::from(&cfg.out);
    let existed = out.exists();
    let had_state = out.join(STATE).exists();
    let res = prepare_inner(cfg, progress, &out, source);
    if res.is_err() && !had_state && !out.join(MANIFEST).exists() {
        let any_shard = fs::read_dir(out.join(SHARD_DIR))
            .map(|mut it| it.any(|e| e.map(|e| e.path().extension().is_some_and(|x| x == "json")).unwrap_or(false)))
            .unwrap_or(false);
        if !any_shard && matches!(res, Err(ref e) if !matches!(e, Error::Exists { .. })) {
            if existed {
                let _ = fs::remove_file(out.join(STATE));
                let _ = fs::remove_dir_all(out.join(SHARD_DIR));
                let _ = fs::remove_dir_all(out.join("tokenizer"));
            } else {
                let _ = fs::remove_dir_all(&out);
            }
        }
    }
    res
}

fn prepare_inner(
    cfg: &PrepareConfig,
    progress: &Progress,
    out: &Path,
    source: Option<NamedSource>,
) -> Result<PrepareSummary> {
    let t0 = std::time::Instant::now();
    let out = out.to_path_buf();
    let tok_path = PathBuf::from(&cfg.tokenizer);
    let tok = Tokenizer::from_file(&tok_path, cfg.lowercase)?;
    cfg.paragraph_id(&tok)?;
    let (mut files, duplicates) = if cfg.inputs.is_empty() && source.is_some() {
        (vec![], vec![])
    } else {
        expand_inputs_noting_duplicates(&cfg.inputs)?
    };
    let notes: Vec<String> = duplicates
        .iter()
        .map(|(again, first)| {
            if again == first {
                format!("{} is given more than once: it is read once", first.display())
            } else {
                format!("{} is the same file as {}: it is read once", again.display(), first.display())
            }
        })
        .collect();
    // Standard input, FIFOs and iterables are read once: hashed while read, never resumed.
    let streams: Vec<bool> = files.iter().map(|f| is_stream(f)).chain(source.iter().map(|_| true)).collect();
    if cfg.resume {
        if let Some(i) = streams.iter().position(|&s| s) {
            let name = files.get(i).map(|f| f.display().to_string()).or(source.as_ref().map(|s| s.1.clone()));
            return Err(Error::config(format!(
                "--resume cannot be used with {}: a stream (standard input, a FIFO, an iterable) can be read only once; \
                 prepare it again into a new --out (or with --overwrite)",
                name.unwrap_or_default()
            )));
        }
    }
    let splitter = cfg.splitter_kind()?;
    let token_dtype = DType::for_vocab(tok.vocab_size());

    let resuming = cfg.resume && !cfg.overwrite && out.join(STATE).exists();
    prepare_out_dir(cfg, &out)?;

    // Input identity (size + xxh3), in parallel; streams get theirs while they are read.
    let mut inputs: Vec<InputFile> = files
        .par_iter()
        .zip(&streams)
        .map(|(p, &stream)| {
            let spec = p.to_string_lossy();
            let (size, xxh3) =
                if stream { (0, String::new()) } else { hash_file(Path::new(split_row_groups(&spec)?.0))? };
            Ok(InputFile { path: p.display().to_string(), size, xxh3 })
        })
        .collect::<Result<_>>()?;
    let state = resume_state(cfg, &inputs, &tok);
    if resuming {
        check_resume(&out, &state)?;
    }
    write_atomic(&out.join(STATE), serde_json::to_string_pretty(&state).unwrap().as_bytes())?;
    copy_tokenizer(&tok, &tok_path, &out)?;
    progress.total_bytes.store(inputs.iter().map(|f| f.size).sum(), Ordering::Relaxed);

    // Stage 1: corpus shards (reading, tokenizing and writing overlap; see `tokenize_stage`).
    let reader_cfg = ReaderConfig {
        doc_mode: cfg.doc_mode()?,
        text_field: cfg.text_field.clone(),
        on_invalid_utf8: cfg.invalid_utf8()?,
    };
    let reader = match source {
        Some((source, name)) => {
            inputs.push(InputFile { path: name.clone(), size: 0, xxh3: String::new() });
            DocumentReader::with_source(files.clone(), reader_cfg, source, &name)
        }
        None => DocumentReader::new(files.clone(), reader_cfg),
    };
    files = reader.files().to_vec();
    let digests = reader.stream_digests();
    let stage = tokenize_stage(cfg, &out, reader, splitter, &tok, token_dtype, progress)?;
    for (i, (size, xxh3)) in digests.lock().expect("digests lock").iter() {
        inputs[*i as usize].size = *size;
        inputs[*i as usize].xxh3 = xxh3.clone();
    }
    let input_bytes: u64 = inputs.iter().map(|f| f.size).sum();
    let (shards, resumed, skipped_docs_after_tokenizing) = (stage.shards, stage.resumed, stage.dropped);
    let mut totals = Totals::default();
    for s in &shards {
        totals.documents += s.rows;
        totals.sentences += s.sentences;
        totals.tokens += s.tokens;
    }
    totals.skipped = stage.skipped;
    if totals.documents == 0 {
        let skipped: Vec<String> = totals
            .skipped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
            .collect();
        let what = if skipped.is_empty() { String::new() } else { format!("; skipped: {}", skipped.join(", ")) };
        return Err(Error::NoDocuments(format!("{} input file(s){what}", files.len())));
    }
    if skipped_docs_after_tokenizing > 0 {
        *totals.skipped.entry("documents_without_tokens".into()).or_insert(0) += skipped_docs_after_tokenizing;
    }

    let mut manifest = Manifest {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        kind: "corpus".into(),
        created_by: format!("bertkit {}", env!("CARGO_PKG_VERSION")),
        tokenizer: serde_json::to_value(tok.info()).expect("tokenizer info serializes"),
        splitter: serde_json::json!({"name": splitter.name(), "version": RULES_VERSION}),
        config: serde_json::to_value(cfg).expect("config serializes"),
        inputs,
        token_dtype,
        totals,
        shards,
    };

    // Stage 2: static instances over the memory-mapped corpus.
    if !cfg.instances.is_empty() && manifest.totals.documents > 0 {
        progress.stage.store(1, Ordering::Relaxed);
        let corpus = MmapCorpus::open_with(&out, &manifest)?;
        let vocab = mask_vocab(&tok);
        let doc_ranges: Vec<Range<usize>> = {
            let mut v = Vec::new();
            let mut start = 0usize;
            for s in manifest.shards_of("corpus") {
                v.push(start..start + s.rows as usize);
                start += s.rows as usize;
            }
            v
        };
        let mut new_shards = Vec::new();
        for kind in ["nsp", "mlm", "chunks"] {
            if !cfg.instances.iter().any(|k| k == kind) {
                continue;
            }
            let built = match kind {
                "nsp" => build_nsp(cfg, &out, &corpus, &vocab, &doc_ranges, token_dtype, progress)?,
                "mlm" => build_mlm(cfg, &out, &corpus, &vocab, token_dtype, progress)?,
                _ => build_chunks(cfg, &out, &corpus, &vocab, &doc_ranges, token_dtype, progress)?,
            };
            let n: u64 = built.iter().map(|s| s.rows).sum();
            manifest.totals.instances.insert(kind.to_string(), n);
            new_shards.extend(built);
        }
        manifest.shards.extend(new_shards);
    }
    check_cancel(progress)?;
    progress.stage.store(2, Ordering::Relaxed);
    manifest.write(&out)?;
    let _ = fs::remove_file(out.join(STATE));
    Ok(PrepareSummary {
        out: out.display().to_string(),
        shards: manifest.shards.len(),
        totals: manifest.totals,
        input_bytes,
        resumed_shards: resumed,
        seconds: t0.elapsed().as_secs_f64(),
        notes,
    })
}

fn shard_name(index: usize) -> String {
    format!("corpus-{index:05}")
}

/// The arrays of one corpus shard, filled document by document.
struct ShardBuilder {
    tokens: Vec<u32>,
    sentence_offsets: Vec<u64>,
    document_offsets: Vec<u64>,
    sources: Vec<u32>,
}

impl Default for ShardBuilder {
    fn default() -> Self {
        ShardBuilder { tokens: Vec::new(), sentence_offsets: vec![0], document_offsets: vec![0], sources: Vec::new() }
    }
}

impl ShardBuilder {
    /// Append the output of a task of consecutive documents; documents without tokens are dropped
    /// (the caller counts them).
    fn push_task(&mut self, docs: &[Document], r: &DocOut) {
        self.tokens.extend_from_slice(&r.tokens);
        let mut last = *self.sentence_offsets.last().unwrap();
        let mut lens = r.sentence_lens.iter();
        for (d, &n) in docs.iter().zip(&r.doc_sentences) {
            if n == 0 {
                continue;
            }
            for &l in lens.by_ref().take(n as usize) {
                last += l as u64;
                self.sentence_offsets.push(last);
            }
            self.document_offsets.push((self.sentence_offsets.len() - 1) as u64);
            self.sources.push(d.source);
        }
    }

    fn write(self, out: &Path, name: &str, dtype: DType) -> Result<Shard> {
        let p = |a: &str| format!("{SHARD_DIR}/{name}.{a}.npy");
        let n_docs = self.sources.len() as u64;
        let mut arrays = BTreeMap::new();
        arrays.insert(
            "tokens".into(),
            write_tokens(out, &p("tokens"), dtype, &[self.tokens.len() as u64], &self.tokens)?,
        );
        let so = &self.sentence_offsets;
        arrays.insert("sentence_offsets".into(), write_npy(out, &p("sentence_offsets"), &[so.len() as u64], so)?);
        let dof = &self.document_offsets;
        arrays.insert("document_offsets".into(), write_npy(out, &p("document_offsets"), &[dof.len() as u64], dof)?);
        arrays.insert("document_sources".into(), write_npy(out, &p("document_sources"), &[n_docs], &self.sources)?);
        Ok(Shard {
            kind: "corpus".into(),
            name: name.into(),
            rows: n_docs,
            sentences: (so.len() - 1) as u64,
            tokens: self.tokens.len() as u64,
            chunks: 0,
            input_offset: 0,
            arrays,
        })
    }
}

/// Writes shards on a dedicated thread so that the next shard is computed while this one goes to
/// disk. Jobs run in submission order; the first error stops the run (checked on every submit and
/// at `finish`).
struct Writer {
    tx: Option<std::sync::mpsc::SyncSender<WriteJob>>,
    handle: Option<std::thread::JoinHandle<Result<Vec<Shard>>>>,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Inline mode (one thread): jobs run at submission.
    inline: Option<Vec<Shard>>,
}

type WriteJob = Box<dyn FnOnce() -> Result<Shard> + Send>;

impl Writer {
    fn new(background: bool) -> Writer {
        if !background {
            return Writer { tx: None, handle: None, failed: Default::default(), inline: Some(Vec::new()) };
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<WriteJob>(0);
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = failed.clone();
        let handle = std::thread::spawn(move || {
            let mut done = Vec::new();
            for job in rx {
                match job() {
                    Ok(s) => done.push(s),
                    Err(e) => {
                        flag.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            Ok(done)
        });
        Writer { tx: Some(tx), handle: Some(handle), failed, inline: None }
    }

    /// Queue a job; if the writer already failed, return its error.
    fn submit(&mut self, job: WriteJob) -> Result<()> {
        if let Some(done) = self.inline.as_mut() {
            done.push(job()?);
            return Ok(());
        }
        if self.failed.load(Ordering::SeqCst) || self.tx.as_ref().is_some_and(|tx| tx.send(job).is_err()) {
            return Err(self.finish().err().unwrap_or(Error::Cancelled));
        }
        Ok(())
    }

    /// Wait for every queued job; the shards in submission order.
    fn finish(&mut self) -> Result<Vec<Shard>> {
        if let Some(done) = self.inline.take() {
            return Ok(done);
        }
        self.tx = None;
        match self.handle.take() {
            Some(h) => h.join().unwrap_or_else(|_| Err(Error::config("internal error: the shard writer panicked"))),
            None => Err(Error::Cancelled),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What the reader thread hands over: documents of the current shard, a shard boundary, or the end.
enum ReadMsg {
    Block(Vec<Document>, u64),
    EndShard,
    Done(BTreeMap<String, u64>),
}

/// Cuts the input into blocks of whole documents and marks shard boundaries: a shard ends with the
/// document whose text brings it to `shard_size`, whatever the block size or thread count.
struct BlockReader {
    reader: DocumentReader,
    acc: u64,
    shard_size: u64,
    queue: std::collections::VecDeque<ReadMsg>,
    done: bool,
}

impl BlockReader {
    fn next(&mut self) -> Result<ReadMsg> {
        while self.queue.is_empty() {
            if self.done {
                return Err(Error::Cancelled);
            }
            let mut docs = Vec::new();
            let budget = (READ_BLOCK as u64).min(self.shard_size - self.acc) as usize;
            let more = self.reader.next_batch(budget, &mut docs)?;
            if !docs.is_empty() {
                self.acc += docs.iter().map(|d| d.text.len() as u64).sum::<u64>();
                self.queue.push_back(ReadMsg::Block(docs, self.reader.bytes_read()));
            }
            if self.acc >= self.shard_size || (!more && self.acc > 0) {
                self.acc = 0;
                self.queue.push_back(ReadMsg::EndShard);
            }
            if !more {
                self.done = true;
                self.queue.push_back(ReadMsg::Done(self.reader.skipped()));
            }
        }
        Ok(self.queue.pop_front().expect("queue is not empty"))
    }
}

enum ReadSource {
    Thread(std::sync::mpsc::Receiver<Result<ReadMsg>>),
    Inline(Box<BlockReader>),
}

impl ReadSource {
    fn next(&mut self) -> Result<ReadMsg> {
        match self {
            ReadSource::Thread(rx) => rx.recv().unwrap_or(Err(Error::Cancelled)),
            ReadSource::Inline(r) => r.next(),
        }
    }
}

/// Input read per parallel block (documents are never split; a shard is several blocks).
const READ_BLOCK: usize = 4 << 20;

struct TokenizeStage {
    shards: Vec<Shard>,
    skipped: BTreeMap<String, u64>,
    resumed: usize,
    /// Documents without any token after normalisation (dropped).
    dropped: u64,
}

/// Stage 1. A reader thread cuts the input into blocks of whole documents and marks shard
/// boundaries (a shard ends with the document whose text brings it to `shard_size`: the same
/// boundaries whatever the block size or thread count); the rayon pool tokenizes each block as it
/// arrives; the writer thread writes each finished shard while the next one is tokenized.
fn tokenize_stage(
    cfg: &PrepareConfig,
    out: &Path,
    reader: DocumentReader,
    splitter: SplitterKind,
    tok: &Tokenizer,
    dtype: DType,
    progress: &Progress,
) -> Result<TokenizeStage> {
    let shard_size = cfg.shard_size as u64;
    let opts = TextOptions { paragraph: cfg.paragraph_id(tok)?, filter: cfg.text_filter == "nanobert" };
    // With one thread everything runs inline on it; with more, a reader thread and a writer thread
    // overlap I/O with the rayon workers.
    let background = rayon::current_num_threads() > 1;
    std::thread::scope(|scope| {
        let mut blocks = BlockReader { reader, acc: 0, shard_size, queue: Default::default(), done: false };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ReadMsg>>(2);
        let mut source = if background {
            scope.spawn(move || loop {
                if progress.cancelled() {
                    return;
                }
                let msg = blocks.next();
                let last = matches!(msg, Ok(ReadMsg::Done(_)) | Err(_));
                if tx.send(msg).is_err() || last {
                    return;
                }
            });
            ReadSource::Thread(rx)
        } else {
            ReadSource::Inline(Box::new(blocks))
        };

        let mut writer = Writer::new(background);
        let mut index = 0usize;
        let mut resumed = 0usize;
        let mut dropped = 0u64;
        let mut resumed_shard: Option<Shard> = if cfg.resume { completed_shard(out, &shard_name(0)) } else { None };
        let mut builder = ShardBuilder::default();
        let mut docs_in_shard = 0u64;
        let mut last_bytes = 0u64;
        let skipped = loop {
            check_cancel(progress)?;
            let msg = source.next()?;
            match msg {
                ReadMsg::Block(docs, bytes) => {
                    docs_in_shard += docs.len() as u64;
                    if resumed_shard.is_none() {
                        let text: u64 = docs.iter().map(|d| d.text.len() as u64).sum::<u64>().max(1);
                        let scale = bytes.saturating_sub(last_bytes) as f64 / text as f64;
                        // Tasks of whole consecutive documents (~64 KB of text each) write into one
                        // buffer per task: few allocations, good locality, balanced work.
                        let tasks = group_documents(&docs, TASK_BYTES);
                        let results: Vec<DocOut> = tasks
                            .par_iter()
                            .map(|range| {
                                let mut out = DocOut::default();
                                if progress.cancelled() {
                                    return out;
                                }
                                for d in &docs[range.clone()] {
                                    let before = out.tokens.len();
                                    process_document_into(d, splitter, tok, opts, &mut out);
                                    Progress::add(&progress.bytes, (d.text.len() as f64 * scale) as u64);
                                    Progress::add(&progress.tokens, (out.tokens.len() - before) as u64);
                                    Progress::add(&progress.documents, 1);
                                }
                                out
                            })
                            .collect();
                        check_cancel(progress)?;
                        for (range, r) in tasks.iter().zip(&results) {
                            builder.push_task(&docs[range.clone()], r);
                        }
                    }
                    progress.bytes.store(bytes, Ordering::Relaxed);
                    last_bytes = bytes;
                }
                ReadMsg::EndShard => {
                    let name = shard_name(index);
                    match resumed_shard.take() {
                        Some(s) => {
                            // The resume check proved the inputs unchanged, so the record cannot hold more
                            // documents than the input gives; refuse rather than underflow if it does.
                            if s.rows > docs_in_shard {
                                return Err(Error::format(
                                    shard_record_path(out, &name),
                                    format!(
                                        "the completed shard holds {} documents, the inputs now give {docs_in_shard} \
                                         there: the inputs changed since the interrupted run (use --overwrite)",
                                        s.rows
                                    ),
                                ));
                            }
                            Progress::add(&progress.documents, s.rows);
                            Progress::add(&progress.tokens, s.tokens);
                            dropped += docs_in_shard - s.rows;
                            resumed += 1;
                            writer.submit(Box::new(move || Ok(s)))?;
                        }
                        None => {
                            let b = std::mem::take(&mut builder);
                            dropped += docs_in_shard.saturating_sub(b.sources.len() as u64);
                            let out = out.to_path_buf();
                            writer.submit(Box::new(move || {
                                let shard = b.write(&out, &name, dtype)?;
                                publish_shard(&out, &shard)?;
                                Ok(shard)
                            }))?;
                        }
                    }
                    index += 1;
                    docs_in_shard = 0;
                    resumed_shard = if cfg.resume { completed_shard(out, &shard_name(index)) } else { None };
                }
                ReadMsg::Done(skipped) => break skipped,
            }
        };
        let shards = writer.finish()?;
        Ok(TokenizeStage { shards, skipped, resumed, dropped })
    })
}
fn build_nsp(
    cfg: &PrepareConfig,
    out: &Path,
    corpus: &MmapCorpus,
    vocab: &MaskVocab,
    doc_ranges: &[Range<usize>],
    dtype: DType,
    progress: &Progress,
) -> Result<Vec<Shard>> {
    let nsp = cfg.nsp();
    let ctx = instances::nsp::NspContext::new(corpus);
    let mut writer = Writer::new(rayon::current_num_threads() > 1);
    let mut index = 0usize;
    for pass in 0..cfg.dupe_factor {
        for range in doc_ranges {
            check_cancel(progress)?;
            let name = format!("nsp-{index:05}");
            index += 1;
            if cfg.resume {
                if let Some(s) = completed_shard(out, &name) {
                    Progress::add(&progress.instances, s.rows);
                    writer.submit(Box::new(move || Ok(s)))?;
                    continue;
                }
            }
            // Parallel over sub-ranges of documents; each document's randomness is keyed by
            // (seed, pass, document), so the split does not change the result.
            let parts: Vec<instances::NspInstances> = split_by_tokens(corpus, range.clone(), NSP_TASK_TOKENS)
                .into_par_iter()
                .map(|r| {
                    if progress.cancelled() {
                        return Default::default();
                    }
                    let x = instances::nsp::nsp_instances_with(corpus, &ctx, r, pass, &nsp, vocab);
                    Progress::add(&progress.instances, x.next_sentence_labels.len() as u64);
                    x
                })
                .collect();
            check_cancel(progress)?;
            let out = out.to_path_buf();
            let shard_index = index - 1;
            writer.submit(Box::new(move || {
                let shard = write_nsp_shard(&out, name, shard_index, &parts, dtype)?;
                publish_shard(&out, &shard)?;
                Ok(shard)
            }))?;
        }
    }
    writer.finish()
}

fn write_nsp_shard(
    out: &Path,
    name: String,
    index: usize,
    parts: &[instances::NspInstances],
    dtype: DType,
) -> Result<Shard> {
    let mut arrays = BTreeMap::new();
    let p = |a: &str| arr(a, "nsp", index);
    let ids: Vec<&[u32]> = parts.iter().map(|x| x.input_ids.as_slice()).collect();
    let input_ids = write_tokens_parts(out, &p("input_ids"), dtype, &ids)?;
    let masked: Vec<&[u32]> = parts.iter().map(|x| x.masked_lm_ids.as_slice()).collect();
    arrays.insert("masked_lm_ids".into(), write_tokens_parts(out, &p("masked_lm_ids"), dtype, &masked)?);
    // The small per-instance arrays are concatenated (offsets rebased).
    let all = concat_nsp_metadata(parts);
    let n = all.next_sentence_labels.len() as u64;
    arrays.insert("offsets".into(), write_npy(out, &p("offsets"), &[n + 1], &all.offsets)?);
    arrays.insert("segment_a_lengths".into(), write_npy(out, &p("segment_a_lengths"), &[n], &all.segment_a_lengths)?);
    let labels = &all.next_sentence_labels;
    arrays.insert("next_sentence_labels".into(), write_npy(out, &p("next_sentence_labels"), &[n], labels)?);
    let mp = &all.masked_positions;
    arrays.insert("masked_positions".into(), write_npy(out, &p("masked_positions"), &[mp.len() as u64], mp)?);
    arrays.insert("masked_offsets".into(), write_npy(out, &p("masked_offsets"), &[n + 1], &all.masked_offsets)?);
    let tokens = input_ids.shape[0];
    arrays.insert("input_ids".into(), input_ids);
    Ok(Shard { kind: "nsp".into(), name, rows: n, sentences: 0, tokens, chunks: 0, input_offset: 0, arrays })
}

/// Tokens of documents per parallel NSP task.
const NSP_TASK_TOKENS: u64 = 1 << 15;

/// Consecutive document ranges of about `tokens` tokens each, so that a few long documents (books)
/// do not end up in one task while the other workers idle.
fn split_by_tokens(corpus: &dyn CorpusView, r: Range<usize>, tokens: u64) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut acc) = (r.start, 0u64);
    for d in r.clone() {
        let t = corpus.doc_tokens(d);
        acc += t.end - t.start;
        if acc >= tokens {
            parts.push(start..d + 1);
            (start, acc) = (d + 1, 0);
        }
    }
    if start < r.end {
        parts.push(start..r.end);
    }
    parts
}

/// Concatenate the per-instance arrays of several instance sets (not the token arrays), rebasing
/// the offsets.
fn concat_nsp_metadata(parts: &[instances::NspInstances]) -> instances::NspInstances {
    let mut all = instances::NspInstances { offsets: vec![0], masked_offsets: vec![0], ..Default::default() };
    let (mut base, mut mbase) = (0u64, 0u64);
    for p in parts {
        all.offsets.extend(p.offsets.iter().skip(1).map(|o| o + base));
        all.masked_positions.extend_from_slice(&p.masked_positions);
        all.masked_offsets.extend(p.masked_offsets.iter().skip(1).map(|o| o + mbase));
        all.segment_a_lengths.extend_from_slice(&p.segment_a_lengths);
        all.next_sentence_labels.extend_from_slice(&p.next_sentence_labels);
        base += p.input_ids.len() as u64;
        mbase += p.masked_positions.len() as u64;
    }
    all
}

fn build_mlm(
    cfg: &PrepareConfig,
    out: &Path,
    corpus: &MmapCorpus,
    vocab: &MaskVocab,
    dtype: DType,
    progress: &Progress,
) -> Result<Vec<Shard>> {
    // Rows of the document stream (documents joined by [SEP]) cut at multiples of seq_len - 2,
    // written in shards of ~16M tokens so memory stays bounded whatever the corpus size.
    let seq_len = cfg.mlm_len();
    let stream = instances::mlm::TokenStream::new(corpus);
    let n_rows = stream.len() / (seq_len as u64 - 2);
    let rows_per_shard = ((16u64 << 20) / seq_len as u64).max(1);
    let mut shards = Vec::new();
    for (index, first) in (0..n_rows).step_by(rows_per_shard as usize).enumerate() {
        check_cancel(progress)?;
        let name = format!("mlm-{index:05}");
        if cfg.resume {
            if let Some(s) = completed_shard(out, &name) {
                shards.push(s);
                continue;
            }
        }
        let last = (first + rows_per_shard).min(n_rows);
        let parts: Vec<Vec<u32>> = (first..last)
            .collect::<Vec<u64>>()
            .par_chunks(4096)
            .map(|rows| {
                let mut buf = Vec::with_capacity(rows.len() * seq_len);
                for &r in rows {
                    stream.row(corpus, r * (seq_len as u64 - 2), seq_len, vocab, &mut buf);
                }
                buf
            })
            .collect();
        let rows: Vec<u32> = parts.concat();
        let n = last - first;
        Progress::add(&progress.instances, n);
        let mut arrays = BTreeMap::new();
        arrays.insert(
            "input_ids".into(),
            write_tokens(out, &arr("input_ids", "mlm", index), dtype, &[n, seq_len as u64], &rows)?,
        );
        let shard = Shard {
            kind: "mlm".into(),
            name,
            rows: n,
            sentences: 0,
            tokens: rows.len() as u64,
            chunks: 0,
            input_offset: 0,
            arrays,
        };
        publish_shard(out, &shard)?;
        shards.push(shard);
    }
    Ok(shards)
}

fn build_chunks(
    cfg: &PrepareConfig,
    out: &Path,
    corpus: &MmapCorpus,
    vocab: &MaskVocab,
    doc_ranges: &[Range<usize>],
    dtype: DType,
    progress: &Progress,
) -> Result<Vec<Shard>> {
    let mut shards = Vec::new();
    for (index, range) in doc_ranges.iter().enumerate() {
        check_cancel(progress)?;
        let name = format!("chunks-{index:05}");
        if cfg.resume {
            if let Some(s) = completed_shard(out, &name) {
                shards.push(s);
                continue;
            }
        }
        let c = instances::chunks::chunk_instances(corpus, range.clone(), cfg.chunk_size, vocab);
        let n_chunks = (c.offsets.len() - 1) as u64;
        Progress::add(&progress.instances, n_chunks);
        let p = |a: &str| arr(a, "chunks", index);
        let mut arrays = BTreeMap::new();
        arrays.insert(
            "input_ids".into(),
            write_tokens(out, &p("input_ids"), dtype, &[c.input_ids.len() as u64], &c.input_ids)?,
        );
        arrays.insert("offsets".into(), write_npy(out, &p("offsets"), &[n_chunks + 1], &c.offsets)?);
        arrays.insert(
            "document_offsets".into(),
            write_npy(out, &p("document_offsets"), &[c.document_offsets.len() as u64], &c.document_offsets)?,
        );
        let shard = Shard {
            kind: "chunks".into(),
            name,
            rows: range.len() as u64,
            sentences: 0,
            tokens: c.input_ids.len() as u64,
            chunks: n_chunks,
            input_offset: 0,
            arrays,
        };
        publish_shard(out, &shard)?;
        shards.push(shard);
    }
    Ok(shards)
}

/// Write the tokenizer into `out/tokenizer/` so a dataset is self-contained: `vocab.txt` always
/// (id order), and the original `tokenizer.json` when one was given.
fn copy_tokenizer(tok: &Tokenizer, src: &Path, out: &Path) -> Result<()> {
    let dir = out.join("tokenizer");
    fs::create_dir_all(&dir).at(&dir)?;
    let mut vocab = String::new();
    for id in 0..tok.vocab_size() as u32 {
        vocab.push_str(tok.token(id));
        vocab.push('\n');
    }
    write_atomic(&dir.join("vocab.txt"), vocab.as_bytes())?;
    if src.extension().and_then(|e| e.to_str()) == Some("json") {
        let bytes = fs::read(src).at(src)?;
        write_atomic(&dir.join("tokenizer.json"), &bytes)?;
    }
    Ok(())
}
