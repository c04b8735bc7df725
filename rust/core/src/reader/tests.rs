use std::io::Write;

use super::*;

fn cfg(doc_mode: DocMode, on_invalid_utf8: InvalidUtf8) -> ReaderConfig {
    ReaderConfig { doc_mode, text_field: "text".to_string(), on_invalid_utf8 }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Read everything with the given batch size; returns (documents, batch count).
fn read_all_batched(files: &[PathBuf], cfg: &ReaderConfig, max_bytes: usize) -> Result<(Vec<Document>, usize)> {
    let mut reader = DocumentReader::new(files.to_vec(), cfg.clone());
    let mut all = Vec::new();
    let mut batches = 0;
    loop {
        let mut batch = Vec::new();
        if !reader.next_batch(max_bytes, &mut batch)? {
            assert!(batch.is_empty());
            break;
        }
        assert!(!batch.is_empty());
        batches += 1;
        all.extend(batch);
    }
    Ok((all, batches))
}

fn read_all(files: &[PathBuf], cfg: &ReaderConfig) -> Result<Vec<Document>> {
    Ok(read_all_batched(files, cfg, 1 << 30)?.0)
}

fn texts(docs: &[Document]) -> Vec<&str> {
    docs.iter().map(|d| d.text.as_str()).collect()
}

fn read_texts(bytes: &[u8], name: &str, cfg: &ReaderConfig) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, bytes);
    read_all(&[path], cfg).unwrap().into_iter().map(|d| d.text).collect()
}

fn reader_for(path: &Path, cfg: ReaderConfig) -> DocumentReader {
    DocumentReader::new(vec![path.to_path_buf()], cfg)
}

fn blank() -> ReaderConfig {
    cfg(DocMode::BlankLine, InvalidUtf8::Error)
}

#[test]
fn blank_line_mode_splits_on_blank_and_whitespace_lines() {
    let input = b"\n\nFirst line.\nSecond line.\n\n\n  \t \nOther doc.\n \nLast doc, no newline";
    let docs = read_texts(input, "a.txt", &blank());
    assert_eq!(docs, vec!["First line.\nSecond line.", "Other doc.", "Last doc, no newline"]);
}

#[test]
fn blank_line_mode_unicode_whitespace_line_ends_document() {
    // U+3000 IDEOGRAPHIC SPACE and U+00A0 NO-BREAK SPACE are whitespace.
    let input = "a\n\u{3000}\u{a0}\nb\n".as_bytes();
    assert_eq!(read_texts(input, "a.txt", &blank()), vec!["a", "b"]);
}

#[test]
fn one_doc_per_line_counts_empty_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.txt", b"one\ntwo two\n\n   \nthree\n");
    let mut reader = reader_for(&path, cfg(DocMode::OneDocPerLine, InvalidUtf8::Error));
    let mut out = Vec::new();
    assert!(reader.next_batch(usize::MAX, &mut out).unwrap());
    assert_eq!(texts(&out), vec!["one", "two two", "three"]);
    assert_eq!(reader.skipped()["empty_documents"], 2);
    assert!(!reader.next_batch(usize::MAX, &mut out).unwrap());
}

#[test]
fn sentences_per_line_keeps_line_breaks() {
    let input = b"Sentence one.\nSentence two.\nSentence three.\n\nNext doc first.\nNext doc second.\n";
    let docs = read_texts(input, "a.txt", &cfg(DocMode::SentencesPerLine, InvalidUtf8::Error));
    assert_eq!(docs, vec!["Sentence one.\nSentence two.\nSentence three.", "Next doc first.\nNext doc second."]);
}

#[test]
fn crlf_cr_and_mixed_newlines_match_lf() {
    let lf = b"a b\nc\n\nd\ne\n\n\nf\n".to_vec();
    let crlf = b"a b\r\nc\r\n\r\nd\r\ne\r\n\r\n\r\nf\r\n".to_vec();
    let cr = b"a b\rc\r\rd\re\r\r\rf\r".to_vec();
    let mixed = b"a b\r\nc\r\n\rd\ne\r\r\n\nf".to_vec();
    for mode in [DocMode::BlankLine, DocMode::OneDocPerLine, DocMode::SentencesPerLine] {
        let c = cfg(mode, InvalidUtf8::Error);
        let expected = read_texts(&lf, "lf.txt", &c);
        assert!(expected.len() >= 3);
        for (name, bytes) in [("crlf", &crlf), ("cr", &cr), ("mixed", &mixed)] {
            assert_eq!(read_texts(bytes, "x.txt", &c), expected, "{name} in {mode:?}");
        }
    }
    assert_eq!(read_texts(&cr, "cr.txt", &blank()), vec!["a b\nc", "d\ne", "f"]);
}

