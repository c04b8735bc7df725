//! Tests of NSP instances, packed MLM rows and chunks on synthetic `MemCorpus` corpora.

use std::collections::HashSet;
use std::ops::Range;

use crate::corpus::{CorpusView, MemCorpus};
use crate::instances::chunks::{chunk_instances, chunk_view, MAX_SENTENCE_TOKENS};
use crate::instances::mlm::{mlm_instances, mlm_rows, mlm_view, TokenStream};
use crate::instances::nsp::{doc_pairs, nsp_instances, nsp_instances_parallel, nsp_pairs, NspContext, Pair};
use crate::instances::{MaskVocab, NspConfig, NspInstances};
use crate::rng::{Purpose, Rng};

const V: u32 = 2000;

/// ids < 5 special ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4), 5..1000 word heads,
/// 1000..2000 `##` pieces.
fn vocab() -> MaskVocab {
    MaskVocab {
        pad: 0,
        cls: 2,
        sep: 3,
        mask: 4,
        vocab_size: V,
        is_continuation: (0..V).map(|i| i >= 1000).collect(),
        is_special: (0..V).map(|i| i < 5).collect(),
    }
}

fn cfg(fixed: bool) -> NspConfig {
    NspConfig {
        max_seq_length: 128,
        max_predictions_per_seq: 20,
        masked_lm_prob: 0.15,
        short_seq_prob: 0.1,
        dupe_factor: 3,
        whole_word_mask: false,
        fix_quirks: fixed,
        seed: 12345,
    }
}

/// `n_docs` documents of 1..30 sentences of 1..45 tokens (mean ≈ 23, like news prose), from
/// `n_sources` input files (contiguous runs of documents, as prepare writes them).
fn synthetic(n_docs: usize, n_sources: u32, seed: u64) -> MemCorpus {
    let mut rng = Rng::keyed(seed, Purpose::Test, &[]);
    let mut c = MemCorpus::new();
    for d in 0..n_docs {
        let n_sent = 1 + rng.below(30) as usize;
        let sents: Vec<Vec<u32>> = (0..n_sent)
            .map(|_| {
                let len = 1 + rng.below(45) as usize;
                (0..len)
                    .map(|i| {
                        if i > 0 && rng.below(4) == 0 {
                            1000 + rng.below(1000) as u32
                        } else {
                            5 + rng.below(995) as u32
                        }
                    })
                    .collect()
            })
            .collect();
        let source = (d as u64 * n_sources as u64 / n_docs as u64) as u32;
        c.push_document(sents.iter().map(|s| s.as_slice()), source);
    }
    c
}

fn tokens(c: &MemCorpus, r: Range<u64>) -> Vec<u32> {
    c.tokens[r.start as usize..r.end as usize].to_vec()
}

fn all_pairs(c: &MemCorpus, cfg: &NspConfig, pass: u64) -> (Vec<(usize, Pair)>, usize) {
    let ctx = NspContext::new(c);
    let mut segs = Vec::new();
    let mut out = Vec::new();
    let mut shorts = 0;
    for d in 0..c.n_documents() {
        let mut rng = Rng::keyed(cfg.seed, Purpose::NspDocument, &[pass, d as u64]);
        let short = doc_pairs(c, &ctx, d, cfg, &mut rng, &mut segs, |p| out.push((d, p.clone())));
        shorts += short as usize;
    }
    (out, shorts)
}

#[test]
fn nsp_same_output_for_any_split_and_thread_count() {
    let c = synthetic(300, 2, 1);
    let v = vocab();
    for fixed in [false, true] {
        let mut cfg = cfg(fixed);
        cfg.whole_word_mask = fixed;
        let mut sequential = NspInstances::default();
        for pass in 0..cfg.dupe_factor {
            sequential.append(nsp_instances(&c, 0..300, pass, &cfg, &v));
        }
        // Split ranges.
        let mut split = NspInstances::default();
        for pass in 0..cfg.dupe_factor {
            for r in [0..7, 7..150, 150..151, 151..300] {
                split.append(nsp_instances(&c, r, pass, &cfg, &v));
            }
        }
        assert_eq!(sequential, split);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let par = pool.install(|| nsp_instances_parallel(&c, 0..300, &cfg, &v));
            assert_eq!(sequential, par, "threads={threads}");
        }
        assert!(sequential.len() > 1000);
        // Another seed gives other instances.
        let mut other = cfg.clone();
        other.seed += 1;
        assert_ne!(nsp_instances(&c, 0..300, 0, &other, &v), nsp_instances(&c, 0..300, 0, &cfg, &v));
    }
}

