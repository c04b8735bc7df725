//! Reading corpora into documents.
//!
//! - `expand_inputs(specs) -> Result<Vec<PathBuf>>`: files as given, directories recursively (sorted,
//!   hidden files skipped), globs (sorted); a spec that matches nothing is an error naming it.
//! - `DocumentReader::new(files, cfg)`, then `next_batch(max_bytes, out)` appends whole documents
//!   (in input order) until their text reaches `max_bytes` or the input ends; returns Ok(false) once
//!   nothing more is left. Memory is bounded by the batch (plus one document).
//! - Formats: plain text (blank line ends a document; `OneDocPerLine`; `SentencesPerLine` = Google's
//!   one sentence per line with blank lines between documents: the document text keeps the line
//!   breaks and prepare uses the `lines` splitter), `.jsonl` (one JSON object per line, text in
//!   `cfg.text_field`), and `.gz`, `.zst`, `.bz2`, `.xz` of either (by extension). CRLF / CR /
//!   mixed newlines work. Parquet files, Arrow IPC files and `datasets.save_to_disk` folders: one
//!   document per row, text in the `cfg.text_field` column (see `columnar`).
//! - Streams: `-` is standard input; it, FIFOs and character devices are read once, as they come
//!   (see `streams`); their size and xxh3 are computed while reading (`stream_digests`).
//! - UTF-8 policy per `cfg.on_invalid_utf8`: Error (names file and byte offset), Replace (U+FFFD),
//!   Skip (drop the line; counted). Empty/whitespace-only documents are dropped and counted.
//!   Binary files (NUL-heavy) are an error naming the file.
//! - `skipped()` returns counts by reason; `bytes_read()` returns input bytes consumed so far.
//!
//! Details:
//! - `next_batch` returns `Ok(true)` when it appended at least one document and `Ok(false)` (with
//!   `out` untouched) once the input is exhausted. It always appends at least one document when one
//!   is left, so `max_bytes = 0` yields one document per call. The document sequence does not
//!   depend on `max_bytes`.
//! - Extensions (case-insensitive): `.gz`, `.zst`/`.zstd`, `.bz2` and `.xz` are decompressed
//!   (concatenated members/frames work); after removing that, `.jsonl`, `.ndjson` and `.json` are
//!   JSON Lines, `.parquet` is Parquet, `.arrow` is Arrow IPC; everything else is plain text. A
//!   stream (stdin, a FIFO) or `/dev/stdin`, `/dev/fd/N`, `/proc/...` (a redirected file) has no
//!   usable name: its compression is found from its magic number and it is JSON Lines when its
//!   first non-blank byte is `{`, plain text otherwise.
//! - Line breaks are LF, CRLF or a lone CR. A UTF-8 BOM at the start of a file is dropped; byte
//!   offsets in errors count from the start of the (decompressed) file, BOM included.
//! - In `BlankLine`/`SentencesPerLine` mode a line that is empty or only (Unicode) whitespace ends
//!   the document, and the text is the document's lines joined with '\n' (no trailing '\n').
//!   `OneDocPerLine` makes each line a document (blank lines count as empty documents). In JSON
//!   Lines files, blank lines are ignored and the doc mode does not apply.
//! - `Skip` drops the line holding invalid UTF-8 (in JSON Lines, the whole record) and counts it.
//! - Directories: regular files below them (symlinks to files are followed, symlinked directories
//!   are not, to avoid cycles), names starting with '.' skipped, sorted by path. Duplicates across
//!   specs (same canonical path) are removed, keeping the first occurrence. A directory holding
//!   `*.parquet` files yields only those (a Hub download's README and .json files are not text to
//!   read). A folder written by `datasets.save_to_disk` (a `state.json` listing `_data_files`)
//!   yields its Arrow files in the listed order; a `DatasetDict` folder (`dataset_dict.json`) is an
//!   error asking for one split's folder.
//! - After `next_batch` returns an error the reader should not be used further.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, IoContext, Result};

