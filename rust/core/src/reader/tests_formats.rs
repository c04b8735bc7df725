//! Compressed text, Parquet, Arrow IPC and datasets folders: same documents as the plain formats;
//! bad input is an error naming the file.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut reader = DocumentReader::new(files.to_vec(), ReaderConfig::default());
    let mut out = Vec::new();
    while reader.next_batch(1000, &mut out)? {}
    Ok(out.into_iter().map(|d| d.text).collect())
}

const JSONL: &[u8] = b"{\"text\": \"first doc\"}\n{\"text\": \"second\\nlines\"}\n{\"text\": \"third\"}\n";
const TEXTS: [&str; 3] = ["first doc", "second\nlines", "third"];

fn zst(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}
fn bz2(b: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}
fn xz(b: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn zst_bz2_xz_of_jsonl_and_text_read_like_plain() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"a b\nc\n\nd e\n";
    for (ext, enc) in [("zst", zst as fn(&[u8]) -> Vec<u8>), ("bz2", bz2), ("xz", xz)] {
        // Two concatenated frames/streams/members are read completely.
        let mut twice = enc(JSONL);
        twice.extend(enc(JSONL));
        let p = write(dir.path(), &format!("a.jsonl.{ext}"), &twice);
        let docs = read(&[p]).unwrap();
        assert_eq!(docs, [TEXTS, TEXTS].concat(), "{ext}");
        let p = write(dir.path(), &format!("b.TXT.{}", ext.to_uppercase()), &enc(text));
        assert_eq!(read(&[p]).unwrap(), vec!["a b\nc", "d e"], "{ext}");
    }
}

#[test]
fn truncated_compressed_files_are_format_errors_naming_the_file() {
    let big: String = (0..20000).map(|i| format!("{{\"text\": \"document {i}\"}}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    for (ext, enc) in [("zst", zst as fn(&[u8]) -> Vec<u8>), ("bz2", bz2), ("xz", xz)] {
        let bytes = enc(big.as_bytes());
        let p = write(dir.path(), &format!("cut.jsonl.{ext}"), &bytes[..bytes.len() / 2]);
        let err = read(&[p]).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{ext}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("cut.jsonl.{ext}")) && msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn compressed_data_without_its_extension_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.jsonl", &zst(JSONL));
    let msg = read(&[p]).unwrap_err().to_string();
    assert!(msg.contains("zstd") && msg.contains("*.zst"), "{msg}");
}

fn batch(texts: &[Option<&str>]) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..texts.len() as i64));
    let text: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    RecordBatch::try_from_iter([("id", ids), ("text", text)]).unwrap()
}

