//! Expected outputs below were checked against HF `tokenizers` 0.23 (BertWordPieceTokenizer on the
//! same vocab.txt; a Tokenizer with the ELC pre-tokenizer for the byte-level cases).

use std::io::Write;
use std::path::PathBuf;

use super::*;

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p).unwrap().write_all(content.as_bytes()).unwrap();
    p
}

fn vocab_file(dir: &tempfile::TempDir, extra: &[&str]) -> PathBuf {
    let mut lines: Vec<&str> = SPECIALS.to_vec();
    lines.extend_from_slice(extra);
    write(dir, "vocab.txt", &(lines.join("\n") + "\n"))
}

fn pieces(t: &Tokenizer, text: &str) -> Vec<String> {
    t.encode(text).iter().map(|&i| t.token(i).to_string()).collect()
}

const BERT_EXTRA: &[&str] = &[
    "hello", "world", "##s", "cafe", "!", ",", ".", "中", "文", "un", "##aff", "##able", "a", "##b", "σ", "ο", "δ",
    "##ο", "##δ", "##σ", "$", "«", "»", "—", "e", "x", "##x", "😀", "resume", "i", "##i", "̇", "[", "]", "mask", "#",
    "##", "ß", "ss", "n", "°", "€", "ff",
];

fn bert(dir: &tempfile::TempDir) -> Tokenizer {
    Tokenizer::from_file(&vocab_file(dir, BERT_EXTRA), None).unwrap()
}

#[test]
fn bert_basic_and_punctuation() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    assert_eq!(pieces(&t, "Hello, world!"), ["hello", ",", "world", "!"]);
    assert_eq!(pieces(&t, "unaffable worlds"), ["un", "##aff", "##able", "world", "##s"]);
    assert_eq!(pieces(&t, "$«hello»—world"), ["$", "«", "hello", "»", "—", "world"]);
    assert_eq!(pieces(&t, ""), Vec::<String>::new());
    assert_eq!(pieces(&t, "   \t\n "), Vec::<String>::new());
    // Unknown word → one [UNK]; unknown punctuation char → [UNK].
    assert_eq!(pieces(&t, "hellx zzz ¿"), ["[UNK]", "[UNK]", "[UNK]"]);
    // Symbols that are not punctuation stay in the word.
    assert_eq!(pieces(&t, "€ 5€"), ["€", "[UNK]"]);
}

#[test]
fn bert_accents_case_and_cjk() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    assert_eq!(pieces(&t, "Café RÉSUMÉ"), ["cafe", "resume"]);
    // Decomposed input: the combining acute (Mn) is dropped too.
    assert_eq!(pieces(&t, "cafe\u{301}"), ["cafe"]);
    // Char-by-char lowercase: no final sigma.
    assert_eq!(pieces(&t, "ΟΔΟΣ"), ["ο", "##δ", "##ο", "##σ"]);
    // İ: NFD gives I + U+0307 (Mn, dropped), then lowercase.
    assert_eq!(pieces(&t, "İ"), ["i"]);
    // CJK ideographs are split out even inside words.
    assert_eq!(pieces(&t, "hello中文world"), ["hello", "中", "文", "world"]);
    assert_eq!(pieces(&t, "😀"), ["😀"]);
    // ß lowercases to itself; ﬀ (compatibility ligature) is not touched by NFD.
    assert_eq!(pieces(&t, "ß ﬀ"), ["ß", "[UNK]"]);
}

#[test]
fn bert_without_lowercase_keeps_case_and_accents() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tokenizer::from_file(&vocab_file(&dir, BERT_EXTRA), Some(false)).unwrap();
    assert_eq!(pieces(&t, "Hello cafe"), ["[UNK]", "cafe"]);
    assert_eq!(pieces(&t, "İ"), ["[UNK]"]);
    assert!(!t.info().lowercase);
    assert_eq!(t.info().strip_accents, Some(false));
}

#[test]
fn bert_cleaning_controls_and_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    // NUL, U+FFFD, a control char and a zero-width space (Cf) vanish without splitting.
    assert_eq!(pieces(&t, "hel\u{0}lo wo\u{FFFD}rld"), ["hello", "world"]);
    assert_eq!(pieces(&t, "hel\u{7}lo wor\u{200B}ld"), ["hello", "world"]);
    // \x0b and \x0c are Cc: dropped, not spaces.
    assert_eq!(pieces(&t, "hel\u{B}lo\u{C}"), ["hello"]);
    // Unicode spaces split.
    assert_eq!(
        pieces(&t, "hello\u{A0}world\u{3000}hello\u{2009}world\u{2028}a"),
        ["hello", "world", "hello", "world", "a"]
    );
}