mod columnar;
mod streams;

use columnar::ColumnReader;
pub use columnar::{parquet_row_groups, split_row_groups, ROW_GROUPS};
pub use streams::{is_stream, Digest, STDIN};
use streams::{Compression, HashingReader};

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

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            doc_mode: DocMode::BlankLine,
            text_field: "text".to_string(),
            on_invalid_utf8: InvalidUtf8::Error,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Index of the input file in the expanded list.
    pub source: u32,
    pub text: String,
}

/// Buffer size for reading files (and decompressed streams).
const BUF_SIZE: usize = 1 << 20;
/// How much of each (decompressed) file is sniffed for binary content.
const SNIFF_SIZE: usize = 8 << 10;

/// Keys of `DocumentReader::skipped()`.
pub const SKIP_EMPTY_DOCUMENTS: &str = "empty_documents";
pub const SKIP_EMPTY_FILES: &str = "empty_files";
pub const SKIP_INVALID_UTF8_LINES: &str = "invalid_utf8_lines";

// ---------------------------------------------------------------------------------------------
// Input expansion

fn is_glob(spec: &str) -> bool {
    spec.contains(['*', '?', '['])
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(false)
}

/// All regular files below `dir` (recursively), hidden entries skipped, unsorted.
fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        let file_type = entry.file_type().at(&path)?;
        if file_type.is_dir() {
            match dataset_folder(&path)? {
                Some(files) => out.extend(files),
                None => walk_dir(&path, out)?,
            }
        } else if file_type.is_file() {
            out.push(path);
        } else if file_type.is_symlink() {
            // Follow links to files; never descend into linked directories (cycles).
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.is_file() {
                    out.push(path);
                }
            }
        }
    }
    Ok(())
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Files found below a directory: only the Parquet files when there are any (a dataset download
/// next to its README), sorted. The Arrow files of a datasets folder keep their listed order.
fn sorted_dir_files(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    if files.iter().any(|f| has_ext(f, "parquet")) {
        files.retain(|f| has_ext(f, "parquet"));
        files.sort();
    }
    files
}

/// The Arrow files of a folder written by `datasets.save_to_disk`, in the order its `state.json`
/// lists them; `None` when `dir` is not such a folder.
fn dataset_folder(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let dict = dir.join("dataset_dict.json");
    if dict.is_file() {
        let splits: Vec<String> = fs_json(&dict)?
            .get("splits")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let example = splits.first().map(|s| dir.join(s).display().to_string()).unwrap_or_else(|| "<split>".into());
        return Err(Error::format(
            dir,
            format!(
                "is a datasets DatasetDict folder (splits: {}); give the folder of one split, e.g. {example}",
                if splits.is_empty() { "none listed".to_string() } else { splits.join(", ") }
            ),
        ));
    }
    let state = dir.join("state.json");
    if !state.is_file() {
        if dir.join("dataset_info.json").is_file() {
            return Err(Error::format(
                dir,
                "looks like a datasets folder (dataset_info.json) but has no state.json listing its Arrow files",
            ));
        }
        return Ok(None);
    }
    let Some(listed) = fs_json(&state)?.get("_data_files").and_then(|f| f.as_array()).cloned() else {
        return Ok(None);
    };
    if listed.is_empty() {
        return Err(Error::format(&state, "lists no Arrow files (\"_data_files\" is empty)"));
    }
    let mut files = Vec::with_capacity(listed.len());
    for entry in &listed {
        let Some(name) = entry.get("filename").and_then(|n| n.as_str()) else {
            return Err(Error::format(&state, "an entry of \"_data_files\" has no \"filename\""));
        };
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::format(
                &path,
                format!("missing: {} lists it, but the datasets folder lacks this Arrow file", state.display()),
            ));
        }
        files.push(path);
    }
    Ok(Some(files))
}

fn fs_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))
}