fn write_parquet(path: &Path, batches: &[RecordBatch], rows_per_group: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn write_arrow_stream(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn parquet_rows_are_documents_and_row_groups_can_be_selected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    let rows: Vec<String> = (0..10).map(|i| format!("row {i}")).collect();
    let mut texts: Vec<Option<&str>> = rows.iter().map(|s| Some(s.as_str())).collect();
    texts[3] = None; // a null is an empty document (dropped, counted)
    texts[4] = Some("  ");
    write_parquet(&p, &[batch(&texts)], 4);
    assert_eq!(parquet_row_groups(&p).unwrap(), vec![4, 4, 2]);
    let mut reader = DocumentReader::new(vec![p.clone()], ReaderConfig::default());
    let mut out = Vec::new();
    while reader.next_batch(0, &mut out).unwrap() {}
    let got: Vec<&str> = out.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(got, ["row 0", "row 1", "row 2", "row 5", "row 6", "row 7", "row 8", "row 9"]);
    assert_eq!(reader.skipped()[SKIP_EMPTY_DOCUMENTS], 2);
    assert_eq!(reader.bytes_read(), std::fs::metadata(&p).unwrap().len());
    // Row groups 1..3 of the file, as `prepare --ray` partitions it.
    let spec = format!("{}{ROW_GROUPS}1:3", p.display());
    let files = expand_inputs(std::slice::from_ref(&spec)).unwrap();
    assert_eq!(read(&files).unwrap(), ["row 5", "row 6", "row 7", "row 8", "row 9"]);
    let bad = format!("{}{ROW_GROUPS}2:9", p.display());
    let msg = read(&[PathBuf::from(bad)]).unwrap_err().to_string();
    assert!(msg.contains("the file has 3"), "{msg}");
}

#[test]
fn parquet_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    write_parquet(&p, &[batch(&[Some("a"), Some("b")])], 100);
    // No such column: the columns present are listed.
    let cfg = ReaderConfig { text_field: "body".into(), ..Default::default() };
    let mut reader = DocumentReader::new(vec![p.clone()], cfg);
    let msg = reader.next_batch(0, &mut Vec::new()).unwrap_err().to_string();
    assert!(msg.contains("d.parquet") && msg.contains("\"body\"") && msg.contains("id (Int64), text (Utf8)"), "{msg}");
    // A column that is not a string.
    let cfg = ReaderConfig { text_field: "id".into(), ..Default::default() };
    let mut reader = DocumentReader::new(vec![p.clone()], cfg);
    let msg = reader.next_batch(0, &mut Vec::new()).unwrap_err().to_string();
    assert!(msg.contains("\"id\"") && msg.contains("Int64") && msg.contains("expected a string"), "{msg}");
    // A corrupt footer.
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 12..n - 4].copy_from_slice(&[0xff; 8]);
    let cut = write(dir.path(), "corrupt.parquet", &bytes);
    let err = read(&[cut]).unwrap_err();
    assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("corrupt.parquet"), "{err}");
    // Truncated in the middle.
    let bytes = std::fs::read(&p).unwrap();
    let cut = write(dir.path(), "half.parquet", &bytes[..bytes.len() / 2]);
    let err = read(&[cut]).unwrap_err();
    assert!(err.to_string().contains("half.parquet"), "{err}");
}

#[test]
fn arrow_stream_and_file_formats() {
    let dir = tempfile::tempdir().unwrap();
    let b1 = batch(&[Some("one"), Some("two")]);
    let b2 = batch(&[Some("three")]);
    let s = dir.path().join("s.arrow");
    write_arrow_stream(&s, &[b1.clone(), b2.clone()]);
    let f = dir.path().join("f.arrow");
    let mut w = arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&f).unwrap(), &b1.schema()).unwrap();
    w.write(&b1).unwrap();
    w.write(&b2).unwrap();
    w.finish().unwrap();
    assert_eq!(read(&[s.clone(), f]).unwrap(), ["one", "two", "three", "one", "two", "three"]);
    // Large strings work too; other types are refused.
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::LargeUtf8, true)]));
    let large =
        RecordBatch::try_new(schema, vec![Arc::new(arrow_array::LargeStringArray::from(vec!["big"])) as ArrayRef])
            .unwrap();
    let l = dir.path().join("l.arrow");
    write_arrow_stream(&l, &[large]);
    assert_eq!(read(&[l]).unwrap(), ["big"]);
    let cut = write(dir.path(), "cut.arrow", &std::fs::read(&s).unwrap()[..200]);
    let msg = read(&[cut]).unwrap_err().to_string();
    assert!(msg.contains("cut.arrow"), "{msg}");
}