#[test]
fn nsp_instance_structure_and_masks_match_pairs() {
    let c = synthetic(400, 3, 2);
    let v = vocab();
    for (fixed, wwm) in [(false, false), (false, true), (true, true)] {
        let mut cfg = cfg(fixed);
        cfg.whole_word_mask = wwm;
        for pass in 0..2u32 {
            let inst = nsp_instances(&c, 0..400, pass, &cfg, &v);
            let pairs = nsp_pairs(&c, &cfg, pass as u64);
            assert_eq!(inst.len(), pairs.len());
            assert_eq!(inst.offsets.len(), inst.len() + 1);
            assert_eq!(inst.masked_offsets.len(), inst.len() + 1);
            assert_eq!(*inst.offsets.last().unwrap() as usize, inst.input_ids.len());
            for i in 0..inst.len() {
                let (t, sa, label, pos, ids) = inst.get(i);
                let sa = sa as usize;
                assert!(t.len() <= cfg.max_seq_length);
                assert!(sa >= 3 && t.len() >= sa + 2, "segments must be non-empty");
                assert_eq!(label, pairs.labels[i]);
                // Originals from the unmasked pair.
                let mut orig = vec![v.cls];
                orig.extend(tokens(&c, pairs.a_start[i]..pairs.a_end[i]));
                orig.push(v.sep);
                orig.extend(tokens(&c, pairs.b_start[i]..pairs.b_end[i]));
                orig.push(v.sep);
                assert_eq!(orig.len(), t.len());
                assert_eq!(orig.len() - sa, (pairs.b_end[i] - pairs.b_start[i]) as usize + 1);
                assert_eq!((t[0], t[sa - 1], t[t.len() - 1]), (v.cls, v.sep, v.sep));
                assert!(pos.len() <= cfg.max_predictions_per_seq);
                assert!(!pos.is_empty());
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
                for (&p, &id) in pos.iter().zip(ids) {
                    let p = p as usize;
                    assert!(p != 0 && p != sa - 1 && p != t.len() - 1, "specials never masked");
                    assert_eq!(id, orig[p]);
                }
                for (j, (&x, &o)) in t.iter().zip(&orig).enumerate() {
                    if !pos.contains(&(j as u16)) {
                        assert_eq!(x, o);
                    }
                }
                if !wwm {
                    let want = crate::instances::masking::num_to_predict(t.len(), 0.15, 20).min(t.len() - 3);
                    assert_eq!(pos.len(), want);
                }
            }
        }
    }
}

#[test]
fn nsp_statistics_random_next_and_short_targets() {
    let c = synthetic(6000, 4, 3);
    let cfg = cfg(false);
    let (pairs, shorts) = all_pairs(&c, &cfg, 0);
    let n = pairs.len() as f64;
    let random = pairs.iter().filter(|(_, p)| p.random_next).count() as f64;
    let rate = random / n;
    assert!(rate > 0.52 && rate < 0.65, "random-next rate {rate}");
    let short_share = shorts as f64 / c.n_documents() as f64;
    assert!((short_share - 0.1).abs() < 0.015, "short share {short_share}");
    // Lengths: |A| + |B| <= L − 3, truncated ranges inside the untruncated ones.
    let max_num = (cfg.max_seq_length - 3) as u64;
    let mut truncated = 0;
    for (_, p) in &pairs {
        let (la, lb) = (p.a.end - p.a.start, p.b.end - p.b.start);
        assert!(la >= 1 && lb >= 1 && la + lb <= max_num);
        assert!(p.a_full.start <= p.a.start && p.a.end <= p.a_full.end);
        assert!(p.b_full.start <= p.b.start && p.b.end <= p.b_full.end);
        let full = (p.a_full.end - p.a_full.start) + (p.b_full.end - p.b_full.start);
        if full <= max_num {
            assert_eq!((&p.a, &p.b), (&p.a_full, &p.b_full));
        } else {
            truncated += 1;
            assert_eq!(la + lb, max_num);
        }
    }
    assert!(truncated > 0);
}

