//! Read access to a tokenized corpus: documents → sentences → tokens, with global indices.
//!
//! Views and instances are built against [`CorpusView`], implemented by the in-memory
//! [`MemCorpus`] (tests, a shard being built) and the memory-mapped [`MmapCorpus`] (a dataset on
//! disk, all corpus shards concatenated in manifest order).

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{DType, Manifest, NpyMap};

pub trait CorpusView: Sync {
    fn n_documents(&self) -> usize;
    fn n_sentences(&self) -> usize;
    fn n_tokens(&self) -> u64;
    /// Global sentence indices of document `d`.
    fn doc_sentences(&self, d: usize) -> Range<usize>;
    /// Global token range of sentence `s`.
    fn sentence_tokens(&self, s: usize) -> Range<u64>;
    /// Append the token ids of a global token range to `out`.
    fn tokens_into(&self, r: Range<u64>, out: &mut Vec<u32>);
    /// Index of the input file document `d` came from.
    fn doc_source(&self, d: usize) -> u32;
    /// Global token range of document `d`.
    fn doc_tokens(&self, d: usize) -> Range<u64> {
        let s = self.doc_sentences(d);
        if s.is_empty() {
            return 0..0;
        }
        self.sentence_tokens(s.start).start..self.sentence_tokens(s.end - 1).end
    }
}

/// A corpus held in memory (offsets are global prefix sums).
#[derive(Clone, Debug, Default)]
pub struct MemCorpus {
    pub tokens: Vec<u32>,
    /// `n_sentences + 1` token offsets.
    pub sentence_offsets: Vec<u64>,
    /// `n_documents + 1` sentence offsets.
    pub document_offsets: Vec<u64>,
    /// Input file index of each document.
    pub document_sources: Vec<u32>,
}

impl MemCorpus {
    pub fn new() -> Self {
        MemCorpus { tokens: vec![], sentence_offsets: vec![0], document_offsets: vec![0], document_sources: vec![] }
    }

    /// Build from documents given as lists of sentences of token ids (tests).
    pub fn from_docs(docs: &[Vec<Vec<u32>>]) -> Self {
        let mut c = MemCorpus::new();
        for d in docs {
            c.push_document(d.iter().map(|s| s.as_slice()), 0);
        }
        c
    }

    pub fn push_document<'a>(&mut self, sentences: impl IntoIterator<Item = &'a [u32]>, source: u32) {
        for s in sentences {
            self.tokens.extend_from_slice(s);
            self.sentence_offsets.push(self.tokens.len() as u64);
        }
        self.document_offsets.push((self.sentence_offsets.len() - 1) as u64);
        self.document_sources.push(source);
    }
}

impl CorpusView for MemCorpus {
    fn n_documents(&self) -> usize {
        self.document_offsets.len() - 1
    }
    fn n_sentences(&self) -> usize {
        self.sentence_offsets.len() - 1
    }
    fn n_tokens(&self) -> u64 {
        self.tokens.len() as u64
    }
    fn doc_sentences(&self, d: usize) -> Range<usize> {
        self.document_offsets[d] as usize..self.document_offsets[d + 1] as usize
    }
    fn sentence_tokens(&self, s: usize) -> Range<u64> {
        self.sentence_offsets[s]..self.sentence_offsets[s + 1]
    }
    fn tokens_into(&self, r: Range<u64>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.tokens[r.start as usize..r.end as usize]);
    }
    fn doc_source(&self, d: usize) -> u32 {
        self.document_sources[d]
    }
}

enum TokenArray {
    U16(NpyMap),
    U32(NpyMap),
}

struct ShardView {
    tokens: TokenArray,
    sentence_offsets: NpyMap,
    document_offsets: NpyMap,
    document_sources: NpyMap,
    first_doc: usize,
    first_sentence: usize,
    first_token: u64,
    input_offset: u32,
}

/// The corpus shards of a dataset on disk, concatenated in manifest order.
pub struct MmapCorpus {
    shards: Vec<ShardView>,
    n_docs: usize,
    n_sents: usize,
    n_tokens: u64,
}

impl MmapCorpus {
    pub fn open(dir: &Path) -> Result<MmapCorpus> {
        let m = Manifest::read(dir)?;
        Self::open_with(dir, &m)
    }

    pub fn open_with(dir: &Path, m: &Manifest) -> Result<MmapCorpus> {
        let mut shards = Vec::new();
        let (mut nd, mut ns, mut nt) = (0usize, 0usize, 0u64);
        for s in m.shards_of("corpus") {
            let get = |name: &str| -> Result<NpyMap> {
                let a = s.arrays.get(name).ok_or_else(|| {
                    Error::format(dir.join("manifest.json"), format!("shard {} lacks {name}", s.name))
                })?;
                NpyMap::open(&dir.join(&a.path))
            };
            let tok = get("tokens")?;
            let tokens = match tok.dtype {
                DType::U16 => TokenArray::U16(tok),
                DType::U32 => TokenArray::U32(tok),
                _ => return Err(Error::format(&tok.path, "tokens must be uint16 or uint32")),
            };
            let sv = ShardView {
                tokens,
                sentence_offsets: get("sentence_offsets")?,
                document_offsets: get("document_offsets")?,
                document_sources: get("document_sources")?,
                first_doc: nd,
                first_sentence: ns,
                first_token: nt,
                input_offset: s.input_offset as u32,
            };
            // Validate the structure once so that accessors can index without checks: both offset arrays start
            // at 0, never decrease and end at the length of what they index (a corrupt shard is an error here,
            // never a panic or a runaway loop later).
            let so = sv.sentence_offsets.as_u64()?;
            let dofs = sv.document_offsets.as_u64()?;
            let n_tok = match &sv.tokens {
                TokenArray::U16(a) | TokenArray::U32(a) => a.len() as u64,
            };
            check_offsets(&sv.sentence_offsets.path, &s.name, "sentence_offsets", so, n_tok)?;
            check_offsets(&sv.document_offsets.path, &s.name, "document_offsets", dofs, so.len() as u64 - 1)?;
            if sv.document_sources.as_u32()?.len() != dofs.len() - 1 {
                return Err(Error::format(&sv.document_sources.path, "document_sources length mismatch"));
            }
            nd += dofs.len() - 1;
            ns += so.len() - 1;
            nt += n_tok;
            shards.push(sv);
        }
        Ok(MmapCorpus { shards, n_docs: nd, n_sents: ns, n_tokens: nt })
    }