fn expand_dir(dir: &Path, spec: &str) -> Result<Vec<PathBuf>> {
    if let Some(files) = dataset_folder(dir)? {
        return Ok(files);
    }
    let mut files = Vec::new();
    walk_dir(dir, &mut files)?;
    if files.is_empty() {
        return Err(Error::config(format!("input directory {spec} contains no (non-hidden) files")));
    }
    files.sort();
    Ok(sorted_dir_files(files))
}

fn expand_glob(spec: &str) -> Result<Vec<PathBuf>> {
    let options =
        glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: true };
    let paths =
        glob::glob_with(spec, options).map_err(|e| Error::config(format!("invalid glob pattern {spec:?}: {e}")))?;
    let mut matched: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            let path = e.path().to_path_buf();
            Error::io(path, e.into())
        })?;
        let meta = std::fs::metadata(&path).at(&path)?;
        if meta.is_dir() {
            if let Some(files) = dataset_folder(&path)? {
                matched.push((path, files));
                continue;
            }
            let mut below = Vec::new();
            walk_dir(&path, &mut below)?;
            below.sort();
            matched.extend(sorted_dir_files(below).into_iter().map(|f| (f.clone(), vec![f])));
        } else {
            matched.push((path.clone(), vec![path]));
        }
    }
    if matched.is_empty() {
        return Err(Error::config(format!("no input files match {spec:?}")));
    }
    // Sorted by path; a datasets folder sorts as one unit and keeps its listed order.
    matched.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(matched.into_iter().flat_map(|(_, files)| files).collect())
}

/// Expand input specs (files, directories, glob patterns) into the ordered list of files to read.
pub fn expand_inputs(specs: &[String]) -> Result<Vec<PathBuf>> {
    Ok(expand_inputs_noting_duplicates(specs)?.0)
}

/// Inputs given again: `(the later path, the path it is read as)`.
pub type Duplicates = Vec<(PathBuf, PathBuf)>;

/// `expand_inputs`, plus `(later, first)` for every file given again (twice, or by another path to the same
/// file: a symlink, `./x`, a directory and a file inside it), which is read once, as `first`.
pub fn expand_inputs_noting_duplicates(specs: &[String]) -> Result<(Vec<PathBuf>, Duplicates)> {
    if specs.is_empty() {
        return Err(Error::config("no input files given"));
    }
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    let mut duplicates = Vec::new();
    for spec in specs {
        // Standard input and row-group ranges are not files to canonicalize: their spec is the key.
        let mut add = |key: PathBuf, file: PathBuf| match seen.get(&key) {
            Some(first) => duplicates.push((file, PathBuf::clone(first))),
            None => {
                seen.insert(key, file.clone());
                out.push(file);
            }
        };
        if spec == STDIN {
            add(PathBuf::from(STDIN), PathBuf::from(STDIN));
            continue;
        }
        if let (file, Some(_)) = split_row_groups(spec)? {
            // One Parquet file's row groups (a partition of `prepare --ray`).
            let path = Path::new(file);
            let meta = std::fs::metadata(path).at(path)?;
            if !meta.is_file() || !has_ext(path, "parquet") {
                return Err(Error::config(format!("{spec}: row groups can only be selected of a .parquet file")));
            }
            let key = PathBuf::from(format!(
                "{}{}",
                std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display(),
                &spec[file.len()..]
            ));
            add(key, PathBuf::from(spec));
            continue;
        }
        let path = Path::new(spec);
        let files = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => expand_dir(path, spec)?,
            Ok(_) => vec![path.to_path_buf()],
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_glob(spec) => expand_glob(spec)?,
            Err(e) => return Err(Error::io(path, e)),
        };
        for file in files {
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            match seen.get(&key) {
                Some(first) => duplicates.push((file, PathBuf::clone(first))),
                None => {
                    seen.insert(key, file.clone());
                    out.push(file);
                }
            }
        }
    }
    Ok((out, duplicates))
}

// ---------------------------------------------------------------------------------------------
// Opening files

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    JsonLines,
    Parquet,
    Arrow,
    /// Documents handed over by a [`TextSource`].
    Source,
}