#[test]
fn bert_long_words_and_hash_edges() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    let exactly_100 = "x".repeat(100);
    assert_eq!(t.encode(&exactly_100).len(), 100);
    assert_eq!(pieces(&t, &"x".repeat(101)), ["[UNK]"]);
    // '#' is punctuation, so "##" never reaches WordPiece as a word.
    assert_eq!(pieces(&t, "##ab"), ["#", "#", "a", "##b"]);
    assert_eq!(pieces(&t, "a##b"), ["a", "#", "#", "[UNK]"]);
}

#[test]
fn special_tokens_in_text_are_matched_raw() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    assert_eq!(pieces(&t, "x[SEP]hello"), ["x", "[SEP]", "hello"]);
    assert_eq!(pieces(&t, "[MASK][MASK]"), ["[MASK]", "[MASK]"]);
    assert_eq!(pieces(&t, "[mask]"), ["[", "mask", "]"]);
}

#[test]
fn info_specials_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    let s = t.specials();
    assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
    assert_eq!(t.vocab_size(), 5 + BERT_EXTRA.len());
    let info = t.info();
    assert_eq!(info.source, "vocab.txt");
    assert_eq!(info.pipeline, "bert");
    assert_eq!(info.special_tokens.len(), 5);
    let mut content = SPECIALS.join("\n");
    content.push('\n');
    content.push_str(&BERT_EXTRA.join("\n"));
    content.push('\n');
    let digest: String = Sha256::digest(content.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(info.vocab_sha256, digest);
    let ids = t.encode("unaffable worlds!");
    assert_eq!(t.decode(&ids), "unaffable worlds !");
    assert!(t.is_continuation(t.token_to_id("##s").unwrap()));
    assert!(!t.is_continuation(t.token_to_id("hello").unwrap()));
    assert_eq!(t.token(1_000_000), "");
    assert_eq!(t.token_to_id("nope"), None);
}

#[test]
fn batch_matches_single_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let t = bert(&dir);
    let texts: Vec<String> =
        (0..500).map(|i| format!("Hello{} world{}s café {}", "!".repeat(i % 3), i, "中".repeat(i % 2))).collect();
    let single: Vec<Vec<u32>> = texts.iter().map(|s| t.encode(s)).collect();
    for threads in [1, 2, 3] {
        assert_eq!(t.encode_batch(&texts, threads).unwrap(), single);
    }
}

#[test]
fn vocab_errors_name_file_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "vocab.txt", "[PAD]\n[UNK]\n[SEP]\nhello\n");
    let e = Tokenizer::from_file(&p, None).err().unwrap().to_string();
    assert!(e.contains("vocab.txt"), "{e}");
    assert!(e.contains("missing special tokens [CLS], [MASK] ("), "{e}");
    let p = write(&dir, "empty.txt", "");
    let e = Tokenizer::from_file(&p, None).err().unwrap().to_string();
    assert!(e.contains("[UNK]") && e.contains("empty.txt"), "{e}");
    let missing = dir.path().join("nope.txt");
    match Tokenizer::from_file(&missing, None) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io error, got {:?}", other.err()),
    }
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"[PAD]\n\xff\xfe\n").unwrap();
    let e = Tokenizer::from_file(&bad, None).err().unwrap().to_string();
    assert!(e.contains("bad.txt:2"), "{e}");
}

#[test]
fn vocab_duplicates_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    // "a  " is trimmed to "a"; the later "a" wins, like HF.
    let p = write(&dir, "v.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\na  \r\nb\r\na");
    let t = Tokenizer::from_file(&p, None).unwrap();
    assert_eq!(t.vocab_size(), 8);
    assert_eq!(t.encode("a b"), [7, 6]);
    assert_eq!(t.token(5), "a");
}

#[test]
fn large_vocab_ids_above_u16() {
    let dir = tempfile::tempdir().unwrap();
    let mut extra: Vec<String> = (0..70_000).map(|i| format!("w{i}")).collect();
    extra.push("zebra".into());
    let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    let t = Tokenizer::from_file(&vocab_file(&dir, &refs), None).unwrap();
    assert_eq!(t.encode("ZEBRA w69999"), [70_005, 70_004]);
    assert_eq!(t.vocab_size(), 70_006);
}

fn elc_json(vocab: &[&str], pre: &str, normalizer: &str) -> String {
    let entries: Vec<String> =
        vocab.iter().enumerate().map(|(i, t)| format!("{}: {i}", serde_json::to_string(t).unwrap())).collect();
    let added: Vec<String> = vocab[..7]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"id": {i}, "content": "{t}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [{}],
        "normalizer": {normalizer}, "pre_tokenizer": {pre}, "post_processor": null,
        "decoder": {{"type": "WordPiece", "prefix": "", "cleanup": true}},
        "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "",
        "max_input_chars_per_word": 100, "vocab": {{{}}}}}}}"#,
        added.join(","),
        entries.join(",")
    )
}