#[test]
fn nsp_put_back_covers_every_sentence_once() {
    // Own-document segments (A, and B when it is the actual next) of a pass tile the document:
    // sentences put back after a random next are used again, none is lost or duplicated.
    let c = synthetic(500, 1, 4);
    for fixed in [false, true] {
        let (pairs, _) = all_pairs(&c, &cfg(fixed), 1);
        let mut own: Vec<Vec<Range<u64>>> = vec![vec![]; c.n_documents()];
        for (d, p) in &pairs {
            own[*d].push(p.a_full.clone());
            if !p.random_next {
                assert_eq!(p.b_doc, *d);
                assert_eq!(p.a_full.end, p.b_full.start, "actual next follows A");
                own[*d].push(p.b_full.clone());
            }
        }
        for (d, mut rs) in own.into_iter().enumerate() {
            rs.sort_by_key(|r| r.start);
            let mut pos = c.doc_tokens(d).start;
            for r in &rs {
                assert_eq!(r.start, pos, "doc {d}: gap or overlap");
                pos = r.end;
            }
            assert_eq!(pos, c.doc_tokens(d).end, "doc {d}: tail lost");
        }
    }
}

#[test]
fn nsp_negatives_pool_every_input_file() {
    // One document per input file (books, BBC folders): Google pools every document of the run,
    // so a random next segment almost never comes from the A segment's own document.
    let c = synthetic(400, 400, 5);
    assert!((0..400).all(|d| c.doc_source(d) == d as u32));
    for fixed in [false, true] {
        let mut random_next = 0usize;
        let mut own = 0usize;
        let mut cross_file = 0usize;
        for pass in 0..3 {
            let (pairs, _) = all_pairs(&c, &cfg(fixed), pass);
            for (d, p) in pairs.iter().filter(|(_, p)| p.random_next) {
                random_next += 1;
                own += (*d == p.b_doc) as usize;
                cross_file += (c.doc_source(*d) != c.doc_source(p.b_doc)) as usize;
            }
        }
        assert!(random_next > 1000, "{random_next}");
        assert_eq!(own, 0, "fixed={fixed}: {own} of {random_next} negatives from A's own document");
        assert_eq!(cross_file, random_next);
    }
    // The 10 tries: with two documents the current one is drawn ten times in a row with p = 2^-10,
    // so a few of many faithful negatives are still the current document (never when fixed).
    let two = synthetic(2, 2, 9);
    let mut cfg2 = cfg(false);
    cfg2.short_seq_prob = 1.0;
    let (mut n, mut own) = (0usize, 0usize);
    for pass in 0..4000 {
        let (pairs, _) = all_pairs(&two, &cfg2, pass);
        for (d, p) in pairs.iter().filter(|(_, p)| p.random_next) {
            n += 1;
            own += (*d == p.b_doc) as usize;
        }
    }
    let expected = n as f64 / 1024.0;
    assert!(own > 0 && (own as f64) < expected * 3.0 + 5.0, "{own} of {n} (expected ≈ {expected:.1})");
}

#[test]
fn nsp_handles_degenerate_corpora() {
    let v = vocab();
    // One document with one one-token sentence; empty documents; zero-token sentences.
    let mut c = MemCorpus::new();
    c.push_document([&[7u32][..]], 0);
    c.push_document(std::iter::empty(), 0);
    c.push_document([&[][..], &[8u32, 9][..], &[][..]], 0);
    for fixed in [false, true] {
        let cfg = cfg(fixed);
        let inst = nsp_instances(&c, 0..3, 0, &cfg, &v);
        for i in 0..inst.len() {
            let (t, sa, ..) = inst.get(i);
            assert!(sa >= 3 && t.len() >= sa as usize + 2);
        }
        let _ = nsp_pairs(&c, &cfg, 0);
    }
    let mut bad = cfg(false);
    bad.max_seq_length = 4;
    assert!(bad.validate().is_err());
    assert!(nsp_instances(&c, 0..3, 0, &bad, &v).is_empty());
    assert!(nsp_pairs(&c, &bad, 0).is_empty());
}