fn classify(path: &Path) -> (Compression, Kind) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let (compression, inner) = Compression::from_name(&name);
    let kind = if inner.ends_with(".jsonl") || inner.ends_with(".ndjson") || inner.ends_with(".json") {
        Kind::JsonLines
    } else if inner.ends_with(".parquet") {
        Kind::Parquet
    } else if inner.ends_with(".arrow") {
        Kind::Arrow
    } else {
        Kind::Plain
    };
    (compression, kind)
}

/// Documents from somewhere other than a file (a Python iterable): pulled in batches by the reader.
pub trait TextSource: Send {
    /// Append the next texts to `out`; false (appending nothing) once the source is exhausted.
    fn next_texts(&mut self, out: &mut Vec<String>) -> Result<bool>;
}

/// Counts the bytes read from disk into a shared counter (for `bytes_read`).
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Turn an error while reading a (possibly compressed) stream into a bertkit error.
fn read_error(path: &Path, compression: Compression, e: io::Error) -> Error {
    let data_error =
        matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof);
    if compression != Compression::None && data_error {
        Error::format(path, format!("corrupt or truncated {} data: {e}", compression.name()))
    } else {
        Error::io(path, e)
    }
}

fn read_head(reader: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Reject content that is clearly not text; `None` if it looks like text.
fn binary_reason(head: &[u8]) -> Option<String> {
    const MAGICS: [(&[u8], &str); 7] = [
        (&[0x1f, 0x8b], "gzip data (name the file *.gz)"),
        (b"PK\x03\x04", "a zip archive"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz data (name the file *.xz)"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd data (name the file *.zst)"),
        (b"%PDF-", "a PDF document"),
        (b"PAR1", "a Parquet file (name it *.parquet)"),
        (b"ARROW1", "an Arrow IPC file (name it *.arrow)"),
    ];
    for (magic, what) in MAGICS {
        if head.starts_with(magic) {
            return Some(format!("looks like {what}, not text"));
        }
    }
    if head.len() >= 10 && head.starts_with(b"BZh") && head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59] {
        return Some("looks like bzip2 data (name the file *.bz2), not text".to_string());
    }
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Some("looks like UTF-16 text (a UTF-16 byte-order mark); convert it to UTF-8".to_string());
    }
    let nul = head.iter().filter(|&&b| b == 0).count();
    // More than ~1 % NUL bytes (and more than one): binary, or UTF-16/32 without a BOM.
    if nul > 1 && nul * 100 > head.len() {
        return Some(format!(
            "looks like a binary file ({nul} NUL bytes in the first {} bytes); bertkit reads UTF-8 text and JSON Lines \\
             (also as .gz, .zst, .bz2, .xz), Parquet (*.parquet) and Arrow IPC (*.arrow) files",
            head.len()
        ));
    }
    None
}

/// Splits a byte stream into lines at LF, CRLF or a lone CR, tracking byte offsets.
struct LineSource {
    inner: Box<dyn BufRead + Send>,
    /// Offset (in the decompressed stream) of the next unread byte.
    offset: u64,
    /// Offset of the first byte of the line last returned.
    line_start: u64,
    /// 1-based number of the line last returned.
    line_no: u64,
}

impl LineSource {
    fn fill(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.offset += n as u64;
    }

    /// Read the next line (without its terminator) into `buf`; false at end of input.
    fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        self.line_start = self.offset;
        let mut any = false;
        loop {
            let avail = self.fill()?;
            if avail.is_empty() {
                if any {
                    self.line_no += 1;
                }
                return Ok(any);
            }
            any = true;
            match memchr::memchr2(b'\n', b'\r', avail) {
                Some(i) => {
                    let terminator = avail[i];
                    buf.extend_from_slice(&avail[..i]);
                    self.consume(i + 1);
                    if terminator == b'\r' && self.fill()?.first() == Some(&b'\n') {
                        self.consume(1);
                    }
                    self.line_no += 1;
                    return Ok(true);
                }
                None => {
                    let n = avail.len();
                    buf.extend_from_slice(avail);
                    self.consume(n);
                }
            }
        }
    }
}