#[test]
fn crlf_split_across_buffer_boundary() {
    // A CR exactly at the end of the 1 MiB buffer must still pair with the LF that follows.
    let mut input = vec![b'x'; BUF_SIZE - 1];
    input.extend_from_slice(b"\r\n\r\ny\r\n");
    let docs = read_texts(&input, "a.txt", &blank());
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].len(), BUF_SIZE - 1);
    assert_eq!(docs[1], "y");
}

#[test]
fn gz_plain_and_jsonl_gz() {
    let dir = tempfile::tempdir().unwrap();
    let plain = b"p1 line\n\np2\n";
    let jsonl = b"{\"text\": \"j1\"}\n{\"id\": 2, \"text\": \"j2\\nsecond line\"}\n";
    let files = vec![
        write(dir.path(), "a.txt.gz", &gzip(plain)),
        write(dir.path(), "b.JSONL.GZ", &gzip(jsonl)),
        write(dir.path(), "c.gz", &gzip(plain)),
    ];
    let docs = read_all(&files, &blank()).unwrap();
    assert_eq!(texts(&docs), vec!["p1 line", "p2", "j1", "j2\nsecond line", "p1 line", "p2"]);
    assert_eq!(docs.iter().map(|d| d.source).collect::<Vec<_>>(), vec![0, 0, 1, 1, 2, 2]);
}

#[test]
fn multi_member_gz_is_read_completely() {
    let mut bytes = gzip(b"first member\n\n");
    bytes.extend(gzip(b"second member\n"));
    assert_eq!(read_texts(&bytes, "m.txt.gz", &blank()), vec!["first member", "second member"]);
}

#[test]
fn truncated_gz_is_a_format_error_naming_the_file() {
    let text: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    let bytes = gzip(text.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cut.txt.gz", &bytes[..bytes.len() / 2]);
    let err = read_all(std::slice::from_ref(&path), &blank()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.txt.gz"), "{err}");
}

#[test]
fn bytes_read_counts_disk_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..5000).map(|i| format!("doc {i} has some words\n\n")).collect();
    let plain = write(dir.path(), "a.txt", text.as_bytes());
    let gz_bytes = gzip(text.as_bytes());
    let gz = write(dir.path(), "a.txt.gz", &gz_bytes);
    let mut reader = DocumentReader::new(vec![plain, gz], blank());
    assert_eq!(reader.bytes_read(), 0);
    let mut out = Vec::new();
    while reader.next_batch(1000, &mut out).unwrap() {}
    assert_eq!(out.len(), 10000);
    assert_eq!(reader.bytes_read(), (text.len() + gz_bytes.len()) as u64);
}

#[test]
fn jsonl_reads_field_and_ignores_blank_lines() {
    let input = b"{\"title\": \"T\", \"body\": {\"x\": [1, 2]}, \"text\": \"caf\\u00e9 \\\"q\\\"\"}\n\n   \r\n{\"text\": \"two\"}";
    let docs = read_texts(input, "a.jsonl", &blank());
    assert_eq!(docs, vec!["café \"q\"", "two"]);
    // Another field name; the doc mode does not apply to JSON Lines.
    let c = ReaderConfig { text_field: "body".into(), ..cfg(DocMode::OneDocPerLine, InvalidUtf8::Error) };
    assert_eq!(read_texts(b"{\"body\": \"a\\n\\nb\"}\n", "x.ndjson", &c), vec!["a\n\nb"]);
}

#[test]
fn jsonl_empty_text_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.json", b"{\"text\": \"\"}\n{\"text\": \" \\n\\t\"}\n{\"text\": \"x\"}\n");
    let mut reader = reader_for(&path, blank());
    let mut out = Vec::new();
    reader.next_batch(usize::MAX, &mut out).unwrap();
    assert_eq!(texts(&out), vec!["x"]);
    assert_eq!(reader.skipped()["empty_documents"], 2);
}

fn jsonl_error(input: &[u8]) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.jsonl", input);
    read_all(&[path], &blank()).unwrap_err()
}