#[test]
fn datasets_folder_reads_its_arrow_files_in_listed_order() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    write_arrow_stream(&ds.join("data-00001-of-00002.arrow"), &[batch(&[Some("second file")])]);
    write_arrow_stream(&ds.join("data-00000-of-00002.arrow"), &[batch(&[Some("first file")])]);
    write(&ds, "dataset_info.json", b"{\"features\": {}}");
    let state = b"{\"_data_files\": [{\"filename\": \"data-00000-of-00002.arrow\"}, {\"filename\": \"data-00001-of-00002.arrow\"}]}";
    write(&ds, "state.json", state);
    let spec = ds.display().to_string();
    let files = expand_inputs(std::slice::from_ref(&spec)).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(read(&files).unwrap(), ["first file", "second file"]);
    // Inside a larger directory it is read the same way (not as JSON files).
    let parent = dir.path().display().to_string();
    assert_eq!(expand_inputs(std::slice::from_ref(&parent)).unwrap(), files);
    // Missing arrow files.
    std::fs::remove_file(ds.join("data-00001-of-00002.arrow")).unwrap();
    let msg = expand_inputs(std::slice::from_ref(&spec)).unwrap_err().to_string();
    assert!(msg.contains("data-00001-of-00002.arrow") && msg.contains("missing"), "{msg}");
    std::fs::remove_file(ds.join("state.json")).unwrap();
    let msg = expand_inputs(std::slice::from_ref(&spec)).unwrap_err().to_string();
    assert!(msg.contains("no state.json"), "{msg}");
    // A DatasetDict folder asks for one split.
    let dd = dir.path().join("dd");
    write(&dd, "dataset_dict.json", b"{\"splits\": [\"train\", \"test\"]}");
    let msg = expand_inputs(&[dd.display().to_string()]).unwrap_err().to_string();
    assert!(msg.contains("train, test") && msg.contains("dd/train"), "{msg}");
}

#[test]
fn a_directory_with_parquet_files_yields_only_those() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("data/train-00001.parquet"), &[batch(&[Some("b")])], 10);
    write_parquet(&dir.path().join("data/train-00000.parquet"), &[batch(&[Some("a")])], 10);
    write(dir.path(), "README.md", b"# a dataset card\n");
    write(dir.path(), "meta.json", b"{}\n");
    let files = expand_inputs(&[dir.path().display().to_string()]).unwrap();
    assert_eq!(read(&files).unwrap(), ["a", "b"]);
}

#[test]
fn a_fifo_is_read_once_as_a_stream_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    assert!(is_stream(&fifo));
    let payload = zst(JSONL);
    let writer = {
        let (fifo, payload) = (fifo.clone(), payload.clone());
        std::thread::spawn(move || std::fs::write(fifo, payload).unwrap())
    };
    let files = expand_inputs(&[fifo.display().to_string()]).unwrap();
    let mut reader = DocumentReader::new(files, ReaderConfig::default());
    let digests = reader.stream_digests();
    let mut out = Vec::new();
    while reader.next_batch(0, &mut out).unwrap() {}
    writer.join().unwrap();
    // zstd found by its magic number, JSON Lines by the leading '{'.
    assert_eq!(out.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), TEXTS);
    let d = digests.lock().unwrap();
    let mut expected = Digest::new();
    expected.update(&payload);
    assert_eq!(d[&0], (payload.len() as u64, expected.hex()));
}

struct Texts(Vec<Vec<String>>);

impl TextSource for Texts {
    fn next_texts(&mut self, out: &mut Vec<String>) -> Result<bool> {
        if self.0.is_empty() {
            return Ok(false);
        }
        out.extend(self.0.remove(0));
        Ok(true)
    }
}

#[test]
fn a_source_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.jsonl", JSONL);
    let batches = vec![vec!["x".to_string(), " ".to_string()], vec![], vec!["y".to_string()]];
    let mut reader = DocumentReader::with_source(vec![p], ReaderConfig::default(), Box::new(Texts(batches)), "<src>");
    let mut out = Vec::new();
    while reader.next_batch(0, &mut out).unwrap() {}
    let got: Vec<(u32, &str)> = out.iter().map(|d| (d.source, d.text.as_str())).collect();
    assert_eq!(got, [(0, TEXTS[0]), (0, TEXTS[1]), (0, TEXTS[2]), (1, "x"), (1, "y")]);
    assert_eq!(reader.files()[1], PathBuf::from("<src>"));
    assert_eq!(reader.stream_digests().lock().unwrap()[&1].0, 3);
}