    fn shard_of_doc(&self, d: usize) -> &ShardView {
        let i = self.shards.partition_point(|s| s.first_doc <= d) - 1;
        &self.shards[i]
    }
    fn shard_of_sentence(&self, s: usize) -> &ShardView {
        let i = self.shards.partition_point(|x| x.first_sentence <= s) - 1;
        &self.shards[i]
    }
}

/// Offsets of a shard array: at least one entry, starting at 0, never decreasing, ending at `end`.
pub fn check_offsets(path: &Path, shard: &str, name: &str, o: &[u64], end: u64) -> Result<()> {
    let bad = |what: String| Err(Error::format(path, format!("shard {shard:?} array {name:?} is corrupt: {what}")));
    let (Some(&first), Some(&last)) = (o.first(), o.last()) else {
        return bad("no entries".into());
    };
    if first != 0 {
        return bad(format!("starts at {first}, not 0"));
    }
    if last != end {
        return bad(format!("ends at {last}, expected {end}"));
    }
    if let Some(i) = o.windows(2).position(|w| w[1] < w[0]) {
        return bad(format!("entry {} ({}) is below entry {} ({})", i + 1, o[i + 1], i, o[i]));
    }
    Ok(())
}

impl CorpusView for MmapCorpus {
    fn n_documents(&self) -> usize {
        self.n_docs
    }
    fn n_sentences(&self) -> usize {
        self.n_sents
    }
    fn n_tokens(&self) -> u64 {
        self.n_tokens
    }
    fn doc_sentences(&self, d: usize) -> Range<usize> {
        let sh = self.shard_of_doc(d);
        let o = sh.document_offsets.as_u64().unwrap();
        let l = d - sh.first_doc;
        sh.first_sentence + o[l] as usize..sh.first_sentence + o[l + 1] as usize
    }
    fn sentence_tokens(&self, s: usize) -> Range<u64> {
        let sh = self.shard_of_sentence(s);
        let o = sh.sentence_offsets.as_u64().unwrap();
        let l = s - sh.first_sentence;
        sh.first_token + o[l]..sh.first_token + o[l + 1]
    }
    fn tokens_into(&self, r: Range<u64>, out: &mut Vec<u32>) {
        let mut pos = r.start;
        while pos < r.end {
            let i = self.shards.partition_point(|x| x.first_token <= pos) - 1;
            let sh = &self.shards[i];
            let local = (pos - sh.first_token) as usize;
            let want = (r.end - pos) as usize;
            let taken = match &sh.tokens {
                TokenArray::U16(a) => {
                    let t = a.as_u16().unwrap();
                    let end = (local + want).min(t.len());
                    out.extend(t[local..end].iter().map(|&x| x as u32));
                    end - local
                }
                TokenArray::U32(a) => {
                    let t = a.as_u32().unwrap();
                    let end = (local + want).min(t.len());
                    out.extend_from_slice(&t[local..end]);
                    end - local
                }
            };
            if taken == 0 {
                break;
            }
            pos += taken as u64;
        }
    }
    fn doc_source(&self, d: usize) -> u32 {
        let sh = self.shard_of_doc(d);
        sh.input_offset + sh.document_sources.as_u32().unwrap()[d - sh.first_doc]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_corpus_indices() {
        let c = MemCorpus::from_docs(&[vec![vec![1, 2], vec![3]], vec![vec![4, 5, 6]]]);
        assert_eq!(c.n_documents(), 2);
        assert_eq!(c.n_sentences(), 3);
        assert_eq!(c.doc_sentences(1), 2..3);
        assert_eq!(c.sentence_tokens(2), 3..6);
        assert_eq!(c.doc_tokens(0), 0..3);
        let mut out = vec![];
        c.tokens_into(1..4, &mut out);
        assert_eq!(out, vec![2, 3, 4]);
    }

    #[test]
    fn corrupt_offsets_are_errors_not_panics() {
        let p = Path::new("x.npy");
        assert!(check_offsets(p, "s", "o", &[0, 2, 5], 5).is_ok());
        for (o, end, what) in [
            (&[][..], 0, "no entries"),
            (&[1, 2, 5][..], 5, "starts at 1"),
            (&[0, 2, 4][..], 5, "ends at 4"),
            (&[0, 6, 2, 5][..], 5, "entry 2 (2) is below entry 1 (6)"),
            (&[0, u64::MAX, 5][..], 5, "below"),
        ] {
            let e = check_offsets(p, "s", "o", o, end).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("x.npy") && e.contains("\"o\""), "{e}");
        }
    }
}