#[test]
fn jsonl_bad_json_names_file_and_line() {
    let err = jsonl_error(b"{\"text\": \"ok\"}\n\n{\"text\": \"unterminated}\n");
    match &err {
        Error::Input { path, line, message } => {
            assert!(path.ends_with("bad.jsonl"));
            assert_eq!(*line, 3);
            assert!(message.contains("invalid JSON"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("bad.jsonl:3:"), "{err}");
    // Trailing garbage after a valid object.
    assert!(matches!(jsonl_error(b"{\"text\": \"a\"} x\n"), Error::Input { line: 1, .. }));
    // CRLF line numbers.
    assert!(matches!(jsonl_error(b"{\"text\": \"a\"}\r\n{\r\n"), Error::Input { line: 2, .. }));
}

#[test]
fn jsonl_missing_or_non_string_field() {
    let err = jsonl_error(b"{\"text\": \"a\"}\n{\"txt\": \"b\"}\n");
    assert!(matches!(&err, Error::Input { line: 2, message, .. } if message.contains("no field \"text\"")), "{err}");
    let err = jsonl_error(b"{\"text\": 5}\n");
    assert!(matches!(&err, Error::Input { line: 1, message, .. } if message.contains("a number")), "{err}");
    let err = jsonl_error(b"{\"text\": null}\n");
    assert!(matches!(&err, Error::Input { line: 1, message, .. } if message.contains("null")), "{err}");
    let err = jsonl_error(b"[\"text\", \"a\"]\n");
    assert!(matches!(&err, Error::Input { line: 1, message, .. } if message.contains("an array")), "{err}");
    let err = jsonl_error(b"\"just a string\"\n");
    assert!(matches!(&err, Error::Input { line: 1, message, .. } if message.contains("a string")), "{err}");
}

#[test]
fn invalid_utf8_error_gives_exact_offset() {
    let dir = tempfile::tempdir().unwrap();
    // 'é' is valid (2 bytes); the lone 0xff is at offset 3 + 6 + 1 + 2 = 12 (BOM included).
    let mut input = vec![0xef, 0xbb, 0xbf];
    input.extend_from_slice("abcdé\n".as_bytes()); // 3..10
    input.extend_from_slice(b"\n"); // 10
    input.extend_from_slice(b"xy\xffz\n"); // x at 11, y 12, 0xff at 13
    let path = write(dir.path(), "bad.txt", &input);
    let err = read_all(std::slice::from_ref(&path), &blank()).unwrap_err();
    match &err {
        Error::InvalidUtf8 { path: p, offset } => {
            assert_eq!(p, &path);
            assert_eq!(*offset, 13);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("byte offset 13"));
    // In a gz file the offset is in the decompressed stream; a truncated sequence at the very end.
    let gz = write(dir.path(), "bad.txt.gz", &gzip(b"ok\r\nok\xe2\x82"));
    match read_all(&[gz], &blank()).unwrap_err() {
        Error::InvalidUtf8 { offset, .. } => assert_eq!(offset, 6),
        other => panic!("{other:?}"),
    }
    // Past the first buffer: offsets are absolute.
    let mut long = vec![b'a'; BUF_SIZE + 10];
    long[BUF_SIZE + 3] = b'\n';
    long[BUF_SIZE + 5] = 0xc0;
    let path = write(dir.path(), "long.txt", &long);
    match read_all(&[path], &blank()).unwrap_err() {
        Error::InvalidUtf8 { offset, .. } => assert_eq!(offset, (BUF_SIZE + 5) as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_replace_and_skip() {
    let input = b"good one\nba\xffd\nstill doc one\n\nsecond \xc3\x28doc\n\nthird\n";
    let replaced = read_texts(input, "a.txt", &cfg(DocMode::BlankLine, InvalidUtf8::Replace));
    assert_eq!(replaced, vec!["good one\nba\u{fffd}d\nstill doc one", "second \u{fffd}(doc", "third"]);

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.txt", input);
    let mut reader = reader_for(&path, cfg(DocMode::BlankLine, InvalidUtf8::Skip));
    let mut out = Vec::new();
    reader.next_batch(usize::MAX, &mut out).unwrap();
    assert_eq!(texts(&out), vec!["good one\nstill doc one", "third"]);
    assert_eq!(reader.skipped()["invalid_utf8_lines"], 2);

    // JSON Lines: skip drops the record; replace decodes lossily before parsing.
    let jsonl = b"{\"text\": \"a\xff\"}\n{\"text\": \"b\"}\n";
    let path = write(dir.path(), "a.jsonl", jsonl);
    let mut reader = reader_for(&path, cfg(DocMode::BlankLine, InvalidUtf8::Skip));
    let mut out = Vec::new();
    reader.next_batch(usize::MAX, &mut out).unwrap();
    assert_eq!(texts(&out), vec!["b"]);
    assert_eq!(reader.skipped()["invalid_utf8_lines"], 1);
    let replaced = read_texts(jsonl, "b.jsonl", &cfg(DocMode::BlankLine, InvalidUtf8::Replace));
    assert_eq!(replaced, vec!["a\u{fffd}", "b"]);
}

#[test]
fn bom_is_removed() {
    let docs = read_texts(b"\xef\xbb\xbfHello\n\nWorld\n", "a.txt", &blank());
    assert_eq!(docs, vec!["Hello", "World"]);
    let docs = read_texts(b"\xef\xbb\xbf{\"text\": \"j\"}\n", "a.jsonl", &blank());
    assert_eq!(docs, vec!["j"]);
    // Only at the start of the file.
    let docs = read_texts(b"a\n\n\xef\xbb\xbfb\n", "a.txt", &blank());
    assert_eq!(docs, vec!["a", "\u{feff}b"]);
}

#[test]
fn binary_files_are_rejected_but_isolated_nul_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = Vec::new();
    for i in 0..4000u32 {
        binary.extend_from_slice(&i.to_le_bytes());
    }
    let path = write(dir.path(), "weights.txt", &binary);
    let err = read_all(std::slice::from_ref(&path), &blank()).unwrap_err();
    assert!(matches!(&err, Error::Format { path: p, message } if p == &path && message.contains("binary")), "{err}");
    // Same inside a gz.
    let gz = write(dir.path(), "weights.txt.gz", &gzip(&binary));
    assert!(matches!(read_all(&[gz], &blank()).unwrap_err(), Error::Format { .. }));
    // UTF-16 with a BOM, and gzip data without the .gz extension.
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain("hi\n".encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let path = write(dir.path(), "u16.txt", &utf16);
    assert!(read_all(&[path], &blank()).unwrap_err().to_string().contains("UTF-16"));
    let path = write(dir.path(), "hidden_gz.txt", &gzip(b"text\n"));
    assert!(read_all(&[path], &blank()).unwrap_err().to_string().contains("gzip"));
    // An isolated NUL and control characters stay in the text.
    let mut text = b"a\x00b\x07c ".to_vec();
    text.extend(std::iter::repeat_n(b'x', 500));
    let docs = read_texts(&text, "nul.txt", &blank());
    assert!(docs[0].starts_with("a\u{0}b\u{7}c "));
}

#[test]
fn empty_files_and_whitespace_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        write(dir.path(), "empty.txt", b""),
        write(dir.path(), "ws.txt", b"  \n\t\n\r\n"),
        write(dir.path(), "empty.jsonl", b"\n\n"),
        write(dir.path(), "empty.txt.gz", &gzip(b"")),
        write(dir.path(), "real.txt", b"real\n"),
    ];
    let mut reader = DocumentReader::new(files, blank());
    let mut out = Vec::new();
    assert!(reader.next_batch(0, &mut out).unwrap());
    assert_eq!(out, vec![Document { source: 4, text: "real".into() }]);
    assert!(!reader.next_batch(0, &mut out).unwrap());
    let skipped = reader.skipped();
    assert_eq!(skipped["empty_files"], 4);
    assert_eq!(skipped["empty_documents"], 0);
    assert_eq!(skipped["invalid_utf8_lines"], 0);
    // No files at all with a documents-free input: fine, nothing returned.
    let mut reader = DocumentReader::new(vec![dir.path().join("empty.txt")], blank());
    assert!(!reader.next_batch(10, &mut out).unwrap());
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let err = read_all(std::slice::from_ref(&missing), &blank()).unwrap_err();
    assert!(matches!(&err, Error::Io { path, source } if path == &missing && source.kind() == io::ErrorKind::NotFound));
    let err = expand_inputs(&[missing.to_string_lossy().into_owned()]).unwrap_err();
    assert!(matches!(&err, Error::Io { path, source } if path == &missing && source.kind() == io::ErrorKind::NotFound));
    assert!(err.to_string().contains("nope.txt"));
}

#[test]
fn expand_directories_globs_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in ["b.txt", "a/z.txt", "a/b/c.jsonl", "a.txt", ".hidden.txt", "a/.git/config", "c/.x", "d.gz"] {
        write(root, name, b"x\n");
    }
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let rel = |files: Vec<PathBuf>| -> Vec<String> { files.iter().map(|p| s(p.strip_prefix(root).unwrap())).collect() };
    let files = expand_inputs(&[s(root)]).unwrap();
    assert_eq!(rel(files), vec!["a/b/c.jsonl", "a/z.txt", "a.txt", "b.txt", "d.gz"]);

    let files = expand_inputs(&[s(&root.join("*.txt"))]).unwrap();
    assert_eq!(rel(files), vec!["a.txt", "b.txt"]);
    let files = expand_inputs(&[s(&root.join("a/**/*"))]).unwrap();
    assert_eq!(rel(files), vec!["a/b/c.jsonl", "a/z.txt"]);
    let files = expand_inputs(&[s(&root.join("[bd].*"))]).unwrap();
    assert_eq!(rel(files), vec!["b.txt", "d.gz"]);

    // Order of specs is kept; duplicates dropped keeping the first occurrence.
    let files = expand_inputs(&[s(&root.join("b.txt")), s(&root.join("*.txt")), s(&root.join("a/../a.txt"))]).unwrap();
    assert_eq!(rel(files), vec!["b.txt", "a.txt"]);

    // A file given explicitly is read even when hidden.
    let files = expand_inputs(&[s(&root.join(".hidden.txt"))]).unwrap();
    assert_eq!(rel(files), vec![".hidden.txt"]);

    // Nothing matches: errors naming the spec.
    let err = expand_inputs(&[s(&root.join("*.parquet"))]).unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("*.parquet")), "{err}");
    let err = expand_inputs(&[s(&root.join("c"))]).unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("no (non-hidden) files")), "{err}");
    assert!(matches!(expand_inputs(&[]).unwrap_err(), Error::Config(_)));
    let err = expand_inputs(&[s(&root.join("[z"))]).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn multi_megabyte_single_line() {
    let dir = tempfile::tempdir().unwrap();
    let size = 24 << 20;
    let mut big = Vec::with_capacity(size + 10);
    while big.len() < size {
        big.extend_from_slice("wörd ".as_bytes());
    }
    let big_len = big.len();
    big.extend_from_slice(b"\n\nafter\n");
    let path = write(dir.path(), "big.txt", &big);
    let gz = write(dir.path(), "big.txt.gz", &gzip(&big));
    for c in [blank(), cfg(DocMode::OneDocPerLine, InvalidUtf8::Error)] {
        let docs = read_all(&[path.clone(), gz.clone()], &c).unwrap();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].text.len(), big_len);
        assert!(docs[0].text.starts_with("wörd wörd"));
        assert!(docs[0].text == docs[2].text && docs[2].source == 1);
        assert_eq!(docs[3].text, "after");
    }
    // A CR-only file is split at the CRs, not read as one line.
    let cr: Vec<u8> = b"line\r".repeat(200_000);
    let docs = read_texts(&cr, "cr.txt", &cfg(DocMode::OneDocPerLine, InvalidUtf8::Error));
    assert_eq!(docs.len(), 200_000);
}