/// The stream by hand: non-empty documents joined by [SEP].
fn stream_of(c: &MemCorpus, sep: u32) -> Vec<u32> {
    let mut s = Vec::new();
    for d in 0..c.n_documents() {
        let r = c.doc_tokens(d);
        if r.is_empty() {
            continue;
        }
        if !s.is_empty() {
            s.push(sep);
        }
        s.extend(tokens(c, r));
    }
    s
}

fn corpus_with_empty_docs() -> MemCorpus {
    let base = synthetic(60, 1, 6);
    let mut c = MemCorpus::new();
    c.push_document(std::iter::empty(), 0);
    for d in 0..60 {
        if d % 7 == 3 {
            c.push_document([&[][..]], 0);
        }
        let s: Vec<&[u32]> = base
            .doc_sentences(d)
            .map(|s| &base.tokens[base.sentence_offsets[s] as usize..base.sentence_offsets[s + 1] as usize])
            .collect();
        c.push_document(s, 0);
    }
    c
}

#[test]
fn mlm_rows_cover_the_stream_once() {
    let c = corpus_with_empty_docs();
    let v = vocab();
    let stream = stream_of(&c, v.sep);
    let ts = TokenStream::new(&c);
    assert_eq!(ts.len() as usize, stream.len());
    assert_eq!(ts.separators.len(), 59);
    for seq_len in [3usize, 16, 128] {
        let rows = mlm_instances(&c, seq_len, &v);
        let piece = seq_len - 2;
        let n = stream.len() / piece;
        assert_eq!(rows.len(), n * seq_len);
        let mut middle = Vec::new();
        for r in rows.chunks(seq_len) {
            assert_eq!((r[0], r[seq_len - 1]), (v.cls, v.sep));
            middle.extend_from_slice(&r[1..seq_len - 1]);
        }
        assert_eq!(middle, stream[..n * piece]);
    }
    assert!(mlm_instances(&c, 2, &v).is_empty());
    assert!(crate::instances::mlm::check_seq_len(2).is_err());
    assert!(crate::instances::mlm::check_seq_len(1 << 30).is_err());
    assert!(mlm_rows(&c, &[0], 1 << 30, &v).is_empty());
}

#[test]
fn mlm_view_is_a_keyed_shifted_permutation() {
    let c = corpus_with_empty_docs();
    let v = vocab();
    let stream = stream_of(&c, v.sep);
    let seq_len = 64;
    let piece = (seq_len - 2) as u64;
    let view = mlm_view(&c, seq_len, 7, 0);
    assert!(view.shift < piece);
    assert_eq!(view.stream_len as usize, stream.len());
    let mut sorted = view.starts.clone();
    sorted.sort_unstable();
    let n = (stream.len() as u64 - view.shift) / piece;
    assert_eq!(sorted, (0..n).map(|k| view.shift + k * piece).collect::<Vec<_>>());
    assert_ne!(sorted, view.starts, "visiting order is permuted");
    assert_eq!(view, mlm_view(&c, seq_len, 7, 0));
    let shifts: HashSet<u64> = (0..20).map(|e| mlm_view(&c, seq_len, 7, e).shift).collect();
    assert!(shifts.len() > 5, "the shift changes with the epoch");
    // Rows materialise the stream slices, padded past the end.
    let mut starts = view.starts[..10].to_vec();
    starts.push(stream.len() as u64 - 5);
    let rows = mlm_rows(&c, &starts, seq_len, &v);
    for (r, &s) in rows.chunks(seq_len).zip(&starts) {
        let s = s as usize;
        let e = (s + seq_len - 2).min(stream.len());
        assert_eq!(r[0], v.cls);
        assert_eq!(&r[1..1 + e - s], &stream[s..e]);
        assert!(r[1 + e - s..seq_len - 1].iter().all(|&x| x == v.pad));
        assert_eq!(r[seq_len - 1], v.sep);
    }
}