enum Body {
    Lines(LineSource),
    Columns(ColumnReader),
    Source { source: Box<dyn TextSource>, buffer: std::collections::VecDeque<String> },
}

struct OpenFile {
    index: u32,
    path: PathBuf,
    compression: Compression,
    kind: Kind,
    body: Body,
    documents: u64,
    /// Size and xxh3 of a stream or a source, computed while reading.
    digest: Option<Arc<Mutex<Digest>>>,
}

impl OpenFile {
    fn lines(&self) -> &LineSource {
        match &self.body {
            Body::Lines(lines) => lines,
            _ => unreachable!("a text file"),
        }
    }
}

fn open_file(index: u32, path: &Path, cfg: &ReaderConfig, count: &Arc<AtomicU64>) -> Result<OpenFile> {
    let spec = path.to_string_lossy();
    let (file, row_groups) = split_row_groups(&spec)?;
    let file_path = Path::new(file);
    let stream = is_stream(file_path);
    // `/dev/stdin`, `/dev/fd/3`, `/proc/self/fd/0`: names that say nothing of the content, even when
    // it is a redirected regular file; sniffed like a stream.
    let sniff = stream
        || file_path == Path::new("/dev/stdin")
        || file_path.starts_with("/dev/fd")
        || file_path.starts_with("/proc");
    let (mut compression, mut kind) = if sniff { (Compression::None, Kind::Plain) } else { classify(file_path) };
    if matches!(kind, Kind::Parquet | Kind::Arrow) {
        if compression != Compression::None {
            return Err(Error::format(
                path,
                format!(
                    "a {}-compressed {} file is not read: the format compresses its own data; decompress the file",
                    compression.name(),
                    if kind == Kind::Parquet { "Parquet" } else { "Arrow" }
                ),
            ));
        }
        let columns = if kind == Kind::Parquet {
            ColumnReader::open_parquet(file_path, &cfg.text_field, row_groups, count)?
        } else {
            ColumnReader::open_arrow(file_path, &cfg.text_field, count)?
        };
        return Ok(OpenFile {
            index,
            path: file_path.to_path_buf(),
            compression,
            kind,
            body: Body::Columns(columns),
            documents: 0,
            digest: None,
        });
    }
    if row_groups.is_some() {
        return Err(Error::config(format!("{spec}: row groups can only be selected of a .parquet file")));
    }
    let raw: Box<dyn Read + Send> =
        if spec == STDIN { Box::new(io::stdin()) } else { Box::new(File::open(file_path).at(file_path)?) };
    let counting = CountingReader { inner: raw, count: Arc::clone(count) };
    let digest = stream.then(|| Arc::new(Mutex::new(Digest::new())));
    let mut raw: Box<dyn Read + Send> = match &digest {
        Some(d) => Box::new(HashingReader { inner: counting, digest: Arc::clone(d) }),
        None => Box::new(counting),
    };
    if sniff {
        // No name to go by: the compression from the magic number.
        let magic = read_head(&mut raw, 16).at(path)?;
        compression = Compression::sniff(&magic);
        raw = Box::new(Cursor::new(magic).chain(raw));
    }
    let mut decoded = compression.decoder(raw, BUF_SIZE).map_err(|e| read_error(path, compression, e))?;
    let head = read_head(&mut decoded, SNIFF_SIZE).map_err(|e| read_error(path, compression, e))?;
    if let Some(reason) = binary_reason(&head) {
        return Err(Error::format(path, reason));
    }
    let bom = if head.starts_with(&[0xef, 0xbb, 0xbf]) { 3 } else { 0 };
    if sniff && head[bom..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        kind = Kind::JsonLines;
    }
    let mut cursor = Cursor::new(head);
    cursor.set_position(bom as u64);
    let inner = BufReader::with_capacity(BUF_SIZE, cursor.chain(decoded));
    Ok(OpenFile {
        index,
        path: path.to_path_buf(),
        compression,
        kind,
        body: Body::Lines(LineSource {
            inner: Box::new(inner),
            offset: bom as u64,
            line_start: bom as u64,
            line_no: 0,
        }),
        documents: 0,
        digest,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON Lines: extract one string field without building the whole object

enum Record {
    Text(String),
    Missing,
    NotString(&'static str),
    NotObject(&'static str),
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

struct FieldSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Record;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Record, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Record, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if found.is_none() && key == self.0 {
                let value: serde_json::Value = map.next_value()?;
                found = Some(match value {
                    serde_json::Value::String(s) => Record::Text(s),
                    other => Record::NotString(json_kind(&other)),
                });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.unwrap_or(Record::Missing))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Record, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Record::NotObject("an array"))
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("a string"))
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("a number"))
    }
    fn visit_unit<E>(self) -> std::result::Result<Record, E> {
        Ok(Record::NotObject("null"))
    }
}

fn parse_record(line: &str, field: &str) -> std::result::Result<Record, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let record = FieldSeed(field).deserialize(&mut de)?;
    de.end()?;
    Ok(record)
}