#[test]
fn batches_never_split_documents_and_do_not_change_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut state = 12345u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for f in 0..4 {
        let mut text = String::new();
        for d in 0..(50 + next() % 50) {
            for s in 0..(1 + next() % 5) {
                text.push_str(&format!("f{f} d{d} s{s} {}", "w ".repeat(next() % 40)));
                text.push_str(["\n", "\r\n", "\r"][next() % 3]);
            }
            text.push_str(["\n", "\r\n", "  \n\n"][next() % 3]);
        }
        let name = format!("f{f}.txt");
        files.push(if f == 2 {
            write(dir.path(), &(name + ".gz"), &gzip(text.as_bytes()))
        } else {
            write(dir.path(), &name, text.as_bytes())
        });
    }
    let c = cfg(DocMode::SentencesPerLine, InvalidUtf8::Error);
    let (reference, batches) = read_all_batched(&files, &c, usize::MAX).unwrap();
    assert_eq!(batches, 1);
    assert!(reference.len() > 200);
    for doc in &reference {
        // Whole documents: every document's first sentence is s0 and none holds a blank line.
        assert!(doc.text.split(' ').nth(2) == Some("s0"), "{:?}", doc.text);
        assert!(!doc.text.contains("\n\n") && !doc.text.contains('\r'));
    }
    for max_bytes in [0, 1, 7, 100, 1000, 4096, 100_000] {
        let mut reader = DocumentReader::new(files.clone(), c.clone());
        let mut all = Vec::new();
        let mut batch = Vec::new();
        while reader.next_batch(max_bytes, &mut batch).unwrap() {
            let bytes: usize = batch.iter().map(|d| d.text.len()).sum();
            // Stops as soon as max_bytes is reached: without its last document it was below.
            assert!(bytes - batch.last().unwrap().text.len() < max_bytes.max(1));
            all.append(&mut batch);
        }
        let all_bytes: usize = all.iter().map(|d| d.text.len()).sum();
        assert_eq!(all, reference, "max_bytes={max_bytes} ({all_bytes} bytes)");
    }
}