#[test]
fn chunks_token_mode_and_sentence_mode() {
    let mut c = corpus_with_empty_docs();
    let long: Vec<u32> = (0..600).map(|i| 5 + i % 900).collect();
    c.push_document([&[9u32, 9][..], &long[..]], 0);
    let v = vocab();
    let nd = c.n_documents();
    for n in [0usize, 3, 10, 256] {
        let ch = chunk_instances(&c, 0..nd, n, &v);
        let (starts, ends, dofs) = chunk_view(&c, n);
        assert_eq!(ch.document_offsets, dofs);
        assert_eq!(dofs.len(), nd + 1);
        assert_eq!(ch.offsets.len(), starts.len() + 1);
        for k in 0..starts.len() {
            let piece = &ch.input_ids[ch.offsets[k] as usize..ch.offsets[k + 1] as usize];
            assert_eq!((piece[0], piece[piece.len() - 1]), (v.cls, v.sep));
            assert_eq!(&piece[1..piece.len() - 1], &tokens(&c, starts[k]..ends[k])[..]);
            assert!(ends[k] > starts[k]);
        }
        for d in 0..nd {
            let ks = dofs[d] as usize..dofs[d + 1] as usize;
            if n > 0 {
                // Pieces of n − 2 tilling the document, the last one shorter.
                let mut pos = c.doc_tokens(d).start;
                for k in ks.clone() {
                    assert_eq!(starts[k], pos);
                    let len = ends[k] - starts[k];
                    assert!(len == n as u64 - 2 || (k + 1 == ks.end && len <= n as u64 - 2));
                    pos = ends[k];
                }
                assert_eq!(pos, c.doc_tokens(d).end);
            } else {
                let sents: Vec<Range<u64>> =
                    c.doc_sentences(d).map(|s| c.sentence_tokens(s)).filter(|r| !r.is_empty()).collect();
                assert_eq!(ks.len(), sents.len());
                for (k, r) in ks.zip(sents) {
                    assert_eq!(starts[k], r.start);
                    assert_eq!(ends[k], r.end.min(r.start + MAX_SENTENCE_TOKENS));
                }
            }
        }
    }
    let (s, e, _) = chunk_view(&c, 0);
    assert_eq!(e.last().unwrap() - s.last().unwrap(), 254, "long sentence truncated to 256 - 2 like the original");
    let sub = chunk_instances(&c, 5..9, 10, &v);
    assert_eq!(sub.document_offsets.len(), 5);
    assert!(crate::instances::chunks::check_chunk_size(2).is_err());
    assert!(crate::instances::chunks::check_chunk_size(0).is_ok());
}

/// Timing on a synthetic corpus of ~2.5 M tokens (about 10 MB of English text); run with
/// `cargo test --release -p bertkit-core -- --ignored --nocapture nsp_speed`.
#[test]
#[ignore]
fn nsp_speed() {
    let c = synthetic(7_000, 4, 7);
    let v = vocab();
    let mut cfg = cfg(false);
    cfg.dupe_factor = 1;
    let n_tokens = c.n_tokens();
    let mut times = vec![];
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let inst = nsp_instances(&c, 0..c.n_documents(), 0, &cfg, &v);
        times.push(t.elapsed().as_secs_f64());
        assert!(!inst.is_empty());
    }
    times.sort_by(f64::total_cmp);
    eprintln!("nsp_instances: {n_tokens} tokens, 1 pass, median {:.3}s (1 thread)", times[2]);
}