// ---------------------------------------------------------------------------------------------
// The reader

/// Streams documents from a list of files, one file after another, with bounded memory.
pub struct DocumentReader {
    files: Vec<PathBuf>,
    cfg: ReaderConfig,
    next_file: usize,
    current: Option<OpenFile>,
    /// Bytes read from disk (all files so far).
    bytes: Arc<AtomicU64>,
    /// Raw bytes of the current line.
    line: Vec<u8>,
    /// Text of the document being assembled (blank-line modes).
    pending: String,
    documents: u64,
    empty_documents: u64,
    empty_files: u64,
    invalid_utf8_lines: u64,
    /// A source of documents read after the files (its entry in `files` is its name).
    source: Option<Box<dyn TextSource>>,
    /// Size and xxh3 of each stream or source input, by index, once it was read to its end.
    digests: StreamDigests,
}

/// Size and xxh3 of the inputs read as streams, by input index (filled as each one ends).
pub type StreamDigests = Arc<Mutex<BTreeMap<u32, (u64, String)>>>;

impl DocumentReader {
    pub fn new(files: Vec<PathBuf>, cfg: ReaderConfig) -> Self {
        DocumentReader {
            files,
            cfg,
            next_file: 0,
            current: None,
            bytes: Arc::new(AtomicU64::new(0)),
            line: Vec::new(),
            pending: String::new(),
            documents: 0,
            empty_documents: 0,
            empty_files: 0,
            invalid_utf8_lines: 0,
            source: None,
            digests: Default::default(),
        }
    }

    /// Read the documents of `source` after those of `files`; `name` stands for it in `files()`.
    pub fn with_source(mut files: Vec<PathBuf>, cfg: ReaderConfig, source: Box<dyn TextSource>, name: &str) -> Self {
        files.push(PathBuf::from(name));
        let mut reader = DocumentReader::new(files, cfg);
        reader.source = Some(source);
        reader
    }

    /// Size and xxh3 of the stream inputs (stdin, FIFOs, a source), filled in as each one ends;
    /// a handle that stays valid after the reader moved to another thread.
    pub fn stream_digests(&self) -> StreamDigests {
        Arc::clone(&self.digests)
    }

    /// Append whole documents to `out` until the text appended reaches `max_bytes` (at least one
    /// document). Returns false, appending nothing, once the input is exhausted.
    pub fn next_batch(&mut self, max_bytes: usize, out: &mut Vec<Document>) -> Result<bool> {
        let mut appended = 0usize;
        let mut any = false;
        while !any || appended < max_bytes {
            match self.next_document()? {
                Some(doc) => {
                    appended += doc.text.len();
                    out.push(doc);
                    any = true;
                }
                None => break,
            }
        }
        Ok(any)
    }