const ELC_PRE: &str = r#"{"type": "Sequence", "pretokenizers": [
    {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    {"type": "Digits", "individual_digits": true}]}"#;

const ELC_VOCAB: &[&str] = &[
    "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[PAR]", "[TAB]", "Ġ", "Ġhello", "Ġworld", "'s", "Ġit", "0", "1",
    "2", "9", "Ġcaf", "Ã©", "Ċ", "ĊĊ", "ĉ", "hello", "Â", "ĠÂ", "²", "!", "Ġ!", "wor", "ld", "Ġwor",
];

#[test]
fn byte_level_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "tokenizer.json", &elc_json(ELC_VOCAB, ELC_PRE, "null"));
    let t = Tokenizer::from_file(&p, None).unwrap();
    assert_eq!(t.info().pipeline, "byte_level");
    assert_eq!(t.info().continuing_subword_prefix, "");
    assert_eq!(t.info().special_tokens.len(), 7);
    assert_eq!(pieces(&t, "hello world"), ["Ġhello", "Ġworld"]);
    assert_eq!(pieces(&t, "it's 2019"), ["Ġit", "'s", "Ġ", "2", "0", "1", "9"]);
    assert_eq!(pieces(&t, "\thello"), ["Ġ", "ĉ", "hello"]);
    assert_eq!(pieces(&t, "café"), ["Ġcaf", "Ã©"]);
    assert_eq!(pieces(&t, " ²"), ["ĠÂ", "²"]);
    assert_eq!(pieces(&t, "hello\n\n world!"), ["Ġhello", "ĊĊ", "Ġworld", "!"]);
    // Greedy pieces without a prefix.
    assert_eq!(pieces(&t, "helloworld"), ["Ġhello", "wor", "ld"]);
    // Each text segment around a special token gets its own prefix space.
    assert_eq!(pieces(&t, "hello[SEP]hello[PAR]"), ["Ġhello", "[SEP]", "Ġhello", "[PAR]"]);
    assert_eq!(pieces(&t, ""), Vec::<String>::new());
    assert_eq!(pieces(&t, " "), ["Ġ"]);
    assert_eq!(t.decode(&t.encode("hello world! café")), " hello world! café");
    assert!(!t.is_continuation(t.token_to_id("ld").unwrap()));
    assert!(Tokenizer::from_file(&p, Some(true)).is_err());
}

#[test]
fn json_errors_name_the_unsupported_piece() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, content: &str, needle: &str| {
        let p = write(&dir, name, content);
        let e = Tokenizer::from_file(&p, None).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains(needle), "{e}");
    };
    check("a.json", "{not json", "not a valid tokenizer.json");
    check("b.json", r#"{"model": {"type": "BPE", "vocab": {}}}"#, "\"BPE\"");
    let meta = r#"{"type": "Metaspace", "replacement": "▁"}"#;
    check("c.json", &elc_json(ELC_VOCAB, meta, "null"), "Metaspace");
    let nfkc = r#"{"type": "NFKC"}"#;
    check("d.json", &elc_json(ELC_VOCAB, ELC_PRE, nfkc), "NFKC");
    let mut no_mask: Vec<&str> = ELC_VOCAB.to_vec();
    no_mask[4] = "[MASQUE]";
    let mut s = elc_json(&no_mask, ELC_PRE, "null");
    s = s.replace(r#""content": "[MASK]""#, r#""content": "[MASQUE]""#);
    check("e.json", &s, "missing special token [MASK]");
}

/// `BERTKIT_DATA=... cargo test --release -p bertkit-core throughput -- --ignored --nocapture`
#[test]
#[ignore = "timing; needs BERTKIT_DATA"]
fn throughput_on_news() {
    let Ok(data) = std::env::var("BERTKIT_DATA") else {
        return;
    };
    let data = PathBuf::from(data);
    let text = std::fs::read_to_string(data.join("news.txt")).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    let t = Tokenizer::from_file(&data.join("vocab.txt"), None).unwrap();
    let mb = text.len() as f64 / 1e6;
    for threads in [1, 2] {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            n = if threads == 1 {
                let mut out = Vec::new();
                let mut total = 0;
                for l in &lines {
                    out.clear();
                    t.encode_into(l, &mut out);
                    total += out.len();
                }
                total
            } else {
                t.encode_batch(&lines, threads).unwrap().iter().map(Vec::len).sum()
            };
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!("{threads} thread(s): median {:.1} MB/s ({n} tokens)", mb / times[2]);
    }
}