/// Timing on a real dataset: `BERTKIT_BENCH_DATASET=<dataset dir> BERTKIT_DATA=<dir with vocab.txt>
/// cargo test --release -p bertkit-core -- --ignored --nocapture nsp_speed_real`.
#[test]
#[ignore]
fn nsp_speed_real() {
    let (Ok(ds), Ok(data)) = (std::env::var("BERTKIT_BENCH_DATASET"), std::env::var("BERTKIT_DATA")) else {
        eprintln!("BERTKIT_BENCH_DATASET / BERTKIT_DATA not set");
        return;
    };
    let c = crate::corpus::MmapCorpus::open(std::path::Path::new(&ds)).unwrap();
    let text = std::fs::read_to_string(std::path::Path::new(&data).join("vocab.txt")).unwrap();
    let v = MaskVocab::from_tokens(text.lines(), 0, 101, 102, 103);
    assert_eq!(v.vocab_size, 30522);
    for (wwm, fixed) in [(false, false), (true, false), (true, true)] {
        let mut cfg = cfg(fixed);
        cfg.whole_word_mask = wwm;
        cfg.dupe_factor = 1;
        let mut times = vec![];
        let mut inst = NspInstances::default();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            inst = nsp_instances(&c, 0..c.n_documents(), 0, &cfg, &v);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let random = inst.next_sentence_labels.iter().map(|&x| x as usize).sum::<usize>();
        eprintln!(
            "wwm={wwm} fixed={fixed}: {} tokens -> {} instances ({:.1} tokens avg, {:.1} masked avg, random-next {:.3}), 1 pass, median {:.3}s (1 thread)",
            c.n_tokens(),
            inst.len(),
            inst.input_ids.len() as f64 / inst.len() as f64,
            inst.masked_positions.len() as f64 / inst.len() as f64,
            random as f64 / inst.len() as f64,
            times[2]
        );
    }
}

/// ELC-BERT's `cache_dataset.py` loop, literally, on token lists: the rows' tokens.
fn elc_reference(c: &MemCorpus, d: usize, seq_len: usize) -> Vec<Vec<u32>> {
    let room = seq_len - 2;
    let mut rows = Vec::new();
    let mut segment: Vec<u32> = Vec::new();
    for s in c.doc_sentences(d) {
        let sentence = tokens(c, c.sentence_tokens(s));
        segment.extend_from_slice(&sentence);
        if segment.len() > room {
            segment.truncate(room);
            rows.push(segment);
            segment = sentence;
        }
    }
    if !segment.is_empty() {
        segment.truncate(room);
        rows.push(segment);
    }
    rows
}

#[test]
fn elc_rows_follow_the_original_packing() {
    use crate::instances::elc::{check_elc_seq_len, elc_view};
    let c = synthetic(300, 3, 21);
    for seq_len in [16usize, 32, 128] {
        let (starts, ends, dofs) = elc_view(&c, seq_len);
        assert_eq!(dofs.len(), c.n_documents() + 1);
        assert_eq!(starts.len(), *dofs.last().unwrap() as usize);
        let mut overlaps = 0;
        for d in 0..c.n_documents() {
            let rows: Vec<Vec<u32>> = (dofs[d] as usize..dofs[d + 1] as usize)
                .map(|i| {
                    assert!(ends[i] - starts[i] <= seq_len as u64 - 2);
                    let doc = c.doc_tokens(d);
                    assert!(doc.start <= starts[i] && ends[i] <= doc.end, "a row stays inside its document");
                    tokens(&c, starts[i]..ends[i])
                })
                .collect();
            assert_eq!(rows, elc_reference(&c, d, seq_len), "doc {d} at {seq_len}");
            for i in dofs[d] as usize + 1..dofs[d + 1] as usize {
                overlaps += (starts[i] < ends[i - 1]) as usize;
            }
        }
        // The whole overflowing sentence starts the next row, so rows overlap where a sentence overflowed.
        assert!(overlaps > 0);
    }
    assert!(check_elc_seq_len(2).is_err() && check_elc_seq_len(3).is_ok());
    // A sentence longer than a row: only its head is seen; the next sentence starts a new row.
    let mut c = MemCorpus::new();
    let long: Vec<u32> = (5..45).collect();
    c.push_document([&[7u32, 8][..], &long[..], &[9u32][..]], 0);
    let (s, e, _) = elc_view(&c, 12);
    let rows: Vec<Vec<u32>> = s.iter().zip(&e).map(|(&a, &b)| tokens(&c, a..b)).collect();
    assert_eq!(rows, elc_reference(&c, 0, 12));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2], vec![9]);
}