    /// Counts of what was dropped, by reason (all keys always present).
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([
            (SKIP_EMPTY_DOCUMENTS.to_string(), self.empty_documents),
            (SKIP_EMPTY_FILES.to_string(), self.empty_files),
            (SKIP_INVALID_UTF8_LINES.to_string(), self.invalid_utf8_lines),
        ])
    }

    /// Bytes consumed from the files on disk so far (compressed bytes for .gz), for progress.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Documents returned so far.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// The files being read, in order (`Document::source` indexes this list).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Decode the current line under the UTF-8 policy; None when the line is to be skipped.
    fn decode_line(&mut self) -> Result<Option<String>> {
        let bytes = std::mem::take(&mut self.line);
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let file = self.current.as_ref().expect("a file is open");
                match self.cfg.on_invalid_utf8 {
                    InvalidUtf8::Error => Err(Error::InvalidUtf8 {
                        path: file.path.clone(),
                        offset: file.lines().line_start + e.utf8_error().valid_up_to() as u64,
                    }),
                    InvalidUtf8::Replace => Ok(Some(String::from_utf8_lossy(e.as_bytes()).into_owned())),
                    InvalidUtf8::Skip => {
                        self.line = e.into_bytes();
                        self.invalid_utf8_lines += 1;
                        Ok(None)
                    }
                }
            }
        }
    }

    fn emit(&mut self, index: u32, text: String) -> Option<Document> {
        if text.trim().is_empty() {
            self.empty_documents += 1;
            return None;
        }
        if let Some(file) = self.current.as_mut() {
            file.documents += 1;
        }
        self.documents += 1;
        Some(Document { source: index, text })
    }

    fn close_current(&mut self) {
        if let Some(file) = self.current.take() {
            if file.documents == 0 {
                self.empty_files += 1;
            }
            if let Some(d) = file.digest {
                let d = d.lock().expect("digest lock");
                self.digests.lock().expect("digests lock").insert(file.index, (d.size, d.hex()));
            }
        }
    }

    /// Read one line of the current file into `self.line`; false at its end.
    fn read_line(&mut self) -> Result<bool> {
        let file = self.current.as_mut().expect("a file is open");
        let Body::Lines(lines) = &mut file.body else { unreachable!("a text file") };
        let mut line = std::mem::take(&mut self.line);
        let result = lines.next_line(&mut line);
        self.line = line;
        result.map_err(|e| read_error(&file.path, file.compression, e))
    }

    /// One row of a columnar file or one text of the source.
    fn next_row_document(&mut self, index: u32) -> Result<Step> {
        let file = self.current.as_mut().expect("a file is open");
        let text = match &mut file.body {
            Body::Columns(columns) => match columns.next_text()? {
                None => return Ok(Step::EndOfFile(None)),
                Some(text) => text.unwrap_or_default(),
            },
            Body::Source { source, buffer } => {
                while buffer.is_empty() {
                    let mut texts = Vec::new();
                    if !source.next_texts(&mut texts)? {
                        return Ok(Step::EndOfFile(None));
                    }
                    buffer.extend(texts);
                }
                let text = buffer.pop_front().expect("buffer is not empty");
                let mut d = file.digest.as_ref().expect("a source has a digest").lock().expect("digest lock");
                d.update_record(text.as_bytes());
                self.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                text
            }
            Body::Lines(_) => unreachable!("a columnar file or a source"),
        };
        Ok(self.emit(index, text).map_or(Step::Skipped, Step::Doc))
    }

    fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            if self.current.is_none() {
                if self.next_file >= self.files.len() {
                    return Ok(None);
                }
                let index = u32::try_from(self.next_file)
                    .map_err(|_| Error::config("too many input files (more than 2^32)"))?;
                let path = self.files[self.next_file].clone();
                self.next_file += 1;
                let source = if self.next_file == self.files.len() { self.source.take() } else { None };
                self.current = Some(match source {
                    Some(source) => OpenFile {
                        index,
                        path,
                        compression: Compression::None,
                        kind: Kind::Source,
                        body: Body::Source { source, buffer: Default::default() },
                        documents: 0,
                        digest: Some(Default::default()),
                    },
                    None => open_file(index, &path, &self.cfg, &self.bytes)?,
                });
            }
            let file = self.current.as_ref().expect("a file is open");
            let (index, kind) = (file.index, file.kind);
            let doc = match (kind, self.cfg.doc_mode) {
                (Kind::JsonLines, _) => self.next_json_document(index)?,
                (Kind::Parquet | Kind::Arrow | Kind::Source, _) => self.next_row_document(index)?,
                (Kind::Plain, DocMode::OneDocPerLine) => self.next_line_document(index)?,
                (Kind::Plain, DocMode::BlankLine | DocMode::SentencesPerLine) => self.next_paragraph_document(index)?,
            };
            match doc {
                Step::Doc(doc) => return Ok(Some(doc)),
                Step::Skipped => continue,
                Step::EndOfFile(doc) => {
                    self.close_current();
                    if let Some(doc) = doc {
                        return Ok(Some(doc));
                    }
                }
            }
        }
    }

    fn next_json_document(&mut self, index: u32) -> Result<Step> {
        if !self.read_line()? {
            return Ok(Step::EndOfFile(None));
        }
        if self.line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Step::Skipped);
        }
        let Some(line) = self.decode_line()? else {
            return Ok(Step::Skipped);
        };
        let file = self.current.as_ref().expect("a file is open");
        let field = &self.cfg.text_field;
        let text = match parse_record(&line, field) {
            Ok(Record::Text(text)) => text,
            Ok(Record::Missing) => {
                return Err(Error::input(
                    &file.path,
                    file.lines().line_no,
                    format!("no field {field:?} in the JSON object"),
                ));
            }
            Ok(Record::NotString(kind)) => {
                return Err(Error::input(
                    &file.path,
                    file.lines().line_no,
                    format!("field {field:?} is {kind}, expected a string"),
                ));
            }
            Ok(Record::NotObject(kind)) => {
                return Err(Error::input(
                    &file.path,
                    file.lines().line_no,
                    format!("expected a JSON object with a {field:?} field, found {kind}"),
                ));
            }
            Err(e) => {
                return Err(Error::input(
                    &file.path,
                    file.lines().line_no,
                    format!("invalid JSON (expected one object per line): {e}"),
                ));
            }
        };
        Ok(self.emit(index, text).map_or(Step::Skipped, Step::Doc))
    }

    fn next_line_document(&mut self, index: u32) -> Result<Step> {
        if !self.read_line()? {
            return Ok(Step::EndOfFile(None));
        }
        let Some(line) = self.decode_line()? else {
            return Ok(Step::Skipped);
        };
        Ok(self.emit(index, line).map_or(Step::Skipped, Step::Doc))
    }

    fn next_paragraph_document(&mut self, index: u32) -> Result<Step> {
        loop {
            if !self.read_line()? {
                let text = std::mem::take(&mut self.pending);
                let doc = if text.is_empty() { None } else { self.emit(index, text) };
                return Ok(Step::EndOfFile(doc));
            }
            let Some(line) = self.decode_line()? else {
                continue;
            };
            if line.trim().is_empty() {
                if self.pending.is_empty() {
                    continue;
                }
                let text = std::mem::take(&mut self.pending);
                return Ok(self.emit(index, text).map_or(Step::Skipped, Step::Doc));
            }
            if self.pending.is_empty() {
                self.pending = line;
            } else {
                self.pending.push('\n');
                self.pending.push_str(&line);
            }
        }
    }
}

enum Step {
    Doc(Document),
    Skipped,
    /// The current file ended; possibly with its last document.
    EndOfFile(Option<Document>),
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_formats;
